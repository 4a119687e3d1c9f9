"""``SplitFedTrainer``: split federated LoRA fine-tuning of a timm ViT with token compression.

Round template (:meth:`SplitFedTrainer.run_round`)::

    sample clients → schedule.plan → backend.run_round (per client, per local step:
    client forward → compress → "send" bytes → server forward/backward → gradient bytes back →
    client backward) → aggregate (client adapters, server adapter copies) → evaluate → log

Outputs in ``run_dir``: ``config.yaml`` (resolved), ``history.csv`` (one row per round, rewritten
every round), ``clients.csv`` (one row per client per round, predicted next to measured bits),
``checkpoint.pt`` (every round; :meth:`fit` with ``resume=True`` continues from it).
"""
from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from ..errors import InvalidScenarioError
from ..model.payload import payload_bits
from .compress import fake_quantize, select_and_merge
from .config import default_checkpoint_path, load_config, tokens_kept_for
from .data import ImageDataset, load_splits
from .federated import (
    Aggregator,
    FedAvg,
    dirichlet_partition,
    iid_partition,
    numpy_to_state,
    sample_clients,
    shard_partition,
    state_to_numpy,
)
from .roles import ClientRole, FedLoRAClientRole, ServerRole, get_backend
from .schedule import ClientPlan, Schedule, StaticSchedule, validate_plan
from .split import build_vit, load_trainable_state, split_vit, trainable_state

__all__ = ["SplitFedTrainer", "ClientDataHook"]

#: ``hook(client_id, images, labels) -> (images, labels)``: e.g. add synthetic samples (GenFL).
ClientDataHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _state_bits(state: Mapping[str, np.ndarray]) -> int:
    return int(sum(8 * v.nbytes for v in state.values()))


