"""The trainer's per-round log: one ``history.csv`` row per round and one ``clients.csv`` row per
sampled client (measured bits next to the analytic count and the schedule's predictions)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .results import ClientRoundResult
from .schedule import ClientPlan
from .uplink import upload_bits

__all__ = ["state_bits", "round_rows"]


def state_bits(state: Mapping[str, np.ndarray]) -> int:
    """Bits of an adapter state sent as raw arrays."""
    return int(sum(8 * v.nbytes for v in state.values()))


def round_rows(round_idx: int, ids: Sequence[int], plans: Mapping[int, ClientPlan | None],
               results: Mapping[int, ClientRoundResult], *, fedlora: bool, num_patches: int,
               embed_dim: int, downloaded: Mapping[str, np.ndarray], clients: Mapping[int, Any],
               acc: float, loss: float, round_s: float) -> tuple[dict, list[dict]]:
    """``(history_row, client_rows)`` of one round.

    ``downloaded`` is the global adapter state every participant received (its size is each
    client's downlink adapter bits); ``clients`` are the trainer's client roles (data size, loader
    batch).
    """
    fed = fedlora
    N, D = num_patches, embed_dim
    up = down = up_adapt = down_adapt = 0
    steps = 0
    step_s, comp_s, score_s, decode_s = [], 0.0, 0.0, 0.0
    cmem = smem = 0
    tr_loss = tr_correct = tr_count = 0.0
    client_rows: list[dict] = []
    for c in ids:
        plan = plans[c]
        res = results.get(c)
        base = {"round": round_idx, "client": c, "excluded": plan is None, "num_examples": clients[c].num_examples}
        if res is None:
            client_rows.append({**base, "tokens_kept": None, "bits": None, "steps": 0,
                                "uplink_bits": 0, "analytic_bits": 0, "bits_match": None})
            continue
        st, sst = res.stats, res.server_stats
        n_steps = st.steps if not fed else len(res.step_times)
        steps += n_steps
        step_s += res.step_times
        comp_s += st.compress_s
        score_s += st.score_s
        decode_s += sst.decode_s if sst is not None else 0.0
        a_up = state_bits(res.client_state) + (state_bits(res.server_state) if fed else 0)
        a_down = state_bits(downloaded)
        up += st.uplink_bits
        down += st.downlink_bits
        up_adapt += a_up
        down_adapt += a_down
        cmem = max(cmem, st.memory.peak)
        if sst is not None:
            smem = max(smem, sst.memory.peak)
            tr_loss += sst.loss_sum
            tr_correct += sst.correct
            tr_count += sst.count
        else:
            tr_loss += st.loss_sum
            tr_correct += st.correct
            tr_count += st.count
        if fed:
            analytic = 0
        else:
            analytic = n_steps * upload_bits(clients[c].loader.batch_size, plan.tokens_kept, N, D, plan.bits)
        row = {**base, "tokens_kept": plan.tokens_kept, "bits": plan.bits,
               "selection": plan.tokens_kept is not None, "steps": n_steps,
               "uplink_bits": st.uplink_bits, "analytic_bits": analytic,
               "bits_match": st.uplink_bits == analytic, "downlink_bits": st.downlink_bits,
               "uplink_adapter_bits": a_up, "client_peak_bytes": st.memory.peak,
               **{f"client_{k}": v for k, v in st.memory.as_dict().items() if k != "peak_bytes"}}
        for k, v in dict(plan.predicted).items():
            row[f"pred_{k}"] = v
        client_rows.append(row)
    active = [c for c in ids if plans[c] is not None]
    p0 = plans[active[0]]
    mean_step = float(np.mean(step_s)) if step_s else 0.0
    row = {"round": round_idx, "test_acc": acc, "test_loss": loss,
           "train_loss": tr_loss / max(tr_count, 1), "train_acc": tr_correct / max(tr_count, 1),
           "clients": len(active), "excluded": len(ids) - len(active),
           "tokens_kept": p0.tokens_kept if not fed else None, "bits": p0.bits if not fed else None,
           "selection": (p0.tokens_kept is not None) and not fed,
           "uplink_bits": up, "downlink_bits": down,
           "uplink_adapter_bits": up_adapt, "downlink_adapter_bits": down_adapt,
           "uplink_total_bits": up + up_adapt, "downlink_total_bits": down + down_adapt,
           "client_peak_bytes": cmem, "server_peak_bytes": smem, "steps": steps,
           "step_time_s": mean_step,
           "compress_time_s": (comp_s + score_s + decode_s) / max(steps, 1),
           "compress_overhead": (comp_s + score_s + decode_s) / max(sum(step_s), 1e-12),
           "round_time_s": round_s}
    return row, client_rows
