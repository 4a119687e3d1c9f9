"""Flower ServerApp: ``SplitFedTrainer.fit`` with every exchange carried by the Flower grid.

Run config keys (``[tool.flwr.app.config]`` or ``flwr run ... --run-config``):
``config`` (trainer config file or bundled name), ``rounds``, ``exchange``
(``round`` | ``per_batch`` | ``chunked:M``), ``allow-stale-client``, ``pull-interval``
(seconds; 0 = Flower's ``send_and_receive``), ``timeout`` (seconds per exchange), ``run-dir``
(the trainer's run folder: ``history.csv``, ``checkpoint.safetensors`` every
``output.checkpoint_every`` rounds; "" = none), ``resume`` (continue from ``run-dir``'s checkpoint,
with the checks of ``ste-opt train --resume``: a missing checkpoint, no ``run-dir`` or another config
is refused) and ``force`` (with ``resume``: accept another config, recorded in ``resumes.json``).
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


def flag(rc, key: str, default: bool = False) -> bool:
    """A boolean run-config value: a TOML bool, or ``true``/``false``/``1``/``0`` given as text
    (``--run-config "resume='false'"`` must not read as true)."""
    from ste_opt.errors import ConfigError

    v = rc.get(key, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise ConfigError(f"run config {key}={v!r}: expected true or false", key=key)


def train(rc, backend) -> list[dict]:
    """Build the trainer from the run config ``rc`` and fit (resuming when ``resume`` is set)."""
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    run_dir = str(rc.get("run-dir", "")) or None
    resume, force = flag(rc, "resume"), flag(rc, "force")
    trainer = SplitFedTrainer(resolve_config(str(rc["config"])), backend=backend, run_dir=run_dir or False,
                              progress=False, device=str(rc.get("device", "")) or None,
                              amp=str(rc.get("amp", "")) or None)
    return trainer.fit(int(rc.get("rounds", 1)), resume=resume, force=force)


@app.main()
def main(grid, context) -> None:
    import torch

    from ste_opt.learning_hooks.backends.flower_backend import FlowerBackend

    rc = context.run_config
    torch.set_num_threads(int(rc.get("torch-threads", 1)))
    pull = float(rc.get("pull-interval", 0.05))
    backend = FlowerBackend(exchange=str(rc.get("exchange", "round")), grid=grid,
                            allow_stale_client=flag(rc, "allow-stale-client"),
                            timeout_s=float(rc.get("timeout", 3600)),
                            pull_interval_s=pull if pull > 0 else None)
    history = train(rc, backend)
    for row in history:
        print(f"[ste-opt flower] round {row['round']}: test_acc={row['test_acc']:.4f} "
              f"train_loss={row['train_loss']:.4f} uplink_bits={row['uplink_bits']} "
              f"round_time_s={row['round_time_s']:.1f} messages={backend.last_messages}", flush=True)
    if backend.failures:
        print(f"[ste-opt flower] failed clients: {backend.failures}", flush=True)
