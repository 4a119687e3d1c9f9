"""YAML / JSON files for scenarios and solutions (safe loading only).

A scenario file is the mapping of ``Scenario.to_dict()`` (``kind`` says which scenario class);
a solution file is ``Solution.to_dict()``. Floats are written with full precision (repr), so a
round trip is lossless.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import InvalidScenarioError
from .problems.result import STATUSES, Solution
from .scenarios import scenario_classes
from .validate import as_float, as_float_array, atomic_write_text, load_yaml_text, read_text

__all__ = ["save_scenario", "load_scenario", "save_solution", "load_solution", "scenario_classes"]


def _fmt(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise InvalidScenarioError(f"unknown file type {suffix!r} for {path}: use .yaml, .yml or .json",
                               field="path")


def _dump(data: dict, path) -> Path:
    """Write atomically (temporary file + ``os.replace``); a folder that is a file, a full disk or
    a read-only place is one :class:`InvalidScenarioError` line."""
    path = Path(path)
    _fmt(path)
    if path.is_dir():
        raise InvalidScenarioError(f"cannot write {path}: it is a folder", field="output")
    if _fmt(path) == "json":
        text = json.dumps(data, indent=2)
    else:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    return atomic_write_text(path, text)


def _load(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    fmt = _fmt(path)
    text = read_text(path, "file")
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidScenarioError(f"{path} is not valid JSON: {exc}", field="path") from None
        except RecursionError:
            raise InvalidScenarioError(f"{path}: JSON nested too deeply", field="path") from None
    else:
        data = load_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise InvalidScenarioError(f"{path} must contain a mapping at top level", field="path")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise InvalidScenarioError(f"{path}: keys must be strings, got {bad[0]!r}", field="path")
    return data


def save_scenario(scenario, path) -> Path:
    """Write a scenario to ``.yaml``/``.yml``/``.json``."""
    return _dump(scenario.to_dict(), path)


def load_scenario(path):
    """Read a scenario written by :func:`save_scenario` (the class is chosen by ``kind``)."""
    data = _load(path)
    kind = data.get("kind", "ste")
    classes = scenario_classes()
    if not isinstance(kind, str) or kind not in classes:
        raise InvalidScenarioError(f"{path}: unknown scenario kind {kind!r}; known: {sorted(classes)}",
                                   field="kind")
    return classes[kind].from_dict(data)


def save_solution(solution: Solution, path) -> Path:
    return _dump(solution.to_dict(), path)


_SOLUTION_ARRAYS = ("tokens", "bandwidth", "power", "bits", "assignment", "latency", "uplink_time",
                    "energy", "retention")


def load_solution(path) -> Solution:
    """Read a solution written by :func:`save_solution`; anything else (a scenario file, missing
    or mistyped fields) is refused with one line."""
    data = _load(path)
    if "kind" in data and "status" not in data:
        raise InvalidScenarioError(f"{path} is a scenario file (kind: {data.get('kind')!r}), not a "
                                   "solution file", field="path")
    from dataclasses import fields

    names = {f.name for f in fields(Solution)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidScenarioError(f"{path}: unknown solution field(s) {', '.join(unknown)}", field=unknown[0])
    for req in ("status", "objective"):
        if req not in data:
            raise InvalidScenarioError(f"{path}: not a solution file (no {req!r})", field=req)
    if data["status"] not in STATUSES:
        raise InvalidScenarioError(f"{path}: status must be one of {', '.join(STATUSES)}, got "
                                   f"{data['status']!r}", field="status")
    data["objective"] = as_float(data["objective"], "objective", finite=False)
    for key in ("bound", "gap"):
        if data.get(key) is not None:
            data[key] = as_float(data[key], key, finite=False)
    n = None
    for key in _SOLUTION_ARRAYS:
        if data.get(key) is not None:
            arr = as_float_array(data[key], key, ndim=1)
            if n is not None and arr.shape[0] != n:
                raise InvalidScenarioError(f"{path}: {key} has {arr.shape[0]} entries, other arrays "
                                           f"{n}", field=key)
            n = arr.shape[0]
    for key, typ in (("excluded", list), ("history", list), ("info", dict)):
        if key in data and not isinstance(data[key], typ):
            raise InvalidScenarioError(f"{path}: {key} must be a {typ.__name__}", field=key)
    return Solution.from_dict(data)
