"""Analytical cycle and DMA-byte model of the accelerator, per layer and per pixel tile.

The model reads a compiled program (its instructions and the weight-package headers in the memory
image, nothing else) and predicts the run's performance counters: ``cycles`` (validated against
the RTL, ``docs/performance.md``: within 0.04 % on ResNet-18 layers of ``z020``, 0.74 % worst over
100 random programs of ``tiny``), and exactly ``pe_busy``, ``bytes_read``, ``bytes_written`` and
``instructions``. It also says where every cycle of a layer goes (:data:`CAUSES`). ResNet-18 on
``z020`` takes 2-3 s of model time, so benchmarks and design-space sweeps use it where the RTL
takes minutes.

Usage::

    est = estimate(compile_model(model, get_config("z020")))
    est.cycles, est.fps(100e6), est.utilization
    for layer in est.layers: layer.name, layer.cycles, layer.bound, layer.breakdown

Structure (derived from the RTL; :class:`Calibration` holds the measured FSM constants)
-------------------------------------------------------------------------------------
A discrete-event schedule of the units of ``docs/architecture.md`` section 6, at the granularity
of instructions, mtiles, weight packages and DMA bursts (never single cycles):

* **The DMA read side**, burst by burst (:class:`_Channel`): a command's bursts (at most
  ``max_burst`` beats) are requested once the client's ``read_fifo_beats`` receive FIFO has
  room for them; on each AXI port (``axi_ports``, clients placed by ``hdl/dma.py``
  ``CLIENT_PORTS``) a round-robin arbiter over the port's clients (of fetch, activations,
  weights, store) grants one burst a cycle while fewer than ``max_reads_outstanding`` are in
  flight; the port's memory serves bursts in order, the first beat ``read_latency`` after the AR
  and after the previous burst. Each client's consumer takes beats at its own rate (the
  activation loader ``tn * 8 / axi_data_width`` a cycle when a buffer word is narrower than a
  beat) and can be held by a *gate* (the weight buffer's bank, the fetch unit's dispatch, the
  residual row buffer).
* **Fetch** reads the whole program with one command; FETCH takes an instruction's beats one a
  cycle after the previous DISPATCH, which waits for room in the unit's two-entry queue.
* **LOAD_ROWS** ``n`` starts when COMPUTE ``n - 2`` is done (its half is free) and ``wait_stores``
  STOREs are done (the layer barrier). A strided one is a sequence of DMA commands of
  ``chunk_beats`` (bursts never span two; a command's first burst ``_CMD_GAP`` cycles after the
  previous command's last grant); a gathering one takes a row's beats at the rate of its steps
  (a step per beat of the row and per zero beat its segments reach past it). A checked one
  (``chk_beats``; never strided) then reads its rows' check entries: their command goes to the
  DMA once the rows' last burst is requested, their beats are taken after the rows (TAIL, CHK)
  and compared (CMP).
* **Weights.** LOAD_WEIGHTS ``n`` issues its stream (one read) once stream ``n - 1`` is in the
  weight buffer. The header of package ``j`` enters bank ``j % 2`` once package ``j - 2`` has
  left it (its last word went to the PE array's shadow registers); a package is usable after its
  trailer. With the MAC (a model compiled with a key) the filler takes a beat every 2 cycles and
  waits for the nonce and the tag: ``2 B + 7`` cycles a package of ``B`` beats.
* **COMPUTE** ``n`` starts when the LOAD_ROWS it reads is done (``n`` minus the COMPUTEs with
  ``keep`` before it: such a COMPUTE leaves its half and load to the next, and the loader's
  ``n - 2`` counts releases), mtile ``g`` when mtile ``g - 2`` is
  drained. A weight set takes ``max(pixels, words_per_set)`` PE cycles (the shadow set reloads one
  bank word a cycle behind the swap); the first set of a package waits ``words_per_set`` cycles
  after the package's first word is on ``wout``. Mtiles are separated by MTILE_PREP/MTILE.
* **STORE**: with ``lut_en``, first its lookup table (``2**act_bits`` bytes and a 16-byte
  trailer, one read); per mtile: the ``lanes_pad`` lane parameters (16 bytes each), the PE array's
  ``done`` (``PEArray.compute_latency`` after the mtile's last beat), then the drain:
  ``ceil(lanes / post_lanes)`` groups a pixel through ``PostProc`` (``PostProc.latency``),
  ``post_groups`` of them a cycle (then one more cycle through the output register), written one
  beat a cycle: a written pixel takes the write side's pace, a pixel vertical pooling does not
  write the join's (``groups / post_groups`` cycles); one
  DMA write command per pixel unless the output is contiguous (``2 + bursts`` cycles each); with
  a residual, the tile's rows (``res_beats`` beats a pixel) stream in at most two rows ahead of
  the join, which takes a pixel once its row is complete (with ``res_chk_beats``, the rows' check
  entries follow them and end the mtile). After the last mtile a checked STORE writes one
  check entry per output row (one command when contiguous, ``s_entry_cmd``). The instruction is
  done when its last write is acknowledged (``write_latency`` after the last W beat).

Not modelled: random memory timing (only the deterministic memory of ``docs/memory_model.md``,
whose latencies :class:`MemoryTiming` sets), error paths, 4 KiB splits of bursts (the compiler
aligns its buffers), and the write channel's back-pressure beyond the store unit's own pace.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field

from ..golden.errors import IlmpqValueError
from ..hdl.config import HWConfig
from ..hdl.isa import (INSTR_BITS, Opcode, decode, lut_block_bytes, params_block_bytes,
                       pixel_tiles)
from ..hdl.weight_buffer import header_beats, package_beats
from . import wpkg

__all__ = ["MemoryTiming", "ZYNQ_HP_READ_LATENCY", "ZYNQ_HP_WRITE_LATENCY", "Calibration",
           "TileTiming", "LayerTiming", "ProgramTiming",
           "CycleEstimate", "CycleModelError", "CAUSES", "estimate", "estimate_program"]

#: Entries of each unit's instruction queue in ``hdl/top.py``.
_QUEUE_DEPTH = 2

#: The causes a layer's cycles are split into (:attr:`LayerTiming.breakdown`), in this order:
#: ``compute`` useful MACs at the peak rate; ``padding`` PE beats on padded lanes and channels;
#: ``reload`` set reloads (``pixels < words_per_set``); ``weights`` waiting for a weight package;
#: ``store`` waiting for the store unit to drain a bank; ``act`` waiting for activation rows;
#: ``pooling`` the pooling unit reducing windows (the PE array idles);
#: ``drain`` from the layer's last PE beat to its last write acknowledged (the layer barrier);
#: ``other`` FSM and pipeline cycles.
CAUSES = ("compute", "padding", "reload", "weights", "store", "act", "pooling", "drain",
          "other")


def _set_groups(cfg: HWConfig, compute: dict) -> int:
    """Weight sets per kernel position of one mtile of a conv COMPUTE: all ``groups``, or
    the ``lanes_pad / tn`` groups of its window under depthwise windowing (``dw`` bit 0)."""
    return cfg.lanes_pad // cfg.tn if compute.get("dw", 0) & 1 else compute["groups"]


class CycleModelError(IlmpqValueError):
    """A program the model cannot schedule (the message says what is inconsistent)."""


#: Read latency, in 100 MHz fabric cycles, of a Zynq-7000 S_AXI_HP port reading PS DDR3
#: (AR handshake on the HP port to the first R beat): the realistic figure of
#: ``docs/memory_model.md``, where its sources and derivation are given. The test memories of the
#: simulators keep RL = 8 (:attr:`MemoryTiming.read_latency`'s default, so the model stays
#: comparable with every RTL run); benchmarks use :meth:`MemoryTiming.zynq_hp`.
ZYNQ_HP_READ_LATENCY = 32
#: Write response latency of the same path (last W beat to B), ``docs/memory_model.md``.
ZYNQ_HP_WRITE_LATENCY = 16


@dataclass(frozen=True)
class MemoryTiming:
    """Timing of the memory behind the AXI ports (``docs/memory_model.md``, deterministic mode).

    Every AXI port (``HWConfig.axi_ports``) sees this timing independently: its own queue, its
    own R channel (bursts in order, one beat a cycle); all ports share the memory's contents.

    Parameters
    ----------
    read_latency : int
        Cycles from an AR handshake to the first R beat (RL). The default, 8, is the simulators'
        test memory; :meth:`zynq_hp` gives the realistic Zynq HP-port figure
        (:data:`ZYNQ_HP_READ_LATENCY`).
    write_latency : int
        Cycles from the last W beat of a burst to its B response (WL).
    """

    read_latency: int = 8
    write_latency: int = 4

    def __post_init__(self):
        for name in ("read_latency", "write_latency"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 10_000:
                raise IlmpqValueError(f"MemoryTiming.{name} = {v!r} is not allowed: it must be "
                                      f"an integer number of cycles in [1, 10000]")

    @classmethod
    def zynq_hp(cls, read_latency: int = ZYNQ_HP_READ_LATENCY,
                write_latency: int = ZYNQ_HP_WRITE_LATENCY) -> "MemoryTiming":
        """A Zynq-7000 HP port to PS DDR3 at a 100 MHz fabric clock (``docs/memory_model.md``);
        the realistic default of the benchmarks."""
        return cls(read_latency=read_latency, write_latency=write_latency)


@dataclass(frozen=True)
class Calibration:
    """FSM and pipeline constants of the units, in cycles.

    Each is the length of a fixed sequence of FSM states and registers in the RTL (named in its
    comment), measured on RTL traces. They hold for every configuration: what depends on the
    configuration (widths, counts, ``PEArray.compute_latency``, ``PostProc.latency``) is derived
    from it.
    """

    #: Run start (STATUS.busy rises) to the fetch unit's DMA command (START, ``start_d``, CMD).
    fetch_start: float = 1.0
    #: A DMA read command's handshake to its first burst request (DMA CHECK, ACTIVE).
    dma_check: float = 2.0
    #: A beat on the R channel to the cycle its client can take it (receive FIFO).
    r_fifo: float = 2.0
    #: One past an instruction's last beat consumed by FETCH to its dispatch (DISPATCH).
    fetch_dispatch: float = 1.0
    #: An instruction's dispatch to the unit taking it from its queue (FIFO, IDLE).
    dispatch: float = 2.0
    #: LOAD_ROWS taken to its DMA command (CHECK, WAIT); after a dependency wait, one cycle.
    la_cmd: float = 2.0
    #: One past a LOAD_ROWS' last beat consumed to its ``done_count`` (DONE).
    la_done: float = 1.0
    #: COMPUTE taken to its first beat accepted by the PE array (CHECK, SETUP, WAIT_LA, MTILE,
    #: RUN, the activation-buffer read, the beat FIFO).
    c_start: float = 7.0
    #: ``done_count`` of LOAD_ROWS (or ``drained`` of a bank) seen by the compute unit to its
    #: next PE beat (MTILE, RUN, read, beat FIFO).
    c_after_wait: float = 4.0
    #: Cycles between an mtile's last PE beat and the next mtile's first beyond one
    #: (MTILE_PREP, MTILE).
    c_mtile_gap: float = 2.0
    #: One past a package's last beat consumed to its first word transferred to the PE array
    #: (trailer check, bank READY, drainer read, ``wout`` register).
    wb_word: float = 1.0
    #: One past a COMPUTE's last PE beat to its ``done_count`` (FLUSH).
    c_done: float = 2.0
    #: LOAD_WEIGHTS taken to its DMA command (CHECK).
    w_cmd: float = 1.0
    #: STORE taken to its first parameter read command (CHECK, PARAMS_CMD).
    s_params: float = 1.0
    #: One past a lookup table's last trailer beat to the first parameter read command
    #: (PARAMS_CMD after LUT_TRAILER).
    s_lut: float = 0.0
    #: PE ``done`` (or one past the last parameter beat) to the first drain command (WAIT_BANK).
    s_drain: float = 1.0
    #: Drain command to its first group taken by the join (the accumulator read).
    s_join: float = 2.0
    #: One past a residual row's last beat consumed to the join taking its pixel.
    s_res: float = 0.0
    #: Cycles of one write command of activation check entries a STORE writes after its data
    #: (CHK_WRITE: the command, the DMA's CHECK and AW); contiguous entries add a cycle each.
    s_entry_cmd: float = 3.0
    #: A write burst's B response to the STORE's ``done_count`` (``wr_done``, WAIT_WRITES).
    s_ack: float = 3.0
    #: The last ``done_count`` to the run's end (STATUS.busy falls).
    end: float = 1.0


@dataclass
class TileTiming:
    """Timing of one output-pixel tile (one LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, STORE group).

    Times are cycles from the program's start; ``*_done`` and ``compute_end`` are one past the
    event. ``gaps`` lists the PE array's idle intervals before this tile's beats as
    ``(start, end, cause)`` (see :data:`CAUSES`).
    """

    layer: str
    index: int               #: pixel tile within its layer
    pixels: int
    mtiles: int
    sets_per_mtile: int
    load_beats: int
    weight_beats: int
    load_start: float = 0.0      #: LOAD_ROWS DMA command
    load_done: float = 0.0
    compute_start: float = 0.0   #: first PE beat
    compute_end: float = 0.0     #: one past the last PE beat
    store_done: float = 0.0      #: last write acknowledged
    pe_beats: int = 0
    gaps: list = field(default_factory=list)


@dataclass
class LayerTiming:
    """Model result for one layer.

    ``cycles`` runs from the previous layer's end (its last write acknowledged; the program's
    start for the first layer of a program) to this layer's end, so the layers of a program add
    up to the program's cycles (the last one also carries the end of the run). CPU layers and
    free layers (flatten) have ``cycles = 0``.
    """

    name: str
    kind: str
    where: str
    out_shape: tuple
    macs: int = 0
    cycles: float = 0.0
    pe_beats: int = 0            #: beats the PE array accepts (the PE_BUSY counter's share)
    bytes_read: int = 0          #: DMA reads of its instructions (program fetch excluded)
    bytes_written: int = 0
    start: float = 0.0
    end: float = 0.0
    program: int = -1            #: index of its accelerator program
    tiles: list = field(default_factory=list)
    #: Cycles per cause (:data:`CAUSES`); they add up to :attr:`cycles`.
    breakdown: dict = field(default_factory=dict)
    #: A layer whose pixel tiles interleave with another's (convs sharing their loads,
    #: ``AccelStep.tile_layers``): its share of the pair's cycles, one ``(start, end)`` per tile,
    #: from the end of the PE beats of the tile before it to the end of its own (the last tile of
    #: the pair to the pair's end); ``cycles`` is their sum, ``start`` and ``end`` are the
    #: pair's. Empty: ``[start, end)``.
    intervals: list = field(default_factory=list)

    def utilization(self, config: HWConfig) -> float:
        """Useful MACs over the peak MACs of this layer's cycles."""
        return self.macs / (self.cycles * config.macs_per_cycle) if self.cycles else 0.0

    @property
    def bound(self) -> str:
        """The largest cause other than ``compute``: what limits the layer beyond the MACs."""
        rest = {k: v for k, v in self.breakdown.items() if k != "compute"}
        return max(rest, key=rest.get) if rest else "-"


