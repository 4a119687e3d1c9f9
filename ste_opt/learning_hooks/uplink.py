"""What one activation upload puts on the wire (the trainer's side of ``ste_opt.payload``).

A client that keeps K patch tokens sends [CLS] + K patches + one merged token per sample
(``extra_tokens = 2``); without selection (``tokens_kept=None``) it sends [CLS] + all N patches
(``extra_tokens = 1``). :func:`tokens_on_wire` is the one place that states this rule on the
learning side; :func:`upload_bits` prices it with :func:`ste_opt.payload.payload_bits` (the one
home of the bit count), so predicted and measured bits agree exactly.
"""
from __future__ import annotations

from ..payload import payload_bits

__all__ = ["tokens_on_wire", "upload_bits"]


def tokens_on_wire(tokens_kept: int | None, num_patches: int) -> tuple[int, int]:
    """``(K, extra_tokens)`` of an upload: ``(N, 1)`` without selection, else ``(K, 2)``."""
    if tokens_kept is None:
        return int(num_patches), 1
    return int(tokens_kept), 2


def upload_bits(batch: int, tokens_kept: int | None, num_patches: int, dim: int, bits: int) -> int:
    """Bits of one upload of ``batch`` samples (:func:`ste_opt.payload.payload_bits` with the
    tokens of :func:`tokens_on_wire`)."""
    k, extra = tokens_on_wire(tokens_kept, num_patches)
    return int(payload_bits(int(batch), k, int(dim), int(bits), extra_tokens=extra))
