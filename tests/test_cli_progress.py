"""The progress helper: live on a terminal, quiet otherwise (unless ILMPQ_PROGRESS=1), and the
CLI's use of it for the Verilator build and the simulation."""

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ilmpq.firmware.progress import Progress, format_seconds
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.random_models import random_qmodel


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_quiet_when_not_on_a_terminal(monkeypatch):
    monkeypatch.delenv("ILMPQ_PROGRESS", raising=False)
    out = io.StringIO()
    p = Progress(out)
    p.note("building")
    with p.task("work", 3, unit="images", ticker=True) as t:
        t.update(1)
    assert out.getvalue() == ""


def test_terminal_rewrites_one_line_and_closes_it(monkeypatch):
    monkeypatch.delenv("ILMPQ_PROGRESS", raising=False)
    out = FakeTTY()
    p = Progress(out)
    with p.task("simulating", 4, unit="images") as t:
        time.sleep(0.25)
        t.update(2, detail="image 3: 100 cycles")
    text = out.getvalue()
    assert text.startswith("\rsimulating: 0/4 images, 0.0 s")
    assert "\rsimulating: 2/4 images" in text and "ETA" in text and "image 3: 100 cycles" in text
    last = text.rsplit("\r", 1)[1]  # the closing line overwrites the status line
    assert last.endswith("\n") and text.count("\n") == 1
    assert last.rstrip().startswith("simulating: 2/4 images, ") and last.rstrip().endswith(" s")
    assert "ETA" not in last and "cycles" not in last


def test_forced_on_and_off(monkeypatch):
    monkeypatch.setenv("ILMPQ_PROGRESS", "1")
    out = io.StringIO()
    Progress(out).note("hello")
    assert out.getvalue() == "hello\n"
    monkeypatch.setenv("ILMPQ_PROGRESS", "0")
    tty = FakeTTY()
    Progress(tty).note("hello")
    assert tty.getvalue() == ""


def test_eta_uses_the_partial_step():
    p = Progress(io.StringIO(), live=False)
    with p.task("x", 4) as t:
        assert t.eta() is None
        t.t0 -= 10.0  # 10 s elapsed
        t.update(1, partial=0.0)
        assert t.eta() == pytest.approx(30.0, rel=0.01)
        t.update(partial=1.0)  # capped below a whole step
        assert t.eta() == pytest.approx(10.0 * (4 - 1.99) / 1.99, rel=0.01)
        t.update(2)
        assert t.partial == 0.0


def test_format_seconds():
    assert format_seconds(4.24) == "4.2 s"
    assert format_seconds(65) == "1 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


@pytest.mark.verilator
def test_simulate_shows_the_build_cache_and_image_progress(tmp_path):
    m = random_qmodel(np.random.default_rng(3), spec=NumericSpec(act_bits=8),
                      input_shape=(3, 4, 4))
    m.save(tmp_path / "m.npz")
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin", ILMPQ_PROGRESS="1")
    argv = [sys.executable, "-m", "ilmpq.firmware.cli", "simulate", str(tmp_path / "m.npz"),
            "--count", "2"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    # the build (first time) or the cache, with its path, then the images
    assert "Verilator model of ilmpq_tiny: cached in " in err or (
        "building the Verilator model of ilmpq_tiny (once per design; cached in " in err)
    assert "simulating (verilator): 2/2 images" in err
    assert "2/2 images bit-exact on every layer (verilator" in proc.stdout
    assert proc.stdout.count("image 1/2: bit-exact") == 1  # results count from 1, as progress
    # not on a terminal and not forced: standard error stays empty
    env.pop("ILMPQ_PROGRESS")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
