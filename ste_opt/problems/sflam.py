"""The SFLAM problem: quantization bits, subchannel matching and power (DESIGN §4).

Variables: bits ``b_n ∈ 𝔅`` (common, or per device with ``per_device_bits=True``), a one-to-one
assignment of devices to subchannels ``k_n`` (K ≥ N), powers ``p_min ≤ p_n ≤ p_max``::

    T_n = c_{n,k} + S_n(b_n) / r_{n,k}(p_n)          c = compute + server + gradient downlink
    E_n = κ cycles_n f_n² + p_n S_n(b_n) / r_{n,k}(p_n)
    R(b) = ⌈A / (ε − B0 − C q̄(b))⌉,  q(b) = 1/(2^b − 1)²,  q̄ = mean_n q(b_n)

    minimize  U = ω R(b) max_n T_n / T_ref + (1 − ω) R(b) Σ_n E_n / E_ref
    s.t.      ε > B0 + C q̄(b),  memory M_n(b_n) ≤ M_max,  T_n ≤ deadline_n,  E_n ≤ E_max_n

with ``r_{n,k}(p) = B0 log2(1 + p h_{n,k} / (N0 B0))``. T_ref and E_ref default to the totals of
the fp32 reference (b = 32, p = p_max, Gale–Shapley matching by gain), so U = 1 for it.

Structure used by the solvers (``ste_opt.solvers.sflam_*``): the upload energy ``p S / r(p)`` is
increasing and concave in p; for a straggler time τ each device's cheapest power is the least one
finishing by ``min(τ, deadline)``, and the energy of that power is convex and non-increasing in τ,
so the power block for a fixed matching and bits is a convex 1-D problem in τ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InfeasibleError, InvalidScenarioError
from ..scenario_sflam import SFLAMScenario, quantization_error
from ..solvers.result import Solution
from .ste import CheckReport

__all__ = ["SFLAMProblem", "pareto", "ParetoFront", "fit_convergence_model", "ConvergenceFit",
           "gale_shapley", "rounds_to_target"]

LN2 = math.log(2.0)


def rounds_to_target(bits, a: float, b0: float, c: float, epsilon: float) -> int:
    """``R(b) = ⌈A / (ε − B0 − C q̄(b))⌉``; raises :class:`InfeasibleError` when ε ≤ B0 + C q̄(b)."""
    qbar = float(np.mean(quantization_error(np.atleast_1d(bits))))
    margin = epsilon - b0 - c * qbar
    if not margin > 0:
        raise InfeasibleError(
            f"target epsilon = {epsilon:g} is unreachable with bits {np.atleast_1d(bits).tolist()}: "
            f"the quantization floor B0 + C q̄(b) = {b0:g} + {c:g} × {qbar:.4g} = {b0 + c * qbar:.6g} "
            "is not below it (use more bits or a looser target)",
            deficit={"epsilon": b0 + c * qbar - epsilon})
    return int(math.ceil(a / margin * (1 - 1e-12)))


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
    """The SFLAM latency–energy problem on an :class:`~ste_opt.scenario_sflam.SFLAMScenario`.

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
        self.B0 = s.subchannel_hz
        self.noise = s.noise_psd_w_hz
        self.gain = s.gain
        self.phi = self.gain / (self.noise * self.B0)            # p * phi = SNR on (n, k)
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

    def reachable(self, bits) -> bool:
        s = self.scenario
        return bool(s.epsilon - s.conv_b0 - s.conv_c * float(np.mean(quantization_error(bits))) > 0)

    def rounds(self, bits) -> int:
        """Rounds to reach the target, ``R(b)``; :class:`InfeasibleError` if unreachable."""
        s = self.scenario
        return rounds_to_target(bits, s.conv_a, s.conv_b0, s.conv_c, s.epsilon)

    def uplink_bits(self, bits) -> np.ndarray:
        return self.scenario.uplink_bits(bits)

    def rate(self, phi, p):
        """Upload rate ``B0 log2(1 + p phi)`` (bit/s)."""
        return self.B0 * np.log1p(np.asarray(p) * phi) / LN2

    def power_for_window(self, S, window, phi):
        """Least power sending S bits within ``window`` seconds (W); inf where impossible."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = np.where(window > 0, S * LN2 / (self.B0 * np.where(window > 0, window, 1.0)), np.inf)
            return np.where(x < 700, np.expm1(np.minimum(x, 700)) / phi, np.inf)

    def battery_power_cap(self, S, phi, e_up):
        """Largest power with ``p S / r(p) ≤ e_up`` (W): the upload energy is increasing in p."""
        from .. import channel
        gain = phi * self.noise * self.B0
        with np.errstate(divide="ignore", invalid="ignore"):
            cap = channel.max_energy_power_w(S, self.B0, gain, self.noise, np.where(e_up > 0, e_up, 1e-300))
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
        ev = self._raw(asg, p, np.full(self.N, b))
        try:
            r = self.rounds(np.full(self.N, b))
        except InfeasibleError:  # pragma: no cover - excluded by the scenario's validation
            r = 1
        return r * ev["t_round"], r * float(np.sum(ev["energy"]))

    # ------------------------------------------------------------------ evaluation
    def _raw(self, assignment, power, bits):
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
        ev = self._raw(a.astype(int), p, b.astype(int))
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
        return Solution(status=status, objective=float(ev["objective"]), power=p.copy(), bits=b,
                        assignment=a.copy(), bandwidth=np.full(self.N, self.B0),
                        latency=ev["latency"], uplink_time=ev["uplink_time"], energy=ev["energy"],
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
        qbar = float(np.mean(quantization_error(bi)))
        floor = s.conv_b0 + s.conv_c * qbar
        v["target_reachable"] = max((floor - s.epsilon) / s.epsilon + 1e-300, 0.0) if floor >= s.epsilon else 0.0
        ev = self._raw(a.astype(int), p, bi)
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


# ---------------------------------------------------------------------- Pareto front
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
                     bits=(None if s.bits is None else int(np.max(s.bits))),
                     objective=float(s.objective))
                for o, t, e, s in zip(self.omegas, self.latency_s, self.energy_j, self.solutions)]


def pareto(problem: SFLAMProblem, omegas=None, method: str = "bcd", **options) -> ParetoFront:
    """Sweep ω and return the (total latency, total energy) of each solution.

    Every ω uses the same T_ref and E_ref as ``problem``. ``omegas`` defaults to 0, 0.1, ..., 1.
    ``method`` and ``options`` go to :func:`ste_opt.solve`.
    """
    from ..solvers.registry import solve

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


# ---------------------------------------------------------------------- convergence model fit
@dataclass
class ConvergenceFit:
    """Fitted ``R(b) = A / (ε − B0 − C q(b))`` (rounds, before the ceiling)."""

    a: float
    b0: float
    c: float
    rmse_rel: float
    n_points: int

    def rounds(self, bits, epsilon: float) -> float:
        q = float(np.mean(quantization_error(np.atleast_1d(bits))))
        m = epsilon - self.b0 - self.c * q
        return self.a / m if m > 0 else math.inf

    def as_scenario_fields(self) -> dict:
        return dict(conv_a=self.a, conv_b0=self.b0, conv_c=self.c)


def fit_convergence_model(bits, rounds_to_target, epsilon, a: float | None = None) -> ConvergenceFit:
    """Fit A, B0 and C of the convergence model from pilot measurements.

    ``1 / R = (ε − B0 − C q(b)) / A`` is linear in (ε, 1, q(b)), so the fit is a least-squares
    problem in ``(1/A, B0/A, C/A)`` weighted to relative errors in R, then refined on the rounds
    themselves (scipy ``least_squares``).

    Parameters
    ----------
    bits : array of int
        Bit-width of each pilot run (a run with mixed widths passes its mean q through an
        equivalent b; plain ints here).
    rounds_to_target : array of float
        Rounds each run took to reach its target (``inf`` or NaN for a run that never reached
        it: skipped).
    epsilon : float or array
        The target(s). With a single target, A is not identifiable: pass ``a``.
    a : float, optional
        Fix A (then only B0 and C are fitted).
    """
    from scipy.optimize import least_squares

    b = np.atleast_1d(np.asarray(bits, dtype=float))
    r = np.atleast_1d(np.asarray(rounds_to_target, dtype=float))
    eps = np.broadcast_to(np.asarray(epsilon, dtype=float), b.shape).astype(float)
    if r.shape != b.shape:
        raise InvalidScenarioError(f"rounds_to_target has {r.size} entries but bits has {b.size}",
                                   field="rounds_to_target")
    if np.any(b != np.round(b)) or np.any(b < 1) or np.any(b > 32):
        raise InvalidScenarioError("bits must be integers in 1..32", field="bits")
    if np.any(~np.isfinite(eps)) or np.any(eps <= 0):
        raise InvalidScenarioError("epsilon must be positive and finite", field="epsilon")
    bad = ~np.isnan(r) & (r <= 0)
    if bad.any():
        raise InvalidScenarioError(f"rounds_to_target[{int(np.flatnonzero(bad)[0])}] must be positive",
                                   field="rounds_to_target")
    ok = np.isfinite(r)
    b, r, eps = b[ok], r[ok], eps[ok]
    q = quantization_error(b)
    fix_a = a is not None
    if fix_a and (not np.isfinite(a) or a <= 0):
        raise InvalidScenarioError("a must be positive", field="a")
    n_par = 2 if fix_a else 3
    if len(r) < n_par or (not fix_a and np.ptp(eps) == 0):
        raise InvalidScenarioError(
            "not enough pilot measurements: need at least 3 reached targets at two or more different "
            "epsilons (or pass a= and at least 2 runs with different bits)", field="rounds_to_target")
    if np.ptp(q) == 0:
        raise InvalidScenarioError("the pilot runs must use at least two different bit-widths", field="bits")
    y = 1.0 / r
    w = r  # relative errors in R ≈ relative errors in 1/R
    if fix_a:
        X = np.column_stack([-np.ones_like(q), -q]) / a
        theta, *_ = np.linalg.lstsq(X * w[:, None], (y - eps / a) * w, rcond=None)
        x0 = np.array([theta[0], theta[1]])
    else:
        X = np.column_stack([eps, -np.ones_like(q), -q])
        theta, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
        inv_a = theta[0] if theta[0] > 0 else 1.0 / np.max(r * eps)
        x0 = np.array([1.0 / inv_a, theta[1] / inv_a, theta[2] / inv_a])

    def model(x):
        aa, b0, c = (a, x[0], x[1]) if fix_a else (x[0], x[1], x[2])
        m = eps - b0 - c * q
        return np.where(m > 0, aa / np.where(m > 0, m, 1.0), 1e12)

    def resid(x):
        return model(x) / r - 1.0

    lb = [0.0, 0.0] if fix_a else [1e-12, 0.0, 0.0]
    x0 = np.maximum(x0, np.asarray(lb) + 1e-12)
    # keep the start feasible: margins positive for every run
    res = least_squares(resid, x0, bounds=(lb, np.inf), method="trf", x_scale="jac")
    x = res.x
    aa, b0, c = (float(a), float(x[0]), float(x[1])) if fix_a else tuple(map(float, x))
    rm = float(np.sqrt(np.mean(resid(x) ** 2)))
    return ConvergenceFit(aa, b0, c, rm, int(len(r)))
