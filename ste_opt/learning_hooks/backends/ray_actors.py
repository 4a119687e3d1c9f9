"""The Ray actors of :class:`~ste_opt.learning_hooks.backends.ray_backend.RayBackend` (plain classes,
wrapped with ``ray.remote`` by the backend): client workers holding some client roles, the server
actor holding the server role, and the transport-only echo actor of :func:`exchange_overhead_s`."""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..framing import unframe
from ..results import ClientRoundResult
from .sealed import unseal

__all__ = ["prepare_process", "ClientWorker", "ServerActor", "EchoActor", "exchange_overhead_s",
           "short_error"]


def prepare_process(torch_threads: int | None) -> None:
    """In a fresh worker process: thread count, and the torchvision guard before any timm/peft
    class is unpickled."""
    import torch

    from .._compat import import_peft, import_timm

    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    import_timm()
    import_peft()


class ClientWorker:
    """Holds some client roles; every method works on one client id."""

    def __init__(self, roles_blob: bytes, key: bytes, torch_threads: int | None,
                 failures: Sequence[tuple[int, int, int, str]] = ()):
        prepare_process(torch_threads)
        self.roles: dict[int, Any] = unseal(roles_blob, key)
        self.failures = {(int(r), int(c)): (int(b), str(mode)) for r, c, b, mode in failures}
        self.times: dict[int, list[float]] = {}
        self._t0: dict[int, float] = {}

    def ping(self) -> int:
        return os.getpid()

    def set_data(self, client: int, data) -> None:
        self.roles[int(client)].set_data(data)

    def begin_round(self, client: int, round_idx: int, plan, global_state) -> int:
        self.times[client] = []
        return int(self.roles[client].begin_round(round_idx, plan, global_state))

    def maybe_fail(self, client: int, round_idx: int, batch_idx: int) -> None:
        hit = self.failures.get((int(round_idx), int(client)))
        if hit is not None and hit[0] == int(batch_idx):
            if hit[1] == "exit":
                os._exit(17)  # the process dies, as a crashed device would
            raise RuntimeError(f"injected failure: client {client}, round {round_idx}, batch {batch_idx}")

    def forward(self, client: int, round_idx: int, batch_idx: int) -> bytes:
        self.maybe_fail(client, round_idx, batch_idx)
        self._t0[client] = time.perf_counter()
        return self.roles[client].forward(round_idx, batch_idx)

    def backward(self, client: int, grad_msg: bytes) -> None:
        self.roles[client].backward(grad_msg)
        self.times[client].append(time.perf_counter() - self._t0.pop(client))

    def local_step(self, client: int, round_idx: int, batch_idx: int) -> None:
        self.maybe_fail(client, round_idx, batch_idx)
        t0 = time.perf_counter()
        self.roles[client].local_step(round_idx, batch_idx)
        self.times[client].append(time.perf_counter() - t0)

    def end_round(self, client: int) -> ClientRoundResult:
        return self.roles[client].round_result(self.times.pop(client, []))

    def run_client(self, client: int, round_idx: int, plan, global_state, server) -> ClientRoundResult:
        """``server_order="arrival"``: drive one client's whole round against the server actor."""
        import ray

        steps = self.begin_round(client, round_idx, plan, global_state)
        for b in range(steps):
            if server is None:
                self.local_step(client, round_idx, b)
            else:
                msg = self.forward(client, round_idx, b)
                self.backward(client, ray.get(server.step.remote(msg)))
        return self.end_round(client)


class ServerActor:
    """Holds the :class:`~ste_opt.learning_hooks.server_role.ServerRole`; ``step`` takes the client's framed message as it is."""

    def __init__(self, server_blob: bytes, key: bytes, torch_threads: int | None):
        prepare_process(torch_threads)
        self.role = unseal(server_blob, key)

    def ping(self) -> int:
        return os.getpid()

    def begin_round(self, round_idx: int, global_state) -> None:
        self.role.begin_round(round_idx, global_state)

    def step(self, msg: bytes) -> bytes:
        header, body = unframe(msg)
        return self.role.step(body, header)

    def end_round(self) -> tuple[dict, dict]:
        copies = self.role.end_round()
        return copies, self.role.stats


class EchoActor:
    """Transport-only actor of :func:`exchange_overhead_s` (no compute)."""

    def ping(self) -> int:
        return os.getpid()

    def make(self, nbytes: int, i: int) -> bytes:
        return bytes(int(nbytes))

    def step(self, msg: bytes) -> bytes:
        return msg

    def take(self, msg: bytes) -> int:
        return len(msg)


def exchange_overhead_s(payload_bytes: int, grad_bytes: int | None = None, n: int = 200) -> float:
    """Median transport cost (s) of one batch exchange with no compute: the same three actor calls
    as :class:`RayBackend` (``forward`` on a worker → ``step`` on the server → ``backward`` on the
    worker) carrying ``payload_bytes`` up and back. Needs Ray initialised (see
    :func:`init_local_ray`)."""
    import ray

    cls = ray.remote(EchoActor).options(num_cpus=0, max_concurrency=1)
    worker, server = cls.remote(), cls.remote()
    try:
        ray.get([worker.ping.remote(), server.ping.remote()])
        times = []
        for i in range(int(n)):
            t0 = time.perf_counter()
            msg = worker.make.remote(payload_bytes, i)
            ray.get(worker.take.remote(server.step.remote(msg)))
            times.append(time.perf_counter() - t0)
        return float(np.median(times[min(10, len(times) // 4):]))
    finally:
        ray.kill(worker)
        ray.kill(server)


def short_error(exc: BaseException) -> str:
    """One line naming the exception (for failure reports)."""
    text = str(exc).strip().splitlines()
    tail = [t for t in text if t.strip()][-1:] if text else []
    return f"{type(exc).__name__}: {tail[0] if tail else ''}"[:300]
