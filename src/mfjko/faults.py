"""Fault injection for the crash-consistency tests: the write points of a run folder.

Every durable write, rename and delete of :mod:`mfjko.io` is a write point, counted by the
process-wide :data:`CRASH`. A test arms it to end the run at the k-th point, in process
(:class:`SimulatedCrash`) or as ``kill -9`` would (``MFJKO_CRASH_AT`` = k, exit status
:data:`CRASH_EXIT_CODE`); ``docs/STORAGE.md`` states the protocol and its test. Kept out
of :mod:`mfjko.io` (storage) so that storage and its test hook are read apart; this module
imports nothing of the package. ``mfjko.io`` re-exports every name.
"""

from __future__ import annotations

import os

__all__ = ["CRASH", "CrashPoints", "SimulatedCrash", "CRASH_ENV", "CRASH_EXIT_CODE"]

#: environment variable: end the process (exit status CRASH_EXIT_CODE, no cleanup) at the
#: k-th write point, as ``kill -9`` would (crash-consistency probes)
CRASH_ENV = "MFJKO_CRASH_AT"
#: exit status of a process ended by CRASH_ENV (137 = 128 + SIGKILL, as after kill -9)
CRASH_EXIT_CODE = 137


class SimulatedCrash(BaseException):
    """Raised at an armed write point in-process.

    A BaseException, so that no ``except Exception`` handler of the run (or of zarr) treats
    it as an error to clean up after.
    """


class CrashPoints:
    """Counts write points and ends the run at the armed one.

    Counts write points (each file write, rename and delete of a run) and ends the run
    at the armed one: the test hook of the crash-consistency test.

    Attributes:
      count: write points passed since :meth:`arm` (or since import).
      trace: labels of the points passed, when armed with ``trace=True``.
    """

    def __init__(self):
        self.count = 0
        self.at: int | None = None
        self.mode = "raise"
        self.trace: list[str] | None = None
        self.dead = False  # after a simulated crash, no write may reach the disk

    def arm(self, at: int | None, mode: str = "raise", trace: bool = False) -> None:
        """Crash at the ``at``-th point from now (None: only count).

        Args:
          at: 1-based index of the point to crash at, or None.
          mode: "raise" (:class:`SimulatedCrash`) or "exit" (``os._exit(137)``).
          trace: keep the labels of the points passed in :attr:`trace`.
        """
        if mode not in ("raise", "exit"):
            raise ValueError(f"mode must be 'raise' or 'exit', got {mode!r}")
        self.count, self.at, self.mode, self.dead = 0, at, mode, False
        self.trace = [] if trace else None

    def disarm(self) -> None:
        """Stop crashing and tracing (the count goes on)."""
        self.at, self.trace = None, None

    def arm_from_env(self) -> None:
        """Arm in "exit" mode from ``MFJKO_CRASH_AT`` if it is set."""
        value = os.environ.get(CRASH_ENV)
        if value:
            try:
                at = int(value)
            except ValueError:
                raise ValueError(f"{CRASH_ENV} must be an integer >= 1, got {value!r}") from None
            self.arm(at, "exit")

    def alive(self) -> None:
        """Refuse every write after a simulated crash.

        Raise :class:`SimulatedCrash` after a simulated crash: a write still queued (zarr
        may run several in one event-loop batch) must not reach the disk, as after a kill.
        """
        if self.dead:
            raise SimulatedCrash("write after a simulated crash")

    def hit(self, label: str) -> None:
        """One write point, about to do ``label``."""
        self.alive()
        self.count += 1
        if self.trace is not None:
            self.trace.append(label)
        if self.at is not None and self.count == self.at:
            if self.mode == "exit":
                os._exit(CRASH_EXIT_CODE)
            self.dead = True
            raise SimulatedCrash(f"simulated crash at write point {self.count}: {label}")


#: the process-wide write-point counter (see :class:`CrashPoints`)
CRASH = CrashPoints()
