"""Flower ServerApp: ``SplitFedTrainer.fit`` with every exchange carried by the Flower grid.

Run config keys (``[tool.flwr.app.config]`` or ``flwr run ... --run-config``):
``config`` (trainer config file or bundled name), ``rounds``, ``exchange``
(``round`` | ``per_batch`` | ``chunked:M``), ``allow-stale-client``, ``pull-interval``
(seconds; 0 = Flower's ``send_and_receive``), ``timeout`` (seconds per exchange), ``run-dir``.
"""
from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from flwr.serverapp import ServerApp  # noqa: E402

app = ServerApp()


def resolve_config(name: str) -> str:
    """A config path relative to this app folder (the FAB), else the name as given."""
    from pathlib import Path

    here = Path(__file__).resolve().parent / name
    return str(here) if here.is_file() else name


@app.main()
def main(grid, context) -> None:
    import torch

    from ste_opt.learning_hooks.backends.flower_backend import FlowerBackend
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    rc = context.run_config
    torch.set_num_threads(int(rc.get("torch-threads", 1)))
    pull = float(rc.get("pull-interval", 0.05))
    backend = FlowerBackend(exchange=str(rc.get("exchange", "round")), grid=grid,
                            allow_stale_client=bool(rc.get("allow-stale-client", False)),
                            timeout_s=float(rc.get("timeout", 3600)),
                            pull_interval_s=pull if pull > 0 else None)
    run_dir = str(rc.get("run-dir", "")) or None
    trainer = SplitFedTrainer(resolve_config(str(rc["config"])), backend=backend, run_dir=run_dir or False,
                              progress=False, device=str(rc.get("device", "")) or None,
                              amp=str(rc.get("amp", "")) or None)
    history = trainer.fit(int(rc.get("rounds", 1)))
    for row in history:
        print(f"[ste-opt flower] round {row['round']}: test_acc={row['test_acc']:.4f} "
              f"train_loss={row['train_loss']:.4f} uplink_bits={row['uplink_bits']} "
              f"round_time_s={row['round_time_s']:.1f} messages={backend.last_messages}", flush=True)
    if backend.failures:
        print(f"[ste-opt flower] failed clients: {backend.failures}", flush=True)
