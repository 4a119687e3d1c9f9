"""ste-opt: resource allocation for split federated fine-tuning at the wireless edge.

Public API (see README): ``Scenario``, ``SFLAMScenario``, ``STEProblem``, ``SFLAMProblem``,
``solve``, ``list_methods``, ``Solution``, ``pareto``, the error classes, and the ``io`` helpers.
Heavy dependencies (torch, timm, peft, pyomo, pyscipopt) are imported only where used. The layout
is described in docs/ARCHITECTURE.md.
"""
from . import io, units
from .errors import InfeasibleError, InvalidScenarioError, SolverError, SteOptError
from .model import channel, semantics
from .problems.result import CheckReport, Solution
from .problems.sflam import SFLAMProblem
from .problems.ste import STEProblem
from .scenarios import PRESETS, Scenario, SFLAMScenario, make_scenario
from .solvers import list_methods, pareto, solve

__version__ = "0.1.0"

__all__ = [
    "Scenario", "SFLAMScenario", "make_scenario", "PRESETS", "STEProblem", "SFLAMProblem",
    "CheckReport", "Solution", "solve", "list_methods", "pareto", "InfeasibleError",
    "InvalidScenarioError", "SolverError", "SteOptError", "channel", "semantics", "units", "io",
    "__version__",
]
