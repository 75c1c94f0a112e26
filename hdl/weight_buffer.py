"""Weight packages and the ping-pong weight-buffer controller (docs/architecture.md sections 4, 5).

Package format
--------------
A weight package is the unit the DMA brings into one weight bank. On the AXI stream it is, in
``axi_data_width``-bit little-endian beats:

* ``header_beats(config)`` beats: :class:`PackageHeader` (64 bits), zero-padded to whole beats;
* ``n_words * wbuf_word_beats`` beats: ``n_words`` bank words, beat 0 of a word = its low bits;
* ``trailer_beats(config)`` beats: :class:`PackageTrailer` (64 bits), zero-padded.

With the 64-bit AXI bus of every preset the header and the trailer are one beat each. The trailer
holds ``zlib.crc32`` of the header and payload bytes (all their beats, padding included) and its
bitwise complement. ``docs/weight_packages.md`` is the full specification; the host side is
:mod:`ilmpq.firmware.wpkg`, which encodes with these very layouts.

Checks, in this order (the first failing one is latched on ``error`` and the controller halts):

1. header: ``magic == WPKG_MAGIC``, ``version == WPKG_VERSION``, ``reserved == 0`` and zero
   header padding, else ``ErrorCode.WPKG_MAGIC``;
2. header: ``seq`` equals the expected sequence number (``start_seq`` after ``start``, 0 after
   reset or ``clear``, then the previous accepted header's ``seq + 1`` modulo 2**16), else ``ErrorCode.WPKG_SEQ`` (a dropped,
   duplicated or reordered package);
3. header: ``1 <= n_words <= wbuf_depth`` and ``n_words`` a multiple of ``words_per_set``, else
   ``ErrorCode.WPKG_LENGTH``;
4. trailer: ``crc`` and ``crc_inv`` match the CRC computed on the fly, and zero trailer padding,
   else ``ErrorCode.WPKG_CRC`` (corruption, or a truncated package followed by the next one).

Authenticated packages (``mac_en``; docs/reliability.md): the trailer holds instead a 64-bit
SipHash-2-4 tag (:mod:`ilmpq.hdl.siphash`, key ``mac_key``) of the message ``mac_nonce`` (8
bytes, the model's) followed by the header and payload beats, so the tag binds the package to
its model and, through the header's sequence number (check 2), to its place in the model; a
wrong tag latches ``ErrorCode.WPKG_MAC`` at the same point as a CRC error (check 4), so the
bank is never drained. The core absorbs a 64-bit word every 2 cycles, so ``fill`` takes header
and payload beats at most every other cycle: a package of ``B`` beats takes ``2 B + 7`` cycles
(nonce 2, header and payload ``2 (B - 1)``, padding block and finalization 6, trailer 1).
Only 64-bit AXI buses carry tags, and only builds with ``HWConfig.weight_mac`` have the core:
otherwise every package is rejected with ``WPKG_MAC`` when ``mac_en`` is set (fail closed).
"""

# No ``from __future__ import annotations`` in this module: data.Struct reads its annotations.
from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.crc import Processor, catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import ConfigError, HWConfig
from .siphash import KEY_BITS, TAG_BITS, WORD_BITS, SipHash24
from .status import ErrorCode

__all__ = [
    "WPKG_MAGIC", "WPKG_VERSION", "PackageHeader", "PackageTrailer", "BankState",
    "header_beats", "trailer_beats", "package_beats", "check_wbuf_config", "WeightBuffer",
]

#: Header magic: the bytes ``b"WP"`` (little-endian 0x5057).
WPKG_MAGIC = 0x5057
#: Package format version this hardware accepts.
WPKG_VERSION = 1


class PackageHeader(data.Struct):
    """First 64 bits of a weight package (field order = bit order, from bit 0)."""

    magic: unsigned(16)     #: :data:`WPKG_MAGIC`
    version: unsigned(8)    #: :data:`WPKG_VERSION`
    reserved: unsigned(8)   #: must be 0
    seq: unsigned(16)       #: sequence number: ``start_seq`` for the first package, then +1
    n_words: unsigned(16)   #: payload bank words: ``1..wbuf_depth``, whole weight sets


class PackageTrailer(data.Struct):
    """Last 64 bits of a weight package."""

    crc: unsigned(32)       #: ``zlib.crc32`` of the header and payload beats
    crc_inv: unsigned(32)   #: ``crc ^ 0xFFFFFFFF``


