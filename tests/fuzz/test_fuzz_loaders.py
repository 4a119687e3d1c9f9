"""Random bytes, mutated YAML/JSON and mutated checkpoints for every loader.

Loaders: ``load_scenario`` (.yaml/.json), ``load_solution``, ``load_config`` (training config),
``load_checkpoint`` (safetensors + JSON metadata), the bounded YAML parser, the CLI ``solve``.
Asserts: only the package's own errors escape; what loads is valid (a loaded scenario solves and
its solution passes ``check()``; a loaded checkpoint has finite tensors matching its metadata).
"""
from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ste_opt.errors import SteOptError
from ste_opt.io import load_scenario, load_solution, save_scenario, save_solution
from ste_opt.problems.ste import STEProblem
from ste_opt.scenarios import make_scenario
from ste_opt.solvers import solve
from ste_opt.validate import load_yaml_text

from ._kit import fuzz_settings, record

_TMP = Path(tempfile.mkdtemp(prefix="ste_fuzz_"))
_SCEN = make_scenario("st-sflora", n_devices=3, seed=0, n_patches=16, k_min=4)
_SFLAM = make_scenario("sflam", n_devices=2, seed=0)
_SCEN_YAML = yaml.safe_dump(_SCEN.to_dict(), sort_keys=False, default_flow_style=None, width=120)
_SFLAM_JSON = json.dumps(_SFLAM.to_dict())
_SOL_JSON = json.dumps(solve(STEProblem(_SCEN), "alternating").to_dict())
_CFG_YAML = yaml.safe_dump({"name": "f", "seed": 1, "optim": {"lr": 0.1}, "lora": {"rank": 4, "alpha": 8},
                            "federation": {"num_clients": 4, "clients_per_round": 2},
                            "compression": {"bits": 8, "tokens_kept": 8}})
TOKENS = ["nan", ".nan", ".inf", "-1", "0", "null", "~", "'x'", "[1, [2]]", "{a: 1}", "1e999", "*x",
          "&x 1", "!!python/object:os.system ''", "true", "2.5", "\"15e6\"", "[]", "- -", ":", "\t"]


@st.composite
def mutations(draw, text: str):
    """Token-level and byte-level edits of a valid document."""
    s = text
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["token", "delete", "insert", "dup", "truncate"]))
        i = draw(st.integers(0, max(len(s) - 1, 0)))
        if kind == "token":
            j = min(len(s), i + draw(st.integers(1, 12)))
            s = s[:i] + draw(st.sampled_from(TOKENS)) + s[j:]
        elif kind == "delete":
            s = s[:i] + s[i + draw(st.integers(1, 20)):]
        elif kind == "insert":
            s = s[:i] + draw(st.text(max_size=8)) + s[i:]
        elif kind == "dup":
            lines = s.splitlines()
            if lines:
                k = draw(st.integers(0, len(lines) - 1))
                lines.insert(k, lines[k])
            s = "\n".join(lines)
        else:
            s = s[: i]
    return s


def _load(loader, path, category):
    try:
        obj = loader(path)
    except SteOptError as exc:
        record(category, f"refused:{type(exc).__name__}")
        return None
    record(category, "loaded")
    return obj


def _write(name: str, data) -> Path:
    p = _TMP / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return p


@fuzz_settings(short=40, long=1500)
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".yaml", ".json"]))
def test_random_bytes_for_every_loader(data, suffix):
    from ste_opt.learning_hooks.config import load_config

    p = _write(f"rnd{suffix}", data)
    _load(load_scenario, p, "bytes_scenario")
    _load(load_solution, p, "bytes_solution")
    _load(load_config, _write("rnd_cfg.yaml", data), "bytes_config")


@fuzz_settings(short=40, long=1500)
@given(text=mutations(_SCEN_YAML))
def test_mutated_scenario_yaml(text):
    scen = _load(load_scenario, _write("mut.yaml", text), "mutated_scenario_yaml")
    if scen is None or scen.kind != "ste":
        return
    try:
        pb = STEProblem(scen)
        sol = solve(pb, "alternating")
    except SteOptError as exc:
        record("mutated_scenario_solve", f"refused:{type(exc).__name__}")
        return
    assert pb.check(sol).ok
    record("mutated_scenario_solve", "solved")


@fuzz_settings(short=25, long=800)
@given(text=mutations(_SFLAM_JSON))
def test_mutated_sflam_json(text):
    _load(load_scenario, _write("mut.json", text), "mutated_sflam_json")


@fuzz_settings(short=25, long=800)
@given(text=mutations(_SOL_JSON))
def test_mutated_solution_json_and_check(text):
    sol = _load(load_solution, _write("sol.json", text), "mutated_solution")
    if sol is None:
        return
    try:
        rep = STEProblem(_SCEN).check(sol)
    except SteOptError as exc:
        record("mutated_solution_check", f"refused:{type(exc).__name__}")
        return
    record("mutated_solution_check", "ok" if rep.ok else "violations_reported")


