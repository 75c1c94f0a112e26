"""``ilmpq regmap``: print or write the register map as a Python module, C header or markdown."""

from __future__ import annotations

import sys

from ...hdl.config import PRESETS, get_config
from ..outputs import add_force_argument, write_text
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
    add_force_argument(parser)


def main(args) -> int:
    cfg = get_config(args.config)
    text = generate(cfg, args.format)
    if args.output:
        write_text(args.output, text, force=args.force)
        print(f"wrote {args.output}: register map of configuration {cfg.name} "
              f"({args.format}, {len(text.splitlines())} lines)")
    else:
        sys.stdout.write(text)
    return 0
