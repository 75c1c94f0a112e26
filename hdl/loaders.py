"""The load units: LOAD_ROWS (activations into the activation buffer) and LOAD_WEIGHTS (weight
package streams into the weight buffer)."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.crc import Processor, catalog
from amaranth.lib.wiring import In, Out

from .config import HWConfig
from .dma import MAX_COMMAND_BEATS
from .isa import LoadRows, LoadWeights
from .store import DmaCmd

__all__ = ["ActLoader", "WeightLoader"]


class ActLoader(wiring.Component):
    """Executes LOAD_ROWS: one DMA read into activation-buffer half ``n % 2``.

    The beats are re-cut into buffer words of ``tn`` bytes (several beats per word when a word is
    wider than a beat, several words per beat, one per cycle, when it is narrower).

    Integrity (``chk_beats`` != 0, docs/reliability.md section 3.1): every beat is hashed with
    its address (:func:`~ilmpq.hdl.isa.act_check`, CRC-32 on ``Cat(addr, beat)``) and the hashes
    summed modulo 2**32; after the data, a second read brings the rows' ``chk_beats`` check
    entries (at ``wr_base + chk_off * beat_bytes``; the command is issued while the data
    streams), whose sum must equal it (and whose bytes above the first four must be 0). A
    mismatch latches ``err_act`` (ErrorCode.ACT_CRC, ``err_addr`` = the LOAD_ROWS address) and
    the unit halts before ``done_count`` moves: no COMPUTE ever reads the half.

    Members
    -------
    instr : In(stream.Signature(LoadRows))
    rd_cmd : Out(stream.Signature(DmaCmd)); rd_data : In(stream.Signature(axi_data_width))
    wr_addr, wr_data, wr_en : Out
        Write port of the activation buffer (``tn * 8`` bits wide).
    c_done : In(32)
        COMPUTE instructions completed; LOAD_ROWS ``n`` starts when ``n - c_done <= 1``.
    s_done : In(32)
        STORE instructions completed (the layer barrier ``wait_stores``).
    done_count : Out(32)
    busy, error : Out(1)
    stall : Out(1)
        Waiting for a free half or for the layer barrier (the STALL_DEP counter).
    wr_base : In(32)
        WR_BASE: the check entries' offsets are in beats from it.
    err_act, err_addr : Out(1), Out(32)
        Sticky: the rows read did not match their check entries; the LOAD_ROWS address.
    """

    def __init__(self, config: HWConfig):
        wb = config.tn * 8
        B = config.axi_data_width
        if not (wb % B == 0 or B % wb == 0):
            raise ValueError(f"activation words of tn*8 = {wb} bits and AXI beats of {B} bits "
                             f"must divide one another")
        self.config = config
        self._abits = (config.act_depth - 1).bit_length()
        super().__init__({
            "instr": In(stream.Signature(LoadRows)),
            "rd_cmd": Out(stream.Signature(DmaCmd)),
            "rd_data": In(stream.Signature(B)),
            "wr_addr": Out(self._abits),
            "wr_data": Out(wb),
            "wr_en": Out(1),
            "c_done": In(32),
            "s_done": In(32),
            "done_count": Out(32),
            "busy": Out(1),
            "stall": Out(1),
            "error": Out(1),
            "wr_base": In(32),
            "err_act": Out(1),
            "err_addr": Out(32),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        B = cfg.axi_data_width
        wb = cfg.tn * 8
        bb = cfg.beat_bytes
        # ---- activation check: H(addr, beat) summed over the data, entries summed after -------
        m.submodules.hcrc = hcrc = Processor(catalog.CRC32_ISO_HDLC(32 + B))
        h_addr = Signal(32)         # address of the next data beat
        h_pend = Signal()           # hcrc.crc holds the hash of the beat accepted last cycle
        h_sum = Signal(32)
        e_sum = Signal(32)
        e_bad = Signal()            # an entry's bytes above the first four are not 0
        e_left = Signal(16)
        chk_pend = Signal()         # the entries' read command is not accepted yet
        data_acc = Signal()         # a data beat is accepted this cycle
        m.d.comb += [hcrc.data.eq(Cat(h_addr, self.rd_data.payload)),
                     hcrc.start.eq(data_acc), hcrc.valid.eq(data_acc)]
        m.d.sync += h_pend.eq(data_acc)
        with m.If(data_acc):
            m.d.sync += h_addr.eq(h_addr + bb)
        with m.If(h_pend):
            m.d.sync += h_sum.eq(h_sum + hcrc.crc)
        half_words = cfg.act_depth // 2
        half_beats = half_words * wb // B
        ins = Signal(LoadRows)
        chk_addr = Signal(32)
        m.d.comb += chk_addr.eq(self.wr_base + ins.chk_off * bb)
        n = Signal(32)
        beats_left = Signal(24)
        word = Signal(range(half_words + 1))

        if wb >= B:
            k = wb // B
            part = Signal(range(k + 1))
            shreg = Signal(wb)
        else:
            k = B // wb
            part = Signal(range(k + 1))
            hold = Signal(B)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += ins.eq(self.instr.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If((ins.beats == 0) | (ins.beats > half_beats)):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Else():
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If((n - self.c_done <= 1) & (self.s_done >= ins.wait_stores)):
                    m.next = "CMD"
                with m.Else():
                    m.d.comb += self.stall.eq(1)
            with m.State("CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(ins.addr),
                    self.rd_cmd.p.beats.eq(ins.beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [beats_left.eq(ins.beats), word.eq(0), part.eq(0),
                                 h_addr.eq(ins.addr), h_sum.eq(0), e_sum.eq(0), e_bad.eq(0),
                                 e_left.eq(ins.chk_beats), chk_pend.eq(ins.chk_beats != 0)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += data_acc.eq(self.rd_data.valid & self.rd_data.ready)
                # the entries' command, issued as soon as the DMA takes it (after the data's)
                m.d.comb += [self.rd_cmd.valid.eq(chk_pend), self.rd_cmd.p.addr.eq(chk_addr),
                             self.rd_cmd.p.beats.eq(ins.chk_beats)]
                with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
                    m.d.sync += chk_pend.eq(0)
                base = Cat(word[:self._abits - 1], n[0])
                if wb >= B:
                    m.d.comb += self.rd_data.ready.eq(1)
                    with m.If(self.rd_data.valid):
                        full = Cat(shreg[B:], self.rd_data.payload) if wb > B \
                            else self.rd_data.payload
                        m.d.sync += shreg.eq(full)
                        m.d.sync += beats_left.eq(beats_left - 1)
                        with m.If(part == k - 1):
                            m.d.comb += [self.wr_en.eq(1), self.wr_addr.eq(base),
                                         self.wr_data.eq(full)]
                            m.d.sync += [part.eq(0), word.eq(word + 1)]
                        with m.Else():
                            m.d.sync += part.eq(part + 1)
                        with m.If(beats_left == 1):
                            m.next = "TAIL"
                else:
                    # k words per beat: hold the beat, write one word per cycle
                    with m.If(part == 0):
                        m.d.comb += self.rd_data.ready.eq(1)
                        with m.If(self.rd_data.valid):
                            m.d.comb += [self.wr_en.eq(1), self.wr_addr.eq(base),
                                         self.wr_data.eq(self.rd_data.payload[:wb])]
                            m.d.sync += [hold.eq(self.rd_data.payload), part.eq(1),
                                         word.eq(word + 1), beats_left.eq(beats_left - 1)]
                    with m.Else():
                        m.d.comb += [self.wr_en.eq(1), self.wr_addr.eq(base),
                                     self.wr_data.eq(hold.word_select(part, wb))]
                        m.d.sync += word.eq(word + 1)
                        with m.If(part == k - 1):
                            m.d.sync += part.eq(0)
                            with m.If(beats_left == 0):
                                m.next = "TAIL"
                        with m.Else():
                            m.d.sync += part.eq(part + 1)
            with m.State("TAIL"):
                m.d.comb += self.busy.eq(1)
                with m.If(ins.chk_beats == 0):
                    # unchecked rows (not written by a STORE, no entries): done at once
                    m.d.sync += [self.done_count.eq(self.done_count + 1), n.eq(n + 1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "CHK"
            with m.State("CHK"):
                m.d.comb += self.busy.eq(1)
                m.d.comb += [self.rd_cmd.valid.eq(chk_pend), self.rd_cmd.p.addr.eq(chk_addr),
                             self.rd_cmd.p.beats.eq(ins.chk_beats)]
                with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
                    m.d.sync += chk_pend.eq(0)
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += [e_sum.eq(e_sum + self.rd_data.payload[:32]),
                                 e_left.eq(e_left - 1)]
                    if B > 32:
                        with m.If(self.rd_data.payload[32:] != 0):
                            m.d.sync += e_bad.eq(1)
                    with m.If(e_left == 1):
                        m.next = "CMP"
            with m.State("CMP"):
                m.d.comb += self.busy.eq(1)
                with m.If(e_bad | (e_sum != h_sum)):
                    m.d.sync += [self.err_act.eq(1), self.err_addr.eq(ins.addr)]
                    m.next = "HALT"
                with m.Else():
                    m.d.sync += [self.done_count.eq(self.done_count + 1), n.eq(n + 1)]
                    m.next = "IDLE"
            with m.State("HALT"):
                pass
        return m


class WeightLoader(wiring.Component):
    """Executes LOAD_WEIGHTS: sets the weight buffer's expected sequence number, then issues one
    DMA read whose beats go straight to ``WeightBuffer.fill``.

    A new stream starts only after every beat of the previous one entered the weight buffer, so
    the sequence number is never changed in the middle of a stream.

    A stream must end on a package boundary: its last beat must be the one that completes a
    package (``pkg_end``). If it ends inside a package (the instruction's ``beats`` too small, or
    the last header's ``n_words`` too large), the weight buffer would wait forever for the rest;
    instead ``err_truncated`` is latched with that last beat (the top level reports
    ``ErrorCode.WPKG_LENGTH``).

    Members
    -------
    instr : In(stream.Signature(LoadWeights))
    rd_cmd : Out(stream.Signature(DmaCmd))
    fill_beat : In(1)
        One pulse per beat accepted by the weight buffer.
    pkg_end : In(1)
        The beat accepted in this cycle completed a verified package
        (``WeightBuffer.pkg_accepted``).
    seq_base : Out(16); seq_load : Out(1)
        Load the expected sequence number of the next package (a one-cycle pulse).
    busy : Out(1)
    error : Out(1)
        Sticky: ``beats`` is 0 or more than the DMA's ``MAX_COMMAND_BEATS`` (the unit halts).
    err_truncated : Out(1)
        Sticky: the stream ended inside a package.
    """

    def __init__(self, config: HWConfig):
        self.config = config
        super().__init__({
            "instr": In(stream.Signature(LoadWeights)),
            "rd_cmd": Out(stream.Signature(DmaCmd)),
            "fill_beat": In(1),
            "pkg_end": In(1),
            "seq_base": Out(16),
            "seq_load": Out(1),
            "busy": Out(1),
            "error": Out(1),
            "err_truncated": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ins = Signal(LoadWeights)
        requested = Signal(40)
        filled = Signal(40)
        with m.If(self.fill_beat):
            m.d.sync += filled.eq(filled + 1)
            # the stream's last beat must complete a package
            with m.If((filled + 1 == requested) & ~self.pkg_end):
                m.d.sync += self.err_truncated.eq(1)
        m.d.comb += self.busy.eq(requested != filled)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += ins.eq(self.instr.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # the DMA takes commands of 1 .. MAX_COMMAND_BEATS beats in fewer bits than the
                # field: longer ones are rejected here, never truncated
                with m.If((ins.beats == 0) | (ins.beats > MAX_COMMAND_BEATS)):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Elif(requested == filled):
                    m.d.comb += [self.seq_load.eq(1), self.seq_base.eq(ins.seq_base)]
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(ins.addr),
                    self.rd_cmd.p.beats.eq(ins.beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += requested.eq(requested + ins.beats)
                    m.next = "IDLE"
            with m.State("HALT"):
                pass
        return m
