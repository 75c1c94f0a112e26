"""The instruction set of the accelerator (defined once, imported by the compiler).

A program is a sequence of 384-bit (48-byte) instructions in DRAM (little-endian,
``384 / axi_data_width`` beats each; 256 bits until the loader modes, the lookup table and the
activation checks of session 4 outgrew them), fetched by DMA from ``PROG_ADDR``. The fetch unit dispatches each instruction, in
order, to the queue of the unit that executes it:

=============  ======  ===================================================================
opcode         unit    what it does
=============  ======  ===================================================================
LOAD_ROWS      LA      DMA ``beats`` beats from ``addr`` into the next half of the
                       activation buffer (halves alternate: load ``n`` uses half ``n % 2``);
                       strided (``chunk_beats``: a read per used pixel or row) or gathering
                       (``gather``: raw rows folded into stored pixels), see LoadRows; then
                       check them against their rows' check entries (ACT_CRC).
LOAD_WEIGHTS   W       DMA a stream of weight packages into the weight buffer; package
                       ``k`` of the stream must carry sequence number ``seq_base + k``,
                       and the stream must end where a package ends (else WPKG_LENGTH).
COMPUTE        C       Run all output-channel tiles (mtiles) of one output-pixel tile on the
                       PE array, from activation-buffer half ``n % 2``; with ``pool`` set,
                       reduce pooling windows on the pooling unit instead (an mtile is then
                       ``lanes_pad`` channel positions of the input, see hdl/pool.py).
STORE          S       With ``lut_en``, first load the lookup table (CRC-checked). For each
                       mtile of one pixel tile: read the per-lane parameters (and
                       the residual rows), drain the accumulator bank (with ``pool`` set:
                       take the pooling unit's results) through the post-processing unit
                       and write the output bytes, then one check entry per output
                       row (residual rows are checked against theirs).
END            fetch   Stop fetching; the run is done when every unit is idle and every
                       write is acknowledged.
=============  ======  ===================================================================

Dependencies are implicit and counted, so the program carries no tokens (the compiler emits
exactly one LOAD_ROWS, one COMPUTE and one STORE per pixel tile, in that order, and one
LOAD_WEIGHTS per conv pixel tile before its COMPUTE -- a layer whose packages exceed one stream
(``MAX_COMMAND_BEATS``) has further streams after its STORE, their sequence numbers following
on, since the weight unit runs ahead and a stream waits until the buffer took the previous
one; pooling tiles have no weights):

* COMPUTE ``n`` starts when LOAD_ROWS ``n`` has completed (``n`` counts the COMPUTEs that
  released their half: one with ``keep`` set leaves its half, and its LOAD_ROWS, to the next
  COMPUTE, so two COMPUTEs read one load);
* LOAD_ROWS ``n`` starts when COMPUTE ``n - 2`` has completed (its half is free) and when at least
  ``wait_stores`` STORE instructions have completed (the layer barrier: a layer's input was
  written by earlier STOREs);
* mtile ``g`` (counted over the whole run) computes into accumulator bank ``g % 2``; it starts
  when the STORE unit has drained mtile ``g - 2``; the STORE unit drains mtile ``g`` once the PE
  array reports its last write.

Every dependency points to an instruction earlier in program order, so in-order dispatch into
per-unit queues cannot deadlock.

Integrity (docs/reliability.md): bits 352..383 of every instruction hold ``check``, the CRC-32
(``CRC32_ISO_HDLC``, zlib's) of the instruction's 48 bytes with ``check`` replaced by
``index ^ PROG_ADDR ^ PROG_TAG`` (little-endian): :func:`seal` computes it, the fetch unit
verifies it before dispatch (``INSTR_CRC``), so a flipped bit, an instruction moved to another
index, copied from another program or left from another compilation (another tag) is never
executed. The fetch unit also checks that every STORE
drains exactly what the COMPUTE before it filled (``STORE_MISMATCH``). A STORE's lane
parameters carry a CRC-32 trailer per mtile (:func:`pack_params_block`, ``PARAMS_CRC``).
Activations carry check entries (:func:`act_check`, ``ACT_CRC``; the ``chk_*`` and
``res_chk_*`` fields, added at the end of the LOAD_ROWS and STORE layouts).
"""

import operator
import zlib

