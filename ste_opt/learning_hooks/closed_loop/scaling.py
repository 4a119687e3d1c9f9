"""Scaling a scenario to the trained model, and the round's scenario (fading redrawn).

The problem uses the trained model's real spec (:class:`~ste_opt.learning_hooks.spec.ModelSpec`):
``n_patches = N``, ``dim = D``, ``bits = q`` and ``batch`` = samples a client uploads in one round
(local steps × loader batch). Since ``payload_bits`` is linear in the batch, the solution's
``S_m = Scenario.payload_bits(K_m)`` equals the packed bits the client measures over the round,
exactly, when every client uploads the same number of samples per round (fix
``federation.local_steps`` and give every client at least one full batch); otherwise each client's
exact prediction is still recorded (``predicted_bits``) and the solver's S_m is off by the client's
sample ratio (``solution_bits``).

The compact digits ViT sends far fewer bits than ViT-B/16 (the paper's model), so on the paper's
50 MHz every upload would take milliseconds and no constraint would bind. To keep the paper's
regime, ``scale="payload"`` multiplies the bandwidth **and** the path gain by
``ρ = S_model(N, q) / S_paper(N_paper, 32)`` (the ratio of the all-token payloads). Then
``R' = ρ R`` at the same SNR, so every upload time, power and energy is the paper's for the
corresponding payload fraction: same deadlines, same energy budgets, same trade-offs.
``compute="paper"`` keeps the paper's client compute time T0 (FLOPs per sample rescaled to the
batch); ``compute="model"`` uses ``client_flops`` as given. ``k_min`` defaults to the paper's
fraction ``round(N · 64 / 196)``. Everything is configurable; ``scale=1.0`` disables scaling.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ...errors import InvalidScenarioError
from ...model.payload import payload_bits
from ..spec import ModelSpec

__all__ = ["FADING_STREAM", "scenario_for_spec", "scenario_for_model", "sflam_scenario_for_model",
           "round_scenario", "check_scenario_matches"]

#: Third entry of the per-round fading seed ``[seed, round_idx, FADING_STREAM]``.
FADING_STREAM = 101


def scenario_for_spec(n_devices: int, *, n_patches: int, dim: int, batch: int, bits: int = 8,
                      preset: str = "st-sflora", seed: int | None = 0, k_min: int | None = None,
                      scale: float | str = "payload", compute: str = "paper",
                      client_flops: float | None = None, preset_options: Mapping | None = None):
    """A scenario of ``n_devices`` for a model with N patches of width D uploading ``batch``
    samples per round at ``bits`` per element.

    Parameters
    ----------
    scale : "payload" or float
        Multiplier ρ of the bandwidth and the path gain; ``"payload"``:
        ``payload_bits(batch, N, D, bits) / paper_payload(N_paper)`` (see the module docstring).
    compute : {"paper", "model"}
        ``"paper"`` keeps the preset's client compute time per round; ``"model"`` uses
        ``client_flops`` (FLOPs per sample, required then).
    k_min : int, optional
        Smallest K; default ``max(1, round(N · k_min_paper / N_paper))``.

    Returns
    -------
    Scenario, with ``meta["closed_loop"]`` recording ρ and the rule.
    """
    from ...scenarios import make_scenario

    base = make_scenario(preset, n_devices=int(n_devices), seed=seed, **dict(preset_options or {}))
    n, d, b, q = int(n_patches), int(dim), int(batch), int(bits)
    ref_bits = float(base.payload_bits(base.n_patches))
    model_bits = float(payload_bits(b, n, d, q, extra_tokens=base.extra_tokens))
    if scale == "payload":
        rho = model_bits / ref_bits
    else:
        rho = float(scale)
        if not math.isfinite(rho) or rho <= 0:
            raise InvalidScenarioError(f"scale must be 'payload' or a positive number, got {scale!r}",
                                       field="scale")
    if compute == "paper":
        flops = base.client_flops * base.batch / b
    elif compute == "model":
        if client_flops is None:
            raise InvalidScenarioError("compute='model' needs client_flops (FLOPs per sample)",
                                       field="client_flops")
        flops = float(client_flops)
    else:
        raise InvalidScenarioError(f"compute must be 'paper' or 'model', got {compute!r}", field="compute")
    kmin = int(k_min) if k_min is not None else max(1, int(round(n * base.k_min / base.n_patches)))
    if not 1 <= kmin <= n:
        raise InvalidScenarioError(f"k_min = {kmin} must be in [1, {n}]", field="k_min")
    # keep the preset's retention family shape, resampled on N ranks (replaced by calibration)
    x_old = np.linspace(0.0, 1.0, base.n_patches)
    x_new = np.linspace(0.0, 1.0, n)
    ret = np.vstack([np.interp(x_new, x_old, row) for row in base.retention])
    ret = np.minimum.accumulate(ret, axis=1) * (base.n_patches / n) * (b / base.batch)
    meta = dict(base.meta)
    meta["closed_loop"] = {"scale": rho, "scale_rule": "payload" if scale == "payload" else "fixed",
                           "paper_payload_bits": ref_bits, "model_payload_bits": model_bits,
                           "compute": compute, "ref_loss_db_paper": base.ref_loss_db}
    return base.replace(
        n_patches=n, dim=d, batch=b, bits=q, k_min=kmin, retention=ret, client_flops=flops,
        bandwidth_hz=base.bandwidth_hz * rho, path_gain=base.path_gain * rho,
        ref_loss_db=base.ref_loss_db - 10.0 * math.log10(rho),
        device_ids=np.arange(int(n_devices)), meta=meta)


def scenario_for_model(spec: ModelSpec, *, bits: int = 8, **options):
    """:func:`scenario_for_spec` with the model's N, D, one device per client (device i is
    client i) and ``batch`` = the largest number of samples a client uploads per round."""
    spr = spec.samples_per_round()
    return scenario_for_spec(spec.num_clients, n_patches=int(spec.num_patches), dim=int(spec.embed_dim),
                             batch=max(spr.values()), bits=bits, **options)


def sflam_scenario_for_model(spec: ModelSpec, *, seed: int | None = 0, scale: float | str = "payload",
                             compute: str = "paper", preset_options: Mapping | None = None):
    """An SFLAM scenario (preset ``"sflam"``) for the model: one device per client,
    ``tokens = N + 1`` ([CLS] + all patches, no selection), ``dim = D``, ``local_epochs = 1``,
    ``samples`` = each client's samples per round, ``client_params`` = the client's trainable
    (LoRA) parameters, so that the activation part of ``uplink_bits(b)`` equals the packed bits
    the client measures at b bits and the model part equals its fp32 adapter upload.

    ``scale="payload"`` multiplies the subchannel width and the path gain by
    ρ = mean model uplink / mean preset uplink (both at 32 bits), keeping SNR and upload times;
    ``compute="paper"`` rescales the client and server FLOPs per sample to keep the preset's mean
    compute and server times. The memory limit is lifted (the preset's memory model is ViT-B/32's).
    """
    from ...scenarios import make_scenario

    n_clients = spec.num_clients
    base = make_scenario("sflam", n_devices=n_clients, seed=seed, **dict(preset_options or {}))
    spr = spec.samples_per_round()
    samples = np.array([spr[c] for c in range(n_clients)], dtype=float)
    params = int(spec.client_params)
    model = base.replace(tokens=int(spec.num_patches) + 1, dim=int(spec.embed_dim), local_epochs=1,
                         samples=samples, batch=int(spec.batch_size), client_params=params,
                         memory_max_bytes=np.full(n_clients, np.inf), image_size=int(spec.image_size))
    if scale == "payload":
        rho = float(np.mean(model.uplink_bits(32)) / np.mean(base.uplink_bits(32)))
    else:
        rho = float(scale)
    if compute == "paper":
        ratio = float(np.mean(base.processed_samples) / np.mean(model.processed_samples))
        model = model.replace(client_flops=base.client_flops * ratio, server_flops=base.server_flops * ratio)
    meta = dict(base.meta)
    meta["closed_loop"] = {"scale": rho, "compute": compute, "client_params": params}
    return model.replace(subchannel_hz=base.subchannel_hz * rho, path_gain=base.path_gain * rho,
                         ref_loss_db=base.ref_loss_db - 10.0 * math.log10(rho),
                         device_ids=np.arange(n_clients), meta=meta)


def round_scenario(scenario, client_ids: Sequence[int], round_idx: int, seed: int):
    """The round's scenario: fading redrawn with ``[seed, round_idx, FADING_STREAM]`` on all
    devices, then restricted to ``client_ids`` (in that order)."""
    rng = np.random.default_rng([int(seed), int(round_idx), FADING_STREAM])
    return scenario.redraw_fading(rng).subset([int(c) for c in client_ids])


def check_scenario_matches(scenario, spec: ModelSpec) -> None:
    """Refuse a scenario whose devices or model numbers differ from the trained model's
    (predicted and measured bits would differ)."""
    s = scenario
    if s.n_devices != spec.num_clients:
        raise InvalidScenarioError(
            f"scenario has {s.n_devices} devices but the trainer has {spec.num_clients} clients "
            "(device i is client i)", field="scenario")
    checks = [("dim", spec.embed_dim)]
    if getattr(s, "kind", "ste") == "sflam":        # SFLAM counts [CLS] among its tokens
        checks.append(("tokens", int(spec.num_patches) + 1))
    else:
        checks.append(("n_patches", spec.num_patches))
    for name, want in checks:
        if int(getattr(s, name)) != int(want):
            raise InvalidScenarioError(
                f"scenario {name} = {getattr(s, name)} but the trained model has {want}: predicted and "
                "measured bits would differ", field=name)
