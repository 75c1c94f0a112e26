"""The hardware configuration: one frozen dataclass that drives everything.

Widths, lane counts, buffer sizes, the compiler's tiling, the cycle model and the generated
register headers are all derived from :class:`HWConfig`; no constant is typed twice. The numeric
widths come from :mod:`ilmpq.golden.formats` (``HWConfig.numeric`` builds the
:class:`~ilmpq.golden.formats.NumericSpec` the quantizer and golden use).

Presets: ``tiny`` (unit and end-to-end tests in the Amaranth simulator), ``z020`` (XC7Z020,
PYNQ-Z1/Z2, Arty Z7-20), ``z045`` (XC7Z045, ZC706). ``docs/architecture.md`` explains how the
geometries were chosen from the device budgets.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from fractions import Fraction

from ..golden.errors import IlmpqValueError
from ..golden.formats import HI_BITS, LO_BITS, SUPPORTED_ACT_BITS, NumericSpec

__all__ = ["HWConfig", "PRESETS", "get_config", "ConfigError"]


class ConfigError(IlmpqValueError):
    """An invalid hardware configuration; the message names the field and what is allowed."""


#: Fields that do not change what a program computes or how it is compiled.
_NOT_IN_CONFIG_ID = ("name", "lanes_lo_dsp", "axi_ports", "read_fifo_beats", "weight_mac",
                     "act_ports")


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class HWConfig:
    """Hardware configuration of one accelerator build.

    Parameters
    ----------
    name : str
        Preset or user name (only informational; not part of :attr:`config_id`).
    lanes_lo, lanes_hi : int
        Number of 4-bit and 8-bit PE lanes (output channels computed in parallel). The high
        precision share of every layer is ``R = lanes_hi / (lanes_lo + lanes_hi)``.
    lanes_lo_dsp : int
        How many of the low lanes (the last ones) are computed on DSP48E1s, two lanes packed per
        DSP; the others use LUTs. Even, at most ``lanes_lo``. Only the implementation (resources)
        depends on it, never the results (``docs/pe_array.md``).
    tn : int
        Activations consumed per cycle (input-channel parallelism); every lane computes a
        ``tn``-long dot product per cycle.
    act_bits, acc_bits, mult_bits, shift_bits : int
        Numeric widths, see :class:`~ilmpq.golden.formats.NumericSpec`.
    axi_data_width, axi_addr_width, axi_id_width : int
        AXI4 master data, address and ID widths (Zynq-7000 HP ports: 64, 32, 6).
    max_burst : int
        Longest AXI burst in beats (16: AXI3-compatible).
    max_reads_outstanding : int
        Read bursts in flight at once, per AXI port.
    axi_ports : int
        AXI4 manager ports (1, 2 or 4; each ``axi_data_width`` wide, one Zynq HP port each). The
        DMA's clients are spread over them as :data:`ilmpq.hdl.dma.CLIENT_PORTS` says
        (``docs/dma.md``). Implementation only: not part of :attr:`config_id`.
    act_ports : int
        AXI ports a plain LOAD_ROWS reads over (1 or 2). With 2, the activation loader splits
        such a load at a buffer word into two DMA reads, its first half on the ``act`` client's
        port and its second half on the ``act_b`` client's (:data:`ilmpq.hdl.dma.CLIENT_PORTS`),
        and takes a beat from each a cycle: twice the rate of one HP port, for the layers whose
        activation rows are what the PE array waits for. Needs ``axi_ports >= 2`` and buffer
        words of a power of two (>= 2) beats; strided and gathering
        loads read on one port. Implementation only: not part of :attr:`config_id`.
    read_fifo_beats : int
        Beats of each DMA read client's receive FIFO. A client streams at one beat per cycle
        when ``read_fifo_beats`` and ``max_reads_outstanding * max_burst`` both cover the
        memory's read latency plus a burst (``docs/dma.md``). Implementation only.
    wbuf_word_beats : int
        Width of one weight-bank word in AXI beats (the bank is ``axi_data_width *
        wbuf_word_beats`` bits wide); a weight set is reloaded into the lane registers one word
        per cycle.
    wbuf_depth : int
        Words per weight bank (there are two banks, ping-pong).
    act_depth : int
        Words of the activation buffer; one word holds ``tn`` activations (one byte each).
    acc_depth : int
        Output pixels per tile: depth of each lane's accumulator bank (two banks, ping-pong).
    max_channels : int
        Largest stored channel count ``C_mem`` of a tensor read as a residual (sizes the store
        unit's residual row buffers; the compiler rejects larger residual tensors).
    weight_mac : int
        1: the weight buffer has the SipHash-2-4 core of authenticated weight packages
        (``docs/reliability.md`` section 3.2; 64-bit AXI only); 0: CRC-checked packages only,
        and ``MAC_CTRL.enable`` makes every package fail closed with ``WPKG_MAC``. The MAC is the
        optional, keyed check (CRC is the default); the build option saves its LUTs where the
        device is full (``z020``). Visible to software in ``BUFFERS.mac``. Implementation
        only: not part of :attr:`config_id` (programs are the same; the compiler refuses
        ``mac=`` for a build without the core, the drivers refuse to enable it).
    vpool_entries : int
        Entries (``post_lanes`` bytes each) of the store unit's row array for vertical max
        pooling fused into a STORE (``Store.vpool``, docs/architecture.md *Store unit*): one
        per (mtile, column, post-processing group) of a tile's row. 0: no fused pooling (the
        compiler never fuses). A power of two, at most 4096. (0 leaves :attr:`config_id` as it was
        before the field existed.) ``tiny`` has 0, so that its programs stay what they were;
        the fused-pooling tests use ``tiny`` with 16 entries.
    post_groups : int
        ``post_lanes``-channel groups the store unit drains from the PE array, joins and
        post-processes per cycle (1, 2 or 4; it must divide ``lanes_pad / post_lanes``, the
        groups of a pixel). The output writes stay one AXI beat a cycle, so more than 1 only
        pays where the join, not the write side, is the limit: STOREs with fused vertical
        pooling (``vpool``), which write half of the rows they drain. It costs ``post_groups``
        times the post-processing lanes (their DSP48E1s), the residual row buffer's read ports
        and the join. The stored tensors, ``lanes_pad`` and the ISA do not change; it is part of
        :attr:`config_id` only when it is not 1 (the compiler does not fuse pooling where a
        pooled row would be one entry of ``post_groups`` groups).
    """

    name: str = "custom"
    lanes_lo: int = 3
    lanes_hi: int = 1
    lanes_lo_dsp: int = 0
    tn: int = 4
    act_bits: int = 8
    acc_bits: int = 32
    mult_bits: int = 16
    shift_bits: int = 6
    axi_data_width: int = 64
    axi_addr_width: int = 32
    axi_id_width: int = 4
    max_burst: int = 16
    max_reads_outstanding: int = 4
    axi_ports: int = 1
    act_ports: int = 1
    read_fifo_beats: int = 32
    wbuf_word_beats: int = 1
    wbuf_depth: int = 64
    act_depth: int = 512
    acc_depth: int = 64
    max_channels: int = 64
    weight_mac: int = 1
    vpool_entries: int = 0
    post_groups: int = 1

    def __post_init__(self):
        def need(cond, field_name, allowed):
            if not cond:
                raise ConfigError(
                    f"HWConfig.{field_name} = {getattr(self, field_name)!r} is not allowed: "
                    f"{field_name} must be {allowed}")

        for f in dataclasses.fields(self):
            if f.name != "name":
                v = getattr(self, f.name)
                need(isinstance(v, int) and not isinstance(v, bool), f.name, "an integer")
        need(1 <= self.lanes_lo <= 1024, "lanes_lo", "in [1, 1024]")
        need(1 <= self.lanes_hi <= 1024, "lanes_hi", "in [1, 1024]")
        need(0 <= self.lanes_lo_dsp <= self.lanes_lo and self.lanes_lo_dsp % 2 == 0,
             "lanes_lo_dsp", f"even and in [0, lanes_lo = {self.lanes_lo}]")
        need(1 <= self.tn <= 64, "tn", "in [1, 64]")
        need(self.act_bits in SUPPORTED_ACT_BITS, "act_bits", f"one of {SUPPORTED_ACT_BITS}")
        need(24 <= self.acc_bits <= 48, "acc_bits", "in [24, 48]")
        need(8 <= self.mult_bits <= 24, "mult_bits", "in [8, 24]")
        need(self.shift_bits == 6, "shift_bits", "6")
        need(self.axi_data_width in (32, 64, 128), "axi_data_width", "32, 64 or 128")
        need(self.axi_addr_width == 32, "axi_addr_width", "32 (Zynq-7000)")
        need(1 <= self.axi_id_width <= 12, "axi_id_width", "in [1, 12]")
        need(self.max_burst in (1, 2, 4, 8, 16), "max_burst", "1, 2, 4, 8 or 16 (AXI3 bursts)")
        need(1 <= self.max_reads_outstanding <= 16, "max_reads_outstanding", "in [1, 16]")
        need(self.axi_ports in (1, 2, 4), "axi_ports", "1, 2 or 4")
        k = self.tn * 8 // self.axi_data_width          # beats a word (when >= 1)
        need(self.act_ports == 1 or (self.act_ports == 2 and self.axi_ports >= 2 and k >= 2
                                     and self.tn * 8 % self.axi_data_width == 0
                                     and k & (k - 1) == 0),
             "act_ports", f"1, or 2 with axi_ports >= 2 and activation words of a power of two "
             f"(>= 2) beats (tn * 8 / axi_data_width, here {self.tn * 8 / self.axi_data_width:g})")
        need(self.max_burst <= self.read_fifo_beats <= 4096 and self.read_fifo_beats >= 3,
             "read_fifo_beats", f"in [max(max_burst = {self.max_burst}, 3), 4096]")
        need(1 <= self.wbuf_word_beats <= 64, "wbuf_word_beats", "in [1, 64]")
        need(_is_pow2(self.wbuf_depth) and self.wbuf_depth >= 4, "wbuf_depth",
             "a power of two >= 4")
        need(_is_pow2(self.act_depth) and self.act_depth >= 16, "act_depth",
             "a power of two >= 16")
        need(_is_pow2(self.acc_depth) and self.acc_depth >= 4, "acc_depth",
             "a power of two >= 4")
        need(self.weight_mac in (0, 1), "weight_mac", "0 or 1")
        need(self.vpool_entries == 0 or (_is_pow2(self.vpool_entries)
                                         and self.vpool_entries <= 4096),
             "vpool_entries", "0 (no fused pooling) or a power of two <= 4096")
        need(self.post_groups in (1, 2, 4), "post_groups", "1, 2 or 4")
        need((self.lanes_pad // self.post_lanes) % self.post_groups == 0, "post_groups",
             f"a divisor of the {self.lanes_pad // self.post_lanes} post-processing group(s) "
             f"of a pixel (lanes_pad {self.lanes_pad} / post_lanes {self.post_lanes})")
        need(self.max_channels >= 8 and self.max_channels % self.beat_bytes == 0,
             "max_channels", f"a multiple of the AXI beat ({self.beat_bytes} bytes), >= 8")
        if self.words_per_set > self.wbuf_depth:
            raise ConfigError(
                f"HWConfig.wbuf_depth = {self.wbuf_depth} is too small: one weight set needs "
                f"{self.words_per_set} words of {self.wbuf_word_bits} bits")
        # numeric widths are validated once more by NumericSpec
        try:
            self.numeric
        except ValueError as e:
            raise ConfigError(f"HWConfig numeric widths are invalid: {e}") from None

    # -- derived quantities ------------------------------------------------------------------

    @property
    def lanes(self) -> int:
        """Total lanes (output channels per tile), low lanes first then high lanes."""
        return self.lanes_lo + self.lanes_hi

    @property
    def ratio(self) -> Fraction:
        """High-precision row share ``R`` the quantizer must give every layer."""
        return Fraction(self.lanes_hi, self.lanes)

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle."""
        return self.lanes * self.tn

    @property
    def numeric(self) -> NumericSpec:
        return NumericSpec(act_bits=self.act_bits, acc_bits=self.acc_bits,
                           mult_bits=self.mult_bits, shift_bits=self.shift_bits)

    @property
    def lo_bits(self) -> int:
        return LO_BITS

    @property
    def hi_bits(self) -> int:
        return HI_BITS

    @property
    def set_bits(self) -> int:
        """Bits of one weight set: ``tn`` weights for every lane (see docs/architecture.md)."""
        return self.tn * (self.lanes_lo * LO_BITS + self.lanes_hi * HI_BITS)

    @property
    def wbuf_word_bits(self) -> int:
        return self.axi_data_width * self.wbuf_word_beats

    @property
    def words_per_set(self) -> int:
        """Weight-bank words per weight set (cycles to reload the lane registers)."""
        return -(-self.set_bits // self.wbuf_word_bits)

    @property
    def beat_bytes(self) -> int:
        return self.axi_data_width // 8

    @property
    def lanes_pad(self) -> int:
        """Lanes rounded up to whole post-processing groups: the channel positions one mtile
        occupies in a stored tensor (``docs/architecture.md`` section 3)."""
        return -(-self.lanes // self.post_lanes) * self.post_lanes

    @property
    def post_lanes(self) -> int:
        """Output channels the post-processing unit finishes per cycle (one AXI beat of bytes)."""
        return self.beat_bytes

    @property
    def has_weight_mac(self) -> bool:
        """Whether the weight buffer has the SipHash-2-4 core: ``weight_mac`` and a 64-bit bus
        (only 64-bit buses carry tags)."""
        return bool(self.weight_mac) and self.axi_data_width == 64

    @property
    def config_id(self) -> int:
        """32-bit identifier of the configuration (CRC-32 of its fields; ``name`` and the
        implementation-only ``lanes_lo_dsp`` excluded).

        The accelerator exposes it in a register; the driver refuses to run a program compiled
        for another configuration. ``lanes_lo_dsp`` only moves low lanes between LUTs and DSPs
        (bit-identical results, same programs), so builds that differ only there share an id.
        """
        fields = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                  if f.name not in _NOT_IN_CONFIG_ID
                  and not (f.name == "vpool_entries" and self.vpool_entries == 0)
                  and not (f.name == "post_groups" and self.post_groups == 1)]
        return zlib.crc32(repr(fields).encode())

    def describe(self) -> str:
        return (f"{self.name}: {self.lanes_lo} lo + {self.lanes_hi} hi lanes x tn={self.tn} "
                f"= {self.macs_per_cycle} MAC/cycle, R = {self.ratio}, A{self.act_bits}, "
                f"acc {self.acc_bits} b, AXI {self.axi_data_width} b")

    def replace(self, **changes) -> "HWConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, HWConfig] = {
    "tiny": HWConfig(name="tiny", lanes_lo=3, lanes_hi=1, tn=4, wbuf_word_beats=1,
                     wbuf_depth=64, act_depth=2048, acc_depth=64),
    # tiny with two AXI ports (the multi-port tests); the same programs as tiny
    "tiny2p": HWConfig(name="tiny2p", lanes_lo=3, lanes_hi=1, tn=4, wbuf_word_beats=1,
                       wbuf_depth=64, act_depth=2048, acc_depth=64, axi_ports=2),
    # read_fifo_beats / max_reads_outstanding: 128 beats and 8 bursts in flight per port keep
    # the PE array's rate up to a 64-cycle read latency; axi_ports 2 (HP0: weights, HP1: the
    # rest) because the weights alone fill one HP port in the late layers; 4 ports add
    # nothing more (the weight buffer takes one beat a cycle): bench/results/memsys.md.
    # lanes_lo_dsp 14: the 8 high lanes take 64 DSP48E1 (two per DSP, docs/pe_array.md 4.3),
    # 7 low-lane pairs 112, post-processing and the rest 37: 213 of 220
    # (bench/results/resources.md). weight_mac 0: the XC7Z020's LUTs go to the PE array;
    # packages are CRC-checked (the keyed MAC is the optional check, docs/reliability.md
    # section 3.2; z045 has it)
    "z020": HWConfig(name="z020", lanes_lo=56, lanes_hi=8, lanes_lo_dsp=14, tn=16,
                     wbuf_word_beats=9, wbuf_depth=512, act_depth=8192, acc_depth=512,
                     max_reads_outstanding=8, read_fifo_beats=128, max_channels=512,
                     axi_ports=2, weight_mac=0, vpool_entries=256),
    # (56 + 8) lanes x tn 64 (bench/results/resnet18.md, "z045 geometry"): the same 4,096
    # MAC/cycle and 288-beat weight sets as 256 lanes x tn 16, but an mtile of 64 output
    # channels matches ResNet-18's 64..512-channel layers (no lane padding); 256 + 512 + 48
    # DSP48E1 (hi lanes two per DSP, 16 DSP-pair low lanes, post-processing of two groups a
    # cycle; a multiple of 8 so that the resource bench's quarter slices stay whole pairs);
    # post_groups 2: the stem conv's STOREs (fused vertical pooling, half of the rows
    # written) are bound by post-processing with one group a cycle; four HP ports (the
    # ZC706 has four): fetch | act | weights | store; act_ports 2: plain activation loads
    # also read over the fetch port (act_b), two beats a cycle, for the layers whose rows
    # the PE array waits for (layer1/2, the maxpool's input). act_depth 8192 (512 KiB, about 114
    # BRAM36 of 545): a half holds eight 7x7x512 images stacked for batching (compile_model
    # batch=8, docs/architecture.md *Batching*), so layer4's weight sets serve all eight;
    # 4096 gave 110.6 fps at batch 8, 8192 gives 119.8 (cycle model, session 7)
    "z045": HWConfig(name="z045", lanes_lo=56, lanes_hi=8, lanes_lo_dsp=16, tn=64,
                     wbuf_word_beats=36, wbuf_depth=512, act_depth=8192, acc_depth=512,
                     max_reads_outstanding=8, read_fifo_beats=128, max_channels=512,
                     axi_ports=4, act_ports=2, vpool_entries=1024, post_groups=2),
}


def get_config(name: str) -> HWConfig:
    """Return a preset by name, with an error listing the presets for an unknown one."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown hardware configuration {name!r}; presets are: "
            f"{', '.join(sorted(PRESETS))}") from None
