"""Where the trainer computes and at which precision: devices, mixed precision, ``torch.compile``.

Config keys (top level of a training config):

- ``device``: ``"auto"`` (CUDA if available, then Apple MPS, then CPU) | ``"cuda"`` | ``"cuda:i"`` |
  ``"cpu"`` | ``"mps"``; the client part of the split model and every other computation;
- ``server_device``: ``null`` (same as ``device``) or a device for the server part (the client
  and the server part may sit on different devices);
- ``amp``: ``"off"`` | ``"bf16"`` | ``"fp16"``: autocast of the forward passes; ``fp16`` adds a
  gradient scaler (:class:`torch.amp.GradScaler`);
- ``compile``: ``true`` wraps the client and server modules with :func:`torch.compile`.

Token compression never runs under autocast: the tokens leave the client's forward in float32
(:func:`to_wire`), are selected, quantized and bit-packed on the CPU side of the "wire" exactly as
in fp32 training, so the measured payload bits still equal ``ste_opt.payload.payload_bits``.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InvalidScenarioError
from .runtime_config import AMP_MODES, normalize_amp

__all__ = ["resolve_device", "normalize_amp", "Runtime", "runtime_from_config", "AMP_MODES"]

log = logging.getLogger(__name__)

def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: Any = "auto", *, key: str = "device") -> torch.device:
    """``"auto"`` | ``"cpu"`` | ``"cuda"`` | ``"cuda:i"`` | ``"mps"`` (or a ``torch.device``) ->
    :class:`torch.device`, checked to exist on this machine.

    Raises
    ------
    InvalidScenarioError
        Naming ``key`` when the device is malformed or not available here.
    """
    if isinstance(spec, torch.device):
        dev = spec
    else:
        text = "auto" if spec is None else str(spec).strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(text)
        except (RuntimeError, ValueError) as exc:
            raise InvalidScenarioError(f"{key}={spec!r}: expected auto, cpu, cuda, cuda:<i> or mps",
                                       field=key) from exc
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidScenarioError(f"{key}={spec!r}: CUDA is not available on this machine "
                                       "(use device: auto or cpu)", field=key)
        idx = torch.cuda.current_device() if dev.index is None else int(dev.index)
        if idx >= torch.cuda.device_count():
            raise InvalidScenarioError(f"{key}={spec!r}: only {torch.cuda.device_count()} CUDA "
                                       "device(s) here", field=key)
        return torch.device("cuda", idx)
    if dev.type == "mps":
        if not _mps_available():
            raise InvalidScenarioError(f"{key}={spec!r}: MPS is not available on this machine",
                                       field=key)
        return dev
    raise InvalidScenarioError(f"{key}={spec!r}: expected auto, cpu, cuda, cuda:<i> or mps", field=key)


@dataclass
class Runtime:
    """A device, an autocast mode and whether to compile: what one side of the split runs with.

    Roles hold one each (client side, server side); :meth:`autocast` wraps forward passes,
    :meth:`scaler` makes a gradient scaler (a no-op unless ``amp == "fp16"``).
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: str = "off"
    compile: bool = False

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.amp = normalize_amp(self.amp)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)

    def autocast(self):
        """Autocast context for a forward pass (a null context with ``amp: off``)."""
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for ``amp: fp16`` (``scale``/``step``/``update`` are
        pass-throughs otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    def to(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on this device (non-blocking from pinned memory)."""
        if x.device == self.device:
            return x
        return x.to(self.device, non_blocking=self.device.type == "cuda")

    def compiled(self, module: torch.nn.Module):
        """What to call for ``module``'s forward: ``module`` itself, or with ``compile: true`` a
        ``torch.compile`` wrapper (cached per module, sharing its parameters; the module keeps
        the state). Falls back to eager with a warning where compilation is unavailable."""
        if not self.compile:
            return module
        cache = self.__dict__.setdefault("_compiled", {})
        key = id(module)
        if key not in cache:
            try:
                cache[key] = torch.compile(module)
            except Exception as exc:  # noqa: BLE001 - compile is an optional speed-up
                log.warning("torch.compile unavailable (%s); running eagerly", exc)
                cache[key] = module
        return cache[key]

    def __getstate__(self):  # compiled wrappers stay in their process (Ray pickles roles)
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def describe(self) -> dict:
        return {"device": str(self.device), "amp": self.amp, "compile": bool(self.compile)}


def to_wire(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens as they enter compression: float32 (autocast may have produced bf16/fp16); the
    selection, quantization and packing then run exactly as in fp32 training."""
    return tokens if tokens.dtype == torch.float32 else tokens.float()


__all__ += ["to_wire"]


def runtime_from_config(cfg: Mapping, side: str = "client") -> Runtime:
    """The :class:`Runtime` of the ``"client"`` (= ``device``) or ``"server"`` side
    (``server_device``, default ``device``) of a training config."""
    spec = cfg.get("device", "auto")
    key = "device"
    if side == "server" and cfg.get("server_device") not in (None, ""):
        spec, key = cfg["server_device"], "server_device"
    return Runtime(resolve_device(spec, key=key), normalize_amp(cfg.get("amp", "off")),
                   bool(cfg.get("compile", False)))
