"""Compatibility alias: the ST-SFLora scenario now lives in :mod:`ste_opt.scenarios.ste`."""
from .scenarios import PRESETS, make_scenario, register_preset  # noqa: F401
from .scenarios.ste import *  # noqa: F401,F403
from .scenarios.ste import __all__ as _ste_all

__all__ = [*_ste_all, "PRESETS", "make_scenario", "register_preset"]
