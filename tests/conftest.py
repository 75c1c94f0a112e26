"""Shared pytest configuration.

Test vectors come from seeded RNGs (``rng`` fixture, seed from the test's node id), so every run
draws the same vectors and a failure reproduces.
"""

import os
import zlib

# one BLAS thread per pytest worker: with -n 2 on 2 cores, more threads only compete
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's node id (stable across runs and machines)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
