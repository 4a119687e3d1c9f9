"""Checkpoints that cannot run code, resume that refuses to mix runs, atomic run folders, and the
training-config reproducers of issue 16 (each one clear line, exit 2)."""
from __future__ import annotations

import csv
import json
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from ste_opt.cli import main  # noqa: E402
from ste_opt.errors import ConfigError  # noqa: E402
from ste_opt.learning_hooks import checkpoint as ck  # noqa: E402
from ste_opt.learning_hooks.config import load_config, merge  # noqa: E402
from ste_opt.learning_hooks.data import load_splits  # noqa: E402
from ste_opt.learning_hooks.trainer import SplitFedTrainer  # noqa: E402

TINY = {"name": "tiny", "data": {"image_size": 16},
        "model": {"patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 2, "cut_layer": 2,
                  "checkpoint": "none"},
        "lora": {"rank": 2, "alpha": 4},
        "federation": {"num_clients": 3, "clients_per_round": 2, "local_steps": 1, "batch_size": 8,
                       "rounds": 2, "min_client_size": 8},
        "compression": {"tokens_kept": 10, "bits": 4},
        "eval": {"batch_size": 512}}


@pytest.fixture(scope="module")
def splits():
    return load_splits("digits", image_size=16, seed=0)


@pytest.fixture(scope="module")
def run2(tmp_path_factory, splits):
    """A finished 2-round run folder (read-only for the tests: they copy it)."""
    d = tmp_path_factory.mktemp("run") / "r"
    tr = SplitFedTrainer(TINY, run_dir=d, progress=False, splits=splits)
    tr.fit()
    return d, tr


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('STE_EVIL_MARK', '/tmp/ste_evil_mark')}",))


def test_malicious_pickle_checkpoint_executes_nothing(tmp_path, splits, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("STE_EVIL_MARK", str(mark))
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"round": 0, "x": _Evil()}))
    tr = SplitFedTrainer(TINY, run_dir=run, progress=False, splits=splits)
    with pytest.raises(ConfigError, match="not loaded"):
        tr.fit(resume=True)
    # a pickle renamed to the new name is not a safetensors file either
    (run / ck.CHECKPOINT_NAME).write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ConfigError, match="not a readable safetensors"):
        tr.fit(resume=True)
    assert not mark.exists()


def test_checkpoint_roundtrip_and_contents(run2):
    d, tr = run2
    c = ck.load_checkpoint(d / ck.CHECKPOINT_NAME)
    assert c.round == 1 and [r["round"] for r in c.history] == [0, 1]
    assert set(c.client) == set(tr.client_global) and c.meta["config_hash"] == ck.config_hash(tr.config)
    for k, v in tr.server_global.items():
        np.testing.assert_array_equal(c.server[k], v)
    assert not list(d.glob("*.tmp")) and not list(d.glob(".*tmp"))


@pytest.mark.parametrize("damage", ["truncate", "random", "empty_adapters", "lost_round0", "edited_hash",
                                    "shape", "nonfinite"])
def test_damaged_checkpoints_are_one_line(tmp_path, run2, splits, damage):
    d = _copy(run2[0], tmp_path / "r")
    path = d / ck.CHECKPOINT_NAME
    raw = path.read_bytes()
    good = ck.load_checkpoint(path)
    meta = dict(good.meta)
    args = dict(round_idx=good.round, client=good.client, server=good.server, config=good.config,
                history=good.history, client_rows=good.client_rows)
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif damage == "empty_adapters":
        ck.save_checkpoint(path, **{**args, "server": {}})
    elif damage == "lost_round0":
        ck.save_checkpoint(path, **{**args, "history": good.history[1:]})
    elif damage == "shape":
        k = next(iter(good.server))
        ck.save_checkpoint(path, **{**args, "server": {**good.server, k: np.zeros((1, 1), np.float32)}})
    elif damage == "nonfinite":
        k = next(iter(good.server))
        ck.save_checkpoint(path, **{**args, "server": {**good.server, k: good.server[k] * np.nan}})
    else:
        from safetensors.numpy import save
        meta["config"] = {**meta["config"], "seed": 7}
        tensors = {f"client/{k}": v for k, v in good.client.items()}
        tensors.update({f"server/{k}": v for k, v in good.server.items()})
        path.write_bytes(save(tensors, metadata={"ste_opt": json.dumps(meta)}))
    tr = SplitFedTrainer(TINY, run_dir=d, progress=False, splits=splits)
    with pytest.raises(ConfigError) as err:
        tr.fit(rounds=3, resume=True)
    assert "\n" not in str(err.value) and str(d) in str(err.value)


