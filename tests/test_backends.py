"""Distributed backends: header round trip, Ray == local bit for bit, a failing client is reported
and left out, Flower simulation == local, Ray sweep == serial sweep.

Ray and Flower start-ups are heavy on a 2-core machine: one Ray instance per module (shut down at
the end), tiny models, ``torch.set_num_threads(1)``. The engine tests are marked ``slow``:
``make test`` (the whole suite) runs them, ``make test-fast`` skips them; run only them with
``pytest -m slow tests/test_backends.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

TOY = {"seed": 1, "data": {"image_size": 16},
       "model": {"checkpoint": "random", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
                 "cut_layer": 1},
       "lora": {"rank": 2},
       "federation": {"num_clients": 3, "clients_per_round": 3, "partition": "iid", "local_steps": 3,
                      "batch_size": 4},
       "compression": {"tokens_kept": 6, "bits": 8, "grad_bits": 16},
       "output": {"checkpoint_every": 0}}


@pytest.fixture(scope="module")
def splits():
    from ste_opt.learning_hooks.data import load_splits

    torch.set_num_threads(1)
    return load_splits("digits", None, 16, 0.3, 0.2, 1, None)


def make_trainer(splits, backend="local", config=None):
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    torch.set_num_threads(1)
    return SplitFedTrainer(config or TOY, backend=backend, run_dir=False, progress=False, splits=splits)


def adapters(tr) -> dict[str, np.ndarray]:
    out = {f"client/{k}": v for k, v in tr.client_global.items()}
    out.update({f"server/{k}": v for k, v in tr.server_global.items()})
    return out


def assert_bitwise(a: dict, b: dict):
    assert set(a) == set(b) and a
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), f"{k}: max diff {np.abs(a[k] - b[k]).max()}"


# ----------------------------------------------------------------------------- header
def test_header_round_trip():
    from ste_opt.learning_hooks.roles import frame, unframe

    header = {"type": "activations", "client": 3, "round": 7, "batch": 11, "bits": 5,
              "tokens_kept": 12, "extra_tokens": 2, "labels": [1, 0, 9], "need_grad": True,
              "payload_bits": 12345}
    body = bytes(range(256)) * 3
    h2, b2 = unframe(frame(header, body))
    assert h2 == header and b2 == body
    h3, b3 = unframe(frame({"client": 0}))
    assert h3 == {"client": 0} and b3 == b""


def test_header_of_a_real_upload(splits):
    from ste_opt.learning_hooks.roles import unframe
    from ste_opt.learning_hooks.schedule import ClientPlan

    tr = make_trainer(splits)
    role = tr.clients[0]
    role.begin_round(0, ClientPlan(6, 8), tr.client_global)
    header, body = unframe(role.forward(0, 1))
    assert (header["client"], header["round"], header["batch"], header["bits"]) == (0, 0, 1, 8)
    from ste_opt.learning_hooks.compress import Payload

    assert Payload.from_bytes(body).nbits == header["payload_bits"] > 0
    assert len(header["labels"]) == 4


# ----------------------------------------------------------------------------- local reference
@pytest.fixture(scope="module")
def local_ref(splits):
    tr = make_trainer(splits)
    tr.fit(2)
    return adapters(tr), tr.history


# ----------------------------------------------------------------------------- flower protocol
class FakeGrid:
    """An in-process Flower grid: every message goes straight to ``client_handle`` with a per-node
    context (no engine, no Ray). Exercises the backend's message protocol and state round trip."""

    def __init__(self, trainer, fail_client=None):
        from flwr.app import Context, RecordDict

        self.trainer, self.fail_client = trainer, fail_client
        self.ids = sorted(trainer.clients)
        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i, node_config={"partition-id": i},
                                          state=RecordDict(), run_config={}) for i in range(len(self.ids))}

    # lookup protocol of client_handle
    def client_id(self, context):
        return self.ids[int(context.node_config["partition-id"])]

    def role(self, context, client):
        if client == self.fail_client:
            raise RuntimeError("injected ClientApp failure")
        return self.trainer.clients[client]

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        from flwr.app import Error, Message

        from ste_opt.learning_hooks.backends.flower_backend import client_handle

        out = []
        for m in messages:
            try:
                out.append(client_handle(m, self.contexts[m.metadata.dst_node_id], self))
            except Exception as exc:  # what the engine turns into an error reply
                out.append(Message(Error(code=0, reason=str(exc)), reply_to=m))
        return out


