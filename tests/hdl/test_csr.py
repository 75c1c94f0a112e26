"""CSRBank through AXI4-Lite in the Amaranth simulator, and the register-description checks.

Every test looks its offsets up in the *generated* Python module (written to a temporary file,
imported, and loaded back with ``ilmpq.firmware.regmap.load``), so the generator and the
hardware are checked against each other. Timing claims (write performed the cycle after both
AW and W, W1P pulse of exactly one cycle, W1C set-wins, counter snapshot) are checked exactly
from a passive monitor that samples the bus and the field ports at every clock edge.
"""

import importlib.util
import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Fragment, Module, Value
from amaranth.sim import Simulator

from ilmpq.firmware.regmap import HardwareIdentity, generate_python, load
from ilmpq.golden.errors import IlmpqTypeError
from ilmpq.hdl.axi import AXIResp
from ilmpq.hdl.config import get_config
from ilmpq.hdl.csr import (Access, Constant, CSRBank, Field, Register, RegisterMap,
                           RegisterMapError)
from ilmpq.hdl.regmap import ID_MAGIC, accelerator_regmap
from ilmpq.hdl.status import ErrorCode
from models.axil import AXILiteManager, axil_read, axil_write

OKAY, SLVERR = int(AXIResp.OKAY), int(AXIResp.SLVERR)
TINY = get_config("tiny")


# -- helpers -------------------------------------------------------------------------------------

def generated(regmap, tmp_path, name):
    """Import the generated Python module of ``regmap``; return (module, loaded RegisterMap)."""
    path = tmp_path / f"{name}.py"
    path.write_text(generate_python(regmap))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, load(mod)


class Monitor:
    """Samples bus handshakes and named signals at every clock edge (log[i] = edge i + 1)."""

    def __init__(self, bus, **signals):
        self.bus = bus
        self.signals = signals
        self.log = []

    async def run(self, ctx):
        b = self.bus
        keys = ["aw", "w", "b", "ar", "araddr", "r", *self.signals]
        exprs = [b.awvalid & b.awready, b.wvalid & b.wready, b.bvalid & b.bready,
                 b.arvalid & b.arready, b.araddr, b.rvalid & b.rready,
                 *(Value.cast(s) for s in self.signals.values())]
        async for _clk, _rst, *values in ctx.tick().sample(*exprs):
            self.log.append(dict(zip(keys, values)))

    @property
    def edge(self) -> int:
        return len(self.log)

    def edges(self, key, since=0):
        return [i + 1 for i, e in enumerate(self.log) if e[key] and i + 1 > since]


def simulate(dut, main, *background):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bg in background:
        sim.add_testbench(bg.run if isinstance(bg, Monitor) else bg, background=True)
    sim.add_testbench(main)
    sim.run()


@pytest.fixture
def tiny(tmp_path):
    """(bank, generated module, loaded map) for the accelerator map of the tiny config."""
    regmap = accelerator_regmap(TINY)
    mod, loaded = generated(regmap, tmp_path, "ilmpq_regs_tiny")
    assert loaded == regmap
    return CSRBank(regmap), mod, loaded


# -- reads, writes, responses --------------------------------------------------------------------

