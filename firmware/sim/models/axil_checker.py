"""A passive AXI4-Lite protocol checker for Amaranth testbenches.

:class:`AXILiteChecker` watches one AXI4-Lite port (a CSR bank, the accelerator's ``s_axil_*``)
and raises :class:`AXIProtocolError` (an :class:`AssertionError`) naming the rule, the channel
and the cycle at the first violation. It drives nothing, so it sits next to any manager
(:mod:`.axil`, the driver's transport) and any subordinate.

Checked, on every clock edge:

* handshake stability on all five channels: once ``valid`` is high it stays high, and the
  payload stays unchanged, until ``ready`` (the manager's obligation on AW, W, AR; the
  subordinate's on B and R);
* B: ``bvalid`` is only asserted for a write whose AW *and* W handshakes both happened at an
  earlier edge and that has not been answered yet (AXI: the subordinate waits for both);
* R: ``rvalid`` is only asserted for a read whose AR handshake happened at an earlier edge and
  that has not been answered yet;
* ``bresp``/``rresp`` is never ``EXOKAY`` (no exclusive accesses in AXI4-Lite).

Statistics for tests: :attr:`writes`, :attr:`reads` (completed transactions) and
:attr:`error_responses` (``SLVERR``/``DECERR`` answers).
"""

from __future__ import annotations

from ilmpq.hdl.axi import AXIResp

from .axi_mem import AXIProtocolError
from .checker_base import ChannelChecker

__all__ = ["AXILiteChecker", "AXIProtocolError"]


class AXILiteChecker(ChannelChecker):
    """Passive checker of an AXI4-Lite port (testbench coroutine).

    Parameters
    ----------
    bus : interface
        The port object (members of :class:`ilmpq.hdl.axi.AXI4LiteSignature`).
    name : str
        Used in messages.
    """

    _CH = {
        "AW": ("awvalid", "awready", ("awaddr", "awprot")),
        "W": ("wvalid", "wready", ("wdata", "wstrb")),
        "B": ("bvalid", "bready", ("bresp",)),
        "AR": ("arvalid", "arready", ("araddr", "arprot")),
        "R": ("rvalid", "rready", ("rdata", "rresp")),
    }

    _PROTOCOL = "AXI4-Lite"

    def __init__(self, bus, *, name: str = "axil"):
        super().__init__(bus, name)
        self.writes = 0             #: B handshakes
        self.reads = 0              #: R handshakes
        self.error_responses = 0    #: B or R handshakes answering SLVERR or DECERR
        self._aw = 0                # handshakes so far (at earlier edges)
        self._w = 0
        self._ar = 0


    def _edge(self, v: dict) -> None:
        for ch, (valid, ready, payload) in self._CH.items():
            val, rdy = bool(v[valid]), bool(v[ready])
            pay = tuple(v[p] for p in payload)
            pv, pr, pp = self._prev[ch]
            if pv and not pr:
                if not val:
                    self._fail(f"{valid} dropped before {ready}", ch)
                if pay != pp:
                    self._fail("payload changed while valid and not ready", ch,
                               f"was {dict(zip(payload, pp))}, now {dict(zip(payload, pay))}")
            self._prev[ch] = (val, rdy, pay)

        # responses may only answer requests accepted at earlier edges
        if v["bvalid"]:
            if self.writes >= min(self._aw, self._w):
                self._fail("bvalid without a write whose AW and W handshakes both completed "
                           "earlier", "B", f"AW {self._aw}, W {self._w}, answered {self.writes}")
            if v["bresp"] == AXIResp.EXOKAY:
                self._fail("bresp = EXOKAY (no exclusive access in AXI4-Lite)", "B")
        if v["rvalid"]:
            if self.reads >= self._ar:
                self._fail("rvalid without an outstanding read", "R",
                           f"AR {self._ar}, answered {self.reads}")
            if v["rresp"] == AXIResp.EXOKAY:
                self._fail("rresp = EXOKAY (no exclusive access in AXI4-Lite)", "R")

        if v["bvalid"] and v["bready"]:
            self.writes += 1
            self.error_responses += v["bresp"] in (AXIResp.SLVERR, AXIResp.DECERR)
        if v["rvalid"] and v["rready"]:
            self.reads += 1
            self.error_responses += v["rresp"] in (AXIResp.SLVERR, AXIResp.DECERR)
        self._aw += bool(v["awvalid"] and v["awready"])
        self._w += bool(v["wvalid"] and v["wready"])
        self._ar += bool(v["arvalid"] and v["arready"])

    @property
    def outstanding(self) -> int:
        """Requests accepted and not answered yet (writes count once both AW and W are in)."""
        return max(0, min(self._aw, self._w) - self.writes) + (self._ar - self.reads)
