"""ST-SFLora's alternating algorithm (docs/ste.md), vectorized over devices.

Each outer iteration runs three blocks on the active devices:

0. **tokens** first, from the paper's start (equal bandwidth, power from the energy limit);
1. **power** (W, K fixed): ``p = min(p_max, p̄)`` with p̄ the root of the energy limit
   ``p S / R(W, p) = E`` (:func:`ste_opt.model.channel.max_energy_power_w`);
2. **bandwidth** (p, K fixed): bisection on the straggler time τ; each device's least bandwidth
   meeting ``R ≥ max(S/(τ - offset), p S/E, S/(T_stand - T0))`` is found in closed form; the spare
   bandwidth is then handed out in proportion;
3. **tokens** (W, p fixed): the largest K under energy, deadline and τ (the paper's Eq. 41), or,
   with ``token_step="exact"``, the best straggler time among all breakpoints ``τ = offset +
   β (k + c0) / R_m``; ``token_step="knapsack"`` instead re-chooses all tokens jointly with their
   bandwidth (knapsack at the current τ, then the exact resource step).

Every block keeps the allocation feasible and does not lower the STE, so ``history`` is
non-decreasing; the loop stops when nothing changes. ``resource_step="joint"`` replaces blocks 1–2
by the exact joint step for fixed tokens (least τ with Σ W_min(K, τ) ≤ W_tot), and ``"cvxpy"`` by
the convex program :meth:`STEProblem.resource_model` (then rounded to a feasible point).
"""
from __future__ import annotations

import numpy as np

from ...errors import SolverError
from ...model import channel
from ...model.allocation import hand_out_spare, least_feasible_tau
from ..registry import register
from .mckp import knapsack_token_step

__all__ = ["alternating", "run_alternating", "joint_resource_step", "cvxpy_resource_step"]

_EPS = 1e-12


def _rates(problem, w, p):
    return channel.rate_bps(w, p, problem.gain, problem.noise)


def _ste(problem, k, w, p):
    r = _rates(problem, w, p)
    with np.errstate(divide="ignore"):
        tu = np.where(r > 0, problem.payload_bits(k) / np.where(r > 0, r, 1.0), np.inf)
    tau = float(np.max(tu + problem.tau_offset))
    num = float(np.sum(problem.WF[np.arange(problem.M), k]))
    return (num / tau if np.isfinite(tau) and tau > 0 else 0.0), tau


def _feasible(problem, k, w, p, rtol=1e-9) -> bool:
    r = _rates(problem, w, p)
    if np.any(r <= 0):
        return False
    tu = problem.payload_bits(k) / r
    return bool(np.sum(w) <= problem.W_tot * (1 + rtol)
                and np.all(p <= problem.p_max * (1 + rtol))
                and np.all(p * tu + problem.e_comp <= (problem.e_up + problem.e_comp) * (1 + rtol))
                and np.all(problem.t0 + tu <= problem.t_stand * (1 + rtol)))


def joint_resource_step(problem, k):
    """Exact bandwidth–power step for fixed tokens; spare bandwidth handed out in proportion.

    Returns ``(bandwidth, power)`` of the active devices or ``None`` if the tokens do not fit.
    """
    tau, w, p = problem.min_straggler_time(k)
    if not np.isfinite(tau):
        return None
    return hand_out_spare(w, problem.W_tot), p


