"""No silent defaults that change numbers: the input normalization is never guessed, every
report names the normalization, the configuration and R it used, a quantized model records the
configuration it was made for, and compile/simulate use it and name it in any mismatch."""

import json
import os
import subprocess
import sys
from importlib.resources import files

import numpy as np
import onnx
import pytest

from ilmpq.firmware.cli import COMMANDS, main
from ilmpq.firmware.cli._shared import HW_CONFIG_KEY, recorded_config
from ilmpq.golden.data import load_digits
from ilmpq.golden.model import QModel
from ilmpq.hdl.config import PRESETS, get_config


@pytest.fixture(scope="module")
def stripped(tmp_path_factory):
    """The embedded model with its metadata (the input normalization) stripped, and its
    calibration images as raw pixels."""
    d = tmp_path_factory.mktemp("stripped")
    m = onnx.load(str(files("ilmpq.golden.data") / "default_model.onnx"))
    del m.metadata_props[:]
    onnx.save(m, d / "stripped.onnx")
    np.save(d / "calib.npy", load_digits("calib")[0])
    return str(d / "stripped.onnx"), str(d / "calib.npy")


@pytest.fixture(scope="module")
def z020_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("z020") / "digits_z020.npz")
    assert main(["quantize", "default", "--config", "z020", "-o", out]) == 0
    return out


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ")
    assert sum(ln.startswith("error: ") for ln in err) == 1
    return err[-1]


