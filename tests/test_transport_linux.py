"""The Linux board transport (firmware/board/linux.py) and ``ilmpq board``, without a board.

* Device files are stand-ins: a sparse file for ``/dev/mem`` (the register window lands at its
  physical offset), a file plus a sysfs directory for a u-dma-buf device, a socket pair for a UIO
  device, a fake ``pynq`` module.
* The register window is backed by the **real RTL** (the tiny accelerator under Verilator), and
  the u-dma-buf by a *kernel emulation* that makes the mapping a non-coherent cache of the
  simulated DRAM: a sysfs ``sync_for_device`` copies the range it was told (``sync_offset``,
  ``sync_size``, as written by the transport) to DRAM, ``sync_for_cpu`` copies DRAM back. The
  driver's whole inference runs through it bit-exact, with the Verilator transport's counters.
* Time is the simulation's: the transport's ``sleep`` advances the RTL clock, ``monotonic`` reads
  it, so timeouts are exact and deterministic.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import sys
import threading
import types

import numpy as np
import pytest

from e2e_util import assert_layers_equal
from ilmpq.firmware.cli import main as cli_main
from ilmpq.firmware.compiler import AccelStep, compile_model
from ilmpq.firmware.driver import (
    DMAError, Driver, DriverTimeout, WeightPackageRejected, run_sync,
)
from ilmpq.firmware.board.linux import (
    CSR_SIZE, DMA_FROM_DEVICE, DMA_TO_DEVICE, BoardError, LinuxTransport, MmapRegisters,
    PhysBuffer, PynqBuffer, UdmabufBuffer, UioInterrupt, check_fpga_programmed,
)
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import get_config
from ilmpq.hdl.regmap import accelerator_regmap
from ilmpq.hdl.soc import GP0_BASE
from ilmpq.hdl.weight_buffer import header_beats
from ilmpq.hdl import isa

TINY = get_config("tiny")
RM = accelerator_regmap(TINY)
PHYS = 0x1E90_0000            # where u-dma-buf put the buffer (its README's example)
DMA_SIZE = 1 << 20
HZ = 100e6

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux device files and mmap")


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


def file_word(path, addr) -> int:
    with open(path, "rb") as f:
        f.seek(addr)
        return int.from_bytes(f.read(4), "little")


# -- the register window -------------------------------------------------------------------------

def test_registers_map_dev_mem_at_the_physical_base(tmp_path):
    mem = sparse(tmp_path / "mem", GP0_BASE + 2 * CSR_SIZE)
    regs = MmapRegisters(mem, GP0_BASE, CSR_SIZE)
    regs.write32(0x20, 0x1234_5678)
    regs.write32(CSR_SIZE - 4, 0xFFFF_FFFF)
    assert regs.read32(0x20) == 0x1234_5678
    regs.close()
    regs.close()   # idempotent
    assert file_word(mem, GP0_BASE + 0x20) == 0x1234_5678
    assert file_word(mem, GP0_BASE + CSR_SIZE - 4) == 0xFFFF_FFFF
    assert file_word(mem, GP0_BASE + CSR_SIZE) == 0           # nothing outside the window
    with open(mem, "r+b") as f:
        f.seek(GP0_BASE + 0x100)
        f.write((0xCAFE_F00D).to_bytes(4, "little"))
    regs = MmapRegisters(mem, GP0_BASE)
    assert regs.read32(0x100) == 0xCAFE_F00D
    for bad in (2, CSR_SIZE, -4):
        with pytest.raises(IlmpqValueError, match="register offset"):
            regs.read32(bad)
    with pytest.raises(IlmpqValueError, match="register value"):
        regs.write32(0, 1 << 32)
    with pytest.raises(IlmpqTypeError):
        regs.write32(0, True)
    regs.close()


def test_a_window_off_a_page_boundary(tmp_path):
    mem = sparse(tmp_path / "mem", 1 << 20)
    regs = MmapRegisters(mem, 0x1_2340, 0x100)
    regs.write32(0xFC, 7)
    regs.close()
    assert file_word(mem, 0x1_2340 + 0xFC) == 7


def test_opening_a_missing_device_names_it(tmp_path):
    with pytest.raises(BoardError, match=r"cannot open the register window .*nope"):
        MmapRegisters(str(tmp_path / "nope"), GP0_BASE)
    with pytest.raises(IlmpqValueError, match="4-byte aligned"):
        MmapRegisters(str(tmp_path / "nope"), GP0_BASE + 2)


# -- DMA buffers -----------------------------------------------------------------------------------

def fake_udmabuf(root, *, name="udmabuf0", phys=PHYS, size=DMA_SIZE, cls="u-dma-buf",
                 phys_text=None, coherent=None):
    """``/dev/<name>`` (a file) and ``/sys/class/<cls>/<name>/`` as u-dma-buf creates them."""
    dev, attrs = root / "dev", root / "sys" / "class" / cls / name
    dev.mkdir(parents=True, exist_ok=True)
    attrs.mkdir(parents=True, exist_ok=True)
    sparse(dev / name, size)
    (attrs / "phys_addr").write_text(phys_text or f"0x{phys:016x}\n")
    (attrs / "size").write_text(f"{size}\n")
    for a in ("sync_offset", "sync_size", "sync_direction", "sync_for_cpu", "sync_for_device"):
        (attrs / a).write_text("0\n")
    if coherent is not None:
        (attrs / "dma_coherent").write_text(f"{coherent}\n")
    return {"dev_dir": str(dev), "sysfs_root": str(root / "sys" / "class")}


class EmulatedUdmabuf(UdmabufBuffer):
    """A u-dma-buf whose sysfs writes have the kernel's effect on a separate ``dram`` array: the
    mapping is a non-coherent cache of it. Records every sysfs write in ``trace``."""

    def __init__(self, *args, dram=None, lock=None, **kw):
        super().__init__(*args, **kw)
        self.dram = np.zeros(self.size, np.uint8) if dram is None else dram
        self.lock = lock or threading.Lock()
        self.trace = []

    def _attr(self, name) -> int:
        with open(os.path.join(self.attrs, name)) as f:
            return int(f.read(), 0)

    def _attr_write(self, attr, value):
        super()._attr_write(attr, value)
        self.trace.append((attr, value))
        if attr in ("sync_for_device", "sync_for_cpu"):
            off, n, direction = (self._attr(a) for a in
                                 ("sync_offset", "sync_size", "sync_direction"))
            assert off + n <= self.size
            with self.lock:
                if attr == "sync_for_device":      # clean: cache -> memory
                    assert direction == DMA_TO_DEVICE
                    self.dram[off:off + n] = self._arr[off:off + n]
                else:                              # invalidate: memory -> cache
                    assert direction == DMA_FROM_DEVICE
                    self._arr[off:off + n] = self.dram[off:off + n]


@pytest.mark.parametrize("cls, phys_text", [
    ("u-dma-buf", f"0x{PHYS:016x}\n"),     # u-dma-buf 3.x/4.x: %pad
    ("udmabuf", f"0x{PHYS:x}\n"),          # udmabuf 1.x: 0x%lx
])
def test_udmabuf_syncs_exactly_the_ranges_the_transport_touches(tmp_path, cls, phys_text, rng):
    paths = fake_udmabuf(tmp_path, cls=cls, phys_text=phys_text)
    buf = EmulatedUdmabuf("udmabuf0", **paths)
    assert (buf.phys_addr, buf.size, buf.cached, buf.coherent) == (PHYS, DMA_SIZE, True, False)
    t = LinuxTransport(regs=None, dma=buf, config=TINY)
    data = rng.integers(0, 256, size=300, dtype=np.uint8).tobytes()
    run_sync(t.mem_write(PHYS + 0x40, data))
    assert buf.trace == [("sync_offset", 0x40), ("sync_size", 300),
                         ("sync_direction", DMA_TO_DEVICE), ("sync_for_device", 1)]
    assert buf.dram[0x40:0x40 + 300].tobytes() == data
    fresh = rng.integers(0, 256, size=64, dtype=np.uint8)
    buf.dram[0x1000:0x1040] = fresh                    # the accelerator writes DRAM
    assert buf.read(0x1000, 64) == bytes(64)           # the CPU's cached view is stale ...
    buf.trace.clear()
    assert run_sync(t.mem_read(PHYS + 0x1000, 64)) == fresh.tobytes()   # ... until invalidated
    assert buf.trace == [("sync_offset", 0x1000), ("sync_size", 64),
                         ("sync_direction", DMA_FROM_DEVICE), ("sync_for_cpu", 1)]
    assert buf.sync_count == 2
    with pytest.raises(IlmpqValueError, match=r"outside the DMA buffer udmabuf0"):
        run_sync(t.mem_write(PHYS + DMA_SIZE - 8, b"x" * 16))
    with pytest.raises(IlmpqValueError, match=r"outside the DMA buffer"):
        run_sync(t.mem_read(PHYS - 8, 8))
    run_sync(t.mem_write(PHYS, b""))                   # nothing to sync
    assert buf.sync_count == 2
    t.close()


@pytest.mark.parametrize("kw", [{"cached": False}, {"coherent": 1}])
def test_uncached_or_coherent_udmabuf_needs_no_maintenance(tmp_path, kw):
    paths = fake_udmabuf(tmp_path, coherent=kw.get("coherent"))
    buf = EmulatedUdmabuf("udmabuf0", cached=kw.get("cached", True), **paths)
    t = LinuxTransport(regs=None, dma=buf, config=TINY)
    run_sync(t.mem_write(PHYS, b"abcd"))
    assert run_sync(t.mem_read(PHYS, 4)) == b"abcd"
    assert buf.trace == [] and buf.sync_count == 0
    t.close()


def test_missing_udmabuf_says_how_to_create_it(tmp_path):
    with pytest.raises(BoardError, match=r"no u-dma-buf device 'udmabuf3'.*modprobe u-dma-buf"):
        UdmabufBuffer("udmabuf3", dev_dir=str(tmp_path), sysfs_root=str(tmp_path))
    with pytest.raises(IlmpqValueError, match="like 'udmabuf0'"):
        UdmabufBuffer("../x")
    paths = fake_udmabuf(tmp_path, phys_text="garbage\n")
    with pytest.raises(BoardError, match="unreadable phys_addr"):
        UdmabufBuffer("udmabuf0", **paths)


def test_reserved_region_through_dev_mem(tmp_path):
    mem = sparse(tmp_path / "mem", PHYS + 0x2000)
    buf = PhysBuffer(PHYS, 0x2000, mem_dev=mem)
    t = LinuxTransport(regs=None, dma=buf, config=TINY)
    run_sync(t.mem_write(PHYS + 0x10, b"\x01\x02\x03\x04"))
    assert run_sync(t.mem_read(PHYS + 0x10, 4)) == b"\x01\x02\x03\x04"
    t.close()
    assert file_word(mem, PHYS + 0x10) == 0x0403_0201
    with pytest.raises(IlmpqValueError, match="4 KiB boundary"):
        PhysBuffer(PHYS + 0x100, 0x1000, mem_dev=mem)
    with pytest.raises(IlmpqValueError, match="DMA region size"):
        PhysBuffer(PHYS, 0, mem_dev=mem)


def test_pynq_buffer_flushes_and_invalidates(monkeypatch):
    calls = []

    class FakePynqBuffer(np.ndarray):
        physical_address = 0x1600_0000

        def flush(self):
            calls.append("flush")

        def invalidate(self):
            calls.append("invalidate")

        def freebuffer(self):
            calls.append("free")

    def allocate(shape, dtype):
        return np.zeros(shape, dtype).view(FakePynqBuffer)

    monkeypatch.setitem(sys.modules, "pynq", types.SimpleNamespace(allocate=allocate))
    buf = PynqBuffer(4096)
    t = LinuxTransport(regs=None, dma=buf, config=TINY)
    run_sync(t.mem_write(0x1600_0100, b"hi"))
    assert run_sync(t.mem_read(0x1600_0100, 2)) == b"hi"
    t.close()
    assert calls == ["flush", "invalidate", "free"]


def test_pynq_buffer_without_pynq(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)
    with pytest.raises(BoardError, match="needs the 'pynq' package"):
        PynqBuffer(4096)


# -- the interrupt, the FPGA state -----------------------------------------------------------------

def test_uio_interrupt_protocol():
    a, b = socket.socketpair()
    irq = UioInterrupt(fd=os.dup(a.fileno()))
    irq.enable()
    assert struct.unpack("=I", b.recv(4)) == (1,)          # unmask: a 32-bit 1
    assert irq.wait(0.01) is False                          # nothing pending
    b.send(struct.pack("=I", 5))
    assert irq.wait(1.0) is True and irq.events == 5
    b.send(struct.pack("=I", 6) + struct.pack("=I", 7))
    irq.drain()
    assert irq.events == 7 and irq.wait(0) is False
    irq.close()
    a.close()
    b.close()
    with pytest.raises(IlmpqValueError, match="exactly one"):
        UioInterrupt()


def test_fpga_state(tmp_path):
    state = tmp_path / "state"
    check_fpga_programmed(str(tmp_path / "absent"))        # no fpga-manager: nothing to check
    state.write_text("operating\n")
    check_fpga_programmed(str(state))
    state.write_text("unknown\n")
    with pytest.raises(BoardError, match=r"not programmed .*'unknown'.*load the bitstream"):
        check_fpga_programmed(str(state))


def test_open_wires_the_devices_and_checks_its_arguments(tmp_path):
    paths = fake_udmabuf(tmp_path)
    mem = sparse(tmp_path / "mem", GP0_BASE + CSR_SIZE)
    state = tmp_path / "state"
    state.write_text("operating\n")
    t = LinuxTransport.open(TINY, udmabuf="udmabuf0", mem_dev=mem, fpga_state=str(state),
                            clock_hz=50e6, **paths)
    assert t.dma.phys_addr == PHYS and t.regs.offset == GP0_BASE and t.irq is None
    assert t.describe() == (f"registers {mem} at {GP0_BASE:#x}, DMA buffer udmabuf0 "
                            f"[{PHYS:#x}, {PHYS + DMA_SIZE:#x}), polling, clock 50 MHz")
    run_sync(t.write32(0x48, 0xABCD_0000))
    t.close()
    assert file_word(mem, GP0_BASE + 0x48) == 0xABCD_0000
    # a reserved region and registers from a UIO device's map 0
    uio = tmp_path / "dev" / "uio0"
    sparse(uio, CSR_SIZE)
    maps = tmp_path / "sys" / "class" / "uio" / "uio0" / "maps" / "map0"
    maps.mkdir(parents=True)
    (maps / "addr").write_text(f"0x{GP0_BASE:08x}\n")
    (maps / "size").write_text(f"0x{CSR_SIZE:08x}\n")
    region = sparse(tmp_path / "region", PHYS + 0x1000)
    t = LinuxTransport.open(TINY, dma_phys=PHYS, dma_size=0x1000, mem_dev=region, uio="uio0",
                            uio_registers=True, fpga_state=None, **paths)
    assert t.regs.path == str(uio) and t.irq is not None and t.dma.phys_addr == PHYS
    t.close()
    (maps / "addr").write_text("0x43c00000\n")
    with pytest.raises(BoardError, match="maps 0x43c00000, not the register window"):
        LinuxTransport.open(TINY, dma_phys=PHYS, dma_size=0x1000, mem_dev=region, uio="uio0",
                            uio_registers=True, fpga_state=None, **paths)
    # argument errors come before any device is touched
    with pytest.raises(IlmpqValueError, match="exactly one DMA buffer"):
        LinuxTransport.open(TINY, fpga_state=None)
    with pytest.raises(IlmpqValueError, match="exactly one DMA buffer"):
        LinuxTransport.open(TINY, udmabuf="udmabuf0", pynq_size=10, fpga_state=None)
    with pytest.raises(IlmpqValueError, match="needs both"):
        LinuxTransport.open(TINY, dma_phys=PHYS, fpga_state=None)
    with pytest.raises(IlmpqValueError, match="need the UIO device"):
        LinuxTransport.open(TINY, udmabuf="udmabuf0", uio_registers=True, fpga_state=None)
    state.write_text("write error\n")
    with pytest.raises(BoardError, match="not programmed"):
        LinuxTransport.open(TINY, udmabuf="udmabuf0", mem_dev=mem, fpga_state=str(state),
                            **paths)
    with pytest.raises(IlmpqValueError, match="clock_hz"):
        LinuxTransport(None, t.dma, TINY, clock_hz=0)


# -- against the RTL -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_verilog():
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, verilator_path
    try:
        verilator_path()
    except VerilatorNotFound as e:
        pytest.skip(str(e))
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")
    from ilmpq.firmware.board.verilog import accelerator_verilog
    return accelerator_verilog(TINY)


class SimRegisters:
    """The register window as the RTL's AXI4-Lite port (what the GP0 bridge reaches)."""

    def __init__(self, vsim, lock=None):
        self.vsim, self.lock = vsim, lock or threading.Lock()

    def read32(self, offset):
        with self.lock:
            return self.vsim.csr_read(offset)

    def write32(self, offset, value):
        with self.lock:
            self.vsim.csr_write(offset, value)


