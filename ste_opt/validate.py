"""One input-validation layer: typed values, bounded files, bounded YAML, atomic writes.

Every check raises the package's own error naming the offending key: the caller chooses the class
(:class:`~ste_opt.errors.InvalidScenarioError` for scenario fields, :class:`~ste_opt.errors.SolverError`
for solver options, :class:`~ste_opt.errors.ConfigError` for training-config keys), so the CLI prints
one line and exits 2 (see ``docs/reliability.md``).

Size limits (checked before any work; override them with environment variables or :func:`limits`):

* ``STE_OPT_MAX_FILE_BYTES`` (default 64 MiB): largest scenario/config/solution file read;
* ``STE_OPT_MAX_YAML_NODES`` (default 20 000 000): YAML nodes after alias expansion, so a small
  file of nested aliases ("billion laughs") is refused before it is built;
* ``STE_OPT_MAX_ELEMENTS`` (default 5 000 000): devices × patches (or devices × subchannels) of a
  generated scenario (``ste-opt generate --max-elements`` overrides it).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InvalidScenarioError, SolverError, SteOptError

__all__ = ["as_float", "as_int", "as_bool", "as_choice", "as_float_array", "Opt", "check_options",
           "check_preset_options", "check_size", "limits", "get_limit", "read_text", "load_yaml_text",
           "load_yaml_file", "atomic_write_text", "atomic_write_bytes", "sanitize_name",
           "usage_error", "parse_cli_value"]

_DEFAULT_LIMITS = {"max_file_bytes": 64 * 2 ** 20, "max_yaml_nodes": 20_000_000,
                   "max_elements": 5_000_000}
_ENV = {"max_file_bytes": "STE_OPT_MAX_FILE_BYTES", "max_yaml_nodes": "STE_OPT_MAX_YAML_NODES",
        "max_elements": "STE_OPT_MAX_ELEMENTS"}
_OVERRIDES: dict[str, int] = {}


def get_limit(name: str) -> int:
    """Current value of a size limit (override > environment variable > default)."""
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    raw = os.environ.get(_ENV[name])
    if raw:
        try:
            v = int(float(raw))
        except ValueError:
            raise ConfigError(f"{_ENV[name]}={raw!r} must be a positive integer", key=_ENV[name]) from None
        if v >= 1:
            return v
        raise ConfigError(f"{_ENV[name]}={raw!r} must be a positive integer", key=_ENV[name])
    return _DEFAULT_LIMITS[name]


@contextlib.contextmanager
def limits(**values: int) -> Iterator[None]:
    """Temporarily override size limits, e.g. ``with limits(max_elements=10**8): ...``."""
    unknown = set(values) - set(_DEFAULT_LIMITS)
    if unknown:
        raise ConfigError(f"unknown limit(s) {sorted(unknown)}; known: {sorted(_DEFAULT_LIMITS)}")
    old = dict(_OVERRIDES)
    _OVERRIDES.update({k: int(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(old)


# ---------------------------------------------------------------------- errors naming the key
def _fail(exc: type[SteOptError], message: str, name: str | None):
    if exc is InvalidScenarioError:
        err = InvalidScenarioError(message, field=name)
    elif exc is ConfigError:
        err = ConfigError(message, key=name)
    else:
        err = exc(message)
    err.usage = True   # an input error (CLI exit 2), not a failure of the work itself
    return err


def usage_error(message: str, exc: type[SteOptError] = SolverError, name: str | None = None) -> SteOptError:
    """An error about the caller's input (marked ``usage``: the CLI exits 2 rather than 1)."""
    return _fail(exc, message, name)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


