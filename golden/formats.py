"""Number formats of the ILMPQ numeric contract (``docs/numeric.md`` section 1).

This module is the single place where precisions, widths and ranges are defined. The hardware
(:mod:`ilmpq.hdl`) imports the enum and the width constants from here; it never imports golden's
arithmetic.

Weights are signed and symmetric: a ``LO`` row holds 4-bit weights in ``[-7, 7]``, a ``HI`` row
8-bit weights in ``[-127, 127]`` (the most negative two's complement code is never used, so that
negation never overflows and the quantizer grid is symmetric).

Activations are unsigned ``act_bits`` wide with zero point 0 (they follow ReLU); a tensor that is
not followed by ReLU (for example the logits) is signed ``act_bits`` wide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Precision", "LO_BITS", "HI_BITS", "PRECISION_BITS", "SUPPORTED_ACT_BITS",
    "weight_range", "act_range", "signed_range", "unsigned_range", "NumericSpec",
    "check_int_array", "saturate",
]


class Precision(enum.IntEnum):
    """Precision of one weight row (one output channel)."""

    LO = 0  #: 4-bit signed weights, range [-7, 7]
    HI = 1  #: 8-bit signed weights, range [-127, 127]

    @property
    def bits(self) -> int:
        return PRECISION_BITS[self]

    @property
    def wmax(self) -> int:
        """Largest weight magnitude of this precision (symmetric range)."""
        return (1 << (self.bits - 1)) - 1


LO_BITS = 4
HI_BITS = 8
PRECISION_BITS = {Precision.LO: LO_BITS, Precision.HI: HI_BITS}

#: Activation widths the whole flow supports (quantizer, golden, hardware).
SUPPORTED_ACT_BITS = (4, 5, 8)


def weight_range(precision: Precision) -> tuple[int, int]:
    """Return the inclusive ``(min, max)`` integer weight range of a row precision."""
    p = Precision(precision)
    return -p.wmax, p.wmax


def unsigned_range(bits: int) -> tuple[int, int]:
    return 0, (1 << bits) - 1


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def act_range(bits: int, signed: bool = False) -> tuple[int, int]:
    """Inclusive range of an activation tensor of ``bits`` bits.

    Unsigned (after ReLU, pooling or the pixel input): ``[0, 2**bits - 1]``.
    Signed (a requantized output without ReLU): ``[-2**(bits-1), 2**(bits-1) - 1]``.
    """
    if bits not in SUPPORTED_ACT_BITS:
        raise ValueError(f"activation width must be one of {SUPPORTED_ACT_BITS}, not {bits!r}")
    return signed_range(bits) if signed else unsigned_range(bits)


def saturate(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Clamp an integer array to ``[lo, hi]`` (no wrap-around), keeping its dtype."""
    return np.clip(x, lo, hi)


def check_int_array(name: str, x, lo: int, hi: int, *, ndim: int | None = None) -> np.ndarray:
    """Validate an integer array: integer dtype, optional rank, every value in ``[lo, hi]``.

    Returns the array as ``int64``. Raises :class:`TypeError` for a non-integer dtype and
    :class:`ValueError` for a wrong rank or an out-of-range value, naming ``name``, the offending
    value and its index, and the allowed range.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not {arr.ndim} (shape {arr.shape})")
    if arr.size:
        amin, amax = arr.min(), arr.max()
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            idx = tuple(int(i) for i in np.argwhere(arr == bad)[0])
            raise ValueError(
                f"{name}{list(idx)} = {int(bad)} is outside the allowed range [{lo}, {hi}]")
    return arr.astype(np.int64)


@dataclass(frozen=True)
class NumericSpec:
    """Widths of the integer datapath that the quantizer must respect and the hardware implements.

    The hardware configuration (:class:`ilmpq.hdl.config.HWConfig`) builds one of these from its
    own fields (``HWConfig.numeric``); the quantizer and golden take it as an argument, so no width
    is typed twice.

    Parameters
    ----------
    act_bits : int
        Activation width (4, 5 or 8).
    acc_bits : int
        Accumulator width, two's complement. ``bias + sum(W*X)`` must fit.
    mult_bits : int
        Width of the unsigned requantization multipliers ``M`` and ``Mr``.
    shift_bits : int
        Width of the unsigned shift ``S``; see :attr:`shift_range`.
    """

    act_bits: int = 8
    acc_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    lo_bits: int = field(default=LO_BITS, init=False)
    hi_bits: int = field(default=HI_BITS, init=False)

    def __post_init__(self):
        if self.act_bits not in SUPPORTED_ACT_BITS:
            raise ValueError(
                f"act_bits must be one of {SUPPORTED_ACT_BITS}, not {self.act_bits!r}")
        if not (16 <= self.acc_bits <= 48):
            raise ValueError(f"acc_bits must be in [16, 48], not {self.acc_bits!r}")
        if not (2 <= self.mult_bits <= 24):
            raise ValueError(f"mult_bits must be in [2, 24], not {self.mult_bits!r}")
        if not (1 <= self.shift_bits <= 6):
            raise ValueError(f"shift_bits must be in [1, 6], not {self.shift_bits!r}")

    @property
    def acc_range(self) -> tuple[int, int]:
        return signed_range(self.acc_bits)

    @property
    def mult_range(self) -> tuple[int, int]:
        return unsigned_range(self.mult_bits)

    @property
    def shift_range(self) -> tuple[int, int]:
        """Inclusive range of ``S``: at least 1 (the rounding constant is ``2**(S-1)``) and small
        enough that the rounding constant fits :attr:`requant_bits`."""
        return 1, min((1 << self.shift_bits) - 1, self.acc_bits + self.mult_bits - 1)

    @property
    def requant_bits(self) -> int:
        """Width of the signed requantization intermediate ``acc*M + res*Mr + 2**(S-1)``.

        ``acc*M`` needs ``acc_bits + mult_bits`` bits (signed times unsigned), ``res*Mr`` at most
        ``act_bits + mult_bits + 1``; the sum of the two and the rounding constant one more bit.
        The hardware builds its post-processing adder exactly this wide.
        """
        return self.acc_bits + self.mult_bits + 1
