"""Strided LOAD_ROWS (hdl/isa.py ``LoadRows`` chunk fields): a 1x1 convolution with a stride
and no padding (ResNet's projections) loads only the pixels it uses (``firmware/compiler.py``
``_strided_view``). Compile-level cases on the ISA simulator (odd sizes, strides 2 and 3, a row
stride alone), then a residual block with a projection on the RTL with random memory stalls,
every layer bit-exact against golden."""

import numpy as np
import pytest

from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

TINY = get_config("tiny")


def _block(rng, shape, stride, cfg=TINY, m=(8, 12)):
    """conv 3x3, then a residual block whose shortcut is a 1x1 projection with ``stride``."""
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    x = b.conv("a", "input", m[0], 3, padding=1)
    y = b.conv("ds", x, m[1], 1, stride=stride, relu=False)
    z = b.conv("c", x, m[1], 3, stride=stride, padding=1)
    return b.build(b.conv("d", z, m[1], 3, padding=1, residual=y))


def _loads(comp):
    step = comp.steps[0]
    ib = INSTR_BITS // 8
    out = []
    for i in range(step.n_instr):
        off = step.prog_addr - comp.base + i * ib
        op, f = decode(bytes(comp.image[off:off + ib]))
        if op == Opcode.LOAD_ROWS:
            out.append(f)
    return out


@pytest.mark.parametrize("cfg_name,shape,stride", [
    ("tiny", (8, 8, 8), 2), ("tiny", (8, 7, 9), 2), ("tiny", (4, 9, 10), 3),
    ("tiny", (8, 6, 6), (2, 1)), ("tiny", (8, 6, 6), (1, 2)), ("z020", (64, 14, 14), 2),
])
def test_projection_loads_only_its_pixels(rng, cfg_name, shape, stride):
    cfg = get_config(cfg_name)
    model = _block(rng, shape, stride, cfg)
    # (the projection's sibling conv reads the same input: share_loads=False keeps their loads
    # apart, so the projection reads its own pixels; shared loads: tests/test_shared_loads.py)
    comp = compile_model(model, cfg, act_check=False, share_loads=False)
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    view = comp.internal[f"a@{sy}x{sx}"]
    oh, ow = model.tensors["ds"].shape[1:]
    assert (view.h, view.w, view.c_mem) == (oh, ow, comp.tensors["a"].c_mem)
    strided = [f for f in _loads(comp) if f["chunk_beats"]]
    # the projection's loads read exactly its pixels' bytes: oh x ow of them
    assert sum(f["beats"] for f in strided) * cfg.beat_bytes == oh * ow * view.c_mem
    rep = next(r for r in comp.layers if r.name == "ds")
    assert rep.dma_read_bytes < comp.tensors["a"].nbytes + rep.weight_bytes + 1024
    for img in (rng.integers(0, 256, size=shape), np.full(shape, 255), np.zeros(shape, np.int64)):
        ref = reference.run(model, img, spec=cfg.numeric)
        got = run_compiled(comp, img)
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def test_rtl_projection_block_random_stalls(rng):
    """A residual block with a strided projection on the RTL with random memory stalls and the
    AXI checkers: every layer bit-exact (check mode)."""
    shape = (4, 6, 6)
    model = _block(rng, shape, 2, m=(8, 4))
    comp = compile_model(model, TINY, act_check=False, share_loads=False)
    assert any(f["chunk_beats"] for f in _loads(comp))
    img = rng.integers(0, 256, size=shape)
    ref = reference.run(model, img, spec=TINY.numeric)

    full = simulate(comp, [img], mem_mode="random", seed=5)[0].tensors
    for layer in model.layers:
        np.testing.assert_array_equal(full[layer.output], ref[layer.output], err_msg=layer.name)


def test_checked_programs_load_whole_rows(rng):
    """With activation checks (the default) a projection loads whole rows and every LOAD_ROWS
    of a stored tensor reads its rows' check entries: a check entry covers a whole row, which
    a strided load would read only a part of."""
    model = _block(rng, (8, 8, 8), 2, TINY)
    comp = compile_model(model, TINY)
    loads = _loads(comp)
    assert loads and not any(f["chunk_beats"] for f in loads)
    assert all(f["chk_beats"] for f in loads)
    img = rng.integers(0, 256, size=(8, 8, 8))
    ref = reference.run(model, img, spec=TINY.numeric)
    got = run_compiled(comp, img)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
