"""WeightBuffer: packages from firmware/wpkg.py through the ping-pong controller, and the CRC unit.

Good packages must come out word-exact under random stalls on both streams; every kind of bad
package (corrupt, truncated, duplicated, dropped, reordered, bad length) must latch its
ErrorCode and none of its words may ever reach ``wout``.
"""

import zlib

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.lib import data
from amaranth.sim import Simulator

from ilmpq.firmware import wpkg
from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, lint
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.hdl.config import ConfigError, get_config
from amaranth.lib.crc import Processor, catalog
from ilmpq.hdl.status import ErrorCode
from ilmpq.hdl.weight_buffer import (
    BankState, PackageHeader, WeightBuffer, check_wbuf_config, header_beats, package_beats,
)

TINY = get_config("tiny")                                       # 64-bit beats, 1 beat per word
WIDE = TINY.replace(name="tiny-wb2", wbuf_word_beats=2)         # 2 beats per bank word
NARROW = TINY.replace(name="tiny-axi32", axi_data_width=32)     # 2-beat header and trailer
BROAD = TINY.replace(name="tiny-axi128", axi_data_width=128)    # padded header and trailer

PERIOD = 1e-8


# -- stimulus ------------------------------------------------------------------------------------

def make_package(cfg, rng, seq, n_sets):
    """A random valid package: (bytes, list of its bank words)."""
    lo = rng.integers(-7, 8, size=(n_sets, cfg.lanes_lo, cfg.tn))
    hi = rng.integers(-127, 128, size=(n_sets, cfg.lanes_hi, cfg.tn))
    payload = wpkg.encode_sets(cfg, lo, hi)
    return wpkg.build_package(cfg, seq, payload), wpkg.bytes_to_words(cfg, payload)


def random_words_package(cfg, rng, seq, n_words):
    """A valid package whose payload words are fully random (padding bits included)."""
    payload = rng.integers(0, 256, size=n_words * wpkg.word_bytes(cfg), dtype=np.uint8).tobytes()
    return wpkg.build_package(cfg, seq, payload), wpkg.bytes_to_words(cfg, payload)


def raw_package(cfg, *, seq, n_words, payload, **header_fields):
    """A package with an arbitrary header and a correct CRC (to isolate the header checks)."""
    header = wpkg.encode_header(cfg, seq=seq, n_words=n_words, **header_fields)
    return header + payload + wpkg.encode_trailer(cfg, zlib.crc32(header + payload))


def flip_bit(blob, bit):
    b = bytearray(blob)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


# -- harness -------------------------------------------------------------------------------------

class Run:
    """What a simulation observed (cycle = index of the clock edge, from 0)."""

    def __init__(self):
        self.words = []          # (cycle, word) of every wout transfer
        self.fills = []          # cycle of every fill transfer
        self.error = None
        self.error_cycle = None
        self.bank_state = None
        self.starved = 0


