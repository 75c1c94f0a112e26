"""AXI4 and AXI4-Lite interface signatures (manager view).

Members use the lower-case AMBA names without the channel-prefix separator (``awaddr``,
``rdata`` ...), so a flattened port reads ``m_axi__awaddr``; :class:`ilmpq.hdl.top.Accelerator`
exposes them as ``m_axi_awaddr`` for Vivado's interface inference. A subordinate uses
``In(AXI4Signature(...))``.
"""

from __future__ import annotations

from amaranth.lib import enum

from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXIResp", "AXIBurst", "AXI4Signature", "AXI4LiteSignature"]


class AXIResp(enum.IntEnum, shape=unsigned(2)):
    OKAY = 0b00
    EXOKAY = 0b01
    SLVERR = 0b10
    DECERR = 0b11


class AXIBurst(enum.IntEnum, shape=unsigned(2)):
    FIXED = 0b00
    INCR = 0b01
    WRAP = 0b10


class AXI4Signature(wiring.Signature):
    """AXI4 full interface, manager side.

    Parameters
    ----------
    addr_width, data_width, id_width : int
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4):
        if data_width not in (32, 64, 128, 256):
            raise ValueError(f"AXI data width must be 32, 64, 128 or 256, not {data_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(8),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1),
                f"{ch}cache": Out(4), f"{ch}prot": Out(3), f"{ch}qos": Out(4),
                f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
        members.update({
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite interface, manager side (32-bit data)."""

    def __init__(self, *, addr_width: int = 12, data_width: int = 32):
        if data_width != 32:
            raise ValueError(f"AXI4-Lite data width must be 32 here, not {data_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (isinstance(other, AXI4LiteSignature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
