"""The store unit's residual byte decode (hdl/store.py): a residual tensor's bytes reach the
post-processing unit as unsigned values, two's complement (``res_signed``) or offset-binary
(``res_signed`` + ``res_offset``: ``u - 2**(act_bits-1)``), each lane's byte gathered at its
``res_pos``; edge codes 0/127/128/255 and random bytes, random stalls on every port."""

import dataclasses

import numpy as np
import pytest
from hdl_util import run_store
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import pack_lane_params, pack_params_block

TINY = get_config("tiny")
#: two post-processing groups a cycle (HWConfig.post_groups) need two groups a pixel: 16 lanes
TINY_PG2 = TINY.replace(lanes_lo=12, lanes_hi=4, post_groups=2)


def _decode(byte, signed, offset, act_bits):
    if not signed:
        return byte
    if offset:
        return (byte & ((1 << act_bits) - 1)) - (1 << (act_bits - 1))
    return byte - 256 if byte >= 128 else byte


@pytest.mark.parametrize("act_bits,base", [(8, TINY), (4, TINY), (8, TINY_PG2)],
                         ids=["8", "4", "8-pg2"])
def test_residual_bytes_decoded_unsigned_twos_complement_or_offset_binary(rng, act_bits, base):
    """The same residual rows read by three STOREs: unsigned, two's complement, offset-binary
    (``res_offset``: the low ``act_bits`` less ``2**(act_bits-1)``); each lane's value at the
    join is its byte at ``res_pos`` decoded."""
    cfg = dataclasses.replace(base, act_bits=act_bits)
    bb, G, lp = cfg.beat_bytes, cfg.post_lanes, cfg.lanes_pad
    n_mtiles, pixels, res_beats = 2, 4, 2
    rb = res_beats * bb                              # residual bytes per pixel
    params_addr, res_addr, out_addr = 0x100, 0x400, 0x800
    mem = bytearray(0x1000)
    # each lane's byte position in the residual pixel: random, mtile 0's lanes 0..3 and mtile
    # 1's read the edge codes of pixel 0
    pos = rng.integers(0, rb, (n_mtiles, lp))
    pos[0, :4], pos[1, :4] = [0, 1, 2, 3], [4, 5, 6, 7]
    for t in range(n_mtiles):
        blk = pack_params_block(pack_lane_params(
            rng.integers(-1000, 1000, lp), rng.integers(1, 1 << 10, lp),
            rng.integers(1, 1 << 10, lp), np.full(lp, 8), pos[t]))
        a = params_addr + t * len(blk)
        mem[a:a + len(blk)] = blk
    # the residual rows: the edge codes first, random bytes after
    res = rng.integers(0, 256, pixels * rb).astype(np.uint8)
    h = 1 << (act_bits - 1)
    edges = [0, h - 1, h, 2 * h - 1]                 # 0/127/128/255 at A8
    res[:8] = edges + [1, h - 2, h + 1, 2 * h - 2]
    mem[res_addr:res_addr + len(res)] = res.tobytes()
    modes = [(0, 0), (1, 0), (1, 1)]
    instrs = [dict(n_mtiles=n_mtiles, pixels=pixels, out_addr=out_addr,
                   out_stride=n_mtiles * lp, params_addr=params_addr, res_addr=res_addr,
                   res_beats=res_beats, res_en=1, res_signed=sg, res_offset=of, relu=1 - sg)
              for sg, of in modes]
    got = run_store(cfg, rng, instrs, mem)
    groups = lp // G
    per = n_mtiles * pixels * groups
    assert len(got) == len(modes) * per
    rows = res.reshape(pixels, rb)
    for m, (signed, offset) in enumerate(modes):
        k = m * per
        for t in range(n_mtiles):
            for px in range(pixels):
                for grp in range(groups):
                    res_en, vals = got[k]
                    k += 1
                    lanes = pos[t, grp * G:(grp + 1) * G]
                    assert res_en == 1
                    assert vals == [_decode(int(rows[px, p]), signed, offset, cfg.act_bits)
                                    for p in lanes], (signed, offset, t, px)
    # the edge codes reached the join decoded: offset-binary 0, h-1, h, 2h-1 are -h, -1, 0, h-1
    assert got[0][1][:4] == edges
    assert got[2 * per][1][:4] == [-h, -1, 0, h - 1]
    if act_bits == 8:
        assert got[per][1][:4] == [0, 127, -128, -1]
