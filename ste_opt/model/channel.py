"""Wireless channel: path loss, fading, Shannon rate and its inverses (docs/MODEL.md §2).

All functions are vectorized over devices (numpy broadcasting). Units: Hz, W, W/Hz, s, bits.
The rate ``R(W, p) = W log2(1 + p h / (N0 W))`` is jointly concave in (W, p), increasing in
both, and bounded by ``p h / (N0 ln 2)`` as ``W -> inf``.

This module is the one home of: the rate, its limit, the least bandwidth for a rate
(:func:`min_bandwidth_hz`), the least power for a rate (:func:`min_power_w`), the largest power
within an energy budget (:func:`max_energy_power_w`) and the whole-window power rule
``min(p_max, E / t)`` (:func:`whole_window_power_w`). The three inverses share one root finder,
:func:`log1p_root`; the tests check it against bisection, scipy's brentq and Lambert W.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "LN2", "BANDWIDTH_SAFETY", "path_gain", "rayleigh_fading", "shannon_rate_bps", "rate_bps",
    "rate_limit_bps", "log1p_root", "min_bandwidth_hz", "min_snr", "min_power_w",
    "max_energy_power_w", "whole_window_power_w",
]

LN2 = float(np.log(2.0))
#: relative round-up of every least bandwidth, so that the returned bandwidth achieves the rate
BANDWIDTH_SAFETY = 2e-12


def path_gain(distance_m, exponent: float = 2.5, ref_loss_db: float = 0.0):
    """Large-scale channel power gain ``10^(-PL0/10) · d^(-exponent)`` (linear, <= 1)."""
    d = np.asarray(distance_m, dtype=float)
    return 10.0 ** (-ref_loss_db / 10.0) * d ** (-exponent)


def rayleigh_fading(rng: np.random.Generator, size) -> np.ndarray:
    """Rayleigh small-scale power gains ``|g|^2 ~ Exp(1)`` (mean 1)."""
    return rng.exponential(1.0, size=size)


def shannon_rate_bps(bandwidth_hz, snr):
    """``W log2(1 + snr)`` in bit/s (``snr`` linear, already divided by the noise in W)."""
    return bandwidth_hz * np.log1p(snr) / LN2


def rate_bps(bandwidth_hz, power_w, gain, noise_psd_w_per_hz):
    """Shannon rate ``W log2(1 + p h / (N0 W))`` in bit/s; 0 where ``W == 0``."""
    w = np.asarray(bandwidth_hz, dtype=float)
    snr_hz = np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / noise_psd_w_per_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        r = shannon_rate_bps(w, snr_hz / w)
    return np.where(w > 0, np.nan_to_num(r, nan=0.0), 0.0)


def rate_limit_bps(power_w, gain, noise_psd_w_per_hz):
    """Supremum of the rate over bandwidth: ``p h / (N0 ln 2)`` (bit/s)."""
    return np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / (noise_psd_w_per_hz * LN2)


def log1p_root(c) -> np.ndarray:
    """Positive root ``x`` of ``ln(1 + x) = c x`` for ``0 < c < 1`` (vectorized Newton).

    With ``s = ln(1 + x)`` the equation reads ``q(s) = ln(expm1(s) / s) + ln c = 0``; q is convex
    and increasing. Newton starts from ``ln s`` interpolated on a fine table of ``ln(-ln c)``
    (within ~1e-5) and 2 steps reach full precision (tested at 1e-13 relative against bisection;
    outside the table, 2 more steps from ``s0 = min(-2 ln c, ...)``). Entries with
    ``c > 1 - 1e-3`` (``s`` below ~2e-3) use series near ``s = 0`` to keep full relative accuracy
    when ``c -> 1`` (where the Lambert-W form ``x = -W_{-1}(-c e^{-c}) / c - 1`` loses digits).
    ``inf`` for ``c <= 0``, ``nan`` for ``c >= 1``. Processed in chunks (large tables stay in
    cache).
    """
    c = np.asarray(c, dtype=float)
    c_hi = float(c.max()) if c.size else 0.5
    allok = bool(c.size == 0 or (c.min() > 0 and c_hi < 1))      # (False with nan)
    ok = None if allok else (c > 0) & (c < 1)
    cc = (c if allok else np.where(ok, c, 0.5)).reshape(-1)
    x = np.empty_like(cc)
    step = 1 << 16
    for i in range(0, cc.size, step):
        x[i:i + step] = _log1p_root_plain(cc[i:i + step])
    if not allok or c_hi > 1 - 1e-3:
        near = cc > 1 - 1e-3
        if near.any():
            x[near] = _log1p_root_series(cc[near])
    x = x.reshape(c.shape)
    return x if allok else np.where(ok, x, np.where(c <= 0, np.inf, np.nan))


def _newton_s(s, l1, steps):
    """``steps`` Newton steps on ``q(s) = ln(expm1(s)/s) − l1`` (in place)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for _ in range(steps):
            em = np.expm1(s)
            q = em / s
            np.log(q, out=q)
            q -= l1
            den = 1.0 / s
            np.subtract(1.0, den, out=den)
            den += 1.0 / em
            q /= den
            s -= q
    return s


def _start_s(l1):
    """A start right of the root, within 40 % (the bound used before the table below)."""
    return np.minimum(2.0 * l1, l1 + 2.0 * np.log1p(l1) + 1.0)


