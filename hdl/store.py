"""The store unit: STORE instructions -> drained accumulators, post-processed, written to DRAM.

Before anything else the output range of the whole instruction is checked against the
activation arena ``[wr_base, wr_limit)`` (``err_protect``, ErrorCode.WRITE_PROTECT): a STORE
that would write outside it (inside the DMA window: a write outside the window is the DMA's
DMA_WRITE_WINDOW) is stopped before any of its beats is issued.

For every mtile of a pixel tile:

1. read the mtile's per-lane parameters (:class:`~ilmpq.hdl.isa.LaneParams`, ``lanes_pad``
   entries) into the parameter RAM, then their CRC trailer
   (:func:`~ilmpq.hdl.isa.pack_params_block`): a mismatch stops the unit (``err_params``,
   ErrorCode.PARAMS_CRC) before any value of the mtile is used or written;
2. wait until the PE array reports the mtile's accumulator bank complete (``done``);
3. if the layer has a residual input, stream the tile's residual pixels (``res_beats`` beats
   each, the whole stored channel row of that pixel) through a double-buffered row buffer of
   ``max_channels`` bytes a pixel, which keeps the window of beats ``[res_win, res_win +
   max_channels / beat)`` of each pixel (``LaneParams.res_win``, one value per mtile): a
   residual wider than ``max_channels`` is read whole (so its rows' check entries still
   apply) and each mtile keeps the window its lanes' ``res_pos`` lie in;
4. for every pixel, drain the bank ``post_lanes x post_groups`` lanes at a time
   (``HWConfig.post_groups`` groups a cycle); each group is joined with its
   parameters and its residual bytes, gathered from the row by each lane's ``res_pos`` (the
   residual tensor was written in another layer's lane order) and decoded (unsigned, two's
   complement, or with ``res_offset`` offset-binary: ``u - 2**(act_bits-1)``), and sent to the
   post-processing unit; its output bytes go to the DMA write stream, one write command per
   pixel (one command for the whole mtile when the output is contiguous). With
   ``post_groups`` > 1 the post-processing output (``post_groups`` beats) and the vertical
   pooling's are written one beat a cycle through a register (``ser_a``): the beats, their
   order, the hashes and the write commands are those of one group a cycle.

Integrity of the output (``chk_row_pixels`` != 0, docs/reliability.md section 3.1): every
written beat is hashed with its byte address (:func:`~ilmpq.hdl.isa.act_check`: CRC-32 on
``Cat(addr, beat)``) and the hashes summed modulo 2**32 per output row of the tile (``pixels /
chk_row_pixels`` rows, over all mtiles) in a row table; after the last mtile the unit writes
one check entry per row (a beat: the sum, zeros above) at ``wr_base + (chk_off + r *
chk_stride) * beat_bytes`` (one write command for all of them when ``chk_stride`` is 1, else
one each), each command checked against the arena's limit before it is issued
(WRITE_PROTECT), and the instruction completes when they are acknowledged too.

The residual rows are checked the same way (``res_chk_beats`` != 0): every residual beat of
every mtile is hashed with its address as it enters the row buffer, the rows' check entries
are read after them (``res_chk_off``), and a mismatch latches ``err_res`` (ACT_CRC, ``err_addr``
= ``res_addr``) at the end of the mtile, before its bank is released or the instruction
completes. The mtile's outputs have been written by then (the join consumes residual rows
as they arrive): the error comes before END and before any reader of this STORE's output
starts (its LOAD_ROWS wait for the STORE), not before the mtile's writes.

A STORE with ``pool`` set takes its mtiles' values from the pooling unit (``pool_in``, already
in drain order, hdl/pool.py) instead of draining an accumulator bank; everything else is the
same. The bank is released (``drained``) once its last group has left the join; the instruction
completes (``done_count``) when every write of it has been acknowledged.

Vertical max pooling (``vpool``, ``HWConfig.vpool_entries`` != 0): the post-processed output
beats (after the lookup table: exactly the values a MaxPool after the layer reads) are pooled
over rows, 3 rows with stride 2 and padding 1 (ResNet's stem pool), in a row array ``M`` of
``vpool_entries`` beats, one per (mtile, column, group) of the tile's row, that persists from
one STORE to the next (a tile continuing the previous STORE's rows, ``vp_y0`` != 0, needs no
halo rows). For image row ``y`` (``vp_y0`` + the tile's row) and beat ``v``: ``o = v`` when
``y = 0``, else ``max(M, v)`` byte by byte (unsigned bytes: unsigned or offset-binary outputs);
the beat ``o`` is written when ``y`` is odd or the image's last row (``vp_h - 1``); ``M``
becomes ``v`` for an odd row, else ``o``. Only written beats go to the DMA, the hash and the
check entries (one per pooled row); the write commands cover ``vp_pixels`` pixels per mtile
(the pooled rows times ``vp_cols``). The max stage is registered (two cycles of latency, a
beat a cycle). With ``post_groups`` > 1 the array's words are ``post_groups`` entries, read
and written together (one word per (mtile, column, ``post_groups`` groups)). A row entry past
the array, a row of one word (its read would need the write of the cycle before: no
forwarding; the compiler does not fuse such a conv), or a written pixel count other than
``vp_pixels`` stops the unit (``error``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import Processor, catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .beathash import BeatHashSum
from .config import HWConfig
from .isa import (LUT_TRAILER_BYTES, PARAMS_TRAILER_BYTES, LaneParams, Store,
                  params_block_bytes)
from .postproc import LutWrite

__all__ = ["StoreUnit", "JoinBeat", "DmaCmd"]

DmaCmd = data.StructLayout({"addr": unsigned(32), "beats": unsigned(24)})


def JoinBeat(config: HWConfig) -> data.StructLayout:
    """``post_groups`` groups of ``post_lanes`` lanes (in channel order), everything the
    post-processing unit needs."""
    G = config.post_lanes * config.post_groups
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), G),
        "bias": data.ArrayLayout(signed(config.acc_bits), G),
        "mult": data.ArrayLayout(unsigned(config.mult_bits), G),
        "shift": data.ArrayLayout(unsigned(config.shift_bits), G),
        "res_mult": data.ArrayLayout(unsigned(config.mult_bits), G),
        "res": data.ArrayLayout(signed(9), G),
        "res_en": unsigned(1),
        "relu": unsigned(1),
        "lut": unsigned(G),
        "last": unsigned(1),
    })


def DrainCmd(config: HWConfig) -> data.StructLayout:
    return data.StructLayout({
        "bank": unsigned(1),
        "addr": unsigned(max(1, (config.acc_depth - 1).bit_length())),
    })


def DrainBeat(config: HWConfig, groups: int = 1) -> data.StructLayout:
    """``groups`` groups of ``post_lanes`` accumulators (the PE array's drain port:
    ``post_groups``; the pooling unit's results: 1)."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), config.post_lanes * groups),
    })


