"""SFLAM scenario, problem model, errors, convergence-model fit, IO and Pareto front."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import ste_opt
from ste_opt import InfeasibleError, InvalidScenarioError, Scenario, SFLAMProblem, solve
from ste_opt.model.convergence import fit_convergence_model, quantization_error, rounds_to_target
from ste_opt.problems.sflam import gale_shapley
from ste_opt.scenarios.sflam import SFLAMScenario


def small(n=4, seed=0, **kw):
    return Scenario.preset("sflam", n_devices=n, seed=seed, **kw)


# ---------------------------------------------------------------------- scenario and preset
def test_preset_follows_authors_code():
    s = small(10, seed=3)
    assert isinstance(s, SFLAMScenario) and s.kind == "sflam"
    assert s.n_devices == 10 and s.n_subchannels == 10 and s.fading.shape == (10, 10)
    assert s.subchannel_hz == 2e6 and s.bandwidth_hz == 20e6
    assert (s.tokens, s.dim, s.batch, s.local_epochs) == (49, 768, 128, 5)
    assert s.client_params == 3 * 32 * 32 * 768 + 768
    assert np.all((s.samples >= 400) & (s.samples <= 500))
    assert s.bit_set == (2, 4, 8, 16, 32)
    assert s.meta["population"] == 50 and len(set(s.device_ids)) == 10
    # bandwidth and subchannels scale with the active devices
    s2 = small(20, seed=3, subchannels_per_device=1.5)
    assert s2.n_subchannels == 30 and s2.bandwidth_hz == 30 * 2e6
    # deterministic
    assert np.array_equal(small(10, seed=3).fading, s.fading)
    assert not np.array_equal(small(10, seed=4).fading, s.fading)


def test_payload_compute_and_memory_formulas():
    s = small(3, seed=1)
    P = 5 * s.samples
    S8 = s.uplink_bits(8)
    np.testing.assert_allclose(S8, P * (49 * 768 * 8 + 49 * 32) + 32 * 2_360_064)
    S32 = s.uplink_bits(32)
    np.testing.assert_allclose(S32, P * 49 * 768 * 32 + 32 * 2_360_064)   # no side info at fp32
    np.testing.assert_allclose(s.downlink_bits, P * 49 * 768 * 32 + 32 * 2_360_064)
    np.testing.assert_allclose(s.compute_time_s, P * 462.4e6 / (16 * s.cpu_freq_hz))
    np.testing.assert_allclose(s.compute_energy_j, 1e-28 * P * 462.4e6 / 16 * s.cpu_freq_hz ** 2)
    np.testing.assert_allclose(s.server_time_s, P * 25.76e9 / (1e14 / 3))
    assert s.memory_bytes(2) < s.memory_bytes(32)
    assert quantization_error(2) == pytest.approx(1 / 9)
    assert quantization_error(32) < 1e-18


@pytest.mark.parametrize("field,value,device", [
    ("p_max_w", [0.2, -1.0, 0.2], 1),
    ("samples", [400, 450, np.nan], 2),
    ("cpu_freq_hz", [0.0, 1e9, 1e9], 0),
    ("deadline_s", [10.0, 0.0, np.inf], 1),
])
def test_validation_names_field_and_device(field, value, device):
    s = small(3)
    with pytest.raises(InvalidScenarioError) as ei:
        s.replace(**{field: np.asarray(value, dtype=float)})
    assert ei.value.field == field and ei.value.device == device
    assert field in str(ei.value)


def test_validation_other_errors():
    s = small(3)
    bad = s.fading.copy()
    bad[1, 2] = -1
    with pytest.raises(InvalidScenarioError) as ei:
        s.replace(fading=bad)
    assert ei.value.field == "fading" and ei.value.device == 1
    with pytest.raises(InvalidScenarioError, match="K >= N"):
        s.replace(fading=s.fading[:, :2])
    with pytest.raises(InvalidScenarioError) as ei:
        s.replace(p_min_w=np.full(3, 1.0))
    assert ei.value.field == "p_min_w"
    with pytest.raises(InvalidScenarioError, match="unreachable"):
        s.replace(epsilon=0.04)
    with pytest.raises(InvalidScenarioError, match="bit_set"):
        s.replace(bit_set=(3.5, 8))
    with pytest.raises(InvalidScenarioError) as ei:
        Scenario.preset("sflam", n_devices=3, bogus=1)
    assert ei.value.field == "bogus"
    with pytest.raises(InvalidScenarioError):
        SFLAMProblem(Scenario.preset("st-sflora", n_devices=3))
    with pytest.raises(InvalidScenarioError) as ei:
        SFLAMProblem(s, omega=1.5)
    assert ei.value.field == "omega"


# ---------------------------------------------------------------------- problem
def test_rounds_and_unreachable_target():
    assert rounds_to_target([32, 32], 10.0, 0.05, 5.0, 0.2) == math.ceil(10 / 0.15 * (1 - 1e-12))
    r4 = rounds_to_target([4], 10.0, 0.05, 5.0, 0.2)
    assert r4 == math.ceil(10 / (0.15 - 5 / 225))
    with pytest.raises(InfeasibleError, match="unreachable"):
        rounds_to_target([2], 10.0, 0.05, 5.0, 0.2)      # 5/9 > 0.15
    pr = SFLAMProblem(small(3))
    assert pr.common_bits == [4, 8, 16, 32]                # 2 bits cannot reach epsilon
    with pytest.raises(InfeasibleError, match="unreachable"):
        solve(pr, "fixed_bits", bits=2)
    with pytest.raises(InvalidScenarioError, match="not in the bit set"):
        solve(pr, "fixed_bits", bits=6)
    # memory allows at most 4 bits, which cannot reach the target
    s = small(3, conv_c=40.0)
    with pytest.raises(InfeasibleError, match="no common bit-width"):
        SFLAMProblem(s.replace(memory_max_bytes=np.full(3, float(s.memory_bytes(4)))))


def test_evaluate_matches_hand_computation():
    pr = SFLAMProblem(small(3, seed=5), omega=0.3)
    s = pr.scenario
    asg = np.array([2, 0, 1])
    p = np.array([0.1, 0.2, 0.05])
    bits = np.full(3, 8)
    ev = pr.evaluate(asg, p, bits)
    n = np.arange(3)
    h = s.path_gain * s.fading[n, asg]
    r = s.subchannel_hz * np.log2(1 + p * h / (s.noise_psd_w_hz * s.subchannel_hz))
    rdl = s.subchannel_hz * np.log2(1 + 20.0 * h / (s.noise_psd_w_hz * s.subchannel_hz))
    T = s.compute_time_s + s.server_time_s + s.downlink_bits / rdl + s.uplink_bits(8) / r
    E = s.compute_energy_j + p * s.uplink_bits(8) / r
    np.testing.assert_allclose(ev["latency"], T, rtol=1e-12)
    np.testing.assert_allclose(ev["energy"], E, rtol=1e-12)
    R = math.ceil(10 / (0.15 - 5 * quantization_error(8)))
    assert ev["rounds"] == R
    want = R * (0.3 * T.max() / pr.t_ref + 0.7 * E.sum() / pr.e_ref)
    assert ev["objective"] == pytest.approx(want, rel=1e-12)
    assert ev["total_latency"] == pytest.approx(R * T.max())
    # the fp32 reference scores exactly 1
    ref = pr.evaluate(gale_shapley(pr.phi), pr.p_max, np.full(3, 32))
    assert ref["objective"] == pytest.approx(1.0, rel=1e-12)


def test_check_reports_violations():
    pr = SFLAMProblem(small(3, seed=1))
    sol = solve(pr, "bcd")
    assert pr.check(sol).ok
    bad = ste_opt.Solution.from_dict(sol.to_dict())
    bad.power = sol.power * 0 + 1.0
    rep = pr.check(bad)
    assert not rep.ok and rep.violations["power_max"] > 1
    bad = ste_opt.Solution.from_dict(sol.to_dict())
    bad.assignment = np.array([0, 0, 1])
    assert pr.check(bad).violations["assignment_one_to_one"] >= 1
    bad = ste_opt.Solution.from_dict(sol.to_dict())
    bad.bits = np.array([8, 8, 6])
    assert not pr.check(bad).ok
    bad = ste_opt.Solution.from_dict(sol.to_dict())
    bad.objective = sol.objective * 1.01
    assert pr.check(bad).violations["objective_consistent"] > 1e-3


def test_memory_deadline_battery_limits():
    s = small(4, seed=2)
    mem8 = float(s.memory_bytes(8))
    pr = SFLAMProblem(s.replace(memory_max_bytes=np.full(4, mem8)), omega=0.5)
    assert pr.common_bits == [4, 8]
    sol = solve(pr, "bcd")
    assert pr.check(sol).ok and sol.bits.max() <= 8
    with pytest.raises(InfeasibleError) as ei:
        SFLAMProblem(s.replace(memory_max_bytes=np.array([mem8, 1e6, mem8, mem8])))
    assert 1 in ei.value.devices and "device 1" in str(ei.value)
    # a deadline no subchannel can meet
    with pytest.raises(InfeasibleError) as ei:
        SFLAMProblem(s.replace(deadline_s=np.array([np.inf, 1.0, np.inf, np.inf])))
    assert ei.value.devices == [1]
    # binding deadlines and batteries are respected
    base = solve(SFLAMProblem(s, omega=0.0), "hungarian")
    dl = np.full(4, float(np.max(base.latency)) * 0.9)
    batt = base.energy * 1.5
    pr2 = SFLAMProblem(s.replace(deadline_s=dl, energy_max_j=batt), omega=0.0)
    for m in ("bcd", "hungarian", "brute"):
        sol = solve(pr2, m)
        assert pr2.check(sol).ok, (m, pr2.check(sol))
        assert np.all(sol.latency <= dl * (1 + 1e-9))


def test_io_round_trip(tmp_path):
    s = small(3, seed=7, deadline_s=500.0)
    for name in ("inst.yaml", "inst.json"):
        path = ste_opt.io.save_scenario(s, tmp_path / name)
        back = ste_opt.io.load_scenario(path)
        assert isinstance(back, SFLAMScenario)
        for f in ("fading", "path_gain", "samples", "deadline_s", "energy_max_j"):
            np.testing.assert_array_equal(getattr(back, f), getattr(s, f))
        assert back.bit_set == s.bit_set
        a = solve(SFLAMProblem(back), "bcd")
        b = solve(SFLAMProblem(s), "bcd")
        assert a.objective == b.objective
    sol = solve(SFLAMProblem(s), "bcd")
    ste_opt.io.save_solution(sol, tmp_path / "sol.json")
    back = ste_opt.io.load_solution(tmp_path / "sol.json")
    assert SFLAMProblem(s).check(back).ok


# ---------------------------------------------------------------------- convergence model fit
def test_fit_convergence_model_recovers_synthetic():
    A, B0, C = 12.0, 0.04, 3.0
    bits = np.array([4, 8, 32, 4, 8, 32, 3, 6])
    eps = np.array([0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.25, 0.25])
    r = A / (eps - B0 - C * quantization_error(bits))
    fit = fit_convergence_model(bits, r, eps)
    assert fit.a == pytest.approx(A, rel=1e-6)
    assert fit.b0 == pytest.approx(B0, rel=1e-5)
    assert fit.c == pytest.approx(C, rel=1e-5)
    assert fit.rounds(8, 0.2) == pytest.approx(A / (0.2 - B0 - C * quantization_error(8)))
    # noisy measurements, A fixed, one target
    rng = np.random.default_rng(0)
    b1 = np.array([3, 4, 5, 8, 16, 32] * 3)
    r1 = A / (0.2 - B0 - C * quantization_error(b1)) * rng.lognormal(0, 0.02, b1.size)
    fit1 = fit_convergence_model(b1, r1, 0.2, a=A)
    assert fit1.b0 == pytest.approx(B0, rel=0.1) and fit1.c == pytest.approx(C, rel=0.1)
    # runs that never reached the target are skipped
    fit2 = fit_convergence_model(np.r_[bits, 2], np.r_[r, np.inf], np.r_[eps, 0.2])
    assert fit2.n_points == len(bits)
    scen = small(3, **{k: v for k, v in fit.as_scenario_fields().items()})
    assert scen.conv_a == pytest.approx(A, rel=1e-6)


def test_fit_convergence_model_errors():
    with pytest.raises(InvalidScenarioError) as ei:
        fit_convergence_model([4, 8, 32], [80, 70], 0.2)
    assert ei.value.field == "rounds_to_target"
    with pytest.raises(InvalidScenarioError, match="not enough"):
        fit_convergence_model([4, 8, 32], [80, 70, 69], 0.2)      # one target, A free
    with pytest.raises(InvalidScenarioError, match="two different bit-widths"):
        fit_convergence_model([8, 8, 8], [80, 70, 69], [0.2, 0.3, 0.25])
    with pytest.raises(InvalidScenarioError):
        fit_convergence_model([4, 8, 0], [80, 70, 69], [0.2, 0.3, 0.25])


# ---------------------------------------------------------------------- Pareto front and CLI
def test_pareto_front_trade_off():
    pr = SFLAMProblem(small(3, seed=4))
    front = ste_opt.pareto(pr, [0.0, 0.5, 1.0], method="brute")
    assert len(front) == 3 and front.points.shape == (3, 2)
    lat, en = front.latency_s, front.energy_j
    # exact weighted-sum solutions: latency falls and energy rises with omega
    assert lat[0] >= lat[1] * (1 - 1e-9) >= lat[2] * (1 - 1e-9)
    assert en[0] <= en[1] * (1 + 1e-9) <= en[2] * (1 + 1e-9)
    assert lat[0] > lat[2] and en[2] > en[0]
    assert front.nondominated.all()
    f2 = ste_opt.pareto(pr, [0.25, 0.75])
    assert all(s.method == "bcd" for s in f2.solutions)
    with pytest.raises(InvalidScenarioError):
        ste_opt.pareto(pr, [1.5])


def test_pareto_cli(tmp_path):
    s = small(3, seed=1)
    inst = ste_opt.io.save_scenario(s, tmp_path / "inst.yaml")
    out = tmp_path / "front.png"
    from ste_opt.cli import main
    rc = main(["pareto", str(inst), "-o", str(out), "--omegas", "0,0.5,1", "--csv",
               str(tmp_path / "front.csv")])
    assert rc == 0 and out.exists() and out.stat().st_size > 1000
    text = (tmp_path / "front.csv").read_text()
    assert "random_matching" in text and "bcd" in text
    rc = main(["pareto", str(tmp_path / "missing.yaml"), "-o", str(out)])
    assert rc == 2


def test_import_stays_light():
    code = ("import sys, ste_opt; from ste_opt import SFLAMProblem, pareto; "
            "bad = [m for m in ('torch', 'pyomo', 'pyscipopt', 'timm') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
