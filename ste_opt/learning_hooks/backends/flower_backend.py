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
  ``ste_opt/learning_hooks/flower_app`` and ``docs/distributed.md``.

Telemetry is switched off (``FLWR_TELEMETRY_ENABLED=0``) unless the caller set it.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import SolverError
from ..results import ClientRoundResult
from .base import RoundJob, RoundTemplate
from .flower_client import ShippedRoles, client_handle, make_client_app
from .flower_protocol import MESSAGE_TYPE, parse_exchange
from .flower_server import GridDriver
from .ray_backend import init_local_ray
from .sealed import seal

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

__all__ = ["FlowerBackend", "Backend", "parse_exchange", "make_client_app", "client_handle",
           "GridDriver", "MESSAGE_TYPE"]


# --------------------------------------------------------------------------- simulation engine
class Simulation:
    """Flower's simulation engine in a background thread; the ServerApp serves round commands."""

    def __init__(self, num_nodes: int, roles: ShippedRoles, backend_config: Mapping, driver_kw: dict):
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


class FlowerBackend(RoundTemplate):
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
        super().__init__()
        self.last_messages: dict[int, int] = {}
        self._driver: GridDriver | None = None
        self._sim: Simulation | None = None
        self._roles = ShippedRoles()
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

        self._started_ray = init_local_ray(self.num_cpus) or self._started_ray
        self._roles.ref = ray.put(seal(dict(clients), self._roles.key))
        self._roles.ids = sorted(clients)
        self._shipped_key = key

    def train_clients(self, job: RoundJob, failures: dict[int, str]) -> dict[int, ClientRoundResult]:
        """The round through the grid (or the simulation engine); failed clients go into
        ``failures`` (see :attr:`last_failures`)."""

        def run(driver, *args):
            driver.exchange, driver.chunk = self.exchange, parse_exchange(self.exchange)
            driver.allow_stale_client = self.allow_stale_client
            out = driver.run_round(*args)
            return out, dict(driver.messages)

        args = (job.round_idx, job.plans, job.clients, job.server, job.client_global, job.server_global,
                failures)
        if self.grid is not None:
            if self._driver is None:
                self._driver = GridDriver(self.grid, **self._driver_kw())
            out, self.last_messages = run(self._driver, *args)
        else:
            if self._sim is not None and len(job.clients) != self._num_nodes:
                self.close()
            self._ship(job.clients)
            if self._sim is None:
                self._num_nodes = len(job.clients)
                cfg = {"client_resources": {"num_cpus": self.client_cpus,
                                            "num_gpus": float(self.client_gpus)},
                       "init_args": {"include_dashboard": False, "log_to_driver": False}}
                self._sim = Simulation(len(job.clients), self._roles, cfg, self._driver_kw())
            out, self.last_messages = self._sim.call(run, *args, timeout_s=self.timeout_s + 600)
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


#: ``get_backend("flower_backend", **kw)`` resolves here.
Backend = FlowerBackend
