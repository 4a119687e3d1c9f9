"""The paper's ablations (ST-SFLora Fig. 8b) as baselines, sharing the alternating loop.

- ``fixed_power``: no power control, every device transmits at ``power_w`` (default p_max);
- ``equal_bandwidth``: no bandwidth allocation, ``W_tot / M`` each;
- ``all_tokens``: no token selection, every device uploads all N patch tokens;
- ``fixed_tokens``: a given common K for every device (TSFLora-style budgets), resources optimal.

A baseline whose fixed choice cannot be met raises :class:`InfeasibleError` naming the devices.
"""
from __future__ import annotations

import numpy as np

from ...errors import InfeasibleError, InvalidScenarioError
from ..registry import register
from .alternating import run_alternating

__all__ = ["fixed_power", "equal_bandwidth", "all_tokens", "fixed_tokens"]


def _finish(problem, out, name, detail):
    if out is None:
        raise InfeasibleError(f"{name}: {detail}", devices=list(map(int, problem.active)))
    k, w, p, history, it, converged = out
    return problem.make_solution(k, w, p, status="feasible", history=history, iterations=it,
                                 info={"converged": converged, "baseline": name})


@register("ste", "fixed_power", "ablation: no power control (every device at a fixed power)")
def fixed_power(problem, power_w=None, max_iter: int = 20, token_step: str = "closed_form"):
    """Bandwidth and tokens optimized, power fixed at ``power_w`` (W; default each device's p_max)."""
    p = problem.p_max.copy() if power_w is None else np.broadcast_to(
        np.asarray(power_w, dtype=float), (problem.M,)).copy()
    if np.any(p <= 0) or np.any(p > problem.p_max * (1 + 1e-12)):
        raise InvalidScenarioError("power_w must be in (0, p_max] for every device", field="power_w")
    out = run_alternating(problem, max_iter=max_iter, token_step=token_step, power_fixed=p)
    return _finish(problem, out, "fixed_power",
                   "at the fixed power some device cannot meet its energy or deadline limit at K_min "
                   "within the bandwidth budget")


@register("ste", "equal_bandwidth", "ablation: no bandwidth allocation (W_tot / M each)")
def equal_bandwidth(problem, max_iter: int = 20, token_step: str = "closed_form"):
    """Power and tokens optimized, bandwidth split equally among the admitted devices."""
    w = np.full(problem.M, problem.W_tot / problem.M * (1 - 1e-12))
    short = np.flatnonzero(problem.w_need_min > w)
    if short.size:
        d = problem.active[short]
        raise InfeasibleError(
            f"equal_bandwidth: {short.size} device(s) need more than W_tot/M = {w[0] / 1e6:.4g} MHz "
            f"at K_min: {', '.join(map(str, d))}", devices=list(map(int, d)),
            deficit={"bandwidth_hz": float(np.sum(problem.w_need_min[short] - w[short]))})
    out = run_alternating(problem, max_iter=max_iter, token_step=token_step, bandwidth_fixed=w)
    return _finish(problem, out, "equal_bandwidth", "equal shares are infeasible")


@register("ste", "fixed_tokens", "every device keeps the same K tokens; bandwidth and power optimal")
def fixed_tokens(problem, tokens: int = 64):
    """Common token budget ``tokens`` (clipped to nothing: it must lie in [K_min, N])."""
    k = int(tokens)
    if k != tokens or k < int(np.max(problem.k_lo)) or k > problem.N:
        raise InvalidScenarioError(
            f"tokens must be an integer in [{int(np.max(problem.k_lo))}, {problem.N}], got {tokens}",
            field="tokens")
    kk = np.full(problem.M, k)
    out = run_alternating(problem, max_iter=1, resource_step="joint", tokens_fixed=kk)
    if out is None:
        need_each = problem.w_min(kk, problem.tau_max)
        need = float(np.sum(need_each))
        alone = ~(need_each <= problem.W_tot)          # cannot send K even with all the bandwidth
        if alone.any():
            d = list(map(int, problem.active[alone]))
            raise InfeasibleError(
                f"fixed_tokens: K = {k} cannot be sent within the window of {len(d)} device(s) even "
                f"with all {problem.W_tot / 1e6:.6g} MHz: {', '.join(map(str, d))}",
                devices=d, deficit={"bandwidth_hz": need - problem.W_tot})
        raise InfeasibleError(
            f"fixed_tokens: K = {k} for every device needs {need / 1e6:.6g} MHz even with the longest "
            f"windows; the budget is {problem.W_tot / 1e6:.6g} MHz",
            devices=list(map(int, problem.active)), deficit={"bandwidth_hz": need - problem.W_tot})
    return _finish(problem, out, "fixed_tokens", "")


@register("ste", "all_tokens", "ablation: no token selection (every device uploads all N tokens)")
def all_tokens(problem):
    """Every admitted device uploads all N patch tokens; bandwidth and power optimal."""
    return fixed_tokens(problem, tokens=problem.N)
