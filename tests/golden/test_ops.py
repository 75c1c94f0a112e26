"""golden/ops.py against independent formulations, bit for bit.

References: direct nested Python loops on Python integers, ``fractions.Fraction`` for the rounding
rules, and ``onnx.reference.ReferenceEvaluator`` running ONNX ConvInteger, MatMulInteger and
MaxPool on the same integers.
"""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from ilmpq.golden.errors import IlmpqError, IlmpqTypeError, IlmpqValueError
from ilmpq.golden.formats import NumericSpec, Precision
from ilmpq.golden.model import ConvLayer
from ilmpq.golden.ops import (
    AccumulatorOverflow, RequantOverflow, acc_bound, check_no_overflow, conv2d_acc,
    conv_output_hw, fc_acc, flatten, global_avg_pool, max_pool, output_range, requantize,
)

SPEC = NumericSpec()


# -- independent references -----------------------------------------------------------------

def loop_conv(x, w, bias, stride=(1, 1), padding=(0, 0, 0, 0)):
    """Direct definition with Python integers and explicit bounds checks (zero padding)."""
    xs, ws, bs = x.tolist(), w.tolist(), [int(b) for b in bias]
    c_in, h, wd = x.shape
    m_out, _, kh, kw = w.shape
    sy, sx = stride
    pt, pl, pb, pr = padding
    oh, ow = (h + pt + pb - kh) // sy + 1, (wd + pl + pr - kw) // sx + 1
    out = np.zeros((m_out, oh, ow), dtype=object)
    for m in range(m_out):
        for oy in range(oh):
            for ox in range(ow):
                s = bs[m]
                for c in range(c_in):
                    for kr in range(kh):
                        iy = oy * sy + kr - pt
                        if not 0 <= iy < h:
                            continue
                        for kc in range(kw):
                            ix = ox * sx + kc - pl
                            if 0 <= ix < wd:
                                s += ws[m][c][kr][kc] * xs[c][iy][ix]
                out[m, oy, ox] = s
    return out.astype(np.int64)


def ref_requant(acc, mult, shift, res, res_mult, qmin, qmax):
    """Round half up of (acc*M + res*Mr) / 2**S with exact rationals, then clamp."""
    acc = np.asarray(acc)
    out = np.zeros(acc.shape, dtype=object)
    for idx in np.ndindex(acc.shape):
        m = idx[0]
        v = Fraction(int(acc[idx]) * int(mult[m]), 1 << int(shift[m]))
        if res is not None:
            v += Fraction(int(res[idx]) * int(res_mult[m]), 1 << int(shift[m]))
        y = math.floor(v + Fraction(1, 2))
        out[idx] = min(max(y, qmin), qmax)
    return out.astype(np.int64)


def loop_max_pool(x, kernel, stride, padding):
    c_in, h, w = x.shape
    kh, kw = kernel
    sy, sx = stride
    pt, pl, pb, pr = padding
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    out = np.zeros((c_in, oh, ow), dtype=x.dtype)
    for c in range(c_in):
        for oy in range(oh):
            for ox in range(ow):
                vals = [int(x[c, iy, ix])
                        for iy in range(oy * sy - pt, oy * sy - pt + kh) if 0 <= iy < h
                        for ix in range(ox * sx - pl, ox * sx - pl + kw) if 0 <= ix < w]
                out[c, oy, ox] = max(vals)
    return out


def rand_weights(rng, shape, precision):
    wmax = np.where(np.asarray(precision) == Precision.HI, 127, 7)
    wmax = wmax.reshape((-1,) + (1,) * (len(shape) - 1))
    return rng.integers(-wmax, wmax + 1, size=shape).astype(np.int8)


def rand_precision(rng, m):
    return rng.integers(0, 2, size=m).astype(np.uint8)


def onnx_eval(nodes, inputs, outputs, feeds):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return ReferenceEvaluator(model).run(None, feeds)[0]


def vi(name, elem):
    return helper.make_tensor_value_info(name, elem, None)


# -- conv2d_acc -------------------------------------------------------------------------------

CONV_CASES = [
    # C, H, W, M, (kh, kw), stride, padding, in_bits
    (3, 7, 7, 5, (3, 3), (1, 1), (1, 1, 1, 1), 8),
    (2, 9, 8, 3, (3, 3), (2, 2), (1, 1, 1, 1), 8),
    (5, 6, 7, 4, (1, 1), (2, 2), (0, 0, 0, 0), 4),
    (1, 11, 10, 2, (7, 7), (2, 2), (3, 3, 3, 3), 5),
    (3, 8, 9, 6, (5, 5), (1, 2), (2, 0, 1, 3), 8),
    (4, 5, 5, 7, (3, 2), (3, 1), (0, 1, 2, 0), 4),
    (2, 4, 4, 1, (5, 5), (1, 1), (2, 2, 2, 2), 8),  # kernel larger than the input
    (6, 3, 3, 9, (3, 3), (1, 1), (0, 0, 0, 0), 5),  # single output pixel
]


