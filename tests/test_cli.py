"""The ``ste-opt`` CLI in process: generate -> solve -> files; methods; one-line errors (exit 2)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ste_opt import STEProblem
from ste_opt.cli import main
from ste_opt.io import load_scenario, load_solution


def test_generate_solve_writes_files(tmp_path, capsys):
    scen_path = tmp_path / "scen.yaml"
    assert main(["generate", "--devices", "6", "--seed", "3", "--set", "energy_max_j=0.5",
                 "-o", str(scen_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "n_devices=6" in out
    scen = load_scenario(scen_path)
    assert scen.n_devices == 6 and scen.seed == 3
    np.testing.assert_array_equal(scen.energy_max_j, 0.5)
    assert scen.bandwidth_hz == 30e6

    sol_path = tmp_path / "sol.json"
    assert main(["solve", str(scen_path), "--method", "alternating", "--option", "token_step=exact",
                 "-o", str(sol_path)]) == 0
    out = capsys.readouterr().out
    assert "method      alternating" in out and "objective" in out and "bandwidth_MHz" in out
    sol = load_solution(sol_path)
    assert sol.method == "alternating" and sol.info["token_step"] == "exact"
    pr = STEProblem(scen)
    assert pr.check(sol).ok
    assert sol.objective == pytest.approx(pr.evaluate(sol.tokens, sol.bandwidth, sol.power)["objective"])
    data = json.loads(sol_path.read_text())
    assert len(data["tokens"]) == 6


def test_solve_problem_options_and_quiet(tmp_path, capsys):
    scen_path = tmp_path / "scen.json"
    assert main(["generate", "--devices", "4", "--bandwidth-hz", "40e6", "-o", str(scen_path)]) == 0
    capsys.readouterr()
    assert main(["solve", str(scen_path), "--problem-option", "denominator=uplink", "--quiet",
                 "--method", "fixed_tokens", "--option", "tokens=100"]) == 0
    out = capsys.readouterr().out
    assert "method      fixed_tokens" in out and "bandwidth_MHz" not in out
    assert load_scenario(scen_path).bandwidth_hz == 40e6


def test_methods_lists_alternating_and_baselines(capsys):
    assert main(["methods", "--problem", "ste"]) == 0
    out = capsys.readouterr().out
    for name in ("alternating", "fixed_power", "equal_bandwidth", "all_tokens", "fixed_tokens"):
        assert name in out
    assert "token_step" in out


@pytest.mark.parametrize("argv_tail,needle", [
    (["--method", "nope"], "unknown method"),
    (["--option", "bogus=1"], "bogus"),
    (["--problem-option", "denominator=total"], "denominator"),
    (["--option", "noequals"], "key=value"),
])
def test_errors_print_one_line_and_exit_2(tmp_path, capsys, argv_tail, needle):
    scen_path = tmp_path / "scen.yaml"
    main(["generate", "--devices", "3", "-o", str(scen_path)])
    capsys.readouterr()
    assert main(["solve", str(scen_path), *argv_tail]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ste-opt solve: error:")
    assert needle in lines[0]
    assert cap.out == ""


def test_bad_input_file_and_preset(tmp_path, capsys):
    assert main(["solve", str(tmp_path / "missing.yaml")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: ste\ndistance_m: [1.0, 2.0]\n")
    assert main(["solve", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing scenario field" in err
    assert main(["generate", "--preset", "nope", "-o", str(tmp_path / "x.yaml")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["generate", "--set", "p_max_w=-1", "-o", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "p_max_w" in err and len(err.strip().splitlines()) == 1


def test_infeasible_instance_exits_3_with_deficit(tmp_path, capsys):
    scen_path = tmp_path / "scen.yaml"
    assert main(["generate", "--devices", "10", "--bandwidth-hz", "1e5", "-o", str(scen_path)]) == 0
    capsys.readouterr()
    assert main(["solve", str(scen_path)]) == 3   # the agreed exit code of an infeasible instance
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "MHz" in err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
