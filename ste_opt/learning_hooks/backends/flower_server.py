"""The ServerApp side of :mod:`.flower_backend`: :class:`GridDriver` runs one trainer round over a
Flower ``Grid`` (simulation or deployment), stepping the server role on the received payloads."""
from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidScenarioError, SolverError
from ..framing import unframe
from ..results import ClientRoundResult, ClientStats
from .base import attach_server_copies
from .flower_protocol import (
    MESSAGE_TYPE,
    RECORD,
    arrays_to_record,
    parse_exchange,
    record_to_arrays,
)

__all__ = ["GridDriver"]


class GridDriver:
    """Runs one trainer round over a Flower ``Grid`` (simulation or deployment)."""

    def __init__(self, grid, *, exchange: str = "round", allow_stale_client: bool = False,
                 timeout_s: float = 3600.0, pull_interval_s: float | None = None):
        self.grid = grid
        self.exchange = exchange
        self.chunk = parse_exchange(exchange)
        self.allow_stale_client = bool(allow_stale_client)
        self.timeout_s = float(timeout_s)
        self.pull_interval_s = pull_interval_s
        self.nodes: dict[int, int] = {}
        self.messages: dict[int, int] = {}  # server → client messages of the last round, per client
        self._warned = False

    def _send(self, contents: Mapping[int, Any], round_idx: int) -> dict[int, Any]:
        from flwr.app import Message

        msgs = {c: Message(content, dst_node_id=self.nodes[c], message_type=MESSAGE_TYPE,
                           group_id=str(round_idx)) for c, content in contents.items()}
        for c in contents:
            self.messages[c] = self.messages.get(c, 0) + 1
        if self.pull_interval_s is None:
            replies = self.grid.send_and_receive(list(msgs.values()), timeout=self.timeout_s)
        else:  # own pull loop (the deployment grid sleeps 3 s between pulls)
            ids = set(self.grid.push_messages(list(msgs.values())))
            replies, end = [], time.time() + self.timeout_s
            while ids and time.time() < end:
                got = list(self.grid.pull_messages(ids))
                replies += got
                ids -= {m.metadata.reply_to_message_id for m in got}
                if ids:
                    time.sleep(self.pull_interval_s)
        by_node = {m.metadata.src_node_id: m for m in replies}
        return {c: by_node.get(self.nodes[c]) for c in contents}

    def discover(self, client_ids) -> None:
        """Map client ids to node ids (each ClientApp reports its client id)."""
        from flwr.app import ConfigRecord, Message, RecordDict

        want = set(int(c) for c in client_ids)
        if want <= set(self.nodes):
            return
        deadline = time.time() + self.timeout_s
        while True:
            node_ids = list(self.grid.get_node_ids())
            msgs = [Message(RecordDict({RECORD: ConfigRecord({"op": "hello"})}), dst_node_id=n,
                            message_type=MESSAGE_TYPE) for n in node_ids]
            for m in self.grid.send_and_receive(msgs, timeout=min(self.timeout_s, 600)):
                if not m.has_error():
                    self.nodes[int(m.content[RECORD]["client"])] = int(m.metadata.src_node_id)
            if want <= set(self.nodes) or time.time() > deadline:
                break
            time.sleep(1.0)
        missing = sorted(want - set(self.nodes))
        if missing:
            raise SolverError(f"flower backend: no SuperNode serves clients {missing}")

    def run_round(self, round_idx, plans, clients, server, client_global, server_global,
                  failures: dict[int, str]) -> dict[int, ClientRoundResult]:
        from flwr.app import ConfigRecord, RecordDict

        active = [c for c in sorted(plans) if plans[c] is not None]
        self.discover(active)
        self.messages = {}
        trainable = bool(client_global)
        if server is not None and trainable and self.chunk != 1:
            if not self.allow_stale_client:
                raise InvalidScenarioError(
                    f"exchange={self.exchange!r} with client LoRA is not exact SFL (the batches of a "
                    "chunk use the chunk-start client weights); use exchange='per_batch', freeze the "
                    "client (lora.client: false), or pass allow_stale_client=True",
                    field="exchange")
            if not self._warned:
                warnings.warn(f"flower backend: exchange={self.exchange!r} with client LoRA applies "
                              "stale client gradients (not exact SFL)", UserWarning, stacklevel=3)
                self._warned = True
        glob = arrays_to_record(client_global or {})

        def first(c):
            p = plans[c]
            rec = ConfigRecord({"op": "step" if server is not None else "local",
                                "round": int(round_idx), "first": True,
                                "tokens_kept": -1 if p.tokens_kept is None else int(p.tokens_kept),
                                "bits": int(p.bits), "chunk": int(self.chunk or 0),
                                "grads": [], "grad_batches": []})
            return RecordDict({RECORD: rec, "global": glob})

        if server is not None:
            server.begin_round(round_idx, server_global)
        pending = {c: first(c) for c in active}
        out: dict[int, dict] = {}
        times: dict[int, list[float]] = {c: [] for c in active}
        while pending:
            t0 = time.perf_counter()
            replies = self._send(pending, round_idx)
            wave_s = time.perf_counter() - t0
            nxt = {}
            for c in sorted(pending):
                rep = replies[c]
                if rep is None:
                    failures[c] = f"no reply within {self.timeout_s:.0f} s"
                    continue
                if rep.has_error():
                    failures[c] = f"ClientApp error: {rep.error.reason}"[:300]
                    continue
                rec = rep.content[RECORD]
                grads = []
                try:
                    for msg in rec["payloads"]:
                        header, body = unframe(bytes(msg))
                        if int(header["client"]) != c or int(header["round"]) != int(round_idx):
                            raise InvalidScenarioError("payload header names another client/round",
                                                       field="header", device=c)
                        grads.append(server.step(body, header))
                except Exception as exc:  # noqa: BLE001 - reported, the round goes on
                    failures[c] = f"server step failed: {type(exc).__name__}: {exc}"[:300]
                    continue
                batches = list(rec["batches"])
                times[c] += [wave_s] * len(batches)
                if bool(rec["final"]):
                    out[c] = ClientRoundResult(
                        client_state=record_to_arrays(rep.content["client_state"]),
                        num_examples=int(rec["num_examples"]), stats=ClientStats.from_json(rec["stats"]),
                        step_times=times[c] or [wave_s],
                        server_state=record_to_arrays(rep.content["server_state"]))
                    continue
                p = plans[c]
                need = bool(rec["need_grad"])
                nxt[c] = RecordDict({RECORD: ConfigRecord({
                    "op": "step", "round": int(round_idx), "first": False,
                    "tokens_kept": -1 if p.tokens_kept is None else int(p.tokens_kept),
                    "bits": int(p.bits), "chunk": int(self.chunk or 0),
                    "grads": grads if need else [], "grad_batches": batches if need else []})})
            pending = nxt
        return attach_server_copies(out, server)
