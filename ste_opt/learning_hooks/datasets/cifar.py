"""CIFAR-10/100 from their standard python archives, read with the restricted unpickler.

Accepted ``root``: the archive itself (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``),
a folder holding it, the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its
parent. Batches are read with :func:`~.safe_pickle.restricted_load` (never ``pickle.load``).
"""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from ...errors import InvalidScenarioError
from .safe_pickle import restricted_load

__all__ = ["read_cifar", "CIFAR_FILES"]

#: which -> (archive, folder, train members, test members, label key)
CIFAR_FILES = {
    10: ("cifar-10-python.tar.gz", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
         ["test_batch"], "labels"),
    100: ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"], "fine_labels"),
}


def _bad(root, msg) -> InvalidScenarioError:
    return InvalidScenarioError(f"data.root={root}: {msg}", field="data.root")


def _unpickle(fh, root, name) -> dict:
    try:
        obj = restricted_load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a malformed archive
        raise _bad(root, f"malformed CIFAR batch {name} ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise _bad(root, f"malformed CIFAR batch {name} (not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _arrays(batch: dict, label_key: str, root) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or label_key not in batch:
        raise _bad(root, f"CIFAR batch lacks 'data' or '{label_key}'")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise _bad(root, f"CIFAR data has shape {data.shape}, expected (n, 3072) with n labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar(root: str | Path, which: int = 10):
    """Read a CIFAR archive.

    Returns
    -------
    (train_images, train_labels, test_images, test_labels): uint8 arrays (n, 3, 32, 32) and int64
    labels in ``[0, which)``.
    """
    root = Path(root)
    if which not in CIFAR_FILES:
        raise InvalidScenarioError("which must be 10 or 100", field="data.name")
    tgz, folder, train_names, test_names, label_key = CIFAR_FILES[which]
    if not root.exists():
        raise _bad(root, f"path does not exist (expected {tgz} or the extracted {folder}/ folder there)")
    archive = root if root.is_file() else root / tgz
    if (root / folder).is_dir() or root.name == folder:
        base = root if root.name == folder else root / folder

        def read(name):
            p = base / name
            if not p.is_file():
                raise _bad(root, f"missing {p.name} in {base}")
            with p.open("rb") as fh:
                return _unpickle(fh, root, name)
    elif archive.is_file():
        try:
            tf = tarfile.open(archive, "r:*")
        except tarfile.TarError as exc:
            raise _bad(root, f"{archive} is not a readable tar archive ({exc})") from exc

        def read(name):
            try:
                fh = tf.extractfile(f"{folder}/{name}")
            except KeyError as exc:
                raise _bad(root, f"archive {archive.name} lacks {folder}/{name}") from exc
            if fh is None:
                raise _bad(root, f"archive {archive.name}: {folder}/{name} is not a file")
            return _unpickle(fh, root, name)
    else:
        raise _bad(root, f"expected {tgz} or a {folder}/ folder in {root}")
    try:
        tr = [_arrays(read(n), label_key, root) for n in train_names]
        te = [_arrays(read(n), label_key, root) for n in test_names]
    finally:
        if not ((root / folder).is_dir() or root.name == folder):
            tf.close()
    out = []
    for parts in (tr, te):
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if y.size and (y.min() < 0 or y.max() >= which):
            raise _bad(root, f"labels outside [0, {which})")
        out += [x, y]
    return tuple(out)
