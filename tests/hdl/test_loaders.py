"""ActLoader's gathering LOAD_ROWS (hdl/isa.py ``LoadRows`` gather fields) on its own: the
buffer it leaves equals the ISA simulator's (``firmware/sim/isasim.py`` ``_gather_rows``) for
every byte rotation (shift mod 8), segments that start before and end after their row, one and
several raw rows per stored pixel, padded pixels, buffer words narrower than, as wide as and
wider than a beat, under random gaps on the DMA data stream; bad fields latch ``error``. Plain
loads striped over two ports (``act_ports`` 2): the split, both streams under random gaps, the
buffer's words, the check entries against both streams' hashes."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ilmpq.firmware.sim.isasim import IsaFault, _gather_rows
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import LoadRows, decode, encode, Opcode
from ilmpq.hdl.loaders import ActLoader

TINY = get_config("tiny")                                   # tn 4: two words a beat
CONFIGS = {"narrow": TINY, "beat": TINY.replace(tn=8), "wide": TINY.replace(tn=16),
           # striped plain loads (act_ports 2): gathering and strided loads stay on one port
           "wide2": TINY.replace(tn=16, axi_ports=2, act_ports=2)}


def _fields(**kw) -> dict:
    return decode(encode(Opcode.LOAD_ROWS, **kw))[1]


def _capture_write(ctx, dut, buf: bytearray, wb: int, lanes: int):
    """Apply this cycle's activation-buffer write (``wb``-byte words, ``lanes`` byte-lane
    enables) to ``buf``."""
    en = ctx.get(dut.wr_en)
    if en:
        a, d = ctx.get(dut.wr_addr), ctx.get(dut.wr_data).to_bytes(wb, "little")
        part = wb // lanes
        for ln in range(lanes):
            if en >> ln & 1:
                buf[a * wb + ln * part:a * wb + (ln + 1) * part] = d[ln * part:(ln + 1) * part]


def _run(cfg, loads, rng, gaps=0.3):
    """Run the LOAD_ROWS ``loads`` (``(fields, raw bytes)``) back to back; return the buffer
    (a byte array of ``act_depth`` words) after each and whether ``error`` rose."""
    dut = ActLoader(cfg)
    bb = cfg.beat_bytes
    wb = cfg.tn
    lanes = dut.wr_lanes
    buf = bytearray(cfg.act_depth * wb)
    snaps = []
    err = []

    async def bench(ctx):
        ctx.set(dut.c_done, 1 << 20)
        for f, raw in loads:
            ctx.set(dut.instr.payload, LoadRows.const(f))
            ctx.set(dut.instr.valid, 1)
            await ctx.tick().until(dut.instr.ready)
            ctx.set(dut.instr.valid, 0)
            done0 = ctx.get(dut.done_count)
            beats = [raw[i * bb:(i + 1) * bb] for i in range(len(raw) // bb)]
            k = 0
            cmd = False
            for _ in range(40 * len(beats) + 200):
                if ctx.get(dut.error):
                    break
                if ctx.get(dut.rd_cmd.valid) and not cmd:
                    assert ctx.get(dut.rd_cmd.payload.addr) == f["addr"]
                    assert ctx.get(dut.rd_cmd.payload.beats) == f["beats"]
                    ctx.set(dut.rd_cmd.ready, 1)
                    cmd = True
                else:
                    ctx.set(dut.rd_cmd.ready, 0)
                show = cmd and k < len(beats) and rng.random() >= gaps
                ctx.set(dut.rd_data.valid, int(show))
                if show:
                    ctx.set(dut.rd_data.payload, int.from_bytes(beats[k], "little"))
                _capture_write(ctx, dut, buf, wb, lanes)
                taken = show and ctx.get(dut.rd_data.ready)
                await ctx.tick()
                k += int(bool(taken))
                if ctx.get(dut.done_count) != done0:
                    break
            ctx.set(dut.rd_data.valid, 0)
            err.append(ctx.get(dut.error))
            snaps.append(bytes(buf))
            if err[-1]:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return snaps, err


def _cases(cfg, rng):
    """Gathering loads over every shift residue, with rows shorter and longer than the
    segments reach, 1..3 raw rows per stored pixel and padded pixels."""
    bb = cfg.beat_bytes
    half_beats = cfg.act_depth // 2 * cfg.tn // bb
    out = []
    for shift in (-13, -9, -8, -3, 0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 21):
        s = int(rng.integers(1, 4))
        sb = int(rng.integers(1, 4))
        pix = int(rng.integers(1, 6))
        pb = s * sb + int(rng.integers(0, 2)) * (cfg.tn // bb if cfg.tn > bb else 1)
        if (pb * bb) % cfg.tn:
            pb += (cfg.tn - (pb * bb) % cfg.tn) // bb
        rb = int(rng.integers(1, pix * sb + 3))
        rows = s * int(rng.integers(1, 3))
        assert rows // s * pix * pb <= half_beats
        f = _fields(addr=0x1000, beats=rows * rb, gather=1, row_beats=rb, shift=shift,
                    seg_beats=sb, seg_rows=s, pix=pix, pix_beats=pb)
        raw = rng.integers(0, 256, size=rows * rb * bb, dtype=np.uint8).tobytes()
        out.append((f, raw))
    return out


@pytest.mark.parametrize("width", list(CONFIGS))
def test_gathering_load_matches_the_isa_simulator(rng, width):
    cfg = CONFIGS[width]
    loads = _cases(cfg, rng)
    snaps, err = _run(cfg, loads, rng)
    assert not any(err)
    half = cfg.act_depth // 2 * cfg.tn
    prev = [None, None]
    for n, ((f, raw), snap) in enumerate(zip(loads, snaps)):
        h = n % 2
        ref = _gather_rows(cfg, raw, f, n, prev[h])
        got = np.frombuffer(snap[h * half:(h + 1) * half], np.uint8)[:ref.size]
        np.testing.assert_array_equal(got, ref.reshape(-1), err_msg=f"load {n}: {f}")
        prev[h] = np.frombuffer(snap[h * half:(h + 1) * half], np.uint8).reshape(-1, cfg.tn)


@pytest.mark.parametrize("bad", [
    {"seg_rows": 0}, {"seg_beats": 0}, {"pix": 0}, {"row_beats": 0},
    {"pix_beats": 1},                          # less than seg_rows * seg_beats
    {"pix": 4095, "pix_beats": 1023},          # writes past the buffer half
    {"beats": 3},                              # ends inside a stored row
])
def test_gathering_load_bad_fields_latch_error(rng, bad):
    cfg = TINY
    f = dict(addr=0x1000, beats=4, gather=1, row_beats=2, shift=-3, seg_beats=1, seg_rows=2,
             pix=2, pix_beats=2)
    f.update(bad)
    f = _fields(**f)
    raw = bytes(range(256))[:f["beats"] * cfg.beat_bytes]
    _, err = _run(cfg, [(f, raw)], rng, gaps=0.0)
    assert err == [1]
    with pytest.raises(IsaFault, match="INSTR_FIELD"):
        _gather_rows(cfg, raw, f, 0, None)


def _run_strided(cfg, f, mem: bytes, rng, gaps=0.3):
    """One strided LOAD_ROWS against a DMA model serving ``mem`` (at 0) with random gaps on
    the command and data streams; return the commands, the buffer half and ``error``."""
    dut = ActLoader(cfg)
    bb, wb, lanes = cfg.beat_bytes, cfg.tn, dut.wr_lanes
    buf = bytearray(cfg.act_depth * wb)
    cmds, out = [], {}

    async def bench(ctx):
        ctx.set(dut.c_done, 1 << 20)
        ctx.set(dut.instr.payload, LoadRows.const(f))
        ctx.set(dut.instr.valid, 1)
        await ctx.tick().until(dut.instr.ready)
        ctx.set(dut.instr.valid, 0)
        queue = []                                   # beats of accepted commands, in order
        for _ in range(60 * f["beats"] + 200):
            if ctx.get(dut.error) or ctx.get(dut.done_count):
                break
            take = bool(rng.random() >= gaps)
            ctx.set(dut.rd_cmd.ready, int(take))
            if take and ctx.get(dut.rd_cmd.valid):
                a, n = ctx.get(dut.rd_cmd.payload.addr), ctx.get(dut.rd_cmd.payload.beats)
                cmds.append((a, n))
                queue += [mem[a + i * bb:a + (i + 1) * bb] for i in range(n)]
            show = bool(queue) and rng.random() >= gaps
            ctx.set(dut.rd_data.valid, int(show))
            if show:
                ctx.set(dut.rd_data.payload, int.from_bytes(queue[0], "little"))
            _capture_write(ctx, dut, buf, wb, lanes)
            taken = show and ctx.get(dut.rd_data.ready)
            await ctx.tick()
            if taken:
                queue.pop(0)
        out["error"] = ctx.get(dut.error)
        out["done"] = ctx.get(dut.done_count)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return cmds, bytes(buf[:cfg.act_depth // 2 * wb]), out


@pytest.mark.parametrize("width", list(CONFIGS))
def test_strided_load_reads_only_the_used_pixels(rng, width):
    """Strided LOAD_ROWS (the 1x1 stride-2 projections): one DMA read a used pixel (or a row),
    in order, and the beats land contiguously as the ISA simulator says, under stalls."""
    from ilmpq.firmware.sim.isasim import Memory, _strided_read
    cfg = CONFIGS[width]
    bb = cfg.beat_bytes
    mem = rng.integers(0, 256, size=1 << 14, dtype=np.uint8).tobytes()
    m = Memory(0, len(mem))
    m.data[:] = mem
    for cb, n, cs, rs, rows in ((1, 3, 16, 96, 2), (2, 4, 48, 400, 3), (5, 1, 0, 120, 2),
                                (1, 1, 0, 8, 4)):
        f = _fields(addr=0x200, beats=cb * n * rows, chunk_beats=cb, chunks=n,
                    chunk_stride=cs, row_stride=rs)
        cmds, got, out = _run_strided(cfg, f, mem, rng)
        assert not out["error"] and out["done"] == 1
        assert cmds == [(0x200 + r * rs + k * cs, cb) for r in range(rows) for k in range(n)]
        ref = _strided_read(cfg, m, f, 0)
        assert got[:len(ref)] == ref
        assert len(ref) == f["beats"] * bb


@pytest.mark.parametrize("bad", [{"beats": 5}, {"beats": 4}, {"chunks": 0}, {"gather": 1}])
def test_strided_load_bad_fields_latch_error(rng, bad):
    """Not a whole number of rows (the read past ``beats`` is never issued), no chunks, or
    strided and gathering at once: ``error``, as the ISA simulator's INSTR_FIELD."""
    from ilmpq.firmware.sim.isasim import Memory, _strided_read
    cfg = TINY
    f = dict(addr=0x200, beats=6, chunk_beats=1, chunks=3, chunk_stride=16, row_stride=96,
             row_beats=1, seg_beats=1, seg_rows=1, pix=1, pix_beats=1)
    f.update(bad)
    f = _fields(**f)
    mem = bytes(1 << 12)
    cmds, _, out = _run_strided(cfg, f, mem, rng, gaps=0.0)
    assert out["error"] == 1
    assert sum(n for _, n in cmds) <= f["beats"]
    m = Memory(0, len(mem))
    with pytest.raises(IsaFault, match="INSTR_FIELD"):
        _strided_read(cfg, m, f, 0)


