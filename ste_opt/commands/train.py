"""``ste-opt train``: split federated LoRA fine-tuning of a ViT with token compression."""
from __future__ import annotations

import argparse

from ._common import add_device_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="split federated LoRA fine-tuning (SFLora / TSFLora / FedLoRA)",
        description="Run SplitFedTrainer from a config (bundled name or YAML path) with --set "
                    "overrides; writes config.yaml, history.csv, clients.csv and checkpoint.safetensors "
                    "to the run folder (default runs/<name>).")
    p.add_argument("--config", default="demo",
                   help="bundled config name (see --list), path to a YAML file, or - to read it "
                        "from stdin (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set compression.bits=4 (repeatable)")
    p.add_argument("--rounds", type=int, default=None, help="shortcut for --set federation.rounds=N")
    from ._common import add_output

    add_output(p, help="run folder (default: the config's output.dir, else runs/<name>)",
               aliases=("--run-dir",))
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--force", action="store_true",
                   help="with --resume: continue even if the config changed (recorded in resumes.json)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    add_device_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the bundled configs and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..learning_hooks.config import list_configs
    from ._common import UsageError, check_output, require_extra, training_config

    if args.list:
        print("\n".join(list_configs()))
        return 0
    out = check_output(args.output, folder=True)
    if args.rounds is not None and args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    require_extra("train", "ste-opt train")
    cfg = training_config(args, [] if args.rounds is None else [f"federation.rounds={args.rounds}"])
    from ..learning_hooks.trainer import SplitFedTrainer

    trainer = SplitFedTrainer(cfg, run_dir=out, progress=not (args.no_progress or args.quiet))
    hist = trainer.fit(resume=args.resume, force=args.force)
    if hist:
        last = hist[-1]
        print(f"{cfg['name']}: round {last['round']} test_acc={last['test_acc']:.4f} "
              f"uplink={last['uplink_total_bits'] / 8e6:.3f} MB/round "
              f"client_peak={last['client_peak_bytes'] / 2**20:.1f} MiB -> {trainer.run_dir}")
    return 0
