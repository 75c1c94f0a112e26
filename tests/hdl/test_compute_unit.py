"""The compute unit's beat stream against a direct model of the loop nest."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from ilmpq.hdl.compute import ComputeUnit
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import Compute

from hdl_util import assert_instruction_rejected, expected_conv_beats, run_compute


expected_beats = expected_conv_beats    # (data, addr, bank, first, swap, last) per beat


def make_case(rng, cfg, *, kh, kw, stride, pad, in_h, in_w, groups, n_mtiles, rows=None):
    tn = cfg.tn
    out_h = (in_h + 2 * pad - kh) // stride + 1
    out_w = (in_w + 2 * pad - kw) // stride + 1
    words = rng.integers(0, 256, size=(in_h * in_w * groups, tn), dtype=np.uint8)
    ins = dict(n_mtiles=n_mtiles, kh=kh, kw=kw, groups=groups, stride_y=stride,
               stride_x=stride, out_h=out_h, out_w=out_w, in_rows=in_h, in_w=in_w,
               ty0=-pad, tx0=-pad)
    return ins, words


@pytest.mark.parametrize("kh,stride,pad,in_hw,groups,n_mtiles", [
    (3, 1, 1, (5, 4), 2, 2),
    (1, 1, 0, (3, 3), 1, 1),
    (3, 2, 1, (6, 5), 1, 3),
    (5, 1, 2, (4, 4), 1, 1),
    (7, 2, 3, (7, 7), 1, 1),
])
def test_compute_beats_match_loop_nest(rng, kh, stride, pad, in_hw, groups, n_mtiles):
    cfg = get_config("tiny")
    ins, words = make_case(rng, cfg, kh=kh, kw=kh, stride=stride, pad=pad, in_h=in_hw[0],
                           in_w=in_hw[1], groups=groups, n_mtiles=n_mtiles)
    _, got = run_compute(cfg, [ins], words, rng, ready_prob=0.7)
    exp = expected_beats(ins, words, cfg.tn, cfg.act_bits)
    assert got == exp


def test_two_instructions_alternate_halves_and_banks(rng):
    cfg = get_config("tiny")
    ins0, w0 = make_case(rng, cfg, kh=3, kw=3, stride=1, pad=1, in_h=3, in_w=3, groups=1,
                         n_mtiles=1)
    ins1, w1 = make_case(rng, cfg, kh=1, kw=1, stride=1, pad=0, in_h=2, in_w=3, groups=2,
                         n_mtiles=2)
    half = cfg.act_depth // 2
    words = np.zeros((cfg.act_depth, cfg.tn), dtype=np.uint8)
    words[:len(w0)] = w0
    words[half:half + len(w1)] = w1
    _, got = run_compute(cfg, [ins0, ins1], words, rng, ready_prob=0.8)
    exp = (expected_beats(ins0, w0, cfg.tn, cfg.act_bits, g0=0)
           + expected_beats(ins1, w1, cfg.tn, cfg.act_bits, g0=1))
    assert got == exp


@pytest.mark.parametrize("act_bits", [8, 4])
def test_padding_reads_the_offset_binary_zero(rng, act_bits):
    """``pad_ob``: padding positions read ``2**(act_bits-1)`` (the stored zero of an
    offset-binary input), real positions their bytes unchanged; then an instruction without it
    pads with 0 again. Edge codes 0/127/128/255 in the buffer, random back-pressure."""
    cfg = dataclasses.replace(get_config("tiny"), act_bits=act_bits)
    ins0, w0 = make_case(rng, cfg, kh=3, kw=3, stride=1, pad=1, in_h=3, in_w=4, groups=2,
                         n_mtiles=2)
    ins1, w1 = make_case(rng, cfg, kh=3, kw=3, stride=2, pad=1, in_h=3, in_w=3, groups=1,
                         n_mtiles=1)
    ins0["pad_ob"] = 1
    w0[:4] = [[0, 127, 128, 255], [255, 128, 127, 0], [128] * 4, [127] * 4]
    w1[:2] = [[0, 127, 128, 255], [128] * 4]
    half = cfg.act_depth // 2
    words = np.zeros((cfg.act_depth, cfg.tn), dtype=np.uint8)
    words[:len(w0)] = w0
    words[half:half + len(w1)] = w1
    _, got = run_compute(cfg, [ins0, ins1], words, rng, ready_prob=0.6)
    exp0 = expected_beats(ins0, w0, cfg.tn, cfg.act_bits, g0=0)
    assert got == exp0 + expected_beats(ins1, w1, cfg.tn, cfg.act_bits, g0=2)
    assert exp0 != expected_beats(dict(ins0, pad_ob=0), w0, cfg.tn, cfg.act_bits, g0=0)


def test_full_rate_when_ready(rng):
    """One beat per cycle in steady state: the exact cycle count of a fixed case."""
    cfg = get_config("tiny")
    ins, words = make_case(rng, cfg, kh=1, kw=1, stride=1, pad=0, in_h=4, in_w=4, groups=1,
                           n_mtiles=1)
    dut = ComputeUnit(cfg)
    mem = {a: int.from_bytes(bytes(w), "little") for a, w in enumerate(words)}
    cycles = []

    async def memory(ctx):
        async for _, _, en, addr in ctx.tick().sample(dut.rd_en, dut.rd_addr):
            if en:
                ctx.set(dut.rd_data, mem.get(addr, 0))

    async def tb(ctx):
        ctx.set(dut.la_done, 1)
        ctx.set(dut.drained, 0)
        ctx.set(dut.beats.ready, 1)
        ctx.set(dut.instr.payload, Compute.const(ins))
        ctx.set(dut.instr.valid, 1)
        await ctx.tick()
        ctx.set(dut.instr.valid, 0)
        for cyc in range(100):
            if ctx.get(dut.beats.valid):
                cycles.append(cyc)
            if ctx.get(dut.done_count) == 1 and len(cycles) == 16:
                break
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(memory)
    sim.add_testbench(tb)
    sim.run()
    assert len(cycles) == 16
    assert cycles == list(range(cycles[0], cycles[0] + 16))  # back to back


def test_bad_instruction_sets_error(rng):
    cfg = get_config("tiny")
    ins = dict(n_mtiles=1, kh=1, kw=1, groups=1, stride_y=1, stride_x=1,
               out_h=cfg.acc_depth, out_w=2, in_rows=1, in_w=1, ty0=0, tx0=0)
    assert_instruction_rejected(cfg, ins)
