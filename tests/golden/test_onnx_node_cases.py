"""ONNX's own node conformance cases (``onnx.backend.test.case.node``) through the float importer
(``bench/onnx_conformance.py``): no case imported wrong, none crashing, and the cases the
importer takes now accepted; plus CNN-shaped graphs for what the one-node cases cannot show
(a Gemm with transA=1 on a column of one image, Squeeze/Unsqueeze around a global pool,
Flatten axes equivalent to 1, GlobalMaxPool), checked against ``onnx.reference``."""

import importlib.util
from pathlib import Path

import numpy as np
from onnx.reference import ReferenceEvaluator
import pytest

from ilmpq.golden.float_model import FFlatten, FMaxPool
from ilmpq.golden.onnx_import import OnnxImportError, load_onnx
from onnx_graphs import G, compare_with_reference as _compare

_BENCH = Path(__file__).resolve().parents[2] / "bench" / "onnx_conformance.py"


@pytest.fixture(scope="module")
def conformance():
    spec = importlib.util.spec_from_file_location("onnx_conformance", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run()
    return mod, res, {r["name"]: r for r in res["cases"]}


def test_no_case_wrong_or_crashing(conformance):
    mod, res, rows = conformance
    assert len(rows) > 250      # the cases of every op in the list were generated
    assert set(res["per_op"]) == set(mod.OPS)
    bad = {n: (r["status"], r["detail"]) for n, r in rows.items()
           if r["status"] in ("wrong", "crash")}
    assert bad == {}
    # every rejection is the importer's own error naming the node and op
    for r in rows.values():
        if r["status"] == "rejected" and "graph output is the input" not in r["detail"]:
            assert f"({r['op']})" in r["detail"], r


# accepted and right: the pooling, padding and FC cases of a CNN export
ACCEPTED = [
    "test_averagepool_2d_default", "test_averagepool_2d_pads", "test_averagepool_2d_strides",
    "test_averagepool_2d_ceil", "test_averagepool_2d_pads_count_include_pad",
    "test_averagepool_2d_same_upper", "test_averagepool_2d_same_lower",
    "test_maxpool_2d_ceil", "test_maxpool_2d_same_upper", "test_maxpool_2d_same_lower",
    "test_maxpool_2d_pads", "test_conv_with_autopad_same", "test_conv_with_strides_padding",
    "test_globalmaxpool", "test_globalmaxpool_precomputed", "test_globalaveragepool",
    "test_gemm_default_scalar_bias", "test_gemm_default_single_elem_vector_bias",
    "test_gemm_default_vector_bias", "test_gemm_transposeB", "test_gemm_alpha",
    "test_gemm_beta", "test_matmul_2d", "test_flatten_axis1", "test_flatten_default_axis",
    "test_softmax_example", "test_logsoftmax_example_1",
    # elementwise cases of rank 3 / rank 1 run as (N, C, 1, L) / (1, 1, 1, L)
    "test_relu", "test_clip", "test_clip_example", "test_clip_outbounds",
    "test_clip_default_min",   # Clip(0, inf) on a tensor no layer absorbs: crashed before
    "test_sigmoid",            # Sigmoid of the input itself: a pointwise function, not a head
    "test_hardswish", "test_hardsigmoid_default", "test_leakyrelu_default", "test_elu",
    "test_pow_bcast_scalar",
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_case_accepted_and_right(conformance, name):
    _, _, rows = conformance
    assert rows[name]["status"] == "right", rows[name]


# rejected with a clear reason: the graph really mixes the images of a static batch above 1
REJECTED = {
    "test_prelu_broadcast": r"slope of shape \[1, 1, 1, 5\] is not supported",
    "test_training_dropout": r"training_mode=1 is not supported",
    "test_maxpool_2d_dilations": r"dilations=\[2, 2\] are not supported",
    "test_flatten_axis0": r"axis=0 flattens the whole batch of 2 images",
    "test_flatten_negative_axis4": r"axis=-4 flattens the whole batch of 2 images",
    "test_flatten_axis2": r"axis=2 is not supported; .*the dimensions \[3\] before axis 2",
    "test_gemm_transposeA": r"transA=1 needs the activation as a column \(K, 1\)",
    "test_gemm_default_matrix_bias": r"bias C of shape \[3, 4\] is not supported",
    "test_matmul_4d": r"not a batched matrix product",
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_case_rejected_clearly(conformance, name):
    import re
    _, _, rows = conformance
    assert rows[name]["status"] == "rejected"
    assert re.search(REJECTED[name], rows[name]["detail"]), rows[name]["detail"]


# -- CNN-shaped graphs -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["flatten_axis4", "transpose", "reshape_col"])
def test_gemm_transA_on_a_column(rng, how):
    """conv -> GAP -> (K, 1) column -> Gemm(transA=1): the FC layer of one image."""
    g = G(rng, (3, 6, 6), batch=1)
    c = g.node("Relu", [g.conv("x", 3, 4, 3)])
    p = g.node("GlobalAveragePool", [c])
    if how == "flatten_axis4":
        col = g.node("Flatten", [p], axis=4)
    elif how == "transpose":
        col = g.node("Transpose", [g.node("Flatten", [p], axis=1)], perm=[1, 0])
    else:
        col = g.node("Reshape", [p, g.init(np.array([-1, 1]), dtype=np.int64)])
    w = g.init(rng.normal(0, 0.5, (4, 5)))
    b = g.init(rng.normal(0, 0.5, (1, 5)))
    y = g.node("Gemm", [col, w, b], transA=1, alpha=0.5, beta=2.0)
    fm = _compare(g.model(y, [1, 5]), rng.uniform(-1, 1, (1, 3, 6, 6)))
    assert sum(isinstance(n, FFlatten) for n in fm.nodes) == 1


def test_column_read_by_another_op_is_rejected(rng):
    g = G(rng, (3, 6, 6), batch=1)
    col = g.node("Flatten", [g.conv("x", 3, 4, 3)], axis=4)
    y = g.node("Relu", [col], name="bad")
    with pytest.raises(OnnxImportError, match=r"node 'bad' \(Relu\): input 't\d+' is a column "
                                              r"\(K, 1\).*only a Gemm with transA=1"):
        load_onnx(g.model(y, [64, 1]))


def test_gemm_transA_on_a_row_is_rejected(rng):
    g = G(rng, (3, 2, 2), batch=1)
    f = g.node("Flatten", ["x"])
    y = g.node("Gemm", [f, g.init(rng.normal(0, 1, (1, 4)))], transA=1, name="bad")
    with pytest.raises(OnnxImportError, match=r"node 'bad' \(Gemm\): transA=1 needs the "
                                              r"activation as a column"):
        load_onnx(g.model(y, [12, 4]))


@pytest.mark.parametrize("axis", [2, 3, -1, -2])
def test_flatten_axis_after_dims_of_one(rng, axis):
    """A (N, 1, 1, W) map: axes 2 and 3 give each image's vector too (the dimensions between
    the batch and the axis are 1)."""
    g = G(rng, (2, 3, 6))
    c = g.conv("x", 2, 1, 3)          # (N, 1, 1, 4)
    f = g.node("Flatten", [c], axis=axis)
    y = g.node("Gemm", [f, g.init(rng.normal(0, 0.5, (3, 4)))], transB=1)
    _compare(g.model(y, ["N", 3]), rng.uniform(-1, 1, (3, 2, 3, 6)))


def test_flatten_axis_2_of_channels_is_rejected(rng):
    g = G(rng, (2, 3, 6))
    f = g.node("Flatten", [g.conv("x", 2, 3, 3)], axis=2, name="bad")
    with pytest.raises(OnnxImportError, match=r"node 'bad' \(Flatten\): axis=2 is not "
                                              r"supported; .*the dimensions \[3\] before axis 2"):
        load_onnx(g.model(f, ["N", 4]))


def test_squeeze_unsqueeze_around_a_global_pool(rng):
    """GAP -> Squeeze(2, 3) -> Gemm -> Unsqueeze(2, 3) -> Conv 1x1 (an SE-like head)."""
    g = G(rng, (2, 5, 5))
    p = g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 2, 6, 3)])])
    s = g.node("Squeeze", [p, g.init(np.array([2, 3]), dtype=np.int64)])
    fc = g.node("Gemm", [s, g.init(rng.normal(0, 0.5, (6, 4)))])
    u = g.node("Unsqueeze", [fc, g.init(np.array([-2, -1]), dtype=np.int64)])
    y = g.conv(u, 4, 3, 1)
    _compare(g.model(y, ["N", 3, 1, 1]), rng.uniform(-1, 1, (3, 2, 5, 5)))


