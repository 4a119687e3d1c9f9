"""Predicting a round's bits: what each client will measure, and the solution's S_m."""
from __future__ import annotations

from ...model.payload import payload_bits
from ..spec import ModelSpec
from ..uplink import upload_bits

__all__ = ["round_upload_bits", "solution_bits"]


def round_upload_bits(spec: ModelSpec, client: int, tokens_kept: int | None, bits: int) -> int:
    """Bits ``client`` measures over one round: local steps × one upload of its loader batch."""
    steps = int(spec.local_steps[int(client)])
    return steps * upload_bits(spec.loader_batch(client), tokens_kept, spec.num_patches,
                               spec.embed_dim, bits)


def solution_bits(scenario, index: int, tokens_kept: int | None, bits: int) -> int:
    """The solver's per-round payload of device ``index`` of ``scenario`` at K and q.

    STE: one upload of ``scenario.batch`` samples: ``Scenario``'s S(K) (its ``extra_tokens``) at q
    bits, or all N patches + [CLS] without selection (:func:`~ste_opt.learning_hooks.uplink.upload_bits`).
    SFLAM (no token selection): the activation part of ``scenario.uplink_bits(b)`` (the client-model
    part is the adapter upload, measured separately).
    """
    if getattr(scenario, "kind", "ste") == "sflam" and tokens_kept is None:
        total = float(scenario.uplink_bits(int(bits))[int(index)])
        return int(round(total - float(scenario.model_bits) * scenario.client_params))
    if tokens_kept is None:
        return upload_bits(scenario.batch, None, scenario.n_patches, scenario.dim, bits)
    return int(payload_bits(scenario.batch, int(tokens_kept), scenario.dim, int(bits),
                            extra_tokens=scenario.extra_tokens))
