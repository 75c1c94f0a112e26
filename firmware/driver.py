"""The driver: runs compiled models on an accelerator through a transport.

The same driver code drives the Amaranth simulation, the Verilator simulation and a board: only
the transport differs. A transport is an object with these ``async`` methods (async so that the
Amaranth simulator's testbench can await bus cycles; the others simply return)::

    async def read32(offset) -> int          # CSR read at a byte offset of the register window
    async def write32(offset, value)         # CSR write
    async def mem_write(addr, data: bytes)   # DRAM, physical byte address
    async def mem_read(addr, n) -> bytes
    async def wait_irq(timeout_cycles) -> bool   # True if irq rose, False on timeout
    async def cycles() -> int                # free-running clock count (simulators) or 0

Errors the accelerator latches become specific exceptions (:class:`DMAError`,
:class:`WeightPackageRejected`, :class:`ProgramError`, :class:`HardwareTimeout`); a run that
does not finish within the driver's own timeout raises :class:`DriverTimeout` after a soft
reset; a bitstream built for another configuration raises :class:`ConfigMismatch` before
anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..golden.errors import IlmpqError, IlmpqTypeError, IlmpqValueError
from ..hdl.config import HWConfig
from ..hdl.regmap import COUNTER_NAMES, accelerator_regmap
from ..hdl.status import ErrorCode
from .compiler import AccelStep, Compiled, CpuStep
from .sim.isasim import cpu_inputs, cpu_layer
from .regmap import HardwareIdentity

__all__ = ["AcceleratorError", "DMAError", "WeightPackageRejected", "ProgramError",
           "HardwareTimeout", "DriverTimeout", "ConfigMismatch", "RunStats", "Driver",
           "run_sync", "check_image"]


class AcceleratorError(IlmpqError, RuntimeError):
    """The accelerator stopped with an error; ``code`` (ErrorCode) and ``info`` (ERR_INFO)."""

    def __init__(self, code: ErrorCode, info: int, message: str):
        super().__init__(message)
        self.code = code
        self.info = info


class DMAError(AcceleratorError):
    """An AXI error response, a window violation or a bad DMA command."""


class WeightPackageRejected(AcceleratorError):
    """A weight package failed its magic, sequence, length or CRC check (never computed on)."""


class ProgramError(AcceleratorError):
    """A malformed instruction or a program without END."""


class HardwareTimeout(AcceleratorError):
    """The accelerator's watchdog expired (no progress)."""


class DriverTimeout(IlmpqError, TimeoutError):
    """The run did not finish within the driver's timeout; the accelerator was soft-reset."""


class ConfigMismatch(IlmpqError, RuntimeError):
    """The hardware is not the configuration the program was compiled for."""