@pytest.mark.parametrize("c,h,w,m,k,stride,padding,in_bits", CONV_CASES)
def test_conv2d_acc_matches_loops(rng, c, h, w, m, k, stride, padding, in_bits):
    x = rng.integers(0, 1 << in_bits, size=(c, h, w)).astype(np.uint8)
    prec = rand_precision(rng, m)
    wt = rand_weights(rng, (m, c) + k, prec)
    bias = rng.integers(-100000, 100000, size=m)
    got = conv2d_acc(x, wt, bias, stride=stride, padding=padding, spec=SPEC, precision=prec,
                     in_bits=in_bits)
    assert got.dtype == np.int64
    assert got.shape == (m,) + conv_output_hw((h, w), k, stride, padding)
    np.testing.assert_array_equal(got, loop_conv(x, wt, bias, stride, padding))


@pytest.mark.parametrize("c,h,w,m,k,stride,padding,in_bits", CONV_CASES)
def test_conv2d_acc_matches_onnx_conv_integer(rng, c, h, w, m, k, stride, padding, in_bits):
    x = rng.integers(0, 1 << in_bits, size=(c, h, w)).astype(np.uint8)
    wt = rng.integers(-127, 128, size=(m, c) + k).astype(np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, size=m)
    node = helper.make_node("ConvInteger", ["x", "w"], ["y"], kernel_shape=list(k),
                            strides=list(stride), pads=list(padding))
    ref = onnx_eval([node], [vi("x", TensorProto.UINT8), vi("w", TensorProto.INT8)],
                    [vi("y", TensorProto.INT32)], {"x": x[None], "w": wt})[0]
    got = conv2d_acc(x, wt, bias, stride=stride, padding=padding, spec=SPEC, in_bits=in_bits)
    np.testing.assert_array_equal(got, ref.astype(np.int64) + bias[:, None, None])


def test_conv2d_acc_resnet_layer_shape(rng):
    """A ResNet-18 3x3 conv at 56x56x64 (the fast path is what runs; checked on sampled pixels)."""
    x = rng.integers(0, 256, size=(64, 56, 56)).astype(np.uint8)
    prec = np.zeros(64, np.uint8)
    prec[:8] = Precision.HI
    wt = rand_weights(rng, (64, 64, 3, 3), prec)
    bias = rng.integers(-1000, 1000, size=64)
    got = conv2d_acc(x, wt, bias, padding=1, spec=SPEC, precision=prec)
    xp = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1)))
    for oy, ox in [(0, 0), (0, 55), (55, 0), (55, 55), (17, 33)]:
        patch = xp[:, oy:oy + 3, ox:ox + 3]
        want = (wt.astype(np.int64) * patch[None]).sum(axis=(1, 2, 3)) + bias
        np.testing.assert_array_equal(got[:, oy, ox], want)


def test_conv2d_acc_int64_path_for_huge_bounds(rng):
    """Above 2**53 the product runs in int64; the result is still exact."""
    spec = NumericSpec(acc_bits=48)
    x = np.full((1, 1, 1), 255, np.uint8)
    wt = np.full((1, 1, 1, 1), 127, np.int8)
    bias = np.array([(1 << 47) - 1 - 127 * 255])
    np.testing.assert_array_equal(conv2d_acc(x, wt, bias, spec=spec), [[[(1 << 47) - 1]]])


def test_fc_acc_matches_loops_and_onnx_matmul_integer(rng):
    k, m = 37, 11
    x = rng.integers(0, 256, size=k).astype(np.uint8)
    prec = rand_precision(rng, m)
    wt = rand_weights(rng, (m, k), prec)
    bias = rng.integers(-5000, 5000, size=m)
    want = np.array([int(bias[i]) + sum(int(wt[i, j]) * int(x[j]) for j in range(k))
                     for i in range(m)])
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    ref = onnx_eval([node], [vi("a", TensorProto.UINT8), vi("b", TensorProto.INT8)],
                    [vi("y", TensorProto.INT32)], {"a": x[None], "b": wt.T.copy()})[0]
    np.testing.assert_array_equal(ref.astype(np.int64) + bias, want)
    got = fc_acc(x, wt, bias, SPEC, precision=prec)
    assert got.shape == (m,)
    np.testing.assert_array_equal(got, want)
    got3 = fc_acc(x.reshape(k, 1, 1), wt.reshape(m, k, 1, 1), bias, spec=SPEC)
    assert got3.shape == (m, 1, 1)
    np.testing.assert_array_equal(got3.reshape(-1), want)


