"""SplitFedTrainer: round loop, exact bits, schedules/exclusion, aggregation hooks, memory,
checkpoint/resume, FedLoRA, CLI."""
import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.cli import main  # noqa: E402
from ste_opt.learning_hooks.config import load_config, merge  # noqa: E402
from ste_opt.learning_hooks.data import load_splits  # noqa: E402
from ste_opt.learning_hooks.federated import FedAvg  # noqa: E402
from ste_opt.learning_hooks.roles import frame, unframe  # noqa: E402
from ste_opt.learning_hooks.schedule import ClientPlan, StaticSchedule  # noqa: E402
from ste_opt.learning_hooks.trainer import SplitFedTrainer  # noqa: E402
from ste_opt.model.payload import payload_bits  # noqa: E402

TINY = {"name": "tiny", "data": {"image_size": 16},
        "model": {"patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 2, "cut_layer": 2,
                  "checkpoint": "none"},
        "lora": {"rank": 2, "alpha": 4},
        "federation": {"num_clients": 4, "clients_per_round": 3, "local_steps": 2, "batch_size": 8,
                       "rounds": 2, "min_client_size": 8},
        "compression": {"tokens_kept": 10, "bits": 4},
        "eval": {"batch_size": 512}}


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", image_size=16, seed=0)


def _cfg(**upd):
    return merge(TINY, upd)


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_round_loop_exact_bits_and_outputs(tmp_path, splits):
    tr = SplitFedTrainer(_cfg(), run_dir=tmp_path, progress=False, splits=splits)
    assert tr.num_patches == 16 and tr.embed_dim == 32
    hist = tr.fit()
    assert [r["round"] for r in hist] == [0, 1]
    per_upload = payload_bits(8, 10, 32, 4)
    for r in hist:
        assert r["uplink_bits"] == r["steps"] * per_upload
        assert r["downlink_bits"] == r["steps"] * payload_bits(8, 10, 32, 32)
        assert 0 <= r["test_acc"] <= 1 and r["client_peak_bytes"] > 0 and r["server_peak_bytes"] > 0
        assert r["selection"] is True
    rows = _read(tmp_path / "clients.csv")
    assert len(rows) == 6 and all(r["bits_match"] == "True" for r in rows)
    assert len(_read(tmp_path / "history.csv")) == 2
    assert load_config(tmp_path / "config.yaml") == tr.config
    assert (tmp_path / "checkpoint.safetensors").is_file()


def test_no_selection_and_grad_bits(splits):
    cfg = _cfg(compression={"tokens_kept": None, "bits": 32, "grad_bits": 8})
    tr = SplitFedTrainer(cfg, run_dir=False, progress=False, splits=splits)
    r = tr.run_round(0)
    assert r["selection"] is False
    assert r["uplink_bits"] == r["steps"] * payload_bits(8, 16, 32, 32, extra_tokens=1)
    assert r["downlink_bits"] == r["steps"] * payload_bits(8, 16, 32, 8, extra_tokens=1)


class _Sched:
    def __init__(self):
        self.calls = []

    def plan(self, round_idx, client_ids, trainer):
        self.calls.append((round_idx, list(client_ids)))
        out = {c: ClientPlan(4 + c, 8, {"latency_s": 0.5, "predicted_bits": 123}) for c in client_ids}
        out[client_ids[0]] = None
        return out


def test_schedule_exclusion_and_predictions(tmp_path, splits):
    sched = _Sched()
    tr = SplitFedTrainer(_cfg(federation={"rounds": 1}), schedule=sched, run_dir=tmp_path,
                         progress=False, splits=splits)
    hist = tr.fit()
    assert sched.calls[0][0] == 0 and hist[0]["excluded"] == 1 and hist[0]["clients"] == 2
    rows = _read(tmp_path / "clients.csv")
    ex = [r for r in rows if r["excluded"] == "True"]
    assert len(ex) == 1 and ex[0]["uplink_bits"] == "0"
    for r in rows:
        if r["excluded"] == "False":
            k = int(r["tokens_kept"])
            assert int(r["uplink_bits"]) == int(r["steps"]) * payload_bits(8, k, 32, 8)
            assert r["pred_latency_s"] == "0.5" and r["pred_predicted_bits"] == "123"


def test_aggregator_and_data_hook(splits):
    seen = {}

    class Spy(FedAvg):
        def __call__(self, states, num_examples, **info):
            seen["n"] = list(num_examples)
            seen["info"] = info
            seen["keys"] = sorted(states[0])
            return super().__call__(states, num_examples, **info)

    def hook(cid, x, y):
        return torch.cat([x, x[:5]]), torch.cat([y, y[:5]])

    base = SplitFedTrainer(_cfg(), run_dir=False, progress=False, splits=splits)
    tr = SplitFedTrainer(_cfg(), aggregator=Spy(), client_data_hook=hook, run_dir=False,
                         progress=False, splits=splits)
    assert all(tr.client_sizes[c] == base.client_sizes[c] + 5 for c in range(4))
    tr.run_round(0)
    assert seen["info"]["round_idx"] == 0 and len(seen["n"]) == 3
    assert seen["n"] == [tr.client_sizes[c] for c in seen["info"]["client_ids"]]
    assert any(k.startswith("client/") for k in seen["keys"]) and any(k.startswith("server/") for k in seen["keys"])
    x, y = splits.train.images[:3], splits.train.labels[:3]
    tr.set_client_data(0, x, y)
    assert tr.client_sizes[0] == 3 and tr.clients[0].loader.batch_size == 3
    tr.set_client_data(0, splits.train.images[:40], splits.train.labels[:40])
    assert tr.clients[0].loader.batch_size == 8
    tr.run_round(1)


