"""The one result type of every solver (like scipy's ``OptimizeResult``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["Solution", "STATUSES"]

STATUSES = ("optimal", "feasible", "infeasible", "time_limit", "error")

_ARRAYS = ("tokens", "bandwidth", "power", "bits", "assignment", "latency", "uplink_time",
           "energy", "retention")


@dataclass
class Solution:
    """An allocation with its quality certificate.

    Attributes
    ----------
    status : {"optimal", "feasible", "infeasible", "time_limit", "error"}
        ``optimal`` means certified within the method's tolerance (``gap <= tol``).
    objective : float
        Objective of the allocation as evaluated by the problem (STE in retained attention mass
        per second for the STE problem, to maximize; the weighted latency–energy cost for SFLAM,
        to minimize).
    bound : float or None
        A proven bound on the optimum (upper for maximization, lower for minimization), or None.
    gap : float or None
        Relative gap ``|bound - objective| / |bound|`` (None without a bound).
    tokens, bandwidth, power, bits, assignment : arrays (M,) or None
        The allocation: kept patch tokens K_m, bandwidth W_m (Hz), power p_m (W), bits per
        element b_m, subchannel index of each device. Excluded devices have 0 tokens, 0 Hz, 0 W.
    latency : array (M,)
        Device time in the round up to the end of its upload, ``T0 + T^U`` (s).
    uplink_time : array (M,)
        Upload time ``T^U = S / R`` (s).
    energy : array (M,)
        Energy counted by the problem's energy limit (J).
    retention : array (M,)
        Retained semantic mass ``f_m(K_m)``.
    excluded : list of int
        Devices that sit the round out (cannot meet their limits even alone), with reasons in
        ``info["excluded_reasons"]``.
    history : list of float
        Objective after each iteration (monotone for the iterative methods).
    time_s : float
        Wall-clock solve time (s). ``method`` : the registry name. ``iterations`` : outer iterations.
    info : dict
        Method-specific extras (straggler time, nodes explored, solver logs, ...).
    """

    status: str
    objective: float
    bound: float | None = None
    gap: float | None = None
    tokens: np.ndarray | None = None
    bandwidth: np.ndarray | None = None
    power: np.ndarray | None = None
    bits: np.ndarray | None = None
    assignment: np.ndarray | None = None
    latency: np.ndarray | None = None
    uplink_time: np.ndarray | None = None
    energy: np.ndarray | None = None
    retention: np.ndarray | None = None
    excluded: list[int] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    time_s: float = 0.0
    method: str = ""
    iterations: int = 0
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.status in ("optimal", "feasible", "time_limit") and np.isfinite(self.objective)

    def set_bound(self, bound: float | None, sense: str = "max") -> None:
        """Attach a bound and compute the relative gap (clipped at 0 for rounding noise)."""
        self.bound = None if bound is None else float(bound)
        if self.bound is None or not np.isfinite(self.objective):
            self.gap = None
            return
        denom = max(abs(self.bound), 1e-300)
        diff = (self.bound - self.objective) if sense == "max" else (self.objective - self.bound)
        self.gap = max(diff, 0.0) / denom

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = _plain(v)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> Solution:
        data = dict(data)
        for name in _ARRAYS:
            if data.get(name) is not None:
                arr = np.asarray(data[name])
                data[name] = arr.astype(float) if arr.dtype == object else arr
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def to_frame(self):
        """Per-device table as a pandas DataFrame (requires pandas)."""
        try:
            import pandas as pd  # optional dependency
        except ImportError as exc:
            raise ImportError("Solution.to_frame needs pandas: pip install pandas") from exc

        cols = {n: getattr(self, n) for n in _ARRAYS if getattr(self, n) is not None}
        frame = pd.DataFrame(cols)
        frame["excluded"] = [i in set(self.excluded) for i in range(len(frame))]
        return frame

    def __repr__(self) -> str:
        b = "None" if self.bound is None else f"{self.bound:.6g}"
        g = "None" if self.gap is None else f"{self.gap:.3g}"
        return (f"Solution(method={self.method!r}, status={self.status!r}, objective={self.objective:.6g}, "
                f"bound={b}, gap={g}, time_s={self.time_s:.3g}, excluded={len(self.excluded)})")


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None if np.isnan(v) else (1e308 if v > 0 else -1e308)
    return v
