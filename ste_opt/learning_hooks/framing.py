"""Framed messages: ``uint32 header length | JSON header | body`` (the roles' wire format).

The uplink message of one local step carries a JSON header (client, round, batch, bits,
tokens_kept, extra_tokens, labels, need_grad, payload_bits) and the bit-packed
:class:`~ste_opt.learning_hooks.compress.Payload`; the downlink message carries the step's loss and
accuracy and the gradient payload.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidScenarioError

__all__ = ["frame", "unframe"]


def frame(header: Mapping[str, Any], body: bytes = b"") -> bytes:
    """``uint32 header length | JSON header | body``."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + bytes(body)


def unframe(msg: bytes) -> tuple[dict, bytes]:
    """Inverse of :func:`frame`."""
    if len(msg) < 4:
        raise InvalidScenarioError("message shorter than its length prefix", field="message")
    (hl,) = struct.unpack_from("<I", msg, 0)
    return json.loads(msg[4:4 + hl].decode()), msg[4 + hl:]
