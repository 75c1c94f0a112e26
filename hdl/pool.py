"""The pooling unit: max and sum over pooling windows, beside the PE array.

A COMPUTE with ``pool`` set (``isa.PoolMode.MAX`` or ``SUM``) makes the compute unit walk, for
every block of ``lanes_pad`` input channel positions (a pooling "mtile"), every output pixel of
the tile, every group of ``tn`` channels of the block and every kernel position of the window::

    for mtile: for oy: for ox: for cg in block: for kr: for kc:     # one beat
        data = act_buf[half][(ty0 + oy*sy + kr, tx0 + ox*sx + kc, cg)]   (0 outside the tile)

and sends the beats here instead of to the PE array (``first`` on the first kernel position,
``emit`` on the last). The unit keeps one running value per channel of the group (``tn``
registers of ``act_bits + 8`` bits: a window has at most 15 x 15 positions) and, on ``emit``,
hands the group's ``tn`` results to the STORE unit as ``post_lanes``-wide beats in the order of
an accumulator drain (pixel by pixel, channel position by channel position). The STORE unit
post-processes them like accumulators: a maximum passes unchanged (``mult = 2, shift = 1``), a
sum becomes an average through the per-lane ``M, S`` of its parameters.

Zero padding: out-of-bounds positions read as 0. The inputs of max pooling are unsigned (they
follow ReLU) or offset-binary (a signed tensor stored as ``x + 2**(act_bits-1)``), so a zero
never exceeds the window's maximum (golden's padding acts as -infinity, and every window holds
at least one real value). A padded sum over an offset-binary input reads the stored zero
``2**(act_bits-1)`` instead (the compute unit's COMPUTE ``pad_ob``).

No memory: the only state is the ``tn`` running values and a staging register of
``lcm(tn, post_lanes)`` results, so the unit costs LUTs and flip-flops, no BRAM and no DSP.
"""

import math

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import HWConfig
from .store import DrainBeat

__all__ = ["PoolBeat", "PoolUnit", "pool_value_bits"]


def pool_value_bits(config: HWConfig) -> int:
    """Width of a running sum: ``act_bits`` + 8 (at most 15 x 15 = 225 window positions)."""
    return config.act_bits + 8


def PoolBeat(config: HWConfig) -> data.StructLayout:
    return data.StructLayout({
        "data": data.ArrayLayout(unsigned(config.act_bits), config.tn),
        "first": unsigned(1),     #: first kernel position of a window: start a new value
        "emit": unsigned(1),      #: last kernel position: the window's result is complete
        "sum": unsigned(1),       #: 1: sum, 0: maximum
    })


class PoolUnit(wiring.Component):
    """Reduces pooling windows (see the module docstring).

    Members
    -------
    beats : In(stream.Signature(PoolBeat(config)))
        One beat per kernel position of a window, ``tn`` channels.
    out : Out(stream.Signature(DrainBeat(config)))
        Results, ``post_lanes`` channels per beat (zero-extended to the accumulator width).
    busy : Out(1)
        Results are waiting in the staging register.
    """

    def __init__(self, config: HWConfig):
        self.config = config
        super().__init__({
            "beats": In(stream.Signature(PoolBeat(config))),
            "out": Out(stream.Signature(DrainBeat(config))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        tn, G = cfg.tn, cfg.post_lanes
        vb = pool_value_bits(cfg)
        L = math.lcm(tn, G)
        n_in, n_out = L // tn, L // G

        acc = [Signal(vb, name=f"acc{j}") for j in range(tn)]
        buf = [Signal(vb, name=f"buf{j}") for j in range(L)]
        fill = Signal(range(max(2, n_in)))
        drain = Signal(range(max(2, n_out)))
        draining = Signal()
        m.d.comb += self.busy.eq(draining | (fill != 0))

        b = self.beats.payload
        new = [Signal(vb, name=f"new{j}") for j in range(tn)]
        for j in range(tn):
            x = b.data[j]
            m.d.comb += new[j].eq(Mux(b.first, x,
                                      Mux(b.sum, acc[j] + x, Mux(x > acc[j], x, acc[j]))))

        # a beat is accepted unless it completes a window while the staging register drains
        m.d.comb += self.beats.ready.eq(~(b.emit & draining))
        with m.If(self.beats.valid & self.beats.ready):
            for j in range(tn):
                m.d.sync += acc[j].eq(new[j])
            with m.If(b.emit):
                for k in range(n_in):
                    with m.If(fill == k):
                        for j in range(tn):
                            m.d.sync += buf[k * tn + j].eq(new[j])
                with m.If(fill == n_in - 1):
                    m.d.sync += [fill.eq(0), draining.eq(1)]
                with m.Else():
                    m.d.sync += fill.eq(fill + 1)

        m.d.comb += self.out.valid.eq(draining)
        for k in range(n_out):
            with m.If(drain == k):
                for j in range(G):
                    m.d.comb += self.out.payload.acc[j].eq(buf[k * G + j])
        with m.If(self.out.valid & self.out.ready):
            with m.If(drain == n_out - 1):
                m.d.sync += [drain.eq(0), draining.eq(0)]
            with m.Else():
                m.d.sync += drain.eq(drain + 1)
        return m
