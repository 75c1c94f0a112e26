"""Every output of the ``ilmpq`` CLI (``-o``, ``--json``, ``--save``): no symlink followed, no
existing file replaced without ``--force``, never a special file, every write atomic.

Robust-corpus style: one subprocess per case, which must end with exit status 2 and exactly one
``error: ...`` line (the last line on stderr, no traceback) naming the problem, and must leave
the file system as it was (the victim file's bytes, no temporary files left behind).
"""

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.random_models import random_qmodel

# (id, argv with {out} for the output path and {model} for a small quantized model,
#  "file" or "dir" output)
COMMANDS = [
    ("regmap", ["regmap", "--format", "c", "-o", "{out}"], "file"),
    ("golden", ["golden", "--input-hw", "4", "--save", "{out}"], "file"),
    ("quantize", ["quantize", "default", "-o", "{out}"], "file"),
    ("run_json", ["run", "--sim", "none", "--json", "{out}"], "file"),
    ("board_run_json", ["board", "run", "{model}", "--json", "{out}"], "file"),
    ("import", ["import", "{model}", "-o", "{out}"], "file"),
    ("compile", ["compile", "{model}", "-o", "{out}"], "dir"),
    ("verilog", ["verilog", "--config", "tiny", "-o", "{out}"], "dir"),
    ("build", ["build", "--board", "zc706", "--config", "tiny", "--plan-only", "--no-estimate",
               "-o", "{out}"], "dir"),
]
#: commands that can also succeed here (board run needs a board, import a QONNX/QDQ model; the
#: refusals come before either is read)
RUNNABLE = [c for c in COMMANDS if c[0] not in ("board_run_json", "import")]
#: a file every directory command writes
DIR_FILE = {"compile": "image.bin", "verilog": "README.md", "build": "build.json"}
VICTIM = b"the previous good output\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    m = random_qmodel(np.random.default_rng(3), spec=NumericSpec(act_bits=8),
                      input_shape=(3, 4, 4))
    path = str(d / "m.npz")
    m.save(path)
    return path


def _cli(argv, cwd, *, fsize=None, timeout=120):
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin", OPENBLAS_NUM_THREADS="1")
    env.pop("ILMPQ_DEBUG", None)

    def limit():  # a full disk, as the writer sees it: EFBIG past the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "ilmpq.firmware.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit if fsize is not None else None)


def _error_line(proc, name):
    err = proc.stderr
    assert "Traceback" not in err, f"{name}: traceback instead of an error line:\n{err}"
    assert proc.returncode == 2, f"{name}: exit status {proc.returncode}\n{err}"
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"{name}: not one final error line:\n{err}"
    return errors[0]


def _argv(template, out, model):
    return [a.replace("{out}", out).replace("{model}", model) for a in template]


def _no_temporaries(d):
    left = [n for n in os.listdir(d) if n.endswith(".tmp")]
    assert not left, f"temporary files left behind: {left}"


def _victim_path(tmp_path, name, kind):
    """The existing file the command must not replace: the output file, or one of the files a
    directory command writes."""
    if kind == "file":
        return tmp_path / "out", tmp_path / "out"
    (tmp_path / "out").mkdir()
    return tmp_path / "out", tmp_path / "out" / DIR_FILE[name]


