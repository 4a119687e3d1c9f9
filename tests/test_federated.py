"""Partitions, client sampling and FedAvg."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.federated import (  # noqa: E402
    Aggregator,
    FedAvg,
    aggregate_numpy,
    dirichlet_partition,
    iid_partition,
    partition_stats,
    sample_clients,
    shard_partition,
)

LABELS = np.repeat(np.arange(10), 50)


def _check_cover(parts, n):
    allidx = np.concatenate(parts)
    assert allidx.size == n and np.unique(allidx).size == n


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_dirichlet_partition_covers_and_is_seeded(alpha):
    p1 = dirichlet_partition(LABELS, 8, alpha, seed=3, min_size=5)
    p2 = dirichlet_partition(LABELS, 8, alpha, seed=3, min_size=5)
    _check_cover(p1, LABELS.size)
    assert all(np.array_equal(a, b) for a, b in zip(p1, p2))
    assert min(p.size for p in p1) >= 5
    p3 = dirichlet_partition(LABELS, 8, alpha, seed=4, min_size=5)
    assert not all(np.array_equal(a, b) for a, b in zip(p1, p3))


def test_dirichlet_skew_depends_on_alpha():
    def skew(alpha):
        h = partition_stats(LABELS, dirichlet_partition(LABELS, 10, alpha, seed=0), 10)
        frac = h / h.sum(1, keepdims=True)
        return frac.max(1).mean()
    assert skew(0.1) > skew(1000.0) + 0.3


def test_shard_partition():
    parts = shard_partition(LABELS, 10, 2, seed=1)
    _check_cover(parts, LABELS.size)
    h = partition_stats(LABELS, parts, 10)
    assert np.all((h > 0).sum(1) <= 3)  # at most 2 shards → ≤ 2 (or 3 at a boundary) classes
    assert [p.size for p in parts] == [50] * 10


def test_iid_and_errors():
    _check_cover(iid_partition(LABELS, 7, seed=0), LABELS.size)
    with pytest.raises(InvalidScenarioError):
        dirichlet_partition(LABELS, 5, 0.0)
    with pytest.raises(InvalidScenarioError):
        dirichlet_partition(LABELS, 1000, 0.5)
    with pytest.raises(InvalidScenarioError):
        shard_partition(LABELS, 10, 0)


def test_sample_clients():
    a = sample_clients(50, 10, seed=1, round_idx=3)
    assert a == sample_clients(50, 10, seed=1, round_idx=3)
    assert len(set(a)) == 10 and a == sorted(a) and all(0 <= c < 50 for c in a)
    assert a != sample_clients(50, 10, seed=1, round_idx=4)
    with pytest.raises(InvalidScenarioError):
        sample_clients(5, 6)


def test_fedavg_weighted_and_no_aliasing():
    s1 = {"lora_A": torch.tensor([1.0, 2.0]), "lora_B": torch.tensor([[0.0]]), "n": torch.tensor(3)}
    s2 = {"lora_A": torch.tensor([3.0, 6.0]), "lora_B": torch.tensor([[4.0]]), "n": torch.tensor(3)}
    agg = FedAvg()
    assert isinstance(agg, Aggregator)
    out = agg([s1, s2], [1, 3])
    assert torch.allclose(out["lora_A"], torch.tensor([2.5, 5.0]))
    assert torch.allclose(out["lora_B"], torch.tensor([[3.0]]))
    assert out["n"].item() == 3
    for k in out:
        assert out[k].data_ptr() not in (s1[k].data_ptr(), s2[k].data_ptr())
    out["lora_A"] += 100
    assert s1["lora_A"].tolist() == [1.0, 2.0]
    single = agg([s1], [5])
    assert torch.equal(single["lora_A"], s1["lora_A"]) and single["lora_A"].data_ptr() != s1["lora_A"].data_ptr()


def test_fedavg_of_factors_is_not_average_of_products():
    a1, b1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0], [0.0]])
    a2, b2 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0], [1.0]])
    out = FedAvg()([{"A": a1, "B": b1}, {"A": a2, "B": b2}], [1, 1])
    assert not torch.allclose(out["B"] @ out["A"], (b1 @ a1 + b2 @ a2) / 2)


def test_fedavg_errors_and_numpy_seam():
    with pytest.raises(InvalidScenarioError):
        FedAvg()([], [])
    with pytest.raises(InvalidScenarioError):
        FedAvg()([{"a": torch.ones(1)}, {"b": torch.ones(1)}], [1, 1])
    with pytest.raises(InvalidScenarioError):
        FedAvg()([{"a": torch.ones(1)}], [0])
    out = aggregate_numpy([{"w": np.ones(3, np.float32)}, {"w": np.zeros(3, np.float32)}], [1, 1])
    assert out["w"].dtype == np.float32 and np.allclose(out["w"], 0.5)

    class Median:
        def __call__(self, states, num_examples, **info):
            return {k: torch.stack([s[k] for s in states]).median(0).values for k in states[0]}
    out = aggregate_numpy([{"w": np.full(2, v, np.float32)} for v in (1, 2, 9)], [1, 1, 1], Median())
    assert np.allclose(out["w"], 2)
