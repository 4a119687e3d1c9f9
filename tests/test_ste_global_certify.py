"""`global` certifies every instance (issue 12): the exact integer step closes the knapsack's
LP–integer gap; its bounds are real bounds (brute force, SCIP); the per-τ machinery of
``ste_opt.solvers.ste.mckp`` agrees with the reference knapsack."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ste_opt as so
from ste_opt.errors import InfeasibleError
from ste_opt.solvers.ste.knapsack import knapsack_at
from ste_opt.solvers.ste.mckp import Node, Static, exact_integer_step
from ste_opt.solvers.ste.taubb import tau_range


def small_problem(seed, n_devices=3, n_tokens=24, k_min=6, bw_scale=1.0, denominator="round",
                  weights=None, floor=0.0):
    sc = so.Scenario.preset("st-sflora", n_devices=n_devices, seed=seed)
    sc = sc.with_retention(sc.retention[:, :n_tokens]).replace(
        k_min=min(k_min, n_tokens), bandwidth_hz=sc.bandwidth_hz * bw_scale)
    return so.STEProblem(sc, denominator=denominator, weights=weights, retention_floor=floor)


def sweep_instances(n):
    """Seeded small instances: M = 1..50, both denominators, with and without a retention floor,
    32/8/4/2-bit payloads, equal / random / uneven weights."""
    rng = np.random.default_rng(12)
    for i in range(n):
        M = int(rng.integers(1, 51))
        den = ("round", "uplink")[i % 2]
        floor = (0.0, 0.6)[(i // 2) % 2]
        bits = (32, 8, 4, 2)[(i // 4) % 4]
        wmode = (i // 16) % 3
        w = None
        if wmode == 1:
            w = rng.uniform(0.1, 3.0, M)
        elif wmode == 2:
            w = np.where(rng.random(M) < 0.2, rng.uniform(10, 100, M), rng.uniform(0.1, 1, M))
        yield i, M, den, floor, bits, w


def sweep_problems(n):
    """The feasible problems of :func:`sweep_instances` (seed 2000 + i): ``(i, M, den, floor,
    bits, problem)``."""
    for i, M, den, floor, bits, w in sweep_instances(n):
        try:
            pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=M, seed=2000 + i, bits=bits),
                               denominator=den, retention_floor=floor, weights=w)
        except InfeasibleError:
            continue
        yield i, M, den, floor, bits, pb


def test_repro_instance_certifies_with_the_exact_step():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=2, seed=1007))
    s = so.solve(pb, "global")
    assert s.status == "optimal" and s.gap <= 1e-4
    assert s.info["exact_steps"] >= 1
    assert pb.check(s).ok
    # without it the τ search alone stalls on this instance (the LP–integer gap stays open)
    lp_only = so.solve(pb, "global", exact_step=False, max_nodes=300)
    assert lp_only.status == "time_limit" and lp_only.gap > 1e-4
    assert lp_only.bound >= s.objective * (1 - 1e-12)


def test_global_certifies_every_instance_of_a_seeded_sweep():
    """A few hundred small instances (about 10–20 s): every one certified within tol."""
    failures = []
    n_run = 0
    for i, M, den, floor, bits, pb in sweep_problems(240):
        n_run += 1
        s = so.solve(pb, "global", time_limit=30)
        rep = pb.check(s)
        if not (s.status == "optimal" and s.gap <= 1e-4 and rep.ok):
            failures.append((i, M, den, floor, bits, s.status, s.gap, rep.worst()))
    assert n_run >= 200
    assert not failures, failures


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), n_tokens=st.integers(6, 22),
       k_min=st.integers(1, 8), bw=st.sampled_from([0.2, 1.0, 4.0]),
       den=st.sampled_from(["round", "uplink"]), wscale=st.sampled_from([0.0, 1.0, 3.0]),
       tol=st.sampled_from([1e-3, 1e-4, 1e-6]))
def test_global_bound_never_below_brute(seed, n, n_tokens, k_min, bw, den, wscale, tol):
    w = np.exp(np.random.default_rng(seed).normal(0.0, wscale, n)) if wscale else None
    try:
        pb = small_problem(seed, n, n_tokens, k_min, bw, den, weights=w)
    except InfeasibleError:
        return
    b = so.solve(pb, "brute")
    g = so.solve(pb, "global", tol=tol)
    assert pb.check(g).ok
    assert g.status == "optimal" and g.gap <= tol
    assert g.bound >= b.objective * (1 - 1e-12)
    assert g.objective >= b.objective * (1 - tol) * (1 - 1e-9)
    assert b.bound >= g.objective * (1 - 1e-12)


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(4, 5), n_tokens=st.integers(6, 10),
       den=st.sampled_from(["round", "uplink"]))
def test_global_bound_never_below_a_finished_scip(seed, n, n_tokens, den):
    pytest.importorskip("pyscipopt")
    try:
        pb = small_problem(seed, n, n_tokens, max(n_tokens // 3, 1), 1.0, den)
    except InfeasibleError:
        return
    s = so.solve(pb, "scip", time_limit=20)
    g = so.solve(pb, "global", tol=1e-6)
    assert pb.check(g).ok and pb.check(s).ok
    if s.status == "optimal":                         # SCIP finished: its optimum is a floor
        assert g.bound >= s.objective * (1 - 1e-12)
        assert g.objective >= s.objective * (1 - 1e-5)
    assert s.bound >= g.objective * (1 - 1e-9)


def _brute_knapsack(pb, node):
    """Integer optimum of the knapsack at node.tau by enumeration (tiny instances)."""
    st_ = node.st
    ranges = [range(st_.base[m], st_.L) for m in range(pb.M)]
    best = -np.inf
    for cols in itertools.product(*ranges):
        c = np.array(cols)
        if np.sum(node.W[st_.rows, c]) <= pb.W_tot:
            best = max(best, float(np.sum(st_.F[st_.rows, c])))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_exact_integer_step_matches_enumeration(seed):
    pb = small_problem(seed, 3, 12, 3, bw_scale=(0.3, 1.0, 3.0)[seed % 3],
                       denominator=("round", "uplink")[seed % 2])
    static = Static(pb)
    lo, hi = tau_range(pb)
    for tau in np.geomspace(lo * 1.0001, hi, 4):
        node = Node(static, tau)
        if not node.feasible:
            continue
        node.lp()
        opt = _brute_knapsack(pb, node)
        assert node.lp_value >= opt * (1 - 1e-12)          # the LP bounds the integers
        assert node.int_value <= opt * (1 + 1e-12)
        res = exact_integer_step(node, target=-np.inf)
        assert res.complete
        assert res.value == pytest.approx(opt, rel=1e-12)
        assert res.bound >= opt * (1 - 1e-12)
        c = res.cols
        assert np.sum(node.W[static.rows, c]) <= pb.W_tot
        # with a target above the optimum nothing is found and the bound is the target
        res2 = exact_integer_step(node, target=opt * 1.01)
        assert res2.bound <= opt * 1.01 * (1 + 1e-12) and res2.bound >= opt * (1 - 1e-12)


@pytest.mark.parametrize("M", [7, 400, 3000])
def test_node_lp_agrees_with_the_reference_knapsack(M):
    """The per-device price search (with ratio tables, or on the fly above 300,000 entries)
    gives the greedy's LP; the exact step's bound dominates what it finds."""
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=M, seed=3))
    static = Static(pb)
    lo, hi = tau_range(pb)
    for tau in np.geomspace(lo * 1.001, hi, 5):
        node = Node(static, tau)
        ref = knapsack_at(pb, tau)
        assert node.feasible == ref.feasible
        if not ref.feasible:
            continue
        node.lp()
        assert node.lp_value == pytest.approx(ref.lp_value, rel=1e-9)
        assert node.int_value <= node.lp_value * (1 + 1e-12)
        assert np.sum(pb.w_min(node.tokens, tau)) <= pb.W_tot * (1 + 1e-9)
        # the interval bound dominates the LP bound at its right end over the left end
        a = tau * 0.97
        ub = node.interval_bound(a)
        assert ub >= node.lp_value / tau * (1 - 1e-12)
        assert ub <= node.lp_value / a * (1 + 1e-12)
        res = exact_integer_step(node, target=node.int_value, rel_gap=1e-6)
        assert node.int_value * (1 - 1e-12) <= res.bound <= node.lp_value * (1 + 1e-9)
        assert res.value <= res.bound * (1 + 1e-12)
        assert np.sum(pb.w_min(static.lev[res.cols], tau)) <= pb.W_tot * (1 + 1e-9)


def test_milp_status_is_honest():
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=10, seed=4))
    for mip_gap, limit in ((1e-2, 30.0), (1e-7, 0.3)):
        s = so.solve(pb, "milp", backend="highspy", mip_gap=mip_gap, time_limit=limit, n_tau=3)
        assert pb.check(s).ok
        assert s.status in ("optimal", "feasible", "time_limit")
        if s.status == "optimal":
            assert s.gap <= mip_gap
        else:
            assert s.gap > mip_gap
    assert so.solve(pb, "milp", backend="highspy", mip_gap=1e-7, time_limit=0.3, n_tau=3).status != "optimal"


def test_scip_status_is_honest():
    pytest.importorskip("pyscipopt")
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=5, seed=0))   # all 196 tokens: SCIP stalls
    s = so.solve(pb, "scip", time_limit=2)
    assert pb.check(s).ok
    assert s.status == "time_limit" and s.gap > 1e-4
    small = small_problem(1, 3, 10, 3)
    f = so.solve(small, "scip", time_limit=30, gap=1e-4)
    assert f.status == "optimal" and f.gap <= 1e-4


def test_milp_progress_goes_through_logging(caplog):
    pb = small_problem(2, 3, 16, 4)
    with caplog.at_level("INFO", logger="ste_opt.solvers.ste.milp"):
        so.solve(pb, "milp", backend="highspy", verbose=True, n_tau=3, refine=False)
    msgs = [r.getMessage() for r in caplog.records if r.name == "ste_opt.solvers.ste.milp"]
    assert any(m.startswith("HiGHS:") for m in msgs)
    assert any(m.startswith("milp: tau=") for m in msgs)
    caplog.clear()
    with caplog.at_level("WARNING", logger="ste_opt.solvers.ste.milp"):
        so.solve(pb, "milp", backend="highspy", n_tau=3, refine=False)       # quiet by default
    assert not [r for r in caplog.records if r.name == "ste_opt.solvers.ste.milp"]


def test_scip_progress_goes_through_logging(caplog):
    """SCIP's progress (nodes, bounds, gap) reaches the logger: DEBUG by default, nothing above."""
    pytest.importorskip("pyscipopt")
    pb = small_problem(2, 3, 16, 4)
    with caplog.at_level("DEBUG", logger="ste_opt.solvers.ste.reference"):
        s = so.solve(pb, "scip", time_limit=30, progress_every_s=1e-3)
    msgs = [r.getMessage() for r in caplog.records if r.name == "ste_opt.solvers.ste.reference"]
    prog = [m for m in msgs if m.startswith("scip: ") and " nodes, primal " in m]
    assert prog and all(" gap " in m for m in prog)
    assert any(m.startswith("scip: status ") for m in msgs)
    assert s.status == "optimal"
    caplog.clear()
    with caplog.at_level("INFO", logger="ste_opt.solvers.ste.reference"):
        so.solve(pb, "scip", time_limit=30)                    # quiet by default
    assert not [r for r in caplog.records if r.name == "ste_opt.solvers.ste.reference"]


