"""SFLAM solvers: feasibility, monotone BCD, exact cases, bounds and the baselines' ordering."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ste_opt
from ste_opt import InfeasibleError, Scenario, SFLAMProblem, SolverError, solve
from ste_opt.problems.sflam import gale_shapley
from ste_opt.solvers.sflam.power import bracket, power_step_exact, power_step_sca

BASELINES = ("random_matching", "max_power", "fixed_bits")
SETTINGS = dict(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def instance(n, seed, ratio=1.0, limits=0.0, **kw):
    """A small random instance; ``limits`` in (0, 1] adds deadlines and batteries that bind."""
    s = Scenario.preset("sflam", n_devices=n, seed=seed, subchannels_per_device=ratio, **kw)
    if limits > 0:
        base = SFLAMProblem(s, omega=0.0)
        tb = base.tables(np.full(n, 8))
        t_best = np.min(tb.t_min, axis=1)
        dl = np.maximum(t_best * (1.0 + 2.0 * limits), float(np.max(t_best)) * (1.05 + limits))
        batt = s.compute_energy_j * (1.5 + 3 * limits) + 5.0
        s = s.replace(deadline_s=dl, energy_max_j=batt)
    return s


@st.composite
def problems(draw, max_n=5):
    n = draw(st.integers(2, max_n))
    seed = draw(st.integers(0, 10_000))
    ratio = draw(st.sampled_from([1.0, 1.5]))
    limits = draw(st.sampled_from([0.0, 0.0, 0.3, 1.0]))
    omega = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    per_dev = draw(st.booleans())
    try:
        return SFLAMProblem(instance(n, seed, ratio, limits), omega=omega, per_device_bits=per_dev)
    except InfeasibleError:
        return None


@settings(**SETTINGS)
@given(problems())
def test_bcd_and_baselines_feasible_monotone_and_ordered(pr):
    if pr is None:
        return
    try:
        sol = solve(pr, "bcd")
    except InfeasibleError:
        return
    rep = pr.check(sol)
    assert rep.ok, rep
    h = np.asarray(sol.history)
    assert len(h) >= 2 and np.all(np.diff(h) <= 1e-12 * np.abs(h[:-1]))
    assert h[-1] == pytest.approx(sol.objective, rel=1e-12)
    for name in BASELINES:
        try:
            b = solve(pr, name)
        except InfeasibleError:
            continue
        assert pr.check(b).ok, (name, pr.check(b))
        assert sol.objective <= b.objective * (1 + 1e-9), name


@settings(**{**SETTINGS, "max_examples": 6})
@given(problems(max_n=4))
def test_milp_bound_below_bcd_and_brute(pr):
    if pr is None or pr.per_device_bits:
        return
    try:
        sb = solve(pr, "bcd")
    except InfeasibleError:
        return
    sm = solve(pr, "milp", refine=3)
    assert pr.check(sm).ok
    assert sm.bound <= sb.objective * (1 + 1e-9)
    assert sm.bound <= sm.objective * (1 + 1e-9)
    assert sm.gap == pytest.approx((sm.objective - sm.bound) / sm.bound)
    for name in BASELINES:          # milp bound <= bcd <= every baseline, on the same instance
        try:
            b = solve(pr, name)
        except InfeasibleError:
            continue
        assert sm.bound <= sb.objective * (1 + 1e-9) <= b.objective * (1 + 2e-9), name
    sx = solve(pr, "brute")
    assert sm.bound <= sx.objective * (1 + 1e-9)
    assert sx.objective <= sb.objective * (1 + 1e-9) and sx.objective <= sm.objective * (1 + 1e-9)


@pytest.mark.parametrize("seed,n,ratio,limits", [(0, 3, 1.0, 0.0), (1, 4, 1.0, 0.3), (2, 3, 1.5, 1.0),
                                                 (3, 4, 1.5, 0.0), (4, 2, 1.0, 0.3)])
def test_hungarian_equals_brute_when_energy_only(seed, n, ratio, limits):
    pr = SFLAMProblem(instance(n, seed, ratio, limits), omega=0.0)
    h = solve(pr, "hungarian")
    b = solve(pr, "brute")
    assert pr.check(h).ok and pr.check(b).ok
    assert h.objective == pytest.approx(b.objective, rel=1e-9)
    assert h.status == "optimal" and h.gap == 0.0
    # and bcd reaches it too on these tiny instances
    assert solve(pr, "bcd").objective == pytest.approx(b.objective, rel=1e-6)


def test_hungarian_refuses_latency_weight():
    pr = SFLAMProblem(instance(3, 0), omega=0.5)
    with pytest.raises(SolverError, match="omega = 0"):
        solve(pr, "hungarian")
    with pytest.raises(SolverError, match="tiny"):
        solve(SFLAMProblem(instance(8, 0)), "brute")


@pytest.mark.parametrize("seed,omega,limits", [(0, 0.5, 0.0), (1, 0.9, 0.3), (2, 0.2, 1.0), (3, 1.0, 0.0)])
def test_sca_power_step_matches_exact_line_search(seed, omega, limits):
    pr = SFLAMProblem(instance(5, seed, 1.0, limits), omega=omega)
    asg = gale_shapley(pr.phi)
    bits = np.full(5, 8)
    p_exact = power_step_exact(pr, asg, bits)
    if p_exact is None:
        pytest.skip("matching infeasible")
    u_exact = bracket(pr, asg, p_exact, bits)
    p_sca, trace = power_step_sca(pr, asg, bits, return_trace=True)
    u_sca = bracket(pr, asg, p_sca, bits)
    assert np.all(np.diff(trace) <= 0)                       # MM: monotone
    assert u_sca == pytest.approx(u_exact, rel=1e-5)
    assert u_exact <= u_sca * (1 + 1e-9)
    # the exact step beats random feasible power vectors
    rng = np.random.default_rng(seed)
    tb = pr.tables(bits)
    p_hi = tb.p_hi[np.arange(5), asg]
    for _ in range(300):
        p = np.exp(rng.uniform(np.log(pr.p_lo), np.log(p_hi)))
        assert bracket(pr, asg, p, bits) >= u_exact * (1 - 1e-9)


def test_power_step_extremes():
    s = instance(4, 5)
    asg = np.arange(4)
    bits = np.full(4, 8)
    p0 = power_step_exact(SFLAMProblem(s, omega=0.0), asg, bits)
    np.testing.assert_allclose(p0, s.p_min_w)                # energy only: the lowest power
    pr1 = SFLAMProblem(s, omega=1.0)
    p1, tau = power_step_exact(pr1, asg, bits, return_tau=True)
    ev = pr1.evaluate(asg, p1, bits)
    t_full = pr1.evaluate(asg, pr1.tables(bits).p_hi[np.arange(4), asg], bits)["t_round"]
    assert ev["t_round"] == pytest.approx(t_full, rel=1e-9)  # latency only: fastest straggler
    assert np.any(p1 < s.p_max_w * (1 - 1e-6))               # ... without wasting energy elsewhere


def test_bcd_options_and_per_device_bits():
    s = instance(5, 11)
    pr = SFLAMProblem(s, omega=0.5)
    base = solve(pr)
    assert base.method == "bcd"
    for opts in ({"matching": "swap"}, {"matching": "hungarian"}, {"power_step": "sca"},
                 {"baseline_starts": False}):
        sol = solve(pr, "bcd", **opts)
        assert pr.check(sol).ok, opts
        assert np.all(np.diff(sol.history) <= 1e-12)
    prd = SFLAMProblem(s, omega=0.5, per_device_bits=True)
    sd = solve(prd, "bcd")
    assert prd.check(sd).ok
    assert sd.objective <= base.objective * (1 + 1e-12)       # per-device widths can only help
    with pytest.raises(SolverError, match="no option"):
        solve(pr, "bcd", bogus=1)
    with pytest.raises(SolverError, match="common bit-width"):
        solve(prd, "milp")


def test_milp_certifies_small_gap():
    pr = SFLAMProblem(instance(6, 21), omega=0.5)
    sm = solve(pr, "milp")
    assert pr.check(sm).ok
    assert sm.status == "optimal" and sm.gap <= 1e-3
    assert sm.bound <= solve(pr, "bcd").objective * (1 + 1e-9)


def test_registered_methods():
    names = {m.name for m in ste_opt.list_methods("sflam")}
    assert {"bcd", "milp", "hungarian", "brute", *BASELINES} <= names
    bounds = {m.name: m.bound for m in ste_opt.list_methods("sflam")}
    assert bounds["milp"] == "bound" and bounds["brute"] == "exact"


@pytest.mark.slow
def test_milp_certifies_one_percent_at_twenty_devices():
    pr = SFLAMProblem(Scenario.preset("sflam", n_devices=20, seed=0), omega=0.5)
    sm = solve(pr, "milp")
    assert pr.check(sm).ok and sm.gap <= 0.01
    assert sm.bound <= solve(pr, "bcd").objective * (1 + 1e-9)
