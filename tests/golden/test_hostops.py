"""The CNNs users bring (issues 16 and 20): grouped/depthwise convolution, pointwise functions as
one lookup table (native or written out as arithmetic), gating Mul, Concat, Slice, channel
shuffle, MaxPool ceil_mode, ReduceMean; conv layers reading signed tensors.

Float import against ``onnx.reference.ReferenceEvaluator``; the integer operators against
independent NumPy statements of their definition; the quantized models through the compiler's
host fallback and the ISA simulator, and once through the Amaranth RTL (tiny preset, random
stalls), bit-exact with golden layer by layer."""

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from onnx_graphs import G, compare_with_reference as _compare
from ilmpq.firmware.compiler import CpuStep, compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import ops, reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import (ConcatLayer, ConvLayer, LutLayer, ModelFormatError, MulLayer,
                                PermuteLayer, QModel, SliceLayer, hi_row_count)
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.hdl.config import get_config

TINY = get_config("tiny")


# -- one graph per op: float import against the ONNX reference ---------------------------------

def _depthwise(g):
    a = g.node("Relu", [g.conv("x", 3, 6, 3, pads=[1, 1, 1, 1])])
    return g.conv(a, 6, 6, 3, group=6, strides=[2, 2], pads=[1, 1, 1, 1]), [6, 4, 4]


def _grouped(g):
    a = g.node("Relu", [g.conv("x", 3, 6, 1)])
    return g.conv(a, 6, 4, 3, group=2), [4, 6, 6]


def _native_acts(g):
    a = g.conv("x", 3, 4, 1)
    h = g.node("HardSwish", [a])
    s = g.node("HardSigmoid", [g.conv(h, 4, 4, 1)], alpha=1 / 6)
    lk = g.node("LeakyRelu", [g.conv(s, 4, 4, 1)], alpha=0.1)
    sg = g.node("Sigmoid", [lk])            # not at the output: a pointwise function
    return g.node("Tanh", [g.conv(sg, 4, 4, 1)]), [4, 8, 8]


def _se_gate(g):
    a = g.node("Relu", [g.conv("x", 3, 6, 3, pads=[1, 1, 1, 1])])
    s = g.node("GlobalAveragePool", [a])
    s = g.node("Sigmoid", [g.conv(g.node("Relu", [g.conv(s, 6, 3, 1)]), 3, 6, 1)])
    return g.node("Mul", [a, s]), [6, 8, 8]


def _concat_slice_shuffle(g):
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    b = g.conv("x", 3, 4, 1)                     # signed
    lo = g.slice(a, [2], [6], [1])
    st = g.slice(a, [0, 1, 0], [8, 8, 8], [1, 2, 3], [3, 2, 2])   # channel, row, col strides
    cat = g.node("Concat", [lo, b], axis=1)
    sh = g.shuffle(cat, 8, 8, 8, 2)
    out = g.node("Concat", [g.slice(sh, [0], [3], [1]), g.slice(a, [0], [8], [1], [3])], axis=1)
    # and a strided spatial slice (an option-A shortcut's x[:, ::3, 1::2, ::2])
    return g.node("Add", [g.conv(st, 3, 6, 1, strides=[2, 2]),
                          g.slice(out, [0, 0], [8, 8], [2, 3], [4, 4])]), [6, 2, 2]


def _split(g):
    a = g.node("Relu", [g.conv("x", 3, 7, 1)])
    p, q = g.node("Split", [a, g.init(np.array([3, 4]), dtype=np.int64)], n_out=2, axis=1)
    r, s = g.node("Split", [q], n_out=2, axis=1)          # equal halves
    return g.node("Concat", [s, p, r], axis=1), [7, 8, 8]


