"""Shared pytest configuration.

Test vectors come from seeded RNGs (``rng`` fixture, seed from the test's node id), so every run
draws the same vectors and a failure reproduces.
"""

import os
import zlib

import numpy as np
import pytest

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's node id (stable across runs and machines)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
