"""GenFL experiment driver: the three baselines side by side, one run folder.

Arms (all through :func:`.fl.run_federated`, same CNN, same rounds, same test set):

- ``real_only``  — FedAvg on the clients' real data only ("FL");
- ``aigc_only``  — training on the server's synthetic pool S_0 only (one "client" holding S_0,
  ``aigc_per_class`` images per class; equivalent to centralised training, ``local_epochs``
  passes per round);
- ``genfl``      — label sharing, top-up, real + synthetic local training, the chosen aggregation.

Run folder: ``config.yaml``, ``history.csv`` (one row per arm and round), ``summary.json``
(final accuracies, generator cost and quality), ``accuracy.png``, ``samples.png`` (10 x 10 grid of
generated images, one row per class).
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ...errors import InvalidScenarioError
from ..federated import dirichlet_partition, shard_partition
from .aggregation import make_aggregator
from .data import GenFLSplit, split_digits_for_genfl
from .fl import FLConfig, run_federated
from .generator import FlowMatchingGenerator, GeneratorConfig
from .metrics import generator_quality, train_referee
from .sources import ArraySource, DiffusersSource, FlowMatchingSource, SyntheticPool
from .workflow import TOPUP_POLICIES, GenFLClient, GenFLServer, run_data_step

_log = logging.getLogger(__name__)

__all__ = ["GenFLRunConfig", "prepare_generator", "make_clients", "run_arms", "run_experiment",
           "save_sample_grid", "plot_accuracy", "write_history", "ARMS"]

ARMS = ("real_only", "aigc_only", "genfl")


@dataclass
class GenFLRunConfig:
    """Everything a GenFL run needs. See ``docs/genfl.md`` for each field."""

    dataset: str = "digits"
    partition: str = "dirichlet"
    alpha: float = 0.1
    shards_per_client: int = 2
    clients: int = 10
    seed: int = 0
    split_seed: int = 0
    server_per_class: int = 30
    test_size: int = 500
    arms: tuple[str, ...] = ARMS
    aggregation: str = "fedavg"
    gamma: float = 1.0
    lambda0: float = 0.5
    decay: float = 0.95
    topup: str = "fill_max"
    topup_ratio: float = 1.0
    topup_target: int | None = None
    max_ratio: float | None = None
    aigc_per_class: int = 500
    source: str = "builtin"
    generator_path: str | None = None
    quality_per_class: int = 100
    fl: FLConfig = field(default_factory=FLConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def validate(self) -> None:
        if self.dataset != "digits":
            raise InvalidScenarioError(
                f"dataset {self.dataset!r} is not supported by GenFL yet (only 'digits')",
                field="dataset")
        if self.partition not in ("dirichlet", "shards"):
            raise InvalidScenarioError("partition must be 'dirichlet' or 'shards'", field="partition")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise InvalidScenarioError(f"unknown arm(s) {bad}; use some of {ARMS}", field="arms")
        if self.clients < 1:
            raise InvalidScenarioError("clients must be >= 1", field="clients")
        # everything is checked before the (minutes-long) generator training starts
        if self.partition == "dirichlet" and not (np.isfinite(self.alpha) and self.alpha > 0):
            raise InvalidScenarioError(f"alpha must be > 0, got {self.alpha}", field="alpha")
        if self.partition == "shards" and self.shards_per_client < 1:
            raise InvalidScenarioError("shards_per_client must be >= 1", field="shards_per_client")
        if self.topup not in TOPUP_POLICIES:
            raise InvalidScenarioError(f"topup must be one of {TOPUP_POLICIES}, got {self.topup!r}",
                                       field="topup")
        if not self.topup_ratio >= 0:
            raise InvalidScenarioError(f"topup_ratio must be >= 0, got {self.topup_ratio}",
                                       field="topup_ratio")
        for name in ("server_per_class", "test_size", "aigc_per_class", "quality_per_class"):
            if int(getattr(self, name)) < 1:
                raise InvalidScenarioError(f"{name} must be >= 1", field=name)
        make_aggregator(self.aggregation, gamma=self.gamma, lambda0=self.lambda0, decay=self.decay)
        self.fl.validate()
        self.generator.validate()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"] = list(self.arms)
        return d


# --------------------------------------------------------------------------- pieces

def load_split(cfg: GenFLRunConfig) -> GenFLSplit:
    return split_digits_for_genfl(cfg.server_per_class, cfg.test_size, cfg.split_seed)


def _generator_cache_path(cfg: GenFLRunConfig) -> Path:
    key = json.dumps({"g": asdict(cfg.generator), "dataset": cfg.dataset,
                      "server_per_class": cfg.server_per_class, "test_size": cfg.test_size,
                      "split_seed": cfg.split_seed}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    from ...cache import cache_dir

    return cache_dir("genfl") / f"flow_matching-{cfg.dataset}-{digest}.pt"


def prepare_generator(cfg: GenFLRunConfig, split: GenFLSplit, log=_log.info) -> tuple[object, dict]:
    """Build the synthetic source named by ``cfg.source``; returns ``(source, info)``.

    ``builtin``: load ``cfg.generator_path`` (or the cache file keyed by the generator config and
    the split) if it exists, else train on the server split and save there. ``npz:PATH``,
    ``folder:PATH``: pre-generated images. ``diffusers:PATH``: a local diffusers pipeline.
    """
    kind, _, arg = cfg.source.partition(":")
    if kind == "builtin":
        path = Path(cfg.generator_path) if cfg.generator_path else _generator_cache_path(cfg)
        if path.is_file():
            gen = FlowMatchingGenerator.load(path)
            info = {"backend": "builtin", "path": str(path), "loaded": True, **gen.info}
            log(f"generator: loaded {path} ({gen.info.get('steps')} steps)")
        else:
            log(f"generator: training {cfg.generator.train_steps} steps on "
                f"{split.server_labels.size} server-held images ...")
            gen = FlowMatchingGenerator.train(split.server_images, split.server_labels,
                                              split.num_classes, cfg.generator)
            gen.save(path)
            info = {"backend": "builtin", "path": str(path), "loaded": False, **gen.info}
            log(f"generator: {gen.info['steps']} steps in {gen.info['wall_seconds']:.1f} s "
                f"(loss {gen.info['loss_first']:.3f} -> {gen.info['loss_last']:.3f}), saved {path}")
        return FlowMatchingSource(gen), info
    if kind == "npz":
        src = ArraySource.from_file(arg, split.num_classes, split.image_shape)
    elif kind == "folder":
        src = ArraySource.from_folder(arg, split.image_shape, split.num_classes)
    elif kind == "diffusers":
        src = DiffusersSource(arg, split.image_shape, split.num_classes)
    else:
        raise InvalidScenarioError(
            f"unknown generator source {cfg.source!r}; use builtin, npz:PATH, folder:PATH or "
            "diffusers:PATH", field="source")
    return src, src.describe()


def make_clients(cfg: GenFLRunConfig, split: GenFLSplit) -> list[GenFLClient]:
    """Partition the client split with the trainer's Dirichlet/shard partition (seeded by ``seed``)."""
    if cfg.partition == "dirichlet":
        parts = dirichlet_partition(split.client_labels, cfg.clients, cfg.alpha, seed=cfg.seed)
    else:
        parts = shard_partition(split.client_labels, cfg.clients, cfg.shards_per_client,
                                seed=cfg.seed)
    return [GenFLClient(k, split.client_images[p], split.client_labels[p], split.num_classes)
            for k, p in enumerate(parts)]


