"""Instruction fetch and in-order dispatch to the unit queues."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.crc import Processor, catalog
from amaranth.lib.wiring import In, Out

from .config import HWConfig
from .dma import MAX_COMMAND_BEATS
from .isa import (CHECK_BITS, INSTR_BITS, Compute, Instruction, LoadRows, LoadWeights, Opcode,
                  PoolMode, Store)
from .store import DmaCmd

__all__ = ["Fetch"]


class Fetch(wiring.Component):
    """Fetches ``prog_len`` instructions from ``prog_addr`` with one DMA read and dispatches
    each, in order, to the stream of its unit. Stops at END.

    Members
    -------
    start : In(1)
        Pulse: begin fetching (ignored while running).
    prog_addr, prog_len : In(32)
        Program address (beat-aligned) and length in instructions.
    prog_tag : In(32)
        The program's tag (PROG_TAG), covered by every check word.
    rd_cmd : Out(stream.Signature(DmaCmd)); rd_data : In(stream.Signature(axi_data_width))
    la, w, c, s : Out(stream.Signature(...))
        The unit queues (LoadRows, LoadWeights, Compute, Store payloads).
    ended : Out(1)
        END was reached (sticky until the next ``start``).
    err_opcode, err_overrun, err_length : Out(1)
        Sticky errors: an unknown opcode; the program ended without END; a zero or too long
        program (more than ``MAX_COMMAND_BEATS`` beats: the one DMA read could not carry it).
        The fetch unit stops at the first one.
    err_crc : Out(1)
        Sticky: an instruction's check word is wrong (:func:`~ilmpq.hdl.isa.seal`: CRC-32 of
        the instruction and ``index ^ prog_addr ^ prog_tag``, computed on the beats as they
        arrive, so it costs no cycle); nothing of that instruction is dispatched.
    err_mismatch : Out(1)
        Sticky: a STORE that does not follow a COMPUTE with the same ``n_mtiles`` and pool
        flag, or a COMPUTE or END while the previous COMPUTE has no STORE yet (the compiler
        emits exactly one STORE per COMPUTE): the STORE would drain a bank filled for another
        instruction. Checked before dispatch.
    index : Out(32)
        Instructions dispatched (the index of the failing one on an opcode error).
    """

    def __init__(self, config: HWConfig):
        self.config = config
        super().__init__({
            "start": In(1),
            "prog_addr": In(32),
            "prog_len": In(32),
            "prog_tag": In(32),
            "rd_cmd": Out(stream.Signature(DmaCmd)),
            "rd_data": In(stream.Signature(config.axi_data_width)),
            "la": Out(stream.Signature(LoadRows)),
            "w": Out(stream.Signature(LoadWeights)),
            "c": Out(stream.Signature(Compute)),
            "s": Out(stream.Signature(Store)),
            "ended": Out(1),
            "err_opcode": Out(1),
            "err_overrun": Out(1),
            "err_length": Out(1),
            "err_crc": Out(1),
            "err_mismatch": Out(1),
            "index": Out(32),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.config.axi_data_width
        ipb = INSTR_BITS // B
        max_instr = MAX_COMMAND_BEATS // ipb       # the whole program is one DMA command
        shreg = Signal(INSTR_BITS)
        part = Signal(range(ipb + 1))
        beats_left = Signal(32)
        instr = Signal(Instruction)
        m.d.comb += instr.eq(shreg)

        for port, layout in ((self.la, LoadRows), (self.w, LoadWeights), (self.c, Compute),
                             (self.s, Store)):
            m.d.comb += port.payload.eq(instr.body[:len(port.payload.as_value())])

        # ---- check word: CRC-32 over the beats as they arrive; the check field of the last
        # beat is replaced by index ^ prog_addr ^ prog_tag (isa.seal) ------------------------
        m.submodules.crc = crc = Processor(catalog.CRC32_ISO_HDLC(B))
        tag = Signal(CHECK_BITS)
        m.d.comb += tag.eq(self.index ^ self.prog_addr ^ self.prog_tag)
        last_beat = tag if B == CHECK_BITS else Cat(self.rd_data.payload[:B - CHECK_BITS], tag)
        # start only with a beat: a start alone would reset the register (and the check of an
        # instruction waiting in DISPATCH for a full queue would fail)
        m.d.comb += [crc.start.eq((part == 0) & crc.valid),
                     crc.data.eq(Mux(part == ipb - 1, last_beat, self.rd_data.payload))]
        crc_ok = Signal()
        m.d.comb += crc_ok.eq(crc.crc == instr.check)

        # ---- COMPUTE -> STORE pairing --------------------------------------------------------
        pend = Signal()                  # a COMPUTE was dispatched, its STORE not yet
        pend_mtiles = Signal(len(self.c.payload.n_mtiles))
        pend_pool = Signal()
        c_body = Signal(Compute)
        s_body = Signal(Store)
        m.d.comb += [c_body.eq(instr.body[:len(c_body.as_value())]),
                     s_body.eq(instr.body[:len(s_body.as_value())])]
        mismatch = Signal()
        with m.Switch(instr.opcode):
            with m.Case(Opcode.COMPUTE, Opcode.END):
                m.d.comb += mismatch.eq(pend)
            with m.Case(Opcode.STORE):
                m.d.comb += mismatch.eq(~pend | (s_body.n_mtiles != pend_mtiles) |
                                        (s_body.pool != pend_pool))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.ended.eq(0), self.index.eq(0)]
                    with m.If((self.prog_len == 0) | (self.prog_len > max_instr)):
                        m.d.sync += self.err_length.eq(1)
                        m.next = "HALT"
                    with m.Else():
                        m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(self.prog_addr),
                    self.rd_cmd.p.beats.eq(self.prog_len * ipb),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [beats_left.eq(self.prog_len * ipb), part.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1)]
                m.d.comb += crc.valid.eq(self.rd_data.valid)
                with m.If(self.rd_data.valid):
                    m.d.sync += [shreg.eq(Cat(shreg[B:], self.rd_data.payload)),
                                 beats_left.eq(beats_left - 1)]
                    with m.If(part == ipb - 1):
                        m.d.sync += part.eq(0)
                        m.next = "DISPATCH"
                    with m.Else():
                        m.d.sync += part.eq(part + 1)
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                done = Signal()
                with m.If(~crc_ok):
                    m.d.sync += self.err_crc.eq(1)
                    m.next = "HALT"
                with m.Elif(mismatch):
                    m.d.sync += self.err_mismatch.eq(1)
                    m.next = "HALT"
                with m.Else():
                    self._dispatch(m, instr, done)
                with m.If(done):
                    m.d.sync += self.index.eq(self.index + 1)
                    with m.Switch(instr.opcode):
                        with m.Case(Opcode.COMPUTE):
                            m.d.sync += [pend.eq(1), pend_mtiles.eq(c_body.n_mtiles),
                                         pend_pool.eq(c_body.pool != PoolMode.NONE)]
                        with m.Case(Opcode.STORE):
                            m.d.sync += pend.eq(0)
                    with m.If(beats_left == 0):
                        m.d.sync += self.err_overrun.eq(1)
                        m.next = "HALT"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("SKIP"):
                # discard the beats after END so the DMA read completes
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(beats_left == 0):
                    m.next = "IDLE"
                with m.Elif(self.rd_data.valid):
                    m.d.sync += beats_left.eq(beats_left - 1)
            with m.State("HALT"):
                # keep draining the program stream so the bus never hangs
                m.d.comb += self.rd_data.ready.eq(1)
        return m

    def _dispatch(self, m, instr, done):
        """Hand the instruction in ``instr`` to its unit's queue; ``done`` when taken."""
        with m.Switch(instr.opcode):
            with m.Case(Opcode.NOP):
                m.d.comb += done.eq(1)
            with m.Case(Opcode.LOAD_ROWS):
                m.d.comb += [self.la.valid.eq(1), done.eq(self.la.ready)]
            with m.Case(Opcode.LOAD_WEIGHTS):
                m.d.comb += [self.w.valid.eq(1), done.eq(self.w.ready)]
            with m.Case(Opcode.COMPUTE):
                m.d.comb += [self.c.valid.eq(1), done.eq(self.c.ready)]
            with m.Case(Opcode.STORE):
                m.d.comb += [self.s.valid.eq(1), done.eq(self.s.ready)]
            with m.Case(Opcode.END):
                m.d.sync += self.ended.eq(1)
                m.next = "SKIP"
            with m.Default():
                m.d.sync += self.err_opcode.eq(1)
                m.next = "HALT"
