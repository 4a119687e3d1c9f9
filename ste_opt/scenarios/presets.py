"""The preset registry: named builders of scenarios (``make_scenario("st-sflora", ...)``).

Every preset module of this package registers its builders on import; importing
:mod:`ste_opt.scenarios` imports them all, so :data:`PRESETS` is complete.
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidScenarioError

__all__ = ["PRESETS", "register_preset", "make_scenario"]

PRESETS: dict[str, Callable[..., object]] = {}


def register_preset(name: str):
    """Decorator registering a scenario builder ``f(n_devices=..., seed=..., **overrides)``."""
    def deco(fn):
        PRESETS[name] = fn
        return fn
    return deco


def make_scenario(preset: str = "st-sflora", **kwargs):
    """Build a scenario from a registered preset (``ste_opt.PRESETS``)."""
    if preset not in PRESETS:
        raise InvalidScenarioError(
            f"unknown preset {preset!r}; available: {', '.join(sorted(PRESETS))}", field="preset")
    return PRESETS[preset](**kwargs)
