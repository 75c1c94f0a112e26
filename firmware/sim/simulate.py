"""Run compiled models on the RTL: the Amaranth simulator or Verilator, behind the driver.

Both backends present the same transport to :class:`~ilmpq.firmware.driver.Driver`; the AXI
memory follows ``docs/memory_model.md`` (deterministic timing by default, so both simulators give
the same cycle counts), and register accesses go through the accelerator's AXI4-Lite port.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np

from ...hdl.axi import AXI4LiteSignature, AXI4Signature
from ...hdl.config import HWConfig
from ...hdl.regmap import CSR_ADDR_WIDTH
from ..compiler import Compiled
from ..driver import Driver, RunStats, run_sync
from .models.axi_checker import AXIChecker
from .models.axi_mem import DEFAULT_READ_LATENCY, AXIMemory, memory_ports
from .models.axil import axil_read, axil_write
from .models.axil_checker import AXILiteChecker

__all__ = ["SimResult", "AmaranthTransport", "VerilatorTransport", "simulate",
           "flat_bus", "axi_buses"]


@dataclass
class SimResult:
    """Outputs of one image: every stored tensor (natural layout) and the run's counters."""

    tensors: dict
    stats: RunStats


def flat_bus(dut, prefix: str, sig) -> types.SimpleNamespace:
    """View the flat ``<prefix>_<member>`` ports of a top level as an interface object."""
    return types.SimpleNamespace(**{name: getattr(dut, f"{prefix}_{name}")
                                    for name in sig.members})


def axi_buses(dut, cfg: HWConfig) -> list:
    """The accelerator's AXI4 manager ports (``m_axi``, ``m_axi1``, ...) as interface objects."""
    from ...hdl.top import axi_port_prefix
    sig = AXI4Signature(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                        id_width=cfg.axi_id_width)
    return [flat_bus(dut, axi_port_prefix(p), sig) for p in range(cfg.axi_ports)]


class AmaranthTransport:
    """Transport for the Amaranth simulator: used from inside a testbench (``ctx``)."""

    def __init__(self, ctx, dut, mem: AXIMemory, *, rng=None):
        self.ctx = ctx
        self.dut = dut
        self.mem = mem
        self.rng = rng
        self.bus = flat_bus(dut, "s_axil", AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH))
        self._cycles = 0

    async def read32(self, offset: int) -> int:
        data, resp = await axil_read(self.ctx, self.bus, offset, rng=self.rng)
        if resp != 0:
            raise RuntimeError(f"CSR read at {offset:#x} answered {resp}")
        return data

    async def write32(self, offset: int, value: int):
        resp = await axil_write(self.ctx, self.bus, offset, value, rng=self.rng)
        if resp != 0:
            raise RuntimeError(f"CSR write at {offset:#x} answered {resp}")

    async def mem_write(self, addr: int, data: bytes):
        self.mem.write(addr, data)

    async def mem_read(self, addr: int, n: int) -> bytes:
        return self.mem.read(addr, n)

    async def wait_irq(self, timeout_cycles: int) -> bool:
        for _ in range(timeout_cycles):
            if self.ctx.get(self.dut.irq):
                return True
            await self.ctx.tick()
        return bool(self.ctx.get(self.dut.irq))

    async def cycles(self) -> int:
        return self.mem.cycle


class VerilatorTransport:
    """Transport over :class:`ilmpq.firmware.sim.verilator.sim.VerilatorSim`."""

    def __init__(self, vsim):
        self.vsim = vsim

    async def read32(self, offset: int) -> int:
        return self.vsim.csr_read(offset)

    async def write32(self, offset: int, value: int):
        self.vsim.csr_write(offset, value)

    async def mem_write(self, addr: int, data: bytes):
        self.vsim.mem_write(addr, data)

    async def mem_read(self, addr: int, n: int) -> bytes:
        return self.vsim.mem_read(addr, n)

    async def wait_irq(self, timeout_cycles: int) -> bool:
        self.vsim.run(timeout_cycles, until_irq=True)
        return bool(self.vsim.irq)

    async def cycles(self) -> int:
        return self.vsim.cycle


#: Cycles between two ``cycle_progress`` calls of the Amaranth simulation.
_PROGRESS_CYCLES = 2048
_CLOCK_PERIOD = 1e-8


