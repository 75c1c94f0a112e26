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
