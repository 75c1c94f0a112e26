"""The ILMPQ quantizer: exact HI share, requantization parameters within their widths, row
selection, integer execution (golden reference) against float on the embedded test split."""

import math
from fractions import Fraction

import numpy as np
import pytest

from ilmpq.golden import reference
from ilmpq.golden.data import load_default_model, load_digits
from ilmpq.golden.errors import IlmpqError
from ilmpq.golden.float_model import FConv, FFlatten, FGlobalAvgPool, FloatModel, FMaxPool
from ilmpq.golden.formats import NumericSpec, Precision
from ilmpq.golden.model import QModel
from ilmpq.golden.quantize import (
    QuantizeError, accuracy_float, accuracy_int, activation_clip, choose_requant,
    fold_input_normalization, parse_ratio, quant_report, quantize, row_scores, select_hi_rows,
    sqnr_db,
)


@pytest.fixture(scope="module")
def default():
    fm = load_default_model()
    return fm, load_digits("calib"), load_digits("test")


def _random_net(rng, c_in=3, hw=9, mean=0.0, std=1.0):
    """A float CNN with odd channel counts: conv/2 + ReLU, maxpool, conv, residual conv, GAP,
    flatten, FC (no ReLU: signed logits)."""
    def conv(name, inp, out, cin, cout, k, stride=(1, 1), pad=(0, 0, 0, 0), relu=True,
             residual=None):
        w = rng.normal(0, 1.5 / math.sqrt(cin * k * k), (cout, cin, k, k))
        return FConv(name, inp, out, w, rng.normal(0, 0.2, cout), stride, pad, relu, residual)

    nodes = [
        conv("c1", "x", "a1", c_in, 13, 3, (2, 2), (1, 1, 1, 1)),
        FMaxPool("p1", "a1", "a2", (2, 2), (1, 1), (0, 0, 1, 1)),
        conv("c2", "a2", "a3", 13, 10, 3, pad=(1, 1, 1, 1)),
        conv("c3", "a3", "a4", 10, 10, 1, residual="a3"),
        FGlobalAvgPool("gap", "a4", "a5"),
        FFlatten("fl", "a5", "a6"),
        conv("fc", "a6", "y", 10, 7, 1, relu=False),
    ]
    h1 = (hw + 2 - 3) // 2 + 1
    shapes = {"x": (c_in, hw, hw), "a1": (13, h1, h1), "a2": (13, h1, h1), "a3": (10, h1, h1),
              "a4": (10, h1, h1), "a5": (10, 1, 1), "a6": (10, 1, 1), "y": (7, 1, 1)}
    fm = FloatModel("x", "y", nodes, shapes, input_mean=mean, input_std=std, output_rank=2)
    return fm


def _pixels(rng, n, shape):
    return rng.integers(0, 256, (n, *shape)).astype(np.uint8)


# -- exact share and parameter ranges ------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0, Fraction(1, 16), Fraction(1, 8), Fraction(1, 4),
                                   Fraction(1, 3), 0.5, 1])
def test_exact_hi_share(rng, ratio):
    fm = _random_net(rng, mean=[100, 120, 90], std=[50, 60, 70])
    q = quantize(fm, _pixels(rng, 12, fm.input_shape), ratio=ratio, spec=NumericSpec(),
                 report=False)
    r = Fraction(ratio).limit_denominator(1 << 16)
    for layer in q.conv_layers:
        m = layer.out_channels
        n_hi = int(np.sum(layer.precision == Precision.HI))
        assert n_hi == math.ceil(r * m), (layer.name, n_hi, m)
        assert len(layer.precision) == m  # no rows added: padding is the compiler's business
    assert q.ratio == float(r)


