"""Weight packages, host side: build the bytes the weight-buffer controller verifies; parse them.

A weight package carries whole weight sets (docs/architecture.md section 4) into one weight bank.
The format is specified in ``docs/weight_packages.md``; the header and trailer layouts are the
``data.Struct`` classes of :mod:`ilmpq.hdl.weight_buffer`, used here through their field offsets
(nothing is retyped). The CRC is :func:`zlib.crc32`, the same function the hardware computes one
beat per cycle.

Typical use (the compiler)::

    payload = encode_sets(config, lo, hi)          # (n_sets, lanes_lo, tn), (n_sets, lanes_hi, tn)
    blob = build_package(config, seq, payload)     # header + payload + trailer bytes

Authenticated packages (docs/reliability.md, "Authenticated weight packages"): given a
:class:`MacKey` (the 16-byte SipHash-2-4 key and the model's 64-bit nonce),
:func:`build_package` puts the tag :func:`package_tag` in the trailer instead of the CRC; the
hardware checks it when MAC_CTRL.enable is set.

:func:`parse_package` is the exact inverse and applies the hardware's checks in the hardware's
order, raising :class:`WeightPackageError` with the :class:`~ilmpq.hdl.status.ErrorCode` the
controller would latch; :func:`scan_packages` does the same over a stream of packages, which makes
it a reference model of the controller for tests.
"""

from __future__ import annotations

import os
import stat
import zlib
from dataclasses import dataclass

import numpy as np

from ..golden.errors import IlmpqTypeError, IlmpqValueError
from ..golden.formats import Precision, check_int_array
from ..golden.siphash import KEY_BYTES, check_key, siphash24
from ..hdl.config import HWConfig
from ..hdl.status import ErrorCode
from ..hdl.weight_buffer import (
    WPKG_MAGIC, WPKG_VERSION, PackageHeader, PackageTrailer, header_beats, trailer_beats,
    check_wbuf_config,
)
from amaranth.lib import data as _data

__all__ = [
    "WPKG_MAGIC", "WPKG_VERSION", "WeightPackageError", "WeightPackage", "ScanResult",
    "word_bytes", "package_size", "encode_sets", "decode_sets", "encode_header", "decode_header",
    "encode_trailer", "decode_trailer", "build_package", "build_package_from_sets",
    "parse_package", "scan_packages", "bytes_to_beats", "bytes_to_words", "words_to_bytes",
    "MacKey", "mac_message", "package_tag", "encode_tag", "read_key_file", "new_nonce",
]

_HEADER = _data.Layout.cast(PackageHeader)
_TRAILER = _data.Layout.cast(PackageTrailer)
_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, repr=False)
class MacKey:
    """What authenticates a model's packages: the 16-byte SipHash-2-4 ``key`` (secret; never
    printed: ``repr`` hides it) and the model's 64-bit ``nonce`` (public, stored with the
    compiled model and written to MAC_NONCE by the driver)."""

    key: bytes
    nonce: int

    def __post_init__(self):
        object.__setattr__(self, "key", check_key(self.key))
        n = self.nonce
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= _MASK64:
            raise IlmpqValueError(f"MAC nonce = {n!r} is not allowed: it must be an integer in "
                                  f"[0, 2**64)")
        object.__setattr__(self, "nonce", int(n))

    def __repr__(self):
        return f"MacKey(key=<{KEY_BYTES} bytes hidden>, nonce={self.nonce:#018x})"


def new_nonce() -> int:
    """A fresh random 64-bit nonce (one per compiled model)."""
    return int.from_bytes(os.urandom(8), "little")


#: Largest key file accepted (a key is 16 raw bytes or 32 hex digits and a newline).
_KEY_FILE_MAX = 4096


