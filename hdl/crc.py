"""Parallel CRC-32 (the zlib / IEEE 802.3 CRC) over a whole bus word per clock cycle.

The CRC is the one :func:`zlib.crc32` computes: reflected polynomial ``0xEDB88320``, register
initialised to ``0xFFFFFFFF``, result complemented. A bus word is taken as little-endian bytes
(bit 0 of the word is the first bit on the wire), so feeding the beats of a byte string one per
cycle gives ``zlib.crc32`` of the string.

The CRC update is linear over GF(2): ``next = A * state ^ B * data``. :func:`crc32_matrices`
derives ``A`` and ``B`` for any word width by running the bit-serial definition on unit vectors
(nothing is tabulated by hand); :func:`crc32_next` turns them into one XOR tree per state bit.
"""

from __future__ import annotations

from functools import lru_cache

from amaranth.hdl import Cat, Const, Module, Mux, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqValueError

__all__ = ["CRC32_POLY", "CRC32_INIT", "crc32_matrices", "crc32_step", "crc32_next", "CRC32"]

#: Reflected CRC-32 polynomial (zlib, IEEE 802.3).
CRC32_POLY = 0xEDB88320
#: Register value before the first bit (and the final XOR mask).
CRC32_INIT = 0xFFFFFFFF


def _serial_update(state: int, data: int, width: int) -> int:
    """Bit-serial reflected CRC-32 register update, data bit 0 first (the definition)."""
    for i in range(width):
        fb = (state ^ (data >> i)) & 1
        state >>= 1
        if fb:
            state ^= CRC32_POLY
    return state


@lru_cache(maxsize=None)
def crc32_matrices(width: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the GF(2) update matrices for a ``width``-bit word, as bit masks per output bit.

    Returns
    -------
    state_masks, data_masks : tuple of 32 int
        Bit ``j`` of ``state_masks[i]`` is set when state bit ``j`` contributes to next-state bit
        ``i``; bit ``k`` of ``data_masks[i]`` when data bit ``k`` does.
    """
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise IlmpqValueError(f"CRC-32 word width must be a positive integer, not {width!r}")
    state_cols = [_serial_update(1 << j, 0, width) for j in range(32)]
    data_cols = [_serial_update(0, 1 << k, width) for k in range(width)]
    state_masks = tuple(sum(1 << j for j in range(32) if (state_cols[j] >> i) & 1)
                        for i in range(32))
    data_masks = tuple(sum(1 << k for k in range(width) if (data_cols[k] >> i) & 1)
                       for i in range(32))
    return state_masks, data_masks


def _parity(x: int) -> int:
    return bin(x).count("1") & 1


def crc32_step(state: int, data: int, width: int) -> int:
    """Software model of one cycle of the parallel update (uses the same matrices as the HDL).

    ``state`` is the raw register (not complemented); ``data`` a ``width``-bit word.
    """
    sm, dm = crc32_matrices(width)
    return sum((_parity(state & sm[i]) ^ _parity(data & dm[i])) << i for i in range(32))


def crc32_next(state: Value, data: Value) -> Value:
    """Combinational next CRC register for one word: ``len(data)`` bits, bit 0 first.

    ``state`` is the raw 32-bit register (initial value :data:`CRC32_INIT`); the zlib CRC of the
    bytes fed so far is ``~state``. Every output bit is one XOR reduction of the state and data
    bits its row of :func:`crc32_matrices` selects.
    """
    width = len(data)
    sm, dm = crc32_matrices(width)
    bits = []
    for i in range(32):
        terms = [state[j] for j in range(32) if (sm[i] >> j) & 1]
        terms += [data[k] for k in range(width) if (dm[i] >> k) & 1]
        bits.append(Cat(*terms).xor() if terms else Const(0, 1))
    return Cat(*bits)


class CRC32(wiring.Component):
    """CRC-32 (zlib) accumulator over ``width`` bits per cycle.

    Parameters
    ----------
    width : int
        Bits consumed per cycle (a multiple of 8 for byte strings; any width works).

    Ports
    -----
    data : In(width)
        The word to add, little-endian (bit 0 first).
    en : In(1)
        Add ``data`` at this clock edge.
    init : In(1)
        Restart: the register becomes :data:`CRC32_INIT` at this edge, or, with ``en`` in the same
        cycle, the CRC of ``data`` alone (so a message's first word needs no idle cycle).
    crc : Out(32)
        ``zlib.crc32`` of all words added since the last ``init`` (registered: valid the cycle
        after the last ``en``). After reset it is the CRC of the empty string, 0.
    state : Out(32)
        The raw register (``~crc``).

    Latency: one cycle. Throughput: one word per cycle.
    """

    def __init__(self, width: int):
        crc32_matrices(width)  # validates the width
        self.width = width
        super().__init__({
            "data": In(unsigned(width)),
            "en": In(1),
            "init": In(1),
            "crc": Out(32),
            "state": Out(32, init=CRC32_INIT),
        })

    def elaborate(self, platform):
        m = Module()
        reg = Value.cast(self.state)
        base = Mux(self.init, Const(CRC32_INIT, 32), reg)
        m.d.comb += self.crc.eq(~reg)
        with m.If(self.en):
            m.d.sync += reg.eq(crc32_next(base, self.data))
        with m.Elif(self.init):
            m.d.sync += reg.eq(CRC32_INIT)
        return m

