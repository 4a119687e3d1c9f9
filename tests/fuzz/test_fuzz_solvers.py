"""Random scenarios over extreme scales, every method of both problems, random options.

Asserts: nothing but the package's own errors escapes (``SteOptError``), every returned solution
passes ``check()``, every proven bound holds against every feasible objective found for the
instance (STE maximizes: bound >= objective; SFLAM minimizes: bound <= objective).
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ste_opt.errors import SteOptError
from ste_opt.model import channel, semantics
from ste_opt.problems.sflam import SFLAMProblem
from ste_opt.problems.ste import STEProblem
from ste_opt.scenarios import make_scenario
from ste_opt.scenarios.ste import Scenario
from ste_opt.solvers import list_methods, solve

from ._kit import LONG, fuzz_settings, record

REL = 1e-6
TL = 5.0 if LONG else 1.0   # time limit (s) of the certified methods per call


def logu(lo: float, hi: float):
    """Log-uniform floats in [10^lo, 10^hi]."""
    return st.floats(lo, hi, allow_nan=False).map(lambda e: float(10.0 ** e))


@st.composite
def ste_scenarios(draw):
    wide = draw(st.booleans())   # extreme scales, or ranges around the paper's setting
    r = (lambda lo, hi, mlo, mhi: logu(lo, hi) if wide else logu(mlo, mhi))  # noqa: E731
    m = draw(st.integers(1, 8 if LONG else 5))
    n = draw(st.integers(1, 96 if LONG else 48))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    d = np.array([draw(r(0, 4, 0.7, 2.7)) for _ in range(m)])
    expo = draw(st.floats(2.0, 4.0))
    prof = semantics.parametric_profiles(
        m, n, rng, family=draw(st.sampled_from(semantics.FAMILIES)), scale=draw(logu(-1, 3)),
        spread=draw(st.floats(0, 1)), mass=draw(st.floats(0.01, 1.0)), batch=draw(st.integers(1, 128)))
    return Scenario(
        distance_m=d, path_gain=channel.path_gain(d, expo, draw(st.floats(0, 60))),
        fading=rng.exponential(size=m) + 1e-6,
        p_max_w=np.array([draw(r(-4, 1, -1.5, 0)) for _ in range(m)]),
        cpu_freq_hz=np.array([draw(r(7, 10, 9, 9.5)) for _ in range(m)]),
        cores=rng.integers(1, 64, m).astype(float),
        velocity_mps=np.array([draw(st.floats(0, 50)) for _ in range(m)]),
        energy_max_j=np.array([draw(r(-6, 3, -1, 1)) for _ in range(m)]),
        retention=prof, bandwidth_hz=draw(r(3, 10, 7, 8.5)), t_max_s=draw(r(-3, 3, 1, 2)),
        cell_radius_m=float(np.max(d)) * draw(st.floats(1.0, 3.0)) + 1.0,
        n_patches=n, dim=draw(st.integers(1, 2048) if wide else st.integers(16, 768)),
        batch=draw(st.integers(1, 128) if wide else st.integers(1, 64)),
        bits=draw(st.sampled_from([1, 2, 4, 8, 16, 32])), extra_tokens=draw(st.integers(0, 3)),
        k_min=draw(st.integers(1, n)), client_flops=draw(r(3, 12, 6, 10)),
        flops_per_cycle=draw(r(0, 3, 1.5, 2)), kappa=draw(st.sampled_from([0.0, 1e-28, 1e-26])))


STE_OPTIONS = {   # bounded work per call; every registered STE method is run
    "alternating": [{}, {"token_step": "exact", "resource_step": "joint"},
                    {"token_step": "knapsack", "resource_step": "joint"}, {"init": "joint"}],
    "global": [{"time_limit": TL, "max_nodes": 3000}],
    "milp": [{"backend": "highspy", "time_limit": TL}],
    "scip": [{"time_limit": TL}],
    "brute": [{"max_combos": 20_000}],
}


def _run(pb, method, opts, category):
    t0 = time.perf_counter()
    try:
        sol = solve(pb, method, **opts)
    except SteOptError as exc:
        if time.perf_counter() - t0 > 5:
            print(f"SLOW {time.perf_counter() - t0:.1f}s {method} {opts}", file=sys.stderr)
        record(category, f"refused:{type(exc).__name__}")
        return None
    if time.perf_counter() - t0 > 5:
        print(f"SLOW {time.perf_counter() - t0:.1f}s {method} {opts}", file=sys.stderr)
    rep = pb.check(sol)
    assert rep.ok, (method, opts, rep)
    assert np.isfinite(sol.objective) or not sol.success
    record(category, "solved")
    return sol


@fuzz_settings(short=10, long=100)
@given(scen=ste_scenarios(), denominator=st.sampled_from(["round", "uplink"]),
       floor=st.sampled_from([0.0, 0.0, 0.5]), compute=st.booleans())
def test_ste_every_method_extreme_scales(scen, denominator, floor, compute):
    try:
        pb = STEProblem(scen, denominator=denominator, retention_floor=floor, include_compute_energy=compute)
    except SteOptError as exc:
        record("ste_problem", f"refused:{type(exc).__name__}")
        return
    sols = []
    for info in list_methods("ste"):
        for opts in STE_OPTIONS.get(info.name, [{}]):
            if info.name == "scip" and pb.M > 3:
                continue
            if info.name == "fixed_tokens":
                opts = {"tokens": int(pb.N)}
            s = _run(pb, info.name, opts, "ste_solve")
            if s is not None:
                sols.append(s)
    best = max((s.objective for s in sols if s.success), default=-math.inf)
    for s in sols:
        if s.bound is not None and np.isfinite(best):
            assert s.bound >= best * (1 - REL) - 1e-12, (s.method, s.bound, best)
            record("ste_bound", "held")


@st.composite
def sflam_scenarios(draw):
    n = draw(st.integers(1, 6 if LONG else 4))
    pmax = draw(logu(-3, 1))
    lo_s = draw(st.integers(1, 5000))
    wide = draw(st.booleans())
    inf_or = lambda lo, hi: st.one_of(st.just(float("inf")), logu(lo, hi)) if wide \
        else st.just(float("inf"))  # noqa: E731
    over = dict(subchannels_per_device=draw(st.sampled_from([1, 1.5, 2])),
                subchannel_hz=draw(logu(4, 8)), p_max_w=pmax, p_min_w=pmax * draw(st.floats(1e-4, 1.0)),
                server_power_w=draw(logu(-1, 2)), samples=(lo_s, lo_s + draw(st.integers(0, 500))),
                cpu_freq_hz=(1e8, 1e8 * draw(st.floats(1, 50))), local_epochs=draw(st.integers(1, 10)),
                batch=draw(st.integers(1, 256)), tokens=draw(st.integers(1, 200)),
                dim=draw(st.integers(1, 1024)), deadline_s=draw(inf_or(0, 6)),
                energy_max_j=draw(inf_or(-2, 6)), client_params=draw(st.integers(1, 10**7)),
                conv_a=draw(logu(-1, 3)), conv_c=draw(st.floats(0, 10)),
                epsilon=draw(st.floats(0.06, 2) if wide else st.floats(0.15, 2)),
                path_loss_exponent=draw(st.floats(2, 4.5)))
    return make_scenario("sflam", n_devices=n, seed=draw(st.integers(0, 2**31 - 1)), **over)


SFLAM_OPTIONS = {
    "bcd": [{}, {"matching": "swap"}] + ([{"power_step": "sca"}] if LONG else []),
    "milp": [{"levels": 6, "refine": 2, "time_limit": TL}],
    "brute": [{"max_assignments": 5000}],
    "fixed_bits": [{"bits": 8}],
}


@fuzz_settings(short=10, long=100)
@given(data=st.data(), omega=st.sampled_from([0.0, 0.3, 1.0]), per_device=st.booleans())
def test_sflam_every_method_extreme_scales(data, omega, per_device):
    try:
        scen = data.draw(sflam_scenarios())
        pb = SFLAMProblem(scen, omega=omega, per_device_bits=per_device)
    except SteOptError as exc:
        record("sflam_problem", f"refused:{type(exc).__name__}")
        return
    sols = []
    for info in list_methods("sflam"):
        for opts in SFLAM_OPTIONS.get(info.name, [{}]):
            s = _run(pb, info.name, opts, "sflam_solve")
            if s is not None:
                sols.append(s)
    best = min((s.objective for s in sols if s.success), default=math.inf)
    for s in sols:
        if s.bound is not None and np.isfinite(best):
            assert s.bound <= best * (1 + REL) + 1e-12, (s.method, s.bound, best)
            record("sflam_bound", "held")


JUNK = st.one_of(st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                 st.none(), st.text(max_size=6), st.sampled_from(["exact", "sca", "both", "1e-3", "maybe"]))


def _small(kind):
    if kind == "ste":
        return STEProblem(make_scenario("st-sflora", n_devices=3, seed=1, n_patches=24, k_min=8))
    return SFLAMProblem(make_scenario("sflam", n_devices=3, seed=1), omega=0.0)


@fuzz_settings(short=40, long=1500)
@given(kind=st.sampled_from(["ste", "sflam"]), data=st.data())
def test_random_options_are_validated(kind, data):
    pb = _small(kind)
    info = data.draw(st.sampled_from(list_methods(kind)))
    names = list(info.specs) + ["foo"]
    opts = data.draw(st.dictionaries(st.sampled_from(names), JUNK, max_size=3))
    for k in ("time_limit",):   # bounded work: a valid time limit is at most 2 s
        if k in info.specs and isinstance(opts.get(k, 2.0), (int, float)) and not isinstance(opts.get(k), bool) \
                and math.isfinite(opts.get(k, 2.0)) and opts.get(k, 2.0) > TL:
            opts[k] = TL
    if "time_limit" in info.specs:
        opts.setdefault("time_limit", TL)
    if info.name == "milp" and kind == "ste":
        opts.setdefault("backend", "highspy")
    _run(pb, info.name, opts, f"{kind}_options")
