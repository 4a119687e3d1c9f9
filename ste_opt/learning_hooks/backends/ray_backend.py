"""Ray backend: the trainer's roles in Ray actors, only bytes between them.

Layout
------
- ``num_workers`` **client-worker actors**. Worker ``w`` holds the client roles
  ``c ≡ w (mod num_workers)`` with their data and one copy of the client model. They are shipped once
  (pickled, when the backend first sees them, and again only if a client's data object changes);
  afterwards only the round's global adapters (NumPy dicts), framed uplink payloads and gradient
  frames travel.
- one **server actor** holding the :class:`~ste_opt.learning_hooks.roles.ServerRole` (server model,
  per-client SFL-V1 adapter copies, optimizer state). Actors run one call at a time.

Order of server updates (``server_order``)
------------------------------------------
``"deterministic"`` (default): the driver submits every call of the round up front. A worker runs
its clients one after the other (as :class:`~ste_opt.learning_hooks.backends.local.LocalBackend` does), and
the server serves the workers round-robin by local step: a fixed order. Ray executes the calls of
one caller on one actor in submission order, so the schedule is reproducible. ``"arrival"``: every
worker drives its own clients (``forward`` → ``server.step`` → ``backward``) and the server serves
whoever comes first (more overlap, order varies between runs). Because ste-opt's server keeps one
adapter copy per client (SFL-V1), a client's server copy only ever sees that client's batches, so
*both* orders give the same adapters, bit for bit, as ``local`` (with the same number of torch
threads); the fixed order matters for server roles that share state across clients.

Failures
--------
A client whose call raises, or whose worker process dies, is dropped from the round: it is not in
the returned results (so aggregation uses the others), it is listed in :attr:`RayBackend.last_failures`
and :attr:`RayBackend.failures`, and a ``RuntimeWarning`` names it. Dead workers are restarted at
the next round. ``inject_failures`` simulates this for tests. If every client fails, or the server
actor dies, the round raises :class:`~ste_opt.errors.SolverError`.

Networking
----------
Without ``address`` the backend starts a private single-machine Ray instance bound to loopback
(``_node_ip_address="127.0.0.1"``, and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for the
processes it starts: otherwise Ray listens on every interface), with no
dashboard, and shuts it down in :meth:`RayBackend.close`. With ``address="auto"`` or
``"ray://host:10001"`` / ``"host:6379"`` it joins an existing cluster and leaves it running.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import InvalidScenarioError, SolverError
from ..results import ClientRoundResult
from .base import RoundJob, RoundTemplate
from .ray_actors import ClientWorker, ServerActor, exchange_overhead_s, short_error
from .sealed import new_key, seal

__all__ = ["RayBackend", "Backend", "init_local_ray", "ray_available", "exchange_overhead_s"]


def ray_available() -> bool:
    """True when ``import ray`` works."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def init_local_ray(num_cpus: int | None = None, *, address: str | None = None,
                   **init_kwargs: Any) -> bool:
    """Initialise Ray (if it is not already); returns True when this call started it.

    Without ``address``: a private single-machine instance on 127.0.0.1 only, no dashboard, worker
    logs not forwarded, no usage stats, payloads up to 1 MiB passed inline. With ``address``: join
    that cluster.
    """
    if address is None:
        # read by ray at import time (ray_constants) and by its child processes
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InvalidScenarioError("backend 'ray' needs ray: pip install 'ste-opt[dist]'",
                                   field="backend") from exc
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                          "configure_logging": False}
    if address is None:
        # loopback only: the node address below binds this instance (the env var above only takes
        # effect when ray is first imported after it is set; the node address does either way)
        kw["num_cpus"] = num_cpus
        kw["_node_ip_address"] = "127.0.0.1"
        kw["runtime_env"] = {"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}}
        # pass payloads up to 1 MiB inline in the gRPC call instead of through the object store:
        # measured 2.1 / 2.4 / 3.4 ms per exchange at 128 / 256 / 512 KiB against 4.5-5 ms
        # (benchmarks/distributed.py); a cluster joined by address keeps its own settings
        kw["_system_config"] = {"max_direct_call_object_size": 1 << 20,
                                "task_rpc_inlined_bytes_limit": 16 << 20}
    else:
        kw["address"] = address
    kw.update(init_kwargs)
    ray.init(**kw)
    return True


# --------------------------------------------------------------------------- backend
class RayBackend(RoundTemplate):
    """Run the trainer's rounds on Ray actors.

    Parameters
    ----------
    num_workers : int, optional
        Client-worker actors (default: ``min(clients, num_cpus or 2)``). Clients are assigned
        round-robin (``c % num_workers``); a worker runs its clients one after the other.
    address : str, optional
        Join an existing Ray cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``).
        Default: start a private loopback-only instance.
    server_order : {"deterministic", "arrival"}
        See the module docstring.
    num_cpus : int, optional
        CPUs of the private instance (default: Ray's detection). Ignored with ``address``.
    cpus_per_actor : float
        Ray CPU reservation of every actor (default 0: actors are not limited by the reservation;
        set 1 on a cluster to spread them over nodes).
    gpus_per_actor : float
        Ray ``num_gpus`` of every actor (default 0): a GPU share, e.g. 0.25 puts four actors on one
        GPU. Roles keep the device of their config (``device``/``server_device``); set it to
        ``cuda`` when actors hold a GPU share.
    torch_threads : int or None
        ``torch.set_num_threads`` in every actor (default 1). For bitwise equality with ``local``,
        run ``local`` with the same thread count.
    inject_failures : sequence of (round, client, batch, mode), optional
        Fault injection for tests: the client fails at the start of that batch, ``mode="raise"``
        (an exception) or ``"exit"`` (its worker process exits).
    ray_init_kwargs : dict, optional
        Extra ``ray.init`` arguments.
    worker_resources, server_resources : dict, optional
        Ray custom resources the client-worker actors / the server actor require (e.g.
        ``{"site": 1}``), to place them on chosen nodes of a cluster.
    """

    name = "ray"

    def __init__(self, num_workers: int | None = None, *, address: str | None = None,
                 server_order: str = "deterministic", num_cpus: int | None = None,
                 cpus_per_actor: float = 0.0, gpus_per_actor: float = 0.0,
                 torch_threads: int | None = 1,
                 inject_failures: Iterable[tuple[int, int, int, str]] = (),
                 ray_init_kwargs: Mapping[str, Any] | None = None,
                 worker_resources: Mapping[str, float] | None = None,
                 server_resources: Mapping[str, float] | None = None):
        if server_order not in ("deterministic", "arrival"):
            raise InvalidScenarioError("server_order must be 'deterministic' or 'arrival'",
                                       field="server_order")
        if num_workers is not None and int(num_workers) < 1:
            raise InvalidScenarioError("num_workers must be >= 1", field="num_workers")
        failures = []
        for f in inject_failures:
            r, c, b, mode = f
            if mode not in ("raise", "exit"):
                raise InvalidScenarioError("inject_failures mode must be 'raise' or 'exit'",
                                           field="inject_failures", device=int(c))
            failures.append((int(r), int(c), int(b), str(mode)))
        self.num_workers = None if num_workers is None else int(num_workers)
        self.address = address
        self.server_order = server_order
        self.num_cpus = num_cpus
        self.cpus_per_actor = float(cpus_per_actor)
        self.gpus_per_actor = float(gpus_per_actor)
        self.torch_threads = torch_threads
        self.inject_failures = failures
        self.ray_init_kwargs = dict(ray_init_kwargs or {})
        self.worker_resources = dict(worker_resources or {})
        self.server_resources = dict(server_resources or {})
        super().__init__()
        self._started_ray = False
        self._workers: list[Any] = []
        self._owner: dict[int, int] = {}
        self._shipped_data: dict[int, int] = {}
        self._seal_key = new_key()            # the roles shipped to this run's actors are sealed
        self._clients_key: tuple | None = None
        self._server = None
        self._server_key: int | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def _ray(self):
        if self._closed:
            raise SolverError("RayBackend is closed")
        started = init_local_ray(self.num_cpus, address=self.address, **self.ray_init_kwargs)
        self._started_ray = self._started_ray or started
        import ray

        return ray

    def _actor_opts(self, resources: Mapping[str, float] | None = None) -> dict:
        opts = {"num_cpus": self.cpus_per_actor, "num_gpus": self.gpus_per_actor, "max_restarts": 0,
                "max_concurrency": 1}
        if resources:
            opts["resources"] = dict(resources)
        return opts

    def _make_worker(self, w: int, clients: Mapping[int, Any]):
        ray = self._ray()
        mine = {c: clients[c] for c in sorted(clients) if self._owner[c] == w}
        blob = seal(mine, self._seal_key)  # shared client module stays shared inside the worker
        cls = ray.remote(ClientWorker).options(**self._actor_opts(self.worker_resources))
        for c, role in mine.items():
            self._shipped_data[c] = id(role.data)
        return cls.remote(blob, self._seal_key, self.torch_threads, self.inject_failures)

    def _setup(self, clients: Mapping[int, Any], server) -> None:
        ray = self._ray()
        key = tuple(sorted((c, id(r)) for c, r in clients.items()))
        if key != self._clients_key:
            self._kill(self._workers)
            n = self.num_workers or min(len(clients), int(self.num_cpus or 2))
            n = max(1, min(n, len(clients)))
            self._owner = {c: i % n for i, c in enumerate(sorted(clients))}
            self._workers = [self._make_worker(w, clients) for w in range(n)]
            self._clients_key = key
        else:
            # a client whose data object was replaced (GenFL, set_client_data): ship the new data
            for c, role in clients.items():
                if self._shipped_data.get(c) != id(role.data):
                    self._workers[self._owner[c]].set_data.remote(c, role.data)
                    self._shipped_data[c] = id(role.data)
        if server is not None and id(server) != self._server_key:
            self._kill([self._server])
            cls = ray.remote(ServerActor).options(**self._actor_opts(self.server_resources))
            self._server = cls.remote(seal(server, self._seal_key), self._seal_key, self.torch_threads)
            self._server_key = id(server)
        if server is not None:
            ray.get(self._server.ping.remote())

    def _restart_dead(self, clients: Mapping[int, Any]) -> None:
        import ray

        for w, actor in enumerate(self._workers):
            try:
                ray.get(actor.ping.remote(), timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                self._workers[w] = self._make_worker(w, clients)

    def _kill(self, actors) -> None:
        if not actors:
            return
        import ray

        for a in actors:
            if a is not None:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - already dead
                    pass

    def close(self) -> None:
        """Kill the actors; shut Ray down if this backend started it."""
        if self._closed:
            return
        try:
            import ray

            if ray.is_initialized():
                self._kill(self._workers + [self._server])
                if self._started_ray:
                    ray.shutdown()
        finally:
            self._workers, self._server, self._clients_key, self._server_key = [], None, None, None
            self._closed = True

    def __del__(self):  # best effort; tests and scripts call close()
        try:
            if not self._closed and self._started_ray:
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ the round
    def train_clients(self, job: RoundJob, failures: dict[int, str]) -> dict[int, ClientRoundResult]:
        """The round on the actors; failed clients go into ``failures`` (see :attr:`last_failures`)."""
        round_idx, plans, clients, server = job.round_idx, job.plans, job.clients, job.server
        ray = self._ray()
        self._setup(clients, server)
        self._restart_dead(clients)
        active = job.active
        cg = ray.put(job.client_global) if job.client_global is not None else None
        arrival = self.server_order == "arrival"
        if server is not None:
            begin = self._server.begin_round.remote(round_idx, job.server_global)
            if arrival:  # steps will come from other callers: begin must be done first
                ray.get(begin)
        if arrival:
            refs = self._submit_arrival(round_idx, plans, active, cg, server is not None)
            ray.wait(list(refs.values()), num_returns=len(refs))  # all steps done before end_round
        else:
            refs = self._submit_ordered(round_idx, plans, active, clients, cg, server is not None)
        srv_ref = self._server.end_round.remote() if server is not None else None
        out: dict[int, ClientRoundResult] = {}
        for c in active:
            try:
                res = ray.get(refs[c])
                out[c] = res[-1] if isinstance(res, list) else res
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                failures[c] = short_error(exc)
        if server is not None:
            try:
                copies, sstats = ray.get(srv_ref)
            except ray.exceptions.RayActorError as exc:
                raise SolverError(f"round {round_idx}: the server actor died ({short_error(exc)})") from exc
            for c, res in out.items():
                res.server_state = copies.get(c, {})
                res.server_stats = sstats.get(c)
        return out

    def _submit_ordered(self, r, plans, active, clients, cg, split: bool) -> dict:
        # per worker: its clients one after the other; server: workers round-robin by step
        queues: dict[int, list[tuple[int, int]]] = {}
        for c in active:
            queues.setdefault(self._owner[c], []).extend((c, b) for b in range(clients[c].loader.steps))
        refs: dict[int, list] = {c: [] for c in active}
        begun: set[int] = set()
        pos = dict.fromkeys(queues, 0)
        while any(pos[w] < len(q) for w, q in queues.items()):
            for w in sorted(queues):
                if pos[w] >= len(queues[w]):
                    continue
                c, b = queues[w][pos[w]]
                pos[w] += 1
                worker = self._workers[w]
                if c not in begun:
                    begun.add(c)
                    worker.begin_round.remote(c, r, plans[c], cg)
                if split:
                    msg = worker.forward.remote(c, r, b)
                    grad = self._server.step.remote(msg)
                    refs[c].append(worker.backward.remote(c, grad))
                else:
                    refs[c].append(worker.local_step.remote(c, r, b))
                if pos[w] == len(queues[w]) or queues[w][pos[w]][0] != c:
                    refs[c].append(worker.end_round.remote(c))
        for c in active:  # clients with zero steps
            if c not in begun:
                w = self._workers[self._owner[c]]
                w.begin_round.remote(c, r, plans[c], cg)
                refs[c].append(w.end_round.remote(c))
        return refs

    def _submit_arrival(self, r, plans, active, cg, split: bool) -> dict:
        return {c: self._workers[self._owner[c]].run_client.remote(
            c, r, plans[c], cg, self._server if split else None) for c in active}


#: ``get_backend("ray_backend", **kw)`` resolves here.
Backend = RayBackend