def simulate(cfg, script, rng, *, p_valid=1.0, p_ready=1.0, ready_fn=None, max_cycles=20000,
             mac=None):
    """Run ``script`` on a WeightBuffer.

    ``script`` items: ``("beats", bytes)`` (streamed beat by beat with random valid gaps),
    ``("await_error",)``, ``("clear",)``, ``("start", start_seq)``. After the script the bench waits until
    the controller is quiescent, plus a margin in which nothing may come out. ``mac`` (a
    ``wpkg.MacKey``): ``mac_en`` set and the key and nonce applied from the start.
    """
    dut = WeightBuffer(cfg)
    run = Run()
    state = {"cycle": 0, "done": False}

    async def producer(ctx):
        if mac is not None:
            ctx.set(dut.mac_en, 1)
            ctx.set(dut.mac_key, int.from_bytes(mac.key, "little"))
            ctx.set(dut.mac_nonce, mac.nonce)
        for item in script:
            if item[0] == "beats":
                for beat in wpkg.bytes_to_beats(cfg, item[1]):
                    while rng.random() >= p_valid:
                        await ctx.tick()
                    ctx.set(dut.fill.valid, 1)
                    ctx.set(dut.fill.payload, beat)
                    await ctx.tick().until(dut.fill.ready)
                    ctx.set(dut.fill.valid, 0)
            elif item[0] == "await_error":
                await ctx.tick().until(dut.error != ErrorCode.NONE)
            elif item[0] in ("clear", "start"):
                sig = dut.clear if item[0] == "clear" else dut.start
                if item[0] == "start":
                    ctx.set(dut.start_seq, item[1])
                ctx.set(sig, 1)
                await ctx.tick()
                ctx.set(sig, 0)
            else:
                raise AssertionError(item)
        # quiescent: nothing verified left to drain and the output register empty
        while True:
            banks = [ctx.get(dut.bank_state[b]) for b in range(2)]
            if (not ctx.get(dut.wout.valid)
                    and not any(s in (BankState.READY, BankState.DRAINING) for s in banks)
                    and all(s != BankState.VERIFYING for s in banks)):
                break
            await ctx.tick()
        # a bank can only become READY through a trailer, so a short margin suffices
        await ctx.tick().repeat(50)
        run.bank_state = [ctx.get(dut.bank_state[b]) for b in range(2)]
        state["done"] = True

    async def consumer(ctx):
        edge = 0                                  # ready is set for the coming edge `edge`
        while True:
            if ready_fn is not None:
                ctx.set(dut.wout.ready, ready_fn(edge))
            else:
                ctx.set(dut.wout.ready, rng.random() < p_ready)
            await ctx.tick()
            edge += 1

    async def monitor(ctx):
        held = None    # (payload) of a valid word not yet taken
        async for _, _, fv, fr, ov, orr, word, err, starved, clear in ctx.tick().sample(
                dut.fill.valid, dut.fill.ready, dut.wout.valid, dut.wout.ready,
                dut.wout.payload, dut.error, dut.wout_starved, dut.clear):
            cyc = state["cycle"]
            if clear:                 # soft reset: the output register is emptied
                held = None
                state["cycle"] = cyc + 1
                continue
            if fv and fr:
                run.fills.append(cyc)
            # stream rules on wout: valid holds until the transfer, payload stable meanwhile
            if held is not None:
                assert ov, f"wout.valid dropped without a transfer at cycle {cyc}"
                assert word == held, f"wout.payload changed while waiting at cycle {cyc}"
            if ov and orr:
                run.words.append((cyc, word))
                held = None
            elif ov:
                held = word
            run.starved += starved
            if err != ErrorCode.NONE and run.error is None:
                run.error, run.error_cycle = ErrorCode(err), cyc
            assert run.error is None or err in (run.error, ErrorCode.NONE), \
                f"error changed from {run.error} to {err}"
            state["cycle"] = cyc + 1

    async def watchdog(ctx):
        while not state["done"]:
            assert state["cycle"] < max_cycles, f"no progress within {max_cycles} cycles"
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(producer)
    sim.add_testbench(consumer, background=True)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(watchdog)
    sim.run()
    return run


def out_words(run):
    return np.array([w for _, w in run.words], dtype=object)


def assert_words(run, expected):
    np.testing.assert_array_equal(out_words(run), np.array(expected, dtype=object))


# -- the CRC convention --------------------------------------------------------------------------

@pytest.mark.parametrize("width", [32, 64])
def test_crc_of_little_endian_beats_is_zlib(width, rng):
    """The weight buffer's CRC, amaranth.lib.crc's CRC32_ISO_HDLC at the bus width, is
    ``zlib.crc32`` of the beats' little-endian bytes (what firmware/wpkg.py writes in the
    trailer), also with ``start`` and ``valid`` in one cycle and idle cycles between beats;
    ``~crc`` is the trailer's ``crc_inv``."""
    dut = Processor(catalog.CRC32_ISO_HDLC(width))
    nbytes = width // 8
    msgs = [rng.integers(0, 256, size=k * nbytes, dtype=np.uint8).tobytes() for k in (5, 1, 9)]
    msgs.append(b"\xff" * nbytes * 3)
    msgs.append(b"\x00" * nbytes * 3)

    async def tb(ctx):
        assert ctx.get(dut.crc) == zlib.crc32(b"")
        for msg in msgs:
            for i in range(0, len(msg), nbytes):
                # idle cycles in between must not change the CRC
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.data, int.from_bytes(msg[i:i + nbytes], "little"))
                ctx.set(dut.valid, 1)
                ctx.set(dut.start, i == 0)           # first word: restart in the same cycle
                await ctx.tick()
                ctx.set(dut.valid, 0)
                ctx.set(dut.start, 0)
                assert ctx.get(dut.crc) == zlib.crc32(msg[:i + nbytes])
                assert ctx.get(~dut.crc) == zlib.crc32(msg[:i + nbytes]) ^ 0xFFFFFFFF
        ctx.set(dut.start, 1)                         # start alone: back to the empty string
        await ctx.tick()
        assert ctx.get(dut.crc) == 0

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(tb)
    sim.run()


