"""Solver sweeps for the STE problem: every method on every (size, seed), as rows of dicts.

The per-instance work is the pure top-level function :func:`run_instance` (picklable arguments,
plain-dict result), so a sweep can be fanned out over processes or Ray workers unchanged;
:func:`sweep` runs it in a loop and adds the comparisons that need every method of an instance
(gap to the best bound, time relative to ``global``).
"""
from __future__ import annotations

import math
import time

__all__ = ["DEFAULT_METHODS", "DEFAULT_CAPS", "DEFAULT_OPTIONS", "make_instance", "run_instance", "sweep",
           "summarize", "check_sweep_args"]

DEFAULT_METHODS = ("global", "alternating", "alternating_exact", "alternating_knapsack", "milp", "scip")

#: largest number of devices each method is run at (methods are slow beyond these)
DEFAULT_CAPS = {"global": 10**9, "alternating": 10**9, "alternating_exact": 10**9,
                "alternating_knapsack": 10**9, "milp": 100,
                "scip": 5, "brute": 3}

#: method name in a sweep -> (registry method, options)
DEFAULT_OPTIONS = {
    "global": ("global", {}),
    "alternating": ("alternating", {}),
    "alternating_exact": ("alternating", {"token_step": "exact", "resource_step": "joint"}),
    "alternating_knapsack": ("alternating", {"token_step": "knapsack", "resource_step": "joint"}),
    "milp": ("milp", {"backend": "highspy", "mip_gap": 1e-2, "time_limit": 60.0}),
    "milp_pyomo": ("milp", {"backend": "pyomo", "mip_gap": 1e-2, "time_limit": 60.0}),
    "scip": ("scip", {"time_limit": 120.0}),
    "brute": ("brute", {}),
}


def check_sweep_args(methods, preset: str) -> None:
    """Refuse unknown sweep methods or presets before any work (SolverError / InvalidScenarioError)."""
    from ..errors import InvalidScenarioError
    from ..scenarios import PRESETS
    from ..solvers import list_methods
    from ..validate import usage_error

    known = set(DEFAULT_OPTIONS) | {m.name for m in list_methods("ste")}
    bad = [m for m in methods if m not in known]
    if bad or not methods:
        raise usage_error(f"unknown method(s) {', '.join(bad) or '(none given)'}; known: {', '.join(sorted(known))}")
    if preset not in PRESETS or preset == "sflam":
        ok = sorted(p for p in PRESETS if p != "sflam")
        raise InvalidScenarioError(f"unknown STE preset {preset!r}; available: {', '.join(ok)}", field="preset")


