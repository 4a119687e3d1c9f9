"""Roles shipped to a run's actors: only bytes sealed by this run's driver are unpickled."""
from __future__ import annotations

import pickle

import pytest

from ste_opt.learning_hooks.backends.sealed import new_key, seal, unseal

RAN = []


class _Payload:
    """Unpickling this would run code (appends to RAN)."""

    def __reduce__(self):
        return (RAN.append, ("ran",))


def test_round_trip_and_refusals():
    key = new_key()
    obj = {3: [1.5, "x"], 7: b"\x00\x01"}
    blob = seal(obj, key)
    assert unseal(blob, key) == obj
    assert unseal(memoryview(blob), key) == obj
    with pytest.raises(ValueError, match="not sealed by this run"):
        unseal(blob, new_key())                            # another run's key
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ValueError, match="not sealed by this run"):
        unseal(bytes(tampered), key)
    with pytest.raises(ValueError):
        unseal(b"short", key)


def test_a_plain_pickle_is_refused_before_anything_runs():
    key = new_key()
    raw = pickle.dumps(_Payload())
    for blob in (raw, b"\x00" * 32 + raw):
        with pytest.raises(ValueError):
            unseal(blob, key)
    assert RAN == []
