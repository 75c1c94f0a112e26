"""The compiler: an ILMPQ model (golden format) + a hardware configuration -> programs, a memory
image and a report.

What it decides (docs/architecture.md sections 2-4):

* **Placement.** Every tensor gets a DRAM region, HWC with ``C_mem`` channel positions (a
  multiple of ``tn`` and of the AXI beat) and a permutation ``perm[pos] = natural channel`` (-1
  for padding). A conv/FC output is in its lane order: position ``t * lanes_pad + i`` holds mtile
  ``t``'s lane ``i``. Flatten is free: the FC's weights are permuted to read the HWC layout.
* **Row-to-lane assignment.** LO rows fill the ``lanes_lo`` low lanes and HI rows the
  ``lanes_hi`` high lanes of consecutive mtiles, in row order.
* **Weights.** For every mtile and every ``(kr, kc, cg)`` step a weight set; sets are cut into
  weight packages (at most one bank each), sequence-numbered per layer.
* **Tiling.** Output-pixel tiles of whole output rows, at most ``acc_depth`` pixels, whose input
  rows fit one activation-buffer half.
* **Program.** Per pixel tile: LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, STORE (isa.py explains the
  implicit dependencies); pooling tiles have no LOAD_WEIGHTS. END closes a segment. A network
  the accelerator runs entirely (convolutions, FC, max pooling, global average pooling) is one
  segment: one program per frame. Layers it cannot run become CPU steps between segments; the
  report says which and why.
* **Pooling.** Max pooling and global average pooling run on the pooling unit (hdl/pool.py):
  a max passes the post-processing unchanged (``M = 2, S = 1``); an average is a window sum
  requantized with a bias ``b`` and ``(M, S)`` the compiler chooses so that
  ``((sum + b)*M + 2**(S-1)) >> S`` equals golden's ``floor((sum + N//2) / N)`` for every
  possible sum (checked exhaustively, :func:`average_mult_shift`).

* **Lookup tables.** A LutLayer whose input is the output of an accelerated conv/FC and read by
  it alone is fused into that conv's STORE (:func:`_lut_fusion`): the post-processing unit maps
  the clamped values through the table (``pack_lut_block``, CRC-checked before use); the conv's
  own output is never stored and the report names the layer ``conv+lut``.
* **Offset-binary.** A signed tensor whose readers can all read it so (convs, padded or not,
  as input or residual; pooling; host layers) is stored as ``x + 2**(bits-1)``
  (:func:`_offset_tensors`; through the table, an identity table ``conv+ob``, a pooling
  layer's offset-binary input, or the host's ``to_memory``); its conv readers run on the PE
  array with ``-2**(bits-1) * sum(w)`` folded into their bias and padding read as the stored
  zero (COMPUTE ``pad_ob``), a residual read decodes it (STORE ``res_offset``).
* **Large tensors.** A residual above ``max_channels`` is read whole per pixel and each mtile
  keeps a window of it (:func:`_residual_windows`); pooling whose rows do not fit half of the
  activation buffer runs in channel groups (:func:`_pool_split`); an FC after a Flatten above
  1023 groups of ``tn`` runs as the HxW conv it is (:func:`_fc_as_conv`); weights above one
  LOAD_WEIGHTS stream go in several (:func:`_weight_streams`).
* **Placement.** A channel shuffle and a channel slice are free views of the stored bytes; a
  concat is one tensor: each conv read by it alone with identity requantization stores into
  its channel range, any other input is copied into its range by a 1x1 identity conv with the
  concat's requantization (:func:`_concat_plan`, :func:`_placement_view`).
* **Host fallback.** A valid layer the accelerator cannot run (a conv reading a signed tensor
  stored two's complement, grouped and depthwise convolutions, a residual an mtile cannot read
  in one window, an FC input above the channel-position limit that is no flattened HxW tensor,
  lookup tables that cannot be fused, gating products, a concat with an input the PE array
  cannot copy, a slice over rows or columns) becomes a :class:`CpuStep` running golden's
  integer op on the stored tensors (:func:`_host_reason`); the report names it and why.

Layers that could overflow the accumulator or do not fit the configuration otherwise are
rejected with a :class:`CompileError` naming the layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..golden.errors import IlmpqValueError
from ..golden.formats import Precision
from ..golden.model import (
    AvgPoolLayer, ConcatLayer, ConvLayer, FlattenLayer, GlobalAvgPoolLayer, LutLayer,
    MaxPoolLayer, MulLayer, PermuteLayer, QModel, SliceLayer, TensorSpec, layer_inputs,
)
from ..golden.ops import avg_pool_divisors, max_pool
from ..golden.ops import AccumulatorOverflow, check_no_overflow
from ..hdl.config import HWConfig
from ..hdl.dma import MAX_COMMAND_BEATS
from ..hdl.isa import (CHK_OFF_BITS, DW_MAX_MTILES, INSTR_BITS, Opcode, PoolMode,
                       act_check_entries, decode, encode, pack_lane_params, pack_lut_block,
                       pack_params_block, params_block_bytes, pixel_tiles, seal)
from . import wpkg

__all__ = ["CompileError", "TensorPlacement", "AccelStep", "CpuStep", "FrameSlot",
           "LayerReport", "Compiled", "compile_model", "DEFAULT_BASE", "disassemble",
           "save_compiled", "average_mult_shift", "space_to_depth", "space_to_depth_conv"]

DEFAULT_BASE = 0x1000_0000
_ALIGN = 64


class CompileError(IlmpqValueError):
    """A model cannot be compiled for a configuration; the message names the layer."""


@dataclass
class TensorPlacement:
    """Where and how a tensor lives in DRAM.

    ``perm[pos]`` is the natural channel at channel position ``pos`` (-1: padding, always 0).
    The bytes at ``addr`` are ``(h, w, c_mem)`` in C order; signed tensors as two's complement.
    """

    name: str
    addr: int
    channels: int
    c_mem: int
    h: int
    w: int
    perm: np.ndarray
    signed: bool
    bits: int
    #: ``(kw, stride_x, pad_left, in_w)`` when the host stores this (input) tensor with its
    #: kernel columns folded into channels (see :func:`fold_columns`); ``w`` is then the output
    #: width of the consuming convolution and ``channels`` is ``kw * C``.
    fold: tuple | None = None
    #: Space-to-depth factor applied before the fold (:func:`space_to_depth`; 1: none).
    s2d: int = 1
    #: The natural ``(C, H, W)`` shape of a transformed (folded) tensor.
    natural: tuple | None = None
    #: Offset-binary storage of a signed tensor: byte = value + ``offset`` (``2**(bits-1)``),
    #: an unsigned byte the PE array can read (:func:`_offset_tensors`); 0: as ``signed`` says.
    offset: int = 0
    #: A stored layout that gathering LOAD_ROWS build from the raw image rows at ``addr``
    #: (:func:`_gather_plan`): their ``hdl/isa.py`` ``LoadRows`` gather fields.
    gather: dict | None = None
    #: A view of another tensor's pixels ``(sy*r, sx*c)`` that strided LOAD_ROWS read
    #: (:func:`_strided_view`): their ``hdl/isa.py`` ``LoadRows`` strided fields.
    strided: dict | None = None
    _index: np.ndarray | None = field(default=None, repr=False, compare=False)

    def _gather(self) -> np.ndarray:
        """``(h, w, c_mem)`` flat indices into the natural tensor (-1: a zero byte) of a
        transformed placement: the same transforms applied to an index image."""
        if self._index is None:
            c, h, w = self.natural
            ids = np.arange(1, c * h * w + 1, dtype=np.int64).reshape(c, h, w)
            if self.s2d > 1:
                ids = space_to_depth(ids, self.s2d)
            kw, sx, pl, _ = self.fold
            ids = np.transpose(fold_columns(ids, kw, sx, pl, self.w), (1, 2, 0))
            out = np.zeros((self.h, self.w, self.c_mem), np.int64)
            valid = self.perm >= 0
            out[:, :, valid] = ids[:, :, self.perm[valid]]
            self._index = out - 1
        return self._index

    @property
    def nbytes(self) -> int:
        return self.h * self.w * self.c_mem

    def to_memory(self, x: np.ndarray) -> bytes:
        """Lay out a natural ``(C, H, W)`` integer tensor in this placement (the host's share
        of a frame for the network input: byte arithmetic only, the column fold as a strided
        window view)."""
        dt = np.int8 if self.signed and not self.offset else np.uint8
        x = (np.asarray(x) + self.offset).astype(dt)
        c, h, w = x.shape
        hwc = np.transpose(x, (1, 2, 0))
        if self.s2d > 1:
            idx = self._gather()
            flat = np.concatenate([np.zeros(1, dt), x.reshape(-1)])
            return flat[idx + 1].tobytes()
        if self.fold is not None:
            kw, sx, pl, _ = self.fold
            width = max(w + pl, (self.w - 1) * sx + kw)
            padded = np.zeros((h, width, c), dt)
            padded[:, pl:pl + w] = hwc
            win = np.lib.stride_tricks.sliding_window_view(padded, kw, axis=1)
            # (h, out_w, c, kw) -> channel kc*C + c, as fold_columns
            hwc = win[:, 0:(self.w - 1) * sx + 1:sx].transpose(0, 1, 3, 2).reshape(
                h, self.w, kw * c)
        out = np.zeros((h, self.w, self.c_mem), dt)
        valid = self.perm >= 0
        out[:, :, valid] = hwc[:, :, self.perm[valid]]
        return out.tobytes()

    def from_memory(self, raw: bytes) -> np.ndarray:
        """Read this placement's bytes back into a natural ``(C, H, W)`` int64 tensor."""
        arr = np.frombuffer(raw, np.int8 if self.signed and not self.offset else np.uint8)
        arr = arr.reshape(self.h, self.w, self.c_mem).astype(np.int64) - self.offset
        if self.s2d > 1:
            idx = self._gather()
            nat = np.zeros(int(np.prod(self.natural)), np.int64)
            ok = idx >= 0
            nat[idx[ok]] = arr[ok]
            return nat.reshape(self.natural)
        out = np.zeros((self.channels, self.h, self.w), np.int64)
        valid = self.perm >= 0
        out[self.perm[valid]] = np.transpose(arr[:, :, valid], (2, 0, 1))
        if self.fold is not None:
            kw, sx, pl, in_w = self.fold
            c = self.channels // kw
            nat = np.zeros((c, self.h, in_w), np.int64)
            for kc in range(kw):
                for ox in range(self.w):
                    xi = ox * sx + kc - pl
                    if 0 <= xi < in_w:
                        nat[:, :, xi] = out[kc * c:(kc + 1) * c, :, ox]
            return nat
        return out


