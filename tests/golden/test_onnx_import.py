"""ONNX import: float execution of the imported graph against onnx.reference.ReferenceEvaluator,
and clear errors for everything that is not supported."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ilmpq.golden.data import default_model_path, load_default_model, load_digits
from ilmpq.golden.errors import IlmpqError
from ilmpq.golden.float_model import FConv, FFlatten, FGlobalAvgPool, FMaxPool
from ilmpq.golden.onnx_import import OnnxImportError, load_onnx
from onnx_graphs import G, compare_with_reference as _compare, projection_block  # shared builders


def _resnetish(rng):
    """conv/2 (asymmetric pads) + BN + ReLU, maxpool with padding, residual block (skip as the
    first Add operand), GAP, Flatten, Gemm with transB=0, alpha, beta and a (1, M) bias."""
    g = G(rng, (3, 11, 9))
    x = g.conv("x", 3, 6, 3, bias=False, strides=[2, 2], pads=[1, 0, 1, 2])
    x = g.node("Relu", [g.bn(x, 6)])
    x = g.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1])
    y = g.node("Relu", [g.bn(g.conv(x, 6, 6, 3, pads=[1, 1, 1, 1]), 6)])
    y = g.bn(g.conv(y, 6, 6, 3, pads=[1, 1, 1, 1]), 6)
    x = g.node("Relu", [g.node("Add", [x, y])])
    x = g.node("GlobalAveragePool", [x])
    x = g.node("Flatten", [x], axis=1)
    w = g.init(rng.normal(0, 0.5, (6, 5)))
    c = g.init(rng.normal(0, 0.5, (1, 5)))
    out = g.node("Gemm", [x, w, c], alpha=0.7, beta=1.3)
    return g.model(out, ["N", 5]), (3, 11, 9)


def _avgpool_matmul(rng):
    """Conv + ReLU, global AveragePool, Reshape [0, -1] (shape from a Constant), MatMul + Add."""
    g = G(rng, (2, 6, 6))
    x = g.node("Relu", [g.conv("x", 2, 4, 5, pads=[2, 2, 2, 2], strides=[1, 2])])
    x = g.node("AveragePool", [x], kernel_shape=[6, 3])
    shape = g.node("Constant", [], value=numpy_helper.from_array(np.array([0, -1], np.int64)))
    x = g.node("Reshape", [x, shape])
    x = g.node("MatMul", [x, g.init(rng.normal(0, 1, (4, 3)))])
    out = g.node("Add", [g.init(rng.normal(0, 1, 3)), x])
    return g.model(out, ["N", 3]), (2, 6, 6)


def _late_skip(rng):
    """Residual whose skip (a max pool) is computed after the conv it is fused into: the importer
    must move the conv. Also Identity, Dropout and a ReLU on a non-negative tensor."""
    g = G(rng, (3, 7, 7))
    x = g.node("Relu", [g.conv("x", 3, 4, 3, pads=[1, 1, 1, 1])])
    a = g.conv(x, 4, 4, 3, pads=[1, 1, 1, 1])  # no ReLU: fused with the Add below
    p = g.node("MaxPool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    p = g.node("Relu", [g.node("Identity", [p])])  # ReLU of a non-negative tensor
    s = g.node("Add", [a, p])
    s = g.node("Dropout", [s])
    out = g.node("Relu", [s])
    return g.model(out, ["N", 4, 7, 7]), (3, 7, 7)


def _pool_then_relu(rng):
    """Conv -> MaxPool -> ReLU (the ReLU moves into the conv) on a 1-channel input, a 2-D
    input with a fixed batch of 3."""
    g = G(rng, (1, 9, 8), batch=3)
    x = g.conv("x", 1, 5, 3, pads=[1, 1, 1, 1])
    x = g.node("MaxPool", [x], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1])
    x = g.node("Relu", [x])
    x = g.node("Relu", [g.conv(x, 5, 4, 2, strides=[2, 1])])
    return g.model(x, [3, 4, 2, 4]), (1, 9, 8)


def _two_convs_add(rng):
    """Add of two conv outputs (both could absorb it: the later one must), 1x1 stride-2 convs,
    flatten of a spatial tensor into an FC layer with transB=1 and no bias."""
    g = G(rng, (2, 5, 5))
    x = g.node("Relu", [g.conv("x", 2, 3, 1)])
    a = g.bn(g.conv(x, 3, 4, 1, strides=[2, 2]), 4)
    b = g.conv(x, 3, 4, 3, strides=[2, 2], pads=[1, 1, 1, 1])
    y = g.node("Relu", [g.node("Add", [a, b])])
    y = g.node("Flatten", [y])
    w = g.init(rng.normal(0, 0.3, (7, 4 * 3 * 3)))
    out = g.node("Gemm", [y, w], transB=1)
    return g.model(out, ["N", 7]), (2, 5, 5)


@pytest.mark.parametrize("build", [_resnetish, _avgpool_matmul, _late_skip, _two_convs_add,
                                   _pool_then_relu, projection_block])
def test_generated_graphs_match_reference_evaluator(rng, build):
    model, shape = build(rng)
    x = rng.normal(0, 1, (3, *shape))
    fm = _compare(model, x)
    # also one image and the proto given as bytes
    fm2 = load_onnx(model.SerializeToString())
    np.testing.assert_array_equal(fm2.predict(x), fm.predict(x))


def test_fusion_structure(rng):
    model, _ = _resnetish(rng)
    fm = load_onnx(model)
    kinds = [n.kind for n in fm.nodes]
    assert kinds == ["conv", "maxpool", "conv", "conv", "gap", "flatten", "conv"]
    c1, _, c2, c3, _, _, fc = fm.nodes
    assert c1.relu and c1.stride == (2, 2) and c1.padding == (1, 0, 1, 2)
    assert c2.relu and c2.residual is None
    assert c3.relu and c3.residual == fm.nodes[1].output  # residual fused into the second conv
    assert fc.kernel == (1, 1) and not fc.relu and fm.shapes[fc.output] == (5, 1, 1)
    assert fm.output_rank == 2

    model, _ = _late_skip(rng)
    fm = load_onnx(model)
    assert [n.kind for n in fm.nodes] == ["conv", "maxpool", "conv"]  # conv moved after pool
    assert fm.nodes[2].residual == fm.nodes[1].output and fm.nodes[2].relu

    model, _ = _two_convs_add(rng)
    fm = load_onnx(model)
    convs = [n for n in fm.nodes if isinstance(n, FConv)]
    assert convs[2].residual == convs[1].output  # the later conv absorbs the Add

    model, _ = _pool_then_relu(rng)
    fm = load_onnx(model)
    assert [n.kind for n in fm.nodes] == ["conv", "maxpool", "conv"]
    assert fm.nodes[0].relu and fm.nodes[2].relu

    # a 1x1 projection shortcut listed after the block's conv2 (torchvision's order): the Add
    # goes into conv2, not into the later projection, and the projection moves before conv2,
    # right after conv1, which reads the same input (one shared load)
    model, _ = projection_block(rng)
    fm = load_onnx(model)
    stem, c1, ds, c2 = fm.nodes
    assert c1.kernel == (3, 3) and c1.stride == (2, 2) and ds.kernel == (1, 1)
    assert ds.input == c1.input == stem.output and ds.residual is None and not ds.relu
    assert c2.input == c1.output and c2.residual == ds.output and c2.relu


def test_default_model_matches_reference_evaluator():
    fm = load_default_model()
    x, y = load_digits("test")
    xn = fm.normalize(x)
    ref = ReferenceEvaluator(onnx.load(str(default_model_path()))).run(
        None, {"input": xn.astype(np.float32)})[0]
    got = fm.predict(xn)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    # the embedded model is the documented network
    assert [type(n) for n in fm.nodes] == [FConv, FConv, FMaxPool, FConv, FConv, FConv,
                                           FGlobalAvgPool, FFlatten, FConv]
    assert sum(isinstance(n, FConv) and n.residual is not None for n in fm.nodes) == 1
    assert 1e5 < fm.macs() < 1e6
    assert default_model_path().stat().st_size < 300_000
    md = fm.meta["metadata"]
    assert fm.input_mean.tolist() == json.loads(md["ilmpq.input_mean"])
    assert fm.input_std.tolist() == json.loads(md["ilmpq.input_std"])
    # the accuracy the training script recorded is what the imported model gets
    acc = float(np.mean(got.argmax(1) == y))
    assert acc == pytest.approx(json.loads(md["ilmpq.onnx_test_accuracy"]))
    assert acc > 0.97


def test_digits_split():
    sizes = {}
    seen = []
    for split in ("train", "calib", "test"):
        x, y = load_digits(split)
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))
        sizes[split] = len(y)
        seen.append(x.reshape(len(x), -1))
    assert sizes == {"train": 1257, "calib": 180, "test": 360}
    allx = np.concatenate(seen)
    assert allx.max() == 255 and allx.min() == 0
    # pixels are the 17 levels round(p * 255 / 16)
    assert set(np.unique(allx)) <= {int(round(p * 255 / 16)) for p in range(17)}
    with pytest.raises(IlmpqError, match="unknown digits split 'val'"):
        load_digits("val")


def test_normalization_metadata_and_override(rng, tmp_path):
    model, shape = _resnetish(rng)
    helper.set_model_props(model, {"ilmpq.input_mean": "[120, 110, 100]",
                                   "ilmpq.input_std": "60"})
    fm = load_onnx(model)
    np.testing.assert_array_equal(fm.input_mean, [120, 110, 100])
    np.testing.assert_array_equal(fm.input_std, [60, 60, 60])
    fm = load_onnx(model, input_mean=0.5, input_std=[1, 2, 3])
    np.testing.assert_array_equal(fm.input_mean, [0.5] * 3)
    np.testing.assert_array_equal(fm.input_std, [1, 2, 3])
    with pytest.raises(OnnxImportError, match="one value per input channel"):
        load_onnx(model, input_mean=[1, 2])
    with pytest.raises(OnnxImportError, match="positive"):
        load_onnx(model, input_std=0)
    helper.set_model_props(model, {"ilmpq.input_std": "abc"})
    with pytest.raises(OnnxImportError, match="ilmpq.input_std"):
        load_onnx(model)


# -- errors ----------------------------------------------------------------------------------------

def _one_op(rng, op, inputs_fn, out_shape, in_shape=(2, 6, 6), **attrs):
    g = G(rng, in_shape)
    x = g.node("Relu", [g.conv("x", in_shape[0], 2, 1)])
    y = g.node(op, inputs_fn(g, x), name="bad", **attrs)
    return g.model(y, out_shape)


@pytest.mark.parametrize("case, match", [
    ("softsign", r"node 'bad' \(Softsign\): operator 'Softsign' is not supported; supported "
                 r"ops: Conv, BatchNormalization"),
    ("dilation", r"node 'bad' \(Conv\): dilations=\[2, 2\] are not supported; only dilations 1"),
    ("group", r"node 'bad' \(Conv\): group=3 must be a positive divisor of the 2 output "
              r"channels"),
    ("auto_pad", r"node 'bad' \(Conv\): auto_pad=SAME_UPPER is not supported"),
    ("storage_order", r"node 'bad' \(MaxPool\): storage_order=1 is not supported"),
    # k x k AveragePool is supported (tests/test_avgpool.py); its padding rule is checked
    ("avgpool", r"node 'bad' \(AveragePool\): padding \(2, 0, 0, 0\) must be smaller than the "
                r"2x2 kernel"),
    ("flatten_axis", r"node 'bad' \(Flatten\): axis=2 is not supported; only an axis that "
                     r"flattens each image"),
    ("reshape", r"node 'bad' \(Reshape\): Reshape to \[-1, 2, 36\] is not supported"),
    ("bn_no_conv", r"node 'bad' \(BatchNormalization\): BatchNormalization is only supported "
                   r"directly after a Conv"),
    ("mul", r"node 'bad' \(Mul\): Mul of two different tensors \(or with a non-scalar "
            r"constant\) is not supported"),
    ("weight_computed", r"node 'bad' \(Conv\): weight 't\d+' must be a constant"),
])
def test_unsupported_ops_and_attributes(rng, case, match):
    w1 = lambda g: g.init(rng.normal(0, 1, (2, 2, 3, 3)))  # noqa: E731
    builders = {
        "softsign": lambda: _one_op(rng, "Softsign", lambda g, x: [x], ["N", 2, 6, 6]),
        "dilation": lambda: _one_op(rng, "Conv", lambda g, x: [x, w1(g)], ["N", 2, 2, 2],
                                    dilations=[2, 2]),
        "group": lambda: _one_op(rng, "Conv",
                                 lambda g, x: [x, g.init(rng.normal(0, 1, (2, 1, 3, 3)))],
                                 ["N", 2, 4, 4], group=3),
        "auto_pad": lambda: _one_op(rng, "Conv", lambda g, x: [x, w1(g)], ["N", 2, 6, 6],
                                    auto_pad="SAME_UPPER"),
        "storage_order": lambda: _one_op(rng, "MaxPool", lambda g, x: [x], ["N", 2, 1, 1],
                                         kernel_shape=[3, 3], strides=[2, 2], storage_order=1),
        "avgpool": lambda: _one_op(rng, "AveragePool", lambda g, x: [x], ["N", 2, 4, 3],
                                   kernel_shape=[2, 2], strides=[2, 2], pads=[2, 0, 0, 0]),
        "flatten_axis": lambda: _one_op(rng, "Flatten", lambda g, x: [x], ["N", 2],
                                        axis=2),
        "reshape": lambda: _one_op(rng, "Reshape",
                                   lambda g, x: [x, g.init(np.array([-1, 2, 36]))],
                                   ["N", 2, 36]),
        "mul": lambda: _one_op(rng, "Mul", lambda g, x: [x, g.init(rng.normal(0, 1, (2, 6, 6)))],
                               ["N", 2, 6, 6]),
        "weight_computed": lambda: _one_op(rng, "Conv", lambda g, x: [x, x], ["N", 2, 1, 1]),
    }
    if case == "bn_no_conv":  # BN right on the input
        g = G(rng, (2, 6, 6))
        ps = [g.init(np.ones(2)) for _ in range(4)]
        model = g.model(g.node("BatchNormalization", ["x"] + ps, name="bad"), ["N", 2, 6, 6])
    elif case == "reshape":
        model = builders[case]()
        # the constant must be int64
        for init in model.graph.initializer:
            if init.dims == [3]:
                init.CopyFrom(numpy_helper.from_array(np.array([-1, 2, 36], np.int64),
                                                      init.name))
    else:
        model = builders[case]()
    if case == "auto_pad":
        # canonicalization turns SAME_UPPER into explicit pads; the raw importer names it
        fm = load_onnx(model)
        assert fm.nodes[-1].name == "bad" and fm.nodes[-1].padding == (1, 1, 1, 1)
        assert any("auto_pad SAME_UPPER" in a for a in fm.meta["canonicalize"])
        with pytest.raises(OnnxImportError, match=match):
            load_onnx(model, canonical=False)
        return
    with pytest.raises(OnnxImportError, match=match):
        load_onnx(model)


def test_relu_that_cannot_be_fused_is_a_pointwise_function(rng):
    """A Relu that cannot join the layer before it (that layer's output also feeds an Add) is a
    pointwise function of its input (it was an import error before); with the Add of the same
    tensor, relu(a) + a is one function of a: one lookup table."""
    g = G(rng, (2, 6, 6))
    a = g.conv("x", 2, 2, 1)
    r = g.node("Relu", [a], name="bad")
    out = g.node("Add", [r, a])  # the conv output feeds the Relu and the Add
    model = g.model(out, ["N", 2, 6, 6])
    fm = _compare(model, rng.uniform(-2, 2, (3, 2, 6, 6)))
    assert [n.kind for n in fm.nodes] == ["conv", "pointwise"]
    assert fm.nodes[1].function.startswith("Add(Relu(")


def test_dynamic_and_missing_shapes(rng):
    g = G(rng, (2, 6, 6))
    out = g.node("Relu", [g.conv("x", 2, 2, 1)])
    model = g.model(out, ["N", 2, 6, 6])
    dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "height"
    with pytest.raises(OnnxImportError, match=r"dynamic H dimension \('height'\); give the image "
                                              r"size with --input-shape C,H,W"):
        load_onnx(model)
    # the user says the size: imported, with the canonicalization stated
    fm = load_onnx(model, input_shape=(2, 6, 6))
    assert fm.input_shape == (2, 6, 6)
    assert any("(1, 2, 6, 6)" in a for a in fm.meta["canonicalize"])
    with pytest.raises(OnnxImportError, match="H = 6"):
        load_onnx(g.model(out, ["N", 2, 6, 6]), input_shape="2,7,6")
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(OnnxImportError, match="(has no shape|Field 'shape' .* missing)"):
        load_onnx(model)
    g = G(rng, (6, 6))
    g.in_shape = (6, 6)
    out = g.node("Relu", ["x"])
    with pytest.raises(OnnxImportError, match="rank 3; an image batch"):
        load_onnx(g.model(out, ["N", 6, 6]))


def test_bad_files(tmp_path):
    data = default_model_path().read_bytes()
    cases = {
        "truncated.onnx": data[: len(data) // 2],
        "short.onnx": data[:100],
        "text.onnx": b"this is not an ONNX model\n" * 10,
        "random.onnx": np.random.default_rng(1).integers(0, 256, 4096).astype(np.uint8)
        .tobytes(),
        "empty.onnx": b"",
    }
    for name, blob in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(OnnxImportError) as ei:
            load_onnx(p)
        msg = str(ei.value)
        assert str(p) in msg
        assert any(s in msg for s in ("not a valid ONNX model", "not an ONNX model",
                                      "empty")), msg
    with pytest.raises(FileNotFoundError):
        load_onnx(tmp_path / "missing.onnx")


def test_missing_initializer(rng):
    g = G(rng, (2, 6, 6))
    out = g.node("Conv", ["x", "conv.weight"], name="conv0", kernel_shape=[1, 1])
    graph = helper.make_graph(
        g.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 2, 6, 6])], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match=r"node 'conv0' \(Conv\) reads 'conv.weight', "
                                              r"which is neither an initializer"):
        load_onnx(model)


def test_graph_interface_errors(rng):
    g = G(rng, (2, 6, 6))
    a = g.node("Relu", [g.conv("x", 2, 2, 1)])
    b = g.node("MaxPool", [a], kernel_shape=[2, 2])
    graph = helper.make_graph(
        g.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
        [helper.make_tensor_value_info(a, TensorProto.FLOAT, ["N", 2, 6, 6]),
         helper.make_tensor_value_info(b, TensorProto.FLOAT, ["N", 2, 5, 5])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match="exactly one output, it has 2"):
        load_onnx(model)
    g = G(rng, (2, 6, 6))
    out = g.node("Relu", [g.conv("x", 2, 2, 1)])
    model = g.model(out, ["N", 2, 6, 6])
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(OnnxImportError, match="element type INT64; a float input"):
        load_onnx(model)


def test_every_unsupported_op_is_named_at_once(rng):
    g = G(rng, (2, 6, 6))
    c = g.conv("x", 2, 3, 1)
    s1 = g.node("Softsign", [c])
    s2 = g.node("Softsign", [s1])
    t = g.node("Shrink", [s2])
    model = g.model(g.node("ThresholdedRelu", [t]), ["N", 2, 6, 6])
    with pytest.raises(OnnxImportError) as e:
        load_onnx(model)
    msg = str(e.value)
    assert "3 operator types of this model are not supported" in msg
    assert "'Softsign' (2 nodes:" in msg and "'Shrink' (1 node:" in msg
    assert "'ThresholdedRelu'" in msg and "supported ops: Conv" in msg


@pytest.mark.parametrize("opset", [9, 13])
def test_clip_relu6_fuses_as_a_bounded_relu(rng, opset):
    """ReLU6 (Clip(0, 6)) becomes the ReLU of the layer before it with clip_max; the quantizer
    then keeps qmax at or below 6 (the integer clamp is the clip)."""
    from ilmpq.golden.formats import NumericSpec
    from ilmpq.golden.quantize import quantize

    g = G(rng, (3, 8, 8))
    c1 = g.conv("x", 3, 6, 3, pads=[1, 1, 1, 1])
    if opset < 11:
        r1 = g.node("Clip", [c1], min=0.0, max=6.0)
    else:
        r1 = g.node("Clip", [c1, g.init(np.array(0.0)), g.init(np.array(6.0))])
    c2 = g.conv(r1, 6, 4, 1)
    # Clip(0, +inf) is a plain ReLU
    r2 = g.node("Clip", [c2], min=0.0) if opset < 11 else g.node("Clip", [c2, g.init(np.array(0.0))])
    model = g.model(r2, ["N", 4, 8, 8], opset=opset)
    fm = load_onnx(model)
    convs = [n for n in fm.nodes if n.kind == "conv"]
    assert [c.relu for c in convs] == [True, True]
    assert convs[0].clip_max == 6.0 and convs[1].clip_max is None
    x = rng.uniform(-3, 3, (2, 3, 8, 8))
    want = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(fm.run(x), want, rtol=1e-4, atol=1e-5)
    assert fm.run(x, all_tensors=True)[convs[0].output].max() <= 6.0
    qm = quantize(fm, rng.uniform(0, 255, (6, 3, 8, 8)), ratio=0.25, spec=NumericSpec(),
                  report=False)
    t = qm.tensors[convs[0].output]
    assert t.scale * (2 ** t.bits - 1) <= 6.0 + 1e-9


def test_clip_that_is_not_a_bounded_relu_is_a_pointwise_function(rng):
    """Clip(-1, 1), Clip(0, 0) and a Clip after a pool cannot be a layer's bounded ReLU: each
    is a pointwise function (one lookup table); they were import errors before."""
    for lo, hi in ((-1.0, 1.0), (0.0, 0.0)):
        g = G(rng, (2, 6, 6))
        c = g.conv("x", 2, 2, 3)
        model = g.model(g.node("Clip", [c, g.init(np.array(lo)), g.init(np.array(hi))],
                               name="bad"), ["N", 2, 4, 4])
        fm = _compare(model, rng.uniform(-2, 2, (3, 2, 6, 6)))
        assert [n.kind for n in fm.nodes] == ["conv", "pointwise"]
    g = G(rng, (2, 6, 6))
    c = g.conv("x", 2, 2, 3)
    p = g.node("MaxPool", [g.node("Relu", [c])], kernel_shape=[1, 1], strides=[2, 2])
    model = g.model(g.node("Clip", [p, g.init(np.array(0.0)), g.init(np.array(6.0))],
                           name="bad"), ["N", 2, 2, 2])
    fm = _compare(model, rng.uniform(-2, 2, (3, 2, 6, 6)))
    assert [n.kind for n in fm.nodes] == ["conv", "maxpool", "pointwise"]


@pytest.mark.parametrize("axis", [0, 1, -3, -4])
def test_flatten_axes_equivalent_to_one(rng, axis):
    g = G(rng, (2, 4, 4))
    c = g.node("Relu", [g.conv("x", 2, 3, 3)])
    f = g.node("Flatten", [c], axis=axis)
    fc = g.node("Gemm", [f, g.init(rng.normal(0, 0.3, (5, 12)))], transB=1)
    model = g.model(fc, [1, 5] if axis in (0, -4) else ["N", 5])
    fm = load_onnx(model)
    x = rng.uniform(-1, 1, (1, 2, 4, 4))
    want = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(fm.predict(x), want, rtol=1e-4, atol=1e-5)
