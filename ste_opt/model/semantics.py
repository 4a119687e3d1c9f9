"""Semantic retention profiles and the STE metric (docs/MODEL.md §2, ST-SFLora Eq. 18–20).

A profile ``alpha_bar[m, n]`` is device m's [CLS] attention at rank n (scores sorted in
descending order per sample and summed rank by rank over the batch): non-increasing in n.
Retention ``f_m(K) = sum_{n <= K} alpha_bar[m, n]`` is then non-decreasing and concave in K.
Profiles come from a real model (:mod:`ste_opt.learning_hooks.calibrate`, or any measured
attention array through :func:`profile_from_attention`) or from a parametric family.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidScenarioError

__all__ = ["FAMILIES", "parametric_profiles", "profile_from_attention", "retention_table",
           "validate_profiles", "ste"]

FAMILIES = ("exponential", "zipf", "uniform")


def parametric_profiles(n_devices: int, n_patches: int, rng: np.random.Generator,
                        family: str = "exponential", scale: float = 150.0, spread: float = 0.25,
                        mass: float = 0.9, batch: int = 64) -> np.ndarray:
    """Draw per-device sorted-attention profiles from a parametric family.

    Parameters
    ----------
    n_devices, n_patches : int
        M devices, N patch tokens.
    rng : numpy.random.Generator
        Source of the per-device variation.
    family : {"exponential", "zipf", "uniform"}
        ``exponential``: ``alpha_n ∝ exp(-n / L_m)`` (``scale`` = L, in tokens; mid-layer [CLS]
        attention of a ViT is this flat). ``zipf``: ``alpha_n ∝ n^(-s_m)`` (``scale`` = s).
        ``uniform``: equal scores (retention linear in K).
    scale : float
        Family parameter (decay length in tokens, or Zipf exponent).
    spread : float
        Per-device log-normal variation of ``scale`` (standard deviation of its log).
    mass : float
        Attention mass on the patches per sample (the rest is [CLS] self-attention).
    batch : int
        Samples summed rank by rank; a profile sums to ``batch * mass``.

    Returns
    -------
    ndarray, shape (n_devices, n_patches), non-increasing along axis 1.
    """
    if family not in FAMILIES:
        raise InvalidScenarioError(f"profile family must be one of {FAMILIES}, got {family!r}",
                                   field="profile_family")
    n = np.arange(1, n_patches + 1, dtype=float)
    s = scale * np.exp(spread * rng.standard_normal(n_devices)) if spread > 0 else np.full(n_devices, scale)
    if family == "exponential":
        raw = np.exp(-n[None, :] / s[:, None])
    elif family == "zipf":
        raw = n[None, :] ** (-s[:, None])
    else:
        raw = np.ones((n_devices, n_patches))
    return raw / raw.sum(axis=1, keepdims=True) * (batch * mass)


def profile_from_attention(attention) -> np.ndarray:
    """Profile of one device from measured [CLS] attention of shape (B, N): sort each sample's
    scores in descending order and sum rank by rank over the batch (ST-SFLora Eq. 18)."""
    a = np.asarray(attention, dtype=float)
    if a.ndim != 2:
        raise InvalidScenarioError(f"attention must have shape (batch, n_patches), got {a.shape}",
                                   field="attention")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InvalidScenarioError("attention must be finite and non-negative", field="attention")
    return -np.sort(-a, axis=1).sum(axis=0)


def validate_profiles(profiles, n_devices: int | None = None, n_patches: int | None = None,
                      field: str = "retention") -> np.ndarray:
    """Check shape, finiteness, non-negativity and monotonicity; return a float array."""
    p = np.asarray(profiles, dtype=float)
    if p.ndim != 2:
        raise InvalidScenarioError(f"{field} must be 2-D (devices, patches), got shape {p.shape}",
                                   field=field)
    if n_devices is not None and p.shape[0] != n_devices:
        raise InvalidScenarioError(f"{field} has {p.shape[0]} rows but there are {n_devices} devices",
                                   field=field)
    if n_patches is not None and p.shape[1] != n_patches:
        raise InvalidScenarioError(f"{field} has {p.shape[1]} columns but n_patches = {n_patches}",
                                   field=field)
    bad = ~np.all(np.isfinite(p) & (p >= 0), axis=1)
    if bad.any():
        m = int(np.flatnonzero(bad)[0])
        raise InvalidScenarioError(f"{field}[{m}] has negative or non-finite entries",
                                   field=field, device=m)
    inc = np.any(np.diff(p, axis=1) > 1e-12 * (1 + np.abs(p[:, 1:])), axis=1)
    if inc.any():
        m = int(np.flatnonzero(inc)[0])
        raise InvalidScenarioError(f"{field}[{m}] is not non-increasing (sort it in descending order)",
                                   field=field, device=m)
    return p


def retention_table(profiles) -> np.ndarray:
    """``F[m, K] = f_m(K)`` for K = 0..N, shape (M, N + 1): cumulative sums with F[:, 0] = 0."""
    p = np.asarray(profiles, dtype=float)
    out = np.zeros((p.shape[0], p.shape[1] + 1))
    np.cumsum(p, axis=1, out=out[:, 1:])
    return out


def ste(retention_kept, time_s) -> float:
    """Semantic Transmission Efficiency: total retained attention mass per second of the
    straggler, ``sum_m f_m(K_m) / max_m T_m``."""
    t = float(np.max(time_s)) if np.size(time_s) else 0.0
    if t <= 0:
        return 0.0
    return float(np.sum(retention_kept)) / t
