"""Unit conversions. Everything else in ste-opt works in SI units (s, Hz, W, J, bits)."""
from __future__ import annotations

import numpy as np

__all__ = ["dbm_to_w", "w_to_dbm", "db_to_linear", "linear_to_db", "bits_to_bytes",
           "bytes_to_bits", "bits_to_mib", "noise_psd_w_per_hz"]


def dbm_to_w(dbm):
    """Power in dBm -> watts."""
    return 10.0 ** ((np.asarray(dbm, dtype=float) - 30.0) / 10.0)


def w_to_dbm(w):
    """Power in watts -> dBm."""
    return 10.0 * np.log10(np.asarray(w, dtype=float)) + 30.0


def db_to_linear(db):
    """Gain or loss in dB -> linear ratio."""
    return 10.0 ** (np.asarray(db, dtype=float) / 10.0)


def linear_to_db(x):
    """Linear ratio -> dB."""
    return 10.0 * np.log10(np.asarray(x, dtype=float))


def noise_psd_w_per_hz(dbm_per_hz: float) -> float:
    """Noise power spectral density in dBm/Hz -> W/Hz (−174 dBm/Hz -> 3.98e-21 W/Hz)."""
    return float(dbm_to_w(dbm_per_hz))


def bits_to_bytes(bits):
    """Bits -> bytes (exact division, float)."""
    return np.asarray(bits, dtype=float) / 8.0


def bytes_to_bits(nbytes):
    """Bytes -> bits."""
    return np.asarray(nbytes, dtype=float) * 8.0


def bits_to_mib(bits):
    """Bits -> MiB (2**20 bytes)."""
    return np.asarray(bits, dtype=float) / 8.0 / 2**20