@pytest.mark.parametrize("in_bits", [4, 5, 8])
def test_full_scale_extreme_weights(in_bits):
    """-7 / -127 weights on full-scale activations (15, 31, 255): negative accumulators."""
    amax = (1 << in_bits) - 1
    c, k = 9, 3
    x = np.full((c, 4, 4), amax, np.uint8)
    prec = np.array([Precision.LO, Precision.HI, Precision.LO, Precision.HI], np.uint8)
    wt = np.empty((4, c, k, k), np.int8)
    wt[0], wt[1], wt[2], wt[3] = -7, -127, 7, 127
    bias = np.array([-3, 5, 0, -1])
    got = conv2d_acc(x, wt, bias, spec=NumericSpec(act_bits=in_bits), precision=prec)
    n = c * k * k
    want = np.array([-7 * amax * n - 3, -127 * amax * n + 5, 7 * amax * n, 127 * amax * n - 1])
    np.testing.assert_array_equal(got[:, 0, 0], want)
    assert got.shape == (4, 2, 2) and (got == want[:, None, None]).all()
    # with padding, border pixels see fewer taps: the corner sees 4 of 9
    got_p = conv2d_acc(x, wt, bias, padding=1, spec=NumericSpec(act_bits=in_bits),
                       precision=prec)
    assert got_p[1, 0, 0] == -127 * amax * c * 4 + 5


class TestAccumulatorOverflowBoundary:
    def _layer(self, bias, spec=SPEC):
        x = np.full((1, 1, 1), 255, np.uint8)
        wt = np.full((1, 1, 1, 1), 127, np.int8)
        return conv2d_acc(x, wt, np.array([bias]), spec=spec)

    def test_top_of_range_is_ok(self):
        assert self._layer((1 << 31) - 1 - 127 * 255)[0, 0, 0] == (1 << 31) - 1

    def test_one_past_the_top_raises(self):
        with pytest.raises(AccumulatorOverflow,
                           match=r"output channel 0, pixel \(oy, ox\) = \(0, 0\): bias \+ "
                                 r"sum\(W\*X\) = 2147483648 is outside the 32-bit two's "
                                 r"complement range \[-2147483648, 2147483647\]") as e:
            self._layer((1 << 31) - 127 * 255)
        assert (e.value.channel, e.value.pixel, e.value.value) == (0, (0, 0), 1 << 31)

    def test_bottom_of_range(self):
        x = np.full((1, 1, 1), 255, np.uint8)
        wt = np.full((1, 1, 1, 1), -127, np.int8)
        ok = conv2d_acc(x, wt, np.array([-(1 << 31) + 127 * 255]), spec=SPEC)
        assert ok[0, 0, 0] == -(1 << 31)
        with pytest.raises(AccumulatorOverflow, match=r"= -2147483649 is outside"):
            conv2d_acc(x, wt, np.array([-(1 << 31) + 127 * 255 - 1]), spec=SPEC)

    def test_sum_without_bias_must_fit_too(self):
        """16-bit accumulator: the PE sum 32768 overflows even though bias brings it back."""
        spec = NumericSpec(acc_bits=16)
        x = np.array([255, 255, 128], np.uint8).reshape(3, 1, 1)
        wt = np.array([127, 1, 1], np.int8).reshape(1, 3, 1, 1)
        with pytest.raises(AccumulatorOverflow, match=r"sum\(W\*X\) without the bias = 32768"):
            conv2d_acc(x, wt, np.array([-100]), spec=spec)
        x[2, 0, 0] = 127
        assert conv2d_acc(x, wt, np.array([0]), spec=spec)[0, 0, 0] == 32767

    def test_names_the_channel_and_pixel(self, rng):
        spec = NumericSpec(acc_bits=16)
        x = np.zeros((2, 3, 4), np.uint8)
        x[:, 2, 1] = 255
        wt = np.zeros((3, 2, 1, 1), np.int8)
        wt[2] = 127
        with pytest.raises(AccumulatorOverflow, match=r"channel 2, pixel \(oy, ox\) = \(2, 1\)"):
            conv2d_acc(x, wt, np.zeros(3, np.int64), spec=spec, precision=[0, 0, 1])


# -- requantize -------------------------------------------------------------------------------

