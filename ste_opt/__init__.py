"""ste-opt: resource allocation for split federated fine-tuning at the wireless edge.

Public API (see README): ``Scenario``, ``STEProblem``, ``SFLAMProblem``, ``solve``,
``list_methods``, ``Solution``, ``pareto``, the error classes, and the ``io`` helpers.
Heavy dependencies (torch, timm, peft, pyomo, pyscipopt) are imported only where used.
"""
from . import channel, io, semantics, units
from .errors import InfeasibleError, InvalidScenarioError, SolverError, SteOptError
from .problems.ste import CheckReport, STEProblem
from .scenario import PRESETS, Scenario, make_scenario
from .solvers import Solution, list_methods, solve

__version__ = "0.1.0"

__all__ = [
    "Scenario", "make_scenario", "PRESETS", "STEProblem", "CheckReport", "Solution", "solve",
    "list_methods", "InfeasibleError", "InvalidScenarioError", "SolverError", "SteOptError",
    "channel", "semantics", "units", "io", "__version__",
]

try:  # the SFLAM problem is optional until its module exists
    from .problems.sflam import SFLAMProblem, pareto  # noqa: F401
    from .scenario_sflam import SFLAMScenario  # noqa: F401
    __all__ += ["SFLAMProblem", "SFLAMScenario", "pareto"]
except ModuleNotFoundError as _exc:  # pragma: no cover
    if _exc.name not in ("ste_opt.problems.sflam",):
        raise
