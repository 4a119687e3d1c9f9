"""Datasets from local files only: scikit-learn's bundled digits (default, in memory), and on
disk CIFAR-10/100 python archives, Tiny-ImageNet-200 and any ImageFolder tree
(:mod:`~ste_opt.learning_hooks.datasets`: per-client views decoded per batch through a
DataLoader, the model's own transforms). A missing or malformed path raises
:class:`~ste_opt.errors.InvalidScenarioError` naming ``data.root`` and the file expected.

In-memory normalisation (digits, :func:`load_cifar`, :func:`load_tiny_imagenet`): pixel values
scaled to [0, 1], then ``(x - 0.5) / 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidScenarioError

__all__ = ["ImageDataset", "DataSplits", "load_digits", "load_cifar", "load_tiny_imagenet",
           "load_splits", "DATASETS"]

DATASETS = ("digits", "cifar10", "cifar100", "tiny_imagenet", "imagefolder")


@dataclass
class ImageDataset:
    """Images (float32 normalised, or uint8 raw) and integer labels, kept in memory."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    image_size: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 normalised images of size ``image_size`` and int64 labels for indices ``idx``."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        x = self.images[idx]
        if x.dtype == torch.uint8:
            x = (x.float() / 255.0 - 0.5) / 0.5
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)
        return x, self.labels[idx]

    def subset(self, idx) -> ImageDataset:
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return ImageDataset(self.images[idx], self.labels[idx], self.num_classes, self.image_size)


@dataclass
class DataSplits:
    """Disjoint, seeded: ``source`` (pretraining), ``train`` (clients), ``test`` (evaluation)."""

    source: ImageDataset
    train: ImageDataset
    test: ImageDataset
    name: str


def load_digits(image_size: int = 32) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits (1797 images, 10 classes), upscaled bilinearly to
    ``image_size`` and repeated to 3 channels. Needs no file and no internet."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = ((x - 0.5) / 0.5).repeat(1, 3, 1, 1).contiguous()
    return ImageDataset(x, torch.from_numpy(d.target.astype(np.int64)), 10, image_size)


def _bad(root, msg) -> InvalidScenarioError:
    return InvalidScenarioError(f"data.root={root}: {msg}", field="data.root")


def load_cifar(root: str | Path, which: int = 10, image_size: int = 32) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10/100 from the standard python archive: ``cifar-10-python.tar.gz`` /
    ``cifar-100-python.tar.gz``, or a folder holding it, or the extracted
    ``cifar-10-batches-py`` / ``cifar-100-python`` folder (or its parent). Returns (train, test),
    held in memory. The batches are read with the restricted unpickler
    (:mod:`~ste_opt.learning_hooks.datasets.safe_pickle`), never ``pickle.load``."""
    from .datasets.cifar import read_cifar

    xtr, ytr, xte, yte = read_cifar(root, which)
    return (ImageDataset(torch.from_numpy(xtr), torch.from_numpy(ytr), which, image_size),
            ImageDataset(torch.from_numpy(xte), torch.from_numpy(yte), which, image_size))


def _read_image(path: Path, root) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((64, 64)), dtype=np.uint8).transpose(2, 0, 1)
    except Exception as exc:  # noqa: BLE001
        raise _bad(root, f"cannot read image {path} ({exc})") from exc


def load_tiny_imagenet(root: str | Path, image_size: int = 64,
                       max_per_class: int | None = None) -> tuple[ImageDataset, ImageDataset]:
    """Tiny-ImageNet-200 from its folder (``wnids.txt``, ``train/<wnid>/images/*``,
    ``val/images/*`` + ``val/val_annotations.txt``), decoded into memory. Returns (train, val).
    (``load_splits`` keeps it on disk instead.)"""
    from .datasets.folders import scan_tiny_imagenet

    train, val, wnids = scan_tiny_imagenet(root, max_per_class)
    k = len(wnids)

    def mk(samples):
        x = np.stack([_read_image(Path(p), root) for p, _ in samples])
        return ImageDataset(torch.from_numpy(x), torch.tensor([y for _, y in samples]), k, image_size)
    return mk(train), mk(val)


def _split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng([int(seed), 12345]).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions])
    return [np.sort(p) for p in np.split(perm, cuts)]


def load_splits(name: str = "digits", root: str | Path | None = None, image_size: int | None = None,
                source_fraction: float = 0.3, test_fraction: float = 0.2, seed: int = 0,
                max_per_class: int | None = None) -> DataSplits:
    """Load a dataset and make disjoint seeded source / train / test splits.

    digits has no official test set: ``test_fraction`` and ``source_fraction`` of all images go to
    test and source. The others keep their official test set, and ``source_fraction`` of the
    official training set becomes the source split.
    """
    if not 0 <= source_fraction < 1 or not 0 < test_fraction < 1 or source_fraction + test_fraction >= 1:
        raise InvalidScenarioError("need 0 <= source_fraction, 0 < test_fraction, sum < 1",
                                   field="data.source_fraction")
    if name == "digits":
        full = load_digits(image_size or 32)
        test_idx, source_idx, train_idx = _split_indices(len(full), (test_fraction, source_fraction), seed)
        return DataSplits(full.subset(source_idx), full.subset(train_idx), full.subset(test_idx), name)
    if root is None:
        from .datasets import expected_layout

        raise InvalidScenarioError(f"dataset {name!r} needs data.root: a local folder holding "
                                   f"{expected_layout(name)}; nothing is downloaded", field="data.root")
    if name not in DATASETS:
        raise InvalidScenarioError(f"unknown dataset {name!r}; choose from {DATASETS}", field="data.name")
    from .datasets import load_disk_dataset

    # on disk: per-client views decoded per batch through a DataLoader (see .datasets)
    train, test = load_disk_dataset(name, root, image_size or (64 if name == "tiny_imagenet" else 32),
                                    max_per_class)
    source_idx, train_idx = _split_indices(len(train), (source_fraction,), seed)
    return DataSplits(train.subset(source_idx), train.subset(train_idx), test, name)
