"""Closed-loop benchmark (issue 6): solver schedules driving real training on digits.

Parts (``--parts`` picks some; all by default), all on the demo config
(``ste_opt/configs/demo.yaml``: 10 clients, Dirichlet(0.5), 3 local steps of 32 samples) from the
same cached pretrained backbone:

- ``pair``: the demo's comparison (``--pair-rounds``, default the demo's 8 rounds) — solver schedule (``alternating``, K_m at 8 bits, re-solved
  every round on fresh fading with calibrated profiles) vs the all-tokens fp32 baseline;
- ``acc_vs_k``: accuracy against a common K at 8 bits (the shape of ST-SFLora's Fig. 10);
- ``ste_vs_k``: STE against a common K from profiles calibrated on the pretrained model, both
  denominators (the shape of its Fig. 6), next to the solver's optimum;
- ``fading``: K_m chosen per round under Rayleigh fading (30 planned rounds, no training);
- ``sflam``: SFLAM pilots — all tokens at 2/4/8/32 bits, rounds to reach test-error targets, and
  ``ste_opt.model.convergence.fit_convergence_model`` fitting A, B0, C of docs/MODEL.md §4.

Usage: ``python -m benchmarks.closed_loop [--quick] [--rounds N] [--pair-rounds N] [--parts a,b]``;
a run of some parts merges them with the parts stored in ``results/closed_loop.json``.
"""
from __future__ import annotations

import argparse
import json
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

PARTS = ("pair", "acc_vs_k", "ste_vs_k", "fading", "sflam")


def _splits(cfg):
    from ste_opt.learning_hooks.data import load_splits

    d = cfg["data"]
    return load_splits(d["name"], d["root"], d["image_size"], d["source_fraction"], d["test_fraction"],
                       int(cfg["seed"]), d.get("max_per_class"))


def _static_run(cfg, splits, tokens_kept, bits, rounds):
    from ste_opt.learning_hooks.schedule import StaticSchedule
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    tr = SplitFedTrainer(cfg, schedule=StaticSchedule(tokens_kept, bits), run_dir=False, progress=False,
                         splits=splits)
    hist = tr.fit(rounds)
    return tr, hist


# --------------------------------------------------------------------------- parts
def part_pair(cfg, splits, rounds, out):
    from ste_opt.learning_hooks.demo import run_pair

    res = run_pair(cfg, seed=int(cfg["seed"]), rounds=rounds, progress=False, splits=splits)
    write_csv("closed_loop_pair", res["rounds"])
    write_csv("closed_loop_pair_clients", res["clients"])
    s = res["summary"]
    rows = []
    for name in ("solver", "baseline"):
        r = s["runs"][name]
        rows.append({"run": name, "final_acc_%": 100 * r["final_acc"], "last3_acc_%": 100 * r["acc_last3"],
                     "uplink_act_MB": r["uplink_activation_mb"],
                     "uplink_total_MB": r["uplink_total_mb"], "sim_time_s": r["simulated_time_s"],
                     "energy_J": r["energy_j"], "client_peak_MB": r["client_peak_mb"],
                     "excluded_dev_rounds": r["excluded_device_rounds"],
                     "deadline_viol": r["deadline_violations"], "bits_match": r["bits_match_every_round"]})
    out["pair"] = {"rows": rows, "comparison": s["comparison"], "scenario": s["scenario"], "rounds": rounds,
                   "compressed": s["runs"]["solver"].get("final_acc_compressed_eval"),
                   "compressed_plan": s["runs"]["solver"].get("compressed_eval_plan"),
                   "per_round": s["rounds"]}


