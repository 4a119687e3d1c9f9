"""Solver-driven schedules: re-solve the allocation problem every round and hand each client its
token budget K_m (and bit width b_m for SFLAM) — the closed loop of DESIGN §6.

Each planned round of :class:`SolverSchedule`:

1. redraw the Rayleigh fading of the whole scenario with a seeded generator
   (``numpy.random.default_rng([seed, round_idx, 101])``) and ``subset`` it to the sampled clients
   (scenario device i is trainer client i);
2. calibrate: every sampled client measures its retention profile on its own data with the current
   model (:mod:`~ste_opt.learning_hooks.calibrate`), rescaled to the problem's batch;
3. build the problem (``problem_factory(scenario)``, default :class:`~ste_opt.STEProblem`) and
   solve it (``ste_opt.solve(problem, method)``);
4. give each client ``ClientPlan(K_m, b_m, predicted={...})``; devices the solver excludes get
   ``None`` (they sit the round out, send nothing, and the trainer records them as excluded).

Every round is recorded in :attr:`SolverSchedule.records`: the solution's status, objective and
(with ``certify="global"``) certified gap, each client's predicted latency, energy, uplink time,
bandwidth, power, retention and payload bits, the straggler time (max latency over participants)
and the round energy (sum over participants). Simulated training time = Σ over rounds of the
straggler time.

Model spec and the payload scaling rule
---------------------------------------
The problem uses the trained model's real spec (:func:`scenario_for_trainer`): ``n_patches = N``,
``dim = D``, ``bits = q`` and ``batch`` = samples a client uploads in one round
(local steps × loader batch). Since ``payload_bits`` is linear in the batch, the solution's
``S_m = Scenario.payload_bits(K_m)`` equals the packed bits the client measures over the round,
exactly, when every client uploads the same number of samples per round (fix
``federation.local_steps`` and give every client at least one full batch); otherwise each
client's exact prediction is still recorded (``predicted_bits``) and the solver's S_m is off
by the client's sample ratio (``solution_bits``).

The compact digits ViT sends far fewer bits than ViT-B/16 (the paper's model), so on the paper's
50 MHz every upload would take milliseconds and no constraint would bind. To keep the paper's
regime, ``scale="payload"`` multiplies the bandwidth **and** the path gain by
``ρ = S_model(N, q) / S_paper(N_paper, 32)`` (the ratio of the all-token payloads). Then
``R' = ρ R`` at the same SNR, so every upload time, power and energy is the paper's for the
corresponding payload fraction: same deadlines, same energy budgets, same trade-offs.
``compute="paper"`` keeps the paper's client compute time T0 (FLOPs per sample rescaled to the
batch); ``compute="model"`` uses ``client_flops`` as given. ``k_min`` defaults to the paper's
fraction ``round(N · 64 / 196)``. Everything is configurable; ``scale=1.0`` disables scaling.

Costing a static schedule
-------------------------
:class:`CostedSchedule` wraps any schedule (e.g. the all-tokens fp32 baseline
``StaticSchedule(None, 32)``) and prices each round on the **same** fading draw with
:func:`evaluate_static_round`: every device transmits at ``p_max``, the bandwidth is split to
minimize the straggler's round time ``max_m (T0_m + T^U_m)`` (bisection on τ with the closed-form
least bandwidth), energy ``p_max · T^U_m``; deadlines and energy budgets are not enforced but their
violations are counted.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InfeasibleError, InvalidScenarioError
from ..model import channel
from ..model.payload import payload_bits
from .calibrate import calibrate_profiles, profile_uplink_bits, profiles_matrix
from .schedule import ClientPlan

__all__ = ["SolverSchedule", "CostedSchedule", "scenario_for_trainer", "scenario_for_spec",
           "sflam_scenario_for_trainer", "round_scenario",
           "evaluate_static_round", "samples_per_round", "FADING_STREAM"]

#: Third entry of the per-round fading seed ``[seed, round_idx, FADING_STREAM]``.
FADING_STREAM = 101


# --------------------------------------------------------------------------- model spec
def samples_per_round(trainer: Any) -> dict[int, int]:
    """Samples each client uploads in one round: local steps × ``min(batch, data size)``."""
    spec = trainer.model_spec()
    bs = int(spec["batch_size"])
    sizes = trainer.client_sizes
    return {int(c): int(s) * min(bs, int(sizes[c])) for c, s in spec["local_steps"].items()}


def scenario_for_spec(n_devices: int, *, n_patches: int, dim: int, batch: int, bits: int = 8,
                      preset: str = "st-sflora", seed: int | None = 0, k_min: int | None = None,
                      scale: float | str = "payload", compute: str = "paper",
                      client_flops: float | None = None, preset_options: Mapping | None = None):
    """A scenario of ``n_devices`` for a model with N patches of width D uploading ``batch``
    samples per round at ``bits`` per element.

    Parameters
    ----------
    scale : "payload" or float
        Multiplier ρ of the bandwidth and the path gain; ``"payload"``:
        ``payload_bits(batch, N, D, bits) / paper_payload(N_paper)`` (see the module docstring).
    compute : {"paper", "model"}
        ``"paper"`` keeps the preset's client compute time per round; ``"model"`` uses
        ``client_flops`` (FLOPs per sample, required then).
    k_min : int, optional
        Smallest K; default ``max(1, round(N · k_min_paper / N_paper))``.

    Returns
    -------
    Scenario, with ``meta["closed_loop"]`` recording ρ and the rule.
    """
    from ..scenarios import make_scenario

    base = make_scenario(preset, n_devices=int(n_devices), seed=seed, **dict(preset_options or {}))
    n, d, b, q = int(n_patches), int(dim), int(batch), int(bits)
    ref_bits = float(base.payload_bits(base.n_patches))
    model_bits = float(payload_bits(b, n, d, q, extra_tokens=base.extra_tokens))
    if scale == "payload":
        rho = model_bits / ref_bits
    else:
        rho = float(scale)
        if not math.isfinite(rho) or rho <= 0:
            raise InvalidScenarioError(f"scale must be 'payload' or a positive number, got {scale!r}",
                                       field="scale")
    if compute == "paper":
        flops = base.client_flops * base.batch / b
    elif compute == "model":
        if client_flops is None:
            raise InvalidScenarioError("compute='model' needs client_flops (FLOPs per sample)",
                                       field="client_flops")
        flops = float(client_flops)
    else:
        raise InvalidScenarioError(f"compute must be 'paper' or 'model', got {compute!r}", field="compute")
    kmin = int(k_min) if k_min is not None else max(1, int(round(n * base.k_min / base.n_patches)))
    if not 1 <= kmin <= n:
        raise InvalidScenarioError(f"k_min = {kmin} must be in [1, {n}]", field="k_min")
    # keep the preset's retention family shape, resampled on N ranks (replaced by calibration)
    x_old = np.linspace(0.0, 1.0, base.n_patches)
    x_new = np.linspace(0.0, 1.0, n)
    ret = np.vstack([np.interp(x_new, x_old, row) for row in base.retention])
    ret = np.minimum.accumulate(ret, axis=1) * (base.n_patches / n) * (b / base.batch)
    meta = dict(base.meta)
    meta["closed_loop"] = {"scale": rho, "scale_rule": "payload" if scale == "payload" else "fixed",
                           "paper_payload_bits": ref_bits, "model_payload_bits": model_bits,
                           "compute": compute, "ref_loss_db_paper": base.ref_loss_db}
    return base.replace(
        n_patches=n, dim=d, batch=b, bits=q, k_min=kmin, retention=ret, client_flops=flops,
        bandwidth_hz=base.bandwidth_hz * rho, path_gain=base.path_gain * rho,
        ref_loss_db=base.ref_loss_db - 10.0 * math.log10(rho),
        device_ids=np.arange(int(n_devices)), meta=meta)


def scenario_for_trainer(trainer: Any, *, bits: int = 8, **options):
    """:func:`scenario_for_spec` with the trainer's N, D, one device per client (device i is
    client i) and ``batch`` = the largest number of samples a client uploads per round."""
    spec = trainer.model_spec()
    spr = samples_per_round(trainer)
    return scenario_for_spec(trainer.num_clients, n_patches=int(spec["num_patches"]),
                             dim=int(spec["embed_dim"]), batch=max(spr.values()), bits=bits, **options)


def round_scenario(scenario, client_ids: Sequence[int], round_idx: int, seed: int):
    """The round's scenario: fading redrawn with ``[seed, round_idx, FADING_STREAM]`` on all
    devices, then restricted to ``client_ids`` (in that order)."""
    rng = np.random.default_rng([int(seed), int(round_idx), FADING_STREAM])
    return scenario.redraw_fading(rng).subset([int(c) for c in client_ids])


# --------------------------------------------------------------------------- pricing a fixed plan
def evaluate_static_round(scenario, bits_per_device, *, rel_tol: float = 1e-10) -> dict:
    """Price uploads of given sizes on a round's scenario without admission or limits.

    Every device transmits at ``p_max``; the bandwidth is split to minimize the round's straggler
    time ``τ = max_m (T0_m + T^U_m)`` (bisection on τ; device m gets the least bandwidth sending
    its bits within ``τ - T0_m``). Returns per-device ``latency`` (s), ``uplink_time`` (s),
    ``energy`` (J, ``p_max T^U``), ``bandwidth`` (Hz), the straggler time ``tau`` and the counts
    of deadline (``T0 + T^U > T_stand``) and energy (``> E_max``) violations.
    """
    s = scenario
    bits = np.asarray(bits_per_device, dtype=float)
    t0 = s.compute_time_s
    p = s.p_max_w
    noise = s.noise_psd_w_hz

    def need(tau):
        t = tau - t0
        with np.errstate(divide="ignore", invalid="ignore"):
            w = channel.min_bandwidth_hz(bits / np.where(t > 0, t, 1.0), p, s.gain, noise)
        return np.where(t > 0, w, np.inf)

    cap = channel.rate_limit_bps(p, s.gain, noise)
    lo = float(np.max(t0 + bits / cap))
    hi = max(lo * 2.0, lo + 1.0)
    while np.sum(need(hi)) > s.bandwidth_hz:
        hi *= 2.0
    for _ in range(200):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if np.sum(need(mid)) <= s.bandwidth_hz:
            hi = mid
        else:
            lo = mid
    w = need(hi)
    w = w * (s.bandwidth_hz / np.sum(w))            # hand out the spare bandwidth
    rate = channel.rate_bps(w, p, s.gain, noise)
    tu = bits / rate
    lat = t0 + tu
    energy = p * tu
    return {"tau": float(np.max(lat)), "latency": lat, "uplink_time": tu, "energy": energy,
            "bandwidth": w, "power": p.copy(),
            "deadline_violations": int(np.sum(lat > s.standing_time_s * (1 + 1e-9))),
            "energy_violations": int(np.sum(energy > s.energy_max_j * (1 + 1e-9)))}


# --------------------------------------------------------------------------- schedules
def _default_factory(scenario):
    from ..problems.ste import STEProblem

    return STEProblem(scenario)


def _default_sflam_factory(scenario):
    from ..problems.sflam import SFLAMProblem

    return SFLAMProblem(scenario)


def sflam_scenario_for_trainer(trainer: Any, *, seed: int | None = 0, scale: float | str = "payload",
                               compute: str = "paper", preset_options: Mapping | None = None):
    """An SFLAM scenario (preset ``"sflam"``) with the trainer's model: one device per client,
    ``tokens = N + 1`` ([CLS] + all patches, no selection), ``dim = D``, ``local_epochs = 1``,
    ``samples`` = each client's samples per round, ``client_params`` = the client's trainable
    (LoRA) parameters, so that the activation part of ``uplink_bits(b)`` equals the packed bits
    the client measures at b bits and the model part equals its fp32 adapter upload.

    ``scale="payload"`` multiplies the subchannel width and the path gain by
    ρ = mean model uplink / mean preset uplink (both at 32 bits), keeping SNR and upload times;
    ``compute="paper"`` rescales the client and server FLOPs per sample to keep the preset's mean
    compute and server times. The memory limit is lifted (the preset's memory model is ViT-B/32's).
    """
    from ..scenarios import make_scenario

    spec = trainer.model_spec()
    base = make_scenario("sflam", n_devices=trainer.num_clients, seed=seed, **dict(preset_options or {}))
    spr = samples_per_round(trainer)
    samples = np.array([spr[c] for c in range(trainer.num_clients)], dtype=float)
    params = int(sum(np.asarray(v).size for v in getattr(trainer, "client_global", {}).values()))
    model = base.replace(tokens=int(spec["num_patches"]) + 1, dim=int(spec["embed_dim"]), local_epochs=1,
                         samples=samples, batch=int(spec["batch_size"]), client_params=params,
                         memory_max_bytes=np.full(trainer.num_clients, np.inf),
                         image_size=int(getattr(trainer, "config", {}).get("data", {}).get("image_size", 32)))
    if scale == "payload":
        rho = float(np.mean(model.uplink_bits(32)) / np.mean(base.uplink_bits(32)))
    else:
        rho = float(scale)
    if compute == "paper":
        ratio = float(np.mean(base.processed_samples) / np.mean(model.processed_samples))
        model = model.replace(client_flops=base.client_flops * ratio, server_flops=base.server_flops * ratio)
    meta = dict(base.meta)
    meta["closed_loop"] = {"scale": rho, "compute": compute, "client_params": params}
    return model.replace(subchannel_hz=base.subchannel_hz * rho, path_gain=base.path_gain * rho,
                         ref_loss_db=base.ref_loss_db - 10.0 * math.log10(rho),
                         device_ids=np.arange(trainer.num_clients), meta=meta)


def _need_at_kmin(scen) -> np.ndarray:
    """Least bandwidth of each device to send K_min alone in its window (Hz); mirrors admission."""
    t = scen.standing_time_s - scen.compute_time_s
    with np.errstate(divide="ignore", invalid="ignore"):
        p_hat = np.minimum(scen.p_max_w, scen.energy_max_j / np.where(t > 0, t, 1.0))
        w = channel.min_bandwidth_hz(scen.payload_bits(scen.k_min) / np.where(t > 0, t, 1.0),
                                     p_hat, scen.gain, scen.noise_psd_w_hz)
    return np.where(t > 0, w, np.inf)


class _Recorder:
    """Shared bookkeeping: per-round records, totals."""

    records: list[dict]

    def totals(self) -> dict:
        """Σ straggler time (simulated training time, s), Σ energy (J), predicted bits."""
        return {"rounds": len(self.records),
                "simulated_time_s": float(sum(r["straggler_s"] for r in self.records)),
                "energy_j": float(sum(r["energy_j"] for r in self.records)),
                "predicted_bits": int(sum(r["predicted_bits"] for r in self.records)),
                "excluded_device_rounds": int(sum(len(r["excluded"]) for r in self.records))}


class SolverSchedule(_Recorder):
    """Re-solve the allocation every ``every`` rounds and schedule each client's K_m (and b_m).

    Parameters
    ----------
    problem_factory : callable, optional
        ``problem_factory(scenario) -> problem`` (default :class:`~ste_opt.STEProblem` with its
        defaults); e.g. ``lambda s: STEProblem(s, denominator="uplink")``.
    method : str
        Registered solver method (``ste_opt.list_methods``), default ``"alternating"``.
    every : int
        Solve every ``every`` rounds; in between the last allocation is reused when the same
        clients are sampled (calibration too), otherwise it is solved anew.
    scenario : Scenario, optional
        One device per trainer client, already matched to the model spec; default built on the
        first round with :func:`scenario_for_trainer` (``bits``, ``seed``, ``scenario_options``).
    bits : int
        q of the uplink (scenario ``bits``) when the problem does not choose bit widths.
    seed : int
        Fading stream seed (round r uses ``[seed, r, FADING_STREAM]``).
    calib_batches : int
        Batches each client measures its profile on.
    method_options : dict, optional
        Passed to ``ste_opt.solve``.
    certify : str, optional
        Also solve each round with this bounded method (e.g. ``"global"``) when registered, and
        record its bound and the scheduled solution's gap to it.
    eval_plan : ClientPlan, optional
        Compression used to evaluate the global model (default: none, all tokens fp32).
    """

    def __init__(self, problem_factory: Callable | None = None, method: str = "alternating",
                 every: int = 1, *, scenario=None, bits: int = 8, seed: int = 0,
                 calib_batches: int = 1, method_options: Mapping | None = None,
                 certify: str | None = None, eval_plan: ClientPlan | None = None,
                 scenario_options: Mapping | None = None, kind: str | None = None):
        if int(every) < 1:
            raise InvalidScenarioError(f"every must be >= 1, got {every}", field="every")
        self.problem_factory = problem_factory or _default_factory
        self.method = method
        self.every = int(every)
        self.scenario = scenario
        self.bits = int(bits)
        self.seed = int(seed)
        self.calib_batches = int(calib_batches)
        self.method_options = dict(method_options or {})
        self.certify = certify
        self._eval_plan = eval_plan if eval_plan is not None else ClientPlan(None, 32)
        self.scenario_options = dict(scenario_options or {})
        self.kind = kind or (getattr(scenario, "kind", None) if scenario is not None else None) or "ste"
        if self.kind not in ("ste", "sflam"):
            raise InvalidScenarioError(f"kind must be 'ste' or 'sflam', got {self.kind!r}", field="kind")
        if problem_factory is None and self.kind == "sflam":
            self.problem_factory = _default_sflam_factory
            if method == "alternating":
                self.method = "bcd"
        self.records: list[dict] = []
        self.last_problem = None
        self.last_solution = None
        self._cache: tuple[tuple[int, ...], dict] | None = None

    def eval_plan(self) -> ClientPlan:
        return self._eval_plan

    # ------------------------------------------------------------------ set-up
    def _ensure_scenario(self, trainer) -> None:
        if self.scenario is None:
            build = sflam_scenario_for_trainer if self.kind == "sflam" else scenario_for_trainer
            opts = dict(self.scenario_options)
            if self.kind != "sflam":
                opts["bits"] = self.bits
            self.scenario = build(trainer, seed=self.seed, **opts)
        s = self.scenario
        spec = trainer.model_spec()
        if s.n_devices != trainer.num_clients:
            raise InvalidScenarioError(
                f"scenario has {s.n_devices} devices but the trainer has {trainer.num_clients} clients "
                "(device i is client i)", field="scenario")
        checks = [("dim", spec["embed_dim"])]
        if getattr(s, "kind", "ste") == "sflam":        # SFLAM counts [CLS] among its tokens
            checks.append(("tokens", int(spec["num_patches"]) + 1))
        else:
            checks.append(("n_patches", spec["num_patches"]))
        for name, want in checks:
            if int(getattr(s, name)) != int(want):
                raise InvalidScenarioError(
                    f"scenario {name} = {getattr(s, name)} but the trained model has {want}: predicted and "
                    "measured bits would differ", field=name)

    # ------------------------------------------------------------------ the round
    def plan(self, round_idx: int, client_ids: Sequence[int], trainer: Any) -> dict[int, ClientPlan | None]:
        self._ensure_scenario(trainer)
        ids = tuple(int(c) for c in client_ids)
        if (self._cache is not None and self._cache[0] == ids and round_idx % self.every != 0):
            plans = self._cache[1]
            rec = dict(self.records[-1])
            rec.update(round=int(round_idx), solved=False)
            self.records.append(rec)
            return dict(plans)
        scen = round_scenario(self.scenario, ids, round_idx, self.seed)
        spr = samples_per_round(trainer)
        calib_bits = 0
        if getattr(scen, "kind", "ste") == "ste" and hasattr(scen, "with_retention"):
            prof = calibrate_profiles(trainer, ids, n_batches=self.calib_batches, round_idx=round_idx,
                                      batch=scen.batch)
            scen = scen.with_retention(profiles_matrix(prof, ids))
            calib_bits = profile_uplink_bits(scen.n_patches)
        problem, dropped = self._build_problem(scen)
        from ..solvers import list_methods, solve

        sol = solve(problem, self.method, **self.method_options)
        self.last_problem, self.last_solution = problem, sol
        bound = gap = None
        if self.certify and any(m.name == self.certify for m in list_methods(problem)):
            cert = solve(problem, self.certify)
            bound = cert.bound
            if bound is not None and bound > 0:
                gap = max(0.0, (bound - sol.objective) / abs(bound)) if problem.sense == "max" else \
                    max(0.0, (sol.objective - bound) / abs(bound))
        sub_ids = [c for c in ids if c not in dropped]
        excluded_pos = set(int(i) for i in sol.excluded)
        reasons = {sub_ids[int(i)]: r for i, r in sol.info.get("excluded_reasons", {}).items()}
        reasons.update(dropped)
        plans: dict[int, ClientPlan | None] = {c: None for c in ids}
        per_client: dict[int, dict] = {}
        lat, en, pbits = [], [], 0
        D = scen.dim
        n_patches = int(trainer.model_spec()["num_patches"])
        c0 = getattr(scen, "extra_tokens", 2)
        sflam = getattr(scen, "kind", "ste") == "sflam"
        for i, c in enumerate(sub_ids):
            if i in excluded_pos:
                continue
            k = None if sol.tokens is None else int(sol.tokens[i])
            b = int(sol.bits[i]) if sol.bits is not None else self.bits
            steps = int(trainer.model_spec()["local_steps"][c])
            bsz = spr[c] // max(steps, 1)
            if k is None:
                exact = steps * int(payload_bits(bsz, n_patches, D, b, extra_tokens=1))
                if sflam:   # activations of the round (the client-model part is the adapter upload)
                    s_m = int(payload_bits(int(scen.processed_samples[i]), scen.tokens, D, b, extra_tokens=0,
                                           side_bits_per_token=scen.side_bits_per_token))
                else:
                    s_m = int(payload_bits(scen.batch, n_patches, D, b, extra_tokens=1))
            else:
                exact = steps * int(payload_bits(bsz, k, D, b, extra_tokens=c0))
                s_m = int(payload_bits(scen.batch, k, D, b, extra_tokens=c0))
            pred = {"latency_s": float(sol.latency[i]), "energy_j": float(sol.energy[i]),
                    "uplink_time_s": float(sol.uplink_time[i]) if sol.uplink_time is not None else float("nan"),
                    "bandwidth_hz": float(sol.bandwidth[i]) if sol.bandwidth is not None else float("nan"),
                    "power_w": float(sol.power[i]) if sol.power is not None else float("nan"),
                    "retention": float(sol.retention[i]) if sol.retention is not None else float("nan"),
                    "solution_bits": s_m, "predicted_bits": exact, "calibration_bits": calib_bits}
            plans[c] = ClientPlan(k, b, pred)
            per_client[c] = {"tokens_kept": k, "bits": b, **pred}
            lat.append(pred["latency_s"])
            en.append(pred["energy_j"])
            pbits += exact
        excluded = [c for c in ids if plans[c] is None]
        if not per_client:
            raise InfeasibleError(f"round {round_idx}: the solver excluded every sampled client: "
                                  + "; ".join(f"client {c}: {r}" for c, r in reasons.items()),
                                  devices=excluded)
        self.records.append({
            "round": int(round_idx), "schedule": "solver", "solved": True, "method": self.method,
            "status": sol.status, "objective": float(sol.objective), "solve_time_s": float(sol.time_s),
            "bound": bound, "gap": gap, "clients": list(ids), "participants": sorted(per_client),
            "excluded": excluded, "excluded_reasons": {int(c): str(r) for c, r in reasons.items()},
            "straggler_s": float(max(lat)), "energy_j": float(sum(en)), "predicted_bits": int(pbits),
            "calibration_bits": int(calib_bits * len(ids)), "per_client": per_client})
        self._cache = (ids, dict(plans))
        return plans

    def _build_problem(self, scen):
        """Build the problem; while the admitted devices together cannot fit K_min in the bandwidth
        budget, drop the one needing the most bandwidth (recorded as excluded)."""
        dropped: dict[int, str] = {}
        keep = list(range(scen.n_devices))
        cur = scen
        while True:
            try:
                return self.problem_factory(cur), dropped
            except InfeasibleError as exc:
                if len(keep) <= 1 or getattr(cur, "kind", "ste") != "ste":
                    raise
                need = _need_at_kmin(cur)
                need = np.where(np.isfinite(need), need, np.inf)
                j = int(np.argmax(need))
                dev = int(cur.device_ids[j])
                dropped[dev] = (f"dropped so that the others fit the bandwidth budget at K_min "
                                f"(needs {need[j] / 1e6:.4g} MHz alone): {exc}")
                keep.pop(j)
                cur = cur.subset([i for i in range(cur.n_devices) if i != j])

    def __repr__(self) -> str:
        return f"SolverSchedule(method={self.method!r}, every={self.every}, bits={self.bits})"


class CostedSchedule(_Recorder):
    """Wrap a schedule (e.g. ``StaticSchedule(None, 32)``) and price each of its rounds on the
    same fading draws as a :class:`SolverSchedule` with the same ``scenario`` and ``seed``
    (:func:`evaluate_static_round`). Plans gain ``predicted`` latency, energy and bits."""

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

    def plan(self, round_idx: int, client_ids: Sequence[int], trainer: Any) -> dict[int, ClientPlan | None]:
        if self.scenario is None:
            self.scenario = scenario_for_trainer(trainer, bits=self.bits, seed=self.seed,
                                                 **self.scenario_options)
        raw = self.inner.plan(round_idx, client_ids, trainer)
        ids = [int(c) for c in client_ids]
        active = [c for c in ids if raw.get(c) is not None]
        scen = round_scenario(self.scenario, active, round_idx, self.seed)
        spr = samples_per_round(trainer)
        steps_of = trainer.model_spec()["local_steps"]
        D, N = scen.dim, scen.n_patches
        per_upload = []
        for c in active:
            p = raw[c]
            k = N if p.tokens_kept is None else int(p.tokens_kept)
            extra = 1 if p.tokens_kept is None else 2
            per_upload.append(int(payload_bits(scen.batch, k, D, int(p.bits), extra_tokens=extra)))
        cost = evaluate_static_round(scen, per_upload)
        plans: dict[int, ClientPlan | None] = {c: None for c in ids}
        per_client = {}
        pbits = 0
        for i, c in enumerate(active):
            p = raw[c]
            k = N if p.tokens_kept is None else int(p.tokens_kept)
            extra = 1 if p.tokens_kept is None else 2
            steps = int(steps_of[c])
            exact = steps * int(payload_bits(spr[c] // max(steps, 1), k, D, int(p.bits), extra_tokens=extra))
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
