"""The ClientApp side of :mod:`.flower_backend`: the ``train`` handler (:func:`client_handle`),
the per-round session kept in ``context.state`` (:class:`ClientSession`) and, for the simulation
engine, the client roles shipped once through Ray's object store (:class:`ShippedRoles`)."""
from __future__ import annotations

import time
from typing import Any

from ...errors import SolverError
from ..results import ClientStats
from ..schedule import ClientPlan
from .flower_protocol import RECORD, arrays_to_record, record_to_arrays
from .sealed import new_key, unseal

__all__ = ["ClientSession", "client_handle", "final_reply", "make_client_app", "ShippedRoles"]


class ClientSession:
    """What a client keeps between two messages of a round (in ``context.state``)."""

    def __init__(self, role, context):
        self.role, self.context = role, context

    def save(self, next_batch: int, steps: int) -> None:
        from flwr.app import ConfigRecord

        role, st = self.role, self.context.state
        adapters, mom = role.session_state()
        st[f"{RECORD}.adapters"] = arrays_to_record(adapters)
        st[f"{RECORD}.momentum"] = arrays_to_record(mom)
        st[f"{RECORD}.meta"] = ConfigRecord({"round": int(role.round_idx), "next": int(next_batch),
                                             "steps": int(steps), "stats": role.stats.to_json()})

    def restore(self, round_idx: int, plan) -> tuple[int, int]:
        role, st = self.role, self.context.state
        if f"{RECORD}.meta" not in st:
            raise SolverError(f"client {role.client_id}: no saved state for round {round_idx} "
                              "(message out of order)")
        meta = st[f"{RECORD}.meta"]
        if int(meta["round"]) != int(round_idx):
            raise SolverError(f"client {role.client_id}: saved state is for round {meta['round']}, "
                              f"message for round {round_idx}")
        role.resume_round(round_idx, plan, record_to_arrays(st[f"{RECORD}.adapters"]),
                          record_to_arrays(st[f"{RECORD}.momentum"]), ClientStats.from_json(meta["stats"]))
        return int(meta["next"]), int(meta["steps"])

    def clear(self) -> None:
        for k in ("adapters", "momentum", "meta"):
            key = f"{RECORD}.{k}"
            if key in self.context.state:
                del self.context.state[key]


def client_handle(message, context, lookup) -> Any:
    """The ClientApp's ``train`` handler (see the module docstring for the protocol).

    ``lookup`` has ``client_id(context) -> int`` and ``role(context, client_id)`` (the
    :class:`~ste_opt.learning_hooks.roles.ClientRole` of that client).
    """
    from flwr.app import ConfigRecord, Message, RecordDict

    cfg = message.content[RECORD]
    op = str(cfg["op"])
    client = int(lookup.client_id(context))
    if op == "hello":
        return Message(RecordDict({RECORD: ConfigRecord({"client": client})}), reply_to=message)
    role = lookup.role(context, client)
    round_idx = int(cfg["round"])
    tk = int(cfg["tokens_kept"])
    plan = ClientPlan(None if tk < 0 else tk, int(cfg["bits"]))
    session = ClientSession(role, context)
    t0 = time.perf_counter()
    if op == "local":  # FedLoRA baseline: one message, the whole local round on the device
        glob = record_to_arrays(message.content["global"]) if "global" in message.content else None
        steps = role.begin_round(round_idx, plan, glob or None)
        for b in range(steps):
            role.local_step(round_idx, b)
        return final_reply(message, role, client, [], (time.perf_counter() - t0) / max(steps, 1))
    if bool(cfg["first"]):
        glob = record_to_arrays(message.content["global"]) if "global" in message.content else None
        steps = role.begin_round(round_idx, plan, glob or None)
        nxt = 0
    else:
        nxt, steps = session.restore(round_idx, plan)
    grads = list(cfg["grads"])
    if grads:
        role.apply_chunk_gradients(list(cfg["grad_batches"]), grads)
    chunk = int(cfg["chunk"]) if int(cfg["chunk"]) > 0 else steps
    batches = list(range(nxt, min(steps, nxt + chunk)))
    payloads = [role.forward(round_idx, b) for b in batches]
    role.release_graph()  # the graph is rebuilt when the gradient arrives
    nxt += len(batches)
    per_step = (time.perf_counter() - t0) / max(len(batches), 1)
    final = nxt >= steps and (not role.trainable or not batches)
    if final:
        session.clear()
        return final_reply(message, role, client, payloads, per_step, batches)
    session.save(nxt, steps)
    rec = ConfigRecord({"client": client, "payloads": payloads, "batches": batches, "final": False,
                        "need_grad": bool(role.trainable), "client_s": per_step})
    return Message(RecordDict({RECORD: rec}), reply_to=message)


def final_reply(message, role, client, payloads, per_step, batches=()):
    """The last reply of a client's round: payloads left, adapters (both parts), statistics."""
    from flwr.app import ConfigRecord, Message, RecordDict

    res = role.round_result([])
    rec = ConfigRecord({"client": client, "payloads": list(payloads), "batches": list(batches),
                        "final": True, "need_grad": bool(role.trainable), "client_s": per_step,
                        "num_examples": int(res.num_examples), "stats": res.stats.to_json()})
    return Message(RecordDict({RECORD: rec, "client_state": arrays_to_record(res.client_state),
                               "server_state": arrays_to_record(res.server_state)}), reply_to=message)


def make_client_app(lookup):
    """A Flower ``ClientApp`` whose ``train`` handler is :func:`client_handle` with ``lookup``."""
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def _train(message, context):
        return client_handle(message, context, lookup)

    return app


class ShippedRoles:
    """Simulation: the client roles, sealed (:mod:`.sealed`) once into Ray's object store; each
    engine process loads them on first use. Picklable and small (the object reference and the
    run's seal key)."""

    _cache: dict[str, dict] = {}

    def __init__(self):
        self.ref = None
        self.ids: list[int] = []
        self.key = new_key()

    def client_id(self, context) -> int:
        return self.ids[int(context.node_config["partition-id"])]

    def role(self, context, client: int):
        import ray

        key = self.ref.hex()
        roles = ShippedRoles._cache.get(key)
        if roles is None:
            from .ray_actors import prepare_process

            prepare_process(1)
            roles = unseal(ray.get(self.ref), self.key)
            ShippedRoles._cache.clear()
            ShippedRoles._cache[key] = roles
        return roles[int(client)]
