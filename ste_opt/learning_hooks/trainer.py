"""``SplitFedTrainer``: split federated LoRA fine-tuning of a timm ViT with token compression.

Round template (:meth:`SplitFedTrainer.run_round`)::

    sample clients → schedule.plan → backend.run_round (per client, per local step:
    client forward → compress → "send" bytes → server forward/backward → gradient bytes back →
    client backward) → aggregate (client adapters, server adapter copies) → evaluate → log

Outputs in ``run_dir``: ``config.yaml`` (resolved), ``history.csv`` (one row per round, rewritten
every round), ``clients.csv`` (one row per client per round, predicted next to measured bits),
``checkpoint.safetensors`` (every ``output.checkpoint_every`` rounds; tensors + JSON metadata,
see :mod:`.checkpoint`; :meth:`fit` with ``resume=True`` continues from it and refuses a checkpoint
of another config unless ``force=True``, which is recorded in ``resumes.json``). Every file of the
run folder is written atomically (temporary file + ``os.replace``).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from ..errors import ConfigError, InvalidScenarioError
from ..validate import atomic_write_text, sanitize_name
from . import checkpoint as ckpt_io
from .backends.registry import get_backend
from .client_roles import ClientRole, FedLoRAClientRole
from .compress import fake_quantize, select_and_merge
from .config import default_checkpoint_path, load_config, tokens_kept_for
from .data import ImageDataset, load_splits
from .device import runtime_from_config, to_wire
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
from .paper import check_inputs
from .results import ClientRoundResult
from .round_log import round_rows
from .schedule import ClientPlan, Schedule, StaticSchedule, validate_plan
from .server_role import ServerRole
from .spec import ModelSpec, PlanContext
from .split import build_vit, load_trainable_state, split_vit, trainable_state

__all__ = ["SplitFedTrainer", "ClientDataHook"]

#: ``hook(client_id, images, labels) -> (images, labels)``: e.g. add synthetic samples (GenFL).
ClientDataHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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
    device : str, optional
        Overrides the config's ``device`` (``"auto"``, ``"cpu"``, ``"cuda[:i]"``, ``"mps"``; see
        :mod:`~ste_opt.learning_hooks.device`); ``server_device`` / ``amp`` likewise.
    """

    def __init__(self, config: Mapping | str | Path, *, schedule: Schedule | None = None,
                 aggregator: Aggregator | None = None, backend: Any = "local",
                 client_data_hook: ClientDataHook | None = None, run_dir: str | Path | bool | None = None,
                 progress: bool = True, splits=None, device: str | None = None,
                 server_device: str | None = None, amp: str | None = None):
        self.config = load_config(config) if not isinstance(config, Mapping) else load_config(dict(config))
        overrides = {k: v for k, v in (("device", device), ("server_device", server_device),
                                       ("amp", amp)) if v is not None}
        if overrides:
            self.config = load_config({**self.config, **overrides})
        cfg = self.config
        check_inputs(cfg, data=splits is None)
        fed_mode = cfg["mode"] == "fedlora"
        self.client_runtime = runtime_from_config(cfg, "client")
        # FedLoRA trains the whole model on the device: both parts on the client's device
        self.server_runtime = self.client_runtime if fed_mode else runtime_from_config(cfg, "server")
        self.seed = int(cfg["seed"])
        if run_dir is False:
            self.run_dir = None
        else:   # checked before any work: a file in the way is refused up front
            rd = run_dir or cfg["output"]["dir"] or Path("runs") / sanitize_name(cfg["name"])
            self.run_dir = Path(rd)
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise ConfigError(f"run folder {self.run_dir} is a file, not a folder", key="run_dir")
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
        if self.run_dir is not None and hasattr(self.schedule, "bind_run_dir"):
            self.schedule.bind_run_dir(self.run_dir)   # e.g. SFLAM's fitted constants live there
        self.resumes: list[dict] = []
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
        self.model.client.to(self.client_runtime.device)
        self.model.server.to(self.server_runtime.device)
        # data on disk: the model's own resolution/normalisation and train augmentation
        tf_target = getattr(self.splits.train, "transforms", None)
        if tf_target is not None:
            from .datasets import transforms_for_model

            new = transforms_for_model(vit, image_size=int(cfg["data"]["image_size"]),
                                       augment=bool(cfg["data"].get("augment", True)))
            for part in (self.splits.source, self.splits.train, self.splits.test):
                if getattr(part, "transforms", None) is not None:
                    part.transforms.__dict__.update(new.__dict__)
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
        pin = cfg["data"].get("pin_memory", "auto")
        pin = (self.client_runtime.device.type == "cuda") if pin == "auto" else bool(pin)
        kw = dict(batch_size=int(f["batch_size"]), optim=cfg["optim"], local_epochs=int(f["local_epochs"]),
                  local_steps=f["local_steps"], seed=self.seed, runtime=self.client_runtime,
                  num_workers=int(cfg["data"].get("num_workers", 0)), pin_memory=pin)
        self.clients: dict[int, Any] = {}
        for c, idx in enumerate(parts):
            data = self.splits.train.subset(idx)
            if hasattr(data, "loader"):  # on disk: clients train with augmentation
                data = data.subset(np.arange(len(data)), train=True)
            if hook is not None:
                x, y = hook(c, data.images, data.labels)
                data = ImageDataset(x, y, data.num_classes, data.image_size)
            if self.mode == "fedlora":
                self.clients[c] = FedLoRAClientRole(c, self.model.client, self.model.server, data, **kw)
            else:
                self.clients[c] = ClientRole(c, self.model.client, data, **kw)
        self.server = None if self.mode == "fedlora" else ServerRole(
            self.model.server, optim=cfg["optim"], grad_bits=int(cfg["compression"]["grad_bits"]),
            runtime=self.server_runtime)

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

    def model_spec(self) -> ModelSpec:
        """The trained model's real numbers, for schedules that predict bits/latency."""
        return ModelSpec(num_patches=int(self.num_patches), embed_dim=int(self.embed_dim),
                         batch_size=self.batch_size, local_steps={c: r.loader.steps for c, r in self.clients.items()},
                         client_sizes=self.client_sizes, cut_layer=int(self.config["model"]["cut_layer"]),
                         depth=int(self.config["model"]["depth"]),
                         num_prefix_tokens=int(self.model.client.num_prefix_tokens),
                         client_params=int(sum(np.asarray(v).size for v in self.client_global.values())),
                         image_size=int(self.config["data"]["image_size"]))

    def plan_context(self) -> PlanContext:
        """What a schedule sees of this trainer: the model spec and :meth:`client_cls_profiles`."""
        return PlanContext(self.model_spec(), self.client_cls_profiles)

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
                with self.client_runtime.autocast():
                    _, scores = client(self.client_runtime.to(x), with_scores=True)
                prof += np.sort(scores.float().cpu().numpy(), axis=1)[:, ::-1].sum(axis=0)
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
            crt, srt = self.client_runtime, self.server_runtime
            with crt.autocast():
                tok, scores = crt.compiled(cm)(crt.to(x), with_scores=plan.tokens_kept is not None)
            tok = to_wire(tok)
            sent = fake_quantize(select_and_merge(tok, scores, plan.tokens_kept, cm.num_prefix_tokens), plan.bits)
            with srt.autocast():
                logits = srt.compiled(sm)(srt.to(sent))
            logits, y = logits.float(), srt.to(y)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        return correct / len(data), loss_sum / len(data)

    # ------------------------------------------------------------------ the round
    def _aggregate(self, results: Mapping[int, ClientRoundResult], round_idx: int) -> None:
        ids = sorted(results)
        weights = [float(results[c].num_examples) for c in ids]
        states = []
        for c in ids:
            st = {f"client/{k}": v for k, v in results[c].client_state.items()}
            st.update({f"server/{k}": v for k, v in results[c].server_state.items()})
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
        raw = self.schedule.plan(round_idx, ids, self.plan_context())
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
        failed = dict(self.backend.last_failures)
        self._aggregate(results, round_idx)
        acc, loss = self.evaluate()
        row, client_rows = round_rows(round_idx, ids, plans, results, fedlora=fed, num_patches=self.num_patches,
                                      embed_dim=self.embed_dim, downloaded=self._fedlora_global() if fed
                                      else self.client_global, clients=self.clients, acc=acc, loss=loss,
                                      round_s=time.perf_counter() - t_round)
        self.history.append(row)
        self.client_rows += client_rows
        row["failed_clients"] = ";".join(str(c) for c in sorted(failed))
        for crow in self.client_rows:
            if crow["round"] == round_idx and crow["client"] in failed:
                crow["failed"] = True
                crow["error"] = failed[crow["client"]]
        self.round_idx = round_idx
        return row

    def close(self) -> None:
        """Release the backend's resources (Ray actors, Flower engine); idempotent."""
        self.backend.close()

    def __enter__(self) -> SplitFedTrainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fedlora_global(self) -> dict[str, np.ndarray]:
        st = {f"client/{k}": v for k, v in self.client_global.items()}
        st.update({f"server/{k}": v for k, v in self.server_global.items()})
        return st

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self) -> None:
        if self.run_dir is None:
            return
        for name, rows in (("history.csv", self.history), ("clients.csv", self.client_rows)):
            if not rows:
                continue
            keys: list[str] = []
            for r in rows:
                keys += [k for k in r if k not in keys]
            buf = io.StringIO(newline="")
            w = csv.DictWriter(buf, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(self.run_dir / name, buf.getvalue(), exc=ConfigError)

    def save_config(self) -> Path | None:
        if self.run_dir is None:
            return None
        return atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False),
                                 exc=ConfigError)

    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / ckpt_io.CHECKPOINT_NAME

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write ``checkpoint.safetensors`` (adapters as tensors, logs and config as JSON)."""
        path = Path(path) if path else self.checkpoint_path()
        if path is None:
            raise ConfigError("no run folder to write the checkpoint to", key="run_dir")
        return ckpt_io.save_checkpoint(path, round_idx=self.round_idx, client=self.client_global,
                                       server=self.server_global, config=self.config,
                                       history=self.history, client_rows=self.client_rows,
                                       resumes=self.resumes)

    def load_checkpoint(self, path: str | Path | None = None, force: bool = False) -> int:
        """Restore the global adapters and logs; returns the last completed round.

        The checkpoint is validated against this trainer (keys, shapes and dtypes of the adapters)
        and its config hash compared with this trainer's config: another config raises
        :class:`~ste_opt.errors.ConfigError` naming the keys that differ, unless ``force`` (then the
        change is recorded in ``resumes.json`` and in later checkpoints)."""
        path = Path(path) if path else self.checkpoint_path()
        if path is None:
            raise ConfigError("no run folder to resume from", key="resume")
        if not path.is_file():
            legacy = path.with_name("checkpoint.pt")
            extra = (f" ({legacy.name} from an older version is not loaded: pickled files can run "
                     "code)") if legacy.is_file() else ""
            raise ConfigError(f"--resume: no checkpoint at {path}{extra}; run without --resume to "
                              "start a new run", key="resume")
        ck = ckpt_io.load_checkpoint(path)
        ckpt_io.validate_state(path, "client", ck.client, self.client_global)
        ckpt_io.validate_state(path, "server", ck.server, self.server_global)
        diff = ckpt_io.config_diff(ck.config, self.config)
        if diff:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:4])
            more = f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""
            if not force:
                raise ConfigError(f"checkpoint {path} was written with another config ({shown}{more}); "
                                  "resume with the same config, or pass --force to continue anyway",
                                  key=next(iter(diff)))
        self.resumes = list(ck.meta.get("resumes", []))
        if diff:
            self.resumes.append({"after_round": ck.round, "forced": True,
                                 "old_config_hash": ck.meta["config_hash"],
                                 "new_config_hash": ckpt_io.config_hash(self.config),
                                 "changed": {k: [a, b] for k, (a, b) in diff.items()},
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            if self.run_dir is not None:
                atomic_write_text(self.run_dir / "resumes.json",
                                  json.dumps(ckpt_io.jsonable(self.resumes), indent=2, default=str),
                                  exc=ConfigError)
        self.client_global = {k: v.copy() for k, v in ck.client.items()}
        self.server_global = {k: v.copy() for k, v in ck.server.items()}
        self.history, self.client_rows = ck.history, ck.client_rows
        self.round_idx = ck.round
        return self.round_idx

    def fit(self, rounds: int | None = None, resume: bool = False, force: bool = False) -> list[dict]:
        """Run rounds ``round_idx+1 .. rounds-1``; with ``resume`` start after the checkpoint's
        round (a missing checkpoint or another config is refused; ``force`` accepts another
        config and records it). Writes CSVs and a checkpoint every round. Returns the history."""
        rounds = int(rounds if rounds is not None else self.config["federation"]["rounds"])
        if resume:
            self.load_checkpoint(force=force)
        self.save_config()
        todo = range(self.round_idx + 1, rounds)
        bar = None
        if self.progress:
            from ..progress import progress as progress_bar
            bar = progress_bar(total=len(todo), desc=str(self.config["name"]), unit="round")
        every = int(self.config["output"]["checkpoint_every"] or 0)
        tb = None
        if self.config["output"].get("tensorboard") and self.run_dir is not None:
            from .tracking import TensorBoardLogger

            tb = TensorBoardLogger(self.run_dir / "tensorboard")
        for r in todo:
            row = self.run_round(r)
            self._write_outputs()
            if tb is not None:
                tb.log_row(row, r)
            if self.run_dir is not None and every and (r + 1) % every == 0:
                self.save_checkpoint()
            if bar is not None:
                bar.set_postfix(acc=f"{row['test_acc']:.3f}", up_MB=f"{row['uplink_bits'] / 8e6:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
        return self.history
