"""GenFL data split: a server-held generator split, a client split and a test split, disjoint.

The generator must be trained on data the clients (and the test set) never contain; this module
makes that split explicit and seeded. Images are float32 ``(N, 1, 8, 8)`` in [-1, 1] for digits.

This is independent of the trainer's backbone-pretraining split in ``learning_hooks.data``
(GenFL trains a small CNN from scratch and needs no backbone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InvalidScenarioError

__all__ = ["GenFLSplit", "split_digits_for_genfl", "split_arrays_for_genfl"]


@dataclass
class GenFLSplit:
    """Disjoint arrays: ``server_*`` (generator training), ``client_*`` (partitioned), ``test_*``."""

    server_images: np.ndarray
    server_labels: np.ndarray
    client_images: np.ndarray
    client_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    server_index: np.ndarray | None = None
    client_index: np.ndarray | None = None
    test_index: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.client_images.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"server": int(self.server_labels.size), "client": int(self.client_labels.size),
                "test": int(self.test_labels.size)}


def split_arrays_for_genfl(images: np.ndarray, labels: np.ndarray, *, server_per_class: int = 30,
                           test_size: int = 500, seed: int = 0,
                           num_classes: int | None = None) -> GenFLSplit:
    """Split arrays three ways: a stratified test set, ``server_per_class`` images per class for
    the server's generator, and the rest for the clients.

    Parameters
    ----------
    images : ndarray
        ``(N, C, H, W)`` float in [-1, 1].
    labels : ndarray
        ``(N,)`` class ids.
    server_per_class : int
        Images per class held by the server only (generator training data).
    test_size : int
        Size of the stratified test split (never seen by the generator nor the clients).
    seed : int
        Seeds the split.
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if images.ndim != 4 or images.shape[0] != labels.size:
        raise InvalidScenarioError("images must be (N, C, H, W) with one label each", field="images")
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    rng = np.random.default_rng(seed)
    n = labels.size
    test_frac = test_size / n
    test_idx, server_idx, client_idx = [], [], []
    for c in range(k):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_frac * idx.size))
        if n_test + server_per_class >= idx.size:
            raise InvalidScenarioError(
                f"class {c} has {idx.size} images: too few for {n_test} test + "
                f"{server_per_class} server images", field="server_per_class")
        test_idx.append(idx[:n_test])
        server_idx.append(idx[n_test:n_test + server_per_class])
        client_idx.append(idx[n_test + server_per_class:])
    test_idx, server_idx, client_idx = (np.sort(np.concatenate(v))
                                        for v in (test_idx, server_idx, client_idx))
    return GenFLSplit(images[server_idx], labels[server_idx], images[client_idx],
                      labels[client_idx], images[test_idx], labels[test_idx], k,
                      server_idx, client_idx, test_idx)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (offline) as ``(1797, 1, 8, 8)`` in [-1, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    return images, d.target.astype(np.int64)


def split_digits_for_genfl(server_per_class: int = 30, test_size: int = 500,
                           seed: int = 0) -> GenFLSplit:
    """Digits split for GenFL: ``server_per_class`` x 10 server images, a stratified test set of
    about ``test_size`` images, the rest (about 1000) for the clients; all disjoint and seeded."""
    images, labels = load_digits_images()
    return split_arrays_for_genfl(images, labels, server_per_class=server_per_class,
                                  test_size=test_size, seed=seed, num_classes=10)
