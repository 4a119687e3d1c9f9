"""``global``: branch and bound on the straggler time τ with knapsack bounds (docs/certified.md).

Any allocation with straggler time in ``[τa, τb]`` has tokens that fit at ``τb`` (W_min is
non-increasing in τ), so its STE is at most ``F_LP(τb) / τa`` with ``F_LP`` the knapsack's LP
relaxation; the tangent interval bound (W_min is also convex in τ) is much tighter. The search
(:func:`ste_opt.solvers.ste.taubb.best_first`) starts from a geometric grid on
``[τ_lo, τ_max]`` (``τ_lo``: where the all-``k_lo`` allocation first fits; beyond ``τ_max`` no
window grows, so the STE only falls), keeps the interval with the largest bound, splits it at its
geometric midpoint and evaluates the knapsack there; the integer (Lagrangian + fill) solution at
each evaluated τ is a feasible allocation with STE ≥ F_int(τ)/τ. It stops when the best bound is
within ``tol`` (relative) of the incumbent. The incumbent's tokens are finally given the exact
resource step (least straggler time, spare bandwidth handed out).

Splitting τ cannot remove the knapsack's LP–integer gap. When the interval with the largest bound
is narrower than ``tol/4`` (relative), or when the LP–integer gap at its right end is what keeps it
open, the **exact integer step** (:func:`ste_opt.solvers.ste.mckp.exact_integer_step`:
reduced-cost fixing around the LP price, then a best-first branch and bound on the fractional
device over the few devices left) bounds the integer optimum ``F*(τb)``, hence the interval by
``F*(τb)/τa``, within ``tol/4``: every instance certifies.

Most intervals need no LP: each is first bounded at one price, ``λ_ref`` (the LP price at the τ
whose LP ratio is the best so far), by ``max(Φ(λ_ref, τb)/τb, Φ(λ_ref, τa)/τa)``; only when that
fails are the LP at τb and the interval's own price search used. Large problems run without W_min
tables (:class:`ste_opt.solvers.ste.mckp.FreeNode`), locate the best τ first with a few LPs
(regula falsi on the sign of the LP ratio's derivative) and centre the initial grid there. The
per-τ work is in :mod:`ste_opt.solvers.ste.mckp`; time and memory grow linearly in M.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np

from ...errors import SolverError
from ..registry import register
from .knapsack import BOUND_SLACK, certified_solution
from .mckp import Static, exact_integer_step, new_node
from .taubb import best_first, tau_grid, tau_range

__all__ = ["global_bb", "tau_range"]

log = logging.getLogger(__name__)
# the centred grid's offsets from the located τ: 0.6 % · 2^k above it, 0.6 % · 3^k below it (the
# STE falls slowly above the best τ, so intervals there have less slack and must be narrower)
GRID_BASE, GRID_FACTOR = 0.006, 2.0
GRID_BASE_LEFT, GRID_FACTOR_LEFT = 0.006, 3.0


@register("ste", "global",
          "branch and bound on the straggler time with knapsack Lagrangian bounds and an exact "
          "integer step; certified gap <= tol", bound="bound")
def global_bb(problem, tol: float = 1e-4, max_nodes: int = 100_000, time_limit: float = 600.0,
              n_init: int = 6, tangent: bool = True, cache_size: int | None = None,
              exact_step: bool = True, two_sided: bool = True, fixed_price: bool = True,
              tables: str = "auto", centred_grid: bool = True):
    """Certified ε-optimal STE allocation.

    Parameters
    ----------
    tol : float
        Relative gap ``(bound - STE) / bound`` at which the search stops (default 1e-4).
    max_nodes, time_limit : int, float
        Stop early (status ``time_limit``) after this many τ evaluations or seconds; the
        returned bound and gap are still valid.
    n_init : int
        Points of the initial geometric grid on ``[τ_lo, τ_max]``.
    tangent : bool
        Use the tangent interval bound (much tighter, far fewer nodes); ``False`` uses the plain
        ``F_LP(τb)/τa``.
    cache_size : int, optional
        τ points whose tables are kept, the one being built included (each about 20 bytes per
        device and level); default: as many as fit in about 600 MB, at least 3 and at most 64.
    exact_step : bool
        Close the LP–integer gap with the exact integer knapsack (default); ``False`` keeps the
        LP-only search, which can stall on small instances (status ``time_limit``).
    two_sided : bool
        With tables, also try the tangents at both ends of narrow intervals (default).
    fixed_price : bool
        Bound intervals at ``λ_ref`` first (default); ``False``: the LP and the interval's own
        price at every τ (the previous behaviour).
    tables : {"auto", "full", "none"}
        Knapsack nodes with W_min tables (``"full"``), without (``"none"``, computed when read;
        needs a payload affine in the tokens), or by size (``"auto"``: tables up to 11,000
        device-level entries).
    centred_grid : bool
        Without tables, centre the initial τ grid on the located τ (default).
    """
    if not tol > 0:
        raise SolverError(f"tol must be > 0, got {tol}")
    t_start = time.perf_counter()
    st = Static(problem, tables=tables)
    lo, hi = tau_range(problem)
    best = dict(value=-np.inf, tokens=None, tau=None)
    rows = st.rows
    if cache_size is None:
        cache_size = int(min(64, max(3, 6e8 // (20.0 * st.M * st.L))))
    cache: OrderedDict = OrderedDict()
    hint = [None, None]                  # previous LP price and columns (warm start)
    stats = dict(exact_steps=0, exact_nodes=0, exact_core_max=0, exact_incomplete=0, fixed_price=0)
    exact_ub: dict = {}     # τb -> (upper bound on the integer optimum F*(τb), complete, node budget)
    lp_gap: dict = {}       # τ -> (LP value, LP − integer value) of the knapsack there (None: infeasible)

    def offer(tokens, value_f, tau):
        """A token vector that fits at τ with Σ WF = value_f: tighten its τ and keep the best."""
        val = value_f / tau
        if val <= best["value"]:
            return
        t_act, _, _ = problem.min_straggler_time(tokens, rel_tol=1e-9, tau_hi=tau)
        if np.isfinite(t_act) and t_act <= tau:
            val, tau = value_f / t_act, t_act
        best.update(value=val, tokens=np.asarray(tokens).copy(), tau=tau)

    ref = dict(ratio=-np.inf, lam=None)  # LP price at the τ with the best LP ratio so far
    starts: dict = {}                     # τ -> levels at the price ref["lam"] there
    near: dict = {}                       # τ -> levels at ref["lam"] for the tangent costs there

    def nearest_start(tau):
        """λ_ref's levels at τ: interpolated (in log τ) between the nearest evaluated τ on
        either side, else extrapolated from the two nearest on one side, else the one evaluated
        τ's (a start for the searches only)."""
        if tau in starts:
            return starts[tau]
        if tau in near:
            return near[tau]
        if not starts:
            return hint[1]
        below = sorted(x for x in starts if x < tau)
        above = sorted(x for x in starts if x > tau)
        if below and above:
            t0, t1 = below[-1], above[0]                      # interpolated between neighbours
        elif len(below) >= 2 or len(above) >= 2:
            t0, t1 = (below[-1], below[-2]) if below else (above[0], above[1])  # extrapolated
        else:
            return starts[(below or above)[0]]
        w = np.log(tau / t0) / np.log(t1 / t0)
        x = np.rint(starts[t0] + w * (starts[t1] - starts[t0])).astype(np.intp)
        return np.clip(x, st.base, st.L - 1)

    lps: dict = {}                        # τ -> (λ*, LP levels) of the LPs solved so far

    def lp_hint(tau):
        """A start for the LP at τ: λ* interpolated in log τ between the nearest solved LPs on
        either side (λ* moves smoothly with τ), with the nearer one's levels; else the nearest
        one's, else the last LP's."""
        below = [x for x in lps if x < tau and lps[x][0] and lps[x][0] > 0]
        above = [x for x in lps if x > tau and lps[x][0] and lps[x][0] > 0]
        if below and above:
            t0, t1 = max(below), min(above)
            w = np.log(tau / t0) / np.log(t1 / t0)
            l0, l1 = lps[t0][0], lps[t1][0]
            lam = float(np.exp(np.log(l0) + w * (np.log(l1) - np.log(l0))))
            return lam, lps[t0 if w < 0.5 else t1][1]
        if below or above:
            t = max(below) if below else min(above)
            return lps[t]
        return hint[0], hint[1]

    def table(tau):
        """Tables at τ (cached), LP not necessarily solved."""
        if tau in cache:
            cache.move_to_end(tau)
            return cache[tau]
        while len(cache) >= max(cache_size, 1):        # make room first: peak memory = cache_size
            cache.popitem(last=False)
        nd = new_node(st, tau, slopes=tangent)
        cache[tau] = nd
        return nd

    def point(tau):
        """Tables and LP at τ (cached); updates the incumbent."""
        nd = table(tau)
        if nd.lam is not None or (tau in lp_gap and not nd.feasible):
            return nd
        if nd.feasible:
            nd.lp(*lp_hint(tau))
            hint[:] = [nd.lam, nd.lp_cols]
            lps[tau] = (nd.lam, nd.lp_cols)
            offer(nd.tokens, nd.int_value, tau)
            if nd.lp_value / tau > ref["ratio"]:
                if ref["lam"] != nd.lam:
                    starts.clear()
                    near.clear()
                ref.update(ratio=nd.lp_value / tau, lam=nd.lam, tau=tau)
                starts[tau] = nd.lp_cols
        lp_gap[tau] = (nd.lp_value, nd.lp_value - nd.int_value) if nd.feasible else None
        return nd

    def threshold():
        return best["value"] * (1 + tol) * (1 - 2 * BOUND_SLACK)

    def ibound(a, b):
        u = np.inf
        if tangent and fixed_price and ref["lam"] is not None:
            # first the Lagrangian at the best LP's price (no LP at b): near the optimum that
            # price is nearly the best one, so most intervals close here
            nd = table(b)
            if not nd.feasible:
                return -np.inf
            u, u_b, cols, cols_a = nd.fixed_price_bound(
                ref["lam"], a, start=nearest_start(b), start_a=nearest_start(a) if st.free else None)
            if cols is not None:
                starts[b] = cols
                if a not in starts:           # (the tangent's levels at a: close to a's own)
                    near[a] = cols_a
            if u <= threshold():
                stats["fixed_price"] += 1
                return u
            if u_b <= threshold() and b > a * (1 + 0.1 * np.sqrt(tol)):
                # its end at b is below the threshold, so splitting closes it (the excess shrinks
                # as the square of the width): no interval price search (and, without tables,
                # no LP at b); those and the exact step are for the intervals splitting cannot
                # close. With tables the LP is cheap and may improve the incumbent.
                if not st.free:
                    point(b)
                return u
        nd = point(b)
        if not nd.feasible:
            return -np.inf
        if not tangent:
            return nd.lp_value / a
        rtol = min(1e-6, tol / 100)
        u = min(u, nd.interval_bound(a, target=threshold(), rtol=rtol), nd.lp_value / a)
        na = cache.get(a)
        thr = threshold()
        if two_sided and thr < u <= thr * (1 + 6 * tol) and na is not None and na.feasible \
                and na.lam is not None and na.direct:
            # the tangents at both ends: [a, m] from a's table, [m, b] from b's (about a quarter
            # of the one-sided excess: tried only where that would close the interval)
            m = float(np.sqrt(a * b))
            if a < m < b:
                u1 = na.interval_bound(m, target=threshold(), rtol=rtol)
                if u1 < u:
                    u = min(u, max(u1, nd.interval_bound(m, target=threshold(), rtol=rtol)))
        return u

    def gap_at(a, b, ub):
        """Does the knapsack's LP–integer gap at b keep [a, b] open (the bound less that gap
        would prune it)?"""
        if b not in lp_gap:
            point(b)
        got = lp_gap[b]
        if got is None:
            return False
        lp, g = got
        return g > 0.25 * tol * abs(lp) and ub - g / a <= threshold()

    def int_bound(b, a, budget):
        """Upper bound on F*(b) from the exact integer step (target: what [a, b] needs)."""
        got = exact_ub.get(b)
        if got is not None and (got[1] or got[2] >= budget):
            return got[0]
        nd = point(b)
        if not nd.feasible:
            return -np.inf
        # target lowered by the step's own tolerance: "nothing above the target" prunes [a, b]
        res = exact_integer_step(nd, target=threshold() * a / (1 + tol / 4), rel_gap=tol / 4,
                                 max_nodes=budget)
        stats["exact_steps"] += 1
        stats["exact_nodes"] += res.nodes
        stats["exact_core_max"] = max(stats["exact_core_max"], res.core)
        if not res.complete:
            stats["exact_incomplete"] += 1
        if res.value > nd.int_value and res.cols is not None:
            offer(st.lev[res.cols], res.value, b)
        log.debug("global: exact step at %.9g: core %d devices, %d nodes, bound %.9g", b, res.core,
                  res.nodes, res.bound)
        exact_ub[b] = (min(res.bound, got[0]) if got else res.bound, res.complete, budget)
        return exact_ub[b][0]

    # seed: all k_lo at τ_lo (fits by construction)
    k0 = problem.k_lo.copy()
    tau0 = lo / (1 - 1e-9)
    best.update(value=float(np.sum(problem.WF[rows, k0])) / tau0, tokens=k0, tau=tau0)
    def locate(max_lp=8):
        """LPs at a few τ to put the price ``ref["lam"]`` (and the incumbent) near the best τ:
        regula falsi (Illinois) in log τ on the sign of d(F_LP/τ)/dτ, i.e. of ``τ dF/dτ − F``
        (the slope from the envelope theorem), until a step is below 0.1 %. Returns the number
        of LPs."""
        xl, xh = np.log(lo), np.log(hi)
        a_ = b_ = None                        # (x, d) with d > 0 (left end), d < 0 (right end)
        x = 0.5 * (xl + xh)
        n = 0
        keep = 0                              # Illinois: which end stayed twice
        while n < max_lp:
            nd = point(float(np.exp(x)))
            n += 1
            d = nd.lp_tau_slope() * nd.tau - nd.lp_value if nd.feasible else np.inf
            if not np.isfinite(d) and nd.feasible:
                break
            if d > 0:
                a_ = (x, d)
                keep = keep - 1 if keep < 0 else -1
            else:
                b_ = (x, d)
                keep = keep + 1 if keep > 0 else 1
            if a_ is None:
                x_new = 0.5 * (xl + x)
            elif b_ is None:
                x_new = 0.5 * (x + xh)
            else:
                da = a_[1] * (0.5 if keep >= 2 else 1.0) if np.isfinite(a_[1]) else None
                db = b_[1] * (0.5 if keep <= -2 else 1.0)
                if da is None:
                    x_new = 0.5 * (a_[0] + b_[0])
                else:
                    x_new = (a_[0] * db - b_[0] * da) / (db - da)
            # stop when the step is short, or when what it can still gain (half its linear
            # prediction, |d| |Δx| / 2 relative to F) is far below tol
            if abs(x_new - x) < 1e-3 or (np.isfinite(d) and nd.lp_value > 0 and
                                         abs(d) * abs(x_new - x) < 0.2 * tol * nd.lp_value):
                break
            x = x_new
        return n

    located = locate() if tangent and fixed_price and st.free else 0
    grid = tau_grid(lo, hi, n_init)
    if located and ref.get("tau") is not None and centred_grid:
        # the intervals the certificate needs are narrow near the located τ and widen away from
        # it (the bound's excess grows as the square of the width): a grid centred there
        t0 = ref["tau"]
        offs = GRID_BASE * GRID_FACTOR ** np.arange(12)
        offs_l = GRID_BASE_LEFT * GRID_FACTOR_LEFT ** np.arange(12)
        pts = np.concatenate([[lo, hi, t0], t0 * (1 + offs), t0 / (1 + offs_l)])
        grid = np.unique(pts[(pts >= lo) & (pts <= hi)])
    heap: list = []
    pairs = list(zip(grid[:-1], grid[1:]))
    if located and ref.get("tau") is not None and centred_grid:
        # outward from the located τ: each new end is next to one already searched
        t0 = ref["tau"]
        pairs.sort(key=lambda ab: max(abs(np.log(ab[0] / t0)), abs(np.log(ab[1] / t0))))
    for a, b in pairs:
        u = ibound(a, b)
        if np.isfinite(u):
            heap.append((-u, a, b, False))

    def refine(item):
        negu, a, b, done = item
        if not exact_step or done:
            return None
        narrow = b <= a * (1 + tol / 4)
        if st.free and not narrow and b > a * (1 + 0.1 * np.sqrt(tol)) and \
                (b not in cache or cache[b].lam is None):
            return None                 # (no LP at b yet: wide intervals are split first)
        if narrow or gap_at(a, b, -negu):
            # the LP–integer gap at b matters: bound by the integer optimum at b
            u = min(-negu, int_bound(b, a, 20_000 if narrow else 2_000) / a)
            return (-u, a, b, True)
        return None

    def split(a, m, b, ub, _):
        # [m, b] first: its left end's levels start the searches at m for [a, m]
        for lo_, hi_ in ((m, b), (a, m)):
            u = min(ibound(lo_, hi_), ub)      # a child's bound never exceeds its parent's
            if hi_ in exact_ub:
                u = min(u, exact_ub[hi_][0] / lo_)
            if np.isfinite(u):
                yield (-u, lo_, hi_, False)

    def stop(splits):
        if len(grid) + splits + located >= max_nodes or time.perf_counter() - t_start > time_limit:
            return "time_limit"
        return None

    status, bound, splits = best_first(heap, incumbent=lambda: best["value"], tol=tol, split=split,
                                       stop=stop, unsplittable="prune", refine=refine)
    nodes = len(grid) + splits + located
    log.debug("global: %d nodes, %d exact steps, bound %.9g, incumbent %.9g", nodes,
              stats["exact_steps"], bound, best["value"])
    return certified_solution(problem, best["tokens"], bound, method="global", status=status,
                              tol=tol, iterations=nodes,
                              info={"nodes": nodes, "tau_range_s": (lo, hi), "tol": tol, **stats})
