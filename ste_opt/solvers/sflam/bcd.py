"""SFLAM's block coordinate descent: matching (:mod:`.matching`), power (:mod:`.power`: exact τ
search or SCA in cvxpy), bits (here); and the ``fixed_bits`` baseline.

Blocks, each of which never raises the objective U (so ``history`` is non-increasing):

1. **matching** (power and bits fixed): Gale–Shapley start (devices propose by descending gain,
   subchannels keep the stronger proposer), then swap matching: among all exchanges of two
   devices' subchannels (and moves to a free subchannel when K > N) apply the one that lowers U
   most, evaluated exactly (the straggler time through the three largest device times), until no
   exchange lowers U. Disjoint exchanges that lower the energy without raising the straggler time
   are applied together when that verifiably lowers U. Then (``matching="both"``, the default)
   the exact assignment of the energies at the current straggler time τ (each device on each
   subchannel with the least power finishing by τ; scipy's ``linear_sum_assignment``) is tried
   with re-fitted powers; ``"swap"`` or ``"hungarian"`` use one of the two only.
2. **power** (matching and bits fixed): the upload energy ``e(p) = p S / r(p)`` is concave and
   increasing in p. ``power_step="exact"`` (default, vectorized): for a straggler time τ each
   device uses the least power finishing by ``min(τ, deadline)``, clipped to its range; its
   energy is convex and non-increasing in τ, so ``J(τ) = ω' τ + (1 − ω') Σ e_n(τ)`` is convex and
   its minimizer is found by bisection on ``J'``. ``power_step="sca"``: successive convex
   approximation, the tangent of e at the current power is an upper surrogate and each step is a
   convex program (cvxpy, ``S·inv_pos(r(p))`` for the upload time, Mbit and MHz units).
3. **bits**: enumeration of the common bit-width (each with an exact power step), or, with
   ``per_device_bits``, coordinate descent on each device's bit-width at the current straggler
   time followed by a power step.

``bcd`` runs the blocks from the Gale–Shapley start for every feasible common bit-width (the
exact computation of the ``fixed_bits`` baseline), also evaluates the ``random_matching`` and
``max_power`` baselines, and polishes the best of all: its objective is never above any of those
baselines (with their default options).
"""
from __future__ import annotations

import logging

import numpy as np

from ...errors import InfeasibleError, InvalidScenarioError, SolverError
from ...model.convergence import quantization_error, rounds_from_margin
from ..registry import register
from .baselines import max_power_allocation, random_matching_allocation
from .matching import hungarian_matching, start_matching, swap_matching
from .power import bracket, power_step_exact, power_step_sca

logger = logging.getLogger(__name__)

__all__ = ["bcd", "fixed_bits", "bcd_path", "run_fixed_bits"]


# ---------------------------------------------------------------------- bits block
def _bits_common(problem, asg, p, bits, U):
    best = (U, p, bits)
    for b in problem.common_bits:
        bv = np.full(problem.N, b)
        if np.array_equal(bv, bits):
            continue
        pp = power_step_exact(problem, asg, bv)
        if pp is None:
            continue
        u = bracket(problem, asg, pp, bv)
        if u < best[0]:
            best = (u, pp, bv)
    return best


def _bits_per_device(problem, asg, p, bits, U, max_sweeps: int = 10):
    """Coordinate descent on each device's bit-width at the current straggler time."""
    s = problem.scenario
    N = problem.N
    n_idx = np.arange(N)
    bits = np.asarray(bits, dtype=int).copy()
    p = p.copy()
    ev = problem.evaluate_unchecked(asg, p, bits)
    T, E = ev["latency"].copy(), ev["energy"].copy()
    q = s.conv_c * np.asarray([float(x) for x in _q(bits)])
    c = problem.c[n_idx, asg]
    phi = problem.phi[n_idx, asg]
    e_up = problem.e_max - problem.e_cmp
    S_of = {int(b): problem.uplink_bits(np.full(N, b)) for b in problem.bit_set}
    for _ in range(max_sweeps):
        changed = False
        for d in range(N):
            tau = float(np.max(T))
            others = np.max(np.delete(T, d)) if N > 1 else -np.inf
            for j, b in enumerate(problem.bit_set):
                if b == bits[d] or not problem.bits_ok[d, j]:
                    continue
                qsum = float(np.sum(q)) - q[d] + s.conv_c * float(_q([b])[0])
                margin = s.epsilon - s.conv_b0 - qsum / N
                if margin <= 0:
                    continue
                Sd = S_of[int(b)][d]
                phd = min(problem.p_max[d], float(problem.battery_power_cap(Sd, phi[d], e_up[d])))
                if phd < problem.p_lo[d]:
                    continue
                w = min(tau, problem.deadline[d]) - c[d]
                pr = float(problem.power_for_window(Sd, w, phi[d])) if w > 0 else np.inf
                pd = min(max(pr, problem.p_lo[d]), phd)
                r = float(problem.rate(phi[d], pd))
                Td = c[d] + Sd / r
                Ed = problem.e_cmp[d] + pd * Sd / r
                if Td > problem.deadline[d] * (1 + 1e-12):
                    continue
                R = rounds_from_margin(s.conv_a, margin)
                u = R * (problem.alpha0 * max(others, Td) + problem.beta0 * (float(np.sum(E)) - E[d] + Ed))
                if u < U * (1 - 1e-12):
                    bits[d], p[d], T[d], E[d], q[d], U = b, pd, Td, Ed, s.conv_c * float(_q([b])[0]), u
                    changed = True
        if not changed:
            break
    return U, p, bits


