"""Fuzz suite: case counts of :mod:`._kit` are written after every test (so a run stopped by its
time bound still reports what it did) and at the end of the session."""
from __future__ import annotations

import pytest

from ._kit import write_stats


@pytest.fixture(autouse=True)
def _flush_stats():
    yield
    write_stats()


def pytest_sessionfinish(session, exitstatus):
    write_stats()