def _run_striped(cfg, f, mem: bytes, rng, entries=(), gaps=0.3):
    """One plain LOAD_ROWS on a striped build against two DMA clients serving ``mem`` (at 0),
    each with random gaps on its command and data streams (``entries``: the check entries'
    beats, served on the first client after its rows); return the commands per client, the
    buffer half, ``done_count``, ``error`` and ``err_act``."""
    dut = ActLoader(cfg)
    bb, wb, lanes = cfg.beat_bytes, cfg.tn, dut.wr_lanes
    buf = bytearray(cfg.act_depth * wb)
    cmds, out = {"a": [], "b": []}, {}
    chk_addr = f["addr"] + f["beats"] * bb      # where the test puts the entries (wr_base)

    async def bench(ctx):
        ctx.set(dut.c_done, 1 << 20)
        ctx.set(dut.wr_base, chk_addr - f["chk_off"] * bb)
        ctx.set(dut.instr.payload, LoadRows.const(f))
        ctx.set(dut.instr.valid, 1)
        await ctx.tick().until(dut.instr.ready)
        ctx.set(dut.instr.valid, 0)
        queues = {"a": [], "b": []}
        ports = {"a": (dut.rd_cmd, dut.rd_data), "b": (dut.rd_cmd_b, dut.rd_data_b)}
        for _ in range(60 * f["beats"] + 200):
            if ctx.get(dut.error) or ctx.get(dut.err_act) or ctx.get(dut.done_count):
                break
            taken = {}
            for c, (cmd, dat) in ports.items():
                take = bool(rng.random() >= gaps)
                ctx.set(cmd.ready, int(take))
                if take and ctx.get(cmd.valid):
                    a, n = ctx.get(cmd.payload.addr), ctx.get(cmd.payload.beats)
                    cmds[c].append((a, n))
                    if a == chk_addr and c == "a":
                        queues[c] += list(entries)
                    else:
                        queues[c] += [mem[a + i * bb:a + (i + 1) * bb] for i in range(n)]
                show = bool(queues[c]) and rng.random() >= gaps
                ctx.set(dat.valid, int(show))
                if show:
                    ctx.set(dat.payload, int.from_bytes(queues[c][0], "little"))
                taken[c] = show and ctx.get(dat.ready)
            _capture_write(ctx, dut, buf, wb, lanes)
            await ctx.tick()
            for c in ports:
                if taken[c]:
                    queues[c].pop(0)
        for k in ("error", "err_act", "done_count"):
            out[k] = ctx.get(getattr(dut, k))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return cmds, bytes(buf[:cfg.act_depth // 2 * wb]), out


def _entry_sum(cfg, mem: bytes, addr: int, beats: int) -> int:
    """The check entries' sum of ``beats`` beats at ``addr`` (docs/reliability.md 3.1)."""
    from ilmpq.hdl.isa import act_check_sum
    return act_check_sum(addr, mem[addr:addr + beats * cfg.beat_bytes], cfg.beat_bytes)


@pytest.mark.parametrize("tn,cases", [(16, ((1, 0), (2, 0), (5, 2), (8, 0), (13, 3))),
                                      (32, ((0, 0), (1, 1), (3, 1)))])
def test_striped_plain_load_splits_at_a_word_and_fills_the_buffer(rng, tn, cases):
    """A plain load of w words (k = tn*8/64 beats each): the first ceil(w/2) words on ``act``,
    the rest on ``act_b`` (one word or less -- words = 0: half a word -- is not striped); the
    buffer holds the rows in order under random gaps on both clients; the check entries, read after the first stream's rows, match
    both streams' hashes (and one entry off by one latches ``err_act``)."""
    cfg = TINY.replace(tn=tn, axi_ports=2, act_ports=2)
    bb, k = cfg.beat_bytes, tn // cfg.beat_bytes
    mem = rng.integers(0, 256, size=1 << 14, dtype=np.uint8).tobytes()
    for words, chk in cases:
        beats = words * k or k // 2
        f = _fields(addr=0x400, beats=beats, chk_beats=chk, chk_off=7)
        split = (words + 1) // 2 * k
        ents = []
        if chk:
            total = _entry_sum(cfg, mem, 0x400, beats)
            parts = [int(v) for v in rng.integers(0, 1 << 32, chk - 1)]
            parts.append((total - sum(parts)) % (1 << 32))
            ents = [p.to_bytes(bb, "little") for p in parts]
        cmds, got, out = _run_striped(cfg, f, mem, rng, entries=ents)
        assert not out["error"] and not out["err_act"] and out["done_count"] == 1, (words, out)
        if beats <= k:
            assert cmds == {"a": [(0x400, beats)] + ([(0x400 + beats * bb, chk)] if chk
                                                      else []), "b": []}
        else:
            assert cmds["b"] == [(0x400 + split * bb, beats - split)]
            assert cmds["a"] == [(0x400, split)] + ([(0x400 + beats * bb, chk)] if chk
                                                    else [])
        assert got[:words * k * bb] == mem[0x400:0x400 + words * k * bb]
        if chk and words > 1:
            bad = list(ents)
            bad[-1] = ((int.from_bytes(bad[-1], "little") + 1) % (1 << 32)).to_bytes(bb, "little")
            _, _, out = _run_striped(cfg, f, mem, rng, entries=bad)
            assert out["err_act"] and out["done_count"] == 0