@dataclass
class ProgramTiming:
    """Model result for one accelerator program (one run, one set of counters).

    ``counters`` has the hardware counters the model predicts: ``cycles``, ``pe_busy``,
    ``bytes_read``, ``bytes_written``, ``instructions``. ``read_busy`` is the cycles the DMA read
    channel carried data.
    """

    cycles: int
    counters: dict
    tiles: list
    layers: list = field(default_factory=list)
    read_busy: float = 0.0


@dataclass
class CycleEstimate:
    """Model result for a compiled model: per program and per layer."""

    config: HWConfig
    memory: MemoryTiming
    programs: list
    layers: list

    @property
    def cycles(self) -> int:
        """Accelerator cycles of one inference: all programs (CPU layers excluded)."""
        return sum(p.cycles for p in self.programs)

    @property
    def macs(self) -> int:
        """MACs of the layers the accelerator runs."""
        return sum(l.macs for l in self.layers if l.where == "accel")

    @property
    def utilization(self) -> float:
        """Useful MACs of the accelerator layers over the peak MACs of :attr:`cycles`."""
        return self.macs / (self.cycles * self.config.macs_per_cycle) if self.cycles else 0.0

    def fps(self, clock_hz: float = 100e6) -> float:
        """Frames per second at ``clock_hz``, accelerator cycles only."""
        return clock_hz / self.cycles if self.cycles else math.inf

    def layer(self, name: str) -> LayerTiming:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer {name!r}; layers: {', '.join(l.name for l in self.layers)}")


# --------------------------------------------------------------------------------------------
# discrete-event core


class _Event:
    __slots__ = ("time", "waiters", "item")

    def __init__(self):
        self.time = None
        self.waiters = []
        self.item = None


