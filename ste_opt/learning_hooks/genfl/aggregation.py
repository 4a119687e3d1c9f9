"""GenFL aggregation policies, pluggable next to plain FedAvg (the trainer's ``Aggregator`` protocol).

Both policies are convex combinations of model states computed by the trainer's
:class:`~ste_opt.learning_hooks.federated.FedAvg` with explicit weights.

**A. Synthetic-aware FedAvg** (:class:`SyntheticAwareFedAvg`)::

    w^{t+1} = sum_k a_k w_k^{t+1},   a_k = (n_k + gamma * m_k) / sum_j (n_j + gamma * m_j)

``n_k`` real, ``m_k`` synthetic images of client k (``num_synthetic=`` keyword). ``gamma = 0`` is
FedAvg on real counts, ``gamma = 1`` FedAvg on the union counts, ``m_k = 0`` plain FedAvg.

**B. Synthetic-model blending** (:class:`SyntheticModelBlend`)::

    w^{t+1} = (1 - lambda_t) * sum_k (n_k / n) w_k^{t+1} + lambda_t * w_syn^{t+1},
    lambda_t = lambda_0 * rho ** t

``w_syn^{t+1}`` is the global model trained by the server on its synthetic pool S_0 during round t
(``synthetic_state=`` keyword); the synthetic contribution decays as real data takes over.
``lambda_0 = 0`` (or no synthetic state) is plain FedAvg. The round index is the protocol's
``round_idx`` keyword (0-based).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import InvalidScenarioError
from ..federated import FedAvg

__all__ = ["SyntheticAwareFedAvg", "SyntheticModelBlend", "make_aggregator", "AGGREGATIONS"]

AGGREGATIONS = ("fedavg", "weighted", "blend")


class SyntheticAwareFedAvg:
    """FedAvg with weights ``n_k + gamma * m_k`` (policy A)."""

    def __init__(self, gamma: float = 1.0):
        if not 0.0 <= gamma <= 1.0:
            raise InvalidScenarioError(f"gamma must be in [0, 1], got {gamma}", field="gamma")
        self.gamma = float(gamma)
        self._fedavg = FedAvg()

    def weights(self, num_examples: Sequence[float],
                num_synthetic: Sequence[float] | None = None) -> np.ndarray:
        """Normalised client coefficients ``a_k`` (non-negative, sum 1)."""
        n = np.asarray(num_examples, dtype=np.float64)
        m = np.zeros_like(n) if num_synthetic is None else np.asarray(num_synthetic, dtype=np.float64)
        if m.shape != n.shape:
            raise InvalidScenarioError("num_synthetic and num_examples differ in length",
                                       field="num_synthetic")
        if np.any(n < 0) or np.any(m < 0):
            raise InvalidScenarioError("counts must be >= 0", field="num_examples")
        w = n + self.gamma * m
        if w.sum() <= 0:
            raise InvalidScenarioError("aggregation weights sum to zero", field="num_examples")
        return w / w.sum()

    def __call__(self, states: Sequence[Mapping[str, Any]], num_examples: Sequence[float],
                 *, num_synthetic: Sequence[float] | None = None, **info: Any) -> dict:
        return self._fedavg(states, self.weights(num_examples, num_synthetic), **info)

    def __repr__(self) -> str:
        return f"SyntheticAwareFedAvg(gamma={self.gamma})"


class SyntheticModelBlend:
    """Blend FedAvg of the clients with the server's synthetic-data model (policy B)."""

    def __init__(self, lambda0: float = 0.5, decay: float = 0.95):
        if not 0.0 <= lambda0 <= 1.0:
            raise InvalidScenarioError(f"lambda0 must be in [0, 1], got {lambda0}", field="lambda0")
        if not 0.0 <= decay <= 1.0:
            raise InvalidScenarioError(f"decay must be in [0, 1], got {decay}", field="decay")
        self.lambda0 = float(lambda0)
        self.decay = float(decay)
        self._fedavg = FedAvg()
        self.needs_synthetic_model = self.lambda0 > 0

    def lam(self, round_idx: int) -> float:
        """``lambda_t = lambda0 * decay ** round_idx``."""
        return self.lambda0 * self.decay ** max(0, int(round_idx))

    def weights(self, num_examples: Sequence[float], round_idx: int = 0,
                with_synthetic: bool = True) -> np.ndarray:
        """Coefficients of ``[client_0, ..., client_{K-1}, w_syn]`` (sum 1)."""
        n = np.asarray(num_examples, dtype=np.float64)
        if np.any(n < 0) or n.sum() <= 0:
            raise InvalidScenarioError("num_examples must be >= 0 with a positive sum",
                                       field="num_examples")
        lam = self.lam(round_idx) if with_synthetic else 0.0
        return np.concatenate([(1.0 - lam) * n / n.sum(), [lam]])

    def __call__(self, states: Sequence[Mapping[str, Any]], num_examples: Sequence[float],
                 *, synthetic_state: Mapping[str, Any] | None = None, round_idx: int = 0,
                 **info: Any) -> dict:
        w = self.weights(num_examples, round_idx, synthetic_state is not None)
        if synthetic_state is None or w[-1] == 0.0:
            return self._fedavg(states, w[:-1], round_idx=round_idx, **info)
        return self._fedavg([*states, synthetic_state], w, round_idx=round_idx, **info)

    def __repr__(self) -> str:
        return f"SyntheticModelBlend(lambda0={self.lambda0}, decay={self.decay})"


def make_aggregator(name: str = "fedavg", *, gamma: float = 1.0, lambda0: float = 0.5,
                    decay: float = 0.95):
    """``"fedavg"`` (trainer's FedAvg on real counts), ``"weighted"`` (A) or ``"blend"`` (B)."""
    if name == "fedavg":
        return FedAvg()
    if name == "weighted":
        return SyntheticAwareFedAvg(gamma)
    if name == "blend":
        return SyntheticModelBlend(lambda0, decay)
    raise InvalidScenarioError(f"unknown aggregation {name!r}; use one of {AGGREGATIONS}",
                               field="aggregation")
