"""The STE problem at a fixed straggler time τ is a multiple-choice knapsack (docs/MODEL.md §3).

For a straggler time τ, device m can keep K tokens iff it gets at least ``W_min_m(K, τ)`` Hz, so

    F*(τ) = max Σ_m WF_m(K_m)   s.t.   Σ_m W_min_m(K_m, τ) ≤ W_tot,   K_m ∈ [k_lo_m, N].

``WF_m`` is concave and ``W_min_m`` convex in K, so the LP relaxation is solved greedily: start every
device at ``k_lo``, then take the increments ``k → k+1`` in decreasing order of their ratio
``ΔF / ΔW`` until the budget is spent (the last one fractionally). Its value ``F_LP(τ)`` is an upper
bound on ``F*(τ)`` (the greedy over increments without the one-level-at-a-time precedence is a
relaxation even if convexity fails numerically). The increments above the threshold ratio λ form
per-device prefixes: that is the Lagrangian solution, which is feasible; a vectorized fill step
then adds next levels while they fit.

Everything is vectorized over devices and levels (no Python loop over devices). ``W_min`` and
its slope in τ come from :class:`ste_opt.model.allocation.UplinkWindows` (the problem's
``uplink``); allocations handed to users are rebuilt with :meth:`STEProblem.min_straggler_time`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SolverError
from ...model.allocation import hand_out_spare

__all__ = ["wmin_table", "wmin_slope_table", "interval_bound", "KnapsackResult",
           "knapsack_at", "levels_of", "polish", "BOUND_SLACK"]

#: relative inflation applied to every certified bound, covering floating-point rounding
BOUND_SLACK = 1e-9


def wmin_table(problem, tau: float, levels, rows=None) -> np.ndarray:
    """``W_min_m(K, τ)`` (Hz) for every active device (or ``rows``) and every level in ``levels``.

    ``levels`` is a 1-D array of token counts (shared by the devices) or a 2-D array with one row
    per device. Returns shape (M, L); ``inf`` where the level cannot be sent within the window.
    """
    lev = np.asarray(levels, dtype=float)
    if lev.ndim == 1:
        lev = lev[None, :]
    return problem.uplink.least_bandwidth_hz(problem.payload_bits(lev), tau, rows)


def wmin_slope_table(problem, tau: float, W) -> np.ndarray:
    """Left derivative ``∂W_min/∂τ`` (Hz/s, ≤ 0) of the table ``W = wmin_table(problem, τ, ...)``
    (:meth:`ste_opt.model.allocation.UplinkWindows.least_bandwidth_slope`)."""
    return problem.uplink.least_bandwidth_slope(tau, W)


def levels_of(problem, level_step: int = 1) -> np.ndarray:
    """Shared token grid from ``min(k_lo)`` to N (step ``level_step``; N always included)."""
    k0 = int(np.min(problem.k_lo))
    lev = np.arange(k0, problem.N + 1, max(int(level_step), 1))
    if lev[-1] != problem.N:
        lev = np.r_[lev, problem.N]
    return lev


@dataclass
class KnapsackResult:
    """Knapsack at one τ: LP bound, integer (Lagrangian + fill) solution."""

    tau: float
    feasible: bool
    lp_value: float = -np.inf          # F_LP(τ): upper bound on Σ WF over allocations fitting at τ
    int_value: float = -np.inf         # Σ WF of ``tokens``
    tokens: np.ndarray | None = None   # integer solution that fits at τ (active devices)
    threshold: float = np.nan          # λ: ratio of the fractional increment
    W: np.ndarray | None = None        # the W_min table at τ (M, L), inf where impossible


def knapsack_at(problem, tau: float, levels=None, fill_rounds: int = 30) -> KnapsackResult:
    """LP bound and an integer solution of the multiple-choice knapsack at straggler time ``tau``."""
    lev = levels_of(problem) if levels is None else np.asarray(levels)
    M = problem.M
    rows = np.arange(M)
    W = wmin_table(problem, tau, lev)                       # (M, L)
    F = problem.WF[:, lev]                                  # (M, L)
    base = np.searchsorted(lev, problem.k_lo)               # index of k_lo in lev (k_lo is on the grid)
    W0 = W[rows, base]
    if not np.all(np.isfinite(W0)):
        return KnapsackResult(tau, False, W=W)
    budget = problem.W_tot - float(np.sum(W0))
    if budget < 0:
        return KnapsackResult(tau, False, W=W)
    F0 = float(np.sum(F[rows, base]))
    j = np.arange(len(lev) - 1)
    above = j[None, :] >= base[:, None]                     # increment j: lev[j] -> lev[j+1]
    with np.errstate(invalid="ignore"):                      # inf - inf above the last finite level
        dW = W[:, 1:] - W[:, :-1]
    dF = F[:, 1:] - F[:, :-1]
    valid = above & np.isfinite(W[:, 1:]) & (dF > 0)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        k = lev[base]
        return KnapsackResult(tau, True, F0, F0, k.copy(), 0.0, W)
    dWv = dW.ravel()[idx]
    dFv = dF.ravel()[idx]
    ratio = dFv / dWv
    order = np.argsort(-ratio, kind="stable")
    cum = np.cumsum(dWv[order])
    n_full = int(np.searchsorted(cum, budget, side="right"))   # items fully taken
    lp = F0 + float(np.sum(dFv[order[:n_full]]))
    if n_full < idx.size:
        used = cum[n_full - 1] if n_full > 0 else 0.0
        nxt = order[n_full]
        lp += dFv[nxt] * max(budget - used, 0.0) / dWv[nxt]
        lam = float(ratio[nxt])
    else:
        lam = 0.0
    # integer solution: per-device prefix of taken increments (increments below k_lo count as taken)
    taken = np.zeros(dW.size, dtype=bool)
    taken[idx[order[:n_full]]] = True
    taken = taken.reshape(dW.shape) | ~above
    cnt = np.cumprod(taken, axis=1).sum(axis=1)             # leading taken increments
    kidx = cnt
    kidx = _fill(W, F, kidx, lev, problem.W_tot, valid, fill_rounds)
    k = lev[kidx]
    return KnapsackResult(tau, True, lp, float(np.sum(F[rows, kidx])), k, lam, W)


def _fill(W, F, kidx, lev, W_tot, valid, rounds):
    """Add next levels (best ratio first) while they fit; vectorized rounds."""
    M = W.shape[0]
    rows = np.arange(M)
    last = len(lev) - 1
    kidx = kidx.copy()
    for _ in range(rounds):
        spare = W_tot - float(np.sum(W[rows, kidx]))
        can = kidx < last
        nxt = np.minimum(kidx + 1, last)
        can &= valid[rows, np.minimum(kidx, last - 1)]
        dw = W[rows, nxt] - W[rows, kidx]
        df = F[rows, nxt] - F[rows, kidx]
        can &= (dw <= spare) & (df > 0)
        cand = np.flatnonzero(can)
        if cand.size == 0:
            break
        order = cand[np.argsort(-(df[cand] / dw[cand]), kind="stable")]
        cum = np.cumsum(dw[order])
        n = int(np.searchsorted(cum, spare, side="right"))
        if n == 0:
            # the best-ratio candidate does not fit with the others first: take the best that fits
            n = 1
        kidx[order[:n]] += 1
        if float(np.sum(W[rows, kidx])) > W_tot:        # (only possible through n = 1 above)
            kidx[order[:n]] -= 1
            break
    return kidx


def polish(problem, tokens):
    """Exact allocation for integer ``tokens``: least straggler time, whole-window power, spare
    bandwidth handed out. Returns ``(bandwidth, power, tau)`` or ``None`` if they do not fit."""
    tau, w, p = problem.min_straggler_time(tokens)
    if not np.isfinite(tau):
        return None
    if float(np.sum(w)) > problem.W_tot:
        return None
    return hand_out_spare(w, problem.W_tot), p, tau


def certified_solution(problem, tokens, bound, *, method: str, status: str, tol: float | None = None,
                       slack: float = BOUND_SLACK, iterations: int = 0, info: dict | None = None):
    """The certified methods' common ending: exact allocation of the incumbent ``tokens``
    (:func:`polish`), a :class:`Solution` whose bound is ``max(bound, objective)`` inflated by
    ``slack`` (floating-point rounding), and ``status`` lowered to ``"feasible"`` when it claims
    ``"optimal"`` with a gap above ``tol``. A non-finite ``bound`` leaves the solution without one."""

    out = polish(problem, tokens)
    if out is None:
        raise SolverError(f"{method}: the incumbent tokens do not fit after the exact resource step "
                          "(floating-point tolerances); please report the instance")
    w, p, _ = out
    sol = problem.make_solution(tokens, w, p, status=status, iterations=iterations, info=info)
    sol.history = [sol.objective]
    b = max(bound, sol.objective) * (1 + slack)
    sol.set_bound(b if np.isfinite(b) else None, sense="max")
    if tol is not None and sol.status == "optimal" and sol.gap is not None and sol.gap > tol:
        sol.status = "feasible"
    return sol


def _phi(F, C, lam, W_tot):
    """Lagrangian ``λ W_tot + Σ_m max_k (F - λ C)`` and its subgradient in λ (F = -inf: excluded,
    C finite everywhere)."""
    V = F - lam * C
    j = np.argmax(V, axis=1)
    rows = np.arange(F.shape[0])
    return lam * W_tot + float(np.sum(V[rows, j])), W_tot - float(np.sum(C[rows, j]))


def interval_bound(F, Wb, Db, a: float, b: float, W_tot: float, lam0: float, iters: int = 30,
                   lam_rtol: float = 1e-6, target: float = -np.inf):
    """Upper bound on the STE of every allocation with straggler time in ``[a, b]``.

    On the interval ``W_min(K, τ) ≥ Wb + (b - τ)|Db|`` (tangent at b); for any λ ≥ 0 the Lagrangian
    ``Φ(λ, τ) = λ W_tot + Σ_m max_K (F - λ (Wb + (b - τ)|Db|))`` bounds Σ F, and ``Φ(λ, τ)/τ`` is a
    maximum of functions monotone in τ, so its largest value on ``[a, b]`` is at an end:
    ``UB = min_λ max(Φ(λ, b)/b, Φ(λ, a)/a)``. The minimization over λ (convex) is by bisection
    on a subgradient, started at ``lam0`` (the LP multiplier at b); every λ gives a valid bound.
    ``F``, ``Wb``, ``Db`` are (M, L) tables; levels with ``F = -inf`` or ``Wb = inf`` are excluded.
    The search stops early once the bound is ``<= target`` (the interval can be pruned).
    """
    valid = np.isfinite(F) & np.isfinite(Wb)
    F = np.where(valid, F, -np.inf)
    Wb = np.where(valid, Wb, 0.0)
    Ca = Wb + (b - a) * np.abs(np.where(valid, Db, 0.0))

    C2 = np.stack([Wb, Ca]).reshape(2 * F.shape[0], -1)    # costs at b (first M rows), at a
    F2 = np.concatenate([F, F])
    M = F.shape[0]
    offs = np.arange(2 * M) * C2.shape[1]
    ends = np.array([b, a])

    def h(lam):
        V = F2 - lam * C2
        idx = offs + V.argmax(axis=1)
        v = V.ravel()[idx]
        c = C2.ravel()[idx]
        phi = lam * W_tot + np.array([v[:M].sum(), v[M:].sum()])
        sub = W_tot - np.array([c[:M].sum(), c[M:].sum()])
        vals = phi / ends
        i = 0 if vals[0] >= vals[1] else 1
        return float(vals[i]), float(sub[i] / ends[i]), i

    lam = max(float(lam0), 0.0)
    best, g, side = h(lam)
    # lam0 minimizes Φ(·, b) (the LP multiplier at b): if that end is the larger one, it is optimal
    if side == 0 or g == 0 or best <= target:
        return best
    # bracket the minimizer by stepping in the descent direction
    lo, hi = (lam, None) if g < 0 else (None, lam)
    step = lam if lam > 0 else float(np.max(np.where(valid, F, 0.0))) / W_tot + 1e-300
    for _ in range(60):
        cand = lam + step if g < 0 else max(lam - step, 0.0)
        v, gc, _ = h(cand)
        best = min(best, v)
        if best <= target:
            return best
        if g < 0:
            if gc >= 0:
                hi = cand
                break
            lo = cand
        else:
            if gc <= 0 or cand == 0.0:
                lo = cand
                break
            hi = cand
        step *= 2
    if lo is None or hi is None:
        return best
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        v, gm, _ = h(mid)
        best = min(best, v)
        if best <= target:
            return best
        if gm < 0:
            lo = mid
        elif gm > 0:
            hi = mid
        else:
            break
        if hi - lo <= lam_rtol * hi:
            break
    return best
