"""Independent references for the channel inverses (tests only): the root of ln(1+x) = c x by
bisection and by Lambert W, and the least bandwidth by bisection on the rate."""
from __future__ import annotations

import numpy as np
from scipy.special import lambertw

LN2 = float(np.log(2.0))


def rate_bps(w, p, g, n0):
    w = np.asarray(w, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = w * np.log1p(np.asarray(p) * np.asarray(g) / (n0 * w)) / LN2
    return np.where(w > 0, np.nan_to_num(r, nan=0.0), 0.0)


def log1p_root_bisect(c, iters: int = 200):
    """Positive root of ``ln(1 + x) = c x`` (0 < c < 1) by vectorized bisection."""
    c = np.asarray(c, dtype=float)
    ok = (c > 0) & (c < 1)
    cs = np.where(ok, c, 0.5)
    lo = np.zeros_like(cs)
    hi = np.ones_like(cs)
    for _ in range(2000):                 # ln(1+x) - c x > 0 below the root: grow hi
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
    return np.where(ok, hi, np.where(c <= 0, np.inf, np.nan))


def log1p_root_lambertw(c):
    """The same root in closed form: ``x = -W_{-1}(-c e^{-c}) / c - 1`` (imprecise near c = 1)."""
    c = np.asarray(c, dtype=float)
    return -np.real(lambertw(-c * np.exp(-c), k=-1)) / c - 1.0


def min_bandwidth_hz_bisect(rate_req_bps, power_w, gain, n0, iters: int = 200):
    """Least W with ``R(W, p) >= r`` by bisection on W (``inf`` at or beyond the rate limit)."""
    r, p, g = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (rate_req_bps, power_w, gain)))
    lim = p * g / (n0 * LN2)
    feas = r < lim
    lo = np.zeros(r.shape)
    hi = np.where(feas, np.maximum(r, 1.0), 1.0)
    for _ in range(2000):
        short = feas & (rate_bps(hi, p, g, n0) < r)
        if not short.any():
            break
        hi = np.where(short, hi * 2.0, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        enough = rate_bps(mid, p, g, n0) >= r
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid)
    return np.where(r <= 0, 0.0, np.where(feas, hi, np.inf))
