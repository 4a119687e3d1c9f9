"""``milp``: the STE problem as MILPs over token levels on a grid of straggler times (docs/certified.md).

For a straggler time τ the problem is a multiple-choice knapsack; here it is handed to a generic
MILP solver (HiGHS): binaries ``x[m, K]`` (one level per device), the bandwidth row
``Σ W_min_m(K, τ) x[m, K] ≤ W_tot`` and the objective ``Σ f_m(K) x[m, K]``. Built as a Pyomo model
and solved through Pyomo's appsi HiGHS interface (``backend="pyomo"``), or directly with highspy
(``backend="highspy"``, no modelling layer, for large M).

Levels may be coarsened (``level_step``): a level ``k`` then stands for ``k..k'-1`` (``k'`` the next
level); its cost is ``W_min(k)`` and its value in the model ``f(k'-1)``, so the MILP stays a
relaxation (its dual bound is valid) while the chosen levels are feasible allocations.

On ``[τa, τb]`` every allocation's STE is at most ``UB(τb) / τa`` with ``UB(τb)`` the MILP's dual
bound at τb; the grid starts with ``n_tau`` geometric points on ``[τ_lo, τ_max]`` and (with
``refine``) the interval with the largest bound is split until the overall gap is ``≤ mip_gap`` or
the time runs out.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ...errors import SolverError
from ..registry import register
from .knapsack import certified_solution, wmin_table
from .taubb import best_first, tau_grid, tau_range

__all__ = ["milp", "level_items", "solve_level_milp"]

_SCALE = 1e6     # bandwidth in MHz inside the MILP
#: HiGHS's log and the τ-grid progress go to this logger: DEBUG by default (quiet: Python's default
#: level is WARNING), INFO with ``verbose=True``; the CLI's -v turns it on.
log = logging.getLogger(__name__)


def _highs_log_sink(verbose: bool):
    """A callback forwarding HiGHS log lines to :data:`log`, or None when nobody listens."""
    level = logging.INFO if verbose else logging.DEBUG
    if not log.isEnabledFor(level):
        return None

    def sink(event):
        msg = getattr(event, "message", "")
        msg = msg.rstrip("\n") if isinstance(msg, str) else str(msg)
        if msg.strip():
            log.log(level, "HiGHS: %s", msg)
    return sink


def level_items(problem, tau: float, level_step: int = 1):
    """Items of the knapsack at τ: arrays ``dev, level, cost_hz, value_model, value_true``.

    Returns None when some device cannot send even ``k_lo`` within its window at τ.
    """
    N = problem.N
    step = max(int(level_step), 1)
    big = N + 1
    grid = np.arange(0, N + 1, step)
    k_lo = problem.k_lo[:, None]
    tail = N if grid[-1] != N else big
    lev = np.concatenate([k_lo, np.where(grid[None, :] > k_lo, grid[None, :], big),
                          np.where(tail > k_lo, tail, big)], axis=1)
    lev = np.sort(lev, axis=1)
    present = lev <= N
    levc = np.where(present, lev, N)
    W = wmin_table(problem, tau, levc)
    if not np.all(np.isfinite(W[:, 0])):
        return None
    nxt = np.empty_like(levc)
    nxt[:, :-1] = np.where(present[:, 1:], levc[:, 1:] - 1, N)
    nxt[:, -1] = N
    rows = np.arange(problem.M)[:, None]
    v_model = problem.WF[rows, np.where(present, nxt, N)]
    v_true = problem.WF[rows, levc]
    keep = present & np.isfinite(W)
    dev, col = np.nonzero(keep)
    return dev, levc[dev, col], W[dev, col], v_model[dev, col], v_true[dev, col]


def _solve_pyomo(M, dev, cost, value, W_tot, time_limit, mip_gap, presolve, verbose=False):
    import pyomo.environ as pyo
    from pyomo.contrib.appsi.solvers import Highs

    n = len(dev)
    m = pyo.ConcreteModel()
    m.I = pyo.RangeSet(0, n - 1)
    m.x = pyo.Var(m.I, within=pyo.Binary)
    by_dev = np.split(np.arange(n), np.flatnonzero(np.diff(dev)) + 1)
    m.D = pyo.RangeSet(0, M - 1)
    m.one = pyo.Constraint(m.D, rule=lambda mm, d: sum(mm.x[int(i)] for i in by_dev[d]) == 1)
    c = (cost / _SCALE).tolist()
    v = value.tolist()
    m.budget = pyo.Constraint(expr=sum(c[i] * m.x[i] for i in range(n)) <= W_tot / _SCALE)
    m.obj = pyo.Objective(expr=sum(v[i] * m.x[i] for i in range(n)), sense=pyo.maximize)
    opt = Highs()
    if not opt.available():
        raise SolverError("milp: the HiGHS solver (highspy) is not available to Pyomo")
    opt.config.time_limit = max(float(time_limit), 0.01)
    opt.config.mip_gap = float(mip_gap)
    opt.config.stream_solver = False
    sink = _highs_log_sink(verbose)
    if sink is not None:
        # appsi streams the solver's output to stdout only, not through logging
        log.log(logging.INFO if verbose else logging.DEBUG,
                "milp: pyomo backend, HiGHS log not captured (use backend='highspy' for it)")
    opt.config.load_solution = False
    opt.highs_options = {"presolve": "on" if presolve else "off"}
    res = opt.solve(m)
    ub = res.best_objective_bound
    if res.best_feasible_objective is None:
        return None, (np.inf if ub is None else float(ub))
    res.solution_loader.load_vars()
    x = np.array([pyo.value(m.x[i]) for i in range(n)])
    return x, float(ub)


def _solve_highspy(M, dev, cost, value, W_tot, time_limit, mip_gap, presolve, verbose=False):
    import highspy

    from ..stdio import c_stdout_silenced

    n = len(dev)
    with c_stdout_silenced():  # the constructor prints a banner before any option applies
        h = highspy.Highs()
    sink = _highs_log_sink(verbose)
    h.setOptionValue("output_flag", sink is not None)
    if sink is not None:
        h.setOptionValue("log_to_console", False)
        h.cbLogging.subscribe(sink)
    h.setOptionValue("time_limit", max(float(time_limit), 0.01))
    h.setOptionValue("mip_rel_gap", float(mip_gap))
    h.setOptionValue("presolve", "on" if presolve else "off")
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = M + 1
    lp.col_cost_ = np.asarray(value, dtype=float)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.r_[np.ones(M), -highspy.kHighsInf]
    lp.row_upper_ = np.r_[np.ones(M), W_tot / _SCALE]
    lp.sense_ = highspy.ObjSense.kMaximize
    # column-wise: each column has the device row and the budget row
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
    idx = np.empty(2 * n, dtype=np.int32)
    idx[0::2] = dev
    idx[1::2] = M
    val = np.empty(2 * n)
    val[0::2] = 1.0
    val[1::2] = cost / _SCALE
    lp.a_matrix_.index_ = idx
    lp.a_matrix_.value_ = val
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h.passModel(lp)
    h.run()
    info = h.getInfo()
    ub = float(info.mip_dual_bound)
    if info.primal_solution_status != 2:       # kSolutionStatusFeasible
        return None, ub
    x = np.asarray(h.getSolution().col_value)
    return x, ub


def solve_level_milp(problem, tau, level_step=1, backend="pyomo", time_limit=60.0, mip_gap=1e-4,
                     presolve=False, verbose=False):
    """Solve the level MILP at τ. Returns ``(tokens or None, dual bound on Σ WF, Σ WF of tokens)``;
    the bound is ``-inf`` when τ is infeasible."""
    items = level_items(problem, tau, level_step)
    if items is None:
        return None, -np.inf, -np.inf
    dev, lev, cost, v_model, v_true = items
    fn = {"pyomo": _solve_pyomo, "highspy": _solve_highspy}[backend]
    x, ub = fn(problem.M, dev, cost, v_model, problem.W_tot, time_limit, mip_gap, presolve, verbose)
    if x is None:
        return None, ub, -np.inf
    pick = x > 0.5
    k = np.zeros(problem.M, dtype=int)
    k[dev[pick]] = lev[pick]
    if np.bincount(dev[pick], minlength=problem.M).min() != 1 or np.sum(cost[pick]) > problem.W_tot:
        # numerical tolerance of the MILP: fall back to the (always fitting) k_lo level
        return problem.k_lo.copy(), ub, float(np.sum(problem.WF[np.arange(problem.M), problem.k_lo]))
    return k, ub, float(np.sum(v_true[pick]))


@register("ste", "milp",
          "MILP over token levels on a grid of straggler times (Pyomo + HiGHS, or highspy); "
          "interval bounds give a certified gap", bound="bound")
def milp(problem, time_limit: float = 60.0, mip_gap: float = 1e-2, n_tau: int = 8,
         backend: str = "pyomo", level_step: int = 1, refine: bool = True, presolve: bool = False,
         verbose: bool = False):
    """Certified STE allocation from level MILPs on a τ grid.

    Parameters
    ----------
    time_limit : float
        Seconds for the whole method (the grid and its refinement); the bound stays valid.
    mip_gap : float
        Target relative gap of the result; each MILP is solved to ``mip_gap / 4``.
    n_tau : int
        Points of the initial geometric τ grid on ``[τ_lo, τ_max]``.
    backend : {"pyomo", "highspy"}
        Pyomo model through appsi HiGHS, or the same model passed to highspy directly.
    level_step : int
        Coarsen the token levels (1 = every integer; see module doc: the bound stays valid).
    refine : bool
        Split the interval with the largest bound until the gap target or time limit is met.
    presolve : bool
        HiGHS presolve (off by default: on these one-row knapsacks it costs more than it saves,
        about 2.5x in total time at M = 100).
    verbose : bool
        Progress (one line per MILP: τ, its bound, the incumbent, the overall gap) and, with the
        highspy backend, HiGHS's own log, on the logger ``ste_opt.solvers.ste.milp`` at INFO
        (default: DEBUG, i.e. quiet unless logging is configured for it).

    Status: ``"optimal"`` only when the certified gap is at most ``mip_gap``; ``"time_limit"`` when
    the time ran out first, ``"feasible"`` otherwise (``refine=False``, or a τ interval at
    floating-point width); the bound and gap are valid in every case.
    """
    if backend not in ("pyomo", "highspy"):
        raise SolverError(f"backend must be 'pyomo' or 'highspy', got {backend!r}")
    if not mip_gap >= 0:
        raise SolverError(f"mip_gap must be >= 0, got {mip_gap}")
    try:
        if backend == "pyomo":
            import pyomo.environ  # noqa: F401
        import highspy  # noqa: F401
    except ImportError as exc:
        raise SolverError(f"milp needs {exc.name} (pip install pyomo highspy)") from exc
    t0 = time.perf_counter()
    lo, hi = tau_range(problem)
    best = dict(value=-np.inf, tokens=problem.k_lo.copy())
    sub_gap = mip_gap / 4

    level = logging.INFO if verbose else logging.DEBUG

    def run(tau):
        left = time_limit - (time.perf_counter() - t0)
        k, ub, val = solve_level_milp(problem, tau, level_step, backend, max(left, 0.05), sub_gap, presolve,
                                      verbose)
        if k is not None and val / tau > best["value"]:
            best.update(value=val / tau, tokens=k)
        log.log(level, "milp: tau=%.6g s  MILP bound %.6g  incumbent STE %.6g  (%.1f s)", tau, ub,
                best["value"], time.perf_counter() - t0)
        return ub

    grid = tau_grid(lo, hi, n_tau)
    ubs = [run(t) for t in grid]
    heap = [(-u / a, a, b, u) for a, b, u in zip(grid[:-1], grid[1:], ubs[1:]) if np.isfinite(u)]

    def split(a, mid, b, _, ub_b):
        ub_m = run(mid)
        log.log(level, "milp: split [%.6g, %.6g] at %.6g, incumbent STE %.6g", a, b, mid, best["value"])
        if np.isfinite(ub_m):
            yield (-ub_m / a, a, mid, ub_m)
        yield (-ub_b / mid, mid, b, ub_b)

    def stop(_):
        if not refine or time.perf_counter() - t0 > time_limit:
            return "time_limit" if refine else "feasible"
        return None

    status, bound, splits = best_first(heap, incumbent=lambda: best["value"], tol=mip_gap,
                                       split=split, stop=stop, unsplittable="stop")
    solves = len(grid) + splits
    return certified_solution(problem, best["tokens"], bound, method="milp", status=status,
                              tol=mip_gap, iterations=solves,
                              info={"milp_solves": solves, "backend": backend,
                                    "level_step": int(level_step), "tau_grid_s": (lo, hi)})
