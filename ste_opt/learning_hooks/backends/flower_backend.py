"""Flower backend: a Flower ServerApp drives every exchange of the trainer's roles.

Flower's Message API lets only the server initiate, and a ClientApp keeps nothing between messages
except its ``context.state``. So the ServerApp (which holds the trainer's
:class:`~ste_opt.learning_hooks.roles.ServerRole`) sends each client of the round a sequence of
``"train"`` messages; a ClientApp call

1. restores the client role from ``context.state`` (client adapters, optimizer momentum, counters),
   or starts the round from the global client adapters carried by the first message;
2. applies the gradients of its previous chunk, if the message carries them;
3. forwards (and compresses) its next chunk of ``M`` local batches and replies with the framed
   uplink payloads (the same bytes as ``ClientRole.forward``);
4. on its last message replies with its adapter state and counters (adapters once per round).

The server steps the payloads in a fixed order (clients sorted by id, batches in order) and answers
with the gradient frames in the next message. Everything travels as Flower records of plain bytes
and arrays (``ConfigRecord`` of ``bytes``, ``ArrayRecord``): nothing is unpickled from the wire.

Exchange modes and exactness (``exchange=``)
--------------------------------------------
``"per_batch"`` (``M = 1``)
    Exact SFL: ``steps + 1`` messages each way per client per round (one more than the steps when
    the client trains, to carry back the last gradient). The client recomputes the forward of the
    batch before applying its gradient (the autograd graph cannot outlive a ClientApp call); with
    deterministic CPU kernels this gives the same adapters as ``local``.
``"chunked:M"``
    ``ceil(steps / M)`` (+1 with client LoRA) messages each way.
``"round"`` (``M = steps``)
    One message each way per client per round when the client part is frozen.

With a **frozen client** (``lora.client: false``; no gradient goes back) every mode is exact, since
the client's activations do not depend on the server's gradients. With **client LoRA** and
``M > 1`` the ``M`` batches of a chunk are computed with the weights of the chunk start, and their
gradients are applied as ``M`` optimizer steps afterwards: a different (stale-gradient) algorithm.
The backend refuses that unless ``allow_stale_client=True`` (then it warns once).

Engines
-------
- **simulation** (default): :class:`FlowerBackend` starts Flower's simulation engine in a background
  thread (ClientApps in Ray actors, on a private loopback-only Ray instance) and keeps it for all
  rounds; :meth:`FlowerBackend.close` stops it. The clients' roles are shipped to the engine once
  through Ray's object store. About 0.1 s per message (Flower's dispatch tick).
- **deployment**: ``FlowerBackend(grid=grid)`` inside a ServerApp; see
  ``ste_opt/learning_hooks/backends/flower_app`` and ``docs/distributed.md``.

Telemetry is switched off (``FLWR_TELEMETRY_ENABLED=0``) unless the caller set it.
"""
from __future__ import annotations

import json
import os
import pickle
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...errors import InvalidScenarioError, SolverError

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

__all__ = ["FlowerBackend", "Backend", "parse_exchange", "make_client_app", "client_handle",
           "GridDriver", "MESSAGE_TYPE"]

MESSAGE_TYPE = "train"
_REC = "sfl"


def parse_exchange(exchange: str) -> int | None:
    """``"per_batch"`` → 1, ``"chunked:M"`` → M, ``"round"`` → None (all steps of the round)."""
    if exchange == "per_batch":
        return 1
    if exchange == "round":
        return None
    if isinstance(exchange, str) and exchange.startswith("chunked:"):
        try:
            m = int(exchange.split(":", 1)[1])
        except ValueError:
            m = 0
        if m >= 1:
            return m
    raise InvalidScenarioError(f"exchange={exchange!r}: expected 'round', 'per_batch' or 'chunked:M' "
                               "with M >= 1", field="exchange")


# --------------------------------------------------------------------------- records
def _arrays_to_record(arrays: Mapping[str, np.ndarray]):
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _record_to_arrays(record) -> dict[str, np.ndarray]:
    return {k: np.array(a.numpy(), copy=True) for k, a in record.items()}


def _stats_to_json(stats: Mapping[str, Any]) -> bytes:
    out = {}
    for k, v in stats.items():
        if hasattr(v, "peak") and hasattr(v, "params"):
            out[k] = {"__memory__": {f: int(getattr(v, f)) for f in
                                     ("params", "grads", "optimizer", "activations", "comm")}}
        else:
            out[k] = v
    return json.dumps(out).encode()


