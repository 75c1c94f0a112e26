"""``docs/tutorial.md`` runs as written: every ``sh`` block, in order, in an empty directory.

Blocks marked ``sh board`` need a board: each ``ilmpq`` line of them must be a valid command
line (it parses). ``python file=NAME`` blocks are written to ``NAME``; ``sh torch`` blocks run when
PyTorch is installed (it is never a test dependency). Section 5 (Verilog and build plan) runs
with the ``tiny`` preset instead of ``z020``, whose elaboration takes minutes.
"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ilmpq.firmware.cli import build_parser

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks():
    """``[(section, kind, options, text)]`` in page order (section: the ``## N.`` number)."""
    text = TUTORIAL.read_text()
    heads = [(m.start(), int(m.group(1))) for m in re.finditer(r"^## (\d+)\.", text, re.M)]
    out = []
    for m in FENCE.finditer(text):
        section = max((n for pos, n in heads if pos < m.start()), default=0)
        out.append((section, m.group(1), m.group(2).split(), m.group(3)))
    return out


def _env():
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin", OPENBLAS_NUM_THREADS="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("ILMPQ_PROGRESS", None)
    return env


def run_sections(sections, cwd, *, torch=False, preset=None):
    ran = 0
    for section, kind, opts, text in blocks():
        if section not in sections:
            continue
        if kind == "python" and opts and opts[0].startswith("file="):
            (cwd / opts[0][5:]).write_text(text)
        elif kind == "sh" and ("board" in opts or ("torch" in opts) != torch):
            continue
        elif kind == "sh":
            if preset is not None:  # (page's preset, preset to run instead)
                assert f"--config {preset[0]}" in text
                text = text.replace(f"--config {preset[0]}", f"--config {preset[1]}")
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=cwd,
                                  env=_env(), capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, (f"section {section} block failed:\n{text}\n"
                                          f"stdout:\n{proc.stdout[-3000:]}\n"
                                          f"stderr:\n{proc.stderr[-3000:]}")
            ran += 1
            yield section, text, proc
    assert ran, f"no sh block in sections {sections}"


def test_the_page_has_the_expected_shape():
    kinds = [(s, k, tuple(o)) for s, k, o, _ in blocks()]
    assert (1, "sh", ()) in kinds and (6, "sh", ("board",)) in kinds
    assert (7, "sh", ("torch",)) in kinds and (7, "python", ("file=export_digits.py",)) in kinds
    for _, kind, _ in kinds:
        assert kind in ("sh", "python", "text")


@pytest.mark.verilator
def test_quantize_compile_simulate_run(tmp_path):
    """Sections 1-4: the embedded model from quantization to the RTL, and its z020 build."""
    ran = [(text, p.stdout) for _, text, p in run_sections({1, 2, 3, 4}, tmp_path)]

    def out(start):
        return next(o for t, o in ran if t.startswith(start))

    q = out("ilmpq quantize default --config tiny")
    assert "input normalization: (pixels - 0) / 123.5" in q and "R = 1/4" in q
    assert (tmp_path / "build" / "digits_tiny" / "image.bin").exists()
    assert "8/8 images bit-exact on every layer (verilator" in out("ilmpq simulate")
    assert "every layer of every image bit-exact with golden" in out("ilmpq run")
    assert "recorded in digits_z020.npz" in out("ilmpq quantize default --config z020")


def test_verilog_and_build_plan(tmp_path):
    """Section 5: the Verilog export and the PYNQ-Z2 (arty-z7-20 part) build plan, as written
    but with the ``tiny`` preset: elaborating z020 twice takes minutes on two cores (the page's
    z020 lines were run as written when this test was made: 45 s idle, 4.5 min under load)."""
    for _ in run_sections({5}, tmp_path, preset=("z020", "tiny")):
        pass
    assert (tmp_path / "out" / "verilog" / "ilmpq_tiny.v").exists()
    plan = tmp_path / "out" / "pynq-z2"
    assert (plan / "build_ilmpq_tiny_arty_z7_20.sh").exists()
    assert (plan / "build.json").exists() and (plan / "ilmpq_regs.h").exists()


def test_board_commands_are_valid():
    """Section 6 needs a board: its ilmpq command lines must parse as written."""
    lines = [ln for s, k, o, t in blocks() if "board" in o for ln in t.splitlines()
             if ln.startswith("ilmpq ")]
    assert len(lines) >= 2
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        assert args.command == "board"


@pytest.mark.verilator
@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (optional; pip install torch)")
def test_pytorch_path(tmp_path):
    """Section 7: export a model from PyTorch, quantize it with the explicit normalization, run
    it on the RTL (section 3's block makes the images and calibration files it needs)."""
    for _ in run_sections({3}, tmp_path):
        break
    results = list(run_sections({7}, tmp_path, torch=True))
    assert "float test accuracy" in results[0][2].stdout
    assert "8/8 images bit-exact on every layer" in results[-1][2].stdout
    # without the normalization the quantizer refuses, naming the options (as the page says)
    proc = subprocess.run(["ilmpq", "quantize", "my_cnn.onnx", "--calib", "calib.npy", "-o",
                           "x.npz"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--input-mean" in proc.stderr and "--input-std" in proc.stderr
