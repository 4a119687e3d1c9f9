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


def frame(header: Mapping[str, Any], body=b"") -> bytes:
    """``uint32 header length | JSON header | body``.

    ``body``: a bytes-like object, or a list/tuple of them (e.g. :meth:`Payload.parts`), joined
    into the message with one copy each.
    """
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = body if isinstance(body, (list, tuple)) else (body,)
    return b"".join((struct.pack("<I", len(head)), head, *parts))


def unframe(msg) -> tuple[dict, memoryview]:
    """Inverse of :func:`frame`: the header and a read-only view of the body (not a copy)."""
    mv = memoryview(msg)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    if len(mv) < 4:
        raise InvalidScenarioError("message shorter than its length prefix", field="message")
    (hl,) = struct.unpack_from("<I", mv, 0)
    if len(mv) < 4 + hl:
        raise InvalidScenarioError(f"message of {len(mv)} bytes is shorter than its header length "
                                   f"{hl}", field="message")
    try:
        header = json.loads(bytes(mv[4:4 + hl]).decode())
    except ValueError as exc:
        raise InvalidScenarioError(f"unreadable message header: {exc}", field="message") from exc
    if not isinstance(header, dict):
        raise InvalidScenarioError("message header is not a JSON object", field="message")
    return header, mv[4 + hl:].toreadonly()
