"""``ilmpq verilog`` / ``ilmpq build``: Verilog export, board build plans, Vivado report parsing.

Vivado is not installed here: the "with Vivado" path runs the real build script against a fake
``vivado`` (``$VIVADO``) that writes report excerpts in Vivado's format, so everything but
Vivado itself (plan, script, report collection, JSON) is exercised.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys

import pytest

from ilmpq.firmware.board import build as B
from ilmpq.firmware.cli import main
from ilmpq.firmware.cli.verilog import vivado_attributes
from ilmpq.firmware.regmap import generate
from ilmpq.firmware.board.resources import Resources
from ilmpq.golden.errors import IlmpqError
from ilmpq.hdl.config import get_config
from ilmpq.hdl.platforms import BOARDS, ZC706Platform, get_board

# ---- Vivado report excerpts (formats of Vivado 2023.2 and 2018.3) ----------------------------

UTIL_2023 = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved. Copyright 2022-2023 Advanced Micro Devices, Inc. All Rights Reserved.
---------------------------------------------------------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2023.2 (lin64) Build 4029153 Fri Oct 13 20:13:54 MDT 2023
| Date         : Tue May 12 10:11:12 2026
| Host         : buildhost running 64-bit Ubuntu 22.04.3 LTS
| Command      : report_utilization -file {name}_utilization_place.rpt
| Design       : {name}
| Device       : xc7z020clg400-1
| Speed File   : -1
| Design State : Fully Placed
---------------------------------------------------------------------------------------------------------------------------------------------

Utilization Design Information

Table of Contents
-----------------
1. Slice Logic
1.1 Summary of Registers by Type
2. Slice Logic Distribution
3. Memory
4. DSP
6. Clocking

1. Slice Logic
--------------

+----------------------------+-------+-------+------------+-----------+-------+
|          Site Type         |  Used | Fixed | Prohibited | Available | Util% |
+----------------------------+-------+-------+------------+-----------+-------+
| Slice LUTs                 | 36512 |     0 |          0 |     53200 | 68.63 |
|   LUT as Logic             | 34980 |     0 |          0 |     53200 | 65.75 |
|   LUT as Memory            |  1532 |     0 |          0 |     17400 |  8.80 |
|     LUT as Distributed RAM |  1532 |     0 |            |           |       |
|     LUT as Shift Register  |     0 |     0 |            |           |       |
| Slice Registers            | 41877 |     0 |          0 |    106400 | 39.36 |
|   Register as Flip Flop    | 41877 |     0 |          0 |    106400 | 39.36 |
|   Register as Latch        |     0 |     0 |          0 |    106400 |  0.00 |
| F7 Muxes                   |   648 |     0 |          0 |     26600 |  2.44 |
| F8 Muxes                   |   128 |     0 |          0 |     13300 |  0.96 |
+----------------------------+-------+-------+------------+-----------+-------+
* Warning! LUT value is adjusted to account for LUT combining.


1.1 Summary of Registers by Type
--------------------------------

+-------+--------------+-------------+--------------+
| Total | Clock Enable | Synchronous | Asynchronous |
+-------+--------------+-------------+--------------+
| 0     |            _ |           - |            - |
| 41877 |          Yes |           - |        Reset |
+-------+--------------+-------------+--------------+


3. Memory
---------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    | 98.5 |     0 |          0 |       140 | 70.36 |
|   RAMB36/FIFO*    |   94 |     0 |          0 |       140 | 67.14 |
|     RAMB36E1 only |   94 |       |            |           |       |
|   RAMB18          |    9 |     0 |          0 |       280 |  3.21 |
|     RAMB18E1 only |    9 |       |            |           |       |
+-------------------+------+-------+------------+-----------+-------+
* Note: Each Block RAM Tile only has one FIFO logic available and therefore can accommodate only one FIFO36E1 or one FIFO18E1.


4. DSP
------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |  200 |     0 |          0 |       220 | 90.91 |
|   DSP48E1 only |  200 |       |            |           |       |
+----------------+------+-------+------------+-----------+-------+


6. Clocking
-----------

+------------+------+-------+------------+-----------+-------+
|  Site Type | Used | Fixed | Prohibited | Available | Util% |
+------------+------+-------+------------+-----------+-------+
| BUFGCTRL   |    1 |     0 |          0 |        32 |  3.13 |
| BUFIO      |    0 |     0 |          0 |        16 |  0.00 |
| MMCME2_ADV |    0 |     0 |          0 |         4 |  0.00 |
+------------+------+-------+------------+-----------+-------+
"""

