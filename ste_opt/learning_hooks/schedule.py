"""Schedules: which tokens_kept K and bit width q each sampled client uses in a round.

The trainer calls ``schedule.plan(round_idx, client_ids, context)`` at the start of every round
with a :class:`~ste_opt.learning_hooks.spec.PlanContext` (the typed model spec and a profile
callback; never the trainer itself) and gets one :class:`ClientPlan` per client (or ``None``: the
client sits out this round, sends nothing, and is recorded as excluded). Solver-driven schedules
(:mod:`ste_opt.learning_hooks.closed_loop`) implement the same interface.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..errors import InvalidScenarioError
from ..model.payload import valid_bit_width

if TYPE_CHECKING:
    from .spec import PlanContext

__all__ = ["ClientPlan", "Schedule", "StaticSchedule", "validate_plan"]


@dataclass(frozen=True)
class ClientPlan:
    """What one client does in one round.

    Attributes
    ----------
    tokens_kept : int or None
        K, patch tokens kept per sample (the upload is [CLS] + K patches + 1 merged token);
        ``None`` means no selection ([CLS] + all N patches).
    bits : int
        q, bits per activation element on the uplink: 1..16 (packed integer codes) or 32 (float32).
    predicted : dict
        Optional predictions from a solver (e.g. ``latency_s``, ``energy_j``, ``predicted_bits``);
        the trainer writes them next to the measured values in ``clients.csv``.
    """

    tokens_kept: int | None
    bits: int = 32
    predicted: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Schedule(Protocol):
    """Per-round plans. ``context.spec`` is the model's :class:`~ste_opt.learning_hooks.spec.ModelSpec`;
    ``context.profiles`` measures the sampled clients' retention profiles."""

    def plan(self, round_idx: int, client_ids: Sequence[int],
             context: PlanContext) -> Mapping[int, ClientPlan | None]: ...


def validate_plan(plan: ClientPlan, num_patches: int, client: int | None = None) -> ClientPlan:
    """Refuse a plan with K outside [0, N] or an unsupported bit width."""
    if plan.tokens_kept is not None and not 0 <= int(plan.tokens_kept) <= num_patches:
        raise InvalidScenarioError(
            f"tokens_kept={plan.tokens_kept} outside [0, {num_patches}]", field="tokens_kept",
            device=client)
    if not valid_bit_width(int(plan.bits)):
        raise InvalidScenarioError(f"bits={plan.bits} must be 1..16 or 32", field="bits",
                                   device=client)
    return plan


class StaticSchedule:
    """Every client, every round: the same ``tokens_kept`` and ``bits``."""

    def __init__(self, tokens_kept: int | None = None, bits: int = 32):
        self.tokens_kept = None if tokens_kept is None else int(tokens_kept)
        self.bits = int(bits)
        validate_plan(ClientPlan(self.tokens_kept, self.bits), num_patches=10**9)

    def plan(self, round_idx: int, client_ids: Sequence[int],
             context: PlanContext | None = None) -> dict[int, ClientPlan]:
        return {int(c): ClientPlan(self.tokens_kept, self.bits) for c in client_ids}

    def eval_plan(self) -> ClientPlan:
        """Compression used when evaluating the global model."""
        return ClientPlan(self.tokens_kept, self.bits)

    def __repr__(self) -> str:
        return f"StaticSchedule(tokens_kept={self.tokens_kept}, bits={self.bits})"
