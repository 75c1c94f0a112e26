"""Import a float CNN from ONNX into the float graph IR (:mod:`ilmpq.golden.float_model`).

Supported ONNX operators (ai.onnx opsets 7 up to the newest the installed ``onnx`` knows; others
are rejected) and how they map:

=========================  ==================================================================
ONNX                       float IR
=========================  ==================================================================
Conv                       ``FConv`` (any ``group`` dividing the channels: grouped and
                           depthwise too; ``dilations = 1``; ``auto_pad`` NOTSET or VALID —
                           SAME_UPPER/SAME_LOWER become explicit pads in canonicalization —;
                           weights and bias initializers or Constants)
BatchNormalization         folded into the preceding Conv/Gemm/MatMul (inference mode);
                           canonicalization folds others where affine-foldable (after a
                           residual Add of two convs, before a Gemm/MatMul or unpadded Conv)
Relu                       the ``relu`` flag of the producing Conv/Gemm, also through a MaxPool
                           (``relu(maxpool(conv)) = maxpool(relu(conv))``), a no-op on a
                           tensor that is already non-negative, else a pointwise function
Clip                       ``Clip(0, c)`` (ReLU6): the ReLU flag plus ``clip_max = c`` of the
                           producing layer (the output scale keeps ``qmax`` at or below ``c``,
                           so the integer clamp is the clip); ``Clip(0, inf)`` is a ReLU; any
                           other clip a pointwise function
Add                        with a constant: bias of the producing Conv/Gemm/MatMul (scalar or
                           one per channel), or a pointwise ``x + c`` of a scalar ``c``; with
                           two activations: a residual fused into the Conv that feeds it,
                           ``y = relu(conv(x) + skip)``
Sub, Mul, Div, Pow         with a scalar constant, or both operands functions of one tensor:
                           a pointwise function; ``Mul`` of two tensors: ``FMul`` (equal
                           shapes, or gating by one value per channel ``(C, 1, 1)``)
Sigmoid, HardSigmoid,      ``FPointwise``: one function of one tensor (chains of these and of
HardSwish, Tanh,           the scalar arithmetic above compose into one); ``PRelu`` with one
LeakyRelu, PRelu, Erf,     slope for every element
Elu, Softplus, Neg
MaxPool                    ``FMaxPool`` (``ceil_mode`` 0 or 1, no dilation, no indices output)
AveragePool                ``FAvgPool`` (padding, ``ceil_mode``, ``count_include_pad``), or
                           ``FGlobalAvgPool`` when the kernel covers the whole input and
                           there is no padding (a global pool)
GlobalAveragePool,         ``FGlobalAvgPool`` (``ReduceMean`` only over axes ``[2, 3]``)
ReduceMean
GlobalMaxPool              ``FMaxPool`` whose window is the whole input
Gemm, MatMul               ``FConv`` with a ``1 x 1`` kernel on a ``(K, 1, 1)`` tensor: Gemm
                           ``alpha``, ``beta``, ``transB``, bias C a scalar, ``(M,)`` or
                           ``(1, M)``; ``transA = 1`` when A is the column ``(K, 1)`` of one
                           image (below); MatMul with a 2-D ``(K, M)`` constant
Flatten, Reshape,          ``FFlatten`` to ``(N, C*H*W)`` (a no-op on a flat tensor): Flatten
Squeeze                    with any axis whose preceding per-image dimensions are 1 (axis 0
                           unless the model declares a static batch above 1), Reshape to
                           ``(N, K)``, Squeeze of axes ``[2, 3]`` of ``(N, C, 1, 1)``
Unsqueeze                  axes ``[2, 3]`` of ``(N, K)``: the ``(N, K, 1, 1)`` view
Flatten, Reshape,          the column ``(K, 1)`` of one image — Flatten with axis = the rank,
Transpose                  Reshape to ``(K, 1)``/``(-1, 1)``, Transpose ``[1, 0]`` of
                           ``(1, K)`` — read only by a Gemm with ``transA = 1``
Reshape, Transpose         the channel shuffle ``Reshape(N, g, C/g, H, W) -> Transpose(0, 2,
                           1, 3, 4) -> Reshape(N, C, H, W)``: ``FPermute``
Concat, Slice, Split       ``FConcat`` over the channels; ``FSlice`` over channels, height,
                           width with positive steps; Split over the channels (one slice each)
Pad                        a zero constant padding of H and W before a Conv (or a MaxPool of a
                           non-negative tensor): folded into its padding
Identity, Dropout          no-ops (inference)
Softmax, LogSoftmax,       only at the graph output, over the classes: the output head,
Sigmoid                    recorded in ``meta["output_head"]`` and applied on the host
                           (:mod:`ilmpq.golden.heads`); it does not change the ranking
Constant                   a constant operand
=========================  ==================================================================

The graph must have one float input ``(N, C, H, W)`` with static ``C, H, W`` (the batch may be
symbolic; ``input_shape`` fixes symbolic ``C, H, W``) and one output. Before import the graph is
canonicalized (:mod:`ilmpq.golden.canonicalize`: constants and shape arithmetic folded, no-ops
and dead nodes removed). Anything else raises :class:`OnnxImportError` naming the node, the op
and what is supported — every unsupported op of the model in one message. Files that are not
ONNX, truncated files and models with missing initializers raise it too.

Input normalization: the ONNX metadata properties ``ilmpq.input_mean`` and ``ilmpq.input_std``
(JSON numbers or lists, one per channel) become :attr:`FloatModel.input_mean` / ``input_std``;
the caller may override them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import IlmpqValueError
from .model import padding_error
from .safeio import InputFileError, loads_json, open_input, read_input, resolve_confined
from .float_model import (FAvgPool, FConcat, FConv, FFlatten, FGlobalAvgPool, FloatModel,
                          FloatModelError, FMaxPool, FMul, FPermute, FPointwise, FSlice)
from .ops import pool_output_hw

__all__ = ["OnnxImportError", "load_onnx", "SUPPORTED_OPS", "MIN_OPSET", "META_INPUT_MEAN",
           "META_INPUT_STD"]

META_INPUT_MEAN = "ilmpq.input_mean"
META_INPUT_STD = "ilmpq.input_std"

#: Oldest ai.onnx opset read (older ones have other attribute semantics, e.g. BatchNormalization's
#: ``spatial``/``consumed_inputs``); the newest is the one the installed ``onnx`` package knows.
MIN_OPSET = 7

SUPPORTED_OPS = ("Conv", "BatchNormalization", "Relu", "Clip", "Add", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Flatten", "Reshape",
                 "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant", "Softmax",
                 "LogSoftmax", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu",
                 "PRelu", "Erf", "Elu", "Softplus", "Neg", "Sub", "Mul", "Div", "Pow", "Concat",
                 "Slice", "Split", "Transpose", "ReduceMean", "Pad")


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


#: Elementwise functions of one tensor (fused into one lookup table, :class:`FPointwise`).
_UNARY = {
    "Sigmoid": lambda a: (lambda x: 1.0 / (1.0 + np.exp(-x))),
    "HardSigmoid": lambda a: (lambda x, al=float(a.get("alpha", 0.2)), be=float(
        a.get("beta", 0.5)): np.clip(al * x + be, 0.0, 1.0)),
    "HardSwish": lambda a: (lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)),
    "Tanh": lambda a: np.tanh,
    "LeakyRelu": lambda a: (lambda x, al=float(a.get("alpha", 0.01)): np.where(x >= 0, x,
                                                                              al * x)),
    "Erf": lambda a: _erf,
    "Elu": lambda a: (lambda x, al=float(a.get("alpha", 1.0)): np.where(
        x >= 0, x, al * (np.exp(np.minimum(x, 0)) - 1))),
    "Softplus": lambda a: (lambda x: np.logaddexp(0.0, x)),
    "Neg": lambda a: np.negative,
    "Relu": lambda a: (lambda x: np.maximum(x, 0.0)),
}

_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
           "Pow": np.power}


class OnnxImportError(IlmpqValueError):
    """The ONNX model cannot be imported; the message names the node, op and what is allowed."""


def _packed_types():
    import onnx
    tp = onnx.TensorProto
    return {getattr(tp, n) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
            if hasattr(tp, n)}


class _LazyPacked:
    def __contains__(self, code):
        return code in _packed_types()


_PACKED_TYPES = _LazyPacked()  # sub-byte types: their byte count is not n * itemsize


def _is_projection(conv: FConv) -> bool:
    """A 1x1 unpadded, ungrouped conv: the projection shortcut of a residual block."""
    return conv.kernel == (1, 1) and not any(conv.padding) and conv.groups == 1


@dataclass
class _Act:
    """An activation value during import: its IR tensor name and per-image shape."""

    ir: str
    shape: tuple[int, int, int]
    rank2: bool  # the ONNX tensor is (N, K) rather than (N, C, H, W)
    nonneg: bool  # every value is >= 0 (after ReLU, pooling or flattening of such a tensor)


def _parse_model(source):
    import onnx
    from google.protobuf.message import DecodeError

    label = "<ModelProto>"
    if isinstance(source, onnx.ModelProto):
        _inline_external_data(source, None, label)   # refuses external data, changes nothing
        _check_model(source, label)
        return source, label
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), "<bytes>"
        base_dir = None
    else:
        path = Path(os.fspath(source))
        label = str(path)
        # a regular file only (a FIFO or /dev/zero is refused, never read); FileNotFoundError /
        # IsADirectoryError propagate
        data = read_input(path, "ONNX model")
        base_dir = path.parent
    if not data:
        raise OnnxImportError(f"{label}: the file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise OnnxImportError(
            f"{label}: not a valid ONNX model (protobuf decoding failed: {e}); the file may be "
            f"truncated or not an ONNX file") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise OnnxImportError(
            f"{label}: not an ONNX model (no IR version, graph or opset); the file may be "
            f"truncated or of another format")
    _inline_external_data(model, base_dir, label)
    _check_model(model, label)
    return model, label


def _all_tensors(model):
    """Every ``TensorProto`` of the model with a description: initializers, sparse
    initializers, node attributes (``t``, ``tensors``, sparse tensors) of every node, in every
    subgraph and in every function. Only these can point to external data."""
    def from_graph(g, where):
        for t in g.initializer:
            yield t, f"initializer {t.name!r}"
        for st in g.sparse_initializer:
            yield st.values, f"sparse initializer {st.values.name!r}"
            yield st.indices, f"sparse initializer {st.values.name!r} (indices)"
        yield from from_nodes(g.node, where)

    def from_nodes(nodes, where):
        for i, node in enumerate(nodes):
            nname = f"{where}node {node.name or f'{node.op_type}_{i}'!r} ({node.op_type})"
            for a in node.attribute:
                ctx = f"{nname} attribute {a.name!r}"
                if a.HasField("t"):
                    yield a.t, ctx
                for t in a.tensors:
                    yield t, ctx
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values, ctx
                    yield a.sparse_tensor.indices, ctx
                for st in a.sparse_tensors:
                    yield st.values, ctx
                    yield st.indices, ctx
                if a.HasField("g"):
                    yield from from_graph(a.g, f"{ctx} subgraph: ")
                for sub in a.graphs:
                    yield from from_graph(sub, f"{ctx} subgraph: ")

    yield from from_graph(model.graph, "")
    for f in model.functions:
        yield from from_nodes(f.node, f"function {f.name!r} ")


def _inline_external_data(model, base_dir, label):
    """Read every tensor's external data into the model, confined to the model's directory.

    ONNX lets any tensor -- an initializer, a ``Constant`` node's ``value``, any tensor attribute,
    in subgraphs and functions too -- keep its bytes in a file named by a relative path. Each
    such path must name a regular file inside the directory of the model file (no absolute path,
    no ``..``, no symlink leading out, no FIFO or device), and the declared ``offset``/``length``
    must lie inside that file and match the tensor's shape; the bytes are then copied into
    ``raw_data`` so that nothing later (onnx's checker, ``numpy_helper.to_array``, which would
    resolve the path against the current directory) ever opens a file. A model given as bytes or
    a ``ModelProto`` has no directory: external data is refused.
    """
    import onnx
    from onnx import helper

    tp = onnx.TensorProto
    for t, ctx in _all_tensors(model):
        if t.data_location != tp.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        where = f"{label}: {ctx}"
        if base_dir is None:
            raise OnnxImportError(
                f"{where} keeps its data in an external file ({info.get('location', '?')!r}); "
                f"external data is only read when the model is loaded from a file path (from "
                f"files inside the model's directory)")
        try:
            full = resolve_confined(base_dir, info.get("location", ""), where, "external data")
            with open_input(full, "external tensor data", nofollow=True) as f:
                size = os.fstat(f.fileno()).st_size
                try:
                    offset = int(info.get("offset", "0"))
                    length = int(info["length"]) if "length" in info else size - offset
                except ValueError:
                    raise OnnxImportError(
                        f"{where}: external data offset {info.get('offset')!r} / length "
                        f"{info.get('length')!r} are not integers") from None
                if offset < 0 or length < 0 or offset + length > size:
                    raise OnnxImportError(
                        f"{where}: external data bytes [{offset}, {offset + length}) are not "
                        f"inside {info['location']!r} ({size} bytes)")
                if t.data_type == tp.STRING or any(d < 0 for d in t.dims):
                    raise OnnxImportError(f"{where}: external data of a "
                                          f"{_dtype_name(t.data_type)} tensor with dims "
                                          f"{list(t.dims)} is not supported")
                try:
                    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
                except (KeyError, TypeError, ValueError):
                    itemsize = None
                n = int(np.prod(t.dims, dtype=object)) if len(t.dims) else 1
                if itemsize is not None and t.data_type not in _PACKED_TYPES and \
                        n * itemsize != length:
                    raise OnnxImportError(
                        f"{where}: external data holds {length} bytes but the "
                        f"{_dtype_name(t.data_type)} tensor of dims {list(t.dims)} needs "
                        f"{n * itemsize}")
                f.seek(offset)
                raw = f.read(length)
        except OSError as e:
            raise OnnxImportError(f"{where}: cannot read external data "
                                  f"{info.get('location', '')!r}: {e.strerror or e}") from None
        except InputFileError as e:
            msg = str(e)
            raise OnnxImportError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        t.raw_data = raw
        del t.external_data[:]
        t.data_location = tp.DEFAULT


def _check_model(model, label):
    import onnx

    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not MIN_OPSET <= imp.version <= newest:
            raise OnnxImportError(
                f"{label}: ai.onnx opset {imp.version} is not supported: ilmpq reads opsets "
                f"{MIN_OPSET} to {newest} (the newest the installed onnx {onnx.__version__} "
                f"knows); re-export the model with an opset in that range")

    # undefined operands first: the checker reports them less clearly
    known = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    for idx, node in enumerate(model.graph.node):
        for t in node.input:
            if t and t not in known:
                nname = node.name or f"{node.op_type}_{idx}"
                raise OnnxImportError(
                    f"{label}: node {nname!r} ({node.op_type}) reads {t!r}, which is neither an "
                    f"initializer, a graph input nor the output of an earlier node (a missing "
                    f"initializer, or nodes out of topological order)")
        known.update(o for o in node.output if o)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(
            f"{label}: not a valid ONNX model: onnx.checker reports: {first}") from None


def _dtype_name(code: int) -> str:
    import onnx

    dt = onnx.TensorProto.DataType
    return dt.Name(code) if code in dt.values() else f"{code} (not an ONNX data type)"


def _sanitize(name: str) -> str:
    if isinstance(name, bytes):     # protobuf hands out invalid UTF-8 strings as bytes
        name = name.decode("utf-8", "replace")
    out = "".join(ch if (ch.isalnum() or ch in "_.-") else "_" for ch in name).strip("_.")
    return out or "t"


class _Importer:
    def __init__(self, model, label: str, batch=None):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.nh = numpy_helper
        self.model = model
        self.label = label
        self.g = model.graph
        self.opset = 1
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = imp.version
        self.consts: dict[str, np.ndarray] = {}
        self.acts: dict[str, _Act] = {}
        self.nodes: list = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.ir_names: set[str] = set()
        self.node_names: set[str] = set()
        self.consumers: dict[str, int] = {}
        self.batch = batch  # the static batch the model declared (None: symbolic or unknown)
        self.cols: dict[str, _Act] = {}  # column views (K, 1) of a row activation (1, K)
        self.alias_src: dict[str, str] = {}  # ONNX output -> ONNX input it is a view of

    # -- helpers ---------------------------------------------------------------------------------

    def err(self, node, idx, msg):
        return OnnxImportError(f"{self.label}: node {self._nname(node, idx)!r} "
                               f"({node.op_type}): {msg}")

    @staticmethod
    def _nname(node, idx):
        return node.name or f"{node.op_type}_{idx}"

    def new_tensor(self, onnx_name: str) -> str:
        base = _sanitize(onnx_name)
        name, k = base, 1
        while name in self.ir_names:
            k += 1
            name = f"{base}_{k}"
        self.ir_names.add(name)
        return name

    def new_node_name(self, node, idx) -> str:
        base = _sanitize(self._nname(node, idx))
        name, k = base, 1
        while name in self.node_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        return name

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node, idx, name, what, *, numeric=True):
        if name in self.consts:
            v = self.consts[name]
            if numeric and not (np.issubdtype(v.dtype, np.integer)
                                or np.issubdtype(v.dtype, np.floating)
                                or v.dtype == np.bool_):
                kind = "object (STRING)" if v.dtype.kind in "OUS" else str(v.dtype)
                raise self.err(node, idx, f"{what} {name!r} has element type {kind}; a numeric "
                                          f"(float or integer) tensor is required")
            if numeric and np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
                raise self.err(node, idx, f"{what} {name!r} contains NaN or infinite values")
            return v
        if name in self.acts:
            raise self.err(node, idx, f"{what} {name!r} must be a constant (an initializer or "
                                      f"a Constant node), not a computed tensor")
        raise self.err(node, idx, f"{what} {name!r} is missing: it is neither an initializer, "
                                  f"the graph input nor the output of an earlier node")

    def act(self, node, idx, name, what="input"):
        if name in self.padded:
            raise self.err(node, idx, f"{what} {name!r} is the output of a Pad; a zero Pad is "
                                      f"supported only directly before a Conv (and a MaxPool of "
                                      f"a non-negative tensor), into whose padding it is folded")
        if name in self.pw and name not in self.acts:
            self._materialize(name)
        if name in self.acts:
            return self.acts[name]
        if name in self.cols:
            raise self.err(node, idx, f"{what} {name!r} is a column (K, 1) (a flattened image "
                                      f"transposed); only a Gemm with transA=1 (or a Transpose "
                                      f"back to (1, K)) reads it")
        if name in self.consts:
            raise self.err(node, idx, f"{what} {name!r} is a constant; only computed tensors "
                                      f"(activations) are supported there")
        raise self.err(node, idx, f"{what} {name!r} is missing: it is neither an initializer, "
                                  f"the graph input nor the output of an earlier node")

    def alias(self, out_name: str, a: _Act):
        self.acts[out_name] = a

    # -- pointwise fusion (issue 20): elementwise ops whose only non-constant input is one tensor
    #    compose into one function of that tensor, emitted once where something else reads it

    def _pw_of(self, name):
        """``(root, fn, description)`` of a tensor: a pending pointwise expression, or the
        identity of an activation."""
        if name in self.pw:
            return self.pw[name]
        return name, None, name

    def _pw_set(self, node, idx, out, root, fn, desc):
        if root not in self.acts:
            self.act(node, idx, root)
        self.pw[out] = (root, fn, desc)

    def _materialize(self, name):
        root, fn, desc = self.pw[name]
        x = self.acts[root]
        out = self.new_tensor(name)
        base = _sanitize(f"pw_{name}")
        nname, k = base, 1
        while nname in self.node_names:
            k += 1
            nname = f"{base}_{k}"
        self.node_names.add(nname)
        self.emit(FPointwise(nname, x.ir, out, fn, desc), x.shape)
        self.acts[name] = _Act(out, x.shape, x.rank2, False)

    def _unary(self, node, idx, fn, label):
        self._check_out(node, idx)
        name = node.input[0]
        if name in self.consts:
            self.consts[node.output[0]] = np.asarray(fn(self.const(node, idx, name, "input")
                                                        .astype(np.float64)))
            return
        root, f, desc = self._pw_of(name)
        g = fn if f is None else (lambda x, f=f, fn=fn: fn(f(x)))
        self._pw_set(node, idx, node.output[0], root, g, f"{label}({desc})")

    def _elementwise(self, node, idx):
        """Sigmoid, HardSwish, ... (and Relu / Clip not fused into a layer): one pointwise
        function."""
        a = self.attrs(node)
        self._unary(node, idx, _UNARY[node.op_type](a), node.op_type)

    op_HardSigmoid = op_HardSwish = op_Tanh = op_LeakyRelu = op_Erf = op_Elu = op_Softplus = \
        op_Neg = _elementwise

    def op_PRelu(self, node, idx):
        """PReLU with one slope for every element: a pointwise function (a leaky ReLU)."""
        if len(node.input) != 2:
            raise self.err(node, idx, "PRelu must have 2 inputs")
        if node.input[0] in self.consts:
            raise self.err(node, idx, f"input {node.input[0]!r} is a constant; only computed "
                                      f"tensors (activations) are supported there")
        s = np.asarray(self.const(node, idx, node.input[1], "slope"), np.float64)
        if s.size != 1:
            raise self.err(node, idx, f"slope of shape {list(s.shape)} is not supported; only "
                                      f"one slope for all channels (a pointwise function); a "
                                      f"slope per channel is not")
        sv = float(s.reshape(-1)[0])
        self._unary(node, idx, lambda x, sv=sv: np.where(x >= 0, x, sv * x), f"PRelu[{sv:g}]")

    def _binary(self, node, idx):
        """Add/Sub/Mul/Div/Pow: constants folded; with a scalar constant, or both operands
        functions of the same tensor, a pointwise function; else Add is a residual and Mul a
        gating product (two tensors)."""
        if len(node.input) != 2:
            raise self.err(node, idx, f"{node.op_type} must have 2 inputs")
        op = _BINARY[node.op_type]
        n0, n1 = node.input
        if n0 in self.consts and n1 in self.consts:
            self.consts[node.output[0]] = op(
                self.const(node, idx, n0, "operand").astype(np.float64),
                self.const(node, idx, n1, "operand").astype(np.float64))
            return
        for cname, aname in ((n0, n1), (n1, n0)):
            if cname in self.consts:
                c = self.const(node, idx, cname, "constant operand").astype(np.float64)
                if c.size != 1:
                    break
                cv = float(c.reshape(-1)[0])
                root, f, desc = self._pw_of(aname)
                f = f or (lambda x: x)
                if cname == n1:
                    g = (lambda x, f=f, cv=cv: op(f(x), cv))
                    d = f"{node.op_type}({desc}, {cv:g})"
                else:
                    g = (lambda x, f=f, cv=cv: op(cv, f(x)))
                    d = f"{node.op_type}({cv:g}, {desc})"
                self._pw_set(node, idx, node.output[0], root, g, d)
                return
        else:
            r0, f0, d0 = self._pw_of(n0)
            r1, f1, d1 = self._pw_of(n1)
            if r0 == r1:
                f0 = f0 or (lambda x: x)
                f1 = f1 or (lambda x: x)
                self._pw_set(node, idx, node.output[0], r0,
                             lambda x, f0=f0, f1=f1: op(f0(x), f1(x)),
                             f"{node.op_type}({d0}, {d1})")
                return
            if node.op_type == "Mul":
                self._gate(node, idx)
                return
        raise self.err(node, idx, f"{node.op_type} of two different tensors (or with a "
                                  f"non-scalar constant) is not supported; supported: a "
                                  f"scalar constant operand, both operands functions of one "
                                  f"tensor (fused into one lookup table), residual Add, "
                                  f"gating Mul")

    op_Sub = op_Div = op_Pow = _binary

    def op_Mul(self, node, idx):
        self._binary(node, idx)

    def _gate(self, node, idx):
        a0 = self.act(node, idx, node.input[0])
        a1 = self.act(node, idx, node.input[1])
        if a0.rank2 != a1.rank2:
            raise self.err(node, idx, "Mul of a flattened and an unflattened tensor")
        x, g = (a0, a1) if a1.shape[1:] == (1, 1) and a0.shape[1:] != (1, 1) else (a1, a0) \
            if a0.shape[1:] == (1, 1) and a1.shape[1:] != (1, 1) else (a0, a1)
        if g.shape[0] != x.shape[0] or g.shape[1:] not in ((1, 1), x.shape[1:]):
            raise self.err(node, idx, f"Mul of tensors of shapes {a0.shape} and {a1.shape}: "
                                      f"only equal shapes or gating by one value per channel "
                                      f"(C, 1, 1) are supported")
        out = self.new_tensor(node.output[0])
        self.emit(FMul(self.new_node_name(node, idx), x.ir, g.ir, out), x.shape)
        self.acts[node.output[0]] = _Act(out, x.shape, x.rank2, x.nonneg and g.nonneg)

    def op_Concat(self, node, idx):
        a = self.attrs(node)
        xs = [self.act(node, idx, t) for t in node.input]
        rank = 2 if xs[0].rank2 else 4
        axis = int(a.get("axis", 1))
        if axis not in (1, 1 - rank) or any(x.rank2 != xs[0].rank2 for x in xs):
            raise self.err(node, idx, f"Concat over axis {axis} is not supported; only over the "
                                      f"channels (axis 1)")
        if any(x.shape[1:] != xs[0].shape[1:] for x in xs):
            raise self.err(node, idx, f"Concat inputs {[x.shape for x in xs]} differ in H, W")
        out = self.new_tensor(node.output[0])
        shape = (sum(x.shape[0] for x in xs),) + xs[0].shape[1:]
        self.emit(FConcat(self.new_node_name(node, idx), tuple(x.ir for x in xs), out), shape)
        self.acts[node.output[0]] = _Act(out, shape, xs[0].rank2, all(x.nonneg for x in xs))

    def op_Slice(self, node, idx):
        x = self.act(node, idx, node.input[0])
        a = self.attrs(node)
        if self.opset < 10:
            starts, ends = list(a.get("starts", [])), list(a.get("ends", []))
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            def vec(i, what, default=None):
                if len(node.input) > i and node.input[i]:
                    return [int(v) for v in np.asarray(
                        self.const(node, idx, node.input[i], what)).reshape(-1)]
                return default
            starts, ends = vec(1, "starts"), vec(2, "ends")
            axes = vec(3, "axes", list(range(len(starts))))
            steps = vec(4, "steps", [1] * len(starts))
        rank = 2 if x.rank2 else 4
        full = (1,) + (x.shape[:1] if x.rank2 else x.shape)
        b, e, st = [0, 0, 0], list(x.shape), [1, 1, 1]
        for ax, s0, e0, sp in zip(axes, starts, ends, steps):
            ax = ax + rank if ax < 0 else ax
            if ax == 0 or ax >= rank or sp < 1:
                raise self.err(node, idx, f"Slice on axis {ax} with step {sp} is not supported; "
                                          f"only positive steps over channels, height, width")
            n = full[ax]
            s0 = max(0, min(n, s0 + n if s0 < 0 else s0))
            e0 = max(0, min(n, e0 + n if e0 < 0 else e0))
            if e0 <= s0:
                raise self.err(node, idx, f"Slice [{s0}:{e0}] on axis {ax} is empty")
            b[ax - 1], e[ax - 1], st[ax - 1] = s0, e0, sp
        shape = tuple(len(range(p, q, r)) for p, q, r in zip(b, e, st))
        out = self.new_tensor(node.output[0])
        self.emit(FSlice(self.new_node_name(node, idx), x.ir, out, tuple(b), tuple(e),
                         tuple(st)), shape)
        self.acts[node.output[0]] = _Act(out, shape, x.rank2, x.nonneg)

    def op_Split(self, node, idx):
        """Split over the channels: one slice per output."""
        a = self.attrs(node)
        x = self.act(node, idx, node.input[0])
        rank = 2 if x.rank2 else 4
        axis = int(a.get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if axis != 1:
            raise self.err(node, idx, f"Split over axis {axis} is not supported; only over the "
                                      f"channels (axis 1)")
        c = x.shape[0]
        if len(node.input) > 1 and node.input[1]:
            sizes = [int(v) for v in np.asarray(self.const(node, idx, node.input[1], "split"))
                     .reshape(-1)]
        elif "split" in a:
            sizes = [int(v) for v in a["split"]]
        else:
            k = len(node.output)
            sizes = [-(-c // k)] * (k - 1)
            sizes.append(c - sum(sizes))
        if len(sizes) != len(node.output) or sum(sizes) != c or min(sizes) < 1:
            raise self.err(node, idx, f"split sizes {sizes} must be positive and add up to the "
                                      f"{c} channels, one per output")
        c0 = 0
        for k, (out_name, n) in enumerate(zip(node.output, sizes)):
            shape = (n,) + x.shape[1:]
            out = self.new_tensor(out_name)
            self.emit(FSlice(f"{self.new_node_name(node, idx)}_{k}", x.ir, out, (c0, 0, 0),
                             (c0 + n,) + x.shape[1:], (1, 1, 1)), shape)
            self.acts[out_name] = _Act(out, shape, x.rank2, x.nonneg)
            c0 += n

    def op_Transpose(self, node, idx):
        """The channel shuffle ``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) ->
        Reshape(N, C, H, W)``, and the transpose of a flattened image ``(1, K)`` to the column
        ``(K, 1)`` (one image at a time) read by a Gemm with ``transA = 1``, and back."""
        a = self.attrs(node)
        name = node.input[0]
        perm = list(a.get("perm", []))
        if name in self.cols and perm in ([], [1, 0]):
            self.acts[node.output[0]] = self.cols[name]     # (K, 1) -> (1, K)
            return
        if name not in self.view5 and perm in ([], [1, 0]):
            x = self.act(node, idx, name)
            if x.rank2 and self.batch in (None, 1):
                self.cols[node.output[0]] = x               # (1, K) -> (K, 1)
                return
            if x.rank2:
                raise self.err(node, idx, f"Transpose of the (N, K) tensor {name!r} mixes the "
                                          f"{self.batch} images of the model's static batch; "
                                          f"ilmpq runs one image at a time (export with batch 1 "
                                          f"or a symbolic batch)")
        if name not in self.view5 or perm != [0, 2, 1, 3, 4]:
            raise self.err(node, idx, "Transpose is supported only as the channel shuffle "
                                      "Reshape(N, g, C/g, H, W) -> Transpose(perm=[0, 2, 1, 3, "
                                      "4]) -> Reshape(N, C, H, W)")
        src, g, cg = self.view5[name]
        self.view5t[node.output[0]] = (src, g, cg)

    def op_Pad(self, node, idx):
        """A constant-zero Pad of H and W: folded into the padding of the Conv (or MaxPool of a
        non-negative tensor) that reads it."""
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if self.opset < 11:
            pads, value = list(a.get("pads", [])), float(a.get("value", 0.0))
        else:
            pads = [int(v) for v in np.asarray(
                self.const(node, idx, node.input[1], "pads")).reshape(-1)]
            value = 0.0
            if len(node.input) > 2 and node.input[2]:
                value = float(np.asarray(self.const(node, idx, node.input[2], "constant_value"))
                              .reshape(-1)[0])
            if len(node.input) > 3 and node.input[3]:
                raise self.err(node, idx, "Pad with an axes input is not supported")
        if mode != "constant" or value != 0.0 or len(pads) != 8 or min(pads) < 0 or \
                any(pads[i] for i in (0, 1, 4, 5)):
            raise self.err(node, idx, f"Pad mode={mode}, value={value:g}, pads={pads} is not "
                                      f"supported; only a zero constant padding of H and W "
                                      f"(pads [0, 0, t, l, 0, 0, b, r]) before a Conv")
        src = node.input[0]
        if src in self.padded:
            inner, p = self.padded[src]
        else:
            self.act(node, idx, src)
            inner, p = src, (0, 0, 0, 0)
        self.padded[node.output[0]] = (inner, (p[0] + pads[2], p[1] + pads[3],
                                               p[2] + pads[6], p[3] + pads[7]))

    def _unpad(self, node, idx, nonneg_only=False):
        """The input of a Conv/MaxPool and the padding a Pad before it adds."""
        name = node.input[0]
        if name not in self.padded:
            return self.act(node, idx, name), (0, 0, 0, 0)
        src, p = self.padded[name]
        x = self.act(node, idx, src)
        if nonneg_only and not x.nonneg:
            raise self.err(node, idx, "a zero Pad before a MaxPool is folded only when the "
                                      "pooled tensor is non-negative (after a ReLU)")
        return x, p

    def op_ReduceMean(self, node, idx):
        a = self.attrs(node)
        x = self.act(node, idx, node.input[0])
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.asarray(self.const(node, idx, node.input[1], "axes"))
                    .reshape(-1)]
        else:
            axes = list(a.get("axes", []))
        axes = sorted(v + 4 if v < 0 else v for v in axes)
        if x.rank2 or axes != [2, 3]:
            raise self.err(node, idx, f"ReduceMean over axes {axes} is not supported; only the "
                                      f"spatial mean (axes [2, 3], a global average pool)")
        self._gap(node, idx, x)
        if not a.get("keepdims", 1):
            g = self.acts[node.output[0]]
            self.acts[node.output[0]] = _Act(g.ir, g.shape, True, g.nonneg)

    def _axes(self, node, idx, a, rank):
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in np.asarray(self.const(node, idx, node.input[1], "axes"))
                    .reshape(-1)]
        elif "axes" in a:
            axes = [int(v) for v in a["axes"]]
        else:
            axes = None
        return None if axes is None else sorted(v + rank if v < 0 else v for v in axes)

    def op_Squeeze(self, node, idx):
        """``Squeeze(axes=[2, 3])`` of an ``(N, C, 1, 1)`` tensor: a flatten to ``(N, C)``."""
        a = self.attrs(node)
        x = self.act(node, idx, node.input[0])
        axes = self._axes(node, idx, a, 4)
        if x.rank2 or x.shape[1:] != (1, 1) or axes != [2, 3]:
            raise self.err(node, idx, f"Squeeze of axes {axes} of a tensor of per-image shape "
                                      f"{x.shape} is not supported; only axes [2, 3] of an "
                                      f"(N, C, 1, 1) tensor (a flatten after a global pool)")
        self._flatten(node, idx, x)

    def op_Unsqueeze(self, node, idx):
        """``Unsqueeze(axes=[2, 3])`` of an ``(N, K)`` tensor: the ``(N, K, 1, 1)`` view."""
        a = self.attrs(node)
        x = self.act(node, idx, node.input[0])
        axes = self._axes(node, idx, a, 4)
        if not x.rank2 or axes != [2, 3]:
            raise self.err(node, idx, f"Unsqueeze of axes {axes} is not supported; only axes "
                                      f"[2, 3] of an (N, K) tensor (back to (N, K, 1, 1))")
        self.alias(node.output[0], _Act(x.ir, x.shape, False, x.nonneg))

    def op_GlobalMaxPool(self, node, idx):
        """A max pool whose window is the whole input."""
        x = self.act(node, idx, node.input[0])
        if x.rank2:
            raise self.err(node, idx, "GlobalMaxPool on a flattened (2-D) tensor")
        c, h, w = x.shape
        out = self.new_tensor(node.output[0])
        self.emit(FMaxPool(self.new_node_name(node, idx), x.ir, out, (h, w), (1, 1),
                           (0, 0, 0, 0)), (c, 1, 1))
        self.acts[node.output[0]] = _Act(out, (c, 1, 1), False, x.nonneg)

    def fusable_conv(self, onnx_name: str, a: _Act, *, allow_residual=False):
        """The FConv producing ``a`` if it may absorb a following op, else ``None``."""
        prod = self.producer.get(a.ir)
        if not isinstance(prod, FConv) or prod.relu:
            return None
        if prod.residual is not None and not allow_residual:
            return None
        return prod if self._sole_reader(onnx_name) else None

    def _sole_reader(self, onnx_name: str) -> bool:
        """Whether one op reads ``onnx_name`` and nothing else reads it through a view
        (Identity, Dropout, Unsqueeze, a transpose back from a column ...): a layer output also
        read elsewhere cannot take a ReLU, clip or BN meant for one of its views."""
        name, seen = onnx_name, set()
        while name is not None and name not in seen:
            if self.consumers.get(name, 0) != 1:
                return False
            seen.add(name)
            name = self.alias_src.get(name)
        return True

    def rename_output(self, conv: FConv, onnx_out: str, a: _Act, *, nonneg=None):
        """Give ``conv`` the IR name of ``onnx_out`` (the fused op's output)."""
        old = conv.output
        new = self.new_tensor(onnx_out)
        del self.producer[old]
        self.shapes[new] = self.shapes.pop(old)
        self.ir_names.discard(old)
        conv.output = new
        self.producer[new] = conv
        self.acts[onnx_out] = _Act(new, a.shape, a.rank2, a.nonneg if nonneg is None else nonneg)

    def emit(self, n, shape):
        self.nodes.append(n)
        self.producer[n.output] = n
        self.shapes[n.output] = tuple(int(v) for v in shape)

    # -- driver ---------------------------------------------------------------------------------

    def run(self) -> FloatModel:
        g = self.g
        nh = self.nh
        self.producer: dict = {}
        self.pool_src: dict[str, str] = {}  # max pool output (IR) -> its ONNX input name
        self.pw: dict[str, tuple] = {}       # ONNX tensor -> pending pointwise (root, fn, what)
        self.view5: dict[str, tuple] = {}    # channel-shuffle views (source ONNX name, g, C/g)
        self.view5t: dict[str, tuple] = {}
        self.padded: dict[str, tuple] = {}   # Pad output -> (its input, (top, left, bottom, right))
        for init in g.initializer:
            try:
                self.consts[init.name] = nh.to_array(init)
            except Exception as e:  # noqa: BLE001 - onnx raises several types here
                raise OnnxImportError(
                    f"{self.label}: initializer {init.name!r} cannot be read ({e})") from None
            arr = self.consts[init.name]
            if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
                raise OnnxImportError(f"{self.label}: initializer {init.name!r} contains NaN "
                                      f"or infinite values")
        real_inputs = [i for i in g.input if i.name not in self.consts]
        if len(real_inputs) != 1:
            raise OnnxImportError(
                f"{self.label}: the graph must have exactly one (non-initializer) input, it has "
                f"{len(real_inputs)}: {[i.name for i in real_inputs]}")
        inp = real_inputs[0]
        shape = self.input_shape(inp)
        in_ir = self.new_tensor(inp.name)
        self.in_ir = in_ir
        self.shapes[in_ir] = shape
        self.acts[inp.name] = _Act(in_ir, shape, False, False)

        for n in g.node:
            for t in n.input:
                if t:
                    self.consumers[t] = self.consumers.get(t, 0) + 1
        for o in g.output:
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1

        # every unsupported op of the model at once, not only the first
        missing: dict[str, list[str]] = {}
        for idx, node in enumerate(g.node):
            if node.domain not in ("", "ai.onnx"):
                key = f"{node.domain}.{node.op_type}"
            elif getattr(self, f"op_{node.op_type}", None) is None:
                key = node.op_type
            else:
                continue
            missing.setdefault(key, []).append(self._nname(node, idx))
        if sum(len(v) for v in missing.values()) > 1:
            parts = []
            for op, names in missing.items():
                shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3
                                                                  else "")
                parts.append(f"{op!r} ({len(names)} node{'s' if len(names) > 1 else ''}: "
                             f"{shown})")
            raise OnnxImportError(
                f"{self.label}: {len(missing)} operator type{'s' if len(missing) > 1 else ''} "
                f"of this model {'are' if len(missing) > 1 else 'is'} not supported: "
                f"{'; '.join(parts)}; supported ops: {', '.join(SUPPORTED_OPS)} (the default "
                f"ONNX domain)")

        for idx, node in enumerate(g.node):
            if node.domain not in ("", "ai.onnx"):
                raise self.err(node, idx, f"operator domain {node.domain!r} is not supported; "
                                          f"supported: the default ONNX domain with ops "
                                          f"{', '.join(SUPPORTED_OPS)}")
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise self.err(node, idx, f"operator {node.op_type!r} is not supported; "
                                          f"supported ops: {', '.join(SUPPORTED_OPS)}")
            handler(node, idx)
            self._record_views(node)

        if len(g.output) != 1:
            raise OnnxImportError(f"{self.label}: the graph must have exactly one output, it has "
                                  f"{len(g.output)}: {[o.name for o in g.output]}")
        out_name = g.output[0].name
        if out_name in self.pw and out_name not in self.acts:
            self._materialize(out_name)
        if out_name in self.cols:
            raise OnnxImportError(f"{self.label}: the graph output {out_name!r} is a column "
                                  f"(K, 1) of one image; the output must be (N, K) or "
                                  f"(N, C, H, W) (a column is read only by a Gemm with "
                                  f"transA=1)")
        if out_name not in self.acts:
            raise OnnxImportError(f"{self.label}: the graph output {out_name!r} is not computed "
                                  f"from the input (a constant output is not supported)")
        out = self.acts[out_name]
        if out.ir == in_ir:
            raise OnnxImportError(f"{self.label}: the graph output is the input; the model "
                                  f"computes nothing")
        # drop nodes that do not contribute to the output (dead branches)
        needed, live = {out.ir}, []
        for n in reversed(self.nodes):
            if n.output in needed:
                live.append(n)
                needed.update(n.inputs())
        live.reverse()
        shapes = {t: s for t, s in self.shapes.items() if t in needed}
        meta = {"source": self.label, "producer": self.model.producer_name,
                "opset": self.opset, "output_head": getattr(self, "head", None),
                "metadata": {p.key: p.value for p in self.model.metadata_props}}
        try:
            return FloatModel(input=in_ir, output=out.ir, nodes=live, shapes=shapes,
                              output_rank=2 if out.rank2 else 4, meta=meta)
        except FloatModelError as e:
            raise OnnxImportError(f"{self.label}: {e}") from None

    def _record_views(self, node):
        """Note each output of ``node`` that is the same IR tensor as its first input (a view:
        Identity, Dropout, Unsqueeze, a flat tensor's Flatten, a column and back ...)."""
        if not node.input or not node.input[0]:
            return
        src = self.acts.get(node.input[0]) or self.cols.get(node.input[0])
        if src is None:
            return
        for o in node.output:
            a = self.acts.get(o) or self.cols.get(o)
            if o and a is not None and a.ir == src.ir:
                self.alias_src[o] = node.input[0]

    def input_shape(self, inp):
        onnx = self.onnx
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise OnnxImportError(f"{self.label}: graph input {inp.name!r} is not a tensor")
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                onnx.TensorProto.FLOAT16):
            raise OnnxImportError(
                f"{self.label}: graph input {inp.name!r} has element type "
                f"{_dtype_name(tt.elem_type)}; a float input is required")
        if not tt.HasField("shape"):
            raise OnnxImportError(
                f"{self.label}: graph input {inp.name!r} has no shape (dynamic shapes are not "
                f"supported); give it a static (N, C, H, W) shape")
        dims = tt.shape.dim
        if len(dims) != 4:
            raise OnnxImportError(
                f"{self.label}: graph input {inp.name!r} has rank {len(dims)}; an image batch "
                f"(N, C, H, W) of rank 4 is required")
        shape = []
        for axis, d in zip(("C", "H", "W"), dims[1:]):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                sym = d.dim_param or "?"
                raise OnnxImportError(
                    f"{self.label}: graph input {inp.name!r} has a dynamic {axis} dimension "
                    f"({sym!r}); give the image size with --input-shape C,H,W (Python: "
                    f"load_onnx(..., input_shape=(C, H, W))); only the batch dimension may "
                    f"stay symbolic")
            shape.append(int(d.dim_value))
        return tuple(shape)

    # -- ops --------------------------------------------------------------------------------------

    def _check_out(self, node, idx, allowed=1):
        extra = [o for o in node.output[allowed:] if o and self.consumers.get(o, 0)]
        if extra:
            raise self.err(node, idx, f"its extra output(s) {extra} are used; only the first "
                                      f"output is supported")

    def _pads(self, node, idx, a, kernel):
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto not in ("NOTSET", "VALID"):
            raise self.err(node, idx, f"auto_pad={auto} is not supported; use explicit pads "
                                      f"(auto_pad NOTSET) or VALID")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if auto == "VALID":
            pads = [0, 0, 0, 0]
        if len(pads) != 4:
            raise self.err(node, idx, f"pads {pads} must have 4 values (2-D only)")
        if min(pads) < 0:
            raise self.err(node, idx, f"negative pads {pads} are not supported")
        strides = list(a.get("strides", [1, 1]))
        if len(strides) != 2 or min(strides) < 1:
            raise self.err(node, idx, f"strides {strides} must be 2 positive values")
        dil = list(a.get("dilations", [1, 1]))
        if any(d != 1 for d in dil):
            raise self.err(node, idx, f"dilations={dil} are not supported; only dilations 1")
        # ONNX pads are [top, left, bottom, right] for 2-D, the IR's order
        return tuple(int(p) for p in pads), tuple(int(s) for s in strides)

    def op_Constant(self, node, idx):
        a = self.attrs(node)
        if "value" not in a:
            raise self.err(node, idx, f"only the 'value' attribute is supported, got "
                                      f"{sorted(a)}")
        self.consts[node.output[0]] = self.nh.to_array(a["value"])

    def _head(self, node, idx):
        """Softmax / LogSoftmax / Sigmoid at the graph output: recorded, run on the host."""
        x = self.act(node, idx, node.input[0])
        outs = {o.name for o in self.g.output}
        if node.output[0] not in outs or self.consumers.get(node.output[0], 0) != 1:
            raise self.err(node, idx, f"{node.op_type} is supported only as the output head "
                                      f"(applied to the logits at the graph output, on the host)")
        if node.op_type != "Sigmoid":
            a = self.attrs(node)
            axis = int(a.get("axis", -1 if self.opset >= 13 else 1))
            rank = 2 if x.rank2 else 4
            if x.rank2:
                ok = axis in (1, -1)
            else:  # (N, K, 1, 1): the classes are axis 1
                ok = x.shape[1:] == (1, 1) and (axis in (1, -3) or (
                    self.opset < 13 and axis == 1))
            if not ok:
                raise self.err(node, idx, f"{node.op_type} over axis {axis} of a rank-{rank} "
                                          f"tensor is not supported; only over the classes "
                                          f"(axis 1 of (N, K))")
        self.head = {"op": node.op_type}
        self.alias(node.output[0], x)

    op_Softmax = op_LogSoftmax = _head

    def op_Sigmoid(self, node, idx):
        """At the graph output: the output head (host). Elsewhere: a pointwise function."""
        if node.output[0] in {o.name for o in self.g.output} and \
                node.input[0] not in self.pw and node.input[0] in self.acts and \
                self.acts[node.input[0]].ir != self.in_ir:   # of the input: the whole model
            self._head(node, idx)
        else:
            self._elementwise(node, idx)

    def op_Identity(self, node, idx):
        name = node.input[0]
        if name in self.consts:
            self.consts[node.output[0]] = self.consts[name]
        else:
            self.alias(node.output[0], self.act(node, idx, name))

    def op_Dropout(self, node, idx):
        a = self.attrs(node)
        if a.get("training_mode"):
            raise self.err(node, idx, "training_mode is not supported (inference only)")
        if len(node.input) > 2 and node.input[2]:
            tm = self.const(node, idx, node.input[2], "training_mode")
            if bool(np.asarray(tm).reshape(-1)[0]):
                raise self.err(node, idx, "training_mode=1 is not supported (inference only)")
        self._check_out(node, idx)
        self.alias(node.output[0], self.act(node, idx, node.input[0]))

    def op_Conv(self, node, idx):
        a = self.attrs(node)
        x, extra = self._unpad(node, idx)
        if x.rank2:
            raise self.err(node, idx, "Conv on a flattened (2-D) tensor is not supported")
        w = self.const(node, idx, node.input[1], "weight").astype(np.float64)
        if w.ndim != 4:
            raise self.err(node, idx, f"weight of rank {w.ndim}; only 2-D convolution "
                                      f"(rank-4 weights) is supported")
        if 0 in w.shape:
            raise self.err(node, idx, f"weight of shape {list(w.shape)} is empty; every "
                                      f"dimension (output channels, input channels, kernel) "
                                      f"must be at least 1")
        group = int(a.get("group", 1))
        if group < 1 or w.shape[0] % group:
            raise self.err(node, idx, f"group={group} must be a positive divisor of the "
                                      f"{w.shape[0]} output channels")
        ks = list(a.get("kernel_shape", w.shape[2:]))
        if tuple(ks) != tuple(w.shape[2:]):
            raise self.err(node, idx, f"kernel_shape {ks} does not match the weight shape "
                                      f"{list(w.shape)}")
        if w.shape[1] * group != x.shape[0]:
            raise self.err(node, idx, f"weight has {w.shape[1]} input channels"
                                      + (f" per group x group={group}" if group > 1 else "")
                                      + f", the input tensor has {x.shape[0]}")
        pads, strides = self._pads(node, idx, a, ks)
        pads = tuple(p + e for p, e in zip(pads, extra))
        why = padding_error(ks, pads)
        if why:
            raise self.err(node, idx, why)
        if len(node.input) > 2 and node.input[2]:
            b = self.const(node, idx, node.input[2], "bias").astype(np.float64).reshape(-1)
            if b.shape != (w.shape[0],):
                raise self.err(node, idx, f"bias has {b.size} values, expected {w.shape[0]}")
        else:
            b = np.zeros(w.shape[0])
        c, h, wd = x.shape
        ho = (h + pads[0] + pads[2] - ks[0]) // strides[0] + 1
        wo = (wd + pads[1] + pads[3] - ks[1]) // strides[1] + 1
        if ho < 1 or wo < 1:
            raise self.err(node, idx, f"the kernel {ks} does not fit the padded {h}x{wd} input")
        out = self.new_tensor(node.output[0])
        n = FConv(self.new_node_name(node, idx), x.ir, out, w.copy(), b.copy(),
                  stride=strides, padding=pads, groups=group)
        self.emit(n, (w.shape[0], ho, wo))
        self.acts[node.output[0]] = _Act(out, (w.shape[0], ho, wo), False, False)

    def _fc(self, node, idx, x: _Act, w_mk: np.ndarray, b: np.ndarray):
        """Emit an FC layer: ``w_mk`` is (M, K)."""
        if not x.rank2:
            raise self.err(node, idx, f"the input must be a 2-D (N, K) tensor (after Flatten), "
                                      f"not (N, {', '.join(map(str, x.shape))})")
        k = x.shape[0]
        if 0 in w_mk.shape:
            raise self.err(node, idx, f"weight of shape {list(w_mk.shape)} (outputs, inputs) "
                                      f"is empty; both must be at least 1")
        if w_mk.shape[1] != k:
            raise self.err(node, idx, f"weight expects {w_mk.shape[1]} inputs, the input "
                                      f"has {k}")
        m = w_mk.shape[0]
        out = self.new_tensor(node.output[0])
        n = FConv(self.new_node_name(node, idx), x.ir, out,
                  w_mk.reshape(m, k, 1, 1).astype(np.float64).copy(),
                  b.astype(np.float64).copy())
        self.emit(n, (m, 1, 1))
        self.acts[node.output[0]] = _Act(out, (m, 1, 1), True, False)

    def op_Gemm(self, node, idx):
        a = self.attrs(node)
        if a.get("transA", 0):
            # A' = A^T: a column (K, 1) of one image (Flatten(axis=rank), Transpose or Reshape
            # to (K, 1)) gives the row (1, K) of an ordinary FC layer
            if node.input[0] not in self.cols:
                self.act(node, idx, node.input[0])   # names a missing or constant operand
                raise self.err(node, idx, "transA=1 needs the activation as a column (K, 1) of "
                                          "one image (a Flatten with axis = its rank, a "
                                          "Transpose or a Reshape to (K, 1) of the flattened "
                                          "image); with an (N, K) activation A^T B mixes the "
                                          "images of the batch, not an FC layer")
            x = self.cols[node.input[0]]
        else:
            x = self.act(node, idx, node.input[0])
        w = self.const(node, idx, node.input[1], "weight B").astype(np.float64)
        if w.ndim != 2:
            raise self.err(node, idx, f"weight B must be 2-D, not shape {list(w.shape)}")
        if not a.get("transB", 0):
            w = w.T
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise self.err(node, idx, f"alpha = {alpha} and beta = {beta} must be finite")
        if alpha == 0.0:
            raise self.err(node, idx, "alpha = 0 makes the output a constant (beta * C) that "
                                      "does not depend on the input; such a layer is not "
                                      "supported (alpha must be nonzero)")
        w = w * alpha
        m = w.shape[0]
        if len(node.input) > 2 and node.input[2]:
            c = self.const(node, idx, node.input[2], "bias C").astype(np.float64)
            c = c * beta
            if c.size == 1:
                b = np.full(m, float(c.reshape(-1)[0]))
            elif c.shape in ((m,), (1, m)):
                b = c.reshape(m)
            else:
                raise self.err(node, idx, f"bias C of shape {list(c.shape)} is not supported; "
                                          f"it must be a scalar, ({m},) or (1, {m}) (one bias "
                                          f"per output; a row per image of the batch is not "
                                          f"a bias of one image)")
        else:
            b = np.zeros(m)
        self._fc(node, idx, x, w, b)

    def op_MatMul(self, node, idx):
        x = self.act(node, idx, node.input[0])
        w = self.const(node, idx, node.input[1], "right operand").astype(np.float64)
        if w.ndim != 2:
            raise self.err(node, idx, f"the constant operand must be 2-D (K, M), not shape "
                                      f"{list(w.shape)}: only an FC layer on the flattened "
                                      f"image (N, K) @ (K, M) is supported, not a batched "
                                      f"matrix product over the last axes")
        self._fc(node, idx, x, w.T, np.zeros(w.shape[1]))

    def op_BatchNormalization(self, node, idx):
        a = self.attrs(node)
        if a.get("training_mode", 0):
            raise self.err(node, idx, "training_mode=1 is not supported (inference only)")
        self._check_out(node, idx)
        x = self.act(node, idx, node.input[0])
        conv = self.fusable_conv(node.input[0], x)
        if conv is None:
            raise self.err(node, idx, "BatchNormalization is only supported directly after a "
                                      "Conv, Gemm or MatMul whose output feeds nothing else "
                                      "(it is folded into that layer)")
        gamma, beta, mean, var = (self.const(node, idx, node.input[i], what)
                                  .astype(np.float64).reshape(-1)
                                  for i, what in ((1, "scale"), (2, "B"), (3, "mean"),
                                                  (4, "var")))
        m = conv.out_channels
        for v, what in ((gamma, "scale"), (beta, "B"), (mean, "mean"), (var, "var")):
            if v.shape != (m,):
                raise self.err(node, idx, f"{what} has {v.size} values, expected {m}")
        eps = float(a.get("epsilon", 1e-5))
        if not np.all(var + eps > 0):
            raise self.err(node, idx, f"var + epsilon must be positive for every channel "
                                      f"(smallest {float(np.min(var + eps)):g})")
        s = gamma / np.sqrt(var + eps)
        conv.weight = conv.weight * s[:, None, None, None]
        conv.bias = (conv.bias - mean) * s + beta
        self.rename_output(conv, node.output[0], x)

    def op_Relu(self, node, idx):
        if node.input[0] in self.pw:
            self._relu_pointwise(node, idx)
            return
        x = self.act(node, idx, node.input[0])
        conv = self.fusable_conv(node.input[0], x, allow_residual=True)
        if conv is not None:
            conv.relu = True
            self.rename_output(conv, node.output[0], x, nonneg=True)
        elif x.nonneg:
            self.alias(node.output[0], x)  # ReLU of a non-negative tensor is the identity
        elif self._relu_through_pool(node.input[0], x):
            # relu(maxpool(conv)) = maxpool(relu(conv)): the ReLU moves into the conv
            self.alias(node.output[0], _Act(x.ir, x.shape, x.rank2, True))
        else:
            self._relu_pointwise(node, idx)   # a pointwise function (lookup table) of its input

    def _relu_pointwise(self, node, idx):
        """ReLU as a pointwise function; also for a ``Clip(0, inf)`` node (named ReLU here:
        ``_elementwise`` would look the Clip up by its op type)."""
        self._unary(node, idx, _UNARY["Relu"]({}), "Relu")

    def op_Clip(self, node, idx):
        """``Clip(0, c)`` (ReLU6 and kin) fused into the layer before it as ReLU + ``clip_max``;
        ``Clip(0, +inf)`` is a ReLU."""
        a = self.attrs(node)
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo = hi = None
            for i, what in ((1, "min"), (2, "max")):
                if len(node.input) > i and node.input[i]:
                    v = np.asarray(self.const(node, idx, node.input[i], what), np.float64)
                    if v.size != 1:
                        raise self.err(node, idx, f"{what} must be a scalar, not shape "
                                                  f"{list(v.shape)}")
                    if i == 1:
                        lo = float(v.reshape(-1)[0])
                    else:
                        hi = float(v.reshape(-1)[0])
            lo = -np.inf if lo is None else lo
            hi = np.inf if hi is None else hi
        lo, hi = float(lo), float(hi)
        if lo > hi:
            raise self.err(node, idx, f"Clip({lo:g}, {hi:g}) has min > max")

        def pointwise():
            self._unary(node, idx, lambda v, lo=lo, hi=hi: np.clip(v, lo, hi),
                        f"Clip[{lo:g},{hi:g}]")

        if node.input[0] in self.pw or node.input[0] in self.consts:
            pointwise()
            return
        x = self.act(node, idx, node.input[0])
        prod = self.producer.get(x.ir)
        fusable = (isinstance(prod, FConv) and self._sole_reader(node.input[0])
                   and (not prod.relu or x.nonneg))
        if (lo != 0.0 and not (lo < 0 and x.nonneg)) or not hi > 0 or \
                (np.isfinite(hi) and not fusable):
            pointwise()    # any other clip: a pointwise function (lookup table)
            return
        if not np.isfinite(hi):
            if lo == 0.0 and not x.nonneg:
                self.op_Relu(node, idx)
            else:
                self.alias(node.output[0], x)  # a ReLU (or nothing) on a non-negative tensor
            return
        prod.relu = True
        prod.clip_max = hi if prod.clip_max is None else min(prod.clip_max, hi)
        self.rename_output(prod, node.output[0], x, nonneg=True)

    def _relu_through_pool(self, onnx_name: str, x: _Act) -> bool:
        """Fuse a ReLU after a MaxPool into the conv before the pool, if both feed only the
        next op (ReLU commutes with max pooling; padding never wins either way)."""
        pool = self.producer.get(x.ir)
        src = self.pool_src.get(x.ir)
        if not isinstance(pool, FMaxPool) or src is None or not self._sole_reader(onnx_name):
            return False
        conv = self.fusable_conv(src, self.acts[src], allow_residual=True)
        if conv is None:
            return False
        conv.relu = True
        return True

    def op_Add(self, node, idx):
        if len(node.input) != 2:
            raise self.err(node, idx, "Add must have 2 inputs")
        n0, n1 = node.input
        if n0 in self.consts and n1 in self.consts:
            self.consts[node.output[0]] = (self.const(node, idx, n0, "operand")
                                           + self.const(node, idx, n1, "operand"))
            return
        if n0 in self.consts or n1 in self.consts:
            cname, aname = (n0, n1) if n0 in self.consts else (n1, n0)
            conv = None
            if aname not in self.pw:
                x = self.act(node, idx, aname)
                conv = self.fusable_conv(aname, x, allow_residual=True)
            if conv is None:
                # x + c of a scalar c: a pointwise function (e.g. hard-swish's x + 3)
                self._binary(node, idx)
                return
            c = self.const(node, idx, cname, "constant operand").astype(np.float64)
            m = conv.out_channels
            ok = {(), (1,), (m,), (1, m)} if x.rank2 else {(), (1,), (m, 1, 1), (1, m, 1, 1)}
            if c.shape not in ok:
                raise self.err(node, idx, f"constant of shape {list(c.shape)} is not a "
                                          f"per-channel bias; allowed shapes: "
                                          f"{sorted(list(s) for s in ok)}")
            conv.bias = conv.bias + (np.full(m, float(c.reshape(-1)[0])) if c.size == 1
                                     else c.reshape(m))
            self.rename_output(conv, node.output[0], x)
            return
        if self._pw_of(n0)[0] == self._pw_of(n1)[0]:
            self._binary(node, idx)     # f(x) + g(x): one pointwise function of x
            return
        a0 = self.act(node, idx, n0)
        a1 = self.act(node, idx, n1)
        if a0.shape != a1.shape or a0.rank2 != a1.rank2:
            raise self.err(node, idx, f"operand shapes {a0.shape} and {a1.shape} differ; "
                                      f"broadcasting is not supported")
        cands = []
        for onnx_name, a, other in ((n0, a0, a1), (n1, a1, a0)):
            conv = self.fusable_conv(onnx_name, a)
            if conv is not None and other.ir != a.ir:
                cands.append((self.nodes.index(conv), conv, a, other))
        if not cands:
            raise self.err(node, idx, "a residual Add needs one operand produced by a Conv "
                                      "(or Gemm/MatMul, with optional BatchNormalization) "
                                      "without ReLU whose output feeds only this Add; it is "
                                      "fused into that layer as y = relu(conv(x) + skip)")
        # the host: the later conv, except that a 1x1 unpadded projection (a residual block's
        # downsample shortcut) stays a layer of its own when the other operand is a larger conv
        # (the block's conv2): the shortcut then runs before conv2, right after conv1, and
        # reads the block input together with it (docs/architecture.md, *Shared loads*)
        _, conv, a, other = max(cands, key=lambda c: (not _is_projection(c[1]), c[0]))
        # the fused layer reads the skip tensor: move it after the skip's producer (its output
        # feeds only this Add, so nothing between depends on it)
        self.nodes.remove(conv)
        self.nodes.append(conv)
        conv.residual = other.ir
        self.rename_output(conv, node.output[0], a, nonneg=False)

    def op_MaxPool(self, node, idx):
        a = self.attrs(node)
        x, extra = self._unpad(node, idx, nonneg_only=True)
        if x.rank2:
            raise self.err(node, idx, "MaxPool on a flattened (2-D) tensor is not supported")
        if a.get("storage_order", 0):
            raise self.err(node, idx, "storage_order=1 is not supported")
        self._check_out(node, idx)
        ks = list(a.get("kernel_shape", []))
        if len(ks) != 2:
            raise self.err(node, idx, f"kernel_shape {ks} must have 2 values (2-D pooling)")
        pads, strides = self._pads(node, idx, a, ks)
        pads = tuple(p + e for p, e in zip(pads, extra))
        why = padding_error(ks, pads)
        if why:
            raise self.err(node, idx, why)
        c, h, w = x.shape
        if a.get("ceil_mode", 0):
            # ceil mode = extra bottom/right padding (padding never wins a max); as ONNX, the
            # last window must start inside the input or the leading padding
            pads = list(pads)
            for ax, size in ((0, h), (1, w)):
                k, st, p0, p1 = ks[ax], strides[ax], pads[ax], pads[ax + 2]
                n = -(-(size + p0 + p1 - k) // st) + 1
                if (n - 1) * st >= size + p0:
                    n -= 1
                pads[ax + 2] = max(p1, (n - 1) * st + k - size - p0)
            pads = tuple(pads)
            why = padding_error(ks, pads)
            if why:
                raise self.err(node, idx, f"ceil_mode=1: {why}")
        ho = (h + pads[0] + pads[2] - ks[0]) // strides[0] + 1
        wo = (w + pads[1] + pads[3] - ks[1]) // strides[1] + 1
        if ho < 1 or wo < 1:
            raise self.err(node, idx, f"the kernel {ks} does not fit the {h}x{w} input")
        out = self.new_tensor(node.output[0])
        self.emit(FMaxPool(self.new_node_name(node, idx), x.ir, out, tuple(ks), strides, pads),
                  (c, ho, wo))
        if node.input[0] not in self.padded:
            self.pool_src[out] = node.input[0]
        self.acts[node.output[0]] = _Act(out, (c, ho, wo), False, x.nonneg)

    def _gap(self, node, idx, x):
        out = self.new_tensor(node.output[0])
        self.emit(FGlobalAvgPool(self.new_node_name(node, idx), x.ir, out), (x.shape[0], 1, 1))
        self.acts[node.output[0]] = _Act(out, (x.shape[0], 1, 1), False, x.nonneg)

    def op_GlobalAveragePool(self, node, idx):
        x = self.act(node, idx, node.input[0])
        if x.rank2:
            raise self.err(node, idx, "GlobalAveragePool on a flattened (2-D) tensor")
        self._gap(node, idx, x)

    def op_AveragePool(self, node, idx):
        a = self.attrs(node)
        x = self.act(node, idx, node.input[0])
        if x.rank2:
            raise self.err(node, idx, "AveragePool on a flattened (2-D) tensor")
        c, h, w = x.shape
        ks = list(a.get("kernel_shape", []))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if (ks == [h, w] and not any(pads) and not a.get("ceil_mode", 0)
                and auto in ("NOTSET", "VALID")
                and all(d == 1 for d in a.get("dilations", [1, 1]))):
            self._gap(node, idx, x)
            return
        # k x k average pooling (ONNX semantics: count_include_pad, ceil_mode)
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise self.err(node, idx, "AveragePool with dilations is not supported")
        self._check_out(node, idx)
        if len(ks) != 2:
            raise self.err(node, idx, f"kernel_shape {ks} must have 2 values (2-D pooling)")
        pads, strides = self._pads(node, idx, a, ks)
        why = padding_error(ks, pads)
        if why:
            raise self.err(node, idx, why)
        ceil = bool(a.get("ceil_mode", 0))
        cip = bool(a.get("count_include_pad", 0))
        try:
            ho, wo = pool_output_hw((h, w), ks, strides, pads, ceil)
        except IlmpqValueError:
            raise self.err(node, idx, f"the kernel {ks} does not fit the {h}x{w} input") from None
        out = self.new_tensor(node.output[0])
        self.emit(FAvgPool(self.new_node_name(node, idx), x.ir, out, tuple(ks), tuple(strides),
                           tuple(pads), ceil, cip), (c, ho, wo))
        self.acts[node.output[0]] = _Act(out, (c, ho, wo), False, x.nonneg)

    def _flatten(self, node, idx, x):
        if x.rank2:
            self.alias(node.output[0], x)
            return
        c, h, w = x.shape
        out = self.new_tensor(node.output[0])
        self.emit(FFlatten(self.new_node_name(node, idx), x.ir, out), (c * h * w, 1, 1))
        self.acts[node.output[0]] = _Act(out, (c * h * w, 1, 1), True, x.nonneg)

    def op_Flatten(self, node, idx):
        """``Flatten(axis)`` gives ``(prod(dims[:axis]), prod(dims[axis:]))``: each image's
        vector when the dimensions between the batch and ``axis`` are all 1 (axis 0 too, one
        image at a time, unless the model declares a static batch above 1); the column
        ``(K, 1)`` when ``axis`` is the rank (read only by a Gemm with ``transA = 1``)."""
        a = self.attrs(node)
        name = node.input[0]
        if name in self.cols:
            raise self.err(node, idx, f"Flatten of the column view {name!r} (K, 1) is not "
                                      f"supported; only a Gemm with transA=1 reads it")
        x = self.act(node, idx, name)
        axis = int(a.get("axis", 1))
        rank = 2 if x.rank2 else 4
        dims = (1,) + ((x.shape[0],) if x.rank2 else x.shape)
        ax = axis + rank if axis < 0 else axis
        if not 0 <= ax <= rank:
            raise self.err(node, idx, f"axis={axis} is out of range for a rank-{rank} tensor "
                                      f"(allowed {-rank} to {rank})")
        if ax == 0 and self.batch not in (None, 1):
            raise self.err(node, idx, f"axis={axis} flattens the whole batch of {self.batch} "
                                      f"images (the static batch of the model input) into one "
                                      f"vector; ilmpq runs one image at a time: use axis=1, "
                                      f"or export with batch 1 or a symbolic batch")
        if ax == rank and int(np.prod(dims[1:])) > 1:
            # (K, 1): a column, the left operand of a Gemm with transA=1
            self.cols[node.output[0]] = self._flat_act(node, idx, x)
            return
        if int(np.prod(dims[1:max(ax, 1)])) != 1:
            raise self.err(node, idx, f"axis={axis} is not supported; only an axis that flattens "
                                      f"each image to a vector (0 or 1, or {-rank}/{1 - rank} "
                                      f"counted from the end, or any axis whose preceding "
                                      f"per-image dimensions are all 1; here the dimensions "
                                      f"{list(dims[1:ax])} before axis {ax} are not); axis "
                                      f"{rank} (a column (K, 1)) only before a Gemm with "
                                      f"transA=1")
        self._flatten(node, idx, x)

    def _flat_act(self, node, idx, x):
        """The row ``(1, K)`` activation of ``x`` flattened (emits the FFlatten if needed)."""
        if x.rank2:
            return x
        c, h, w = x.shape
        out = self.new_tensor(node.output[0])
        self.emit(FFlatten(self.new_node_name(node, idx), x.ir, out), (c * h * w, 1, 1))
        return _Act(out, (c * h * w, 1, 1), True, x.nonneg)

    def op_Reshape(self, node, idx):
        a = self.attrs(node)
        if len(node.input) < 2:
            raise self.err(node, idx, "Reshape without a shape input (opset < 5) is not "
                                      "supported")
        shape = [int(v) for v in np.asarray(
            self.const(node, idx, node.input[1], "shape")).reshape(-1)]
        if node.input[0] in self.view5t:
            # the end of a channel shuffle: (N, C/g, g, H, W) -> (N, C, H, W)
            src, g, cg = self.view5t[node.input[0]]
            x = self.acts[src]
            c, h, w = x.shape
            if len(shape) != 4 or shape[1:] not in ([c, h, w], [-1, h, w]) or \
                    shape[0] not in (-1, 0, 1):
                raise self.err(node, idx, f"Reshape to {shape} after the channel-shuffle "
                                          f"Transpose must give back (N, {c}, {h}, {w})")
            perm = np.arange(c).reshape(g, cg).T.reshape(-1)
            out = self.new_tensor(node.output[0])
            self.emit(FPermute(self.new_node_name(node, idx), x.ir, out, perm), x.shape)
            self.acts[node.output[0]] = _Act(out, x.shape, False, x.nonneg)
            return
        x = self.act(node, idx, node.input[0])
        if len(shape) == 5 and not x.rank2:
            c, h, w = x.shape
            g, cg = shape[1], shape[2]
            if shape[0] in (-1, 0, 1) and shape[3:] == [h, w] and g > 0 and cg in (-1, c // g) \
                    and c % g == 0:
                self.view5[node.output[0]] = (node.input[0], g, c // g)
                return
        k = int(np.prod(x.shape))
        allowzero = a.get("allowzero", 0)
        if len(shape) == 2 and shape[1] == 1 and shape[0] in (k, -1) and k > 1 and \
                self.batch in (None, 1):
            # (K, 1): the column of one image, read by a Gemm with transA=1
            self.cols[node.output[0]] = self._flat_act(node, idx, x)
            return
        ok = (len(shape) == 2 and shape[0] in ((-1, 1) if allowzero else (-1, 0, 1))
              and shape[1] in (k, -1) and not (shape[0] == -1 and shape[1] == -1))
        if not ok:
            raise self.err(node, idx, f"Reshape to {shape} is not supported; only flattening "
                                      f"each image to (N, {k}) (shape [-1, {k}], [0, -1], "
                                      f"[1, {k}] ...)")
        self._flatten(node, idx, x)


def _declared_batch(model):
    """The static batch of the model's image input as declared (before canonicalization fixes
    it to 1), or None when it is symbolic or unknown."""
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1 or not ins[0].type.HasField("tensor_type"):
        return None
    dims = ins[0].type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value <= 0:
        return None
    return int(dims[0].dim_value)


def _where(source) -> str:
    return ("<bytes>" if isinstance(source, (bytes, bytearray)) else "<ModelProto>"
            if not isinstance(source, (str, os.PathLike)) else os.fspath(source))


def load_onnx(source, *, input_mean=None, input_std=None, input_shape=None,
              canonical: bool = True) -> FloatModel:
    """Import a float CNN from an ONNX file, bytes or ``onnx.ModelProto``.

    Parameters
    ----------
    source : str, os.PathLike, bytes or onnx.ModelProto
        The model.
    input_mean, input_std : float or sequence of float, optional
        Per-channel input normalization ``x = (pixels - mean) / std`` the model was trained
        with. Default: the ``ilmpq.input_mean`` / ``ilmpq.input_std`` metadata properties of the
        model, else ``0`` and ``1``.
    input_shape : (C, H, W) or "C,H,W", optional
        The per-image input shape, for a model whose input has symbolic dimensions.
    canonical : bool
        Canonicalize the graph first (:func:`ilmpq.golden.canonicalize.canonicalize`: input
        shape fixed, constants and shape arithmetic folded, no-ops and dead nodes removed);
        what it did is in ``meta["canonicalize"]``.

    Returns
    -------
    FloatModel
        The fused float graph; ``meta`` holds the source, producer, opset and metadata.

    Raises
    ------
    OnnxImportError
        Not an ONNX file, truncated or invalid, an unsupported op or attribute, a dynamic input
        shape, a missing initializer. The message names the node, the op and what is supported.
    FileNotFoundError
        ``source`` is a path that does not exist.
    """
    import onnx

    try:
        model, label = _parse_model(source)
        batch = _declared_batch(model)
        actions = []
        if canonical:
            from .canonicalize import CanonicalizeError, canonicalize
            try:
                model, actions = canonicalize(model, input_shape=input_shape, label=label)
            except CanonicalizeError as e:
                raise OnnxImportError(str(e)) from None
        elif input_shape is not None:
            raise OnnxImportError("input_shape needs canonical=True (it rewrites the input)")
        fm = _Importer(model, label, batch=batch).run()
        fm.meta["canonicalize"] = list(actions)
    except onnx.checker.ValidationError as e:
        # raised by onnx helpers (attribute and tensor readers) on malformed protos
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{_where(source)}: not a valid ONNX model: {first}") from None
    except UnicodeDecodeError as e:
        # protobuf does not check proto2 strings: a corrupt name surfaces when it is read
        raise OnnxImportError(f"{_where(source)}: a name or text field is not valid UTF-8 "
                              f"({e.reason} at byte {e.start}); the file is corrupt") from None
    md = fm.meta["metadata"]
    for key, arg, attr in ((META_INPUT_MEAN, input_mean, "input_mean"),
                           (META_INPUT_STD, input_std, "input_std")):
        value = arg
        if value is None and key in md:
            try:
                value = loads_json(md[key])
            except InputFileError as e:
                raise OnnxImportError(f"{label}: metadata {key}={md[key][:40]!r} is not a JSON "
                                      f"number or list: {e}") from None
        if value is not None:
            try:
                vec = FloatModel._norm_vector(attr, value, 0.0, fm.input_shape[0])
            except (FloatModelError, TypeError, ValueError) as e:
                raise OnnxImportError(f"{label}: {e}") from None
            setattr(fm, attr, vec)
    if np.any(fm.input_std <= 0):
        raise OnnxImportError(f"{label}: input_std must be positive, not {fm.input_std}")
    return fm
