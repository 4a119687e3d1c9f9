"""A second admission for the closed loop: drop devices until the rest fit the bandwidth at K_min.

The problem's own admission (``STEProblem``) excludes devices that cannot meet their limits even
alone, and raises :class:`~ste_opt.errors.InfeasibleError` when the admitted devices together
cannot fit K_min in the bandwidth budget. A training round must still go on: this module drops the
device that needs the most bandwidth at K_min (each using its whole window at the whole-window
power) and builds the problem again, until it builds. The per-device need is the problem's own
admission number (``STEProblem.w_need_min``), from :func:`ste_opt.model.allocation.admit` (the one
home of admission).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...errors import InfeasibleError
from ...model.allocation import admit

__all__ = ["bandwidth_need_at_kmin", "build_with_admission"]


def bandwidth_need_at_kmin(scenario) -> np.ndarray:
    """Least bandwidth (Hz) of each device to send K_min alone in its whole window, at the
    whole-window power; ``inf`` for a device that cannot (empty window or energy, rate limit too
    low)."""
    window = scenario.standing_time_s - scenario.compute_time_s
    need, _, _ = admit(scenario.payload_bits(scenario.k_min), window, scenario.p_max_w,
                       scenario.energy_max_j, scenario.gain, scenario.noise_psd_w_hz, np.inf)
    return np.asarray(need, dtype=float)


def build_with_admission(problem_factory: Callable, scenario):
    """``(problem, dropped)``: ``problem_factory(scenario)``, dropping devices while it raises
    :class:`InfeasibleError` (STE only; the device needing the most bandwidth at K_min goes
    first). ``dropped`` maps device ids to the reason."""
    dropped: dict[int, str] = {}
    cur = scenario
    while True:
        try:
            return problem_factory(cur), dropped
        except InfeasibleError as exc:
            if cur.n_devices <= 1 or getattr(cur, "kind", "ste") != "ste":
                raise
            need = bandwidth_need_at_kmin(cur)
            j = int(np.argmax(need))
            dev = int(cur.device_ids[j])
            dropped[dev] = (f"dropped so that the others fit the bandwidth budget at K_min "
                            f"(needs {need[j] / 1e6:.4g} MHz alone): {exc}")
            cur = cur.subset([i for i in range(cur.n_devices) if i != j])
