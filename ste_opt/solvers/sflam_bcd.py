"""SFLAM's block coordinate descent: matching, power (exact τ search or SCA in cvxpy), bits.

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
from scipy.optimize import linear_sum_assignment

from ..errors import InfeasibleError, SolverError
from ..problems.sflam import LN2, gale_shapley
from .registry import register

logger = logging.getLogger(__name__)

__all__ = ["bcd", "power_step_exact", "power_step_sca", "swap_matching", "hungarian_matching",
           "start_matching", "bcd_path", "bracket"]

_BIG = 1e30


# ---------------------------------------------------------------------- helpers
def _gather(problem, tb, asg):
    n = np.arange(problem.N)
    return problem.c[n, asg], problem.phi[n, asg], tb.p_hi[n, asg], tb.S


def bracket(problem, asg, p, bits):
    """U = R(b) (α0 T_round + β0 Σ E) of an allocation; ``inf`` if a limit is violated."""
    ev = problem._raw(asg, p, bits)
    if np.any(ev["latency"] > problem.deadline * (1 + 1e-9)) or \
            np.any(ev["energy"] > problem.e_max * (1 + 1e-9)):
        return np.inf
    if not problem.reachable(bits):
        return np.inf
    return problem.rounds(bits) * (problem.alpha0 * ev["t_round"] + problem.beta0 * float(np.sum(ev["energy"])))


def start_matching(problem, tb):
    """Gale–Shapley by gain over the feasible pairs; falls back to the max-gain assignment over
    feasible pairs (Hungarian) when the stable matching uses an infeasible pair."""
    cache = problem.__dict__.setdefault("_gs_cache", {})
    key = hash(np.packbits(tb.feasible).tobytes())
    if key in cache and np.array_equal(cache[key][0], tb.feasible):
        return None if cache[key][1] is None else cache[key][1].copy()
    asg = _start_matching(problem, tb)
    cache[key] = (tb.feasible.copy(), None if asg is None else asg.copy())
    return asg


def _start_matching(problem, tb):
    score = np.where(tb.feasible, np.log(problem.phi), np.log(problem.phi) - 1e6)
    asg = gale_shapley(score)
    n = np.arange(problem.N)
    if tb.feasible[n, asg].all():
        return asg
    cost = np.where(tb.feasible, -np.log(problem.phi), _BIG)
    rows, cols = linear_sum_assignment(cost)
    asg = cols[np.argsort(rows)]
    if not tb.feasible[n, asg].all():
        return None
    return asg


# ---------------------------------------------------------------------- power block
def power_step_exact(problem, asg, bits, tb=None, return_tau: bool = False):
    """Exact power block for a fixed matching and bits (convex 1-D search on the straggler time).

    Returns the powers (N,) or ``None`` when the matching cannot meet a deadline or battery.
    """
    tb = problem.tables(bits) if tb is None else tb
    n = np.arange(problem.N)
    if not tb.feasible[n, asg].all():
        return (None, None) if return_tau else None
    c, phi, p_hi, S = _gather(problem, tb, asg)
    D, plo = problem.deadline, problem.p_lo
    t_lb = c + S / problem.rate(phi, p_hi)
    tau_lb = float(np.max(t_lb))
    t_lo = c + S / problem.rate(phi, plo)
    tau_up = max(tau_lb, float(np.max(np.minimum(t_lo, D))))
    a0, b0 = problem.alpha0, problem.beta0

    def powers(tau):
        w = np.minimum(tau, D) - c
        return np.clip(problem.power_for_window(S, w, phi), plo, p_hi)

    def dJ(tau):
        w = np.minimum(tau, D) - c
        x = S * LN2 / (problem.B0 * w)
        preq = np.expm1(x) / phi
        g = (np.expm1(x) - x * np.exp(x)) / phi
        act = (tau < D) & (preq > plo)
        return a0 + b0 * float(np.sum(np.where(act, g, 0.0)))

    if b0 == 0.0 or dJ(tau_lb) >= 0.0:
        tau = tau_lb
    elif a0 == 0.0:
        tau = tau_up
    else:
        lo, hi = tau_lb, tau_up
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if dJ(mid) >= 0.0:
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-14 * hi:
                break
        tau = hi
    p = powers(tau)
    return (p, tau) if return_tau else p


def power_step_sca(problem, asg, bits, p0=None, tb=None, max_iter: int = 50, tol: float = 1e-9,
                   solver: str | None = None, return_trace: bool = False):
    """Power block by successive convex approximation (cvxpy).

    The upload energy ``e(p) = p S / r(p)`` is concave, so its tangent at the current power is an
    upper surrogate; each step minimizes ``α0 τ + β0 Σ [e(p^j) + e'(p^j)(p − p^j)]`` subject to
    ``c + S inv_pos(r(p)) ≤ τ``, the deadlines and ``p_lo ≤ p ≤ p_hi`` (units Mbit, MHz, s). The
    true objective never increases (majorization–minimization); a step that would raise it (solver
    inaccuracy) ends the iteration. Returns the powers (and the objective trace).
    """
    import cvxpy as cp

    tb = problem.tables(bits) if tb is None else tb
    n = np.arange(problem.N)
    if not tb.feasible[n, asg].all():
        return (None, []) if return_trace else None
    c, phi, p_hi, S = _gather(problem, tb, asg)
    D, plo = problem.deadline, problem.p_lo
    S_mb, B_mhz = S / 1e6, problem.B0 / 1e6
    a0, b0 = problem.alpha0, problem.beta0
    N = problem.N
    p = cp.Variable(N, name="power_w")
    tau = cp.Variable(name="tau_s")
    grad = cp.Parameter(N, name="energy_slope")      # β0 e'(p^j), scaled
    a_par = cp.Parameter(nonneg=True, name="time_weight")   # α0, scaled
    rate = B_mhz * cp.log(1 + cp.multiply(phi, p)) / LN2
    up = cp.multiply(S_mb, cp.inv_pos(rate))
    cons = [p >= plo, p <= p_hi, c + up <= tau]
    fin = np.isfinite(D)
    if fin.any():
        cons.append(c[fin] + up[fin] <= D[fin])
    prob = cp.Problem(cp.Minimize(a_par * tau + grad @ p), cons)

    def true_j(pp):
        r = problem.rate(phi, pp)
        t = c + S / r
        return a0 * float(np.max(t)) + b0 * float(np.sum(problem.e_cmp + pp * S / r))

    pj = np.clip(problem.p_max[n] if p0 is None else np.asarray(p0, dtype=float), plo, p_hi)
    jj = true_j(pj)
    trace = [jj]
    for _ in range(max_iter):
        r = problem.rate(phi, pj)
        dr = problem.B0 * phi / ((1 + phi * pj) * LN2)
        scale = 1.0 / max(jj, 1e-300)
        grad.value = b0 * scale * (S / r - pj * S * dr / r ** 2)
        a_par.value = a0 * scale
        try:
            prob.solve(solver=solver) if solver else prob.solve()
        except cp.error.SolverError as exc:  # pragma: no cover - numerical failure
            raise SolverError(f"SCA power step failed: {exc}") from exc
        if p.value is None or prob.status not in ("optimal", "optimal_inaccurate"):
            break
        pn = np.clip(np.asarray(p.value, dtype=float), plo, p_hi)
        jn = true_j(pn)
        if not jn < jj:
            break
        improve = (jj - jn) / max(abs(jj), 1e-300)
        pj, jj = pn, jn
        trace.append(jj)
        if improve <= tol:
            break
    return (pj, trace) if return_trace else pj


# ---------------------------------------------------------------------- matching block
def _device_tables(problem, tb, P):
    """Round time and energy of every device on every subchannel at powers P (N, K)."""
    S = tb.S[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = problem.rate(problem.phi, P)
        tu = S / r
        T = problem.c + tu
        E = problem.e_cmp[:, None] + P * tu
    ok = tb.feasible & (P <= tb.p_hi * (1 + 1e-12)) & (P >= problem.p_lo[:, None] * (1 - 1e-12)) \
        & (T <= problem.deadline[:, None] * (1 + 1e-12)) & (E <= problem.e_max[:, None] * (1 + 1e-12))
    return np.where(ok, T, np.inf), np.where(ok, E, np.inf)


def swap_matching(problem, asg, bits, P, tb=None, max_rounds: int | None = None, tol: float = 1e-12):
    """Swap matching at fixed powers ``P`` (N,) (each device keeps its power) or (N, K) (power
    per device and subchannel). Returns the new assignment and the number of exchanges.

    Each round first tries the straggler's own exchanges (O(K), the only ones that can lower
    the straggler time), then evaluates every exchange (O(N K)) and applies the best one, or a
    batch of disjoint energy-lowering exchanges that do not raise the straggler time.
    """
    tb = problem.tables(bits) if tb is None else tb
    N, K = problem.N, problem.K
    P = np.broadcast_to(np.asarray(P, dtype=float)[:, None] if np.ndim(P) == 1 else P, (N, K))
    T_all, E_all = _device_tables(problem, tb, P)
    R = problem.rounds(bits)
    a0, b0 = R * problem.alpha0, R * problem.beta0
    asg = np.asarray(asg, dtype=int).copy()
    n = np.arange(N)
    swaps = 0
    max_rounds = max_rounds if max_rounds is not None else 50 * N + 100

    def total(a):
        return a0 * float(np.max(T_all[n, a])) + b0 * float(np.sum(E_all[n, a]))

    def evaluate(rr, T, E, M, owner):
        """dU, new straggler time and dE of every move of the devices ``rr`` (rows) to every
        subchannel (an exchange with its owner, or a move to a free one)."""
        occ = owner >= 0
        oc = np.where(occ, owner, 0)
        ar = asg[rr]
        Tm_new = np.where(occ[None, :], T_all[oc[None, :], ar[:, None]], -np.inf)
        Em_new = np.where(occ[None, :], E_all[oc[None, :], ar[:, None]], 0.0)
        Em_cur = np.where(occ, E[oc], 0.0)[None, :]
        order = np.argsort(-T)[:3] if N > 3 else np.argsort(-T)
        tops = np.full(3, -np.inf)
        idx = np.full(3, -2)
        tops[:len(order)], idx[:len(order)] = T[order], order
        own_row = np.where(occ, owner, -3)[None, :]
        ncol = rr[:, None]
        c1 = (idx[0] != ncol) & (idx[0] != own_row)
        c2 = (idx[1] != ncol) & (idx[1] != own_row)
        ex = np.where(c1, tops[0], np.where(c2, tops[1], tops[2]))
        Tn_new = T_all[rr]
        newmax = np.maximum(ex, np.maximum(Tn_new, Tm_new))
        dE = E_all[rr] + Em_new - E[rr][:, None] - Em_cur
        feas = np.isfinite(Tn_new) & (np.isfinite(Tm_new) | ~occ[None, :])
        feas[np.arange(len(rr)), ar] = False
        with np.errstate(invalid="ignore"):
            dU = np.where(feas, a0 * (np.where(feas, newmax, M) - M) + b0 * np.where(feas, dE, 0.0),
                          np.inf)
        return dU, newmax, dE

    def apply(d, k, owner):
        m = owner[k]
        kd = asg[d]
        asg[d] = k
        if m >= 0:
            asg[m] = kd
        return m, kd

    U = total(asg)
    if not np.isfinite(U):
        return asg, 0
    for _ in range(max_rounds):
        T, E = T_all[n, asg], E_all[n, asg]
        M = float(np.max(T))
        owner = np.full(K, -1)
        owner[asg] = n
        thr = -tol * max(abs(U), 1e-300)
        # the straggler's moves first (cheap)
        st = np.array([int(np.argmax(T))])
        dU1, _, _ = evaluate(st, T, E, M, owner)
        k1 = int(np.argmin(dU1[0]))
        if dU1[0, k1] < thr:
            m, kd = apply(int(st[0]), k1, owner)
            Un = total(asg)
            if Un < U:
                U, swaps = Un, swaps + 1
                continue
            asg[st[0]] = kd       # numerical safety: undo and fall through to the full scan
            if m >= 0:
                asg[m] = k1
        dU, newmax, dE = evaluate(n, T, E, M, owner)
        flat = int(np.argmin(dU))
        best = float(dU.flat[flat])
        if not best < thr:
            break
        # batch: disjoint exchanges that lower energy and do not raise the straggler time
        cand = np.flatnonzero((dU < thr).ravel() & (newmax.ravel() <= M) & (dE.ravel() < 0))
        applied = False
        if cand.size > 1:
            cand = cand[np.argsort(dU.ravel()[cand], kind="stable")][:8 * N]
            used_dev = np.zeros(N, dtype=bool)
            used_ch = np.zeros(K, dtype=bool)
            new = asg.copy()
            cnt = 0
            for f in cand:
                d, k = divmod(int(f), K)
                m = owner[k]
                kd = asg[d]
                if used_dev[d] or used_ch[k] or used_ch[kd] or (m >= 0 and used_dev[m]):
                    continue
                new[d] = k
                if m >= 0:
                    new[m] = kd
                    used_dev[m] = True
                used_dev[d] = used_ch[k] = used_ch[kd] = True
                cnt += 1
            if cnt > 1:
                Un = total(new)
                if Un < U + best * 0.5:  # at least half the best single gain: keep the batch
                    asg[:] = new
                    U, swaps, applied = Un, swaps + cnt, True
        if not applied:
            d, k = divmod(flat, K)
            m, kd = apply(d, k, owner)
            Un = total(asg)
            if not Un < U:  # numerical safety: undo
                asg[d] = kd
                if m >= 0:
                    asg[m] = k
                break
            U = Un
            swaps += 1
    return asg, swaps


def hungarian_matching(problem, asg, p, bits, tb=None):
    """Exact matching for the energies at the current straggler time τ: device n on subchannel k
    uses the least power finishing by ``min(τ, deadline_n)``; pairs that cannot are excluded."""
    tb = problem.tables(bits) if tb is None else tb
    ev = problem._raw(asg, p, bits)
    tau = ev["t_round"]
    w = np.minimum(tau, problem.deadline)[:, None] - problem.c
    S = tb.S[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        pr = np.maximum(problem.power_for_window(S, w, problem.phi), problem.p_lo[:, None])
        ok = tb.feasible & (w > 0) & (pr <= tb.p_hi * (1 + 1e-12))
        pr = np.minimum(pr, tb.p_hi)
        E = pr * S / problem.rate(problem.phi, pr)
    cost = np.where(ok, E, _BIG)
    rows, cols = linear_sum_assignment(cost)
    new = cols[np.argsort(rows)]
    if not ok[np.arange(problem.N), new].all():
        return asg
    return new


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
    ev = problem._raw(asg, p, bits)
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
                R = int(np.ceil(s.conv_a / margin * (1 - 1e-12)))
                u = R * (problem.alpha0 * max(others, Td) + problem.beta0 * (float(np.sum(E)) - E[d] + Ed))
                if u < U * (1 - 1e-12):
                    bits[d], p[d], T[d], E[d], q[d], U = b, pd, Td, Ed, s.conv_c * float(_q([b])[0]), u
                    changed = True
        if not changed:
            break
    return U, p, bits


def _q(bits):
    from ..scenario_sflam import quantization_error
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
    ``(asg, p, bits, history, iterations)``; ``history[0]`` is the start's objective. With
    ``power_step="sca"``, a failed conic solve falls back to the exact power step (each failure's
    message appended to ``fallbacks``).
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
        from .sflam_exact import max_power_allocation, random_matching_allocation
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
