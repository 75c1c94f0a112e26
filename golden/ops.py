"""Integer reference operators of the ILMPQ numeric contract (``docs/numeric.md`` section 2).

Every function here is a pure, vectorized NumPy function on integer arrays. It validates its
inputs (dtype, rank, shapes, value ranges) and raises an error from :mod:`ilmpq.golden.errors`
that names the problem and what is allowed; it never wraps around silently. The hardware and the
compiler are checked against these functions bit for bit; ``docs/numeric.md`` states the contract
with worked examples.

Layouts
-------
Activation tensors are ``(C, H, W)`` (one image). Conv weights are ``(M, C, kh, kw)``, one row
(output channel) per ``m``; a row's precision (:class:`~ilmpq.golden.formats.Precision`) bounds its
weights to ``[-7, 7]`` (``LO``) or ``[-127, 127]`` (``HI``). Padding is ``(top, left, bottom,
right)``; an ``int`` means the same on all four sides and a pair ``(ph, pw)`` means ``(ph, pw, ph,
pw)``. A stride is an ``int`` or a pair ``(sy, sx)``.

Exactness
---------
The convolution is an im2col followed by one matrix product. The product runs in float64 (BLAS)
when the largest possible partial sum, ``max_m sum_k |W[m,k]| * max(X)``, is below ``2**53``:
every product and every partial sum is then an integer that float64 represents exactly, so the
result is exact whatever order BLAS adds in. Otherwise it runs in int64. Either way the result is
the exact integer sum.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import IlmpqTypeError, IlmpqValueError
from .formats import (
    HI_BITS, SUPPORTED_ACT_BITS, NumericSpec, Precision, signed_range, unsigned_range,
)

__all__ = [
    "AccumulatorOverflow", "RequantOverflow", "conv2d_acc", "fc_acc", "requantize", "max_pool",
    "global_avg_pool", "avg_pool", "avg_pool_divisors", "pool_output_hw", "flatten",
    "acc_bound", "check_no_overflow", "conv_output_hw",
    "normalize_stride", "normalize_padding", "output_range", "conv_macs", "RES_RANGE",
    "act_range", "lut_apply", "mul_requant", "concat_requant", "slice_chw", "permute_channels",
]

#: Range of a residual input of :func:`requantize`: a signed or unsigned byte, sign-interpreted.
RES_RANGE = (-128, 255)

#: Largest integer magnitude below which float64 arithmetic on integers is exact.
_FLOAT_EXACT = 1 << 53


class AccumulatorOverflow(IlmpqValueError):
    """An accumulator value leaves the ``acc_bits`` two's complement range.

    Raised by :func:`conv2d_acc` / :func:`fc_acc` for an actual value (attributes ``channel``,
    ``pixel`` ``(oy, ox)``, ``value``) and by :func:`check_no_overflow` for a worst-case bound
    (attributes ``layer``, ``channel``, ``value`` = the bound; ``pixel`` is ``None``).
    """

    def __init__(self, message: str, *, layer: str | None = None, channel: int | None = None,
                 pixel: tuple[int, int] | None = None, value: int | None = None):
        super().__init__(message)
        self.layer = layer
        self.channel = channel
        self.pixel = pixel
        self.value = value


class RequantOverflow(IlmpqValueError):
    """The requantization intermediate ``acc*M + res*Mr + 2**(S-1)`` does not fit
    ``spec.requant_bits`` signed bits (the width of the hardware's post-processing adder)."""


# -- argument checking --------------------------------------------------------------------------

def _int_array(name: str, x, lo: int | None = None, hi: int | None = None, *,
               ndim: int | None = None, what: str = "", cast: bool = True) -> np.ndarray:
    """Validate an integer array and return it as int64 (no wrap-around: range checked first),
    or in its own dtype with ``cast=False``."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise IlmpqTypeError(
            f"{name} must be an integer array (any NumPy integer dtype), not dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise IlmpqValueError(
            f"{name} must have {ndim} dimension{'s' if ndim != 1 else ''}, not {arr.ndim} "
            f"(shape {arr.shape})")
    if arr.size and lo is not None and hi is not None:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            idx = tuple(int(i) for i in np.argwhere(arr == bad)[0])
            raise IlmpqValueError(
                f"{name}{list(idx)} = {bad} is outside the allowed range [{lo}, {hi}]"
                + (f" of {what}" if what else ""))
    return arr.astype(np.int64, copy=False) if cast else arr


def _check_int(name: str, v, lo: int, hi: int | None = None) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise IlmpqTypeError(f"{name} must be an integer, not {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        allowed = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise IlmpqValueError(f"{name} = {v} is not allowed: it must be {allowed}")
    return v


def _check_bool(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise IlmpqTypeError(f"{name} must be True or False, not {v!r}")
    return bool(v)


def _check_spec(spec) -> NumericSpec:
    if not isinstance(spec, NumericSpec):
        raise IlmpqTypeError(
            f"spec must be a NumericSpec (e.g. HWConfig.numeric), not {type(spec).__name__}")
    return spec


def _check_in_bits(in_bits, spec: NumericSpec) -> int:
    if in_bits is None:
        return spec.act_bits
    if in_bits not in SUPPORTED_ACT_BITS or isinstance(in_bits, bool):
        raise IlmpqValueError(
            f"in_bits = {in_bits!r} is not allowed: input activations are unsigned with one of "
            f"{SUPPORTED_ACT_BITS} bits")
    return int(in_bits)


def normalize_stride(stride) -> tuple[int, int]:
    """Return ``(sy, sx)`` from an ``int`` or a pair; both must be positive integers."""
    if isinstance(stride, (tuple, list)):
        if len(stride) != 2:
            raise IlmpqValueError(
                f"stride must be an int or a pair (sy, sx), not {tuple(stride)!r}")
        sy, sx = stride
    else:
        sy = sx = stride
    return _check_int("stride", sy, 1), _check_int("stride", sx, 1)


def normalize_padding(padding) -> tuple[int, int, int, int]:
    """Return ``(top, left, bottom, right)`` from an ``int``, a pair ``(ph, pw)`` or a 4-tuple.

    Every value must be a non-negative integer.
    """
    if isinstance(padding, (tuple, list)):
        if len(padding) == 2:
            p = (padding[0], padding[1], padding[0], padding[1])
        elif len(padding) == 4:
            p = tuple(padding)
        else:
            raise IlmpqValueError(
                f"padding must be an int, a pair (ph, pw) or (top, left, bottom, right), "
                f"not {tuple(padding)!r}")
    else:
        p = (padding,) * 4
    return tuple(_check_int("padding", v, 0) for v in p)  # type: ignore[return-value]


def _normalize_kernel(kernel) -> tuple[int, int]:
    if isinstance(kernel, (tuple, list)):
        if len(kernel) != 2:
            raise IlmpqValueError(
                f"kernel must be an int or a pair (kh, kw), not {tuple(kernel)!r}")
        kh, kw = kernel
    else:
        kh = kw = kernel
    return _check_int("kernel", kh, 1), _check_int("kernel", kw, 1)


def conv_output_hw(in_hw: tuple[int, int], kernel, stride=1, padding=0) -> tuple[int, int]:
    """Output height and width of a convolution or pooling window.

    ``OH = (H + top + bottom - kh) // sy + 1`` (and likewise for the width). Raises
    :class:`~ilmpq.golden.errors.IlmpqValueError` if the kernel is larger than the padded input.
    """
    kh, kw = _normalize_kernel(kernel)
    sy, sx = normalize_stride(stride)
    pt, pl, pb, pr = normalize_padding(padding)
    h, w = int(in_hw[0]), int(in_hw[1])
    hp, wp = h + pt + pb, w + pl + pr
    if hp < kh or wp < kw:
        raise IlmpqValueError(
            f"the {kh}x{kw} kernel does not fit the padded {hp}x{wp} input ({h}x{w} with padding "
            f"(top, left, bottom, right) = {(pt, pl, pb, pr)}); the padded input must be at least "
            f"as large as the kernel")
    return (hp - kh) // sy + 1, (wp - kw) // sx + 1


def output_range(out_bits: int, out_signed: bool, relu: bool) -> tuple[int, int]:
    """Inclusive output range ``[qmin, qmax]`` of :func:`requantize`.

    ``act_range(out_bits, out_signed)``, with ``qmin`` raised to 0 by ReLU: ``[0, 2**a - 1]`` for
    an unsigned output, ``[-2**(a-1), 2**(a-1) - 1]`` for a signed one without ReLU.
    """
    if out_bits not in SUPPORTED_ACT_BITS or isinstance(out_bits, bool):
        raise IlmpqValueError(
            f"out_bits = {out_bits!r} is not allowed: outputs have one of {SUPPORTED_ACT_BITS} "
            f"bits")
    lo, hi = signed_range(out_bits) if out_signed else unsigned_range(out_bits)
    return (max(lo, 0) if relu else lo), hi


def _check_weights(w: np.ndarray, precision, name: str = "w") -> np.ndarray:
    """Check every weight against its row's precision; return the precision array (uint8)."""
    m = w.shape[0]
    if precision is None:
        lim = (1 << (HI_BITS - 1)) - 1
        _int_array(name, w, -lim, lim, what=f"{HI_BITS}-bit weights (the widest row precision)",
                   cast=False)
        return None
    prec = _int_array("precision", precision, 0, max(Precision), ndim=1,
                      what="Precision values (0 = LO, 1 = HI)")
    if prec.shape[0] != m:
        raise IlmpqValueError(
            f"precision has {prec.shape[0]} entries but {name} has {m} rows (output channels); "
            f"there must be one precision per row")
    wmax = np.where(prec == Precision.HI, Precision.HI.wmax, Precision.LO.wmax)
    flat = w.reshape(m, -1)
    if flat.shape[1] == 0:
        return prec
    # per-row min/max in the weights' own dtype (no abs: abs(int8 -128) wraps)
    bad_rows = (flat.min(axis=1).astype(np.int64) < -wmax) | \
        (flat.max(axis=1).astype(np.int64) > wmax)
    if bad_rows.any():
        r = int(np.flatnonzero(bad_rows)[0])
        k = int(np.flatnonzero(np.abs(flat[r].astype(np.int64)) > wmax[r])[0])
        idx = (r,) + tuple(int(i) for i in np.unravel_index(k, w.shape[1:]))
        p = Precision(int(prec[r]))
        raise IlmpqValueError(
            f"{name}{list(idx)} = {int(flat[r, k])} is outside the range of row {r}'s precision "
            f"{p.name} ({p.bits}-bit): [{-p.wmax}, {p.wmax}]")
    return prec


# -- convolution and fully connected ------------------------------------------------------------

def conv2d_acc(x, w, bias, *, stride=1, padding=0, spec: NumericSpec, precision=None,
               in_bits: int | None = None, groups: int = 1,
               in_signed: bool = False) -> np.ndarray:
    """Integer convolution with bias: the accumulators of a conv layer.

    ``acc[m, oy, ox] = bias[m] + sum_{c, kr, kc} W[m, c, kr, kc] * X[c, oy*sy + kr - top,
    ox*sx + kc - left]``, with ``X`` reading 0 outside the input (zero padding).

    Parameters
    ----------
    x : integer array ``(C, H, W)``
        Unsigned activations in ``[0, 2**in_bits - 1]``.
    w : integer array ``(M, C, kh, kw)``
        Weights; row ``m`` within ``precision[m]``'s range (``[-7, 7]`` or ``[-127, 127]``), or
        within ``[-127, 127]`` if ``precision`` is ``None``.
    bias : integer array ``(M,)``
        In accumulator units, within the ``spec.acc_bits`` signed range.
    stride : int or (sy, sx)
    padding : int, (ph, pw) or (top, left, bottom, right)
    spec : NumericSpec
        ``acc_bits`` and the default ``in_bits`` (``spec.act_bits``).
    precision : integer array ``(M,)``, optional
        :class:`~ilmpq.golden.formats.Precision` of every row.
    in_bits : int, optional
        Width of the input activations (the 8-bit pixel input of the first layer while the rest of
        the network uses ``spec.act_bits``).
    groups : int
        Grouped convolution (ONNX ``group``): input channels and rows are split into ``groups``
        equal groups, row ``m`` of group ``g = m // (M / groups)`` reads only the input channels
        ``[g * C, (g + 1) * C)`` where ``C = w.shape[1]``. ``groups == M == channels of x`` is a
        depthwise convolution.
    in_signed : bool
        The input is a signed ``in_bits``-bit tensor (``[-2**(in_bits-1), 2**(in_bits-1)-1]``, a
        layer output without ReLU) instead of an unsigned one.

    Returns
    -------
    np.ndarray
        int64 ``(M, OH, OW)``, see :func:`conv_output_hw`.

    Raises
    ------
    AccumulatorOverflow
        If an accumulator leaves ``[-2**(acc_bits-1), 2**(acc_bits-1) - 1]``: either the final
        value ``bias + sum`` or the sum without the bias (the PE array accumulates the products
        and the post-processing unit adds the bias, so both must fit). The message names the
        channel, the output pixel and the value.
    IlmpqTypeError, IlmpqValueError
        For a non-integer dtype, a wrong rank or shape, or a value out of range.
    """
    spec = _check_spec(spec)
    in_bits = _check_in_bits(in_bits, spec)
    in_signed = _check_bool("in_signed", in_signed)
    kind = "signed" if in_signed else "unsigned"
    xa = _int_array("x", x, *act_range(in_bits, in_signed), ndim=3,
                    what=f"{kind} {in_bits}-bit activations", cast=False)
    wa = _int_array("w", w, ndim=4, cast=False)
    _check_weights(wa, precision)
    m, c, kh, kw = wa.shape
    g = _check_int("groups", groups, 1)
    if m % g:
        raise IlmpqValueError(
            f"groups = {g} does not divide the {m} rows (output channels) of w; every group "
            f"needs the same number of rows")
    if xa.shape[0] != c * g:
        raise IlmpqValueError(
            f"x has {xa.shape[0]} channels but w expects {c} input channels per group x "
            f"{g} groups = {c * g} (w shape {wa.shape}, x shape {xa.shape}); they must be equal")
    ba = _int_array("bias", bias, *spec.acc_range, ndim=1,
                    what=f"the {spec.acc_bits}-bit accumulator")
    if ba.shape[0] != m:
        raise IlmpqValueError(
            f"bias has {ba.shape[0]} entries but w has {m} rows (output channels); they must be "
            f"equal")
    sy, sx = normalize_stride(stride)
    pt, pl, pb, pr = normalize_padding(padding)
    oh, ow = conv_output_hw(xa.shape[1:], (kh, kw), (sy, sx), (pt, pl, pb, pr))

    wm = wa.reshape(g, m // g, c * kh * kw).astype(np.float64)
    xmax = int(np.abs(xa.astype(np.int64)).max()) if xa.size else 0
    # row sums of |w| in float64 are exact (each below 2**53 for any array that fits in memory)
    worst = float(np.abs(wm).sum(axis=2).max()) * xmax if m and wm.shape[2] else 0.0
    dt = np.float64 if worst < _FLOAT_EXACT else np.int64
    if dt is np.int64:
        wm = wa.reshape(g, m // g, c * kh * kw).astype(np.int64)
    xp = np.pad(xa.astype(dt), ((0, 0), (pt, pb), (pl, pr)))
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sy, ::sx][:, :oh, :ow]
    cols = win.transpose(0, 3, 4, 1, 2).reshape(g, c * kh * kw, oh * ow)
    sums = np.matmul(wm, cols)                       # (groups, rows per group, pixels)
    if dt is np.float64:
        sums = sums.astype(np.int64)
    sums = sums.reshape(m, oh, ow)
    acc = sums + ba[:, None, None]
    _check_acc(sums, spec, "sum(W*X) without the bias")
    _check_acc(acc, spec, "bias + sum(W*X)")
    return acc


def _check_acc(acc: np.ndarray, spec: NumericSpec, what: str):
    lo, hi = spec.acc_range
    if acc.size == 0:
        return
    if int(acc.min()) < lo or int(acc.max()) > hi:
        bad = (acc < lo) | (acc > hi)
        ch, oy, ox = (int(i) for i in np.argwhere(bad)[0])
        v = int(acc[ch, oy, ox])
        raise AccumulatorOverflow(
            f"accumulator overflow in output channel {ch}, pixel (oy, ox) = ({oy}, {ox}): "
            f"{what} = {v} is outside the {spec.acc_bits}-bit two's complement range "
            f"[{lo}, {hi}]", channel=ch, pixel=(oy, ox), value=v)


def fc_acc(x, w, bias, spec: NumericSpec, *, precision=None,
           in_bits: int | None = None) -> np.ndarray:
    """Fully connected layer accumulators: a 1x1 convolution on a ``(K, 1, 1)`` input.

    ``acc[m] = bias[m] + sum_k W[m, k] * x[k]``.

    Parameters
    ----------
    x : integer array ``(K,)`` or ``(K, 1, 1)``
        Unsigned activations in ``[0, 2**in_bits - 1]``.
    w : integer array ``(M, K)`` or ``(M, K, 1, 1)``
    bias, spec, precision, in_bits
        As for :func:`conv2d_acc`.

    Returns
    -------
    np.ndarray
        int64 ``(M,)`` for a 1-D ``x``, ``(M, 1, 1)`` for a ``(K, 1, 1)`` ``x``.
    """
    xa = np.asarray(x)
    wa = np.asarray(w)
    if xa.ndim == 1:
        x3 = xa.reshape(-1, 1, 1)
    elif xa.ndim == 3 and xa.shape[1:] == (1, 1):
        x3 = xa
    else:
        raise IlmpqValueError(
            f"fc_acc: x must have shape (K,) or (K, 1, 1), not {xa.shape}")
    if wa.ndim == 2:
        w4 = wa.reshape(wa.shape + (1, 1))
    elif wa.ndim == 4 and wa.shape[2:] == (1, 1):
        w4 = wa
    else:
        raise IlmpqValueError(
            f"fc_acc: w must have shape (M, K) or (M, K, 1, 1), not {wa.shape}")
    acc = conv2d_acc(x3, w4, bias, spec=spec, precision=precision, in_bits=in_bits)
    return acc.reshape(-1) if xa.ndim == 1 else acc


# -- requantization -----------------------------------------------------------------------------

def requantize(acc, mult, shift, *, res=None, res_mult=None, relu: bool, out_bits: int,
               out_signed: bool, spec: NumericSpec) -> np.ndarray:
    """Requantize accumulators to output activations (one rounding, integer only).

    ``y = clamp((acc*M[m] + res*Mr[m] + 2**(S[m]-1)) >> S[m], qmin, qmax)``, ``>>`` arithmetic
    (floor division by ``2**S``, so exact halves round towards +infinity), ``[qmin, qmax] =
    output_range(out_bits, out_signed, relu)``. The intermediate is computed exactly (int64, or
    Python integers if ``spec.requant_bits > 63``) and must fit ``spec.requant_bits`` signed bits.

    Parameters
    ----------
    acc : integer array ``(M, ...)``
        Accumulators (axis 0 = output channel) within the ``spec.acc_bits`` signed range.
    mult, shift : integer arrays ``(M,)``
        ``M`` within ``spec.mult_range``, ``S`` within ``spec.shift_range``.
    res : integer array, same shape as ``acc``, optional
        Residual input, within ``[-128, 255]``: a signed or an unsigned tensor of at most 8 bits,
        already sign-interpreted (the hardware's ``signed(9)`` residual port).
    res_mult : integer array ``(M,)``, optional
        ``Mr`` within ``spec.mult_range``; required exactly when ``res`` is given.
    relu : bool
    out_bits : int
        4, 5 or 8.
    out_signed : bool
    spec : NumericSpec

    Returns
    -------
    np.ndarray
        int64, shape of ``acc``, values in ``[qmin, qmax]``.

    Raises
    ------
    RequantOverflow
        If the intermediate leaves ``spec.requant_bits`` (cannot happen for in-range inputs; kept
        as the executable statement of the hardware adder width).
    """
    spec = _check_spec(spec)
    relu = _check_bool("relu", relu)
    out_signed = _check_bool("out_signed", out_signed)
    qmin, qmax = output_range(out_bits, out_signed, relu)
    a = _int_array("acc", acc, *spec.acc_range, what=f"the {spec.acc_bits}-bit accumulator")
    if a.ndim < 1:
        raise IlmpqValueError("acc must have at least 1 dimension (axis 0 = output channel)")
    m = a.shape[0]
    mult_a = _int_array("mult", mult, *spec.mult_range, ndim=1,
                        what=f"unsigned {spec.mult_bits}-bit multipliers")
    shift_a = _int_array("shift", shift, *spec.shift_range, ndim=1, what="shifts")
    for name, arr in (("mult", mult_a), ("shift", shift_a)):
        if arr.shape[0] != m:
            raise IlmpqValueError(
                f"{name} has {arr.shape[0]} entries but acc has {m} output channels (axis 0); "
                f"they must be equal")
    if (res is None) != (res_mult is None):
        raise IlmpqValueError(
            "res and res_mult must be given together (a residual needs its multiplier Mr) or "
            "both left out")
    bshape = (m,) + (1,) * (a.ndim - 1)
    if res is not None:
        r = _int_array("res", res, *RES_RANGE,
                       what="residual inputs (a signed or unsigned byte)")
        if r.shape != a.shape:
            raise IlmpqValueError(
                f"res has shape {r.shape} but acc has shape {a.shape}; the residual must have "
                f"the shape of the output")
        mr = _int_array("res_mult", res_mult, *spec.mult_range, ndim=1,
                        what=f"unsigned {spec.mult_bits}-bit multipliers")
        if mr.shape[0] != m:
            raise IlmpqValueError(
                f"res_mult has {mr.shape[0]} entries but acc has {m} output channels; they must "
                f"be equal")
    else:
        r = mr = None

    wide = spec.requant_bits > 63
    dt = object if wide else np.int64
    t = a.astype(dt) * mult_a.astype(dt).reshape(bshape)
    if r is not None:
        t = t + r.astype(dt) * mr.astype(dt).reshape(bshape)
    s = shift_a.astype(dt).reshape(bshape)
    if wide:
        rnd = np.vectorize(lambda v: 1 << (v - 1), otypes=[object])(s)
    else:
        rnd = np.left_shift(np.int64(1), s - 1)
    t = t + rnd
    lo, hi = signed_range(spec.requant_bits)
    tmin, tmax = t.min(initial=0), t.max(initial=0)
    if tmin < lo or tmax > hi:
        bad = np.argwhere((t < lo) | (t > hi))[0]
        idx = tuple(int(i) for i in bad)
        raise RequantOverflow(
            f"requantization intermediate acc*M + res*Mr + 2**(S-1) at {list(idx)} = {int(t[idx])}"
            f" does not fit the {spec.requant_bits}-bit signed range [{lo}, {hi}]")
    y = t >> s
    y = np.minimum(np.maximum(y, qmin), qmax)
    return y.astype(np.int64)


# -- host operators: lookup table, gating product, concat, slice, channel permutation -------------

def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive range of a ``bits``-bit activation tensor, signed or unsigned."""
    return signed_range(bits) if signed else unsigned_range(bits)


def lut_apply(x, table, *, in_bits: int, in_signed: bool) -> np.ndarray:
    """Pointwise function of one tensor as an integer lookup table: ``y = table[x - lo]``.

    ``lo`` is the smallest value of the input format (0 unsigned, ``-2**(in_bits-1)`` signed), so
    ``table`` has one entry per input level, ``2**in_bits`` entries. The quantizer fills it from
    the float function and the scales (``table[i] = clamp(round(f((lo + i) * s_in) / s_out))``);
    this operator only indexes.
    """
    in_signed = _check_bool("in_signed", in_signed)
    if in_bits not in SUPPORTED_ACT_BITS or isinstance(in_bits, bool):
        raise IlmpqValueError(f"in_bits = {in_bits!r} is not allowed: it must be one of "
                              f"{SUPPORTED_ACT_BITS}")
    lo, hi = act_range(in_bits, in_signed)
    t = _int_array("table", table, ndim=1)
    if t.shape[0] != hi - lo + 1:
        raise IlmpqValueError(
            f"table has {t.shape[0]} entries; a {in_bits}-bit input needs one per input level, "
            f"{hi - lo + 1}")
    xa = _int_array("x", x, lo, hi, what=f"{'signed' if in_signed else 'unsigned'} {in_bits}-bit "
                    f"activations")
    return t[xa - lo]


def _requant_scalar(acc, mult, shift, out_bits, out_signed, spec):
    """``requantize`` with one multiplier and shift for the whole tensor (axis 0 = channel)."""
    c = acc.shape[0]
    return requantize(acc, np.full(c, mult, np.int64), np.full(c, shift, np.int64), relu=False,
                      out_bits=out_bits, out_signed=out_signed, spec=spec)


def mul_requant(x, g, *, x_bits: int, x_signed: bool, g_bits: int, g_signed: bool, mult: int,
                shift: int, out_bits: int, out_signed: bool, spec: NumericSpec) -> np.ndarray:
    """Elementwise product of two activation tensors, requantized once.

    ``y = clamp((x * g * M + 2**(S-1)) >> S, out range)``. ``x`` is ``(C, H, W)``; ``g`` is
    ``(C, H, W)`` or ``(C, 1, 1)`` (squeeze-excitation gating: one value per channel broadcast
    over the spatial positions). ``M`` and ``S`` are single integers (``M / 2**S ~ s_x * s_g /
    s_out``) within ``spec.mult_range`` and ``spec.shift_range``.
    """
    spec = _check_spec(spec)
    xa = _int_array("x", x, *act_range(x_bits, x_signed), ndim=3,
                    what=f"{x_bits}-bit activations")
    ga = _int_array("g", g, *act_range(g_bits, g_signed), ndim=3,
                    what=f"{g_bits}-bit activations")
    if ga.shape[0] != xa.shape[0] or ga.shape[1:] not in ((1, 1), xa.shape[1:]):
        raise IlmpqValueError(
            f"g has shape {ga.shape} but x has {xa.shape}; g must have x's shape or "
            f"({xa.shape[0]}, 1, 1) (one value per channel)")
    return _requant_scalar(xa * ga, mult, shift, out_bits, out_signed, spec)


def concat_requant(xs, *, mults, shifts, out_bits: int, out_signed: bool,
                   spec: NumericSpec) -> np.ndarray:
    """Channel concatenation with each input requantized to the output's one scale.

    Input ``i`` becomes ``clamp((x_i * M_i + 2**(S_i-1)) >> S_i, out range)`` with ``M_i / 2**S_i
    ~ s_i / s_out`` (``M_i = 2``, ``S_i = 1`` is an exact copy, ``(2x + 1) >> 1 = x``),
    then the results are stacked along the channels in input order.
    """
    spec = _check_spec(spec)
    if not isinstance(xs, (list, tuple)) or not xs:
        raise IlmpqValueError("concat needs a non-empty list of input tensors")
    if len(mults) != len(xs) or len(shifts) != len(xs):
        raise IlmpqValueError(f"concat of {len(xs)} inputs needs {len(xs)} multipliers and "
                              f"shifts, not {len(mults)} and {len(shifts)}")
    parts = []
    for i, x in enumerate(xs):
        xa = _int_array(f"xs[{i}]", x, *RES_RANGE, ndim=3, what="8-bit activations")
        if xa.shape[1:] != np.shape(xs[0])[1:]:
            raise IlmpqValueError(f"xs[{i}] has shape {xa.shape} but xs[0] has "
                                  f"{np.shape(xs[0])}; concatenated tensors must have equal H, W")
        parts.append(_requant_scalar(xa, mults[i], shifts[i], out_bits, out_signed, spec))
    return np.concatenate(parts, axis=0)


def slice_chw(x, starts, stops, steps) -> np.ndarray:
    """``x[c0:c1:cs, h0:h1:hs, w0:w1:ws]`` of a ``(C, H, W)`` tensor: positive steps, ``0 <=
    start < stop <= size`` on every axis (the importer normalizes ONNX's negative and clamped
    indices)."""
    xa = np.asarray(x)
    _int_array("x", xa, ndim=3)
    idx = []
    for axis, (a, b, s) in enumerate(zip(starts, stops, steps)):
        n = xa.shape[axis]
        _check_int("slice step", s, 1)
        if not (0 <= a < b <= n):
            raise IlmpqValueError(f"slice [{a}:{b}] on axis {axis} of size {n} is not allowed: "
                                  f"it must satisfy 0 <= start < stop <= {n}")
        idx.append(slice(int(a), int(b), int(s)))
    return xa[tuple(idx)]


def permute_channels(x, perm) -> np.ndarray:
    """``y[c] = x[perm[c]]``: a channel permutation (channel shuffle)."""
    xa = np.asarray(x)
    _int_array("x", xa, ndim=3)
    p = _int_array("perm", perm, 0, xa.shape[0] - 1, ndim=1, what="channel indices")
    if p.shape[0] != xa.shape[0] or len(set(p.tolist())) != p.shape[0]:
        raise IlmpqValueError(f"perm must be a permutation of the {xa.shape[0]} channels")
    return xa[p]


# -- pooling ------------------------------------------------------------------------------------

def max_pool(x, kernel, stride=None, padding=0) -> np.ndarray:
    """Max pooling over ``kh x kw`` windows of a ``(C, H, W)`` integer tensor.

    Padding positions never win (they act as -infinity), so every output is the maximum of the
    real input values in its window. Each padding must be smaller than the kernel on its axis, so
    that every window holds at least one input value.

    Parameters
    ----------
    x : integer array ``(C, H, W)``
    kernel : int or (kh, kw)
    stride : int or (sy, sx), optional
        Defaults to the kernel.
    padding : int, (ph, pw) or (top, left, bottom, right)

    Returns
    -------
    np.ndarray
        ``(C, OH, OW)`` with the dtype of ``x``.
    """
    xa = np.asarray(x)
    _int_array("x", xa, ndim=3)
    kh, kw = _normalize_kernel(kernel)
    sy, sx = normalize_stride((kh, kw) if stride is None else stride)
    pt, pl, pb, pr = normalize_padding(padding)
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise IlmpqValueError(
            f"max_pool padding (top, left, bottom, right) = {(pt, pl, pb, pr)} is not allowed "
            f"for a {kh}x{kw} kernel: each padding must be smaller than the kernel on its axis")
    oh, ow = conv_output_hw(xa.shape[1:], (kh, kw), (sy, sx), (pt, pl, pb, pr))
    sentinel = np.iinfo(np.int64).min
    xp = np.pad(xa.astype(np.int64), ((0, 0), (pt, pb), (pl, pr)), constant_values=sentinel)
    out = np.full((xa.shape[0], oh, ow), sentinel, np.int64)
    for kr in range(kh):
        for kc in range(kw):
            np.maximum(out, xp[:, kr:kr + sy * (oh - 1) + 1:sy, kc:kc + sx * (ow - 1) + 1:sx],
                       out=out)
    return out.astype(xa.dtype)


def pool_output_hw(in_hw, kernel, stride, padding, ceil_mode: bool = False) -> tuple[int, int]:
    """Output height and width of a pooling window, ONNX/PyTorch rule.

    ``ceil_mode`` 0: :func:`conv_output_hw`. ``ceil_mode`` 1: ``OH = ceil((H + top + bottom -
    kh) / sy) + 1``, less one if the last window would start at or past ``H + top`` (every
    window starts inside the input or its top/left padding); likewise for the width."""
    if not ceil_mode:
        return conv_output_hw(in_hw, kernel, stride, padding)
    conv_output_hw(in_hw, kernel, stride, padding)        # the same fit check
    kh, kw = _normalize_kernel(kernel)
    sy, sx = normalize_stride(stride)
    pt, pl, pb, pr = normalize_padding(padding)
    out = []
    for n, k, st, p0, p1 in ((int(in_hw[0]), kh, sy, pt, pb), (int(in_hw[1]), kw, sx, pl, pr)):
        o = -(-(n + p0 + p1 - k) // st) + 1
        if (o - 1) * st >= n + p0:
            o -= 1
        out.append(o)
    return out[0], out[1]


def avg_pool_divisors(in_hw, kernel, stride, padding, ceil_mode: bool = False,
                      count_include_pad: bool = False) -> np.ndarray:
    """``(OH, OW)`` int64: the number of values each window of :func:`avg_pool` averages.

    ONNX ``AveragePool``: with ``count_include_pad`` the window positions inside the padded input
    ``[-top, H + bottom) x [-left, W + right)`` (positions past it, which only ``ceil_mode``
    creates, never count), else only those inside the input ``[0, H) x [0, W)``."""
    kh, kw = _normalize_kernel(kernel)
    sy, sx = normalize_stride(stride)
    pt, pl, pb, pr = normalize_padding(padding)
    h, w = int(in_hw[0]), int(in_hw[1])
    oh, ow = pool_output_hw((h, w), (kh, kw), (sy, sx), (pt, pl, pb, pr), ceil_mode)
    lo_y, hi_y = (-pt, h + pb) if count_include_pad else (0, h)
    lo_x, hi_x = (-pl, w + pr) if count_include_pad else (0, w)
    y0 = np.arange(oh) * sy - pt
    x0 = np.arange(ow) * sx - pl
    ny = np.minimum(y0 + kh, hi_y) - np.maximum(y0, lo_y)
    nx = np.minimum(x0 + kw, hi_x) - np.maximum(x0, lo_x)
    return np.outer(np.maximum(ny, 0), np.maximum(nx, 0)).astype(np.int64)


def avg_pool(x, kernel, stride=None, padding=0, *, ceil_mode: bool = False,
             count_include_pad: bool = False) -> np.ndarray:
    """Average pooling over ``kh x kw`` windows of a ``(C, H, W)`` integer tensor (ONNX
    ``AveragePool`` semantics), with the rounding of :func:`global_avg_pool`.

    ``y = floor((s + N // 2) / N)``: ``s`` the sum of the window's input values (padding adds
    0), ``N`` its divisor (:func:`avg_pool_divisors`: ``count_include_pad`` counts the padding
    positions, never the positions past the padded input that ``ceil_mode`` adds). Each padding
    must be smaller than the kernel on its axis (every window holds an input value, ``N >
    0``).

    Returns
    -------
    np.ndarray
        ``(C, OH, OW)`` with the dtype of ``x`` (an average stays in the input's range).
    """
    xa = np.asarray(x)
    xi = _int_array("x", xa, ndim=3)
    kh, kw = _normalize_kernel(kernel)
    sy, sx = normalize_stride((kh, kw) if stride is None else stride)
    pt, pl, pb, pr = normalize_padding(padding)
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise IlmpqValueError(
            f"avg_pool padding (top, left, bottom, right) = {(pt, pl, pb, pr)} is not allowed "
            f"for a {kh}x{kw} kernel: each padding must be smaller than the kernel on its axis")
    c, h, w = xi.shape
    oh, ow = pool_output_hw((h, w), (kh, kw), (sy, sx), (pt, pl, pb, pr), ceil_mode)
    n = avg_pool_divisors((h, w), (kh, kw), (sy, sx), (pt, pl, pb, pr), ceil_mode,
                          count_include_pad)
    eb = max(0, (oh - 1) * sy + kh - (h + pt + pb))     # ceil_mode: past the padded input
    er = max(0, (ow - 1) * sx + kw - (w + pl + pr))
    xp = np.pad(xi, ((0, 0), (pt, pb + eb), (pl, pr + er)))
    s = np.zeros((c, oh, ow), np.int64)
    for kr in range(kh):
        for kc in range(kw):
            s += xp[:, kr:kr + sy * (oh - 1) + 1:sy, kc:kc + sx * (ow - 1) + 1:sx]
    return np.floor_divide(s + n // 2, n).astype(xa.dtype)


def global_avg_pool(x) -> np.ndarray:
    """Global average pooling with round half up.

    ``y[c] = floor((sum_p x[c, p] + N // 2) / N)``, ``N = H * W``: the nearest integer to the
    mean, exact halves (possible for even ``N``) rounded towards +infinity, also for negative
    sums (``-2.5 -> -2``).

    Parameters
    ----------
    x : integer array ``(C, H, W)``

    Returns
    -------
    np.ndarray
        ``(C, 1, 1)`` with the dtype of ``x`` (the mean stays within the input's range).
    """
    xa = np.asarray(x)
    xi = _int_array("x", xa, ndim=3)
    c, h, w = xi.shape
    n = h * w
    if n == 0:
        raise IlmpqValueError(f"global_avg_pool needs a non-empty input, not shape {xi.shape}")
    s = xi.reshape(c, n).sum(axis=1)
    return np.floor_divide(s + n // 2, n).reshape(c, 1, 1).astype(xa.dtype)


def flatten(x) -> np.ndarray:
    """``(C, H, W) -> (C*H*W, 1, 1)`` in C order (channel-major); the data are unchanged."""
    xa = np.asarray(x)
    _int_array("x", xa, ndim=3)
    return xa.reshape(-1, 1, 1)


# -- overflow proof -----------------------------------------------------------------------------

def acc_bound(weight, bias, in_bits: int) -> np.ndarray:
    """Worst-case accumulator magnitude of every row over all inputs of ``in_bits`` bits.

    ``bound[m] = |bias[m]| + sum_k |W[m, k]| * (2**in_bits - 1)``. It bounds ``|bias + sum|``,
    ``|sum|`` and every partial sum of the accumulation, whatever the input.

    Parameters
    ----------
    weight : integer array ``(M, ...)``
    bias : integer array ``(M,)`` or None (no bias)
    in_bits : int
        Width of the unsigned input activations (1 to 16).

    Returns
    -------
    np.ndarray
        int64 ``(M,)``.
    """
    wa = _int_array("weight", weight, -(1 << 15), 1 << 15)
    if wa.ndim < 1:
        raise IlmpqValueError("weight must have at least 1 dimension (axis 0 = row)")
    m = wa.shape[0]
    amax = (1 << _check_int("in_bits", in_bits, 1, 16)) - 1
    if bias is None:
        ba = np.zeros(m, np.int64)
    else:
        ba = _int_array("bias", bias, -(1 << 62), 1 << 62, ndim=1)
        if ba.shape[0] != m:
            raise IlmpqValueError(
                f"bias has {ba.shape[0]} entries but weight has {m} rows; they must be equal")
    return np.abs(ba) + np.abs(wa.reshape(m, -1)).sum(axis=1) * amax


def check_no_overflow(layer, in_bits: int, spec: NumericSpec) -> np.ndarray:
    """Prove that a conv/FC layer can never overflow the accumulator, or reject it.

    Parameters
    ----------
    layer : ConvLayer
        Uses ``layer.name``, ``layer.weight`` and ``layer.bias``.
    in_bits : int
        Width of the layer's unsigned input.
    spec : NumericSpec

    Returns
    -------
    np.ndarray
        The per-row bounds (:func:`acc_bound`), all ``<= 2**(acc_bits-1) - 1``.

    Raises
    ------
    AccumulatorOverflow
        Naming the layer, the first row whose bound exceeds the range, its bias, ``sum|w|`` and
        the bound.
    """
    spec = _check_spec(spec)
    bound = acc_bound(layer.weight, layer.bias, in_bits)
    hi = spec.acc_range[1]
    if bound.size and int(bound.max()) > hi:
        r = int(np.flatnonzero(bound > hi)[0])
        sw = int(np.abs(np.asarray(layer.weight[r], np.int64)).sum())
        b = int(layer.bias[r])
        raise AccumulatorOverflow(
            f"layer {layer.name!r} row {r} may overflow the {spec.acc_bits}-bit accumulator: "
            f"worst case |bias| + sum|w| * (2**{in_bits} - 1) = {abs(b)} + {sw} * "
            f"{(1 << in_bits) - 1} = {int(bound[r])} > {hi}; reduce the row's weights or bias, "
            f"or use a wider accumulator", layer=layer.name, channel=r, value=int(bound[r]))
    return bound


def conv_macs(out_shape: tuple[int, int, int], in_channels: int, kernel: tuple[int, int]) -> int:
    """Multiply-accumulates of a conv layer: ``M * OH * OW * C * kh * kw``."""
    m, oh, ow = out_shape
    return int(m) * int(oh) * int(ow) * int(in_channels) * int(kernel[0]) * int(kernel[1])
