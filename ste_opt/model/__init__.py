"""The system model, pure numpy: one home for each formula (docs/MODEL.md, docs/ARCHITECTURE.md).

- :mod:`.channel`: rate, least bandwidth, least power, whole-window power, energy-limited power;
- :mod:`.payload`: payload bits, tokens on the wire, the bit-width rule;
- :mod:`.allocation`: upload windows, least straggler time, spare-bandwidth hand-out, admission;
- :mod:`.convergence`: q(b), rounds R(b), the fit of the convergence constants;
- :mod:`.semantics`: retention profiles and the STE metric.

Nothing here imports scenarios, problems, solvers or torch.
"""
from . import allocation, channel, convergence, payload, semantics

__all__ = ["allocation", "channel", "convergence", "payload", "semantics"]