def run_arms(cfg: GenFLRunConfig, split: GenFLSplit, pool: SyntheticPool | None,
             log=_log.info, on_round=None) -> tuple[list[dict], dict]:
    """Run the configured arms; returns ``(history rows, extra info)``. ``on_round(row)`` is called
    after every round of every arm (the run folder uses it to write history.csv as it goes)."""
    rows: list[dict] = []
    extra: dict = {}
    clients = make_clients(cfg, split)
    extra["label_histograms"] = [list(c.label_report().histogram) for c in clients]
    needs_pool = any(a in ("aigc_only", "genfl") for a in cfg.arms)
    if needs_pool and pool is None:
        raise InvalidScenarioError("arms aigc_only/genfl need a synthetic source", field="source")
    needs_s0 = "aigc_only" in cfg.arms or ("genfl" in cfg.arms and cfg.aggregation == "blend")
    s0 = pool.balanced(cfg.aigc_per_class) if needs_s0 else None
    for arm in cfg.arms:
        t0 = time.perf_counter()
        if arm == "real_only":
            arm_clients = [GenFLClient(c.client_id, c.images, c.labels, c.num_classes) for c in clients]
            r, _ = run_federated(arm_clients, split.test_images, split.test_labels, cfg.fl,
                                 make_aggregator("fedavg"), seed=cfg.seed, arm=arm, on_round=on_round)
        elif arm == "aigc_only":
            aigc_fl = FLConfig(**{**asdict(cfg.fl), "clients_per_round": None})
            server_client = GenFLClient(0, s0[0], s0[1], split.num_classes)
            r, _ = run_federated([server_client], split.test_images, split.test_labels, aigc_fl,
                                 make_aggregator("fedavg"), seed=cfg.seed, arm=arm, on_round=on_round)
            for row in r:  # these images are synthetic, not real
                row["synthetic_examples"], row["real_examples"] = row["real_examples"], 0
        else:
            arm_clients = [GenFLClient(c.client_id, c.images, c.labels, c.num_classes) for c in clients]
            server = GenFLServer(split.num_classes, cfg.topup, cfg.topup_ratio, cfg.topup_target,
                                 cfg.max_ratio)
            # offsets start after S_0 so that shipped images differ from the server's own pool
            topups = run_data_step(arm_clients, server, pool, start=cfg.aigc_per_class)
            extra["topups"] = topups.tolist()
            extra["synthetic_shipped"] = int(topups.sum())
            agg = make_aggregator(cfg.aggregation, gamma=cfg.gamma, lambda0=cfg.lambda0,
                                  decay=cfg.decay)
            r, _ = run_federated(arm_clients, split.test_images, split.test_labels, cfg.fl, agg,
                                 seed=cfg.seed, arm=arm, server_synthetic=s0, on_round=on_round)
        extra[f"{arm}_seconds"] = time.perf_counter() - t0
        log(f"{arm}: final test accuracy {r[-1]['test_acc']:.4f} after {len(r)} rounds "
            f"({extra[f'{arm}_seconds']:.1f} s)")
        rows.extend(r)
    if pool is not None:
        extra["sample_seconds"] = pool.sample_seconds
        extra["images_generated"] = pool.generated
    return rows, extra