UTIL_2018_SYNTH = """\
Copyright 1986-2018 Xilinx, Inc. All Rights Reserved.
------------------------------------------------------------------------------------
| Tool Version : Vivado v.2018.3 (lin64) Build 2405991 Thu Dec  6 23:36:41 MST 2018
| Design       : top
| Device       : 7z045ffg900-2
| Design State : Synthesized
------------------------------------------------------------------------------------

1. Slice Logic
--------------

+----------------------------+--------+-------+-----------+-------+
|          Site Type         |  Used  | Fixed | Available | Util% |
+----------------------------+--------+-------+-----------+-------+
| Slice LUTs*                | 121044 |     0 |    218600 | 55.37 |
|   LUT as Logic             | 119812 |     0 |    218600 | 54.81 |
| Slice Registers            |  98005 |     0 |    437200 | 22.42 |
+----------------------------+--------+-------+-----------+-------+
* Warning! The Final LUT count, after physical optimizations and full implementation, is typically lower. Run opt_design after synthesis, if not already completed, for a more realistic count.

4. DSP
------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |    1 |     0 |       900 | <0.01 |
+----------------+------+-------+-----------+-------+
"""

_TIMING_HEAD = """\
Copyright 1986-2022 Xilinx, Inc. All Rights Reserved. Copyright 2022-2023 Advanced Micro Devices, Inc. All Rights Reserved.
---------------------------------------------------------------------------------------------------------------------------------------------
| Tool Version : Vivado v.2023.2 (lin64) Build 4029153 Fri Oct 13 20:13:54 MDT 2023
| Date         : Tue May 12 10:31:00 2026
| Command      : report_timing_summary -datasheet -max_paths 10 -file {name}_timing.rpt
| Design       : {name}
| Device       : 7z020-clg400
| Speed File   : -1  PRODUCTION 1.12 2019-11-22
| Design State : Routed
---------------------------------------------------------------------------------------------------------------------------------------------

Timing Summary Report

------------------------------------------------------------------------------------------------
| Timer Settings
| --------------
------------------------------------------------------------------------------------------------

  Enable Multi Corner Analysis               :  Yes
  Enable Pessimism Removal                   :  Yes


------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints  
    -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------  
"""

_TIMING_TAIL = """\


------------------------------------------------------------------------------------------------
| Clock Summary
| -------------
------------------------------------------------------------------------------------------------

Clock  Waveform(ns)       Period(ns)      Frequency(MHz)
-----  ------------       ----------      --------------
fclk0  {{0.000 5.000}}      10.000          100.000         


------------------------------------------------------------------------------------------------
| Intra Clock Table
| -----------------
------------------------------------------------------------------------------------------------

Clock             WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints  
-----             -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------  
fclk0             {row}


------------------------------------------------------------------------------------------------
| Inter Clock Table
| -----------------
------------------------------------------------------------------------------------------------

From Clock    To Clock          WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints  
----------    --------          -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------  
"""

_MET_ROW = ("  1.250        0.000                      0               118342        0.021"
            "        0.000                      0               118342        3.750        0.000"
            "                       0                 45201  ")
_FAIL_ROW = (" -0.512      -35.204                    120               118342        0.018"
             "        0.000                      0               118342        3.750        0.000"
             "                       0                 45201  ")


def timing_report(name: str, met: bool) -> str:
    row = _MET_ROW if met else _FAIL_ROW
    verdict = ("All user specified timing constraints are met." if met else
               "Timing constraints are not met.")
    return (_TIMING_HEAD.format(name=name) + "    " + row + "\n\n\n" + verdict + "\n"
            + _TIMING_TAIL.format(row=row))


