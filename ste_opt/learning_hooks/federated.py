"""Federation: data partitions, client sampling, and pluggable aggregation (FedAvg by default).

Partitions and sampling are pure NumPy functions of a seed. Aggregation follows the
:class:`Aggregator` protocol on ``torch`` tensors; the byte transport of the backends uses
NumPy dicts (:func:`state_to_numpy`, :func:`numpy_to_state`, :func:`aggregate_numpy`).

LoRA aggregation choice
-----------------------
:class:`FedAvg` averages every tensor of the adapter state separately, LoRA ``A`` and ``B``
included (FedIT style). The average of the products ``B_m A_m`` is *not* the product of the
averages ``(Σ w B)(Σ w A)``: the aggregated update differs from the mean of the client updates by a
cross term that grows with client drift. We keep it because it is what SFL/TSFLora-style code does
(weighted FedAvg of the adapter state dicts), it keeps the rank at r and it costs nothing. Other
rules (e.g. averaging only B with A frozen, FFA-LoRA; stacking, FLoRA; SVD re-factorisation of the
averaged product) can be passed as ``aggregator=`` to the trainer: anything satisfying
:class:`Aggregator` works.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidScenarioError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "Aggregator", "FedAvg", "dirichlet_partition", "shard_partition", "iid_partition",
    "sample_clients", "state_to_numpy", "numpy_to_state", "aggregate_numpy", "partition_stats",
]


# --------------------------------------------------------------------------- partitions
def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_labels(labels, num_clients: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise InvalidScenarioError("labels must be a non-empty 1-D array", field="labels")
    if int(num_clients) < 1:
        raise InvalidScenarioError("num_clients must be >= 1", field="num_clients")
    if int(num_clients) > labels.size:
        raise InvalidScenarioError(
            f"num_clients={num_clients} exceeds the {labels.size} samples", field="num_clients")
    return labels


def iid_partition(labels, num_clients: int, seed=0) -> list[np.ndarray]:
    """Shuffle and split the sample indices into ``num_clients`` near-equal parts."""
    labels = _check_labels(labels, num_clients)
    idx = _rng(seed).permutation(labels.size)
    return [np.sort(p) for p in np.array_split(idx, num_clients)]


def dirichlet_partition(labels, num_clients: int, alpha: float, seed=0,
                        min_size: int = 1, max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed partition: per class, client shares drawn from Dirichlet(α).

    Parameters
    ----------
    labels : array of int, shape (n,)
        Class of every sample.
    num_clients : int
        Number of parts.
    alpha : float
        Concentration; small α → each client holds few classes, large α → near IID.
    seed : int or numpy.random.Generator
    min_size : int
        Redraw until every client holds at least this many samples.

    Returns
    -------
    list of sorted index arrays, disjoint, covering all samples.
    """
    labels = _check_labels(labels, num_clients)
    if not alpha > 0:
        raise InvalidScenarioError(f"alpha must be > 0, got {alpha}", field="alpha")
    if min_size * num_clients > labels.size:
        raise InvalidScenarioError("min_size * num_clients exceeds the number of samples",
                                   field="min_size")
    rng = _rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(num_clients, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * idx.size).astype(int)
            for m, chunk in enumerate(np.split(idx, cuts)):
                parts[m].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(p.size for p in out) >= min_size:
            return out
    raise InvalidScenarioError(
        f"could not draw a Dirichlet(alpha={alpha}) partition with >= {min_size} samples per "
        f"client in {max_tries} tries; raise alpha or lower num_clients", field="alpha")


def shard_partition(labels, num_clients: int, shards_per_client: int = 2, seed=0) -> list[np.ndarray]:
    """Pathological non-IID partition (McMahan et al.): sort by label, cut into
    ``num_clients·shards_per_client`` shards, give each client ``shards_per_client`` random shards."""
    labels = _check_labels(labels, num_clients)
    n_shards = int(num_clients) * int(shards_per_client)
    if shards_per_client < 1 or n_shards > labels.size:
        raise InvalidScenarioError("need 1 <= shards_per_client and num_clients*shards <= samples",
                                   field="shards_per_client")
    rng = _rng(seed)
    order = np.lexsort((rng.random(labels.size), labels))  # by label, random within a label
    shards = np.array_split(order, n_shards)
    perm = rng.permutation(n_shards)
    return [np.sort(np.concatenate([shards[s] for s in perm[m::num_clients]]))
            for m in range(num_clients)]


