"""Pricing a fixed plan: what a static schedule's round costs on the round's scenario.

Every device transmits at ``p_max``; the bandwidth is split to minimize the straggler's round time
``max_m (T0_m + T^U_m)`` (least τ for fixed payloads, then the spare bandwidth handed out),
energy ``p_max · T^U_m``; deadlines and energy budgets are not enforced but their violations are
counted.
"""
from __future__ import annotations

import numpy as np

from ... import channel

__all__ = ["evaluate_static_round"]


def evaluate_static_round(scenario, bits_per_device, *, rel_tol: float = 1e-10) -> dict:
    """Price uploads of given sizes on a round's scenario without admission or limits.

    Every device transmits at ``p_max``; the bandwidth is split to minimize the round's straggler
    time ``τ = max_m (T0_m + T^U_m)`` (bisection on τ; device m gets the least bandwidth sending
    its bits within ``τ - T0_m``). Returns per-device ``latency`` (s), ``uplink_time`` (s),
    ``energy`` (J, ``p_max T^U``), ``bandwidth`` (Hz), the straggler time ``tau`` and the counts
    of deadline (``T0 + T^U > T_stand``) and energy (``> E_max``) violations.
    """
    s = scenario
    bits = np.asarray(bits_per_device, dtype=float)
    t0 = s.compute_time_s
    p = s.p_max_w
    noise = s.noise_psd_w_hz

    def need(tau):
        t = tau - t0
        with np.errstate(divide="ignore", invalid="ignore"):
            w = channel.min_bandwidth_hz(bits / np.where(t > 0, t, 1.0), p, s.gain, noise)
        return np.where(t > 0, w, np.inf)

    cap = channel.rate_limit_bps(p, s.gain, noise)
    lo = float(np.max(t0 + bits / cap))
    hi = max(lo * 2.0, lo + 1.0)
    while np.sum(need(hi)) > s.bandwidth_hz:
        hi *= 2.0
    for _ in range(200):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if np.sum(need(mid)) <= s.bandwidth_hz:
            hi = mid
        else:
            lo = mid
    w = need(hi)
    w = w * (s.bandwidth_hz / np.sum(w))            # hand out the spare bandwidth
    rate = channel.rate_bps(w, p, s.gain, noise)
    tu = bits / rate
    lat = t0 + tu
    energy = p * tu
    return {"tau": float(np.max(lat)), "latency": lat, "uplink_time": tu, "energy": energy,
            "bandwidth": w, "power": p.copy(),
            "deadline_violations": int(np.sum(lat > s.standing_time_s * (1 + 1e-9))),
            "energy_violations": int(np.sum(energy > s.energy_max_j * (1 + 1e-9)))}
