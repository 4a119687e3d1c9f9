"""Convergence model of quantized split training (SFLAM, docs/MODEL.md §4).

The rounds to reach a target test error ε with activations quantized to b bits:

    R(b) = ⌈A / (ε − floor − C q̄(b))⌉,    q(b) = 1 / (2^b − 1)²,    q̄ = mean over the devices

``A`` (``conv_a``), ``floor`` (``conv_b0`` on the scenario: the error floor of the model, not a
bandwidth) and ``C`` (``conv_c``) are constants of the task; :func:`fit_convergence_model` fits
them from pilot runs. This module is the one home of q(b), R(b), the reachability test and the fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InfeasibleError, InvalidScenarioError

__all__ = ["quantization_error", "convergence_margin", "rounds_to_target", "ConvergenceFit",
           "fit_convergence_model"]


def quantization_error(bits) -> np.ndarray:
    """Normalized error factor of a b-bit uniform quantizer: ``q(b) = 1 / (2^b - 1)^2``."""
    b = np.asarray(bits, dtype=float)
    return 1.0 / np.expm1(b * np.log(2.0)) ** 2


def convergence_margin(bits, floor: float, c: float, epsilon: float) -> float:
    """``ε − floor − C q̄(b)``: positive iff the target is reachable with these bit-widths."""
    return float(epsilon - floor - c * float(np.mean(quantization_error(np.atleast_1d(bits)))))


def rounds_from_margin(a: float, margin: float) -> int:
    """``⌈A / margin⌉`` (rounded down by 1e-12 relative first, so exact ratios are not bumped)."""
    return int(math.ceil(a / margin * (1 - 1e-12)))


def rounds_to_target(bits, a: float, floor: float, c: float, epsilon: float) -> int:
    """``R(b) = ⌈A / (ε − floor − C q̄(b))⌉``; :class:`InfeasibleError` when ε ≤ floor + C q̄(b)."""
    qbar = float(np.mean(quantization_error(np.atleast_1d(bits))))
    margin = epsilon - floor - c * qbar
    if not margin > 0:
        raise InfeasibleError(
            f"target epsilon = {epsilon:g} is unreachable with bits {np.atleast_1d(bits).tolist()}: "
            f"the quantization floor B0 + C q̄(b) = {floor:g} + {c:g} × {qbar:.4g} = {floor + c * qbar:.6g} "
            "is not below it (use more bits or a looser target)",
            deficit={"epsilon": floor + c * qbar - epsilon})
    return rounds_from_margin(a, margin)


__all__ += ["rounds_from_margin"]


@dataclass
class ConvergenceFit:
    """Fitted ``R(b) = A / (ε − floor − C q(b))`` (rounds, before the ceiling).

    ``floor`` is the error floor (the scenario's ``conv_b0``); ``b0`` is kept as an alias.
    """

    a: float
    floor: float
    c: float
    rmse_rel: float
    n_points: int

    @property
    def b0(self) -> float:
        """Alias of :attr:`floor` (the scenario field is ``conv_b0``)."""
        return self.floor

    def rounds(self, bits, epsilon: float) -> float:
        m = convergence_margin(bits, self.floor, self.c, epsilon)
        return self.a / m if m > 0 else math.inf

    def as_scenario_fields(self) -> dict:
        return dict(conv_a=self.a, conv_b0=self.floor, conv_c=self.c)


def fit_convergence_model(bits, rounds_to_target, epsilon, a: float | None = None) -> ConvergenceFit:
    """Fit A, B0 and C of the convergence model from pilot measurements.

    ``1 / R = (ε − B0 − C q(b)) / A`` is linear in (ε, 1, q(b)), so the fit is a least-squares
    problem in ``(1/A, B0/A, C/A)`` weighted to relative errors in R, then refined on the rounds
    themselves (scipy ``least_squares``).

    Parameters
    ----------
    bits : array of int
        Bit-width of each pilot run (a run with mixed widths passes its mean q through an
        equivalent b; plain ints here).
    rounds_to_target : array of float
        Rounds each run took to reach its target (``inf`` or NaN for a run that never reached
        it: skipped).
    epsilon : float or array
        The target(s). With a single target, A is not identifiable: pass ``a``.
    a : float, optional
        Fix A (then only B0 and C are fitted).
    """
    from scipy.optimize import least_squares

    b = np.atleast_1d(np.asarray(bits, dtype=float))
    r = np.atleast_1d(np.asarray(rounds_to_target, dtype=float))
    eps = np.broadcast_to(np.asarray(epsilon, dtype=float), b.shape).astype(float)
    if r.shape != b.shape:
        raise InvalidScenarioError(f"rounds_to_target has {r.size} entries but bits has {b.size}",
                                   field="rounds_to_target")
    if np.any(b != np.round(b)) or np.any(b < 1) or np.any(b > 32):
        raise InvalidScenarioError("bits must be integers in 1..32", field="bits")
    if np.any(~np.isfinite(eps)) or np.any(eps <= 0):
        raise InvalidScenarioError("epsilon must be positive and finite", field="epsilon")
    bad = ~np.isnan(r) & (r <= 0)
    if bad.any():
        raise InvalidScenarioError(f"rounds_to_target[{int(np.flatnonzero(bad)[0])}] must be positive",
                                   field="rounds_to_target")
    ok = np.isfinite(r)
    b, r, eps = b[ok], r[ok], eps[ok]
    q = quantization_error(b)
    fix_a = a is not None
    if fix_a and (not np.isfinite(a) or a <= 0):
        raise InvalidScenarioError("a must be positive", field="a")
    n_par = 2 if fix_a else 3
    if len(r) < n_par or (not fix_a and np.ptp(eps) == 0):
        raise InvalidScenarioError(
            "not enough pilot measurements: need at least 3 reached targets at two or more different "
            "epsilons (or pass a= and at least 2 runs with different bits)", field="rounds_to_target")
    if np.ptp(q) == 0:
        raise InvalidScenarioError("the pilot runs must use at least two different bit-widths", field="bits")
    y = 1.0 / r
    w = r  # relative errors in R ≈ relative errors in 1/R
    if fix_a:
        X = np.column_stack([-np.ones_like(q), -q]) / a
        theta, *_ = np.linalg.lstsq(X * w[:, None], (y - eps / a) * w, rcond=None)
        x0 = np.array([theta[0], theta[1]])
    else:
        X = np.column_stack([eps, -np.ones_like(q), -q])
        theta, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
        inv_a = theta[0] if theta[0] > 0 else 1.0 / np.max(r * eps)
        x0 = np.array([1.0 / inv_a, theta[1] / inv_a, theta[2] / inv_a])

    def model(x):
        aa, b0, c = (a, x[0], x[1]) if fix_a else (x[0], x[1], x[2])
        m = eps - b0 - c * q
        return np.where(m > 0, aa / np.where(m > 0, m, 1.0), 1e12)

    def resid(x):
        return model(x) / r - 1.0

    lb = [0.0, 0.0] if fix_a else [1e-12, 0.0, 0.0]
    x0 = np.maximum(x0, np.asarray(lb) + 1e-12)
    # keep the start feasible: margins positive for every run
    res = least_squares(resid, x0, bounds=(lb, np.inf), method="trf", x_scale="jac")
    x = res.x
    aa, b0, c = (float(a), float(x[0]), float(x[1])) if fix_a else tuple(map(float, x))
    rm = float(np.sqrt(np.mean(resid(x) ** 2)))
    return ConvergenceFit(aa, b0, c, rm, int(len(r)))
