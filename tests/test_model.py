"""ste_opt.model against hand values and independent references (brentq, finite differences)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from ste_opt.errors import InvalidScenarioError
from ste_opt.model import allocation, convergence, payload
from ste_opt.model.allocation import UplinkWindows

N0 = 1e-20


def _wmin_brentq(bits, t, p, g):
    """Least W with W log2(1 + p g / (N0 W)) t = bits (brentq; independent of the model)."""
    def f(w):
        return w * math.log2(1 + p * g / (N0 * w)) * t - bits
    if bits / t >= p * g / (N0 * math.log(2)):
        return math.inf                       # beyond the rate limit
    hi = 1.0
    while f(hi) < 0:
        hi *= 2
    return brentq(f, 1e-12, hi, rtol=1e-15, xtol=1e-300)


def _uplink():
    return UplinkWindows(offset_s=np.array([0.5, 1.0, 0.0]), cap_s=np.array([4.0, 3.0, 5.0]),
                         p_max_w=np.array([0.2, 0.1, 0.2]), energy_j=np.array([0.3, 1.0, 0.5]),
                         gain=np.array([1e-13, 3e-13, 5e-14]), noise_psd_w_hz=N0, budget_hz=3e6)


# ---------------------------------------------------------------------------- allocation
def test_least_feasible_tau_scalar_vector_and_bracket():
    root = math.sqrt(2.0)
    tau = allocation.least_feasible_tau(lambda x: x * x >= 2.0, 0.0, 4.0, rel_tol=1e-14)
    assert root <= tau <= root * (1 + 1e-13)
    roots = np.array([0.3, 1.7, 2.9])
    lo, hi = allocation.least_feasible_tau(lambda x: x >= roots, np.zeros(3), np.full(3, 4.0),
                                           rel_tol=1e-12, bracket=True)
    assert np.all(lo < roots) and np.all(hi >= roots) and np.all(hi - lo <= 1e-12 * hi)


def test_hand_out_spare_is_proportional_and_within_budget():
    w = allocation.hand_out_spare(np.array([1.0, 3.0]), 8.0)
    np.testing.assert_allclose(w, [2.0, 6.0], rtol=1e-11)
    assert w.sum() <= 8.0 and w[1] / w[0] == pytest.approx(3.0, rel=1e-15)
    np.testing.assert_array_equal(allocation.hand_out_spare(np.zeros(2), 5.0), [0.0, 0.0])


def test_window_and_whole_window_power_hand_values():
    u = _uplink()
    np.testing.assert_allclose(u.window_s(2.0), [1.5, 1.0, 2.0])
    np.testing.assert_allclose(u.window_s(10.0), [4.0, 3.0, 5.0])            # capped
    np.testing.assert_allclose(u.power_w(2.0), [0.2, 0.1, 0.2])              # E/t above p_max
    np.testing.assert_allclose(u.power_w(10.0), [0.075, 0.1, 0.1])           # E/t binds
    assert u.tau_max == pytest.approx(5.0)
    assert np.isnan(u.power_w(0.7)[1])                                        # no window yet


def test_least_bandwidth_vs_brentq_and_table_shapes():
    u = _uplink()
    bits = np.array([2e5, 3e5, 1e5])
    tau = 2.0
    w = u.least_bandwidth_hz(bits, tau)
    t, p = u.window_s(tau), u.power_w(tau)
    ref = [_wmin_brentq(bits[m], t[m], p[m], u.gain[m]) for m in range(3)]
    np.testing.assert_allclose(w, ref, rtol=1e-9)
    assert np.all(w >= ref)                                                   # rounded up
    table = u.least_bandwidth_hz(np.array([[1e5, 2e5, 3e5]]), tau)            # shared levels
    assert table.shape == (3, 3) and np.all(np.diff(table, axis=1) > 0)
    assert np.all(np.isinf(u.least_bandwidth_hz(bits, 0.4)[:2]))             # windows empty


def test_least_bandwidth_slope_vs_finite_difference():
    u = _uplink()
    bits = np.array([[2e5], [3e5], [1e5]])
    for tau in (1.8, 3.0, 4.2):
        W = u.least_bandwidth_hz(bits, tau)
        d = u.least_bandwidth_slope(tau, W)[:, 0]
        h = 1e-6 * tau
        fd = (u.least_bandwidth_hz(bits, tau)[:, 0] - u.least_bandwidth_hz(bits, tau - h)[:, 0]) / h
        np.testing.assert_allclose(d, fd, rtol=1e-4, atol=1e-3)


def test_least_straggler_time_vs_brentq():
    u = _uplink()
    bits = np.array([2e5, 3e5, 1e5])
    tau, w = u.least_straggler_time(bits)

    def excess(x):
        t, p = u.window_s(x), u.power_w(x)
        return sum(_wmin_brentq(bits[m], t[m], p[m], u.gain[m]) for m in range(3)) - u.budget_hz

    lo = max(u.offset_s + bits / (u.p_max_w * u.gain / (N0 * math.log(2)))) * (1 + 1e-6)
    assert excess(lo) > 0 > excess(u.tau_max)
    ref = brentq(excess, lo, u.tau_max, rtol=1e-14)
    assert tau == pytest.approx(ref, rel=1e-9)
    assert w.sum() <= u.budget_hz
    assert u.least_straggler_time(bits * 1e3)[0] == np.inf


def test_admit_hand_cases():
    need, p, ok = allocation.admit(np.array([1e5, 1e5, 1e5]), np.array([2.0, 0.0, 2.0]),
                                   np.array([0.2, 0.2, 0.2]), np.array([1.0, 1.0, 0.0]),
                                   np.array([1e-13, 1e-13, 1e-13]), N0, 1e6)
    assert ok.tolist() == [True, False, False]
    assert need[0] == pytest.approx(_wmin_brentq(1e5, 2.0, 0.2, 1e-13), rel=1e-9)
    assert np.isinf(need[1:]).all()
    _, _, ok_small = allocation.admit(np.array([1e5]), np.array([2.0]), np.array([0.2]),
                                      np.array([1.0]), np.array([1e-13]), N0, 1e3)
    assert not ok_small[0]


# ---------------------------------------------------------------------------- payload
def test_payload_rules():
    assert payload.tokens_on_wire(None, 196) == (196, 1)
    assert payload.tokens_on_wire(64, 196) == (64, 2)
    # B (K + c0) D q + B (K + c0) 32 side bits: 2 * 66 * 8 * 4 + 2 * 66 * 32
    assert payload.payload_bits(2, 64, 8, 4) == 2 * 66 * 8 * 4 + 2 * 66 * 32
    assert payload.payload_bits(2, 64, 8, 32) == 2 * 66 * 8 * 32
    assert payload.valid_bit_width([1, 8, 16, 32, 0, 17, 31, 8.5]).tolist() == \
        [True, True, True, True, False, False, False, False]
    assert payload.check_bit_width(8) == 8
    with pytest.raises(InvalidScenarioError) as ei:
        payload.check_bit_width(24, field="compression.bits")
    assert ei.value.field == "compression.bits" and "1..16 or 32" in str(ei.value)


# ---------------------------------------------------------------------------- convergence
def test_convergence_hand_values():
    np.testing.assert_allclose(convergence.quantization_error([1, 2, 4]), [1.0, 1 / 9, 1 / 225])
    assert convergence.convergence_margin([2, 2], 0.05, 0.5, 0.2) == pytest.approx(0.15 - 0.5 / 9)
    assert convergence.rounds_from_margin(10.0, 0.1) == 100           # exact ratio not bumped
    assert convergence.rounds_from_margin(10.0, 0.3) == 34
    fit = convergence.ConvergenceFit(a=10.0, floor=0.05, c=5.0, rmse_rel=0.0, n_points=3)
    assert fit.b0 == 0.05 and fit.as_scenario_fields()["conv_b0"] == 0.05
    assert fit.rounds([32], 0.2) == pytest.approx(10.0 / (0.15 - 5.0 / (2.0 ** 32 - 1) ** 2))
    assert fit.rounds([1], 0.2) == math.inf


def test_least_bandwidth_and_its_tau_slope_are_convex_in_the_payload():
    """The table-free knapsack search (solvers.ste.mckp) needs W_min and its τ-slope convex in K
    for payloads affine in K. With W = a·w(r), r = S/t: w (the inverse of x ↦ ln(1+x)/x in 1/x) is
    convex, and so is the slope's shape r·w'(r). Checked on the parametric curve (x = SNR), and on
    the model's tables for full-power and energy-limited devices."""
    x = np.logspace(-3, 6, 4001)[::-1]                       # r increasing
    r = np.log1p(x) / x
    w = 1 / x
    dr = (x / (1 + x) - np.log1p(x)) / x ** 2
    h = r * (-1 / x ** 2) / dr                                # r · dw/dr
    for f in (w, h):
        slope = np.diff(f) / np.diff(r)
        assert np.all(np.diff(slope) >= -1e-7 * np.abs(slope[1:])), "not convex in the rate"
    rng = np.random.default_rng(5)
    M = 400
    u = UplinkWindows(offset_s=rng.uniform(0, 2, M), cap_s=rng.uniform(1, 6, M),
                      p_max_w=rng.uniform(0.05, 0.3, M), energy_j=rng.uniform(0.05, 1.5, M),
                      gain=10 ** rng.uniform(-14, -12, M), noise_psd_w_hz=N0, budget_hz=3e6)
    bits = (64 * (np.arange(60, 200) + 2) * 768 * 8.0)[None, :] / 50       # affine in K
    for tau in (2.5, 4.0, 7.0):
        W = u.least_bandwidth_hz(bits, tau)
        G = -u.least_bandwidth_slope(tau, W)
        fin = np.isfinite(W[:, 2:])                          # (W increases in K)
        assert 0 < fin.mean() < 1                            # some levels beyond the rate limit
        for X in (W, G):
            with np.errstate(invalid="ignore"):                  # (inf - inf beyond the limit)
                d2 = np.diff(X, 2, axis=1)
            assert np.all(d2[fin] >= -1e-9 * X[:, 1:-1][fin])
        energy = u.p_max_w > u.energy_j / np.maximum(u.window_s(tau), 1e-300)
        assert 0 < energy.sum() < M                          # both regimes are covered