@pytest.mark.parametrize("M", [40, 400])
def test_table_free_nodes_agree_with_tables(M):
    """FreeNode (no tables: each least bandwidth computed when a search reads it) gives the
    table Node's LP, integer solution and bounds at every τ."""
    from ste_opt.solvers.ste.mckp import FreeNode
    pb = so.STEProblem(so.Scenario.preset("st-sflora", n_devices=M, seed=5))
    st_t, st_f = Static(pb, tables="full"), Static(pb, tables="none")
    assert st_f.free and not st_t.free
    lo, hi = tau_range(pb)
    hint_t = hint_f = (None, None)
    for tau in np.geomspace(lo * 1.001, hi, 6):
        nt, nf = Node(st_t, tau), FreeNode(st_f, tau)
        assert nt.feasible == nf.feasible
        if not nt.feasible:
            continue
        nt.lp(*hint_t)
        nf.lp(*hint_f)
        hint_t, hint_f = (nt.lam, nt.lp_cols), (nf.lam, nf.lp_cols)
        assert nf.lp_value == pytest.approx(nt.lp_value, rel=1e-9)
        assert nf.int_value == pytest.approx(nt.int_value, rel=1e-9)
        assert np.sum(pb.w_min(nf.tokens, tau)) <= pb.W_tot * (1 + 1e-9)
        # (the tables keep the τ-slopes in float32: tangent costs agree to ~1e-7 of d·|∂W/∂τ|)
        for a in (tau * 0.99, tau * 0.9):
            assert nf.interval_bound(a) == pytest.approx(nt.interval_bound(a), rel=1e-7)
            for lam in (nt.lam * 0.7, nt.lam, nt.lam * 1.3):
                assert nf.fixed_price_bound(lam, a)[0] == pytest.approx(
                    nt.fixed_price_bound(lam, a)[0], rel=1e-7)
            assert nf.fixed_price_bound(nt.lam, tau)[0] == pytest.approx(nt.lp_value / tau, rel=1e-9)
        rt = exact_integer_step(nt, target=nt.int_value, rel_gap=1e-6)
        rf = exact_integer_step(nf, target=nf.int_value, rel_gap=1e-6)
        assert rf.bound == pytest.approx(rt.bound, rel=1e-8)
        assert rf.value == pytest.approx(rt.value, rel=1e-8)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), n_tokens=st.integers(6, 22),
       k_min=st.integers(1, 8), bw=st.sampled_from([0.2, 1.0, 4.0]),
       den=st.sampled_from(["round", "uplink"]))