class SimClock:
    """Simulated time: sleeping runs the RTL, the clock is its cycle counter."""

    def __init__(self, vsim, hz=HZ):
        self.vsim, self.hz = vsim, hz

    def now(self):
        return self.vsim.cycle / self.hz

    def sleep(self, seconds):
        self.vsim.step(max(1, round(seconds * self.hz)))


@pytest.fixture
def board(tmp_path, tiny_verilog):
    """A LinuxTransport on the RTL: registers on s_axil, u-dma-buf emulated over its DRAM."""
    from ilmpq.firmware.sim.verilator.sim import VerilatorSim
    vsim = VerilatorSim(*tiny_verilog, mem_base=PHYS, mem_size=DMA_SIZE)
    paths = fake_udmabuf(tmp_path)
    lock = threading.Lock()
    dma = EmulatedUdmabuf("udmabuf0", dram=vsim.mem_view(), lock=lock, **paths)
    clock = SimClock(vsim)
    t = LinuxTransport(SimRegisters(vsim, lock), dma, TINY, clock_hz=HZ, poll_interval=2e-6,
                       sleep=clock.sleep, monotonic=clock.now)
    yield types.SimpleNamespace(vsim=vsim, t=t, dma=dma, lock=lock, paths=paths)
    t.close()
    vsim.close()