@pytest.mark.parametrize("act_bits, mult_bits", [(8, 16), (5, 12), (4, 8), (8, 24)])
def test_requant_params_fit_and_shift_is_largest(rng, act_bits, mult_bits):
    spec = NumericSpec(act_bits=act_bits, mult_bits=mult_bits)
    fm = _random_net(rng)
    q = quantize(fm, _pixels(rng, 10, fm.input_shape), ratio=Fraction(1, 4), spec=spec,
                 report=False)
    q.validate(spec)
    smin, smax = spec.shift_range
    mmax = spec.mult_range[1]
    lo, hi = spec.acc_range
    for layer in q.conv_layers:
        x, y = q.tensors[layer.input], q.tensors[layer.output]
        assert y.bits == act_bits and y.signed == (not layer.relu)
        assert layer.mult.min() >= 0 and layer.mult.max() <= mmax
        assert layer.shift.min() >= smin and layer.shift.max() <= smax
        assert layer.bias.min() >= lo and layer.bias.max() <= hi
        wmax = np.where(layer.precision == Precision.HI, 127, 7)
        assert np.all(np.abs(layer.weight.reshape(layer.out_channels, -1)) <= wmax[:, None])
        m_real = layer.w_scale * x.scale / y.scale
        mr_real = None if layer.residual is None else \
            np.full(layer.out_channels, q.tensors[layer.residual].scale / y.scale)
        if mr_real is not None:
            assert layer.res_mult.min() >= 0 and layer.res_mult.max() <= mmax
            np.testing.assert_array_equal(layer.res_mult,
                                          np.rint(mr_real * 2.0 ** layer.shift))
        np.testing.assert_array_equal(layer.mult, np.rint(m_real * 2.0 ** layer.shift))
        # S is the largest shift that keeps M (and Mr) within mult_bits
        both = m_real if mr_real is None else np.maximum(m_real, mr_real)
        at_next = np.rint(both * 2.0 ** (layer.shift + 1))
        assert np.all((layer.shift == smax) | (at_next > mmax)), layer.name
    assert q.tensors[q.input].bits == 8 and q.tensors[q.input].scale == 1.0


def test_input_is_pixels_and_normalization_folds(rng):
    mean, std = [100.0, 120.0, 90.0], [50.0, 60.0, 70.0]
    fm = _random_net(rng, mean=mean, std=std)
    px = _pixels(rng, 6, fm.input_shape)
    folded = fold_input_normalization(fm)
    assert not np.any(folded.input_mean) and np.all(folded.input_std == 1)
    # exact away from the zero-padded border of the first conv (which reads the input)
    first = fm.nodes[0]
    env_o = fm.run(fm.normalize(px), all_tensors=True)
    env_f = folded.run(px, all_tensors=True)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(env_f[first.output][inner], env_o[first.output][inner],
                               rtol=1e-9, atol=1e-9)
    assert not np.allclose(env_f[first.output], env_o[first.output])  # the border differs
    # and the quantizer says so
    q = quantize(fm, px, ratio=0.25, spec=NumericSpec(), report=False)
    assert any("zero-padded" in n for n in quant_report(q).notes)
    # with mean 0 the fold is exact everywhere
    fm0 = _random_net(np.random.default_rng(3), std=std)
    np.testing.assert_allclose(fold_input_normalization(fm0).run(px),
                               fm0.run(fm0.normalize(px)), rtol=1e-9, atol=1e-12)


# -- row selection ---------------------------------------------------------------------------------

def _error_rule_reference(w, x):
    """Direct loop: ||W_m X - Q4(W_m) X|| per row, Q4 = per-row max-abs 4-bit quantizer."""
    out = []
    for row in w:
        s = np.abs(row).max() / 7
        q = np.clip(np.rint(row / s), -7, 7) * s if s > 0 else row * 0
        out.append(np.sqrt(np.sum(((row - q) @ x) ** 2)))
    return np.array(out)


def test_error_rule_scores_and_selection(rng):
    w = rng.normal(0, 1, (9, 20))
    x = rng.uniform(0, 3, (20, 50))
    np.testing.assert_allclose(row_scores(w, x, "error"), _error_rule_reference(w, x),
                               rtol=1e-12)
    np.testing.assert_allclose(row_scores(w, None, "variance"), w.var(axis=1))
    prec = select_hi_rows(np.array([0.1, 5, 3, 5, 0.2]), 2)
    assert prec.tolist() == [0, 1, 0, 1, 0]  # the two largest; ties broken by the lower index
    assert select_hi_rows(np.array([1.0, 1.0, 1.0]), 1).tolist() == [1, 0, 0]