@pytest.mark.parametrize("case", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_existing_file_is_not_replaced_without_force(case, tmp_path, model):
    name, template, kind = case
    out, victim = _victim_path(tmp_path, name, kind)
    victim.write_bytes(VICTIM)
    err = _error_line(_cli(_argv(template, str(out), model), tmp_path), name)
    assert "File exists" in err and "--force" in err and str(victim.name) in err, err
    assert victim.read_bytes() == VICTIM
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("case", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_symlink_is_never_followed(case, force, tmp_path, model):
    name, template, kind = case
    target = tmp_path / "elsewhere"
    if kind == "file":
        target.write_bytes(VICTIM)
    else:
        target.mkdir()
        (target / DIR_FILE[name]).write_bytes(VICTIM)
    os.symlink(target, tmp_path / "out")
    argv = _argv(template, str(tmp_path / "out"), model) + (["--force"] if force else [])
    err = _error_line(_cli(argv, tmp_path), name)
    assert "symbolic link" in err and "out" in err, err
    victim = target if kind == "file" else target / DIR_FILE[name]
    assert victim.read_bytes() == VICTIM
    if kind == "dir":
        assert os.listdir(target) == [DIR_FILE[name]]
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("case", [c for c in COMMANDS if c[2] == "dir"],
                         ids=[c[0] for c in COMMANDS if c[2] == "dir"])
def test_symlink_inside_an_output_directory_is_not_followed(case, tmp_path, model):
    name, template, _ = case
    (tmp_path / "out").mkdir()
    (tmp_path / "victim").write_bytes(VICTIM)
    os.symlink(tmp_path / "victim", tmp_path / "out" / DIR_FILE[name])
    err = _error_line(_cli(_argv(template, str(tmp_path / "out"), model) + ["--force"],
                           tmp_path), name)
    assert "symbolic link" in err and DIR_FILE[name] in err, err
    assert (tmp_path / "victim").read_bytes() == VICTIM


@pytest.mark.parametrize("case", [c for c in COMMANDS if c[2] == "file"],
                         ids=[c[0] for c in COMMANDS if c[2] == "file"])
def test_special_files_are_refused_even_with_force(case, tmp_path, model):
    name, template, _ = case
    os.mkfifo(tmp_path / "out")  # opening a FIFO to write would block forever
    err = _error_line(_cli(_argv(template, str(tmp_path / "out"), model) + ["--force"],
                           tmp_path, timeout=60), name)
    assert "not a regular file" in err, err
    err = _error_line(_cli(_argv(template, "/dev/null", model) + ["--force"], tmp_path), name)
    assert "not a regular file" in err and "/dev/null" in err, err


@pytest.mark.parametrize("case", RUNNABLE, ids=[c[0] for c in RUNNABLE])
def test_force_replaces_atomically(case, tmp_path, model):
    name, template, kind = case
    out, victim = _victim_path(tmp_path, name, kind)
    victim.write_bytes(VICTIM)
    before = os.stat(victim).st_ino
    proc = _cli(_argv(template, str(out), model) + ["--force"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() != VICTIM and victim.stat().st_size > 0
    assert os.stat(victim).st_ino != before  # a new file renamed into place, not rewritten
    _no_temporaries(tmp_path)
    if kind == "dir":
        _no_temporaries(out)
        # nothing of the staging directory leaks into the messages
        assert ".tmp" not in proc.stdout + proc.stderr


def test_failed_quantize_keeps_the_previous_model(tmp_path):
    """A quantize that fails after it started (here: a zero input std) leaves the previous good
    model byte for byte (it used to leave a 22-byte stub)."""
    out = tmp_path / "model.npz"
    out.write_bytes(VICTIM)
    err = _error_line(_cli(["quantize", "default", "-o", str(out), "--force", "--input-std", "0"],
                           tmp_path), "quantize")
    assert "input_std" in err
    assert out.read_bytes() == VICTIM
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("argv", [
    ["quantize", "default", "-o", "{out}", "--force"],
    ["regmap", "--format", "md", "-o", "{out}", "--force"],
    ["compile", "{model}", "-o", "{out}", "--force"],
], ids=["quantize", "regmap", "compile"])
def test_full_disk_is_one_error_and_keeps_the_previous_file(argv, tmp_path, model):
    """Writing past the file-size limit (what a full disk looks like to the writer) ends in one
    error line naming the file; the previous output is unchanged and no partial file is left."""
    is_dir = argv[0] == "compile"
    out, victim = (tmp_path / "out", tmp_path / "out" / "image.bin") if is_dir else \
        (tmp_path / "out", tmp_path / "out")
    if is_dir:
        out.mkdir()
    victim.write_bytes(VICTIM)
    proc = _cli(_argv(argv, str(out), model), tmp_path, fsize=4096)
    err = _error_line(proc, argv[0])
    assert "File too large" in err and "out" in err, err
    assert victim.read_bytes() == VICTIM
    _no_temporaries(tmp_path)
    if is_dir:
        assert sorted(os.listdir(out)) == ["image.bin"]


def test_new_outputs_need_no_force(tmp_path):
    proc = _cli(["regmap", "--format", "json", "-o", str(tmp_path / "r.json")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'r.json'}" in proc.stdout  # regmap -o says what it wrote
    mode = (tmp_path / "r.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # like any new file, not mkstemp's 0600


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
