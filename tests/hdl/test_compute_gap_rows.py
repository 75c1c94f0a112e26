"""Stacked images on the conv path (batching, issue #15): ``Compute.img_rows / img_period /
img_phase / img_pad``. B images stacked in one tensor, image ``b``'s input rows at ``b * P_I``;
an input row outside the output row's own image (``v = phi - img_pad + kr`` outside ``[0,
img_rows)``, ``phi`` the output row's anchor row mod ``P_I``) reads as padding (0, or the stored
zero ``2**(act_bits-1)`` with ``pad_ob``). Random stacked convs (tiles straddling images,
stride 2, gap-free and with gaps), checked beat for beat against the loop-nest model under
random back-pressure; the model itself against each image's own conv."""

import numpy as np
import pytest

from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import Compute

from hdl_util import assert_instruction_rejected, expected_conv_beats, run_compute


def expected(ins, act_half, cfg, g0=0):
    """(data, addr, bank, first, swap, last) of each beat, other images' rows as padding."""
    return expected_conv_beats(ins, act_half, cfg.tn, cfg.act_bits, g0)


def test_stack_fields_follow_dw():
    """The fields replace session 7's gap-row mask after ``dw``; ``keep`` follows them."""
    from amaranth.lib import data
    fields = dict(data.Layout.cast(Compute))
    names = list(fields)
    assert names[names.index("dw") + 1:] == ["img_rows", "img_period", "img_phase", "img_pad",
                                              "keep"]
    assert fields["img_rows"].offset == fields["dw"].offset + fields["dw"].shape.width


def _stacked_tile(rng, cfg, *, gaps: bool):
    """A random tile of a conv over B stacked images: ``(instruction, (B, P_I, H_I, P_O, H_O,
    o0, r0))``. ``gaps``: ``P_I > H_I`` (else ``P_I = H_I = s * H_O``, no gap)."""
    while True:
        s = int(rng.integers(1, 3))
        kh = int(rng.integers(1, 4))
        pt = int(rng.integers(0, kh))
        h_o = int(rng.integers(1, 4))
        if gaps:
            h_i = int(rng.integers(max(1, (h_o - 1) * s + 1), s * h_o + 1))
            p_o = h_o + int(rng.integers(0, 2))
            if s * p_o == h_i:
                p_o += 1
        else:
            h_i, p_o = s * h_o, h_o
        p_i = s * p_o
        b = int(rng.integers(2, 4))
        n_o = b * p_o - (p_o - h_o)                     # stacked output rows
        n_i = b * p_i - (p_i - h_i)
        o0 = int(rng.integers(0, n_o))
        o1 = int(rng.integers(o0 + 1, n_o + 1))
        iy_lo = o0 * s - pt
        r0, r1 = max(0, iy_lo), min(n_i, (o1 - 1) * s - pt + kh)
        kw, groups, ow = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
        in_w = ow + kw - 1
        if r1 <= r0 or (o1 - o0) * ow > cfg.acc_depth or \
                (r1 - r0) * in_w * groups > cfg.act_depth // 2:
            continue
        ins = dict(n_mtiles=int(rng.integers(1, 3)), kh=kh, kw=kw, groups=groups, stride_y=s,
                   stride_x=1, out_h=o1 - o0, out_w=ow, in_rows=r1 - r0, in_w=in_w,
                   ty0=iy_lo - r0, tx0=0, pad_ob=int(rng.integers(0, 2)), img_rows=h_i,
                   img_period=p_i, img_phase=(s * o0) % p_i, img_pad=pt)
        return ins, (b, p_i, h_i, p_o, h_o, o0, r0)


def _per_image(ins, geo, act_half, cfg):
    """The beats of the tile's real output rows (gap output rows are garbage) from each image
    alone: image ``b``'s row ``v`` is stacked row ``b * P_I + v``, padding outside ``[0,
    H_I)`` -- the rule the fields implement, without phases."""
    b_, p_i, h_i, p_o, h_o, o0, r0 = geo
    pad = ins["pad_ob"] << (cfg.act_bits - 1)
    out = {}
    for mt in range(ins["n_mtiles"]):
        si = 0
        for kr in range(ins["kh"]):
            for kc in range(ins["kw"]):
                for cg in range(ins["groups"]):
                    for oy in range(ins["out_h"]):
                        b, y = divmod(o0 + oy, p_o)
                        if y >= h_o:
                            continue
                        v = y * ins["stride_y"] - ins["img_pad"] + kr
                        for ox in range(ins["out_w"]):
                            if 0 <= v < h_i:
                                row = b * p_i + v - r0
                                assert 0 <= row < ins["in_rows"]
                                d = tuple(int(x) for x in
                                          act_half[(row * ins["in_w"] + ox + kc)
                                                   * ins["groups"] + cg])
                            else:
                                d = (pad,) * cfg.tn
                            out[(mt, si, oy, ox)] = d
                    si += 1
    return out


@pytest.mark.parametrize("gaps", [False, True])
def test_stacked_images_read_their_own_rows(rng, gaps):
    cfg = get_config("tiny")
    half = cfg.act_depth // 2
    words = rng.integers(0, 256, size=(cfg.act_depth, cfg.tn), dtype=np.uint8)
    words[:4] = [[0, 127, 128, 255], [255, 128, 127, 0], [128] * 4, [127] * 4]
    tiles = [_stacked_tile(rng, cfg, gaps=gaps) for _ in range(6)]
    # the tiles straddle images and exercise the rule (some beat differs from plain padding)
    assert any(ins["out_h"] > 1 and (geo[5] // geo[3]) != ((geo[5] + ins["out_h"] - 1)
                                                         // geo[3]) for ins, geo in tiles)
    instrs = [ins for ins, _ in tiles]
    _, got = run_compute(cfg, instrs, words, rng, ready_prob=0.6)
    exp, g0, changed = [], 0, False
    for k, (ins, geo) in enumerate(tiles):
        act = words[:half] if k % 2 == 0 else words[half:]
        e = expected(ins, act, cfg, g0)
        plain = expected(dict(ins, img_rows=0), act, cfg, g0)
        changed |= e != plain
        # the model is each image's own conv on the real output rows
        ref = _per_image(ins, geo, act, cfg)
        sets = ins["kh"] * ins["kw"] * ins["groups"]
        pix = ins["out_h"] * ins["out_w"]
        for (mt, si, oy, ox), d in ref.items():
            assert e[(mt * sets + si) * pix + oy * ins["out_w"] + ox][0] == d
        exp += e
        g0 += ins["n_mtiles"]
    assert changed
    assert got == exp


@pytest.mark.parametrize("bad", [dict(img_phase=6), dict(img_period=1, img_phase=0),
                                 dict(img_rows=7)])
def test_bad_stack_fields_rejected(bad):
    """``img_phase >= img_period``, ``img_period < stride_y`` or ``img_rows > img_period``:
    INSTR_FIELD (the phase could not wrap with one subtract)."""
    cfg = get_config("tiny")
    ins = dict(n_mtiles=1, kh=3, kw=1, groups=1, stride_y=2, stride_x=1, out_h=2, out_w=2,
               in_rows=4, in_w=2, ty0=-1, tx0=0, img_rows=6, img_period=6, img_phase=2,
               img_pad=1)
    assert_instruction_rejected(cfg, dict(ins, **bad))
