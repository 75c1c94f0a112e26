"""The same programs on the Amaranth simulator (the Python AXI memory model and AXI4-Lite
manager of ``ilmpq.firmware.sim.models``) and on Verilator (the C++ harness): identical cycle
counts, counters, register values and memory contents.

This pins the two implementations of ``docs/memory_model.md`` and of the AXI4-Lite access
sequence to each other, so the accelerator's cross-simulator test can compare cycle counts.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from memcpy_dut import (CTRL_CLEAR, CTRL_START, MODE_CHECKSUM, MODE_COPY, MODE_FILL,
                        REG_BEATS, REG_CHECKSUM, REG_CTRL, REG_CYCLES, REG_DST, REG_MAXBURST,
                        REG_MODE, REG_PATTERN, REG_SRC, REG_STATUS, REG_WSTRB, MemcpyEngine)

try:  # the models ship in the package (``ilmpq simulate``); tests/models re-exports them
    from ilmpq.firmware.sim.models import axi_mem, axil
except ImportError:
    axi_mem = pytest.importorskip("models.axi_mem")
    axil = pytest.importorskip("models.axil")

pytestmark = pytest.mark.verilator

MEM_SIZE = 1 << 16

# name, RL, WL, Q, errors, [(mode, beats, src offset, dst offset, maxburst)]
CASES = [
    ("defaults", 8, 4, 8, {}, [(MODE_CHECKSUM, 40, 0x0, 0, 16), (MODE_FILL, 21, 0, 0x2000, 4),
                               (MODE_COPY, 70, 0xF28, 0x4F48, 16)]),
    ("queue1", 5, 3, 1, {}, [(MODE_CHECKSUM, 9, 0x100, 0, 2), (MODE_FILL, 7, 0, 0x800, 3),
                             (MODE_COPY, 33, 0x0, 0x3000, 8)]),
    ("queue2_fast", 1, 1, 2, {}, [(MODE_COPY, 50, 0x1F80, 0x5000, 16),
                                  (MODE_CHECKSUM, 17, 0x40, 0, 5)]),
    ("errors", 8, 4, 4, {("r", 1): "SLVERR", ("w", 0): "DECERR", ("r", 4): "DECERR"},
     [(MODE_COPY, 64, 0x200, 0x6000, 16), (MODE_CHECKSUM, 16, 0x0, 0, 16)]),
]


def _program_regs(mode, beats, src, dst, maxburst, base):
    return [(REG_SRC, base + src), (REG_DST, base + dst), (REG_BEATS, beats), (REG_MODE, mode),
            (REG_MAXBURST, maxburst), (REG_PATTERN, 0x5A5A0000 | beats), (REG_WSTRB, 0x7E)]


def _run_amaranth(base, init, rl, wl, q, errors, runs):
    dut = MemcpyEngine(data_width=64)
    bus = SimpleNamespace(**{name[len("m_axi_"):]: getattr(dut, name)
                             for name in dut.signature.members if name.startswith("m_axi_")})
    lite = SimpleNamespace(**{name[len("s_axil_"):]: getattr(dut, name)
                              for name in dut.signature.members if name.startswith("s_axil_")})
    mem = axi_mem.AXIMemory(bus, base=base, data=init, read_latency=rl, write_latency=wl,
                            queue=q, errors=errors)
    results = []

    async def tb(ctx):
        for mode, beats, src, dst, maxburst in runs:
            for reg, value in _program_regs(mode, beats, src, dst, maxburst, base):
                assert await axil.axil_write(ctx, lite, reg, value) == 0
            assert await axil.axil_write(ctx, lite, REG_CTRL, CTRL_CLEAR | CTRL_START) == 0
            waited = 0
            while not ctx.get(dut.irq):
                await ctx.tick()
                waited += 1
            regs = []
            for reg in (REG_CYCLES, REG_STATUS, REG_CHECKSUM):
                value, resp = await axil.axil_read(ctx, lite, reg)
                assert resp == 0
                regs.append(value)
            results.append((waited, *regs))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    mem.add_to(sim)
    sim.add_testbench(tb)
    sim.run()
    counts = {"r_beats": mem.read_beats, "w_beats": mem.write_beats,
              "ar_bursts": len(mem.transactions("r")), "aw_bursts": len(mem.transactions("w"))}
    return results, mem.read(base, MEM_SIZE), counts


def _run_verilator(good, base, init, rl, wl, q, errors, runs):
    sim = good.sim(mem_base=base, mem_size=MEM_SIZE, read_latency=rl, write_latency=wl,
                   queue=q)
    sim.mem_write(base, init)
    for (channel, index), resp in errors.items():
        sim.inject_error(channel, index, resp)
    results = []
    for mode, beats, src, dst, maxburst in runs:
        for reg, value in _program_regs(mode, beats, src, dst, maxburst, base):
            sim.csr_write(reg, value)
        sim.csr_write(REG_CTRL, CTRL_CLEAR | CTRL_START)
        waited = sim.wait_irq(100_000)
        results.append((waited, *(sim.csr_read(r) for r in (REG_CYCLES, REG_STATUS,
                                                            REG_CHECKSUM))))
    c = sim.counters
    counts = {k: c[k] for k in ("r_beats", "w_beats", "ar_bursts", "aw_bursts")}
    return results, sim.mem_read(base, MEM_SIZE), counts


@pytest.mark.parametrize("name, rl, wl, q, errors, runs", CASES, ids=[c[0] for c in CASES])
def test_same_cycles_and_data_on_both_simulators(good, rng, name, rl, wl, q, errors, runs):
    base = 0x4000_0000
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    a_res, a_mem, a_counts = _run_amaranth(base, init, rl, wl, q, errors, runs)
    v_res, v_mem, v_counts = _run_verilator(good, base, init, rl, wl, q, errors, runs)
    assert v_res == a_res
    assert v_counts == a_counts
    np.testing.assert_array_equal(np.frombuffer(v_mem, np.uint8), np.frombuffer(a_mem, np.uint8))
    assert a_mem != init.tobytes()  # the programs did write
