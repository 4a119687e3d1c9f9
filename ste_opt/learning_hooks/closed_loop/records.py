"""Records of a schedule's rounds: one dict per round, and their totals.

A round record holds the solution's status, objective and (with ``certify``) certified gap, each
client's predicted latency, energy, uplink time, bandwidth, power, retention and payload bits
(``per_client``), the straggler time (max latency over participants) and the round energy (sum over
participants). Simulated training time = Σ over rounds of the straggler time.
"""
from __future__ import annotations

__all__ = ["RoundRecords", "solution_prediction", "certified_gap"]


def _value(array, i: int) -> float:
    return float(array[i]) if array is not None else float("nan")


def solution_prediction(solution, i: int) -> dict[str, float]:
    """Device ``i``'s predicted latency, energy, uplink time, bandwidth, power and retention in a
    solution (``nan`` where the solution does not state it)."""
    return {"latency_s": float(solution.latency_s[i]), "energy_j": float(solution.energy_j[i]),
            "uplink_time_s": _value(solution.uplink_time_s, i),
            "bandwidth_hz": _value(solution.bandwidth_hz, i), "power_w": _value(solution.power_w, i),
            "retention": _value(solution.retention, i)}


def certified_gap(problem, objective: float, bound: float | None) -> float | None:
    """Relative gap of ``objective`` to a certified ``bound`` (None without a positive bound)."""
    if bound is None or not bound > 0:
        return None
    if problem.sense == "max":
        return max(0.0, (bound - objective) / abs(bound))
    return max(0.0, (objective - bound) / abs(bound))


class RoundRecords:
    """Per-round records (:attr:`records`) and their totals."""

    records: list[dict]

    def totals(self) -> dict:
        """Σ straggler time (simulated training time, s), Σ energy (J), predicted bits."""
        return {"rounds": len(self.records),
                "simulated_time_s": float(sum(r["straggler_s"] for r in self.records)),
                "energy_j": float(sum(r["energy_j"] for r in self.records)),
                "predicted_bits": int(sum(r["predicted_bits"] for r in self.records)),
                "excluded_device_rounds": int(sum(len(r["excluded"]) for r in self.records))}
