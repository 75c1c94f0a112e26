"""firmware/wpkg.py: weight-set packing, package build/parse, and the hardware's check order."""

import zlib

import numpy as np
import pytest

from ilmpq.firmware import wpkg
from ilmpq.golden.errors import IlmpqError, IlmpqTypeError, IlmpqValueError
from ilmpq.hdl.config import ConfigError, get_config
from ilmpq.hdl.status import ErrorCode
from ilmpq.hdl.weight_buffer import header_beats, package_beats, trailer_beats

TINY = get_config("tiny")
Z020 = get_config("z020")
WPS3 = TINY.replace(name="wps3", lanes_lo=5, lanes_hi=2)         # 144-bit sets: 3 words
NARROW = TINY.replace(name="axi32", axi_data_width=32)
BROAD = TINY.replace(name="axi128", axi_data_width=128)
CONFIGS = [TINY, Z020, WPS3, NARROW, BROAD, TINY.replace(name="wb3", wbuf_word_beats=3)]


def reference_set_bits(cfg, lo, hi):
    """docs/architecture.md section 4, written out weight by weight with Python ints."""
    v, pos = 0, 0
    for lane in range(cfg.lanes_lo):
        for j in range(cfg.tn):
            v |= (int(lo[lane, j]) & 0xF) << pos
            pos += 4
    for lane in range(cfg.lanes_hi):
        for j in range(cfg.tn):
            v |= (int(hi[lane, j]) & 0xFF) << pos
            pos += 8
    assert pos == cfg.set_bits
    return v


def random_sets(cfg, rng, n):
    lo = rng.integers(-7, 8, size=(n, cfg.lanes_lo, cfg.tn))
    hi = rng.integers(-127, 128, size=(n, cfg.lanes_hi, cfg.tn))
    # edge values on purpose
    lo[0, 0, 0], hi[0, 0, 0] = -7, -127
    lo[-1, -1, -1], hi[-1, -1, -1] = 7, 127
    return lo, hi


# -- weight sets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_encode_sets_matches_bit_by_bit_reference(cfg, rng):
    lo, hi = random_sets(cfg, rng, 3)
    payload = wpkg.encode_sets(cfg, lo, hi)
    set_bytes = cfg.words_per_set * wpkg.word_bytes(cfg)
    assert len(payload) == 3 * set_bytes
    for s in range(3):
        got = int.from_bytes(payload[s * set_bytes:(s + 1) * set_bytes], "little")
        assert got == reference_set_bits(cfg, lo[s], hi[s])
    # bank words: word 0 holds bits [0, wbuf_word_bits) of set 0
    words = wpkg.bytes_to_words(cfg, payload)
    mask = (1 << cfg.wbuf_word_bits) - 1
    assert words[0] == reference_set_bits(cfg, lo[0], hi[0]) & mask
    dlo, dhi = wpkg.decode_sets(cfg, payload)
    np.testing.assert_array_equal(dlo, lo)
    np.testing.assert_array_equal(dhi, hi)


def test_single_set_2d_arrays(rng):
    lo = rng.integers(-7, 8, size=(TINY.lanes_lo, TINY.tn))
    hi = rng.integers(-127, 128, size=(TINY.lanes_hi, TINY.tn))
    assert wpkg.encode_sets(TINY, lo, hi) == wpkg.encode_sets(TINY, lo[None], hi[None])


def test_encode_sets_rejects_bad_weights():
    lo = np.zeros((1, TINY.lanes_lo, TINY.tn), dtype=np.int64)
    hi = np.zeros((1, TINY.lanes_hi, TINY.tn), dtype=np.int64)
    bad = lo.copy()
    bad[0, 1, 2] = 8
    with pytest.raises(IlmpqValueError, match=r"lo\[0, 1, 2\] = 8 .*\[-7, 7\]"):
        wpkg.encode_sets(TINY, bad, hi)
    bad = hi.copy()
    bad[0, 0, 3] = -128
    with pytest.raises(IlmpqValueError, match=r"-128 .*\[-127, 127\]"):
        wpkg.encode_sets(TINY, lo, bad)
    with pytest.raises(IlmpqTypeError, match="integer"):
        wpkg.encode_sets(TINY, lo.astype(float), hi)
    with pytest.raises(IlmpqValueError, match=r"shape \(n_sets, 3, 4\)"):
        wpkg.encode_sets(TINY, np.zeros((1, 4, 4), dtype=int), hi)
    with pytest.raises(IlmpqValueError, match="same number of weight sets"):
        wpkg.encode_sets(TINY, np.concatenate([lo, lo]), hi)


