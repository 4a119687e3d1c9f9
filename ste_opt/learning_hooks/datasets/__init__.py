"""Datasets on disk: CIFAR-10/100 python archives (restricted unpickler), Tiny-ImageNet-200, any
ImageFolder tree; a DataLoader pipeline with per-client index views and the model's transforms.

``load_disk_dataset(name, root)`` returns ``(train, test)`` :class:`DiskImageDataset` objects;
:func:`ste_opt.learning_hooks.data.load_splits` uses it for every dataset but the bundled digits.
A missing path raises :class:`~ste_opt.errors.InvalidScenarioError` (``field="data.root"``) naming
the file or folder expected and where.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InvalidScenarioError
from .cifar import read_cifar
from .disk import DiskImageDataset, ImageTransforms, transforms_for_model
from .folders import scan_image_folder, scan_tiny_imagenet
from .safe_pickle import restricted_load, restricted_loads

__all__ = ["load_disk_dataset", "DiskImageDataset", "ImageTransforms", "transforms_for_model",
           "read_cifar", "scan_image_folder", "scan_tiny_imagenet", "restricted_load",
           "restricted_loads", "DISK_DATASETS", "expected_layout"]

DISK_DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "imagefolder")


def expected_layout(name: str) -> str:
    """What ``data.root`` must hold for dataset ``name`` (for error messages)."""
    return {
        "cifar10": "cifar-10-python.tar.gz or its extracted cifar-10-batches-py/ folder",
        "cifar100": "cifar-100-python.tar.gz or its extracted cifar-100-python/ folder",
        "tiny_imagenet": "tiny-imagenet-200/ (wnids.txt, train/, val/)",
        "imagefolder": "train/<class>/<image> and val/<class>/<image> (ImageFolder trees)",
    }.get(name, "the dataset files")


def load_disk_dataset(name: str, root: str | Path, image_size: int = 32,
                      max_per_class: int | None = None) -> tuple[DiskImageDataset, DiskImageDataset]:
    """``(train, test)`` views of a dataset on disk; transforms default to the built-in pipeline
    at ``image_size`` until :func:`transforms_for_model` replaces them (shared by all views).

    ``imagefolder``: ``root/train`` and ``root/val`` (or ``root/test``) ImageFolder trees with the
    same class folders.
    """
    tf = ImageTransforms(image_size=int(image_size))
    if name in ("cifar10", "cifar100"):
        which = 10 if name == "cifar10" else 100
        xtr, ytr, xte, yte = read_cifar(root, which)
        arrays = np.concatenate([xtr, xte])
        labels = np.concatenate([ytr, yte])
        full = DiskImageDataset(arrays=arrays, labels=labels, num_classes=which,
                                image_size=image_size, transforms=tf, name=name)
        n = len(ytr)
        return full.subset(np.arange(n)), full.subset(np.arange(n, len(labels)))
    if name == "tiny_imagenet":
        train, val, wnids = scan_tiny_imagenet(root, max_per_class)
        k = len(wnids)
    elif name == "imagefolder":
        root = Path(root)
        val_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
        if not (root / "train").is_dir() or val_dir is None:
            raise InvalidScenarioError(f"data.root={root}: expected {expected_layout(name)} there",
                                       field="data.root")
        train, classes = scan_image_folder(root / "train")
        val, vclasses = scan_image_folder(val_dir)
        if vclasses != classes:
            raise InvalidScenarioError(f"data.root={root}: {val_dir.name}/ has other class folders "
                                       f"than train/", field="data.root")
        if max_per_class is not None:
            per: dict[int, int] = {}
            kept = []
            for p, y in train:
                if per.get(y, 0) < int(max_per_class):
                    per[y] = per.get(y, 0) + 1
                    kept.append((p, y))
            train = kept
        k = len(classes)
    else:
        raise InvalidScenarioError(f"unknown dataset {name!r}; choose from digits, "
                                   f"{', '.join(DISK_DATASETS)}", field="data.name")
    paths = [p for p, _ in train] + [p for p, _ in val]
    labels = np.array([y for _, y in train] + [y for _, y in val], dtype=np.int64)
    full = DiskImageDataset(paths=paths, labels=labels, num_classes=k, image_size=image_size,
                            transforms=tf, name=name)
    n = len(train)
    return full.subset(np.arange(n)), full.subset(np.arange(n, len(labels)))