@pytest.fixture()
def flower_ids():
    pytest.importorskip("flwr")
    from flwr.supercore.task_identity import TaskIdentity

    old = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = old


def test_parse_exchange():
    from ste_opt.errors import InvalidScenarioError
    from ste_opt.learning_hooks.backends.flower_backend import parse_exchange

    assert parse_exchange("per_batch") == 1 and parse_exchange("round") is None
    assert parse_exchange("chunked:3") == 3
    for bad in ("chunked:0", "chunked:x", "batch", ""):
        with pytest.raises(InvalidScenarioError, match="exchange"):
            parse_exchange(bad)


def test_flower_protocol_per_batch_is_bitwise_local(splits, local_ref, flower_ids):
    from ste_opt.learning_hooks.backends.flower_backend import FlowerBackend

    ref, ref_hist = local_ref
    tr = make_trainer(splits)
    tr.backend = FlowerBackend(exchange="per_batch", grid=FakeGrid(tr))
    tr.fit(2)
    assert_bitwise(adapters(tr), ref)  # client LoRA: state restored from context.state each message
    steps = tr.clients[0].loader.steps
    assert tr.backend.last_messages == {c: steps + 1 for c in range(3)}
    for a, b in zip(tr.history, ref_hist):
        assert a["uplink_bits"] == b["uplink_bits"] and a["downlink_bits"] == b["downlink_bits"]
        assert a["train_loss"] == b["train_loss"]


def test_flower_protocol_round_and_failures(splits, flower_ids):
    from ste_opt.errors import InvalidScenarioError
    from ste_opt.learning_hooks.backends.flower_backend import FlowerBackend

    cfg = {**TOY, "lora": {"rank": 2, "client": False}}
    ref_tr = make_trainer(splits, config=cfg)
    ref_tr.fit(1)
    tr = make_trainer(splits, config=cfg)
    tr.backend = FlowerBackend(exchange="round", grid=FakeGrid(tr))
    tr.fit(1)
    assert tr.backend.last_messages == {0: 1, 1: 1, 2: 1}  # one message each way per client
    assert_bitwise(adapters(tr), adapters(ref_tr))
    tr.backend.exchange = "chunked:2"
    tr.run_round(1)
    assert tr.backend.last_messages == {0: 2, 1: 2, 2: 2}
    # a ClientApp that fails is reported and left out; the round completes with the others
    tr.backend.exchange = "round"
    tr.backend.grid.fail_client = 2
    with pytest.warns(RuntimeWarning, match="client 2 failed in round 2"):
        tr.run_round(2)
    assert list(tr.backend.last_failures) == [2]
    assert "injected ClientApp failure" in tr.backend.failures[0]["error"]
    # client LoRA with a chunked exchange is refused unless stale gradients are accepted
    tr2 = make_trainer(splits)
    tr2.backend = FlowerBackend(exchange="chunked:2", grid=FakeGrid(tr2))
    with pytest.raises(InvalidScenarioError, match="exchange"):
        tr2.run_round(0)
    tr2.backend.allow_stale_client = True
    with pytest.warns(UserWarning, match="stale"):
        tr2.run_round(0)
    assert tr2.backend.last_messages == {0: 3, 1: 3, 2: 3}  # ceil(3/2) chunks + 1 for gradients


# ----------------------------------------------------------------------------- ray
@pytest.fixture(scope="module")
def ray_backend():
    pytest.importorskip("ray")
    from ste_opt.learning_hooks.backends.ray_backend import RayBackend

    # client 1's worker process exits at the start of batch 1 of round 2
    backend = RayBackend(num_workers=2, num_cpus=2, inject_failures=[(2, 1, 1, "exit")])
    yield backend
    backend.close()
    import ray

    assert not ray.is_initialized()


