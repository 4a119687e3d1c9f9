"""GenFL workflow: label sharing, top-up planning, generation and shipping.

1. **Label sharing.** Each client sends a :class:`LabelReport` (its label histogram ``n_{k,c}``,
   nothing else). Images never leave a client.
2. **Top-up.** The server computes how many synthetic images ``m_{k,c}`` each client gets
   (:func:`topup_counts`):

   - ``"fill_max"`` (default): ``m_{k,c} = max_c' n_{k,c'} - n_{k,c}``, every class, missing
     ones included, is filled up to the client's largest class count (class-balanced union);
   - ``"fill_to"``: fill every class up to a global ``target`` count;
   - ``"ratio"``: ``m_k = round(ratio * n_k)`` images, spread by water-filling over the client's
     smallest classes (most balanced union reachable with that many images).

   ``max_ratio`` optionally caps ``sum_c m_{k,c} <= max_ratio * n_k`` (proportional scale-down).
3. **Generation and shipping.** The server draws the sets from a :class:`~.sources.SyntheticPool`
   with per-class offsets, so that no two clients get the same synthetic image
   (:meth:`GenFLServer.ship`).
4. **Local training** on the union, optionally with a weight ``mu`` on the synthetic loss
   (see :func:`.fl.local_train`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import InvalidScenarioError
from .sources import SyntheticPool

__all__ = ["LabelReport", "GenFLClient", "GenFLServer", "label_histogram", "topup_counts",
           "TOPUP_POLICIES"]

TOPUP_POLICIES = ("fill_max", "fill_to", "ratio")


def label_histogram(labels, num_classes: int) -> np.ndarray:
    """Count of each class, shape ``(num_classes,)`` int64."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise InvalidScenarioError(f"labels must lie in [0, {num_classes})", field="labels")
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


@dataclass(frozen=True)
class LabelReport:
    """The only message a client sends the server in the GenFL data step."""

    client_id: int
    histogram: tuple[int, ...]

    @property
    def num_examples(self) -> int:
        return int(sum(self.histogram))


