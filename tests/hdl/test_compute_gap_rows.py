"""``Compute.gap_rows`` (batching, issue #15): an activation-buffer row whose bit is set reads
as padding on the conv path (0, or the stored zero ``2**(act_bits-1)`` with ``pad_ob``), the
other rows their bytes; bits above the loaded rows and rows at or above GAP_ROWS change
nothing. Checked beat for beat against a direct model of the loop nest, random back-pressure."""

import numpy as np
import pytest

from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import GAP_ROWS, Compute

from hdl_util import expected_conv_beats, run_compute


def expected(ins, act_half, cfg, g0=0):
    """(data, addr, bank, first, swap, last) of each beat, the gap rows as padding."""
    return expected_conv_beats(ins, act_half, cfg.tn, cfg.act_bits, g0)


def test_gap_field_is_appended():
    """The field comes after every field older programs have (the last of them is ``dw``), so
    programs without it decode to 0; only later appended fields (``keep``) follow it."""
    from amaranth.lib import data
    layout = data.Layout.cast(Compute)
    fields = dict(layout)
    names = list(fields)
    assert names[names.index("dw") + 1:] == ["gap_rows", "keep"]
    assert fields["gap_rows"].offset == fields["dw"].offset + fields["dw"].shape.width
    assert fields["keep"].offset == fields["gap_rows"].offset + GAP_ROWS


@pytest.mark.parametrize("pad_ob", [0, 1])
def test_gap_rows_read_as_padding(rng, pad_ob):
    cfg = get_config("tiny")
    # two 3-row images stacked with one gap row (row 3), a 3x3 stride-1 conv over the stack,
    # then a stride-2 one over two 2-row images with a period of 4 (gap rows 2, 3) and a
    # third instruction with bits only above its rows (no effect)
    ins0 = dict(n_mtiles=2, kh=3, kw=3, groups=2, stride_y=1, stride_x=1, out_h=7, out_w=3,
                in_rows=7, in_w=3, ty0=-1, tx0=-1, pad_ob=pad_ob, gap_rows=1 << 3)
    ins1 = dict(n_mtiles=1, kh=3, kw=3, groups=1, stride_y=2, stride_x=2, out_h=3, out_w=2,
                in_rows=6, in_w=4, ty0=-1, tx0=-1, pad_ob=pad_ob, gap_rows=0b1100)
    ins2 = dict(n_mtiles=1, kh=1, kw=1, groups=1, stride_y=1, stride_x=1, out_h=2, out_w=2,
                in_rows=2, in_w=2, ty0=0, tx0=0, gap_rows=(1 << 63) | (1 << 2))
    half = cfg.act_depth // 2
    words = rng.integers(0, 256, size=(cfg.act_depth, cfg.tn), dtype=np.uint8)
    words[:4] = [[0, 127, 128, 255], [255, 128, 127, 0], [128] * 4, [127] * 4]
    # instruction 2 reads half 0 again (the third COMPUTE)
    _, got = run_compute(cfg, [ins0, ins1, ins2], words, rng, ready_prob=0.6)
    exp = (expected(ins0, words[:half], cfg, 0) + expected(ins1, words[half:], cfg, 2)
           + expected(ins2, words[:half], cfg, 3))
    assert got == exp
    # the gap rows did change the beats (the case exercises them)
    assert exp[:len(expected(ins0, words[:half], cfg))] != expected(
        dict(ins0, gap_rows=0), words[:half], cfg, 0)
    assert expected(ins2, words[:half], cfg, 3) == expected(dict(ins2, gap_rows=0),
                                                            words[:half], cfg, 3)