def _model(rng):
    return random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 7, 7),
                         max_channels=9)


@pytest.mark.verilator
def test_the_driver_runs_bit_exact_through_the_linux_transport(board, rng):
    model = _model(rng)
    comp = compile_model(model, TINY, base=PHYS)     # compiled where the buffer is
    imgs = [rng.integers(0, 256, size=(3, 7, 7)) for _ in range(2)]
    drv = Driver(board.t, TINY)
    stats = []
    for i, img in enumerate(imgs):
        out, st = run_sync(drv.infer(comp, img, load=(i == 0), check=True))
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), out)
        stats.append(st.counters)
    from ilmpq.firmware.sim.simulate import simulate
    assert [r.stats.counters for r in simulate(comp, imgs, sim="verilator")] == stats
    n_prog = sum(isinstance(s, AccelStep) for s in comp.steps)
    assert board.t.polls >= 2 * n_prog
    # every range the CPU wrote was cleaned, every range it read was invalidated first
    dev = [v for a, v in board.dma.trace if a == "sync_for_device"]
    cpu = [v for a, v in board.dma.trace if a == "sync_for_cpu"]
    assert len(dev) >= 2 + 1 and len(cpu) >= 2 * len(comp.tensors)


@pytest.mark.verilator
def test_wait_times_out_in_clock_cycles(board):
    t0 = board.vsim.cycle
    assert run_sync(board.t.wait_irq(10_000)) is False          # nothing was started
    waited = board.vsim.cycle - t0
    assert 10_000 <= waited <= 10_000 + 200 + 50                # one poll interval of slack


