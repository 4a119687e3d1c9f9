"""Whole-model federated learning of a small CNN: the GenFL round loop.

GenFL is plain FL (no split): every client trains the full classifier on its real data plus its
synthetic set, the server aggregates whole state dicts with any
:class:`~ste_opt.learning_hooks.federated.Aggregator`. Partitions, client sampling and FedAvg are
the trainer's (:mod:`ste_opt.learning_hooks.federated`); this loop exists because the trainer's
round loop is the split-LoRA ViT one (client/server halves, payload compression), which a whole
CNN does not fit. Rows use the trainer's history column names (``round`` 0-based, ``test_acc``,
``test_loss``, ``train_loss``, ``clients``, ``round_time_s``) plus ``arm``, ``real_examples``,
``synthetic_examples`` and, for the blend policy, ``blend_lambda``.

Local loss with a synthetic weight ``mu`` (``syn_weight``): with ``n`` real and ``m`` synthetic
images, each real sample is weighted ``(1 - mu) (n + m) / n`` and each synthetic one
``mu (n + m) / m``, so that over an epoch the loss is ``(1 - mu) * mean_real + mu * mean_syn``.
``mu = None`` (default) is the plain union (``mu = m / (n + m)``).
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import InvalidScenarioError
from ..federated import FedAvg, sample_clients
from .sources import derive_seed
from .workflow import GenFLClient

__all__ = ["SmallCNN", "FLConfig", "local_train", "evaluate", "run_federated", "make_classifier"]


class SmallCNN(nn.Module):
    """conv(w) - conv(2w) - maxpool - fc(64) - fc(classes); ``features`` is the 64-d penultimate."""

    def __init__(self, in_channels: int, num_classes: int, image_hw: tuple[int, int], width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        h, w = image_hw[0] // 2, image_hw[1] // 2
        self.fc1 = nn.Linear(2 * width * h * w, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def make_classifier(image_shape: Sequence[int], num_classes: int, width: int = 16,
                    seed: int = 0) -> SmallCNN:
    """A freshly initialised :class:`SmallCNN` (initialisation seeded, global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return SmallCNN(int(image_shape[0]), num_classes, (int(image_shape[1]), int(image_shape[2])),
                        width)


@dataclass
class FLConfig:
    """Federated training hyper-parameters (defaults: the measured digits prototype).

    Attributes
    ----------
    rounds : int
    local_epochs : int
        Passes over the client's (real + synthetic) data per round.
    lr, momentum : float
        Local SGD (a fresh optimiser every round).
    batch_size : int
    clients_per_round : int or None
        ``None``: full participation; else uniform sampling (the trainer's ``sample_clients``).
    width : int
        CNN width.
    syn_weight : float or None
        Weight ``mu`` of the synthetic loss (see module docstring); ``None`` = plain union.
    server_epochs : int
        Epochs the server trains ``w_syn`` on S_0 per round (blend policy only).
    """

    rounds: int = 20
    local_epochs: int = 2
    lr: float = 0.02
    momentum: float = 0.9
    batch_size: int = 32
    clients_per_round: int | None = None
    width: int = 16
    syn_weight: float | None = None
    server_epochs: int = 1
    device: str = "auto"

    def validate(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size", "width"):
            if int(getattr(self, name)) < 1:
                raise InvalidScenarioError(f"{name} must be >= 1", field=name)
        if self.lr <= 0:
            raise InvalidScenarioError("lr must be > 0", field="lr")
        if self.syn_weight is not None and not 0.0 <= self.syn_weight <= 1.0:
            raise InvalidScenarioError("syn_weight must be in [0, 1]", field="syn_weight")


def local_train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *,
                syn_images: np.ndarray | None = None, syn_labels: np.ndarray | None = None,
                syn_weight: float | None = None, epochs: int = 2, lr: float = 0.02,
                momentum: float = 0.9, batch_size: int = 32, seed: int = 0) -> float:
    """Train ``model`` in place with SGD on real (+ synthetic) data; returns the mean batch loss."""
    xs = [np.asarray(images, dtype=np.float32)]
    ys = [np.asarray(labels, dtype=np.int64)]
    n = ys[0].size
    m = 0 if syn_labels is None else int(np.asarray(syn_labels).size)
    if m:
        xs.append(np.asarray(syn_images, dtype=np.float32))
        ys.append(np.asarray(syn_labels, dtype=np.int64))
    dev = next(model.parameters()).device
    x = torch.from_numpy(np.concatenate(xs)).to(dev)
    y = torch.from_numpy(np.concatenate(ys)).to(dev)
    total = n + m
    if total == 0:
        return float("nan")
    weights = None
    if syn_weight is not None and n and m:
        weights = torch.cat([torch.full((n,), (1 - syn_weight) * total / n),
                             torch.full((m,), syn_weight * total / m)]).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(int(seed))
    model.train()
    losses = []
    for _ in range(int(epochs)):
        perm = torch.randperm(total, generator=gen).to(dev)
        for lo in range(0, total, batch_size):
            idx = perm[lo:lo + batch_size]
            per_sample = F.cross_entropy(model(x[idx]), y[idx], reduction="none")
            loss = (per_sample * weights[idx]).mean() if weights is not None else per_sample.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float]:
    """Accuracy (fraction) and mean cross-entropy of ``model`` on the given set."""
    model.eval()
    dev = next(model.parameters()).device
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).to(dev)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(dev)
    correct, loss = 0, 0.0
    for lo in range(0, y.numel(), batch_size):
        out = model(x[lo:lo + batch_size])
        correct += int((out.argmax(1) == y[lo:lo + batch_size]).sum())
        loss += float(F.cross_entropy(out, y[lo:lo + batch_size], reduction="sum"))
    return correct / max(1, y.numel()), loss / max(1, y.numel())


