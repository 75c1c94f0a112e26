"""The Zynq-7000 system top: one PS7, the AXI3 adapters, and the accelerator.

:class:`ZynqSoC` is what ``ilmpq build`` hands to a board platform (:mod:`ilmpq.hdl.platforms`).
It holds exactly one ``PS7`` primitive (the Zynq processing system, instantiated directly, with
no Vivado block design) and :class:`ZynqFabric`, everything in the programmable logic::

      PS7 M_AXI_GP0 (AXI3, 32 b) --> AXI3ToAXI4Lite --> Accelerator.s_axil_*  (CSRs, 4 KiB)
      PS7 S_AXI_HP0 (AXI3, 64 b) <-- AXI4ToAXI3     <-- Accelerator.m_axi_*   (DMA port 0)
      PS7 S_AXI_HP1..3           <-- AXI4ToAXI3     <-- Accelerator.m_axi1_* ... (axi_ports > 1)
      PS7 IRQ_F2P[0]             <-- Accelerator.irq
      PS7 FCLK_CLK0 --> BUFG --> ``sync``;  FCLK_RESET0_N --> reset synchronizer --> ``sync`` reset

The AXI3 side is described by :class:`AXI3Signature` (the members of the AXI3 protocol: 4-bit
``AxLEN``, 2-bit ``AxLOCK``, ``WID``, no ``AxQOS``/``AxREGION``). The two adapters are plain
Amaranth components and are simulated on their own (``tests/test_soc.py``); the ``PS7`` itself
can only be elaborated for a Xilinx platform.

The processing system is *not* configured by the bitstream: its clocks, DDR and MIO are set by
the boot loader (FSBL, U-Boot, or the PYNQ image) before the bitstream is loaded. FCLK_CLK0
must run at the frequency the design was constrained for (``fclk_mhz``, 100 MHz by default),
and the HP ports in use (HP0 .. HP(axi_ports - 1)) must be in their 64-bit mode (the reset
default) and enabled in the PS configuration. See ``docs/boards.md``.
"""

from __future__ import annotations

from amaranth.build import ResourceError
from amaranth.hdl import Cat, ClockDomain, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqTypeError, IlmpqValueError
from .axi import AXI4LiteSignature, AXI4Signature, AXIBurst, AXIResp
from .config import HWConfig

__all__ = [
    "AXI3Signature", "AXI3ToAXI4Lite", "AXI4ToAXI3", "ZynqFabric", "ZynqSoC",
    "GP0_BASE", "GP0_ID_WIDTH", "HP_ID_WIDTH", "HP_DATA_WIDTH", "AXI3_MAX_BURST",
    "PS7_IRQ_F2P_WIDTH", "HP_PORTS",
]

#: Base address of the PS7 M_AXI_GP0 window; the accelerator's CSRs sit at its start.
GP0_BASE = 0x4000_0000
#: ID width of the PS7 M_AXI_GP0 manager port.
GP0_ID_WIDTH = 12
#: ID width and data width of the PS7 S_AXI_HP ports.
HP_ID_WIDTH = 6
HP_DATA_WIDTH = 64
#: Number of PS7 S_AXI_HP ports (HP0..HP3).
HP_PORTS = 4
#: Longest AXI3 burst (AxLEN is 4 bits).
AXI3_MAX_BURST = 16
#: Width of the PS7 ``IRQF2P`` input (16 shared peripheral interrupts + 4 private ones).
PS7_IRQ_F2P_WIDTH = 20


