"""SipHash-2-4, the keyed MAC of authenticated weight packages (pure Python, the specification).

SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): a 128-bit key,
a 64-bit tag, 2 SipRounds per 8-byte message block and 4 finalization rounds. This module is the
reference the RTL core (:mod:`ilmpq.hdl.siphash`) and the host package builder
(:mod:`ilmpq.firmware.wpkg`) are tested against; it is checked against the paper's 64 test
vectors (key ``00 01 .. 0f``, messages ``b""``, ``00``, ``00 01``, ...) in
``tests/golden/test_siphash.py``.

Nothing here is vectorised: the MAC runs over a package once when it is built.
"""

from __future__ import annotations

from .errors import IlmpqTypeError, IlmpqValueError

__all__ = ["KEY_BYTES", "TAG_BYTES", "C_ROUNDS", "D_ROUNDS", "INIT_CONSTANTS", "FINAL_XOR",
           "sipround", "siphash24", "check_key"]

#: Key length in bytes (128 bits).
KEY_BYTES = 16
#: Tag length in bytes (64 bits).
TAG_BYTES = 8
#: SipRounds per message block ("2" of SipHash-2-4).
C_ROUNDS = 2
#: Finalization SipRounds ("4" of SipHash-2-4).
D_ROUNDS = 4
#: ``v0..v3`` before the key is XORed in: "somepseudorandomlygeneratedbytes".
INIT_CONSTANTS = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
#: Constant XORed into ``v2`` before the finalization rounds.
FINAL_XOR = 0xFF

_M64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M64


def sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    """One SipRound on the four 64-bit state words."""
    v0 = (v0 + v1) & _M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def check_key(key) -> bytes:
    """Return ``key`` as bytes if it is a 16-byte key, else raise naming the problem."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise IlmpqTypeError(f"a SipHash key must be {KEY_BYTES} bytes, not "
                             f"{type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise IlmpqValueError(f"a SipHash key must be exactly {KEY_BYTES} bytes (128 bits), "
                              f"not {len(key)}")
    return key


def siphash24(key: bytes, message: bytes) -> int:
    """SipHash-2-4 of ``message`` under the 16-byte ``key``, as an int (the tag's bytes are its
    little-endian encoding, as in the paper's vectors)."""
    key = check_key(key)
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise IlmpqTypeError(f"a SipHash message must be bytes, not {type(message).__name__}")
    message = bytes(message)
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [INIT_CONSTANTS[0] ^ k0, INIT_CONSTANTS[1] ^ k1,
         INIT_CONSTANTS[2] ^ k0, INIT_CONSTANTS[3] ^ k1]
    n = len(message)
    full = n - n % 8
    blocks = [int.from_bytes(message[i:i + 8], "little") for i in range(0, full, 8)]
    blocks.append(int.from_bytes(message[full:], "little") | ((n & 0xFF) << 56))
    for m in blocks:
        v[3] ^= m
        for _ in range(C_ROUNDS):
            v = list(sipround(*v))
        v[0] ^= m
    v[2] ^= FINAL_XOR
    for _ in range(D_ROUNDS):
        v = list(sipround(*v))
    return v[0] ^ v[1] ^ v[2] ^ v[3]