def run_federated(clients: Sequence[GenFLClient], test_images: np.ndarray, test_labels: np.ndarray,
                  config: FLConfig | None = None, aggregator=None, *, seed: int = 0,
                  arm: str = "fl", server_synthetic: tuple[np.ndarray, np.ndarray] | None = None,
                  on_round: Callable[[dict], None] | None = None) -> tuple[list[dict], nn.Module]:
    """FedAvg-style rounds over whole-model clients; returns ``(history rows, global model)``.

    Each round: sample clients, copy the global model to each, train locally on real (+ shipped
    synthetic) data, aggregate with ``aggregator(states, n_real, round_idx=, client_ids=,
    num_synthetic=[, synthetic_state=])``, evaluate on the test set. ``synthetic_state`` is given
    when the aggregator has ``needs_synthetic_model`` set and ``server_synthetic`` (S_0) is given:
    the server then trains a copy of the global model on S_0 for ``server_epochs``.
    """
    cfg = config or FLConfig()
    cfg.validate()
    if not clients:
        raise InvalidScenarioError("need at least one client", field="clients")
    agg = aggregator if aggregator is not None else FedAvg()
    num_classes = clients[0].num_classes
    image_shape = tuple(np.asarray(test_images).shape[1:])
    from ..device import resolve_device

    model = make_classifier(image_shape, num_classes, cfg.width, seed).to(resolve_device(cfg.device))
    rows: list[dict] = []
    for r in range(cfg.rounds):
        t0 = time.perf_counter()
        if cfg.clients_per_round:
            selected = sample_clients(len(clients), cfg.clients_per_round, seed, r)
        else:
            selected = list(range(len(clients)))
        states, n_real, n_syn, losses = [], [], [], []
        for k in selected:
            c = clients[k]
            local = copy.deepcopy(model)
            losses.append(local_train(local, c.images, c.labels, syn_images=c.syn_images,
                                      syn_labels=c.syn_labels, syn_weight=cfg.syn_weight,
                                      epochs=cfg.local_epochs, lr=cfg.lr, momentum=cfg.momentum,
                                      batch_size=cfg.batch_size, seed=derive_seed(seed, r, k)))
            states.append(local.state_dict())
            n_real.append(c.num_real)
            n_syn.append(c.num_synthetic)
        info = {"round_idx": r, "client_ids": list(selected), "num_synthetic": n_syn}
        if getattr(agg, "needs_synthetic_model", False) and server_synthetic is not None:
            syn_model = copy.deepcopy(model)
            local_train(syn_model, server_synthetic[0], server_synthetic[1],
                        epochs=cfg.server_epochs, lr=cfg.lr, momentum=cfg.momentum,
                        batch_size=cfg.batch_size, seed=derive_seed(seed, r, 10**6))
            info["synthetic_state"] = syn_model.state_dict()
        if sum(n_real) == 0:  # e.g. the AIGC-only arm: weights by synthetic counts
            new_state = FedAvg()(states, [max(1, v) for v in n_syn])
        else:
            new_state = agg(states, n_real, **info)
        model.load_state_dict(new_state)
        acc, loss = evaluate(model, test_images, test_labels)
        row = {"arm": arm, "round": r, "test_acc": acc, "test_loss": loss,
               "train_loss": float(np.nanmean(losses)), "clients": len(selected),
               "real_examples": int(sum(n_real)), "synthetic_examples": int(sum(n_syn)),
               "round_time_s": time.perf_counter() - t0}
        lam = getattr(agg, "lam", None)
        if callable(lam):
            row["blend_lambda"] = lam(r) if "synthetic_state" in info else 0.0
        rows.append(row)
        if on_round:
            on_round(row)
    return rows, model