def _ceil_pool_reducemean(g):
    a = g.node("Relu", [g.conv("x", 3, 4, 1)])
    p = g.node("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    return g.node("ReduceMean", [p], axes=[2, 3], keepdims=0), [4]


@pytest.mark.parametrize("build", [_depthwise, _grouped, _native_acts, _se_gate,
                                   _concat_slice_shuffle, _split, _ceil_pool_reducemean])
def test_float_import_matches_reference_evaluator(rng, build):
    g = G(rng, (3, 8, 8))
    out, shape = build(g)
    _compare(g.model(out, ["N", *shape]), rng.uniform(-2, 2, (3, 3, 8, 8)))


def test_ceil_mode_adds_bottom_right_padding(rng):
    g = G(rng, (3, 8, 8))
    out, shape = _ceil_pool_reducemean(g)
    fm = _compare(g.model(out, ["N", *shape]), rng.uniform(-2, 2, (2, 3, 8, 8)))
    pool = next(n for n in fm.nodes if n.kind == "maxpool")
    # 8 rows, k 3, s 2: floor gives 3 windows, ceil 4 -> one extra padding row and column
    assert pool.padding == (0, 0, 1, 1) and fm.shapes[pool.output] == (4, 4, 4)


# -- pointwise fusion (issue 20): activations written out as arithmetic -------------------------

@pytest.mark.parametrize("written, native, attrs", [
    ("hardswish", "HardSwish", {}),
    ("silu", None, {}),
    ("gelu_tanh", None, {}),
    ("leaky", "LeakyRelu", {"alpha": 0.2}),
    ("hardsigmoid", "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
])
def test_arithmetic_activation_is_one_lookup_table(rng, written, native, attrs):
    g = G(rng, (3, 6, 6))
    c = g.conv("x", 3, 4, 3, pads=[1, 1, 1, 1])
    if written == "hardswish":
        y = g.hardswish_arith(c)
    elif written == "silu":
        y = g.silu_arith(c)
    elif written == "gelu_tanh":
        y = g.gelu_tanh_arith(c)
    elif written == "leaky":      # max(x, 0.2 x) written as Relu(x) - 0.2 * Relu(-x)
        y = g.node("Sub", [g.node("Relu", [c]), g.node(
            "Mul", [g.node("Relu", [g.node("Neg", [c])]), g.scalar(0.2)])])
    else:                         # Clip(x / 6 + 0.5, 0, 1)
        y = g.node("Clip", [g.node("Add", [g.node("Div", [c, g.scalar(6.0)]),
                                           g.scalar(0.5)]), g.scalar(0.0), g.scalar(1.0)])
    x = rng.uniform(-3, 3, (4, 3, 6, 6))
    fm = _compare(g.model(y, ["N", 4, 6, 6]), x)
    assert [n.kind for n in fm.nodes] == ["conv", "pointwise"]
    if native:   # the same function as the native op
        g2 = G(np.random.default_rng(0), (4, 6, 6))
        m2 = g2.model(g2.node(native, ["x"], **attrs), ["N", 4, 6, 6])
        v = rng.uniform(-8, 8, (1, 4, 6, 6))
        np.testing.assert_allclose(fm.nodes[1].fn(v), ReferenceEvaluator(m2).run(
            None, {"x": v.astype(np.float32)})[0], rtol=1e-5, atol=1e-5)


def test_lookup_table_is_the_float_function_at_every_level(rng):
    """golden defines the table: ``table[i] = clamp(round(f((lo + i) * s_in) / s_out))``."""
    g = G(rng, (3, 6, 6))
    y = g.silu_arith(g.conv("x", 3, 4, 3, pads=[1, 1, 1, 1]))
    fm = load_onnx(g.model(y, ["N", 4, 6, 6]))
    qm = quantize(fm, rng.integers(0, 256, (6, 3, 6, 6)), ratio=0.25, spec=NumericSpec(),
                  report=False)
    lut = next(layer for layer in qm.layers if isinstance(layer, LutLayer))
    tin, tout = qm.tensors[lut.input], qm.tensors[lut.output]
    assert tin.signed and tout.signed          # SiLU of a signed tensor has negative outputs
    lv = np.arange(-128, 128)
    f = lv * tin.scale / (1 + np.exp(-lv * tin.scale))
    np.testing.assert_array_equal(lut.table, np.clip(np.rint(f / tout.scale), -128, 127))
    x = rng.integers(-128, 128, (4, 3, 3))
    np.testing.assert_array_equal(
        ops.lut_apply(x, lut.table, in_bits=8, in_signed=True), lut.table[x + 128])


# -- integer operators against their definitions ----------------------------------------------

def test_grouped_conv_is_per_group_convolution(rng):
    spec = NumericSpec()
    x = rng.integers(-128, 128, (6, 5, 5))
    x[0, 0, 0], x[1, 0, 0] = -128, 127            # the edges of the signed range
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    b = rng.integers(-1000, 1000, 4)
    got = ops.conv2d_acc(x, w, b, padding=1, stride=(2, 1), spec=spec, groups=2,
                         in_signed=True)
    for grp in range(2):
        xs = x[3 * grp:3 * grp + 3]
        # signed input as (x + 128) - 128: two unsigned convolutions
        want = ops.conv2d_acc(xs + 128, w[2 * grp:2 * grp + 2], b[2 * grp:2 * grp + 2],
                              padding=1, stride=(2, 1), spec=spec) - ops.conv2d_acc(
            np.full_like(xs, 128), w[2 * grp:2 * grp + 2], np.zeros(2, np.int64), padding=1,
            stride=(2, 1), spec=spec)
        np.testing.assert_array_equal(got[2 * grp:2 * grp + 2], want)
    with pytest.raises(IlmpqValueError, match="groups = 3 does not divide the 4 rows"):
        ops.conv2d_acc(x, w, b, spec=spec, groups=3, in_signed=True)
    with pytest.raises(IlmpqValueError, match=r"x\[.*\] = -1 is outside the allowed range "
                                              r"\[0, 255\] of unsigned 8-bit"):
        ops.conv2d_acc(np.full((6, 5, 5), -1), w, b, spec=spec, groups=2)


def test_mul_concat_slice_permute_definitions(rng):
    spec = NumericSpec()
    x = rng.integers(0, 256, (3, 4, 4))
    x[0, 0, 0] = 255
    gate = rng.integers(-128, 128, (3, 1, 1))
    y = ops.mul_requant(x, gate, x_bits=8, x_signed=False, g_bits=8, g_signed=True, mult=300,
                        shift=12, out_bits=8, out_signed=True, spec=spec)
    np.testing.assert_array_equal(y, np.clip((x * gate * 300 + 2048) >> 12, -128, 127))
    with pytest.raises(IlmpqValueError, match=r"g must have x's shape or \(3, 1, 1\)"):
        ops.mul_requant(x, gate[:2], x_bits=8, x_signed=False, g_bits=8, g_signed=True,
                        mult=1, shift=1, out_bits=8, out_signed=True, spec=spec)
    a, b = rng.integers(0, 256, (2, 2, 2)), rng.integers(-128, 128, (3, 2, 2))
    # M = 2, S = 1 copies exactly, (2x + 1) >> 1 = x; the other input is rescaled and clamped
    c = ops.concat_requant([a, b], mults=[2, 3], shifts=[1, 1], out_bits=8, out_signed=False,
                           spec=spec)
    np.testing.assert_array_equal(c[:2], a)
    np.testing.assert_array_equal(c[2:], np.clip((b * 3 + 1) >> 1, 0, 255))
    np.testing.assert_array_equal(ops.slice_chw(x, (1, 0, 1), (3, 4, 4), (1, 2, 2)),
                                  x[1:3, 0:4:2, 1:4:2])
    with pytest.raises(IlmpqValueError, match=r"slice \[2:2\] on axis 0"):
        ops.slice_chw(x, (2, 0, 0), (2, 4, 4), (1, 1, 1))
    np.testing.assert_array_equal(ops.permute_channels(x, [2, 0, 1]), x[[2, 0, 1]])
    with pytest.raises(IlmpqValueError, match="perm must be a permutation of the 3 channels"):
        ops.permute_channels(x, [0, 0, 1])
    with pytest.raises(IlmpqValueError, match="table has 16 entries; a 8-bit input needs"):
        ops.lut_apply(x, np.zeros(16, np.int64), in_bits=8, in_signed=False)


# -- quantized models: host fallback through the compiler and the ISA simulator ----------------

def _mixed_graph(rng, size=8):
    """A MobileNet/ShuffleNet/EfficientNet-like mix: depthwise conv, HardSwish, SE gating,
    signed block output into a conv, Concat, Slice, channel shuffle, SiLU and hard-swish written
    out, MaxPool ceil_mode, ReduceMean, FC."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    hs = g.node("HardSwish", [g.conv(a, 8, 8, 3, group=8, pads=[1, 1, 1, 1])])
    gap = g.node("GlobalAveragePool", [hs])
    se = g.node("HardSigmoid", [g.conv(g.node("Relu", [g.conv(gap, 8, 4, 1)]), 4, 8, 1)],
                alpha=1 / 6)
    p = g.conv(g.node("Mul", [hs, se]), 8, 8, 1)           # signed block output
    cat = g.node("Concat", [g.slice(p, [0], [4], [1]),
                            g.slice(a, [4, 0, 0], [8, size, size], [1, 2, 3], [1, 1, 1]),
                            g.silu_arith(g.conv(a, 8, 4, 1))], axis=1)
    sh = g.shuffle(cat, 12, size, size, 3)
    c2 = g.hardswish_arith(g.conv(sh, 12, 8, 3, pads=[1, 1, 1, 1], group=4))
    mp = g.node("MaxPool", [g.node("Relu", [g.conv(c2, 8, 8, 1)])], kernel_shape=[3, 3],
                strides=[2, 2], ceil_mode=1)
    fl = g.node("Flatten", [g.node("ReduceMean", [mp], axes=[2, 3], keepdims=1)])
    out = g.node("Gemm", [fl, g.init(rng.normal(0, 0.3, (5, 8))), g.init(rng.normal(0, 0.1, 5))],
                 transB=1)
    return g.model(out, ["N", 5])


def _quantized_mixed(rng, size=8):
    model = _mixed_graph(rng, size)
    fm = _compare(model, rng.uniform(-2, 2, (2, 3, size, size)))
    return quantize(fm, rng.integers(0, 256, (6, 3, size, size)), ratio=TINY.ratio,
                    spec=TINY.numeric, report=False)


def test_mixed_model_host_fallback_bit_exact_on_isa_simulator(rng, tmp_path):
    qm = _quantized_mixed(rng)
    kinds = {type(layer) for layer in qm.layers}
    assert {LutLayer, MulLayer, ConcatLayer, SliceLayer, PermuteLayer} <= kinds
    dw = [la for la in qm.layers if isinstance(la, ConvLayer) and la.groups == la.in_channels > 1]
    assert dw
    for la in dw:   # the row split of a depthwise layer: ceil(R * C) channels keep 8-bit filters
        assert int(np.sum(la.precision == 1)) == hi_row_count(qm.ratio, la.out_channels) >= 1
    # save / load keeps every new layer exactly
    qm.save(tmp_path / "m.npz")
    back = QModel.load(tmp_path / "m.npz")
    assert back.layers == qm.layers
    comp = compile_model(qm, TINY)
    where = {r.name: (r.where, r.cpu_reason) for r in comp.layers}
    kind = {r.name: r.kind for r in comp.layers}
    assert sorted(r.kind for r in comp.layers if r.where == "free" and r.kind.endswith(
        ":placed")) == ["permute:placed", "slice:placed", "slice:placed"]
    for layer in qm.layers:
        w, why = where[layer.name]
        if isinstance(layer, ConvLayer):
            # a signed input stored offset-binary (every reader an unpadded conv) is unsigned
            # for the PE array
            signed_in = qm.tensors[layer.input].signed and not comp.tensors[layer.input].offset
            # a depthwise conv runs on the PE array (issue 16); other grouped convs on the host
            grouped = 1 < layer.groups < layer.in_channels
            if signed_in or grouped:
                assert w == "cpu", layer.name
                assert ("signed input" if signed_in else "grouped convolution (groups") in why
            else:
                assert w == "accel", layer.name
        elif isinstance(layer, LutLayer):
            # fused into the STORE of an accelerated conv that it alone reads; else the host
            prod = next(la for la in qm.layers if la.output == layer.input)
            if where[prod.name][0] == "accel":
                assert (w, layer.input in comp.tensors) == ("free", False), layer.name
                assert next(r for r in comp.layers if r.name == layer.name).kind == "lut:fused"
            else:
                assert w == "cpu" and "its producer runs on the host" in why, layer.name
        elif isinstance(layer, MulLayer):
            assert w == "cpu" and "no accelerator unit" in why
        elif isinstance(layer, PermuteLayer):
            # a channel shuffle is a view of the stored bytes (issue 16: placement)
            assert (w, kind[layer.name]) == ("free", "permute:placed"), layer.name
        elif isinstance(layer, SliceLayer):
            # a channel slice (all rows and columns) is a view; any other runs on the host
            c, h, w_ = qm.tensors[layer.input].shape
            if layer.starts[1:] == (0, 0) and layer.stops[1:] == (h, w_) and \
                    layer.steps[1:] == (1, 1):
                assert (w, kind[layer.name]) == ("free", "slice:placed"), layer.name
            else:
                assert w == "cpu" and "slice over rows or columns" in why, layer.name
        elif isinstance(layer, ConcatLayer):
            # its first input is a view of a signed (two's complement) tensor, which the copy
            # conv on the PE array cannot read: a host copy
            assert w == "cpu" and "cannot be copied into its range on the PE array" in why
            assert "reads the signed tensor" in why
    report = comp.report()
    # every signed tensor an accelerated conv reads is stored offset-binary (session 6: padded
    # and residual readers too, and the output of the first conv reading the raw image in
    # phases), except a placed view (channel shuffle) of a tensor whose permute reader keeps it
    # two's complement: only that leaves a reader on the host for its signed input, and the
    # reason names the view, the stored tensor and why
    assert "the host runs:" in report
    signed_why = [r.cpu_reason for r in comp.layers if "signed input" in r.cpu_reason]
    assert all("a permute view of" in w and "which reads two's complement" in w
               for w in signed_why), signed_why
    assert "stored offset-binary" in report
    assert any(isinstance(s, CpuStep) for s in comp.steps)
    for img in [rng.integers(0, 256, (3, 8, 8)), np.full((3, 8, 8), 255),
                np.zeros((3, 8, 8), np.int64)]:
        want = reference.run(qm, img, spec=TINY.numeric)
        got = run_compiled(comp, img)
        for layer in qm.layers:
            if layer.output in comp.unstored:       # inside a fused table's STORE
                assert layer.output not in got
                continue
            np.testing.assert_array_equal(got[layer.output], want[layer.output],
                                          err_msg=layer.name)


def test_new_layers_are_validated(rng):
    qm = _quantized_mixed(rng)
    lut = next(la for la in qm.layers if isinstance(la, LutLayer))
    lut.table = lut.table[:10]
    with pytest.raises(ModelFormatError, match=r"table must be an int64 array of shape \(256,\)"):
        qm.validate()
    qm = _quantized_mixed(rng)
    perm = next(la for la in qm.layers if isinstance(la, PermuteLayer))
    perm.perm = np.zeros_like(perm.perm)
    with pytest.raises(ModelFormatError, match="perm must be an int64 permutation"):
        qm.validate()
    qm = _quantized_mixed(rng)
    cat = next(la for la in qm.layers if isinstance(la, ConcatLayer))
    cat.shifts = (0,) + cat.shifts[1:]
    with pytest.raises(ModelFormatError, match=r"shifts \[0, .* must be within \[1, "):
        qm.validate()


def test_mixed_model_bit_exact_on_rtl_with_random_stalls(rng):
    """Accelerator segments and host steps interleaved on the Amaranth RTL (tiny preset, random
    AXI stalls and latencies): every tensor equals golden."""
    from e2e_util import run_e2e
    qm = _quantized_mixed(rng, size=6)
    img = rng.integers(0, 256, (3, 6, 6))
    comp, _ = run_e2e(qm, TINY, [img], mem_mode="random", seed=int(rng.integers(1 << 30)))
    # the shuffle and the two channel slices are views (issue 16: placement), not host steps;
    # the depthwise conv (with its HardSwish table fused) runs on the PE array
    assert sum(1 for r in comp.layers if r.where == "cpu") >= 4
    assert sorted(r.kind for r in comp.layers if r.kind.endswith(":placed")) == [
        "permute:placed", "slice:placed", "slice:placed"]
    assert "dw+lut" in [r.kind for r in comp.layers if r.where == "accel"]
    assert sum(1 for r in comp.layers if r.where == "accel") >= 5


def test_zero_pad_folds_into_the_next_conv_or_pool(rng):
    """A constant-zero Pad of H, W (tf2onnx writes them) becomes padding of the Conv after it,
    and of a MaxPool of a non-negative tensor; anything else is named."""
    g = G(rng, (3, 6, 6))
    pad1 = g.init(np.array([0, 0, 1, 0, 0, 0, 1, 2]), dtype=np.int64)
    c = g.conv(g.node("Pad", ["x", pad1]), 3, 4, 3, pads=[0, 1, 0, 0])
    r = g.node("Relu", [c])
    pad2 = g.init(np.array([0, 0, 0, 0, 0, 0, 1, 1]), dtype=np.int64)
    out = g.node("MaxPool", [g.node("Pad", [r, pad2])], kernel_shape=[2, 2], strides=[2, 2])
    fm = _compare(g.model(out, ["N", 4, 3, 4]), rng.uniform(-2, 2, (2, 3, 6, 6)))
    conv, pool = fm.nodes
    assert conv.padding == (1, 1, 1, 2) and pool.padding == (0, 0, 1, 1)
    g = G(rng, (3, 6, 6))
    pad = g.init(np.array([0, 0, 1, 1, 0, 0, 1, 1]), dtype=np.int64)
    out = g.conv(g.node("Pad", ["x", pad], mode="reflect", name="bad"), 3, 4, 3)
    with pytest.raises(IlmpqValueError, match=r"node 'bad' \(Pad\): Pad mode=reflect, value=0, "
                                              r"pads=\[0, 0, 1, 1, 0, 0, 1, 1\] is not supported"):
        load_onnx(g.model(out, ["N", 4, 6, 6]), canonical=False)
