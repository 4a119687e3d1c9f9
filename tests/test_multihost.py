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
  SuperNodes (``b``, ``c``); rounds 0–1 equal ``local``; then one SuperNode is killed and the
  next round completes with the failure recorded; with the SuperNode back, a ServerApp run with
  ``resume=true`` from the round-1 checkpoint gives round 2 bitwise equal to an uninterrupted
  ``local`` run.

Skipped with the reason when namespaces cannot be made (no root, no ``ip``). Every wait is
bounded; the namespaces are removed in ``finally``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
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
       "federation": {"num_clients": 4, "clients_per_round": 4, "partition": "iid", "local_steps": 20,
                      "batch_size": 4},
       "compression": {"tokens_kept": 6, "bits": 8, "grad_bits": 16},
       "output": {"checkpoint_every": 1}}


def _env(**extra) -> dict:
    env = dict(os.environ)
    # set to 0 by the single-machine Ray set-up of other tests (init_local_ray): a worker node
    # would then refuse to join ("multi-node clusters are not supported")
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
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


# ----------------------------------------------------------------------------- Flower
FL_CFG = {"name": "flower-multihost", "seed": 0, "data": {"name": "digits", "image_size": 16},
          "model": {"checkpoint": "random", "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
                    "cut_layer": 1},
          "lora": {"rank": 2, "client": False, "server": True},
          "federation": {"num_clients": 2, "clients_per_round": 2, "partition": "iid", "local_steps": 3,
                         "batch_size": 8},
          "compression": {"tokens_kept": 8, "bits": 8, "grad_bits": 16},
          "output": {"checkpoint_every": 1}}


FL_TIMEOUT = 45   # s per exchange: a deployed ClientApp starts a process (torch import) per message


