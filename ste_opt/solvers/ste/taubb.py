"""The branch and bound on the straggler time τ shared by ``global`` and ``milp`` (docs/certified.md).

Every feasible allocation has its straggler time in ``[τ_lo, τ_max]`` (:func:`tau_range`). Both
methods cover that range by a geometric grid (:func:`tau_grid`), bound the STE on each interval
``[a, b]`` from an evaluation at its right end, and refine best-first: the interval with the
largest bound is split at its geometric midpoint until the largest bound is within ``tol`` of the
incumbent (:func:`best_first`). They differ only in the bound of an interval (greedy knapsack LP
with tangents for ``global``, a level MILP's dual bound for ``milp``), given as the ``split``
callback.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from ...errors import SolverError
from .knapsack import BOUND_SLACK

__all__ = ["tau_range", "tau_grid", "best_first"]


def tau_range(problem):
    """``(τ_lo, τ_hi)``: every feasible allocation's straggler time is ≥ τ_lo; beyond τ_hi
    (= ``problem.tau_max``) nothing changes but τ itself."""
    tau_lo, _, _ = problem.min_straggler_time(problem.k_lo)
    if not np.isfinite(tau_lo):
        raise SolverError("the all-K_min allocation does not fit (admission should have caught this)")
    hi = problem.tau_max
    lo = min(float(tau_lo) * (1 - 1e-9), hi)
    return lo, hi


def tau_grid(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` geometric points on ``[lo, hi]`` (just the two ends when the range is a point)."""
    if hi <= lo * (1 + 1e-12):
        return np.array([lo, hi])
    return np.geomspace(lo, hi, max(int(n), 2))


def best_first(heap: list, *, incumbent: Callable[[], float], tol: float,
               split: Callable, stop: Callable[[int], str | None], unsplittable: str = "prune",
               refine: Callable | None = None):
    """Best-first refinement of τ intervals.

    ``heap`` holds ``(-bound, a, b, data)`` (a min-heap on ``-bound``). Each step stops when the
    largest bound is at most ``incumbent() (1 + tol)`` (up to :data:`BOUND_SLACK`), or when
    ``stop(splits)`` returns a status; otherwise it pops the best interval, splits it at
    ``m = sqrt(a b)`` and pushes ``split(a, m, b, bound, data)`` (an iterable of heap items).
    An interval at floating-point resolution (no ``a < m < b``) is closed with its bound kept
    (``unsplittable="prune"``) or ends the search with status ``"feasible"`` (``"stop"``).
    ``refine(item)``, when given, is asked first about each popped interval: it may return a
    replacement item (same interval, a tighter bound: pushed back, not counted as a split) or
    None (the interval is split).

    Returns ``(status, bound, splits)``: ``"optimal"`` unless stopped, the largest bound of the
    open and closed intervals, and the number of splits.
    """
    heapq.heapify(heap)
    splits = 0
    pruned_ub = -np.inf            # largest bound among intervals closed without splitting
    status = "optimal"
    while heap:
        ub = -heap[0][0]
        if ub <= incumbent() * (1 + tol) * (1 - 2 * BOUND_SLACK):
            break
        st = stop(splits)
        if st is not None:
            status = st
            break
        item = heapq.heappop(heap)
        if refine is not None:
            again = refine(item)
            if again is not None:
                heapq.heappush(heap, again)
                continue
        negu, a, b, data = item
        m = float(np.sqrt(a * b))
        if not (a < m < b):                     # interval at floating-point resolution
            if unsplittable == "prune":
                pruned_ub = max(pruned_ub, -negu)
                continue
            heapq.heappush(heap, item)
            status = "feasible"
            break
        splits += 1
        for child in split(a, m, b, -negu, data):
            heapq.heappush(heap, child)
    open_ub = -heap[0][0] if heap else -np.inf
    return status, max(open_ub, pruned_ub), splits