import numpy as np

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from ..golden.errors import IlmpqValueError

__all__ = [
    "INSTR_BITS", "Opcode", "Unit", "PoolMode", "OPCODE_UNIT", "LoadRows", "LoadWeights", "Compute",
    "Store",
    "Instruction", "LaneParams", "FIELD_LAYOUTS", "encode", "decode", "pack_lane_params",
    "CHECK_BITS", "seal", "check_word", "is_sealed", "PARAMS_TRAILER_BYTES",
    "pack_params_block", "params_block_bytes", "LUT_TRAILER_BYTES", "lut_block_bytes",
    "pack_lut_block", "CHK_OFF_BITS", "DW_MAX_MTILES", "act_check", "act_check_sum",
    "act_check_entries", "pixel_tiles",
]

INSTR_BITS = 384


class Opcode(enum.Enum, shape=unsigned(4)):
    NOP = 0
    LOAD_ROWS = 1
    LOAD_WEIGHTS = 2
    COMPUTE = 3
    STORE = 4
    END = 15


class Unit(enum.Enum, shape=unsigned(2)):
    LA = 0   #: activation loads
    W = 1    #: weight loads
    C = 2    #: compute
    S = 3    #: post-processing and stores


OPCODE_UNIT = {
    Opcode.LOAD_ROWS: Unit.LA, Opcode.LOAD_WEIGHTS: Unit.W, Opcode.COMPUTE: Unit.C,
    Opcode.STORE: Unit.S,
}


class PoolMode(enum.Enum, shape=unsigned(2)):
    """What a COMPUTE does with its activation windows."""
    NONE = 0    #: convolution on the PE array
    MAX = 1     #: max over each window (unsigned inputs: zero padding never wins)
    SUM = 2     #: sum over each window (an average is a sum requantized by the STORE)


#: Width of a check-entry offset (in beats from WR_BASE, see :func:`act_check`).
CHK_OFF_BITS = 16


class LoadRows(data.Struct):
    addr: unsigned(32)          #: byte address of the first beat (beat-aligned)
    beats: unsigned(24)         #: beats to load (<= act buffer half, in beats)
    wait_stores: unsigned(32)   #: start only after this many STOREs completed (absolute count)
    # gather mode (``gather = 1``, the stem input; docs/architecture.md, *The network input*):
    # the ``beats`` are whole raw rows of ``row_beats`` beats; row ``r`` supplies the beats
    # ``[shift + 8*k, +8)`` of its bytes (zero outside the row), ``k < pix * seg_beats``, beat ``k``
    # into buffer beat ``((r // seg_rows) * pix + k // seg_beats) * pix_beats
    # + (r % seg_rows) * seg_beats + k % seg_beats`` (bits 88..150)
    gather: unsigned(1)
    row_beats: unsigned(12)     #: beats of one raw row in DRAM
    shift: signed(16)           #: byte offset of the first segment in its row (may be < 0)
    seg_beats: unsigned(8)      #: beats of one segment (one raw row's share of a pixel)
    seg_rows: unsigned(4)       #: raw rows (segments) of one stored row (pixel)
    pix: unsigned(12)           #: stored pixels of one stored row
    pix_beats: unsigned(10)     #: buffer beats from one stored pixel to the next
    # strided mode (``chunk_beats != 0``, e.g. the 1x1 stride-2 projections): the ``beats`` come
    # from DMA reads of ``chunk_beats`` beats, ``chunks`` of them a row ``chunk_stride`` bytes
    # apart, rows ``row_stride`` bytes apart from ``addr``; written like a plain load (bits 151..214)
    chunk_beats: unsigned(12)   #: beats of one read (0: one read of ``beats`` from ``addr``)
    chunks: unsigned(12)        #: reads of one row
    chunk_stride: unsigned(16)  #: bytes from one read of a row to the next
    row_stride: unsigned(24)    #: bytes from one row's first read to the next row's
    # activation integrity (bits 215..246; docs/reliability.md section 3.1)
    chk_off: unsigned(CHK_OFF_BITS)   #: first check entry of the rows read, in beats from WR_BASE
    chk_beats: unsigned(16)     #: check entries to read after the data (0: rows not checked)


