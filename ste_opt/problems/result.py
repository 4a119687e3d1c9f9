"""Result types: :class:`Solution` (what every solver returns, like scipy's ``OptimizeResult``)
and :class:`CheckReport` (what ``problem.check`` returns).

Field names carry their units (``bandwidth_hz``, ``power_w``, ``bit_width``, ``latency_s``,
``uplink_time_s``, ``energy_j``); the names of version 0.1 (``bandwidth``, ``power``, ``bits``,
``latency``, ``uplink_time``, ``energy``) stay available as aliases, as keyword arguments and in
files read by :meth:`Solution.from_dict`.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["Solution", "CheckReport", "STATUSES", "LEGACY_NAMES"]

STATUSES = ("optimal", "feasible", "infeasible", "time_limit", "error")

ARRAY_FIELDS = ("tokens", "bandwidth_hz", "power_w", "bit_width", "assignment", "latency_s",
                "uplink_time_s", "energy_j", "retention")

#: old attribute name -> new one (the old names stay readable and writable)
LEGACY_NAMES = {"bandwidth": "bandwidth_hz", "power": "power_w", "bits": "bit_width",
                "latency": "latency_s", "uplink_time": "uplink_time_s", "energy": "energy_j"}


@dataclass
class CheckReport:
    """Worst violation of each constraint, relative to its limit (0 = satisfied).

    ``ok`` is True when every violation is at most ``tol``.
    """

    violations: dict
    tol: float

    @property
    def max_violation(self) -> float:
        return max(self.violations.values()) if self.violations else 0.0

    @property
    def ok(self) -> bool:
        return self.max_violation <= self.tol

    def worst(self) -> str:
        if not self.violations:
            return "none"
        k = max(self.violations, key=self.violations.get)
        return f"{k} ({self.violations[k]:.3g})"

    def __repr__(self) -> str:
        return f"CheckReport(ok={self.ok}, max_violation={self.max_violation:.3g}, worst={self.worst()})"


def _legacy(name: str):
    new = LEGACY_NAMES[name]

    def get(self):
        return getattr(self, new)

    def set_(self, value):
        setattr(self, new, value)

    return property(get, set_, doc=f"Alias of ``{new}`` (the name of version 0.1).")


@dataclass(init=False)
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
    tokens, bandwidth_hz, power_w, bit_width, assignment : arrays (M,) or None
        The allocation: kept patch tokens K_m, bandwidth W_m (Hz), power p_m (W), bits per
        element b_m, subchannel index of each device. Excluded devices have 0 tokens, 0 Hz, 0 W.
    latency_s : array (M,)
        Device time in the round up to the end of its upload, ``T0 + T^U`` (s).
    uplink_time_s : array (M,)
        Upload time ``T^U = S / R`` (s).
    energy_j : array (M,)
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
    bandwidth_hz: np.ndarray | None = None
    power_w: np.ndarray | None = None
    bit_width: np.ndarray | None = None
    assignment: np.ndarray | None = None
    latency_s: np.ndarray | None = None
    uplink_time_s: np.ndarray | None = None
    energy_j: np.ndarray | None = None
    retention: np.ndarray | None = None
    excluded: list[int] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    time_s: float = 0.0
    method: str = ""
    iterations: int = 0
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __init__(self, status: str, objective: float, **values):
        for old, new in LEGACY_NAMES.items():
            if old in values:
                if new in values:
                    raise TypeError(f"Solution got both {old!r} and {new!r}")
                values[new] = values.pop(old)
        names = {f.name for f in fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise TypeError(f"Solution got unexpected field(s) {', '.join(unknown)}")
        self.status = status
        self.objective = objective
        for f in fields(self):
            if f.name in ("status", "objective"):
                continue
            if f.name in values:
                setattr(self, f.name, values[f.name])
            elif f.default_factory is not MISSING:
                setattr(self, f.name, f.default_factory())
            else:
                setattr(self, f.name, f.default)

    bandwidth = _legacy("bandwidth")
    power = _legacy("power")
    bits = _legacy("bits")
    latency = _legacy("latency")
    uplink_time = _legacy("uplink_time")
    energy = _legacy("energy")

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
        data = {LEGACY_NAMES.get(k, k): v for k, v in dict(data).items()}
        for name in ARRAY_FIELDS:
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

        cols = {n: getattr(self, n) for n in ARRAY_FIELDS if getattr(self, n) is not None}
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
