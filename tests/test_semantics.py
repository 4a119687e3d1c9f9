"""Retention profiles f_m(K) and the STE metric."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ste_opt import InvalidScenarioError, semantics


def test_profile_from_attention_hand_example():
    # two samples, three patches: sort each row descending, then add rank by rank
    att = np.array([[0.1, 0.5, 0.2],
                    [0.3, 0.0, 0.4]])
    np.testing.assert_allclose(semantics.profile_from_attention(att), [0.9, 0.5, 0.1])


def test_profile_from_attention_refuses_bad_input():
    with pytest.raises(InvalidScenarioError):
        semantics.profile_from_attention(np.ones(3))
    with pytest.raises(InvalidScenarioError):
        semantics.profile_from_attention(np.array([[0.1, -0.2]]))
    with pytest.raises(InvalidScenarioError):
        semantics.profile_from_attention(np.array([[0.1, np.nan]]))


def test_retention_table_hand_example():
    F = semantics.retention_table([[0.4, 0.3, 0.2, 0.1], [0.5, 0.25, 0.15, 0.1]])
    np.testing.assert_allclose(F, [[0, 0.4, 0.7, 0.9, 1.0], [0, 0.5, 0.75, 0.9, 1.0]])


def test_ste_metric_hand_example():
    assert semantics.ste([0.7, 0.9], [1.128, 0.6]) == pytest.approx(1.6 / 1.128)
    assert semantics.ste([1.0], [0.0]) == 0.0
    assert semantics.ste([], []) == 0.0


@pytest.mark.parametrize("family", semantics.FAMILIES)
def test_parametric_profiles_shape_mass_monotone_seeded(family):
    scale = 1.2 if family == "zipf" else 130.0
    a = semantics.parametric_profiles(5, 196, np.random.default_rng(0), family=family, scale=scale,
                                      spread=0.25, mass=0.9, batch=64)
    b = semantics.parametric_profiles(5, 196, np.random.default_rng(0), family=family, scale=scale,
                                      spread=0.25, mass=0.9, batch=64)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 196)
    np.testing.assert_allclose(a.sum(axis=1), 64 * 0.9)
    assert np.all(np.diff(a, axis=1) <= 1e-15)
    semantics.validate_profiles(a, 5, 196)
    F = semantics.retention_table(a)
    inc = np.diff(F, axis=1)
    assert np.all(inc >= 0)                              # non-decreasing
    assert np.all(np.diff(inc, axis=1) <= 1e-12)         # concave


def test_exponential_profile_formula():
    # spread 0: alpha_n = exp(-n/L) normalized to batch * mass
    a = semantics.parametric_profiles(1, 4, np.random.default_rng(0), scale=2.0, spread=0.0,
                                      mass=1.0, batch=1)
    raw = np.exp(-np.arange(1, 5) / 2.0)
    np.testing.assert_allclose(a[0], raw / raw.sum())


def test_unknown_family():
    with pytest.raises(InvalidScenarioError) as ei:
        semantics.parametric_profiles(2, 5, np.random.default_rng(0), family="gauss")
    assert ei.value.field == "profile_family"


def test_validate_profiles_names_device():
    p = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    with pytest.raises(InvalidScenarioError) as ei:
        semantics.validate_profiles(p)
    assert ei.value.device == 1
    with pytest.raises(InvalidScenarioError):
        semantics.validate_profiles(p[0])
    with pytest.raises(InvalidScenarioError):
        semantics.validate_profiles(p[:1], n_devices=2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(0, 10, allow_nan=False), min_size=4, max_size=4), min_size=1,
                max_size=6))
def test_profile_from_attention_properties(rows):
    att = np.array(rows)
    prof = semantics.profile_from_attention(att)
    assert np.all(np.diff(prof) <= 1e-12)
    assert prof.sum() == pytest.approx(att.sum(), rel=1e-12, abs=1e-12)
    F = semantics.retention_table(prof[None, :])
    assert np.all(np.diff(F[0], n=2) <= 1e-9)
