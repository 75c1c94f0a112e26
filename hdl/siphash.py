"""SipHash-2-4 core: the keyed MAC of authenticated weight packages (docs/reliability.md).

One SipRound per clock cycle: a 64-bit message word takes ``C_ROUNDS`` = 2 cycles, so the core
absorbs one word every 2 cycles (half a 64-bit AXI beat per cycle). The tag of a message is
ready ``2 + 2 + D_ROUNDS`` = 8 cycles after its last (full) word is accepted (6 cycles if the
last word is partial: its padding block is the word itself). The round is written here in
Amaranth; :mod:`ilmpq.golden.siphash` is the specification it is tested against (only its
constants are imported).
"""

# No ``from __future__ import annotations`` in this module: data.Struct reads its annotations.
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden.siphash import C_ROUNDS, D_ROUNDS, FINAL_XOR, INIT_CONSTANTS, KEY_BYTES, TAG_BYTES

__all__ = ["SipWord", "SipHash24", "KEY_BITS", "TAG_BITS", "WORD_BITS"]

#: Key width (k0 = bits 0..63, k1 = bits 64..127: the 16 key bytes read little-endian).
KEY_BITS = 8 * KEY_BYTES
#: Tag width.
TAG_BITS = 8 * TAG_BYTES
#: Message word width (one SipHash block).
WORD_BITS = 64

assert C_ROUNDS == 2, "the core's schedule is written for SipHash-2-x"


class SipWord(data.Struct):
    """One message word on :attr:`SipHash24.data`."""

    data: unsigned(WORD_BITS)   #: message bytes, little-endian (byte 0 = bits 0..7)
    nbytes: unsigned(4)         #: valid bytes, 0..8; must be 8 unless ``last``
    last: unsigned(1)           #: last word of the message


def _rotl(x, b):
    return Cat(x[WORD_BITS - b:], x[:WORD_BITS - b])


def _sipround(v0, v1, v2, v3):
    """One SipRound as Amaranth expressions (64-bit modular additions)."""
    v0 = (v0 + v1)[:WORD_BITS]
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3)[:WORD_BITS]
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3)[:WORD_BITS]
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1)[:WORD_BITS]
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


class SipHash24(wiring.Component):
    """SipHash-2-4 of a stream of 64-bit words, one SipRound per cycle.

    Ports
    -----
    key : In(128)
        The key, sampled with the first word of each message (hold it stable across a message).
    data : In(stream.Signature(SipWord))
        Message words. ``ready`` depends only on internal state: it is high in one cycle of
        every two while a message is absorbed (2 SipRounds per word), low from the accepted
        ``last`` word until the tag has been transferred. A message of ``n`` bytes is
        ``ceil(n / 8)`` words (the empty message: one word with ``nbytes = 0``), every word
        but the last with ``nbytes = 8``.
    tag : Out(stream.Signature(64))
        The tag of each message (little-endian bytes = the paper's byte order), from a
        register, held until taken.

    Latency: a message of ``w`` full words gives its tag ``2 w + 2 + D_ROUNDS`` cycles after its
    first word is accepted when every word is offered as soon as ``ready`` allows (``2 w +
    D_ROUNDS`` if the last word is partial). Use a reset (``ResetInserter``) to abandon a message.
    """

    def __init__(self):
        super().__init__({
            "key": In(KEY_BITS),
            "data": In(stream.Signature(SipWord)),
            "tag": Out(stream.Signature(TAG_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        v = [Signal(WORD_BITS, name=f"v{i}") for i in range(4)]
        blk = Signal(WORD_BITS)            # block being absorbed (XORed into v0 after round 2)
        total = Signal(8)                  # message length modulo 256
        first = Signal(init=1)             # next word starts a message
        final_blk = Signal()               # blk is the message's padding block
        pad_next = Signal()                # after blk, absorb the padding block len << 56
        dcnt = Signal(range(D_ROUNDS))

        k0, k1 = self.key[:64], self.key[64:]
        init = [Const(INIT_CONSTANTS[0], 64) ^ k0, Const(INIT_CONSTANTS[1], 64) ^ k1,
                Const(INIT_CONSTANTS[2], 64) ^ k0, Const(INIT_CONSTANTS[3], 64) ^ k1]

        w = self.data.payload
        tot_next = (total + w.nbytes)[:8]
        # bytes past nbytes are ignored; a partial last word is its own padding block
        keep = Signal(WORD_BITS)
        with m.Switch(w.nbytes):
            for nb in range(8):
                with m.Case(nb):
                    m.d.comb += keep.eq((1 << (8 * nb)) - 1)
            with m.Default():
                m.d.comb += keep.eq((1 << WORD_BITS) - 1)
        partial = w.last & (w.nbytes < 8)
        m_eff = Mux(partial, (w.data & keep) | Cat(Const(0, 56), tot_next), w.data)

        vin = [Mux(first, init[i], v[i]) for i in range(4)]
        r_in = _sipround(vin[0], vin[1], vin[2], vin[3] ^ m_eff)   # round 1 of a new block
        r = _sipround(*v)                                          # any other round

        def load(vals):
            m.d.sync += [v[i].eq(vals[i]) for i in range(4)]

        m.d.comb += self.tag.payload.eq(v[0] ^ v[1] ^ v[2] ^ v[3])

        with m.FSM(name="sip"):
            with m.State("WAIT"):
                m.d.comb += self.data.ready.eq(1)
                with m.If(self.data.valid):
                    load(r_in)
                    m.d.sync += [blk.eq(m_eff), total.eq(tot_next), first.eq(0),
                                 final_blk.eq(partial), pad_next.eq(w.last & ~partial)]
                    m.next = "ROUND2"
            with m.State("ROUND2"):
                # second compression round, then v0 ^= block
                with m.If(final_blk):
                    load([r[0] ^ blk, r[1], r[2] ^ FINAL_XOR, r[3]])
                    m.d.sync += dcnt.eq(0)
                    m.next = "FINAL"
                with m.Elif(pad_next):
                    pad = Cat(Const(0, 56), total)
                    load([r[0] ^ blk, r[1], r[2], r[3] ^ pad])
                    m.d.sync += [blk.eq(pad), final_blk.eq(1), pad_next.eq(0)]
                    m.next = "PAD1"
                with m.Else():
                    load([r[0] ^ blk, r[1], r[2], r[3]])
                    m.next = "WAIT"
            with m.State("PAD1"):
                load(r)
                m.next = "ROUND2"
            with m.State("FINAL"):
                load(r)
                m.d.sync += dcnt.eq(dcnt + 1)
                with m.If(dcnt == D_ROUNDS - 1):
                    m.next = "TAG"
            with m.State("TAG"):
                m.d.comb += self.tag.valid.eq(1)
                with m.If(self.tag.ready):
                    m.d.sync += [first.eq(1), total.eq(0), final_blk.eq(0), pad_next.eq(0)]
                    m.next = "WAIT"
        return m