class LoadWeights(data.Struct):
    addr: unsigned(32)          #: byte address of the first package
    beats: unsigned(24)         #: total beats of the package stream (<= dma.MAX_COMMAND_BEATS)
    seq_base: unsigned(16)      #: sequence number of the first package of the stream


#: Mtiles of one depthwise COMPUTE (the width of ``Compute.dw``).
DW_MAX_MTILES = 32

class Compute(data.Struct):
    n_mtiles: unsigned(12)      #: output-channel tiles computed on this pixel tile
    kh: unsigned(4)             #: kernel rows (1..15)
    kw: unsigned(4)             #: kernel columns (1..15)
    groups: unsigned(10)        #: input-channel groups of tn (C_mem / tn)
    stride_y: unsigned(3)
    stride_x: unsigned(3)
    out_h: unsigned(12)         #: output rows of this tile
    out_w: unsigned(12)         #: output columns
    in_rows: unsigned(12)       #: input rows held in the activation-buffer half
    in_w: unsigned(12)          #: input columns
    ty0: signed(13)             #: tile input row of (output row 0, kernel row 0); may be < 0
    tx0: signed(13)             #: input column of (output column 0, kernel column 0) = -pad_left
    pool: PoolMode              #: NONE: conv on the PE array; MAX / SUM: pooling unit
    # appended (session 6, #16): the input is stored offset-binary (``x + 2**(act_bits-1)``)
    pad_ob: unsigned(1)         #: padding positions read ``2**(act_bits-1)`` (the stored zero
                                #: of an offset-binary input) instead of 0
    # depthwise windowing (session 6 #16; docs/architecture.md, *Depthwise convolutions*):
    # 0: every mtile iterates all ``groups``. Bit 0 set: mtile ``t`` iterates only the
    # ``lanes_pad / tn`` groups of its window ``[cg_base, cg_base + lanes_pad / tn)`` (groups at
    # or above ``groups`` give zero beats); ``cg_base`` is 0 for mtile 0 and advances by
    # ``lanes_pad / tn`` at mtile ``t >= 1`` when bit ``t`` is set (clear: mtile ``t`` repeats
    # mtile ``t - 1``'s window). At most DW_MAX_MTILES mtiles.
    dw: unsigned(DW_MAX_MTILES)
    # session 8 (#15 batching, in place of session 7's gap-row mask): B images stacked in one
    # tensor, image ``b``'s input rows at ``[b * img_period, b * img_period + img_rows)``
    # (docs/architecture.md, *Batching*). Conv path only (pooling ignores them); ``img_rows`` 0:
    # not stacked. An output row whose anchor input row ``a = stride_y * o`` (stacked rows) has
    # phase ``phi = a mod img_period`` reads, at kernel row ``kr``, padding (0, or the stored
    # zero with ``pad_ob``) where ``v = phi - img_pad + kr`` is ``< 0`` or ``>= img_rows``: a
    # row of another image (or a gap row) is the image's padding. ``phi`` of the tile's output
    # row 0 is ``img_phase`` and moves on by ``stride_y`` per output row, wrapping at
    # ``img_period`` (``img_phase < img_period``, ``stride_y <= img_period``, ``img_rows <=
    # img_period``, else INSTR_FIELD).
    img_rows: unsigned(12)      #: H_I, input rows of one image (0: not stacked)
    img_period: unsigned(12)    #: P_I, stacked input rows from one image to the next
    img_phase: unsigned(12)     #: phi of the tile's output row 0
    img_pad: unsigned(4)        #: top padding of the conv (pt)
    # appended (session 7, #15; docs/architecture.md, *Shared loads*): 0 (every program before
    # it): the COMPUTE releases its activation-buffer half when it completes. 1: it keeps the
    # half, and the next COMPUTE reads the same LOAD_ROWS (two convs reading the same input
    # rows: one load for both); the loader's ``n - 2`` dependency counts releases
    keep: unsigned(1)


