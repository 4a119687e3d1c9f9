"""Declared options of every solver method: name, type, range (checked before solving).

:data:`DECLARED` lists, per ``(kind, method)``, the options whose range or choices matter; an
option of a method's signature that is not declared gets the type of its default (``int``,
``float`` finite, ``bool`` parsed strictly, ``str``; anything when the default is ``None``).
:func:`option_specs` merges both; :func:`ste_opt.solvers.solve` checks every call with
:func:`ste_opt.validate.check_options`, so ``max_iter=-1``, ``rel_tol=nan``, ``strict=maybe`` or an
unknown name raise :class:`~ste_opt.errors.SolverError` naming the option.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

from ..validate import Opt

__all__ = ["DECLARED", "COMMON", "option_specs"]

_POS_INT = Opt("int", lo=1, hi=10**9)
_TOL = Opt("float", lo=0, hi=1)
_GAP = Opt("float", lo=0, hi=1)
_TIME = Opt("float", lo=0, lo_open=True)
_TOKEN_STEP = Opt("choice", choices=("closed_form", "exact", "knapsack"))
_MATCHING = Opt("choice", choices=("both", "swap", "hungarian"))
_POWER_STEP = Opt("choice", choices=("exact", "sca"))


def _count(hi: int, lo: int = 1) -> Opt:
    """An integer count with an upper bound: a small input must not ask for unbounded memory."""
    return Opt("int", lo=lo, hi=hi)


#: Options shared by name across methods (used when a method does not declare its own).
COMMON: dict[str, Opt] = {
    "max_iter": _count(100_000), "rel_tol": _TOL, "tol": _TOL, "mip_gap": _GAP, "gap": _GAP,
    "time_limit": _TIME, "max_nodes": _POS_INT, "n_init": _count(10_000), "n_tau": _count(10_000),
    "level_step": _count(10**6), "max_devices": _count(10**6), "max_combos": _POS_INT,
    "chunk": _count(10**7), "max_assignments": _POS_INT, "cache_size": _count(10_000, lo=0),
    "levels": _count(10_000, lo=2), "refine_levels": _count(10_000, lo=2), "seed": Opt("int", lo=0, hi=2**63 - 1),
    "token_step": _TOKEN_STEP, "matching": _MATCHING, "power_step": _POWER_STEP,
}

DECLARED: dict[tuple[str, str], dict[str, Opt]] = {
    ("ste", "alternating"): {
        "resource_step": Opt("choice", choices=("paper", "joint", "cvxpy")),
        "init": Opt("choice", choices=("equal", "joint")),
    },
    ("ste", "fixed_power"): {"power_w": Opt("array", lo=0, lo_open=True, none_ok=True)},
    ("ste", "fixed_tokens"): {"tokens": Opt("int", lo=1)},
    ("ste", "milp"): {"backend": Opt("choice", choices=("pyomo", "highspy")),
                      "refine": Opt("bool"), "presolve": Opt("bool")},
    ("ste", "scip"): {"progress_every_s": _TIME},
    ("ste", "global"): {"tables": Opt("choice", choices=("auto", "full", "none"))},
    ("sflam", "milp"): {"refine": _count(1000, lo=0)},
    ("sflam", "bcd"): {"sca_options": Opt("mapping", choices=("max_iter", "tol", "solver"), none_ok=True)},
    ("sflam", "fixed_bits"): {"bits": Opt("int", lo=1, hi=32)},
}


def _from_default(default) -> Opt:
    if default is None or default is inspect.Parameter.empty:
        return Opt("any", none_ok=True)
    if isinstance(default, bool):
        return Opt("bool")
    if isinstance(default, int):
        return Opt("int")
    if isinstance(default, float):
        return Opt("float")
    if isinstance(default, str):
        return Opt("str")
    return Opt("any", none_ok=True)


def option_specs(kind: str, name: str, func: Callable) -> dict[str, Opt]:
    """The option specs of a registered method: declared > common by name > type of the default."""
    params = list(inspect.signature(func).parameters.values())[1:]
    declared = DECLARED.get((kind, name), {})
    out = {}
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = declared.get(p.name) or COMMON.get(p.name) or _from_default(p.default)
    return out
