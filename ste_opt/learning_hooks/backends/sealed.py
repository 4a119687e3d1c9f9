"""Role objects a run's driver ships to its own actor processes (Ray workers, Flower engine
processes): pickled and sealed with an HMAC-SHA256 under a key the driver draws for the run.

:func:`unseal` unpickles only bytes whose seal checks under that key, so nothing but what this
run's driver produced is ever unpickled: not a file, not a stale or foreign object-store entry
(it raises ``ValueError`` instead). The key travels to the actors with the work itself, so the
seal does not defend against a party that can already call the run's actors (it could run code
through Ray anyway); it makes "bytes this driver made" a checked property, not a comment.
"""
from __future__ import annotations

import hashlib
import hmac
import pickle
import secrets
from typing import Any

__all__ = ["new_key", "seal", "unseal"]

_TAG = hashlib.sha256().digest_size


def new_key() -> bytes:
    """A fresh 32-byte key for one run's driver."""
    return secrets.token_bytes(32)


def seal(obj: Any, key: bytes) -> bytes:
    """``obj`` pickled (protocol 5) behind its HMAC-SHA256 under ``key``."""
    body = pickle.dumps(obj, protocol=5)
    return hmac.new(key, body, hashlib.sha256).digest() + body


def unseal(blob: bytes, key: bytes) -> Any:
    """The object :func:`seal` made with ``key``; ``ValueError`` for any other bytes."""
    blob = bytes(blob)
    tag, body = blob[:_TAG], blob[_TAG:]
    if len(tag) < _TAG or not hmac.compare_digest(tag, hmac.new(key, body, hashlib.sha256).digest()):
        raise ValueError("refusing to unpickle bytes not sealed by this run's driver")
    return pickle.loads(body)  # noqa: S301 - sealed by this run's driver (checked above)
