"""The simulated AXI memory (tests/models/axi_mem.py) and the protocol checker
(tests/models/axi_checker.py), driven by hand-written AXI managers."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from ilmpq.hdl.axi import AXI4Signature, AXIBurst, AXIResp
from models.axi_checker import AXIChecker
from models.axi_mem import AXIMemory, AXIProtocolError

BASE = 0x8000_0000
SIZE = 16 * 1024
BB = 8


class Rig:
    """A bare AXI4 port driven by testbenches, a memory model, a checker and a recorder."""

    def __init__(self, *, checker=True, memory=True, **mem_kw):
        self.bus = AXI4Signature(data_width=64, id_width=4).create()
        m = Module()
        m.domains.sync = ClockDomain()
        self.sim = Simulator(m)
        self.sim.add_clock(1e-8)
        self.mem = None
        if memory:
            self.mem = AXIMemory(self.bus, base=BASE, size=SIZE, **mem_kw)
            self.mem.data[:] = np.arange(SIZE, dtype=np.uint32).astype(np.uint8) ^ 0x5A
            self.mem.add_to(self.sim)
        self.chk = AXIChecker(self.bus) if checker else None
        if checker:
            self.chk.add_to(self.sim)
        self.events = []            # (channel, edge, fields) of every handshake
        self.sim.add_testbench(self._record, background=True)

    async def _record(self, ctx):
        b = self.bus
        names = ["arvalid", "arready", "arid", "awvalid", "awready", "wvalid", "wready",
                 "rvalid", "rready", "rid", "rdata", "rresp", "rlast",
                 "bvalid", "bready", "bid", "bresp"]
        edge = 0
        async for _, _, *vals in ctx.tick().sample(*(getattr(b, n) for n in names)):
            v = dict(zip(names, vals))
            if v["arvalid"] and v["arready"]:
                self.events.append(("AR", edge, v["arid"]))
            if v["awvalid"] and v["awready"]:
                self.events.append(("AW", edge, None))
            if v["wvalid"] and v["wready"]:
                self.events.append(("W", edge, None))
            if v["rvalid"] and v["rready"]:
                self.events.append(("R", edge, (v["rid"], v["rdata"], v["rresp"], v["rlast"])))
            if v["bvalid"] and v["bready"]:
                self.events.append(("B", edge, (v["bid"], v["bresp"])))
            edge += 1

    def edges(self, ch):
        return [e for c, e, _ in self.events if c == ch]

    def fields(self, ch):
        return [f for c, _, f in self.events if c == ch]

    def run(self, *tbs):
        for tb in tbs:
            self.sim.add_testbench(tb)
        self.sim.run()


async def put(ctx, bus, ch, **fields):
    """One handshake on AR, AW or W (valid held until ready); returns nothing."""
    for k, v in fields.items():
        ctx.set(getattr(bus, ch + k), v)
    ctx.set(getattr(bus, ch + "valid"), 1)
    while True:
        _, _, ready = await ctx.tick().sample(getattr(bus, ch + "ready"))
        if ready:
            break
    ctx.set(getattr(bus, ch + "valid"), 0)


def ar(addr, beats, id=0):
    return dict(id=id, addr=addr, len=beats - 1, size=3, burst=AXIBurst.INCR)


def mem_beat(mem, addr):
    return int.from_bytes(mem.read(addr, BB), "little")


# -- deterministic timing (docs/memory_model.md) -------------------------------------------------

def test_read_timing_back_to_back_and_stalls():
    """AR at t -> first beat at t + 8; the next burst's first beat right after the previous
    last beat (max(t + RL, e + 1)); with rready low the beat is held (the checker verifies it is
    stable); rid echoes arid, rlast on the last beat, data from memory."""
    r = Rig()
    bus = r.bus

    async def tb(ctx):
        ctx.set(bus.rready, 1)
        await put(ctx, bus, "ar", **ar(BASE + 0x100, 4, id=3))     # edge 0
        await put(ctx, bus, "ar", **ar(BASE + 0x200, 2, id=5))     # edge 1
        for _ in range(20):
            await ctx.tick()
        await put(ctx, bus, "ar", **ar(BASE + 0x300, 3, id=1))     # edge 22
        for _ in range(6):
            await ctx.tick()
        ctx.set(bus.rready, 0)                      # beat 0 (valid from 30) held until 32
        for _ in range(3):
            await ctx.tick()
        ctx.set(bus.rready, 1)
        for _ in range(10):
            await ctx.tick()

    r.run(tb)
    assert r.edges("AR") == [0, 1, 22]
    assert r.edges("R") == [8, 9, 10, 11, 12, 13, 32, 33, 34]
    got = r.fields("R")
    addrs = [BASE + 0x100 + BB * k for k in range(4)] + [BASE + 0x200, BASE + 0x208] + [
        BASE + 0x300 + BB * k for k in range(3)]
    assert [d for _, d, _, _ in got] == [mem_beat(r.mem, a) for a in addrs]
    assert [i for i, *_ in got] == [3] * 4 + [5] * 2 + [1] * 3
    assert [last for *_, last in got] == [0, 0, 0, 1, 0, 1, 0, 0, 1]
    assert all(resp == AXIResp.OKAY for _, _, resp, _ in got)
    assert (r.mem.read_bursts, r.mem.read_beats) == (3, 9)
    assert [(t.accepted, t.completed) for t in r.mem.log] == [(0, 11), (1, 13), (22, 34)]


def test_read_queue_limit():
    """arready is low while Q bursts are accepted and not fully returned; it rises on the edge
    after the last beat of the oldest one."""
    r = Rig(queue=3)
    bus = r.bus

    async def tb(ctx):
        for k in range(4):
            await put(ctx, bus, "ar", **ar(BASE + 64 * k, 2))
        ctx.set(bus.rready, 1)

    async def rx(ctx):
        for _ in range(40):
            await ctx.tick()
        ctx.set(bus.rready, 1)
        for _ in range(30):
            await ctx.tick()

    r.run(tb, rx)
    # bursts 0..2 at edges 0..2, burst 0 returns at 40, 41 (rready raised before edge 40)
    assert r.edges("AR") == [0, 1, 2, 42]
    assert r.edges("R")[:2] == [40, 41]


def test_write_timing_strobes_and_read_after_write():
    """W is not accepted before its AW; B comes WL = 4 edges after the last W beat, the next B
    not before the edge after the previous one; wstrb is honoured; a read after the B sees the
    new data."""
    r = Rig()
    bus = r.bus
    addr = BASE + 0x1000
    before = r.mem.read(addr, 4 * BB)

    async def aw_tb(ctx):
        for _ in range(3):
            await ctx.tick()
        await put(ctx, bus, "aw", id=2, addr=addr, len=1, size=3, burst=AXIBurst.INCR)  # 3
        await put(ctx, bus, "aw", id=7, addr=addr + 16, len=1, size=3, burst=AXIBurst.INCR)

    async def w_tb(ctx):
        ctx.set(bus.bready, 1)
        # data offered from edge 0, before the address
        await put(ctx, bus, "w", data=0x1111_2222_3333_4444, strb=0xFF, last=0)
        await put(ctx, bus, "w", data=0xAAAA_BBBB_CCCC_DDDD, strb=0x0F, last=1)
        await put(ctx, bus, "w", data=0x0102_0304_0506_0708, strb=0x80, last=0)
        await put(ctx, bus, "w", data=0x0, strb=0x00, last=1)
        for _ in range(12):
            await ctx.tick()
        ctx.set(bus.rready, 1)
        await put(ctx, bus, "ar", **ar(addr, 4))
        for _ in range(15):
            await ctx.tick()

    r.run(aw_tb, w_tb)
    assert r.edges("AW") == [3, 4]
    assert r.edges("W") == [4, 5, 6, 7]
    assert r.edges("B") == [9, 11]
    assert r.fields("B") == [(2, AXIResp.OKAY), (7, AXIResp.OKAY)]
    exp = bytearray(before)
    exp[0:8] = (0x1111_2222_3333_4444).to_bytes(8, "little")
    exp[8:12] = (0xAAAA_BBBB_CCCC_DDDD).to_bytes(8, "little")[:4]
    exp[23] = 0x01
    assert r.mem.read(addr, 4 * BB) == bytes(exp)
    assert [d for _, d, _, _ in r.fields("R")] == [
        int.from_bytes(exp[k:k + 8], "little") for k in range(0, 32, 8)]
    assert (r.mem.write_bursts, r.mem.write_beats) == (2, 4)


def test_b_responses_spaced_by_one():
    """Three one-beat bursts, W at 3, 4, 5 (B ready at 7, 8, 9) but bready low until edge 9:
    B at 9, then max(t + WL, b + 1) gives 10 and 11."""
    r = Rig()
    bus = r.bus

    async def tb(ctx):
        for k in range(3):
            await put(ctx, bus, "aw", id=0, addr=BASE + 8 * k, len=0, size=3,
                      burst=AXIBurst.INCR)
        for k in range(3):
            await put(ctx, bus, "w", data=k + 1, strb=0xFF, last=1)
        for _ in range(10):
            await ctx.tick()

    async def stall_b(ctx):
        for _ in range(9):
            await ctx.tick()
        ctx.set(bus.bready, 1)

    r.run(tb, stall_b)
    assert r.edges("AW") == [0, 1, 2]
    assert r.edges("W") == [3, 4, 5]
    assert r.edges("B") == [9, 10, 11]
    assert [(t.accepted, t.w_last, t.completed) for t in r.mem.log] == [
        (0, 3, 9), (1, 4, 10), (2, 5, 11)]


# -- error injection ----------------------------------------------------------------------------

def test_error_injection():
    """Read burst 1 returns SLVERR on all beats with zero data; write burst 0 gets DECERR and
    does not change the memory; the others are normal."""
    r = Rig(errors={("r", 1): "SLVERR", ("w", 0): AXIResp.DECERR})
    bus = r.bus
    before = r.mem.data.copy()

    async def tb(ctx):
        ctx.set(bus.rready, 1)
        ctx.set(bus.bready, 1)
        for k in range(3):
            await put(ctx, bus, "ar", **ar(BASE + 32 * k, 2))
        for k in range(2):
            await put(ctx, bus, "aw", id=0, addr=BASE + 0x800 + 8 * k, len=0, size=3,
                      burst=AXIBurst.INCR)
            await put(ctx, bus, "w", data=0xDEAD_BEEF, strb=0xFF, last=1)
        for _ in range(20):
            await ctx.tick()

    r.run(tb)
    got = r.fields("R")
    assert [resp for _, _, resp, _ in got] == [0, 0, 2, 2, 0, 0]
    assert [d for _, d, _, _ in got][2:4] == [0, 0]
    assert [d for _, d, _, _ in got][4] == int.from_bytes(before[64:72].tobytes(), "little")
    assert r.fields("B") == [(0, AXIResp.DECERR), (0, AXIResp.OKAY)]
    assert r.mem.read(BASE + 0x800, 8) == before[0x800:0x808].tobytes()
    assert r.mem.read(BASE + 0x808, 8) == (0xDEAD_BEEF).to_bytes(8, "little")
    assert [(t.kind, t.index, t.resp) for t in r.mem.log] == [
        ("r", 0, AXIResp.OKAY), ("r", 1, AXIResp.SLVERR), ("r", 2, AXIResp.OKAY),
        ("w", 0, AXIResp.DECERR), ("w", 1, AXIResp.OKAY)]


# -- protocol checks of the model ---------------------------------------------------------------

def _violate(kind, bus):
    """A testbench breaking one rule (the memory with queue 1 keeps arready low after one AR)."""
    async def tb(ctx):
        if kind == "len":
            await put(ctx, bus, "ar", **ar(BASE, 17))
        elif kind == "fixed":
            await put(ctx, bus, "ar", **{**ar(BASE, 2), "burst": AXIBurst.FIXED})
        elif kind == "size":
            await put(ctx, bus, "ar", **{**ar(BASE, 2), "size": 2})
        elif kind == "4k":
            await put(ctx, bus, "ar", **ar(BASE + 4096 - 8, 2))
        elif kind == "outside":
            await put(ctx, bus, "ar", **ar(BASE + SIZE, 2))
        elif kind in ("drop", "change"):
            await put(ctx, bus, "ar", **ar(BASE, 2))                 # fills the queue of 1
            ctx.set(bus.araddr, BASE + 64)
            ctx.set(bus.arvalid, 1)
            await ctx.tick()
            if kind == "drop":
                ctx.set(bus.arvalid, 0)
            else:
                ctx.set(bus.araddr, BASE + 128)
        elif kind in ("wlast_early", "wlast_missing"):
            await put(ctx, bus, "aw", id=0, addr=BASE, len=1, size=3, burst=AXIBurst.INCR)
            await put(ctx, bus, "w", data=0, strb=0xFF, last=int(kind == "wlast_early"))
            await put(ctx, bus, "w", data=0, strb=0xFF, last=0)
        for _ in range(4):
            await ctx.tick()
    return tb


VIOLATIONS = {
    "len": r"AR channel at cycle 0: arlen \+ 1 = 17 > 16",
    "fixed": r"AR channel at cycle 0: burst type 0 is not INCR",
    "size": r"arsize = 2 is not the bus width \(3\)",
    "4k": r"burst \[0x80000ff8, 0x80001008\) crosses a 4 KiB boundary",
    "outside": r"\[0x80004000, 0x80004010\) outside the memory \[0x80000000, 0x80004000\)",
    "drop": r"AR channel at cycle 2: arvalid dropped before arready",
    "change": r"AR channel at cycle 2: payload changed while valid and not ready",
    "wlast_early": r"W channel at cycle 1: wlast = 1 on beat 0 of a 2-beat burst",
    "wlast_missing": r"W channel at cycle 2: wlast = 0 on beat 1 of a 2-beat burst",
}


@pytest.mark.parametrize("kind", VIOLATIONS)
def test_memory_detects_protocol_violations(kind):
    """Each broken rule raises AXIProtocolError naming the rule, the channel and the cycle."""
    message = VIOLATIONS[kind]
    r = Rig(checker=False, queue=1)
    with pytest.raises(AXIProtocolError, match=message):
        r.run(_violate(kind, r.bus))


def test_checker_detects_the_same_violations():
    """The passive checker, with a memory that does not check (here: none at all, the testbench
    acts as subordinate), reports a manager's bad burst and a missing wlast."""
    for kind, message in [("len", r"arlen \+ 1 = 17 > max_burst 16"),
                          ("4k", r"crosses a 4 KiB boundary"),
                          ("wlast_missing", r"no wlast on beat 1, the last of a 2-beat burst")]:
        r = Rig(memory=False)
        bus = r.bus

        async def sub(ctx):
            ctx.set(bus.arready, 1)
            ctx.set(bus.awready, 1)
            ctx.set(bus.wready, 1)

        with pytest.raises(AXIProtocolError, match=message):
            r.run(sub, _violate(kind, bus))


