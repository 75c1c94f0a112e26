"""The ``ilmpq`` CLI basics, the ``golden`` subcommand and ``compile --batch``."""

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


# -- ilmpq compile --batch -------------------------------------------------------------------------

@pytest.fixture
def small_model(tmp_path):
    from ilmpq.hdl.config import get_config
    tiny = get_config("tiny")
    path = tmp_path / "m.npz"
    random_qmodel(np.random.default_rng(15), spec=tiny.numeric, ratio=tiny.ratio,
                  input_shape=(3, 7, 7), max_channels=9).save(path)
    return str(path)


def test_compile_batch_writes_what_a_batched_run_needs(small_model, tmp_path, capsys):
    """``ilmpq compile --batch 2``: compiled.json has the batch, the first stacked layer, the
    output's bytes and per slot every image's input, check entries and output (those of the
    compiler's frame slots); the report (printed and report.txt) ends with the batch line."""
    import json
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.hdl.config import get_config
    out = tmp_path / "b2"
    assert main(["compile", small_model, "--config", "tiny", "--batch", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "compiled.json").read_text())
    comp = compile_model(QModel.load(small_model), get_config("tiny"), batch=2)
    assert meta["batch"] == 2 and meta["batch_from"] == comp.batch_from != ""
    assert meta["output_bytes"] == comp.tensors[comp.output].nbytes
    assert meta["input_row_bytes"] == comp.input_row_bytes > 0
    assert len(meta["slots"]) == len(comp.slots) == 2
    for fs, want in zip(meta["slots"], comp.slots):
        assert [(im["input_addr"], im["input_check"], im["output_addr"]) for im in fs["images"]] \
            == [tuple(im) for im in want.images]
        assert all(im["input_check"] for im in fs["images"])
    report = (out / "report.txt").read_text()
    last = report.splitlines()[-1]
    assert last.startswith(f"batch 2: one program runs 2 images; the layers from "
                           f"{comp.batch_from} on run once on the 2 images stacked")
    assert report == comp.report() + "\n" + last + "\n" and last in printed


def test_compile_batch_1_is_a_plain_compile(small_model, tmp_path, capsys):
    """``--batch 1`` writes and prints exactly what a compile without --batch does: no batch
    keys, no batch line."""
    import json
    outs = []
    for name, extra in (("plain", []), ("one", ["--batch", "1"])):
        assert main(["compile", small_model, "--config", "tiny", "-o", str(tmp_path / name)]
                    + extra) == 0
        outs.append(capsys.readouterr().out.replace(str(tmp_path / name), "DIR"))
    assert outs[0] == outs[1] and "\nbatch " not in outs[0]
    files = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "one").iterdir())
    for f in files:
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "one" / f).read_bytes(), f
    meta = json.loads((tmp_path / "plain" / "compiled.json").read_text())
    assert not {"batch", "batch_from", "output_bytes"} & set(meta)
    assert all(fs["images"] == [] for fs in meta["slots"])


@pytest.mark.parametrize("value", ["0", "17", "-1", "2.0", "two", ""])
@pytest.mark.parametrize("command", [["run"], ["simulate", "M"], ["compile", "M", "-o", "D"],
                                     ["board", "run", "M"]])
def test_bad_batch_is_one_usage_error(small_model, tmp_path, capsys, command, value):
    """Every command with ``--batch`` (run, simulate, compile, board run): one usage error."""
    argv = [small_model if a == "M" else str(tmp_path / "d") if a == "D" else a
            for a in command] + ["--batch", value]
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --batch: {value!r} is not allowed: the images a run must be an integer " \
           f"in [1, 16]" in err, err
    assert not (tmp_path / "d").exists()
