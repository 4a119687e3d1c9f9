"""The closed loop: solver-driven schedules (docs/closed_loop.md). One job per module:

- ``scaling``    a scenario for the trained model (payload scaling ρ), the round's scenario
- ``pricing``    what a fixed plan costs on a round's scenario (static baselines)
- ``admission``  drop devices until the rest fit the bandwidth budget at K_min
- ``predict``    the bits each client will measure, and the solution's S_m
- ``records``    per-round records and totals
- ``solver``     :class:`SolverSchedule` (planning)
- ``costed``     :class:`CostedSchedule` (a static schedule, priced)

Schedules receive a :class:`~ste_opt.learning_hooks.spec.PlanContext` (typed model spec and a
profile callback), never the trainer. Importing this package does not import torch.
"""
from .admission import bandwidth_need_at_kmin, build_with_admission
from .costed import CostedSchedule
from .predict import round_upload_bits, solution_bits
from .pricing import evaluate_static_round
from .records import RoundRecords
from .scaling import (
    FADING_STREAM,
    check_scenario_matches,
    round_scenario,
    scenario_for_model,
    scenario_for_spec,
    sflam_scenario_for_model,
)
from .solver import SolverSchedule

__all__ = ["SolverSchedule", "CostedSchedule", "RoundRecords", "scenario_for_spec", "scenario_for_model",
           "sflam_scenario_for_model", "round_scenario", "check_scenario_matches", "FADING_STREAM",
           "evaluate_static_round", "bandwidth_need_at_kmin", "build_with_admission",
           "round_upload_bits", "solution_bits"]
