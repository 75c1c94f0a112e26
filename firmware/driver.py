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

A network the accelerator runs entirely is one program per frame: :meth:`Driver.infer` writes
the input, starts, waits and reads the output (the logits) and nothing else;
``infer(..., check=True)`` (what ``ilmpq simulate`` and ``ilmpq run`` use) reads every stored
tensor back for a layer-by-layer comparison with golden. The input is the raw image: with
``layout="HWC"`` its bytes are written as they are (the accelerator reads them itself,
``Compiled.input_layout``); a ``"CHW"`` image is transposed to HWC bytes on the host first.
:meth:`Driver.infer_stream` runs frames
back to back through the compiled frame slots (``Compiled.slots``): while the accelerator runs
frame ``n``, the host writes image ``n + 1`` into the other slot and reads the logits of frame
``n - 1``; a batched program (``compile_model(batch=B)``) takes the images in groups of ``B``
a frame (:meth:`Driver.infer_stream`).

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
from ..golden.siphash import check_key
from ..hdl.config import HWConfig
from ..hdl.regmap import COUNTER_NAMES, accelerator_regmap
from ..hdl.status import ErrorCode
from .compiler import AccelStep, Compiled, CpuStep
from .sim.isasim import cpu_inputs, cpu_writes
from .regmap import HardwareIdentity

__all__ = ["IMAGE_LAYOUTS", "AcceleratorError", "DMAError", "WeightPackageRejected",
           "ProgramError", "IntegrityError", "HardwareTimeout", "DriverTimeout", "ConfigMismatch",
           "BusAbandoned", "RunStats", "StreamResult",
           "Driver", "run_sync", "check_image"]


class AcceleratorError(IlmpqError, RuntimeError):
    """The accelerator stopped with an error; ``code`` (ErrorCode) and ``info`` (ERR_INFO)."""

    def __init__(self, code: ErrorCode, info: int, message: str):
        super().__init__(message)
        self.code = code
        self.info = info


class DMAError(AcceleratorError):
    """An AXI error response, a window violation, a bad DMA command, a subordinate breaking the
    AXI protocol or not answering (DMA_BUS_TIMEOUT). ``bus_abandoned`` is true when the abort
    had to abandon outstanding transactions (STATUS.bus_abandoned): see :class:`BusAbandoned`."""

    bus_abandoned = False


class BusAbandoned(IlmpqError, RuntimeError):
    """STATUS.bus_abandoned is set: an abort or soft reset gave up on AXI transactions the
    subordinate never finished. The interconnect between the accelerator and memory must be
    reset (on a Zynq: the PL reset of the AXI interconnect / SmartConnect), then
    :meth:`Driver.clear_bus_abandoned`; the hardware ignores START until then."""


class WeightPackageRejected(AcceleratorError):
    """A weight package failed its magic, sequence, length or CRC check (never computed on)."""


class ProgramError(AcceleratorError):
    """A malformed instruction or a program without END."""


class IntegrityError(AcceleratorError):
    """Data the accelerator read failed its check (lane parameters: PARAMS_CRC, activations:
    ACT_CRC), or a STORE
    would have written outside the activation arena (WRITE_PROTECT); nothing of it was used or
    written."""


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


#: Image layouts the driver takes: ``"CHW"`` (NCHW without N, golden's order) and ``"HWC"``
#: (NHWC without N: the bytes a camera or an image file decoder gives, row by row).
IMAGE_LAYOUTS = ("CHW", "HWC")


def check_image(image, spec, layout: str = "CHW") -> np.ndarray:
    """``image`` as an int64 array for the model's input tensor ``spec``
    (:class:`~ilmpq.golden.model.TensorSpec`), in ``layout`` (:data:`IMAGE_LAYOUTS`, a leading
    batch axis of 1 allowed); raises :class:`IlmpqValueError` for a wrong shape, a non-integer
    dtype or values outside the tensor's range (they would wrap around when stored as
    bytes)."""
    if layout not in IMAGE_LAYOUTS:
        raise IlmpqValueError(f"layout = {layout!r} is not allowed: give one of "
                              f"{', '.join(IMAGE_LAYOUTS)}")
    arr = np.asarray(image)
    c, h, w = spec.shape
    shape = (c, h, w) if layout == "CHW" else (h, w, c)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise IlmpqValueError(f"the image has shape {arr.shape}; the model's input "
                              f"{spec.name!r} is ({', '.join(layout)}) = {shape} (layout "
                              f"{layout!r})")
    if arr.dtype == np.uint8 and spec.range == (0, 255) or (
            arr.dtype == np.int8 and spec.range == (-128, 127)):
        return arr                        # every value is in range: nothing to check
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
    if 0x50 <= code <= 0x5F:
        return IntegrityError
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