def part_acc_vs_k(cfg, splits, rounds, out, ks, cache=None):
    rows, curves = [], {}
    for k in ks:
        tr, hist = _static_run(cfg, splits, k, 8, rounds)
        kk = tr.num_patches if k is None else k
        up = sum(h["uplink_bits"] for h in hist)
        rows.append({"tokens_kept": "all" if k is None else k, "K": kk, "bits": 8,
                     "final_acc_%": 100 * hist[-1]["test_acc"],
                     "mean_last2_acc_%": 100 * float(np.mean([h["test_acc"] for h in hist[-2:]])),
                     "uplink_act_MB": up / 8e6})
        curves[kk] = [h["test_acc"] for h in hist]
        if cache is not None and k is None:
            cache[(None, 8)] = [1.0 - h["test_acc"] for h in hist]
        print(f"  acc_vs_k K={kk}: {100 * hist[-1]['test_acc']:.2f} %", flush=True)
    write_csv("closed_loop_acc_vs_k", rows)
    out["acc_vs_k"] = {"rows": rows, "rounds": rounds}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["K"] for r in rows], [r["final_acc_%"] for r in rows], "o-")
    ax.set_xlabel("tokens kept K (of 64), 8-bit uplink")
    ax.set_ylabel(f"test accuracy after {rounds} rounds (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(results_dir() / "closed_loop_acc_vs_k.png", dpi=120)
    plt.close(fig)


def _trainer_and_schedule(cfg, splits, **kw):
    from ste_opt.learning_hooks.solver_schedule import SolverSchedule
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    sched = SolverSchedule(seed=int(cfg["seed"]), **kw)
    tr = SplitFedTrainer(cfg, schedule=sched, run_dir=False, progress=False, splits=splits)
    sched._ensure_scenario(tr)
    return tr, sched


def part_ste_vs_k(cfg, splits, out):
    from ste_opt import STEProblem, solve
    from ste_opt.errors import InfeasibleError
    from ste_opt.learning_hooks.calibrate import calibrate_profiles, profiles_matrix
    from ste_opt.learning_hooks.solver_schedule import round_scenario

    tr, sched = _trainer_and_schedule(cfg, splits)
    ids = list(range(tr.num_clients))
    scen = round_scenario(sched.scenario, ids, 0, sched.seed)
    prof = calibrate_profiles(tr.plan_context(), ids, round_idx=0, batch=scen.batch)
    scen = scen.with_retention(profiles_matrix(prof, ids))
    rows, best = [], {}
    for den in ("round", "uplink"):
        prob = STEProblem(scen, denominator=den)
        opt = solve(prob, "alternating")
        best[den] = {"ste": opt.objective, "mean_k": float(np.mean(opt.tokens[prob.active]))}
        for k in range(scen.k_min, scen.n_patches + 1):
            try:
                sol = solve(prob, "fixed_tokens", tokens=k)
                rows.append({"denominator": den, "K": k, "ste": sol.objective,
                             "straggler_s": float(np.max(sol.latency_s[prob.active])), "feasible": True})
            except InfeasibleError:
                rows.append({"denominator": den, "K": k, "ste": None, "straggler_s": None, "feasible": False})
    write_csv("closed_loop_ste_vs_k", rows)
    frac = np.cumsum(profiles_matrix(prof, ids), axis=1) / profiles_matrix(prof, ids).sum(axis=1, keepdims=True)
    out["ste_vs_k"] = {"best": best, "rows": rows, "excluded": len(STEProblem(scen).excluded),
                       "retention_at": {k: float(np.mean(frac[:, k - 1])) for k in (8, 16, 32, 48)}}
    plot_ste_vs_k(rows, best)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in ids:
        ax.plot(np.arange(1, frac.shape[1] + 1), frac[m], lw=0.8)
    ax.set_xlabel("K")
    ax.set_ylabel("f_m(K) / f_m(N)")
    ax.set_title("calibrated retention, pretrained backbone")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(results_dir() / "closed_loop_profiles.png", dpi=120)
    plt.close(fig)


def part_fading(cfg, splits, out, n_rounds):
    tr, sched = _trainer_and_schedule(cfg, splits)
    from ste_opt.learning_hooks.solver_schedule import round_scenario

    ids = list(range(tr.num_clients))
    rows = []
    for r in range(n_rounds):
        sched.plan(r, ids, tr.plan_context())
        rec = sched.records[-1]
        scen = round_scenario(sched.scenario, ids, r, sched.seed)
        for c in ids:
            pc = rec["per_client"].get(c)
            rows.append({"round": r, "client": c, "gain_db": float(10 * np.log10(scen.gain[c])),
                         "fading": float(scen.fading[c]), "tokens_kept": None if pc is None else pc["tokens_kept"],
                         "latency_s": None if pc is None else pc["latency_s"],
                         "excluded": pc is None, "reason": rec["excluded_reasons"].get(c, "")})
    write_csv("closed_loop_fading", rows)
    part = [x for x in rows if not x["excluded"]]
    ks = np.array([x["tokens_kept"] for x in part], dtype=float)
    fad = np.array([x["fading"] for x in part])
    per_client = {}
    for c in ids:
        kc = [x["tokens_kept"] for x in part if x["client"] == c]
        if kc:
            per_client[c] = (float(np.mean(kc)), float(np.std(kc)), int(min(kc)), int(max(kc)))
    corr = float(np.corrcoef(np.log(fad), ks)[0, 1]) if ks.std() > 0 else float("nan")
    out["fading"] = {"rounds": n_rounds, "per_client": per_client, "corr_logfading_k": corr,
                     "excluded": sorted(c for c in ids if all(x["excluded"] for x in rows if x["client"] == c)),
                     "excluded_rounds": {c: sum(x["excluded"] for x in rows if x["client"] == c) for c in ids
                                         if any(x["excluded"] for x in rows if x["client"] == c)},
                     "k_mean": float(ks.mean()), "k_std": float(ks.std())}
    plot_fading(rows)


STE_UNIT = "STE (retained attention mass per s)"


def plot_ste_vs_k(rows: list[dict], best: dict) -> None:
    """``closed_loop_ste_vs_k.png``: STE against a common K for both denominators, with the
    per-device optimum of ``alternating`` as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    for i, den in enumerate(("round", "uplink")):
        rr = [r for r in rows if r["denominator"] == den and r["feasible"]]
        ax[i].plot([r["K"] for r in rr], [r["ste"] for r in rr], "-", label="common K")
        ax[i].axhline(best[den]["ste"], color="k", ls="--", lw=0.8, label="alternating (per-device K_m)")
        ax[i].set_title(f"denominator = {den!r}")
        ax[i].set_xlabel("common K, tokens kept per device (calibrated profiles)")
        integer_axis(ax[i].xaxis)
        ax[i].set_ylabel(STE_UNIT)
        ax[i].grid(alpha=0.3)
        ax[i].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(results_dir() / "closed_loop_ste_vs_k.png", dpi=120)
    plt.close(fig)


def plot_fading(rows: list[dict]) -> None:
    """``closed_loop_fading.png``: left, K_m of every client and round as a heat map (excluded
    rounds blank); right, K_m against the round's fading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = sorted({int(x["client"]) for x in rows})
    rounds = sorted({int(x["round"]) for x in rows})
    grid = np.full((len(clients), len(rounds)), np.nan)
    for x in rows:
        if not x["excluded"] and x["tokens_kept"] is not None:
            grid[clients.index(int(x["client"])), rounds.index(int(x["round"]))] = x["tokens_kept"]
    part = [x for x in rows if not x["excluded"] and x["tokens_kept"] is not None]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.35, 1]})
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax[0].imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, origin="lower",
                      interpolation="nearest",
                      extent=(rounds[0] - 0.5, rounds[-1] + 0.5, -0.5, len(clients) - 0.5))
    ax[0].set_yticks(range(len(clients)), [str(c) for c in clients])
    integer_axis(ax[0].xaxis)
    ax[0].set_xlabel("round")
    ax[0].set_ylabel("client")
    ax[0].set_title("tokens kept K_m per round (grey: excluded)", fontsize=10)
    fig.colorbar(im, ax=ax[0], label="K_m (tokens)", pad=0.02)
    for c in clients:
        pc = [x for x in part if int(x["client"]) == c]
        if pc:
            ax[1].scatter([x["fading"] for x in pc], [x["tokens_kept"] for x in pc], s=10,
                          label=str(c), color=plt.get_cmap("tab10")(c % 10))
    ax[1].legend(title="client", fontsize=7, title_fontsize=7, loc="upper left",
                 bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax[1].set_xscale("log")
    ax[1].set_xlabel("fading |g|^2 of the round (linear, log axis)")
    ax[1].set_ylabel("K_m (tokens)")
    ax[1].set_title("K_m against the round's fading", fontsize=10)
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(results_dir() / "closed_loop_fading.png", dpi=120)
    plt.close(fig)


def replot() -> None:
    """Redraw the figures from the CSVs (and closed_loop.json for the per-device optimum)."""
    plot_fading(read_csv("closed_loop_fading"))
    best = json.loads((results_dir() / "closed_loop.json").read_text())["ste_vs_k"]["best"]
    plot_ste_vs_k(read_csv("closed_loop_ste_vs_k"), best)


def _rounds_to(errors, eps):
    for i, e in enumerate(errors):
        if e <= eps:
            return float(i + 1)
    return float("inf")


def part_sflam(cfg, splits, rounds, out, bit_list, cache):
    try:
        from ste_opt.model.convergence import fit_convergence_model
    except ImportError:
        fit_convergence_model = None
    curves = {}
    for b in bit_list:
        if (None, b) in cache:
            curves[b] = cache[(None, b)]
        else:
            _, hist = _static_run(cfg, splits, None, b, rounds)
            curves[b] = [1.0 - h["test_acc"] for h in hist]
        print(f"  sflam pilot {b} bits: errors {np.round(curves[b], 4).tolist()}", flush=True)
    pooled = np.concatenate([np.asarray(v) for v in curves.values()])
    # targets: error levels every run passes at different times (quantiles of the pooled curves)
    eps_grid = sorted(set(np.round(np.quantile(pooled, [0.3, 0.5, 0.7]), 4).tolist()))
    rows = []
    for b, errs in curves.items():
        for eps in eps_grid:
            rows.append({"bits": b, "epsilon_test_error": eps, "rounds_to_target": _rounds_to(errs, eps),
                         "errors": " ".join(f"{e:.4f}" for e in errs)})
    write_csv("closed_loop_sflam_pilots", rows)
    fit = None
    msg = ""
    if fit_convergence_model is None:
        msg = "ste_opt.model.convergence.fit_convergence_model not available"
    else:
        try:
            fit = fit_convergence_model([r["bits"] for r in rows], [r["rounds_to_target"] for r in rows],
                                        [r["epsilon_test_error"] for r in rows])
        except Exception as exc:  # noqa: BLE001 - reported in RESULTS, not fatal
            msg = f"fit failed: {exc}"
    if fit is not None:
        fit = {"a": fit.a, "b0": fit.b0, "c": fit.c, "rmse_rel": fit.rmse_rel, "n_points": fit.n_points}
    out["sflam"] = {"rows": rows, "fit": fit, "msg": msg, "eps": eps_grid, "rounds": rounds}


# --------------------------------------------------------------------------- report
def _section(out, args, wall) -> str:
    cmds = "; ".join(f"{k}: `{v['command']}` ({v['wall_s']:.0f} s)" for k, v in out.items()
                     if isinstance(v, dict) and "command" in v)
    lines = ["## Closed loop: solver schedules driving training (`benchmarks/closed_loop.py`)", "",
             f"Commands (parts are stored in `results/closed_loop.json` and merged): {cmds}. "
             f"{machine_line()} (shared with other jobs). Config `ste_opt/configs/demo.yaml` "
             "(digits, compact ViT N = 64 patches, D = 96, 10 clients, Dirichlet 0.5, 3 local steps × 32 "
             "samples), one seed (0): differences below ~1 point are within run-to-run noise "
             "(1 test sample = 0.28 points).", ""]
    if "pair" in out:
        p = out["pair"]
        c = p["comparison"]
        sc = p["scenario"]
        lines += ["### Solver schedule vs all-tokens fp32 baseline", "",
                  f"Scenario: the ST-SFLora preset (10 devices, seed 0) with the model's spec (batch "
                  f"{sc['batch']} samples/round, K_min {sc['k_min']}), bandwidth and path gain scaled by "
                  f"ρ = {sc['scale']:.4g} (payload rule). Simulated time = Σ rounds of the straggler's "
                  "T0 + T^U; energy = Σ uplink energy (solver: the solution's; baseline: p_max, "
                  "straggler-minimizing bandwidth split, limits not enforced).", "",
                  md_table(p["rows"], fmt={"final_acc_%": ".2f", "last3_acc_%": ".2f", "uplink_act_MB": ".3f",
                                           "uplink_total_MB": ".3f", "sim_time_s": ".1f",
                                           "energy_J": ".2f", "client_peak_MB": ".2f"}),
                  f"Accuracy difference {c['accuracy_diff_points']:+.2f} points after {p['rounds']} rounds "
                  f"({c['accuracy_last3_diff_points']:+.2f} averaged over the last 3 rounds); "
                  f"{c['uplink_activation_ratio']:.2f}× fewer activation bits "
                  f"({c['uplink_total_ratio']:.2f}× counting adapters and profiles); "
                  f"{c['simulated_time_ratio']:.2f}× less simulated time, {c['energy_ratio']:.2f}× less energy. "
                  f"Target (≤ 1 point, ≥ 3× fewer bits) met: **{c['target_met']}**."]
        if p["compressed"] is not None:
            lines.append(f"The solver run's final model evaluated with K = {p['compressed_plan']['tokens_kept']} "
                         f"at 8 bits: {100 * p['compressed']:.2f} %.")
        lines += ["", "Per round (predicted by the solver next to the measured packed bits):", "",
                  md_table(p["per_round"], ["run", "round", "test_acc", "tokens_mean", "excluded",
                                            "pred_straggler_s", "pred_energy_j", "pred_uplink_bits",
                                            "measured_uplink_bits", "bits_match", "gap_vs_global"],
                           fmt={"test_acc": ".4f", "tokens_mean": ".1f", "pred_straggler_s": ".3f",
                                "pred_energy_j": ".3f", "gap_vs_global": ".1e"}), ""]
    if "acc_vs_k" in out:
        lines += [f"### Accuracy against K after {out['acc_vs_k']['rounds']} rounds (8-bit uplink; shape of "
                  "ST-SFLora Fig. 10)", "",
                  md_table(out["acc_vs_k"]["rows"], fmt={"final_acc_%": ".2f", "mean_last2_acc_%": ".2f",
                                                 "uplink_act_MB": ".3f"}),
                  "![accuracy vs K](results/closed_loop_acc_vs_k.png)", ""]
    if "ste_vs_k" in out:
        s = out["ste_vs_k"]
        lines += ["### STE against a common K from calibrated profiles (shape of ST-SFLora Fig. 6)", "",
                  "Profiles measured on each client's data with the pretrained backbone (round 0 fading); "
                  "mean retained fraction f(K)/f(N): "
                  + ", ".join(f"K={k}: {v:.3f}" for k, v in s["retention_at"].items()) + ". "
                  f"{s['excluded']} device(s) excluded by admission.", ""]
        best_rows = []
        for den, b in s["best"].items():
            feas = [r for r in s["rows"] if r["denominator"] == den and r["feasible"]]
            top = max(feas, key=lambda r: r["ste"]) if feas else None
            best_rows.append({"denominator": den, "best_common_K": top["K"] if top else None,
                              "ste_at_best_common_K": top["ste"] if top else None,
                              "alternating_ste": b["ste"], "alternating_mean_K": b["mean_k"]})
        lines += [md_table(best_rows, fmt={"ste_at_best_common_K": ".4g", "alternating_ste": ".4g",
                                           "alternating_mean_K": ".1f"}),
                  "![STE vs K](results/closed_loop_ste_vs_k.png) "
                  "![profiles](results/closed_loop_profiles.png)", ""]
    if "fading" in out:
        f = out["fading"]
        rows = [{"client": c, "mean_K": v[0], "std_K": v[1], "min_K": v[2], "max_K": v[3]}
                for c, v in f["per_client"].items()]
        lines += [f"### K_m chosen per round under Rayleigh fading ({f['rounds']} planned rounds)", "",
                  f"Correlation between log fading and K_m: {f['corr_logfading_k']:.2f}; clients never "
                  f"admitted (standing time below compute time): {f['excluded'] or 'none'}; rounds each "
                  f"client sat out: {f['excluded_rounds'] or 'none'} (reasons in `results/closed_loop_fading.csv`: "
                  "a deep fade, or dropped so that the others fit K_min in the bandwidth).", "",
                  md_table(rows, fmt={"mean_K": ".1f", "std_K": ".1f"}),
                  "![K under fading](results/closed_loop_fading.png)", ""]
    if "sflam" in out:
        s = out["sflam"]
        lines += ["### SFLAM pilots: rounds to target against bit-width", "",
                  "All tokens, uplink at b bits; ε = test error targets (quantiles of the pooled "
                  f"curves: {s['eps']}); rounds counted from 1, `inf` = not reached.", "",
                  md_table([{k: r[k] for k in ("bits", "epsilon_test_error", "rounds_to_target")}
                            for r in s["rows"]]), ""]
        if s["fit"] is not None:
            ft = s["fit"]
            lines.append(f"`fit_convergence_model`: A = {ft['a']:.4g}, B0 = {ft['b0']:.4g}, C = {ft['c']:.4g} "
                         f"(relative RMSE {ft['rmse_rel']:.3f} over {ft['n_points']} reached targets). "
                         "From a pretrained backbone every bit-width converges in 2–5 rounds and the "
                         "differences are within one seed's noise, so the constants are weakly identified; "
                         "pilots from a weaker start (fewer pretraining epochs) or with several seeds would "
                         "separate the bit-widths better.")
        else:
            lines.append(f"No fit: {s['msg']}.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.closed_loop", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, few K values")
    ap.add_argument("--rounds", type=int, default=None, help="training rounds per run (default 6, quick 2)")
    ap.add_argument("--pair-rounds", type=int, default=None,
                    help="rounds of the solver-vs-baseline pair (default: the demo config's, 8; quick 2)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw closed_loop_fading.png and closed_loop_ste_vs_k.png from the CSVs")
    args = ap.parse_args(argv)
    if args.replot:
        replot()
        return 0
    args.rounds = args.rounds or (2 if args.quick else 6)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}")
    from ste_opt.learning_hooks.config import load_config

    cfg = load_config("demo")
    splits = _splits(cfg)
    pair_rounds = args.pair_rounds or (2 if args.quick else int(cfg["federation"]["rounds"]))
    t0 = time.perf_counter()
    state_path = results_dir() / "closed_loop.json"
    out: dict = {}
    if state_path.is_file() and not args.quick:
        out = json.loads(state_path.read_text())
    cmd = "python -m benchmarks.closed_loop" + (" --quick" if args.quick else "") + f" --rounds {args.rounds}"
    ks = [16, None] if args.quick else [8, 16, 32, 48, None]
    cache: dict = {}
    if "pair" in parts:
        print("closed_loop: pair", flush=True)
        tp = time.perf_counter()
        part_pair(cfg, splits, pair_rounds, out)
        out["pair"].update(command=cmd + f" --pair-rounds {pair_rounds} --parts pair",
                           wall_s=time.perf_counter() - tp)
    if "acc_vs_k" in parts:
        print("closed_loop: acc_vs_k", flush=True)
        tp = time.perf_counter()
        part_acc_vs_k(cfg, splits, args.rounds, out, ks, cache)
        out["acc_vs_k"].update(command=cmd + " --parts acc_vs_k", wall_s=time.perf_counter() - tp)
    if "ste_vs_k" in parts:
        print("closed_loop: ste_vs_k", flush=True)
        tp = time.perf_counter()
        part_ste_vs_k(cfg, splits, out)
        out["ste_vs_k"].update(command=cmd + " --parts ste_vs_k", wall_s=time.perf_counter() - tp)
    if "fading" in parts:
        print("closed_loop: fading", flush=True)
        tp = time.perf_counter()
        part_fading(cfg, splits, out, 6 if args.quick else 30)
        out["fading"].update(command=cmd + " --parts fading", wall_s=time.perf_counter() - tp)
    if "sflam" in parts:
        print("closed_loop: sflam", flush=True)
        bits = [4, 32] if args.quick else [2, 4, 8, 32]
        tp = time.perf_counter()
        part_sflam(cfg, splits, args.rounds, out, bits, cache)
        out["sflam"].update(command=cmd + " --parts sflam", wall_s=time.perf_counter() - tp)
    if not args.quick:
        state_path.write_text(json.dumps(out, indent=1, default=float))
    write_section("closed_loop", _section(out, args, time.perf_counter() - t0))
    print(f"closed_loop done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