def test_table_free_global_bound_never_below_brute(seed, n, n_tokens, k_min, bw, den):
    """The large-problem path (no tables, the located price first) forced on tiny instances."""
    try:
        pb = small_problem(seed, n, n_tokens, k_min, bw, den)
    except InfeasibleError:
        return
    b = so.solve(pb, "brute")
    g = so.solve(pb, "global", tables="none")
    assert pb.check(g).ok
    assert g.status == "optimal" and g.gap <= 1e-4
    assert g.bound >= b.objective * (1 - 1e-12)
    assert b.bound >= g.objective * (1 - 1e-12)


def test_table_free_global_certifies_a_seeded_sweep():
    """The large-problem path on a few dozen small instances of the sweep: all certified, and
    within tol of the tables' optimum."""
    failures = []
    n_run = 0
    for i, M, _den, _floor, _bits, pb in sweep_problems(60):
        n_run += 1
        f = so.solve(pb, "global", tables="none", time_limit=30)
        t = so.solve(pb, "global", tables="full", time_limit=30)
        if not (f.status == "optimal" and f.gap <= 1e-4 and pb.check(f).ok
                and f.bound >= t.objective * (1 - 1e-12) and t.bound >= f.objective * (1 - 1e-12)):
            failures.append((i, M, f.status, f.gap, f.objective, t.objective))
    assert n_run >= 45
    assert not failures, failures