class _Sim:
    """Event queue; processes are generators that yield a delay or an :class:`_Event`."""

    def __init__(self):
        self.now = 0.0
        self._heap = []
        self._n = 0

    def at(self, t, fn, *args):
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, fn, args))

    def trigger(self, ev: _Event, t=None):
        """Fire ``ev`` at time ``t`` (default now; never in the past)."""
        t = self.now if t is None else max(self.now, t)
        assert ev.time is None, "event fired twice"
        ev.time = t
        for p in ev.waiters:
            self.at(t, p.resume)
        ev.waiters = []

    def fired(self, t=None) -> _Event:
        ev = _Event()
        ev.time = self.now if t is None else t
        return ev

    def spawn(self, gen):
        p = _Proc(self, gen)
        self.at(self.now, p.resume)
        return p

    def run(self):
        while self._heap:
            t, _, fn, args = heapq.heappop(self._heap)
            self.now = t
            fn(*args)


class _Proc:
    def __init__(self, sim: _Sim, gen):
        self.sim = sim
        self.gen = gen

    def resume(self):
        sim = self.sim
        try:
            cmd = next(self.gen)
        except StopIteration:
            return
        if isinstance(cmd, _Event):
            if cmd.time is not None:
                sim.at(max(sim.now, cmd.time), self.resume)
            else:
                cmd.waiters.append(self)
        else:
            sim.at(sim.now + max(0.0, cmd), self.resume)


class _Counter:
    """A monotonic counter processes wait on (``ge(k)``: an event when ``value >= k``)."""

    def __init__(self, sim: _Sim):
        self.sim = sim
        self.value = 0
        self._waits = []

    def incr(self):
        self.value += 1
        keep = []
        for k, ev in self._waits:
            if self.value >= k:
                self.sim.trigger(ev)
            else:
                keep.append((k, ev))
        self._waits = keep

    def ge(self, k) -> _Event:
        if self.value >= k:
            return self.sim.fired()
        ev = _Event()
        self._waits.append((k, ev))
        return ev


class _Queue:
    """A bounded FIFO from the fetch unit to a unit; ``put`` and ``get`` return events (the
    ``get`` event carries the item)."""

    def __init__(self, sim: _Sim, cap: int):
        self.sim = sim
        self.cap = cap
        self.items = []
        self._getters = []
        self._putters = []

    def put(self, item) -> _Event:
        ev = _Event()
        if self._getters:
            g = self._getters.pop(0)
            g.item = item
            self.sim.trigger(g)
            self.sim.trigger(ev)
        elif len(self.items) < self.cap:
            self.items.append(item)
            self.sim.trigger(ev)
        else:
            self._putters.append((item, ev))
        return ev

    def get(self) -> _Event:
        ev = _Event()
        if self.items:
            ev.item = self.items.pop(0)
            if self._putters:
                item, pev = self._putters.pop(0)
                self.items.append(item)
                self.sim.trigger(pev)
            self.sim.trigger(ev)
        else:
            self._getters.append(ev)
        return ev


class _Callback:
    """An event waiter that calls a function (the channel's hooks on gates)."""

    __slots__ = ("resume",)

    def __init__(self, fn):
        self.resume = fn


class _Read:
    """One DMA read command of a client, as the channel sees it.

    The consumer pops beat ``j`` at ``max(arrival_j, pop_{j-1} + delay_j + 1 / cap, gate)``
    where a gate (an event) holds the beat at its index until it fires and ``delay_j`` (0 unless
    given) is extra time the consumer spends before that beat. The beats of a burst arrive one a
    cycle and ``cap <= 1``, so pops are kept as segments ``(offset, a, n, p0)``: beat
    ``offset + i`` pops at ``max(a + i / cap, p0 + (i + 1) / cap)``.
    """

    def __init__(self, client: int, total: int, cap: float, active: float):
        self.client = client
        self.total = total
        self.cap = cap
        self.req_at = active          # earliest time of the next burst request (None: gated)
        self.granted = 0              # beats granted
        self.pending = []             # granted bursts whose pops are not known: [offset, a, n]
        self.segs = []
        self.offsets = []
        self.computed = 0             # beats whose pop time is known
        self.last_pop = -math.inf
        self.gates = {}               # beat index -> _Event
        self.delays = {}              # beat index -> extra cycles after the previous pop
        self.milestones = {}          # beat index -> _Event, fired one past that beat's pop
        self.ev = _Event()            # one past the last pop
        self.waiting = None           # the gate the pops wait for
        #: beats of one DMA command when the read is a sequence of them (a strided LOAD_ROWS):
        #: bursts never span two commands, and a command's first burst is requested
        #: ``_CMD_GAP`` cycles after the previous command's last grant (IDLE, CHECK, ACTIVE)
        self.chunk = None

    def next_len(self, mb: int) -> int:
        """Beats of the next burst."""
        left = self.total - self.granted
        if self.chunk:
            left = min(left, self.chunk - self.granted % self.chunk)
        return min(mb, left)

    def pop_time(self, k: int) -> float:
        i = bisect.bisect_right(self.offsets, k) - 1
        off, a, _, p0 = self.segs[i]
        j = k - off
        return max(a + j / self.cap, p0 + (j + 1) / self.cap)


#: Cycles from a DMA command's last burst grant to the next command's first request (its
#: ``hdl/dma.py`` read client: IDLE takes the command, CHECK, ACTIVE).
_CMD_GAP = 3


class _Port:
    """Arbitration and memory state of one AXI port (one DMA engine and its memory queue)."""

    __slots__ = ("reads", "last_client", "outstanding", "mem_free", "next_grant", "pokes")

    def __init__(self, last_client: int):
        self.reads: list[_Read] = []
        self.last_client = last_client
        self.outstanding = 0
        self.mem_free = -math.inf
        self.next_grant = -math.inf
        self.pokes = set()


