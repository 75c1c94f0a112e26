"""The ILMPQ quantizer: a float CNN (:class:`~ilmpq.golden.float_model.FloatModel`) in, an integer
:class:`~ilmpq.golden.model.QModel` out (``docs/numeric.md``, ``docs/quantization.md``).

Post-training quantization on a small calibration set, in this order:

1. **Input normalization** ``x = (p - mean) / std`` is folded into the convolutions that read the
   network input, ``W' = W / std[c]``, ``b' = b - sum W * mean[c] / std[c]``, so the integer
   network reads raw ``uint8`` pixels with scale 1. With a nonzero ``mean`` and zero padding this
   is exact only away from the border (the accelerator pads raw pixels with 0, the float model
   padded normalized values with 0); the report notes the measured difference.
2. **Activation scales**, one per tensor, from the float activations on the calibration images:
   the clip value ``c`` that minimizes the mean squared quantization error over a grid of
   candidates (``act_clip="mse"``), the maximum (``"max"``) or a percentile (a number in
   ``(0, 100]``); ``scale = c / qmax`` with ``qmax = 2**a - 1`` after ReLU, ``2**(a-1) - 1`` for a
   signed tensor. The tensor that reaches the network output always uses the maximum, so that the
   largest logits are never clipped together into a tie. Pooling and flattening keep the scale.
3. **Row precision**: exactly ``ceil(R * M)`` rows of every conv/FC layer are 8-bit
   (:func:`~ilmpq.golden.model.hi_row_count`). ``rule="error"`` (FILM-QNN's rule) ranks rows by
   the output error 4-bit quantization causes on calibration inputs, ``||W_m X - Q4(W_m) X||_2``;
   ``rule="variance"`` ranks them by the variance of their weights. The highest-ranked rows get
   8 bits (ties: lower row index first).
4. **Weights** per row: ``sw[m] = max|W_m| / wmax`` (``wmax`` 7 or 127 by the row's precision),
   ``Wq = clip(round(W / sw), -wmax, wmax)``; an all-zero row borrows the largest scale of the
   layer. **Biases** in accumulator units: ``round(b / (sw * s_in))``.
5. **Requantization** ``y = clamp((acc*M + res*Mr + 2**(S-1)) >> S)`` with ``M / 2**S ~
   sw * s_in / s_out`` and ``Mr / 2**S ~ s_res / s_out``: per row the largest ``S`` in
   ``spec.shift_range`` for which ``M`` and ``Mr`` fit ``spec.mult_bits``; a layer whose multiplier
   does not fit even at the smallest ``S`` is rejected with a :class:`QuantizeError` naming it.
   Every layer is also proven free of accumulator overflow
   (:func:`~ilmpq.golden.ops.check_no_overflow`).

A per-layer report (:class:`QuantReport`) is stored in ``QModel.meta["quant_report"]``: rows at
each precision, weight SQNR, activation scale, the layer's *local* output SQNR (the layer alone,
fed the exactly quantized float input) and the *network* output SQNR (through the whole integer
network, :func:`ilmpq.golden.reference.run`), both against float on the calibration images, and
the layer that loses the most (lowest local SQNR).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from . import ops, reference
from .errors import IlmpqTypeError, IlmpqValueError
from .float_model import (FAvgPool, FConcat, FConv, FFlatten, FGlobalAvgPool, FloatModel,
                          FMaxPool, FMul, FPermute, FPointwise, FSlice, im2col)
from .formats import NumericSpec, Precision
from .model import (AvgPoolLayer, ConcatLayer, ConvLayer, FlattenLayer, GlobalAvgPoolLayer,
                    LutLayer, MaxPoolLayer, MulLayer, PermuteLayer, QModel, SliceLayer, TensorSpec,
                    hi_row_count, padding_error)

__all__ = [
    "QuantizeError", "RULES", "quantize", "fold_input_normalization", "select_hi_rows",
    "row_scores", "quantize_rows", "choose_requant", "activation_clip", "check_calib_images",
    "parse_ratio", "LayerReport", "QuantReport", "quant_report", "accuracy_float",
    "accuracy_int", "sqnr_db",
]

#: Row-selection rules of :func:`quantize`.
RULES = ("error", "variance")

_INPUT_BITS = 8  # the network input: unsigned 8-bit pixels
_CLIP_GRID = 100  # candidates of the MSE clip search
_MAX_CLIP_SAMPLES = 1 << 18
_SEED = 0  # sampling of calibration columns and values: quantization is deterministic


class QuantizeError(IlmpqValueError):
    """The model or the arguments cannot be quantized; the message names the layer or argument."""


# -- arguments ----------------------------------------------------------------------------------

def parse_ratio(ratio) -> Fraction:
    """Return the high-precision share as a :class:`~fractions.Fraction` in ``[0, 1]``.

    Accepts a Fraction, an int, a float (read as the nearest fraction with a denominator up to
    65536, as :func:`~ilmpq.golden.model.hi_row_count` does) or a string such as ``"1/8"`` or
    ``"0.125"``.
    """
    if isinstance(ratio, str):
        try:
            r = Fraction(ratio.strip())
        except (ValueError, ZeroDivisionError):
            raise QuantizeError(f"ratio {ratio!r} is not a number; give a fraction such as 1/8 "
                                f"or a decimal such as 0.125 in [0, 1]") from None
    elif isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise QuantizeError(f"ratio must be a number in [0, 1], not {ratio!r}")
    elif isinstance(ratio, numbers.Rational):
        r = Fraction(ratio)
    else:
        if not math.isfinite(float(ratio)):
            raise QuantizeError(f"ratio must be a number in [0, 1], not {ratio!r}")
        r = Fraction(float(ratio)).limit_denominator(1 << 16)
    if not (0 <= r <= 1):
        raise QuantizeError(f"ratio = {ratio} is not allowed: the high-precision row share must "
                            f"be in [0, 1]")
    return r


def check_calib_images(fm: FloatModel, images, what: str = "calibration images") -> np.ndarray:
    """Validate a batch of pixel images ``(N, C, H, W)`` in ``[0, 255]`` and return float64."""
    return _validate_images(fm, images, what).astype(np.float64)


def _validate_images(fm: FloatModel, images, what: str) -> np.ndarray:
    """:func:`check_calib_images` without the float64 copy: the checks run over chunks of the
    array as given (a ``numpy.memmap`` stays on disk), which is returned unchanged."""
    arr = images if isinstance(images, np.ndarray) else np.asarray(images)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise IlmpqTypeError(f"{what} must be a numeric array, not dtype {arr.dtype}")
    shape = fm.input_shape
    if arr.ndim != 4 or tuple(arr.shape[1:]) != shape:
        raise QuantizeError(f"{what} must have shape (N, {', '.join(map(str, shape))}) (NCHW, "
                            f"the model's input layout), not {arr.shape}")
    if arr.shape[0] < 1:
        raise QuantizeError(f"{what}: at least one image is needed")
    step = max(1, (16 << 20) // max(1, arr[0].nbytes))
    lo, hi = math.inf, -math.inf
    for i in range(0, arr.shape[0], step):
        chunk = np.asarray(arr[i:i + step])
        if np.issubdtype(chunk.dtype, np.floating) and not np.all(np.isfinite(chunk)):
            raise QuantizeError(f"{what} contain NaN or infinite values")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if lo < 0 or hi > 255:
        raise QuantizeError(
            f"{what} must be raw pixels in [0, 255] (the integer network reads uint8 pixels; "
            f"normalization is given separately as input_mean/input_std), but the values span "
            f"[{lo:g}, {hi:g}]")
    return arr


def _pixels(arr: np.ndarray) -> np.ndarray:
    """Whole float64 pixels of (a slice of) validated calibration images."""
    return np.rint(np.asarray(arr, dtype=np.float64))


def float_bytes_per_image(fm: FloatModel) -> int:
    """Bytes one calibration image costs in a float64 run of ``fm`` keeping every tensor: the
    tensors plus the largest convolution's im2col matrix and product (NumPy copies the window
    view into a matrix for ``tensordot``)."""
    tensors = sum(int(np.prod(s)) for s in fm.shapes.values())
    conv = 0
    for n in fm.nodes:
        if isinstance(n, FConv):
            _, ho, wo = fm.shapes[n.output]
            conv = max(conv, ho * wo * (n.in_channels * n.kernel[0] * n.kernel[1]
                                        + n.out_channels))
    return 8 * (tensors + 2 * conv)


# -- step 1: fold the input normalization --------------------------------------------------------

def fold_input_normalization(fm: FloatModel, input_mean=None, input_std=None) -> FloatModel:
    """Return an equivalent float model that reads raw pixels (``input_mean 0, input_std 1``).

    Every conv reading the network input gets ``W' = W / std[c]`` and
    ``b' = b - sum_{c,i,j} W[m,c,i,j] * mean[c] / std[c]``. The input may only feed convolutions
    (as their main input) unless the normalization is the identity. Exact except at zero-padded
    borders when ``mean != 0`` (see the module docstring).
    """
    mean = fm._norm_vector("input_mean", fm.input_mean if input_mean is None else input_mean,
                           0.0, fm.input_shape[0])
    std = fm._norm_vector("input_std", fm.input_std if input_std is None else input_std,
                          1.0, fm.input_shape[0])
    if np.any(std <= 0):
        raise QuantizeError(f"input_std must be positive for every channel, not {std}")
    identity = not np.any(mean) and np.all(std == 1.0)
    nodes = []
    for n in fm.nodes:
        reads = n.inputs()
        if fm.input in reads and not identity:
            if not isinstance(n, FConv) or n.residual == fm.input:
                raise QuantizeError(
                    f"layer {n.name!r} ({n.kind}) reads the network input directly; with input "
                    f"normalization (mean {mean.tolist()}, std {std.tolist()}) the input may only "
                    f"feed convolutions, into which the normalization is folded")
        if isinstance(n, FConv) and n.input == fm.input and not identity:
            w = n.weight / std[None, :, None, None]
            b = n.bias - (w * mean[None, :, None, None]).sum(axis=(1, 2, 3))
            n = dataclasses.replace(n, weight=w, bias=b)
        nodes.append(n)
    return FloatModel(input=fm.input, output=fm.output, nodes=nodes, shapes=dict(fm.shapes),
                      input_mean=np.zeros_like(mean), input_std=np.ones_like(std),
                      output_rank=fm.output_rank, meta=dict(fm.meta))


# -- step 2: activation scales --------------------------------------------------------------------

def activation_clip(values: np.ndarray, bits: int, signed: bool, method="mse") -> float:
    """Clip value of a tensor from its calibration values.

    Parameters
    ----------
    values : array
        Float calibration values of the tensor (any shape).
    bits : int
        Integer width of the tensor.
    signed : bool
        Symmetric signed range (clip applies to ``|v|``) or unsigned (``v >= 0`` after ReLU).
    method : "mse", "max" or float
        ``"mse"``: the clip among ``max * k/100, k = 1..100`` with the least mean squared
        quantization error; ``"max"``: the largest magnitude; a number ``p`` in ``(0, 100]``: the
        ``p``-th percentile of the magnitudes.

    Returns
    -------
    float
        The clip value (0 if every value is 0).
    """
    v = np.abs(np.asarray(values, dtype=np.float64).reshape(-1)) if signed else \
        np.maximum(np.asarray(values, dtype=np.float64).reshape(-1), 0.0)
    if v.size == 0:
        return 0.0
    vmax = float(v.max())
    if vmax == 0.0:
        return 0.0
    if method == "max":
        return vmax
    if isinstance(method, numbers.Real) and not isinstance(method, bool):
        p = float(method)
        if not (0 < p <= 100):
            raise QuantizeError(f"act_clip percentile {p} must be in (0, 100]")
        return float(np.percentile(v, p)) or vmax
    if method != "mse":
        raise QuantizeError(f"act_clip {method!r} is not allowed: use 'mse', 'max' or a "
                            f"percentile in (0, 100]")
    if v.size > _MAX_CLIP_SAMPLES:
        v = np.random.default_rng(_SEED).choice(v, _MAX_CLIP_SAMPLES, replace=False)
    qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    best, best_err = vmax, math.inf
    for k in range(_CLIP_GRID, 0, -1):
        c = vmax * k / _CLIP_GRID
        s = c / qmax
        err = float(np.mean((np.minimum(np.rint(v / s), qmax) * s - v) ** 2))
        if err < best_err:
            best, best_err = c, err
    return best


def _act_qmax(bits: int, signed: bool) -> int:
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


# -- step 3 and 4: rows ---------------------------------------------------------------------------

def quantize_rows(w2d: np.ndarray, precision: np.ndarray):
    """Per-row symmetric weight quantization.

    Parameters
    ----------
    w2d : float array ``(M, K)``
    precision : array ``(M,)`` of :class:`~ilmpq.golden.formats.Precision`

    Returns
    -------
    (wq, sw)
        ``wq`` int64 ``(M, K)`` within each row's range, ``sw`` float64 ``(M,)`` with
        ``W ~ sw[:, None] * wq``. ``sw[m] = max|W_m| / wmax(precision[m])``; an all-zero row gets
        the largest scale of the layer (1 if every row is zero).
    """
    w2d = np.asarray(w2d, dtype=np.float64)
    wmax = np.where(np.asarray(precision) == Precision.HI, Precision.HI.wmax,
                    Precision.LO.wmax).astype(np.float64)
    amax = np.abs(w2d).max(axis=1) if w2d.shape[1] else np.zeros(w2d.shape[0])
    sw = amax / wmax
    if np.any(sw == 0):
        fill = float(sw.max()) if np.any(sw > 0) else 1.0
        sw = np.where(sw == 0, fill, sw)
    wq = np.clip(np.rint(w2d / sw[:, None]), -wmax[:, None], wmax[:, None]).astype(np.int64)
    return wq, sw


def row_scores(w2d: np.ndarray, x_cols: np.ndarray | None, rule: str) -> np.ndarray:
    """Score of every row for the 8-bit share (higher = more deserving of 8 bits).

    ``rule="error"``: ``||W_m X - Q4(W_m) X||_2`` over the calibration columns ``x_cols``
    ``(K, P)``, ``Q4`` the per-row 4-bit quantizer of :func:`quantize_rows`.
    ``rule="variance"``: the variance of the row's weights.
    """
    w2d = np.asarray(w2d, dtype=np.float64)
    if rule == "variance":
        return w2d.var(axis=1)
    if rule == "error":
        wq, sw = quantize_rows(w2d, np.full(w2d.shape[0], Precision.LO))
        dw = w2d - wq * sw[:, None]
        return np.sqrt(_row_err_sq(dw, x_cols))
    raise QuantizeError(f"row-selection rule {rule!r} is not allowed: use one of {RULES}")


def _row_err_sq(dw: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``||dW_m X_g(m)||^2`` per row; a grouped layer's rows (``dw`` ``(M, K/groups)``) see only
    their group's columns (``cols`` ``(K, P)``, the groups' rows consecutive as in im2col)."""
    m, kg = dw.shape
    g = cols.shape[0] // kg
    xg = cols.reshape(g, kg, -1)
    prod = np.matmul(dw.reshape(g, m // g, kg), xg).reshape(m, -1)
    return np.sum(prod ** 2, axis=1)


def select_hi_rows(scores: np.ndarray, n_hi: int) -> np.ndarray:
    """Precision array (uint8 ``(M,)``): the ``n_hi`` highest scores ``HI`` (ties: lower index)."""
    scores = np.asarray(scores, dtype=np.float64)
    prec = np.full(scores.shape[0], Precision.LO, dtype=np.uint8)
    order = np.argsort(-scores, kind="stable")
    prec[order[:n_hi]] = Precision.HI
    return prec


# -- step 5: requantization -----------------------------------------------------------------------

def choose_requant(m_real, spec: NumericSpec, *, mr_real=None, layer: str = "?"):
    """Pick ``(M, S, Mr)`` per row: the largest ``S`` in ``spec.shift_range`` keeping
    ``M = round(m_real * 2**S)`` (and ``Mr``) within ``spec.mult_bits``.

    Parameters
    ----------
    m_real : float array ``(M,)``
        Real multipliers ``sw * s_in / s_out`` (non-negative).
    spec : NumericSpec
    mr_real : float array ``(M,)``, optional
        Real residual multipliers ``s_res / s_out``.
    layer : str
        Layer name for the error message.

    Returns
    -------
    (mult, shift, res_mult)
        int64 arrays ``(M,)``; ``res_mult`` is ``None`` without ``mr_real``.

    Raises
    ------
    QuantizeError
        If a multiplier does not fit ``spec.mult_bits`` even at the smallest shift; the message
        names the layer, the row and the real multiplier.
    """
    m_real = np.asarray(m_real, dtype=np.float64)
    both = m_real if mr_real is None else np.maximum(m_real, np.asarray(mr_real, np.float64))
    smin, smax = spec.shift_range
    mmax = spec.mult_range[1]
    shift = np.full(m_real.shape, -1, dtype=np.int64)
    for s in range(smax, smin - 1, -1):
        ok = (shift < 0) & (np.rint(both * 2.0 ** s) <= mmax)
        shift[ok] = s
    if np.any(shift < 0):
        r = int(np.flatnonzero(shift < 0)[0])
        what = (f"the multiplier sw*s_in/s_out = {m_real[r]:.6g}" if mr_real is None or
                m_real[r] >= mr_real[r] else
                f"the residual multiplier s_res/s_out = {float(mr_real[r]):.6g}")
        raise QuantizeError(
            f"layer {layer!r} row {r}: {what} cannot be represented: M = round(m * 2**S) must "
            f"fit {spec.mult_bits} unsigned bits (<= {mmax}) with S >= {smin}, which needs "
            f"m <= {(mmax + 0.5) / 2 ** smin:.6g}; the output scale is too small for this layer "
            f"(calibrate with more representative images, or use a wider mult_bits)")
    mult = np.rint(m_real * 2.0 ** shift).astype(np.int64)
    res_mult = None if mr_real is None else \
        np.rint(np.asarray(mr_real, np.float64) * 2.0 ** shift).astype(np.int64)
    return mult, shift, res_mult


# -- report ----------------------------------------------------------------------------------------

def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (ref - approx)^2)`` in dB (``inf`` if equal)."""
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.sum((ref - np.asarray(approx, dtype=np.float64)) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / err)


def text_table(cols, rows) -> list[str]:
    """A plain-text table for reports: the header, a rule and one line per row, each column
    left-aligned to its widest cell (cells are strings)."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(cols)]
    return (["  ".join(c.ljust(w) for c, w in zip(cols, widths)),
             "  ".join("-" * w for w in widths)]
            + ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows])