def test_decode_sets_rejects_partial_sets_and_padding():
    set_bytes = TINY.words_per_set * wpkg.word_bytes(TINY)
    with pytest.raises(IlmpqValueError, match="not whole weight sets"):
        wpkg.decode_sets(TINY, bytes(set_bytes + 8))
    padded = bytearray(set_bytes)
    padded[-1] = 0x80                     # bit 127 is past set_bits = 80
    with pytest.raises(IlmpqValueError, match="padding"):
        wpkg.decode_sets(TINY, bytes(padded))


# -- packages ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_build_parse_roundtrip(cfg, rng):
    lo, hi = random_sets(cfg, rng, 2)
    payload = wpkg.encode_sets(cfg, lo, hi)
    blob = wpkg.build_package_from_sets(cfg, 41, lo, hi)
    n_words = 2 * cfg.words_per_set
    assert len(blob) == wpkg.package_size(cfg, n_words)
    assert len(blob) == package_beats(cfg, n_words) * cfg.beat_bytes
    pkg = wpkg.parse_package(cfg, blob, expected_seq=41)
    assert (pkg.seq, pkg.n_words, pkg.payload) == (41, n_words, payload)
    assert pkg.words == wpkg.bytes_to_words(cfg, payload)
    hbytes = header_beats(cfg) * cfg.beat_bytes
    tbytes = trailer_beats(cfg) * cfg.beat_bytes
    assert blob[hbytes:-tbytes] == payload


def test_byte_layout_on_the_64_bit_bus(rng):
    """The documented byte map (docs/weight_packages.md), independent of the layout code."""
    lo, hi = random_sets(TINY, rng, 3)
    payload = wpkg.encode_sets(TINY, lo, hi)
    blob = wpkg.build_package(TINY, 0x1234, payload)
    assert blob[0:2] == b"WP"                                    # magic 0x5057
    assert blob[2] == wpkg.WPKG_VERSION and blob[3] == 0         # version, reserved
    assert blob[4:6] == (0x1234).to_bytes(2, "little")           # seq
    assert blob[6:8] == (6).to_bytes(2, "little")                # n_words
    assert blob[8:-8] == payload
    crc = zlib.crc32(blob[:-8])
    assert blob[-8:-4] == crc.to_bytes(4, "little")
    assert blob[-4:] == (crc ^ 0xFFFFFFFF).to_bytes(4, "little")


@pytest.mark.parametrize("cfg", [NARROW, BROAD], ids=lambda c: c.name)
def test_header_and_trailer_beats(cfg, rng):
    lo, hi = random_sets(cfg, rng, 1)
    blob = wpkg.build_package_from_sets(cfg, 3, lo, hi)
    beats = wpkg.bytes_to_beats(cfg, blob)
    if cfg.axi_data_width == 32:
        assert header_beats(cfg) == trailer_beats(cfg) == 2
        assert beats[0] == 0x5057 | wpkg.WPKG_VERSION << 16
        assert beats[1] == 3 | cfg.words_per_set << 16
    else:
        assert header_beats(cfg) == trailer_beats(cfg) == 1
        assert beats[0] >> 64 == 0 and beats[-1] >> 64 == 0           # zero padding
        crc = zlib.crc32(blob[:-16])
        assert beats[-1] == crc | (crc ^ 0xFFFFFFFF) << 32


