"""STE solvers compared: time, memory, STE, certified bound and gap, from M = 5 to M = 100,000.

Parts (every number in the RESULTS.md section comes from this run):

S. scale: ``global``, the paper's ``alternating`` and ``alternating(token_step="knapsack")`` at
   M = 10, 100, 300, 1,000, 3,000, 10,000, 100,000 (seed 0), each size and method in a fresh process: median wall and CPU time
   over repeats, peak resident memory, status, certified gap, time relative to ``alternating``;
A. sweep over M ∈ {5, 10, 100, 1000} on the ``st-sflora`` preset, methods ``global``,
   ``alternating`` (paper), ``alternating_exact`` (exact token step + joint resource step),
   ``alternating_knapsack``, ``milp`` (highspy backend; M ≤ 100) and ``scip`` (M = 5,
   time-limited): time, STE, own bound, gap to the best bound of the instance, time relative to
   ``global``;
B. ``scip`` against ``global`` on M = 5 with fewer patch tokens (N' = 49 and 98), where SCIP can
   finish: agreement of the optima and the time ratio;
C. the paper's alternating algorithm's certified gap (bound from ``global``) by M = 10, 100,
   1,000, 10,000, 20 seeds each;
R. ``global``'s time over ``alternating``'s on 10 seeds at M = 100, 300, 1,000, 3,000.

Usage: ``python -m benchmarks.ste_solvers [--quick] [--million]`` (``--million`` adds M = 10⁶ to
part S: about 4 minutes and 12 GB for ``global``).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np

from benchmarks.common import (
    machine_line,
    md_table,
    read_csv,
    results_dir,
    write_csv,
    write_section,
)
from ste_opt import bench

NAME = "ste_solvers"


def _fmt_rows(rows):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


SCALE_METHODS = (("global", "global", {}), ("alternating", "alternating", {}),
                 ("alternating_knapsack", "alternating", {"token_step": "knapsack"}))


def _scale_job(M: int, seed0: int, method: str, options: dict, repeats: int) -> dict:
    """One size and method, in a fresh process: times over repeats and the peak memory."""
    import ste_opt as so
    from ste_opt.validate import limits

    so.list_methods()
    for seed in range(seed0, seed0 + 10):         # the first feasible draw from ``seed0`` on
        try:
            # M × N beyond the default input-size limit (5,000,000 elements) is intended here
            with limits(max_elements=max(5_000_000, 200 * M)):
                pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=M, seed=seed))
            break
        except so.InfeasibleError:
            continue
    rss_problem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls, cpus, sol = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        sol = so.solve(pb, method, **options)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return dict(n_devices=M, seed=seed, active=pb.M, wall_median_s=statistics.median(walls),
                cpu_median_s=statistics.median(cpus), repeats=repeats,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                rss_after_problem_mb=rss_problem, status=sol.status,
                gap=math.nan if sol.gap is None else float(sol.gap), ste=float(sol.objective),
                nodes=sol.info.get("nodes"), exact_steps=sol.info.get("exact_steps"),
                check_ok=bool(pb.check(sol).ok))


def part_scale(quick: bool, million: bool = False):
    sizes = (10, 100, 1000) if quick else (10, 100, 300, 1000, 3000, 10_000, 100_000)
    if million:
        sizes += (1_000_000,)
    repeats = {10: 7, 100: 7, 300: 7, 1000: 5, 3000: 5, 10_000: 3, 100_000: 1, 1_000_000: 1}
    rows = []
    ctx = mp.get_context("spawn")
    for M in sizes:
        for label, method, opts in SCALE_METHODS:
            if M > 100_000 and label == "alternating_knapsack":
                continue
            try:
                with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
                    r = ex.submit(_scale_job, M, 0, method, opts, repeats[M]).result()
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory at M = 10^6: record it
                print(f"  S M={M} {label}: failed ({type(exc).__name__}: {exc})", flush=True)
                continue
            r["method"] = label
            rows.append(r)
            print(f"  S M={M} {label}: {r['status']} wall {r['wall_median_s']:.3g} s, cpu "
                  f"{r['cpu_median_s']:.3g} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
    alt = {r["n_devices"]: r for r in rows if r["method"] == "alternating"}
    for r in rows:
        a = alt.get(r["n_devices"])
        if a is None:
            continue
        r["x_alternating_wall"] = r["wall_median_s"] / a["wall_median_s"]
        r["x_alternating_cpu"] = r["cpu_median_s"] / a["cpu_median_s"]
    return rows


def part_a(quick: bool):
    if quick:
        sizes, seeds = (5, 10, 100), (0,)
        max_seeds = {}
        opts = {"milp": {"time_limit": 20.0}, "scip": {"time_limit": 10.0}}
    else:
        sizes, seeds = (5, 10, 100, 1000), (0, 1, 2)
        # the slow methods get fewer seeds to keep the run near 10 minutes (M = 10,000 and more:
        # part S)
        max_seeds = {"milp": {100: 1}, "scip": {5: 1}}
        opts = {"milp": {"time_limit": 60.0}, "scip": {"time_limit": 120.0}}
    seeds_for = None
    t0 = time.perf_counter()
    rows = bench.sweep(sizes=sizes, seeds=seeds, methods=bench.DEFAULT_METHODS, options=opts,
                       max_seeds=max_seeds, seeds_for=seeds_for,
                       progress=lambda r: print(f"  A M={r['n_devices']} seed={r['seed']} {r['method']}: "
                                                f"{r['error'] or r['status']} {r['time_s']:.3g} s", flush=True))
    return rows, time.perf_counter() - t0, opts


def part_b(quick: bool):
    rows = []
    for n_tok in ((49,) if quick else (49, 98)):
        rows += bench.sweep(sizes=(5,), seeds=(0,) if quick else (0, 1, 2), methods=("global", "scip"),
                            n_tokens=n_tok, options={"scip": {"time_limit": 30.0 if quick else 60.0},
                                                     "global": {"tol": 1e-6}})
    return rows, compare_b(rows)


def compare_b(rows):
    """SCIP against global per (N', seed) from part B's rows."""
    out = []
    for n_tok in sorted({r["n_tokens"] for r in rows}):
        for seed in sorted({r["seed"] for r in rows}):
            g = next((r for r in rows if r["n_tokens"] == n_tok and r["seed"] == seed and r["method"] == "global"), None)
            s = next((r for r in rows if r["n_tokens"] == n_tok and r["seed"] == seed and r["method"] == "scip"), None)
            if g is None or s is None:
                continue
            out.append(dict(n_tokens=n_tok, seed=seed, scip_status=s["status"], scip_time_s=s["time_s"],
                            scip_ste=s["objective"], scip_gap=s["gap"], global_time_s=g["time_s"],
                            global_ste=g["objective"], global_gap=g["gap"],
                            rel_diff=abs(g["objective"] - s["objective"]) / g["objective"],
                            speedup=s["time_s"] / g["time_s"]))
    return out


def part_c(quick: bool):
    """The paper's alternating algorithm (and the knapsack token step) against global's bound, on
    the first 20 seeds (3 with --quick) at each M whose instance is feasible (some large-M draws
    cannot fit every admitted device at K_min: InfeasibleError, skipped and counted)."""
    sizes = (10, 100) if quick else (10, 100, 1000, 10_000)
    want = 3 if quick else 20
    rows = []
    for M in sizes:
        seed, done, skipped = 0, 0, 0
        while done < want:
            inst = [bench.run_instance("st-sflora", M, seed, m) for m in
                    ("global", "alternating", "alternating_knapsack")]
            seed += 1
            if inst[0]["error"].startswith("InfeasibleError"):
                skipped += 1
                continue
            ub = inst[0]["bound"]
            for r in inst:
                r["certified_gap"] = (ub - r["objective"]) / ub
            rows += inst
            done += 1
        print(f"  C M={M}: {done} seeds ({skipped} infeasible draws skipped)", flush=True)
    return rows


def part_r(quick: bool):
    """``global``'s time over the paper's ``alternating``'s on the first 10 feasible seeds (3 with
    --quick) at M = 100, 300, 1,000, 3,000: both warm, in this process, the least CPU time of 5
    repeats for ``alternating`` and of 3 for ``global``."""
    import ste_opt as so

    sizes = (100, 300) if quick else (100, 300, 1000, 3000)
    want = 3 if quick else 10
    rows = []
    for M in sizes:
        seed, done = 0, 0
        while done < want:
            try:
                pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=M, seed=seed))
            except so.InfeasibleError:
                seed += 1
                continue
            times = {}
            for method, reps in (("alternating", 5), ("global", 3)):
                best = math.inf
                for _ in range(reps):
                    c0 = time.process_time()
                    sol = so.solve(pb, method)
                    best = min(best, time.process_time() - c0)
                times[method] = best
            rows.append(dict(n_devices=M, seed=seed, alternating_cpu_s=times["alternating"],
                             global_cpu_s=times["global"], global_status=sol.status,
                             ratio=times["global"] / times["alternating"]))
            seed += 1
            done += 1
        print(f"  R M={M}: {done} seeds", flush=True)
    return rows


def ratio_table(rows_r):
    out = []
    for M in sorted({r["n_devices"] for r in rows_r}):
        x = np.array([r["ratio"] for r in rows_r if r["n_devices"] == M])
        a = np.array([r["alternating_cpu_s"] for r in rows_r if r["n_devices"] == M])
        g = np.array([r["global_cpu_s"] for r in rows_r if r["n_devices"] == M])
        out.append(dict(n_devices=M, seeds=len(x), alternating_median_s=float(np.median(a)),
                        alternating_min_s=float(a.min()), alternating_max_s=float(a.max()),
                        global_median_s=float(np.median(g)), global_max_s=float(g.max()),
                        ratio_median=float(np.median(x)), ratio_min=float(x.min()),
                        ratio_max=float(x.max()), seeds_over_20x=int(np.sum(x > 20)),
                        all_optimal=all(r["global_status"] == "optimal" for r in rows_r
                                        if r["n_devices"] == M)))
    return out


def gap_table(rows_c):
    out = []
    for M in sorted({r["n_devices"] for r in rows_c}):
        for m in ("alternating", "alternating_knapsack", "global"):
            g = np.array([r["certified_gap"] for r in rows_c if r["method"] == m and r["n_devices"] == M])
            if g.size:
                seeds = sorted({r["seed"] for r in rows_c if r["n_devices"] == M})
                out.append(dict(n_devices=M, method=m, seeds=len(g), seed_range=f"{seeds[0]}–{seeds[-1]}",
                                median_gap=float(np.median(g)), worst_gap=float(np.max(g)),
                                over_1pct=int(np.sum(g > 0.01))))
    return out


def plots(rows_a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = bench.summarize(rows_a)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for m in bench.DEFAULT_METHODS:
        pts = sorted((s["n_devices"], s["time_median_s"]) for s in summ if s["method"] == m and s.get("runs"))
        if pts:
            ax.loglog(*zip(*pts), "o-", label=m)
    ax.set_xlabel("devices M")
    ax.set_ylabel("solve time (s), median over seeds")
    ax.set_title("STE solvers: time against M")
    ax.grid(True, which="both", alpha=0.3)
    # outside the axes: inside, the legend covered the milp point at M = 100
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    p1 = results_dir() / f"{NAME}_time.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in ("alternating", "alternating_exact", "alternating_knapsack"):
        pts = sorted((s["n_devices"], s["gap_to_best_median"], s["gap_to_best_max"]) for s in summ
                     if s["method"] == m and s.get("runs"))
        if pts:
            x, med, worst = zip(*pts)
            ax.semilogx(x, 100 * np.array(med), "o-", label=f"{m} (median)")
            ax.semilogx(x, 100 * np.array(worst), "x--", label=f"{m} (worst)")
    ax.set_xlabel("devices M")
    ax.set_ylabel("gap to the certified bound (%)")
    ax.set_title("Alternating algorithm: certified gap against M")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = results_dir() / f"{NAME}_alt_gap.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return p1.name, p2.name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ste_solvers")
    ap.add_argument("--quick", action="store_true", help="smoke run (small sizes, one seed)")
    ap.add_argument("--million", action="store_true",
                    help="add M = 1,000,000 to part S (about 2 min and 13 GB for global)")
    ap.add_argument("--parts", default="SABCR",
                    help="parts to run (letters of S, A, B, C, R; default all); the others are read back "
                         "from the previous run's CSVs so the RESULTS.md section stays whole")
    ap.add_argument("--replot", action="store_true",
                    help=f"only redraw the figures from results/{NAME}.csv (no solving)")
    args = ap.parse_args(argv)
    if args.replot:
        print("wrote", ", ".join(plots(read_csv(NAME))))
        return 0
    parts = set(args.parts.upper())
    if not parts or not parts <= set("SABCR"):
        ap.error(f"--parts takes letters of S, A, B, C, R, got {args.parts!r}")
    t_start = time.perf_counter()
    if "S" in parts:
        rows_s = part_scale(args.quick, args.million)
        write_csv(f"{NAME}_scale", _fmt_rows(rows_s))
    else:
        rows_s = read_csv(f"{NAME}_scale")
    if "A" in parts:
        rows_a, t_a, opts = part_a(args.quick)
        write_csv(NAME, _fmt_rows(rows_a))
    else:
        rows_a, t_a = read_csv(NAME), float("nan")
        opts = {"milp": {"time_limit": 20.0 if args.quick else 60.0},
                "scip": {"time_limit": 10.0 if args.quick else 120.0}}
    if "B" in parts:
        rows_b, cmp_b = part_b(args.quick)
        write_csv(f"{NAME}_scip", _fmt_rows(rows_b))
    else:
        rows_b = read_csv(f"{NAME}_scip")
        cmp_b = compare_b(rows_b)
    if "C" in parts:
        rows_c = part_c(args.quick)
        write_csv(f"{NAME}_alternating_gap", _fmt_rows(rows_c))
    else:
        rows_c = read_csv(f"{NAME}_alternating_gap")
    if "R" in parts:
        rows_r = part_r(args.quick)
        write_csv(f"{NAME}_ratio", _fmt_rows(rows_r))
    else:
        try:
            rows_r = read_csv(f"{NAME}_ratio")
        except SystemExit:                 # (no previous run of part R)
            rows_r = []
    p1, p2 = plots(rows_a)
    summ = bench.summarize(rows_a)
    cols = ["n_devices", "method", "runs", "time_median_s", "time_max_s", "ste_median", "own_gap_max",
            "gap_to_best_median", "gap_to_best_max", "time_vs_global_median", "statuses", "all_checks_ok"]
    fmt = {"time_median_s": ".3g", "time_max_s": ".3g", "ste_median": ".6g", "own_gap_max": ".2e",
           "gap_to_best_median": ".2e", "gap_to_best_max": ".2e", "time_vs_global_median": ".3g"}
    gaps = gap_table(rows_c)
    scols = ["n_devices", "seed", "active", "method", "wall_median_s", "cpu_median_s", "repeats", "peak_rss_mb",
             "rss_after_problem_mb", "status", "gap", "nodes", "exact_steps", "x_alternating_wall",
             "x_alternating_cpu", "check_ok"]
    sfmt = {"wall_median_s": ".3g", "cpu_median_s": ".3g", "peak_rss_mb": ".0f", "rss_after_problem_mb": ".0f",
            "gap": ".1e", "x_alternating_wall": ".3g", "x_alternating_cpu": ".3g"}
    flags = (" --quick" if args.quick else "") + (" --million" if args.million else "")
    reused = "".join(p for p in "SABCR" if p not in parts)
    if reused:
        flags += f" --parts {''.join(p for p in 'SABCR' if p in parts)}"
    md = [f"## STE solvers: certified optimality (`python -m benchmarks.ste_solvers{flags}`)\n",
          machine_line() + f" Total run time {time.perf_counter() - t_start:.0f} s"
          + (f" (part A {t_a:.0f} s). " if "A" in parts else ". ")
          + (f"Parts {', '.join(reused)} are the previous run's (read back from their CSVs). " if reused else "")
          + "Shared machine: other jobs ran at the same time, so wall times are noisy; CPU times "
          "(`time.process_time`, one thread) are steadier.\n",
          "**S. Scale** (`st-sflora`, the first feasible seed from 0, `round` denominator): `global` "
          "(tol 1e-4), the paper's "
          "`alternating`, and `alternating(token_step=\"knapsack\")`; each size and method in a fresh "
          "process, median over `repeats`; `peak_rss_mb` is the process's peak resident memory "
          "(problem included; `rss_after_problem_mb` is the peak after building the problem); "
          "`x_alternating` the time ratio to the paper's `alternating` at the same M.\n",
          md_table(_fmt_rows(rows_s), scols, sfmt),
          "\n**A. Sweep on the `st-sflora` preset** (`round` denominator). `gap_to_best` is "
          "(best bound of the instance − STE) / best bound, the best bound being the smallest certified "
          "bound any method gave on that instance; `own_gap` is each method's own certified gap; "
          "`x global` the time ratio to `global` on the same instance. Options: "
          f"global tol=1e-4; milp backend=highspy, mip_gap=1e-2, time_limit={opts['milp']['time_limit']:.0f} s; "
          f"scip time_limit={opts['scip']['time_limit']:.0f} s. Seeds: 0–2 (milp at M=100 and scip: "
          "one seed).\n",
          md_table(_fmt_rows(summ), cols, fmt),
          f"\n![time against M](results/{p1})  ![alternating gap](results/{p2})\n"]
    md += ["\n**B. SCIP against `global`** on M = 5 with the first N' patch tokens (k_min = N'/3), where "
           "SCIP can finish (with all 196 tokens SCIP stops at its time limit with a gap of a few %, "
           "see part A). `global` with tol=1e-6.\n",
           md_table(_fmt_rows(cmp_b), fmt={"scip_time_s": ".3g", "global_time_s": ".3g", "scip_ste": ".8g",
                                           "global_ste": ".8g", "scip_gap": ".1e", "global_gap": ".1e",
                                           "rel_diff": ".1e", "speedup": ".3g"}),
           "\n**C. Certified gap of the paper's alternating algorithm by M** (`st-sflora`, the first "
           "20 seeds at each M whose instance is feasible; the bound is `global`'s, tol 1e-4): "
           "`(bound − STE) / bound`; `alternating_knapsack` is `alternating(token_step=\"knapsack\", "
           "resource_step=\"joint\")`.\n",
           md_table(gaps, fmt={"median_gap": ".2e", "worst_gap": ".2e"})]
    if rows_r:
        md += ["\n**R. `global`'s time over the paper's `alternating`'s, by seed** (`st-sflora`, the "
               "first 10 feasible seeds at each M; both warm in one process, the least CPU time of 5 "
               "repeats for `alternating` and 3 for `global`): `alternating`'s own time varies "
               "several-fold between seeds (one or two block iterations), and the ratio with it.\n",
               md_table(ratio_table(rows_r),
                        fmt={k: ".3g" for k in ("alternating_median_s", "alternating_min_s",
                                                "alternating_max_s", "global_median_s", "global_max_s",
                                                "ratio_median", "ratio_min", "ratio_max")})]
    write_section(NAME, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
