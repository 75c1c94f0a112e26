# amaranth: UnusedElaboratable=no
"""DMA engine (hdl/dma.py) against the simulated AXI memory and the protocol checker."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator

from ilmpq.golden.errors import IlmpqValueError
from ilmpq.hdl.axi import AXIResp
from ilmpq.hdl.config import get_config
from ilmpq.hdl.dma import CLEAR_SLACK, DMA, MAX_COMMAND_BEATS
from ilmpq.hdl.status import ErrorCode
from models.axi_checker import AXIChecker
from models.axi_mem import AXIMemory

CFG = get_config("tiny")
BB = CFG.beat_bytes
MB = CFG.max_burst
BASE = 0x1000_0000
MEM_SIZE = 32 * 1024
RD_REGION = (BASE, BASE + MEM_SIZE // 2)
WR_REGION = (BASE + MEM_SIZE // 2, BASE + MEM_SIZE)
TIMEOUT = 10_000        # cycles; a testbench waiting longer reports a deadlock


# -- stream helpers -----------------------------------------------------------------------------

async def send(ctx, port, items, rng=None, stall=0.0):
    """Drive a stream: random idle cycles before each item, valid never waits for ready, payload
    stable until the transfer."""
    for item in items:
        while rng is not None and rng.random() < stall:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, item)
        ctx.set(port.valid, 1)
        for _ in range(TIMEOUT):
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
        else:
            raise AssertionError(f"stream stuck: {item!r} not accepted in {TIMEOUT} cycles")
    ctx.set(port.valid, 0)


async def receive(ctx, port, out, n, rng=None, stall=0.0, hold=None):
    """Take ``n`` beats from a stream into ``out`` with random ready gaps; ``hold()`` true keeps
    ready low."""
    waited = 0
    while len(out) < n:
        r = int(not (hold is not None and hold()) and (rng is None or rng.random() >= stall))
        ctx.set(port.ready, r)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if valid and r:
            out.append((int(payload.data), int(payload.last)))
            waited = 0
        else:
            waited += 1
            if waited > TIMEOUT:
                raise AssertionError(f"deadlock: {len(out)}/{n} beats after {TIMEOUT} idle "
                                     f"cycles")
    ctx.set(port.ready, 0)


def expected_read(mem, cmds):
    """(data, last) beats a client must receive for its commands, from the memory's contents."""
    out = []
    for addr, beats in cmds:
        raw = np.frombuffer(mem.read(addr, beats * BB), dtype=f"<u{BB}")
        out += [(int(v), int(k == beats - 1)) for k, v in enumerate(raw)]
    return out


