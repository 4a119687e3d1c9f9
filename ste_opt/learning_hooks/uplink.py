"""What one activation upload puts on the wire: the trainer's use of :mod:`ste_opt.model.payload`.

A client that keeps K patch tokens sends [CLS] + K patches + one merged token per sample
(``extra_tokens = 2``); without selection (``tokens_kept=None``) it sends [CLS] + all N patches
(``extra_tokens = 1``). The rule (:func:`~ste_opt.model.payload.tokens_on_wire`) and the bit count
(:func:`~ste_opt.model.payload.payload_bits`) have their one home in the model layer;
:func:`upload_bits` combines them for one upload, so predicted and measured bits agree exactly.
"""
from __future__ import annotations

from ..model.payload import payload_bits, tokens_on_wire

__all__ = ["upload_bits"]


def upload_bits(batch: int, tokens_kept: int | None, num_patches: int, dim: int, bits: int) -> int:
    """Bits of one upload of ``batch`` samples: ``payload_bits`` with the tokens of
    ``tokens_on_wire`` (both :mod:`ste_opt.model.payload`)."""
    k, extra = tokens_on_wire(tokens_kept, num_patches)
    return int(payload_bits(int(batch), k, int(dim), int(bits), extra_tokens=extra))
