"""Packaging facts: one version source, py.typed shipped, LICENSE and CITATION.cff consistent with
pyproject, build outputs ignored, the cache folder and its overrides, Python 3.10 dependency."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

import ste_opt
from ste_opt.cache import ENV_VAR, cache_dir

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_has_one_source(pyproject):
    proj = pyproject["project"]
    assert "version" not in proj and "version" in proj["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ste_opt.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", ste_opt.__version__)
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == ste_opt.__version__
    assert f"[{ste_opt.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_typed_license_classifiers_and_python310_dependency(pyproject):
    assert (ROOT / "ste_opt" / "py.typed").is_file()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["ste_opt"]
    proj = pyproject["project"]
    assert proj["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    classifiers = proj["classifiers"]
    assert "License :: OSI Approved :: MIT License" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert proj["requires-python"] == ">=3.10"
    deps = proj["dependencies"]
    assert any(d.startswith("typing_extensions") and "python_version < '3.11'" in d for d in deps)
    assert any(d.startswith("platformdirs") for d in deps)
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert "build/" in gitignore and "dist/" in gitignore


def test_citation_names_the_four_papers_without_invented_dois():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    refs = {r["abbreviation"]: r for r in cff["references"]}
    assert set(refs) == {"ST-SFLora", "TSFLora", "SFLAM", "GenFL"}
    ids = {k: r["identifiers"][0]["value"] for k, r in refs.items()}
    assert ids == {"ST-SFLora": "arXiv:2605.26120", "TSFLora": "arXiv:2605.23988",
                   "SFLAM": "arXiv:2504.09114", "GenFL": "arXiv:2503.20166"}
    text = (ROOT / "CITATION.cff").read_text()
    assert not re.search(r"\b10\.\d{4,}/", text)           # no DOI written anywhere
    assert "doi" not in cff and all("doi" not in r for r in refs.values())
    for r in refs.values():
        assert r["authors"] and r["title"] and r["year"]


def test_cache_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    default = cache_dir()
    assert default.name == "ste-opt" and default != Path.cwd() / ".cache"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert cache_dir("genfl") == tmp_path / "env" / "genfl"
    assert cache_dir(override=tmp_path / "cfg") == tmp_path / "cfg"   # the config key wins


def test_pretrained_path_follows_the_cache(tmp_path, monkeypatch):
    from ste_opt.learning_hooks.config import default_checkpoint_path, load_config

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    cfg = load_config("demo")
    assert default_checkpoint_path(cfg).parent == tmp_path / "env"
    cfg = load_config("demo", [f"output.cache_dir={tmp_path / 'key'}"])
    assert default_checkpoint_path(cfg).parent == tmp_path / "key"
