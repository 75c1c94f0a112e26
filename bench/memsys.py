"""Benchmark: what the memory system (AXI ports, receive FIFOs, outstanding reads, DDR read
latency) does to ResNet-18 frames/s, from the RTL-validated cycle model.

ResNet-18 (224x224, random seeded weights, R = 1/8) is compiled once per preset (``z020``,
``z045``: today's geometries, not re-derived here); the implementation-only fields
``axi_ports``, ``read_fifo_beats`` and ``max_reads_outstanding`` are swept in the cycle model
(:mod:`ilmpq.firmware.cyclemodel`, one arbiter and memory queue per port, validated against the
multi-port RTL in ``tests/hdl/test_dma.py``) at memory read latencies of 8, 32 (the realistic
Zynq HP-port figure, ``MemoryTiming.zynq_hp()``, ``docs/memory_model.md``) and 64 cycles. A
second table compares client-to-port assignments (``hdl/dma.py`` ``CLIENT_PORTS``) at the
realistic latency. Max pooling and global average pooling run on the accelerator and are in
frames/s, as in ``bench/resnet18.py``.

Not modelled (see ``firmware/cyclemodel.py``): the write channel's back-pressure, and the PS DDR
controller shared by all HP ports (each port is an independent memory here); the bandwidth the
design would need is reported so it can be checked against the board's DDR.

Writes ``bench/results/memsys.json`` and ``bench/results/memsys.md``.

Usage: ``python bench/memsys.py [--seed S] [--presets z020,z045] [--out DIR]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from unittest import mock

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ilmpq.firmware import cyclemodel as cm  # noqa: E402
from ilmpq.firmware.compiler import compile_model  # noqa: E402
from ilmpq.golden.random_models import resnet18_qmodel  # noqa: E402
from ilmpq.hdl import dma  # noqa: E402
from ilmpq.hdl.config import get_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLOCK_HZ = 100e6
LATENCIES = (8, cm.ZYNQ_HP_READ_LATENCY, 64)
PORTS = (1, 2, 4)
#: (read_fifo_beats, max_reads_outstanding): today's default, then deeper FIFOs with enough
#: reads in flight to fill them.
FIFOS = ((32, 4), (64, 8), (128, 8), (128, 16))
#: Client-to-port assignments compared at the realistic latency (name -> CLIENT_PORTS entry).
ASSIGNMENTS = {
    2: {
        "weights alone | fetch, act, store (chosen)": dma.CLIENT_PORTS[2],
        "weights, store | fetch, act": {"fetch": 0, "act": 0, "weights": 1, "store": 1,
                                        "write": 1},
        "weights, fetch | act, store": {"fetch": 1, "act": 0, "weights": 1, "store": 0,
                                        "write": 0},
        "act alone | fetch, weights, store": {"fetch": 0, "act": 1, "weights": 0, "store": 0,
                                              "write": 0},
    },
    4: {
        "fetch | act | weights | store (chosen)": dma.CLIENT_PORTS[4],
        "act | weights | store | fetch, writes": {"fetch": 3, "act": 0, "weights": 1,
                                                  "store": 2, "write": 3},
    },
}


def _git() -> dict:
    def run(*cmd):
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"commit": run("git", "rev-parse", "HEAD"), "dirty": bool(run("git", "status",
                                                                         "--porcelain"))}


def estimate(comp, cfg, rl: int, table=None) -> dict:
    """Model ``comp`` on ``cfg`` (same program, other implementation fields) at read latency
    ``rl``; optionally with another client-to-port table."""
    comp = dataclasses.replace(comp, config=cfg)
    mem = cm.MemoryTiming.zynq_hp(read_latency=rl)
    if table is None:
        est = cm.estimate(comp, memory=mem)
    else:
        with mock.patch.dict(dma.CLIENT_PORTS, {cfg.axi_ports: table}):
            est = cm.estimate(comp, memory=mem)
    accel = [l for l in est.layers if l.where == "accel"]
    causes = {k: sum(l.breakdown.get(k, 0.0) for l in accel) for k in cm.CAUSES}
    total = sum(causes.values()) or 1.0
    mb = lambda n: n / (est.cycles / CLOCK_HZ) / 1e6   # noqa: E731
    rd = sum(p.counters["bytes_read"] for p in est.programs)
    wr = sum(p.counters["bytes_written"] for p in est.programs)
    return {"cycles": est.cycles, "fps": est.fps(CLOCK_HZ), "utilization": est.utilization,
            "share": {k: v / total for k, v in causes.items()},
            "read_mbps": mb(rd), "write_mbps": mb(wr)}


def sweep(preset: str, model, log) -> dict:
    # activation loads on one port (act_ports 1): the sweep and the assignments compare port
    # counts and client placements; striping (z045's act_ports 2) needs two ports and its
    # own client (act_b), and is measured in bench/resnet18.py
    base = get_config(preset).replace(act_ports=1)
    t0 = time.perf_counter()
    comp = compile_model(model, base)
    out = {"config": base.describe(), "compile_s": time.perf_counter() - t0, "grid": [],
           "assignments": []}
    for rl in LATENCIES:
        for ports in PORTS:
            for fifo, ro in FIFOS:
                cfg = base.replace(axi_ports=ports, read_fifo_beats=fifo,
                                   max_reads_outstanding=ro)
                t = time.perf_counter()
                row = {"read_latency": rl, "axi_ports": ports, "read_fifo_beats": fifo,
                       "max_reads_outstanding": ro, **estimate(comp, cfg, rl)}
                row["model_s"] = time.perf_counter() - t
                out["grid"].append(row)
                log(f"{preset} RL {rl:3d} ports {ports} fifo {fifo:4d} ro {ro:2d}: "
                    f"{row['fps']:6.1f} fps util {100 * row['utilization']:5.1f} % "
                    f"weights {100 * row['share']['weights']:4.1f} % "
                    f"act {100 * row['share']['act']:4.1f} %")
    rl = cm.ZYNQ_HP_READ_LATENCY
    fifo, ro = FIFOS[-2]
    for ports, tables in ASSIGNMENTS.items():
        for name, table in tables.items():
            cfg = base.replace(axi_ports=ports, read_fifo_beats=fifo, max_reads_outstanding=ro)
            row = {"axi_ports": ports, "assignment": name, "table": table,
                   "read_latency": rl, "read_fifo_beats": fifo, "max_reads_outstanding": ro,
                   **estimate(comp, cfg, rl, table)}
            out["assignments"].append(row)
            log(f"{preset} {ports} ports [{name}]: {row['fps']:6.1f} fps")
    return out


def markdown(r: dict) -> str:
    rl = r["params"]["realistic_read_latency"]
    lines = [
        "# Memory system: AXI ports, receive FIFOs and DDR latency vs ResNet-18 frames/s",
        "",
        "Generated by `bench/memsys.py` from the cycle model (validated against the multi-port "
        "RTL) on " + r["date"] + f" (commit `{r['git']['commit'][:10]}`"
        + (", dirty tree" if r["git"]["dirty"] else "") + "). ResNet-18 224x224, 100 MHz, "
        "the whole network (pooling on the accelerator). Read latency RL in cycles from AR to "
        f"the first R beat; RL = {rl} is the realistic Zynq HP-port figure "
        "(`docs/memory_model.md`). The presets' geometries (z045's from `bench/geometry.py`); "
        "only `axi_ports`, `read_fifo_beats` (FIFO) and "
        "`max_reads_outstanding` (RO) change. `weights` / `act`: share of the accelerator's "
        "cycles the PE array waited for weight packages / activation rows.",
        "",
    ]
    for preset, res in r["results"].items():
        def row(rl_, ports, fifo, ro):
            return next((g for g in res["grid"] if (g["read_latency"], g["axi_ports"],
                         g["read_fifo_beats"], g["max_reads_outstanding"]) ==
                         (rl_, ports, fifo, ro)), None)
        old, new = row(rl, 1, 32, 4), row(rl, 1, 128, 8)
        two, four = row(rl, 2, 128, 8), row(rl, 4, 128, 8)
        base8 = row(8, 1, 32, 4)
        summary = []
        if old and new and base8:
            summary.append(
                f"At RL = {rl}, the DMA as it was (32-beat FIFOs, 4 reads in flight) gives "
                f"{old['fps']:.1f} frames/s against {base8['fps']:.1f} at RL = 8; 128-beat FIFOs "
                f"and 8 reads in flight give {new['fps']:.1f}")
        if two and four:
            summary.append(f"two ports {two['fps']:.1f}, four ports {four['fps']:.1f} "
                           f"(PE utilization {100 * four['utilization']:.1f} %, still "
                           f"{100 * four['share']['weights']:.1f} % of the cycles waiting for "
                           f"weights).")
        lines += [f"## {res['config']}", "", "; ".join(summary), ""]
        lines += [
                  "| RL | ports | FIFO | RO | frames/s | PE util. | weights | act | "
                  "read MB/s | write MB/s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for g in res["grid"]:
            lines.append(
                f"| {g['read_latency']} | {g['axi_ports']} | {g['read_fifo_beats']} | "
                f"{g['max_reads_outstanding']} | {g['fps']:.1f} | {100 * g['utilization']:.1f} % "
                f"| {100 * g['share']['weights']:.1f} % | {100 * g['share']['act']:.1f} % | "
                f"{g['read_mbps']:,.0f} | {g['write_mbps']:,.0f} |")
        lines += ["", f"Client-to-port assignments at RL = {rl} (FIFO "
                  f"{res['assignments'][0]['read_fifo_beats']}, RO "
                  f"{res['assignments'][0]['max_reads_outstanding']}):", "",
                  "| ports | assignment (port 0 \\| port 1 ...) | frames/s | PE util. | "
                  "weights | act |", "|---:|---|---:|---:|---:|---:|"]
        for a in res["assignments"]:
            name = a["assignment"].replace("|", "\\|")
            lines.append(f"| {a['axi_ports']} | {name} | {a['fps']:.1f} | "
                         f"{100 * a['utilization']:.1f} % | {100 * a['share']['weights']:.1f} % "
                         f"| {100 * a['share']['act']:.1f} % |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", default="z020,z045")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown from the existing JSON")
    args = ap.parse_args(argv)
    if args.report_only:
        r = json.loads((args.out / "memsys.json").read_text())
        (args.out / "memsys.md").write_text(markdown(r))
        return 0
    r = {"benchmark": "memsys", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
         "git": _git(),
         "machine": {"python": platform.python_version(), "platform": platform.platform(),
                     "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
         "params": {"seed": args.seed, "input": [3, 224, 224], "clock_hz": CLOCK_HZ,
                    "latencies": list(LATENCIES),
                    "realistic_read_latency": cm.ZYNQ_HP_READ_LATENCY,
                    "realistic_write_latency": cm.ZYNQ_HP_WRITE_LATENCY},
         "results": {}}
    model = resnet18_qmodel(np.random.default_rng(args.seed),
                            spec=get_config("z020").numeric, ratio=Fraction(1, 8))
    for preset in args.presets.split(","):
        r["results"][preset] = sweep(preset, model, lambda s: print(s, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memsys.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    (args.out / "memsys.md").write_text(markdown(r))
    print(f"wrote {args.out / 'memsys.json'} and {args.out / 'memsys.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
