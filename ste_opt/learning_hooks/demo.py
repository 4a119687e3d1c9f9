"""The training half of ``ste-opt demo``: solver-scheduled fine-tuning vs the all-tokens fp32 baseline.

:func:`run` (called by :mod:`ste_opt.commands.demo` after the optimization half):

1. gets the frozen backbone (pretrains it on the digits source split, or loads the cached local
   checkpoint in the cache folder, :func:`ste_opt.cache.cache_dir`);
2. runs split federated LoRA fine-tuning on digits (config ``ste_opt/configs/demo.yaml``) with a
   :class:`~ste_opt.learning_hooks.closed_loop.SolverSchedule` (calibrate, redraw fading,
   solve with ``alternating``, schedule K_m at 8 bits; ``global`` certifies each round's gap when
   it is registered);
3. runs the same rounds with the all-tokens fp32 baseline ``StaticSchedule(None, 32)``, priced on
   the same fading draws (:class:`~ste_opt.learning_hooks.closed_loop.CostedSchedule`);
4. prints one table (accuracy, uplink MB, simulated time, energy, client memory) and writes
   ``<out>/history.csv`` (one row per run and round: predicted latency/energy next to measured
   bits), ``<out>/clients.csv`` (per client and round), ``<out>/summary.json`` and ``<out>/*.png``;
   each run's own trainer outputs go to ``<out>/solver/`` and ``<out>/baseline/``.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

__all__ = ["run", "run_pair", "summarize"]


def _peak_mb(history) -> float:
    return max((r["client_peak_bytes"] for r in history), default=0) / 2 ** 20


def _per_round(run_name, trainer, schedule) -> tuple[list[dict], list[dict]]:
    """Join the trainer's measured rows with the schedule's predicted records."""
    recs = {r["round"]: r for r in schedule.records}
    by_round: dict[int, list[dict]] = {}
    for row in trainer.client_rows:
        by_round.setdefault(int(row["round"]), []).append(row)
    rounds, clients = [], []
    for h in trainer.history:
        r = int(h["round"])
        rec = recs.get(r, {})
        rows = by_round.get(r, [])
        measured = int(sum(int(x["uplink_bits"]) for x in rows))
        match = all(int(x["uplink_bits"]) == int(rec.get("per_client", {}).get(int(x["client"]), {})
                                                  .get("predicted_bits", 0)) for x in rows)
        ks = [x["tokens_kept"] for x in rows if not x["excluded"]]
        ks_num = [k if k is not None else trainer.num_patches for k in ks]
        rounds.append({
            "run": run_name, "round": r, "test_acc": h["test_acc"], "test_loss": h["test_loss"],
            "participants": h["clients"], "excluded": h["excluded"],
            "tokens_mean": float(np.mean(ks_num)) if ks_num else None,
            "tokens_min": min(ks_num) if ks_num else None, "tokens_max": max(ks_num) if ks_num else None,
            "bits": h["bits"],
            "pred_straggler_s": rec.get("straggler_s"), "pred_energy_j": rec.get("energy_j"),
            "pred_uplink_bits": rec.get("predicted_bits"), "measured_uplink_bits": measured,
            "bits_match": bool(match and rec.get("predicted_bits") == measured),
            "adapter_uplink_bits": h["uplink_adapter_bits"],
            "calibration_bits": rec.get("calibration_bits", 0),
            "solve_status": rec.get("status"), "objective_ste": rec.get("objective"),
            "gap_vs_global": rec.get("gap"), "solve_time_s": rec.get("solve_time_s"),
            "deadline_violations": rec.get("deadline_violations", 0),
            "energy_violations": rec.get("energy_violations", 0),
            "client_peak_bytes": h["client_peak_bytes"], "wall_round_s": h["round_time_s"]})
        for x in rows:
            c = int(x["client"])
            pc = rec.get("per_client", {}).get(c, {})
            clients.append({
                "run": run_name, "round": r, "client": c, "excluded": bool(x["excluded"]),
                "reason": rec.get("excluded_reasons", {}).get(c, ""),
                "tokens_kept": x["tokens_kept"], "bits": x["bits"],
                "pred_latency_s": pc.get("latency_s"), "pred_energy_j": pc.get("energy_j"),
                "pred_uplink_time_s": pc.get("uplink_time_s"), "pred_bandwidth_hz": pc.get("bandwidth_hz"),
                "pred_power_w": pc.get("power_w"), "pred_bits": pc.get("predicted_bits", 0),
                "solution_bits": pc.get("solution_bits", 0), "measured_bits": int(x["uplink_bits"]),
                "bits_match": int(x["uplink_bits"]) == int(pc.get("predicted_bits", 0))})
    return rounds, clients


def summarize(run_name, trainer, schedule, rounds) -> dict:
    """Totals of one run: final accuracy, uplink (measured), simulated time and energy."""
    tot = schedule.totals()
    act = sum(r["measured_uplink_bits"] for r in rounds)
    adapt = sum(r["adapter_uplink_bits"] for r in rounds)
    calib = sum(r["calibration_bits"] or 0 for r in rounds)
    return {"run": run_name, "schedule": repr(schedule), "rounds": len(rounds),
            "final_acc": trainer.history[-1]["test_acc"] if trainer.history else None,
            "best_acc": max((h["test_acc"] for h in trainer.history), default=None),
            "acc_last3": float(np.mean([h["test_acc"] for h in trainer.history[-3:]])) if trainer.history else None,
            "uplink_activation_mb": act / 8e6, "uplink_adapter_mb": adapt / 8e6,
            "uplink_calibration_mb": calib / 8e6, "uplink_total_mb": (act + adapt + calib) / 8e6,
            "predicted_activation_mb": tot["predicted_bits"] / 8e6,
            "bits_match_every_round": all(r["bits_match"] for r in rounds),
            "simulated_time_s": tot["simulated_time_s"], "energy_j": tot["energy_j"],
            "excluded_device_rounds": tot["excluded_device_rounds"],
            "deadline_violations": int(sum(r["deadline_violations"] or 0 for r in rounds)),
            "energy_violations": int(sum(r["energy_violations"] or 0 for r in rounds)),
            "client_peak_mb": _peak_mb(trainer.history)}


def _write_csv(path: Path, rows) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _plots(out: Path, rounds, clients) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    runs = sorted({r["run"] for r in rounds}, reverse=True)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in runs:
        rr = [r for r in rounds if r["run"] == name]
        t = np.cumsum([r["pred_straggler_s"] for r in rr])
        mb = np.cumsum([r["measured_uplink_bits"] for r in rr]) / 8e6
        acc = [100 * r["test_acc"] for r in rr]
        ax[0].plot(t, acc, marker="o", label=name)
        ax[1].plot(mb, acc, marker="o", label=name)
    ax[0].set_xlabel("simulated training time (s)")
    ax[1].set_xlabel("cumulative uplink activations (MB)")
    ax[1].set_xscale("log")
    for a in ax:
        a.set_ylabel("test accuracy (%)")
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    made.append("accuracy.png")
    sol = [c for c in clients if c["run"] == "solver"]
    if sol:
        n_r = max(c["round"] for c in sol) + 1
        n_c = max(c["client"] for c in sol) + 1
        grid = np.full((n_c, n_r), np.nan)
        for c in sol:
            if not c["excluded"] and c["tokens_kept"] is not None:
                grid[c["client"], c["round"]] = c["tokens_kept"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("round")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("client")
        ax.set_title("K_m chosen by the solver (blank: excluded)")
        fig.colorbar(im, ax=ax, label="tokens kept")
        fig.tight_layout()
        fig.savefig(out / "tokens.png", dpi=120)
        plt.close(fig)
        made.append("tokens.png")
        fig, ax = plt.subplots(figsize=(6, 3.6))
        x = [c["pred_bits"] / 8e3 for c in sol if not c["excluded"]]
        y = [c["measured_bits"] / 8e3 for c in sol if not c["excluded"]]
        ax.plot(x, y, "o", ms=4)
        lim = [min(x + y) * 0.95, max(x + y) * 1.05] if x else [0, 1]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("predicted uplink per client-round (kB)")
        ax.set_ylabel("measured (packed) uplink (kB)")
        ax.set_title("solver prediction vs measurement")
        fig.tight_layout()
        fig.savefig(out / "predicted_vs_measured.png", dpi=120)
        plt.close(fig)
        made.append("predicted_vs_measured.png")
    return made


def run_pair(config="demo", *, out=None, seed: int = 0, rounds: int | None = None, method: str = "alternating",
             bits: int = 8, certify: str | None = "global", progress: bool = True, splits=None,
             overrides: dict | None = None, scenario_options: dict | None = None,
             baseline: tuple = (None, 32)) -> dict:
    """Train with the solver schedule and with a static baseline (default all tokens fp32).

    Returns ``{"trainers", "schedules", "rounds", "clients", "summary"}`` (no files written
    unless ``out`` is given: then each trainer writes under ``out/<run>/``).
    """
    from ..solvers import list_methods
    from .closed_loop import CostedSchedule, SolverSchedule
    from .config import load_config, merge
    from .data import load_splits
    from .schedule import StaticSchedule
    from .trainer import SplitFedTrainer

    cfg = load_config(config)
    if overrides:
        cfg = load_config(merge(cfg, overrides))
    cfg["seed"] = int(seed)
    if rounds is not None:
        cfg["federation"]["rounds"] = int(rounds)
    n_rounds = int(cfg["federation"]["rounds"])
    d = cfg["data"]
    splits = splits or load_splits(d["name"], d["root"], d["image_size"], d["source_fraction"],
                                   d["test_fraction"], int(seed), d.get("max_per_class"))
    cert = certify if certify and any(m.name == certify for m in list_methods("ste")) else None
    sched = SolverSchedule(method=method, bits=bits, seed=seed, certify=cert,
                           scenario_options=scenario_options)
    run_dir = (lambda name: Path(out) / name) if out is not None else (lambda name: False)
    tr_s = SplitFedTrainer(cfg, schedule=sched, run_dir=run_dir("solver"), progress=progress, splits=splits)
    tr_s.fit(n_rounds)
    base = CostedSchedule(StaticSchedule(*baseline), scenario=sched.scenario, seed=seed, bits=bits,
                          name="baseline")
    tr_b = SplitFedTrainer(cfg, schedule=base, run_dir=run_dir("baseline"), progress=progress, splits=splits)
    tr_b.fit(n_rounds)
    rs, cs = _per_round("solver", tr_s, sched)
    rb, cb = _per_round("baseline", tr_b, base)
    s_sum, b_sum = summarize("solver", tr_s, sched, rs), summarize("baseline", tr_b, base, rb)
    # the solver run's model evaluated with the compression it was trained with (median K, q bits)
    ks = [c["tokens_kept"] for c in cs if c["round"] == n_rounds - 1 and not c["excluded"]]
    if ks:
        from .schedule import ClientPlan
        k_med = int(np.median(ks))
        s_sum["final_acc_compressed_eval"] = tr_s.evaluate(ClientPlan(k_med, bits))[0]
        s_sum["compressed_eval_plan"] = {"tokens_kept": k_med, "bits": bits}
    comp = {
        "accuracy_diff_points": 100 * (s_sum["final_acc"] - b_sum["final_acc"]),
        "accuracy_last3_diff_points": 100 * (s_sum["acc_last3"] - b_sum["acc_last3"]),
        "uplink_activation_ratio": b_sum["uplink_activation_mb"] / max(s_sum["uplink_activation_mb"], 1e-30),
        "uplink_total_ratio": b_sum["uplink_total_mb"] / max(s_sum["uplink_total_mb"], 1e-30),
        "simulated_time_ratio": b_sum["simulated_time_s"] / max(s_sum["simulated_time_s"], 1e-30),
        "energy_ratio": b_sum["energy_j"] / max(s_sum["energy_j"], 1e-30),
    }
    comp["target_met"] = bool(comp["accuracy_diff_points"] >= -1.0 and comp["uplink_activation_ratio"] >= 3.0)
    scen = sched.scenario
    summary = {
        "config": cfg, "method": method, "certify": cert, "bits": bits, "seed": seed,
        "model_spec": {k: v for k, v in tr_s.model_spec().as_dict().items() if k != "local_steps"},
        "scenario": {"devices": scen.n_devices, "bandwidth_hz": scen.bandwidth_hz, "batch": scen.batch,
                     "n_patches": scen.n_patches, "dim": scen.dim, "bits": scen.bits, "k_min": scen.k_min,
                     "ref_loss_db": scen.ref_loss_db, **scen.meta.get("closed_loop", {})},
        "runs": {"solver": s_sum, "baseline": b_sum}, "comparison": comp,
        "rounds": [{k: r[k] for k in ("run", "round", "test_acc", "participants", "excluded", "tokens_mean",
                                      "bits", "pred_straggler_s", "pred_energy_j", "pred_uplink_bits",
                                      "measured_uplink_bits", "bits_match", "gap_vs_global")}
                   for r in rs + rb],
    }
    return {"trainers": (tr_s, tr_b), "schedules": (sched, base), "rounds": rs + rb, "clients": cs + cb,
            "summary": summary}


def _table(summary) -> str:
    s, b = summary["runs"]["solver"], summary["runs"]["baseline"]
    head = (f"{'run':<34} {'acc %':>6} {'uplink MB':>10} {'total MB':>9} {'sim. time s':>11} "
            f"{'energy J':>9} {'client MB':>9}")
    lines = [head, "-" * len(head)]
    for name, r in (("solver (alternating, K_m, 8-bit)", s), ("baseline (all tokens, fp32)", b)):
        lines.append(f"{name:<34} {100 * r['final_acc']:>6.2f} {r['uplink_activation_mb']:>10.3f} "
                     f"{r['uplink_total_mb']:>9.3f} {r['simulated_time_s']:>11.2f} {r['energy_j']:>9.3f} "
                     f"{r['client_peak_mb']:>9.2f}")
    c = summary["comparison"]
    lines.append(f"solver vs baseline: accuracy {c['accuracy_diff_points']:+.2f} points "
                 f"({c['accuracy_last3_diff_points']:+.2f} over the last 3 rounds), "
                 f"{c['uplink_activation_ratio']:.2f}x fewer activation bits "
                 f"({c['uplink_total_ratio']:.2f}x with adapters), {c['simulated_time_ratio']:.2f}x less "
                 f"simulated time, {c['energy_ratio']:.2f}x less energy")
    if "final_acc_compressed_eval" in s:
        p = s["compressed_eval_plan"]
        lines.append(f"solver model evaluated with K={p['tokens_kept']} at {p['bits']} bits: "
                     f"{100 * s['final_acc_compressed_eval']:.2f} %")
    lines.append(f"baseline: {b['deadline_violations']} device-rounds over their standing time, "
                 f"{b['energy_violations']} over their energy budget; solver: "
                 f"{s['excluded_device_rounds']} device-rounds excluded")
    return "\n".join(lines)


def _round_table(rounds) -> str:
    head = (f"{'run':<9} {'round':>5} {'acc %':>6} {'K mean':>6} {'excl':>4} {'pred T s':>8} "
            f"{'pred E J':>8} {'pred Mbit':>9} {'meas Mbit':>9} {'match':>5} {'gap':>8}")
    lines = [head]
    for r in rounds:
        gap = "-" if r["gap_vs_global"] is None else f"{r['gap_vs_global']:.1e}"
        lines.append(f"{r['run']:<9} {r['round']:>5} {100 * r['test_acc']:>6.2f} {r['tokens_mean']:>6.1f} "
                     f"{r['excluded']:>4} {r['pred_straggler_s']:>8.3f} {r['pred_energy_j']:>8.3f} "
                     f"{r['pred_uplink_bits'] / 1e6:>9.4f} {r['measured_uplink_bits'] / 1e6:>9.4f} "
                     f"{str(r['bits_match']):>5} {gap:>8}")
    return "\n".join(lines)


def run(out="runs/demo", seed: int = 0, rounds: int | None = None, config: str = "demo",
        method: str = "alternating", bits: int = 8, progress: bool = True,
        overrides: dict | None = None, echo: Callable[[str], None] | None = None) -> int:
    """Run the closed-loop demo and write ``<out>/{history.csv, clients.csv, summary.json, *.png}``
    (``overrides``: config keys merged into the config, e.g. ``{"device": "cuda", "amp": "bf16"}``).

    The report goes to ``echo`` (the CLI passes ``print``; default: this module's logger, INFO).
    """
    echo = echo or _log.info
    import os

    import torch

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    if hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores - 0.5:
        torch.set_num_threads(1)   # a busy machine: one thread avoids OpenMP stalls
    echo(f"\n== closed loop: solver-scheduled split federated fine-tuning on digits "
          f"({torch.get_num_threads()} torch thread(s))")
    res = run_pair(config, out=out, seed=seed, rounds=rounds, method=method, bits=bits, progress=progress,
                   overrides=overrides)
    summary = res["summary"]
    sc = summary["scenario"]
    summary["wall_s"] = time.perf_counter() - t0
    _write_csv(out / "history.csv", res["rounds"])
    _write_csv(out / "clients.csv", res["clients"])
    summary["plots"] = _plots(out, res["rounds"], res["clients"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    echo(f"\nscenario: {sc['devices']} devices, W_tot {sc['bandwidth_hz'] / 1e6:.4g} MHz "
          f"(paper 50 MHz x rho = {sc.get('scale', 1):.4g}), batch {sc['batch']} samples/round, "
          f"N {sc['n_patches']}, D {sc['dim']}, K_min {sc['k_min']}\n")
    echo(_round_table(res["rounds"]))
    echo("")
    echo(_table(summary))
    echo(f"\nwrote {out}/history.csv, clients.csv, summary.json, {', '.join(summary['plots'])} "
          f"in {summary['wall_s']:.0f} s")
    return 0


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
