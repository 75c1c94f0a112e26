"""The activation check's hash-sum (docs/reliability.md section 3.1), shared by the activation
loader (the rows it reads) and the store unit (the beats it writes, the residual rows it reads).

Every beat is hashed with its byte address, ``H(addr, beat)`` = CRC-32/ISO-HDLC of ``Cat(addr,
beat)`` (:func:`~ilmpq.hdl.isa.act_check`), by an :class:`amaranth.lib.crc.Processor` that
restarts from the initial value at every beat: the hash is a function of the beat and its
address only (no state is carried from one beat to the next, so the CRC register's feedback
terms are constants and vanish from the logic). The hashes are summed modulo 2**32; optionally
the check entries read after the rows (one beat each: the expected sum in the low 32 bits, zeros
above) are summed too and compared.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.crc import Processor, catalog
from amaranth.lib.wiring import In, Out

__all__ = ["BeatHashSum"]


class BeatHashSum(wiring.Component):
    """``H(addr, beat)`` of the beats given, and their sum modulo 2**32.

    Parameters
    ----------
    beat_bits : int
        Width of a beat (the AXI data width).
    running_sum : bool
        Keep the running sum of the hashes (``sum``) and, with ``entries``, the sum of the check
        entries and the comparison (``ok``). Without it only ``hash`` / ``hash_valid`` exist (the
        store unit sums its output's hashes per row itself).
    second : bool
        A second beat a cycle (``addr_b``, ``beat_b``, ``valid_b``; with ``running_sum``): its
        hash goes into ``sum`` beside the first's (the sum does not depend on the order of the
        beats, so two streams of one load may be hashed as they come; the activation loader's
        striped loads, ``HWConfig.act_ports``).

    Members
    -------
    addr : In(32); beat : In(beat_bits); valid : In(1)
        Hash this beat (stored at byte address ``addr``) in this cycle.
    hash : Out(32); hash_valid : Out(1)
        The hash of the beat given in the previous cycle (``hash`` is meaningful only while
        ``hash_valid``).
    addr_b : In(32); beat_b : In(beat_bits); valid_b : In(1)
        The second beat (only with ``second``); from cycle ``t + 2`` in ``sum`` as the first.
    clear : In(1)
        Set the sums to 0 and the entries' flag to clean (it wins over a hash or an entry
        added in the same cycle). Only with ``running_sum``.
    sum : Out(32)
        Sum modulo 2**32 of the hashes of the beats given since ``clear``; a beat given in cycle
        ``t`` is in it from cycle ``t + 2`` (``hash_valid`` is high in ``t + 1``).
    entry : In(beat_bits); entry_valid : In(1)
        A check entry: its low 32 bits are added to the entries' sum; bits above must be 0.
    ok : Out(1)
        The entries' sum equals ``sum`` and no entry had a bit set above its first 32.
    """

    def __init__(self, beat_bits: int, running_sum: bool = True, second: bool = False):
        if second and not running_sum:
            raise ValueError("a second beat a cycle needs the running sum")
        self.beat_bits = beat_bits
        self.running_sum = running_sum
        self.second = second
        members = {
            "addr": In(32),
            "beat": In(beat_bits),
            "valid": In(1),
            "hash": Out(32),
            "hash_valid": Out(1),
        }
        if second:
            members.update({"addr_b": In(32), "beat_b": In(beat_bits), "valid_b": In(1)})
        if running_sum:
            members.update({
                "clear": In(1),
                "sum": Out(32),
                "entry": In(beat_bits),
                "entry_valid": In(1),
                "ok": Out(1),
            })
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        B = self.beat_bits
        m.submodules.crc = crc = Processor(catalog.CRC32_ISO_HDLC(32 + B))
        # ``start`` always set: every beat is hashed from the initial value (the register is
        # only read in the cycle after a beat was given)
        m.d.comb += [crc.data.eq(Cat(self.addr, self.beat)), crc.start.eq(1),
                     crc.valid.eq(self.valid), self.hash.eq(crc.crc)]
        m.d.sync += self.hash_valid.eq(self.valid)
        if self.running_sum:
            e_sum = Signal(32)
            e_bad = Signal()
            if self.second:
                h_a = Signal(32)
                m.d.comb += h_a.eq(Mux(self.hash_valid, self.hash, 0))
                m.submodules.crc_b = crc_b = Processor(catalog.CRC32_ISO_HDLC(32 + B))
                hv_b = Signal()
                h_b = Signal(32)
                m.d.comb += [crc_b.data.eq(Cat(self.addr_b, self.beat_b)), crc_b.start.eq(1),
                             crc_b.valid.eq(self.valid_b),
                             h_b.eq(Mux(hv_b, crc_b.crc, 0))]
                m.d.sync += hv_b.eq(self.valid_b)
                with m.If(self.hash_valid | hv_b):
                    m.d.sync += self.sum.eq(self.sum + h_a + h_b)
            else:
                with m.If(self.hash_valid):
                    m.d.sync += self.sum.eq(self.sum + self.hash)
            with m.If(self.entry_valid):
                m.d.sync += e_sum.eq(e_sum + self.entry[:32])
                if B > 32:
                    with m.If(self.entry[32:] != 0):
                        m.d.sync += e_bad.eq(1)
            with m.If(self.clear):
                m.d.sync += [self.sum.eq(0), e_sum.eq(0), e_bad.eq(0)]
            m.d.comb += self.ok.eq(~e_bad & (e_sum == self.sum))
        return m
