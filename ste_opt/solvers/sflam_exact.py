"""SFLAM: exact methods for special cases and the baselines.

- ``hungarian``: exact when ω = 0 (energy only). Then U = R(b) Σ_n E_n / E_ref is separable: on
  subchannel k device n's cheapest power is the least one meeting its deadline (at least p_min),
  so for each common bit-width the best matching is a linear assignment (scipy's
  ``linear_sum_assignment``).
- ``brute``: every injective assignment × every common (or per-device) bit-width with the exact
  power step; tiny instances only (the reference of the tests).
- baselines: ``random_matching`` (a random matching, power and bits optimized for it),
  ``max_power`` (every device at its largest usable power, matching and bits optimized),
  ``fixed_bits`` (a given common b, matching and power by BCD).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import InfeasibleError, InvalidScenarioError, SolverError
from .registry import register
from .sflam_bcd import (
    _BIG,
    bracket,
    power_step_exact,
    run_fixed_bits,
    start_matching,
    swap_matching,
)

__all__ = ["hungarian", "brute", "random_matching", "max_power", "fixed_bits",
           "random_matching_allocation", "max_power_allocation"]


def _energy_only_costs(problem, tb):
    """Least energy of device n on subchannel k meeting its deadline (inf where impossible)."""
    S = tb.S[:, None]
    w = problem.deadline[:, None] - problem.c
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        pr = np.where(np.isfinite(w), problem.power_for_window(S, w, problem.phi), 0.0)
        p = np.maximum(pr, problem.p_lo[:, None])
        ok = tb.feasible & (p <= tb.p_hi * (1 + 1e-12))
        p = np.minimum(p, tb.p_hi)
        E = problem.e_cmp[:, None] + p * S / problem.rate(problem.phi, p)
    return np.where(ok, E, np.inf), p


@register("sflam", "hungarian", "exact for ω = 0: linear assignment of the least energies "
          "(scipy linear_sum_assignment) per common bit-width", bound="exact")
def hungarian(problem):
    """Exact for ω = 0 with a common bit-width; raises :class:`SolverError` otherwise."""
    if problem.omega != 0.0:
        raise SolverError(f"hungarian is exact only for omega = 0 (energy only); this problem has "
                          f"omega = {problem.omega:g}: use 'bcd' or 'milp'")
    if problem.per_device_bits:
        raise SolverError("hungarian handles a common bit-width only (per_device_bits=False)")
    n = np.arange(problem.N)
    best = None
    for b in problem.common_bits:
        bits = np.full(problem.N, b)
        tb = problem.tables(bits)
        E, P = _energy_only_costs(problem, tb)
        cost = np.where(np.isfinite(E), E, _BIG)
        rows, cols = linear_sum_assignment(cost)
        asg = cols[np.argsort(rows)]
        if not np.isfinite(E[n, asg]).all():
            continue
        u = problem.rounds(bits) * problem.beta0 * float(np.sum(E[n, asg]))
        if best is None or u < best[0]:
            best = (u, asg, P[n, asg], bits)
    if best is None:
        raise InfeasibleError("hungarian: no bit-width admits a matching meeting every deadline and battery",
                              devices=list(range(problem.N)))
    sol = problem.make_solution(best[1], best[2], best[3], status="optimal", info={"exact": "omega=0"})
    sol.set_bound(sol.objective, sense="min")
    return sol


@register("sflam", "brute", "enumeration of all matchings and bit-widths with the exact power step "
          "(tiny instances)", bound="exact")
def brute(problem, max_devices: int = 6, max_assignments: int = 50_000):
    """Exhaustive search: ``K!/(K-N)!`` matchings × bit choices, each with the exact power step."""
    N, K = problem.N, problem.K
    if N > max_devices:
        raise SolverError(f"brute is for tiny instances: {N} devices > max_devices = {max_devices}")
    n_match = math.perm(K, N)
    if problem.per_device_bits:
        bit_choices = [np.array(c) for c in itertools.product(problem.bit_set.tolist(), repeat=N)]
        bit_choices = [b for b in bit_choices
                       if problem.bits_ok[np.arange(N), np.searchsorted(problem.bit_set, b)].all()
                       and problem.reachable(b)]
    else:
        bit_choices = [np.full(N, b) for b in problem.common_bits]
    if n_match * len(bit_choices) > max_assignments:
        raise SolverError(f"brute would evaluate {n_match * len(bit_choices)} combinations "
                          f"(> max_assignments = {max_assignments})")
    best = None
    for bits in bit_choices:
        tb = problem.tables(bits)
        for perm in itertools.permutations(range(K), N):
            asg = np.asarray(perm)
            p = power_step_exact(problem, asg, bits, tb)
            if p is None:
                continue
            u = bracket(problem, asg, p, bits)
            if best is None or u < best[0]:
                best = (u, asg, p, bits)
    if best is None:
        raise InfeasibleError("brute: no matching and bit-width meet every deadline and battery",
                              devices=list(range(N)))
    sol = problem.make_solution(best[1], best[2], best[3], status="optimal",
                                info={"combinations": n_match * len(bit_choices)})
    sol.set_bound(sol.objective, sense="min")
    return sol


# ---------------------------------------------------------------------- baselines
def random_matching_allocation(problem, seed: int = 0, tries: int = 50):
    """A random one-to-one matching (seeded); power by the exact step and the best common bits."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        asg = rng.permutation(problem.K)[:problem.N]
        best = None
        for b in problem.common_bits:
            bits = np.full(problem.N, b)
            p = power_step_exact(problem, asg, bits)
            if p is None:
                continue
            u = bracket(problem, asg, p, bits)
            if best is None or u < best[0]:
                best = (u, asg, p, bits)
        if best is not None:
            return best[1], best[2], best[3]
    raise InfeasibleError(f"random_matching: none of {tries} random matchings meets every deadline "
                          "and battery", devices=list(range(problem.N)))