def test_stripped_metadata_is_rejected_naming_the_options(stripped, tmp_path):
    """The issue's case, through a subprocess: exit 2, one error line, no model written."""
    onnx_path, calib = stripped
    out = tmp_path / "q.npz"
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin")
    env.pop("ILMPQ_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "ilmpq.firmware.cli", "quantize", onnx_path,
                           "--calib", calib, "-o", str(out)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in ("no input normalization", "--input-mean", "--input-std", "--raw-pixels",
                     "ilmpq.input_mean"):
        assert fragment in lines[0]
    assert not out.exists()


def test_explicit_normalization_reproduces_the_embedded_model(stripped, tmp_path, capsys):
    """Given explicitly, the stripped model quantizes exactly as the original does with its
    metadata; --raw-pixels is accepted but is a different (worse) model, and says so."""
    onnx_path, calib = stripped
    a, b, c = (str(tmp_path / n) for n in ("a.npz", "b.npz", "c.npz"))
    assert main(["quantize", onnx_path, "--calib", calib, "-o", a, "--input-mean", "0",
                 "--input-std", "123.5"]) == 0
    text = capsys.readouterr().out
    assert "input normalization: (pixels - 0) / 123.5 (mean from --input-mean, std from " \
           "--input-std)" in text
    assert main(["quantize", "default", "--calib", calib, "-o", b]) == 0
    text = capsys.readouterr().out
    assert "input normalization: (pixels - 0) / 123.5 (from the model's metadata" in text
    qa, qb = QModel.load(a), QModel.load(b)
    for la, lb in zip(qa.conv_layers, qb.conv_layers):
        np.testing.assert_array_equal(la.weight, lb.weight)
        np.testing.assert_array_equal(la.mult, lb.mult)
    assert main(["quantize", onnx_path, "--calib", calib, "-o", c, "--raw-pixels"]) == 0
    assert "input normalization: (pixels - 0) / 1 (--raw-pixels)" in capsys.readouterr().out
    assert QModel.load(c).meta["cli"]["normalization"] == "--raw-pixels"
    assert main(["quantize", onnx_path, "--calib", calib, "-o", str(tmp_path / "d.npz"),
                 "--raw-pixels", "--input-std", "2"]) == 2
    assert "do not combine it with --input-mean/--input-std" in _error(capsys)


def test_report_names_configuration_and_r(tmp_path, capsys):
    out = str(tmp_path / "t.npz")
    assert main(["quantize", "default", "-o", out]) == 0
    text = capsys.readouterr().out
    tiny = get_config("tiny")
    assert f"target: {tiny.describe()} (default --config tiny)" in text
    assert "R = 1/4" in text and "input normalization:" in text
    assert f"quantized for {tiny.describe()}" in text
    assert main(["run", "--sim", "none"]) == 0
    text = capsys.readouterr().out
    assert f"hardware: {tiny.describe()}" in text and "input normalization:" in text


def test_model_records_its_configuration(z020_model, tmp_path, capsys):
    q = QModel.load(z020_model)
    z020 = get_config("z020")
    assert q.meta[HW_CONFIG_KEY] == {"version": 1, "name": "z020", "config_id": z020.config_id,
                                     "ratio": "1/8", "act_bits": 8}
    out = str(tmp_path / "r.npz")
    assert main(["quantize", "default", "--ratio", "1/2", "--act-bits", "5", "-o", out]) == 0
    capsys.readouterr()
    assert recorded_config(QModel.load(out)) == {"version": 1, "name": None, "config_id": None,
                                                 "ratio": "1/2", "act_bits": 5}


def test_compile_defaults_to_the_recorded_configuration(z020_model, tmp_path, capsys):
    assert main(["compile", z020_model, "-o", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert f"configuration: {get_config('z020').describe()} (recorded in {z020_model})" in out
    cj = json.loads((tmp_path / "c" / "compiled.json").read_text())
    assert cj["config_id"] == get_config("z020").config_id


@pytest.mark.parametrize("command", ["compile", "simulate"])
def test_mismatch_error_names_the_recorded_configuration(z020_model, tmp_path, capsys, command,
                                                         monkeypatch):
    # tiny with a one-beat residual window (max_channels 8): the residual convs of the z020
    # model do not fit it (tiny's own 64 now does, a residual wider than it read in windows)
    import dataclasses
    monkeypatch.setitem(PRESETS, "tiny", dataclasses.replace(PRESETS["tiny"], max_channels=8))
    argv = [command, z020_model, "--config", "tiny"]
    argv += ["-o", str(tmp_path / "c")] if command == "compile" else ["--sim", "amaranth"]
    assert main(argv) == 2
    err = _error(capsys)
    assert "max_channels" in err  # the compiler's own reason stays
    assert "was quantized for configuration z020 (R = 1/8, A8), not for tiny (R = 1/4, A8)" \
        in err and "compile it with --config z020" in err
    assert not (tmp_path / "c").exists()


def test_models_without_a_record_default_to_tiny_and_say_so(z020_model, tmp_path, capsys):
    old = str(tmp_path / "old.npz")
    assert main(["golden", "--input-hw", "4", "--save", old]) == 0
    capsys.readouterr()
    assert main(["compile", old, "-o", str(tmp_path / "c")]) == 0
    assert f"configuration: {get_config('tiny').describe()} (default; {old} has no recorded " \
        f"configuration; choose with --config)" in capsys.readouterr().out
    # a malformed record is one error naming the field
    bad = str(tmp_path / "bad.npz")
    q = QModel.load(z020_model)
    q.meta[HW_CONFIG_KEY] = {"version": 1, "name": 7, "ratio": "1/8", "act_bits": 8}
    q.save(bad)
    assert main(["compile", bad, "-o", str(tmp_path / "d")]) == 2
    err = _error(capsys)
    assert "'hw_config'" in err and "malformed" in err


def test_every_config_option_lists_the_presets(capsys):
    """Every command with --config names every preset and its default in --help."""
    for name in COMMANDS:
        for argv in ([name, "--help"],) if name != "board" else (
                [name, "info", "--help"], [name, "run", "--help"]):
            with pytest.raises(SystemExit):
                main(argv)
            text = " ".join(capsys.readouterr().out.split())
            if "--config" not in text:
                continue
            for preset in PRESETS:
                assert preset in text, (argv, preset)
            assert "default" in text.split("--config", 1)[1], argv


def test_recorded_activation_width_is_used(tmp_path, capsys):
    """A model quantized for tiny at A4 compiles with its recorded configuration (tiny, A4);
    an explicit --config tiny (A8) fails and says to leave --config out."""
    m = str(tmp_path / "a4.npz")
    assert main(["quantize", "default", "--act-bits", "4", "-o", m]) == 0
    capsys.readouterr()
    assert main(["compile", m, "-o", str(tmp_path / "c")]) == 0
    assert "R = 1/4, A4, acc 32 b, AXI 64 b (recorded in" in capsys.readouterr().out
    assert main(["compile", m, "--config", "tiny", "-o", str(tmp_path / "d")]) == 2
    err = _error(capsys)
    assert "4-bit activations" in err and "leave out --config" in err


def test_broken_pipe_exits_quietly():
    """``ilmpq ... | head``: when the reader goes away the command stops without a traceback
    (exit status 141, like a shell pipeline killed by SIGPIPE)."""
    code = ("import sys, ilmpq.firmware.cli as c, ilmpq.firmware.cli.regmap as r\n"
            "def gone(args):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "r.main = gone\n"
            "sys.exit(c.main(['regmap', '--format', 'md']))\n")
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
