"""Benchmark drivers above the solvers: the STE solver sweep (:mod:`.solver_sweep`) and its Ray
fan-out (:mod:`.ray_sweep`, which uses the Ray set-up of the learning hooks; Ray is imported only
when called). The sweep functions are re-exported here (``ste_opt.bench.sweep``)."""
from .solver_sweep import (
    DEFAULT_CAPS,
    DEFAULT_METHODS,
    DEFAULT_OPTIONS,
    check_sweep_args,
    make_instance,
    run_instance,
    summarize,
    sweep,
)

__all__ = ["DEFAULT_METHODS", "DEFAULT_CAPS", "DEFAULT_OPTIONS", "make_instance", "run_instance",
           "sweep", "summarize", "check_sweep_args"]
