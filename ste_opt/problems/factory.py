"""Problem construction from a scenario and checked problem options (``--problem-option``)."""
from __future__ import annotations

from ..errors import InvalidScenarioError

__all__ = ["PROBLEM_OPTIONS", "build_problem"]


def _problem_options():
    from ..validate import Opt

    ref = Opt("float", lo=0, lo_open=True, none_ok=True)
    return {
        "ste": {"denominator": Opt("choice", choices=("round", "uplink")),
                "include_compute_energy": Opt("bool"), "weights": Opt("array", lo=0, none_ok=True),
                "retention_floor": Opt("float", lo=0, hi=1), "strict": Opt("bool")},
        "sflam": {"omega": Opt("float", lo=0, hi=1), "per_device_bits": Opt("bool"),
                  "t_ref": ref, "e_ref": ref, "bit_set": Opt("array", lo=1, none_ok=True)},
    }


#: Declared problem options per problem kind (``--problem-option KEY=VALUE``).
PROBLEM_OPTIONS = _problem_options()


def build_problem(scenario, **options):
    """The problem matching the scenario's kind, with its options checked first (unknown names,
    types and ranges refused with :class:`~ste_opt.errors.InvalidScenarioError`)."""
    from ..validate import check_options

    kind = getattr(scenario, "kind", None)
    if kind not in PROBLEM_OPTIONS:
        raise InvalidScenarioError(f"not a scenario: {type(scenario).__name__}", field="scenario")
    opts = check_options(PROBLEM_OPTIONS[kind], options, f"the {kind} problem", InvalidScenarioError)
    if kind == "sflam":
        from .sflam import SFLAMProblem
        return SFLAMProblem(scenario, **opts)
    from .ste import STEProblem
    return STEProblem(scenario, **opts)
