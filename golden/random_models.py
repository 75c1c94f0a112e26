"""Valid random quantized networks for tests and benchmarks.

:func:`random_qmodel` draws small networks that exercise every feature of the model format (conv
kernels 1/3/5/7, strides 1/2, symmetric and asymmetric padding, channel counts that are multiples
of nothing in particular, residual blocks with identity and projection shortcuts, max pooling,
global average pooling, flatten, an FC head). :func:`resnet18_qmodel` builds ResNet-18 with its
real layer shapes. Both are deterministic functions of the generator state.

Every model passes :meth:`~ilmpq.golden.model.QModel.validate` and
:func:`~ilmpq.golden.ops.check_no_overflow` for its spec, has exactly
:func:`~ilmpq.golden.model.hi_row_count` ``HI`` rows per conv/FC layer (placed at random row
positions), and has requantization parameters calibrated on one image (``calib_image``, by
default uniform random pixels) so that outputs spread over their range instead of saturating or
vanishing: per output channel, the bias centres the accumulator's median near zero and
``M / 2**S`` maps the 98th percentile of the (positive, or absolute for signed outputs)
pre-clamp value to ``qmax`` (layer-wide statistics instead of per-channel ones for layers with
fewer than 4 output pixels, e.g. FC layers). ``M``, ``Mr`` and ``S`` are chosen with the largest
``S`` that keeps both multipliers within ``spec.mult_bits``.

The signatures are a stable API (the compiler's tests and the benchmarks use them).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .errors import IlmpqTypeError, IlmpqValueError
from .formats import NumericSpec, Precision
from .model import (
    AvgPoolLayer, ConvLayer, FlattenLayer, GlobalAvgPoolLayer, MaxPoolLayer, QModel, TensorSpec,
    hi_row_count,
)
from .ops import (
    avg_pool, check_no_overflow, conv2d_acc, conv_output_hw, flatten, global_avg_pool, max_pool,
    output_range, requantize,
)

__all__ = ["random_qmodel", "resnet18_qmodel", "ModelBuilder", "random_layer_case"]

#: Percentile of the pre-clamp output that requantization maps to ``qmax``.
_CALIB_PERCENTILE = 98.0
#: Rows with fewer output pixels than this (FC layers) are calibrated with layer-wide statistics.
_MIN_ROW_PIXELS = 4


class ModelBuilder:
    """Build a :class:`~ilmpq.golden.model.QModel` layer by layer with random weights.

    Each ``conv``/``fc`` call draws the weights, places the ``HI`` rows, and calibrates the bias
    and the requantization parameters on the values the calibration image produces at that
    point of the network. Useful for hand-made test topologies beyond :func:`random_qmodel`.

    Parameters
    ----------
    rng : numpy.random.Generator
    spec : NumericSpec
    ratio : Fraction or float
        High-precision row share of every conv/FC layer.
    input_shape : (C, H, W)
    calib_image : uint8 array of ``input_shape``, optional
        Defaults to uniform random pixels drawn from ``rng``.
    """

    def __init__(self, rng: np.random.Generator, *, spec: NumericSpec, ratio,
                 input_shape=(3, 16, 16), calib_image=None):
        if not isinstance(rng, np.random.Generator):
            raise IlmpqTypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), not "
                f"{type(rng).__name__}")
        if not isinstance(spec, NumericSpec):
            raise IlmpqTypeError(f"spec must be a NumericSpec, not {type(spec).__name__}")
        hi_row_count(ratio, 1)  # validates the ratio
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise IlmpqValueError(
                f"input_shape must be (C, H, W) of positive integers, not {input_shape!r}")
        self.rng, self.spec, self.ratio = rng, spec, ratio
        self.tensors: dict[str, TensorSpec] = {}
        self.layers: list = []
        self.values: dict[str, np.ndarray] = {}
        self.input = "input"
        self.tensors["input"] = TensorSpec("input", shape, 8, False, 1.0)
        if calib_image is None:
            calib_image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        img = np.asarray(calib_image)
        if img.shape != shape or img.dtype != np.uint8:
            raise IlmpqValueError(
                f"calib_image must be a uint8 array of shape {shape}, not {img.dtype} "
                f"{img.shape}")
        self.values["input"] = img

    def shape(self, name: str) -> tuple[int, int, int]:
        return self.tensors[name].shape

    # -- layers ----------------------------------------------------------------------------------

    def conv(self, name: str, inp: str, out_channels: int, kernel, *, stride=(1, 1),
             padding=(0, 0, 0, 0), relu: bool = True, residual: str | None = None,
             res_gain: float | None = None) -> str:
        """Append a conv layer writing tensor ``name``; returns ``name``.

        ``res_gain`` is the share of the output range the residual takes (default: random in
        ``[0.3, 0.6]``).
        """
        rng, spec = self.rng, self.spec
        x, xv = self.tensors[inp], self.values[inp]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        m, c = int(out_channels), x.shape[0]
        oh, ow = conv_output_hw(x.shape[1:], (kh, kw), stride, padding)

        prec = np.zeros(m, np.uint8)
        prec[rng.choice(m, hi_row_count(self.ratio, m), replace=False)] = Precision.HI
        wmax = np.where(prec == Precision.HI, Precision.HI.wmax, Precision.LO.wmax)
        wlim = wmax.astype(np.float32)[:, None, None, None]
        w = rng.standard_normal((m, c, kh, kw), dtype=np.float32)
        w *= 0.45 * wlim
        np.rint(w, out=w)
        np.clip(w, -wlim, wlim, out=w)
        w = w.astype(np.int32)
        # keep the worst case within 3/4 of the accumulator range, leaving room for the bias
        limit = spec.acc_range[1]
        amax = (1 << x.bits) - 1
        bound = np.abs(w).reshape(m, -1).sum(axis=1) * amax
        budget = (limit * 3) // 4
        over = bound > budget
        if over.any():
            factor = budget / bound[over]
            w[over] = np.trunc(w[over] * factor[:, None, None, None]).astype(np.int32)
            bound = np.abs(w).reshape(m, -1).sum(axis=1) * amax
        w = w.astype(np.int8)

        sums = conv2d_acc(xv, w, np.zeros(m, np.int64), stride=stride, padding=padding,
                          spec=spec, precision=prec, in_bits=x.bits).reshape(m, -1)
        if sums.shape[1] >= _MIN_ROW_PIXELS:
            med, std = np.median(sums, axis=1), sums.std(axis=1)
        else:  # too few pixels per row (FC): layer-wide statistics
            med, std = np.full(m, np.median(sums)), np.full(m, sums.std())
        bias = np.rint(-med + rng.normal(0.0, 0.25, m) * std)
        room = (limit - bound).astype(np.float64)
        bias = np.clip(bias, -room, room).astype(np.int64)
        acc = sums + bias[:, None]

        out_bits = spec.act_bits
        qmin, qmax = output_range(out_bits, not relu, relu)
        pre = acc.astype(np.float64)
        g = np.zeros(m)
        if residual is not None:
            r = self.tensors[residual]
            if r.shape != (m, oh, ow):
                raise IlmpqValueError(
                    f"residual {residual!r} has shape {r.shape}, the conv output is "
                    f"{(m, oh, ow)}")
            rv = self.values[residual].astype(np.float64).reshape(m, -1)
            gain = rng.uniform(0.3, 0.6) if res_gain is None else float(res_gain)
            rscale = max(float(np.percentile(np.abs(rv), _CALIB_PERCENTILE)), 1.0)
            f0 = self._gain(pre, relu, qmax) * (1.0 - gain)
            g[:] = gain * qmax / rscale
            pre = pre * f0[:, None] + rv * g[:, None]
            adjust = self._gain(pre, relu, qmax)
            f, g = f0 * adjust, g * adjust
        else:
            f = self._gain(pre, relu, qmax)
        mult, res_mult, shift = self._fixed_point(f, g if residual is not None else None)

        scale_in = x.scale
        w_scale = 1.0 / wmax.astype(np.float64)
        out_scale = float(np.median(scale_in * w_scale / np.maximum(f, 1e-30)))
        self.tensors[name] = TensorSpec(name, (m, oh, ow), out_bits, not relu, out_scale)
        layer = ConvLayer(name=name, input=inp, output=name, weight=w, precision=prec,
                          bias=bias, mult=mult, shift=shift, stride=stride, padding=padding,
                          relu=relu, residual=residual, res_mult=res_mult, w_scale=w_scale)
        check_no_overflow(layer, x.bits, spec)
        self.layers.append(layer)
        res = None if residual is None else self.values[residual]
        y = requantize(acc.reshape(m, oh, ow), mult, shift, res=res, res_mult=res_mult,
                       relu=relu, out_bits=out_bits, out_signed=not relu, spec=spec)
        self.values[name] = y.astype(self.tensors[name].dtype)
        return name

    def fc(self, name: str, inp: str, out_features: int, *, relu: bool = False) -> str:
        """Append a fully connected layer (1x1 conv on a ``(K, 1, 1)`` tensor)."""
        return self.conv(name, inp, out_features, 1, relu=relu)

    def maxpool(self, name: str, inp: str, kernel, stride=None, padding=0) -> str:
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        stride = kernel if stride is None else (
            (stride, stride) if isinstance(stride, int) else tuple(stride))
        padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        y = max_pool(self.values[inp], kernel, stride, padding)
        x = self.tensors[inp]
        self.tensors[name] = TensorSpec(name, y.shape, x.bits, x.signed, x.scale)
        self.layers.append(MaxPoolLayer(name, inp, name, kernel, stride, padding))
        self.values[name] = y
        return name

    def avgpool(self, name: str, inp: str, kernel, stride=None, padding=0, *,
                ceil_mode: bool = False, count_include_pad: bool = False) -> str:
        kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
        stride = kernel if stride is None else (
            (stride, stride) if isinstance(stride, int) else tuple(stride))
        padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        y = avg_pool(self.values[inp], kernel, stride, padding, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad)
        x = self.tensors[inp]
        self.tensors[name] = TensorSpec(name, y.shape, x.bits, x.signed, x.scale)
        self.layers.append(AvgPoolLayer(name, inp, name, kernel, stride, padding, ceil_mode,
                                        count_include_pad))
        self.values[name] = y
        return name

    def gap(self, name: str, inp: str) -> str:
        y = global_avg_pool(self.values[inp])
        x = self.tensors[inp]
        self.tensors[name] = TensorSpec(name, y.shape, x.bits, x.signed, x.scale)
        self.layers.append(GlobalAvgPoolLayer(name, inp, name))
        self.values[name] = y
        return name

    def flatten(self, name: str, inp: str) -> str:
        y = flatten(self.values[inp])
        x = self.tensors[inp]
        self.tensors[name] = TensorSpec(name, y.shape, x.bits, x.signed, x.scale)
        self.layers.append(FlattenLayer(name, inp, name))
        self.values[name] = y
        return name

    def build(self, output: str, meta: dict | None = None) -> QModel:
        """Return the validated model whose output is tensor ``output``."""
        model = QModel(tensors=dict(self.tensors), layers=list(self.layers), input=self.input,
                       output=output, ratio=float(self.ratio), act_bits=self.spec.act_bits,
                       meta=dict(meta or {}), spec=self.spec)
        model.validate()
        return model

    # -- calibration helpers -------------------------------------------------------------------

    @staticmethod
    def _gain(pre: np.ndarray, relu: bool, qmax: int) -> np.ndarray:
        """Per row: the factor that maps the calibration percentile of ``pre`` to ``qmax``."""
        m = pre.shape[0]
        rows = pre.reshape(1, -1) if pre.shape[1] < _MIN_ROW_PIXELS else pre
        vals = np.sort(rows if relu else np.abs(rows), axis=1)
        n = vals.shape[1]
        k = np.count_nonzero(vals > 0, axis=1) if relu else np.full(len(vals), n)
        start = n - k  # relu: the percentile of the positive values only
        pos = start + (_CALIB_PERCENTILE / 100.0) * np.maximum(k - 1, 0)
        lo = np.minimum(np.floor(pos).astype(np.int64), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        idx = np.arange(len(vals))
        p = vals[idx, lo] + (vals[idx, hi] - vals[idx, lo]) * (pos - lo)
        p = np.where((k > 0) & (p > 0), p, np.maximum(np.abs(rows).max(axis=1), 1.0))
        return np.broadcast_to(qmax / p, (m,)).copy()

    def _fixed_point(self, f: np.ndarray, g: np.ndarray | None):
        """``M ~ f * 2**S`` (and ``Mr ~ g * 2**S``) with the largest ``S`` keeping both in range."""
        spec = self.spec
        mmax = spec.mult_range[1]
        smin, smax = spec.shift_range
        top = f if g is None else np.maximum(f, g)
        s = np.floor(np.log2(mmax / np.maximum(top, 1e-300)))
        s = np.clip(s, smin, smax).astype(np.int64)
        p2 = np.ldexp(1.0, s)
        mult = np.clip(np.rint(f * p2), 1, mmax).astype(np.int64)
        res_mult = None if g is None else np.clip(np.rint(g * p2), 0, mmax).astype(np.int64)
        return mult, res_mult, s


def _spec_or_default(spec) -> NumericSpec:
    return NumericSpec() if spec is None else spec


def random_qmodel(rng: np.random.Generator, *, spec: NumericSpec | None = None,
                  ratio=Fraction(1, 8), input_shape=(3, 16, 16), num_blocks: int = 3,
                  max_channels: int = 24, kernels=(1, 3, 5, 7), num_classes: int | None = 10,
                  maxpool: bool = True, residual: bool = True, calib_image=None) -> QModel:
    """A random, valid quantized CNN.

    Topology: a stem conv (a kernel from ``kernels`` no larger than the input, with random
    asymmetric padding below half the kernel; if none fits, the smallest with "same" padding;
    stride 2 on inputs of at least 8x8 half of the time), an optional max pool (2x2/2 or 3x3/2, padding 0 or 1), ``num_blocks`` blocks, each
    either a plain conv or (with ``residual``) a basic residual block (two convs, identity
    shortcut when the shape is kept, else a 1x1 projection conv without ReLU, i.e. a signed
    residual), stride 2 where the feature map is at least 4x4; then, if ``num_classes``, global
    average pooling, flatten and an FC layer without ReLU (signed logits). Output channel counts
    are random in ``[3, max_channels]``.

    Parameters
    ----------
    rng : numpy.random.Generator
    spec : NumericSpec, optional
        Defaults to ``NumericSpec()`` (8-bit activations).
    ratio : Fraction or float
        High-precision row share (``HWConfig.ratio``).
    input_shape : (C, H, W)
    num_blocks : int
    max_channels : int
    kernels : tuple of odd ints
        Kernel sizes to draw from (each must be odd).
    num_classes : int or None
        Size of the FC head; ``None`` ends the network with the last block.
    maxpool, residual : bool
    calib_image : uint8 array, optional
        Image the requantization is calibrated on.

    Returns
    -------
    QModel
        ``meta`` records the generator kind and parameters.
    """
    spec = _spec_or_default(spec)
    ks = tuple(int(k) for k in kernels)
    if not ks or any(k < 1 or k % 2 == 0 for k in ks):
        raise IlmpqValueError(f"kernels must be odd positive sizes, not {kernels!r}")
    if max_channels < 3:
        raise IlmpqValueError(f"max_channels must be at least 3, not {max_channels}")
    b = ModelBuilder(rng, spec=spec, ratio=ratio, input_shape=input_shape,
                     calib_image=calib_image)

    def channels():
        return int(rng.integers(3, max_channels + 1))

    # stem: any kernel that fits, asymmetric padding below the kernel size
    _, h, w = b.shape("input")
    fits = [k for k in ks if k <= min(h, w)]
    if fits:
        k = int(rng.choice(fits))
        pad = tuple(int(rng.integers(0, k // 2 + 1)) for _ in range(4))
    else:  # input smaller than every kernel: the smallest kernel with "same" padding fits
        k = min(ks)
        pad = (k // 2,) * 4
    stride = 2 if min(h, w) >= 8 and rng.random() < 0.5 else 1
    t = b.conv("stem", "input", channels(), k, stride=stride, padding=pad)
    if maxpool and min(b.shape(t)[1:]) >= 4:
        pk = int(rng.choice([2, 3]))
        t = b.maxpool("pool", t, pk, 2, int(rng.integers(0, 2)) if pk == 3 else 0)
    for i in range(num_blocks):
        c, h, w = b.shape(t)
        k = int(rng.choice(ks))
        s = 2 if min(h, w) >= 4 and rng.random() < 0.4 else 1
        out = c if (s == 1 and rng.random() < 0.5) else channels()
        if residual and rng.random() < 0.6:
            t1 = b.conv(f"b{i}.conv1", t, out, k, stride=s, padding=k // 2)
            if s == 1 and out == c:
                short = t
            else:
                short = b.conv(f"b{i}.proj", t, out, 1, stride=s, relu=False)
            k2 = int(rng.choice(ks))
            t = b.conv(f"b{i}.conv2", t1, out, k2, padding=k2 // 2, residual=short)
        else:
            t = b.conv(f"b{i}.conv", t, out, k, stride=s, padding=k // 2)
    if num_classes:
        t = b.gap("gap", t)
        t = b.flatten("flatten", t)
        t = b.fc("fc", t, int(num_classes))
    return b.build(t, meta={"generator": "random_qmodel", "ratio": str(Fraction(ratio)
                                                                       .limit_denominator(1 << 16)),
                            "input_shape": list(b.shape("input")), "num_blocks": num_blocks})


def resnet18_qmodel(rng: np.random.Generator, *, spec: NumericSpec | None = None,
                    ratio=Fraction(1, 8), input_hw: int = 224, num_classes: int = 1000,
                    calib_image=None) -> QModel:
    """ResNet-18 with its real layer shapes and random quantized weights.

    Stem ``conv1`` 7x7/2 (padding 3, 64 channels) and ``maxpool`` 3x3/2 (padding 1); four stages
    ``layer1`` to ``layer4`` of two basic blocks (64, 128, 256, 512 channels; the first block of
    stages 2-4 has stride 2 and a 1x1/2 ``downsample`` projection without ReLU); global average
    pooling, flatten and ``fc`` (no ReLU, signed logits). Layer and tensor names follow
    torchvision (``layer2.0.conv1``, ``layer2.0.downsample``, ...); a block's second conv carries
    the residual add and the ReLU.

    Parameters
    ----------
    rng : numpy.random.Generator
    spec : NumericSpec, optional
        Defaults to ``NumericSpec()``.
    ratio : Fraction or float
        High-precision row share (1/8 on the ``z020``/``z045`` presets).
    input_hw : int
        Input height and width (224 for ImageNet; at least 32 so that every stage has pixels).
    num_classes : int
    calib_image : uint8 array ``(3, input_hw, input_hw)``, optional

    Returns
    -------
    QModel
        21 conv/FC layers (20 conv + fc), 1.81 GMAC at 224x224.
    """
    spec = _spec_or_default(spec)
    if not isinstance(input_hw, int) or input_hw < 32:
        raise IlmpqValueError(f"input_hw must be an integer >= 32, not {input_hw!r}")
    b = ModelBuilder(rng, spec=spec, ratio=ratio, input_shape=(3, input_hw, input_hw),
                     calib_image=calib_image)
    t = b.conv("conv1", "input", 64, 7, stride=2, padding=3)
    t = b.maxpool("maxpool", t, 3, 2, 1)
    c = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for blk in range(2):
            s = 2 if (blk == 0 and stage > 1) else 1
            p = f"layer{stage}.{blk}"
            t1 = b.conv(f"{p}.conv1", t, width, 3, stride=s, padding=1)
            short = t if (s == 1 and width == c) else b.conv(
                f"{p}.downsample", t, width, 1, stride=s, relu=False)
            t = b.conv(f"{p}.conv2", t1, width, 3, padding=1, residual=short)
            c = width
    t = b.gap("avgpool", t)
    t = b.flatten("flatten", t)
    t = b.fc("fc", t, int(num_classes))
    return b.build(t, meta={"generator": "resnet18_qmodel", "input_hw": input_hw,
                            "ratio": str(Fraction(ratio).limit_denominator(1 << 16))})


def random_layer_case(r: np.random.Generator):
    """A random small layer program for timing studies: ``(description, input shape, build)``.

    ``build(builder)`` appends to a :class:`ModelBuilder` one conv (1x1/3x3/5x5, stride 1 or 2),
    a residual pair, an FC, or two convs, and returns the output tensor name. Used by the cycle
    model's tests and ``bench/resnet18.py`` (the same distribution in both).
    """
    c = int(r.choice([3, 4, 8, 12, 16, 24]))
    m = int(r.choice([4, 8, 12, 16, 24, 32]))
    h = int(r.choice([2, 3, 4, 6, 8, 12, 16]))
    w = int(r.choice([2, 3, 4, 6, 8, 12, 16, 20]))
    k = int(r.choice([1, 3, 5])) if min(h, w) >= 3 else 1
    s = int(r.choice([1, 1, 2]))
    kind = str(r.choice(["conv", "conv", "res", "fc", "two"]))
    if kind == "fc":
        return f"fc {c * h * w}->{m}", (c, h, w), lambda b: b.fc("a", b.flatten("f", "input"), m)
    if kind == "res":
        return f"residual C{c} {h}x{w} k{k}", (c, h, w), lambda b: b.conv(
            "b", b.conv("a", "input", c, k, padding=k // 2), c, k, padding=k // 2,
            residual="input")
    if kind == "two":
        def two(b):
            t = b.conv("a", "input", m, k, stride=s, padding=k // 2)
            k2 = 3 if min(b.shape(t)[1:]) >= 3 else 1
            return b.conv("b", t, m, k2, padding=k2 // 2)
        return f"two layers C{c} M{m} {h}x{w} k{k} s{s}", (c, h, w), two
    return f"conv C{c} M{m} {h}x{w} k{k} s{s}", (c, h, w), lambda b: b.conv(
        "a", "input", m, k, stride=s, padding=k // 2)