class Store(data.Struct):
    n_mtiles: unsigned(12)
    pixels: unsigned(16)        #: output pixels of this tile (out_h * out_w)
    out_addr: unsigned(32)      #: byte address of pixel 0, channel position 0
    out_stride: unsigned(16)    #: bytes between consecutive pixels (C_mem of the output)
    params_addr: unsigned(32)   #: LaneParams of mtile 0; mtile t at
                                #: + t * params_block_bytes(lanes_pad) (CRC trailer)
    res_addr: unsigned(32)      #: residual tensor, pixel 0 of this tile
    res_beats: unsigned(12)     #: beats per residual pixel (C_mem of the residual / beat bytes)
    res_en: unsigned(1)
    res_signed: unsigned(1)
    relu: unsigned(1)
    pool: unsigned(1)           #: results come from the pooling unit (COMPUTE with ``pool``)
    # bits 156..188 (appended, session 4 #16/#20): the fused pointwise lookup table
    lut_en: unsigned(1)         #: map every output through the table at ``lut_addr``
    lut_addr: unsigned(32)      #: :func:`pack_lut_block`: ``2**act_bits`` bytes, CRC trailer;
                                #: loaded (and checked) before the first mtile
    # activation integrity (bits 189..249; docs/reliability.md section 3.1)
    chk_off: unsigned(CHK_OFF_BITS)   #: check entry of the first output row, beats from WR_BASE
    chk_row_pixels: unsigned(12)  #: pixels of this STORE per output row (0: no check entries)
    chk_stride: unsigned(5)     #: beats between the check entries of consecutive rows
    res_chk_off: unsigned(CHK_OFF_BITS)   #: check entries of the residual rows, beats from
                                #: WR_BASE (read after the residual rows of every mtile)
    res_chk_beats: unsigned(12)   #: residual check entries (0: the residual is not checked)
    # appended (session 6, #16)
    res_offset: unsigned(1)     #: with ``res_signed``: the residual is stored offset-binary,
                                #: byte ``u`` is ``u - 2**(act_bits-1)`` (the MSB inverted)
    # appended (session 8, #15): vertical max pooling of the output rows (3 rows, stride 2,
    # padding 1) in the store unit's row array (HWConfig.vpool_entries), hdl/store.py
    vpool: unsigned(1)          #: pool the post-processed rows vertically; only pooled rows
                                #: are written (pixels, check entries)
    vp_y0: unsigned(12)         #: image row of the tile's first row (0: the array starts over;
                                #: else it holds the previous STORE's rows)
    vp_h: unsigned(12)          #: rows of the image (its last row closes a window)
    vp_cols: unsigned(12)       #: pixels per row of the tile (entries: mtiles x cols x groups)
    vp_pixels: unsigned(16)     #: pixels written (pooled rows x cols), per mtile


FIELD_LAYOUTS = {
    Opcode.LOAD_ROWS: LoadRows, Opcode.LOAD_WEIGHTS: LoadWeights, Opcode.COMPUTE: Compute,
    Opcode.STORE: Store,
}

#: Bits of the check word at the top of every instruction.
CHECK_BITS = 32
_BODY_BITS = INSTR_BITS - 4 - CHECK_BITS
for _op, _layout in FIELD_LAYOUTS.items():
    assert data.Layout.cast(_layout).size <= _BODY_BITS, _op


class Instruction(data.Struct):
    opcode: Opcode
    body: unsigned(_BODY_BITS)
    check: unsigned(CHECK_BITS)     #: see :func:`seal`


class LaneParams(data.Struct):
    """Per-lane post-processing parameters, 128 bits (16 bytes) per lane, in lane order.

    A STORE reads ``lanes_pad`` of them per mtile (``lanes_pad`` = lanes rounded up to the
    post-processing group). Unused lanes hold ``mult = 0, shift = 1`` (output 0).
    """

    bias: signed(32)
    mult: unsigned(24)
    res_mult: unsigned(24)
    shift: unsigned(8)
    res_pos: unsigned(16)       #: byte position of this lane's channel in the residual pixel
    no_lut: unsigned(1)         #: bypass a STORE's lookup table (pad lanes stay 0)
    #: first beat of the residual pixel the store unit keeps (its row buffer holds
    #: ``max_channels`` bytes of a pixel: beats ``[res_win, res_win + max_channels / beat)``);
    #: every lane of an mtile carries the same value and every lane's ``res_pos`` lies in the
    #: window (a residual above ``max_channels`` is read whole, kept a window per mtile)
    res_win: unsigned(12)
    reserved: unsigned(11)


assert data.Layout.cast(LaneParams).size == 128