@dataclass
class StreamResult:
    """Frames run back to back (:meth:`Driver.infer_stream`)."""

    outputs: list                  #: per image, the output tensor (natural layout)
    cycles: list                   #: per frame, the accelerator's CYCLES counter of its run
    done_at: list                  #: per frame, the transport's clock when its run was done
    #: Images a frame (a run): a batched program's ``Compiled.batch``; ``outputs`` has one
    #: entry per image given, ``cycles`` and ``done_at`` one per run.
    batch: int = 1

    @property
    def intervals(self) -> list:
        """Clock cycles between consecutive frames' completions (the steady-state frame
        interval: the accelerator's run plus the host's restart gap)."""
        return [b - a for a, b in zip(self.done_at, self.done_at[1:])]


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
    bus_timeout_cycles : int, optional
        Written to BUS_TIMEOUT before every run (the bus watchdog, 1 .. 2**24 - 1 cycles);
        None (default) leaves the register as it is (reset value 65536).
    """

    def __init__(self, transport, config: HWConfig, *, timeout_cycles: int = 50_000_000,
                 watchdog_cycles: int = 100_000, bus_timeout_cycles: int | None = None):
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
        limit = 1 << self.regmap.field("bus_timeout", "cycles").width
        if bus_timeout_cycles is not None and (
                isinstance(bus_timeout_cycles, bool) or not isinstance(bus_timeout_cycles, int)
                or not 1 <= bus_timeout_cycles < limit):
            raise IlmpqValueError(f"bus_timeout_cycles = {bus_timeout_cycles!r} is not "
                                  f"allowed: it must be an integer in [1, {limit - 1}] (or "
                                  f"None for the register's reset value)")
        self.bus_timeout_cycles = bus_timeout_cycles
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
        if compiled.mac_nonce is not None and not self.config.weight_mac:
            raise ConfigMismatch(
                f"the model's weight packages carry MAC tags, but the accelerator "
                f"({self.config.describe()}) is built without the MAC core "
                f"(HWConfig.weight_mac = 0): compile the model without a MAC key")
        await self.t.mem_write(compiled.base, bytes(compiled.image))
        # authenticated weight packages: the model's nonce and MAC_CTRL.enable (the key is
        # programmed separately, set_mac_key); a CRC-checked model disables the MAC check
        nonce = compiled.mac_nonce
        w = self.t.write32
        if nonce is not None:
            await w(self._off("mac_nonce_lo"), nonce & 0xFFFFFFFF)
            await w(self._off("mac_nonce_hi"), nonce >> 32)
        await w(self._off("mac_ctrl"), self.regmap.encode("mac_ctrl",
                                                           enable=int(nonce is not None)))

    async def set_mac_key(self, key: bytes):
        """Program the 16-byte SipHash-2-4 key of authenticated weight packages into the
        write-only MAC_KEY0..3 registers (they read as 0). The key survives a soft reset and is
        cleared by a hard reset; ``set_mac_key(bytes(16))`` overwrites it."""
        key = check_key(key)
        for i in range(4):
            await self.t.write32(self._off(f"mac_key{i}"),
                                 int.from_bytes(key[4 * i:4 * i + 4], "little"))

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

    async def clear_bus_abandoned(self):
        """Clear STATUS.bus_abandoned. Call it only after resetting the interconnect: the
        subordinate may still hold the abandoned transactions (:class:`BusAbandoned`)."""
        await self.t.write32(self._off("status"), self.regmap.encode("status", bus_abandoned=1))

    async def run_program(self, prog_addr: int, n_instr: int, window: tuple[int, int],
                          arena: tuple[int, int] | None = None, prog_tag: int = 0
                          ) -> RunStats:
        """Run one program; return its performance counters or raise on an error.

        ``arena``: the range STOREs may write (WR_BASE, WR_LIMIT), ``Compiled.arena``; None
        means the whole window (no write protection inside it; :meth:`infer` always passes
        the compiled arena). ``prog_tag``: the program's PROG_TAG (``AccelStep.prog_tag``,
        ``FrameSlot.prog_tag``); a wrong one stops the run at instruction 0 with INSTR_CRC.

        Values that do not fit the 32-bit registers, or an arena not inside the window, raise
        :class:`IlmpqValueError` before anything is written; everything else (alignment, the
        window, the length) is checked by the hardware, which stops with a specific ErrorCode.
        """
        await self.start_program(prog_addr, n_instr, window, arena, prog_tag)
        await self.wait_program()
        return await self.counters()

    async def start_program(self, prog_addr: int, n_instr: int, window: tuple[int, int],
                            arena: tuple[int, int] | None = None, prog_tag: int = 0):
        """Write the run registers and START (see :meth:`run_program`); returns at once."""
        prog_addr = _u32("prog_addr", prog_addr)
        prog_tag = _u32("prog_tag", prog_tag)
        n_instr = _u32("n_instr", n_instr)
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise IlmpqValueError(f"window = {window!r} must be (base, limit)")
        window = (_u32("window base", window[0]), _u32("window limit", window[1]))
        if arena is None:
            arena = window
        if not isinstance(arena, (tuple, list)) or len(arena) != 2:
            raise IlmpqValueError(f"arena = {arena!r} must be (base, limit)")
        arena = (_u32("arena base", arena[0]), _u32("arena limit", arena[1]))
        if not window[0] <= arena[0] <= arena[1] <= window[1]:
            raise IlmpqValueError(f"arena = [{arena[0]:#x}, {arena[1]:#x}) is not allowed: it "
                                  f"must lie inside the window [{window[0]:#x}, "
                                  f"{window[1]:#x})")
        if not self._checked:
            await self.check()
        if (await self.read_reg("status"))["bus_abandoned"]:
            raise BusAbandoned("STATUS.bus_abandoned is set: an earlier abort abandoned AXI "
                               "transactions the subordinate never finished; reset the "
                               "interconnect, then call clear_bus_abandoned() before the next "
                               "run (the hardware ignores START until then)")
        w = self.t.write32
        await w(self._off("prog_addr"), prog_addr)
        await w(self._off("prog_len"), n_instr)
        await w(self._off("win_base"), window[0])
        await w(self._off("win_limit"), window[1])
        await w(self._off("wr_base"), arena[0])
        await w(self._off("wr_limit"), arena[1])
        await w(self._off("prog_tag"), prog_tag)
        await w(self._off("watchdog"), self.watchdog_cycles)
        if self.bus_timeout_cycles is not None:
            await w(self._off("bus_timeout"), self.bus_timeout_cycles)
        await w(self._off("status"), self.regmap.encode("status", done=1))   # clear done
        await w(self._off("ctrl"), self.regmap.encode("ctrl", start=1, irq_en=1))

    async def wait_program(self):
        """Wait for the started run; acknowledge it; raise on an error or a timeout."""
        w = self.t.write32
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
            msg = f"the accelerator stopped with {code.name} (ERR_INFO = {info:#x})"
            if status["bus_abandoned"]:
                msg += ("; it abandoned AXI transactions the subordinate never finished "
                        "(STATUS.bus_abandoned): reset the interconnect, then call "
                        "clear_bus_abandoned() before the next run")
            e = exc(code, info, msg)
            e.bus_abandoned = bool(status["bus_abandoned"])
            raise e

    def _slot(self, compiled: Compiled, slot: int) -> int:
        n = max(1, len(compiled.slots))
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < n:
            raise IlmpqValueError(f"slot = {slot!r} is not allowed: the compiled model has "
                                  f"{n} frame slot(s), 0 .. {n - 1}")
        return slot

    async def write_input(self, compiled: Compiled, image, slot: int = 0, *,
                          layout: str = "CHW"):
        """Check ``image`` and write it into the input tensor of frame slot ``slot``.

        ``layout`` (:data:`IMAGE_LAYOUTS`): ``"HWC"`` (``(H, W, C)``, the bytes of an NHWC
        image) is written as it is when the accelerator reads the raw image
        (``compiled.input_layout`` ``"direct"``, ``"layout"`` or ``"raw"``): with ``uint8``
        pixels the host does nothing but the copy. ``"CHW"`` costs the host a transpose to HWC
        bytes; a model compiled with the host layout (``input_layout == "host"``) costs it the
        whole layout (``TensorPlacement.to_memory``)."""
        slot = self._slot(compiled, slot)
        # the pixels and, when the accelerator checks the rows it reads, their check entries
        for addr, data in compiled.host_writes(compiled.input,
                                               _input_bytes(compiled, image, layout), slot):
            await self.t.mem_write(addr, data)

    async def read_tensor(self, compiled: Compiled, name: str, slot: int = 0) -> np.ndarray:
        """Read a stored tensor back (natural ``(C, H, W)`` layout)."""
        t = compiled.placement(name)
        return t.from_memory(await self.t.mem_read(compiled.tensor_addr(name, slot), t.nbytes))

    async def infer(self, compiled: Compiled, image, *, load: bool = True, check: bool = False,
                    slot: int = 0, layout: str = "CHW") -> tuple[dict[str, np.ndarray], RunStats]:
        """Run a compiled model on one image.

        The thin path (``check=False``): write the input, start, wait, read the output tensor
        (``{compiled.output: logits}``); a network that is one program needs nothing else from
        the host. ``check=True``: read every stored tensor back in natural layout (the
        layer-by-layer comparison with golden of ``ilmpq simulate``/``run``). A model the
        compiler could not place entirely on the accelerator runs its host layers in between
        (the compile report names them) in both modes. ``layout``: see :meth:`write_input`
        (``"HWC"``: the image's bytes are written as they are).
        """
        if compiled.batch > 1:
            raise IlmpqValueError(f"the model was compiled for batches of {compiled.batch} "
                                  f"images: run it with infer_batch")
        slot = self._slot(compiled, slot)
        if load:
            await self.load(compiled)
        await self.write_input(compiled, image, slot, layout=layout)
        layers = {l.name: l for l in compiled.model.layers}
        stats = RunStats()
        if compiled.one_program and compiled.slots:
            fs = compiled.slots[slot]
            stats = await self.run_program(fs.prog_addr, fs.n_instr, compiled.window,
                                           compiled.arena, fs.prog_tag)
        else:
            for step in compiled.steps:
                if isinstance(step, AccelStep):
                    stats = stats + await self.run_program(step.prog_addr, step.n_instr,
                                                           compiled.window, compiled.arena,
                                                           step.prog_tag)
                elif isinstance(step, CpuStep):
                    await self.host_step(compiled, layers[step.layer])
        # (check: and the stored rows of convs whose STOREs pool vertically, Compiled.vpooled)
        names = list(compiled.tensors) + list(compiled.vpooled.values()) if check \
            else [compiled.output]
        out = {name: await self.read_tensor(compiled, name, slot) for name in names}
        return out, stats

    async def infer_batch(self, compiled: Compiled, images, *, load: bool = True,
                          check: bool = False, layout: str = "CHW"
                          ) -> tuple[list[dict[str, np.ndarray]], RunStats]:
        """Run a batched program (``compile_model(batch=B)``) on ``B`` images: write image
        ``b`` into its input (:meth:`Compiled.image_writes`), run the one program, read every
        image's output (``check=True``: every tensor of every image, natural layout). Returns
        the per-image dicts and the run's counters (one run for the B images)."""
        images = list(images)
        if not compiled.one_program or len(images) != compiled.batch:
            raise IlmpqValueError(f"infer_batch needs a batched model that runs as one "
                                  f"accelerator program and exactly its {compiled.batch} "
                                  f"images, got {len(images)}")
        if load:
            await self.load(compiled)
        for b, image in enumerate(images):
            for addr, data in compiled.image_writes(b, _input_bytes(compiled, image, layout)):
                await self.t.mem_write(addr, data)
        step = compiled.steps[0]
        stats = await self.run_program(step.prog_addr, step.n_instr, compiled.window,
                                       compiled.arena, step.prog_tag)
        outs = []
        for views in compiled.batch_tensors:
            names = list(views) if check else [compiled.output]
            outs.append({n: views[n].from_memory(await self.t.mem_read(views[n].addr,
                                                                       views[n].nbytes))
                         for n in names})
        return outs, stats

    async def infer_stream(self, compiled: Compiled, images, *, load: bool = True,
                           layout: str = "CHW") -> StreamResult:
        """Run ``images`` back to back, one program per frame, through the frame slots.

        While frame ``n`` runs, the host writes image ``n + 1`` into the next slot; once frame
        ``n`` is done, its CYCLES counter is read (two registers: START clears it), the next
        frame is started and only then are frame ``n``'s logits read. Needs a model compiled
        as one program with at least two frame slots.

        A batched program (``compile_model(batch=B)``) takes the images in groups of ``B``, a
        frame (one run) per group, overlapped in the same way (the host writes the next
        group's ``B`` images into the next slot while this group runs, then reads its ``B``
        outputs). A last group of fewer than ``B`` images is filled up with copies of its last
        image, whose results are dropped: ``outputs`` has one output per image given, in
        their order; ``cycles`` and ``done_at`` one entry per run.
        """
        if not (compiled.one_program and len(compiled.slots) >= 2):
            raise IlmpqValueError(
                "infer_stream needs a model that runs as one accelerator program with at least "
                "two frame slots (compile_model(..., frame_slots=2)); this one has "
                f"{len(compiled.steps)} step(s) and {len(compiled.slots)} slot(s)")
        images = list(images)
        # a frame (one run) per group of ``B`` images (B = 1: each image its own frame)
        bsz, n_slots = compiled.batch, len(compiled.slots)
        groups = [images[i:i + bsz] for i in range(0, len(images), bsz)]
        if load and groups:
            await self.load(compiled)
        res = StreamResult([], [], [], batch=bsz)
        lo, hi = self.regmap.offset("cycles_lo"), self.regmap.offset("cycles_hi")
        out_t = compiled.tensors[compiled.output]

        async def write(k):
            payloads = [_input_bytes(compiled, im, layout) for im in groups[k]]
            payloads += [payloads[-1]] * (bsz - len(payloads))   # a last group: filled up
            for b, payload in enumerate(payloads):
                for addr, data in compiled.image_writes(b, payload, k % n_slots):
                    await self.t.mem_write(addr, data)

        def start(k):
            fs = compiled.slots[k % n_slots]
            return self.start_program(fs.prog_addr, fs.n_instr, compiled.window,
                                      compiled.arena, fs.prog_tag)

        if groups:
            await write(0)
            await start(0)
        for k in range(len(groups)):
            if k + 1 < len(groups):
                await write(k + 1)
            await self.wait_program()
            res.done_at.append(await self.t.cycles())
            res.cycles.append(((await self.t.read32(hi)) << 32) | await self.t.read32(lo))
            if k + 1 < len(groups):
                await start(k + 1)
            for b in range(len(groups[k])):          # the filling images' results dropped
                addr = compiled.image_output_addr(b, k % n_slots)
                res.outputs.append(out_t.from_memory(await self.t.mem_read(addr,
                                                                           out_t.nbytes)))
        return res

    async def host_step(self, compiled: Compiled, layer):
        """Run ``layer`` (a :class:`CpuStep` of ``compiled``) on the host: read its inputs,
        compute it with golden's integer op and write its output and, when an accelerated layer
        reads that tensor, its check entries (:func:`~ilmpq.firmware.sim.isasim.cpu_writes`)."""
        raw = {}
        for name in cpu_inputs(layer):
            t = compiled.tensors[name]
            raw[name] = await self.t.mem_read(t.addr, t.nbytes)
        for addr, data in cpu_writes(compiled, layer, raw):
            await self.t.mem_write(addr, data)


def _input_bytes(compiled: Compiled, image, layout: str) -> bytes:
    """The stored bytes of ``image`` as the input of ``compiled`` (:meth:`Driver.write_input`
    explains ``layout``)."""
    inp = compiled.tensors[compiled.input]
    spec = compiled.model.tensors[compiled.input]
    arr = check_image(image, spec, layout)
    if compiled.input_layout != "host" and layout == "HWC":
        dt = np.int8 if spec.signed else np.uint8
        return np.ascontiguousarray(arr, dt).tobytes()
    return inp.to_memory(arr if layout == "CHW" else np.transpose(arr, (2, 0, 1)))


def run_sync(coro):
    """Run a driver coroutine whose transport never really suspends (Verilator, a board)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("the transport suspended: use it inside its simulator instead")
