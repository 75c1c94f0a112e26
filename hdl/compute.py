"""The compute unit: COMPUTE instructions -> the PE array's activation beat stream.

For one pixel tile it walks the loop nest of docs/architecture.md section 2::

    for mtile in range(n_mtiles):                       # accumulator bank = global mtile % 2
        for kr in range(kh): for kc in range(kw): for cg in range(groups):     # one weight set
            for oy in range(out_h): for ox in range(out_w):                    # one beat
                iy = ty0 + oy*stride_y + kr;  ix = tx0 + ox*stride_x + kc
                data = act_buf[half][iy*in_w*groups + ix*groups + cg]  if inside, else pad

(``pad`` = 0, or ``2**(act_bits-1)`` with ``pad_ob``: the zero of an offset-binary input;
on images stacked in one tensor (``img_rows`` > 0) a row outside the output row's own image
reads ``pad`` too: ``v = phi - img_pad + kr`` outside ``[0, img_rows)``, ``phi`` the output
row's phase in its image, stepped by ``stride_y`` per output row and wrapped at ``img_period``)

with ``first`` on the first set of an mtile, ``swap`` on the first pixel of every set and
``last`` on the final beat of an mtile. Under depthwise windowing (``Compute.dw`` bit 0) mtile
``t`` runs ``cg`` over its window's ``lanes_pad / tn`` groups only, reading group
``cg_base + cg`` (a zero beat at or past ``groups``); ``cg_base`` moves on by ``lanes_pad / tn``
at the mtiles whose ``dw`` bit is set. A COMPUTE with ``pool`` set walks pooling windows
instead (hdl/pool.py gives the loop nest) and sends its beats to ``pool_beats``. All addresses come from adders (no multiplier in the beat
loop). The activation buffer is read through a synchronous port (one cycle latency); beats enter a
small FIFO and an address is issued only when the FIFO has room for it, so back-pressure from the
PE array never loses a beat.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import HWConfig
from .isa import DW_MAX_MTILES, Compute, PoolMode
from .pool import PoolBeat

__all__ = ["ComputeBeat", "ComputeUnit"]


def ComputeBeat(config: HWConfig) -> data.StructLayout:
    """Layout of one activation beat (the fields of ``PEArray.act``)."""
    return data.StructLayout({
        "data": data.ArrayLayout(unsigned(config.act_bits), config.tn),
        "addr": unsigned(max(1, (config.acc_depth - 1).bit_length())),
        "bank": unsigned(1),
        "first": unsigned(1),
        "swap": unsigned(1),
        "last": unsigned(1),
    })


class ComputeUnit(wiring.Component):
    """Executes COMPUTE instructions.

    Members
    -------
    instr : In(stream.Signature(Compute))
        COMPUTE instructions, in program order.
    beats : Out(stream.Signature(ComputeBeat(config)))
        Activation beats for ``PEArray.act``.
    rd_addr, rd_en : Out
        Synchronous read port of the activation buffer (data one cycle after ``rd_en``).
    rd_data : In(tn * 8)
        ``tn`` bytes; the low ``act_bits`` of each byte are the activation.
    la_done : In(32)
        LOAD_ROWS instructions completed. A COMPUTE reads load ``n`` (half ``n % 2``), ``n``
        the COMPUTEs before it that released their half (``keep`` clear); it starts when
        ``la_done > n``.
    drained : In(32)
        Mtiles drained by the STORE unit. Mtile ``g`` starts when ``g - drained <= 1``.
    done_count : Out(32)
        COMPUTE instructions completed (their last activation read has returned) that released
        their half: one with ``keep`` set is not counted (the next COMPUTE reads its load).
    mtiles_started : Out(32)
        Global mtile counter ``g`` (the next mtile to start).
    stall_act, stall_store, busy : Out(1)
        Performance strobes: waiting for activations, waiting for an accumulator bank, and
        executing an instruction.
    error : Out(1)
        An instruction field out of range for this configuration (sticky; the unit halts).

    Soft reset: the top level wraps the unit in a ``ResetInserter``.
    """

    def __init__(self, config: HWConfig):
        self.config = config
        abits = (config.act_depth - 1).bit_length()
        self._abits = abits
        super().__init__({
            "instr": In(stream.Signature(Compute)),
            "beats": Out(stream.Signature(ComputeBeat(config))),
            "pool_beats": Out(stream.Signature(PoolBeat(config))),
            "rd_addr": Out(abits),
            "rd_en": Out(1),
            "rd_data": In(config.tn * 8),
            "la_done": In(32),
            "drained": In(32),
            "done_count": Out(32),
            "mtiles_started": Out(32),
            "stall_act": Out(1),
            "stall_store": Out(1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        half_words = cfg.act_depth // 2
        sbits = self._abits + 16  # signed offsets: wide enough for any product of fields
        beat_layout = ComputeBeat(cfg)
        meta_layout = data.StructLayout({
            "addr": beat_layout["addr"].shape, "bank": 1, "first": 1, "swap": 1, "last": 1,
            "inb": 1, "pool": 1, "emit": 1, "sum": 1,
        })
        depth = 4
        m.submodules.fifo = q = fifo.SyncFIFO(
            width=cfg.tn * cfg.act_bits + data.Layout.cast(meta_layout).size, depth=depth)

        ins = Signal(Compute)
        # the load the next COMPUTE reads = the loads released so far (COMPUTEs completed
        # without ``keep``): ``done_count`` itself, no second counter
        n_instr = self.done_count
        g = Signal(32)             # global mtile counter
        m.d.comb += self.mtiles_started.eq(g)

        rowstride = Signal(unsigned(self._abits + 1))
        row_step = Signal(signed(sbits))
        col_step = Signal(signed(sbits))
        kr_rowoff = Signal(signed(sbits))
        kc_coloff = Signal(signed(sbits))
        oy_rowoff = Signal(signed(sbits))
        ox_coloff = Signal(signed(sbits))
        kr_row = Signal(signed(14))
        kc_col = Signal(signed(14))
        oy_row = Signal(signed(16))
        ox_col = Signal(signed(16))
        mt = Signal(12)
        kr = Signal(4)
        kc = Signal(4)
        cg = Signal(10)
        oy = Signal(12)
        ox = Signal(12)
        pix = Signal(16)
        half = Signal(1)
        # pooling loop nest (cg counts the groups of the current block of lanes_pad positions)
        ppg = max(1, cfg.lanes_pad // cfg.tn)        # groups per pooling mtile
        cg_base = Signal(16)
        p_row = Signal(signed(16))                 # window top row / its word offset
        p_rowoff = Signal(signed(sbits))
        p_col = Signal(signed(16))                 # window left column / its word offset
        p_coloff = Signal(signed(sbits))
        w_row = Signal(signed(16))                 # current kernel position
        w_rowoff = Signal(signed(sbits))
        w_col = Signal(signed(16))
        w_coloff = Signal(signed(sbits))
        pooling = Signal()
        m.d.comb += pooling.eq(ins.pool != PoolMode.NONE)

        # Products of instruction fields, in registers that follow ``ins`` (loaded in IDLE):
        # valid one cycle after the load (in CHECK's successor SETUP), ``rowoff0`` (from
        # ``rowstride``) two (from WAIT_LA on, before any beat; SETUP computes its own copy).
        # Every multiplier is fed by registers and feeds a register or one comparison, never
        # another multiplier (docs/performance.md, timing).
        pre_pixels = Signal(24)                    # out_h * out_w
        pre_rows_w = Signal(24)                    # in_rows * in_w
        coloff0 = Signal(signed(sbits))            # tx0 * groups
        rowoff0 = Signal(signed(sbits))            # ty0 * rowstride
        in_words = Signal(34)                      # in_rows * in_w * groups (SETUP)
        groups_m1 = Signal(len(ins.groups))        # groups - 1 (SETUP on; timing: the
        #                                            compare for the last group reads a register)
        m.d.sync += [
            pre_pixels.eq(ins.out_h * ins.out_w),
            pre_rows_w.eq(ins.in_rows * ins.in_w),
            rowstride.eq(ins.in_w * ins.groups),
            col_step.eq(ins.stride_x * ins.groups),
            coloff0.eq(ins.tx0 * ins.groups),
            rowoff0.eq(ins.ty0 * rowstride),
            groups_m1.eq(ins.groups - 1),
        ]
        m.d.comb += in_words.eq(pre_rows_w * ins.groups)

        # stage B: the read returns; push beat into the FIFO
        b_valid = Signal()
        b_meta = Signal(meta_layout)
        m.d.sync += b_valid.eq(0)

        room = Signal()
        m.d.comb += room.eq(q.w_level + b_valid < depth)

        last_set = Signal()
        last_pix = Signal()
        # depthwise windowing (``ins.dw``): an mtile iterates the ppg groups of its window
        dw = Signal()
        last_cg = Signal()
        mt_bits = (DW_MAX_MTILES - 1).bit_length()
        m.d.comb += [
            dw.eq(ins.dw[0]),
            last_cg.eq(Mux(dw, cg == ppg - 1, cg == groups_m1)),
            last_set.eq((kr == ins.kh - 1) & (kc == ins.kw - 1) & last_cg),
            last_pix.eq((oy == ins.out_h - 1) & (ox == ins.out_w - 1)),
        ]

        # the absolute group (cg_base is 0 outside depthwise windowing)
        cg_abs_c = cg_base + cg
        # stacked images (``ins.img_rows`` > 0): ``phi`` is the current output row's phase in
        # its image (its anchor input row mod ``img_period``), set to ``img_phase`` wherever
        # ``oy`` restarts and stepped with ``oy`` by ``stride_y`` (one conditional subtract);
        # input row ``v = phi - img_pad + kr`` of the image outside ``[0, img_rows)`` -- a row
        # of another image or a gap row -- reads as padding
        phi = Signal(12)
        phi_inc = Signal(13)
        phi_wrap = Signal(signed(14))          # phi + stride_y - img_period: its sign compares
        phi_next = Signal(12)
        m.d.comb += [
            phi_inc.eq(phi + ins.stride_y),
            phi_wrap.eq(phi_inc - ins.img_period),
            phi_next.eq(Mux(phi_wrap[-1], phi_inc, phi_wrap)),
        ]
        img_v = Signal(signed(14))
        other_img = Signal()
        m.d.comb += [
            img_v.eq(phi + kr - ins.img_pad),
            other_img.eq((ins.img_rows != 0) & ((img_v < 0) | (img_v >= ins.img_rows))),
        ]
        inb = Signal()
        m.d.comb += inb.eq((oy_row >= 0) & (oy_row < ins.in_rows) & ~other_img &
                           (ox_col >= 0) & (ox_col < ins.in_w) & (cg_abs_c < ins.groups))
        word = Signal(signed(sbits))
        m.d.comb += word.eq(oy_rowoff + ox_coloff + cg_abs_c)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += ins.eq(self.instr.payload)
                    m.next = "CHECK"
            with m.State("CHECK"):
                # fields that need no product; the products of fields are checked in SETUP,
                # from registers (timing: no multiplier between the FSM and a comparison)
                m.d.comb += self.busy.eq(1)
                bad = ((ins.n_mtiles == 0) | (ins.kh == 0) | (ins.kw == 0) |
                       (ins.groups == 0) | (ins.stride_y == 0) | (ins.stride_x == 0) |
                       (ins.out_h == 0) | (ins.out_w == 0) | (ins.in_rows == 0) |
                       (ins.in_w == 0) | (ins.pool.as_value() == 3) |
                       (dw & (ins.n_mtiles > DW_MAX_MTILES)) |
                       ((ins.img_rows != 0) & ((ins.img_period < ins.stride_y) |
                                               (ins.img_phase >= ins.img_period) |
                                               (ins.img_rows > ins.img_period))))
                with m.If(bad):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Else():
                    m.d.sync += half.eq(n_instr[0])
                    m.next = "SETUP"
            with m.State("SETUP"):
                # the check's product (``in_words``: a DSP48E1, then a compare) drives only
                # ``error`` and the next state; the loop registers are set in WAIT_LA (timing)
                m.d.comb += self.busy.eq(1)
                with m.If((pre_pixels > cfg.acc_depth) | (in_words > half_words)):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Else():
                    m.next = "WAIT_LA"
            with m.State("WAIT_LA"):
                m.d.comb += self.busy.eq(1)
                # the same values on every cycle of WAIT_LA (``ins`` and the products of its
                # fields do not change): ready for MTILE
                m.d.sync += [
                    row_step.eq(ins.stride_y * rowstride),
                    kr_rowoff.eq(rowoff0),
                    kc_coloff.eq(coloff0),
                    kr_row.eq(ins.ty0),
                    kc_col.eq(ins.tx0),
                    mt.eq(0),
                ]
                with m.If(self.la_done > n_instr):
                    m.next = "MTILE"
                with m.Else():
                    m.d.comb += self.stall_act.eq(1)
            with m.State("MTILE"):
                m.d.comb += self.busy.eq(1)
                with m.If((g - self.drained <= 1) & pooling):
                    m.d.sync += [
                        kr.eq(0), kc.eq(0), cg.eq(0), oy.eq(0), ox.eq(0),
                        p_row.eq(kr_row), p_rowoff.eq(kr_rowoff),
                        p_col.eq(kc_col), p_coloff.eq(kc_coloff),
                        w_row.eq(kr_row), w_rowoff.eq(kr_rowoff),
                        w_col.eq(kc_col), w_coloff.eq(kc_coloff),
                    ]
                    with m.If(mt == 0):
                        m.d.sync += cg_base.eq(0)
                    m.next = "PRUN"
                with m.Elif(g - self.drained <= 1):
                    # the window of this mtile (0 outside depthwise windowing)
                    with m.If(~dw | (mt == 0)):
                        m.d.sync += cg_base.eq(0)
                    with m.Elif(ins.dw.bit_select(mt[:mt_bits], 1)):
                        m.d.sync += cg_base.eq(cg_base + ppg)
                    m.d.sync += [
                        kr.eq(0), kc.eq(0), cg.eq(0), oy.eq(0), ox.eq(0), pix.eq(0),
                        phi.eq(ins.img_phase),
                        oy_rowoff.eq(kr_rowoff), ox_coloff.eq(kc_coloff),
                        oy_row.eq(kr_row), ox_col.eq(kc_col),
                    ]
                    m.next = "RUN"
                with m.Else():
                    m.d.comb += self.stall_store.eq(1)
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(room):
                    # issue one read (or a zero beat)
                    m.d.comb += [
                        self.rd_en.eq(inb),
                        self.rd_addr.eq(Cat(word[:self._abits - 1], half)),
                    ]
                    m.d.sync += [
                        b_valid.eq(1),
                        b_meta.addr.eq(pix),
                        b_meta.bank.eq(g[0]),
                        b_meta.first.eq((kr == 0) & (kc == 0) & (cg == 0)),
                        b_meta.swap.eq(pix == 0),
                        b_meta.last.eq(last_set & last_pix),
                        b_meta.inb.eq(inb),
                        b_meta.pool.eq(0),
                    ]
                    # advance the loop nest
                    with m.If(~last_pix):
                        m.d.sync += pix.eq(pix + 1)
                        with m.If(ox == ins.out_w - 1):
                            m.d.sync += [
                                ox.eq(0), oy.eq(oy + 1), phi.eq(phi_next),
                                ox_col.eq(kc_col), ox_coloff.eq(kc_coloff),
                                oy_row.eq(oy_row + ins.stride_y),
                                oy_rowoff.eq(oy_rowoff + row_step),
                            ]
                        with m.Else():
                            m.d.sync += [
                                ox.eq(ox + 1),
                                ox_col.eq(ox_col + ins.stride_x),
                                ox_coloff.eq(ox_coloff + col_step),
                            ]
                    with m.Else():
                        # next set: cg fastest, then kc, then kr
                        m.d.sync += [pix.eq(0), ox.eq(0), oy.eq(0), phi.eq(ins.img_phase)]
                        with m.If(last_set):
                            m.d.sync += [g.eq(g + 1), mt.eq(mt + 1)]
                            with m.If(mt == ins.n_mtiles - 1):
                                m.next = "FLUSH"
                            with m.Else():
                                m.d.sync += [
                                    kr_rowoff.eq(rowoff0), kr_row.eq(ins.ty0),
                                    kc_coloff.eq(coloff0), kc_col.eq(ins.tx0),
                                ]
                                m.next = "MTILE_PREP"
                        with m.Elif(~last_cg):
                            m.d.sync += [
                                cg.eq(cg + 1),
                                oy_row.eq(kr_row), oy_rowoff.eq(kr_rowoff),
                                ox_col.eq(kc_col), ox_coloff.eq(kc_coloff),
                            ]
                        with m.Elif(kc != ins.kw - 1):
                            m.d.sync += [
                                cg.eq(0), kc.eq(kc + 1),
                                kc_col.eq(kc_col + 1), kc_coloff.eq(kc_coloff + ins.groups),
                                oy_row.eq(kr_row), oy_rowoff.eq(kr_rowoff),
                                ox_col.eq(kc_col + 1), ox_coloff.eq(kc_coloff + ins.groups),
                            ]
                        with m.Else():
                            m.d.sync += [
                                cg.eq(0), kc.eq(0), kr.eq(kr + 1),
                                kr_row.eq(kr_row + 1), kr_rowoff.eq(kr_rowoff + rowstride),
                                kc_col.eq(ins.tx0), kc_coloff.eq(coloff0),
                                oy_row.eq(kr_row + 1), oy_rowoff.eq(kr_rowoff + rowstride),
                                ox_col.eq(ins.tx0), ox_coloff.eq(coloff0),
                            ]
            with m.State("PRUN"):
                m.d.comb += self.busy.eq(1)
                cg_abs = cg_base + cg
                p_inb = ((w_row >= 0) & (w_row < ins.in_rows) & (w_col >= 0) &
                         (w_col < ins.in_w) & (cg_abs < ins.groups))
                p_word = Signal(signed(sbits))
                m.d.comb += p_word.eq(w_rowoff + w_coloff + cg_abs)
                k_first = (kr == 0) & (kc == 0)
                k_last = (kr == ins.kh - 1) & (kc == ins.kw - 1)
                g_last = cg == ppg - 1
                with m.If(room):
                    m.d.comb += [
                        self.rd_en.eq(p_inb),
                        self.rd_addr.eq(Cat(p_word[:self._abits - 1], half)),
                    ]
                    m.d.sync += [
                        b_valid.eq(1),
                        b_meta.addr.eq(0),
                        b_meta.bank.eq(g[0]),
                        b_meta.first.eq(k_first),
                        b_meta.swap.eq(0),
                        b_meta.last.eq(k_last & g_last & last_pix),
                        b_meta.inb.eq(p_inb),
                        b_meta.pool.eq(1),
                        b_meta.emit.eq(k_last),
                        b_meta.sum.eq(ins.pool == PoolMode.SUM),
                    ]
                    # advance: kc fastest, then kr, then the group, then the output pixel
                    with m.If(kc != ins.kw - 1):
                        m.d.sync += [kc.eq(kc + 1), w_col.eq(w_col + 1),
                                     w_coloff.eq(w_coloff + ins.groups)]
                    with m.Elif(kr != ins.kh - 1):
                        m.d.sync += [kc.eq(0), kr.eq(kr + 1),
                                     w_row.eq(w_row + 1), w_rowoff.eq(w_rowoff + rowstride),
                                     w_col.eq(p_col), w_coloff.eq(p_coloff)]
                    with m.Else():
                        m.d.sync += [kc.eq(0), kr.eq(0),
                                     w_row.eq(p_row), w_rowoff.eq(p_rowoff),
                                     w_col.eq(p_col), w_coloff.eq(p_coloff)]
                        with m.If(~g_last):
                            m.d.sync += cg.eq(cg + 1)
                        with m.Else():
                            m.d.sync += cg.eq(0)
                            with m.If(ox != ins.out_w - 1):
                                m.d.sync += [
                                    ox.eq(ox + 1),
                                    p_col.eq(p_col + ins.stride_x),
                                    p_coloff.eq(p_coloff + col_step),
                                    w_col.eq(p_col + ins.stride_x),
                                    w_coloff.eq(p_coloff + col_step),
                                ]
                            with m.Elif(oy != ins.out_h - 1):
                                m.d.sync += [
                                    ox.eq(0), oy.eq(oy + 1),
                                    p_col.eq(kc_col), p_coloff.eq(kc_coloff),
                                    w_col.eq(kc_col), w_coloff.eq(kc_coloff),
                                    p_row.eq(p_row + ins.stride_y),
                                    p_rowoff.eq(p_rowoff + row_step),
                                    w_row.eq(p_row + ins.stride_y),
                                    w_rowoff.eq(p_rowoff + row_step),
                                ]
                            with m.Else():
                                m.d.sync += [g.eq(g + 1), mt.eq(mt + 1),
                                             cg_base.eq(cg_base + ppg)]
                                with m.If(mt == ins.n_mtiles - 1):
                                    m.next = "FLUSH"
                                with m.Else():
                                    m.next = "MTILE"
            with m.State("MTILE_PREP"):
                m.d.comb += self.busy.eq(1)
                m.next = "MTILE"
            with m.State("FLUSH"):
                m.d.comb += self.busy.eq(1)
                with m.If(~b_valid):
                    # ``keep``: the next COMPUTE reads the same load (half not released)
                    with m.If(~ins.keep):
                        m.d.sync += self.done_count.eq(self.done_count + 1)
                    m.next = "IDLE"
            with m.State("HALT"):
                pass

        # stage B -> FIFO. A padding position reads 0, or with ``pad_ob`` the stored zero of an
        # offset-binary input, ``2**(act_bits-1)``: only the MSB differs (``ins`` holds this
        # beat's instruction: FLUSH waits for stage B before the next one is taken)
        acts = Signal(data.ArrayLayout(unsigned(cfg.act_bits), cfg.tn))
        pad = Signal(unsigned(cfg.act_bits))
        m.d.comb += pad.eq(Cat(Const(0, cfg.act_bits - 1), ins.pad_ob))
        for j in range(cfg.tn):
            m.d.comb += acts[j].eq(Mux(b_meta.inb, self.rd_data[8 * j:8 * j + cfg.act_bits], pad))
        m.d.comb += [
            q.w_data.eq(Cat(acts.as_value(), b_meta.as_value())),
            q.w_en.eq(b_valid),
        ]
        # FIFO -> beats stream
        out_acts = Signal(data.ArrayLayout(unsigned(cfg.act_bits), cfg.tn))
        out_meta = Signal(meta_layout)
        m.d.comb += [
            Cat(out_acts.as_value(), out_meta.as_value()).eq(q.r_data),
            self.beats.valid.eq(q.r_rdy & ~out_meta.pool),
            self.pool_beats.valid.eq(q.r_rdy & out_meta.pool),
            q.r_en.eq(Mux(out_meta.pool, self.pool_beats.ready, self.beats.ready)),
            self.pool_beats.p.data.eq(out_acts),
            self.pool_beats.p.first.eq(out_meta.first),
            self.pool_beats.p.emit.eq(out_meta.emit),
            self.pool_beats.p.sum.eq(out_meta.sum),
            self.beats.p.data.eq(out_acts),
            self.beats.p.addr.eq(out_meta.addr),
            self.beats.p.bank.eq(out_meta.bank),
            self.beats.p.first.eq(out_meta.first),
            self.beats.p.swap.eq(out_meta.swap),
            self.beats.p.last.eq(out_meta.last),
        ]

        return m
