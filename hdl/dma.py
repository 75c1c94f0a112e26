"""AXI4 DMA engine: read clients and one write client on one AXI4 manager port.

The engine turns ``(addr, beats)`` commands into INCR bursts of at most ``max_burst`` beats that
never cross a 4 KiB boundary, keeps up to ``max_reads_outstanding`` read bursts in flight across
its read clients, and checks every command against an address window before anything of it is
issued. Errors (bad command, ``RRESP``/``BRESP`` not ``OKAY``, a subordinate breaking the AXI
protocol, a subordinate that stops answering) latch one :class:`~ilmpq.hdl.status.ErrorCode` and
stop the engine until a soft reset (``clear``). The full contract, with the timing of every path,
is in ``docs/dma.md``; the protocol checks and the bounded clear in ``docs/reliability.md``.

Protocol checks (the subordinate's side): every read burst's beats are counted, so the burst ends
on its RLAST or on its last expected beat, whichever comes first, and the engine's books stay
balanced whatever the subordinate sends:

* an R beat whose RID has no burst outstanding (an extra beat after RLAST) latches
  ``DMA_READ_EXTRA``; an RID the port never issues, ``DMA_READ_RID``; RLAST missing on the last
  expected beat or present on an earlier one, ``DMA_READ_RLAST``. The beat is dropped;
* a B with a BID other than ``AWID`` or with no write burst outstanding latches
  ``DMA_WRITE_BID``; a B for a burst whose W beats have not all been sent, ``DMA_WRITE_EARLY_B``.
  Either still answers the oldest write burst (the subordinate considers it done);
* the bus watchdog: a transaction outstanding (a request not accepted, W beats not accepted, R
  or B not received) with no handshake on any channel for ``bus_timeout`` cycles latches
  ``DMA_BUS_TIMEOUT``. A clear waits at most that many cycles for the outstanding bursts; then
  it abandons them (``abandoned`` strobe) and returns to idle anyway.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, Value, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqValueError
from .axi import AXI4Signature, AXIBurst, AXIResp
from .config import HWConfig
from .status import ErrorCode

__all__ = ["DMA", "MultiPortDMA", "CLIENT_PORTS", "client_ports", "MAX_COMMAND_BEATS",
           "BUS_TIMEOUT_BITS", "BUS_TIMEOUT_DEFAULT", "BUS_TIMEOUT_MAX", "CLEAR_SLACK",
           "command_layout", "read_beat_layout", "write_beat_shape"]

#: Longest command in beats (``2**20`` beats = 8 MiB on a 64-bit bus). Longer commands latch
#: :attr:`ErrorCode.DMA_LENGTH`.
MAX_COMMAND_BEATS = 2**20

#: Width of the ``beats`` field of a command (holds ``0 .. 2**21 - 1``; only ``1 ..
#: MAX_COMMAND_BEATS`` are accepted).
COMMAND_BEATS_BITS = 21

#: A burst may not cross a boundary of this many bytes (AXI rule).
AXI_BOUNDARY = 4096

#: ``ARCACHE``/``AWCACHE``: normal non-cacheable bufferable, what Xilinx recommends for HP ports.
AXI_CACHE = 0b0011

#: Width of the bus watchdog limit (the BUS_TIMEOUT register): up to ``2**24 - 1`` cycles.
BUS_TIMEOUT_BITS = 24

#: Reset value of BUS_TIMEOUT: 65536 cycles (0.44 ms at 150 MHz). A Zynq HP port answers a
#: request in well under a thousand cycles even behind the PS's DDR refresh and arbitration, so
#: a transaction that sees no handshake for this long is a dead subordinate, not a slow one;
#: and a soft reset that has to give up on the bus still returns within half a millisecond.
BUS_TIMEOUT_DEFAULT = 1 << 16

#: The bus watchdog limit used when BUS_TIMEOUT is 0 (the watchdog cannot be switched off: a
#: clear must end within a bounded time whatever the bus does).
BUS_TIMEOUT_MAX = (1 << BUS_TIMEOUT_BITS) - 1

#: A clear pulse at edge ``t`` makes ``busy`` low from edge ``t + limit + CLEAR_SLACK`` at the
#: latest, whatever the bus does (``limit`` = the bus watchdog limit); asserted exactly in
#: ``tests/hdl/test_dma.py``.
CLEAR_SLACK = 2


def command_layout(config: HWConfig) -> data.StructLayout:
    """Payload of a read or write command stream: byte ``addr`` and length in ``beats``."""
    return data.StructLayout({
        "addr": unsigned(config.axi_addr_width),
        "beats": unsigned(COMMAND_BEATS_BITS),
    })


def read_beat_layout(config: HWConfig) -> data.StructLayout:
    """Payload of a read client's data stream: one bus beat and ``last`` (command's last beat)."""
    return data.StructLayout({"data": unsigned(config.axi_data_width), "last": unsigned(1)})


def write_beat_shape(config: HWConfig, strobes: bool):
    """Payload of the write data stream: ``unsigned(data_width)``, or with ``strobes`` a struct of
    ``data`` and ``strb`` (one bit per byte, 1 = write the byte)."""
    if not strobes:
        return unsigned(config.axi_data_width)
    return data.StructLayout({"data": unsigned(config.axi_data_width),
                              "strb": unsigned(config.beat_bytes)})


def _eq(value, const) -> "Value":
    """``value == const``, written as a reduction for 0 so the Verilog has no ``!x`` on a vector
    (Verilator's WIDTHTRUNC warning)."""
    value = Value.cast(value)
    const = const.value if isinstance(const, enum.Enum) else int(const)
    return ~value.any() if const == 0 else value == const


class _CmdState(enum.Enum, shape=2):
    IDLE = 0    # ready for a command
    CHECK = 1   # command registered, checked this cycle
    ACTIVE = 2  # issuing bursts


class DMA(wiring.Component):
    """AXI4 DMA engine with ``n_read_clients`` read clients and one write client.

    Parameters
    ----------
    config : HWConfig
        Bus widths (``axi_*``), ``max_burst`` and ``max_reads_outstanding`` come from here.
    n_read_clients : int
        Number of read clients, ``1 .. 2**axi_id_width``. Client ``i`` issues its bursts with
        ``ARID = i``; read data is routed back by ``RID``.
    write_strobes : bool
        If true, the write data payload is ``{data, strb}`` and ``strb`` drives ``WSTRB``;
        otherwise the payload is the data alone and ``WSTRB`` is all ones.
    read_fifo_depth : int, optional
        Beats of each read client's receive FIFO; default ``config.read_fifo_beats``. A client
        streams at one beat per cycle when it covers the read latency plus two bursts
        (``docs/dma.md``).
    write_fifo_depth : int, optional
        Beats of the write data FIFO; default ``2 * max_burst``.
    max_writes_outstanding : int, optional
        Write bursts issued and not yet answered on B; default ``max_reads_outstanding``.

    Attributes
    ----------
    bus : Out(AXI4Signature)
        The AXI4 manager port. ``AxSIZE`` is the bus width, ``AxBURST = INCR``, ``AxCACHE =
        0b0011``, other sideband signals 0. ``AWID = 0``. ``RREADY`` and ``BREADY`` are always 1:
        a read burst is only issued when its client's FIFO has room for all of it.
    rd_cmd : In(stream.Signature(command_layout)).array(n_read_clients)
        Read commands. A client accepts a command when it has finished issuing the previous one;
        the command is checked in the next cycle and then split into bursts.
    rd_data : Out(stream.Signature(read_beat_layout)).array(n_read_clients)
        The beats of the client's commands in order; ``last`` marks each command's last beat.
    wr_cmd : In(stream.Signature(command_layout))
        Write commands.
    wr_data : In(stream.Signature(write_beat_shape))
        The beats to write, in command order. An ``AW`` is only issued once all the data of its
        burst is in the write FIFO, so ``W`` never waits for the client.
    wr_done : Out(1)
        One-cycle strobe per write command: all its ``B`` responses arrived ``OKAY`` (one cycle
        after the last ``B`` transfer). Never strobes once an error is latched.
    win_base, win_limit : In(axi_addr_width)
        The window ``[win_base, win_limit)`` (bytes) every command must lie in entirely.
        Sampled when a command is checked.
    halt : In(1)
        Stop issuing as if an error were latched, without latching one (another port of a
        :class:`MultiPortDMA` latched it). Responses of what is outstanding are still accepted
        and their errors are not latched while ``halt`` is high.
    bus_timeout : In(BUS_TIMEOUT_BITS)
        Bus watchdog limit in cycles; 0 means :data:`BUS_TIMEOUT_MAX` (it cannot be disabled).
    clear : In(1)
        Synchronous soft reset: stop issuing, drop queued commands and undelivered read data,
        finish the bursts already issued (send their ``W`` beats, accept every ``R``/``B``), then
        return to idle with ``error = NONE``. ``busy`` stays high until that has happened, at
        most ``limit + CLEAR_SLACK`` cycles after the pulse (``limit`` = the bus watchdog
        limit): if the bursts have not finished by then they are abandoned (``valid`` dropped
        without a handshake, their responses never awaited) and ``abandoned`` strobes.
    abandoned : Out(1)
        One-cycle strobe: a clear gave up on outstanding transactions. The interconnect must be
        reset before the port is used again (docs/reliability.md).
    error : Out(ErrorCode)
        The first error latched (see ``docs/dma.md`` for the priorities within one cycle).
        Nothing new is issued while it is not ``NONE``; outstanding responses are accepted.
    error_addr : Out(axi_addr_width)
        Address of the failing command, or of the failing burst for a response error.
    busy : Out(1)
        A command is being checked or issued, or a burst is outstanding, or a clear is pending.
    rd_beat, wr_beat : Out(1)
        Strobes: an ``R`` / ``W`` beat transferred on the bus this cycle (bytes moved = beats
        times ``beat_bytes``), for the performance counters.
    """

    def __init__(self, config: HWConfig, *, n_read_clients: int, write_strobes: bool = False,
                 read_fifo_depth: int | None = None, write_fifo_depth: int | None = None,
                 max_writes_outstanding: int | None = None):
        if not isinstance(config, HWConfig):
            raise IlmpqValueError(f"DMA needs an HWConfig, not {config!r}")
        n_ids = 2 ** config.axi_id_width
        if not (isinstance(n_read_clients, int) and 1 <= n_read_clients <= n_ids):
            raise IlmpqValueError(
                f"DMA n_read_clients = {n_read_clients!r} is not allowed: it must be an integer "
                f"in [1, {n_ids}] (one AXI ID each, axi_id_width = {config.axi_id_width})")
        mb = config.max_burst
        read_fifo_depth = (config.read_fifo_beats if read_fifo_depth is None
                           else read_fifo_depth)
        write_fifo_depth = 2 * mb if write_fifo_depth is None else write_fifo_depth
        for name, v in (("read_fifo_depth", read_fifo_depth),
                        ("write_fifo_depth", write_fifo_depth)):
            if not (isinstance(v, int) and v >= max(mb, 3)):
                raise IlmpqValueError(
                    f"DMA {name} = {v!r} is not allowed: it must be an integer >= "
                    f"max(max_burst, 3) = {max(mb, 3)} (a FIFO must hold a whole burst)")
        if max_writes_outstanding is None:
            max_writes_outstanding = config.max_reads_outstanding
        if not (isinstance(max_writes_outstanding, int) and 1 <= max_writes_outstanding <= 16):
            raise IlmpqValueError(
                f"DMA max_writes_outstanding = {max_writes_outstanding!r} is not allowed: it "
                f"must be an integer in [1, 16]")

        self.config = config
        self.n_read_clients = n_read_clients
        self.write_strobes = bool(write_strobes)
        self.read_fifo_depth = read_fifo_depth
        self.write_fifo_depth = write_fifo_depth
        self.max_writes_outstanding = max_writes_outstanding
        aw = config.axi_addr_width
        cmd = command_layout(config)
        super().__init__({
            "bus": Out(AXI4Signature(addr_width=aw, data_width=config.axi_data_width,
                                     id_width=config.axi_id_width)),
            "rd_cmd": In(stream.Signature(cmd)).array(n_read_clients),
            "rd_data": Out(stream.Signature(read_beat_layout(config))).array(n_read_clients),
            "wr_cmd": In(stream.Signature(cmd)),
            "wr_data": In(stream.Signature(write_beat_shape(config, self.write_strobes))),
            "wr_done": Out(1),
            "win_base": In(aw),
            "win_limit": In(aw),
            "halt": In(1),
            "bus_timeout": In(BUS_TIMEOUT_BITS),
            "clear": In(1),
            "abandoned": Out(1),
            "error": Out(ErrorCode),
            "error_addr": Out(aw),
            "busy": Out(1),
            "rd_beat": Out(1),
            "wr_beat": Out(1),
        })

    # -- helpers --------------------------------------------------------------------------------

    def _size_log2(self) -> int:
        return (self.config.beat_bytes - 1).bit_length()

    def _burst_len(self, m: Module, st, advance, addr, rem, name: str) -> Signal:
        """Length of the next burst, min(rem, max_burst, beats up to the next 4 KiB boundary),
        as a register valid while ``st`` is ACTIVE: computed from ``addr``/``rem`` in CHECK,
        and on every ``advance`` (a burst of this length issued; ``addr``/``rem`` move on by
        it) from the beats left to the boundary, kept in a register too. So the arbitration
        and the issue logic start from registers, not from an adder and two comparisons
        (timing, docs/performance.md)."""
        s = self._size_log2()
        boundary_beats = AXI_BOUNDARY >> s
        mb = self.config.max_burst

        def min_len(rem_v, to_4k):
            cap = Mux(to_4k < mb, to_4k, mb)
            return Mux(rem_v < cap, rem_v, cap)

        to_boundary = Signal(range(boundary_beats + 1), name=f"{name}_to_4k")
        length = Signal(range(mb + 1), name=f"{name}_len")
        first_to_4k = Signal(range(boundary_beats + 1), name=f"{name}_first_to_4k")
        next_to_4k = Signal(range(boundary_beats + 1), name=f"{name}_next_to_4k")
        left = Signal(range(boundary_beats + 1), name=f"{name}_left_to_4k")
        next_rem = Signal.like(rem, name=f"{name}_next_rem")
        m.d.comb += [
            first_to_4k.eq(boundary_beats - addr[s:12]),
            left.eq(to_boundary - length),
            next_to_4k.eq(Mux(_eq(left, 0), boundary_beats, left)),
            next_rem.eq(rem - length),
        ]
        with m.If(st == _CmdState.CHECK):
            m.d.sync += [to_boundary.eq(first_to_4k), length.eq(min_len(rem, first_to_4k))]
        with m.Elif(advance):
            m.d.sync += [to_boundary.eq(next_to_4k), length.eq(min_len(next_rem, next_to_4k))]
        return length

    def _check(self, m: Module, addr, beats, window_code, name: str):
        """Combinational command check; returns (bad, code)."""
        aw = self.config.axi_addr_width
        s = self._size_log2()
        end = Signal(aw + 2, name=f"{name}_end")
        m.d.comb += end.eq(addr + (beats << s))
        len_bad = _eq(beats, 0) | (beats > MAX_COMMAND_BEATS) | (end > (1 << aw))
        align_bad = addr[:s].any() if s > 0 else False
        win_bad = (addr < self.win_base) | (end > self.win_limit)
        bad = Signal(name=f"{name}_bad")
        code = Signal(ErrorCode, name=f"{name}_code")
        m.d.comb += bad.eq(len_bad | align_bad | win_bad)
        with m.If(len_bad):
            m.d.comb += code.eq(ErrorCode.DMA_LENGTH)
        with m.Elif(align_bad):
            m.d.comb += code.eq(ErrorCode.DMA_ALIGN)
        with m.Else():
            m.d.comb += code.eq(window_code)
        return bad, code

    # -- elaboration ----------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bus = self.bus
        n = self.n_read_clients
        aw = cfg.axi_addr_width
        s = self._size_log2()
        mb = cfg.max_burst
        max_ro = cfg.max_reads_outstanding

        clearing = Signal()
        stopped = Signal()
        quiet = Signal()        # nothing issued is outstanding on the bus
        flush = Signal()        # end of a clear: reset FIFOs and queues
        expired = Signal()      # the bus watchdog's limit is reached
        m.d.comb += [
            stopped.eq(~_eq(self.error, ErrorCode.NONE) | clearing | self.halt),
            flush.eq(clearing & (quiet | expired)),
            self.abandoned.eq(clearing & expired & ~quiet),
        ]
        len_bits = max(1, (mb - 1).bit_length())
        rd_flush = Signal()     # drop undelivered read data: at the start and the end of a clear
        m.d.comb += rd_flush.eq(self.clear | flush)
        with m.If(self.clear):
            m.d.sync += clearing.eq(1)
        with m.Elif(flush):
            m.d.sync += clearing.eq(0)

        # error sources in priority order: (condition, code, address)
        err_sources = []

        # constant AXI sideband signals
        m.d.comb += [
            bus.arsize.eq(s), bus.arburst.eq(AXIBurst.INCR), bus.arcache.eq(AXI_CACHE),
            bus.awsize.eq(s), bus.awburst.eq(AXIBurst.INCR), bus.awcache.eq(AXI_CACHE),
            bus.awid.eq(0),
            bus.rready.eq(1), bus.bready.eq(1),
        ]

        # ---------------------------------------------------------------- read side
        r_fire = Signal()
        r_done = Signal()       # a burst ended (its RLAST or its last expected beat)
        r_ok = Signal()
        m.d.comb += [
            r_fire.eq(bus.rvalid & bus.rready),
            r_ok.eq(_eq(bus.rresp, AXIResp.OKAY)),
            self.rd_beat.eq(r_fire),
        ]
        r_ends = []             # per client: its head burst ends with this beat
        r_last_addr = Signal(aw)    # address of the read burst that ended last (ERR_INFO)
        # R beat errors, per client; one R beat per cycle, so at most one client's are set and
        # they form one error source (one address mux instead of one per client and kind)
        r_strays, r_rlast_bads, r_resp_bads, r_heads = [], [], [], []

        rd_out = Signal(range(max_ro + 1))           # AR loaded, last R beat not yet received
        ar_load = Signal()
        ar_free = Signal()
        m.d.comb += ar_free.eq(~bus.arvalid | bus.arready)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += bus.arvalid.eq(0)

        req = Signal(n)
        clients = []
        for i in range(n):
            cmd = self.rd_cmd[i]
            out = self.rd_data[i]
            st = Signal(_CmdState, name=f"rd{i}_state")
            addr = Signal(aw, name=f"rd{i}_addr")
            rem = Signal(COMMAND_BEATS_BITS, name=f"rd{i}_rem")
            depth = self.read_fifo_depth
            space = Signal(range(depth + 1), init=depth, name=f"rd{i}_space")

            # receive FIFO {data, last}; flushed as soon as a clear starts and at its end
            fifo = ResetInserter(rd_flush)(
                SyncFIFOBuffered(width=cfg.axi_data_width + 1, depth=depth))
            m.submodules[f"rd{i}_fifo"] = fifo
            # bursts in flight for this client, in issue order: {addr, final, beats - 1}
            bq = ResetInserter(flush)(SyncFIFO(width=aw + 1 + len_bits, depth=max_ro))
            m.submodules[f"rd{i}_bursts"] = bq

            grant = Signal(name=f"rd{i}_grant")
            length = self._burst_len(m, st, grant, addr, rem, f"rd{i}")
            bad, code = self._check(m, addr, rem, ErrorCode.DMA_READ_WINDOW, f"rd{i}")
            err_sources.append(((st == _CmdState.CHECK) & bad, code, addr))

            clients.append((st, addr, rem, length, grant, bq))
            m.d.comb += req[i].eq((st == _CmdState.ACTIVE) & (space >= length))

            m.d.comb += cmd.ready.eq(_eq(st, _CmdState.IDLE) & ~stopped)
            with m.Switch(st):
                with m.Case(_CmdState.IDLE):
                    with m.If(cmd.valid & cmd.ready):
                        m.d.sync += [addr.eq(cmd.payload.addr), rem.eq(cmd.payload.beats),
                                     st.eq(_CmdState.CHECK)]
                with m.Case(_CmdState.CHECK):
                    with m.If(stopped | bad):
                        m.d.sync += st.eq(_CmdState.IDLE)
                    with m.Else():
                        m.d.sync += st.eq(_CmdState.ACTIVE)
                with m.Default():  # ACTIVE
                    with m.If(stopped):
                        m.d.sync += st.eq(_CmdState.IDLE)
                    with m.Elif(grant):
                        m.d.sync += [addr.eq(addr + (length << s)), rem.eq(rem - length)]
                        with m.If(rem == length):
                            m.d.sync += st.eq(_CmdState.IDLE)

            # receive side: route by RID, count the head burst's beats
            mine = Signal(name=f"rd{i}_rbeat")
            rcnt = Signal(len_bits, name=f"rd{i}_rcnt")     # beats of the head burst so far
            cnt_last = Signal(name=f"rd{i}_cnt_last")       # this is its last expected beat
            stray = Signal(name=f"rd{i}_stray")             # no burst outstanding: extra beat
            rlast_bad = Signal(name=f"rd{i}_rlast_bad")
            r_end = Signal(name=f"rd{i}_rend")
            head_addr = bq.r_data[:aw]
            m.d.comb += [
                mine.eq(r_fire & _eq(bus.rid, i)),
                cnt_last.eq(rcnt == bq.r_data[aw + 1:]),
                stray.eq(mine & ~bq.r_rdy),
                rlast_bad.eq(mine & bq.r_rdy & (bus.rlast ^ cnt_last)),
                r_end.eq(mine & bq.r_rdy & (bus.rlast | cnt_last)),
            ]
            r_ends.append(r_end)
            with m.If(flush | r_end):
                m.d.sync += rcnt.eq(0)
            with m.Elif(mine & bq.r_rdy):
                m.d.sync += rcnt.eq(rcnt + 1)
            with m.If(r_end):
                m.d.sync += r_last_addr.eq(head_addr)
            m.d.comb += [
                fifo.w_en.eq(mine & bq.r_rdy & ~rlast_bad & r_ok & ~stopped),
                fifo.w_data.eq(Cat(bus.rdata, cnt_last & bq.r_data[aw])),
                bq.r_en.eq(r_end),
                bq.w_en.eq(grant),
                bq.w_data.eq(Cat(addr, rem == length, length - 1)),
            ]
            r_strays.append(stray)
            r_rlast_bads.append(rlast_bad)
            r_resp_bads.append(mine & bq.r_rdy & ~r_ok)
            r_heads.append(head_addr)

            # client side
            pop = Signal(name=f"rd{i}_pop")
            m.d.comb += [
                out.valid.eq(fifo.r_rdy),
                out.payload.data.eq(fifo.r_data[:cfg.axi_data_width]),
                out.payload.last.eq(fifo.r_data[cfg.axi_data_width]),
                fifo.r_en.eq(out.ready),
                pop.eq(fifo.r_rdy & out.ready),
            ]
            with m.If(flush):
                m.d.sync += space.eq(depth)
            with m.Else():
                m.d.sync += space.eq(space - Mux(grant, length, 0) + pop)

        # round-robin arbitration of the AR channel
        can_issue = Signal()
        m.d.comb += can_issue.eq(ar_free & ~stopped & (rd_out < max_ro))
        last_grant = Signal(range(max(n, 2)), init=n - 1)   # client 0 goes first
        winner = Signal(range(max(n, 2)))
        with m.Switch(last_grant):
            for j in range(n):
                with (m.Case(j) if j < n - 1 else m.Default()):
                    order = [(j + k) % n for k in range(1, n + 1)]
                    for idx in reversed(order):      # the last assignment has priority
                        with m.If(req[idx]):
                            m.d.comb += winner.eq(idx)
        m.d.comb += ar_load.eq(can_issue & req.any())
        for i, (st, addr, rem, length, grant, bq) in enumerate(clients):
            m.d.comb += grant.eq(ar_load & _eq(winner, i))
        with m.If(ar_load):
            m.d.sync += [
                last_grant.eq(winner),
                bus.arvalid.eq(1),
                bus.arid.eq(winner),
            ]
            with m.Switch(winner):
                for i, (st, addr, rem, length, grant, bq) in enumerate(clients):
                    with (m.Case(i) if i < n - 1 else m.Default()):
                        m.d.sync += [bus.araddr.eq(addr), bus.arlen.eq(length - 1)]
        m.d.comb += r_done.eq(Cat(*r_ends).any())
        # the R beat's error: RID never issued, extra beat, RLAST, RRESP (in that order)
        rid_bad = (r_fire & (bus.rid >= n)) if n < 2 ** cfg.axi_id_width else False
        any_stray, any_rlast, any_resp = (Signal(name=nm) for nm in
                                          ("r_stray", "r_rlast_bad", "r_resp_bad"))
        m.d.comb += [any_stray.eq(Cat(*r_strays).any()), any_rlast.eq(Cat(*r_rlast_bads).any()),
                     any_resp.eq(Cat(*r_resp_bads).any())]
        r_head = Signal(aw)                 # the head burst of the beat's RID
        with m.Switch(bus.rid):
            for i in range(n):
                with (m.Case(i) if i < n - 1 else m.Default()):
                    m.d.comb += r_head.eq(r_heads[i])
        r_err_code = Signal(ErrorCode)
        with m.If(rid_bad):
            m.d.comb += r_err_code.eq(ErrorCode.DMA_READ_RID)
        with m.Elif(any_stray):
            m.d.comb += r_err_code.eq(ErrorCode.DMA_READ_EXTRA)
        with m.Elif(any_rlast):
            m.d.comb += r_err_code.eq(ErrorCode.DMA_READ_RLAST)
        with m.Else():
            m.d.comb += r_err_code.eq(Mux(bus.rresp == AXIResp.DECERR,
                                          ErrorCode.DMA_READ_DECERR,
                                          ErrorCode.DMA_READ_SLVERR))
        err_sources.append((rid_bad | any_stray | any_rlast | any_resp, r_err_code,
                            Mux(rid_bad | any_stray, r_last_addr, r_head)))
        m.d.sync += rd_out.eq(rd_out + ar_load - r_done)

        # ---------------------------------------------------------------- write side
        wst = Signal(_CmdState)
        waddr = Signal(aw)
        wrem = Signal(COMMAND_BEATS_BITS)
        aw_load = Signal()
        wlen = self._burst_len(m, wst, aw_load, waddr, wrem, "wr")
        wbad, wcode = self._check(m, waddr, wrem, ErrorCode.DMA_WRITE_WINDOW, "wr")
        err_sources.append(((wst == _CmdState.CHECK) & wbad, wcode, waddr))

        bpb = cfg.beat_bytes
        wwidth = cfg.axi_data_width + (bpb if self.write_strobes else 0)
        wdepth = self.write_fifo_depth
        wfifo = ResetInserter(flush)(SyncFIFOBuffered(width=wwidth, depth=wdepth))
        m.submodules.wr_fifo = wfifo
        mwo = self.max_writes_outstanding
        wlq = ResetInserter(flush)(SyncFIFO(width=len_bits, depth=mwo))  # lengths for W
        m.submodules.wr_lens = wlq
        wbq = ResetInserter(flush)(SyncFIFO(width=aw + 1, depth=mwo))     # {addr, final} for B
        m.submodules.wr_bursts = wbq

        # data in
        w_push = Signal()
        m.d.comb += [
            self.wr_data.ready.eq(wfifo.w_rdy & ~stopped),
            wfifo.w_en.eq(self.wr_data.valid & ~stopped),
            w_push.eq(self.wr_data.valid & self.wr_data.ready),
        ]
        if self.write_strobes:
            m.d.comb += wfifo.w_data.eq(Cat(self.wr_data.payload.data,
                                            self.wr_data.payload.strb))
        else:
            m.d.comb += wfifo.w_data.eq(self.wr_data.payload)
        w_avail = Signal(range(wdepth + 1))   # beats in the FIFO not claimed by an AW yet

        # command
        m.d.comb += self.wr_cmd.ready.eq(_eq(wst, _CmdState.IDLE) & ~stopped)
        m.d.comb += aw_load.eq((wst == _CmdState.ACTIVE) & ~stopped
                               & (~bus.awvalid | bus.awready)
                               & (w_avail >= wlen) & wbq.w_rdy & wlq.w_rdy)
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += bus.awvalid.eq(0)
        with m.Switch(wst):
            with m.Case(_CmdState.IDLE):
                with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
                    m.d.sync += [waddr.eq(self.wr_cmd.payload.addr),
                                 wrem.eq(self.wr_cmd.payload.beats), wst.eq(_CmdState.CHECK)]
            with m.Case(_CmdState.CHECK):
                with m.If(stopped | wbad):
                    m.d.sync += wst.eq(_CmdState.IDLE)
                with m.Else():
                    m.d.sync += wst.eq(_CmdState.ACTIVE)
            with m.Default():  # ACTIVE
                with m.If(stopped):
                    m.d.sync += wst.eq(_CmdState.IDLE)
                with m.Elif(aw_load):
                    m.d.sync += [waddr.eq(waddr + (wlen << s)), wrem.eq(wrem - wlen),
                                 bus.awvalid.eq(1), bus.awaddr.eq(waddr),
                                 bus.awlen.eq(wlen - 1)]
                    with m.If(wrem == wlen):
                        m.d.sync += wst.eq(_CmdState.IDLE)
        m.d.comb += [
            wlq.w_en.eq(aw_load), wlq.w_data.eq(wlen - 1),
            wbq.w_en.eq(aw_load), wbq.w_data.eq(Cat(waddr, wrem == wlen)),
        ]
        with m.If(flush):
            m.d.sync += w_avail.eq(0)
        with m.Else():
            m.d.sync += w_avail.eq(w_avail + w_push - Mux(aw_load, wlen, 0))

        # W channel: the beats of issued bursts, in order
        w_active = Signal()
        w_left = Signal(range(mb + 1))
        w_fire = Signal()
        m.d.comb += [
            bus.wvalid.eq(w_active & wfifo.r_rdy),
            bus.wdata.eq(wfifo.r_data[:cfg.axi_data_width]),
            bus.wlast.eq(w_left == 1),
            wfifo.r_en.eq(w_active & bus.wready),
            w_fire.eq(bus.wvalid & bus.wready),
            self.wr_beat.eq(w_fire),
        ]
        if self.write_strobes:
            m.d.comb += bus.wstrb.eq(wfifo.r_data[cfg.axi_data_width:])
        else:
            m.d.comb += bus.wstrb.eq((1 << bpb) - 1)
        with m.If((~w_active | (w_fire & bus.wlast)) & wlq.r_rdy):
            m.d.comb += wlq.r_en.eq(1)
            m.d.sync += [w_active.eq(1), w_left.eq(wlq.r_data + 1)]
        with m.Elif(w_fire & bus.wlast):
            m.d.sync += w_active.eq(0)
        with m.Elif(w_fire):
            m.d.sync += w_left.eq(w_left - 1)

        # B channel: a B answers the oldest write burst (one AWID); it is only legal once that
        # burst's last W beat has been sent (w_sent counts such bursts not yet answered)
        b_fire = Signal()
        b_ok = Signal()
        b_unexp = Signal()
        b_early = Signal()
        w_sent = Signal(range(mwo + 1))
        w_last_addr = Signal(aw)    # address of the write burst answered last (ERR_INFO)
        m.d.comb += [
            b_fire.eq(bus.bvalid & bus.bready),
            b_ok.eq(_eq(bus.bresp, AXIResp.OKAY)),
            wbq.r_en.eq(b_fire),
            b_unexp.eq(b_fire & (~_eq(bus.bid, 0) | ~wbq.r_rdy)),
            b_early.eq(b_fire & wbq.r_rdy & _eq(w_sent, 0)),
        ]
        b_taken = Signal()
        m.d.comb += b_taken.eq(b_fire & wbq.r_rdy & ~_eq(w_sent, 0))
        with m.If(flush):
            m.d.sync += w_sent.eq(0)
        with m.Else():
            m.d.sync += w_sent.eq(w_sent + (w_fire & bus.wlast) - b_taken)
        with m.If(b_fire & wbq.r_rdy):
            m.d.sync += w_last_addr.eq(wbq.r_data[:aw])
        # the B's error (one source): BID, early B, BRESP (in that order)
        b_err_code = Signal(ErrorCode)
        with m.If(b_unexp):
            m.d.comb += b_err_code.eq(ErrorCode.DMA_WRITE_BID)
        with m.Elif(b_early):
            m.d.comb += b_err_code.eq(ErrorCode.DMA_WRITE_EARLY_B)
        with m.Else():
            m.d.comb += b_err_code.eq(Mux(bus.bresp == AXIResp.DECERR,
                                          ErrorCode.DMA_WRITE_DECERR,
                                          ErrorCode.DMA_WRITE_SLVERR))
        err_sources.append((b_unexp | b_early | (b_fire & wbq.r_rdy & ~b_ok), b_err_code,
                            Mux(wbq.r_rdy, wbq.r_data[:aw], w_last_addr)))
        m.d.sync += self.wr_done.eq(b_fire & b_ok & wbq.r_data[aw] & ~stopped & ~b_unexp
                                    & ~b_early)

        # bus watchdog: cycles an outstanding transaction waits without any handshake; in a
        # clear, cycles since the clear began (so a clear ends within the limit)
        # (limit and expired are registers: the watchdog is never on a deep path)
        timer = Signal(BUS_TIMEOUT_BITS)
        limit = Signal(BUS_TIMEOUT_BITS, init=BUS_TIMEOUT_MAX)
        progress = Signal()
        restart = Signal()
        m.d.comb += [
            progress.eq((bus.arvalid & bus.arready) | (bus.awvalid & bus.awready) | w_fire
                        | r_fire | b_fire),
            restart.eq(self.clear | (~clearing & (quiet | progress))),
        ]
        m.d.sync += [
            limit.eq(Mux(_eq(self.bus_timeout, 0), BUS_TIMEOUT_MAX, self.bus_timeout)),
            expired.eq(~restart & (timer + 1 >= limit)),
        ]
        with m.If(restart):
            m.d.sync += timer.eq(0)
        with m.Elif(~expired):
            m.d.sync += timer.eq(timer + 1)
        timeout_addr = Signal(aw)
        with m.If(bus.arvalid):
            m.d.comb += timeout_addr.eq(bus.araddr)
        with m.Elif(bus.awvalid):
            m.d.comb += timeout_addr.eq(bus.awaddr)
        with m.Elif(wbq.r_rdy):
            m.d.comb += timeout_addr.eq(wbq.r_data[:aw])
        with m.Else():
            for st, addr, rem, length, grant, bq in reversed(clients):  # client 0 wins
                with m.If(bq.r_rdy):
                    m.d.comb += timeout_addr.eq(bq.r_data[:aw])
        err_sources.append((expired & ~quiet, ErrorCode.DMA_BUS_TIMEOUT, timeout_addr))

        # ---------------------------------------------------------------- error latch
        any_err = Signal()
        m.d.comb += any_err.eq(Cat(c for c, _, _ in err_sources).any())
        with m.If(flush):
            m.d.sync += [self.error.eq(ErrorCode.NONE), self.error_addr.eq(0)]
        with m.Elif(_eq(self.error, ErrorCode.NONE) & ~clearing & ~self.halt & any_err):
            for k, (cond, code, addr) in enumerate(err_sources):
                with (m.If if k == 0 else m.Elif)(cond):
                    m.d.sync += [self.error.eq(code), self.error_addr.eq(addr)]

        # ---------------------------------------------------------------- status
        m.d.comb += quiet.eq(_eq(rd_out, 0) & ~bus.arvalid & ~bus.awvalid & ~wbq.r_rdy
                             & ~w_active & ~wlq.r_rdy)
        active = Cat(*(~_eq(st, _CmdState.IDLE) for st, *_ in clients), ~_eq(wst, _CmdState.IDLE))
        m.d.comb += self.busy.eq(active.any() | ~quiet | clearing)
        with m.If(flush):
            # abandoned bursts: forget them (a no-op when the clear found the bus quiet)
            m.d.sync += [last_grant.eq(n - 1), rd_out.eq(0), bus.arvalid.eq(0),
                         bus.awvalid.eq(0), w_active.eq(0)]
        return m


#: Which AXI manager port every DMA client uses, per port count (``HWConfig.axi_ports``): the
#: read clients of :data:`ilmpq.hdl.top.READ_CLIENTS` and ``"write"`` (the store unit's
#: writes), and ``"act_b"``, the second half of a striped activation load
#: (``HWConfig.act_ports`` 2: on a port other than ``"act"``'s, the fetch port's with four
#: ports; :func:`ilmpq.hdl.top.read_clients`). Every port has at least one read client. The choice is measured in
#: ``bench/memsys.py`` (``docs/dma.md``): the weight stream is what saturates one port, so it
#: gets a port of its own first; with four ports the activation rows and the store unit's
#: residual reads and writes get theirs.
CLIENT_PORTS: dict[int, dict[str, int]] = {
    1: {"fetch": 0, "act": 0, "weights": 0, "store": 0, "write": 0},
    2: {"fetch": 0, "act": 0, "weights": 1, "store": 0, "write": 0, "act_b": 1},
    4: {"fetch": 0, "act": 1, "weights": 2, "store": 3, "write": 3, "act_b": 0},
}


def client_ports(config: HWConfig, clients) -> dict[str, int]:
    """The port of each client name in ``clients`` (and ``"write"``) for ``config``."""
    table = CLIENT_PORTS[config.axi_ports]
    try:
        return {c: table[c] for c in (*clients, "write")}
    except KeyError as e:
        raise IlmpqValueError(f"DMA client {e.args[0]!r} has no AXI port in CLIENT_PORTS; "
                              f"known clients: {', '.join(table)}") from None


class MultiPortDMA(wiring.Component):
    """The DMA on ``config.axi_ports`` AXI4 manager ports: one :class:`DMA` engine per port.

    The read clients (named, in arbitration order) and the write client are placed on ports as
    :func:`client_ports` says; within a port, a client's ``ARID`` is its index among that port's
    clients. Every port checks its commands against the same window. The first error on any
    port is latched (``error``, ``error_addr``, ``error_port``; the lowest port wins a tie in
    one cycle) and halts every port exactly as a single engine stops on its own error: nothing
    new is issued anywhere, outstanding bursts complete. ``clear`` resets all ports.

    Attributes
    ----------
    bus : Out(AXI4Signature).array(axi_ports)
        The manager ports, ``bus[0]`` first.
    rd_cmd, rd_data : arrays over the read clients (same payloads as :class:`DMA`).
    wr_cmd, wr_data, wr_done, win_base, win_limit, bus_timeout, clear, busy, wr_beat :
        As :class:`DMA`.
    abandoned : Out(1)
        Strobe: a clear gave up on outstanding transactions on some port (:class:`DMA`).
    error, error_addr : Out
        The latched error and its address (the failing command or burst).
    error_port : Out(range(axi_ports))
        The port that latched it.
    rd_beats : Out(range(axi_ports + 1))
        ``R`` beats transferred this cycle over all ports (for ``bytes_read``).
    """

    def __init__(self, config: HWConfig, clients, *, write_strobes: bool = False,
                 write_fifo_depth: int | None = None):
        clients = tuple(clients)
        self.config = config
        self.clients = clients
        self.ports = client_ports(config, clients)
        n_ports = config.axi_ports
        self.engines = []
        self.local = {}             # client -> (port, index on that port)
        for p in range(n_ports):
            mine = [c for c in clients if self.ports[c] == p]
            if not mine:
                raise IlmpqValueError(f"AXI port {p} of {n_ports} has no read client in "
                                      f"CLIENT_PORTS[{n_ports}]")
            for k, c in enumerate(mine):
                self.local[c] = (p, k)
            self.engines.append(DMA(config, n_read_clients=len(mine),
                                    write_strobes=write_strobes,
                                    read_fifo_depth=config.read_fifo_beats,
                                    write_fifo_depth=write_fifo_depth))
        eng = self.engines[0]
        aw = config.axi_addr_width
        super().__init__({
            "bus": Out(eng.bus.signature).array(n_ports),
            "rd_cmd": In(eng.rd_cmd[0].signature.flip()).array(len(clients)),
            "rd_data": Out(eng.rd_data[0].signature).array(len(clients)),
            "wr_cmd": In(eng.wr_cmd.signature.flip()),
            "wr_data": In(eng.wr_data.signature.flip()),
            "wr_done": Out(1),
            "win_base": In(aw),
            "win_limit": In(aw),
            "bus_timeout": In(BUS_TIMEOUT_BITS),
            "clear": In(1),
            "abandoned": Out(1),
            "error": Out(ErrorCode),
            "error_addr": Out(aw),
            "error_port": Out(range(max(n_ports, 2))),
            "busy": Out(1),
            "rd_beats": Out(range(n_ports + 1)),
            "wr_beat": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        wp = self.ports["write"]
        halt = Signal()
        for p, e in enumerate(self.engines):
            m.submodules[f"port{p}"] = e
            wiring.connect(m, e.bus, wiring.flipped(self.bus[p]))
            m.d.comb += [e.win_base.eq(self.win_base), e.win_limit.eq(self.win_limit),
                         e.bus_timeout.eq(self.bus_timeout),
                         e.clear.eq(self.clear), e.halt.eq(halt)]
            if p == wp:
                wiring.connect(m, wiring.flipped(self.wr_cmd), e.wr_cmd)
                wiring.connect(m, wiring.flipped(self.wr_data), e.wr_data)
                m.d.comb += [self.wr_done.eq(e.wr_done), self.wr_beat.eq(e.wr_beat)]
            else:
                m.d.comb += [e.wr_cmd.valid.eq(0), e.wr_data.valid.eq(0)]
        for i, c in enumerate(self.clients):
            p, k = self.local[c]
            e = self.engines[p]
            wiring.connect(m, wiring.flipped(self.rd_cmd[i]), e.rd_cmd[k])
            wiring.connect(m, e.rd_data[k], wiring.flipped(self.rd_data[i]))
        errs = [~_eq(e.error, ErrorCode.NONE) for e in self.engines]
        m.d.comb += [
            halt.eq(Cat(*errs).any()),
            self.busy.eq(Cat(*(e.busy for e in self.engines)).any()),
            self.abandoned.eq(Cat(*(e.abandoned for e in self.engines)).any()),
            self.rd_beats.eq(sum(e.rd_beat for e in self.engines)),
        ]
        for p in reversed(range(len(self.engines))):   # the last assignment wins: port 0
            e = self.engines[p]
            with m.If(errs[p]):
                m.d.comb += [self.error.eq(e.error), self.error_addr.eq(e.error_addr),
                             self.error_port.eq(p)]
        return m
