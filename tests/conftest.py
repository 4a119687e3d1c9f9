"""Test-suite settings.

Hypothesis explores new random examples on every local run; under CI (``CI`` set, as `.ci/run` is
invoked) the examples are derandomized so that a CI result is reproducible. A failure prints the
example and the seed to replay it either way.
"""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
