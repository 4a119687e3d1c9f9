"""STEProblem: evaluation against a hand computation, admission, infeasibility diagnosis,
options, the convex resource model, and an independent (brentq-based) implementation of the
fixed-token resource step.

The hand instance (2 devices, N = 4 patches, D = 1000, B = 1, q = 32 bits so β = 32 000 bits per
token and S(K) = 32 000 (K + 2) bits; N0 = −170 dBm/Hz = 1e-20 W/Hz):

=========  ======  =====  =======  ======  =======  ========  ===========
device     h       p_max  T0 (s)   T_st    E_max    E_comp    profile
=========  ======  =====  =======  ======  =======  ========  ===========
0          1e-13   0.1    1.0      10      1.0      0.1       .4 .3 .2 .1
1          2e-13   0.1    0.5      5       1.0      0.1       .5 .25 .15 .1
=========  ======  =====  =======  ======  =======  ========  ===========

T0 = B Φ / (f cores ν) = 1e9 / (1e9 · cores · 1); E_comp = κ (B Φ / ν) f² = 1e-28 · 1e9 · 1e18;
T_st = min((500 − d) / v, 10) with (d, v) = (100, 0) and (300, 40).
At K = (2, 3), W = (1, 1) MHz, p = (0.1, 0.1) W: SNR = (1, 2), R = (1, log2 3) Mbit/s,
S = (128 000, 160 000) bits, T^U = (0.128, 0.160 000 / 1.584 963) s.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from ste_opt import (
    InfeasibleError,
    InvalidScenarioError,
    Scenario,
    Solution,
    STEProblem,
    make_scenario,
)

LOG2_3 = math.log2(3.0)
TU0 = 128_000 / 1e6
TU1 = 160_000 / (1e6 * LOG2_3)


def hand_scenario(**changes) -> Scenario:
    kw = dict(
        distance_m=[100.0, 300.0], path_gain=[1e-13, 2e-13], fading=[1.0, 1.0], p_max_w=[0.1, 0.1],
        cpu_freq_hz=[1e9, 1e9], cores=[1.0, 2.0], velocity_mps=[0.0, 40.0], energy_max_j=[1.0, 1.0],
        retention=[[0.4, 0.3, 0.2, 0.1], [0.5, 0.25, 0.15, 0.1]],
        bandwidth_hz=2e6, noise_psd_dbm_hz=-170.0, cell_radius_m=500.0, t_max_s=10.0,
        n_patches=4, dim=1000, batch=1, bits=32, extra_tokens=2, k_min=1,
        client_flops=1e9, flops_per_cycle=1.0, kappa=1e-28)
    kw.update(changes)
    return Scenario(**kw)


def alloc(k, w, p, objective=float("nan")) -> Solution:
    return Solution(status="feasible", objective=objective, tokens=np.asarray(k),
                    bandwidth=np.asarray(w, dtype=float), power=np.asarray(p, dtype=float))


# ---------------------------------------------------------------------------- hand computation
def test_hand_instance_derived_quantities():
    s = hand_scenario()
    np.testing.assert_allclose(s.compute_time_s, [1.0, 0.5])
    np.testing.assert_allclose(s.compute_energy_j, [0.1, 0.1])
    np.testing.assert_allclose(s.standing_time_s, [10.0, 5.0])
    assert s.bits_per_token == 32_000
    np.testing.assert_allclose(s.payload_bits(np.array([2, 3])), [128_000, 160_000])
    assert s.noise_psd_w_hz == pytest.approx(1e-20)


def test_evaluate_matches_hand_computation():
    pr = STEProblem(hand_scenario())
    assert pr.M == 2 and pr.excluded == []
    ev = pr.evaluate([2, 3], [1e6, 1e6], [0.1, 0.1])
    np.testing.assert_allclose(ev["uplink_time"], [TU0, TU1], rtol=1e-12)
    np.testing.assert_allclose(ev["latency"], [1.0 + TU0, 0.5 + TU1], rtol=1e-12)
    np.testing.assert_allclose(ev["energy"], [0.1 * TU0, 0.1 * TU1], rtol=1e-12)
    np.testing.assert_allclose(ev["retention"], [0.7, 0.9], rtol=1e-12)
    assert ev["tau"] == pytest.approx(1.128, rel=1e-12)
    assert ev["objective"] == pytest.approx(1.6 / 1.128, rel=1e-12)
    # the uplink denominator: max T^U = 0.128 s
    up = STEProblem(hand_scenario(), denominator="uplink").evaluate([2, 3], [1e6, 1e6], [0.1, 0.1])
    assert up["objective"] == pytest.approx(1.6 / 0.128, rel=1e-12)       # 12.5
    # weights multiply each device's retention
    wt = STEProblem(hand_scenario(), weights=[2.0, 1.0]).evaluate([2, 3], [1e6, 1e6], [0.1, 0.1])
    assert wt["objective"] == pytest.approx((2 * 0.7 + 0.9) / 1.128, rel=1e-12)
    # compute energy is counted in the energy when asked
    ce = STEProblem(hand_scenario(), include_compute_energy=True).evaluate([2, 3], [1e6, 1e6], [0.1, 0.1])
    np.testing.assert_allclose(ce["energy"], [0.1 + 0.1 * TU0, 0.1 + 0.1 * TU1], rtol=1e-12)


def test_evaluate_refuses_wrong_shapes():
    pr = STEProblem(hand_scenario())
    with pytest.raises(InvalidScenarioError) as ei:
        pr.evaluate([2], [1e6, 1e6], [0.1, 0.1])
    assert ei.value.field == "tokens"


def test_check_hand_allocation_and_violations():
    pr = STEProblem(hand_scenario())
    ok = pr.check(alloc([2, 3], [1e6, 1e6], [0.1, 0.1]))
    assert ok.ok and ok.max_violation == 0.0
    rep = pr.check(alloc([2, 3], [1e6, 2e6], [0.12, 0.1]))
    assert rep.violations["bandwidth_budget"] == pytest.approx(0.5)
    assert rep.violations["power_max"] == pytest.approx(0.2)
    assert not rep.ok
    assert pr.check(alloc([0, 3], [1e6, 1e6], [0.1, 0.1])).violations["tokens_min"] == pytest.approx(1.0)
    assert pr.check(alloc([5, 3], [1e6, 1e6], [0.1, 0.1])).violations["tokens_max"] == pytest.approx(0.25)
    assert pr.check(alloc([2.5, 3], [1e6, 1e6], [0.1, 0.1])).violations["tokens_integer"] == pytest.approx(0.5)
    # energy: E_max = 0.01 J for device 0, uses 0.0128 J
    pe = STEProblem(hand_scenario(energy_max_j=[0.01, 1.0]))
    assert pe.check(alloc([2, 3], [1e6, 1e6], [0.1, 0.1])).violations["energy"] == pytest.approx(0.28)
    # latency: T_stand of device 1 = (500 - 300) / v; make it 0.55 s, latency is 0.5 + TU1
    pl = STEProblem(hand_scenario(velocity_mps=[0.0, 200 / 0.55], bandwidth_hz=1e9))
    assert pl.excluded == []
    viol = pl.check(alloc([2, 3], [1e6, 1e6], [0.1, 0.1])).violations["latency"]
    assert viol == pytest.approx((0.5 + TU1) / 0.55 - 1, rel=1e-9)
    # an inconsistent objective is reported
    bad = pr.check(alloc([2, 3], [1e6, 1e6], [0.1, 0.1], objective=2.0))
    assert bad.violations["objective_consistent"] == pytest.approx(abs(2.0 - 1.6 / 1.128) / (1.6 / 1.128))


# ---------------------------------------------------------------------------- admission
def test_admission_excludes_with_reasons_and_strict_raises():
    # device 1 leaves coverage before its forward pass ends (T_stand 0.4 s < T0 0.5 s);
    # device 2 is too far: its rate limit p h / (N0 ln 2) cannot carry K_min in its window
    s = hand_scenario(
        distance_m=[100.0, 300.0, 400.0], path_gain=[1e-13, 2e-13, 1e-19], fading=[1.0, 1.0, 1.0],
        p_max_w=[0.1, 0.1, 0.1], cpu_freq_hz=[1e9] * 3, cores=[1.0, 2.0, 1.0],
        velocity_mps=[0.0, 500.0, 0.0], energy_max_j=[1.0] * 3,
        retention=[[0.4, 0.3, 0.2, 0.1], [0.5, 0.25, 0.15, 0.1], [0.4, 0.3, 0.2, 0.1]])
    pr = STEProblem(s)
    assert pr.excluded == [1, 2]
    assert list(pr.active) == [0]
    assert "standing time" in pr.excluded_reasons[1]
    assert "any bandwidth" in pr.excluded_reasons[2]
    sol = pr.make_solution([2], [2e6], [0.1])
    assert sol.excluded == [1, 2]
    assert list(sol.tokens) == [2, 0, 0] and sol.bandwidth[1] == 0 and sol.power[2] == 0
    assert set(sol.info["excluded_reasons"]) == {1, 2}
    assert pr.check(sol).ok
    # an excluded device that sends something is a violation
    assert not pr.check(alloc([2, 1, 0], [1e6, 1e5, 0], [0.1, 0.1, 0])).ok
    with pytest.raises(InfeasibleError) as ei:
        STEProblem(s, strict=True)
    assert ei.value.devices == [1, 2]
    assert "device 1" in str(ei.value) and "device 2" in str(ei.value)


def test_admission_bandwidth_reason_and_compute_energy_reason():
    # device 1 alone needs more than the whole budget (tiny budget, but device 0 fits)
    s = hand_scenario(path_gain=[1e-13, 1e-14], bandwidth_hz=3000.0)
    pr = STEProblem(s)
    assert pr.excluded == [1]
    assert "MHz" in pr.excluded_reasons[1] and "budget" in pr.excluded_reasons[1]
    # compute energy 0.1 J > E_max 0.05 J when it is counted
    s2 = hand_scenario(energy_max_j=[1.0, 0.05])
    assert STEProblem(s2).excluded == []
    pr2 = STEProblem(s2, include_compute_energy=True)
    assert pr2.excluded == [1] and "compute energy" in pr2.excluded_reasons[1]


def test_no_device_admitted_raises():
    s = hand_scenario(velocity_mps=[500.0, 500.0])   # both leave before the forward pass ends
    with pytest.raises(InfeasibleError) as ei:
        STEProblem(s)
    assert ei.value.devices == [0, 1]


def _w_need_brentq(rate, power, gain, n0):
    """Least W with W log2(1 + p h / (N0 W)) = rate, by brentq (independent of ste_opt.channel)."""
    def f(w):
        return w * math.log1p(power * gain / (n0 * w)) / math.log(2) - rate
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return brentq(f, 1e-12, hi, xtol=1e-300, rtol=1e-15, maxiter=500)


def test_too_small_budget_gives_deficit():
    # each device uses its whole window t = T_stand - T0 = (9, 4.5) s at p = min(p_max, E/t)
    n0, bits = 1e-20, 32_000 * 3
    need = [_w_need_brentq(bits / 9.0, 0.1, 1e-13, n0), _w_need_brentq(bits / 4.5, 0.1, 2e-13, n0)]
    budget = 0.8 * sum(need)
    assert max(need) < budget             # each fits alone: the shortfall is collective
    with pytest.raises(InfeasibleError) as ei:
        STEProblem(hand_scenario(bandwidth_hz=budget))
    assert ei.value.deficit["bandwidth_hz"] == pytest.approx(sum(need) - budget, rel=1e-8)
    assert ei.value.devices == [0, 1]
    assert "short by" in str(ei.value)
    # just enough budget is accepted
    STEProblem(hand_scenario(bandwidth_hz=sum(need) * (1 + 1e-6)))


def test_deficit_with_energy_limited_power():
    # E_max = 0.2 J over a 9 s window limits device 0 to p = 0.2/9 W < p_max = 0.1 W
    s = hand_scenario(energy_max_j=[0.2, 1.0], bandwidth_hz=1.0)
    n0, bits = 1e-20, 32_000 * 3
    need = [_w_need_brentq(bits / 9.0, 0.2 / 9.0, 1e-13, n0), _w_need_brentq(bits / 4.5, 0.1, 2e-13, n0)]
    budget = 0.8 * sum(need)
    assert max(need) < budget
    with pytest.raises(InfeasibleError) as ei:
        STEProblem(s.replace(bandwidth_hz=budget))
    assert ei.value.deficit["bandwidth_hz"] == pytest.approx(sum(need) - budget, rel=1e-8)


# ---------------------------------------------------------------------------- options
def test_option_validation():
    s = hand_scenario()
    for kw, field in [({"denominator": "total"}, "denominator"), ({"retention_floor": 1.5}, "retention_floor"),
                      ({"weights": [1.0]}, "weights")]:
        with pytest.raises(InvalidScenarioError) as ei:
            STEProblem(s, **kw)
        assert ei.value.field == field
    with pytest.raises(InvalidScenarioError) as ei:
        STEProblem(s, weights=[1.0, -1.0])
    assert (ei.value.field, ei.value.device) == ("weights", 1)
    with pytest.raises(InvalidScenarioError):
        STEProblem("not a scenario")


def test_retention_floor_raises_the_token_minimum():
    # F0 = (0, .4, .7, .9, 1), F1 = (0, .5, .75, .9, 1): rho = 0.85 needs K = 3 for both
    pr = STEProblem(hand_scenario(), retention_floor=0.85)
    np.testing.assert_array_equal(pr.k_lo, [3, 3])
    np.testing.assert_array_equal(STEProblem(hand_scenario(), retention_floor=0.95).k_lo, [4, 4])
    np.testing.assert_array_equal(STEProblem(hand_scenario(), retention_floor=0.7).k_lo, [2, 2])
    rep = pr.check(alloc([2, 4], [1e6, 1e6], [0.1, 0.1]))
    assert rep.violations["retention_floor"] == pytest.approx(0.85 - 0.7, rel=1e-9)
    assert pr.check(alloc([3, 4], [1e6, 1e6], [0.1, 0.1])).ok


def test_denominator_changes_the_window():
    r = STEProblem(hand_scenario())
    u = STEProblem(hand_scenario(), denominator="uplink")
    np.testing.assert_allclose(r.window(2.0), [1.0, 1.5])
    np.testing.assert_allclose(u.window(2.0), [2.0, 2.0])
    np.testing.assert_allclose(u.window(20.0), [9.0, 4.5])
    assert r.tau_max == pytest.approx(10.0) and u.tau_max == pytest.approx(9.0)


# ---------------------------------------------------------------------------- resource step
def _tau_star_reference(problem, tokens):
    """Independent reference of the fixed-token resource step: the least τ with
    Σ_m W_m(τ) = W_tot, W_m(τ) by brentq at p̂ = min(p_max, E/t), t = min(τ - off, T_st - T0)."""
    s = problem.scenario
    a = problem.active
    t0 = s.compute_time_s[a]
    tmax = s.standing_time_s[a] - t0
    off = t0 if problem.denominator == "round" else np.zeros(len(a))
    e_up = s.energy_max_j[a] - (s.compute_energy_j[a] if problem.include_compute_energy else 0.0)
    gain, pmax = s.gain[a], s.p_max_w[a]
    bits = s.payload_bits(np.asarray(tokens))
    n0 = s.noise_psd_w_hz

    def total_w(tau):
        tot = 0.0
        for m in range(len(a)):
            t = min(tau - off[m], tmax[m])
            if t <= 0:
                return math.inf
            p = min(pmax[m], e_up[m] / t)
            if bits[m] / t >= p * gain[m] / (n0 * math.log(2)):
                return math.inf
            tot += _w_need_brentq(bits[m] / t, p, gain[m], n0)
        return tot

    hi = float(np.max(off + tmax))
    assert total_w(hi) <= s.bandwidth_hz
    lo = float(np.max(off))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if total_w(mid) <= s.bandwidth_hz:
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-13 * hi:
            break
    return hi


@pytest.mark.parametrize("denominator", ["round", "uplink"])
def test_min_straggler_time_vs_independent_reference(denominator):
    s = make_scenario("st-sflora", n_devices=6, seed=2)
    pr = STEProblem(s, denominator=denominator)
    for k in (pr.k_lo, np.full(pr.M, 130), np.full(pr.M, pr.N)):
        tau, w, p = pr.min_straggler_time(k)
        if not np.isfinite(tau):
            continue
        assert tau == pytest.approx(_tau_star_reference(pr, k), rel=1e-8)
        assert np.sum(w) <= pr.W_tot * (1 + 1e-9)
        # tight: a slightly smaller tau does not fit
        assert np.sum(pr.w_min(k, tau * (1 - 1e-6))) > pr.W_tot
        full_w = pr._full(w)
        sol = pr.make_solution(k, w, p)
        assert pr.check(sol).ok, pr.check(sol)
        ev = pr.evaluate(pr._full(k), full_w, pr._full(p))
        assert ev["tau"] == pytest.approx(tau, rel=1e-8)


def test_hand_instance_tau_star_vs_reference():
    pr = STEProblem(hand_scenario())
    for k in ([1, 1], [2, 3], [4, 4]):
        tau, _, _ = pr.min_straggler_time(np.array(k))
        assert tau == pytest.approx(_tau_star_reference(pr, k), rel=1e-8)


@pytest.mark.parametrize("denominator", ["round", "uplink"])
def test_resource_model_cvxpy_agrees_with_bisection(denominator):
    s = make_scenario("st-sflora", n_devices=8, seed=0)
    pr = STEProblem(s, denominator=denominator)
    rng = np.random.default_rng(0)
    for k in (pr.k_lo, rng.integers(pr.k_lo, pr.N + 1)):
        tau, _, _ = pr.min_straggler_time(k)
        prob = pr.resource_model(k)
        prob.solve()
        assert prob.status in ("optimal", "optimal_inaccurate")
        assert float(prob.ste.tau_s.value) == pytest.approx(tau, rel=1e-4)
        assert prob.value == pytest.approx(tau, rel=1e-4)
        assert np.sum(prob.ste.bandwidth_mhz.value) * prob.ste.scale_hz <= pr.W_tot * (1 + 1e-5)


def test_resource_model_accepts_user_constraints():
    import cvxpy as cp

    s = make_scenario("st-sflora", n_devices=6, seed=3)
    pr = STEProblem(s)
    k = np.full(pr.M, 120)
    prob = pr.resource_model(k)
    prob.solve()
    tau0 = float(prob.ste.tau_s.value)
    # cap every device's power at 0.02 W (a tenth of p_max)
    capped = cp.Problem(prob.objective, prob.constraints + [prob.ste.power_w <= 0.02])
    capped.solve()
    assert capped.status in ("optimal", "optimal_inaccurate")
    assert np.all(prob.ste.power_w.value <= 0.02 * (1 + 1e-5))
    tau1 = float(prob.ste.tau_s.value)
    assert tau1 > tau0 * (1 + 1e-3)
    # the same as the bisection step of the problem whose p_max is 0.02 W (same admitted devices)
    pr2 = STEProblem(s.replace(p_max_w=np.full(s.n_devices, 0.02)))
    if list(pr2.active) == list(pr.active):
        tau_ref, _, _ = pr2.min_straggler_time(k)
        assert tau1 == pytest.approx(tau_ref, rel=1e-4)
    # a per-device bandwidth cap is honoured
    cap = 0.5 * pr.W_tot / pr.M / prob.ste.scale_hz
    capped_w = cp.Problem(prob.objective, prob.constraints + [prob.ste.bandwidth_mhz[0] <= cap])
    capped_w.solve()
    assert prob.ste.bandwidth_mhz.value[0] <= cap * (1 + 1e-5)


# ---------------------------------------------------------------------------- independent model
def _independent_evaluate(scen, active, k, w, p, denominator="round", compute_energy=False):
    """The STE model written from the formulas alone (no ste_opt helpers)."""
    n0 = 10 ** ((scen.noise_psd_dbm_hz - 30) / 10)
    h = scen.path_gain * scen.fading
    out = {}
    rate = np.array([w[m] * math.log2(1 + p[m] * h[m] / (n0 * w[m])) if w[m] > 0 else 0.0
                     for m in range(len(w))])
    side = 32 if scen.bits < 32 else 0
    bits = scen.batch * (k + scen.extra_tokens) * (scen.dim * scen.bits + side)
    t0 = scen.batch * scen.client_flops / (scen.cpu_freq_hz * scen.cores * scen.flops_per_cycle)
    e_f = scen.kappa * scen.batch * scen.client_flops / scen.flops_per_cycle * scen.cpu_freq_hz ** 2
    tu = bits[active] / rate[active]
    denom = tu + (t0[active] if denominator == "round" else 0.0)
    F = np.cumsum(scen.retention, axis=1)
    ret = np.array([F[m, k[m] - 1] for m in active])
    out["objective"] = ret.sum() / denom.max()
    out["energy"] = p[active] * tu + (e_f[active] if compute_energy else 0.0)
    out["latency"] = t0[active] + tu
    out["t_stand"] = np.minimum((scen.cell_radius_m - scen.distance_m) / scen.velocity_mps, scen.t_max_s)[active]
    return out


@pytest.mark.parametrize("denominator,compute_energy,bits", [("round", False, 32), ("uplink", True, 32),
                                                              ("round", True, 8)])
def test_evaluate_and_check_vs_independent_model(denominator, compute_energy, bits):
    # on the preset the forward energy is 1.8-4 J (> E_max = 0.8 J): give room when it is counted
    scen = make_scenario("st-sflora", n_devices=12, seed=7, bits=bits,
                         energy_max_j=6.0 if compute_energy else 0.8)
    pr = STEProblem(scen, denominator=denominator, include_compute_energy=compute_energy)
    a = pr.active
    rng = np.random.default_rng(1)
    k = np.zeros(scen.n_devices, dtype=int)
    w = np.zeros(scen.n_devices)
    p = np.zeros(scen.n_devices)
    k[a] = rng.integers(pr.k_lo, pr.N + 1)
    w[a] = rng.dirichlet(np.ones(pr.M)) * pr.W_tot
    p[a] = rng.uniform(0.05, 0.2, pr.M)
    ref = _independent_evaluate(scen, a, k, w, p, denominator, compute_energy)
    ev = pr.evaluate(k, w, p)
    assert ev["objective"] == pytest.approx(ref["objective"], rel=1e-12)
    np.testing.assert_allclose(ev["energy"][a], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(ev["latency"][a], ref["latency"], rtol=1e-12)
    np.testing.assert_allclose(pr.bits(k[a]), scen.payload_bits(k[a]), rtol=0)
    assert pr.M >= 8
    rep = pr.check(alloc(k, w, p, objective=ev["objective"]))
    e_viol = max(float(np.max(ref["energy"] / scen.energy_max_j[a] - 1)), 0.0)
    l_viol = max(float(np.max(ref["latency"] / ref["t_stand"] - 1)), 0.0)
    assert rep.violations["energy"] == pytest.approx(e_viol, rel=1e-9, abs=1e-15)
    assert rep.violations["latency"] == pytest.approx(l_viol, rel=1e-9, abs=1e-15)
    assert rep.violations["bandwidth_budget"] <= 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_alternating_converges_within_five_iterations_on_the_preset(seed):
    from ste_opt import solve

    pr = STEProblem(make_scenario("st-sflora", n_devices=10, seed=seed))
    sol = solve(pr, "alternating")
    assert sol.info["converged"]
    assert sol.iterations <= 5
    assert pr.check(sol).ok
