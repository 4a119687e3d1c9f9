"""Image folders: any ImageFolder tree (``root/<class>/**/<image>``) and Tiny-ImageNet-200.

Only the file list is read here (paths and labels); images are decoded when a batch needs them.
The ImageFolder tree is scanned by ``torchvision.datasets.ImageFolder`` where torchvision imports
(through the compatibility guard), and by an equivalent reader otherwise (same class order: sorted
folder names; same extensions).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ...errors import InvalidScenarioError

__all__ = ["scan_image_folder", "scan_tiny_imagenet", "IMG_EXTENSIONS"]

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _bad(root, msg) -> InvalidScenarioError:
    return InvalidScenarioError(f"data.root={root}: {msg}", field="data.root")


def _torchvision_image_folder():
    try:
        from .._compat import ensure_torchvision

        if ensure_torchvision() == "absent":
            return None
        from torchvision.datasets import ImageFolder
        return ImageFolder
    except Exception as exc:  # noqa: BLE001 - fall back to the own reader
        log.debug("torchvision ImageFolder unavailable (%s); using the built-in reader", exc)
        return None


def _own_scan(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    samples = []
    for i, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
                samples.append((str(p), i))
    return samples, classes


def scan_image_folder(root: str | Path, *, use_torchvision: bool | None = None
                      ) -> tuple[list[tuple[str, int]], list[str]]:
    """``(samples [(path, label)], classes)`` of an ImageFolder tree (classes = sorted folder
    names). ``use_torchvision``: ``None`` = where it imports."""
    root = Path(root)
    if not root.is_dir():
        raise _bad(root, "expected an ImageFolder tree (root/<class>/<image>) at this path; "
                         "it does not exist")
    if not any(d.is_dir() for d in root.iterdir()):
        raise _bad(root, "no class folders (expected root/<class>/<image>)")
    ImageFolder = _torchvision_image_folder() if use_torchvision in (None, True) else None
    if use_torchvision and ImageFolder is None:
        raise ImportError("torchvision is not importable here")
    if ImageFolder is not None:
        try:
            ds = ImageFolder(str(root))
        except (FileNotFoundError, RuntimeError) as exc:
            raise _bad(root, f"not a usable ImageFolder tree ({exc})") from exc
        return [(str(p), int(y)) for p, y in ds.samples], list(ds.classes)
    samples, classes = _own_scan(root)
    if not samples:
        raise _bad(root, f"no images with extensions {IMG_EXTENSIONS} under the class folders")
    return samples, classes


def scan_tiny_imagenet(root: str | Path, max_per_class: int | None = None):
    """Tiny-ImageNet-200 (``wnids.txt``, ``train/<wnid>/images/*``, ``val/images/*`` +
    ``val/val_annotations.txt``), ``root`` being that folder or its parent.

    Returns ``(train_samples, val_samples, wnids)``; labels index ``wnids`` in ``wnids.txt`` order.
    """
    root = Path(root)
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wn = root / "wnids.txt"
    if not wn.is_file():
        raise _bad(root, f"no wnids.txt at {wn}: not a Tiny-ImageNet-200 folder "
                         "(expected tiny-imagenet-200/ with wnids.txt, train/, val/)")
    wnids = [w.strip() for w in wn.read_text().split() if w.strip()]
    cls = {w: i for i, w in enumerate(wnids)}
    train = []
    for w in wnids:
        files = sorted(p for p in (root / "train" / w / "images").glob("*")
                       if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise _bad(root, f"no training images for class {w} in {root / 'train' / w / 'images'}")
        train += [(str(f), cls[w]) for f in files[:max_per_class]]
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise _bad(root, f"missing {ann}")
    val = []
    for line in ann.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in cls:
            raise _bad(root, f"val annotation names unknown class {parts[1]}")
        p = root / "val" / "images" / parts[0]
        if not p.is_file():
            raise _bad(root, f"missing validation image {p}")
        val.append((str(p), cls[parts[1]]))
    if not val:
        raise _bad(root, "empty validation annotations")
    return train, val, wnids