def cvxpy_resource_step(problem, k, solver: str | None = None):
    """Joint step through :meth:`STEProblem.resource_model` (cvxpy); its τ is then turned into a
    feasible allocation with the whole-window formula (bumped up until the budget holds)."""
    import cvxpy as cp

    # The conic solver can fail on badly scaled data (e.g. a strong channel, p h / N0 ~ 1e13 Hz,
    # with the bandwidth in MHz): retry with the bandwidth unit set to the mean share; if that
    # fails too, return None so that the caller keeps its current (feasible) resources.
    for scale_hz in (1e6, problem.W_tot / problem.M):
        prob = problem.resource_model(k, scale_hz=scale_hz)
        try:
            prob.solve(solver=solver) if solver else prob.solve()
        except cp.error.SolverError:
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and prob.ste.tau_s.value is not None:
            break
    else:
        return None
    tau = float(prob.ste.tau_s.value)
    for bump in (1e-9, 1e-7, 1e-5, 1e-3):
        t = tau * (1 + bump)
        w = problem.w_min(k, t)
        if np.sum(w) <= problem.W_tot:
            return hand_out_spare(w, problem.W_tot), problem.power_for(t)
    return None


def _power_step(problem, k, w):
    p_bar = channel.max_energy_power_w(problem.payload_bits(k), w, problem.gain, problem.noise,
                                       problem.e_up)
    return np.minimum(problem.p_max, p_bar)


def _bandwidth_step(problem, k, p, tau_hi, rel_tol=1e-10):
    """Least τ with Σ W_min(τ; p fixed) ≤ W_tot by bisection; spare bandwidth handed out."""
    s = problem.payload_bits(k)
    off = problem.tau_offset
    base = np.maximum(p * s / problem.e_up, s / problem.t_max)

    def need(tau):
        t = tau - off
        with np.errstate(divide="ignore", invalid="ignore"):
            req = np.maximum(base, np.where(t > 0, s / np.where(t > 0, t, 1.0), np.inf))
        return channel.min_bandwidth_hz(req, p, problem.gain, problem.noise)

    if not np.sum(need(tau_hi)) <= problem.W_tot:
        return None
    r_all = channel.rate_bps(problem.W_tot, p, problem.gain, problem.noise)
    lo = min(float(np.max(off + s / r_all)), tau_hi)
    hi = least_feasible_tau(lambda tau: np.sum(need(tau)) <= problem.W_tot, lo, tau_hi, rel_tol)
    return hand_out_spare(need(hi), problem.W_tot)


def _token_caps(problem, w, p):
    """Largest K under energy and deadline for fixed (W, p), per device (float, before floor)."""
    r = _rates(problem, w, p)
    beta, c0 = problem.beta, problem.c0
    with np.errstate(divide="ignore", invalid="ignore"):
        e_cap = np.where(p > 0, problem.e_up * r / (p * beta), np.inf) - c0
    l_cap = problem.t_max * r / beta - c0
    return np.minimum(np.minimum(e_cap, l_cap), problem.N), r


def _token_step_closed(problem, k, w, p, tau):
    caps, r = _token_caps(problem, w, p)
    t_cap = (tau - problem.tau_offset) * r / problem.beta - problem.c0
    knew = np.floor(np.minimum(caps, t_cap) * (1 - 1e-12)).astype(int)
    return np.clip(np.maximum(knew, k), problem.k_lo, problem.N)