class StoreUnit(wiring.Component):
    """Executes STORE instructions (see the module docstring).

    Members
    -------
    instr : In(stream.Signature(Store))
    rd_cmd : Out(stream.Signature(DmaCmd)); rd_data : In(stream.Signature(axi_data_width))
        One DMA read client: parameters, then residual rows, per mtile.
    done_in : In(stream.Signature(1))
        The PE array's bank-complete reports, one per mtile in order.
    drain : Out(stream.Signature(DrainCmd)); dout : In(stream.Signature(DrainBeat))
        The PE array's drain port (``ceil(lanes / (post_lanes * post_groups))`` beats per
        command, ``post_groups`` groups each).
    pool_in : In(stream.Signature(DrainBeat))
        The pooling unit's results (``lanes_pad / post_lanes`` beats per pixel, one group
        each; with ``post_groups`` > 1 the join gathers ``post_groups`` of them).
    pp_in : Out(stream.Signature(JoinBeat)); pp_out : In(stream.Signature(beat bytes))
        The post-processing unit (its output: ``post_groups`` AXI beats of ``post_lanes``
        bytes, the first group in the low bits).
    wr_cmd : Out(stream.Signature(DmaCmd)); wr_data : Out(stream.Signature(axi_data_width))
    wr_done : In(1)
        One pulse per completed (acknowledged) write command.
    drained, done_count : Out(32)
        Mtiles drained (their bank free again) and STORE instructions completed.
    busy, error : Out(1)
    win_base, win_limit, wr_base, wr_limit : In(32)
        The DMA window and the activation arena (WR_BASE / WR_LIMIT).
    err_params, err_protect : Out(1)
        Sticky: a lane-parameter block failed its CRC; a STORE would write outside the arena.
    err_res : Out(1)
        Sticky: the residual rows did not match their check entries (ErrorCode.ACT_CRC).
    err_addr : Out(32)
        The parameter block's address, the lookup table's, the STORE's ``out_addr`` (or a check
        entry's address), or the residual address.
    lut_wr : Out(stream.Signature(LutWrite))
        A STORE with ``lut_en``: its lookup table (:func:`~ilmpq.hdl.isa.pack_lut_block`), read
        before the first mtile's parameters, one word per beat into the post-processing unit.
    err_lut : Out(1)
        Sticky: the lookup table failed its CRC trailer (checked before any mtile is drained).
    """

    def __init__(self, config: HWConfig):
        if config.axi_data_width not in (32, 64):
            raise ValueError(f"the store unit supports axi_data_width 32 or 64, not "
                             f"{config.axi_data_width}")
        self.config = config
        B = config.axi_data_width
        super().__init__({
            "instr": In(stream.Signature(Store)),
            "rd_cmd": Out(stream.Signature(DmaCmd)),
            "rd_data": In(stream.Signature(B)),
            "done_in": In(stream.Signature(1)),
            "drain": Out(stream.Signature(DrainCmd(config))),
            "dout": In(stream.Signature(DrainBeat(config, config.post_groups))),
            "pool_in": In(stream.Signature(DrainBeat(config))),
            "pp_in": Out(stream.Signature(JoinBeat(config))),
            "pp_out": In(stream.Signature(B * config.post_groups)),
            "wr_cmd": Out(stream.Signature(DmaCmd)),
            "wr_data": Out(stream.Signature(B)),
            "wr_done": In(1),
            "drained": Out(32),
            "done_count": Out(32),
            "busy": Out(1),
            "error": Out(1),
            "win_base": In(32),
            "win_limit": In(32),
            "wr_base": In(32),
            "wr_limit": In(32),
            "err_params": Out(1),
            "err_protect": Out(1),
            "err_res": Out(1),
            "err_addr": Out(32),
            "lut_wr": Out(stream.Signature(LutWrite(config))),
            "err_lut": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        B = cfg.axi_data_width
        bb = cfg.beat_bytes
        G = cfg.post_lanes
        groups = cfg.lanes_pad // G
        Q = cfg.post_groups           # groups joined and post-processed a cycle
        W = G * Q                     # lanes a join beat
        wg = groups // Q              # join beats a pixel
        lp_beats_per_entry = max(1, 128 // B)      # beats per LaneParams entry
        param_beats = cfg.lanes_pad * 16 // bb
        trailer_beats = max(1, PARAMS_TRAILER_BYTES // bb)
        block_bytes = params_block_bytes(cfg.lanes_pad)
        res_row_beats = cfg.max_channels // bb
        lut_beats = (1 << cfg.act_bits) // bb
        lut_trailer_beats = max(1, LUT_TRAILER_BYTES // bb)

        ins = Signal(Store)
        VP = cfg.vpool_entries
        has_vp = VP != 0             # a configuration with the vertical pooling row array
        g = Signal(32)            # global mtile counter (bank = g % 2)
        t = Signal(12)            # mtile within the instruction

        # ---- parameter RAM: wg words of W lanes' parameters ------------------------------------
        # only the bits the join uses (LaneParams' fields cut to the post-processing widths,
        # the byte of res_pos within a beat; its beat index is in ``rpos`` below)
        rbits = max(1, (res_row_beats - 1).bit_length())
        bsel = (bb - 1).bit_length()
        lane_params = data.StructLayout({
            "bias": signed(min(32, cfg.acc_bits)),
            "mult": unsigned(cfg.mult_bits),
            "res_mult": unsigned(cfg.mult_bits),
            "shift": unsigned(cfg.shift_bits),
            "pos_lo": unsigned(max(1, bsel)),
            "no_lut": unsigned(1),
        })
        m.submodules.params = params = Memory(
            shape=data.ArrayLayout(lane_params, W), depth=wg, init=[])
        pw = params.write_port(granularity=1)
        pr = params.read_port(domain="comb")
        entry = Signal(range(cfg.lanes_pad + 1))
        part = Signal(range(lp_beats_per_entry + 1))
        shreg = Signal(128)
        # CRC-32 of the parameter beats, compared with the trailer's first beat
        m.submodules.pcrc = pcrc = Processor(catalog.CRC32_ISO_HDLC(B))
        pfirst = Signal()
        tbeat = Signal(range(max(trailer_beats, lut_trailer_beats) + 1))
        lbeat = Signal(range(lut_beats + 1))
        m.d.comb += [pcrc.data.eq(self.rd_data.payload), pcrc.start.eq(pfirst)]
        # the output range of the whole instruction (34 bits: never wraps), computed from the
        # instruction as it is taken (IDLE), registered for CHECK: the multiplier's path ends
        # at its register, not in the FSM's decision
        out_end = Signal(34)
        new = self.instr.payload
        last_pix = Signal(16)        # pixels - 1 (pixels = 0 is refused first, by ``bad``)
        # (written pixels: the pooled ones with ``vpool``)
        m.d.comb += last_pix.eq(Mux(new.vpool, new.vp_pixels, new.pixels) - 1)
        out_pix = Signal(16)
        m.d.comb += out_pix.eq(Mux(ins.vpool, ins.vp_pixels, ins.pixels))
        vp_bad = Signal()            # sticky: a row entry past the array / a wrong pixel count
        in_window = Signal()
        m.d.comb += in_window.eq((ins.out_addr >= self.win_base) &
                                 (ins.out_addr < self.win_limit))
        protect = Signal()
        m.d.comb += protect.eq(in_window & ((ins.out_addr < self.wr_base) |
                                            (out_end > self.wr_limit)))

        # ---- residual row buffer: two halves of res_row_beats beats, W read ports ------------
        # Block RAM (one copy per read port): the ports read one cycle ahead of the join, at
        # its next position (``n_grp``, ``n_pix0`` below) and each lane's beat from ``rpos``,
        # a copy of the lanes' residual beat indices read at that position
        # (a half of 2**rbits beats: the address is Cat(beat, half) also when res_row_beats is
        # not a power of two)
        m.submodules.rows = rows = Memory(shape=B, depth=2 * (1 << rbits) if res_row_beats > 1
                                          else 2, init=[],
                                          attrs={"ram_style": "block"})
        rw = rows.write_port()
        rports = [rows.read_port(domain="sync") for _ in range(G)]
        # post_groups > 1: a memory of G read ports per group, all written alike (the same
        # block RAM copies as W ports on one memory; yosys' memory_libmap fails on 16 ports)
        for q in range(1, Q):
            m.submodules[f"rows{q}"] = rows_q = Memory(shape=B, depth=rows.depth, init=[],
                                                      attrs={"ram_style": "block"})
            rw_q = rows_q.write_port()
            m.d.comb += [rw_q.addr.eq(rw.addr), rw_q.data.eq(rw.data), rw_q.en.eq(rw.en)]
            rports += [rows_q.read_port(domain="sync") for _ in range(G)]
        if res_row_beats > 1:
            m.submodules.rpos = rpos = Memory(
                shape=data.ArrayLayout(unsigned(rbits), W), depth=wg, init=[])
            rpw = rpos.write_port(granularity=1)
            rpr = rpos.read_port(domain="comb")

        # ---- output check state (see the module docstring) ------------------------------------
        m.submodules.hsum = hsum = BeatHashSum(B, running_sum=False)
        # the row table (block RAM): read one cycle ahead, at ``rr_next``, so that ``rr_data``
        # is the row the cycle needs (``h_row``, ``e_row``); a row written in the cycle its
        # address is read comes from the write's register (``rr_hit``)
        m.submodules.rowsum = rowsum = Memory(shape=32, depth=cfg.acc_depth, init=[],
                                              attrs={"ram_style": "block"})
        rsw = rowsum.write_port()
        rsr = rowsum.read_port(domain="sync")
        row_bits = max(1, (cfg.acc_depth - 1).bit_length())
        rw_en, rw_addr, rw_data = Signal(), Signal(row_bits), Signal(32)
        rr_next, rr_data = Signal(row_bits), Signal(32)
        rr_hit, rw_data_d = Signal(), Signal(32)
        m.d.comb += [rsw.en.eq(rw_en), rsw.addr.eq(rw_addr), rsw.data.eq(rw_data),
                     rsr.addr.eq(rr_next), rr_data.eq(Mux(rr_hit, rw_data_d, rsr.data))]
        m.d.sync += [rr_hit.eq(rw_en & (rw_addr == rr_next)), rw_data_d.eq(rw_data)]
        m.submodules.rsum = rsum = BeatHashSum(B)
        r_addr = Signal(32)         # address of the next residual beat
        r_left = Signal(12)         # residual check entries still to come
        r_cmd = Signal()            # their read command is not taken yet
        r_chk_addr = Signal(32)
        chk_start = Signal()        # a STORE is taken: reset the data-side counters
        chk_phase = Signal()        # the check entries are being written
        d_addr = Signal(32)         # address of the next data beat
        d_paddr = Signal(32)        # address of its pixel
        d_mbase = Signal(32)        # address of its mtile's pixel 0
        d_g = Signal(range(groups + 1))
        d_col = Signal(12)
        d_row = Signal(row_bits + 1)
        d_pix = Signal(16)
        d_t = Signal(12)
        d_done = Signal()           # the last data beat of the STORE was written
        n_rows = Signal(row_bits + 1)
        h_pend = Signal()           # hsum.hash is the hash of the beat written last cycle
        h_row = Signal(row_bits + 1)
        h_first = Signal()          # ... of mtile 0 (its row starts from 0)
        cur = Signal(32)
        cur_row = Signal(row_bits + 1)
        cur_valid = Signal()
        e_row = Signal(row_bits + 1)
        e_addr = Signal(32)
        e_cmd = Signal()            # this entry's write command was taken
        wbeat = Signal()            # a data beat is written (and hashed) in this cycle
        # by default the row of the next cycle's stage 1 (``h_row``'s next value)
        m.d.comb += rr_next.eq(Mux(wbeat, d_row, h_row))

        # ---- controller --------------------------------------------------------------------
        m.d.comb += r_chk_addr.eq(self.wr_base + ins.res_chk_off * bb)
        pixels_issued = Signal(16)     # drain commands issued in this mtile
        wcmds_issued = Signal(17)
        wcmds_total = Signal(32)       # write commands issued by this instruction
        wcmds_done = Signal(32)
        res_issued = Signal()
        res_phase = Signal()           # the residual rows of this mtile are streaming in
        join_done = Signal(init=1)     # all groups of this mtile left the join
        contiguous = Signal()
        m.d.comb += contiguous.eq((ins.out_stride == cfg.lanes_pad) & (ins.n_mtiles == 1))

        with m.If(self.wr_done):
            m.d.sync += wcmds_done.eq(wcmds_done + 1)

        # join-side counters (reset at each mtile start)
        j_pix = Signal(16)
        j_grp = Signal(range(wg + 1))
        rows_filled = Signal(17)
        rw_pix = Signal(17)
        rw_beat = Signal(12)          # beat of the residual pixel (res_beats <= 4095)
        r_win = Signal(12)            # the mtile's residual window: its first beat
        mtile_go = Signal()           # pulses when a new mtile's drain phase starts
        # params_addr + t * block_bytes, stepped per mtile (no multiplier: block_bytes is not a
        # power of two)
        p_addr = Signal(32)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.instr.ready.eq(1)
                with m.If(self.instr.valid):
                    m.d.sync += [ins.eq(self.instr.payload), t.eq(0),
                                 out_end.eq(new.out_addr + last_pix * new.out_stride
                                            + new.n_mtiles * cfg.lanes_pad),
                                 p_addr.eq(self.instr.payload.params_addr),
                                 wcmds_total.eq(0), wcmds_done.eq(0)]
                    m.d.comb += chk_start.eq(1)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                bad = ((ins.n_mtiles == 0) | (ins.pixels == 0) |
                       (ins.pixels > cfg.acc_depth) |
                       (ins.res_en & (ins.res_beats == 0)) |
                       (ins.out_stride[:(bb - 1).bit_length()] != 0) |
                       (ins.out_addr[:(bb - 1).bit_length()] != 0) |
                       (ins.params_addr[:(bb - 1).bit_length()] != 0) |
                       (ins.lut_en & (ins.lut_addr[:(bb - 1).bit_length()] != 0)) |
                       (ins.res_addr[:(bb - 1).bit_length()] != 0) |
                       (ins.vpool & ((VP == 0) | (ins.vp_cols == 0) | (ins.vp_h == 0) |
                                     (ins.vp_pixels == 0) |
                                     # a row of one entry: its read would not see the write
                                     # of the cycle before (no forwarding)
                                     ((ins.vp_cols == 1) if wg == 1 else 0))))
                with m.If(bad):
                    m.d.sync += self.error.eq(1)
                    m.next = "HALT"
                with m.Elif(protect):
                    m.d.sync += [self.err_protect.eq(1), self.err_addr.eq(ins.out_addr)]
                    m.next = "HALT"
                with m.Elif(ins.lut_en):
                    m.next = "LUT_CMD"
                with m.Else():
                    m.next = "PARAMS_CMD"
            # the lookup table (2**act_bits bytes, CRC trailer) into the post-processing unit;
            # it is idle: the previous STORE ended when its last write was acknowledged
            with m.State("LUT_CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(ins.lut_addr),
                    self.rd_cmd.p.beats.eq(lut_beats + lut_trailer_beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [lbeat.eq(0), pfirst.eq(1), tbeat.eq(0)]
                    m.next = "LUT"
            with m.State("LUT"):
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1),
                             pcrc.valid.eq(self.rd_data.valid),
                             self.lut_wr.valid.eq(self.rd_data.valid),
                             self.lut_wr.p.addr.eq(lbeat),
                             self.lut_wr.p.data.eq(self.rd_data.payload)]
                with m.If(self.rd_data.valid):
                    m.d.sync += [pfirst.eq(0), lbeat.eq(lbeat + 1)]
                    with m.If(lbeat == lut_beats - 1):
                        m.next = "LUT_TRAILER"
            with m.State("LUT_TRAILER"):
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1)]
                with m.If(self.rd_data.valid):
                    m.d.sync += tbeat.eq(tbeat + 1)
                    with m.If((tbeat == 0) & (self.rd_data.payload[:32] != pcrc.crc)):
                        m.d.sync += [self.err_lut.eq(1), self.err_addr.eq(ins.lut_addr)]
                        m.next = "HALT"
                    with m.Elif(tbeat == lut_trailer_beats - 1):
                        m.next = "PARAMS_CMD"
            with m.State("PARAMS_CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.p.addr.eq(p_addr),
                    self.rd_cmd.p.beats.eq(param_beats + trailer_beats),
                ]
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [entry.eq(0), part.eq(0), pfirst.eq(1), tbeat.eq(0)]
                    m.next = "PARAMS"
            with m.State("PARAMS"):
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1),
                             pcrc.valid.eq(self.rd_data.valid)]
                with m.If(self.rd_data.valid):
                    m.d.sync += pfirst.eq(0)
                    m.d.sync += shreg.eq(Cat(shreg[B:], self.rd_data.payload))
                    with m.If(part == lp_beats_per_entry - 1):
                        m.d.comb += [
                            pw.addr.eq(entry // W),
                            pw.en.eq(1 << (entry % W)),
                        ]
                        lp_in = LaneParams(Cat(shreg[B:], self.rd_data.payload))
                        for k in range(W):
                            m.d.comb += [pw.data[k].bias.eq(lp_in.bias),
                                         pw.data[k].mult.eq(lp_in.mult),
                                         pw.data[k].res_mult.eq(lp_in.res_mult),
                                         pw.data[k].shift.eq(lp_in.shift),
                                         pw.data[k].pos_lo.eq(lp_in.res_pos),
                                         pw.data[k].no_lut.eq(lp_in.no_lut)]
                        m.d.sync += r_win.eq(lp_in.res_win)
                        if res_row_beats > 1:
                            # the lane's beat within the window
                            m.d.comb += [rpw.addr.eq(pw.addr), rpw.en.eq(pw.en)]
                            for k in range(W):
                                m.d.comb += rpw.data[k].eq(
                                    (lp_in.res_pos[bsel:] - lp_in.res_win)[:rbits])
                        m.d.sync += [part.eq(0), entry.eq(entry + 1)]
                        with m.If(entry == cfg.lanes_pad - 1):
                            m.next = "TRAILER"
                    with m.Else():
                        m.d.sync += part.eq(part + 1)
            with m.State("TRAILER"):
                # the CRC register holds the block's CRC from the cycle after its last beat
                m.d.comb += [self.busy.eq(1), self.rd_data.ready.eq(1)]
                with m.If(self.rd_data.valid):
                    m.d.sync += tbeat.eq(tbeat + 1)
                    with m.If((tbeat == 0) & (self.rd_data.payload[:32] != pcrc.crc)):
                        m.d.sync += [self.err_params.eq(1), self.err_addr.eq(p_addr)]
                        m.next = "HALT"
                    with m.Elif(tbeat == trailer_beats - 1):
                        m.next = "WAIT_BANK"
            with m.State("WAIT_BANK"):
                m.d.comb += [self.busy.eq(1), self.done_in.ready.eq(~ins.pool)]
                with m.If(ins.pool):
                    # pooling results stream in directly: no bank, no drain commands
                    m.d.sync += [pixels_issued.eq(ins.pixels), wcmds_issued.eq(0),
                                 res_issued.eq(~ins.res_en)]
                    m.d.comb += mtile_go.eq(1)
                    m.next = "DRAIN"
                with m.Elif(self.done_in.valid):
                    with m.If(self.done_in.payload != g[0]):
                        m.d.sync += self.error.eq(1)
                        m.next = "HALT"
                    with m.Else():
                        m.d.sync += [pixels_issued.eq(0), wcmds_issued.eq(0),
                                     res_issued.eq(~ins.res_en)]
                        m.d.comb += mtile_go.eq(1)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                # residual read command (one for the whole tile)
                m.d.comb += [
                    self.rd_cmd.valid.eq(~res_issued),
                    self.rd_cmd.p.addr.eq(ins.res_addr),
                    self.rd_cmd.p.beats.eq(ins.pixels * ins.res_beats),
                ]
                with m.If(~res_issued & self.rd_cmd.ready):
                    m.d.comb += rsum.clear.eq(1)
                    m.d.sync += [res_issued.eq(1), res_phase.eq(1), r_addr.eq(ins.res_addr),
                                 r_left.eq(ins.res_chk_beats),
                                 r_cmd.eq(ins.res_chk_beats != 0)]
                # then the residual rows' check entries (the DMA takes the command once the
                # rows' command is issued)
                with m.If(res_issued):
                    m.d.comb += [self.rd_cmd.valid.eq(r_cmd), self.rd_cmd.p.addr.eq(r_chk_addr),
                                 self.rd_cmd.p.beats.eq(ins.res_chk_beats)]
                    with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
                        m.d.sync += r_cmd.eq(0)
                # drain commands
                m.d.comb += [
                    self.drain.valid.eq(pixels_issued != ins.pixels),
                    self.drain.p.bank.eq(g[0]),
                    self.drain.p.addr.eq(pixels_issued),
                ]
                with m.If(self.drain.valid & self.drain.ready):
                    m.d.sync += pixels_issued.eq(pixels_issued + 1)
                # write commands
                n_wcmds = Mux(contiguous, 1, out_pix)
                m.d.comb += [
                    self.wr_cmd.valid.eq(wcmds_issued != n_wcmds),
                    self.wr_cmd.p.addr.eq(ins.out_addr + wcmds_issued * ins.out_stride
                                          + t * cfg.lanes_pad),
                    self.wr_cmd.p.beats.eq(Mux(contiguous, out_pix * groups, groups)),
                ]
                with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
                    m.d.sync += [wcmds_issued.eq(wcmds_issued + 1),
                                 wcmds_total.eq(wcmds_total + 1)]
                r_done = ~res_phase | ((r_left == 0) & ~r_cmd & ~rsum.hash_valid)
                if has_vp:                    # (without the array vp_bad is never set)
                    with m.If(vp_bad):
                        m.d.sync += self.error.eq(1)
                        m.next = "HALT"
                with (m.Elif if has_vp else m.If)(join_done & (pixels_issued == ins.pixels) &
                          (wcmds_issued == n_wcmds) & res_issued & r_done &
                          res_phase & ~rsum.ok &
                          (ins.res_chk_beats != 0)):
                    # the residual rows did not match their check entries: stop before the
                    # bank is released and the instruction completes (no reader of this
                    # STORE's output starts)
                    m.d.sync += [self.err_res.eq(1), self.err_addr.eq(ins.res_addr)]
                    m.next = "HALT"
                with m.Elif(join_done & (pixels_issued == ins.pixels) &
                            (wcmds_issued == n_wcmds) & res_issued & r_done):
                    m.d.sync += [self.drained.eq(self.drained + 1), g.eq(g + 1), t.eq(t + 1),
                                 p_addr.eq(p_addr + block_bytes),
                                 res_phase.eq(0)]
                    with m.If(t == ins.n_mtiles - 1):
                        m.next = "AFTER"
                    with m.Else():
                        m.next = "PARAMS_CMD"
            with m.State("AFTER"):
                # the check entries (when the STORE has them) once every data beat is hashed
                m.d.comb += self.busy.eq(1)
                if has_vp:                    # (without the array vp_bad is never set)
                    with m.If(vp_bad):
                        m.d.sync += self.error.eq(1)
                        m.next = "HALT"
                with (m.Elif if has_vp else m.If)(ins.chk_row_pixels == 0):
                    m.next = "WAIT_WRITES"
                with m.Elif(d_done & ~h_pend):
                    m.d.comb += [rw_en.eq(cur_valid), rw_addr.eq(cur_row), rw_data.eq(cur),
                                 rr_next.eq(0)]
                    m.d.sync += [cur_valid.eq(0), e_row.eq(0), e_cmd.eq(0),
                                 e_addr.eq(self.wr_base + ins.chk_off * bb)]
                    m.next = "CHK_WRITE"
            with m.State("CHK_WRITE"):
                # one write command for all entries when they are contiguous (chk_stride 1),
                # else one per entry; the range is checked against the arena before each
                m.d.comb += [self.busy.eq(1), chk_phase.eq(1),
                             rr_next.eq(e_row + (self.wr_data.valid & self.wr_data.ready))]
                e_beats = Mux(ins.chk_stride == 1, n_rows, 1)
                with m.If(~e_cmd & (Cat(e_addr, Const(0, 2)) + e_beats * bb > self.wr_limit)):
                    m.d.sync += [self.err_protect.eq(1), self.err_addr.eq(e_addr)]
                    m.next = "HALT"
                with m.Else():
                    m.d.comb += [self.wr_cmd.valid.eq(~e_cmd), self.wr_cmd.p.addr.eq(e_addr),
                                 self.wr_cmd.p.beats.eq(e_beats),
                                 self.wr_data.valid.eq(e_cmd),
                                 self.wr_data.payload.eq(rr_data)]
                    with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
                        m.d.sync += [e_cmd.eq(1), wcmds_total.eq(wcmds_total + 1)]
                    with m.If(self.wr_data.valid & self.wr_data.ready):
                        m.d.sync += [e_row.eq(e_row + 1),
                                     e_addr.eq(e_addr + ins.chk_stride * bb)]
                        with m.If(ins.chk_stride != 1):
                            m.d.sync += e_cmd.eq(0)
                        with m.If(e_row == n_rows - 1):
                            m.next = "WAIT_WRITES"
            with m.State("WAIT_WRITES"):
                m.d.comb += self.busy.eq(1)
                if has_vp:                    # (without the array vp_bad is never set)
                    with m.If(vp_bad):
                        m.d.sync += self.error.eq(1)
                        m.next = "HALT"
                with (m.Elif if has_vp else m.If)(wcmds_done == wcmds_total):
                    m.d.sync += self.done_count.eq(self.done_count + 1)
                    m.next = "IDLE"
            with m.State("HALT"):
                pass

        # ---- residual row writer -----------------------------------------------------------
        with m.If(mtile_go):
            m.d.sync += [rows_filled.eq(0), rw_pix.eq(0), rw_beat.eq(0)]
        j_pix_consumed = Signal(17)
        res_room = Signal()
        m.d.comb += res_room.eq(rw_pix - j_pix_consumed < 2)
        in_res_phase = Signal()
        # residual beats arrive on rd_data only after the residual command, in DRAIN (the
        # parameter beats of this mtile were all consumed in PARAMS before)
        # (every beat of a pixel is taken; only the window's beats are written)
        w_off = Signal(12)
        m.d.comb += w_off.eq(rw_beat - r_win)
        with m.If(res_phase & (rw_pix != ins.pixels)):
            m.d.comb += [in_res_phase.eq(1), self.rd_data.ready.eq(res_room)]
            m.d.comb += [
                rw.addr.eq(Cat(w_off[:max(1, (res_row_beats - 1).bit_length())], rw_pix[0])
                           if res_row_beats > 1 else rw_pix[0]),
                rw.data.eq(self.rd_data.payload),
                rw.en.eq(self.rd_data.valid & res_room & (rw_beat >= r_win) &
                         (w_off < res_row_beats)),
            ]
            with m.If(self.rd_data.valid & res_room):
                with m.If(rw_beat == ins.res_beats - 1):
                    m.d.sync += [rw_beat.eq(0), rw_pix.eq(rw_pix + 1),
                                 rows_filled.eq(rows_filled + 1)]
                with m.Else():
                    m.d.sync += rw_beat.eq(rw_beat + 1)

        # residual check: H(addr, beat) of every residual beat, then the entries after the rows
        r_acc = Signal()
        m.d.comb += r_acc.eq(in_res_phase & self.rd_data.valid & res_room)
        m.d.comb += [rsum.addr.eq(r_addr), rsum.beat.eq(self.rd_data.payload),
                     rsum.valid.eq(r_acc), rsum.entry.eq(self.rd_data.payload)]
        with m.If(r_acc):
            m.d.sync += r_addr.eq(r_addr + bb)
        with m.If(res_phase & (rw_pix == ins.pixels) & (r_left != 0)):
            m.d.comb += [self.rd_data.ready.eq(1), rsum.entry_valid.eq(self.rd_data.valid)]
            with m.If(self.rd_data.valid):
                m.d.sync += r_left.eq(r_left - 1)

        # ---- join: PE drain beats + params + residual -> post-processing -------------------
        row_ok = Signal()
        m.d.comb += row_ok.eq(~ins.res_en | (rows_filled > j_pix))
        jb = self.pp_in.payload
        join_ok = self.pp_in.ready & row_ok & ~join_done    # the join takes a source beat
        if Q == 1:
            pool_valid, pool_acc = self.pool_in.valid, self.pool_in.payload.acc
        else:
            # the pooling unit's beats are one group each: Q - 1 of them wait in ``pg_buf``,
            # the Q-th completes the join's beat (a pixel has wg * Q of them)
            pg_buf = Signal(data.ArrayLayout(signed(cfg.acc_bits), G * (Q - 1)))
            pg_n = Signal(range(Q))
            pool_valid = Signal()
            pool_acc = Signal(data.ArrayLayout(signed(cfg.acc_bits), W))
            m.d.comb += [pool_valid.eq(self.pool_in.valid & (pg_n == Q - 1)),
                         self.pool_in.ready.eq(ins.pool & ~join_done &
                                               ((pg_n != Q - 1) | join_ok))]
            for k in range(W):
                m.d.comb += pool_acc[k].eq(pg_buf[k] if k < G * (Q - 1)
                                           else self.pool_in.payload.acc[k - G * (Q - 1)])
            with m.If(self.pool_in.valid & self.pool_in.ready):
                m.d.sync += pg_n.eq(Mux(pg_n == Q - 1, 0, pg_n + 1))
                with m.Switch(pg_n):
                    for q in range(Q - 1):
                        with m.Case(q):
                            m.d.sync += [pg_buf[q * G + i].eq(self.pool_in.payload.acc[i])
                                         for i in range(G)]
        src_valid = Mux(ins.pool, pool_valid, self.dout.valid)
        m.d.comb += pr.addr.eq(j_grp)
        last_grp = j_grp == wg - 1
        # the join's position in the next cycle (its registers' next values, see below): the
        # row buffer's read ports read there, so that their data is the current position's
        join_step = Signal()
        n_grp = Signal.like(j_grp)
        n_pix0 = Signal()
        m.d.comb += [join_step.eq(self.pp_in.valid & self.pp_in.ready),
                     n_grp.eq(Mux(mtile_go | (join_step & last_grp), 0, j_grp + join_step)),
                     n_pix0.eq(~mtile_go & (j_pix[0] ^ (join_step & last_grp)))]
        # the beat written in this cycle, for a read port reading its address in this cycle (a
        # row's last beat is read as soon as it is written: the block RAM's read returns the
        # old contents then)
        wr_beat = Signal(B)
        m.d.sync += wr_beat.eq(rw.data)
        if res_row_beats > 1:
            m.d.comb += rpr.addr.eq(n_grp)
        for k in range(W):
            lp = pr.data[k]
            raddr = Cat(rpr.data[k], n_pix0) if res_row_beats > 1 else n_pix0
            hit = Signal(name=f"res_hit{k}")
            m.d.comb += rports[k].addr.eq(raddr)
            m.d.sync += hit.eq(rw.en & (rw.addr == raddr))
            if bsel:
                byte = Mux(hit, wr_beat.word_select(lp.pos_lo, 8),
                           rports[k].data.word_select(lp.pos_lo, 8))
            else:
                byte = Mux(hit, wr_beat[:8], rports[k].data[:8])
            # offset-binary (``res_offset``): u - 2**(a-1) is u's low a bits with the MSB
            # inverted, read as a-bit two's complement
            ob = Cat(byte[:cfg.act_bits - 1], ~byte[cfg.act_bits - 1])
            m.d.comb += [
                jb.acc[k].eq(Mux(ins.pool, pool_acc[k], self.dout.payload.acc[k])),
                jb.bias[k].eq(lp.bias),
                jb.mult[k].eq(lp.mult),
                jb.shift[k].eq(lp.shift),
                jb.res_mult[k].eq(lp.res_mult),
                jb.res[k].eq(Mux(ins.res_signed,
                                 Mux(ins.res_offset, ob.as_signed(), byte.as_signed()),
                                 byte.as_unsigned())),
                jb.lut[k].eq(ins.lut_en & ~lp.no_lut),
            ]
        last_pix = j_pix == ins.pixels - 1
        m.d.comb += [
            jb.res_en.eq(ins.res_en),
            jb.relu.eq(ins.relu),
            jb.last.eq(last_grp & last_pix),
            self.pp_in.valid.eq(src_valid & row_ok & ~join_done),
            self.dout.ready.eq(join_ok & ~ins.pool),
        ]
        if Q == 1:
            m.d.comb += self.pool_in.ready.eq(join_ok & ins.pool)
        with m.If(mtile_go):
            m.d.sync += [j_pix.eq(0), j_grp.eq(0), join_done.eq(0), j_pix_consumed.eq(0)]
        with m.Elif(self.pp_in.valid & self.pp_in.ready):
            with m.If(last_grp):
                m.d.sync += [j_grp.eq(0), j_pix.eq(j_pix + 1),
                             j_pix_consumed.eq(j_pix_consumed + 1)]
                with m.If(last_pix):
                    m.d.sync += join_done.eq(1)
            with m.Else():
                m.d.sync += j_grp.eq(j_grp + 1)

        # ---- post-processing output -> DMA write data ----------------------------------------
        # (Q > 1: the Q beats of a post-processing output, or of a written pooled one, leave
        # one a cycle from a shift register, ``ser_a``; a second one, ``ser_b``, takes the next
        # output meanwhile, so that ``o_ready`` is a flip-flop: no path from the write
        # channel's ready into the join and the vertical pooling)
        if Q == 1:
            o_valid, o_data, o_ready = self.wr_data.valid, self.wr_data.payload, \
                self.wr_data.ready
        else:
            o_valid, o_data, o_ready = Signal(), Signal(B * Q), Signal()
            a_full, a_idx, a_buf = Signal(), Signal(range(Q)), Signal(B * Q)
            b_full, b_buf = Signal(), Signal(B * Q)
            a_free = Signal()         # ser_a is empty or sends its last beat in this cycle
            m.d.comb += [o_ready.eq(~b_full),
                         a_free.eq(~a_full | (self.wr_data.ready & (a_idx == Q - 1)
                                              & ~chk_phase))]
            with m.If(~chk_phase):
                m.d.comb += [self.wr_data.valid.eq(a_full),
                             self.wr_data.payload.eq(a_buf[:B])]
                with m.If(self.wr_data.valid & self.wr_data.ready):
                    m.d.sync += [a_idx.eq(a_idx + 1), a_buf.eq(a_buf[B:])]
            with m.If(a_free):
                with m.If(b_full):
                    m.d.sync += [a_full.eq(1), a_idx.eq(0), a_buf.eq(b_buf), b_full.eq(0)]
                with m.Elif(o_valid):
                    m.d.sync += [a_full.eq(1), a_idx.eq(0), a_buf.eq(o_data)]
                with m.Else():
                    m.d.sync += a_full.eq(0)
            with m.Elif(o_valid & o_ready):
                m.d.sync += [b_full.eq(1), b_buf.eq(o_data)]
        if VP:
            vp_valid, vp_data, vp_ready = self._vpool(m, ins, out_pix, vp_bad, chk_start)
        with m.If(~chk_phase):
            if VP:
                with m.If(ins.vpool):
                    m.d.comb += [
                        o_valid.eq(vp_valid),
                        o_data.eq(vp_data),
                        vp_ready.eq(o_ready),
                    ]
                with m.Else():
                    m.d.comb += [
                        o_valid.eq(self.pp_out.valid),
                        o_data.eq(self.pp_out.payload),
                        self.pp_out.ready.eq(o_ready),
                    ]
            else:
                m.d.comb += [
                    o_valid.eq(self.pp_out.valid),
                    o_data.eq(self.pp_out.payload),
                    self.pp_out.ready.eq(o_ready),
                ]

        # ---- output check: H(addr, beat) of every data beat, summed per output row -----------
        m.d.comb += wbeat.eq(self.wr_data.valid & self.wr_data.ready & ~chk_phase)
        m.d.comb += [hsum.addr.eq(d_addr), hsum.beat.eq(self.wr_data.payload),
                     hsum.valid.eq(wbeat), h_pend.eq(hsum.hash_valid)]
        with m.If(wbeat):
            m.d.sync += [h_row.eq(d_row), h_first.eq(d_t == 0)]
            pix_end = d_g == groups - 1
            mt_end = pix_end & (d_pix == out_pix - 1)
            with m.If(mt_end):
                m.d.sync += [d_g.eq(0), d_col.eq(0), d_row.eq(0), d_pix.eq(0), d_t.eq(d_t + 1),
                             d_mbase.eq(d_mbase + cfg.lanes_pad),
                             d_paddr.eq(d_mbase + cfg.lanes_pad),
                             d_addr.eq(d_mbase + cfg.lanes_pad)]
                with m.If(d_t == 0):
                    m.d.sync += n_rows.eq(d_row + 1)
                with m.If(d_t == ins.n_mtiles - 1):
                    m.d.sync += d_done.eq(1)
            with m.Elif(pix_end):
                m.d.sync += [d_g.eq(0), d_pix.eq(d_pix + 1),
                             d_paddr.eq(d_paddr + ins.out_stride),
                             d_addr.eq(d_paddr + ins.out_stride)]
                with m.If(d_col == ins.chk_row_pixels - 1):
                    m.d.sync += [d_col.eq(0), d_row.eq(d_row + 1)]
                with m.Else():
                    m.d.sync += d_col.eq(d_col + 1)
            with m.Else():
                m.d.sync += [d_g.eq(d_g + 1), d_addr.eq(d_addr + bb)]
        with m.If(chk_start):
            m.d.sync += [d_g.eq(0), d_col.eq(0), d_row.eq(0), d_pix.eq(0), d_t.eq(0),
                         d_done.eq(0), cur_valid.eq(0),
                         d_mbase.eq(self.instr.payload.out_addr),
                         d_paddr.eq(self.instr.payload.out_addr),
                         d_addr.eq(self.instr.payload.out_addr)]
        # stage 1: add the hash to its row's running sum (``cur``; other rows in the table)
        with m.If(h_pend):
            with m.If(cur_valid & (h_row == cur_row)):
                m.d.sync += cur.eq(cur + hsum.hash)
            with m.Else():
                m.d.comb += [rw_en.eq(cur_valid), rw_addr.eq(cur_row), rw_data.eq(cur)]
                m.d.sync += [cur.eq(Mux(h_first, 0, rr_data) + hsum.hash), cur_row.eq(h_row),
                             cur_valid.eq(1)]
        return m

    def _vpool(self, m, ins, out_pix, vp_bad, chk_start):
        """The vertical max pooling stage between ``pp_out`` and the DMA write data (see the
        module docstring); returns the written beats' stream (valid, data, ready)."""
        cfg = self.config
        Q = cfg.post_groups
        # Q groups a beat and an entry: the array's words are Q entries (Q beats) wide
        B = cfg.axi_data_width * Q
        G = cfg.post_lanes * Q
        groups = cfg.lanes_pad // G
        VP = cfg.vpool_entries // Q
        ebits = max(1, (VP - 1).bit_length())
        m.submodules.vrow = vrow = Memory(shape=B, depth=VP, init=[],
                                          attrs={"ram_style": "block"})
        vw = vrow.write_port()
        vr = vrow.read_port(domain="sync")
        # position of the beat at pp_out: group, column, pixel of the mtile, image row, entry
        o_g = Signal(range(groups + 1))
        o_col = Signal(12)
        o_pix = Signal(16)
        o_y = Signal(12)
        o_e = Signal(ebits + 1)
        o_eb = Signal(ebits + 1)       # the mtile's first entry
        o_w = Signal(17)               # written pixels of the mtile (beats leaving stage 1)
        # stage 1: the beat, its flags, the array's entry (read in the cycle it is taken)
        s1_valid, s1_v = Signal(), Signal(B)
        s1_first, s1_odd, s1_write, s1_e = Signal(), Signal(), Signal(), Signal(ebits)
        s1_pend = Signal()             # s1 is the last group of a written pixel
        s1_mend = Signal()             # s1 is the mtile's last beat
        # stage 2: the written beat
        s2_valid, s2_data = Signal(), Signal(B)
        ready = Signal()
        mx = Signal(B)
        for k in range(G):
            a, b = vr.data.word_select(k, 8), s1_v.word_select(k, 8)
            m.d.comb += mx.word_select(k, 8).eq(Mux(s1_first | (b > a), b, a))
        adv1 = Signal()
        m.d.comb += adv1.eq(s1_valid & (~s1_write | ~s2_valid | ready))
        take = Signal()
        m.d.comb += [take.eq(self.pp_out.valid & (~s1_valid | adv1) & ins.vpool),
                     vr.addr.eq(o_e[:ebits]), vr.en.eq(take),
                     vw.addr.eq(s1_e), vw.data.eq(Mux(s1_odd, s1_v, mx)), vw.en.eq(adv1)]
        with m.If(ins.vpool):
            m.d.comb += self.pp_out.ready.eq(~s1_valid | adv1)
        with m.If(ready):
            m.d.sync += s2_valid.eq(0)
        with m.If(adv1):
            m.d.sync += s1_valid.eq(0)
            with m.If(s1_write):
                m.d.sync += [s2_valid.eq(1), s2_data.eq(mx)]
            with m.If(s1_write & s1_pend):
                m.d.sync += o_w.eq(o_w + 1)
            with m.If(s1_mend):
                m.d.sync += o_w.eq(0)
                with m.If(o_w + (s1_write & s1_pend) != out_pix):
                    m.d.sync += vp_bad.eq(1)
        wr = (o_y[0] | (o_y == ins.vp_h - 1))
        with m.If(take):
            with m.If(o_e >= VP):
                m.d.sync += vp_bad.eq(1)
            pix_end = o_g == groups - 1
            m.d.sync += [s1_valid.eq(1), s1_v.eq(self.pp_out.payload), s1_first.eq(o_y == 0),
                         s1_odd.eq(o_y[0]), s1_write.eq(wr), s1_e.eq(o_e[:ebits]),
                         s1_pend.eq(pix_end), s1_mend.eq(pix_end & (o_pix == ins.pixels - 1))]
            with m.If(pix_end & (o_pix == ins.pixels - 1)):
                m.d.sync += [o_g.eq(0), o_col.eq(0), o_pix.eq(0), o_y.eq(ins.vp_y0),
                             o_e.eq(o_e + 1), o_eb.eq(o_e + 1)]
            with m.Elif(pix_end & (o_col == ins.vp_cols - 1)):
                m.d.sync += [o_g.eq(0), o_col.eq(0), o_pix.eq(o_pix + 1), o_y.eq(o_y + 1),
                             o_e.eq(o_eb)]
            with m.Elif(pix_end):
                m.d.sync += [o_g.eq(0), o_col.eq(o_col + 1), o_pix.eq(o_pix + 1),
                             o_e.eq(o_e + 1)]
            with m.Else():
                m.d.sync += [o_g.eq(o_g + 1), o_e.eq(o_e + 1)]
        with m.If(chk_start):
            m.d.sync += [o_g.eq(0), o_col.eq(0), o_pix.eq(0), o_y.eq(self.instr.payload.vp_y0),
                         o_e.eq(0), o_eb.eq(0), o_w.eq(0), vp_bad.eq(0)]
        return s2_valid, s2_data, ready