def read_key_file(path) -> bytes:
    """Read a MAC key from a file: exactly 16 raw bytes, or 32 hexadecimal digits (surrounding
    whitespace allowed). Keys are never taken from the command line (shell history, ``ps``).
    Raises :class:`~ilmpq.golden.errors.IlmpqValueError` naming the problem."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise IlmpqValueError(f"cannot read the MAC key file {path!s}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise IlmpqValueError(f"the MAC key file {path!s} is not a regular file")
    if st.st_size > _KEY_FILE_MAX:
        raise IlmpqValueError(f"the MAC key file {path!s} has {st.st_size} bytes; a key is "
                              f"{KEY_BYTES} raw bytes or {2 * KEY_BYTES} hex digits")
    with open(path, "rb") as f:
        raw = f.read(_KEY_FILE_MAX + 1)
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES or len(text) != 2 * KEY_BYTES:
        raise IlmpqValueError(f"the MAC key file {path!s} must hold exactly {KEY_BYTES} raw "
                              f"bytes or {2 * KEY_BYTES} hex digits, not {len(raw)} bytes of "
                              f"something else")
    return key


def mac_message(nonce: int, body: bytes) -> bytes:
    """The bytes a package tag authenticates: the model's nonce (8 bytes, little-endian), then
    ``body`` = the header and payload beats. The header's sequence number places the package
    in its model (the compiler numbers a model's packages uniquely, at most 2**16 of them)."""
    return nonce.to_bytes(8, "little") + body


def package_tag(mac: MacKey, body: bytes) -> int:
    """SipHash-2-4 tag of a package whose header and payload bytes are ``body``."""
    return siphash24(mac.key, mac_message(mac.nonce, bytes(body)))


class WeightPackageError(IlmpqValueError):
    """A weight package fails a check; ``code`` is the ``ErrorCode`` the hardware latches."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)


@dataclass(frozen=True)
class WeightPackage:
    """A parsed, verified package: its sequence number and its payload (``n_words`` bank words)."""

    seq: int
    n_words: int
    payload: bytes
    word_bytes: int

    @property
    def words(self) -> list[int]:
        """The payload as bank words (Python ints, ``wbuf_word_bits`` wide)."""
        wb = self.word_bytes
        return [int.from_bytes(self.payload[i:i + wb], "little")
                for i in range(0, len(self.payload), wb)]


@dataclass(frozen=True)
class ScanResult:
    """Outcome of :func:`scan_packages`: what the controller would accept from a beat stream.

    ``packages``: packages accepted, in order, before any error. ``error``: the first failed
    check (``None`` if none); the controller halts there. ``leftover``: bytes at the end that do
    not complete a package (the controller would wait for more beats).
    """

    packages: list[WeightPackage]
    error: WeightPackageError | None
    leftover: int


def _check_config(config) -> None:
    if not isinstance(config, HWConfig):
        raise IlmpqTypeError(f"config must be an HWConfig, not {type(config).__name__}")
    check_wbuf_config(config)


def word_bytes(config: HWConfig) -> int:
    """Bytes of one bank word (``wbuf_word_bits / 8``)."""
    return config.wbuf_word_bits // 8


def package_size(config: HWConfig, n_words: int) -> int:
    """Bytes of a package with ``n_words`` payload words (header and trailer included)."""
    _check_config(config)
    return ((header_beats(config) + trailer_beats(config)) * config.beat_bytes
            + n_words * word_bytes(config))



# -- weight sets ---------------------------------------------------------------------------------

def _as_sets(name: str, x, lanes: int, tn: int, precision: Precision) -> np.ndarray:
    lo, hi = -precision.wmax, precision.wmax
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    try:
        arr = check_int_array(name, arr, lo, hi, ndim=3)
    except TypeError as e:
        raise IlmpqTypeError(str(e)) from None
    except ValueError as e:
        raise IlmpqValueError(f"{e} ({precision.name} weights, {precision.bits} bits)") from None
    if arr.shape[1:] != (lanes, tn):
        raise IlmpqValueError(
            f"{name} must have shape (n_sets, {lanes}, {tn}) (lanes, tn of this configuration), "
            f"not {arr.shape}")
    return arr


def _to_bits(arr: np.ndarray, bits: int) -> np.ndarray:
    """(n, k) signed ints -> (n, k*bits) bits, two's complement, LSB first, element 0 first."""
    u = (arr & ((1 << bits) - 1)).astype(np.uint8)
    b = np.unpackbits(u[..., None], axis=-1, bitorder="little")[..., :bits]
    return b.reshape(arr.shape[0], -1)


def _from_bits(b: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`_to_bits`: (n, k*bits) bits -> (n, k) signed ints."""
    n = b.shape[0]
    b = b.reshape(n, -1, bits)
    pad = np.zeros((n, b.shape[1], 8 - bits), dtype=np.uint8)
    u = np.packbits(np.concatenate([b, pad], axis=-1), axis=-1, bitorder="little")[..., 0]
    v = u.astype(np.int64)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def encode_sets(config: HWConfig, lo, hi) -> bytes:
    """Pack weight sets into bank words (docs/architecture.md section 4).

    Parameters
    ----------
    config : HWConfig
    lo : int array (n_sets, lanes_lo, tn) or (lanes_lo, tn)
        4-bit weights of the low lanes, each in ``[-7, 7]``; ``lo[s, i, j]`` is element ``j`` of
        low lane ``i`` in set ``s``.
    hi : int array (n_sets, lanes_hi, tn) or (lanes_hi, tn)
        8-bit weights of the high lanes, each in ``[-127, 127]``.

    Returns
    -------
    bytes
        ``n_sets * words_per_set`` bank words, little-endian; each set's bit vector (low lanes
        from bit 0, then high lanes, each weight two's complement, element 0 lowest) is
        zero-padded to ``words_per_set`` words.
    """
    _check_config(config)
    lo = _as_sets("lo", lo, config.lanes_lo, config.tn, Precision.LO)
    hi = _as_sets("hi", hi, config.lanes_hi, config.tn, Precision.HI)
    if lo.shape[0] != hi.shape[0]:
        raise IlmpqValueError(
            f"lo and hi must hold the same number of weight sets, not {lo.shape[0]} and "
            f"{hi.shape[0]}")
    n = lo.shape[0]
    bits = np.concatenate([_to_bits(lo.reshape(n, -1), config.lo_bits),
                           _to_bits(hi.reshape(n, -1), config.hi_bits)], axis=1)
    assert bits.shape[1] == config.set_bits
    padded = np.zeros((n, config.words_per_set * config.wbuf_word_bits), dtype=np.uint8)
    padded[:, :config.set_bits] = bits
    return np.packbits(padded, axis=1, bitorder="little").tobytes()


def decode_sets(config: HWConfig, payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_sets`: ``(lo, hi)`` int64 arrays of shape (n_sets, lanes, tn).

    Raises :class:`~ilmpq.golden.errors.IlmpqValueError` if ``payload`` is not whole sets or a
    set's padding bits are not zero.
    """
    _check_config(config)
    set_bytes = config.words_per_set * word_bytes(config)
    if len(payload) % set_bytes:
        raise IlmpqValueError(
            f"payload of {len(payload)} bytes is not whole weight sets of {set_bytes} bytes "
            f"({config.words_per_set} words of {word_bytes(config)} bytes)")
    n = len(payload) // set_bytes
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8).reshape(n, set_bytes), axis=1,
                         bitorder="little")
    if bits[:, config.set_bits:].any():
        s = int(np.argwhere(bits[:, config.set_bits:].any(axis=1))[0, 0])
        raise IlmpqValueError(f"weight set {s} has non-zero padding bits past bit "
                              f"{config.set_bits}")
    nlo = config.lanes_lo * config.tn * config.lo_bits
    lo = _from_bits(bits[:, :nlo], config.lo_bits).reshape(n, config.lanes_lo, config.tn)
    hi = _from_bits(bits[:, nlo:config.set_bits], config.hi_bits).reshape(
        n, config.lanes_hi, config.tn)
    return lo, hi