@pytest.mark.verilator
def test_timeouts_and_hardware_errors_through_the_linux_transport(board, rng):
    model = _model(rng)
    comp = compile_model(model, TINY, base=PHYS)
    img = rng.integers(0, 256, size=(3, 7, 7))
    ref = reference.run(model, img, spec=TINY.numeric)
    step = next(s for s in comp.steps if isinstance(s, AccelStep))
    # the driver's timeout: 300 cycles is too short; the accelerator is soft-reset
    with pytest.raises(DriverTimeout, match="300 cycles"):
        run_sync(Driver(board.t, TINY, timeout_cycles=300).infer(comp, img))
    assert RM.decode("status", run_sync(board.t.read32(RM.offset("status"))))["busy"] == 0
    drv = Driver(board.t, TINY)
    # an AXI read error on the program fetch
    board.vsim.reset()
    board.vsim.inject_error("r", 0, "SLVERR")
    with pytest.raises(DMAError, match="DMA_READ_SLVERR") as e:
        run_sync(drv.run_program(step.prog_addr, step.n_instr, comp.window, comp.arena,
                                 step.prog_tag))
    assert e.value.info == step.prog_addr
    board.vsim.clear_errors()
    # a corrupted weight package (through the transport, so through the cache)
    raw = bytes(comp.image[step.prog_addr - PHYS:][:step.n_instr * isa.INSTR_BITS // 8])
    lw = next(f for op, f in (isa.decode(raw[i:i + isa.INSTR_BITS // 8])
                              for i in range(0, len(raw), isa.INSTR_BITS // 8))
              if op == isa.Opcode.LOAD_WEIGHTS)
    at = lw["addr"] + header_beats(TINY) * TINY.beat_bytes
    good = run_sync(board.t.mem_read(at, 1))
    run_sync(board.t.mem_write(at, bytes([good[0] ^ 1])))
    with pytest.raises(WeightPackageRejected, match="WPKG_CRC"):
        run_sync(drv.run_program(step.prog_addr, step.n_instr, comp.window, comp.arena,
                                 step.prog_tag))
    run_sync(board.t.mem_write(at, good))
    out, _ = run_sync(drv.infer(comp, img, load=False, check=True))
    assert_layers_equal(model, ref, out)


@pytest.mark.verilator
def test_the_uio_interrupt_ends_the_wait(board, rng):
    """The RTL runs freely in a thread (the "hardware"), which also plays the kernel's UIO
    driver: when ``irq`` is high and unmasked it masks it and sends the event count."""
    a, b = socket.socketpair()
    irq = UioInterrupt(fd=os.dup(a.fileno()))
    t = LinuxTransport(board.t.regs, board.dma, TINY, clock_hz=HZ, irq=irq, irq_slice=0.5)
    stop = threading.Event()
    fired = []

    def hardware():
        b.setblocking(False)
        unmasked = False
        while not stop.is_set():
            try:
                data = b.recv(64)
                assert data == struct.pack("=I", 1) * (len(data) // 4) and data
                unmasked = True
            except BlockingIOError:
                pass
            with board.lock:
                if unmasked and board.vsim.irq:
                    fired.append(board.vsim.cycle)
                    b.send(struct.pack("=I", len(fired)))
                    unmasked = False
                else:
                    board.vsim.step(64)

    thread = threading.Thread(target=hardware, daemon=True)
    thread.start()
    try:
        model = _model(rng)
        comp = compile_model(model, TINY, base=PHYS)
        img = rng.integers(0, 256, size=(3, 7, 7))
        out, _ = run_sync(Driver(t, TINY, timeout_cycles=10**9).infer(comp, img, check=True))
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), out)
    finally:
        stop.set()
        thread.join()
        irq.close()
        a.close()
        b.close()
    assert len(fired) >= 1 and irq.events >= 1


# -- ilmpq board ---------------------------------------------------------------------------------

def _identity_file(path, config):
    rm = accelerator_regmap(config)
    mem = sparse(path, GP0_BASE + CSR_SIZE)
    with open(mem, "r+b") as f:
        for reg in ("id", "version", "config_id", "geometry", "datapath", "buffers"):
            f.seek(GP0_BASE + rm.offset(reg))
            f.write(rm.word_at(rm.offset(reg))[0].reset.to_bytes(4, "little"))
    return mem


def test_board_info_identifies_the_bitstream(tmp_path, capsys):
    mem = _identity_file(tmp_path / "mem", TINY)
    assert cli_main(["board", "info", "--mem-dev", mem, "--no-fpga-check",
                     "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "configuration: tiny" in out and "matches --config tiny" in out
    assert f"config_id {TINY.config_id:#010x}" in out and "cycles" in out
    assert cli_main(["board", "info", "--mem-dev", mem, "--no-fpga-check",
                     "--config", "z020"]) == 1
    assert "MISMATCH: the bitstream is built for another configuration" in capsys.readouterr().out
    empty = sparse(tmp_path / "empty", GP0_BASE + CSR_SIZE)
    assert cli_main(["board", "info", "--mem-dev", empty, "--no-fpga-check"]) == 1
    assert "no ilmpq accelerator at 0x40000000" in capsys.readouterr().out


@pytest.mark.verilator
def test_board_run_self_test_on_the_rtl(board, tmp_path, rng, monkeypatch, capsys):
    from ilmpq.firmware.cli import board as cmd_board
    model = _model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    opened = []

    def open_transport(args, config):
        assert config is TINY and args.udmabuf is None and args.clock_mhz == 100.0
        opened.append(args)
        return board.t

    monkeypatch.setattr(cmd_board, "open_transport", open_transport)
    js = tmp_path / "out.json"
    assert cli_main(["board", "run", str(path), "--config", "tiny", "--count", "2", "--check",
                     "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert out.count(", bit-exact") == 2 and "2/2 images bit-exact on every layer" in out
    assert f"model image {compile_model(model, TINY, base=PHYS).size} bytes at {PHYS:#x}" in out
    import json
    res = json.loads(js.read_text())
    assert res["base"] == PHYS and len(res["images"]) == 2
    assert all(r["bit_exact"] and r["counters"]["cycles"] > 0 for r in res["images"])
    assert len(opened) == 1


def test_board_run_refuses_a_too_small_buffer(tmp_path, rng, monkeypatch, capsys):
    from ilmpq.firmware.cli import board as cmd_board
    model = _model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    paths = fake_udmabuf(tmp_path, size=4096)

    def open_transport(args, config):
        return LinuxTransport(None, UdmabufBuffer("udmabuf0", **paths), config)

    monkeypatch.setattr(cmd_board, "open_transport", open_transport)
    assert cli_main(["board", "run", str(path), "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "error: the compiled model needs" in err and "udmabuf0 holds 4096" in err


@pytest.mark.verilator
@pytest.mark.parametrize("check", [False, True])
def test_board_run_batch_2_on_the_rtl(board, tmp_path, rng, monkeypatch, capsys, check):
    """``board run --batch 2`` on three images (edges on purpose: a last group of one, filled
    up and its copy's result dropped): without ``--check`` the stream of groups through
    ``Driver.infer_stream``, every output bit-exact with golden in input order; with it every
    layer of every image; per image its run's cycles / 2, per run its latency."""
    from ilmpq.firmware.cli import board as cmd_board
    from ilmpq.firmware.driver import Driver
    model = _model(rng)
    path = tmp_path / "model.npz"
    model.save(path)
    imgs = np.stack([rng.integers(0, 256, size=(3, 7, 7)), np.full((3, 7, 7), 255),
                     np.zeros((3, 7, 7), np.int64)]).astype(np.uint8)
    np.save(tmp_path / "imgs.npy", imgs)
    monkeypatch.setattr(cmd_board, "open_transport", lambda args, config: board.t)
    streamed = []
    real_stream = Driver.infer_stream

    async def infer_stream(self, compiled, images, **kw):
        res = await real_stream(self, compiled, images, **kw)
        streamed.append((compiled.batch, res))
        return res

    monkeypatch.setattr(Driver, "infer_stream", infer_stream)
    js = tmp_path / "out.json"
    assert cli_main(["board", "run", str(path), "--config", "tiny", "--images",
                     str(tmp_path / "imgs.npy"), "--batch", "2", "--json", str(js)]
                    + (["--check"] if check else [])) == 0
    out = capsys.readouterr().out
    want = [reference.run(model, im.astype(np.int64), spec=TINY.numeric) for im in imgs]
    if check:
        assert streamed == [] and out.count(", bit-exact") == 3
        assert "3/3 images bit-exact on every layer (board, 2 images a run)" in out
    else:
        ((batch, res),) = streamed
        assert batch == 2 and len(res.outputs) == 3 and len(res.cycles) == 2
        for got, ref in zip(res.outputs, want):
            np.testing.assert_array_equal(got, ref[model.output])
    import json
    rep = json.loads(js.read_text())
    assert rep["batch"] == 2 and [r["run"] for r in rep["images"]] == [0, 0, 1]
    runs = [rep["images"][0]["counters"]["cycles"], rep["images"][2]["counters"]["cycles"]]
    assert all(c > 0 for c in runs)
    for i, r in enumerate(rep["images"]):
        assert r["class"] == int(np.argmax(want[i][model.output].reshape(-1)))
        assert r["cycles"] == runs[r["run"]] / 2
    assert f"image 3/3: class {rep['images'][2]['class']}, {runs[1] / 2:.0f} cycles (run 2/2 " \
           f"of 2 images: {runs[1]} cycles = {runs[1] / HZ * 1e3:.3f} ms latency at 100 MHz)" in out
    assert "3 images in 2 runs of 2: mean " in out


def test_board_run_batch_of_a_model_with_host_layers_is_one_error(tmp_path, monkeypatch, capsys):
    """``--batch 2`` for a model whose layers do not all run on the accelerator: the
    compiler's one error naming the host layer, before anything is written to the buffer."""
    from e2e_util import host_layer_model
    from ilmpq.firmware.cli import board as cmd_board
    model, _ = host_layer_model(13, TINY)
    path = tmp_path / "model.npz"
    model.save(path)
    paths = fake_udmabuf(tmp_path)
    opened = []

    def open_transport(args, config):
        t = LinuxTransport(None, UdmabufBuffer("udmabuf0", **paths), config)
        opened.append(t)
        return t

    monkeypatch.setattr(cmd_board, "open_transport", open_transport)
    assert cli_main(["board", "run", str(path), "--config", "tiny", "--batch", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "batch = 2: the layers before the stacked ones must " \
        "run on the accelerator as one program; the host runs p" in err, err
    assert len(opened) == 1
    with open(os.path.join(paths["dev_dir"], "udmabuf0"), "rb") as f:
        assert not any(f.read())                     # nothing written to the buffer