def _q(bits):
    return np.atleast_1d(quantization_error(np.asarray(bits)))


# ---------------------------------------------------------------------- the BCD loop
def _sca_or_exact(problem, asg, bits, p, tb, sca_options, fallbacks):
    """The SCA power step; when the conic solver fails, the exact step instead (appended to
    ``fallbacks``, reported as ``info["sca_fallbacks"]``)."""
    try:
        return power_step_sca(problem, asg, bits, p0=p, tb=tb, **(sca_options or {}))
    except (SolverError, ArithmeticError, ValueError) as exc:
        if fallbacks is not None:
            fallbacks.append(" ".join(str(exc).split())[:200])
        logger.info("SCA power step failed (%s); using the exact power step", exc)
        return power_step_exact(problem, asg, bits, tb)


def bcd_path(problem, asg, p, bits, *, bits_mode: str | None = None, matching: str = "both",
             power_step: str = "exact", max_iter: int = 30, tol: float = 1e-9, sca_options=None,
             fallbacks: list | None = None):
    """Run the blocks from (asg, p, bits) until the relative decrease is below ``tol``.

    ``bits_mode``: None (bits fixed), ``"common"`` or ``"per_device"``. Returns
    ``(asg, p, bits, history, iterations)``; ``history[0]`` is the start's objective.
    """
    asg = np.asarray(asg, dtype=int).copy()
    p = np.asarray(p, dtype=float).copy()
    bits = np.asarray(bits, dtype=int).copy()
    U = bracket(problem, asg, p, bits)
    if not np.isfinite(U):
        pp = power_step_exact(problem, asg, bits)
        if pp is None:
            raise InfeasibleError("bcd: the start matching cannot meet the devices' deadlines or batteries")
        p, U = pp, bracket(problem, asg, pp, bits)
    hist = [U]
    it = 0
    for it in range(1, max_iter + 1):
        U_prev = U
        tb = problem.tables(bits)
        # 1. matching: swap matching at fixed powers, then (``both``/``hungarian``) the exact
        #    assignment of the energies at the current straggler time with re-fitted powers
        if matching in ("swap", "both"):
            a2, _ = swap_matching(problem, asg, bits, p, tb)
            u2 = bracket(problem, a2, p, bits)
            if u2 < U:
                asg, U = a2, u2
        if matching in ("hungarian", "both"):
            a2 = hungarian_matching(problem, asg, p, bits, tb)
            if not np.array_equal(a2, asg):
                p2 = power_step_exact(problem, a2, bits, tb)
                if p2 is not None:
                    u2 = bracket(problem, a2, p2, bits)
                    if u2 < U:
                        asg, p, U = a2, p2, u2
        # 2. power
        if power_step == "sca":
            p2 = _sca_or_exact(problem, asg, bits, p, tb, sca_options, fallbacks)
        else:
            p2 = power_step_exact(problem, asg, bits, tb)
        if p2 is not None:
            u2 = bracket(problem, asg, p2, bits)
            if u2 < U:
                p, U = p2, u2
        # 3. bits
        if bits_mode == "common":
            u2, p2, b2 = _bits_common(problem, asg, p, bits, U)
            if u2 < U:
                U, p, bits = u2, p2, b2
        elif bits_mode == "per_device":
            u2, p2, b2 = _bits_per_device(problem, asg, p, bits, U)
            if u2 < U:
                U, p, bits = u2, p2, b2
                p3 = power_step_exact(problem, asg, bits)
                if p3 is not None:
                    u3 = bracket(problem, asg, p3, bits)
                    if u3 < U:
                        p, U = p3, u3
        hist.append(U)
        if U_prev - U <= tol * abs(U_prev):
            break
    return asg, p, bits, hist, it


