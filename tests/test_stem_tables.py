"""The first conv reading the raw image directly (in phases on its bytes, or through gathering
LOAD_ROWS; ``firmware/compiler.py`` ``_compile_direct``) stores through STOREs with a lookup
table, as any accelerated conv: a pointwise LutLayer after it (MobileNet-V3's and PP-LCNet's
HardSwish after the stem, EfficientNet's SiLU) is fused into every phase's STOREs
(``conv^+lut``), and its signed output is stored offset-binary (through that table plus the
offset, or the identity table ``conv^+ob``) so that the convs reading it run on the PE array
(padded: COMPUTE ``pad_ob``), the depthwise conv on the PE array too. MobileNet-V3's
stem block on the tiny preset, bit-exact with golden on the ISA simulator and the Amaranth RTL
(random AXI stalls and latencies)."""

import numpy as np
import pytest

from e2e_util import run_e2e
from onnx_graphs import G, compare_with_reference
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.model import ConvLayer, LutLayer
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

TINY = get_config("tiny")


def _stem_block(rng, shape, k, act):
    """The stem conv (``k x k``, stride 2, padded) -> ``act`` (HardSwish, or none: the conv's
    own signed output) -> a depthwise 3x3 and a padded 3x3 conv with the depthwise
    output as its residual -> global average pooling -> FC."""
    c = shape[0]
    g = G(rng, shape)
    h = g.conv("x", c, 8, k, strides=[2, 2], pads=[k // 2] * 4)
    if act:
        h = g.node(act, [h])
    d = g.node("Relu", [g.conv(h, 8, 8, 3, group=8, pads=[1, 1, 1, 1])])
    y = g.node("Relu", [g.node("Add", [g.conv(h, 8, 8, 3, pads=[1, 1, 1, 1]), d])])
    fl = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    out = g.node("Gemm", [fl, g.init(rng.normal(0, 0.5, (5, 8))), g.init(rng.normal(0, 0.1, 5))],
                 transB=1)
    model = g.model(out, ["N", 5])
    compare_with_reference(model, rng.uniform(-2, 2, (2,) + shape))
    # pixels normalized to about [-2, 2]: the stem's output takes negative and positive levels
    fm = load_onnx(model, input_mean=[128.0] * c, input_std=[64.0] * c)
    return quantize(fm, rng.integers(0, 256, (6,) + shape), ratio=TINY.ratio, spec=TINY.numeric,
                    report=False)


def _images(rng, shape):
    return [rng.integers(0, 256, shape), np.full(shape, 255), np.zeros(shape, np.int64),
            rng.integers(0, 256, shape)]


def _stores(comp):
    ib = INSTR_BITS // 8
    for s in comp.steps:
        for k in range(getattr(s, "n_instr", 0)):
            off = s.prog_addr - comp.base + k * ib
            op, f = decode(bytes(comp.image[off:off + ib]))
            if op == Opcode.STORE:
                yield f


def _compiled(rng, shape, k, act, gather):
    qm = _stem_block(rng, shape, k, act)
    comp = compile_model(qm, TINY)
    assert comp.input_layout == "direct", comp.input_layout_why
    assert comp.input_gather == gather
    stem = next(la for la in qm.layers if la.input == qm.input)
    rep = {r.name: r for r in comp.layers}
    stored = stem.output
    if act:
        lut = next(la for la in qm.layers if isinstance(la, LutLayer))
        assert lut.input == stem.output and rep[lut.name].kind == "lut:fused"
        assert stem.output in comp.unstored       # the conv's own output is never stored
        stored = lut.output
    assert rep[stem.name].kind == ("conv^+lut" if act else "conv^+ob")
    assert rep[stem.name].where == "accel"
    # the stem's signed output (the table's, or the conv's) is stored offset-binary
    assert qm.tensors[stored].signed
    assert comp.tensors[stored].offset == 1 << (qm.tensors[stored].bits - 1)
    # its readers: the padded conv and the padded depthwise conv, both on the PE array (padding
    # with the stored zero, COMPUTE pad_ob; the depthwise one in its windows)
    readers = [rep[la.name] for la in qm.layers if isinstance(la, ConvLayer)
               and la.input == stored]
    assert sorted(r.where for r in readers) == ["accel", "accel"]
    assert sorted(r.kind for r in readers) == ["conv", "dw"]
    assert "signed input" not in comp.report()
    # every STORE of the stem's phases carries a table (the first program's first STOREs)
    n_phase_stores = rep[stem.name].ptiles
    stem_stores = list(_stores(comp))[:n_phase_stores]
    assert stem_stores and all(f["lut_en"] == 1 and f["lut_addr"] for f in stem_stores)
    return qm, comp, stored


@pytest.mark.parametrize("shape,k,act,gather", [
    ((3, 8, 16), 3, "HardSwish", False),     # MobileNet-V3's stem: 3x3 stride 2, padded
    ((3, 8, 16), 3, "", False),              # a linear stem: the identity table (conv^+ob)
    ((1, 8, 24), 7, "HardSwish", True),      # gathering loads (folded rows built on chip)
    ((1, 8, 24), 7, "", True),
])
def test_stem_tables_on_the_isa_simulator(rng, shape, k, act, gather):
    """Fused table / identity table in every phase's STOREs, the offset-binary output read
    by the accelerated padded conv and depthwise conv; every tensor bit-exact,
    edges (all 0, all 255) included, and the stored output takes negative and positive
    values."""
    qm, comp, stored = _compiled(rng, shape, k, act, gather)
    seen = set()
    for img in _images(rng, shape):
        want = reference.run(qm, img, spec=TINY.numeric)
        got = run_compiled(comp, img)
        for layer in qm.layers:
            if layer.output in comp.unstored:     # inside the fused table's STORE
                assert layer.output not in got
                continue
            np.testing.assert_array_equal(got[layer.output], want[layer.output],
                                          err_msg=layer.name)
        seen |= set(np.sign(want[stored]).ravel().tolist())
    assert {-1, 1} <= seen


def test_stem_tables_on_the_rtl(rng):
    """MobileNet-V3's stem block on the Amaranth RTL with random AXI stalls and latencies, the
    depthwise conv on the PE array: every stored tensor bit-exact with golden (the identity
    table ``conv^+ob`` is the same STORE path with another table: the ISA simulator's cases)."""
    shape = (3, 4, 16)
    qm, comp, _ = _compiled(rng, shape, 3, "HardSwish", False)
    run_e2e(qm, TINY, [rng.integers(0, 256, shape)], mem_mode="random",
            seed=int(rng.integers(1 << 30)))
