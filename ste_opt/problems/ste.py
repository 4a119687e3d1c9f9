"""The ST-SFLora problem: maximize Semantic Transmission Efficiency (docs/MODEL.md §3).

Variables per device: tokens K_m ∈ {K_min..N} (integer), bandwidth W_m ≥ 0 (Hz),
power 0 ≤ p_m ≤ p_max_m (W)::

    maximize   Σ_m w_m f_m(K_m) / max_m D_m          D_m = T^U_m ("uplink") or T0_m + T^U_m ("round")
    subject to Σ_m W_m ≤ W_tot
               p_m T^U_m (+ E^F_m) ≤ E_max_m        (energy; compute energy optional)
               T0_m + T^U_m ≤ T_stand_m             (latency / mobility)
               f_m(K_m) ≥ ρ f_m(N)                  (optional retention floor)

with T^U_m = S_m(K_m) / R_m(W_m, p_m). Devices that cannot meet their own limits even alone
(all bandwidth, best power, K_min) are excluded before solving (the paper's mobility-aware
selection) and reported; ``strict=True`` raises :class:`InfeasibleError` instead.

Structure used by the solvers: for a straggler time τ, device m's upload window is
``t_m(τ) = min(τ, T_stand - T0)`` ("uplink") or ``min(τ - T0, T_stand - T0)`` ("round"); sending
S bits within t at power ``p̂ = min(p_max, E/t)`` is optimal, so the least bandwidth is
``W_min_m(K, τ) = R^{-1}(S(K)/t; p̂)`` (:class:`ste_opt.model.allocation.UplinkWindows`),
convex increasing in K and non-increasing in τ.
"""
from __future__ import annotations

import numpy as np

from ..errors import InfeasibleError, InvalidScenarioError
from ..model import channel
from ..model.allocation import UplinkWindows, admit
from ..model.semantics import retention_table
from ..scenarios.ste import Scenario
from .result import CheckReport, Solution

__all__ = ["STEProblem", "CheckReport", "DENOMINATORS"]

DENOMINATORS = ("round", "uplink")


