"""Driver of the multi-host Ray test (run inside the head's namespace by tests/test_multihost.py).

``train``: rounds 0..1 on the cluster, keep the round-1 checkpoint, then round 2 during which the
worker host ``--kill-ns`` is killed (SIGKILL of every process in its namespace) after a fraction
of round 1's duration; writes adapters and what the round recorded. ``resume``: a fresh backend
resumes the run folder to ``--rounds`` rounds. Results go to ``--out`` (JSON + .npz).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def adapters(tr):
    out = {f"client/{k}": v for k, v in tr.client_global.items()}
    out.update({f"server/{k}": v for k, v in tr.server_global.items()})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "resume"])
    ap.add_argument("--address", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--kill-ns", default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import ray

    from ste_opt.learning_hooks.backends.ray_backend import RayBackend
    from ste_opt.learning_hooks.checkpoint import CHECKPOINT_NAME
    from ste_opt.learning_hooks.config import load_config
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    cfg = load_config(args.config)
    run = Path(args.run_dir)
    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    t0 = time.monotonic()
    while len([n for n in ray.nodes() if n["Alive"]]) < 3:   # head + two worker hosts
        if time.monotonic() - t0 > 90:
            raise TimeoutError(f"cluster incomplete: {len(ray.nodes())} nodes after 90 s")
        time.sleep(0.25)
    backend = RayBackend(num_workers=2, address=args.address, worker_resources={"site": 1},
                         server_resources={"head": 1})
    out: dict = {}
    with SplitFedTrainer(cfg, backend=backend, run_dir=run, progress=False) as tr:
        if args.mode == "resume":
            hist = tr.fit(rounds=args.rounds, resume=True)
            out["rounds"] = [r["round"] for r in hist]
            out["failed"] = [r.get("failed_clients", "") for r in hist]
        else:
            tr.fit(rounds=1)                 # round 0 (includes the actors' start)
            t0 = time.perf_counter()
            tr.fit(rounds=2)                 # round 1: the duration of a round
            t_round = time.perf_counter() - t0
            shutil.copy(run / CHECKPOINT_NAME, run / "checkpoint_round1.safetensors")
            np.savez(Path(args.out).with_suffix(".round1.npz"), **adapters(tr))
            killed = {}

            def kill():
                time.sleep(0.35 * t_round)
                pids = subprocess.run(["ip", "netns", "pids", args.kill_ns], capture_output=True,
                                      text=True, timeout=20).stdout.split()
                for p in pids:
                    try:
                        os.kill(int(p), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed["n"], killed["t"] = len(pids), time.perf_counter()

            th = threading.Thread(target=kill, daemon=True)
            t2 = time.perf_counter()
            th.start()
            row = tr.fit(rounds=3)[-1]
            out["round2_s"] = time.perf_counter() - t2
            th.join(timeout=30)
            out.update(round_s=t_round, killed=killed.get("n", 0),
                       kill_at_s=killed.get("t", t2) - t2, failed_clients=row["failed_clients"],
                       failures=backend.failures, clients_in_round=row["clients"])
        np.savez(Path(args.out).with_suffix(".npz"), **adapters(tr))
    Path(args.out).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
