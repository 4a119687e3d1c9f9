"""Client role, server role and the local backend: the transport seam of the trainer.

The roles exchange only bytes:

- uplink, per local step: ``ClientRole.forward(round_idx, batch_idx) -> bytes``, a framed message
  (a JSON header: client, round, batch, bits, tokens_kept, extra_tokens, labels, need_grad; then
  the bit-packed :class:`~ste_opt.learning_hooks.compress.Payload`);
- downlink, per local step: ``ServerRole.step(payload_bytes, header) -> bytes`` (framed: header with
  loss/accuracy of the step, then the gradient payload at ``grad_bits``; empty when the client has
  nothing to train), consumed by ``ClientRole.backward(grad_bytes)``;
- once per round: adapter states as ``dict[str, numpy.ndarray]`` (``end_round()``), aggregated by
  :func:`~ste_opt.learning_hooks.federated.aggregate_numpy`.

The server follows SFL-V1: one copy of the server-side adapters (and optimizer state) per client of
the round, all starting from the global copy; ``end_round()`` returns them for FedAvg.

:class:`LocalBackend` calls the roles in-process, client after client. Other backends (Ray,
Flower) only need to carry the same bytes.
"""
from __future__ import annotations

import copy
import json
import struct
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidScenarioError
from .compress import Payload, compress_tokens, decode, encode
from .data import ImageDataset
from .device import Runtime, to_wire
from .federated import numpy_to_state, state_to_numpy
from .memory import MemoryReport, SavedTensorMeter, optimizer_state_bytes, param_bytes
from .schedule import ClientPlan
from .split import ClientModule, ServerModule, load_trainable_state, trainable_state

__all__ = ["frame", "unframe", "ClientRole", "ServerRole", "FedLoRAClientRole", "LocalBackend",
           "attach_server_copies", "get_backend"]