@dataclass
class GenFLClient:
    """A client's private data plus the synthetic set it received (``syn_*``, empty until shipped)."""

    client_id: int
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    syn_images: np.ndarray | None = None
    syn_labels: np.ndarray | None = None

    def label_report(self) -> LabelReport:
        """The label histogram, as plain ints: all that leaves the client."""
        hist = label_histogram(self.labels, self.num_classes)
        return LabelReport(int(self.client_id), tuple(int(v) for v in hist))

    def receive(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.syn_images = np.asarray(images, dtype=np.float32)
        self.syn_labels = np.asarray(labels, dtype=np.int64)

    @property
    def num_real(self) -> int:
        return int(self.labels.size)

    @property
    def num_synthetic(self) -> int:
        return 0 if self.syn_labels is None else int(self.syn_labels.size)


def _waterfill(hist: np.ndarray, total: int) -> np.ndarray:
    """Add ``total`` units to the smallest entries of ``hist`` (ties: lowest index first)."""
    add = np.zeros_like(hist)
    cur = hist.astype(np.int64).copy()
    for _ in range(int(total)):
        c = int(np.argmin(cur))
        cur[c] += 1
        add[c] += 1
    return add


def topup_counts(histograms, policy: str = "fill_max", *, ratio: float = 1.0,
                 target: int | None = None, max_ratio: float | None = None) -> np.ndarray:
    """Synthetic images per client and class, ``(clients, classes)`` int64.

    Parameters
    ----------
    histograms : array (clients, classes)
        Real label counts ``n_{k,c}`` (from the :class:`LabelReport` s).
    policy : {"fill_max", "fill_to", "ratio"}
        See the module docstring.
    ratio : float
        Synthetic/real ratio of the ``"ratio"`` policy.
    target : int
        Per-class target of the ``"fill_to"`` policy.
    max_ratio : float, optional
        Cap on ``sum_c m_{k,c} / n_k``.
    """
    h = np.asarray(histograms, dtype=np.int64)
    if h.ndim != 2 or np.any(h < 0):
        raise InvalidScenarioError("histograms must be a (clients, classes) array of counts >= 0",
                                   field="histograms")
    if policy == "fill_max":
        m = h.max(axis=1, keepdims=True) - h
    elif policy == "fill_to":
        if target is None or target < 0:
            raise InvalidScenarioError("policy 'fill_to' needs target >= 0", field="target")
        m = np.maximum(0, int(target) - h)
    elif policy == "ratio":
        if not ratio >= 0:
            raise InvalidScenarioError("ratio must be >= 0", field="ratio")
        m = np.stack([_waterfill(row, int(round(ratio * row.sum()))) for row in h])
    else:
        raise InvalidScenarioError(f"unknown top-up policy {policy!r}; use one of {TOPUP_POLICIES}",
                                   field="topup")
    m = m.astype(np.int64)
    if max_ratio is not None:
        if max_ratio < 0:
            raise InvalidScenarioError("max_ratio must be >= 0", field="max_ratio")
        for k in range(m.shape[0]):
            cap = int(np.floor(max_ratio * h[k].sum()))
            if m[k].sum() > cap:
                m[k] = np.floor(m[k] * cap / m[k].sum()).astype(np.int64)
    return m


@dataclass
class GenFLServer:
    """Server side of the data step: plans the top-ups from label reports and ships images.

    ``uplink`` logs every message received from clients (for audit and tests).
    """

    num_classes: int
    policy: str = "fill_max"
    ratio: float = 1.0
    target: int | None = None
    max_ratio: float | None = None
    uplink: list = field(default_factory=list)

    def receive_reports(self, reports: Sequence[LabelReport]) -> np.ndarray:
        """Validate and stack the reports into ``(clients, classes)`` histograms."""
        rows = []
        for r in reports:
            if not isinstance(r, LabelReport):
                raise InvalidScenarioError("the server accepts only LabelReport messages",
                                           field="reports")
            if len(r.histogram) != self.num_classes:
                raise InvalidScenarioError(
                    f"client {r.client_id} reported {len(r.histogram)} classes, expected "
                    f"{self.num_classes}", field="histogram", device=r.client_id)
            self.uplink.append(r)
            rows.append(r.histogram)
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), self.num_classes)

    def plan(self, reports: Sequence[LabelReport]) -> np.ndarray:
        """Top-up counts ``m_{k,c}`` for the reporting clients."""
        hist = self.receive_reports(reports)
        return topup_counts(hist, self.policy, ratio=self.ratio, target=self.target,
                            max_ratio=self.max_ratio)

    def ship(self, topups: np.ndarray, pool: SyntheticPool,
             start: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Draw each client's synthetic set from ``pool``; distinct images across clients.

        Client k gets images ``[offset_c, offset_c + m_{k,c})`` of class c, offsets accumulating over
        clients from ``start``. Returns ``[(images, labels), ...]`` in client order.
        """
        topups = np.asarray(topups, dtype=np.int64)
        offsets = np.full(self.num_classes, int(start), dtype=np.int64)
        out = []
        for row in topups:
            imgs, labs = [], []
            for c in range(self.num_classes):
                if row[c] > 0:
                    imgs.append(pool.take(c, int(offsets[c]), int(row[c])))
                    labs.append(np.full(int(row[c]), c, dtype=np.int64))
                    offsets[c] += row[c]
            if imgs:
                out.append((np.concatenate(imgs), np.concatenate(labs)))
            else:
                out.append((np.empty((0, *pool.image_shape), dtype=np.float32),
                            np.empty(0, dtype=np.int64)))
        return out


def run_data_step(clients: Sequence[GenFLClient], server: GenFLServer,
                  pool: SyntheticPool, start: int = 0) -> np.ndarray:
    """The whole GenFL data step: reports up, top-ups planned, synthetic sets down.

    Returns the top-up matrix ``(clients, classes)``.
    """
    reports = [c.label_report() for c in clients]
    topups = server.plan(reports)
    for client, (imgs, labs) in zip(clients, server.ship(topups, pool, start), strict=True):
        client.receive(imgs, labs)
    return topups