def random_cmds(rng, n, region, max_beats=80):
    """Beat-aligned commands inside ``region``, half of them starting just below a 4 KiB line."""
    cmds = []
    lo, hi = region
    for _ in range(n):
        beats = int(rng.integers(1, max_beats + 1))
        if rng.random() < 0.5:
            line = int(rng.integers(lo // 4096 + 1, hi // 4096))
            addr = line * 4096 - BB * int(rng.integers(1, 2 * MB + 1))
        else:
            addr = lo + BB * int(rng.integers(0, (hi - lo) // BB))
        addr = max(lo, min(addr, hi - beats * BB))
        cmds.append((addr, beats))
    return cmds


class Bench:
    """A DMA with an AXIMemory and an AXIChecker on its bus, and monitors of its outputs."""

    def __init__(self, *, n_clients=3, write_strobes=False, mode="deterministic", seed=0,
                 reorder=False, errors=None, window=(BASE, BASE + MEM_SIZE), init=None,
                 faults=None, bus_timeout=0, **kw):
        self.dut = dut = DMA(CFG, n_read_clients=n_clients, write_strobes=write_strobes, **kw)
        self.mem = AXIMemory(dut.bus, base=BASE, size=MEM_SIZE, mode=mode,
                             rng=seed if mode == "random" else None, reorder=reorder,
                             errors=errors, faults=faults)
        if init is not None:
            self.mem.data[:] = init
        # a subordinate breaking the protocol on purpose: the checker records its side and
        # keeps checking the DMA's; a DMA may only give up on a bus silent for bus_timeout
        self.chk = AXIChecker(dut.bus, max_burst=MB,
                              max_reads_outstanding=CFG.max_reads_outstanding,
                              subordinate_protocol=not faults,
                              abandon_after=bus_timeout or None)
        self.window = window
        self.bus_timeout = bus_timeout
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.mem.add_to(self.sim)
        self.chk.add_to(self.sim)
        self.cycle = 0
        self.done = []              # cycles of wr_done pulses
        self.rd_beats = 0
        self.wr_beats = 0
        self.error_cycle = None     # first cycle error != NONE
        self.busy_cycles = 0
        self.sim.add_testbench(self._monitor, background=True)

    async def _monitor(self, ctx):
        d = self.dut
        ctx.set(d.win_base, self.window[0])
        ctx.set(d.win_limit, self.window[1])
        ctx.set(d.bus_timeout, self.bus_timeout)
        async for _, _, done, rb, wb, err, busy in ctx.tick().sample(
                d.wr_done, d.rd_beat, d.wr_beat, d.error, d.busy):
            if done:
                self.done.append(self.cycle)
            self.rd_beats += rb
            self.wr_beats += wb
            self.busy_cycles += busy
            if err != ErrorCode.NONE and self.error_cycle is None:
                self.error_cycle = self.cycle
            self.cycle += 1

    async def wait_done(self, ctx, n):
        for _ in range(TIMEOUT):
            if len(self.done) >= n:
                return
            await ctx.tick()
        raise AssertionError(f"only {len(self.done)}/{n} write commands done")

    async def wait_idle(self, ctx):
        for _ in range(TIMEOUT):
            await ctx.tick()
            if not ctx.get(self.dut.busy):
                return
        raise AssertionError("the DMA never became idle")

    def run(self, *testbenches, background=()):
        for tb in testbenches:
            self.sim.add_testbench(tb)
        for tb in background:
            self.sim.add_testbench(tb, background=True)
        self.sim.run()


def apply_writes(image, cmds, beats, strobes=None):
    """Expected memory after write commands (``beats`` concatenated, little-endian)."""
    image = image.copy()
    k = 0
    for addr, n in cmds:
        for j in range(n):
            off = addr - BASE + j * BB
            word = np.frombuffer(int(beats[k]).to_bytes(BB, "little"), dtype=np.uint8)
            mask = np.ones(BB, bool) if strobes is None else np.array(
                [(strobes[k] >> b) & 1 for b in range(BB)], bool)
            image[off:off + BB][mask] = word[mask]
            k += 1
    return image


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,reorder", [("deterministic", False), ("random", False),
                                          ("random", True)])
def test_mixed_traffic_round_trip(rng, mode, reorder):
    """Three read clients and the write client at once, random lengths and beat-aligned
    addresses (many near 4 KiB lines), random stalls on every stream and (random mode) on the
    bus: each client gets exactly its data with ``last`` on each command's end, the memory ends
    up with exactly the written data, the checker sees no violation."""
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    b = Bench(n_clients=3, write_strobes=True, mode=mode, seed=int(rng.integers(2**31)),
              reorder=reorder, init=init)
    rd_cmds = [random_cmds(rng, 4, RD_REGION) for _ in range(3)]
    wr_cmds = random_cmds(rng, 5, WR_REGION)
    n_wr = sum(n for _, n in wr_cmds)
    wdata = [int(x) for x in rng.integers(0, 2**64 - 1, n_wr, dtype=np.uint64, endpoint=True)]
    wstrb = [0xFF if rng.random() < 0.5 else int(s) for s in rng.integers(0, 256, n_wr)]
    got = [[] for _ in range(3)]
    seeds = rng.integers(2**31, size=8)

    def reader(i):
        async def tb(ctx):
            await send(ctx, b.dut.rd_cmd[i],
                       [{"addr": a, "beats": n} for a, n in rd_cmds[i]],
                       np.random.default_rng(seeds[i]), 0.3)
        return tb

    def consumer(i):
        async def tb(ctx):
            await receive(ctx, b.dut.rd_data[i], got[i], sum(n for _, n in rd_cmds[i]),
                          np.random.default_rng(seeds[3 + i]), 0.3)
        return tb

    async def writer(ctx):
        await send(ctx, b.dut.wr_cmd, [{"addr": a, "beats": n} for a, n in wr_cmds],
                   np.random.default_rng(seeds[6]), 0.3)
        await b.wait_done(ctx, len(wr_cmds))

    async def wdata_tb(ctx):
        await send(ctx, b.dut.wr_data, [{"data": d, "strb": s} for d, s in zip(wdata, wstrb)],
                   np.random.default_rng(seeds[7]), 0.3)

    b.run(*(reader(i) for i in range(3)), *(consumer(i) for i in range(3)), writer, wdata_tb)

    for i in range(3):
        assert got[i] == expected_read(b.mem, rd_cmds[i]), f"client {i}"
    np.testing.assert_array_equal(b.mem.data, apply_writes(init, wr_cmds, wdata, wstrb))
    n_rd = sum(n for c in rd_cmds for _, n in c)
    assert b.mem.read_beats == b.chk.r_beats == b.rd_beats == n_rd
    assert b.mem.write_beats == b.chk.w_beats == b.wr_beats == n_wr
    assert len(b.done) == len(wr_cmds)
    assert b.chk.outstanding == 0
    assert 1 <= b.chk.max_reads_in_flight <= CFG.max_reads_outstanding
    assert b.error_cycle is None


def test_unstrobed_writes_write_every_byte(rng):
    """Without ``write_strobes`` the payload is the data alone and every byte is written."""
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    b = Bench(n_clients=1, init=init, mode="random", seed=5)
    cmds = [(WR_REGION[0] + 4096 - 3 * BB, 20), (WR_REGION[0] + 8 * BB, 1)]
    wdata = [int(x) for x in rng.integers(0, 2**64 - 1, 21, dtype=np.uint64, endpoint=True)]

    async def tb(ctx):
        await send(ctx, b.dut.wr_cmd, [{"addr": a, "beats": n} for a, n in cmds])
        await b.wait_done(ctx, 2)

    async def data_tb(ctx):
        await send(ctx, b.dut.wr_data, wdata, rng, 0.5)

    b.run(tb, data_tb)
    np.testing.assert_array_equal(b.mem.data, apply_writes(init, cmds, wdata))
    assert [(t.addr, t.beats) for t in b.mem.transactions("w")] == [
        (cmds[0][0], 3), (cmds[0][0] + 3 * BB, 16), (cmds[0][0] + 19 * BB, 1), (cmds[1][0], 1)]


# -- burst splitting ----------------------------------------------------------------------------

def test_exact_burst_splitting():
    """Bursts of at most max_burst beats, cut at every 4 KiB line, in address order, for reads
    and writes; commands of one client are issued in order."""
    b = Bench(n_clients=1)
    line = BASE + 4096
    rd = [(line - 7 * BB, 40), (line + 4096 - 16 * BB, 16), (line + 4096 - 16 * BB, 17),
          (BASE + 5 * BB, 1), (BASE, 2 * 4096 // BB + 3)]
    wr = [(WR_REGION[0] + 4096 - BB, 18), (WR_REGION[0] + 2 * 4096, 32)]
    got = []

    async def rd_tb(ctx):
        await send(ctx, b.dut.rd_cmd[0], [{"addr": a, "beats": n} for a, n in rd])

    async def rx_tb(ctx):
        await receive(ctx, b.dut.rd_data[0], got, sum(n for _, n in rd))

    async def wr_tb(ctx):
        await send(ctx, b.dut.wr_cmd, [{"addr": a, "beats": n} for a, n in wr])
        await b.wait_done(ctx, len(wr))

    async def wd_tb(ctx):
        await send(ctx, b.dut.wr_data, list(range(sum(n for _, n in wr))))

    b.run(rd_tb, rx_tb, wr_tb, wd_tb)

    def split(addr, beats):
        out = []
        while beats:
            n = min(beats, MB, (4096 - addr % 4096) // BB)
            out.append((addr, n))
            addr += n * BB
            beats -= n
        return out

    reads = [(t.addr, t.beats) for t in b.mem.transactions("r")]
    writes = [(t.addr, t.beats) for t in b.mem.transactions("w")]
    assert reads == [p for c in rd for p in split(*c)]
    assert writes == [p for c in wr for p in split(*c)]
    # spelled out for the first command: 7 beats up to the line, then 16, 16, 1
    assert reads[:4] == [(line - 7 * BB, 7), (line, 16), (line + 16 * BB, 16),
                         (line + 32 * BB, 1)]
    assert writes[:3] == [(WR_REGION[0] + 4096 - BB, 1), (WR_REGION[0] + 4096, 16),
                          (WR_REGION[0] + 4096 + 16 * BB, 1)]
    assert got == expected_read(b.mem, rd)
    assert all(t.id == 0 for t in b.mem.log)


# -- several clients, one stalling --------------------------------------------------------------

def test_stalled_client_does_not_block_others(rng):
    """Client 0 stops taking data: it holds at most its FIFO's worth of bursts, clients 1 and 2
    still stream all their data (no head-of-line blocking); client 0 then completes too."""
    b = Bench(n_clients=3, mode="random", seed=11, init=rng.integers(0, 256, MEM_SIZE,
                                                                     dtype=np.uint8))
    cmds = [[(RD_REGION[0], 300)], [(RD_REGION[0] + 4096, 200)],
            [(RD_REGION[0] + 3 * 4096 - 40, 150)]]
    got = [[] for _ in range(3)]
    state = {"stalled": True, "c0_bursts_while_stalled": None}

    def reader(i):
        async def tb(ctx):
            await send(ctx, b.dut.rd_cmd[i], [{"addr": a, "beats": n} for a, n in cmds[i]])
        return tb

    def consumer(i):
        async def tb(ctx):
            await receive(ctx, b.dut.rd_data[i], got[i], cmds[i][0][1], rng, 0.2,
                          hold=(lambda: state["stalled"]) if i == 0 else None)
        return tb

    async def control(ctx):
        # wait until the other clients have everything, with client 0 stalled throughout
        for _ in range(TIMEOUT):
            await ctx.tick()
            if len(got[1]) == 200 and len(got[2]) == 150:
                break
        else:
            raise AssertionError("clients 1 and 2 were blocked by the stalled client 0")
        assert got[0] == []
        state["c0_bursts_while_stalled"] = sum(1 for t in b.mem.transactions("r") if t.id == 0)
        state["stalled"] = False

    b.run(*(reader(i) for i in range(3)), *(consumer(i) for i in range(3)), control)
    for i in range(3):
        assert got[i] == expected_read(b.mem, cmds[i])
    # client 0 got only what its FIFO can hold while stalled: read_fifo_depth beats
    assert state["c0_bursts_while_stalled"] == b.dut.read_fifo_depth // MB
    assert b.chk.outstanding == 0


def test_round_robin_is_fair():
    """Two clients with long commands and always-ready consumers alternate on AR."""
    b = Bench(n_clients=2)
    cmds = [(RD_REGION[0], 96), (RD_REGION[0] + 4096, 96)]
    got = [[], []]

    def tbs(i):
        async def cmd(ctx):
            await send(ctx, b.dut.rd_cmd[i], [{"addr": cmds[i][0], "beats": cmds[i][1]}])

        async def rx(ctx):
            await receive(ctx, b.dut.rd_data[i], got[i], cmds[i][1])
        return cmd, rx

    b.run(*tbs(0), *tbs(1))
    ids = [t.id for t in b.mem.transactions("r")]
    assert ids == [0, 1] * 6
    assert got[0] == expected_read(b.mem, [cmds[0]]) and got[1] == expected_read(b.mem, [cmds[1]])


# -- command checks -----------------------------------------------------------------------------

WIN = (BASE + 0x100, BASE + 0x2000)


@pytest.mark.parametrize("kind", ["read", "write"])
@pytest.mark.parametrize("addr,beats,code", [
    (WIN[0], 0, ErrorCode.DMA_LENGTH),                       # zero length
    (WIN[0], MAX_COMMAND_BEATS + 1, ErrorCode.DMA_LENGTH),   # longer than a command may be
    (0xFFFF_FFF8, 2, ErrorCode.DMA_LENGTH),                  # end overflows 32 bits
    (WIN[0] + 4, 2, ErrorCode.DMA_ALIGN),                    # not beat aligned
    (WIN[0] + 1, 2, ErrorCode.DMA_ALIGN),
    (WIN[0] - BB, 2, "window"),                              # starts below the base
    (WIN[1] - BB, 2, "window"),                              # last beat past the limit
    (WIN[1], 1, "window"),                                   # starts at the limit
    (WIN[0] - 4096, 4096 // BB + 4, "window"),               # straddles the whole window
])
def test_bad_command_issues_nothing(kind, addr, beats, code):
    """A bad command latches its code and the command's address, issues no transaction at all
    (the memory's log stays empty), blocks later commands, and ``clear`` recovers: a good command
    then runs."""
    if code == "window":
        code = ErrorCode.DMA_READ_WINDOW if kind == "read" else ErrorCode.DMA_WRITE_WINDOW
    b = Bench(n_clients=2, window=WIN)
    good = (WIN[0] + 0x40, 3)
    got = []
    port = b.dut.rd_cmd[1] if kind == "read" else b.dut.wr_cmd

    async def tb(ctx):
        d = b.dut
        await send(ctx, port, [{"addr": addr, "beats": beats}])
        if kind == "write":     # data of the bad command is waiting: none of it may be sent
            ctx.set(d.wr_data.valid, 1)
            ctx.set(d.wr_data.payload, 0x55)
        for _ in range(40):
            await ctx.tick()
        assert ctx.get(d.error) == code
        assert ctx.get(d.error_addr) == addr % 2**32
        assert b.mem.log == [] and b.chk.bursts == []
        # later commands are not accepted while the error is latched
        assert not ctx.get(d.rd_cmd[0].ready) and not ctx.get(d.wr_cmd.ready)
        assert not ctx.get(d.busy)
        ctx.set(d.wr_data.valid, 0)
        ctx.set(d.clear, 1)
        await ctx.tick()
        ctx.set(d.clear, 0)
        await b.wait_idle(ctx)
        assert ctx.get(d.error) == ErrorCode.NONE
        await send(ctx, d.rd_cmd[1], [{"addr": good[0], "beats": good[1]}])
        for _ in range(TIMEOUT):
            await ctx.tick()
            if len(got) == good[1]:
                break
        await b.wait_idle(ctx)

    async def rx(ctx):
        await receive(ctx, b.dut.rd_data[1], got, good[1])

    b.run(tb, rx)
    assert [(t.addr, t.beats) for t in b.mem.log] == [good]
    assert got == expected_read(b.mem, [good])


def test_window_accepts_exact_fit():
    """A command covering exactly [win_base, win_limit) is allowed."""
    win = (BASE + 4096, BASE + 4096 + 24 * BB)
    b = Bench(n_clients=1, window=win)
    got = []

    async def tb(ctx):
        await send(ctx, b.dut.rd_cmd[0], [{"addr": win[0], "beats": 24}])

    async def rx(ctx):
        await receive(ctx, b.dut.rd_data[0], got, 24)

    b.run(tb, rx)
    assert got == expected_read(b.mem, [(win[0], 24)])
    assert b.error_cycle is None


# -- response errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("channel,resp,code", [
    ("r", AXIResp.SLVERR, ErrorCode.DMA_READ_SLVERR),
    ("r", AXIResp.DECERR, ErrorCode.DMA_READ_DECERR),
    ("w", AXIResp.SLVERR, ErrorCode.DMA_WRITE_SLVERR),
    ("w", AXIResp.DECERR, ErrorCode.DMA_WRITE_DECERR),
])
def test_response_error_latches_and_stops(rng, channel, resp, code):
    """An error response on burst 1 of a channel latches the code and that burst's address,
    nothing is issued after the error is seen (apart from an address already on the bus), every
    burst already issued completes (bus not hung), the other error injected on burst 2 (already
    in flight) does not overwrite the first; ``clear`` returns to idle and a new command runs
    correctly."""
    errors = {(channel, 1): resp, (channel, 2): AXIResp.DECERR if resp == AXIResp.SLVERR
              else AXIResp.SLVERR}
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    b = Bench(n_clients=2, errors=errors, init=init)
    after = []

    async def tb(ctx):
        d = b.dut
        ctx.set(d.rd_data[0].ready, 1)
        ctx.set(d.rd_data[1].ready, 1)
        if channel == "r":      # both clients: four bursts in flight when the error arrives
            ctx.set(d.rd_cmd[1].payload, {"addr": RD_REGION[0] + 4096, "beats": 200})
            ctx.set(d.rd_cmd[1].valid, 1)
            await send(ctx, d.rd_cmd[0], [{"addr": RD_REGION[0], "beats": 200}])
            ctx.set(d.rd_cmd[1].valid, 0)
        else:
            await send(ctx, d.wr_cmd, [{"addr": WR_REGION[0], "beats": 200}])
        for _ in range(TIMEOUT):
            await ctx.tick()
            if ctx.get(d.error) != ErrorCode.NONE:
                break
        failing = b.mem.transactions(channel)[1]
        assert ctx.get(d.error) == code
        assert ctx.get(d.error_addr) == failing.addr
        await b.wait_idle(ctx)
        assert ctx.get(d.error) == code            # first error wins
        assert ctx.get(d.error_addr) == failing.addr
        assert b.mem._reads == [] and b.mem._writes == [] and b.chk.outstanding == 0
        second = b.mem.transactions(channel)[2]     # the second error was really served
        assert second.resp not in (AXIResp.OKAY, resp) and second.completed is not None
        # nothing accepted after the error became visible, except one address already valid
        late = [t for t in b.mem.transactions(channel) if t.accepted > b.error_cycle]
        assert len(late) <= 1
        ctx.set(d.rd_data[0].ready, 0)
        ctx.set(d.rd_data[1].ready, 0)
        ctx.set(d.clear, 1)
        await ctx.tick()
        ctx.set(d.clear, 0)
        await b.wait_idle(ctx)
        assert ctx.get(d.error) == ErrorCode.NONE
        assert not ctx.get(d.rd_data[0].valid) and not ctx.get(d.rd_data[1].valid)
        n_before = len(b.mem.log)
        await send(ctx, d.rd_cmd[1], [{"addr": RD_REGION[0] + 4096, "beats": 20}])
        await receive(ctx, d.rd_data[1], after, 20)
        assert [(t.addr, t.beats) for t in b.mem.log[n_before:]] == [
            (RD_REGION[0] + 4096, 16), (RD_REGION[0] + 4096 + 16 * BB, 4)]

    async def wdata(ctx):
        if channel == "w":
            await send(ctx, b.dut.wr_data, list(range(1, 201)))

    b.run(tb, background=[wdata])
    assert after == expected_read(b.mem, [(RD_REGION[0] + 4096, 20)])
    if channel == "w":
        # the failing write bursts left the memory untouched; the others were written
        for t in b.mem.transactions("w"):
            off = t.addr - BASE
            seg = b.mem.data[off:off + t.beats * BB]
            if t.resp != AXIResp.OKAY:
                np.testing.assert_array_equal(seg, init[off:off + t.beats * BB])
        assert b.done == []


def test_clear_during_traffic(rng):
    """``clear`` in the middle of reads and writes (no error): the engine finishes the bursts on
    the bus (W beats of issued AWs are sent), drops the rest, goes idle; the checker sees a clean
    protocol; afterwards a round trip works."""
    b = Bench(n_clients=2, mode="random", seed=3,
              init=rng.integers(0, 256, MEM_SIZE, dtype=np.uint8))
    got2 = []

    async def tb(ctx):
        d = b.dut
        ctx.set(d.rd_data[0].ready, 1)
        ctx.set(d.wr_data.valid, 1)
        ctx.set(d.wr_data.payload, 0x1234)
        ctx.set(d.wr_cmd.payload, {"addr": WR_REGION[0], "beats": 500})
        ctx.set(d.wr_cmd.valid, 1)
        await send(ctx, d.rd_cmd[0], [{"addr": RD_REGION[0], "beats": 500}])
        ctx.set(d.wr_cmd.valid, 0)
        for _ in range(60):
            await ctx.tick()
        assert b.mem.log and b.chk.outstanding > 0
        ctx.set(d.clear, 1)
        await ctx.tick()
        ctx.set(d.clear, 0)
        ctx.set(d.wr_data.valid, 0)
        ctx.set(d.rd_data[0].ready, 0)
        await b.wait_idle(ctx)
        assert b.chk.outstanding == 0 and b.mem._reads == [] and b.mem._writes == []
        assert ctx.get(d.error) == ErrorCode.NONE
        assert not ctx.get(d.rd_data[0].valid)       # undelivered read data dropped
        n = len(b.mem.log)
        for _ in range(50):
            await ctx.tick()
        assert len(b.mem.log) == n                   # nothing more issued after the clear
        await send(ctx, d.rd_cmd[0], [{"addr": RD_REGION[0] + 64, "beats": 33}])
        await receive(ctx, d.rd_data[0], got2, 33)

    b.run(tb)
    assert got2 == expected_read(b.mem, [(RD_REGION[0] + 64, 33)])


# -- deterministic timing -----------------------------------------------------------------------

def test_deterministic_cycle_counts():
    """Exact cycles of a fixed scenario in the deterministic memory (RL 8, WL 4, Q 8); cycle 0 is
    the edge of both command handshakes, consumers and the data source never stall.

    Read 40 beats from 7 beats below a 4 KiB line: check at edge 0/1, AR at edges 3 (7 beats)
    and 4 (16); the FIFO (32 beats) then has 9 free beats, the third burst waits for the
    consumer to free 16: AR at 21 and 22 (1 beat). R beats arrive at 11..50 back to back, reach
    the client two edges later: the last at edge 52.

    Write 20 beats from 4 beats below a line: AW of 4 beats at 5 (after 4 data beats are
    buffered), W at 6..9, B at 13; the 16-beat burst waits for 16 buffered beats: AW at 21,
    W 22..37, B at 41, ``wr_done`` visible at edge 42."""
    b = Bench(n_clients=1)
    line = RD_REGION[0] + 4096
    rd = (line - 7 * BB, 40)
    wr = (WR_REGION[0] + 4096 - 4 * BB, 20)
    marks = {}
    got = []

    async def tb(ctx):
        d = b.dut
        ctx.set(d.rd_cmd[0].payload, {"addr": rd[0], "beats": rd[1]})
        ctx.set(d.rd_cmd[0].valid, 1)
        ctx.set(d.wr_cmd.payload, {"addr": wr[0], "beats": wr[1]})
        ctx.set(d.wr_cmd.valid, 1)
        ctx.set(d.rd_data[0].ready, 1)
        for cycle in range(200):
            _, _, rc, wc, rv, rl, wd = await ctx.tick().sample(
                d.rd_cmd[0].ready, d.wr_cmd.ready, d.rd_data[0].valid,
                d.rd_data[0].payload.last, d.wr_done)
            if rc and "rd_cmd" not in marks:
                marks["rd_cmd"] = cycle
                ctx.set(d.rd_cmd[0].valid, 0)
            if wc and "wr_cmd" not in marks:
                marks["wr_cmd"] = cycle
                ctx.set(d.wr_cmd.valid, 0)
            if rv:
                got.append(cycle)
                if rl:
                    marks["rd_last"] = cycle
            if wd:
                marks["wr_done"] = cycle
            if "wr_done" in marks and "rd_last" in marks:
                break

    async def wdata(ctx):
        await send(ctx, b.dut.wr_data, list(range(20)))

    b.run(tb, wdata)
    assert marks == {"rd_cmd": 0, "wr_cmd": 0, "rd_last": 52, "wr_done": 42}
    assert got == list(range(13, 53))
    assert [(t.accepted, t.completed, t.beats) for t in b.mem.transactions("r")] == [
        (3, 17, 7), (4, 33, 16), (21, 49, 16), (22, 50, 1)]
    assert [(t.accepted, t.completed, t.beats) for t in b.mem.transactions("w")] == [
        (5, 13, 4), (21, 41, 16)]
    # busy from the edge after the commands until the last R beat on the bus (edge 50)
    assert b.busy_cycles == 50


# -- construction and Verilog -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"n_read_clients": 0}, r"n_read_clients = 0 is not allowed: it must be an integer in "
                            r"\[1, 16\]"),
    ({"n_read_clients": 17}, r"\[1, 16\] \(one AXI ID each, axi_id_width = 4\)"),
    ({"n_read_clients": 1, "read_fifo_depth": 8}, r"read_fifo_depth = 8 .* >= max\(max_burst"),
    ({"n_read_clients": 1, "max_writes_outstanding": 0}, r"max_writes_outstanding = 0"),
])
def test_constructor_rejects_bad_parameters(kwargs, message):
    with pytest.raises(IlmpqValueError, match=message):
        DMA(CFG, **kwargs)


@pytest.mark.parametrize("preset", ["z020", "z045"])
def test_ports_follow_the_config(preset):
    cfg = get_config(preset)
    dut = DMA(cfg, n_read_clients=4, write_strobes=True)
    assert len(dut.bus.araddr) == cfg.axi_addr_width and len(dut.bus.rdata) == cfg.axi_data_width
    assert len(dut.bus.arid) == cfg.axi_id_width
    assert len(dut.rd_data) == 4 and len(dut.rd_cmd) == 4
    assert len(dut.wr_data.payload.strb) == cfg.beat_bytes
    assert dut.read_fifo_depth == cfg.read_fifo_beats
    assert dut.max_writes_outstanding == cfg.max_reads_outstanding
    assert "rd3_fifo" in rtlil.convert(dut, name="dma")     # elaborates at full size


@pytest.mark.verilator
def test_verilog_lints_clean():
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, lint
    try:
        for strobes in (False, True):
            v = verilog.convert(DMA(CFG, n_read_clients=3, write_strobes=strobes), name="dma")
            result = lint(v, "dma")
            assert result.clean, result.output[:3000]
    except VerilatorNotFound as e:
        pytest.skip(str(e))


# -- several AXI ports ------------------------------------------------------------------------

CLIENTS = ("fetch", "act", "weights", "store")


class MultiBench:
    """A :class:`MultiPortDMA` with one shared AXIMemory behind all its ports and a checker on
    each port."""

    def __init__(self, cfg, *, mode="random", seed=0, errors=None, init=None):
        from ilmpq.firmware.sim.models.axi_mem import memory_ports
        from ilmpq.hdl.dma import MultiPortDMA
        self.cfg = cfg
        self.dut = dut = MultiPortDMA(cfg, CLIENTS, write_strobes=False)
        buses = [dut.bus[p] for p in range(cfg.axi_ports)]
        self.mems = memory_ports(buses, base=BASE, size=MEM_SIZE, mode=mode, seed=seed,
                                 errors=errors)
        if init is not None:
            self.mems[0].data[:] = init
        self.chks = [AXIChecker(bus, max_burst=MB, max_reads_outstanding=cfg.max_reads_outstanding,
                                window=(BASE, BASE + MEM_SIZE), name=f"port{p}")
                     for p, bus in enumerate(buses)]
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        for m, c in zip(self.mems, self.chks):
            m.add_to(self.sim)
            c.add_to(self.sim)
        self.cycle = 0
        self.rd_beats = 0
        self.error_cycle = None
        self.sim.add_testbench(self._monitor, background=True)

    async def _monitor(self, ctx):
        d = self.dut
        ctx.set(d.win_base, BASE)
        ctx.set(d.win_limit, BASE + MEM_SIZE)
        async for _, _, rb, err in ctx.tick().sample(d.rd_beats, d.error):
            self.rd_beats += rb
            if err != ErrorCode.NONE and self.error_cycle is None:
                self.error_cycle = self.cycle
            self.cycle += 1


@pytest.mark.parametrize("ports", [2, 4])
def test_multiport_clients_on_their_ports(rng, ports):
    """Every read client and the write client on its CLIENT_PORTS port, random stalls on each
    port's memory and on every stream: each client gets exactly its data, the writes land in
    the one shared memory, every burst appears on its client's port only (checked by the
    port's memory log and ARID), ``rd_beats`` counts the R beats of all ports."""
    from ilmpq.hdl.dma import CLIENT_PORTS, MultiPortDMA
    cfg = CFG.replace(axi_ports=ports)
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    b = MultiBench(cfg, seed=int(rng.integers(2**31)), init=init)
    assert isinstance(b.dut, MultiPortDMA) and len(b.dut.bus) == ports
    rd_cmds = [random_cmds(rng, 3, RD_REGION, max_beats=60) for _ in CLIENTS]
    wr_cmds = random_cmds(rng, 3, WR_REGION, max_beats=60)
    n_wr = sum(n for _, n in wr_cmds)
    wdata = [int(x) for x in rng.integers(0, 2**64 - 1, n_wr, dtype=np.uint64, endpoint=True)]
    got = [[] for _ in CLIENTS]
    seeds = rng.integers(2**31, size=2 * len(CLIENTS) + 2)

    def reader(i):
        async def tb(ctx):
            await send(ctx, b.dut.rd_cmd[i], [{"addr": a, "beats": n} for a, n in rd_cmds[i]],
                       np.random.default_rng(seeds[i]), 0.3)
        return tb

    def consumer(i):
        async def tb(ctx):
            await receive(ctx, b.dut.rd_data[i], got[i], sum(n for _, n in rd_cmds[i]),
                          np.random.default_rng(seeds[len(CLIENTS) + i]), 0.3)
        return tb

    async def writer(ctx):
        await send(ctx, b.dut.wr_cmd, [{"addr": a, "beats": n} for a, n in wr_cmds])

    async def wsource(ctx):
        await send(ctx, b.dut.wr_data, wdata, np.random.default_rng(seeds[-1]), 0.3)

    async def wait_writes(ctx):
        done = 0
        for _ in range(TIMEOUT):
            _, _, d = await ctx.tick().sample(b.dut.wr_done)
            done += d
            if done == len(wr_cmds):
                return
        raise AssertionError(f"only {done}/{len(wr_cmds)} write commands done")

    b.sim.add_testbench(writer)
    b.sim.add_testbench(wsource)
    b.sim.add_testbench(wait_writes)
    for i in range(len(CLIENTS)):
        b.sim.add_testbench(reader(i))
        b.sim.add_testbench(consumer(i))
    b.sim.run()
    mem = b.mems[0]
    for i in range(len(CLIENTS)):
        assert got[i] == expected_read(mem, rd_cmds[i]), CLIENTS[i]
    expect = apply_writes(init, wr_cmds, wdata)
    np.testing.assert_array_equal(mem.data, expect)
    where = CLIENT_PORTS[ports]
    for p, m in enumerate(b.mems):
        mine = [c for c in CLIENTS if where[c] == p]
        for t in m.transactions("r"):
            c = mine[t.id]
            assert any(a <= t.addr < a + n * BB for a, n in rd_cmds[CLIENTS.index(c)]), (p, c)
        assert bool(m.transactions("w")) == (p == where["write"])
        assert m.read_beats == sum(sum(n for _, n in rd_cmds[CLIENTS.index(c)]) for c in mine)
        assert b.chks[p].outstanding == 0
    assert b.rd_beats == sum(m.read_beats for m in b.mems)


@pytest.mark.parametrize("port", [0, 1, 2, 3])
def test_multiport_error_on_any_port_halts_every_port(rng, port):
    """A SLVERR on one port's read burst latches DMA_READ_SLVERR with that burst's address and
    ``error_port``; no port accepts a new burst after the latch (beyond an address already on
    its bus); every port drains; ``clear`` resets all of them and a new command runs."""
    cfg = CFG.replace(axi_ports=4)
    from ilmpq.hdl.dma import CLIENT_PORTS
    client = [c for c in CLIENTS if CLIENT_PORTS[4][c] == port][0]
    b = MultiBench(cfg, seed=int(rng.integers(2**31)), errors={port: {("r", 2): "SLVERR"}})
    d = b.dut
    after = []

    async def tb(ctx):
        for i in range(len(CLIENTS)):
            ctx.set(d.rd_data[i].ready, 1)
            ctx.set(d.rd_cmd[i].payload, {"addr": RD_REGION[0] + 1024 * i, "beats": 120})
            ctx.set(d.rd_cmd[i].valid, 1)
        await ctx.tick()
        for i in range(len(CLIENTS)):
            ctx.set(d.rd_cmd[i].valid, 0)
        for _ in range(TIMEOUT):
            await ctx.tick()
            if ctx.get(d.error) != ErrorCode.NONE:
                break
        failing = b.mems[port].transactions("r")[2]
        assert ctx.get(d.error) == ErrorCode.DMA_READ_SLVERR
        assert ctx.get(d.error_addr) == failing.addr and ctx.get(d.error_port) == port
        for _ in range(TIMEOUT):
            await ctx.tick()
            if not ctx.get(d.busy):
                break
        assert ctx.get(d.error) == ErrorCode.DMA_READ_SLVERR
        for p, m in enumerate(b.mems):
            late = [t for t in m.transactions("r") if t.accepted > b.error_cycle]
            assert len(late) <= 1, (p, late)
            assert b.chks[p].outstanding == 0
        ctx.set(d.clear, 1)
        await ctx.tick()
        ctx.set(d.clear, 0)
        for _ in range(TIMEOUT):
            await ctx.tick()
            if not ctx.get(d.busy):
                break
        assert ctx.get(d.error) == ErrorCode.NONE
        i = CLIENTS.index(client)
        await send(ctx, d.rd_cmd[i], [{"addr": RD_REGION[0] + 4096, "beats": 20}])
        await receive(ctx, d.rd_data[i], after, 20)

    b.sim.add_testbench(tb)
    b.sim.run()
    assert after == expected_read(b.mems[0], [(RD_REGION[0] + 4096, 20)])


@pytest.mark.parametrize("preset,ports", [("tiny2p", 2), ("tiny", 4)])
def test_multiport_accelerator_end_to_end_random_stalls(rng, preset, ports):
    """A residual network through the whole accelerator with 2 and 4 AXI ports (Amaranth, one
    memory behind every port with independent random stalls, a protocol checker with the
    window on every port): every layer bit-exact with golden, every port carried traffic, and
    BYTES_READ / BYTES_WRITTEN equal the beats the ports' memories saw."""
    from amaranth.sim import Simulator as Sim
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.firmware.driver import Driver
    from ilmpq.firmware.sim.models.axi_mem import memory_ports
    from ilmpq.firmware.sim.simulate import AmaranthTransport, axi_buses
    from ilmpq.golden import reference
    from ilmpq.golden.random_models import random_qmodel
    from ilmpq.hdl.top import Accelerator
    cfg = get_config(preset).replace(axi_ports=ports)
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 6, 6),
                          max_channels=8, num_blocks=2)
    img = rng.integers(0, 256, size=(3, 6, 6))
    comp = compile_model(model, cfg)
    dut = Accelerator(cfg)
    buses = axi_buses(dut, cfg)
    assert len(buses) == ports and hasattr(dut, f"m_axi{ports - 1}_araddr")
    mems = memory_ports(buses, base=comp.base, size=comp.size, mode="random",
                        seed=int(rng.integers(2**31)))
    chks = [AXIChecker(bus, max_burst=cfg.max_burst,
                       max_reads_outstanding=cfg.max_reads_outstanding, window=comp.window,
                       name=m.name) for bus, m in zip(buses, mems)]
    out = {}

    async def testbench(ctx):
        drv = Driver(AmaranthTransport(ctx, dut, mems[0]), cfg)
        out["tensors"], out["stats"] = await drv.infer(comp, img, check=True)

    sim = Sim(dut)
    sim.add_clock(1e-8)
    for m, c in zip(mems, chks):
        m.add_to(sim)
        c.add_to(sim)
    sim.add_testbench(testbench)
    sim.run()
    ref = reference.run(model, img, spec=cfg.numeric)
    for layer in model.layers:
        np.testing.assert_array_equal(out["tensors"][layer.output], ref[layer.output])
    assert all(m.read_beats > 0 for m in mems)
    assert all(c.outstanding == 0 for c in chks)
    st = out["stats"].counters
    # the driver's own loads go through the memory directly: the ports saw the run's beats
    assert st["bytes_read"] == cfg.beat_bytes * sum(m.read_beats for m in mems)
    assert st["bytes_written"] <= cfg.beat_bytes * sum(m.write_beats for m in mems)


