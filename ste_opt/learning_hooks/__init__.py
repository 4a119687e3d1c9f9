"""Learning side of ste-opt: split-LoRA ViT fine-tuning with TSFLora token compression.

Everything torch/timm/peft lives here and is imported lazily by the modules that need it;
``import ste_opt`` never imports this package. Modules:

- ``_compat``    torchvision guard; ``import_timm()``, ``import_peft()``
- ``split``      cut a timm ViT into client and server modules, LoRA through peft
- ``compress``   [CLS] attention, top-K selection + merge, quantization, bit packing, ``Payload``
- ``federated``  partitions, client sampling, ``Aggregator`` protocol, ``FedAvg``
- ``data``       digits / CIFAR-10/100 / Tiny-ImageNet from local files
- ``memory``     training-memory accounting (bytes)
- ``schedule``   ``ClientPlan``, ``Schedule``, ``StaticSchedule``
- ``roles``      client and server roles that move only bytes; the local backend
- ``trainer``    ``SplitFedTrainer``
"""
from .federated import Aggregator, FedAvg, dirichlet_partition, sample_clients, shard_partition
from .schedule import ClientPlan, Schedule, StaticSchedule

__all__ = ["Aggregator", "FedAvg", "dirichlet_partition", "shard_partition", "sample_clients",
           "ClientPlan", "Schedule", "StaticSchedule"]

# closed loop (issue 6): solver-driven schedules; importing it does not import torch
from .solver_schedule import SolverSchedule  # noqa: E402

__all__ += ["SolverSchedule"]
