r"""The seed's classic full-batch GD on L(W, α) = Σ_j (h(x_j) − y_j)² + λ Σ_i (‖w_i‖² + α_i²).

(W, α) ← (W, α) − lr ∇L: the UNSCALED classic network, kept for reference. Its time axis is
the classic one, t = k·lr (NOT mean-field time); the state is the classic neurons as
``neuron`` particles (w_i, α_i), whose uniform measure predicts h(x)/m. Not a config
method (its time axis differs from every other method's).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from mfjko.methods.base import Diagnostics, MethodInfo, ParticleState, Stepper, check_positive
from mfjko.objective import classic_loss

__all__ = ["ClassicGD", "METHOD"]

_classic_loss_jit = jax.jit(classic_loss)


@jax.jit
def _classic_advance(W, alpha, X, y, lam, lr, n):
    grad = jax.grad(classic_loss, argnums=(0, 1))

    def body(i, state):
        W, a = state
        gW, ga = grad(W, a, X, y, lam)
        return W - lr * gW, a - lr * ga

    return lax.fori_loop(0, n, body, (W, alpha))


@dataclass(frozen=True)
class ClassicGD(Stepper):
    """GD on the classic loss L with step ``lr`` (classic time t = k·lr).

    The problem must use the ``neuron`` parametrization (θ = (w, α)). Every record holds
    ``classic_loss`` L(W, α).
    """

    name = "classic_gd"
    lr: float = 1e-3

    def __post_init__(self):
        check_positive(self.lr, "lr")

    @property
    def step_size(self) -> float:
        """Classic time of one step, ``lr`` (not mean-field time)."""
        return float(self.lr)

    def init(self, problem, initial) -> ParticleState:
        """Validated particles θ (m, d + 1); ValueError unless the parametrization is ``neuron``."""
        if problem.param.name != "neuron":
            raise ValueError("classic GD runs on the neuron parametrization θ = (w, α)")
        return super().init(problem, initial)

    def record_diagnostics(self, state) -> dict[str, float]:
        """The classic loss L(W, α) of the state, ``{"classic_loss": value}``."""
        p, d = state.problem, state.problem.d
        th = jnp.asarray(state.theta)
        return {"classic_loss": float(_classic_loss_jit(th[:, :d], th[:, d], p.X, p.y, p.lam))}

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` classic GD steps on (W, α): (new state, empty Diagnostics)."""
        p, d = state.problem, state.problem.d
        th = jnp.asarray(state.theta)
        W1, a1 = _classic_advance(th[:, :d], th[:, d], p.X, p.y, p.lam, jnp.float64(self.lr),
                                  jnp.int32(n_steps))
        theta = jnp.concatenate([W1, a1[:, None]], axis=1)
        return ParticleState(p, theta, state.k + n_steps), Diagnostics()


METHOD = MethodInfo("classic_gd", ClassicGD, None, None, color="tab:brown",
                    summary="the seed's unscaled GD on L(W, α) (classic time axis)")
