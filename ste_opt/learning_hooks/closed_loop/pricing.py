"""Pricing a fixed plan: what a static schedule's round costs on the round's scenario.

Every device transmits at ``p_max``; the bandwidth is split to minimize the straggler's round time
``max_m (T0_m + T^U_m)`` (least τ for fixed payloads, then the spare bandwidth handed out),
energy ``p_max · T^U_m``; deadlines and energy budgets are not enforced but their violations are
counted. Every formula comes from :mod:`ste_opt.model` (least bandwidth, bisection on τ, spare
hand-out); only the choice of power and window is this module's.
"""
from __future__ import annotations

import numpy as np

from ...model import channel
from ...model.allocation import UplinkWindows, hand_out_spare, least_feasible_tau

__all__ = ["evaluate_static_round"]


def evaluate_static_round(scenario, bits_per_device, *, rel_tol: float = 1e-10) -> dict:
    """Price uploads of given sizes on a round's scenario without admission or limits.

    Every device transmits at ``p_max``; the bandwidth is split to minimize the round's straggler
    time ``τ = max_m (T0_m + T^U_m)`` (bisection on τ, :func:`~ste_opt.model.allocation.least_feasible_tau`;
    device m gets the least bandwidth sending its bits within ``τ - T0_m``, then the spare
    bandwidth is handed out, :func:`~ste_opt.model.allocation.hand_out_spare`). Returns per-device
    ``latency`` (s), ``uplink_time`` (s), ``energy`` (J, ``p_max T^U``), ``bandwidth`` (Hz), the
    straggler time ``tau`` and the counts of deadline (``T0 + T^U > T_stand``) and energy
    (``> E_max``) violations.
    """
    s = scenario
    bits = np.asarray(bits_per_device, dtype=float)
    t0 = s.compute_time_s
    p = s.p_max_w
    noise = s.noise_psd_w_hz
    unbounded = np.full(np.shape(t0), np.inf)
    # no energy budget: the whole-window power is p_max; no standing time: the window is τ - T0
    uploads = UplinkWindows(offset_s=t0, cap_s=unbounded, p_max_w=p, energy_j=unbounded, gain=s.gain,
                            noise_psd_w_hz=noise, budget_hz=s.bandwidth_hz)

    def need(tau):
        return uploads.least_bandwidth_hz(bits, tau)

    cap = channel.rate_limit_bps(p, s.gain, noise)
    lo = float(np.max(t0 + bits / cap))
    hi = max(lo * 2.0, lo + 1.0)
    while np.sum(need(hi)) > s.bandwidth_hz:
        hi *= 2.0
    tau = least_feasible_tau(lambda m: np.sum(need(m)) <= s.bandwidth_hz, lo, hi, rel_tol)
    w = hand_out_spare(need(tau), s.bandwidth_hz)
    rate = channel.rate_bps(w, p, s.gain, noise)
    tu = bits / rate
    lat = t0 + tu
    energy = p * tu
    return {"tau": float(np.max(lat)), "latency": lat, "uplink_time": tu, "energy": energy,
            "bandwidth": w, "power": p.copy(),
            "deadline_violations": int(np.sum(lat > s.standing_time_s * (1 + 1e-9))),
            "energy_violations": int(np.sum(energy > s.energy_max_j * (1 + 1e-9)))}
