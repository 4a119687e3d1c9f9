"""Calibration: each sampled client measures its retention profile ᾱ_m on its own data.

ST-SFLora's protocol (docs/closed_loop.md): at the start of a round every sampled client runs its
client part (current global adapters) on one or more of its own batches, takes the [CLS] row of
the attention at the split layer (averaged over heads), sorts each sample's N scores in
descending order and adds them rank by rank. The resulting vector of N numbers (non-increasing by
construction) is sent to the server, which turns the profiles into the ``STEProblem``'s retention
functions ``f_m(K) = Σ_{n ≤ K} ᾱ_{m,n}``.

Batch convention
----------------
A profile is a *sum* over samples, so its scale grows with the number of samples measured. The
problem a schedule solves describes one round's upload of ``batch`` samples (``Scenario.batch``);
a profile measured over ``n`` samples is rescaled by ``batch / n`` so that it is the expected sum
over the problem's batch. With the default one calibration batch, ``n`` is the client's loader
batch size ``min(federation.batch_size, client data size)``.

Upload cost: the profile travels as N float32 numbers, :func:`profile_uplink_bits`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InvalidScenarioError
from ..model.semantics import profile_from_attention, validate_profiles
from .spec import ModelSpec, PlanContext

__all__ = ["calibrate_profiles", "profiles_matrix", "profile_uplink_bits", "samples_measured",
           "profile_from_attention"]


def samples_measured(spec: ModelSpec, client_id: int, n_batches: int = 1) -> int:
    """Samples behind a client's measured profile: ``min(n_batches, local steps) × loader batch``
    (:meth:`ModelSpec.samples_measured`)."""
    return spec.samples_measured(client_id, n_batches)


def calibrate_profiles(context: PlanContext, client_ids: Sequence[int], *, n_batches: int = 1,
                       round_idx: int | None = None, batch: int | None = None) -> dict[int, np.ndarray]:
    """Measure the sampled clients' retention profiles with the current global model.

    Parameters
    ----------
    context : PlanContext
        Its ``profiles(client_ids, n_batches, round_idx)`` callback measures the sorted [CLS]
        attention at the split layer, summed rank by rank over the batches
        (``SplitFedTrainer.client_cls_profiles``); its ``spec`` gives the samples measured.
        ``SplitFedTrainer.plan_context()`` builds one.
    client_ids : sequence of int
        The round's sampled clients.
    n_batches : int
        Batches of its own data each client measures on (its round's seeded shuffle).
    round_idx : int, optional
        The round being planned (default: the trainer's next round).
    batch : int, optional
        Rescale every profile to this many samples (the problem's ``Scenario.batch``); default:
        no rescaling (sums over the samples measured).

    Returns
    -------
    dict client -> array (N,), non-negative and non-increasing.
    """
    ids = [int(c) for c in client_ids]
    if not ids:
        return {}
    raw = context.profiles(ids, int(n_batches), round_idx)
    out: dict[int, np.ndarray] = {}
    for c in ids:
        if c not in raw:
            raise InvalidScenarioError(f"trainer returned no profile for client {c}", field="retention",
                                       device=c)
        p = np.asarray(raw[c], dtype=float)
        if batch is not None:
            p = p * (float(batch) / context.spec.samples_measured(c, n_batches))
        # a sum of per-sample sorted rows is non-increasing; the running minimum only removes
        # floating-point ties that summation could in principle reorder
        p = np.minimum.accumulate(np.maximum(p, 0.0))
        validate_profiles(p[None, :], field="retention")
        out[c] = p
    return out


def profiles_matrix(profiles: Mapping[int, np.ndarray], client_ids: Sequence[int]) -> np.ndarray:
    """Stack profiles in ``client_ids`` order: shape (M, N), rows validated."""
    rows = [np.asarray(profiles[int(c)], dtype=float) for c in client_ids]
    return validate_profiles(np.vstack(rows), n_devices=len(rows), field="retention")


def profile_uplink_bits(n_patches: int, bits_per_value: int = 32) -> int:
    """Bits a client sends to report its profile: N values at ``bits_per_value`` (float32)."""
    return int(n_patches) * int(bits_per_value)