# ---------------------------------------------------------------------- scalars
def as_float(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
             lo_open: bool = False, hi_open: bool = False, finite: bool = True,
             exc: type[SteOptError] = InvalidScenarioError) -> float:
    """A real number (not a string, bool or None), finite unless ``finite=False``, in the range."""
    if not _is_number(value):
        raise _fail(exc, f"{name} must be a number, got {value!r} ({type(value).__name__})", name)
    v = float(value)
    if math.isnan(v) or (finite and not math.isfinite(v)):
        raise _fail(exc, f"{name} must be a finite number, got {value!r}", name)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _fail(exc, f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {value!r}", name)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise _fail(exc, f"{name} must be {'<' if hi_open else '<='} {hi:g}, got {value!r}", name)
    return v


def as_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None,
           exc: type[SteOptError] = InvalidScenarioError) -> int:
    """An integer (an integral float such as ``64.0`` is accepted; ``2.5``, strings, bools not)."""
    if not _is_number(value):
        raise _fail(exc, f"{name} must be an integer, got {value!r} ({type(value).__name__})", name)
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        f = float(value)
        if not math.isfinite(f) or f != round(f):
            raise _fail(exc, f"{name} must be an integer, got {value!r}", name)
        v = int(f)
    if lo is not None and v < lo:
        raise _fail(exc, f"{name} must be >= {lo}, got {value!r}", name)
    if hi is not None and v > hi:
        raise _fail(exc, f"{name} must be <= {hi}, got {value!r}", name)
    return v


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def as_bool(value: Any, name: str, *, exc: type[SteOptError] = InvalidScenarioError) -> bool:
    """A boolean: ``True``/``False``, 0/1, or the strings true/false/yes/no/on/off/1/0 (any case);
    anything else (``"maybe"``, 2, None) is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str):
        s = value.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise _fail(exc, f"{name} must be a boolean (true/false), got {value!r}", name)


def as_choice(value: Any, name: str, choices: Sequence, *,
              exc: type[SteOptError] = InvalidScenarioError):
    """One of ``choices`` (compared exactly; strings are not coerced)."""
    if not isinstance(value, str) and any(isinstance(c, str) for c in choices):
        raise _fail(exc, f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", name)
    if value not in choices:
        raise _fail(exc, f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}", name)
    return value


def as_float_array(value: Any, name: str, *, ndim: int | None = None,
                   exc: type[SteOptError] = InvalidScenarioError) -> np.ndarray:
    """A numeric array: refuses strings, None, booleans and ragged nesting (naming the first bad
    entry); values may still be non-finite (the caller checks ranges)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise _fail(exc, f"{name} must be a number or a list of numbers, got {value!r}", name)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise _fail(exc, f"{name} is ragged or malformed (rows of different lengths?): {e}",
                        name) from None
        if arr.dtype.kind not in "fiu":
            flat = arr.reshape(-1) if arr.dtype == object or arr.ndim else arr.reshape(1)
            for i, x in enumerate(flat):
                if not _is_number(x):
                    where = f"[{i}]" if arr.ndim == 1 else f" (entry {i})"
                    raise _fail(exc, f"{name}{where} must be a number, got {x!r} "
                                     f"({type(x).__name__})", name)
            if arr.dtype == object and arr.ndim == 0:
                raise _fail(exc, f"{name} must be a number or a list of numbers", name)
    arr = np.asarray(arr, dtype=float)
    if ndim is not None and arr.ndim != ndim and not (ndim == 1 and arr.ndim == 0):
        raise _fail(exc, f"{name} must be {ndim}-D, got shape {arr.shape}", name)
    return arr


# ---------------------------------------------------------------------- declared options
@dataclass(frozen=True)
class Opt:
    """One declared option: ``type`` in {"int", "float", "bool", "str", "choice", "array",
    "mapping", "any"}, range
    ``lo``/``hi`` (``lo_open``/``hi_open`` for strict bounds), ``choices``, ``none_ok``."""

    type: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    none_ok: bool = False
    finite: bool = True

    def check(self, value: Any, name: str, exc: type[SteOptError] = SolverError):
        if value is None and self.none_ok:
            return None
        if self.type == "int":
            lo = None if self.lo is None else int(math.ceil(self.lo + (1e-9 if self.lo_open else 0)))
            return as_int(value, name, lo=lo, hi=None if self.hi is None else int(self.hi), exc=exc)
        if self.type == "float":
            return as_float(value, name, lo=self.lo, hi=self.hi, lo_open=self.lo_open,
                            hi_open=self.hi_open, finite=self.finite, exc=exc)
        if self.type == "bool":
            return as_bool(value, name, exc=exc)
        if self.type == "choice":
            return as_choice(value, name, self.choices, exc=exc)
        if self.type == "str":
            if not isinstance(value, str):
                raise _fail(exc, f"{name} must be a string, got {value!r}", name)
            return value
        if self.type == "array":   # a number or a 1-D list of numbers, finite, >= lo
            arr = as_float_array(value, name, ndim=1, exc=exc)
            if arr.size == 0 or not np.all(np.isfinite(arr)):
                raise _fail(exc, f"{name} must be finite numbers, got {value!r}", name)
            if self.lo is not None and np.any(arr < self.lo if not self.lo_open else arr <= self.lo):
                raise _fail(exc, f"{name} must be {'>' if self.lo_open else '>='} {self.lo:g}", name)
            return value
        if self.type == "mapping":   # a dict whose keys are among ``choices``
            if not isinstance(value, Mapping):
                raise _fail(exc, f"{name} must be a mapping, got {value!r}", name)
            bad = [k for k in value if k not in self.choices]
            if bad:
                raise _fail(exc, f"{name} has unknown key(s) {bad}; known: {', '.join(self.choices)}", name)
            return dict(value)
        return value

    def describe(self) -> str:
        if self.type == "choice":
            return "{" + ", ".join(map(str, self.choices)) + "}"
        out = self.type
        if self.lo is not None or self.hi is not None:
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            hi = "inf" if self.hi is None else f"{self.hi:g}"
            out += f" in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"
        if self.none_ok:
            out += " or null"
        return out


