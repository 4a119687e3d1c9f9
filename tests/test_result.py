"""Solution: unit-carrying field names, the names of 0.1.0 as aliases, old files still load."""
from __future__ import annotations

import numpy as np
import pytest

from ste_opt import Solution


def test_legacy_names_are_aliases_and_keywords():
    s = Solution(status="feasible", objective=2.0, bandwidth=np.array([1e6, 2e6]), power=[0.1, 0.2],
                 bits=np.array([8, 8]), latency=[1.0, 2.0], uplink_time=[0.5, 1.0], energy=[0.3, 0.4])
    np.testing.assert_array_equal(s.bandwidth_hz, [1e6, 2e6])
    assert s.bandwidth is s.bandwidth_hz and s.power is s.power_w and s.bits is s.bit_width
    assert s.latency is s.latency_s and s.uplink_time is s.uplink_time_s and s.energy is s.energy_j
    s.power = np.array([0.05, 0.05])
    np.testing.assert_array_equal(s.power_w, [0.05, 0.05])
    with pytest.raises(TypeError):
        Solution(status="feasible", objective=1.0, power=[0.1], power_w=[0.1])
    with pytest.raises(TypeError):
        Solution(status="feasible", objective=1.0, bandwith=[0.1])


def test_files_use_new_keys_and_old_files_load():
    s = Solution(status="optimal", objective=3.0, tokens=np.array([64, 70]),
                 bandwidth_hz=np.array([1e6, 2e6]), power_w=np.array([0.1, 0.2]))
    d = s.to_dict()
    assert "bandwidth_hz" in d and "bandwidth" not in d
    old = {("bandwidth" if k == "bandwidth_hz" else "power" if k == "power_w" else k): v
           for k, v in d.items()}
    back = Solution.from_dict(old)
    np.testing.assert_array_equal(back.bandwidth_hz, [1e6, 2e6])
    np.testing.assert_array_equal(back.power_w, [0.1, 0.2])
    assert back.objective == 3.0 and back.status == "optimal"