def _json_to_stats(data: bytes) -> dict:
    from ..memory import MemoryReport

    out = json.loads(bytes(data).decode())
    for k, v in list(out.items()):
        if isinstance(v, dict) and "__memory__" in v:
            out[k] = MemoryReport(**v["__memory__"])
    return out


# --------------------------------------------------------------------------- client side
class _ClientSession:
    """What a client keeps between two messages of a round (in ``context.state``)."""

    def __init__(self, role, context):
        self.role, self.context = role, context

    def save(self, next_batch: int, steps: int) -> None:
        from flwr.app import ConfigRecord

        role, st = self.role, self.context.state
        from ..federated import state_to_numpy
        from ..split import trainable_state

        st[f"{_REC}.adapters"] = _arrays_to_record(
            state_to_numpy(trainable_state(role.module)) if role.trainable else {})
        mom = {}
        if role._opt is not None:
            for i, s in role._opt.state_dict()["state"].items():
                if s.get("momentum_buffer") is not None:
                    mom[str(i)] = s["momentum_buffer"].detach().numpy().copy()
        st[f"{_REC}.momentum"] = _arrays_to_record(mom)
        st[f"{_REC}.meta"] = ConfigRecord({"round": int(role._round), "next": int(next_batch),
                                           "steps": int(steps), "stats": _stats_to_json(role.stats)})

    def restore(self, round_idx: int, plan) -> tuple[int, int]:
        import torch

        from ..federated import numpy_to_state
        from ..roles import _sgd
        from ..split import load_trainable_state

        role, st = self.role, self.context.state
        if f"{_REC}.meta" not in st:
            raise SolverError(f"client {role.client_id}: no saved state for round {round_idx} "
                              "(message out of order)")
        meta = st[f"{_REC}.meta"]
        if int(meta["round"]) != int(round_idx):
            raise SolverError(f"client {role.client_id}: saved state is for round {meta['round']}, "
                              f"message for round {round_idx}")
        role.plan, role._round = plan, int(round_idx)
        role.loader.start(round_idx)
        role.module.train()
        if role.trainable:
            load_trainable_state(role.module, numpy_to_state(_record_to_arrays(st[f"{_REC}.adapters"])))
        role._opt = _sgd(role.module.parameters(), role.optim_cfg)
        mom = _record_to_arrays(st[f"{_REC}.momentum"])
        if role._opt is not None and mom:
            sd = role._opt.state_dict()
            sd["state"] = {int(i): {"momentum_buffer": torch.from_numpy(v)} for i, v in mom.items()}
            role._opt.load_state_dict(sd)
        role.stats = _json_to_stats(meta["stats"])
        return int(meta["next"]), int(meta["steps"])

    def clear(self) -> None:
        for k in ("adapters", "momentum", "meta"):
            key = f"{_REC}.{k}"
            if key in self.context.state:
                del self.context.state[key]


def _apply_gradients(role, batches, grads) -> None:
    """Apply the gradients of a chunk: recompute each batch's forward with the current (chunk
    start) weights, take the parameter gradients, then one optimizer step per batch in order."""
    from ..compress import Payload, compress_tokens, decode
    from ..roles import unframe

    params = [p for p in role.module.parameters() if p.requires_grad]
    per_batch = []
    for b, g in zip(batches, grads):
        _, body = unframe(bytes(g))
        if not body:
            continue
        gp = Payload.from_bytes(body)
        role.stats["downlink_bits"] += gp.nbits
        if not role.trainable or role._opt is None:
            continue
        x, _ = role.loader.batch(int(b))
        plan = role.plan
        tokens, scores = role.module(x, with_scores=plan.tokens_kept is not None)
        _, sent = compress_tokens(tokens, scores, plan.tokens_kept, plan.bits,
                                  role.module.num_prefix_tokens)
        for p in params:
            p.grad = None
        sent.backward(decode(gp, dtype=sent.dtype))
        per_batch.append([None if p.grad is None else p.grad.detach().clone() for p in params])
    for gl in per_batch:
        role._opt.zero_grad(set_to_none=True)
        for p, g in zip(params, gl):
            p.grad = g
        role._opt.step()
    role._sent = None


