"""Checks shared by the problems' ``check()``: the solution fits the problem, the bound holds.

A solution of another size, without the problem's arrays (``tokens=None``), or of the other
problem kind is refused with :class:`~ste_opt.errors.InvalidScenarioError` (``field="solution"``)
before anything is evaluated; a proven bound on the wrong side of the objective (below it for a
maximization, above it for a minimization) is reported as the ``bound`` violation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidScenarioError
from .result import Solution

__all__ = ["require_arrays", "bound_violation"]


def require_arrays(solution, names: Sequence[str], n: int, problem: str) -> list[np.ndarray]:
    """The solution's arrays ``names`` as float arrays of shape (n,); one-line refusal otherwise."""
    if not isinstance(solution, Solution):
        raise InvalidScenarioError(f"{problem}.check needs a Solution, got {type(solution).__name__}",
                                   field="solution")
    out = []
    for name in names:
        v = getattr(solution, name)
        if v is None:
            raise InvalidScenarioError(f"solution has no {name} (a solution of another problem?): "
                                       f"{problem} needs {', '.join(names)}", field="solution")
        try:
            arr = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise InvalidScenarioError(f"solution {name} must be numbers", field="solution") from None
        if arr.shape != (n,):
            raise InvalidScenarioError(f"solution {name} has shape {arr.shape} but the problem has {n} "
                                       "devices (a solution of another instance?)", field="solution")
        out.append(arr)
    return out


def bound_violation(solution, objective: float | None, sense: str) -> float:
    """Relative amount by which the solution's bound is on the wrong side of ``objective``."""
    b = solution.bound
    if b is None or objective is None:
        return 0.0
    try:
        b, obj = float(b), float(objective)
    except (TypeError, ValueError):
        return math.inf
    if math.isnan(b):
        return math.inf
    if not math.isfinite(obj):
        return 0.0
    diff = (obj - b) if sense == "max" else (b - obj)
    return max(diff, 0.0) / max(abs(b), abs(obj), 1e-300)

