"""Typed results of one training round, as every backend returns them.

A backend's ``run_round`` returns ``{client_id: ClientRoundResult}`` for the clients that finished
the round. Statistics are dataclasses (:class:`ClientStats`, :class:`ServerStats`) rather than
dicts, so that a backend that carries them over a wire (Flower) converts them in one place
(:meth:`ClientStats.to_json` / :meth:`ClientStats.from_json`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .memory import MemoryReport

__all__ = ["ClientStats", "ServerStats", "ClientRoundResult"]


@dataclass
class ClientStats:
    """What a client measured over its round (bits, time, memory; FedLoRA also the loss)."""

    uplink_bits: int = 0
    downlink_bits: int = 0
    uplink_payload_bytes: int = 0
    steps: int = 0
    score_s: float = 0.0
    compress_s: float = 0.0
    client_s: float = 0.0
    memory: MemoryReport = field(default_factory=MemoryReport)
    #: FedLoRA only (the whole model on the device): summed loss, correct predictions, samples
    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0

    def to_json(self) -> bytes:
        """JSON bytes (the memory report as its five byte counts)."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ClientStats:
        """Inverse of :meth:`to_json`; refuses unknown keys."""
        raw = json.loads(bytes(data).decode())
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown client statistics {sorted(unknown)}")
        raw["memory"] = MemoryReport(**raw.get("memory", {}))
        return cls(**raw)


@dataclass
class ServerStats:
    """What the server measured for one client of the round (SFL-V1: its adapter copy)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    server_s: float = 0.0
    decode_s: float = 0.0
    memory: MemoryReport = field(default_factory=MemoryReport)


@dataclass
class ClientRoundResult:
    """One client's round.

    Attributes
    ----------
    client_state : dict name -> array
        The client-side adapters after the round (empty without client LoRA).
    num_examples : int
        The client's training samples (FedAvg weight).
    stats : ClientStats
    step_times : list of float
        Wall time of each local step (s).
    server_state : dict name -> array
        The server-side adapters trained for this client: the server's SFL-V1 copy (split mode),
        or the device's own server part (FedLoRA).
    server_stats : ServerStats or None
        The server's statistics for this client (None in FedLoRA mode).
    """

    client_state: dict[str, np.ndarray]
    num_examples: int
    stats: ClientStats
    step_times: list[float]
    server_state: dict[str, np.ndarray] = field(default_factory=dict)
    server_stats: ServerStats | None = None
