"""A passive AXI4 protocol checker for Amaranth testbenches.

:class:`AXIChecker` watches one AXI4 port (any manager: the DMA, the accelerator top) and raises
:class:`AXIProtocolError` (an :class:`AssertionError`) naming the rule, the channel and the cycle
at the first violation. It drives nothing, so it can sit next to any subordinate model.

Checked on the manager's channels (AR, AW, W):

* handshake stability: once ``valid`` is high it stays high and the payload stays unchanged
  until ``ready``;
* bursts: ``len + 1 <= max_burst``, ``INCR``, ``size`` equal to the bus width, no 4 KiB crossing,
  optionally inside an address ``window`` ``[base, limit)``;
* ``wlast`` on exactly the last beat of each burst (W bursts are matched to AW bursts in order;
  W data may come before its AW);
* optionally at most ``max_reads_outstanding`` read bursts in flight.

Checked on the subordinate's channels (R, B), as seen by the manager: stability (if
``check_subordinate``), every R beat belongs to the oldest outstanding AR burst of its ID, ``rlast``
on exactly its last beat, every B answers the oldest AW burst of its ID whose W beats are all
transferred.

With ``subordinate_protocol=False`` (a test that makes the subordinate break these R/B rules on
purpose) the R/B rules are recorded in :attr:`subordinate_violations` instead of raising, and the
bookkeeping follows what a manager that checks them does (a read burst ends on RLAST or on its
last expected beat, a stray beat or B is ignored, a B answers the oldest write burst), so the
manager's side stays fully checked. With ``abandon_after = N`` a manager may drop a ``valid``
without its ``ready`` only after the subordinate has not completed a handshake for ``N`` cycles
(a dead bus, given up on); :meth:`bus_reset` then forgets the bursts in flight.

It also keeps statistics for tests: :attr:`bursts` (every AR/AW handshake), beat counts and the
largest number of reads in flight.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from ilmpq.hdl.axi import AXIBurst

from .axi_mem import AXIProtocolError
from .checker_base import ChannelChecker

__all__ = ["AXIChecker", "Burst", "AXIProtocolError"]

BOUNDARY = 4096


@dataclass
class Burst:
    kind: str       #: "r" or "w"
    id: int
    addr: int
    beats: int
    cycle: int      #: edge of the AR / AW handshake
    done: int = 0   #: beats transferred so far
    w_complete: bool = False


class AXIChecker(ChannelChecker):
    """Passive checker of an AXI4 port (testbench coroutine).

    Parameters
    ----------
    bus : interface
        The AXI4 port object (members of :class:`ilmpq.hdl.axi.AXI4Signature`).
    max_burst : int
        Longest burst allowed in beats (16).
    max_reads_outstanding : int, optional
        If given, more read bursts in flight (AR accepted, last R beat not yet) is an error.
    window : (int, int), optional
        If given, every burst must lie inside ``[base, limit)``.
    check_subordinate : bool
        Also check the stability of R and B (the subordinate's obligations).
    name : str
        Used in messages.
    """

    _CH = {
        "AR": ("arvalid", "arready", ("arid", "araddr", "arlen", "arsize", "arburst")),
        "AW": ("awvalid", "awready", ("awid", "awaddr", "awlen", "awsize", "awburst")),
        "W": ("wvalid", "wready", ("wdata", "wstrb", "wlast")),
        "R": ("rvalid", "rready", ("rid", "rdata", "rresp", "rlast")),
        "B": ("bvalid", "bready", ("bid", "bresp")),
    }

    def __init__(self, bus, *, max_burst: int = 16, max_reads_outstanding: int | None = None,
                 window: tuple[int, int] | None = None, check_subordinate: bool = True,
                 subordinate_protocol: bool = True, abandon_after: int | None = None,
                 name: str = "axi"):
        super().__init__(bus, name)
        self.beat_bytes = len(bus.wdata) // 8
        self.size_code = self.beat_bytes.bit_length() - 1
        self.max_burst = max_burst
        self.max_reads_outstanding = max_reads_outstanding
        self.window = window
        self.check_subordinate = check_subordinate
        self.subordinate_protocol = subordinate_protocol
        self.abandon_after = abandon_after
        self.subordinate_violations: list[str] = []    #: R/B rules broken (tolerant mode)
        self.abandoned: list[tuple[int, str]] = []     #: (cycle, channel) valid dropped
        self._last_handshake = 0

        self.bursts: list[Burst] = []       #: every AR/AW handshake, in order
        self.r_beats = 0
        self.w_beats = 0
        self.b_responses = 0
        self.reads_in_flight = 0
        self.max_reads_in_flight = 0        #: the largest number of reads in flight seen

        self._reads = defaultdict(deque)     # id -> outstanding AR bursts
        self._writes = defaultdict(deque)    # id -> AW bursts not answered on B
        self._aw_order: list[Burst] = []     # AW bursts in order, for matching W
        self._w_burst = 0                    # index of the W burst in progress
        self._w_beat = 0                     # beats of it so far
        self._w_early: deque[int] = deque()  # lengths of W bursts completed before their AW


    def _check_burst(self, ch: str, addr: int, length: int, size: int, burst: int) -> None:
        beats = length + 1
        if beats > self.max_burst:
            self._fail(f"{ch.lower()}len + 1 = {beats} > max_burst {self.max_burst}", ch)
        if burst != AXIBurst.INCR:
            self._fail(f"burst type {burst} is not INCR", ch)
        if size != self.size_code:
            self._fail(f"{ch.lower()}size = {size} is not the bus width ({self.size_code})", ch)
        nbytes = beats * self.beat_bytes
        if addr // BOUNDARY != (addr + nbytes - 1) // BOUNDARY:
            self._fail(f"burst [{addr:#x}, {addr + nbytes:#x}) crosses a 4 KiB boundary", ch)
        if self.window is not None:
            lo, hi = self.window
            if addr < lo or addr + nbytes > hi:
                self._fail(f"burst [{addr:#x}, {addr + nbytes:#x}) outside the window "
                           f"[{lo:#x}, {hi:#x})", ch)

    def _sub_fail(self, rule: str, channel: str) -> None:
        """An R/B rule broken by the subordinate: fail, or record it in tolerant mode."""
        if self.subordinate_protocol:
            self._fail(rule, channel)
        self.subordinate_violations.append(f"cycle {self.cycle}, {channel}: {rule}")

    def bus_reset(self) -> None:
        """The interconnect was reset: forget every burst in flight."""
        self._reads.clear()
        self._writes.clear()
        self._aw_order.clear()
        self._w_burst = self._w_beat = 0
        self._w_early.clear()
        self.reads_in_flight = 0
        self._prev = {ch: (False, False, ()) for ch in self._CH}

    def _stability(self, v: dict) -> None:
        for ch, (valid, ready, payload) in self._CH.items():
            val = v[valid]
            pay = tuple(v[p] for p in payload)
            pv, pr, pp = self._prev[ch]
            if pv and not pr and (ch in ("AR", "AW", "W") or self.check_subordinate):
                if (not val and ch in ("AR", "AW", "W") and self.abandon_after is not None
                        and self.cycle - self._last_handshake >= self.abandon_after):
                    self.abandoned.append((self.cycle, ch))
                    self._prev[ch] = (bool(val), bool(v[ready]), pay)
                    continue
                if not val:
                    self._fail(f"{valid} dropped before {ready}", ch)
                if pay != pp:
                    self._fail("payload changed while valid and not ready", ch,
                               f"was {dict(zip(payload, pp))}, now {dict(zip(payload, pay))}")
            self._prev[ch] = (bool(val), bool(v[ready]), pay)

    def _w_match(self, aw: Burst, length: int) -> None:
        if length != aw.beats:
            self._fail(f"wlast after {length} beats, the AW burst at {aw.addr:#x} has "
                       f"{aw.beats}", "W")
        aw.w_complete = True

    def _edge(self, v: dict) -> None:
        self._stability(v)
        if any(v[valid] and v[ready] for valid, ready, _ in self._CH.values()):
            self._last_handshake = self.cycle

        # B first: a B is only legal for a burst whose AW and last W beat completed at an
        # earlier edge (BVALID may only rise after them)
        if v["bvalid"] and v["bready"]:
            self.b_responses += 1
            q = self._writes.get(v["bid"])
            if not q:
                self._sub_fail(f"B response with BID {v['bid']} but no write burst of that ID "
                               f"is outstanding", "B")
                # a manager with one AWID takes it as the answer to its oldest burst
                q = next((q for q in self._writes.values() if q), None)
            elif not q[0].w_complete:
                self._sub_fail(f"B response for the burst at {q[0].addr:#x} (BID {v['bid']}) "
                               f"before its last W beat", "B")
            if q:
                q.popleft()

        # AR
        if v["arvalid"] and v["arready"]:
            self._check_burst("AR", v["araddr"], v["arlen"], v["arsize"], v["arburst"])
            b = Burst("r", v["arid"], v["araddr"], v["arlen"] + 1, self.cycle)
            self.bursts.append(b)
            self._reads[b.id].append(b)
            self.reads_in_flight += 1
            self.max_reads_in_flight = max(self.max_reads_in_flight, self.reads_in_flight)
            if (self.max_reads_outstanding is not None
                    and self.reads_in_flight > self.max_reads_outstanding):
                self._fail(f"{self.reads_in_flight} read bursts in flight > "
                           f"{self.max_reads_outstanding}", "AR")

        # AW
        if v["awvalid"] and v["awready"]:
            self._check_burst("AW", v["awaddr"], v["awlen"], v["awsize"], v["awburst"])
            b = Burst("w", v["awid"], v["awaddr"], v["awlen"] + 1, self.cycle)
            self.bursts.append(b)
            self._writes[b.id].append(b)
            self._aw_order.append(b)
            if self._w_early:
                # W data of this burst already finished before its address
                self._w_match(b, self._w_early.popleft())

        # W
        if v["wvalid"] and v["wready"]:
            self.w_beats += 1
            self._w_beat += 1
            k = self._w_burst
            aw = self._aw_order[k] if k < len(self._aw_order) else None
            if aw is not None and self._w_beat == aw.beats and not v["wlast"]:
                self._fail(f"no wlast on beat {self._w_beat - 1}, the last of a {aw.beats}-beat "
                           f"burst", "W", f"awaddr {aw.addr:#x}")
            if v["wlast"]:
                if aw is not None:
                    self._w_match(aw, self._w_beat)
                else:
                    self._w_early.append(self._w_beat)
                self._w_burst += 1
                self._w_beat = 0
            elif self._w_beat >= self.max_burst:
                self._fail(f"{self._w_beat} W beats without wlast", "W")

        # R
        if v["rvalid"] and v["rready"]:
            self.r_beats += 1
            q = self._reads.get(v["rid"])
            if not q:
                self._sub_fail(f"R beat with RID {v['rid']} but no read burst of that ID is "
                               f"outstanding", "R")
            else:
                b = q[0]
                b.done += 1
                last = b.done == b.beats
                if bool(v["rlast"]) != last:
                    self._sub_fail(f"rlast = {v['rlast']} on beat {b.done - 1} of the "
                                   f"{b.beats}-beat burst at {b.addr:#x} (RID {b.id})", "R")
                if last or v["rlast"]:
                    q.popleft()
                    self.reads_in_flight -= 1

    @property
    def outstanding(self) -> int:
        """Bursts accepted and not yet finished (reads without last R beat, writes without B)."""
        return (sum(len(q) for q in self._reads.values())
                + sum(len(q) for q in self._writes.values()))
