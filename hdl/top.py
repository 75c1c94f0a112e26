"""The accelerator top level: CSRs, fetch, the four units, PE array, buffers, DMA.

Ports are flat and named as Vivado's interface inference expects: ``s_axil_*`` (AXI4-Lite
subordinate, the CSRs), ``m_axi_*`` (AXI4 manager, the DMA), ``irq``; the clock and the
synchronous active-high reset come from the ``sync`` domain (``clk``, ``rst``).

Run control (registers in :mod:`ilmpq.hdl.regmap`): START clears the performance counters and
errors and starts the fetch unit; the run is done when END was fetched and every unit, every
queue and the DMA are idle. The first error (a DMA response or window violation, a bad weight
package, a bad instruction or check word, a lane-parameter CRC, a STORE outside the activation
arena, the watchdog) is latched into STATUS/ERR_INFO and aborts the run the
same way SOFT_RESET does: every unit is reset and the DMA finishes its outstanding transactions
without issuing new ones, then STATUS.done is set (with STATUS.error) and ``irq`` rises if
enabled. The wait is bounded by BUS_TIMEOUT: transactions still outstanding then are abandoned,
STATUS.bus_abandoned is set and START is ignored until the host clears it (after resetting the
interconnect). The performance counters count while STATUS.busy, the abort's drain included.
"""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, flipped

from .axi import AXI4LiteSignature, AXI4Signature
from .compute import ComputeUnit
from .config import HWConfig
from .csr import CSRBank
from .dma import MultiPortDMA
from .fetch import Fetch
from .isa import Compute, LoadRows, LoadWeights, Store
from .loaders import ActLoader, WeightLoader
from .pe_array import PEArray
from .pool import PoolUnit
from .postproc import PostProc
from .regmap import CSR_ADDR_WIDTH, accelerator_regmap
from .status import ErrorCode
from .store import StoreUnit
from .weight_buffer import WeightBuffer

__all__ = ["Accelerator", "READ_CLIENTS", "read_clients", "axi_port_prefix"]

#: DMA read clients, in arbitration order.
READ_CLIENTS = ("fetch", "act", "weights", "store")


def read_clients(config: HWConfig) -> tuple[str, ...]:
    """The DMA read clients of a build, in arbitration order: :data:`READ_CLIENTS`, then
    ``"act_b"`` (the second half of a striped activation load) with ``act_ports`` 2."""
    return READ_CLIENTS + (("act_b",) if config.act_ports == 2 else ())
_QUEUE_DEPTH = 2


def axi_port_prefix(port: int) -> str:
    """Flat port prefix of AXI manager port ``port``: ``m_axi`` for port 0, then ``m_axi1``..."""
    return "m_axi" if port == 0 else f"m_axi{port}"


def _flat_members(prefix: str, sig: wiring.Signature, flip: bool) -> dict:
    out = {}
    for name, member in sig.members.items():
        member = member.flip() if flip else member
        out[f"{prefix}_{name}"] = member
    return out


