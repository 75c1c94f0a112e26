"""The Zynq SoC side: AXI3 adapters (simulated), ZynqFabric, ZynqSoC elaboration, lint.

The AXI3 bus models here are independent of the adapters: burst beat addresses come from the
AXI specification's formulas (:func:`burst_addrs`), memories are plain Python lists, and every
channel is driven with random valid delays and random readies.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from ilmpq.golden.errors import IlmpqError
from ilmpq.hdl.axi import AXI4LiteSignature, AXI4Signature, AXIBurst, AXIResp
from ilmpq.hdl.config import get_config
from ilmpq.hdl.csr import CSRBank
from ilmpq.hdl.regmap import CSR_ADDR_WIDTH, ID_MAGIC, accelerator_regmap
from ilmpq.hdl.soc import (GP0_BASE, AXI3Signature, AXI3ToAXI4Lite, AXI4ToAXI3, ZynqFabric,
                           ZynqSoC)

OKAY, SLVERR, DECERR = int(AXIResp.OKAY), int(AXIResp.SLVERR), int(AXIResp.DECERR)
FIXED, INCR, WRAP = int(AXIBurst.FIXED), int(AXIBurst.INCR), int(AXIBurst.WRAP)


def burst_addrs(addr: int, size: int, burst: int, length: int) -> list[int]:
    """Beat addresses of an AXI burst (AXI spec A3.4.1); ``length`` is AxLEN (beats - 1)."""
    n = 1 << size
    beats = length + 1
    aligned = addr // n * n
    if burst == FIXED:
        return [addr] * beats
    out = [addr]
    if burst == INCR:
        out += [aligned + i * n for i in range(1, beats)]
        return out
    total = n * beats
    lower = addr // total * total
    for i in range(1, beats):
        a = aligned + i * n
        if a >= lower + total:
            a -= total
        out.append(a)
    return out


def test_burst_addrs_reference():
    assert burst_addrs(0x1004, 2, INCR, 3) == [0x1004, 0x1008, 0x100C, 0x1010]
    assert burst_addrs(0x1001, 2, INCR, 1) == [0x1001, 0x1004]          # unaligned start
    assert burst_addrs(0x38, 2, WRAP, 3) == [0x38, 0x3C, 0x30, 0x34]   # 16-byte container
    assert burst_addrs(0x20, 0, FIXED, 2) == [0x20, 0x20, 0x20]


def _sim(dut, benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for b in background:
        sim.add_testbench(b, background=True)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


class _Stable:
    """Checks that a valid, once raised, stays up with a stable payload until its handshake."""

    def __init__(self, what: str):
        self.what = what
        self.pending = None

    def step(self, cycle: int, valid: int, ready: int, payload):
        if self.pending is not None:
            assert valid, f"{self.what}: VALID dropped at cycle {cycle} before the handshake"
            assert payload == self.pending, (
                f"{self.what}: payload changed at cycle {cycle} before the handshake "
                f"({self.pending} -> {payload})")
        self.pending = payload if valid and not ready else None


# ---- AXI4-Lite subordinate memory with random stalls ----------------------------------------

class LiteMemory:
    """AXI4-Lite subordinate: 1024 words, byte strobes, random readies and response delays.

    ``slverr(addr)`` says which word addresses answer SLVERR (writes change nothing there, reads
    return 0). ``log`` records each transaction in order: ``("w", addr, data, strb)`` /
    ``("r", addr)``. Checks the manager's valid/payload stability on AW, W and AR.
    """

    def __init__(self, bus, rng, *, slverr=lambda a: False, p_ready=0.5, max_latency=3):
        self.bus = bus
        self.rng = rng
        self.words = [int(x) for x in rng.integers(0, 2**32, 1024, dtype=np.uint64)]
        self.initial = list(self.words)
        self.slverr = slverr
        self.p_ready = p_ready
        self.max_latency = max_latency
        self.log = []

    def _rand(self):
        return int(self.rng.random() < self.p_ready)

    async def run(self, ctx):
        bus = self.bus
        aw = w = None                # accepted AW address, W (data, strb)
        b = None                     # [countdown, resp]
        ar = None                    # [countdown, addr]
        r = None                     # (data, resp) being offered
        chk = {n: _Stable(f"AXI4-Lite {n.upper()}") for n in ("aw", "w", "ar")}
        cycle = 0
        while True:
            ctx.set(bus.awready, int(aw is None and b is None and self._rand()))
            ctx.set(bus.wready, int(w is None and b is None and self._rand()))
            ctx.set(bus.arready, int(ar is None and r is None and self._rand()))
            b_valid = int(b is not None and b[0] == 0)
            r_valid = int(r is not None)
            ctx.set(bus.bvalid, b_valid)
            ctx.set(bus.bresp, b[1] if b_valid else 0)
            ctx.set(bus.rvalid, r_valid)
            ctx.set(bus.rdata, r[0] if r_valid else 0)
            ctx.set(bus.rresp, r[1] if r_valid else 0)
            (_, _, awv, awr, awaddr, wv, wr, wdata, wstrb, bready, arv, arr, araddr,
             rready) = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.awaddr, bus.wvalid, bus.wready, bus.wdata,
                bus.wstrb, bus.bready, bus.arvalid, bus.arready, bus.araddr, bus.rready)
            chk["aw"].step(cycle, awv, awr, awaddr)
            chk["w"].step(cycle, wv, wr, (wdata, wstrb))
            chk["ar"].step(cycle, arv, arr, araddr)
            if awv and awr:
                aw = awaddr
            if wv and wr:
                w = (wdata, wstrb)
            if b is not None:
                if b_valid and bready:
                    b = None
                elif b[0]:
                    b[0] -= 1
            if aw is not None and w is not None:
                self.log.append(("w", aw, w[0], w[1]))
                if self.slverr(aw):
                    resp = SLVERR
                else:
                    i = (aw >> 2) & 1023
                    mask = sum(0xFF << (8 * k) for k in range(4) if w[1] >> k & 1)
                    self.words[i] = (self.words[i] & ~mask) | (w[0] & mask)
                    resp = OKAY
                b = [int(self.rng.integers(0, self.max_latency + 1)), resp]
                aw = w = None
            if r is not None and r_valid and rready:
                r = None
            if ar is not None:
                if ar[0] == 0:
                    a = ar[1]
                    r = (0, SLVERR) if self.slverr(a) else (self.words[(a >> 2) & 1023], OKAY)
                    ar = None
                else:
                    ar[0] -= 1
            if arv and arr:
                self.log.append(("r", araddr))
                ar = [int(self.rng.integers(0, self.max_latency + 1)), araddr]
            cycle += 1


# ---- AXI3 manager (random valid delays, random readies) --------------------------------------

def _random_burst(rng, region: tuple[int, int], *, base: int):
    """A legal AXI3 burst (no 4 KiB crossing) with its start inside ``region`` (byte offsets
    in the window)."""
    lo, hi = region
    while True:
        kind = int(rng.choice([FIXED, INCR, INCR, WRAP]))
        size = int(rng.integers(0, 3))
        if kind == WRAP:
            length = int(rng.choice([1, 3, 7, 15]))
            n = 1 << size
            total = n * (length + 1)
            start = int(rng.integers(lo, hi)) // n * n
        else:
            length = int(rng.integers(0, 16))
            start = int(rng.integers(lo, hi))
        addrs = burst_addrs(start, size, kind, length)
        if all(lo <= a < hi for a in addrs) and (kind != WRAP or start % (1 << size) == 0):
            return base + start, size, kind, length


async def axi3_write_bursts(ctx, bus, bursts, rng, *, p=0.6, timeout=20000):
    """Issue write bursts ``(id, addr, size, burst, len, [(data, strb), ...])``; return the B
    responses ``[(bid, bresp), ...]`` in order. AW and W run independently (W may lead AW)."""
    aw_q = list(bursts)
    w_q = [(d, s, i == len(b[5]) - 1, b[0]) for b in bursts for i, (d, s) in enumerate(b[5])]
    w_sent = [0] * len(bursts)
    resps = []
    aw_chk = _Stable("AXI3 AW")
    w_chk = _Stable("AXI3 W")
    aw_wait = int(rng.integers(0, 3))
    aw_done = 0
    b_chk = _Stable("AXI3 B")
    w_burst = 0
    for cycle in range(timeout):
        if len(resps) == len(bursts):
            break
        aw_v = int(bool(aw_q) and (aw_chk.pending is not None or aw_wait == 0))
        if aw_q:
            bid, addr, size, kind, length, _ = aw_q[0]
            ctx.set(bus.awid, bid)
            ctx.set(bus.awaddr, addr)
            ctx.set(bus.awsize, size)
            ctx.set(bus.awburst, kind)
            ctx.set(bus.awlen, length)
            ctx.set(bus.awprot, 0b010)
        ctx.set(bus.awvalid, aw_v)
        w_v = int(bool(w_q) and (w_chk.pending is not None or rng.random() < p))
        if w_q:
            d, s, last, wid = w_q[0]
            ctx.set(bus.wdata, d)
            ctx.set(bus.wstrb, s)
            ctx.set(bus.wlast, int(last))
            ctx.set(bus.wid, wid)
        ctx.set(bus.wvalid, w_v)
        ctx.set(bus.bready, int(rng.random() < p))
        _, _, awr, wr, bv, br, bid_s, bresp = await ctx.tick().sample(
            bus.awready, bus.wready, bus.bvalid, bus.bready, bus.bid, bus.bresp)
        aw_chk.step(cycle, aw_v, awr, None)
        w_chk.step(cycle, w_v, wr, None)
        b_chk.step(cycle, bv, br, (bid_s, bresp))
        if aw_v and awr:
            aw_q.pop(0)
            aw_done += 1
            aw_wait = int(rng.integers(0, 3))
        elif aw_wait:
            aw_wait -= 1
        if w_v and wr:
            _, _, last, _ = w_q.pop(0)
            w_sent[w_burst] += 1
            if last:
                w_burst += 1
        if bv and br:
            k = len(resps)
            assert k < aw_done and w_sent[k] == len(bursts[k][5]) and k < w_burst, (
                f"B of write burst {k} at cycle {cycle} before its AW and all its W beats")
            resps.append((bid_s, bresp))
    else:
        raise AssertionError(f"writes did not finish in {timeout} cycles: {len(resps)} of "
                             f"{len(bursts)} B responses")
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    ctx.set(bus.bready, 0)
    return resps


async def axi3_read_bursts(ctx, bus, bursts, rng, *, p=0.6, timeout=20000):
    """Issue read bursts ``(id, addr, size, burst, len)``; return, per burst, the list of
    ``(rid, rdata, rresp)`` beats (RLAST checked against AxLEN)."""
    ar_q = list(bursts)
    out = [[] for _ in bursts]
    cur = 0
    ar_done = 0
    ar_chk = _Stable("AXI3 AR")
    r_chk = _Stable("AXI3 R")
    for cycle in range(timeout):
        if cur == len(bursts):
            break
        ar_v = int(bool(ar_q) and (ar_chk.pending is not None or rng.random() < p))
        if ar_q:
            rid, addr, size, kind, length = ar_q[0]
            ctx.set(bus.arid, rid)
            ctx.set(bus.araddr, addr)
            ctx.set(bus.arsize, size)
            ctx.set(bus.arburst, kind)
            ctx.set(bus.arlen, length)
            ctx.set(bus.arprot, 0)
        ctx.set(bus.arvalid, ar_v)
        ctx.set(bus.rready, int(rng.random() < p))
        _, _, arr, rv, rr, rid_s, rdata, rresp, rlast = await ctx.tick().sample(
            bus.arready, bus.rvalid, bus.rready, bus.rid, bus.rdata, bus.rresp, bus.rlast)
        ar_chk.step(cycle, ar_v, arr, None)
        r_chk.step(cycle, rv, rr, (rid_s, rdata, rresp, rlast))
        if ar_v and arr:
            ar_q.pop(0)
            ar_done += 1
        if rv and rr:
            assert cur < ar_done, f"R beat at cycle {cycle} before its AR handshake"
            out[cur].append((rid_s, rdata, rresp))
            expect_last = len(out[cur]) == bursts[cur][4] + 1
            assert rlast == expect_last, (
                f"read burst {cur}: RLAST={rlast} on beat {len(out[cur]) - 1} of "
                f"{bursts[cur][4] + 1}")
            if rlast:
                cur += 1
    else:
        raise AssertionError(f"reads did not finish in {timeout} cycles ({cur} of "
                             f"{len(bursts)} bursts)")
    ctx.set(bus.arvalid, 0)
    ctx.set(bus.rready, 0)
    return out


# ---- AXI3 -> AXI4-Lite bridge ----------------------------------------------------------------

def test_bridge_random_bursts_with_stalls(rng):
    """Concurrent random write and read bursts (INCR/WRAP/FIXED, narrow sizes, random strobes,
    in and out of the window, SLVERR beats) through the bridge to a stalling AXI4-Lite memory."""
    dut = AXI3ToAXI4Lite(id_width=12, addr_width=32, lite_addr_width=12, base=GP0_BASE)
    # SLVERR at words 0x3c0..0x3ff (writes) and 0x1c0..0x1ff (reads)
    mem = LiteMemory(dut.axil, rng, slverr=lambda a: (a & 0xFFF) >> 2 in range(0x3C0, 0x400)
                     or (a & 0xFFF) >> 2 in range(0x1C0, 0x200))
    wr_region, rd_region = (0x800, 0x1000), (0x000, 0x800)
    wbursts = []
    for k in range(28):
        addr, size, kind, length = _random_burst(rng, wr_region, base=GP0_BASE)
        if k % 9 == 4:      # outside the CSR window: DECERR, nothing reaches the subordinate
            addr += int(rng.choice([0x1000, 0x3000_0000, -0x1000 - 0x800]))
        beats = [(int(rng.integers(0, 2**32)), int(rng.integers(0, 16)))
                 for _ in range(length + 1)]
        wbursts.append((int(rng.integers(0, 4096)), addr, size, kind, length, beats))
    rbursts = []
    for k in range(28):
        addr, size, kind, length = _random_burst(rng, rd_region, base=GP0_BASE)
        if k % 9 == 7:
            addr += int(rng.choice([0x1000, 0x1000_0000]))
        rbursts.append((int(rng.integers(0, 4096)), addr, size, kind, length))
    got = {}

    async def writer(ctx):
        got["b"] = await axi3_write_bursts(ctx, dut.axi3, wbursts, rng)

    async def reader(ctx):
        got["r"] = await axi3_read_bursts(ctx, dut.axi3, rbursts, rng)

    _sim(dut, [writer, reader], background=[mem.run])

    def in_window(a):
        return GP0_BASE <= a < GP0_BASE + 0x1000

    # writes: B per burst; expected memory; the Lite transactions in beat order
    expect_words = list(mem.initial)
    expect_log_w = []
    for (bid, addr, size, kind, length, beats), (b_id, b_resp) in zip(wbursts, got["b"]):
        worst = OKAY
        for a, (d, s) in zip(burst_addrs(addr, size, kind, length), beats):
            if not in_window(a):
                worst = max(worst, DECERR)
                continue
            expect_log_w.append(("w", a & 0xFFF, d, s))
            if mem.slverr(a):
                worst = max(worst, SLVERR)
                continue
            i = (a & 0xFFF) >> 2
            mask = sum(0xFF << (8 * k) for k in range(4) if s >> k & 1)
            expect_words[i] = (expect_words[i] & ~mask) | (d & mask)
        assert (b_id, b_resp) == (bid, worst), f"write burst at {addr:#x}"
    assert [e for e in mem.log if e[0] == "w"] == expect_log_w
    assert mem.words == expect_words
    # reads: data per beat
    expect_log_r = []
    for (rid, addr, size, kind, length), beats in zip(rbursts, got["r"]):
        expect = []
        for a in burst_addrs(addr, size, kind, length):
            if not in_window(a):
                expect.append((rid, 0, DECERR))
            else:
                expect_log_r.append(("r", a & 0xFFF))
                expect.append((rid, 0, SLVERR) if mem.slverr(a)
                              else (rid, mem.initial[(a & 0xFFF) >> 2], OKAY))
        assert beats == expect, f"read burst at {addr:#x}"
    assert [e for e in mem.log if e[0] == "r"] == expect_log_r
    # the test did exercise every case
    resps = {r for _, r in got["b"]} | {b[2] for bs in got["r"] for b in bs}
    assert resps == {OKAY, SLVERR, DECERR}
    assert {b[3] for b in wbursts} == {FIXED, INCR, WRAP}


def test_bridge_without_base_ignores_upper_address_bits(rng):
    dut = AXI3ToAXI4Lite(id_width=4, lite_addr_width=12, base=None)
    mem = LiteMemory(dut.axil, rng, p_ready=1.0, max_latency=0)
    got = {}

    async def tb(ctx):
        got["b"] = await axi3_write_bursts(
            ctx, dut.axi3, [(3, 0x1234_5008, 2, INCR, 1, [(0xAABBCCDD, 0xF), (0x11, 0x1)])],
            rng, p=1.0)
        got["r"] = await axi3_read_bursts(ctx, dut.axi3, [(5, 0xFFFF_F008, 2, INCR, 1)],
                                          rng, p=1.0)

    _sim(dut, [tb], background=[mem.run])
    assert got["b"] == [(3, OKAY)]
    assert [b[1:] for b in got["r"][0]] == [(0xAABBCCDD, OKAY),
                                            ((mem.initial[3] & ~0xFF) | 0x11, OKAY)]
    assert [e[1] for e in mem.log] == [0x008, 0x00C, 0x008, 0x00C]


def test_bridge_in_front_of_the_csr_bank():
    """The bridge with the accelerator's real register bank: identification, a RW register,
    a counter LO/HI pair in one burst, an unmapped register, and exact latencies."""
    cfg = get_config("tiny")
    regmap = accelerator_regmap(cfg)

    class Top(wiring.Component):
        def __init__(self):
            super().__init__({"axi3": Out(AXI3Signature(data_width=32, id_width=12)).flip()})

        def elaborate(self, platform):
            m = Module()
            m.submodules.bridge = br = AXI3ToAXI4Lite(base=GP0_BASE)
            m.submodules.csr = csr = CSRBank(regmap)
            wiring.connect(m, wiring.flipped(self.axi3), br.axi3)
            wiring.connect(m, br.axil, csr.bus)
            return m

    dut = Top()
    off = regmap.offset
    got = {}

    async def tb(ctx):
        bus = dut.axi3
        # single read: cycles from the AR handshake to RVALID
        ctx.set(bus.araddr, GP0_BASE + off("id"))
        ctx.set(bus.arlen, 0)
        ctx.set(bus.arsize, 2)
        ctx.set(bus.arburst, INCR)
        ctx.set(bus.arid, 0x5A5)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        await ctx.tick().until(bus.arready)
        ctx.set(bus.arvalid, 0)
        n = 0
        while not ctx.get(bus.rvalid):
            await ctx.tick()
            n += 1
        got["read_latency"] = n
        got["id"] = (ctx.get(bus.rid), ctx.get(bus.rdata), ctx.get(bus.rresp),
                     ctx.get(bus.rlast))
        await ctx.tick()
        ctx.set(bus.rready, 0)
        # single write, AW and W together: cycles from the handshake to BVALID
        ctx.set(bus.awaddr, GP0_BASE + off("prog_addr"))
        ctx.set(bus.awlen, 0)
        ctx.set(bus.awsize, 2)
        ctx.set(bus.awburst, INCR)
        ctx.set(bus.awid, 0x123)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wdata, 0x1000_0040)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.wlast, 1)
        ctx.set(bus.bready, 1)
        await ctx.tick().until(bus.awready)
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 1)
        await ctx.tick().until(bus.wready)
        ctx.set(bus.wvalid, 0)
        n = 0
        while not ctx.get(bus.bvalid):
            await ctx.tick()
            n += 1
        got["write_latency"] = n
        got["b"] = (ctx.get(bus.bid), ctx.get(bus.bresp))
        await ctx.tick()
        ctx.set(bus.bready, 0)
        rng = np.random.default_rng(1)
        got["bursts"] = await axi3_read_bursts(ctx, bus, [
            (1, GP0_BASE + off("prog_addr"), 2, INCR, 0),
            (2, GP0_BASE + off("version"), 2, INCR, 1),          # VERSION, CONFIG_ID
            (3, GP0_BASE + off("cycles_lo"), 2, INCR, 1),        # counter LO then HI
            (4, GP0_BASE + 0xFFC, 2, INCR, 0),                   # unmapped: SLVERR
            (5, GP0_BASE + 0x1000, 2, INCR, 0),                  # outside the window: DECERR
        ], rng)

    _sim(dut, [tb])
    assert got["id"] == (0x5A5, ID_MAGIC, OKAY, 1)
    assert got["b"] == (0x123, OKAY)
    # documented in AXI3ToAXI4Lite: 2 cycles AR -> RVALID, 3 cycles W -> BVALID with CSRBank
    assert got["read_latency"] == 2
    assert got["write_latency"] == 3
    prog, ver, cnt, unmapped, outside = got["bursts"]
    assert prog == [(1, 0x1000_0040, OKAY)]
    assert ver[1] == (2, cfg.config_id, OKAY) and ver[0][2] == OKAY
    assert [b[2] for b in cnt] == [OKAY, OKAY]
    assert unmapped == [(4, 0, SLVERR)]
    assert outside == [(5, 0, DECERR)]


def test_bridge_rejects_bad_parameters():
    with pytest.raises(IlmpqError, match="multiple of the window size"):
        AXI3ToAXI4Lite(base=GP0_BASE + 0x800)
    with pytest.raises(IlmpqError, match="multiple of the window size"):
        AXI3ToAXI4Lite(base=-4096)
    with pytest.raises(IlmpqError, match="lite_addr_width"):
        AXI3ToAXI4Lite(lite_addr_width=40)


# ---- AXI4 -> AXI3 (HP port) adapter ----------------------------------------------------------

class AXI3Memory:
    """AXI3 subordinate for the HP adapter test: random readies, in-order B once a burst's AW
    and last W beat are in, R beats ``data = addr * 3 + 1`` per beat. Records every AW / W / AR
    handshake (the test compares them, and so WID against AWID, burst by burst) and checks that
    no W beat is forwarded before its burst's AW was presented (else WID could not be known)."""

    def __init__(self, bus, rng, *, p=0.6):
        self.bus = bus
        self.rng = rng
        self.p = p
        self.aw = []          # (id, addr, len, size, burst, lock, cache, prot)
        self.w = []           # (wid, data, strb, last)
        self.ar = []
        self.max_open_writes = 0

    async def run(self, ctx):
        bus = self.bus
        chk = {n: _Stable(f"AXI3 {n.upper()}") for n in ("aw", "w", "ar")}
        b_q = []              # [countdown, id]
        r_q = []              # [id, addr, beats left]
        b_sent = []
        w_burst = 0
        w_beats = 0
        cycle = 0
        while True:
            ctx.set(bus.awready, int(self.rng.random() < self.p))
            ctx.set(bus.wready, int(self.rng.random() < self.p))
            ctx.set(bus.arready, int(self.rng.random() < self.p))
            bv = int(bool(b_q) and b_q[0][0] == 0)
            ctx.set(bus.bvalid, bv)
            ctx.set(bus.bid, b_q[0][1] if bv else 0)
            ctx.set(bus.bresp, 0)
            rv = int(bool(r_q) and self.rng.random() < self.p)
            if rv:
                rid, addr, left = r_q[0]
                ctx.set(bus.rid, rid)
                ctx.set(bus.rdata, (addr * 3 + 1) & (2**64 - 1))
                ctx.set(bus.rlast, int(left == 1))
            ctx.set(bus.rvalid, rv)
            ctx.set(bus.rresp, 0)
            s = await ctx.tick().sample(
                bus.awvalid, bus.awready, bus.awid, bus.awaddr, bus.awlen, bus.awsize,
                bus.awburst, bus.awlock, bus.awcache, bus.awprot,
                bus.wvalid, bus.wready, bus.wid, bus.wdata, bus.wstrb, bus.wlast,
                bus.bready, bus.arvalid, bus.arready, bus.arid, bus.araddr, bus.arlen,
                bus.rready)
            (awv, awr, *awp), rest = s[2:12], s[12:]
            awp = tuple(awp)
            wv, wr, wid, wdata, wstrb, wlast, bready, arv, arr, arid, araddr, arlen, rready = rest
            chk["aw"].step(cycle, awv, awr, awp)
            chk["w"].step(cycle, wv, wr, (wid, wdata, wstrb, wlast))
            chk["ar"].step(cycle, arv, arr, (arid, araddr, arlen))
            if bv and bready:
                b_q.pop(0)
            for e in b_q:
                if e[0]:
                    e[0] -= 1
                    break
            if awv and awr:
                self.aw.append(awp)
            if wv and wr:
                # AXI3 lets W lead AW; the adapter only forwards W once the AW is presented
                presented = len(self.aw) + (0 if awv and awr else awv)
                assert w_burst < presented, (
                    f"W beat at cycle {cycle} of write burst {w_burst} before its AW was "
                    f"presented: its WID cannot be known")
                w_beats += 1
                self.w.append((wid, wdata, wstrb, wlast))
                if wlast:
                    w_burst += 1
                    w_beats = 0
            while len(b_sent) < min(w_burst, len(self.aw)):      # B after AW and last W
                b_q.append([int(self.rng.integers(0, 4)), self.aw[len(b_sent)][0]])
                b_sent.append(1)
            self.max_open_writes = max(self.max_open_writes, len(self.aw) - w_burst)
            if rv and rready:
                r_q[0][1] += 8
                r_q[0][2] -= 1
                if r_q[0][2] == 0:
                    r_q.pop(0)
            if arv and arr:
                self.ar.append((arid, araddr, arlen))
                r_q.append([arid, araddr, arlen + 1])
            cycle += 1