class AXI3Signature(wiring.Signature):
    """AXI3 interface, manager side (members named like :class:`~ilmpq.hdl.axi.AXI4Signature`).

    Differences from AXI4: ``awlen``/``arlen`` are 4 bits (bursts of at most 16 beats),
    ``awlock``/``arlock`` are 2 bits (``0b00`` normal, ``0b01`` exclusive, ``0b10`` locked), the
    write data channel carries ``wid``, and there is no ``awqos``/``arqos``/``awregion``/
    ``arregion``.

    Parameters
    ----------
    addr_width : int
    data_width : int
        32, 64 or 128.
    id_width : int
        1 to 16.
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 6):
        if data_width not in (32, 64, 128):
            raise IlmpqValueError(f"AXI3 data width must be 32, 64 or 128, not {data_width!r}")
        if not (isinstance(id_width, int) and 1 <= id_width <= 16):
            raise IlmpqValueError(f"AXI3 id width must be an integer in [1, 16], not "
                                  f"{id_width!r}")
        if not (isinstance(addr_width, int) and 12 <= addr_width <= 64):
            raise IlmpqValueError(f"AXI3 address width must be an integer in [12, 64], not "
                                  f"{addr_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(4),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(2),
                f"{ch}cache": Out(4), f"{ch}prot": Out(3),
                f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
        members.update({
            "wid": Out(id_width), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "wlast": Out(1), "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, AXI3Signature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __repr__(self):
        return (f"AXI3Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


def _worse(a, b):
    """The more severe of two AXI responses (OKAY < SLVERR < DECERR; EXOKAY is not produced
    by AXI4-Lite and ranks between OKAY and SLVERR)."""
    return Mux(b > a, b, a)


def _next_beat_addr(m: Module, addr, size, burst, length, width: int):
    """Address of the beat after ``addr`` in an AXI burst (AXI spec A3.4.1).

    INCR: the next size-aligned address; WRAP: the same, wrapped inside the
    ``(length + 1) << size`` bytes aligned container; FIXED: ``addr``. Only the low 12 bits
    are computed: an AXI burst never crosses a 4 KiB boundary, so the bits above stay.
    """
    if width > 12:
        low = _next_beat_addr(m, addr[:12], size, burst, length, 12)
        return Cat(low, addr[12:])
    step = Signal(width)
    lowmask = Signal(width)
    incr = Signal(width)
    wrap_bytes = Signal(width)
    wrap_mask = Signal(width)
    nxt = Signal(width)
    m.d.comb += [
        step.eq(Const(1, width) << size),
        lowmask.eq(step - 1),
        incr.eq((addr & ~lowmask) + step),
        wrap_bytes.eq((length + 1) << size),
        wrap_mask.eq(wrap_bytes - 1),
    ]
    with m.Switch(burst):
        with m.Case(AXIBurst.FIXED):
            m.d.comb += nxt.eq(addr)
        with m.Case(AXIBurst.WRAP):
            m.d.comb += nxt.eq((addr & ~wrap_mask) | (incr & wrap_mask))
        with m.Default():
            m.d.comb += nxt.eq(incr)
    return nxt


class AXI3ToAXI4Lite(wiring.Component):
    """AXI3 subordinate (32-bit data, any burst) to AXI4-Lite manager bridge.

    Every beat of an AXI3 burst becomes one AXI4-Lite transaction, in order, at the beat's
    address (INCR, WRAP and FIXED bursts, narrow sizes; ``wstrb`` is passed through, so a byte
    write stays a byte write). One write burst and one read burst are handled at a time; the two
    directions are independent. A write burst gets one B response, the most severe of its beats'
    (DECERR > SLVERR > OKAY). Exclusive accesses are not supported, and are answered ``OKAY``
    (which tells the manager the exclusive access failed), as AXI prescribes for such
    subordinates.

    Beat addresses follow AXI's rules; only their low 12 bits are computed, since a burst never
    crosses a 4 KiB boundary (one that does, illegally, wraps inside its 4 KiB page).

    Address decoding: with ``base`` set, a beat whose address is outside
    ``[base, base + 2**lite_addr_width)`` does not reach the AXI4-Lite side and gets ``DECERR``
    (a read returns 0), so a driver that uses the wrong base address sees bus errors instead of
    aliased registers. With ``base=None`` the upper address bits are ignored.

    Parameters
    ----------
    id_width : int
        AXI3 ID width (12 for the PS7 M_AXI_GP ports).
    addr_width : int
        AXI3 address width.
    lite_addr_width : int
        AXI4-Lite address width (the subordinate's window is ``2**lite_addr_width`` bytes).
    base : int or None
        Base of the window, a multiple of its size.

    Members
    -------
    axi3 : ``In(AXI3Signature(addr_width=addr_width, data_width=32, id_width=id_width))``
        ``awready``/``wready``/``arready`` and the response valids depend only on the bridge's
        state. ``wid`` is ignored: write data must not be interleaved between bursts (the PS7
        does not interleave), and ``wlast`` is ignored in favour of ``awlen``.
    axil : ``Out(AXI4LiteSignature(addr_width=lite_addr_width))``
        ``awvalid`` and ``wvalid`` rise together; ``araddr``/``awaddr`` carry the low
        ``lite_addr_width`` bits of the beat address, ``awprot``/``arprot`` the burst's.

    Timing: the AXI4-Lite ``arvalid`` (``awvalid``/``wvalid``) of a beat rises the cycle after
    the AXI3 AR handshake (W handshake) or after the previous beat's AXI4-Lite response, and the
    AXI3 ``rvalid`` (``bvalid``) the cycle after the AXI4-Lite R (last B) handshake. In front of
    :class:`~ilmpq.hdl.csr.CSRBank` a single read has ``rvalid`` 2 cycles after the AR
    handshake and a single write ``bvalid`` 3 cycles after the W handshake.
    """

    def __init__(self, *, id_width: int = GP0_ID_WIDTH, addr_width: int = 32,
                 lite_addr_width: int = 12, base: int | None = None):
        self._MustUse__silence = True     # until validated: no "unused" warning on errors
        if not (isinstance(lite_addr_width, int) and 2 <= lite_addr_width <= addr_width):
            raise IlmpqValueError(f"AXI3ToAXI4Lite lite_addr_width must be an integer in "
                                  f"[2, addr_width = {addr_width}], not {lite_addr_width!r}")
        if base is not None:
            window = 1 << lite_addr_width
            if not isinstance(base, int) or base < 0 or base % window or base >= 1 << addr_width:
                raise IlmpqValueError(
                    f"AXI3ToAXI4Lite base {base!r} must be a multiple of the window size "
                    f"({window:#x} bytes) inside the {addr_width}-bit address space")
        self.base = base
        self.lite_addr_width = lite_addr_width
        self._addr_width = addr_width
        self._MustUse__silence = False
        super().__init__({
            "axi3": In(AXI3Signature(addr_width=addr_width, data_width=32, id_width=id_width)),
            "axil": Out(AXI4LiteSignature(addr_width=lite_addr_width)),
        })

    def _in_window(self, addr):
        if self.base is None:
            return Const(1)
        law = self.lite_addr_width
        return addr[law:] == (self.base >> law)

    def elaborate(self, platform):
        m = Module()
        s = self.axi3
        lite = self.axil
        aw_ = self._addr_width

        # ---- writes ------------------------------------------------------------------------
        w_id = Signal.like(s.awid)
        w_addr = Signal(aw_)
        w_left = Signal(4)            # beats after the current one
        w_size = Signal(3)
        w_burst = Signal(2)
        w_prot = Signal(3)
        w_resp = Signal(2)
        w_data = Signal(32)
        w_strb = Signal(4)
        aw_sent = Signal()
        wd_sent = Signal()
        w_len = Signal(4)             # AWLEN of the burst (for WRAP)
        w_next = _next_beat_addr(m, w_addr, w_size, w_burst, w_len, aw_)

        m.d.comb += [
            lite.awaddr.eq(w_addr[:self.lite_addr_width]),
            lite.awprot.eq(w_prot),
            lite.wdata.eq(w_data),
            lite.wstrb.eq(w_strb),
            s.bid.eq(w_id),
            s.bresp.eq(w_resp),
        ]

        def w_advance(resp):
            m.d.sync += w_resp.eq(_worse(w_resp, resp))
            with m.If(w_left == 0):
                m.next = "RESP"
            with m.Else():
                m.d.sync += [w_addr.eq(w_next), w_left.eq(w_left - 1)]
                m.next = "DATA"

        with m.FSM(name="wr"):
            with m.State("IDLE"):
                m.d.comb += s.awready.eq(1)
                with m.If(s.awvalid):
                    m.d.sync += [
                        w_id.eq(s.awid), w_addr.eq(s.awaddr), w_left.eq(s.awlen),
                        w_len.eq(s.awlen), w_size.eq(s.awsize), w_burst.eq(s.awburst),
                        w_prot.eq(s.awprot), w_resp.eq(AXIResp.OKAY),
                    ]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += s.wready.eq(1)
                with m.If(s.wvalid):
                    m.d.sync += [w_data.eq(s.wdata), w_strb.eq(s.wstrb),
                                 aw_sent.eq(0), wd_sent.eq(0)]
                    with m.If(self._in_window(w_addr)):
                        m.next = "LITE"
                    with m.Else():
                        w_advance(AXIResp.DECERR)
            with m.State("LITE"):
                m.d.comb += [lite.awvalid.eq(~aw_sent), lite.wvalid.eq(~wd_sent)]
                aw_ok = aw_sent | lite.awready
                wd_ok = wd_sent | lite.wready
                m.d.sync += [aw_sent.eq(aw_ok), wd_sent.eq(wd_ok)]
                with m.If(aw_ok & wd_ok):
                    m.next = "LITE_B"
            with m.State("LITE_B"):
                m.d.comb += lite.bready.eq(1)
                with m.If(lite.bvalid):
                    w_advance(lite.bresp)
            with m.State("RESP"):
                m.d.comb += s.bvalid.eq(1)
                with m.If(s.bready):
                    m.next = "IDLE"

        # ---- reads -------------------------------------------------------------------------
        r_id = Signal.like(s.arid)
        r_addr = Signal(aw_)
        r_left = Signal(4)
        r_len = Signal(4)
        r_size = Signal(3)
        r_burst = Signal(2)
        r_prot = Signal(3)
        r_data = Signal(32)
        r_resp = Signal(2)
        r_next = _next_beat_addr(m, r_addr, r_size, r_burst, r_len, aw_)

        m.d.comb += [
            lite.araddr.eq(r_addr[:self.lite_addr_width]),
            lite.arprot.eq(r_prot),
            s.rid.eq(r_id),
            s.rdata.eq(r_data),
            s.rresp.eq(r_resp),
            s.rlast.eq(r_left == 0),
        ]
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                m.d.comb += s.arready.eq(1)
                with m.If(s.arvalid):
                    m.d.sync += [
                        r_id.eq(s.arid), r_addr.eq(s.araddr), r_left.eq(s.arlen),
                        r_len.eq(s.arlen), r_size.eq(s.arsize), r_burst.eq(s.arburst),
                        r_prot.eq(s.arprot),
                    ]
                    m.next = "ADDR"
            with m.State("ADDR"):
                with m.If(self._in_window(r_addr)):
                    m.d.comb += lite.arvalid.eq(1)
                    with m.If(lite.arready):
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += [r_data.eq(0), r_resp.eq(AXIResp.DECERR)]
                    m.next = "OUT"
            with m.State("DATA"):
                m.d.comb += lite.rready.eq(1)
                with m.If(lite.rvalid):
                    m.d.sync += [r_data.eq(lite.rdata), r_resp.eq(lite.rresp)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += s.rvalid.eq(1)
                with m.If(s.rready):
                    with m.If(r_left == 0):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [r_addr.eq(r_next), r_left.eq(r_left - 1)]
                        m.next = "ADDR"
        return m


class AXI4ToAXI3(wiring.Component):
    """AXI4 subordinate to AXI3 manager adapter for a manager whose bursts fit AXI3.

    Pure wiring on the address, read and response channels, plus the ``WID`` bookkeeping:

    * ``AxLEN``: the low 4 bits. The manager must never issue a burst of more than 16 beats
      (``max_burst <= 16``, checked at construction; the ilmpq DMA's bursts are at most
      ``HWConfig.max_burst``, which the configuration limits to 16).
    * ``AxLOCK``: AXI4 ``1`` (exclusive) becomes AXI3 ``0b01``; AXI3 locked transfers are never
      issued. ``AxQOS`` (and the absent ``AxREGION``) are dropped: AXI3 has none. The PS7 HP
      ports have separate QoS inputs, which :class:`ZynqSoC` ties to 0.
    * IDs are zero-extended from ``id_width`` to ``out_id_width`` (``BID``/``RID`` truncated
      back; the subordinate returns the IDs it was given).
    * ``WID``: AXI3 write data carries the ID of its burst. The ``AWID`` of every write burst
      enters a queue of depth ``max_writes_outstanding`` when the manager first presents it;
      W beats are forwarded with the ID at the head of the queue, which is dropped after the
      ``WLAST`` beat. A W beat whose burst address has not been presented yet waits for it (an
      AXI manager must present ``AWVALID`` without waiting for any ready, so this cannot
      deadlock); when the queue is full a new AW waits until a write burst's data is through.

    No valid on either side depends on a ready of the same channel, and payloads stay stable
    until their handshake as long as the manager's do. Apart from that the adapter adds no
    latency: every channel is combinational.

    Parameters
    ----------
    addr_width, data_width : int
    id_width : int
        ID width of the AXI4 side.
    out_id_width : int
        ID width of the AXI3 side (6 for the PS7 HP ports), at least ``id_width``.
    max_burst : int
        Longest burst the manager issues, at most 16.
    max_writes_outstanding : int
        Depth of the ``WID`` queue: write bursts whose address was presented and whose data is
        not through yet.

    Members
    -------
    axi4 : ``In(AXI4Signature(addr_width=, data_width=, id_width=id_width))``
    axi3 : ``Out(AXI3Signature(addr_width=, data_width=, id_width=out_id_width))``
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4,
                 out_id_width: int = HP_ID_WIDTH, max_burst: int = AXI3_MAX_BURST,
                 max_writes_outstanding: int = 4):
        self._MustUse__silence = True     # until validated
        if not (isinstance(max_burst, int) and 1 <= max_burst <= AXI3_MAX_BURST):
            raise IlmpqValueError(
                f"AXI4ToAXI3 max_burst = {max_burst!r}: an AXI3 burst is 1 to "
                f"{AXI3_MAX_BURST} beats, so the AXI4 manager's bursts must be too")
        if not (isinstance(out_id_width, int) and isinstance(id_width, int)
                and 1 <= id_width <= out_id_width):
            raise IlmpqValueError(
                f"AXI4ToAXI3 id_width = {id_width!r} must be an integer in [1, out_id_width = "
                f"{out_id_width!r}] (the AXI3 port's IDs must hold the manager's)")
        if not (isinstance(max_writes_outstanding, int) and 1 <= max_writes_outstanding <= 64):
            raise IlmpqValueError(f"AXI4ToAXI3 max_writes_outstanding must be an integer in "
                                  f"[1, 64], not {max_writes_outstanding!r}")
        self.max_burst = max_burst
        self.max_writes_outstanding = max_writes_outstanding
        self._MustUse__silence = False
        super().__init__({
            "axi4": In(AXI4Signature(addr_width=addr_width, data_width=data_width,
                                     id_width=id_width)),
            "axi3": Out(AXI3Signature(addr_width=addr_width, data_width=data_width,
                                      id_width=out_id_width)),
        })

    def elaborate(self, platform):
        m = Module()
        a4 = self.axi4
        a3 = self.axi3
        id_w = len(a4.awid)

        # read address and data: wiring
        m.d.comb += [
            a3.arid.eq(a4.arid), a3.araddr.eq(a4.araddr), a3.arlen.eq(a4.arlen[:4]),
            a3.arsize.eq(a4.arsize), a3.arburst.eq(a4.arburst), a3.arlock.eq(a4.arlock),
            a3.arcache.eq(a4.arcache), a3.arprot.eq(a4.arprot),
            a3.arvalid.eq(a4.arvalid), a4.arready.eq(a3.arready),
            a4.rid.eq(a3.rid[:id_w]), a4.rdata.eq(a3.rdata), a4.rresp.eq(a3.rresp),
            a4.rlast.eq(a3.rlast), a4.rvalid.eq(a3.rvalid), a3.rready.eq(a4.rready),
            a4.bid.eq(a3.bid[:id_w]), a4.bresp.eq(a3.bresp), a4.bvalid.eq(a3.bvalid),
            a3.bready.eq(a4.bready),
        ]

        # write address, with the AWID queue for WID
        m.submodules.wid_queue = q = SyncFIFO(width=len(a3.wid),
                                              depth=self.max_writes_outstanding)
        queued = Signal()     # the current AW's ID is in the queue already
        aw_go = Signal()
        m.d.comb += [
            aw_go.eq(queued | q.w_rdy),
            q.w_en.eq(a4.awvalid & ~queued),
            q.w_data.eq(a4.awid),
            a3.awid.eq(a4.awid), a3.awaddr.eq(a4.awaddr), a3.awlen.eq(a4.awlen[:4]),
            a3.awsize.eq(a4.awsize), a3.awburst.eq(a4.awburst), a3.awlock.eq(a4.awlock),
            a3.awcache.eq(a4.awcache), a3.awprot.eq(a4.awprot),
            a3.awvalid.eq(a4.awvalid & aw_go),
            a4.awready.eq(a3.awready & aw_go),
        ]
        with m.If(a4.awvalid & a4.awready):
            m.d.sync += queued.eq(0)
        with m.Elif(q.w_en & q.w_rdy):
            m.d.sync += queued.eq(1)

        # write data
        m.d.comb += [
            a3.wid.eq(q.r_data), a3.wdata.eq(a4.wdata), a3.wstrb.eq(a4.wstrb),
            a3.wlast.eq(a4.wlast),
            a3.wvalid.eq(a4.wvalid & q.r_rdy),
            a4.wready.eq(a3.wready & q.r_rdy),
            q.r_en.eq(a3.wvalid & a3.wready & a3.wlast),
        ]
        return m