def _u32(what: str, value) -> int:
    """``value`` as a 32-bit register value; an :class:`IlmpqValueError` instead of a silent
    wrap-around for anything a 32-bit register cannot hold."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IlmpqValueError(f"{what} = {value!r} is not an integer")
    if not 0 <= value < 1 << 32:
        raise IlmpqValueError(f"{what} = {value:#x} does not fit its 32-bit register "
                              f"(allowed 0 .. 0xffffffff)")
    return int(value)


def check_image(image, spec) -> np.ndarray:
    """``image`` as an int64 array for the model's input tensor ``spec``
    (:class:`~ilmpq.golden.model.TensorSpec`); raises :class:`IlmpqValueError` for a wrong
    shape, a non-integer dtype or values outside the tensor's range (they would wrap around when
    stored as bytes)."""
    arr = np.asarray(image)
    shape = tuple(spec.shape)
    if arr.shape != shape:
        raise IlmpqValueError(f"the image has shape {arr.shape}; the model's input "
                              f"{spec.name!r} is (C, H, W) = {shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise IlmpqValueError(f"the image has dtype {arr.dtype}; give integer pixels")
    lo, hi = spec.range
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise IlmpqValueError(f"the image values span [{arr.min()}, {arr.max()}]; the input "
                              f"{spec.name!r} holds {spec.bits}-bit values in [{lo}, {hi}]")
    return arr.astype(np.int64)


def _exception_for(code: ErrorCode):
    if code.name.startswith("DMA_"):
        return DMAError
    if code.name.startswith("WPKG_"):
        return WeightPackageRejected
    if code == ErrorCode.TIMEOUT:
        return HardwareTimeout
    return ProgramError


@dataclass
class RunStats:
    """Performance counters of one accelerator run."""

    counters: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.counters[name]

    def __add__(self, other: "RunStats") -> "RunStats":
        keys = set(self.counters) | set(other.counters)
        return RunStats({k: self.counters.get(k, 0) + other.counters.get(k, 0) for k in keys})


class Driver:
    """Control of one accelerator through ``transport``.

    Parameters
    ----------
    transport
        See the module docstring.
    config : HWConfig
        The configuration programs were compiled for; :meth:`check` compares it with the
        hardware's identification registers.
    timeout_cycles : int
        Driver-side limit on one run (in the transport's wait units); the hardware watchdog
        (``watchdog_cycles``) catches hangs inside the accelerator itself.
    """

    def __init__(self, transport, config: HWConfig, *, timeout_cycles: int = 50_000_000,
                 watchdog_cycles: int = 100_000):
        if not isinstance(config, HWConfig):
            raise IlmpqTypeError(f"config must be an HWConfig, not {type(config).__name__}")
        if isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int) \
                or timeout_cycles < 1:
            raise IlmpqValueError(f"timeout_cycles = {timeout_cycles!r} is not allowed: it must "
                                  f"be a positive integer")
        self.t = transport
        self.config = config
        self.regmap = accelerator_regmap(config)
        self.timeout_cycles = timeout_cycles
        self.watchdog_cycles = _u32("watchdog_cycles", watchdog_cycles)
        self._checked = False

    def _off(self, name: str) -> int:
        return self.regmap.offset(name)

    async def read_reg(self, name: str) -> dict:
        return self.regmap.decode(name, await self.t.read32(self._off(name)))

    async def check(self):
        """Read the identification registers; raise :class:`ConfigMismatch` on a mismatch."""
        words = {}
        for name in ("id", "version", "config_id", "geometry", "datapath", "buffers"):
            words[self._off(name)] = await self.t.read32(self._off(name))
        ident = HardwareIdentity.read(self.regmap, lambda off: words[off])
        why = ident.mismatch(HardwareIdentity.expected(self.regmap))
        if why is not None:
            raise ConfigMismatch(why)
        self._checked = True

    async def load(self, compiled: Compiled):
        """Write the compiled memory image (weights, parameters, programs) to DRAM."""
        if compiled.config.config_id != self.config.config_id:
            raise ConfigMismatch(
                f"the program was compiled for configuration {compiled.config.describe()}, "
                f"the driver drives {self.config.describe()}")
        await self.t.mem_write(compiled.base, bytes(compiled.image))

    async def counters(self) -> RunStats:
        out = {}
        for name, _doc in COUNTER_NAMES:
            lo = await self.t.read32(self.regmap.offset(f"{name}_lo"))
            hi = await self.t.read32(self.regmap.offset(f"{name}_hi"))
            out[name] = (hi << 32) | lo
        return RunStats(out)

    async def soft_reset(self):
        await self.t.write32(self._off("ctrl"), self.regmap.encode("ctrl", soft_reset=1))
        for _ in range(10_000):
            if not (await self.read_reg("status"))["busy"]:
                return
        raise DriverTimeout("the accelerator did not become idle after a soft reset")

    async def run_program(self, prog_addr: int, n_instr: int, window: tuple[int, int]
                          ) -> RunStats:
        """Run one program; return its performance counters or raise on an error.

        Values that do not fit the 32-bit registers raise :class:`IlmpqValueError` before
        anything is written; everything else (alignment, the window, the length) is checked by
        the hardware, which stops with a specific ErrorCode.
        """
        prog_addr = _u32("prog_addr", prog_addr)
        n_instr = _u32("n_instr", n_instr)
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise IlmpqValueError(f"window = {window!r} must be (base, limit)")
        window = (_u32("window base", window[0]), _u32("window limit", window[1]))
        if not self._checked:
            await self.check()
        w = self.t.write32
        await w(self._off("prog_addr"), prog_addr)
        await w(self._off("prog_len"), n_instr)
        await w(self._off("win_base"), window[0])
        await w(self._off("win_limit"), window[1])
        await w(self._off("watchdog"), self.watchdog_cycles)
        await w(self._off("status"), self.regmap.encode("status", done=1))   # clear done
        await w(self._off("ctrl"), self.regmap.encode("ctrl", start=1, irq_en=1))
        if not await self.t.wait_irq(self.timeout_cycles):
            await self.soft_reset()
            raise DriverTimeout(f"the run did not finish within {self.timeout_cycles} cycles; "
                                f"the accelerator was soft-reset")
        status = await self.read_reg("status")
        await w(self._off("status"), self.regmap.encode("status", done=1))   # acknowledge
        if status["error"]:
            code = ErrorCode(status["error_code"])
            info = (await self.read_reg("err_info"))["info"]
            exc = _exception_for(code)
            raise exc(code, info, f"the accelerator stopped with {code.name} "
                                  f"(ERR_INFO = {info:#x})")
        return await self.counters()

    async def infer(self, compiled: Compiled, image, *, load: bool = True
                    ) -> tuple[dict[str, np.ndarray], RunStats]:
        """Run a compiled model on one image: write the input, run every step (accelerator
        programs and CPU layers), read every stored tensor back in natural layout."""
        inp = compiled.tensors[compiled.input]
        pixels = inp.to_memory(check_image(image, compiled.model.tensors[compiled.input]))
        if load:
            await self.load(compiled)
        await self.t.mem_write(inp.addr, pixels)
        layers = {l.name: l for l in compiled.model.layers}
        stats = RunStats()
        for step in compiled.steps:
            if isinstance(step, AccelStep):
                stats = stats + await self.run_program(step.prog_addr, step.n_instr,
                                                       compiled.window)
            elif isinstance(step, CpuStep):
                await self._cpu_step(compiled, layers[step.layer])
        out = {}
        for name, t in compiled.tensors.items():
            out[name] = t.from_memory(await self.t.mem_read(t.addr, t.nbytes))
        return out, stats

    async def _cpu_step(self, compiled: Compiled, layer):
        raw = {}
        for name in cpu_inputs(layer):
            t = compiled.tensors[name]
            raw[name] = await self.t.mem_read(t.addr, t.nbytes)
        addr, payload = cpu_layer(compiled, layer, raw)
        await self.t.mem_write(addr, payload)


def run_sync(coro):
    """Run a driver coroutine whose transport never really suspends (Verilator, a board)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("the transport suspended: use it inside its simulator instead")