def _layout_fields(layout) -> dict:
    return dict(data.Layout.cast(layout))


def _pack(layout, values: dict) -> int:
    """Pack a dict of field values into an integer following an Amaranth struct layout."""
    fields = _layout_fields(layout)
    unknown = set(values) - set(fields)
    if unknown:
        raise IlmpqValueError(f"{layout.__name__} has no field(s) {sorted(unknown)}; its fields "
                              f"are {', '.join(fields)}")
    word = 0
    for name, f in fields.items():
        try:
            v = operator.index(values.get(name, 0))
        except TypeError:
            raise IlmpqValueError(f"{layout.__name__}.{name} = {values[name]!r} is not an "
                                  f"integer") from None
        shape = f.shape if not hasattr(f.shape, "as_shape") else f.shape.as_shape()
        width = shape.width
        if shape.signed:
            lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        else:
            lo, hi = 0, (1 << width) - 1
        if not lo <= v <= hi:
            raise IlmpqValueError(f"{layout.__name__}.{name} = {v} does not fit {shape} "
                                  f"(allowed [{lo}, {hi}])")
        word |= (v & ((1 << width) - 1)) << f.offset
    return word


def _unpack(layout, word: int) -> dict:
    out = {}
    for name, f in _layout_fields(layout).items():
        shape = f.shape if not hasattr(f.shape, "as_shape") else f.shape.as_shape()
        v = (word >> f.offset) & ((1 << shape.width) - 1)
        if shape.signed and v >> (shape.width - 1):
            v -= 1 << shape.width
        out[name] = v
    return out


def encode(opcode: Opcode, **fields) -> bytes:
    """Encode one instruction as 48 little-endian bytes.

    Raises :class:`~ilmpq.golden.errors.IlmpqValueError` (a ``ValueError``) for an unknown
    opcode, an unknown field, a non-integer value or a value that does not fit its field.
    """
    try:
        opcode = Opcode(opcode)
    except ValueError:
        raise IlmpqValueError(f"unknown opcode {opcode!r}; opcodes are "
                              f"{', '.join(f'{o.name} ({o.value})' for o in Opcode)}") from None
    if opcode not in FIELD_LAYOUTS and fields:
        raise IlmpqValueError(f"{opcode.name} takes no fields, got {sorted(fields)}")
    body = _pack(FIELD_LAYOUTS[opcode], fields) if opcode in FIELD_LAYOUTS else 0
    word = _pack(Instruction, {"opcode": opcode.value, "body": body})
    return word.to_bytes(INSTR_BITS // 8, "little")


def check_word(raw: bytes, index: int, prog_addr: int, prog_tag: int = 0) -> int:
    """The check word of instruction ``raw`` (48 bytes; its own check field is ignored) at
    ``index`` in the program at ``prog_addr`` with tag ``prog_tag``: CRC-32 of the 44 bytes below
    the check field followed by ``index ^ prog_addr ^ prog_tag`` as 4 little-endian bytes."""
    if len(raw) != INSTR_BITS // 8:
        raise IlmpqValueError(f"an instruction is {INSTR_BITS // 8} bytes, not {len(raw)}")
    n = (INSTR_BITS - CHECK_BITS) // 8
    tag = ((index ^ prog_addr ^ prog_tag) & 0xFFFF_FFFF).to_bytes(4, "little")
    return zlib.crc32(bytes(raw[:n]) + tag)


def seal(raw: bytes, index: int, prog_addr: int, prog_tag: int = 0) -> bytes:
    """``raw`` with its check field set for ``index`` in the program at ``prog_addr`` with tag
    ``prog_tag``."""
    n = (INSTR_BITS - CHECK_BITS) // 8
    return bytes(raw[:n]) + check_word(raw, index, prog_addr, prog_tag).to_bytes(4, "little")


def is_sealed(raw: bytes, index: int, prog_addr: int, prog_tag: int = 0) -> bool:
    """Whether instruction ``raw`` carries the right check word for its place."""
    n = (INSTR_BITS - CHECK_BITS) // 8
    return int.from_bytes(raw[n:], "little") == check_word(raw, index, prog_addr, prog_tag)


def decode(raw: bytes) -> tuple[Opcode, dict]:
    """Decode 48 bytes into ``(opcode, fields)``.

    Raises :class:`~ilmpq.golden.errors.IlmpqValueError` (a ``ValueError``) for an unknown
    opcode or a length other than ``INSTR_BITS // 8`` bytes.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) != INSTR_BITS // 8:
        got = f"{len(raw)} bytes" if isinstance(raw, (bytes, bytearray, memoryview)) else \
            type(raw).__name__
        raise IlmpqValueError(f"an instruction is {INSTR_BITS // 8} bytes, not {got}")
    word = int.from_bytes(raw, "little")
    top = _unpack(Instruction, word)
    try:
        op = Opcode(top["opcode"])
    except ValueError:
        raise IlmpqValueError(f"unknown opcode {top['opcode']}; opcodes are "
                              f"{', '.join(f'{o.name} ({o.value})' for o in Opcode)}") from None
    return op, (_unpack(FIELD_LAYOUTS[op], top["body"]) if op in FIELD_LAYOUTS else {})


def pack_lane_params(bias, mult, res_mult, shift, res_pos, no_lut=None, res_win=0) -> bytes:
    """Encode arrays of per-lane parameters as ``16 * n`` bytes of :class:`LaneParams`
    (``no_lut``: per-lane table bypass, default all 0; ``res_win``: the residual window's
    first beat, one value for all lanes, default 0)."""
    out = bytearray()
    if no_lut is None:
        no_lut = [0] * len(bias)
    for b, m, mr, s, rp, nl in zip(bias, mult, res_mult, shift, res_pos, no_lut):
        out += _pack(LaneParams, {"bias": b, "mult": m, "res_mult": mr, "shift": s,
                                  "res_pos": rp, "no_lut": nl,
                                  "res_win": res_win}).to_bytes(16, "little")
    return bytes(out)


#: Bytes of the CRC trailer after each mtile's lane parameters (one LaneParams slot, so blocks
#: stay 16-byte aligned): the CRC-32 of the block's ``lanes_pad * 16`` bytes, little-endian, in
#: bytes 0..3, zeros after.
PARAMS_TRAILER_BYTES = 16


def params_block_bytes(lanes_pad: int) -> int:
    """Bytes of one mtile's lane-parameter block with its trailer (the STORE's stride)."""
    return lanes_pad * 16 + PARAMS_TRAILER_BYTES


def pack_params_block(params: bytes) -> bytes:
    """One mtile's packed lane parameters followed by their CRC trailer."""
    return bytes(params) + zlib.crc32(params).to_bytes(4, "little") + \
        bytes(PARAMS_TRAILER_BYTES - 4)


