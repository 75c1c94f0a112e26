"""``ilmpq regmap``: print or write the register map as a Python module, C header or markdown."""

from __future__ import annotations

import sys

from ...hdl.config import PRESETS, get_config
from ..regmap import FORMATS, generate

HELP = "generate the register map as a Python module, a C header, markdown or JSON"


def register(parser) -> None:
    parser.add_argument("--config", default="z020", metavar="NAME",
                        help=f"hardware configuration preset ({', '.join(sorted(PRESETS))}; "
                             f"default z020)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="py: Python module; c: C header; md: markdown; json: plain data")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of standard output")


def main(args) -> int:
    text = generate(get_config(args.config), args.format)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