def test_reset_values_and_identity(tiny, rng):
    dut, R, rmap = tiny
    err_info = int(rng.integers(0, 2**32))
    expected = {
        R.ID_OFFSET: ID_MAGIC,
        R.CONFIG_ID_OFFSET: TINY.config_id,
        R.GEOMETRY_OFFSET: TINY.lanes_lo | TINY.lanes_hi << 16,
        R.DATAPATH_OFFSET: TINY.tn | TINY.act_bits << 8 | TINY.acc_bits << 16
        | TINY.mult_bits << 24,
        R.CTRL_OFFSET: 0,
        # RO inputs driven below: busy=1, error=1, error_code=TIMEOUT; done (W1C) resets to 0
        R.STATUS_OFFSET: 1 | 1 << 2 | int(ErrorCode.TIMEOUT) << R.STATUS_ERROR_CODE_SHIFT,
        R.ERR_INFO_OFFSET: err_info,
        R.PROG_ADDR_OFFSET: 0, R.PROG_LEN_OFFSET: 0, R.WIN_BASE_OFFSET: 0,
        R.WIN_LIMIT_OFFSET: 0, R.WATCHDOG_OFFSET: 0,
    }
    for reg in rmap.counters:
        for _word, offset in reg.words:
            expected[offset] = 0
    # every mapped word is covered, either above or as a CONST register checked via its _RESET
    for reg in rmap:
        for _word, offset in reg.words:
            expected.setdefault(offset, reg.reset)

    async def main(ctx):
        ctx.set(dut.fields.status.busy, 1)
        ctx.set(dut.fields.status.error, 1)
        ctx.set(dut.fields.status.error_code, ErrorCode.TIMEOUT)
        ctx.set(dut.fields.err_info.info, err_info)
        got = {}
        for offset in expected:
            data, resp = await axil_read(ctx, dut.bus, offset, rng=rng)
            assert resp == OKAY, hex(offset)
            got[offset] = data
        assert got == expected
        ident = HardwareIdentity.read(rmap, lambda off: got[off])
        assert ident == HardwareIdentity.expected(rmap)
        assert ident.mismatch(HardwareIdentity.expected(rmap)) is None
        code = rmap.decode("status", got[R.STATUS_OFFSET])["error_code"]
        assert (code.name, code) == ("TIMEOUT", ErrorCode.TIMEOUT)
        # RW ports show their reset values
        assert ctx.get(dut.fields.ctrl.irq_en) == R.CTRL_IRQ_EN_RESET
        assert ctx.get(dut.fields.win_limit.addr) == R.WIN_LIMIT_ADDR_RESET

    simulate(dut, main)


def test_rw_registers_random_strobes_and_delays(tiny, rng):
    """Random writes (random strobes, AW/W delays, bready) and reads of every RW and WO register
    against a Python model; the hardware ports follow the model after every write, and WO
    registers (the MAC key) always read as 0."""
    dut, R, rmap = tiny
    kinds = (Access.RW, Access.WO)
    rw = [reg for reg in rmap if any(f.access in kinds for f in reg.fields)]
    assert {r.name for r in rw} == {"ctrl", "prog_addr", "prog_len", "win_base", "win_limit",
                                   "watchdog", "bus_timeout", "wr_base", "wr_limit", "prog_tag",
                                   "mac_key0", "mac_key1",
                                   "mac_key2", "mac_key3", "mac_nonce_lo", "mac_nonce_hi",
                                   "mac_ctrl"}
    assert {r.name for r in rw if r.fields[0].access is Access.WO} == {
        f"mac_key{i}" for i in range(4)}
    model = {reg.name: reg.reset for reg in rw}
    bus = AXILiteManager(dut.bus, rng=rng, max_delay=3)

    def mask(reg, access):
        return sum(f.mask for f in reg.fields if f.access in access)

    def readback(name):
        return model[name] & mask(rmap[name], (Access.RW,))

    async def main(ctx):
        for _ in range(60):
            reg = rw[int(rng.integers(len(rw)))]
            if reg.name == "ctrl":   # never pulse start/soft_reset here
                data = int(rng.integers(0, 2**32)) & ~(R.CTRL_START_MASK | R.CTRL_SOFT_RESET_MASK)
            else:
                data = int(rng.integers(0, 2**32))
            strb = int(rng.integers(0, 16))
            assert await bus.write(ctx, getattr(R, f"{reg.name.upper()}_OFFSET"), data,
                                   strb) == OKAY
            bmask = sum(0xFF << (8 * i) for i in range(4) if strb >> i & 1) & mask(reg, kinds)
            model[reg.name] = (model[reg.name] & ~bmask) | (data & bmask)
            for f in reg.fields:
                if f.access in kinds:
                    port = getattr(getattr(dut.fields, reg.name), f.name)
                    assert ctx.get(port) == (model[reg.name] & f.mask) >> f.lsb, (reg.name, f)
            if rng.random() < 0.5:
                check = rw[int(rng.integers(len(rw)))]
                data, resp = await bus.read(ctx, rmap.offset(check.name))
                assert (data, resp) == (readback(check.name), OKAY), check.name
            for _ in range(int(rng.integers(0, 3))):
                await ctx.tick()
        for reg in rw:
            assert await bus.read(ctx, rmap.offset(reg.name)) == (readback(reg.name), OKAY)
        # a written key is on the ports, never on the bus
        for i in range(4):
            assert await bus.write(ctx, rmap.offset(f"mac_key{i}"), 0xFFFFFFFF) == OKAY
            assert ctx.get(getattr(dut.fields, f"mac_key{i}").key) == 0xFFFFFFFF
            assert await bus.read(ctx, rmap.offset(f"mac_key{i}")) == (0, OKAY)

    simulate(dut, main)