def check_options(specs: Mapping[str, Opt], options: Mapping[str, Any], owner: str,
                  exc: type[SteOptError] = SolverError) -> dict:
    """Check ``options`` against declared ``specs``: unknown names and bad values are refused
    naming ``owner`` and the option; returns the coerced options."""
    unknown = sorted(set(options) - set(specs))
    if unknown:
        known = ", ".join(f"{k} ({s.describe()})" for k, s in specs.items()) or "(none)"
        raise _fail(exc, f"{owner} has no option(s) {', '.join(unknown)}; its options are: {known}",
                    unknown[0])
    return {k: specs[k].check(v, f"{owner} option {k}", exc) for k, v in options.items()}


def check_preset_options(defaults: Mapping[str, Any], overrides: Mapping[str, Any],
                         ranges: Mapping[str, Opt] | None = None) -> dict:
    """Preset overrides: same type as the default (number, integer, ``(lo, hi)`` pair, string,
    tuple of numbers) and within ``ranges`` where declared; raises InvalidScenarioError."""
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise InvalidScenarioError(f"unknown preset option(s): {', '.join(unknown)}; known: "
                                   f"{', '.join(sorted(defaults))}", field=unknown[0])
    out = {}
    ranges = ranges or {}
    for key, v in overrides.items():
        d = defaults[key]
        if key in ranges:
            v = ranges[key].check(v, key, InvalidScenarioError)
        elif isinstance(d, bool):
            v = as_bool(v, key)
        elif isinstance(d, numbers.Integral):
            v = as_int(v, key)
        elif isinstance(d, numbers.Real):
            v = as_float(v, key, finite=math.isfinite(d))
        elif isinstance(d, str):
            if not isinstance(v, str):
                raise InvalidScenarioError(f"{key} must be a string, got {v!r}", field=key)
        elif isinstance(d, tuple):
            arr = as_float_array(list(v) if isinstance(v, (list, tuple)) else v, key, ndim=1)
            if not np.all(np.isfinite(arr)):
                raise InvalidScenarioError(f"{key} must hold finite numbers, got {v!r}", field=key)
            if len(d) == 2 and key not in ("bit_set",):
                if arr.shape != (2,) or arr[0] > arr[1] or arr[0] <= 0:
                    raise InvalidScenarioError(f"{key} must be a range (lo, hi) with 0 < lo <= hi, "
                                               f"got {v!r}", field=key)
            v = tuple(x for x in (v if isinstance(v, (list, tuple)) else [v]))
        out[key] = v
    return out


def check_size(n_elements: float, what: str, field: str = "n_devices") -> None:
    """Refuse an instance larger than ``max_elements`` before building it."""
    limit = get_limit("max_elements")
    if n_elements > limit:
        raise InvalidScenarioError(
            f"{what} has {int(n_elements):,} elements, above the limit of {limit:,} (set "
            f"STE_OPT_MAX_ELEMENTS or `generate --max-elements` to allow more)", field=field)


