"""Command line: ``mfjko run | report | compare | examples | sweep | study``.

- ``mfjko run CONFIG [--out DIR] [--set key=value ...] [--resume] [--overwrite]``: run every
  method of CONFIG against GD and write the run folder (mfjko.runner, mfjko.report).
- ``mfjko report DIR``: re-render figures and report.html from the stored results.
- ``mfjko compare DIR DIR... [--out DIR]``: overlay F(t) and the gaps of several runs.
- ``mfjko examples``: the shipped configs, one line each.

Every user mistake ends with one line naming the thing and the fix and the exit status of
its class (:data:`EXIT_CODES`, README "Errors and exit codes"); ``--debug`` (before or
after the command) or ``MFJKO_DEBUG=1`` shows the traceback. Every ``@app.command()`` gets
this handling and its own ``--debug`` option.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
from pathlib import Path

import typer
import yaml
from rich.console import Console

from mfjko.errors import (
    ConfigError,
    DataError,
    RunFolderError,
    RunInterrupted,
    RunStopped,
    SolverError,
)

# The commands import the heavy parts (pydantic config, the runner and its solvers,
# matplotlib's report, dask's sweeps) inside their functions: start-up cost, so that
# ``mfjko --help`` and ``mfjko examples`` do not load them. No import circle needs it.

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

#: exit status of each class of error (README, "Errors and exit codes")
EXIT_CODES = {
    "ok": 0,
    "internal error (a bug: please report it with the --debug traceback)": 1,
    "config or usage error": 2,
    "run folder error (exists, missing, not a run, unsafe to overwrite)": 3,
    "data or input file error": 4,
    "I/O error (permission, read-only or full disk)": 5,
    "solver failure of GD, the reference": 6,
    "interrupted (SIGINT/SIGTERM); resume with --resume": 130,
}


def _classify(error: BaseException) -> tuple[int, str]:
    """(exit status, label) of an exception: the one place errors map to codes."""
    table = ((RunInterrupted, 130, "interrupted"), (KeyboardInterrupt, 130, "interrupted"),
             (ConfigError, 2, "config error"), (RunFolderError, 3, "run folder error"),
             (DataError, 4, "data error"), (SolverError, 6, "solver failure"),
             (OSError, 5, "I/O error"))
    for cls, code, label in table:
        if isinstance(error, cls):
            return code, label
    return 1, "internal error"


def _message(error: BaseException) -> str:
    """The error on one line (an OSError as 'what: path')."""
    if isinstance(error, OSError) and error.strerror:
        where = error.filename if error.filename is not None else ""
        fix = {1: "choose a writable location", 13: "choose a writable location",
               30: "choose a writable location", 28: "free some disk space",
               122: "free some disk space"}.get(error.errno, "check the path")
        text = f"{error.strerror}: {where}; {fix}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


class _State:
    debug = bool(os.environ.get("MFJKO_DEBUG"))


def _guarded(fn):
    """Run a command with the error handling of the module docstring and add ``--debug``."""
    sig = inspect.signature(fn)
    debug_param = inspect.Parameter(
        "debug", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
        default=typer.Option(False, "--debug", help="show the traceback of an error"))

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        if debug:
            _State.debug = True
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 — every error ends in one line + status
            code, label = _classify(e)
            if _State.debug:  # the traceback too, with the same exit status
                import traceback

                traceback.print_exc()
            if code == 1:
                err.print(f"[red]internal error:[/red] {type(e).__name__}: {_message(e)} "
                          "(rerun with --debug for the traceback and report it)",
                          highlight=False)
            else:
                err.print(f"[red]{label}:[/red] {_message(e)}", highlight=False)
            raise typer.Exit(code) from None

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), debug_param])
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "debug": "bool"}
    return wrapper


class _App(typer.Typer):
    """A Typer whose commands all get :func:`_guarded`'s error handling."""

    def command(self, *args, **kwargs):  # noqa: D102 — typer's API
        register = super().command(*args, **kwargs)

        def decorator(fn):
            register(_guarded(fn))
            return fn

        return decorator


