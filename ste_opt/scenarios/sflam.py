"""The SFLAM system model of one round: devices, OFDMA subchannels, split ViT, convergence model.

docs/MODEL.md §4 and docs/sflam.md. Following the authors' published code, the
device holds only the patch embedding of a ViT-B/32 at 224 px (49 tokens × 768 per sample), 50
clients with 10 active per round, 5 local epochs, 400–500 samples per client, batch 128. Every
constant below is a field (or a preset option) so that it can be replaced when the paper's values
become known.

Per round, device n (active) with |D_n| samples processes ``P_n = E |D_n|`` samples and

* computes its part: ``T^c_n = P_n c_dev / (ν f_n)``, energy ``κ (P_n c_dev / ν) f_n²``;
* waits for the server's share: ``T^s_n = P_n c_srv / (F_S / N)`` (server shared by the N active
  devices);
* uploads quantized activations and its client model:
  ``S_n(b) = P_n (L d b + side(b)) + 32 |θ_c|`` bits (side information per token when b < 32,
  as in :func:`ste_opt.model.payload.payload_bits`), at rate
  ``W_sc log2(1 + p h_{n,k} / (N0 W_sc))`` on its subchannel k of width ``W_sc = subchannel_hz``;
* receives gradients at 32 bits and the global client model on the same subchannel at the server
  power P_S: ``G_n = P_n L d 32 + 32 |θ_c|`` bits.

Channel gains ``h_{n,k} = path_gain_n · fading_{n,k}``: frequency-selective Rayleigh fading drawn
per device and subchannel (shape (N, K), K ≥ N).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidScenarioError
from ..model import channel
from ..model.convergence import convergence_margin, quantization_error
from ..model.payload import SIDE_BITS_PER_TOKEN, payload_bits, valid_bit_width
from ..units import noise_psd_w_per_hz
from .base import ScenarioBase
from .presets import register_preset

__all__ = ["SFLAMScenario", "SFLAM_DEFAULTS", "BIT_SET"]

#: Default set of bit-widths (32 = no quantization, fp32).
BIT_SET = (2, 4, 8, 16, 32)

_DEVICE_FIELDS = ("distance_m", "path_gain", "p_max_w", "p_min_w", "cpu_freq_hz", "samples",
                  "memory_max_bytes", "deadline_s", "energy_max_j")


@dataclass(frozen=True, eq=False)
class SFLAMScenario(ScenarioBase):
    """One SFLAM round: N active devices matched one-to-one to K ≥ N OFDMA subchannels.

    Per-device arrays, shape (N,)
    -----------------------------
    distance_m : distance to the base station (m)
    path_gain : large-scale gain ``10^(-PL0/10) d^(-exponent)`` (linear)
    p_max_w, p_min_w : transmit power range (W); ``p_min_w > 0`` (the energy-only optimum
        would otherwise transmit at vanishing power for ever)
    cpu_freq_hz : device clock f_n (Hz)
    samples : local data size |D_n| (samples)
    memory_max_bytes : device memory for split training (bytes; ``inf`` = no limit)
    deadline_s : latest end of the device's round (s; ``inf`` = no limit)
    energy_max_j : battery budget of the round (J; ``inf`` = no limit)

    Per device and subchannel, shape (N, K)
    ---------------------------------------
    fading : small-scale power gain ``|g_{n,k}|²`` (Exp(1) under Rayleigh)

    Scalars
    -------
    subchannel_hz : W_sc, width of one subchannel (Hz); total bandwidth ``K W_sc``
    noise_psd_dbm_hz : N0 (dBm/Hz); server_power_w : P_S for the gradient downlink (W)
    local_epochs, batch, tokens, dim : E, batch size, L = 49 patch tokens, d = 768
    client_params, model_params : |θ_c| on the device and parameters of the whole model
    client_flops, server_flops : training FLOPs per sample of the device part (forward +
        weight gradients) and of the server part (forward + backward)
    full_model_flops : training FLOPs per sample of the whole model (for the FL comparison)
    server_flops_per_s : server throughput F_S (FLOP/s), shared equally by the active devices
    flops_per_cycle : ν, device FLOPs per cycle; kappa : κ (energy = κ cycles f²)
    model_bits, gradient_bits, side_bits_per_token : 32, 32, 32
    image_size : input side (px), for the memory model
    bit_set : allowed bit-widths (subset of 1..16 ∪ {32})
    conv_a, conv_b0, conv_c, epsilon : convergence model ``R(b) = ⌈A / (ε − B0 − C q̄(b))⌉``
        (:mod:`ste_opt.model.convergence`); ``conv_b0`` is the error floor B0, not a bandwidth
    """

    distance_m: np.ndarray
    path_gain: np.ndarray
    fading: np.ndarray
    p_max_w: np.ndarray
    p_min_w: np.ndarray
    cpu_freq_hz: np.ndarray
    samples: np.ndarray
    memory_max_bytes: np.ndarray
    deadline_s: np.ndarray
    energy_max_j: np.ndarray
    subchannel_hz: float = 2e6
    noise_psd_dbm_hz: float = -174.0
    path_loss_exponent: float = 3.76
    ref_loss_db: float = 15.3
    cell_radius_m: float = 500.0
    server_power_w: float = 20.0
    local_epochs: int = 5
    batch: int = 128
    tokens: int = 49
    dim: int = 768
    image_size: int = 224
    client_params: int = 2_360_064
    model_params: int = 87_462_400
    client_flops: float = 462.4e6
    server_flops: float = 25.76e9
    full_model_flops: float = 26.46e9
    server_flops_per_s: float = 1e14
    flops_per_cycle: float = 16.0
    kappa: float = 1e-28
    model_bits: int = 32
    gradient_bits: int = 32
    side_bits_per_token: int = SIDE_BITS_PER_TOKEN
    bit_set: tuple = BIT_SET
    conv_a: float = 10.0
    conv_b0: float = 0.05
    conv_c: float = 5.0
    epsilon: float = 0.2
    device_ids: np.ndarray | None = None
    preset_name: str = "custom"
    seed: int | None = None
    meta: dict = field(default_factory=dict)

    kind = "sflam"
    DEVICE_FIELDS = _DEVICE_FIELDS
    REQUIRED_FIELDS = (*_DEVICE_FIELDS, "fading")

    # ------------------------------------------------------------------ validation
    def __post_init__(self):
        n = self._coerce_device_arrays()
        fad = np.asarray(self.fading, dtype=float)
        if fad.ndim != 2 or fad.shape[0] != n:
            raise InvalidScenarioError(
                f"fading must have shape (n_devices, n_subchannels) = ({n}, K), got {fad.shape}",
                field="fading")
        if fad.shape[1] < n:
            raise InvalidScenarioError(
                f"fading has {fad.shape[1]} subchannels for {n} devices: one-to-one matching needs "
                "K >= N", field="fading")
        bad = ~np.isfinite(fad) | (fad <= 0)
        if bad.any():
            d, k = map(int, np.argwhere(bad)[0])
            raise InvalidScenarioError(f"fading[{d}, {k}] = {fad[d, k]!r} for device {d}: must be "
                                       "positive and finite", field="fading", device=d)
        object.__setattr__(self, "fading", fad)
        self._check_device_positive(("distance_m", "path_gain", "p_max_w", "p_min_w", "cpu_freq_hz",
                                     "samples"))
        for name in ("memory_max_bytes", "deadline_s", "energy_max_j"):
            arr = getattr(self, name)
            bad = np.isnan(arr) | (arr <= 0)
            if bad.any():
                d = int(np.flatnonzero(bad)[0])
                raise InvalidScenarioError(f"{name}[{d}] = {arr[d]!r} for device {d}: must be positive "
                                           "(inf for no limit)", field=name, device=d)
        bad = self.p_min_w > self.p_max_w
        if bad.any():
            d = int(np.flatnonzero(bad)[0])
            raise InvalidScenarioError(f"p_min_w[{d}] = {self.p_min_w[d]} exceeds p_max_w[{d}] = "
                                       f"{self.p_max_w[d]} for device {d}", field="p_min_w", device=d)
        self._check_scalars(("subchannel_hz", "server_power_w", "client_flops", "server_flops",
                             "full_model_flops", "server_flops_per_s", "flops_per_cycle",
                             "cell_radius_m", "conv_a", "epsilon"), "positive")
        self._check_scalars(("kappa", "conv_b0", "conv_c"), "nonnegative")
        self._check_scalars(("local_epochs", "batch", "tokens", "dim", "image_size", "client_params",
                             "model_params", "model_bits", "gradient_bits"), "posint")
        if int(self.side_bits_per_token) != self.side_bits_per_token or self.side_bits_per_token < 0:
            raise InvalidScenarioError("side_bits_per_token must be a non-negative integer",
                                       field="side_bits_per_token")
        vals = np.atleast_1d(np.asarray(self.bit_set, dtype=float))
        if vals.size == 0 or not np.all(valid_bit_width(vals)):
            raise InvalidScenarioError(f"bit_set must be integers in 1..16 or 32, got {self.bit_set}",
                                       field="bit_set")
        bits = tuple(sorted({int(b) for b in vals}))
        object.__setattr__(self, "bit_set", bits)
        if not np.isfinite(self.noise_psd_dbm_hz):
            raise InvalidScenarioError("noise_psd_dbm_hz must be finite", field="noise_psd_dbm_hz")
        if not convergence_margin(max(bits), self.conv_b0, self.conv_c, self.epsilon) > 0:
            raise InvalidScenarioError(
                f"target epsilon = {self.epsilon:g} is unreachable: it must exceed conv_b0 + conv_c "
                f"q(b) = {self.conv_b0 + self.conv_c * float(quantization_error(max(bits))):g} even "
                f"at b = {max(bits)} bits", field="epsilon")
        object.__setattr__(self, "meta", dict(self.meta))

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_devices(self) -> int:
        return int(self.distance_m.shape[0])

    @property
    def n_subchannels(self) -> int:
        return int(self.fading.shape[1])

    @property
    def bandwidth_hz(self) -> float:
        return self.subchannel_hz * self.n_subchannels

    @property
    def gain(self) -> np.ndarray:
        """Channel power gains ``h_{n,k}`` (N, K), linear."""
        return self.path_gain[:, None] * self.fading

    @property
    def noise_psd_w_hz(self) -> float:
        return noise_psd_w_per_hz(self.noise_psd_dbm_hz)

    @property
    def processed_samples(self) -> np.ndarray:
        """``P_n = E |D_n|``: samples sent through the split per round."""
        return self.local_epochs * self.samples

    @property
    def compute_time_s(self) -> np.ndarray:
        """Device training time per round ``P_n c_dev / (ν f_n)`` (s)."""
        return self.processed_samples * self.client_flops / (self.flops_per_cycle * self.cpu_freq_hz)

    @property
    def compute_energy_j(self) -> np.ndarray:
        """Device training energy per round ``κ (P_n c_dev / ν) f_n²`` (J)."""
        return self.kappa * self.processed_samples * self.client_flops / self.flops_per_cycle \
            * self.cpu_freq_hz ** 2

    @property
    def server_time_s(self) -> np.ndarray:
        """Server time for device n's samples with F_S shared by the N active devices (s)."""
        return self.processed_samples * self.server_flops / (self.server_flops_per_s / self.n_devices)

    def uplink_bits(self, bits) -> np.ndarray:
        """``S_n(b)``: activations at b bits (with side information) + the client model (bits)."""
        b = np.broadcast_to(np.asarray(bits, dtype=np.int64), (self.n_devices,))
        act = payload_bits(self.processed_samples.astype(np.int64), self.tokens, self.dim, b,
                           extra_tokens=0, side_bits_per_token=self.side_bits_per_token)
        return np.asarray(act, dtype=float) + float(self.model_bits) * self.client_params

    @property
    def downlink_bits(self) -> np.ndarray:
        """``G_n``: gradients at 32 bits + the global client model (bits)."""
        return (self.processed_samples * self.tokens * self.dim * float(self.gradient_bits)
                + float(self.model_bits) * self.client_params)

    @property
    def downlink_rate_bps(self) -> np.ndarray:
        """Downlink rate on each subchannel at the server power (N, K), bit/s."""
        return channel.rate_bps(self.subchannel_hz, self.server_power_w, self.gain, self.noise_psd_w_hz)

    def memory_bytes(self, bits) -> np.ndarray:
        """Device training memory (bytes): weights, gradients and momentum of the client part,
        the fp32 input batch, and the fp32 activation plus its b-bit copy."""
        b = np.asarray(bits, dtype=float)
        return (4.0 * 3 * self.client_params + self.batch * 4.0 * 3 * self.image_size ** 2
                + self.batch * self.tokens * self.dim * (4.0 + b / 8.0))

    # ------------------------------------------------------------------ transformations
    def subset(self, devices) -> SFLAMScenario:
        """The scenario restricted to the given devices (all subchannels kept)."""
        idx = np.asarray(devices, dtype=int)
        per = {name: getattr(self, name)[idx] for name in _DEVICE_FIELDS}
        return self.replace(fading=self.fading[idx], device_ids=self.device_ids[idx], **per)

    def __repr__(self) -> str:
        return (f"SFLAMScenario(preset={self.preset_name!r}, n_devices={self.n_devices}, "
                f"n_subchannels={self.n_subchannels}, subchannel_hz={self.subchannel_hz:.3g}, "
                f"bit_set={self.bit_set})")


