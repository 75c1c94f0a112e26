"""golden/reference.py: whole-model execution against an independent loop executor."""

import math
from fractions import Fraction

import numpy as np
import pytest

from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import ConvLayer, FlattenLayer, GlobalAvgPoolLayer, MaxPoolLayer
from ilmpq.golden.random_models import random_qmodel
from ilmpq.golden.reference import predict, run, run_batch, run_layer


# -- independent executor: Python integers and loops, nothing from golden.ops ----------------

def _conv(x, layer):
    c_in, h, w = x.shape
    wt = layer.weight.tolist()
    m_out, _, kh, kw = layer.weight.shape
    sy, sx = layer.stride
    pt, pl, pb, pr = layer.padding
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    xs = x.tolist()
    out = [[[0] * ow for _ in range(oh)] for _ in range(m_out)]
    for m in range(m_out):
        for oy in range(oh):
            for ox in range(ow):
                s = int(layer.bias[m])
                for c in range(c_in):
                    for kr in range(kh):
                        iy = oy * sy + kr - pt
                        for kc in range(kw):
                            ix = ox * sx + kc - pl
                            if 0 <= iy < h and 0 <= ix < w:
                                s += wt[m][c][kr][kc] * xs[c][iy][ix]
                out[m][oy][ox] = s
    return out


def _requant(acc, layer, res, spec_out):
    bits, signed = spec_out.bits, spec_out.signed
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if layer.relu:
        qmin = max(qmin, 0)
    out = []
    for m, plane in enumerate(acc):
        mult, shift = int(layer.mult[m]), int(layer.shift[m])
        rows = []
        for oy, row in enumerate(plane):
            vals = []
            for ox, a in enumerate(row):
                num = Fraction(a * mult, 1 << shift)
                if res is not None:
                    num += Fraction(int(res[m][oy][ox]) * int(layer.res_mult[m]), 1 << shift)
                vals.append(min(max(math.floor(num + Fraction(1, 2)), qmin), qmax))
            rows.append(vals)
        out.append(rows)
    return out


def _maxpool(x, layer):
    c_in, h, w = x.shape
    (kh, kw), (sy, sx), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.padding
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    return [[[max(int(x[c, iy, ix]) for iy in range(oy * sy - pt, oy * sy - pt + kh)
                  for ix in range(ox * sx - pl, ox * sx - pl + kw) if 0 <= iy < h and 0 <= ix < w)
              for ox in range(ow)] for oy in range(oh)] for c in range(c_in)]


def loop_run(model, image):
    vals = {model.input: np.asarray(image).astype(np.int64)}
    for layer in model.layers:
        x = vals[layer.input]
        out = model.tensors[layer.output]
        if isinstance(layer, ConvLayer):
            res = None if layer.residual is None else vals[layer.residual].tolist()
            y = _requant(_conv(x, layer), layer, res, out)
        elif isinstance(layer, MaxPoolLayer):
            y = _maxpool(x, layer)
        elif isinstance(layer, GlobalAvgPoolLayer):
            n = x.shape[1] * x.shape[2]
            y = [[[math.floor(Fraction(int(x[c].sum()), n) + Fraction(1, 2))]]
                 for c in range(x.shape[0])]
        elif isinstance(layer, FlattenLayer):
            y = [[[int(v)]] for v in x.reshape(-1)]
        vals[layer.output] = np.array(y, dtype=np.int64).reshape(out.shape)
    return vals


# -- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("act_bits", [4, 5, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_run_matches_loop_executor(act_bits, seed):
    rng = np.random.default_rng(1000 * act_bits + seed)
    model = random_qmodel(rng, spec=NumericSpec(act_bits=act_bits), input_shape=(3, 12, 11),
                          max_channels=6, num_blocks=3)
    image = rng.integers(0, 256, size=(3, 12, 11), dtype=np.uint8)
    got = run(model, image)
    want = loop_run(model, image)
    assert list(got) == [model.input] + [layer.output for layer in model.layers]
    for name, spec in model.tensors.items():
        assert got[name].dtype == spec.dtype and got[name].shape == spec.shape, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        lo, hi = spec.range
        assert got[name].min() >= lo and got[name].max() <= hi