def _make_certs(d: Path, ip: str) -> None:
    """A CA, a server certificate for ``ip`` and one OpenSSH ECDSA key pair per SuperNode."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ste-opt test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "superlink")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    for i in range(3):   # site2 is never registered
        k = ec.generate_private_key(ec.SECP384R1())
        (d / f"site{i}").write_bytes(k.private_bytes(pem, serialization.PrivateFormat.OpenSSH,
                                                     serialization.NoEncryption()))
        (d / f"site{i}.pub").write_bytes(k.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
        os.chmod(d / f"site{i}", 0o600)


def _history(run_dir: Path) -> list[dict]:
    import csv

    p = run_dir / "history.csv"
    if not p.is_file():
        return []
    with open(p) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_flower_superlink_tls_auth_two_supernodes_one_killed(tmp_path):
    pytest.importorskip("flwr")
    from ste_opt.learning_hooks.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from ste_opt.learning_hooks.trainer import SplitFedTrainer

    hosts = Hosts(["a", "b", "c"])
    try:
        link = hosts.addr["a"]
        certs = tmp_path / "certs"
        certs.mkdir()
        _make_certs(certs, link)
        home = tmp_path / "flwr-home"
        home.mkdir()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "tls"\n[superlink.tls]\naddress = "{link}:19493"\n'
            f'root-certificates = "{certs / "ca.crt"}"\n')
        env = _env(FLWR_HOME=str(home))
        hosts.popen("a", [str(VENV_BIN / "flower-superlink"), "--host", link, "--port", "19493",
                          "--ssl-ca-certfile", str(certs / "ca.crt"), "--ssl-certfile", str(certs / "server.pem"),
                          "--ssl-keyfile", str(certs / "server.key"), "--enable-supernode-auth",
                          "--disable-runtime-dependency-installation"],
                    env=env, log=tmp_path / "superlink.log", cwd=tmp_path)
        wait_for(lambda: _tcp_ready(hosts, "a", link, 19493), 60, "the SuperLink")
        for i in (0, 1):
            rc = hosts.run("a", [str(VENV_BIN / "flwr"), "supernode", "register", str(certs / f"site{i}.pub"),
                                 "tls"], env=env, timeout=60, log=tmp_path / "register.log")
            assert rc == 0, (tmp_path / "register.log").read_text()[-2000:]
        cfg_path = tmp_path / "fl.yaml"
        cfg_path.write_text(yaml.safe_dump(FL_CFG))
        app = ROOT / "ste_opt" / "learning_hooks" / "flower_app"

        def supernode(i: int, h: str):
            return hosts.popen(h, [str(VENV_BIN / "flower-supernode"), "--superlink", f"{link}:19493",
                            "--root-certificates", str(certs / "ca.crt"),
                            "--auth-supernode-private-key", str(certs / f"site{i}"),
                            "--port", str(19301 + i), "--max-retries", "3",
                            "--node-config", f"partition-id={min(i, 1)} num-partitions=2"],
                        env=env, log=tmp_path / f"supernode{i}.log", cwd=tmp_path)

        def flwr_run(run_dir: Path, rounds: int, extra: str = "") -> None:
            rc = hosts.run("a", [str(VENV_BIN / "flwr"), "run", str(app), "tls", "--run-config",
                                 f"config='{cfg_path}' rounds={rounds} exchange='round' timeout={FL_TIMEOUT} "
                                 f"pull-interval=0.05 run-dir='{run_dir}'{extra}"],
                           env=env, timeout=120, log=tmp_path / "flwr_run.log")
            assert rc == 0, (tmp_path / "flwr_run.log").read_text()[-2000:]

        for i, h in enumerate(("b", "c", "c")):
            # site2 (on host c, key not registered) must be refused by node authentication
            supernode(i, h)

        torch.set_num_threads(1)
        local = SplitFedTrainer(FL_CFG, run_dir=False, progress=False)
        local_rows = local.fit(rounds=2)
        run = tmp_path / "run"
        flwr_run(run, 3)
        # rounds 0-1 over TLS with authenticated SuperNodes on hosts b and c: equal to local
        wait_for(lambda: len(_history(run)) >= 2, 300, "two Flower rounds")
        # round 1's checkpoint (round 2 waits for a reply now), kept for the resume below
        # (history.csv is written just before the checkpoint)
        ck1 = tmp_path / "checkpoint_round1.safetensors"
        wait_for(lambda: load_checkpoint(shutil.copy(run / CHECKPOINT_NAME, ck1)).round >= 1, 30,
                 "the round-1 checkpoint")
        ck = load_checkpoint(ck1)
        assert ck.round == 1
        _assert_bitwise({f"server/{k}": v for k, v in ck.server.items()},
                        {f"server/{k}": v for k, v in local.server_global.items()})
        rows = _history(run)
        for r, ref in zip(rows[:2], local_rows):
            assert float(r["test_loss"]) == ref["test_loss"] and not r["failed_clients"]
        # the unregistered key (site2) was refused by node authentication
        assert "No SuperNode found with the given public key" in (tmp_path / "superlink.log").read_text(
            errors="replace")
        # host c (the SuperNode of client 1) killed during round 2: the round completes, failure recorded
        assert hosts.kill_host("c") > 0
        wait_for(lambda: len(_history(run)) == 3, FL_TIMEOUT + 240, "round 2 after the kill")
        last = _history(run)[2]
        assert last["failed_clients"] == "1" and int(last["clients"]) == 2, last
        wait_for(lambda: load_checkpoint(run / CHECKPOINT_NAME).round == 2, 30, "the round-2 checkpoint")
        # host c back; resume=true from the round-1 checkpoint (the last before the failure):
        # round 2 with both SuperNodes equals an uninterrupted local run of rounds 0-2
        # the SuperLink refuses to activate the key of the killed node while it is still "online"
        # (until two missed 30 s heartbeats): restart that SuperNode until it is activated
        link_log = tmp_path / "superlink.log"
        activated = link_log.read_text(errors="replace").count("Activated node_id")
        node = [supernode(1, "c")]

        def revived() -> bool:
            if link_log.read_text(errors="replace").count("Activated node_id") > activated:
                return True
            if node[0].poll() is not None:   # refused: end its group (SuperExec too), try again
                try:
                    os.killpg(node[0].pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                time.sleep(3)
                node[0] = supernode(1, "c")
            return False

        wait_for(revived, 150, "SuperNode site1 activated again", interval=1)
        resumed = tmp_path / "resumed"
        resumed.mkdir()
        shutil.copy(ck1, resumed / CHECKPOINT_NAME)
        flwr_run(resumed, 3, " resume=true")
        local_rows = local.fit(rounds=3)
        wait_for(lambda: len(_history(resumed)) == 3, FL_TIMEOUT + 240, "the resumed round 2")
        rows = _history(resumed)
        assert [r["round"] for r in rows] == ["0", "1", "2"] and not rows[2]["failed_clients"], rows
        assert rows[:2] == _history(run)[:2]   # rounds 0-1 come from the checkpoint (same times), not re-run
        assert float(rows[2]["test_loss"]) == local_rows[2]["test_loss"]
        wait_for(lambda: load_checkpoint(resumed / CHECKPOINT_NAME).round == 2, 30, "the round-2 checkpoint")
        _assert_bitwise({f"server/{k}": v for k, v in load_checkpoint(resumed / CHECKPOINT_NAME).server.items()},
                        {f"server/{k}": v for k, v in local.server_global.items()})
    finally:
        hosts.close()
