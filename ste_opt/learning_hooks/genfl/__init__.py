"""GenFL: server-generated synthetic data for non-IID federated learning (``docs/genfl.md``).

Modules: ``generator`` (built-in flow-matching UNet: train, sample, save/load), ``sources``
(built-in / array-or-folder / diffusers backends, deterministic ``SyntheticPool``), ``workflow``
(label reports, top-up counts, shipping), ``aggregation`` (policies on the trainer's
``Aggregator`` protocol), ``fl`` (whole-model FL round loop for the CNN), ``metrics`` (referee,
FD, memorisation), ``data`` (disjoint server / client / test split), ``run`` (baselines driver).
"""
from .aggregation import SyntheticAwareFedAvg, SyntheticModelBlend, make_aggregator
from .data import GenFLSplit, split_arrays_for_genfl, split_digits_for_genfl
from .fl import FLConfig, SmallCNN, evaluate, local_train, run_federated
from .generator import FlowMatchingGenerator, GeneratorConfig, UNet, euler_sample
from .metrics import (
    frechet_distance,
    generator_quality,
    memorisation_report,
    nearest_neighbour_distances,
    train_referee,
)
from .run import GenFLRunConfig, run_arms, run_experiment
from .sources import (
    ArraySource,
    DiffusersSource,
    FlowMatchingSource,
    SyntheticPool,
    SyntheticSource,
)
from .workflow import (
    GenFLClient,
    GenFLServer,
    LabelReport,
    label_histogram,
    run_data_step,
    topup_counts,
)

__all__ = [
    "SyntheticAwareFedAvg", "SyntheticModelBlend", "make_aggregator",
    "GenFLSplit", "split_arrays_for_genfl", "split_digits_for_genfl",
    "FLConfig", "SmallCNN", "evaluate", "local_train", "run_federated",
    "FlowMatchingGenerator", "GeneratorConfig", "UNet", "euler_sample",
    "frechet_distance", "generator_quality", "memorisation_report",
    "nearest_neighbour_distances", "train_referee",
    "GenFLRunConfig", "run_arms", "run_experiment",
    "ArraySource", "DiffusersSource", "FlowMatchingSource", "SyntheticPool", "SyntheticSource",
    "GenFLClient", "GenFLServer", "LabelReport", "label_histogram", "run_data_step", "topup_counts",
]
