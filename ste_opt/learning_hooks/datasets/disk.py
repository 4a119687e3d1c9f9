"""Datasets kept on disk (or as compact uint8 arrays) and decoded per batch through a DataLoader.

:class:`DiskImageDataset` is a ``torch.utils.data.Dataset`` over CIFAR arrays or image files with
the API the trainer uses for in-memory data (``len``, ``labels``, ``num_classes``, ``image_size``,
``subset``, ``batch``), plus :meth:`DiskImageDataset.loader`: a DataLoader (workers, pinned
memory) over a fixed list of batches. A client's data is a *view* (an index array) of the shared
dataset, never a copy of the images.

Transforms (:class:`ImageTransforms`): the timm model's pretrained data config (input size,
interpolation, mean/std, crop) through ``timm.data.create_transform`` for timm models (train:
RandomResizedCrop + horizontal flip + colour jitter; eval: resize + centre crop), and for the
compact ViT a small pure-torch pipeline (resize to ``data.image_size``, train: random crop with
1/8 padding + horizontal flip; mean = std = 0.5). Training augmentation is seeded per sample
(seed, round, client, index), so runs are reproducible with any number of workers.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DiskImageDataset", "ImageTransforms", "transforms_for_model", "SeededBatches",
           "batch_seeds"]

log = logging.getLogger(__name__)


@dataclass
class ImageTransforms:
    """Train and eval transforms shared by all views of a dataset (configured after the model is
    built). ``timm_train`` / ``timm_eval``: callables on PIL images from timm, or ``None`` for the
    built-in pure-torch pipeline at ``image_size`` with ``mean``/``std``."""

    image_size: int = 32
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    augment: bool = True
    timm_train: Any = None
    timm_eval: Any = None
    source: str = "builtin"
    data_config: dict = field(default_factory=dict)

    def _tensor(self, img: Any) -> torch.Tensor:
        if isinstance(img, np.ndarray):  # uint8 (3, H, W)
            return torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)

    def _builtin(self, img: Any, train: bool, gen: torch.Generator | None) -> torch.Tensor:
        x = self._tensor(img)
        s = int(self.image_size)
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x[None], size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True)[0]
        if train and self.augment:
            pad = max(1, s // 8)
            xp = F.pad(x[None], (pad, pad, pad, pad), mode="reflect")[0]
            i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
            x = xp[:, i:i + s, j:j + s]
            if bool(torch.rand((), generator=gen) < 0.5):
                x = x.flip(-1)
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return ((x - mean) / std).contiguous()

    def __call__(self, img: Any, train: bool = False, seed: int | None = None) -> torch.Tensor:
        train = bool(train and self.augment)
        if self.timm_train is None:
            gen = None
            if train:
                gen = torch.Generator().manual_seed(int(seed) if seed is not None else
                                                    int(torch.randint(0, 2**62, ()).item()))
            return self._builtin(img, train, gen)
        from PIL import Image

        if isinstance(img, np.ndarray):
            img = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
        if not train:
            return self.timm_eval(img)
        if seed is None:
            return self.timm_train(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            import random
            state = random.getstate()
            random.seed(int(seed))
            try:
                return self.timm_train(img)
            finally:
                random.setstate(state)


def transforms_for_model(model: Any, *, image_size: int, augment: bool = True,
                         use_timm: bool | None = None) -> ImageTransforms:
    """The transforms for ``model``: timm's data config when the model carries a pretrained
    config (named timm models), else the built-in pipeline at ``image_size`` (mean = std = 0.5).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if use_timm is False or not cfg.get("mean"):
        return ImageTransforms(image_size=int(image_size), augment=augment)
    from .._compat import import_timm

    timm = import_timm()
    data_cfg = timm.data.resolve_data_config({}, model=model)
    train_tf = timm.data.create_transform(**data_cfg, is_training=True)
    eval_tf = timm.data.create_transform(**data_cfg, is_training=False)
    return ImageTransforms(image_size=int(data_cfg["input_size"][-1]), mean=tuple(data_cfg["mean"]),
                           std=tuple(data_cfg["std"]), augment=augment, timm_train=train_tf,
                           timm_eval=eval_tf, source="timm", data_config=dict(data_cfg))


