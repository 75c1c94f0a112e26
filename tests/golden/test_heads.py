"""Output heads (Softmax / LogSoftmax / Sigmoid at a classifier's output): imported as a host
step recorded in the model, applied by golden.heads, ranking unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.heads import apply_head
from ilmpq.golden.model import QModel
from ilmpq.golden.onnx_import import OnnxImportError, load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.golden.reference import run


def _classifier(rng, head, opset=17, head_attrs=None, extra=None):
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (6, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.4, (5, 6)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    out = "logits"
    if head:
        nodes.append(helper.make_node(head, ["logits"], ["y"], **(head_attrs or {})))
        out = "y"
    if extra:
        nodes.append(helper.make_node(extra, [out], ["z"]))
        out = "z"
    graph = helper.make_graph(
        nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _saved(qm, tmp_path):
    path = tmp_path / "q.npz"
    qm.save(path)
    return path


@pytest.mark.parametrize("head, attrs, opset", [("Softmax", None, 17), ("Softmax", {"axis": 1}, 11),
                                                ("LogSoftmax", {"axis": -1}, 13),
                                                ("Sigmoid", None, 17)])
def test_head_is_recorded_and_applied_on_the_host(head, attrs, opset, tmp_path):
    rng = np.random.default_rng(10)
    model = _classifier(rng, head, opset, attrs)
    fm = load_onnx(model)
    assert fm.meta["output_head"] == {"op": head}
    x = rng.uniform(-1, 1, (4, 3, 8, 8))
    want = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(apply_head(fm.predict(x), fm.meta["output_head"]), want, rtol=1e-4,
                               atol=1e-6)
    # the quantized model carries it; the ranking of its integer logits is what the head keeps
    calib = rng.uniform(0, 255, (8, 3, 8, 8))
    qm = quantize(fm, calib, ratio=0.25, spec=NumericSpec(), report=False)
    assert qm.meta["output_head"] == {"op": head}
    assert QModel.load(_saved(qm, tmp_path)).meta["output_head"] == {"op": head}
    for img in calib[:3].astype(np.uint8):
        q = run(qm, img)[qm.output].reshape(1, -1)
        real = q * qm.tensors[qm.output].scale
        np.testing.assert_array_equal(np.argmax(apply_head(real, qm.meta["output_head"]), 1),
                                      np.argmax(q, 1))


def test_a_model_without_head_records_none():
    fm = load_onnx(_classifier(np.random.default_rng(11), None))
    assert fm.meta["output_head"] is None
    x = np.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(apply_head(x, None), x)


def test_head_inside_the_graph_or_over_another_axis_is_named():
    rng = np.random.default_rng(12)
    with pytest.raises(OnnxImportError, match=r"Softmax is supported only as the output head"):
        load_onnx(_classifier(rng, "Softmax", extra="Relu"))
    with pytest.raises(OnnxImportError, match=r"over axis 0 .* only over the classes"):
        load_onnx(_classifier(rng, "Softmax", head_attrs={"axis": 0}))
    with pytest.raises(IlmpqValueError, match="unknown output head"):
        apply_head(np.zeros((1, 2)), {"op": "Tanh"})
