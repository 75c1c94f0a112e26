"""Fault injection around the accelerator RTL in the Amaranth simulator.

:func:`run_fault` runs one compiled model on :class:`ProbedAccelerator` (the real
:class:`~ilmpq.hdl.top.Accelerator` with its latched error code visible to the testbench) through
the real :class:`~ilmpq.firmware.driver.Driver`, with a fault applied, then soft-resets the
accelerator, removes the fault and runs the same image again. Everything the robustness tests
assert on is recorded in an :class:`Outcome`:

* the exception the driver raised (class, ``code``, ``info``);
* the first clock edge at which STATUS.error_code was not NONE, and the code;
* every AXI read and write *request* (the edge its ``valid`` first rose), so a test can check
  that nothing new was issued after the error was latched;
* the bursts still outstanding at the end (AXI protocol checker);
* whether the guard memory around the DMA window (``GUARD`` random bytes on each side) is
  byte-for-byte unchanged;
* the recovery run's output tensors and performance counters.

Faults:

* ``read_fault``: in flight, on the AXI read data path (:class:`FaultyMemory`): a function
  ``(memory, beat_address, data) -> data`` called for every read beat; :func:`flip_read_bits`
  and :func:`remap_reads` build the usual ones (bit flips; duplicated, dropped, reordered
  packages or beats);
* ``stalls``: ``{("r" | "w", burst_index): extra_cycles}``: that read burst's first R beat / that
  write burst's B response comes later;
* ``errors``: ``{("r" | "w", burst_index): "SLVERR" | "DECERR"}``: error responses
  (:class:`~ilmpq.firmware.sim.models.axi_mem.AXIMemory`);
* ``faults``: ``{("r" | "w", burst_index): kind}``: the subordinate breaks the AXI protocol on
  that burst or goes silent (``faults`` of
  :class:`~ilmpq.firmware.sim.models.axi_mem.AXIMemory`); the checkers then record the
  subordinate's violations instead of failing and allow the accelerator to drop a request only
  after ``bus_timeout_cycles`` of silence; if the accelerator abandoned the bus
  (STATUS.bus_abandoned) the recovery resets the interconnect (every port's model and checker)
  and clears the bit first;
* ``rest_flips``: ``{byte address: mask}``: the DRAM cell flips right after the accelerator
  stored it (a fault at rest in a tensor a STORE wrote; :attr:`FaultyMemory.rest_hits`);
* ``corrupt``: ``f(image: bytearray)`` edits a copy of the memory image written before the run
  (a fault at rest in DRAM; the recovery reloads the good image);
* ``run``: replaces the faulty run (``async run(driver)``), e.g. to start a program with a bad
  length.

With several AXI ports (``HWConfig.axi_ports``) one memory serves all of them; the in-flight
faults, stalls and error responses are applied on the port ``port`` (burst indices count that
port's bursts), and the monitor, the log and the containment checks cover every port.

The AXI4 checker (window = the compiled window, one per port) and the AXI4-Lite checker watch
the whole simulation, faulty run included: a protocol violation or a burst outside the window
fails the test on the spot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ilmpq.firmware import wpkg
from ilmpq.firmware.compiler import AccelStep, Compiled
from ilmpq.firmware.driver import Driver
from ilmpq.firmware.sim.models.axi_checker import AXIChecker
from ilmpq.firmware.sim.models.axi_mem import AXIMemory, memory_ports
from ilmpq.firmware.sim.models.axil_checker import AXILiteChecker
from ilmpq.firmware.sim import simcache
from ilmpq.firmware.sim.simulate import AmaranthTransport, axi_buses, flat_bus
from ilmpq.golden import reference
from ilmpq.hdl.axi import AXI4LiteSignature, AXIResp
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode, encode, seal
from ilmpq.hdl.regmap import CSR_ADDR_WIDTH
from ilmpq.hdl.status import ErrorCode
from ilmpq.hdl.top import Accelerator
from ilmpq.hdl.weight_buffer import header_beats

__all__ = ["GUARD", "FaultyMemory", "ProbedAccelerator", "Outcome", "run_fault", "Package",
           "weight_streams", "program", "patch_instruction", "flip_read_bits", "remap_reads",
           "apply_at_rest", "assert_contained", "assert_recovered"]

#: Bytes of guard memory on each side of the DMA window.
GUARD = 4096
INSTR_BYTES = INSTR_BITS // 8


class FaultyMemory(AXIMemory):
    """:class:`AXIMemory` with in-flight read-data faults and per-burst extra latency."""

    def __init__(self, bus, *, read_fault=None, stalls=None, **kw):
        super().__init__(bus, **kw)
        self.read_fault = read_fault
        self.stalls = dict(stalls or {})
        self.faulty_beats = 0       #: read beats the fault changed
        #: ``{byte address: mask}``: right after a W beat stores that byte, the DRAM cell flips
        #: (XOR ``mask``): a fault at rest in data the accelerator wrote
        self.rest_flips: dict = {}
        self.rest_hits = 0          #: stored beats a rest flip changed

    def _beat_data(self, t):
        data = super()._beat_data(t)
        if self.read_fault is not None and t.resp == AXIResp.OKAY:
            new = self.read_fault(self, t.addr + t.beat * self.beat_bytes, data)
            self.faulty_beats += new != data
            data = new
        return data

    def _edge(self, v):
        hit = None
        if self.rest_flips and v["wvalid"] and self._drv["wready"] and self._w_queue:
            t = self._w_queue[0]
            hit = t.addr + t.beat * self.beat_bytes
        n = len(self.log)
        super()._edge(v)
        for a, mask in self.rest_flips.items():
            if hit is not None and a - a % self.beat_bytes == hit:
                self.data[self._offset(a, 1)] ^= mask
                self.rest_hits += 1
        for t in self.log[n:]:
            if t.kind == "r":
                t.ready_at += self.stalls.get(("r", t.index), 0)
        for t in self._writes:
            if t.w_last == self.cycle:                  # the last W beat arrived at this edge
                t.ready_at += self.stalls.get(("w", t.index), 0)

    def beat(self, addr: int) -> int:
        """The memory's beat at ``addr`` (beat-aligned) as an integer."""
        return int.from_bytes(self.read(addr, self.beat_bytes), "little")


