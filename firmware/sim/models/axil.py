"""AXI4-Lite manager for async Amaranth testbenches, with random delays and protocol checks.

``bus`` is the subordinate's ``In(AXI4LiteSignature(...))`` interface (e.g. ``dut.bus``); the
testbench drives its manager-side signals. One transaction at a time::

    resp = await axil_write(ctx, dut.bus, 0x020, 0x1)              # -> AXIResp value
    data, resp = await axil_read(ctx, dut.bus, 0x024)

With ``rng`` (a NumPy ``Generator``), ``awvalid``, ``wvalid`` and ``arvalid`` rise after
independent random delays of 0..``max_delay`` cycles (so AW before W, W before AW and both
together all happen), and ``bready``/``rready`` are random every cycle (they may be high before
the response, as AXI allows). ``aw_delay``/``w_delay``/``ar_delay`` force a delay.

Checks (``AssertionError`` naming the rule and the cycle): BVALID before both AW and W have
been accepted, RVALID before AR was accepted, a response ``valid`` dropped or its payload
changed before ``ready``, and no response within ``timeout`` cycles. Valids never wait for
readies, payloads stay stable until the handshake, every signal the helper drives is left low.
All handshakes are sampled at the clock edge, so call these from a testbench right after a
``ctx.tick()`` (or at the start).
"""

from __future__ import annotations

__all__ = ["axil_write", "axil_read", "AXILiteManager"]


def _delay(rng, max_delay: int, forced: int | None) -> int:
    if forced is not None:
        return forced
    return 0 if rng is None else int(rng.integers(0, max_delay + 1))


def _ready(rng, p_ready: float) -> int:
    return 1 if rng is None else int(rng.random() < p_ready)


async def axil_write(ctx, bus, addr: int, data: int, strb: int = 0b1111, *, rng=None,
                     max_delay: int = 3, aw_delay: int | None = None,
                     w_delay: int | None = None, p_ready: float = 0.5,
                     timeout: int = 200) -> int:
    """Perform one AXI4-Lite write and return BRESP.

    Parameters
    ----------
    addr, data, strb : int
        AWADDR, WDATA, WSTRB.
    rng : numpy.random.Generator or None
        Randomizes the valid delays and ``bready``; ``None``: no delays, ``bready`` always 1.
    aw_delay, w_delay : int or None
        Cycles before ``awvalid``/``wvalid`` rise (overrides the random delay).
    p_ready : float
        Probability of ``bready`` being high in a cycle (with ``rng``).
    timeout : int
        Cycles before the missing response fails the test.
    """
    aw_wait = _delay(rng, max_delay, aw_delay)
    w_wait = _delay(rng, max_delay, w_delay)
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.awprot, 0)
    ctx.set(bus.wdata, data)
    ctx.set(bus.wstrb, strb)
    aw_done = w_done = False
    seen_b = None
    for cycle in range(timeout):
        aw_valid = int(not aw_done and cycle >= aw_wait)
        w_valid = int(not w_done and cycle >= w_wait)
        bready = _ready(rng, p_ready)
        ctx.set(bus.awvalid, aw_valid)
        ctx.set(bus.wvalid, w_valid)
        ctx.set(bus.bready, bready)
        _, _, awready, wready, bvalid, bresp = await ctx.tick().sample(
            bus.awready, bus.wready, bus.bvalid, bus.bresp)
        if bvalid:
            assert aw_done and w_done, (
                f"AXI4-Lite write to {addr:#x}: BVALID at cycle {cycle} before both the AW and "
                f"the W handshake (aw done={aw_done}, w done={w_done})")
            assert seen_b is None or seen_b == bresp, (
                f"AXI4-Lite write to {addr:#x}: BRESP changed from {seen_b} to {bresp} at cycle "
                f"{cycle} while BREADY was low")
            seen_b = bresp
            if bready:
                ctx.set(bus.bready, 0)
                return bresp
        elif seen_b is not None:
            raise AssertionError(f"AXI4-Lite write to {addr:#x}: BVALID dropped at cycle "
                                 f"{cycle} before the B handshake")
        aw_done |= bool(aw_valid and awready)
        w_done |= bool(w_valid and wready)
    raise AssertionError(f"AXI4-Lite write to {addr:#x}: no B response within {timeout} cycles "
                         f"(aw done={aw_done}, w done={w_done})")


async def axil_read(ctx, bus, addr: int, *, rng=None, max_delay: int = 3,
                    ar_delay: int | None = None, p_ready: float = 0.5,
                    timeout: int = 200) -> tuple[int, int]:
    """Perform one AXI4-Lite read and return ``(RDATA, RRESP)``.

    Parameters are as for :func:`axil_write` (``ar_delay`` for ``arvalid``, ``p_ready`` for
    ``rready``).
    """
    ar_wait = _delay(rng, max_delay, ar_delay)
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arprot, 0)
    ar_done = False
    seen_r = None
    for cycle in range(timeout):
        ar_valid = int(not ar_done and cycle >= ar_wait)
        rready = _ready(rng, p_ready)
        ctx.set(bus.arvalid, ar_valid)
        ctx.set(bus.rready, rready)
        _, _, arready, rvalid, rdata, rresp = await ctx.tick().sample(
            bus.arready, bus.rvalid, bus.rdata, bus.rresp)
        if rvalid:
            assert ar_done, (f"AXI4-Lite read of {addr:#x}: RVALID at cycle {cycle} before the "
                             f"AR handshake")
            assert seen_r is None or seen_r == (rdata, rresp), (
                f"AXI4-Lite read of {addr:#x}: RDATA/RRESP changed from {seen_r} to "
                f"{(rdata, rresp)} at cycle {cycle} while RREADY was low")
            seen_r = (rdata, rresp)
            if rready:
                ctx.set(bus.rready, 0)
                return rdata, rresp
        elif seen_r is not None:
            raise AssertionError(f"AXI4-Lite read of {addr:#x}: RVALID dropped at cycle {cycle} "
                                 f"before the R handshake")
        ar_done |= bool(ar_valid and arready)
    raise AssertionError(f"AXI4-Lite read of {addr:#x}: no R response within {timeout} cycles "
                         f"(ar done={ar_done})")


class AXILiteManager:
    """:func:`axil_write`/:func:`axil_read` bound to one bus and one set of random options."""

    def __init__(self, bus, *, rng=None, max_delay: int = 3, p_ready: float = 0.5,
                 timeout: int = 200):
        self.bus = bus
        self.rng = rng
        self.max_delay = max_delay
        self.p_ready = p_ready
        self.timeout = timeout

    def _opts(self, kw):
        return {"rng": self.rng, "max_delay": self.max_delay, "p_ready": self.p_ready,
                "timeout": self.timeout, **kw}

    async def write(self, ctx, addr: int, data: int, strb: int = 0b1111, **kw) -> int:
        return await axil_write(ctx, self.bus, addr, data, strb, **self._opts(kw))

    async def read(self, ctx, addr: int, **kw) -> tuple[int, int]:
        return await axil_read(ctx, self.bus, addr, **self._opts(kw))
