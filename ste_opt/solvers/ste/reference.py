"""Reference solvers for validation: ``scip`` (the exact MINLP in pyscipopt) and ``brute``
(exhaustive enumeration of tokens with the exact resource step, M ≤ 3)."""
from __future__ import annotations

import logging

import numpy as np

from ...errors import SolverError
from ...model import channel
from ...model.allocation import least_feasible_tau
from ...model.channel import LN2
from ..registry import register
from .knapsack import certified_solution
from .taubb import tau_range

__all__ = ["scip", "brute"]

_SCALE = 1e6   # Hz -> MHz, bit -> Mbit inside the MINLP
SCIP_SLACK = 1e-6   # SCIP's feasibility tolerance: its dual bound is inflated by this much
log = logging.getLogger(__name__)


@register("ste", "scip",
          "the exact MINLP (integer K, continuous W and p, epigraph on the straggler time) in "
          "pyscipopt; small M only, for validation", bound="bound")
def scip(problem, time_limit: float = 300.0, gap: float = 1e-4, max_devices: int = 12,
         verbose: bool = False, progress_every_s: float = 2.0):
    """Solve the STE problem as a nonconvex MINLP with SCIP (global optimality within ``gap``).

    Variables per device: integer tokens K, retention value f (hypograph of the concave piecewise
    linear retention), bandwidth W (MHz, ≥ 1 Hz), power p, upload time T; plus the straggler time
    τ and the objective z with ``z τ ≤ Σ f``. Constraints: ``β (K + c0) ≤ T W log2(1 + p h/(N0 W))``,
    ``p T ≤ E``, ``T ≤ T_stand - T0``, ``τ ≥ offset + T``, ``Σ W ≤ W_tot``. SCIP's tokens are then given
    the exact resource step, so the returned allocation is exactly feasible.

    Status: ``"optimal"`` only when the certified gap (SCIP's dual bound inflated by its
    feasibility tolerance, against the exactly-feasible objective) is at most ``gap``; SCIP is run
    to ``gap / 2`` (at least 1e-9) to leave room for that inflation. ``"time_limit"`` when SCIP
    stopped on its time limit, ``"feasible"`` otherwise. ``verbose`` streams SCIP's own output to
    stdout. Progress (nodes, SCIP's primal and dual bounds and gap, seconds; at most every
    ``progress_every_s`` seconds, sooner on a new incumbent) and a summary line go to
    the logger ``ste_opt.solvers.ste.reference`` (INFO with ``verbose``, else DEBUG: quiet in the
    API, shown by the CLI's ``-v``).
    """
    try:
        import pyscipopt as ps
    except ImportError as exc:
        raise SolverError("method 'scip' needs pyscipopt (pip install pyscipopt)") from exc
    M = problem.M
    if M > max_devices:
        raise SolverError(f"scip is for small instances: {M} active devices > max_devices={max_devices}")
    lo, hi = tau_range(problem)
    mdl = ps.Model("ste")
    if not verbose:
        mdl.hideOutput()
    mdl.setParam("limits/time", float(time_limit))
    mdl.setParam("limits/gap", max(float(gap) / 2, 1e-9))
    beta = problem.beta / _SCALE
    a = problem.gain / (problem.noise * _SCALE)
    off = problem.tau_offset
    # valid variable bounds: every device needs at least W_min(k_lo, τ_max) (Hz); its upload time
    # is at least its k_lo payload at full power with all the bandwidth
    w_floor = problem.w_min(problem.k_lo, hi) / _SCALE
    w_cap = problem.W_tot / _SCALE - (np.sum(w_floor) - w_floor)
    t_floor = problem.payload_bits(problem.k_lo) / channel.rate_bps(problem.W_tot, problem.p_max, problem.gain,
                                                            problem.noise)
    f_top = float(np.sum(problem.WF[:, problem.N]))
    tau = mdl.addVar("tau", lb=lo, ub=hi)
    z = mdl.addVar("z", lb=0.0, ub=f_top / lo)
    fs, Wv, kvars = [], [], []
    for m in range(M):
        k = mdl.addVar(f"K{m}", vtype="I", lb=int(problem.k_lo[m]), ub=problem.N)
        F = problem.WF[m]
        f = mdl.addVar(f"f{m}", lb=float(F[problem.k_lo[m]]), ub=float(F[problem.N]))
        for kk in range(int(problem.k_lo[m]), problem.N):
            mdl.addCons(f <= F[kk] + (F[kk + 1] - F[kk]) * (k - kk))
        W = mdl.addVar(f"W{m}", lb=max(float(w_floor[m]) * (1 - 1e-9), 1e-9),
                       ub=float(min(w_cap[m], problem.W_tot / _SCALE)))
        p = mdl.addVar(f"p{m}", lb=0.0, ub=float(problem.p_max[m]))
        T = mdl.addVar(f"T{m}", lb=float(t_floor[m]) * (1 - 1e-9), ub=float(problem.t_max[m]))
        r_lo = float(beta * (problem.k_lo[m] + problem.c0) / problem.t_max[m])
        r_hi = float(channel.rate_bps(w_cap[m] * _SCALE, problem.p_max[m], problem.gain[m],
                                      problem.noise) / _SCALE)
        r = mdl.addVar(f"r{m}", lb=r_lo * (1 - 1e-9), ub=r_hi * (1 + 1e-9))   # Mbit/s
        mdl.addCons(r * LN2 <= W * ps.log(1 + float(a[m]) * p / W))
        mdl.addCons(beta * (k + problem.c0) <= T * r)
        mdl.addCons(p * T <= float(problem.e_up[m]))
        mdl.addCons(tau >= float(off[m]) + T)
        fs.append(f)
        Wv.append(W)
        kvars.append(k)
    mdl.addCons(ps.quicksum(Wv) <= problem.W_tot / _SCALE)
    mdl.addCons(z * tau <= ps.quicksum(fs))
    mdl.setObjective(z, "maximize")
    level = logging.INFO if verbose else logging.DEBUG
    if log.isEnabledFor(level):
        mdl.includeEventhdlr(_progress_handler(ps, level, float(progress_every_s)), "ste_opt_progress",
                             "SCIP's progress to the ste_opt logger")
    mdl.optimize()
    st = mdl.getStatus()
    if mdl.getNSols() == 0:
        raise SolverError(f"scip found no solution (status {st})")
    sol = mdl.getBestSol()
    k = np.array([int(round(mdl.getSolVal(sol, v))) for v in kvars])
    k = np.clip(k, problem.k_lo, problem.N)
    dual = float(mdl.getDualbound())
    nodes = int(mdl.getNNodes())
    status = "optimal" if st in ("optimal", "gaplimit") else ("time_limit" if st == "timelimit" else "feasible")
    sol = certified_solution(problem, k, dual * (1 + SCIP_SLACK), method="scip", status=status,
                             tol=float(gap), slack=0.0,
                             info={"scip_status": st, "scip_nodes": nodes,
                                   "scip_objective": float(mdl.getObjVal())})
    log.log(logging.INFO if verbose else logging.DEBUG, "scip: status %s (SCIP: %s), %d nodes, gap %.3g",
            sol.status, st, nodes, sol.gap if sol.gap is not None else float("nan"))
    return sol