def flip_read_bits(addr: int, mask: int = 1):
    """In-flight fault: XOR ``mask`` into the bytes from ``addr`` on every read of that beat."""
    def fault(mem, beat_addr, data):
        base = addr - addr % mem.beat_bytes
        if beat_addr == base:
            return data ^ (mask << (8 * (addr - base)))
        return data
    return fault


def apply_at_rest(fault, image: bytearray, base: int, beat_bytes: int) -> None:
    """Apply an in-flight read fault to a memory image instead (the DRAM corrupted at rest):
    every beat of ``image`` (at byte address ``base``) becomes what the fault would deliver."""
    snapshot = bytes(image)

    class _View:
        def beat(self, a):
            return int.from_bytes(snapshot[a - base:a - base + beat_bytes], "little")

    _View.beat_bytes = beat_bytes
    view = _View()
    for a in range(base, base + len(image), beat_bytes):
        d = view.beat(a)
        new = fault(view, a, d)
        if new != d:
            image[a - base:a - base + beat_bytes] = new.to_bytes(beat_bytes, "little")


def remap_reads(mapping):
    """In-flight fault: the beat read at ``a`` carries the memory's beat at ``mapping(a)`` (or is
    unchanged when ``mapping(a)`` is None): duplicated, dropped or reordered data."""
    def fault(mem, beat_addr, data):
        src = mapping(beat_addr)
        return data if src is None else mem.beat(src)
    return fault


