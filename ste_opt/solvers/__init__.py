"""Solvers: one module per method, a registry, one result type."""
from .registry import list_methods, register, solve
from .result import Solution

__all__ = ["Solution", "solve", "list_methods", "register"]
