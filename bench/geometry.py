"""Benchmark: the z045 geometry from the cycle model (why the preset is (56 + 8) x tn 64).

Every candidate has the same peak (4,096 MAC/cycle), the same R = 1/8 and the same 288-beat
weight set; they differ in how the MACs are split between output lanes and input channels
(``tn``) and in the number of HP ports. ResNet-18 (224x224, seeded random weights) is compiled
for each and modelled at the realistic HP latency (``MemoryTiming.zynq_hp()``). DSP48E1 use is
:func:`resnet18.dsp_use` (hi lanes, DSP-pair low lanes, post-processing); the LUT estimate
multiplies the MACs of each lane kind by its in-situ LUT cost per MAC measured on the z020
geometry (``bench/results/resources.json``, ``in_situ``; tn 16, so an estimate for other tn).

Writes ``bench/results/geometry.json`` and ``bench/results/geometry.md``.

Usage: ``python bench/geometry.py [--seed S]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import resnet18 as rb  # noqa: E402

from ilmpq.firmware import cyclemodel as cm  # noqa: E402
from ilmpq.firmware.compiler import compile_model  # noqa: E402
from ilmpq.golden.random_models import resnet18_qmodel  # noqa: E402
from ilmpq.hdl.config import get_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: (label, HWConfig changes from the z045 preset); the first is the preset before this
#: benchmark, the preset itself is marked in the table. Every candidate has the preset's 768
#: DSP48E1 in the PE array: the high lanes two per DSP48E1 (256) and 512 on low-lane pairs.
CANDIDATES = [
    ("(224 + 32) x tn 16, 2 ports (the preset before)",
     dict(lanes_lo=224, lanes_hi=32, lanes_lo_dsp=64, tn=16, act_depth=16384,
          max_channels=1024, axi_ports=2)),
    ("(112 + 16) x tn 32, 2 ports", dict(lanes_lo=112, lanes_hi=16, lanes_lo_dsp=32, tn=32,
                                         act_depth=8192, max_channels=1024, axi_ports=2)),
    ("(112 + 16) x tn 32, 4 ports", dict(lanes_lo=112, lanes_hi=16, lanes_lo_dsp=32, tn=32,
                                         act_depth=8192, max_channels=1024, axi_ports=4)),
    ("(56 + 8) x tn 64, 2 ports", dict(axi_ports=2)),
    ("(56 + 8) x tn 64, 4 ports", dict()),
    ("(56 + 8) x tn 64, 4 ports, 1024-pixel tiles", dict(acc_depth=1024)),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    preset = get_config("z045")
    res = json.loads(rb.RESOURCES_JSON.read_text())["in_situ"]
    model = resnet18_qmodel(np.random.default_rng(args.seed), spec=preset.numeric,
                            ratio=Fraction(1, 8))
    rows = []
    for label, changes in CANDIDATES:
        cfg = preset.replace(**changes)
        t0 = time.perf_counter()
        comp = compile_model(model, cfg)
        est = cm.estimate(comp, memory=rb.MEMORY)
        causes = dict.fromkeys(cm.CAUSES, 0.0)
        for lt in est.layers:
            if lt.where == "accel":
                for k, v in lt.breakdown.items():
                    causes[k] += v
        lut_lanes = cfg.lanes_lo - cfg.lanes_lo_dsp
        lut_est = cfg.tn * (lut_lanes * res["lut_lane"]["lut_per_mac"]
                            + cfg.lanes_lo_dsp * res["dsp_pair_lane"]["lut_per_mac"]
                            + cfg.lanes_hi * res["hi_lane"]["lut_per_mac"])
        rows.append({"label": label, "preset": cfg == preset, "describe": cfg.describe(),
                     "lanes_lo": cfg.lanes_lo, "lanes_hi": cfg.lanes_hi,
                     "lanes_lo_dsp": cfg.lanes_lo_dsp, "tn": cfg.tn,
                     "axi_ports": cfg.axi_ports, "acc_depth": cfg.acc_depth,
                     "act_depth": cfg.act_depth, "set_beats": cfg.set_bits / cfg.axi_data_width,
                     "cycles": est.cycles, "fps": est.fps(rb.CLOCK_HZ),
                     "utilization": est.macs / (est.cycles * cfg.macs_per_cycle),
                     "shares": {k: v / est.cycles for k, v in causes.items()},
                     "dsp48e1": rb.dsp_use(cfg), "pe_lut_est": round(lut_est),
                     "model_s": time.perf_counter() - t0})
        print(f"{label:45s} {rows[-1]['fps']:6.1f} fps util "
              f"{100 * rows[-1]['utilization']:5.1f} %", flush=True)
    out = {"benchmark": "geometry", "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "git": rb._git(), "seed": args.seed,
        "memory": {"read_latency": rb.MEMORY.read_latency,
                   "write_latency": rb.MEMORY.write_latency}, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "geometry.json").write_text(json.dumps(out, indent=1) + "\n")
    L = ["# z045 geometry from the cycle model", "",
         f"`bench/geometry.py`, {out['date']}: ResNet-18 224x224 (seed {args.seed}) on "
         f"4,096-MAC/cycle geometries of XC7Z045 at read latency "
         f"{rb.MEMORY.read_latency} / write latency {rb.MEMORY.write_latency}; shares of the "
         f"cycles by cause (`cyclemodel.CAUSES`); DSP48E1 exact, PE-array LUTs estimated from "
         f"the in-situ per-MAC costs (tn 16).", "",
         "| geometry | preset | fps | utilization | padding | weights | act | drain | "
         "DSP48E1 | PE-array LUT est. |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        sh = x["shares"]
        L.append(f"| {x['label']} | {'**yes**' if x['preset'] else ''} | {x['fps']:.1f} | "
                 f"{100 * x['utilization']:.1f} % | {100 * sh['padding']:.1f} % | "
                 f"{100 * sh['weights']:.1f} % | {100 * sh['act']:.1f} % | "
                 f"{100 * sh['drain']:.1f} % | {x['dsp48e1']} | {x['pe_lut_est']:,} |")
    L.append("")
    (args.out / "geometry.md").write_text("\n".join(L))
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())
