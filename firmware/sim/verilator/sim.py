"""Run an accelerator top at Verilator speed: the Python side of the C++ harness.

:class:`VerilatorSim` builds (or fetches from the cache, :mod:`.build`) a shared library holding
the Verilated top and the harness, loads it with :mod:`ctypes`, and offers what the driver's
transport needs: reset, AXI4-Lite register access, bulk memory access, running until the
interrupt, error injection, counters. Every clock cycle is simulated in C++ (the design, the
deterministic AXI memory model of ``docs/memory_model.md`` and the AXI4-Lite manager), so Python
costs nothing per cycle. ``docs/verilator.md`` gives the exact cycle semantics.

Example
-------
>>> sim = VerilatorSim(verilog_text, "accel", mem_base=0x1000_0000, mem_size=1 << 24)
>>> sim.mem_write(0x1000_0000, program_bytes)
>>> sim.csr_write(0x000, 1)              # start
>>> cycles = sim.wait_irq(10_000_000)    # raises SimTimeout if irq stays low
>>> out = sim.mem_read(0x1080_0000, 4096)
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import numpy as np

from ....golden.errors import IlmpqTypeError, IlmpqValueError
from .build import ABI_VERSION, build_library

__all__ = ["VerilatorSim", "VerilatorSimError", "AXIProtocolError", "DesignError", "SimTimeout",
           "CSRResponseError", "COUNTER_NAMES", "RESP_CODES"]

#: AXI response names accepted by :meth:`VerilatorSim.inject_error`.
RESP_CODES = {"OKAY": 0, "EXOKAY": 1, "SLVERR": 2, "DECERR": 3}
_RESP_NAMES = {v: k for k, v in RESP_CODES.items()}

#: Names of :attr:`VerilatorSim.counters`, in the C harness's order.
COUNTER_NAMES = (
    "ar_bursts",       # AR handshakes
    "r_beats",         # R handshakes
    "aw_bursts",       # AW handshakes
    "w_beats",         # W handshakes
    "b_responses",     # B handshakes
    "r_error_bursts",  # accepted read bursts answered with an injected error
    "b_error_bursts",  # accepted write bursts answered with an injected error
    "r_stall_cycles",  # edges with rvalid = 1 and rready = 0
    "w_stall_cycles",  # edges with wvalid = 1 and wready = 0
)


class VerilatorSimError(RuntimeError):
    """The simulation cannot continue (the message says why and at which cycle)."""


class AXIProtocolError(VerilatorSimError):
    """The design broke an AXI rule checked by the harness.

    Attributes
    ----------
    rule : str
        ``burst_length``, ``burst_type``, ``burst_size``, ``address_alignment``, ``4k_boundary``,
        ``address_range``, ``valid_dropped``, ``payload_unstable``, ``wlast`` (``m_axi``);
        ``response_before_request``, ``response_without_request`` (``s_axil``).
    channel : str
        ``AR``, ``AW``, ``W`` (``m_axi``), ``s_axil B`` or ``s_axil R``.
    cycle : int
        The edge (cycles since reset) at which it was detected.
    detail : str
        The harness's description, with the offending values.
    """

    def __init__(self, rule: str, channel: str, cycle: int, detail: str):
        self.rule, self.channel, self.cycle, self.detail = rule, channel, cycle, detail
        where = f"on m_axi {channel}" if channel in ("AR", "AW", "W", "R", "B") else f"on {channel}"
        super().__init__(f"AXI protocol violation [{rule}] {where} at cycle {cycle}: {detail}")


class DesignError(VerilatorSimError):
    """The design failed by itself: an Amaranth ``Assert`` or ``$stop`` (``rule`` =
    ``design_error``; Verilator prints the message on standard output), or a Verilator fatal
    error such as a combinational loop that does not converge (``verilator_fatal``; the
    simulation object cannot be used any more). Attributes as :class:`AXIProtocolError`."""

    def __init__(self, rule: str, channel: str, cycle: int, detail: str):
        self.rule, self.channel, self.cycle, self.detail = rule, channel, cycle, detail
        super().__init__(f"design error [{rule}] at cycle {cycle}: {detail}")


class SimTimeout(VerilatorSimError, TimeoutError):
    """A wait (interrupt or register access) did not finish within its cycle budget."""


class CSRResponseError(VerilatorSimError):
    """An AXI4-Lite access was answered with SLVERR or DECERR.

    Attributes
    ----------
    addr : int
    resp : str
    write : bool
    """

    def __init__(self, addr: int, resp: int, write: bool):
        self.addr, self.resp, self.write = addr, _RESP_NAMES.get(resp, str(resp)), write
        op = "write to" if write else "read from"
        super().__init__(f"CSR {op} 0x{addr:03x} answered {self.resp}")


@dataclass(frozen=True)
class _Lib:
    path: str
    cdll: ctypes.CDLL
    data_bits: int


_LIBS: dict[str, _Lib] = {}


def _load(path: str) -> _Lib:
    if path in _LIBS:
        return _LIBS[path]
    lib = ctypes.CDLL(path)  # RTLD_LOCAL: several designs can be loaded at once
    u8p, u32p, u64p = (ctypes.POINTER(t) for t in (ctypes.c_uint8, ctypes.c_uint32,
                                                   ctypes.c_uint64))
    vp, c_int, u32, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
    sigs = {
        "ilmpq_abi_version": (c_int, []),
        "ilmpq_data_bits": (c_int, []),
        "ilmpq_axi_ports": (c_int, []),
        "ilmpq_sim_new": (vp, [u64, u64, u32, u32, u32]),
        "ilmpq_sim_free": (None, [vp]),
        "ilmpq_sim_mem": (u8p, [vp]),
        "ilmpq_sim_init": (c_int, [vp]),
        "ilmpq_sim_reset": (c_int, [vp, u32]),
        "ilmpq_has_trace": (c_int, []),
        "ilmpq_sim_trace_open": (c_int, [vp, ctypes.c_char_p, c_int]),
        "ilmpq_sim_trace_flush": (None, [vp]),
        "ilmpq_sim_run": (c_int, [vp, u64, c_int, u64p]),
        "ilmpq_sim_csr_write": (c_int, [vp, u32, u32, u64, u32p]),
        "ilmpq_sim_csr_read": (c_int, [vp, u32, u64, u32p, u32p]),
        "ilmpq_sim_cycle": (u64, [vp]),
        "ilmpq_sim_irq": (c_int, [vp]),
        "ilmpq_sim_inject": (c_int, [vp, c_int, c_int, u64, u32]),
        "ilmpq_sim_clear_injections": (None, [vp]),
        "ilmpq_sim_num_counters": (c_int, []),
        "ilmpq_sim_counters": (None, [vp, c_int, u64p]),
        "ilmpq_sim_violation": (c_int, [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                        c_int, u64p]),
        "ilmpq_sim_outstanding": (None, [vp, u64p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    if lib.ilmpq_abi_version() != ABI_VERSION:
        raise VerilatorSimError(f"{path} has harness ABI {lib.ilmpq_abi_version()}, "
                                f"this ilmpq needs {ABI_VERSION}; delete it to rebuild")
    if lib.ilmpq_sim_num_counters() != len(COUNTER_NAMES):
        raise VerilatorSimError(f"{path}: counter table mismatch; delete it to rebuild")
    _LIBS[path] = _Lib(path, lib, lib.ilmpq_data_bits())
    return _LIBS[path]


_OK, _TIMEOUT, _FAILED = 0, 1, 2
_RUN_CHUNK = 1 << 22  # cycles per C call in run(): ~0.1-1 s


class VerilatorSim:
    """A Verilated accelerator top with the AXI memory model and an AXI4-Lite manager.

    Parameters
    ----------
    verilog_text : str
        Verilog containing module ``top`` with the accelerator's flat ports
        (:data:`ilmpq.firmware.sim.verilator.build.REQUIRED_PORTS`).
    top : str
        Top module name.
    mem_base, mem_size : int
        The simulated memory: ``mem_size`` bytes at byte address ``mem_base`` (zero-filled).
        Every burst must lie inside it.
    read_latency, write_latency, queue : int
        The deterministic timing of ``docs/memory_model.md`` (RL >= 1, WL >= 1, Q >= 1).
    reset_cycles : int
        Cycles ``rst`` is held high by :meth:`reset` (not counted in :attr:`cycle`).
    csr_timeout : int
        Cycles an AXI4-Lite access may take before :class:`SimTimeout`.
    cache_dir : str, optional
        Build cache root (default :func:`~ilmpq.firmware.sim.verilator.build.default_cache_dir`).
    vcd : str, optional
        Write a VCD of every signal to this path, from construction on (uses a library built
        with ``--trace``; clock period 10 time units, rising edges at multiples of 10). Slow and
        large: for debugging short runs.
    trace_depth : int
        Hierarchy levels traced into the VCD.

    Notes
    -----
    The constructor builds or loads the library and calls :meth:`reset`. Memory keeps its
    contents across :meth:`reset`; the memory model's queues, counters and burst indices (for
    :meth:`inject_error`) restart. After an :class:`AXIProtocolError` or a :class:`DesignError`
    the simulation must be :meth:`reset` before it runs again.
    """

    def __init__(self, verilog_text: str, top: str, *, mem_base: int, mem_size: int,
                 read_latency: int = 8, write_latency: int = 4, queue: int = 8,
                 reset_cycles: int = 4, csr_timeout: int = 10_000,
                 cache_dir: str | None = None, vcd: str | os.PathLike | None = None,
                 trace_depth: int = 99):
        for name, value, lo in (("mem_base", mem_base, 0), ("mem_size", mem_size, 1),
                                ("read_latency", read_latency, 1),
                                ("write_latency", write_latency, 1), ("queue", queue, 1),
                                ("reset_cycles", reset_cycles, 1),
                                ("csr_timeout", csr_timeout, 1)):
            _check_int(name, value, lo, (1 << 64) - 1)
        for name, value in (("read_latency", read_latency), ("write_latency", write_latency),
                            ("queue", queue)):
            if value > 1 << 20:
                raise IlmpqValueError(f"{name} must be at most {1 << 20}, not {value}")
        self._h = None
        result = build_library(verilog_text, top, cache_dir=cache_dir, trace=vcd is not None)
        #: The :class:`~ilmpq.firmware.sim.verilator.build.BuildResult` of the library in use.
        self.build_result = result
        if mem_base + mem_size > 1 << result.addr_bits:
            raise IlmpqValueError(
                f"memory [0x{mem_base:x}, 0x{mem_base + mem_size:x}) does not fit the "
                f"{result.addr_bits}-bit m_axi address space")
        self._lib = _load(result.path)
        self._c = self._lib.cdll
        self.top = top
        self.mem_base, self.mem_size = mem_base, mem_size
        self.read_latency, self.write_latency, self.queue = read_latency, write_latency, queue
        self.data_bits = result.data_bits
        self.addr_bits = result.addr_bits
        self.id_bits = result.id_bits
        self.reset_cycles = reset_cycles
        self.csr_timeout = csr_timeout
        self.last_csr_resp = 0
        h = self._c.ilmpq_sim_new(mem_base, mem_size, read_latency, write_latency, queue)
        if not h:
            raise MemoryError(f"cannot allocate a {mem_size}-byte simulated memory")
        self._h = h
        self._mem = np.ctypeslib.as_array(self._c.ilmpq_sim_mem(h), shape=(mem_size,))
        self.vcd = None if vcd is None else os.fspath(vcd)
        if self.vcd is not None:
            if self._c.ilmpq_sim_trace_open(h, self.vcd.encode(), trace_depth) != 0:
                raise VerilatorSimError(f"cannot open the VCD file {self.vcd!r}")
        if self._c.ilmpq_sim_init(h) != _OK:
            self._raise_violation()
        self.reset()

    # ---- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Free the model and its memory and close the VCD (also done when the object is
        collected)."""
        if getattr(self, "_h", None):
            self._c.ilmpq_sim_free(self._h)
            self._h = None
            self._mem = None

    def flush_vcd(self) -> None:
        """Flush the VCD file (it is complete after :meth:`close`)."""
        self._c.ilmpq_sim_trace_flush(self._handle())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: ctypes may be gone
            pass

    def _handle(self):
        if not self._h:
            raise VerilatorSimError("this VerilatorSim has been closed")
        return self._h

    def _raise_violation(self) -> None:
        n = 512
        rule, channel, msg = (ctypes.create_string_buffer(n) for _ in range(3))
        cyc = ctypes.c_uint64()
        if not self._c.ilmpq_sim_violation(self._handle(), rule, channel, msg, n,
                                           ctypes.byref(cyc)):
            raise VerilatorSimError("the harness reported a failure without a description")
        rule = rule.value.decode()
        cls = DesignError if rule in ("design_error", "verilator_fatal") else AXIProtocolError
        raise cls(rule, channel.value.decode(), cyc.value, msg.value.decode())

    # ---- control ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Hold ``rst`` high for ``reset_cycles`` cycles; afterwards :attr:`cycle` is 0.

        Clears the memory model's queues, counters and burst indices and any recorded
        violation; keeps the memory contents and the injected errors.
        """
        if self._c.ilmpq_sim_reset(self._handle(), self.reset_cycles) != _OK:
            self._raise_violation()

    @property
    def cycle(self) -> int:
        """Rising clock edges since the end of the last :meth:`reset`."""
        return self._c.ilmpq_sim_cycle(self._handle())

    @property
    def irq(self) -> bool:
        """The current value of the ``irq`` output."""
        return bool(self._c.ilmpq_sim_irq(self._handle()))

    def run(self, max_cycles: int, *, until_irq: bool = True) -> int:
        """Clock the design for up to ``max_cycles`` cycles.

        With ``until_irq`` the run stops before the first edge at which ``irq`` is high (so it
        returns 0 if ``irq`` is already high). Returns the number of cycles run.

        Raises
        ------
        AXIProtocolError
            The design broke an AXI rule (the run stops at that cycle).
        DesignError
            A failed assertion in the design, or a Verilator fatal error.
        """
        _check_int("max_cycles", max_cycles, 0, (1 << 63) - 1)
        total = 0
        ran = ctypes.c_uint64()
        while True:  # in chunks, so that Ctrl-C is seen between them
            chunk = min(max_cycles - total, _RUN_CHUNK)
            status = self._c.ilmpq_sim_run(self._handle(), chunk, int(bool(until_irq)),
                                           ctypes.byref(ran))
            total += ran.value
            if status != _OK:
                self._raise_violation()
            if ran.value < chunk or total == max_cycles:
                return total

    def step(self, cycles: int = 1) -> int:
        """Run exactly ``cycles`` cycles whatever ``irq`` does."""
        return self.run(cycles, until_irq=False)

    def wait_irq(self, timeout: int) -> int:
        """Run until ``irq`` is high; return the cycles this took (0 if it already was).

        Raises
        ------
        SimTimeout
            ``irq`` still low after ``timeout`` cycles (the simulation stays usable).
        """
        ran = self.run(timeout, until_irq=True)
        if not self.irq:
            raise SimTimeout(f"irq still low after {ran} cycles (timeout {timeout}) at cycle "
                             f"{self.cycle}; outstanding in the memory model: "
                             f"{self.outstanding}")
        return ran

    # ---- AXI4-Lite ----------------------------------------------------------------------------
    def _check_csr_addr(self, addr):
        _check_int("CSR address", addr, 0, 0xFFF)
        if addr % 4:
            raise IlmpqValueError(f"CSR address must be 4-byte aligned, not 0x{addr:x}")

    def csr_write(self, addr: int, value: int, *, check: bool = True) -> int:
        """Write a 32-bit register over ``s_axil`` (all byte strobes set); return the BRESP.

        The manager asserts ``awvalid`` and ``wvalid`` together at the first edge, keeps each
        until its handshake, holds ``bready`` high, and returns after the B handshake.

        Raises
        ------
        CSRResponseError
            ``check`` and the response is not OKAY.
        SimTimeout
            No response within ``csr_timeout`` cycles.
        """
        self._check_csr_addr(addr)
        _check_int("CSR value", value, 0, 0xFFFF_FFFF)
        resp = ctypes.c_uint32()
        status = self._c.ilmpq_sim_csr_write(self._handle(), addr, value, self.csr_timeout,
                                             ctypes.byref(resp))
        self._csr_status(status, addr, True)
        self.last_csr_resp = resp.value
        if check and resp.value != 0:
            raise CSRResponseError(addr, resp.value, True)
        return resp.value

    def csr_read(self, addr: int, *, check: bool = True) -> int:
        """Read a 32-bit register over ``s_axil``; the RRESP is kept in :attr:`last_csr_resp`.

        The manager asserts ``arvalid`` at the first edge until its handshake, holds ``rready``
        high, and returns after the R handshake.

        Raises
        ------
        CSRResponseError
            ``check`` and the response is not OKAY.
        SimTimeout
            No response within ``csr_timeout`` cycles.
        """
        self._check_csr_addr(addr)
        value, resp = ctypes.c_uint32(), ctypes.c_uint32()
        status = self._c.ilmpq_sim_csr_read(self._handle(), addr, self.csr_timeout,
                                            ctypes.byref(value), ctypes.byref(resp))
        self._csr_status(status, addr, False)
        self.last_csr_resp = resp.value
        if check and resp.value != 0:
            raise CSRResponseError(addr, resp.value, False)
        return value.value

    def _csr_status(self, status, addr, write):
        if status == _TIMEOUT:
            op = "write to" if write else "read from"
            raise SimTimeout(f"CSR {op} 0x{addr:03x} not answered within {self.csr_timeout} "
                             f"cycles (cycle {self.cycle})")
        if status != _OK:
            self._raise_violation()

    # ---- memory -------------------------------------------------------------------------------
    def _span(self, addr: int, n: int) -> int:
        _check_int("address", addr, 0, (1 << 64) - 1)
        _check_int("length", n, 0, (1 << 64) - 1)
        if addr < self.mem_base or addr + n > self.mem_base + self.mem_size:
            raise IlmpqValueError(
                f"bytes [0x{addr:x}, 0x{addr + n:x}) are outside the simulated memory "
                f"[0x{self.mem_base:x}, 0x{self.mem_base + self.mem_size:x})")
        return addr - self.mem_base

    def mem_write(self, addr: int, data) -> None:
        """Copy ``data`` (bytes-like or a C-contiguous NumPy array, taken as raw bytes) to
        ``addr`` in the simulated memory."""
        try:
            view = memoryview(data).cast("B")
        except TypeError:
            raise IlmpqTypeError(f"mem_write data must be bytes-like or a contiguous NumPy array, "
                                 f"not {type(data).__name__}") from None
        off = self._span(addr, view.nbytes)
        self.mem_view()[off:off + view.nbytes] = np.frombuffer(view, dtype=np.uint8)

    def mem_read(self, addr: int, n: int) -> bytes:
        """Return ``n`` bytes of the simulated memory from ``addr``."""
        off = self._span(addr, n)
        return self.mem_view()[off:off + n].tobytes()

    def mem_view(self) -> np.ndarray:
        """A writable ``uint8`` NumPy view of the whole memory (no copy; valid until close)."""
        self._handle()
        return self._mem

    # ---- error injection, counters ------------------------------------------------------------
    def inject_error(self, channel: str, burst_index: int, resp: str, *, port: int = 0) -> None:
        """Answer one burst of AXI port ``port`` (``m_axi``, ``m_axi1``, ...) with an error
        response.

        Parameters
        ----------
        channel : {'r', 'b'}
            ``'r'``: the ``burst_index``-th read burst (counting AR handshakes from 0 since the
            last reset) returns ``resp`` on all its beats with zero data; ``'b'`` (or ``'w'``,
            the key the Python model uses): the ``burst_index``-th write burst (counting AW
            handshakes) gets BRESP ``resp`` and does not change memory. Bursts are counted on
            port ``port`` alone.
        resp : {'SLVERR', 'DECERR'}
        port : int
            ``0 .. axi_ports - 1``.
        """
        if channel not in ("r", "b", "w"):
            raise IlmpqValueError(f"error channel must be 'r' or 'b' ('w' is accepted for 'b'), "
                                  f"not {channel!r}")
        if resp not in ("SLVERR", "DECERR"):
            raise IlmpqValueError(f"injected response must be 'SLVERR' or 'DECERR', not {resp!r}")
        _check_int("burst_index", burst_index, 0, (1 << 64) - 1)
        if not (isinstance(port, int) and 0 <= port < self.axi_ports):
            raise IlmpqValueError(f"port {port!r} does not exist: the design has "
                                  f"{self.axi_ports} AXI port(s), 0 .. {self.axi_ports - 1}")
        self._c.ilmpq_sim_inject(self._handle(), port, 0 if channel == "r" else 1, burst_index,
                                 RESP_CODES[resp])

    def clear_errors(self) -> None:
        """Forget every injected error."""
        self._c.ilmpq_sim_clear_injections(self._handle())

    @property
    def axi_ports(self) -> int:
        """AXI4 manager ports of the design (``m_axi``, ``m_axi1``, ...), each with its own
        memory model, all serving the one memory."""
        return self._c.ilmpq_axi_ports()

    @property
    def counters(self) -> dict[str, int]:
        """Handshake and stall counts since the last reset (:data:`COUNTER_NAMES`), summed over
        every AXI port."""
        return self.port_counters(None)

    def port_counters(self, port: int | None) -> dict[str, int]:
        """:attr:`counters` of one AXI port (``None``: all of them summed)."""
        if port is not None and not (isinstance(port, int) and 0 <= port < self.axi_ports):
            raise IlmpqValueError(f"port {port!r} does not exist: the design has "
                                  f"{self.axi_ports} AXI port(s)")
        buf = (ctypes.c_uint64 * len(COUNTER_NAMES))()
        self._c.ilmpq_sim_counters(self._handle(), -1 if port is None else port, buf)
        return dict(zip(COUNTER_NAMES, buf))

    @property
    def outstanding(self) -> dict[str, int]:
        """Bursts in the memory model: reads not fully returned, writes missing W beats, writes
        waiting for B."""
        buf = (ctypes.c_uint64 * 3)()
        self._c.ilmpq_sim_outstanding(self._handle(), buf)
        return {"reads": buf[0], "writes_w": buf[1], "writes_b": buf[2]}


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IlmpqTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise IlmpqValueError(f"{name} must be in [{lo}, {hi}], not {value}")
