"""SFLAM as a MILP over subchannels × power levels × bits with a τ epigraph (Pyomo + HiGHS).

Optimistic discretization. For a common bit-width b, partition the possible straggler times
``[τ_LB, τ_UP]`` by a grid ``τ_0 < τ_1 < ... < τ_L = τ_UP`` (``τ_{-1} = τ_LB``, every device on
its best subchannel at full power). Power level j of device n on subchannel k is the least power
finishing by ``min(τ_j, deadline_n)`` (at least p_min), with energy ``e_{n,k,j}``; its time is
counted optimistically as ``τ_{j-1}``. If the optimum has its straggler time τ* in
``(τ_{j-1}, τ_j]``, every device finishes by τ_j on its subchannel, so its energy is at least
``e_{n,k,j}``: the MILP

    minimize   Σ_b R(b) (α0 τ_b + β0 Σ_{n,k,j} e_{n,k,j,b} y_{n,k,j,b})
    subject to Σ_{j,b} w_{j,b} = 1                      (one level and one bit-width)
               Σ_k y_{n,k,j,b} = w_{j,b}   ∀ n, j, b    (each device on one subchannel)
               Σ_n y_{n,k,j,b} ≤ w_{j,b}   ∀ k, j, b    (each subchannel to at most one device)
               τ_b ≥ Σ_{k,j} τ_{j-1} y_{n,k,j,b}  ∀ n, b (τ epigraph)
               y, w binary

is a relaxation and HiGHS's dual bound is a lower bound on the optimum. Its matching with the
exact power step gives a feasible allocation (upper bound). The grid is refined around the
levels that can still hold the optimum until the gap is at most ``tol``. Levels whose bound
(an exact linear assignment once the level is fixed) already exceeds the incumbent are pruned
from the model (``prune=True``); the certificate is then ``min(MILP bound, pruned bounds)``.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...errors import InfeasibleError, SolverError
from ..registry import register
from .bcd import bcd
from .power import BIG_COST, bracket, power_step_exact

__all__ = ["milp", "level_tables"]


def level_tables(problem, tb, grid, tau_lb):
    """Energies (L, N, K) of every power level (inf where the pair cannot finish by τ_j) and the
    optimistic times (L,)."""
    out = []
    for tj in grid:
        E, _, ok = problem.least_energy_table(tb, np.minimum(tj, problem.deadline)[:, None] - problem.c)
        out.append(np.where(ok, problem.e_cmp[:, None] + E, np.inf))
    lower = np.concatenate([[tau_lb], np.asarray(grid)[:-1]])
    return np.asarray(out), lower


def _range(problem, tb):
    with np.errstate(invalid="ignore"):
        t_best = np.min(np.where(tb.feasible, tb.t_min, np.inf), axis=1)
        t_lo = problem.c + tb.S[:, None] / problem.rate(problem.phi, problem.p_lo[:, None])
        t_up = np.where(tb.feasible, np.minimum(t_lo, problem.deadline[:, None]), -np.inf)
    return float(np.max(t_best)), float(np.max(t_up))


def _solve_model(levels, problem, scale, time_limit, mip_gap):
    import pyomo.environ as pyo
    from pyomo.contrib.solver.common.factory import SolverFactory

    N, K = problem.N, problem.K
    m = pyo.ConcreteModel()
    L = list(range(len(levels)))
    bits_used = sorted({lv["b"] for lv in levels})
    idx = []
    for li, lv in enumerate(levels):
        nn, kk = np.nonzero(np.isfinite(lv["E"]))
        idx += [(li, int(a), int(c)) for a, c in zip(nn, kk)]
    m.w = pyo.Var(L, domain=pyo.Binary)
    m.y = pyo.Var(idx, domain=pyo.Binary)
    m.tau = pyo.Var(bits_used, domain=pyo.NonNegativeReals)
    by_ln: dict = {}
    by_lk: dict = {}
    by_bn: dict = {}
    for (li, n, k) in idx:
        by_ln.setdefault((li, n), []).append(k)
        by_lk.setdefault((li, k), []).append(n)
        by_bn.setdefault((levels[li]["b"], n), []).append((li, k))
    m.one = pyo.Constraint(expr=sum(m.w[li] for li in L) == 1)
    m.assign = pyo.ConstraintList()
    for li in L:
        for n in range(N):
            ks = by_ln.get((li, n), [])
            m.assign.add(sum(m.y[li, n, k] for k in ks) == m.w[li] if ks else m.w[li] == 0)
        for k in range(K):
            ns = by_lk.get((li, k), [])
            if ns:
                m.assign.add(sum(m.y[li, n, k] for n in ns) <= m.w[li])
    m.epi = pyo.ConstraintList()
    for (b, n), lst in by_bn.items():
        m.epi.add(m.tau[b] >= sum(levels[li]["lower"] * m.y[li, n, k] for li, k in lst))
    R = {lv["b"]: lv["R"] for lv in levels}
    obj = sum(R[b] * problem.alpha0 * scale * m.tau[b] for b in bits_used)
    obj += sum(levels[li]["R"] * problem.beta0 * scale * float(levels[li]["E"][n, k]) * m.y[li, n, k]
               for (li, n, k) in idx)
    m.obj = pyo.Objective(expr=obj, sense=pyo.minimize)
    opt = SolverFactory("highs")
    if not opt.available():  # pragma: no cover
        raise SolverError("HiGHS is not available to Pyomo (pip install highspy)")
    res = opt.solve(m, time_limit=time_limit, rel_gap=mip_gap, raise_exception_on_nonoptimal_result=False,
                    load_solutions=False)
    bound = res.objective_bound
    lb = -np.inf if bound is None or not np.isfinite(bound) else float(bound) / scale
    chosen = None
    asg = None
    if res.incumbent_objective is not None:
        res.solution_loader.load_vars()
        wv = np.array([pyo.value(m.w[li]) for li in L])
        chosen = int(np.argmax(wv))
        asg = np.full(N, -1)
        for n in range(N):
            for k in by_ln.get((chosen, n), []):
                if pyo.value(m.y[chosen, n, k]) > 0.5:
                    asg[n] = k
        if np.any(asg < 0):
            asg = None
    return lb, chosen, asg, len(idx) + len(L), str(res.termination_condition)


@register("sflam", "milp", "MILP over subchannels × power levels × bits with a τ epigraph (Pyomo + "
          "HiGHS); optimistic discretization gives a certified lower bound", bound="bound")
def milp(problem, levels: int = 16, refine: int = 8, refine_levels: int = 12, tol: float = 1e-3,
         prune: bool = True, warm_start: bool = True, time_limit: float = 60.0, mip_gap: float = 1e-6):
    """Certified solution of the SFLAM problem with a common bit-width (see the module docstring).

    Parameters
    ----------
    levels : initial power levels (straggler-time grid points) per bit-width
    refine, refine_levels : refinement passes and points added inside each refined interval
    tol : target relative gap (status "optimal" when reached)
    prune : drop levels whose exact assignment bound exceeds the incumbent before the MILP
    warm_start : seed the incumbent with ``bcd`` (without baseline starts)
    time_limit, mip_gap : HiGHS limits per MILP solve
    """
    if problem.per_device_bits:
        raise SolverError("milp handles a common bit-width only (per_device_bits=False); use 'bcd'")
    N = problem.N
    n_idx = np.arange(N)
    best = None   # (U, asg, p, bits)

    def offer(asg, bits):
        nonlocal best
        p = power_step_exact(problem, asg, bits)
        if p is None:
            return
        u = bracket(problem, asg, p, bits)
        if np.isfinite(u) and (best is None or u < best[0]):
            best = (u, asg.copy(), p, bits.copy())

    if warm_start:
        try:
            s0 = bcd(problem, baseline_starts=False)
            best = (s0.objective, s0.assignment.copy(), s0.power.copy(), s0.bits.copy())
        except InfeasibleError:
            pass
    grids, ranges, tables = {}, {}, {}
    for b in problem.common_bits:
        bits = np.full(N, b)
        tb = problem.tables(bits)
        lo, up = _range(problem, tb)
        if not np.isfinite(lo) or not np.isfinite(up):
            continue
        up = max(up, lo * (1 + 1e-9))
        ranges[b], tables[b] = (lo, up), tb
        grids[b] = lo * (up / lo) ** (np.arange(1, levels + 1) / levels)
        grids[b][-1] = up
    if not grids:
        raise InfeasibleError("milp: no bit-width admits every device on some subchannel",
                              devices=list(range(N)))
    lb_best = -np.inf
    history, gaps = [], []
    n_vars = 0
    status_txt = ""
    for _pass in range(refine + 1):
        lv_all = []
        for b, grid in grids.items():
            E, lower = level_tables(problem, tables[b], grid, ranges[b][0])
            R = problem.rounds(np.full(N, b))
            for j in range(len(grid)):
                Ej = E[j]
                cost = np.where(np.isfinite(Ej), Ej, BIG_COST)
                rows, cols = linear_sum_assignment(cost)
                asg = cols[np.argsort(rows)]
                if not np.isfinite(Ej[n_idx, asg]).all():
                    continue
                lb = R * (problem.alpha0 * lower[j] + problem.beta0 * float(np.sum(Ej[n_idx, asg])))
                lv_all.append(dict(b=b, j=j, R=R, E=Ej, lower=float(lower[j]), lb=lb, asg=asg))
        if not lv_all:
            raise InfeasibleError("milp: no power level admits a matching meeting every deadline and battery",
                                  devices=list(range(N)))
        for lv in sorted(lv_all, key=lambda d: d["lb"])[:3]:
            offer(lv["asg"], np.full(N, lv["b"]))
        ub = best[0]
        keep = [lv for lv in lv_all if not prune or lv["lb"] < ub * (1 - 1e-12)]
        pruned_lb = min([lv["lb"] for lv in lv_all if lv not in keep] or [np.inf])
        if keep:
            lb_milp, chosen, asg, n_vars, status_txt = _solve_model(keep, problem, 1.0 / ub, time_limit, mip_gap)
            if asg is not None:
                offer(asg, np.full(N, keep[chosen]["b"]))
        else:
            lb_milp = np.inf
        lb_pass = min(lb_milp, pruned_lb)
        lb_best = max(lb_best, min(lb_pass, best[0]))
        gap = (best[0] - lb_best) / max(abs(lb_best), 1e-300)
        history.append(best[0])
        gaps.append(gap)
        if gap <= tol:
            break
        # refine the intervals that can still hold the optimum (best few by bound)
        cand = sorted(keep or lv_all, key=lambda d: d["lb"])[:3]
        for lv in cand:
            b, j = lv["b"], lv["j"]
            g = grids[b]
            a = ranges[b][0] if j == 0 else g[j - 1]
            new = a * (g[j] / a) ** (np.arange(1, refine_levels) / refine_levels)
            grids[b] = np.unique(np.concatenate([g, new]))
    u, asg, p, bits = best
    sol = problem.make_solution(asg, p, bits, status="optimal" if gaps[-1] <= tol else "feasible",
                                history=history, iterations=len(gaps),
                                info={"gaps": gaps, "milp_variables": n_vars, "highs": status_txt,
                                      "levels": {int(b): len(g) for b, g in grids.items()}})
    sol.set_bound(lb_best, sense="min")
    return sol
