"""``ilmpq compile``: compile a quantized model for a hardware configuration.

::

    ilmpq compile MODEL.npz [--config NAME] -o DIR

Writes the memory image, the tensor placements and programs (``compiled.json``), the compile
report and a listing of every program into ``DIR`` and prints the report: per layer where it
runs (accelerator or CPU), its tiles, weight bytes, DMA traffic and the PE beats it needs.
"""

from __future__ import annotations

import argparse

from ...golden.model import QModel
from ...hdl.config import PRESETS, get_config
from ..compiler import compile_model, save_compiled

HELP = "compile a quantized model (.npz) into programs and a memory image for a configuration"

__all__ = ["HELP", "register", "main"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.npz", help="quantized model (ilmpq quantize)")
    parser.add_argument("--config", default="tiny", choices=sorted(PRESETS),
                        help="hardware configuration (default: tiny)")
    parser.add_argument("-o", "--output", metavar="DIR", required=True,
                        help="directory for image.bin, compiled.json, report.txt, programs")


def main(args) -> int:
    model = QModel.load(args.model)
    cfg = get_config(args.config)
    comp = compile_model(model, cfg)
    print(comp.report())
    for path in save_compiled(comp, args.output):
        print(f"wrote {path}")
    return 0
