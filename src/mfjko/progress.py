"""The progress bar of runs (one bar per method) and sweeps (one bar of points).

Counts, elapsed time and an ETA, on stderr through rich; ``enabled=False`` keeps the
bookkeeping and draws nothing (tests, batch jobs).
"""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_bar"]


def progress_bar(enabled: bool = True, label_width: int = 10) -> Progress:
    """A rich progress bar: label, bar, done/total, elapsed, ETA.

    Args:
      enabled: draw it (False: a silent bar, same API).
      label_width: width of the right-aligned task label.

    Returns:
      A :class:`rich.progress.Progress`, to be used as a context manager.
    """
    columns = (TextColumn(f"{{task.description:>{label_width}}}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
               TimeRemainingColumn())
    return Progress(*columns, disable=not enabled, transient=False)