class STEProblem:
    """The ST-SFLora allocation problem on a :class:`~ste_opt.Scenario`.

    Parameters
    ----------
    scenario : Scenario
    denominator : {"round", "uplink"}
        STE denominator: the straggler's round time ``max (T0 + T^U)`` (default; shows the
        paper's interior STE peak in K) or its uplink time ``max T^U`` (as reconstructed from the
        paper's Eq. 20; with concave retention its optimum is every device at K_min).
    include_compute_energy : bool
        Count the client's forward energy in the energy limit.
    weights : array (M,), optional
        Weight of each device's retention in the objective (default 1).
    retention_floor : float in [0, 1]
        ρ: each device keeps at least ``ρ f_m(N)`` of its attention mass.
    strict : bool
        Raise :class:`InfeasibleError` when any device must be excluded.
    """

    kind = "ste"
    sense = "max"

    def __init__(self, scenario: Scenario, *, denominator: str = "round",
                 include_compute_energy: bool = False, weights=None,
                 retention_floor: float = 0.0, strict: bool = False):
        if not isinstance(scenario, Scenario):
            raise InvalidScenarioError(f"STEProblem needs a Scenario, got {type(scenario).__name__}",
                                       field="scenario")
        if denominator not in DENOMINATORS:
            raise InvalidScenarioError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}",
                                       field="denominator")
        if not 0.0 <= float(retention_floor) <= 1.0:
            raise InvalidScenarioError(f"retention_floor must be in [0, 1], got {retention_floor}",
                                       field="retention_floor")
        self.scenario = scenario
        self.denominator = denominator
        self.include_compute_energy = bool(include_compute_energy)
        self.retention_floor = float(retention_floor)
        self.strict = bool(strict)
        m = scenario.n_devices
        w = np.ones(m) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (m,):
            raise InvalidScenarioError(f"weights must have {m} entries, got shape {w.shape}", field="weights")
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            d = int(np.flatnonzero(bad)[0])
            raise InvalidScenarioError(f"weights[{d}] = {w[d]!r} for device {d}: must be >= 0 and finite",
                                       field="weights", device=d)
        self.weights_all = w
        self.options = dict(denominator=denominator, include_compute_energy=self.include_compute_energy,
                            retention_floor=self.retention_floor, strict=self.strict)
        self._setup()

    # ------------------------------------------------------------------ set-up and admission
    def _setup(self):
        s = self.scenario
        self.n_total = s.n_devices
        self.N = s.n_patches
        self.c0 = s.extra_tokens
        self.beta = float(s.bits_per_token)
        self.noise = s.noise_psd_w_hz
        self.W_tot = s.bandwidth_hz
        F_all = retention_table(s.retention)
        floor_k = np.argmax(F_all >= self.retention_floor * F_all[:, -1:] * (1 - 1e-12), axis=1)
        kmin_all = np.maximum(s.k_min, floor_k).astype(int)
        e_comp = s.compute_energy_j if self.include_compute_energy else np.zeros(self.n_total)
        e_up_all = s.energy_max_j - e_comp
        t0_all = s.compute_time_s
        tstand_all = s.standing_time_s
        tmax_all = tstand_all - t0_all
        reasons: dict[int, str] = {}
        for d in np.flatnonzero(e_up_all <= 0):
            reasons[int(d)] = (f"compute energy {e_comp[d]:.3g} J exceeds the energy budget "
                               f"{s.energy_max_j[d]:.3g} J")
        for d in np.flatnonzero(tmax_all <= 0):
            reasons.setdefault(int(d), f"standing time {tstand_all[d]:.3g} s is not longer than its "
                                       f"compute time {t0_all[d]:.3g} s")
        ok = (e_up_all > 0) & (tmax_all > 0)
        bits_min = s.payload_bits(kmin_all)
        w_need, p_hat, alone = admit(bits_min, tmax_all, s.p_max_w, e_up_all, s.gain, self.noise,
                                     self.W_tot)
        for d in np.flatnonzero(ok & ~alone):
            need = w_need[d]
            reasons[int(d)] = (f"needs {need / 1e6:.4g} MHz to send K_min = {kmin_all[d]} tokens within "
                               f"{tmax_all[d]:.3g} s at {p_hat[d]:.3g} W (budget {self.W_tot / 1e6:.4g} MHz)"
                               if np.isfinite(need) else
                               f"cannot send K_min = {kmin_all[d]} tokens within {tmax_all[d]:.3g} s at "
                               f"{p_hat[d]:.3g} W with any bandwidth (rate limit p h / (N0 ln 2) too low)")
        self.excluded = sorted(reasons)
        self.excluded_reasons = {d: reasons[d] for d in self.excluded}
        if self.excluded and self.strict:
            lines = "; ".join(f"device {d}: {r}" for d, r in self.excluded_reasons.items())
            raise InfeasibleError(f"{len(self.excluded)} device(s) cannot meet their limits even alone: "
                                  f"{lines}", devices=self.excluded,
                                  deficit={d: r for d, r in self.excluded_reasons.items()})
        self.active = np.flatnonzero(alone)
        a = self.active
        self.M = len(a)
        if self.M == 0:
            raise InfeasibleError("no device can meet its limits even alone: "
                                  + "; ".join(f"device {d}: {r}" for d, r in self.excluded_reasons.items()),
                                  devices=self.excluded)
        self.gain = s.gain[a]
        self.p_max = s.p_max_w[a]
        self.e_up = e_up_all[a]
        self.e_comp = e_comp[a]
        self.t0 = t0_all[a]
        self.t_stand = tstand_all[a]
        self.t_max = tmax_all[a]
        self.F = F_all[a]
        self.k_lo = kmin_all[a]
        self.weights = self.weights_all[a]
        self.WF = self.F * self.weights[:, None]          # weighted retention table
        self.w_need_min = w_need[a]
        self.uplink = UplinkWindows(
            offset_s=self.t0 if self.denominator == "round" else np.zeros(self.M), cap_s=self.t_max,
            p_max_w=self.p_max, energy_j=self.e_up, gain=self.gain, noise_psd_w_hz=self.noise,
            budget_hz=self.W_tot)
        total = float(np.sum(self.w_need_min))
        if total > self.W_tot * (1 + 1e-9):
            raise InfeasibleError(
                f"the {self.M} admitted devices need at least {total / 1e6:.6g} MHz together at K_min "
                f"(each using its whole window), but the budget is {self.W_tot / 1e6:.6g} MHz: "
                f"short by {(total - self.W_tot) / 1e6:.6g} MHz", devices=list(map(int, a)),
                deficit={"bandwidth_hz": total - self.W_tot})

    # ------------------------------------------------------------------ structure
    @property
    def tau_offset(self) -> np.ndarray:
        """T0 in the "round" denominator, 0 in "uplink" (active devices)."""
        return self.uplink.offset_s

    @property
    def tau_max(self) -> float:
        """Straggler time beyond which no window grows: max_m (offset + t_max)."""
        return self.uplink.tau_max

    def window(self, tau) -> np.ndarray:
        """Upload window t_m(τ) of the active devices (s); <= 0 means impossible at τ."""
        return self.uplink.window_s(tau)

    def payload_bits(self, tokens) -> np.ndarray:
        """S(K) = β (K + c0) in bits (β: bits of one token over the batch, side information included)."""
        return self.beta * (np.asarray(tokens, dtype=float) + self.c0)

    def bits(self, tokens) -> np.ndarray:
        """Alias of :meth:`payload_bits` (the name of version 0.1)."""
        return self.payload_bits(tokens)

    def w_min(self, tokens, tau, rows=None) -> np.ndarray:
        """Least bandwidth (Hz) for active devices to send ``tokens`` within their window at τ.

        ``tokens`` has shape (M,) or (M, L) (a column of levels per device); ``rows`` selects a
        subset of active devices (then ``tokens`` has that many rows). ``inf`` where impossible.
        """
        return self.uplink.least_bandwidth_hz(self.payload_bits(tokens), tau, rows)

    def power_for(self, tau) -> np.ndarray:
        """Power p̂ = min(p_max, E/t) used with the whole window at τ (W)."""
        return self.uplink.power_w(tau)

    def min_straggler_time(self, tokens, rel_tol: float = 1e-12, tau_hi: float | None = None):
        """Exact resource step for fixed tokens: the least τ with Σ W_min(K, τ) ≤ W_tot.

        Returns ``(tau, bandwidth, power)`` for the active devices (bandwidth and power are the
        whole-window allocation at that τ, with spare bandwidth left unassigned); ``tau = inf``
        if the tokens do not fit even at the largest τ (or at ``tau_hi``). Computed by
        :meth:`ste_opt.model.allocation.UplinkWindows.least_straggler_time` (Newton, then bisection).
        """
        tau, w = self.uplink.least_straggler_time(self.payload_bits(tokens), rel_tol=rel_tol,
                                                  tau_hi=tau_hi)
        if not np.isfinite(tau):
            return np.inf, None, None
        return tau, w, self.power_for(tau)

    # ------------------------------------------------------------------ evaluation
    def _full(self, values, fill=0.0, dtype=float) -> np.ndarray:
        out = np.full(self.n_total, fill, dtype=dtype)
        out[self.active] = values
        return out

    def evaluate(self, tokens, bandwidth, power) -> dict:
        """Evaluate a full allocation (arrays of length ``scenario.n_devices``).

        Excluded devices must have 0 tokens, bandwidth and power. Returns a dict with the
        objective (STE), per-device ``uplink_time``, ``latency`` (T0 + T^U), ``energy``,
        ``retention`` (f_m(K_m)) and the straggler time ``tau``.
        """
        k = np.asarray(tokens, dtype=float)
        w = np.asarray(bandwidth, dtype=float)
        p = np.asarray(power, dtype=float)
        for name, arr in (("tokens", k), ("bandwidth", w), ("power", p)):
            if arr.shape != (self.n_total,):
                raise InvalidScenarioError(f"{name} must have shape ({self.n_total},), got {arr.shape}",
                                           field=name)
        a = self.active
        rate = channel.rate_bps(w[a], p[a], self.gain, self.noise)
        with np.errstate(divide="ignore"):
            tu = np.where(rate > 0, self.payload_bits(k[a]) / np.where(rate > 0, rate, 1.0), np.inf)
        ki = np.clip(np.round(k[a]).astype(int), 0, self.N)
        ret = self.F[np.arange(self.M), ki]
        energy = p[a] * tu + self.e_comp
        denom = tu + self.tau_offset
        tau = float(np.max(denom))
        obj = float(np.sum(self.weights * ret) / tau) if np.isfinite(tau) and tau > 0 else 0.0
        return dict(objective=obj, tau=tau, uplink_time=self._full(tu), latency=self._full(tu + self.t0),
                    energy=self._full(energy), retention=self._full(ret))

    def make_solution(self, tokens, bandwidth, power, status: str = "feasible", history=None,
                      iterations: int = 0, info: dict | None = None, message: str = "") -> Solution:
        """Build a :class:`Solution` from an allocation of the **active** devices (length M)."""
        k = self._full(np.asarray(tokens), 0, dtype=int)
        w = self._full(np.asarray(bandwidth, dtype=float))
        p = self._full(np.asarray(power, dtype=float))
        ev = self.evaluate(k, w, p)
        info = dict(info or {})
        info.setdefault("tau_s", ev["tau"])
        info["excluded_reasons"] = dict(self.excluded_reasons)
        info["denominator"] = self.denominator
        return Solution(status=status, objective=ev["objective"], tokens=k, bandwidth_hz=w, power_w=p,
                        bit_width=np.full(self.n_total, self.scenario.bits, dtype=int),
                        latency_s=ev["latency"], uplink_time_s=ev["uplink_time"], energy_j=ev["energy"],
                        retention=ev["retention"], excluded=list(self.excluded),
                        history=list(history or []), iterations=iterations, info=info, message=message)

    def check(self, solution: Solution, tol: float = 1e-6) -> CheckReport:
        """Worst relative violation of each constraint by ``solution`` (0 when satisfied)."""
        from .checks import bound_violation, require_arrays

        s = self.scenario
        k, w, p = require_arrays(solution, ("tokens", "bandwidth", "power"), self.n_total, "STEProblem")
        a = self.active
        v: dict[str, float] = {}
        ex = np.setdiff1d(np.arange(self.n_total), a)
        v["excluded_send_nothing"] = float(np.max(np.abs(np.r_[k[ex], w[ex] / self.W_tot, p[ex]]), initial=0.0))
        v["bandwidth_nonnegative"] = float(np.max(-w / self.W_tot, initial=0.0))
        v["bandwidth_budget"] = max(float(np.sum(w) / self.W_tot - 1.0), 0.0)
        v["power_nonnegative"] = float(np.max(-p / s.p_max_w, initial=0.0))
        v["power_max"] = float(np.max(p / s.p_max_w - 1.0, initial=0.0))
        ka = k[a]
        v["tokens_integer"] = float(np.max(np.abs(ka - np.round(ka)), initial=0.0))
        v["tokens_min"] = float(np.max((self.k_lo - ka) / self.k_lo, initial=0.0))
        v["tokens_max"] = float(np.max((ka - self.N) / self.N, initial=0.0))
        ev = self.evaluate(k, w, p)
        tu = ev["uplink_time"][a]
        with np.errstate(invalid="ignore"):
            e_viol = (p[a] * tu + self.e_comp) / s.energy_max_j[a] - 1.0
            l_viol = (self.t0 + tu) / self.t_stand - 1.0
        v["energy"] = float(np.max(np.nan_to_num(e_viol, nan=np.inf), initial=0.0))
        v["latency"] = float(np.max(np.nan_to_num(l_viol, nan=np.inf), initial=0.0))
        if self.retention_floor > 0:
            kk = np.clip(np.round(ka).astype(int), 0, self.N)
            fk = self.F[np.arange(self.M), kk]
            v["retention_floor"] = float(np.max((self.retention_floor * self.F[:, -1] - fk)
                                                / self.F[:, -1], initial=0.0))
        if solution.objective is not None and np.isfinite(solution.objective) and ev["objective"] > 0:
            v["objective_consistent"] = abs(solution.objective - ev["objective"]) / ev["objective"]
        v["bound"] = max(bound_violation(solution, ev["objective"], "max"),
                         bound_violation(solution, solution.objective, "max"))
        v = {key: max(val, 0.0) for key, val in v.items()}
        return CheckReport(v, tol)

    # ------------------------------------------------------------------ convex resource model
    def resource_model(self, tokens, scale_hz: float = 1e6):
        """The convex bandwidth–power step for fixed tokens as a ``cvxpy.Problem``.

        Variables (attributes of the returned problem's ``.ste`` namespace): ``bandwidth_mhz``
        (W in units of ``scale_hz``), ``power_w`` and ``tau_s``. Minimizes the straggler time τ
        subject to ``R_m(W, p) ≥ S_m / (τ - offset_m)``, ``E R_m ≥ S_m p``,
        ``R_m ≥ S_m / (T_stand - T0)``, ``Σ W ≤ W_tot``, ``0 ≤ p ≤ p_max``; the rate is the
        perspective of a log, ``-rel_entr(W, W + p h / N0) / ln 2``. Users may add constraints and
        re-solve. ``tokens`` are for the active devices (length M).
        """
        import cvxpy as cp

        k = np.asarray(tokens, dtype=float)
        bits_mb = self.payload_bits(k) / scale_hz                  # Mbit when scale is 1e6
        a = self.gain / (self.noise * scale_hz)            # so that p * a is in units of scale_hz
        W = cp.Variable(self.M, nonneg=True, name="bandwidth_mhz")
        p = cp.Variable(self.M, nonneg=True, name="power_w")
        tau = cp.Variable(name="tau_s")
        rate = -cp.rel_entr(W, W + cp.multiply(a, p)) / np.log(2.0)   # Mbit/s
        off = self.tau_offset
        cons = [
            cp.sum(W) <= self.W_tot / scale_hz,
            p <= self.p_max,
            rate >= cp.multiply(bits_mb, cp.inv_pos(tau - off)),
            cp.multiply(self.e_up, rate) >= cp.multiply(bits_mb, p),
            rate >= bits_mb / self.t_max,
            tau >= np.max(off) + 1e-9,
        ]
        prob = cp.Problem(cp.Minimize(tau), cons)

        class _Vars:
            pass

        ns = _Vars()
        ns.bandwidth_mhz, ns.power_w, ns.tau_s, ns.scale_hz = W, p, tau, scale_hz
        prob.ste = ns
        return prob

    def __repr__(self) -> str:
        return (f"STEProblem(devices={self.n_total}, active={self.M}, excluded={len(self.excluded)}, "
                f"denominator={self.denominator!r})")