def test_checker_checks_responses_and_window():
    """R beats must match an outstanding AR of their ID with rlast at the end; B must follow the
    last W beat; bursts outside the window and too many reads in flight are reported."""
    def run(script, **kw):
        r = Rig(memory=False, **{})
        r.chk.window = kw.get("window")
        r.chk.max_reads_outstanding = kw.get("max_reads")
        bus = r.bus

        async def tb(ctx):
            ctx.set(bus.arready, 1)
            ctx.set(bus.awready, 1)
            ctx.set(bus.wready, 1)
            ctx.set(bus.rready, 1)
            ctx.set(bus.bready, 1)
            await script(ctx, bus)
            for _ in range(3):
                await ctx.tick()
        r.run(tb)
        return r

    async def stray_r(ctx, bus):
        await put(ctx, bus, "ar", **ar(BASE, 2, id=1))
        ctx.set(bus.rid, 2)
        ctx.set(bus.rvalid, 1)
        await ctx.tick()

    async def early_rlast(ctx, bus):
        await put(ctx, bus, "ar", **ar(BASE, 2, id=1))
        ctx.set(bus.rid, 1)
        ctx.set(bus.rlast, 1)
        ctx.set(bus.rvalid, 1)
        await ctx.tick()

    async def early_b(ctx, bus):
        await put(ctx, bus, "aw", id=0, addr=BASE, len=1, size=3, burst=AXIBurst.INCR)
        ctx.set(bus.bvalid, 1)
        await ctx.tick()

    async def two_reads(ctx, bus):
        await put(ctx, bus, "ar", **ar(BASE, 2))
        await put(ctx, bus, "ar", **ar(BASE + 16, 2))

    async def ok_w_before_aw(ctx, bus):
        await put(ctx, bus, "w", data=1, strb=0xFF, last=0)
        await put(ctx, bus, "w", data=2, strb=0xFF, last=1)
        await put(ctx, bus, "aw", id=0, addr=BASE, len=1, size=3, burst=AXIBurst.INCR)
        ctx.set(bus.bvalid, 1)
        await ctx.tick()
        ctx.set(bus.bvalid, 0)

    with pytest.raises(AXIProtocolError, match=r"R channel .*RID 2 but no read burst"):
        run(stray_r)
    with pytest.raises(AXIProtocolError, match=r"rlast = 1 on beat 0 of the 2-beat burst"):
        run(early_rlast)
    with pytest.raises(AXIProtocolError, match=r"B response for the burst at 0x80000000 \(BID "
                                               r"0\) before its last W beat"):
        run(early_b)
    with pytest.raises(AXIProtocolError, match=r"2 read bursts in flight > 1"):
        run(two_reads, max_reads=1)
    with pytest.raises(AXIProtocolError, match=r"outside the window \[0x80000000, 0x8000000c"):
        run(two_reads, window=(BASE, BASE + 12))
    r = run(ok_w_before_aw)
    assert (r.chk.w_beats, r.chk.b_responses, r.chk.outstanding) == (2, 1, 0)


