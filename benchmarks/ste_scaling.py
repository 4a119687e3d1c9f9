"""ST-SFLora STE solvers on the paper preset: scaling, convergence, STE against a common K, ablations.

Writes (under ``benchmarks/results/``):

- ``ste_scaling.csv``: median solve time over repeats, STE and iterations of ``alternating`` (the
  paper's closed-form token step and the exact breakpoint step) and the baselines for
  M ∈ {10, 100, 1000, 10000};
- ``ste_scaling_convergence.csv`` / ``.png``: the alternating history per outer iteration;
- ``ste_scaling_common_k.csv`` / ``.png``: STE of ``fixed_tokens`` for each common K, averaged over
  seeds, for the "round" and "uplink" denominators (the paper's Fig. 6 shape);
- ``ste_scaling_ablation.csv``: full method vs the ablations over 20 seeds of the preset (M = 10);
- ``ste_scaling_calibration.csv``: the preset calibration numbers (upload time of all tokens,
  the K where the energy limit binds at p_max with a 5 MHz share);
- ``ste_scaling.md``: the RESULTS.md section.

Run: ``python -m benchmarks.ste_scaling`` (about 2–4 min on 2 cores) or ``--quick`` (seconds).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.common import (
    integer_axis,
    machine_line,
    md_table,
    read_csv,
    results_dir,
    write_csv,
    write_section,
)
from ste_opt import InfeasibleError, STEProblem, channel, list_methods, make_scenario, solve

NAME = "ste_scaling"
METHODS = [("alternating", {}), ("alternating", {"token_step": "exact"}), ("fixed_power", {}),
           ("equal_bandwidth", {}), ("all_tokens", {})]
ABLATIONS = [("alternating", "full method"), ("fixed_power", "no power control"),
             ("equal_bandwidth", "no bandwidth allocation"), ("all_tokens", "no token selection")]


def _label(method, opts):
    return method + "".join(f"[{k}={v}]" for k, v in opts.items())


def _converged_at(history, rel=1e-9):
    """First outer iteration after which the STE no longer changes (0 = the start)."""
    h = np.asarray(history, dtype=float)
    final = h[-1]
    for i, v in enumerate(h):
        if abs(v - final) <= rel * abs(final) and np.all(np.abs(h[i:] - final) <= rel * abs(final)):
            return i
    return len(h) - 1


# ---------------------------------------------------------------------------- timing
def timing(sizes, repeats, seed=0):
    rows = []
    for m in sizes:
        scen = make_scenario("st-sflora", n_devices=m, seed=seed)
        t0 = time.perf_counter()
        problem = STEProblem(scen)
        setup_s = time.perf_counter() - t0
        for method, opts in METHODS:
            times, sol, err = [], None, ""
            for _ in range(repeats[m]):
                try:
                    sol = solve(problem, method, **opts)
                except InfeasibleError as exc:
                    err = str(exc).split(": ", 1)[-1]
                    err = err if len(err) <= 140 else err[:137] + "..."
                    break
                times.append(sol.time_s)
            row = dict(M=m, method=_label(method, opts), active=problem.M, excluded=len(problem.excluded),
                       setup_ms=setup_s * 1e3, repeats=len(times))
            if times:
                assert problem.check(sol).ok, (m, method)
                a = problem.active
                row.update(median_ms=statistics.median(times) * 1e3, min_ms=min(times) * 1e3,
                           ste=sol.objective, iterations=sol.iterations,
                           converged_at=_converged_at(sol.history),
                           mean_tokens=float(np.mean(sol.tokens[a])), tau_s=sol.info["tau_s"], status="ok")
            else:
                row.update(status="infeasible: " + err)
            rows.append(row)
            print(f"  M={m:6d} {row['method']:36s} " + (f"{row['median_ms']:9.2f} ms  STE {row['ste']:.6g}"
                                                        if times else row["status"]), flush=True)
    return rows


# ---------------------------------------------------------------------------- convergence
def convergence(seeds, sizes):
    rows, curves = [], []
    for m in sizes:
        for s in (seeds if m == 10 else seeds[:1]):
            problem = STEProblem(make_scenario("st-sflora", n_devices=m, seed=s))
            for opts in ({}, {"token_step": "exact"}):
                sol = solve(problem, "alternating", **opts)
                for it, v in enumerate(sol.history):
                    rows.append(dict(M=m, seed=s, variant=_label("alternating", opts), iteration=it, ste=v))
                curves.append((m, s, _label("alternating", opts), sol.history, sol.iterations,
                               _converged_at(sol.history)))
    return rows, curves


# ---------------------------------------------------------------------------- STE vs common K
def common_k(seeds, ks, n_devices=10):
    rows = []
    best = {}
    for den in ("round", "uplink"):
        for s in seeds:
            problem = STEProblem(make_scenario("st-sflora", n_devices=n_devices, seed=s), denominator=den)
            alt = solve(problem, "alternating", token_step="exact")
            entry = [alt.objective, float(np.mean(alt.tokens[problem.active])), np.nan, np.nan, np.nan]
            if any(m.name == "global" for m in list_methods("ste")):
                g = solve(problem, "global", time_limit=10.0)
                kg = g.tokens[problem.active]
                entry[2:] = [g.objective, float(np.mean(kg)), float(np.mean(kg <= problem.k_lo))]
            closed = solve(problem, "alternating")
            joint = solve(problem, "alternating", token_step="exact", init="joint")
            entry += [closed.objective, float(np.mean(closed.tokens[problem.active])), closed.history[0],
                      joint.objective]
            best.setdefault(den, []).append(tuple(entry))
            for k in ks:
                try:
                    sol = solve(problem, "fixed_tokens", tokens=int(k))
                    rows.append(dict(denominator=den, seed=s, K=int(k), ste=sol.objective, feasible=True,
                                     tau_s=sol.info["tau_s"]))
                except InfeasibleError:
                    rows.append(dict(denominator=den, seed=s, K=int(k), ste=np.nan, feasible=False,
                                     tau_s=np.nan))
    summary = []
    for den in ("round", "uplink"):
        for k in ks:
            r = [x for x in rows if x["denominator"] == den and x["K"] == k]
            vals = [x["ste"] for x in r if x["feasible"]]
            summary.append(dict(denominator=den, K=int(k), mean_ste=float(np.mean(vals)) if vals else np.nan,
                                feasible=len(vals), infeasible=len(r) - len(vals)))
    # a common-seed mean: only seeds feasible at every K, so the curve is not biased by dropouts
    common = {}
    for den in ("round", "uplink"):
        ok = [s for s in seeds if all(x["feasible"] for x in rows if x["denominator"] == den and x["seed"] == s)]
        common[den] = ok
        for row in summary:
            if row["denominator"] == den:
                v = [x["ste"] for x in rows if x["denominator"] == den and x["seed"] in ok and x["K"] == row["K"]]
                row["mean_ste_common_seeds"] = float(np.mean(v)) if v else np.nan
    return rows, summary, best, common


# ---------------------------------------------------------------------------- ablation
def ablation(seeds, n_devices=10):
    rows = []
    have_global = any(m.name == "global" for m in list_methods("ste"))
    methods = [m for m, _ in ABLATIONS] + (["global"] if have_global else [])
    for s in seeds:
        problem = STEProblem(make_scenario("st-sflora", n_devices=n_devices, seed=s))
        for method in methods:
            opts = {"time_limit": 10.0} if method == "global" else {}
            try:
                sol = solve(problem, method, **opts)
                assert problem.check(sol).ok
                rows.append(dict(seed=s, method=method, ste=sol.objective, feasible=True,
                                 mean_tokens=float(np.mean(sol.tokens[problem.active])),
                                 mean_power_w=float(np.mean(sol.power[problem.active])),
                                 share_at_pmax=float(np.mean(sol.power[problem.active]
                                                             >= problem.p_max * (1 - 1e-9))),
                                 mean_uplink_s=float(np.mean(sol.uplink_time[problem.active])),
                                 active=problem.M))
            except InfeasibleError:
                rows.append(dict(seed=s, method=method, ste=np.nan, feasible=False, mean_tokens=np.nan,
                                 mean_power_w=np.nan, share_at_pmax=np.nan, mean_uplink_s=np.nan, active=problem.M))
    return rows, methods


# ---------------------------------------------------------------------------- calibration
def calibration(seeds, n_devices=10):
    """Preset numbers: time to upload all N tokens, and the K where the energy limit binds at p_max,
    each with a 5 MHz share, over the devices of ``seeds`` (with fading) and at mean fading."""
    rows = []
    for s in seeds:
        scen = make_scenario("st-sflora", n_devices=n_devices, seed=s)
        beta, n0 = scen.bits_per_token, scen.noise_psd_w_hz
        for fading_label, gain in (("rayleigh", scen.gain), ("none (mean gain)", scen.path_gain)):
            r = channel.rate_bps(5e6, scen.p_max_w, gain, n0)
            for d in range(scen.n_devices):
                rows.append(dict(seed=s, device=d, fading=fading_label, distance_m=scen.distance_m[d],
                                 rate_mbps=r[d] / 1e6,
                                 upload_all_tokens_s=float(scen.payload_bits(scen.n_patches) / r[d]),
                                 k_energy_binds=float(scen.energy_max_j[d] * r[d] / (scen.p_max_w[d] * beta)
                                                      - scen.extra_tokens),
                                 compute_time_s=scen.compute_time_s[d],
                                 standing_time_s=scen.standing_time_s[d]))
    return rows


def _q(values, qs=(10, 50, 90)):
    v = np.percentile(np.asarray(values, dtype=float), qs)
    return " / ".join(f"{x:.3g}" for x in v)


# ---------------------------------------------------------------------------- plots
def plot_convergence(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, variant in zip(axes, ("alternating", "alternating[token_step=exact]")):
        for m, s, v, hist, _, _ in curves:
            if v != variant:
                continue
            h = np.asarray(hist) / hist[-1]
            style = dict(color="0.6", lw=0.8, alpha=0.7) if m == 10 else dict(lw=1.8, label=f"M = {m}, seed {s}")
            ax.plot(range(len(h)), h, marker="o", ms=3, **style)
        ax.set_title(variant + " (grey: M = 10, 20 seeds)", fontsize=9)
        ax.set_xlabel("outer iteration (0 = start)")
        integer_axis(ax.xaxis)
        ax.set_ylabel("STE / final STE")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_common_k(summary, best, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, den in zip(axes, ("round", "uplink")):
        rows = [r for r in summary if r["denominator"] == den]
        ks = np.array([r["K"] for r in rows])
        ax.plot(ks, [r["mean_ste"] for r in rows], marker="o", ms=3, label="fixed_tokens, mean over feasible seeds")
        ax.plot(ks, [r["mean_ste_common_seeds"] for r in rows], ls="--", lw=1,
                label="mean over seeds feasible at every K")
        inf = [(r["K"], r["mean_ste"]) for r in rows if r["infeasible"] > 0 and np.isfinite(r["mean_ste"])]
        if inf:
            ax.scatter(*zip(*inf), color="red", zorder=3, s=14, label="some seeds infeasible at this K")
        alt = float(np.mean([b[0] for b in best[den]]))
        ax.axhline(alt, color="k", lw=0.8, ls=":", label=f"alternating (exact), per-device K: {alt:.3g}")
        glob = float(np.mean([b[2] for b in best[den]]))
        if np.isfinite(glob):
            ax.axhline(glob, color="g", lw=0.8, ls="-.", label=f"global (certified), per-device K: {glob:.3g}")
        j = int(np.nanargmax([r["mean_ste"] for r in rows]))
        ax.axvline(ks[j], color="0.5", lw=0.8)
        ax.set_title(f'denominator = "{den}": peak at K = {ks[j]}', fontsize=9)
        ax.set_xlabel("common token budget K")
        ax.set_ylabel("STE (retained attention mass / s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, few seeds")
    ap.add_argument("--replot", action="store_true",
                    help=f"only redraw {NAME}_convergence.png from its CSV (no solving)")
    args = ap.parse_args(argv)
    if args.replot:
        curves: dict = {}
        for r in read_csv(f"{NAME}_convergence"):
            curves.setdefault((r["M"], r["seed"], r["variant"]), []).append((r["iteration"], r["ste"]))
        plot_convergence([(m, s, v, [x for _, x in sorted(h)], None, None)
                          for (m, s, v), h in curves.items()], results_dir() / f"{NAME}_convergence.png")
        return 0
    t_start = time.perf_counter()
    if args.quick:
        sizes, repeats = [10, 100], {10: 3, 100: 3}
        seeds, ks = list(range(3)), list(range(64, 197, 33))
        conv_sizes = [10, 100]
    else:
        sizes = [10, 100, 1000, 10000]
        repeats = {10: 21, 100: 15, 1000: 7, 10000: 5}
        seeds, ks = list(range(20)), sorted(set(range(64, 197, 4)) | {196})
        conv_sizes = [10, 100, 1000, 10000]
    out = results_dir()

    print("== timing", flush=True)
    t_rows = timing(sizes, repeats)
    write_csv(NAME, t_rows)

    print("== convergence", flush=True)
    c_rows, curves = convergence(seeds, conv_sizes)
    write_csv(f"{NAME}_convergence", c_rows)
    plot_convergence(curves, out / f"{NAME}_convergence.png")

    print("== STE vs common K", flush=True)
    k_rows, k_summary, best, common = common_k(seeds, ks)
    write_csv(f"{NAME}_common_k", k_rows)
    plot_common_k(k_summary, best, out / f"{NAME}_common_k.png")

    print("== ablation", flush=True)
    a_rows, a_methods = ablation(seeds)
    write_csv(f"{NAME}_ablation", a_rows)

    print("== calibration", flush=True)
    cal = calibration(seeds)
    write_csv(f"{NAME}_calibration", cal)

    md = report(t_rows, curves, k_summary, best, common, a_rows, a_methods, cal, seeds, args.quick,
                time.perf_counter() - t_start)
    write_section(NAME, md)
    print(md)
    return 0


def report(t_rows, curves, k_summary, best, common, a_rows, a_methods, cal, seeds, quick, elapsed):
    L = []
    L.append("## STE solvers on the ST-SFLora preset (`ste_scaling`)\n")
    L.append(f"Command: `python -m benchmarks.ste_scaling{' --quick' if quick else ''}` "
             f"(total {elapsed:.0f} s). {machine_line()} Shared with other jobs, so times are "
             "upper bounds. Preset `st-sflora` (5 MHz per active device, p_max 0.2 W, E_max 0.8 J, "
             "denominator \"round\" unless stated).\n")
    # --- timing
    L.append("### Scaling (median solve time over repeats; problem set-up time separate)\n")
    tab = [dict(M=r["M"], method=r["method"], active=r["active"], excluded=r["excluded"],
                median_ms=r.get("median_ms"), repeats=r["repeats"], ste=r.get("ste"),
                iterations=r.get("iterations"), converged_at=r.get("converged_at"),
                mean_K=r.get("mean_tokens"), setup_ms=r["setup_ms"],
                status=r["status"]) for r in t_rows]
    L.append(md_table(tab, fmt={"median_ms": ".2f", "ste": ".6g", "mean_K": ".1f", "setup_ms": ".1f"}))
    alt = {r["M"]: r for r in t_rows if r["method"] == "alternating" and "median_ms" in r}
    lines = []
    for m, target in ((100, 50.0), (10000, 2000.0)):
        if m in alt:
            v = alt[m]["median_ms"]
            lines.append(f"- `alternating` at M = {m}: median {v:.2f} ms (target ≤ {target:.0f} ms: "
                         f"{'met' if v <= target else 'MISSED'}); set-up of the problem "
                         f"{alt[m]['setup_ms']:.1f} ms more.")
    L.append("\n".join(lines) + "\n")
    inf_rows = [r for r in t_rows if r["status"] != "ok"]
    if inf_rows:
        L.append("Infeasible baselines at scale (the method raises `InfeasibleError` naming the devices): "
                 + "; ".join(f"M = {r['M']} `{r['method']}` ({r['status'][12:]})" for r in inf_rows) + ".\n")
    stuck = [m for m, r in alt.items() if r.get("mean_tokens", 0) <= 64.0 + 1e-9]
    if stuck:
        ex = {r["M"]: r for r in t_rows if r["method"] == "alternating[token_step=exact]" and "ste" in r}
        L.append("With the paper's closed-form token step (Eq. 41) `alternating` keeps every device at "
                 f"K_min for M ∈ {stuck}: when the equal split is infeasible at K_min the start is the "
                 "exact resource step, in which every device fills its window up to the straggler time τ, "
                 "so \"the largest K under τ\" is K_min and nothing moves. `token_step=\"exact\"` "
                 "(best τ among all breakpoints) leaves that point: "
                 + ", ".join(f"M = {m}: STE {ex[m]['ste']:.6g} vs {alt[m]['ste']:.6g} (+"
                             f"{(ex[m]['ste'] / alt[m]['ste'] - 1) * 100:.1f} %)" for m in stuck if m in ex)
                 + ".\n")
    # --- convergence
    L.append("### Convergence of `alternating` (preset, M = 10, seeds 0–"
             f"{seeds[-1]}; and seed 0 at larger M)\n")
    L.append(f"![convergence](results/{NAME}_convergence.png)\n")
    conv = []
    for variant in ("alternating", "alternating[token_step=exact]"):
        c10 = [c for c in curves if c[2] == variant and c[0] == 10]
        at = [c[5] for c in c10]
        its = [c[4] for c in c10]
        conv.append(dict(variant=variant, seeds=len(c10), max_converged_at=max(at),
                         mean_converged_at=float(np.mean(at)), max_iterations_run=max(its),
                         within_5=sum(a <= 5 for a in at),
                         larger_M=", ".join(f"M={c[0]}: {c[5]}" for c in curves if c[2] == variant and c[0] > 10)))
    L.append(md_table(conv, fmt={"mean_converged_at": ".2f"}))
    L.append("`converged_at`: the outer iteration after which the STE no longer changes (0 = the start); "
             "`iterations_run` includes the final iteration that confirms no change. The history is "
             "non-decreasing in every run (tests assert it on random instances).\n")
    # --- common K
    L.append("### STE against a common token budget K (the paper's Fig. 6 shape)\n")
    L.append(f"`fixed_tokens` with the same K on every device (bandwidth and power optimal), preset M = 10, "
             f"mean over {len(seeds)} seeds; both STE denominators.\n")
    L.append(f"![STE vs K](results/{NAME}_common_k.png)\n")
    peak = {}
    for den in ("round", "uplink"):
        rows = [r for r in k_summary if r["denominator"] == den]
        j = int(np.nanargmax([r["mean_ste"] for r in rows]))
        jc = int(np.nanargmax([r["mean_ste_common_seeds"] for r in rows]))
        peak[den] = (rows[j]["K"], rows[j]["mean_ste"], rows[jc]["K"])
        infeas = [f"K={r['K']}: {r['infeasible']}" for r in rows if r["infeasible"]]
        b = best[den]
        L.append(f"- **{den}**: mean STE peaks at K = {rows[j]['K']} ({rows[j]['mean_ste']:.4g}); "
                 f"at K = 64: {rows[0]['mean_ste']:.4g}, at K = 196: {rows[-1]['mean_ste']:.4g}. Over the "
                 f"{len(common[den])} seeds feasible at every K the peak is at K = {rows[jc]['K']}. "
                 f"Infeasible (seeds out of {len(seeds)}): {', '.join(infeas) if infeas else 'none'}. "
                 f"Per-device K: `alternating` (exact token step) mean STE {np.mean([x[0] for x in b]):.4g}, "
                 f"mean K {np.mean([x[1] for x in b]):.1f}"
                 + (f"; certified optimum (`global`) mean STE {np.mean([x[2] for x in b]):.4g}, mean K "
                    f"{np.mean([x[3] for x in b]):.1f}, {np.mean([x[4] for x in b]):.0%} of the admitted devices "
                    "at K_min" if np.isfinite(b[0][2]) else "")
                 + f"; `alternating` (closed form) mean STE {np.mean([x[5] for x in b]):.4g}, mean K "
                 f"{np.mean([x[6] for x in b]):.1f}, from a start (equal split, K_min) at mean STE "
                 f"{np.mean([x[7] for x in b]):.4g}; `alternating(token_step=\"exact\", init=\"joint\")` "
                 f"mean STE {np.mean([x[8] for x in b]):.4g}.")
    L.append("")
    sel = [r for r in k_summary if r["K"] in (64, 80, 100, 120, 136, 160, 180, 196)]
    L.append(md_table([dict(denominator=r["denominator"], K=r["K"], mean_ste=r["mean_ste"],
                            mean_ste_common_seeds=r["mean_ste_common_seeds"], infeasible_seeds=r["infeasible"])
                       for r in sel], fmt={"mean_ste": ".4g", "mean_ste_common_seeds": ".4g"}))
    L.append("With the `\"uplink\"` denominator the upload time is affine in K and the retention concave, "
             "so the STE falls from K_min on and the optimum puts every device at (or near) K_min; the "
             "`\"round\"` denominator adds the client's forward time T0 (2–4.4 s) to the straggler time, "
             "which makes the first tokens cheap and gives the interior peak.\n")
    # --- ablation
    L.append(f"### Ablation (preset M = 10, seeds 0–{seeds[-1]}, E_max = 0.8 J)\n")
    names = dict(ABLATIONS)
    names["global"] = "certified optimum (`global`, reference)"
    stats = []
    all_ok = [s for s in seeds if all(r["feasible"] for r in a_rows if r["seed"] == s and r["method"] in names)]
    for m in a_methods:
        r = [x for x in a_rows if x["method"] == m]
        v = [x["ste"] for x in r if x["feasible"]]
        vc = [x["ste"] for x in r if x["feasible"] and x["seed"] in all_ok]
        stats.append(dict(method=m, variant=names.get(m, m), mean_ste=float(np.mean(v)) if v else np.nan,
                          mean_ste_common=float(np.mean(vc)) if vc else np.nan,
                          infeasible=f"{len(r) - len(v)}/{len(r)}",
                          mean_K=float(np.nanmean([x["mean_tokens"] for x in r])),
                          mean_power_w=float(np.nanmean([x["mean_power_w"] for x in r])),
                          devices_at_pmax=float(np.nanmean([x["share_at_pmax"] for x in r])),
                          mean_uplink_s=float(np.nanmean([x["mean_uplink_s"] for x in r]))))
    L.append(md_table(stats, fmt={"mean_ste": ".5g", "mean_ste_common": ".5g", "mean_K": ".1f",
                                  "mean_power_w": ".3f", "devices_at_pmax": ".1%",
                                  "mean_uplink_s": ".2f"}))
    L.append(f"`mean_ste` is over the seeds where the variant is feasible; `mean_ste_common` over the "
             f"{len(all_ok)} seeds where every variant is feasible.\n")
    full = next(s for s in stats if s["method"] == "alternating")["mean_ste_common"]
    losses = {s["method"]: full - s["mean_ste_common"] for s in stats if s["method"] in
              ("fixed_power", "equal_bandwidth", "all_tokens")}
    order = sorted(losses, key=losses.get, reverse=True)
    L.append("Measured loss against the full method (common seeds): "
             + ", ".join(f"{names[m]} {losses[m]:+.4g} ({losses[m] / full * 100:.2f} %)" for m in order) + ". "
             "Paper's order (largest loss first): no token selection, no bandwidth allocation, no power "
             f"control. Measured order: {', '.join(names[m] for m in order)}.\n")
    L.append(_ablation_explanation(stats, losses, a_rows))
    # --- calibration
    L.append("### Preset calibration numbers\n")
    cal_rows = []
    for fl in ("rayleigh", "none (mean gain)"):
        r = [x for x in cal if x["fading"] == fl]
        cal_rows.append(dict(fading=fl, devices=len(r),
                             rate_5MHz_mbps_p10_p50_p90=_q([x["rate_mbps"] for x in r]),
                             upload_196_tokens_s_p10_p50_p90=_q([x["upload_all_tokens_s"] for x in r]),
                             K_energy_binds_p10_p50_p90=_q([x["k_energy_binds"] for x in r])))
    L.append(md_table(cal_rows))
    r = [x for x in cal if x["fading"] == "rayleigh"]
    L.append(f"Over the {len(r)} devices drawn in seeds 0–{seeds[-1]} (M = 10) with a 5 MHz share at "
             f"p_max = 0.2 W: uploading all 196 tokens (S = 198 · 1 572 864 bits ≈ 311 Mbit) takes "
             f"{_q([x['upload_all_tokens_s'] for x in r])} s (10th / 50th / 90th percentile), and the "
             f"energy limit p_max · S(K) / R ≤ 0.8 J binds at K = {_q([x['k_energy_binds'] for x in r])}. "
             f"Client forward time T0: {_q([x['compute_time_s'] for x in r])} s.\n")
    return "\n".join(L)


def _ablation_explanation(stats, losses, a_rows):
    """Explain the measured order from the per-seed numbers."""
    s = {x["method"]: x for x in stats}
    by = {}
    for r in a_rows:
        by.setdefault(r["method"], {})[r["seed"]] = r
    full = by["alternating"]
    txt = []

    def paired(m):
        seeds = [k for k, r in by[m].items() if r["feasible"]]
        d = np.array([full[k]["ste"] - by[m][k]["ste"] for k in seeds])
        return seeds, d

    for m, what in (("fixed_power", "No power control"), ("equal_bandwidth", "No bandwidth allocation")):
        if m not in by:
            continue
        seeds, d = paired(m)
        rel = d / np.array([full[k]["ste"] for k in seeds])
        txt.append(f"{what} is feasible on {len(seeds)}/{len(by[m])} seeds; paired with the full method it "
                   f"loses {np.mean(d):.3g} on average ({np.mean(rel) * 100:.2f} %), more than 1e-6 on "
                   f"{int(np.sum(rel > 1e-6))} seeds, at most {np.max(rel) * 100:.2f} %.")
    al = s["alternating"]
    txt.append(f"Power control matters little on this preset because the full method already sends at p_max "
               f"on {al['devices_at_pmax']:.1%} of the admitted devices: with the \"round\" denominator the "
               "straggler time includes T0 (2–4.4 s), the upload windows are short (mean upload "
               f"{al['mean_uplink_s']:.2f} s) and E_max / t ≥ 0.8 J / 4 s = p_max, so the optimal power "
               "min(p_max, p̄) is p_max except for the few devices whose energy limit binds first — which "
               "is exactly what the ablation fixes. Bandwidth allocation matters little because the "
               "equal 5 MHz shares are close to what the ten devices need when none is far or faded "
               "(when one is, the equal split becomes infeasible: see the scaling table at M ≥ 100).")
    at = s.get("all_tokens")
    if at:
        txt.append(f"No token selection (all 196 tokens) loses the most ({losses.get('all_tokens', float('nan')):.3g} "
                   f"on the common seeds) and is infeasible on {at['infeasible']} seeds: some device cannot "
                   "send 196 tokens within its standing window at any bandwidth. The paper reports larger "
                   "losses (about 19 %, 12 % and 7 % from its Fig. 8b).")
    if "fixed_power" in by and "equal_bandwidth" in by:
        _, dp = paired("fixed_power")
        _, db = paired("equal_bandwidth")
        first = "no power control" if np.mean(dp) > np.mean(db) else "no bandwidth allocation"
        txt.append(f"Over all the seeds where each is feasible, no power control loses {np.mean(dp):.3g} and "
                   f"no bandwidth allocation {np.mean(db):.3g}, so there {first} loses more"
                   + (" (the paper's order is the reverse; the difference comes from the few seeds where "
                      "an energy-limited device gains from a lower power)." if first == "no power control"
                      else " (the paper's order)."))
    return " ".join(txt) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