# -- header and trailer --------------------------------------------------------------------------

def _encode(layout: _data.StructLayout, fields: dict[str, int], nbeats: int,
            config: HWConfig) -> bytes:
    for name, value in fields.items():
        width = layout[name].width
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise IlmpqTypeError(f"package field {name} must be an integer, not {value!r}")
        if not 0 <= value < (1 << width):
            raise IlmpqValueError(
                f"package field {name} = {value} does not fit its {width} bits "
                f"(allowed 0..{(1 << width) - 1})")
    value = layout.const({k: int(v) for k, v in fields.items()}).as_value().value
    return value.to_bytes(nbeats * config.beat_bytes, "little")


def _decode(layout: _data.StructLayout, raw: bytes) -> tuple[dict[str, int], int]:
    value = int.from_bytes(raw, "little")
    view = layout.from_bits(value & ((1 << layout.size) - 1))
    return {name: int(view[name]) for name, _ in layout}, value >> layout.size


def encode_header(config: HWConfig, *, seq: int, n_words: int, magic: int = WPKG_MAGIC,
                  version: int = WPKG_VERSION, reserved: int = 0) -> bytes:
    """Header beat(s) of a package. Only field widths are checked (tests build bad headers)."""
    _check_config(config)
    return _encode(_HEADER, dict(magic=magic, version=version, reserved=reserved, seq=seq,
                                 n_words=n_words), header_beats(config), config)


