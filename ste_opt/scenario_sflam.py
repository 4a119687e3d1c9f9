"""Compatibility alias: the SFLAM scenario now lives in :mod:`ste_opt.scenarios.sflam`."""
from .model.convergence import quantization_error  # noqa: F401
from .scenarios.sflam import *  # noqa: F401,F403
from .scenarios.sflam import __all__ as _sflam_all

__all__ = [*_sflam_all, "quantization_error"]