def _progress_handler(ps, level: int, every_s: float):
    """A SCIP event handler that logs the search's progress on node completion at most every
    ``every_s`` seconds, and on a new incumbent at most every ``every_s / 4`` seconds."""

    class Progress(ps.Eventhdlr):
        last = -np.inf

        def eventinit(self):
            self.model.catchEvent(ps.SCIP_EVENTTYPE.BESTSOLFOUND, self)
            self.model.catchEvent(ps.SCIP_EVENTTYPE.NODESOLVED, self)

        def eventexit(self):
            self.model.dropEvent(ps.SCIP_EVENTTYPE.BESTSOLFOUND, self)
            self.model.dropEvent(ps.SCIP_EVENTTYPE.NODESOLVED, self)

        def eventexec(self, event):
            m = self.model
            now = m.getSolvingTime()
            found = event.getType() == ps.SCIP_EVENTTYPE.BESTSOLFOUND
            if now - self.last < (every_s / 4 if found else every_s):
                return
            self.last = now
            primal, dual = m.getPrimalbound(), m.getDualbound()
            if found:                          # (the primal bound is updated after the event)
                primal = max(primal, m.getSolObjVal(m.getBestSol()))
            if m.isInfinity(abs(primal)) or m.isInfinity(abs(dual)):
                return
            gap = abs(dual - primal) / max(abs(primal), 1e-300)
            log.log(level, "scip: %s%d nodes, primal %.8g, dual %.8g, gap %.3g (%.1f s)",
                    "new incumbent, " if found else "", m.getNNodes(), primal, dual, gap, now)

    return Progress()


def _ste_of_combos(problem, K, iters: int = 100):
    """Exact STE of token combinations ``K`` (M, C): bisection on τ per column.

    Returns ``(lower, upper)``: STE at the feasible end and at the infeasible end of the bracket
    (``upper`` is a valid upper bound of the true STE)."""
    lo_all, hi_all = tau_range(problem)
    C = K.shape[1]
    bits = problem.payload_bits(K)

    def fits(tau):
        return np.sum(problem.uplink.least_bandwidth_hz(bits, tau), axis=0) <= problem.W_tot

    hi = np.full(C, hi_all)
    lo = np.full(C, lo_all)
    ok = fits(hi)
    lo, hi = least_feasible_tau(fits, lo, hi, rel_tol=1e-13, max_iter=iters, bracket=True)
    F = problem.WF[np.arange(problem.M)[:, None], K].sum(axis=0)
    lower = np.where(ok, F / hi, -np.inf)
    upper = np.where(ok, F / lo, -np.inf)
    return lower, upper


@register("ste", "brute", "exhaustive enumeration of tokens with the exact resource step (M <= 3)",
          bound="exact")
def brute(problem, max_devices: int = 3, max_combos: int = 3_000_000, chunk: int = 20_000):
    """Enumerate every token vector, each with its least straggler time (bisection on τ)."""
    M = problem.M
    if M > max_devices:
        raise SolverError(f"brute is for M <= {max_devices} active devices, got {M}")
    ranges = [np.arange(int(problem.k_lo[m]), problem.N + 1) for m in range(M)]
    total = int(np.prod([len(r) for r in ranges], dtype=float))
    if total > max_combos:
        raise SolverError(f"brute: {total} token combinations > max_combos={max_combos}")
    grids = np.meshgrid(*ranges, indexing="ij")
    allk = np.stack([g.ravel() for g in grids])         # (M, total)
    best_val, best_k, bound = -np.inf, None, -np.inf
    for s in range(0, total, chunk):
        K = allk[:, s:s + chunk]
        lower, upper = _ste_of_combos(problem, K)
        j = int(np.argmax(lower))
        if lower[j] > best_val:
            best_val, best_k = float(lower[j]), K[:, j].copy()
        bound = max(bound, float(np.max(upper)))
    return certified_solution(problem, best_k, bound, method="brute", status="optimal",
                              iterations=total, info={"combinations": total})