def _connect_flat(m: Module, prefix: str, obj, iface, sig: wiring.Signature, *, manager: bool):
    """Connect the flat ports ``<prefix>_<member>`` of ``obj`` to interface ``iface``.

    ``manager``: ``obj`` is the manager of ``sig`` (its ``Out`` members drive ``iface``).
    """
    for name, member in sig.members.items():
        port = getattr(obj, f"{prefix}_{name}")
        inner = getattr(iface, name)
        if (member.flow == Out) == manager:
            m.d.comb += inner.eq(port)
        else:
            m.d.comb += port.eq(inner)


class ZynqFabric(wiring.Component):
    """Everything of :class:`ZynqSoC` in the programmable logic: the accelerator and its AXI3
    adapters, in the ``sync`` domain.

    Parameters
    ----------
    config : HWConfig
        ``axi_data_width`` must be 64 (the HP port width), ``axi_id_width`` at most 6.
    accelerator : wiring.Component, optional
        The accelerator (default: :class:`ilmpq.hdl.top.Accelerator` of ``config``); anything
        with the same flat ports ``s_axil_*``, ``m_axi_*``, ``irq``.
    busy_hold : int
        Cycles the ``busy`` output stays high after the last DMA activity (so a user LED
        visibly lights up; 2**22 is 42 ms at 100 MHz).

    Members
    -------
    gp0 : ``In(AXI3Signature(addr_width=32, data_width=32, id_width=12))``
        From the PS7 M_AXI_GP0 port. The CSR window is ``[GP0_BASE, GP0_BASE + 4 KiB)``;
        accesses elsewhere in the GP0 range get DECERR.
    hp0, hp1, ... : ``Out(AXI3Signature(addr_width=32, data_width=64, id_width=6))``
        To the PS7 S_AXI_HP0 .. HP(axi_ports - 1) ports: the accelerator's DMA ports
        ``m_axi_*``, ``m_axi1_*``, ... each through its own :class:`AXI4ToAXI3`.
    irq : Out(1)
        The accelerator's interrupt (level, active high).
    busy : Out(1)
        DMA activity: high while any AXI channel of any DMA port has a valid, and ``busy_hold``
        cycles after (the accelerator's ``STATUS.busy`` is not a port of the top level).
    """

    def __init__(self, config: HWConfig, *, accelerator=None, busy_hold: int = 1 << 22):
        self._MustUse__silence = True     # until validated
        if not isinstance(config, HWConfig):
            raise IlmpqTypeError(f"ZynqFabric needs an HWConfig, not {config!r}")
        if config.axi_data_width != HP_DATA_WIDTH:
            raise IlmpqValueError(
                f"HWConfig.axi_data_width = {config.axi_data_width} cannot drive a Zynq HP "
                f"port: the Zynq SoC top needs axi_data_width = {HP_DATA_WIDTH}")
        if config.axi_id_width > HP_ID_WIDTH:
            raise IlmpqValueError(
                f"HWConfig.axi_id_width = {config.axi_id_width} does not fit the Zynq HP "
                f"port's {HP_ID_WIDTH}-bit IDs: the Zynq SoC top needs axi_id_width <= "
                f"{HP_ID_WIDTH}")
        if not (isinstance(busy_hold, int) and busy_hold >= 1):
            raise IlmpqValueError(f"ZynqFabric busy_hold must be a positive integer, not "
                                  f"{busy_hold!r}")
        self.config = config
        self.busy_hold = busy_hold
        self._accelerator = accelerator
        self._MustUse__silence = False
        members = {
            "gp0": In(AXI3Signature(addr_width=32, data_width=32, id_width=GP0_ID_WIDTH))}
        for p in range(config.axi_ports):
            members[f"hp{p}"] = Out(AXI3Signature(addr_width=32, data_width=HP_DATA_WIDTH,
                                                  id_width=HP_ID_WIDTH))
        members.update({"irq": Out(1), "busy": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        from .regmap import CSR_ADDR_WIDTH

        cfg = self.config
        m = Module()
        acc = self._accelerator
        if acc is None:
            from .top import Accelerator
            acc = Accelerator(cfg)
        m.submodules.accelerator = acc

        m.submodules.gp0_bridge = bridge = AXI3ToAXI4Lite(
            id_width=GP0_ID_WIDTH, addr_width=32, lite_addr_width=CSR_ADDR_WIDTH, base=GP0_BASE)
        wiring.connect(m, wiring.flipped(self.gp0), bridge.axi3)
        _connect_flat(m, "s_axil", acc, bridge.axil,
                      AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH), manager=False)
        from .top import axi_port_prefix
        activity = []
        for p in range(cfg.axi_ports):
            hp = AXI4ToAXI3(
                addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                id_width=cfg.axi_id_width, out_id_width=HP_ID_WIDTH, max_burst=cfg.max_burst,
                max_writes_outstanding=cfg.max_reads_outstanding)
            m.submodules[f"hp{p}_adapter"] = hp
            wiring.connect(m, hp.axi3, wiring.flipped(getattr(self, f"hp{p}")))
            _connect_flat(m, axi_port_prefix(p), acc, hp.axi4,
                          AXI4Signature(addr_width=cfg.axi_addr_width,
                                        data_width=cfg.axi_data_width,
                                        id_width=cfg.axi_id_width), manager=True)
            activity += [hp.axi4.arvalid, hp.axi4.awvalid, hp.axi4.wvalid, hp.axi4.rvalid,
                         hp.axi4.bvalid]
        m.d.comb += self.irq.eq(acc.irq)

        # busy LED: DMA activity, stretched
        active = Signal()
        hold = Signal(range(self.busy_hold + 1))
        m.d.comb += active.eq(Cat(*activity).any())
        with m.If(active):
            m.d.sync += hold.eq(self.busy_hold)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        m.d.comb += self.busy.eq(active | (hold != 0))
        return m


class ZynqSoC(wiring.Component):
    """Zynq-7000 top level: one ``PS7`` instance and :class:`ZynqFabric`.

    * ``sync`` is FCLK_CLK0 through a ``BUFG``, constrained at ``fclk_mhz`` (on a platform);
      its reset is FCLK_RESET0_N, inverted and synchronized (asynchronous assertion,
      synchronous release).
    * PS7 M_AXI_GP0 (AXI3, 32-bit) drives the CSRs through :class:`AXI3ToAXI4Lite`; the CSR
      window is at :data:`GP0_BASE` (``0x4000_0000``), 4 KiB.
    * The DMA drives PS7 S_AXI_HP0 .. HP(axi_ports - 1) (AXI3, 64-bit), each through its own
      :class:`AXI4ToAXI3`; QoS inputs and the issue-capability controls are tied to 0.
      ``AxSIZE`` is 2 bits wide on the PS7 (at most 8-byte beats).
    * ``irq`` drives IRQ_F2P[0] (IRQ ID 61 on the GIC; level, active high).
    * With a platform that has a ``led`` resource, ``led`` 0 shows ``ZynqFabric.busy`` (DMA
      activity) and ``led`` 1 (if present) the interrupt line.

    The component has no ports: it is a complete design for ``platform.build``. Elaborating it
    without a platform (simulation) raises an error: the PS7 has no simulation model; simulate
    :class:`ZynqFabric` instead.

    Parameters
    ----------
    config : HWConfig
    fclk_mhz : float
        Frequency FCLK_CLK0 is constrained at (the boot loader must program the PS to it).
    accelerator : wiring.Component, optional
        See :class:`ZynqFabric`.
    """

    def __init__(self, config: HWConfig, *, fclk_mhz: float = 100.0, accelerator=None):
        self._MustUse__silence = True     # until validated
        if not (isinstance(fclk_mhz, (int, float)) and 10.0 <= fclk_mhz <= 250.0):
            raise IlmpqValueError(f"fclk_mhz = {fclk_mhz!r} is not allowed: the PS7 FCLK "
                                  f"clocks run from 10 to 250 MHz")
        self.config = config
        self.fclk_mhz = float(fclk_mhz)
        self.fabric = ZynqFabric(config, accelerator=accelerator,
                                 busy_hold=max(1, int(self.fclk_mhz * 1e6 * 0.05)))
        self._MustUse__silence = False
        super().__init__({})

    def elaborate(self, platform):
        if platform is None:
            self.fabric._MustUse__silence = True
            raise IlmpqValueError(
                "ZynqSoC contains a PS7, which has no simulation model: elaborate it for a "
                "board platform (ilmpq.hdl.platforms), or simulate ZynqFabric instead")
        m = Module()
        m.submodules.fabric = fab = self.fabric

        # clock and reset
        fclk = Signal(4)
        fclk_resetn = Signal(4)
        fclk0 = Signal()              # the PS7 output net, before the global buffer
        m.domains.sync = ClockDomain("sync")
        m.d.comb += fclk0.eq(fclk[0])
        m.submodules.fclk0_bufg = Instance("BUFG", i_I=fclk0, o_O=ClockSignal("sync"))
        platform.add_clock_constraint(fclk0, self.fclk_mhz * 1e6)
        m.submodules.reset_sync = ResetSynchronizer(~fclk_resetn[0], domain="sync")

        gp = fab.gp0
        ps7 = {
            "o_FCLKCLK": fclk,
            "o_FCLKRESETN": fclk_resetn,
            "i_FCLKCLKTRIGN": Const(0, 4),
            # M_AXI_GP0: the PS is the manager
            "i_MAXIGP0ACLK": ClockSignal("sync"),
            "o_MAXIGP0AWID": gp.awid, "o_MAXIGP0AWADDR": gp.awaddr,
            "o_MAXIGP0AWLEN": gp.awlen, "o_MAXIGP0AWSIZE": gp.awsize[:2],
            "o_MAXIGP0AWBURST": gp.awburst, "o_MAXIGP0AWLOCK": gp.awlock,
            "o_MAXIGP0AWCACHE": gp.awcache, "o_MAXIGP0AWPROT": gp.awprot,
            "o_MAXIGP0AWVALID": gp.awvalid, "i_MAXIGP0AWREADY": gp.awready,
            "o_MAXIGP0WID": gp.wid, "o_MAXIGP0WDATA": gp.wdata, "o_MAXIGP0WSTRB": gp.wstrb,
            "o_MAXIGP0WLAST": gp.wlast, "o_MAXIGP0WVALID": gp.wvalid,
            "i_MAXIGP0WREADY": gp.wready,
            "i_MAXIGP0BID": gp.bid, "i_MAXIGP0BRESP": gp.bresp, "i_MAXIGP0BVALID": gp.bvalid,
            "o_MAXIGP0BREADY": gp.bready,
            "o_MAXIGP0ARID": gp.arid, "o_MAXIGP0ARADDR": gp.araddr,
            "o_MAXIGP0ARLEN": gp.arlen, "o_MAXIGP0ARSIZE": gp.arsize[:2],
            "o_MAXIGP0ARBURST": gp.arburst, "o_MAXIGP0ARLOCK": gp.arlock,
            "o_MAXIGP0ARCACHE": gp.arcache, "o_MAXIGP0ARPROT": gp.arprot,
            "o_MAXIGP0ARVALID": gp.arvalid, "i_MAXIGP0ARREADY": gp.arready,
            "i_MAXIGP0RID": gp.rid, "i_MAXIGP0RDATA": gp.rdata, "i_MAXIGP0RRESP": gp.rresp,
            "i_MAXIGP0RLAST": gp.rlast, "i_MAXIGP0RVALID": gp.rvalid,
            "o_MAXIGP0RREADY": gp.rready,
        }
        for p in range(self.config.axi_ports):
            # S_AXI_HPp: the PL is the manager
            hp = getattr(fab, f"hp{p}")
            ps7.update({
                f"i_SAXIHP{p}ACLK": ClockSignal("sync"),
                f"i_SAXIHP{p}AWID": hp.awid, f"i_SAXIHP{p}AWADDR": hp.awaddr,
                f"i_SAXIHP{p}AWLEN": hp.awlen, f"i_SAXIHP{p}AWSIZE": hp.awsize[:2],
                f"i_SAXIHP{p}AWBURST": hp.awburst, f"i_SAXIHP{p}AWLOCK": hp.awlock,
                f"i_SAXIHP{p}AWCACHE": hp.awcache, f"i_SAXIHP{p}AWPROT": hp.awprot,
                f"i_SAXIHP{p}AWQOS": Const(0, 4),
                f"i_SAXIHP{p}AWVALID": hp.awvalid, f"o_SAXIHP{p}AWREADY": hp.awready,
                f"i_SAXIHP{p}WID": hp.wid, f"i_SAXIHP{p}WDATA": hp.wdata,
                f"i_SAXIHP{p}WSTRB": hp.wstrb,
                f"i_SAXIHP{p}WLAST": hp.wlast, f"i_SAXIHP{p}WVALID": hp.wvalid,
                f"o_SAXIHP{p}WREADY": hp.wready,
                f"o_SAXIHP{p}BID": hp.bid, f"o_SAXIHP{p}BRESP": hp.bresp,
                f"o_SAXIHP{p}BVALID": hp.bvalid,
                f"i_SAXIHP{p}BREADY": hp.bready,
                f"i_SAXIHP{p}ARID": hp.arid, f"i_SAXIHP{p}ARADDR": hp.araddr,
                f"i_SAXIHP{p}ARLEN": hp.arlen, f"i_SAXIHP{p}ARSIZE": hp.arsize[:2],
                f"i_SAXIHP{p}ARBURST": hp.arburst, f"i_SAXIHP{p}ARLOCK": hp.arlock,
                f"i_SAXIHP{p}ARCACHE": hp.arcache, f"i_SAXIHP{p}ARPROT": hp.arprot,
                f"i_SAXIHP{p}ARQOS": Const(0, 4),
                f"i_SAXIHP{p}ARVALID": hp.arvalid, f"o_SAXIHP{p}ARREADY": hp.arready,
                f"o_SAXIHP{p}RID": hp.rid, f"o_SAXIHP{p}RDATA": hp.rdata,
                f"o_SAXIHP{p}RRESP": hp.rresp,
                f"o_SAXIHP{p}RLAST": hp.rlast, f"o_SAXIHP{p}RVALID": hp.rvalid,
                f"i_SAXIHP{p}RREADY": hp.rready,
                f"i_SAXIHP{p}RDISSUECAP1EN": Const(0, 1),
                f"i_SAXIHP{p}WRISSUECAP1EN": Const(0, 1),
            })
        irq_f2p = Signal(PS7_IRQ_F2P_WIDTH)       # IRQ_F2P[0] <- irq, the others 0
        m.d.comb += irq_f2p.eq(fab.irq)
        ps7["i_IRQF2P"] = irq_f2p
        m.submodules.ps7 = Instance("PS7", **ps7)

        # I/O: the busy LED (and the interrupt line) if the board has user LEDs
        for index, sig in ((0, fab.busy), (1, fab.irq)):
            try:
                led = platform.request("led", index, dir="-")
            except ResourceError:  # the board has no such LED
                continue
            buf = io.Buffer("o", led)
            m.submodules[f"led{index}_buf"] = buf
            m.d.comb += buf.o.eq(sig)
        return m
