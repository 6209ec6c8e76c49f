r"""The error types of mfjko, in one leaf module (it imports nothing of the package).

Any module may raise or catch them without importing the module that used to define them
(and its dependencies): config, methods, io, report and the runner all sit above this one.
Each is still importable from its historical home (``mfjko.config.ConfigError``,
``mfjko.runner.RunFolderError``, ``mfjko.data.DataError``, ...), which re-exports it.

The CLI maps them to exit statuses (:mod:`mfjko.cli`): configuration and data errors 2,
run-folder errors 3, solver errors 4, scheduler errors 5.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "DataError",
    "DataFileNotFoundError",
    "RunFolderError",
    "RunExistsError",
    "RunInterrupted",
    "RunStopped",
    "SolverError",
    "ConvergenceError",
    "SweepExistsError",
    "SchedulerError",
]


class ConfigError(ValueError):
    """An invalid run configuration; the message names the key and the fix."""


class DataError(ValueError):
    """Data that cannot be used.

    An unreadable file, wrong shapes, NaN, ...: the message names the file or array and
    the fix.
    """


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data file that does not exist."""


class RunFolderError(Exception):
    """The run folder cannot be used as asked.

    Missing for --resume, a file, not a run folder for --overwrite, ...: the message names
    the folder and the fix.
    """


class RunExistsError(RunFolderError, FileExistsError):
    """The output folder holds a run and neither resume nor overwrite was asked for."""


class RunInterrupted(RuntimeError):
    """Raised on purpose after ``MFJKO_INTERRUPT_AFTER`` intervals (resume tests)."""


class RunStopped(RunInterrupted):
    """A run stopped by SIGINT/SIGTERM at a safe point.

    Attributes:
      out: the run folder.  method: the method that was running (None: before any).
      t: the last committed mean-field time of that method.
      written: whether the folder was created (False: nothing to resume).
      done: the methods already complete.
    """

    def __init__(self, message: str, *, out: Path, method: str | None, t: float | None,
                 written: bool, done: tuple[str, ...] = ()):
        super().__init__(message)
        self.out, self.method, self.t, self.written = out, method, t, written
        self.done = tuple(done)


class SolverError(RuntimeError):
    """GD, the reference of every other method, failed (or produced a non-finite F)."""


class ConvergenceError(RuntimeError):
    """An iterative solver did not reach its tolerance within its iteration cap."""


class SweepExistsError(RunFolderError):
    """The sweep folder cannot be used as asked.

    It holds a sweep and neither resume nor overwrite was asked for, or there is nothing
    to resume (exit status 3, like a run folder).
    """


class SchedulerError(ConnectionError):
    """The Dask scheduler of --scheduler cannot be reached (exit status 5, I/O)."""
