"""``ilmpq compile``: compile a quantized model for a hardware configuration.

::

    ilmpq compile MODEL.npz [--config NAME] [--mac-key-file KEY] [--batch B] -o DIR [--force]

``--config`` defaults to the configuration the model was quantized for (``ilmpq quantize``
records it), else ``tiny``; a compile error for another configuration names the recorded one.

Writes the memory image, the tensor placements and programs (``compiled.json``), the compile
report and a listing of every program into ``DIR`` and prints the report: per layer where it
runs (accelerator or CPU), its tiles, weight bytes, DMA traffic and the PE beats it needs.

``--mac-key-file KEY``: authenticate every weight package with a SipHash-2-4 tag under the key in
``KEY`` (16 raw bytes or 32 hex digits; never given on the command line, where shell history and
``ps`` would show it) and a fresh random nonce, recorded as ``mac_nonce`` in ``compiled.json``
(docs/reliability.md). The key itself is written nowhere.

``--batch B`` compiles the model for B images a run (docs/architecture.md, *Batching*; the same
values and usage error as ``ilmpq run`` and ``ilmpq simulate``): ``compiled.json`` then has
``"batch"``, ``"batch_from"``, ``"output_bytes"`` and per frame slot the B images' input, input
check entries and output addresses (``slots[k].images``), and the report ends with a line naming
the batch (docs/board.md, *Batched programs*). Without it (or with ``--batch 1``) every file and
the printed report are those of a batch-1 compile.
"""

from __future__ import annotations

import argparse
import os

from ...golden.model import QModel
from ...hdl.config import PRESETS
from .. import wpkg
from ..compiler import save_compiled
from ..outputs import add_force_argument, check_output_dir, output_dir
from ._shared import add_batch_argument, compile_checked, model_config

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
    parser.add_argument("--mac-key-file", metavar="KEY", default=None,
                        help="authenticate the weight packages with the SipHash-2-4 key in this "
                             "file (16 raw bytes or 32 hex digits)")
    add_batch_argument(parser)
    add_force_argument(parser)


def main(args) -> int:
    check_output_dir(args.output, force=args.force, names=_FILES)
    model = QModel.load(args.model)
    cfg, line = model_config(model, args.config, args.model)
    print(line)
    mac = None
    if args.mac_key_file is not None:
        mac = wpkg.MacKey(wpkg.read_key_file(args.mac_key_file), wpkg.new_nonce())
    comp = compile_checked(model, cfg, args.model, mac=mac) if args.batch == 1 else \
        compile_checked(model, cfg, args.model, mac=mac, batch=args.batch)
    if mac is not None:
        print(f"weight packages authenticated (SipHash-2-4), nonce {mac.nonce:#018x}")
    with output_dir(args.output, force=args.force, names=_FILES) as staging:
        paths = save_compiled(comp, staging)
        with open(os.path.join(staging, "report.txt")) as f:
            print(f.read(), end="")      # the report as written (with a batched program's line)
    for path in paths:
        print(f"wrote {os.path.join(args.output, os.path.relpath(path, staging))}")
    return 0
