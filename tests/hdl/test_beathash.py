"""BeatHashSum (hdl/beathash.py) on its own: ``hash`` one cycle after each beat equals
``isa.act_check`` of the beat and its address, ``sum`` equals ``isa.act_check_sum`` of the beats
given since ``clear`` (beats given in random cycles, edge addresses and beats included), and
``ok`` compares the entries' sum with it (an entry with a byte set above its sum is never ok)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ilmpq.hdl.beathash import BeatHashSum
from ilmpq.hdl.isa import act_check


def _beats(rng, n, bb):
    beats = rng.integers(0, 256, (n, bb), dtype=np.uint8)
    beats[0] = 0                 # edges: all zeros, all ones
    beats[1] = 0xFF
    return beats


@pytest.mark.parametrize("B", [32, 64])
def test_hashes_sum_and_entries(rng, B):
    bb = B // 8
    dut = BeatHashSum(B)
    n = 24
    addrs = rng.integers(0, 1 << 32, n, dtype=np.uint64) & ~np.uint64(bb - 1)
    addrs[0], addrs[1] = 0, (1 << 32) - bb
    beats = _beats(rng, n, bb)
    want = act_check(addrs, beats)
    total = int(want.astype(np.uint64).sum()) & 0xFFFF_FFFF
    seen = []
    sums = {}

    async def bench(ctx):
        # a stale sum and a bad entry before the clear are forgotten
        ctx.set(dut.entry, 5 << 32 if B > 32 else 5)
        ctx.set(dut.entry_valid, 1)
        await ctx.tick()
        ctx.set(dut.entry_valid, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.sum) == 0 and ctx.get(dut.ok)
        k = 0
        while k < n:
            give = rng.random() < 0.6
            ctx.set(dut.valid, int(give))
            if give:
                ctx.set(dut.addr, int(addrs[k]))
                ctx.set(dut.beat, int.from_bytes(beats[k].tobytes(), "little"))
            await ctx.tick()
            if ctx.get(dut.hash_valid):
                seen.append(ctx.get(dut.hash))
            k += give
        ctx.set(dut.valid, 0)
        await ctx.tick()
        if ctx.get(dut.hash_valid):
            seen.append(ctx.get(dut.hash))
        await ctx.tick()
        assert not ctx.get(dut.hash_valid)
        sums["hashes"] = ctx.get(dut.sum)
        # the entries: the sum split over three beats (mod 2**32), then ok
        parts = [int(x) for x in rng.integers(0, 1 << 32, 2, dtype=np.uint64)]
        parts.append((total - sum(parts)) & 0xFFFF_FFFF)
        for i, p in enumerate(parts):
            assert not ctx.get(dut.ok) or i == 0 and total == 0
            ctx.set(dut.entry, p)
            ctx.set(dut.entry_valid, 1)
            await ctx.tick()
        ctx.set(dut.entry_valid, 0)
        sums["ok"] = ctx.get(dut.ok)
        if B > 32:
            # a byte above the sum: never ok, even with a matching sum
            ctx.set(dut.entry, 1 << (B - 1))
            ctx.set(dut.entry_valid, 1)
            await ctx.tick()
            ctx.set(dut.entry_valid, 0)
            sums["bad_ok"] = ctx.get(dut.ok)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(seen, np.uint32), want)
    assert sums["hashes"] == total
    assert sums["ok"] == 1
    if B > 32:
        assert sums["bad_ok"] == 0


def test_hash_only_variant_has_no_sum(rng):
    dut = BeatHashSum(64, running_sum=False)
    assert not hasattr(dut, "sum") and not hasattr(dut, "ok")
    beats = _beats(rng, 3, 8)
    addrs = np.array([0x40, 0xFFFF_FFF8, 0x1000], np.uint64)
    seen = []

    async def bench(ctx):
        for k in range(3):
            ctx.set(dut.valid, 1)
            ctx.set(dut.addr, int(addrs[k]))
            ctx.set(dut.beat, int.from_bytes(beats[k].tobytes(), "little"))
            await ctx.tick()
            assert ctx.get(dut.hash_valid)
            seen.append(ctx.get(dut.hash))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(seen, np.uint32), act_check(addrs, beats))
