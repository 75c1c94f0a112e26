"""The quantized-model format: a graph of integer layers (``docs/numeric.md``).

A :class:`QModel` is what the quantizer produces and what the compiler and the reference executor
consume. Tensors are named; every layer reads named tensors and writes one. Activation tensors are
``(C, H, W)`` integer arrays (one image; the batch dimension is the caller's loop) with a width,
a signedness and a float scale (``real = scale * int``).

Layer kinds
-----------
``ConvLayer``
    ``acc[m,p] = bias[m] + sum_k W[m,k] * X[k,p]`` (``X`` the im2col of the unsigned input),
    then requantization ``y = clamp((acc*M[m] + res*Mr[m] + 2**(S[m]-1)) >> S[m], qmin, qmax)``
    with an optional residual tensor ``res`` and ReLU (``[qmin, qmax] = [0, 2**a-1]``) or not
    (signed ``a``-bit range). A fully connected layer is a ``ConvLayer`` with ``kernel = (1, 1)``
    applied to a ``(K, 1, 1)`` input (see :meth:`ConvLayer.is_fc`).
``MaxPoolLayer``
    max over a ``kh x kw`` window with stride; padding positions never win (they act as ``-inf``).
``AvgPoolLayer``
    average over a ``kh x kw`` window with stride, padding, ``ceil_mode`` and
    ``count_include_pad`` as ONNX ``AveragePool``: ``floor((s + N//2) / N)`` with ``N`` the
    window's divisor (:func:`~ilmpq.golden.ops.avg_pool`).
``GlobalAvgPoolLayer``
    ``y[c] = floor((sum_p x[c,p] + N//2) / N)``, i.e. round half up, ``N = H*W``.
``FlattenLayer``
    ``(C, H, W) -> (C*H*W, 1, 1)`` in C-order (channel-major), a no-op on data.
``LutLayer``
    ``y = table[x - lo]``: any pointwise function of one tensor (HardSwish, SiLU, GELU, ...) as
    an integer lookup table with one entry per input level (:func:`~ilmpq.golden.ops.lut_apply`).
``MulLayer``
    ``y = clamp((x * g * M + 2**(S-1)) >> S)``: the product of two activation tensors, ``g`` of
    ``x``'s shape or ``(C, 1, 1)`` (squeeze-excitation gating).
``ConcatLayer``
    channel concatenation, each input requantized to the output's scale.
``SliceLayer``, ``PermuteLayer``
    ``x[c0:c1:cs, h0:h1:hs, w0:w1:ws]`` and a channel permutation (channel shuffle); the data
    keep their format.

A ``ConvLayer`` may be grouped (``groups``; depthwise when ``groups`` equals the channels) and
may read a signed tensor (``docs/quantization.md``: the integer arithmetic is the same; the
accelerator's PE array multiplies unsigned activations only, so the compiler runs such a layer
on the host).

Validity
--------
:meth:`QModel.validate` checks everything the executor, the compiler and the hardware rely on:
the graph (every tensor written once, before it is read), shapes through every layer, every weight within its row's precision, ``bias``/``M``/``Mr``/``S`` within the
numeric spec, residual shapes, and the exact high-precision share (:func:`hi_row_count` rows of
every conv/FC layer are ``HI``). Errors are :class:`ModelFormatError` naming the layer and the
problem.

Files
-----
:meth:`QModel.save` writes one ``.npz`` whose ``__meta__`` entry is UTF-8 JSON stored as a
``uint8`` array (format name, version, graph, tensor specs, scalar layer fields) and whose other
entries are the layer arrays (``<layer>.weight`` ...). :meth:`QModel.load` checks the format name
and version and every array's dtype and shape, then validates the model, and names the problem
on failure. ``docs/numeric.md`` section "File format" lists the entries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .errors import IlmpqValueError
from .formats import SUPPORTED_ACT_BITS, NumericSpec, Precision
from .ops import RES_RANGE, conv_macs, conv_output_hw, pool_output_hw
from .safeio import loads_json, read_input, read_npz

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "TensorSpec", "ConvLayer", "MaxPoolLayer", "AvgPoolLayer",
    "GlobalAvgPoolLayer", "FlattenLayer", "LutLayer", "MulLayer", "ConcatLayer", "SliceLayer",
    "PermuteLayer", "Layer", "QModel", "ModelFormatError", "hi_row_count", "padding_error",
    "layer_inputs",
]

FORMAT_NAME = "ilmpq-qmodel"
FORMAT_VERSION = 1

_META_KEY = "__meta__"


class ModelFormatError(IlmpqValueError):
    """A quantized-model file or object is malformed; the message names the problem."""


def hi_row_count(ratio, rows: int) -> int:
    """Number of ``HI`` rows a layer of ``rows`` output channels has: ``ceil(ratio * rows)``.

    ``ratio`` may be a :class:`~fractions.Fraction` (``HWConfig.ratio``) or a float; a float is
    read as the nearest fraction with a denominator up to 65536, so that ``0.1 * 30`` gives 3,
    not 4.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ModelFormatError(f"ratio must be a number in [0, 1], not {ratio!r}")
    r = Fraction(ratio) if isinstance(ratio, (Fraction, numbers.Rational)) else \
        Fraction(float(ratio)).limit_denominator(1 << 16)
    if not (0 <= r <= 1):
        raise ModelFormatError(f"ratio = {ratio} is not allowed: it must be in [0, 1]")
    return math.ceil(r * int(rows))


