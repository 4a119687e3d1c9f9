"""The Flower message protocol of :mod:`.flower_backend`: message type, record names, exchange
granularity and the array-record conversions (plain bytes and arrays only: nothing is unpickled
from the wire)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...errors import InvalidScenarioError

__all__ = ["MESSAGE_TYPE", "RECORD", "parse_exchange", "arrays_to_record", "record_to_arrays"]

MESSAGE_TYPE = "train"
#: Name of the ``ConfigRecord`` carrying the protocol fields in every message.
RECORD = "sfl"


def parse_exchange(exchange: str) -> int | None:
    """``"per_batch"`` → 1, ``"chunked:M"`` → M, ``"round"`` → None (all steps of the round)."""
    if exchange == "per_batch":
        return 1
    if exchange == "round":
        return None
    if isinstance(exchange, str) and exchange.startswith("chunked:"):
        try:
            m = int(exchange.split(":", 1)[1])
        except ValueError:
            m = 0
        if m >= 1:
            return m
    raise InvalidScenarioError(f"exchange={exchange!r}: expected 'round', 'per_batch' or 'chunked:M' "
                               "with M >= 1", field="exchange")



def arrays_to_record(arrays: Mapping[str, np.ndarray]):
    """NumPy arrays as a Flower ``ArrayRecord``."""
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def record_to_arrays(record) -> dict[str, np.ndarray]:
    """Inverse of :func:`arrays_to_record` (copies)."""
    return {k: np.array(a.numpy(), copy=True) for k, a in record.items()}