def client_handle(message, context, lookup) -> Any:
    """The ClientApp's ``train`` handler (see the module docstring for the protocol).

    ``lookup`` has ``client_id(context) -> int`` and ``role(context, client_id)`` (the
    :class:`~ste_opt.learning_hooks.roles.ClientRole` of that client).
    """
    from flwr.app import ConfigRecord, Message, RecordDict

    from ..schedule import ClientPlan

    cfg = message.content[_REC]
    op = str(cfg["op"])
    client = int(lookup.client_id(context))
    if op == "hello":
        return Message(RecordDict({_REC: ConfigRecord({"client": client})}), reply_to=message)
    role = lookup.role(context, client)
    round_idx = int(cfg["round"])
    tk = int(cfg["tokens_kept"])
    plan = ClientPlan(None if tk < 0 else tk, int(cfg["bits"]))
    session = _ClientSession(role, context)
    t0 = time.perf_counter()
    if op == "local":  # FedLoRA baseline: one message, the whole local round on the device
        glob = _record_to_arrays(message.content["global"]) if "global" in message.content else None
        steps = role.begin_round(round_idx, plan, glob or None)
        for b in range(steps):
            role.local_step(round_idx, b)
        return _final_reply(message, role, client, [], (time.perf_counter() - t0) / max(steps, 1))
    if bool(cfg["first"]):
        glob = _record_to_arrays(message.content["global"]) if "global" in message.content else None
        steps = role.begin_round(round_idx, plan, glob or None)
        nxt = 0
    else:
        nxt, steps = session.restore(round_idx, plan)
    grads = list(cfg["grads"])
    if grads:
        _apply_gradients(role, list(cfg["grad_batches"]), grads)
    chunk = int(cfg["chunk"]) if int(cfg["chunk"]) > 0 else steps
    batches = list(range(nxt, min(steps, nxt + chunk)))
    payloads = [role.forward(round_idx, b) for b in batches]
    role._sent = None  # the graph is rebuilt when the gradient arrives
    nxt += len(batches)
    per_step = (time.perf_counter() - t0) / max(len(batches), 1)
    final = nxt >= steps and (not role.trainable or not batches)
    if final:
        session.clear()
        return _final_reply(message, role, client, payloads, per_step, batches)
    session.save(nxt, steps)
    rec = ConfigRecord({"client": client, "payloads": payloads, "batches": batches, "final": False,
                        "need_grad": bool(role.trainable), "client_s": per_step})
    return Message(RecordDict({_REC: rec}), reply_to=message)


def _final_reply(message, role, client, payloads, per_step, batches=()):
    from flwr.app import ConfigRecord, Message, RecordDict

    state = role.end_round()
    rec = ConfigRecord({"client": client, "payloads": list(payloads), "batches": list(batches),
                        "final": True, "need_grad": bool(role.trainable), "client_s": per_step,
                        "num_examples": int(role.num_examples), "stats": _stats_to_json(role.stats)})
    return Message(RecordDict({_REC: rec, "client_state": _arrays_to_record(state)}),
                   reply_to=message)


def make_client_app(lookup):
    """A Flower ``ClientApp`` whose ``train`` handler is :func:`client_handle` with ``lookup``."""
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def _train(message, context):
        return client_handle(message, context, lookup)

    return app


class _ShippedRoles:
    """Simulation: the client roles, pickled once into Ray's object store; each engine process
    loads them on first use. Picklable and small (it holds only the object reference)."""

    _cache: dict[str, dict] = {}

    def __init__(self):
        self.ref = None
        self.ids: list[int] = []

    def client_id(self, context) -> int:
        return self.ids[int(context.node_config["partition-id"])]

    def role(self, context, client: int):
        import ray

        key = self.ref.hex()
        roles = _ShippedRoles._cache.get(key)
        if roles is None:
            from .ray_backend import _prepare_process

            _prepare_process(1)
            roles = pickle.loads(ray.get(self.ref))
            _ShippedRoles._cache.clear()
            _ShippedRoles._cache[key] = roles
        return roles[int(client)]