# ln s against u = ln l1 on a fine grid (s = ln(1 + x), l1 = −ln c): linear interpolation starts
# Newton within ~1e-5 (relative), so 2 steps reach full precision; computed here, at import.
_U0, _U1, _NU = -16.0, 4.5, 2048
_U_GRID = np.linspace(_U0, _U1, _NU + 1)
_LS_GRID = np.log(_newton_s(_start_s(np.exp(_U_GRID)), np.exp(_U_GRID), 8))
_LS_STEP = np.append(np.diff(_LS_GRID), 0.0)


def _log1p_root_plain(c):
    l1 = -np.log(c)                                    # > 0
    with np.errstate(divide="ignore"):
        u = np.log(l1)
    pos = (u - _U0) * (_NU / (_U1 - _U0))             # position on the uniform grid
    out = None
    if not (pos.size == 0 or (pos.min() >= 0 and pos.max() <= _NU)):
        out = ~((pos >= 0) & (pos <= _NU))            # (c within 1e-7 of 1, or below e^-90)
        pos[out] = 0.0
    k = pos.astype(np.intp)
    pos -= k
    pos *= _LS_STEP[k]
    pos += _LS_GRID[k]
    s = np.exp(pos, out=pos)
    if out is not None:
        s[out] = _newton_s(_start_s(l1[out]), l1[out], 2)
    return np.expm1(_newton_s(s, l1, 2))


def _log1p_root_series(c):
    l1 = -np.log(c)
    s = np.minimum(2.0 * l1, l1 + 2.0 * np.log1p(l1) + 1.0)
    for _ in range(5):
        small = s < 1e-2
        ss = np.where(small, 1.0, s)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            em = np.expm1(ss)
            q = np.where(small, s / 2 + s * s / 24 - s ** 4 / 2880, np.log(em / ss)) - l1
            dq = np.where(small, 0.5 + s / 12 - s ** 3 / 720, 1.0 + 1.0 / em - 1.0 / ss)
        s_new = s - q / dq
        s = np.where(np.isfinite(s_new) & (s_new > 0), s_new, s)
    return np.expm1(s)


def min_bandwidth_hz(rate_req_bps, power_w, gain, noise_psd_w_per_hz,
                     safety: float = BANDWIDTH_SAFETY):
    """Smallest bandwidth with ``R(W, p) >= rate_req`` (Hz); ``inf`` if beyond the rate limit.

    With ``a = p h / N0`` and ``x = a / W``, ``R = r`` reads ``ln(1+x) = c x`` with
    ``c = r ln2 / a`` (:func:`log1p_root`). The result is rounded up by ``safety`` (relative) so
    that the returned bandwidth always achieves the rate. 0 where ``rate_req <= 0``.
    """
    r = np.asarray(rate_req_bps, dtype=float)
    a = np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / noise_psd_w_per_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        c = r * LN2 / a
    x = log1p_root(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = a / x
    w *= 1.0 + safety
    if not (c.size and c.min() > 0 and c.max() < 1):           # (also with nan)
        w = np.where((c > 0) & (c < 1), w, np.inf)
        w = np.where(r <= 0, 0.0, w)
    return w if np.ndim(w) else float(w)


def min_snr(rate_req_bps, bandwidth_hz):
    """Least SNR ``2^{r/W} - 1`` giving rate ``r`` on ``W`` Hz (``inf`` on overflow)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.expm1(np.asarray(rate_req_bps, dtype=float) / np.asarray(bandwidth_hz, dtype=float) * LN2)


def min_power_w(rate_req_bps, bandwidth_hz, gain, noise_psd_w_per_hz):
    """Smallest power with ``R(W, p) >= rate_req``: ``(2^{r/W} - 1) N0 W / h`` (W)."""
    r = np.asarray(rate_req_bps, dtype=float)
    w = np.asarray(bandwidth_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = min_snr(r, w) * noise_psd_w_per_hz * w / np.asarray(gain, dtype=float)
    return np.where(r <= 0, 0.0, np.where(w > 0, p, np.inf))


def whole_window_power_w(p_max_w, energy_j, window_s):
    """Power of an upload that uses its whole window ``t``: ``min(p_max, E / t)`` (W).

    Sending S bits within t seconds at this power needs the least bandwidth (the upload energy
    ``p S / R`` is increasing in p, so the energy limit caps p at ``E / t``). ``nan`` where
    ``t <= 0`` (no window).
    """
    t = np.asarray(window_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(p_max_w, energy_j / np.where(t > 0, t, np.nan))


def max_energy_power_w(bits, bandwidth_hz, gain, noise_psd_w_per_hz, energy_j):
    """Largest power whose upload energy ``p S / R(W, p)`` stays within ``energy_j`` (W).

    The energy of sending ``S`` bits is increasing in ``p``, so the feasible powers form
    ``[0, p_bar]`` where ``ln(1 + phi p) = kappa p`` with ``phi = h/(N0 W)`` and
    ``kappa = S ln2 / (E W)``: ``p_bar = x / phi`` with ``x`` the root for ``c = kappa/phi``.
    Returns ``inf`` when the energy never binds (``S = 0``) and ``0`` when even ``p -> 0``
    costs more than the budget (``c >= 1``, i.e. ``S ln2 N0 / h > E``).
    """
    s = np.asarray(bits, dtype=float)
    w = np.asarray(bandwidth_hz, dtype=float)
    g = np.asarray(gain, dtype=float)
    e = np.asarray(energy_j, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = g / (noise_psd_w_per_hz * w)
        kappa = s * LN2 / (e * w)
        c = kappa / phi
    root = log1p_root(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = root / phi * (1.0 - 1e-12)
    p = np.where(c >= 1, 0.0, p)
    p = np.where(s <= 0, np.inf, p)
    p = np.where(w <= 0, 0.0, p)
    return p