def test_global_max_pool(rng):
    g = G(rng, (2, 5, 4))
    p = g.node("GlobalMaxPool", [g.conv("x", 2, 3, 3, pads=[1, 1, 1, 1])])
    fm = _compare(g.model(p, ["N", 3, 1, 1]), rng.uniform(-1, 1, (3, 2, 5, 4)))
    pool = [n for n in fm.nodes if isinstance(n, FMaxPool)]
    assert len(pool) == 1 and pool[0].kernel == (5, 4)


def test_clip_zero_inf_and_prelu_as_pointwise(rng):
    """Clip(0, inf) of a tensor no layer absorbs (a conv's output read twice) is a ReLU lookup
    table (it raised KeyError: 'Clip' before); PRelu with one slope a leaky ReLU."""
    g = G(rng, (2, 5, 5))
    c = g.conv("x", 2, 3, 3)
    r = g.node("Clip", [c, g.scalar(0.0)])
    p = g.node("PRelu", [c, g.init(np.array([0.25]))])
    y = g.node("Add", [g.conv(r, 3, 3, 1), p])
    _compare(g.model(y, ["N", 3, 3, 3]), rng.uniform(-1, 1, (3, 2, 5, 5)))


def test_sigmoid_of_the_input_is_a_pointwise_function(rng):
    g = G(rng, (2, 3, 3))
    fm = _compare(g.model(g.node("Sigmoid", ["x"]), ["N", 2, 3, 3]),
                  rng.uniform(-4, 4, (2, 2, 3, 3)))
    assert fm.meta["output_head"] is None