class _Channel:
    """The DMA read side and the memory's R channels, burst by burst.

    One engine per AXI port (``hdl/dma.py`` ``MultiPortDMA``), each client on its
    ``CLIENT_PORTS`` port. Per port: round-robin arbitration over its clients; a client requests
    its next burst (at most ``max_burst`` beats) once its ``read_fifo_beats`` receive FIFO has
    room for all of it; one grant per cycle while fewer than ``max_reads_outstanding`` bursts are
    in flight; the memory serves the port's bursts in order, the first beat ``read_latency``
    after the AR handshake and after the previous burst's last beat (``docs/memory_model.md``).
    Ports are independent.
    """

    def __init__(self, sim: _Sim, cfg: HWConfig, memory: MemoryTiming, cal: Calibration,
                 n_clients: int = 4):
        self.sim = sim
        self.max_ro = cfg.max_reads_outstanding
        self.mb = cfg.max_burst
        self.fifo = cfg.read_fifo_beats
        self.rl = memory.read_latency
        self.fifo_lat = cal.r_fifo
        self.n_clients = n_clients
        self.port_of = self._port_map(cfg, n_clients)
        self.ports = [_Port(n_clients - 1) for _ in range(cfg.axi_ports)]
        self.busy = 0

    @staticmethod
    def _port_map(cfg: HWConfig, n_clients: int) -> list[int]:
        if cfg.axi_ports == 1:
            return [0] * n_clients
        from ..hdl.dma import client_ports
        from ..hdl.top import read_clients
        clients = read_clients(cfg)
        where = client_ports(cfg, clients)
        return [where[clients[c]] for c in range(n_clients)]

    @property
    def reads(self) -> list:
        return [r for p in self.ports for r in p.reads]

    def read(self, client: int, beats: int, cap: float, active: float, *, prefill: int = 0,
             gates: dict | None = None, milestones: dict | None = None,
             chunk: int | None = None, delays: dict | None = None) -> _Read:
        """Start a read of ``beats`` beats whose bursts may be requested from ``active`` on.

        ``prefill`` beats are already in the client's FIFO at ``active`` (a command that went on
        while its consumer was blocked). ``gates`` and ``milestones`` map beat indices to events,
        ``delays`` beat indices to extra cycles (see :class:`_Read`). ``.ev`` of the result
        fires one past the last beat's pop.
        """
        r = _Read(client, int(beats), float(cap), max(active, self.sim.now))
        r.gates = dict(gates or {})
        r.delays = {k: float(v) for k, v in (delays or {}).items() if v}
        r.milestones = dict(milestones or {})
        r.chunk = chunk
        if prefill:
            n = min(int(prefill), r.total)
            r.granted = n
            r.pending.append([0, r.req_at, n])
        if r.total == 0:
            self.sim.trigger(r.ev, active)
            return r
        self._advance(r)
        if r.granted < r.total:
            port = self.ports[self.port_of[client]]
            port.reads.append(r)
            self._poke(port, r.req_at)
        return r

    # -- the consumer side ----------------------------------------------------------------------

    def _advance(self, r: _Read):
        """Turn granted bursts into pop times as far as the gates allow; update the request
        time; fire milestones and the end."""
        sim = self.sim
        while r.pending:
            off, a, n = r.pending[0]
            gate = r.gates.get(off)
            if gate is not None and gate.time is None:
                if r.waiting is not gate:
                    r.waiting = gate
                    gate.waiters.append(_Callback(lambda r=r: self._gate_fired(r)))
                break
            p0 = r.last_pop + r.delays.get(off, 0.0)
            if gate is not None:
                p0 = max(p0, gate.time - 1.0 / r.cap)
            # the segment runs to the next gate or delay inside the burst
            stop = off + n
            for g in (*r.gates, *r.delays):
                if off < g < stop:
                    stop = g
            m = stop - off
            r.segs.append((off, a, m, p0))
            r.offsets.append(off)
            r.last_pop = max(a + (m - 1) / r.cap, p0 + m / r.cap)
            r.computed = stop
            for k in [k for k in r.milestones if off <= k < stop]:
                sim.trigger(r.milestones.pop(k), r.pop_time(k) + 1)
            if m == n:
                r.pending.pop(0)
            else:
                r.pending[0] = [stop, a + m, n - m]
        if r.computed == r.total and r.ev.time is None:
            sim.trigger(r.ev, r.last_pop + 1)
        if r.granted < r.total:
            n = r.next_len(self.mb)
            need = r.granted + n - self.fifo      # beats that must have left the FIFO
            if need <= 0:
                r.req_at = max(r.req_at, sim.now)
            elif need <= r.computed:
                r.req_at = max(sim.now, r.pop_time(need - 1) + 1)
            else:
                r.req_at = None

    def _gate_fired(self, r: _Read):
        r.waiting = None
        self._advance(r)
        if r.req_at is not None:
            self._poke(self.ports[self.port_of[r.client]], r.req_at)

    # -- the arbiters and the memory ------------------------------------------------------------

    def _poke(self, port: _Port, t):
        t = max(t, self.sim.now)
        if t not in port.pokes:
            port.pokes.add(t)
            self.sim.at(t, self._arbitrate, port, t)

    def _arbitrate(self, port: _Port, t):
        port.pokes.discard(t)
        now = self.sim.now
        if now < port.next_grant:
            self._poke(port, port.next_grant)
            return
        if port.outstanding >= self.max_ro or not port.reads:
            return
        ready = [r for r in port.reads if r.req_at is not None and r.req_at <= now]
        if not ready:
            later = [r.req_at for r in port.reads if r.req_at is not None]
            if later:
                self._poke(port, min(later))
            return
        n = self.n_clients
        r = min(ready, key=lambda r: ((r.client - port.last_client - 1) % n, r.req_at))
        self._grant(port, r, now)
        port.next_grant = now + 1
        self._poke(port, now + 1)

    def _grant(self, port: _Port, r: _Read, now: float):
        n = r.next_len(self.mb)
        t_ar = now + 1
        first = max(t_ar + self.rl, port.mem_free)      # first beat on R
        port.mem_free = first + n
        port.outstanding += 1
        self.busy += n
        self.sim.at(first + n, self._burst_done, port)
        port.last_client = r.client
        r.pending.append([r.granted, first + self.fifo_lat, n])
        r.granted += n
        r.req_at = now + (_CMD_GAP if r.chunk and r.granted % r.chunk == 0 else 1)
        self._advance(r)
        if r.granted == r.total:
            port.reads.remove(r)
        elif r.req_at is not None:
            self._poke(port, r.req_at)

    def _burst_done(self, port: _Port):
        port.outstanding -= 1
        self._poke(port, self.sim.now)


# --------------------------------------------------------------------------------------------
# the program model

#: DMA read clients, in the arbitration order of ``hdl/top.py`` (``read_clients``; ``_ACT_B``,
#: the second half of a striped activation load, only with ``HWConfig.act_ports`` 2).
_FETCH, _ACT, _WEIGHTS, _STORE, _ACT_B = range(5)


@functools.lru_cache(maxsize=None)
def _rtl_latencies(cfg: HWConfig) -> tuple[int, int]:
    """``PEArray.compute_latency`` and ``PostProc.latency`` of ``cfg``, from the RTL classes."""
    from ..hdl.pe_array import PEArray
    from ..hdl.postproc import PostProc
    pe, pp = PEArray(cfg), PostProc(cfg)
    for c in (pe, pp):          # asked for their latencies only, never elaborated
        c._MustUse__silence = True
    return pe.compute_latency, pp.latency


#: The weight filler with the MAC (``hdl/weight_buffer.py``, ``hdl/siphash.py``): a header or
#: payload beat every 2 cycles (2 SipRounds a word), the nonce's 2 cycles before a header that
#: follows a trailer (one more than the 2-cycle rhythm), and the tag 8 cycles after the last
#: payload beat (the padding block's 2 rounds and 4 finalization rounds, 6 more than the
#: rhythm). ``tests/hdl/test_weight_buffer.py::test_mac_fill_schedule`` holds the RTL to it.
_MAC_FILL_CAP = 0.5
_MAC_NONCE_EXTRA = 1.0
_MAC_TAG_EXTRA = 6.0


@dataclass
class _Pkg:
    beats: int
    sets: int
    stream: int
    first: bool           # first package of its stream
    last: bool            # last package of its stream
    ready: _Event = None  # one past its last beat consumed
    free: _Event = None   # its bank is free again