# ---- report parsers ---------------------------------------------------------------------------

def test_parse_utilization_2023_placed():
    r = B.parse_utilization_report(UTIL_2023.format(name="d"))
    assert (r["design"], r["device"], r["design_state"]) == ("d", "xc7z020clg400-1",
                                                             "Fully Placed")
    assert r["tool_version"].startswith("Vivado v.2023.2")
    s = r["summary"]
    assert s["lut"] == {"used": 36512, "available": 53200, "util_pct": 68.63}
    assert s["lut_logic"]["used"] == 34980 and s["lut_memory"]["used"] == 1532
    assert s["ff"] == {"used": 41877, "available": 106400, "util_pct": 39.36}
    assert s["bram_tile"] == {"used": 98.5, "available": 140, "util_pct": 70.36}
    assert s["ramb36"]["used"] == 94 and s["ramb18"] == {"used": 9, "available": 280,
                                                          "util_pct": 3.21}
    assert s["dsp"] == {"used": 200, "available": 220, "util_pct": 90.91}
    assert s["bufg"]["used"] == 1
    mem = r["tables"]["Memory"]
    assert mem[2] == {"site_type": "RAMB36E1 only", "used": 94, "fixed": None,
                      "prohibited": None, "available": None, "util_pct": None}
    assert "Summary of Registers by Type" not in r["tables"]    # not a site-type table


def test_parse_utilization_2018_synthesized():
    r = B.parse_utilization_report(UTIL_2018_SYNTH)
    assert r["design_state"] == "Synthesized" and r["device"] == "7z045ffg900-2"
    assert r["summary"]["lut"] == {"used": 121044, "available": 218600, "util_pct": 55.37}
    assert r["summary"]["dsp"] == {"used": 1, "available": 900, "util_pct": 0.01}
    assert "prohibited" not in r["tables"]["Slice Logic"][0]
    assert "bram_tile" not in r["summary"]


@pytest.mark.parametrize("met", [True, False])
def test_parse_timing_summary(met):
    r = B.parse_timing_report(timing_report("d", met))
    assert r["design"] == "d" and r["met"] is met
    clk = r["clocks"]["fclk0"]
    assert clk["period_ns"] == 10.0 and clk["frequency_mhz"] == 100.0
    if met:
        assert (r["wns_ns"], r["tns_ns"], r["tns_failing_endpoints"]) == (1.25, 0.0, 0)
        assert clk["wns_ns"] == 1.25 and clk["fmax_mhz"] == round(1000 / 8.75, 2)
    else:
        assert (r["wns_ns"], r["tns_ns"], r["tns_failing_endpoints"]) == (-0.512, -35.204, 120)
        assert clk["fmax_mhz"] == round(1000 / 10.512, 2)
    assert (r["whs_ns"], r["tns_total_endpoints"], r["tpws_total_endpoints"]) == (
        0.021 if met else 0.018, 118342, 45201)
    assert r["fmax_mhz"] == clk["fmax_mhz"]


def test_parsers_reject_other_text():
    with pytest.raises(IlmpqError, match="not a Vivado utilization report"):
        B.parse_utilization_report("hello\n+--+\n| a |\n")
    with pytest.raises(IlmpqError, match="not a Vivado timing summary"):
        B.parse_timing_report(UTIL_2023)


# ---- ilmpq verilog -----------------------------------------------------------------------------