#: Defaults of the "sflam" preset (authors' code where it exists, docs/sflam.md proposals elsewhere).
SFLAM_DEFAULTS = dict(
    population=50,                 # clients; n_devices of them are active in a round (code: 10 of 50)
    samples=(400, 500),            # |D_n| drawn uniformly (code)
    subchannels_per_device=1,      # K = ceil(ratio * N)
    subchannel_hz=2e6,             # B0 (20 MHz for 10 devices)
    p_max_w=0.2,                   # 23 dBm
    p_min_w=1e-3,                  # 0 dBm: lower end of the power-control range
    server_power_w=20.0,           # 43 dBm downlink
    noise_psd_dbm_hz=-174.0,
    path_loss_exponent=3.76,       # 128.1 + 37.6 log10(d_km) dB
    ref_loss_db=15.3,
    min_distance_m=10.0,
    cell_radius_m=500.0,
    cpu_freq_hz=(1.0e9, 2.0e9),
    flops_per_cycle=16.0,
    kappa=1e-28,
    server_flops_per_s=1e14,
    memory_max_bytes=float("inf"),
    deadline_s=float("inf"),
    energy_max_j=float("inf"),
    local_epochs=5, batch=128, tokens=49, dim=768, image_size=224,
    client_params=2_360_064,       # ViT-B/32 patch embedding: 3*32*32*768 + 768
    model_params=87_462_400,       # ViT-B/32 with a 10-class head
    client_flops=462.4e6,          # 2 x forward (115.6 M MAC) per sample
    server_flops=25.76e9,          # 3 x forward of 12 blocks + head per sample
    full_model_flops=26.46e9,      # 3 x forward of the whole model (FL comparison)
    bit_set=BIT_SET,
    conv_a=10.0, conv_b0=0.05, conv_c=5.0, epsilon=0.2,
)


