"""Validation of the runtime keys of a training config (device, amp, compile, data pipeline,
TensorBoard) without importing torch: a config validates on a machine without the device."""
from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import InvalidScenarioError

__all__ = ["validate_runtime_keys", "normalize_amp", "DEVICE_PATTERN", "AMP_MODES"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


AMP_MODES = ("off", "bf16", "fp16")


def normalize_amp(value, *, key: str = "amp") -> str:
    """``off`` | ``bf16`` | ``fp16`` (YAML's bare ``off``/``false`` and ``null`` read as ``"off"``)."""
    if value is None or value is False:
        return "off"
    text = str(value).strip().lower()
    aliases = {"no": "off", "none": "off", "false": "off", "fp32": "off", "bfloat16": "bf16",
               "float16": "fp16", "half": "fp16"}
    text = aliases.get(text, text)
    if text not in AMP_MODES:
        raise InvalidScenarioError(f"{key}={value!r}: expected off, bf16 or fp16", field=key)
    return text


def validate_runtime_keys(cfg: Mapping) -> dict:
    """Check ``device``, ``server_device``, ``amp``, ``compile``, ``data.num_workers``,
    ``data.pin_memory``, ``data.augment``, ``output.tensorboard``; returns the config with ``amp``
    normalised (YAML reads a bare ``off`` as ``false``)."""
    out = dict(cfg)
    for key in ("device", "server_device"):
        v = out.get(key)
        if v is None and key == "server_device":
            continue
        if not isinstance(v, str) or not DEVICE_PATTERN.match(v.strip().lower()):
            raise InvalidScenarioError(f"{key}={v!r}: expected auto, cpu, cuda, cuda:<i> or mps",
                                       field=key)
    out["amp"] = normalize_amp(out.get("amp"))
    if not isinstance(out.get("compile", False), bool):
        raise InvalidScenarioError("compile must be true or false", field="compile")
    d = out.get("data", {})
    nw = d.get("num_workers", 0)
    if isinstance(nw, bool) or not isinstance(nw, int) or nw < 0:
        raise InvalidScenarioError(f"data.num_workers must be an integer >= 0, got {nw!r}",
                                   field="data.num_workers")
    if d.get("pin_memory", "auto") not in ("auto", True, False):
        raise InvalidScenarioError("data.pin_memory must be auto, true or false", field="data.pin_memory")
    if not isinstance(d.get("augment", True), bool):
        raise InvalidScenarioError("data.augment must be true or false", field="data.augment")
    if not isinstance(out.get("output", {}).get("tensorboard", False), bool):
        raise InvalidScenarioError("output.tensorboard must be true or false", field="output.tensorboard")
    return out
