"""Building the Verilator library: port checks, the cache, concurrent builds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vl_designs import design_verilog, top_name
from ilmpq.firmware.sim.verilator.build import (LIB_NAME, build, build_library, cache_key,
                                            check_top_ports, default_cache_dir, parse_ports)
from ilmpq.firmware.sim.verilator.sim import VerilatorSim
from ilmpq.golden.errors import IlmpqValueError
from memcpy_dut import MODE_COPY, REG_BEATS, REG_CTRL, REG_DST, REG_MODE, REG_SRC, CTRL_START


@pytest.fixture(scope="module")
def verilog64() -> str:
    return design_verilog(data_width=64)


def test_ports_of_the_test_dut(verilog64):
    ports = parse_ports(verilog64, top_name(data_width=64))
    assert ports["clk"] == ("input", 1) and ports["rst"] == ("input", 1)
    assert ports["m_axi_rdata"] == ("input", 64) and ports["m_axi_wstrb"] == ("output", 8)
    assert ports["s_axil_awaddr"] == ("input", 12) and ports["irq"] == ("output", 1)
    assert check_top_ports(verilog64, top_name(data_width=64)) == {
        "data_bits": 64, "addr_bits": 32, "id_bits": 4, "axi_ports": 1}


def test_port_problems_are_all_named(verilog64):
    top = top_name(data_width=64)
    broken = (verilog64.replace("m_axi_rlast", "m_axi_rlst")
              .replace("input [11:0] s_axil_araddr", "input [15:0] s_axil_araddr"))
    with pytest.raises(IlmpqValueError) as info:
        check_top_ports(broken, top)
    msg = str(info.value)
    assert "missing input m_axi_rlast" in msg
    assert "s_axil_araddr is 16 bits wide, must be 12" in msg
    with pytest.raises(IlmpqValueError, match=r"m_axi_wdata is 256 bits wide, must be 32 or 64 "
                                              r"or 128"):
        check_top_ports(design_verilog(data_width=256), top_name(data_width=256))
    with pytest.raises(IlmpqValueError, match=r"no module named 'nope'; top-level modules "
                                              r"found: memcpy_good_64"):
        build(verilog64, "nope")
    with pytest.raises(IlmpqValueError, match="plain Verilog module name"):
        build(verilog64, "a.b")


def test_second_port_must_match_the_first(verilog64):
    """A top with ``m_axi1_*`` has two ports; a member missing or of another width on the second
    port is named."""
    top = top_name(data_width=64)
    mod = verilog64.index(f"module {top}")
    end = verilog64.index("endmodule", mod)
    body = verilog64[mod:end]
    decls = [l for l in body.splitlines() if re.match(r"\s*(input|output)\b.*\bm_axi_", l)]
    extra = "\n".join(l.replace("m_axi_", "m_axi1_") for l in decls)
    two = verilog64[:end] + extra + "\n" + verilog64[end:]
    assert check_top_ports(two, top)["axi_ports"] == 2
    broken = two.replace("m_axi1_rlast", "m_axi1_rlst")
    with pytest.raises(IlmpqValueError, match="missing input m_axi1_rlast"):
        check_top_ports(broken, top)
    three = verilog64[:end] + extra + "\n" + extra.replace("m_axi1_", "m_axi2_") + "\n" + \
        verilog64[end:]
    with pytest.raises(IlmpqValueError, match="3 AXI ports"):
        check_top_ports(three, top)


def test_parse_ansi_header():
    text = textwrap.dedent("""\
        module other(input x); endmodule
        module t #(parameter W = 4) (
          input  wire        clk,
          input  wire [63:0] m_axi_rdata,
          output reg  [7:0]  m_axi_arlen, m_axi_awlen,
          output             irq
        );
        endmodule
        """)
    assert parse_ports(text, "t") == {"clk": ("input", 1), "m_axi_rdata": ("input", 64),
                                      "m_axi_arlen": ("output", 8), "m_axi_awlen": ("output", 8),
                                      "irq": ("output", 1)}


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ILMPQ_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == os.path.join(str(tmp_path), "verilator")
    monkeypatch.delenv("ILMPQ_CACHE_DIR")
    assert default_cache_dir() == os.path.expanduser("~/.cache/ilmpq/verilator")


@pytest.mark.verilator
def test_second_build_is_a_cache_hit(good):
    again = build_library(good.verilog, good.top)
    assert again.cached and again.path == good.build.path and again.key == good.build.key
    assert os.path.basename(again.path) == LIB_NAME
    folder = os.path.dirname(again.path)
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    assert meta["key"] == again.key and meta["top"] == good.top
    assert again.build_seconds == meta["build_seconds"] > 0
    assert os.path.exists(os.path.join(folder, f"{good.top}.v"))
    # the key covers the Verilog text
    assert cache_key(good.verilog, good.top) == again.key
    assert cache_key(good.verilog + "// a comment\n", good.top) != again.key


_CHILD = """
import json, sys
from ilmpq.firmware.sim.verilator.build import build_library
verilog = open(sys.argv[1]).read()
r = build_library(verilog, sys.argv[2], cache_dir=sys.argv[3], trace=True)
print(json.dumps({"path": r.path, "cached": r.cached}))
"""


@pytest.mark.verilator
def test_concurrent_builds_share_one_library(toolchain, tmp_path, rng):
    """Two processes build the same design (32-bit bus, with --trace) at once into an empty
    cache: one compiles, the other waits for it and gets the same library; no temporary folder
    is left behind. The library then runs a copy correctly on a 32-bit bus and writes a VCD whose
    clock edges and irq match the harness's cycle count."""
    top = top_name(data_width=32)
    verilog = design_verilog(data_width=32)
    src = tmp_path / "design.v"
    src.write_text(verilog)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(src), top, str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["path"] == results[1]["path"]
    assert sorted(r["cached"] for r in results) == [False, True]
    entries = sorted(os.listdir(cache))
    assert [e for e in entries if e.startswith(".tmp")] == []
    folders = [e for e in entries if os.path.isdir(cache / e)]
    assert len([e for e in folders if e.startswith(top)]) == 1
    # the design-independent Verilator runtime objects were kept for later builds
    assert len([e for e in folders if e.startswith("runtime-")]) == 1

    vcd = tmp_path / "run.vcd"
    sim = VerilatorSim(verilog, top, mem_base=0x2000_0000, mem_size=1 << 16,
                       cache_dir=str(cache), vcd=vcd)
    assert sim.build_result.cached and sim.data_bits == 32
    data = rng.integers(0, 256, 4 * 50, dtype=np.uint8).tobytes()
    sim.mem_write(0x2000_0FC0, data)
    for reg, value in ((REG_SRC, 0x2000_0FC0), (REG_DST, 0x2000_8000), (REG_BEATS, 50),
                       (REG_MODE, MODE_COPY)):
        sim.csr_write(reg, value)
    sim.csr_write(REG_CTRL, CTRL_START)
    sim.wait_irq(10_000)
    irq_cycle = sim.cycle
    assert sim.mem_read(0x2000_8000, len(data)) == data
    sim.step(3)
    sim.close()

    times, irq_rise = _vcd_edges(vcd.read_text(), "irq")
    rising = [t for t in times if t % 10 == 0 and t > 0]
    assert len(rising) == sim.reset_cycles + irq_cycle + 3
    # irq rose at the rising edge that ended cycle irq_cycle - 1 (counting from reset)
    assert irq_rise == 10 * (sim.reset_cycles + irq_cycle)


def _vcd_edges(text: str, name: str):
    """Timestamps of a VCD and the first time signal ``name`` is 1."""
    code = None
    times, now, rise = [], 0, None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "$var" and parts[4] == name and code is None:
            code = parts[3]
        elif line.startswith("#"):
            now = int(line[1:])
            times.append(now)
        elif code is not None and rise is None and line == f"1{code}":
            rise = now
    assert code is not None, f"{name} not in the VCD"
    return times, rise
