r"""Implicit steps (proximal point / backward Euler) on the particles, by a jitted Newton.

θ_{k+1} = argmin_θ G(θ) + ‖θ − θ_k‖²/(2mh): one step advances t by h. The inner problem
is solved by Newton (exact Hessian, block-diagonal + rank-n structure, predictor = the
explicit Euler step) until the ∞-norm of (θ − θ_k)/h − v(θ) (velocity units; sphere: its
tangent part) is ≤ tol. ReLU kinks, where the backward Euler equation has no solution,
are hyperplanes of z-space: each particle carries the face of kinks it sits on, Newton
runs on the faces and a multiplier test releases a kink (active-face Newton, residual in
the Clarke sense: :func:`_implicit_solve`); steps that miss tol are flagged in the
diagnostics and warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from pydantic import BaseModel, ConfigDict, Field

from mfjko.methods.base import (
    Diagnostics,
    MethodInfo,
    ParticleState,
    Stepper,
    check_int,
    check_positive,
)
from mfjko.methods.gd import ReferenceInit, particle_velocity
from mfjko.objective import residual, velocity
from mfjko.parametrizations import relu

__all__ = ["ImplicitSteps", "ImplicitConfig", "METHOD"]

# ---------------------------------------------------------------------------------------
# Implicit steps (proximal point / backward Euler), solved by a jitted Newton method
# ---------------------------------------------------------------------------------------
#
# Unknown z (m, D). For Euclidean Θ, θ = z. For the sphere, z = (z_s, β) with
# θ = (z_s/‖z_s‖, β); the merit gets a term (‖z_s‖ − 1)²/(2h), which vanishes with its
# gradient on the sphere and removes the radial null direction of the Hessian.
# Scaled merit (m times the proximal objective, so gradients are in velocity units):
#   Ψ(z) = m G(θ(z)) + Σ_i ‖θ_i − θ_i^k‖²/(2h) [+ sphere term]
#   ∇_{z_i} Ψ = ∇ψ_i(z_i; r),  ψ_i(z; r) = (1/n) Σ_j r_j m(θ(z); x_j) + (λ/2) V(θ(z))
#                                          + ‖θ(z) − θ_i^k‖²/(2h),   r = f_μ(X) − y,
#   ∇²Ψ = blockdiag(∇²ψ_i) + (1/(n m)) Jᵀ J,   J[j, (i, :)] = ∇_{z_i} m(θ(z_i); x_j).
# The Newton system is solved by the Woodbury identity (an n×n system) when n < m·D,
# densely otherwise. At a Euclidean solution ∇Ψ = (θ − θ^k)/h − v(θ): the backward
# Euler residual; on the sphere it is its tangent part. Weighted particles (masses p_i):
# the rows of ∇ of F(μ_θ) + Σ p_i‖θ_i − θ_i^k‖²/(2h) divided by p_i are the same ∇ψ_i, with
# r = f_μ − y of μ = Σ p_i δ_{θ_i}, and the coupling term is (1/n) Jᵀ J diag(p).
#
# Kinks. With r frozen, every non-smooth term of ψ_i is c_k(z) σ(a_kᵀz) with a FIXED
# normal a_k of z-space (so a kink is a hyperplane through 0) and a smooth coefficient:
#   data kink j (neuron, signed, sphere): a = (x_j, 0), c = α r_j/n (sphere: β r_j/(n‖z_s‖),
#     as σ(sᵀx) = σ(z_sᵀx)/‖z_s‖);  pm: a = (x_j, 0), c = r_j/n and a = (0, x_j), c = −r_j/n;
#   signed, α = 0 (of (λ/2)|α|‖w‖²): a = e_α, c = λ‖w‖²;  sphere, β = 0 (of λ|β|): a = e_β, c = 2λ.
# Across kink k the gradient jumps by c_k a_k (σ(a_kᵀz) = 0 on it kills ∇c_k). On a face
# F = {a_kᵀz = 0, k ∈ A} with independent normals, z is a local minimizer iff
#   P∇ψ^A = 0 and ∇ψ^A = −Σ_{k∈A} μ_k a_k with 0 ≤ μ_k ≤ c_k,
# ∇ψ^A the gradient with the kinks of A on their σ = 0 branch and P the orthogonal projector
# onto F (take directions that move off one kink only). A concave kink (c_k < 0) never holds
# a minimizer. (pm's cone points u = 0, v = 0 of ‖u‖, ‖v‖ are not hyperplanes: not treated.)

_KINKED = ("neuron", "signed", "sphere", "pm")


def _embed(param, z):
    if param.on_sphere:
        s = z[:-1]
        return jnp.concatenate([s / jnp.sqrt(jnp.sum(s * s)), z[-1:]])
    return z


def _kinks(param, X):
    """The kink hyperplanes a_kᵀz = 0 of ψ_i (block comment above).

    Returns:
      Normals A (K, D); the weight block each data kink lives in (K, D) bool (all False
      for the kinks of V); the group of each kink (K,) (NumPy); the most kinks of each
      group a particle may sit on at once (tuple): d for a neuron's w (w = 0 allowed),
      d − 1 for the sphere's direction (s ≠ 0) and for pm's u, v (whose cone point 0 is
      not a hyperplane face).
    """
    n, d = X.shape
    D = param.dim(d)
    w_block = jnp.broadcast_to(jnp.arange(D) < d, (n, D))
    if param.name in ("neuron", "signed", "sphere"):
        A = jnp.concatenate([X, jnp.zeros((n, 1), X.dtype)], axis=1)
        cap = d - 1 if param.on_sphere else d
        if param.name == "neuron":
            return A, w_block, np.zeros(n, int), (cap,)
        e = jnp.zeros((1, D), X.dtype).at[0, -1].set(1.0)
        blk = jnp.concatenate([w_block, jnp.zeros((1, D), bool)])
        return jnp.concatenate([A, e]), blk, np.r_[np.zeros(n, int), 1], (cap, 1)
    if param.name == "pm":
        O = jnp.zeros_like(X)
        A = jnp.concatenate([jnp.concatenate([X, O], 1), jnp.concatenate([O, X], 1)])
        blk = jnp.concatenate([w_block, ~w_block])
        return A, blk, np.r_[np.zeros(n, int), np.ones(n, int)], (d - 1, d - 1)
    # an unknown parametrization: no kink treatment (one inert zero normal)
    return jnp.zeros((1, D), X.dtype), jnp.zeros((1, D), bool), np.zeros(1, int), (0,)


def _kink_coefficients(param, z, r, X, lam):
    """The jump coefficients c_k(z_i) of every kink for every particle, shape (m, K).

    The gradient of ψ_i jumps by c_k a_k from the side a_kᵀz < 0 to the side a_kᵀz > 0.
    """
    n, m = X.shape[0], z.shape[0]
    if param.name in ("neuron", "signed"):
        c = z[:, -1:] * r[None, :] / n
        if param.name == "signed":
            c = jnp.concatenate([c, lam * jnp.sum(z[:, :-1] ** 2, axis=1, keepdims=True)], 1)
        return c
    if param.name == "sphere":
        zn = jnp.sqrt(jnp.sum(z[:, :-1] ** 2, axis=1, keepdims=True))
        c = z[:, -1:] * r[None, :] / (n * zn)
        return jnp.concatenate([c, jnp.full((m, 1), 2.0 * lam)], 1)
    if param.name == "pm":
        return jnp.broadcast_to(jnp.concatenate([r, -r]) / n, (m, 2 * n))
    return jnp.zeros((m, 1))


def _branch_output(param, th, X, off):
    """m(θ; x_j) for every j, with the kinks flagged in ``off`` (K,) on their σ = 0 branch.

    Value and derivatives 0 on that branch; equal to ``param.output`` on those kinks.
    """
    if off is None or param.name not in _KINKED:
        return param.output(th, X)
    n = X.shape[0]
    if param.name == "pm":
        u, v = jnp.split(th, 2)
        return relu(jnp.where(off[:n], -1.0, X @ u)) - relu(jnp.where(off[n:], -1.0, X @ v))
    return th[-1] * relu(jnp.where(off[:n], -1.0, X @ th[:-1]))


def _branch_potential(param, th, off, n):
    """V(θ), with the kink at α = 0 (signed) or β = 0 (sphere) on its negative branch.

    Only when flagged in ``off`` (index n).
    """
    if off is None or param.name not in ("signed", "sphere"):
        return param.potential(th)
    if param.name == "signed":
        a = th[-1]
        return jnp.where(off[n], -a, jnp.abs(a)) * jnp.sum(th[:-1] ** 2) + a * a
    return 2.0 * jnp.where(off[n], -th[-1], jnp.abs(th[-1]))


def _local_merit(param, z, theta_prev, r, X, lam, h, act=None):
    th = _embed(param, z)
    n = X.shape[0]
    val = (
        jnp.dot(_branch_output(param, th, X, act), r) / n
        + 0.5 * lam * _branch_potential(param, th, act, n)
        + jnp.sum((th - theta_prev) ** 2) / (2.0 * h)
    )
    if param.on_sphere:
        val = val + (jnp.sqrt(jnp.sum(z[:-1] ** 2)) - 1.0) ** 2 / (2.0 * h)
    return val


def _merit_grad(param, z, theta_prev, X, y, lam, h, act=None, weights=None):
    thetas = jax.vmap(lambda zi: _embed(param, zi))(z)
    m = z.shape[0]
    r = residual(param, thetas, jnp.full((m,), 1.0 / m) if weights is None else weights, X, y)
    return _local_grads(param, z, theta_prev, r, X, lam, h, act), r


def _newton_direction(param, z, theta_prev, r, g, X, lam, h, free, act=None, weights=None):
    """Newton direction of the coupled system restricted to each particle's face.

    Also returns the per-particle Hessian blocks B (m, D, D). ``free``: (m,) bool (a
    frozen particle gets Δ_i = 0) or (m, D, D) orthogonal projectors P_i onto the
    particles' faces (Δ_i ∈ range P_i: the system is (P B P + I − P) per block, the
    Jacobian J P); ``act`` (m, K) the kinks held on their σ = 0 branch. ``weights`` (m,):
    masses p_i (None: 1/m); the Jacobian of the scaled residuals is then
    blockdiag(B) + (1/n) Jᵀ J diag(p), solved by the same Woodbury identity.
    """
    m, D = z.shape
    n = X.shape[0]
    eye_D = jnp.eye(D)
    Pm = free[:, None, None] * eye_D if free.ndim == 1 else free
    ax = None if act is None else 0
    hess = jax.hessian(_local_merit, argnums=1)
    B = jax.vmap(hess, in_axes=(None, 0, 0, None, None, None, None, ax))(
        param, z, theta_prev, r, X, lam, h, act
    )  # (m, D, D)
    Bf = Pm @ B @ Pm + (eye_D - Pm)
    gf = jnp.einsum("ide,ie->id", Pm, g)
    # J3[i, j, :] = ∇_{z_i} m(θ(z_i); x_j), restricted to the face
    J3 = jax.vmap(jax.jacfwd(lambda zi, ai: _branch_output(param, _embed(param, zi), X, ai)),
                  in_axes=(0, ax))(z, act)  # (m, n, D)
    J3 = J3 @ Pm
    if n < m * D:
        # one batched solve for both right-hand sides [g, Jᵀ]
        sol = jnp.linalg.solve(Bf, jnp.concatenate([gf[..., None], jnp.swapaxes(J3, 1, 2)], 2))
        Bi_g, Bi_Jt = sol[..., 0], sol[..., 1:]  # (m, D), (m, D, n)
        if weights is None:
            cap = n * m * jnp.eye(n) + jnp.einsum("ijd,idk->jk", J3, Bi_Jt)
            JBg = jnp.einsum("ijd,id->j", J3, Bi_g)
        else:  # the masses scale J's column blocks
            cap = n * jnp.eye(n) + jnp.einsum("i,ijd,idk->jk", weights, J3, Bi_Jt)
            JBg = jnp.einsum("i,ijd,id->j", weights, J3, Bi_g)
        return Bi_g - jnp.einsum("idk,k->id", Bi_Jt, jnp.linalg.solve(cap, JBg)), B
    J = jnp.transpose(J3, (1, 0, 2)).reshape(n, m * D)
    eye_m = jnp.eye(m)
    coupling = J.T @ J / (n * m) if weights is None else J.T @ (J * jnp.repeat(weights, D)) / n
    H = (Bf[:, :, None, :] * eye_m[:, None, :, None]).reshape(m * D, m * D) + coupling
    return jnp.linalg.solve(H, gf.reshape(-1)).reshape(m, D), B


def _local_grads(param, z, theta_prev, r, X, lam, h, act=None):
    """∇ψ_i(z_i; r) for every particle, with the residual r frozen, shape (m, D).

    The kinks flagged in ``act`` (m, K) are on their σ = 0 branch.
    """
    g = jax.grad(_local_merit, argnums=1)
    ax = None if act is None else 0
    return jax.vmap(g, in_axes=(None, 0, 0, None, None, None, None, ax))(
        param, z, theta_prev, r, X, lam, h, act
    )


# Long on purpose (≈140 lines): one jitted active-face Newton whose closures (faces,
# addable, add, evaluate, the loop body) share the kink tables A, blk, group and caps and
# the traced step data; lifting them to module level would thread ~10 arguments through
# each without making a piece testable on its own. The loop body is under 60 lines.
def _implicit_solve(param, theta_prev, X, y, lam, h, tol, max_iter, weights=None):
    """One backward Euler step from theta_prev (particle masses ``weights``; None: 1/m).

    Returns (θ, iterations, residual ∞-norm, fraction of particles with residual ≤ tol).
    Active-face Newton for the piecewise-smooth merit (kinks: block comment above). Each
    particle carries a face, a set A_i of kinks it sits on (≤ S slots, independent
    normals). An iteration (1) releases, from particles whose tangential gradient has
    settled, the kink whose multiplier violates 0 ≤ μ_k ≤ c_k most, moving the particle
    1e-12·(1 + ‖z_i‖) off it, to the side that descends; (2) takes the coupled Newton step
    restricted to the faces; (3) stops a particle at the first kink its step crosses if
    the kink holds it along the step (convex, c_k > 0, and the one-sided derivative beyond
    it, by the local quadratic model with the jumps of the kinks crossed before, is ≥ 0),
    and adds it to A_i; (4) projects each particle on its face. The residual of particle
    i is ‖P∇ψ^A + Σ_k (μ̂_k − μ_k) a_k‖_∞ with μ the least-squares multipliers and
    μ̂ = clip(μ, 0, max(c, 0)): ∇ψ^A + Σ μ̂_k a_k is an element of the Clarke
    subdifferential of ψ_i, so residual ≤ tol certifies tol-stationarity, and on one kink
    it is the distance of 0 to the segment of one-sided gradients.
    """
    m, D = theta_prev.shape
    A, blk, group, caps = _kinks(param, X)
    K = A.shape[0]
    S = max(sum(caps), 1)
    a2 = jnp.sum(A * A, axis=1)  # (K,)
    a_norm = jnp.sqrt(a2)
    grp = jnp.asarray(group)
    cap_of = jnp.asarray(caps)[grp]  # (K,)
    kink_ids = jnp.arange(K)
    eye_D, eye_S = jnp.eye(D), jnp.eye(S)
    slots = jnp.arange(S)

    def faces(idx):
        """Face data of the slots idx (m, S).

        Returns on (m, S), normals N (m, S, D), NG = G⁻¹N with G the Gram matrix of the
        normals (an empty slot is an identity row), the projector P = I − NᵀG⁻¹N onto
        the face (m, D, D), active kinks (m, K).
        """
        on = idx >= 0
        N = jnp.where(on[..., None], A[jnp.maximum(idx, 0)], 0.0)  # (m, S, D)
        gram = N @ jnp.swapaxes(N, 1, 2) + eye_S * (~on)[:, None, :]
        NG = jnp.linalg.solve(gram, N)
        Pm = eye_D - jnp.einsum("isd,ise->ide", N, NG)
        act = jnp.any(idx[:, :, None] == kink_ids, axis=1)  # (m, K)
        return on, N, NG, Pm, act

    def addable(z, idx, on, act, Pm):
        """Whether kink k can join particle i's face, (m, K) bool.

        It needs room in its group, a normal independent of the face's, and its weight
        block not 0 (there, as under GD with σ'(0) = 0, the block stays 0 and its kinks
        all meet).
        """
        zb = jnp.sum(jnp.where(blk[None], z[:, None, :], 0.0) ** 2, axis=2)  # (m, K)
        floor = (1e-12 * (1.0 + jnp.linalg.norm(z, axis=1))) ** 2
        live = ~jnp.any(blk, axis=1) | (zb > floor[:, None])
        gs = jnp.where(on, grp[jnp.maximum(idx, 0)], -1)  # (m, S)
        count = jnp.sum(gs[:, :, None] == grp[None, None, :], axis=1)  # (m, K)
        PA = jnp.einsum("ide,ke->ikd", Pm, A)
        indep = jnp.sum(PA * PA, axis=2) > 1e-10 * a2
        return ~act & (count < cap_of) & indep & live & (a2 > 0)

    def add(idx, on, k, do):
        slot = jnp.argmax(~on, axis=1)  # first empty slot
        put = do[:, None] & (slots[None, :] == slot[:, None])
        return jnp.where(put, k[:, None].astype(idx.dtype), idx)

    def evaluate(z, idx, fc):
        on, N, NG, Pm, act = fc
        g, r = _merit_grad(param, z, theta_prev, X, y, lam, h, act, weights)
        c = _kink_coefficients(param, z, r, X, lam)
        Pg = jnp.einsum("ide,ie->id", Pm, g)
        mu = -jnp.einsum("isd,id->is", NG, g)  # ∇ψ^A = P∇ψ^A − Σ μ_k a_k
        cs = jnp.where(on, jnp.take_along_axis(c, jnp.maximum(idx, 0), axis=1), 0.0)
        mu_hat = jnp.clip(mu, 0.0, jnp.maximum(cs, 0.0))
        res = jnp.max(jnp.abs(Pg + jnp.einsum("isd,is->id", N, mu_hat - mu)), axis=1)
        an = jnp.where(on, a_norm[jnp.maximum(idx, 0)], 0.0)
        # rate of descent when leaving kink k to its σ = 0 side (μ < 0) or the other (μ > c)
        viol = jnp.where(on, jnp.maximum(-mu, mu - cs) * an, -jnp.inf)
        to_pos = (mu - cs) > -mu
        return dict(g=g, r=r, c=c, res=res, tan=jnp.max(jnp.abs(Pg), axis=1), viol=viol,
                    to_pos=to_pos)

    # Predictor: the explicit Euler step, O(h²) from the solution. (Starting it on the
    # kinks θ_prev sits on saves 0.4 iterations per step on the default config, and
    # costs 2 s of compilation: not worth it.)
    v0 = particle_velocity(param, theta_prev, X, y, lam) if weights is None else \
        velocity(param, theta_prev, weights, X, y, lam)
    z0 = param.project(theta_prev + h * v0)
    idx0 = jnp.full((m, S), -1, jnp.int32)
    delta0 = 1e-12 * (1.0 + jnp.linalg.norm(theta_prev, axis=1))

    def cond(state):
        return (jnp.max(state[2]["res"]) > tol) & (state[3] < max_iter)

    def body(state):
        z, idx, ev, it = state
        # (1) release the most violated kink of settled particles
        vmax = jnp.max(ev["viol"], axis=1)
        s_rel = jnp.argmax(ev["viol"], axis=1)
        release = (ev["res"] > tol) & (vmax > 0) & (ev["tan"] <= jnp.maximum(tol, 0.1 * vmax))
        k_rel = jnp.take_along_axis(idx, s_rel[:, None], axis=1)[:, 0]
        up = jnp.take_along_axis(ev["to_pos"], s_rel[:, None], axis=1)[:, 0]
        idx1 = jnp.where(release[:, None] & (slots[None, :] == s_rel[:, None]), -1, idx)
        on1, _, _, P1, act1 = faces(idx1)
        Pa = jnp.einsum("ide,ie->id", P1, A[jnp.maximum(k_rel, 0)])  # off it, on the others
        Pa = Pa / jnp.maximum(jnp.linalg.norm(Pa, axis=1, keepdims=True), 1e-300)
        shift = jnp.where(up, 1.0, -1.0) * delta0
        z1 = jnp.where(release[:, None], z + shift[:, None] * Pa, z)
        # the gradient on the new branch: + c_k a_k if released to the side a_kᵀz > 0 (r,
        # c and the gradient's smooth part move by O(δ) only, which the next step absorbs)
        c_rel = jnp.take_along_axis(ev["c"], jnp.maximum(k_rel, 0)[:, None], axis=1)[:, 0]
        jump = jnp.where(release & up, c_rel, 0.0)[:, None] * A[jnp.maximum(k_rel, 0)]
        ev1 = dict(ev, g=ev["g"] + jump)
        # (2) Newton step on the faces
        d, B = _newton_direction(param, z1, theta_prev, ev1["r"], ev1["g"], X, lam, h, P1,
                                 act1, weights)
        # (3) the first kink crossed along z1 − s d, s ∈ [0, 1], that holds the particle
        v0, v1 = z1 @ A.T, (z1 - d) @ A.T
        cross = ((v0 > 0) != (v1 > 0)) & ~act1 & (a2 > 0)
        s = jnp.where(cross, v0 / jnp.where(cross, v0 - v1, 1.0), jnp.inf)
        kick = ev1["c"] * jnp.abs(d @ A.T)  # derivative jump along −d at each kink
        before = cross[:, None, :] & (s[:, None, :] < s[:, :, None])
        passed = jnp.sum(jnp.where(before, kick[:, None, :], 0.0), axis=2)
        slope = (-jnp.sum(ev1["g"] * d, axis=1)[:, None]
                 + s * jnp.einsum("id,ide,ie->i", d, B, d)[:, None])
        holds = (cross & (ev1["c"] > 0) & (slope + passed + kick >= 0)
                 & addable(z1, idx1, on1, act1, P1))
        s_hold = jnp.where(holds, s, jnp.inf)
        k_new = jnp.argmin(s_hold, axis=1)
        hit = jnp.any(holds, axis=1)
        step = jnp.where(hit, jnp.min(s_hold, axis=1), 1.0)
        z2 = z1 - step[:, None] * d
        idx2 = add(idx1, on1, k_new, hit)
        # (4) onto the (new) face: removes the rounding drift off the kinks
        fc2 = faces(idx2)
        z2 = jnp.einsum("ide,ie->id", fc2[3], z2)
        return z2, idx2, evaluate(z2, idx2, fc2), it + 1

    state0 = (z0, idx0, evaluate(z0, idx0, faces(idx0)), jnp.zeros((), jnp.int32))
    z, _, ev, it = lax.while_loop(cond, body, state0)
    res = ev["res"]
    theta = jax.vmap(lambda zi: _embed(param, zi))(z)
    return theta, it, jnp.max(res), jnp.mean(res <= tol)



@partial(jax.jit, static_argnames=("param",))
def _implicit_advance(param, theta, X, y, lam, h, tol, n, max_iter, weights=None):
    def body(i, state):
        th, it_max, it_sum, res_max, frac_min = state
        th_new, it, res, frac = _implicit_solve(param, th, X, y, lam, h, tol, max_iter,
                                                weights)
        return (th_new, jnp.maximum(it_max, it), it_sum + it, jnp.maximum(res_max, res),
                jnp.minimum(frac_min, frac))

    zero = jnp.zeros((), jnp.int32)
    one = jnp.ones((), theta.dtype)
    theta, it_max, it_sum, res, frac = lax.fori_loop(
        0, n, body, (theta, zero, zero, jnp.zeros((), theta.dtype), one)
    )
    return theta, it_max, it_sum, res, res <= tol, frac



_DIAGNOSTICS = {"inner_iterations_max": 0.0, "inner_iterations_total": 0.0,
                "inner_residual": 0.0, "converged": 1.0, "particles_converged": 1.0}


@dataclass(frozen=True)
class ImplicitSteps(Stepper):
    """Backward Euler (proximal point) steps of length h.

    Attributes:
      h: time step (mean-field time).
      tol: tolerance on the ∞-norm of the backward Euler residual (velocity units).
      max_iter: Newton iteration cap per step.

    Interval diagnostics: ``inner_iterations_max``, ``inner_iterations_total``,
    ``inner_residual`` (max final residual), ``converged`` (1.0 if every step met tol),
    ``particles_converged`` (smallest fraction of particles meeting tol). An interval
    with a step that misses tol warns (RuntimeWarning). Particles may carry fixed masses
    p_i (μ = Σ p_i δ_{θ_i}): the step is then argmin F(μ_θ) + Σ p_i‖θ_i − θ_i^k‖²/(2h),
    whose backward Euler equation is (θ_i − θ_i^k)/h = −∇F′(μ_{k+1})(θ_i) as before.
    """

    name = "implicit"
    weighted = True
    diagnostics = _DIAGNOSTICS
    h: float = 0.01
    tol: float = 1e-10
    max_iter: int = 50

    def __post_init__(self):
        check_positive(self.h, "h")
        check_positive(self.tol, "tol")
        check_int(self.max_iter, "max_iter")

    def advance(self, state: ParticleState, n_steps: int):
        """Make ``n_steps`` backward Euler steps of h; warns if a step misses ``tol``."""
        p = state.problem
        w = None if state.weights is None else jnp.asarray(state.weights, jnp.float64)
        theta, it_max, it_sum, res, ok, frac = _implicit_advance(
            p.param, state.theta, p.X, p.y, p.lam, jnp.float64(self.h), jnp.float64(self.tol),
            jnp.int32(n_steps), jnp.int32(self.max_iter), w)
        diag = dict(inner_iterations_max=float(it_max), inner_iterations_total=float(it_sum),
                    inner_residual=float(res), converged=float(bool(ok)),
                    particles_converged=float(frac))
        if not ok:
            warn_unconverged(self.name, self.tol, state.k, n_steps, self.h, diag)
        return ParticleState(p, theta, state.k + n_steps, state.weights), Diagnostics(diag)


def warn_unconverged(name, tol, k, n_steps, h, diag) -> None:
    """One RuntimeWarning for an interval whose inner solves missed ``tol``."""
    import warnings

    warnings.warn(
        f"{name}: the inner solve missed tol = {tol:g} in the interval ending at "
        f"t = {(k + n_steps) * h:g} (worst residual {diag['inner_residual']:.3g}); see "
        "diagnostics['converged'] and ['inner_residual']", RuntimeWarning, stacklevel=3)


class ImplicitConfig(BaseModel):
    """``methods.implicit``: backward Euler steps of length h, Newton to ``tol``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    h: float = Field(0.01, gt=0, allow_inf_nan=False)
    tol: float = Field(1e-10, gt=0, allow_inf_nan=False)
    init: ReferenceInit = "auto"

    def step_size(self) -> float:
        """The time step h (mean-field time), to check it divides ``record_every``."""
        return self.h


def _build(mc: ImplicitConfig, setup) -> ImplicitSteps:
    return ImplicitSteps(h=mc.h, tol=mc.tol)


METHOD = MethodInfo("implicit", ImplicitSteps, ImplicitConfig, _build, color="tab:blue",
                    linestyle=":", summary="implicit (proximal-point) particle steps")