#: Bytes of the CRC trailer after a lookup table (as for the lane parameters).
LUT_TRAILER_BYTES = 16


def lut_block_bytes(act_bits: int) -> int:
    """Bytes of a STORE's lookup table with its trailer: one output byte per input level
    (``2**act_bits``), then :data:`LUT_TRAILER_BYTES`."""
    return (1 << act_bits) + LUT_TRAILER_BYTES


def pack_lut_block(table, act_bits: int) -> bytes:
    """A lookup table as a STORE reads it: entry ``k`` (the output byte for the clamped value
    whose index is ``k``: the value itself when unsigned, ``value + 2**(act_bits-1)`` when
    signed) at byte ``k``, then the CRC-32 of the ``2**act_bits`` bytes (little-endian, bytes
    0..3 of the trailer, zeros after). Entries are the stored bytes: a signed output is its two's
    complement byte."""
    n = 1 << act_bits
    t = bytes(int(v) & 0xFF for v in table)
    if len(t) != n:
        raise IlmpqValueError(f"a lookup table for {act_bits}-bit activations has {n} entries, "
                              f"not {len(t)}")
    return t + zlib.crc32(t).to_bytes(4, "little") + bytes(LUT_TRAILER_BYTES - 4)


# ---- integrity of activations (docs/reliability.md section 3.1) --------------------------------
#
# Every beat of an activation tensor a STORE writes is hashed with its byte address:
# ``H(addr, beat) = CRC-32 (CRC32_ISO_HDLC, zlib's) of addr (4 bytes, little-endian) followed by
# the beat's bytes``, and the hashes of one output row are summed modulo 2**32 into one *check
# entry* (one beat: the sum in bytes 0..3, zeros after) in the side area at the start of the
# activation arena. A row written by several STOREs (the phases of a direct stem) has one entry
# per STORE, ``chk_stride`` beats apart. A LOAD_ROWS sums the hashes of the beats it reads and
# compares the sum with the sum of the entries of the rows it read (``chk_off``, ``chk_beats``):
# the sum is order-independent, so the row-by-row read and the mtile-by-mtile write agree.