@pytest.mark.parametrize("ports,rl,fifo", [(2, 8, 32), (4, 24, 64)])
def test_multiport_cycle_model_matches_rtl(ports, rl, fifo):
    """The cycle model's read channel (one arbiter and memory queue per port, the FIFO depth
    and read latency from HWConfig / MemoryTiming) against the RTL's exact counters with the
    deterministic memory at the same latency on every port: within the model's 2 %."""
    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.firmware.sim.simulate import simulate
    from ilmpq.golden.random_models import ModelBuilder
    cfg = CFG.replace(axi_ports=ports, read_fifo_beats=fifo)
    rng = np.random.default_rng(7)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(8, 6, 6))
    x = b.conv("a", "input", 8, 3, padding=1)
    model = b.build(b.conv("b", x, 8, 1, residual=x))
    img = rng.integers(0, 256, size=(8, 6, 6))
    comp = compile_model(model, cfg)
    rtl = simulate(comp, [img], read_latency=rl)[0].stats.counters
    est = cm.estimate(comp, memory=cm.MemoryTiming(read_latency=rl))
    assert len(est.programs) == 1
    pred = est.programs[0].counters
    for k in ("pe_busy", "bytes_read", "bytes_written", "instructions"):
        assert pred[k] == rtl[k], k
    assert abs(pred["cycles"] - rtl["cycles"]) <= 0.02 * rtl["cycles"], (pred, rtl)


