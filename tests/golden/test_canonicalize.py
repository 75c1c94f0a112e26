"""Graph canonicalization (golden/canonicalize.py): exporter clutter folded away, float semantics
unchanged (onnx.reference before and after), clear errors for a wrong input shape."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ilmpq.golden.canonicalize import CanonicalizeError, canonicalize, parse_input_shape
from ilmpq.golden.onnx_import import load_onnx

OPSET = [helper.make_opsetid("", 17)]


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _exported_style_model(rng, c=3, m=8, classes=5, h="H", w="W"):
    """conv -> relu -> GAP -> flatten through a Shape/Gather/Unsqueeze/Concat/Reshape subgraph
    -> identity -> Gemm, with a Cast, a Dropout, a Constant chain and a dead branch, and a
    symbolic batch and spatial size, as older exporters write it."""
    wt = rng.standard_normal((m, c, 3, 3)).astype(np.float32) * 0.3
    bt = rng.standard_normal(m).astype(np.float32) * 0.1
    fw = rng.standard_normal((classes, m)).astype(np.float32) * 0.3
    fb = rng.standard_normal(classes).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["xc", "w", "b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Dropout", ["r1"], ["d1"]),
        helper.make_node("GlobalAveragePool", ["d1"], ["g"]),
        # flatten written as shape arithmetic
        helper.make_node("Shape", ["g"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=_init("zv", np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Constant", [], ["minus1"],
                         value=_init("mv", np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "minus1"], ["shape2"], axis=0),
        helper.make_node("Reshape", ["g", "shape2"], ["flat"]),
        helper.make_node("Identity", ["flat"], ["flat2"]),
        # a constant chain feeding the FC bias: (fb * 2) / 2
        helper.make_node("Mul", ["fb", "two"], ["fb2"]),
        helper.make_node("Div", ["fb2", "two"], ["fb3"]),
        helper.make_node("Gemm", ["flat2", "fw", "fb3"], ["y"], transB=1),
        # a dead branch
        helper.make_node("Relu", ["c1"], ["unused"]),
    ]
    graph = helper.make_graph(
        nodes, "exported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        [_init("w", wt), _init("b", bt), _init("fw", fw), _init("fb", fb),
         _init("two", np.array(2.0, np.float32)), _init("ax", np.array([0], np.int64)),
         _init("never_used", np.zeros(7, np.float32))])
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model


def _ref(model, x):
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_exporter_clutter_folds_and_semantics_are_unchanged():
    rng = np.random.default_rng(1)
    model = _exported_style_model(rng)
    canon, actions = canonicalize(model, input_shape="3,12,10")
    onnx.checker.check_model(canon)
    ops = [n.op_type for n in canon.graph.node]
    assert ops == ["Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm"]
    assert {i.name for i in canon.graph.initializer} == {"w", "b", "fw", "fb3", "shape2"}
    np.testing.assert_array_equal(numpy_helper.to_array(
        next(i for i in canon.graph.initializer if i.name == "shape2")), [1, -1])
    text = "\n".join(actions)
    assert "(1, 3, 12, 10)" in text and "'N'" in text and "'H'" in text
    assert "Shape x1" in text and "Gather x1" in text and "Concat x1" in text
    assert "Identity x1" in text and "Dropout x1" in text and "Cast x1" in text
    assert "1 node that do not reach the output" in text
    assert "unused initializer" in text
    x = rng.uniform(-1, 1, (1, 3, 12, 10)).astype(np.float32)
    np.testing.assert_array_equal(_ref(model, x), _ref(canon, x))
    # the original is untouched
    assert len(model.graph.node) == 17
    # and the importer reads the result
    fm = load_onnx(canon)
    assert fm.input_shape == (3, 12, 10)
    np.testing.assert_allclose(fm.run(x.astype(np.float64)).reshape(1, -1), _ref(model, x),
                               rtol=1e-5, atol=1e-5)


def test_a_static_model_is_left_as_it_is():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], [_init("w", w)])
    model = helper.make_model(graph, opset_imports=OPSET)
    canon, actions = canonicalize(model)
    assert actions == []
    assert [n.op_type for n in canon.graph.node] == ["Conv"]


def test_symbolic_batch_only_becomes_batch_one():
    rng = np.random.default_rng(3)
    model = _exported_style_model(rng, h=6, w=6)
    canon, actions = canonicalize(model)
    dims = [d.dim_value for d in canon.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 6, 6]
    assert any("(1, 3, 6, 6)" in a for a in actions)


def test_input_shape_that_contradicts_the_model_is_named():
    rng = np.random.default_rng(4)
    model = _exported_style_model(rng, h=6, w=6)
    with pytest.raises(CanonicalizeError, match=r"H = 6"):
        canonicalize(model, input_shape=(3, 8, 6))
    with pytest.raises(CanonicalizeError, match=r"C = 3"):
        canonicalize(model, input_shape=(1, 6, 6))


@pytest.mark.parametrize("text", ["3,224", "a,b,c", "3,0,4", "-1,2,2", "3,2,2,2", ""])
def test_parse_input_shape_rejects(text):
    with pytest.raises(CanonicalizeError, match="C,H,W"):
        parse_input_shape(text)


def test_parse_input_shape_accepts():
    assert parse_input_shape("3,224,224") == (3, 224, 224)
    assert parse_input_shape("1x48x192") == (1, 48, 192)
    assert parse_input_shape([3, 8, 8]) == (3, 8, 8)


def _bn(rng, name, c, nodes_inits, src, dst):
    inits = [_init(f"{name}_g", rng.uniform(0.5, 1.5, c).astype(np.float32)),
             _init(f"{name}_b", rng.normal(0, 0.2, c).astype(np.float32)),
             _init(f"{name}_m", rng.normal(0, 0.2, c).astype(np.float32)),
             _init(f"{name}_v", rng.uniform(0.5, 2.0, c).astype(np.float32))]
    nodes_inits[1].extend(inits)
    nodes_inits[0].append(helper.make_node(
        "BatchNormalization", [src, f"{name}_g", f"{name}_b", f"{name}_m", f"{name}_v"], [dst],
        epsilon=1e-3))


def _conv(rng, name, cin, cout, k, nodes_inits, src, dst, pads=0, bias=True, **attrs):
    w = rng.normal(0, 0.3, (cout, cin, k, k)).astype(np.float32)
    ins = [src, f"{name}_w"]
    nodes_inits[1].append(_init(f"{name}_w", w))
    if bias:
        nodes_inits[1].append(_init(f"{name}_bias", rng.normal(0, 0.1, cout).astype(np.float32)))
        ins.append(f"{name}_bias")
    if pads:
        attrs["pads"] = [pads] * 4
    nodes_inits[0].append(helper.make_node("Conv", ins, [dst], **attrs))


def _model(ni, c, h, w, out_shape):
    graph = helper.make_graph(
        ni[0], "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], ni[1])
    model = helper.make_model(graph, opset_imports=OPSET)
    onnx.checker.check_model(model)
    return model


def _same(model, canon, shape, rng):
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    np.testing.assert_allclose(_ref(canon, x), _ref(model, x), rtol=1e-4, atol=1e-5)


def test_batchnorm_after_a_residual_add_folds_into_both_branches():
    rng = np.random.default_rng(5)
    ni = ([], [])
    _conv(rng, "a", 3, 6, 3, ni, "x", "ca", pads=1)
    _bn(rng, "bna", 6, ni, "ca", "ba")           # a BN the importer folds itself
    _conv(rng, "s", 3, 6, 1, ni, "x", "cs", bias=False)
    ni[0].append(helper.make_node("Add", ["ba", "cs"], ["sum"]))
    _bn(rng, "post", 6, ni, "sum", "bsum")       # BN after the residual Add
    ni[0].append(helper.make_node("Relu", ["bsum"], ["y"]))
    model = _model(ni, 3, 7, 7, [1, 6, 7, 7])
    canon, actions = canonicalize(model)
    assert [n.op_type for n in canon.graph.node].count("BatchNormalization") == 1
    assert "folded 1 BatchNormalization through a residual Add" in actions
    _same(model, canon, (1, 3, 7, 7), rng)
    with pytest.raises(Exception, match="BatchNormalization is only supported"):
        load_onnx(model, canonical=False)
    fm = load_onnx(model)  # the importer reads the folded graph
    x = rng.uniform(-1, 1, (1, 3, 7, 7))
    np.testing.assert_allclose(fm.run(x), _ref(model, x.astype(np.float32)), rtol=1e-4,
                               atol=1e-5)


def test_batchnorm_before_the_classifier_and_before_an_unpadded_conv_fold_into_it():
    rng = np.random.default_rng(6)
    ni = ([], [])
    _conv(rng, "c1", 3, 8, 3, ni, "x", "c1o", pads=1)
    ni[0].append(helper.make_node("Relu", ["c1o"], ["r1"]))
    _bn(rng, "pre", 8, ni, "r1", "b1")            # BN -> 1x1 conv without padding
    _conv(rng, "c2", 8, 6, 1, ni, "b1", "c2o")
    ni[0].append(helper.make_node("Relu", ["c2o"], ["r2"]))
    ni[0].append(helper.make_node("GlobalAveragePool", ["r2"], ["g"]))
    ni[0].append(helper.make_node("Flatten", ["g"], ["f"]))
    _bn(rng, "bn1d", 6, ni, "f", "fb")            # BatchNorm1d before the FC
    ni[1].append(_init("fc_w", rng.normal(0, 0.3, (4, 6)).astype(np.float32)))
    ni[1].append(_init("fc_b", rng.normal(0, 0.1, 4).astype(np.float32)))
    ni[0].append(helper.make_node("Gemm", ["fb", "fc_w", "fc_b"], ["y"], transB=1, alpha=0.5,
                                  beta=2.0))
    model = _model(ni, 3, 6, 6, [1, 4])
    canon, actions = canonicalize(model)
    assert "BatchNormalization" not in [n.op_type for n in canon.graph.node]
    assert "folded 2 BatchNormalization into its consumer" in actions
    _same(model, canon, (1, 3, 6, 6), rng)
    load_onnx(model)


def test_batchnorm_before_a_padded_conv_is_left_for_the_importer_to_name():
    rng = np.random.default_rng(7)
    ni = ([], [])
    _conv(rng, "c1", 3, 4, 3, ni, "x", "c1o", pads=1)
    ni[0].append(helper.make_node("Relu", ["c1o"], ["r1"]))
    _bn(rng, "pre", 4, ni, "r1", "b1")
    _conv(rng, "c2", 4, 4, 3, ni, "b1", "y", pads=1)   # zero padding of BN(x) != of x
    model = _model(ni, 3, 5, 5, [1, 4, 5, 5])
    canon, actions = canonicalize(model)
    assert "BatchNormalization" in [n.op_type for n in canon.graph.node]
    assert not any("BatchNormalization" in a for a in actions)
    with pytest.raises(Exception, match="BatchNormalization is only supported"):
        load_onnx(model)


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("op", ["Conv", "MaxPool"])
def test_auto_pad_same_becomes_explicit_pads(auto, op):
    rng = np.random.default_rng(8)
    ni = ([], [])
    if op == "Conv":
        _conv(rng, "c", 3, 4, 3, ni, "x", "c0", auto_pad=auto, strides=[2, 2])
        ni[0].append(helper.make_node("Relu", ["c0"], ["y"]))
        out = [1, 4, 4, 3]
    else:
        _conv(rng, "c", 3, 4, 1, ni, "x", "c0")
        ni[0].append(helper.make_node("Relu", ["c0"], ["r"]))
        ni[0].append(helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2],
                                      strides=[2, 2], auto_pad=auto))
        out = [1, 4, 4, 3]
    model = _model(ni, 3, 7, 6, out)
    canon, actions = canonicalize(model)
    assert f"auto_pad {auto} of {op}: 1 node" in actions
    pool = next(n for n in canon.graph.node if n.op_type == op)
    pads = next(list(a.ints) for a in pool.attribute if a.name == "pads")
    # total padding H: (4-1)*2 + k - 7, W: (3-1)*2 + k - 6; SAME_UPPER puts the odd one at the end
    k = 3 if op == "Conv" else 2
    th, tw = 6 + k - 7, 4 + k - 6
    lo = [th // 2, tw // 2] if auto == "SAME_UPPER" else [th - th // 2, tw - tw // 2]
    assert pads == [*lo, th - lo[0], tw - lo[1]]
    if op == "Conv":
        _same(model, canon, (1, 3, 7, 6), rng)
    else:
        # onnx.reference's MaxPool gets SAME_LOWER's output size wrong (3 rows for 7 / 2):
        # check the canonical graph against the definition instead
        x = rng.uniform(-1, 1, (1, 3, 7, 6)).astype(np.float32)
        r = _ref(canon, x)
        relu = np.maximum(_ref(helper.make_model(helper.make_graph(
            canon.graph.node[:1], "c", canon.graph.input,
            [helper.make_tensor_value_info("c0", TensorProto.FLOAT, None)],
            canon.graph.initializer), opset_imports=OPSET), x), 0)
        padded = np.pad(relu, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                        constant_values=-np.inf)
        want = np.stack([np.stack([padded[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(2, 3))
                                   for j in range(3)], -1) for i in range(4)], -2)
        np.testing.assert_array_equal(r, want)
    fm = load_onnx(model)
    assert fm.shapes[fm.output] == (4, 4, 3)


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_a_one_by_one_pool_with_stride_one_is_removed(op):
    rng = np.random.default_rng(9)
    ni = ([], [])
    _conv(rng, "c", 3, 4, 3, ni, "x", "c0", pads=1)
    ni[0].append(helper.make_node("Relu", ["c0"], ["r"]))
    ni[0].append(helper.make_node(op, ["r"], ["p"], kernel_shape=[1, 1]))
    ni[0].append(helper.make_node(op, ["p"], ["y"], kernel_shape=[1, 1], strides=[2, 2]))
    model = _model(ni, 3, 6, 6, [1, 4, 3, 3])
    canon, actions = canonicalize(model)
    assert [n.op_type for n in canon.graph.node] == ["Conv", "Relu", op]  # the strided one stays
    assert f"removed 1 no-op node ({op} x1)" in actions
    _same(model, canon, (1, 3, 6, 6), rng)
