"""Central pretraining of the compact backbone on the source split (``ste-opt pretrain``).

Produces the frozen backbone that federated fine-tuning starts from, as a local checkpoint
(``{"model": state_dict, "arch": ..., "model_config": ...}``), since no pretrained weights can be
downloaded here. Only the source split is used, which is disjoint from client and test data.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import default_checkpoint_path
from .data import DataSplits, load_splits
from .split import build_vit

__all__ = ["pretrain_backbone", "vit_kwargs", "evaluate_full"]


def vit_kwargs(cfg: Mapping) -> dict:
    m, d = cfg["model"], cfg["data"]
    if m["arch"] == "vit_compact":
        return dict(img_size=int(d["image_size"]), patch_size=int(m["patch_size"]),
                    embed_dim=int(m["embed_dim"]), depth=int(m["depth"]),
                    num_heads=int(m["num_heads"]), mlp_ratio=float(m["mlp_ratio"]))
    return {}


@torch.no_grad()
def evaluate_full(model, data, batch_size: int = 256, runtime=None) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (on ``runtime``'s device and autocast)."""
    from .device import Runtime

    rt = runtime or Runtime(next(model.parameters()).device)
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.batch(np.arange(i, min(i + batch_size, len(data))))
        with rt.autocast():
            out = model(rt.to(x))
        correct += int((out.float().argmax(1).cpu() == y).sum())
    return correct / max(len(data), 1)


def pretrain_backbone(cfg: Mapping, out_path: str | Path | None = None, splits: DataSplits | None = None,
                      progress: bool = True) -> dict:
    """Train the whole ViT (AdamW, cosine LR) on the source split and save it.

    Returns ``{"path", "source_acc", "test_acc", "epochs", "seconds"}``.
    """
    seed = int(cfg["seed"])
    d = cfg["data"]
    splits = splits or load_splits(d["name"], d["root"], d["image_size"], d["source_fraction"],
                                   d["test_fraction"], seed, d.get("max_per_class"))
    src = splits.source
    if len(src) == 0:
        from ..errors import InvalidScenarioError
        raise InvalidScenarioError("the source split is empty (data.source_fraction = 0): nothing "
                                   "to pretrain on; give model.checkpoint=PATH", field="data.source_fraction")
    p = cfg["pretrain"]
    from .device import runtime_from_config

    rt = runtime_from_config(cfg, "client")
    torch.manual_seed(seed)
    model = build_vit(cfg["model"]["arch"], num_classes=src.num_classes, **vit_kwargs(cfg)).to(rt.device)
    fwd = rt.compiled(model)
    scaler = rt.scaler()
    opt = torch.optim.AdamW(model.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    epochs, bs = int(p["epochs"]), int(p["batch_size"])
    steps_per_epoch = -(-len(src) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(p["lr"]), total_steps=epochs * steps_per_epoch,
                                                pct_start=0.1)
    rng = np.random.default_rng([seed, 99])
    t0 = time.perf_counter()
    from ..progress import progress as progress_bar

    bar = progress_bar(total=epochs * steps_per_epoch, enabled=bool(progress),
                       desc=f"pretrain ({epochs} epochs)", unit="step")
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(src))
        for i in range(0, len(src), bs):
            x, y = src.batch(order[i:i + bs])
            with rt.autocast():
                logits = fwd(rt.to(x))
            loss = F.cross_entropy(logits.float(), rt.to(y), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    path = Path(out_path) if out_path else default_checkpoint_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model": state, "arch": cfg["model"]["arch"],
                "model_config": dict(cfg["model"]), "data": d["name"]}, path)
    return {"path": str(path), "source_acc": evaluate_full(model, src, runtime=rt),
            "test_acc": evaluate_full(model, splits.test, runtime=rt), "epochs": epochs,
            "seconds": seconds, "device": str(rt.device), "amp": rt.amp}