def simulate(compiled: Compiled, images, *, sim: str = "amaranth", mem_mode: str = "deterministic",
             seed: int = 0, csr_rng: bool = False, vcd: str | None = None,
             timeout_cycles: int = 20_000_000, progress=None, check_protocol: bool = True,
             cycle_progress=None, read_latency: int = DEFAULT_READ_LATENCY,
             mac_key: bytes | None = None) -> list[SimResult]:
    """Run ``compiled`` on every image through the RTL; return one :class:`SimResult` each.

    ``sim``: ``"amaranth"`` (the Python simulator; small configurations) or ``"verilator"``.
    ``mem_mode``: ``"deterministic"`` or ``"random"`` (seeded stalls and latencies, Amaranth
    only). ``read_latency``: the deterministic memory's RL (``docs/memory_model.md``; every
    port). ``progress(i, n)`` is called after each image. ``check_protocol`` (Amaranth): watch
    every AXI manager port (``m_axi``, ``m_axi1``, ... one memory behind all of them) with
    :class:`~.models.axi_checker.AXIChecker` (bursts inside the compiled window) and the
    ``s_axil`` port with :class:`~.models.axil_checker.AXILiteChecker`; a violation fails the
    run with :class:`~.models.axi_mem.AXIProtocolError`. Verilator's harness always checks both.
    ``cycle_progress(cycles)`` (Amaranth): called every few thousand simulated cycles with the
    cycles since the start, for progress inside an image. ``mac_key``: the 16-byte key the
    driver programs before the first image (for a model compiled with authenticated packages).
    """
    images = [np.asarray(im) for im in images]
    if sim == "amaranth":
        return _simulate_amaranth(compiled, images, mem_mode=mem_mode, seed=seed,
                                  csr_rng=csr_rng, vcd=vcd, timeout_cycles=timeout_cycles,
                                  progress=progress, check_protocol=check_protocol,
                                  cycle_progress=cycle_progress, read_latency=read_latency,
                                  mac_key=mac_key)
    if sim == "verilator":
        return _simulate_verilator(compiled, images, timeout_cycles=timeout_cycles,
                                   progress=progress, read_latency=read_latency,
                                   mac_key=mac_key)
    raise ValueError(f"unknown simulator {sim!r}; use 'amaranth' or 'verilator'")


async def _infer_group(drv, compiled, group: list, load: bool) -> list:
    """One run of ``compiled`` on ``group`` (one image, or up to ``B`` of a batched program):
    a ``SimResult`` per image of the group. A batched program's last group of fewer than ``B``
    images is filled up with copies of its last image, whose results are dropped, as
    ``Driver.infer_stream`` does."""
    if compiled.batch == 1:
        (img,) = group
        tensors, stats = await drv.infer(compiled, img, load=load, check=True)
        return [SimResult(tensors, stats)]
    full = list(group) + [group[-1]] * (compiled.batch - len(group))
    outs, stats = await drv.infer_batch(compiled, full, load=load, check=True)
    return [SimResult(t, stats) for t in outs[:len(group)]]


def _simulate_amaranth(compiled, images, *, mem_mode, seed, csr_rng, vcd, timeout_cycles,
                       progress, check_protocol, read_latency, cycle_progress=None,
                       mac_key=None):
    from ...hdl.top import Accelerator
    from . import simcache
    cfg = compiled.config
    # one elaborated simulation per configuration (per process), fresh for every call; a
    # waveform gets its own (simcache.acquire)
    dut, sim = simcache.acquire((Accelerator, cfg), lambda: Accelerator(cfg),
                                period=_CLOCK_PERIOD, reuse=not vcd)
    buses = axi_buses(dut, cfg)
    mems = memory_ports(buses, base=compiled.base, size=compiled.size, mode=mem_mode,
                        seed=seed, read_latency=read_latency)
    mem = mems[0]
    results: list[SimResult] = []
    rng = np.random.default_rng(seed) if csr_rng else None

    async def testbench(ctx):
        transport = AmaranthTransport(ctx, dut, mem, rng=rng)
        drv = Driver(transport, cfg, timeout_cycles=timeout_cycles)
        if mac_key is not None:
            await drv.set_mac_key(mac_key)
        for i in range(0, len(images), compiled.batch):     # B images a run
            results.extend(await _infer_group(drv, compiled, images[i:i + compiled.batch],
                                              i == 0))
            if progress is not None:
                progress(len(results), len(images))

    for p, (bus, port_mem) in enumerate(zip(buses, mems)):
        port_mem.add_to(sim)
        if check_protocol:
            AXIChecker(bus, max_burst=cfg.max_burst,
                       max_reads_outstanding=cfg.max_reads_outstanding,
                       window=compiled.window, name=port_mem.name).add_to(sim)
    if check_protocol:
        AXILiteChecker(flat_bus(dut, "s_axil", AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
                       name="s_axil").add_to(sim)
    sim.add_testbench(testbench)
    if cycle_progress is not None:
        async def report_cycles(ctx):  # a background process: never keeps the run going
            n = 0
            while True:  # a plain delay: cheaper than a tick trigger, nothing left open
                await ctx.delay(_PROGRESS_CYCLES * _CLOCK_PERIOD)
                n += _PROGRESS_CYCLES
                cycle_progress(n)
        sim.add_process(report_cycles)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results


def _simulate_verilator(compiled, images, *, timeout_cycles, progress, read_latency,
                        mac_key=None):
    from .verilator.sim import VerilatorSim
    from ..board.verilog import accelerator_verilog
    cfg = compiled.config
    text, top = accelerator_verilog(cfg)
    vsim = VerilatorSim(text, top, mem_base=compiled.base, mem_size=compiled.size,
                        read_latency=read_latency)
    vsim.reset()
    drv = Driver(VerilatorTransport(vsim), cfg, timeout_cycles=timeout_cycles)
    if mac_key is not None:
        run_sync(drv.set_mac_key(mac_key))
    results = []
    for i in range(0, len(images), compiled.batch):         # B images a run
        results.extend(run_sync(_infer_group(drv, compiled, images[i:i + compiled.batch],
                                             i == 0)))
        if progress is not None:
            progress(len(results), len(images))
    return results
