"""Devices, mixed precision and compile options of the trainer (CPU only in CI)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.errors import InvalidScenarioError  # noqa: E402
from ste_opt.learning_hooks.config import load_config  # noqa: E402
from ste_opt.learning_hooks.data import load_splits  # noqa: E402
from ste_opt.learning_hooks.device import Runtime, resolve_device, runtime_from_config  # noqa: E402
from ste_opt.learning_hooks.trainer import SplitFedTrainer  # noqa: E402


def test_resolve_device_and_config_keys():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else
                         "mps" if torch.backends.mps.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidScenarioError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(InvalidScenarioError, match="device"):
        load_config(None, ["device=gpu"])
    with pytest.raises(InvalidScenarioError, match="amp"):
        load_config(None, ["amp=fp8"])
    # YAML reads a bare `off` as false: normalised back
    assert load_config(None, ["amp=off"])["amp"] == "off"
    assert load_config(None, ["amp=bf16", "server_device=cpu"])["amp"] == "bf16"
    cfg = load_config(None, ["device=cpu", "server_device=cpu", "amp=fp16"])
    assert runtime_from_config(cfg, "server").amp == "fp16"
    assert Runtime("cpu", "fp16").scaler().is_enabled() and not Runtime("cpu", "bf16").scaler().is_enabled()


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", image_size=16, seed=0)


def _cfg(amp, **extra):
    cfg = {"name": "amp", "amp": amp, "device": "cpu", "data": {"image_size": 16},
           "model": {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, "cut_layer": 1,
                     "checkpoint": "random"},
           "federation": {"num_clients": 4, "clients_per_round": 2, "batch_size": 8,
                          "local_steps": 2, "rounds": 1},
           "compression": {"tokens_kept": 8, "bits": 4}}
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_round_keeps_payload_exact(splits, amp):
    tr = SplitFedTrainer(_cfg(amp), run_dir=False, progress=False, splits=splits)
    assert tr.client_runtime.amp == amp and tr.server_runtime.device.type == "cpu"
    row = tr.run_round(0)
    rows = [r for r in tr.client_rows if not r["excluded"]]
    assert rows and all(r["bits_match"] for r in rows)     # packed bits == the formula
    assert np.isfinite(row["train_loss"]) and 0 <= row["test_acc"] <= 1
    assert tr.server._scaler.is_enabled() == (amp == "fp16")
    # adapters stay float32 whatever the autocast dtype
    assert all(v.dtype == np.float32 for v in tr.server_global.values())


def test_device_keyword_overrides_config(splits):
    tr = SplitFedTrainer(_cfg("off", device="auto"), run_dir=False, progress=False, splits=splits,
                         device="cpu", amp="bf16")
    assert tr.config["device"] == "cpu" and tr.config["amp"] == "bf16"
    assert next(tr.model.client.parameters()).device.type == "cpu"


def test_compile_option_wraps_without_changing_state(splits):
    tr = SplitFedTrainer(_cfg("off", compile=True), run_dir=False, progress=False, splits=splits)
    fn = tr.client_runtime.compiled(tr.model.client)
    assert fn is not tr.model.client and fn is tr.client_runtime.compiled(tr.model.client)
    assert Runtime("cpu").compiled(tr.model.client) is tr.model.client


def test_tensorboard_scalars_next_to_the_csv(splits, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg("off", output={"tensorboard": True})
    cfg["federation"] = {**cfg["federation"], "rounds": 2}
    tr = SplitFedTrainer(cfg, run_dir=tmp_path / "run", progress=False, splits=splits)
    hist = tr.fit()
    assert (tmp_path / "run" / "history.csv").is_file()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    ev = acc.Scalars("round/test_acc")
    assert [e.step for e in ev] == [0, 1]
    assert ev[-1].value == pytest.approx(hist[-1]["test_acc"])


def test_flower_app_and_ray_backend_take_device_options(tmp_path):
    pytest.importorskip("flwr")
    pytest.importorskip("ray")
    import types

    import yaml

    from ste_opt.learning_hooks.backends.ray_backend import RayBackend
    from ste_opt.learning_hooks.flower_app import client_app

    cfg = _cfg("off", device="auto")
    cfg["federation"] = {**cfg["federation"], "num_clients": 2, "clients_per_round": 2}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ctx = types.SimpleNamespace(run_config={"config": str(path), "device": "cpu", "amp": "bf16"},
                                node_config={"partition-id": 1})
    roles = client_app._ConfigRoles()
    role = roles.role(ctx, roles.client_id(ctx))
    assert role.runtime.amp == "bf16" and role.runtime.device.type == "cpu"
    assert RayBackend(gpus_per_actor=0.25).gpus_per_actor == 0.25