def test_resume_refuses_another_config_and_force_records_it(tmp_path, run2, splits, capsys):
    d = _copy(run2[0], tmp_path / "r")
    before = (d / "history.csv").read_text()
    for change in ({"compression": {"bits": 8}}, {"seed": 3}, {"optim": {"lr": 0.5}}, {"lora": {"rank": 4}}):
        tr = SplitFedTrainer(merge(TINY, change), run_dir=d, progress=False, splits=splits)
        with pytest.raises(ConfigError) as err:
            tr.fit(rounds=3, resume=True)
        assert "another config" in str(err.value) or "lora" in str(err.value)
    assert (d / "history.csv").read_text() == before      # nothing mixed, nothing overwritten
    assert load_config(d / "config.yaml")["compression"]["bits"] == 4
    # more rounds with the same config is fine (rounds are not part of the hash)
    tr = SplitFedTrainer(merge(TINY, {"federation": {"rounds": 3}}), run_dir=d, progress=False, splits=splits)
    assert [r["round"] for r in tr.fit(resume=True)] == [0, 1, 2]
    # --force continues deliberately and records the change
    cfg = tmp_path / "c.yaml"
    import yaml
    cfg.write_text(yaml.safe_dump(merge(TINY, {"federation": {"rounds": 4}, "compression": {"bits": 8}})))
    base = ["train", "--config", str(cfg), "-o", str(d), "--no-progress", "--resume"]
    assert main(base) == 2 and "another config" in capsys.readouterr().err
    assert main([*base, "--force"]) == 0
    rec = json.loads((d / "resumes.json").read_text())
    assert rec[-1]["forced"] and rec[-1]["changed"]["compression.bits"] == [4, 8]
    assert ck.load_checkpoint(d / ck.CHECKPOINT_NAME).meta["resumes"][-1]["after_round"] == 2


def test_resume_without_checkpoint_says_so(tmp_path, splits, capsys):
    tr = SplitFedTrainer(TINY, run_dir=tmp_path / "empty", progress=False, splits=splits)
    with pytest.raises(ConfigError, match="no checkpoint"):
        tr.fit(resume=True)


def test_resume_equals_uninterrupted_bitwise(tmp_path, run2, splits):
    full = SplitFedTrainer(merge(TINY, {"federation": {"rounds": 3}}), run_dir=tmp_path / "a",
                           progress=False, splits=splits)
    full.fit()
    d = _copy(run2[0], tmp_path / "b")
    res = SplitFedTrainer(merge(TINY, {"federation": {"rounds": 3}}), run_dir=d, progress=False, splits=splits)
    res.fit(resume=True)
    for k, v in full.server_global.items():
        assert np.array_equal(v, res.server_global[k])
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k and "overhead" not in k} for r in rows]  # noqa: E731
    with open(tmp_path / "a" / "history.csv") as fa, open(d / "history.csv") as fb:
        assert strip(csv.DictReader(fa)) == strip(csv.DictReader(fb))


def test_history_write_is_atomic(tmp_path, run2, splits, monkeypatch):
    d = _copy(run2[0], tmp_path / "r")
    before = (d / "history.csv").read_text()
    tr = SplitFedTrainer(merge(TINY, {"federation": {"rounds": 3}}), run_dir=d, progress=False, splits=splits)
    tr.load_checkpoint()
    tr.run_round(2)

    def crash(*a, **k):
        raise OSError(5, "injected I/O error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ConfigError, match="injected"):
        tr._write_outputs()
    monkeypatch.undo()
    assert (d / "history.csv").read_text() == before          # old file intact, no partial row
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_run_name_is_sanitised(tmp_path, splits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = SplitFedTrainer(merge(TINY, {"name": "../../etc/x y"}), progress=False, splits=splits)
    assert tr.run_dir.parent.name == "runs" and ".." not in tr.run_dir.parts
    assert tr.run_dir.resolve().is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("override, key", [
    ("optim.lr=abc", "optim.lr"), ("optim.lr=inf", "optim.lr"), ("optim.lr=.nan", "optim.lr"),
    ("lora.dropout=2", "lora.dropout"), ("lora.alpha=-16", "lora.alpha"),
    ("model.num_heads=5", "model.num_heads"), ("output.checkpoint_every=-1", "output.checkpoint_every"),
    ("cores=5", "cores"), ("lora.client=maybe", "lora.client"), ("federation.rounds=2.5", "federation.rounds"),
    ("model=3", "model"), ("seed=-1", "seed"), ("compression.bits=12.5", "compression.bits"),
])
def test_config_values_refused_naming_the_key(override, key, capsys):
    with pytest.raises(ConfigError) as err:
        load_config("demo", [override])
    assert err.value.key == key
    assert main(["train", "--config", "demo", "--set", override, "--no-progress"]) == 2
    e = capsys.readouterr().err.strip()
    assert e.count("\n") == 0 and key.split(".")[-1] in e


def test_config_files_and_run_dir_refused(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_bytes(b"seed: \xff\n")
    assert main(["train", "--config", str(bad)]) == 2
    bomb = tmp_path / "b.yaml"
    bomb.write_text("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    assert main(["train", "--config", str(bomb)]) == 2
    garbage = tmp_path / "w.pt"
    garbage.write_bytes(b"\x00garbage" * 10)
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "--config", "demo", "--set", f"model.checkpoint={garbage}", "--set",
                 "federation.rounds=1", "-o", str(tmp_path / "r"), "--no-progress"]) == 2
    assert main(["train", "--config", "demo", "-o", str(f), "--no-progress"]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 4 and all(e.startswith("ste-opt train: error:") for e in errs)
