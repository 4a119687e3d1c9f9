"""Scenarios: the data of one round (devices, channel, model spec) and the preset registry.

- :mod:`.base`: what every scenario class shares (validation helpers, serialization);
- :mod:`.ste`: :class:`Scenario` (ST-SFLora) and the ``"st-sflora"`` preset;
- :mod:`.sflam`: :class:`SFLAMScenario` and the ``"sflam"`` preset;
- :mod:`.presets`: :data:`PRESETS`, :func:`register_preset`, :func:`make_scenario`.

Importing this package registers every preset.
"""
from .presets import PRESETS, make_scenario, register_preset
from .sflam import SFLAM_DEFAULTS, SFLAMScenario
from .ste import STSFLORA_DEFAULTS, Scenario

__all__ = ["Scenario", "SFLAMScenario", "PRESETS", "make_scenario", "register_preset",
           "STSFLORA_DEFAULTS", "SFLAM_DEFAULTS", "scenario_classes"]


def scenario_classes() -> dict:
    """Scenario classes by their file tag ``kind``."""
    return {Scenario.kind: Scenario, SFLAMScenario.kind: SFLAMScenario}