def test_cli_verilog_writes_lint_clean_verilog_readme_and_host_files(tmp_path, capsys):
    from ilmpq.firmware.sim.verilator.lint import lint

    cfg = get_config("tiny")
    out = tmp_path / "v"
    assert main(["verilog", "--config", "tiny", "-o", str(out)]) == 0
    assert "wrote 6 files" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted(["ilmpq_tiny.v", "README.md", "ilmpq_regs.h",
                                              "ilmpq_regs.py", "registers.md", "regmap.json"])
    text = (out / "ilmpq_tiny.v").read_text()
    top = re.search(r"^module ilmpq_tiny\(([^;]*)\);", text, re.M)
    ports = {p.strip() for p in top.group(1).split(",")}
    assert {"clk", "rst", "irq", "s_axil_awaddr", "s_axil_rdata", "m_axi_awlen", "m_axi_wid"
            } - ports == {"m_axi_wid"}          # AXI4 names: no WID
    assert {p for p in ports if not p.startswith(("s_axil_", "m_axi_"))} == {"clk", "rst",
                                                                              "irq"}
    assert re.search(r'X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axil:m_axi, '
                     r'ASSOCIATED_RESET rst" \*\)\n\s*input clk;', text)
    assert re.search(r'POLARITY ACTIVE_HIGH" \*\)\n\s*input rst;', text)
    assert re.search(r'SENSITIVITY LEVEL_HIGH" \*\)\n\s*output irq;', text)
    # Amaranth writes the zero-width address of a depth-1 FIFO memory as [-1:0] (ASCRANGE)
    res = lint(text, "ilmpq_tiny", extra_args=("-Wno-ASCRANGE",))
    assert res.clean, res.output[-3000:]
    assert (out / "ilmpq_regs.h").read_text() == generate(cfg, "c")
    assert (out / "ilmpq_regs.py").read_text() == generate(cfg, "py")
    assert json.loads((out / "regmap.json").read_text()) == json.loads(generate(cfg, "json"))
    readme = (out / "README.md").read_text()
    for needle in ("4 KiB", "`0x048`", "`0x04c`", "ASSOCIATED_BUSIF", "S_AXI_HP0",
                   f"{cfg.config_id:#010x}", "active high"):
        assert needle in readme, needle


def test_vivado_attributes_errors():
    with pytest.raises(IlmpqError, match="module 'nope' not found"):
        vivado_attributes("module top(clk);\n  input clk;\nendmodule\n", "nope")
    with pytest.raises(IlmpqError, match="port 'rst'"):
        vivado_attributes("module top(clk);\n  input clk;\nendmodule\n", "top")


# ---- ilmpq build -------------------------------------------------------------------------------

def _no_vivado(monkeypatch):
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)
    monkeypatch.setenv("VIVADO", "/nonexistent/vivado")


@pytest.mark.parametrize("board,part,led", [("arty-z7-20", "xc7z020clg400-1", "R14"),
                                            ("zc706", "xc7z045ffg900-2", "Y21")])
def test_build_plan_for_each_board(tmp_path, monkeypatch, capsys, board, part, led):
    """``ilmpq build`` without Vivado: the plan of the real accelerator (tiny) for each board."""
    _no_vivado(monkeypatch)
    cfg = get_config("tiny")
    assert main(["build", "--board", board, "--config", "tiny", "--no-estimate",
                 "-o", str(tmp_path)]) == 0
    name = f"ilmpq_tiny_{board.replace('-', '_')}"
    out = capsys.readouterr().out
    assert f"{name}: board {board} ({part}), configuration tiny" in out
    assert f"Vivado not run: run 'sh build_{name}.sh'" in out
    files = set(os.listdir(tmp_path))
    for f in (f"{name}.v", f"{name}.xdc", f"{name}.tcl", f"build_{name}.sh", "ilmpq_regs.h",
              "ilmpq_regs.py", "registers.md", "build.json", "BUILD.md"):
        assert f in files, f
    tcl = (tmp_path / f"{name}.tcl").read_text()
    assert f"create_project -force -name {name} -part {part}" in tcl
    assert "write_bitstream" in tcl
    xdc = (tmp_path / f"{name}.xdc").read_text()
    assert f"set_property LOC {led} [get_ports \"led_0__io\"]" in xdc
    assert re.search(r'create_clock -name fclk0 -period 10\.0 \[get_nets "fclk0"\]', xdc)
    v = (tmp_path / f"{name}.v").read_text()
    assert len(re.findall(r"^\s*PS7\s+\S+\s*\(", v, re.M)) == 1       # exactly one PS7
    ps7 = v[re.search(r"^\s*PS7\s+\S+\s*\(", v, re.M).end():]
    ps7 = ps7[:ps7.index(");")]
    assert ".MAXIGP0ACLK(clk)" in ps7 and ".SAXIHP0ACLK(clk)" in ps7
    assert ".IRQF2P(" in ps7 and ".IRQF2P(20'h" not in ps7          # irq is wired, not tied
    assert re.search(r"BUFG\s+\S+\s*\(\s*\.I\(fclk\[0\]\),\s*\.O\(clk\)", v)
    assert len(re.findall(r"^module ", v, re.M)) > 20                  # the accelerator is in
    summary = json.loads((tmp_path / "build.json").read_text())
    assert (summary["name"], summary["part"], summary["vivado_ran"], summary["bitstream"]) == (
        name, part, False, None)
    assert summary["config_id"] == f"{cfg.config_id:#010x}"
    assert summary["vivado"] is None and summary["estimate"] is None
    assert f"sh build_{name}.sh" in (tmp_path / "BUILD.md").read_text()


