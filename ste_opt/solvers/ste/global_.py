"""``global``: branch and bound on the straggler time τ with the knapsack bound (docs/certified.md).

Any allocation with straggler time in ``[τa, τb]`` has tokens that fit at ``τb`` (W_min is
non-increasing in τ), so its STE is at most ``F_LP(τb) / τa`` with ``F_LP`` the knapsack's LP
relaxation (:func:`ste_opt.solvers.ste.knapsack.knapsack_at`, greedy and vectorized). The search
starts from a geometric grid on ``[τ_lo, τ_max]`` (``τ_lo``: where the all-``k_lo`` allocation
first fits; beyond ``τ_max`` no window grows, so the STE only falls), keeps the interval with the
largest bound, splits it at its geometric midpoint and evaluates the knapsack there; the integer
(Lagrangian + fill) solution at each evaluated τ is a feasible allocation with STE ≥ F_int(τ)/τ.
It stops when the best bound is within ``tol`` (relative) of the incumbent. The incumbent's tokens
are finally given the exact resource step (least straggler time, spare bandwidth handed out).
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from ...errors import SolverError
from ..registry import register
from .knapsack import (
    BOUND_SLACK,
    certified_solution,
    interval_bound,
    knapsack_at,
    levels_of,
    wmin_slope_table,
)
from .taubb import best_first, tau_grid, tau_range

__all__ = ["global_bb", "tau_range"]


@register("ste", "global",
          "branch and bound on the straggler time with the greedy knapsack LP bound; certified gap <= tol",
          bound="bound")
def global_bb(problem, tol: float = 1e-4, max_nodes: int = 100_000, time_limit: float = 600.0,
              n_init: int = 6, tangent: bool = True, cache_size: int = 4):
    """Certified ε-optimal STE allocation.

    Parameters
    ----------
    tol : float
        Relative gap ``(bound - STE) / bound`` at which the search stops (default 1e-4).
    max_nodes, time_limit : int, float
        Stop early (status ``time_limit``) after this many knapsack evaluations or seconds; the
        returned bound and gap are still valid.
    n_init : int
        Points of the initial geometric grid on ``[τ_lo, τ_max]``.
    tangent : bool
        Use the tangent interval bound (:func:`ste_opt.solvers.ste.knapsack.interval_bound`, much
        tighter, far fewer nodes); ``False`` uses the plain ``F_LP(τb)/τa``.
    cache_size : int
        Knapsack evaluations kept in memory (each holds two (M, L) tables).
    """
    if not tol > 0:
        raise SolverError(f"tol must be > 0, got {tol}")
    t_start = time.perf_counter()
    levels = levels_of(problem)
    lo, hi = tau_range(problem)
    best = dict(value=-np.inf, tokens=None, tau=None)

    rows = np.arange(problem.M)
    F_tab = problem.WF[:, levels]
    F_tab = np.where(levels[None, :] >= problem.k_lo[:, None], F_tab, -np.inf)
    cache: OrderedDict = OrderedDict()

    def point(tau):
        """Knapsack at τ (cached): LP value, multiplier, W_min table and slopes; updates the incumbent."""
        if tau in cache:
            cache.move_to_end(tau)
            return cache[tau]
        r = knapsack_at(problem, tau, levels)
        if r.feasible and r.tokens is not None:
            val = r.int_value / tau
            if val > best["value"]:
                # its exact straggler time is at most tau: tighten the incumbent
                t_act, _, _ = problem.min_straggler_time(r.tokens, rel_tol=1e-9, tau_hi=tau)
                if np.isfinite(t_act) and t_act <= tau:
                    val = r.int_value / t_act
                best.update(value=val, tokens=r.tokens.copy(), tau=min(tau, t_act))
        D = wmin_slope_table(problem, tau, r.W) if r.feasible else None
        cache[tau] = (r, D)
        while len(cache) > cache_size:
            cache.popitem(last=False)
        return cache[tau]

    def ibound(a, b):
        r, D = point(b)
        if not r.feasible:
            return -np.inf
        if not tangent:
            return r.lp_value / a
        ub = interval_bound(F_tab, r.W, D, a, b, problem.W_tot, r.threshold,
                            target=best["value"] * (1 + tol) * (1 - 2 * BOUND_SLACK))
        return min(ub, r.lp_value / a)

    # seed: all k_lo at τ_lo (fits by construction)
    k0 = problem.k_lo.copy()
    tau0 = lo / (1 - 1e-9)
    best.update(value=float(np.sum(problem.WF[rows, k0])) / tau0, tokens=k0, tau=tau0)
    grid = tau_grid(lo, hi, n_init)
    heap: list = []
    for a, b in zip(grid[:-1], grid[1:]):
        u = ibound(a, b)
        if np.isfinite(u):
            heap.append((-u, a, b, 0.0))

    def split(a, m, b, ub, _):
        for lo_, hi_ in ((a, m), (m, b)):
            u = min(ibound(lo_, hi_), ub)      # a child's bound never exceeds its parent's
            if np.isfinite(u):
                yield (-u, lo_, hi_, 0.0)

    def stop(splits):
        if len(grid) + splits >= max_nodes or time.perf_counter() - t_start > time_limit:
            return "time_limit"
        return None

    status, bound, splits = best_first(heap, incumbent=lambda: best["value"], tol=tol, split=split,
                                       stop=stop, unsplittable="prune")
    nodes = len(grid) + splits
    return certified_solution(problem, best["tokens"], bound, method="global", status=status,
                              tol=tol, iterations=nodes,
                              info={"nodes": nodes, "tau_range_s": (lo, hi), "tol": tol})