def max_power_allocation(problem):
    """Every device at its largest usable power ``min(p_max, battery cap)`` on its subchannel;
    Gale–Shapley + swap matching for those powers; the best common bit-width."""
    n = np.arange(problem.N)
    best = None
    for b in problem.common_bits:
        bits = np.full(problem.N, b)
        tb = problem.tables(bits)
        asg = start_matching(problem, tb)
        if asg is None:
            continue
        asg, _ = swap_matching(problem, asg, bits, tb.p_hi, tb)
        p = tb.p_hi[n, asg].copy()
        u = bracket(problem, asg, p, bits)
        if np.isfinite(u) and (best is None or u < best[0]):
            best = (u, asg, p, bits)
    if best is None:
        raise InfeasibleError("max_power: at full power no matching meets every deadline",
                              devices=list(range(problem.N)))
    return best[1], best[2], best[3]


@register("sflam", "random_matching", "baseline: random subchannel matching, power and bits optimized")
def random_matching(problem, seed: int = 0):
    a, p, b = random_matching_allocation(problem, seed=seed)
    return problem.make_solution(a, p, b, info={"baseline": "random_matching", "seed": seed})


@register("sflam", "max_power", "baseline: every device at full power, matching and bits optimized")
def max_power(problem):
    a, p, b = max_power_allocation(problem)
    return problem.make_solution(a, p, b, info={"baseline": "max_power"})


@register("sflam", "fixed_bits", "baseline: a given common bit-width, matching and power by BCD")
def fixed_bits(problem, bits: int = 8, matching: str = "both", power_step: str = "exact",
               max_iter: int = 30, tol: float = 1e-9):
    b = int(bits)
    if b != bits or b not in problem.bit_set.tolist():
        raise InvalidScenarioError(f"fixed_bits: bits = {bits} is not in the bit set "
                                   f"{problem.bit_set.tolist()}", field="bits")
    problem.rounds(np.full(problem.N, b))   # clear error when the target is unreachable at b
    j = int(np.flatnonzero(problem.bit_set == b)[0])
    short = np.flatnonzero(~problem.bits_ok[:, j])
    if short.size:
        raise InfeasibleError(f"fixed_bits: {b} bits exceed the memory of device(s) "
                              f"{', '.join(map(str, short))}", devices=list(map(int, short)))
    out = run_fixed_bits(problem, b, matching=matching, power_step=power_step, max_iter=max_iter, tol=tol)
    if out is None:
        raise InfeasibleError(f"fixed_bits: at {b} bits no matching meets every deadline and battery",
                              devices=list(range(problem.N)))
    a, p, bv, h, it = out
    return problem.make_solution(a, p, bv, history=h, iterations=it, info={"baseline": "fixed_bits"})
