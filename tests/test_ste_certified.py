"""Certified STE solvers: global, milp, scip, brute agree; bounds dominate every feasible point."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ste_opt as so
from ste_opt.errors import InfeasibleError, SolverError
from ste_opt.solvers.ste.knapsack import knapsack_at


def small_problem(seed, n_devices=3, n_tokens=24, k_min=6, bw_scale=1.0, denominator="round"):
    sc = so.Scenario.preset("st-sflora", n_devices=n_devices, seed=seed)
    sc = sc.with_retention(sc.retention[:, :n_tokens]).replace(
        k_min=min(k_min, n_tokens), bandwidth_hz=sc.bandwidth_hz * bw_scale)
    return so.STEProblem(sc, denominator=denominator)


def test_knapsack_lp_bounds_integer_solution():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=20, seed=1))
    for tau in np.linspace(pb.min_straggler_time(pb.k_lo)[0] * 1.001, pb.tau_max, 7):
        r = knapsack_at(pb, tau)
        assert r.feasible
        assert r.lp_value >= r.int_value - 1e-9
        assert np.all(r.tokens >= pb.k_lo) and np.all(r.tokens <= pb.N)
        assert np.sum(pb.w_min(r.tokens, tau)) <= pb.W_tot * (1 + 1e-9)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(2, 3), n_tokens=st.integers(8, 22),
       k_min=st.integers(2, 8), bw=st.sampled_from([0.3, 1.0, 3.0]),
       den=st.sampled_from(["round", "uplink"]))
def test_methods_agree_and_bounds_dominate(seed, n, n_tokens, k_min, bw, den):
    try:
        pb = small_problem(seed, n, n_tokens, k_min, bw, den)
    except InfeasibleError:
        return
    if pb.M > 3:
        return
    sols = {
        "brute": so.solve(pb, "brute"),
        "global": so.solve(pb, "global", tol=1e-6),
        "milp": so.solve(pb, "milp", backend="highspy", mip_gap=1e-3, n_tau=4, time_limit=3),
        "alternating": so.solve(pb, "alternating"),
        "alternating_exact": so.solve(pb, "alternating", token_step="exact", resource_step="joint"),
    }
    for name, s in sols.items():
        rep = pb.check(s)
        assert rep.ok, (name, rep)
    best = max(s.objective for s in sols.values())
    opt = sols["brute"].objective
    assert best <= opt * (1 + 1e-7)                 # brute is exact
    assert sols["global"].objective >= opt * (1 - 1e-6)
    if sols["milp"].status == "optimal":
        assert sols["milp"].objective >= opt * (1 - 1e-3)
    for name in ("brute", "global", "milp"):
        b = sols[name].bound
        assert b is not None and b >= best * (1 - 1e-12), (name, b, best)
        assert sols[name].gap >= 0
    alt = sols["alternating"]
    gap = (sols["global"].bound - alt.objective) / sols["global"].bound
    assert gap >= 0


@pytest.mark.parametrize("seed", [0, 1])
def test_scip_matches_brute_small(seed):
    pytest.importorskip("pyscipopt")
    pb = small_problem(seed, 3, 16, 4)
    b = so.solve(pb, "brute")
    s = so.solve(pb, "scip", time_limit=60)
    g = so.solve(pb, "global", tol=1e-6)
    assert pb.check(s).ok
    assert s.status == "optimal"
    assert s.objective == pytest.approx(b.objective, rel=1e-5)
    assert g.objective == pytest.approx(b.objective, rel=1e-6)
    assert s.bound >= max(b.objective, g.objective) * (1 - 1e-12)


def test_global_paper_preset_certifies_tolerance():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=10, seed=2))
    s = so.solve(pb, "global")
    assert s.status == "optimal" and s.gap <= 1e-4
    assert pb.check(s).ok
    alt = so.solve(pb, "alternating")
    assert alt.objective <= s.bound
    m = so.solve(pb, "milp", backend="pyomo", n_tau=3, refine=False, time_limit=30)
    assert pb.check(m).ok and m.bound >= s.objective * (1 - 1e-12)
    assert s.bound >= m.objective * (1 - 1e-12)


def test_global_time_limit_returns_valid_bound():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=30, seed=5))
    s = so.solve(pb, "global", max_nodes=1, tangent=False, n_init=3)
    ref = so.solve(pb, "global")
    assert s.status == "time_limit"
    assert s.bound >= ref.objective * (1 - 1e-12)
    assert pb.check(s).ok


def test_errors():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=10, seed=0))
    with pytest.raises(SolverError, match="M <= 3"):
        so.solve(pb, "brute")
    with pytest.raises(SolverError, match="backend"):
        so.solve(pb, "milp", backend="cplex")
    with pytest.raises(SolverError, match="tol"):
        so.solve(pb, "global", tol=0)


def test_scip_missing_gives_clear_error(monkeypatch):
    pb = small_problem(0, 2, 10, 4)
    monkeypatch.setitem(sys.modules, "pyscipopt", None)
    with pytest.raises(SolverError, match="pyscipopt"):
        so.solve(pb, "scip")


def test_alternating_knapsack_token_step_improves_and_stays_monotone():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=10, seed=1))
    paper = so.solve(pb, "alternating")
    knap = so.solve(pb, "alternating", token_step="knapsack")
    g = so.solve(pb, "global")
    assert pb.check(knap).ok
    assert np.all(np.diff(knap.history) >= -1e-12 * knap.objective)
    assert knap.objective >= paper.objective * (1 - 1e-12)
    assert (g.bound - knap.objective) / g.bound <= 1e-2
    with pytest.raises(SolverError, match="token_step"):
        so.solve(pb, "alternating", token_step="nope")


def test_bench_sweep_rows_and_cli(tmp_path, capsys):
    from ste_opt import bench
    from ste_opt.cli import main

    rows = bench.sweep(sizes=(4,), seeds=(0,), methods=("global", "alternating", "brute"),
                       caps={"brute": 3})
    assert {r["method"] for r in rows} == {"global", "alternating"}
    for r in rows:
        assert r["check_ok"] and not r["error"]
        assert r["gap_to_best_bound"] >= 0
    assert next(r for r in rows if r["method"] == "global")["time_vs_global"] == 1.0
    bad = bench.run_instance("st-sflora", 10, 0, "brute")
    assert "M <= 3" in bad["error"]
    out = tmp_path / "b.csv"
    assert main(["bench", "ste", "--sizes", "4", "--seeds", "0", "--methods", "global,alternating",
                 "-o", str(out)]) == 0
    assert out.read_text().count("\n") == 3
    assert "global" in capsys.readouterr().out
