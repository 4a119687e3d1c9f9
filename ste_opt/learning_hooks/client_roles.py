"""Client roles: a device in split mode (:class:`ClientRole`) and the FedLoRA baseline device
(:class:`FedLoRAClientRole`), with the per-round seeded loader (:class:`LocalData`).

A client role moves only bytes: ``forward`` returns the framed uplink message of one local step,
``backward`` consumes the server's framed gradient, ``end_round`` returns the adapters to
aggregate and ``round_result`` the typed :class:`~ste_opt.learning_hooks.results.ClientRoundResult`.
Backends that cannot keep a role alive between two messages (Flower) use the public
:meth:`ClientRole.session_state` / :meth:`ClientRole.resume_round` pair and
:meth:`ClientRole.apply_chunk_gradients`; nothing outside this module touches a role's private
state.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidScenarioError
from ..model.payload import tokens_on_wire
from .compress import Payload, compress_tokens, decode
from .data import ImageDataset
from .device import Runtime, to_wire
from .federated import numpy_to_state, state_to_numpy
from .framing import frame, unframe
from .memory import MemoryReport, SavedTensorMeter, optimizer_state_bytes, param_bytes
from .results import ClientRoundResult, ClientStats
from .schedule import ClientPlan
from .split import ClientModule, ServerModule, load_trainable_state, trainable_state

__all__ = ["make_sgd", "LocalData", "ClientRole", "FedLoRAClientRole"]


def make_sgd(params, optim: Mapping) -> torch.optim.Optimizer | None:
    """SGD (``lr``, ``momentum``, ``weight_decay`` of ``optim``) over the trainable ``params``;
    None when nothing is trainable."""
    params = [p for p in params if p.requires_grad]
    if not params:
        return None
    return torch.optim.SGD(params, lr=float(optim["lr"]), momentum=float(optim["momentum"]),
                           weight_decay=float(optim["weight_decay"]))


class LocalData:
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
        self.loader = LocalData(data, batch_size, local_epochs, local_steps, seed, client_id,
                                num_workers=num_workers, pin_memory=pin_memory)
        self.trainable = any(p.requires_grad for p in module.parameters())
        self.plan: ClientPlan | None = None
        self.stats = ClientStats()
        self.round_idx = -1
        self._opt = None
        self._sent = None
        self._pending_comm = 0

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def set_data(self, data: ImageDataset) -> None:
        self.data = data
        self.loader.set_data(data)

    def begin_round(self, round_idx: int, plan: ClientPlan,
                    global_state: Mapping[str, np.ndarray] | None) -> int:
        """Load the global client adapters, reset the optimizer; returns the local step count."""
        self.plan, self.round_idx = plan, int(round_idx)
        if self.trainable and global_state:
            load_trainable_state(self.module, numpy_to_state(global_state))
        self._opt = make_sgd(self.module.parameters(), self.optim_cfg)
        self._scaler = self.runtime.scaler()
        self.module.train()
        self.loader.start(round_idx)
        self.stats = ClientStats()
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
                  "extra_tokens": tokens_on_wire(plan.tokens_kept, self.module.num_patches)[1],
                  "labels": y.tolist(), "need_grad": bool(self.trainable), "payload_bits": payload.nbits}
        body = payload.parts()
        msg = frame(header, body)
        st = self.stats
        st.uplink_bits += payload.nbits
        st.uplink_payload_bytes += sum(len(part) for part in body)
        st.steps += 1
        st.compress_s += t2 - t1
        st.score_s += getattr(self.module, "last_score_s", 0.0)
        st.client_s += t2 - t0
        total, train = param_bytes(self.module)
        st.memory = st.memory.max(MemoryReport(
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
            self.stats.downlink_bits += gp.nbits
            if self._sent is not None and self._opt is not None:
                grad = decode(gp, dtype=self._sent.dtype, device=self._sent.device)
                self._opt.zero_grad(set_to_none=True)
                scaler = self._scaler or self.runtime.scaler()
                self._sent.backward(scaler.scale(grad))
                scaler.step(self._opt)
                scaler.update()
                m = self.stats.memory
                m.comm = max(m.comm, self._pending_comm + len(grad_bytes))
                m.optimizer = max(m.optimizer, optimizer_state_bytes(self._opt))
        self._sent = None
        self.stats.client_s += time.perf_counter() - t0

    def release_graph(self) -> None:
        """Forget the autograd graph of the last forward (its gradient will be applied later by
        :meth:`apply_chunk_gradients`, which recomputes the forward)."""
        self._sent = None

    def apply_chunk_gradients(self, batch_ids: Sequence[int], grad_msgs: Sequence[bytes]) -> None:
        """Apply the gradients of a chunk of local batches: recompute each batch's forward with the
        current (chunk start) weights, take the parameter gradients, then one optimizer step per
        batch in order (a message-driven backend's replacement for :meth:`backward`)."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        per_batch = []
        for b, g in zip(batch_ids, grad_msgs):
            _, body = unframe(bytes(g))
            if not body:
                continue
            gp = Payload.from_bytes(body)
            self.stats.downlink_bits += gp.nbits
            if not self.trainable or self._opt is None:
                continue
            x, _ = self.loader.batch(int(b))
            plan = self.plan
            with self.runtime.autocast():
                tokens, scores = self.runtime.compiled(self.module)(
                    self.runtime.to(x), with_scores=plan.tokens_kept is not None)
            _, sent = compress_tokens(to_wire(tokens), scores, plan.tokens_kept, plan.bits,
                                      self.module.num_prefix_tokens)
            for p in params:
                p.grad = None
            sent.backward(decode(gp, dtype=sent.dtype, device=sent.device))
            per_batch.append([None if p.grad is None else p.grad.detach().clone() for p in params])
        for gl in per_batch:
            self._opt.zero_grad(set_to_none=True)
            for p, g in zip(params, gl):
                p.grad = g
            self._opt.step()
        self._sent = None

    def session_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(adapters, momentum)`` mid-round: the client adapters and the optimizer's momentum
        buffers (by parameter index), for a backend that keeps state between messages."""
        adapters = state_to_numpy(trainable_state(self.module)) if self.trainable else {}
        mom = {}
        if self._opt is not None:
            for i, s in self._opt.state_dict()["state"].items():
                if s.get("momentum_buffer") is not None:
                    mom[str(i)] = s["momentum_buffer"].detach().cpu().numpy().copy()
        return adapters, mom

    def resume_round(self, round_idx: int, plan: ClientPlan, adapters: Mapping[str, np.ndarray],
                     momentum: Mapping[str, np.ndarray], stats: ClientStats) -> None:
        """Continue a round from :meth:`session_state` (same round's shuffle, adapters, momentum)."""
        self.plan, self.round_idx = plan, int(round_idx)
        self.loader.start(round_idx)
        self.module.train()
        if self.trainable:
            load_trainable_state(self.module, numpy_to_state(dict(adapters)))
        self._opt = make_sgd(self.module.parameters(), self.optim_cfg)
        if self._opt is not None and momentum:
            sd = self._opt.state_dict()
            sd["state"] = {int(i): {"momentum_buffer": torch.from_numpy(v)} for i, v in momentum.items()}
            self._opt.load_state_dict(sd)
        self.stats = stats

    def end_round(self) -> dict[str, np.ndarray]:
        """The client adapter state to aggregate (empty without client LoRA)."""
        self._opt = None
        return state_to_numpy(trainable_state(self.module)) if self.trainable else {}

    def round_result(self, step_times: Sequence[float]) -> ClientRoundResult:
        """End the round: the typed result (adapters, data size, statistics, step times)."""
        return ClientRoundResult(client_state=self.end_round(), num_examples=self.num_examples,
                                 stats=self.stats, step_times=list(step_times))


class FedLoRAClientRole:
    """FedLoRA baseline: the whole model (client + server parts, LoRA everywhere) on the device;
    no activation traffic, adapters exchanged once per round.

    ``global_state`` of :meth:`begin_round` and :meth:`end_round` use the flat aggregation
    namespace (``client/<name>``, ``server/<name>``); :meth:`round_result` returns the two parts
    separately.
    """

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
        self.loader = LocalData(data, batch_size, local_epochs, local_steps, seed, client_id,
                                num_workers=num_workers, pin_memory=pin_memory)
        self.stats = ClientStats()
        self.trainable = True
        self._opt = None

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
        self._opt = make_sgd(params, self.optim_cfg)
        self.client_module.train()
        self.server_module.train()
        self.loader.start(round_idx)
        self.stats = ClientStats()
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
        st.steps += 1
        st.client_s += time.perf_counter() - t0
        st.loss_sum += float(loss.detach()) * len(y)
        st.correct += int((logits.argmax(1) == y).sum())
        st.count += len(y)
        total, train = param_bytes(self.client_module, self.server_module)
        st.memory = st.memory.max(MemoryReport(params=total, grads=train,
                                               optimizer=optimizer_state_bytes(self._opt),
                                               activations=meter.bytes, comm=0))

    def end_round(self) -> dict[str, np.ndarray]:
        st = {f"client/{k}": v for k, v in trainable_state(self.client_module).items()}
        st.update({f"server/{k}": v for k, v in trainable_state(self.server_module).items()})
        self._opt = None
        return state_to_numpy(st)

    def round_result(self, step_times: Sequence[float]) -> ClientRoundResult:
        """End the round: both adapter parts (``client_state``, ``server_state``), data size,
        statistics, step times."""
        client = state_to_numpy(trainable_state(self.client_module))
        server = state_to_numpy(trainable_state(self.server_module))
        self._opt = None
        return ClientRoundResult(client_state=client, num_examples=self.num_examples, stats=self.stats,
                                 step_times=list(step_times), server_state=server)
