"""Solvers: the method registry and :func:`solve`, the Pareto sweep, and one package of methods
per problem (:mod:`.ste`, :mod:`.sflam`), imported on first use of the registry."""
from ..problems.result import Solution
from .pareto import ParetoFront, pareto
from .registry import list_methods, register, solve

__all__ = ["Solution", "solve", "list_methods", "register", "pareto", "ParetoFront"]