@pytest.mark.slow  # ~30-60 s on 2 cores: Ray start + 3 actors (torch, timm, peft imports) + a restart
def test_ray_bitwise_equal_to_local_then_failed_client_left_out(splits, local_ref, ray_backend):
    from ste_opt.learning_hooks.roles import LocalBackend

    ref, ref_hist = local_ref
    tr = make_trainer(splits, backend=ray_backend)
    tr.fit(2)
    assert_bitwise(adapters(tr), ref)  # 2 rounds, client LoRA + server LoRA, 2 workers for 3 clients
    for a, b in zip(tr.history, ref_hist):
        assert a["uplink_bits"] == b["uplink_bits"] and a["train_loss"] == b["train_loss"]
    assert ray_backend.failures == []

    # round 2: client 1 dies mid-round; the round completes with clients 0 and 2
    with pytest.warns(RuntimeWarning, match="client 1 failed in round 2"):
        tr.run_round(2)
    assert list(ray_backend.last_failures) == [1]
    assert ray_backend.failures[0]["round"] == 2 and ray_backend.failures[0]["client"] == 1

    class DropClient1(LocalBackend):
        def run_round(self, *a, **k):
            out = super().run_round(*a, **k)
            out.pop(1)
            return out

    ref_tr = make_trainer(splits, backend=DropClient1())
    ref_tr.client_global, ref_tr.server_global = dict(ref_tr.client_global), dict(ref_tr.server_global)
    ref_tr.client_global.update({k[7:]: v for k, v in ref.items() if k.startswith("client/")})
    ref_tr.server_global.update({k[7:]: v for k, v in ref.items() if k.startswith("server/")})
    ref_tr.run_round(2)
    assert_bitwise(adapters(tr), adapters(ref_tr))  # FedAvg over the survivors, nothing else lost
    # the dead worker is restarted: round 3 has every client again
    tr.run_round(3)
    assert ray_backend.last_failures == {}


@pytest.mark.slow  # reuses the Ray instance of the test above when run together; alone ~20-50 s
def test_map_ray_is_an_ordered_map():
    pytest.importorskip("ray")
    import functools

    from ste_opt.bench.ray_sweep import map_ray
    from ste_opt.model.payload import payload_bits

    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((6, 6)) for _ in range(7)]
    assert map_ray(np.linalg.det, mats, num_cpus=2) == [np.linalg.det(m) for m in mats]
    fn = functools.partial(payload_bits, 4, 6, 24)
    assert map_ray(fn, [1, 8, 16, 32], max_in_flight=2) == [fn(q) for q in (1, 8, 16, 32)]
    assert map_ray(fn, []) == []
    with pytest.raises(np.linalg.LinAlgError):
        map_ray(np.linalg.det, [np.ones((2, 3))])


@pytest.mark.slow  # Ray start when run alone
def test_sweep_ray_equals_serial_sweep():
    pytest.importorskip("ray")
    from ste_opt import bench
    from ste_opt.bench.ray_sweep import TIMING_FIELDS, sweep_ray

    kw = dict(sizes=(5,), seeds=(0, 1), methods=("global", "alternating"))
    serial = bench.sweep(**kw)
    seen = []
    fanned = sweep_ray(num_cpus=2, progress=seen.append, **kw)
    assert len(fanned) == len(serial) == 4 and len(seen) == 4
    for a, b in zip(fanned, serial):
        assert not a["error"], a["error"]
        assert set(a) == set(b)
        for k in set(a) - set(TIMING_FIELDS):
            both_nan = isinstance(a[k], float) and isinstance(b[k], float) and np.isnan(a[k]) and np.isnan(b[k])
            assert both_nan or a[k] == b[k], (k, a[k], b[k])


# ----------------------------------------------------------------------------- flower
@pytest.fixture(scope="module")
def frozen_ref(splits):
    cfg = {**TOY, "lora": {"rank": 2, "client": False}}
    tr = make_trainer(splits, config=cfg)
    tr.fit(1)
    return cfg, adapters(tr), tr.history


