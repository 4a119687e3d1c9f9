"""GenFL benchmark: real-only FedAvg vs AIGC-only vs GenFL on digits under label skew.

One built-in flow-matching generator is trained on the server-held split (never given to clients,
never in the test set) and timed; its quality (referee accuracy, FD with the real-vs-real floor,
memorisation) is measured once. Then for every partition (Dirichlet α ∈ {0.05, 0.1, 0.5} and
2 shards per client) and seed, the three arms run through the same FL loop
(:func:`ste_opt.learning_hooks.genfl.fl.run_federated`). The AIGC-only arm does not depend on
the partition, so it runs once per seed. At α = 0.1 the two GenFL aggregation policies
(weighted γ = 1, blend λ_0 = 0.5, ρ = 0.95) also run.

    python -m benchmarks.genfl            # full: 3 seeds, 20 rounds (about 10 min on 2 cores)
    python -m benchmarks.genfl --quick    # smoke: 1 seed, 3 rounds, a 150-step generator
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from benchmarks.common import machine_line, md_table, results_dir, write_csv, write_section

NAME = "genfl"


def _parse_partitions(text: str) -> list[tuple[str, float]]:
    out = []
    for item in text.split(","):
        kind, _, val = item.partition(":")
        out.append((kind, float(val)))
    return out


def _label(kind: str, val: float) -> str:
    return f"Dirichlet α={val:g}" if kind == "dirichlet" else f"shards ({int(val)}/client)"


ARMS_ORDER = ["real_only", "aigc_only", "genfl", "genfl_weighted", "genfl_blend"]


def _acc(hist, part, arm, rnd):
    """Mean, std and count of test accuracy (%) after ``rnd`` rounds over seeds."""
    vals = [100 * float(r["test_acc"]) for r in hist if r["arm"] == arm
            and int(r["round"]) == rnd - 1 and (r["partition"] == part or arm == "aigc_only")]
    return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None


def plot_accuracy_panels(hist, labels_part, rounds, path) -> None:
    """One panel per partition: mean ± std test accuracy against rounds for every arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels_part), figsize=(3.6 * len(labels_part), 3.2),
                             sharey=True, squeeze=False)
    for ax, part in zip(axes[0], labels_part, strict=True):
        for arm in ARMS_ORDER:
            pts = [_acc(hist, part, arm, rnd) for rnd in range(1, rounds + 1)]
            if pts[-1] is None:
                continue
            m = np.array([p[0] for p in pts])
            s = np.array([p[1] for p in pts])
            xs = np.arange(1, rounds + 1)
            ax.plot(xs, m, label=arm)
            ax.fill_between(xs, m - s, m + s, alpha=0.15)
        ax.set_title(part, fontsize=9)
        ax.set_xlabel("rounds completed")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=6, loc="lower right")
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(path_csv, path_png) -> None:
    """Redraw the accuracy plot from ``results/genfl.csv`` (no training)."""
    import csv

    with open(path_csv, newline="") as fh:
        hist = list(csv.DictReader(fh))
    labels_part = list(dict.fromkeys(r["partition"] for r in hist if r["partition"] != "any"))
    rounds = max(int(r["round"]) for r in hist) + 1
    plot_accuracy_panels(hist, labels_part, rounds, path_png)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--gen-steps", type=int, default=None)
    ap.add_argument("--partitions", default="dirichlet:0.05,dirichlet:0.1,dirichlet:0.5,shards:2")
    ap.add_argument("--policy-seeds", type=int, default=1,
                    help="seeds for the aggregation-policy comparison at α=0.1 (0 skips it)")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw results/genfl.png from results/genfl.csv")
    args = ap.parse_args(argv)
    if args.replot:
        replot(results_dir() / f"{NAME}.csv", results_dir() / f"{NAME}.png")
        return 0

    import torch

    from ste_opt.learning_hooks.genfl.fl import FLConfig
    from ste_opt.learning_hooks.genfl.generator import FlowMatchingGenerator, GeneratorConfig
    from ste_opt.learning_hooks.genfl.metrics import generator_quality, train_referee
    from ste_opt.learning_hooks.genfl.run import (
        GenFLRunConfig,
        load_split,
        run_arms,
        save_sample_grid,
    )
    from ste_opt.learning_hooks.genfl.sources import FlowMatchingSource, SyntheticPool

    torch.set_num_threads(1)
    seeds = 1 if args.quick else args.seeds
    rounds = 3 if args.quick else args.rounds
    gen_steps = args.gen_steps or (150 if args.quick else GeneratorConfig().train_steps)
    partitions = _parse_partitions(args.partitions)
    if args.quick:
        partitions = partitions[1:2]
    gcfg = GeneratorConfig(train_steps=gen_steps)
    base = GenFLRunConfig(fl=FLConfig(rounds=rounds), generator=gcfg)
    t_start = time.perf_counter()

    # ---- generator: train once on the server split, time it
    split = load_split(base)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    gen = FlowMatchingGenerator.train(split.server_images, split.server_labels, split.num_classes, gcfg)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    source = FlowMatchingSource(gen)
    from ste_opt.cache import cache_dir

    gen.save(cache_dir("genfl", "benchmark-generator.pt"))  # user cache; lets the grid be redrawn
    grid = source.generate(np.repeat(np.arange(10), 10), seed=0)
    out = results_dir()
    save_sample_grid(grid, out / "genfl_samples.png", rows=10,
                     title=f"flow matching, {gen.info['steps']} steps, 16 Euler steps, CFG 0")

    # ---- sampling cost and quality (CFG 0 and CFG 1)
    referee = train_referee(split.client_images, split.client_labels, split.num_classes, seed=0)
    labels = np.repeat(np.arange(10), 100)
    quality_rows = []
    for cfg_scale in (0.0, 1.0):
        c0, w0 = time.process_time(), time.perf_counter()
        samples = gen.sample(labels, seed=123, steps=16, cfg_scale=cfg_scale)
        s_cpu, s_wall = time.process_time() - c0, time.perf_counter() - w0
        q = generator_quality(samples, labels, referee=referee, generator_train=split.server_images,
                              real_reference=split.client_images, test_images=split.test_images,
                              test_labels=split.test_labels)
        quality_rows.append({"cfg_scale": cfg_scale, "sample_steps": 16,
                             "sample_1000_wall_s": s_wall, "sample_1000_cpu_s": s_cpu, **q})
    print(f"generator: {gen.info['steps']} steps, {train_wall:.1f} s wall / {train_cpu:.1f} s CPU; "
          f"quality {json.dumps({k: round(v, 3) for k, v in quality_rows[0].items()})}")

    # ---- federated runs
    hist: list[dict] = []
    pool_cost = []
    for seed in range(seeds):
        pool = SyntheticPool(source, seed=seed)
        for i, (kind, val) in enumerate(partitions):
            cfg = dataclasses.replace(
                base, seed=seed, partition=kind,
                alpha=val if kind == "dirichlet" else base.alpha,
                shards_per_client=int(val) if kind == "shards" else base.shards_per_client,
                arms=("real_only", "genfl") + (("aigc_only",) if i == 0 else ()))
            rows, extra = run_arms(cfg, split, pool, log=lambda *_: None)
            for r in rows:
                r.update(partition=_label(kind, val), seed=seed, policy="fedavg")
            hist += rows
            fin = {r["arm"]: r["test_acc"] for r in rows if r["round"] == rounds - 1}
            print(f"seed {seed} {_label(kind, val)}: {fin} shipped {extra.get('synthetic_shipped')}",
                  flush=True)
            if kind == "dirichlet" and val == 0.1 and seed < args.policy_seeds:
                for policy in ("weighted", "blend"):
                    pcfg = dataclasses.replace(cfg, arms=("genfl",), aggregation=policy)
                    prow, _ = run_arms(pcfg, split, pool, log=lambda *_: None)
                    for r in prow:
                        r.update(partition=_label(kind, val), seed=seed, policy=policy,
                                 arm=f"genfl_{policy}")
                    hist += prow
                    print(f"  policy {policy}: {prow[-1]['test_acc']:.4f}", flush=True)
        pool_cost.append({"seed": seed, "images_generated": pool.generated,
                          "sample_seconds": pool.sample_seconds})
    # AIGC-only does not depend on the partition: copy its rows to every partition
    aigc = [r for r in hist if r["arm"] == "aigc_only"]
    for r in aigc:
        r["partition"] = "any"
    write_csv(NAME, hist)

    # ---- tables
    labels_part = [_label(k, v) for k, v in partitions]
    arms_order = ARMS_ORDER
    check_rounds = sorted({min(5, rounds), min(10, rounds), rounds})

    def acc(part, arm, rnd):
        return _acc(hist, part, arm, rnd)

    table = []
    for part in labels_part:
        for arm in arms_order:
            cells = {rnd: acc(part, arm, rnd) for rnd in check_rounds}
            if cells[rounds] is None:
                continue
            row = {"partition": part, "arm": arm}
            for rnd in check_rounds:
                m, s, n = cells[rnd]
                row[f"acc@{rnd} (%)"] = f"{m:.1f} ± {s:.1f}"
            row["seeds"] = cells[rounds][2]
            table.append(row)
    summary_rows = []
    for part in labels_part:
        g, r = acc(part, "genfl", rounds), acc(part, "real_only", rounds)
        summary_rows.append({"partition": part, "GenFL (%)": g[0], "real-only (%)": r[0],
                             "gain (points)": g[0] - r[0]})

    plot_accuracy_panels(hist, labels_part, rounds, out / "genfl.png")

    q0, q1 = quality_rows
    cost = [
        {"quantity": "training steps (batch 128)", "value": f"{gen.info['steps']}"},
        {"quantity": "parameters", "value": f"{gen.info['num_parameters']:,}"},
        {"quantity": "training time, wall / CPU (s)", "value": f"{train_wall:.1f} / {train_cpu:.1f}"},
        {"quantity": "sample 1000 images, 16 Euler steps, CFG 0: wall / CPU (s)",
         "value": f"{q0['sample_1000_wall_s']:.1f} / {q0['sample_1000_cpu_s']:.1f}"},
        {"quantity": "sample 1000 images, 16 Euler steps, CFG 1: wall / CPU (s)",
         "value": f"{q1['sample_1000_wall_s']:.1f} / {q1['sample_1000_cpu_s']:.1f}"},
        {"quantity": "synthetic images drawn per seed (pool, all partitions)",
         "value": f"{np.mean([p['images_generated'] for p in pool_cost]):.0f}"},
        {"quantity": "pool sampling per seed, wall (s)",
         "value": f"{np.mean([p['sample_seconds'] for p in pool_cost]):.1f}"},
    ]
    qtab = [{"CFG": q["cfg_scale"], "referee acc on samples (%)": 100 * q["referee_accuracy_on_samples"],
             "FD": q["fd"], "FD floor real-vs-real": q["fd_floor_real"],
             "NN median syn→server": q["nn_median_synthetic"],
             "NN median test→server": q["nn_median_test"],
             "near copies (%)": 100 * q["near_copy_fraction"]} for q in quality_rows]
    write_csv(f"{NAME}_quality", quality_rows)
    total = time.perf_counter() - t_start
    cmd = "python -m benchmarks.genfl" + (" --quick" if args.quick else "")
    md = f"""## GenFL: synthetic top-up for non-IID FL (`benchmarks/genfl.py`)

`{cmd}` — {machine_line()} One torch thread. Total wall time {total / 60:.1f} min.

Digits (8×8), split once (seed 0): {split.sizes()['server']} server-held images (30 per class; they train
the generator and nothing else), {split.sizes()['client']} client images, {split.sizes()['test']} test images; the three are disjoint.
10 clients, full participation, {rounds} rounds, 2 local epochs of SGD (lr 0.02, momentum 0.9, batch 32),
CNN width 16. GenFL: each client's classes topped up to its largest class count (`fill_max`), 16 Euler steps,
CFG 0, FedAvg on real counts unless noted. AIGC-only: 500 synthetic images per class, same loop, one "client".
{seeds} seed(s) (partition + initialisation + samples); mean ± std over seeds.

### Test accuracy

{md_table(table)}
GenFL vs real-only FedAvg after {rounds} rounds:

{md_table(summary_rows, fmt={"GenFL (%)": ".1f", "real-only (%)": ".1f", "gain (points)": "+.1f"})}
`genfl_weighted`: weights n_k + γ m_k with γ = 1; `genfl_blend`: (1 − λ_t)·FedAvg + λ_t·w_syn,
λ_t = 0.5·0.95^t, w_syn = the global model trained one epoch on the server pool per round
(policy comparison at α = 0.1 only, {min(args.policy_seeds, seeds)} seed(s), to keep the run short).

![accuracy against rounds](results/genfl.png)

### Generator cost (built-in flow matching, 1 thread)

{md_table(cost)}
### Generator quality (1000 samples, 100 per class; referee CNN trained on the client split)

{md_table(qtab, fmt={"referee acc on samples (%)": ".1f", "FD": ".2f", "FD floor real-vs-real": ".2f",
                     "NN median syn→server": ".2f", "NN median test→server": ".2f", "near copies (%)": ".1f"})}
FD is on the referee's 64-d features against the test set; the floor is the client split (997 real
images) against the same test set. NN distances are L2 in [-1, 1] pixel space to the generator's
training images (the server split); a near copy is closer than 0.25× the test median.

![generated samples](results/genfl_samples.png)

Raw rows: `results/genfl.csv`, `results/genfl_quality.csv`.
"""
    write_section(NAME, md)
    print(f"done in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