def test_build_package_rejects_bad_input(rng):
    wb = wpkg.word_bytes(TINY)
    set_bytes = TINY.words_per_set * wb
    with pytest.raises(IlmpqValueError, match="outside 1..64"):
        wpkg.build_package(TINY, 0, b"")
    with pytest.raises(IlmpqValueError, match="outside 1..64"):
        wpkg.build_package(TINY, 0, bytes(65 * set_bytes))
    with pytest.raises(IlmpqValueError, match="not whole weight sets of 2 words"):
        wpkg.build_package(TINY, 0, bytes(3 * wb))
    with pytest.raises(IlmpqValueError, match="not whole bank words"):
        wpkg.build_package(TINY, 0, bytes(set_bytes + 1))
    with pytest.raises(IlmpqValueError, match=r"seq = 65536 does not fit its 16 bits"):
        wpkg.build_package(TINY, 65536, bytes(set_bytes))
    with pytest.raises(IlmpqValueError, match=r"seq = -1"):
        wpkg.build_package(TINY, -1, bytes(set_bytes))
    with pytest.raises(IlmpqTypeError, match="payload must be bytes"):
        wpkg.build_package(TINY, 0, [0] * set_bytes)
    with pytest.raises(IlmpqTypeError, match="HWConfig"):
        wpkg.build_package("tiny", 0, bytes(set_bytes))
    with pytest.raises(ConfigError, match="wbuf_depth"):
        wpkg.build_package(TINY.replace(wbuf_depth=1 << 16), 0, bytes(set_bytes))
    full = wpkg.build_package(TINY, 65535, bytes(TINY.wbuf_depth * wb))      # a full bank
    assert wpkg.parse_package(TINY, full).n_words == TINY.wbuf_depth


def good(cfg, rng, seq, n_sets=2):
    lo, hi = random_sets(cfg, rng, n_sets)
    return wpkg.build_package_from_sets(cfg, seq, lo, hi)


def expect_code(code, fn, *args, match=None, **kw):
    with pytest.raises(wpkg.WeightPackageError, match=match) as ei:
        fn(*args, **kw)
    assert ei.value.code == code
    assert isinstance(ei.value, IlmpqError) and isinstance(ei.value, ValueError)


def retrail(cfg, blob):
    """Recompute the trailer so that only the header checks can fail."""
    t = trailer_beats(cfg) * cfg.beat_bytes
    return blob[:-t] + wpkg.encode_trailer(cfg, zlib.crc32(blob[:-t]))


def test_parse_checks_in_hardware_order(rng):
    blob = good(TINY, rng, 7)
    n = 2 * TINY.words_per_set
    payload = blob[8:-8]
    hdr = lambda **kw: wpkg.encode_header(TINY, **{"seq": 7, "n_words": n, **kw})  # noqa: E731
    E = ErrorCode
    expect_code(E.WPKG_MAGIC, wpkg.parse_package, TINY, retrail(TINY, hdr(magic=0x5058)
                + payload + blob[-8:]), match="magic 0x5058")
    expect_code(E.WPKG_MAGIC, wpkg.parse_package, TINY,
                retrail(TINY, hdr(version=2) + payload + blob[-8:]), match="version 2")
    expect_code(E.WPKG_MAGIC, wpkg.parse_package, TINY,
                retrail(TINY, hdr(reserved=1) + payload + blob[-8:]), match="reserved 1")
    # magic is checked before the sequence number, the sequence number before the length
    expect_code(E.WPKG_MAGIC, wpkg.parse_package, TINY, retrail(
        TINY, hdr(magic=0, seq=9, n_words=0) + payload + blob[-8:]), expected_seq=7)
    expect_code(E.WPKG_SEQ, wpkg.parse_package, TINY, blob, expected_seq=8,
                match="sequence number 7 where 8 was expected")
    expect_code(E.WPKG_SEQ, wpkg.parse_package, TINY,
                retrail(TINY, hdr(n_words=0) + payload + blob[-8:]), expected_seq=6)
    for bad_n, msg in ((0, "outside 1..64"), (65, "outside 1..64"), (3, "not whole")):
        expect_code(E.WPKG_LENGTH, wpkg.parse_package, TINY,
                    retrail(TINY, hdr(n_words=bad_n) + payload + blob[-8:]), match=msg)
    flipped = bytearray(blob)
    flipped[20] ^= 0x10
    expect_code(E.WPKG_CRC, wpkg.parse_package, TINY, bytes(flipped), match="CRC mismatch")
    bad_inv = bytearray(blob)
    bad_inv[-1] ^= 1                                            # complement only
    expect_code(E.WPKG_CRC, wpkg.parse_package, TINY, bytes(bad_inv))
    # no expected_seq: any sequence number is accepted
    assert wpkg.parse_package(TINY, blob).seq == 7