@pytest.mark.parametrize("aw_delay,w_delay", [(0, 4), (4, 0), (0, 0), (2, 3)],
                         ids=["aw_first", "w_first", "together", "w_later"])
def test_write_channel_order_and_timing(tiny, aw_delay, w_delay):
    """AW and W are accepted in either order; the write lands exactly one cycle after the
    later handshake and B follows it; a pending AW alone changes nothing."""
    dut, R, _ = tiny
    mon = Monitor(dut.bus, value=dut.fields.prog_addr.addr)
    value = 0x1234_5678

    async def main(ctx):
        start = mon.edge
        resp = await axil_write(ctx, dut.bus, R.PROG_ADDR_OFFSET, value, aw_delay=aw_delay,
                                w_delay=w_delay)
        assert resp == OKAY
        await ctx.tick()
        [ea], [ew], [eb] = (mon.edges(k, start) for k in ("aw", "w", "b"))
        assert ea - ew == aw_delay - w_delay
        later = max(ea, ew)
        changed = [e for e in range(start + 1, mon.edge + 1) if mon.log[e - 1]["value"] == value]
        assert changed[0] == later + 2       # performed at edge later+1, seen from edge later+2
        assert eb == later + 2               # bvalid from edge later+1, bready always 1
        data, resp = await axil_read(ctx, dut.bus, R.PROG_ADDR_OFFSET)
        assert (data, resp) == (value, OKAY)

    simulate(dut, main, mon)


