"""What the passive AXI4 and AXI4-Lite checkers share: the channels' signals sampled at every
clock edge and handed to the checker's ``_edge``, the failure message, and how it joins a
simulation."""

from __future__ import annotations

from .axi_mem import AXIProtocolError

__all__ = ["ChannelChecker"]


class ChannelChecker:
    """Base of :class:`~.axi_checker.AXIChecker` and :class:`~.axil_checker.AXILiteChecker`.

    A subclass sets ``_CH`` (channel -> ``(valid, ready, payload names)``) and ``_PROTOCOL``
    (for messages) and implements ``_edge(values)``, called once per clock edge with every
    channel signal's value by name.
    """

    _CH: dict = {}
    _PROTOCOL = "AXI"

    def __init__(self, bus, name: str):
        self.bus = bus
        self.name = name
        self.cycle = 0
        self._names = [n for valid, ready, payload in self._CH.values()
                       for n in (valid, ready, *payload)]
        self._prev = {ch: (False, False, ()) for ch in self._CH}

    def add_to(self, sim) -> None:
        """Add the checker to a simulator as a background testbench."""
        sim.add_testbench(self.run, background=True)

    def _fail(self, rule: str, channel: str, detail: str = ""):
        raise AXIProtocolError(f"{self.name}: {self._PROTOCOL} rule broken on the {channel} "
                               f"channel at cycle {self.cycle}: {rule}"
                               + (f" ({detail})" if detail else ""))

    def _edge(self, v: dict) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    async def run(self, ctx) -> None:
        """The testbench coroutine (never returns; add it with ``background=True``)."""
        sigs = [getattr(self.bus, n) for n in self._names]
        async for _, _, *vals in ctx.tick().sample(*sigs):
            self._edge(dict(zip(self._names, vals)))
            self.cycle += 1