class ProbedAccelerator(Accelerator):
    """:class:`Accelerator` that keeps a handle on STATUS.error_code for the testbench (no new
    ports, the same RTL)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.error_code_probe = m.submodules.csr.fields.status.error_code
        self.busy_probe = m.submodules.csr.fields.status.busy
        return m


@dataclass
class Request:
    kind: str       #: "r" or "w"
    edge: int       #: first edge at which the request's valid was sampled high
    addr: int
    port: int = 0   #: AXI port


class _Monitor:
    """Records the first latched error and every AXI request on every port (testbench
    coroutine)."""

    def __init__(self, dut, buses):
        self.dut, self.buses = dut, buses
        self.first_error: tuple[int, ErrorCode] | None = None
        self.requests: list[Request] = []
        self.busy_falls: list[int] = []     #: edges after which STATUS.busy is low again
        self.busy_rises: list[int] = []     #: edges after which STATUS.busy is high
        self.cycle = 0

    async def run(self, ctx):
        sigs = [self.dut.error_code_probe, self.dut.busy_probe]
        was_busy = 0
        for a in self.buses:
            sigs += [a.arvalid, a.arready, a.araddr, a.awvalid, a.awready, a.awaddr]
        prev = {(p, k): (0, 0) for p in range(len(self.buses)) for k in "rw"}
        async for _, _, err, busy, *vals in ctx.tick().sample(*sigs):
            if err and self.first_error is None:
                self.first_error = (self.cycle, ErrorCode(err))
            if was_busy and not busy:
                self.busy_falls.append(self.cycle)
            if busy and not was_busy:
                self.busy_rises.append(self.cycle)
            was_busy = busy
            for p in range(len(self.buses)):
                arv, arr, ara, awv, awr, awa = vals[6 * p:6 * p + 6]
                for kind, valid, ready, addr in (("r", arv, arr, ara), ("w", awv, awr, awa)):
                    pv, pr = prev[(p, kind)]
                    if valid and not (pv and not pr):
                        self.requests.append(Request(kind, self.cycle, addr, p))
                    prev[(p, kind)] = (valid, ready)
            self.cycle += 1


class _RecordingTransport(AmaranthTransport):
    """Records the cycle of every CTRL write that asks for a soft reset."""

    def __init__(self, *args, ctrl_offset: int, soft_reset_value: int, **kw):
        super().__init__(*args, **kw)
        self.ctrl_offset = ctrl_offset
        self.soft_reset_value = soft_reset_value
        self.soft_resets: list[int] = []

    async def write32(self, offset, value):
        if offset == self.ctrl_offset and value & self.soft_reset_value:
            self.soft_resets.append(self.mem.cycle)
        await super().write32(offset, value)


@dataclass
class Outcome:
    """What one :func:`run_fault` observed (see the module docstring)."""

    error: BaseException | None
    first_error: tuple[int, ErrorCode] | None
    requests: list[Request]
    soft_resets: list[int]
    end_cycle: int                  #: edge at which the faulty run returned or raised
    outstanding_at_end: int         #: AXI bursts not finished when the faulty run ended
    guard_intact_after_fault: bool
    guard_intact_after_recovery: bool
    faulty_beats: int
    output: dict | None             #: tensors of the faulty run if it did not raise
    output_stats: dict | None       #: its counters
    recovered: dict | None          #: tensors of the recovery run
    recovered_stats: dict | None
    recovery_start: int | None      #: edge at which the recovery (soft reset) began
    log: list = field(default_factory=list)   #: every port's transactions (``.port`` set)
    bus_abandoned: bool = False     #: STATUS.bus_abandoned after the faulty run
    done_edges: list = field(default_factory=list)   #: edges at which STATUS.busy fell
    busy_edges: list = field(default_factory=list)   #: edges at which STATUS.busy rose
    violations: list = field(default_factory=list)   #: subordinate violations the checkers saw
    rest_hits: int = 0              #: stored beats a ``rest_flips`` flip changed

    def requests_after(self, edge: int) -> list[Request]:
        """Requests first presented after ``edge`` and before the recovery began."""
        stop = self.recovery_start if self.recovery_start is not None else 1 << 62
        return [r for r in self.requests if edge < r.edge < stop]


def run_fault(compiled: Compiled, image, *, read_fault=None, stalls=None, errors=None,
              faults=None, corrupt=None, run=None, mem_mode: str = "deterministic",
              seed: int = 0, watchdog_cycles: int = 2000, timeout_cycles: int = 200_000,
              bus_timeout_cycles: int | None = None,
              recover: bool = True, settle: int = 64, port: int = 0,
              mac_key: bytes | None = None, rest_flips: dict | None = None) -> Outcome:
    """Run ``image`` with a fault, then soft-reset, remove the fault and run it again.
    ``read_fault``, ``stalls`` and ``errors`` act on AXI port ``port``. ``mac_key``: programmed
    once before the first run (it survives the soft reset)."""
    cfg = compiled.config
    if not 0 <= port < cfg.axi_ports:
        raise ValueError(f"port {port} does not exist: {cfg.name} has {cfg.axi_ports} AXI ports")
    # one elaborated simulation per configuration and worker, fresh for every run
    dut, sim = simcache.acquire((ProbedAccelerator, cfg), lambda: ProbedAccelerator(cfg))
    buses = axi_buses(dut, cfg)
    guard_rng = np.random.default_rng(12345)
    mems = memory_ports(buses, base=compiled.base - GUARD, size=compiled.size + 2 * GUARD,
                        mode=mem_mode, seed=seed if mem_mode == "random" else None,
                        errors={port: errors} if errors else None, cls=FaultyMemory)
    mem = mems[0]
    faulty = mems[port]
    faulty.read_fault = read_fault
    faulty.stalls = dict(stalls or {})
    faulty.faults = dict(faults or {})
    faulty.rest_flips = dict(rest_flips or {})
    lo_guard = guard_rng.integers(0, 256, GUARD, dtype=np.uint8).tobytes()
    hi_guard = guard_rng.integers(0, 256, GUARD, dtype=np.uint8).tobytes()
    mem.write(compiled.base - GUARD, lo_guard)
    mem.write(compiled.base + compiled.size, hi_guard)

    def guard_intact() -> bool:
        return (mem.read(compiled.base - GUARD, GUARD) == lo_guard
                and mem.read(compiled.base + compiled.size, GUARD) == hi_guard)

    checkers = [AXIChecker(bus, max_burst=cfg.max_burst,
                           max_reads_outstanding=cfg.max_reads_outstanding,
                           window=compiled.window, name=m.name,
                           subordinate_protocol=not faults,
                           abandon_after=bus_timeout_cycles if faults else None)
                for bus, m in zip(buses, mems)]
    lite = AXILiteChecker(flat_bus(dut, "s_axil", AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
                          name="s_axil")
    for m_, chk in zip(mems, checkers):
        m_.add_to(sim)
        chk.add_to(sim)
    lite.add_to(sim)
    mon = _Monitor(dut, buses)
    sim.add_testbench(mon.run, background=True)
    res: dict = {}

    async def testbench(ctx):
        probe = Driver(None, cfg)
        transport = _RecordingTransport(
            ctx, dut, mem, ctrl_offset=probe.regmap.offset("ctrl"),
            soft_reset_value=probe.regmap.encode("ctrl", soft_reset=1))
        drv = Driver(transport, cfg, timeout_cycles=timeout_cycles,
                     watchdog_cycles=watchdog_cycles, bus_timeout_cycles=bus_timeout_cycles)
        if mac_key is not None:
            await drv.set_mac_key(mac_key)
        await drv.load(compiled)
        if corrupt is not None:
            bad = bytearray(compiled.image)
            corrupt(bad)
            mem.write(compiled.base, bytes(bad))
        res["error"] = None
        res["output"] = res["output_stats"] = None
        try:
            if run is not None:
                await run(drv)
            else:
                res["output"], stats = await drv.infer(compiled, image, load=False, check=True)
                res["output_stats"] = stats.counters
        except Exception as e:      # noqa: BLE001 - the test inspects it
            res["error"] = e
        res["end"] = mem.cycle
        res["outstanding"] = sum(c.outstanding for c in checkers)
        for _ in range(settle):
            await ctx.tick()
        res["guard_fault"] = guard_intact()
        res["recovered"] = res["stats"] = res["recovery_start"] = None
        res["abandoned"] = bool((await drv.read_reg("status"))["bus_abandoned"])
        if recover:
            res["recovery_start"] = mem.cycle
            await drv.soft_reset()
            if (await drv.read_reg("status"))["bus_abandoned"]:
                for m_, chk in zip(mems, checkers):     # the interconnect's reset
                    m_.reset_bus()
                    chk.bus_reset()
                await drv.clear_bus_abandoned()
            faulty.faults.clear()
            faulty.rest_flips.clear()
            faulty.read_fault = None
            faulty.stalls.clear()
            faulty.errors.clear()
            await drv.load(compiled)
            res["recovered"], stats = await drv.infer(compiled, image, load=False,
                                                      check=True)
            res["stats"] = stats.counters
        res["guard_rec"] = guard_intact()
        res["soft_resets"] = list(transport.soft_resets)

    sim.add_testbench(testbench)
    sim.run()
    log = []
    for p, m_ in enumerate(mems):
        for t in m_.log:
            t.port = p
            log.append(t)
    log.sort(key=lambda t: (t.accepted, t.port))
    return Outcome(error=res["error"], first_error=mon.first_error, requests=mon.requests,
                   soft_resets=res["soft_resets"], end_cycle=res["end"],
                   outstanding_at_end=res["outstanding"],
                   guard_intact_after_fault=res["guard_fault"],
                   guard_intact_after_recovery=res["guard_rec"],
                   faulty_beats=faulty.faulty_beats, output=res["output"],
                   output_stats=res["output_stats"],
                   recovered=res["recovered"], recovered_stats=res["stats"],
                   recovery_start=res["recovery_start"], log=log,
                   bus_abandoned=res["abandoned"], done_edges=mon.busy_falls,
                   busy_edges=mon.busy_rises,
                   violations=[v for c in checkers for v in c.subordinate_violations],
                   rest_hits=faulty.rest_hits)


def assert_contained(out: Outcome, *, code: ErrorCode, exc_type, model, image, clean_stats=None,
                     unstored=frozenset()):
    """The containment contract of every hardware-detected fault (docs/reliability.md):

    1. the driver raised ``exc_type`` carrying ``code``, and STATUS latched ``code``;
    2. no new AXI request after the error was latched (at most the one already being presented
       in the same cycle, which AXI forbids withdrawing) -- by the bus monitor and by the
       memory's transaction log -- and nothing outstanding when the driver returned;
    3. the guard memory outside the window is byte-for-byte unchanged;
    4. after a soft reset the same image runs bit-exact with golden, with the counters of a
       clean run.
    """
    assert isinstance(out.error, exc_type), (
        f"expected {exc_type.__name__}({code.name}), got {out.error!r}")
    assert out.error.code == code, f"driver reports {out.error.code!r}, expected {code!r}"
    assert out.first_error is not None and out.first_error[1] == code, out.first_error
    latched = out.first_error[0]
    late = out.requests_after(latched + 1)
    assert not late, (f"AXI requests issued after the error was latched at edge {latched}: "
                      f"{late[:4]}")
    # the memory's transaction log agrees: a burst it accepted after the latch had been
    # requested before it (a request cannot be withdrawn), and there is at most one per channel
    # of each port
    stop = out.recovery_start if out.recovery_start is not None else 1 << 62
    early = {(r.port, r.kind, r.addr) for r in out.requests if r.edge <= latched + 1}
    accepted_late = [t for t in out.log if latched + 1 < t.accepted < stop]
    assert all((t.port, t.kind, t.addr) in early for t in accepted_late), accepted_late
    for p in {t.port for t in accepted_late}:
        assert len([t for t in accepted_late if t.kind == "r" and t.port == p]) <= 1
        assert len([t for t in accepted_late if t.kind == "w" and t.port == p]) <= 1
    assert out.outstanding_at_end == 0
    assert out.guard_intact_after_fault and out.guard_intact_after_recovery
    assert_recovered(out, model, image, clean_stats, unstored)


def assert_recovered(out: Outcome, model, image, clean_stats=None, unstored=frozenset()):
    """``unstored``: ``Compiled.unstored`` (a conv output inside its fused lookup table)."""
    assert out.recovered is not None
    ref = reference.run(model, image, spec=model.numeric)
    for layer in model.layers:
        if layer.output in unstored and layer.output not in out.recovered:
            continue
        np.testing.assert_array_equal(out.recovered[layer.output], ref[layer.output])
    if clean_stats is not None:
        assert out.recovered_stats == clean_stats


# -- program and package layout -------------------------------------------------------------------

@dataclass(frozen=True)
class Package:
    """One weight package in the memory image."""

    addr: int
    size: int
    seq: int
    n_words: int


@dataclass(frozen=True)
class Instr:
    step: int           #: accelerator step (program) number
    index: int          #: instruction index in that program
    addr: int           #: byte address of the instruction
    opcode: Opcode
    fields: dict


def program(compiled: Compiled) -> list[Instr]:
    """Every instruction of every accelerator step, decoded from the memory image."""
    out = []
    steps = [s for s in compiled.steps if isinstance(s, AccelStep)]
    for k, s in enumerate(steps):
        for i in range(s.n_instr):
            addr = s.prog_addr + i * INSTR_BYTES
            off = addr - compiled.base
            op, fields = decode(bytes(compiled.image[off:off + INSTR_BYTES]))
            out.append(Instr(k, i, addr, op, fields))
    return out


def weight_streams(compiled: Compiled) -> list[list[Package]]:
    """The packages of every distinct LOAD_WEIGHTS stream, in program order."""
    cfg = compiled.config
    hb = header_beats(cfg) * cfg.beat_bytes
    seen, out = set(), []
    for ins in program(compiled):
        if ins.opcode != Opcode.LOAD_WEIGHTS or ins.fields["addr"] in seen:
            continue
        seen.add(ins.fields["addr"])
        addr, end = ins.fields["addr"], ins.fields["addr"] + ins.fields["beats"] * cfg.beat_bytes
        pkgs = []
        while addr < end:
            off = addr - compiled.base
            hdr, _ = wpkg.decode_header(cfg, bytes(compiled.image[off:off + hb]))
            size = wpkg.package_size(cfg, hdr["n_words"])
            pkgs.append(Package(addr, size, hdr["seq"], hdr["n_words"]))
            addr += size
        assert addr == end
        out.append(pkgs)
    return out


def patch_instruction(image: bytearray, compiled: Compiled, ins: Instr, raw: bytes | None = None,
                      sealed: bool = True, **changes) -> None:
    """Re-encode ``ins`` with ``changes`` to its fields (or write ``raw`` bytes) into ``image``.

    With ``sealed`` (the default) the instruction gets the right check word for its place
    (:func:`~ilmpq.hdl.isa.seal`): a program a compiler could have emitted, so the fault tests
    reach the check they aim at behind the fetch unit's CRC."""
    off = ins.addr - compiled.base
    if raw is None:
        fields = {**ins.fields, **changes}
        op = changes.pop("opcode", ins.opcode)
        fields.pop("opcode", None)
        raw = encode(op, **fields) if op in (Opcode.LOAD_ROWS, Opcode.LOAD_WEIGHTS,
                                              Opcode.COMPUTE, Opcode.STORE) else encode(op)
    assert len(raw) == INSTR_BYTES
    if sealed:
        steps = [s for s in compiled.steps if isinstance(s, AccelStep)]
        raw = seal(raw, ins.index, ins.addr - ins.index * INSTR_BYTES, steps[ins.step].prog_tag)
    image[off:off + INSTR_BYTES] = raw
