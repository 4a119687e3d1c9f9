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
from .problems.result import Solution
from .scenarios import scenario_classes

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
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if _fmt(path) == "json":
        path.write_text(json.dumps(data, indent=2))
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
    return path


def _load(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if _fmt(path) == "json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise InvalidScenarioError(f"{path} is not valid {_fmt(path).upper()}: {exc}", field="path") from exc
    if not isinstance(data, dict):
        raise InvalidScenarioError(f"{path} must contain a mapping at top level", field="path")
    return data


def save_scenario(scenario, path) -> Path:
    """Write a scenario to ``.yaml``/``.yml``/``.json``."""
    return _dump(scenario.to_dict(), path)


def load_scenario(path):
    """Read a scenario written by :func:`save_scenario` (the class is chosen by ``kind``)."""
    data = _load(path)
    kind = data.get("kind", "ste")
    classes = scenario_classes()
    if kind not in classes:
        raise InvalidScenarioError(f"{path}: unknown scenario kind {kind!r}; known: {sorted(classes)}",
                                   field="kind")
    return classes[kind].from_dict(data)


def save_solution(solution: Solution, path) -> Path:
    return _dump(solution.to_dict(), path)


def load_solution(path) -> Solution:
    return Solution.from_dict(_load(path))