# -- good packages -------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_packages_word_exact_under_stalls(cfg, rng):
    wps = cfg.words_per_set
    blobs, expected = [], []
    sizes = [1, cfg.wbuf_depth // wps, 3, 2, 5]       # single set and a completely full bank
    for seq, n_sets in enumerate(sizes):
        blob, words = make_package(cfg, rng, seq, n_sets)
        blobs.append(blob)
        expected += words
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, p_valid=0.6, p_ready=0.5)
    assert run.error is None
    assert_words(run, expected)
    assert run.bank_state == [BankState.FREE, BankState.FREE]


def test_payload_bits_are_opaque(rng):
    """Any payload bits (set padding included) pass through unchanged."""
    cfg = WIDE
    blobs, expected = [], []
    for seq in range(3):
        blob, words = random_words_package(cfg, rng, seq, 2 * cfg.words_per_set)
        blobs.append(blob)
        expected += words
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, p_valid=0.8, p_ready=0.8)
    assert run.error is None
    assert_words(run, expected)


def test_z020_geometry(rng):
    """The z020 preset itself: 9-beat (576-bit) words, 8 words per set, 512-word banks."""
    cfg = get_config("z020")
    blobs, expected = [], []
    for seq, n_sets in enumerate([1, 2]):
        blob, words = make_package(cfg, rng, seq, n_sets)
        blobs.append(blob)
        expected += words
    bad = flip_bit(make_package(cfg, rng, 2, 1)[0], 8 * 100)
    run = simulate(cfg, [("beats", b"".join(blobs) + bad)], rng, p_valid=0.8, p_ready=0.5)
    assert run.error == ErrorCode.WPKG_CRC
    assert_words(run, expected)


@pytest.mark.parametrize("cfg", [NARROW, BROAD], ids=lambda c: c.name)
def test_other_bus_widths(cfg, rng):
    assert header_beats(cfg) == (2 if cfg.axi_data_width == 32 else 1)
    blobs, expected = [], []
    for seq, n_sets in enumerate([2, 1, 4]):
        blob, words = make_package(cfg, rng, seq, n_sets)
        blobs.append(blob)
        expected += words
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, p_valid=0.7, p_ready=0.6)
    assert run.error is None
    assert_words(run, expected)


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_back_to_back_packages_overlap_fill_and_drain(cfg, rng):
    """Fill-limited: the DMA never waits, and package k+1 fills while package k drains.

    Exact schedule (edges counted from 0): package k's B = n*wbuf_word_beats + 2 beats take
    edges k*B .. k*B + B - 1; its word i leaves at edge k*B + n*wbuf_word_beats + 3 + i.
    """
    n_sets, K = 4, 4
    n = n_sets * cfg.words_per_set
    B = package_beats(cfg, n)
    blobs, expected = [], []
    for seq in range(K):
        blob, words = make_package(cfg, rng, seq, n_sets)
        blobs.append(blob)
        expected += words
    run = simulate(cfg, [("beats", b"".join(blobs))], rng)
    assert run.error is None
    assert_words(run, expected)
    assert run.fills == list(range(K * B))
    want = [k * B + n * cfg.wbuf_word_beats + 3 + i for k in range(K) for i in range(n)]
    assert [c for c, _ in run.words] == want
    drain0 = {c for c, _ in run.words[:n]}
    assert drain0 & set(run.fills[B:2 * B]), "package 1 did not fill while package 0 drained"


