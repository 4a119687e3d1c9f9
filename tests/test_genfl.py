"""GenFL: workflow, top-ups, generator determinism, aggregation policies, sources, CLI (fast)."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ste_opt.errors import InvalidScenarioError, SolverError  # noqa: E402
from ste_opt.learning_hooks.federated import FedAvg  # noqa: E402
from ste_opt.learning_hooks.genfl.aggregation import (  # noqa: E402
    SyntheticAwareFedAvg,
    SyntheticModelBlend,
    make_aggregator,
)
from ste_opt.learning_hooks.genfl.data import split_digits_for_genfl  # noqa: E402
from ste_opt.learning_hooks.genfl.fl import FLConfig, run_federated  # noqa: E402
from ste_opt.learning_hooks.genfl.generator import (  # noqa: E402
    FlowMatchingGenerator,
    GeneratorConfig,
)
from ste_opt.learning_hooks.genfl.metrics import (  # noqa: E402
    frechet_distance,
    memorisation_report,
)
from ste_opt.learning_hooks.genfl.sources import (  # noqa: E402
    ArraySource,
    DiffusersSource,
    FlowMatchingSource,
    SyntheticPool,
)
from ste_opt.learning_hooks.genfl.workflow import (  # noqa: E402
    GenFLClient,
    GenFLServer,
    LabelReport,
    label_histogram,
    run_data_step,
    topup_counts,
)

TINY = GeneratorConfig(ch=8, edim=32, train_steps=40, batch_size=32, warmup_steps=10,
                       sample_steps=4, cfg_scale=1.0, seed=3)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def split():
    return split_digits_for_genfl(server_per_class=20, test_size=300, seed=0)


@pytest.fixture(scope="module")
def tiny_generator(split):
    torch.set_num_threads(1)
    return FlowMatchingGenerator.train(split.server_images[:200], split.server_labels[:200], 10, TINY)


class CodedSource:
    """Fake source: image value encodes (class, seed) so tests can check identity of samples."""

    num_classes = 3
    image_shape = (1, 2, 2)

    def generate(self, labels, seed):
        labels = np.asarray(labels)
        rng = np.random.default_rng(seed)
        noise = rng.random(labels.size).astype(np.float32)
        return (labels[:, None, None, None] * 1.0 + noise[:, None, None, None]
                + np.zeros((labels.size, 1, 2, 2), np.float32)).astype(np.float32)


# --------------------------------------------------------------------------- data split

def test_split_is_disjoint_and_seeded(split):
    s, c, t = (set(v.tolist()) for v in (split.server_index, split.client_index, split.test_index))
    assert not (s & c) and not (s & t) and not (c & t)
    assert len(s | c | t) == 1797
    assert np.all(np.bincount(split.server_labels, minlength=10) == 20)
    again = split_digits_for_genfl(server_per_class=20, test_size=300, seed=0)
    assert np.array_equal(again.server_index, split.server_index)
    other = split_digits_for_genfl(server_per_class=20, test_size=300, seed=1)
    assert not np.array_equal(other.server_index, split.server_index)


# --------------------------------------------------------------------------- workflow

def _clients(split, n=4):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        classes = rng.choice(10, size=2 + k % 3, replace=False)
        idx = np.flatnonzero(np.isin(split.client_labels, classes))[: 10 + 7 * k]
        out.append(GenFLClient(k, split.client_images[idx], split.client_labels[idx], 10))
    return out


def test_only_label_histograms_leave_a_client(split):
    clients = _clients(split)
    server = GenFLServer(10)
    pool = SyntheticPool(ArraySource(split.server_images, split.server_labels, 10), seed=0)
    run_data_step(clients, server, pool)
    assert [f.name for f in dataclasses.fields(LabelReport)] == ["client_id", "histogram"]
    assert len(server.uplink) == len(clients)
    for msg, client in zip(server.uplink, clients, strict=True):
        assert type(msg) is LabelReport
        assert len(msg.histogram) == 10 and all(type(v) is int for v in msg.histogram)
        assert list(msg.histogram) == np.bincount(client.labels, minlength=10).tolist()
    with pytest.raises(InvalidScenarioError):  # anything but a LabelReport is refused
        server.plan([clients[0].images])
    with pytest.raises(InvalidScenarioError):
        server.plan([LabelReport(9, (1, 2, 3))])


def test_topup_fill_max_balances_each_client():
    h = np.array([[5, 0, 2, 0], [1, 1, 1, 1], [0, 0, 0, 7]])
    m = topup_counts(h)
    assert m.tolist() == [[0, 5, 3, 5], [0, 0, 0, 0], [7, 7, 7, 0]]
    assert np.all((h + m) == h.max(1, keepdims=True))
    assert topup_counts(h, "fill_to", target=3).tolist() == [[0, 3, 1, 3], [2, 2, 2, 2], [3, 3, 3, 0]]


def test_topup_ratio_waterfills_and_cap():
    h = np.array([[6, 2, 0, 0], [3, 3, 3, 3]])
    m = topup_counts(h, "ratio", ratio=0.5)
    assert m.sum(1).tolist() == [4, 6]
    assert m[0].tolist() == [0, 0, 2, 2]
    assert (h[1] + m[1]).max() - (h[1] + m[1]).min() <= 1
    capped = topup_counts(h, "fill_max", max_ratio=0.5)
    assert np.all(capped.sum(1) <= 0.5 * h.sum(1))
    with pytest.raises(InvalidScenarioError):
        topup_counts(h, "nope")
    with pytest.raises(InvalidScenarioError):
        topup_counts(h, "fill_to")


def test_ship_gives_right_counts_and_distinct_images():
    pool = SyntheticPool(CodedSource(), seed=5, chunk=4)
    server = GenFLServer(3)
    topups = np.array([[3, 0, 5], [2, 6, 0], [1, 1, 1]])
    shipped = server.ship(topups, pool)
    seen = []
    for (imgs, labs), row in zip(shipped, topups, strict=True):
        assert np.bincount(labs, minlength=3).tolist() == row.tolist()
        assert np.all(np.floor(imgs[:, 0, 0, 0]) == labs)  # image class matches its label
        seen += imgs[:, 0, 0, 0].tolist()
    assert len(set(seen)) == len(seen) == topups.sum()


def test_pool_is_order_independent():
    a = SyntheticPool(CodedSource(), seed=1, chunk=4)
    b = SyntheticPool(CodedSource(), seed=1, chunk=4)
    x = a.take(2, 3, 6)
    b.take(1, 0, 9)
    assert np.array_equal(b.take(2, 3, 6), x)
    assert np.array_equal(np.concatenate([a.take(2, 0, 5), a.take(2, 5, 4)]), a.take(2, 0, 9))


# --------------------------------------------------------------------------- generator

def test_tiny_generator_trains_and_is_deterministic(split, tiny_generator, tmp_path):
    info = tiny_generator.info
    assert info["steps"] == TINY.train_steps
    assert info["loss_last"] < info["loss_first"]
    labels = np.arange(10)
    a = tiny_generator.sample(labels, seed=7)
    b = tiny_generator.sample(labels, seed=7)
    c = tiny_generator.sample(labels, seed=8)
    assert a.shape == (10, 1, 8, 8) and np.isfinite(a).all()
    assert a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    again = FlowMatchingGenerator.train(split.server_images[:200], split.server_labels[:200], 10, TINY)
    assert np.allclose(again.sample(labels, seed=7), a, atol=1e-5)
    path = tiny_generator.save(tmp_path / "g.pt")
    loaded = FlowMatchingGenerator.load(path)
    assert np.allclose(loaded.sample(labels, seed=7), a, atol=1e-6)
    assert loaded.config == tiny_generator.config


def test_generator_load_refuses_foreign_file(tmp_path):
    p = tmp_path / "x.pt"
    torch.save({"format": "other"}, p)
    with pytest.raises(SolverError):
        FlowMatchingGenerator.load(p)
    with pytest.raises(FileNotFoundError):
        FlowMatchingGenerator.load(tmp_path / "missing.pt")


def test_source_labels_are_checked(tiny_generator):
    src = FlowMatchingSource(tiny_generator)
    assert src.generate([0, 9], seed=0).shape == (2, 1, 8, 8)
    with pytest.raises(InvalidScenarioError):
        src.generate([10], seed=0)


# --------------------------------------------------------------------------- aggregation

def _states(k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g),
             "count": torch.tensor(k)} for _ in range(k)]


def _combo(states, coef):
    return {key: sum(float(c) * s[key].double() for c, s in zip(coef, states, strict=True)).float()
            for key in ("w", "b")}


def test_weighted_policy_is_convex_and_reduces_to_fedavg():
    states = _states()
    n, m = [10, 30, 60], [50, 0, 10]
    for gamma in (0.0, 0.3, 1.0):
        agg = SyntheticAwareFedAvg(gamma)
        coef = agg.weights(n, m)
        assert np.all(coef >= 0) and coef.sum() == pytest.approx(1.0)
        out = agg(states, n, num_synthetic=m)
        ref = _combo(states, coef)
        for key in ("w", "b"):
            assert torch.allclose(out[key], ref[key], atol=1e-6)
            stack = torch.stack([s[key] for s in states])
            assert torch.all(out[key] <= stack.max(0).values + 1e-6)
            assert torch.all(out[key] >= stack.min(0).values - 1e-6)
    fedavg_real = FedAvg()(states, n)
    fedavg_union = FedAvg()(states, [a + b for a, b in zip(n, m, strict=True)])
    for key in ("w", "b"):
        assert torch.allclose(SyntheticAwareFedAvg(0.0)(states, n, num_synthetic=m)[key], fedavg_real[key])
        assert torch.allclose(SyntheticAwareFedAvg(1.0)(states, n, num_synthetic=m)[key], fedavg_union[key])
        assert torch.allclose(SyntheticAwareFedAvg(0.7)(states, n)[key], fedavg_real[key])
    assert not torch.allclose(SyntheticAwareFedAvg(1.0)(states, n, num_synthetic=m)["w"], fedavg_real["w"])
    with pytest.raises(InvalidScenarioError):
        SyntheticAwareFedAvg(1.5)


def test_blend_policy_is_convex_decays_and_reduces_to_fedavg():
    states = _states()
    syn = _states(1, seed=9)[0]
    n = [10, 30, 60]
    agg = SyntheticModelBlend(lambda0=0.5, decay=0.9)
    assert agg.lam(0) == pytest.approx(0.5) and agg.lam(3) == pytest.approx(0.5 * 0.9 ** 3)
    for r in (0, 5):
        coef = agg.weights(n, r)
        assert np.all(coef >= 0) and coef.sum() == pytest.approx(1.0)
        out = agg(states, n, synthetic_state=syn, round_idx=r)
        ref = _combo([*states, syn], coef)
        for key in ("w", "b"):
            assert torch.allclose(out[key], ref[key], atol=1e-6)
    fedavg = FedAvg()(states, n)
    for key in ("w", "b"):
        assert torch.allclose(SyntheticModelBlend(0.0)(states, n, synthetic_state=syn)[key], fedavg[key])
        assert torch.allclose(agg(states, n, round_idx=2)[key], fedavg[key])  # no w_syn given
    assert not torch.allclose(agg(states, n, synthetic_state=syn)["w"], fedavg["w"])
    before = [s["w"].clone() for s in states]
    out = agg(states, n, synthetic_state=syn)
    out["w"].add_(1.0)
    assert all(torch.equal(s["w"], b) for s, b in zip(states, before, strict=True))


def test_make_aggregator():
    assert isinstance(make_aggregator("fedavg"), FedAvg)
    assert isinstance(make_aggregator("weighted", gamma=0.5), SyntheticAwareFedAvg)
    assert isinstance(make_aggregator("blend"), SyntheticModelBlend)
    with pytest.raises(InvalidScenarioError):
        make_aggregator("median")


# --------------------------------------------------------------------------- sources

def test_array_source_file_and_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.uniform(-1, 1, (12, 1, 8, 8)).astype(np.float32)
    labels = np.repeat(np.arange(3), 4)
    path = ArraySource(imgs, labels).save(tmp_path / "syn.npz")
    src = ArraySource.from_file(path, num_classes=3)
    out = src.generate([0, 0, 2, 2, 2, 2, 2], seed=1)  # class 2 asked 5 times: cycles
    assert out.shape == (7, 1, 8, 8)
    assert np.array_equal(out, src.generate([0, 0, 2, 2, 2, 2, 2], seed=1))
    assert all(any(np.array_equal(o, i) for i in imgs[labels == 2]) for o in out[2:])
    for c in range(2):
        (tmp_path / "f" / str(c)).mkdir(parents=True)
        Image.fromarray(np.full((16, 16, 3), 255 * c, np.uint8)).save(tmp_path / "f" / str(c) / "a.png")
    folder = ArraySource.from_folder(tmp_path / "f", (1, 8, 8))
    got = folder.generate([0, 1], seed=0)
    assert got.shape == (2, 1, 8, 8)
    assert np.allclose(got[0], -1) and np.allclose(got[1], 1, atol=1e-3)
    with pytest.raises(InvalidScenarioError):
        ArraySource(imgs, labels, num_classes=4).generate([3], seed=0)


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is not None, reason="diffusers installed")
def test_diffusers_missing_is_a_clear_error(tmp_path):
    with pytest.raises(SolverError, match="diffusers"):
        DiffusersSource(tmp_path, (1, 8, 8), 10)


def test_diffusers_plumbing_with_fake_pipeline():
    calls = []

    class Out:
        def __init__(self, images):
            self.images = images

    class FakeClassPipe:
        def __call__(self, class_labels, num_inference_steps, generator, output_type):
            calls.append(("class", list(class_labels), output_type))
            v = torch.rand(len(class_labels), 16, 16, 3, generator=generator).numpy()
            return Out(v)

    class FakeTextPipe:
        def __call__(self, prompt, num_inference_steps, generator, output_type, guidance_scale=7.5):
            calls.append(("prompt", list(prompt), guidance_scale))
            return Out(np.ones((len(prompt), 16, 16, 3), np.float32))

    src = DiffusersSource(None, (1, 8, 8), 10, pipeline=FakeClassPipe(), batch_size=2)
    assert src.conditioning == "class_labels"
    a = src.generate([3, 1, 4], seed=0)
    assert a.shape == (3, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, src.generate([3, 1, 4], seed=0))
    assert calls[0] == ("class", [3, 1], "np") and calls[1] == ("class", [4], "np")
    txt = DiffusersSource(None, (3, 4, 4), 2, class_names=["cat", "dog"], pipeline=FakeTextPipe(),
                          guidance_scale=2.0)
    assert txt.conditioning == "prompt"
    out = txt.generate([1], seed=0)
    assert out.shape == (1, 3, 4, 4) and np.allclose(out, 1.0)
    assert calls[-1] == ("prompt", ["a photo of a dog"], 2.0)


# --------------------------------------------------------------------------- metrics and FL

def test_frechet_and_memorisation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5))
    b = rng.normal(size=(400, 5))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) < 0.5 < frechet_distance(a, b + 2.0)
    train = rng.uniform(-1, 1, (50, 1, 4, 4))
    test = rng.uniform(-1, 1, (30, 1, 4, 4))
    copies = memorisation_report(train[:20], train, test)
    assert copies["nn_median_synthetic"] == pytest.approx(0.0, abs=1e-5)
    assert copies["near_copy_fraction"] == 1.0
    fresh = memorisation_report(rng.uniform(-1, 1, (30, 1, 4, 4)), train, test)
    assert fresh["near_copy_fraction"] == 0.0


def test_fl_loop_runs_all_policies(split):
    clients = _clients(split, 3)
    pool = SyntheticPool(ArraySource(split.server_images, split.server_labels, 10), seed=0)
    run_data_step(clients, GenFLServer(10, "fill_to", target=6), pool)
    cfg = FLConfig(rounds=2, local_epochs=1, width=4, syn_weight=0.3)
    s0 = pool.balanced(3)
    for agg in (make_aggregator("fedavg"), make_aggregator("weighted", gamma=0.5),
                make_aggregator("blend")):
        rows, model = run_federated(clients, split.test_images[:50], split.test_labels[:50], cfg,
                                    agg, seed=1, arm="genfl", server_synthetic=s0)
        assert [r["round"] for r in rows] == [0, 1]
        assert all(0 <= r["test_acc"] <= 1 for r in rows)
        assert rows[0]["synthetic_examples"] == sum(c.num_synthetic for c in clients) > 0
    assert rows[0]["blend_lambda"] == pytest.approx(0.5)
    again, _ = run_federated(clients, split.test_images[:50], split.test_labels[:50], cfg,
                             make_aggregator("blend"), seed=1, arm="genfl", server_synthetic=s0)
    assert [r["test_acc"] for r in again] == [r["test_acc"] for r in rows]


def test_label_histogram_checks():
    assert label_histogram([0, 2, 2], 3).tolist() == [1, 0, 2]
    with pytest.raises(InvalidScenarioError):
        label_histogram([3], 3)


def test_cli_tiny_run(tmp_path):
    from ste_opt.cli import main

    out = tmp_path / "run"
    rc = main(["genfl", "--rounds", "1", "--local-epochs", "1", "--gen-steps", "5", "--gen-ch", "8",
               "--gen-batch-size", "16", "--sample-steps", "2", "--topup", "ratio",
               "--topup-ratio", "0.1", "--aigc-per-class", "4", "--no-quality", "--threads", "1",
               "--generator-path", str(tmp_path / "g.pt"), "-o", str(out)])
    assert rc == 0
    for name in ("config.yaml", "history.csv", "summary.json", "accuracy.png", "samples.png"):
        assert (out / name).is_file(), name
    lines = (out / "history.csv").read_text().splitlines()
    assert {ln.split(",")[0] for ln in lines[1:]} == {"real_only", "aigc_only", "genfl"}
    assert (tmp_path / "g.pt").is_file()
    assert main(["genfl", "--alpha", "-1", "--rounds", "1", "--arms", "real_only",
                 "-o", str(tmp_path / "bad")]) == 2


@pytest.mark.slow
def test_generator_quality_above_chance(split):
    """A 300-step default-size generator makes digits a referee recognises (slow: ~20 s)."""
    from ste_opt.learning_hooks.genfl.metrics import generator_quality, train_referee

    gen = FlowMatchingGenerator.train(split.server_images, split.server_labels, 10,
                                      GeneratorConfig(train_steps=300))
    labels = np.repeat(np.arange(10), 50)
    samples = gen.sample(labels, seed=0)
    referee = train_referee(split.client_images, split.client_labels, 10, epochs=10)
    q = generator_quality(samples, labels, referee=referee, generator_train=split.server_images,
                          real_reference=split.client_images, test_images=split.test_images,
                          test_labels=split.test_labels)
    assert q["referee_accuracy_on_samples"] > 0.8
    assert q["near_copy_fraction"] < 0.05


def test_run_experiment_with_npz_source(split, tmp_path):
    from ste_opt.learning_hooks.genfl.run import GenFLRunConfig, run_experiment

    npz = ArraySource(split.server_images, split.server_labels, 10).save(tmp_path / "syn.npz")
    cfg = GenFLRunConfig(source=f"npz:{npz}", arms=("genfl",), aggregation="weighted",
                         topup="ratio", topup_ratio=0.2, fl=FLConfig(rounds=1, local_epochs=1))
    summary = run_experiment(cfg, tmp_path / "run", quality=False, log=lambda *_: None)
    assert summary["generator"]["backend"] == "array"
    assert 0 < summary["synthetic_shipped"] <= 0.2 * 997 + 10
    assert set(summary["final_accuracy"]) == {"genfl"}


def test_run_experiment_writes_history_as_it_goes(split, tmp_path):
    """history.csv holds every finished round of every arm while the run is still going."""
    import csv

    from ste_opt.learning_hooks.genfl.run import GenFLRunConfig, run_experiment

    npz = ArraySource(split.server_images, split.server_labels, 10).save(tmp_path / "syn.npz")
    cfg = GenFLRunConfig(source=f"npz:{npz}", arms=("real_only", "genfl"), topup="ratio",
                         topup_ratio=0.2, fl=FLConfig(rounds=2, local_epochs=1))
    seen = []

    def log(msg: str) -> None:  # called after each arm finishes
        path = tmp_path / "run" / "history.csv"
        if msg.startswith(("real_only:", "genfl:")):
            with path.open() as fh:
                seen.append([r["arm"] for r in csv.DictReader(fh)])

    run_experiment(cfg, tmp_path / "run", quality=False, log=log)
    assert seen == [["real_only"] * 2, ["real_only"] * 2 + ["genfl"] * 2]


@pytest.mark.parametrize("change, field", [
    (dict(alpha=-1.0), "alpha"), (dict(alpha=0.0), "alpha"), (dict(topup="nope"), "topup"),
    (dict(aggregation="nope"), "aggregation"), (dict(aggregation="blend", lambda0=2.0), None),
    (dict(topup_ratio=-0.5), "topup_ratio"), (dict(partition="shards", shards_per_client=0),
                                               "shards_per_client"),
])
def test_run_config_is_checked_before_any_training(change, field):
    from ste_opt.learning_hooks.genfl.run import GenFLRunConfig

    with pytest.raises(InvalidScenarioError) as err:
        GenFLRunConfig(**change).validate()
    if field is not None:
        assert err.value.field == field
