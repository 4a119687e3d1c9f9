"""Method registry and the single entry point :func:`solve` (scipy.optimize style)."""
from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SolverError
from ..problems.result import Solution
from ..validate import Opt, check_options, usage_error
from .options import option_specs

__all__ = ["register", "solve", "list_methods", "MethodInfo"]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str            # problem kind: "ste" or "sflam"
    func: Callable
    summary: str
    bound: str           # "none", "bound" or "exact"
    options: tuple[str, ...]
    specs: dict[str, Opt] = field(default_factory=dict)   # name -> declared type and range


_REGISTRY: dict[tuple[str, str], MethodInfo] = {}
# Modules that register methods; imported on first use so `import ste_opt` stays light.
_SOLVER_MODULES = ("ste.alternating", "ste.baselines", "ste.milp", "ste.global_", "ste.reference",
                   "sflam.bcd", "sflam.baselines", "sflam.milp", "sflam.exact")
_loaded = False


def register(kind: str, name: str, summary: str, bound: str = "none"):
    """Decorator: register ``func(problem, **options) -> Solution`` as method ``name``."""
    def deco(func):
        params = inspect.signature(func).parameters
        opts = tuple(p for p in list(params)[1:] if params[p].kind is not inspect.Parameter.VAR_KEYWORD)
        _REGISTRY[(kind, name)] = MethodInfo(name, kind, func, summary, bound, opts,
                                             option_specs(kind, name, func))
        return func
    return deco


def _load():
    global _loaded
    if _loaded:
        return
    for mod in _SOLVER_MODULES:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as exc:
            # only a solver module that does not exist (yet) is skipped; a missing third-party
            # dependency inside an existing module is reported when that method is called
            if exc.name != f"{__package__}.{mod}":
                raise
    _loaded = True


def list_methods(problem=None) -> list[MethodInfo]:
    """Registered methods, for one problem (or problem kind) or all."""
    _load()
    kind = problem if isinstance(problem, str) or problem is None else problem.kind
    return [m for (k, _), m in sorted(_REGISTRY.items()) if kind is None or k == kind]


def solve(problem, method: str | None = None, **options) -> Solution:
    """Solve an allocation problem.

    Parameters
    ----------
    problem : STEProblem or SFLAMProblem
    method : str
        A registered method name (``ste_opt.list_methods(problem)``); default ``"alternating"``
        for the STE problem and ``"bcd"`` for SFLAM.
    **options
        Method options, checked against the method's declared types and ranges
        (:mod:`ste_opt.solvers.options`) before any work: an unknown option or a bad value raises
        :class:`SolverError` naming it.

    Returns
    -------
    Solution
        With ``time_s`` and ``method`` filled in. Every returned allocation passes
        ``problem.check``.
    """
    _load()
    if method is None:
        method = {"ste": "alternating", "sflam": "bcd"}.get(problem.kind)
    info = _REGISTRY.get((problem.kind, method))
    if info is None:
        names = ", ".join(m.name for m in list_methods(problem))
        raise usage_error(f"unknown method {method!r} for the {problem.kind} problem; available: {names}")
    options = check_options(info.specs, options, f"method {method!r}", SolverError)
    t0 = time.perf_counter()
    sol = info.func(problem, **options)
    sol.time_s = time.perf_counter() - t0
    sol.method = method
    return sol
