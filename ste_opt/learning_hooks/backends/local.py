"""The local backend: the roles in this process, client after client (the reference order)."""
from __future__ import annotations

import time

from ..framing import unframe
from ..results import ClientRoundResult
from .base import RoundJob, RoundTemplate, attach_server_copies

__all__ = ["LocalBackend"]


class LocalBackend(RoundTemplate):
    """Runs the roles in this process, client after client (the reference order)."""

    name = "local"

    def train_clients(self, job: RoundJob, failures: dict[int, str]) -> dict[int, ClientRoundResult]:
        """Per participating client: its :class:`ClientRoundResult` (server copy attached)."""
        out: dict[int, ClientRoundResult] = {}
        server, r = job.server, job.round_idx
        if server is not None:
            server.begin_round(r, job.server_global)
        for c, plan in job.plans.items():
            if plan is None:
                continue
            role = job.clients[c]
            steps = role.begin_round(r, plan, job.client_global)
            times = []
            for b in range(steps):
                t0 = time.perf_counter()
                if server is None:
                    role.local_step(r, b)
                else:
                    msg = role.forward(r, b)
                    header, body = unframe(msg)
                    role.backward(server.step(body, header))
                times.append(time.perf_counter() - t0)
            out[c] = role.round_result(times)
        return attach_server_copies(out, server)
