"""Test-suite settings.

Hypothesis explores new random examples on every local run; under CI (``CI`` set, as `.ci/run` is
invoked) the examples are derandomized so that a CI result is reproducible. A failure prints the
example and the seed to replay it either way.
"""
import atexit
import os
import shutil
import tempfile

from hypothesis import settings

# model/generator caches of the tests go to a private folder, not the user's cache
if not os.environ.get("STE_OPT_CACHE_DIR"):
    _cache = tempfile.mkdtemp(prefix="ste-opt-test-cache-")
    os.environ["STE_OPT_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, True)

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
