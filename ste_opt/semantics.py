"""Compatibility alias of :mod:`ste_opt.model.semantics` (the formulas live there)."""
from .model.semantics import *  # noqa: F401,F403
from .model.semantics import __all__  # noqa: F401