@pytest.mark.parametrize("depth", [1, 4])
def test_hp_adapter_bursts_wid_and_lock(rng, depth):
    """Random AXI4 write bursts (1..16 beats, random IDs, exclusive bits, W leading AW or
    lagging far behind it) and read bursts through the adapter to an AXI3 subordinate."""
    dut = AXI4ToAXI3(addr_width=32, data_width=64, id_width=4, out_id_width=6,
                     max_burst=16, max_writes_outstanding=depth)
    mem = AXI3Memory(dut.axi3, rng)
    writes = []
    for _ in range(24):
        beats = int(rng.integers(1, 17))
        writes.append(dict(id=int(rng.integers(0, 16)), addr=int(rng.integers(0, 2**20)) * 8,
                           len=beats - 1, lock=int(rng.integers(0, 2)),
                           data=[int(x) for x in rng.integers(0, 2**63, beats)],
                           strb=[int(x) for x in rng.integers(0, 256, beats)]))
    reads = [dict(id=int(rng.integers(0, 16)), addr=int(rng.integers(0, 2**20)) * 8,
                  len=int(rng.integers(0, 16)), lock=int(rng.integers(0, 2)))
             for _ in range(16)]
    got = {"b": [], "r": []}
    a4 = dut.axi4

    async def aw_driver(ctx):
        for k, wb in enumerate(writes):
            for _ in range(int(rng.integers(0, 3 if k % 5 else 25))):   # sometimes W leads
                await ctx.tick()
            ctx.set(a4.awid, wb["id"])
            ctx.set(a4.awaddr, wb["addr"])
            ctx.set(a4.awlen, wb["len"])
            ctx.set(a4.awsize, 3)
            ctx.set(a4.awburst, INCR)
            ctx.set(a4.awlock, wb["lock"])
            ctx.set(a4.awcache, 0b0011)
            ctx.set(a4.awprot, 0b001)
            ctx.set(a4.awqos, 0xF)
            ctx.set(a4.awvalid, 1)
            await ctx.tick().until(a4.awready)
            ctx.set(a4.awvalid, 0)

    async def w_driver(ctx):
        for k, wb in enumerate(writes):
            for i, (d, s) in enumerate(zip(wb["data"], wb["strb"])):
                # bursts 8..11 trickle in slowly, so AWs pile up ahead of their data
                gap = int(rng.integers(4, 9)) if 8 <= k < 12 else int(rng.integers(0, 2))
                for _ in range(gap):
                    await ctx.tick()
                ctx.set(a4.wdata, d)
                ctx.set(a4.wstrb, s)
                ctx.set(a4.wlast, int(i == wb["len"]))
                ctx.set(a4.wvalid, 1)
                await ctx.tick().until(a4.wready)
                ctx.set(a4.wvalid, 0)

    async def b_collector(ctx):
        while len(got["b"]) < len(writes):
            ctx.set(a4.bready, int(rng.random() < 0.7))
            _, _, bv, br, bid, bresp = await ctx.tick().sample(a4.bvalid, a4.bready, a4.bid,
                                                               a4.bresp)
            if bv and br:
                got["b"].append((bid, bresp))

    async def ar_driver(ctx):
        for rb in reads:
            ctx.set(a4.arid, rb["id"])
            ctx.set(a4.araddr, rb["addr"])
            ctx.set(a4.arlen, rb["len"])
            ctx.set(a4.arsize, 3)
            ctx.set(a4.arburst, INCR)
            ctx.set(a4.arlock, rb["lock"])
            ctx.set(a4.arqos, 0x5)
            ctx.set(a4.arvalid, 1)
            await ctx.tick().until(a4.arready)
            ctx.set(a4.arvalid, 0)

    async def r_collector(ctx):
        total = sum(r["len"] + 1 for r in reads)
        while len(got["r"]) < total:
            ctx.set(a4.rready, int(rng.random() < 0.7))
            _, _, rv, rr, rid, rdata, rlast = await ctx.tick().sample(
                a4.rvalid, a4.rready, a4.rid, a4.rdata, a4.rlast)
            if rv and rr:
                got["r"].append((rid, rdata, rlast))

    _sim(dut, [aw_driver, w_driver, b_collector, ar_driver, r_collector],
         background=[mem.run])

    # AW: every field mapped (AxLEN 8 -> 4 bits, AXI4 lock bit -> AXI3 0b01, QoS dropped)
    assert mem.aw == [(wb["id"], wb["addr"], wb["len"], 3, INCR, wb["lock"], 0b0011, 0b001)
                      for wb in writes]
    assert mem.w == [(wb["id"], d, s, int(i == wb["len"]))
                     for wb in writes for i, (d, s) in enumerate(zip(wb["data"], wb["strb"]))]
    assert got["b"] == [(wb["id"], OKAY) for wb in writes]
    assert mem.max_open_writes <= depth
    assert mem.ar == [(rb["id"], rb["addr"], rb["len"]) for rb in reads]
    expect_r = [(rb["id"], rb["addr"] + 8 * i, int(i == rb["len"]))
                for rb in reads for i in range(rb["len"] + 1)]
    assert got["r"] == [(rid, (addr * 3 + 1) % 2**64, last) for rid, addr, last in expect_r]


