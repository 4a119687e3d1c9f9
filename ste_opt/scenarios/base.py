"""What every scenario class shares: coercion and validation of its fields, serialization.

Scenario classes are frozen dataclasses that inherit :class:`ScenarioBase` and declare
``kind`` (the file tag), ``DEVICE_FIELDS`` (per-device 1-D arrays, all of one length) and
``REQUIRED_FIELDS`` (what a file must contain).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from ..errors import InvalidScenarioError


class ScenarioBase:
    kind: str = ""
    DEVICE_FIELDS: tuple[str, ...] = ()
    REQUIRED_FIELDS: tuple[str, ...] = ()

    # ------------------------------------------------------------------ coercion and validation
    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)

    def _check_field_types(self) -> None:
        """Types before values: numeric scalars are numbers (not strings, booleans or null) and
        finite; array fields hold numbers only and are not ragged (:mod:`ste_opt.validate`)."""
        from ..validate import as_float, as_float_array, as_int

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d = f.default
            if f.name in ("device_ids", "preset_name", "meta", "bit_set"):
                if f.name == "bit_set":
                    self._set(f.name, tuple(as_float_array(list(v) if isinstance(v, (list, tuple)) else v,
                                                           "bit_set", ndim=1).tolist()))
                elif f.name == "device_ids" and v is not None:
                    as_float_array(v, "device_ids", ndim=1)
                elif f.name == "meta" and not isinstance(v, dict):
                    raise InvalidScenarioError(f"meta must be a mapping, got {v!r}", field="meta")
                continue
            if f.name == "seed":
                if v is not None:
                    self._set("seed", as_int(v, "seed", lo=0))
                continue
            if d is dataclasses.MISSING:   # per-device (or per device and subchannel) arrays
                as_float_array(v, f.name)
            elif isinstance(d, bool):
                continue
            elif isinstance(d, int):
                self._set(f.name, as_int(v, f.name))
            elif isinstance(d, float):
                self._set(f.name, as_float(v, f.name))

    def _coerce_device_arrays(self) -> int:
        """Turn every per-device field into a 1-D float array; all must have one length."""
        self._check_field_types()
        m = None
        first = self.DEVICE_FIELDS[0]
        for name in self.DEVICE_FIELDS:
            arr = np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            if arr.ndim != 1:
                raise InvalidScenarioError(f"{name} must be 1-D, got shape {arr.shape}", field=name)
            if m is None:
                m = arr.shape[0]
            elif arr.shape[0] != m:
                raise InvalidScenarioError(
                    f"{name} has {arr.shape[0]} entries but {first} has {m}: per-device arrays "
                    "must have the same length", field=name)
            self._set(name, arr)
        ids = np.arange(m) if self.device_ids is None else np.asarray(self.device_ids, dtype=int)
        if ids.shape != (m,):
            raise InvalidScenarioError(f"device_ids must have {m} entries", field="device_ids")
        self._set("device_ids", ids)
        return int(m)

    def _check_device_positive(self, names: Iterable[str], strict: bool = True) -> None:
        """Each device's value must be finite and positive (``strict``) or non-negative."""
        for name in names:
            arr = getattr(self, name)
            bad = ~np.isfinite(arr) | ((arr <= 0) if strict else (arr < 0))
            if bad.any():
                d = int(np.flatnonzero(bad)[0])
                what = "positive" if strict else "non-negative"
                raise InvalidScenarioError(
                    f"{name}[{d}] = {arr[d]!r} for device {d}: must be {what} and finite",
                    field=name, device=d)

    def _check_scalars(self, names: Iterable[str], kind: str) -> None:
        """``kind``: "positive" (finite > 0), "nonnegative" (finite >= 0) or "posint"."""
        for name in names:
            v = getattr(self, name)
            if kind == "posint":
                if int(v) != v or int(v) < 1:
                    raise InvalidScenarioError(f"{name} must be a positive integer, got {v}", field=name)
                self._set(name, int(v))
                continue
            v = float(v)
            ok = np.isfinite(v) and (v > 0 if kind == "positive" else v >= 0)
            if not ok:
                what = "a positive finite number" if kind == "positive" else ">= 0 and finite"
                raise InvalidScenarioError(f"{name} must be {what}, got {v}", field=name)
            self._set(name, v)

    # ------------------------------------------------------------------ transformations
    def replace(self, **changes):
        """A copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def redraw_fading(self, rng: np.random.Generator | int | None):
        """A copy with new Rayleigh fading draws ``|g|^2 ~ Exp(1)`` (a new round); same shape."""
        from ..model.channel import rayleigh_fading

        rng = np.random.default_rng(rng)
        return self.replace(fading=rayleigh_fading(rng, np.shape(self.fading)))

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        """A plain dict (lists and numbers only): ``from_dict`` inverts it exactly."""
        out: dict = {"kind": self.kind}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict):
        """Build from :meth:`to_dict`'s mapping; unknown or missing fields are refused by name."""
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise InvalidScenarioError(f"expected a scenario of kind {cls.kind!r}, got {kind!r}",
                                       field="kind")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidScenarioError(f"unknown scenario field(s): {', '.join(unknown)}", field=unknown[0])
        missing = [n for n in cls.REQUIRED_FIELDS if n not in data]
        if missing:
            raise InvalidScenarioError(f"missing scenario field(s): {', '.join(missing)}", field=missing[0])
        for f in dataclasses.fields(cls):  # lists back to tuples where the field holds a tuple
            if f.name in data and isinstance(f.default, tuple) and isinstance(data[f.name], list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)
