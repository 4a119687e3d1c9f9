"""Flower ClientApp: one SFL client; its role is rebuilt from the run config on each message.

In a deployment the SuperNode starts a new process for every message, so nothing survives between
messages except ``context.state`` (adapters, optimizer momentum, counters: see
``flower_backend``). The node's ``partition-id`` (``--node-config "partition-id=i"``) is its client
id; its data is that partition of the configured dataset.
"""
from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from flwr.clientapp import ClientApp  # noqa: E402

app = ClientApp()


class _ConfigRoles:
    """Client roles built from the run config (cached for the life of the process)."""

    _trainers: dict = {}

    def client_id(self, context) -> int:
        return int(context.node_config["partition-id"])

    def role(self, context, client: int):
        import torch

        from ste_opt.learning_hooks.trainer import SplitFedTrainer

        key = str(context.run_config["config"])
        tr = self._trainers.get(key)
        if tr is None:
            from pathlib import Path

            here = Path(__file__).resolve().parent / key
            torch.set_num_threads(int(context.run_config.get("torch-threads", 1)))
            rc = context.run_config  # device / amp: "" keeps the training config's
            tr = SplitFedTrainer(str(here) if here.is_file() else key, run_dir=False, progress=False,
                                 device=str(rc.get("device", "")) or None,
                                 amp=str(rc.get("amp", "")) or None)
            self._trainers[key] = tr
        return tr.clients[int(client)]


_ROLES = _ConfigRoles()


@app.train()
def train(message, context):
    from ste_opt.learning_hooks.backends.flower_backend import client_handle

    return client_handle(message, context, _ROLES)