@pytest.mark.parametrize("act_bits", [4, 5, 8])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("residual", [None, "unsigned", "signed"])
def test_requantize_matches_exact_rationals(rng, act_bits, relu, residual):
    spec = NumericSpec(act_bits=act_bits)
    m, n = 6, 40
    lo, hi = spec.acc_range
    acc = np.concatenate([rng.integers(lo, hi, size=(m, n // 2), endpoint=True),
                          rng.integers(-5000, 5000, size=(m, n // 2))], axis=1)
    acc[0, 0], acc[1, 0] = lo, hi
    mult = rng.integers(0, spec.mult_range[1], size=m, endpoint=True)
    shift = rng.integers(*spec.shift_range, size=m, endpoint=True)
    shift[:2] = spec.shift_range  # S = 1 and the maximum S
    mult[2] = 0
    mult[3] = spec.mult_range[1]
    res = res_mult = None
    if residual:
        rlo, rhi = (-(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1) if residual == "signed" \
            else (0, (1 << act_bits) - 1)
        res = rng.integers(rlo, rhi, size=(m, n), endpoint=True)
        res_mult = rng.integers(0, spec.mult_range[1], size=m, endpoint=True)
    out_signed = not relu
    qmin, qmax = output_range(act_bits, out_signed, relu)
    got = requantize(acc, mult, shift, res=res, res_mult=res_mult, relu=relu, out_bits=act_bits,
                     out_signed=out_signed, spec=spec)
    np.testing.assert_array_equal(got, ref_requant(acc, mult, shift, res, res_mult, qmin, qmax))
    assert got.min() >= qmin and got.max() <= qmax


def test_requantize_rounding_ties():
    """Exact halves round towards +infinity, positive and negative (floor of x + 1/2)."""
    acc = np.array([[3, -3, 5, -5, 1, -1, 6, -6, 2, -2]])
    got = requantize(acc, [1], [1], relu=False, out_bits=8, out_signed=True, spec=SPEC)
    #            1.5 -1.5 2.5 -2.5 .5 -.5  3  -3  1  -1
    np.testing.assert_array_equal(got, [[2, -1, 3, -2, 1, 0, 3, -3, 1, -1]])
    # S = 4: (acc*M) with low 4 bits exactly 8 -> ties; 7 and 9 around them
    acc = np.array([[8, 24, -8, -24, 7, 9, -7, -9]])
    got = requantize(acc, [1], [4], relu=False, out_bits=8, out_signed=True, spec=SPEC)
    np.testing.assert_array_equal(got, [[1, 2, 0, -1, 0, 1, 0, -1]])
    # tie produced by the residual term: acc*M + res*Mr = 3 * 2**(S-1)
    got = requantize(np.array([[1, -4]]), [2], [2], res=np.array([[1, 1]]), res_mult=[4],
                     relu=False, out_bits=8, out_signed=True, spec=SPEC)
    np.testing.assert_array_equal(got, [[2, -1]])  # 6/4 = 1.5 -> 2, -4/4 = -1


def test_requantize_clamps_both_ends():
    acc = np.array([[10**6, -10**6, 0, 254, 256]])
    unsigned = requantize(acc, [1], [1], relu=True, out_bits=8, out_signed=False, spec=SPEC)
    np.testing.assert_array_equal(unsigned, [[255, 0, 0, 127, 128]])
    signed = requantize(acc, [1], [1], relu=False, out_bits=8, out_signed=True, spec=SPEC)
    np.testing.assert_array_equal(signed, [[127, -128, 0, 127, 127]])
    four = requantize(np.array([[31, 29, -17, -15]]), [1], [1], relu=False, out_bits=4,
                      out_signed=True, spec=NumericSpec(act_bits=4))
    np.testing.assert_array_equal(four, [[7, 7, -8, -7]])
    five = requantize(np.array([[62, 61, -1]]), [1], [1], relu=True, out_bits=5,
                      out_signed=False, spec=NumericSpec(act_bits=5))
    np.testing.assert_array_equal(five, [[31, 31, 0]])


def test_requantize_extremes_of_the_intermediate():
    """Largest |acc| times the largest M: the intermediate is exact (no int64 wrap)."""
    lo, hi = SPEC.acc_range
    mmax = SPEC.mult_range[1]
    smax = SPEC.shift_range[1]
    acc = np.array([[lo, hi, lo, hi]])
    got = requantize(acc, [mmax], [smax], res=np.array([[-128, 255, 255, -128]]),
                     res_mult=[mmax], relu=False, out_bits=8, out_signed=True, spec=SPEC)
    want = ref_requant(acc, [mmax], [smax], np.array([[-128, 255, 255, -128]]), [mmax],
                       -128, 127)
    np.testing.assert_array_equal(got, want)
    assert SPEC.requant_bits == 49


def test_requantize_wide_spec_uses_exact_integers(rng):
    """acc_bits 48 + mult_bits 24 needs a 73-bit intermediate: still exact."""
    spec = NumericSpec(acc_bits=48, mult_bits=24)
    assert spec.requant_bits > 63
    lo, hi = spec.acc_range
    acc = rng.integers(lo, hi, size=(3, 20), endpoint=True)
    acc[0, :2] = lo, hi
    mult = rng.integers(0, spec.mult_range[1], size=3, endpoint=True)
    shift = np.array([spec.shift_range[1], 40, 1])
    got = requantize(acc, mult, shift, relu=False, out_bits=8, out_signed=True, spec=spec)
    np.testing.assert_array_equal(got, ref_requant(acc, mult, shift, None, None, -128, 127))


def test_requant_overflow_check_is_live(monkeypatch):
    """The requant_bits assertion fires if the hardware adder were narrower than the values."""
    import ilmpq.golden.ops as ops
    spec = NumericSpec()
    monkeypatch.setattr(NumericSpec, "requant_bits", property(lambda self: 20))
    with pytest.raises(RequantOverflow, match=r"does not fit the 20-bit signed range"):
        ops.requantize(np.array([[1 << 20]]), [1], [1], relu=False, out_bits=8,
                       out_signed=True, spec=spec)


# -- pooling and flatten ----------------------------------------------------------------------

POOL_CASES = [
    ((3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 2), (2, 2), (0, 0, 0, 0)),
    ((3, 2), (1, 2), (2, 0, 1, 1)),
    ((3, 3), (3, 3), (0, 2, 2, 0)),
]


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_max_pool_matches_loops_and_onnx(rng, kernel, stride, padding, dtype):
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=(3, 7, 8), endpoint=True).astype(dtype)
    got = max_pool(x, kernel, stride, padding)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, loop_max_pool(x, kernel, stride, padding))
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel),
                            strides=list(stride), pads=list(padding))
    ref = onnx_eval([node], [vi("x", elem)], [vi("y", elem)], {"x": x[None]})[0]
    np.testing.assert_array_equal(got, ref)


def test_max_pool_padding_never_wins():
    """All-negative signed input: a zero padding value would win; it must not."""
    x = np.full((1, 2, 2), -100, np.int8)
    x[0, 1, 1] = -90
    got = max_pool(x, 3, 2, 1)
    np.testing.assert_array_equal(got, [[[-90]]])
    x_unsigned = np.zeros((1, 3, 3), np.uint8)
    np.testing.assert_array_equal(max_pool(x_unsigned, 2, 2, (1, 1, 0, 0)), np.zeros((1, 2, 2)))


def test_global_avg_pool_round_half_up():
    x = np.array([1, 2, -1, -2, -3, 0, 0, 0, 5, 5, 5, 6, 255, 254, 255, 254])
    x = x.reshape(4, 1, 4)[:, :, :4]
    # per channel: [1,2,-1,-2] -> 0 ; [-3,0,0,0] -> -0.75 -> -1 ; [5,5,5,6] -> 5.25 -> 5 ;
    # [255,254,255,254] -> 254.5 -> 255
    got = global_avg_pool(x)
    np.testing.assert_array_equal(got.reshape(-1), [0, -1, 5, 255])
    ties = np.array([[1, 2], [-1, -2], [-2, -3], [3, 4]]).reshape(4, 1, 2)
    np.testing.assert_array_equal(global_avg_pool(ties).reshape(-1), [2, -1, -2, 4])


@pytest.mark.parametrize("shape", [(5, 7, 7), (3, 1, 1), (4, 2, 3), (2, 4, 4)])
@pytest.mark.parametrize("signed", [False, True])
def test_global_avg_pool_matches_fractions(rng, shape, signed):
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    got = global_avg_pool(x)
    assert got.dtype == dtype and got.shape == (shape[0], 1, 1)
    n = shape[1] * shape[2]
    want = [math.floor(Fraction(int(x[c].astype(np.int64).sum()), n) + Fraction(1, 2))
            for c in range(shape[0])]
    np.testing.assert_array_equal(got.reshape(-1), want)


def test_flatten_is_channel_major(rng):
    x = rng.integers(0, 256, size=(3, 2, 4)).astype(np.uint8)
    y = flatten(x)
    assert y.shape == (24, 1, 1) and y.dtype == np.uint8
    np.testing.assert_array_equal(y.reshape(-1), [x[c, i, j] for c in range(3) for i in range(2)
                                                  for j in range(4)])


# -- overflow proof ---------------------------------------------------------------------------

def _conv_layer(weight, bias, name="convX"):
    m = weight.shape[0]
    return ConvLayer(name=name, input="a", output="b", weight=weight,
                     precision=np.ones(m, np.uint8), bias=np.asarray(bias, np.int64),
                     mult=np.ones(m, np.int64), shift=np.ones(m, np.int64))


def test_acc_bound_formula(rng):
    w = rng.integers(-127, 128, size=(5, 3, 3, 3)).astype(np.int8)
    b = rng.integers(-1000, 1000, size=5)
    got = acc_bound(w, b, 8)
    want = [abs(int(b[i])) + sum(abs(int(v)) for v in w[i].ravel()) * 255 for i in range(5)]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(acc_bound(w, None, 4),
                                  np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3)) * 15)


def test_acc_bound_bounds_every_actual_accumulator(rng):
    w = rng.integers(-127, 128, size=(6, 4, 3, 3)).astype(np.int8)
    b = rng.integers(-10**6, 10**6, size=6)
    bound = acc_bound(w, b, 8)
    for fill in (0, 255, None):
        x = (rng.integers(0, 256, size=(4, 6, 6)) if fill is None
             else np.full((4, 6, 6), fill)).astype(np.uint8)
        acc = conv2d_acc(x, w, b, padding=1, spec=SPEC)
        assert (np.abs(acc) <= bound[:, None, None]).all()
    # the bound is reached: all-255 input against a row with only negative weights, bias < 0
    w1 = np.full((1, 2, 1, 1), -127, np.int8)
    x1 = np.full((2, 1, 1), 255, np.uint8)
    assert -conv2d_acc(x1, w1, np.array([-9]), spec=SPEC)[0, 0, 0] == acc_bound(w1, [-9], 8)[0]


def test_check_no_overflow_boundary():
    w = np.full((2, 1, 1, 1), 127, np.int8)
    top = (1 << 31) - 1 - 127 * 255
    bound = check_no_overflow(_conv_layer(w, [0, top]), 8, SPEC)
    assert bound[1] == (1 << 31) - 1
    with pytest.raises(AccumulatorOverflow,
                       match=r"layer 'convX' row 1 may overflow the 32-bit accumulator: worst "
                             r"case \|bias\| \+ sum\|w\| \* \(2\*\*8 - 1\) = 2147451263 \+ 127 "
                             r"\* 255 = 2147483648 > 2147483647") as e:
        check_no_overflow(_conv_layer(w, [0, top + 1]), 8, SPEC)
    assert (e.value.layer, e.value.channel, e.value.value) == ("convX", 1, 1 << 31)
    # a negative bias counts by its magnitude
    with pytest.raises(AccumulatorOverflow, match=r"row 0"):
        check_no_overflow(_conv_layer(w, [-(top + 1), 0]), 8, SPEC)
    # the same layer is safe with 4-bit inputs
    check_no_overflow(_conv_layer(w, [0, top + 1]), 4, SPEC)


# -- property tests ---------------------------------------------------------------------------

@st.composite
def conv_problems(draw):
    in_bits = draw(st.sampled_from([4, 5, 8]))
    c = draw(st.integers(1, 4))
    m = draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h = draw(st.integers(max(1, kh - pad[0] - pad[2]), 8))
    w = draw(st.integers(max(1, kw - pad[1] - pad[3]), 8))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 2**32 - 1))
    return in_bits, c, m, (kh, kw), (h, w), stride, pad, seed


