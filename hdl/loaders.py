"""The load units: LOAD_ROWS (activations into the activation buffer) and LOAD_WEIGHTS (weight
package streams into the weight buffer)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .beathash import BeatHashSum
from .config import HWConfig
from .dma import MAX_COMMAND_BEATS
from .isa import LoadRows, LoadWeights
from .store import DmaCmd

__all__ = ["ActLoader", "WeightLoader"]


class ActLoader(wiring.Component):
    """Executes LOAD_ROWS: one DMA read into activation-buffer half ``n % 2``.

    The beats are re-cut into buffer words of ``tn`` bytes (several beats per word when a word is
    wider than a beat, several words per beat, one per cycle, when it is narrower).

    A strided LOAD_ROWS (``chunk_beats != 0``) issues its beats as DMA reads of ``chunk_beats``
    beats (``chunks`` a row, ``chunk_stride`` bytes apart; rows ``row_stride`` bytes apart) while
    the beats of the earlier reads are written as by a plain load; ``beats`` must be a whole
    number of rows (else ``error``, before the read that would pass it).

    A gathering LOAD_ROWS (``gather = 1``, hdl/isa.py ``LoadRows``) cuts the stream into raw rows
    of ``row_beats`` beats and, per row, writes the beats ``[shift + 8*k, +8)`` of the row (zero
    outside it: one byte rotator and a register of the previous beat) to buffer beat
    ``((r // seg_rows) * pix + k // seg_beats) * pix_beats + (r % seg_rows) * seg_beats +
    k % seg_beats``, with counters only: one step a cycle, a step per beat of the row plus the
    zero beats before or after it that the segments reach. A buffer word wider than a beat is
    written beat by beat (``wr_en`` has one bit per beat of a word).

    Striped loads (``config.act_ports`` 2): a plain LOAD_ROWS of more than one buffer word is
    read as two DMA commands, its first ``ceil(words / 2)`` words on ``rd_cmd``/``rd_data`` (the
    ``act`` client) and the rest on ``rd_cmd_b``/``rd_data_b`` (``act_b``, another AXI port),
    taken a beat from each a cycle into two word assemblers; the buffer's one write port takes
    the first stream's word when both complete in a cycle, the second's a cycle later (a word
    is at least two beats, so that never costs a beat). Both streams are hashed (two hashes a
    cycle into one sum); the check entries come after the first stream's rows.

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
    rd_cmd_b, rd_data_b :
        The same, for the second half of a striped load (only with ``config.act_ports`` 2).
    wr_addr, wr_data, wr_en : Out
        Write port of the activation buffer (``tn * 8`` bits wide; ``wr_en``: one bit per beat
        of a word, or one bit when a word is not wider than a beat).
    c_done : In(32)
        COMPUTE instructions completed that released their half (``Compute.keep`` clear);
        LOAD_ROWS ``n`` starts when ``n - c_done <= 1``.
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
        #: write-enable bits of the activation buffer (its write granularity is a beat)
        self.wr_lanes = max(1, wb // B)
        striped = {}
        if config.act_ports == 2:       # (HWConfig: words of a power of two >= 2 beats)
            striped = {"rd_cmd_b": Out(stream.Signature(DmaCmd)),
                       "rd_data_b": In(stream.Signature(B))}
        super().__init__({
            "instr": In(stream.Signature(LoadRows)),
            "rd_cmd": Out(stream.Signature(DmaCmd)),
            "rd_data": In(stream.Signature(B)),
            "wr_addr": Out(self._abits),
            "wr_data": Out(wb),
            "wr_en": Out(self.wr_lanes),
            "c_done": In(32),
            "s_done": In(32),
            "done_count": Out(32),
            "busy": Out(1),
            "stall": Out(1),
            "error": Out(1),
            "wr_base": In(32),
            "err_act": Out(1),
            "err_addr": Out(32),
            **striped,
        })

    def elaborate(self, platform):
        cfg = self.config
        striped = cfg.act_ports == 2
        m = Module()
        B = cfg.axi_data_width
        wb = cfg.tn * 8
        bb = cfg.beat_bytes
        # ---- activation check: H(addr, beat) summed over the data, entries summed after -------
        m.submodules.hsum = hsum = BeatHashSum(B, second=striped)
        h_addr = Signal(32)         # address of the next data beat
        e_left = Signal(16)
        chk_pend = Signal()         # the entries' read command is not accepted yet
        data_acc = Signal()         # a data beat is accepted this cycle
        m.d.comb += [hsum.addr.eq(h_addr), hsum.beat.eq(self.rd_data.payload),
                     hsum.valid.eq(data_acc), hsum.entry.eq(self.rd_data.payload)]
        with m.If(data_acc):
            m.d.sync += h_addr.eq(h_addr + bb)
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

        # ---- striped loads (``act_ports`` 2): the split, registered in CHECK ----------------
        if striped:
            lk = (k - 1).bit_length()                       # k = 2**lk beats a word
            s_on = Signal()                 # this load is striped: more than one word
            s_beats_a = Signal(24)                          # beats of the first stream
            s_beats_b = Signal(24)
            s_addr_b = Signal(32)
            s_words_a = Signal(range(half_words + 1))
            wa = Signal(24)
            m.d.comb += wa.eq(((ins.beats >> lk) + 1) >> 1)
            a_more = Signal()                               # stream A has beats to take
            b_more = Signal()
            b_left = Signal(24)
            b_word = Signal(range(half_words + 1))
            b_part = Signal(range(k + 1))
            b_shreg = Signal(wb)
            b_pend = Signal()                               # a word of B waits for the port
            b_data = Signal(wb)
            b_addr = Signal(range(half_words + 1))
            h_addr_b = Signal(32)

        # ---- gathering loads (``gather``): counters, flags, the byte rotator and the writes ---
        # Timing: the row's bounds are registered while the load waits; per step only
        # equalities of counters with registers, one adder per register and the rotator (no
        # multiplier, no adder before a comparator).
        lanes = self.wr_lanes
        g_ok = Const(int((lanes & (lanes - 1)) == 0), 1)   # beat slots map to words by bits
        sbits = max(13, half_beats.bit_length()) + 3
        g_j = Signal(signed(sbits))          # index of the row's beat at this step (may be < 0)
        g_prev = Signal(B)
        g_i = Signal(8)                      # beat within the segment
        g_p = Signal(12)                     # pixel of the row
        g_dy = Signal(4)                     # raw row within the stored row
        g_rowbase = Signal(24)               # first beat slot of the stored row
        g_rowdy = Signal(24)                 # g_rowbase + g_dy * seg_beats
        g_pixbase = Signal(24)               # g_rowbase + g_p * pix_beats
        g_slot = Signal(24)                  # beat slot of the next output beat
        g_real = Signal()                    # this step takes a beat of the row
        g_on = Signal()                      # this step emits an output beat
        g_indone = Signal()                  # the row's beats are all taken
        g_outdone = Signal()                 # the row's output beats are all emitted
        g_rb = Signal(3)
        g_e = Signal()
        m.d.comb += [g_rb.eq(ins.shift[:3]), g_e.eq(g_rb != 0)]
        # registered from ``ins`` every cycle (valid from the cycle after CHECK, WAIT on)
        g_jmin = Signal(signed(sbits))       # the row's first step: min(shift // 8, 0)
        g_lo_m1 = Signal(signed(sbits))      # the step before the first emitting one
        g_on0 = Signal()                     # the first step emits
        g_real0 = Signal()                   # the first step takes a beat
        g_rb_last = Signal(12)
        g_rb_last_m1 = Signal(signed(14))    # row_beats - 2
        g_atlast0 = Signal()                 # the first step is the row's last beat
        g_pix_last_m1 = Signal(signed(14))   # pix - 2
        g_sb_last = Signal(8)                # seg_beats - 1
        g_pix_last = Signal(12)              # pix - 1
        g_s_last = Signal(4)                 # seg_rows - 1
        g_pixgap = Signal(11)                # pix_beats - seg_beats + 1
        g_dyend = Signal(13)                 # (g_dy + 1) * seg_beats: within pix_beats
        qb = Signal(signed(sbits))
        m.d.comb += qb.eq(ins.shift >> 3)
        m.d.sync += [
            g_jmin.eq(Mux(qb < 0, qb, 0)),
            g_lo_m1.eq(qb + g_e - 1),
            g_on0.eq(Mux(qb < 0, ~g_e, (qb + g_e) == 0)),
            g_real0.eq(qb >= 0),
            g_rb_last.eq(ins.row_beats - 1),
            g_rb_last_m1.eq(ins.row_beats - 2),
            g_atlast0.eq(Mux(qb < 0, 0, ins.row_beats == 1)),
            g_pix_last_m1.eq(ins.pix - 2),
            g_sb_last.eq(ins.seg_beats - 1),
            g_pix_last.eq(ins.pix - 1),
            g_s_last.eq(ins.seg_rows - 1),
            g_pixgap.eq(ins.pix_beats - ins.seg_beats + 1),
        ]
        g_cur = Signal(B)
        g_go = Signal()
        g_idle = Signal()                    # no held beat still being written
        g_outbeat = Signal(B)
        g_seglast = Signal()
        g_rowlast_in = Signal()
        m.d.comb += [
            g_cur.eq(Mux(g_real, self.rd_data.payload, 0)),
            g_outbeat.eq(Mux(g_e, Cat(g_prev, g_cur).bit_select(Cat(Const(0, 3), g_rb), B),
                             g_cur)),
            g_seglast.eq(g_i == g_sb_last),
        ]
        # registered flags of the step: j is the row's last beat, p its last pixel, and a
        # stored pixel's segments pass pix_beats
        g_atlast = Signal()
        g_plast = Signal()
        g_segbad = Signal()
        m.d.comb += g_rowlast_in.eq(g_atlast)
        m.d.sync += g_segbad.eq(g_dyend > ins.pix_beats)     # (one step late after a dy)
        gathering = Signal()
        g_short = Signal()
        # ``beats_left`` is 0 / 1, as registers (set in CMD, shifted when a beat is taken)
        g_bl0 = Signal()
        g_bl1 = Signal()
        m.d.comb += g_short.eq(g_real & g_bl0)
        if wb >= B:
            lb = (lanes - 1).bit_length()
            m.d.comb += [g_idle.eq(1), g_go.eq(gathering & (~g_real | self.rd_data.valid))]
            # address and data whatever the state (a plain load's DATA state overrides them):
            # only the enable waits for the step
            m.d.comb += [
                self.wr_addr.eq(Cat(g_slot[lb:lb + self._abits - 1], n[0])),
                self.wr_data.eq(Cat(*([g_outbeat] * lanes))),
            ]
            with m.If(g_go & g_on & (g_slot < half_beats)):
                m.d.comb += self.wr_en.eq(Const(1, lanes) << g_slot[:lb] if lb else 1)
        else:
            kw_ = B // wb
            lb = (kw_ - 1).bit_length()
            g_part = Signal(range(kw_))
            g_hold = Signal(B)
            g_hslot = Signal(24)
            m.d.comb += [g_idle.eq(g_part == 0),
                         g_go.eq(gathering & g_idle & (~g_real | self.rd_data.valid))]
            # address and data whatever the state (a plain load's DATA state overrides them):
            # only the enable waits for the step
            held = g_part != 0
            m.d.comb += [
                self.wr_addr.eq(Mux(held, Cat(g_part, g_hslot[:self._abits - 1 - lb], n[0]),
                                    Cat(Const(0, lb), g_slot[:self._abits - 1 - lb], n[0]))),
                self.wr_data.eq(Mux(held, g_hold.word_select(g_part, wb), g_outbeat[:wb])),
            ]
            with m.If(g_go & g_on & (g_slot < half_beats)):
                m.d.comb += self.wr_en.eq(1)
                m.d.sync += [g_hold.eq(g_outbeat), g_hslot.eq(g_slot), g_part.eq(1)]
            with m.Elif(held):
                m.d.comb += self.wr_en.eq(1)
                m.d.sync += g_part.eq(Mux(g_part == kw_ - 1, 0, g_part + 1))
        m.d.comb += self.rd_data.ready.eq(g_go & g_real)

        # ---- strided loads (``chunk_beats``): the chunk issuer, beside the DATA state --------
        c_pending = Signal()
        c_left = Signal(25)                  # beats not yet issued
        c_i = Signal(12)
        c_addr = Signal(32)
        c_row = Signal(32)
        c_lt = Signal()                      # registered: c_left < chunk_beats
        c_eq = Signal()                      # registered: c_left == chunk_beats
        c_2 = Signal(14)
        c_last = Signal(12)                  # chunks - 1, registered
        m.d.comb += c_2.eq(ins.chunk_beats << 1)
        m.d.sync += c_last.eq(ins.chunks - 1)
        with m.If(c_pending):
            with m.If(c_lt):
                # not a whole number of rows: never read past ``beats``
                m.d.sync += [self.error.eq(1), c_pending.eq(0)]
            with m.Else():
                m.d.comb += [
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(c_addr),
                    self.rd_cmd.p.beats.eq(ins.chunk_beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [c_left.eq(c_left - ins.chunk_beats),
                                 c_lt.eq(c_left < c_2), c_eq.eq(c_left == c_2)]
                    with m.If(c_eq):
                        m.d.sync += c_pending.eq(0)
                        with m.If(c_i != c_last):
                            m.d.sync += self.error.eq(1)        # ends inside a row
                    with m.If(c_i == c_last):
                        m.d.sync += [c_i.eq(0), c_row.eq(c_row + ins.row_stride),
                                     c_addr.eq(c_row + ins.row_stride)]
                    with m.Else():
                        m.d.sync += [c_i.eq(c_i + 1), c_addr.eq(c_addr + ins.chunk_stride)]

        def hash_and_issue_entries():
            """In a data state (DATA, GDATA): hash the beat taken, and issue the check entries'
            command as soon as the DMA takes it (after the data's; never beside a strided
            load's chunk issuer: CHECK refuses the pair)."""
            m.d.comb += data_acc.eq(self.rd_data.valid & self.rd_data.ready)
            with m.If(chk_pend):
                m.d.comb += [self.rd_cmd.valid.eq(1), self.rd_cmd.p.addr.eq(chk_addr),
                             self.rd_cmd.p.beats.eq(ins.chk_beats)]
            with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
                m.d.sync += chk_pend.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += ins.eq(self.instr.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                if striped:
                    m.d.sync += [
                        s_on.eq(~ins.gather & (ins.chunk_beats == 0) & (ins.beats > k)),
                        s_beats_a.eq(wa << lk), s_beats_b.eq(ins.beats - (wa << lk)),
                        s_addr_b.eq(ins.addr + (wa << (lk + (bb - 1).bit_length()))),
                        s_words_a.eq(wa),
                    ]
                with m.If((ins.gather | (ins.chk_beats != 0)) & (ins.chunk_beats != 0)):
                    # a strided load is neither gathering nor checked (it reads a part of
                    # each row; a check entry covers a whole row)
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Elif((ins.chunk_beats != 0) &
                            ((ins.chunks == 0) | (ins.beats == 0) | (ins.beats > half_beats))):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Elif(ins.gather):
                    # the bounds of the writes are checked as they happen (``slot``)
                    with m.If(~g_ok | (ins.beats == 0) | (ins.beats > MAX_COMMAND_BEATS) |
                              (ins.row_beats == 0) | (ins.seg_beats == 0) |
                              (ins.seg_rows == 0) | (ins.pix == 0)):
                        m.d.sync += self.error.eq(1)
                        m.next = "HALT"
                    with m.Else():
                        m.next = "WAIT"
                with m.Elif((ins.beats == 0) | (ins.beats > half_beats)):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Else():
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If((n - self.c_done <= 1) & (self.s_done >= ins.wait_stores)):
                    m.next = "CMD"
                    with m.If(ins.chunk_beats != 0):
                        # strided: the reads are issued beside DATA (the chunk issuer)
                        m.d.sync += [beats_left.eq(ins.beats), word.eq(0), part.eq(0),
                                     c_pending.eq(1), c_left.eq(ins.beats), c_i.eq(0),
                                     c_lt.eq(ins.beats < ins.chunk_beats),
                                     c_eq.eq(ins.beats == ins.chunk_beats),
                                     c_addr.eq(ins.addr), c_row.eq(ins.addr)]
                        m.next = "DATA"
                with m.Else():
                    m.d.comb += self.stall.eq(1)
            with m.State("CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(ins.addr),
                    self.rd_cmd.p.beats.eq(Mux(s_on, s_beats_a, ins.beats) if striped
                                           else ins.beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [beats_left.eq(ins.beats), word.eq(0), part.eq(0),
                                 h_addr.eq(ins.addr), e_left.eq(ins.chk_beats),
                                 chk_pend.eq(ins.chk_beats != 0)]
                    m.d.comb += hsum.clear.eq(1)
                    m.next = "DATA"
                    if striped:
                        with m.If(s_on):
                            m.d.sync += [beats_left.eq(s_beats_a), a_more.eq(1),
                                         b_left.eq(s_beats_b), b_more.eq(1),
                                         b_word.eq(s_words_a), b_part.eq(0), b_pend.eq(0),
                                         h_addr_b.eq(s_addr_b)]
                            m.next = "CMDB"
                    with m.If(ins.gather):
                        m.d.sync += [
                            g_j.eq(g_jmin), g_prev.eq(0), g_i.eq(0), g_p.eq(0), g_dy.eq(0),
                            g_rowbase.eq(0), g_rowdy.eq(0), g_pixbase.eq(0), g_slot.eq(0),
                            g_real.eq(g_real0), g_on.eq(g_on0), g_indone.eq(0),
                            g_outdone.eq(0), g_bl0.eq(ins.beats == 0), g_bl1.eq(ins.beats == 1),
                            g_dyend.eq(ins.seg_beats), g_atlast.eq(g_atlast0),
                            g_plast.eq(ins.pix == 1), g_segbad.eq(ins.seg_beats > ins.pix_beats),
                        ]
                        m.next = "GDATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                hash_and_issue_entries()
                base = Cat(word[:self._abits - 1], n[0])
                if wb >= B:
                    m.d.comb += self.rd_data.ready.eq(1)
                    with m.If(self.rd_data.valid):
                        full = Cat(shreg[B:], self.rd_data.payload) if wb > B \
                            else self.rd_data.payload
                        m.d.sync += shreg.eq(full)
                        m.d.sync += beats_left.eq(beats_left - 1)
                        with m.If(part == k - 1):
                            m.d.comb += [self.wr_en.eq(-1), self.wr_addr.eq(base),
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
            if striped:
                with m.State("CMDB"):
                    # the second stream's command (on the act_b client's port)
                    m.d.comb += [
                        self.busy.eq(1),
                        self.rd_cmd_b.valid.eq(1),
                        self.rd_cmd_b.p.addr.eq(s_addr_b),
                        self.rd_cmd_b.p.beats.eq(s_beats_b),
                    ]
                    with m.If(self.rd_cmd_b.ready):
                        m.next = "SDATA"
                with m.State("SDATA"):
                    # both streams, a beat each a cycle; A writes its word at once, B's word
                    # waits in ``b_data`` for a cycle in which A does not write
                    m.d.comb += self.busy.eq(1)
                    hash_and_issue_entries()
                    a_wr = Signal()
                    m.d.comb += self.rd_data.ready.eq(a_more)
                    with m.If(self.rd_data.valid & a_more):
                        full = Cat(shreg[B:], self.rd_data.payload)
                        m.d.sync += [shreg.eq(full), beats_left.eq(beats_left - 1)]
                        with m.If(beats_left == 1):
                            m.d.sync += a_more.eq(0)
                        with m.If(part == k - 1):
                            m.d.comb += [a_wr.eq(1), self.wr_en.eq(-1),
                                         self.wr_addr.eq(Cat(word[:self._abits - 1], n[0])),
                                         self.wr_data.eq(full)]
                            m.d.sync += [part.eq(0), word.eq(word + 1)]
                        with m.Else():
                            m.d.sync += part.eq(part + 1)
                    b_rdy = Signal()
                    b_acc = Signal()
                    m.d.comb += [b_rdy.eq(b_more & ~(b_pend & (b_part == k - 1))),
                                 self.rd_data_b.ready.eq(b_rdy),
                                 b_acc.eq(self.rd_data_b.valid & b_rdy),
                                 hsum.addr_b.eq(h_addr_b),
                                 hsum.beat_b.eq(self.rd_data_b.payload),
                                 hsum.valid_b.eq(b_acc)]
                    with m.If(b_acc):
                        full_b = Cat(b_shreg[B:], self.rd_data_b.payload)
                        m.d.sync += [b_shreg.eq(full_b), b_left.eq(b_left - 1),
                                     h_addr_b.eq(h_addr_b + bb)]
                        with m.If(b_left == 1):
                            m.d.sync += b_more.eq(0)
                        with m.If(b_part == k - 1):
                            m.d.sync += [b_pend.eq(1), b_data.eq(full_b), b_addr.eq(b_word),
                                         b_part.eq(0), b_word.eq(b_word + 1)]
                        with m.Else():
                            m.d.sync += b_part.eq(b_part + 1)
                    with m.If(b_pend & ~a_wr):
                        m.d.comb += [self.wr_en.eq(-1),
                                     self.wr_addr.eq(Cat(b_addr[:self._abits - 1], n[0])),
                                     self.wr_data.eq(b_data)]
                        m.d.sync += b_pend.eq(0)
                    with m.If(~a_more & ~b_more & ~b_pend):
                        m.next = "TAIL"
            with m.State("GDATA"):
                m.d.comb += [self.busy.eq(1), gathering.eq(~g_short)]
                hash_and_issue_entries()
                emit_done = g_on & g_seglast & g_plast               # the row's last output
                in_done = g_indone | g_rowlast_in                      # ... and input beat
                with m.If(g_short | g_segbad):
                    # ``beats`` is not a whole number of rows (the stream ended inside a row),
                    # or a stored pixel's segments (seg_rows * seg_beats) exceed pix_beats
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Elif(g_go):
                    m.d.sync += [g_prev.eq(g_cur), g_j.eq(g_j + 1),
                                 g_atlast.eq(g_j == g_rb_last_m1)]
                    with m.If(g_real):
                        m.d.sync += [beats_left.eq(beats_left - 1), g_bl0.eq(g_bl1),
                                     g_bl1.eq(beats_left == 2)]
                    # the flags of the next step
                    with m.If(g_j == -1):
                        m.d.sync += g_real.eq(1)
                    with m.If(g_rowlast_in):
                        m.d.sync += [g_real.eq(0), g_indone.eq(1)]
                    with m.If(~g_on & ~g_outdone & (g_j == g_lo_m1)):
                        m.d.sync += g_on.eq(1)
                    with m.If(g_on):
                        with m.If(g_slot >= half_beats):
                            m.d.sync += self.error.eq(1)
                            m.next = "HALT"
                        with m.If(g_seglast):
                            m.d.sync += [g_i.eq(0), g_p.eq(g_p + 1),
                                         g_plast.eq(g_p == g_pix_last_m1),
                                         g_pixbase.eq(g_pixbase + ins.pix_beats),
                                         g_slot.eq(g_slot + g_pixgap)]
                        with m.Else():
                            m.d.sync += [g_i.eq(g_i + 1), g_slot.eq(g_slot + 1)]
                        with m.If(emit_done):
                            m.d.sync += [g_on.eq(0), g_outdone.eq(1)]
                    with m.If(in_done & (g_outdone | emit_done)):
                        # the row's last step: the next row (of this stored row or the next)
                        m.d.sync += [g_j.eq(g_jmin), g_i.eq(0), g_p.eq(0), g_prev.eq(0),
                                     g_real.eq(g_real0), g_on.eq(g_on0), g_indone.eq(0),
                                     g_outdone.eq(0), g_atlast.eq(g_atlast0),
                                     g_plast.eq(ins.pix == 1)]
                        nxt = Mux(g_outdone, g_pixbase, g_pixbase + ins.pix_beats)
                        with m.If(g_dy == g_s_last):
                            m.d.sync += [g_dy.eq(0), g_rowbase.eq(nxt), g_rowdy.eq(nxt),
                                         g_pixbase.eq(nxt), g_slot.eq(nxt),
                                         g_dyend.eq(ins.seg_beats)]
                        with m.Else():
                            m.d.sync += [g_dy.eq(g_dy + 1), g_dyend.eq(g_dyend + ins.seg_beats),
                                         g_rowdy.eq(g_rowdy + ins.seg_beats),
                                         g_pixbase.eq(g_rowbase),
                                         g_slot.eq(g_rowdy + ins.seg_beats)]
                        with m.If(Mux(g_real, g_bl1, g_bl0)):
                            # the stream's last row: it must complete a stored row
                            with m.If(g_dy != g_s_last):
                                m.d.sync += self.error.eq(1)
                                m.next = "HALT"
                            with m.Else():
                                m.next = "GFLUSH"
            with m.State("GFLUSH"):
                # the last beat's remaining words (words narrower than a beat)
                m.d.comb += self.busy.eq(1)
                with m.If(g_idle):
                    m.next = "TAIL"
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
                m.d.comb += hsum.entry_valid.eq(self.rd_data.valid)
                with m.If(self.rd_data.valid):
                    m.d.sync += e_left.eq(e_left - 1)
                    with m.If(e_left == 1):
                        m.next = "CMP"
            with m.State("CMP"):
                m.d.comb += self.busy.eq(1)
                with m.If(~hsum.ok):
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