# ---------------------------------------------------------------------- files
def read_text(path: str | Path, what: str = "file",
              exc: type[SteOptError] = InvalidScenarioError) -> str:
    """UTF-8 text of a regular file no larger than ``max_file_bytes``; one-line errors."""
    p = Path(path)
    if not p.exists():
        raise _fail(exc, f"{what} {p}: no such file", "path")
    if not p.is_file():
        raise _fail(exc, f"{what} {p}: not a regular file", "path")
    limit = get_limit("max_file_bytes")
    try:
        size = p.stat().st_size
        if size > limit:
            raise _fail(exc, f"{what} {p}: {size:,} bytes, above the limit of {limit:,} "
                             f"(set STE_OPT_MAX_FILE_BYTES to allow more)", "path")
        raw = p.read_bytes()
    except OSError as e:
        raise _fail(exc, f"{what} {p}: cannot read ({e.strerror or e})", "path") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(exc, f"{what} {p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                    "path") from None


def _yaml():
    import yaml
    return yaml


def _check_expanded(root, limit: int) -> None:
    """Expanded node count with aliases counted at every use (memoized: linear in the file)."""
    yaml = _yaml()
    size: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[key] = 1
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = [x for pair in node.value for x in pair]
        if done:
            total = 1 + sum(size.get(id(c), 0) for c in children)
            if total > limit:
                raise InvalidScenarioError(
                    f"YAML document expands to more than {limit:,} nodes (nested aliases?); set "
                    "STE_OPT_MAX_YAML_NODES to allow more", field="path")
            size[key] = total
            continue
        size_pending = [c for c in children if id(c) not in size]
        stack.append((node, True))
        stack.extend((c, False) for c in size_pending)
        if len(stack) > 10 * limit:  # pragma: no cover - cycles are impossible in composed YAML
            raise InvalidScenarioError("YAML document is too large", field="path")


def load_yaml_text(text: str, source: str = "YAML",
                   exc: type[SteOptError] = InvalidScenarioError):
    """``yaml.safe_load`` with alias expansion bounded and parse errors as one line.

    The document is first composed with the safe loader (a node graph: no Python object is
    built) and its alias-expanded size checked against ``max_yaml_nodes``; only then is it
    loaded with ``yaml.safe_load``."""
    yaml = _yaml()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            _check_expanded(root, get_limit("max_yaml_nodes"))
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise _fail(exc, f"{source} is not valid YAML: {msg[:300]}", "path") from None
    except RecursionError:
        raise _fail(exc, f"{source}: YAML nested too deeply", "path") from None
    except InvalidScenarioError as e:
        if exc is InvalidScenarioError:
            raise
        raise _fail(exc, f"{source}: {e}", "path") from None


_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.I)


def parse_cli_value(text: str, source: str = "value", exc: type[SteOptError] = InvalidScenarioError):
    """A ``KEY=VALUE`` value from the command line: YAML rules (numbers, booleans, null, lists),
    plus numbers YAML 1.1 leaves as strings (``1e-3``, ``15e6``, ``nan``, ``inf``)."""
    v = load_yaml_text(text, source, exc)
    if isinstance(v, str) and _FLOAT_TEXT.match(v.strip()):
        return float(v)
    return v


def load_yaml_file(path: str | Path, what: str = "file",
                   exc: type[SteOptError] = InvalidScenarioError):
    return load_yaml_text(read_text(path, what, exc), f"{what} {path}", exc)


def _parent_ok(path: Path, exc: type[SteOptError]) -> None:
    for parent in [path.parent, *path.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise _fail(exc, f"cannot write {path}: {parent} is a file, not a folder", "output")
            break


def atomic_write_bytes(path: str | Path, data: bytes, exc: type[SteOptError] = InvalidScenarioError,
                       fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync,
    ``os.replace``); the folder is created; OSError becomes one line naming the path."""
    path = Path(path)
    _parent_ok(path, exc)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise _fail(exc, f"cannot write {path}: {e.strerror or e}", "output") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str, exc: type[SteOptError] = InvalidScenarioError,
                      fsync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), exc, fsync)


_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_name(name: Any, default: str = "run") -> str:
    """A safe single path component: letters, digits, ``.``, ``_``, ``-`` (others become ``_``);
    never empty, never ``.``/``..``, at most 100 characters."""
    s = _NAME_OK.sub("_", str(name)).strip("._")[:100]
    return s or default