@settings(max_examples=60, deadline=None)
@given(conv_problems())
def test_property_conv2d_acc(problem):
    in_bits, c, m, k, (h, w), stride, pad, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << in_bits, size=(c, h, w)).astype(np.uint8)
    prec = rand_precision(rng, m)
    wt = rand_weights(rng, (m, c) + k, prec)
    bias = rng.integers(-(1 << 20), 1 << 20, size=m)
    spec = NumericSpec(act_bits=in_bits)
    got = conv2d_acc(x, wt, bias, stride=stride, padding=pad, spec=spec, precision=prec)
    np.testing.assert_array_equal(got, loop_conv(x, wt, bias, stride, pad))
    # explicit zero padding and stride-1 subsampling give the same integers
    xp = np.pad(x, ((0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    dense = conv2d_acc(xp, wt, bias, spec=NumericSpec(), precision=prec)
    np.testing.assert_array_equal(got, dense[:, ::stride[0], ::stride[1]])
    assert (np.abs(got) <= acc_bound(wt, bias, in_bits)[:, None, None]).all()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 5, 8]), st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_property_requantize(act_bits, relu, with_res, seed):
    rng = np.random.default_rng(seed)
    spec = NumericSpec(act_bits=act_bits)
    m = int(rng.integers(1, 5))
    shape = (m, int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    scale = int(rng.integers(1, 32))
    lo, hi = spec.acc_range
    acc = np.clip(rng.integers(-(1 << scale), 1 << scale, size=shape), lo, hi)
    mult = rng.integers(0, spec.mult_range[1], size=m, endpoint=True)
    shift = rng.integers(*spec.shift_range, size=m, endpoint=True)
    res = rng.integers(-128, 256, size=shape) if with_res else None
    res_mult = rng.integers(0, spec.mult_range[1], size=m, endpoint=True) if with_res else None
    out_signed = not relu
    got = requantize(acc, mult, shift, res=res, res_mult=res_mult, relu=relu,
                     out_bits=act_bits, out_signed=out_signed, spec=spec)
    qmin, qmax = output_range(act_bits, out_signed, relu)
    np.testing.assert_array_equal(got, ref_requant(acc, mult, shift, res, res_mult, qmin, qmax))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.lists(st.integers(0, 2), min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_property_max_pool(kh, kw, sy, sx, pad, seed):
    pad = (min(pad[0], kh - 1), min(pad[1], kw - 1), min(pad[2], kh - 1), min(pad[3], kw - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(2, int(rng.integers(kh, 7)), int(rng.integers(kw, 7))))
    x = x.astype(np.int8)
    np.testing.assert_array_equal(max_pool(x, (kh, kw), (sy, sx), pad),
                                  loop_max_pool(x, (kh, kw), (sy, sx), pad))


# -- bad inputs -------------------------------------------------------------------------------

def _conv_args():
    x = np.zeros((2, 4, 4), np.uint8)
    w = np.zeros((3, 2, 3, 3), np.int8)
    b = np.zeros(3, np.int64)
    return x, w, b


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda x, w, b: (x.astype(np.float32), w, b), IlmpqTypeError,
     r"^x must be an integer array \(any NumPy integer dtype\), not dtype float32$"),
    (lambda x, w, b: (x.astype(bool), w, b), IlmpqTypeError, r"x must be an integer array"),
    (lambda x, w, b: (x, w.astype(np.float64), b), IlmpqTypeError,
     r"w must be an integer array"),
    (lambda x, w, b: (x, w, b.astype(np.float64)), IlmpqTypeError,
     r"bias must be an integer array"),
    (lambda x, w, b: (x[0], w, b), IlmpqValueError,
     r"x must have 3 dimensions, not 2 \(shape \(4, 4\)\)"),
    (lambda x, w, b: (x.astype(np.int16) + 256, w, b), IlmpqValueError,
     r"x\[0, 0, 0\] = 256 is outside the allowed range \[0, 255\] of unsigned 8-bit"),
    (lambda x, w, b: (x.astype(np.int16) - 1, w, b), IlmpqValueError,
     r"x\[0, 0, 0\] = -1 is outside the allowed range \[0, 255\]"),
    (lambda x, w, b: (x, np.full_like(w, -128), b), IlmpqValueError,
     r"w\[0, 0, 0, 0\] = -128 is outside the allowed range \[-127, 127\] of 8-bit weights"),
    (lambda x, w, b: (x[:1], w, b), IlmpqValueError,
     r"x has 1 channels but w expects 2 input channels"),
    (lambda x, w, b: (x, w, b[:2]), IlmpqValueError,
     r"bias has 2 entries but w has 3 rows"),
    (lambda x, w, b: (x, w, b + (1 << 31)), IlmpqValueError,
     r"bias\[0\] = 2147483648 is outside the allowed range \[-2147483648, 2147483647\] of the "
     r"32-bit accumulator"),
    (lambda x, w, b: (x[:, :2, :2], w, b), IlmpqValueError,
     r"the 3x3 kernel does not fit the padded 2x2 input"),
])
def test_conv2d_acc_bad_inputs(mutate, exc, match):
    x, w, b = mutate(*_conv_args())
    with pytest.raises(exc, match=match) as e:
        conv2d_acc(x, w, b, spec=SPEC)
    assert isinstance(e.value, IlmpqError)
    assert isinstance(e.value, ValueError if exc is IlmpqValueError else TypeError)


def test_conv2d_acc_checks_each_rows_precision():
    x, w, b = _conv_args()
    w[2, 1, 2, 0] = 8
    prec = np.array([Precision.HI, Precision.HI, Precision.LO], np.uint8)
    with pytest.raises(IlmpqValueError,
                       match=r"w\[2, 1, 2, 0\] = 8 is outside the range of row 2's precision LO "
                             r"\(4-bit\): \[-7, 7\]"):
        conv2d_acc(x, w, b, spec=SPEC, precision=prec)
    w[2, 1, 2, 0] = -7
    conv2d_acc(x, w, b, spec=SPEC, precision=prec)
    w[0, 0, 1, 1] = -128  # int8: abs() would wrap to -128; the check must still see it
    with pytest.raises(IlmpqValueError,
                       match=r"w\[0, 0, 1, 1\] = -128 is outside the range of row 0's precision "
                             r"HI \(8-bit\): \[-127, 127\]"):
        conv2d_acc(x, w, b, spec=SPEC, precision=prec)
    w[0, 0, 1, 1] = 0
    with pytest.raises(IlmpqValueError, match=r"precision has 2 entries but w has 3 rows"):
        conv2d_acc(x, w, b, spec=SPEC, precision=prec[:2])
    with pytest.raises(IlmpqValueError, match=r"precision\[0\] = 2 is outside"):
        conv2d_acc(x, w, b, spec=SPEC, precision=[2, 0, 0])


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"stride": 0}, IlmpqValueError, r"stride = 0 is not allowed: it must be >= 1"),
    ({"stride": (1, 2, 3)}, IlmpqValueError, r"stride must be an int or a pair"),
    ({"stride": 1.5}, IlmpqTypeError, r"stride must be an integer"),
    ({"padding": -1}, IlmpqValueError, r"padding = -1 is not allowed: it must be >= 0"),
    ({"padding": (1, 1, 1)}, IlmpqValueError, r"padding must be an int, a pair"),
    ({"in_bits": 6}, IlmpqValueError, r"in_bits = 6 is not allowed"),
    ({"spec": 8}, IlmpqTypeError, r"spec must be a NumericSpec"),
])
def test_conv2d_acc_bad_parameters(kwargs, exc, match):
    x, w, b = _conv_args()
    kwargs = {"spec": SPEC, **kwargs}
    with pytest.raises(exc, match=match):
        conv2d_acc(x, w, b, **kwargs)


