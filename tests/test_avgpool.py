"""k x k average pooling (ONNX ``AveragePool``: padding, ``ceil_mode``, ``count_include_pad``):
golden's integer op against ``onnx.reference`` (float average, then golden's rounding), the ONNX
import against ``onnx.reference``, and the pooling unit on the RTL (``tiny``, random memory
stalls) bit-exact; averages whose border windows have other divisors stay on the host."""

import numpy as np
import pytest

from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.float_model import FAvgPool
from ilmpq.golden.model import QModel
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.ops import avg_pool
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from test_frames import _sim

TINY = get_config("tiny")

# (H, W, kernel, stride, pads (top, left, bottom, right), ceil_mode, count_include_pad)
CASES = [
    (7, 9, 3, 1, (1, 1, 1, 1), 0, 1), (7, 9, 3, 2, (1, 1, 1, 1), 1, 1),
    (6, 6, 3, 2, (1, 1, 1, 1), 1, 1), (6, 6, 3, 2, (1, 1, 1, 1), 1, 0),
    (5, 5, 2, 2, (0, 0, 0, 0), 1, 0), (5, 7, 2, 2, (0, 0, 0, 0), 0, 0),
    (8, 5, (3, 2), (2, 1), (2, 0, 1, 1), 0, 0), (4, 4, 4, 1, (0, 0, 0, 0), 0, 1),
    (3, 3, 3, 3, (0, 0, 0, 0), 0, 0),          # a 1x1 output
]


def _onnx_avg(x, k, s, pads, ceil, cip):
    kk = [k, k] if isinstance(k, int) else list(k)
    ss = [s, s] if isinstance(s, int) else list(s)
    pt, pl, pb, pr = pads
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=kk, strides=ss,
                            pads=[pt, pl, pb, pr], ceil_mode=ceil, count_include_pad=cip)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x.shape))], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(m).run(None, {"x": x.astype(np.float32)})[0]


@pytest.mark.parametrize("h,w,k,s,pads,ceil,cip", CASES)
def test_golden_average_is_onnx_average_rounded_half_up(rng, h, w, k, s, pads, ceil, cip):
    """Same output shape and divisors as ONNX; values floor(mean + 1/2) (exact: sums of
    integers, halves round towards +infinity), for random, full-scale and zero inputs."""
    for x in (rng.integers(0, 256, size=(3, h, w)), np.full((3, h, w), 255),
              np.zeros((3, h, w), np.int64), rng.integers(0, 2, size=(3, h, w))):
        got = avg_pool(x, k, s, pads, ceil_mode=bool(ceil), count_include_pad=bool(cip))
        ref = _onnx_avg(x[None].astype(np.float64), k, s, pads, ceil, cip)[0]
        assert got.shape == ref.shape
        want = np.floor(ref.astype(np.float64) + 0.5 + 1e-6).astype(np.int64)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == x.dtype


def test_golden_average_rejects_padding_as_large_as_the_kernel():
    with pytest.raises(IlmpqValueError, match="each padding must be smaller than the kernel"):
        avg_pool(np.zeros((1, 4, 4), np.int64), 2, 1, (0, 2, 0, 0))


@pytest.mark.parametrize("h,w,k,s,pads,ceil,cip", [
    c for c in CASES if isinstance(c[2], int) and (c[0], c[1]) != (c[2], c[2])])   # not a GAP
def test_onnx_import_of_average_pool(rng, h, w, k, s, pads, ceil, cip):
    """Conv + ReLU + AveragePool imported as FAvgPool: the float model equals onnx.reference."""
    pt, pl, pb, pr = pads
    wt = rng.normal(0, 0.3, (3, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("AveragePool", ["r"], ["y"], kernel_shape=[k, k], strides=[s, s],
                              pads=[pt, pl, pb, pr], ceil_mode=ceil, count_include_pad=cip)]
    out_shape = _onnx_avg(np.zeros((1, 3, h, w)), k, s, pads, ceil, cip).shape
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 2, h, w])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", *out_shape[1:]])], [numpy_helper.from_array(wt, "w")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    fm = load_onnx(m)
    x = rng.uniform(0, 255, (2, 2, h, w))
    ref = ReferenceEvaluator(m).run(None, {"x": x.astype(np.float32)})[0]
    got = fm.predict(x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))
    pools = [n for n in fm.nodes if isinstance(n, FAvgPool)]
    assert len(pools) == 1 and pools[0].ceil_mode == bool(ceil)
    assert pools[0].count_include_pad == bool(cip)


def _avg_model(rng, k, s, p, ceil, cip, shape=(8, 7, 9)):
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=shape)
    x = b.conv("c", "input", 6, 3, padding=1)
    a = b.avgpool("avg", x, k, s, p, ceil_mode=ceil, count_include_pad=cip)
    y = b.conv("d", a, 6, 3, padding=1, residual=a)        # the average feeds a residual
    return b.build(b.fc("fc", b.flatten("f", b.gap("g", y)), 5))


@pytest.mark.parametrize("args,where", [
    ((3, 1, 1, False, True), "accel"), ((2, 2, 0, False, False), "accel"),
    ((3, 2, 1, True, True), "accel"), ((3, 2, 1, False, False), "cpu"),
    ((2, 2, 0, True, False), "cpu"),
])
def test_compiled_average_pool_bit_exact(rng, args, where):
    """One divisor for every window: the pooling unit (window sums, then the exact (bias, M,
    S) of the divisor); divisors that vary at the borders: the host, and the report says why.
    Both bit-exact on the ISA simulator; the model round-trips through its file format."""
    model = _avg_model(rng, *args)
    comp = compile_model(model, TINY)
    rep = next(r for r in comp.layers if r.name == "avg")
    assert rep.where == where
    if where == "cpu":
        assert "per-pixel divisors" in rep.cpu_reason
    img = rng.integers(0, 256, size=(8, 7, 9))
    ref = reference.run(model, img, spec=TINY.numeric)
    got = run_compiled(comp, img)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def test_average_pool_layer_saves_and_loads(rng, tmp_path):
    model = _avg_model(rng, 3, 2, 1, True, True)
    model.save(tmp_path / "m.npz")
    back = QModel.load(tmp_path / "m.npz")
    assert back.layers == model.layers


def test_rtl_average_pool_with_stalls(rng):
    """3x3/1 (count_include_pad) and 2x2/2 averages on the pooling unit of the RTL, random
    memory stalls, every layer bit-exact against golden."""
    models = [_avg_model(rng, 3, 1, 1, False, True), _avg_model(rng, 2, 2, 0, False, False)]
    comps = [compile_model(m, TINY) for m in models]
    for c in comps:
        assert c.one_program
    imgs = [rng.integers(0, 256, size=(8, 7, 9)) for _ in models]

    for model, comp, img in zip(models, comps, imgs):
        async def body(drv, mem, comp=comp, img=img):
            out, _ = await drv.infer(comp, img, check=True)
            return out
        out = _sim(TINY, comp, body, mem_mode="random", seed=5)
        ref = reference.run(model, img, spec=TINY.numeric)
        for layer in model.layers:
            np.testing.assert_array_equal(out[layer.output], ref[layer.output],
                                          err_msg=layer.name)
