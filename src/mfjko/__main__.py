"""``python -m mfjko``: the ``mfjko`` command."""

from mfjko.cli import app

app(prog_name="mfjko")
