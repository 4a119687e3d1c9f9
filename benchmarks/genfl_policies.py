"""GenFL aggregation policies over seeds and partitions: real-only, AIGC-only and GenFL side by side.

The GenFL paper (arXiv 2503.20166) aggregates with "a weighted aggregation policy that blends FL
updates with the augmented data". ``benchmarks/genfl.py`` reports plain FedAvg for every partition
and runs the two paper-style policies on one seed only; this benchmark runs, in ONE process, with
the same built-in generator (600 steps, trained on the server split) and the same FL loop:

- ``real_only``   — FedAvg on real data (the "FL" baseline);
- ``aigc_only``   — the synthetic pool S_0 only (does not depend on the partition: once per seed);
- ``genfl``       — top-up + FedAvg on real counts;
- ``genfl_weighted`` — top-up + weights n_k + γ·m_k (γ = 1);
- ``genfl_blend``    — top-up + (1 − λ_t)·FedAvg + λ_t·w_syn, λ_t = 0.5·0.95^t (the paper's "blend");

for 3 seeds and both partition families (Dirichlet α = 0.1, 2 label shards per client).

    python -m benchmarks.genfl_policies            # 3 seeds x 2 partitions, 20 rounds
    python -m benchmarks.genfl_policies --quick    # smoke: 1 seed, 2 rounds, 100-step generator

Writes ``results/genfl_policies.csv`` (one row per arm, round, seed, partition) and the section
``results/genfl_policies.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from benchmarks.common import machine_line, md_table, write_csv, write_section

NAME = "genfl_policies"
PARTITIONS = (("dirichlet", 0.1), ("shards", 2.0))
ARMS = ("real_only", "aigc_only", "genfl", "genfl_weighted", "genfl_blend")


def _label(kind: str, val: float) -> str:
    return f"Dirichlet α={val:g}" if kind == "dirichlet" else f"shards ({int(val)}/client)"


def summarise(hist: list[dict], rounds: int) -> list[dict]:
    """Mean ± std (over seeds) of the final test accuracy, one row per partition and arm."""
    parts = list(dict.fromkeys(r["partition"] for r in hist if r["partition"] != "any"))
    out = []
    for part in parts:
        for arm in ARMS:
            vals = {rnd: [100 * float(r["test_acc"]) for r in hist
                          if r["arm"] == arm and int(r["round"]) == rnd - 1
                          and r["partition"] in (part, "any")]
                    for rnd in sorted({min(5, rounds), rounds})}
            if not vals[rounds]:
                continue
            row = {"partition": part, "arm": arm}
            for rnd, v in vals.items():
                row[f"acc@{rnd} (%)"] = f"{np.mean(v):.1f} ± {np.std(v):.1f}"
            row["seeds"] = len(vals[rounds])
            out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    from ste_opt.learning_hooks.genfl.fl import FLConfig
    from ste_opt.learning_hooks.genfl.generator import FlowMatchingGenerator, GeneratorConfig
    from ste_opt.learning_hooks.genfl.run import GenFLRunConfig, load_split, run_arms
    from ste_opt.learning_hooks.genfl.sources import FlowMatchingSource, SyntheticPool

    torch.set_num_threads(1)
    seeds = 1 if args.quick else args.seeds
    rounds = 2 if args.quick else args.rounds
    gcfg = GeneratorConfig(train_steps=100) if args.quick else GeneratorConfig()
    base = GenFLRunConfig(fl=FLConfig(rounds=rounds), generator=gcfg)
    t_start = time.perf_counter()
    split = load_split(base)
    gen = FlowMatchingGenerator.train(split.server_images, split.server_labels, split.num_classes, gcfg)
    source = FlowMatchingSource(gen)
    print(f"generator trained: {gen.info['steps']} steps ({time.perf_counter() - t_start:.0f} s)",
          flush=True)

    hist: list[dict] = []
    for seed in range(seeds):
        pool = SyntheticPool(source, seed=seed)
        for i, (kind, val) in enumerate(PARTITIONS):
            cfg = dataclasses.replace(
                base, seed=seed, partition=kind,
                alpha=val if kind == "dirichlet" else base.alpha,
                shards_per_client=int(val) if kind == "shards" else base.shards_per_client,
                arms=("real_only", "genfl") + (("aigc_only",) if i == 0 else ()))
            rows, _ = run_arms(cfg, split, pool, log=lambda *_: None)
            for policy in ("weighted", "blend"):
                pcfg = dataclasses.replace(cfg, arms=("genfl",), aggregation=policy)
                prow, _ = run_arms(pcfg, split, pool, log=lambda *_: None)
                for r in prow:
                    r["arm"] = f"genfl_{policy}"
                rows += prow
            for r in rows:
                r.update(seed=seed, partition="any" if r["arm"] == "aigc_only" else _label(kind, val))
            hist += rows
            fin = {r["arm"]: round(float(r["test_acc"]), 4) for r in rows if r["round"] == rounds - 1}
            print(f"seed {seed} {_label(kind, val)}: {fin} "
                  f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    write_csv(NAME, hist)
    table = summarise(hist, rounds)
    total = time.perf_counter() - t_start
    cmd = "python -m benchmarks.genfl_policies" + (" --quick" if args.quick else "")
    md = f"""## GenFL aggregation policies, {seeds} seed(s) x 2 partitions (`benchmarks/genfl_policies.py`)

`{cmd}` — {machine_line()} One torch thread. Total wall time {total / 60:.1f} min.

Same digits split, generator ({gen.info['steps']} steps), FL loop and top-up as `benchmarks/genfl.py`;
{rounds} rounds. `genfl` = FedAvg on real counts; `genfl_weighted` = n_k + γ·m_k, γ = 1;
`genfl_blend` = (1 − λ_t)·FedAvg + λ_t·w_syn with λ_t = 0.5·0.95^t (the paper's "weighted aggregation
that blends FL updates with the augmented data"); `aigc_only` = the synthetic pool alone (partition-free,
repeated in each partition's rows). Mean ± std over seeds (partition + initialisation + samples).

{md_table(table)}
Raw rows: `results/{NAME}.csv`.
"""
    write_section(NAME, md)
    print(f"done in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
