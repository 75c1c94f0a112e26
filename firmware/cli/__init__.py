"""The ``ilmpq`` command-line interface.

Each subcommand lives in its own module ``ilmpq.firmware.cli.<name>`` that defines

* ``HELP``: one line for ``ilmpq --help``;
* ``register(parser)``: add the subcommand's arguments to its ``argparse`` parser;
* ``main(args) -> int``: run it and return the exit status.

User errors (:class:`ilmpq.golden.errors.IlmpqError`, and ``OSError`` about a named file:
missing, a directory, not a directory, already exists, no permission) print one line
``error: ...`` and exit with status 2; set ``ILMPQ_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import os
import signal
import sys
import threading

from ... import __version__
from ...golden.errors import IlmpqError

__all__ = ["main", "COMMANDS"]

#: Subcommands in ``--help`` order; each is the module ``ilmpq.firmware.cli.<name>``.
COMMANDS: tuple[str, ...] = (
    "golden",
    "regmap",
    "quantize",
    "import",
    "compile",
    "simulate",
    "run",
    "verilog",
    "build",
    "board",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line and status 2, as for every user error
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ilmpq",
        description="Intra-layer multi-precision CNN accelerator: quantize, compile, simulate, "
                    "emit Verilog and build for Zynq-7000.")
    parser.add_argument("--version", action="version", version=f"ilmpq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        # a command that is a Python keyword lives in <name>_.py (ilmpq import -> import_.py)
        mod = importlib.import_module(f"{__package__}.{name}{'_' * keyword.iskeyword(name)}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.register(p)
        p.set_defaults(_main=mod.main)
    return parser


def _terminate(signum, frame):  # SIGTERM: unwind, so temporary outputs are removed
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except BrokenPipeError:  # `ilmpq ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (IlmpqError, OSError) as e:
        # OSErrors about a named file (missing, a directory, not a directory, exists, no
        # permission) are the user's; any other OSError keeps its traceback
        if os.environ.get("ILMPQ_DEBUG") or not isinstance(e, IlmpqError) and (
                e.filename is None or e.strerror is None):
            raise
        msg = str(e) if isinstance(e, IlmpqError) else f"{e.strerror}: {e.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