def test_four_bit_input_range_is_checked():
    x, w, b = _conv_args()
    x[1, 3, 2] = 16
    with pytest.raises(IlmpqValueError,
                       match=r"x\[1, 3, 2\] = 16 is outside the allowed range \[0, 15\] of "
                             r"unsigned 4-bit activations"):
        conv2d_acc(x, w, b, spec=NumericSpec(act_bits=4))
    conv2d_acc(x, w, b, spec=NumericSpec(act_bits=4), in_bits=8)  # the pixel input is 8-bit


def test_fc_acc_bad_shapes():
    with pytest.raises(IlmpqValueError, match=r"x must have shape \(K,\) or \(K, 1, 1\)"):
        fc_acc(np.zeros((3, 2, 1), np.uint8), np.zeros((2, 3), np.int8), np.zeros(2, int), SPEC)
    with pytest.raises(IlmpqValueError, match=r"w must have shape \(M, K\) or \(M, K, 1, 1\)"):
        fc_acc(np.zeros(3, np.uint8), np.zeros((2, 3, 3, 3), np.int8), np.zeros(2, int), SPEC)
    with pytest.raises(IlmpqValueError, match=r"x has 4 channels but w expects 3"):
        fc_acc(np.zeros(4, np.uint8), np.zeros((2, 3), np.int8), np.zeros(2, int), SPEC)


