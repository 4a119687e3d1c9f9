"""Client role, server role and the local backend: the transport seam of the trainer.

The roles exchange only bytes:

- uplink, per local step: ``ClientRole.forward(round_idx, batch_idx) -> bytes``, a framed message
  (a JSON header: client, round, batch, bits, tokens_kept, extra_tokens, labels, need_grad; then
  the bit-packed :class:`~ste_opt.learning_hooks.compress.Payload`; :mod:`.framing`);
- downlink, per local step: ``ServerRole.step(payload_bytes, header) -> bytes`` (framed: header with
  loss/accuracy of the step, then the gradient payload at ``grad_bits``; empty when the client has
  nothing to train), consumed by ``ClientRole.backward(grad_bytes)``;
- once per round: adapter states as ``dict[str, numpy.ndarray]`` in a typed
  :class:`~ste_opt.learning_hooks.results.ClientRoundResult`, aggregated by
  :func:`~ste_opt.learning_hooks.federated.aggregate_numpy`.

The server follows SFL-V1: one copy of the server-side adapters (and optimizer state) per client of
the round, all starting from the global copy; ``end_round()`` returns them for FedAvg.

This module gathers the names under their historical import path; the code lives in
:mod:`.framing`, :mod:`.client_roles`, :mod:`.server_role` and :mod:`.backends` (``base``: the
:class:`~ste_opt.learning_hooks.backends.base.Backend` protocol and template round loop;
``local``: :class:`LocalBackend`; ``registry``: :func:`get_backend`).
"""
from __future__ import annotations

from .backends.base import Backend, RoundJob, RoundTemplate, attach_server_copies
from .backends.local import LocalBackend
from .backends.registry import BACKEND_MODULES, get_backend
from .client_roles import ClientRole, FedLoRAClientRole, LocalData, make_sgd
from .framing import frame, unframe
from .results import ClientRoundResult, ClientStats, ServerStats
from .server_role import ServerRole

__all__ = ["frame", "unframe", "ClientRole", "ServerRole", "FedLoRAClientRole", "LocalBackend",
           "attach_server_copies", "get_backend", "Backend", "RoundJob", "RoundTemplate",
           "BACKEND_MODULES", "ClientRoundResult", "ClientStats", "ServerStats", "LocalData", "make_sgd"]
