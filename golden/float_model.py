"""The float graph IR that the ONNX importer produces and the quantizer consumes.

A :class:`FloatModel` is a small, already-fused CNN graph whose node kinds mirror the integer
layers of :mod:`ilmpq.golden.model`:

``FConv``
    ``y = act(conv(x, W, stride, padding) + b [+ residual])`` with ``act`` ReLU or identity.
    Batch normalization, a constant bias ``Add`` and a residual ``Add`` are already folded in by
    the importer. A fully connected layer (ONNX ``Gemm`` / ``MatMul``) is an ``FConv`` with a
    ``1 x 1`` kernel applied to a ``(K, 1, 1)`` tensor, exactly as in the integer model.
``FMaxPool``
    Max over a ``kh x kw`` window with stride; padding positions never win (``-inf``).
``FAvgPool``
    ONNX ``AveragePool``: the mean of each ``kh x kw`` window over its divisor (padding,
    ``ceil_mode``, ``count_include_pad``).
``FGlobalAvgPool``
    Mean over the spatial positions, ``(C, H, W) -> (C, 1, 1)``.
``FFlatten``
    ``(C, H, W) -> (C*H*W, 1, 1)`` in C order (channel-major), like ONNX ``Flatten(axis=1)``.

Tensors are named; every node reads named tensors and writes one. Shapes are per image
``(C, H, W)``; :meth:`FloatModel.run` executes a batch ``(N, C, H, W)`` in float64 NumPy.

The network input of a float model is the *normalized* image ``x = (p - mean) / std``, where
``p`` are the pixels (0..255) and ``mean``/``std`` the per-channel normalization stored in
:attr:`FloatModel.input_mean` / :attr:`FloatModel.input_std`. The quantizer folds that
normalization into the first layer so that the integer network reads raw ``uint8`` pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .errors import IlmpqTypeError, IlmpqValueError

__all__ = [
    "FConv", "FMaxPool", "FAvgPool", "FGlobalAvgPool", "FFlatten", "FPointwise", "FMul",
    "FConcat", "FSlice", "FPermute", "FNode", "FloatModel",
    "FloatModelError", "conv2d_float", "im2col", "max_pool_float",
]


class FloatModelError(IlmpqValueError):
    """A float model is malformed or an input does not fit it; the message names the problem."""


@dataclass
class FConv:
    """Convolution or fully connected layer with fused bias, residual add and ReLU.

    ``weight`` is float64 ``(M, C, kh, kw)``, ``bias`` float64 ``(M,)``; ``padding`` is
    ``(top, left, bottom, right)`` (zero padding); ``residual`` names a tensor of the output's
    shape added before the ReLU.
    """

    name: str
    input: str
    output: str
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    relu: bool = False
    residual: str | None = None
    #: upper bound after the ReLU (ReLU6 / ``Clip(0, c)``): ``y = min(relu(...), clip_max)``. The
    #: quantizer needs nothing more: the calibration activations never exceed it, so the output
    #: scale puts ``qmax`` at or below it and the integer clamp to ``[0, qmax]`` is the clip.
    clip_max: float | None = None
    #: grouped convolution (ONNX ``group``): ``weight`` is ``(M, C / groups, kh, kw)``
    groups: int = 1
    kind: str = field(default="conv", init=False)

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1]) * int(self.groups)

    def inputs(self) -> list[str]:
        return [self.input] + ([self.residual] if self.residual is not None else [])


@dataclass
class FMaxPool:
    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    kind: str = field(default="maxpool", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FAvgPool:
    """ONNX ``AveragePool`` (``ceil_mode``, ``count_include_pad``): the float mean of each
    window over its divisor (:func:`~ilmpq.golden.ops.avg_pool_divisors`)."""

    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False
    kind: str = field(default="avgpool", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FGlobalAvgPool:
    name: str
    input: str
    output: str
    kind: str = field(default="gap", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FFlatten:
    name: str
    input: str
    output: str
    kind: str = field(default="flatten", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FPointwise:
    """``y = fn(x)`` elementwise: a fused chain of elementwise ops of one tensor (quantized as one
    lookup table). ``fn`` maps a float64 array to one of the same shape; ``function`` says what
    it is (the ONNX ops)."""

    name: str
    input: str
    output: str
    fn: object
    function: str = ""
    kind: str = field(default="pointwise", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FMul:
    """``y = x * g``, ``g`` of ``x``'s shape or ``(C, 1, 1)`` (gating)."""

    name: str
    input: str
    gate: str
    output: str
    kind: str = field(default="mul", init=False)

    def inputs(self) -> list[str]:
        return [self.input, self.gate]


