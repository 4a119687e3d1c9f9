"""SFLAM's matching block: the Gale–Shapley start, swap matching at fixed powers, and the exact
assignment (Hungarian) of the least energies at the current straggler time."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...problems.sflam import gale_shapley
from .power import BIG_COST

__all__ = ["start_matching", "swap_matching", "hungarian_matching"]


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
    cost = np.where(tb.feasible, -np.log(problem.phi), BIG_COST)
    rows, cols = linear_sum_assignment(cost)
    asg = cols[np.argsort(rows)]
    if not tb.feasible[n, asg].all():
        return None
    return asg


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
    tau = problem.evaluate_unchecked(asg, p, bits)["t_round"]
    E, _, ok = problem.least_energy_table(tb, np.minimum(tau, problem.deadline)[:, None] - problem.c)
    cost = np.where(ok, E, BIG_COST)
    rows, cols = linear_sum_assignment(cost)
    new = cols[np.argsort(rows)]
    if not ok[np.arange(problem.N), new].all():
        return asg
    return new