app = _App(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
           help="Entropic JKO on fixed grids vs gradient descent for two-layer ReLU "
                "networks in the mean-field regime.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("mfjko")
        except PackageNotFoundError:  # run from a source tree without installing
            v = "unknown (not installed)"
        out.print(f"mfjko {v}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show tracebacks of errors"),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    # the compile cache's module sits in the runner package, whose import loads JAX and the
    # solvers: imported here, after --version and --help have exited
    from mfjko.runner.compile_cache import enable_compile_cache

    _State.debug = debug or bool(os.environ.get("MFJKO_DEBUG"))
    enable_compile_cache()


def examples_dir() -> Path:
    """The shipped configs: package data ``mfjko/examples`` (the repository's configs/)."""
    from importlib.resources import files

    return Path(str(files("mfjko") / "examples"))


def _shown_path(path: Path) -> str:
    """A path as the user can type it from the working folder.

    ``path`` as the user can type it from the working folder: relative when inside it,
    else absolute.
    """
    path = path.resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resume_command(config: Path, folder: Path, sets: list[str]) -> str:
    words = ["mfjko", "run", str(config), "--out", str(folder), "--resume"]
    for s in sets:
        words += ["--set", s]
    return shlex.join(words)


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML config (see `mfjko examples`)"),
    out_dir: Path | None = typer.Option(None, "--out", help="run folder (default: config's out)"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. methods.jko.eps=0.01"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run"),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="replace an existing run folder (run folders only)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
):
    """Run every configured method against GD and write metrics, trajectories, report."""
    from mfjko.config import load_config
    from mfjko.memory import check_memory
    from mfjko.report import render
    from mfjko.runner import run as run_

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pass one of them")
    try:
        cfg = load_config(config, set_)
        memory = check_memory([cfg])  # refuses a grid that cannot fit, before any work
        if memory:  # on stdout: information, not an error
            out.print(memory, highlight=False)
        folder = Path(out_dir if out_dir is not None else cfg.out)
        hint = f"resume with: {_resume_command(config, folder, set_)}"
        run_(cfg, folder, resume=resume, overwrite=overwrite, progress=progress, render=False,
             source={"file": str(config), "overrides": list(set_)}, resume_hint=hint)
    except RunStopped as e:
        if e.written:
            at = f"at t = {e.t:g} of {e.method}" if e.t is not None else "before any record"
            done = f" ({', '.join(e.done)} complete)" if e.done else ""
            err.print(f"[yellow]interrupted[/yellow] {at}{done}; everything up to there is "
                      f"saved; {hint}", highlight=False)
        else:
            err.print("[yellow]interrupted[/yellow] before the run started; nothing was "
                      "written", highlight=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # before the run installed its own handling
        err.print("[yellow]interrupted[/yellow] before the run started; nothing was written",
                  highlight=False)
        raise typer.Exit(130) from None
    try:
        render(folder)
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/yellow] while writing the report; the run is "
                  f"complete: mfjko report {shlex.quote(str(folder))}", highlight=False)
        raise typer.Exit(130) from None
    out.print(f"run folder: {folder}\nreport: {folder / 'report.html'}", highlight=False)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run folder")):
    """Re-render figures and report.html of a run folder from its stored results."""
    from mfjko.report import render

    path = render(run_dir)
    out.print(f"report: {path}", highlight=False)


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="two or more run folders"),
    out_dir: Path = typer.Option(Path("compare"), "--out", help="where compare.html goes"),
):
    """Overlay F(t) and the gaps to GD of several runs in one figure and page."""
    from mfjko.report import compare as compare_

    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two run folders: mfjko compare DIR DIR ...")

    path = compare_(run_dirs, out_dir)
    out.print(f"comparison: {path}", highlight=False)


@app.command()
def examples():
    """List the shipped configs with a one-line description each."""
    folder = examples_dir()
    # the default comparison (`make run`) first, then the others by name
    files = sorted(folder.glob("*.yaml"), key=lambda f: (f.name != "default.yaml", f.name))
    if not files:
        err.print(f"internal error: no configs found in {folder}: the installed package "
                  "lacks its examples; reinstall mfjko", highlight=False)
        raise typer.Exit(1)
    for f in files:
        try:
            desc = (yaml.safe_load(f.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(unreadable YAML)"
        out.print(f"{_shown_path(f)}: {desc}", highlight=False)


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="sweep YAML (base config + axes, see docs/STUDY.md)"),
    out_dir: Path | None = typer.Option(None, "--out", help="sweep folder"),
    workers: int = typer.Option(1, "--workers", min=1, help="local Dask worker processes"),
    scheduler: str | None = typer.Option(None, "--scheduler",
                                         help="address of a running Dask scheduler"),
    resume: bool = typer.Option(False, "--resume", help="skip the finished points"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing sweep"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
):
    """Run every point of a sweep on Dask; write results.parquet and results.zarr."""
    from mfjko.sweep import load_sweep, run_sweep

    try:
        folder = run_sweep(spec, out_dir, workers=workers, scheduler=scheduler, resume=resume,
                           overwrite=overwrite, progress=progress, console=out)
    except KeyboardInterrupt:
        where = out_dir
        if where is None:
            try:
                where = Path("runs/sweeps") / load_sweep(spec).name
            except Exception:  # noqa: BLE001 — the hint is best effort
                where = Path("DIR")
        if (where / "sweep.yaml").exists():
            cmd = shlex.join(["mfjko", "sweep", str(spec), "--out", str(where), "--resume"])
            err.print(f"[yellow]interrupted[/yellow]: finished points are saved; resume with: "
                      f"{cmd}", highlight=False)
        else:
            err.print("[yellow]interrupted[/yellow] before the sweep started; nothing was "
                      "written", highlight=False)
        raise typer.Exit(130) from None
    out.print(f"sweep folder: {folder}", highlight=False)


@app.command()
def study(sweep_dir: Path = typer.Argument(..., help="a finished sweep folder")):
    """Render a sweep's study: phase diagrams, regimes, fitted rates, study.html."""
    from mfjko.study.render import render_study

    out.print(f"study: {render_study(sweep_dir)}")


if __name__ == "__main__":
    app()