def test_column_as_the_graph_output_is_rejected(rng):
    g = G(rng, (3, 4, 4), batch=1)
    col = g.node("Flatten", [g.conv("x", 3, 2, 3)], axis=4)
    with pytest.raises(OnnxImportError, match=r"the graph output 't\d+' is a column \(K, 1\)"):
        load_onnx(g.model(col, [8, 1]))


@pytest.mark.parametrize("op", ["Relu", "Clip"])
@pytest.mark.parametrize("view", ["Identity", "Dropout", "Unsqueeze"])
def test_relu_of_a_view_of_a_shared_output_is_not_fused(rng, view, op):
    """A Gemm output read twice, once through a view (Identity, Dropout, Unsqueeze): a ReLU
    (ReLU6) of the view must not become the Gemm's (the other reader needs the raw values);
    it produced a broken graph before ('reads tensor ... before it is produced')."""
    g = G(rng, (2, 5, 5))
    p = g.node("GlobalAveragePool", [g.conv("x", 2, 4, 3)])
    fc = g.node("Gemm", [g.node("Flatten", [p]), g.init(rng.normal(0, 2.0, (4, 4)))])
    if view == "Unsqueeze":
        axes = g.init(np.array([2, 3]), dtype=np.int64)
        v, other = g.node("Unsqueeze", [fc, axes]), g.node("Unsqueeze", [fc, axes])
    else:
        v, other = g.node(view, [fc]), fc
    act = g.node("Relu", [v]) if op == "Relu" else \
        g.node("Clip", [v, g.scalar(0.0), g.scalar(0.05)])
    y = g.node("Concat", [act, other], axis=1)
    model = g.model(y, ["N", 8, 1, 1] if view == "Unsqueeze" else ["N", 8])
    x = rng.uniform(-1, 1, (3, 2, 5, 5))
    want = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    assert want.min() < 0 and want.max() > 0.05
    for canonical in (True, False):
        fm = load_onnx(model, canonical=canonical)
        np.testing.assert_allclose(fm.predict(x), want, rtol=1e-4, atol=1e-5)


def test_relu_after_a_view_of_a_shared_maxpool_is_not_moved_into_the_conv(rng):
    g = G(rng, (2, 6, 6))
    mp = g.node("MaxPool", [g.conv("x", 2, 3, 3, pads=[1, 1, 1, 1])], kernel_shape=[2, 2],
                strides=[2, 2])
    y = g.node("Concat", [g.node("Relu", [g.node("Identity", [mp])]), mp], axis=1)
    model = g.model(y, ["N", 6, 3, 3])
    x = rng.uniform(-1, 1, (2, 2, 6, 6))
    want = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    assert want.min() < 0
    fm = load_onnx(model, canonical=False)
    np.testing.assert_allclose(fm.predict(x), want, rtol=1e-4, atol=1e-5)
