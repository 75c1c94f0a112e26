"""A simulated AXI4 subordinate memory for Amaranth testbenches.

:class:`AXIMemory` serves one AXI4 manager port (for example ``DMA.bus``) from a byte array with
a base address. In ``"deterministic"`` mode it follows the timing of ``docs/memory_model.md``
exactly (the Verilator harness implements the same timing in C++), so cycle counts can be
asserted. In ``"random"`` mode (seeded) it adds ``ready`` gaps on AR/AW/W, random latencies,
``rvalid`` gaps inside bursts and, optionally, reordering of read and write responses across IDs.
Both modes inject error responses per burst and check the manager's side of the protocol; a
violation raises :class:`AssertionError` naming the rule, the channel and the cycle. Both can
also play a faulty subordinate that breaks the protocol on one burst (``faults``: an extra R
beat, a missing or early RLAST, a wrong RID or BID, a B before the burst's W data) or stops
answering altogether (``"silent"``, ``"silent_request"``) until :meth:`AXIMemory.reset_bus`
(the interconnect's reset).

Usage::

    mem = AXIMemory(dut.bus, base=0x1000_0000, size=64 * 1024)
    mem.write(0x1000_0000, payload)
    sim = Simulator(dut); sim.add_clock(1e-8)
    mem.add_to(sim)                         # a background testbench
    sim.add_testbench(my_testbench)
    sim.run()
    assert mem.read(0x1000_0100, 64) == expected

Timing interpretation (the parts ``docs/memory_model.md`` leaves implicit): the model is a Moore
machine. The values it drives for the clock edge ``t`` (``arready``, ``rvalid``, ...) depend only on
its state after edge ``t - 1``, never combinationally on the manager's signals. So a burst counts
against ``Q`` from the edge after its AR/AW handshake until the edge of its last R beat / its B
handshake (inclusive), a W beat can transfer at the earliest on the edge after its AW handshake,
and read data is taken from the memory when a beat is first presented. Edges are numbered from 0
(the first edge after the simulation starts); :attr:`cycle` is the number of the next edge.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ilmpq.hdl.axi import AXIBurst, AXIResp

__all__ = ["AXIMemory", "AXITransaction", "AXIProtocolError", "memory_ports",
           "DEFAULT_READ_LATENCY"]

#: Deterministic read latency RL of the test memory (``docs/memory_model.md``). The realistic
#: figure for a Zynq-7000 HP port to PS DDR3 is
#: :data:`ilmpq.firmware.cyclemodel.ZYNQ_HP_READ_LATENCY`; pass it as ``read_latency``.
DEFAULT_READ_LATENCY = 8

BOUNDARY = 4096


class AXIProtocolError(AssertionError):
    """A protocol rule broken by the manager (or an access outside the memory)."""


@dataclass
class AXITransaction:
    """One burst as the memory saw it (an entry of :attr:`AXIMemory.log`)."""

    kind: str                   #: ``"r"`` or ``"w"``
    index: int                  #: acceptance order on its channel, from 0
    id: int
    addr: int
    beats: int
    accepted: int               #: edge of the AR / AW handshake
    resp: AXIResp = AXIResp.OKAY
    completed: int | None = None  #: edge of the last R beat / of the B handshake
    # internal state
    beat: int = 0
    ready_at: int = 0           #: earliest edge of the first R beat / of B
    w_last: int | None = None   #: edge of the last W beat (writes)
    fault: str | None = None    #: the protocol fault injected on this burst (``faults``)


@dataclass
class _Channel:
    """Last sampled manager payload of one channel, for the stability checks."""

    valid: bool = False
    ready: bool = False
    payload: tuple = ()


class AXIMemory:
    """AXI4 subordinate memory model (testbench coroutine).

    Parameters
    ----------
    bus : interface
        The manager's AXI4 port object (members of :class:`ilmpq.hdl.axi.AXI4Signature`). The
        model drives ``*ready`` of AR/AW/W and ``r*``/``b*``; it samples the rest.
    base : int
        Byte address of ``data[0]``.
    size : int, optional
        Bytes of memory (zero-filled); or give ``data`` or ``share``.
    data : array-like of uint8, optional
        Initial contents (copied).
    share : AXIMemory, optional
        Serve another port of the same memory: this model uses ``share``'s byte array and base
        (no copy), with its own timing, queue, error injection and log. A write on one port is
        visible to reads on every port as soon as its W beat transfers.
    mode : {"deterministic", "random"}
        Timing, see the module docstring and ``docs/memory_model.md``.
    rng : numpy.random.Generator or int, optional
        Required in random mode (a generator or a seed).
    seed : int, optional
        Same as an integer ``rng`` (either may be given).
    read_latency, write_latency, queue : int
        Deterministic parameters RL, WL, Q (defaults 8, 4, 8 as in ``docs/memory_model.md``).
        ``queue`` also bounds outstanding bursts in random mode.
    max_burst : int
        Longest burst the model accepts (16).
    stall : float
        Random mode: probability of a ready gap on AR/AW/W in a cycle, and of a gap after an R
        beat or before a B response.
    read_latency_range, write_latency_range : (int, int)
        Random mode: inclusive range of the per-burst latency (AR handshake to first R beat,
        last W beat to B).
    reorder : bool
        Random mode: serve read bursts and answer write bursts out of order across IDs (the
        oldest burst of each ID is eligible, a random one is served). AXI allows it; per ID the
        order is kept.
    errors : dict, optional
        ``{("r" | "w", burst_index): AXIResp.SLVERR | AXIResp.DECERR}`` (strings accepted):
        that read burst (acceptance order, from 0) returns the response on all its beats with
        zero data; that write burst gets the BRESP and does not change the memory.
    faults : dict, optional
        ``{("r" | "w", burst_index): kind}``, protocol violations of the subordinate on that
        burst (the index counts requests in acceptance order, as ``errors``). Read kinds:
        ``"extra_beat"`` (one more beat after the RLAST beat, same RID, RLAST high, the last
        beat's data), ``"no_rlast"`` (RLAST low on the last beat), ``"early_rlast"`` (RLAST on
        the second-to-last beat, and the burst ends there: needs 2 beats or more),
        ``"wrong_rid"`` (the first beat carries the RID with its top bit flipped; the burst
        counts it as one of its beats). Write kinds: ``"wrong_bid"`` (BID with bit 0 flipped),
        ``"early_b"`` (B one cycle after the AW handshake, before any W beat; the W beats are
        still accepted and written). Both channels: ``"silent"`` (the burst is accepted, then
        the subordinate never raises a ready or a valid again on any channel) and
        ``"silent_request"`` (the burst's request is never accepted, then the same silence).
        Silence lasts until :meth:`reset_bus`, and while silent the model does not check the
        manager's stability (a manager may give up on a dead bus).
    name : str
        Used in error messages.
    """

    def __init__(self, bus, *, base: int = 0, size: int | None = None, data=None,
                 mode: str = "deterministic", rng=None, seed: int | None = None,
                 share: "AXIMemory | None" = None, read_latency: int = DEFAULT_READ_LATENCY,
                 write_latency: int = 4, queue: int = 8, max_burst: int = 16,
                 stall: float = 0.3, read_latency_range=(1, 20), write_latency_range=(1, 10),
                 reorder: bool = False, errors: dict | None = None, faults: dict | None = None,
                 name: str = "axi_mem"):
        if not (isinstance(read_latency, int) and read_latency >= 1):
            raise ValueError(f"AXIMemory read_latency must be an integer >= 1, not "
                             f"{read_latency!r}")
        if mode not in ("deterministic", "random"):
            raise ValueError(f"AXIMemory mode must be 'deterministic' or 'random', not {mode!r}")
        if (size is not None) + (data is not None) + (share is not None) != 1:
            raise ValueError("AXIMemory needs exactly one of size=, data= or share=")
        if share is not None:
            self.data = share.data
            base = share.base
        elif data is not None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = np.frombuffer(bytes(data), dtype=np.uint8)
            self.data = np.array(data, dtype=np.uint8).reshape(-1).copy()
        else:
            self.data = np.zeros(int(size), dtype=np.uint8)
        self.bus = bus
        self.base = int(base)
        self.size = len(self.data)
        self.beat_bytes = len(bus.wdata) // 8
        self.size_code = self.beat_bytes.bit_length() - 1
        self.mode = mode
        if seed is not None:
            if rng is not None:
                raise ValueError("AXIMemory takes rng= or seed=, not both")
            rng = seed
        if mode == "random":
            if rng is None:
                raise ValueError("AXIMemory in random mode needs rng= (a Generator or a seed) "
                                 "or seed=")
            self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        else:
            if reorder:
                raise ValueError("AXIMemory: reorder=True needs mode='random'")
            self.rng = None
        self.read_latency = read_latency
        self.write_latency = write_latency
        self.queue = queue
        self.max_burst = max_burst
        self.stall = stall
        self.read_latency_range = read_latency_range
        self.write_latency_range = write_latency_range
        self.reorder = reorder
        self.errors = {}
        for (kind, index), resp in (errors or {}).items():
            if kind not in ("r", "w"):
                raise ValueError(f"AXIMemory error key channel must be 'r' or 'w', not {kind!r}")
            resp = AXIResp[resp] if isinstance(resp, str) else AXIResp(resp)
            if resp not in (AXIResp.SLVERR, AXIResp.DECERR):
                raise ValueError(f"AXIMemory injects SLVERR or DECERR, not {resp!r}")
            self.errors[(kind, int(index))] = resp
        self.faults = {}
        for (kind, index), f in (faults or {}).items():
            allowed = self.READ_FAULTS if kind == "r" else self.WRITE_FAULTS
            if kind not in ("r", "w") or f not in allowed:
                raise ValueError(f"AXIMemory fault {(kind, index)!r}: {f!r} is not allowed; "
                                 f"read faults: {', '.join(self.READ_FAULTS)}; write faults: "
                                 f"{', '.join(self.WRITE_FAULTS)}")
            self.faults[(kind, int(index))] = f
        self.id_width = len(bus.rid)
        self.silent = False         #: a "silent" fault struck: nothing is answered any more
        self.silent_since: int | None = None
        self.name = name

        #: every burst accepted, in acceptance order (reads and writes interleaved)
        self.log: list[AXITransaction] = []
        self.read_bursts = 0        #: read bursts fully returned
        self.read_beats = 0
        self.write_bursts = 0       #: write bursts answered on B
        self.write_beats = 0
        self.cycle = 0              #: number of the next clock edge

        self._reads: list[AXITransaction] = []     # accepted, not fully returned
        self._r_cur: AXITransaction | None = None
        self._r_data = 0
        self._r_gap_until = 0
        self._e_last = -(10**9)                    # edge of the previous last R beat
        self._writes: list[AXITransaction] = []    # accepted, not answered on B
        self._w_queue: deque[AXITransaction] = deque()  # accepted, W not complete
        self._b_cur: AXITransaction | None = None
        self._b_last = -(10**9)
        self._n_reads = 0
        self._n_writes = 0
        self._drv = {}              # signal name -> value driven for the coming edge
        self._set_cache = {}
        self._ch = {"AR": _Channel(), "AW": _Channel(), "W": _Channel()}

    READ_FAULTS = ("extra_beat", "no_rlast", "early_rlast", "wrong_rid", "silent",
                   "silent_request")
    WRITE_FAULTS = ("wrong_bid", "early_b", "silent", "silent_request")

    def reset_bus(self) -> None:
        """The interconnect's reset: forget every burst in flight, end a silence, keep the
        memory contents, the log and the statistics (what the host does after the accelerator
        set STATUS.bus_abandoned)."""
        self._reads.clear()
        self._r_cur = None
        self._writes.clear()
        self._w_queue.clear()
        self._b_cur = None
        self.silent = False
        self.silent_since = None
        self._ch = {"AR": _Channel(), "AW": _Channel(), "W": _Channel()}

    def _go_silent(self) -> None:
        if not self.silent:
            self.silent = True
            self.silent_since = self.cycle

    # -- memory access for tests ----------------------------------------------------------------

    def _offset(self, addr: int, n: int) -> int:
        off = addr - self.base
        if off < 0 or off + n > self.size:
            raise ValueError(f"{self.name}: [{addr:#x}, {addr + n:#x}) is outside the memory "
                             f"[{self.base:#x}, {self.base + self.size:#x})")
        return off

    def write(self, addr: int, payload) -> None:
        """Write bytes (``bytes`` or a uint8 array) at a byte address."""
        b = np.frombuffer(bytes(payload), dtype=np.uint8) if not isinstance(
            payload, np.ndarray) else payload.astype(np.uint8).reshape(-1)
        off = self._offset(addr, len(b))
        self.data[off:off + len(b)] = b

    def read(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes at a byte address."""
        off = self._offset(addr, n)
        return self.data[off:off + n].tobytes()

    def transactions(self, kind: str | None = None) -> list[AXITransaction]:
        """The log, optionally only reads (``"r"``) or writes (``"w"``)."""
        return [t for t in self.log if kind is None or t.kind == kind]

    # -- simulation -----------------------------------------------------------------------------

    def add_to(self, sim) -> None:
        """Add the model to a simulator as a background testbench."""
        sim.add_testbench(self.run, background=True)

    def _fail(self, rule: str, channel: str, detail: str = ""):
        raise AXIProtocolError(f"{self.name}: AXI rule broken on the {channel} channel at cycle "
                               f"{self.cycle}: {rule}" + (f" ({detail})" if detail else ""))

    def _stalled(self) -> bool:
        return self.rng is not None and self.rng.random() < self.stall

    def _latency(self, rng_range) -> int:
        return int(self.rng.integers(rng_range[0], rng_range[1] + 1))

    def _eligible(self, pending: list[AXITransaction]) -> list[AXITransaction]:
        """Bursts that may be served next: the head, or with reorder the oldest of each ID."""
        if not pending:
            return []
        if not self.reorder:
            return [pending[0]]
        seen, out = set(), []
        for t in pending:
            if t.id not in seen:
                seen.add(t.id)
                out.append(t)
        return out

    def _beat_data(self, t: AXITransaction) -> int:
        if t.resp != AXIResp.OKAY:
            return 0
        off = self._offset(t.addr + t.beat * self.beat_bytes, self.beat_bytes)
        return int.from_bytes(self.data[off:off + self.beat_bytes].tobytes(), "little")

    def _compute_outputs(self) -> None:
        c = self.cycle
        d = self._drv
        if self.silent:
            d.update(arready=0, awready=0, wready=0, rvalid=0, bvalid=0)
            return
        d["arready"] = int(len(self._reads) < self.queue and not self._stalled())
        d["awready"] = int(len(self._writes) < self.queue and not self._stalled())
        d["wready"] = int(bool(self._w_queue) and not self._stalled())
        # the request a "silent_request" fault names is never accepted
        if self.faults.get(("r", self._n_reads)) == "silent_request":
            d["arready"] = 0
        if self.faults.get(("w", self._n_writes)) == "silent_request":
            d["awready"] = 0

        # R
        if self._r_cur is None and c >= self._r_gap_until:
            cands = [t for t in self._eligible(self._reads)
                     if c >= t.ready_at and c >= self._e_last + 1]
            if cands:
                pick = (cands[int(self.rng.integers(len(cands)))] if len(cands) > 1 else cands[0])
                self._r_cur = pick
                self._r_data = self._beat_data(pick)
        t = self._r_cur
        if t is not None and c >= self._r_gap_until:
            rid, rlast = t.id, t.beat == t.beats - 1
            if t.fault == "no_rlast":
                rlast = False
            elif t.fault == "early_rlast":
                rlast = t.beat == t.beats - 2
            elif t.fault == "extra_beat":
                rlast = t.beat >= t.beats - 1
            elif t.fault == "wrong_rid" and t.beat == 0:
                rid = t.id ^ (1 << (self.id_width - 1))
            d.update(rvalid=1, rid=rid, rdata=self._r_data, rresp=int(t.resp),
                     rlast=int(rlast))
        else:
            d["rvalid"] = 0

        # B
        if self._b_cur is None:
            done = [t for t in self._writes if t.w_last is not None or t.fault == "early_b"]
            cands = [t for t in self._eligible(done)
                     if c >= t.ready_at and c >= self._b_last + 1]
            if cands:
                self._b_cur = (cands[int(self.rng.integers(len(cands)))] if len(cands) > 1
                               else cands[0])
        t = self._b_cur
        if t is not None:
            bid = t.id ^ 1 if t.fault == "wrong_bid" else t.id
            d.update(bvalid=1, bid=bid, bresp=int(t.resp))
        else:
            d["bvalid"] = 0

    def _drive(self, ctx) -> None:
        self._compute_outputs()
        for name, v in self._drv.items():
            if self._set_cache.get(name) != v:
                ctx.set(getattr(self.bus, name), v)
                self._set_cache[name] = v

    def _check_stable(self, ch: str, valid: bool, payload: tuple, ready: bool) -> None:
        prev = self._ch[ch]
        if prev.valid and not prev.ready and not self.silent:
            if not valid:
                self._fail(f"{ch.lower()}valid dropped before {ch.lower()}ready", ch)
            if payload != prev.payload:
                self._fail("payload changed while valid and not ready", ch,
                           f"was {prev.payload}, now {payload}")
        prev.valid, prev.ready, prev.payload = valid, ready, payload

    def _check_burst(self, ch: str, addr: int, length: int, size: int, burst: int) -> None:
        beats = length + 1
        if beats > self.max_burst:
            self._fail(f"{ch.lower()}len + 1 = {beats} > {self.max_burst}", ch)
        if burst != AXIBurst.INCR:
            self._fail(f"burst type {burst} is not INCR", ch)
        if size != self.size_code:
            self._fail(f"{ch.lower()}size = {size} is not the bus width ({self.size_code})", ch)
        if addr % self.beat_bytes:
            self._fail(f"address {addr:#x} not aligned to the {self.beat_bytes}-byte bus "
                       f"(the model serves aligned bursts only)", ch)
        nbytes = beats * self.beat_bytes
        if addr // BOUNDARY != (addr + nbytes - 1) // BOUNDARY:
            self._fail(f"burst [{addr:#x}, {addr + nbytes:#x}) crosses a 4 KiB boundary", ch)
        if addr < self.base or addr + nbytes > self.base + self.size:
            self._fail(f"burst [{addr:#x}, {addr + nbytes:#x}) outside the memory "
                       f"[{self.base:#x}, {self.base + self.size:#x})", ch)

    def _edge(self, v: dict) -> None:
        c = self.cycle
        d = self._drv
        det = self.mode == "deterministic"

        # W (before AW: a W beat at this edge belongs to an AW accepted earlier)
        w_payload = (v["wdata"], v["wstrb"], v["wlast"])
        self._check_stable("W", v["wvalid"], w_payload, d["wready"])
        if v["wvalid"] and d["wready"]:
            t = self._w_queue[0]
            is_last = t.beat == t.beats - 1
            if bool(v["wlast"]) != is_last:
                self._fail(f"wlast = {v['wlast']} on beat {t.beat} of a {t.beats}-beat burst",
                           "W", f"awaddr {t.addr:#x}")
            if t.resp == AXIResp.OKAY:
                off = self._offset(t.addr + t.beat * self.beat_bytes, self.beat_bytes)
                new = np.frombuffer(int(v["wdata"]).to_bytes(self.beat_bytes, "little"),
                                    dtype=np.uint8)
                mask = np.array([(v["wstrb"] >> j) & 1 for j in range(self.beat_bytes)],
                                dtype=bool)
                seg = self.data[off:off + self.beat_bytes]
                seg[mask] = new[mask]
            t.beat += 1
            self.write_beats += 1
            if is_last:
                self._w_queue.popleft()
                t.w_last = c
                lat = self.write_latency if det else self._latency(self.write_latency_range)
                t.ready_at = c + lat

        # AW
        aw_payload = (v["awid"], v["awaddr"], v["awlen"], v["awsize"], v["awburst"])
        self._check_stable("AW", v["awvalid"], aw_payload, d["awready"])
        if v["awvalid"] and self.faults.get(("w", self._n_writes)) == "silent_request":
            del self.faults[("w", self._n_writes)]     # once
            self._go_silent()
        if v["awvalid"] and d["awready"]:
            self._check_burst("AW", v["awaddr"], v["awlen"], v["awsize"], v["awburst"])
            t = AXITransaction("w", self._n_writes, v["awid"], v["awaddr"], v["awlen"] + 1, c,
                               self.errors.get(("w", self._n_writes), AXIResp.OKAY))
            t.fault = self.faults.get(("w", self._n_writes))
            if t.fault == "early_b":
                t.ready_at = c + 1
            elif t.fault == "silent":
                self._go_silent()
            self._n_writes += 1
            self.log.append(t)
            self._writes.append(t)
            self._w_queue.append(t)

        # AR
        ar_payload = (v["arid"], v["araddr"], v["arlen"], v["arsize"], v["arburst"])
        self._check_stable("AR", v["arvalid"], ar_payload, d["arready"])
        if v["arvalid"] and self.faults.get(("r", self._n_reads)) == "silent_request":
            del self.faults[("r", self._n_reads)]     # once
            self._go_silent()
        if v["arvalid"] and d["arready"]:
            self._check_burst("AR", v["araddr"], v["arlen"], v["arsize"], v["arburst"])
            t = AXITransaction("r", self._n_reads, v["arid"], v["araddr"], v["arlen"] + 1, c,
                               self.errors.get(("r", self._n_reads), AXIResp.OKAY))
            t.fault = self.faults.get(("r", self._n_reads))
            if t.fault == "early_rlast" and t.beats < 2:
                self._fail(f"fault early_rlast on read burst {t.index} needs 2 beats or more, "
                           f"the burst has {t.beats}", "AR")
            if t.fault == "silent":
                self._go_silent()
            t.ready_at = c + (self.read_latency if det else
                              self._latency(self.read_latency_range))
            self._n_reads += 1
            self.log.append(t)
            self._reads.append(t)

        # R
        if d["rvalid"] and v["rready"]:
            t = self._r_cur
            self.read_beats += 1
            t.beat += 1
            n_sent = {"extra_beat": t.beats + 1, "early_rlast": t.beats - 1}.get(t.fault,
                                                                                 t.beats)
            if t.beat == n_sent:
                t.completed = c
                self._e_last = c
                self._reads.remove(t)
                self.read_bursts += 1
                self._r_cur = None
            elif t.beat < t.beats:
                self._r_data = self._beat_data(t)
            # else: the extra beat comes next and repeats the last beat's data
            if not det and self._stalled():
                self._r_gap_until = c + 1 + int(self.rng.integers(1, 4))

        # B
        if d["bvalid"] and v["bready"]:
            t = self._b_cur
            t.completed = c
            self._b_last = c
            self._writes.remove(t)
            self.write_bursts += 1
            self._b_cur = None
            if not det and self._stalled():
                self._b_last = c + int(self.rng.integers(1, 4))

    _SAMPLED = ("arvalid", "arid", "araddr", "arlen", "arsize", "arburst",
                "awvalid", "awid", "awaddr", "awlen", "awsize", "awburst",
                "wvalid", "wdata", "wstrb", "wlast", "rready", "bready")

    async def run(self, ctx) -> None:
        """The testbench coroutine (never returns; add it with ``background=True``)."""
        sigs = [getattr(self.bus, n) for n in self._SAMPLED]
        self._drive(ctx)
        async for _, _, *vals in ctx.tick().sample(*sigs):
            self._edge(dict(zip(self._SAMPLED, vals)))
            self.cycle += 1
            self._drive(ctx)


def memory_ports(buses, *, base: int = 0, size: int | None = None, data=None, seed=None,
                 errors: dict | None = None, name: str = "axi_mem", cls=None,
                 **kw) -> list["AXIMemory"]:
    """One :class:`AXIMemory` per manager port in ``buses``, all serving one byte array.

    Port ``p`` is named ``f"{name}{p}"`` (``name`` alone for port 0) and, in random mode, gets
    the seed ``seed + p`` (independent stalls per port). ``errors`` maps a port to that port's
    ``errors`` dict (``{port: {("r", burst_index): "SLVERR"}}``). ``cls`` is the model class
    (default :class:`AXIMemory`); the other keyword arguments go to every port.
    """
    cls = AXIMemory if cls is None else cls
    errors = dict(errors or {})
    bad = [p for p in errors if not (isinstance(p, int) and 0 <= p < len(buses))]
    if bad:
        raise ValueError(f"memory_ports: errors for ports {bad}, but there are {len(buses)} "
                         f"ports")
    ports = []
    for p, bus in enumerate(buses):
        src = dict(size=size, data=data, base=base) if p == 0 else dict(share=ports[0])
        ports.append(cls(bus, **src, seed=None if seed is None else seed + p,
                         errors=errors.get(p), name=name if p == 0 else f"{name}{p}", **kw))
    return ports