# -- a subordinate breaking the protocol, or not answering (issue 19) ---------------------------

PROTOCOL_FAULTS = {
    # fault on burst k of a 3-burst command: (code, index of the burst ERR_INFO names)
    ("r", 2, "extra_beat"): (ErrorCode.DMA_READ_EXTRA, 2),
    ("r", 1, "no_rlast"): (ErrorCode.DMA_READ_RLAST, 1),
    ("r", 1, "early_rlast"): (ErrorCode.DMA_READ_RLAST, 1),
    ("r", 1, "wrong_rid"): (ErrorCode.DMA_READ_RID, 0),
    ("w", 1, "wrong_bid"): (ErrorCode.DMA_WRITE_BID, 1),
    ("w", 1, "early_b"): (ErrorCode.DMA_WRITE_EARLY_B, 1),
}
#: silent faults: the burst ERR_INFO names, a request waiting for its ready if there is one
#: (the DMA issued AW 2 as its data was all there; AR 2 waits for FIFO room), else the oldest
#: burst waiting for its response
SILENT_INFO = {("r", 1, "silent"): 0, ("r", 1, "silent_request"): 1, ("w", 1, "silent"): 2,
               ("w", 1, "silent_request"): 1}
SILENT_FAULTS = list(SILENT_INFO)
LIMIT = 100         # bus watchdog limit of the silent cases