class _Double:
    """A cheap accelerator stand-in for the build tests that do not look at the design."""

    @staticmethod
    def make(cfg):
        from test_soc import AcceleratorDouble
        return AcceleratorDouble(cfg)


_FAKE_VIVADO = """\
#!{python}
# A stand-in for 'vivado -mode batch -log X.log -source X.tcl': writes the reports and the
# bitstream the amaranth Vivado script would write.
import os, sys
args = sys.argv[1:]
tcl = args[args.index("-source") + 1]
name = tcl[:-len(".tcl")]
assert open(tcl).read().startswith("# Automatically generated by Amaranth")
src = os.environ["FAKE_VIVADO_REPORTS"]
for suffix in ("_utilization_place.rpt", "_timing.rpt"):
    with open(os.path.join(src, "r" + suffix)) as f, open(name + suffix, "w") as g:
        g.write(f.read().replace("@NAME@", name))
with open(name + ".bit", "wb") as f:
    f.write(b"\\x00\\x09\\x0f\\xf0")
with open(name + ".log", "w") as f:
    f.write("fake vivado\\n")
"""


def test_build_runs_vivado_when_available(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "r_utilization_place.rpt").write_text(UTIL_2023.format(name="@NAME@"))
    (reports / "r_timing.rpt").write_text(timing_report("@NAME@", met=True))
    fake = tmp_path / "vivado"
    fake.write_text(_FAKE_VIVADO.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)
    monkeypatch.setenv("VIVADO", str(fake))
    monkeypatch.setenv("FAKE_VIVADO_REPORTS", str(reports))
    assert B.vivado_available("arty-z7-20")

    cfg = get_config("tiny")
    out = tmp_path / "out"
    res = B.build("arty-z7-20", str(out), config=cfg, estimate=False,
                  accelerator=_Double.make(cfg))
    name = "ilmpq_tiny_arty_z7_20"
    assert res.vivado_ran and res.bitstream == f"{name}.bit"
    assert (out / f"{name}.bit").read_bytes() == b"\x00\x09\x0f\xf0"
    rep = json.loads((out / "vivado_reports.json").read_text())
    assert rep["utilization"]["source"] == f"{name}_utilization_place.rpt"
    assert rep["utilization"]["design"] == name
    assert rep["utilization"]["summary"]["dsp"]["used"] == 200
    assert rep["timing"]["source"] == f"{name}_timing.rpt"
    assert rep["timing"]["met"] is True and rep["timing"]["fmax_mhz"] == 114.29
    summary = json.loads((out / "build.json").read_text())
    assert summary["vivado_ran"] and summary["vivado"] == rep
    md = (out / "BUILD.md").read_text()
    assert "fmax 114.29 MHz" in md and f"`{name}.bit`" in md

    # the reports alone, e.g. copied back from a build machine
    (out / "build.json").unlink()
    res2 = B.build("arty-z7-20", str(out), config="tiny", reports_only=True)
    assert res2.vivado == rep and res2.bitstream == f"{name}.bit"