class Accelerator(wiring.Component):
    """The ILMPQ accelerator for one :class:`~ilmpq.hdl.config.HWConfig`.

    Members
    -------
    s_axil_* : AXI4-Lite subordinate (12-bit address, 32-bit data): the registers.
    m_axi_*, m_axi1_*, ... : AXI4 managers (``axi_data_width`` data, 32-bit address), one per
        ``config.axi_ports``: all DRAM traffic, clients placed by :data:`~.dma.CLIENT_PORTS`.
    irq : Out(1)
        ``CTRL.irq_en & STATUS.done``.
    """

    def __init__(self, config: HWConfig):
        self.config = config
        self.regmap = accelerator_regmap(config)
        self._axil = AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)
        self._axi = AXI4Signature(addr_width=config.axi_addr_width,
                                  data_width=config.axi_data_width,
                                  id_width=config.axi_id_width)
        members = {}
        members.update(_flat_members("s_axil", self._axil, flip=True))
        for p in range(config.axi_ports):
            members.update(_flat_members(axi_port_prefix(p), self._axi, flip=False))
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        cfg = self.config
        m = Module()

        # ---- CSRs --------------------------------------------------------------------------
        m.submodules.csr = csr = CSRBank(self.regmap)
        for name in self._axil.members:
            port = getattr(self, f"s_axil_{name}")
            inner = getattr(csr.bus, name)
            if self._axil.members[name].flow == Out:     # manager drives it
                m.d.comb += inner.eq(port)
            else:
                m.d.comb += port.eq(inner)
        f = csr.fields

        # ---- run control -------------------------------------------------------------------
        running = Signal()
        aborting = Signal()
        abort = Signal()          # one-cycle pulse: reset every unit
        start = Signal()
        m.d.comb += start.eq(f.ctrl.start & ~running & ~aborting
                             & ~f.status.bus_abandoned.value)
        err_code = Signal(ErrorCode)
        err_info = Signal(32)
        m.d.comb += [
            f.status.busy.eq(running | aborting),
            f.status.error.eq(err_code != ErrorCode.NONE),
            f.status.error_code.eq(err_code),
            f.err_info.info.eq(err_info),
            self.irq.eq(f.ctrl.irq_en & f.status.done.value),
        ]

        # ---- blocks ------------------------------------------------------------------------
        unit_reset = Signal()
        m.d.comb += unit_reset.eq(abort | start)

        def reset_wrapped(name, elab):
            m.submodules[name] = ResetInserter(unit_reset)(elab)
            return elab

        clients = read_clients(cfg)
        dma = MultiPortDMA(cfg, clients)
        m.submodules.dma = dma
        for p in range(cfg.axi_ports):
            for name in self._axi.members:
                port = getattr(self, f"{axi_port_prefix(p)}_{name}")
                inner = getattr(dma.bus[p], name)
                if self._axi.members[name].flow == Out:
                    m.d.comb += port.eq(inner)
                else:
                    m.d.comb += inner.eq(port)
        m.d.comb += [
            dma.win_base.eq(f.win_base.addr),
            dma.win_limit.eq(f.win_limit.addr),
            dma.bus_timeout.eq(f.bus_timeout.cycles),
            f.status.bus_abandoned.set.eq(dma.abandoned),
        ]

        fetch = reset_wrapped("fetch", Fetch(cfg))
        la = reset_wrapped("la", ActLoader(cfg))
        wl = reset_wrapped("wl", WeightLoader(cfg))
        cu = reset_wrapped("cu", ComputeUnit(cfg))
        su = reset_wrapped("su", StoreUnit(cfg))
        pe = reset_wrapped("pe", PEArray(cfg))
        pp = reset_wrapped("pp", PostProc(cfg))
        wb = WeightBuffer(cfg)
        m.submodules.wb = wb

        # instruction queues
        queues = {}
        for qname, layout, src, dst in (("q_la", LoadRows, fetch.la, la.instr),
                                         ("q_w", LoadWeights, fetch.w, wl.instr),
                                         ("q_c", Compute, fetch.c, cu.instr),
                                         ("q_s", Store, fetch.s, su.instr)):
            q = fifo.SyncFIFOBuffered(width=data.Layout.cast(layout).size, depth=_QUEUE_DEPTH)
            m.submodules[qname] = ResetInserter(unit_reset)(q)
            m.d.comb += [
                q.w_data.eq(src.payload.as_value()), q.w_en.eq(src.valid),
                src.ready.eq(q.w_rdy),
                dst.payload.eq(q.r_data), dst.valid.eq(q.r_rdy), q.r_en.eq(dst.ready),
            ]
            queues[qname] = q

        # fetch
        start_d = Signal()        # units are reset in the START cycle; fetch starts after it
        m.d.sync += start_d.eq(start)
        m.d.comb += [
            fetch.start.eq(start_d),
            fetch.prog_addr.eq(f.prog_addr.addr),
            fetch.prog_len.eq(f.prog_len.len),
            fetch.prog_tag.eq(f.prog_tag.tag),
        ]

        def dma_read(client: int, cmd, dat, *, data_only=False):
            port_cmd = dma.rd_cmd[client]
            port_dat = dma.rd_data[client]
            m.d.comb += [
                port_cmd.valid.eq(cmd.valid),
                port_cmd.payload.addr.eq(cmd.payload.addr),
                port_cmd.payload.beats.eq(cmd.payload.beats),
                cmd.ready.eq(port_cmd.ready),
            ]
            if dat is not None:
                m.d.comb += [
                    dat.valid.eq(port_dat.valid),
                    dat.payload.eq(port_dat.payload.data),
                    port_dat.ready.eq(dat.ready),
                ]

        dma_read(clients.index("fetch"), fetch.rd_cmd, fetch.rd_data)
        dma_read(clients.index("act"), la.rd_cmd, la.rd_data)
        dma_read(clients.index("weights"), wl.rd_cmd, wb.fill)
        dma_read(clients.index("store"), su.rd_cmd, su.rd_data)
        if cfg.act_ports == 2:
            dma_read(clients.index("act_b"), la.rd_cmd_b, la.rd_data_b)
        wbeat = Signal()
        m.d.comb += [
            wbeat.eq(wb.fill.valid & wb.fill.ready),
            wl.fill_beat.eq(wbeat),
            wl.pkg_end.eq(wb.pkg_accepted),
            wb.start.eq(wl.seq_load),
            wb.start_seq.eq(wl.seq_base),
            wb.clear.eq(unit_reset),
            # weight-package MAC (registers 0x080-0x09f)
            wb.mac_en.eq(f.mac_ctrl.enable),
            wb.mac_key.eq(Cat(*(getattr(f, f"mac_key{i}").key for i in range(4)))),
            wb.mac_nonce.eq(Cat(f.mac_nonce_lo.nonce, f.mac_nonce_hi.nonce)),
        ]

        # activation buffer
        act = Memory(shape=cfg.tn * 8, depth=cfg.act_depth, init=[])
        m.submodules.act_buf = act
        # a gathering LOAD_ROWS writes beat by beat (hdl/loaders.py): beat-wide write enables
        aw = act.write_port(granularity=cfg.axi_data_width) if la.wr_lanes > 1 \
            else act.write_port()
        ar = act.read_port()
        m.d.comb += [
            aw.addr.eq(la.wr_addr), aw.data.eq(la.wr_data), aw.en.eq(la.wr_en),
            ar.addr.eq(cu.rd_addr), ar.en.eq(cu.rd_en), cu.rd_data.eq(ar.data),
        ]

        # compute -> PE array
        m.d.comb += [
            pe.act.valid.eq(cu.beats.valid),
            pe.act.payload.data.eq(cu.beats.payload.data),
            pe.act.payload.addr.eq(cu.beats.payload.addr),
            pe.act.payload.bank.eq(cu.beats.payload.bank),
            pe.act.payload.first.eq(cu.beats.payload.first),
            pe.act.payload.swap.eq(cu.beats.payload.swap),
            pe.act.payload.last.eq(cu.beats.payload.last),
            cu.beats.ready.eq(pe.act.ready),
        ]
        wiring.connect(m, wb.wout, pe.wload)
        # compute -> pooling unit -> store unit
        pool = reset_wrapped("pool", PoolUnit(cfg))
        wiring.connect(m, cu.pool_beats, pool.beats)
        wiring.connect(m, pool.out, su.pool_in)

        # write protection: the store unit checks each STORE's range against the arena
        m.d.comb += [
            su.win_base.eq(f.win_base.addr), su.win_limit.eq(f.win_limit.addr),
            su.wr_base.eq(f.wr_base.addr), su.wr_limit.eq(f.wr_limit.addr),
            la.wr_base.eq(f.wr_base.addr),       # activation check entries (ACT_CRC)
        ]

        # unit counters
        m.d.comb += [
            cu.la_done.eq(la.done_count),
            cu.drained.eq(su.drained),
            la.c_done.eq(cu.done_count),
            la.s_done.eq(su.done_count),
        ]

        # PE array <-> store unit
        m.d.comb += [
            su.done_in.valid.eq(pe.done.valid),
            su.done_in.payload.eq(pe.done.payload),
            pe.done.ready.eq(su.done_in.ready),
            pe.drain.valid.eq(su.drain.valid),
            pe.drain.payload.bank.eq(su.drain.payload.bank),
            pe.drain.payload.addr.eq(su.drain.payload.addr),
            su.drain.ready.eq(pe.drain.ready),
            su.dout.valid.eq(pe.dout.valid),
            pe.dout.ready.eq(su.dout.ready),
        ]
        for k in range(cfg.post_lanes * cfg.post_groups):
            m.d.comb += su.dout.payload.acc[k].eq(pe.dout.payload.acc[k])

        # store unit <-> post-processing <-> DMA write
        jb = su.pp_in.payload
        if cfg.post_groups == 1:
            pin = pp.inp.payload
            m.d.comb += [
                pp.inp.valid.eq(su.pp_in.valid), su.pp_in.ready.eq(pp.inp.ready),
                pin.acc.eq(jb.acc), pin.bias.eq(jb.bias), pin.mult.eq(jb.mult),
                pin.shift.eq(jb.shift), pin.res_mult.eq(jb.res_mult), pin.res.eq(jb.res),
                pin.res_en.eq(jb.res_en), pin.relu.eq(jb.relu), pin.last.eq(jb.last),
                pin.lut.eq(jb.lut), pp.lut_wr.valid.eq(su.lut_wr.valid),
                pp.lut_wr.payload.eq(su.lut_wr.payload), su.lut_wr.ready.eq(pp.lut_wr.ready),
                su.pp_out.valid.eq(pp.out.valid), su.pp_out.payload.eq(pp.out.payload.data),
                pp.out.ready.eq(su.pp_out.ready),
            ]
        else:
            # post_groups units side by side, one group of the join's beat each (the same
            # valid/ready: they move in lockstep), the lookup table written into every one
            pps = [pp] + [reset_wrapped(f"pp{q}", PostProc(cfg))
                          for q in range(1, cfg.post_groups)]
            G, B = cfg.post_lanes, cfg.axi_data_width
            in_ready, out_valid = Signal(), Signal()
            m.d.comb += [in_ready.eq(Cat(*(u.inp.ready for u in pps)).all()),
                         out_valid.eq(Cat(*(u.out.valid for u in pps)).all()),
                         su.pp_in.ready.eq(in_ready), su.pp_out.valid.eq(out_valid),
                         su.lut_wr.ready.eq(pp.lut_wr.ready)]
            for q, u in enumerate(pps):
                pin = u.inp.payload
                m.d.comb += [
                    u.inp.valid.eq(su.pp_in.valid & in_ready),
                    pin.res_en.eq(jb.res_en), pin.relu.eq(jb.relu), pin.last.eq(jb.last),
                    pin.lut.eq(jb.lut[q * G:(q + 1) * G]),
                    u.lut_wr.valid.eq(su.lut_wr.valid), u.lut_wr.payload.eq(su.lut_wr.payload),
                    su.pp_out.payload[q * B:(q + 1) * B].eq(u.out.payload.data),
                    u.out.ready.eq(su.pp_out.ready & out_valid),
                ]
                for i in range(G):
                    for fld in ("acc", "bias", "mult", "shift", "res_mult", "res"):
                        m.d.comb += getattr(pin, fld)[i].eq(getattr(jb, fld)[q * G + i])
        m.d.comb += [
            dma.wr_cmd.valid.eq(su.wr_cmd.valid),
            dma.wr_cmd.payload.addr.eq(su.wr_cmd.payload.addr),
            dma.wr_cmd.payload.beats.eq(su.wr_cmd.payload.beats),
            su.wr_cmd.ready.eq(dma.wr_cmd.ready),
            dma.wr_data.valid.eq(su.wr_data.valid),
            dma.wr_data.payload.eq(su.wr_data.payload),
            su.wr_data.ready.eq(dma.wr_data.ready),
            su.wr_done.eq(dma.wr_done),
        ]

        # ---- completion, errors, abort -------------------------------------------------------
        queues_empty = Signal()
        m.d.comb += queues_empty.eq(~queues["q_la"].r_rdy & ~queues["q_w"].r_rdy &
                                    ~queues["q_c"].r_rdy & ~queues["q_s"].r_rdy)
        units_idle = Signal()
        m.d.comb += units_idle.eq(~la.busy & ~wl.busy & ~cu.busy & ~su.busy & ~fetch.busy &
                                  ~dma.busy & ~pool.busy)

        # watchdog: cycles without progress
        progress = Signal()
        m.d.comb += progress.eq(dma.rd_beats.any() | dma.wr_beat | (pe.act.valid & pe.act.ready) |
                                (pool.beats.valid & pool.beats.ready) |
                                (fetch.la.valid & fetch.la.ready) |
                                (fetch.c.valid & fetch.c.ready))
        idle_cycles = Signal(32)
        with m.If(~running | progress):
            m.d.sync += idle_cycles.eq(0)
        with m.Else():
            m.d.sync += idle_cycles.eq(idle_cycles + 1)

        new_err = Signal(ErrorCode)
        new_info = Signal(32)
        unit_err = la.error | wl.error | cu.error | su.error | fetch.err_length
        with m.If(dma.error != ErrorCode.NONE):
            m.d.comb += [new_err.eq(dma.error), new_info.eq(dma.error_addr)]
        with m.Elif(wb.error != ErrorCode.NONE):
            m.d.comb += [new_err.eq(wb.error), new_info.eq(fetch.index)]
        with m.Elif(wl.err_truncated):          # a weight stream ended inside a package
            m.d.comb += [new_err.eq(ErrorCode.WPKG_LENGTH), new_info.eq(fetch.index)]
        with m.Elif(fetch.err_crc):
            m.d.comb += [new_err.eq(ErrorCode.INSTR_CRC), new_info.eq(fetch.index)]
        with m.Elif(fetch.err_mismatch):
            m.d.comb += [new_err.eq(ErrorCode.STORE_MISMATCH), new_info.eq(fetch.index)]
        with m.Elif(su.err_params):
            m.d.comb += [new_err.eq(ErrorCode.PARAMS_CRC), new_info.eq(su.err_addr)]
        with m.Elif(su.err_lut):
            m.d.comb += [new_err.eq(ErrorCode.LUT_CRC), new_info.eq(su.err_addr)]
        with m.Elif(su.err_protect):
            m.d.comb += [new_err.eq(ErrorCode.WRITE_PROTECT), new_info.eq(su.err_addr)]
        with m.Elif(la.err_act):
            m.d.comb += [new_err.eq(ErrorCode.ACT_CRC), new_info.eq(la.err_addr)]
        with m.Elif(su.err_res):
            m.d.comb += [new_err.eq(ErrorCode.ACT_CRC), new_info.eq(su.err_addr)]
        with m.Elif(fetch.err_opcode):
            m.d.comb += [new_err.eq(ErrorCode.INSTR_OPCODE), new_info.eq(fetch.index)]
        with m.Elif(fetch.err_overrun):
            m.d.comb += [new_err.eq(ErrorCode.PROGRAM_OVERRUN), new_info.eq(fetch.index)]
        with m.Elif(unit_err):
            m.d.comb += [new_err.eq(ErrorCode.INSTR_FIELD), new_info.eq(fetch.index)]
        with m.Elif((f.watchdog.cycles != 0) & (idle_cycles >= f.watchdog.cycles)):
            m.d.comb += [new_err.eq(ErrorCode.TIMEOUT), new_info.eq(fetch.index)]

        m.d.comb += f.status.done.set.eq(0)
        with m.If(start):
            m.d.sync += [running.eq(1), err_code.eq(ErrorCode.NONE), err_info.eq(0)]
        with m.Elif(f.ctrl.soft_reset & (running | ~aborting)):
            m.d.sync += [running.eq(0), aborting.eq(1), err_code.eq(ErrorCode.NONE),
                         err_info.eq(0)]
            m.d.comb += abort.eq(1)
        with m.Elif(running):
            with m.If(new_err != ErrorCode.NONE):
                m.d.sync += [err_code.eq(new_err), err_info.eq(new_info), running.eq(0),
                             aborting.eq(1)]
                m.d.comb += abort.eq(1)
            with m.Elif(fetch.ended & queues_empty & units_idle):
                m.d.sync += running.eq(0)
                m.d.comb += f.status.done.set.eq(1)
        # an abort lasts until the DMA has finished everything outstanding; its clear is a
        # pulse (held high, the DMA's clear would never end and busy never fall)
        m.d.comb += dma.clear.eq(abort)
        with m.If(aborting & ~abort & ~dma.busy):
            m.d.sync += aborting.eq(0)
            with m.If(err_code != ErrorCode.NONE):
                m.d.comb += f.status.done.set.eq(1)

        # ---- performance counters ------------------------------------------------------------
        # they count while STATUS.busy (running | aborting): the drain of an abort included
        def count(name, cond):
            ctr = getattr(f, name).count
            m.d.comb += [ctr.inc.eq(cond & (running | aborting)), ctr.clear.eq(start)]

        count("cycles", 1)
        count("pe_busy", pe.act.valid & pe.act.ready)
        count("stall_weight", cu.beats.valid & ~pe.act.ready)
        count("stall_act", cu.stall_act)
        count("stall_store", cu.stall_store)
        count("stall_dep", la.stall)
        for name, beats in (("bytes_read", dma.rd_beats), ("bytes_written", dma.wr_beat)):
            ctr = getattr(f, name).count
            m.d.comb += [ctr.inc.eq(Mux(running | aborting, beats * cfg.beat_bytes, 0)),
                         ctr.clear.eq(start)]
        count("instructions", (fetch.la.valid & fetch.la.ready) | (fetch.w.valid & fetch.w.ready)
              | (fetch.c.valid & fetch.c.ready) | (fetch.s.valid & fetch.s.ready))
        return m

