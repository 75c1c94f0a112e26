"""The accelerator's register map (``docs/architecture.md``, ``docs/registers.md``), as data.

:func:`accelerator_regmap` returns the :class:`~ilmpq.hdl.csr.RegisterMap` of one hardware
configuration. The map is the same for every configuration except the values of the ``CONST``
identification registers, the configuration constants and the increment widths of the byte
counters. The hardware bank is ``CSRBank(accelerator_regmap(config))``; ``ilmpq regmap``
generates the Python module, the C header (``firmware/board/c/ilmpq_regs.h``) and
``docs/registers.md`` from it.

Address layout (12-bit AXI4-Lite window, 4 KiB, every register 4-byte aligned):

=============  ===================================================================
0x000 - 0x01f  identification: ID, VERSION, CONFIG_ID, GEOMETRY, DATAPATH, BUFFERS
0x020 - 0x03f  run control and status: CTRL, STATUS, ERR_INFO
0x040 - 0x0ff  run parameters: PROG_ADDR, PROG_LEN, WIN_BASE, WIN_LIMIT, WATCHDOG, BUS_TIMEOUT,
               WR_BASE, WR_LIMIT, PROG_TAG (0x060-0x07f: integrity), MAC_KEY0..3, MAC_NONCE_LO/HI,
               MAC_CTRL (0x080-0x09f: authenticated weight packages)
0x100 - 0x1ff  64-bit performance counters, 8 bytes each (LO word, then HI word)
0x200 - 0xfff  unmapped (SLVERR)
=============  ===================================================================
"""

from __future__ import annotations

import dataclasses
import re

from .. import __version__
from .config import HWConfig
from .csr import Access, Constant, Field, Register, RegisterMap, RegisterMapError
from .dma import BUS_TIMEOUT_BITS, BUS_TIMEOUT_DEFAULT, BUS_TIMEOUT_MAX, CLEAR_SLACK
from .status import ErrorCode

__all__ = ["accelerator_regmap", "ID_MAGIC", "CSR_ADDR_WIDTH", "version_tuple",
           "COUNTER_NAMES"]

#: Value of the ID register: ASCII "ILMQ".
ID_MAGIC = int.from_bytes(b"ILMQ", "big")
#: AXI4-Lite address width of the register window (4 KiB).
CSR_ADDR_WIDTH = 12

_COUNTER_BASE = 0x100

#: Performance counters in address order: (name, doc). BYTES_* count up to one AXI beat of
#: bytes per port per cycle; the others count cycles or events (increment width 1).
COUNTER_NAMES = (
    ("cycles", "Clock cycles while STATUS.busy is set (the duration of the run, including "
               "the drain of an abort after an error)."),
    ("pe_busy", "Cycles in which the PE array accepted an activation beat (useful work)."),
    ("stall_weight", "Cycles in which the PE array waited for a weight set (weight bank not "
                     "loaded or not verified yet)."),
    ("stall_act", "Cycles in which the PE array waited for activations (input rows not in "
                  "the activation buffer yet)."),
    ("stall_store", "Cycles in which the PE array waited because the accumulator bank it "
                    "needs was still being post-processed or stored."),
    ("stall_dep", "Cycles in which a unit (load, compute, store) waited for a dependency token "
                  "from another unit."),
    ("bytes_read", "Bytes transferred on the AXI4 manager read data channels (all ports)."),
    ("bytes_written", "Bytes transferred on the AXI4 manager write data channel (strobed "
                      "bytes only)."),
    ("instructions", "Instructions dispatched to a unit (LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, "
                     "STORE); NOP and END are not counted."),
)


def version_tuple(version: str = __version__) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of a ``MAJOR.MINOR.PATCH...`` version string, each < 256."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise RegisterMapError(f"package version {version!r} is not of the form "
                               f"MAJOR.MINOR.PATCH")
    parts = tuple(int(p) for p in m.groups())
    if any(p > 255 for p in parts):
        raise RegisterMapError(f"package version {version!r}: each part must be < 256 to fit "
                               f"the VERSION register")
    return parts  # type: ignore[return-value]


def _log2(x: int) -> int:
    return x.bit_length() - 1


