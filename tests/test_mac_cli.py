"""Authenticated weight packages from the command line: ``ilmpq compile --mac-key-file`` and
``ilmpq simulate --mac-key-file`` (the key only ever from a file, never written anywhere)."""

import json
import os

import numpy as np
import pytest

from ilmpq.firmware import wpkg
from ilmpq.firmware.cli import main
from ilmpq.firmware.compiler import compile_model
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import QModel
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import get_config

KEY = bytes(range(0x30, 0x40))
TINY = get_config("tiny")


@pytest.fixture
def model_path(tmp_path):
    m = random_qmodel(np.random.default_rng(3), spec=NumericSpec(act_bits=8),
                      input_shape=(3, 4, 4), max_channels=6)
    path = tmp_path / "m.npz"
    m.save(path)
    return str(path)


@pytest.mark.parametrize("form", ["hex", "raw"])
def test_compile_with_a_key_file(model_path, tmp_path, capsys, form):
    kf = tmp_path / "key"
    kf.write_bytes(KEY if form == "raw" else (KEY.hex() + "\n").encode())
    out = tmp_path / "c"
    assert main(["compile", model_path, "--config", "tiny", "--mac-key-file", str(kf),
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "weight packages authenticated (SipHash-2-4), nonce 0x" in text
    nonce = json.loads((out / "compiled.json").read_text())["mac_nonce"]
    assert isinstance(nonce, int) and 0 <= nonce < 1 << 64
    # the image is exactly the compiler's with that key and nonce
    want = compile_model(QModel.load(model_path), TINY, mac=wpkg.MacKey(KEY, nonce))
    assert (out / "image.bin").read_bytes() == bytes(want.image)
    # the key is written nowhere, in neither form
    for name in os.listdir(out):
        data = (out / name).read_bytes()
        assert KEY not in data and KEY.hex().encode() not in data.lower(), name
    # without a key: no nonce, CRC packages
    assert main(["compile", model_path, "--config", "tiny", "-o", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "compiled.json").read_text())["mac_nonce"] is None


@pytest.mark.parametrize("content, problem", [
    (bytes(15), "must hold exactly 16 raw bytes or 32 hex digits"),
    (b"00" * 17, "must hold exactly 16 raw bytes or 32 hex digits"),
    (b"zz" * 16, "must hold exactly 16 raw bytes or 32 hex digits"),
    (None, "cannot read the MAC key file"),
    ("dir", "is not a regular file"),
])
def test_bad_key_files_end_in_one_error_line(model_path, tmp_path, capsys, content, problem):
    kf = tmp_path / "key"
    if content == "dir":
        kf.mkdir()
    elif content is not None:
        kf.write_bytes(content)
    assert main(["compile", model_path, "--config", "tiny", "--mac-key-file", str(kf),
                 "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and problem in err, err
    assert not (tmp_path / "c").exists()


def test_read_key_file_refuses_large_files(tmp_path):
    kf = tmp_path / "big"
    kf.write_bytes(bytes(5000))
    with pytest.raises(IlmpqValueError, match="has 5000 bytes"):
        wpkg.read_key_file(kf)


def test_mac_key_repr_hides_the_key():
    assert KEY.hex() not in repr(wpkg.MacKey(KEY, 1)) and "hidden" in repr(wpkg.MacKey(KEY, 1))
    with pytest.raises(IlmpqValueError, match=r"MAC nonce = -1 is not allowed"):
        wpkg.MacKey(KEY, -1)
    with pytest.raises(IlmpqValueError, match="exactly 16 bytes"):
        wpkg.MacKey(KEY[:8], 1)


def test_simulate_with_a_key_file_is_bit_exact(model_path, tmp_path, capsys):
    """End to end on the RTL (Amaranth simulator, random AXI timing): tagged packages, the key
    programmed by the driver, every layer bit-exact with golden."""
    kf = tmp_path / "key"
    kf.write_bytes(KEY)
    assert main(["simulate", model_path, "--config", "tiny", "--sim", "amaranth", "--mem",
                 "random", "--seed", "4", "--mac-key-file", str(kf)]) == 0
    assert "1/1 image bit-exact on every layer" in capsys.readouterr().out
