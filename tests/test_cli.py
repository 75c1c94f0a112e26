"""The ``ilmpq`` CLI basics and the ``golden`` subcommand."""

import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from ilmpq import __version__
from ilmpq.firmware.cli import COMMANDS, main
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import QModel, hi_row_count
from ilmpq.golden.random_models import random_qmodel


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ilmpq")
    assert "golden" in COMMANDS
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", out, re.M), name
    assert "golden integer reference" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"ilmpq {__version__}"


def test_version_from_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "ilmpq.firmware.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"ilmpq {__version__}"


@pytest.mark.parametrize("argv,message", [
    (["frobnicate"], r"error: argument COMMAND: invalid choice: 'frobnicate'"),
    ([], r"error: the following arguments are required: COMMAND"),
    (["golden", "--act-bits", "6"], r"error: argument --act-bits: invalid choice: 6"),
    (["golden", "--ratio", "3/2"], r"error: argument --ratio: ratio 3/2 is not allowed: it must "
                                   r"be in \[0, 1\]"),
    (["golden", "--ratio", "abc"], r"error: argument --ratio: invalid ratio 'abc'"),
    (["golden", "--seed", "x"], r"error: argument --seed: invalid int value: 'x'"),
])
def test_usage_errors_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ilmpq")
    assert re.search(message, err), err


def test_user_errors_print_one_line(capsys):
    assert main(["golden", "--input-hw", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --input-hw must be a positive integer, not 0\n"


def test_golden_smoke(capsys):
    assert main(["golden", "--seed", "3", "--act-bits", "5", "--ratio", "1/4"]) == 0
    out = capsys.readouterr().out
    model = random_qmodel(np.random.default_rng(3), spec=NumericSpec(act_bits=5),
                          ratio=Fraction(1, 4), input_shape=(3, 32, 32))
    lines = out.splitlines()
    assert lines[0].startswith("model: random (seed 3), input (3, 32, 32), A5, R = 1/4")
    assert lines[1].split() == ["layer", "op", "output", "MACs", "HI", "rows", "min", "max",
                                "mean", "sat", "ms"]
    rows = {line.split()[0]: line.split() for line in lines[3:3 + len(model.layers)]}
    assert list(rows) == [layer.name for layer in model.layers]
    macs = model.macs()
    for layer in model.conv_layers:
        cells = rows[layer.name]
        assert cells[1] == "conv"
        assert cells[2] == "x".join(map(str, model.tensors[layer.output].shape))
        assert int(cells[3].replace(",", "")) == macs[layer.name]
        assert cells[4] == f"{hi_row_count(Fraction(1, 4), layer.out_channels)}/" \
                           f"{layer.out_channels}"
        lo, hi = model.tensors[layer.output].range
        assert lo <= int(cells[5]) <= int(cells[6]) <= hi
        assert cells[8].endswith("%")
    assert lines[-1].startswith("total ") and "argmax" in lines[-1]


def test_golden_save_writes_the_model(tmp_path, capsys):
    path = tmp_path / "rand.npz"
    assert main(["golden", "--seed", "5", "--input-hw", "16", "--save", str(path)]) == 0
    assert f"saved {path}" in capsys.readouterr().out
    want = random_qmodel(np.random.default_rng(5), input_shape=(3, 16, 16))
    assert QModel.load(path) == want
