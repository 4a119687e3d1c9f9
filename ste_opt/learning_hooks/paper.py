"""The papers' set-ups as bundled configs, and the pre-flight check of a config's local inputs.

Bundled (``ste_opt/configs``; values from the papers' notes, ``docs/training.md``):

- ``stsflora_vitb16``: ST-SFLora, ViT-B/16 at 224 px, frozen client = embedding + blocks 1–6,
  server LoRA r = 16, B = 64, 100 clients / 10 per round, an ImageFolder dataset
  (ImageNet100 / Flowers-102 / CUB-200 in the paper);
- ``tsflora_vitb32``: TSFLora, ViT-B/32 at 224 px, LoRA r = 32 on device and server, lr 0.1,
  B = 64, 50 rounds, 10 of 50 clients, CIFAR-100 (CIFAR-10 / Tiny-ImageNet: ``--set data.name=``).

They name no local file: ``data.root`` and ``model.checkpoint: required`` must be given
(``--set data.root=PATH --set model.checkpoint=PATH``; ``model.checkpoint=random`` for random
weights). :func:`check_inputs` refuses a config whose inputs are missing with one line naming all
of them, before any data or weights are read.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidScenarioError

__all__ = ["check_inputs", "PAPER_CONFIGS", "missing_inputs"]

PAPER_CONFIGS = ("stsflora_vitb16", "tsflora_vitb32")


def missing_inputs(cfg: Mapping, *, data: bool = True) -> list[tuple[str, str]]:
    """``[(key, what is missing)]`` for the config's local inputs (data root unless ``data`` is
    false, weights)."""
    from .datasets import expected_layout

    out = []
    d, m = cfg["data"], cfg["model"]
    if data and d["name"] != "digits":
        if d["root"] in (None, ""):
            out.append(("data.root", f"data.root is not set ({d['name']} needs a local folder with "
                                     f"{expected_layout(d['name'])}; --set data.root=PATH)"))
        elif not Path(str(d["root"])).exists():
            out.append(("data.root", f"data.root={d['root']} does not exist (expected "
                                     f"{expected_layout(d['name'])} there)"))
    ck = m.get("checkpoint")
    if ck == "required":
        out.append(("model.checkpoint", f"model.checkpoint is not set ({m['arch']} needs local "
                                        "pretrained weights, a timm .pth/.bin or .safetensors "
                                        "file; --set model.checkpoint=PATH, or =random)"))
    elif ck not in (None, "none", "random", "auto") and not Path(str(ck)).is_file():
        out.append(("model.checkpoint", f"model.checkpoint={ck} not found (a local timm "
                                        "checkpoint or .safetensors file)"))
    return out


def check_inputs(cfg: Mapping, *, data: bool = True) -> None:
    """Raise one :class:`~ste_opt.errors.InvalidScenarioError` naming every missing input
    (``data=False``: the caller supplies the data itself)."""
    miss = missing_inputs(cfg, data=data)
    if miss:
        raise InvalidScenarioError(f"config {cfg.get('name')}: " + "; ".join(m for _, m in miss),
                                   field=miss[0][0])
