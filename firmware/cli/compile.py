"""``ilmpq compile``: compile a quantized model for a hardware configuration.

::

    ilmpq compile MODEL.npz [--config NAME] -o DIR [--force]

``--config`` defaults to the configuration the model was quantized for (``ilmpq quantize``
records it), else ``tiny``; a compile error for another configuration names the recorded one.

Writes the memory image, the tensor placements and programs (``compiled.json``), the compile
report and a listing of every program into ``DIR`` and prints the report: per layer where it
runs (accelerator or CPU), its tiles, weight bytes, DMA traffic and the PE beats it needs.
"""

from __future__ import annotations

import argparse
import os

from ...golden.model import QModel
from ...hdl.config import PRESETS
from ..compiler import save_compiled
from ..outputs import add_force_argument, check_output_dir, output_dir
from ._shared import compile_checked, model_config

HELP = "compile a quantized model (.npz) into programs and a memory image for a configuration"

__all__ = ["HELP", "register", "main"]

#: Files every compile writes (program listings come on top, one per accelerator step).
_FILES = ("image.bin", "compiled.json", "report.txt", "program_0.txt")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.npz", help="quantized model (ilmpq quantize)")
    parser.add_argument("--config", default=None, choices=sorted(PRESETS),
                        help="hardware configuration (default: the one the model was quantized "
                             "for, else tiny)")
    parser.add_argument("-o", "--output", metavar="DIR", required=True,
                        help="directory for image.bin, compiled.json, report.txt, programs")
    add_force_argument(parser)


def main(args) -> int:
    check_output_dir(args.output, force=args.force, names=_FILES)
    model = QModel.load(args.model)
    cfg, line = model_config(model, args.config, args.model)
    print(line)
    comp = compile_checked(model, cfg, args.model)
    print(comp.report())
    with output_dir(args.output, force=args.force, names=_FILES) as staging:
        paths = save_compiled(comp, staging)
    for path in paths:
        print(f"wrote {os.path.join(args.output, os.path.relpath(path, staging))}")
    return 0
