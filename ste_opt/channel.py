"""Compatibility alias of :mod:`ste_opt.model.channel` (the formulas live there)."""
from .model.channel import *  # noqa: F401,F403
from .model.channel import __all__  # noqa: F401
