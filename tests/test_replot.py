"""``python -m benchmarks.<name> --replot`` redraws the figures from the committed CSVs without
re-running the benchmark (into a copy of the results folder here)."""
from __future__ import annotations

import shutil

import pytest

import benchmarks.common as common

FILES = {
    "ste_solvers": ["ste_solvers.csv"],
    "training": ["training.csv", "training_curves.csv"],
    "closed_loop": ["closed_loop_fading.csv", "closed_loop_ste_vs_k.csv", "closed_loop.json"],
    "ste_scaling": ["ste_scaling_convergence.csv"],
}
PNGS = {
    "ste_solvers": ["ste_solvers_time.png", "ste_solvers_alt_gap.png"],
    "training": ["training.png"],
    "closed_loop": ["closed_loop_fading.png", "closed_loop_ste_vs_k.png"],
    "ste_scaling": ["ste_scaling_convergence.png"],
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_replot_from_csv(name, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    src = common.RESULTS_DIR
    for f in FILES[name]:
        shutil.copy(src / f, tmp_path / f)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    module = __import__(f"benchmarks.{name}", fromlist=["main"])
    assert module.main(["--replot"]) == 0
    for png in PNGS[name]:
        assert (tmp_path / png).stat().st_size > 10_000, png
    assert not (tmp_path / f"{name}.md").exists()  # no section written: nothing was measured


def test_read_csv_decodes_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    common.write_csv("x", [{"a": 1, "b": 2.5, "c": None, "d": True, "e": "text"}])
    assert common.read_csv("x") == [{"a": 1, "b": 2.5, "c": None, "d": True, "e": "text"}]
    with pytest.raises(SystemExit):
        common.read_csv("missing")
