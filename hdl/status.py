"""Status and error codes the hardware latches and the driver decodes.

One enum for the whole accelerator: every block that can fail reports one of these codes; the
top level latches the first one into the STATUS register and stops. The driver maps each code to
a specific exception (``ilmpq.firmware.driver``).
"""

from __future__ import annotations

from amaranth.lib import enum

from amaranth.hdl import unsigned

__all__ = ["ErrorCode"]


class ErrorCode(enum.IntEnum, shape=unsigned(8)):
    NONE = 0x00
    # DMA (0x10-0x1f)
    DMA_READ_SLVERR = 0x10      #: RRESP = SLVERR on a read burst
    DMA_READ_DECERR = 0x11      #: RRESP = DECERR on a read burst
    DMA_WRITE_SLVERR = 0x12     #: BRESP = SLVERR on a write burst
    DMA_WRITE_DECERR = 0x13     #: BRESP = DECERR on a write burst
    DMA_READ_WINDOW = 0x14      #: a read command outside [WIN_BASE, WIN_LIMIT): nothing issued
    DMA_WRITE_WINDOW = 0x15     #: a write command outside the window: nothing issued
    DMA_ALIGN = 0x16            #: a command address not aligned to the AXI beat
    DMA_LENGTH = 0x17           #: a zero-length command or one whose end overflows 32 bits
    # DMA, the subordinate breaking the AXI protocol or not answering (0x18-0x1f); ERR_INFO is
    # the failing burst's byte address (docs/reliability.md, "The bus")
    DMA_READ_EXTRA = 0x18       #: an R beat whose RID has no read burst outstanding (a beat
                                #: after the RLAST of its burst); ERR_INFO = the read burst
                                #: that ended last on that port
    DMA_READ_RLAST = 0x19       #: RLAST missing on a read burst's last beat, or present early
    DMA_READ_RID = 0x1A         #: an R beat whose RID the port never issues; ERR_INFO as for
                                #: DMA_READ_EXTRA
    DMA_WRITE_BID = 0x1B        #: a B whose BID is not the AWID, or with no write outstanding
    DMA_WRITE_EARLY_B = 0x1C    #: a B before the last W beat of its burst was sent
    DMA_BUS_TIMEOUT = 0x1D      #: a transaction saw no handshake for BUS_TIMEOUT cycles
    # weight packages (0x20-0x2f)
    WPKG_MAGIC = 0x20           #: header magic wrong (not a weight package)
    WPKG_SEQ = 0x21             #: sequence number not the expected one (dropped, duplicated,
                                #: reordered package)
    WPKG_LENGTH = 0x22          #: length field zero, larger than a bank, or not whole sets; or
                                #: a LOAD_WEIGHTS stream that ends inside a package
    WPKG_CRC = 0x23             #: CRC-32 over header and payload does not match
    WPKG_MAC = 0x24             #: MAC_CTRL.enable set and the package's SipHash-2-4 tag does
                                #: not match (forged, replayed, from another model or key;
                                #: or this configuration cannot check tags)
    # program (0x30-0x3f)
    INSTR_OPCODE = 0x30         #: unknown opcode
    INSTR_FIELD = 0x31          #: a field out of range for this configuration
    PROGRAM_OVERRUN = 0x32      #: program ran past PROG_LEN without an END instruction
    INSTR_CRC = 0x33            #: an instruction's check word does not match (CRC-32 of the
                                #: instruction, its index and PROG_ADDR): a flipped bit, an
                                #: instruction moved to another index or another program
    STORE_MISMATCH = 0x34       #: a STORE that does not drain what the preceding COMPUTE
                                #: filled (no COMPUTE, another mtile count or pool flag), or a
                                #: COMPUTE / END while the previous COMPUTE is not stored yet
    # integrity of the data the accelerator reads and writes (0x50-0x5f)
    PARAMS_CRC = 0x50           #: a lane-parameter block's CRC-32 trailer does not match
    LUT_CRC = 0x51              #: a STORE's lookup table's CRC-32 trailer does not match
                                #: (ERR_INFO = the table's address): nothing of it was written
    ACT_CRC = 0x54              #: activation rows read by a LOAD_ROWS do not match the check
                                #: entries their STOREs (or the driver, for the input) wrote,
                                #: or a STORE's residual rows do not; ERR_INFO = the LOAD_ROWS
                                #: address / the STORE's residual address
    WRITE_PROTECT = 0x58        #: a STORE would write outside [WR_BASE, WR_LIMIT) (the
                                #: activation arena): nothing of it was written
    # run control (0x40-)
    TIMEOUT = 0x40              #: watchdog expired (no progress)
