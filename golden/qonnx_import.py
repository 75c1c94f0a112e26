"""Import an already quantized CNN (QONNX from Brevitas, or ONNX QDQ) into an ILMPQ integer model
without re-quantizing it (``docs/quantization.md`` section 11, ``docs/qat.md``).

Two dialects are read:

* **QONNX** (FINN / Brevitas / hls4ml): ``Quant`` nodes (``X, scale, zeropt, bitwidth``,
  attributes ``signed``, ``narrow``, ``rounding_mode``) on weights, biases and activations,
  ``BipolarQuant`` on weights. Domains ``qonnx.custom_op.general``, ``finn.custom_op.general``,
  ``onnx.brevitas``. A per-row weight bit width (``bitwidth`` of shape ``(M, 1, 1, 1)``) is the
  ILMPQ layer shape: 4-bit and 8-bit rows in one layer.
* **ONNX QDQ**: ``QuantizeLinear`` / ``DequantizeLinear`` pairs on activations,
  ``DequantizeLinear`` of int8 / int4 (opset 21) weights with per-axis scales, int32 biases, and
  ``QLinearConv`` / ``QLinearMatMul`` where they appear.

How it works: the quantizers are taken out of the graph and recorded — a weight quantizer keeps
its integers and per-row scale, an activation quantizer becomes an annotation (scale, bits,
signedness, rounding) of the tensor it produces — and the remaining float graph is read by the
float importer (:mod:`ilmpq.golden.onnx_import`, which fuses BatchNormalization, ReLU, residual
adds and flattening). Each fused conv/FC layer then gets the model's own integer weights (a
BatchNormalization after the conv only rescales a row: it moves into the requantization
multiplier, a negative factor negates the row), the model's activation scales, biases in
accumulator units and ``M·2^-S`` multipliers (:func:`ilmpq.golden.quantize.choose_requant`).

The exactness contract
----------------------
For every conv/FC layer, given the same integer inputs, ilmpq's output integer equals the model's
own (the quantizer applied to the float expression of integers times scales) **exactly** when

* the bias is an integer in accumulator units (``b / (s_w · s_in)``; Brevitas' ``Int32Bias``;
  within ``1e-6`` relative, the precision of a float32 product),
* the real multiplier ``s_w · s_in / s_out`` (and ``s_res / s_out``) equals ``M · 2^-S`` with
  ``M`` within ``mult_bits`` (power-of-two scales, or any scale ratio with few mantissa bits),
* the output quantizer rounds half up (QONNX ``HALF_UP``; ilmpq's requantization is
  ``floor(v + 1/2)``), is not narrow, and no intermediate quantizer is absorbed into the layer
  (a quantizer between a conv and its residual add rounds twice in the model, once in ilmpq).

Otherwise the deviation is bounded: with ``δ`` the largest difference of the value before
rounding (multiplier approximation times the largest accumulator, bias rounding, half an LSB of
each absorbed intermediate quantizer), the outputs differ by at most ``floor(1 + δ)`` LSB (``0``
when ``δ = 0`` and the rounding agrees; ties only, when only the rounding rule differs). The
import report states, per layer, the kind of each deviation, the bound, and — when images are
given — the deviation measured against the model executed by ``onnx.reference`` (QONNX, with the
QONNX operators implemented here) or ``onnxruntime`` (QDQ), layer by layer on the model's own
integer inputs and through the whole network.

Row split
---------
Every conv/FC layer must have exactly ``ceil(R · M)`` 8-bit rows (the hardware's share). Rows
whose integers lie in ``[-7, 7]`` run exactly on 4-bit lanes and any row runs exactly on an 8-bit
lane, so a layer with fewer 8-bit rows is padded (4-bit rows promoted; report line) and declared
8-bit rows whose integers fit 4 bits may be demoted (report line). A layer with more rows that
really need 8 bits than the share allows is rejected, naming the layer, the share found and the
configuration's share.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from . import ops
from .float_model import FConv, FGlobalAvgPool, FMaxPool
from .formats import SUPPORTED_ACT_BITS, NumericSpec, Precision
from .model import (ConvLayer, FlattenLayer, GlobalAvgPoolLayer, MaxPoolLayer, ModelFormatError,
                    QModel, TensorSpec, hi_row_count)
from .onnx_import import OnnxImportError, _Importer, _parse_model, _sanitize
from .quantize import QuantizeError, choose_requant, parse_ratio, text_table

__all__ = [
    "QuantImportError", "QONNX_DOMAINS", "ROUNDING_MODES", "is_quantized_onnx",
    "import_quantized", "ImportLayerReport", "ImportReport", "import_report",
    "reference_evaluator", "compare_with_model", "qonnx_round",
]

#: Custom-op domains of the QONNX operators.
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")
#: QONNX rounding modes (``ROUND`` is half to even, as ONNX QuantizeLinear).
ROUNDING_MODES = ("ROUND", "HALF_UP", "HALF_DOWN", "CEIL", "FLOOR", "UP", "DOWN")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc")
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
            "ConvInteger", "MatMulInteger")
_ILMPQ_ROUNDING = "HALF_UP"
#: A bias within this relative distance of an integer (in accumulator units) is that integer:
#: float32 storage of ``int * s_w * s_in`` and float32 scales are good to about 2e-7.
_BIAS_REL_TOL = 1e-6


class QuantImportError(OnnxImportError):
    """A quantized model cannot be imported exactly or within the contract; the message names
    the node (or layer), the problem and what is allowed."""


def qonnx_round(x: np.ndarray, mode: str) -> np.ndarray:
    """Round like the QONNX ``rounding_mode`` (``ROUND`` = half to even)."""
    x = np.asarray(x, dtype=np.float64)
    m = mode.upper()
    if m == "ROUND":
        return np.round(x)
    if m == "HALF_UP":
        return np.floor(x + 0.5)
    if m == "HALF_DOWN":
        return np.ceil(x - 0.5)
    if m == "CEIL":
        return np.ceil(x)
    if m == "FLOOR":
        return np.floor(x)
    if m == "UP":
        return np.sign(x) * np.ceil(np.abs(x))
    if m == "DOWN":
        return np.trunc(x)
    raise ValueError(f"unknown rounding mode {mode!r}")


# -- what the graph rewrite records -----------------------------------------------------------

@dataclass
class _ActQuant:
    """An activation quantizer: the tensor it produces has ``real = scale * int``."""

    node: str
    op: str
    scale: float
    zero_point: float
    bits: int
    signed: bool
    narrow: bool
    rounding: str

    def same_format(self, o: "_ActQuant") -> bool:
        return (self.scale == o.scale and self.bits == o.bits and self.signed == o.signed
                and self.narrow == o.narrow)


@dataclass
class _WeightQuant:
    """A quantized constant: its integers ``q`` and scale (both broadcast to ``q``'s shape)."""

    node: str
    op: str
    q: np.ndarray        # int64
    scale: np.ndarray    # float64, same shape
    bits: np.ndarray     # int64, same shape
    signed: bool


def _node_label(node, idx) -> str:
    return node.name or f"{node.op_type}_{idx}"


class _Rewriter:
    """Take the quantizers out of a QONNX / QDQ graph: returns a plain float graph plus what
    each quantizer recorded."""

    def __init__(self, model, label):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.nh = numpy_helper
        self.model = model
        self.label = label
        self.consts: dict[str, np.ndarray] = {}
        self.weights: dict[str, _WeightQuant] = {}
        self.acts: dict[str, _ActQuant] = {}
        self.layer_nodes: dict[str, tuple] = {}  # sanitized node name -> (label, op, w input, axis)
        self.kinds: set[str] = set()
        self.new_inits: list = []
        self.nodes: list = []
        self.names: set[str] = set()

    def err(self, node, idx, msg):
        return QuantImportError(f"{self.label}: node {_node_label(node, idx)!r} "
                                f"({node.op_type}): {msg}")

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def const(self, node, idx, name, what):
        if name in self.consts:
            return self.consts[name]
        raise self.err(node, idx, f"{what} {name!r} must be a constant (an initializer or a "
                                  f"Constant node)")

    def scalar(self, node, idx, name, what) -> float:
        v = np.asarray(self.const(node, idx, name, what), dtype=np.float64)
        if v.size != 1:
            raise self.err(node, idx, f"{what} must be a single value (per-tensor) for an "
                                      f"activation, not shape {list(v.shape)}")
        return float(v.reshape(-1)[0])

    def unique_name(self, node, idx) -> str:
        base = _sanitize(_node_label(node, idx))
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def add_const(self, name: str, value: np.ndarray):
        self.consts[name] = value
        self.new_inits.append(self.nh.from_array(np.asarray(value, dtype=np.float64), name))

    def identity(self, src: str, dst: str, name: str):
        self.nodes.append(self.onnx.helper.make_node("Identity", [src], [dst], name=name))

    # -- the pass ---------------------------------------------------------------------------

    def run(self):
        onnx = self.onnx
        g = self.model.graph
        for init in g.initializer:
            try:
                self.consts[init.name] = self.nh.to_array(init)
            except Exception as e:  # noqa: BLE001 - onnx raises several types here
                raise QuantImportError(
                    f"{self.label}: initializer {init.name!r} cannot be read ({e})") from None
        for idx, node in enumerate(g.node):
            op = node.op_type
            name = self.unique_name(node, idx)
            if op == "Constant" and node.domain in ("", "ai.onnx"):
                a = self.attrs(node)
                if "value" in a:
                    self.consts[node.output[0]] = self.nh.to_array(a["value"])
            if node.domain in QONNX_DOMAINS or (op in _QONNX_OPS and node.domain not in
                                                 ("", "ai.onnx")):
                if op not in ("Quant", "BipolarQuant", "IntQuant"):
                    if op == "Trunc":
                        raise self.err(node, idx, "Trunc (QONNX truncation, e.g. Brevitas' "
                                                  "TruncAvgPool) is not supported: ilmpq's "
                                                  "average pooling rounds half up at the "
                                                  "input's scale; use a plain average pool "
                                                  "followed by a Quant with the input's scale")
                    raise self.err(node, idx, f"QONNX operator {op!r} is not supported; "
                                              f"supported: Quant (IntQuant), BipolarQuant")
                self.kinds.add("qonnx")
                getattr(self, f"q_{'Quant' if op == 'IntQuant' else op}")(node, idx, name)
                continue
            if node.domain in ("", "ai.onnx") and op in _QDQ_OPS:
                self.kinds.add("qdq")
                if op in ("ConvInteger", "MatMulInteger"):
                    raise self.err(node, idx, f"{op} is not supported (its int32 output is "
                                              f"rescaled by separate float ops); export with "
                                              f"QuantizeLinear/DequantizeLinear (QDQ) or "
                                              f"QLinearConv/QLinearMatMul instead")
                getattr(self, f"q_{op}")(node, idx, name)
                continue
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = name
            if node.domain in ("", "ai.onnx") and op in ("Conv", "Gemm", "MatMul"):
                a = self.attrs(node)
                axis = 0 if op == "Conv" or (op == "Gemm" and a.get("transB", 0)) else 1
                self.layer_nodes[name] = (_node_label(node, idx), op, node.input[1], axis)
            self.nodes.append(new)
        return self

    # -- QONNX ------------------------------------------------------------------------------

    def q_Quant(self, node, idx, name):
        a = self.attrs(node)
        if len(node.input) != 4:
            raise self.err(node, idx, "Quant needs 4 inputs (X, scale, zeropt, bitwidth)")
        signed = bool(a.get("signed", 1))
        narrow = bool(a.get("narrow", 0))
        mode = str(a.get("rounding_mode", "ROUND")).upper()
        if mode not in ROUNDING_MODES:
            raise self.err(node, idx, f"rounding_mode {mode!r} is not one of {ROUNDING_MODES}")
        x, s_name, z_name, b_name = node.input
        scale = np.asarray(self.const(node, idx, s_name, "scale"), dtype=np.float64)
        zp = np.asarray(self.const(node, idx, z_name, "zeropt"), dtype=np.float64)
        bits = np.asarray(self.const(node, idx, b_name, "bitwidth"), dtype=np.float64)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise self.err(node, idx, f"scale must be positive and finite, not "
                                      f"{scale.reshape(-1)[:4].tolist()}")
        if np.any(bits != np.rint(bits)) or np.any(bits < 1):
            raise self.err(node, idx, f"bitwidth must be positive integers, not "
                                      f"{np.unique(bits)[:4].tolist()}")
        if np.any(zp != 0):
            raise self.err(node, idx, f"zero point {np.unique(zp)[:4].tolist()} is not "
                                      f"allowed: ilmpq's weights and activations are symmetric "
                                      f"/ ReLU-unsigned with zero point 0")
        out = node.output[0]
        if x in self.consts:
            w = np.asarray(self.consts[x], dtype=np.float64)
            try:
                s_b = np.broadcast_to(scale, w.shape)
                b_b = np.broadcast_to(bits, w.shape).astype(np.int64)
            except ValueError:
                raise self.err(node, idx, f"scale {list(scale.shape)} / bitwidth "
                                          f"{list(bits.shape)} do not broadcast to the "
                                          f"tensor's shape {list(w.shape)}") from None
            lo = np.where(signed, -(2.0 ** (b_b - 1)) + narrow, 0.0)
            hi = np.where(signed, 2.0 ** (b_b - 1) - 1, 2.0 ** b_b - 1 - narrow)
            q = qonnx_round(np.clip(w / s_b, lo, hi), mode).astype(np.int64)
            self.weights[out] = _WeightQuant(_node_label(node, idx), "Quant", q,
                                             np.array(s_b, dtype=np.float64), b_b, signed)
            self.add_const(out, q * s_b)
            return
        if scale.size != 1 or bits.size != 1:
            raise self.err(node, idx, f"an activation quantizer must be per-tensor (one scale "
                                      f"and bit width), not scale {list(scale.shape)}, bitwidth "
                                      f"{list(bits.shape)}")
        self.acts[out] = _ActQuant(_node_label(node, idx), "Quant", float(scale.reshape(-1)[0]),
                                   0.0, int(bits.reshape(-1)[0]), signed, narrow, mode)
        self.identity(x, out, name)

    def q_BipolarQuant(self, node, idx, name):
        x, s_name = node.input[0], node.input[1]
        if x not in self.consts:
            raise self.err(node, idx, "bipolar (+-1) activations are not supported; ilmpq's "
                                      "activations are unsigned after ReLU")
        w = np.asarray(self.consts[x], dtype=np.float64)
        scale = np.asarray(self.const(node, idx, s_name, "scale"), dtype=np.float64)
        if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
            raise self.err(node, idx, "scale must be positive and finite")
        s_b = np.broadcast_to(scale, w.shape)
        q = np.where(w >= 0, 1, -1).astype(np.int64)
        out = node.output[0]
        self.weights[out] = _WeightQuant(_node_label(node, idx), "BipolarQuant", q,
                                         np.array(s_b, dtype=np.float64),
                                         np.full(w.shape, 2, np.int64), True)
        self.add_const(out, q * s_b)

    # -- QDQ --------------------------------------------------------------------------------

    _INT_TYPES = {"int8": (8, True), "uint8": (8, False), "int4": (4, True),
                  "uint4": (4, False), "int16": (16, True), "uint16": (16, False),
                  "int32": (32, True)}

    def _zp_type(self, node, idx, zp_name, default_type="uint8"):
        if zp_name:
            zp = self.const(node, idx, zp_name, "zero point")
            tname = str(zp.dtype)
            if tname not in self._INT_TYPES:
                raise self.err(node, idx, f"zero point of type {tname} is not supported; "
                                          f"integer types int8, uint8, int4, uint4")
            return np.asarray(zp, dtype=np.int64), tname
        return np.zeros(1, np.int64), default_type

    def _act_qdq(self, node, idx, scale, zp, tname, what):
        s = np.asarray(scale, dtype=np.float64)
        if s.size != 1:
            raise self.err(node, idx, f"{what}: an activation must have one scale "
                                      f"(per-tensor), not shape {list(s.shape)}")
        s = float(s.reshape(-1)[0])
        if not (s > 0 and math.isfinite(s)):
            raise self.err(node, idx, f"{what}: scale {s} must be positive and finite")
        if np.any(zp != 0):
            raise self.err(node, idx, f"{what}: zero point {int(zp.reshape(-1)[0])} is not "
                                      f"allowed: ilmpq's activations have zero point 0 (use "
                                      f"symmetric quantization: uint8 after ReLU, int8 "
                                      f"otherwise, zero point 0)")
        bits, signed = self._INT_TYPES[tname]
        return _ActQuant(_node_label(node, idx), node.op_type, s, 0.0, bits, signed, False,
                         "ROUND")

    def q_QuantizeLinear(self, node, idx, name):
        x = node.input[0]
        if x in self.consts:
            raise self.err(node, idx, "QuantizeLinear of a constant: store the weight as "
                                      "integers with a DequantizeLinear (the usual QDQ form)")
        zp, tname = self._zp_type(node, idx, node.input[2] if len(node.input) > 2 else "")
        scale = self.const(node, idx, node.input[1], "scale")
        self.acts[node.output[0]] = self._act_qdq(node, idx, scale, zp, tname,
                                                  "activation quantizer")
        self.identity(x, node.output[0], name)

    def q_DequantizeLinear(self, node, idx, name):
        a = self.attrs(node)
        x = node.input[0]
        scale = np.asarray(self.const(node, idx, node.input[1], "scale"), dtype=np.float64)
        out = node.output[0]
        if x in self.consts:
            xi = np.asarray(self.consts[x])
            tname = str(xi.dtype)
            if tname not in self._INT_TYPES:
                raise self.err(node, idx, f"quantized constant of type {tname}; integer types "
                                          f"int8, int4 (weights) or int32 (biases) are "
                                          f"supported")
            bits, signed = self._INT_TYPES[tname]
            zp = np.zeros(1, np.int64)
            if len(node.input) > 2 and node.input[2]:
                zp = np.asarray(self.const(node, idx, node.input[2], "zero point"), np.int64)
            if np.any(zp != 0):
                raise self.err(node, idx, f"zero point {np.unique(zp)[:4].tolist()} is not "
                                          f"allowed for a weight or bias: ilmpq's weights are "
                                          f"symmetric (zero point 0)")
            q = xi.astype(np.int64)
            if scale.size > 1:
                axis = int(a.get("axis", 1))
                axis = axis + q.ndim if axis < 0 else axis
                if scale.ndim != 1 or not 0 <= axis < q.ndim or scale.shape[0] != q.shape[axis]:
                    raise self.err(node, idx, f"per-axis scale of shape {list(scale.shape)} does "
                                              f"not match axis {axis} of the {list(q.shape)} "
                                              f"tensor (blocked quantization is not supported)")
                shp = [1] * q.ndim
                shp[axis] = scale.shape[0]
                s_b = np.broadcast_to(scale.reshape(shp), q.shape)
            else:
                s_b = np.broadcast_to(scale.reshape(()), q.shape)
            self.weights[out] = _WeightQuant(_node_label(node, idx), "DequantizeLinear", q,
                                             np.array(s_b, dtype=np.float64),
                                             np.full(q.shape, bits, np.int64), signed)
            self.add_const(out, q * s_b)
            return
        zp, tname = self._zp_type(node, idx, node.input[2] if len(node.input) > 2 else "")
        self.acts[out] = self._act_qdq(node, idx, scale, zp, tname, "activation dequantizer")
        self.identity(x, out, name)

    def _qlinear_weight(self, node, idx, w_name, s_name, z_name, axis_default):
        w = np.asarray(self.const(node, idx, w_name, "weight"))
        tname = str(w.dtype)
        if tname not in ("int8", "int4"):
            raise self.err(node, idx, f"weight of type {tname}: signed int8 or int4 weights are "
                                      f"required (ilmpq's weights are symmetric)")
        zp = np.asarray(self.const(node, idx, z_name, "weight zero point"), np.int64) \
            if z_name else np.zeros(1, np.int64)
        if np.any(zp != 0):
            raise self.err(node, idx, "weight zero point must be 0 (symmetric weights)")
        s = np.asarray(self.const(node, idx, s_name, "weight scale"), dtype=np.float64)
        q = w.astype(np.int64)
        shp = [1] * q.ndim
        if s.size > 1:
            shp[axis_default] = s.size
        s_b = np.broadcast_to(s.reshape(shp) if s.size > 1 else s.reshape(()), q.shape)
        bits = 8 if tname == "int8" else 4
        return _WeightQuant(_node_label(node, idx), node.op_type, q,
                            np.array(s_b, dtype=np.float64), np.full(q.shape, bits, np.int64),
                            True)

    def _qlinear(self, node, idx, name, op):
        onnx = self.onnx
        ins = list(node.input) + [""] * (9 - len(node.input))
        x, xs, xz, w, ws, wz, ys, yz = ins[:8]
        x_act = self.acts.get(x)
        x_scale = self.scalar(node, idx, xs, "input scale")
        if x_act is not None and x_act.scale != x_scale:
            raise self.err(node, idx, f"input scale {x_scale} differs from the scale "
                                      f"{x_act.scale} its producer {x_act.node!r} quantized to")
        xzp, _ = self._zp_type(node, idx, xz)
        if np.any(xzp != 0):
            raise self.err(node, idx, "input zero point must be 0")
        axis = 0 if op == "Conv" else 1
        wq = self._qlinear_weight(node, idx, w, ws, wz, axis)
        w_out = f"{name}.w"
        self.weights[w_out] = wq
        self.add_const(w_out, wq.q * wq.scale)
        inputs = [x, w_out]
        if op == "Conv" and len(ins) > 8 and ins[8]:
            b = np.asarray(self.const(node, idx, ins[8], "bias"), dtype=np.float64)
            s_row = wq.scale.reshape(wq.q.shape[0], -1)[:, 0]
            self.add_const(f"{name}.b", b * s_row * x_scale)
            inputs.append(f"{name}.b")
        tmp = f"{name}.acc"
        attrs = {k: v for k, v in self.attrs(node).items()}
        if op == "Conv":
            new = onnx.helper.make_node("Conv", inputs, [tmp], name=name, **attrs)
        else:
            new = onnx.helper.make_node("MatMul", inputs, [tmp], name=name)
        self.layer_nodes[name] = (_node_label(node, idx), op, w_out, axis)
        self.nodes.append(new)
        zp, tname = self._zp_type(node, idx, yz)
        self.acts[node.output[0]] = self._act_qdq(node, idx, self.const(node, idx, ys,
                                                                        "output scale"),
                                                  zp, tname, "output")
        self.identity(tmp, node.output[0], f"{name}.out")

    def q_QLinearConv(self, node, idx, name):
        self._qlinear(node, idx, name, "Conv")

    def q_QLinearMatMul(self, node, idx, name):
        self._qlinear(node, idx, name, "MatMul")

    def float_model(self):
        """The rewritten graph: quantizers replaced by Identity / folded constants."""
        onnx = self.onnx
        g = self.model.graph
        used = set()
        for n in self.nodes:
            used.update(n.input)
        inits = [t for t in g.initializer if t.name in used] + \
            [t for t in self.new_inits if t.name in used]
        init_names = {t.name for t in g.initializer}
        kept = {t.name for t in inits}
        # exporters may list initializers as graph inputs: keep those still used
        inputs = [i for i in g.input if i.name not in init_names or i.name in kept]
        graph = onnx.helper.make_graph(self.nodes, g.name or "g", inputs, list(g.output),
                                       initializer=inits)
        opsets = [o for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        m = onnx.helper.make_model(graph, opset_imports=opsets or None)
        m.ir_version = self.model.ir_version
        del m.metadata_props[:]
        m.metadata_props.extend(self.model.metadata_props)
        m.producer_name = self.model.producer_name
        return m


class _TrackingImporter(_Importer):
    """The float importer, remembering which IR tensors were renamed into a fused layer."""

    def __init__(self, model, label):
        super().__init__(model, label)
        self.renamed: dict[str, str] = {}

    def rename_output(self, conv, onnx_out, a, *, nonneg=None):
        old = conv.output
        super().rename_output(conv, onnx_out, a, nonneg=nonneg)
        self.renamed[old] = conv.output

    def final_ir(self, ir: str) -> str:
        seen = set()
        while ir in self.renamed and ir not in seen:
            seen.add(ir)
            ir = self.renamed[ir]
        return ir


# -- the report ---------------------------------------------------------------------------------

@dataclass
class ImportLayerReport:
    """How one conv/FC layer was imported and how close it is to the model's own integers."""

    name: str
    node: str  #: the ONNX node of the layer
    rows: int
    hi_rows: int
    lo_rows: int
    declared_hi: int  #: rows the model quantized with more than 4 bits
    weight_bits: list  #: distinct declared weight bit widths
    bias_err: float  #: largest |bias - round(bias)| in accumulator units
    mult_err: float  #: largest relative error of M·2^-S against the real multiplier
    rounding: str  #: rounding mode of the model's output quantizer ("-" if none)
    intermediate: int  #: quantizers absorbed into the layer (double rounding in the model)
    delta: float  #: bound on the pre-rounding difference, output LSB
    bound_lsb: int  #: worst-case output deviation, LSB (given the same integer inputs)
    exact: bool
    reasons: list = field(default_factory=list)
    measured_local: int | None = None  #: largest |ilmpq - model| on the model's own inputs
    measured_local_frac: float | None = None  #: share of outputs that differ
    measured_net: int | None = None  #: largest |ilmpq - model| through the whole network


@dataclass
class ImportReport:
    """Stored as ``QModel.meta["import_report"]``; :meth:`format` prints it."""

    source: str
    dialect: str
    ratio: str
    act_bits: int
    layers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    n_images: int = 0
    runner: str | None = None
    output_agreement: float | None = None  #: share of images whose argmax agrees

    @property
    def exact(self) -> bool:
        return all(lr.exact for lr in self.layers)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImportReport":
        d = dict(d)
        layers = [ImportLayerReport(**x) for x in d.pop("layers", [])]
        return cls(layers=layers, **d)

    def format(self) -> str:
        head = (f"import ({self.dialect}): {self.source}, R = {self.ratio}, A{self.act_bits}; "
                f"contract: {'exact' if self.exact else 'bounded deviation'}")
        cols = ("layer", "node", "rows", "HI", "LO", "decl HI", "W bits", "bias err",
                "M rel err", "rounding", "interm", "bound LSB", "local max", "local %",
                "net max")
        rows = []
        for lr in self.layers:
            rows.append((lr.name, lr.node, str(lr.rows), str(lr.hi_rows), str(lr.lo_rows),
                         str(lr.declared_hi), "/".join(map(str, lr.weight_bits)),
                         f"{lr.bias_err:.3g}", f"{lr.mult_err:.2g}", lr.rounding,
                         str(lr.intermediate), "-" if lr.bound_lsb < 0 else str(lr.bound_lsb),
                         "-" if lr.measured_local is None else str(lr.measured_local),
                         "-" if lr.measured_local_frac is None else
                         f"{100 * lr.measured_local_frac:.3f}",
                         "-" if lr.measured_net is None else str(lr.measured_net)))
        lines = [head, *text_table(cols, rows)]
        lines.append("bound LSB: worst-case |ilmpq - model| of the layer's output integers given "
                     "the same integer inputs (0 = bit-exact); local/net: measured on images "
                     "layer by layer / through the network")
        for lr in self.layers:
            for why in lr.reasons:
                lines.append(f"{lr.name}: {why}")
        if self.runner is not None:
            agree = "" if self.output_agreement is None else \
                f"; top-1 agreement with the model {100 * self.output_agreement:.2f}%"
            lines.append(f"measured against {self.runner} on {self.n_images} images{agree}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def import_report(qmodel: QModel) -> ImportReport:
    """The :class:`ImportReport` stored in an imported model's meta (``KeyError`` if none)."""
    return ImportReport.from_dict(qmodel.meta["import_report"])


# -- detection ------------------------------------------------------------------------------------

def is_quantized_onnx(source) -> bool:
    """Whether an ONNX model (path, bytes or ModelProto) holds QONNX or QDQ quantizers."""
    model, _ = _parse_model(source)
    return any(n.domain in QONNX_DOMAINS or (n.domain in ("", "ai.onnx") and n.op_type in
                                             _QDQ_OPS) for n in model.graph.node)


# -- the importer -------------------------------------------------------------------------------

def import_quantized(source, *, ratio, spec: NumericSpec | None = None, act_bits=None,
                     images=None, runner: str | None = None, max_images: int = 64) -> QModel:
    """Import a QONNX or QDQ model into a :class:`QModel` without re-quantizing it.

    Parameters
    ----------
    source : path, bytes or onnx.ModelProto
    ratio : Fraction, float or str
        The hardware's high-precision row share ``R`` (``HWConfig.ratio``).
    spec : NumericSpec, optional
        Widths (``HWConfig.numeric``). Its ``act_bits`` is replaced by the model's activation
        width when ``act_bits`` is ``None`` and the model's width differs.
    act_bits : int, optional
        Require this activation width (an activation quantizer of another width is an error).
    images : array ``(N, C, H, W)``, optional
        Input integer codes (``uint8``: what the model's input quantizer produces, raw pixels for
        a model whose input quantizer has scale 1). With them the model is executed (``runner``)
        and the deviation measured layer by layer; a conv output the model leaves in float
        (usually the logits) gets its scale from these images (the largest magnitude).
    runner : "reference" or "onnxruntime", optional
        Executor of the original model: ``onnx.reference`` with the QONNX operators of this
        module (default for QONNX) or ``onnxruntime`` (default for QDQ).

    Returns
    -------
    QModel
        Validated against the spec; ``meta["import_report"]`` holds the :class:`ImportReport`.
    """
    try:
        return _import(source, ratio=ratio, spec=spec, act_bits=act_bits, images=images,
                       runner=runner, max_images=max_images)
    except UnicodeDecodeError as e:
        # protobuf does not check proto2 strings: a corrupt name surfaces when it is read
        raise QuantImportError(f"a name or text field of the model is not valid UTF-8 "
                               f"({e.reason} at byte {e.start}); the file is corrupt") from None


def _import(source, *, ratio, spec, act_bits, images, runner, max_images) -> QModel:
    model, label = _parse_model(source)
    r = parse_ratio(ratio)
    spec = NumericSpec() if spec is None else spec
    rw = _Rewriter(model, label).run()
    if not rw.kinds:
        raise QuantImportError(f"{label}: the model has no quantizers (no QONNX Quant nodes, no "
                               f"QuantizeLinear/DequantizeLinear); quantize a float model with "
                               f"'ilmpq quantize' instead")
    dialect = "+".join(sorted(rw.kinds))
    fmodel = rw.float_model()
    imp = _TrackingImporter(fmodel, label)
    try:
        fm = imp.run()
    except OnnxImportError as e:
        raise QuantImportError(str(e)) from None

    # -- activation quantizers per IR tensor ------------------------------------------------
    live: dict[str, list[tuple[str, _ActQuant]]] = {}
    absorbed: dict[str, list[_ActQuant]] = {}
    for onnx_name, aq in rw.acts.items():
        act = imp.acts.get(onnx_name)
        if act is None:
            continue
        if act.ir in fm.shapes:
            live.setdefault(act.ir, []).append((onnx_name, aq))
        else:
            fin = imp.final_ir(act.ir)
            if fin in fm.shapes:
                absorbed.setdefault(fin, []).append(aq)
    tq: dict[str, _ActQuant] = {}
    onnx_of: dict[str, str] = {}  # IR tensor -> ONNX tensor holding its quantized value
    for ir, lst in live.items():
        first = lst[0][1]
        for _, aq in lst[1:]:
            if not aq.same_format(first):
                raise QuantImportError(
                    f"{label}: quantizers {first.node!r} and {aq.node!r} quantize the same "
                    f"tensor differently (scale {first.scale:g} vs {aq.scale:g}, {first.bits} vs "
                    f"{aq.bits} bits); ilmpq keeps one format per tensor")
        tq[ir] = first
        onnx_of[ir] = lst[-1][0]

    # activation width
    conv_outs = [n.output for n in fm.nodes if isinstance(n, FConv)]
    widths = sorted({tq[t].bits for t in conv_outs if t in tq})
    if act_bits is None:
        if len(widths) > 1:
            bad = next(tq[t] for t in conv_outs if t in tq and tq[t].bits != widths[0])
            raise QuantImportError(
                f"{label}: node {bad.node!r}: activation quantizers of {widths} bits in one "
                f"model; ilmpq's conv/FC outputs all have the same width (act_bits)")
        if widths:
            act_bits = widths[0]
        else:
            act_bits = spec.act_bits
    if act_bits not in SUPPORTED_ACT_BITS:
        bad = next((tq[t] for t in conv_outs if t in tq and tq[t].bits == act_bits), None)
        where = f"node {bad.node!r}: " if bad else ""
        raise QuantImportError(f"{label}: {where}activations of {act_bits} bits are not "
                               f"supported by the hardware; activation widths are "
                               f"{SUPPORTED_ACT_BITS}")
    if spec.act_bits != act_bits:
        spec = dataclasses.replace(spec, act_bits=act_bits)
    for t in conv_outs:
        if t in tq and tq[t].bits != act_bits:
            raise QuantImportError(
                f"{label}: node {tq[t].node!r}: activation quantizer of {tq[t].bits} bits, but "
                f"the target has act_bits = {act_bits}; ilmpq's activation widths are one per "
                f"model (choose --act-bits {tq[t].bits} or retrain)")

    # -- the model executed, if images are given (for float conv outputs and the report) ------
    in_ir = fm.input
    in_q = tq.get(in_ir)
    if in_q is not None:
        if in_q.signed or in_q.bits > 8 or in_q.narrow:
            raise QuantImportError(
                f"{label}: node {in_q.node!r}: the input quantizer must be unsigned, at most 8 "
                f"bits and not narrow (ilmpq reads uint8 input codes), not "
                f"{'signed' if in_q.signed else 'unsigned'} {in_q.bits}-bit")
    in_scale = in_q.scale if in_q is not None else 1.0
    notes = []
    if in_q is None:
        notes.append("the model has no input quantizer: its input is taken as integer codes "
                     "0..255 with scale 1 (feed raw pixels)")
    else:
        notes.append(f"input: the codes of quantizer {in_q.node!r} (scale {in_q.scale:.6g}); "
                     f"feed round(x / {in_q.scale:.6g}) as uint8")

    values = None
    codes = None
    if images is not None:
        codes = np.asarray(images)
        if codes.ndim != 4 or tuple(codes.shape[1:]) != tuple(fm.input_shape):
            want = ", ".join(map(str, fm.input_shape))
            raise QuantImportError(f"images must have shape (N, {want}), not {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() > 255:
            raise QuantImportError("images must be integer input codes in [0, 255]")
        codes = codes[:max_images].astype(np.uint8)
        runner = runner or ("reference" if "qonnx" in rw.kinds else "onnxruntime")
        want = sorted(set(onnx_of.values()) |
                      {_onnx_name_of(imp, n.output) for n in fm.nodes})
        values = _execute(model, label, codes * in_scale, [w for w in want if w], runner)

    # -- layers ----------------------------------------------------------------------------
    tensors: dict[str, TensorSpec] = {
        in_ir: TensorSpec(in_ir, tuple(fm.shapes[in_ir]), 8, False, float(in_scale))}
    layers = []
    reports = []
    model_scale: dict[str, float | None] = {in_ir: in_scale}
    for n in fm.nodes:
        shape = tuple(int(v) for v in fm.shapes[n.output])
        if not isinstance(n, FConv):
            src = tensors[n.input]
            tensors[n.output] = TensorSpec(n.output, shape, src.bits, src.signed, src.scale)
            model_scale[n.output] = src.scale
            q = tq.get(n.output)
            if isinstance(n, FMaxPool):
                layers.append(MaxPoolLayer(n.name, n.input, n.output, tuple(n.kernel),
                                           tuple(n.stride), tuple(n.padding)))
            elif isinstance(n, FGlobalAvgPool):
                layers.append(GlobalAvgPoolLayer(n.name, n.input, n.output))
            else:
                layers.append(FlattenLayer(n.name, n.input, n.output))
            if q is not None and (q.scale != src.scale or q.bits != src.bits or
                                  q.signed != src.signed):
                raise QuantImportError(
                    f"{label}: node {q.node!r} re-quantizes the output of {n.kind} "
                    f"{n.name!r} to scale {q.scale:g} ({q.bits}-bit), but ilmpq's pooling and "
                    f"flattening keep the input's format (scale {src.scale:g}, {src.bits}-bit); "
                    f"share the input's quantizer or remove this one")
            if isinstance(n, FGlobalAvgPool) and (q is None or q.rounding != _ILMPQ_ROUNDING):
                how = ("the model rounds the average " + q.rounding) if q is not None \
                    else "the model keeps the average in float"
                notes.append(f"{n.name}: global average pooling rounds half up to the input's "
                             f"grid ({how}): up to 1 LSB {'at ties ' if q is not None else ''}"
                             f"into the next layer")
            continue

        lab, op, w_name, axis = rw.layer_nodes.get(n.name, (n.name, "?", None, 0))
        where = f"{label}: node {lab!r} ({op}, layer {n.name!r})"
        x_spec = tensors[n.input]
        if x_spec.signed:
            src = tq.get(n.input)
            raise QuantImportError(
                f"{where}: reads the signed tensor {n.input!r}"
                f"{f' (quantizer {src.node!r})' if src else ''}; conv and FC inputs must be "
                f"unsigned (quantize after the ReLU with signed=0)")
        wq = rw.weights.get(w_name)
        if wq is None:
            raise QuantImportError(
                f"{where}: the weights are not quantized (no Quant / DequantizeLinear on them); "
                f"import needs every conv/FC quantized, or use 'ilmpq quantize' on a float model")
        if not wq.signed:
            raise QuantImportError(f"{where}: unsigned weights (quantizer {wq.node!r}); ilmpq's "
                                   f"weights are signed and symmetric")
        m = n.out_channels
        q_rows = np.moveaxis(wq.q, axis, 0).reshape(m, -1) if wq.q.ndim > 1 else \
            wq.q.reshape(m, -1)
        b_rows = np.moveaxis(wq.bits, axis, 0).reshape(m, -1) if wq.bits.ndim > 1 else \
            wq.bits.reshape(m, -1)
        s_rows = np.moveaxis(wq.scale, axis, 0).reshape(m, -1) if wq.scale.ndim > 1 else \
            wq.scale.reshape(m, -1)
        if np.any(s_rows != s_rows[:, :1]) or np.any(b_rows != b_rows[:, :1]):
            raise QuantImportError(
                f"{where}: the weight quantizer {wq.node!r} has scales or bit widths that vary "
                f"within an output channel; ilmpq needs them per tensor or per output channel")
        bits = b_rows[:, 0]
        if np.any(bits > 8):
            row = int(np.flatnonzero(bits > 8)[0])
            raise QuantImportError(
                f"{where}: weight quantizer {wq.node!r} gives row {row} {int(bits[row])} bits; "
                f"the hardware has 4-bit and 8-bit rows only")
        if np.any(q_rows < -127):
            row = int(np.argwhere(q_rows < -127)[0][0])
            raise QuantImportError(
                f"{where}: weight quantizer {wq.node!r} produces -128 in row {row}; ilmpq's "
                f"8-bit rows are symmetric [-127, 127]: quantize with narrow=1 "
                f"(Brevitas narrow_range=True)")
        maxq = np.abs(q_rows).max(axis=1) if q_rows.shape[1] else np.zeros(m, np.int64)
        w_eff = n.weight.reshape(m, -1)
        amax = np.abs(w_eff).max(axis=1) if w_eff.shape[1] else np.zeros(m)
        r_row = np.where(maxq > 0, amax / np.maximum(maxq, 1), s_rows[:, 0])
        if np.any(r_row <= 0):
            row = int(np.flatnonzero(r_row <= 0)[0])
            raise QuantImportError(f"{where}: row {row} is scaled to zero by a folded "
                                   f"BatchNormalization; it cannot be represented")
        qf = np.rint(w_eff / r_row[:, None])
        if not np.allclose(qf * r_row[:, None], w_eff, rtol=1e-9, atol=0) or \
                np.any(np.abs(qf).max(axis=1, initial=0) != maxq):
            raise QuantImportError(f"{where}: the weights after folding are not the quantizer's "
                                   f"integers times a per-row scale (an op between the "
                                   f"quantizer and the layer changes them)")
        qf = qf.astype(np.int64)
        need_hi = maxq > Precision.LO.wmax
        declared_hi = bits > Precision.LO.bits
        n_hi = hi_row_count(r, m)
        reasons = []
        if int(need_hi.sum()) > n_hi:
            raise QuantImportError(
                f"{where}: {int(need_hi.sum())} of {m} rows need 8 bits (share "
                f"{Fraction(int(need_hi.sum()), m)}), but the configuration's share R = {r} "
                f"allows ceil(R*M) = {n_hi} 8-bit rows; retrain with exactly {n_hi} 8-bit rows in "
                f"this layer or target a configuration with a larger R")
        order = sorted(range(m), key=lambda i: (not need_hi[i], not declared_hi[i], -maxq[i], i))
        prec = np.full(m, Precision.LO, dtype=np.uint8)
        prec[order[:n_hi]] = Precision.HI
        promoted = int(np.sum((prec == Precision.HI) & ~declared_hi))
        demoted = int(np.sum((prec == Precision.LO) & declared_hi))
        if promoted:
            reasons.append(f"{promoted} row(s) quantized with <= 4 bits run on 8-bit lanes to "
                           f"fill the share ceil(R*M) = {n_hi} (exact)")
        if demoted:
            reasons.append(f"{demoted} row(s) declared 8-bit have integers within [-7, 7] and "
                           f"run on 4-bit lanes (exact); the model's share was "
                           f"{int(declared_hi.sum())}/{m}, the configuration's {n_hi}/{m}")

        # output format
        out_q = tq.get(n.output)
        relu = bool(n.relu)
        if out_q is None:
            if values is None:
                raise QuantImportError(
                    f"{where}: the output {n.output!r} is not quantized (the model keeps it in "
                    f"float); add an output quantizer (Brevitas: QuantIdentity or an "
                    f"output_quant), or give images so ilmpq can choose its scale")
            v = values[_onnx_name_of(imp, n.output)]
            signed = not relu
            qmax = (1 << (act_bits - 1)) - 1 if signed else (1 << act_bits) - 1
            vmax = float(np.max(np.abs(v))) if v.size else 0.0
            s_out = vmax / qmax if vmax > 0 else 1.0
            rounding = "-"
            reasons.append(f"the model leaves the output in float: ilmpq quantizes it to "
                           f"{act_bits}-bit {'signed' if signed else 'unsigned'} with scale "
                           f"{s_out:.6g} (largest magnitude on the images)")
            out_narrow = False
            model_scale[n.output] = None
        else:
            if out_q.signed and relu:
                raise QuantImportError(
                    f"{label}: node {out_q.node!r}: a signed quantizer on the output of a ReLU "
                    f"layer ({n.name!r}); quantize ReLU outputs unsigned (signed=0)")
            if not out_q.signed and not relu:
                relu = True  # an unsigned quantizer clamps at 0: the ReLU of the layer
            signed = out_q.signed
            s_out = out_q.scale
            rounding = out_q.rounding
            out_narrow = out_q.narrow
            model_scale[n.output] = s_out
        tensors[n.output] = TensorSpec(n.output, shape, act_bits, signed, float(s_out))

        s_in = x_spec.scale
        b_acc = n.bias / (r_row * s_in)
        bias = np.rint(b_acc)
        # an integer bias stored as a float32 product (Int32Bias: int * s_w * s_in) comes back
        # within float32 precision of the integer: that is the integer the model means
        b_off = np.abs(b_acc - bias)
        b_off = np.where(b_off <= _BIAS_REL_TOL * np.maximum(1.0, np.abs(b_acc)), 0.0, b_off)
        bias_err = float(np.max(b_off)) if m else 0.0
        lo, hi = spec.acc_range
        if np.any(bias < lo) or np.any(bias > hi):
            row = int(np.flatnonzero((bias < lo) | (bias > hi))[0])
            raise QuantImportError(f"{where}: row {row}: the bias is {bias[row]:.6g} in "
                                   f"accumulator units, outside the {spec.acc_bits}-bit "
                                   f"accumulator range")
        m_real = r_row * s_in / s_out
        mr_real = None
        if n.residual is not None:
            res_spec = tensors[n.residual]
            mr_real = np.full(m, res_spec.scale / s_out)
        try:
            mult, shift, res_mult = choose_requant(m_real, spec, mr_real=mr_real, layer=n.name)
        except QuantizeError as e:
            raise QuantImportError(f"{where}: the scales cannot be represented: {e}") from None
        layer = ConvLayer(
            name=n.name, input=n.input, output=n.output, weight=qf.reshape(n.weight.shape)
            .astype(np.int8), precision=prec, bias=bias.astype(np.int64), mult=mult,
            shift=shift, stride=tuple(n.stride), padding=tuple(n.padding), relu=relu,
            residual=n.residual, res_mult=res_mult, w_scale=r_row.astype(np.float64))
        try:
            bound_acc = ops.check_no_overflow(layer, x_spec.bits, spec)
        except ops.AccumulatorOverflow as e:
            raise QuantImportError(f"{where}: {e}") from None
        layers.append(layer)

        # exactness: the pre-rounding difference, output LSB
        approx = mult / 2.0 ** shift
        mult_err_abs = np.abs(m_real - approx)
        delta = bound_acc * mult_err_abs + b_off * m_real
        mult_err = float(np.max(mult_err_abs / np.where(m_real > 0, m_real, 1))) if m else 0.0
        if mr_real is not None:
            res_max = (1 << tensors[n.residual].bits) - 1 if not tensors[n.residual].signed \
                else 1 << (tensors[n.residual].bits - 1)
            mr_err = np.abs(mr_real - res_mult / 2.0 ** shift)
            delta = delta + res_max * mr_err
            mult_err = max(mult_err, float(np.max(mr_err / mr_real)) if m else 0.0)
        inter = absorbed.get(n.output, [])
        for aq in inter:
            delta = delta + 0.5 * aq.scale / s_out
        d = float(np.max(delta)) if m else 0.0
        if bias_err > 0:
            reasons.append(f"bias is not an integer in accumulator units (up to {bias_err:.3g} "
                           f"from one): rounded")
        if float(np.max(mult_err_abs)) > 0 or (mr_real is not None and mult_err > 0):
            reasons.append(f"the real multiplier s_w*s_in/s_out is approximated by M*2^-S "
                           f"(relative error up to {mult_err:.2g})")
        for aq in inter:
            reasons.append(f"quantizer {aq.node!r} (scale {aq.scale:.6g}) inside the fused layer "
                           f"rounds once more in the model (the bound assumes it does not "
                           f"saturate: ilmpq does not clamp there)")
        ties = rounding != _ILMPQ_ROUNDING
        if rounding != "-" and ties:
            reasons.append(f"the model rounds {rounding} (ilmpq: half up): ties may differ")
        if out_narrow:
            reasons.append("narrow output range in the model: the top/bottom code may differ")
        if rounding == "-":
            bound = None
        elif d == 0 and not ties:
            bound = 1 if out_narrow else 0
        else:
            bound = int(math.floor(1 + d)) + (1 if out_narrow else 0)
        exact = bound == 0
        reports.append(ImportLayerReport(
            name=n.name, node=lab, rows=m, hi_rows=int(np.sum(prec == Precision.HI)),
            lo_rows=int(np.sum(prec == Precision.LO)), declared_hi=int(declared_hi.sum()),
            weight_bits=sorted(int(b) for b in np.unique(bits)), bias_err=bias_err,
            mult_err=mult_err, rounding=rounding, intermediate=len(inter), delta=d,
            bound_lsb=-1 if bound is None else bound, exact=exact, reasons=reasons))

    meta = {"source": label, "imported": dialect, "ratio": f"{r.numerator}/{r.denominator}",
            "onnx_names": {ir: onnx_of.get(ir) or _onnx_name_of(imp, ir)
                           for ir in tensors if ir != in_ir},
            "input_onnx": fmodel.graph.input[0].name if fmodel.graph.input else None,
            "input_scale": float(in_scale), "output_rank": int(fm.output_rank),
            # the scale of each tensor in the model (None: the model keeps it in float)
            "model_scale": {t: (None if v is None else float(v)) for t, v in model_scale.items()}}
    qm = QModel(tensors=tensors, layers=layers, input=in_ir, output=fm.output, ratio=float(r),
                act_bits=act_bits, meta=meta, spec=spec)
    try:
        qm.validate(spec)
    except ModelFormatError as e:
        raise QuantImportError(f"{label}: the imported model is not valid for the hardware: "
                               f"{e}") from None
    rep = ImportReport(source=label, dialect=dialect, ratio=meta["ratio"], act_bits=act_bits,
                       layers=reports, notes=notes)
    if values is not None:
        _measure(qm, rep, values, codes, model_scale, runner)
    qm.meta["import_report"] = rep.to_dict()
    return qm


def _onnx_name_of(imp: _TrackingImporter, ir: str) -> str | None:
    """The last ONNX tensor name that maps to the IR tensor ``ir``."""
    name = None
    for onnx_name, a in imp.acts.items():
        if a.ir == ir:
            name = onnx_name
    return name


# -- executing the original model ---------------------------------------------------------------

def reference_evaluator(model):
    """An ``onnx.reference.ReferenceEvaluator`` for ``model`` that also executes the QONNX
    ``Quant`` / ``BipolarQuant`` operators (in every QONNX domain) per the QONNX spec: scale,
    add the zero point, clamp to the ``signed`` / ``narrow`` range of ``bitwidth``, round by
    ``rounding_mode``, subtract the zero point, rescale. Computation is in float64."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    def quant(self, x, scale, zeropt, bitwidth, signed=None, narrow=None, rounding_mode=None):
        signed = 1 if signed is None else signed
        narrow = 0 if narrow is None else narrow
        mode = "ROUND" if rounding_mode is None else rounding_mode
        mode = mode.decode() if isinstance(mode, bytes) else mode
        x64 = np.asarray(x, dtype=np.float64)
        s = np.asarray(scale, dtype=np.float64)
        z = np.asarray(zeropt, dtype=np.float64)
        b = np.asarray(bitwidth, dtype=np.float64)
        y = x64 / s + z
        lo = np.where(signed, -(2.0 ** (b - 1)) + narrow, 0.0)
        hi = np.where(signed, 2.0 ** (b - 1) - 1, 2.0 ** b - 1 - narrow)
        y = qonnx_round(np.clip(y, lo, hi), mode)
        return (((y - z) * s).astype(np.asarray(x).dtype),)

    def bipolar(self, x, scale):
        s = np.asarray(scale, dtype=np.float64)
        return ((np.where(np.asarray(x) >= 0, 1.0, -1.0) * s).astype(np.asarray(x).dtype),)

    new_ops = []
    for dom in QONNX_DOMAINS:
        tag = dom.replace(".", "_")
        for name, fn in (("Quant", quant), ("IntQuant", quant), ("BipolarQuant", bipolar)):
            cls = type(name, (OpRun,), {"op_domain": dom, "_run": fn})
            cls.__qualname__ = f"{name}_{tag}"
            new_ops.append(cls)
    # one class name per op: ReferenceEvaluator keys custom ops by (domain, name)
    return ReferenceEvaluator(model, new_ops=new_ops)


def _with_outputs(model, names):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                                     None))
    return m


def _execute(model, label, x_float: np.ndarray, names, runner: str) -> dict:
    """Run the original model on ``x_float`` and return the requested tensors (float64)."""
    import onnx

    inp = [i for i in model.graph.input
           if i.name not in {t.name for t in model.graph.initializer}][0]
    elem = inp.type.tensor_type.elem_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    x = x_float.astype(dtype)
    names = list(dict.fromkeys(names))
    m = _with_outputs(model, names)
    if runner == "reference":
        out = reference_evaluator(m).run(names, {inp.name: x})
    elif runner == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            raise QuantImportError("runner 'onnxruntime' needs the onnxruntime package "
                                   "(pip install onnxruntime)") from None
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        try:
            sess = ort.InferenceSession(m.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise QuantImportError(f"{label}: onnxruntime cannot load the model: "
                                   f"{str(e).splitlines()[0]}") from None
        out = sess.run(names, {inp.name: x})
    else:
        raise QuantImportError(f"runner {runner!r} is not one of 'reference', 'onnxruntime'")
    return {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, out)}


def _measure(qm: QModel, rep: ImportReport, values: dict, codes: np.ndarray,
             model_scale: dict, runner: str) -> None:
    from . import reference

    onnx_names = qm.meta["onnx_names"]
    n_img = codes.shape[0]
    rep.n_images = int(n_img)
    rep.runner = {"reference": "onnx.reference", "onnxruntime": "onnxruntime"}[runner]

    def model_int(t):
        v = values[onnx_names[t]]
        s = model_scale.get(t)
        if s is None:
            return None
        return np.rint(v / s).astype(np.int64).reshape((n_img,) + tuple(qm.tensors[t].shape))

    ints = {t: model_int(t) for t in qm.tensors if t != qm.input and onnx_names.get(t) in values}
    ints[qm.input] = codes.astype(np.int64)
    net = reference.run_batch(qm, codes)
    by = {lr.name: lr for lr in rep.layers}
    for layer in qm.conv_layers:
        lr = by[layer.name]
        mo = ints.get(layer.output)
        if mo is None:
            continue
        x = ints.get(layer.input)
        res = None if layer.residual is None else ints.get(layer.residual)
        if x is None or (layer.residual is not None and res is None):
            continue
        in_t = qm.tensors[layer.input]
        lo, hi = in_t.range
        outs = []
        for i in range(n_img):
            tens = {layer.input: np.clip(x[i], lo, hi)}
            if res is not None:
                rt = qm.tensors[layer.residual]
                tens[layer.residual] = np.clip(res[i], *rt.range)
            outs.append(reference.run_layer(qm, layer, tens).astype(np.int64))
        d = np.abs(np.stack(outs) - mo)
        lr.measured_local = int(d.max()) if d.size else 0
        lr.measured_local_frac = float(np.mean(d > 0)) if d.size else 0.0
        lr.measured_net = int(np.abs(net[layer.output].astype(np.int64) - mo).max())
    out_t = qm.output
    mv = values.get(onnx_names.get(out_t))
    if mv is not None:
        mv = mv.reshape(n_img, -1)
        g = net[out_t].astype(np.int64).reshape(n_img, -1)
        rep.output_agreement = float(np.mean(np.argmax(mv, axis=1) == np.argmax(g, axis=1)))


def compare_with_model(qmodel: QModel, source, images, *,
                       runner: str | None = None) -> ImportReport:
    """Re-measure an imported model against its original ONNX model on other ``images`` (input
    codes ``(N, C, H, W)``); returns the report with the new measurements."""
    model, label = _parse_model(source)
    rep = import_report(qmodel)
    codes = np.asarray(images).astype(np.uint8)
    runner = runner or ("reference" if "qonnx" in rep.dialect else "onnxruntime")
    names = [v for v in qmodel.meta["onnx_names"].values() if v]
    values = _execute(model, label, codes * qmodel.meta["input_scale"], names, runner)
    model_scale = qmodel.meta["model_scale"]
    _measure(qmodel, rep, values, codes, model_scale, runner)
    return rep