def _fmt_db(v) -> str:
    if v is None:
        return "-"
    return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:.1f}")


@dataclass
class LayerReport:
    """Quantization statistics of one conv/FC layer (SQNRs in dB against float)."""

    name: str
    kind: str  #: "conv" or "fc"
    out_shape: tuple
    rows: int
    hi_rows: int
    lo_rows: int
    weight_sqnr_db: float
    act_scale: float  #: scale of the output tensor
    act_clip: float  #: float clip value of the output tensor
    out_bits: int
    out_signed: bool
    mult_range: tuple  #: (min M, max M)
    shift_range: tuple  #: (min S, max S)
    local_sqnr_db: float | None = None  #: this layer alone, on the quantized float input
    net_sqnr_db: float | None = None  #: through the whole integer network
    saturation: float | None = None  #: fraction of outputs at the clamp limits (network run)


@dataclass
class QuantReport:
    """Per-layer report of a quantization (also stored as ``QModel.meta["quant_report"]``)."""

    ratio: str
    rule: str
    act_bits: int
    act_clip: str
    n_calib: int
    layers: list = field(default_factory=list)
    output_sqnr_db: float | None = None
    worst_layer: str | None = None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v
        return clean(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "QuantReport":
        def unclean(v):
            if v == "inf":
                return math.inf
            if v == "-inf":
                return -math.inf
            return v
        d = dict(d)
        layers = []
        for ld in d.pop("layers", []):
            ld = {k: unclean(v) for k, v in ld.items()}
            for k in ("out_shape", "mult_range", "shift_range"):
                ld[k] = tuple(ld[k])
            layers.append(LayerReport(**ld))
        d = {k: unclean(v) for k, v in d.items()}
        return cls(layers=layers, **d)

    def format(self) -> str:
        """The report as a plain-text table."""
        head = (f"quantization: R = {self.ratio}, rule = {self.rule}, A{self.act_bits}, "
                f"act clip = {self.act_clip}, {self.n_calib} calibration images")
        cols = ("layer", "kind", "out shape", "rows", "HI", "LO", "W SQNR", "act scale",
                "local SQNR", "net SQNR", "sat %", "M range", "S range")
        rows = []
        for lr in self.layers:
            rows.append((lr.name, lr.kind, "x".join(map(str, lr.out_shape)), str(lr.rows),
                         str(lr.hi_rows), str(lr.lo_rows), _fmt_db(lr.weight_sqnr_db),
                         f"{lr.act_scale:.4g}", _fmt_db(lr.local_sqnr_db),
                         _fmt_db(lr.net_sqnr_db),
                         "-" if lr.saturation is None else f"{100 * lr.saturation:.2f}",
                         f"{lr.mult_range[0]}..{lr.mult_range[1]}",
                         f"{lr.shift_range[0]}..{lr.shift_range[1]}"))
        lines = [head, *text_table(cols, rows)]
        lines.append("SQNR in dB against float on the calibration images: W = weights, local = "
                     "the layer alone on its quantized float input, net = through the integer "
                     "network.")
        if self.output_sqnr_db is not None:
            lines.append(f"network output SQNR: {_fmt_db(self.output_sqnr_db)} dB")
        if self.worst_layer is not None:
            lr = next(x for x in self.layers if x.name == self.worst_layer)
            lines.append(f"layer losing the most: {self.worst_layer} (local SQNR "
                         f"{_fmt_db(lr.local_sqnr_db)} dB)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def quant_report(qmodel: QModel) -> QuantReport:
    """The :class:`QuantReport` stored in a quantized model's meta (``KeyError`` if none)."""
    return QuantReport.from_dict(qmodel.meta["quant_report"])


# -- the quantizer ---------------------------------------------------------------------------------

def _sample_columns(x: np.ndarray, n: FConv, max_columns: int) -> np.ndarray:
    """Up to ``max_columns`` im2col columns ``(K, P)`` of the batch ``x`` for layer ``n``."""
    win = im2col(x, n.kernel, n.stride, n.padding)  # (N, C, Ho, Wo, kh, kw) view
    nb, _, ho, wo = win.shape[:4]
    total = nb * ho * wo
    rng = np.random.default_rng(_SEED)
    idx = np.arange(total) if total <= max_columns else np.sort(
        rng.choice(total, max_columns, replace=False))
    b, rem = np.divmod(idx, ho * wo)
    oy, ox = np.divmod(rem, wo)
    cols = win[b, :, oy, ox]  # (P, C, kh, kw)
    return cols.reshape(len(idx), -1).T


def quantize(float_model: FloatModel, calib_images, *, ratio, spec: NumericSpec,
             rule: str = "error", input_mean=None, input_std=None, act_clip="mse",
             max_columns: int = 4096, report: bool = True, report_images: int = 256,
             calib_memory: int = 256 << 20) -> QModel:
    """Quantize a float CNN to an ILMPQ integer model.

    Parameters
    ----------
    float_model : FloatModel
        From :func:`ilmpq.golden.onnx_import.load_onnx` (or built directly).
    calib_images : array ``(N, C, H, W)``
        Calibration images as raw pixels in ``[0, 255]`` (integer or float, rounded to whole
        pixels), NCHW in the model's input layout. A few hundred images are plenty.
    ratio : Fraction, float, int or str
        High-precision row share ``R`` (``HWConfig.ratio``); every conv/FC layer gets exactly
        ``ceil(R * M)`` 8-bit rows. ``0``: all 4-bit, ``1``: all 8-bit.
    spec : NumericSpec
        Widths (``HWConfig.numeric``): ``act_bits`` of every activation tensor but the 8-bit
        pixel input, ``acc_bits``, ``mult_bits`` and the shift range.
    rule : "error" or "variance"
        Row-selection rule (see the module docstring).
    input_mean, input_std : float or sequence, optional
        Input normalization the float model expects; default: the model's own
        (``float_model.input_mean`` / ``input_std``).
    act_clip : "mse", "max" or float
        Activation clipping method (:func:`activation_clip`).
    max_columns : int
        Calibration columns (output pixels) sampled per layer for the error rule.
    report : bool
        Compute the per-layer report (runs the integer network on the calibration images).
    report_images : int
        At most this many calibration images are used for the report (and at most as many as
        fit ``calib_memory``).
    calib_memory : int
        Bytes the float activations of the calibration images may take at once. The images run
        through the float model in batches of this size; if they all fit one batch (the usual
        case: 256 MiB holds about 3000 digits images), every activation is used whole, else
        only bounded samples are kept per batch, so memory does not grow with the number of
        images (a percentile clip is then estimated from up to 2**18 values per tensor). The
        images are read in slices, so a ``numpy.memmap`` is streamed from disk.

    Returns
    -------
    QModel
        Validated against ``spec``; ``meta`` holds the provenance and ``"quant_report"``.

    Raises
    ------
    QuantizeError
        Bad arguments, a conv reading a signed tensor, a multiplier or bias that cannot be
        represented (naming the layer), a layer that may overflow the accumulator.
    """
    if not isinstance(float_model, FloatModel):
        raise IlmpqTypeError(f"float_model must be a FloatModel (see load_onnx), not "
                             f"{type(float_model).__name__}")
    if not isinstance(spec, NumericSpec):
        raise IlmpqTypeError(f"spec must be a NumericSpec (e.g. HWConfig.numeric), not "
                             f"{type(spec).__name__}")
    if rule not in RULES:
        raise QuantizeError(f"row-selection rule {rule!r} is not allowed: use one of {RULES}")
    if isinstance(max_columns, bool) or not isinstance(max_columns, int) or max_columns < 1:
        raise QuantizeError(f"max_columns must be a positive integer, not {max_columns!r}")
    r = parse_ratio(ratio)
    activation_clip(np.ones(1), 8, False, act_clip)  # validates the method early
    if isinstance(calib_memory, bool) or not isinstance(calib_memory, int) or calib_memory < 1:
        raise QuantizeError(f"calib_memory must be a positive number of bytes, not "
                            f"{calib_memory!r}")
    for n in float_model.nodes:   # the one padding rule, before any work (as compile has it)
        if isinstance(n, (FConv, FMaxPool, FAvgPool)):
            why = padding_error(n.kernel, n.padding)
            if why:
                raise QuantizeError(f"layer {n.name!r}: {why}")
    # validated in chunks, never copied whole (a memory-mapped file stays on disk)
    images = _validate_images(float_model, calib_images, "calibration images")
    n_calib = int(images.shape[0])
    a_bits = spec.act_bits

    c_in = float_model.input_shape[0]
    mean_v = float_model._norm_vector(
        "input_mean", float_model.input_mean if input_mean is None else input_mean, 0.0, c_in)
    std_v = float_model._norm_vector(
        "input_std", float_model.input_std if input_std is None else input_std, 1.0, c_in)
    fm = fold_input_normalization(float_model, mean_v, std_v)
    notes = []
    # the calibration images go through the float model in batches of at most calib_memory
    # bytes; when they all fit one batch (the usual case) the float activations of every tensor
    # are kept and used whole, else only bounded statistics are kept per batch (_CalibStats)
    batch = max(1, calib_memory // float_bytes_per_image(fm))
    one_batch = n_calib <= batch
    # the integer network sees whole pixels: calibrate the float model on the same values
    pixels = _pixels(images) if one_batch else None
    env = fm.run(pixels, all_tensors=True) if one_batch else None
    out_chain = _output_chain(fm)
    signed_of = {n.output: not n.relu for n in fm.nodes if isinstance(n, FConv)}
    stats_s = None if one_batch else _CalibStats(
        fm, float_model, images, batch, r, rule, max_columns, out_chain, signed_of,
        mean_v, std_v)
    if np.any(mean_v):
        if one_batch:
            orig = float_model.replace(input_mean=mean_v, input_std=std_v)
            ref_out = orig.run(orig.normalize(pixels))
            diff = float(np.max(np.abs(ref_out - env[fm.output])))
            scale = float(np.max(np.abs(ref_out))) or 1.0
        else:
            diff, scale = stats_s.fold_diff, stats_s.fold_scale or 1.0
        if diff > 1e-9 * scale:
            notes.append(
                f"folding the input normalization (mean {mean_v.tolist()}) into zero-padded "
                f"convolutions changes the float output by up to {diff:.3g} "
                f"({100 * diff / scale:.2g}% of its largest value): the hardware pads raw "
                f"pixels with 0")

    tensors: dict[str, TensorSpec] = {
        fm.input: TensorSpec(fm.input, tuple(fm.shapes[fm.input]), _INPUT_BITS, False, 1.0)}
    clips: dict[str, float] = {fm.input: 255.0}
    layers = []
    stats = []
    # conv outputs that only a Concat reads take the Concat's output scale (_concat_groups)
    concat_group = _concat_groups(fm, signed_of)
    group_clip: dict[tuple, float] = {}
    for n in fm.nodes:
        shape = tuple(int(v) for v in fm.shapes[n.output])
        if isinstance(n, (FPointwise, FMul, FConcat)):
            method = "max" if n.output in out_chain else act_clip
            values = (lambda: env[n.output] if one_batch else stats_s.values[n.output])
            layers.append(_quantize_host_op(n, tensors, clips, values, method, a_bits, spec))
            continue
        if not isinstance(n, FConv):
            src = tensors[n.input]
            tensors[n.output] = TensorSpec(n.output, shape, src.bits, src.signed, src.scale)
            clips[n.output] = clips[n.input]
            if isinstance(n, FMaxPool):
                layers.append(MaxPoolLayer(n.name, n.input, n.output, tuple(n.kernel),
                                           tuple(n.stride), tuple(n.padding)))
            elif isinstance(n, FAvgPool):
                layers.append(AvgPoolLayer(n.name, n.input, n.output, tuple(n.kernel),
                                           tuple(n.stride), tuple(n.padding),
                                           bool(n.ceil_mode), bool(n.count_include_pad)))
            elif isinstance(n, FGlobalAvgPool):
                layers.append(GlobalAvgPoolLayer(n.name, n.input, n.output))
            elif isinstance(n, FFlatten):
                layers.append(FlattenLayer(n.name, n.input, n.output))
            elif isinstance(n, FSlice):
                layers.append(SliceLayer(n.name, n.input, n.output, n.starts, n.stops, n.steps))
            elif isinstance(n, FPermute):
                layers.append(PermuteLayer(n.name, n.input, n.output,
                                           np.asarray(n.perm, np.int64)))
            continue

        x_spec = tensors[n.input]   # a signed input is fine: golden multiplies signed values
        signed = not n.relu
        method = "max" if n.output in out_chain else act_clip
        clip = activation_clip(env[n.output] if one_batch else stats_s.values[n.output],
                               a_bits, signed, method)
        grp = concat_group.get(n.output)
        if grp is not None and all(tensors[t].signed == signed for t in grp[0]
                                   if t not in grp[1] and t in tensors) and \
                all(t in clips for t in grp[0] if t not in grp[1]):
            # the Concat's output clip: the largest of its inputs' clips (as the Concat takes
            # it; the other inputs' are known by now), so its requantization of this input is
            # the identity
            if grp not in group_clip:
                group_clip[grp] = max(
                    activation_clip(env[t] if one_batch else stats_s.values[t], a_bits, signed,
                                    "max" if t in out_chain else act_clip)
                    if t in grp[1] else clips[t] for t in grp[0])
            clip = group_clip[grp]
        s_out = clip / _act_qmax(a_bits, signed) if clip > 0 else 1.0
        tensors[n.output] = TensorSpec(n.output, shape, a_bits, signed, s_out)
        clips[n.output] = clip

        m = n.out_channels
        w2d = n.weight.reshape(m, -1)
        n_hi = hi_row_count(r, m)
        if rule == "error" and 0 < n_hi < m and not one_batch:
            scores = np.sqrt(stats_s.err_sq[n.name])   # the same norm, summed over batches
        elif rule == "error" and 0 < n_hi < m:
            # a grouped (depthwise) row is scored on its own group's input columns
            scores = row_scores(w2d, _sample_columns(env[n.input], n, max_columns), rule)
        else:
            scores = row_scores(w2d, None, rule) if 0 < n_hi < m else np.zeros(m)
        prec = select_hi_rows(scores, n_hi)
        wq, sw = quantize_rows(w2d, prec)
        s_in = x_spec.scale
        bias = np.rint(n.bias / (sw * s_in))
        lo, hi = spec.acc_range
        if np.any(bias < lo) or np.any(bias > hi):
            row = int(np.flatnonzero((bias < lo) | (bias > hi))[0])
            raise QuantizeError(
                f"layer {n.name!r} row {row}: the bias {n.bias[row]:.6g} is {bias[row]:.6g} in "
                f"accumulator units (scale {sw[row] * s_in:.3g}), outside the {spec.acc_bits}-bit "
                f"accumulator range [{lo}, {hi}]")
        mr_real = None
        if n.residual is not None:
            mr_real = np.full(m, tensors[n.residual].scale / s_out)
        mult, shift, res_mult = choose_requant(sw * s_in / s_out, spec, mr_real=mr_real,
                                               layer=n.name)
        layer = ConvLayer(
            name=n.name, input=n.input, output=n.output,
            weight=wq.reshape(n.weight.shape).astype(np.int8), precision=prec,
            bias=bias.astype(np.int64), mult=mult, shift=shift, stride=tuple(n.stride),
            padding=tuple(n.padding), relu=bool(n.relu), residual=n.residual,
            res_mult=res_mult, w_scale=sw.astype(np.float64), groups=int(n.groups))
        try:
            ops.check_no_overflow(layer, x_spec.bits, spec)
        except ops.AccumulatorOverflow as e:
            raise QuantizeError(str(e)) from None
        layers.append(layer)
        w_hat = wq * sw[:, None]
        stats.append(LayerReport(
            name=n.name, kind="fc" if fm.shapes[n.input][1:] == (1, 1) and n.kernel == (1, 1)
            else "conv", out_shape=shape, rows=m, hi_rows=int(np.sum(prec == Precision.HI)),
            lo_rows=int(np.sum(prec == Precision.LO)), weight_sqnr_db=sqnr_db(w2d, w_hat),
            act_scale=float(s_out), act_clip=float(clip), out_bits=a_bits, out_signed=signed,
            mult_range=(int(mult.min()), int(mult.max())),
            shift_range=(int(shift.min()), int(shift.max()))))

    ratio_str = f"{r.numerator}/{r.denominator}"
    meta = {
        "source": str(float_model.meta.get("source", "")),
        "ratio": ratio_str, "rule": rule, "act_clip": str(act_clip),
        "input_mean": mean_v.tolist(), "input_std": std_v.tolist(),
        "n_calib": n_calib, "output_rank": int(fm.output_rank),
        "output_head": fm.meta.get("output_head"),
    }
    qm = QModel(tensors=tensors, layers=layers, input=fm.input, output=fm.output,
                ratio=float(r), act_bits=a_bits, meta=meta, spec=spec)
    qm.validate(spec)

    rep = QuantReport(ratio=ratio_str, rule=rule, act_bits=a_bits, act_clip=str(act_clip),
                      n_calib=n_calib, layers=stats, notes=notes)
    if report:
        if not one_batch:   # the report's images must fit one batch too
            pixels = _pixels(images[:min(report_images, batch)])
            env = fm.run(pixels, all_tensors=True)
        _fill_report(rep, qm, fm, env, pixels[:report_images], spec)
    qm.meta["quant_report"] = rep.to_dict()
    return qm


def _quantize_host_op(n, tensors: dict, clips: dict, values, method, a_bits: int,
                      spec: NumericSpec):
    """Quantize a pointwise function (one lookup table), a gating product or a concat; fills
    ``tensors`` and ``clips`` for its output and returns the integer layer."""
    shape = tuple(int(v) for v in tensors[n.input].shape)
    if isinstance(n, FConcat):
        ins = [tensors[t] for t in n.inputs()]
        # one output scale covering every input's range; each input is requantized to it
        signed = any(t.signed for t in ins)
        clip = max(clips[t] for t in n.inputs())
        s_out = clip / _act_qmax(a_bits, signed) if clip > 0 else 1.0
        mults, shifts = [], []
        for t in ins:
            mlt, sh, _ = choose_requant(np.array([t.scale / s_out]), spec, layer=n.name)
            mults.append(int(mlt[0]))
            shifts.append(int(sh[0]))
        c = sum(t.shape[0] for t in ins)
        tensors[n.output] = TensorSpec(n.output, (c,) + shape[1:], a_bits, signed, s_out)
        clips[n.output] = clip
        return ConcatLayer(n.name, tuple(n.inputs()), n.output, tuple(mults), tuple(shifts))
    x = tensors[n.input]
    if isinstance(n, FPointwise):
        lo, hi = x.range
        f = np.asarray(n.fn(np.arange(lo, hi + 1, dtype=np.float64) * x.scale), np.float64)
        if f.shape != (hi - lo + 1,) or not np.all(np.isfinite(f)):
            raise QuantizeError(f"layer {n.name!r}: the pointwise function {n.function} is not "
                                f"finite on every level of its {x.bits}-bit input")
        # every output the table can give is known: signed exactly when one is negative
        signed = bool(f.min() < 0)
        clip = activation_clip(values(), a_bits, signed, method)
        reach = float(np.max(np.abs(f)))
        clip = min(clip, reach) if clip > 0 else reach
        s_out = clip / _act_qmax(a_bits, signed) if clip > 0 else 1.0
        qlo, qhi = (-(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1) if signed else \
            (0, (1 << a_bits) - 1)
        table = np.clip(np.rint(f / s_out), qlo, qhi).astype(np.int64)
        tensors[n.output] = TensorSpec(n.output, shape, a_bits, signed, s_out)
        clips[n.output] = clip
        return LutLayer(n.name, n.input, n.output, table, function=n.function)
    g = tensors[n.gate]
    signed = x.signed or g.signed
    clip = activation_clip(values(), a_bits, signed, method)
    s_out = clip / _act_qmax(a_bits, signed) if clip > 0 else 1.0
    mlt, sh, _ = choose_requant(np.array([x.scale * g.scale / s_out]), spec, layer=n.name)
    tensors[n.output] = TensorSpec(n.output, shape, a_bits, signed, s_out)
    clips[n.output] = clip
    return MulLayer(n.name, n.input, n.gate, n.output, int(mlt[0]), int(sh[0]))


def _concat_groups(fm: FloatModel, signed_of: dict) -> dict:
    """Conv outputs quantized at the scale of the Concat reading them: ``{tensor: (the Concat's
    inputs, those of them that are conv outputs of one signedness read by that Concat alone,
    none the network output)}`` for every Concat with distinct inputs. A conv takes the
    Concat's scale when, at its turn, every other input's format is known and of its
    signedness (an input quantized later, e.g. a conv further down the graph, keeps the conv
    at its own scale and the Concat requantizes it).

    Sound: the Concat's output clip is the largest of its inputs' clips (an input's values
    already lie within it, so nothing more saturates), and its output is on that one scale
    anyway; quantizing the conv straight to it rounds once where the Concat would round twice
    (to the conv's scale, then to its own). The Concat's requantization of each input is then
    the identity (``M = 2**S``), so the compiler can let the convs store straight into their
    channel ranges of the Concat's tensor (firmware/compiler.py). golden's semantics are
    unchanged: the Concat still requantizes each input with its ``(M, S)``."""
    producers = fm.producers()
    readers: dict[str, int] = {}
    for n in fm.nodes:
        for t in n.inputs():
            readers[t] = readers.get(t, 0) + 1
    out = {}
    for n in fm.nodes:
        if not isinstance(n, FConcat):
            continue
        ins = tuple(n.inputs())
        convs = tuple(t for t in ins if isinstance(producers.get(t), FConv)
                      and readers.get(t) == 1 and t != fm.output)
        if len(set(ins)) != len(ins) or len({signed_of[t] for t in convs}) > 1:
            continue
        out.update({t: (ins, convs) for t in convs})
    return out


def _output_chain(fm: FloatModel) -> set:
    """Tensors whose format reaches the network output (they use the max clip)."""
    producers = fm.producers()
    out_chain, t = set(), fm.output
    while True:
        out_chain.add(t)
        p = producers.get(t)
        if p is None or isinstance(p, (FConv, FPointwise, FMul, FConcat)):
            break
        t = p.input
    return out_chain


def _share(total: int, want: int, start: int, stop: int) -> int:
    """How many of ``want`` samples spread evenly over ``total`` items fall into items
    ``[start, stop)`` (the shares of consecutive batches add up to ``want``)."""
    return want * stop // total - want * start // total


class _CalibStats:
    """Bounded per-tensor statistics of the float model on calibration images that do not fit
    one batch: one pass over batches of ``batch`` images, each run in float64 and dropped.

    * ``values[t]``: for every conv/FC output ``t``, the values :func:`activation_clip` needs:
      at most ``_MAX_CLIP_SAMPLES`` values spread evenly over the batches (all of them if there
      are fewer) plus the exact extreme, so ``"max"`` and the MSE grid's top are exact and a
      percentile is estimated from the sample.
    * ``err_sq[layer]``: for ``rule="error"``, the squared row errors
      ``||W_m X - Q4(W_m) X||^2`` summed over ``max_columns`` calibration columns spread over
      the batches (:func:`row_scores` on their concatenation, without keeping them).
    * ``fold_diff``, ``fold_scale``: the largest output difference the folded input
      normalization makes, and the largest output magnitude.
    """

    def __init__(self, fm, float_model, images, batch, ratio, rule, max_columns, out_chain,
                 signed_of, mean_v, std_v):
        n_img = int(images.shape[0])
        rng = np.random.default_rng(_SEED)
        tracked = [n for n in fm.nodes if isinstance(n, (FConv, FPointwise, FMul))]
        convs = tracked
        chunks: dict[str, list] = {n.output: [] for n in convs}
        extreme = {n.output: 0.0 for n in convs}
        self.err_sq = {}
        dws = {}
        for n in convs:
            if not isinstance(n, FConv):
                continue
            m = n.out_channels
            if rule == "error" and 0 < hi_row_count(ratio, m) < m:
                w2d = n.weight.reshape(m, -1)
                wq, sw = quantize_rows(w2d, np.full(m, Precision.LO))
                dws[n.name] = w2d - wq * sw[:, None]
                self.err_sq[n.name] = np.zeros(m)
        orig = float_model.replace(input_mean=mean_v, input_std=std_v) if np.any(mean_v) \
            else None
        self.fold_diff = self.fold_scale = 0.0
        for b0 in range(0, n_img, batch):
            b1 = min(n_img, b0 + batch)
            px = _pixels(images[b0:b1])
            env = fm.run(px, all_tensors=True)
            for n in convs:
                v = env[n.output].reshape(-1)
                mag = np.abs(v) if signed_of.get(n.output, True) else np.maximum(v, 0.0)
                extreme[n.output] = max(extreme[n.output], float(mag.max()) if mag.size else 0)
                size = int(np.prod(fm.shapes[n.output]))   # values per image
                if n.output in out_chain:
                    pass   # the max clip needs only the extreme
                elif n_img * size <= _MAX_CLIP_SAMPLES - 1:
                    chunks[n.output].append(v.copy())
                else:
                    k = _share(n_img * size, _MAX_CLIP_SAMPLES - 1, b0 * size, b1 * size)
                    chunks[n.output].append(v[np.sort(rng.choice(v.size, k, replace=False))])
                if n.name in dws:
                    _, ho, wo = fm.shapes[n.output]
                    per = ho * wo
                    k = per * (b1 - b0) if n_img * per <= max_columns else \
                        _share(n_img * per, max_columns, b0 * per, b1 * per)
                    if k:
                        cols = _sample_columns(env[n.input], n, k)
                        self.err_sq[n.name] += _row_err_sq(dws[n.name], cols)
            if orig is not None:
                ref = orig.run(orig.normalize(px))
                self.fold_diff = max(self.fold_diff, float(np.max(np.abs(ref - env[fm.output]))))
                self.fold_scale = max(self.fold_scale, float(np.max(np.abs(ref))))
            del env
        # the exact extreme goes with the sample (activation_clip takes its max from the values)
        self.values = {t: np.concatenate(c + [np.array([extreme[t]])]) for t, c in
                       chunks.items()}


def _quantize_tensor(x: np.ndarray, t: TensorSpec) -> np.ndarray:
    lo, hi = t.range
    return np.clip(np.rint(x / t.scale), lo, hi).astype(np.int64)


def _fill_report(rep: QuantReport, qm: QModel, fm: FloatModel, env: dict, pixels: np.ndarray,
                 spec: NumericSpec) -> None:
    n_img = pixels.shape[0]
    ints = reference.run_batch(qm, pixels.astype(np.uint8), spec=spec)
    by_name = {lr.name: lr for lr in rep.layers}
    for layer in qm.conv_layers:
        lr = by_name[layer.name]
        t_out = qm.tensors[layer.output]
        ref = env[layer.output][:n_img]
        q_net = ints[layer.output].astype(np.int64)
        lr.net_sqnr_db = sqnr_db(ref, q_net * t_out.scale)
        lo, hi = ops.output_range(t_out.bits, t_out.signed, layer.relu)
        lr.saturation = float(np.mean((q_net == hi) | ((q_net == lo) & (lo < 0))))
        # local: this layer alone on its exactly quantized float input (and residual)
        xin = _quantize_tensor(env[layer.input][:n_img], qm.tensors[layer.input])
        res = None if layer.residual is None else \
            _quantize_tensor(env[layer.residual][:n_img], qm.tensors[layer.residual])
        outs = []
        for i in range(n_img):
            tens = {layer.input: xin[i]}
            if res is not None:
                tens[layer.residual] = res[i]
            outs.append(reference.run_layer(qm, layer, tens, spec=spec))
        lr.local_sqnr_db = sqnr_db(ref, np.stack(outs).astype(np.int64) * t_out.scale)
    if rep.layers:
        rep.worst_layer = min(rep.layers, key=lambda x: x.local_sqnr_db).name
    t = qm.tensors[qm.output]
    rep.output_sqnr_db = sqnr_db(env[qm.output][:n_img],
                                 ints[qm.output].astype(np.int64) * t.scale)


# -- accuracy ------------------------------------------------------------------------------------

def _labels(labels, n):
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise QuantizeError(f"labels must be an integer array of shape ({n},), not "
                            f"{y.dtype} {y.shape}")
    return y.astype(np.int64)


def accuracy_float(fm: FloatModel, pixels, labels) -> float:
    """Top-1 accuracy of the float model on raw pixel images ``(N, C, H, W)`` (its own
    normalization applied)."""
    p = check_calib_images(fm, pixels, "images")
    y = _labels(labels, p.shape[0])
    out = fm.run(fm.normalize(p))
    return float(np.mean(np.argmax(out.reshape(len(p), -1), axis=1) == y))


def accuracy_int(qm: QModel, pixels, labels) -> float:
    """Top-1 accuracy of the integer model (:func:`ilmpq.golden.reference.predict`; the lowest
    index wins a tie) on ``uint8`` pixel images ``(N, C, H, W)``."""
    p = np.asarray(pixels)
    y = _labels(labels, p.shape[0] if p.ndim == 4 else -1)
    return float(np.mean(reference.predict(qm, p) == y))
