"""Small ONNX graphs built with onnx.helper, shared by the import, quantization and host-fallback
tests (random float32 initializers from a seeded generator)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class G:
    """A tiny ONNX graph builder: every method returns the name of its output tensor."""

    def __init__(self, rng, in_shape=(1, 8, 8), batch="N"):
        self.rng = rng
        self.nodes, self.inits = [], []
        self.in_shape = in_shape
        self.batch = batch
        self.k = 0

    def t(self, prefix="t"):
        self.k += 1
        return f"{prefix}{self.k}"

    def init(self, arr, name=None, dtype=np.float32):
        name = name or self.t("w")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(self, op, inputs, n_out=1, name=None, **attrs):
        outs = [self.t() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name or self.t(op.lower()),
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, bias=True, group=1, **attrs):
        w = self.init(self.rng.normal(0, 1 / np.sqrt(cin // group * k * k),
                                      (cout, cin // group, k, k)))
        ins = [x, w] + ([self.init(self.rng.normal(0, 0.1, cout))] if bias else [])
        if group != 1:
            attrs["group"] = group
        return self.node("Conv", ins, kernel_shape=[k, k], **attrs)

    def scalar(self, v):
        return self.init(np.array(v))

    def bn(self, x, c):
        r = self.rng
        ps = [self.init(r.uniform(0.5, 1.5, c)), self.init(r.normal(0, 0.2, c)),
              self.init(r.normal(0, 0.2, c)), self.init(r.uniform(0.5, 2.0, c))]
        return self.node("BatchNormalization", [x] + ps, epsilon=1e-3)

    # activations written out as arithmetic (issue 20)
    def hardswish_arith(self, x):
        c = self.node("Clip", [self.node("Add", [x, self.scalar(3.0)]), self.scalar(0.0),
                               self.scalar(6.0)])
        return self.node("Div", [self.node("Mul", [x, c]), self.scalar(6.0)])

    def silu_arith(self, x):
        return self.node("Mul", [x, self.node("Sigmoid", [x])])

    def gelu_tanh_arith(self, x):
        x3 = self.node("Pow", [x, self.scalar(3.0)])
        inner = self.node("Mul", [self.node("Add", [x, self.node("Mul", [x3, self.scalar(
            0.044715)])]), self.scalar(float(np.sqrt(2 / np.pi)))])
        t = self.node("Add", [self.node("Tanh", [inner]), self.scalar(1.0)])
        return self.node("Mul", [self.node("Mul", [x, t]), self.scalar(0.5)])

    def shuffle(self, x, c, h, w, groups):
        shp = self.init(np.array([-1, groups, c // groups, h, w]), dtype=np.int64)
        r = self.node("Reshape", [x, shp])
        t = self.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
        return self.node("Reshape", [t, self.init(np.array([-1, c, h, w]), dtype=np.int64)])

    def slice(self, x, starts, ends, axes, steps=None):
        ins = [x, self.init(np.array(starts), dtype=np.int64),
               self.init(np.array(ends), dtype=np.int64),
               self.init(np.array(axes), dtype=np.int64)]
        if steps is not None:
            ins.append(self.init(np.array(steps), dtype=np.int64))
        return self.node("Slice", ins)

    def model(self, out, out_shape, opset=17):
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                           [self.batch, *self.in_shape])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def projection_block(rng, hw: int = 8, c0: int = 4, c1: int = 6):
    """A torchvision-style downsampling block on a 3 x ``hw`` x ``hw`` input: a 3x3 stem +
    ReLU (``c0`` channels), conv1 (3x3 stride 2) + BN + ReLU, conv2 (3x3) + BN, and the 1x1
    stride-2 projection of the block input + BN written AFTER conv2; Add, ReLU. Returns the
    model and its per-image input shape."""
    g = G(rng, (3, hw, hw))
    x = g.node("Relu", [g.conv("x", 3, c0, 3, pads=[1, 1, 1, 1])])
    t = g.node("Relu", [g.bn(g.conv(x, c0, c1, 3, strides=[2, 2], pads=[1, 1, 1, 1]), c1)])
    t = g.bn(g.conv(t, c1, c1, 3, pads=[1, 1, 1, 1]), c1)
    sh = g.bn(g.conv(x, c0, c1, 1, strides=[2, 2]), c1)
    y = g.node("Relu", [g.node("Add", [t, sh])])
    return g.model(y, ["N", c1, hw // 2, hw // 2]), (3, hw, hw)

def compare_with_reference(model, x):
    """Import ``model`` (``ilmpq.golden.onnx_import.load_onnx``) and check its float prediction
    on ``x`` against ``onnx.reference``; return the imported float model."""
    from onnx.reference import ReferenceEvaluator

    from ilmpq.golden.onnx_import import load_onnx
    fm = load_onnx(model)
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    got = fm.predict(x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))
    return fm
