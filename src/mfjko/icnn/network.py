r"""Input-convex neural network (ICNN) potential ψ: ℝ^D → ℝ for meshless JKO steps.

ψ(θ) = ½ θᵀ(δI + BᵀB)θ + cᵀθ + Σ_k a_k z_{L,k}(θ), with the ICNN (Amos et al. 2017)
z_1 = s(W_1 θ + b_1), z_{l+1} = s(U_l z_l + W_{l+1} θ + b_{l+1}), s = softplus, and
U_l = softplus(U_l^raw) ≥ 0, a = softplus(a^raw) ≥ 0. s is convex and non-decreasing, so
every z_l is convex in θ, and ∇²ψ ⪰ δI: ψ is δ-strongly convex and ∇ψ is injective and
monotone. At initialization B = √(1−δ) I, c = 0 and a ≈ init_scale·1/h_L, so that
∇ψ(θ) ≈ θ (the identity map). The maths is in docs/MATH.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["ICNN", "init_icnn", "potential_grad", "potential_hessian", "inverse_softplus"]


def inverse_softplus(y: float) -> float:
    """X with softplus(x) = y > 0 (log(eᵞ − 1), computed stably)."""
    if not y > 0:
        raise ValueError(f"inverse_softplus needs y > 0, got {y}")
    return y + math.log(-math.expm1(-y))


class ICNN(eqx.Module):
    """The convex potential ψ (module docstring). Call ``psi(theta)`` on one θ of shape (D,).

    Fields: ``B`` (D, D) and ``c`` (D,) of the quadratic-plus-linear part; per hidden layer
    l = 1..L the input weights ``W[l]`` (h_l, D) and biases ``b[l]`` (h_l,); the raw
    hidden-to-hidden weights ``U_raw[l]`` (h_{l+1}, h_l), l = 1..L−1, and raw output
    weights ``a_raw`` (h_L,), made nonnegative by softplus; ``delta`` (static) > 0, the
    strong-convexity floor of ∇²ψ.
    """

    B: Array
    c: Array
    W: tuple[Array, ...]
    b: tuple[Array, ...]
    U_raw: tuple[Array, ...]
    a_raw: Array
    delta: float = eqx.field(static=True)
    sharpness: float = eqx.field(static=True, default=1.0)

    @property
    def dim(self) -> int:
        """D, the dimension of Θ."""
        return self.c.shape[0]

    @property
    def quadratic(self) -> Array:
        """Q = δI + BᵀB (D, D), the Hessian of the quadratic part."""
        return self.delta * jnp.eye(self.dim) + self.B.T @ self.B

    def _act(self, u):
        """s(u) = softplus(βu)/β and its first two derivatives."""
        beta = self.sharpness
        sig = jax.nn.sigmoid(beta * u)
        return jax.nn.softplus(beta * u) / beta, sig, beta * sig * (1.0 - sig)

    def convex_part(self, theta: Array) -> Array:
        """φ(θ) = Σ_k a_k z_{L,k}(θ), the ICNN without the quadratic and linear terms."""
        if not self.W:
            return jnp.zeros((), theta.dtype)
        z = self._act(self.W[0] @ theta + self.b[0])[0]
        for U_raw, W, b in zip(self.U_raw, self.W[1:], self.b[1:], strict=True):
            z = self._act(jax.nn.softplus(U_raw) @ z + W @ theta + b)[0]
        return jnp.dot(jax.nn.softplus(self.a_raw), z)

    def __call__(self, theta: Array) -> Array:
        """ψ(θ) for one θ of shape (D,) (the definition; autodiff of it is the reference)."""
        Bt = self.B @ theta
        quad = 0.5 * (self.delta * jnp.dot(theta, theta) + jnp.dot(Bt, Bt))
        return quad + jnp.dot(self.c, theta) + self.convex_part(theta)

    # Batched closed forms. Pre-activations p_l (m, h_l), p_1 = θW_1ᵀ + b_1,
    # p_{l+1} = s(p_l)U_lᵀ + θW_{l+1}ᵀ + b_{l+1}; backward weights c_L = a,
    # c_l = (c_{l+1} ⊙ s'(p_{l+1}))U_l ≥ 0. Then ∇φ = Σ_l (c_l ⊙ s'(p_l))W_l and
    # ∇²φ = Σ_l G_lᵀ diag(c_l ⊙ s''(p_l)) G_l with G_l = ∂p_l/∂θ (h_l, D):
    # G_1 = W_1, G_{l+1} = U_l diag(s'(p_l)) G_l + W_{l+1} (a sum of PSD terms).
    def cache(self, thetas: Array) -> dict:
        """Per-sample activations of ``thetas`` (m, D) used by the batched closed forms."""
        U = [jax.nn.softplus(u) for u in self.U_raw]
        p = [thetas @ self.W[0].T + self.b[0]] if self.W else []
        for l in range(len(U)):
            p.append(self._act(p[-1])[0] @ U[l].T + thetas @ self.W[l + 1].T + self.b[l + 1])
        acts = [self._act(pl) for pl in p]
        d1 = [a[1] for a in acts]
        a_out = jax.nn.softplus(self.a_raw)
        c = [None] * len(p)
        if p:
            c[-1] = jnp.broadcast_to(a_out, p[-1].shape)
            for l in range(len(p) - 2, -1, -1):
                c[l] = (c[l + 1] * d1[l + 1]) @ U[l]
        return {"thetas": thetas, "U": U, "d1": d1, "c": c,
                "curv": [cl * a[2] for cl, a in zip(c, acts, strict=True)]}

    def grad_batch(self, thetas: Array, cache: dict | None = None) -> Array:
        """∇ψ(θ_i) for every row of ``thetas`` (m, D), shape (m, D) (closed form)."""
        k = self.cache(thetas) if cache is None else cache
        g = thetas @ self.quadratic + self.c
        for W, cl, d1 in zip(self.W, k["c"], k["d1"], strict=True):
            g = g + (cl * d1) @ W
        return g

    def hessian_batch(self, thetas: Array, cache: dict | None = None) -> Array:
        """∇²ψ(θ_i) for every row of ``thetas`` (m, D), shape (m, D, D) (closed form)."""
        k = self.cache(thetas) if cache is None else cache
        m = thetas.shape[0]
        H = jnp.broadcast_to(self.quadratic, (m, self.dim, self.dim))
        G = None
        for l, W in enumerate(self.W):
            G = W[None] if l == 0 else jnp.einsum("hk,mk,mkd->mhd", k["U"][l - 1],
                                                  k["d1"][l - 1], G) + W[None]
            G = jnp.broadcast_to(G, (m,) + W.shape)
            H = H + jnp.einsum("mhd,mh,mhe->mde", G, k["curv"][l], G)
        return H

    def hvp_batch(self, cache: dict, V: Array) -> Array:
        """∇²ψ(θ_i) v_i for the cached samples and V (m, D), shape (m, D) (closed form)."""
        n_layers = len(self.W)
        u = []
        g = None
        for l in range(n_layers):
            g = V @ self.W[0].T if l == 0 else (
                (cache["d1"][l - 1] * g) @ cache["U"][l - 1].T + V @ self.W[l].T)
            u.append(cache["curv"][l] * g)
        out = V @ self.quadratic
        e = None
        for l in range(n_layers - 1, -1, -1):
            e = u[l] if l == n_layers - 1 else u[l] + cache["d1"][l] * (e @ cache["U"][l])
            out = out + e @ self.W[l]
        return out


def init_icnn(
    key: Array,
    dim: int,
    hidden: Sequence[int] = (32, 32),
    delta: float = 1e-3,
    init_scale: float = 1e-2,
    input_scale: float = 1.0,
    sharpness: float = 1.0,
) -> ICNN:
    """A random ICNN on ℝ^dim whose gradient map starts near the identity.

    Args:
      key: JAX PRNG key.
      dim: D, the dimension of Θ.
      hidden: widths (h_1, …, h_L) of the hidden layers; () gives the pure quadratic
        ψ = ½θᵀ(δI + BᵀB)θ + cᵀθ (affine maps only).
      delta: strong-convexity floor δ ∈ (0, 1) of ∇²ψ.
      init_scale: total output weight Σ_k a_k at initialization (small: ∇ψ ≈ identity).
      input_scale: typical ‖θ‖ of the samples; input weights are N(0, 1/(D·input_scale²)).
      sharpness: β of the activation s(u) = softplus(βu)/β (β → ∞: ReLU).

    Returns:
      ICNN with B = √(1−δ) I, c = 0, U_l ≈ 1/h_l entrywise (± 10 %), a_k = init_scale/h_L.
    """
    if not (isinstance(dim, int) and dim >= 1):
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be >= 1, got {hidden}")
    if not (0.0 < delta < 1.0):
        raise ValueError(f"delta (strong-convexity floor) must be in (0, 1), got {delta}")
    if not (init_scale > 0 and input_scale > 0):
        raise ValueError("init_scale and input_scale must be > 0")
    if not (math.isfinite(sharpness) and sharpness > 0):
        raise ValueError(f"sharpness β of softplus(βu)/β must be > 0, got {sharpness}")
    B, c, W, b, U_raw, a_raw = _init_arrays(key, dim, hidden, float(delta), float(init_scale),
                                            float(input_scale))
    return ICNN(B=B, c=c, W=W, b=b, U_raw=U_raw, a_raw=a_raw, delta=float(delta),
                sharpness=float(sharpness))


@partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _init_arrays(key, dim, hidden, delta, init_scale, input_scale):
    # one compiled program per architecture (eager, each small op would compile alone)
    L = len(hidden)
    keys = jax.random.split(key, 3 * L + 1)
    std = 1.0 / (math.sqrt(dim) * input_scale)
    W = tuple(std * jax.random.normal(keys[i], (h, dim)) for i, h in enumerate(hidden))
    b = tuple(0.1 * jax.random.normal(keys[L + i], (h,)) for i, h in enumerate(hidden))
    U_raw = []
    for i in range(1, L):
        h_in = hidden[i - 1]
        mean = inverse_softplus(1.0 / h_in)
        # softplus(raw) ≈ (1/h_in)(1 + 0.1ξ): a mean-preserving layer with diverse units
        U_raw.append(mean + 0.1 * jax.random.normal(keys[2 * L + i], (hidden[i], h_in)))
    h_last = hidden[-1] if hidden else 0
    a_raw = jnp.full((h_last,), inverse_softplus(init_scale / h_last) if h_last else 0.0,
                     dtype=jnp.float64)
    return (math.sqrt(1.0 - delta) * jnp.eye(dim), jnp.zeros(dim), W, b, tuple(U_raw), a_raw)


def potential_grad(psi: ICNN, thetas: Array) -> Array:
    """∇ψ(θ_i) for every row of ``thetas`` (m, D), shape (m, D): the transport map."""
    return psi.grad_batch(thetas)


def potential_hessian(psi: ICNN, thetas: Array) -> Array:
    """∇²ψ(θ_i) for every row of ``thetas`` (m, D), shape (m, D, D)."""
    return psi.hessian_batch(thetas)
