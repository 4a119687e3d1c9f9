"""The SFLAM problem: quantization bits, subchannel matching and power (docs/MODEL.md §4).

Variables: bits ``b_n ∈ 𝔅`` (common, or per device with ``per_device_bits=True``), a one-to-one
assignment of devices to subchannels ``k_n`` (K ≥ N), powers ``p_min ≤ p_n ≤ p_max``::

    T_n = c_{n,k} + S_n(b_n) / r_{n,k}(p_n)          c = compute + server + gradient downlink
    E_n = κ cycles_n f_n² + p_n S_n(b_n) / r_{n,k}(p_n)
    R(b) = ⌈A / (ε − B0 − C q̄(b))⌉,  q(b) = 1/(2^b − 1)²,  q̄ = mean_n q(b_n)

    minimize  U = ω R(b) max_n T_n / T_ref + (1 − ω) R(b) Σ_n E_n / E_ref
    s.t.      ε > B0 + C q̄(b),  memory M_n(b_n) ≤ M_max,  T_n ≤ deadline_n,  E_n ≤ E_max_n

with ``r_{n,k}(p) = W_sc log2(1 + p h_{n,k} / (N0 W_sc))`` (W_sc: the subchannel width; B0 in R(b)
is the error floor, the scenario's ``conv_b0``). T_ref and E_ref default to the totals of
the fp32 reference (b = 32, p = p_max, Gale–Shapley matching by gain), so U = 1 for it.

Structure used by the solvers (``ste_opt.solvers.sflam``): the upload energy ``p S / r(p)`` is
increasing and concave in p; for a straggler time τ each device's cheapest power is the least one
finishing by ``min(τ, deadline)``, and the energy of that power is convex and non-increasing in τ,
so the power block for a fixed matching and bits is a convex 1-D problem in τ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InfeasibleError, InvalidScenarioError
from ..model import channel
from ..model.channel import LN2
from ..model.convergence import (  # noqa: F401  (ConvergenceFit, fit_convergence_model: public here)
    ConvergenceFit,
    convergence_margin,
    fit_convergence_model,
    quantization_error,
    rounds_to_target,
)
from ..scenarios.sflam import SFLAMScenario
from .result import CheckReport, Solution

__all__ = ["SFLAMProblem", "fit_convergence_model", "ConvergenceFit", "gale_shapley",
           "rounds_to_target", "LN2"]


def gale_shapley(score) -> np.ndarray:
    """Device-proposing deferred acceptance on a (N, K) score matrix (higher is better for both
    sides: devices propose to subchannels by descending score, a subchannel keeps the proposer with
    the larger score). Returns the subchannel of each device (a stable one-to-one matching)."""
    score = np.asarray(score, dtype=float)
    n, k = score.shape
    prefs = np.argsort(-score, axis=1, kind="stable")
    nxt = np.zeros(n, dtype=int)
    holder = np.full(k, -1, dtype=int)
    asg = np.full(n, -1, dtype=int)
    free = list(range(n - 1, -1, -1))
    while free:
        d = free.pop()
        ch = prefs[d, nxt[d]]
        nxt[d] += 1
        h = holder[ch]
        if h < 0:
            holder[ch], asg[d] = d, ch
        elif score[d, ch] > score[h, ch]:
            holder[ch], asg[d], asg[h] = d, ch, -1
            free.append(h)
        else:
            free.append(d)
    return asg


class SFLAMProblem:
    """The SFLAM latency–energy problem on an :class:`~ste_opt.scenarios.sflam.SFLAMScenario`.

    Parameters
    ----------
    scenario : SFLAMScenario
    omega : float in [0, 1]
        Weight of the latency term (1: latency only, 0: energy only).
    per_device_bits : bool
        Each device picks its own bit-width (default: one common bit-width).
    t_ref, e_ref : float, optional
        Normalizers of total latency (s) and total energy (J); default: the fp32 reference.
    bit_set : sequence of int, optional
        Overrides ``scenario.bit_set``.
    """

    kind = "sflam"
    sense = "min"

    def __init__(self, scenario: SFLAMScenario, omega: float = 0.5, *, per_device_bits: bool = False,
                 t_ref: float | None = None, e_ref: float | None = None, bit_set=None):
        if not isinstance(scenario, SFLAMScenario):
            raise InvalidScenarioError(
                f"SFLAMProblem needs an SFLAMScenario, got {type(scenario).__name__} "
                "(build one with Scenario.preset('sflam', ...))", field="scenario")
        om = float(omega)
        if not np.isfinite(om) or not 0.0 <= om <= 1.0:
            raise InvalidScenarioError(f"omega must be in [0, 1], got {omega!r}", field="omega")
        if bit_set is not None:
            scenario = scenario.replace(bit_set=tuple(bit_set))
        self.scenario = s = scenario
        self.omega = om
        self.per_device_bits = bool(per_device_bits)
        self.N = s.n_devices
        self.K = s.n_subchannels
        self.subchannel_hz = s.subchannel_hz
        self.noise = s.noise_psd_w_hz
        self.gain = s.gain
        self.phi = self.gain / (self.noise * self.subchannel_hz)   # p * phi = SNR on (n, k)
        self.t_dl = s.downlink_bits[:, None] / s.downlink_rate_bps
        self.c = (s.compute_time_s + s.server_time_s)[:, None] + self.t_dl   # (N, K) s
        self.e_cmp = s.compute_energy_j
        self.p_lo = s.p_min_w
        self.p_max = s.p_max_w
        self.deadline = s.deadline_s
        self.e_max = s.energy_max_j
        self.bit_set = np.asarray(s.bit_set, dtype=int)
        mem = s.memory_bytes(self.bit_set[None, :])               # (1, |B|) -> broadcast
        self.bits_ok = mem <= s.memory_max_bytes[:, None] * (1 + 1e-12)    # (N, |B|)
        self._tables: dict = {}
        no_bits = np.flatnonzero(~self.bits_ok.any(axis=1))
        if no_bits.size:
            d = int(no_bits[0])
            raise InfeasibleError(
                f"device {d} cannot hold split training in {s.memory_max_bytes[d]:.4g} bytes even at "
                f"{self.bit_set.min()} bits (needs {float(s.memory_bytes(self.bit_set.min())):.4g})",
                devices=list(map(int, no_bits)), deficit={"memory_max_bytes": float(s.memory_bytes(
                    self.bit_set.min()) - s.memory_max_bytes[d])})
        self.common_bits = [int(b) for j, b in enumerate(self.bit_set)
                            if self.bits_ok[:, j].all() and self.reachable(np.full(self.N, b))]
        if not self.per_device_bits and not self.common_bits:
            raise InfeasibleError(
                "no common bit-width both fits every device's memory and reaches the target "
                f"epsilon = {s.epsilon:g} (bit set {self.bit_set.tolist()})")
        self._diagnose()
        if t_ref is None or e_ref is None:
            tr, er = self._reference()
            t_ref = tr if t_ref is None else t_ref
            e_ref = er if e_ref is None else e_ref
        for name, v in (("t_ref", t_ref), ("e_ref", e_ref)):
            if not np.isfinite(float(v)) or float(v) <= 0:
                raise InvalidScenarioError(f"{name} must be positive and finite, got {v}", field=name)
        self.t_ref, self.e_ref = float(t_ref), float(e_ref)
        self.alpha0 = self.omega / self.t_ref
        self.beta0 = (1.0 - self.omega) / self.e_ref
        self.options = dict(omega=self.omega, per_device_bits=self.per_device_bits,
                            t_ref=self.t_ref, e_ref=self.e_ref)

    # ------------------------------------------------------------------ model pieces
    def with_omega(self, omega: float) -> SFLAMProblem:
        """The same instance with another ω (same T_ref and E_ref, so fronts are comparable)."""
        return SFLAMProblem(self.scenario, omega, per_device_bits=self.per_device_bits,
                            t_ref=self.t_ref, e_ref=self.e_ref)

    @property
    def B0(self) -> float:
        """Alias of :attr:`subchannel_hz` (the subchannel width; not the convergence floor)."""
        return self.subchannel_hz

    def reachable(self, bits) -> bool:
        """Whether the target ε is reachable with these bit-widths (``ε > B0 + C q̄(b)``)."""
        s = self.scenario
        return convergence_margin(bits, s.conv_b0, s.conv_c, s.epsilon) > 0

    def rounds(self, bits) -> int:
        """Rounds to reach the target, ``R(b)``; :class:`InfeasibleError` if unreachable."""
        s = self.scenario
        return rounds_to_target(bits, s.conv_a, s.conv_b0, s.conv_c, s.epsilon)

    def uplink_bits(self, bits) -> np.ndarray:
        return self.scenario.uplink_bits(bits)

    def rate(self, phi, p):
        """Upload rate ``W_sc log2(1 + p phi)`` (bit/s); ``phi`` = SNR per watt of the pair."""
        return channel.shannon_rate_bps(self.subchannel_hz, np.asarray(p) * phi)

    def power_for_window(self, S, window, phi):
        """Least power sending S bits within ``window`` seconds (W); inf where impossible."""
        w = np.asarray(window, dtype=float)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            snr = channel.min_snr(S / np.where(w > 0, w, 1.0), self.subchannel_hz)
            return np.where(w > 0, snr / phi, np.inf)

    def battery_power_cap(self, S, phi, e_up):
        """Largest power with ``p S / r(p) ≤ e_up`` (W): the upload energy is increasing in p."""
        gain = phi * self.noise * self.subchannel_hz
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = channel.max_energy_power_w(S, self.subchannel_hz, gain, self.noise,
                                             np.where(e_up > 0, e_up, 1e-300))
        cap = np.where(e_up > 0, cap, 0.0)
        return np.where(np.isfinite(e_up), cap, np.inf)

    def tables(self, bits):
        """Per (device, subchannel) quantities for a bit vector (or common b): ``S`` (N,),
        ``p_hi`` (N, K) the largest usable power (p_max and battery), ``t_min`` (N, K) the fastest
        round time, ``feasible`` (N, K) whether the pair meets power range, deadline and battery."""
        b = np.broadcast_to(np.asarray(bits, dtype=int), (self.N,))
        key = int(b[0]) if np.all(b == b[0]) else None
        if key is not None and key in self._tables:
            return self._tables[key]
        S = self.uplink_bits(b)
        e_up = self.e_max - self.e_cmp
        p_hi = np.minimum(self.p_max[:, None],
                          self.battery_power_cap(S[:, None], self.phi, e_up[:, None]))
        with np.errstate(divide="ignore"):
            t_min = self.c + S[:, None] / self.rate(self.phi, np.maximum(p_hi, 1e-300))
        feas = (p_hi >= self.p_lo[:, None] * (1 - 1e-12)) & (t_min <= self.deadline[:, None] * (1 + 1e-12))
        t = _Tables(bits=b.copy(), S=S, p_hi=p_hi, t_min=np.where(feas, t_min, np.inf), feasible=feas)
        if key is not None:
            self._tables[key] = t
        return t

    def least_energy_table(self, tb, window_s):
        """Each device on each subchannel with the least power finishing within ``window_s``
        ((N, K) or broadcastable, s), at least p_min: ``(energy J, power W, ok)``, (N, K) each.

        ``ok`` is False where the pair is infeasible, the window is empty or the power would exceed
        the largest usable one (there the power is clipped to it and the energy is not meaningful).
        The energy is the upload energy ``p S / r(p)`` (add ``e_cmp`` for the device's total).
        """
        S = tb.S[:, None]
        w = np.asarray(window_s, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            pr = np.maximum(self.power_for_window(S, w, self.phi), self.p_lo[:, None])
            ok = tb.feasible & (w > 0) & (pr <= tb.p_hi * (1 + 1e-12))
            pr = np.minimum(pr, tb.p_hi)
            E = pr * S / self.rate(self.phi, pr)
        return E, pr, ok

    def _diagnose(self):
        """Devices that cannot meet deadline and battery on any subchannel with their fewest bits."""
        bmin = np.array([self.bit_set[np.flatnonzero(self.bits_ok[n])[0]] for n in range(self.N)])
        tb = self.tables(bmin)
        bad = np.flatnonzero(~tb.feasible.any(axis=1))
        if bad.size:
            lines = []
            for d in bad[:10]:
                k = int(np.argmax(self.phi[d]))
                lines.append(f"device {int(d)}: best round time {self.c[d, k] + tb.S[d] / self.rate(self.phi[d, k], self.p_max[d]):.4g} s "
                             f"vs deadline {self.deadline[d]:.4g} s, upload energy budget "
                             f"{self.e_max[d] - self.e_cmp[d]:.4g} J")
            raise InfeasibleError(f"{bad.size} device(s) cannot meet their deadline or battery on any "
                                  "subchannel even at full power and the fewest bits: " + "; ".join(lines),
                                  devices=list(map(int, bad)))

    def _reference(self):
        """Totals of the fp32 reference: b = max bit, p = p_max, Gale–Shapley matching by gain."""
        b = int(self.bit_set.max())
        asg = gale_shapley(self.phi)
        p = self.p_max.copy()
        ev = self.evaluate_unchecked(asg, p, np.full(self.N, b))
        try:
            r = self.rounds(np.full(self.N, b))
        except InfeasibleError:  # pragma: no cover - excluded by the scenario's validation
            r = 1
        return r * ev["t_round"], r * float(np.sum(ev["energy"]))

    # ------------------------------------------------------------------ evaluation
    def evaluate_unchecked(self, assignment, power, bits):
        """Per-device ``uplink_time``, ``latency``, ``energy``, the straggler time ``t_round`` and
        the payloads ``S`` of an allocation, without validation, limits or rounds (fast path)."""
        a = np.asarray(assignment, dtype=int)
        p = np.asarray(power, dtype=float)
        b = np.asarray(bits, dtype=int)
        n = np.arange(self.N)
        S = self.uplink_bits(b)
        phi = self.phi[n, a]
        r = self.rate(phi, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            tu = np.where(r > 0, S / np.where(r > 0, r, 1.0), np.inf)
        lat = self.c[n, a] + tu
        energy = self.e_cmp + np.where(p > 0, p * tu, 0.0)
        return dict(uplink_time=tu, latency=lat, energy=energy, t_round=float(np.max(lat)), S=S)

    def cost(self, t_round: float, energy_sum: float, bits) -> float:
        """``U = R(b) (ω T_round / T_ref + (1 − ω) Σ E / E_ref)``."""
        return self.rounds(bits) * (self.alpha0 * t_round + self.beta0 * energy_sum)

    def evaluate(self, assignment, power, bits) -> dict:
        """Evaluate an allocation (arrays of length N). Returns the objective, rounds, per-device
        ``latency`` T_n (s), ``uplink_time`` (s), ``energy`` E_n (J), ``t_round`` (s),
        ``energy_round`` (J), ``total_latency`` R T_round (s) and ``total_energy`` R Σ E (J)."""
        a = np.asarray(assignment)
        p = np.asarray(power, dtype=float)
        b = np.broadcast_to(np.asarray(bits), (self.N,))
        for name, arr in (("assignment", a), ("power", p)):
            if arr.shape != (self.N,):
                raise InvalidScenarioError(f"{name} must have shape ({self.N},), got {arr.shape}", field=name)
        if np.any(a != np.round(a)) or np.any(a < 0) or np.any(a >= self.K):
            raise InvalidScenarioError(f"assignment must hold subchannel indices in 0..{self.K - 1}",
                                       field="assignment")
        ev = self.evaluate_unchecked(a.astype(int), p, b.astype(int))
        r = self.rounds(b)
        esum = float(np.sum(ev["energy"]))
        ev.update(rounds=r, energy_round=esum, total_latency=r * ev["t_round"], total_energy=r * esum,
                  objective=r * (self.alpha0 * ev["t_round"] + self.beta0 * esum))
        return ev

    def make_solution(self, assignment, power, bits, status: str = "feasible", history=None,
                      iterations: int = 0, info: dict | None = None, message: str = "") -> Solution:
        """Build a :class:`Solution` (objective and per-device values evaluated here)."""
        a = np.asarray(assignment, dtype=int)
        p = np.asarray(power, dtype=float)
        b = np.broadcast_to(np.asarray(bits, dtype=int), (self.N,)).copy()
        ev = self.evaluate(a, p, b)
        info = dict(info or {})
        info.update(rounds=ev["rounds"], t_round_s=ev["t_round"], energy_round_j=ev["energy_round"],
                    total_latency_s=ev["total_latency"], total_energy_j=ev["total_energy"],
                    omega=self.omega, t_ref=self.t_ref, e_ref=self.e_ref)
        return Solution(status=status, objective=float(ev["objective"]), power_w=p.copy(), bit_width=b,
                        assignment=a.copy(), bandwidth_hz=np.full(self.N, self.subchannel_hz),
                        latency_s=ev["latency"], uplink_time_s=ev["uplink_time"], energy_j=ev["energy"],
                        history=[float(h) for h in (history or [])], iterations=iterations,
                        info=info, message=message)

    def check(self, solution: Solution, tol: float = 1e-6) -> CheckReport:
        """Worst relative violation of each constraint by ``solution`` (0 when satisfied)."""
        from .checks import bound_violation, require_arrays

        s = self.scenario
        v: dict[str, float] = {}
        a, p, b = require_arrays(solution, ("assignment", "power", "bits"), self.N, "SFLAMProblem")
        v["bound"] = bound_violation(solution, solution.objective, "min")
        ok_idx = np.all(a == np.round(a)) and np.all((a >= 0) & (a < self.K))
        v["assignment_valid"] = 0.0 if ok_idx else 1.0
        v["assignment_one_to_one"] = float(self.N - len(np.unique(a))) if ok_idx else 1.0
        v["power_min"] = float(np.max((self.p_lo - p) / self.p_lo, initial=0.0))
        v["power_max"] = float(np.max(p / self.p_max - 1.0, initial=0.0))
        in_set = np.isin(b, self.bit_set)
        v["bits_in_set"] = float(np.mean(~in_set))
        if not self.per_device_bits:
            v["bits_common"] = float(np.ptp(b) > 0)
        if not in_set.all() or not ok_idx:
            return CheckReport({k: max(x, 0.0) for k, x in v.items()}, tol)
        bi = b.astype(int)
        mem = s.memory_bytes(bi)
        with np.errstate(invalid="ignore"):
            v["memory"] = float(np.max(np.nan_to_num(mem / s.memory_max_bytes - 1.0, nan=0.0), initial=0.0))
        floor = s.conv_b0 + s.conv_c * float(np.mean(quantization_error(bi)))
        v["target_reachable"] = max((floor - s.epsilon) / s.epsilon + 1e-300, 0.0) if floor >= s.epsilon else 0.0
        ev = self.evaluate_unchecked(a.astype(int), p, bi)
        with np.errstate(invalid="ignore", divide="ignore"):
            v["deadline"] = float(np.max(np.nan_to_num(ev["latency"] / self.deadline - 1.0, nan=np.inf),
                                         initial=0.0))
            v["battery"] = float(np.max(np.nan_to_num(ev["energy"] / self.e_max - 1.0, nan=np.inf),
                                        initial=0.0))
        if floor < s.epsilon and solution.objective is not None and np.isfinite(solution.objective):
            r = self.rounds(bi)
            obj = r * (self.alpha0 * ev["t_round"] + self.beta0 * float(np.sum(ev["energy"])))
            v["objective_consistent"] = abs(solution.objective - obj) / max(abs(obj), 1e-300)
            v["bound"] = max(v["bound"], bound_violation(solution, obj, "min"))
        return CheckReport({k: max(float(x), 0.0) for k, x in v.items()}, tol)

    def __repr__(self) -> str:
        return (f"SFLAMProblem(devices={self.N}, subchannels={self.K}, omega={self.omega:g}, "
                f"per_device_bits={self.per_device_bits}, bit_set={self.bit_set.tolist()})")


@dataclass
class _Tables:
    bits: np.ndarray
    S: np.ndarray
    p_hi: np.ndarray
    t_min: np.ndarray
    feasible: np.ndarray
