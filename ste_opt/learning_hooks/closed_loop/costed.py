"""Costing a static schedule: :class:`CostedSchedule` prices each round of any schedule (e.g. the
all-tokens fp32 baseline ``StaticSchedule(None, 32)``) on the **same** fading draw as a
:class:`~.solver.SolverSchedule` with the same scenario and seed (:mod:`.pricing`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..schedule import ClientPlan
from ..spec import PlanContext
from .predict import round_upload_bits, solution_bits
from .pricing import evaluate_static_round
from .records import RoundRecords
from .scaling import round_scenario, scenario_for_model

__all__ = ["CostedSchedule"]


class CostedSchedule(RoundRecords):
    """Wrap a schedule (e.g. ``StaticSchedule(None, 32)``) and price each of its rounds on the
    same fading draws as a :class:`SolverSchedule` with the same ``scenario`` and ``seed``
    (:func:`~.pricing.evaluate_static_round`). Plans gain ``predicted`` latency, energy and bits."""

    def __init__(self, inner, *, scenario=None, seed: int = 0, bits: int = 8,
                 scenario_options: Mapping | None = None, name: str = "static"):
        self.inner = inner
        self.scenario = scenario
        self.seed = int(seed)
        self.bits = int(bits)
        self.scenario_options = dict(scenario_options or {})
        self.name = name
        self.records: list[dict] = []

    def eval_plan(self) -> ClientPlan:
        return self.inner.eval_plan() if hasattr(self.inner, "eval_plan") else ClientPlan(None, 32)

    def plan(self, round_idx: int, client_ids: Sequence[int],
             context: PlanContext) -> dict[int, ClientPlan | None]:
        spec = context.spec
        if self.scenario is None:
            self.scenario = scenario_for_model(spec, bits=self.bits, seed=self.seed, **self.scenario_options)
        raw = self.inner.plan(round_idx, client_ids, context)
        ids = [int(c) for c in client_ids]
        active = [c for c in ids if raw.get(c) is not None]
        scen = round_scenario(self.scenario, active, round_idx, self.seed)
        per_upload = [solution_bits(scen, i, raw[c].tokens_kept, int(raw[c].bits))
                      for i, c in enumerate(active)]
        cost = evaluate_static_round(scen, per_upload)
        plans: dict[int, ClientPlan | None] = {c: None for c in ids}
        per_client = {}
        pbits = 0
        for i, c in enumerate(active):
            p = raw[c]
            exact = round_upload_bits(spec, c, p.tokens_kept, int(p.bits))
            pred = {"latency_s": float(cost["latency"][i]), "energy_j": float(cost["energy"][i]),
                    "uplink_time_s": float(cost["uplink_time"][i]),
                    "bandwidth_hz": float(cost["bandwidth"][i]), "power_w": float(cost["power"][i]),
                    "solution_bits": per_upload[i], "predicted_bits": exact,
                    "deadline_met": bool(cost["latency"][i] <= scen.standing_time_s[i] * (1 + 1e-9)),
                    "energy_met": bool(cost["energy"][i] <= scen.energy_max_j[i] * (1 + 1e-9))}
            plans[c] = ClientPlan(p.tokens_kept, int(p.bits), {**dict(p.predicted), **pred})
            per_client[c] = {"tokens_kept": p.tokens_kept, "bits": int(p.bits), **pred}
            pbits += exact
        self.records.append({
            "round": int(round_idx), "schedule": self.name, "solved": False, "method": "evaluate",
            "status": "evaluated", "objective": None, "bound": None, "gap": None, "clients": ids,
            "participants": active, "excluded": [c for c in ids if c not in active],
            "excluded_reasons": {}, "straggler_s": cost["tau"], "energy_j": float(np.sum(cost["energy"])),
            "predicted_bits": int(pbits), "calibration_bits": 0,
            "deadline_violations": cost["deadline_violations"],
            "energy_violations": cost["energy_violations"], "per_client": per_client})
        return plans

    def __repr__(self) -> str:
        return f"CostedSchedule({self.inner!r})"