def padding_error(kernel, padding) -> str | None:
    """The one padding rule of conv, FC and pooling layers, or ``None`` if it holds.

    Padding on each side must be smaller than the kernel on that axis (``top, bottom < kh``,
    ``left, right < kw``): otherwise a window at the border sees only padding (for max pooling
    it has no maximum; for a convolution the compiler cannot load input rows for it). The ONNX
    importer, :meth:`QModel.validate` (so the quantizer) and the compiler all apply it.
    """
    kh, kw = (int(v) for v in kernel)
    pt, pl, pb, pr = (int(v) for v in padding)
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        return (f"padding {(pt, pl, pb, pr)} must be smaller than the {kh}x{kw} kernel on each "
                f"axis (padding is (top, left, bottom, right); top and bottom < {kh}, left and "
                f"right < {kw}): a window at the border would see only padding")
    return None


def _as_tuple(v):
    return tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v


@dataclass(frozen=True)
class TensorSpec:
    """An activation tensor of the graph.

    ``shape`` is ``(C, H, W)``; ``bits`` its integer width; ``signed`` whether it may be negative
    (only tensors not followed by ReLU); ``scale`` the float step (``real = scale * int``).
    """

    name: str
    shape: tuple[int, int, int]
    bits: int
    signed: bool
    scale: float

    def __post_init__(self):
        object.__setattr__(self, "shape", _as_tuple(self.shape))

    @property
    def range(self) -> tuple[int, int]:
        """Inclusive integer range: ``[0, 2**bits-1]`` or ``[-2**(bits-1), 2**(bits-1)-1]``."""
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def dtype(self) -> np.dtype:
        """NumPy dtype the reference executor stores the tensor in (``int8`` or ``uint8``)."""
        return np.dtype(np.int8 if self.signed else np.uint8)


def _arrays_equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    return a == b


@dataclass
class ConvLayer:
    """Convolution (or fully connected) with fused bias, requantization, residual and ReLU.

    Arrays (``M`` = output channels = weight rows):

    * ``weight``: int8 ``(M, Cin, kh, kw)``; row ``m`` within the range of ``precision[m]``.
    * ``precision``: uint8 ``(M,)`` of :class:`~ilmpq.golden.formats.Precision` values.
    * ``bias``: int64 ``(M,)``, in accumulator units (scale ``w_scale[m] * in_scale``).
    * ``mult``, ``shift``: int64 ``(M,)``, requantization multiplier ``M`` and shift ``S``.
    * ``res_mult``: int64 ``(M,)`` multiplier ``Mr`` of the residual, or ``None``.
    * ``w_scale``: float64 ``(M,)`` per-row weight scale (information; the integer path ignores it).

    The output tensor's ``bits`` and ``signed`` give the requantization range; a layer with ReLU
    writes an unsigned tensor, a layer without ReLU a signed one. Equality (``==``) compares the
    arrays exactly, dtypes included.
    """

    name: str
    input: str
    output: str
    weight: np.ndarray
    precision: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  #: (top, left, bottom, right)
    relu: bool = True
    residual: str | None = None
    res_mult: np.ndarray | None = None
    w_scale: np.ndarray | None = None
    #: grouped convolution: ``weight`` is ``(M, Cin / groups, kh, kw)`` (depthwise: ``groups ==
    #: Cin == M``)
    groups: int = 1
    kind: str = field(default="conv", init=False)

    def __post_init__(self):
        self.stride = _as_tuple(self.stride)
        self.padding = _as_tuple(self.padding)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(_arrays_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * int(self.groups)

    def is_fc(self) -> bool:
        return (self.kernel == (1, 1) and self.stride == (1, 1) and not any(self.padding)
                and self.groups == 1)

    @property
    def hi_rows(self) -> np.ndarray:
        """Indices of the 8-bit rows."""
        return np.flatnonzero(self.precision == Precision.HI)


@dataclass
class MaxPoolLayer:
    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    kind: str = field(default="maxpool", init=False)

    def __post_init__(self):
        self.kernel = _as_tuple(self.kernel)
        self.stride = _as_tuple(self.stride)
        self.padding = _as_tuple(self.padding)


@dataclass
class AvgPoolLayer:
    """k x k average pooling (ONNX ``AveragePool``): :func:`~ilmpq.golden.ops.avg_pool`."""

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False
    kind: str = field(default="avgpool", init=False)

    def __post_init__(self):
        self.kernel = _as_tuple(self.kernel)
        self.stride = _as_tuple(self.stride)
        self.padding = _as_tuple(self.padding)


@dataclass
class GlobalAvgPoolLayer:
    name: str
    input: str
    output: str
    kind: str = field(default="gap", init=False)


@dataclass
class FlattenLayer:
    name: str
    input: str
    output: str
    kind: str = field(default="flatten", init=False)


@dataclass
class LutLayer:
    """``y = table[x - lo]`` (:func:`~ilmpq.golden.ops.lut_apply`); ``table`` int64, one entry per
    input level, each within the output tensor's range."""

    name: str
    input: str
    output: str
    table: np.ndarray
    #: what the table computes (the fused ONNX ops), for reports only
    function: str = ""
    kind: str = field(default="lut", init=False)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(_arrays_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))


@dataclass
class MulLayer:
    """``y = clamp((x * g * M + 2**(S-1)) >> S)`` (:func:`~ilmpq.golden.ops.mul_requant`)."""

    name: str
    input: str
    gate: str
    output: str
    mult: int
    shift: int
    kind: str = field(default="mul", init=False)


@dataclass
class ConcatLayer:
    """Channel concatenation of ``inputs`` (:func:`~ilmpq.golden.ops.concat_requant`)."""

    name: str
    inputs: tuple
    output: str
    mults: tuple
    shifts: tuple
    kind: str = field(default="concat", init=False)

    def __post_init__(self):
        self.inputs = tuple(self.inputs)
        self.mults = tuple(int(v) for v in self.mults)
        self.shifts = tuple(int(v) for v in self.shifts)

    @property
    def input(self) -> str:
        return self.inputs[0]


