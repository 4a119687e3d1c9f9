"""Fuzz-suite settings: a short profile in `make test`, a long one with ``STE_OPT_FUZZ=long``.

Every fuzz test records its cases with :func:`record` (category, outcome); with
``STE_OPT_FUZZ_STATS=<path>`` the counts are written there as JSON at the end of the session
(``benchmarks/fuzz.py`` reads them for RESULTS.md).
"""
from __future__ import annotations

import json
import os
from collections import Counter

from hypothesis import HealthCheck, settings

LONG = os.environ.get("STE_OPT_FUZZ", "").lower() == "long"
STATS: Counter = Counter()


def examples(short: int, long: int) -> int:
    return long if LONG else short


def fuzz_settings(short: int, long: int):
    return settings(max_examples=examples(short, long), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


def record(category: str, outcome: str) -> None:
    STATS[f"{category}|{outcome}"] += 1


def write_stats() -> None:
    path = os.environ.get("STE_OPT_FUZZ_STATS")
    if path and STATS:
        with open(path, "w") as fh:
            json.dump(dict(STATS), fh, indent=1, sort_keys=True)