@fuzz_settings(short=30, long=1000)
@given(text=mutations(_CFG_YAML))
def test_mutated_training_config(text):
    from ste_opt.learning_hooks.config import load_config

    _load(load_config, _write("cfg.yaml", text), "mutated_config")


def _checkpoint_bytes() -> bytes:
    from ste_opt.learning_hooks.checkpoint import save_checkpoint
    from ste_opt.learning_hooks.config import load_config

    rng = np.random.default_rng(0)
    p = _TMP / "good.safetensors"
    save_checkpoint(p, round_idx=1, client={"a.lora_A": rng.standard_normal((2, 4)).astype(np.float32)},
                    server={"b.lora_B": rng.standard_normal((4, 2)).astype(np.float32)},
                    config=load_config(None), history=[{"round": 0}, {"round": 1}])
    return p.read_bytes()


_CK = None


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in modules)


# the core install (CI's extra Pythons) has no torch/safetensors: these skip there
@pytest.mark.skipif(_missing("torch", "safetensors"), reason="needs the 'train' extra")
@fuzz_settings(short=40, long=1500)
@given(data=st.data())
def test_mutated_checkpoints(data):
    from ste_opt.learning_hooks.checkpoint import load_checkpoint

    global _CK
    if _CK is None:
        _CK = _checkpoint_bytes()
    raw = bytearray(_CK)
    how = data.draw(st.sampled_from(["flip", "truncate", "random", "splice"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "random":
        raw = bytearray(data.draw(st.binary(max_size=600)))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw = raw[:i] + data.draw(st.binary(min_size=1, max_size=40)) + raw[i:]
    ck = _load(load_checkpoint, _write("ck.safetensors", bytes(raw)), f"checkpoint_{how}")
    if ck is not None:
        for part in (ck.client, ck.server):
            for v in part.values():
                assert np.all(np.isfinite(v))
        assert [r["round"] for r in ck.history] == list(range(ck.round + 1))


@fuzz_settings(short=30, long=1000)
@given(depth=st.integers(1, 12), width=st.integers(1, 12))
def test_yaml_alias_nesting_is_bounded(depth, width):
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
                                for i in range(1, depth + 1)]
    try:
        out = load_yaml_text("\n".join(lines))
    except SteOptError:
        assert width ** depth > 1000   # refused only when the expansion is large
        record("yaml_aliases", "refused")
        return
    assert isinstance(out, dict)
    record("yaml_aliases", "loaded")


def test_roundtrip_still_works():
    p = _TMP / "ok.yaml"
    save_scenario(_SCEN, p)
    assert load_scenario(p).n_devices == 3
    s = solve(STEProblem(_SCEN), "alternating")
    save_solution(s, _TMP / "ok.json")
    assert load_solution(_TMP / "ok.json").objective == s.objective


def _cifar_pickles():
    import pickle

    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"fine_labels": [0, 1, 2, 3],
             b"filenames": [b"a", b"b", b"c", b"d"]}
    return pickle.dumps(batch, protocol=2), pickle.dumps(batch, protocol=4)


class _Evil:
    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.mark}",))


@pytest.mark.skipif(_missing("torch"), reason="needs the 'train' extra")
@fuzz_settings(short=30, long=1000)
@given(data=st.data())
def test_mutated_dataset_pickles_execute_nothing(data):
    """CIFAR batches (i13's restricted unpickler) under byte mutations and code-running pickles."""
    import pickle

    from ste_opt.learning_hooks.datasets import read_cifar

    root = _TMP / "cifar" / "cifar-100-python"
    root.mkdir(parents=True, exist_ok=True)
    mark = _TMP / "pwned"
    good = data.draw(st.sampled_from(_cifar_pickles()))
    how = data.draw(st.sampled_from(["flip", "truncate", "random", "evil", "evil_nested"]))
    raw = bytearray(good)
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "random":
        raw = bytearray(data.draw(st.binary(max_size=400)))
    elif how == "evil":
        raw = bytearray(pickle.dumps(_Evil(mark), protocol=data.draw(st.integers(0, 5))))
    else:
        raw = bytearray(pickle.dumps({b"data": [_Evil(mark)], b"fine_labels": [0]}, protocol=2))
    (root / "train").write_bytes(bytes(raw))
    (root / "test").write_bytes(good)
    try:
        read_cifar(root.parent, 100)
        record(f"cifar_{how}", "loaded")
    except SteOptError as exc:
        record(f"cifar_{how}", f"refused:{type(exc).__name__}")
    assert not mark.exists()