@register_preset("sflam")
def _sflam(n_devices: int = 10, seed: int | None = 0, **overrides) -> SFLAMScenario:
    """The SFLAM setting: ``n_devices`` active clients out of ``max(50, n_devices)`` placed
    uniformly (by area) in a 10–500 m cell, K = ``subchannels_per_device`` × N subchannels of
    B0 each, Rayleigh fading per device and subchannel. Any key of :data:`SFLAM_DEFAULTS` can be
    overridden."""
    from ..validate import Opt, as_int, check_preset_options, check_size

    pos = Opt("float", lo=0, lo_open=True)
    ranges = {"population": Opt("int", lo=1), "subchannels_per_device": Opt("float", lo=1, hi=1000),
              "subchannel_hz": pos, "p_max_w": pos, "p_min_w": pos, "server_power_w": pos,
              "min_distance_m": pos, "cell_radius_m": pos, "flops_per_cycle": pos,
              "kappa": Opt("float", lo=0), "server_flops_per_s": pos,
              "memory_max_bytes": Opt("float", lo=0, lo_open=True, finite=False),
              "deadline_s": Opt("float", lo=0, lo_open=True, finite=False),
              "energy_max_j": Opt("float", lo=0, lo_open=True, finite=False),
              "path_loss_exponent": Opt("float", lo=0, lo_open=True, hi=10)}
    overrides = check_preset_options(SFLAM_DEFAULTS, overrides, ranges)
    n = as_int(n_devices, "n_devices", lo=1)
    seed = None if seed is None else as_int(seed, "seed", lo=0)
    c = {**SFLAM_DEFAULTS, **overrides}
    check_size(float(n) * np.ceil(float(c["subchannels_per_device"]) * n),
               f"sflam preset with {n} devices x {int(np.ceil(c['subchannels_per_device'] * n))} subchannels")
    if not c["min_distance_m"] < c["cell_radius_m"]:
        raise InvalidScenarioError("min_distance_m must be below cell_radius_m", field="min_distance_m")
    rng = np.random.default_rng(seed)
    pop = max(int(c["population"]), n)
    r0, r1 = c["min_distance_m"], c["cell_radius_m"]
    dist_pop = np.sqrt(rng.uniform(r0 ** 2, r1 ** 2, pop))
    freq_pop = rng.uniform(*c["cpu_freq_hz"], pop)
    samples_pop = rng.integers(c["samples"][0], c["samples"][1] + 1, pop)
    active = np.sort(rng.choice(pop, size=n, replace=False))
    k = int(np.ceil(float(c["subchannels_per_device"]) * n))
    fading = channel.rayleigh_fading(rng, (n, k))
    d = dist_pop[active]
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()  # noqa: E731
    return SFLAMScenario(
        distance_m=d,
        path_gain=channel.path_gain(d, c["path_loss_exponent"], c["ref_loss_db"]),
        fading=fading,
        p_max_w=full(c["p_max_w"]), p_min_w=full(c["p_min_w"]),
        cpu_freq_hz=freq_pop[active], samples=samples_pop[active].astype(float),
        memory_max_bytes=full(c["memory_max_bytes"]), deadline_s=full(c["deadline_s"]),
        energy_max_j=full(c["energy_max_j"]),
        subchannel_hz=c["subchannel_hz"], noise_psd_dbm_hz=c["noise_psd_dbm_hz"],
        path_loss_exponent=c["path_loss_exponent"], ref_loss_db=c["ref_loss_db"],
        cell_radius_m=c["cell_radius_m"], server_power_w=c["server_power_w"],
        local_epochs=c["local_epochs"], batch=c["batch"], tokens=c["tokens"], dim=c["dim"],
        image_size=c["image_size"], client_params=c["client_params"], model_params=c["model_params"],
        client_flops=c["client_flops"], server_flops=c["server_flops"],
        full_model_flops=c["full_model_flops"], server_flops_per_s=c["server_flops_per_s"],
        flops_per_cycle=c["flops_per_cycle"], kappa=c["kappa"], bit_set=tuple(c["bit_set"]),
        conv_a=c["conv_a"], conv_b0=c["conv_b0"], conv_c=c["conv_c"], epsilon=c["epsilon"],
        device_ids=active, preset_name="sflam", seed=seed,
        meta={"population": pop, **{key: (list(v) if isinstance(v, tuple) else v)
                                    for key, v in overrides.items()}},
    )
