"""Former home of the closed loop, kept so that ``from ste_opt.learning_hooks.solver_schedule
import SolverSchedule`` keeps working; the code lives in :mod:`ste_opt.learning_hooks.closed_loop`
(one job per module). Schedules now receive a :class:`~ste_opt.learning_hooks.spec.PlanContext`
instead of the trainer.
"""
from __future__ import annotations

from typing import Any

from .closed_loop import (
    FADING_STREAM,
    CostedSchedule,
    SolverSchedule,
    evaluate_static_round,
    round_scenario,
    scenario_for_model,
    scenario_for_spec,
    sflam_scenario_for_model,
)

__all__ = ["SolverSchedule", "CostedSchedule", "scenario_for_trainer", "scenario_for_spec",
           "scenario_for_model", "sflam_scenario_for_trainer", "round_scenario",
           "evaluate_static_round", "samples_per_round", "FADING_STREAM"]


def samples_per_round(trainer: Any) -> dict[int, int]:
    """Samples each client uploads in one round (``trainer.model_spec().samples_per_round()``)."""
    return trainer.model_spec().samples_per_round()


def scenario_for_trainer(trainer: Any, *, bits: int = 8, **options):
    """:func:`~ste_opt.learning_hooks.closed_loop.scaling.scenario_for_model` of
    ``trainer.model_spec()``."""
    return scenario_for_model(trainer.model_spec(), bits=bits, **options)


def sflam_scenario_for_trainer(trainer: Any, **options):
    """:func:`~ste_opt.learning_hooks.closed_loop.scaling.sflam_scenario_for_model` of
    ``trainer.model_spec()``."""
    return sflam_scenario_for_model(trainer.model_spec(), **options)
