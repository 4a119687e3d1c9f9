"""Issue 16's reproducers: every hostile input ends in ONE clear line (no traceback) with the
agreed exit code (2 usage/input, 1 failure, 3 infeasible), and nonsense is refused up front.

Each class of the issue has a test here (CLI, scenario fields, solver options, problem options,
presets/size limits, YAML bombs, files, check()); training-config and checkpoint classes are in
``tests/test_checkpoint_resume.py``.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from ste_opt import STEProblem
from ste_opt.cli import main
from ste_opt.errors import ConfigError, InvalidScenarioError, SolverError, SteOptError
from ste_opt.io import load_scenario, load_solution, save_scenario
from ste_opt.scenarios import make_scenario
from ste_opt.scenarios.ste import Scenario
from ste_opt.solvers import solve
from ste_opt.validate import as_bool, limits, load_yaml_text


def _one_line_error(capsys, code, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, (argv, rc, err)
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("ste-opt "), err
    return err


@pytest.fixture(scope="module")
def scen_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("scen")
    path = d / "s.yaml"
    save_scenario(make_scenario("st-sflora", n_devices=4, seed=0), path)
    sfl = d / "f.yaml"
    save_scenario(make_scenario("sflam", n_devices=3, seed=0), sfl)
    return path, sfl


def _mutated(tmp_path, base, **changes):
    data = yaml.safe_load(base.read_text())
    for k, v in changes.items():
        data[k] = v
    out = tmp_path / "m.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


# ---------------------------------------------------------------------- scenario fields (class 2/4)
@pytest.mark.parametrize("field, value", [
    ("distance_m", [1.0, "x", 3.0, 4.0]),       # a string inside an array
    ("bandwidth_hz", None),                      # null
    ("bandwidth_hz", "15e6"),                    # a number as a string
    ("k_min", float("nan")),                     # .nan
    ("path_loss_exponent", float("nan")),
    ("retention", [[3.0, 2.0], [1.0]]),          # ragged
    ("n_patches", 2.5),
    ("seed", -1),
])
def test_scenario_field_types_refused_in_one_line(tmp_path, capsys, scen_file, field, value):
    path = _mutated(tmp_path, scen_file[0], **{field: value})
    with pytest.raises(InvalidScenarioError) as err:
        load_scenario(path)
    assert err.value.field == field
    _one_line_error(capsys, 2, ["solve", str(path)])


def test_non_utf8_and_random_bytes_and_wrong_suffix(tmp_path, capsys):
    bad = tmp_path / "b.yaml"
    bad.write_bytes(b"kind: ste\ndistance_m: [\xff\xfe]\n")
    assert "UTF-8" in _one_line_error(capsys, 2, ["solve", str(bad)])
    rnd = tmp_path / "r.json"
    rnd.write_bytes(bytes(np.random.default_rng(0).integers(32, 127, 500, dtype=np.uint8)))
    _one_line_error(capsys, 2, ["solve", str(rnd)])
    _one_line_error(capsys, 2, ["solve", str(tmp_path / "missing.yaml")])
    _one_line_error(capsys, 2, ["solve", str(tmp_path)])   # a folder


def test_yaml_alias_bomb_refused_quickly(tmp_path, capsys):
    # 9 levels of 10 aliases: 10^9 nodes once expanded, about 1 KB on disk
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("distance_m: *a9")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidScenarioError, match="expands to more than"):
        load_scenario(path)
    _one_line_error(capsys, 2, ["solve", str(path)])
    # a 13 KB variant (wider levels) is refused as well
    with pytest.raises(InvalidScenarioError):
        load_yaml_text("\n".join(lines * 12).replace("a", "b", 0), "bomb")
    with limits(max_yaml_nodes=50):
        with pytest.raises(InvalidScenarioError):
            load_yaml_text("[" + ", ".join(["1"] * 60) + "]")
    assert load_yaml_text("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_file_size_limit(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"kind": "ste", "pad": "x" * 5000}))
    monkeypatch.setenv("STE_OPT_MAX_FILE_BYTES", "1000")
    assert "above the limit" in _one_line_error(capsys, 2, ["solve", str(path)])


# ---------------------------------------------------------------------- solver / problem options
@pytest.mark.parametrize("method, option", [
    ("alternating", "max_iter=-1"), ("alternating", "max_iter=0"), ("alternating", "max_iter=abc"),
    ("alternating", "max_iter=2.5"), ("alternating", "rel_tol=nan"), ("alternating", "rel_tol=abc"),
    ("alternating", "token_step=fast"), ("global", "n_init=-3"), ("milp", "n_tau=0"),
    ("milp", "level_step=0"), ("milp", "refine=maybe"), ("alternating", "foo=1"),
])
def test_solver_options_refused_by_name(capsys, scen_file, method, option):
    err = _one_line_error(capsys, 2, ["solve", str(scen_file[0]), "--method", method, "--option", option])
    assert option.split("=")[0] in err


def test_sflam_options_refused(capsys, scen_file):
    for opt in ("time_limit=-1", "levels=1", "mip_gap=2"):
        _one_line_error(capsys, 2, ["solve", str(scen_file[1]), "--method", "milp", "--option", opt])
    _one_line_error(capsys, 2, ["solve", str(scen_file[1]), "--method", "bcd", "--option", "power_step=magic"])


def test_solver_options_in_the_api():
    pb = STEProblem(make_scenario("st-sflora", n_devices=3, seed=0))
    for bad in ({"max_iter": -1}, {"max_iter": True}, {"rel_tol": math.nan}, {"init": 3}):
        with pytest.raises(SolverError):
            solve(pb, "alternating", **bad)
    assert solve(pb, "alternating", max_iter=3.0).success  # an integral float is an integer
    assert as_bool("Yes", "x") is True and as_bool(0, "x") is False
    with pytest.raises(SolverError):
        as_bool("maybe", "strict", exc=SolverError)


@pytest.mark.parametrize("opt", ["foo=1", "strict=maybe", "denominator=both", "retention_floor=2"])
def test_problem_options_refused(capsys, scen_file, opt):
    _one_line_error(capsys, 2, ["solve", str(scen_file[0]), "--problem-option", opt])


# ---------------------------------------------------------------------- presets, sizes, CLI
@pytest.mark.parametrize("argv", [
    ["--seed", "-1"], ["--devices", "0"], ["--set", "population=-1"], ["--set", "profile_mass=0"],
    ["--set", "p_max_w=abc"], ["--set", "cores=5"], ["--bandwidth-hz", "nan"],
    ["--devices", "1000000"], ["--preset", "nope"],
])
def test_generate_refuses_up_front(tmp_path, capsys, argv):
    out = tmp_path / "x.yaml"
    _one_line_error(capsys, 2, ["generate", *argv, "-o", str(out)])
    assert not out.exists()


def test_size_limit_is_configurable(tmp_path, capsys):
    out = tmp_path / "x.json"
    err = _one_line_error(capsys, 2, ["generate", "--devices", "60", "--max-elements", "1000", "-o", str(out)])
    assert "limit of 1,000" in err
    assert main(["generate", "--devices", "60", "--max-elements", "20000", "-o", str(out)]) == 0


def test_outputs_that_cannot_be_written(tmp_path, capsys, scen_file):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, 2, ["generate", "-o", str(blocker / "x.json")])
    _one_line_error(capsys, 2, ["solve", str(scen_file[0]), "-o", str(blocker / "s.json")])
    _one_line_error(capsys, 2, ["generate", "-o", str(tmp_path / "x.xyz")])
    _one_line_error(capsys, 2, ["pareto", "sflam", "--devices", "3", "-o", str(tmp_path / "x.xyz")])


def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import os

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    err = _one_line_error(capsys, 2, ["generate", "-o", str(tmp_path / "x.json")])
    assert "No space left" in err
    assert not list(tmp_path.iterdir())   # no partial file, no temporary left behind


@pytest.mark.parametrize("argv", [
    ["--cap", "alternating=x"], ["--cap", "alternating"], ["--methods", "nope"],
    ["--preset", "nope"], ["--sizes", "0"],
])
def test_bench_refuses_up_front(capsys, argv):
    _one_line_error(capsys, 2, ["bench", "ste", "--sizes", "2", "--seeds", "0", *argv])


def test_infeasible_exits_3(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["generate", "--devices", "3", "--set", "energy_max_j=1e-9", "-o", str(out)]) == 0
    _one_line_error(capsys, 3, ["solve", str(out), "--problem-option", "strict=true"])


# ---------------------------------------------------------------------- check() and load_solution
def test_check_refuses_mismatched_solutions(tmp_path, scen_file):
    pb = STEProblem(make_scenario("st-sflora", n_devices=4, seed=0))
    sol = solve(pb, "alternating")
    other = solve(STEProblem(make_scenario("st-sflora", n_devices=3, seed=0)), "alternating")
    with pytest.raises(InvalidScenarioError, match="another instance"):
        pb.check(other)
    sol_none = solve(pb, "alternating")
    sol_none.tokens = None
    with pytest.raises(InvalidScenarioError, match="no tokens"):
        pb.check(sol_none)
    from ste_opt.problems.sflam import SFLAMProblem
    with pytest.raises(InvalidScenarioError):
        SFLAMProblem(make_scenario("sflam", n_devices=4, seed=0)).check(sol)   # an STE solution
    with pytest.raises(InvalidScenarioError, match="scenario file"):
        load_solution(scen_file[0])
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({"status": "optimal", "objective": "high"}))
    with pytest.raises(InvalidScenarioError, match="objective"):
        load_solution(bad)


def test_check_verifies_the_bound_side():
    pb = STEProblem(make_scenario("st-sflora", n_devices=4, seed=0))
    sol = solve(pb, "global")
    assert pb.check(sol).ok and sol.bound >= sol.objective
    sol.bound = sol.objective * 0.9          # a "bound" below the objective of a maximization
    rep = pb.check(sol)
    assert not rep.ok and rep.violations["bound"] > 0.05
    from ste_opt.problems.sflam import SFLAMProblem
    sp = SFLAMProblem(make_scenario("sflam", n_devices=3, seed=0))
    s2 = solve(sp, "hungarian") if sp.omega == 0 else solve(sp, "bcd")
    s2.bound = s2.objective * 1.5            # above the objective of a minimization
    assert sp.check(s2).violations["bound"] > 0.3


def test_with_retention_says_when_it_lowers_k_min(caplog):
    sc = make_scenario("st-sflora", n_devices=2, seed=0)
    with caplog.at_level("WARNING"):
        low = sc.with_retention(sc.retention[:, :20])
    assert low.k_min == 20 and low.meta["k_min_lowered"] == {"from": 64, "to": 20}
    assert "lowered" in caplog.text
    assert sc.with_retention(sc.retention[:, :40], k_min=5).k_min == 5
    with pytest.raises(InvalidScenarioError):
        sc.with_retention([[1.0, "a"], [1.0, 0.5]])


def test_sca_falls_back_to_the_exact_power_step(monkeypatch):
    import ste_opt.solvers.sflam.bcd as bcd
    from ste_opt.problems.sflam import SFLAMProblem

    def boom(*a, **k):
        raise SolverError("SCA power step failed: conic solver error")

    monkeypatch.setattr(bcd, "power_step_sca", boom)
    pb = SFLAMProblem(make_scenario("sflam", n_devices=4, seed=2))
    sol = solve(pb, "bcd", power_step="sca")
    assert sol.info["sca_fallbacks"] >= 1 and "conic" in sol.info["sca_fallback_reasons"][0]
    assert pb.check(sol).ok
    exact = solve(pb, "bcd")
    assert sol.objective == pytest.approx(exact.objective, rel=1e-9)


def test_errors_are_the_packages_own():
    assert issubclass(ConfigError, SteOptError) and issubclass(ConfigError, ValueError)
    assert ConfigError("x", key="optim.lr").key == "optim.lr"
    with pytest.raises(InvalidScenarioError):
        Scenario.from_dict({"kind": "ste", "distance_m": None})