def frame(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """``uint32 header length | JSON header | body``."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + bytes(body)


def unframe(msg: bytes) -> tuple[dict, bytes]:
    """Inverse of :func:`frame`."""
    if len(msg) < 4:
        raise InvalidScenarioError("message shorter than its length prefix", field="message")
    (hl,) = struct.unpack_from("<I", msg, 0)
    return json.loads(msg[4:4 + hl].decode()), msg[4 + hl:]


def _sgd(params, optim: Mapping) -> torch.optim.Optimizer | None:
    params = [p for p in params if p.requires_grad]
    if not params:
        return None
    return torch.optim.SGD(params, lr=float(optim["lr"]), momentum=float(optim["momentum"]),
                           weight_decay=float(optim["weight_decay"]))


def _new_stats() -> dict:
    return {"uplink_bits": 0, "downlink_bits": 0, "uplink_payload_bytes": 0, "steps": 0,
            "score_s": 0.0, "compress_s": 0.0, "client_s": 0.0, "memory": MemoryReport()}


class _LocalData:
    """Per-round seeded shuffle; batches wrap around so every upload has exactly B samples."""

    def __init__(self, data: ImageDataset, batch_size: int, local_epochs: int,
                 local_steps: int | None, seed: int, client_id: int, *, num_workers: int = 0,
                 pin_memory: bool = False):
        self.seed, self.client_id = int(seed), int(client_id)
        self._batch, self._epochs, self._local_steps = int(batch_size), int(local_epochs), local_steps
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self._round = None
        self._iter = None
        self._next = 0
        self.set_data(data)

    def set_data(self, data: ImageDataset) -> None:
        if len(data) == 0:
            raise InvalidScenarioError("a client has no training data", field="data", device=self.client_id)
        self.data = data
        self.batch_size = min(self._batch, len(data))
        per_epoch = -(-len(data) // self.batch_size)
        self.steps = int(self._local_steps) if self._local_steps else per_epoch * self._epochs
        self._order = np.arange(len(data))

    def start(self, round_idx: int) -> None:
        rng = np.random.default_rng([self.seed, int(round_idx), self.client_id, 7])
        reps = -(-self.steps * self.batch_size // len(self.data))
        self._order = np.concatenate([rng.permutation(len(self.data)) for _ in range(reps)])
        self._round, self._iter, self._next = int(round_idx), None, 0

    def _rows(self, batch_idx: int) -> np.ndarray:
        i = int(batch_idx) * self.batch_size
        return self._order[i:i + self.batch_size]

    def batch(self, batch_idx: int):
        """Images and labels of local batch ``batch_idx`` (on the CPU). Data on disk
        (``data.loader``) is read through a DataLoader over the round's batches, in order;
        out-of-order requests decode that batch directly (same seeds, same tensors)."""
        if not hasattr(self.data, "loader"):
            return self.data.batch(self._rows(batch_idx))
        b = int(batch_idx)
        seed_base = [self.seed, -1 if self._round is None else self._round, self.client_id]
        if self._iter is None or b != self._next:
            if b != 0:  # random access: decode this batch with the DataLoader's seeds
                from .datasets.disk import batch_seeds

                rows = [int(i) for i in self._rows(b)]
                return self.data.batch(rows, seeds=batch_seeds(seed_base, b, len(rows))
                                       if self.data.train else None)
            batches = [self._rows(i) for i in range(self.steps)]
            self._iter = iter(self.data.loader(batches, seed_base=seed_base,
                                               num_workers=self.num_workers, pin_memory=self.pin_memory))
            self._next = 0
        x, y = next(self._iter)
        self._next = b + 1
        if self._next >= self.steps:
            self._iter = None
        return x, y


class ClientRole:
    """A device in split mode: frozen client blocks (+ optional client LoRA), compression, upload.

    In the local backend all client roles share one :class:`ClientModule`; ``begin_round`` loads
    the global client adapters into it.
    """

    def __init__(self, client_id: int, module: ClientModule, data: ImageDataset, *, batch_size: int,
                 optim: Mapping, local_epochs: int = 1, local_steps: int | None = None, seed: int = 0,
                 runtime: Runtime | None = None, num_workers: int = 0, pin_memory: bool = False):
        self.client_id = int(client_id)
        self.module = module
        self.data = data
        self.optim_cfg = dict(optim)
        self.runtime = runtime if runtime is not None else Runtime()
        self._scaler = None
        self.loader = _LocalData(data, batch_size, local_epochs, local_steps, seed, client_id,
                                 num_workers=num_workers, pin_memory=pin_memory)
        self.trainable = any(p.requires_grad for p in module.parameters())
        self.plan: ClientPlan | None = None
        self.stats = _new_stats()
        self._opt = None
        self._sent = None
        self._round = -1

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def set_data(self, data: ImageDataset) -> None:
        self.data = data
        self.loader.set_data(data)

    def begin_round(self, round_idx: int, plan: ClientPlan,
                    global_state: Mapping[str, np.ndarray] | None) -> int:
        """Load the global client adapters, reset the optimizer; returns the local step count."""
        self.plan, self._round = plan, int(round_idx)
        if self.trainable and global_state:
            load_trainable_state(self.module, numpy_to_state(global_state))
        self._opt = _sgd(self.module.parameters(), self.optim_cfg)
        self._scaler = self.runtime.scaler()
        self.module.train()
        self.loader.start(round_idx)
        self.stats = _new_stats()
        return self.loader.steps

    def forward(self, round_idx: int, batch_idx: int) -> bytes:
        """Client forward + compression of one local batch; returns the framed uplink message."""
        plan = self.plan
        x, y = self.loader.batch(batch_idx)
        x = self.runtime.to(x)
        t0 = time.perf_counter()
        select = plan.tokens_kept is not None
        params = list(self.module.parameters())
        with torch.set_grad_enabled(self.trainable), SavedTensorMeter(exclude=params) as meter:
            with self.runtime.autocast():
                tokens, scores = self.runtime.compiled(self.module)(x, with_scores=select)
            tokens = to_wire(tokens)  # compression runs in float32, outside autocast
            t1 = time.perf_counter()
            payload, sent = compress_tokens(tokens, scores, plan.tokens_kept, plan.bits,
                                            self.module.num_prefix_tokens)
        t2 = time.perf_counter()
        self._sent = sent if self.trainable else None
        header = {"type": "activations", "client": self.client_id, "round": int(round_idx),
                  "batch": int(batch_idx), "bits": int(plan.bits),
                  "tokens_kept": None if plan.tokens_kept is None else int(plan.tokens_kept),
                  "extra_tokens": 2 if select else 1, "labels": y.tolist(),
                  "need_grad": bool(self.trainable), "payload_bits": payload.nbits}
        body = payload.to_bytes()
        msg = frame(header, body)
        st = self.stats
        st["uplink_bits"] += payload.nbits
        st["uplink_payload_bytes"] += len(body)
        st["steps"] += 1
        st["compress_s"] += t2 - t1
        st["score_s"] += getattr(self.module, "last_score_s", 0.0)
        st["client_s"] += t2 - t0
        total, train = param_bytes(self.module)
        st["memory"] = st["memory"].max(MemoryReport(
            params=total, grads=train, optimizer=optimizer_state_bytes(self._opt),
            activations=meter.bytes, comm=len(msg)))
        self._pending_comm = len(msg)
        return msg

    def backward(self, grad_bytes: bytes) -> None:
        """Apply the server's gradient (compressed shape) to the client adapters."""
        header, body = unframe(grad_bytes)
        t0 = time.perf_counter()
        if body:
            gp = Payload.from_bytes(body)
            self.stats["downlink_bits"] += gp.nbits
            if self._sent is not None and self._opt is not None:
                grad = decode(gp, dtype=self._sent.dtype).to(self._sent.device)
                self._opt.zero_grad(set_to_none=True)
                scaler = self._scaler or self.runtime.scaler()
                self._sent.backward(scaler.scale(grad))
                scaler.step(self._opt)
                scaler.update()
                m = self.stats["memory"]
                m.comm = max(m.comm, self._pending_comm + len(grad_bytes))
                m.optimizer = max(m.optimizer, optimizer_state_bytes(self._opt))
        self._sent = None
        self.stats["client_s"] += time.perf_counter() - t0

    def end_round(self) -> dict[str, np.ndarray]:
        """The client adapter state to aggregate (empty without client LoRA)."""
        self._opt = None
        return state_to_numpy(trainable_state(self.module)) if self.trainable else {}


class ServerRole:
    """The edge server: one adapter copy per client this round (SFL-V1), forward/backward on the
    received tokens, gradient returned in the compressed shape."""

    def __init__(self, module: ServerModule, *, optim: Mapping, grad_bits: int = 32,
                 runtime: Runtime | None = None):
        self.module = module
        self.runtime = runtime if runtime is not None else Runtime()
        self._scaler = self.runtime.scaler()
        self.optim_cfg = dict(optim)
        self.grad_bits = int(grad_bits)
        self._global: dict[str, torch.Tensor] = {}
        self._copies: dict[int, tuple[dict, dict | None]] = {}
        self._active: int | None = None
        self._opt = None
        self.stats: dict[int, dict] = {}
        self.round_idx = -1

    def begin_round(self, round_idx: int, global_state: Mapping[str, np.ndarray] | None) -> None:
        self.round_idx = int(round_idx)
        if global_state:
            self._global = numpy_to_state(global_state)
        else:
            self._global = trainable_state(self.module)
        self._copies, self._active, self._opt, self.stats = {}, None, None, {}
        self.module.train()

    def _stash(self) -> None:
        if self._active is not None:
            opt_state = copy.deepcopy(self._opt.state_dict()) if self._opt is not None else None
            self._copies[self._active] = (trainable_state(self.module), opt_state)

    def _activate(self, client: int) -> None:
        if client == self._active:
            return
        self._stash()
        state, opt_state = self._copies.get(client, (self._global, None))
        load_trainable_state(self.module, state)
        self._opt = _sgd(self.module.parameters(), self.optim_cfg)
        if opt_state is not None and self._opt is not None:
            self._opt.load_state_dict(opt_state)
        self._active = client
        self.stats.setdefault(client, {"loss_sum": 0.0, "correct": 0, "count": 0, "server_s": 0.0,
                                       "decode_s": 0.0, "memory": MemoryReport()})

    def step(self, payload_bytes: bytes, header: Mapping[str, Any]) -> bytes:
        """One server step on a received upload; returns the framed gradient message."""
        client = int(header["client"])
        self._activate(client)
        t0 = time.perf_counter()
        payload = Payload.from_bytes(payload_bytes)
        if payload.nbits != int(header.get("payload_bits", payload.nbits)):
            raise InvalidScenarioError("payload bits differ from the header", field="payload", device=client)
        x = self.runtime.to(decode(payload))  # float32 as sent
        t1 = time.perf_counter()
        need_grad = bool(header.get("need_grad", True))
        x.requires_grad_(need_grad)
        y = self.runtime.to(torch.as_tensor(header["labels"], dtype=torch.long))
        params = list(self.module.parameters())
        with SavedTensorMeter(exclude=params) as meter:
            with self.runtime.autocast():
                logits = self.runtime.compiled(self.module)(x)
            logits = logits.float()
            loss = F.cross_entropy(logits, y)
        if self._opt is not None:
            self._opt.zero_grad(set_to_none=True)
        scaler = self._scaler
        scaler.scale(loss).backward()
        if self._opt is not None:
            scaler.step(self._opt)
        body = b""
        gbits = 0
        if need_grad:
            grad = x.grad.detach()
            if scaler.is_enabled():  # the client receives the true (unscaled) gradient
                grad = grad / scaler.get_scale()
            gp, _ = encode(grad, self.grad_bits)
            body = gp.to_bytes()
            gbits = gp.nbits
        if self._opt is not None:
            scaler.update()
        correct = int((logits.argmax(1) == y).sum())
        st = self.stats[client]
        st["loss_sum"] += float(loss.detach()) * len(y)
        st["correct"] += correct
        st["count"] += len(y)
        st["decode_s"] += t1 - t0
        st["server_s"] += time.perf_counter() - t0
        total, train = param_bytes(self.module)
        comm = len(payload_bytes) + x.numel() * x.element_size() * (2 if need_grad else 1) + len(body)
        st["memory"] = st["memory"].max(MemoryReport(
            params=total, grads=train, optimizer=optimizer_state_bytes(self._opt),
            activations=meter.bytes, comm=comm))
        return frame({"type": "gradient", "client": client, "round": int(header["round"]),
                      "batch": int(header["batch"]), "bits": self.grad_bits, "grad_bits": gbits,
                      "loss": float(loss.detach()), "correct": correct}, body)

    def end_round(self) -> dict[int, dict[str, np.ndarray]]:
        """Per-client server adapter copies of this round."""
        self._stash()
        out = {c: state_to_numpy(s) for c, (s, _) in self._copies.items()}
        self._copies, self._active, self._opt = {}, None, None
        return out


class FedLoRAClientRole:
    """FedLoRA baseline: the whole model (client + server parts, LoRA everywhere) on the device;
    no activation traffic, adapters exchanged once per round."""

    def __init__(self, client_id: int, client_module: ClientModule, server_module: ServerModule,
                 data: ImageDataset, *, batch_size: int, optim: Mapping, local_epochs: int = 1,
                 local_steps: int | None = None, seed: int = 0, runtime: Runtime | None = None,
                 num_workers: int = 0, pin_memory: bool = False):
        self.client_id = int(client_id)
        self.client_module, self.server_module = client_module, server_module
        self.data = data
        self.optim_cfg = dict(optim)
        self.runtime = runtime if runtime is not None else Runtime()
        self._scaler = self.runtime.scaler()
        self.loader = _LocalData(data, batch_size, local_epochs, local_steps, seed, client_id,
                                 num_workers=num_workers, pin_memory=pin_memory)
        self.stats = _new_stats()
        self.trainable = True

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def set_data(self, data: ImageDataset) -> None:
        self.data = data
        self.loader.set_data(data)

    def begin_round(self, round_idx: int, plan: ClientPlan, global_state: Mapping[str, np.ndarray] | None) -> int:
        if global_state:
            st = numpy_to_state(global_state)
            load_trainable_state(self.client_module, {k[7:]: v for k, v in st.items() if k.startswith("client/")})
            load_trainable_state(self.server_module, {k[7:]: v for k, v in st.items() if k.startswith("server/")})
        params = list(self.client_module.parameters()) + list(self.server_module.parameters())
        self._opt = _sgd(params, self.optim_cfg)
        self.client_module.train()
        self.server_module.train()
        self.loader.start(round_idx)
        self.stats = _new_stats()
        self.stats.update(loss_sum=0.0, correct=0, count=0)
        return self.loader.steps

    def local_step(self, round_idx: int, batch_idx: int) -> None:
        x, y = self.loader.batch(batch_idx)
        x, y = self.runtime.to(x), self.runtime.to(y)
        t0 = time.perf_counter()
        params = list(self.client_module.parameters()) + list(self.server_module.parameters())
        with SavedTensorMeter(exclude=params) as meter:
            with self.runtime.autocast():
                tokens, _ = self.runtime.compiled(self.client_module)(x, with_scores=False)
                logits = self.runtime.compiled(self.server_module)(tokens)
            logits = logits.float()
            loss = F.cross_entropy(logits, y)
        self._opt.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(self._opt)
        self._scaler.update()
        st = self.stats
        st["steps"] += 1
        st["client_s"] += time.perf_counter() - t0
        st["loss_sum"] += float(loss.detach()) * len(y)
        st["correct"] += int((logits.argmax(1) == y).sum())
        st["count"] += len(y)
        total, train = param_bytes(self.client_module, self.server_module)
        st["memory"] = st["memory"].max(MemoryReport(params=total, grads=train,
                                                     optimizer=optimizer_state_bytes(self._opt),
                                                     activations=meter.bytes, comm=0))

    def end_round(self) -> dict[str, np.ndarray]:
        st = {f"client/{k}": v for k, v in trainable_state(self.client_module).items()}
        st.update({f"server/{k}": v for k, v in trainable_state(self.server_module).items()})
        self._opt = None
        return state_to_numpy(st)


class LocalBackend:
    """Runs the roles in this process, client after client (the reference order)."""

    name = "local"

    def run_round(self, round_idx: int, plans: Mapping[int, ClientPlan | None],
                  clients: Mapping[int, Any], server: ServerRole | None,
                  client_global: Mapping[str, np.ndarray] | None,
                  server_global: Mapping[str, np.ndarray] | None) -> dict[int, dict]:
        """Returns per participating client: ``client_state``, ``server_state`` (np dicts),
        ``num_examples``, ``stats`` (client-side), ``server_stats``, ``step_times`` (s)."""
        out: dict[int, dict] = {}
        if server is not None:
            server.begin_round(round_idx, server_global)
        for c, plan in plans.items():
            if plan is None:
                continue
            role = clients[c]
            steps = role.begin_round(round_idx, plan, client_global)
            times = []
            for b in range(steps):
                t0 = time.perf_counter()
                if server is None:
                    role.local_step(round_idx, b)
                else:
                    msg = role.forward(round_idx, b)
                    header, body = unframe(msg)
                    role.backward(server.step(body, header))
                times.append(time.perf_counter() - t0)
            out[c] = {"client_state": role.end_round(), "num_examples": role.num_examples,
                      "stats": role.stats, "step_times": times}
        return attach_server_copies(out, server)


def attach_server_copies(results: dict, server) -> dict:
    """End the server's round and add each client's server-side adapter copy (SFL-V1) and step
    statistics to that client's result (``server_state``, ``server_stats``); every backend's
    ``run_round`` ends with this. ``server`` is None in FedLoRA mode."""
    if server is not None:
        copies = server.end_round()
        for c in results:
            results[c]["server_state"] = copies.get(c, {})
            results[c]["server_stats"] = server.stats.get(c, {})
    return results


#: Short backend names -> modules of :mod:`ste_opt.learning_hooks.backends`.
BACKEND_MODULES = {"ray": "ray_backend", "flower": "flower_backend"}


def get_backend(name: str = "local", **kwargs):
    """``"local"``, ``"ray"``, ``"flower"`` (or a module name of
    :mod:`ste_opt.learning_hooks.backends`, whose ``Backend(**kwargs)`` is built), or an object
    implementing ``run_round``."""
    if name == "local":
        return LocalBackend()
    if not isinstance(name, str):
        return name  # an object implementing run_round
    import importlib

    try:
        mod = importlib.import_module(f"ste_opt.learning_hooks.backends.{BACKEND_MODULES.get(name, name)}")
    except ImportError as exc:
        raise InvalidScenarioError(f"unknown backend {name!r}", field="backend") from exc
    return mod.Backend(**kwargs)
