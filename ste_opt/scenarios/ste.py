"""The ST-SFLora system model of one training round: devices, wireless link and model spec
(docs/MODEL.md §2).

A :class:`Scenario` is a struct of arrays: every per-device field has shape (M,), the retention
profiles (M, N). It is immutable in spirit: methods return new scenarios. Units are SI.

Presets are registered builders: ``Scenario.preset("st-sflora", n_devices=10, seed=0)``;
``ste_opt.PRESETS`` lists them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidScenarioError
from ..model import channel, semantics
from ..model.payload import SIDE_BITS_PER_TOKEN, check_bit_width, payload_bits
from ..units import noise_psd_w_per_hz
from .base import ScenarioBase
from .presets import make_scenario, register_preset

__all__ = ["Scenario", "STSFLORA_DEFAULTS", "SIDE_BITS_PER_TOKEN"]


_DEVICE_FIELDS = ("distance_m", "path_gain", "fading", "p_max_w", "cpu_freq_hz", "cores",
                  "velocity_mps", "energy_max_j")


@dataclass(frozen=True, eq=False)
class Scenario(ScenarioBase):
    """One round of the ST-SFLora system: M active devices sharing an orthogonal uplink.

    Per-device arrays, shape (M,)
    ------------------------------
    distance_m : distance to the base station (m)
    path_gain : large-scale gain ``10^(-PL0/10) d^(-exponent)`` (linear)
    fading : small-scale power gain ``|g|^2`` (linear, Exp(1) under Rayleigh)
    p_max_w : maximum transmit power (W)
    cpu_freq_hz : device accelerator clock (Hz)
    cores : device accelerator cores
    velocity_mps : speed, for the time the device stays in coverage (m/s)
    energy_max_j : uplink energy budget of the round (J)
    retention : (M, N) sorted [CLS]-attention profiles ``alpha_bar`` (non-increasing rows)

    Wireless and model
    ------------------
    bandwidth_hz : total uplink bandwidth W_tot (Hz)
    noise_psd_dbm_hz : noise power spectral density N0 (dBm/Hz)
    n_patches, dim, batch, bits, extra_tokens : ViT spec: N, D, B, q (bits/element), c0
    k_min : smallest number of kept patch tokens
    client_flops : forward FLOPs per sample of the client part
    flops_per_cycle : FLOPs per cycle per core (nu)
    kappa : effective switched capacitance (energy = kappa * cycles * f^2)
    t_max_s : cap of the standing time (s); cell_radius_m : coverage radius (m)
    """

    distance_m: np.ndarray
    path_gain: np.ndarray
    fading: np.ndarray
    p_max_w: np.ndarray
    cpu_freq_hz: np.ndarray
    cores: np.ndarray
    velocity_mps: np.ndarray
    energy_max_j: np.ndarray
    retention: np.ndarray
    bandwidth_hz: float = 50e6
    noise_psd_dbm_hz: float = -174.0
    path_loss_exponent: float = 2.5
    ref_loss_db: float = 32.0
    cell_radius_m: float = 500.0
    t_max_s: float = 10.0
    n_patches: int = 196
    dim: int = 768
    batch: int = 64
    bits: int = 32
    extra_tokens: int = 2
    k_min: int = 64
    client_flops: float = 17.6e9
    flops_per_cycle: float = 64.0
    kappa: float = 1e-28
    device_ids: np.ndarray | None = None
    preset_name: str = "custom"
    seed: int | None = None
    meta: dict = field(default_factory=dict)

    kind = "ste"
    DEVICE_FIELDS = _DEVICE_FIELDS
    REQUIRED_FIELDS = (*_DEVICE_FIELDS, "retention")

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        m = self._coerce_device_arrays()
        self._check_device_positive(("distance_m", "path_gain", "fading", "p_max_w", "cpu_freq_hz",
                                     "cores", "energy_max_j"))
        self._check_device_positive(("velocity_mps",), strict=False)
        self._check_scalars(("bandwidth_hz", "t_max_s", "cell_radius_m", "client_flops",
                             "flops_per_cycle"), "positive")
        self._check_scalars(("kappa",), "nonnegative")
        self._check_scalars(("n_patches", "dim", "batch", "bits", "k_min"), "posint")
        if int(self.extra_tokens) != self.extra_tokens or self.extra_tokens < 0:
            raise InvalidScenarioError(f"extra_tokens must be a non-negative integer, got {self.extra_tokens}",
                                       field="extra_tokens")
        self._set("extra_tokens", int(self.extra_tokens))
        check_bit_width(self.bits, field="bits")
        if self.k_min > self.n_patches:
            raise InvalidScenarioError(
                f"k_min = {self.k_min} exceeds n_patches = {self.n_patches}", field="k_min")
        if not np.isfinite(self.noise_psd_dbm_hz):
            raise InvalidScenarioError("noise_psd_dbm_hz must be finite", field="noise_psd_dbm_hz")
        self._set("retention", semantics.validate_profiles(self.retention, m, self.n_patches,
                                                           field="retention"))
        self._set("meta", dict(self.meta))

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_devices(self) -> int:
        return int(self.distance_m.shape[0])

    @property
    def gain(self) -> np.ndarray:
        """Channel power gain h = path gain x fading (linear)."""
        return self.path_gain * self.fading

    @property
    def noise_psd_w_hz(self) -> float:
        return noise_psd_w_per_hz(self.noise_psd_dbm_hz)

    @property
    def compute_time_s(self) -> np.ndarray:
        """Client forward time before the upload: ``B Φ_c / (f cores ν)`` (s)."""
        return self.batch * self.client_flops / (self.cpu_freq_hz * self.cores * self.flops_per_cycle)

    @property
    def compute_energy_j(self) -> np.ndarray:
        """Client forward energy: ``κ (B Φ_c / ν) f²`` (J); cycles counted over all cores."""
        return self.kappa * (self.batch * self.client_flops / self.flops_per_cycle) * self.cpu_freq_hz ** 2

    @property
    def standing_time_s(self) -> np.ndarray:
        """Time the device stays in coverage: ``min((R_cell - d)/v, T_max)`` (s)."""
        with np.errstate(divide="ignore"):
            t = (self.cell_radius_m - self.distance_m) / self.velocity_mps
        t = np.where(self.velocity_mps > 0, t, np.inf)
        return np.minimum(np.maximum(t, 0.0), self.t_max_s)

    @property
    def bit_width(self) -> int:
        """q, bits per activation element on the uplink (the ``bits`` field)."""
        return self.bits

    @property
    def bits_per_token(self) -> int:
        """beta: bits of one token over the batch, including side information."""
        return int(payload_bits(self.batch, 1, self.dim, self.bits, extra_tokens=0))

    def payload_bits(self, tokens_kept) -> np.ndarray:
        """Uplink bits S(K) = B (K + c0) D q + side information, per device."""
        return np.asarray(payload_bits(self.batch, tokens_kept, self.dim, self.bits,
                                       extra_tokens=self.extra_tokens), dtype=float)

    # ------------------------------------------------------------------ transformations
    def subset(self, devices) -> Scenario:
        """The scenario restricted to the given device indices (order kept)."""
        idx = np.asarray(devices, dtype=int)
        per = {name: getattr(self, name)[idx] for name in _DEVICE_FIELDS}
        return self.replace(retention=self.retention[idx], device_ids=self.device_ids[idx], **per)

    def with_retention(self, profiles, k_min: int | None = None) -> Scenario:
        """A copy with new retention profiles (M, N'); ``n_patches`` follows the profiles.

        ``k_min`` sets the new smallest K; without it K_min is kept, and lowered to N' only when
        the profiles have fewer columns, which is logged and recorded in
        ``meta["k_min_lowered"]`` (never silent)."""
        from ..validate import as_float_array

        p = as_float_array(profiles, "retention", ndim=2)
        meta = dict(self.meta)
        if k_min is None:
            k_min = min(self.k_min, p.shape[1])
            if k_min < self.k_min:
                logging.getLogger(__name__).warning(
                    "with_retention: profiles have %d tokens < k_min = %d: k_min lowered to %d",
                    p.shape[1], self.k_min, k_min)
                meta["k_min_lowered"] = {"from": int(self.k_min), "to": int(k_min)}
        return self.replace(retention=p, n_patches=p.shape[1], k_min=k_min, meta=meta)

    @classmethod
    def preset(cls, name: str = "st-sflora", **kwargs):
        """Build a registered preset, e.g. ``Scenario.preset("st-sflora", n_devices=10, seed=0)``."""
        return make_scenario(name, **kwargs)

    def __repr__(self) -> str:
        return (f"Scenario(preset={self.preset_name!r}, n_devices={self.n_devices}, "
                f"bandwidth_hz={self.bandwidth_hz:.3g}, n_patches={self.n_patches}, dim={self.dim}, "
                f"batch={self.batch}, bits={self.bits})")


#: Paper defaults of the ST-SFLora preset, and the choices made where the paper is silent.
STSFLORA_DEFAULTS = dict(
    population=100,               # clients in the cell; n_devices of them are active in a round
    bandwidth_per_device_hz=5e6,  # W_tot = 50 MHz for 10 active devices
    p_max_w=0.2,
    noise_psd_dbm_hz=-174.0,
    path_loss_exponent=2.5,
    ref_loss_db=32.0,             # chosen: see README "Preset calibration"
    min_distance_m=5.0,
    cell_radius_m=500.0,
    cpu_freq_hz=(1.0e9, 1.5e9),
    cores=(4, 6),
    velocity_mps=(1.0, 5.0),      # chosen (paper silent): pedestrians and cyclists
    energy_max_j=0.8,
    t_max_s=10.0,
    batch=64, n_patches=196, dim=768, bits=32, extra_tokens=2, k_min=64,
    client_flops=17.6e9,          # 6 ViT-B/16 blocks + patch embedding, per sample
    flops_per_cycle=64.0,         # chosen: gives a 2–4.4 s client forward time
    kappa=1e-28,
    profile_family="exponential",
    profile_scale=130.0,          # decay length of the sorted [CLS] attention (tokens)
    profile_spread=0.25,
    profile_mass=0.9,
)


def _ranges():
    from ..validate import Opt

    pos = Opt("float", lo=0, lo_open=True)
    return {"population": Opt("int", lo=1), "bandwidth_per_device_hz": pos, "p_max_w": pos,
            "min_distance_m": pos, "cell_radius_m": pos, "energy_max_j": pos, "t_max_s": pos,
            "batch": Opt("int", lo=1), "n_patches": Opt("int", lo=1), "dim": Opt("int", lo=1),
            "bits": Opt("int", lo=1, hi=32), "extra_tokens": Opt("int", lo=0), "k_min": Opt("int", lo=1),
            "client_flops": pos, "flops_per_cycle": pos, "kappa": Opt("float", lo=0),
            "profile_family": Opt("choice", choices=semantics.FAMILIES), "profile_scale": pos,
            "profile_spread": Opt("float", lo=0, hi=10), "profile_mass": Opt("float", lo=0, lo_open=True, hi=1),
            "path_loss_exponent": Opt("float", lo=0, lo_open=True, hi=10)}


#: Ranges of the preset options (others: the type of their default, see ste_opt.validate).
STSFLORA_RANGES = _ranges()


@register_preset("st-sflora")
def _st_sflora(n_devices: int = 10, seed: int | None = 0, bandwidth_hz: float | None = None,
               **overrides) -> Scenario:
    """ST-SFLora's paper setting: ``n_devices`` active clients drawn from a population of
    ``max(100, n_devices)`` placed uniformly (by area) in a 5–500 m cell. See
    :data:`STSFLORA_DEFAULTS`; any of its keys can be overridden."""
    from ..validate import as_float, as_int, check_preset_options, check_size

    overrides = check_preset_options(STSFLORA_DEFAULTS, overrides, STSFLORA_RANGES)
    n = as_int(n_devices, "n_devices", lo=1)
    seed = None if seed is None else as_int(seed, "seed", lo=0)
    if bandwidth_hz is not None:
        bandwidth_hz = as_float(bandwidth_hz, "bandwidth_hz", lo=0, lo_open=True)
    c = {**STSFLORA_DEFAULTS, **overrides}
    check_size(float(n) * c["n_patches"], f"st-sflora preset with {n} devices x {c['n_patches']} patches")
    if not c["min_distance_m"] < c["cell_radius_m"]:
        raise InvalidScenarioError("min_distance_m must be below cell_radius_m", field="min_distance_m")
    if c["k_min"] > c["n_patches"]:
        raise InvalidScenarioError(f"k_min = {c['k_min']} exceeds n_patches = {c['n_patches']}", field="k_min")
    rng = np.random.default_rng(seed)
    pop = max(int(c["population"]), n)
    r0, r1 = c["min_distance_m"], c["cell_radius_m"]
    dist_pop = np.sqrt(rng.uniform(r0 ** 2, r1 ** 2, pop))
    vel_pop = rng.uniform(*c["velocity_mps"], pop)
    freq_pop = rng.uniform(*c["cpu_freq_hz"], pop)
    cores_pop = rng.integers(c["cores"][0], c["cores"][1] + 1, pop)
    active = np.sort(rng.choice(pop, size=n, replace=False))
    fading = channel.rayleigh_fading(rng, n)
    profiles = semantics.parametric_profiles(
        n, c["n_patches"], rng, family=c["profile_family"], scale=c["profile_scale"],
        spread=c["profile_spread"], mass=c["profile_mass"], batch=c["batch"])
    d = dist_pop[active]
    return Scenario(
        distance_m=d,
        path_gain=channel.path_gain(d, c["path_loss_exponent"], c["ref_loss_db"]),
        fading=fading,
        p_max_w=np.full(n, c["p_max_w"]),
        cpu_freq_hz=freq_pop[active],
        cores=cores_pop[active].astype(float),
        velocity_mps=vel_pop[active],
        energy_max_j=np.full(n, c["energy_max_j"]),
        retention=profiles,
        bandwidth_hz=float(bandwidth_hz if bandwidth_hz is not None else c["bandwidth_per_device_hz"] * n),
        noise_psd_dbm_hz=c["noise_psd_dbm_hz"],
        path_loss_exponent=c["path_loss_exponent"],
        ref_loss_db=c["ref_loss_db"],
        cell_radius_m=c["cell_radius_m"],
        t_max_s=c["t_max_s"],
        n_patches=c["n_patches"], dim=c["dim"], batch=c["batch"], bits=c["bits"],
        extra_tokens=c["extra_tokens"], k_min=c["k_min"],
        client_flops=c["client_flops"], flops_per_cycle=c["flops_per_cycle"], kappa=c["kappa"],
        device_ids=active, preset_name="st-sflora", seed=seed,
        meta={"population": pop, **{k: v for k, v in overrides.items()}},
    )