class SplitFedTrainer:
    """Split federated fine-tuning (SFL-V1) with TSFLora compression, or the FedLoRA baseline.

    Parameters
    ----------
    config : mapping, bundled config name, or YAML path
        See :data:`ste_opt.learning_hooks.config.DEFAULTS`.
    schedule : Schedule, optional
        Per-round plans; default ``StaticSchedule`` from ``config["compression"]``.
    aggregator : Aggregator, optional
        Default :class:`~ste_opt.learning_hooks.federated.FedAvg` (weights = client data size).
    backend : str or object
        ``"local"`` (in-process) or a backend object with ``run_round`` (see ``roles``).
    client_data_hook : callable, optional
        ``hook(client_id, images, labels) -> (images, labels)`` applied to each client's training
        data at construction (e.g. GenFL synthetic samples); :meth:`set_client_data` replaces a
        client's data later. FedAvg weights use the resulting sizes.
    run_dir : path, optional
        Where outputs go; default ``config["output"]["dir"]`` or ``runs/<name>``; ``False``: none.
    progress : bool
        tqdm progress bar over rounds.
    """

    def __init__(self, config: Mapping | str | Path, *, schedule: Schedule | None = None,
                 aggregator: Aggregator | None = None, backend: Any = "local",
                 client_data_hook: ClientDataHook | None = None, run_dir: str | Path | bool | None = None,
                 progress: bool = True, splits=None):
        self.config = load_config(config) if not isinstance(config, Mapping) else load_config(dict(config))
        cfg = self.config
        self.seed = int(cfg["seed"])
        self.mode = cfg["mode"]
        self.progress = progress
        self.aggregator = aggregator if aggregator is not None else FedAvg()
        if not callable(self.aggregator):
            raise InvalidScenarioError("aggregator must be callable", field="aggregator")
        self.backend = get_backend(backend)
        d = cfg["data"]
        self.splits = splits or load_splits(d["name"], d["root"], d["image_size"], d["source_fraction"],
                                            d["test_fraction"], self.seed, d.get("max_per_class"))
        self.num_classes = self.splits.train.num_classes
        self._build_model()
        self.tokens_kept_default = tokens_kept_for(cfg, self.num_patches)
        self.schedule = schedule if schedule is not None else StaticSchedule(
            self.tokens_kept_default, int(cfg["compression"]["bits"]))
        self._build_clients(client_data_hook)
        if run_dir is False:
            self.run_dir = None
        else:
            rd = run_dir or cfg["output"]["dir"] or Path("runs") / str(cfg["name"])
            self.run_dir = Path(rd)
        self.history: list[dict] = []
        self.client_rows: list[dict] = []
        self.round_idx = -1

    # ------------------------------------------------------------------ construction
    def _build_model(self) -> None:
        from .pretrain import pretrain_backbone, vit_kwargs

        cfg = self.config
        m, lora = cfg["model"], cfg["lora"]
        ckpt = m["checkpoint"]
        if ckpt == "auto":
            path = default_checkpoint_path(cfg)
            if not path.is_file():
                logging.getLogger(__name__).info(
                    "no pretrained backbone at %s: pretraining on the source split (once; "
                    "later runs load it)", path)
                pretrain_backbone(cfg, path, splits=self.splits, progress=self.progress)
            ckpt = path
        elif ckpt in (None, "none", "random"):
            ckpt = None
        torch.manual_seed(self.seed)
        vit = build_vit(m["arch"], num_classes=self.num_classes, checkpoint=ckpt, **vit_kwargs(cfg))
        fed = self.mode == "fedlora"
        self.model = split_vit(vit, int(m["cut_layer"]), self.num_classes, lora_rank=int(lora["rank"]),
                               lora_alpha=float(lora["alpha"]), lora_targets=list(lora["targets"]),
                               client_lora=bool(lora["client"]) or fed,
                               server_lora=bool(lora["server"]) or fed,
                               lora_dropout=float(lora["dropout"]), seed=self.seed)
        self.num_patches = self.model.num_patches
        self.embed_dim = self.model.embed_dim
        self.client_global = state_to_numpy(trainable_state(self.model.client))
        self.server_global = state_to_numpy(trainable_state(self.model.server))

    def _build_clients(self, hook: ClientDataHook | None) -> None:
        cfg, f = self.config, self.config["federation"]
        labels = self.splits.train.labels.numpy()
        n = int(f["num_clients"])
        if f["partition"] == "dirichlet":
            parts = dirichlet_partition(labels, n, float(f["alpha"]), seed=self.seed,
                                        min_size=int(f["min_client_size"]))
        elif f["partition"] == "shard":
            parts = shard_partition(labels, n, int(f["shards_per_client"]), seed=self.seed)
        else:
            parts = iid_partition(labels, n, seed=self.seed)
        self.partitions = parts
        kw = dict(batch_size=int(f["batch_size"]), optim=cfg["optim"], local_epochs=int(f["local_epochs"]),
                  local_steps=f["local_steps"], seed=self.seed)
        self.clients: dict[int, Any] = {}
        for c, idx in enumerate(parts):
            data = self.splits.train.subset(idx)
            if hook is not None:
                x, y = hook(c, data.images, data.labels)
                data = ImageDataset(x, y, data.num_classes, data.image_size)
            if self.mode == "fedlora":
                self.clients[c] = FedLoRAClientRole(c, self.model.client, self.model.server, data, **kw)
            else:
                self.clients[c] = ClientRole(c, self.model.client, data, **kw)
        self.server = None if self.mode == "fedlora" else ServerRole(
            self.model.server, optim=cfg["optim"], grad_bits=int(cfg["compression"]["grad_bits"]))

    # ------------------------------------------------------------------ public helpers
    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def batch_size(self) -> int:
        return int(self.config["federation"]["batch_size"])

    @property
    def client_sizes(self) -> dict[int, int]:
        return {c: r.num_examples for c, r in self.clients.items()}

    def model_spec(self) -> dict:
        """The trained model's real numbers, for schedules that predict bits/latency."""
        return {"num_patches": self.num_patches, "embed_dim": self.embed_dim, "batch_size": self.batch_size,
                "cut_layer": int(self.config["model"]["cut_layer"]), "depth": int(self.config["model"]["depth"]),
                "num_prefix_tokens": self.model.client.num_prefix_tokens,
                "local_steps": {c: r.loader.steps for c, r in self.clients.items()}}

    def set_client_data(self, client_id: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Replace a client's training data (e.g. after generating synthetic samples)."""
        base = self.splits.train
        self.clients[int(client_id)].set_data(ImageDataset(images, labels, base.num_classes, base.image_size))

    @torch.no_grad()
    def client_cls_profiles(self, client_ids: Sequence[int], n_batches: int = 1,
                            round_idx: int | None = None) -> dict[int, np.ndarray]:
        """Per client: [CLS] attention at the split layer on its own data, sorted descending per
        sample and summed rank by rank over ``n_batches`` batches (ST-SFLora's ᾱ_m, Eq. 18).

        Returns ``{client: array of length N}``, non-increasing; uses the current global client
        adapters and the round's seeded shuffle (``round_idx``, default the next round).
        """
        r = self.round_idx + 1 if round_idx is None else int(round_idx)
        client = self.model.client
        if any(p.requires_grad for p in client.parameters()) and self.client_global:
            load_trainable_state(client, numpy_to_state(self.client_global))
        client.eval()
        out = {}
        for c in client_ids:
            role = self.clients[int(c)]
            role.loader.start(r)
            prof = np.zeros(self.num_patches)
            for b in range(max(1, min(int(n_batches), role.loader.steps))):
                x, _ = role.loader.batch(b)
                _, scores = client(x, with_scores=True)
                prof += np.sort(scores.numpy(), axis=1)[:, ::-1].sum(axis=0)
            out[int(c)] = prof
        return out

    @torch.no_grad()
    def evaluate(self, plan: ClientPlan | None = None, data: ImageDataset | None = None) -> tuple[float, float]:
        """(accuracy, mean loss) of the global model on the test split, with ``plan``'s compression
        (default: the schedule's ``eval_plan()`` if it has one, else no compression)."""
        if plan is None:
            plan = self.schedule.eval_plan() if hasattr(self.schedule, "eval_plan") else ClientPlan(None, 32)
        if self.mode == "fedlora":
            plan = ClientPlan(None, 32)
        data = data or self.splits.test
        cm, sm = self.model.client, self.model.server
        if self.client_global:
            load_trainable_state(cm, numpy_to_state(self.client_global))
        load_trainable_state(sm, numpy_to_state(self.server_global))
        cm.eval()
        sm.eval()
        bs = int(self.config["eval"]["batch_size"])
        correct, loss_sum = 0, 0.0
        for i in range(0, len(data), bs):
            x, y = data.batch(np.arange(i, min(i + bs, len(data))))
            tok, scores = cm(x, with_scores=plan.tokens_kept is not None)
            sent = fake_quantize(select_and_merge(tok, scores, plan.tokens_kept, cm.num_prefix_tokens), plan.bits)
            logits = sm(sent)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        return correct / len(data), loss_sum / len(data)

    # ------------------------------------------------------------------ the round
    def _aggregate(self, results: Mapping[int, dict], round_idx: int) -> None:
        ids = sorted(results)
        weights = [float(results[c]["num_examples"]) for c in ids]
        if self.mode == "fedlora":
            states = [numpy_to_state(results[c]["client_state"]) for c in ids]
            agg = state_to_numpy(self.aggregator(states, weights, round_idx=round_idx, client_ids=ids))
            self.client_global = {k[7:]: v for k, v in agg.items() if k.startswith("client/")}
            self.server_global = {k[7:]: v for k, v in agg.items() if k.startswith("server/")}
            return
        states = []
        for c in ids:
            st = {f"client/{k}": v for k, v in results[c]["client_state"].items()}
            st.update({f"server/{k}": v for k, v in results[c]["server_state"].items()})
            states.append(numpy_to_state(st))
        agg = state_to_numpy(self.aggregator(states, weights, round_idx=round_idx, client_ids=ids))
        if self.client_global:
            self.client_global = {k[7:]: v for k, v in agg.items() if k.startswith("client/")}
        self.server_global = {k[7:]: v for k, v in agg.items() if k.startswith("server/")}

    def run_round(self, round_idx: int) -> dict:
        """One round; returns (and appends) its history row."""
        f = self.config["federation"]
        t_round = time.perf_counter()
        ids = sample_clients(self.num_clients, int(f["clients_per_round"]), seed=self.seed, round_idx=round_idx)
        raw = self.schedule.plan(round_idx, ids, self)
        plans: dict[int, ClientPlan | None] = {}
        for c in ids:
            p = raw.get(c) if isinstance(raw, Mapping) else None
            plans[c] = None if p is None else validate_plan(p, self.num_patches, c)
        if all(p is None for p in plans.values()):
            raise InvalidScenarioError(f"round {round_idx}: the schedule excluded every client", field="schedule")
        fed = self.mode == "fedlora"
        results = self.backend.run_round(round_idx, plans, self.clients, self.server,
                                         self.client_global if not fed else self._fedlora_global(),
                                         self.server_global)
        # clients a distributed backend lost mid-round: reported, and left out of the aggregation
        failed = dict(getattr(self.backend, "last_failures", None) or {})
        self._aggregate(results, round_idx)
        acc, loss = self.evaluate()
        row = self._log_round(round_idx, ids, plans, results, acc, loss, time.perf_counter() - t_round)
        row["failed_clients"] = ";".join(str(c) for c in sorted(failed))
        for crow in self.client_rows:
            if crow["round"] == round_idx and crow["client"] in failed:
                crow["failed"] = True
                crow["error"] = failed[crow["client"]]
        self.round_idx = round_idx
        return row

    def close(self) -> None:
        """Release the backend's resources (Ray actors, Flower engine); idempotent."""
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> SplitFedTrainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fedlora_global(self) -> dict[str, np.ndarray]:
        st = {f"client/{k}": v for k, v in self.client_global.items()}
        st.update({f"server/{k}": v for k, v in self.server_global.items()})
        return st

    def _log_round(self, round_idx, ids, plans, results, acc, loss, round_s) -> dict:
        fed = self.mode == "fedlora"
        N, D = self.num_patches, self.embed_dim
        up = down = up_adapt = down_adapt = 0
        steps = 0
        step_s, comp_s, score_s, decode_s = [], 0.0, 0.0, 0.0
        cmem = smem = 0
        tr_loss = tr_correct = tr_count = 0.0
        uploaded = (self._fedlora_global() if fed else self.client_global)
        for c in ids:
            plan = plans[c]
            res = results.get(c)
            base = {"round": round_idx, "client": c, "excluded": plan is None, "num_examples": self.clients[c].num_examples}
            if res is None:
                self.client_rows.append({**base, "tokens_kept": None, "bits": None, "steps": 0,
                                         "uplink_bits": 0, "analytic_bits": 0, "bits_match": None})
                continue
            st, sst = res["stats"], res.get("server_stats", {})
            n_steps = st["steps"] if not fed else len(res["step_times"])
            steps += n_steps
            step_s += res["step_times"]
            comp_s += st["compress_s"]
            score_s += st["score_s"]
            decode_s += sst.get("decode_s", 0.0)
            a_up = _state_bits(res["client_state"])
            a_down = _state_bits(uploaded)
            up += st["uplink_bits"]
            down += st["downlink_bits"]
            up_adapt += a_up
            down_adapt += a_down
            cmem = max(cmem, st["memory"].peak)
            if sst:
                smem = max(smem, sst["memory"].peak)
                tr_loss += sst["loss_sum"]
                tr_correct += sst["correct"]
                tr_count += sst["count"]
            else:
                tr_loss += st.get("loss_sum", 0.0)
                tr_correct += st.get("correct", 0)
                tr_count += st.get("count", 0)
            if fed:
                analytic = 0
            else:
                bsz = self.clients[c].loader.batch_size
                extra = 1 if plan.tokens_kept is None else 2
                k = N if plan.tokens_kept is None else plan.tokens_kept
                analytic = n_steps * payload_bits(bsz, k, D, plan.bits, extra_tokens=extra)
            row = {**base, "tokens_kept": plan.tokens_kept, "bits": plan.bits,
                   "selection": plan.tokens_kept is not None, "steps": n_steps,
                   "uplink_bits": st["uplink_bits"], "analytic_bits": analytic,
                   "bits_match": st["uplink_bits"] == analytic, "downlink_bits": st["downlink_bits"],
                   "uplink_adapter_bits": a_up, "client_peak_bytes": st["memory"].peak,
                   **{f"client_{k}": v for k, v in st["memory"].as_dict().items() if k != "peak_bytes"}}
            for k, v in dict(plan.predicted).items():
                row[f"pred_{k}"] = v
            self.client_rows.append(row)
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
        self.history.append(row)
        return row

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name, rows in (("history.csv", self.history), ("clients.csv", self.client_rows)):
            if not rows:
                continue
            keys: list[str] = []
            for r in rows:
                keys += [k for k in r if k not in keys]
            with (self.run_dir / name).open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=keys)
                w.writeheader()
                w.writerows(rows)

    def save_config(self) -> Path | None:
        if self.run_dir is None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return path

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.run_dir / "checkpoint.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"round": self.round_idx, "client_global": self.client_global,
                    "server_global": self.server_global, "history": self.history,
                    "client_rows": self.client_rows, "config": self.config}, tmp)
        tmp.replace(path)
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> int:
        """Restore the global adapters and logs; returns the last completed round."""
        path = Path(path) if path else self.run_dir / "checkpoint.pt"
        if not path.is_file():
            raise InvalidScenarioError(f"no checkpoint at {path}", field="resume")
        ck = torch.load(path, map_location="cpu", weights_only=False)
        self.client_global, self.server_global = ck["client_global"], ck["server_global"]
        self.history, self.client_rows = list(ck["history"]), list(ck["client_rows"])
        self.round_idx = int(ck["round"])
        return self.round_idx

    def fit(self, rounds: int | None = None, resume: bool = False) -> list[dict]:
        """Run rounds ``round_idx+1 .. rounds-1``; with ``resume`` start after the checkpoint's
        round. Writes CSVs and a checkpoint every round. Returns the history."""
        rounds = int(rounds if rounds is not None else self.config["federation"]["rounds"])
        if resume and self.run_dir is not None and (self.run_dir / "checkpoint.pt").is_file():
            self.load_checkpoint()
        self.save_config()
        todo = range(self.round_idx + 1, rounds)
        bar = None
        if self.progress:
            from ..progress import progress as progress_bar
            bar = progress_bar(total=len(todo), desc=str(self.config["name"]), unit="round")
        every = int(self.config["output"]["checkpoint_every"] or 0)
        for r in todo:
            row = self.run_round(r)
            self._write_outputs()
            if self.run_dir is not None and every and (r + 1) % every == 0:
                self.save_checkpoint()
            if bar is not None:
                bar.set_postfix(acc=f"{row['test_acc']:.3f}", up_MB=f"{row['uplink_bits'] / 8e6:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        return self.history