def decode_header(config: HWConfig, raw: bytes) -> tuple[dict[str, int], int]:
    """Fields of a header (``header_beats`` beats of bytes) and the value of its padding bits."""
    _check_config(config)
    return _decode(_HEADER, raw)


def encode_trailer(config: HWConfig, crc: int) -> bytes:
    """Trailer beat(s): ``crc`` and its complement."""
    _check_config(config)
    return _encode(_TRAILER, dict(crc=crc, crc_inv=crc ^ _MASK32), trailer_beats(config), config)


def decode_trailer(config: HWConfig, raw: bytes) -> tuple[dict[str, int], int]:
    """Fields of a trailer and the value of its padding bits."""
    _check_config(config)
    return _decode(_TRAILER, raw)


# -- packages ------------------------------------------------------------------------------------

def _check_length(config: HWConfig, n_words: int) -> str | None:
    """The hardware's length rule; returns the problem or None."""
    wps = config.words_per_set
    if not 1 <= n_words <= config.wbuf_depth:
        return f"n_words = {n_words} is outside 1..{config.wbuf_depth} (one weight bank)"
    if n_words % wps:
        return (f"n_words = {n_words} is not whole weight sets of {wps} words "
                f"(words_per_set of this configuration)")
    return None


def build_package(config: HWConfig, seq: int, payload: bytes, *,
                  mac: MacKey | None = None) -> bytes:
    """Build a package: header, ``payload`` (whole weight sets of bank words), trailer.

    Parameters
    ----------
    config : HWConfig
    seq : int
        Sequence number, ``0..65535``: 0 for the first package after the controller's
        ``start``, then one more for each package (modulo 2**16).
    payload : bytes
        Bank words, little-endian, e.g. from :func:`encode_sets`: a whole number of weight sets
        and at most ``wbuf_depth`` words.
    mac : MacKey or None
        Authenticate the package: the trailer holds :func:`package_tag` instead of the CRC
        (64-bit AXI buses only).
    """
    _check_config(config)
    if mac is not None:
        if not isinstance(mac, MacKey):
            raise IlmpqTypeError(f"mac must be a MacKey, not {type(mac).__name__}")
        _check_mac_config(config)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise IlmpqTypeError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    wb = word_bytes(config)
    if len(payload) % wb:
        raise IlmpqValueError(
            f"payload of {len(payload)} bytes is not whole bank words of {wb} bytes")
    n_words = len(payload) // wb
    problem = _check_length(config, n_words)
    if problem:
        raise IlmpqValueError(f"cannot build a weight package: {problem}")
    header = encode_header(config, seq=seq, n_words=n_words)
    if mac is not None:
        return header + payload + encode_tag(config, package_tag(mac, header + payload))
    crc = zlib.crc32(payload, zlib.crc32(header))
    return header + payload + encode_trailer(config, crc)