def space_to_depth(x: np.ndarray, s: int) -> np.ndarray:
    """``(C, H, W) -> (s*s*C, ceil(H/s), ceil(W/s))``: ``y[(dy*s + dx)*C + c, Y, X] =
    x[c, s*Y + dy, s*X + dx]`` (0 past the edge). A stride-``s`` convolution on ``x`` is a
    stride-1 convolution on ``y`` (:func:`space_to_depth_conv`)."""
    c, h, w = x.shape
    hh, ww = -(-h // s), -(-w // s)
    xp = np.zeros((c, hh * s, ww * s), x.dtype)
    xp[:, :h, :w] = x
    return xp.reshape(c, hh, s, ww, s).transpose(2, 4, 0, 1, 3).reshape(s * s * c, hh, ww)


def space_to_depth_conv(layer: ConvLayer, in_shape: tuple, out_hw: tuple, s: int) -> ConvLayer:
    """The stride-1 convolution on :func:`space_to_depth` of the input that equals ``layer``
    (stride ``s`` on both axes): ``w'[m, (dy*s + dx)*C + c, ky, kx] = w[m, c, s*(ky + ky0) + dy
    + pt, s*(kx + kx0) + dx + pl]`` (0 outside the kernel), ``ky0 = floor(-pt / s)``, padding
    ``-ky0`` on top. The same products are summed: the accumulators are identical."""
    m, c, kh, kw = layer.weight.shape
    pt, pl, _, _ = layer.padding
    c_, h, w = in_shape
    oh, ow = out_hw
    ky0 = (-pt) // s
    kx0 = (-pl) // s
    kh2 = (kh - 1 - pt) // s - ky0 + 1
    kw2 = (kw - 1 - pl) // s - kx0 + 1
    wt = np.zeros((m, s * s * c, kh2, kw2), np.asarray(layer.weight).dtype)
    for dy in range(s):
        for dx in range(s):
            for ky in range(kh2):
                kr = s * (ky + ky0) + dy + pt
                if not 0 <= kr < kh:
                    continue
                for kx in range(kw2):
                    kc = s * (kx + kx0) + dx + pl
                    if 0 <= kc < kw:
                        wt[:, (dy * s + dx) * c:(dy * s + dx + 1) * c, ky, kx] = \
                            np.asarray(layer.weight)[:, :, kr, kc]
    hh, ww = -(-h // s), -(-w // s)
    pb = max(0, oh + kh2 - 1 - hh + ky0)
    pr = max(0, ow + kw2 - 1 - ww + kx0)
    return dataclasses.replace(layer, weight=wt, stride=(1, 1), padding=(-ky0, -kx0, pb, pr))


def fold_columns(x: np.ndarray, kw: int, sx: int, pl: int, out_w: int) -> np.ndarray:
    """Fold the kernel columns of a convolution's input into channels.

    ``y[kc*C + c, r, ox] = x[c, r, ox*sx + kc - pl]`` (0 outside the image): a ``kh x kw``
    convolution with stride ``(sy, sx)`` and left padding ``pl`` on ``x`` equals a ``kh x 1``
    convolution with stride ``(sy, 1)`` and no column padding on ``y``, with weights
    ``w'[m, kc*C + c, kr, 0] = w[m, c, kr, kc]``. For a network input with few channels (3 RGB,
    1 gray) this fills the ``tn`` input lanes that would otherwise be padding; the host applies
    it when it writes the input.
    """
    c, h, w = x.shape
    y = np.zeros((kw * c, h, out_w), np.int64)
    for kc in range(kw):
        xi = np.arange(out_w) * sx + kc - pl
        ok = (xi >= 0) & (xi < w)
        y[kc * c:(kc + 1) * c, :, ok] = x[:, :, xi[ok]]
    return y


@dataclass
class AccelStep:
    """A segment of consecutive accelerator layers: one program."""

    layers: list[str]
    prog_addr: int
    n_instr: int
    #: PROG_TAG of the program (see :func:`_prog_tag`)
    prog_tag: int = 0
    #: The layer of each pixel tile in program order when two layers' tiles interleave (convs
    #: sharing their loads, :func:`_compile_pair`); None: each layer's tiles in turn.
    tile_layers: list[str] | None = None


@dataclass
class FrameSlot:
    """One frame slot of a network that runs as one program per frame: its own input and
    output tensors and a copy of the program that reads and writes them. Frames in different
    slots can overlap on the host side: while the accelerator runs slot ``k``, the host writes
    the next image into slot ``k + 1`` and reads the previous logits from slot ``k - 1``."""

    input_addr: int
    output_addr: int
    prog_addr: int
    n_instr: int
    prog_tag: int = 0       #: PROG_TAG of this slot's program
    #: Address of the check entries of this slot's input (one beat a row, written by the
    #: driver with the image: :func:`ilmpq.hdl.isa.act_check_sum`); 0: the input is not checked.
    input_check: int = 0
    #: A batched program (``Compiled.batch = B > 1``): per image ``b`` of this slot
    #: ``(input_addr, input_check, output_addr)`` (image 0's are the fields above); empty with
    #: ``batch = 1``.
    images: list = field(default_factory=list)


@dataclass
class CpuStep:
    """A layer executed on the host CPU (golden's integer op on the stored layout)."""

    layer: str


@dataclass
class LayerReport:
    name: str
    kind: str
    where: str                     #: "accel", "cpu" or "free" (a view, or a table fused into
                                   #: its conv's STORE: kind ``lut:fused``, the conv's
                                   #: ``conv+lut``)
    out_shape: tuple
    macs: int = 0
    mtiles: int = 0
    ptiles: int = 0
    sets_per_mtile: int = 0
    weight_bytes: int = 0
    dma_read_bytes: int = 0
    dma_write_bytes: int = 0
    pe_beats: int = 0              #: beats the PE array consumes (cycles at full rate)
    pool_beats: int = 0            #: beats the pooling unit consumes (one per window position)
    cpu_reason: str = ""           #: why a layer runs on the host ("" when it does not)
    useful_macs_per_beat: float = 0.0


@dataclass
class Compiled:
    """The compiler's output: a memory image at ``base``, the steps to run, the placements."""

    config: HWConfig
    model: QModel
    base: int
    image: bytearray
    tensors: dict[str, TensorPlacement]
    steps: list
    layers: list[LayerReport]
    output: str
    input: str
    #: Frame slots (:class:`FrameSlot`) when the whole network is one program; slot 0 is the
    #: placement in :attr:`tensors` and the program of :attr:`steps`. Empty otherwise.
    slots: list = field(default_factory=list)
    #: The activation arena ``(base, limit)``: every tensor (and nothing else) lies in it; the
    #: driver programs it as WR_BASE / WR_LIMIT, so a STORE can never write over a program,
    #: weights or lane parameters (they lie before it, read-only for the accelerator).
    arena: tuple = (0, 0)
    #: Address of the check entries of the input tensor (slot 0; one beat per stored row of
    #: ``input_row_bytes`` bytes: the sum modulo 2**32 of ``isa.act_check`` over the row's
    #: beats), written by the driver with every image; 0: the input is not checked
    #: (docs/reliability.md section 3.1).
    input_check: int = 0
    input_row_bytes: int = 0
    #: The check entries of the tensors a host step writes (a layer run on the CPU) that an
    #: accelerated layer reads: ``name -> (address, row_bytes)``, the same shape as
    #: :attr:`input_check` / :attr:`input_row_bytes`; the host step writes them with the
    #: tensor (:meth:`host_writes`). A host tensor no accelerated layer reads has none.
    host_checks: dict = field(default_factory=dict)
    #: The 64-bit nonce of authenticated weight packages (``compile_model(mac=...)``), which
    #: the driver writes to MAC_NONCE with MAC_CTRL.enable; None: CRC-checked packages.
    mac_nonce: int | None = None
    #: Who lays the network input out for the first layers. The host writes the raw image (HWC
    #: bytes, exactly the image) with ``"direct"`` (the first conv reads those bytes,
    #: :func:`_direct_plan`), ``"layout"`` (a layout conv of the first program builds the stored
    #: layout, :func:`_layout_plan`) and ``"raw"`` (the raw bytes are the stored layout);
    #: ``"host"``: the host lays the image out
    #: (``TensorPlacement.to_memory``; :attr:`input_layout_why` says why).
    input_layout: str = "host"
    input_layout_why: str = ""
    #: ``"direct"`` through gathering loads (:func:`_gather_plan`): the loads build a dense
    #: space-to-depth / column-fold layout from the raw rows on chip.
    input_gather: bool = False
    #: Placements that are not tensors of the model (the stored input layout and its views).
    internal: dict = field(default_factory=dict)
    #: Images per run (``compile_model(batch=...)``); with ``batch > 1`` the program reads
    #: ``batch`` inputs and writes ``batch`` outputs: image ``b``'s placement of every model
    #: tensor is ``batch_tensors[b]`` (``batch_tensors[0]`` is :attr:`tensors`, with the
    #: stored rows ``<output>@vpool`` of a conv whose STOREs pool vertically, which a check of
    #: every layer compares), the check entries of its input at ``batch_input_checks[b]`` (0:
    #: not checked).
    batch: int = 1
    batch_tensors: list = field(default_factory=list)
    batch_input_checks: list = field(default_factory=list)
    #: The first layer run on the stacked images ("" when none is: every layer per image),
    #: or with ``batch = 1`` why none is.
    batch_from: str = ""

    @property
    def one_program(self) -> bool:
        """The whole network is one accelerator program (nothing runs on the host)."""
        return len(self.steps) == 1 and isinstance(self.steps[0], AccelStep)

    def host_writes(self, name: str, payload: bytes, slot: int = 0) -> list[tuple[int, bytes]]:
        """What the host writes to store ``payload`` (the stored layout of tensor ``name``, the
        network input or a host step's output) in frame slot ``slot``: ``[(address, bytes)]``,
        the tensor and then, when the accelerator checks its rows, their check entries (per
        row the sum modulo 2**32 of ``isa.act_check`` over its beats, at its own address)."""
        addr = self.tensor_addr(name, slot)
        out = [(addr, bytes(payload))]
        if name == self.input:
            chk = self.slots[slot].input_check if self.slots else self.input_check
            row_bytes = self.input_row_bytes
        else:
            chk, row_bytes = self.host_checks.get(name, (0, 0))
        if chk:
            out.append((chk, act_check_entries(addr, payload, row_bytes,
                                               self.config.beat_bytes)))
        return out

    def image_writes(self, b: int, payload: bytes, slot: int = 0) -> list[tuple[int, bytes]]:
        """What the host writes to give image ``b`` of a batched run (``0 <= b < batch``) its
        input (``payload``: the stored layout of the input) in frame slot ``slot``:
        ``[(address, bytes)]``, the tensor and its check entries when the accelerator checks
        them."""
        if not (isinstance(b, int) and 0 <= b < self.batch):
            raise IlmpqValueError(f"image {b!r} is not allowed: the program takes images "
                                  f"0 .. {self.batch - 1}")
        if b == 0 or self.batch == 1:
            return self.host_writes(self.input, payload, slot)
        if slot and self.slots:
            addr, chk, _ = self.slots[slot].images[b]
            out = [(addr, bytes(payload))]
            if chk:
                out.append((chk, act_check_entries(addr, payload, self.input_row_bytes,
                                                   self.config.beat_bytes)))
            return out
        t = self.batch_tensors[b][self.input]
        out = [(t.addr, bytes(payload))]
        if self.batch_input_checks[b]:
            out.append((self.batch_input_checks[b], act_check_entries(
                t.addr, payload, self.input_row_bytes, self.config.beat_bytes)))
        return out

    def image_output_addr(self, b: int, slot: int = 0) -> int:
        """Address of image ``b``'s output (a batched program; ``b = 0`` with ``batch = 1``)
        in frame slot ``slot``."""
        if slot and self.slots and self.batch > 1:
            return self.slots[slot].images[b][2]
        return self.batch_tensors[b][self.output].addr if self.batch > 1 else \
            self.tensor_addr(self.output, slot)

    @property
    def vpooled(self) -> dict:
        """``{conv output: its stored tensor}`` of the convs whose STOREs pool vertically
        (``conv+vpool``): the stored tensor (in :attr:`internal`) holds the conv's output
        max-pooled over rows, :func:`vpool_rows` of golden's tensor."""
        return {n[:-len("@vpool")]: n for n in self.internal if n.endswith("@vpool")
                and n[:-len("@vpool")] in self.model.tensors}

    def placement(self, name: str) -> TensorPlacement:
        """The placement of tensor ``name``: a model tensor, else an internal one (e.g. the
        stored pooled rows ``<output>@vpool``)."""
        return self.tensors[name] if name in self.tensors else self.internal[name]

    def tensor_addr(self, name: str, slot: int = 0) -> int:
        """Address of tensor ``name`` in frame slot ``slot`` (the input and the output have one
        copy per slot, the other tensors are shared)."""
        t = self.placement(name)
        if slot == 0 or not self.slots:
            return t.addr
        fs = self.slots[slot]
        if name == self.input:
            return fs.input_addr
        if name == self.output:
            return fs.output_addr
        return t.addr

    @property
    def unstored(self) -> set:
        """Model tensors that never reach memory: the outputs of convs whose lookup table is
        fused into their STORE (only the table's output is stored), and of convs whose STOREs
        pool vertically (``conv+vpool``: the rows pooled are stored, as ``<output>@vpool``)."""
        fused = {r.name for r in self.layers if r.kind == "lut:fused"}
        vpooled = {r.name for r in self.layers if r.kind.endswith("+vpool")}
        return {l.input for l in self.model.layers if l.name in fused} | {
            l.output for l in self.model.layers if l.name in vpooled}

    @property
    def size(self) -> int:
        return len(self.image)

    @property
    def window(self) -> tuple[int, int]:
        return self.base, self.base + len(self.image)

    def report(self) -> str:
        """A human-readable compile report (one line per layer, then totals)."""
        cfg = self.config
        lines = [f"compiled for {cfg.describe()}",
                 f"memory image: {self.size} bytes at 0x{self.base:08x}",
                 f"{'layer':<14}{'where':<7}{'out':>14}{'MACs':>12}{'mtiles':>7}{'ptiles':>7}"
                 f"{'sets':>6}{'PE beats':>10}{'util':>7}{'DMA rd':>10}{'DMA wr':>9}"]
        for r in self.layers:
            util = (r.macs / (r.pe_beats * cfg.macs_per_cycle)) if r.pe_beats else 0.0
            lines.append(
                f"{r.name:<14}{r.where:<7}{'x'.join(map(str, r.out_shape)):>14}{r.macs:>12}"
                f"{r.mtiles:>7}{r.ptiles:>7}{r.sets_per_mtile:>6}{r.pe_beats:>10}"
                f"{util:>7.1%}{r.dma_read_bytes:>10}{r.dma_write_bytes:>9}")
        macs = sum(r.macs for r in self.layers if r.where == "accel")
        beats = sum(r.pe_beats for r in self.layers)
        pbeats = sum(r.pool_beats for r in self.layers)
        lines.append(f"accelerator MACs {macs}, PE beats {beats}, pooling beats {pbeats}, "
                     f"ideal utilization "
                     f"{macs / max(1, (beats + pbeats) * cfg.macs_per_cycle):.1%}")
        lines.append({"direct": "input: the host writes the raw image (HWC bytes); the first "
                                 "conv reads it as it is (conv^: "
                                 + ("gathering loads build its folded rows on chip)"
                                    if self.input_gather else "in phases on its bytes)"),
                      "layout": "input: the host writes the raw image (HWC bytes); the "
                                "accelerator lays it out (layer "
                                f"{self.input}:layout)",
                      "raw": "input: the host writes the raw image (HWC bytes), the stored "
                             "layout as it is",
                      "host": "input: the host lays the image out "
                              f"({self.input_layout_why})"}[self.input_layout])
        fused = [r for r in self.layers if r.kind.endswith("+lut")]
        if fused:
            out_of = {l.output: l.name for l in self.model.layers}
            lut_of = {out_of[l.input]: l.name for l in self.model.layers
                      if l.input in self.unstored}
            lines.append("lookup tables fused into the conv's STORE: " + ", ".join(
                f"{r.name}+{lut_of[r.name]} ({r.kind})" for r in fused))
        vp = [r for r in self.layers if r.kind.endswith("+vpool")]
        if vp:
            # (per-image copies of a batched program: their layer names end in @b)
            pool_of = {}
            rd = _readers(self.model)
            for l in self.model.layers:
                if l.output in self.unstored and rd.get(l.output):
                    pool_of[l.name] = rd[l.output][0].name
            lines.append("max pooling fused into the conv's STORE (rows pooled in its STOREs, "
                         "the 1 x k rest on the pooling unit): " + ", ".join(
                             f"{r.name}+{pool_of.get(r.name.split('@')[0], '?')} ({r.kind})"
                             for r in vp))
        placed = [r.name for r in self.layers if r.kind.endswith(":placed")]
        if placed:
            lines.append("placement, no copies (a view of stored bytes; a concat's convs store "
                         "into their channel ranges of its tensor): " + ", ".join(
                             f"{r.name} ({r.kind.split(':')[0]})" for r in self.layers
                             if r.name in placed))
        copied = [r for r in self.layers if r.kind == "concat" and r.where == "accel"]
        if copied:
            lines.append("concats on the accelerator (their convs store into their ranges, the "
                         "other inputs copied in by 1x1 identity convs): " + ", ".join(
                             f"{r.name} ({r.ptiles} copy tiles)" for r in copied))
        ob = [n for n, t in self.tensors.items() if t.offset]
        if ob:
            lines.append("signed tensors stored offset-binary (x + 2**(bits-1)) for the "
                         "convs, residual reads and pooling reading them on the accelerator: "
                         + ", ".join(ob))
        n_prog = sum(1 for s in self.steps if isinstance(s, AccelStep))
        cpu = [r for r in self.layers if r.where == "cpu"]
        if cpu:
            lines.append(f"{n_prog} accelerator programs per frame; the host runs: "
                         + "; ".join(f"{r.name} ({r.cpu_reason})" if r.cpu_reason else r.name
                                     for r in cpu))
        else:
            lines.append(f"{n_prog} accelerator program per frame, nothing on the host")
        return "\n".join(lines)


def _fit_rows(name: str, rows: int, sy: int, kh: int, row_words: int, src,
              cfg: HWConfig) -> int:
    """The most output rows (at most ``rows``) of a pixel tile whose input rows, ``(r-1)*sy +
    kh`` of ``row_words`` words each, fit half of the activation buffer; an error naming the
    layer if not even one does."""
    half_words = cfg.act_depth // 2
    while rows > 0 and ((rows - 1) * sy + kh) * row_words > half_words:
        rows -= 1
    if rows == 0:
        raise CompileError(
            f"layer {name!r}: {kh} input rows of {src.w} x {src.c_mem} activations do not fit "
            f"half of the activation buffer ({half_words} words of tn = {cfg.tn})")
    return rows


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


class _Image:
    def __init__(self, base: int):
        self.base = base
        self.data = bytearray()

    def alloc(self, nbytes: int, payload: bytes | None = None, what: str = "") -> int:
        off = _roundup(len(self.data), _ALIGN)
        if self.base + off + nbytes > 1 << 32:
            raise CompileError(
                f"the memory image does not fit the 32-bit address space of the DMA: "
                f"{what or 'a region'} of {nbytes} bytes at {self.base + off:#x} would end past "
                f"4 GiB (the model is too large for the accelerator)")
        self.data.extend(b"\0" * (off - len(self.data)))
        addr = self.base + off
        if payload is not None:
            assert len(payload) <= nbytes
            self.data.extend(payload)
            self.data.extend(b"\0" * (nbytes - len(payload)))
        else:
            self.data.extend(b"\0" * nbytes)
        return addr

    def write(self, addr: int, payload: bytes):
        off = addr - self.base
        self.data[off:off + len(payload)] = payload


class _CheckTables:
    """The check entries of activation integrity (``hdl/isa.py`` ``act_check``,
    docs/reliability.md section 3.1), laid out by the compiler in a side area at the start of
    the arena: per checked tensor a table of ``h * k`` beats, entry ``(row, j)`` at beat
    ``off + row * k + j`` from WR_BASE, one per STORE ``j`` writing the row (``k > 1``: the
    phases of a direct stem). A tensor is checked when its STOREs write every byte of every
    row, each STORE whole rows (``chk_row_pixels`` of its pixels a row); the network input
    A tensor the host writes (the network input, a host step's output: :meth:`add_host`) gets
    a table of one entry a row, which the host writes with the tensor, when an accelerated
    LOAD_ROWS or residual read first reads whole rows of it. A LOAD_ROWS of checked rows
    reads their entries (``chk_off``, ``chk_beats``)."""

    def __init__(self, cfg: HWConfig):
        self.cfg = cfg
        self.beats = 0                  # side-area size in beats
        self.tables: dict[int, tuple] = {}   # arena-relative addr -> (off, k, row_bytes, h)
        self.host: dict[int, str] = {}       # arena-relative addr -> host-written tensor
        self.host_tables: dict[str, int] = {}   # host-written tensor -> its table's offset

    def alloc(self, n: int) -> int:
        off = self.beats
        self.beats += n
        if self.beats > 1 << CHK_OFF_BITS:
            raise CompileError(f"the activation check entries need {self.beats} beats, more "
                               f"than the {1 << CHK_OFF_BITS} an instruction can address")
        return off

    def add_host(self, t: TensorPlacement):
        """``t`` is written by the host: checked (a table of one entry a row, written by the
        host with the tensor) once an accelerated layer reads whole rows of it."""
        self.host[t.addr] = t.name

    def _find(self, phys, addr: int):
        for p in phys:
            if p.addr <= addr < p.addr + p.nbytes:
                return p
        return None

    def seal_segment(self, instrs: list, phys: list, reports: list,
                     tile_layers: list | None = None):
        """Fill the check fields of a segment's STOREs and LOAD_ROWS (arena-relative
        addresses) and count their extra bytes into the layers' reports (``tile_layers``: the
        layer of each pixel tile, :attr:`AccelStep.tile_layers`)."""
        cfg, bb = self.cfg, self.cfg.beat_bytes
        decoded = [decode(raw) for raw in instrs]
        # pixel tile of each instruction (hdl/isa.py pixel_tiles) -> layer report
        by_name = {r.name: r for r in reports}
        names = tile_layers or [r.name for r in reports for _ in range(r.ptiles)]
        owner = [by_name[names[t]] if 0 <= t < len(names) else None
                 for t in pixel_tiles(decoded)]
        # ---- STOREs: which rows of which tensor each writes ---------------------------------
        writes: dict[int, list] = {}        # tensor addr -> [(instr index, row0, rows, rp)]
        bad: set[int] = set()
        for i, (op, f) in enumerate(decoded):
            if op != Opcode.STORE:
                continue
            t = self._find(phys, f["out_addr"])
            if t is None:
                continue
            rb = t.w * t.c_mem
            npix = _store_pixels(f)         # (the pooled ones of a STORE with vpool)
            q = np.arange(npix, dtype=np.int64)
            start = f["out_addr"] - t.addr + q * f["out_stride"]
            end = start + f["n_mtiles"] * cfg.lanes_pad
            row = start // rb
            row0, rows = int(row[0]), int(row[-1]) - int(row[0]) + 1
            rp = npix // rows
            if (npix % rows or not np.array_equal(row, row0 + q // rp)
                    or np.any((end - 1) // rb != row) or end[-1] > t.nbytes
                    or rp >= 1 << 12 or rows > cfg.acc_depth):
                bad.add(t.addr)
            writes.setdefault(t.addr, []).append((i, row0, rows, rp,
                                                  npix * f["n_mtiles"] * cfg.lanes_pad))
        for addr, ws in writes.items():
            t = self._find(phys, addr)
            rb = t.w * t.c_mem
            slots = np.zeros(t.h, np.int64)         # contributors seen per row
            cover = np.zeros(t.h, np.int64)         # bytes written per row
            place = []
            ok = addr not in bad and addr not in self.tables
            for i, row0, rows, rp, nbytes in ws:
                if not ok:
                    break
                js = slots[row0:row0 + rows]
                if np.any(js != js[0]):
                    ok = False
                    break
                place.append((i, row0, rp, int(js[0])))
                slots[row0:row0 + rows] += 1
                cover[row0:row0 + rows] += nbytes // rows
            k = int(slots.max()) if ok else 0
            if not ok or k > 31 or np.any(slots != k) or np.any(cover != rb):
                continue                              # not every byte by whole rows: unchecked
            off = self.alloc(t.h * k)
            self.tables[addr] = (off, k, rb, t.h)
            for i, row0, rp, j in place:
                op, f = decoded[i]
                f.update(chk_off=off + row0 * k + j, chk_row_pixels=rp, chk_stride=k)
                rows = _store_pixels(f) // rp
                if owner[i] is not None:
                    owner[i].dma_write_bytes += rows * bb
        # ---- LOAD_ROWS and residual reads: the entries of the rows they read ---------------
        def entries(addr: int, n: int, limit: int):
            t = self._find(phys, addr)
            if t is None:
                return None
            if t.addr in self.tables:
                off, k, rb, h = self.tables[t.addr]
            elif t.addr in self.host:
                off, k, rb, h = None, 1, t.w * t.c_mem, t.h
            else:
                return None
            lo = addr - t.addr
            if lo % rb or n % rb or lo + n > h * rb or n // rb * k >= limit:
                return None
            if off is None:              # a host-written tensor's first checked read
                off = self.alloc(h)
                self.tables[t.addr] = (off, 1, rb, h)
                self.host_tables[self.host[t.addr]] = off
            return off + lo // rb * k, n // rb * k

        for i, (op, f) in enumerate(decoded):
            if op == Opcode.LOAD_ROWS:
                e = entries(f["addr"], f["beats"] * bb, 1 << 16)
                if e is not None:
                    f.update(chk_off=e[0], chk_beats=e[1])
                    if owner[i] is not None:
                        owner[i].dma_read_bytes += e[1] * bb
            elif op == Opcode.STORE and f["res_en"]:
                e = entries(f["res_addr"], f["pixels"] * f["res_beats"] * bb, 1 << 12)
                if e is not None:
                    f.update(res_chk_off=e[0], res_chk_beats=e[1])
                    if owner[i] is not None:       # read again for every mtile
                        owner[i].dma_read_bytes += f["n_mtiles"] * e[1] * bb
        for i, (op, f) in enumerate(decoded):
            if op in (Opcode.LOAD_ROWS, Opcode.STORE):
                instrs[i] = encode(op, **f)


def vpool_rows(x: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` tensor max-pooled over rows (3 rows, stride 2, padding 1): what a conv
    whose STOREs pool vertically stores (:attr:`Compiled.vpooled`), from golden's output of the
    conv (golden's own max pooling, 3 x 1 windows)."""
    return max_pool(np.asarray(x), (3, 1), (2, 1), (1, 0, 1, 0))


def _store_pixels(f: dict) -> int:
    """Pixels a decoded STORE writes (per mtile): ``vp_pixels`` with vertical pooling."""
    return f["vp_pixels"] if f.get("vpool") else f["pixels"]


def _check_config(cfg: HWConfig):
    wb = cfg.tn * 8
    if not (wb % cfg.axi_data_width == 0 or cfg.axi_data_width % wb == 0):
        raise CompileError(f"configuration {cfg.name!r}: tn*8 = {wb} bits and the AXI width "
                           f"{cfg.axi_data_width} must divide one another")


#: Distinct package sequence numbers (16-bit header field).
_SEQ_SPAN = 1 << 16


def compile_model(model: QModel, config: HWConfig, *, base: int = DEFAULT_BASE,
                  frame_slots: int = 2, input_layout: str = "auto", mac=None,
                  act_check: bool = True, batch: int = 1,
                  stack_from: str | None = None, share_loads: bool = True) -> Compiled:
    """Compile ``model`` for ``config``; see the module docstring.

    ``frame_slots``: when the whole network is one program, the number of frame slots (input
    and output tensors, each with its copy of the program) for back-to-back frames
    (:class:`FrameSlot`, ``Driver.infer_stream``).

    ``input_layout``: ``"auto"`` (the accelerator builds the stored input layout from the raw
    image where it can, :attr:`Compiled.input_layout`) or ``"host"`` (the host lays the input
    out, ``TensorPlacement.to_memory``).

    ``mac``: a :class:`~ilmpq.firmware.wpkg.MacKey` to authenticate every weight package (a
    SipHash-2-4 tag over the nonce, the header and the payload, in place of the CRC); the
    nonce is kept in :attr:`Compiled.mac_nonce`, never the key. The header's sequence number
    is the package's place in the model, so a model may have at most 2**16 packages.

    ``act_check``: activation integrity (docs/reliability.md section 3.1): every STORE writes
    the check entries of its rows and every LOAD_ROWS and residual read of them is checked
    (ACT_CRC). A check entry covers a whole row, so with it on no conv reads its input through
    strided LOAD_ROWS (which read a part of each row). ``False``: programs without check
    entries, and the 1x1 strided convs read only the pixels they use (:func:`_strided_view`);
    the hardware runs both.

    ``batch``: images per run (1 to :data:`MAX_BATCH`). With ``batch = B > 1`` one program
    takes B images: the layers before the weight-bound ones run per image (B copies of their
    instructions, each on its image's own tensors), the weight-bound ones (:func:`_batch_plan`:
    the late convs, global average pooling, the FC) once on the B images stacked in one tensor,
    so each weight set is loaded once for B images; :attr:`Compiled.batch_tensors` has every
    image's placements, the driver writes B inputs and reads B outputs. One frame slot. 1: the
    programs of a single image, unchanged. ``stack_from``: with ``batch > 1``, the first
    layer (by name) to run on the stacked images instead of the first weight-bound one.

    ``share_loads``: two convs reading the same input with the same output size (ResNet's
    stride-2 ``conv1`` and its ``downsample``) load each input tile once for both
    (:func:`_compile_pair`, ``Compute.keep``); ``False``: each loads its own."""
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise CompileError(f"batch = {batch!r} is not allowed: it must be an integer in "
                           f"[1, {MAX_BATCH}] (images per weight set)")
    if stack_from is not None and (batch == 1 or not isinstance(stack_from, str)):
        raise CompileError(f"stack_from = {stack_from!r} is not allowed: it names the first "
                           f"stacked layer (a string) of a batched compile (batch > 1)")
    if mac is not None and not isinstance(mac, wpkg.MacKey):
        raise CompileError(f"mac must be a wpkg.MacKey, not {type(mac).__name__}")
    if mac is not None and config.axi_data_width != 64:
        raise CompileError(f"authenticated weight packages need a 64-bit AXI bus; "
                           f"configuration {config.name!r} has axi_data_width = "
                           f"{config.axi_data_width}")
    if mac is not None and not config.weight_mac:
        raise CompileError(f"configuration {config.name!r} is built without the weight-package "
                           f"MAC (HWConfig.weight_mac = 0): compile without a MAC key (the "
                           f"packages are CRC-checked), or for a build with weight_mac = 1")
    if input_layout not in ("auto", "host"):
        raise CompileError(f"input_layout = {input_layout!r} is not allowed: it must be "
                           f"'auto' or 'host'")
    if not isinstance(act_check, bool):
        raise CompileError(f"act_check = {act_check!r} is not allowed: it must be True or False")
    if not isinstance(share_loads, bool):
        raise CompileError(f"share_loads = {share_loads!r} is not allowed: it must be True or "
                           f"False")
    if input_layout == "auto":
        used = []
        try:
            return _compile_model(model, config, base, frame_slots, None, used, mac=mac,
                                  act_check=act_check, batch=batch, stack_from=stack_from,
                                  share_loads=share_loads)
        except CompileError as e:
            if not used:
                raise
            # e.g. tiny's pad lanes widen the stored layout past the activation buffer
            why = f"the accelerator's input layout does not compile: {e}"
    else:
        why = "input_layout='host' requested"
    return _compile_model(model, config, base, frame_slots, why, mac=mac, act_check=act_check,
                          batch=batch, stack_from=stack_from, share_loads=share_loads)


def _compile_model(model: QModel, config: HWConfig, base: int, frame_slots: int,
                   host_why: str | None, used: list | None = None, *,
                   mac=None, act_check: bool = True, batch: int = 1,
                   stack_from: str | None = None, share_loads: bool = True) -> Compiled:
    if isinstance(frame_slots, bool) or not isinstance(frame_slots, int) or \
            not 1 <= frame_slots <= 16:
        raise CompileError(f"frame_slots = {frame_slots!r} is not allowed: it must be an "
                           f"integer in [1, 16]")
    _check_config(config)
    if not isinstance(base, int) or isinstance(base, bool) or not (
            0 <= base < 1 << 32 and base % _ALIGN == 0):
        raise CompileError(f"base = {base!r} is not allowed: the image address must be an "
                           f"integer multiple of {_ALIGN} in [0, 2**32)")
    cfg = config
    spec = cfg.numeric
    if model.act_bits != cfg.act_bits:
        raise CompileError(f"the model was quantized for {model.act_bits}-bit activations but "
                           f"configuration {cfg.name!r} has act_bits = {cfg.act_bits}")
    cmem_align = math.lcm(cfg.tn, cfg.beat_bytes)
    img = _Image(base)
    # tensors go to the activation arena, placed after everything read-only once its size is
    # known: their addresses are arena-relative until then (relocated below)
    arena = _Image(0)
    tensors: dict[str, TensorPlacement] = {}
    reports: list[LayerReport] = []
    # activation integrity: the tensors the arena holds (views excluded) and their check tables
    phys: list[TensorPlacement] = []
    chk = _CheckTables(cfg)

    def place(name: str, channels: int, h: int, w: int, perm: np.ndarray) -> TensorPlacement:
        spec_t = model.tensors[name] if name in model.tensors else mview.tensors[name]
        c_mem = len(perm)
        assert c_mem % cmem_align == 0
        p = TensorPlacement(name, 0, channels, c_mem, h, w, perm, spec_t.signed, spec_t.bits)
        p.addr = arena.alloc(p.nbytes, what=f"tensor {name!r}")
        tensors[name] = p
        phys.append(p)
        return p

    # the network input. Its stored layout for the first layer: natural channel order padded
    # to C_mem, or with the first conv's kernel columns folded into channels (after a
    # space-to-depth) when that fills more of the tn input lanes. The host writes the raw image
    # (HWC bytes, exactly the image) and a layout convolution on the accelerator builds that
    # stored layout (:func:`_layout_plan`); where it cannot, the host lays it out.
    ispec = model.tensors[model.input]
    c, h, w = ispec.shape
    fold_layer, s2d = _fold_candidate(model, cfg)
    stem_eff = None
    if fold_layer is not None:
        ow = model.tensors[fold_layer.output].shape[2]
        if s2d > 1:
            # space-to-depth first: the stride-s stem becomes a stride-1 conv on s*s*C channels
            oh = model.tensors[fold_layer.output].shape[1]
            stem_eff = space_to_depth_conv(fold_layer, (c, h, w), (oh, ow), s2d)
            c_f, h_f, w_f = s2d * s2d * c, -(-h // s2d), -(-w // s2d)
        else:
            stem_eff, c_f, h_f, w_f = fold_layer, c, h, w
        kw = stem_eff.kernel[1]
        geom = (c_f * kw, h_f, ow, (kw, stem_eff.stride[1], stem_eff.padding[1], w_f), s2d)
    else:
        geom = (c, h, w, None, 1)
    plan, layout_why = _layout_plan(model, cfg, geom)
    if host_why is not None and (plan is not None or layout_why):
        plan, layout_why = None, host_why
    elif plan is not None or layout_why:
        # the first conv reading the raw image directly is cheaper than any stored layout
        direct, why = _direct_plan(model, cfg)
        gather, _ = _gather_plan(model, cfg)
        if gather is not None:
            lay = gather.layer
            oh, ow = model.tensors[lay.output].shape[1:]
            # against the phases on the raw bytes, or (when they do not fit) the layer on a
            # stored layout of its natural channels
            other = direct.cost(cfg, oh) if direct is not None else _conv_cost(
                cfg, oh, ow, lay.kernel[0] * lay.kernel[1] * -(-lay.weight.shape[1] // cfg.tn))
            if gather.cost(cfg, oh) <= other:
                direct = gather
        if direct is not None:
            plan, layout_why, fold_layer = direct, "", None
    if plan is not None and used is not None:
        used.append(plan)
    stored_name = model.input            # the tensor the first layers read
    mview = _ModelView(dict(model.tensors), tuple(model.layers))
    if plan is None:
        cf, h_s, w_s, fold, _ = geom
        perm = np.full(_roundup(cf, cmem_align), -1, np.int64)
        perm[:cf] = np.arange(cf)
        p = place(model.input, cf, h_s, w_s, perm)
        if fold is not None:
            p.fold, p.s2d, p.natural = fold, s2d, (c, h, w)
    else:
        # the raw image: HWC bytes, C_mem = C (read only through the layout conv's byte view)
        raw = TensorPlacement(model.input, 0, c, c, h, w, np.arange(c), False, ispec.bits)
        raw.addr = arena.alloc(raw.nbytes, what=f"tensor {model.input!r}")
        tensors[model.input] = raw
        phys.append(raw)
        if isinstance(plan, _LayoutPlan):
            stored_name = plan.stored.name
    # the host writes the input: the driver writes its check entries with the image
    chk.add_host(tensors[model.input])
    internal: dict[str, TensorPlacement] = {}
    # programs are placed after everything else: collect instructions per segment first
    segments: list[tuple[list[str], list[bytes]]] = []
    steps_plan: list = []
    seq_counter = 0
    cur_instr: list[bytes] | None = None
    cur_layers: list[str] = []
    stores_in_segment = 0
    # tensor -> (index of its first STORE in the segment, output rows of each of its STOREs,
    # whether a reader needs all of them): the fine-grained layer barrier (see _tile_wait)
    producers: dict[str, tuple[int, list, bool]] = {}
    # convs compiled as a pair sharing their loads (_compile_pair): first -> second; the
    # interleaved layer of each pixel tile of each segment (AccelStep.tile_layers)
    pairs: dict[str, str] = {}
    with_next: dict[str, str] = {}     # a pair the cycle model kept apart
    seg_tiles: dict[int, list | None] = {}

    def flush_segment():
        nonlocal cur_instr, cur_layers, stores_in_segment
        if cur_instr is not None:
            seg_reports = [r for r in reports if r.name in cur_layers]
            tile_layers = _pair_tile_layers(seg_reports, pairs)
            if act_check:
                chk.seal_segment(cur_instr, phys, seg_reports, tile_layers)
            cur_instr.append(encode(Opcode.END))
            segments.append((cur_layers, cur_instr))
            seg_tiles[len(segments) - 1] = tile_layers
            steps_plan.append(("accel", len(segments) - 1))
        cur_instr, cur_layers, stores_in_segment = None, [], 0
        producers.clear()

    def host_step(layer, reason: str):
        """Run ``layer`` on the host: a CPU step between accelerator segments, its output placed
        in natural channel order (or the input's, for a channel-wise op)."""
        flush_segment()
        src = tensors[layer.input]
        oc, oh, ow = model.tensors[layer.output].shape
        if oc == src.channels and src.fold is None:
            perm = src.perm.copy()        # channel-wise op: keep the input's order
        else:
            perm = np.full(_roundup(oc, cmem_align), -1, np.int64)
            perm[:oc] = np.arange(oc)
            perm = _depthwise_order(model, layer.output, cfg, perm, cmem_align)
        p = place(layer.output, oc, oh, ow, perm)
        if layer.output in offset_ok:
            p.offset = 1 << (model.tensors[layer.output].bits - 1)
        # the host step writes the check entries of its output with it
        chk.add_host(p)
        steps_plan.append(("cpu", layer.name))
        rep = LayerReport(layer.name, layer.kind, "cpu", model.tensors[layer.output].shape,
                          cpu_reason=reason)
        if isinstance(layer, ConvLayer):
            rep.macs = int(np.prod(model.tensors[layer.output].shape)) * int(
                np.prod(layer.weight.shape[1:]))
        reports.append(rep)

    def undo_on_limit(layer, mark, e: CompileError):
        """A layer that does not fit the configuration (weights above one LOAD_WEIGHTS stream,
        an output row above the accumulator depth ...): undo what its compilation placed and
        run it on the host with the compiler's reason. Errors that are not this layer's limits
        (the 4 GiB address space) stay errors."""
        nonlocal cur_instr
        if not str(e).startswith(f"layer {layer.name!r}") or \
                layer is getattr(plan, "layer", None):
            raise e       # (the first conv of an input plan: compile_model retries on the host)
        del img.data[mark[0]:]
        del arena.data[mark[2]:]
        tensors.pop(layer.output, None)
        phys[:] = [p for p in phys if p.addr < mark[2]]
        if not cur_layers:
            cur_instr = None
        else:
            del cur_instr[mark[1]:]
        host_step(layer, str(e).split(": ", 1)[-1])

    if isinstance(plan, _LayoutPlan):
        # the layout conv: the first thing of the first program (every frame)
        cur_instr = []
        st = plan.stored
        st.addr = arena.alloc(st.nbytes, what=f"the stored layout of {model.input!r}")
        tensors[st.name] = st
        phys.append(st)
        mview.tensors[st.name] = TensorSpec(st.name, (st.channels, st.h, st.w), ispec.bits,
                                            False, ispec.scale)
        rep_l, n_pkgs = _compile_layout(plan, tensors[model.input], mview, cfg, spec, img,
                                        tensors, cur_instr, seq_counter, producers, mac=mac)
        seq_counter += n_pkgs
        stores_in_segment += rep_l.ptiles
        cur_layers.append(rep_l.name)
        reports.append(rep_l)

    def _alias(layer):
        """``layer`` reading the stored layout instead of the raw image."""
        if not isinstance(plan, _LayoutPlan):
            return layer
        ch = {f: stored_name for f in ("input", "residual")
              if getattr(layer, f, None) == model.input}
        return dataclasses.replace(layer, **ch) if ch else layer

    lut_of, lut_why = _lut_fusion(model, cfg)
    offset_why = _offset_why(model, cfg)
    offset_ok = _offset_tensors(offset_why)
    # max pools the conv before them pools vertically in its STORE (_vpool_candidates):
    # conv name -> its pool; pool name -> the horizontal pool it becomes once fused
    vpool_of = _vpool_candidates(model, cfg)
    vpool_h: dict[str, MaxPoolLayer] = {}
    producer_of = {l.output: l.name for l in model.layers}
    fused: set[str] = set()          # LutLayers fused into their producer's STORE
    # Concat as placement (:func:`_concat_plan`): its producing convs store straight into
    # their channel ranges of one tensor, allocated when the first of them is compiled
    concat_ranges, place_why = _concat_plan(model, cfg)
    concat_of = {l.name: l for l in model.layers if isinstance(l, ConcatLayer)}
    producer_layer = {l.output: l for l in model.layers}
    member_of = {t: (cat, off, n, i) for cat, rs in concat_ranges.items()
                 for i, (t, off, n, copy) in enumerate(rs) if copy is None}
    concat_store: dict[str, TensorPlacement] = {}   # concat name -> its stored tensor
    # concat name -> {input index: the view of its range} once an accelerated conv wrote it,
    # and the tensor whose STOREs wrote last (its readers wait for them)
    stored_into: dict[str, dict] = {}
    last_store: dict[str, str] = {}

    def compile_copies(cat: ConcatLayer):
        """Compile the copy convs of ``cat``'s ranges into the current segment: one report
        for them all (kind ``concat``, on the accelerator), or None when none is needed; a copy
        that does not compile (e.g. a signed two's complement input) is undone, and the concat
        then runs on the host with its reason."""
        nonlocal cur_instr, seq_counter
        # inputs no producer stores into it, and those whose producer ran on the host (or
        # stored its own layout): copied with the producer's row split (its range's positions)
        written = stored_into.get(cat.name, {})
        out_signed = model.tensors[cat.output].signed
        copies = [(i, off, n, c if c is not None else _copy_conv(
                      cat, i, model.tensors[t].shape[0], out_signed, cfg,
                      producer_layer[t].precision))
                  for i, (t, off, n, c) in enumerate(concat_ranges[cat.name])
                  if c is not None or i not in written]
        if not copies:
            return None
        if cur_instr is None:
            cur_instr = []
        st = concat_storage(cat.name)
        mark = (len(img.data), len(cur_instr), len(arena.data), seq_counter)
        rep = LayerReport(cat.name, "concat", "accel", model.tensors[cat.output].shape)
        done = {}
        for i, off, n, conv in copies:
            c_in = model.tensors[cat.inputs[i]].shape[0]
            mview.tensors[conv.output] = TensorSpec(conv.output, (c_in, st.h, st.w), st.bits,
                                                    st.signed, model.tensors[cat.output].scale)
            try:
                r, n_pkgs = _compile_conv(conv, mview, cfg, spec, img, tensors,
                                          member_place(cat.name, off, n), cur_instr,
                                          seq_counter, stores_in_segment + rep.ptiles,
                                          producers, mac=mac, offset_out=bool(st.offset))
            except CompileError as e:
                del img.data[mark[0]:]
                del cur_instr[mark[1]:]
                del arena.data[mark[2]:]
                seq_counter = mark[3]
                for c in copies:
                    tensors.pop(c[3].output, None)
                    producers.pop(c[3].output, None)
                if not cur_layers:
                    cur_instr = None
                place_why[cat.name] = (f"concat: input {cat.inputs[i]!r} cannot be copied into "
                                       f"its range on the PE array ({e})")
                return None
            seq_counter += n_pkgs
            t = tensors[conv.output]
            t.addr = st.addr
            done[i] = t
            last_store[cat.name] = conv.output
            for f in ("mtiles", "ptiles", "weight_bytes", "dma_read_bytes", "dma_write_bytes",
                      "pe_beats"):
                setattr(rep, f, getattr(rep, f) + getattr(r, f))
            rep.sets_per_mtile = max(rep.sets_per_mtile, r.sets_per_mtile)
        stored_into.setdefault(cat.name, {}).update(done)
        return rep

    def concat_storage(cat_name: str) -> TensorPlacement:
        """The concat's tensor, allocated when its first range is compiled (before that layer's
        mark: a producer that falls back to the host leaves it to the others)."""
        if cat_name not in concat_store:
            cat = model.tensors[concat_of[cat_name].output]
            c_cat = sum(r[2] for r in concat_ranges[cat_name])
            st = TensorPlacement(cat.name, 0, cat.shape[0], c_cat, cat.shape[1], cat.shape[2],
                                 np.full(c_cat, -1, np.int64), cat.signed, cat.bits)
            if cat.name in offset_ok:
                st.offset = 1 << (cat.bits - 1)
            st.addr = arena.alloc(st.nbytes, what=f"tensor {cat.name!r}")
            phys.append(st)
            concat_store[cat_name] = st
        return concat_store[cat_name]

    def member_place(cat_name: str, off: int, npos: int):
        """``place`` for a conv storing into positions ``[off, off + npos)`` of a concat's
        tensor: its STOREs write at ``addr + off`` with the concat's pixel stride."""
        def _place(name, channels, h, w, perm):
            st = concat_store[cat_name]
            if len(perm) != npos or (h, w) != (st.h, st.w):
                raise CompileError(f"layer {producer_of.get(name, name)!r}: its output ({len(perm)} "
                                   f"positions, {h}x{w}) does not fit its range of the concat "
                                   f"{cat_name!r}")
            full = np.full(st.c_mem, -1, np.int64)
            full[off:off + npos] = perm
            t = TensorPlacement(name, st.addr + off, channels, st.c_mem, h, w, full,
                                st.signed, st.bits, offset=st.offset)
            tensors[name] = t
            return t
        return _place

    # ---- batching (:class:`_BatchPlan`): per-image layers, then the stacked ones ----------
    bplan = _batch_plan(model, cfg, batch, lut_of, stack_from)
    # per image b >= 1: model tensor -> its placement (image 0: ``tensors``)
    copies: list[dict] = [{} for _ in range(batch)]

    def stk(t: str) -> str:
        """The stored tensor of ``t`` for the B stacked images."""
        return f"{t}@batch"

    def place_stacked(name, channels, h, w, perm):
        sp = mview.tensors[name]
        p = TensorPlacement(name, 0, channels, len(perm), h, w, perm, sp.signed, sp.bits)
        p.addr = arena.alloc(p.nbytes, what=f"tensor {name!r}")
        tensors[name] = p
        phys.append(p)
        return p

    def stack_place(name, channels, h, w, perm):
        """``place`` for the producer of a tensor the stacked layers read: the stacked tensor,
        whose rows ``[0, H)`` are image 0's (each image's copy of the producer stores its
        rows)."""
        p_, h_ = bplan.period[name]
        mview.tensors[stk(name)] = dataclasses.replace(
            model.tensors[name], name=stk(name), shape=(channels, batch * p_ - (p_ - h_), w))
        st = place_stacked(stk(name), channels, batch * p_ - (p_ - h_), w, perm)
        v = TensorPlacement(name, st.addr, channels, st.c_mem, h, w, perm, st.signed, st.bits)
        tensors[name] = v
        return v

    def replicate():
        """Image 0's instructions so far once more for every further image, on its own copy of
        every tensor (the stacked tensors' images at their rows), after image 0's: a LOAD_ROWS
        waiting for ``k`` STOREs of image 0 waits for ``k`` of its own image's."""
        nonlocal stores_in_segment
        if steps_plan or cur_instr is None:
            hosts = [r.name for r in reports if r.where == "cpu"]
            raise CompileError(f"batch = {batch}: the layers before the stacked ones must run "
                               f"on the accelerator as one program; the host runs "
                               f"{', '.join(hosts) or 'a layer'}")
        for t in sorted(bplan.transition):
            if stk(t) not in tensors:
                raise CompileError(f"batch = {batch}: the producer of tensor {t!r}, which the "
                                   f"stacked layers read, cannot store the images stacked (a "
                                   f"conv or pooling layer without a fused table can)")
            tensors[stk(t)].offset = tensors[t].offset
        a1 = len(arena.data)
        n0, s0 = len(cur_instr), stores_in_segment
        stacked = {id(tensors[stk(t)]) for t in bplan.transition}
        own = [p for p in phys if id(p) not in stacked]
        reps0 = [r for r in reports if r.name in cur_layers]
        names = [n for n in model.tensors if n in tensors]
        for b in range(1, batch):
            d = arena.alloc(a1, what=f"the tensors of image {b}")
            moves = []
            for t in sorted(bplan.transition):
                v = tensors[t]
                moves.append((v.addr, v.nbytes, v.addr + b * bplan.period[t][0] * v.w * v.c_mem))
            moves.append((0, a1, d))

            def moved(addr):
                return next((addr - lo + new for lo, n, new in moves if lo <= addr < lo + n),
                            addr)
            for raw in _relocate(cur_instr[:n0], 0, moves):
                op, f = decode(raw)
                if op == Opcode.LOAD_ROWS and f["wait_stores"]:
                    f["wait_stores"] += b * s0
                    raw = encode(op, **f)
                cur_instr.append(raw)
            for p in own:
                q = dataclasses.replace(p, name=f"{p.name}@{b}", addr=moved(p.addr))
                phys.append(q)
                tensors[q.name] = q
                if p.addr in chk.host:
                    chk.add_host(q)
                copies[b][p.name] = q
            for n in names:
                if n not in copies[b]:
                    v = tensors[n]
                    q = dataclasses.replace(v, name=f"{n}@{b}", addr=moved(v.addr))
                    tensors[q.name] = q
                    copies[b][n] = q
            for r in reps0:
                reports.append(dataclasses.replace(r, name=f"{r.name}@{b}"))
                cur_layers.append(f"{r.name}@{b}")
                if r.name in pairs:           # its tiles alternate with its pair's (keep)
                    pairs[f"{r.name}@{b}"] = f"{pairs[r.name]}@{b}"
            stores_in_segment += s0
        for t in sorted(bplan.transition):
            gap_fill(t)
            producers[stk(t)] = (stores_in_segment, [], True)

    def gap_fill(t: str):
        """Write the gap rows of stacked tensor ``t`` (its images' rows were stored by their
        producers): per gap a 1x1 max pooling on the pooling unit copies the ``P - H`` rows before
        it into it, so that every row of the tensor has its check entry and every load of it is
        checked (docs/reliability.md 3.1). The copied bytes read as padding (rows outside an output
        row's image, ``Compute.img_rows``). Only a tensor whose period a stride forces above its
        height has gap rows (:func:`_stack_periods_g`). Where the pooling unit cannot (a signed
        input, more gap rows than image rows) the gap rows stay unwritten and the tensor
        unchecked."""
        nonlocal stores_in_segment
        st = tensors[stk(t)]
        p_, h_ = bplan.period[t]
        g = p_ - h_
        if not act_check or g == 0 or g > h_:
            return
        rb = st.w * st.c_mem
        sp = mview.tensors[stk(t)]
        for b in range(batch - 1):
            vin, vout = f"{t}@gapsrc{b}", f"{t}@gap{b}"
            for nm, r in ((vin, b * p_ + h_ - g), (vout, b * p_ + h_)):
                tensors[nm] = TensorPlacement(nm, st.addr + r * rb, st.channels, st.c_mem, g,
                                              st.w, st.perm, st.signed, st.bits,
                                              offset=st.offset)
                mview.tensors[nm] = dataclasses.replace(sp, name=nm,
                                                        shape=(st.channels, g, st.w))
            producers[vin] = (stores_in_segment, [], True)
            lay = MaxPoolLayer(f"{t}:gap{b}", vin, vout, (1, 1), (1, 1))
            if _pool_unsupported(lay, mview, cfg, tensors):
                return
            out = tensors[vout]

            def _pl(name, channels, h, w, perm, out=out):
                if len(perm) != out.c_mem:
                    raise CompileError(f"tensor {t!r}: its gap rows cannot be copied "
                                       f"({len(perm)} != {out.c_mem} positions)")
                return out
            rep_g = _compile_pool(lay, mview, cfg, img, tensors, _pl, cur_instr,
                                  stores_in_segment, producers)
            rep_g.kind = "gapfill"
            stores_in_segment += rep_g.ptiles
            cur_layers.append(rep_g.name)
            reports.append(rep_g)

    def compile_stacked(layer, li: int):
        """A layer from the batch plan's split on: once for the B stacked images (global
        average pooling once per image, on its rows, into row ``b`` of a ``(C, B, 1)``
        tensor); a conv and the next one reading the same input (ResNet's stride-2 ``conv1``
        and ``downsample``) as a pair sharing their loads, as for one image."""
        nonlocal seq_counter, stores_in_segment, cur_instr
        if cur_instr is None:
            cur_instr = []
        i, o = layer.input, layer.output
        src = tensors[stk(i)]
        sp_o = model.tensors[o]
        if isinstance(layer, FlattenLayer):
            t = TensorPlacement(stk(o), src.addr, src.channels, src.c_mem, src.h, src.w,
                                src.perm, src.signed, src.bits, offset=src.offset)
            tensors[stk(o)] = t
            mview.tensors[stk(o)] = dataclasses.replace(sp_o, name=stk(o),
                                                        shape=(src.channels, src.h, src.w))
            if stk(i) in producers:
                base_, rows_, _ = producers[stk(i)]
                producers[stk(o)] = (base_, rows_, True)
            reports.append(LayerReport(layer.name, "flatten", "free", sp_o.shape))
            return
        if isinstance(layer, GlobalAvgPoolLayer):
            p_, h_ = bplan.period[i]
            rb = src.w * src.c_mem
            prod = producers.get(stk(i))
            pooled = []

            def pool_place(b):
                def _pl(name, channels, h, w, perm):
                    if not pooled:
                        mview.tensors[stk(o)] = dataclasses.replace(
                            sp_o, name=stk(o), shape=(channels, batch, 1))
                        pooled.append(place_stacked(stk(o), channels, batch, 1, perm))
                    st = pooled[0]
                    v = TensorPlacement(name, st.addr + b * st.c_mem, channels, st.c_mem, 1, 1,
                                        perm, st.signed, st.bits)
                    tensors[name] = v
                    return v
                return _pl
            for b in range(batch):
                vin, vout = f"{i}@{b}", f"{o}@{b}"
                if vin not in tensors:          # (image b's copy of a transition tensor)
                    tensors[vin] = TensorPlacement(vin, src.addr + b * p_ * rb, src.channels,
                                                   src.c_mem, h_, src.w, src.perm, src.signed,
                                                   src.bits, offset=src.offset)
                mview.tensors[vin] = dataclasses.replace(model.tensors[i], name=vin)
                mview.tensors[vout] = dataclasses.replace(sp_o, name=vout)
                if prod is not None:
                    producers[vin] = (prod[0], prod[1], True)
                lay_b = dataclasses.replace(layer, name=layer.name if b == 0 else
                                            f"{layer.name}@{b}", input=vin, output=vout)
                why = _pool_unsupported(lay_b, mview, cfg, tensors)
                if why:
                    raise CompileError(f"layer {layer.name!r} (batch = {batch}): {why}")
                rep = _compile_pool(lay_b, mview, cfg, img, tensors, pool_place(b), cur_instr,
                                    stores_in_segment, producers)
                stores_in_segment += rep.ptiles
                cur_layers.append(rep.name)
                reports.append(rep)
            pooled[0].offset = src.offset
            producers[stk(o)] = (stores_in_segment, [], True)
            return
        # a conv or FC on the stacked images
        def stacked_conv(c):
            sp = model.tensors[c.output]
            p_o, h_o = bplan.period[c.output]
            mview.tensors[stk(c.output)] = dataclasses.replace(
                sp, name=stk(c.output), shape=(sp.shape[0], batch * p_o - (p_o - h_o),
                                               sp.shape[2]))
            res = c.residual
            # a window that can reach past its image (a kernel of several rows or a top
            # padding) reads the rows outside it as padding (``Compute.img_rows`` etc.)
            return (dataclasses.replace(c, input=stk(i), output=stk(c.output),
                                        residual=None if res is None else stk(res)),
                    bplan.period[i] if c.kernel[0] > 1 or c.padding[0] else None)

        def useful(rep, c):
            # useful MACs: B images, not the gap rows
            rep.macs = batch * int(np.prod(model.tensors[c.output].shape)) * \
                int(np.prod(c.weight.shape[1:]))

        eff, stack = stacked_conv(layer)
        nxt = model.layers[li + 1] if li + 1 < len(model.layers) else None
        sib = None
        if share_loads and isinstance(nxt, ConvLayer) and nxt.input == i and \
                nxt.output in bplan.period:
            eff_b, stack_b = stacked_conv(nxt)
            sib = _sibling(eff, [eff_b], mview, cfg, tensors, member_of, lut_of, place_why,
                           offset_why)
        if sib is not None:
            rep, n_pkgs, rep_b, shared = _compile_pair(
                eff, eff_b, mview, cfg, spec, img, tensors, place_stacked, cur_instr,
                seq_counter, stores_in_segment, producers, mac=mac,
                offset_out=(o in offset_ok, nxt.output in offset_ok), strided=not act_check,
                stacks=(stack, stack_b))
            useful(rep_b, nxt)
        else:
            rep, n_pkgs = _compile_conv(eff, mview, cfg, spec, img, tensors, place_stacked,
                                        cur_instr, seq_counter, stores_in_segment, producers,
                                        mac=mac, offset_out=o in offset_ok,
                                        strided=not act_check, stack=stack)
        useful(rep, layer)
        seq_counter += n_pkgs
        stores_in_segment += rep.ptiles
        cur_layers.append(layer.name)
        reports.append(rep)
        if sib is not None:
            (pairs if shared else with_next)[layer.name] = nxt.name
            stores_in_segment += rep_b.ptiles
            cur_layers.append(nxt.name)
            reports.append(rep_b)

    for li, layer0 in enumerate(model.layers):
        if batch > 1 and li == bplan.split:
            replicate()
        if layer0.name in pairs.values() or layer0.name in with_next.values():
            continue                      # compiled with the conv before it (_compile_pair)
        if batch > 1 and li >= bplan.split:
            compile_stacked(layer0, li)
            continue
        layer = _alias(layer0)
        if isinstance(layer, LutLayer) and layer.name in fused:
            reports.append(LayerReport(layer.name, "lut:fused", "free",
                                       model.tensors[layer.output].shape))
            continue
        if layer.name in vpool_h:
            layer = vpool_h[layer.name]       # the rest of a pool its conv's STOREs began
        copy_rep = None
        if isinstance(layer, ConcatLayer) and layer.name in concat_ranges:
            # the inputs its producers did not store into it: 1x1 copy convs on the PE array
            copy_rep = compile_copies(layer)
        if isinstance(layer, (PermuteLayer, SliceLayer, ConcatLayer)):
            view, why = _placement_view(layer, model, tensors, concat_store, stored_into)
            if view is not None:
                tensors[layer.output] = view
                # readers wait for the STOREs that wrote it last: STOREs complete in program
                # order, so that covers every earlier range of a concat too
                last = last_store.get(layer.name, layer.input)
                if last in producers:
                    producers[layer.output] = producers[last]
                if copy_rep is not None:
                    reports.append(copy_rep)
                    cur_layers.append(layer.name)
                    stores_in_segment += copy_rep.ptiles
                else:
                    reports.append(LayerReport(layer.name, f"{layer.kind}:placed", "free",
                                               model.tensors[layer.output].shape))
                continue
            place_why.setdefault(layer.name, why)
        if isinstance(layer, FlattenLayer):
            src = tensors[layer.input]
            # (C, H, W) flattened channel-major: natural k = c*H*W + y*W + x at position
            # (y*W + x)*C_mem + pos
            hw = src.h * src.w
            pos = np.arange(hw * src.c_mem)
            pix, ch = pos // src.c_mem, pos % src.c_mem
            nat = np.where(src.perm[ch] >= 0, src.perm[ch] * hw + pix, -1)
            t = TensorPlacement(layer.output, src.addr, src.channels * hw, hw * src.c_mem,
                                1, 1, nat, src.signed, src.bits, offset=src.offset)
            tensors[layer.output] = t
            if layer.input in producers:          # a reader of the flattened view needs all rows
                base_, rows_, _ = producers[layer.input]
                producers[layer.output] = (base_, rows_, True)
            reports.append(LayerReport(layer.name, "flatten", "free",
                                       model.tensors[layer.output].shape))
            continue
        on_cpu = False
        reason = ""
        if isinstance(layer, (MaxPoolLayer, AvgPoolLayer, GlobalAvgPoolLayer)):
            reason = _pool_unsupported(layer, mview, cfg, tensors)
            on_cpu = bool(reason)
            if not on_cpu:
                if cur_instr is None:
                    cur_instr = []
                mark = (len(img.data), len(cur_instr), len(arena.data))
                try:
                    rep = _compile_pool(layer, mview, cfg, img, tensors,
                                        stack_place if layer.output in bplan.transition
                                        else place, cur_instr, stores_in_segment, producers)
                except CompileError as e:
                    undo_on_limit(layer0, mark, e)
                    continue
                stores_in_segment += rep.ptiles
                cur_layers.append(layer.name)
                reports.append(rep)
                continue
        if isinstance(layer, ConvLayer) and mview.tensors[layer.input].bits > cfg.act_bits:
            # e.g. 8-bit pixels into a 4/5-bit datapath: the first layer runs on the CPU
            on_cpu = True
            reason = (f"{mview.tensors[layer.input].bits}-bit input into the "
                      f"{cfg.act_bits}-bit datapath")
        elif not isinstance(layer, (MaxPoolLayer, AvgPoolLayer, GlobalAvgPoolLayer)):
            # golden layers the accelerator cannot run (signed input, depthwise, lookup table,
            # concat ...): on the host, with the reason
            reason = place_why.get(layer.name) or _host_reason(layer, model, cfg, tensors,
                                                               offset_why)
            if isinstance(layer, LutLayer):
                # a table _lut_fusion fuses is fused whenever its conv runs on the accelerator
                # (the first conv's phases too, conv^+lut): here, its conv ran on the host
                reason = lut_why.get(layer.name) or (
                    "pointwise lookup table: its producer runs on the host (a table is fused "
                    "into an accelerated conv's STORE)")
            on_cpu = bool(reason)
        if on_cpu:
            layer = layer0                # the host reads the raw image's placement
            host_step(layer, reason)
            continue
        if not isinstance(layer, ConvLayer):
            raise CompileError(f"layer {layer.name!r}: unsupported layer kind {layer.kind!r}")
        if cur_instr is None:
            cur_instr = []
        if isinstance(plan, _DirectPlan) and layer0 is plan.layer:
            lut = lut_of.get(layer.output)
            vp = vpool_of.get(layer.name)
            if vp is not None and (not act_check or layer.output in bplan.transition):
                vp = None
            if vp is not None:
                oc_, oh_, ow_ = model.tensors[layer.output].shape
                mview.tensors[f"{layer.output}@vpool"] = dataclasses.replace(
                    model.tensors[layer.output], name=f"{layer.output}@vpool",
                    shape=(oc_, (oh_ - 1) // 2 + 1, ow_))
            rep, n_pkgs = _compile_direct(plan, tensors[model.input], model, mview, cfg, spec,
                                          img, tensors, place, cur_instr, seq_counter,
                                          stores_in_segment, producers, mac=mac, lut=lut,
                                          offset_out=(lut.output if lut is not None
                                                      else layer.output) in offset_ok,
                                          vpool=vp)
            if lut is not None:
                fused.add(lut.name)
            if rep.kind.endswith("+vpool"):
                vpool_h[vp.name] = MaxPoolLayer(vp.name, f"{layer.output}@vpool", vp.output,
                                                (1, vp.kernel[1]), (1, vp.stride[1]),
                                                (0, vp.padding[1], 0, vp.padding[3]))
            seq_counter += n_pkgs
            stores_in_segment += rep.ptiles
            cur_layers.append(layer.name)
            reports.append(rep)
            continue
        eff = layer
        if layer0 is fold_layer:
            # kh x kw conv on the input == kh x 1 conv on the column-folded input (after the
            # space-to-depth, if any)
            m_, c_, kh_, kw_ = stem_eff.weight.shape
            wf = np.transpose(stem_eff.weight, (0, 3, 1, 2)).reshape(m_, kw_ * c_, kh_, 1)
            pt_, _, pb_, _ = stem_eff.padding
            eff = dataclasses.replace(stem_eff, weight=wf, stride=(stem_eff.stride[0], 1),
                                      padding=(pt_, 0, pb_, 0), input=layer.input)
        member = member_of.get(layer.output)
        conv_place, offset_out = place, None
        if layer.output in bplan.transition and lut_of.get(layer.output) is None:
            conv_place = stack_place            # into its image's rows of the stacked tensor
        if member is not None:
            cat_name, off, npos, _ = member
            conv_place = member_place(cat_name, off, npos)
            offset_out = bool(concat_storage(cat_name).offset)
        mark = (len(img.data), len(cur_instr), len(arena.data))
        lut = lut_of.get(layer.output)
        if offset_out is None:
            offset_out = (lut.output if lut is not None else layer.output) in offset_ok
        vp = vpool_of.get(layer.name)
        if vp is not None and not (eff is layer and member is None and lut is None and
                                   not offset_out and act_check and
                                   layer.output not in bplan.transition and
                                   _vpool_fits(layer, vp, mview, cfg, tensors)):
            vp = None
        if vp is not None:
            vname = f"{layer.output}@vpool"
            oc_, oh_, ow_ = model.tensors[layer.output].shape
            mview.tensors[vname] = dataclasses.replace(
                model.tensors[layer.output], name=vname, shape=(oc_, (oh_ - 1) // 2 + 1, ow_))
        sib = None
        if vp is None and share_loads and eff is layer and member is None and lut is None and \
                (batch == 1 or li + 1 < bplan.split):
            nxt = [_alias(l) for l in model.layers[li + 1:li + 2]
                   if l is not fold_layer and l is not getattr(plan, "layer", None)]
            sib = _sibling(layer, nxt, mview, cfg, tensors, member_of, lut_of, place_why,
                           offset_why)
        try:
            if sib is not None:
                # one LOAD_ROWS a pixel tile for both convs: the second is done here
                rep, n_pkgs, rep_b, shared = _compile_pair(
                    layer, sib, mview, cfg, spec, img, tensors, conv_place, cur_instr,
                    seq_counter, stores_in_segment, producers, mac=mac,
                    offset_out=(offset_out, sib.output in offset_ok), strided=not act_check)
            else:
                rep, n_pkgs = _compile_conv(eff, mview, cfg, spec, img, tensors, conv_place,
                                            cur_instr, seq_counter, stores_in_segment,
                                            producers, mac=mac, lut=lut,
                                            offset_out=offset_out, strided=not act_check,
                                            vpool=vp is not None)
        except CompileError as e:
            if lut is not None:
                tensors.pop(lut.output, None)
            undo_on_limit(layer0, mark, e)
            continue
        if member is not None:
            # the conv's output: a view of the concat's tensor (its range, -1 elsewhere)
            t = tensors[layer.output]
            t.addr = concat_store[member[0]].addr
            stored_into.setdefault(member[0], {})[member[3]] = t
            last_store[member[0]] = layer.output
        if lut is not None:
            fused.add(lut.name)
        if vp is not None:
            # the pool's rest: 1 x k, stride (1, s) over the vertically pooled rows
            vpool_h[vp.name] = MaxPoolLayer(vp.name, f"{layer.output}@vpool", vp.output,
                                            (1, vp.kernel[1]), (1, vp.stride[1]),
                                            (0, vp.padding[1], 0, vp.padding[3]))
        if layer0 is fold_layer:
            # compiled on the column-folded (space-to-depth) input
            rep.kind = "conv*" if s2d == 1 else "conv**"
            m_, c_, kh_, kw_ = layer.weight.shape       # the MACs of the layer as written
            rep.macs = int(m_ * c_ * kh_ * kw_ * int(np.prod(
                model.tensors[layer.output].shape[1:])))
            if lut is not None:
                rep.kind += "+lut"
        seq_counter += n_pkgs
        if mac is not None and seq_counter > _SEQ_SPAN:
            raise CompileError(
                f"layer {layer.name!r}: the model needs more than {_SEQ_SPAN} weight packages; "
                f"authenticated packages are placed by their 16-bit sequence number, which "
                f"must be unique in the model (compile without a MAC key)")
        stores_in_segment += rep.ptiles
        cur_layers.append(layer.name)
        reports.append(rep)
        if sib is not None:
            # (apart was faster: one after the other, on their own tilings)
            (pairs if shared else with_next)[layer.name] = sib.name
            stores_in_segment += rep_b.ptiles
            cur_layers.append(sib.name)
            reports.append(rep_b)
    if batch > 1 and bplan.split == len(model.layers):
        replicate()
    if batch > 1:
        # every image's placement of every model tensor: per-image copies, or its rows of a
        # stacked tensor (image 0: ``tensors``)
        for n, (p_, h_) in bplan.period.items():
            if stk(n) not in tensors or n in bplan.transition:
                continue
            st = tensors[stk(n)]
            for b in range(batch):
                v = tensors.get(f"{n}@{b}") or TensorPlacement(
                    f"{n}@{b}", st.addr + b * p_ * st.w * st.c_mem, st.channels, st.c_mem,
                    h_, st.w, st.perm, st.signed, st.bits, offset=st.offset)
                tensors[v.name] = v
                if b == 0:
                    tensors[n] = v
                else:
                    copies[b][n] = v
    flush_segment()

    # read-only region first: programs (one copy per frame slot), then the arena
    ib = INSTR_BITS // 8
    one_program = len(steps_plan) == 1 and steps_plan[0][0] == "accel"
    n_slots = frame_slots if one_program else 1
    inp, out = tensors[model.input], tensors[model.output]
    slot_tensors = [(inp.addr, out.addr)]
    if batch > 1:
        # per slot every image's input and the outputs (:func:`_batch_slot_regions`)
        b_in, b_out, out_regions = _batch_slot_regions(
            [tensors[model.input]] + [copies[b][model.input] for b in range(1, batch)],
            [tensors[model.output]] + [copies[b][model.output] for b in range(1, batch)],
            tensors.get(stk(model.output)))
        b_chk = [chk.host_tables.get(model.input)] + [
            chk.host_tables.get(f"{model.input}@{b}") for b in range(1, batch)]
        batch_slots = [_batch_slot_alloc(arena, chk, b_in, b_out, out_regions, b_chk, inp.h,
                                         k) for k in range(n_slots)]
    else:
        for _ in range(1, n_slots):
            slot_tensors.append((arena.alloc(inp.nbytes, what="a frame slot's input"),
                                 arena.alloc(out.nbytes, what="a frame slot's output")))
    prog_addrs = {what: [img.alloc(len(segments[what][1]) * ib, what="a program")
                         for _ in range(n_slots)]
                  for kind, what in steps_plan if kind == "accel"}
    # each slot's input has its own check entries (when an accelerated layer reads it); the
    # side area opens the arena
    input_chk = chk.host_tables.get(model.input)
    input_chks = [input_chk] + [chk.alloc(inp.h) for _ in range(1, n_slots)] \
        if input_chk is not None and batch == 1 else [input_chk] * n_slots
    chk_bytes = _roundup(chk.beats * cfg.beat_bytes, _ALIGN)
    arena_base = img.alloc(chk_bytes + len(arena.data), what="the activation arena")
    arena_range = (arena_base, arena_base + chk_bytes + len(arena.data))
    tensor_base = arena_base + chk_bytes

    def chk_addr(off):
        return 0 if off is None else arena_base + off * cfg.beat_bytes
    for t in {id(t): t for t in tensors.values()}.values():
        t.addr += tensor_base
    slot_tensors = [(ia + tensor_base, oa + tensor_base) for ia, oa in slot_tensors]

    steps = []
    slots = []
    # weights and lane parameters: part of every program's tag
    ro = bytes(img.data[:min(a for pas in prog_addrs.values() for a in pas) - base]) \
        if prog_addrs else b""
    for kind, what in steps_plan:
        if kind == "cpu":
            steps.append(CpuStep(what))
            continue
        names, instrs = segments[what]
        instrs = _relocate(instrs, tensor_base, [])
        tags = []
        for k, pa in enumerate(prog_addrs[what]):
            if batch > 1:
                prog = instrs if k == 0 else _relocate(
                    instrs, 0, *_batch_slot_moves(batch_slots[0], batch_slots[k], tensor_base))
            else:
                prog = instrs if k == 0 else _relocate(instrs, 0, [
                    (inp.addr, inp.nbytes, slot_tensors[k][0]),
                    (out.addr, out.nbytes, slot_tensors[k][1])],
                    None if input_chk is None else
                    (slot_tensors[k][0], inp.nbytes, input_chks[k] - input_chks[0]))
            tag = _prog_tag(ro, prog, pa)
            tags.append(tag)
            img.write(pa, b"".join(seal(raw, i, pa, tag) for i, raw in enumerate(prog)))
            if one_program and batch > 1:
                slots.append(_batch_frame_slot(batch_slots[0], batch_slots[k], pa, len(instrs),
                                               tag, tensor_base, chk_addr))
            elif one_program:
                slots.append(FrameSlot(*slot_tensors[k], pa, len(instrs), tag,
                                       chk_addr(input_chks[k])))
        steps.append(AccelStep(names, prog_addrs[what][0], len(instrs), tags[0],
                               seg_tiles.get(what)))
    all_tensors = dict(tensors)
    for name in list(tensors):
        if name not in model.tensors:         # the layout conv's stored layout and views
            internal[name] = tensors.pop(name)
    # keep the image a whole number of beats
    img.alloc(0)
    layout = ("direct" if isinstance(plan, _DirectPlan) else "layout" if plan
              else "host" if layout_why else "raw")
    return Compiled(cfg, model, base, img.data, tensors, steps, reports, model.output,
                    model.input, slots, arena_range, input_layout=layout,
                    input_layout_why=layout_why, input_gather=isinstance(plan, _GatherPlan),
                    internal=internal,
                    mac_nonce=None if mac is None else mac.nonce,
                    input_check=chk_addr(input_chk),
                    input_row_bytes=inp.w * inp.c_mem,
                    host_checks={n: (chk_addr(off), all_tensors[n].w * all_tensors[n].c_mem)
                                 for n, off in chk.host_tables.items() if n != model.input},
                    batch=batch,
                    batch_from=(model.layers[bplan.split].name
                                if bplan.split < len(model.layers) else bplan.why)
                    if batch > 1 else "",
                    batch_tensors=[{n: t for n, t in all_tensors.items()
                                    if _batch_view(n, model)}]
                    + [{n: c for n, c in cp.items() if _batch_view(n, model)}
                       for cp in copies[1:]],
                    batch_input_checks=[chk_addr(input_chk)] + [
                        chk_addr(chk.host_tables.get(f"{model.input}@{b}"))
                        for b in range(1, batch)])


def _batch_view(name: str, model: QModel) -> bool:
    """Whether :attr:`Compiled.batch_tensors` has tensor ``name`` for each image: the model's
    tensors, and the stored rows of a conv whose STOREs pool vertically (``<output>@vpool``,
    :attr:`Compiled.vpooled`), which a check of every layer compares instead of its output."""
    return name in model.tensors or (name.endswith("@vpool")
                                      and name[:-len("@vpool")] in model.tensors)


_HOST_OPS = {LutLayer: "pointwise lookup table", MulLayer: "elementwise product",
             ConcatLayer: "concat", SliceLayer: "slice", PermuteLayer: "channel shuffle"}


def _conv_positions(layer: ConvLayer, cfg: HWConfig) -> int:
    """Channel positions of a conv/FC output as :func:`_compile_conv` stores it: ``mtiles *
    lanes_pad`` rounded up to the channel alignment."""
    prec = np.asarray(layer.precision)
    mtiles = max(1, -(-int(np.sum(prec == Precision.HI)) // cfg.lanes_hi),
                 -(-int(np.sum(prec == Precision.LO)) // cfg.lanes_lo))
    return _roundup(mtiles * cfg.lanes_pad, math.lcm(cfg.tn, cfg.beat_bytes))


def _copy_conv(cat: ConcatLayer, i: int, channels: int, out_signed: bool,
               cfg: HWConfig, precision: np.ndarray | None = None) -> ConvLayer:
    """The 1x1 conv that writes input ``i`` of ``cat`` (``channels`` channels) into its range of
    the Concat's tensor: identity weights, bias 0 and the Concat's ``(M_i, S_i)`` for every row,
    so the post-processing computes golden's ``concat_requant`` of that input exactly
    (``requantize(x, M_i, S_i)``; ReLU exactly when the output is unsigned, which clamps at 0
    as the unsigned range does). Rows split between the 4- and 8-bit lanes in the hardware's
    share (a weight of 1 fits both), or as ``precision`` (the producer's: the same positions)."""
    n_hi = min(channels, -(-channels * cfg.lanes_hi // cfg.lanes))
    prec = np.full(channels, Precision.LO, np.uint8)
    prec[channels - n_hi:] = Precision.HI
    if precision is not None:
        prec = np.asarray(precision, np.uint8)
    w = np.zeros((channels, channels, 1, 1), np.int8)
    w[np.arange(channels), np.arange(channels)] = 1
    return ConvLayer(name=f"{cat.name}:copy{i}", input=cat.inputs[i],
                     output=f"{cat.output}:in{i}", weight=w, precision=prec,
                     bias=np.zeros(channels, np.int64),
                     mult=np.full(channels, cat.mults[i], np.int64),
                     shift=np.full(channels, cat.shifts[i], np.int64), relu=not out_signed)


def _concat_plan(model: QModel, cfg: HWConfig) -> tuple[dict, dict]:
    """Concats stored as placement: ``({concat name: [(input, first position, positions,
    copy)]}, {concat name: why not})``, ``copy`` None or the :func:`_copy_conv` of the input.
    An input that is the output of a conv/FC nothing else reads (not the network output), whose
    requantization is the identity (``M = 2**S``: the quantizer gives such convs the Concat's
    scale, golden/quantize.py ``_concat_groups``) and whose format is the Concat's is stored by
    that conv straight into its range of the Concat's tensor (``mtiles * lanes_pad`` positions);
    any other ``act_bits`` input (a view, a host layer's output, a conv output read elsewhere
    too) is written into its range by a 1x1 copy conv on the PE array with the Concat's
    requantization. Every range is whole STOREs per row, so the activation check entries cover
    every byte (one entry per producer and row). Whether every producer runs on the accelerator
    is known only when it is compiled (:func:`_placement_view`)."""
    producer = {l.output: l for l in model.layers}
    readers = _readers(model)
    plan, why = {}, {}
    for l in model.layers:
        if not isinstance(l, ConcatLayer):
            continue
        out = model.tensors[l.output]
        if l.output == model.output:
            why[l.name] = "concat: it is the network output (stored in natural channel order)"
            continue
        if len(set(l.inputs)) != len(l.inputs):
            why[l.name] = "concat: an input appears twice (its bytes would have to be copied)"
            continue
        ranges, off = [], 0
        for i, t in enumerate(l.inputs):
            p, ts = producer.get(t), model.tensors[t]
            copy = None
            if not (isinstance(p, ConvLayer) and len(readers.get(t, ())) == 1
                    and t != model.output and l.mults[i] == 1 << l.shifts[i]
                    and (ts.bits, ts.signed) == (out.bits, out.signed)):
                if t == model.input or ts.bits != cfg.act_bits or out.bits != cfg.act_bits:
                    why[l.name] = (f"concat: input {t!r} ({ts.bits}-bit"
                                   f"{', the network input' if t == model.input else ''}) "
                                   f"cannot be copied by the {cfg.act_bits}-bit PE array")
                    break
                copy = _copy_conv(l, i, ts.shape[0], out.signed, cfg)
            n = _conv_positions(copy or p, cfg)
            ranges.append((t, off, n, copy))
            off += n
        else:
            plan[l.name] = ranges
    return plan, why


def _placement_view(layer, model: QModel, tensors: dict, concat_store: dict,
                    stored_into: dict) -> tuple:
    """A channel shuffle, a channel slice or a placed concat as a view of stored bytes:
    ``(TensorPlacement, "")``, or ``(None, why it runs on the host)``.

    * PermuteLayer ``y[c] = x[p[c]]``: the same bytes, position ``pos`` holds ``y``'s channel
      ``p^-1[perm[pos]]``.
    * SliceLayer over channels (all rows and columns): the same bytes, the excluded channels'
      positions ``-1`` (a conv reading it gives them zero weights, a pooling layer zero lanes,
      the host ignores them).
    * ConcatLayer planned by :func:`_concat_plan` whose ranges accelerated convs (producers or
      copies) all wrote (``stored_into[concat name][input index]``: the range's view): the
      concat's tensor."""
    if isinstance(layer, ConcatLayer):
        st = concat_store.get(layer.name)
        views = stored_into.get(layer.name, {})
        missing = [t for i, t in enumerate(layer.inputs) if i not in views]
        if st is None or missing:
            return None, (f"concat: input {missing[0]!r} was not stored into the concat's "
                          f"tensor by an accelerated conv (its producer runs on the host, or "
                          f"is the first conv reading the raw image in phases), so the concat "
                          f"copies")
        perm = np.full(st.c_mem, -1, np.int64)
        base = 0
        for i in range(len(layer.inputs)):    # the ranges' views, channels renumbered in order
            v = views[i]
            ok = v.perm >= 0
            perm[ok] = v.perm[ok] + base
            base += v.channels
        return dataclasses.replace(st, name=layer.output, perm=perm, _index=None), ""
    src = tensors[layer.input]
    if layer.input == model.input or src.fold is not None or src.s2d > 1 or \
            src.gather is not None or src.strided is not None:
        return None, (f"{layer.kind} of the network input's stored layout: no view of it (the "
                      f"host copies)")
    ok = src.perm >= 0
    perm = np.full(src.c_mem, -1, np.int64)
    if isinstance(layer, PermuteLayer):
        inv = np.empty(src.channels, np.int64)
        inv[np.asarray(layer.perm, np.int64)] = np.arange(src.channels)
        perm[ok] = inv[src.perm[ok]]
        n = src.channels
    else:
        _, h, w = model.tensors[layer.input].shape
        (c0, h0, w0), (c1, h1, w1), (cs, hs, ws) = layer.starts, layer.stops, layer.steps
        if (h0, w0, hs, ws) != (0, 0, 1, 1) or (h1, w1) != (h, w):
            return None, (f"slice over rows or columns (rows {h0}:{h1}:{hs}, columns "
                          f"{w0}:{w1}:{ws} of {h}x{w}): only a channel slice is a view of the "
                          f"stored tensor")
        c = src.perm[ok]
        sel = (c >= c0) & (c < c1) & ((c - c0) % cs == 0)
        perm[np.flatnonzero(ok)[sel]] = (c[sel] - c0) // cs
        n = len(range(c0, c1, cs))
    return dataclasses.replace(src, name=layer.output, channels=n, perm=perm, _index=None), ""


def _readers(model: QModel) -> dict[str, list]:
    """``{tensor: the layers reading it}`` (a layer reading it twice is listed twice)."""
    readers: dict[str, list] = {}
    for l in model.layers:
        for t in layer_inputs(l):
            readers.setdefault(t, []).append(l)
    return readers


def _lut_fusion(model: QModel, cfg: HWConfig) -> tuple[dict, dict]:
    """Which LutLayers the compiler fuses into the STORE of the conv/FC producing their input:
    ``({conv output: LutLayer}, {LutLayer name: why it is not fused})``. Fused when the input
    is a ConvLayer's output that nothing else reads (golden's order conv -> requant ->
    (residual) -> clamp -> table is then the post-processing unit's) and both tensors are
    ``act_bits`` wide; the conv's own output is never stored. Whether the conv itself runs on
    the accelerator is decided when it is compiled (a table of a host conv runs on the host)."""
    producer = {l.output: l for l in model.layers}
    readers = _readers(model)
    fuse, why = {}, {}
    for l in model.layers:
        if not isinstance(l, LutLayer):
            continue
        p = producer.get(l.input)
        xs, ys = model.tensors[l.input], model.tensors[l.output]
        if not isinstance(p, ConvLayer):
            why[l.name] = (f"pointwise lookup table after a {p.kind if p else 'network input'} "
                           f"layer: only a table after a conv/FC is fused into its STORE")
        elif len(readers.get(l.input, ())) != 1 or l.input == model.output:
            why[l.name] = (f"pointwise lookup table: its input {l.input!r} is also read by "
                           f"another layer, so the conv's output must be stored as it is")
        elif xs.bits != cfg.act_bits or ys.bits != cfg.act_bits:
            why[l.name] = (f"pointwise lookup table from {xs.bits} to {ys.bits} bits: the "
                           f"post-processing table maps {cfg.act_bits}-bit values")
        else:
            fuse[l.input] = l
    return fuse, why


def _vpool_candidates(model: QModel, cfg: HWConfig) -> dict:
    """``{conv name: max pool}`` for the MaxPool 3x3, stride 2, padding 1 layers (ResNet's
    stem pool) whose input only they read, produced by a conv with a ReLU (an unsigned
    output: the store unit's max is over unsigned bytes): the conv's STOREs can pool the rows
    (``Store.vpool``, hdl/store.py) and the pooling unit does the 1x3 rest. Empty when the
    configuration has no row array (``vpool_entries`` 0)."""
    if not cfg.vpool_entries:
        return {}
    readers = _readers(model)
    out = {}
    for l in model.layers:
        if not isinstance(l, ConvLayer) or l.groups != 1 or not l.relu or \
                model.tensors[l.output].signed:
            continue
        rd = readers.get(l.output, [])
        if l.output == model.output or len(rd) != 1 or not isinstance(rd[0], MaxPoolLayer):
            continue
        p = rd[0]
        if p.kernel[0] == 3 and p.stride[0] == 2 and p.padding[0] == p.padding[2] == 1 and \
                model.tensors[l.output].shape[1] >= 2:
            out[l.name] = p
    return out


def _vpool_row_fits(cfg: HWConfig, ow: int, mtiles: int) -> bool:
    """Whether the store unit's vertical-pooling row array takes an output row of ``ow``
    pixels in ``mtiles`` mtiles: every mtile's row fits (an entry per ``post_lanes`` group of a
    pixel) and a row is at least two words of ``post_groups`` entries (the unit reads a word
    together and does not forward a write to the next cycle's read)."""
    groups = cfg.lanes_pad // cfg.post_lanes
    return mtiles * ow * groups <= cfg.vpool_entries and ow * (groups // cfg.post_groups) >= 2


def _vpool_fits(layer: ConvLayer, pool: MaxPoolLayer, model: QModel, cfg: HWConfig,
                tensors: dict, balance: bool = False) -> bool:
    """Whether ``layer``'s tiles can pool vertically in its STOREs (:func:`_compile_conv`
    tiles rows of at least 2, whole rows of every mtile in the row array) and the pooling
    unit can do the rest."""
    src = tensors.get(layer.input)
    if src is None or (src.signed and not src.offset) or src.fold is not None:
        return False
    _, oh, ow = model.tensors[layer.output].shape
    prec = np.asarray(layer.precision)
    mtiles = max(1, -(-int(np.sum(prec == Precision.HI)) // cfg.lanes_hi),
                 -(-int(np.sum(prec == Precision.LO)) // cfg.lanes_lo))
    if not _vpool_row_fits(cfg, ow, mtiles):
        return False
    rows = cfg.acc_depth // ow
    if rows < 2:
        return False
    sy, kh = layer.stride[0], layer.kernel[0]
    try:
        rows = _fit_rows(layer.name, rows, sy, kh, src.w * (src.c_mem // cfg.tn), src, cfg)
    except CompileError:
        return False
    if balance:
        rows = -(-oh // -(-oh // rows))
    if rows < 2 or tensors[layer.input].c_mem // cfg.tn > 1023:
        return False
    # the horizontal rest on the pooling unit (its input: the stored rows of the conv)
    c_mem = _roundup(mtiles * cfg.lanes_pad, math.lcm(cfg.tn, cfg.beat_bytes))
    return pool.kernel[1] <= 15 and 1 <= pool.stride[1] <= 7 and \
        cfg.lanes_pad % cfg.tn == 0 and \
        pool.kernel[1] * ow * c_mem // cfg.tn <= cfg.act_depth // 2


def _offset_tensors(why: dict) -> set:
    """Signed tensors the compiler stores offset-binary (``x + 2**(bits-1)`` as an unsigned
    byte) so that the accelerated layers reading them see unsigned bytes: ``act_bits`` wide,
    not the network output, every reader able to read it that way (:func:`_offset_why`):

    * a conv reading it as its input, padded or not: it folds ``-2**(bits-1) * sum(w)`` into
      its bias and its COMPUTE pads with the stored zero ``2**(bits-1)`` (``pad_ob``);
    * a conv reading it as its residual: its STORE decodes the byte offset-binary
      (``res_offset``);
    * max / average / global average pooling, whose output is then stored offset-binary too
      (the maximum and the rounded average of ``x + k`` are those of ``x`` plus ``k``; an
      average's padding reads the stored zero), and a flatten, whose view shares the bytes;
    * a layer the host runs (a lookup table, a product, a grouped conv ...), through
      ``TensorPlacement.from_memory``.

    An accelerated conv stores it through its fused table, else through an identity table that
    adds the offset (``conv+ob``; the first conv reading the raw image in phases the same way
    in every phase's STOREs, ``conv^+lut`` / ``conv^+ob``, :func:`_compile_direct`); a pooling
    layer from its offset-binary input; a host layer through ``TensorPlacement.to_memory``.
    ``why``: :func:`_offset_why` of the model."""
    return {t for t, w in why.items() if not w}


#: Layers that read an offset-binary tensor exactly when the tensor's placement says so.
_OFFSET_READERS = (ConvLayer, LutLayer, MulLayer)
#: Layers whose output keeps the offset of their input (pooling computes it so, a flattened
#: view shares its bytes).
_OFFSET_KEEPERS = (MaxPoolLayer, AvgPoolLayer, GlobalAvgPoolLayer, FlattenLayer)


def _offset_why(model: QModel, cfg: HWConfig) -> dict:
    """``{signed layer output: ""}`` for the tensors :func:`_offset_tensors` stores
    offset-binary, ``{tensor: why not}`` for the others. A pooling or flatten reader keeps the
    offset in its output, so it needs its output offset-binary too, and a flattened view is
    offset-binary only with its tensor (a fixed point)."""
    readers = _readers(model)
    why: dict[str, str] = {}
    views = {l.output: l for l in model.layers if isinstance(l, FlattenLayer)}
    for t in (l.output for l in model.layers):
        spec_t = model.tensors[t]
        if not spec_t.signed:
            continue
        if spec_t.bits != cfg.act_bits:
            why[t] = (f"a {spec_t.bits}-bit tensor (offset-binary bytes hold "
                      f"{cfg.act_bits}-bit values)")
        elif t == model.output:
            why[t] = "the network output, stored two's complement"
        else:
            rd = readers.get(t, [])
            bad = next((r for r in rd
                        if not isinstance(r, _OFFSET_READERS + _OFFSET_KEEPERS)), None)
            why[t] = "" if bad is None else (f"also read by the {bad.kind} layer {bad.name!r}, "
                                             f"which reads two's complement")
            if not why[t] and not any(isinstance(r, _OFFSET_KEEPERS) or (
                    isinstance(r, ConvLayer) and r.input == t) for r in rd):
                # only residual reads (STORE res_signed) and host layers: they read two's
                # complement as it is, and the producer's STORE needs no identity table
                why[t] = ("read only as a residual or by the host, which read two's complement "
                          "as it is")
    changed = True
    while changed:
        changed = False
        for t, w in why.items():
            if w:
                continue
            v = views.get(t)
            if v is not None and why.get(v.input, "?"):
                why[t] = (f"the flattened view of {v.input!r}, which is not stored "
                          f"offset-binary: {why.get(v.input) or 'unsigned'}")
                changed = True
                continue
            for r in readers.get(t, []):
                if isinstance(r, _OFFSET_KEEPERS) and why.get(r.output, "?"):
                    why[t] = (f"also read by the {r.kind} layer {r.name!r}, whose output "
                              f"{r.output!r} is not stored offset-binary")
                    changed = True
                    break
    return why


def _host_reason(layer, model: QModel, cfg: HWConfig, tensors: dict, whys: dict) -> str:
    """Why a valid layer runs on the host in golden's integer arithmetic ("" when the
    accelerator runs it). Never silently runs something the hardware computes differently: a
    conv reading a signed tensor would be wrong on the unsigned-input PE array. ``whys``:
    :func:`_offset_why` of the model."""
    if type(layer) in _HOST_OPS:
        return f"{_HOST_OPS[type(layer)]}: no accelerator unit for it"
    src = tensors[layer.input]
    if src.signed and not src.offset:
        why = whys.get(layer.input)
        if not why:
            # every reader could read it offset-binary, but it is a view (a flatten, or a
            # channel shuffle / slice placed as a view) of stored bytes that are two's
            # complement: name the stored tensor and why (every accelerated STORE, the first
            # conv's phases too, and every host step write a tensor of _offset_tensors
            # offset-binary)
            prod = {l.output: l for l in model.layers}
            t, kinds = layer.input, []
            while isinstance(prod.get(t), (FlattenLayer, PermuteLayer, SliceLayer)) and \
                    not whys.get(t):
                kinds.append(prod[t].kind)
                t = prod[t].input
            p = prod.get(t)
            why = whys.get(t) or (f"its producer {p.name!r} ({p.kind}) stores it two's "
                                  f"complement" if p is not None else "the network input")
            if kinds:
                why = (f"a {' of a '.join(kinds)} view of {t!r}, which is not stored "
                       f"offset-binary: {why}")
        return (f"signed input: the PE array multiplies unsigned activations and "
                f"{layer.input!r} is not stored offset-binary: {why}")
    if layer.groups > 1 and not layer.groups == src.channels == layer.out_channels:
        return (f"grouped convolution (groups = {layer.groups}, {src.channels} channels): the "
                f"PE array runs depthwise ones (groups = channels) only")
    if src.c_mem // cfg.tn > 1023 and _fc_as_conv(layer, tensors, cfg) is None:
        return (f"{src.c_mem} input channel positions > {1023 * cfg.tn} (1023 groups of tn = "
                f"{cfg.tn})")
    return ""


def _prog_tag(ro: bytes, prog: list, prog_addr: int) -> int:
    """PROG_TAG of a program: a 32-bit BLAKE2s digest of the weights and lane parameters
    before the programs (``ro``), the program's address and its instructions (before sealing).
    Another compilation (other weights, parameters, placement or program) gets another tag, so
    its program, even loaded at the same address, is refused at its first instruction
    (INSTR_CRC). Not a CRC: a CRC over blocks followed by their own CRC trailers would not
    change when a block and its trailer change together."""
    h = hashlib.blake2s(ro, digest_size=4)
    h.update(prog_addr.to_bytes(4, "little") + b"".join(prog))
    return int.from_bytes(h.digest(), "little")


def _relocate(instrs: list, delta: int, moves: list,
              chk_move: tuple | list | None = None) -> list:
    """Re-encode a program's instructions with every tensor address (LOAD_ROWS.addr,
    STORE.out_addr and STORE.res_addr) moved by ``delta`` and then, inside a tensor
    ``(addr, nbytes, new_addr)`` of ``moves``, to that tensor's copy at ``new_addr`` (a frame
    slot's input and output). Programs are emitted with arena-relative tensor addresses.
    ``chk_move = (addr, nbytes, d)`` (or a list of them: a batched slot's B inputs): a checked
    LOAD_ROWS (or residual read) of ``[addr, addr + nbytes)`` (a slot's input, after the moves)
    reads its check entries ``d`` beats further."""
    chk_moves = [] if not chk_move else [chk_move] if isinstance(chk_move, tuple) \
        else list(chk_move)

    def moved(addr):
        addr += delta
        for lo, n, new in moves:
            if lo <= addr < lo + n:
                return addr - lo + new
        return addr

    def chk_delta(addr):
        return next((d for lo, n, d in chk_moves if 0 <= addr - lo < n), 0)
    out = []
    for raw in instrs:
        op, f = decode(raw)
        if op == Opcode.LOAD_ROWS:
            f["addr"] = moved(f["addr"])
            if f["chk_beats"]:
                f["chk_off"] += chk_delta(f["addr"])
        elif op == Opcode.STORE:
            f["out_addr"] = moved(f["out_addr"])
            if f["res_en"]:
                f["res_addr"] = moved(f["res_addr"])
                if f["res_chk_beats"]:
                    f["res_chk_off"] += chk_delta(f["res_addr"])
        out.append(encode(op, **f) if f else encode(op))
    return out


@dataclass
class _DirectPlan:
    """The first conv reads the raw image directly (see :func:`_direct_plan`)."""

    layer: ConvLayer             #: the conv that reads the network input
    view: TensorPlacement        #: the raw image as ``(H, W*C/vb, vb)`` pixels of ``vb`` bytes
    phases: list                 #: per phase ``(ConvLayer on the view, output columns)``

    tn: int                      #: the configuration's tn

    @property
    def views(self) -> list:
        """The placements the phases read."""
        return [self.view]

    @property
    def sets_per_pixel(self) -> float:
        """Weight sets (PE beats) per output pixel and mtile, over the phases."""
        n = sum(ow_f for _, ow_f in self.phases)
        return sum(c.kernel[0] * c.kernel[1] * (c.weight.shape[1] // self.tn) * ow_f
                   for c, ow_f in self.phases) / n

    def cost(self, cfg: HWConfig, oh: int) -> int:
        """Estimated PE-array cycles of an mtile over all phases (:func:`_conv_cost`)."""
        return sum(_conv_cost(cfg, oh, ow_f, c.kernel[0] * c.kernel[1] *
                              (c.weight.shape[1] // self.tn)) for c, ow_f in self.phases)


def _conv_cost(cfg: HWConfig, oh: int, ow: int, sets: int) -> int:
    """Estimated cycles of one mtile of a conv with ``sets`` weight sets a pixel on an
    ``oh x ow`` output: per pixel tile (whole rows up to ``acc_depth`` pixels) every set takes
    its pixels' beats, or the beats of loading the set when the tile has fewer pixels (the
    weight port delivers one beat a cycle)."""
    rows = max(1, min(oh, cfg.acc_depth // max(1, ow)))
    set_beats = cfg.words_per_set * cfg.wbuf_word_beats
    full, last = divmod(oh, rows)
    return sets * (full * max(rows * ow, set_beats) + (max(last * ow, set_beats) if last else 0))


def _stem_conv(model: QModel, cfg: HWConfig):
    """``(conv, "")`` when the network input feeds exactly one conv, not as its residual, whose
    datapath takes the input's bits (what the direct and gathering input plans need), else
    ``(None, why)``."""
    ispec = model.tensors[model.input]
    users = [l for l in model.layers if getattr(l, "input", None) == model.input
             or getattr(l, "residual", None) == model.input]
    if len(users) != 1 or not isinstance(users[0], ConvLayer):
        return None, "the input feeds more than one layer or not a convolution"
    layer = users[0]
    if layer.residual is not None:
        return None, f"layer {layer.name!r} has a residual input"
    if ispec.signed or ispec.bits > cfg.act_bits:
        return None, f"{ispec.bits}-bit input into the {cfg.act_bits}-bit datapath"
    return layer, ""


def _direct_plan(model: QModel, cfg: HWConfig):
    """``(plan, "")`` when the only layer reading the network input is a conv that can read the
    raw image (HWC bytes, ``C_mem = C``) directly, else ``(None, why)``.

    The conv reads the image as an HWC tensor of ``vb = lcm(tn, beat)``-byte pixels (a row of
    ``W*C`` bytes is ``W*C/vb`` of them). Output column ``X`` needs, per kernel row, the bytes
    ``[C*(sx*X - pl), C*(sx*X - pl + kw))`` of its input row; their position in the ``vb``-byte
    pixels repeats every ``P = vb / gcd(C*sx, vb)`` columns. Phase ``f < P`` (the columns
    ``X = P*j + f``) is a convolution on the byte view with stride ``(sy, P*C*sx/vb)``, the
    kernel columns that cover its bytes and the layer's weights scattered onto their bytes
    (the other weights 0): the same products, the same accumulators. Its STORE writes the output
    pixels with stride ``P * C_mem`` from column ``f``: the ``P`` phases fill the layer's output
    tensor in its usual placement. No stored input layout, no padding channels: the bytes of the
    image are read as they are (the rows once per phase)."""
    ispec = model.tensors[model.input]
    c, h, w = ispec.shape
    vb = math.lcm(cfg.tn, cfg.beat_bytes)
    layer, why = _stem_conv(model, cfg)
    if layer is None:
        return None, why
    if (w * c) % vb:
        return None, (f"an image row of {w} x {c} = {w * c} bytes is not a multiple of "
                      f"{vb} bytes (the accelerator reads the image as {vb}-byte pixels)")
    m, _, kh, kw = layer.weight.shape
    sy, sx = layer.stride
    pt, pl, pb, pr = layer.padding
    _, oh, ow = model.tensors[layer.output].shape
    step = c * sx
    P = vb // math.gcd(step, vb)
    sx_v = P * step // vb
    if ow % P:
        return None, (f"the output width {ow} of layer {layer.name!r} is not a multiple of "
                      f"{P} (its phases on the {vb}-byte pixels)")
    if sx_v > 7 or kh > 15:
        return None, f"layer {layer.name!r}: a phase's stride {sx_v} or kernel {kh} too large"
    w_v = w * c // vb
    wt0 = np.asarray(layer.weight)
    phases = []
    for f in range(P):
        lo = c * (sx * f - pl)                     # first byte of column f's window
        hi = lo + c * kw
        k0, k1 = lo // vb, (hi - 1) // vb          # view pixels it spans
        kv = k1 - k0 + 1
        if kv > 15:
            return None, f"layer {layer.name!r}: a phase's kernel of {kv} columns exceeds 15"
        wt = np.zeros((m, vb, kh, kv), wt0.dtype)
        for kx in range(kw):
            for ch in range(c):
                b = lo + c * kx + ch - k0 * vb
                wt[:, b % vb, :, b // vb] = wt0[:, ch, :, kx]
        ow_f = ow // P
        pr_f = max(0, (ow_f - 1) * sx_v + k0 + kv - w_v)
        conv = dataclasses.replace(layer, name=layer.name, input=f"{model.input}@bytes",
                                   output=f"{layer.output}@phase{f}", weight=wt,
                                   stride=(sy, sx_v), padding=(pt, -k0, pb, pr_f))
        phases.append((conv, ow_f))
    view = TensorPlacement(f"{model.input}@bytes", 0, vb, vb, h, w_v, np.arange(vb), False,
                           ispec.bits)
    return _DirectPlan(layer, view, phases, cfg.tn), ""


def _compile_direct(plan: _DirectPlan, raw: TensorPlacement, model: QModel,
                    mview: _ModelView, cfg: HWConfig, spec, img: _Image, tensors: dict, place,
                    instrs: list, seq_base: int, stores_before: int, producers: dict, *,
                    mac=None, lut=None, offset_out: bool = False, vpool=None):
    """Emit the phases of :func:`_direct_plan` (one report for the layer); ``lut``: a fused
    LutLayer (every phase's STOREs carry its table); ``offset_out``: store the (signed) output
    offset-binary (:func:`_offset_tensors`), through that table or else through the identity
    table (every phase is an ordinary conv to :func:`_compile_conv`, which builds either).
    ``vpool``: the MaxPool the phases' STOREs pool vertically when every phase can
    (:func:`_vpool_fits`; each phase's tiles run top to bottom), into ``<output>@vpool``
    (``mview`` has its spec); the report's kind then ends in ``+vpool``."""
    layer = plan.layer
    final = lut.output if lut is not None else layer.output
    for view in plan.views:
        view.addr = raw.addr
        tensors[view.name] = view
        mview.tensors[view.name] = TensorSpec(view.name, (view.channels, view.h, view.w),
                                              raw.bits, False, 1.0)
    ospec = model.tensors[layer.output]
    n_ph = len(plan.phases)
    out = []

    def place_phase(f):
        def pl(name, oc, oh, ow, perm_out):
            if not out:
                out.append(place(final, oc, oh, ow * n_ph, perm_out))
                if offset_out:
                    out[0].offset = 1 << (out[0].bits - 1)
            d = out[0]
            t = TensorPlacement(name, d.addr + f * d.c_mem, oc, n_ph * d.c_mem, oh, ow,
                                perm_out, d.signed, d.bits, offset=d.offset)
            tensors[name] = t
            return t
        return pl

    total = None
    n_pkgs = 0
    for conv, ow_f in plan.phases:
        mview.tensors[conv.output] = dataclasses.replace(
            ospec, name=conv.output, shape=(ospec.shape[0], ospec.shape[1], ow_f))
    if vpool is not None and (lut is not None or offset_out or not all(
            _vpool_fits(conv, vpool, mview, cfg, tensors, balance=True)
            for conv, _ in plan.phases)):
        vpool = None
    if vpool is not None:
        final = f"{layer.output}@vpool"
    for f, (conv, ow_f) in enumerate(plan.phases):
        lut_f = None
        if lut is not None:
            # the phase's own view of the table's output
            lut_f = dataclasses.replace(lut, input=conv.output, output=f"{conv.output}:lut")
            mview.tensors[lut_f.output] = dataclasses.replace(
                model.tensors[final], name=lut_f.output,
                shape=(ospec.shape[0], ospec.shape[1], ow_f))
        rep, n = _compile_conv(conv, mview, cfg, spec, img, tensors, place_phase(f), instrs,
                               seq_base + n_pkgs, stores_before, producers, balance=True,
                               mac=mac, lut=lut_f, offset_out=offset_out,
                               vpool=vpool is not None)
        n_pkgs += n
        stores_before += rep.ptiles
        if total is None:
            total = rep
        else:
            for k in ("ptiles", "weight_bytes", "dma_read_bytes", "dma_write_bytes",
                      "pe_beats"):
                setattr(total, k, getattr(total, k) + getattr(rep, k))
    # STOREs complete in order: the last phase's tiles cover the rows of every phase
    last = plan.phases[-1][0].output
    producers[final] = producers[f"{last}:lut" if lut is not None else
                                 f"{last}@vpool" if vpool is not None else last]
    total.kind = "conv^" + ("+lut" if lut is not None else "+ob" if offset_out else "") + (
        "+vpool" if vpool is not None else "")
    total.out_shape = ospec.shape
    m, c, kh, kw = layer.weight.shape
    total.macs = int(m * c * kh * kw * ospec.shape[1] * ospec.shape[2])
    return total, n_pkgs


@dataclass
class _GatherPlan(_DirectPlan):
    """The first conv reads the raw image through gathering LOAD_ROWS (see
    :func:`_gather_plan`); ``view`` is the first phase's."""

    gviews: list = field(default_factory=list)   #: per phase: the stored layout it reads

    @property
    def views(self) -> list:
        return self.gviews


#: The largest values of the gather fields of ``LoadRows`` (hdl/isa.py).
_GATHER_LIMITS = {"row_beats": (1 << 12) - 1, "seg_beats": (1 << 8) - 1, "seg_rows": 15,
                  "pix": (1 << 12) - 1, "pix_beats": (1 << 10) - 1}


def _gather_plan(model: QModel, cfg: HWConfig):
    """``(plan, "")`` when the only layer reading the network input is a conv whose input rows
    gathering LOAD_ROWS can fold on chip, else ``(None, why)``.

    The conv (stride ``(sy, sx)``, ``kw`` columns, ``C`` channels) runs in ``P`` phases (the
    output columns ``X = P*j + f``) with ``L = P*C*sx`` a multiple of the beat and ``L >= C*kw``:
    the ``C*kw`` bytes output column ``X`` needs from one input row start at ``C*(sx*X - pl)``,
    so phase ``f``'s windows of a row are consecutive ``L``-byte segments from byte
    ``shift = C*(sx*f - pl)``. A stored pixel ``(Y, j)`` is the segments of raw rows
    ``sy*Y .. sy*Y + sy - 1`` (``sy*L`` bytes, padded to ``lcm(tn, beat)``): a space-to-depth by
    ``sy`` in the rows and a column fold, built by the loader from the raw rows as they stream
    in (zero outside the row). The phase is a ``kh' x 1`` stride-1 convolution on it
    (``kh'`` kernel rows of ``sy`` raw rows, as :func:`space_to_depth_conv`) with the layer's
    weights on their bytes (0 elsewhere): the same products, bit-exact. Its STOREs write every
    ``P``-th output pixel, as :func:`_direct_plan`'s. ResNet-18 on ``z020``: 4 phases of 12 sets
    (48 bytes a pixel for 147 useful), the density of the host-prepared layout."""
    ispec = model.tensors[model.input]
    c, h, w = ispec.shape
    layer, why = _stem_conv(model, cfg)
    if layer is None:
        return None, why
    bb = cfg.beat_bytes
    if (w * c) % bb:
        return None, f"an image row of {w * c} bytes is not a multiple of the {bb}-byte beat"
    m, _, kh, kw = layer.weight.shape
    sy, sx = layer.stride
    pt, pl, pb, pr = layer.padding
    _, oh, ow = model.tensors[layer.output].shape
    if h % sy:
        return None, f"the image height {h} is not a multiple of the row stride {sy}"
    step = c * sx
    p0 = bb // math.gcd(step, bb)
    P = p0 * max(1, -(-(c * kw) // (step * p0)))
    L = P * step
    if ow % P:
        return None, f"the output width {ow} is not a multiple of {P} phases"
    vb = math.lcm(cfg.tn, bb)
    pix_bytes = _roundup(sy * L, vb)
    ky0 = (-pt) // sy
    kh2 = (kh - 1 - pt) // sy - ky0 + 1
    h_s, ow_f = h // sy, ow // P
    fields = {"row_beats": w * c // bb, "seg_beats": L // bb, "seg_rows": sy, "pix": ow_f,
              "pix_beats": pix_bytes // bb}
    for k, v in fields.items():
        if v > _GATHER_LIMITS[k]:
            return None, f"the gathering load's {k} = {v} exceeds {_GATHER_LIMITS[k]}"
    if kh2 > 15 or pix_bytes // cfg.tn > 1023:
        return None, (f"layer {layer.name!r}: a gathered pixel of {pix_bytes} bytes or "
                      f"{kh2} kernel rows is too large")
    wt0 = np.asarray(layer.weight)
    phases, views = [], []
    for f in range(P):
        shift = c * (sx * f - pl)
        if not -(1 << 15) <= shift < 1 << 15:
            return None, f"the gathering load's shift {shift} does not fit 16 bits"
        wt = np.zeros((m, pix_bytes, kh2, 1), wt0.dtype)
        for ky in range(kh2):
            for dy in range(sy):
                kr = sy * (ky + ky0) + dy + pt
                if 0 <= kr < kh:
                    for kx in range(kw):
                        wt[:, dy * L + kx * c:dy * L + (kx + 1) * c, ky, 0] = wt0[:, :, kr, kx]
        pb2 = max(0, oh + kh2 - 1 - h_s + ky0)
        view = TensorPlacement(f"{model.input}@gather{f}", 0, pix_bytes, pix_bytes, h_s, ow_f,
                               np.arange(pix_bytes), False, ispec.bits,
                               gather=dict(fields, shift=shift, row_bytes=w * c))
        conv = dataclasses.replace(layer, name=layer.name, input=view.name,
                                   output=f"{layer.output}@phase{f}", weight=wt,
                                   stride=(1, 1), padding=(-ky0, 0, pb2, 0))
        phases.append((conv, ow_f))
        views.append(view)
    return _GatherPlan(layer, views[0], phases, cfg.tn, views), ""


@dataclass
class _ModelView:
    """The tensor specs the conv and pooling compilers look up: the model's and the internal
    ones of the input layout (:func:`_layout_plan`)."""

    tensors: dict
    layers: tuple = ()          #: the model's layers (a depthwise conv's producer looks ahead)


@dataclass
class _LayoutPlan:
    """The accelerator's input layout: a convolution with 0/1 weights on a byte view of the raw
    image (see :func:`_layout_plan`)."""

    stored: TensorPlacement      #: the stored layout the first layers read (internal tensor)
    conv: ConvLayer              #: the layout conv (input: the byte view, output: phase view)
    view: TensorPlacement        #: the raw image as ``(H, W*C/vb, vb)`` pixels of ``vb`` bytes
    period: int                  #: stored pixels per output pixel of the layout conv


def _layout_plan(model: QModel, cfg: HWConfig, geom: tuple):
    """How the accelerator builds the stored input layout from the raw image; ``(plan, "")``,
    ``(None, "")`` when the raw HWC bytes already are the stored layout, or ``(None, why)``
    when the host must lay the input out.

    The host writes the image as it is: HWC bytes, ``C_mem = C``. The accelerator reads it as an
    HWC tensor of ``vb = lcm(tn, beat)``-byte pixels (a row of ``W*C`` bytes is ``W*C/vb`` such
    pixels). A stored pixel ``(Y, X)`` of a column-folded, space-to-depth (``s``) input is, per
    kernel row ``dy < s``, bytes of raw row ``s*Y + dy`` at offsets ``C*s*sx*X + o``; ``P``
    consecutive stored pixels (``P*C*s*sx`` a multiple of ``vb``) are one output pixel of a
    convolution with stride ``(s, P*C*s*sx/vb)`` on the byte view whose ``P * C_mem'`` output
    channels (phase-major: ``phase * C_mem' + position``) copy one byte each (weight 1, ``M = 2,
    S = 1``: ``(2x + 1) >> 1 = x``): written with the output-pixel stride ``P * C_mem'``, the
    bytes are exactly the stored tensor. Zero padding (image borders, rows past the image) is the
    address generator's. Every position of an mtile's ``lanes`` is a row (LO or HI by its lane:
    the fixed share holds), the ``lanes_pad - lanes`` pad lanes are written 0 and are padding
    positions of the stored layout."""
    cf, h_s, w_s, fold, s = geom
    ispec = model.tensors[model.input]
    c, h, w = ispec.shape
    vb = math.lcm(cfg.tn, cfg.beat_bytes)
    if fold is None and c % vb == 0:
        return None, ""                  # HWC with C_mem = C: the raw bytes as they are
    if ispec.signed or ispec.bits > cfg.act_bits:
        return None, (f"{ispec.bits}-bit input into the {cfg.act_bits}-bit datapath")
    if (w * c) % vb:
        return None, (f"an image row of {w} x {c} = {w * c} bytes is not a multiple of "
                      f"{vb} bytes (the layout conv reads the image as {vb}-byte pixels)")
    if cfg.lanes_pad % vb:
        return None, f"lanes_pad = {cfg.lanes_pad} is not a multiple of {vb}"
    if cfg.lanes == cfg.lanes_pad:
        c_mem = _roundup(cf, vb)
    else:                                # pad lanes hold no data: whole lanes_pad blocks
        c_mem = -(-cf // cfg.lanes) * cfg.lanes_pad
    data_pos = [q for q in range(c_mem) if q % cfg.lanes_pad < cfg.lanes][:cf]
    perm = np.full(c_mem, -1, np.int64)
    perm[data_pos] = np.arange(cf)
    kw_f, sx_f, pl_f = fold[:3] if fold is not None else (1, 1, 0)
    step = c * s * sx_f                  # raw-row bytes per stored pixel
    P = math.lcm(vb // math.gcd(step, vb), cfg.lanes_pad // math.gcd(c_mem, cfg.lanes_pad))
    sx_v = P * step // vb
    w_store = _roundup(w_s, P) if fold is not None else w_s
    if w_store % P:
        return None, (f"an image width of {w} is not a multiple of {P} (the layout conv "
                      f"writes {P} pixels at a time)")
    if sx_v > 7:
        return None, f"the layout conv's stride {sx_v} exceeds 7"
    w_o = w_store // P
    if w_o > cfg.acc_depth:
        return None, f"the layout conv's {w_o} output columns exceed acc_depth"
    # byte offset o and kernel row dy of every (phase, stored channel)
    ks = np.arange(cf)
    cp = s * s * c
    kc, c2 = ks // cp, ks % cp
    dy, dx, ch = c2 // (s * c), (c2 // c) % s, c2 % c
    offs = [c * (s * (sx_f * ph + kc - pl_f) + dx) + ch for ph in range(P)]
    o_min = min(int(o.min()) for o in offs)
    pl_v = max(0, -(o_min // vb))
    kw_v = max(int(o.max()) for o in offs) // vb + pl_v + 1
    if kw_v > 15:
        return None, f"the layout conv's kernel of {kw_v} columns exceeds 15"
    w_v = w * c // vb
    rows = [p for p in range(P * c_mem) if p % cfg.lanes_pad < cfg.lanes]
    wt = np.zeros((len(rows), vb, s, kw_v), np.int8)
    prec = np.array([Precision.HI if p % cfg.lanes_pad >= cfg.lanes_lo else Precision.LO
                     for p in rows], np.uint8)
    for q, p in enumerate(rows):
        ph, k = divmod(p, c_mem)
        if perm[k] < 0:
            continue                     # a padding position: 0
        o = int(offs[ph][perm[k]]) + pl_v * vb
        wt[q, o % vb, int(dy[perm[k]]), o // vb] = 1
    n = len(rows)
    name = f"{model.input}@stored"
    conv = ConvLayer(f"{model.input}:layout", f"{model.input}@bytes", f"{name}@phases", wt, prec,
                     np.zeros(n, np.int64), np.full(n, 2, np.int64), np.ones(n, np.int64),
                     stride=(s, sx_v),
                     padding=(0, pl_v, h_s * s - h, max(0, (w_o - 1) * sx_v + kw_v - pl_v - w_v)),
                     relu=True)
    stored = TensorPlacement(name, 0, cf, c_mem, h_s, w_store, perm, False, ispec.bits,
                             fold=fold, s2d=s, natural=(c, h, w) if fold is not None else None)
    view = TensorPlacement(conv.input, 0, vb, vb, h, w_v, np.arange(vb), False, ispec.bits)
    return _LayoutPlan(stored, conv, view, P), ""


def _compile_layout(plan: _LayoutPlan, raw: TensorPlacement, mview: _ModelView, cfg: HWConfig,
                    spec, img: _Image, tensors: dict, instrs: list, seq_base: int,
                    producers: dict, *, mac=None):
    """Emit the layout conv of :func:`_layout_plan` (the first tiles of the first program)."""
    st, conv, view = plan.stored, plan.conv, plan.view
    view.addr = raw.addr
    tensors[view.name] = view
    mview.tensors[view.name] = TensorSpec(view.name, (view.channels, view.h, view.w),
                                          raw.bits, False, 1.0)
    oname = conv.output
    mview.tensors[oname] = TensorSpec(oname, (conv.weight.shape[0], st.h, st.w // plan.period),
                                      cfg.act_bits, False, 1.0)

    def place_view(name, oc, oh, ow, perm_out):
        assert len(perm_out) == plan.period * st.c_mem, (len(perm_out), plan.period, st.c_mem)
        t = TensorPlacement(name, st.addr, oc, len(perm_out), oh, ow, perm_out, False, st.bits)
        tensors[name] = t
        return t

    rep, n_pkgs = _compile_conv(conv, mview, cfg, spec, img, tensors, place_view, instrs,
                                seq_base, 0, producers, mac=mac)
    producers[st.name] = producers[oname]
    rep.kind = "layout"
    rep.macs = 0                         # data movement: no MAC of the model
    return rep, n_pkgs


def _fold_candidate(model: QModel, cfg: HWConfig):
    """``(layer, s)``: the conv layer whose input (the network input) is worth storing
    column-folded, after a space-to-depth by ``s`` (1: none); ``(None, 1)`` otherwise.

    Worth it when the input has fewer channels than ``tn`` and the layout needs fewer weight
    sets per mtile (``kh * ceil(C*kw/tn)`` against ``kh * kw * ceil(C/tn)`` unfolded; with a
    space-to-depth by the stride ``s``, ``kh' * ceil(s*s*C*kw'/tn)`` of the equivalent
    stride-1 kernel, :func:`space_to_depth_conv`); the input feeds only that layer, and the
    layer runs on the accelerator.
    """
    users = [l for l in model.layers if getattr(l, "input", None) == model.input
             or getattr(l, "residual", None) == model.input]
    if len(users) != 1 or not isinstance(users[0], ConvLayer):
        return None, 1
    layer = users[0]
    c, h, w = model.tensors[model.input].shape
    kh, kw = layer.kernel
    if model.tensors[model.input].bits > cfg.act_bits or c >= cfg.tn:
        return None, 1
    best = (kh * kw * -(-c // cfg.tn), 0, None, 1)          # sets, input bytes, choice
    if kw > 1:
        best = min(best, (kh * -(-(c * kw) // cfg.tn), 1, layer, 1))
    s = layer.stride[0]
    if s > 1 and layer.stride == (s, s) and max(layer.padding) < kh:
        oh, ow = model.tensors[layer.output].shape[1:]
        eff = space_to_depth_conv(layer, (c, h, w), (oh, ow), s)
        kh2, kw2 = eff.kernel
        best = min(best, (kh2 * -(-(s * s * c * kw2) // cfg.tn), 2, layer, s))
    return best[2], best[3]


def average_mult_shift(n: int, in_bits: int, mult_bits: int) -> tuple[int, int, int] | None:
    """``(M, S, b)`` with ``((s + b)*M + 2**(S-1)) >> S == floor((s + n//2) / n)`` (golden's
    rounded mean of ``n`` values, ``docs/numeric.md``) for every sum ``s`` of ``n`` unsigned
    ``in_bits``-bit values, ``0 < M < 2**mult_bits``: the post-processing unit's
    requantization with bias ``b``. The smallest ``S`` (then the smallest ``|b|``); every sum is
    checked. ``None`` when no such triple exists."""
    s = np.arange(n * ((1 << in_bits) - 1) + 1, dtype=np.int64)
    want = (s + n // 2) // n
    for sh in range(1, 48):
        h = 1 << (sh - 1)
        c = (1 << sh) // n
        for mult in range(max(1, c - 2), c + 3):
            if mult >= 1 << mult_bits:
                continue
            # the bias range that puts every (s + b)*M + h into [want, want + 1) * 2**S
            lo = int(np.max(-((h - want * (1 << sh)) // mult) - s))
            hi = int(np.min(((want + 1) * (1 << sh) - h - 1) // mult - s))
            if lo <= hi:
                b = 0 if lo <= 0 <= hi else (lo if lo > 0 else hi)
                y = ((s + b) * mult + h) >> sh
                assert np.array_equal(y, want)
                return mult, sh, b
    return None


def _pool_geometry(layer, model: QModel):
    """``(kh, kw, sy, sx, padding, sum)`` of a pooling layer."""
    if isinstance(layer, MaxPoolLayer):
        return (*layer.kernel, *layer.stride, layer.padding, False)
    if isinstance(layer, AvgPoolLayer):
        return (*layer.kernel, *layer.stride, layer.padding, True)
    _, h, w = model.tensors[layer.input].shape
    return h, w, 1, 1, (0, 0, 0, 0), True


def _pool_divisor(layer, model: QModel) -> int | None:
    """The one divisor ``N`` of every window of an average (``None``: it varies).

    The pooling unit sums a window (padding reads 0) and the STORE's per-lane ``(bias, M, S)``
    divide by one ``N``: a k x k average whose border windows average fewer values
    (``count_include_pad = 0`` with padding, or ``ceil_mode`` windows past the padded input)
    needs per-pixel divisors the post-processing does not have."""
    if isinstance(layer, GlobalAvgPoolLayer):
        _, h, w = model.tensors[layer.input].shape
        return h * w
    n = avg_pool_divisors(model.tensors[layer.input].shape[1:], layer.kernel, layer.stride,
                          layer.padding, layer.ceil_mode, layer.count_include_pad)
    return int(n.flat[0]) if n.size and np.all(n == n.flat[0]) else None


def _pool_unsupported(layer, model: QModel, cfg: HWConfig, tensors: dict) -> str:
    """Why a pooling layer cannot run on the pooling unit ("" when it can)."""
    src = tensors[layer.input]
    if src.signed and not src.offset:
        return ("signed input stored two's complement (the pooling unit pools unsigned or "
                "offset-binary activations)")
    if src.fold is not None:
        return "input stored column-folded"
    if cfg.lanes_pad % cfg.tn:
        return (f"lanes_pad = {cfg.lanes_pad} is not a multiple of tn = {cfg.tn} in "
                f"configuration {cfg.name!r}")
    if model.tensors[layer.output].bits != cfg.act_bits:
        return f"{model.tensors[layer.output].bits}-bit output"
    kh, kw, sy, sx, _, is_sum = _pool_geometry(layer, model)
    if kh > 15 or kw > 15:
        return f"window {kh}x{kw} exceeds 15x15"
    if not (1 <= sy <= 7 and 1 <= sx <= 7):
        return f"stride {(sy, sx)} outside 1..7"
    if kh * src.w * (src.c_mem // cfg.tn) > cfg.act_depth // 2 and \
            _pool_split(kh, src, cfg) is None:
        return (f"{kh} input rows of {src.w} x {src.c_mem} activations do not fit half of "
                f"the activation buffer, not even split into channel groups of "
                f"{cfg.lanes_pad} positions")
    if is_sum:
        n = _pool_divisor(layer, model)
        if n is None:
            return ("border windows average fewer values (count_include_pad = 0 with padding, "
                    "or ceil_mode): per-pixel divisors")
        if average_mult_shift(n, src.bits, cfg.mult_bits) is None:
            return f"no exact {cfg.mult_bits}-bit multiplier for an average of {n} values"
    return ""


def _pool_split(kh: int, src, cfg: HWConfig) -> int | None:
    """Channel positions of one channel group of a pooling layer whose ``kh`` input rows do not
    fit half of the activation buffer (pooling is per channel: each group is an independent
    pooling), or None when no group of whole pooling mtiles fits. A group's rows are brought
    by a gathering LOAD_ROWS (hdl/isa.py ``LoadRows``) that reads the rows whole (so their
    check entries apply) and keeps, of every pixel (a raw row), the group's bytes."""
    bb = cfg.beat_bytes
    lanes = max(1, cfg.tn * 8 // cfg.axi_data_width)    # the loader's beats a buffer word
    if src.gather is not None or src.strided is not None or src.fold is not None or \
            lanes & (lanes - 1) or src.c_mem // bb > _GATHER_LIMITS["row_beats"]:
        return None
    unit = math.lcm(cfg.lanes_pad, cfg.tn, bb)
    best = None
    for n in range(1, src.c_mem // unit + 2):
        size = _roundup(-(-src.c_mem // n), unit)
        if kh * src.w * size // cfg.tn > cfg.act_depth // 2 or size // bb > \
                _GATHER_LIMITS["seg_beats"] or (n - 1) * size >= 1 << 15:
            continue
        best = size
        break
    if best is None or best >= src.c_mem:
        return None
    return best


def _compile_pool(layer, model: QModel, cfg: HWConfig, img: _Image, tensors: dict, place,
                  instrs: list, stores_before: int, producers: dict) -> LayerReport:
    """Max pooling or global average pooling on the pooling unit (hdl/pool.py)."""
    name = layer.name
    src = tensors[layer.input]
    kh, kw, sy, sx, (pt, pl, pb, pr), is_sum = _pool_geometry(layer, model)
    oc, oh, ow = model.tensors[layer.output].shape
    cmem_align = math.lcm(cfg.tn, cfg.beat_bytes)
    groups = src.c_mem // cfg.tn
    mtiles = -(-src.c_mem // cfg.lanes_pad)
    perm = np.full(_roundup(mtiles * cfg.lanes_pad, cmem_align), -1, np.int64)
    perm[:src.c_mem] = src.perm                 # channel-wise: keep the input's order
    dst = place(layer.output, oc, oh, ow, perm)
    # offset-binary in, offset-binary out: max(x + k) = max(x) + k, and the rounded average of
    # x + k (padding read as the stored zero k) is that of x plus k (:func:`_offset_tensors`)
    dst.offset = src.offset
    if is_sum:
        mult, shift, bias = average_mult_shift(_pool_divisor(layer, model), src.bits,
                                               cfg.mult_bits)
    else:
        mult, shift, bias = 2, 1, 0              # (2x + 1) >> 1 = x
    n_lanes = mtiles * cfg.lanes_pad
    real = np.zeros(n_lanes, bool)
    real[:src.c_mem] = src.perm >= 0
    zeros = np.zeros(n_lanes, np.int64)
    flat = pack_lane_params(np.where(real, bias, 0), np.where(real, mult, 0), zeros,
                            np.full(n_lanes, shift), zeros)
    blk = cfg.lanes_pad * 16
    pblob = b"".join(pack_params_block(flat[t * blk:(t + 1) * blk]) for t in range(mtiles))
    p_addr = img.alloc(len(pblob), pblob)

    row_words = src.w * groups
    split = None
    if kh * row_words > cfg.act_depth // 2:
        split = _pool_split(kh, src, cfg)
    if split is not None:
        return _compile_pool_groups(layer, name, src, dst, split, (kh, kw, sy, sx, pt, pl),
                                    is_sum, p_addr, len(pblob), cfg, instrs, stores_before,
                                    producers, (oc, oh, ow))
    rows_per_tile = _fit_rows(name, min(oh, cfg.acc_depth // ow), sy, kh, row_words, src, cfg)
    ptiles = rd_bytes = wr_bytes = beats_total = 0
    tile_rows = []
    for oy0 in range(0, oh, rows_per_tile):
        oy1 = min(oh, oy0 + rows_per_tile)
        iy_lo, r0, r1 = _tile_input_rows(oy0, oy1, sy, pt, kh, src)
        beats = (r1 - r0) * src.w * src.c_mem // cfg.beat_bytes
        pixels = (oy1 - oy0) * ow
        instrs.append(_load_rows(src, r0, r1, beats, producers.get(layer.input)))
        tile_rows.append((oy0, oy1))
        instrs.append(encode(Opcode.COMPUTE, n_mtiles=mtiles, kh=kh, kw=kw, groups=groups,
                             stride_y=sy, stride_x=sx, out_h=oy1 - oy0, out_w=ow,
                             in_rows=r1 - r0, in_w=src.w, ty0=iy_lo - r0, tx0=-pl,
                             pool=(PoolMode.SUM if is_sum else PoolMode.MAX).value,
                             pad_ob=int(bool(src.offset) and is_sum)))
        instrs.append(encode(Opcode.STORE, n_mtiles=mtiles, pixels=pixels,
                             out_addr=dst.addr + oy0 * ow * dst.c_mem, out_stride=dst.c_mem,
                             params_addr=p_addr, relu=1, pool=1))
        ptiles += 1
        rd_bytes += beats * cfg.beat_bytes + len(pblob)
        wr_bytes += pixels * mtiles * cfg.lanes_pad
        beats_total += mtiles * pixels * (cfg.lanes_pad // cfg.tn) * kh * kw
    producers[layer.output] = (stores_before, tile_rows, False)
    return LayerReport(name, layer.kind, "accel", (oc, oh, ow), mtiles=mtiles, ptiles=ptiles,
                       sets_per_mtile=kh * kw, dma_read_bytes=rd_bytes, dma_write_bytes=wr_bytes,
                       pool_beats=beats_total)


def _compile_pool_groups(layer, name: str, src, dst, size: int, geom: tuple, is_sum: bool,
                         p_addr: int, p_bytes: int, cfg: HWConfig, instrs: list,
                         stores_before: int, producers: dict, oshape: tuple) -> LayerReport:
    """A pooling layer in channel groups of ``size`` positions (:func:`_pool_split`): per pixel
    tile and group a gathering LOAD_ROWS of the tile's input rows (every pixel read whole, the
    group's bytes kept: the buffer holds the group as an HWC tensor of ``size`` channels), a
    pooling COMPUTE and a STORE of the group's channel positions of the output pixels (each
    output row then has one check entry per group)."""
    kh, kw, sy, sx, pt, pl = geom
    oc, oh, ow = oshape
    bb = cfg.beat_bytes
    blk = params_block_bytes(cfg.lanes_pad)
    n_groups = -(-src.c_mem // size)
    rows_per_tile = _fit_rows(name, min(oh, cfg.acc_depth // ow), sy, kh,
                              src.w * size // cfg.tn, src, cfg)
    ptiles = rd_bytes = wr_bytes = beats_total = 0
    tile_rows = []
    for oy0 in range(0, oh, rows_per_tile):
        oy1 = min(oh, oy0 + rows_per_tile)
        iy_lo, r0, r1 = _tile_input_rows(oy0, oy1, sy, pt, kh, src)
        beats = (r1 - r0) * src.w * src.c_mem // bb
        pixels = (oy1 - oy0) * ow
        for g in range(n_groups):
            c0 = g * size
            cs = min(size, src.c_mem - c0)
            mt = -(-cs // cfg.lanes_pad)
            instrs.append(encode(
                Opcode.LOAD_ROWS, addr=src.addr + r0 * src.w * src.c_mem, beats=beats,
                wait_stores=_tile_wait(producers.get(layer.input), r1), gather=1,
                row_beats=src.c_mem // bb, shift=c0, seg_beats=cs // bb, seg_rows=1, pix=1,
                pix_beats=cs // bb))
            tile_rows.append((oy0, oy1))
            instrs.append(encode(Opcode.COMPUTE, n_mtiles=mt, kh=kh, kw=kw, groups=cs // cfg.tn,
                                 stride_y=sy, stride_x=sx, out_h=oy1 - oy0, out_w=ow,
                                 in_rows=r1 - r0, in_w=src.w, ty0=iy_lo - r0, tx0=-pl,
                                 pool=(PoolMode.SUM if is_sum else PoolMode.MAX).value))
            instrs.append(encode(Opcode.STORE, n_mtiles=mt, pixels=pixels,
                                 out_addr=dst.addr + oy0 * ow * dst.c_mem + c0,
                                 out_stride=dst.c_mem,
                                 params_addr=p_addr + c0 // cfg.lanes_pad * blk, relu=1, pool=1))
            ptiles += 1
            rd_bytes += beats * bb + mt * blk
            wr_bytes += pixels * mt * cfg.lanes_pad
            beats_total += mt * pixels * (cfg.lanes_pad // cfg.tn) * kh * kw
    producers[layer.output] = (stores_before, tile_rows, False)
    mtiles = -(-src.c_mem // cfg.lanes_pad)
    return LayerReport(name, layer.kind, "accel", (oc, oh, ow), mtiles=mtiles, ptiles=ptiles,
                       sets_per_mtile=kh * kw, dma_read_bytes=rd_bytes, dma_write_bytes=wr_bytes,
                       pool_beats=beats_total)


def _tile_input_rows(oy0: int, oy1: int, sy: int, pt: int, kh: int, src) -> tuple:
    """``(iy_lo, r0, r1)``: the first input row output rows ``oy0..oy1-1`` see (padding
    included, may be negative) and the stored rows ``[r0, r1)`` a pixel tile loads."""
    iy_lo = oy0 * sy - pt
    iy_hi = (oy1 - 1) * sy - pt + kh           # exclusive
    return iy_lo, max(0, iy_lo), min(src.h, iy_hi)


def _load_beats(src, r0: int, r1: int, cfg: HWConfig) -> int:
    """DMA beats of the LOAD_ROWS of rows ``[r0, r1)`` of ``src`` (for a gathered layout: of
    the raw rows it is built from)."""
    if src.gather is not None:
        g = src.gather
        return (r1 - r0) * g["seg_rows"] * g["row_beats"]
    return (r1 - r0) * src.w * src.c_mem // cfg.beat_bytes


def _load_rows(src, r0: int, r1: int, beats: int, producer) -> bytes:
    """The LOAD_ROWS of rows ``[r0, r1)`` of ``src`` (``beats`` beats), waiting for the STOREs
    of ``producer`` that write them; for a gathered layout a gathering one of the raw rows
    ``seg_rows * r0 ..`` at ``src.addr``."""
    if src.strided is not None:
        return encode(Opcode.LOAD_ROWS, addr=src.addr + r0 * src.strided["row_stride"],
                      beats=beats, wait_stores=_tile_wait(producer, r1), **src.strided)
    if src.gather is not None:
        g = dict(src.gather)
        row_bytes = g.pop("row_bytes")
        return encode(Opcode.LOAD_ROWS, addr=src.addr + r0 * g["seg_rows"] * row_bytes,
                      beats=beats, wait_stores=_tile_wait(producer, r1), gather=1, **g)
    return encode(Opcode.LOAD_ROWS, addr=src.addr + r0 * src.w * src.c_mem, beats=beats,
                  wait_stores=_tile_wait(producer, r1))


def _tile_wait(producer, r1: int) -> int:
    """``wait_stores`` of a LOAD_ROWS reading input rows ``[.., r1)``.

    STOREs complete in program order, so waiting until ``k`` STOREs of the segment completed
    means the first ``k`` did. A tile waits only for the STOREs that wrote the rows it loads
    (the producing layer's tiles with a first row below ``r1``), not for the whole producing
    layer: the next layer's first loads overlap the previous layer's last tiles. A tensor from
    before the segment (the input, a CPU layer) needs no wait; a flattened view needs all of its
    producer's STOREs.
    """
    if producer is None:
        return 0
    base, rows, needs_all = producer
    if needs_all:
        return base + len(rows)
    return base + sum(1 for oy0, _ in rows if oy0 < r1)


def _strided_view(layer: ConvLayer, model, cfg: HWConfig, tensors: dict, producers: dict):
    """A 1x1 convolution with a stride and no padding reads only the pixels it uses: the same
    layer with stride 1 on a view of its input's pixels ``(sy*r, sx*c)`` that strided LOAD_ROWS
    load (one DMA read per used pixel, or per row when ``sx = 1``), instead of loading whole
    rows and skipping. ``layer`` itself where that does not apply."""
    src = tensors.get(layer.input)
    sy, sx = layer.stride
    if src is None or src.gather is not None or src.fold is not None or \
            src.strided is not None or layer.kernel != (1, 1) or (sy, sx) == (1, 1) or \
            any(layer.padding) or (src.h, src.w) == (1, 1):
        return layer
    _, oh, ow = model.tensors[layer.output].shape
    bb, c_mem = cfg.beat_bytes, src.c_mem
    if sx > 1:
        fields = dict(chunk_beats=c_mem // bb, chunks=ow, chunk_stride=sx * c_mem)
    else:
        fields = dict(chunk_beats=ow * c_mem // bb, chunks=1, chunk_stride=0)
    fields["row_stride"] = sy * src.w * c_mem
    if fields["chunk_beats"] >= 1 << 12 or fields["chunks"] >= 1 << 12 or \
            fields["chunk_stride"] >= 1 << 16 or fields["row_stride"] >= 1 << 24:
        return layer
    name = f"{layer.input}@{sy}x{sx}"
    if name not in tensors:
        tensors[name] = TensorPlacement(name, src.addr, src.channels, c_mem, oh, ow, src.perm,
                                        src.signed, src.bits, strided=fields,
                                        offset=src.offset)
        spec = model.tensors[layer.input]
        model.tensors[name] = dataclasses.replace(spec, name=name,
                                                  shape=(spec.shape[0], oh, ow))
        if layer.input in producers:      # its rows [a, b) are the view's [ceil(a/sy), ..)
            base, rows, needs_all = producers[layer.input]
            producers[name] = (base, [(-(-a // sy), -(-b // sy)) for a, b in rows], needs_all)
    return dataclasses.replace(layer, input=name, stride=(1, 1))


def _depthwise_lanes(name: str, prec, src, cfg: HWConfig):
    """Channel-to-lane mapping of a depthwise conv (docs/architecture.md, *Depthwise
    convolutions*): block-diagonal mtiles over windows of ``lanes_pad`` input channel positions
    (``lanes_pad / tn`` groups, hdl/isa.py ``Compute.dw``). A window's channels go to its
    mtile's lanes, its HI rows (8-bit weights) on the high lanes, its LO rows on the low lanes
    and then on high lanes left free (a 4-bit weight is an 8-bit one); a window with more HI
    rows than ``lanes_hi`` (or more channels than ``lanes``, when ``lanes_pad > lanes``) takes
    further mtiles over the same window. Returns ``(mtiles,
    lane_row, window of each mtile, Compute.dw)``."""
    lp, ppg = cfg.lanes_pad, cfg.lanes_pad // cfg.tn
    if lp % cfg.tn:
        raise CompileError(f"layer {name!r}: depthwise windows need lanes_pad = {lp} to be a "
                           f"multiple of tn = {cfg.tn}")
    perm = np.asarray(src.perm)
    valid = perm[perm >= 0]
    if len(np.unique(valid)) != len(valid) or len(valid) != src.channels:
        raise CompileError(f"layer {name!r}: its input {src.name!r} does not hold every channel "
                           f"at exactly one position (a depthwise lane reads one position)")
    rows, win, mask = [], [], 1
    for w in range(-(-src.c_mem // lp)):
        ch = perm[w * lp:(w + 1) * lp]
        ch = ch[ch >= 0]
        hi = ch[prec[ch] == Precision.HI]
        lo = ch[prec[ch] != Precision.HI]
        n = max(1, -(-len(hi) // cfg.lanes_hi), -(-len(ch) // cfg.lanes))
        block = np.full((n, lp), -1, np.int64)
        free = []                                   # lanes for the LO rows, in order
        for j in range(n):
            h = hi[j * cfg.lanes_hi:(j + 1) * cfg.lanes_hi]
            block[j, cfg.lanes_lo:cfg.lanes_lo + len(h)] = h
            free += [(j, k) for k in range(cfg.lanes_lo)]
            free += [(j, cfg.lanes_lo + k) for k in range(len(h), cfg.lanes_hi)]
        assert len(free) >= len(lo)
        for c, (j, k) in zip(lo, free):
            block[j, k] = c
        if rows:
            mask |= 1 << len(rows)                  # the first mtile of a window moves on
        rows.extend(block)
        win += [w] * n
    if len(rows) > DW_MAX_MTILES:
        raise CompileError(f"layer {name!r}: a depthwise conv of {len(rows)} mtiles exceeds "
                           f"the {DW_MAX_MTILES} of one COMPUTE ({src.c_mem} input channel "
                           f"positions, windows of {lp})")
    return len(rows), np.array(rows, np.int64), np.array(win, np.int64), mask


def _depthwise_readers(model, name: str) -> list:
    """The depthwise convs (groups = input channels = output channels) reading ``name``."""
    c = model.tensors[name].shape[0]
    return [la for la in model.layers if isinstance(la, ConvLayer) and la.input == name
            and 1 < la.groups == la.out_channels == c]


def _spread_for_depthwise(layer, model: QModel, cfg: HWConfig, lo_rows, hi_rows, mtiles: int):
    """A conv whose output a depthwise conv reads: its rows' order within the LO and the HI
    lists (lane order is free) such that the depthwise conv's HI rows spread evenly over its
    mtiles, which are the depthwise conv's windows (each window then needs no further mtile
    for HI rows beyond ``lanes_hi`` where the share allows). ``(lo_rows, hi_rows)``."""
    if cfg.lanes_pad != cfg.lanes:
        return lo_rows, hi_rows
    dw = _depthwise_readers(model, layer.output)
    if not dw:
        return lo_rows, hi_rows
    hot = np.asarray(dw[0].precision) == Precision.HI
    load = np.zeros(mtiles, np.int64)            # the depthwise HI rows of each mtile
    out = []
    for rows, cap in ((lo_rows, cfg.lanes_lo), (hi_rows, cfg.lanes_hi)):
        room = np.array([len(rows[t * cap:(t + 1) * cap]) for t in range(mtiles)])
        buckets = [[] for _ in range(mtiles)]
        for r in list(rows[hot[rows]]) + list(rows[~hot[rows]]):
            if hot[r]:                           # the least loaded mtile with room
                t = min((t for t in range(mtiles) if room[t]), key=lambda t: (load[t], t))
                load[t] += 1
            else:
                t = next(t for t in range(mtiles) if room[t])
            room[t] -= 1
            buckets[t].append(r)
        out.append(np.array([r for b in buckets for r in b], np.int64))
    return out[0], out[1]


def _depthwise_order(model: QModel, name: str, cfg: HWConfig, perm, align: int):
    """The channel order of a host-written tensor ``name`` that a depthwise conv reads: its
    windows of ``lanes_pad`` positions hold ``lanes`` channels each, the depthwise conv's HI
    rows spread evenly over them (fewer windows with more HI rows than ``lanes_hi``, i.e. with
    a further mtile); ``perm`` (natural order) otherwise."""
    dw = _depthwise_readers(model, name)
    oc = model.tensors[name].shape[0]
    if not dw:
        return perm
    hot = np.asarray(dw[0].precision) == Precision.HI
    n = -(-oc // cfg.lanes)
    wins = [[] for _ in range(n)]
    for c in list(np.flatnonzero(hot)) + list(np.flatnonzero(~hot)):
        free = [w for w in range(n) if len(wins[w]) < cfg.lanes]
        wins[min(free, key=lambda w: (sum(hot[wins[w]]), w)) if hot[c] else free[0]].append(c)
    out = np.full(_roundup(n * cfg.lanes_pad, align), -1, np.int64)
    for w, chans in enumerate(wins):
        out[w * cfg.lanes_pad:w * cfg.lanes_pad + len(chans)] = chans
    return out


def _depthwise_sets(wt, lane_row, win, chan, cfg: HWConfig):
    """The weight sets of a depthwise conv's mtiles: ``(kh, kw, cg, lane, j)`` over the
    ``lanes_pad / tn`` groups of each mtile's window; lane ``l`` holding channel ``c`` has its
    kernel at the beat element of ``c``'s position, zeros elsewhere. Returns ``(sets,
    sets per mtile)``."""
    _, _, kh, kw = wt.shape
    lp, ppg = cfg.lanes_pad, cfg.lanes_pad // cfg.tn
    pos_of = np.full(max(len(chan), int(np.max(chan, initial=0)) + 1), -1, np.int64)
    valid = np.flatnonzero(chan >= 0)
    pos_of[chan[valid]] = valid
    sets = np.zeros((len(lane_row), kh, kw, ppg, lp, cfg.tn), np.int64)
    for t, rows in enumerate(lane_row):
        for lane in np.flatnonzero(rows >= 0):
            c = rows[lane]
            local = pos_of[c] - win[t] * lp
            assert 0 <= local < lp
            sets[t, :, :, local // cfg.tn, lane, local % cfg.tn] = wt[c, 0]
    return sets.reshape(-1, lp, cfg.tn), kh * kw * ppg


def _compile_conv(layer: ConvLayer, model: QModel, cfg: HWConfig, spec, img: _Image,
                  tensors: dict, place, instrs: list, seq_base: int, stores_before: int,
                  producers: dict, balance: bool = False, *, mac=None, lut=None,
                  offset_out: bool = False, strided: bool = False, stack=None,
                  max_tile_rows: int = 0, vpool: bool = False):
    """One conv/FC layer. ``balance``: pixel tiles of equal height (the same number of tiles
    as the tallest ones need), so that no short last tile breaks the double-buffered loads
    (the phases of :func:`_direct_plan`, which repeat the same tiling). ``lut``: a LutLayer
    reading this layer's output alone, fused into the STOREs (its output is what is stored).
    ``offset_out``: store the (signed) output offset-binary (:func:`_offset_tensors`).
    ``stack``: ``(P, H)`` when the input is B images stacked with a period of ``P`` rows
    (:class:`_BatchPlan`): an output row reads the rows outside its own image as padding
    (``Compute.img_rows`` etc., :func:`_stack_fields`).
    ``vpool``: the STOREs pool the output vertically (3 rows, stride 2, padding 1:
    :func:`_vpool_candidates`) into tensor ``<output>@vpool`` (``model`` has its spec)."""
    name = layer.name
    out_name = lut.output if lut is not None else layer.output
    if vpool:
        out_name = f"{layer.output}@vpool"
    if tensors[layer.input].c_mem // cfg.tn > 1023:
        layer = _fc_as_conv(layer, tensors, cfg) or layer
    if strided:
        layer = _strided_view(layer, model, cfg, tensors, producers)
    src = tensors[layer.input]
    if src.signed and not src.offset:
        raise CompileError(f"layer {name!r} reads the signed tensor {layer.input!r}; convolution "
                           f"and FC inputs must be unsigned (follow ReLU, pooling or the pixels)")
    in_bits = model.tensors[layer.input].bits
    if src.offset:
        # offset-binary input u = x + off: sum(w*x) + b = sum(w*u) + (b - off*sum(w)); padding
        # reads the stored zero u = off (COMPUTE pad_ob)
        wsum = np.asarray(layer.weight, np.int64).sum(axis=(1, 2, 3))
        layer = dataclasses.replace(
            layer, bias=np.asarray(layer.bias, np.int64) - src.offset * wsum)
        if int(np.abs(layer.bias).max(initial=0)) >= 1 << 31:
            raise CompileError(f"layer {name!r}: its bias with the offset-binary input folded "
                               f"in does not fit the 32-bit lane parameter")
        try:
            check_no_overflow(layer, in_bits, spec)
        except AccumulatorOverflow as e:      # the host computes it in golden's arithmetic
            raise CompileError(f"layer {name!r}: with the offset-binary input folded into the "
                               f"bias, {str(e).split(': ', 1)[-1]}") from None
    check_no_overflow(layer, in_bits, spec)
    ospec = model.tensors[layer.output]
    if ospec.signed and layer.relu:
        raise CompileError(f"layer {name!r}: ReLU into the signed tensor {layer.output!r} is not "
                           f"supported (a ReLU output is unsigned)")
    if ospec.bits != cfg.act_bits:
        raise CompileError(f"layer {name!r}: output {layer.output!r} has {ospec.bits} bits; "
                           f"configuration {cfg.name!r} stores {cfg.act_bits}-bit activations")
    M, C, kh, kw = layer.weight.shape
    C *= layer.groups                 # depthwise: (C, 1, kh, kw), one input channel a row
    if layer.groups > 1 and not layer.groups == C == M:
        raise CompileError(f"layer {name!r}: grouped convolution (groups = {layer.groups}); "
                           f"the accelerator runs depthwise ones (groups = channels) only")
    if kh > 15 or kw > 15:
        raise CompileError(f"layer {name!r}: kernel {kh}x{kw} exceeds 15x15")
    sy, sx = layer.stride
    if not (1 <= sy <= 7 and 1 <= sx <= 7):
        raise CompileError(f"layer {name!r}: stride {layer.stride} outside 1..7")
    pt, pl, pb, pr = layer.padding
    oc, oh, ow = model.tensors[layer.output].shape
    if C != src.channels:
        raise CompileError(f"layer {name!r}: weight has {C} input channels but its input "
                           f"{layer.input!r} has {src.channels}")
    groups = src.c_mem // cfg.tn
    if groups > 1023:
        raise CompileError(f"layer {name!r}: {src.c_mem} input channel positions exceed "
                           f"{1023 * cfg.tn} (1023 groups of tn = {cfg.tn})")

    # ---- row-to-lane assignment ------------------------------------------------------------
    prec = np.asarray(layer.precision)
    hi_rows = np.flatnonzero(prec == Precision.HI)
    lo_rows = np.flatnonzero(prec == Precision.LO)
    if layer.residual is not None and tensors[layer.residual].c_mem > cfg.max_channels:
        # a residual wider than the store's row buffer: rows in the order of their residual
        # channels, so that each mtile's residual bytes lie close together (_residual_windows)
        lo_rows, hi_rows = _rows_by_residual(tensors[layer.residual], lo_rows, hi_rows)
    mtiles = max(1, -(-len(hi_rows) // cfg.lanes_hi), -(-len(lo_rows) // cfg.lanes_lo))
    if layer.groups == 1 and lut is None:
        lo_rows, hi_rows = _spread_for_depthwise(layer, model, cfg, lo_rows, hi_rows, mtiles)
    lane_row = np.full((mtiles, cfg.lanes_pad), -1, np.int64)
    for t in range(mtiles):
        lo = lo_rows[t * cfg.lanes_lo:(t + 1) * cfg.lanes_lo]
        hi = hi_rows[t * cfg.lanes_hi:(t + 1) * cfg.lanes_hi]
        lane_row[t, :len(lo)] = lo
        lane_row[t, cfg.lanes_lo:cfg.lanes_lo + len(hi)] = hi
    dw_mask, dw_win = 0, None
    if layer.groups > 1:
        mtiles, lane_row, dw_win, dw_mask = _depthwise_lanes(name, prec, src, cfg)
    c_mem_out = _roundup(mtiles * cfg.lanes_pad, math.lcm(cfg.tn, cfg.beat_bytes))
    perm_out = np.full(c_mem_out, -1, np.int64)
    perm_out[:mtiles * cfg.lanes_pad] = lane_row.reshape(-1)
    dst = place(out_name, oc, (oh - 1) // 2 + 1 if vpool else oh, ow, perm_out)
    if offset_out:
        dst.offset = 1 << (model.tensors[out_name].bits - 1)
        if lut is None:
            # the identity table: the clamped signed value's index is the value plus the offset
            lut = LutLayer(f"{name}:offset", layer.output, out_name,
                           np.arange(1 << cfg.act_bits, dtype=np.int64) - dst.offset)
    if lut is not None and model.tensors[out_name].bits != cfg.act_bits:
        raise CompileError(f"layer {lut.name!r}: output {out_name!r} has "
                           f"{model.tensors[out_name].bits} bits; configuration {cfg.name!r} "
                           f"stores {cfg.act_bits}-bit activations")

    # ---- weight sets and packages ----------------------------------------------------------
    wt = np.asarray(layer.weight, np.int64)
    chan = src.perm                                       # position -> natural input channel
    n_sets = kh * kw * groups
    if layer.groups > 1:
        sets, n_sets = _depthwise_sets(wt, lane_row, dw_win, chan, cfg)
    else:
        # gather: sets[t, kr, kc, cg, lane, j]
        wpad = np.zeros((M + 1, C + 1, kh, kw), np.int64)     # index -1 -> zero row/col
        wpad[:M, :C] = wt
        chan_idx = np.where(chan >= 0, chan, C).reshape(groups, cfg.tn)
        row_idx = np.where(lane_row >= 0, lane_row, M)
        # (t, lane) x (cg, j) x (kr, kc)
        full = wpad[row_idx[:, :, None, None], chan_idx[None, None, :, :]]  # t,lane,cg,j,kh,kw
        sets = np.transpose(full, (0, 4, 5, 2, 1, 3))         # t, kr, kc, cg, lane, j
        sets = sets.reshape(mtiles * n_sets, cfg.lanes_pad, cfg.tn)
    lo_sets = sets[:, :cfg.lanes_lo, :]
    hi_sets = sets[:, cfg.lanes_lo:cfg.lanes_lo + cfg.lanes_hi, :]
    spp = cfg.wbuf_depth // cfg.words_per_set             # sets per package (one bank)
    spp = -(-n_sets // -(-n_sets // spp))                 # even packages: no short last one
    blobs = []
    for t in range(mtiles):
        for s0 in range(0, n_sets, spp):
            s1 = min(n_sets, s0 + spp)
            a, b = t * n_sets + s0, t * n_sets + s1
            blobs.append(wpkg.build_package_from_sets(cfg, (seq_base + len(blobs)) & 0xFFFF,
                                                      lo_sets[a:b], hi_sets[a:b], mac=mac))
    wstream = b"".join(blobs)
    w_addr = img.alloc(len(wstream), wstream, what=f"the weights of layer {name!r}")
    # one LOAD_WEIGHTS per stream of whole packages of at most MAX_COMMAND_BEATS beats
    w_streams = _weight_streams(name, blobs, w_addr, seq_base, cfg)

    # ---- per-lane parameters ---------------------------------------------------------------
    res = tensors[layer.residual] if layer.residual is not None else None
    res_pos_of = None
    res_win = np.zeros(mtiles, np.int64)
    if res is not None:
        res_pos_of = np.full(res.channels, -1, np.int64)
        valid = res.perm >= 0
        res_pos_of[res.perm[valid]] = np.flatnonzero(valid)
        res_win = _residual_windows(name, layer.residual, res, res_pos_of, lane_row, cfg)
    pblob = bytearray()
    mult = np.asarray(layer.mult, np.int64)
    shift = np.asarray(layer.shift, np.int64)
    bias = np.asarray(layer.bias, np.int64)
    rmult = (np.asarray(layer.res_mult, np.int64) if layer.res_mult is not None
             else np.zeros(M, np.int64))
    for t in range(mtiles):
        rows = lane_row[t]
        ok = rows >= 0
        r = np.where(ok, rows, 0)
        wpos = int(res_win[t]) * cfg.beat_bytes       # pad lanes read inside the window
        pblob += pack_params_block(pack_lane_params(
            np.where(ok, bias[r], 0), np.where(ok, mult[r], 0),
            np.where(ok, rmult[r], 0) if res is not None else np.zeros(len(rows), np.int64),
            np.where(ok, shift[r], 1),
            np.where(ok, res_pos_of[r], wpos) if res is not None
            else np.zeros(len(rows), np.int64),
            (~ok).astype(np.int64),           # pad lanes bypass a table: they stay 0
            res_win=int(res_win[t])))
    p_addr = img.alloc(len(pblob), bytes(pblob))
    lut_addr = 0
    if lut is not None:
        lut_addr = img.alloc(len(tb := pack_lut_block(np.asarray(lut.table) + dst.offset,
                                                      cfg.act_bits)), tb,
                             what=f"the lookup table of layer {lut.name!r}")

    # ---- pixel tiling ----------------------------------------------------------------------
    row_words = src.w * groups
    rows_per_tile = cfg.acc_depth // ow
    if rows_per_tile == 0:
        raise CompileError(f"layer {name!r}: an output row of {ow} pixels exceeds the "
                           f"accumulator depth {cfg.acc_depth} of configuration {cfg.name!r}")
    rows_per_tile = _fit_rows(name, rows_per_tile, sy, kh, row_words, src, cfg)
    if max_tile_rows:           # the tiling of a pair sharing its loads (_compile_pair)
        rows_per_tile = min(rows_per_tile, max_tile_rows)
    if balance:
        rows_per_tile = -(-oh // -(-oh // rows_per_tile))
    if vpool and (rows_per_tile < 2 or not _vpool_row_fits(cfg, ow, mtiles)):
        raise CompileError(f"layer {name!r}: its STOREs cannot pool vertically ({rows_per_tile} "
                           f"rows a tile, {mtiles * ow} mtile columns)")
    ptiles = 0
    rd_bytes = 0
    wr_bytes = 0
    pe_beats = 0
    tile_rows = []
    for oy0 in range(0, oh, rows_per_tile):
        oy1 = min(oh, oy0 + rows_per_tile)
        iy_lo, r0, r1 = _tile_input_rows(oy0, oy1, sy, pt, kh, src)
        if r1 <= r0:
            raise CompileError(f"layer {name!r}: output rows {oy0}..{oy1 - 1} see only "
                               f"padding (padding {layer.padding} too large for the input)")
        beats = _load_beats(src, r0, r1, cfg)
        pixels = (oy1 - oy0) * ow
        instrs.append(_load_rows(src, r0, r1, beats, producers.get(layer.input)))
        # the first stream before the COMPUTE, the others after its STORE: the fetch unit
        # dispatches in order, and a later stream waits (in the W queue) until the PE array
        # has taken the earlier packages, which needs the COMPUTE and the STORE dispatched
        a, nb, sq = w_streams[0]
        instrs.append(encode(Opcode.LOAD_WEIGHTS, addr=a, beats=nb, seq_base=sq))
        instrs.append(encode(Opcode.COMPUTE, n_mtiles=mtiles, kh=kh, kw=kw, groups=groups,
                             stride_y=sy, stride_x=sx, out_h=oy1 - oy0, out_w=ow,
                             in_rows=r1 - r0, in_w=src.w, ty0=iy_lo - r0, tx0=-pl,
                             pad_ob=int(bool(src.offset)), dw=dw_mask,
                             **_stack_fields(stack, oy0, sy, pt)))
        vp_f, j0, n_w = {}, oy0, oy1 - oy0
        if vpool:
            # rows y closing a window (odd, or the last) write pooled row y // 2
            written = [y for y in range(oy0, oy1) if y % 2 or y == oh - 1]
            j0, n_w = written[0] // 2, len(written)
            vp_f = dict(vpool=1, vp_y0=oy0, vp_h=oh, vp_cols=ow, vp_pixels=n_w * ow)
        instrs.append(encode(
            Opcode.STORE, n_mtiles=mtiles, pixels=pixels,
            out_addr=dst.addr + j0 * ow * dst.c_mem, out_stride=dst.c_mem, **vp_f,
            params_addr=p_addr,
            res_addr=(res.addr + oy0 * ow * res.c_mem) if res is not None else 0,
            res_beats=(res.c_mem // cfg.beat_bytes) if res is not None else 0,
            res_en=int(res is not None), res_signed=int(bool(res is not None and res.signed)),
            res_offset=int(bool(res is not None and res.offset)),
            relu=int(not ospec.signed), lut_en=int(lut is not None), lut_addr=lut_addr))
        tile_rows.append((j0, j0 + n_w))
        for a, nb, sq in w_streams[1:]:
            instrs.append(encode(Opcode.LOAD_WEIGHTS, addr=a, beats=nb, seq_base=sq))
        ptiles += 1
        rd_bytes += beats * cfg.beat_bytes + len(wstream) + len(pblob)
        if lut is not None:
            rd_bytes += len(tb)
        if res is not None:
            rd_bytes += mtiles * pixels * res.c_mem
        wr_bytes += n_w * ow * mtiles * cfg.lanes_pad
        pe_beats += mtiles * n_sets * max(pixels, cfg.words_per_set)
    producers[out_name] = (stores_before, tile_rows, False)
    macs = int(M * oh * ow * layer.weight.shape[1] * kh * kw)
    rep = LayerReport(name, ("dw" if layer.groups > 1 else
                             "fc" if layer.is_fc() and (src.h, src.w) == (1, 1) else "conv")
                      + ("" if lut is None else "+ob" if lut.name.endswith(":offset")
                         else "+lut") + ("+vpool" if vpool else ""), "accel",
                      (oc, oh, ow), macs=macs, mtiles=mtiles,
                      ptiles=ptiles, sets_per_mtile=n_sets, weight_bytes=len(wstream), dma_read_bytes=rd_bytes,
                      dma_write_bytes=wr_bytes, pe_beats=pe_beats)
    return rep, len(blobs)


def _sibling(layer: ConvLayer, nxt: list, model, cfg: HWConfig, tensors: dict, member_of: dict,
             lut_of: dict, place_why: dict, offset_why: dict):
    """The conv to compile with ``layer`` as a pair sharing its loads (:func:`_compile_pair`),
    or None: the next layer (``nxt``, at most one), a conv reading the same stored input with
    the same output size (ResNet's stride-2 ``conv1`` and its 1x1 ``downsample``; SqueezeNet's
    ``expand1x1`` and ``expand3x3``), neither a depthwise conv, an FC, nor a conv with a
    lookup table, a concat range or a reason to run on the host."""
    if not nxt or not isinstance(nxt[0], ConvLayer) or not isinstance(layer, ConvLayer):
        return None
    b = nxt[0]
    src = tensors.get(layer.input)
    if b.input != layer.input or src is None or src.gather is not None or \
            src.fold is not None or src.strided is not None or (src.h, src.w) == (1, 1) or \
            src.c_mem // cfg.tn > 1023 or layer.groups != 1 or b.groups != 1 or \
            model.tensors[layer.output].shape[1:] != model.tensors[b.output].shape[1:] or \
            b.output in member_of or b.output in lut_of or \
            model.tensors[b.input].bits > cfg.act_bits or place_why.get(b.name) or \
            _host_reason(b, model, cfg, tensors, offset_why):
        return None
    return b


def _pair_tile_layers(reports: list, pairs: dict) -> list | None:
    """The layer of each pixel tile of a segment whose paired convs interleave their tiles
    (:func:`_compile_pair`: first, second, first, ...), None when it has no pair."""
    if not any(r.name in pairs for r in reports):
        return None
    second = set(pairs.values())
    out = []
    for r in reports:
        if r.name in pairs:
            out += [r.name, pairs[r.name]] * r.ptiles
        elif r.name not in second:
            out += [r.name] * r.ptiles
    return out


def _compile_pair(a: ConvLayer, b: ConvLayer, model: QModel, cfg: HWConfig, spec, img: _Image,
                  tensors: dict, place, instrs: list, seq_base: int, stores_before: int,
                  producers: dict, *, mac=None, offset_out=(False, False),
                  strided: bool = False, stacks=(None, None)):
    """Two convs reading the same input with the same output size (:func:`_sibling`), on one
    tiling: per pixel tile ONE LOAD_ROWS of the union of the input rows both need, then
    ``a``'s LOAD_WEIGHTS, COMPUTE (``keep``: the activation-buffer half stays for the next
    COMPUTE) and STORE, then ``b``'s on the same half (``in_rows``/``ty0`` of the union), so
    the input is read once a tile. The common tiling: the most output rows a tile that both
    convs fit (accumulator depth, their own input rows) and whose union fits half of the
    activation buffer. Where that tiling differs from the convs' own (a conv then streams its
    weights once more per extra tile), the cycle model (:func:`~ilmpq.firmware.cyclemodel.
    estimate_program`, a Zynq HP port's memory, the pair alone) picks the faster of the shared
    program and the two convs one after the other, each on its own tiling (``strided``: the
    1x1 one through strided loads, as without a pair), the shared one within
    :data:`_PAIR_MARGIN`. ``stacks``: each conv's ``stack`` (:func:`_compile_conv`) when they
    read B stacked images. Returns ``(report of a, weight packages of both, report of b,
    whether they share their loads)``."""
    src = tensors[a.input]
    oh, ow = model.tensors[a.output].shape[1:]
    row_words = src.w * (src.c_mem // cfg.tn)
    half_words = cfg.act_depth // 2
    placed: dict = {}

    def place_once(name, channels, h, w, perm):
        # each variant places the same output tensor (its lane order does not depend on the
        # tiling): one placement for both
        if name not in placed:
            placed[name] = place(name, channels, h, w, perm)
        return placed[name]

    def union(oy0, oy1):
        rows = [_tile_input_rows(oy0, oy1, c.stride[0], c.padding[0], c.weight.shape[2], src)
                for c in (a, b)]
        return rows, min(r[1] for r in rows), max(r[2] for r in rows)

    def fits(rpt):
        return all((u[2] - u[1]) * row_words <= half_words
                   for u in (union(y, min(oh, y + rpt)) for y in range(0, oh, rpt)))

    def both(rpt, strided_b):
        ia, ib = [], []
        ra, na = _compile_conv(a, model, cfg, spec, img, tensors, place_once, ia, seq_base,
                               stores_before, producers, mac=mac, offset_out=offset_out[0],
                               max_tile_rows=rpt, stack=stacks[0])
        pa = producers[a.output]
        rb, nb = _compile_conv(b, model, cfg, spec, img, tensors, place_once, ib,
                               seq_base + na, stores_before + ra.ptiles, producers, mac=mac,
                               offset_out=offset_out[1], max_tile_rows=rpt, strided=strided_b,
                               stack=stacks[1])
        return ia, ib, ra, rb, na + nb, pa, producers[b.output]

    rpt = max(1, cfg.acc_depth // ow)
    for c in (a, b):
        rpt = _fit_rows(c.name, rpt, c.stride[0], c.weight.shape[2], row_words, src, cfg)
    while rpt > 1 and not fits(rpt):
        rpt -= 1
    mark = len(img.data)
    # the convs one after the other, each on its own tiling (what compiling them apart gives)
    apart = both(0, strided)
    end = len(img.data)
    # the same weights and lane parameters again, at the same addresses, for the shared tiling
    del img.data[mark:]
    ia, ib, rep_a, rep_b, n_pkgs, rows_a, _ = both(rpt, False)
    assert len(img.data) == end
    da, db = [decode(x) for x in ia], [decode(x) for x in ib]
    ops = [[op for op, _ in d] for d in (da, db)]
    one = [Opcode.LOAD_ROWS, Opcode.LOAD_WEIGHTS, Opcode.COMPUTE, Opcode.STORE]
    shared = []
    if rep_a.ptiles == rep_b.ptiles and ops[0] == one * rep_a.ptiles and ops[1] == ops[0] \
            and fits(rpt):
        bb = cfg.beat_bytes
        rows_a = rows_a[1]
        for t, (oy0, oy1) in enumerate(rows_a):
            rows, r0, r1 = union(oy0, oy1)
            beats = _load_beats(src, r0, r1, cfg)
            shared.append(_load_rows(src, r0, r1, beats, producers.get(a.input)))
            for k, (d, rep) in enumerate(((da, rep_a), (db, rep_b))):
                (_, lr), (_, lw), (_, cp), (_, st) = d[4 * t:4 * t + 4]
                rep.dma_read_bytes += ((beats if k == 0 else 0) - lr["beats"]) * bb
                cp.update(in_rows=r1 - r0, ty0=rows[k][0] - r0, keep=int(k == 0))
                shared += [encode(Opcode.LOAD_WEIGHTS, **lw), encode(Opcode.COMPUTE, **cp),
                           encode(Opcode.STORE, **st)]
    if not shared or _pair_cycles(cfg, img, apart[0] + apart[1], mac) * (1 + _PAIR_MARGIN) < \
            _pair_cycles(cfg, img, shared, mac):
        ia, ib, rep_a, rep_b, n_pkgs, pa, pb = apart
        producers[a.output], producers[b.output] = pa, pb
        instrs += ia + ib
        return rep_a, n_pkgs, rep_b, False
    instrs += shared
    # STOREs interleave (a's tile t is STORE 2t of the pair, b's 2t + 1): the readers' waits
    # (_tile_wait counts the entries whose first row is below the rows they load) count a's
    # tile t and b's tile t - 1 for a, both of tile t for b
    ends = [r[0] for r in rows_a[1:]] + [oh]
    producers[a.output] = (stores_before, [e for (oy0, oy1), nxt in zip(rows_a, ends)
                                           for e in ((oy0, oy1), (nxt, nxt))], False)
    producers[b.output] = (stores_before, [e for r in rows_a for e in (r, r)], False)
    return rep_a, n_pkgs, rep_b, True


#: A pair loads its input once unless the cycle model, on the pair alone, finds the two convs
#: one after the other faster by more than this share (the shared program also spares the DRAM
#: the second read, which the pair alone does not compete for).
_PAIR_MARGIN = 0.005


def _pair_cycles(cfg: HWConfig, img: _Image, instrs: list, mac) -> int:
    """Cycles of ``instrs`` (a pair's tiles) run alone (every load's input ready) by the
    cycle model, with a Zynq HP port's memory (:func:`_compile_pair`)."""
    from . import cyclemodel as cm
    prog = []
    for raw in instrs:
        op, f = decode(raw)
        prog.append(encode(op, **dict(f, wait_stores=0)) if op == Opcode.LOAD_ROWS else raw)
    prog.append(encode(Opcode.END))
    pa = img.base + len(img.data)
    return cm.estimate_program(cfg, bytes(img.data) + b"".join(prog), img.base, pa, len(prog),
                               memory=cm.MemoryTiming.zynq_hp(), mac=mac is not None).cycles


def _fc_as_conv(layer, tensors: dict, cfg: HWConfig):
    """An FC layer reading the flattened view of a ``(C, H, W)`` tensor as the ``H x W``
    convolution over the ``C`` channels of that tensor it is (weights reshaped: input
    ``c*H*W + y*W + x`` is tap ``(y, x)`` of channel ``c``), which puts its long input into
    kernel taps x channel groups; None when ``layer`` is not such an FC or the conv does not
    fit either (kernel above 15 x 15, above 1023 groups of ``tn``)."""
    if not isinstance(layer, ConvLayer) or not layer.is_fc() or layer.residual is not None:
        return None
    view = tensors.get(layer.input)
    if view is None or (view.h, view.w) != (1, 1):
        return None
    # the flattened tensor: the stored tensor whose bytes the view is
    src = next((t for t in tensors.values() if t is not view and t.addr == view.addr and
                t.nbytes == view.nbytes and (t.h, t.w) != (1, 1) and t.fold is None and
                t.gather is None and t.strided is None and
                view.c_mem == t.h * t.w * t.c_mem and view.channels == t.channels * t.h * t.w),
               None)
    if src is None or src.h > 15 or src.w > 15 or src.c_mem // cfg.tn > 1023:
        return None
    m = layer.weight.shape[0]
    wt = np.asarray(layer.weight).reshape(m, src.channels, src.h, src.w)
    return dataclasses.replace(layer, input=src.name, weight=wt)


def _weight_streams(name: str, blobs: list, addr: int, seq_base: int, cfg: HWConfig) -> list:
    """``(addr, beats, seq_base)`` of the LOAD_WEIGHTS streams of a layer's packages ``blobs``
    (laid out from ``addr``, sequence numbers from ``seq_base``): consecutive packages, each
    stream at most ``MAX_COMMAND_BEATS`` beats (one DMA command) and starting at the sequence
    number of its first package, so the weight buffer's checks hold across the streams."""
    bb = cfg.beat_bytes
    big = max(len(b) for b in blobs)
    if big > MAX_COMMAND_BEATS * bb:
        # (a package is at most one weight-buffer bank: only a lowered limit gets here)
        raise CompileError(f"layer {name!r}: its weight packages ({big} bytes) exceed one "
                           f"LOAD_WEIGHTS stream of at most {MAX_COMMAND_BEATS} beats "
                           f"({MAX_COMMAND_BEATS * bb} bytes)")
    out, a0, beats, first = [], addr, 0, 0
    for j, blob in enumerate(blobs):
        n = len(blob) // bb
        if beats + n > MAX_COMMAND_BEATS:
            out.append((a0, beats, (seq_base + first) & 0xFFFF))
            a0, beats, first = a0 + beats * bb, 0, j
        beats += n
    out.append((a0, beats, (seq_base + first) & 0xFFFF))
    return out


def _rows_by_residual(res, lo_rows: np.ndarray, hi_rows: np.ndarray) -> tuple:
    """``lo_rows`` and ``hi_rows`` sorted by the position of their channel in the stored
    residual ``res`` (stable: ties keep the natural order)."""
    pos = np.full(res.channels, res.c_mem, np.int64)
    valid = res.perm >= 0
    pos[res.perm[valid]] = np.flatnonzero(valid)
    return (lo_rows[np.argsort(pos[lo_rows], kind="stable")],
            hi_rows[np.argsort(pos[hi_rows], kind="stable")])


def _residual_windows(name: str, rname: str, res, res_pos_of: np.ndarray, lane_row: np.ndarray,
                      cfg: HWConfig) -> np.ndarray:
    """Per mtile, the first beat of the residual window its STORE keeps
    (``LaneParams.res_win``): the store unit reads every residual pixel whole (its check entries
    cover whole rows) and keeps ``max_channels`` bytes of it, from that beat. A residual of at
    most ``max_channels`` positions: window 0. Wider: the window starts at the lowest beat any
    lane of the mtile reads; a ``CompileError`` when the mtile's lanes are spread over more
    than ``max_channels`` bytes of the pixel."""
    bb = cfg.beat_bytes
    mtiles = lane_row.shape[0]
    if res.c_mem // bb > 4095 or res.c_mem > 1 << 16:
        raise CompileError(f"layer {name!r}: residual tensor {rname!r} has {res.c_mem} channel "
                           f"positions; a STORE reads at most {min(4095 * bb, 1 << 16)} a pixel")
    win = np.zeros(mtiles, np.int64)
    if res.c_mem <= cfg.max_channels:
        return win
    for t in range(mtiles):
        rows = lane_row[t][lane_row[t] >= 0]
        if not len(rows):
            continue
        pos = res_pos_of[rows]
        lo, hi = int(pos.min()) // bb, int(pos.max()) // bb
        if (hi - lo + 1) * bb > cfg.max_channels:
            raise CompileError(
                f"layer {name!r}: the residual channels of its output-channel tile {t} lie "
                f"{(hi - lo + 1) * bb} bytes apart in the pixels of {rname!r}, more than "
                f"max_channels = {cfg.max_channels} of configuration {cfg.name!r}")
        win[t] = min(lo, res.c_mem // bb - cfg.max_channels // bb)
    return win


def disassemble(compiled: Compiled, step: AccelStep) -> str:
    """One line per instruction of an accelerator step's program."""
    lines = []
    ib = INSTR_BITS // 8
    for i in range(step.n_instr):
        off = step.prog_addr - compiled.base + i * ib
        op, fields = decode(bytes(compiled.image[off:off + ib]))
        args = ", ".join(f"{k}={hex(v) if k.endswith('addr') else v}"
                         for k, v in fields.items())
        lines.append(f"{i:5d}  {op.name:<13} {args}")
    return "\n".join(lines)


def save_compiled(compiled: Compiled, directory) -> list[str]:
    """Write ``image.bin`` (the memory image at ``base``), ``compiled.json`` (steps, tensor
    placements, configuration), ``report.txt`` and one ``program_<k>.txt`` listing per
    accelerator step into ``directory``; return the paths written.

    A batched program (``batch = B > 1``) adds to ``compiled.json`` ``"batch"`` (B),
    ``"batch_from"`` (the first layer run on the stacked images, "" if none) and
    ``"output_bytes"`` (the stored bytes of one image's output), and writes each slot's
    ``"images"`` as B objects ``{"input_addr", "input_check", "output_addr"}`` (image ``b``'s
    input, the check entries of its rows of ``"input_row_bytes"`` bytes, 0: none, and its
    output); ``report.txt`` ends with a line naming the batch. With ``batch = 1`` none of this
    is written (a reader takes a missing ``"batch"`` as 1) and every file is as before."""
    import dataclasses
    import json
    import os
    os.makedirs(directory, exist_ok=True)
    paths = []

    def out(name, data, mode="w"):
        path = os.path.join(directory, name)
        with open(path, mode) as f:
            f.write(data)
        paths.append(path)

    out("image.bin", bytes(compiled.image), "wb")
    meta = {
        "format": "ilmpq-compiled", "version": 1,
        "config": {f.name: getattr(compiled.config, f.name)
                   for f in dataclasses.fields(compiled.config)},
        "config_id": compiled.config.config_id,
        "base": compiled.base, "size": compiled.size, "arena": list(compiled.arena),
        "input": compiled.input, "output": compiled.output,
        "input_layout": compiled.input_layout,
        "input_check": compiled.input_check, "input_row_bytes": compiled.input_row_bytes,
        "host_checks": {n: {"check": a, "row_bytes": rb}
                        for n, (a, rb) in compiled.host_checks.items()},
        "steps": [({"accel": {"layers": s.layers, "prog_addr": s.prog_addr,
                              "n_instr": s.n_instr, "prog_tag": s.prog_tag}}
                   if isinstance(s, AccelStep)
                   else {"cpu": s.layer}) for s in compiled.steps],
        "slots": [dataclasses.asdict(fs) for fs in compiled.slots],
        "mac_nonce": compiled.mac_nonce,
        "tensors": {n: {"addr": t.addr, "channels": t.channels, "c_mem": t.c_mem, "h": t.h,
                        "w": t.w, "signed": t.signed, "bits": t.bits, "offset": t.offset,
                        "perm": [int(v) for v in t.perm]}
                    for n, t in compiled.tensors.items()},
        "layers": [dataclasses.asdict(r) for r in compiled.layers],
    }
    report = compiled.report()
    if compiled.batch > 1:
        keys = ("input_addr", "input_check", "output_addr")
        for fs in meta["slots"]:
            fs["images"] = [dict(zip(keys, im)) for im in fs["images"]]
        meta.update(batch=compiled.batch, batch_from=compiled.batch_from,
                    output_bytes=compiled.tensors[compiled.output].nbytes)
        stacked = (f"the layers from {compiled.batch_from} on run once on the "
                   f"{compiled.batch} images stacked, their weights loaded once a run"
                   if compiled.batch_from else "every layer runs per image")
        report += (f"\nbatch {compiled.batch}: one program runs {compiled.batch} images; "
                   f"{stacked}; every frame slot has per image its own input, input check "
                   f"entries and output (compiled.json slots[k].images)")
    out("compiled.json", json.dumps(meta, indent=1))
    out("report.txt", report + "\n")
    k = 0
    for s in compiled.steps:
        if isinstance(s, AccelStep):
            out(f"program_{k}.txt", disassemble(compiled, s) + "\n")
            k += 1
    return paths


# ---- batching: B images per weight set (issue #15; docs/architecture.md, *Batching*) ---------

#: Largest ``compile_model(batch=...)``.
MAX_BATCH = 16


@dataclass
class _BatchPlan:
    """Where a batched program stacks its images (:func:`_batch_plan`).

    Layers ``[0, split)`` run once per image (the program's instructions for image 0, then a
    copy per further image reading and writing that image's own tensors); layers from
    ``split`` on run once on the B images stacked: tensor ``t`` of image ``b`` is rows
    ``[b * P, b * P + H)`` of one stored tensor of ``B * P - (P - H)`` rows, ``period[t] = (P,
    H)``; a conv reads the rows outside an output row's image as padding (``Compute.img_rows``
    etc.), so ``P = H`` (the images back to back) unless a stride forces ``P > H``; the ``P -
    H`` gap rows then are garbage as outputs. ``transition``: the tensors of the per-image
    layers that stacked layers read (their producers store each image into its rows)."""

    batch: int
    split: int
    period: dict
    transition: set
    why: str = ""            #: why no layer is stacked ("" when some are)


def _stack_kind_why(layer, model, cfg: HWConfig, lut_of: dict) -> str:
    """Why ``layer`` cannot run on stacked images ("" when it can): convs (not depthwise, no
    fused table), global average pooling (per image, on its rows) and flattening a 1x1
    tensor."""
    if isinstance(layer, ConvLayer):
        if layer.groups > 1:
            return "a depthwise convolution"
        if layer.output in lut_of:
            return "a conv with a fused lookup table"
        return ""
    if isinstance(layer, GlobalAvgPoolLayer):
        return ""
    if isinstance(layer, FlattenLayer):
        return "" if model.tensors[layer.input].shape[1:] == (1, 1) else \
            "flattening a tensor larger than 1x1"
    return f"a {layer.kind} layer"


def _stack_periods(model, layers: list, batch: int):
    """:func:`_stack_periods_g` with the smallest default gap (0 to 3 rows) that works."""
    for g in range(4):
        period = _stack_periods_g(model, layers, batch, g)
        if period is not None:
            return period
    return None


def _stack_periods_g(model, layers: list, batch: int, g0: int):
    """Periods ``{tensor: (P, H)}`` of the tensors ``layers`` (a suffix of the model) read and
    write when stacked, or None when no periods satisfy every layer. A conv with stride ``s``
    reading ``I`` and writing ``O``: ``P_I = s * P_O`` (output row ``b * P_O + y`` then reads
    input rows ``b * P_I + s*y - pt + kr``; those outside image ``b``'s rows read as padding,
    ``Compute.img_rows`` etc., so no gap rows are needed for them: ``P_I = H_I`` where ``H_I =
    s * H_O``, a gap only where ``s * P_O > H_I`` forces one); its residual has ``O``'s
    period. Global average pooling reads each image's rows and writes one row per
    image (``P = H = 1``). A tensor of more than one row no reader constrains gets ``g0`` gap
    rows (its producer's input may need them, e.g. through a residual of the same period)."""
    fixed: dict = {}
    need: dict = {}
    period: dict = {}

    def fix(t, p):
        return fixed.setdefault(t, p) == p

    def want(t, g):
        need[t] = max(need.get(t, 0), g)

    for layer in reversed(layers):
        o = layer.output
        h_o = model.tensors[o].shape[1]
        if isinstance(layer, GlobalAvgPoolLayer):
            p_o = 1
        else:
            p_o = fixed.get(o, h_o + max(need.get(o, 0), g0 if h_o > 1 else 0))
        if p_o - h_o < need.get(o, 0) or p_o < h_o:
            return None
        period[o] = (p_o, h_o)
        i = layer.input
        if isinstance(layer, ConvLayer):
            sy = layer.stride[0]
            if not fix(i, sy * p_o):
                return None
            want(i, 0)
            if layer.residual is not None:
                if model.tensors[layer.residual].shape[1] != h_o or not fix(layer.residual,
                                                                             p_o):
                    return None
        elif isinstance(layer, FlattenLayer):
            if not fix(i, p_o):
                return None
        else:
            want(i, 0)          # global average pooling: any period of its input
    for t in set(fixed) | set(need):
        if t in period:
            continue
        h = model.tensors[t].shape[1]
        p = fixed.get(t, h + max(need.get(t, 0), g0 if h > 1 else 0))
        if p - h < need.get(t, 0) or p < h:
            return None
        period[t] = (p, h)
    for t, (p, h) in period.items():
        if batch * p - (p - h) >= 1 << 12:       # rows of a COMPUTE / STORE (12 bits)
            return None
    return period


def _batch_plan(model, cfg: HWConfig, batch: int, lut_of: dict,
                stack_from: str | None = None) -> _BatchPlan:
    """Which layers run on the stacked images: the longest suffix of the model whose layers
    can (:func:`_stack_kind_why`) and whose convs (not the FC ones) are weight-bound per
    image -- an output of fewer pixels than the beats of loading one weight set, so that a
    pixel tile per image waits for its weights -- and whose periods fit
    (:func:`_stack_periods`); it must hold a conv. ``stack_from``: the first stacked layer,
    by name, instead (its suffix must be stackable)."""
    layers = list(model.layers)
    n = len(layers)
    if batch == 1:
        return _BatchPlan(1, n, {}, set(), "batch = 1")
    if stack_from is not None:
        names = [l.name for l in layers]
        if stack_from not in names:
            raise CompileError(f"stack_from = {stack_from!r} is not a layer of the model")
        k = names.index(stack_from)
        for lay in layers[k:]:
            w = _stack_kind_why(lay, model, cfg, lut_of)
            if w:
                raise CompileError(f"stack_from = {stack_from!r}: layer {lay.name!r} cannot "
                                   f"run on stacked images ({w})")
        period = _stack_periods(model, layers[k:], batch)
        reads = {t for l in layers[k:] for t in layer_inputs(l)}
        if period is None or model.input in reads:
            raise CompileError(f"stack_from = {stack_from!r}: the layers from it on have no "
                               f"common stacking (strides and paddings), or read the input")
        return _BatchPlan(batch, k, period, reads - {l.output for l in layers[k:]})
    set_beats = cfg.words_per_set * cfg.wbuf_word_beats
    k, why = n, ""
    for i in range(n - 1, -1, -1):
        lay = layers[i]
        w = _stack_kind_why(lay, model, cfg, lut_of)
        if not w and isinstance(lay, ConvLayer) and not lay.is_fc():
            _, oh, ow = model.tensors[lay.output].shape
            if oh * ow >= set_beats:
                w = (f"layer {lay.name!r} has {oh * ow} output pixels, not fewer than the "
                     f"{set_beats} beats of a weight set")
        if w:
            why = w
            break
        k = i
    # the periods: move the split later until they fit
    while k < n:
        suffix = layers[k:]
        if any(isinstance(l, ConvLayer) for l in suffix):
            period = _stack_periods(model, suffix, batch)
            if period is not None:
                outs = {l.output for l in suffix}
                reads = {t for l in suffix for t in layer_inputs(l)}
                if model.input not in reads:
                    return _BatchPlan(batch, k, period, reads - outs)
                why = "a stacked layer would read the network input"
        k += 1
    return _BatchPlan(batch, n, {}, set(), why or "no conv is weight-bound")


def _stack_fields(stack, oy0: int, sy: int, pt: int) -> dict:
    """The stacked-image fields of the COMPUTE of a pixel tile whose first output row is
    ``oy0`` (stacked rows) of a conv with stride ``sy`` and top padding ``pt`` reading B images
    stacked with ``stack = (P, H)`` (None: not stacked, no fields): output row ``o`` anchors
    input row ``sy * o``, whose phase in its image is ``sy * o mod P``."""
    if stack is None:
        return {}
    p, h = stack
    return dict(img_rows=h, img_period=p, img_phase=sy * oy0 % p, img_pad=pt)


# ---- frame slots of a batched program (``compile_model(batch=B, frame_slots=N)``) ----------

def _batch_slot_regions(inputs: list, outputs: list, stacked_out) -> tuple:
    """What a frame slot of a batched program owns (arena-relative, before the arena's base is
    added): every image's input ``[(addr, nbytes)]``, every image's output address, and the
    output regions ``[(addr, nbytes)]``: the stacked output tensor (the images' outputs are its
    rows) or, when the output is stored per image, every image's output tensor."""
    b_in = [(t.addr, t.nbytes) for t in inputs]
    b_out = [t.addr for t in outputs]
    regions = [(stacked_out.addr, stacked_out.nbytes)] if stacked_out is not None else \
        [(t.addr, t.nbytes) for t in outputs]
    for a in b_out:
        if not any(lo <= a < lo + n for lo, n in regions):
            raise CompileError("a batched program's output lies outside its output tensor "
                               "(internal error)")
    return b_in, b_out, regions


def _batch_slot_alloc(arena, chk, b_in: list, b_out: list, regions: list, b_chk: list, h: int,
                      k: int) -> dict:
    """Frame slot ``k`` of a batched program: slot 0 is the compiled placement; a further slot
    gets its own copy of every image's input (and of its check table when the accelerator
    checks it: ``h`` entries, one a row) and of the output regions. Arena-relative."""
    if k == 0:
        return {"in": [a for a, _ in b_in], "regions": list(regions), "chk": list(b_chk),
                "b_in": b_in, "out": b_out}
    new_in = [arena.alloc(n, what="a frame slot's input") for _, n in b_in]
    new_out = [(arena.alloc(n, what="a frame slot's output"), n) for _, n in regions]
    new_chk = [None if c is None else chk.alloc(h) for c in b_chk]
    return {"in": new_in, "regions": new_out, "chk": new_chk, "b_in": b_in, "out": b_out}


def _batch_slot_moves(s0: dict, sk: dict, tb: int) -> tuple:
    """``_relocate``'s ``moves`` and ``chk_move`` list that turn slot 0's program (tensor
    addresses already moved by the arena's tensor base ``tb``) into slot ``sk``'s: every
    image's input and the output regions to the slot's copies, every checked input's loads to
    the slot's check table."""
    moves = [(a + tb, n, new + tb) for (a, n), new in zip(s0["b_in"], sk["in"])]
    moves += [(a + tb, n, new + tb) for (a, n), (new, _) in zip(s0["regions"], sk["regions"])]
    chk_moves = [(new + tb, n, c1 - c0)
                 for (_, n), new, c0, c1 in zip(s0["b_in"], sk["in"], s0["chk"], sk["chk"])
                 if c0 is not None]
    return moves, chk_moves


def _batch_frame_slot(s0: dict, sk: dict, prog_addr: int, n_instr: int, tag: int, tb: int,
                      chk_addr) -> FrameSlot:
    """The :class:`FrameSlot` of slot ``sk`` of a batched program (image 0's input, check
    table and output in its fields, every image's in :attr:`FrameSlot.images`)."""
    images = []
    for b, a_in in enumerate(sk["in"]):
        a_out = s0["out"][b]
        i = next(i for i, (lo, n) in enumerate(s0["regions"]) if lo <= a_out < lo + n)
        images.append((a_in + tb, chk_addr(sk["chk"][b]),
                       a_out - s0["regions"][i][0] + sk["regions"][i][0] + tb))
    return FrameSlot(images[0][0], images[0][2], prog_addr, n_instr, tag, images[0][1],
                     images=images)
