"""Vertical max pooling in the store unit (``Store.vpool``, hdl/store.py): random
post-processed beats pooled over rows (3 rows, stride 2, padding 1) in the row array that
persists from one STORE to the next; only pooled rows written, with one check entry per
pooled row; even and odd image heights, several mtiles, a row of one entry (the read port's
transparency), random stalls on every port; against a NumPy model."""

import numpy as np
import pytest

from hdl_util import run_store
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import act_check_sum, pack_lane_params, pack_params_block

#: tiny with a row array of 16 entries (the tiny preset has none: its programs stay as they were)
TINY = get_config("tiny").replace(vpool_entries=16)
#: two post-processing groups a cycle (HWConfig.post_groups): 16 lanes, two groups a pixel
TINY_PG2 = TINY.replace(lanes_lo=12, lanes_hi=4, post_groups=2)
ARENA = 0x4000


def _vpool_rows(v: np.ndarray) -> np.ndarray:
    """NumPy model: max over rows 2j-1..2j+1 (clipped) of ``v`` (H x ...)."""
    h = v.shape[0]
    return np.stack([v[max(0, 2 * j - 1):min(h, 2 * j + 2)].max(axis=0)
                     for j in range((h - 1) // 2 + 1)])


def _run(cfg, rng, instrs, mem, beats, *, max_cycles=20000, expect_error=False):
    """STOREs in order; ``beats``: the post-processing outputs (one int a pp_in beat, in order).
    Every port stalls at random (``hdl_util.run_store``). Returns the memory after the
    writes."""
    run_store(cfg, rng, instrs, mem, pp_out=beats, wr_base=ARENA, wr_limit=len(mem),
              max_cycles=max_cycles, expect_error=expect_error)
    return mem


#: (image height, rows of each STORE, columns, mtiles): even height with rows across two
#: STOREs (an odd first band), an odd height (its last, even row closes a window), two entries
#: a row (an entry read the cycle after its write), a one-row image (it is the pooled row)
CASES = [(6, [3, 3], 3, 2), (7, [4, 3], 2, 1), (5, [2, 3], 2, 1), (1, [1], 4, 1)]


@pytest.mark.parametrize("cfg", [TINY, TINY_PG2], ids=["pg1", "pg2"])
def test_vpool_rows_across_stores(rng, cfg):
    """The cases one after the other on one store unit (the array carries nothing from one
    image into the next: each starts at row 0)."""
    bb, lp = cfg.beat_bytes, cfg.lanes_pad
    groups = lp // cfg.post_lanes
    params_addr = 0x100
    mem = bytearray(0x8000)
    for t in range(2):
        blk = pack_params_block(pack_lane_params(
            np.zeros(lp, np.int64), np.ones(lp, np.int64), np.zeros(lp, np.int64),
            np.full(lp, 8), np.zeros(lp, np.int64)))
        a = params_addr + t * len(blk)
        mem[a:a + len(blk)] = blk
    instrs, beats, chk_off, want = [], [], 0, []
    out_addr = ARENA + 0x200
    for h, bands, cols, n_mtiles in CASES:
        # the image's post-processed bytes (rows x cols x mtiles x lanes_pad), edge bytes too
        v = rng.integers(0, 256, (h, cols, n_mtiles, lp)).astype(np.uint8)
        v.reshape(-1)[:4] = [0, 255, 128, 127]
        stride = n_mtiles * lp
        pooled = _vpool_rows(v)
        want.append((out_addr, chk_off, cols, stride, pooled))
        y0 = 0
        for r in bands:
            written = [y for y in range(y0, y0 + r) if y % 2 == 1 or y == h - 1]
            j0 = written[0] // 2                # (row y closes pooled row y // 2)
            instrs.append(dict(
                n_mtiles=n_mtiles, pixels=r * cols, out_addr=out_addr + j0 * cols * stride,
                out_stride=stride, params_addr=params_addr, relu=1, chk_off=chk_off,
                chk_row_pixels=cols, chk_stride=1, vpool=1, vp_y0=y0, vp_h=h, vp_cols=cols,
                vp_pixels=len(written) * cols))
            chk_off += len(written)
            for t in range(n_mtiles):
                for y in range(y0, y0 + r):
                    for c in range(cols):
                        for g in range(groups):
                            beats.append(int.from_bytes(
                                v[y, c, t, g * bb:(g + 1) * bb].tobytes(), "little"))
            y0 += r
        # (a gap of two rows after each image's output: nothing may be written there)
        out_addr += (pooled.shape[0] + 2) * cols * stride
    mem = _run(cfg, rng, instrs, mem, beats)
    for out_addr, off, cols, stride, pooled in want:
        n_out = pooled.shape[0]
        got = np.frombuffer(bytes(mem[out_addr:out_addr + n_out * cols * stride]), np.uint8)
        np.testing.assert_array_equal(got.reshape(pooled.shape), pooled)
        end = out_addr + n_out * cols * stride
        assert not any(mem[end:end + 2 * cols * stride])
        # one check entry per pooled row
        ent = np.frombuffer(bytes(mem[ARENA + off * bb:ARENA + (off + n_out) * bb]),
                            np.uint8).reshape(n_out, bb)
        for j in range(n_out):
            a = out_addr + j * cols * stride
            assert int.from_bytes(ent[j, :4].tobytes(), "little") == \
                act_check_sum(a, bytes(mem[a:a + cols * stride]), bb), j
            assert not ent[j, 4:].any()


@pytest.mark.parametrize("cfg", [TINY, TINY_PG2], ids=["pg1", "pg2"])
def test_vpool_row_of_one_entry_is_refused(rng, cfg):
    """A row of one entry (one column, one post-processing group -- with ``post_groups`` 2,
    one pair of groups: the array would be read in the cycle of its write) is refused before
    anything is read or written (``error``)."""
    instr = dict(n_mtiles=1, pixels=3, out_addr=ARENA + 0x200, out_stride=cfg.lanes_pad,
                 params_addr=0x100, relu=1, vpool=1, vp_y0=0, vp_h=3, vp_cols=1, vp_pixels=2)
    _run(cfg, rng, [instr], bytearray(0x8000), [], expect_error=True, max_cycles=50)
