"""The one :class:`Backend` protocol of the trainer's transports, and the template round loop.

A backend carries the bytes of the roles (:mod:`~ste_opt.learning_hooks.client_roles`,
:mod:`~ste_opt.learning_hooks.server_role`): framed payloads, gradient frames, adapter dicts. The
trainer calls ``backend.run_round(...)`` once per round and gets the typed
:class:`~ste_opt.learning_hooks.results.ClientRoundResult` of every client that finished;
``last_failures`` names the clients lost mid-round (left out of the aggregation), ``close()``
releases the backend's resources.

:class:`RoundTemplate` is the template of every backend here (like a Flower strategy: the fixed
frame of a round with one step to fill in): :meth:`RoundTemplate.run_round` packs the arguments
into a :class:`RoundJob`, calls the backend's :meth:`RoundTemplate.train_clients`, records and
warns about failed clients, and refuses a round in which every client failed.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import SolverError
from ..results import ClientRoundResult
from ..schedule import ClientPlan

__all__ = ["Backend", "RoundJob", "RoundTemplate", "attach_server_copies"]


@dataclass(frozen=True)
class RoundJob:
    """The inputs of one round, as the trainer hands them to a backend.

    ``plans[c]`` is None for a client that sits the round out; ``server`` is None in FedLoRA mode
    (then ``client_global`` is the flat ``client/…``, ``server/…`` state of the whole model).
    """

    round_idx: int
    plans: Mapping[int, ClientPlan | None]
    clients: Mapping[int, Any]
    server: Any
    client_global: Mapping[str, np.ndarray] | None
    server_global: Mapping[str, np.ndarray] | None

    @property
    def active(self) -> list[int]:
        """Clients with a plan this round, sorted."""
        return [c for c in sorted(self.plans) if self.plans[c] is not None]


@runtime_checkable
class Backend(Protocol):
    """What the trainer needs of a transport."""

    name: str
    #: clients of the last round that failed (left out of the aggregation) -> reason
    last_failures: Mapping[int, str]

    def run_round(self, round_idx: int, plans: Mapping[int, ClientPlan | None],
                  clients: Mapping[int, Any], server: Any,
                  client_global: Mapping[str, np.ndarray] | None,
                  server_global: Mapping[str, np.ndarray] | None) -> dict[int, ClientRoundResult]: ...

    def close(self) -> None: ...


class RoundTemplate:
    """Template round loop; subclasses implement :meth:`train_clients`."""

    name = "template"

    def __init__(self) -> None:
        self.failures: list[dict] = []
        self.last_failures: dict[int, str] = {}

    def train_clients(self, job: RoundJob, failures: dict[int, str]) -> dict[int, ClientRoundResult]:
        """Run the round's clients (and the server's part); put lost clients into ``failures``."""
        raise NotImplementedError

    def run_round(self, round_idx: int, plans: Mapping[int, ClientPlan | None],
                  clients: Mapping[int, Any], server: Any,
                  client_global: Mapping[str, np.ndarray] | None,
                  server_global: Mapping[str, np.ndarray] | None) -> dict[int, ClientRoundResult]:
        """One round: :meth:`train_clients`, then failed clients reported (``last_failures``,
        ``failures``, a ``RuntimeWarning``); :class:`SolverError` if every client failed."""
        job = RoundJob(int(round_idx), plans, clients, server, client_global, server_global)
        failures: dict[int, str] = {}
        out = self.train_clients(job, failures)
        self.last_failures = failures
        for c, msg in failures.items():
            self.failures.append({"round": int(round_idx), "client": int(c), "error": msg})
            warnings.warn(f"{self.name} backend: client {c} failed in round {round_idx} and is left "
                          f"out of the aggregation: {msg}", RuntimeWarning, stacklevel=2)
        if job.active and not out:
            raise SolverError(f"round {round_idx}: every client failed: {failures}")
        return out

    def close(self) -> None:
        """Release resources (nothing by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def attach_server_copies(results: dict[int, ClientRoundResult], server) -> dict[int, ClientRoundResult]:
    """End the server's round and add each client's server-side adapter copy (SFL-V1) and step
    statistics to that client's result; every backend whose server role runs in this process ends
    its round with this. ``server`` is None in FedLoRA mode."""
    if server is not None:
        copies = server.end_round()
        for c, res in results.items():
            res.server_state = copies.get(c, {})
            res.server_stats = server.stats.get(c)
    return results
