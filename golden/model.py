"""The quantized-model format: a graph of integer layers (DESIGN.md section 3).

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
``GlobalAvgPoolLayer``
    ``y[c] = floor((sum_p x[c,p] + N//2) / N)``, i.e. round half up, ``N = H*W``.
``FlattenLayer``
    ``(C, H, W) -> (C*H*W, 1, 1)`` in C-order (channel-major), a no-op on data.

Files
-----
:meth:`QModel.save` writes one ``.npz`` whose ``__meta__`` entry is JSON (format name, version,
graph, tensor specs, scalar layer fields) and whose other entries are the layer arrays
(``<layer>.weight`` ...). :meth:`QModel.load` checks the format name and version and every array's
dtype, shape and range, and names the problem on failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import IlmpqValueError
from .formats import Precision

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "TensorSpec", "ConvLayer", "MaxPoolLayer",
    "GlobalAvgPoolLayer", "FlattenLayer", "Layer", "QModel", "ModelFormatError",
]

FORMAT_NAME = "ilmpq-qmodel"
FORMAT_VERSION = 1


class ModelFormatError(IlmpqValueError):
    """A quantized-model file or object is malformed; the message names the problem."""


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
    kind: str = field(default="conv", init=False)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    def is_fc(self) -> bool:
        return self.kernel == (1, 1) and self.stride == (1, 1) and not any(self.padding)

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


Layer = ConvLayer | MaxPoolLayer | GlobalAvgPoolLayer | FlattenLayer


@dataclass
class QModel:
    """A quantized network: tensors, layers in execution order, input and output names.

    ``input`` is the unsigned 8-bit pixel tensor (input normalization folded into the first
    layer). ``meta`` carries free-form provenance (source model, ratio, calibration ...), saved as
    JSON.
    """

    tensors: dict[str, TensorSpec]
    layers: list[Layer]
    input: str
    output: str
    ratio: float  #: the high-precision row share R every conv/FC layer was quantized with
    act_bits: int
    meta: dict = field(default_factory=dict)
