"""Problems: an allocation problem on a scenario (variables, objective, limits, evaluation, check)
and the result types. Problems call :mod:`ste_opt.model`; they never import the solvers."""
from .result import CheckReport, Solution

__all__ = ["CheckReport", "Solution"]