def test_run_layer_and_timings(rng):
    model = random_qmodel(rng, input_shape=(3, 12, 12), max_channels=8)
    image = rng.integers(0, 256, size=(3, 12, 12), dtype=np.uint8)
    timings = {}
    tensors = run(model, image, timings=timings)
    assert list(timings) == [layer.name for layer in model.layers]
    assert all(t >= 0 for t in timings.values())
    np.testing.assert_array_equal(tensors[model.input], image)
    for layer in model.layers:
        np.testing.assert_array_equal(run_layer(model, layer, tensors), tensors[layer.output])


def test_run_batch_and_predict(rng):
    model = random_qmodel(rng, input_shape=(3, 10, 10), max_channels=8, num_classes=7)
    images = rng.integers(0, 256, size=(4, 3, 10, 10), dtype=np.uint8)
    batch = run_batch(model, images)
    assert set(batch) == set(model.tensors)
    for i, img in enumerate(images):
        single = run(model, img)
        for name in model.tensors:
            np.testing.assert_array_equal(batch[name][i], single[name])
    logits = batch[model.output].reshape(4, -1)
    assert logits.shape == (4, 7)
    np.testing.assert_array_equal(predict(model, images), np.argmax(logits, axis=1))
    assert predict(model, images[2]) == int(np.argmax(logits[2]))
    assert run_batch(model, images[:0])[model.output].shape == (0, 7, 1, 1)


def test_run_is_deterministic_and_depends_on_the_image(rng):
    model = random_qmodel(rng, input_shape=(3, 8, 8), max_channels=5)
    a, b = rng.integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    ra1, rb, ra2 = run(model, a), run(model, b), run(model, a)
    for name in model.tensors:
        np.testing.assert_array_equal(ra1[name], ra2[name])
    assert all(not np.array_equal(ra1[layer.output], rb[layer.output])
               for layer in model.conv_layers[:2])


def test_run_bad_images(rng):
    model = random_qmodel(rng, input_shape=(3, 8, 8), max_channels=5)
    with pytest.raises(IlmpqValueError, match=r"image has shape \(3, 8, 9\) but the model input "
                                              r"'input' is \(3, 8, 8\)"):
        run(model, np.zeros((3, 8, 9), np.uint8))
    with pytest.raises(IlmpqTypeError, match=r"image must be an integer array"):
        run(model, np.zeros((3, 8, 8), np.float32))
    bad = np.zeros((3, 8, 8), np.int16)
    bad[1, 2, 3] = 300
    with pytest.raises(IlmpqValueError, match=r"image\[1, 2, 3\] = 300 is outside the allowed "
                                              r"range \[0, 255\] of 8-bit pixels"):
        run(model, bad)
    with pytest.raises(IlmpqValueError, match=r"images must have shape \(N, C, H, W\)"):
        run_batch(model, np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(IlmpqValueError, match=r"images must have shape \(C, H, W\) or"):
        predict(model, np.zeros((8, 8), np.uint8))


def test_run_validates_the_model(rng):
    model = random_qmodel(rng, input_shape=(3, 8, 8), max_channels=5)
    layer = model.conv_layers[0]
    lo_row = int(np.flatnonzero(layer.precision == 0)[0])
    layer.weight[lo_row, 0, 0, 0] = 100
    image = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(IlmpqValueError, match=r"outside the range of row \d+'s precision LO"):
        run(model, image)
    # without model validation the operator still refuses the weight
    with pytest.raises(IlmpqValueError, match=r"w\[\d+, 0, 0, 0\] = 100 is outside the range"):
        run(model, image, validate=False)