def partition_stats(labels, parts: Sequence[np.ndarray], num_classes: int | None = None) -> np.ndarray:
    """Per-client label histogram, shape (clients, classes)."""
    labels = np.asarray(labels)
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    return np.stack([np.bincount(labels[p], minlength=k) for p in parts])


def sample_clients(num_clients: int, per_round: int, seed=0, round_idx: int | None = None) -> list[int]:
    """Pick ``per_round`` distinct clients uniformly at random, sorted.

    With ``round_idx`` the draw is a pure function of ``(seed, round_idx)``, so a resumed run
    samples the same clients as an uninterrupted one.
    """
    if not 1 <= per_round <= num_clients:
        raise InvalidScenarioError(f"clients_per_round={per_round} must be in [1, {num_clients}]",
                                   field="clients_per_round")
    rng = np.random.default_rng([int(seed), int(round_idx)]) if round_idx is not None else _rng(seed)
    return sorted(int(i) for i in rng.choice(num_clients, size=per_round, replace=False))


# --------------------------------------------------------------------------- aggregation
@runtime_checkable
class Aggregator(Protocol):
    """Combines client states into one global state.

    ``states[i]`` maps a parameter name to a tensor (the adapter state of client i),
    ``num_examples[i]`` is its weight (local data size). ``info`` carries optional context
    (``round_idx``, ``client_ids``, ...) that an aggregator may ignore. Must not modify the inputs
    and must return tensors that share no storage with them.
    """

    def __call__(self, states: Sequence[Mapping[str, torch.Tensor]],
                 num_examples: Sequence[float], **info: Any) -> dict[str, torch.Tensor]: ...


class FedAvg:
    """Weighted average of every floating tensor (LoRA A and B averaged separately).

    Non-floating tensors (counters, int buffers) are copied from the first state. The result is made
    of fresh tensors: no aliasing with the inputs.
    """

    def __call__(self, states: Sequence[Mapping[str, torch.Tensor]],
                 num_examples: Sequence[float], **info: Any) -> dict[str, torch.Tensor]:
        import torch

        if len(states) == 0:
            raise InvalidScenarioError("FedAvg needs at least one state", field="states")
        if len(states) != len(num_examples):
            raise InvalidScenarioError("states and num_examples differ in length", field="num_examples")
        w = np.asarray(num_examples, dtype=np.float64)
        if np.any(w < 0) or w.sum() <= 0:
            raise InvalidScenarioError("num_examples must be >= 0 with a positive sum",
                                       field="num_examples")
        w = w / w.sum()
        keys = list(states[0].keys())
        for i, s in enumerate(states[1:], 1):
            if set(s.keys()) != set(keys):
                raise InvalidScenarioError(f"state {i} has different keys than state 0", field="states")
        out: dict[str, torch.Tensor] = {}
        for k in keys:
            t0 = states[0][k]
            if not torch.is_floating_point(t0):
                out[k] = t0.detach().clone()
                continue
            acc = torch.zeros_like(t0, dtype=torch.float64)
            for wi, s in zip(w, states):
                acc += float(wi) * s[k].detach().to(torch.float64)
            out[k] = acc.to(t0.dtype)
        return out

    def __repr__(self) -> str:
        return "FedAvg()"


def state_to_numpy(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy a tensor state dict to NumPy arrays (what the transport seam carries)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def numpy_to_state(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_numpy` (fresh tensors)."""
    import torch

    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}


def aggregate_numpy(states: Sequence[Mapping[str, np.ndarray]], num_examples: Sequence[float],
                    aggregator: Aggregator | None = None, **info: Any) -> dict[str, np.ndarray]:
    """The backends' aggregation seam: NumPy dicts in, aggregated NumPy dict out."""
    agg = aggregator if aggregator is not None else FedAvg()
    out = agg([numpy_to_state(s) for s in states], num_examples, **info)
    return state_to_numpy(out)