def test_hp_adapter_adds_no_latency_when_the_id_is_queued():
    """AW and W presented in the same cycle to an always-ready AXI3 port: the AW goes through
    at once and the first W beat one cycle later (the ID queue's write-to-read latency)."""
    dut = AXI4ToAXI3(id_width=4, out_id_width=6, max_writes_outstanding=2)
    got = {}

    async def tb(ctx):
        a3, a4 = dut.axi3, dut.axi4
        ctx.set(a3.awready, 1)
        ctx.set(a3.wready, 1)
        ctx.set(a4.awid, 9)
        ctx.set(a4.awlen, 1)
        ctx.set(a4.awvalid, 1)
        ctx.set(a4.wvalid, 1)
        ctx.set(a4.wdata, 0xAB)
        got["aw0"] = (ctx.get(a3.awvalid), ctx.get(a4.awready), ctx.get(a3.wvalid))
        await ctx.tick()
        ctx.set(a4.awvalid, 0)
        got["w1"] = (ctx.get(a3.wvalid), ctx.get(a3.wid), ctx.get(a4.wready))
        await ctx.tick()
        ctx.set(a4.wlast, 1)
        got["w2"] = (ctx.get(a3.wvalid), ctx.get(a3.wid), ctx.get(a3.wlast))
        await ctx.tick()
        got["w3"] = ctx.get(a3.wvalid)

    _sim(dut, [tb])
    assert got == {"aw0": (1, 1, 0), "w1": (1, 9, 1), "w2": (1, 9, 1), "w3": 0}