def _crc_tables(nbytes: int):
    """Byte tables of the affine map ``m -> crc32(m)`` on ``nbytes``-byte messages:
    ``crc32(m) = c0 ^ XOR_k T[k][m[k]]``."""
    z = bytes(nbytes)
    c0 = zlib.crc32(z)
    t = np.zeros((nbytes, 256), np.uint32)
    for k in range(nbytes):
        for b in range(256):
            m = bytearray(z)
            m[k] = b
            t[k, b] = zlib.crc32(bytes(m)) ^ c0
    return np.uint32(c0), t


_TABLES: dict = {}


def act_check(addrs, beats) -> np.ndarray:
    """``H(addr, beat)`` of each beat: ``addrs`` (n,) byte addresses, ``beats`` (n, bb) bytes;
    returns (n,) uint32 (vectorised ``zlib.crc32(addr.to_bytes(4, "little") + beat)``)."""
    beats = np.asarray(beats, np.uint8)
    n, bb = beats.shape
    if bb not in _TABLES:
        _TABLES[bb] = _crc_tables(4 + bb)
    c0, t = _TABLES[bb]
    a = np.asarray(addrs, np.uint64).astype(np.uint32)
    h = np.full(n, c0, np.uint32)
    for k in range(4):
        h ^= t[k][(a >> np.uint32(8 * k)) & np.uint32(0xFF)]
    for k in range(bb):
        h ^= t[4 + k][beats[:, k]]
    return h


def act_check_sum(addr: int, raw: bytes, beat_bytes: int) -> int:
    """Sum modulo 2**32 of ``H`` over the beats of ``raw`` stored from byte address ``addr``."""
    beats = np.frombuffer(bytes(raw), np.uint8).reshape(-1, beat_bytes)
    addrs = addr + beat_bytes * np.arange(beats.shape[0], dtype=np.uint64)
    return int(act_check(addrs, beats).astype(np.uint64).sum()) & 0xFFFF_FFFF


def act_check_entries(addr: int, raw: bytes, row_bytes: int, beat_bytes: int) -> bytes:
    """The check entries of ``raw`` stored at ``addr`` in rows of ``row_bytes`` bytes: per row
    one beat, the sum modulo 2**32 of :func:`act_check` over the row's beats (little-endian,
    zeros above) -- what the driver writes for the network input, as a STORE does for the
    tensors it writes."""
    beats = np.frombuffer(bytes(raw), np.uint8).reshape(-1, beat_bytes)
    h = act_check(addr + beat_bytes * np.arange(len(beats), dtype=np.uint64), beats)
    sums = h.astype(np.uint64).reshape(-1, row_bytes // beat_bytes).sum(axis=1) & 0xFFFF_FFFF
    out = np.zeros((len(sums), beat_bytes), np.uint8)
    out[:, :4] = sums.astype("<u4").view(np.uint8).reshape(-1, 4)
    return out.tobytes()


def pixel_tiles(instrs) -> list[int]:
    """The pixel tile of each instruction of a decoded program (``instrs``: ``(opcode, fields)``
    in program order), -1 before the first: a tile starts at its LOAD_ROWS or, after a COMPUTE
    that kept its half (``Compute.keep``: the next COMPUTE reads the same load), at the first
    LOAD_WEIGHTS or COMPUTE after that COMPUTE's STORE. A tile as the compiler emits it holds
    one COMPUTE and one STORE, and the LOAD_WEIGHTS of its COMPUTE."""
    out, t, kept, pending = [], -1, False, False
    for op, f in instrs:
        if op == Opcode.LOAD_ROWS or (pending and op in (Opcode.LOAD_WEIGHTS, Opcode.COMPUTE)):
            t += 1
            pending = False
        out.append(t)
        if op == Opcode.COMPUTE:
            kept = bool(f.get("keep", 0))
        elif op == Opcode.STORE:
            pending, kept = kept, False
    return out
