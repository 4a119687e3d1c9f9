"""Closed loop (issue 6): calibration, SolverSchedule, CostedSchedule, predicted == measured bits."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ste_opt import STEProblem, channel  # noqa: E402
from ste_opt.learning_hooks.calibrate import calibrate_profiles, profile_uplink_bits  # noqa: E402
from ste_opt.learning_hooks.data import DataSplits, ImageDataset  # noqa: E402
from ste_opt.learning_hooks.schedule import ClientPlan, StaticSchedule  # noqa: E402
from ste_opt.learning_hooks.solver_schedule import (  # noqa: E402
    CostedSchedule,
    SolverSchedule,
    evaluate_static_round,
    round_scenario,
    scenario_for_spec,
)
from ste_opt.model.payload import payload_bits  # noqa: E402
from ste_opt.scenarios import make_scenario  # noqa: E402

torch.set_num_threads(1)

N_CLIENTS, BATCH, STEPS, IMG, PATCH, DIM = 3, 8, 2, 16, 4, 32
N_PATCHES = (IMG // PATCH) ** 2

CFG = {"model": {"embed_dim": DIM, "depth": 2, "num_heads": 2, "cut_layer": 1, "patch_size": PATCH,
                 "checkpoint": "none"},
       "data": {"image_size": IMG}, "lora": {"rank": 2},
       "federation": {"num_clients": N_CLIENTS, "clients_per_round": N_CLIENTS, "partition": "iid",
                      "batch_size": BATCH, "local_steps": STEPS, "min_client_size": BATCH},
       "eval": {"batch_size": 16}}


def _splits():
    g = torch.Generator().manual_seed(0)

    def ds(n):
        return ImageDataset(torch.randn(n, 3, IMG, IMG, generator=g), torch.randint(0, 4, (n,), generator=g),
                            4, IMG)
    return DataSplits(ds(8), ds(16 * N_CLIENTS), ds(16), "tiny")


def _scenario(excluded=0):
    """One device per client; device ``excluded`` leaves coverage before its compute ends."""
    s = scenario_for_spec(N_CLIENTS, n_patches=N_PATCHES, dim=DIM, batch=BATCH * STEPS, bits=8, seed=0)
    v = np.full(N_CLIENTS, 0.5)          # 0.5 m/s: standing time = t_max = 10 s > compute time
    if excluded is not None:
        v[excluded] = 1e4                # standing time ~0.05 s < compute time (2-4.4 s)
    return s.replace(velocity_mps=v)


@pytest.fixture(scope="module")
def solver_run():
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    sched = SolverSchedule(scenario=_scenario(excluded=0), seed=3, every=2)
    tr = SplitFedTrainer(CFG, schedule=sched, run_dir=False, progress=False, splits=_splits())
    tr.run_round(0)
    tr.run_round(1)
    return tr, sched


def test_measured_bits_equal_solution_payload(solver_run):
    tr, sched = solver_run
    rec = sched.records[0]
    scen = sched.scenario
    rows = [r for r in tr.client_rows if r["round"] == 0 and not r["excluded"]]
    assert rows
    for r in rows:
        k = r["tokens_kept"]
        assert scen.k_min <= k <= N_PATCHES
        s_m = int(scen.payload_bits(k))                     # the solution's S_m for its K_m
        assert r["uplink_bits"] == s_m
        assert r["uplink_bits"] == STEPS * payload_bits(BATCH, k, DIM, 8)
        assert r["pred_solution_bits"] == s_m and r["pred_predicted_bits"] == s_m
        assert rec["per_client"][r["client"]]["predicted_bits"] == r["uplink_bits"]
    assert rec["predicted_bits"] == sum(r["uplink_bits"] for r in rows)


def test_excluded_device_sends_nothing(solver_run):
    tr, sched = solver_run
    rec = sched.records[0]
    assert rec["excluded"] == [0]
    assert "standing time" in rec["excluded_reasons"][0]
    row0 = [r for r in tr.client_rows if r["round"] == 0 and r["client"] == 0]
    assert row0 and row0[0]["excluded"] and row0[0]["uplink_bits"] == 0
    assert tr.history[0]["excluded"] == 1 and tr.history[0]["clients"] == N_CLIENTS - 1


def test_round_record_predictions(solver_run):
    _, sched = solver_run
    rec = sched.records[0]
    lat = [v["latency_s"] for v in rec["per_client"].values()]
    en = [v["energy_j"] for v in rec["per_client"].values()]
    assert rec["straggler_s"] == pytest.approx(max(lat))
    assert rec["energy_j"] == pytest.approx(sum(en))
    assert rec["status"] in ("optimal", "feasible")
    assert rec["calibration_bits"] == profile_uplink_bits(N_PATCHES) * N_CLIENTS
    # every=2: round 1 reuses round 0's allocation (same clients sampled)
    assert sched.records[1]["solved"] is False and sched.records[1]["round"] == 1
    assert sched.totals()["simulated_time_s"] == pytest.approx(2 * rec["straggler_s"])


def test_solution_is_feasible_for_its_problem(solver_run):
    _, sched = solver_run
    assert sched.last_problem.check(sched.last_solution).ok


def test_calibrated_profiles(solver_run):
    tr, _ = solver_run
    a = calibrate_profiles(tr.plan_context(), [1, 2], round_idx=0)
    b = calibrate_profiles(tr.plan_context(), [1, 2], round_idx=0, batch=2 * BATCH)
    for c in (1, 2):
        assert a[c].shape == (N_PATCHES,)
        assert np.all(np.diff(a[c]) <= 0) and np.all(a[c] >= 0)
        # sums over one batch of B samples: each sample's scores sum to at most 1
        assert a[c].sum() <= BATCH * (1 + 1e-6)
        np.testing.assert_allclose(b[c], 2 * a[c], rtol=1e-12)
    s = _scenario(None).subset([1, 2]).with_retention(np.vstack([a[1], a[2]]))
    assert STEProblem(s).M == 2


def test_costed_baseline_bits_and_cost():
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    base = CostedSchedule(StaticSchedule(None, 32), scenario=_scenario(excluded=0), seed=3)
    tr = SplitFedTrainer(CFG, schedule=base, run_dir=False, progress=False, splits=_splits())
    tr.run_round(0)
    rec = base.records[0]
    assert rec["excluded"] == []                            # a static schedule trains everyone
    for r in tr.client_rows:
        assert r["uplink_bits"] == STEPS * payload_bits(BATCH, N_PATCHES, DIM, 32, extra_tokens=1)
        assert r["uplink_bits"] == rec["per_client"][r["client"]]["predicted_bits"]
    assert rec["deadline_violations"] >= 1                 # device 0 cannot make its deadline
    assert rec["straggler_s"] == pytest.approx(max(v["latency_s"] for v in rec["per_client"].values()))


def test_evaluate_static_round_equalizes_and_uses_budget():
    s = round_scenario(_scenario(None), [0, 1, 2], 0, 0)
    bits = np.array([1e5, 2e5, 4e5])
    out = evaluate_static_round(s, bits)
    np.testing.assert_allclose(out["latency"], out["tau"], rtol=1e-6)
    assert np.sum(out["bandwidth"]) == pytest.approx(s.bandwidth_hz, rel=1e-9)
    rate = channel.rate_bps(out["bandwidth"], s.p_max_w, s.gain, s.noise_psd_w_hz)
    np.testing.assert_allclose(rate * out["uplink_time"], bits, rtol=1e-9)
    more = evaluate_static_round(s, 2 * bits)
    assert more["tau"] > out["tau"]


def test_payload_scaling_keeps_the_paper_regime():
    base = make_scenario("st-sflora", n_devices=N_CLIENTS, seed=0)
    s = scenario_for_spec(N_CLIENTS, n_patches=N_PATCHES, dim=DIM, batch=BATCH * STEPS, bits=8, seed=0)
    rho = s.meta["closed_loop"]["scale"]
    assert rho == pytest.approx(float(s.payload_bits(N_PATCHES)) / float(base.payload_bits(base.n_patches)))
    assert s.bandwidth_hz == pytest.approx(rho * base.bandwidth_hz)
    np.testing.assert_allclose(s.gain, rho * base.gain)
    np.testing.assert_allclose(s.compute_time_s, base.compute_time_s)
    # same SNR, rate scaled by rho: the all-token upload takes the paper's time
    w, p = base.bandwidth_hz / N_CLIENTS, base.p_max_w
    t_paper = base.payload_bits(base.n_patches) / channel.rate_bps(w, p, base.gain, base.noise_psd_w_hz)
    t_model = s.payload_bits(N_PATCHES) / channel.rate_bps(rho * w, p, s.gain, s.noise_psd_w_hz)
    np.testing.assert_allclose(t_model, t_paper, rtol=1e-9)
    assert s.k_min == round(N_PATCHES * base.k_min / base.n_patches)


def test_scenario_must_match_model():
    from ste_opt.errors import InvalidScenarioError
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    bad = scenario_for_spec(N_CLIENTS, n_patches=N_PATCHES, dim=DIM + 1, batch=BATCH * STEPS, seed=0)
    tr = SplitFedTrainer(CFG, schedule=SolverSchedule(scenario=bad), run_dir=False, progress=False,
                         splits=_splits())
    with pytest.raises(InvalidScenarioError, match="dim"):
        tr.run_round(0)


def test_eval_plan_default_is_uncompressed():
    assert SolverSchedule().eval_plan() == ClientPlan(None, 32)


def test_sflam_schedule_sets_bits_and_predicts_bits():
    pytest.importorskip("ste_opt.problems.sflam")
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    sched = SolverSchedule(kind="sflam", seed=0)
    tr = SplitFedTrainer(CFG, schedule=sched, run_dir=False, progress=False, splits=_splits())
    tr.run_round(0)
    scen = sched.scenario
    assert scen.tokens == N_PATCHES + 1 and scen.dim == DIM
    rec = sched.records[0]
    assert sched.method == "bcd" and rec["excluded"] == []
    for r in tr.client_rows:
        b = r["bits"]
        assert b in scen.bit_set and r["tokens_kept"] is None
        assert r["uplink_bits"] == STEPS * payload_bits(BATCH, N_PATCHES, DIM, b, extra_tokens=1)
        assert r["uplink_bits"] == r["pred_solution_bits"] == r["pred_predicted_bits"]
        # the model part of SFLAM's S_n(b) is the client's fp32 adapter upload
        i = r["client"]
        assert scen.uplink_bits(b)[i] == r["uplink_bits"] + r["uplink_adapter_bits"]
