"""The edge server's role: one adapter copy per client of the round (SFL-V1), forward/backward on
the received tokens, gradient returned in the compressed shape."""
from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidScenarioError
from .client_roles import make_sgd
from .compress import Payload, decode, encode
from .device import Runtime
from .federated import numpy_to_state, state_to_numpy
from .framing import frame
from .memory import MemoryReport, SavedTensorMeter, optimizer_state_bytes, param_bytes
from .results import ServerStats
from .split import ServerModule, load_trainable_state, trainable_state

__all__ = ["ServerRole"]


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
        self.stats: dict[int, ServerStats] = {}
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
        self._opt = make_sgd(self.module.parameters(), self.optim_cfg)
        if opt_state is not None and self._opt is not None:
            self._opt.load_state_dict(opt_state)
        self._active = client
        self.stats.setdefault(client, ServerStats())

    def step(self, payload_bytes: bytes, header: Mapping[str, Any]) -> bytes:
        """One server step on a received upload; returns the framed gradient message."""
        client = int(header["client"])
        self._activate(client)
        t0 = time.perf_counter()
        payload = Payload.from_bytes(payload_bytes)
        if payload.nbits != int(header.get("payload_bits", payload.nbits)):
            raise InvalidScenarioError("payload bits differ from the header", field="payload", device=client)
        x = decode(payload, device=self.runtime.device)  # float32 as sent
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
        body: list = []
        gbits = 0
        if need_grad:
            grad = x.grad.detach()
            if scaler.is_enabled():  # the client receives the true (unscaled) gradient
                grad = grad / scaler.get_scale()
            gp, _ = encode(grad, self.grad_bits)
            body = gp.parts()
            gbits = gp.nbits
        if self._opt is not None:
            scaler.update()
        correct = int((logits.argmax(1) == y).sum())
        st = self.stats[client]
        st.loss_sum += float(loss.detach()) * len(y)
        st.correct += correct
        st.count += len(y)
        st.decode_s += t1 - t0
        st.server_s += time.perf_counter() - t0
        total, train = param_bytes(self.module)
        comm = (len(payload_bytes) + x.numel() * x.element_size() * (2 if need_grad else 1)
                + sum(len(p) for p in body))
        st.memory = st.memory.max(MemoryReport(
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
