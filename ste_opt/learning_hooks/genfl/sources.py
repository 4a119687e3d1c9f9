"""Synthetic-image sources: the generator interface and its three backends.

Every source satisfies :class:`SyntheticSource`::

    source.num_classes, source.image_shape          # (C, H, W)
    source.generate(labels, seed) -> ndarray        # (n, C, H, W) float32 in [-1, 1]

Backends
--------
- :class:`FlowMatchingSource` — the built-in generator (:mod:`.generator`).
- :class:`ArraySource` — pre-generated images from an ``.npz`` file (``images``, ``labels``) or a
  folder with one sub-folder per class (``<root>/<class id>/*.png``).
- :class:`DiffusersSource` — a ``diffusers`` pipeline loaded from a local path
  (``local_files_only=True``, never downloads). ``diffusers`` is imported lazily; a missing
  package raises :class:`~ste_opt.errors.SolverError` naming it.

:class:`SyntheticPool` turns any source into a deterministic, lazily grown per-class pool: the
``i``-th image of class ``c`` depends only on ``(seed, c, i)``, whatever order it is asked in, so
the server can give each client distinct images and reuse them across experiments.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import InvalidScenarioError, SolverError

__all__ = ["SyntheticSource", "FlowMatchingSource", "ArraySource", "DiffusersSource",
           "SyntheticPool", "resize_images", "derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integers ``parts``."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2,
               dtype=np.uint64)[0] >> np.uint64(1))


@runtime_checkable
class SyntheticSource(Protocol):
    """Anything that draws class-conditional images."""

    num_classes: int
    image_shape: tuple[int, int, int]

    def generate(self, labels: np.ndarray, seed: int) -> np.ndarray: ...


def _check_labels(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InvalidScenarioError(f"labels must lie in [0, {num_classes})", field="labels")
    return labels


def resize_images(images: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Convert ``(n, C', H', W')`` images in [-1, 1] to ``image_shape`` = (C, H, W).

    RGB -> gray by the luminance weights (gray -> RGB by repetition); spatial size by area
    (anti-aliased bilinear) interpolation.
    """
    import torch
    from torch.nn import functional as F

    c, h, w = (int(v) for v in image_shape)
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim != 4:
        raise InvalidScenarioError(f"images must be (n, C, H, W), got {tuple(x.shape)}", field="images")
    if x.shape[1] != c:
        if c == 1 and x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
        elif c == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        else:
            raise InvalidScenarioError(f"cannot map {x.shape[1]} channels to {c}", field="images")
    if tuple(x.shape[-2:]) != (h, w) and x.shape[0]:
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1).numpy().astype(np.float32)


class FlowMatchingSource:
    """The built-in flow-matching generator as a source (``steps`` Euler steps, CFG ``cfg_scale``)."""

    def __init__(self, generator, steps: int | None = None, cfg_scale: float | None = None):
        self.generator = generator
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.num_classes = generator.num_classes
        self.image_shape = generator.image_shape

    def generate(self, labels, seed: int) -> np.ndarray:
        labels = _check_labels(labels, self.num_classes)
        return self.generator.sample(labels, seed=seed, steps=self.steps, cfg_scale=self.cfg_scale)

    def describe(self) -> dict:
        return {"backend": "builtin", "sample_steps": self.steps or self.generator.config.sample_steps,
                "cfg_scale": self.generator.config.cfg_scale if self.cfg_scale is None else self.cfg_scale}


