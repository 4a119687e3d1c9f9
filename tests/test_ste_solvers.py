"""STE solvers: every method's output passes ``problem.check`` on random instances (hypothesis),
the alternating history never decreases, the registry refuses unknown methods and options, and
``Solution`` survives JSON / YAML round trips."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ste_opt import (
    InfeasibleError,
    InvalidScenarioError,
    Scenario,
    Solution,
    SolverError,
    STEProblem,
    list_methods,
    make_scenario,
    solve,
)
from ste_opt.io import load_solution, save_solution

#: methods too slow for property tests on every example (exact MINLP / enumeration / MILP)
SLOW = {"scip", "brute", "milp", "milp_highspy", "sflam_milp"}
BASELINES = ("fixed_power", "equal_bandwidth", "all_tokens", "fixed_tokens")
REL = 1e-9

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
                derandomize=True)


@st.composite
def problems(draw, max_devices: int = 8):
    """A random small STE instance from the st-sflora preset with varied limits and options."""
    n = draw(st.integers(1, max_devices))
    seed = draw(st.integers(0, 10_000))
    over = dict(
        energy_max_j=draw(st.sampled_from([0.1, 0.3, 0.8, 2.0])),
        p_max_w=draw(st.sampled_from([0.05, 0.2, 1.0])),
        profile_family=draw(st.sampled_from(["exponential", "zipf", "uniform"])),
        k_min=draw(st.sampled_from([1, 32, 64])),
        ref_loss_db=draw(st.sampled_from([20.0, 32.0, 40.0])),
    )
    if over["profile_family"] == "zipf":
        over["profile_scale"] = 0.8
    small = draw(st.booleans())
    if small:   # a small ViT keeps token tables short and exercises other sizes
        over.update(n_patches=16, dim=64, batch=8, k_min=min(over["k_min"], 4))
    bw_per_dev = draw(st.sampled_from([1e6, 5e6, 20e6]))
    scen = make_scenario("st-sflora", n_devices=n, seed=seed, bandwidth_hz=bw_per_dev * n, **over)
    opts = dict(
        denominator=draw(st.sampled_from(["round", "uplink"])),
        include_compute_energy=draw(st.booleans()),
        retention_floor=draw(st.sampled_from([0.0, 0.0, 0.5, 0.9])),
    )
    if draw(st.booleans()):
        opts["weights"] = np.random.default_rng(seed).uniform(0.2, 2.0, n)
    try:
        return STEProblem(scen, **opts)
    except InfeasibleError:
        assume(False)


def _assert_valid(problem, sol):
    rep = problem.check(sol)
    assert rep.ok, rep
    assert sol.status in ("optimal", "feasible", "time_limit")
    assert np.isfinite(sol.objective) and sol.objective > 0
    assert sol.excluded == problem.excluded
    assert sol.tokens.shape == (problem.n_total,)
    if sol.bound is not None:
        assert sol.bound >= sol.objective * (1 - 1e-6)


def _assert_monotone(history):
    h = np.asarray(history, dtype=float)
    assert h.size >= 1
    assert np.all(np.diff(h) >= -REL * np.abs(h[:-1])), h


# ---------------------------------------------------------------------------- alternating
COMBOS = list(itertools.product(["closed_form", "exact", "knapsack"], ["paper", "joint"], ["equal", "joint"]))


@pytest.mark.parametrize("token_step,resource_step,init", COMBOS)
@settings(max_examples=25, **SETTINGS)
@given(problem=problems())
def test_alternating_feasible_and_monotone(problem, token_step, resource_step, init):
    sol = solve(problem, "alternating", token_step=token_step, resource_step=resource_step, init=init)
    _assert_valid(problem, sol)
    _assert_monotone(sol.history)
    assert sol.objective == pytest.approx(sol.history[-1], rel=1e-9)
    assert sol.method == "alternating" and sol.time_s > 0
    assert 1 <= sol.iterations <= 20


@pytest.mark.parametrize("token_step", ["closed_form", "exact"])
@settings(max_examples=4, **SETTINGS)
@given(problem=problems(max_devices=4))
def test_alternating_cvxpy_feasible_and_monotone(problem, token_step):
    sol = solve(problem, "alternating", token_step=token_step, resource_step="cvxpy", max_iter=5)
    _assert_valid(problem, sol)
    _assert_monotone(sol.history)


# ---------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("method", BASELINES)
@settings(max_examples=40, **SETTINGS)
@given(problem=problems(), data=st.data())
def test_baselines_feasible_or_name_devices(problem, method, data):
    opts = {}
    if method == "fixed_tokens":
        opts["tokens"] = data.draw(st.integers(int(np.max(problem.k_lo)), problem.N))
    if method == "fixed_power" and data.draw(st.booleans()):
        opts["power_w"] = float(np.min(problem.p_max)) * data.draw(st.sampled_from([0.25, 0.5, 1.0]))
    try:
        sol = solve(problem, method, **opts)
    except InfeasibleError as exc:
        assert exc.devices, "InfeasibleError must name the devices"
        assert set(exc.devices) <= set(map(int, problem.active))
        assert str(exc)
        return
    _assert_valid(problem, sol)
    _assert_monotone(sol.history)
    if method == "all_tokens":
        np.testing.assert_array_equal(sol.tokens[problem.active], problem.N)
    if method == "fixed_tokens":
        np.testing.assert_array_equal(sol.tokens[problem.active], opts["tokens"])
    if method == "equal_bandwidth":
        np.testing.assert_allclose(sol.bandwidth[problem.active], problem.W_tot / problem.M, rtol=1e-9)
    if method == "fixed_power":
        p = opts.get("power_w", problem.p_max)
        np.testing.assert_allclose(sol.power[problem.active], np.broadcast_to(p, (problem.M,)), rtol=1e-12)


def _limits(method: str) -> dict:
    """A 2 s time limit for methods that take one (keeps the property tests fast)."""
    info = next(m for m in list_methods("ste") if m.name == method)
    return {"time_limit": 2.0} if "time_limit" in info.options else {}


def _other_methods():
    known = {"alternating", *BASELINES}
    return sorted(m.name for m in list_methods("ste") if m.name not in known and m.name not in SLOW)


@pytest.mark.parametrize("method", _other_methods() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no other fast STE method registered"))])
@settings(max_examples=10, **SETTINGS)
@given(problem=problems(max_devices=5))
def test_other_registered_methods_feasible(problem, method):
    sol = solve(problem, method, **_limits(method))
    _assert_valid(problem, sol)
    if len(sol.history) > 1 and method != "global":
        _assert_monotone(sol.history)


# ---------------------------------------------------------------------------- against enumeration
def _tiny(**changes):
    kw = dict(
        distance_m=[100.0, 300.0], path_gain=[1e-13, 2e-13], fading=[1.0, 1.0], p_max_w=[0.1, 0.1],
        cpu_freq_hz=[1e9, 1e9], cores=[1.0, 2.0], velocity_mps=[0.0, 40.0], energy_max_j=[1.0, 1.0],
        retention=[[0.4, 0.3, 0.2, 0.1], [0.5, 0.25, 0.15, 0.1]],
        bandwidth_hz=4e3, noise_psd_dbm_hz=-170.0, n_patches=4, dim=1000, batch=1, bits=32,
        extra_tokens=2, k_min=1, client_flops=1e9, flops_per_cycle=1.0, kappa=1e-28)
    kw.update(changes)
    return Scenario(**kw)


@pytest.mark.parametrize("denominator", ["round", "uplink"])
@pytest.mark.parametrize("bandwidth_hz", [3.5e3, 4e3, 1e4, 1e6])
def test_no_method_beats_enumeration(denominator, bandwidth_hz):
    pr = STEProblem(_tiny(bandwidth_hz=bandwidth_hz), denominator=denominator)
    best = 0.0
    for k in itertools.product(*(range(lo, pr.N + 1) for lo in pr.k_lo)):
        tau, _, _ = pr.min_straggler_time(np.array(k))
        if np.isfinite(tau):
            best = max(best, float(np.sum(pr.WF[np.arange(pr.M), list(k)])) / tau)
    assert best > 0
    for m in list_methods(pr):
        if m.name in SLOW - {"brute"} or m.name in ("fixed_tokens", "all_tokens", "fixed_power",
                                                  "equal_bandwidth"):
            continue
        sol = solve(pr, m.name, **_limits(m.name))
        assert pr.check(sol).ok
        assert sol.objective <= best * (1 + 1e-7), m.name
        if m.bound == "exact":
            assert sol.objective == pytest.approx(best, rel=1e-7), m.name
        if m.bound == "bound" and sol.bound is not None:
            assert sol.bound >= best * (1 - 1e-7), m.name          # a valid upper bound
            if sol.status == "optimal":
                assert sol.objective >= best * (1 - 1e-3), m.name
    # the alternating heuristic has no guarantee; it is at least as good as all-K_min
    tau_lo, _, _ = pr.min_straggler_time(pr.k_lo)
    ex = solve(pr, "alternating", token_step="exact", resource_step="joint")
    assert ex.objective >= float(np.sum(pr.WF[np.arange(pr.M), pr.k_lo])) / tau_lo * (1 - 1e-9)


# ---------------------------------------------------------------------------- registry errors
def test_solve_rejects_unknown_method_and_options():
    pr = STEProblem(make_scenario("st-sflora", n_devices=4, seed=0))
    with pytest.raises(SolverError) as ei:
        solve(pr, "no_such_method")
    assert "alternating" in str(ei.value)          # lists the available methods
    with pytest.raises(SolverError) as ei:
        solve(pr, "alternating", bogus_option=1)
    assert "bogus_option" in str(ei.value)
    with pytest.raises(SolverError):
        solve(pr, "alternating", token_step="greedy")
    with pytest.raises(SolverError):
        solve(pr, "alternating", resource_step="magic")
    with pytest.raises(SolverError):
        solve(pr, "alternating", init="random")
    with pytest.raises(InvalidScenarioError) as ei:
        solve(pr, "fixed_tokens", tokens=500)
    assert ei.value.field == "tokens"
    with pytest.raises(InvalidScenarioError) as ei:
        solve(pr, "fixed_power", power_w=1.0)
    assert ei.value.field == "power_w"
    assert solve(pr).method == "alternating"       # default method


def test_list_methods_has_alternating_and_baselines():
    names = {m.name for m in list_methods("ste")}
    assert {"alternating", *BASELINES} <= names
    alt = next(m for m in list_methods("ste") if m.name == "alternating")
    assert {"max_iter", "token_step", "resource_step", "init"} <= set(alt.options)


def test_equal_bandwidth_infeasible_names_devices_and_deficit():
    # the tiny instance needs about 1.1 kHz (device 0) and 2.3 kHz (device 1) at K_min:
    # 3.5 kHz fits both, but an equal split (1.75 kHz each) starves device 1
    pr = STEProblem(_tiny(bandwidth_hz=3.5e3))
    short = pr.w_need_min > pr.W_tot / pr.M
    assert list(short) == [False, True]
    with pytest.raises(InfeasibleError) as ei:
        solve(pr, "equal_bandwidth")
    assert ei.value.devices == [1]
    assert ei.value.deficit["bandwidth_hz"] == pytest.approx(pr.w_need_min[1] - 1750.0, rel=1e-6)
    assert pr.check(solve(pr, "alternating")).ok


# ---------------------------------------------------------------------------- Solution I/O
def _assert_solution_equal(a: Solution, b: Solution):
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys()
    for key in da:
        assert da[key] == db[key], key


def test_solution_json_round_trip():
    pr = STEProblem(make_scenario("st-sflora", n_devices=10, seed=0))
    sol = solve(pr, "alternating")
    text = sol.to_json()
    back = Solution.from_dict(json.loads(text))
    _assert_solution_equal(sol, back)
    assert back.to_json() == text
    np.testing.assert_array_equal(back.tokens, sol.tokens)
    assert back.tokens.dtype.kind == "i"
    np.testing.assert_array_equal(back.bandwidth, sol.bandwidth)
    assert pr.check(back).ok
    assert back.objective == sol.objective and back.history == sol.history


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_solution_file_round_trip(tmp_path, suffix):
    pr = STEProblem(make_scenario("st-sflora", n_devices=5, seed=4))
    sol = solve(pr, "fixed_tokens", tokens=100)
    path = save_solution(sol, tmp_path / f"sol{suffix}")
    back = load_solution(path)
    _assert_solution_equal(sol, back)
    assert pr.check(back).ok


def test_solution_set_bound_and_success():
    s = Solution(status="feasible", objective=9.0)
    s.set_bound(10.0)
    assert s.gap == pytest.approx(0.1) and s.success
    s.set_bound(8.0, sense="min")
    assert s.gap == pytest.approx(0.125)
    s.set_bound(None)
    assert s.gap is None
    assert not Solution(status="infeasible", objective=float("nan")).success


def test_all_tokens_infeasible_names_the_devices_that_cannot_send_them():
    seen = 0
    for seed in range(20):
        pr = STEProblem(make_scenario("st-sflora", n_devices=10, seed=seed))
        try:
            solve(pr, "all_tokens")
            continue
        except InfeasibleError as exc:
            err = exc
        seen += 1
        need = pr.w_min(np.full(pr.M, pr.N), pr.tau_max)
        alone = ~(need <= pr.W_tot)
        expected = pr.active[alone] if alone.any() else pr.active
        assert err.devices == [int(d) for d in expected]
        assert err.deficit["bandwidth_hz"] == pytest.approx(float(np.sum(need)) - pr.W_tot)
    assert seen > 0
