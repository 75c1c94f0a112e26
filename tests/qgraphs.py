"""Hand-built quantized ONNX graphs (QONNX and QDQ) for the import tests, with onnx.helper only.

:class:`QonnxBuilder` writes a small CNN the way Brevitas exports one: ``Quant`` nodes on the
input, on every weight (per-row bit widths: the ILMPQ shape), on biases (32-bit, scale
``s_w * s_in``) and on activations. :class:`QdqBuilder` writes the ONNX QDQ form:
``DequantizeLinear`` of int8/int4 weights with per-axis scales, int32 biases, and
``QuantizeLinear``/``DequantizeLinear`` pairs on activations.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

QDOMAIN = "qonnx.custom_op.general"


class QonnxBuilder:
    """Build a QONNX graph step by step; every method returns the name of its output tensor."""

    def __init__(self, shape=(1, 8, 8), *, rounding="HALF_UP", domain=QDOMAIN):
        self.nodes, self.inits = [], []
        self.shape = shape
        self.rounding = rounding
        self.domain = domain
        self.k = 0
        self.scales = {}  # tensor -> scale of its quantizer

    def _n(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def const(self, arr, base="c"):
        name = self._n(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def quant(self, x, scale, bits, *, signed, narrow=False, zeropt=0.0, rounding=None,
              name=None):
        out = self._n("q")
        self.nodes.append(helper.make_node(
            "Quant", [x, self.const(scale, "s"), self.const(zeropt, "z"), self.const(bits, "b")],
            [out], domain=self.domain, name=name or self._n("Quant"), signed=int(signed),
            narrow=int(narrow), rounding_mode=rounding or self.rounding))
        self.scales[out] = np.asarray(scale, dtype=np.float64)
        return out

    def node(self, op, inputs, name=None, **attrs):
        out = self._n(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or self._n(op), **attrs))
        return out

    def conv(self, x, s_in, w_int, w_scale, bits, *, bias_int=None, pad=1, stride=1,
             name=None, bias_bits=32):
        """A Quant-weight conv; ``w_scale``/``bits`` per row ``(M,)``; bias in acc units."""
        m = w_int.shape[0]
        wf = self.const(w_int * np.asarray(w_scale).reshape(m, 1, 1, 1), "w")
        wq = self.quant(wf, np.asarray(w_scale, np.float32).reshape(m, 1, 1, 1),
                        np.asarray(bits, np.float32).reshape(m, 1, 1, 1), signed=True,
                        narrow=True, rounding="ROUND")
        ins = [x, wq]
        if bias_int is not None:
            bs = np.asarray(w_scale, np.float64) * s_in
            bq = self.quant(self.const(bias_int * bs, "bias"), bs.astype(np.float32), bias_bits,
                            signed=True, rounding="ROUND")
            ins.append(bq)
        k = w_int.shape[2]
        return self.node("Conv", ins, name=name, kernel_shape=[k, k], pads=[pad] * 4,
                         strides=[stride, stride])

    def gemm(self, x, s_in, w_int, w_scale, bits, *, bias_int=None, name=None):
        m = w_int.shape[0]
        wf = self.const(w_int * np.asarray(w_scale).reshape(m, 1), "w")
        wq = self.quant(wf, np.asarray(w_scale, np.float32).reshape(m, 1),
                        np.asarray(bits, np.float32).reshape(m, 1), signed=True, narrow=True,
                        rounding="ROUND")
        ins = [x, wq]
        if bias_int is not None:
            bs = np.asarray(w_scale, np.float64) * s_in
            ins.append(self.quant(self.const(bias_int * bs, "bias"), bs.astype(np.float32), 32,
                                  signed=True, rounding="ROUND"))
        return self.node("Gemm", ins, name=name, transB=1)

    def model(self, out, opset=13, out_shape=(None, 10)):
        c, h, w = self.shape
        g = helper.make_graph(
            self.nodes, "qonnx_test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, h, w])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
            initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                                helper.make_opsetid(self.domain, 1)])
        m.ir_version = 8
        return m


def row_weights(rng, m, c, k, hi_rows, *, lo_max=7, hi_max=127):
    """Integer weights ``(m, c, k, k)``: rows in ``hi_rows`` 8-bit, the others 4-bit, each row
    reaching its maximum; returns ``(w, bits)``."""
    w = rng.integers(-lo_max, lo_max + 1, size=(m, c, k, k))
    bits = np.full(m, 4)
    for r in hi_rows:
        w[r] = rng.integers(-hi_max, hi_max + 1, size=(c, k, k))
        w[r].flat[0] = hi_max
        bits[r] = 8
    for r in range(m):
        if r not in hi_rows:
            w[r].flat[0] = lo_max
    return w.astype(np.int64), bits


def qonnx_cnn(seed=0, *, rounding="HALF_UP", pow2=True, act_bits=8, domain=QDOMAIN,
              out_quant=True, intermediate=False):
    """A small residual CNN in QONNX form on a ``(1, 8, 8)`` pixel input (input Quant scale 1):

    conv0 3x3 1->8 + ReLU, maxpool 2, conv1 3x3 8->8 + ReLU, conv2 3x3 8->8 + residual (conv1's
    output) + ReLU, global average pool (+ Quant at the same scale), flatten, FC 8->10 (signed
    output Quant). One 8-bit row per layer (R = 1/8 for 8 rows; ceil(10/8) = 2 for the FC).
    ``pow2``: power-of-two scales (M·2^-S exact); else arbitrary float scales.
    ``intermediate``: a signed Quant between conv2 and the residual Add, as Brevitas exports.
    """
    rng = np.random.default_rng(seed)
    b = QonnxBuilder(rounding=rounding, domain=domain)
    amax = (1 << act_bits) - 1
    if pow2:
        s_a = [2.0 ** -2, 2.0 ** -3, 2.0 ** -3, 2.0 ** -2]
        def ws(m):
            return 2.0 ** -rng.integers(6, 9, size=m)
    else:
        s_a = [0.31, 0.173, 0.173, 0.29]
        def ws(m):
            return rng.uniform(0.002, 0.01, size=m)
    if act_bits == 4:
        s_a = [v * 16 for v in s_a]
    x = b.quant("x", 1.0, 8, signed=False, name="in_quant")
    w0, bits0 = row_weights(rng, 8, 1, 3, [2])
    sw0 = ws(8)
    t = b.conv(x, 1.0, w0, sw0, bits0, bias_int=rng.integers(-500, 500, 8), name="conv0")
    t = b.node("Relu", [t])
    a0 = b.quant(t, s_a[0], act_bits, signed=False, name="act0")
    p = b.node("MaxPool", [a0], kernel_shape=[2, 2], strides=[2, 2])
    w1, bits1 = row_weights(rng, 8, 8, 3, [5])
    t = b.conv(p, s_a[0], w1, ws(8), bits1, bias_int=rng.integers(-3000, 3000, 8), name="conv1")
    t = b.node("Relu", [t])
    a1 = b.quant(t, s_a[1], act_bits, signed=False, name="act1")
    w2, bits2 = row_weights(rng, 8, 8, 3, [0])
    t = b.conv(a1, s_a[1], w2, ws(8), bits2, bias_int=rng.integers(-3000, 3000, 8), name="conv2")
    if intermediate:
        t = b.quant(t, s_a[1], act_bits, signed=True, name="conv2_quant")
    t = b.node("Add", [t, a1], name="res_add")
    t = b.node("Relu", [t])
    a2 = b.quant(t, s_a[2], act_bits, signed=False, name="act2")
    g = b.node("GlobalAveragePool", [a2])
    g = b.quant(g, s_a[2], act_bits, signed=False, name="gap_quant", rounding="HALF_UP")
    f = b.node("Flatten", [g], axis=1)
    w3, bits3 = row_weights(rng, 10, 8, 1, [1, 7])
    t = b.gemm(f, s_a[2], w3[:, :, 0, 0], ws(10), bits3, bias_int=rng.integers(-900, 900, 10),
               name="fc")
    if out_quant:
        t = b.quant(t, s_a[3], act_bits, signed=True, name="out_quant")
    del amax
    return b.model(t)


def pixel_images(rng, n=8, shape=(1, 8, 8)):
    return rng.integers(0, 256, size=(n,) + shape).astype(np.uint8)


# -- QDQ -------------------------------------------------------------------------------------

class QdqBuilder:
    def __init__(self, shape=(1, 8, 8)):
        self.nodes, self.inits = [], []
        self.shape = shape
        self.k = 0

    def _n(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def init(self, arr, base="c", dtype=None):
        name = self._n(base)
        a = np.asarray(arr)
        if dtype == "int4":
            t = helper.make_tensor(name, TensorProto.INT4, a.shape, a.reshape(-1).tolist())
        else:
            t = numpy_helper.from_array(a.astype(dtype) if dtype else a, name)
        self.inits.append(t)
        return name

    def node(self, op, inputs, name=None, **attrs):
        out = self._n(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or self._n(op), **attrs))
        return out

    def qdq(self, x, scale, *, signed=False, zp=0, name=None):
        zt = np.int8 if signed else np.uint8
        s = self.init(np.float32(scale), "s")
        z = self.init(np.array(zp, dtype=zt), "z")
        q = self.node("QuantizeLinear", [x, s, z], name=name and f"{name}_q")
        return self.node("DequantizeLinear", [q, s, z], name=name and f"{name}_dq")

    def dq_weight(self, w_int, w_scale, *, axis=0, int4=False, bias=False):
        wq = self.init(w_int.astype(np.int32) if bias else w_int,
                       "wq", dtype=np.int32 if bias else ("int4" if int4 else np.int8))
        s = self.init(np.asarray(w_scale, dtype=np.float32), "ws")
        attrs = {"axis": axis} if np.size(w_scale) > 1 else {}
        return self.node("DequantizeLinear", [wq, s], **attrs)

    def conv(self, x, s_in, w_int, w_scale, *, bias_int=None, pad=1, name=None, int4=False):
        ins = [x, self.dq_weight(w_int, w_scale, int4=int4)]
        if bias_int is not None:
            ins.append(self.dq_weight(np.asarray(bias_int), np.asarray(w_scale) * s_in,
                                      bias=True))
        k = w_int.shape[2]
        return self.node("Conv", ins, name=name, kernel_shape=[k, k], pads=[pad] * 4)

    def model(self, out, opset=21, out_shape=(None, 10)):
        c, h, w = self.shape
        g = helper.make_graph(
            self.nodes, "qdq_test",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, h, w])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, list(out_shape))],
            initializer=self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 10
        return m


def qdq_cnn(seed=0, *, int4_first=False, pow2=False):
    """conv0 (int8 or int4 weights) + ReLU, maxpool, conv1 + residual (conv0's pooled output) +
    ReLU, GAP, flatten, MatMul 8->10 (per-column scales), signed output, all QDQ."""
    rng = np.random.default_rng(seed)
    b = QdqBuilder()
    x = b.qdq("x", 1.0, name="in")
    w0, _ = row_weights(rng, 8, 1, 3, [] if int4_first else [3])
    if pow2:
        ws = lambda m: 2.0 ** -rng.integers(6, 9, size=m)  # noqa: E731
        s_a = [0.25, 0.125, 0.25]
    else:
        ws = lambda m: rng.uniform(0.002, 0.01, size=m)  # noqa: E731
        s_a = [0.27, 0.19, 0.31]
    t = b.conv(x, 1.0, w0, ws(8), bias_int=rng.integers(-500, 500, 8), name="conv0",
               int4=int4_first)
    t = b.node("Relu", [t])
    a0 = b.qdq(t, s_a[0], name="act0")
    p = b.node("MaxPool", [a0], kernel_shape=[2, 2], strides=[2, 2])
    w1, _ = row_weights(rng, 8, 8, 3, [6])
    t = b.conv(p, s_a[0], w1, ws(8), bias_int=rng.integers(-3000, 3000, 8), name="conv1")
    t = b.node("Add", [t, p], name="res_add")
    t = b.node("Relu", [t])
    a1 = b.qdq(t, s_a[1], name="act1")
    gp = b.node("GlobalAveragePool", [a1])
    gp = b.qdq(gp, s_a[1], name="gap")
    f = b.node("Flatten", [gp], axis=1)
    w2, _ = row_weights(rng, 10, 8, 1, [2, 9])
    sw2 = ws(10)
    wt = w2[:, :, 0, 0].T.copy()  # MatMul: (K, M), per-column scales on axis 1
    t = b.node("MatMul", [f, b.dq_weight(wt, sw2, axis=1)], name="fc")
    bias = b.dq_weight(rng.integers(-900, 900, 10), sw2 * s_a[1], bias=True)
    t = b.node("Add", [t, bias], name="fc_bias")
    t = b.qdq(t, s_a[2], signed=True, name="out")
    return b.model(t)