class ArraySource:
    """Pre-generated images; ``generate`` draws (seeded, without replacement until a class is
    exhausted, then cycling) from the stored images of each requested class."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int | None = None,
                 image_shape: Sequence[int] | None = None, origin: str = "arrays"):
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4 or images.shape[0] != labels.size:
            raise InvalidScenarioError("images must be (n, C, H, W) with one label each",
                                       field="images")
        if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
            images = resize_images(images, image_shape)
        self.images = images
        self.labels = labels
        self.num_classes = int(num_classes if num_classes is not None else labels.max() + 1)
        self.image_shape = tuple(int(v) for v in images.shape[1:])
        self.origin = origin
        self._by_class = {c: np.flatnonzero(labels == c) for c in range(self.num_classes)}

    @classmethod
    def from_file(cls, path: str | Path, num_classes: int | None = None,
                  image_shape: Sequence[int] | None = None) -> ArraySource:
        """Load an ``.npz`` with arrays ``images`` ((n, C, H, W) or (n, H, W), in [-1, 1]) and
        ``labels``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no synthetic image file at {path}")
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z or "labels" not in z:
                raise InvalidScenarioError(f"{path} must hold arrays 'images' and 'labels'",
                                           field="generator")
            return cls(z["images"], z["labels"], num_classes, image_shape, origin=str(path))

    @classmethod
    def from_folder(cls, root: str | Path, image_shape: Sequence[int],
                    num_classes: int | None = None) -> ArraySource:
        """Load ``<root>/<class id>/*.png|jpg`` (8-bit images, mapped to [-1, 1], resized)."""
        from PIL import Image

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"no synthetic image folder at {root}")
        images, labels = [], []
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
            for f in sorted(sub.iterdir()):
                if f.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                    continue
                arr = np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
                images.append(resize_images(arr.transpose(2, 0, 1)[None], image_shape)[0])
                labels.append(int(sub.name))
        if not images:
            raise InvalidScenarioError(f"{root} has no <class id>/*.png images", field="generator")
        return cls(np.stack(images), np.asarray(labels), num_classes, image_shape, origin=str(root))

    def generate(self, labels, seed: int) -> np.ndarray:
        labels = _check_labels(labels, self.num_classes)
        out = np.empty((labels.size, *self.image_shape), dtype=np.float32)
        rng = np.random.default_rng(seed)
        for c in np.unique(labels):
            avail = self._by_class.get(int(c), np.empty(0, dtype=np.int64))
            if avail.size == 0:
                raise InvalidScenarioError(f"the synthetic set {self.origin} has no image of class {c}",
                                           field="generator")
            where = np.flatnonzero(labels == c)
            order = np.concatenate([rng.permutation(avail)
                                    for _ in range(-(-where.size // avail.size))])
            out[where] = self.images[order[:where.size]]
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, images=self.images, labels=self.labels)
        return path

    def describe(self) -> dict:
        return {"backend": "array", "origin": self.origin, "num_images": int(self.labels.size)}


def _import_diffusers():
    try:
        import diffusers  # noqa: F401
    except ImportError as exc:
        raise SolverError("the diffusers backend needs the 'diffusers' package, which is not "
                          "installed (pip install diffusers); use the built-in generator or an "
                          "array/folder source instead") from exc
    return diffusers


class DiffusersSource:
    """A diffusers pipeline from a local folder (no download).

    Class-conditional pipelines (DiT-style, whose call takes ``class_labels``) receive the class
    ids; text-to-image pipelines receive ``prompt_template.format(name=class_names[c])``. Output
    images (``output_type="np"``, values in [0, 1]) are mapped to [-1, 1] and to ``image_shape``.

    Parameters
    ----------
    model_path : str or Path
        Local pipeline folder (``DiffusionPipeline.from_pretrained(model_path, local_files_only=True)``).
    image_shape : (C, H, W)
        Shape the images are converted to (the classifier's input).
    num_classes : int
    class_names : list of str, optional
        For text pipelines; defaults to the class ids as strings.
    pipeline : object, optional
        An already built pipeline (or any callable with the same signature); skips loading.
    conditioning : {"auto", "class_labels", "prompt"}
        How classes are passed; ``auto`` asks the pipeline's call signature.
    """

    def __init__(self, model_path: str | Path | None, image_shape: Sequence[int], num_classes: int,
                 class_names: Sequence[str] | None = None, num_inference_steps: int = 25,
                 guidance_scale: float | None = None, prompt_template: str = "a photo of a {name}",
                 pipeline: Any = None, conditioning: str = "auto", batch_size: int = 16,
                 device: str = "cpu"):
        self.image_shape = tuple(int(v) for v in image_shape)
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = guidance_scale
        self.prompt_template = prompt_template
        self.batch_size = int(batch_size)
        self.device = device
        self.model_path = None if model_path is None else str(model_path)
        if pipeline is None:
            if model_path is None:
                raise InvalidScenarioError("DiffusersSource needs model_path or pipeline",
                                           field="generator")
            diffusers = _import_diffusers()
            if not Path(model_path).exists():
                raise FileNotFoundError(f"no diffusers pipeline at {model_path}")
            try:
                pipeline = diffusers.DiffusionPipeline.from_pretrained(str(model_path),
                                                                       local_files_only=True)
                pipeline = pipeline.to(device)
            except Exception as exc:  # noqa: BLE001
                raise SolverError(f"cannot load the diffusers pipeline at {model_path}: {exc}") from exc
        self.pipeline = pipeline
        if conditioning == "auto":
            import inspect

            try:
                params = inspect.signature(pipeline.__call__).parameters
            except (TypeError, ValueError):
                params = {}
            conditioning = "class_labels" if "class_labels" in params else "prompt"
        if conditioning not in ("class_labels", "prompt"):
            raise InvalidScenarioError("conditioning must be auto, class_labels or prompt",
                                       field="conditioning")
        self.conditioning = conditioning

    def _call(self, batch_labels: np.ndarray, seed: int) -> np.ndarray:
        import torch

        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        kwargs: dict[str, Any] = {"num_inference_steps": self.num_inference_steps,
                                  "generator": gen, "output_type": "np"}
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        if self.conditioning == "class_labels":
            kwargs["class_labels"] = [int(c) for c in batch_labels]
        else:
            kwargs["prompt"] = [self.prompt_template.format(name=self.class_names[int(c)])
                                for c in batch_labels]
        result = self.pipeline(**kwargs)
        images = getattr(result, "images", result)
        if isinstance(images, (list, tuple)):
            images = np.stack([np.asarray(im, dtype=np.float32) for im in images])
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.max() > 1.5:  # uint8-style output
            images = images / 255.0
        nchw = images.transpose(0, 3, 1, 2) * 2.0 - 1.0
        return resize_images(nchw, self.image_shape)

    def generate(self, labels, seed: int) -> np.ndarray:
        labels = _check_labels(labels, self.num_classes)
        out = [self._call(labels[lo:lo + self.batch_size], derive_seed(seed, lo))
               for lo in range(0, labels.size, self.batch_size)]
        if not out:
            return np.empty((0, *self.image_shape), dtype=np.float32)
        return np.concatenate(out)

    def describe(self) -> dict:
        return {"backend": "diffusers", "model_path": self.model_path,
                "conditioning": self.conditioning, "num_inference_steps": self.num_inference_steps}


class SyntheticPool:
    """Deterministic per-class pool over a source, grown lazily in fixed chunks.

    Chunk ``j`` of class ``c`` is ``source.generate([c] * chunk, derive_seed(seed, c, j))``, so the
    ``i``-th image of class ``c`` depends only on ``(seed, c, i)``. ``generated`` counts the images
    actually drawn and ``sample_seconds`` the time spent drawing them.
    """

    def __init__(self, source: SyntheticSource, seed: int = 0, chunk: int = 128,
                 on_generate: Callable[[int, int], None] | None = None):
        self.source = source
        self.seed = int(seed)
        self.chunk = int(chunk)
        self._chunks: dict[tuple[int, int], np.ndarray] = {}
        self.generated = 0
        self.sample_seconds = 0.0
        self.on_generate = on_generate

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.source.image_shape

    def _get_chunk(self, c: int, j: int) -> np.ndarray:
        key = (c, j)
        if key not in self._chunks:
            import time

            t0 = time.perf_counter()
            self._chunks[key] = self.source.generate(np.full(self.chunk, c, dtype=np.int64),
                                                     derive_seed(self.seed, c, j))
            self.sample_seconds += time.perf_counter() - t0
            self.generated += self.chunk
            if self.on_generate:
                self.on_generate(c, self.chunk)
        return self._chunks[key]

    def take(self, class_id: int, start: int, count: int) -> np.ndarray:
        """Images ``start .. start+count-1`` of class ``class_id``: ``(count, C, H, W)``."""
        c = int(class_id)
        if not 0 <= c < self.num_classes:
            raise InvalidScenarioError(f"class {c} outside [0, {self.num_classes})", field="labels")
        if count <= 0:
            return np.empty((0, *self.image_shape), dtype=np.float32)
        first, last = start // self.chunk, (start + count - 1) // self.chunk
        block = np.concatenate([self._get_chunk(c, j) for j in range(first, last + 1)])
        lo = start - first * self.chunk
        return block[lo:lo + count]

    def balanced(self, per_class: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``per_class`` images of every class (the server's own pool S_0) and their labels."""
        images = np.concatenate([self.take(c, start, per_class) for c in range(self.num_classes)])
        labels = np.repeat(np.arange(self.num_classes), per_class)
        return images, labels