class BankState(enum.Enum, shape=unsigned(3)):
    """Ownership of one weight bank. ``FREE -> FILLING -> VERIFYING -> READY -> DRAINING -> FREE``.

    Only the filler moves a bank out of ``FREE``, ``FILLING`` and ``VERIFYING``; only the drainer
    moves it out of ``READY`` and ``DRAINING``. ``REJECTED`` holds a bank whose package failed a
    check: it is never drained, and only ``clear`` frees it.
    """

    FREE = 0        #: owned by nobody; the filler may claim it with the next header
    FILLING = 1     #: the filler is receiving the header and payload into it
    VERIFYING = 2   #: payload complete, waiting for the trailer's CRC check
    READY = 3       #: verified; waiting for the drainer
    DRAINING = 4    #: the drainer is streaming its words on ``wout``
    REJECTED = 5    #: the package failed a check (see ``error``); held until ``clear``


_HEADER_BITS = data.Layout.cast(PackageHeader).size
_TRAILER_BITS = data.Layout.cast(PackageTrailer).size
_N_WORDS_MAX = (1 << data.Layout.cast(PackageHeader)["n_words"].width) - 1


def header_beats(config: HWConfig) -> int:
    """AXI beats of the package header (1 for 64- and 128-bit buses, 2 for 32-bit)."""
    return -(-_HEADER_BITS // config.axi_data_width)


def trailer_beats(config: HWConfig) -> int:
    """AXI beats of the package trailer."""
    return -(-_TRAILER_BITS // config.axi_data_width)


def package_beats(config: HWConfig, n_words: int) -> int:
    """AXI beats of a whole package of ``n_words`` bank words (what the DMA must fetch)."""
    return header_beats(config) + n_words * config.wbuf_word_beats + trailer_beats(config)


def check_wbuf_config(config: HWConfig) -> None:
    """Raise :class:`~ilmpq.hdl.config.ConfigError` if the package format cannot serve ``config``.

    The header's ``n_words`` field must be able to describe a full bank.
    """
    if config.wbuf_depth > _N_WORDS_MAX:
        raise ConfigError(
            f"HWConfig.wbuf_depth = {config.wbuf_depth} is too large for weight packages: the "
            f"header's n_words field allows at most {_N_WORDS_MAX} words, so wbuf_depth must be "
            f"a power of two <= {1 << (_N_WORDS_MAX.bit_length() - 1)}")


class WeightBuffer(wiring.Component):
    """Ping-pong weight-bank controller with package verification.

    Two banks of ``wbuf_depth`` x ``wbuf_word_bits``, held in one simple dual-port block RAM
    (``lib.memory.Memory`` of ``2 * wbuf_depth`` words, the bank number is the top address bit;
    one write port for the filler, one synchronous read port for the drainer). The filler writes
    package ``n + 1`` into one bank while the drainer streams package ``n`` from the other, so in
    steady state neither side waits for the other. Banks are used strictly alternately (bank 0,
    1, 0, ...), so words leave in package order. A bank word is assembled from
    ``wbuf_word_beats`` beats (beat 0 = low bits) in a shift register and written whole with
    its last beat: full-width RAM writes pack into the fewest BRAMs (z020: 16 RAMB36E1 for both
    banks, against 18 with per-beat write enables) and need no bank multiplexer on ``wout``.

    Parameters
    ----------
    config : HWConfig

    Ports
    -----
    fill : In(stream.Signature(unsigned(axi_data_width)))
        Package beats from the DMA. ``ready`` is a function of internal state only (never of
        ``valid``). A header is accepted only when the next bank in turn is ``FREE``; header,
        payload and trailer beats are then accepted one per cycle. After an error ``ready`` stays
        high and beats are discarded, so in-flight DMA bursts complete and the bus is not held.
    wout : Out(stream.Signature(unsigned(wbuf_word_bits)))
        Bank words of verified packages, in package order, each exactly once, to
        ``PEArray.wload``. ``valid`` and ``payload`` come from registers (the bank's synchronous
        read port); one word per cycle while ``ready`` is high, also across package boundaries.
        A bank returns to ``FREE`` in the cycle after its last word is transferred.
    start : In(1)
        Pulse before a stream of packages: the expected sequence number becomes ``start_seq``.
        A header accepted in the same cycle is still checked against the old number, and
        ``start`` overrides its increment: pulse it between packages.
    start_seq : In(16)
        Sequence number the first package after ``start`` must carry (0 if left unconnected).
    mac_en : In(1)
        Packages carry a SipHash-2-4 tag instead of the CRC (see the module docstring). Change
        it only while the controller is idle (between runs).
    mac_key : In(128); mac_nonce : In(64)
        The MAC key and the model's nonce, held stable while ``mac_en``.
    clear : In(1)
        Synchronous soft reset of the whole controller: banks ``FREE``, ``error`` ``NONE``,
        expected sequence 0, filler waiting for a header, ``wout`` empty. Bank contents are not
        erased (they are never read before being rewritten and verified).
    error : Out(ErrorCode)
        ``NONE``, or the first ``WPKG_*`` code. Latched until ``clear``. From the error on, the
        failing package's bank is ``REJECTED`` and never drained, and no further package is
        accepted; a bank verified before the error still drains.
    bank_state : Out(ArrayLayout(BankState, 2))
        Ownership of each bank.
    expected_seq : Out(16)
        Sequence number the next header must carry.
    pkg_accepted : Out(1)
        One-cycle strobe: a package passed all checks (its bank becomes ``READY`` next cycle).
    wout_starved : Out(1)
        ``wout.ready & ~wout.valid``: the PE array would take a word but none is ready (for the
        ``STALL_WEIGHT`` perf counter when the array is actually waiting).
    fill_blocked : Out(1)
        ``fill.valid & ~fill.ready``: the DMA has a beat but no bank is free.
    idle : Out(1)
        Both banks ``FREE``, no package in progress, ``wout`` empty, no error.

    Timing, in clock edges (64-bit bus, so one header and one trailer beat; ``n`` words of
    ``WB = wbuf_word_beats`` beats, every beat offered as soon as it is taken): the header
    transfers at edge ``t0``, the payload at ``t0+1 .. t0+n*WB``, the trailer at ``t0+n*WB+1``
    (the bank is ``READY`` from then on); the first word is read at edge ``t0+n*WB+2`` and can
    transfer on ``wout`` from edge ``t0+n*WB+3``, the rest one per edge. The next header (into
    the other bank, if ``FREE``) can transfer at edge ``t0+n*WB+2``: the DMA never waits while
    one bank is free, and the drainer switches banks without a bubble.
    """

    def __init__(self, config: HWConfig):
        if not isinstance(config, HWConfig):
            self._MustUse__silence = True
            raise TypeError(f"WeightBuffer needs an HWConfig, not {type(config).__name__}")
        check_wbuf_config(config)
        self.config = config
        super().__init__({
            "fill": In(stream.Signature(unsigned(config.axi_data_width))),
            "wout": Out(stream.Signature(unsigned(config.wbuf_word_bits))),
            "start": In(1),
            "start_seq": In(16),
            "mac_en": In(1),
            "mac_key": In(KEY_BITS),
            "mac_nonce": In(WORD_BITS),
            "clear": In(1),
            "error": Out(ErrorCode),
            "bank_state": Out(data.ArrayLayout(BankState, 2)),
            "expected_seq": Out(16),
            "pkg_accepted": Out(1),
            "wout_starved": Out(1),
            "fill_blocked": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        W = cfg.axi_data_width
        WB = cfg.wbuf_word_beats
        depth = cfg.wbuf_depth
        wps = cfg.words_per_set
        addr_bits = (depth - 1).bit_length()
        hb, tb = header_beats(cfg), trailer_beats(cfg)

        # -- storage: both banks in one block RAM, the bank number is the top address bit ----
        m.submodules.banks = mem = Memory(shape=unsigned(cfg.wbuf_word_bits), depth=2 * depth,
                                          init=[])
        wport = mem.write_port()
        rport = mem.read_port()

        state = [Signal(BankState, name=f"bank{b}_state") for b in range(2)]
        last_addr = [Signal(addr_bits, name=f"bank{b}_last_addr") for b in range(2)]
        for b in range(2):
            m.d.comb += self.bank_state[b].eq(state[b])

        error = Signal(ErrorCode)
        m.d.comb += self.error.eq(error)

        exp_seq = Signal(16)
        m.d.comb += self.expected_seq.eq(exp_seq)

        # -- filler -------------------------------------------------------------------------
        fbank = Signal(1)                                   # bank the filler fills next
        fstate = Mux(fbank, state[1], state[0])
        beat = self.fill.payload
        xfer_in = self.fill.valid & self.fill.ready

        # zlib's CRC-32 over the beats, little-endian (the word's bit 0 first)
        m.submodules.crc = crc = Processor(catalog.CRC32_ISO_HDLC(W))
        m.d.comb += crc.data.eq(beat)

        hcnt = Signal(range(hb)) if hb > 1 else Const(0, 1)
        hbuf = Signal((hb - 1) * W) if hb > 1 else Const(0, 0)
        tcnt = Signal(range(tb)) if tb > 1 else Const(0, 1)
        tbuf = Signal((tb - 1) * W) if tb > 1 else Const(0, 0)
        header_bits = Cat(hbuf, beat)
        trailer_bits = Cat(tbuf, beat)
        hdr = PackageHeader(header_bits[:_HEADER_BITS])
        trl = PackageTrailer(trailer_bits[:_TRAILER_BITS])
        hpad = header_bits[_HEADER_BITS:]
        tpad = trailer_bits[_TRAILER_BITS:]

        magic_ok = ((hdr.magic == WPKG_MAGIC) & (hdr.version == WPKG_VERSION)
                    & (hdr.reserved == 0))
        if len(hpad):
            magic_ok &= hpad == 0
        seq_ok = hdr.seq == exp_seq
        if wps & (wps - 1) == 0:
            whole_sets = hdr.n_words[:(wps - 1).bit_length()] == 0 if wps > 1 else Const(1, 1)
        else:
            # n_words > depth fails anyway, so the constant modulo needs only addr_bits + 1 bits
            whole_sets = (hdr.n_words[:addr_bits + 1] % wps) == 0
        len_ok = (hdr.n_words != 0) & (hdr.n_words <= depth) & whole_sets
        crc_ok = (trl.crc == crc.crc) & (trl.crc_inv == ~crc.crc)
        if len(tpad):
            crc_ok &= tpad == 0

        # -- MAC: the nonce, then header and payload beats, into SipHash-2-4 ------------------
        has_mac = self.config.has_weight_mac
        assert not has_mac or W == WORD_BITS
        mac_en = self.mac_en
        sip_pre = Signal()                                  # the nonce has been absorbed
        if has_mac:
            m.submodules.sip = sip = SipHash24()
            m.d.comb += sip.key.eq(self.mac_key)
            sip_ready = sip.data.ready
            tag_valid = sip.tag.valid
            tag_ok = trailer_bits[:TAG_BITS] == sip.tag.payload
        else:
            sip = None
            sip_ready = tag_valid = tag_ok = Const(0, 1)
        # header beats wait for the prefix; every absorbed beat waits for the core
        mac_hold = mac_en & ~sip_ready
        mac_pre_done = ~mac_en | sip_pre | ~Const(has_mac, 1)

        def sip_feed(word, last):
            if sip is not None:
                m.d.comb += [sip.data.valid.eq(1), sip.data.payload.data.eq(word),
                             sip.data.payload.nbytes.eq(WORD_BITS // 8),
                             sip.data.payload.last.eq(last)]

        waddr = Signal(addr_bits)                           # payload word being written
        wbeat = Signal(range(WB)) if WB > 1 else Const(0, 1)
        flast = Signal(addr_bits)                           # last word of the current package
        # beats 0 .. WB-2 of the word being assembled (shifted in from the top: beat 0 lowest);
        # the word is written whole with its last beat, so every bank word is one RAM write
        asm = Signal((WB - 1) * W) if WB > 1 else Const(0, 0)

        m.d.comb += [
            wport.addr.eq(Cat(waddr, fbank)),
            wport.data.eq(Cat(asm, beat)),
        ]

        def set_state(bank, value):
            for b in range(2):
                with m.If(bank == b):
                    m.d.sync += state[b].eq(value)

        def latch(code):
            m.d.sync += error.eq(code)
            set_state(fbank, BankState.REJECTED)
            m.next = "HALTED"

        with m.FSM(name="filler"):
            with m.State("HEADER"):
                # with the MAC, the nonce goes into the core first
                if sip is not None:
                    with m.If(mac_en & ~sip_pre):
                        sip_feed(self.mac_nonce, 0)
                        with m.If(sip_ready):
                            m.d.sync += sip_pre.eq(1)
                # a header beat may enter only when the bank in turn is ours to fill
                m.d.comb += self.fill.ready.eq(((fstate == BankState.FREE)
                                                | (fstate == BankState.FILLING))
                                               & mac_pre_done & ~(mac_en & sip_pre & ~sip_ready))
                with m.If(xfer_in & mac_en & sip_pre):
                    sip_feed(beat, 0)
                with m.If(xfer_in):
                    m.d.comb += crc.valid.eq(1)
                    with m.If(hcnt == 0):
                        m.d.comb += crc.start.eq(1)
                        set_state(fbank, BankState.FILLING)
                    with m.If(hcnt != hb - 1):
                        if hb > 1:
                            m.d.sync += [hcnt.eq(hcnt + 1), hbuf.eq(Cat(hbuf[W:], beat))]
                    with m.Elif(mac_en & ~Const(has_mac, 1)):
                        latch(ErrorCode.WPKG_MAC)       # no MAC core (bus width, build): fail closed
                    with m.Elif(~magic_ok):
                        latch(ErrorCode.WPKG_MAGIC)
                    with m.Elif(~seq_ok):
                        latch(ErrorCode.WPKG_SEQ)
                    with m.Elif(~len_ok):
                        latch(ErrorCode.WPKG_LENGTH)
                    with m.Else():
                        if hb > 1:
                            m.d.sync += hcnt.eq(0)
                        m.d.sync += [
                            exp_seq.eq(exp_seq + 1),
                            flast.eq(hdr.n_words - 1),
                            waddr.eq(0),
                        ]
                        for b in range(2):
                            with m.If(fbank == b):
                                m.d.sync += last_addr[b].eq(hdr.n_words - 1)
                        m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += self.fill.ready.eq(~mac_hold)
                with m.If(xfer_in & mac_en):
                    sip_feed(beat, (wbeat == WB - 1) & (waddr == flast))
                with m.If(xfer_in):
                    m.d.comb += crc.valid.eq(1)
                    word_done = wbeat == WB - 1
                    if WB > 1:
                        m.d.sync += [wbeat.eq(Mux(word_done, 0, wbeat + 1)),
                                     asm.eq(Cat(asm[W:], beat))]
                    with m.If(word_done):
                        m.d.comb += wport.en.eq(1)
                        m.d.sync += waddr.eq(waddr + 1)
                        with m.If(waddr == flast):
                            set_state(fbank, BankState.VERIFYING)
                            m.next = "TRAILER"

            with m.State("TRAILER"):
                # with the MAC, the trailer (one beat: the tag) waits for the core's tag
                m.d.comb += self.fill.ready.eq(~mac_en | tag_valid)
                if sip is not None:
                    m.d.comb += sip.tag.ready.eq(xfer_in & mac_en)
                with m.If(xfer_in):
                    with m.If(tcnt != tb - 1):
                        if tb > 1:
                            m.d.sync += [tcnt.eq(tcnt + 1), tbuf.eq(Cat(tbuf[W:], beat))]
                    with m.Elif(mac_en & ~tag_ok):
                        latch(ErrorCode.WPKG_MAC)
                    with m.Elif(~mac_en & ~crc_ok):
                        latch(ErrorCode.WPKG_CRC)
                    with m.Else():
                        m.d.sync += sip_pre.eq(0)
                        if tb > 1:
                            m.d.sync += tcnt.eq(0)
                        m.d.comb += self.pkg_accepted.eq(1)
                        set_state(fbank, BankState.READY)
                        m.d.sync += fbank.eq(~fbank)
                        m.next = "HEADER"

            with m.State("HALTED"):
                # discard whatever the DMA still delivers; only `clear` leaves this state
                m.d.comb += self.fill.ready.eq(1)

        # -- drainer ------------------------------------------------------------------------
        dbank = Signal(1)                                   # bank words are issued from
        raddr = Signal(addr_bits)
        obank = Signal(1)                                   # bank of the word on wout
        olast = Signal(1)                                   # it is that bank's last word
        dstate = Mux(dbank, state[1], state[0])
        dlast = Mux(dbank, last_addr[1], last_addr[0])
        advance = ~self.wout.valid | self.wout.ready
        issue = advance & ((dstate == BankState.READY) | (dstate == BankState.DRAINING))

        m.d.comb += [
            rport.addr.eq(Cat(raddr, dbank)),
            rport.en.eq(issue),
            self.wout.payload.eq(rport.data),
        ]

        with m.If(self.wout.valid & self.wout.ready & olast):
            set_state(obank, BankState.FREE)
        with m.If(issue):
            set_state(dbank, BankState.DRAINING)
            m.d.sync += [self.wout.valid.eq(1), obank.eq(dbank), olast.eq(raddr == dlast)]
            with m.If(raddr == dlast):
                m.d.sync += [raddr.eq(0), dbank.eq(~dbank)]
            with m.Else():
                m.d.sync += raddr.eq(raddr + 1)
        with m.Elif(advance):
            m.d.sync += self.wout.valid.eq(0)

        # -- run control and status ---------------------------------------------------------
        with m.If(self.start):
            m.d.sync += exp_seq.eq(self.start_seq)

        m.d.comb += [
            self.wout_starved.eq(self.wout.ready & ~self.wout.valid),
            self.fill_blocked.eq(self.fill.valid & ~self.fill.ready),
            self.idle.eq((state[0] == BankState.FREE) & (state[1] == BankState.FREE)
                         & ~self.wout.valid & (error == ErrorCode.NONE)),
        ]

        return ResetInserter(self.clear)(m)