def test_build_vivado_required_or_reports_missing(tmp_path, monkeypatch):
    _no_vivado(monkeypatch)
    assert not B.vivado_available("zc706")
    with pytest.raises(B.BuildError, match="Vivado is not available"):
        B.build("zc706", str(tmp_path), config="tiny", vivado=True, estimate=False)
    with pytest.raises(B.BuildError, match="no Vivado reports"):
        B.build("zc706", str(tmp_path), config="tiny", reports_only=True)
    with pytest.raises(IlmpqError, match="unknown board 'zedboard'; supported boards are: "
                                         "arty-z7-20, zc706"):
        B.build("zedboard", str(tmp_path))
    with pytest.raises(IlmpqError, match="design name"):
        B.build("zc706", str(tmp_path), config="tiny", name="1bad-name")


def test_build_estimate_is_written(tmp_path, monkeypatch):
    """The estimate's plumbing (estimate.json, build.json, BUILD.md) with a stubbed synthesis:
    the real yosys run takes minutes and belongs to ``bench/`` and the CLI."""
    _no_vivado(monkeypatch)
    from ilmpq.firmware.board import resources

    calls = []

    def fake_synthesize(design, *, name, timeout=None, log_path=None, **kw):
        calls.append((type(design).__name__, name))
        design._MustUse__silence = True   # not elaborated by the stub
        with open(log_path, "w") as f:
            f.write("yosys log\n")
        return Resources({"LUT6": 1000, "LUT4": 64, "FDRE": 2000, "DSP48E1": 22,
                          "RAMB36E1": 14, "RAMB18E1": 2, "RAM64M": 10}, seconds=1.5)

    monkeypatch.setattr(resources, "synthesize", fake_synthesize)
    cfg = get_config("tiny")
    res = B.build("arty-z7-20", str(tmp_path), config=cfg, vivado=False,
                  accelerator=_Double.make(cfg))
    assert calls == [("ZynqFabric", "ilmpq_fabric")]
    est = json.loads((tmp_path / "estimate.json").read_text())
    assert (est["lut"], est["ff"], est["dsp"], est["bram36"]) == (1104, 2000, 22, 15.0)
    assert est["device"] == "xc7z020"
    assert est["device_utilization"] == {"lut": round(100 * 1104 / 53200, 2),
                                         "ff": round(100 * 2000 / 106400, 2), "dsp": 10.0,
                                         "bram36": round(100 * 15 / 140, 2)}
    assert set(est["utilization"]) == {"xc7z020", "xc7z045"}
    assert res.estimate == est
    assert json.loads((tmp_path / "build.json").read_text())["estimate"] == est
    assert "| 1104 (2.08%) | 2000 (1.88%) | 22 (10.0%) | 15.0 (10.71%) | 1.5 |" in (
        tmp_path / "BUILD.md").read_text()


def test_cli_build_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["build", "--board", "zedboard", "-o", str(tmp_path)])
    assert e.value.code == 2
    assert "invalid choice: 'zedboard'" in capsys.readouterr().err
    assert main(["build", "--board", "zc706", "--config", "huge", "-o", str(tmp_path)]) == 2
    assert "unknown hardware configuration 'huge'" in capsys.readouterr().err


def test_boards_table():
    assert {n: b.part for n, b in BOARDS.items()} == {"arty-z7-20": "xc7z020clg400-1",
                                                      "zc706": "xc7z045ffg900-2"}
    assert get_board("zc706").platform_cls is ZC706Platform
    assert {b.default_config for b in BOARDS.values()} == {"z020", "z045"}
    leds = [r for r in ZC706Platform.resources if r.name == "led"]
    assert [(r.ios[0].names, r.attrs["IOSTANDARD"]) for r in leds] == [
        (["Y21"], "LVCMOS25"), (["G2"], "LVCMOS15"), (["W21"], "LVCMOS25"),
        (["A17"], "LVCMOS15")]
