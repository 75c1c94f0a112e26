"""Board platforms for ``ilmpq build``: Arty Z7-20 / PYNQ-Z1 (XC7Z020) and ZC706 (XC7Z045).

* ``arty-z7-20``: amaranth-boards' :class:`ArtyZ720Platform` (``xc7z020clg400-1``). The PYNQ-Z1
  and PYNQ-Z2 carry the same part in the same package, so the bitstream's PS side and logic
  are the same; only the user LED pins may differ between these boards.
* ``zc706``: :class:`ZC706Platform` (``xc7z045ffg900-2``), written here: amaranth-boards has no
  ZC706. Its pins come from the Xilinx *ZC706 Evaluation Board for the Zynq-7000 XC7Z045 SoC
  User Guide* (UG954); each resource names the section it comes from.

The accelerator's clock is the PS7's FCLK_CLK0 (:class:`ilmpq.hdl.soc.ZynqSoC`), so the boards'
oscillators are declared (as the platform's default clock) but not used by ``ZynqSoC``; the
only programmable-logic I/O is the user LEDs.
"""

from __future__ import annotations

from amaranth.build import Attrs, Clock, DiffPairs, Pins, Resource
from amaranth.vendor import XilinxPlatform
from amaranth_boards.arty_z7 import ArtyZ720Platform

from ..golden.errors import IlmpqValueError

__all__ = ["ArtyZ720Platform", "ZC706Platform", "Board", "BOARDS", "get_board",
           "get_platform"]


class ZC706Platform(XilinxPlatform):
    """Xilinx ZC706 evaluation board (XC7Z045-2FFG900C), programmable-logic side.

    Pin sources: UG954, chapter 1, sections "System Clock Source" and "User LEDs"; pins and I/O
    standards cross-checked against the ZC706 constraints of Analog Devices' public HDL
    reference designs (``hdl/projects/*/zc706``). Not yet tried on a board.

    Resources
    ---------
    clk200
        SYSCLK_P / SYSCLK_N: the fixed 200 MHz LVDS system clock, pins H9 / G9.
    led 0..3
        The four user LEDs, active high: GPIO_LED_LEFT Y21 and GPIO_LED_RIGHT W21 (2.5 V VADJ
        bank, LVCMOS25), GPIO_LED_CENTER G2 and GPIO_LED_0 A17 (1.5 V bank, LVCMOS15).
        ``ZynqSoC`` drives led 0 (DMA activity) and led 1 (interrupt).
    """

    device = "xc7z045"
    package = "ffg900"
    speed = "2"
    default_clk = "clk200"
    resources = [
        # UG954 "System Clock Source": SYSCLK_P H9, SYSCLK_N G9, LVDS, 200 MHz
        Resource("clk200", 0, DiffPairs("H9", "G9", dir="i"), Clock(200e6),
                 Attrs(IOSTANDARD="LVDS")),
        # UG954 "User LEDs": GPIO_LED_LEFT Y21, VADJ (2.5 V) bank
        Resource("led", 0, Pins("Y21", dir="o"), Attrs(IOSTANDARD="LVCMOS25")),
        # UG954 "User LEDs": GPIO_LED_CENTER G2, 1.5 V bank
        Resource("led", 1, Pins("G2", dir="o"), Attrs(IOSTANDARD="LVCMOS15")),
        # UG954 "User LEDs": GPIO_LED_RIGHT W21, VADJ (2.5 V) bank
        Resource("led", 2, Pins("W21", dir="o"), Attrs(IOSTANDARD="LVCMOS25")),
        # UG954 "User LEDs": GPIO_LED_0 A17, 1.5 V bank
        Resource("led", 3, Pins("A17", dir="o"), Attrs(IOSTANDARD="LVCMOS15")),
    ]
    connectors = []


class Board:
    """A supported board: its CLI name, platform class, Xilinx part and default preset."""

    def __init__(self, name: str, platform_cls, default_config: str, description: str):
        self.name = name
        self.platform_cls = platform_cls
        self.default_config = default_config
        self.description = description

    @property
    def part(self) -> str:
        """The Vivado part name, e.g. ``xc7z020clg400-1``."""
        cls = self.platform_cls
        return f"{cls.device}{cls.package}-{cls.speed}"

    def platform(self, **kwargs) -> XilinxPlatform:
        """A fresh platform instance (a platform can prepare one design only)."""
        return self.platform_cls(**kwargs)

    def __repr__(self):
        return f"Board({self.name!r}, part={self.part!r}, default_config={self.default_config!r})"


#: Boards by CLI name.
BOARDS: dict[str, Board] = {
    "arty-z7-20": Board("arty-z7-20", ArtyZ720Platform, "z020",
                        "Digilent Arty Z7-20 (same XC7Z020-1CLG400 as the PYNQ-Z1/Z2)"),
    "zc706": Board("zc706", ZC706Platform, "z045",
                   "Xilinx ZC706 evaluation board (XC7Z045-2FFG900)"),
}


def get_board(name: str) -> Board:
    """Return the :class:`Board` called ``name``, or raise naming the supported boards."""
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise IlmpqValueError(f"unknown board {name!r}; supported boards are: "
                              f"{', '.join(BOARDS)}") from None


def get_platform(name: str, **kwargs) -> XilinxPlatform:
    """A new platform instance for the board called ``name`` (see :data:`BOARDS`)."""
    return get_board(name).platform(**kwargs)
