"""SFLAM convergence constants fitted from pilots: stored with the run, refit on request, live in
the problem (R(b) differs across bit widths, so the bit choice is not fixed by placeholders)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from ste_opt.errors import InfeasibleError
from ste_opt.learning_hooks.sflam_convergence import (
    DEFAULT_PILOTS,
    FILE_NAME,
    PilotRow,
    default_epsilon,
    fitted_preset_options,
    load_or_fit,
    run_pilots,
)
from ste_opt.model.convergence import rounds_to_target
from ste_opt.problems.sflam import SFLAMProblem
from ste_opt.scenarios import make_scenario
from ste_opt.scenarios.sflam import SFLAM_DEFAULTS

PILOTS_CSV = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "closed_loop_sflam_pilots.csv"


def test_default_pilots_are_the_measured_rows():
    with PILOTS_CSV.open(newline="") as fh:
        rows = [PilotRow(int(r["bits"]), float(r["epsilon_test_error"]), float(r["rounds_to_target"]))
                for r in csv.DictReader(fh)]
    assert rows == list(DEFAULT_PILOTS)


def _rounds(c):
    return [rounds_to_target(b, c["conv_a"], c["conv_b0"], c["conv_c"], c["epsilon"]) for b in (2, 4, 8, 32)]


def test_fitted_constants_make_rounds_depend_on_bits(tmp_path):
    c = load_or_fit(tmp_path)
    assert (tmp_path / FILE_NAME).is_file()
    assert c["epsilon"] == default_epsilon()
    r = _rounds(c)
    assert r[0] > r[1] >= r[2] >= r[3] and r[0] < 20
    # the placeholder constants: 2 bits unreachable, 8 = 16 = 32 bits
    with pytest.raises(InfeasibleError):
        rounds_to_target(2, SFLAM_DEFAULTS["conv_a"], SFLAM_DEFAULTS["conv_b0"], SFLAM_DEFAULTS["conv_c"],
                         SFLAM_DEFAULTS["epsilon"])
    # the bit choice moves: placeholder constants pick 8 bits, fitted ones fewer
    bits = {}
    for name, opts in (("placeholder", {}), ("fitted", fitted_preset_options(c))):
        pr = SFLAMProblem(make_scenario("sflam", n_devices=4, seed=0, **opts), omega=0.5)
        from ste_opt import solve

        bits[name] = int(solve(pr, method="bcd").bits[0])
    assert bits["placeholder"] == 8 and bits["fitted"] < 8


def test_stored_fit_is_reused_and_refit_on_request(tmp_path):
    first = load_or_fit(tmp_path)
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    doc["fit"]["a"] = 0.5                                    # a stored fit wins over the defaults
    (tmp_path / FILE_NAME).write_text(json.dumps(doc))
    assert load_or_fit(tmp_path)["conv_a"] == 0.5
    calls = []

    def train(b):                                            # fake pilots: fewer bits, slower
        calls.append(b)
        return [0.5, 0.2, 0.1, 0.08, 0.07, 0.065] if b == 2 else [0.5, 0.1, 0.07, 0.065, 0.06, 0.06]

    again = load_or_fit(tmp_path, refit=True, train=train)
    assert calls == [2, 4, 8, 32]
    assert again["source"] == "pilots run for this run" and again["conv_a"] != 0.5
    assert json.loads((tmp_path / FILE_NAME).read_text())["fit"]["a"] == pytest.approx(again["conv_a"])
    assert first["conv_a"] > 0


def test_run_pilots_rows_and_schedule(tmp_path):
    rows = run_pilots(lambda b: [0.3, 0.2, 0.1] if b < 8 else [0.2, 0.1, 0.05], bits=(4, 8))
    assert {r.bits for r in rows} == {4, 8}
    assert all(r.rounds_to_target >= 1 or math.isinf(r.rounds_to_target) for r in rows)
    from ste_opt.learning_hooks.solver_schedule import SolverSchedule

    consts = load_or_fit(tmp_path)
    sched = SolverSchedule(kind="sflam", scenario_options={"convergence": consts})
    assert sched.kind == "sflam" and sched.scenario_options["convergence"]["conv_a"] == consts["conv_a"]


def test_closed_loop_scenario_uses_and_stores_the_fit(tmp_path):
    from ste_opt.learning_hooks.closed_loop.scaling import sflam_scenario_for_model
    from ste_opt.learning_hooks.spec import ModelSpec

    spec = ModelSpec(num_patches=16, embed_dim=32, batch_size=8, local_steps={0: 2, 1: 2, 2: 2},
                     client_sizes={0: 16, 1: 16, 2: 16}, cut_layer=1, depth=2, num_prefix_tokens=1,
                     client_params=100, image_size=32)
    fitted = sflam_scenario_for_model(spec, convergence_dir=tmp_path)
    assert (tmp_path / FILE_NAME).is_file()
    assert fitted.conv_a == pytest.approx(load_or_fit(tmp_path)["conv_a"])
    placeholder = sflam_scenario_for_model(spec, convergence="preset")
    assert placeholder.conv_a == SFLAM_DEFAULTS["conv_a"] != fitted.conv_a


def test_trainer_binds_its_run_folder_to_an_sflam_schedule(tmp_path):
    from ste_opt.learning_hooks.solver_schedule import SolverSchedule

    sched = SolverSchedule(kind="sflam")
    sched.bind_run_dir(tmp_path)
    assert sched.scenario_options["convergence_dir"] == tmp_path
    ste = SolverSchedule()
    ste.bind_run_dir(tmp_path)
    assert "convergence_dir" not in ste.scenario_options