def _check_mac_config(config: HWConfig) -> None:
    if config.axi_data_width != 64:
        raise IlmpqValueError(
            f"authenticated weight packages need a 64-bit AXI bus; configuration "
            f"{config.name!r} has axi_data_width = {config.axi_data_width} (its hardware "
            f"rejects every package with WPKG_MAC when MAC_CTRL.enable is set)")


def encode_tag(config: HWConfig, tag: int) -> bytes:
    """Trailer of an authenticated package: the 64-bit tag, little-endian."""
    _check_mac_config(config)
    return int(tag).to_bytes(trailer_beats(config) * config.beat_bytes, "little")


def build_package_from_sets(config: HWConfig, seq: int, lo, hi, *,
                            mac: MacKey | None = None) -> bytes:
    """:func:`build_package` of :func:`encode_sets` ``(lo, hi)``."""
    return build_package(config, seq, encode_sets(config, lo, hi), mac=mac)


def _parse_one(config: HWConfig, data: bytes, expected_seq: int | None,
               mac: MacKey | None = None):
    """Parse the package at the start of ``data`` as the hardware does.

    Returns ``(package, size)``, or ``(None, 0)`` if ``data`` ends before the package does.
    Raises :class:`WeightPackageError` on the first failed check.
    """
    hbytes = header_beats(config) * config.beat_bytes
    tbytes = trailer_beats(config) * config.beat_bytes
    if len(data) < hbytes:
        return None, 0
    fields, pad = decode_header(config, data[:hbytes])
    if (fields["magic"] != WPKG_MAGIC or fields["version"] != WPKG_VERSION
            or fields["reserved"] != 0 or pad != 0):
        raise WeightPackageError(
            ErrorCode.WPKG_MAGIC,
            f"not a weight package of this format: magic 0x{fields['magic']:04x} "
            f"(expected 0x{WPKG_MAGIC:04x}), version {fields['version']} (expected "
            f"{WPKG_VERSION}), reserved {fields['reserved']} and header padding 0x{pad:x} "
            f"(expected 0)")
    if expected_seq is not None and fields["seq"] != expected_seq:
        raise WeightPackageError(
            ErrorCode.WPKG_SEQ,
            f"sequence number {fields['seq']} where {expected_seq} was expected (a dropped, "
            f"duplicated or reordered package)")
    problem = _check_length(config, fields["n_words"])
    if problem:
        raise WeightPackageError(ErrorCode.WPKG_LENGTH, f"bad package length: {problem}")
    end = hbytes + fields["n_words"] * word_bytes(config)
    if len(data) < end + tbytes:
        return None, 0
    if mac is not None:
        got = int.from_bytes(data[end:end + tbytes], "little")
        want = package_tag(mac, data[:end])
        if got != want:
            raise WeightPackageError(
                ErrorCode.WPKG_MAC,
                f"MAC mismatch: the trailer does not hold the SipHash-2-4 tag of this header "
                f"and payload under this key and nonce (forged, moved or from another model)")
    trailer, tpad = decode_trailer(config, data[end:end + tbytes])
    crc = zlib.crc32(data[:end])
    if mac is None and (trailer["crc"] != crc or trailer["crc_inv"] != crc ^ _MASK32
                        or tpad != 0):
        raise WeightPackageError(
            ErrorCode.WPKG_CRC,
            f"CRC mismatch: trailer holds crc 0x{trailer['crc']:08x} / complement "
            f"0x{trailer['crc_inv']:08x}, the header and payload give 0x{crc:08x}")
    pkg = WeightPackage(seq=fields["seq"], n_words=fields["n_words"],
                        payload=bytes(data[hbytes:end]), word_bytes=word_bytes(config))
    return pkg, end + tbytes