def test_drain_limited_stream_never_starves(rng):
    """Drain-limited (the PE array takes a word every 3rd cycle): once the first word is out,
    every ready cycle transfers a word, across all bank switches, and the DMA waits instead."""
    cfg = TINY
    n_sets, K = 6, 5
    blobs, expected = [], []
    for seq in range(K):
        blob, words = make_package(cfg, rng, seq, n_sets)
        blobs.append(blob)
        expected += words
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, ready_fn=lambda c: c % 3 == 0)
    assert run.error is None
    assert_words(run, expected)
    cycles = [c for c, _ in run.words]
    assert cycles == list(range(cycles[0], cycles[0] + 3 * len(cycles), 3))
    # the first word: header 0, payload 1..n, trailer n+1, READY, read, then the next ready edge
    n = n_sets * cfg.words_per_set
    assert cycles[0] == -(-(n + 3) // 3) * 3
    assert len(run.fills) == K * package_beats(cfg, n)
    assert run.fills[-1] > K * package_beats(cfg, n), "the filler should have been throttled"


# -- bad packages --------------------------------------------------------------------------------

def three_packages(cfg, rng, n_sets=(2, 3, 2)):
    pk = [make_package(cfg, rng, seq, n) for seq, n in enumerate(n_sets)]
    return [b for b, _ in pk], [w for _, w in pk]


def check_rejected(cfg, rng, stream, expected_words, code, **kw):
    run = simulate(cfg, [("beats", stream)], rng, **kw)
    assert run.error == code, f"latched {run.error}, expected {code}"
    assert_words(run, expected_words)
    assert BankState.REJECTED in run.bank_state
    # the software model agrees on the code and on what is accepted
    scan = wpkg.scan_packages(cfg, stream)
    assert scan.error is not None and scan.error.code == code
    assert sum((p.words for p in scan.packages), []) == list(expected_words)
    return run


HEADER_FIELD_CODES = {"magic": ErrorCode.WPKG_MAGIC, "version": ErrorCode.WPKG_MAGIC,
                      "reserved": ErrorCode.WPKG_MAGIC, "seq": ErrorCode.WPKG_SEQ}


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
@pytest.mark.parametrize("field", ["magic", "version", "reserved", "seq", "n_words"])
def test_header_bit_flip(cfg, field, rng):
    blobs, words = three_packages(cfg, rng)
    hdr_bytes = header_beats(cfg) * cfg.beat_bytes
    fld = data.Layout.cast(PackageHeader)[field]
    bit = fld.offset + int(rng.integers(fld.width))
    bad = flip_bit(blobs[1], bit)
    stream = blobs[0] + bad + blobs[2]
    if field == "n_words":
        fields, _ = wpkg.decode_header(cfg, bad[:hdr_bytes])
        n = fields["n_words"]
        bad_len = not (1 <= n <= cfg.wbuf_depth) or n % cfg.words_per_set
        code = ErrorCode.WPKG_LENGTH if bad_len else ErrorCode.WPKG_CRC
    else:
        code = HEADER_FIELD_CODES[field]
    check_rejected(cfg, rng, stream, words[0], code, p_valid=0.7, p_ready=0.7)


def test_header_n_words_flip_to_valid_length_is_caught_by_crc(rng):
    """n_words 4 -> 6 (still whole sets): the trailer is looked for in the wrong place."""
    cfg = TINY
    blobs, words = three_packages(cfg, rng, n_sets=(2, 2, 2))
    off = data.Layout.cast(PackageHeader)["n_words"].offset
    bad = flip_bit(blobs[1], off + 1)                 # 4 ^ 2 = 6 words
    assert wpkg.decode_header(cfg, bad[:8])[0]["n_words"] == 6
    check_rejected(cfg, rng, blobs[0] + bad + blobs[2], words[0], ErrorCode.WPKG_CRC)


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_payload_bit_flip(cfg, rng):
    blobs, words = three_packages(cfg, rng)
    hb = header_beats(cfg) * cfg.beat_bytes
    nbits = (len(blobs[1]) - hb - cfg.beat_bytes) * 8
    for bit in (hb * 8, hb * 8 + int(rng.integers(nbits)), hb * 8 + nbits - 1):
        stream = blobs[0] + flip_bit(blobs[1], bit) + blobs[2]
        check_rejected(cfg, rng, stream, words[0], ErrorCode.WPKG_CRC, p_valid=0.8, p_ready=0.6)


@pytest.mark.parametrize("which", ["crc", "crc_inv"])
def test_trailer_bit_flip(which, rng):
    cfg = TINY
    blobs, words = three_packages(cfg, rng)
    tstart = (len(blobs[1]) - cfg.beat_bytes) * 8
    bit = tstart + (0 if which == "crc" else 32) + int(rng.integers(32))
    stream = blobs[0] + flip_bit(blobs[1], bit) + blobs[2]
    check_rejected(cfg, rng, stream, words[0], ErrorCode.WPKG_CRC, p_valid=0.8, p_ready=0.8)


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_truncated_package_then_next_header_early(cfg, rng):
    blobs, words = three_packages(cfg, rng, n_sets=(2, 3, 3))
    # drop the trailer and the last payload word: package 2's header arrives early
    cut = cfg.beat_bytes + wpkg.word_bytes(cfg)
    stream = blobs[0] + blobs[1][:-cut] + blobs[2]
    check_rejected(cfg, rng, stream, words[0], ErrorCode.WPKG_CRC, p_valid=0.7, p_ready=0.7)


@pytest.mark.parametrize("case", ["duplicated", "dropped", "reordered"])
def test_sequence_attacks(case, rng):
    cfg = WIDE
    blobs, words = three_packages(cfg, rng)
    stream, ok = {
        "duplicated": (blobs[0] + blobs[1] + blobs[1] + blobs[2], words[0] + words[1]),
        "dropped": (blobs[0] + blobs[2], words[0]),
        "reordered": (blobs[0] + blobs[2] + blobs[1], words[0]),
    }[case]
    check_rejected(cfg, rng, stream, ok, ErrorCode.WPKG_SEQ, p_valid=0.7, p_ready=0.4)


def test_duplicated_first_package(rng):
    cfg = TINY
    blobs, words = three_packages(cfg, rng)
    check_rejected(cfg, rng, blobs[0] + blobs[0], words[0], ErrorCode.WPKG_SEQ)


@pytest.mark.parametrize("cfg, n_words", [
    (TINY, "zero"), (TINY, "too_big"), (TINY, "partial_set"),   # tiny: 2 words per set
    (WIDE, "zero"), (WIDE, "too_big"),                          # tiny-wb2: 1 word per set
], ids=lambda x: getattr(x, "name", x))
def test_bad_length(cfg, n_words, rng):
    blobs, words = three_packages(cfg, rng)
    n = {"zero": 0, "too_big": cfg.wbuf_depth + cfg.words_per_set,
         "partial_set": cfg.words_per_set + 1}[n_words]
    payload = rng.integers(0, 256, size=n * wpkg.word_bytes(cfg), dtype=np.uint8).tobytes()
    bad = raw_package(cfg, seq=1, n_words=n, payload=payload)
    check_rejected(cfg, rng, blobs[0] + bad + blobs[2], words[0], ErrorCode.WPKG_LENGTH)


def test_partial_set_when_words_per_set_is_not_a_power_of_two(rng):
    cfg = TINY.replace(name="tiny-wps3", lanes_lo=5, lanes_hi=2)   # 4*(20+16) = 144 b: 3 words
    assert cfg.words_per_set == 3
    good, words = make_package(cfg, rng, 0, 2)
    payload = rng.integers(0, 256, size=4 * 8, dtype=np.uint8).tobytes()
    bad = raw_package(cfg, seq=1, n_words=4, payload=payload)
    check_rejected(cfg, rng, good + bad, words, ErrorCode.WPKG_LENGTH)


@pytest.mark.parametrize("where", ["header", "trailer"])
def test_nonzero_padding_on_a_wide_bus(where, rng):
    cfg = BROAD
    good, words = make_package(cfg, rng, 0, 1)
    bad, _ = make_package(cfg, rng, 1, 2)
    if where == "header":
        bad = flip_bit(bad, 64 + int(rng.integers(64)))
        code = ErrorCode.WPKG_MAGIC
    else:
        bad = flip_bit(bad, (len(bad) - 8) * 8 + int(rng.integers(64)))
        code = ErrorCode.WPKG_CRC
    check_rejected(cfg, rng, good + bad, words, code)


def test_halted_controller_discards_and_accepts_nothing(rng):
    """After an error, later (valid) packages are swallowed; only clear restarts."""
    cfg = TINY
    good0, w0 = make_package(cfg, rng, 0, 1)
    bad = flip_bit(make_package(cfg, rng, 1, 2)[0], 0)          # bad magic
    later = b"".join(make_package(cfg, rng, s, 2)[0] for s in (1, 2, 3))
    run = check_rejected(cfg, rng, good0 + bad + later, w0, ErrorCode.WPKG_MAGIC)
    assert len(run.fills) == len(good0 + bad + later) // cfg.beat_bytes  # nothing held back


# -- recovery and run control --------------------------------------------------------------------

def test_clear_then_good_package(rng):
    cfg = WIDE
    good0, w0 = make_package(cfg, rng, 0, 2)
    bad = flip_bit(make_package(cfg, rng, 1, 3)[0], 8 * 20)      # payload flip
    again, wa = make_package(cfg, rng, 0, 3)                      # clear restarts seq at 0
    nxt, wn = make_package(cfg, rng, 1, 1)
    run = simulate(cfg, [("beats", good0 + bad), ("await_error",), ("clear",),
                         ("beats", again + nxt)], rng, p_valid=0.8, p_ready=0.7)
    assert run.error == ErrorCode.WPKG_CRC      # latched before the clear
    assert_words(run, w0 + wa + wn)
    assert run.bank_state == [BankState.FREE, BankState.FREE]


def test_clear_after_error_mid_drain_restarts_cleanly(rng):
    """A clear while the good bank is still draining drops its remaining words (soft reset)."""
    cfg = TINY
    good0, w0 = make_package(cfg, rng, 0, 8)
    bad = make_package(cfg, rng, 5, 1)[0]                            # wrong seq
    good1, w1 = make_package(cfg, rng, 0, 2)
    run = simulate(cfg, [("beats", good0 + bad), ("await_error",), ("clear",),
                         ("beats", good1)], rng, p_ready=0.1)
    words = [w for _, w in run.words]
    k = len(words) - len(w1)
    assert words[:k] == w0[:k] and words[k:] == w1
    assert k < len(w0), "the slow consumer should not have drained package 0 before the clear"


@pytest.mark.parametrize("start_seq", [0, 1234, 65535])
def test_start_loads_the_sequence(start_seq, rng):
    """`start` loads `start_seq`; the count then goes on (and wraps) from there."""
    cfg = TINY
    p = [make_package(cfg, rng, s, 1) for s in (0, 1, 2)]
    q = [make_package(cfg, rng, (start_seq + k) & 0xFFFF, 2) for k in range(2)]
    stale = make_package(cfg, rng, 3, 1)[0]           # would have been next before `start`
    run = simulate(cfg, [("beats", b"".join(b for b, _ in p)), ("start", start_seq),
                         ("beats", q[0][0] + q[1][0] + stale)], rng, p_valid=0.9, p_ready=0.9)
    assert_words(run, sum((w for _, w in p + q), []))
    assert run.error == ErrorCode.WPKG_SEQ            # the stale package after the new stream


def test_status_outputs(rng):
    """idle, bank_state, expected_seq, pkg_accepted and fill_blocked follow the contract."""
    cfg = TINY
    dut = WeightBuffer(cfg)
    blobs = [make_package(cfg, rng, s, 1)[0] for s in range(3)]
    beats = wpkg.bytes_to_beats(cfg, b"".join(blobs))
    seen = {"accepted": 0, "blocked": 0, "states": set()}

    async def tb(ctx):
        assert ctx.get(dut.idle) and ctx.get(dut.expected_seq) == 0
        ctx.set(dut.wout.ready, 0)                                    # PE array busy
        for beat in beats:
            ctx.set(dut.fill.valid, 1)
            ctx.set(dut.fill.payload, beat)
            while True:
                seen["states"].update(ctx.get(dut.bank_state[b]) for b in range(2))
                seen["blocked"] += ctx.get(dut.fill_blocked)
                seen["accepted"] += ctx.get(dut.pkg_accepted)
                if ctx.get(dut.fill.ready):
                    await ctx.tick()
                    break
                await ctx.tick()
                if seen["blocked"] == 5:                              # let the PE array go
                    ctx.set(dut.wout.ready, 1)
        ctx.set(dut.fill.valid, 0)
        assert not ctx.get(dut.idle)
        ctx.set(dut.wout.ready, 1)
        await ctx.tick().until(dut.idle)
        assert ctx.get(dut.expected_seq) == 3
        assert seen["accepted"] == 3
        assert seen["blocked"] >= 5
        assert {BankState.FILLING, BankState.VERIFYING, BankState.READY,
                BankState.DRAINING, BankState.FREE} <= seen["states"]

    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    sim.add_testbench(tb)
    sim.run()


# -- configuration and Verilog -------------------------------------------------------------------

def test_config_checks():
    with pytest.raises(ConfigError, match="wbuf_depth"):
        check_wbuf_config(TINY.replace(wbuf_depth=1 << 16))
    with pytest.raises(TypeError, match="HWConfig"):
        WeightBuffer("tiny")


@pytest.mark.parametrize("cfg", [TINY, WIDE, get_config("z020")], ids=lambda c: c.name)
def test_verilog_lints_clean(cfg):
    v = verilog.convert(WeightBuffer(cfg), name="weight_buffer")
    try:
        res = lint(v, "weight_buffer")
    except VerilatorNotFound as e:
        pytest.skip(str(e))
    # Amaranth's Verilog backend writes `x == 0` as `!x` on multi-bit x (WIDTHTRUNC on LOGNOT)
    # and `casez` without a default where every always block assigns its default first
    # (CASEINCOMPLETE); both are emission idioms, not design problems. Anything else fails.
    bad = [line for line in res.output.splitlines()
           if line.startswith("%") and not line.startswith("%Error: Exiting due to")
           and "Logical operator LOGNOT expects 1 bit" not in line
           and not line.startswith("%Warning-CASEINCOMPLETE")]
    assert not bad, "\n".join(bad)


# -- authenticated packages (mac_en) -------------------------------------------------------------

MAC = wpkg.MacKey(bytes(range(16)), 0x0123456789ABCDEF)


def mac_packages(cfg, rng, n_sets=(2, 3, 2), mac=MAC):
    out = []
    for k, n in enumerate(n_sets):
        lo = rng.integers(-7, 8, size=(n, cfg.lanes_lo, cfg.tn))
        hi = rng.integers(-127, 128, size=(n, cfg.lanes_hi, cfg.tn))
        payload = wpkg.encode_sets(cfg, lo, hi)
        out.append((wpkg.build_package(cfg, k, payload, mac=mac),
                    wpkg.bytes_to_words(cfg, payload)))
    return [b for b, _ in out], [w for _, w in out]


def check_mac_rejected(cfg, rng, stream, expected_words, code, **kw):
    run = simulate(cfg, [("beats", stream)], rng, mac=MAC, **kw)
    assert run.error == code, f"latched {run.error}, expected {code}"
    assert_words(run, expected_words)
    assert BankState.REJECTED in run.bank_state
    scan = wpkg.scan_packages(cfg, stream, mac=MAC)
    assert scan.error is not None and scan.error.code == code
    assert sum((p.words for p in scan.packages), []) == list(expected_words)
    return run


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_mac_packages_word_exact_under_stalls(cfg, rng):
    blobs, words = mac_packages(cfg, rng, (1, cfg.wbuf_depth // cfg.words_per_set, 3, 2))
    stream = b"".join(blobs)
    run = simulate(cfg, [("beats", stream)], rng, p_valid=0.6, p_ready=0.5, mac=MAC)
    assert run.error is None
    assert_words(run, sum(words, []))
    assert run.bank_state == [BankState.FREE, BankState.FREE]
    scan = wpkg.scan_packages(cfg, stream, mac=MAC)
    assert scan.error is None and len(scan.packages) == 4


def test_mac_fill_schedule(rng):
    """Exact cycles, no stalls: the nonce takes edges 0..1, the header edge 2, payload beat i
    edge 4 + 2 i (a word every 2 cycles), the trailer 8 edges after the last payload beat (the
    padding block and the 4 finalization rounds); the next package starts one edge later. A
    package of B beats takes 2 B + 7 cycles (B with the CRC)."""
    cfg = TINY
    n_sets, K = 4, 3
    n = n_sets * cfg.words_per_set
    B = package_beats(cfg, n)
    blobs, words = mac_packages(cfg, rng, (n_sets,) * K)
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, mac=MAC)
    assert run.error is None
    assert_words(run, sum(words, []))
    P = 2 * B + 7
    one = [2] + [4 + 2 * i for i in range(n)] + [2 + 2 * n + 8]
    assert run.fills == [k * P + c for k in range(K) for c in one]


@pytest.mark.parametrize("cfg", [TINY, WIDE], ids=lambda c: c.name)
def test_mac_forged_payload_with_valid_crc(cfg, rng):
    """The attacker changes a weight and writes a correct CRC trailer: WPKG_MAC, and nothing
    of the package leaves the bank."""
    blobs, words = mac_packages(cfg, rng)
    hb = header_beats(cfg) * cfg.beat_bytes
    body = bytearray(blobs[1][:-cfg.beat_bytes])
    body[hb + int(rng.integers(len(body) - hb))] ^= 1 << int(rng.integers(8))
    forged = bytes(body) + wpkg.encode_trailer(cfg, zlib.crc32(bytes(body)))
    check_mac_rejected(cfg, rng, blobs[0] + forged + blobs[2], words[0], ErrorCode.WPKG_MAC,
                       p_valid=0.8, p_ready=0.6)


@pytest.mark.parametrize("case", ["crc_package", "other_key", "other_model", "tag_bit_flip"])
def test_mac_rejects_packages_not_made_for_this_place(case, rng):
    cfg = TINY
    blobs, words = mac_packages(cfg, rng)
    if case == "crc_package":          # an unauthenticated package where a tag is required
        payload = wpkg.words_to_bytes(cfg, words[1])
        bad = wpkg.build_package(cfg, 1, payload)
    elif case in ("other_key", "other_model"):
        other = (wpkg.MacKey(bytes(range(1, 17)), MAC.nonce) if case == "other_key"
                 else wpkg.MacKey(MAC.key, MAC.nonce ^ 1))
        bad = wpkg.build_package(cfg, 1, wpkg.words_to_bytes(cfg, words[1]), mac=other)
    else:
        bad = flip_bit(blobs[1], 8 * (len(blobs[1]) - 8) + int(rng.integers(64)))
    check_mac_rejected(cfg, rng, blobs[0] + bad + blobs[2], words[0], ErrorCode.WPKG_MAC,
                       p_valid=0.7, p_ready=0.7)


def test_mac_replay_at_another_position(rng):
    """Package 2 replayed in place of package 1 with its sequence number rewritten to fit:
    the tag covers the header, so WPKG_MAC; verbatim it fails the sequence check."""
    cfg = TINY
    blobs, words = mac_packages(cfg, rng, (2, 2, 2))
    hb = header_beats(cfg) * cfg.beat_bytes
    fields, _ = wpkg.decode_header(cfg, blobs[2][:hb])
    fields["seq"] = 1
    moved = wpkg.encode_header(cfg, **fields) + blobs[2][hb:]
    check_mac_rejected(cfg, rng, blobs[0] + moved, words[0], ErrorCode.WPKG_MAC)
    check_mac_rejected(cfg, rng, blobs[0] + blobs[2], words[0], ErrorCode.WPKG_SEQ)


def test_mac_duplicated_package(rng):
    """Package 0 sent twice: verbatim WPKG_SEQ; with its sequence number rewritten WPKG_MAC."""
    cfg = TINY
    blobs, words = mac_packages(cfg, rng)
    hb = header_beats(cfg) * cfg.beat_bytes
    check_mac_rejected(cfg, rng, blobs[0] + blobs[0], words[0], ErrorCode.WPKG_SEQ)
    fields, _ = wpkg.decode_header(cfg, blobs[0][:hb])
    fields["seq"] = 1
    dup = wpkg.encode_header(cfg, **fields) + blobs[0][hb:]
    check_mac_rejected(cfg, rng, blobs[0] + dup, words[0], ErrorCode.WPKG_MAC)


def test_mac_clear_restarts_the_core(rng):
    """After a package rejected in the middle of the stream and ``clear``, the same packages are
    accepted again, word-exact: the core is reset with the controller."""
    cfg = TINY
    blobs, words = mac_packages(cfg, rng)
    forged = flip_bit(blobs[1], 8 * 20)
    run = simulate(cfg, [("beats", blobs[0] + forged), ("await_error",), ("clear",),
                         ("beats", b"".join(blobs))], rng, p_valid=0.8, p_ready=0.7, mac=MAC)
    assert run.error == ErrorCode.WPKG_MAC
    assert_words(run, words[0] + sum(words, []))
    assert run.bank_state == [BankState.FREE, BankState.FREE]


@pytest.mark.parametrize("cfg", [NARROW, BROAD], ids=lambda c: c.name)
def test_mac_on_a_bus_without_tags_fails_closed(cfg, rng):
    blob, _ = make_package(cfg, rng, 0, 2)
    run = simulate(cfg, [("beats", blob)], rng, mac=MAC)
    assert run.error == ErrorCode.WPKG_MAC
    assert run.words == []
    with pytest.raises(IlmpqValueError, match="need a 64-bit AXI bus"):
        wpkg.build_package(cfg, 0, bytes(wpkg.word_bytes(cfg) * cfg.words_per_set), mac=MAC)


def test_build_without_the_mac_core(rng):
    """``HWConfig.weight_mac = 0`` (z020): no SipHash core. CRC packages are accepted as on
    any build; with ``mac_en`` set every package fails closed with WPKG_MAC, whether it
    carries a valid tag or a valid CRC, and no word leaves the buffer."""
    cfg = TINY.replace(name="tiny-nomac", weight_mac=0)
    blobs, words = zip(*(make_package(cfg, rng, k, n) for k, n in enumerate((2, 1, 3))))
    run = simulate(cfg, [("beats", b"".join(blobs))], rng, p_valid=0.7, p_ready=0.6)
    assert run.error is None
    assert_words(run, sum(words, []))
    tagged, _ = mac_packages(cfg, rng, (2, 1))
    for stream in (b"".join(tagged), blobs[0]):
        run = simulate(cfg, [("beats", stream)], rng, mac=MAC)
        assert run.error == ErrorCode.WPKG_MAC
        assert run.words == []
        assert BankState.REJECTED in run.bank_state