def test_pipelined_manager_on_independent_channels(tiny, rng):
    """A manager that drives AW, W, B, AR and R from independent processes and issues the next
    address before the previous response (allowed by AXI): the bank back-pressures, and every
    write lands at its own address; pipelined reads return in order."""
    dut, R, rmap = tiny
    bus = dut.bus
    names = ["prog_addr", "prog_len", "win_base", "win_limit", "watchdog"]
    writes = [(rmap.offset(names[int(i)]), int(d))
              for i, d in zip(rng.integers(0, len(names), 24), rng.integers(0, 2**32, 24))]
    final = {}
    for off, data in writes:
        final[off] = data
    reads = [rmap.offset(n) for n in names] * 2
    got = {"b": [], "r": []}

    async def handshake(ctx, valid, ready, channel):
        ctx.set(valid, 1)
        for _ in range(500):
            if (await ctx.tick().sample(ready))[2]:
                ctx.set(valid, 0)
                return
        raise AssertionError(f"{channel} handshake did not happen within 500 cycles")

    async def gaps(ctx, hi=3):
        for _ in range(int(rng.integers(0, hi))):
            await ctx.tick()

    async def aw_driver(ctx):
        for off, _ in writes:
            await gaps(ctx)
            ctx.set(bus.awaddr, off)
            await handshake(ctx, bus.awvalid, bus.awready, "AW")

    async def w_driver(ctx):
        for _, data in writes:
            await gaps(ctx, 5)
            ctx.set(bus.wdata, data)
            ctx.set(bus.wstrb, 0b1111)
            await handshake(ctx, bus.wvalid, bus.wready, "W")

    async def b_collector(ctx):
        for _ in range(2000):            # bounded: a hang fails the assertions below
            if len(got["b"]) == len(writes):
                break
            ctx.set(bus.bready, int(rng.random() < 0.6))
            _, _, valid, ready, resp = await ctx.tick().sample(bus.bvalid, bus.bready, bus.bresp)
            if valid and ready:
                got["b"].append(resp)
        ctx.set(bus.bready, 0)

    async def ar_driver(ctx):
        for _ in range(2000):
            if len(got["b"]) == len(writes):
                break
            await ctx.tick()
        for off in reads:
            await gaps(ctx)
            ctx.set(bus.araddr, off)
            await handshake(ctx, bus.arvalid, bus.arready, "AR")

    async def r_collector(ctx):
        for _ in range(4000):
            if len(got["r"]) == len(reads):
                break
            ctx.set(bus.rready, int(rng.random() < 0.6))
            _, _, valid, ready, data, resp = await ctx.tick().sample(
                bus.rvalid, bus.rready, bus.rdata, bus.rresp)
            if valid and ready:
                got["r"].append((data, resp))
        ctx.set(bus.rready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in (aw_driver, w_driver, b_collector, ar_driver, r_collector):
        sim.add_testbench(tb)
    sim.run()
    assert got["b"] == [OKAY] * len(writes)
    assert got["r"] == [(final.get(off, 0), OKAY) for off in reads]


def test_read_timing(tiny):
    dut, R, _ = tiny
    mon = Monitor(dut.bus)

    async def main(ctx):
        start = mon.edge
        assert await axil_read(ctx, dut.bus, R.ID_OFFSET, ar_delay=2) == (ID_MAGIC, OKAY)
        [ear], [er] = mon.edges("ar", start), mon.edges("r", start)
        assert er == ear + 1                  # rvalid the cycle after AR, rready always 1
        # back-to-back reads: the next AR is accepted the cycle after the R handshake
        await axil_read(ctx, dut.bus, R.VERSION_OFFSET)
        assert mon.edges("ar", er)[0] == er + 1

    simulate(dut, main, mon)


def test_unmapped_and_read_only_answer_slverr(tiny, rng):
    dut, R, rmap = tiny
    mapped = {off for reg in rmap for _w, off in reg.words}
    unmapped = sorted({int(x) * 4 for x in rng.integers(0, R.CSR_SIZE // 4, 12)} - mapped)
    unmapped += [off for off in (0x018, 0x02C, 0x054, R.CSR_SIZE - 4) if off not in mapped]
    read_only = [R.ID_OFFSET, R.CONFIG_ID_OFFSET, R.ERR_INFO_OFFSET, R.CYCLES_LO_OFFSET,
                 R.CYCLES_HI_OFFSET]

    async def main(ctx):
        ctx.set(dut.fields.err_info.info, 0xCAFE)
        before = {off: (await axil_read(ctx, dut.bus, off, rng=rng))[0] for off in read_only}
        for off in unmapped:
            assert await axil_read(ctx, dut.bus, off, rng=rng) == (0, SLVERR), hex(off)
            assert await axil_write(ctx, dut.bus, off, 0xFFFF_FFFF, rng=rng) == SLVERR
        for off in read_only:
            assert await axil_write(ctx, dut.bus, off, 0x5A5A_5A5A, rng=rng) == SLVERR, hex(off)
        for off in read_only:
            assert await axil_read(ctx, dut.bus, off, rng=rng) == (before[off], OKAY)
        # nothing writable changed either
        for name in ("ctrl", "prog_addr", "prog_len", "win_base", "win_limit", "watchdog"):
            assert await axil_read(ctx, dut.bus, rmap.offset(name)) == (0, OKAY), name
        # unaligned addresses select the containing word; a register with any writable field
        # answers OKAY
        assert await axil_write(ctx, dut.bus, R.STATUS_OFFSET, 0) == OKAY
        assert await axil_read(ctx, dut.bus, R.ID_OFFSET + 3) == (ID_MAGIC, OKAY)

    simulate(dut, main)


# -- W1P, W1C --------------------------------------------------------------------------------------

def test_w1p_pulses_exactly_one_cycle(tiny, rng):
    dut, R, rmap = tiny
    mon = Monitor(dut.bus, start=dut.fields.ctrl.start, soft=dut.fields.ctrl.soft_reset,
                  irq_en=dut.fields.ctrl.irq_en)

    async def write_ctrl(ctx, data, strb=0b1111):
        start = mon.edge
        assert await axil_write(ctx, dut.bus, R.CTRL_OFFSET, data, strb, rng=rng) == OKAY
        for _ in range(3):
            await ctx.tick()
        later = max(mon.edges("aw", start)[0], mon.edges("w", start)[0])
        return start, later

    async def main(ctx):
        # irq_en on; then start with a byte write to byte 0 only: irq_en is kept
        await write_ctrl(ctx, rmap.encode("ctrl", irq_en=1))
        for data, strb, pulses in [
                (rmap.encode("ctrl", start=1), 0b0001, {"start"}),
                (rmap.encode("ctrl", start=1, irq_en=1), 0b1111, {"start"}),
                (rmap.encode("ctrl", soft_reset=1, irq_en=1), 0b1111, {"soft"}),
                (rmap.encode("ctrl", start=1, soft_reset=1, irq_en=1), 0b1111,
                 {"start", "soft"}),
                (rmap.encode("ctrl", irq_en=1), 0b1111, set()),             # writing 0
                (rmap.encode("ctrl", start=1, irq_en=1), 0b1110, set()),    # strobe off
        ]:
            start, later = await write_ctrl(ctx, data, strb)
            for key in ("start", "soft"):
                edges = mon.edges(key, start)
                # the pulse is seen at exactly one edge: the one after the write is performed
                assert edges == ([later + 2] if key in pulses else []), (key, hex(data), strb)
            assert ctx.get(dut.fields.ctrl.irq_en) == 1
            # W1P bits read as 0
            assert await axil_read(ctx, dut.bus, R.CTRL_OFFSET, rng=rng) == (
                rmap.encode("ctrl", irq_en=1), OKAY)

    simulate(dut, main, mon)


def test_w1c_set_clear_and_set_wins(tiny, rng):
    dut, R, rmap = tiny
    done = dut.fields.status.done
    plan = {"set_edge": None}
    mon = Monitor(dut.bus, set=done.set, value=done.value)

    async def driver(ctx):   # pulses done.set so that it is sampled at edge plan["set_edge"]
        edge = 0
        while True:
            ctx.set(done.set, int(plan["set_edge"] == edge + 1))
            await ctx.tick()
            edge += 1

    async def read_done(ctx):
        data, resp = await axil_read(ctx, dut.bus, R.STATUS_OFFSET, rng=rng)
        assert resp == OKAY
        return rmap.decode("status", data)["done"]

    async def main(ctx):
        assert await read_done(ctx) == 0
        plan["set_edge"] = mon.edge + 3
        for _ in range(5):
            await ctx.tick()
        assert await read_done(ctx) == 1 and ctx.get(done.value) == 1
        # writing 0, or 1 with the strobe of byte 0 off, keeps it
        for data, strb in [(0, 0b1111), (R.STATUS_DONE_MASK, 0b1110)]:
            assert await axil_write(ctx, dut.bus, R.STATUS_OFFSET, data, strb, rng=rng) == OKAY
            assert await read_done(ctx) == 1
        assert await axil_write(ctx, dut.bus, R.STATUS_OFFSET, R.STATUS_DONE_MASK,
                                rng=rng) == OKAY
        assert await read_done(ctx) == 0 and ctx.get(done.value) == 0
        # a set in the same cycle as the clearing write wins; a set one cycle earlier loses
        outcomes = {}
        for offset in range(1, 7):
            plan["set_edge"] = None
            await ctx.tick()
            if await read_done(ctx) == 0:   # make it 1 first, so that the write clears it
                plan["set_edge"] = mon.edge + 2
                for _ in range(4):
                    await ctx.tick()
            start = mon.edge
            plan["set_edge"] = start + 1 + offset     # the driver sees this from edge start+1
            assert await axil_write(ctx, dut.bus, R.STATUS_OFFSET, R.STATUS_DONE_MASK,
                                    aw_delay=2, w_delay=2) == OKAY
            for _ in range(4):
                await ctx.tick()
            [s] = mon.edges("set", start)
            performed = max(mon.edges("aw", start)[0], mon.edges("w", start)[0]) + 1
            final = await read_done(ctx)
            assert final == int(s >= performed), (s, performed)
            outcomes[s - performed] = final
        assert outcomes.get(0) == 1 and outcomes.get(-1) == 0, outcomes

    simulate(dut, main, driver, mon)


# -- counters ------------------------------------------------------------------------------------

def counter_model(log, inc_key, clear_key):
    """Counter value *before* each edge (index i = before edge i + 1), from sampled inputs."""
    before, count = [], 0
    for e in log:
        before.append(count)
        count = 0 if e[clear_key] else (count + e[inc_key]) % 2**64
    return before


def test_counter_snapshot_consistent_while_counting(tmp_path, rng):
    """A counter with a 32-bit increment carries into its HI word almost every cycle; LO-then-HI
    reads with random gaps give exactly the value at the LO read's AR edge."""
    regmap = RegisterMap("t", [
        Register("big", 0x00, [Field.counter("count", inc_width=32, doc="fast")]),
        Register("small", 0x08, [Field.counter("count", inc_width=1, doc="slow")]),
        Register("scratch", 0x10, [Field("x", 32, Access.RW)]),
    ], addr_width=8)
    R, rmap = generated(regmap, tmp_path, "t_regs")
    dut = CSRBank(rmap)
    assert dut.bus.signature.addr_width == 8
    big, small = dut.fields.big.count, dut.fields.small.count
    plan = {"clear_at": set()}
    mon = Monitor(dut.bus, inc=big.inc, clear=big.clear, value=big.value,
                  sinc=small.inc, sclear=small.clear, svalue=small.value)

    async def driver(ctx):
        edge = 0
        while True:
            ctx.set(big.inc, int(rng.integers(2**31, 2**32)))
            ctx.set(big.clear, int(edge + 1 in plan["clear_at"]))
            ctx.set(small.inc, int(rng.integers(0, 2)))
            ctx.set(small.clear, int(edge + 1 in plan["clear_at"]))
            await ctx.tick()
            edge += 1

    reads = []

    async def main(ctx):
        for i in range(12):
            if i == 6:
                plan["clear_at"].add(mon.edge + 2)
            for name, lo, hi in (("big", R.BIG_LO_OFFSET, R.BIG_HI_OFFSET),
                                 ("small", R.SMALL_LO_OFFSET, R.SMALL_HI_OFFSET)):
                start = mon.edge
                lo_data, r1 = await axil_read(ctx, dut.bus, lo, rng=rng)
                for _ in range(int(rng.integers(0, 4))):
                    await ctx.tick()
                hi_data, r2 = await axil_read(ctx, dut.bus, hi, rng=rng)
                assert r1 == r2 == OKAY
                reads.append((name, mon.edges("ar", start)[0], mon.edges("ar", start)[1],
                              hi_data << 32 | lo_data))

    simulate(dut, main, driver, mon)
    before = {"big": counter_model(mon.log, "inc", "clear"),
              "small": counter_model(mon.log, "sinc", "sclear")}
    # the value output follows the model at every edge (counting, clear priority)
    assert [e["value"] for e in mon.log] == before["big"]
    assert [e["svalue"] for e in mon.log] == before["small"]
    assert any(e["clear"] and e["inc"] for e in mon.log)   # a clear while incrementing
    hi_moved = 0
    for name, e_lo, e_hi, value in reads:
        assert value == before[name][e_lo - 1], (name, e_lo)
        hi_moved += (before[name][e_hi - 1] >> 32) != (before[name][e_lo - 1] >> 32)
    assert hi_moved >= 10   # without the snapshot these pairs would have been torn


def test_accelerator_counters_count_cycles(tiny, rng):
    dut, R, rmap = tiny
    cyc = dut.fields.cycles.count
    byt = dut.fields.bytes_read.count
    assert len(byt.inc) == TINY.beat_bytes.bit_length()
    mon = Monitor(dut.bus, clear=cyc.clear, bytes=byt.value)
    reads = []

    async def main(ctx):
        ctx.set(cyc.inc, 1)
        ctx.set(byt.inc, TINY.beat_bytes)
        for _ in range(3):
            await ctx.tick()
        ctx.set(cyc.clear, 1)
        ctx.set(byt.clear, 1)
        await ctx.tick()
        ctx.set(cyc.clear, 0)
        ctx.set(byt.clear, 0)
        for _ in range(3):
            lo, _ = await axil_read(ctx, dut.bus, R.CYCLES_LO_OFFSET, rng=rng)
            hi, _ = await axil_read(ctx, dut.bus, R.CYCLES_HI_OFFSET, rng=rng)
            reads.append(("cycles", hi << 32 | lo))
        reads.append(("bytes", (await axil_read(ctx, dut.bus, R.BYTES_READ_LO_OFFSET))[0]))

    simulate(dut, main, mon)
    [cleared] = mon.edges("clear")       # count is 0 after this edge, +1 (+beat) per edge
    lo_edges = [e for e in mon.edges("ar") if mon.log[e - 1]["araddr"] in
                (R.CYCLES_LO_OFFSET, R.BYTES_READ_LO_OFFSET)]
    assert [v for _, v in reads] == [
        (TINY.beat_bytes if name == "bytes" else 1) * (e - 1 - cleared)
        for (name, _), e in zip(reads, lo_edges)]
    assert [e["bytes"] for e in mon.log[cleared:]] == [
        TINY.beat_bytes * i for i in range(len(mon.log) - cleared)]


# -- Verilog -------------------------------------------------------------------------------------

def test_csrbank_verilog_lints_clean():
    lint_mod = pytest.importorskip("ilmpq.firmware.sim.verilator.lint")
    try:
        lint_mod.verilator_path()
    except lint_mod.VerilatorNotFound as e:
        pytest.skip(str(e))
    text = verilog.convert(CSRBank(accelerator_regmap(get_config("z020"))), name="csr_bank")
    result = lint_mod.lint(text, "csr_bank")
    assert result.clean, result.output
    # the flattened ports carry the map's names
    for port in ("fields__ctrl__start", "fields__status__done__set",
                 "fields__cycles__count__inc", "bus__awaddr"):
        assert re.search(rf"\b(input|output)\b.*\b{port}\b", text), port


# -- descriptions --------------------------------------------------------------------------------

@pytest.mark.parametrize("make,message", [
    (lambda: Field("Bad", 1, Access.RW), r"^field name 'Bad' is not allowed: names must match"),
    (lambda: Field("class", 1, Access.RW), r"^field name 'class' is not allowed"),
    (lambda: Field("x", 0, Access.RW), r"^field 'x': width = 0 is out of range: it must be in "
                                       r"\[1, 32\]$"),
    (lambda: Field("x", 4, Access.RW, reset=16),
     r"^field 'x': reset = 16 is out of range: it must be in \[0, 15\]$"),
    (lambda: Field("x", 4, Access.RO, reset=1), r"^field 'x': a RO field has no reset value"),
    (lambda: Field("x", 4, Access.RW, inc_width=1), r"inc_width is only allowed on COUNTER"),
    (lambda: Field("x", 4, Access.RO, enum=ErrorCode),
     r"^field 'x': enum ErrorCode needs 7 bits but the field is 4 bits wide$"),
    (lambda: Field.counter("c", inc_width=33), r"inc_width = 33 is out of range"),
    (lambda: Register("r", 2, [Field("x", 1, Access.RW)]),
     r"^register 'r': offset 2 must be a non-negative multiple of 4$"),
    (lambda: Register("r", 0, [Field("x", 8, Access.RW), Field("y", 8, Access.RW, lsb=4)]),
     r"^register 'r': field 'y' overlaps another field$"),
    (lambda: Register("r", 0, [Field("x", 30, Access.RW), Field("y", 4, Access.RW)]),
     r"^register 'r': field 'y' at bits \[33:30\] does not fit in 32 bits$"),
    (lambda: Register("r", 0, [Field("x", 1, Access.RW), Field("x", 1, Access.RO)]),
     r"^register 'r': field name 'x' is used twice$"),
    (lambda: Register("r", 0, [Field.counter("c"), Field("x", 1, Access.RW)]),
     r"^register 'r': a COUNTER field must be the only field of its register$"),
    (lambda: RegisterMap("m", [Register("a", 0, [Field.counter("c")]),
                               Register("b", 4, [Field("x", 1, Access.RW)])]),
     r"^registers 'a' and 'b' overlap at offset 0x4$"),
    (lambda: RegisterMap("m", [Register("a", 0, [Field("x", 1, Access.RW)]),
                               Register("a", 4, [Field("x", 1, Access.RW)])]),
     r"^register name 'a' is used twice$"),
    (lambda: RegisterMap("m", [Register("a", 0x100, [Field("x", 1, Access.RW)])],
                         addr_width=8),
     r"^register 'a' at offset 0x100 does not fit the 256-byte window of a 8-bit address$"),
    (lambda: RegisterMap("m", [Register("c", 0, [Field.counter("n")]),
                               Register("c_lo", 8, [Field("x", 1, Access.RW)])]),
     r"^word name 'c_lo' of register 'c' clashes with another register$"),
    (lambda: RegisterMap("m", [Register("ctrl", 0, [Field("x", 1, Access.RW)])],
                         constants=[Constant("ctrl_offset", 1)]),
     r"^generated symbol CTRL_OFFSET of register ctrl clashes with constant ctrl_offset$"),
])
def test_description_errors(make, message):
    with pytest.raises(RegisterMapError, match=message):
        make()


def test_field_placement_encode_decode():
    reg = Register("r", 0x10, [Field("a", 3, Access.RW, reset=5), Field("b", 1, Access.W1P),
                               Field("c", 8, Access.RO, lsb=16, enum=ErrorCode)])
    assert [(f.name, f.lsb, f.mask) for f in reg.fields] == [
        ("a", 0, 0b111), ("b", 3, 0b1000), ("c", 16, 0xFF << 16)]
    assert reg.reset == 5 and reg.host_writable
    assert reg.encode(0xFFFF_FFFF, a=0) == 0xFFFF_FFF8
    assert reg.encode(c=ErrorCode.TIMEOUT, b=1) == 0x40_0008
    assert reg.decode(0x40_000D) == {"a": 5, "b": 1, "c": ErrorCode.TIMEOUT}
    assert reg.decode(0x7F_0000)["c"] == 0x7F    # undefined code stays an int
    with pytest.raises(RegisterMapError, match=r"^field r.a = 8 is out of range: it must be "
                                               r"in \[0, 7\]$"):
        reg.encode(a=8)
    with pytest.raises(RegisterMapError, match=r"^register 'r' has no field 'd'; its fields "
                                               r"are: a, b, c$"):
        reg.encode(d=1)
    with pytest.raises(RegisterMapError, match=r"value = -1 is out of range"):
        reg.decode(-1)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_csrbank_arguments():
    with pytest.raises(IlmpqTypeError, match=r"^CSRBank needs a RegisterMap or an iterable"):
        CSRBank(Register("a", 0, [Field("x", 1, Access.RW)]))
    with pytest.raises(RegisterMapError, match=r"^CSRBank addr_width = 8 is out of range: it "
                                               r"must be in \[12, 32\]$"):
        CSRBank(accelerator_regmap(TINY), addr_width=8)
    bank = CSRBank([Register("a", 0, [Field("x", 1, Access.RW)])], addr_width=4)
    assert bank.regmap.name == "csr" and bank.bus.signature.addr_width == 4
    Fragment.get(bank, None)        # elaborates with a 4-bit address
    # a register with only CONST fields has no port
    bank = CSRBank(accelerator_regmap(TINY))
    assert not hasattr(bank.fields, "id") and hasattr(bank.fields, "status")
    Fragment.get(bank, None)


def test_write_only_key_is_cleared_by_a_hard_reset(tiny, rng):
    """The MAC key (WO) and the MAC enable hold their values until the clock domain's reset,
    which clears them (reads return 0 throughout)."""
    bank, R, rmap = tiny
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.bank = bank
    bus = AXILiteManager(bank.bus, rng=rng, max_delay=2)
    keys = [f"mac_key{i}" for i in range(4)]

    async def main(ctx):
        for i, name in enumerate(keys):
            assert await bus.write(ctx, rmap.offset(name), 0xA5A5_0000 + i) == OKAY
        assert await bus.write(ctx, rmap.offset("mac_ctrl"), 1) == OKAY
        assert [ctx.get(getattr(bank.fields, n).key) for n in keys] == [
            0xA5A5_0000 + i for i in range(4)]
        assert ctx.get(bank.fields.mac_ctrl.enable) == 1
        for name in keys:
            assert await bus.read(ctx, rmap.offset(name)) == (0, OKAY)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        await ctx.tick()
        assert [ctx.get(getattr(bank.fields, n).key) for n in keys] == [0] * 4
        assert ctx.get(bank.fields.mac_ctrl.enable) == 0

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    sim.run()