def _check_bytes(config: HWConfig, data) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise IlmpqTypeError(f"package data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) % config.beat_bytes:
        raise IlmpqValueError(
            f"package data of {len(data)} bytes is not whole AXI beats of "
            f"{config.beat_bytes} bytes")
    return data


def parse_package(config: HWConfig, data: bytes, *, expected_seq: int | None = None,
                  mac: MacKey | None = None) -> WeightPackage:
    """Parse and verify exactly one package (the inverse of :func:`build_package`).

    The checks and their order are the hardware's: magic/version/reserved/padding
    (``WPKG_MAGIC``), sequence number if ``expected_seq`` is given (``WPKG_SEQ``), length
    (``WPKG_LENGTH``), CRC (``WPKG_CRC``) or, with ``mac``, the tag (``WPKG_MAC``). Data that
    ends early or goes on after the trailer raises ``WPKG_LENGTH`` too (the hardware would
    instead wait, or read the rest as the next package).
    """
    _check_config(config)
    data = _check_bytes(config, data)
    if mac is not None:
        _check_mac_config(config)
    pkg, size = _parse_one(config, data, expected_seq, mac)
    if pkg is None:
        raise WeightPackageError(
            ErrorCode.WPKG_LENGTH,
            f"package data of {len(data)} bytes ends before the package does")
    if size != len(data):
        raise WeightPackageError(
            ErrorCode.WPKG_LENGTH,
            f"{len(data) - size} bytes follow the package's trailer (package is {size} bytes)")
    return pkg


def scan_packages(config: HWConfig, data: bytes, *, first_seq: int = 0,
                  mac: MacKey | None = None) -> ScanResult:
    """Parse a stream of consecutive packages the way the controller does after ``start``.

    The first package must carry ``first_seq``, each next one the previous ``seq + 1`` (mod
    2**16); with ``mac``, every package must carry its tag. Scanning stops at the first error
    (the controller halts) or when the data ends.
    """
    _check_config(config)
    data = _check_bytes(config, data)
    if mac is not None:
        _check_mac_config(config)
    packages: list[WeightPackage] = []
    pos, seq = 0, first_seq
    while pos < len(data):
        try:
            pkg, size = _parse_one(config, data[pos:], seq, mac)
        except WeightPackageError as e:
            return ScanResult(packages, e, 0)
        if pkg is None:
            break
        packages.append(pkg)
        pos += size
        seq = (seq + 1) & 0xFFFF
    return ScanResult(packages, None, len(data) - pos)


# -- beats and words -----------------------------------------------------------------------------

def bytes_to_beats(config: HWConfig, data: bytes) -> list[int]:
    """Split bytes into AXI beats (``axi_data_width``-bit ints, little-endian)."""
    data = _check_bytes(config, data)
    bb = config.beat_bytes
    return [int.from_bytes(data[i:i + bb], "little") for i in range(0, len(data), bb)]


def bytes_to_words(config: HWConfig, payload: bytes) -> list[int]:
    """Split a payload into bank words (``wbuf_word_bits``-bit ints)."""
    wb = word_bytes(config)
    if len(payload) % wb:
        raise IlmpqValueError(
            f"payload of {len(payload)} bytes is not whole bank words of {wb} bytes")
    return [int.from_bytes(payload[i:i + wb], "little") for i in range(0, len(payload), wb)]


def words_to_bytes(config: HWConfig, words) -> bytes:
    """Join bank words (ints in ``[0, 2**wbuf_word_bits)``) into a little-endian payload."""
    wb = word_bytes(config)
    out = bytearray()
    for i, w in enumerate(words):
        w = int(w)
        if not 0 <= w < (1 << config.wbuf_word_bits):
            raise IlmpqValueError(
                f"word {i} = {w:#x} does not fit a bank word of {config.wbuf_word_bits} bits")
        out += w.to_bytes(wb, "little")
    return bytes(out)