def make_instance(preset: str, n_devices: int, seed: int, n_tokens: int | None = None,
                  problem_options: dict | None = None):
    """The STE problem of a sweep point; ``n_tokens`` keeps the first N' patches (k_min = N'/3)."""
    from ..problems.ste import STEProblem
    from ..scenarios.ste import Scenario

    sc = Scenario.preset(preset, n_devices=n_devices, seed=seed)
    if n_tokens is not None and n_tokens < sc.n_patches:
        sc = sc.with_retention(sc.retention[:, :n_tokens]).replace(k_min=max(1, min(sc.k_min, n_tokens // 3)))
    return STEProblem(sc, **(problem_options or {}))


def run_instance(preset: str, n_devices: int, seed: int, method: str, options: dict | None = None,
                 problem_options: dict | None = None, n_tokens: int | None = None) -> dict:
    """Build the instance and solve it with one method; never raises (errors go in the row).

    ``method`` is a key of :data:`DEFAULT_OPTIONS` (or a registry name); ``options`` override its
    defaults. Returns a dict: preset, n_devices, active, seed, method, status, objective, bound,
    gap, time_s, nodes, check_ok, error.
    """
    from ..solvers import list_methods, solve

    reg, opts = DEFAULT_OPTIONS.get(method, (method, {}))
    opts = {**opts, **(options or {})}
    row = dict(preset=preset, n_devices=int(n_devices), n_tokens=n_tokens, active=None, seed=int(seed),
               method=method,
               status="error", objective=math.nan, bound=math.nan, gap=math.nan, time_s=math.nan,
               nodes=None, check_ok=None, error="")
    try:
        list_methods()                       # import the solver modules outside the timing
        pb = make_instance(preset, n_devices, seed, n_tokens, problem_options)
        row["active"] = pb.M
        t0 = time.perf_counter()
        sol = solve(pb, reg, **opts)
        row["time_s"] = time.perf_counter() - t0
        row.update(status=sol.status, objective=float(sol.objective),
                   bound=math.nan if sol.bound is None else float(sol.bound),
                   gap=math.nan if sol.gap is None else float(sol.gap),
                   nodes=sol.info.get("nodes", sol.info.get("milp_solves", sol.info.get("scip_nodes",
                                                                                       sol.iterations))),
                   check_ok=bool(pb.check(sol).ok))
    except Exception as exc:  # noqa: BLE001 - a sweep records failures and goes on
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def sweep(sizes=(5, 10, 100, 1000, 10000), seeds=(0, 1, 2), methods=DEFAULT_METHODS,
          preset: str = "st-sflora", caps: dict | None = None, options: dict | None = None,
          seeds_for: dict | None = None, max_seeds: dict | None = None, n_tokens: int | None = None,
          progress=None, runner=run_instance) -> list[dict]:
    """Run ``methods`` on every (size, seed) and return rows with cross-method comparisons.

    Parameters
    ----------
    caps : dict, optional
        Largest size per method (default :data:`DEFAULT_CAPS`); larger sizes are skipped.
    options : dict, optional
        Per-method option overrides, ``{method: {option: value}}``.
    seeds_for : dict, optional
        ``{size: [seeds]}`` to use fewer seeds at some sizes.
    max_seeds : dict, optional
        ``{method: {size: n}}``: run that method on the first n seeds of that size only.
    n_tokens : int, optional
        Keep only the first N' patch tokens (smaller instances for the exact references).
    progress : callable, optional
        Called with each finished row.
    runner : callable
        The per-instance function (same signature as :func:`run_instance`); swap in a remote one.

    Each row gets ``best_bound`` (smallest valid bound of any method on the instance),
    ``best_objective``, ``gap_to_best_bound`` = (best_bound - objective)/best_bound and
    ``time_vs_global`` = time / time of ``global`` on the same instance.
    """
    caps = {**DEFAULT_CAPS, **(caps or {})}
    options = options or {}
    rows: list[dict] = []
    for n in sizes:
        for i, seed in enumerate((seeds_for or {}).get(n, seeds)):
            inst = []
            for m in methods:
                if n > caps.get(m, 10**9) or i >= (max_seeds or {}).get(m, {}).get(n, 10**9):
                    continue
                r = runner(preset, n, seed, m, options.get(m), None, n_tokens)
                inst.append(r)
                if progress:
                    progress(r)
            bounds = [r["bound"] for r in inst if r["bound"] == r["bound"] and not r["error"]]
            objs = [r["objective"] for r in inst if r["objective"] == r["objective"] and r["check_ok"]]
            bb = min(bounds) if bounds else math.nan
            bo = max(objs) if objs else math.nan
            tg = next((r["time_s"] for r in inst if r["method"] == "global" and not r["error"]), math.nan)
            for r in inst:
                r["best_bound"] = bb
                r["best_objective"] = bo
                r["gap_to_best_bound"] = ((bb - r["objective"]) / bb if bb == bb and bb > 0
                                          and r["objective"] == r["objective"] else math.nan)
                r["time_vs_global"] = r["time_s"] / tg if tg == tg and tg > 0 else math.nan
            rows.extend(inst)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Median / worst per (method, size): time, gap to the best bound, time vs global."""
    import numpy as np

    out = []
    keys = sorted({(r["method"], r["n_devices"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for m, n in keys:
        rs = [r for r in rows if r["method"] == m and r["n_devices"] == n and not r["error"]]
        if not rs:
            err = next(r["error"] for r in rows if r["method"] == m and r["n_devices"] == n)
            out.append(dict(method=m, n_devices=n, runs=0, error=err))
            continue
        t = np.array([r["time_s"] for r in rs])
        g = np.array([r["gap_to_best_bound"] for r in rs], dtype=float)
        own = np.array([r["gap"] for r in rs], dtype=float)
        rel = np.array([r["time_vs_global"] for r in rs], dtype=float)
        out.append(dict(
            method=m, n_devices=n, runs=len(rs), time_median_s=float(np.median(t)),
            time_max_s=float(np.max(t)),
            ste_median=float(np.median([r["objective"] for r in rs])),
            own_gap_max=float(np.nanmax(own)) if np.isfinite(own).any() else math.nan,
            gap_to_best_median=float(np.nanmedian(g)) if np.isfinite(g).any() else math.nan,
            gap_to_best_max=float(np.nanmax(g)) if np.isfinite(g).any() else math.nan,
            time_vs_global_median=float(np.nanmedian(rel)) if np.isfinite(rel).any() else math.nan,
            statuses=",".join(sorted({r["status"] for r in rs})),
            all_checks_ok=all(bool(r["check_ok"]) for r in rs),
        ))
    return out
