"""Fan independent jobs (e.g. the instances of a solver sweep) out over Ray workers.

:func:`map_ray` is an ordered ``map``: the result list has the order of ``items`` whatever order
the workers finish in, and a job that raises re-raises its own exception here. Every job is a pure
function of its item (solvers take their seeds from the instance), so the rows equal those of the
serial loop; only wall-clock fields differ.

Without ``address`` a private Ray instance is started on 127.0.0.1 only (no dashboard) and shut
down afterwards; with ``address`` (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``) the jobs run
on that cluster, which is left running. Ray is imported only when this is called.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["map_ray", "sweep_ray", "TIMING_FIELDS"]

#: row fields that measure wall-clock time (they differ between any two runs, serial or not)
TIMING_FIELDS = ("time_s", "time_vs_global")

T = TypeVar("T")
R = TypeVar("R")


def _call(fn: Callable[[Any], Any], item: Any, threads: int | None) -> Any:
    if threads:
        import os

        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
    return fn(item)


def map_ray(fn: Callable[[T], R], items: Iterable[T], *, num_cpus: int | None = None,
            address: str | None = None, cpus_per_task: float = 1.0,
            threads_per_task: int | None = 1, max_in_flight: int | None = None,
            **ray_init_kwargs: Any) -> list[R]:
    """``[fn(x) for x in items]`` computed by Ray tasks, in the order of ``items``.

    Parameters
    ----------
    fn : callable
        A picklable function of one item (module-level functions and ``functools.partial`` work).
    items : iterable
        Job inputs; each is pickled to the worker.
    num_cpus : int, optional
        CPUs of the private instance (default: Ray's detection). Ignored with ``address``.
    address : str, optional
        Join this Ray cluster instead of starting a private one.
    cpus_per_task : float
        Ray CPU reservation per job (bounds how many run at once).
    threads_per_task : int or None
        BLAS/OpenMP threads per worker (set only when the worker has not set them).
    max_in_flight : int, optional
        Submit at most this many jobs ahead (bounds memory for long sweeps).
    """
    from ..learning_hooks.backends.ray_backend import init_local_ray

    jobs: Sequence[T] = list(items)
    if not jobs:
        return []
    started = init_local_ray(num_cpus, address=address, **ray_init_kwargs)
    import ray

    try:
        task = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_call)
        fn_ref = ray.put(fn)
        limit = int(max_in_flight) if max_in_flight else len(jobs)
        refs: list = []
        for i, item in enumerate(jobs):
            if i >= limit:
                ray.wait(refs[: i - limit + 1], num_returns=i - limit + 1)
            refs.append(task.remote(fn_ref, item, threads_per_task))
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
        return out
    finally:
        if started:
            ray.shutdown()


def _run_job(args: tuple) -> dict:
    from .solver_sweep import run_instance

    return run_instance(*args)


def sweep_ray(*, num_cpus: int | None = None, address: str | None = None, cpus_per_task: float = 1.0,
              progress=None, **sweep_kwargs: Any) -> list[dict]:
    """:func:`ste_opt.bench.solver_sweep.sweep` with the instances solved by Ray tasks.

    Takes the keyword arguments of ``bench.sweep`` (``sizes``, ``seeds``, ``methods``, ``preset``,
    ``caps``, ``options``, ``seeds_for``, ``max_seeds``, ``n_tokens``; ``runner`` must stay the
    default). The sweep is first walked with a recording runner to list its jobs, the jobs run
    through :func:`map_ray`, and the sweep is walked again replaying their rows in order, so the
    cross-method fields (best bound, gap to the best bound) are computed by the same code as the
    serial sweep. Rows equal the serial sweep's except :data:`TIMING_FIELDS` (jobs running side by
    side share the CPUs: keep ``num_cpus`` at most the physical cores for meaningful times).
    """
    from . import solver_sweep as bench

    if "runner" in sweep_kwargs:
        raise TypeError("sweep_ray runs bench.run_instance; do not pass runner=")
    jobs: list[tuple] = []

    def record(*args):
        jobs.append(args)
        return {"method": args[3], "bound": math.nan, "objective": math.nan, "error": "pending",
                "check_ok": False, "time_s": math.nan}

    bench.sweep(runner=record, **sweep_kwargs)
    rows = map_ray(_run_job, jobs, num_cpus=num_cpus, address=address, cpus_per_task=cpus_per_task)
    it = iter(rows)
    return bench.sweep(runner=lambda *args: next(it), progress=progress, **sweep_kwargs)