# --------------------------------------------------------------------------- server side
class GridDriver:
    """Runs one trainer round over a Flower ``Grid`` (simulation or deployment)."""

    def __init__(self, grid, *, exchange: str = "round", allow_stale_client: bool = False,
                 timeout_s: float = 3600.0, pull_interval_s: float | None = None):
        self.grid = grid
        self.exchange = exchange
        self.chunk = parse_exchange(exchange)
        self.allow_stale_client = bool(allow_stale_client)
        self.timeout_s = float(timeout_s)
        self.pull_interval_s = pull_interval_s
        self.nodes: dict[int, int] = {}
        self.messages: dict[int, int] = {}  # server → client messages of the last round, per client
        self._warned = False

    def _send(self, contents: Mapping[int, Any], round_idx: int) -> dict[int, Any]:
        from flwr.app import Message

        msgs = {c: Message(content, dst_node_id=self.nodes[c], message_type=MESSAGE_TYPE,
                           group_id=str(round_idx)) for c, content in contents.items()}
        for c in contents:
            self.messages[c] = self.messages.get(c, 0) + 1
        if self.pull_interval_s is None:
            replies = self.grid.send_and_receive(list(msgs.values()), timeout=self.timeout_s)
        else:  # own pull loop (the deployment grid sleeps 3 s between pulls)
            ids = set(self.grid.push_messages(list(msgs.values())))
            replies, end = [], time.time() + self.timeout_s
            while ids and time.time() < end:
                got = list(self.grid.pull_messages(ids))
                replies += got
                ids -= {m.metadata.reply_to_message_id for m in got}
                if ids:
                    time.sleep(self.pull_interval_s)
        by_node = {m.metadata.src_node_id: m for m in replies}
        return {c: by_node.get(self.nodes[c]) for c in contents}

    def discover(self, client_ids) -> None:
        """Map client ids to node ids (each ClientApp reports its client id)."""
        from flwr.app import ConfigRecord, Message, RecordDict

        want = set(int(c) for c in client_ids)
        if want <= set(self.nodes):
            return
        deadline = time.time() + self.timeout_s
        while True:
            node_ids = list(self.grid.get_node_ids())
            msgs = [Message(RecordDict({_REC: ConfigRecord({"op": "hello"})}), dst_node_id=n,
                            message_type=MESSAGE_TYPE) for n in node_ids]
            for m in self.grid.send_and_receive(msgs, timeout=min(self.timeout_s, 600)):
                if not m.has_error():
                    self.nodes[int(m.content[_REC]["client"])] = int(m.metadata.src_node_id)
            if want <= set(self.nodes) or time.time() > deadline:
                break
            time.sleep(1.0)
        missing = sorted(want - set(self.nodes))
        if missing:
            raise SolverError(f"flower backend: no SuperNode serves clients {missing}")

    def run_round(self, round_idx, plans, clients, server, client_global, server_global,
                  failures: dict[int, str]) -> dict[int, dict]:
        from flwr.app import ConfigRecord, RecordDict

        from ..roles import attach_server_copies, unframe

        active = [c for c in sorted(plans) if plans[c] is not None]
        self.discover(active)
        self.messages = {}
        trainable = bool(client_global)
        if server is not None and trainable and self.chunk != 1:
            if not self.allow_stale_client:
                raise InvalidScenarioError(
                    f"exchange={self.exchange!r} with client LoRA is not exact SFL (the batches of a "
                    "chunk use the chunk-start client weights); use exchange='per_batch', freeze the "
                    "client (lora.client: false), or pass allow_stale_client=True",
                    field="exchange")
            if not self._warned:
                warnings.warn(f"flower backend: exchange={self.exchange!r} with client LoRA applies "
                              "stale client gradients (not exact SFL)", UserWarning, stacklevel=3)
                self._warned = True
        glob = _arrays_to_record(client_global or {})

        def first(c):
            p = plans[c]
            rec = ConfigRecord({"op": "step" if server is not None else "local",
                                "round": int(round_idx), "first": True,
                                "tokens_kept": -1 if p.tokens_kept is None else int(p.tokens_kept),
                                "bits": int(p.bits), "chunk": int(self.chunk or 0),
                                "grads": [], "grad_batches": []})
            return RecordDict({_REC: rec, "global": glob})

        if server is not None:
            server.begin_round(round_idx, server_global)
        pending = {c: first(c) for c in active}
        out: dict[int, dict] = {}
        times: dict[int, list[float]] = {c: [] for c in active}
        while pending:
            t0 = time.perf_counter()
            replies = self._send(pending, round_idx)
            wave_s = time.perf_counter() - t0
            nxt = {}
            for c in sorted(pending):
                rep = replies[c]
                if rep is None:
                    failures[c] = f"no reply within {self.timeout_s:.0f} s"
                    continue
                if rep.has_error():
                    failures[c] = f"ClientApp error: {rep.error.reason}"[:300]
                    continue
                rec = rep.content[_REC]
                grads = []
                try:
                    for msg in rec["payloads"]:
                        header, body = unframe(bytes(msg))
                        if int(header["client"]) != c or int(header["round"]) != int(round_idx):
                            raise InvalidScenarioError("payload header names another client/round",
                                                       field="header", device=c)
                        grads.append(server.step(body, header))
                except Exception as exc:  # noqa: BLE001 - reported, the round goes on
                    failures[c] = f"server step failed: {type(exc).__name__}: {exc}"[:300]
                    continue
                batches = list(rec["batches"])
                times[c] += [wave_s] * len(batches)
                if bool(rec["final"]):
                    out[c] = {"client_state": _record_to_arrays(rep.content["client_state"]),
                              "num_examples": int(rec["num_examples"]),
                              "stats": _json_to_stats(rec["stats"]),
                              "step_times": times[c] or [wave_s]}
                    continue
                p = plans[c]
                need = bool(rec["need_grad"])
                nxt[c] = RecordDict({_REC: ConfigRecord({
                    "op": "step", "round": int(round_idx), "first": False,
                    "tokens_kept": -1 if p.tokens_kept is None else int(p.tokens_kept),
                    "bits": int(p.bits), "chunk": int(self.chunk or 0),
                    "grads": grads if need else [], "grad_batches": batches if need else []})})
            pending = nxt
        return attach_server_copies(out, server)


