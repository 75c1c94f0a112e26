"""Post-processing unit: bias, requantization, residual, ReLU/clamp, byte packing.

The datapath of ``docs/architecture.md`` section 5 (``PostProc``) and of the numeric contract in
``docs/numeric.md`` section 2. Per lane and beat it computes::

    t = acc + bias                                   # acc_bits + 1 bits, never wraps
    y = clamp((t*M + res*Mr + 2**(S-1)) >> S, qmin, qmax)

with ``>>`` arithmetic (floor), ``res*Mr = 0`` when ``res_en`` is low, and ``[qmin, qmax]`` the
unsigned ``[0, 2**act_bits - 1]`` with ``relu`` or the signed ``[-2**(act_bits-1),
2**(act_bits-1) - 1]`` without. ``docs/postproc.md`` explains the pipeline, the widths and the
measured resources.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden.errors import IlmpqTypeError
from .config import ConfigError, HWConfig

__all__ = ["PostIn", "PostOut", "PostProc", "LutWrite", "LutStage", "BYTE_BITS", "RES_BITS",
           "TAG_BITS"]

#: Bits of one stored activation (activations of every width are stored one per byte).
BYTE_BITS = 8
#: Width of a residual input: a stored byte, interpreted as unsigned (0..255) or signed
#: (-128..127) by whoever reads it, so one more bit than a byte.
RES_BITS = BYTE_BITS + 1
#: Width of the opaque tag that travels with every beat (for the sequencer).
TAG_BITS = 16
#: Width of the DSP48E1 multiplier's signed A operand; a wider ``t`` is split in two DSPs.
DSP_A_BITS = 25
#: The DSP48E1 cascade shift (``PCIN >> 17``): where ``t`` is split.
DSP_CASCADE_SHIFT = 17


def _shift_right_low(m: Module, value, amount, width: int, name: str):
    """The low ``width`` bits of ``value >> amount`` (arithmetic) and whether they are all of it.

    A logarithmic shifter ordered from the largest step down, so that each level only keeps the
    bits the later levels still need (``width + 2**b - 1`` after the step ``2**b``). The result
    fits ``signed(width)`` exactly when no level dropped information, i.e. when the bits each
    level drops are all copies of the sign bit it keeps (if the final value fits ``width`` bits,
    the value after step ``2**b`` fits ``width + 2**b - 1`` bits, since only shifts smaller than
    ``2**b`` follow).

    Returns
    -------
    (Signal(signed(width)), Value)
        The low bits and a 1-bit "the shifted value does not fit ``signed(width)``" flag.
    """
    x = value
    overflow = []
    for b in reversed(range(len(amount))):
        step = 1 << b
        keep = width + step - 1
        full = Signal(signed(len(x)), name=f"{name}{b}_full")
        m.d.comb += full.eq(Mux(amount[b], x >> step, x))
        if keep < len(full):
            top = full[keep - 1:]
            overflow.append(~(top.all() | ~top.any()))
            nxt = Signal(signed(keep), name=f"{name}{b}")
            m.d.comb += nxt.eq(full)
            x = nxt
        else:
            x = full
    assert len(x) == width        # the last level (step 1) keeps exactly ``width`` bits
    return x, Cat(*overflow).any()


def _check_config(config) -> HWConfig:
    if not isinstance(config, HWConfig):
        raise IlmpqTypeError(
            f"PostProc needs an ilmpq.hdl.config.HWConfig, not {type(config).__name__} "
            f"({config!r})")
    return config


class PostIn(data.StructLayout):
    """Payload of one input beat of :class:`PostProc` (``G = config.post_lanes`` lanes).

    Parameters
    ----------
    config : HWConfig

    Members
    -------
    acc : G x signed(acc_bits)
        Dot-product sums from the PE array.
    bias : G x signed(acc_bits)
        Per-lane bias, added to ``acc`` before the multiplication.
    mult : G x unsigned(mult_bits)
        Per-lane requantization multiplier ``M``.
    shift : G x unsigned(shift_bits)
        Per-lane shift ``S``.
    res_mult : G x unsigned(mult_bits)
        Per-lane residual multiplier ``Mr``.
    res : G x signed(RES_BITS)
        Residual input, already sign-interpreted (an unsigned byte 0..255 or a signed byte
        -128..127; any 9-bit value is computed exactly).
    res_en : unsigned(1)
        Use the residual; when low, ``res*Mr`` is 0 whatever ``res`` and ``res_mult`` hold.
    relu : unsigned(1)
        Clamp to ``[0, 2**act_bits - 1]``; when low, to ``[-2**(act_bits-1), 2**(act_bits-1)-1]``.
    lut : unsigned(G)
        Per lane: the output byte is the lookup table's entry for the clamped value (its index:
        the value when ``relu``, ``value + 2**(act_bits-1)`` without) instead of the value.
    last : unsigned(1)
        Passed through.
    tag : unsigned(TAG_BITS)
        Opaque, passed through.
    """

    def __init__(self, config: HWConfig):
        cfg = _check_config(config)
        g = cfg.post_lanes
        super().__init__({
            "acc": data.ArrayLayout(signed(cfg.acc_bits), g),
            "bias": data.ArrayLayout(signed(cfg.acc_bits), g),
            "mult": data.ArrayLayout(unsigned(cfg.mult_bits), g),
            "shift": data.ArrayLayout(unsigned(cfg.shift_bits), g),
            "res_mult": data.ArrayLayout(unsigned(cfg.mult_bits), g),
            "res": data.ArrayLayout(signed(RES_BITS), g),
            "res_en": unsigned(1),
            "relu": unsigned(1),
            "lut": unsigned(g),
            "last": unsigned(1),
            "tag": unsigned(TAG_BITS),
        })


def LutWrite(config: HWConfig) -> data.StructLayout:
    """One write into :class:`PostProc`'s lookup table: ``addr`` is the word (``beat_bytes``
    entries, entry ``addr * beat_bytes + k`` in byte ``k`` of ``data``)."""
    cfg = _check_config(config)
    words = (1 << cfg.act_bits) // cfg.beat_bytes
    return data.StructLayout({"addr": unsigned(max(1, (words - 1).bit_length())),
                              "data": unsigned(cfg.axi_data_width)})


class LutStage(wiring.Component):
    """The lookup table of :class:`PostProc` (combinational reads, between its last register
    and its output FIFO; a component of its own so that its cost can be synthesized alone).

    ``2**act_bits`` bytes in words of ``beat_bytes`` (one DMA beat written per cycle), one
    asynchronous read port per lane (distributed RAM); lane ``i`` reads the entry whose index
    is its value ``inp[i]`` (``act_bits`` low bits; ``relu`` low: a signed value, offset by
    ``2**(act_bits-1)``) and gives it on ``out[i]`` when ``en[i]``, else ``inp[i]`` unchanged.

    Members
    -------
    wr : In(stream.Signature(LutWrite(config)))
        Table writes (``ready`` is always high).
    inp : In(G x unsigned(8)); relu : In(1); en : In(G)
    out : Out(G x unsigned(8))
    """

    def __init__(self, config: HWConfig):
        self._config = cfg = _check_config(config)
        if (1 << cfg.act_bits) % cfg.beat_bytes:     # unreachable with HWConfig's own limits
            raise ConfigError(f"the lookup table needs 2**act_bits = {1 << cfg.act_bits} to be "
                              f"a multiple of the beat's {cfg.beat_bytes} bytes")
        g = cfg.post_lanes
        super().__init__({
            "wr": In(stream.Signature(LutWrite(cfg))),
            "inp": In(data.ArrayLayout(unsigned(BYTE_BITS), g)),
            "relu": In(1),
            "en": In(g),
            "out": Out(data.ArrayLayout(unsigned(BYTE_BITS), g)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        a_bits, bb = cfg.act_bits, cfg.beat_bytes
        sel_bits = (bb - 1).bit_length()
        m.submodules.mem = mem = Memory(shape=unsigned(cfg.axi_data_width),
                                        depth=(1 << a_bits) // bb, init=[])
        w = mem.write_port()
        m.d.comb += [w.addr.eq(self.wr.payload.addr), w.data.eq(self.wr.payload.data),
                     w.en.eq(self.wr.valid), self.wr.ready.eq(1)]
        for i in range(cfg.post_lanes):
            rp = mem.read_port(domain="comb")
            idx = Signal(a_bits, name=f"l{i}_idx")
            m.d.comb += [idx.eq(self.inp[i][:a_bits] ^ Mux(self.relu, 0, 1 << (a_bits - 1))),
                         rp.addr.eq(idx[sel_bits:])]
            entry = rp.data.word_select(idx[:sel_bits], BYTE_BITS) if sel_bits else rp.data
            m.d.comb += self.out[i].eq(Mux(self.en[i], entry, self.inp[i]))
        return m


class PostOut(data.StructLayout):
    """Payload of one output beat of :class:`PostProc`.

    Parameters
    ----------
    config : HWConfig

    Members
    -------
    data : G x unsigned(BYTE_BITS)
        The clamped results as bytes: unsigned values as they are, signed values two's
        complement in 8 bits (sign-extended from ``act_bits``). Lane ``i`` is byte ``i`` of the
        packed value, so the payload is a little-endian AXI beat when ``G`` fills one.
    last : unsigned(1)
    tag : unsigned(TAG_BITS)
        ``last`` and ``tag`` of the input beat this output beat came from.
    """

    def __init__(self, config: HWConfig):
        cfg = _check_config(config)
        super().__init__({
            "data": data.ArrayLayout(unsigned(BYTE_BITS), cfg.post_lanes),
            "last": unsigned(1),
            "tag": unsigned(TAG_BITS),
        })


class PostProc(wiring.Component):
    """Pipelined post-processing of ``G = config.post_lanes`` accumulators per beat.

    Bit-exact with golden's :func:`ilmpq.golden.ops.requantize` for every input the compiler
    can produce (``relu = 1`` is golden's ``relu=True, out_signed=False``, ``relu = 0`` its
    ``relu=False, out_signed=True``, ``out_bits = config.act_bits``), and exact with respect to
    the formula in the module docstring for *every* value the ports can carry:

    * ``t = acc + bias`` is computed in ``acc_bits + 1`` bits, so it never wraps;
    * ``v = t*M + res*Mr`` is :attr:`sum_bits` wide, enough for every port value (49 bits with
      the default widths, which is ``NumericSpec.requant_bits``: the rounding constant is never
      added to ``v``);
    * the rounding is done without materializing ``v + 2**(S-1)``: ``z = v >> (S-1)``, then
      ``(z + 1) >> 1``, which equals ``(v + 2**(S-1)) >> S`` for ``S >= 1`` and never overflows;
      ``S = 0`` means no shift and no rounding (the formula's ``floor(v + 1/2) = v``); shifts past
      the width of ``v`` give the exact 0 or -1 before rounding;
    * the clamp is applied before the final ``(z + 1) >> 1`` (to ``[2*qmin - 1, 2*qmax]``, an
      exact rewrite because the rounding step is monotonic), so only ``act_bits + 2`` bits of
      ``z`` and a "does not fit" flag leave the shifter.

    Parameters
    ----------
    config : HWConfig
        Widths and the lane count ``G = config.post_lanes``.

    Members
    -------
    inp : In(stream.Signature(PostIn(config)))
        Input beats. ``inp.ready`` comes from a register (a credit count, see below): it never
        depends combinationally on ``out.ready`` or ``inp.valid``.
    out : Out(stream.Signature(PostOut(config)))
        Output beats in input order. ``out.valid`` is a FIFO's "not empty" (independent of
        ``out.ready``); the payload is stable until the transfer.
    lut_wr : In(stream.Signature(LutWrite(config)))
        Writes (``ready`` is always high) into the lookup table (``2**act_bits`` bytes, ``beat_bytes`` a word: one DMA beat
        a cycle). The writer loads it only while no beat is in the unit (the store unit loads
        a STORE's table before its first mtile, after the previous STORE's last write).

    Attributes
    ----------
    lanes : int
        ``G``.
    t_bits, sum_bits : int
        Widths of ``acc + bias`` and of ``t*M + res*Mr`` (both signed).
    pipe_stages : int
        Register stages of the datapath (5).
    latency : int
        Cycles from a transfer on ``inp`` to the first cycle its result is valid on ``out``
        when the output FIFO is empty (6).
    fifo_depth : int
        Entries of the output FIFO (``latency + 1`` = 7).

    Notes
    -----
    Pipeline (per lane; no clock enables, so yosys packs the registers into the DSP48E1s):

    1. ``t = acc + bias`` (fabric adder), ``res`` gated by ``res_en``; these registers, ``M`` and
       ``Mr`` are the DSP A/B input registers.
    2. The products ``t_lo*M``, ``t_hi*M`` (``t`` split at bit 17) and ``res*Mr`` (DSP M
       registers); the shift amount ``max(S-1, 0)`` and "round" (``S != 0``).
    3. ``v = (t_hi*M << 17) + t_lo*M + res*Mr`` through the DSP post-adders and cascade paths
       (``PCOUT -> PCIN``, the last one ``>> 17``) into the P register of the last DSP (the
       low 17 bits of ``v`` in fabric flip-flops). Three DSP48E1 per lane.
    4. Logarithmic barrel shifter ``v >> (S-1)``, largest step first, keeping ``act_bits + 2``
       bits plus a "does not fit" flag and the sign.
    5. Clamp, the rounding step ``(c + 1) >> 1``, and the byte (sign-extended to 8 bits).

    Back-pressure. Stage 5 writes into a :class:`~amaranth.lib.fifo.SyncFIFO` of
    :attr:`fifo_depth` entries that drives ``out``. Flow control is by credits: a counter starts at
    :attr:`fifo_depth`, is decremented by every transfer on ``inp`` and incremented by every
    transfer on ``out``; ``inp.ready`` is high while it is non-zero. Every accepted beat thus has
    a FIFO entry reserved and the pipeline never stalls. With ``out.ready`` held high,
    ``inp.ready`` stays high: one beat per cycle, no bubbles, each result on ``out`` exactly
    :attr:`latency` cycles after its input. Under any ``out.ready`` pattern no beat is lost,
    duplicated or reordered; with ``out.ready`` low, ``inp`` accepts at most :attr:`fifo_depth`
    beats beyond those transferred on ``out`` and then holds ``inp.ready`` low until ``out``
    takes one (the first input transfer after that is one cycle later). Gaps in ``inp.valid``
    travel down the pipeline as bubbles and are not written to the FIFO.
    """

    pipe_stages = 5

    def __init__(self, config: HWConfig):
        self._config = _check_config(config)
        cfg = self._config
        if cfg.acc_bits < RES_BITS:
            raise ConfigError(                  # unreachable with HWConfig's own limits
                f"PostProc needs acc_bits >= {RES_BITS} (the residual width), "
                f"not {cfg.acc_bits}")
        self.lanes = cfg.post_lanes
        self.t_bits = cfg.acc_bits + 1
        # the widest |t*M + res*Mr| any port values give: t = -2**acc_bits, res = -2**8, M and Mr
        # at their maximum (the positive extreme is smaller)
        m_max = (1 << cfg.mult_bits) - 1
        v_max = (1 << cfg.acc_bits) * m_max + (1 << (RES_BITS - 1)) * m_max
        self.sum_bits = (v_max - 1).bit_length() + 1
        assert self.sum_bits >= cfg.numeric.requant_bits   # never narrower than golden's
        self.latency = self.pipe_stages + 1
        self.fifo_depth = self.latency + 1
        super().__init__({
            "inp": In(stream.Signature(PostIn(cfg))),
            "out": Out(stream.Signature(PostOut(cfg))),
            "lut_wr": In(stream.Signature(LutWrite(cfg))),
        })

    @property
    def config(self) -> HWConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        g = self.lanes
        n_stages = self.pipe_stages
        p_in = self.inp.payload
        a_bits = cfg.act_bits

        accept = Signal()
        m.d.comb += accept.eq(self.inp.valid & self.inp.ready)

        # -- control: valid/last/tag/relu travel with the beat (valid is the only reset) ----
        valid = [Signal(name=f"s{k + 1}_valid") for k in range(n_stages)]
        last = [Signal(name=f"s{k + 1}_last", reset_less=True) for k in range(n_stages)]
        tag = [Signal(TAG_BITS, name=f"s{k + 1}_tag", reset_less=True) for k in range(n_stages)]
        relu = [Signal(name=f"s{k + 1}_relu", reset_less=True) for k in range(n_stages)]
        lut = [Signal(g, name=f"s{k + 1}_lut", reset_less=True) for k in range(n_stages)]
        m.d.sync += [
            valid[0].eq(accept),
            last[0].eq(p_in.last),
            tag[0].eq(p_in.tag),
            relu[0].eq(p_in.relu),
            lut[0].eq(p_in.lut),
        ]
        for k in range(1, n_stages):
            m.d.sync += [
                valid[k].eq(valid[k - 1]),
                last[k].eq(last[k - 1]),
                tag[k].eq(tag[k - 1]),
                relu[k].eq(relu[k - 1]),
                lut[k].eq(lut[k - 1]),
            ]
        relu_clamp = relu[n_stages - 2]      # relu as seen by the clamp stage's inputs

        # -- datapath, per lane -------------------------------------------------------------
        split = self.t_bits > DSP_A_BITS
        sh_bits = cfg.shift_bits
        # clamp bounds of the pre-rounding value (see the class docstring): with rounding the
        # final step is f(c) = (c + 1) >> 1, and clamp(f(x), lo, hi) = f(clamp(x, 2lo-1, 2hi))
        # (c_bits holds them all: 2*(2**a - 1) and -2**a - 1)
        c_bits = a_bits + 2
        hi_u, hi_s = (1 << a_bits) - 1, (1 << (a_bits - 1)) - 1
        lo_u, lo_s = 0, -(1 << (a_bits - 1))
        out_bytes = []
        for i in range(g):
            def reg(shape, name):
                return Signal(shape, name=f"l{i}_{name}", reset_less=True)

            # stage 1: t = acc + bias; multiplier inputs (DSP A/B registers)
            t = reg(signed(self.t_bits), "t")
            mul = reg(unsigned(cfg.mult_bits), "m")
            res = reg(signed(RES_BITS), "res")
            rmul = reg(unsigned(cfg.mult_bits), "mr")
            sh1 = reg(sh_bits, "s1_sh")
            m.d.sync += [
                t.eq(p_in.acc[i] + p_in.bias[i]),
                mul.eq(p_in.mult[i]),
                res.eq(Mux(p_in.res_en, p_in.res[i], 0)),
                rmul.eq(p_in.res_mult[i]),
                sh1.eq(p_in.shift[i]),
            ]

            # stage 2: the products (DSP M registers); the shift amount max(S-1, 0) and
            # whether to round
            q2 = reg(signed(RES_BITS + cfg.mult_bits), "q2")
            sa2 = reg(sh_bits, "s2_sa")
            rnd2 = reg(1, "s2_rnd")
            m.d.sync += [
                q2.eq(res * rmul),
                sa2.eq(Mux(sh1.any(), (sh1 - 1)[:sh_bits], 0)),
                rnd2.eq(sh1.any()),
            ]

            # stage 3: v = t*M + res*Mr (DSP post-adders and P register)
            v = reg(signed(self.sum_bits), "v")
            sa3 = reg(sh_bits, "s3_sa")
            rnd3 = reg(1, "s3_rnd")
            m.d.sync += [sa3.eq(sa2), rnd3.eq(rnd2)]
            if split:
                # t*M = (t_hi*M << 17) + t_lo*M, written the way cascaded DSP48E1s compute it:
                # lo = t_lo*M + res*Mr (a post-adder), then t_hi*M + (lo >> 17) (a post-adder
                # fed by PCIN >> 17) into the last DSP's P register; v's low 17 bits are lo's.
                # yosys chains the three DSPs of a lane t_lo*M -> +res*Mr -> +t_hi*M
                t_lo = t[:DSP_CASCADE_SHIFT]                    # unsigned
                t_hi = t[DSP_CASCADE_SHIFT:].as_signed()
                p_lo = reg(unsigned(DSP_CASCADE_SHIFT + cfg.mult_bits), "p2_lo")
                p_hi = reg(signed(self.t_bits - DSP_CASCADE_SHIFT + cfg.mult_bits), "p2_hi")
                lo_sum = Signal(signed(DSP_CASCADE_SHIFT + cfg.mult_bits + 2), name=f"l{i}_plo")
                m.d.comb += lo_sum.eq(p_lo + q2)
                m.d.sync += [
                    p_lo.eq(t_lo * mul),
                    p_hi.eq(t_hi * mul),
                    v.eq(Cat(lo_sum[:DSP_CASCADE_SHIFT],
                             p_hi + (lo_sum >> DSP_CASCADE_SHIFT))),
                ]
            else:
                p2 = reg(signed(self.t_bits + cfg.mult_bits), "p2")
                m.d.sync += [p2.eq(t * mul), v.eq(p2 + q2)]

            # stage 4: arithmetic barrel shift z = floor(v / 2**(S-1)), of which only the low
            # c_bits are kept, with z's sign and a flag "z does not fit signed(c_bits)"
            z_lo = reg(signed(c_bits), "z_lo")
            z_big = reg(1, "z_big")
            z_neg = reg(1, "z_neg")
            rnd = reg(1, "s4_rnd")
            low, big = _shift_right_low(m, v, sa3, c_bits, f"l{i}_sh")
            m.d.sync += [
                z_lo.eq(low),
                z_big.eq(big),
                z_neg.eq(v[-1]),
                rnd.eq(rnd3),
            ]

            # stage 5: clamp, round ((c + 1) >> 1), low byte of the two's complement value
            y = reg(signed(BYTE_BITS), "y")     # sign-extends a signed act_bits < 8 result
            c_hi = Mux(relu_clamp, Mux(rnd, 2 * hi_u, hi_u), Mux(rnd, 2 * hi_s, hi_s))
            c_lo = Mux(relu_clamp, Mux(rnd, 2 * lo_u - 1, lo_u), Mux(rnd, 2 * lo_s - 1, lo_s))
            c = Signal(signed(c_bits), name=f"l{i}_c")
            m.d.comb += c.eq(Mux(z_big, Mux(z_neg, c_lo, c_hi),
                                 Mux(z_lo > c_hi, c_hi, Mux(z_lo < c_lo, c_lo, z_lo))))
            m.d.sync += y.eq((c + rnd) >> rnd)
            out_bytes.append(y)

        # -- output FIFO with credit-based input flow control -------------------------------
        out_layout = PostOut(cfg)
        fifo = m.submodules.fifo = SyncFIFO(width=Shape.cast(out_layout).width,
                                           depth=self.fifo_depth)
        w_view = data.View(out_layout, fifo.w_data)
        m.d.comb += [
            fifo.w_en.eq(valid[n_stages - 1]),
            w_view.last.eq(last[n_stages - 1]),
            w_view.tag.eq(tag[n_stages - 1]),
        ]
        # -- lookup table: after the clamp, between the last register and the FIFO -----------
        m.submodules.lut = lut_stage = LutStage(cfg)
        wiring.connect(m, wiring.flipped(self.lut_wr), lut_stage.wr)
        m.d.comb += [lut_stage.relu.eq(relu[n_stages - 1]), lut_stage.en.eq(lut[n_stages - 1])]
        for i, y in enumerate(out_bytes):
            m.d.comb += [lut_stage.inp[i].eq(y), w_view.data[i].eq(lut_stage.out[i])]

        m.d.comb += [
            self.out.valid.eq(fifo.r_rdy),
            self.out.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.out.ready),
        ]

        credits = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)
        out_xfer = Signal()
        m.d.comb += [
            out_xfer.eq(self.out.valid & self.out.ready),
            self.inp.ready.eq(credits != 0),
        ]
        with m.If(accept & ~out_xfer):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(out_xfer & ~accept):
            m.d.sync += credits.eq(credits + 1)

        return m
