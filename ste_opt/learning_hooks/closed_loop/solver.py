"""Planning: :class:`SolverSchedule` re-solves the allocation problem every round and hands each
client its token budget K_m (and bit width b_m for SFLAM): the closed loop of docs/closed_loop.md.

Each planned round:

1. redraw the Rayleigh fading of the whole scenario with a seeded generator
   (``numpy.random.default_rng([seed, round_idx, 101])``) and ``subset`` it to the sampled clients
   (scenario device i is trainer client i; :mod:`.scaling`);
2. calibrate: every sampled client measures its retention profile on its own data with the current
   model (the context's profile callback, :mod:`~ste_opt.learning_hooks.calibrate`), rescaled to
   the problem's batch;
3. build the problem (``problem_factory(scenario)``, default :class:`~ste_opt.STEProblem`; devices
   dropped by :mod:`.admission` while the rest cannot fit K_min) and solve it
   (``ste_opt.solve(problem, method)``);
4. give each client ``ClientPlan(K_m, b_m, predicted={...})`` (:mod:`.predict`); devices the solver
   excludes get ``None`` (they sit the round out, send nothing, and the trainer records them as
   excluded). Every round is recorded (:mod:`.records`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ...errors import InfeasibleError, InvalidScenarioError
from ..calibrate import calibrate_profiles, profile_uplink_bits, profiles_matrix
from ..schedule import ClientPlan
from ..spec import PlanContext
from .admission import build_with_admission
from .predict import round_upload_bits, solution_bits
from .records import RoundRecords, certified_gap, solution_prediction
from .scaling import (
    check_scenario_matches,
    round_scenario,
    scenario_for_model,
    sflam_scenario_for_model,
)

__all__ = ["SolverSchedule"]


def _default_factory(scenario):
    from ...problems.ste import STEProblem

    return STEProblem(scenario)


def _default_sflam_factory(scenario):
    from ...problems.sflam import SFLAMProblem

    return SFLAMProblem(scenario)


class SolverSchedule(RoundRecords):
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
        first round with :func:`~.scaling.scenario_for_model` (``bits``, ``seed``,
        ``scenario_options``).
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
    def _ensure_scenario(self, context: PlanContext) -> None:
        if self.scenario is None:
            opts = dict(self.scenario_options)
            if self.kind == "sflam":
                self.scenario = sflam_scenario_for_model(context.spec, seed=self.seed, **opts)
            else:
                opts["bits"] = self.bits
                self.scenario = scenario_for_model(context.spec, seed=self.seed, **opts)
        check_scenario_matches(self.scenario, context.spec)

    # ------------------------------------------------------------------ the round
    def plan(self, round_idx: int, client_ids: Sequence[int],
             context: PlanContext) -> dict[int, ClientPlan | None]:
        self._ensure_scenario(context)
        spec = context.spec
        ids = tuple(int(c) for c in client_ids)
        if (self._cache is not None and self._cache[0] == ids and round_idx % self.every != 0):
            plans = self._cache[1]
            rec = dict(self.records[-1])
            rec.update(round=int(round_idx), solved=False)
            self.records.append(rec)
            return dict(plans)
        scen = round_scenario(self.scenario, ids, round_idx, self.seed)
        calib_bits = 0
        if getattr(scen, "kind", "ste") == "ste" and hasattr(scen, "with_retention"):
            prof = calibrate_profiles(context, ids, n_batches=self.calib_batches, round_idx=round_idx,
                                      batch=scen.batch)
            scen = scen.with_retention(profiles_matrix(prof, ids))
            calib_bits = profile_uplink_bits(scen.n_patches)
        problem, dropped = build_with_admission(self.problem_factory, scen)
        from ...solvers import list_methods, solve

        sol = solve(problem, self.method, **self.method_options)
        self.last_problem, self.last_solution = problem, sol
        bound = gap = None
        if self.certify and any(m.name == self.certify for m in list_methods(problem)):
            bound = solve(problem, self.certify).bound
            gap = certified_gap(problem, sol.objective, bound)
        sub_ids = [c for c in ids if c not in dropped]
        excluded_pos = set(int(i) for i in sol.excluded)
        reasons = {sub_ids[int(i)]: r for i, r in sol.info.get("excluded_reasons", {}).items()}
        reasons.update(dropped)
        plans: dict[int, ClientPlan | None] = {c: None for c in ids}
        per_client: dict[int, dict] = {}
        lat, en, pbits = [], [], 0
        for i, c in enumerate(sub_ids):
            if i in excluded_pos:
                continue
            k = None if sol.tokens is None else int(sol.tokens[i])
            b = int(sol.bit_width[i]) if sol.bit_width is not None else self.bits
            exact = round_upload_bits(spec, c, k, b)
            pred = {**solution_prediction(sol, i), "solution_bits": solution_bits(scen, i, k, b),
                    "predicted_bits": exact, "calibration_bits": calib_bits}
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

    def __repr__(self) -> str:
        return f"SolverSchedule(method={self.method!r}, every={self.every}, bits={self.bits})"