# --------------------------------------------------------------------------- backend
class _Simulation:
    """Flower's simulation engine in a background thread; the ServerApp serves round commands."""

    def __init__(self, num_nodes: int, roles: _ShippedRoles, backend_config: Mapping, driver_kw: dict):
        from flwr.serverapp import ServerApp

        self.cmd: queue.Queue = queue.Queue()
        self.res: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.driver: GridDriver | None = None
        server_app = ServerApp()

        @server_app.main()
        def _main(grid, context):
            self.driver = GridDriver(grid, **driver_kw)
            while True:
                item = self.cmd.get()
                if item is None:
                    return
                fn, args = item
                try:
                    self.res.put(("ok", fn(self.driver, *args)))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self.res.put(("err", exc))

        client_app = make_client_app(roles)

        def target():
            from flwr.simulation import run_simulation

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run_simulation(server_app=server_app, client_app=client_app,
                                   num_supernodes=num_nodes, backend_config=dict(backend_config))
            except BaseException as exc:  # noqa: BLE001
                self.error = exc
                self.res.put(("err", exc))

        self.thread = threading.Thread(target=target, name="ste-opt-flower-sim", daemon=True)
        self.thread.start()

    def call(self, fn: Callable, *args, timeout_s: float = 3600.0):
        if self.error is not None or not self.thread.is_alive():
            raise SolverError(f"flower simulation is not running ({self.error!r})")
        self.cmd.put((fn, args))
        end = time.time() + timeout_s
        while True:
            try:
                status, value = self.res.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive() or time.time() > end:
                    raise SolverError(f"flower simulation stopped or timed out ({self.error!r})") from None
        if status == "err":
            raise value
        return value

    def stop(self, timeout_s: float = 60.0) -> None:
        self.cmd.put(None)
        self.thread.join(timeout_s)


