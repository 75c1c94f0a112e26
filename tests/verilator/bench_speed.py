"""Measure Verilator build time and simulation speed on the test DUT (not a pytest test).

Usage::

    python tests/verilator/bench_speed.py [--opt default Os O1 O2 O3] [--json out.json]

For each C++ optimisation level (``default``: the flags of ``build.py``) it builds the 64-bit
:class:`memcpy_dut.MemcpyEngine` in a fresh temporary cache (wall and CPU seconds of the build),
then a second design in the same cache (which reuses the Verilator runtime objects), times a
cached construction, and runs a 1 Mi-beat fill, a 256 Ki-beat copy and 2 M idle cycles, reporting
simulated cycles per second and per CPU-second (the memory model, the AXI4-Lite manager and the
design all in C++). Timings depend on the machine and its load: the load average is recorded
with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

from vl_designs import MEM_BASE, design_verilog, top_name  # noqa: E402
from memcpy_dut import (CTRL_START, MODE_COPY, MODE_FILL, REG_BEATS, REG_CTRL,  # noqa: E402
                        REG_DST, REG_MAXBURST, REG_MODE, REG_SRC)

from ilmpq.firmware.sim.verilator import build as vbuild  # noqa: E402
from ilmpq.firmware.sim.verilator.sim import VerilatorSim  # noqa: E402


DEFAULT_OPT = vbuild.OPT_FLAGS


def measure(opt: str, cache_dir: str) -> dict:
    if opt == "default":
        vbuild.OPT_FLAGS = DEFAULT_OPT
    else:
        vbuild.OPT_FLAGS = (f"OPT_FAST=-{opt}", f"OPT_SLOW=-{opt}", f"OPT_GLOBAL=-{opt}")
    verilog, top = design_verilog(data_width=64), top_name(data_width=64)
    res = vbuild.build_library(verilog, top, cache_dir=cache_dir)
    with open(os.path.join(os.path.dirname(res.path), "meta.json")) as f:
        meta = json.load(f)
    sim = VerilatorSim(verilog, top, mem_base=MEM_BASE, mem_size=16 << 20, cache_dir=cache_dir)
    out = {"opt": " ".join(vbuild.OPT_FLAGS), "build_seconds": meta["build_seconds"],
           "build_cpu_seconds": meta["build_cpu_seconds"],
           "load_average_at_build": meta["load_average"]}
    for name, mode, beats in (("fill", MODE_FILL, 1 << 20), ("copy", MODE_COPY, 1 << 18)):
        for reg, value in ((REG_SRC, MEM_BASE), (REG_DST, MEM_BASE + (8 << 20)),
                           (REG_BEATS, beats), (REG_MODE, mode), (REG_MAXBURST, 16)):
            sim.csr_write(reg, value)
        sim.csr_write(REG_CTRL, CTRL_START)
        t0, c0 = time.perf_counter(), time.process_time()
        cycles = sim.wait_irq(100 * beats)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        out[f"{name}_cycles"] = cycles
        out[f"{name}_mcycles_per_s"] = round(cycles / dt / 1e6, 3)
        out[f"{name}_mcycles_per_cpu_s"] = round(cycles / dc / 1e6, 3)
        sim.reset()
    # a second design in the same cache reuses the Verilator runtime objects
    other = vbuild.build_library(design_verilog(data_width=128, faults=True),
                                 top_name(data_width=128, faults=True), cache_dir=cache_dir)
    with open(os.path.join(os.path.dirname(other.path), "meta.json")) as f:
        meta2 = json.load(f)
    out["second_design_build_seconds"] = meta2["build_seconds"]
    out["second_design_build_cpu_seconds"] = meta2["build_cpu_seconds"]
    t0 = time.perf_counter()
    VerilatorSim(verilog, top, mem_base=MEM_BASE, mem_size=1 << 20, cache_dir=cache_dir).close()
    out["cached_construct_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
    t0, c0 = time.perf_counter(), time.process_time()
    sim.step(2_000_000)
    out["idle_mcycles_per_s"] = round(2.0 / (time.perf_counter() - t0), 3)
    out["idle_mcycles_per_cpu_s"] = round(2.0 / (time.process_time() - c0), 3)
    out["load_average_after_run"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opt", nargs="+", default=["default"],
                    help="C++ -O levels to compare (e.g. Os O1 O2 O3; 'default': build.py's)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    results = []
    for opt in args.opt:
        with tempfile.TemporaryDirectory(prefix="ilmpq-vl-bench-") as d:
            results.append(measure(opt, d))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"host_cpus": os.cpu_count(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
