"""Compatibility alias of :mod:`ste_opt.model.payload` (the formulas live there)."""
from .model.payload import *  # noqa: F401,F403
from .model.payload import __all__  # noqa: F401