@dataclass
class FConcat:
    """Channel concatenation."""

    name: str
    inputs_: tuple
    output: str
    kind: str = field(default="concat", init=False)

    @property
    def input(self) -> str:
        return self.inputs_[0]

    def inputs(self) -> list[str]:
        return list(self.inputs_)


@dataclass
class FSlice:
    """``x[c0:c1:cs, h0:h1:hs, w0:w1:ws]``."""

    name: str
    input: str
    output: str
    starts: tuple
    stops: tuple
    steps: tuple
    kind: str = field(default="slice", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


@dataclass
class FPermute:
    """``y[c] = x[perm[c]]`` (channel shuffle)."""

    name: str
    input: str
    output: str
    perm: np.ndarray
    kind: str = field(default="permute", init=False)

    def inputs(self) -> list[str]:
        return [self.input]


FNode = (FConv | FMaxPool | FAvgPool | FGlobalAvgPool | FFlatten | FPointwise | FMul | FConcat
         | FSlice | FPermute)


def _out_size(size: int, k: int, s: int, p0: int, p1: int) -> int:
    return (size + p0 + p1 - k) // s + 1


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int, int, int], pad_value: float = 0.0) -> np.ndarray:
    """Return the sliding windows of a batch ``(N, C, H, W)`` as ``(N, C, Ho, Wo, kh, kw)``.

    A view where possible (no copy beyond the padding). Row ``(c, i, j)`` of a flattened window
    matches column ``(c, i, j)`` of ``weight.reshape(M, -1)``.
    """
    kh, kw = kernel
    sh, sw = stride
    pt, pl, pb, pr = padding
    if any(padding):
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw]


def conv2d_float(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                 groups: int = 1) -> np.ndarray:
    """Float 2-D convolution (cross-correlation, as ONNX ``Conv``) of a batch ``(N, C, H, W)``;
    ``groups`` as ONNX ``group``."""
    win = im2col(x, weight.shape[2:], stride, padding)
    if groups == 1:
        y = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, M)
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    else:
        n, c, ho, wo, kh, kw = win.shape
        m = weight.shape[0]
        wg = win.reshape(n, groups, c // groups, ho, wo, kh, kw)
        kg = weight.reshape(groups, m // groups, c // groups, kh, kw)
        y = np.einsum("ngchwij,gmcij->ngmhw", wg, kg, optimize=True).reshape(n, m, ho, wo)
        y = np.ascontiguousarray(y)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def max_pool_float(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """Float max pooling of a batch; padding positions are ``-inf`` and never win."""
    win = im2col(x, kernel, stride, padding, pad_value=-np.inf)
    return win.max(axis=(4, 5))


def avg_pool_float(x: np.ndarray, kernel, stride, padding=(0, 0, 0, 0), ceil_mode=False,
                   count_include_pad=False) -> np.ndarray:
    """Float average pooling of a batch ``(N, C, H, W)`` (ONNX ``AveragePool``)."""
    from .ops import avg_pool_divisors, pool_output_hw
    kh, kw = kernel
    sy, sx = stride
    pt, pl, pb, pr = padding
    h, w = x.shape[2:]
    oh, ow = pool_output_hw((h, w), kernel, stride, padding, ceil_mode)
    eb = max(0, (oh - 1) * sy + kh - (h + pt + pb))
    er = max(0, (ow - 1) * sx + kw - (w + pl + pr))
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pt, pb + eb), (pl, pr + er)))
    s = np.zeros(x.shape[:2] + (oh, ow))
    for kr in range(kh):
        for kc in range(kw):
            s += xp[:, :, kr:kr + sy * (oh - 1) + 1:sy, kc:kc + sx * (ow - 1) + 1:sx]
    return s / avg_pool_divisors((h, w), kernel, stride, padding, ceil_mode, count_include_pad)