def _rq(**kw):
    args = dict(acc=np.zeros((2, 3), np.int64), mult=[1, 1], shift=[1, 1], relu=True, out_bits=8,
                out_signed=False, spec=SPEC)
    args.update(kw)
    acc, mult, shift = args.pop("acc"), args.pop("mult"), args.pop("shift")
    return requantize(acc, mult, shift, **args)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"mult": [1, 65536]}, IlmpqValueError,
     r"mult\[1\] = 65536 is outside the allowed range \[0, 65535\] of unsigned 16-bit"),
    ({"mult": [-1, 0]}, IlmpqValueError, r"mult\[0\] = -1 is outside"),
    ({"shift": [0, 1]}, IlmpqValueError, r"shift\[0\] = 0 is outside the allowed range \[1, 47\]"),
    ({"shift": [1, 48]}, IlmpqValueError,
     r"shift\[1\] = 48 is outside the allowed range \[1, 47\]"),
    ({"mult": [1, 1, 1]}, IlmpqValueError, r"mult has 3 entries but acc has 2 output channels"),
    ({"acc": np.full((2, 3), 1 << 31)}, IlmpqValueError,
     r"acc\[0, 0\] = 2147483648 is outside the allowed range"),
    ({"acc": np.zeros((2, 3), np.float64)}, IlmpqTypeError, r"acc must be an integer array"),
    ({"res": np.zeros((2, 3), np.int64)}, IlmpqValueError,
     r"res and res_mult must be given together"),
    ({"res": np.zeros((2, 4), np.int64), "res_mult": [1, 1]}, IlmpqValueError,
     r"res has shape \(2, 4\) but acc has shape \(2, 3\)"),
    ({"res": np.full((2, 3), 256), "res_mult": [1, 1]}, IlmpqValueError,
     r"res\[0, 0\] = 256 is outside the allowed range \[-128, 255\]"),
    ({"res": np.zeros((2, 3), np.int64), "res_mult": [1, 1 << 16]}, IlmpqValueError,
     r"res_mult\[1\] = 65536 is outside"),
    ({"out_bits": 6}, IlmpqValueError, r"out_bits = 6 is not allowed: outputs have one of"),
    ({"relu": 1}, IlmpqTypeError, r"relu must be True or False"),
    ({"out_signed": None}, IlmpqTypeError, r"out_signed must be True or False"),
])
def test_requantize_bad_inputs(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _rq(**kwargs)


def test_pool_bad_inputs():
    x = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(IlmpqValueError, match=r"each padding must be smaller than the kernel"):
        max_pool(x, 2, 2, 2)
    with pytest.raises(IlmpqValueError, match=r"x must have 3 dimensions"):
        max_pool(x[0], 2)
    with pytest.raises(IlmpqTypeError, match=r"x must be an integer array"):
        global_avg_pool(x.astype(np.float32))
    with pytest.raises(IlmpqValueError, match=r"kernel = 0 is not allowed"):
        max_pool(x, 0)
    with pytest.raises(IlmpqTypeError, match=r"x must be an integer array"):
        flatten(np.zeros((1, 2, 2)))
