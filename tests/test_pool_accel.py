"""Pooling on the accelerator (hdl/pool.py): max pooling and global average pooling on the
Accelerator RTL (Amaranth simulator, ``tiny``), bit-exact with golden's integer ops, random AXI
stalls and CSR timing; and the compiler's exact average multiplier."""

import numpy as np
import pytest

from e2e_util import assert_model_agrees, run_e2e
from ilmpq.firmware.compiler import average_mult_shift, compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

TINY = get_config("tiny")


def pool_model(rng, *, cin, hw, kernel, stride, padding, c1=6):
    """conv (ReLU: unsigned) -> max pooling -> global average pooling."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(cin, *hw))
    x = b.conv("c", "input", c1, 3, padding=1)
    p = b.maxpool("mp", x, kernel, stride, padding)
    g = b.gap("gap", p)
    return b.build(g)


# (kernel, stride, padding (top, left, bottom, right), input hw); a ceil_mode=1 window is the
# same window with extra bottom/right padding (golden's conv_output_hw)
CASES = [
    ((3, 3), (2, 2), (1, 1, 1, 1), (7, 7)),       # ResNet's stem pooling, odd size
    ((2, 2), (2, 2), (0, 0, 1, 1), (5, 5)),       # ceil_mode = 1 on an odd size
    ((3, 2), (1, 2), (0, 1, 2, 1), (4, 5)),       # rectangular window, mixed strides
    ((3, 3), (3, 3), (0, 0, 0, 0), (3, 3)),       # a 1x1 output
    ((1, 1), (2, 1), (0, 0, 0, 0), (5, 3)),       # 1x1 window (subsampling)
]


@pytest.mark.parametrize("kernel,stride,padding,hw", CASES)
def test_maxpool_and_gap_on_rtl_random_stalls(rng, kernel, stride, padding, hw):
    model = pool_model(rng, cin=3, hw=hw, kernel=kernel, stride=stride, padding=padding)
    comp = compile_model(model, TINY)
    assert [r.where for r in comp.layers] == ["accel"] * 3
    assert len(comp.steps) == 1
    img = rng.integers(0, 256, size=(3, *hw))
    run_e2e(model, TINY, [img], mem_mode="random", seed=int(rng.integers(1 << 30)),
            csr_rng=True)


def test_pool_followed_by_residual_and_fc_one_program(rng):
    """ResNet's pattern: stem -> max pooling -> a block whose shortcut is the pooled tensor ->
    global average pooling -> FC, all in one program; full-scale and zero images too."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 8, 7))
    x = b.conv("stem", "input", 5, 3, stride=1, padding=1)
    p = b.maxpool("pool", x, 3, 2, 1)
    y = b.conv("b.c1", p, 5, 3, padding=1)
    z = b.conv("b.c2", y, 5, 3, padding=1, residual=p)
    g = b.gap("gap", z)
    f = b.flatten("flat", g)
    out = b.fc("fc", f, 10)
    model = b.build(out)
    comp = compile_model(model, TINY)
    assert len(comp.steps) == 1 and all(r.where != "cpu" for r in comp.layers)
    imgs = [rng.integers(0, 256, size=(3, 8, 7)), np.full((3, 8, 7), 255)]
    run_e2e(model, TINY, imgs, mem_mode="random", seed=17, csr_rng=True)


def test_wide_channels_several_pool_mtiles(rng):
    """More channel positions than one pooling mtile (lanes_pad): 3 mtiles of 8 positions,
    the last one partly padding; a 1x1 global average."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 5, 4))
    x = b.conv("c", "input", 9, 1)
    p = b.maxpool("mp", x, 2, 1, 0)
    g = b.gap("gap", p)
    model = b.build(g)
    comp = compile_model(model, TINY)
    assert comp.layers[1].mtiles == comp.tensors["c"].c_mem // TINY.lanes_pad
    img = rng.integers(0, 256, size=(3, 5, 4))
    run_e2e(model, TINY, [img], mem_mode="random", seed=23)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 16, 25, 49, 64, 100, 144, 196, 225])
def test_average_multiplier_is_exact(n):
    mult, shift, bias = average_mult_shift(n, 8, 16)
    assert 0 < mult < 1 << 16
    s = np.arange(255 * n + 1)
    np.testing.assert_array_equal(((s + bias) * mult + (1 << (shift - 1))) >> shift,
                                  (s + n // 2) // n)


def test_isa_sim_pools_odd_sizes_match_golden(rng):
    """Many shapes through the instruction-level simulator (fast), including windows larger
    than the stride and 1x1 outputs."""
    for _ in range(12):
        k = tuple(int(v) for v in rng.integers(1, 4, size=2))
        s = tuple(int(v) for v in rng.integers(1, 4, size=2))
        pad = tuple(int(rng.integers(0, k[i % 2])) for i in range(4))
        hw = tuple(int(v) for v in rng.integers(max(k), 9, size=2))
        model = pool_model(rng, cin=int(rng.integers(1, 5)), hw=hw, kernel=k, stride=s,
                           padding=pad, c1=int(rng.integers(1, 12)))
        comp = compile_model(model, TINY)
        img = rng.integers(0, 256, size=model.tensors["input"].shape)
        ref = reference.run(model, img, spec=TINY.numeric)
        got = run_compiled(comp, img)
        for name in ("mp", "gap"):
            np.testing.assert_array_equal(got[name], ref[name])


def test_cycle_model_matches_rtl_on_pooling(rng):
    """The cycle model's pooling unit (firmware/cyclemodel.py) against the RTL: exact counters,
    cycles within 2 % (pooling alone, several mtiles, pooling after a conv and before GAP)."""
    from test_cyclemodel import _run_rtl_amaranth

    from ilmpq.firmware import cyclemodel as cm

    def mk(shape, build):
        b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=shape)
        return b.build(build(b))

    models = [
        mk((8, 8, 8), lambda b: b.maxpool("mp", "input", 3, 1, 0)),
        mk((16, 4, 4), lambda b: b.maxpool("mp", "input", 1, 1, 0)),
        mk((3, 9, 9), lambda b: b.gap("g", b.maxpool("mp", b.conv("c", "input", 6, 3,
                                                                      padding=1), 3, 2, 1))),
        mk((3, 6, 5), lambda b: b.maxpool("mp", b.conv("c", "input", 9, 1), 2, 1, 0)),
    ]
    comps = [compile_model(m, TINY) for m in models]
    imgs = [rng.integers(0, 256, size=m.tensors["input"].shape) for m in models]
    for model, comp, img, (stats, tensors) in zip(models, comps, imgs,
                                                  _run_rtl_amaranth(TINY, comps, imgs)):
        ref = reference.run(model, img, spec=TINY.numeric)
        for layer in model.layers:
            np.testing.assert_array_equal(tensors[layer.output], ref[layer.output])
        assert_model_agrees(cm.estimate(comp).programs[0], stats)
