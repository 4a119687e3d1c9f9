"""Scenario: validation (errors name the field and device), the st-sflora preset's defaults,
fading redraws, and lossless YAML / JSON round trips."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ste_opt import InvalidScenarioError, Scenario, make_scenario
from ste_opt.io import load_scenario, save_scenario
from ste_opt.scenarios.ste import STSFLORA_DEFAULTS


@pytest.fixture(scope="module")
def base():
    return make_scenario("st-sflora", n_devices=6, seed=1)


def _with(base, **changes):
    d = base.to_dict()
    d.update(changes)
    return Scenario.from_dict(d)


def _assert_same(a: Scenario, b: Scenario):
    for f in dataclasses.fields(Scenario):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert va.dtype.kind == vb.dtype.kind, f.name
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
        else:
            assert va == vb, f.name


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("field,value", [
    ("path_gain", np.nan), ("path_gain", -1e-9), ("fading", -0.5), ("fading", np.inf),
    ("p_max_w", 0.0), ("p_max_w", -0.2), ("energy_max_j", 0.0), ("distance_m", np.nan),
    ("cpu_freq_hz", -1.0), ("cores", 0.0), ("velocity_mps", -1.0),
])
def test_bad_device_value_names_field_and_device(base, field, value):
    arr = getattr(base, field).copy()
    arr[3] = value
    with pytest.raises(InvalidScenarioError) as ei:
        _with(base, **{field: arr.tolist()})
    assert ei.value.field == field
    assert ei.value.device == 3
    assert field in str(ei.value) and "device 3" in str(ei.value)


def test_velocity_zero_is_allowed_and_means_no_mobility_limit(base):
    v = base.velocity_mps.copy()
    v[0] = 0.0
    s = _with(base, velocity_mps=v.tolist())
    assert s.standing_time_s[0] == s.t_max_s


def test_kmin_above_n_refused(base):
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(k_min=197)
    assert ei.value.field == "k_min"
    assert "197" in str(ei.value) and "196" in str(ei.value)
    base.replace(k_min=196)   # the boundary is allowed


@pytest.mark.parametrize("field", ["path_gain", "fading", "p_max_w", "energy_max_j", "velocity_mps"])
def test_arrays_of_different_lengths_refused(base, field):
    arr = getattr(base, field)[:-1]
    with pytest.raises(InvalidScenarioError) as ei:
        _with(base, **{field: arr.tolist()})
    assert ei.value.field == field
    assert "same length" in str(ei.value)


def test_retention_shape_and_monotonicity(base):
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(retention=base.retention[:-1])
    assert ei.value.field == "retention"
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(retention=base.retention[:, :-1])
    assert ei.value.field == "retention"
    bad = base.retention.copy()
    bad[2] = bad[2][::-1]                                   # increasing row
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(retention=bad)
    assert (ei.value.field, ei.value.device) == ("retention", 2)
    bad = base.retention.copy()
    bad[4, 7] = np.nan
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(retention=bad)
    assert (ei.value.field, ei.value.device) == ("retention", 4)


@pytest.mark.parametrize("field,value", [
    ("bandwidth_hz", 0.0), ("bandwidth_hz", -1.0), ("bandwidth_hz", np.nan), ("t_max_s", 0.0),
    ("batch", 0), ("n_patches", 2.5), ("bits", 17), ("kappa", -1.0), ("extra_tokens", -1),
    ("noise_psd_dbm_hz", np.inf),
])
def test_bad_scalar_fields(base, field, value):
    with pytest.raises(InvalidScenarioError) as ei:
        base.replace(**{field: value})
    assert ei.value.field == field


def test_unknown_and_missing_fields(base):
    d = base.to_dict()
    d["bogus"] = 1
    with pytest.raises(InvalidScenarioError) as ei:
        Scenario.from_dict(d)
    assert ei.value.field == "bogus"
    d = base.to_dict()
    del d["fading"]
    with pytest.raises(InvalidScenarioError) as ei:
        Scenario.from_dict(d)
    assert ei.value.field == "fading"
    with pytest.raises(InvalidScenarioError) as ei:
        make_scenario("no-such-preset")
    assert ei.value.field == "preset"
    with pytest.raises(InvalidScenarioError) as ei:
        make_scenario("st-sflora", n_devices=3, p_max=1.0)
    assert ei.value.field == "p_max"


# ---------------------------------------------------------------------------- preset defaults
def test_preset_defaults_match_the_issue():
    s = make_scenario("st-sflora", n_devices=10, seed=0)
    assert s.n_devices == 10
    assert s.meta["population"] == 100
    assert s.bandwidth_hz == 50e6                       # 5 MHz per active device
    np.testing.assert_array_equal(s.p_max_w, 0.2)
    assert s.noise_psd_dbm_hz == -174.0
    assert s.path_loss_exponent == 2.5
    np.testing.assert_array_equal(s.energy_max_j, 0.8)
    assert (s.batch, s.n_patches, s.dim, s.k_min, s.t_max_s) == (64, 196, 768, 64, 10.0)
    assert (s.bits, s.extra_tokens) == (32, 2)
    assert s.ref_loss_db == 32.0 and s.flops_per_cycle == 64.0
    assert s.preset_name == "st-sflora" and s.seed == 0
    # large-scale gain follows the distance with PL0 = 32 dB at 1 m and exponent 2.5
    np.testing.assert_allclose(s.path_gain, 10 ** -3.2 * s.distance_m ** -2.5, rtol=1e-12)
    assert np.all((s.distance_m >= 5.0) & (s.distance_m <= 500.0))
    assert np.all((s.velocity_mps >= 1.0) & (s.velocity_mps <= 5.0))
    assert np.all((s.cpu_freq_hz >= 1e9) & (s.cpu_freq_hz <= 1.5e9))
    assert set(np.unique(s.cores)) <= {4.0, 5.0, 6.0}
    # client forward time B * Phi / (f * cores * nu) = 17.6e9 / (f * cores): 1.96 .. 4.4 s
    t0 = s.compute_time_s
    np.testing.assert_allclose(t0, 64 * 17.6e9 / (s.cpu_freq_hz * s.cores * 64.0), rtol=1e-12)
    assert np.all((t0 >= 17.6e9 / 9e9 - 1e-9) & (t0 <= 4.4 + 1e-9))
    np.testing.assert_allclose(s.standing_time_s,
                               np.minimum((500.0 - s.distance_m) / s.velocity_mps, 10.0), rtol=1e-12)
    # profiles: each row sums to batch * mass, non-increasing
    np.testing.assert_allclose(s.retention.sum(axis=1), 64 * 0.9, rtol=1e-12)
    assert np.all(np.diff(s.retention, axis=1) <= 0)
    # beta = B D q = 64 * 768 * 32 bits per token; payload S(K) = beta (K + 2)
    assert s.bits_per_token == 1_572_864
    assert s.payload_bits(np.array([64]))[0] == 1_572_864 * 66
    assert STSFLORA_DEFAULTS["population"] == 100


def test_preset_bandwidth_rule_and_override():
    assert make_scenario("st-sflora", n_devices=20, seed=0).bandwidth_hz == 100e6
    assert make_scenario("st-sflora", n_devices=20, seed=0, bandwidth_hz=30e6).bandwidth_hz == 30e6
    big = make_scenario("st-sflora", n_devices=150, seed=0)
    assert big.meta["population"] == 150 and big.n_devices == 150
    assert len(set(big.device_ids.tolist())) == 150


def test_preset_seeded():
    a = make_scenario("st-sflora", n_devices=8, seed=5)
    b = make_scenario("st-sflora", n_devices=8, seed=5)
    c = make_scenario("st-sflora", n_devices=8, seed=6)
    _assert_same(a, b)
    assert not np.array_equal(a.distance_m, c.distance_m)


def test_redraw_fading_changes_only_fading_and_is_seeded(base):
    r1 = base.redraw_fading(11)
    r2 = base.redraw_fading(np.random.default_rng(11))
    r3 = base.redraw_fading(12)
    np.testing.assert_array_equal(r1.fading, r2.fading)
    assert not np.array_equal(r1.fading, base.fading)
    assert not np.array_equal(r1.fading, r3.fading)
    for f in dataclasses.fields(Scenario):
        if f.name == "fading":
            continue
        va, vb = getattr(base, f.name), getattr(r1, f.name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
        else:
            assert va == vb, f.name
    np.testing.assert_allclose(r1.gain, base.path_gain * r1.fading)


def test_subset_keeps_ids(base):
    sub = base.subset([4, 1])
    np.testing.assert_array_equal(sub.device_ids, base.device_ids[[4, 1]])
    np.testing.assert_array_equal(sub.retention, base.retention[[4, 1]])
    assert sub.n_devices == 2


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip_is_lossless(tmp_path, suffix):
    s = make_scenario("st-sflora", n_devices=7, seed=3, energy_max_j=0.55)
    path = save_scenario(s, tmp_path / f"scen{suffix}")
    back = load_scenario(path)
    _assert_same(s, back)
    # and a second trip writes byte-identical text
    path2 = save_scenario(back, tmp_path / f"again{suffix}")
    assert path.read_text() == path2.read_text()


def test_dict_round_trip_custom_scenario(base):
    s = base.replace(bits=8, k_min=10, kappa=0.0, meta={"note": "x"})
    _assert_same(s, Scenario.from_dict(s.to_dict()))


def test_bad_files(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("{}")
    with pytest.raises(InvalidScenarioError):
        load_scenario(bad)
    notmap = tmp_path / "x.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidScenarioError):
        load_scenario(notmap)
    with pytest.raises(FileNotFoundError):
        load_scenario(tmp_path / "missing.yaml")