def batch_seeds(seed_base: Sequence[int], batch_idx: int, n: int) -> list[int]:
    """The augmentation seeds of the ``n`` samples of batch ``batch_idx`` (one per sample)."""
    ss = np.random.SeedSequence([*(int(s) for s in seed_base), int(batch_idx)])
    return [int(s) for s in ss.generate_state(int(n), dtype=np.uint32)]


class SeededBatches(torch.utils.data.Sampler):
    """A batch sampler over fixed batches of (dataset index, augmentation seed) pairs."""

    def __init__(self, batches: Sequence[Sequence[int]], seed_base: Sequence[int] | None):
        self.batches = [list(map(int, b)) for b in batches]
        self.seed_base = None if seed_base is None else [int(s) for s in seed_base]

    def __iter__(self):
        for bi, b in enumerate(self.batches):
            if self.seed_base is None:
                yield b
            else:
                yield list(zip(b, batch_seeds(self.seed_base, bi, len(b))))

    def __len__(self) -> int:
        return len(self.batches)


class DiskImageDataset(torch.utils.data.Dataset):
    """Images from uint8 arrays (``arrays``, shape (n, 3, H, W)) or files (``paths``), labels,
    and an index view; decoded and transformed item by item.

    Parameters
    ----------
    train : bool
        Views with ``train=True`` apply the training augmentation (in :meth:`loader`).
    """

    def __init__(self, *, labels: np.ndarray, num_classes: int, image_size: int,
                 arrays: np.ndarray | None = None, paths: Sequence[str] | None = None,
                 indices: np.ndarray | None = None, transforms: ImageTransforms | None = None,
                 train: bool = False, name: str = "images"):
        if (arrays is None) == (paths is None):
            raise ValueError("give arrays or paths")
        self._arrays = arrays
        self._paths = None if paths is None else list(paths)
        self._labels = np.asarray(labels, dtype=np.int64)
        self.indices = np.arange(len(self._labels)) if indices is None else np.asarray(indices, np.int64)
        self.num_classes = int(num_classes)
        self.transforms = transforms if transforms is not None else ImageTransforms(int(image_size))
        self.train = bool(train)
        self.name = name

    # ------------------------------------------------------------------ ImageDataset API
    @property
    def image_size(self) -> int:
        return int(self.transforms.image_size)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self._labels[self.indices])

    def subset(self, idx, train: bool | None = None) -> DiskImageDataset:
        """A view of the rows ``idx`` of this view (no image is copied)."""
        out = DiskImageDataset.__new__(DiskImageDataset)
        out.__dict__.update(self.__dict__)
        out.indices = self.indices[np.asarray(idx, dtype=np.int64)]
        if train is not None:
            out.train = bool(train)
        return out

    def batch(self, idx, seeds: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 images and int64 labels for the view's rows ``idx``, decoded now (training
        augmentation when the view is ``train`` and ``seeds`` are given)."""
        idx = [int(i) for i in np.asarray(idx).reshape(-1)]
        keys = idx if seeds is None else list(zip(idx, seeds))
        items = [self[k] for k in keys]
        if not items:
            return torch.empty(0, 3, self.image_size, self.image_size), torch.empty(0, dtype=torch.long)
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)

    @property
    def images(self) -> torch.Tensor:
        """All images of the view, decoded (eval transform): only for small data."""
        return self.batch(np.arange(len(self)))[0]

    # ------------------------------------------------------------------ torch Dataset
    def _raw(self, row: int):
        if self._arrays is not None:
            return self._arrays[row]
        from PIL import Image

        path = self._paths[row]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except Exception as exc:  # noqa: BLE001
            from ...errors import InvalidScenarioError
            raise InvalidScenarioError(f"cannot read image {path} ({exc})", field="data.root") from exc

    def __getitem__(self, key):
        seed = None
        if isinstance(key, tuple):
            key, seed = key
        row = int(self.indices[int(key)])
        x = self.transforms(self._raw(row), train=self.train and seed is not None, seed=seed)
        return x, int(self._labels[row])

    def loader(self, batches: Sequence[Sequence[int]], *, seed_base: Sequence[int] | None = None,
               num_workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
        """A DataLoader yielding ``(images, labels)`` for the given batches of view rows, in order;
        ``seed_base`` (e.g. ``[seed, round, client]``) seeds the training augmentation."""
        sampler = SeededBatches(batches, seed_base if self.train else None)
        return torch.utils.data.DataLoader(self, batch_sampler=sampler, num_workers=int(num_workers),
                                           pin_memory=bool(pin_memory),
                                           persistent_workers=False)
