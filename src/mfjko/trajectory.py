"""One result schema for every method: a measure trajectory on the mean-field time axis.

Every dynamics (particle GD, implicit steps, gradient flow, Langevin, grid JKO, peer
methods) returns a :class:`Trajectory`: at recorded times ``t`` (mean-field time, see
MATH.md "time scaling"), a weighted point set in Θ of its parametrization.

- particles: ``support`` varies, shape (T, m, D); ``weights`` fixed, shape (m,) = 1/m;
- grid JKO: ``support`` fixed, shape (N, D); ``weights`` vary, shape (T, N).

``diagnostics`` maps a name to an array whose first axis is T (per recorded time) —
e.g. Sinkhorn iterations, marginal error, Newton iterations, inner-solver residuals.
Arrays are NumPy (results live at the edges, outside jit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Trajectory"]


@dataclass(frozen=True)
class Trajectory:
    """A method's measure at recorded mean-field times (module docstring).

    Attributes:
      method: the method's name (e.g. "gd", "jko").
      param: the parametrization's name.
      t: (T,) recorded mean-field times.
      support: (T, m, D) moving particles, or (N, D) a fixed grid.
      weights: (m,) fixed particle weights, or (T, N) grid weights.
      diagnostics: name → (T,) per-record figures.
      meta: the method's settings and anything needed to resume (e.g. a solver state).
    """

    method: str
    param: str
    t: np.ndarray
    support: np.ndarray
    weights: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        T = len(self.t)
        if self.support.ndim == 3 and self.support.shape[0] != T:
            raise ValueError(f"support has {self.support.shape[0]} frames, t has {T}")
        if self.weights.ndim == 2 and self.weights.shape[0] != T:
            raise ValueError(f"weights has {self.weights.shape[0]} frames, t has {T}")
        for k, v in self.diagnostics.items():
            if len(v) != T:
                raise ValueError(f"diagnostic {k!r} has {len(v)} entries, t has {T}")

    def __len__(self) -> int:
        return len(self.t)

    @property
    def moving_support(self) -> bool:
        """Whether the support moves (particles: (T, m, D)) rather than the weights (grids)."""
        return self.support.ndim == 3

    def measure(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(support (K, D), weights (K,)) at recorded time index i."""
        s = self.support[i] if self.support.ndim == 3 else self.support
        w = self.weights[i] if self.weights.ndim == 2 else self.weights
        return s, w

    def final(self) -> tuple[np.ndarray, np.ndarray]:
        """(support (K, D), weights (K,)) at the last recorded time."""
        return self.measure(len(self.t) - 1)

    @staticmethod
    def concatenate(pieces: list[Trajectory]) -> Trajectory:
        """Consecutive trajectories of one method joined as one.

        Each piece after the first starts where the previous one ended, without its initial
        record; meta is the first piece's updated by the last one's.
        """
        first = pieces[0]
        cat = lambda xs: np.concatenate(xs, axis=0)
        grid = first.weights.ndim == 2
        return Trajectory(
            method=first.method, param=first.param, t=cat([p.t for p in pieces]),
            support=first.support if grid else cat([p.support for p in pieces]),
            weights=cat([p.weights for p in pieces]) if grid else first.weights,
            diagnostics={k: cat([p.diagnostics[k] for p in pieces]) for k in first.diagnostics},
            meta={**first.meta, **pieces[-1].meta})