@dataclass
class FloatModel:
    """An imported float CNN: nodes in execution order and per-image tensor shapes.

    Parameters
    ----------
    input : str
        Name of the network input tensor (the normalized image).
    output : str
        Name of the network output tensor.
    nodes : list of FNode
        Nodes in a valid execution order.
    shapes : dict of str to (C, H, W)
        Shape of every tensor, per image.
    input_mean, input_std : numpy.ndarray
        Per-channel normalization ``x = (p - mean) / std`` of the pixels ``p`` (0..255), float64
        ``(C,)``; defaults ``0`` and ``1`` (the model reads raw pixel values).
    output_rank : int
        Rank of the ONNX output (2 for ``(N, classes)`` logits, 4 for ``NCHW``);
        :meth:`run` returns ``(N, C, H, W)``, :meth:`predict` the ONNX shape.
    meta : dict
        Provenance (source file, ONNX metadata properties).
    """

    input: str
    output: str
    nodes: list
    shapes: dict
    input_mean: np.ndarray | None = None
    input_std: np.ndarray | None = None
    output_rank: int = 4
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        c = self.shapes[self.input][0]
        self.input_mean = self._norm_vector("input_mean", self.input_mean, 0.0, c)
        self.input_std = self._norm_vector("input_std", self.input_std, 1.0, c)
        if np.any(self.input_std <= 0) or not np.all(np.isfinite(self.input_std)):
            raise FloatModelError(
                f"input_std must be positive and finite for every channel, not {self.input_std}")
        self.validate()

    @staticmethod
    def _norm_vector(name, v, default, c):
        if v is None:
            return np.full(c, default, dtype=np.float64)
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
        if arr.size == 1:
            arr = np.full(c, float(arr[0]))
        if arr.shape != (c,):
            raise FloatModelError(
                f"{name} must be a scalar or have one value per input channel ({c}), "
                f"not {arr.size} values")
        if not np.all(np.isfinite(arr)):
            raise FloatModelError(f"{name} must be finite, not {arr}")
        return arr

    # -- structure -----------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.shapes[self.input])

    def producers(self) -> dict[str, FNode]:
        return {n.output: n for n in self.nodes}

    def consumers(self) -> dict[str, list[FNode]]:
        cons: dict[str, list] = {t: [] for t in self.shapes}
        for n in self.nodes:
            for t in n.inputs():
                cons[t].append(n)
        return cons

    def node(self, name: str) -> FNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def validate(self) -> None:
        """Check names, execution order and shapes; raise :class:`FloatModelError` if broken."""
        known = {self.input}
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise FloatModelError(f"two nodes are named {n.name!r}")
            names.add(n.name)
            for t in n.inputs():
                if t not in known:
                    raise FloatModelError(
                        f"node {n.name!r} reads tensor {t!r} before it is produced")
            if n.output in known:
                raise FloatModelError(f"tensor {n.output!r} is produced twice")
            known.add(n.output)
            if n.output not in self.shapes or any(t not in self.shapes for t in n.inputs()):
                raise FloatModelError(f"node {n.name!r}: a tensor shape is missing")
            expect = self._infer_shape(n)
            if tuple(self.shapes[n.output]) != expect:
                raise FloatModelError(
                    f"node {n.name!r}: output shape {tuple(self.shapes[n.output])} does not "
                    f"match the computed {expect}")
        if self.output not in known:
            raise FloatModelError(f"output tensor {self.output!r} is never produced")

    def _infer_shape(self, n: FNode) -> tuple[int, int, int]:
        c, h, w = self.shapes[n.input]
        if isinstance(n, FConv):
            if (n.weight.ndim != 4 or n.groups < 1 or n.weight.shape[1] * n.groups != c
                    or n.weight.shape[0] % n.groups):
                raise FloatModelError(
                    f"node {n.name!r}: weight shape {n.weight.shape} does not fit input "
                    f"channels {c}")
            if n.bias.shape != (n.out_channels,):
                raise FloatModelError(f"node {n.name!r}: bias shape {n.bias.shape} must be "
                                      f"({n.out_channels},)")
            kh, kw = n.kernel
            out = (n.out_channels, _out_size(h, kh, n.stride[0], n.padding[0], n.padding[2]),
                   _out_size(w, kw, n.stride[1], n.padding[1], n.padding[3]))
            if n.clip_max is not None and not (n.relu and np.isfinite(n.clip_max)
                                                and n.clip_max > 0):
                raise FloatModelError(
                    f"node {n.name!r}: clip_max {n.clip_max} needs relu and a positive finite "
                    f"bound (ReLU6 / Clip(0, c))")
            if n.residual is not None and tuple(self.shapes[n.residual]) != out:
                raise FloatModelError(
                    f"node {n.name!r}: residual {n.residual!r} has shape "
                    f"{tuple(self.shapes[n.residual])}, output has {out}")
            return out
        if isinstance(n, FMaxPool):
            kh, kw = n.kernel
            return (c, _out_size(h, kh, n.stride[0], n.padding[0], n.padding[2]),
                    _out_size(w, kw, n.stride[1], n.padding[1], n.padding[3]))
        if isinstance(n, FAvgPool):
            from .ops import pool_output_hw
            return (c, *pool_output_hw((h, w), n.kernel, n.stride, n.padding, n.ceil_mode))
        if isinstance(n, FGlobalAvgPool):
            return (c, 1, 1)
        if isinstance(n, FFlatten):
            return (c * h * w, 1, 1)
        if isinstance(n, (FPointwise, FPermute)):
            return (c, h, w)
        if isinstance(n, FMul):
            g = tuple(self.shapes[n.gate])
            if g[0] != c or g[1:] not in ((1, 1), (h, w)):
                raise FloatModelError(f"node {n.name!r}: gate shape {g} does not fit {(c, h, w)}")
            return (c, h, w)
        if isinstance(n, FConcat):
            shapes = [tuple(self.shapes[t]) for t in n.inputs()]
            if any(s[1:] != (h, w) for s in shapes):
                raise FloatModelError(f"node {n.name!r}: concat inputs {shapes} differ in H, W")
            return (sum(s[0] for s in shapes), h, w)
        if isinstance(n, FSlice):
            return tuple(len(range(a, b, st)) for a, b, st in zip(n.starts, n.stops, n.steps))
        raise FloatModelError(f"unknown node type {type(n).__name__}")

    def macs(self) -> int:
        """Multiply-accumulates of one inference (conv and FC layers)."""
        total = 0
        for n in self.nodes:
            if isinstance(n, FConv):
                _, ho, wo = self.shapes[n.output]
                total += ho * wo * n.weight.size
        return int(total)

    def n_params(self) -> int:
        return int(sum(n.weight.size + n.bias.size for n in self.nodes if isinstance(n, FConv)))

    def replace(self, **changes) -> "FloatModel":
        return dataclasses.replace(self, **changes)

    # -- execution -----------------------------------------------------------------------------

    def check_input(self, x) -> np.ndarray:
        """Validate a batch ``(N, C, H, W)`` (or one image ``(C, H, W)``) and return float64."""
        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise IlmpqTypeError(f"model input must be a numeric array, not dtype {arr.dtype}")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.input_shape:
            raise FloatModelError(
                f"model input must have shape (N, {', '.join(map(str, self.input_shape))}) "
                f"(NCHW), not {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise FloatModelError("model input contains NaN or infinite values")
        return arr

    def normalize(self, pixels) -> np.ndarray:
        """``(pixels - input_mean) / input_std`` per channel, for a batch ``(N, C, H, W)``."""
        p = self.check_input(pixels)
        return (p - self.input_mean[None, :, None, None]) / self.input_std[None, :, None, None]

    def run(self, x, *, all_tensors: bool = False):
        """Execute the graph on a batch of *normalized* inputs ``(N, C, H, W)``.

        Returns the output ``(N, C, H, W)`` (``(N, K, 1, 1)`` for FC logits), or, with
        ``all_tensors=True``, a dict of every tensor by name.
        """
        env = {self.input: self.check_input(x)}
        for n in self.nodes:
            env[n.output] = self._exec(n, env)
        return env if all_tensors else env[self.output]

    def predict(self, x) -> np.ndarray:
        """Like :meth:`run`, but the output in the ONNX model's shape (``(N, K)`` for logits)."""
        y = self.run(x)
        return y.reshape(y.shape[0], -1) if self.output_rank == 2 else y

    @staticmethod
    def _exec(n: FNode, env: dict) -> np.ndarray:
        x = env[n.input]
        if isinstance(n, FConv):
            y = conv2d_float(x, n.weight, n.bias, n.stride, n.padding, n.groups)
            if n.residual is not None:
                y = y + env[n.residual]
            y = np.maximum(y, 0.0) if n.relu else y
            return np.minimum(y, n.clip_max) if n.clip_max is not None else y
        if isinstance(n, FMaxPool):
            return max_pool_float(x, n.kernel, n.stride, n.padding)
        if isinstance(n, FAvgPool):
            return avg_pool_float(x, n.kernel, n.stride, n.padding, n.ceil_mode,
                                  n.count_include_pad)
        if isinstance(n, FGlobalAvgPool):
            return x.mean(axis=(2, 3), keepdims=True)
        if isinstance(n, FFlatten):
            return x.reshape(x.shape[0], -1, 1, 1)
        if isinstance(n, FPointwise):
            return np.asarray(n.fn(x), np.float64)
        if isinstance(n, FMul):
            return x * env[n.gate]
        if isinstance(n, FConcat):
            return np.concatenate([env[t] for t in n.inputs()], axis=1)
        if isinstance(n, FSlice):
            return x[:, slice(n.starts[0], n.stops[0], n.steps[0]),
                     slice(n.starts[1], n.stops[1], n.steps[1]),
                     slice(n.starts[2], n.stops[2], n.steps[2])]
        if isinstance(n, FPermute):
            return x[:, n.perm]
        raise FloatModelError(f"unknown node type {type(n).__name__}")