def test_error_rule_uses_calibration_data(rng):
    """Rows whose 4-bit error sits on input channels that are always zero in the calibration data
    cost nothing: the error rule keeps them 4-bit, the variance rule does not."""
    m, c = 8, 6
    grid = rng.integers(-7, 8, (m, c)).astype(np.float64)
    grid[:, 0] = 7  # every row's max |w| is 7: exactly representable in 4 bits
    w = grid * 0.1
    grid[2, 5] = 2
    w[2] = grid[2] * 0.3  # a large variance, on the grid of its own max (2.1) ...
    w[2, 5] += 0.13  # ... but for a big off-grid error on channel 5, which is always 0 below
    w[6, 3] += 0.047  # off-grid error on a live channel
    w[4, 2] += 0.02  # smaller error on a live channel
    fm = FloatModel("x", "y", [FConv("fc", "x", "y", w.reshape(m, c, 1, 1), np.zeros(m),
                                     relu=True)],
                    {"x": (c, 4, 4), "y": (m, 4, 4)})
    px = rng.integers(0, 256, (20, c, 4, 4))
    px[:, 5] = 0
    q_err = quantize(fm, px, ratio=Fraction(1, 4), spec=NumericSpec(), rule="error",
                     report=False)
    q_var = quantize(fm, px, ratio=Fraction(1, 4), spec=NumericSpec(), rule="variance",
                     report=False)
    assert q_err.conv_layers[0].hi_rows.tolist() == [4, 6]
    assert 2 in q_var.conv_layers[0].hi_rows.tolist()


# -- integer execution against float on the embedded test split ---------------------------------

def test_embedded_model_accuracy(default):
    fm, (xc, _), (xt, yt) = default
    acc_f = accuracy_float(fm, xt, yt)
    assert acc_f > 0.97
    for act_bits in (8, 5, 4):
        spec = NumericSpec(act_bits=act_bits)
        q = quantize(fm, xc, ratio=Fraction(1, 8), spec=spec, report=False)
        pred = reference.predict(q, xt)
        acc_q = float(np.mean(pred == yt))
        # ILMPQ at R = 1/8 stays within one point of float; top-1 agrees with float almost
        # everywhere
        assert acc_q >= acc_f - 0.01, (act_bits, acc_q, acc_f)
        ref = fm.predict(fm.normalize(xt)).argmax(1)
        assert np.mean(pred == ref) >= 0.98


def test_more_hi_rows_means_less_error(default):
    """On the calibration data, the network output SQNR grows from all-4-bit to ILMPQ to
    all-8-bit (the report runs the integer network through golden/reference.py)."""
    fm, (xc, _), _ = default
    sq = {}
    for r in (0, Fraction(1, 4), 1):
        q = quantize(fm, xc[:60], ratio=r, spec=NumericSpec(act_bits=8))
        rep = quant_report(q)
        sq[r] = rep.output_sqnr_db
        for lr in rep.layers:
            assert lr.hi_rows + lr.lo_rows == lr.rows
            assert lr.net_sqnr_db is not None and lr.local_sqnr_db is not None
        assert rep.worst_layer == min(rep.layers, key=lambda lr: lr.local_sqnr_db).name
        # the report's output SQNR is the integer network's, recomputed here
        ints = reference.run_batch(q, xc[:60])[q.output].astype(np.int64)
        flt = fm.run(fm.normalize(xc[:60]))
        assert rep.output_sqnr_db == pytest.approx(
            sqnr_db(flt, ints * q.tensors[q.output].scale), rel=1e-9)
    assert sq[0] < sq[Fraction(1, 4)] < sq[1]


def test_deterministic_and_roundtrip(default, tmp_path):
    fm, (xc, _), (xt, yt) = default
    spec = NumericSpec(act_bits=5)
    a = quantize(fm, xc[:40], ratio=Fraction(1, 8), spec=spec, report=False)
    b = quantize(fm, xc[:40], ratio=Fraction(1, 8), spec=spec)
    assert a.layers == b.layers and a.tensors == b.tensors
    b.save(tmp_path / "m.npz")  # the report in meta is JSON
    c = QModel.load(tmp_path / "m.npz")
    assert c.layers == b.layers and c.spec == spec
    assert quant_report(c).format() == quant_report(b).format()
    pred = reference.predict(c, xt[:30])
    np.testing.assert_array_equal(pred, reference.predict(b, xt[:30]))
    assert accuracy_int(c, xt[:30], yt[:30]) == float(np.mean(pred == yt[:30]))


# -- errors ----------------------------------------------------------------------------------------