def test_resume_equals_uninterrupted(tmp_path, splits):
    cfg = _cfg(federation={"rounds": 3})
    full = SplitFedTrainer(cfg, run_dir=tmp_path / "a", progress=False, splits=splits)
    h_full = full.fit()
    part = SplitFedTrainer(cfg, run_dir=tmp_path / "b", progress=False, splits=splits)
    part.fit(rounds=2)
    resumed = SplitFedTrainer(cfg, run_dir=tmp_path / "b", progress=False, splits=splits)
    h_res = resumed.fit(resume=True)
    assert len(h_res) == 3
    assert [r["test_acc"] for r in h_res] == [r["test_acc"] for r in h_full]
    for k, v in full.server_global.items():
        np.testing.assert_array_equal(v, resumed.server_global[k])
    assert len(_read(tmp_path / "b" / "clients.csv")) == 9


def test_fedlora_and_memory(splits):
    split = SplitFedTrainer(_cfg(), run_dir=False, progress=False, splits=splits)
    rs = split.run_round(0)
    frozen = SplitFedTrainer(_cfg(lora={"client": False}), run_dir=False, progress=False, splits=splits)
    rf = frozen.run_round(0)
    fed = SplitFedTrainer(_cfg(mode="fedlora"), run_dir=False, progress=False, splits=splits)
    rl = fed.run_round(0)
    assert rl["uplink_bits"] == 0 and rl["uplink_adapter_bits"] > rs["uplink_adapter_bits"]
    assert rl["client_peak_bytes"] > rs["client_peak_bytes"] > rf["client_peak_bytes"]
    assert rf["downlink_bits"] == 0  # frozen client: no gradient sent back
    rows = [r for r in frozen.client_rows if not r["excluded"]]
    assert all(r["client_activations_bytes"] == 0 for r in rows)
    assert all(r["client_activations_bytes"] > 0 for r in split.client_rows if not r["excluded"])


def test_cls_profiles(splits):
    tr = SplitFedTrainer(_cfg(), run_dir=False, progress=False, splits=splits)
    prof = tr.client_cls_profiles([0, 2], n_batches=1)
    assert set(prof) == {0, 2}
    for v in prof.values():
        assert v.shape == (16,) and np.all(np.diff(v) <= 1e-12) and 0 < v.sum() <= 8 + 1e-6


def test_frame_roundtrip():
    h, b = unframe(frame({"a": 1, "labels": [1, 2]}, b"xyz"))
    assert h == {"a": 1, "labels": [1, 2]} and b == b"xyz"


def test_static_schedule():
    s = StaticSchedule(5, 8)
    assert s.plan(0, [1, 3], None) == {1: ClientPlan(5, 8), 3: ClientPlan(5, 8)}
    with pytest.raises(ValueError):
        StaticSchedule(5, 33)


def test_cli_train_and_pretrain(tmp_path):
    import yaml
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text(yaml.safe_dump(merge(TINY, {"federation": {"num_clients": 3, "clients_per_round": 2,
                                                                    "local_steps": 1, "rounds": 1}})))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfgfile), "--set", "compression.bits=2", "-o", str(out),
                 "--no-progress"]) == 0
    assert load_config(out / "config.yaml")["compression"]["bits"] == 2
    assert main(["train", "--config", str(cfgfile), "--set", "nope.x=1"]) == 2
    ck = tmp_path / "bb.pt"
    assert main(["pretrain", "--config", str(cfgfile), "--epochs", "1", "-o", str(ck), "--no-progress",
                 "--set", "pretrain.batch_size=256"]) == 0
    assert ck.is_file()
    out2 = tmp_path / "run2"
    assert main(["train", "--config", str(cfgfile), "--set", f"model.checkpoint={ck}", "-o", str(out2),
                 "--no-progress"]) == 0
    assert main(["train", "--config", str(cfgfile), "--set", "model.checkpoint=/nonexistent.pt",
                 "-o", str(tmp_path / "r3"), "--no-progress"]) == 2


@pytest.mark.parametrize("override, field", [
    ("federation.rounds=0", "federation.rounds"), ("federation.batch_size=-2", "federation.batch_size"),
    ("optim.lr=0", "optim.lr"), ("federation.alpha=-1", "federation.alpha"),
    ("model.cut_layer=99", "model.cut_layer"), ("lora.rank=0", "lora.rank"),
    ("data.test_fraction=1.5", "data.test_fraction"),
])
def test_config_ranges_are_refused_by_name(override, field):
    from ste_opt.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config("demo", [override])
    assert err.value.key == field
