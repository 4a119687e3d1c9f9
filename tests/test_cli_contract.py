"""The CLI's contract (docs/cli.md): --json, ``-`` for stdin/stdout, one ``-o/--output`` validated
before any work, ``-q/-v`` on logging, exit codes, a closed pipe, and one clear line when an
optional extra (torch, ray, flwr, pyscipopt) is missing: simulated in a subprocess whose
``sitecustomize`` makes those imports fail as they do in a core-only install."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ste_opt.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scen_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "scen.yaml"
    assert main(["generate", "--devices", "5", "--seed", "1", "-o", str(path)]) == 0
    return path


def _one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ste-opt {command}: error:"), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------ --json

def test_solve_json_is_the_solution_with_its_check(scen_file, capsys):
    assert main(["solve", str(scen_file), "--method", "alternating", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["check"]["ok"] is True
    assert data["solution"]["method"] == "alternating"
    assert len(data["solution"]["tokens"]) == 5


def test_methods_json_lists_every_method(capsys):
    assert main(["methods", "--problem", "ste", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in data}
    assert {"alternating", "global", "fixed_power"} <= names
    assert all(m["kind"] == "ste" and isinstance(m["options"], list) for m in data)


def test_bench_json_and_csv_to_stdout(capsys):
    argv = ["bench", "ste", "--sizes", "4", "--seeds", "0", "--methods", "alternating"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 1 and data["summary"][0]["method"] == "alternating"
    assert main([*argv, "-o", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("preset,n_devices") and len(out) == 2


def test_pareto_json_points_and_csv_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["pareto", "sflam", "--devices", "4", "--omegas", "0,1", "--baselines", ""]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["omega"] for r in rows] == [0.0, 1.0]
    assert not (tmp_path / "front.png").exists()  # --json alone draws no figure
    assert main([*argv, "-o", str(tmp_path / "front.csv")]) == 0
    assert (tmp_path / "front.csv").read_text().startswith("method,omega")
    assert not (tmp_path / "front.png").exists()


# ------------------------------------------------------------------------- stdin / stdout

def test_generate_to_stdout_then_solve_from_stdin(monkeypatch, capsys):
    assert main(["generate", "--devices", "4", "-o", "-"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("kind: ste")
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["solve", "-", "-o", "-"]) == 0  # solution JSON on stdout, no summary
    sol = json.loads(capsys.readouterr().out)
    assert sol["method"] == "alternating" and len(sol["tokens"]) == 4


def test_training_config_from_stdin(monkeypatch):
    import argparse

    from ste_opt.commands._common import training_config

    monkeypatch.setattr(sys, "stdin", io.StringIO("name: piped\nfederation: {rounds: 3}\n"))
    args = argparse.Namespace(config="-", overrides=["optim.lr=0.05"], threads=None)
    cfg = training_config(args, [])
    assert cfg["name"] == "piped" and cfg["federation"]["rounds"] == 3
    assert cfg["optim"]["lr"] == 0.05


def test_stdin_garbage_is_an_input_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("- just\n- a list\n"))
    assert main(["solve", "-"]) == 2
    assert "mapping" in _one_error_line(capsys.readouterr().err, "solve")


# -------------------------------------------------------------- -o/--output, checked first

@pytest.mark.parametrize("argv,needle", [
    (["generate", "-o", "{tmp}/x.txt"], "unsupported file type"),
    (["solve", "{scen}", "-o", "{tmp}/x.csv"], "unsupported file type"),
    (["solve", "{scen}", "-o", "{tmp}/missing/x.json"], "does not exist"),
    (["solve", "{scen}", "-o", "{tmp}"], "unsupported file type"),
    (["bench", "ste", "--sizes", "3", "-o", "{tmp}/x.json"], "unsupported file type"),
    (["pareto", "sflam", "-o", "{tmp}/x.txt"], "unsupported file type"),
    (["demo", "-o", "{scen}"], "not a folder"),
    (["train", "-o", "{scen}"], "not a folder"),
    (["pretrain", "-o", "{tmp}/x.txt"], "unsupported file type"),
    (["genfl", "-o", "{scen}"], "not a folder"),
])
def test_bad_output_is_refused_before_any_work(tmp_path, scen_file, monkeypatch, capsys, argv, needle):
    import ste_opt.solvers as solvers

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("work started before the output was validated")

    monkeypatch.setattr(solvers, "solve", boom)
    monkeypatch.setattr("ste_opt.solvers.registry.solve", boom)
    argv = [a.format(tmp=tmp_path, scen=scen_file) for a in argv]
    assert main(argv) == 2
    assert needle in _one_error_line(capsys.readouterr().err, argv[0])


def test_old_output_names_still_work_with_a_warning(tmp_path, capsys):
    out = tmp_path / "b.csv"
    assert main(["bench", "ste", "--sizes", "3", "--seeds", "0", "--methods", "fixed_power",
                 "--csv", str(out)]) == 0
    assert out.read_text().startswith("preset,")
    assert "--csv is deprecated; use -o/--output" in capsys.readouterr().err
    for cmd, old in (("demo", "--out"), ("train", "--run-dir"), ("pretrain", "--out"),
                     ("genfl", "--out")):
        assert any(old in a.option_strings and a.help == "==SUPPRESS==" for a in
                   _subparser(cmd)._actions), (cmd, old)


def _subparser(name):
    from ste_opt.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def test_every_command_has_one_output_option_name():
    from ste_opt.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, p in sub.choices.items():
        visible = [s for a in p._actions if a.help != "==SUPPRESS==" for s in a.option_strings]
        for banned in ("--out", "--run-dir", "--csv"):
            assert banned not in visible, (name, banned)
        if name != "methods":
            assert "-o" in visible and "--output" in visible, name
        for flag in ("-q", "-v"):
            assert flag in visible, (name, flag)


# ---------------------------------------------------------------------- logging, exit codes

def test_quiet_and_verbose_set_logging_levels(scen_file, capsys):
    from ste_opt.cli import configure_logging

    log = logging.getLogger("ste_opt")
    before = (log.level, list(log.handlers), log.propagate)
    assert main(["solve", str(scen_file), "-v", "--json"]) == 0
    assert "[ste_opt.commands.solve] solving" in capsys.readouterr().err
    assert main(["-v", "solve", str(scen_file), "--json"]) == 0   # before the command too
    assert "[ste_opt.commands.solve] solving" in capsys.readouterr().err
    assert main(["solve", str(scen_file)]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "bandwidth_MHz" in cap.out
    assert main(["solve", str(scen_file), "-q"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "bandwidth_MHz" not in cap.out  # -q also drops the per-device table
    assert (log.level, list(log.handlers), log.propagate) == before  # restored after main()
    for verbosity, level in ((-1, logging.WARNING), (0, logging.INFO), (1, logging.DEBUG)):
        configure_logging(verbosity)
        assert log.level == level
    log.level, log.handlers[:], log.propagate = before[0], before[1], before[2]


def test_exit_codes_failure_and_interrupt(scen_file, monkeypatch, capsys):
    from ste_opt.errors import SolverError

    def fail(*a, **k):
        raise SolverError("numerical trouble")

    monkeypatch.setattr("ste_opt.solvers.solve", fail)
    assert main(["solve", str(scen_file)]) == 1
    assert "numerical trouble" in _one_error_line(capsys.readouterr().err, "solve")

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("ste_opt.solvers.solve", interrupt)
    assert main(["solve", str(scen_file)]) == 130
    assert capsys.readouterr().err.strip() == "ste-opt solve: interrupted"


def test_usage_errors_exit_2(capsys):
    assert main(["solve"]) == 2                        # argparse: missing argument
    assert main(["bench", "ste", "--cap", "milp"]) == 2
    assert "METHOD=N" in capsys.readouterr().err
    assert main(["--version"]) == 0


def _env(extra_pythonpath: str = "") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_pythonpath, str(ROOT),
                                                    env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_closed_stdout_pipe_ends_quietly():
    # about 3 MB of YAML: far more than a pipe holds, so writing hits the closed pipe
    proc = subprocess.Popen([sys.executable, "-m", "ste_opt.cli", "generate", "--devices", "2000",
                             "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), cwd=ROOT)
    assert proc.stdout.read(10) == b"kind: ste\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert err == ""


# --------------------------------------------------------------- missing optional extras

BLOCKER = textwrap.dedent('''
    import importlib.abc
    import sys

    BLOCKED = {"torch", "torchvision", "timm", "peft", "sklearn", "safetensors", "ray", "flwr",
               "pyscipopt"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
''')

DRIVER = textwrap.dedent('''
    import contextlib, io, json, sys, traceback
    from ste_opt.cli import main

    results = []
    for argv in json.loads(sys.argv[1]):
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except BaseException:
                rc, err = "raised", io.StringIO(traceback.format_exc())
        results.append({"argv": argv, "rc": rc, "err": err.getvalue(), "out": out.getvalue()})
    print(json.dumps(results))
''')


def test_core_only_install_gives_one_line_per_command(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    runs = [
        ["train", "--rounds", "1", "-o", str(tmp_path / "run")],
        ["pretrain", "--epochs", "1"],
        ["genfl", "--rounds", "1", "-o", str(tmp_path / "g")],
        ["bench", "ste", "--sizes", "3", "--seeds", "0", "--methods", "alternating",
         "--backend", "ray"],
        ["solve", str(tmp_path / "s.yaml"), "--method", "scip"],
        ["demo", "--devices", "4", "-o", str(tmp_path / "demo")],
    ]
    main(["generate", "--devices", "3", "-o", str(tmp_path / "s.yaml")])
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], capture_output=True,
                          text=True, env=_env(str(tmp_path)), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = {r["argv"][0]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
    for cmd, extra in (("train", "train"), ("pretrain", "train"), ("genfl", "train"),
                       ("bench", "dist")):
        r = res[cmd]
        assert r["rc"] == 1, r
        line = _one_error_line(r["err"], cmd)
        assert f"pip install 'ste-opt[{extra}]'" in line, line
    assert res["solve"]["rc"] == 1 and "pyscipopt" in _one_error_line(res["solve"]["err"], "solve")
    # demo: the optimization half runs, the training half is skipped with one warning line
    demo = res["demo"]
    assert demo["rc"] == 0, demo
    assert "method      alternating" in demo["out"]
    warn = [ln for ln in demo["err"].splitlines() if ln.strip()]
    assert len(warn) == 1 and "training part skipped" in warn[0] and "ste-opt[train]" in warn[0]
    assert (tmp_path / "demo" / "solution_alternating.json").is_file()
    assert not (tmp_path / "demo" / "history.csv").exists()


def test_solver_banner_stays_off_stdout_unless_verbose(scen_file):
    pytest.importorskip("highspy")
    argv = [sys.executable, "-m", "ste_opt.cli", "solve", str(scen_file), "--method", "milp",
            "--option", "backend=highspy", "--json"]
    quiet = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["solution"]["method"] == "milp"  # nothing but the JSON
    assert "HiGHS" not in quiet.stderr
    loud = subprocess.run([*argv, "-v"], capture_output=True, text=True, env=_env(), cwd=ROOT,
                          timeout=300)
    assert loud.returncode == 0 and json.loads(loud.stdout)["solution"]["method"] == "milp"
    assert "HiGHS" in loud.stderr


def test_stdin_has_the_file_limits(monkeypatch, capsys):
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(bomb))
    assert main(["solve", "-"]) == 2
    _one_error_line(capsys.readouterr().err, "solve")
    monkeypatch.setenv("STE_OPT_MAX_FILE_BYTES", "100")
    monkeypatch.setattr(sys, "stdin", io.StringIO("kind: ste\n" + "# padding\n" * 50))
    assert main(["solve", "-"]) == 2
    assert "more than 100" in _one_error_line(capsys.readouterr().err, "solve")


def test_library_prints_no_solver_banner():
    """Through the API (no CLI), milp with backend="highspy" writes nothing to stdout/stderr: the
    constructor's banner is dropped, the solver log goes to logging (quiet by default)."""
    pytest.importorskip("highspy")
    code = ("import ste_opt; p = ste_opt.STEProblem(ste_opt.Scenario.preset('st-sflora', "
            "n_devices=4, seed=1)); s = ste_opt.solve(p, 'milp', backend='highspy'); "
            "print('status', s.status)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("status ") and proc.stdout.count("\n") == 1
    assert proc.stderr == ""
