"""Exceptions raised by ste-opt. Each carries enough context to fix the input."""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SteOptError", "InvalidScenarioError", "InfeasibleError", "SolverError", "ConfigError"]


class SteOptError(Exception):
    """Base class of every ste-opt error."""


class InvalidScenarioError(SteOptError, ValueError):
    """An input field is malformed. ``field`` names it; ``device`` the first bad device, if any."""

    def __init__(self, message: str, field: str | None = None, device: int | None = None):
        self.field = field
        self.device = device
        super().__init__(message)


class InfeasibleError(SteOptError):
    """No allocation satisfies the constraints.

    Attributes
    ----------
    devices : list of int
        Devices that cannot meet their limits even alone (full power, all bandwidth).
    deficit : dict
        What is missing, e.g. ``{"bandwidth_hz": 3.2e6}`` for a budget that is too small,
        or per-device shortfalls.
    """

    def __init__(self, message: str, devices: Sequence[int] = (), deficit: dict | None = None):
        self.devices = list(devices)
        self.deficit = dict(deficit or {})
        super().__init__(message)


class SolverError(SteOptError, RuntimeError):
    """A solver failed (missing backend, numerical failure, unknown method or option)."""


class ConfigError(SteOptError, ValueError):
    """A training-config value (or a run folder / checkpoint) is unusable; ``key`` names it."""

    def __init__(self, message: str, key: str | None = None):
        self.key = key
        super().__init__(message)

    @property
    def field(self) -> str | None:
        """Alias of ``key`` (the name :class:`InvalidScenarioError` uses)."""
        return self.key