@dataclass
class SliceLayer:
    """``x[c0:c1:cs, h0:h1:hs, w0:w1:ws]`` (:func:`~ilmpq.golden.ops.slice_chw`)."""

    name: str
    input: str
    output: str
    starts: tuple
    stops: tuple
    steps: tuple
    kind: str = field(default="slice", init=False)

    def __post_init__(self):
        self.starts = tuple(int(v) for v in self.starts)
        self.stops = tuple(int(v) for v in self.stops)
        self.steps = tuple(int(v) for v in self.steps)


@dataclass
class PermuteLayer:
    """``y[c] = x[perm[c]]`` (:func:`~ilmpq.golden.ops.permute_channels`)."""

    name: str
    input: str
    output: str
    perm: np.ndarray
    kind: str = field(default="permute", init=False)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(_arrays_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))


Layer = (ConvLayer | MaxPoolLayer | AvgPoolLayer | GlobalAvgPoolLayer | FlattenLayer | LutLayer
         | MulLayer | ConcatLayer | SliceLayer | PermuteLayer)

_LAYER_CLASSES = {"conv": ConvLayer, "maxpool": MaxPoolLayer, "avgpool": AvgPoolLayer,
                  "gap": GlobalAvgPoolLayer,
                  "flatten": FlattenLayer, "lut": LutLayer, "mul": MulLayer,
                  "concat": ConcatLayer, "slice": SliceLayer, "permute": PermuteLayer}


def layer_inputs(layer) -> list[str]:
    """The tensors a layer reads, in order (input, residual / gate, or every concat input)."""
    if isinstance(layer, ConcatLayer):
        return list(layer.inputs)
    if isinstance(layer, MulLayer):
        return [layer.input, layer.gate]
    if isinstance(layer, ConvLayer) and layer.residual is not None:
        return [layer.input, layer.residual]
    return [layer.input]

#: ConvLayer arrays: (field, dtype, required). ``weight`` is 4-D, the others ``(M,)``.
_CONV_ARRAYS = (
    ("weight", np.dtype(np.int8), True),
    ("precision", np.dtype(np.uint8), True),
    ("bias", np.dtype(np.int64), True),
    ("mult", np.dtype(np.int64), True),
    ("shift", np.dtype(np.int64), True),
    ("res_mult", np.dtype(np.int64), False),
    ("w_scale", np.dtype(np.float64), False),
)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


