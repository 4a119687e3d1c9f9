"""Channel formulas and unit conversions against hand-worked numbers, scipy's brentq, and the
bisection and Lambert-W references of ``channel_reference`` (the library has one root finder).

Hand-worked reference instance: N0 = 1e-20 W/Hz (−170 dBm/Hz), h = 1e-13, p = 0.1 W, so
``a = p h / N0 = 1e6 Hz``; at W = 1 MHz the SNR is 1 and R = 1e6 · log2(2) = 1 Mbit/s.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from channel_reference import log1p_root_bisect, log1p_root_lambertw, min_bandwidth_hz_bisect
from scipy.optimize import brentq

from ste_opt import units
from ste_opt.model import channel

N0 = 1e-20
H = 1e-13
P = 0.1


# ---------------------------------------------------------------------------- units
def test_dbm_watt_hand_values():
    assert units.dbm_to_w(30.0) == pytest.approx(1.0)
    assert units.dbm_to_w(0.0) == pytest.approx(1e-3)
    assert units.dbm_to_w(23.0) == pytest.approx(0.19952623, rel=1e-7)
    assert units.w_to_dbm(0.2) == pytest.approx(23.0103, abs=1e-4)
    assert units.w_to_dbm(1e-3) == pytest.approx(0.0, abs=1e-12)
    # thermal noise PSD: -174 dBm/Hz = 10^(-20.4) W/Hz = 3.981e-21 W/Hz
    assert units.noise_psd_w_per_hz(-174.0) == pytest.approx(3.98107171e-21, rel=1e-8)
    assert units.noise_psd_w_per_hz(-170.0) == pytest.approx(1e-20, rel=1e-12)


def test_db_linear_and_bits():
    assert units.db_to_linear(20.0) == pytest.approx(100.0)
    assert units.db_to_linear(-32.0) == pytest.approx(6.309573e-4, rel=1e-6)
    assert units.linear_to_db(1000.0) == pytest.approx(30.0)
    x = np.array([-7.5, 0.0, 13.25])
    np.testing.assert_allclose(units.w_to_dbm(units.dbm_to_w(x)), x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(units.linear_to_db(units.db_to_linear(x)), x, rtol=0, atol=1e-12)
    assert units.bits_to_bytes(16) == 2.0
    assert units.bytes_to_bits(3) == 24.0
    assert units.bits_to_mib(8 * 2**20) == 1.0


# ---------------------------------------------------------------------------- path gain, rate
def test_path_gain_hand_values():
    # 10^(-32/10) * 100^(-2.5) = 6.3096e-4 * 1e-5
    assert channel.path_gain(100.0, 2.5, 32.0) == pytest.approx(6.309573e-9, rel=1e-6)
    assert channel.path_gain(1.0, 2.5, 0.0) == pytest.approx(1.0)
    assert channel.path_gain(10.0, 2.0, 10.0) == pytest.approx(1e-3)
    g = channel.path_gain(np.array([10.0, 20.0]), 2.5)
    assert g[1] / g[0] == pytest.approx(2 ** -2.5)


def test_rate_hand_values():
    assert channel.rate_bps(1e6, P, H, N0) == pytest.approx(1e6, rel=1e-12)       # SNR 1
    assert channel.rate_bps(1e6 / 3, P, H, N0) == pytest.approx(2e6 / 3, rel=1e-12)  # SNR 3
    assert channel.rate_bps(1e6, P, 3 * H, N0) == pytest.approx(2e6, rel=1e-12)   # SNR 3
    assert channel.rate_bps(0.0, P, H, N0) == 0.0
    assert channel.rate_limit_bps(P, H, N0) == pytest.approx(1e6 / math.log(2), rel=1e-12)
    # the rate approaches the limit from below as W grows
    r = channel.rate_bps(np.array([1e6, 1e8, 1e10]), P, H, N0)
    assert np.all(np.diff(r) > 0) and r[-1] < channel.rate_limit_bps(P, H, N0)
    assert r[-1] == pytest.approx(channel.rate_limit_bps(P, H, N0), rel=1e-3)


def test_rayleigh_fading_seeded_mean_one():
    a = channel.rayleigh_fading(np.random.default_rng(3), 20000)
    b = channel.rayleigh_fading(np.random.default_rng(3), 20000)
    np.testing.assert_array_equal(a, b)
    assert a.min() > 0 and abs(a.mean() - 1.0) < 0.03


# ---------------------------------------------------------------------------- inverse problems
def test_min_bandwidth_hand_value():
    # R(1 MHz) = 1 Mbit/s exactly, so 1 Mbit/s needs 1 MHz (rounded up by the 2e-12 safety)
    assert channel.min_bandwidth_hz(1e6, P, H, N0) == pytest.approx(1e6, rel=1e-11)
    assert channel.min_bandwidth_hz(2e6 / 3, P, H, N0) == pytest.approx(1e6 / 3, rel=1e-11)
    assert channel.min_bandwidth_hz(0.0, P, H, N0) == 0.0
    # at or above the rate limit p h / (N0 ln 2) no bandwidth suffices
    assert channel.min_bandwidth_hz(1.5e6, P, H, N0) == np.inf
    assert channel.min_bandwidth_hz(1e3, 0.0, H, N0) == np.inf


@pytest.mark.parametrize("frac", [1e-6, 1e-3, 0.1, 0.5, 0.9, 0.99, 0.999])
def test_min_bandwidth_closed_form_vs_bisection_vs_brentq(frac):
    lim = channel.rate_limit_bps(P, H, N0)
    r = frac * lim
    w_closed = channel.min_bandwidth_hz(r, P, H, N0)
    w_bis = float(min_bandwidth_hz_bisect(r, P, H, N0))

    def f(w):
        return w * math.log2(1 + P * H / (N0 * w)) - r

    lo = 1e-9
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    w_ref = brentq(f, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)
    assert w_closed == pytest.approx(w_ref, rel=1e-9)
    assert w_bis == pytest.approx(w_ref, rel=1e-9)
    # the closed form is rounded up: it always achieves the rate
    assert channel.rate_bps(w_closed, P, H, N0) >= r


def test_min_bandwidth_vectorized_matches_scalar():
    rng = np.random.default_rng(0)
    g = 10 ** rng.uniform(-16, -9, 50)
    p = rng.uniform(0.01, 0.2, 50)
    lim = channel.rate_limit_bps(p, g, N0)
    r = rng.uniform(0.01, 0.98, 50) * lim
    w = channel.min_bandwidth_hz(r, p, g, N0)
    w_b = min_bandwidth_hz_bisect(r, p, g, N0)
    np.testing.assert_allclose(w, w_b, rtol=1e-9)
    np.testing.assert_allclose(channel.rate_bps(w, p, g, N0), r, rtol=1e-9)


def test_log1p_root_vs_bisection_and_lambert_w():
    c = np.array([1e-8, 1e-3, 0.2, 0.5, math.log(2), 0.9, 0.999])
    x = channel.log1p_root(c)
    np.testing.assert_allclose(x, log1p_root_bisect(c), rtol=1e-9)
    np.testing.assert_allclose(x, log1p_root_lambertw(c), rtol=1e-9)
    np.testing.assert_allclose(np.log1p(x), c * x, rtol=1e-9)
    assert channel.log1p_root(math.log(2)) == pytest.approx(1.0, rel=1e-12)
    assert channel.log1p_root(0.0) == np.inf
    assert np.isnan(channel.log1p_root(1.0))


def test_log1p_root_wide_range_vs_bisection():
    c = np.r_[np.geomspace(1e-9, 0.9, 200), 1 - np.geomspace(1e-3, 1e-10, 20)]
    x = channel.log1p_root(c)
    assert np.allclose(x[:200], log1p_root_bisect(c[:200]), rtol=1e-9)
    # relative residual of the root through g(x)/(x g'(x)) near c -> 1
    g = np.log1p(x) - c * x
    assert np.all(np.abs(g) <= 1e-12 * x * np.abs(1 / (1 + x) - c) * 1e3 + 1e-300)
    assert np.isnan(channel.log1p_root(np.array([1.0, 2.0]))).all()


def test_min_power_hand_values():
    # (2^{r/W} - 1) N0 W / h: r = W gives (2 - 1) * 1e-20 * 1e6 / 1e-13 = 0.1 W
    assert channel.min_power_w(1e6, 1e6, H, N0) == pytest.approx(0.1, rel=1e-12)
    assert channel.min_power_w(2e6, 1e6, H, N0) == pytest.approx(0.3, rel=1e-12)
    assert channel.min_power_w(0.0, 1e6, H, N0) == 0.0
    assert channel.min_power_w(1.0, 0.0, H, N0) == np.inf
    # inverse of the rate
    w, r = 3.7e5, 8.1e5
    p = channel.min_power_w(r, w, H, N0)
    assert channel.rate_bps(w, p, H, N0) == pytest.approx(r, rel=1e-12)


def test_energy_limit_power_hand_value():
    # S = 1 Mbit at W = 1 MHz and p = 0.1 W takes 1 s (R = 1 Mbit/s): energy 0.1 J.
    # So with E = 0.1 J the largest admissible power is exactly 0.1 W.
    assert channel.max_energy_power_w(1e6, 1e6, H, N0, 0.1) == pytest.approx(0.1, rel=1e-9)
    # no bits: energy never binds; budget below the p -> 0 limit S ln2 N0 / h: zero power
    assert channel.max_energy_power_w(0.0, 1e6, H, N0, 0.1) == np.inf
    e_floor = 1e6 * math.log(2) * N0 / H            # 0.0693 J
    assert channel.max_energy_power_w(1e6, 1e6, H, N0, 0.99 * e_floor) == 0.0


@pytest.mark.parametrize("bits,bw,gain,energy", [
    (1e6, 1e6, 1e-13, 0.1), (3.2e8, 5e6, 1e-11, 0.8), (2.4e7, 1e5, 5e-11, 0.05), (1e9, 2e7, 1e-11, 0.8),
])
def test_energy_limit_power_vs_brentq(bits, bw, gain, energy):
    def e_minus_budget(p):
        r = bw * math.log1p(p * gain / (N0 * bw)) / math.log(2)
        return p * bits / r - energy

    p_closed = float(channel.max_energy_power_w(bits, bw, gain, N0, energy))
    hi = 1e-6
    while e_minus_budget(hi) < 0:
        hi *= 2
    assert e_minus_budget(1e-12) < 0         # the p -> 0 energy is within budget
    p_ref = brentq(e_minus_budget, 1e-12, hi, xtol=1e-300, rtol=1e-14, maxiter=500)
    assert p_closed == pytest.approx(p_ref, rel=1e-8)
    # the returned power respects the budget (it is rounded down)
    assert e_minus_budget(p_closed) <= 1e-12 * energy


def test_log1p_root_near_branch_point_regression():
    """Near c = 1 the Lambert-W argument approaches -1/e; the root must stay exact there
    (a rate within 0.005 % of the rate limit once gave a bandwidth reaching only 93 % of it)."""
    cs = np.array([0.99, 0.999, 0.9999, 0.99996, 0.999999, 1 - 1e-9])
    x = channel.log1p_root(cs)
    assert np.all(np.abs(np.log1p(x) - cs * x) <= 1e-12 * cs * x)
    assert np.allclose(x[2:], 2 * (1 - cs[2:]), rtol=1e-3)  # first-order series, c >= 0.9999
    h, n0, p = 1e-10, 4e-21, 0.2
    lim = channel.rate_limit_bps(p, h, n0)
    for frac in (1 - 1e-3, 1 - 5e-5, 1 - 1e-7):
        w = channel.min_bandwidth_hz(lim * frac, p, h, n0)
        assert channel.rate_bps(w, p, h, n0) >= lim * frac * (1 - 1e-12)


def test_min_power_and_whole_window_power():
    # the least power inverts the rate; whole-window power min(p_max, E/t), nan without a window
    w, r = 2e5, 3e5
    p = channel.min_power_w(r, w, H, N0)
    assert p == pytest.approx((2 ** (r / w) - 1) * N0 * w / H, rel=1e-12)
    np.testing.assert_allclose(channel.whole_window_power_w(np.array([0.2, 0.2]), np.array([0.8, 0.1]),
                                                            np.array([2.0, 2.0])), [0.2, 0.05])
    assert np.isnan(channel.whole_window_power_w(0.2, 0.8, 0.0))
    assert channel.shannon_rate_bps(1e6, 3.0) == pytest.approx(2e6, rel=1e-12)
    assert channel.min_snr(2e6, 1e6) == pytest.approx(3.0, rel=1e-12)


def test_compatibility_alias_is_the_model_module():
    import ste_opt

    assert ste_opt.channel.min_bandwidth_hz is channel.min_bandwidth_hz


def test_log1p_root_full_precision_on_a_dense_grid():
    """The table-started Newton (2 steps) keeps full precision: 1e-13 against bisection."""
    c = np.geomspace(1e-12, 0.99, 2000)
    x = channel.log1p_root(c)
    np.testing.assert_allclose(x, log1p_root_bisect(c), rtol=1e-13)
    # entries off the table (c within 1e-7 of 1, or astronomically small) take the old start
    far = np.array([1e-60, 1e-300, 1 - 1e-8])
    g = np.log1p(channel.log1p_root(far)) - far * channel.log1p_root(far)
    assert np.all(np.abs(g) <= 1e-12 * far * channel.log1p_root(far))
