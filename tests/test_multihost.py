"""Faults across hosts: Ray and Flower across network namespaces (issue 16, item 6).

Hosts are network namespaces joined by a bridge in a switch namespace, with addresses
10.231.16.x that exist only inside them (``tests/multihost/netns.py``); all traffic stays there.

* **Ray**: a head (``a``: driver + server actor) and two worker hosts (``b``, ``c``: one client
  worker actor each). Rounds 0–1 end with adapters bitwise equal to ``local``; host ``b`` is
  killed (SIGKILL of every process in its namespace) in the middle of round 2: the round
  completes with ``c``'s clients, ``b``'s clients recorded as failed; with ``b`` back, resuming
  from the round-1 checkpoint gives adapters bitwise equal to an uninterrupted ``local`` run.
* **Flower**: a SuperLink (``a``) with TLS (a CA and a server certificate made here) and
  SuperNode authentication (keys made here, registered with ``flwr supernode register``), two
  SuperNodes (``b``, ``c``); one round equals ``local``; then one SuperNode is killed and the
  next round completes with the failure recorded.

Skipped with the reason when namespaces cannot be made (no root, no ``ip``). Every wait is
bounded; the namespaces are removed in ``finally``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from multihost.netns import Hosts, netns_unavailable_reason, wait_for

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REASON = netns_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"multi-host tests need network namespaces: {REASON}")

CFG = {"name": "multihost", "seed": 3, "data": {"image_size": 16},
       "model": {"checkpoint": "random", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
                 "cut_layer": 1},
       "lora": {"rank": 2},
       "federation": {"num_clients": 4, "clients_per_round": 4, "partition": "iid", "local_steps": 30,
                      "batch_size": 4},
       "compression": {"tokens_kept": 6, "bits": 8, "grad_bits": 16},
       "output": {"checkpoint_every": 1}}


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), PATH=f"{VENV_BIN}:{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               RAY_USAGE_STATS_ENABLED="0", FLWR_TELEMETRY_ENABLED="0", RAY_DEDUP_LOGS="0",
               RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")
    env.update(extra)
    return env


def _adapters(tr) -> dict:
    out = {f"client/{k}": v for k, v in tr.client_global.items()}
    out.update({f"server/{k}": v for k, v in tr.server_global.items()})
    return out


def _assert_bitwise(a, b):
    assert set(a) == set(b) and a
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def local_ref():
    """Adapters of an uninterrupted local run after 2 and after 4 rounds (torch threads = 1)."""
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    torch.set_num_threads(1)
    tr = SplitFedTrainer(CFG, run_dir=False, progress=False)
    tr.fit(rounds=2)
    r2 = {k: v.copy() for k, v in _adapters(tr).items()}
    tr.fit(rounds=4)
    return r2, _adapters(tr)


def _tcp_ready(hosts, host, ip, port):
    return hosts.run(host, ["bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"], timeout=10) == 0


def _ray_node(hosts, host, tmp, head_ip, resources, log_dir):
    temp = Path(f"/tmp/r16{hosts.tag}{host}{len(hosts.procs)}")   # short: unix socket paths
    temp.mkdir(parents=True, exist_ok=True)
    common = ["--block", "--node-ip-address", hosts.addr[host], "--num-cpus", "1",
              "--resources", json.dumps(resources), "--temp-dir", str(temp),
              "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    if host == "a":
        argv = [str(VENV_BIN / "ray"), "start", "--head", "--port", "6379", "--include-dashboard", "false",
                *common]
    else:
        argv = [str(VENV_BIN / "ray"), "start", "--address", f"{head_ip}:6379", *common]
    return hosts.popen(host, argv, env=_env(), log=log_dir / f"ray_{host}.log"), temp


@pytest.mark.slow
def test_ray_head_and_workers_in_namespaces_survive_a_killed_host(tmp_path, local_ref):
    pytest.importorskip("ray")
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(CFG))
    run_dir = tmp_path / "run"
    hosts = Hosts(["a", "b", "c"])
    temps = []
    try:
        head = hosts.addr["a"]
        _, t = _ray_node(hosts, "a", tmp_path, head, {"head": 1}, tmp_path)
        temps.append(t)
        wait_for(lambda: _tcp_ready(hosts, "a", head, 6379), 60, "the Ray head")
        for h in ("b", "c"):
            temps.append(_ray_node(hosts, h, tmp_path, head, {"site": 1}, tmp_path)[1])
        driver = [sys.executable, str(ROOT / "tests" / "multihost" / "ray_driver.py")]
        common = ["--address", f"{head}:6379", "--config", str(cfg_path), "--run-dir", str(run_dir)]
        out = tmp_path / "train.json"
        rc = hosts.run("a", [*driver, "train", *common, "--out", str(out), "--kill-ns", hosts.ns["b"]],
                       env=_env(), timeout=240, log=tmp_path / "driver_train.log")
        assert rc == 0, (tmp_path / "driver_train.log").read_text()[-3000:]
        res = json.loads(out.read_text())
        # rounds 0-1 across three hosts: bitwise equal to local
        _assert_bitwise(dict(np.load(out.with_suffix(".round1.npz"))), local_ref[0])
        # round 2: host b killed mid-round, the round completed with c's clients, failures recorded
        assert res["killed"] > 0 and res["kill_at_s"] < res["round2_s"]
        assert res["failed_clients"], res
        failed = {int(c) for c in res["failed_clients"].split(";")}
        assert failed and len(failed) < CFG["federation"]["num_clients"]
        assert {f["client"] for f in res["failures"]} == failed
        import csv
        with open(run_dir / "history.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["round"] for r in rows] == ["0", "1", "2"] and rows[2]["failed_clients"]
        # host b back; resume from the last checkpoint before the failure: same result as local
        temps.append(_ray_node(hosts, "b", tmp_path, head, {"site": 1}, tmp_path)[1])
        shutil.copy(run_dir / "checkpoint_round1.safetensors", run_dir / "checkpoint.safetensors")
        out2 = tmp_path / "resume.json"
        rc = hosts.run("a", [*driver, "resume", *common, "--out", str(out2), "--rounds", "4"],
                       env=_env(), timeout=240, log=tmp_path / "driver_resume.log")
        assert rc == 0, (tmp_path / "driver_resume.log").read_text()[-3000:]
        res2 = json.loads(out2.read_text())
        assert res2["rounds"] == [0, 1, 2, 3] and not any(res2["failed"])
        _assert_bitwise(dict(np.load(out2.with_suffix(".npz"))), local_ref[1])
    finally:
        hosts.close()
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)
