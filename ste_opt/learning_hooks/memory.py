"""Training-memory accounting in bytes (works on CPU, where no allocator statistics exist).

Per side (client / server) and per step:

- ``params``      every parameter the side holds (frozen backbone included), bytes;
- ``grads``       one gradient per trainable parameter;
- ``optimizer``   the optimizer's state tensors (e.g. SGD momentum);
- ``activations`` tensors autograd saved for backward during the step's forward, counted once per
                  storage with ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded);
- ``comm``        communication buffers: the packed payload and the gradient message (and, on the
                  server, the decoded float tensor).

``peak`` is their sum, the footprint at the moment backward starts. Transient forward buffers
that are freed before backward (e.g. the fused attention workspace) are not counted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["MemoryReport", "SavedTensorMeter", "param_bytes", "optimizer_state_bytes"]


@dataclass
class MemoryReport:
    params: int = 0
    grads: int = 0
    optimizer: int = 0
    activations: int = 0
    comm: int = 0

    @property
    def peak(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations + self.comm

    def as_dict(self, prefix: str = "") -> dict:
        d = {f"{prefix}{k}_bytes": v for k, v in asdict(self).items()}
        d[f"{prefix}peak_bytes"] = self.peak
        return d

    def max(self, other: MemoryReport) -> MemoryReport:
        """Keeps the report with the larger peak."""
        return self if self.peak >= other.peak else other


def param_bytes(*modules: nn.Module) -> tuple[int, int]:
    """(all parameter bytes, trainable parameter bytes), each storage counted once."""
    seen, total, train = set(), 0, 0
    for m in modules:
        for p in m.parameters():
            key = p.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            nb = p.numel() * p.element_size()
            total += nb
            train += nb if p.requires_grad else 0
    return total, train


def optimizer_state_bytes(opt: torch.optim.Optimizer | None) -> int:
    if opt is None:
        return 0
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor))


class SavedTensorMeter:
    """Context manager counting the bytes autograd saves for backward (unique storages).

    >>> with SavedTensorMeter(exclude=model.parameters()) as meter:
    ...     loss = model(x).sum()
    >>> meter.bytes
    """

    def __init__(self, exclude=()):
        self._exclude = {p.data_ptr() for p in exclude}
        self._seen: dict[int, int] = {}
        self._ctx = None

    def _pack(self, t: torch.Tensor):
        try:
            st = t.untyped_storage()
            key = st.data_ptr()
            if key not in self._exclude and key not in self._seen:
                self._seen[key] = st.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage
            pass
        return t

    @staticmethod
    def _unpack(t):
        return t

    def __enter__(self) -> SavedTensorMeter:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return int(sum(self._seen.values()))


# The analytic model (no torch needed) lives in memory_model; re-exported here so that
# ``ste_opt.learning_hooks.memory.estimate(...)`` sits next to the meter it is validated against.
# (The meter-driven ground truth, ``memory_measure.measure``, imports the roles, which import this
# module, so it is not re-exported here.)
from .memory_model import MemoryEstimate, SideEstimate, ViTSpec, estimate, vit_spec  # noqa: E402

__all__ += ["estimate", "vit_spec", "ViTSpec", "MemoryEstimate", "SideEstimate"]
