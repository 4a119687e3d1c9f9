"""Optional experiment tracking: TensorBoard scalars next to the CSV (``output.tensorboard: true``).

Every numeric column of a round's history row becomes a scalar ``round/<column>`` at step
``round``, written to ``<run_dir>/tensorboard/``. Needs the ``tensorboard`` package
(``pip install 'ste-opt[tensorboard]'``); without it the trainer refuses the option with one line.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from ..errors import InvalidScenarioError

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """Writes a history row's numeric values as scalars (``log_row``); ``close`` flushes."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InvalidScenarioError("output.tensorboard needs the tensorboard package: pip "
                                       "install 'ste-opt[tensorboard]'", field="output.tensorboard") from exc
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_row(self, row: Mapping, step: int) -> int:
        """Add every finite int/float (not bool) of ``row``; returns how many were written."""
        n = 0
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or k == "round":
                continue
            if math.isfinite(float(v)):
                self._writer.add_scalar(f"round/{k}", float(v), int(step))
                n += 1
        self._writer.flush()
        return n

    def close(self) -> None:
        self._writer.close()