def _start(problem, b):
    tb = problem.tables(np.full(problem.N, b))
    asg = start_matching(problem, tb)
    if asg is None:
        return None
    return asg, tb.p_hi[np.arange(problem.N), asg].copy(), np.full(problem.N, b)


def run_fixed_bits(problem, b, matching="both", power_step="exact", max_iter=30, tol=1e-9,
                   sca_options=None, fallbacks=None):
    """The deterministic BCD with a common bit-width b fixed (shared by ``bcd`` and ``fixed_bits``)."""
    st = _start(problem, b)
    if st is None:
        return None
    return bcd_path(problem, *st, bits_mode=None, matching=matching, power_step=power_step,
                    max_iter=max_iter, tol=tol, sca_options=sca_options, fallbacks=fallbacks)


@register("sflam", "bcd", "block coordinate descent: Gale–Shapley + swap matching, SCA/exact power, "
          "bit enumeration or coordinate descent", bound="none")
def bcd(problem, matching: str = "both", power_step: str = "exact", max_iter: int = 30,
        tol: float = 1e-9, baseline_starts: bool = True, seed: int = 0, sca_options: dict | None = None):
    """SFLAM's BCD (see the module docstring).

    Parameters
    ----------
    matching : {"both", "swap", "hungarian"}
        Matching block: swap matching at fixed powers, the exact assignment (Hungarian) of the
        energies at the current straggler time with re-fitted powers, or both in turn (default).
    power_step : {"exact", "sca"}
        Exact convex τ search (vectorized, default) or SCA with a cvxpy program per step.
    max_iter, tol : outer iterations and relative stopping tolerance of each BCD run.
    baseline_starts : bool
        Also evaluate the ``random_matching`` (with ``seed``) and ``max_power`` baselines and keep
        the best start, so the result is never worse than them.
    sca_options : dict
        Options of :func:`power_step_sca` (``max_iter``, ``tol``, ``solver``).
    """
    if matching not in ("swap", "hungarian", "both"):
        raise SolverError(f"matching must be 'swap', 'hungarian' or 'both', got {matching!r}")
    if power_step not in ("exact", "sca"):
        raise SolverError(f"power_step must be 'exact' or 'sca', got {power_step!r}")
    fallbacks: list[str] = []
    kw = dict(matching=matching, power_step=power_step, max_iter=max_iter, tol=tol, sca_options=sca_options,
              fallbacks=fallbacks)
    cands = []   # (U, asg, p, bits, history, iterations, origin)
    for b in problem.common_bits:
        out = run_fixed_bits(problem, b, **kw)
        if out is None:
            continue
        a, p, bits, h, it = out
        cands.append((h[-1], a, p, bits, h, it, f"fixed_bits={b}"))
    if problem.per_device_bits and not cands:
        # no common width works: start from each device's fewest bits
        bmin = np.array([problem.bit_set[np.flatnonzero(problem.bits_ok[d])[0]] for d in range(problem.N)])
        tb = problem.tables(bmin)
        asg = start_matching(problem, tb)
        if asg is not None and problem.reachable(bmin):
            p = tb.p_hi[np.arange(problem.N), asg].copy()
            a, p, bits, h, it = bcd_path(problem, asg, p, bmin, bits_mode="per_device", **kw)
            cands.append((h[-1], a, p, bits, h, it, "fewest_bits"))
    if baseline_starts:
        for name, fn in (("random_matching", lambda: random_matching_allocation(problem, seed=seed)),
                         ("max_power", lambda: max_power_allocation(problem))):
            try:
                a, p, bits = fn()
            except InfeasibleError:
                continue
            u = bracket(problem, a, p, bits)
            cands.append((u, a, p, bits, [u], 0, name))
    if not cands:
        raise InfeasibleError("bcd: no feasible start (no bit-width and matching meet every device's "
                              "deadline and battery)", devices=list(range(problem.N)))
    cands.sort(key=lambda c: c[0])
    U, a, p, bits, hist, iters, origin = cands[0]
    mode = "per_device" if problem.per_device_bits else "common"
    a, p, bits, h2, it2 = bcd_path(problem, a, p, bits, bits_mode=mode, **kw)
    history = list(hist) + list(h2[1:])
    return problem.make_solution(a, p, bits, status="feasible", history=history, iterations=iters + it2,
                                 info={"start": origin, "candidates": {c[6]: float(c[0]) for c in cands},
                                       "matching": matching, "power_step": power_step,
                                       **({"sca_fallbacks": len(fallbacks),
                                           "sca_fallback_reasons": fallbacks[:3]}
                                          if power_step == "sca" else {})})


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