@pytest.mark.parametrize("fault", list(PROTOCOL_FAULTS) + SILENT_FAULTS,
                         ids=lambda f: f"{f[0]}{f[1]}_{f[2]}")
def test_subordinate_fault_latches_its_code_and_clear_is_bounded(rng, fault):
    """One command of three bursts; the subordinate breaks the protocol on one of them (or goes
    silent): the specific code and the failing burst's address latch, no faulty beat reaches
    the client and no wr_done is reported, nothing new is requested after the latch; the
    protocol faults leave the books balanced (the engine drains to idle without giving up),
    the silent ones trip the bus watchdog and the clear abandons them exactly ``LIMIT +
    CLEAR_SLACK`` edges after its pulse; after the interconnect's reset a round trip is
    bit-exact."""
    kind, k, name = fault
    silent = name.startswith("silent")
    init = rng.integers(0, 256, MEM_SIZE, dtype=np.uint8)
    b = Bench(n_clients=1, faults={(kind, k): name}, bus_timeout=LIMIT if silent else 0,
              init=init)
    got, after = [], []
    n_beats = 3 * MB
    cmd = {"addr": (RD_REGION if kind == "r" else WR_REGION)[0], "beats": n_beats}

    async def tb(ctx):
        d = b.dut
        if kind == "r":
            ctx.set(d.rd_data[0].ready, 1)
            await send(ctx, d.rd_cmd[0], [cmd])
        else:
            await send(ctx, d.wr_cmd, [cmd])
        for _ in range(TIMEOUT):
            _, _, valid, payload = await ctx.tick().sample(d.rd_data[0].valid,
                                                           d.rd_data[0].payload)
            if valid:
                got.append((int(payload.data), int(payload.last)))
            if ctx.get(d.error) != ErrorCode.NONE:
                break
        code = PROTOCOL_FAULTS[fault][0] if not silent else ErrorCode.DMA_BUS_TIMEOUT
        assert ctx.get(d.error) == code
        burst = SILENT_INFO[fault] if silent else PROTOCOL_FAULTS[fault][1]
        info = (RD_REGION if kind == "r" else WR_REGION)[0] + burst * MB * BB
        assert ctx.get(d.error_addr) == info
        if silent:
            assert ctx.get(d.busy)                  # waits for the bus, until the clear
        else:
            await b.wait_idle(ctx)                  # the books are balanced: it drains
            assert b.chk.outstanding == 0 and b.mem._reads == [] and b.mem._writes == []
            assert b.chk.subordinate_violations    # the fault really broke the protocol
        await ctx.tick()
        late = [t for t in b.mem.log if t.accepted > b.error_cycle]
        assert len(late) <= 1
        assert ctx.get(d.error) == code             # first error wins
        ctx.set(d.rd_data[0].ready, 0)
        ctx.set(d.clear, 1)
        await ctx.tick()
        ctx.set(d.clear, 0)
        abandoned = 0
        for edge in range(1, LIMIT + 10):
            _, _, busy, ab = await ctx.tick().sample(d.busy, d.abandoned)
            abandoned += ab
            if not busy:
                break
        if silent:
            assert edge == LIMIT + CLEAR_SLACK and abandoned == 1
            if fault != ("r", 1, "silent"):        # a request or W beat was waiting:
                assert b.chk.abandoned              # its valid dropped, only on a dead bus
            b.mem.reset_bus()
            b.chk.bus_reset()
        else:
            assert edge <= 2 and abandoned == 0
        assert ctx.get(d.error) == ErrorCode.NONE
        n_before = len(b.mem.log)
        ctx.set(d.rd_data[0].ready, 1)
        await send(ctx, d.rd_cmd[0], [{"addr": RD_REGION[0] + 4096, "beats": 20}])
        await receive(ctx, d.rd_data[0], after, 20)
        assert len(b.mem.log) == n_before + 2

    async def wdata(ctx):
        if kind == "w":
            await send(ctx, b.dut.wr_data, list(range(1, n_beats + 1)))

    b.run(tb, background=[wdata])
    expected = expected_read(b.mem, [(RD_REGION[0], n_beats)])
    assert got == expected[:len(got)]               # no faulty beat delivered
    assert after == expected_read(b.mem, [(RD_REGION[0] + 4096, 20)])
    assert b.done == []


def test_bus_watchdog_ignores_a_slow_but_live_subordinate():
    """Read latency 60 with a bus watchdog of 61 cycles: every burst completes, no error (the
    watchdog counts cycles without any handshake, not a burst's total time)."""
    b = Bench(n_clients=1, bus_timeout=61)
    b.mem.read_latency = 60
    got = []

    async def tb(ctx):
        d = b.dut
        await send(ctx, d.rd_cmd[0], [{"addr": RD_REGION[0], "beats": 5 * MB}])
        await receive(ctx, d.rd_data[0], got, 5 * MB)
        await b.wait_idle(ctx)
        assert ctx.get(d.error) == ErrorCode.NONE

    b.run(tb)
    assert got == expected_read(b.mem, [(RD_REGION[0], 5 * MB)])
