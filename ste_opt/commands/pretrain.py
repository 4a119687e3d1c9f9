"""``ste-opt pretrain``: train the compact backbone centrally on the source split."""
from __future__ import annotations

import argparse

from ._common import add_device_options


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain the compact ViT backbone on the source split (local checkpoint)",
        description="Train the whole ViT on the source split of the data (disjoint from client and "
                    "test data) and save it as the frozen backbone for `ste-opt train`. Default "
                    "output: .cache/ste_opt/pretrained_<data>_<model>_s<seed>.pt, the path "
                    "model.checkpoint=auto looks for.")
    p.add_argument("--config", default="demo", help="config name or YAML path (data and model keys)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, default=None, help="shortcut for --set pretrain.epochs=N")
    p.add_argument("--out", default=None, help="checkpoint path")
    p.add_argument("--threads", type=int, default=None)
    add_device_options(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ._common import training_config

    cfg = training_config(args, [] if args.epochs is None else [f"pretrain.epochs={args.epochs}"])
    from ..learning_hooks.pretrain import pretrain_backbone

    res = pretrain_backbone(cfg, args.out, progress=not args.no_progress)
    print(f"saved {res['path']}: source_acc={res['source_acc']:.4f} test_acc={res['test_acc']:.4f} "
          f"({res['epochs']} epochs, {res['seconds']:.1f} s)")
    return 0
