"""SFLAM's power block for a fixed matching and bits, and the objective of an allocation.

The upload energy ``e(p) = p S / r(p)`` is concave and increasing in p. :func:`power_step_exact`
(vectorized): for a straggler time τ each device uses the least power finishing by
``min(τ, deadline)``, clipped to its range; its energy is convex and non-increasing in τ, so
``J(τ) = ω' τ + (1 − ω') Σ e_n(τ)`` is convex and its minimizer is found by bisection on ``J'``.
:func:`power_step_sca`: successive convex approximation, the tangent of e at the current power is
an upper surrogate and each step is a convex program (cvxpy).
"""
from __future__ import annotations

import numpy as np

from ...errors import SolverError
from ...model.channel import LN2

__all__ = ["BIG_COST", "gather", "bracket", "power_step_exact", "power_step_sca"]

#: cost of a forbidden pair in the linear assignments
BIG_COST = 1e30


def gather(problem, tb, asg):
    n = np.arange(problem.N)
    return problem.c[n, asg], problem.phi[n, asg], tb.p_hi[n, asg], tb.S


def bracket(problem, asg, p, bits):
    """U = R(b) (α0 T_round + β0 Σ E) of an allocation; ``inf`` if a limit is violated."""
    ev = problem.evaluate_unchecked(asg, p, bits)
    if np.any(ev["latency"] > problem.deadline * (1 + 1e-9)) or \
            np.any(ev["energy"] > problem.e_max * (1 + 1e-9)):
        return np.inf
    if not problem.reachable(bits):
        return np.inf
    return problem.rounds(bits) * (problem.alpha0 * ev["t_round"] + problem.beta0 * float(np.sum(ev["energy"])))



def power_step_exact(problem, asg, bits, tb=None, return_tau: bool = False):
    """Exact power block for a fixed matching and bits (convex 1-D search on the straggler time).

    Returns the powers (N,) or ``None`` when the matching cannot meet a deadline or battery.
    """
    tb = problem.tables(bits) if tb is None else tb
    n = np.arange(problem.N)
    if not tb.feasible[n, asg].all():
        return (None, None) if return_tau else None
    c, phi, p_hi, S = gather(problem, tb, asg)
    D, plo = problem.deadline, problem.p_lo
    t_lb = c + S / problem.rate(phi, p_hi)
    tau_lb = float(np.max(t_lb))
    t_lo = c + S / problem.rate(phi, plo)
    tau_up = max(tau_lb, float(np.max(np.minimum(t_lo, D))))
    a0, b0 = problem.alpha0, problem.beta0

    def powers(tau):
        w = np.minimum(tau, D) - c
        return np.clip(problem.power_for_window(S, w, phi), plo, p_hi)

    def dJ(tau):
        w = np.minimum(tau, D) - c
        x = S * LN2 / (problem.subchannel_hz * w)
        preq = np.expm1(x) / phi
        g = (np.expm1(x) - x * np.exp(x)) / phi
        act = (tau < D) & (preq > plo)
        return a0 + b0 * float(np.sum(np.where(act, g, 0.0)))

    if b0 == 0.0 or dJ(tau_lb) >= 0.0:
        tau = tau_lb
    elif a0 == 0.0:
        tau = tau_up
    else:
        lo, hi = tau_lb, tau_up
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if dJ(mid) >= 0.0:
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-14 * hi:
                break
        tau = hi
    p = powers(tau)
    return (p, tau) if return_tau else p


def power_step_sca(problem, asg, bits, p0=None, tb=None, max_iter: int = 50, tol: float = 1e-9,
                   solver: str | None = None, return_trace: bool = False):
    """Power block by successive convex approximation (cvxpy).

    The upload energy ``e(p) = p S / r(p)`` is concave, so its tangent at the current power is an
    upper surrogate; each step minimizes ``α0 τ + β0 Σ [e(p^j) + e'(p^j)(p − p^j)]`` subject to
    ``c + S inv_pos(r(p)) ≤ τ``, the deadlines and ``p_lo ≤ p ≤ p_hi`` (units Mbit, MHz, s). The
    true objective never increases (majorization–minimization); a step that would raise it (solver
    inaccuracy) ends the iteration. Returns the powers (and the objective trace).
    """
    import cvxpy as cp

    tb = problem.tables(bits) if tb is None else tb
    n = np.arange(problem.N)
    if not tb.feasible[n, asg].all():
        return (None, []) if return_trace else None
    c, phi, p_hi, S = gather(problem, tb, asg)
    D, plo = problem.deadline, problem.p_lo
    S_mb, B_mhz = S / 1e6, problem.subchannel_hz / 1e6
    a0, b0 = problem.alpha0, problem.beta0
    N = problem.N
    p = cp.Variable(N, name="power_w")
    tau = cp.Variable(name="tau_s")
    grad = cp.Parameter(N, name="energy_slope")      # β0 e'(p^j), scaled
    a_par = cp.Parameter(nonneg=True, name="time_weight")   # α0, scaled
    rate = B_mhz * cp.log(1 + cp.multiply(phi, p)) / LN2
    up = cp.multiply(S_mb, cp.inv_pos(rate))
    cons = [p >= plo, p <= p_hi, c + up <= tau]
    fin = np.isfinite(D)
    if fin.any():
        cons.append(c[fin] + up[fin] <= D[fin])
    prob = cp.Problem(cp.Minimize(a_par * tau + grad @ p), cons)

    def true_j(pp):
        r = problem.rate(phi, pp)
        t = c + S / r
        return a0 * float(np.max(t)) + b0 * float(np.sum(problem.e_cmp + pp * S / r))

    pj = np.clip(problem.p_max[n] if p0 is None else np.asarray(p0, dtype=float), plo, p_hi)
    jj = true_j(pj)
    trace = [jj]
    for _ in range(max_iter):
        r = problem.rate(phi, pj)
        dr = problem.subchannel_hz * phi / ((1 + phi * pj) * LN2)
        scale = 1.0 / max(jj, 1e-300)
        grad.value = b0 * scale * (S / r - pj * S * dr / r ** 2)
        a_par.value = a0 * scale
        try:
            prob.solve(solver=solver) if solver else prob.solve()
        except cp.error.SolverError as exc:  # pragma: no cover - numerical failure
            raise SolverError(f"SCA power step failed: {exc}") from exc
        if p.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
            break
        pn = np.clip(np.asarray(p.value, dtype=float), plo, p_hi)
        jn = true_j(pn)
        if not jn < jj:
            break
        improve = (jj - jn) / max(abs(jj), 1e-300)
        pj, jj = pn, jn
        trace.append(jj)
        if improve <= tol:
            break
    return (pj, trace) if return_trace else pj
