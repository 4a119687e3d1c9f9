"""Exact uplink payload size of one compressed activation upload (docs/MODEL.md §2).

Shared by the optimization problems (which predict bits) and the trainer (which measures bits from
the packed buffer); tests assert the two agree exactly. The one home of the payload formula, of
the "tokens on the wire" rule (:func:`tokens_on_wire`) and of the bit-width rule "1..16 or 32"
(:func:`valid_bit_width`, :func:`check_bit_width`).
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidScenarioError

__all__ = ["SIDE_BITS_PER_TOKEN", "payload_bits", "side_bits", "tokens_on_wire", "valid_bit_width",
           "check_bit_width"]

#: Side information per token when quantized (q < 32): min (offset) and scale, fp16 each.
SIDE_BITS_PER_TOKEN = 32


def side_bits(batch, tokens_sent, bits, side_bits_per_token: int = SIDE_BITS_PER_TOKEN):
    """Bits of side information: per-token scale and offset when ``bits < 32``, else none.

    Parameters
    ----------
    batch : int or array
        Samples in the upload.
    tokens_sent : int or array
        Tokens per sample on the wire (kept patches + [CLS] + merged token).
    bits : int or array
        Bits per activation element; 32 means raw float32 (no side information).
    """
    batch = np.asarray(batch)
    tokens_sent = np.asarray(tokens_sent)
    bits = np.asarray(bits)
    return np.where(bits < 32, batch * tokens_sent * side_bits_per_token, 0)


def payload_bits(batch, tokens_kept, dim, bits, extra_tokens: int = 2,
                 side_bits_per_token: int = SIDE_BITS_PER_TOKEN):
    """Bits of one upload: ``B·(K + c0)·D·q`` plus side information.

    Parameters
    ----------
    batch : int or array
        B, samples per upload.
    tokens_kept : int or array
        K, patch tokens kept per sample.
    dim : int
        D, embedding width.
    bits : int or array
        q, bits per element (1..16 packed codes, or 32 for raw float32).
    extra_tokens : int
        c0, tokens sent besides the kept patches ([CLS] + one merged token = 2).
    side_bits_per_token : int
        Side information per token when ``bits < 32``.

    Returns
    -------
    numpy integer array (or scalar) of bits.
    """
    tokens_sent = np.asarray(tokens_kept, dtype=np.int64) + int(extra_tokens)
    body = np.asarray(batch, dtype=np.int64) * tokens_sent * int(dim) * np.asarray(bits, dtype=np.int64)
    out = body + side_bits(batch, tokens_sent, bits, side_bits_per_token).astype(np.int64)
    return out if out.ndim else int(out)


def tokens_on_wire(tokens_kept, n_patches: int) -> tuple[int, int]:
    """``(K, c0)`` of an upload: the patch tokens sent and the extra tokens besides them.

    Without token selection (``tokens_kept is None``) all ``n_patches`` go with the [CLS] token
    (c0 = 1); with selection the kept patches go with [CLS] and one merged token (c0 = 2).
    """
    if tokens_kept is None:
        return int(n_patches), 1
    return int(tokens_kept), 2


def valid_bit_width(bits) -> np.ndarray:
    """True where ``bits`` is an integer in 1..16 (packed codes) or 32 (raw float32)."""
    b = np.asarray(bits, dtype=float)
    return (b == np.round(b)) & (((b >= 1) & (b <= 16)) | (b == 32))


def check_bit_width(bits, field: str = "bits") -> int:
    """``int(bits)`` if it is 1..16 or 32, else :class:`InvalidScenarioError` naming ``field``."""
    if not bool(np.all(valid_bit_width(bits))) or np.ndim(bits) != 0:
        raise InvalidScenarioError(f"{field} must be 1..16 or 32, got {bits}", field=field)
    return int(bits)