def test_signed_conv_input_is_golden_arithmetic(rng):
    """A conv reading a signed tensor (a layer without ReLU) quantizes: golden multiplies the
    signed values exactly (it was rejected before; the compiler runs it on the host)."""
    w = rng.normal(0, 1, (4, 2, 1, 1))
    fm = FloatModel("x", "z", [FConv("first", "x", "y", w, np.zeros(4)),
                               FConv("second", "y", "z", rng.normal(0, 1, (3, 4, 1, 1)),
                                     np.zeros(3))],
                    {"x": (2, 3, 3), "y": (4, 3, 3), "z": (3, 3, 3)})
    qm = quantize(fm, _pixels(rng, 4, (2, 3, 3)), ratio=0.5, spec=NumericSpec(), report=False)
    assert qm.tensors["y"].signed
    img = _pixels(rng, 1, (2, 3, 3))[0].astype(np.uint8)
    t = reference.run(qm, img)
    second = qm.layer("second")
    y = t["y"].astype(np.int64)
    assert y.min() < 0          # the random weights give negative values
    acc = np.einsum("mc,chw->mhw", second.weight[:, :, 0, 0].astype(np.int64), y) + \
        second.bias[:, None, None]
    want = np.clip((acc * second.mult[:, None, None] + (1 << (second.shift[:, None, None] - 1)))
                   >> second.shift[:, None, None], -128, 127)
    np.testing.assert_array_equal(t["z"], want)


def test_unrepresentable_multiplier_names_the_layer(rng):
    # y = relu(x0 - (1 - 1e-7) x1): on images with x0 == x1 the outputs are tiny, so the output
    # scale is tiny and M = sw * s_in / s_out cannot fit 16 bits even at S = 1
    w = np.array([1.0, -(1 - 1e-7)]).reshape(1, 2, 1, 1)
    fm = FloatModel("x", "y", [FConv("cancel", "x", "y", w, np.zeros(1), relu=True)],
                    {"x": (2, 2, 2), "y": (1, 2, 2)})
    px = np.repeat(rng.integers(1, 256, (5, 1, 2, 2)), 2, axis=1)
    with pytest.raises(QuantizeError, match=r"layer 'cancel' row 0: the multiplier .* cannot be "
                                            r"represented: M = round\(m \* 2\*\*S\) must fit 16"):
        quantize(fm, px, ratio=1, spec=NumericSpec())
    with pytest.raises(QuantizeError, match="layer 'L' row 1: the residual multiplier"):
        choose_requant(np.array([0.1, 0.1]), NumericSpec(mult_bits=8), mr_real=np.array([1, 1e3]),
                       layer="L")


def test_argument_errors(rng, default):
    fm, (xc, _), _ = default
    spec = NumericSpec()
    with pytest.raises(QuantizeError, match=r"ratio = 1.5 is not allowed: .* in \[0, 1\]"):
        quantize(fm, xc, ratio=1.5, spec=spec)
    with pytest.raises(QuantizeError, match="rule 'hessian' is not allowed"):
        quantize(fm, xc, ratio=0.5, spec=spec, rule="hessian")
    with pytest.raises(QuantizeError, match=r"must have shape \(N, 1, 8, 8\)"):
        quantize(fm, xc[:, 0], ratio=0.5, spec=spec)
    with pytest.raises(QuantizeError, match=r"raw pixels in \[0, 255\]"):
        quantize(fm, xc / 128.0 - 1.0, ratio=0.5, spec=spec)
    with pytest.raises(IlmpqError, match="spec must be a NumericSpec"):
        quantize(fm, xc, ratio=0.5, spec=8)
    with pytest.raises(IlmpqError, match="act_clip 'p99' is not allowed"):
        quantize(fm, xc, ratio=0.5, spec=spec, act_clip="p99")
    assert parse_ratio("1/8") == Fraction(1, 8) and parse_ratio(0.1) == Fraction(1, 10)
    with pytest.raises(QuantizeError, match="not a number"):
        parse_ratio("an eighth")


def test_activation_clip(rng):
    v = np.concatenate([rng.exponential(1.0, 10000), [50.0]])  # one outlier
    assert activation_clip(v, 8, False, "max") == 50.0
    c4 = activation_clip(v, 4, False, "mse")
    c8 = activation_clip(v, 8, False, "mse")
    assert c4 < c8 <= 50.0  # fewer levels clip harder
    assert activation_clip(v, 8, False, 99.0) == pytest.approx(np.percentile(v, 99.0))
    assert activation_clip(-v, 8, False, "mse") == 0.0  # nothing positive after ReLU
    assert activation_clip(-v, 8, True, "max") == 50.0
