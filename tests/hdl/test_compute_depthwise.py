"""The compute unit's depthwise windowing (``Compute.dw``, issue 16): mtile ``t`` iterates
only the ``lanes_pad / tn`` groups of its channel window (a repeat mask keeps a window for
further mtiles; groups past ``groups`` are zero beats), against a direct model of the loop
nest, with random back-pressure."""

import numpy as np
import pytest

from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import DW_MAX_MTILES

from hdl_util import assert_instruction_rejected, run_compute

TINY = get_config("tiny")


def expected_beats(ins, act_half, cfg, g0=0):
    """(data, addr, bank, first, swap, last) of every beat of one COMPUTE, written from the
    ISA's definition of ``dw`` (hdl/isa.py)."""
    groups, in_w, dw = ins["groups"], ins["in_w"], ins.get("dw", 0)
    ppg = cfg.lanes_pad // cfg.tn
    out, base = [], 0
    for mt in range(ins["n_mtiles"]):
        if dw & 1 and mt and dw >> mt & 1:
            base += ppg
        cgs = range(base, base + ppg) if dw & 1 else range(groups)
        sets = [(kr, kc, cg) for kr in range(ins["kh"]) for kc in range(ins["kw"]) for cg in cgs]
        for si, (kr, kc, cg) in enumerate(sets):
            for oy in range(ins["out_h"]):
                for ox in range(ins["out_w"]):
                    iy = ins["ty0"] + oy * ins["stride_y"] + kr
                    ix = ins["tx0"] + ox * ins["stride_x"] + kc
                    if 0 <= iy < ins["in_rows"] and 0 <= ix < in_w and cg < groups:
                        word = act_half[(iy * in_w + ix) * groups + cg]
                        d = tuple(int(b) & ((1 << cfg.act_bits) - 1) for b in word)
                    else:
                        d = (0,) * cfg.tn
                    p = oy * ins["out_w"] + ox
                    last = si == len(sets) - 1 and p == ins["out_h"] * ins["out_w"] - 1
                    out.append((d, p, (g0 + mt) % 2, int(si == 0), int(p == 0), int(last)))
    return out


def _case(rng, *, k, stride, pad, in_h, in_w, groups, n_mtiles, dw):
    out_h = (in_h + 2 * pad - k) // stride + 1
    out_w = (in_w + 2 * pad - k) // stride + 1
    words = rng.integers(0, 256, size=(in_h * in_w * groups, TINY.tn), dtype=np.uint8)
    return dict(n_mtiles=n_mtiles, kh=k, kw=k, groups=groups, stride_y=stride,
                stride_x=stride, out_h=out_h, out_w=out_w, in_rows=in_h, in_w=in_w,
                ty0=-pad, tx0=-pad, dw=dw), words


# tiny: lanes_pad / tn = 2 groups a window
@pytest.mark.parametrize("k,stride,pad,in_hw,groups,n_mtiles,dw", [
    (3, 1, 1, (4, 3), 4, 2, 0b11),          # two windows, one mtile each
    (3, 2, 1, (5, 4), 3, 3, 0b101),         # window 0 twice, then the half window 1 (cg 3 zero)
    (1, 1, 0, (3, 3), 5, 4, 0b1011),        # windows 0, 1, 1, 2 (2: groups 4 and 5, 5 zero)
], ids=["s1", "s2-repeat-partial", "1x1-repeat"])
def test_depthwise_windows_match_loop_nest(rng, k, stride, pad, in_hw, groups, n_mtiles, dw):
    ins, words = _case(rng, k=k, stride=stride, pad=pad, in_h=in_hw[0], in_w=in_hw[1],
                       groups=groups, n_mtiles=n_mtiles, dw=dw)
    exp = expected_beats(ins, words, TINY)
    assert len(exp) == n_mtiles * k * k * 2 * ins["out_h"] * ins["out_w"]
    _, got = run_compute(TINY, [ins], words, rng, n_expected=len(exp), ready_prob=0.6)
    assert got == exp


def test_depthwise_then_dense_conv(rng):
    """The window base does not leak into the next (dense) COMPUTE."""
    ins0, w0 = _case(rng, k=3, stride=1, pad=1, in_h=3, in_w=3, groups=3, n_mtiles=2, dw=0b11)
    ins1, w1 = _case(rng, k=1, stride=1, pad=0, in_h=2, in_w=3, groups=3, n_mtiles=2, dw=0)
    half = TINY.act_depth // 2
    words = np.zeros((TINY.act_depth, TINY.tn), dtype=np.uint8)
    words[:len(w0)] = w0
    words[half:half + len(w1)] = w1
    exp = expected_beats(ins0, w0, TINY) + expected_beats(ins1, w1, TINY, g0=2)
    _, got = run_compute(TINY, [ins0, ins1], words, rng, n_expected=len(exp),
                         ready_prob=0.75)
    assert got == exp


def test_depthwise_too_many_mtiles_is_an_error(rng):
    ins, _ = _case(rng, k=1, stride=1, pad=0, in_h=1, in_w=1, groups=1,
                   n_mtiles=DW_MAX_MTILES + 1, dw=1)
    assert_instruction_rejected(TINY, ins)