@dataclass
class QModel:
    """A quantized network: tensors, layers in execution order, input and output names.

    ``input`` is the unsigned 8-bit pixel tensor (input normalization folded into the first
    layer). ``meta`` carries free-form provenance (source model, ratio, calibration ...), saved as
    JSON. ``spec`` is the :class:`~ilmpq.golden.formats.NumericSpec` the model was quantized for
    (its ``act_bits`` equals :attr:`act_bits`); ``None`` means ``NumericSpec(act_bits=act_bits)``
    (see :attr:`numeric`).
    """

    tensors: dict[str, TensorSpec]
    layers: list[Layer]
    input: str
    output: str
    ratio: float  #: the high-precision row share R every conv/FC layer was quantized with
    act_bits: int
    meta: dict = field(default_factory=dict)
    spec: NumericSpec | None = None

    # -- convenience -------------------------------------------------------------------------

    @property
    def numeric(self) -> NumericSpec:
        """The numeric spec the model's ``M``, ``Mr``, ``S`` and biases were chosen for."""
        return self.spec if self.spec is not None else NumericSpec(act_bits=self.act_bits)

    @property
    def conv_layers(self) -> list[ConvLayer]:
        """The conv and FC layers, in execution order."""
        return [layer for layer in self.layers if isinstance(layer, ConvLayer)]

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (``KeyError`` naming the known layers if there is none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are: {', '.join(l.name for l in self.layers)}")

    def macs(self) -> dict[str, int]:
        """Multiply-accumulates of every conv/FC layer (``M * OH * OW * C * kh * kw``)."""
        return {layer.name: conv_macs(self.tensors[layer.output].shape, layer.in_channels,
                                      layer.kernel) for layer in self.conv_layers}

    # -- validation ----------------------------------------------------------------------------

    def validate(self, spec: NumericSpec | None = None) -> None:
        """Check that the model is well formed; raise :class:`ModelFormatError` if not.

        Parameters
        ----------
        spec : NumericSpec, optional
            Widths to check ``bias``, ``M``, ``Mr`` and ``S`` against (for example
            ``HWConfig.numeric`` of the target hardware). Defaults to :attr:`numeric`.
            ``spec.act_bits`` must equal :attr:`act_bits`.

        Checks, each failing with a message that names the layer or tensor: tensor specs (3-D
        positive shapes, bits in ``SUPPORTED_ACT_BITS``, positive finite scales); the input is
        an unsigned 8-bit tensor; layer names are unique; every layer reads tensors already
        written (the input or an earlier layer's output) and writes a declared tensor nobody wrote
        before; every declared tensor is written; the output tensor is written; output shapes
        follow from the input shapes (grouped convolutions included); array dtypes and shapes; weights
        within their row precision; ``bias`` within the accumulator range, ``M``/``Mr`` within
        ``spec.mult_range``, ``S`` within ``spec.shift_range``; ``Mr`` present exactly when a
        residual is; residual shape equal to the output shape; conv/FC outputs have
        :attr:`act_bits` bits, unsigned with ReLU and signed without; exactly
        ``hi_row_count(ratio, M)`` rows are ``HI``; pooling and flatten keep bits, signedness and
        scale.
        """
        if spec is None:
            spec = self.numeric
        if not isinstance(spec, NumericSpec):
            raise ModelFormatError(f"spec must be a NumericSpec, not {type(spec).__name__}")
        err = ModelFormatError
        if not _is_int(self.act_bits) or self.act_bits not in SUPPORTED_ACT_BITS:
            raise err(f"model act_bits = {self.act_bits!r} is not allowed: it must be one of "
                      f"{SUPPORTED_ACT_BITS}")
        if spec.act_bits != self.act_bits:
            raise err(f"the numeric spec has act_bits = {spec.act_bits} but the model was "
                      f"quantized with act_bits = {self.act_bits}; they must be equal")
        hi_row_count(self.ratio, 0)  # type and range of the ratio
        if not isinstance(self.meta, dict):
            raise err(f"model meta must be a dict, not {type(self.meta).__name__}")
        if not isinstance(self.tensors, dict) or not self.tensors:
            raise err("model tensors must be a non-empty dict {name: TensorSpec}")
        for key, t in self.tensors.items():
            self._check_tensor(key, t)
        if self.input not in self.tensors:
            raise err(f"the model input {self.input!r} is not a declared tensor")
        tin = self.tensors[self.input]
        if tin.signed or tin.bits != 8:
            raise err(f"the model input {self.input!r} must be an unsigned 8-bit tensor "
                      f"(pixels), not {'signed' if tin.signed else 'unsigned'} {tin.bits}-bit")
        if not isinstance(self.layers, list) or not self.layers:
            raise err("a model needs at least one layer (layers must be a non-empty list)")

        written = {self.input: "<model input>"}
        names = set()
        for layer in self.layers:
            cls = _LAYER_CLASSES.get(getattr(layer, "kind", None))
            if cls is None or type(layer) is not cls:
                raise err(f"unknown layer object {layer!r}: layers must be one of "
                          f"{', '.join(c.__name__ for c in _LAYER_CLASSES.values())}")
            where = f"layer {layer.name!r} ({layer.kind})"
            if not isinstance(layer.name, str) or not layer.name:
                raise err(f"layer name {layer.name!r} must be a non-empty string")
            if layer.name in names:
                raise err(f"{where}: the layer name is used twice; layer names must be unique")
            names.add(layer.name)
            if isinstance(layer, ConcatLayer) and not (
                    layer.inputs and all(isinstance(t, str) for t in layer.inputs)):
                raise err(f"{where}: inputs must be a non-empty tuple of tensor names")
            reads = layer_inputs(layer)
            for t in reads:
                if t not in self.tensors:
                    raise err(f"{where} reads tensor {t!r}, which is not declared")
                if t not in written:
                    raise err(f"{where} reads tensor {t!r} before any layer writes it; layers "
                              f"must be in execution order")
            if layer.output not in self.tensors:
                raise err(f"{where} writes tensor {layer.output!r}, which is not declared")
            if layer.output in written:
                raise err(f"{where} writes tensor {layer.output!r}, which "
                          f"{written[layer.output]} already wrote; every tensor is written once")
            written[layer.output] = f"layer {layer.name!r}"
            x, y = self.tensors[layer.input], self.tensors[layer.output]
            if isinstance(layer, ConvLayer):
                self._check_conv(layer, where, x, y, spec)
            elif isinstance(layer, (MaxPoolLayer, AvgPoolLayer)):
                self._check_pool(layer, where, x, y)
            elif isinstance(layer, (LutLayer, MulLayer, ConcatLayer, SliceLayer, PermuteLayer)):
                self._check_host_op(layer, where, x, y, spec)
            else:
                c, h, w = x.shape
                want = (c, 1, 1) if isinstance(layer, GlobalAvgPoolLayer) else (c * h * w, 1, 1)
                if y.shape != want:
                    raise err(f"{where}: output {y.name!r} has shape {y.shape} but the input "
                              f"{x.shape} gives {want}")
                self._check_same_format(where, x, y)
        for name in self.tensors:
            if name not in written:
                raise err(f"tensor {name!r} is declared but no layer writes it")
        if self.output not in self.tensors:
            raise err(f"the model output {self.output!r} is not a declared tensor")

    @staticmethod
    def _check_tensor(key, t):
        err = ModelFormatError
        if not isinstance(t, TensorSpec):
            raise err(f"tensor {key!r} must be a TensorSpec, not {type(t).__name__}")
        if t.name != key:
            raise err(f"tensor {key!r} is declared under another name: TensorSpec.name = "
                      f"{t.name!r}; the dict key and the name must be equal")
        if not (isinstance(t.shape, tuple) and len(t.shape) == 3 and all(
                _is_int(d) and d > 0 for d in t.shape)):
            raise err(f"tensor {key!r} shape {t.shape!r} must be (C, H, W) of positive integers")
        if not _is_int(t.bits) or t.bits not in SUPPORTED_ACT_BITS:
            raise err(f"tensor {key!r} bits = {t.bits!r} is not allowed: it must be one of "
                      f"{SUPPORTED_ACT_BITS}")
        if not isinstance(t.signed, (bool, np.bool_)):
            raise err(f"tensor {key!r} signed = {t.signed!r} must be True or False")
        if not (isinstance(t.scale, numbers.Real) and math.isfinite(t.scale) and t.scale > 0):
            raise err(f"tensor {key!r} scale = {t.scale!r} must be a positive finite number")

    @staticmethod
    def _check_same_format(where, x, y):
        if (x.bits, x.signed) != (y.bits, y.signed) or not math.isclose(
                x.scale, y.scale, rel_tol=1e-9):
            raise ModelFormatError(
                f"{where}: output {y.name!r} ({y.bits}-bit, signed={y.signed}, scale {y.scale}) "
                f"must keep the format of the input {x.name!r} ({x.bits}-bit, "
                f"signed={x.signed}, scale {x.scale})")

    @staticmethod
    def _check_geometry(where, kernel, stride, padding, x):
        err = ModelFormatError
        if not (isinstance(stride, tuple) and len(stride) == 2 and all(
                _is_int(s) and s > 0 for s in stride)):
            raise err(f"{where}: stride {stride!r} must be (sy, sx) of positive integers")
        if not (isinstance(padding, tuple) and len(padding) == 4 and all(
                _is_int(p) and p >= 0 for p in padding)):
            raise err(f"{where}: padding {padding!r} must be (top, left, bottom, right) of "
                      f"non-negative integers")
        try:
            return conv_output_hw(x.shape[1:], kernel, stride, padding)
        except IlmpqValueError as e:
            raise err(f"{where}: {e}") from None

    def _check_host_op(self, layer, where, x, y, spec: NumericSpec):
        err = ModelFormatError
        if isinstance(layer, LutLayer):
            t = layer.table
            n = 1 << x.bits
            if not isinstance(t, np.ndarray) or t.dtype != np.int64 or t.shape != (n,):
                raise err(f"{where}: table must be an int64 array of shape ({n},) (one entry per "
                          f"level of the {x.bits}-bit input), not "
                          f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}")
            lo, hi = y.range
            if t.size and (int(t.min()) < lo or int(t.max()) > hi):
                i = int(np.flatnonzero((t < lo) | (t > hi))[0])
                raise err(f"{where}: table[{i}] = {int(t[i])} is outside the range [{lo}, {hi}] "
                          f"of the output {y.name!r}")
            want = x.shape
        elif isinstance(layer, MulLayer):
            g = self.tensors[layer.gate]
            if g.shape[0] != x.shape[0] or g.shape[1:] not in ((1, 1), x.shape[1:]):
                raise err(f"{where}: gate {g.name!r} has shape {g.shape}; it must have the "
                          f"input's shape {x.shape} or ({x.shape[0]}, 1, 1)")
            for name, v, (lo, hi) in (("mult", layer.mult, spec.mult_range),
                                      ("shift", layer.shift, spec.shift_range)):
                if not _is_int(v) or not lo <= v <= hi:
                    raise err(f"{where}: {name} = {v!r} must be an integer in [{lo}, {hi}]")
            want = x.shape
        elif isinstance(layer, ConcatLayer):
            ins = [self.tensors[t] for t in layer.inputs]
            if any(t.shape[1:] != x.shape[1:] for t in ins):
                raise err(f"{where}: inputs have shapes {[t.shape for t in ins]}; concatenated "
                          f"tensors must have equal H and W")
            k = len(ins)
            if len(layer.mults) != k or len(layer.shifts) != k:
                raise err(f"{where}: {k} inputs need {k} mults and shifts")
            for name, vs, (lo, hi) in (("mults", layer.mults, spec.mult_range),
                                       ("shifts", layer.shifts, spec.shift_range)):
                if any(not lo <= v <= hi for v in vs):
                    raise err(f"{where}: {name} {list(vs)} must be within [{lo}, {hi}]")
            want = (sum(t.shape[0] for t in ins),) + x.shape[1:]
        elif isinstance(layer, SliceLayer):
            want = []
            for axis, (a, b, st) in enumerate(zip(layer.starts, layer.stops, layer.steps)):
                n = x.shape[axis]
                if not (len(layer.starts) == len(layer.stops) == len(layer.steps) == 3
                        and st >= 1 and 0 <= a < b <= n):
                    raise err(f"{where}: slice starts {layer.starts}, stops {layer.stops}, "
                              f"steps {layer.steps} must be three ranges 0 <= start < stop <= "
                              f"size with steps >= 1 on the input {x.shape}")
                want.append(len(range(a, b, st)))
            want = tuple(want)
        else:
            p = layer.perm
            if (not isinstance(p, np.ndarray) or p.dtype != np.int64
                    or sorted(p.tolist()) != list(range(x.shape[0]))):
                raise err(f"{where}: perm must be an int64 permutation of the {x.shape[0]} "
                          f"input channels")
            want = x.shape
        if y.shape != tuple(want):
            raise err(f"{where}: output {y.name!r} has shape {y.shape} but the layer computes "
                      f"{tuple(want)}")
        if isinstance(layer, (SliceLayer, PermuteLayer)):
            self._check_same_format(where, x, y)
        elif y.bits != self.act_bits:
            raise err(f"{where}: output {y.name!r} has {y.bits} bits; the layer writes "
                      f"act_bits = {self.act_bits}-bit results")

    def _check_conv(self, layer: ConvLayer, where, x, y, spec: NumericSpec):
        err = ModelFormatError
        w = layer.weight
        if not isinstance(w, np.ndarray) or w.dtype != np.int8 or w.ndim != 4 or 0 in w.shape:
            desc = (f"{w.dtype} array of shape {w.shape}" if isinstance(w, np.ndarray)
                    else type(w).__name__)
            raise err(f"{where}: weight must be a non-empty int8 array (M, Cin, kh, kw), not "
                      f"{desc}")
        m = w.shape[0]
        for name, dtype, required in _CONV_ARRAYS[1:]:
            a = getattr(layer, name)
            if a is None and not required:
                continue
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != (m,):
                desc = (f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray)
                        else repr(a))
                raise err(f"{where}: {name} must be a {dtype} array of shape ({m},) (one per "
                          f"output channel), not {desc}")
        g = layer.groups
        if not _is_int(g) or g < 1 or m % g:
            raise err(f"{where}: groups = {g!r} must be a positive integer dividing the {m} "
                      f"output channels")
        if w.shape[1] * g != x.shape[0]:
            raise err(f"{where}: weight has {w.shape[1]} input channels"
                      + (f" per group x {g} groups" if g > 1 else "")
                      + f" but the input {x.name!r} has {x.shape[0]} (shape {x.shape})")
        oh, ow = self._check_geometry(where, layer.kernel, layer.stride, layer.padding, x)
        why = padding_error(layer.kernel, layer.padding)
        if why:
            raise err(f"{where}: {why}")
        if y.shape != (m, oh, ow):
            raise err(f"{where}: output {y.name!r} has shape {y.shape} but the layer computes "
                      f"{(m, oh, ow)} from the input {x.shape}")
        if not isinstance(layer.relu, (bool, np.bool_)):
            raise err(f"{where}: relu must be True or False, not {layer.relu!r}")
        if y.bits != self.act_bits:
            raise err(f"{where}: output {y.name!r} has {y.bits} bits but conv and FC outputs "
                      f"have the model's act_bits = {self.act_bits} bits (the post-processing "
                      f"unit writes act_bits-wide results)")
        if y.signed == bool(layer.relu):
            raise err(f"{where}: output {y.name!r} is {'signed' if y.signed else 'unsigned'} "
                      f"but relu={layer.relu}; a layer with ReLU writes an unsigned tensor, one "
                      f"without ReLU a signed tensor")
        # weights within row precision
        prec = layer.precision
        if prec.size and int(prec.max()) > max(Precision):
            r = int(np.argmax(prec > max(Precision)))
            raise err(f"{where}: precision[{r}] = {int(prec[r])} is not a Precision "
                      f"(0 = LO, 1 = HI)")
        wmax = np.where(prec == Precision.HI, Precision.HI.wmax, Precision.LO.wmax)
        flat = np.abs(w.reshape(m, -1).astype(np.int16))
        over = flat.max(axis=1) > wmax
        if over.any():
            r = int(np.flatnonzero(over)[0])
            k = int(np.argmax(flat[r] > wmax[r]))
            idx = (r,) + tuple(int(i) for i in np.unravel_index(k, w.shape[1:]))
            p = Precision(int(prec[r]))
            raise err(f"{where}: weight{list(idx)} = {int(w[idx])} is outside the range of row "
                      f"{r}'s precision {p.name} ({p.bits}-bit): [{-p.wmax}, {p.wmax}]")
        n_hi = int(np.count_nonzero(prec == Precision.HI))
        want = hi_row_count(self.ratio, m)
        if n_hi != want:
            raise err(f"{where}: {n_hi} of {m} rows are HI but the model ratio {self.ratio} "
                      f"needs exactly ceil({self.ratio} * {m}) = {want}")
        # numeric parameters
        checks = [("bias", layer.bias, spec.acc_range, f"the {spec.acc_bits}-bit accumulator"),
                  ("mult", layer.mult, spec.mult_range, f"unsigned {spec.mult_bits}-bit M"),
                  ("shift", layer.shift, spec.shift_range, "S (spec.shift_range)")]
        if (layer.residual is None) != (layer.res_mult is None):
            state = "missing" if layer.res_mult is None else "given"
            raise err(f"{where}: res_mult must be given exactly when residual is (residual = "
                      f"{layer.residual!r}, res_mult {state})")
        if layer.residual is not None:
            checks.append(("res_mult", layer.res_mult, spec.mult_range,
                           f"unsigned {spec.mult_bits}-bit Mr"))
            r = self.tensors[layer.residual]
            if r.shape != y.shape:
                raise err(f"{where}: residual {r.name!r} has shape {r.shape} but the output "
                          f"{y.name!r} has shape {y.shape}; they must be equal")
            if r.range[0] < RES_RANGE[0] or r.range[1] > RES_RANGE[1]:
                raise err(f"{where}: residual {r.name!r} range {r.range} exceeds {RES_RANGE}")
        for name, a, (lo, hi), what in checks:
            if a.size and (int(a.min()) < lo or int(a.max()) > hi):
                i = int(np.flatnonzero((a < lo) | (a > hi))[0])
                raise err(f"{where}: {name}[{i}] = {int(a[i])} is outside [{lo}, {hi}], the "
                          f"range of {what}")
        if layer.w_scale is not None and not np.all(np.isfinite(layer.w_scale)):
            raise err(f"{where}: w_scale must be finite")

    def _check_pool(self, layer: MaxPoolLayer, where, x, y):
        err = ModelFormatError
        k = layer.kernel
        if not (isinstance(k, tuple) and len(k) == 2 and all(_is_int(v) and v > 0 for v in k)):
            raise err(f"{where}: kernel {k!r} must be (kh, kw) of positive integers")
        oh, ow = self._check_geometry(where, k, layer.stride, layer.padding, x)
        if isinstance(layer, AvgPoolLayer):
            for f in ("ceil_mode", "count_include_pad"):
                if not isinstance(getattr(layer, f), bool):
                    raise err(f"{where}: {f} = {getattr(layer, f)!r} must be a bool")
            oh, ow = pool_output_hw(x.shape[1:], k, layer.stride, layer.padding,
                                    layer.ceil_mode)
        why = padding_error(k, layer.padding)
        if why:
            raise err(f"{where}: {why}")
        if y.shape != (x.shape[0], oh, ow):
            raise err(f"{where}: output {y.name!r} has shape {y.shape} but the layer computes "
                      f"{(x.shape[0], oh, ow)} from the input {x.shape}")
        self._check_same_format(where, x, y)

    # -- files -----------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the model to one ``.npz`` file at ``path`` (exactly that name, no suffix added).

        The model is validated first (:meth:`validate`). ``meta`` must be JSON-serializable.
        """
        self.validate()
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for layer in self.layers:
            d = {"kind": layer.kind, "name": layer.name, "input": layer.input,
                 "output": layer.output}
            if isinstance(layer, ConvLayer):
                d.update(stride=[int(v) for v in layer.stride],
                         padding=[int(v) for v in layer.padding], relu=bool(layer.relu),
                         residual=layer.residual, w_scale=layer.w_scale is not None)
                if layer.groups != 1:
                    d["groups"] = int(layer.groups)
                for name, _, _ in _CONV_ARRAYS:
                    a = getattr(layer, name)
                    if a is not None:
                        arrays[f"{layer.name}.{name}"] = a
            elif isinstance(layer, (MaxPoolLayer, AvgPoolLayer)):
                d.update(kernel=[int(v) for v in layer.kernel],
                         stride=[int(v) for v in layer.stride],
                         padding=[int(v) for v in layer.padding])
                if isinstance(layer, AvgPoolLayer):
                    d.update(ceil_mode=bool(layer.ceil_mode),
                             count_include_pad=bool(layer.count_include_pad))
            elif isinstance(layer, LutLayer):
                arrays[f"{layer.name}.table"] = layer.table
                d.update(function=str(layer.function))
            elif isinstance(layer, PermuteLayer):
                arrays[f"{layer.name}.perm"] = layer.perm
            elif isinstance(layer, MulLayer):
                d.update(gate=layer.gate, mult=int(layer.mult), shift=int(layer.shift))
            elif isinstance(layer, ConcatLayer):
                d.update(inputs=list(layer.inputs), mults=list(layer.mults),
                         shifts=list(layer.shifts))
                del d["input"]
            elif isinstance(layer, SliceLayer):
                d.update(starts=list(layer.starts), stops=list(layer.stops),
                         steps=list(layer.steps))
            layers.append(d)
        spec = None if self.spec is None else {
            "act_bits": self.spec.act_bits, "acc_bits": self.spec.acc_bits,
            "mult_bits": self.spec.mult_bits, "shift_bits": self.spec.shift_bits}
        meta = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION,
            "input": self.input, "output": self.output, "ratio": float(self.ratio),
            "act_bits": int(self.act_bits), "spec": spec, "meta": self.meta,
            "tensors": [{"name": t.name, "shape": [int(v) for v in t.shape], "bits": int(t.bits),
                         "signed": bool(t.signed), "scale": float(t.scale)}
                        for t in self.tensors.values()],
            "layers": layers,
        }
        try:
            text = json.dumps(meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ModelFormatError(f"model meta cannot be saved as JSON: {e}") from None
        arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path, *, validate: bool = True) -> "QModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        ModelFormatError
            For a file that is not a readable ``.npz`` (truncated, corrupt, another format), a
            wrong format name, a version newer than :data:`FORMAT_VERSION`, malformed metadata,
            a missing or unexpected array, an array with the wrong dtype or shape, or (with
            ``validate``) a model that fails :meth:`validate`. The message names the file and the
            problem.
        FileNotFoundError
            If ``path`` does not exist.
        """
        where = os.fspath(path)
        raw = read_input(where, "quantized model (.npz)")  # a regular file, never a FIFO/device
        try:
            if raw.startswith(b"\x93NUMPY"):
                raise ValueError("it holds a single .npy array, not an .npz archive")
            if not raw.startswith(b"PK"):
                # np.load would try to unpickle it and suggest allow_pickle: never for a model
                raise ValueError("it is not a ZIP archive (no 'PK' signature)")
            # every member's header is checked against its size before anything is allocated
            data = read_npz(raw, where)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError,
                NotImplementedError, RuntimeError) as e:
            # RuntimeError: zipfile's "encrypted, password required" (a flipped flag bit)
            raise ModelFormatError(
                f"{where} is not a readable ilmpq model file (.npz): {e}") from None

        def bad(msg):
            return ModelFormatError(f"{where}: {msg}")

        if _META_KEY not in data:
            raise bad(f"no {_META_KEY!r} entry; this is not an {FORMAT_NAME} file")
        m = data.pop(_META_KEY)
        if m.dtype != np.uint8 or m.ndim != 1:
            raise bad(f"{_META_KEY!r} must be a 1-D uint8 array of UTF-8 JSON, not "
                      f"{m.dtype} {m.shape}")
        try:
            # strict: no NaN/Infinity (save() never writes them), bounded nesting
            meta = loads_json(m.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise bad(f"{_META_KEY!r} is not valid UTF-8 JSON: {e}") from None
        if not isinstance(meta, dict):
            raise bad(f"{_META_KEY!r} must be a JSON object")

        def get(d, key, types, ctx):
            if key not in d:
                raise bad(f"{ctx} has no {key!r} field")
            v = d[key]
            if not isinstance(v, types) or (isinstance(v, bool) and bool not in (
                    types if isinstance(types, tuple) else (types,))):
                raise bad(f"{ctx} field {key!r} = {v!r} has the wrong type")
            return v

        fmt = meta.get("format")
        if fmt != FORMAT_NAME:
            raise bad(f"format name is {fmt!r}, not {FORMAT_NAME!r}")
        version = get(meta, "version", int, "metadata")
        if version > FORMAT_VERSION:
            raise bad(f"format version {version} is newer than this ilmpq reads (version "
                      f"{FORMAT_VERSION}); upgrade ilmpq")
        if version < 1:
            raise bad(f"format version {version} is not valid (versions start at 1)")

        tensors = {}
        for i, t in enumerate(get(meta, "tensors", list, "metadata")):
            ctx = f"tensor entry {i}"
            if not isinstance(t, dict):
                raise bad(f"{ctx} must be a JSON object")
            name = get(t, "name", str, ctx)
            shape = get(t, "shape", list, f"tensor {name!r}")
            tensors[name] = TensorSpec(
                name=name, shape=tuple(shape), bits=get(t, "bits", int, f"tensor {name!r}"),
                signed=get(t, "signed", bool, f"tensor {name!r}"),
                scale=float(get(t, "scale", (int, float), f"tensor {name!r}")))
        used = set()
        layers = []
        for i, d in enumerate(get(meta, "layers", list, "metadata")):
            ctx = f"layer entry {i}"
            if not isinstance(d, dict):
                raise bad(f"{ctx} must be a JSON object")
            kind = get(d, "kind", str, ctx)
            name = get(d, "name", str, ctx)
            ctx = f"layer {name!r}"
            if kind == "concat":
                ins = get(d, "inputs", list, ctx)
                if not ins or not all(isinstance(t, str) for t in ins):
                    raise bad(f"{ctx} field 'inputs' must be a non-empty list of names")
                layers.append(ConcatLayer(name, tuple(ins), get(d, "output", str, ctx),
                                          tuple(get(d, "mults", list, ctx)),
                                          tuple(get(d, "shifts", list, ctx))))
                continue
            io_ = dict(name=name, input=get(d, "input", str, ctx),
                       output=get(d, "output", str, ctx))
            if kind in ("lut", "permute"):
                key = f"{name}.{'table' if kind == 'lut' else 'perm'}"
                if key not in data:
                    raise bad(f"missing array {key!r}")
                a = data[key]
                used.add(key)
                if a.dtype != np.int64 or a.ndim != 1:
                    raise bad(f"array {key!r} is {a.dtype} with shape {a.shape}; it must be "
                              f"int64 with 1 dimension")
                if kind == "lut":
                    layers.append(LutLayer(**io_, table=a,
                                           function=str(d.get("function", ""))))
                else:
                    layers.append(PermuteLayer(**io_, perm=a))
                continue
            if kind == "mul":
                layers.append(MulLayer(io_["name"], io_["input"], get(d, "gate", str, ctx),
                                       io_["output"], get(d, "mult", int, ctx),
                                       get(d, "shift", int, ctx)))
                continue
            if kind == "slice":
                layers.append(SliceLayer(**io_, starts=tuple(get(d, "starts", list, ctx)),
                                         stops=tuple(get(d, "stops", list, ctx)),
                                         steps=tuple(get(d, "steps", list, ctx))))
                continue
            if kind == "conv":
                residual = d.get("residual")
                if residual is not None and not isinstance(residual, str):
                    raise bad(f"{ctx} field 'residual' = {residual!r} has the wrong type")
                has = {"res_mult": residual is not None,
                       "w_scale": get(d, "w_scale", bool, ctx)}
                arrs = {}
                for field_name, dtype, required in _CONV_ARRAYS:
                    key = f"{name}.{field_name}"
                    if not (required or has[field_name]):
                        continue
                    if key not in data:
                        raise bad(f"missing array {key!r}")
                    a = data[key]
                    used.add(key)
                    want_ndim = 4 if field_name == "weight" else 1
                    if a.dtype != dtype or a.ndim != want_ndim:
                        raise bad(f"array {key!r} is {a.dtype} with shape {a.shape}; it must be "
                                  f"{dtype} with {want_ndim} dimension(s)")
                    if field_name != "weight" and a.shape != (arrs["weight"].shape[0],):
                        raise bad(f"array {key!r} has shape {a.shape}; it must be "
                                  f"({arrs['weight'].shape[0]},), one per output channel")
                    arrs[field_name] = a
                layers.append(ConvLayer(
                    **io_, **arrs, stride=tuple(get(d, "stride", list, ctx)),
                    padding=tuple(get(d, "padding", list, ctx)),
                    relu=get(d, "relu", bool, ctx), residual=residual,
                    groups=get(d, "groups", int, ctx) if "groups" in d else 1))
            elif kind == "maxpool":
                layers.append(MaxPoolLayer(
                    **io_, kernel=tuple(get(d, "kernel", list, ctx)),
                    stride=tuple(get(d, "stride", list, ctx)),
                    padding=tuple(get(d, "padding", list, ctx))))
            elif kind == "avgpool":
                layers.append(AvgPoolLayer(
                    **io_, kernel=tuple(get(d, "kernel", list, ctx)),
                    stride=tuple(get(d, "stride", list, ctx)),
                    padding=tuple(get(d, "padding", list, ctx)),
                    ceil_mode=get(d, "ceil_mode", bool, ctx),
                    count_include_pad=get(d, "count_include_pad", bool, ctx)))
            elif kind in ("gap", "flatten"):
                layers.append(_LAYER_CLASSES[kind](**io_))
            else:
                raise bad(f"{ctx} has unknown kind {kind!r}; kinds are "
                          f"{', '.join(_LAYER_CLASSES)}")
        extra = sorted(set(data) - used)
        if extra:
            raise bad(f"unexpected array {extra[0]!r} that no layer uses")
        spec_d = meta.get("spec")
        spec = None
        if spec_d is not None:
            if not isinstance(spec_d, dict):
                raise bad("metadata field 'spec' must be a JSON object or null")
            try:
                spec = NumericSpec(**{k: get(spec_d, k, int, "spec") for k in (
                    "act_bits", "acc_bits", "mult_bits", "shift_bits")})
            except ValueError as e:
                if isinstance(e, ModelFormatError):
                    raise
                raise bad(f"invalid numeric spec: {e}") from None
        user_meta = meta.get("meta", {})
        if not isinstance(user_meta, dict):
            raise bad("metadata field 'meta' must be a JSON object")
        model = cls(tensors=tensors, layers=layers, input=get(meta, "input", str, "metadata"),
                    output=get(meta, "output", str, "metadata"),
                    ratio=float(get(meta, "ratio", (int, float), "metadata")),
                    act_bits=get(meta, "act_bits", int, "metadata"), meta=user_meta, spec=spec)
        if validate:
            try:
                model.validate()
            except ModelFormatError as e:
                raise bad(str(e)) from None
        return model