def test_hp_adapter_rejects_bursts_longer_than_axi3():
    with pytest.raises(IlmpqError, match="1 to 16 beats"):
        AXI4ToAXI3(max_burst=32)
    with pytest.raises(IlmpqError, match="id_width"):
        AXI4ToAXI3(id_width=8, out_id_width=6)


# ---- ZynqFabric / ZynqSoC --------------------------------------------------------------------

class AcceleratorDouble(wiring.Component):
    """The accelerator's flat ports (``s_axil_*``, ``m_axi_*``, ``irq``) around the real CSR
    bank; ``irq`` = CTRL.irq_en, and one DMA read burst of 2 beats issued after ``start``.
    Used where the real top would only slow the test down."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.regmap = accelerator_regmap(cfg)
        lite = AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)
        axi = AXI4Signature(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                            id_width=cfg.axi_id_width)
        members = {f"s_axil_{n}": mb.flip() for n, mb in lite.members.items()}
        members.update({f"m_axi_{n}": mb for n, mb in axi.members.items()})
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = CSRBank(self.regmap)
        for name, mb in AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH).members.items():
            port, inner = getattr(self, f"s_axil_{name}"), getattr(csr.bus, name)
            m.d.comb += (inner.eq(port) if mb.flow == Out else port.eq(inner))  # manager view
        f = csr.fields
        m.d.comb += self.irq.eq(f.ctrl.irq_en)
        sent = Signal()
        with m.If(f.ctrl.start):
            m.d.sync += [self.m_axi_arvalid.eq(1), self.m_axi_araddr.eq(f.prog_addr.addr),
                         self.m_axi_arlen.eq(1), self.m_axi_arsize.eq(3),
                         self.m_axi_arburst.eq(INCR), self.m_axi_arid.eq(2)]
        with m.If(self.m_axi_arvalid & self.m_axi_arready):
            m.d.sync += [self.m_axi_arvalid.eq(0), sent.eq(1)]
        m.d.comb += self.m_axi_rready.eq(1)
        return m


def test_fabric_connects_gp0_hp0_and_irq(rng):
    cfg = get_config("tiny")
    acc = AcceleratorDouble(cfg)
    dut = ZynqFabric(cfg, accelerator=acc, busy_hold=5)
    mem = AXI3Memory(dut.hp0, rng, p=1.0)
    regmap = acc.regmap
    got = {}

    async def tb(ctx):
        got["id"] = await axi3_read_bursts(ctx, dut.gp0, [(7, GP0_BASE + regmap.offset("id"),
                                                           2, INCR, 0)], rng)
        ctrl = regmap.offset("ctrl")
        enc = regmap.encode
        got["irq0"] = ctx.get(dut.irq)
        await axi3_write_bursts(ctx, dut.gp0, [
            (1, GP0_BASE + regmap.offset("prog_addr"), 2, INCR, 0, [(0x2000_0000, 0xF)]),
            (2, GP0_BASE + ctrl, 2, INCR, 0, [(enc("ctrl", 0, irq_en=1), 0xF)]),
        ], rng)
        got["irq1"] = ctx.get(dut.irq)
        got["busy_before"] = ctx.get(dut.busy)
        await axi3_write_bursts(ctx, dut.gp0, [
            (3, GP0_BASE + ctrl, 2, INCR, 0, [(enc("ctrl", 0, irq_en=1, start=1), 0xF)])], rng)
        trace = []
        for _ in range(30):
            await ctx.tick()
            trace.append(ctx.get(dut.busy))
        got["busy"] = trace

    _sim(dut, [tb], background=[mem.run])
    assert got["id"] == [[(7, ID_MAGIC, OKAY)]]
    assert (got["irq0"], got["irq1"]) == (0, 1)
    assert mem.ar == [(2, 0x2000_0000, 1)]          # the DMA's read reached HP0
    assert got["busy_before"] == 0
    # busy: high with the DMA's valids, then exactly busy_hold more cycles
    ones = [i for i, v in enumerate(got["busy"]) if v]
    assert ones and ones == list(range(ones[0], ones[-1] + 1))
    assert got["busy"][-1] == 0


def test_fabric_with_the_real_accelerator(rng):
    """ZynqFabric around the real Accelerator (tiny): identification read as one 4-beat AXI3
    burst through GP0, and a DMA window register written and read back."""
    from ilmpq.hdl.regmap import version_tuple

    cfg = get_config("tiny")
    dut = ZynqFabric(cfg)
    rm = accelerator_regmap(cfg)
    got = {}

    async def tb(ctx):
        got["ident"] = await axi3_read_bursts(ctx, dut.gp0, [(1, GP0_BASE + rm.offset("id"),
                                                              2, INCR, 3)], rng)
        got["b"] = await axi3_write_bursts(ctx, dut.gp0, [
            (2, GP0_BASE + rm.offset("win_base"), 2, INCR, 1,
             [(0x1F00_0000, 0xF), (0x1F80_0000, 0xF)])], rng)     # WIN_BASE, WIN_LIMIT
        got["win"] = await axi3_read_bursts(ctx, dut.gp0, [(3, GP0_BASE + rm.offset("win_base"),
                                                            2, INCR, 1)], rng)
        got["irq"] = ctx.get(dut.irq)

    _sim(dut, [tb])
    ident = got["ident"][0]
    assert [b[0] for b in ident] == [1] * 4 and [b[2] for b in ident] == [OKAY] * 4
    assert ident[0][1] == ID_MAGIC
    assert rm.decode("version", ident[1][1]) == dict(zip(("patch", "minor", "major"),
                                                         reversed(version_tuple())))
    assert ident[2][1] == cfg.config_id
    assert rm.decode("geometry", ident[3][1]) == {"lanes_lo": cfg.lanes_lo,
                                                  "lanes_hi": cfg.lanes_hi}
    assert got["b"] == [(2, OKAY)]
    assert got["win"] == [[(3, 0x1F00_0000, OKAY), (3, 0x1F80_0000, OKAY)]]
    assert got["irq"] == 0


def test_fabric_and_soc_reject_configurations_the_zynq_cannot_take():
    cfg = get_config("tiny")
    with pytest.raises(IlmpqError, match="axi_data_width = 64"):
        ZynqFabric(cfg.replace(axi_data_width=128))
    with pytest.raises(IlmpqError, match="axi_id_width <= 6"):
        ZynqFabric(cfg.replace(axi_id_width=8))
    with pytest.raises(IlmpqError, match="10 to 250 MHz"):
        ZynqSoC(cfg, fclk_mhz=400)
    from amaranth.hdl import Fragment
    acc = AcceleratorDouble(cfg)
    acc._MustUse__silence = True          # never elaborated: the error comes first
    with pytest.raises(IlmpqError, match="no simulation model"):
        Fragment.get(ZynqSoC(cfg, accelerator=acc), None)


def test_axi3_signature_members():
    sig = AXI3Signature(addr_width=32, data_width=64, id_width=6)
    widths = {n: Shape.cast(m.shape).width for n, m in sig.members.items()}
    assert widths["awlen"] == widths["arlen"] == 4
    assert widths["awlock"] == widths["arlock"] == 2
    assert widths["wid"] == 6 and widths["wstrb"] == 8
    assert not any(n.endswith(("qos", "region")) for n in widths)
    assert sig == AXI3Signature(addr_width=32, data_width=64, id_width=6)
    with pytest.raises(IlmpqError, match="data width"):
        AXI3Signature(data_width=48)


@pytest.mark.parametrize("name", ["bridge", "hp_adapter"])
def test_adapters_verilog_lints_clean(name):
    from amaranth.back import verilog

    from ilmpq.firmware.sim.verilator.lint import lint

    dut = (AXI3ToAXI4Lite(base=GP0_BASE) if name == "bridge"
           else AXI4ToAXI3(id_width=4, max_writes_outstanding=4))
    res = lint(verilog.convert(dut, name=name), name)
    assert res.clean, res.output[-3000:]


class MultiPortDouble(AcceleratorDouble):
    """:class:`AcceleratorDouble` with ``cfg.axi_ports`` manager ports; its one read burst goes
    out on the last port (``m_axi<n-1>_*``)."""

    def __init__(self, cfg):
        from ilmpq.hdl.top import axi_port_prefix
        self.cfg = cfg
        self.regmap = accelerator_regmap(cfg)
        lite = AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)
        axi = AXI4Signature(addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                            id_width=cfg.axi_id_width)
        members = {f"s_axil_{n}": mb.flip() for n, mb in lite.members.items()}
        for p in range(cfg.axi_ports):
            members.update({f"{axi_port_prefix(p)}_{n}": mb for n, mb in axi.members.items()})
        members["irq"] = Out(1)
        wiring.Component.__init__(self, members)
        self.last = axi_port_prefix(cfg.axi_ports - 1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = CSRBank(self.regmap)
        for name, mb in AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH).members.items():
            port, inner = getattr(self, f"s_axil_{name}"), getattr(csr.bus, name)
            m.d.comb += (inner.eq(port) if mb.flow == Out else port.eq(inner))
        f = csr.fields
        m.d.comb += self.irq.eq(f.ctrl.irq_en)
        a = lambda n: getattr(self, f"{self.last}_{n}")   # noqa: E731
        with m.If(f.ctrl.start):
            m.d.sync += [a("arvalid").eq(1), a("araddr").eq(f.prog_addr.addr), a("arlen").eq(1),
                         a("arsize").eq(3), a("arburst").eq(INCR), a("arid").eq(2)]
        with m.If(a("arvalid") & a("arready")):
            m.d.sync += a("arvalid").eq(0)
        m.d.comb += a("rready").eq(1)
        return m


@pytest.mark.parametrize("ports", [2, 4])
def test_fabric_connects_every_hp_port(rng, ports):
    """With ``axi_ports`` > 1 the fabric has one AXI3 HP port per DMA port, each behind its own
    AXI4-to-AXI3 adapter: a read issued on the accelerator's last port reaches that HP port only,
    and the busy LED follows the activity of any port."""
    cfg = get_config("tiny").replace(axi_ports=ports)
    acc = MultiPortDouble(cfg)
    dut = ZynqFabric(cfg, accelerator=acc, busy_hold=5)
    assert [hasattr(dut, f"hp{p}") for p in range(5)] == [True] * ports + [False] * (5 - ports)
    mems = [AXI3Memory(getattr(dut, f"hp{p}"), rng, p=1.0) for p in range(ports)]
    regmap = acc.regmap
    got = {}

    async def tb(ctx):
        enc = regmap.encode
        await axi3_write_bursts(ctx, dut.gp0, [
            (1, GP0_BASE + regmap.offset("prog_addr"), 2, INCR, 0, [(0x2000_0000, 0xF)]),
            (3, GP0_BASE + regmap.offset("ctrl"), 2, INCR, 0,
             [(enc("ctrl", 0, start=1), 0xF)])], rng)
        trace = []
        for _ in range(30):
            await ctx.tick()
            trace.append(ctx.get(dut.busy))
        got["busy"] = trace

    _sim(dut, [tb], background=[m.run for m in mems])
    assert mems[-1].ar == [(2, 0x2000_0000, 1)]
    assert all(m.ar == [] for m in mems[:-1])
    assert any(got["busy"]) and got["busy"][-1] == 0


def test_fabric_with_the_real_two_port_accelerator():
    """The real tiny2p accelerator elaborates inside the fabric with two HP adapters."""
    from amaranth.back import rtlil
    dut = ZynqFabric(get_config("tiny2p"))
    text = rtlil.convert(dut, name="fabric")
    assert "hp0_adapter" in text and "hp1_adapter" in text and "hp2_adapter" not in text


def test_build_plan_with_two_hp_ports(tmp_path, monkeypatch, capsys):
    """``ilmpq build --axi-ports 2``: the PS7 in the plan's Verilog has S_AXI_HP0 and HP1 wired
    (clock and valid signals), HP2 unused; BUILD.md names both ports."""
    import re

    from ilmpq.firmware.cli import main
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)
    monkeypatch.setenv("VIVADO", "/nonexistent/vivado")
    assert main(["build", "--board", "arty-z7-20", "--config", "tiny", "--axi-ports", "2",
                 "--no-estimate", "-o", str(tmp_path)]) == 0
    name = "ilmpq_tiny_2hp_arty_z7_20"
    assert f"{name}: board arty-z7-20" in capsys.readouterr().out
    v = (tmp_path / f"{name}.v").read_text()
    ps7 = v[re.search(r"^\s*PS7\s+\S+\s*\(", v, re.M).end():]
    ps7 = ps7[:ps7.index(");")]
    for p in (0, 1):
        assert f".SAXIHP{p}ACLK(clk)" in ps7 and f".SAXIHP{p}ARVALID(" in ps7
    assert ".SAXIHP2ACLK(" not in ps7
    md = (tmp_path / "BUILD.md").read_text()
    assert "S_AXI_HP0, S_AXI_HP1" in md
