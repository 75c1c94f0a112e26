"""The bad-input corpus through the Python API: hardware configurations, instructions, model
files (bit-flip and truncation fuzzing), ONNX files, the compiler's arguments and the driver's.

Every bad input must raise an :class:`~ilmpq.golden.errors.IlmpqError` (which the CLI prints as
one line) naming the problem -- never another exception, never a silent wrap-around.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.lib import data

import ilmpq.firmware.compiler as compiler
from corpus import build_corpus, conv_onnx, small_qmodel
from ilmpq.firmware.compiler import CompileError, compile_model
from ilmpq.firmware.driver import Driver, run_sync
from ilmpq.golden.errors import IlmpqError, IlmpqValueError
from ilmpq.golden.model import ModelFormatError, QModel
from ilmpq.golden.onnx_import import OnnxImportError, load_onnx
from ilmpq.hdl.config import ConfigError, HWConfig, get_config
from ilmpq.hdl.isa import FIELD_LAYOUTS, INSTR_BITS, Opcode, decode, encode

TINY = get_config("tiny")


# -- hardware configurations -----------------------------------------------------------------

_INT_FIELDS = [f.name for f in dataclasses.fields(HWConfig) if f.name != "name"]

_OUT_OF_RANGE = {
    "lanes_lo": [0, 1025, -3], "lanes_hi": [0, 2000], "lanes_lo_dsp": [-2, 1, 4],
    "tn": [0, 65], "act_bits": [0, 3, 6, 16], "acc_bits": [16, 64], "mult_bits": [7, 25],
    "shift_bits": [5, 8], "axi_data_width": [0, 48, 256], "axi_addr_width": [64],
    "axi_id_width": [0, 13], "max_burst": [0, 3, 32, 256], "max_reads_outstanding": [0, 17],
    "wbuf_word_beats": [0, 65], "wbuf_depth": [0, 3, 48],
    "act_depth": [8, 100], "acc_depth": [2, 96], "max_channels": [4, 12],
}


def test_every_field_has_out_of_range_cases():
    assert set(_OUT_OF_RANGE) == set(_INT_FIELDS)


@pytest.mark.parametrize("field", _INT_FIELDS)
@pytest.mark.parametrize("bad", ["8", 8.0, True, None])
def test_config_field_of_wrong_type(field, bad):
    with pytest.raises(ConfigError, match=rf"HWConfig\.{field} = .* is not allowed: {field} "
                                          rf"must be an integer"):
        HWConfig(**{field: bad})


@pytest.mark.parametrize("field,bad", [(f, v) for f, vs in _OUT_OF_RANGE.items() for v in vs])
def test_config_field_out_of_range(field, bad):
    with pytest.raises(ConfigError, match=rf"HWConfig\.{field} = {bad}") as e:
        HWConfig(**{field: bad})
    assert "not allowed" in str(e.value) or "too large" in str(e.value)


# -- instructions --------------------------------------------------------------------------------

def _field_items():
    for op, layout in FIELD_LAYOUTS.items():
        for name, f in dict(data.Layout.cast(layout)).items():
            yield op, name, f.shape.width, f.shape.signed


@pytest.mark.parametrize("op,name,width,is_signed", list(_field_items()),
                         ids=lambda v: getattr(v, "name", str(v)))
def test_instruction_fields_reject_values_that_do_not_fit(op, name, width, is_signed):
    lo, hi = ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed
              else (0, (1 << width) - 1))
    for v in (lo, hi):                                  # the limits encode and round-trip
        got_op, fields = decode(encode(op, **{name: v}))
        assert got_op == op and fields[name] == v
    for v in (lo - 1, hi + 1):
        with pytest.raises(IlmpqValueError, match=rf"\.{name} = {v} does not fit .* "
                                                  rf"\(allowed \[{lo}, {hi}\]\)"):
            encode(op, **{name: v})
    with pytest.raises(IlmpqValueError, match=rf"\.{name} = 1\.5 is not an integer"):
        encode(op, **{name: 1.5})


def test_instruction_encode_and_decode_errors():
    with pytest.raises(IlmpqValueError, match=r"has no field\(s\) \['bogus'\]; its fields are "
                                              r"addr, beats, wait_stores"):
        encode(Opcode.LOAD_ROWS, bogus=1)
    with pytest.raises(IlmpqValueError, match=r"END takes no fields"):
        encode(Opcode.END, addr=3)
    with pytest.raises(IlmpqValueError, match=r"unknown opcode 9; opcodes are NOP \(0\)"):
        encode(9)
    for op in range(16):
        raw = bytes([op]) + bytes(INSTR_BITS // 8 - 1)
        if op in {o.value for o in Opcode}:
            assert decode(raw)[0] == Opcode(op)
        else:
            with pytest.raises(IlmpqValueError, match=rf"unknown opcode {op}; opcodes are"):
                decode(raw)
    with pytest.raises(IlmpqValueError, match=r"an instruction is 32 bytes, not 31 bytes"):
        decode(bytes(31))
    with pytest.raises(IlmpqValueError, match=r"an instruction is 32 bytes, not str"):
        decode("x" * 32)


# -- model files -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return build_corpus(str(tmp_path_factory.mktemp("corpus")))


def test_model_file_single_bit_flips_never_pass_silently(files, rng):
    """A bit flipped anywhere in a model file: the load fails with ModelFormatError (the ZIP
    CRC-32 covers every array and the metadata) or, for bits the format does not use, gives the
    identical model. 300 random bits of the ZIP directory and 300 of the rest are tried."""
    raw = open(files["model.npz"], "rb").read()
    orig = QModel.load(files["model.npz"])
    cd = raw.index(b"PK\x01\x02")
    offsets = sorted(set(rng.integers(cd, len(raw), 300).tolist())
                     | set(rng.integers(0, cd, 300).tolist()))
    errors = 0
    for off in offsets:
        bad = bytearray(raw)
        bad[off] ^= 1 << int(rng.integers(8))
        path = files["model.npz"] + ".flip"
        with open(path, "wb") as f:
            f.write(bad)
        try:
            m = QModel.load(path)
        except ModelFormatError:
            errors += 1
            continue
        assert m == orig, f"bit flip at byte {off} changed the model without an error"
    assert errors > len(offsets) // 2


def test_model_file_truncations_are_errors(files):
    raw = open(files["model.npz"], "rb").read()
    for cut in list(range(0, 64)) + list(range(64, len(raw), 97)):
        with pytest.raises(ModelFormatError, match="is not a readable ilmpq model file"):
            QModel.load(_write(files, raw[:cut]))


def _write(files, data):
    path = files["model.npz"] + ".cut"
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- ONNX files --------------------------------------------------------------------------------

def test_onnx_truncations_and_bit_flips_only_raise_onnx_import_errors(rng):
    """ONNX has no checksum: a flipped weight bit is a different but valid model. Whatever the
    damage, the importer either returns a model or raises OnnxImportError, nothing else."""
    good = conv_onnx()
    load_onnx(good)
    bad_inputs = [good[:n] for n in range(0, len(good), 7)]
    for _ in range(300):
        b = bytearray(good)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        bad_inputs.append(bytes(b))
    rejected = 0
    for data in bad_inputs:
        try:
            load_onnx(data)
        except OnnxImportError:
            rejected += 1
    assert rejected > len(bad_inputs) // 3


@pytest.mark.parametrize("opset,ok", [(6, False), (7, True), (13, True), (99, False)])
def test_onnx_opset_range(opset, ok):
    data = conv_onnx(opset=opset)
    if ok:
        load_onnx(data)
    else:
        with pytest.raises(OnnxImportError, match=rf"opset {opset} is not supported: ilmpq "
                                                  rf"reads opsets 7 to \d+"):
            load_onnx(data)


# -- compiler arguments ------------------------------------------------------------------------

@pytest.mark.parametrize("base", [-64, 1 << 32, 0x1000_0004, 3.0, True, "0x1000"])
def test_compile_rejects_a_bad_base(base):
    with pytest.raises(CompileError, match=r"base = .* is not allowed: the image address must "
                                           r"be an integer multiple of 64 in \[0, 2\*\*32\)"):
        compile_model(small_qmodel(), TINY, base=base)


def test_compile_rejects_an_image_past_4_gib():
    with pytest.raises(CompileError, match=r"does not fit the 32-bit address space of the DMA: "
                                           r"tensor 'c1' of \d+ bytes"):
        compile_model(small_qmodel(), TINY, base=(1 << 32) - 256)


def test_compile_rejects_weights_longer_than_one_dma_command(monkeypatch):
    monkeypatch.setattr(compiler, "MAX_COMMAND_BEATS", 20)
    with pytest.raises(CompileError, match=r"layer 'c1': its weight packages \(\d+ bytes\) "
                                           r"exceed one LOAD_WEIGHTS stream of at most 20 beats"):
        compile_model(small_qmodel(), TINY)


# -- driver arguments --------------------------------------------------------------------------

class _NoHardware:
    """A transport that fails the test if the driver touches it."""

    def __getattr__(self, name):
        raise AssertionError(f"the driver used the transport ({name}) despite a bad argument")


@pytest.mark.parametrize("kwargs,message", [
    (dict(prog_addr=-8), r"prog_addr = -0x8 does not fit its 32-bit register"),
    (dict(prog_addr=1 << 32), r"prog_addr = 0x100000000 does not fit"),
    (dict(n_instr=1 << 40), r"n_instr = 0x10000000000 does not fit"),
    (dict(n_instr=2.5), r"n_instr = 2\.5 is not an integer"),
    (dict(window=(0x1000, 1 << 33)), r"window limit = 0x200000000 does not fit"),
    (dict(window=(0x1000,)), r"window = \(4096,\) must be \(base, limit\)"),
])
def test_driver_rejects_register_values_that_do_not_fit(kwargs, message):
    args = dict(prog_addr=0x1000_0000, n_instr=4, window=(0x1000_0000, 0x1001_0000))
    args.update(kwargs)
    drv = Driver(_NoHardware(), TINY)
    with pytest.raises(IlmpqValueError, match=message):
        run_sync(drv.run_program(args["prog_addr"], args["n_instr"], args["window"]))


@pytest.mark.parametrize("kwargs,message", [
    (dict(watchdog_cycles=1 << 32), r"watchdog_cycles = 0x100000000 does not fit"),
    (dict(watchdog_cycles=-1), r"watchdog_cycles = -0x1 does not fit"),
    (dict(timeout_cycles=0), r"timeout_cycles = 0 is not allowed: it must be a positive"),
])
def test_driver_constructor_arguments(kwargs, message):
    with pytest.raises(IlmpqValueError, match=message):
        Driver(_NoHardware(), TINY, **kwargs)


@pytest.mark.parametrize("image,message", [
    (np.zeros((3, 4, 5), np.uint8), r"shape \(3, 4, 5\); the model's input 'input' is "
                                    r"\(C, H, W\) = \(3, 4, 4\)"),
    (np.full((3, 4, 4), 0.5), r"dtype float64; give integer pixels"),
    (np.full((3, 4, 4), 256), r"values span \[256, 256\]; the input 'input' holds 8-bit "
                              r"values in \[0, 255\]"),
    (np.full((3, 4, 4), -1), r"values span \[-1, -1\]"),
])
def test_driver_rejects_images_that_would_wrap(image, message):
    """Pixels are stored as bytes: 256 would silently become 0 without this check."""
    comp = compile_model(small_qmodel(), TINY)
    drv = Driver(_NoHardware(), TINY)
    with pytest.raises(IlmpqValueError, match=message):
        run_sync(drv.infer(comp, image, load=False))


def test_every_user_error_is_an_ilmpq_error():
    for exc in (ConfigError, IlmpqValueError, ModelFormatError, OnnxImportError, CompileError):
        assert issubclass(exc, IlmpqError) and issubclass(exc, ValueError)