# -- random mode --------------------------------------------------------------------------------

def test_random_mode_reorders_across_ids_only(rng):
    """Random mode with reorder: ready gaps on AR, data correct, every ID's bursts in order,
    bursts of different IDs returned out of acceptance order; the same seed gives the same
    trace."""
    def trace(seed):
        r = Rig(mode="random", rng=seed, reorder=True, stall=0.4)
        bus = r.bus
        bursts = [(BASE + 128 * k, 1 + k % 4, k % 3) for k in range(12)]

        async def tb(ctx):
            for addr, n, i in bursts:
                await put(ctx, bus, "ar", **ar(addr, n, id=i))

        async def rx(ctx):
            local = np.random.default_rng(seed)
            for _ in range(400):
                ctx.set(bus.rready, int(local.random() < 0.7))
                await ctx.tick()

        r.run(tb, rx)
        return r, bursts

    seed = int(rng.integers(2**31))
    r, bursts = trace(seed)
    got = r.fields("R")
    assert len(got) == sum(n for _, n, _ in bursts)
    for i in range(3):
        mine = [(a, n) for a, n, j in bursts if j == i]
        exp = [mem_beat(r.mem, a + BB * k) for a, n in mine for k in range(n)]
        assert [d for j, d, _, _ in got if j == i] == exp, f"ID {i} out of order"
    served = sorted(r.mem.transactions("r"), key=lambda t: t.completed)
    assert [t.index for t in served] != sorted(t.index for t in served), "never reordered"
    ar_edges = r.edges("AR")
    assert ar_edges[-1] > len(bursts) - 1, "no arready gaps"
    r2, _ = trace(seed)
    assert r2.events == r.events