def best_tau_tokens(problem, rates, caps):
    """Exact token step for fixed rates: choose the straggler time among all breakpoints.

    Device m keeps ``K_m(τ) = min(cap_m, floor((τ - offset_m) R_m / β) - c0)`` tokens; the STE
    ``Σ w f_m(K_m(τ)) / τ`` only changes at breakpoints ``τ = offset_m + β (k + c0) / R_m``, so the
    best τ is one of them (vectorized: sort all breakpoints, cumulative sum of the increments).
    Returns the token vector.
    """
    beta, c0, off = problem.beta, problem.c0, problem.tau_offset
    kcap = np.floor(caps * (1 - 1e-12)).astype(int)
    kcap = np.clip(kcap, problem.k_lo, problem.N)
    k0 = problem.k_lo
    tau0 = float(np.max(off + beta * (k0 + c0) / rates))
    k_at0 = np.clip(np.floor((tau0 - off) * rates / beta * (1 + 1e-12)).astype(int) - c0, k0, kcap)
    # breakpoints of each device for k = k_at0+1 .. kcap
    counts = kcap - k_at0
    total = int(counts.sum())
    rows = np.arange(problem.M)
    num0 = float(np.sum(problem.WF[rows, k_at0]))
    if total == 0:
        return k_at0
    dev = np.repeat(rows, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    kk = np.repeat(k_at0, counts) + 1 + (np.arange(total) - start)
    tb = off[dev] + beta * (kk + c0) / rates[dev]
    inc = problem.WF[dev, kk] - problem.WF[dev, kk - 1]
    order = np.argsort(tb, kind="stable")
    tb_s = tb[order]
    val = (num0 + np.cumsum(inc[order])) / tb_s
    # only the last breakpoint of a tie counts (all increments at that τ included)
    last = np.r_[tb_s[1:] != tb_s[:-1], True]
    val = np.where(last, val, -np.inf)
    j = int(np.argmax(val))
    if val[j] <= num0 / tau0:
        return k_at0
    tau_star = tb_s[j]
    chosen = order[: j + 1]
    kout = k_at0.copy()
    np.maximum.at(kout, dev[chosen], kk[chosen])
    del tau_star
    return kout


def run_alternating(problem, *, max_iter: int = 20, token_step: str = "closed_form",
                    resource_step: str = "paper", power_fixed=None, bandwidth_fixed=None,
                    tokens_fixed=None, rel_tol: float = 1e-9, init: str = "equal"):
    """Core loop shared by ``alternating`` and the ablation baselines.

    ``power_fixed`` / ``bandwidth_fixed`` / ``tokens_fixed`` (arrays over the active devices)
    disable the corresponding block. Returns ``(k, w, p, history, iterations, converged)``.
    """
    M = problem.M
    if token_step not in ("closed_form", "exact", "knapsack"):
        raise SolverError(f"token_step must be 'closed_form', 'exact' or 'knapsack', got {token_step!r}")
    if resource_step not in ("paper", "joint", "cvxpy"):
        raise SolverError(f"resource_step must be 'paper', 'joint' or 'cvxpy', got {resource_step!r}")
    k = problem.k_lo.copy() if tokens_fixed is None else np.asarray(tokens_fixed, dtype=int).copy()
    # ---- feasible start: the paper's (equal bandwidth, power from the energy limit) when it is
    # feasible, else the exact joint step at K_min
    w = p = None
    if bandwidth_fixed is not None:
        w = np.asarray(bandwidth_fixed, dtype=float).copy()
        p = _power_step(problem, k, w) if power_fixed is None else np.asarray(power_fixed, float).copy()
    elif power_fixed is not None:
        p = np.asarray(power_fixed, dtype=float).copy()
        w0 = np.full(M, problem.W_tot / M * (1 - 1e-12))
        if _feasible(problem, k, w0, p):
            w = w0
        else:
            w = _bandwidth_step(problem, k, p, problem.tau_max)
            if w is None:
                return None
    else:
        w0 = np.full(M, problem.W_tot / M * (1 - 1e-12))
        p0 = _power_step(problem, k, w0)
        if init == "equal" and _feasible(problem, k, w0, p0):
            w, p = w0, p0
        else:
            start = joint_resource_step(problem, k)
            if start is None:
                return None
            w, p = start
    obj, tau = _ste(problem, k, w, p)
    history = [obj]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        k_old, tau_old, obj_old = k.copy(), tau, obj
        # ---- block 3 (tokens) for the current resources
        if tokens_fixed is None and token_step == "knapsack":
            # joint token step: knapsack at τ (and nearby τ), with its own exact resources
            step = knapsack_token_step(problem, tau)
            if step is not None and _feasible(problem, step[0], step[1], step[2]) \
                    and _ste(problem, step[0], step[1], step[2])[0] >= obj * (1 - 1e-12):
                k, w, p = step[0], step[1], step[2]
            obj, tau = _ste(problem, k, w, p)
        elif tokens_fixed is None:
            if token_step == "exact":
                caps, r = _token_caps(problem, w, p)
                cand_k = best_tau_tokens(problem, r, caps)
            else:
                cand_k = _token_step_closed(problem, k, w, p, tau)
            if _feasible(problem, cand_k, w, p) and _ste(problem, cand_k, w, p)[0] >= obj * (1 - 1e-12):
                k = cand_k
            obj, tau = _ste(problem, k, w, p)
        # ---- blocks 1-2 (power, bandwidth) for the current tokens
        cand_w, cand_p = w, p
        if power_fixed is None and bandwidth_fixed is None and resource_step != "paper":
            step = (joint_resource_step(problem, k) if resource_step == "joint"
                    else cvxpy_resource_step(problem, k))
            if step is not None:
                cand_w, cand_p = step
        else:
            if power_fixed is None:
                cand_p = _power_step(problem, k, cand_w)
            if bandwidth_fixed is None:
                _, tau_now = _ste(problem, k, cand_w, cand_p)
                nw = _bandwidth_step(problem, k, cand_p, tau_now)
                if nw is not None:
                    cand_w = nw
        if _feasible(problem, k, cand_w, cand_p) and _ste(problem, k, cand_w, cand_p)[0] >= obj * (1 - 1e-12):
            w, p = cand_w, cand_p
        obj, tau = _ste(problem, k, w, p)
        history.append(obj)
        if (np.array_equal(k, k_old) and abs(tau - tau_old) <= rel_tol * tau_old
                and abs(obj - obj_old) <= rel_tol * max(obj_old, 1e-300)):
            converged = True
            break
    return k, w, p, history, it, converged


@register("ste", "alternating",
          "ST-SFLora's alternating algorithm: power (energy root), bandwidth (τ bisection), tokens "
          "(closed form, exact breakpoints, or joint knapsack); vectorized", bound="none")
def alternating(problem, max_iter: int = 20, token_step: str = "closed_form",
                resource_step: str = "paper", init: str = "equal", rel_tol: float = 1e-9):
    """Solve the STE problem with the paper's alternating algorithm.

    Parameters
    ----------
    max_iter : int
        Outer iterations at most (the paper reports convergence within 5).
    token_step : {"closed_form", "exact", "knapsack"}
        Paper's Eq. 41 (largest K under the current straggler time), or the best straggler time
        among all breakpoints, or ``"knapsack"``: every device's tokens re-chosen jointly by the
        multiple-choice knapsack at (and near) the current straggler time, with the exact resource
        step (:func:`ste_opt.solvers.ste.mckp.knapsack_token_step`). The per-device steps cannot
        move bandwidth between devices and stall 1–10 % below the optimum on the paper preset;
        the knapsack step brings the certified gap to ~1e-4 (``benchmarks/ste_solvers.py``).
    resource_step : {"paper", "joint", "cvxpy"}
        Power-then-bandwidth blocks (paper), the exact joint step for fixed tokens, or the convex
        program of :meth:`STEProblem.resource_model`.
    init : {"equal", "joint"}
        Start from the paper's equal bandwidth split (power from the energy limit; used when it is
        feasible at K_min) or from the exact joint resource step at K_min.
    """
    if init not in ("equal", "joint"):
        raise SolverError(f"init must be 'equal' or 'joint', got {init!r}")
    out = run_alternating(problem, max_iter=max_iter, token_step=token_step,
                          resource_step=resource_step, rel_tol=rel_tol, init=init)
    if out is None:
        raise SolverError("alternating could not find a feasible start (this should not happen after "
                          "admission; please report the instance)")
    k, w, p, history, it, converged = out
    return problem.make_solution(
        k, w, p, status="feasible", history=history, iterations=it,
        info={"converged": converged, "token_step": token_step, "resource_step": resource_step},
        message="converged" if converged else f"stopped after max_iter={max_iter}")