def _stream_packages(cfg: HWConfig, image: bytes, base: int, addr: int, beats: int,
                     stream: int) -> list[_Pkg]:
    """The packages of a LOAD_WEIGHTS stream, from their headers in the memory image."""
    bb = cfg.beat_bytes
    hb = header_beats(cfg)
    off, end = addr - base, addr - base + beats * bb
    if off < 0 or end > len(image):
        raise CycleModelError(f"the LOAD_WEIGHTS stream at 0x{addr:08x} ({beats} beats) is "
                              f"outside the memory image")
    out = []
    while off < end:
        fields, _ = wpkg.decode_header(cfg, bytes(image[off:off + hb * bb]))
        n_words = fields["n_words"]
        if not 1 <= n_words <= cfg.wbuf_depth or n_words % cfg.words_per_set:
            raise CycleModelError(f"the weight package at 0x{base + off:08x} has n_words = "
                                  f"{n_words}: not a valid package for {cfg.name!r}")
        pb = package_beats(cfg, n_words)
        out.append(_Pkg(pb, n_words // cfg.words_per_set, stream, not out, False))
        off += pb * bb
    if off != end or not out:
        raise CycleModelError(f"the LOAD_WEIGHTS stream at 0x{addr:08x}: {beats} beats are not "
                              f"whole weight packages")
    out[-1].last = True
    return out


def _attribute(gaps: list, a: float, b: float, base: float, causes: dict):
    """Record the PE idle interval ``[a, b)``: up to ``base`` (the FSM's own minimum) it is
    ``other``, the rest goes to the latest of ``causes`` (name -> time it allowed the beat)."""
    if b <= a:
        return
    base = min(max(base, a), b)
    if base > a:
        gaps.append((a, base, "other"))
    if b > base:
        cause = max(causes, key=causes.get) if causes else "other"
        if causes.get(cause, -math.inf) <= base:
            cause = "other"
        gaps.append((base, b, cause))


class _Model:
    def __init__(self, cfg: HWConfig, instrs: list, image: bytes, base: int,
                 memory: MemoryTiming, cal: Calibration, tile_layers: list | None,
                 mac: bool = False):
        self.cfg, self.mem, self.cal, self.instrs = cfg, memory, cal, instrs
        self.mac = mac
        self.sim = sim = _Sim()
        self.chan = _Channel(sim, cfg, memory, cal, n_clients=4 + (cfg.act_ports == 2))
        self.pe_latency, self.pp_latency = _rtl_latencies(cfg)
        self.ipb = INSTR_BITS // cfg.axi_data_width
        wb = cfg.tn * 8
        self.la_words = max(1, cfg.axi_data_width // wb)   # activation words per beat
        self.la_cap = 1.0 / self.la_words
        self.groups = -(-cfg.lanes // cfg.post_lanes)
        # lane parameters and their CRC trailer (one read command per mtile)
        self.param_beats = params_block_bytes(cfg.lanes_pad) // cfg.beat_bytes
        # a STORE's lookup table and its CRC trailer (one read command, before the parameters)
        self.lut_beats = lut_block_bytes(cfg.act_bits) // cfg.beat_bytes
        self.q = {u: _Queue(sim, _QUEUE_DEPTH) for u in ("la", "w", "c", "s")}
        self.la_done = _Counter(sim)
        self.c_done = _Counter(sim)
        self.s_done = _Counter(sim)
        self.drained = _Counter(sim)
        self.streams_filled = _Counter(sim)
        self.pe_done = defaultdict(_Event)      # global mtile -> its ``done`` on the PE array
        self.stream_cmd = defaultdict(_Event)   # stream -> its DMA command
        self.unit_end = {}
        self.fetch_end = None
        self.pkgs: list[_Pkg] = []
        self.tiles: list[TileTiming] = []
        ops = {op: [f for o, f in instrs if o == op] for op in
               (Opcode.LOAD_ROWS, Opcode.LOAD_WEIGHTS, Opcode.COMPUTE, Opcode.STORE)}
        lr, lw, cc, ss = ops.values()
        # the LOAD_WEIGHTS streams of each pixel tile (hdl/isa.py pixel_tiles): those between
        # its LOAD_ROWS (or the STORE of a COMPUTE that kept its half) and the next tile (a
        # layer whose weights exceed one stream has several: the first before the COMPUTE, the
        # others after the STORE); ``load_of``: the LOAD_ROWS each tile's COMPUTE reads
        lw_of, self.load_of, n_lr, released = [], [], 0, 0
        for (o, f), t in zip(instrs, pixel_tiles(instrs)):
            if t >= len(lw_of):
                lw_of.append([])
            if o == Opcode.LOAD_ROWS:
                n_lr += 1
            elif o == Opcode.LOAD_WEIGHTS:
                if not lw_of:
                    lw_of.append([None])          # before any LOAD_ROWS: refused below
                lw_of[-1].append(f)
            elif o == Opcode.COMPUTE:
                if released != n_lr - 1:          # a tile reads the load before it
                    lw_of[-1].append(None)
                self.load_of.append(released)
                released += not f["keep"]
        if not len(lw_of) == len(cc) == len(ss) or any(None in w for w in lw_of) or any(
                bool(w) == bool(c["pool"]) for w, c in zip(lw_of, cc)) or cc and cc[-1]["keep"]:
            raise CycleModelError(
                f"the program has {len(lr)} LOAD_ROWS, {len(lw)} LOAD_WEIGHTS, {len(cc)} "
                f"COMPUTE and {len(ss)} STORE instructions; the model needs one of each per "
                f"pixel tile (one or more LOAD_WEIGHTS before a conv COMPUTE, none for a "
                f"pooling tile; a tile after a COMPUTE with keep shares its LOAD_ROWS)")
        self.pool_join = defaultdict(_Event)    # pooling mtile -> the STORE's join is ready
        self.pool_end = defaultdict(_Event)     # pooling mtile -> its last result joined
        if tile_layers is not None and len(tile_layers) != len(cc):
            raise CycleModelError(f"{len(tile_layers)} layer names for {len(cc)} pixel tiles")
        index = defaultdict(int)
        k = 0                   # LOAD_WEIGHTS stream
        first = [True] + [self.load_of[n] != self.load_of[n - 1] for n in range(1, len(cc))]
        for n, (c, s) in enumerate(zip(cc, ss)):
            # a tile sharing the load of the tile before it reads no rows of its own
            a = lr[self.load_of[n]] if first[n] else {"beats": 0}
            pixels = c["out_h"] * c["out_w"]
            if c["pool"] or s["pool"]:
                if not (c["pool"] and s["pool"]) or s["pixels"] != pixels or \
                        s["n_mtiles"] != c["n_mtiles"]:
                    raise CycleModelError(f"pixel tile {n}: its pooling COMPUTE and STORE do "
                                          f"not match")
                name = tile_layers[n] if tile_layers is not None else ""
                self.tiles.append(TileTiming(name, index[name], pixels, c["n_mtiles"],
                                             c["kh"] * c["kw"], a["beats"], 0))
                index[name] += 1
                continue
            pk = []
            for w in lw_of[n]:
                pk += _stream_packages(cfg, image, base, w["addr"], w["beats"], k)
                k += 1
            nsets = c["kh"] * c["kw"] * _set_groups(cfg, c)
            if sum(p.sets for p in pk) != c["n_mtiles"] * nsets:
                raise CycleModelError(
                    f"pixel tile {n}: its weight stream holds {sum(p.sets for p in pk)} sets, "
                    f"its COMPUTE needs {c['n_mtiles']} mtiles x {nsets}")
            for p in pk:
                p.ready, p.free = _Event(), _Event()
            self.pkgs.extend(pk)
            if s["pixels"] != pixels or s["n_mtiles"] != c["n_mtiles"]:
                raise CycleModelError(f"pixel tile {n}: its STORE ({s['pixels']} pixels, "
                                      f"{s['n_mtiles']} mtiles) does not match its COMPUTE "
                                      f"({pixels} pixels, {c['n_mtiles']} mtiles)")
            name = tile_layers[n] if tile_layers is not None else ""
            self.tiles.append(TileTiming(name, index[name], pixels, c["n_mtiles"], nsets,
                                         a["beats"], sum(w["beats"] for w in lw_of[n])))
            index[name] += 1

    # -- helpers ------------------------------------------------------------------------------

    def _read(self, client: int, beats: int, cap: float, cmd: float, **kw) -> _Read:
        """A DMA read command accepted at ``cmd`` (its bursts from ``cmd + dma_check`` on)."""
        return self.chan.read(client, beats, cap, cmd + self.cal.dma_check, **kw)

    def _take(self, unit: str):
        """The unit's next instruction: ``dispatch`` cycles after the fetch unit queued it, or
        one cycle after the unit went idle if it was waiting in the queue (the times are those of
        the state after IDLE)."""
        t_idle = self.sim.now
        ev = self.q[unit].get()
        yield ev
        f, t_put = ev.item
        yield max(0.0, max(t_put + self.cal.dispatch, t_idle + 1) - self.sim.now)
        return f

    # -- units --------------------------------------------------------------------------------

    def fetch(self):
        """One DMA read of the whole program; FETCH takes an instruction's beats one a cycle
        after the previous instruction's DISPATCH, which waits for room in the unit's queue."""
        cal, sim, ipb = self.cal, self.sim, self.ipb
        yield cal.fetch_start
        n = len(self.instrs)
        fetched = [_Event() for _ in range(n)]       # one past an instruction's last beat
        dispatched = [_Event() for _ in range(n)]
        self._read(_FETCH, n * ipb, 1.0, sim.now,
                   gates={i * ipb: dispatched[i - 1] for i in range(1, n)},
                   milestones={i * ipb + ipb - 1: fetched[i] for i in range(n)})
        units = {Opcode.LOAD_ROWS: "la", Opcode.LOAD_WEIGHTS: "w", Opcode.COMPUTE: "c",
                 Opcode.STORE: "s"}
        for i, (op, f) in enumerate(self.instrs):
            yield fetched[i]
            yield cal.fetch_dispatch
            if op == Opcode.END:
                self.fetch_end = sim.now
                return
            if op != Opcode.NOP:
                yield self.q[units[op]].put((f, sim.now))
            sim.trigger(dispatched[i])

    def act_loader(self):
        cal, sim = self.cal, self.sim
        tiles_of = {}                   # LOAD_ROWS n -> the tiles whose COMPUTEs read it
        for t, k in zip(self.tiles, self.load_of):
            tiles_of.setdefault(k, []).append(t)
        n = 0
        while True:
            f = yield from self._take("la")
            tiles = tiles_of[n]
            tile = tiles[0]
            t_take = sim.now
            yield self.c_done.ge(n - 1)                   # its half of the buffer is free
            yield self.s_done.ge(f["wait_stores"])        # the layer barrier
            waited = sim.now > t_take
            yield max(0.0, max(t_take + cal.la_cmd, sim.now + 1 if waited else 0) - sim.now)
            tile.load_start = sim.now
            t_cmd, beats, chk = sim.now, f["beats"], f["chk_beats"]
            if f["gather"]:
                # a gathering load: one step a cycle per beat of a row and per zero beat its
                # segments reach past it; then GFLUSH writes the last beat's words
                row_cycles, tail = self._gather_steps(f)
                rate, chunk = f["row_beats"] / row_cycles, None
            else:
                # a plain or strided load (one DMA command per ``chunk_beats``, issued beside
                # DATA); a beat holding k words takes k cycles to write
                rate, chunk, tail = self.la_cap, f["chunk_beats"] or None, self.la_words - 1
            # striped (act_ports 2): the first ``split`` beats on ``act``, the rest on ``act_b``,
            # whose command follows a cycle later (CMDB), both a beat a cycle
            split = self._stripe(f)
            first = split or beats                         # the beats read on ``act``
            fifo = self.cfg.read_fifo_beats
            issued = _Event()
            data = self._read(_ACT, first, rate, t_cmd, chunk=chunk, milestones={
                first - fifo - 1: issued} if chk and first > fifo else {})
            if split:
                data_b = self._read(_ACT_B, beats - split, 1.0, t_cmd + 1)
            if chk:
                # the check entries' command is taken once the rows' last burst on ``act`` is
                # requested (its FIFO room: beat first - fifo popped; a striped load's from
                # SDATA on); they are popped after the rows, from CHK on
                t_chk = t_cmd + max(-(-first // self.cfg.max_burst), 2 if split else 1)
                if first > fifo:
                    yield issued
                    t_chk = max(t_chk, sim.now)
                rows_in = _Event()
                ent = self._read(_ACT, chk, 1.0, t_chk, gates={0: rows_in})
            yield data.ev
            if split:
                # SDATA ends a cycle after its flags clear: one cycle after the first stream's
                # last beat, two after the second's (its last word waits a cycle for the port)
                yield data_b.ev
                yield max(0.0, max(data.ev.time + 1, data_b.ev.time + 2) - sim.now)
            if chk:
                sim.trigger(rows_in, sim.now + tail + 1)           # (GFLUSH,) TAIL, then CHK
                yield ent.ev
                yield cal.la_done                                  # CMP
            else:
                yield cal.la_done + tail
            tile.load_done = sim.now
            for t in tiles[1:]:            # the tiles after a COMPUTE with keep: the same load
                t.load_start, t.load_done = tile.load_start, tile.load_done
            self.la_done.incr()
            self.unit_end["la"] = sim.now
            n += 1

    def _stripe(self, f) -> int:
        """Beats of a LOAD_ROWS read on the ``act`` client when it is striped over two ports
        (``HWConfig.act_ports`` 2, hdl/loaders.py: a plain load of more than one word; the
        first ``ceil(words / 2)`` words), else 0."""
        if self.cfg.act_ports != 2 or f["gather"] or f["chunk_beats"]:
            return 0
        k = self.cfg.tn * 8 // self.cfg.axi_data_width
        return (f["beats"] // k + 1) // 2 * k if f["beats"] > k else 0

    def _gather_steps(self, f) -> tuple[int, int]:
        """``(cycles a raw row takes, cycles after the stream's last beat to DONE)`` of a
        gathering LOAD_ROWS (hdl/loaders.py: steps ``min(qb, 0) .. max(qb + out - 1 + e,
        row_beats - 1)``, an output beat's ``k`` words written one a cycle, then GFLUSH)."""
        qb, e = f["shift"] >> 3, int(f["shift"] % 8 != 0)
        out = f["pix"] * f["seg_beats"]
        jmin, jmax = min(qb, 0), max(qb + out - 1 + e, f["row_beats"] - 1)
        k = self.la_words
        return jmax - jmin + 1 + out * (k - 1), jmax - (f["row_beats"] - 1) + max(1, k - 1)

    def weight_loader(self):
        cal, sim = self.cal, self.sim
        n = 0
        while True:
            yield from self._take("w")
            yield self.streams_filled.ge(n)               # the previous stream is all in
            yield cal.w_cmd
            sim.trigger(self.stream_cmd[n])
            self.unit_end["w"] = sim.now
            n += 1

    def weight_filler(self):
        """The weight buffer's filler. A LOAD_WEIGHTS stream is one DMA read; the header of
        package ``j`` enters bank ``j % 2`` once package ``j - 2`` has left it.

        With the MAC (``hdl/weight_buffer.py``: SipHash-2-4 absorbs a 64-bit word every 2
        cycles) the filler takes a header or payload beat at most every 2 cycles; after a
        package's trailer the core absorbs the nonce (2 cycles) before the next header, and the
        trailer waits for the tag, 8 cycles after the last payload beat (the padding block and
        the finalization): a package of ``B`` beats takes ``2 B + 7`` cycles when its beats are
        there in time."""
        sim = self.sim
        by_stream = defaultdict(list)
        for j, p in enumerate(self.pkgs):
            by_stream[p.stream].append(j)
        cap = _MAC_FILL_CAP if self.mac else 1.0
        for stream in sorted(by_stream):
            yield self.stream_cmd[stream]
            gates, milestones, delays, off = {}, {}, {}, 0
            for j in by_stream[stream]:
                p = self.pkgs[j]
                if j >= 2:
                    gates[off] = self.pkgs[j - 2].free
                if self.mac:
                    if off:
                        delays[off] = _MAC_NONCE_EXTRA          # the nonce after a trailer
                    delays[off + p.beats - 1] = _MAC_TAG_EXTRA   # the trailer waits for the tag
                off += p.beats
                milestones[off - 1] = p.ready
            yield self._read(_WEIGHTS, off, cap, sim.now, gates=gates, milestones=milestones,
                             delays=delays).ev
            self.streams_filled.incr()

    def compute(self):
        cal, sim, cfg = self.cal, self.sim, self.cfg
        wps = cfg.words_per_set
        g = 0                   # global mtile
        pk = 0                  # global package
        n = 0                   # COMPUTE instruction
        prev_end = 0.0          # one past the PE array's last beat
        last_swap = -math.inf   # first beat of the latest set
        next_ok = -math.inf     # earliest first beat of the next set (the shadow reload)
        while True:
            f = yield from self._take("c")
            tile = self.tiles[n]
            t_take = sim.now
            yield self.la_done.ge(self.load_of[n] + 1)
            t_fsm = t_take + cal.c_start
            causes = {"act": sim.now + cal.c_after_wait if sim.now > t_take else -math.inf}
            P = f["out_h"] * f["out_w"]
            if f["pool"]:
                g, prev_end = yield from self._pool_compute(f, tile, g, max(t_fsm,
                                                            causes["act"]), prev_end)
                yield max(0.0, prev_end - sim.now)
                tile.compute_end = prev_end
                yield cal.c_done
                if not f["keep"]:                         # else the next COMPUTE reads its half
                    self.c_done.incr()
                self.unit_end["c"] = sim.now
                n += 1
                continue
            nsets = f["kh"] * f["kw"] * _set_groups(cfg, f)
            step = max(P, wps)
            for t in range(f["n_mtiles"]):
                t0 = sim.now
                yield self.drained.ge(g - 1)              # its accumulator bank is free
                if sim.now > t0:
                    causes["store"] = sim.now + cal.c_after_wait
                causes["reload"] = next_ok
                left = nsets
                first_set = True
                while left > 0:
                    p = self.pkgs[pk]
                    if p.sets > left:
                        raise CycleModelError(f"pixel tile {n}: a weight package spans mtiles")
                    yield p.ready
                    avail = p.ready.time + cal.wb_word    # the package's first word on wout
                    load = max(last_swap, avail)          # its first set's words load from here
                    causes["weights"] = load + wps
                    s0 = max(t_fsm if first_set else -math.inf, *causes.values())
                    _attribute(tile.gaps, prev_end, s0, t_fsm if first_set else prev_end,
                               causes)
                    if tile.pe_beats == 0:
                        tile.compute_start = s0
                    last = s0 + (p.sets - 1) * step
                    if step > P and p.sets > 1:
                        for k in range(p.sets - 1):
                            tile.gaps.append((s0 + k * step + P, s0 + (k + 1) * step, "reload"))
                    # the package's last word goes to the shadow registers behind the swap of
                    # its second-to-last set (of the previous set for a one-set package)
                    free_at = (last - step if p.sets > 1 else load) + wps
                    sim.trigger(p.free, free_at)
                    tile.pe_beats += p.sets * P
                    prev_end, last_swap = last + P, last
                    causes = {"reload": last + step}
                    left -= p.sets
                    pk += 1
                    first_set = False
                    yield max(0.0, last - sim.now)
                next_ok = last + step
                t_fsm = prev_end + cal.c_mtile_gap
                causes = {}
                sim.trigger(self.pe_done[g], prev_end + self.pe_latency)
                g += 1
            yield max(0.0, prev_end - sim.now)
            tile.compute_end = prev_end
            yield cal.c_done
            if not f["keep"]:                             # else the next COMPUTE reads its half
                self.c_done.incr()
            self.unit_end["c"] = sim.now
            n += 1

    def _pool_compute(self, f, tile, g, t_fsm, prev_end):
        """The pooling unit's mtiles of one COMPUTE (hdl/pool.py): a window's beats one a
        cycle; a window's last beat waits while the staging register still drains (``n_out``
        beats, each taken by the STORE's join once it reached the mtile)."""
        cal, sim, cfg = self.cal, self.sim, self.cfg
        K = f["kh"] * f["kw"]
        P = f["out_h"] * f["out_w"]
        ppg = cfg.lanes_pad // cfg.tn
        L = math.lcm(cfg.tn, cfg.post_lanes)
        n_in, n_out = L // cfg.tn, L // cfg.post_lanes
        W = P * ppg
        for t in range(f["n_mtiles"]):
            t0 = sim.now
            yield self.drained.ge(g - 1)
            first = max(t_fsm, sim.now + cal.c_after_wait if sim.now > t0 else -math.inf)
            if tile.pe_beats == 0 and t == 0:
                tile.compute_start = first
            tile.gaps.append((prev_end, first, "other"))
            e = first + K - 1             # the first window's emit beat
            free = -math.inf              # the staging register is empty from here
            join = None
            d = -math.inf
            for i in range(W):
                if i:
                    e = e + K
                if i % n_in == 0:
                    e = max(e, free)
                if i % n_in == n_in - 1:
                    if join is None:
                        yield self.pool_join[g]
                        join = self.pool_join[g].time
                    d = max(e + 1, join, d + 1)           # the first drain beat joined
                    d = d + n_out - 1                     # the last one
                    free = d + 1
            if W % n_in:
                if join is None:
                    yield self.pool_join[g]
                    join = self.pool_join[g].time
                d = max(e + 1, join, d + 1) + n_out - 1
            prev_end = e + 1
            tile.gaps.append((first, prev_end, "pooling"))
            sim.trigger(self.pool_end[g], d)
            yield max(0.0, prev_end - sim.now)
            t_fsm = prev_end + cal.c_mtile_gap
            g += 1
        return g, prev_end

    def store(self):
        cal, sim, cfg, mem = self.cal, self.sim, self.cfg, self.mem
        G = self.groups
        # post_groups > 1: the join takes Gj cycles a pixel; its output beats leave one a
        # cycle through a register (ser: one more cycle of latency)
        Gj = G // cfg.post_groups
        ser = int(cfg.post_groups > 1)
        g = 0
        n = 0
        while True:
            f = yield from self._take("s")
            tile = self.tiles[n]
            P = f["pixels"]
            # vertical pooling (Store.vpool): P_w pixels written, two more stages of latency
            P_w, vl = (f["vp_pixels"], 2) if f["vpool"] else (P, 0)
            contiguous = f["out_stride"] == cfg.lanes_pad and f["n_mtiles"] == 1
            # cycles a pixel: G groups; one write command a pixel unless contiguous (IDLE,
            # CHECK, one cycle a burst)
            pix = float(G if contiguous else max(G, 2 + -(-G // cfg.max_burst)))
            yield cal.s_params
            if f["lut_en"]:
                # the lookup table and its trailer before the first parameter read (LUT_CMD,
                # LUT, LUT_TRAILER)
                yield self._read(_STORE, self.lut_beats, 1.0, sim.now).ev
                yield cal.s_lut
            last_w = sim.now
            for t in range(f["n_mtiles"]):
                yield self._read(_STORE, self.param_beats, 1.0, sim.now).ev
                if f["pool"]:
                    yield cal.s_drain
                    sim.trigger(self.pool_join[g], sim.now)
                    yield self.pool_end[g]
                    d_last = self.pool_end[g].time          # the last result beat joined
                    data_last = d_last + self.pp_latency + 1 + ser
                    if contiguous:
                        # one write command; its last burst leaves once all its beats are in
                        n_beats = P * G
                        last_burst = n_beats % cfg.max_burst or cfg.max_burst
                        drained = d_last + 2
                        last_w = data_last + last_burst + 1
                    else:
                        last_cmd = data_last - pix + 2
                        drained = max(last_cmd, d_last + 1) + 1
                        last_w = data_last + 2
                    yield max(0.0, drained - sim.now)
                    self.drained.incr()
                    g += 1
                    continue
                yield self.pe_done[g]
                yield cal.s_drain
                d0 = sim.now                              # first drain command
                res_done = 0.0
                j_first = d0 + cal.s_join                 # the join takes pixel 0
                if f["res_en"]:
                    # the tile's residual rows: one read; the row writer keeps at most two
                    # rows ahead of the join, which takes a pixel once its row is complete
                    rb = f["res_beats"]
                    rows = [_Event() for _ in range(P)]
                    room = [_Event() for _ in range(P)]
                    rchk, fifo = f["res_chk_beats"], cfg.read_fifo_beats
                    ms = {(i + 1) * rb - 1: rows[i] for i in range(P)}
                    k_iss = P * rb - fifo - 1        # the rows' last burst requested after it
                    if rchk and k_iss >= 0 and k_iss not in ms:
                        ms[k_iss] = _Event()
                    self._read(_STORE, P * rb, 1.0, d0,
                               gates={(i + 2) * rb: room[i] for i in range(P - 2)},
                               milestones=dict(ms))
                    if rchk:
                        # the rows' check entries: their command once the rows' last burst is
                        # requested, their beats after the last row
                        box, started = [], _Event()

                        def starter(t0=d0 + -(-(P * rb) // cfg.max_burst), ev=ms.get(k_iss)):
                            if ev is not None:
                                yield ev
                            yield max(0.0, t0 - sim.now)
                            box.append(self._read(_STORE, rchk, 1.0, sim.now,
                                                  gates={0: rows[P - 1]}))
                            sim.trigger(started)
                        sim.spawn(starter())
                    j = j_first - pix
                    for i in range(P):
                        yield rows[i]
                        j = max(j + pix, sim.now + cal.s_res)
                        if i == 0:
                            j_first = j
                        sim.trigger(room[i], j + Gj)
                    j_last = j
                    if rchk:
                        yield started
                        yield box[0].ev
                        res_done = sim.now + 1            # the compare, then DRAIN ends
                else:
                    # (the rows vertical pooling does not write need no write commands)
                    j_last = j_first + (P - 1) * pix - (P - P_w) * (pix - Gj)
                if contiguous:
                    # one write command: bursts leave once max_burst beats are in the FIFO
                    n_beats = P_w * G
                    first = j_first + self.pp_latency + 1 + vl + ser
                    if f["vpool"] and f["vp_y0"] % 2 == 0 and f["vp_y0"] != f["vp_h"] - 1:
                        first += f["vp_cols"] * Gj        # the tile's first row is not written
                    drained = max(j_last + Gj + 1, res_done)
                    last_w = max(first + min(cfg.max_burst, n_beats) + n_beats,
                                 j_last + G + self.pp_latency + 2 + vl + ser)
                else:
                    # pixel i is in the write FIFO G - 1 cycles after its first result; the
                    # command of pixel i + 1 is accepted two cycles later (AW, IDLE); a lone
                    # command at once
                    data_last = j_last + self.pp_latency + G + vl + ser
                    last_cmd = d0 if P_w == 1 else data_last - pix + 2
                    drained = max(max(last_cmd, j_last + Gj) + 1, res_done)
                    last_w = data_last + 2
                yield max(0.0, drained - sim.now)
                self.drained.incr()
                g += 1
            n_ent = _store_entries(f)
            if n_ent:
                # AFTER (the last beat hashed), then per check entry its command and its beat
                if f["chk_stride"] == 1:         # one command: a beat a cycle
                    last_w = max(last_w, sim.now + 1) + cal.s_entry_cmd + n_ent
                else:
                    last_w = max(last_w, sim.now + 1) + cal.s_entry_cmd * n_ent
            yield max(0.0, last_w + mem.write_latency + cal.s_ack - sim.now)
            tile.store_done = sim.now
            self.s_done.incr()
            self.unit_end["s"] = sim.now
            n += 1

    def run(self) -> float:
        for gen in (self.fetch(), self.act_loader(), self.weight_loader(),
                    self.weight_filler(), self.compute(), self.store()):
            self.sim.spawn(gen)
        self.sim.run()
        n = len(self.tiles)
        if self.fetch_end is None:
            raise CycleModelError("the program has no END, or the schedule deadlocked before it")
        if self.s_done.value != n or self.c_done.value != (self.load_of[-1] + 1 if n else 0):
            raise CycleModelError(
                f"the schedule deadlocked: {self.la_done.value} LOAD_ROWS, {self.c_done.value} "
                f"COMPUTE, {self.s_done.value} STORE of {n} completed")
        return max(self.fetch_end, *self.unit_end.values()) + self.cal.end


def _decode_program(image: bytes, base: int, prog_addr: int, n_instr: int) -> list:
    ib = INSTR_BITS // 8
    out = []
    for i in range(n_instr):
        off = prog_addr - base + i * ib
        if off < 0 or off + ib > len(image):
            raise CycleModelError(f"instruction {i} at 0x{prog_addr + i * ib:08x} is outside "
                                  f"the memory image")
        try:
            op, fields = decode(bytes(image[off:off + ib]))
        except ValueError as e:
            raise CycleModelError(f"instruction {i} at 0x{prog_addr + i * ib:08x}: {e}") from None
        out.append((op, fields))
        if op == Opcode.END:
            return out
    raise CycleModelError(f"the program at 0x{prog_addr:08x} has no END in its {n_instr} "
                          f"instructions")


def _store_entries(f) -> int:
    """Activation check entries (one beat an output row) a STORE writes after its data."""
    rp = f["chk_row_pixels"]
    return -(-_written(f) // rp) if rp else 0


def _written(f) -> int:
    """Pixels a STORE writes per mtile (the pooled ones with ``vpool``)."""
    return f["vp_pixels"] if f["vpool"] else f["pixels"]


def _instr_bytes(cfg: HWConfig, op, f) -> tuple[int, int]:
    """DMA bytes (read, written) of one instruction (the program fetch excluded)."""
    bb = cfg.beat_bytes
    if op == Opcode.LOAD_ROWS:
        return (f["beats"] + f["chk_beats"]) * bb, 0     # the rows and their check entries
    if op == Opcode.LOAD_WEIGHTS:
        return f["beats"] * bb, 0
    if op == Opcode.STORE:
        rd = f["n_mtiles"] * params_block_bytes(cfg.lanes_pad)
        if f["lut_en"]:
            rd += lut_block_bytes(cfg.act_bits)
        if f["res_en"]:
            rd += f["n_mtiles"] * (f["pixels"] * f["res_beats"] + f["res_chk_beats"]) * bb
        return rd, (f["n_mtiles"] * _written(f) * -(-cfg.lanes // cfg.post_lanes)
                    + _store_entries(f)) * bb
    return 0, 0


def estimate_program(config: HWConfig, image: bytes, base: int, prog_addr: int, n_instr: int,
                     *, memory: MemoryTiming = MemoryTiming(),
                     calibration: Calibration = Calibration(),
                     tile_layers: list | None = None, mac: bool = False) -> ProgramTiming:
    """Model one accelerator program of ``n_instr`` instructions at ``prog_addr``.

    Parameters
    ----------
    config : HWConfig
        The configuration the program was compiled for.
    image : bytes-like
        The memory image at ``base`` (the program, its weight packages).
    tile_layers : list of str, optional
        The layer of every pixel tile, in program order (:attr:`TileTiming.layer`).
    mac : bool
        The weight packages carry SipHash-2-4 tags and the MAC check is on (``MAC_CTRL``): the
        weight fill's slower schedule (:meth:`_Model.weight_filler`).

    Returns
    -------
    ProgramTiming
        ``counters``: ``cycles`` (the model), ``pe_busy``, ``bytes_read``, ``bytes_written``,
        ``instructions`` (exact, as the hardware counts them).

    Raises
    ------
    CycleModelError
        The program is not one the compiler emits (no END, unmatched instructions, bad weight
        packages, addresses outside the image).
    """
    if not isinstance(config, HWConfig):
        raise IlmpqValueError(f"config must be an HWConfig, not {type(config).__name__}")
    instrs = _decode_program(image, base, prog_addr, n_instr)
    m = _Model(config, instrs, image, base, memory, calibration, tile_layers, mac=mac)
    cycles = m.run()
    rd = len(instrs) * (INSTR_BITS // 8)
    wr = 0
    for op, f in instrs:
        r, w = _instr_bytes(config, op, f)
        rd, wr = rd + r, wr + w
    counters = {
        "cycles": int(round(cycles)),
        "pe_busy": sum(t.pe_beats for t in m.tiles),
        "bytes_read": rd,
        "bytes_written": wr,
        "instructions": sum(op not in (Opcode.NOP, Opcode.END) for op, _ in instrs),
    }
    return ProgramTiming(counters["cycles"], counters, m.tiles, read_busy=m.chan.busy)


def estimate(compiled, *, memory: MemoryTiming = MemoryTiming(),
             calibration: Calibration = Calibration()) -> CycleEstimate:
    """Model every accelerator program of a :class:`~ilmpq.firmware.compiler.Compiled`.

    A model compiled with a MAC key (``compiled.mac_nonce``) runs with the MAC check on, as the
    drivers program it. Returns a :class:`CycleEstimate` with one :class:`ProgramTiming` per
    accelerator program and one :class:`LayerTiming` per layer of the compiled model, in its
    order (CPU and free layers included, with ``cycles = 0``).
    """
    from .compiler import AccelStep
    cfg = compiled.config
    reports = {r.name: r for r in compiled.layers}
    layers, by_name = [], {}
    for r in compiled.layers:
        lt = LayerTiming(r.name, r.kind, r.where, tuple(r.out_shape), macs=r.macs)
        layers.append(lt)
        by_name[r.name] = lt
    programs = []
    for k, step in enumerate(s for s in compiled.steps if isinstance(s, AccelStep)):
        # the layer of each pixel tile: in layer order, unless the compiler interleaved the
        # tiles of two layers that share their loads (AccelStep.tile_layers)
        names = step.tile_layers or [name for name in step.layers
                                     for _ in range(reports[name].ptiles)]
        pt = estimate_program(cfg, compiled.image, compiled.base, step.prog_addr, step.n_instr,
                              memory=memory, calibration=calibration, tile_layers=names,
                              mac=compiled.mac_nonce is not None)
        instrs = _decode_program(compiled.image, compiled.base, step.prog_addr, step.n_instr)
        tile_bytes = []
        for (op, f), t in zip(instrs, pixel_tiles(instrs)):
            if t >= len(tile_bytes):
                tile_bytes.append([0, 0])
            if tile_bytes:
                r, w = _instr_bytes(cfg, op, f)
                tile_bytes[-1][0] += r
                tile_bytes[-1][1] += w
        prev = 0.0
        for name in step.layers:
            lt = by_name[name]
            idx = [i for i, t in enumerate(pt.tiles) if t.layer == name]
            lt.program = k
            lt.tiles = [pt.tiles[i] for i in idx]
            lt.pe_beats = sum(t.pe_beats for t in lt.tiles)
            lt.bytes_read = sum(tile_bytes[i][0] for i in idx)
            lt.bytes_written = sum(tile_bytes[i][1] for i in idx)
            lt.start = prev
            lt.end = prev = max(t.store_done for t in lt.tiles)
            pt.layers.append(lt)
        pt.layers[-1].end = float(pt.cycles)
        if step.tile_layers:
            _interleaved(pt, names)
        for lt in pt.layers:
            lt.cycles = (sum(b - a for a, b in lt.intervals) if lt.intervals
                         else lt.end - lt.start)
            lt.breakdown = _breakdown(lt, cfg)
        programs.append(pt)
    return CycleEstimate(cfg, memory, programs, layers)


def _interleaved(pt: ProgramTiming, names: list):
    """The cycles of two layers whose tiles alternate (``names``: the layer of each tile, in
    program order; convs sharing their loads): the run of alternating tiles is one window from
    the first layer's ``start`` to the last one's ``end``, cut at the end of each tile's PE
    beats, each piece to its tile's layer (the last piece runs to the window's end);
    :attr:`LayerTiming.intervals`."""
    by_name = {lt.name: lt for lt in pt.layers}
    i = 0
    while i + 2 < len(names):
        if names[i] == names[i + 1] or names[i] != names[i + 2]:
            i += 1
            continue
        j = i + 3
        while j < len(names) and names[j] == names[j - 2]:
            j += 1
        lts = [by_name[names[i]], by_name[names[i + 1]]]
        a = start = min(lt.start for lt in lts)
        end = max(lt.end for lt in lts)
        for q in range(i, j):
            b = end if q == j - 1 else min(end, max(a, pt.tiles[q].compute_end))
            by_name[names[q]].intervals.append((a, b))
            a = b
        for lt in lts:                    # both span the pair's window
            lt.start, lt.end = start, end
        i = j


def _breakdown(lt: LayerTiming, cfg: HWConfig) -> dict:
    """Split a layer's cycles into :data:`CAUSES` (they add up to ``lt.cycles``)."""
    out = dict.fromkeys(CAUSES, 0.0)
    beats = sum(t.pe_beats for t in lt.tiles)
    out["compute"] = lt.macs / cfg.macs_per_cycle
    out["padding"] = beats - out["compute"]
    last_beat = max(t.compute_end for t in lt.tiles)
    spans = lt.intervals or [(lt.start, lt.end)]
    for t in lt.tiles:
        for a, b, cause in t.gaps:
            for s0, s1 in spans:
                lo, hi = max(a, s0), min(b, s1)
                if hi > lo:
                    out[cause] += hi - lo
    # with the fine-grained layer barrier a layer's first tiles overlap the previous layer's
    # last ones, so some of its beats fall before ``lt.start``: the drain then gets what is
    # left of the window (the causes still add up to ``lt.cycles`` and none is negative)
    rest = lt.cycles - sum(v for k, v in out.items() if k != "drain")
    drain = sum(max(0.0, s1 - max(last_beat, s0)) for s0, s1 in spans)
    out["drain"] = max(0.0, min(drain, rest))
    out["other"] += lt.cycles - sum(out.values())
    return out
