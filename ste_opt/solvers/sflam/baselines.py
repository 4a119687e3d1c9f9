"""SFLAM baselines: ``random_matching`` (a random matching, power and bits optimized for it) and
``max_power`` (every device at its largest usable power, matching and bits optimized)."""
from __future__ import annotations

import numpy as np

from ...errors import InfeasibleError
from ..registry import register
from .matching import start_matching, swap_matching
from .power import bracket, power_step_exact

__all__ = ["random_matching", "max_power", "random_matching_allocation", "max_power_allocation"]


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
