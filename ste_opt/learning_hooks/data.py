"""Datasets from local files only: scikit-learn's bundled digits (default), CIFAR-10/100 python
archives, Tiny-ImageNet folder. Images are returned as tensors (N, 3, H, W); a missing or
malformed path raises :class:`~ste_opt.errors.InvalidScenarioError` naming ``data.root``.

Normalisation: pixel values scaled to [0, 1], then ``(x - 0.5) / 0.5``.
"""
from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidScenarioError

__all__ = ["ImageDataset", "DataSplits", "load_digits", "load_cifar", "load_tiny_imagenet",
           "load_splits", "DATASETS"]

DATASETS = ("digits", "cifar10", "cifar100", "tiny_imagenet")


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


def _unpickle(fh, root) -> dict:
    try:
        obj = pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed archive
        raise _bad(root, f"malformed CIFAR batch ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise _bad(root, "malformed CIFAR batch (not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_arrays(batch: dict, label_key: str, root) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or label_key not in batch:
        raise _bad(root, f"CIFAR batch lacks 'data' or '{label_key}'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise _bad(root, f"CIFAR data has shape {data.shape}, expected (n, 3072) with n labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(root: str | Path, which: int = 10, image_size: int = 32) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10/100 from the standard python archive: ``cifar-10-python.tar.gz`` /
    ``cifar-100-python.tar.gz``, or a folder holding it, or the extracted
    ``cifar-10-batches-py`` / ``cifar-100-python`` folder (or its parent). Returns (train, test)."""
    root = Path(root)
    if which not in (10, 100):
        raise InvalidScenarioError("which must be 10 or 100", field="data.name")
    folder = "cifar-10-batches-py" if which == 10 else "cifar-100-python"
    tgz = "cifar-10-python.tar.gz" if which == 10 else "cifar-100-python.tar.gz"
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if which == 10 else ["train"]
    test_names = ["test_batch"] if which == 10 else ["test"]
    label_key = "labels" if which == 10 else "fine_labels"
    if not root.exists():
        raise _bad(root, "path does not exist")

    def from_members(read):
        tr = [_cifar_arrays(read(n), label_key, root) for n in train_names]
        te = [_cifar_arrays(read(n), label_key, root) for n in test_names]
        return tr, te

    archive = root if root.is_file() else root / tgz
    if (root / folder).is_dir() or root.name == folder:
        base = root if root.name == folder else root / folder

        def read(name):
            p = base / name
            if not p.is_file():
                raise _bad(root, f"missing {p.name} in {base}")
            with p.open("rb") as fh:
                return _unpickle(fh, root)
        tr, te = from_members(read)
    elif archive.is_file():
        try:
            tf = tarfile.open(archive, "r:*")
        except tarfile.TarError as exc:
            raise _bad(root, f"not a readable tar archive ({exc})") from exc
        with tf:
            def read(name):
                try:
                    fh = tf.extractfile(f"{folder}/{name}")
                except KeyError as exc:
                    raise _bad(root, f"archive lacks {folder}/{name}") from exc
                return _unpickle(fh, root)
            tr, te = from_members(read)
    else:
        raise _bad(root, f"expected {tgz} or a {folder}/ folder")
    k = which

    def mk(parts):
        x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        if y.numel() and (y.min() < 0 or y.max() >= k):
            raise _bad(root, f"labels outside [0, {k})")
        return ImageDataset(x, y, k, image_size)
    return mk(tr), mk(te)


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
    ``val/images/*`` + ``val/val_annotations.txt``). Returns (train, val)."""
    root = Path(root)
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wn = root / "wnids.txt"
    if not wn.is_file():
        raise _bad(root, "no wnids.txt: not a Tiny-ImageNet folder")
    wnids = [w.strip() for w in wn.read_text().split() if w.strip()]
    cls = {w: i for i, w in enumerate(wnids)}
    xs, ys = [], []
    for w in wnids:
        files = sorted((root / "train" / w / "images").glob("*"))
        if not files:
            raise _bad(root, f"no training images for class {w}")
        for f in files[:max_per_class]:
            xs.append(_read_image(f, root))
            ys.append(cls[w])
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise _bad(root, "missing val/val_annotations.txt")
    vx, vy = [], []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in cls:
            raise _bad(root, f"val annotation names unknown class {parts[1]}")
        vx.append(_read_image(root / "val" / "images" / parts[0], root))
        vy.append(cls[parts[1]])
    if not vx:
        raise _bad(root, "empty validation annotations")
    k = len(wnids)
    return (ImageDataset(torch.from_numpy(np.stack(xs)), torch.tensor(ys), k, image_size),
            ImageDataset(torch.from_numpy(np.stack(vx)), torch.tensor(vy), k, image_size))


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
        raise InvalidScenarioError(f"dataset {name!r} needs data.root (a local path); nothing is "
                                   "downloaded", field="data.root")
    if name in ("cifar10", "cifar100"):
        train, test = load_cifar(root, 10 if name == "cifar10" else 100, image_size or 32)
    elif name == "tiny_imagenet":
        train, test = load_tiny_imagenet(root, image_size or 64, max_per_class)
    else:
        raise InvalidScenarioError(f"unknown dataset {name!r}; choose from {DATASETS}", field="data.name")
    source_idx, train_idx = _split_indices(len(train), (source_fraction,), seed)
    return DataSplits(train.subset(source_idx), train.subset(train_idx), test, name)
