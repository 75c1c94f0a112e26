"""Test DUT for the Verilator harness: a small AXI4-Lite controlled DMA engine.

It has exactly the flat, Vivado-style top-level ports of the accelerator (``s_axil_*``,
``m_axi_*``, ``irq``, plus ``clk``/``rst`` from the ``sync`` domain), so the harness that runs it
runs the accelerator too. Three modes:

* ``MODE_COPY``: read ``BEATS`` beats from ``SRC`` and write them to ``DST``. Reads run ahead of
  writes through a FIFO of :data:`FIFO_DEPTH` beats; a read burst is issued only when the FIFO has
  room for all the beats in flight (so ``rready`` never stalls).
* ``MODE_FILL``: write ``BEATS`` beats of ``PATTERN`` (the 32-bit word repeated across the beat)
  to ``DST`` with byte strobes ``WSTRB``.
* ``MODE_CHECKSUM``: read ``BEATS`` beats from ``SRC`` and fold every 32-bit word, lowest first,
  into ``CHECKSUM``: ``c = rotl(c, 5) ^ word`` (:func:`checksum_reference`).

Bursts are INCR, ``min(remaining, MAXBURST, beats to the next 4 KiB boundary)`` beats long
(``MAXBURST`` 0 counts as 1), issued back to back while the memory accepts them (a new address
is loaded at the edge of the previous handshake), IDs 0. Every R beat is accepted at once
(``rready = 1`` in checksum mode, FIFO not full in copy mode); ``bready = 1``. The first non-OKAY
RRESP and BRESP are latched in ``STATUS``. ``irq`` is ``STATUS.DONE``, set the cycle after the
last response and cleared by writing ``CTRL.CLEAR``.

AXI4-Lite: AW and W are accepted together (``awready = wready = awvalid & wvalid & ~bvalid``),
B follows one cycle later; AR is accepted when no read response is pending
(``arready = ~rvalid``), R follows one cycle later. Unmapped addresses answer SLVERR (writes are
ignored, reads return 0). Writes honour ``wstrb``.

``faults=True`` builds a deliberately broken variant with a ``FAULT`` register whose bits make
the manager break one AXI rule (``FAULT_*``); with ``FAULT`` = 0 it behaves exactly like the good
engine. Without ``faults`` the ``FAULT`` address is unmapped.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import Out

from ilmpq.hdl.axi import AXI4LiteSignature, AXI4Signature, AXIBurst, AXIResp

__all__ = [
    "MemcpyEngine", "checksum_reference", "FIFO_DEPTH", "CSR_ADDR_WIDTH",
    "REG_CTRL", "REG_STATUS", "REG_SRC", "REG_DST", "REG_BEATS", "REG_MODE", "REG_PATTERN",
    "REG_MAXBURST", "REG_WSTRB", "REG_CHECKSUM", "REG_CYCLES", "REG_FAULT", "REG_ID",
    "CTRL_START", "CTRL_CLEAR", "STATUS_BUSY", "STATUS_DONE", "ID_VALUE",
    "MODE_COPY", "MODE_FILL", "MODE_CHECKSUM",
    "FAULT_NO_4K_SPLIT", "FAULT_DROP_ARVALID", "FAULT_UNSTABLE_ARADDR", "FAULT_EARLY_WLAST",
    "FAULT_ASSERT",
]

CSR_ADDR_WIDTH = 12
FIFO_DEPTH = 32

REG_CTRL = 0x00       #: W: bit 0 START (ignored while busy), bit 1 CLEAR (clears DONE / irq)
REG_STATUS = 0x04     #: R: bit 0 BUSY, bit 1 DONE, bits 5:4 first bad RRESP, 7:6 first bad BRESP
REG_SRC = 0x08        #: RW: source byte address (beat aligned)
REG_DST = 0x0C        #: RW: destination byte address (beat aligned)
REG_BEATS = 0x10      #: RW: number of beats to move
REG_MODE = 0x14       #: RW: MODE_*
REG_PATTERN = 0x18    #: RW: fill pattern
REG_MAXBURST = 0x1C   #: RW: longest burst in beats (9 bits; 0 counts as 1)
REG_WSTRB = 0x20      #: RW: byte strobes of fill beats (reset: all ones)
REG_CHECKSUM = 0x24   #: R: checksum of the last MODE_CHECKSUM run
REG_CYCLES = 0x28     #: R: cycles BUSY was high during the last run
REG_FAULT = 0x2C      #: RW (faults variant only): FAULT_* bits
REG_ID = 0x30         #: R: ID_VALUE

ID_VALUE = 0x11A7E57

CTRL_START = 1 << 0
CTRL_CLEAR = 1 << 1
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1

MODE_COPY = 0
MODE_FILL = 1
MODE_CHECKSUM = 2

FAULT_NO_4K_SPLIT = 1 << 0      #: bursts ignore the 4 KiB boundary
FAULT_DROP_ARVALID = 1 << 1     #: arvalid falls after one cycle without a handshake
FAULT_UNSTABLE_ARADDR = 1 << 2  #: araddr moves on while arvalid waits for arready
FAULT_EARLY_WLAST = 1 << 3      #: wlast one beat early (missing on single-beat bursts)
FAULT_ASSERT = 1 << 4           #: an Amaranth ``Assert`` in the design fails


def checksum_reference(data: bytes, *, init: int = 0) -> int:
    """The ``MODE_CHECKSUM`` fold of ``data`` (little-endian 32-bit words, lowest address first)."""
    if len(data) % 4:
        raise ValueError("checksum data must be whole 32-bit words")
    c = init
    for i in range(0, len(data), 4):
        w = int.from_bytes(data[i:i + 4], "little")
        c = (((c << 5) | (c >> 27)) & 0xFFFFFFFF) ^ w
    return c


def _flat(prefix: str, signature: wiring.Signature) -> dict:
    return {f"{prefix}{name}": member for name, member in signature.members.items()}


class MemcpyEngine(wiring.Component):
    """AXI4-Lite controlled copy/fill/checksum engine with flat accelerator-style ports.

    Parameters
    ----------
    data_width, addr_width, id_width : int
        ``m_axi`` widths (data 32, 64 or 128).
    faults : bool
        Build the broken variant with the ``FAULT`` register.
    """

    def __init__(self, *, data_width: int = 64, addr_width: int = 32, id_width: int = 4,
                 faults: bool = False):
        self.data_width = data_width
        self.addr_width = addr_width
        self.id_width = id_width
        self.faults = faults
        members = {}
        members.update(_flat("s_axil_", AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH).flip()))
        members.update(_flat("m_axi_", AXI4Signature(addr_width=addr_width,
                                                      data_width=data_width,
                                                      id_width=id_width)))
        members["irq"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        dw = self.data_width
        nbytes = dw // 8
        shift = nbytes.bit_length() - 1

        # ---- registers -------------------------------------------------------------------
        src = Signal(self.addr_width)
        dst = Signal(self.addr_width)
        beats = Signal(32)
        mode = Signal(2)
        pattern = Signal(32)
        maxburst = Signal(9, init=16)
        wstrb_reg = Signal(nbytes, init=(1 << nbytes) - 1)
        checksum = Signal(32)
        cycles = Signal(32)
        fault = Signal(5)
        busy = Signal()
        done = Signal()
        rerr = Signal(2)
        berr = Signal(2)

        # ---- AXI4-Lite subordinate -------------------------------------------------------
        wr_go = Signal()
        m.d.comb += [
            wr_go.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~self.s_axil_bvalid),
            self.s_axil_awready.eq(wr_go),
            self.s_axil_wready.eq(wr_go),
        ]
        wmask = Cat(*(self.s_axil_wstrb[i].replicate(8) for i in range(4)))

        def masked(reg):
            width = len(reg)
            new = (reg & ~wmask[:width]) | (self.s_axil_wdata[:width] & wmask[:width])
            return reg.eq(new)

        ctrl_start = Signal()
        ctrl_clear = Signal()
        writable = {REG_SRC: src, REG_DST: dst, REG_BEATS: beats, REG_MODE: mode,
                    REG_PATTERN: pattern, REG_MAXBURST: maxburst, REG_WSTRB: wstrb_reg}
        if self.faults:
            writable[REG_FAULT] = fault
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        with m.If(wr_go):
            m.d.sync += [self.s_axil_bvalid.eq(1), self.s_axil_bresp.eq(AXIResp.OKAY)]
            with m.Switch(self.s_axil_awaddr):
                with m.Case(REG_CTRL):
                    m.d.comb += [ctrl_start.eq(self.s_axil_wdata[0] & self.s_axil_wstrb[0]),
                                 ctrl_clear.eq(self.s_axil_wdata[1] & self.s_axil_wstrb[0])]
                for addr, reg in writable.items():
                    with m.Case(addr):
                        m.d.sync += masked(reg)
                with m.Default():
                    m.d.sync += self.s_axil_bresp.eq(AXIResp.SLVERR)

        readable = {
            REG_STATUS: Cat(busy, done, Const(0, 2), rerr, berr),
            REG_SRC: src, REG_DST: dst, REG_BEATS: beats, REG_MODE: mode, REG_PATTERN: pattern,
            REG_MAXBURST: maxburst, REG_WSTRB: wstrb_reg, REG_CHECKSUM: checksum,
            REG_CYCLES: cycles, REG_ID: Const(ID_VALUE, 32),
        }
        if self.faults:
            readable[REG_FAULT] = fault
        m.d.comb += self.s_axil_arready.eq(~self.s_axil_rvalid)
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        with m.If(self.s_axil_arvalid & ~self.s_axil_rvalid):
            m.d.sync += [self.s_axil_rvalid.eq(1), self.s_axil_rresp.eq(AXIResp.OKAY),
                         self.s_axil_rdata.eq(0)]
            with m.Switch(self.s_axil_araddr):
                for addr, value in readable.items():
                    with m.Case(addr):
                        m.d.sync += self.s_axil_rdata.eq(value)
                with m.Default():
                    m.d.sync += self.s_axil_rresp.eq(AXIResp.SLVERR)

        # ---- burst splitting ---------------------------------------------------------------
        maxb = Mux(maxburst == 0, 1, maxburst)

        def burst_beats(addr, remaining):
            to_4k = (0x1000 - addr[:12]) >> shift
            n = Mux(remaining < maxb, remaining, maxb)
            limit = Mux(fault[0], 256, to_4k) if self.faults else to_4k
            return Mux(n < limit, n, limit)[:9]

        # ---- read side -------------------------------------------------------------------
        fifo = m.submodules.fifo = SyncFIFO(width=dw, depth=FIFO_DEPTH)
        rd_addr = Signal(self.addr_width)
        rd_rem = Signal(32)
        rd_inflight = Signal(16)
        n_rd = Signal(9)
        rd_issue = Signal()
        r_hs = Signal()
        m.d.comb += [
            n_rd.eq(burst_beats(rd_addr, rd_rem)),
            rd_issue.eq(busy & (rd_rem != 0) & (~self.m_axi_arvalid | self.m_axi_arready)
                        & ((mode != MODE_COPY)
                           | (fifo.level + rd_inflight + n_rd <= FIFO_DEPTH))),
            r_hs.eq(self.m_axi_rvalid & self.m_axi_rready),
            self.m_axi_arsize.eq(shift),
            self.m_axi_arburst.eq(AXIBurst.INCR),
            self.m_axi_rready.eq(Mux(mode == MODE_COPY, fifo.w_rdy, 1)),
            fifo.w_data.eq(self.m_axi_rdata),
            fifo.w_en.eq(r_hs & (mode == MODE_COPY)),
        ]
        m.d.sync += rd_inflight.eq(rd_inflight + Mux(rd_issue, n_rd, 0) - r_hs)
        with m.If(rd_issue):
            m.d.sync += [
                self.m_axi_arvalid.eq(1), self.m_axi_araddr.eq(rd_addr),
                self.m_axi_arlen.eq(n_rd - 1),
                rd_addr.eq(rd_addr + (n_rd << shift)), rd_rem.eq(rd_rem - n_rd),
            ]
        with m.Elif(self.m_axi_arready):
            m.d.sync += self.m_axi_arvalid.eq(0)
        if self.faults:
            with m.Elif(fault[1]):
                m.d.sync += self.m_axi_arvalid.eq(0)
            with m.Elif(fault[2]):
                m.d.sync += self.m_axi_araddr.eq(self.m_axi_araddr + nbytes)

        fold = checksum
        for i in range(dw // 32):
            fold = fold.rotate_left(5) ^ self.m_axi_rdata[32 * i:32 * (i + 1)]
        with m.If(r_hs):
            with m.If(mode == MODE_CHECKSUM):
                m.d.sync += checksum.eq(fold)
            with m.If((rerr == 0) & (self.m_axi_rresp != AXIResp.OKAY)):
                m.d.sync += rerr.eq(self.m_axi_rresp)

        # ---- write side ------------------------------------------------------------------
        lens = m.submodules.lens = SyncFIFO(width=9, depth=4)
        wr_addr = Signal(self.addr_width)
        wr_rem = Signal(32)
        n_wr = Signal(9)
        wr_issue = Signal()
        b_out = Signal(16)
        w_cnt = Signal(9)
        w_hs = Signal()
        b_hs = Signal()
        is_last = Signal()
        m.d.comb += [
            n_wr.eq(burst_beats(wr_addr, wr_rem)),
            wr_issue.eq(busy & (wr_rem != 0) & (~self.m_axi_awvalid | self.m_axi_awready)
                        & lens.w_rdy),
            lens.w_en.eq(wr_issue),
            lens.w_data.eq(n_wr),
            self.m_axi_awsize.eq(shift),
            self.m_axi_awburst.eq(AXIBurst.INCR),
            self.m_axi_bready.eq(1),
            b_hs.eq(self.m_axi_bvalid & self.m_axi_bready),
            self.m_axi_wvalid.eq(lens.r_rdy & Mux(mode == MODE_COPY, fifo.r_rdy, 1)),
            self.m_axi_wdata.eq(Mux(mode == MODE_COPY, fifo.r_data,
                                    pattern.replicate(dw // 32))),
            self.m_axi_wstrb.eq(Mux(mode == MODE_COPY, (1 << nbytes) - 1, wstrb_reg)),
            is_last.eq(w_cnt + 1 == lens.r_data),
            w_hs.eq(self.m_axi_wvalid & self.m_axi_wready),
            fifo.r_en.eq(w_hs & (mode == MODE_COPY)),
            lens.r_en.eq(w_hs & is_last),
        ]
        if self.faults:
            m.d.comb += self.m_axi_wlast.eq(Mux(fault[3], w_cnt + 2 == lens.r_data, is_last))
            m.d.sync += Assert(~fault[4], "FAULT_ASSERT is set")
        else:
            m.d.comb += self.m_axi_wlast.eq(is_last)
        with m.If(w_hs):
            m.d.sync += w_cnt.eq(Mux(is_last, 0, w_cnt + 1))
        m.d.sync += b_out.eq(b_out + wr_issue - b_hs)
        with m.If(wr_issue):
            m.d.sync += [
                self.m_axi_awvalid.eq(1), self.m_axi_awaddr.eq(wr_addr),
                self.m_axi_awlen.eq(n_wr - 1),
                wr_addr.eq(wr_addr + (n_wr << shift)), wr_rem.eq(wr_rem - n_wr),
            ]
        with m.Elif(self.m_axi_awready):
            m.d.sync += self.m_axi_awvalid.eq(0)
        with m.If(b_hs & (berr == 0) & (self.m_axi_bresp != AXIResp.OKAY)):
            m.d.sync += berr.eq(self.m_axi_bresp)

        # ---- control ---------------------------------------------------------------------
        finished = Signal()
        m.d.comb += [
            finished.eq(busy & (rd_rem == 0) & ~self.m_axi_arvalid & (rd_inflight == 0)
                        & (wr_rem == 0) & ~self.m_axi_awvalid & ~lens.r_rdy & (b_out == 0)),
            self.irq.eq(done),
        ]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(finished):
            m.d.sync += [busy.eq(0), done.eq(1)]
        with m.If(ctrl_clear):
            m.d.sync += done.eq(0)
        with m.If(ctrl_start & ~busy):
            reads = (mode == MODE_COPY) | (mode == MODE_CHECKSUM)
            writes = (mode == MODE_COPY) | (mode == MODE_FILL)
            m.d.sync += [
                busy.eq(1), done.eq(0), cycles.eq(0), rerr.eq(0), berr.eq(0),
                rd_addr.eq(src), rd_rem.eq(Mux(reads, beats, 0)),
                wr_addr.eq(dst), wr_rem.eq(Mux(writes, beats, 0)),
            ]
            with m.If(mode == MODE_CHECKSUM):
                m.d.sync += checksum.eq(0)
        return m