def assert_close(a: dict, b: dict, tol=1e-6):
    assert set(a) == set(b) and a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.slow  # ~40-60 s on 2 cores: Flower simulation engine start, 3 ClientApp actors
def test_flower_simulation_matches_local(splits, local_ref, frozen_ref):
    pytest.importorskip("flwr")
    pytest.importorskip("ray")
    from ste_opt.errors import InvalidScenarioError
    from ste_opt.learning_hooks.backends.flower_backend import FlowerBackend

    with FlowerBackend(exchange="per_batch", num_cpus=2) as backend:
        # client LoRA: exact SFL needs one exchange per batch
        tr = make_trainer(splits, backend=backend)
        ref_tr = make_trainer(splits)
        ref_tr.fit(1)
        tr.fit(1)
        assert_close(adapters(tr), adapters(ref_tr))
        steps = tr.clients[0].loader.steps
        assert backend.last_messages == {c: steps + 1 for c in range(3)}
        assert tr.history[0]["uplink_bits"] == ref_tr.history[0]["uplink_bits"]
        # chunked exchange with client LoRA is refused (not exact)
        backend.exchange = "round"
        with pytest.raises(InvalidScenarioError, match="exchange"):
            tr.run_round(1)
        # frozen client: exchange="round" is exact with one message each way per client
        cfg, ref, _ = frozen_ref
        tr2 = make_trainer(splits, backend=backend, config=cfg)
        tr2.fit(1)
        assert backend.last_messages == {0: 1, 1: 1, 2: 1}
        assert_close(adapters(tr2), ref)
    import ray

    assert not ray.is_initialized()


# ----------------------------------------------------------------------------- Flower ServerApp resume
def test_flower_server_app_resume_run_config(tmp_path):
    """The ServerApp's ``resume`` run-config key: same checks as ``ste-opt train --resume`` and, on
    the local backend, a resumed run equals an uninterrupted one bit for bit."""
    pytest.importorskip("flwr")
    import json

    import yaml

    from ste_opt.errors import ConfigError
    from ste_opt.learning_hooks.flower_app.server_app import flag, train

    torch.set_num_threads(1)
    cfg = {**TOY, "output": {"checkpoint_every": 1}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    rc = {"config": str(path), "run-dir": str(run)}
    assert [flag({"k": v}, "k") for v in (True, "true", "1", 0, "False", "no")] == [True, True, True,
                                                                                    False, False, False]
    with pytest.raises(ConfigError, match="expected true or false"):
        flag({"resume": "maybe"}, "resume")
    with pytest.raises(ConfigError, match="no run folder") as e:
        train({"config": str(path), "rounds": 2, "resume": True}, "local")
    assert e.value.key == "resume"
    with pytest.raises(ConfigError, match="no checkpoint"):
        train({**rc, "rounds": 2, "resume": "true"}, "local")
    train({**rc, "rounds": 1}, "local")
    hist = train({**rc, "rounds": 2, "resume": "true"}, "local")
    assert [h["round"] for h in hist] == [0, 1]
    from ste_opt.learning_hooks.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    ref = SplitFedTrainer(cfg, backend="local", run_dir=False, progress=False)
    ref.fit(2)
    ck = load_checkpoint(run / CHECKPOINT_NAME)
    assert ck.round == 1
    assert_bitwise({**{f"client/{k}": v for k, v in ck.client.items()},
                    **{f"server/{k}": v for k, v in ck.server.items()}}, adapters(ref))
    # another config: refused, accepted with force (recorded)
    path.write_text(yaml.safe_dump({**cfg, "seed": 2}))
    with pytest.raises(ConfigError, match="another config"):
        train({**rc, "rounds": 3, "resume": True}, "local")
    train({**rc, "rounds": 3, "resume": True, "force": "true"}, "local")
    assert json.loads((run / "resumes.json").read_text())[0]["forced"] is True
    assert load_checkpoint(run / CHECKPOINT_NAME).round == 2
