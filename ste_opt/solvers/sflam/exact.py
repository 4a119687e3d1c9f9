"""SFLAM: exact methods for special cases.

- ``hungarian``: exact when ω = 0 (energy only). Then U = R(b) Σ_n E_n / E_ref is separable: on
  subchannel k device n's cheapest power is the least one meeting its deadline (at least p_min),
  so for each common bit-width the best matching is a linear assignment (scipy's
  ``linear_sum_assignment``).
- ``brute``: every injective assignment × every common (or per-device) bit-width with the exact
  power step; tiny instances only (the reference of the tests).

The baselines are in :mod:`.baselines` and ``fixed_bits`` in :mod:`.bcd`.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...errors import InfeasibleError, SolverError
from ..registry import register
from .power import BIG_COST, bracket, power_step_exact

__all__ = ["hungarian", "brute"]


def _energy_only_costs(problem, tb):
    """Least energy of device n on subchannel k meeting its deadline (inf where impossible)."""
    E, p, ok = problem.least_energy_table(tb, problem.deadline[:, None] - problem.c)
    return np.where(ok, problem.e_cmp[:, None] + E, np.inf), p


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
        cost = np.where(np.isfinite(E), E, BIG_COST)
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
