"""Bandwidth and power of uploads that share one budget (docs/MODEL.md §3), on arrays.

Device m sends ``S_m`` bits within its upload window ``t_m(τ) = min(τ − offset_m, cap_m)`` where
τ is the straggler time (``offset`` = the compute time T0 when the round time counts, 0 when only
the uplink counts; ``cap`` = standing time − T0). Using the whole window at the whole-window power
``p̂ = min(p_max, E/t)`` needs the least bandwidth ``W_min_m(S, τ)``, convex increasing in S and
non-increasing in τ. This module is the one home of:

- :class:`UplinkWindows`: windows, whole-window power, the least-bandwidth table and its slope in τ,
  and the least straggler time for fixed payloads (:meth:`UplinkWindows.least_straggler_time`);
- :func:`least_feasible_tau`: the bisection on τ shared by every "least τ that fits" search;
- :func:`hand_out_spare`: spare bandwidth handed out in proportion;
- :func:`admit`: which devices can meet their limits alone (all bandwidth, their fewest bits).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .channel import min_bandwidth_hz, rate_bps, whole_window_power_w

__all__ = ["UplinkWindows", "least_feasible_tau", "hand_out_spare", "admit", "SPARE_MARGIN"]

#: relative margin left unassigned when the spare bandwidth is handed out (floating-point rounding)
SPARE_MARGIN = 1e-12


def least_feasible_tau(fits: Callable, lo, hi, rel_tol: float, max_iter: int = 200,
                       bracket: bool = False):
    """Least τ in ``(lo, hi]`` with ``fits(τ)`` true, by bisection; ``fits(hi)`` must hold.

    ``fits`` is monotone (false below the answer, true above). ``lo``/``hi`` may be arrays (one
    search per entry, ``fits`` vectorized): the loop runs until every bracket is within ``rel_tol``.
    Returns the feasible end ``hi`` (float, or array for array input), or ``(lo, hi)`` with
    ``bracket=True`` (``lo`` is infeasible unless it is the initial ``lo``).
    """
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    scalar = hi.ndim == 0
    for _ in range(max_iter):
        if np.all(hi - lo <= rel_tol * hi):
            break
        mid = 0.5 * (lo + hi)
        ok = fits(float(mid) if scalar else mid)
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    if scalar:
        return (float(lo), float(hi)) if bracket else float(hi)
    return (lo, hi) if bracket else hi


def hand_out_spare(bandwidth_hz, budget_hz: float) -> np.ndarray:
    """Scale bandwidths up in proportion so that they use the budget (less a 1e-12 margin)."""
    w = np.asarray(bandwidth_hz, dtype=float)
    total = float(np.sum(w))
    if total <= 0:
        return w
    w = w * (budget_hz / total) * (1 - SPARE_MARGIN)
    if float(np.sum(w)) > budget_hz:
        w = w * (1 - SPARE_MARGIN)
    return w


@dataclass(frozen=True)
class UplinkWindows:
    """The admitted devices' uploads at the whole-window power (arrays of shape (M,)).

    offset_s : the part of the straggler time before the upload (T0, or 0)
    cap_s : longest upload window (standing time − T0) (s)
    p_max_w, energy_j : power limit (W) and energy available for the upload (J)
    gain : channel power gain h; noise_psd_w_hz : N0 (W/Hz); budget_hz : W_tot (Hz)
    """

    offset_s: np.ndarray
    cap_s: np.ndarray
    p_max_w: np.ndarray
    energy_j: np.ndarray
    gain: np.ndarray
    noise_psd_w_hz: float
    budget_hz: float

    @property
    def tau_max(self) -> float:
        """Straggler time beyond which no window grows: ``max_m (offset + cap)``."""
        return float(np.max(self.offset_s + self.cap_s))

    def window_s(self, tau) -> np.ndarray:
        """Upload windows ``min(τ − offset, cap)`` (s); <= 0 means impossible at τ."""
        return np.minimum(np.asarray(tau, dtype=float) - self.offset_s, self.cap_s)

    def power_w(self, tau) -> np.ndarray:
        """Whole-window power ``min(p_max, E/t)`` at τ (W; nan where the window is empty)."""
        return whole_window_power_w(self.p_max_w, self.energy_j, self.window_s(tau))

    def least_bandwidth_hz(self, bits, tau, rows=None) -> np.ndarray:
        """``W_min`` (Hz) to send ``bits`` within the windows at τ at the whole-window power.

        ``bits`` has shape (M,) (one payload per device) or (M, L) / (1, L) (a table of payloads:
        L levels per device); ``tau`` is a scalar or, for a table, an (L,) array (one τ per
        column). ``rows`` selects a subset of devices (then ``bits`` has that many rows).
        ``inf`` where the payload cannot be sent within the window.
        """
        sl = slice(None) if rows is None else rows
        s = np.asarray(bits, dtype=float)
        col = (slice(None), None) if s.ndim == 2 else (slice(None),)
        t = np.minimum(np.asarray(tau, dtype=float) - self.offset_s[sl][col], self.cap_s[sl][col])
        allpos = bool(t.size == 0 or t.min() > 0)
        ts = t if allpos else np.where(t > 0, t, 1.0)
        p_hat = np.minimum(self.p_max_w[sl][col], self.energy_j[sl][col] / ts)
        w = min_bandwidth_hz(s / ts, p_hat, self.gain[sl][col], self.noise_psd_w_hz)
        return w if allpos else np.where(t > 0, w, np.inf)

    def least_bandwidth_slope(self, tau: float, W, rows=None) -> np.ndarray:
        """Left derivative ``∂W_min/∂τ`` (Hz/s, ≤ 0) at τ of the table ``W = least_bandwidth_hz(.., τ)``
        (of the devices ``rows``, when given).

        ``W_min(S, ·)`` is convex and non-increasing in τ, so ``W(τ') ≥ W(τ) + (τ − τ')|slope|`` for
        every ``τ' ≤ τ``: the tangent is a valid lower bound on any interval ending at τ. With the
        energy limit binding the root scales as ``W ∝ 1/t`` (slope ``−W/t``); at full power,
        implicit differentiation of ``R(W, p) = S/t`` gives
        ``−W ln(1+y) / (t (ln(1+y) − y/(1+y)))``, ``y = p h/(N0 W)``.
        """
        sl = slice(None) if rows is None else rows
        cap, e, pm = self.cap_s[sl], self.energy_j[sl], self.p_max_w[sl]
        t_raw = tau - self.offset_s[sl]
        growing = (t_raw > 0) & (t_raw <= cap)                   # window still growing left of τ
        t = np.where(t_raw > 0, np.minimum(t_raw, cap), 1.0)
        energy = pm > e / t                                      # energy limit binds (p = E/t)
        p_hat = np.minimum(pm, e / t)
        a = (p_hat * self.gain[sl] / self.noise_psd_w_hz)[:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = a / W
            ly = np.log1p(y)
            den = ly - y / (1 + y)
            small = y < 1e-4
            if small.any():             # series: ln(1+y) - y/(1+y) = y²/2 - 2y³/3 + ...
                ys = y[small]
                den[small] = ys * ys / 2 - 2 * ys ** 3 / 3
            full = W * ly / den
        slope = np.where(energy[:, None], W, full) / t[:, None]
        slope = np.where(growing[:, None] & np.isfinite(W), slope, 0.0)
        return -slope

    def least_straggler_time(self, bits, rel_tol: float = 1e-12, tau_hi: float | None = None):
        """Least τ with ``Σ_m W_min_m(S_m, τ) ≤ W_tot`` for payloads ``bits`` (M,).

        Newton on ``g(τ) = Σ W_min(τ) − W_tot`` (convex, non-increasing: from the feasible side
        the iterates increase monotonically to the root), then a bisection bracket to ``rel_tol``.
        Returns ``(tau, bandwidth)`` (the whole-window bandwidths at τ, spare left unassigned) or
        ``(inf, None)`` if the payloads do not fit even at the largest τ.
        """
        s = np.asarray(bits, dtype=float)[:, None]

        def need(tau):
            return self.least_bandwidth_hz(s, tau)[:, 0]

        hi = self.tau_max if tau_hi is None else min(float(tau_hi), self.tau_max)
        w_hi = need(hi)
        if not np.sum(w_hi) <= self.budget_hz:
            return np.inf, None
        lo = float(np.max(self.offset_s + s[:, 0] / rate_bps(
            self.budget_hz, self.p_max_w, self.gain, self.noise_psd_w_hz)))
        lo = min(lo, hi)
        x = hi
        for _ in range(30):
            w = need(x)
            g = float(np.sum(w)) - self.budget_hz
            if not np.isfinite(g):
                break
            d = float(np.sum(self.least_bandwidth_slope(x, w[:, None])))
            if d >= 0:
                break
            x_new = max(x - g / d, lo)
            if abs(x_new - x) <= 1e-13 * x:
                x = x_new
                break
            x = x_new
        for bump in (1e-13, 1e-12, 1e-10, 1e-8):
            t = min(x * (1 + bump), hi)
            w = need(t)
            if np.sum(w) <= self.budget_hz:
                # x is (up to rounding) left of the root: bracket [x, t]
                lo = min(max(lo, x * (1 - 1e-13)), t)
                hi, w_hi = t, w
                break
        tau = least_feasible_tau(lambda m: np.sum(need(m)) <= self.budget_hz, lo, hi, rel_tol)
        return tau, (w_hi if tau == hi else need(tau))


def admit(bits_min, window_s, p_max_w, energy_j, gain, noise_psd_w_hz: float, budget_hz: float):
    """Devices that can send ``bits_min`` within ``window_s`` alone (whole budget, whole window).

    Returns ``(need_hz, power_w, admitted)``: the least bandwidth at the whole-window power
    (``inf`` where the window or the energy is empty, or the rate limit is too low), that power,
    and ``need_hz <= budget_hz``.
    """
    t = np.asarray(window_s, dtype=float)
    e = np.asarray(energy_j, dtype=float)
    ok = (e > 0) & (t > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_hat = np.minimum(p_max_w, np.where(ok, e / np.where(ok, t, 1.0), 0.0))
        need = np.where(ok, min_bandwidth_hz(np.where(ok, bits_min / np.where(ok, t, 1.0), 0.0), p_hat,
                                             gain, noise_psd_w_hz), np.inf)
    return need, p_hat, ok & (need <= budget_hz)
