"""Tiny fake dataset archives in their real on-disk formats, shared by the data tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiny_imagenet(root: Path, wnids=("n01", "n02"), per_class: int = 2) -> Path:
    """A ``tiny-imagenet-200`` tree: ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (``per_class``
    64×64 images each) and ``val/images`` with ``val_annotations.txt`` (one image per class)."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(0)
    lines = []
    for w in wnids:
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"{w}_{i}.JPEG")
        name = f"val_{w}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / name)
        lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base
