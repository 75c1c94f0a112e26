"""The test DUT variants for the Verilator tests and the benchmark (Verilog, build, simulator)."""

from __future__ import annotations

from memcpy_dut import MemcpyEngine

__all__ = ["MEM_BASE", "MEM_SIZE", "top_name", "design_verilog", "Design", "toolchain_problem"]

MEM_BASE = 0x1000_0000
MEM_SIZE = 1 << 20


def toolchain_problem() -> str | None:
    """Why Verilator models cannot be built here, or None."""
    from ilmpq.firmware.sim.verilator.build import _check_tools
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound
    try:
        _check_tools()
    except VerilatorNotFound as e:
        return str(e)
    return None


def top_name(*, data_width=64, faults=False) -> str:
    return f"memcpy_{'bad' if faults else 'good'}_{data_width}"


def design_verilog(*, data_width=64, faults=False) -> str:
    """Verilog of a :class:`MemcpyEngine` variant, top module :func:`top_name`."""
    from amaranth.back import verilog
    return verilog.convert(MemcpyEngine(data_width=data_width, faults=faults),
                           name=top_name(data_width=data_width, faults=faults))


class Design:
    """Verilog text, top name and build result of one DUT variant (built on construction)."""

    mem_base = MEM_BASE
    mem_size = MEM_SIZE

    def __init__(self, *, data_width: int, faults: bool = False):
        from ilmpq.firmware.sim.verilator.build import build_library
        self.top = top_name(data_width=data_width, faults=faults)
        self.verilog = design_verilog(data_width=data_width, faults=faults)
        self.data_width = data_width
        self.beat_bytes = data_width // 8
        self.build = build_library(self.verilog, self.top)

    def sim(self, **kw):
        """A fresh :class:`VerilatorSim` of this design (memory at MEM_BASE, MEM_SIZE bytes)."""
        from ilmpq.firmware.sim.verilator.sim import VerilatorSim
        kw.setdefault("mem_base", MEM_BASE)
        kw.setdefault("mem_size", MEM_SIZE)
        return VerilatorSim(self.verilog, self.top, **kw)
