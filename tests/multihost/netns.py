"""Test hosts in network namespaces: a switch namespace with a bridge, one namespace per host,
addresses 10.231.16.<i>/24 that exist only inside these namespaces (no route to anything else).

Used by ``tests/test_multihost.py``; every wait is bounded and :meth:`Hosts.close` removes every
namespace and kills every process started in them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

SUBNET = "10.231.16"


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "no `ip` command (install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"ste16p{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


class Hosts:
    """``Hosts(["a", "b", "c"])``: namespaces ``<tag>a``... with addresses ``10.231.16.1``..."""

    def __init__(self, names, tag: str | None = None):
        self.tag = tag or f"s16{uuid.uuid4().hex[:4]}"
        self.switch = f"{self.tag}sw"
        self.ns = {n: f"{self.tag}{n}" for n in names}
        self.addr = {n: f"{SUBNET}.{i + 1}" for i, n in enumerate(names)}
        self.procs: list[subprocess.Popen] = []
        try:
            subprocess.run(["ip", "netns", "add", self.switch], check=True, timeout=20, capture_output=True)
            _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
            _ip("link", "set", "br0", "up", ns=self.switch)
            for i, (n, ns) in enumerate(self.ns.items()):
                subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20, capture_output=True)
                _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{i}",
                    "netns", self.switch)
                _ip("link", "set", f"p{i}", "master", "br0", ns=self.switch)
                _ip("link", "set", f"p{i}", "up", ns=self.switch)
                _ip("addr", "add", f"{self.addr[n]}/24", "dev", "eth0", ns=ns)
                _ip("link", "set", "eth0", "up", ns=ns)
                _ip("link", "set", "lo", "up", ns=ns)
        except Exception:
            self.close()
            raise

    def popen(self, host: str, argv, env=None, log: Path | None = None, **kw) -> subprocess.Popen:
        """Start ``argv`` inside ``host``'s namespace (own process group, output to ``log``)."""
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], env=env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def run(self, host: str, argv, env=None, timeout: float = 120, log: Path | None = None):
        p = self.popen(host, argv, env=env, log=log)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_proc(p)
            raise

    def pids(self, host: str) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.ns[host]], capture_output=True, text=True, timeout=20)
        return [int(x) for x in r.stdout.split()]

    def kill_host(self, host: str) -> int:
        """SIGKILL every process of the host's namespace (the host "dies"); returns how many."""
        pids = self.pids(host)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    @staticmethod
    def kill_proc(p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        for host in list(self.ns):
            try:
                self.kill_host(host)
            except Exception:  # noqa: BLE001 - best effort
                pass
        for p in self.procs:
            self.kill_proc(p)
        time.sleep(0.2)
        for ns in [*self.ns.values(), self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def wait_for(pred, timeout: float, what: str, interval: float = 0.2):
    """Poll ``pred`` until it returns a truthy value; bounded by ``timeout`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
