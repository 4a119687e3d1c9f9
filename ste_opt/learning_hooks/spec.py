"""What a schedule may know about the training run: a typed model spec and a profile callback.

The trainer hands every schedule a :class:`PlanContext` (``plan(round_idx, client_ids, context)``)
instead of itself: the model's real numbers (:class:`ModelSpec`) and one callback that measures
the sampled clients' retention profiles (:data:`ProfileFn`). Nothing else of the trainer is
reachable from a schedule, so a schedule can be tested with a hand-made spec and a fake profile.
Importing this module does not import torch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: the embedded default backbone ("vit_compact"): digits upsampled to 32 px, 4-px patches. Kept
#: here (no torch) so that the analytic memory model can describe it on a core-only install.
COMPACT_DEFAULTS = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=96, depth=6, num_heads=3,
                        mlp_ratio=2.0)

__all__ = ["ModelSpec", "PlanContext", "ProfileFn", "COMPACT_DEFAULTS"]

#: ``profiles(client_ids, n_batches, round_idx) -> {client: array (N,)}``: each client's [CLS]
#: attention at the split layer on its own data, sorted descending per sample and summed rank by
#: rank over ``n_batches`` batches (ST-SFLora's ᾱ_m); ``round_idx=None``: the next round.
ProfileFn = Callable[[Sequence[int], int, "int | None"], Mapping[int, np.ndarray]]


@dataclass(frozen=True)
class ModelSpec:
    """The trained model and the clients' data, in the numbers the closed loop needs.

    Attributes
    ----------
    num_patches : int
        N, patch tokens per sample.
    embed_dim : int
        D, embedding width (elements per token).
    batch_size : int
        Configured loader batch (``federation.batch_size``); a client with fewer samples uses
        its data size (:meth:`loader_batch`).
    local_steps : mapping client -> int
        Local steps (uploads) of each client per round.
    client_sizes : mapping client -> int
        Training samples of each client.
    cut_layer, depth : int
        Split point and number of transformer blocks.
    num_prefix_tokens : int
        Prefix tokens ([CLS]) of the client part.
    client_params : int
        Trainable (LoRA) parameters of the client part: elements of its adapter upload.
    image_size : int
        Input side in pixels.
    """

    num_patches: int
    embed_dim: int
    batch_size: int
    local_steps: Mapping[int, int]
    client_sizes: Mapping[int, int]
    cut_layer: int = 0
    depth: int = 0
    num_prefix_tokens: int = 1
    client_params: int = 0
    image_size: int = 32

    @property
    def num_clients(self) -> int:
        """Clients of the federation (client ids ``0 .. num_clients - 1``)."""
        return len(self.client_sizes)

    def loader_batch(self, client: int) -> int:
        """Samples per upload of ``client``: ``min(batch_size, its data size)``."""
        return min(int(self.batch_size), int(self.client_sizes[int(client)]))

    def samples_per_round(self) -> dict[int, int]:
        """Samples each client uploads in one round: local steps × loader batch."""
        return {int(c): int(s) * self.loader_batch(c) for c, s in self.local_steps.items()}

    def samples_measured(self, client: int, n_batches: int = 1) -> int:
        """Samples behind a client's measured profile: ``min(n_batches, local steps) × loader batch``."""
        steps = int(self.local_steps[int(client)])
        return max(1, min(int(n_batches), steps)) * self.loader_batch(client)

    def as_dict(self) -> dict:
        """The spec as a plain dict (for summaries / JSON): the old ``model_spec()`` keys."""
        return {"num_patches": int(self.num_patches), "embed_dim": int(self.embed_dim),
                "batch_size": int(self.batch_size), "cut_layer": int(self.cut_layer),
                "depth": int(self.depth), "num_prefix_tokens": int(self.num_prefix_tokens),
                "local_steps": {int(c): int(s) for c, s in self.local_steps.items()}}


@dataclass(frozen=True)
class PlanContext:
    """What :meth:`Schedule.plan` receives: the model spec and the profile callback."""

    spec: ModelSpec
    profiles: ProfileFn