def test_parse_framing_errors(rng):
    blob = good(TINY, rng, 0)
    expect_code(ErrorCode.WPKG_LENGTH, wpkg.parse_package, TINY, blob[:-8], match="ends before")
    expect_code(ErrorCode.WPKG_LENGTH, wpkg.parse_package, TINY, blob + blob,
                match=f"{len(blob)} bytes follow")
    with pytest.raises(IlmpqValueError, match="whole AXI beats of 8 bytes"):
        wpkg.parse_package(TINY, blob[:-1])
    with pytest.raises(IlmpqTypeError, match="must be bytes"):
        wpkg.parse_package(TINY, list(blob))


def test_padding_on_a_wide_bus_is_checked(rng):
    blob = bytearray(good(BROAD, rng, 0))
    blob[9] ^= 1                                   # header padding (bytes 8..15)
    expect_code(ErrorCode.WPKG_MAGIC, wpkg.parse_package, BROAD, retrail(BROAD, bytes(blob)),
                match="padding 0x100")
    blob = bytearray(good(BROAD, rng, 0))
    blob[-1] ^= 1                                  # trailer padding
    expect_code(ErrorCode.WPKG_CRC, wpkg.parse_package, BROAD, bytes(blob))


def test_scan_packages_models_the_controller(rng):
    p = [good(TINY, rng, s, n) for s, n in ((0, 1), (1, 3), (2, 2))]
    scan = wpkg.scan_packages(TINY, b"".join(p))
    assert [k.seq for k in scan.packages] == [0, 1, 2]
    assert scan.error is None and scan.leftover == 0
    # a duplicate: two accepted, then WPKG_SEQ
    scan = wpkg.scan_packages(TINY, p[0] + p[1] + p[1] + p[2])
    assert [k.seq for k in scan.packages] == [0, 1]
    assert scan.error.code == ErrorCode.WPKG_SEQ
    # an incomplete package at the end: the controller would wait
    scan = wpkg.scan_packages(TINY, p[0] + p[1][:-16])
    assert [k.seq for k in scan.packages] == [0] and scan.error is None
    assert scan.leftover == len(p[1]) - 16
    # truncation followed by the next package: a CRC error, nothing of the bad one accepted
    scan = wpkg.scan_packages(TINY, p[0] + p[1][:-16] + p[2])
    assert [k.seq for k in scan.packages] == [0]
    assert scan.error.code == ErrorCode.WPKG_CRC
    # sequence numbers wrap modulo 2**16
    w = [good(TINY, rng, s, 1) for s in (65535, 0)]
    scan = wpkg.scan_packages(TINY, b"".join(w), first_seq=65535)
    assert [k.seq for k in scan.packages] == [65535, 0] and scan.error is None


def test_header_fields_roundtrip():
    raw = wpkg.encode_header(NARROW, seq=513, n_words=12, magic=0xBEEF, version=3, reserved=9)
    assert len(raw) == header_beats(NARROW) * NARROW.beat_bytes
    fields, pad = wpkg.decode_header(NARROW, raw)
    assert fields == dict(magic=0xBEEF, version=3, reserved=9, seq=513, n_words=12)
    assert pad == 0
    fields, pad = wpkg.decode_trailer(BROAD, wpkg.encode_trailer(BROAD, 0x12345678))
    assert fields == dict(crc=0x12345678, crc_inv=0xEDCBA987) and pad == 0
    with pytest.raises(IlmpqValueError, match=r"n_words = 65536 does not fit its 16 bits"):
        wpkg.encode_header(TINY, seq=0, n_words=1 << 16)
    with pytest.raises(IlmpqTypeError, match="must be an integer"):
        wpkg.encode_header(TINY, seq=1.0, n_words=2)


def test_beats_and_words_helpers(rng):
    data = rng.integers(0, 256, size=48, dtype=np.uint8).tobytes()
    beats = wpkg.bytes_to_beats(TINY, data)
    assert b"".join(b.to_bytes(8, "little") for b in beats) == data
    words = wpkg.bytes_to_words(Z020, bytes(rng.integers(0, 256, size=144, dtype=np.uint8)))
    assert len(words) == 2 and wpkg.words_to_bytes(Z020, words) == b"".join(
        w.to_bytes(72, "little") for w in words)
    with pytest.raises(IlmpqValueError, match="does not fit a bank word of 64 bits"):
        wpkg.words_to_bytes(TINY, [1 << 64])
    with pytest.raises(IlmpqValueError, match="not whole bank words"):
        wpkg.bytes_to_words(TINY, bytes(9))
