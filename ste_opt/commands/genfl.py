"""``ste-opt genfl``: GenFL (synthetic top-up for non-IID FL) against real-only FL and AIGC-only.

torch is imported inside :func:`run` only, so building the CLI parser stays light.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_device_options


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "genfl", help="GenFL: server-generated synthetic data for non-IID federated learning",
        description=("Run real-only FedAvg, AIGC-only (synthetic data only) and GenFL (real + "
                     "server-generated top-up, weighted aggregation) side by side and write a run "
                     "folder: config.yaml, history.csv, summary.json, accuracy.png, samples.png."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data and partition")
    d.add_argument("--dataset", default="digits", choices=["digits"])
    d.add_argument("--partition", default="dirichlet", choices=["dirichlet", "shards"])
    d.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration")
    d.add_argument("--shards-per-client", type=int, default=2)
    d.add_argument("--clients", type=int, default=10)
    d.add_argument("--server-per-class", type=int, default=30,
                   help="images per class held only by the server (generator training data)")
    d.add_argument("--seed", type=int, default=0, help="partition, model init and sampling seed")
    d.add_argument("--split-seed", type=int, default=0)
    f = p.add_argument_group("federated training")
    f.add_argument("--rounds", type=int, default=20)
    f.add_argument("--local-epochs", type=int, default=2)
    f.add_argument("--lr", type=float, default=0.02)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--clients-per-round", type=int, default=None)
    f.add_argument("--arms", default="real_only,aigc_only,genfl",
                   help="comma list of real_only, aigc_only, genfl")
    f.add_argument("--aggregation", default="fedavg", choices=["fedavg", "weighted", "blend"],
                   help="fedavg: weights n_k; weighted: n_k + gamma m_k; blend: (1-λ_t) FedAvg + "
                        "λ_t w_syn, λ_t = lambda0 * decay**t")
    f.add_argument("--gamma", type=float, default=1.0)
    f.add_argument("--lambda0", type=float, default=0.5)
    f.add_argument("--decay", type=float, default=0.95)
    f.add_argument("--syn-weight", type=_optional_float, default=None,
                   help="weight mu of the synthetic loss (None: plain union)")
    t = p.add_argument_group("top-up")
    t.add_argument("--topup", default="fill_max", choices=["fill_max", "fill_to", "ratio"])
    t.add_argument("--topup-ratio", type=float, default=1.0)
    t.add_argument("--topup-target", type=int, default=None)
    t.add_argument("--max-ratio", type=_optional_float, default=None)
    t.add_argument("--aigc-per-class", type=int, default=500,
                   help="size per class of the server's synthetic pool S_0 (aigc_only, blend)")
    g = p.add_argument_group("generator")
    g.add_argument("--generator", default="builtin",
                   help="builtin | npz:PATH | folder:PATH | diffusers:PATH")
    g.add_argument("--generator-path", default=None,
                   help="built-in weights file: loaded if present, else trained and saved there "
                        "(default: <cache>/genfl/<hash>.pt, <cache> as for `ste-opt pretrain`)")
    g.add_argument("--gen-steps", type=int, default=600, help="training steps of the built-in one")
    g.add_argument("--gen-ch", type=int, default=32)
    g.add_argument("--gen-batch-size", type=int, default=128)
    g.add_argument("--sample-steps", type=int, default=16)
    g.add_argument("--cfg-scale", type=float, default=0.0)
    g.add_argument("--no-quality", action="store_true", help="skip the FD / memorisation report")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    add_device_options(p, amp=False)
    from ._common import add_output

    add_output(p, help="run folder (default runs/genfl-<dataset>-<partition>-...)",
               aliases=("--out",))
    p.set_defaults(func=run)


def run(args) -> int:
    from ._common import check_output, require_extra

    out_arg = check_output(args.output, folder=True)
    require_extra("train", "ste-opt genfl")
    import torch

    from ..learning_hooks.genfl.fl import FLConfig
    from ..learning_hooks.genfl.generator import GeneratorConfig
    from ..learning_hooks.genfl.run import GenFLRunConfig, run_experiment

    if args.threads:
        torch.set_num_threads(int(args.threads))
    cfg = GenFLRunConfig(
        dataset=args.dataset, partition=args.partition, alpha=args.alpha,
        shards_per_client=args.shards_per_client, clients=args.clients, seed=args.seed,
        split_seed=args.split_seed, server_per_class=args.server_per_class,
        arms=tuple(a.strip() for a in args.arms.split(",") if a.strip()),
        aggregation=args.aggregation, gamma=args.gamma, lambda0=args.lambda0, decay=args.decay,
        topup=args.topup, topup_ratio=args.topup_ratio, topup_target=args.topup_target,
        max_ratio=args.max_ratio, aigc_per_class=args.aigc_per_class, source=args.generator,
        generator_path=args.generator_path,
        fl=FLConfig(rounds=args.rounds, local_epochs=args.local_epochs, lr=args.lr,
                    batch_size=args.batch_size, clients_per_round=args.clients_per_round,
                    syn_weight=args.syn_weight, device=args.device or "auto"),
        generator=GeneratorConfig(ch=args.gen_ch, train_steps=args.gen_steps,
                                  batch_size=args.gen_batch_size, sample_steps=args.sample_steps,
                                  cfg_scale=args.cfg_scale))
    tag = f"a{args.alpha:g}" if args.partition == "dirichlet" else f"s{args.shards_per_client}"
    out = out_arg if out_arg is not None else Path("runs") / (
        f"genfl-{args.dataset}-{tag}-c{args.clients}-r{args.rounds}-{args.aggregation}-seed{args.seed}")
    run_experiment(cfg, out, quality=not args.no_quality, log=print)
    return 0
