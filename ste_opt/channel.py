"""Wireless channel: path loss, fading, Shannon rate, and the inverse problems (DESIGN §2).

All functions are vectorized over devices (numpy broadcasting). Units: Hz, W, W/Hz, s, bits.
The rate ``R(W, p) = W log2(1 + p h / (N0 W))`` is jointly concave in (W, p), increasing in
both, and bounded by ``p h / (N0 ln 2)`` as ``W -> inf``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import lambertw

__all__ = [
    "path_gain", "rayleigh_fading", "rate_bps", "rate_limit_bps", "log1p_root",
    "log1p_root_bisect", "min_bandwidth_hz", "min_bandwidth_hz_bisect", "min_power_w",
    "max_energy_power_w",
]

LN2 = float(np.log(2.0))


def path_gain(distance_m, exponent: float = 2.5, ref_loss_db: float = 0.0):
    """Large-scale channel power gain ``10^(-PL0/10) · d^(-exponent)`` (linear, <= 1)."""
    d = np.asarray(distance_m, dtype=float)
    return 10.0 ** (-ref_loss_db / 10.0) * d ** (-exponent)


def rayleigh_fading(rng: np.random.Generator, size) -> np.ndarray:
    """Rayleigh small-scale power gains ``|g|^2 ~ Exp(1)`` (mean 1)."""
    return rng.exponential(1.0, size=size)


def rate_bps(bandwidth_hz, power_w, gain, noise_psd_w_per_hz):
    """Shannon rate ``W log2(1 + p h / (N0 W))`` in bit/s; 0 where ``W == 0``."""
    w = np.asarray(bandwidth_hz, dtype=float)
    snr_hz = np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / noise_psd_w_per_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        r = w * np.log1p(snr_hz / w) / LN2
    return np.where(w > 0, np.nan_to_num(r, nan=0.0), 0.0)


def rate_limit_bps(power_w, gain, noise_psd_w_per_hz):
    """Supremum of the rate over bandwidth: ``p h / (N0 ln 2)`` (bit/s)."""
    return np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / (noise_psd_w_per_hz * LN2)


def log1p_root(c):
    """Positive root ``x`` of ``ln(1 + x) = c x`` for ``0 < c < 1`` (closed form, Lambert W).

    With ``y = 1 + x`` the equation is ``-c y e^{-c y} = -c e^{-c}``, so
    ``y = -W_{-1}(-c e^{-c}) / c``. Near ``c = 1`` the argument approaches the branch point
    ``-1/e`` where W loses precision; there (``c > 0.999``) the start is the series
    ``x ≈ 2 (1 - c) / c`` instead. Safeguarded Newton steps on ``g(x) = ln(1+x) - c x`` (positive
    below the root, negative above) polish both, and any entry whose residual stays large falls back
    to :func:`log1p_root_bisect`. Returns ``inf`` for ``c <= 0`` and ``nan`` for ``c >= 1``.
    """
    c = np.asarray(c, dtype=float)
    out = np.full(c.shape, np.nan)
    out = np.where(c <= 0, np.inf, out)
    ok = (c > 0) & (c < 1)
    if np.any(ok):
        cc = c[ok]
        with np.errstate(over="ignore", invalid="ignore"):
            y = -np.real(lambertw(-cc * np.exp(-cc), k=-1)) / cc
        near = cc > 0.999
        # ln(1+x)/x = 1 - x/2 + x^2/3 - ...; solving c = 1 - x/2 + x^2/3 for the small root gives
        # x = 0.75 (1 - sqrt(1 - 16 d / 3)) with d = 1 - c (valid for d < 3/16)
        d = 1.0 - cc
        series = 0.75 * (1.0 - np.sqrt(np.maximum(1.0 - 16.0 * d / 3.0, 0.0)))
        series = np.where(series > 0, series, 2.0 * d / cc)
        x = np.where(near | ~np.isfinite(y), series, y - 1.0)
        for _ in range(6):
            g = np.log1p(x) - cc * x
            dg = 1.0 / (1.0 + x) - cc
            with np.errstate(divide="ignore", invalid="ignore"):
                x_new = x - g / dg
            x = np.where(np.isfinite(x_new) & (x_new > 0), x_new, x)
        resid = np.abs(np.log1p(x) - cc * x) / np.maximum(cc * x, 1e-300)
        bad = ~(resid <= 1e-10)
        if np.any(bad):
            x[bad] = log1p_root_bisect(cc[bad])
        out[ok] = x
    return out if out.ndim else float(out)


def log1p_root_bisect(c, iters: int = 200):
    """Same root as :func:`log1p_root`, by vectorized bisection (the reference implementation)."""
    c = np.asarray(c, dtype=float)
    ok = (c > 0) & (c < 1)
    cs = np.where(ok, c, 0.5)
    lo = np.zeros_like(cs)
    hi = np.ones_like(cs)
    # ln(1+x) - c x is positive below the root and negative above it: grow hi until negative.
    for _ in range(2000):
        pos = np.log1p(hi) - cs * hi > 0
        if not pos.any():
            break
        hi = np.where(pos, hi * 2.0, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = np.log1p(mid) - cs * mid > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
        if np.all(hi - lo <= 1e-15 * hi):
            break
    out = np.where(ok, hi, np.where(c <= 0, np.inf, np.nan))
    return out if out.ndim else float(out)


def min_bandwidth_hz(rate_req_bps, power_w, gain, noise_psd_w_per_hz, safety: float = 1e-12):
    """Smallest bandwidth with ``R(W, p) >= rate_req`` (Hz); ``inf`` if beyond the rate limit.

    With ``a = p h / N0`` and ``x = a / W``, ``R = r`` reads ``ln(1+x) = c x`` with
    ``c = r ln2 / a``. The result is rounded up by ``safety`` (relative) so that the returned
    bandwidth always achieves the rate.
    """
    r = np.asarray(rate_req_bps, dtype=float)
    a = np.asarray(power_w, dtype=float) * np.asarray(gain, dtype=float) / noise_psd_w_per_hz
    with np.errstate(divide="ignore", invalid="ignore"):
        c = r * LN2 / a
    x = log1p_root(np.where(c > 0, c, 0.5))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = a / x * (1.0 + safety)
    w = np.where(c >= 1, np.inf, w)
    w = np.where(r <= 0, 0.0, w)
    w = np.where((a <= 0) & (r > 0), np.inf, w)
    return w if np.ndim(w) else float(w)


def min_bandwidth_hz_bisect(rate_req_bps, power_w, gain, noise_psd_w_per_hz, iters: int = 200):
    """Reference for :func:`min_bandwidth_hz`: bisection on ``W`` (vectorized)."""
    r = np.asarray(rate_req_bps, dtype=float)
    p = np.asarray(power_w, dtype=float)
    g = np.asarray(gain, dtype=float)
    r, p, g = np.broadcast_arrays(r, p, g)
    lim = rate_limit_bps(p, g, noise_psd_w_per_hz)
    feas = r < lim
    lo = np.zeros(r.shape)
    hi = np.where(feas, np.maximum(r, 1.0), 1.0)
    for _ in range(2000):
        short = feas & (rate_bps(hi, p, g, noise_psd_w_per_hz) < r)
        if not short.any():
            break
        hi = np.where(short, hi * 2.0, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        enough = rate_bps(mid, p, g, noise_psd_w_per_hz) >= r
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid)
    w = np.where(feas, hi, np.inf)
    return np.where(r <= 0, 0.0, w)


def min_power_w(rate_req_bps, bandwidth_hz, gain, noise_psd_w_per_hz):
    """Smallest power with ``R(W, p) >= rate_req``: ``(2^{r/W} - 1) N0 W / h`` (W)."""
    r = np.asarray(rate_req_bps, dtype=float)
    w = np.asarray(bandwidth_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = np.expm1(r / w * LN2) * noise_psd_w_per_hz * w / np.asarray(gain, dtype=float)
    return np.where(r <= 0, 0.0, np.where(w > 0, p, np.inf))


def max_energy_power_w(bits, bandwidth_hz, gain, noise_psd_w_per_hz, energy_j, bisect: bool = False):
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
    root = log1p_root_bisect(c) if bisect else log1p_root(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = root / phi * (1.0 - 1e-12)
    p = np.where(c >= 1, 0.0, p)
    p = np.where(s <= 0, np.inf, p)
    p = np.where(w <= 0, 0.0, p)
    return p