# --------------------------------------------------------------------------- outputs

def write_history(rows: list[dict], path: Path) -> Path:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with Path(path).open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


def save_sample_grid(images: np.ndarray, path: Path, rows: int = 10,
                     title: str | None = None) -> Path:
    """Save a ``rows x cols`` grid (``images`` ordered row by row) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    cols = int(np.ceil(len(images) / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6))
    for i, ax in enumerate(np.asarray(axes).reshape(-1)):
        ax.axis("off")
        if i < len(images):
            img = (images[i].transpose(1, 2, 0) + 1) / 2
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94 if title else 0.99,
                        wspace=0.05, hspace=0.05)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_accuracy(rows: list[dict], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rr = [r for r in rows if r["arm"] == arm]
        ax.plot([r["round"] + 1 for r in rr], [100 * r["test_acc"] for r in rr], marker=".",
                label=arm)
    ax.set_xlabel("rounds completed")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no 2.5-th round
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def run_experiment(cfg: GenFLRunConfig, out_dir: str | Path, *, quality: bool = True,
                   log=_log.info) -> dict:
    """Full GenFL run: split, generator, quality report, the arms, and the run folder.

    Messages go to ``log`` (default: this module's logger, INFO); the arms' rounds show a
    progress bar (:func:`ste_opt.progress.progress`)."""
    import yaml

    from ...progress import progress as progress_bar

    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    split = load_split(cfg)
    log(f"split: {split.sizes()} (server-held images train the generator only)")
    summary: dict = {"split": split.sizes()}
    pool = None
    if any(a in ("aigc_only", "genfl") for a in cfg.arms):
        source, gen_info = prepare_generator(cfg, split, log)
        summary["generator"] = gen_info
        pool = SyntheticPool(source, seed=cfg.seed)
        grid_labels = np.repeat(np.arange(split.num_classes), 10)
        grid = source.generate(grid_labels, seed=cfg.seed)
        save_sample_grid(grid, out / "samples.png", rows=split.num_classes,
                         title="generated samples (one row per class)")
        if quality:
            t0 = time.perf_counter()
            labels = np.repeat(np.arange(split.num_classes), cfg.quality_per_class)
            samples = source.generate(labels, seed=cfg.seed + 12345)
            referee = train_referee(split.client_images, split.client_labels, split.num_classes,
                                    seed=cfg.split_seed)
            summary["quality"] = generator_quality(
                samples, labels, referee=referee, generator_train=split.server_images,
                real_reference=split.client_images, test_images=split.test_images,
                test_labels=split.test_labels)
            summary["quality"]["seconds"] = time.perf_counter() - t0
            q = summary["quality"]
            log(f"quality: referee acc on samples {q['referee_accuracy_on_samples']:.3f}, "
                f"FD {q['fd']:.2f} (real floor {q['fd_floor_real']:.2f}), NN median "
                f"{q['nn_median_synthetic']:.2f} vs test {q['nn_median_test']:.2f}, near copies "
                f"{100 * q['near_copy_fraction']:.1f} %")
    done: list[dict] = []

    def keep(row: dict) -> None:  # history.csv is rewritten after every round: nothing is lost
        done.append(dict(row))
        write_history(done, out / "history.csv")

    bar = progress_bar(total=len(cfg.arms) * int(cfg.fl.rounds), desc="GenFL arms", unit="round")

    def keep_and_tick(row: dict) -> None:
        keep(row)
        bar.set_postfix(arm=row.get("arm"), acc=f"{row.get('test_acc', float('nan')):.3f}")
        bar.update(1)

    try:
        rows, extra = run_arms(cfg, split, pool, log, on_round=keep_and_tick)
    finally:
        bar.close()
    summary.update(extra)
    summary["final_accuracy"] = {arm: [r for r in rows if r["arm"] == arm][-1]["test_acc"]
                                 for arm in cfg.arms}
    write_history(rows, out / "history.csv")
    plot_accuracy(rows, out / "accuracy.png",
                  f"{cfg.dataset}, {cfg.clients} clients, "
                  + (f"Dirichlet({cfg.alpha})" if cfg.partition == "dirichlet"
                     else f"{cfg.shards_per_client} shards/client"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    log(f"wrote {out}/config.yaml, history.csv, summary.json, accuracy.png"
        + (", samples.png" if pool is not None else ""))
    return summary