def test_constructor_validation():
    bus = AXI4Signature().create()
    with pytest.raises(ValueError, match="mode must be 'deterministic' or 'random'"):
        AXIMemory(bus, size=64, mode="fast")
    with pytest.raises(ValueError, match="needs rng="):
        AXIMemory(bus, size=64, mode="random")
    with pytest.raises(ValueError, match="exactly one of size=, data= or share="):
        AXIMemory(bus)
    with pytest.raises(ValueError, match="injects SLVERR or DECERR"):
        AXIMemory(bus, size=64, errors={("r", 0): AXIResp.OKAY})
    with pytest.raises(ValueError, match="rng= or seed=, not both"):
        AXIMemory(bus, size=64, mode="random", rng=1, seed=1)
    assert AXIMemory(bus, size=64, mode="random", seed=3).rng.integers(100) == \
        np.random.default_rng(3).integers(100)
    mem = AXIMemory(bus, base=0x100, data=bytes(range(16)))
    assert mem.read(0x104, 4) == bytes([4, 5, 6, 7])
    with pytest.raises(ValueError, match=r"\[0x10c, 0x114\) is outside the memory"):
        mem.read(0x10C, 8)


# -- several ports sharing one memory -----------------------------------------------------------

def test_ports_share_the_memory_with_their_own_timing_and_errors():
    """memory_ports: two ports, one byte array. A write on port 0 is read back on port 1 after
    its B; each port has its own read latency timeline, burst indices, error injection and log;
    the checker on each port sees a clean protocol."""
    from models.axi_mem import memory_ports
    buses = [AXI4Signature(data_width=64, id_width=4).create() for _ in range(2)]
    m = Module()
    m.domains.sync = ClockDomain()
    sim = Simulator(m)
    sim.add_clock(1e-8)
    mems = memory_ports(buses, base=BASE, size=SIZE, read_latency=12,
                        errors={1: {("r", 1): "DECERR"}})
    assert mems[1].data is mems[0].data and mems[1].base == BASE
    assert [x.name for x in mems] == ["axi_mem", "axi_mem1"] and mems[0].errors == {}
    chks = [AXIChecker(b) for b in buses]
    for x, c in zip(mems, chks):
        x.add_to(sim)
        c.add_to(sim)
    got = []

    async def tb(ctx):
        b0, b1 = buses
        ctx.set(b0.bready, 1)
        ctx.set(b1.rready, 1)
        await put(ctx, b0, "aw", id=0, addr=BASE + 0x40, len=1, size=3, burst=AXIBurst.INCR)
        await put(ctx, b0, "w", data=0x1122_3344_5566_7788, strb=0xFF, last=0)
        await put(ctx, b0, "w", data=0x99AA_BBCC_DDEE_FF00, strb=0xFF, last=1)
        ctx.set(b0.wvalid, 0)
        for _ in range(10):
            await ctx.tick()
        t0 = mems[1].cycle
        await put(ctx, b1, "ar", **ar(BASE + 0x40, 2, id=2))
        await put(ctx, b1, "ar", **ar(BASE + 0x80, 1, id=2))
        for _ in range(40):
            _, _, v, d, resp = await ctx.tick().sample(b1.rvalid, b1.rdata, b1.rresp)
            if v:
                got.append((mems[1].cycle - 1 - t0, d, resp))

    sim.add_testbench(tb)
    sim.run()
    assert [(d, r) for _, d, r in got] == [(0x1122_3344_5566_7788, 0), (0x99AA_BBCC_DDEE_FF00, 0),
                                          (0, AXIResp.DECERR)]
    assert got[0][0] == 12                      # RL of port 1, counted from its AR
    assert [t.kind for t in mems[0].log] == ["w"] and [t.kind for t in mems[1].log] == ["r", "r"]
    assert mems[1].log[1].resp == AXIResp.DECERR
    assert all(c.outstanding == 0 for c in chks)
    with pytest.raises(ValueError, match="errors for ports \\[2\\]"):
        memory_ports(buses, base=BASE, size=SIZE, errors={2: {}})
    with pytest.raises(ValueError, match="read_latency must be an integer >= 1"):
        AXIMemory(buses[0], base=BASE, size=SIZE, read_latency=0)
