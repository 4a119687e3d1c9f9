"""Compatibility alias of :mod:`ste_opt.bench.ray_sweep` (``map_ray``, ``sweep_ray``)."""
from .bench.ray_sweep import *  # noqa: F401,F403
from .bench.ray_sweep import __all__  # noqa: F401
