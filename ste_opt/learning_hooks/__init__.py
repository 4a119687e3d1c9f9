"""Learning side of ste-opt: split-LoRA ViT fine-tuning with TSFLora token compression.

Everything torch/timm/peft lives here and is imported lazily by the modules that need it;
``import ste_opt`` never imports this package. Modules:

- ``_compat``       torchvision guard; ``import_timm()``, ``import_peft()``
- ``split``         cut a timm ViT into client and server modules, LoRA through peft
- ``compress``      [CLS] attention, top-K selection + merge, quantization, bit packing, ``Payload``
- ``uplink``        the tokens-on-the-wire rule and the bits of one upload
- ``federated``     partitions, client sampling, ``Aggregator`` protocol, ``FedAvg``
- ``data``          digits in memory; ``load_splits`` for every dataset
- ``datasets``      on disk: CIFAR-10/100 (restricted unpickler), Tiny-ImageNet, ImageFolder;
                    ``DiskImageDataset`` views through a DataLoader, the model's transforms
- ``device``        ``Runtime``: device, autocast (``amp``), gradient scaler, ``torch.compile``
- ``runtime_config`` validation of the runtime config keys (no torch)
- ``paper``         the papers' bundled configs and the pre-flight check of local inputs
- ``tracking``      optional TensorBoard scalars
- ``memory``        training-memory accounting (bytes)
- ``spec``          ``ModelSpec`` (typed model spec), ``PlanContext`` (what a schedule sees)
- ``schedule``      ``ClientPlan``, ``Schedule``, ``StaticSchedule``
- ``calibrate``     retention profiles measured by the clients
- ``closed_loop``   solver-driven schedules (``SolverSchedule``, ``CostedSchedule``), one job per module
- ``framing``       framed messages (JSON header + body)
- ``client_roles``  ``ClientRole``, ``FedLoRAClientRole``; ``server_role``: ``ServerRole``
- ``results``       typed round results (``ClientRoundResult``, ``ClientStats``, ``ServerStats``)
- ``backends``      the ``Backend`` protocol and template round loop (``base``); local, Ray, Flower
- ``roles``         the historical import path of the roles and the local backend
- ``round_log``     the trainer's history and per-client rows
- ``trainer``       ``SplitFedTrainer``
"""
from .federated import Aggregator, FedAvg, dirichlet_partition, sample_clients, shard_partition
from .schedule import ClientPlan, Schedule, StaticSchedule
from .spec import ModelSpec, PlanContext

__all__ = ["Aggregator", "FedAvg", "dirichlet_partition", "shard_partition", "sample_clients",
           "ClientPlan", "Schedule", "StaticSchedule", "ModelSpec", "PlanContext"]

# closed loop (issue 6): solver-driven schedules; importing it does not import torch
from .closed_loop import CostedSchedule, SolverSchedule  # noqa: E402

__all__ += ["SolverSchedule", "CostedSchedule"]
