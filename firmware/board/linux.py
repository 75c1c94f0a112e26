"""The driver's transport for a Zynq running Linux (PetaLinux, PYNQ): registers and DMA memory
through ``mmap``.

:class:`LinuxTransport` gives :class:`~ilmpq.firmware.driver.Driver` the same six operations the
simulator transports give it (``read32``, ``write32``, ``mem_write``, ``mem_read``, ``wait_irq``,
``cycles``), so the driver code that ran on the RTL runs unchanged on the board::

    from ilmpq.firmware.driver import Driver, run_sync
    from ilmpq.firmware.board.linux import LinuxTransport

    with LinuxTransport.open(cfg, udmabuf="udmabuf0") as t:
        comp = compile_model(model, cfg, base=t.dma.phys_addr)   # the image holds addresses
        out, stats = run_sync(Driver(t, cfg).infer(comp, image, layout="HWC"))  # raw HWC bytes

It is built from three parts, each replaceable (the tests put the RTL behind them):

* **the register window** (:class:`MmapRegisters`): the accelerator's 4 KiB CSR window mapped
  from ``/dev/mem`` at the M_AXI_GP0 base (``ilmpq.hdl.soc.GP0_BASE``), or from a UIO device's
  map 0. Every access is one aligned 32-bit load or store (a NumPy ``uint32`` view of the
  mapping, as PYNQ's ``MMIO`` does), never a byte-wise copy: a counter's LO read snapshots HI
  and CTRL's bits must arrive in one write.
* **the DMA buffer** (:class:`DmaBuffer`): physically contiguous memory the accelerator reaches
  through S_AXI_HP0, which is *not* cache-coherent with the CPU. Three kinds:

  - :class:`UdmabufBuffer`, a `u-dma-buf <https://github.com/ikwzm/udmabuf>`_ device
    (``/dev/udmabuf0``, its physical address and size read from sysfs). Opened cached by
    default; the transport then cleans the CPU cache over every range it writes
    (``sync_for_device``, direction ``DMA_TO_DEVICE``) and invalidates it over every range it
    reads (``sync_for_cpu``, ``DMA_FROM_DEVICE``) through the driver's sysfs files. Opened with
    ``cached=False`` (``O_SYNC``), the mapping is uncached and no maintenance is needed.
  - :class:`PhysBuffer`, a reserved region given as ``(phys_addr, size)``, mapped from
    ``/dev/mem`` with ``O_SYNC`` (uncached): for memory the kernel does not use (``mem=``
    boot argument or a ``no-map`` reserved-memory node).
  - :class:`PynqBuffer`, a ``pynq.allocate`` CMA buffer, flushed and invalidated with PYNQ's
    own calls.
* **the completion wait**: ``wait_irq`` polls STATUS.done (the accelerator's ``irq`` output is
  ``CTRL.irq_en & STATUS.done``) until a timeout computed from the fabric clock; with a
  :class:`UioInterrupt` (a ``generic-uio`` node with the interrupt, GIC SPI 61) it sleeps in
  ``poll()`` on the UIO file instead, and still checks STATUS.done every ``irq_slice`` seconds in
  case the interrupt is not wired.

Timeouts are given to the transport in clock cycles (the driver's unit) and converted with
``clock_hz``, the FCLK_CLK0 frequency of the build (``ilmpq build --fclk-mhz``, 100 MHz by
default). ``cycles()`` returns 0: a board has no simulation clock; the accelerator's CYCLES
counter measures runs.

Nothing here touches the bus before the FPGA is known to be programmed: an access to the GP0
range without a bitstream hangs the CPU, so :meth:`LinuxTransport.open` first reads the
fpga-manager state (``/sys/class/fpga_manager/fpga0/state``) and refuses anything but
``operating``.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import struct
import time

import numpy as np

from ...golden.errors import IlmpqError, IlmpqTypeError, IlmpqValueError
from ...hdl.config import HWConfig
from ...hdl.regmap import CSR_ADDR_WIDTH, accelerator_regmap
from ...hdl.soc import GP0_BASE

__all__ = ["BoardError", "CSR_SIZE", "DEFAULT_CLOCK_MHZ", "FPGA_STATE_PATH", "MmapRegisters",
           "DmaBuffer", "UdmabufBuffer", "PhysBuffer", "PynqBuffer", "UioInterrupt",
           "LinuxTransport", "check_fpga_programmed", "DMA_TO_DEVICE", "DMA_FROM_DEVICE"]

#: Bytes of the accelerator's register window.
CSR_SIZE = 1 << CSR_ADDR_WIDTH
#: FCLK_CLK0 frequency of a default build (``ilmpq build --fclk-mhz``).
DEFAULT_CLOCK_MHZ = 100.0
#: fpga-manager state file read before the register window is touched.
FPGA_STATE_PATH = "/sys/class/fpga_manager/fpga0/state"

#: ``sync_direction`` values of u-dma-buf (the kernel's ``enum dma_data_direction``).
DMA_TO_DEVICE = 1
DMA_FROM_DEVICE = 2


class BoardError(IlmpqError, OSError):
    """The board is not set up as the transport needs (device missing, no permission, FPGA not
    programmed, buffer too small); the message says what to do."""


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IlmpqTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise IlmpqValueError(f"{name} must be in [{lo:#x}, {hi:#x}], not {value:#x}")
    return int(value)


def _os_error(what: str, path: str, e: OSError, hint: str = "") -> BoardError:
    why = e.strerror or str(e)
    if e.errno == errno.ENOENT:  # a root hint would mislead: there is nothing to open
        hint = ("this is not the board's Linux, or the device is missing; run on the Zynq "
                "board (PetaLinux, PYNQ) or give the device with --mem-dev / --uio")
    elif e.errno in (errno.EACCES, errno.EPERM) and not hint:
        hint = "run as root, or give your user access to it (udev rule)"
    return BoardError(f"cannot {what} {path}: {why}" + (f"; {hint}" if hint else ""))


def _map(path: str, offset: int, size: int, *, sync: bool, what: str, hint: str = ""):
    """``mmap`` ``size`` bytes of ``path`` from ``offset`` (any alignment); return the mapping
    and the offset of ``offset`` inside it."""
    page = mmap.ALLOCATIONGRANULARITY
    start = offset - offset % page
    length = -(-(offset - start + size) // page) * page
    flags = os.O_RDWR | (os.O_SYNC if sync else 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _os_error(f"open {what}", path, e, hint) from None
    try:
        mm = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                       offset=start)
    except (OSError, ValueError) as e:
        if isinstance(e, OSError):
            raise _os_error(f"map {length:#x} bytes at {start:#x} of {what}", path, e,
                            hint) from None
        raise BoardError(f"cannot map {length:#x} bytes at {start:#x} of {what} {path}: "
                         f"{e}") from None
    finally:
        os.close(fd)
    return mm, offset - start


# -- the register window ---------------------------------------------------------------------

class MmapRegisters:
    """The accelerator's CSR window through ``mmap``.

    Parameters
    ----------
    path : str
        ``/dev/mem`` (then ``offset`` is the physical base address, e.g. ``GP0_BASE``) or a UIO
        device ``/dev/uioN`` (then ``offset`` is ``map_index * page size``, 0 for map 0).
    offset : int
    size : int
        Bytes of the window (:data:`CSR_SIZE`).

    Notes
    -----
    ``/dev/mem`` is opened with ``O_SYNC``; for an address outside RAM (the PL) the kernel maps
    it as device memory anyway. Accesses go through a ``uint32`` NumPy view, so each
    :meth:`read32` / :meth:`write32` is exactly one aligned 32-bit bus access.
    """

    def __init__(self, path: str = "/dev/mem", offset: int = GP0_BASE, size: int = CSR_SIZE):
        _check_int("register window offset", offset, 0, (1 << 64) - 1)
        _check_int("register window size", size, 4, 1 << 30)
        if offset % 4 or size % 4:
            raise IlmpqValueError(f"the register window must be 4-byte aligned, not "
                                  f"{offset:#x} + {size:#x}")
        self.path, self.offset, self.size = path, offset, size
        self._mm, start = _map(path, offset, size, sync=True, what="the register window",
                               hint="" if "uio" in os.path.basename(path) else
                               "mapping /dev/mem needs root (or use --uio with a generic-uio "
                               "device)")
        self._words = np.frombuffer(self._mm, np.uint32, size // 4, start)

    def _index(self, offset: int) -> int:
        _check_int("register offset", offset, 0, self.size - 4)
        if offset % 4:
            raise IlmpqValueError(f"register offset {offset:#x} is not a multiple of 4")
        return offset // 4

    def read32(self, offset: int) -> int:
        """One 32-bit load at byte ``offset`` of the window."""
        return int(self._words[self._index(offset)])

    def write32(self, offset: int, value: int) -> None:
        """One 32-bit store of ``value`` at byte ``offset`` of the window."""
        i = self._index(offset)
        self._words[i] = _check_int("register value", value, 0, 0xFFFF_FFFF)

    def close(self) -> None:
        if self._mm is not None:
            self._words = None
            self._mm.close()
            self._mm = None


# -- DMA buffers --------------------------------------------------------------------------------

class DmaBuffer:
    """Physically contiguous memory shared with the accelerator.

    Subclasses set :attr:`phys_addr`, :attr:`size`, :attr:`name` and the CPU view
    ``self._arr`` (a ``uint8`` array of ``size`` bytes) and implement :meth:`sync_for_device`
    and :meth:`sync_for_cpu`; the base class offers the copies.

    Attributes
    ----------
    phys_addr : int
        Bus address of byte 0 (what the accelerator's DMA uses).
    size : int
    name : str
        For messages (``udmabuf0``, ``/dev/mem region``).
    """

    phys_addr: int
    size: int
    name: str
    _arr: np.ndarray

    def sync_for_device(self, offset: int, n: int) -> None:
        """Make the CPU's writes to ``[offset, offset + n)`` visible to the device (clean the
        cache); a no-op for uncached or coherent memory."""
        raise NotImplementedError

    def sync_for_cpu(self, offset: int, n: int) -> None:
        """Make the device's writes to ``[offset, offset + n)`` visible to the CPU (invalidate
        the cache); a no-op for uncached or coherent memory."""
        raise NotImplementedError

    def span(self, addr: int, n: int) -> int:
        """Offset in the buffer of the bus addresses ``[addr, addr + n)``; raise if outside."""
        _check_int("address", addr, 0, (1 << 64) - 1)
        _check_int("length", n, 0, (1 << 64) - 1)
        if addr < self.phys_addr or addr + n > self.phys_addr + self.size:
            raise IlmpqValueError(
                f"bytes [{addr:#x}, {addr + n:#x}) are outside the DMA buffer {self.name} "
                f"[{self.phys_addr:#x}, {self.phys_addr + self.size:#x})")
        return addr - self.phys_addr

    def write(self, offset: int, data) -> None:
        """Copy ``data`` to ``offset`` from the CPU (no cache maintenance)."""
        src = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        self._arr[offset:offset + src.size] = src

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes at ``offset`` as the CPU sees them (no cache maintenance)."""
        return self._arr[offset:offset + n].tobytes()

    def close(self) -> None:
        pass

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} {self.size:#x} bytes at {self.phys_addr:#x}>"


def _read_attr(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise _os_error("read", path, e) from None


class UdmabufBuffer(DmaBuffer):
    """A u-dma-buf (or older udmabuf) device.

    Parameters
    ----------
    name : str
        Device name (``udmabuf0``): ``/dev/<name>`` and ``<sysfs_root>/u-dma-buf/<name>/``
        (``<sysfs_root>/udmabuf/<name>/`` for udmabuf 1.x).
    cached : bool
        Map with the CPU cache on (fast CPU copies) and do the cache maintenance through sysfs
        (``sync_offset``, ``sync_size``, ``sync_direction``, then ``1`` into ``sync_for_device``
        / ``sync_for_cpu``); ``False`` opens with ``O_SYNC``: uncached (``sync_mode`` 1, the
        default) or write-combined (``sync_mode`` 2), no maintenance.
    dev_dir, sysfs_root : str
        ``/dev`` and ``/sys/class`` (other roots for tests).

    Notes
    -----
    A buffer whose ``dma_coherent`` attribute reads 1 (the device tree says the port is
    coherent, e.g. the ACP) needs no maintenance; the syncs are skipped. ``sync_count`` counts
    the maintenance operations issued.
    """

    def __init__(self, name: str = "udmabuf0", *, cached: bool = True, dev_dir: str = "/dev",
                 sysfs_root: str = "/sys/class"):
        if not isinstance(name, str) or not name or "/" in name:
            raise IlmpqValueError(f"u-dma-buf device name must be like 'udmabuf0', not {name!r}")
        for cls in ("u-dma-buf", "udmabuf"):
            attrs = os.path.join(sysfs_root, cls, name)
            if os.path.isdir(attrs):
                break
        else:
            raise BoardError(
                f"no u-dma-buf device {name!r}: neither {sysfs_root}/u-dma-buf/{name} nor "
                f"{sysfs_root}/udmabuf/{name} exists; load the driver with a buffer, e.g. "
                f"'modprobe u-dma-buf udmabuf0=16777216' (see docs/board.md)")
        self.name = name
        self.attrs = attrs
        try:
            self.phys_addr = int(_read_attr(os.path.join(attrs, "phys_addr")), 16)
            self.size = int(_read_attr(os.path.join(attrs, "size")), 0)
        except ValueError as e:
            raise BoardError(f"{attrs}: unreadable phys_addr or size ({e})") from None
        self.coherent = False
        for attr in ("dma_coherent", "coherent"):
            p = os.path.join(attrs, attr)
            if os.path.exists(p):
                self.coherent = _read_attr(p) not in ("", "0")
                break
        self.cached = bool(cached)
        self.sync_count = 0
        dev = os.path.join(dev_dir, name)
        self._mm, start = _map(dev, 0, self.size, sync=not self.cached, what="the DMA buffer")
        self._arr = np.frombuffer(self._mm, np.uint8, self.size, start)

    def _attr_write(self, attr: str, value: int) -> None:
        path = os.path.join(self.attrs, attr)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)   # as the shell's "echo >" does
            try:
                os.write(fd, str(value).encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise _os_error("write", path, e) from None

    def _sync(self, offset: int, n: int, direction: int, trigger: str) -> None:
        if not self.cached or self.coherent or n <= 0:
            return
        if offset < 0 or offset + n > self.size:
            raise IlmpqValueError(f"sync range [{offset:#x}, {offset + n:#x}) is outside "
                                  f"{self.name} (size {self.size:#x})")
        self._attr_write("sync_offset", offset)
        self._attr_write("sync_size", n)
        self._attr_write("sync_direction", direction)
        self._attr_write(trigger, 1)
        self.sync_count += 1

    def sync_for_device(self, offset: int, n: int) -> None:
        self._sync(offset, n, DMA_TO_DEVICE, "sync_for_device")

    def sync_for_cpu(self, offset: int, n: int) -> None:
        self._sync(offset, n, DMA_FROM_DEVICE, "sync_for_cpu")

    def close(self) -> None:
        if self._mm is not None:
            self._arr = None
            self._mm.close()
            self._mm = None


class PhysBuffer(DmaBuffer):
    """A reserved physical region ``[phys_addr, phys_addr + size)`` mapped uncached from
    ``/dev/mem`` (``O_SYNC``); no cache maintenance.

    The region must be memory the kernel does not use: RAM above a ``mem=`` boot argument, or a
    reserved-memory node with ``no-map``. ``mem_dev`` can name another file (tests).
    """

    def __init__(self, phys_addr: int, size: int, *, mem_dev: str = "/dev/mem"):
        self.phys_addr = _check_int("DMA region address", phys_addr, 0, (1 << 32) - 1)
        self.size = _check_int("DMA region size", size, 1, (1 << 32) - phys_addr)
        if phys_addr % 4096:
            raise IlmpqValueError(f"the DMA region must start on a 4 KiB boundary, not at "
                                  f"{phys_addr:#x}")
        self.name = f"{mem_dev} region"
        self._mm, start = _map(mem_dev, phys_addr, size, sync=True, what="the DMA region",
                               hint="mapping /dev/mem needs root")
        self._arr = np.frombuffer(self._mm, np.uint8, size, start)

    def sync_for_device(self, offset: int, n: int) -> None:
        pass   # uncached mapping

    def sync_for_cpu(self, offset: int, n: int) -> None:
        pass

    def close(self) -> None:
        if self._mm is not None:
            self._arr = None
            self._mm.close()
            self._mm = None


class PynqBuffer(DmaBuffer):
    """A contiguous buffer from ``pynq.allocate`` (PYNQ images), flushed and invalidated with
    PYNQ's ``flush()`` / ``invalidate()`` (whole buffer: PYNQ offers no ranges)."""

    def __init__(self, size: int):
        self.size = _check_int("DMA buffer size", size, 1, (1 << 32) - 1)
        try:
            import pynq
        except ImportError:
            raise BoardError("the PYNQ buffer needs the 'pynq' package (a PYNQ image); use "
                             "--udmabuf or --dma-phys elsewhere") from None
        self._buf = pynq.allocate(shape=(size,), dtype=np.uint8)
        self.phys_addr = int(self._buf.physical_address)
        self.name = "pynq.allocate buffer"
        self._arr = np.asarray(self._buf).reshape(-1).view(np.uint8)

    def sync_for_device(self, offset: int, n: int) -> None:
        if n > 0:
            self._buf.flush()

    def sync_for_cpu(self, offset: int, n: int) -> None:
        if n > 0:
            self._buf.invalidate()

    def close(self) -> None:
        if self._buf is not None:
            self._arr = None
            self._buf.freebuffer()
            self._buf = None


# -- the interrupt ------------------------------------------------------------------------------

class UioInterrupt:
    """The accelerator's interrupt through a UIO device (``uio_pdrv_genirq``).

    Writing a 32-bit 1 to the device unmasks the interrupt; after it fires the kernel masks it
    again and a 32-bit read returns the event count. :meth:`wait` unmasks, then sleeps in
    ``poll()``.

    Parameters
    ----------
    path : str
        ``/dev/uioN``.
    fd : int, optional
        An already open descriptor instead of ``path`` (tests use a socket pair).
    """

    def __init__(self, path: str | None = None, *, fd: int | None = None):
        if (path is None) == (fd is None):
            raise IlmpqValueError("UioInterrupt needs exactly one of path and fd")
        if fd is None:
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError as e:
                raise _os_error("open the UIO device", path, e) from None
        self.path = path or f"fd {fd}"
        self.fd = fd
        self.events = 0
        os.set_blocking(fd, False)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def enable(self) -> None:
        """Unmask the interrupt."""
        os.write(self.fd, struct.pack("=I", 1))

    def _consume(self) -> bool:
        try:
            data = os.read(self.fd, 4)
        except BlockingIOError:
            return False
        if len(data) != 4:
            raise BoardError(f"UIO device {self.path}: read returned {len(data)} bytes, not 4")
        self.events = struct.unpack("=I", data)[0]
        return True

    def drain(self) -> None:
        """Forget an event that is already pending."""
        while self._consume():
            pass

    def wait(self, timeout_s: float) -> bool:
        """Sleep until an event arrives (True) or ``timeout_s`` passes (False)."""
        ready = self._poll.poll(max(0, int(timeout_s * 1000 + 0.999)))
        return bool(ready) and self._consume()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- the transport ------------------------------------------------------------------------------

def check_fpga_programmed(path: str = FPGA_STATE_PATH) -> None:
    """Raise :class:`BoardError` unless the fpga-manager state at ``path`` reads
    ``operating``; do nothing if there is no fpga-manager (``path`` missing)."""
    if not os.path.exists(path):
        return
    state = _read_attr(path)
    if state != "operating":
        raise BoardError(
            f"the FPGA is not programmed ({path} reads {state!r}, not 'operating'); load the "
            f"bitstream first (docs/board.md), since touching the register window without it "
            f"hangs the CPU")


class LinuxTransport:
    """Driver transport over a register window, a DMA buffer and (optionally) a UIO interrupt.

    Parameters
    ----------
    regs
        Object with ``read32(offset) -> int`` and ``write32(offset, value)`` (one bus access
        each): :class:`MmapRegisters` on a board.
    dma : DmaBuffer
    config : HWConfig
        The hardware configuration (gives the STATUS register's layout).
    clock_hz : float
        The accelerator's clock: converts ``wait_irq``'s cycle timeout into seconds.
    irq : UioInterrupt, optional
        Sleep on the interrupt instead of polling.
    poll_interval : float
        Seconds between STATUS polls without ``irq`` (0: spin).
    irq_slice : float
        With ``irq``, STATUS is also read at least this often (missed or unwired interrupts).
    sleep, monotonic : callable
        ``time.sleep`` and ``time.monotonic`` (tests pass a simulated clock).

    Notes
    -----
    ``mem_write(addr, data)`` copies into the buffer, then cleans the CPU cache over exactly that
    range; ``mem_read(addr, n)`` invalidates the range, then copies out. Addresses are bus
    (physical) addresses inside the buffer; anything else raises :class:`IlmpqValueError`.
    """

    def __init__(self, regs, dma: DmaBuffer, config: HWConfig, *,
                 clock_hz: float = DEFAULT_CLOCK_MHZ * 1e6, irq: UioInterrupt | None = None,
                 poll_interval: float = 20e-6, irq_slice: float = 0.1,
                 sleep=time.sleep, monotonic=time.monotonic):
        if not isinstance(config, HWConfig):
            raise IlmpqTypeError(f"config must be an HWConfig, not {config!r}")
        if not (isinstance(clock_hz, (int, float)) and clock_hz > 0):
            raise IlmpqValueError(f"clock_hz must be a positive number, not {clock_hz!r}")
        if not (isinstance(poll_interval, (int, float)) and poll_interval >= 0):
            raise IlmpqValueError(f"poll_interval must be >= 0 seconds, not {poll_interval!r}")
        if not (isinstance(irq_slice, (int, float)) and irq_slice > 0):
            raise IlmpqValueError(f"irq_slice must be > 0 seconds, not {irq_slice!r}")
        self.regs, self.dma, self.config, self.irq = regs, dma, config, irq
        self.clock_hz = float(clock_hz)
        self.poll_interval, self.irq_slice = float(poll_interval), float(irq_slice)
        self._sleep, self._now = sleep, monotonic
        rm = accelerator_regmap(config)
        self._status = rm.offset("status")
        self._done = rm.encode("status", done=1)
        #: STATUS reads made by :meth:`wait_irq` (all waits).
        self.polls = 0

    @classmethod
    def open(cls, config: HWConfig, *, csr_base: int = GP0_BASE, udmabuf: str | None = None,
             udmabuf_cached: bool = True, dma_phys: int | None = None,
             dma_size: int | None = None, pynq_size: int | None = None, uio: str | None = None,
             uio_registers: bool = False, mem_dev: str = "/dev/mem", dev_dir: str = "/dev",
             sysfs_root: str = "/sys/class", fpga_state: str | None = FPGA_STATE_PATH,
             **kwargs) -> "LinuxTransport":
        """Open the board's devices and return a transport (close it, or use ``with``).

        Exactly one DMA buffer: ``udmabuf`` (a u-dma-buf device name), ``dma_phys`` with
        ``dma_size`` (a reserved region through ``mem_dev``), or ``pynq_size`` (bytes from
        ``pynq.allocate``). ``uio`` (``uio0`` or ``/dev/uio0``) adds the interrupt; with
        ``uio_registers`` the register window is the UIO device's map 0 instead of
        ``mem_dev`` at ``csr_base`` (no root needed). ``fpga_state``: the fpga-manager state file
        checked first (``None`` skips the check). Other keyword arguments go to the constructor.
        """
        given = [udmabuf is not None, dma_phys is not None or dma_size is not None,
                 pynq_size is not None]
        if sum(given) != 1:
            raise IlmpqValueError("choose exactly one DMA buffer: a u-dma-buf device "
                                  "(--udmabuf NAME), a reserved region (--dma-phys ADDR "
                                  "--dma-size BYTES) or a PYNQ buffer (--pynq BYTES)")
        if given[1] and (dma_phys is None or dma_size is None):
            raise IlmpqValueError("a reserved DMA region needs both its address (--dma-phys) "
                                  "and its size (--dma-size)")
        if uio_registers and uio is None:
            raise IlmpqValueError("registers through UIO need the UIO device (--uio)")
        _check_int("csr_base", csr_base, 0, (1 << 32) - CSR_SIZE)
        if fpga_state is not None:
            check_fpga_programmed(fpga_state)
        opened = []
        try:
            # the DMA buffer first: it fails cleanly (no bus access) on a board not set up
            if udmabuf is not None:
                dma = UdmabufBuffer(udmabuf, cached=udmabuf_cached, dev_dir=dev_dir,
                                    sysfs_root=sysfs_root)
            elif pynq_size is not None:
                dma = PynqBuffer(pynq_size)
            else:
                dma = PhysBuffer(dma_phys, dma_size, mem_dev=mem_dev)
            opened.append(dma)
            irq = regs = None
            if uio is not None:
                uio_name = os.path.basename(uio)
                uio_dev = uio if os.sep in uio else os.path.join(dev_dir, uio)
                irq = UioInterrupt(uio_dev)
                opened.append(irq)
                if uio_registers:
                    regs = _uio_registers(uio_dev, uio_name, sysfs_root, csr_base)
                    opened.append(regs)
            if regs is None:
                regs = MmapRegisters(mem_dev, csr_base, CSR_SIZE)
                opened.append(regs)
            return cls(regs, dma, config, irq=irq, **kwargs)
        except BaseException:
            for obj in reversed(opened):
                obj.close()
            raise

    # -- the driver's transport protocol --------------------------------------------------------
    async def read32(self, offset: int) -> int:
        return self.regs.read32(offset)

    async def write32(self, offset: int, value: int):
        self.regs.write32(offset, value)

    async def mem_write(self, addr: int, data: bytes):
        n = memoryview(data).nbytes
        off = self.dma.span(addr, n)
        self.dma.write(off, data)
        self.dma.sync_for_device(off, n)

    async def mem_read(self, addr: int, n: int) -> bytes:
        off = self.dma.span(addr, n)
        self.dma.sync_for_cpu(off, n)
        return self.dma.read(off, n)

    def _is_done(self) -> bool:
        self.polls += 1
        return bool(self.regs.read32(self._status) & self._done)

    async def wait_irq(self, timeout_cycles: int) -> bool:
        """Wait until STATUS.done (the interrupt condition) or ``timeout_cycles`` clock cycles
        (converted with ``clock_hz``) have passed; return whether done is set."""
        _check_int("timeout_cycles", timeout_cycles, 0, (1 << 64) - 1)
        deadline = self._now() + timeout_cycles / self.clock_hz
        if self.irq is not None:
            self.irq.drain()
            self.irq.enable()
        while True:
            if self._is_done():
                return True
            left = deadline - self._now()
            if left <= 0:
                return self._is_done()
            if self.irq is not None:
                if self.irq.wait(min(left, self.irq_slice)):
                    self.irq.enable()   # the kernel masked it; unmask for the next event
            elif self.poll_interval > 0:
                self._sleep(min(left, self.poll_interval))

    async def cycles(self) -> int:
        return 0

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap and close everything (idempotent)."""
        for obj in (self.irq, self.dma, self.regs):
            if obj is not None and hasattr(obj, "close"):
                obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        irq = f", interrupt {self.irq.path}" if self.irq is not None else ", polling"
        regs = getattr(self.regs, "path", type(self.regs).__name__)
        off = getattr(self.regs, "offset", None)
        at = f" at {off:#x}" if isinstance(off, int) else ""
        return (f"registers {regs}{at}, DMA buffer {self.dma.name} "
                f"[{self.dma.phys_addr:#x}, {self.dma.phys_addr + self.dma.size:#x}){irq}, "
                f"clock {self.clock_hz / 1e6:g} MHz")


def _uio_registers(dev: str, name: str, sysfs_root: str, csr_base: int) -> MmapRegisters:
    maps = os.path.join(sysfs_root, "uio", name, "maps", "map0")
    try:
        addr = int(_read_attr(os.path.join(maps, "addr")), 16)
        size = int(_read_attr(os.path.join(maps, "size")), 16)
    except ValueError as e:
        raise BoardError(f"{maps}: unreadable addr or size ({e})") from None
    if addr != csr_base:
        raise BoardError(f"UIO device {name} maps {addr:#x}, not the register window at "
                         f"{csr_base:#x}; fix the device-tree node's reg (docs/board.md)")
    if size < CSR_SIZE:
        raise BoardError(f"UIO device {name} maps {size:#x} bytes; the register window needs "
                         f"{CSR_SIZE:#x}")
    return MmapRegisters(dev, 0, CSR_SIZE)

