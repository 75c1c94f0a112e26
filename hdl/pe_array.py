"""The PE array: ``lanes_lo`` 4-bit lanes and ``lanes_hi`` 8-bit lanes, each a ``tn``-long dot
product per cycle accumulated into per-lane ping-pong accumulator banks in block RAM.

Contract: ``docs/architecture.md`` sections 1, 2, 4 and 5 (``PEArray``). Design notes, the
measured alternatives for the low-lane multipliers and the resource numbers: ``docs/pe_array.md``.

How a lane computes its dot product is an implementation choice, decided by ``synth_xilinx``
numbers (``docs/pe_array.md``):

* **LUT low lanes** (``lanes_lo - lanes_lo_dsp`` of them): no multiplier at all. Per activation
  ``a`` of the beat, the array computes once, for all lanes, the radix-4 multiples a 2-bit weight
  digit can select (:func:`shared_multiples`); a lane's 4-bit weight ``w = v_lo + 4*v_hi``
  (``v_lo = w[1:0]`` unsigned, ``v_hi = w[3:2]`` signed) selects one multiple per digit, and the
  selections are summed in short carry chains written as ``s - (N - 2**Wn)`` so that yosys fuses
  each 4:1 selection into the adder's LUT6 (one LUT per bit of a partial product).
* **DSP low lanes** (``lanes_lo_dsp``, in pairs): two lanes share one DSP48E1 per activation:
  ``(w1 + w2 * 2**20) * a``; the two dot products are separated after the sum (a ``2**19`` bias
  makes the low field non-negative, so no borrow correction is needed).
* **High lanes**, in pairs: two lanes share one DSP48E1 per activation:
  ``((w1 + 2**7) + w2 * 2**17) * a`` (:func:`hi_pair_dots`); the ``2**7`` offset (the sign bit
  of ``w1`` inverted, no adder) keeps the packed operand inside the 25-bit signed A port for
  every code, and a shared per-beat DSP C-port term removes it again and biases the low field
  non-negative, so the two fields separate without a borrow. An odd last high lane uses one
  DSP48E1 per 8-bit x 8-bit product (:func:`hi_lane_dot`).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqTypeError
from ..golden.formats import HI_BITS, LO_BITS
from .config import HWConfig

__all__ = ["ActBeat", "DrainCmd", "DrainBeat", "PEArray", "PACK_SHIFT", "HI_PACK_SHIFT",
           "DSP_A_BITS", "HI_LANES_PER_DSP", "HI_GROUP", "LUT_CHAIN", "hi_pair_bias", "hi_pair_dots",
           "TREE_LEVELS_PER_STAGE", "DONE_DEPTH", "shared_multiples", "lane_kind",
           "lut_lane_dots", "pair_lane_dots", "hi_lane_dot", "lut_dot_stages", "dsp_dot_stages",
           "adder_tree", "tree_stages"]

#: Bit offset of the second weight in a packed DSP pair. ``A = w1 + w2 * 2**PACK_SHIFT`` must fit
#: the 25-bit signed multiplier operand of the DSP48E1 for every 4-bit code (-8 included), and
#: the low field ``sum(w1 * a) + 2**(PACK_SHIFT - 1)`` must stay in ``[0, 2**PACK_SHIFT)``:
#: ``|sum| <= 64 * 8 * 255 < 2**19`` for every configuration.
PACK_SHIFT = 20
#: Width of the DSP48E1 A multiplier operand (signed; the B operand is 18 bits signed).
DSP_A_BITS = 25
#: Bit offset of the second weight in a packed high-lane pair (:func:`hi_pair_dots`): the
#: second 8-bit weight fills the top bits of the 25-bit signed A operand, and the low field
#: holds the sum of two products (``|w1*a + w1'*a'| <= 2 * 128 * 255 < 2**16``) plus a bias of
#: ``2**16``, non-negative and below ``2**17``.
HI_PACK_SHIFT = DSP_A_BITS - HI_BITS
#: High lanes that share one DSP48E1 per activation (:func:`hi_pair_dots`; an odd last high
#: lane has a DSP48E1 per activation of its own).
HI_LANES_PER_DSP = 2
#: Products of a packed high-lane pair summed in the DSP post-adders before the two lanes'
#: fields are split (the 17-bit low field holds two; :func:`hi_pair_dots`).
HI_GROUP = 2
#: Activations per carry chain in a LUT lane. Each weight digit has its own chains, with one
#: fused adder per activation, so a pipeline stage is ``LUT_CHAIN`` adders deep (4: about
#: 7-8 ns of LUT, carry and routing delay, for a 100 MHz target).
LUT_CHAIN = 4
#: Adder-tree levels between pipeline registers. It is 1 on purpose: yosys' ``alumacc`` merges
#: unregistered adders whose result cannot overflow into one ``$macc`` cell, which is then
#: mapped to a carry-save tree of full adders (two LUTs per bit and operand instead of one);
#: a register after every level keeps every adder a carry-chain ``$alu``.
TREE_LEVELS_PER_STAGE = 1
#: Depth of the ``done`` queue: ``last`` beats accepted and not yet reported (``act.ready`` is
#: held low for a ``last`` beat while the queue could overflow).
DONE_DEPTH = 4


def _addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class ActBeat(data.StructLayout):
    """Layout of one activation beat (``PEArray.act`` payload).

    Fields
    ------
    data : ArrayLayout(unsigned(act_bits), tn)
        ``tn`` activations (consecutive input channels of one pixel at one kernel offset).
    addr : unsigned(log2(acc_depth))
        Pixel (accumulator word) the dot products are added into.
    bank : unsigned(1)
        Accumulator bank.
    first : unsigned(1)
        Start this pixel's accumulation: ``acc = dot`` instead of ``acc + dot``.
    swap : unsigned(1)
        From this beat on, use the shadow weight set.
    last : unsigned(1)
        Last beat into this bank for this tile (reported on ``done`` once written).
    """

    def __init__(self, config: HWConfig):
        super().__init__({
            "data": data.ArrayLayout(unsigned(config.act_bits), config.tn),
            "addr": unsigned(_addr_bits(config.acc_depth)),
            "bank": unsigned(1),
            "first": unsigned(1),
            "swap": unsigned(1),
            "last": unsigned(1),
        })


class DrainCmd(data.StructLayout):
    """Layout of a drain command: read the accumulators of all lanes at ``(bank, addr)``."""

    def __init__(self, config: HWConfig):
        super().__init__({
            "bank": unsigned(1),
            "addr": unsigned(_addr_bits(config.acc_depth)),
        })


class DrainBeat(data.StructLayout):
    """Layout of one drain beat.

    Fields
    ------
    acc : ArrayLayout(signed(acc_bits), post_lanes * post_groups)
        Accumulator of lane ``group * post_lanes * post_groups + i`` in element ``i`` (0 past
        the last lane): ``post_groups`` post-processing groups a beat.
    group : unsigned
        Index of this beat within its command,
        ``range(ceil(lanes / (post_lanes * post_groups)))``.
    last : unsigned(1)
        The final beat of the command.
    """

    def __init__(self, config: HWConfig):
        W = config.post_lanes * config.post_groups
        n_groups = -(-config.lanes // W)
        super().__init__({
            "acc": data.ArrayLayout(signed(config.acc_bits), W),
            "group": unsigned(_addr_bits(n_groups)),
            "last": unsigned(1),
        })


def lane_kind(config: HWConfig, lane: int) -> str:
    """How lane ``lane`` (lane order: low lanes, then high lanes) is implemented: ``"lut"``,
    ``"dsp_pair"`` (a packed low lane) or ``"hi"``."""
    if not 0 <= lane < config.lanes:
        raise IndexError(f"lane {lane} out of range(0, {config.lanes})")
    if lane >= config.lanes_lo:
        return "hi"
    return "dsp_pair" if lane >= config.lanes_lo - config.lanes_lo_dsp else "lut"


def shared_multiples(act_bits: int):
    """Constants of the LUT-lane arithmetic for ``act_bits``-bit activations.

    Returns ``(Wn, lo_table, hi_table)``: ``Wn`` is the width of a selected multiple, and the
    tables give, per 2-bit digit code ``s``, the multiple ``N`` as a function of the activation
    ``a``: ``lo_table[s](a) = 3*Amax - s*a`` (digit value ``s``) and ``hi_table[s](a) = Amax -
    v(s)*a`` with ``v = (0, 1, -2, -1)[s]`` (the signed top digit), ``Amax = 2**act_bits - 1``.
    All are in ``[0, 3*Amax]``. A chain step ``s <- s - (N - 2**Wn)`` adds ``v*a + 2**Wn -
    c`` with ``c = 3*Amax`` (low digit) or ``Amax`` (high digit).
    """
    amax = (1 << act_bits) - 1
    wn = (3 * amax).bit_length()
    # shifts and adds only: a constant multiplication would be mapped to a DSP48E1 by yosys
    lo = (lambda a: 3 * amax, lambda a: 3 * amax - a, lambda a: 3 * amax - (a << 1),
          lambda a: 3 * amax - (a + (a << 1)))
    hi = (lambda a: amax, lambda a: amax - a, lambda a: amax + (a << 1), lambda a: amax + a)
    return wn, lo, hi


class _LutGeometry:
    """Widths and constants of the LUT-lane arithmetic for ``tn`` activations of ``act_bits``.

    A chain step on a ``wn``-bit multiple adds ``v*a + 2**wn - c`` (``c`` the multiple of digit
    0). The tree works modulo ``2**tree_w``; one step per lane (activation ``special``, low
    digit, the last step of chain 0) uses a ``w_special``-bit table whose digit-0 entry
    ``c_special`` makes the sum of all step constants a multiple of ``2**tree_w``, so the tree
    result read as ``signed(tree_w)`` is the exact dot product. Being the last step of its
    chain, it is the only one yosys trims to ``tree_w`` bits (every earlier step is narrower),
    so no two consecutive steps have the same width.
    """

    def __init__(self, tn: int, act_bits: int):
        self.wn, _, _ = shared_multiples(act_bits)
        amax = (1 << act_bits) - 1
        b_lo = (1 << self.wn) - 3 * amax
        b_hi = (1 << self.wn) - amax
        dot_w = (tn * 8 * amax).bit_length() + 1           # |dot| <= tn * 8 * amax
        self.tree_w = max(dot_w, self.wn + LUT_CHAIN + 3)   # hi chains (x4) fit unshifted
        self.n_chains = -(-tn // LUT_CHAIN)
        self.special = min(tn, LUT_CHAIN) - 1
        self.w_special = self.tree_w + 1
        total = tn * b_lo + 4 * tn * b_hi                   # all constants, no special step
        mod = 1 << self.tree_w
        c = (total - b_lo) % mod                            # special step adds 2**w - c
        self.c_special = c if c >= 3 * amax else c + mod
        assert 3 * amax <= self.c_special < (1 << self.w_special)


def tree_stages(n_terms: int) -> int:
    """Register stages of :func:`adder_tree` over ``n_terms`` terms (the sum is always
    registered, so at least 1)."""
    levels = max(0, (n_terms - 1).bit_length())
    return max(1, -(-levels // TREE_LEVELS_PER_STAGE))


def adder_tree(m: Module, name: str, terms: list, stages: int, width: int | None = None):
    """Sum ``terms`` in a balanced adder tree registered every ``TREE_LEVELS_PER_STAGE`` levels
    and at the end, delayed to exactly ``stages`` register stages (``>= tree_stages``). With
    ``width``, every node is kept modulo ``2**width`` (the caller reinterprets the result).
    Returns the final register."""
    level = 0
    used = 0
    vals = list(terms)

    def cap(v):
        return v[:width] if width is not None and len(v) > width else v

    while len(vals) > 1:
        nxt = [cap(vals[i] + vals[i + 1]) for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
        level += 1
        if level % TREE_LEVELS_PER_STAGE == 0 and len(vals) > 1:
            regs = []
            for k, v in enumerate(vals):
                r = Signal(v.shape(), name=f"{name}_s{used}_{k}")
                m.d.sync += r.eq(v)
                regs.append(r)
            vals = regs
            used += 1
    out = vals[0]
    while used < stages:
        r = Signal(out.shape(), name=f"{name}_r{used}")
        m.d.sync += r.eq(out)
        out = r
        used += 1
    assert used == stages, (name, used, stages)
    return out


def lut_dot_stages(tn: int) -> int:
    """Register stages of :func:`lut_lane_dots` after its input registers."""
    return 1 + tree_stages(2 * -(-tn // LUT_CHAIN))


def dsp_dot_stages(tn: int) -> int:
    """Register stages of :func:`pair_lane_dots` and :func:`hi_lane_dot` after their inputs."""
    return 1 + tree_stages(tn)


def lut_lane_dots(m: Module, name: str, act_bits: int, data: list, load, weights: list,
                  stages: int) -> list:
    """Dot products of 4-bit weights with unsigned activations, without multipliers.

    Parameters
    ----------
    data : list of Value
        The ``tn`` activations, sampled into the shared-multiple registers when ``load`` is
        high (they are the input register stage).
    weights : list of list of Value
        Per lane, the ``tn`` 4-bit two's complement weights (stable while in use).
    stages : int
        Register stages after the input registers (``>= lut_dot_stages(tn)``).

    Returns
    -------
    list of Signal
        Per lane, ``sum_j w[j] * data[j]`` as ``signed(tree_w)``, ``stages`` cycles after the
        data were loaded (for the weights of that cycle + 1).
    """
    tn = len(data)
    g = _LutGeometry(tn, act_bits)
    wn = g.wn
    _, lo_tab, hi_tab = shared_multiples(act_bits)
    tabs = []           # per activation: (lo multiples, hi multiples), code 0 constant
    for j in range(tn):
        lo_m = [Const(lo_tab[0](0), wn)]
        hi_m = [Const(hi_tab[0](0), wn)]
        for s in (1, 2, 3):
            rl = Signal(wn, name=f"{name}_mlo{j}_{s}")
            rh = Signal(wn, name=f"{name}_mhi{j}_{s}")
            with m.If(load):
                m.d.sync += [rl.eq(lo_tab[s](data[j])), rh.eq(hi_tab[s](data[j]))]
            lo_m.append(rl)
            hi_m.append(rh)
        tabs.append((Array(lo_m), Array(hi_m)))
    # the wide table of the special step (see _LutGeometry)
    a = data[g.special]
    wide = [Const(g.c_special, g.w_special)]
    for s, mult in ((1, a), (2, a << 1), (3, a + (a << 1))):
        r = Signal(g.w_special, name=f"{name}_mwide_{s}")
        with m.If(load):
            m.d.sync += r.eq(g.c_special - mult)
        wide.append(r)
    wide = Array(wide)

    dots = []
    for lane, w in enumerate(weights):
        terms = []
        for c in range(g.n_chains):
            js = range(c * LUT_CHAIN, min(tn, (c + 1) * LUT_CHAIN))
            for digit, shift in ((0, 0), (1, 2)):
                s = Const(0, wn)
                for k, j in enumerate(js):
                    code = w[j][2 * digit:2 * digit + 2]
                    if (j, digit) == (g.special, 0):
                        n, nw, width = wide[code], g.w_special, g.w_special + 1
                    else:
                        n, nw, width = tabs[j][digit][code], wn, wn + 1 + k
                    # s - (N - 2**nw), unsigned: the top bits of the subtrahend are ones, so
                    # only the nw bits of N cost LUTs, and yosys fuses the 4:1 selection of N
                    # into the adder's LUTs (one LUT6 per bit). Unsigned subtraction and a
                    # width that grows by one per step keep alumacc from merging the chain
                    # into a carry-save $macc.
                    nxt = Signal(width, name=f"{name}{lane}_c{c}d{digit}_{k}")
                    m.d.comb += nxt.eq(s - Cat(n, Const(-1, width - nw)))
                    s = nxt
                r = Signal(len(s), name=f"{name}{lane}_c{c}d{digit}")
                m.d.sync += r.eq(s)
                terms.append(r if shift == 0 else Cat(Const(0, shift), r))
        total = adder_tree(m, f"{name}{lane}_t", terms, stages - 1, width=g.tree_w)
        dot = Signal(signed(g.tree_w), name=f"{name}{lane}_dot")
        m.d.comb += dot.eq(total)
        dots.append(dot)
    return dots


def pair_lane_dots(m: Module, name: str, acts: list, w1: list, w2: list, stages: int):
    """Two low lanes on one DSP48E1 per activation: ``(w1 + w2 * 2**PACK_SHIFT) * a``.

    ``acts`` are registered activations, ``w1``/``w2`` the two lanes' 4-bit weights. Returns
    ``(dot1, dot2)``, ``stages`` (``>= dsp_dot_stages(tn)``) cycles after ``acts``. A bias of
    ``2**(PACK_SHIFT - 1)`` on the first product keeps the low field non-negative, so the high
    field needs no borrow correction and the low one is its bits with the top bit inverted.
    """
    prods = []
    for j, a in enumerate(acts):
        packed = Signal(signed(25), name=f"{name}_w{j}")
        m.d.comb += packed.eq(w1[j].as_signed() + (w2[j].as_signed() << PACK_SHIFT))
        pr = Signal(signed(25 + len(a) + 1), name=f"{name}_m{j}")
        prod = packed * a
        if j == 0:
            prod = prod + (1 << (PACK_SHIFT - 1))
        m.d.sync += pr.eq(prod)
        prods.append(pr)
    total = adder_tree(m, f"{name}_t", prods, stages - 1)
    lo = Signal(signed(PACK_SHIFT), name=f"{name}_lo")
    hi = Signal(signed(len(total) - PACK_SHIFT), name=f"{name}_hi")
    m.d.comb += [lo.eq(Cat(total[:PACK_SHIFT - 1], ~total[PACK_SHIFT - 1])),
                 hi.eq(total[PACK_SHIFT:])]
    return lo, hi


def hi_pair_bias(m: Module, name: str, data: list, load) -> list:
    """The shared DSP C-port terms of the packed high-lane pairs (:func:`hi_pair_dots`).

    Per group ``k`` of activations ``data[2k], data[2k + 1]`` (the last group of an odd ``tn``
    has one), ``2**(HI_PACK_SHIFT - 1) - 2**(HI_BITS - 1) * sum(group)``, registered when
    ``load`` is high (an input register stage, like the activation registers). One set serves
    every pair of the array: it depends on the activations only.
    """
    bias = []
    for k in range(0, len(data), HI_GROUP):
        group = data[k:k + HI_GROUP]
        total = sum(group[1:], group[0])
        r = Signal(HI_PACK_SHIFT, name=f"{name}_b{k // HI_GROUP}")
        with m.If(load):
            m.d.sync += r.eq((1 << (HI_PACK_SHIFT - 1)) - (total << (HI_BITS - 1)))
        bias.append(r)
    return bias


def hi_pair_dots(m: Module, name: str, acts: list, bias: list, w1: list, w2: list,
                 stages: int):
    """Two high (8-bit) lanes on one DSP48E1 per activation.

    Product ``j``: ``A_j * a_j`` with ``A_j = (w1[j] + 2**7) + w2[j] * 2**HI_PACK_SHIFT``, a
    25-bit signed operand for every pair of codes (-128 included): ``w1 + 2**7`` is ``w1`` with
    its sign bit inverted, in ``[0, 255]``, so no adder builds ``A_j`` and it never overflows
    (``w1 + w2 * 2**17`` would for ``w2 = -128, w1 < 0``). Products ``2k`` and ``2k + 1`` are
    summed in the DSP post-adders together with the shared ``bias[k]`` (:func:`hi_pair_bias`,
    the DSP C port) ``= 2**16 - 2**7 * (a_2k + a_2k+1)``, which removes the ``2**7`` offset and
    leaves the low field ``w1 . a + 2**16`` in ``[0, 2**17)`` (two products are below ``2**16``
    in magnitude). Every group sum therefore splits exactly: the high lane's term is the bits
    from ``HI_PACK_SHIFT`` up, with no borrow, and the low lane's term is the low
    ``HI_PACK_SHIFT`` bits with the top one inverted. Each lane then sums its ``ceil(tn / 2)``
    terms in its own adder tree.

    ``acts`` and ``bias`` are registered (the input stage); returns ``(dot1, dot2)``,
    ``stages`` (``>= dsp_dot_stages(tn)``) cycles after them: the products, the group sums and
    ``ceil(log2(ceil(tn / 2)))`` tree levels, the same depth as :func:`hi_lane_dot`.
    """
    K = HI_PACK_SHIFT
    top = HI_BITS - 1
    amax = (1 << len(acts[0])) - 1
    # a group's low field, w1 . a + 2**(K - 1), stays in [0, 2**K)
    assert HI_GROUP * (1 << top) * amax < 1 << (K - 1), (K, amax)
    prods = []
    for j, a in enumerate(acts):
        packed = Signal(signed(DSP_A_BITS), name=f"{name}_w{j}")
        m.d.comb += packed.eq(Cat(w1[j][:top], ~w1[j][top], Const(0, K - HI_BITS), w2[j]))
        prod = packed * a
        if j % HI_GROUP == 0:
            prod = prod + bias[j // HI_GROUP]
        pr = Signal(signed(DSP_A_BITS + len(a) + 2), name=f"{name}_m{j}")
        m.d.sync += pr.eq(prod)
        prods.append(pr)
    lo_terms, hi_terms = [], []
    hi_w = HI_BITS + len(acts[0]) + 1        # |w2 . a| over two products < 2**(8 + act_bits)
    for k in range(0, len(prods), HI_GROUP):
        group = prods[k:k + HI_GROUP]
        g = Signal(signed(len(group[0]) + 1), name=f"{name}_g{k // HI_GROUP}")
        m.d.sync += g.eq(sum(group[1:], group[0]))
        lo_terms.append(Cat(g[:K - 1], ~g[K - 1]).as_signed())
        hi_terms.append(g[K:K + hi_w].as_signed())
    return (adder_tree(m, f"{name}_lo", lo_terms, stages - 2),
            adder_tree(m, f"{name}_hi", hi_terms, stages - 2))


def hi_lane_dot(m: Module, name: str, acts: list, w: list, stages: int):
    """An 8-bit lane: one DSP48E1 product per activation, registered, then an adder tree.
    Returns the dot product ``stages`` (``>= dsp_dot_stages(tn)``) cycles after ``acts``."""
    prods = []
    for j, a in enumerate(acts):
        pr = Signal(signed(len(w[j]) + len(a) + 1), name=f"{name}_m{j}")
        m.d.sync += pr.eq(w[j].as_signed() * a)
        prods.append(pr)
    return adder_tree(m, f"{name}_t", prods, stages - 1)


@dataclass
class _Stage:
    """Control fields of a beat travelling down the pipeline."""
    valid: Signal
    addr: Signal
    bank: Signal
    first: Signal
    last: Signal


def _check_config(config) -> HWConfig:
    if not isinstance(config, HWConfig):
        raise IlmpqTypeError(
            f"PEArray needs an ilmpq.hdl.config.HWConfig, not {type(config).__name__} "
            f"({config!r})")
    return config


class PEArray(wiring.Component):
    """The PE array (``docs/architecture.md`` section 5).

    Parameters
    ----------
    config : HWConfig
        ``lanes_lo``, ``lanes_lo_dsp``, ``lanes_hi``, ``tn``, ``act_bits``, ``acc_bits``,
        ``acc_depth``, ``wbuf_word_bits``/``words_per_set`` and ``post_lanes`` are used.

    Members
    -------
    wload : In(stream.Signature(unsigned(wbuf_word_bits)))
        Words of the next weight set in order (word 0 holds set bits ``[0, wbuf_word_bits)``;
        the set layout is ``docs/architecture.md`` section 4). After ``words_per_set`` words the
        shadow set is complete and ``ready`` stays low until a ``swap`` beat takes it. In the
        cycle a ``swap`` beat transfers, ``wload.ready`` is high again, so the first word of the
        following set may transfer in that same cycle: ``wload.ready`` depends combinationally
        on ``act.valid`` and ``act.payload.swap`` (the producer of ``act`` must not make
        ``act.valid`` depend on ``wload.ready``).
    act : In(stream.Signature(ActBeat(config)))
        Activation beats. ``ready`` is low only (a) for a ``swap`` beat while the shadow set is
        incomplete and (b) for a ``last`` beat while ``DONE_DEPTH`` ``last`` beats are accepted
        and not yet reported on ``done``; otherwise one beat transfers per cycle. After reset
        the active weights are all zero.
    done : Out(stream.Signature(unsigned(1)))
        The bank of each ``last`` beat, in order, once its accumulator write and all earlier
        ones have landed (a drain command issued from then on reads the final sums).
    drain : In(stream.Signature(DrainCmd(config)))
        Read the accumulators of every lane at ``(bank, addr)``.
    dout : Out(stream.Signature(DrainBeat(config)))
        For each drain command, ``n_groups = ceil(lanes / (post_lanes * post_groups))`` beats
        in group order, ``last`` on the final one. Up to one beat per cycle, also across commands.

    Bank ownership contract (the sequencer's side)
    ----------------------------------------------
    Compute (``act`` beats) and drain use the two banks independently and at the same time,
    but never the same bank: a bank belongs to the drain from the transfer of its first drain
    command until the ``last`` beat of the final one has transferred on ``dout``, and no
    ``act`` beat may address it in that interval. (If an ``act`` beat does read the bank in
    the cycle a drain command would read it, the command waits; later compute reads of a bank
    being drained corrupt the drained values.) ``done`` tells when a bank's sums are final.

    Latency (exact, without stalls)
    -------------------------------
    A beat transferred on ``act`` in cycle ``t`` writes its accumulators during cycle
    ``t + compute_latency``; the sums are readable by a drain command transferred from cycle
    ``t + compute_latency + 1`` on, and the ``done`` entry of a ``last`` beat is valid in cycle
    ``t + compute_latency + 1``. A drain command transferred in cycle ``t`` has its first
    ``dout`` beat valid in cycle ``t + 2``. Any sequence of beats (the same ``addr`` on
    consecutive beats included) gives the exact sums: a beat whose predecessor wrote the same
    accumulator takes the value from a forwarding register.

    Arithmetic
    ----------
    ``acc <= (first ? 0 : acc) + sum_j w[lane][j] * data[j]`` in ``acc_bits`` two's complement;
    the compiler guarantees it never overflows (the hardware would wrap).

    Attributes
    ----------
    compute_latency : int
        Cycles from an ``act`` transfer to the cycle its accumulators are written.
    n_groups : int
        Drain beats per drain command.
    """

    def __init__(self, config: HWConfig):
        self._MustUse__silence = True     # no "unused elaboratable" warning if the check fails
        self.config = _check_config(config)
        self._MustUse__silence = False
        cfg = config
        self.n_groups = -(-cfg.lanes // (cfg.post_lanes * cfg.post_groups))
        self._lut_lanes = [l for l in range(cfg.lanes) if lane_kind(cfg, l) == "lut"]
        self._pair_lanes = [l for l in range(cfg.lanes) if lane_kind(cfg, l) == "dsp_pair"]
        self._hi_lanes = list(range(cfg.lanes_lo, cfg.lanes))
        # pipeline depth of the dot products (registers after the input stage)
        self._dot_stages = max(lut_dot_stages(cfg.tn) if self._lut_lanes else 0,
                               dsp_dot_stages(cfg.tn))
        # stage 1 = input registers, stages 2.. = dot, stage K = accumulate/write
        self.compute_latency = 1 + self._dot_stages
        super().__init__({
            "wload": In(stream.Signature(unsigned(cfg.wbuf_word_bits))),
            "act": In(stream.Signature(ActBeat(cfg))),
            "done": Out(stream.Signature(unsigned(1))),
            "drain": In(stream.Signature(DrainCmd(cfg))),
            "dout": Out(stream.Signature(DrainBeat(cfg))),
        })

    # -- elaboration -------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        tn, ab, accb = cfg.tn, cfg.act_bits, cfg.acc_bits
        beat = self.act.payload

        # ---- weight sets: shadow (loading) and active ---------------------------------------
        nw = cfg.words_per_set
        shadow = [Signal(cfg.wbuf_word_bits, name=f"shadow{i}") for i in range(nw)]
        wcount = Signal(range(nw + 1))
        shadow_full = Signal()
        m.d.comb += shadow_full.eq(wcount == nw)
        active = Signal(cfg.set_bits)

        pending = Signal(range(DONE_DEPTH + 1))      # last beats accepted, not yet reported
        m.d.comb += self.act.ready.eq(~(beat.swap & ~shadow_full)
                                      & ~(beat.last & (pending == DONE_DEPTH)))
        accept = Signal()
        swap_fire = Signal()
        m.d.comb += [
            accept.eq(self.act.valid & self.act.ready),
            swap_fire.eq(accept & beat.swap),
            self.wload.ready.eq(~shadow_full | swap_fire),
        ]
        wl_fire = self.wload.valid & self.wload.ready
        # a word arriving while the shadow is full can only do so in a swap cycle: it starts
        # the next set at word 0
        widx = Mux(shadow_full, 0, wcount)
        for i in range(nw):
            with m.If(wl_fire & (widx == i)):
                m.d.sync += shadow[i].eq(self.wload.payload)
        with m.If(swap_fire):
            m.d.sync += [active.eq(Cat(*shadow)[:cfg.set_bits]), wcount.eq(wl_fire)]
        with m.Elif(wl_fire):
            m.d.sync += wcount.eq(wcount + 1)

        lo_base = 0
        hi_base = cfg.lanes_lo * tn * LO_BITS

        def w_lo(lane, j):
            o = lo_base + (lane * tn + j) * LO_BITS
            return active[o:o + LO_BITS]

        def w_hi(lane, j):
            o = hi_base + ((lane - cfg.lanes_lo) * tn + j) * HI_BITS
            return active[o:o + HI_BITS]

        # ---- stage 1: input registers -------------------------------------------------------
        def stage(name):
            return _Stage(Signal(name=f"{name}_valid"),
                          Signal(_addr_bits(cfg.acc_depth), name=f"{name}_addr"),
                          Signal(name=f"{name}_bank"), Signal(name=f"{name}_first"),
                          Signal(name=f"{name}_last"))

        st = [None, stage("s1")]
        m.d.sync += st[1].valid.eq(accept)
        with m.If(accept):
            m.d.sync += [st[1].addr.eq(beat.addr), st[1].bank.eq(beat.bank),
                         st[1].first.eq(beat.first), st[1].last.eq(beat.last)]
        for k in range(2, self.compute_latency + 1):
            s = stage(f"s{k}")
            m.d.sync += [s.valid.eq(st[k - 1].valid), s.addr.eq(st[k - 1].addr),
                         s.bank.eq(st[k - 1].bank), s.first.eq(st[k - 1].first),
                         s.last.eq(st[k - 1].last)]
            st.append(s)
        K = self.compute_latency
        D = self._dot_stages

        # raw activations for the DSP lanes
        act1 = [Signal(ab, name=f"a1_{j}") for j in range(tn)]
        with m.If(accept):
            m.d.sync += [act1[j].eq(beat.data[j]) for j in range(tn)]

        dots = {}       # lane -> dot product, a register valid in stage K

        # ---- LUT low lanes ------------------------------------------------------------------
        if self._lut_lanes:
            lut = lut_lane_dots(m, "l", ab, [beat.data[j] for j in range(tn)], accept,
                                [[w_lo(lane, j) for j in range(tn)] for lane in self._lut_lanes],
                                D)
            dots.update(zip(self._lut_lanes, lut))

        # ---- DSP low-lane pairs ---------------------------------------------------------------
        for p in range(0, len(self._pair_lanes), 2):
            l1, l2 = self._pair_lanes[p], self._pair_lanes[p + 1]
            dots[l1], dots[l2] = pair_lane_dots(m, f"p{l1}", act1,
                                                [w_lo(l1, j) for j in range(tn)],
                                                [w_lo(l2, j) for j in range(tn)], D)

        # ---- high lanes: pairs on shared DSP48E1s, an odd last lane on its own --------------
        hi = self._hi_lanes
        if len(hi) >= HI_LANES_PER_DSP:
            bias = hi_pair_bias(m, "hb", [beat.data[j] for j in range(tn)], accept)
        for p in range(0, len(hi) - 1, HI_LANES_PER_DSP):
            l1, l2 = hi[p], hi[p + 1]
            dots[l1], dots[l2] = hi_pair_dots(m, f"h{l1}", act1, bias,
                                              [w_hi(l1, j) for j in range(tn)],
                                              [w_hi(l2, j) for j in range(tn)], D)
        if len(hi) % HI_LANES_PER_DSP:
            lane = hi[-1]
            dots[lane] = hi_lane_dot(m, f"h{lane}", act1, [w_hi(lane, j) for j in range(tn)], D)

        # ---- accumulator banks ---------------------------------------------------------------
        # stage K-1 issues the read, stage K adds and writes; one forwarding register covers
        # the only write the read cannot see (the immediately preceding beat's)
        rd = st[K - 1]
        wr = st[K]
        # acc_in select, registered one stage early (the beat in stage K-1 against the one in
        # stage K, which is the forwarding register's content in the next cycle) so that it
        # reaches every lane as two plain nets: 0/1 read data of bank 0/1, 2 forward, 3 zero
        sel = Signal(2)
        hit = rd.valid & wr.valid & (wr.addr == rd.addr) & (wr.bank == rd.bank)
        m.d.sync += sel.eq(Mux(rd.first, 3, Mux(hit, 2, rd.bank)))

        # drain command acceptance (computed below) needs the compute read requests
        comp_rd = [Signal(name=f"comp_rd{b}") for b in range(2)]
        for b in range(2):
            m.d.comb += comp_rd[b].eq(rd.valid & ~rd.first & (rd.bank == b))
        drain_issue = Signal()
        dcmd = self.drain.payload
        rd_addr = [Signal.like(rd.addr, name=f"rd_addr{b}") for b in range(2)]
        rd_en = [Signal(name=f"rd_en{b}") for b in range(2)]
        for b in range(2):
            m.d.comb += [
                rd_addr[b].eq(Mux(comp_rd[b], rd.addr, dcmd.addr)),
                rd_en[b].eq(comp_rd[b] | (drain_issue & (dcmd.bank == b))),
            ]

        rdata = [[None] * cfg.lanes for _ in range(2)]
        for lane in range(cfg.lanes):
            ports = []
            for b in range(2):
                mem = Memory(shape=signed(accb), depth=cfg.acc_depth, init=[])
                m.submodules[f"acc{lane}_b{b}"] = mem
                rp = mem.read_port(domain="sync")
                wp = mem.write_port()
                m.d.comb += [rp.addr.eq(rd_addr[b]), rp.en.eq(rd_en[b]),
                             wp.addr.eq(wr.addr), wp.en.eq(wr.valid & (wr.bank == b))]
                rdata[b][lane] = rp.data
                ports.append(wp)
            dot = dots[lane]
            fwd = Signal(signed(accb), name=f"fwd{lane}")
            acc_in = Signal(signed(accb), name=f"acc_in{lane}")
            m.d.comb += acc_in.eq(Array([rdata[0][lane], rdata[1][lane], fwd,
                                         Const(0, signed(accb))])[sel])
            total = Signal(signed(accb), name=f"acc_new{lane}")
            m.d.comb += total.eq(acc_in + dot)
            for wp in ports:
                m.d.comb += wp.data.eq(total)
            with m.If(wr.valid):
                m.d.sync += fwd.eq(total)

        # ---- done queue ----------------------------------------------------------------------
        m.submodules.done_q = done_q = SyncFIFO(width=1, depth=DONE_DEPTH)
        m.d.comb += [
            done_q.w_en.eq(wr.valid & wr.last),
            done_q.w_data.eq(wr.bank),
            self.done.valid.eq(done_q.r_rdy),
            self.done.payload.eq(done_q.r_data),
            done_q.r_en.eq(self.done.ready),
        ]
        done_fire = self.done.valid & self.done.ready
        last_in = accept & beat.last
        with m.If(last_in & ~done_fire):
            m.d.sync += pending.eq(pending + 1)
        with m.Elif(~last_in & done_fire):
            m.d.sync += pending.eq(pending - 1)

        # ---- drain ---------------------------------------------------------------------------
        n_groups = self.n_groups
        P = cfg.post_lanes * cfg.post_groups
        held = Signal()                 # the read data of bank held_bank belong to a command
        held_bank = Signal()
        group = Signal(range(max(2, n_groups)))
        group_last = Signal()
        m.d.comb += group_last.eq(group == n_groups - 1)
        out_valid = Signal()
        out = Signal(DrainBeat(cfg))
        load = Signal()
        m.d.comb += [
            load.eq(held & (~out_valid | self.dout.ready)),
            self.drain.ready.eq((~held | (load & group_last))
                                & ~Mux(dcmd.bank, comp_rd[1], comp_rd[0])),
            drain_issue.eq(self.drain.valid & self.drain.ready),
            self.dout.valid.eq(out_valid),
            self.dout.payload.eq(out),
        ]
        with m.If(load):
            m.d.sync += [out_valid.eq(1), out.group.eq(group), out.last.eq(group_last)]
            with m.Switch(Cat(group, held_bank)):
                for b in range(2):
                    for g in range(n_groups):
                        with m.Case(g | (b << len(group))):
                            for i in range(P):
                                lane = g * P + i
                                value = rdata[b][lane] if lane < cfg.lanes else 0
                                m.d.sync += out.acc[i].eq(value)
            with m.If(group_last):
                m.d.sync += [held.eq(0), group.eq(0)]
            with m.Else():
                m.d.sync += group.eq(group + 1)
        with m.Elif(self.dout.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(drain_issue):
            m.d.sync += [held.eq(1), held_bank.eq(dcmd.bank), group.eq(0)]

        return m
