"""SFLAM's convergence constants fitted from pilot runs, stored with a run, refit on request.

The SFLAM problem prices a bit-width b through the rounds it needs,
``R(b) = ⌈A / (ε − B0 − C q(b))⌉``. The preset's placeholder constants (A 10, B0 0.05, C 5,
ε 0.2) give R(8) = R(16) = R(32) = 67 and R(4) = 79, so ``bcd`` always picks 8 bits whatever ω:
the accuracy coupling is inert. Here the constants come from pilots instead: short training runs
of the project's own split trainer, all tokens, at b ∈ {2, 4, 8, 32}, and the rounds each took to
reach test-error targets ε (``benchmarks/closed_loop.py --parts sflam``).

- :data:`DEFAULT_PILOTS` are those pilot rows as measured (``benchmarks/results/
  closed_loop_sflam_pilots.csv``; a test keeps the two identical);
- :func:`fit_pilots` fits A, B0, C (``ste_opt.problems.sflam.fit_convergence_model``);
- :func:`load_or_fit` keeps ``convergence.json`` (pilot rows, fit, ε) in a run folder: an existing
  file is reused, ``refit=True`` runs new pilots (``run_pilots``) or refits the given rows;
- :func:`fitted_preset_options` hands the constants to the ``"sflam"`` preset. The SFLAM closed
  loop (``SolverSchedule(kind="sflam")``) uses ``load_or_fit(trainer.run_dir)`` by default; to
  refit, pass the result of ``load_or_fit(run_dir, refit=True, train=...)`` as
  ``scenario_options={"convergence": constants}``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidScenarioError

__all__ = ["PilotRow", "DEFAULT_PILOTS", "FILE_NAME", "fit_pilots", "rounds_to_reach", "run_pilots",
           "load_or_fit", "fitted_preset_options", "default_epsilon"]

FILE_NAME = "convergence.json"


@dataclass(frozen=True)
class PilotRow:
    bits: int
    epsilon: float           # test-error target
    rounds_to_target: float  # inf: not reached


#: ``benchmarks/results/closed_loop_sflam_pilots.csv`` (vit_compact on digits, pretrained, all
#: tokens, 6 rounds per width; targets = quantiles 0.3/0.5/0.7 of the pooled error curves).
DEFAULT_PILOTS: tuple[PilotRow, ...] = tuple(
    PilotRow(b, e, r) for b, e, r in (
        (2, 0.0669, 5.0), (2, 0.0696, 5.0), (2, 0.0869, 3.0),
        (4, 0.0669, 3.0), (4, 0.0696, 3.0), (4, 0.0869, 2.0),
        (8, 0.0669, 4.0), (8, 0.0696, 4.0), (8, 0.0869, 3.0),
        (32, 0.0669, 4.0), (32, 0.0696, 4.0), (32, 0.0869, 3.0)))


def default_epsilon(pilots: Sequence[PilotRow] = DEFAULT_PILOTS) -> float:
    """The median pilot target: the accuracy goal the fitted constants describe best."""
    return float(np.median([p.epsilon for p in pilots]))


def fit_pilots(pilots: Sequence[PilotRow] = DEFAULT_PILOTS):
    """A, B0, C fitted to the pilot rows (a :class:`~ste_opt.problems.sflam.ConvergenceFit`)."""
    from ..model.convergence import fit_convergence_model

    if not pilots:
        raise InvalidScenarioError("no pilot rows to fit", field="pilots")
    return fit_convergence_model([p.bits for p in pilots], [p.rounds_to_target for p in pilots],
                                 [p.epsilon for p in pilots])


def rounds_to_reach(errors: Sequence[float], epsilon: float) -> float:
    """Rounds until the test error first reaches ``epsilon`` (``inf`` if never)."""
    for i, e in enumerate(errors):
        if e <= epsilon:
            return float(i + 1)
    return math.inf


def run_pilots(train: Callable[[int], Sequence[float]], bits: Sequence[int] = (2, 4, 8, 32),
               quantiles: Sequence[float] = (0.3, 0.5, 0.7)) -> list[PilotRow]:
    """Run one pilot per bit-width and turn the error curves into rows.

    ``train(b)`` trains a fresh model with every token at b bits and returns its test error after
    each round (e.g. ``1 - h["test_acc"]`` of ``SplitFedTrainer(...).fit(rounds)``). Targets are
    quantiles of the pooled curves, so every width passes them at different times.
    """
    curves = {int(b): [float(e) for e in train(int(b))] for b in bits}
    pooled = np.concatenate([np.asarray(v) for v in curves.values()])
    eps = sorted(set(np.round(np.quantile(pooled, list(quantiles)), 4).tolist()))
    return [PilotRow(b, float(e), rounds_to_reach(errs, e)) for b, errs in curves.items() for e in eps]


def _dump(path: Path, pilots: Sequence[PilotRow], fit, epsilon: float, source: str) -> None:
    doc = {"pilots": [asdict(p) for p in pilots],
           "fit": {"a": fit.a, "b0": fit.b0, "c": fit.c, "rmse_rel": fit.rmse_rel, "n_points": fit.n_points},
           "epsilon": float(epsilon), "source": source}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=lambda v: None if not math.isfinite(v) else v) + "\n")
    tmp.replace(path)


def load_or_fit(run_dir: str | Path | None = None, *, refit: bool = False,
                pilots: Sequence[PilotRow] | None = None,
                train: Callable[[int], Sequence[float]] | None = None,
                epsilon: float | None = None) -> dict:
    """The convergence constants of a run: ``{"conv_a", "conv_b0", "conv_c", "epsilon",
    "rmse_rel", "source", "pilots"}``.

    Order: ``run_dir/convergence.json`` when it exists and ``refit`` is false; otherwise fit
    ``pilots`` (or, with ``refit`` and ``train``, new pilots from :func:`run_pilots`; else
    :data:`DEFAULT_PILOTS`) and store the result in ``run_dir`` (when given).
    """
    path = Path(run_dir) / FILE_NAME if run_dir is not None else None
    if path is not None and path.is_file() and not refit:
        doc = json.loads(path.read_text())
        try:
            rows = [PilotRow(int(p["bits"]), float(p["epsilon"]),
                             math.inf if p["rounds_to_target"] is None else float(p["rounds_to_target"]))
                    for p in doc["pilots"]]
            f = doc["fit"]
            out = {"conv_a": float(f["a"]), "conv_b0": float(f["b0"]), "conv_c": float(f["c"]),
                   "epsilon": float(doc["epsilon"] if epsilon is None else epsilon),
                   "rmse_rel": float(f["rmse_rel"]), "source": str(doc.get("source", path)), "pilots": rows}
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidScenarioError(f"{path} is not a convergence fit: {exc}", field="convergence") from exc
        return out
    if refit and train is not None:
        rows, source = run_pilots(train), "pilots run for this run"
    elif pilots is not None:
        rows, source = list(pilots), "given pilot rows"
    else:
        rows, source = list(DEFAULT_PILOTS), "benchmarks/results/closed_loop_sflam_pilots.csv"
    fit = fit_pilots(rows)
    eps = default_epsilon(rows) if epsilon is None else float(epsilon)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _dump(path, rows, fit, eps, source)
    return {"conv_a": fit.a, "conv_b0": fit.b0, "conv_c": fit.c, "epsilon": eps, "rmse_rel": fit.rmse_rel,
            "source": source, "pilots": rows}


def fitted_preset_options(constants: Mapping | None = None, **extra) -> dict:
    """``preset_options`` for the ``"sflam"`` preset carrying the fitted constants."""
    c = load_or_fit() if constants is None else constants
    return {"conv_a": float(c["conv_a"]), "conv_b0": float(c["conv_b0"]), "conv_c": float(c["conv_c"]),
            "epsilon": float(c["epsilon"]), **extra}