class FlowerBackend:
    """Run the trainer's rounds through Flower.

    Parameters
    ----------
    exchange : {"round", "per_batch", "chunked:M"}
        Message granularity (see the module docstring for which modes are exact).
    grid : flwr Grid, optional
        Use this grid (inside a deployed ServerApp). Default: start the simulation engine.
    allow_stale_client : bool
        Accept ``chunked``/``round`` with client LoRA (stale client gradients; warns).
    num_cpus : int, optional
        CPUs of the private Ray instance of the simulation engine.
    client_cpus : float
        ``client_resources.num_cpus`` of the simulation (ClientApp actors = num_cpus / client_cpus).
    client_gpus : float
        ``client_resources.num_gpus`` of the simulation (default 0): each ClientApp actor's GPU
        share; the device itself comes from the config (``device``) or the app's run config.
    timeout_s : float
        How long the server waits for the replies of one exchange before declaring a client failed.
    pull_interval_s : float, optional
        Poll the grid every this many seconds instead of ``send_and_receive`` (the deployment
        grid's own loop sleeps 3 s). Default: ``send_and_receive``.
    """

    name = "flower"

    def __init__(self, exchange: str = "round", *, grid=None, allow_stale_client: bool = False,
                 num_cpus: int | None = None, client_cpus: float = 1.0, client_gpus: float = 0.0,
                 timeout_s: float = 3600.0,
                 pull_interval_s: float | None = None):
        parse_exchange(exchange)
        self.exchange = exchange
        self.grid = grid
        self.allow_stale_client = bool(allow_stale_client)
        self.num_cpus = num_cpus
        self.client_gpus = float(client_gpus)
        self.client_cpus = float(client_cpus)
        self.timeout_s = float(timeout_s)
        self.pull_interval_s = pull_interval_s
        self.failures: list[dict] = []
        self.last_failures: dict[int, str] = {}
        self.last_messages: dict[int, int] = {}
        self._driver: GridDriver | None = None
        self._sim: _Simulation | None = None
        self._roles = _ShippedRoles()
        self._shipped_key = None
        self._num_nodes = 0
        self._started_ray = False

    def _driver_kw(self) -> dict:
        return {"exchange": self.exchange, "allow_stale_client": self.allow_stale_client,
                "timeout_s": self.timeout_s, "pull_interval_s": self.pull_interval_s}

    def _ship(self, clients: Mapping[int, Any]) -> None:
        key = tuple(sorted((c, id(r), id(r.data)) for c, r in clients.items()))
        if key == self._shipped_key:
            return
        import ray

        from .ray_backend import init_local_ray

        self._started_ray = init_local_ray(self.num_cpus) or self._started_ray
        self._roles.ref = ray.put(pickle.dumps(dict(clients), protocol=5))
        self._roles.ids = sorted(clients)
        self._shipped_key = key

    def run_round(self, round_idx, plans, clients, server, client_global, server_global) -> dict[int, dict]:
        """Same contract as ``LocalBackend.run_round``; failed clients are left out (see
        :attr:`last_failures`)."""
        failures: dict[int, str] = {}

        def job(driver, *args):
            driver.exchange, driver.chunk = self.exchange, parse_exchange(self.exchange)
            driver.allow_stale_client = self.allow_stale_client
            out = driver.run_round(*args)
            return out, dict(driver.messages)

        args = (round_idx, plans, clients, server, client_global, server_global, failures)
        if self.grid is not None:
            if self._driver is None:
                self._driver = GridDriver(self.grid, **self._driver_kw())
            out, self.last_messages = job(self._driver, *args)
        else:
            if self._sim is not None and len(clients) != self._num_nodes:
                self.close()
            self._ship(clients)
            if self._sim is None:
                self._num_nodes = len(clients)
                cfg = {"client_resources": {"num_cpus": self.client_cpus,
                                            "num_gpus": float(self.client_gpus)},
                       "init_args": {"include_dashboard": False, "log_to_driver": False}}
                self._sim = _Simulation(len(clients), self._roles, cfg, self._driver_kw())
            out, self.last_messages = self._sim.call(job, *args, timeout_s=self.timeout_s + 600)
        self.last_failures = failures
        for c, msg in failures.items():
            self.failures.append({"round": int(round_idx), "client": int(c), "error": msg})
            warnings.warn(f"flower backend: client {c} failed in round {round_idx} and is left out "
                          f"of the aggregation: {msg}", RuntimeWarning, stacklevel=2)
        if not out:
            raise SolverError(f"round {round_idx}: every client failed: {failures}")
        return out

    def close(self) -> None:
        """Stop the simulation engine (which also shuts down its Ray instance)."""
        if self._sim is not None:
            self._sim.stop()
            self._sim = None
        self._shipped_key = None
        if self._started_ray:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> FlowerBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: ``get_backend("flower_backend", **kw)`` resolves here.
Backend = FlowerBackend
