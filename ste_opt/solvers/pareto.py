"""Pareto fronts of the SFLAM problem: solve it for a sweep of the latency weight ω."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidScenarioError
from ..problems.sflam import SFLAMProblem
from .registry import solve

__all__ = ["ParetoFront", "pareto"]


@dataclass
class ParetoFront:
    """Total latency and energy (to reach the target) of the solutions for a sweep of ω.

    ``points`` is an (n, 2) array of (total latency s, total energy J); ``nondominated`` marks the
    points no other point beats in both.
    """

    omegas: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    solutions: list = field(default_factory=list)
    method: str = "bcd"

    @property
    def points(self) -> np.ndarray:
        return np.column_stack([self.latency_s, self.energy_j])

    @property
    def nondominated(self) -> np.ndarray:
        pts = self.points
        keep = np.ones(len(pts), dtype=bool)
        for i, (t, e) in enumerate(pts):
            dom = (pts[:, 0] <= t) & (pts[:, 1] <= e) & ((pts[:, 0] < t) | (pts[:, 1] < e))
            keep[i] = not dom.any()
        return keep

    def __len__(self) -> int:
        return len(self.omegas)

    def __iter__(self):
        return iter(zip(self.latency_s.tolist(), self.energy_j.tolist()))

    def to_rows(self) -> list[dict]:
        return [dict(omega=float(o), total_latency_s=float(t), total_energy_j=float(e),
                     bits=(None if s.bit_width is None else int(np.max(s.bit_width))),
                     objective=float(s.objective))
                for o, t, e, s in zip(self.omegas, self.latency_s, self.energy_j, self.solutions)]


def pareto(problem: SFLAMProblem, omegas=None, method: str = "bcd", **options) -> ParetoFront:
    """Sweep ω and return the (total latency, total energy) of each solution.

    Every ω uses the same T_ref and E_ref as ``problem``. ``omegas`` defaults to 0, 0.1, ..., 1.
    ``method`` and ``options`` go to :func:`ste_opt.solve`.
    """
    if not isinstance(problem, SFLAMProblem):
        raise InvalidScenarioError("pareto needs an SFLAMProblem", field="problem")
    om = np.linspace(0.0, 1.0, 11) if omegas is None else np.asarray(omegas, dtype=float).ravel()
    if om.size == 0 or np.any(~np.isfinite(om)) or np.any((om < 0) | (om > 1)):
        raise InvalidScenarioError("omegas must be values in [0, 1]", field="omegas")
    sols, lat, en = [], [], []
    for w in om:
        sol = solve(problem.with_omega(float(w)), method=method, **options)
        sols.append(sol)
        lat.append(sol.info["total_latency_s"])
        en.append(sol.info["total_energy_j"])
    return ParetoFront(om, np.asarray(lat), np.asarray(en), sols, method)