def accelerator_regmap(config: HWConfig) -> RegisterMap:
    """Return the register map of the accelerator built for ``config``.

    Parameters
    ----------
    config : HWConfig

    Returns
    -------
    RegisterMap
        Named ``ilmpq`` (C prefix ``ILMPQ_``), 12-bit address window.
    """
    if not isinstance(config, HWConfig):
        from ..golden.errors import IlmpqTypeError
        raise IlmpqTypeError(f"accelerator_regmap needs an HWConfig, not {config!r}")
    major, minor, patch = version_tuple()
    C, RO, RW = Access.CONST, Access.RO, Access.RW
    # up to one beat of bytes per AXI port per cycle
    byte_inc = (config.beat_bytes * config.axi_ports).bit_length()

    regs = [
        # -- identification ----------------------------------------------------------------
        Register("id", 0x000, [
            Field("magic", 32, C, reset=ID_MAGIC,
                  doc=f"Always {ID_MAGIC:#010x} (ASCII \"ILMQ\"): an ilmpq accelerator is at "
                      f"this address."),
        ], doc="Identification magic."),
        Register("version", 0x004, [
            Field("patch", 8, C, reset=patch, doc="Patch version of the ilmpq release."),
            Field("minor", 8, C, reset=minor, doc="Minor version."),
            Field("major", 8, C, reset=major, doc="Major version."),
        ], doc="Version of the ilmpq release that generated the hardware (and this map)."),
        Register("config_id", 0x008, [
            Field("id", 32, C, reset=config.config_id,
                  doc="HWConfig.config_id: CRC-32 of the configuration's fields. The driver "
                      "refuses to run a program compiled for another configuration."),
        ], doc="Identifier of the hardware configuration."),
        Register("geometry", 0x00C, [
            Field("lanes_lo", 16, C, reset=config.lanes_lo, doc="4-bit weight lanes."),
            Field("lanes_hi", 16, C, reset=config.lanes_hi, doc="8-bit weight lanes."),
        ], doc="PE array lanes (output channels computed in parallel)."),
        Register("datapath", 0x010, [
            Field("tn", 8, C, reset=config.tn,
                  doc="Activations per cycle (input-channel parallelism)."),
            Field("act_bits", 8, C, reset=config.act_bits, doc="Activation width in bits."),
            Field("acc_bits", 8, C, reset=config.acc_bits, doc="Accumulator width in bits."),
            Field("mult_bits", 8, C, reset=config.mult_bits,
                  doc="Width of the requantization multipliers M and Mr."),
        ], doc="Datapath widths."),
        Register("buffers", 0x014, [
            Field("wbuf_word_beats", 8, C, reset=config.wbuf_word_beats,
                  doc="AXI beats per weight-bank word."),
            Field("wbuf_depth_log2", 5, C, lsb=8, reset=_log2(config.wbuf_depth),
                  doc="log2 of the words per weight bank."),
            Field("act_depth_log2", 5, C, lsb=16, reset=_log2(config.act_depth),
                  doc="log2 of the activation-buffer words."),
            Field("acc_depth_log2", 5, C, lsb=24, reset=_log2(config.acc_depth),
                  doc="log2 of the output pixels per accumulator bank."),
            Field("mac", 1, C, lsb=31, reset=int(config.has_weight_mac),
                  doc="1: the weight buffer has the SipHash-2-4 core of authenticated weight "
                      "packages (HWConfig.weight_mac); 0: CRC-checked packages only, and "
                      "MAC_CTRL.enable = 1 makes every package fail with WPKG_MAC."),
        ], doc="On-chip buffer sizes and the weight buffer's package check."),
        # -- run control and status --------------------------------------------------------
        Register("ctrl", 0x020, [
            Field("start", 1, Access.W1P,
                  doc="Write 1: clear the performance counters, STATUS.error and "
                      "STATUS.error_code, and start executing the program at PROG_ADDR. "
                      "Ignored while STATUS.busy."),
            Field("soft_reset", 1, Access.W1P,
                  doc="Write 1: abort the run; every unit returns to idle once its outstanding "
                      "AXI transactions have completed, then STATUS.busy falls and "
                      "STATUS.error is cleared. Register values are kept. Bounded: if the "
                      "outstanding transactions have not completed within BUS_TIMEOUT cycles "
                      "they are abandoned and STATUS.bus_abandoned is set; STATUS.busy is low "
                      f"at most BUS_TIMEOUT + {CLEAR_SLACK + 2} cycles after the write. "
                      "Ignored while an abort after an error is draining (bounded the same "
                      "way)."),
            Field("irq_en", 1, RW, lsb=8,
                  doc="Interrupt enable: the irq output is irq_en & STATUS.done. Bit 8 (its "
                      "own byte), so a byte write of 0x01 to byte 0 starts without changing "
                      "it."),
        ], doc="Run control. START and SOFT_RESET read as 0."),
        Register("status", 0x024, [
            Field("busy", 1, RO, doc="A run is in progress."),
            Field("done", 1, Access.W1C,
                  doc="Set when a run ends, normally or with an error; write 1 to clear "
                      "(also acknowledges the interrupt)."),
            Field("error", 1, RO,
                  doc="The last run stopped with an error (error_code, ERR_INFO); cleared by "
                      "START or SOFT_RESET."),
            Field("bus_abandoned", 1, Access.W1C,
                  doc="Sticky: an abort or soft reset gave up waiting for outstanding AXI "
                      "transactions (BUS_TIMEOUT) and dropped them. The interconnect between "
                      "the accelerator and memory must be reset before the next run; START is "
                      "ignored while this bit is set. Write 1 to clear, after that reset."),
            Field("error_code", 8, RO, lsb=8, enum=ErrorCode,
                  doc="First error of the run (ErrorCode); NONE when error is 0."),
        ], doc="Run status."),
        Register("err_info", 0x028, [
            Field("info", 32, RO,
                  doc="Detail of the latched error: the failing AXI byte address for DMA_* "
                      "codes (for DMA_READ_EXTRA and DMA_READ_RID the read burst that ended "
                      "last on that port, for DMA_BUS_TIMEOUT a request waiting for its ready, "
                      "else the oldest burst waiting for its response), the lane-parameter "
                      "block's address for PARAMS_CRC, the lookup table's address for LUT_CRC, the "
                      "STORE's output address for "
                      "WRITE_PROTECT, the index of the failing instruction for INSTR_*, "
                      "STORE_MISMATCH, WPKG_*, PROGRAM_OVERRUN and TIMEOUT; 0 when STATUS.error "
                      "is 0."),
        ], doc="Error detail."),
        # -- run parameters ----------------------------------------------------------------
        Register("prog_addr", 0x040, [
            Field("addr", 32, RW,
                  doc=f"Byte address of the program (instruction stream) in DRAM; a multiple "
                      f"of the AXI beat ({config.beat_bytes} bytes), else the run stops with "
                      f"DMA_ALIGN."),
        ], doc="Program address."),
        Register("prog_len", 0x044, [
            Field("len", 32, RW,
                  doc="Program length in instructions; running past it without an END "
                      "instruction stops the run with PROGRAM_OVERRUN."),
        ], doc="Program length."),
        Register("win_base", 0x048, [
            Field("addr", 32, RW,
                  doc="Lowest byte address the DMA may access (inclusive)."),
        ], doc="DMA window base."),
        Register("win_limit", 0x04C, [
            Field("addr", 32, RW,
                  doc="End of the DMA window (exclusive): the DMA only accesses "
                      "[WIN_BASE, WIN_LIMIT). The reset window is empty, so nothing is "
                      "accessed until the host sets it; an access outside stops the run with "
                      "DMA_READ_WINDOW or DMA_WRITE_WINDOW."),
        ], doc="DMA window limit."),
        Register("watchdog", 0x050, [
            Field("cycles", 32, RW,
                  doc="Cycles without progress (no instruction retired and no AXI beat "
                      "transferred) after which the run stops with TIMEOUT; 0 disables the "
                      "watchdog."),
        ], doc="Watchdog."),
        Register("bus_timeout", 0x054, [
            Field("cycles", BUS_TIMEOUT_BITS, RW, reset=BUS_TIMEOUT_DEFAULT,
                  doc=f"Bus watchdog, per AXI port: an outstanding transaction (a request not "
                      f"accepted, W data not accepted, R or B not received) that sees no "
                      f"handshake on any channel of its port for this many cycles stops the "
                      f"run with DMA_BUS_TIMEOUT; it also bounds how long an abort or soft "
                      f"reset waits for outstanding transactions. 0 means the maximum, "
                      f"{BUS_TIMEOUT_MAX} (it cannot be disabled). Reset "
                      f"{BUS_TIMEOUT_DEFAULT}: a live subordinate answers far sooner."),
        ], doc="Bus watchdog."),
        # -- write protection (0x060-0x07f) ------------------------------------------------
        Register("wr_base", 0x060, [
            Field("addr", 32, RW,
                  doc="Lowest byte address a STORE may write (inclusive): the activation "
                      "arena. Program, weights and lane parameters lie outside it."),
        ], doc="Write-protection base (activation arena)."),
        Register("wr_limit", 0x064, [
            Field("addr", 32, RW,
                  doc="End of the activation arena (exclusive): a STORE whose output inside "
                      "the DMA window is not entirely inside [WR_BASE, WR_LIMIT) stops the run "
                      "with WRITE_PROTECT before any of its beats is issued. The reset arena "
                      "is empty (nothing may be written until the host sets it)."),
        ], doc="Write-protection limit (activation arena)."),
        Register("prog_tag", 0x068, [
            Field("tag", 32, RW,
                  doc="The program's tag (AccelStep.prog_tag / FrameSlot.prog_tag, chosen by "
                      "the compiler per program): every instruction's check word covers "
                      "index ^ PROG_ADDR ^ PROG_TAG, so a stale or replayed program, even at the "
                      "same address, stops at its first instruction with INSTR_CRC."),
        ], doc="Program tag."),
        # -- weight-package MAC (docs/reliability.md, "Authenticated weight packages") ------
        *(Register(f"mac_key{i}", 0x080 + 4 * i, [
            Field("key", 32, Access.WO,
                  doc=f"Bytes {4 * i}..{4 * i + 3} of the 16-byte SipHash-2-4 key, little-endian "
                      f"(byte {4 * i} in bits 7:0). Write-only: reads return 0. Cleared by a "
                      f"hard reset, kept by SOFT_RESET."),
        ], doc=f"Weight-package MAC key, word {i}.") for i in range(4)),
        Register("mac_nonce_lo", 0x090, [
            Field("nonce", 32, RW,
                  doc="Bits 31:0 of the model's 64-bit MAC nonce (from the compiled model); "
                      "bound into every package tag, so a package of another model compiled "
                      "under the same key is rejected."),
        ], doc="Weight-package MAC nonce, low word."),
        Register("mac_nonce_hi", 0x094, [
            Field("nonce", 32, RW, doc="Bits 63:32 of the model's MAC nonce."),
        ], doc="Weight-package MAC nonce, high word."),
        Register("mac_ctrl", 0x098, [
            Field("enable", 1, RW,
                  doc="1: every weight package must carry a SipHash-2-4 tag in its trailer "
                      "(instead of the CRC) over the nonce, the package's index in the run, "
                      "its header and payload; a wrong tag stops the run with WPKG_MAC before "
                      "any weight of the package is used. 0: CRC-32 check. Change it only "
                      "while STATUS.busy is 0. Cleared by a hard reset."),
        ], doc="Weight-package MAC control."),
    ]
    for i, (name, doc) in enumerate(COUNTER_NAMES):
        inc = byte_inc if name.startswith("bytes_") else 1
        regs.append(Register(name, _COUNTER_BASE + 8 * i, [
            Field.counter("count", inc_width=inc,
                          doc="Counts while STATUS.busy (the run and the drain of an abort "
                              "or a soft reset); cleared when a run starts (START); wraps "
                              "modulo 2**64."),
        ], doc=doc))

    constants = [
        Constant("config_name", config.name, "Name of the hardware configuration."),
        Constant("config_id", config.config_id, "HWConfig.config_id of this configuration."),
    ]
    for f in dataclasses.fields(config):
        if f.name != "name":
            constants.append(Constant(f.name, getattr(config, f.name), f"HWConfig.{f.name}"))
    constants += [
        Constant("lanes", config.lanes, "lanes_lo + lanes_hi"),
        Constant("macs_per_cycle", config.macs_per_cycle, "Peak multiply-accumulates per cycle."),
        Constant("beat_bytes", config.beat_bytes, "Bytes per AXI4 master beat."),
    ]
    return RegisterMap(
        "ilmpq", regs, addr_width=CSR_ADDR_WIDTH, constants=constants,
        doc=f"Control and status registers of the ilmpq accelerator (AXI4-Lite subordinate "
            f"s_axil_*, {1 << CSR_ADDR_WIDTH}-byte window, 32-bit little-endian words), "
            f"configuration {config.name}.")
