"""The bad-input corpus through the Python API: hardware configurations, instructions, model
files (bit-flip and truncation fuzzing), ONNX files, the compiler's arguments and the driver's.

Every bad input must raise an :class:`~ilmpq.golden.errors.IlmpqError` (which the CLI prints as
one line) naming the problem -- never another exception, never a silent wrap-around.
"""

import dataclasses
import os
import re
import threading
import tracemalloc

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

import ilmpq.firmware.compiler as compiler
from corpus import build_corpus, conv_onnx, external_onnx, small_qmodel, wide_onnx
from ilmpq.firmware.compiler import CompileError, compile_model
from ilmpq.firmware.driver import Driver, run_sync
from ilmpq.golden.errors import IlmpqError, IlmpqValueError
from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import ModelFormatError, QModel, padding_error
from ilmpq.golden.onnx_import import OnnxImportError, load_onnx
from ilmpq.golden.quantize import float_bytes_per_image, quantize
from ilmpq.golden.safeio import (MAX_JSON_DEPTH, InputFileError, loads_json, open_input,
                                 read_npy, read_npz)
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
    "axi_ports": [0, 3, 8, -1], "read_fifo_beats": [2, 15, 4097], "weight_mac": [2, -1],
    "vpool_entries": [-1, 3, 100, 8192],
    # (2: the default geometry has one post-processing group a pixel, 2 does not divide it)
    "post_groups": [0, 3, 8, -1, 2],
    # (2: the default build has one AXI port and words of half a beat)
    "act_ports": [0, 3, -1, 2],
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
            shape = Shape.cast(f.shape)          # enum-shaped fields (PoolMode) too
            yield op, name, shape.width, shape.signed


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
    n = INSTR_BITS // 8
    with pytest.raises(IlmpqValueError, match=rf"an instruction is {n} bytes, not {n - 1} bytes"):
        decode(bytes(n - 1))
    with pytest.raises(IlmpqValueError, match=rf"an instruction is {n} bytes, not str"):
        decode("x" * n)


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
    # the read-only regions (weights, parameters, programs) come first, then the tensors'
    # arena: layer c1's weights are the first region that does not fit
    with pytest.raises(CompileError, match=r"does not fit the 32-bit address space of the DMA: "
                                           r"the weights of layer 'c1' of \d+ bytes"):
        compile_model(small_qmodel(), TINY, base=(1 << 32) - 256)


def test_compile_rejects_an_arena_past_4_gib():
    """Everything read-only fits below 4 GiB, the activation arena after it does not."""
    m = small_qmodel()
    probe = compile_model(m, TINY, base=0)
    with pytest.raises(CompileError, match=r"does not fit the 32-bit address space of the DMA: "
                                           r"the activation arena of \d+ bytes"):
        compile_model(m, TINY, base=(1 << 32) - probe.arena[0] - 64)


def test_weights_longer_than_one_dma_command_run_on_the_host(monkeypatch):
    """A layer whose weights exceed one LOAD_WEIGHTS stream runs on the host, named with the
    reason in the compile report (it was a compile error before the host fallback); nothing of
    its failed accelerator compilation stays in the image."""
    monkeypatch.setattr(compiler, "MAX_COMMAND_BEATS", 20)
    comp = compile_model(small_qmodel(), TINY)
    rep = {r.name: r for r in comp.layers}
    assert rep["c1"].where == "cpu"
    assert re.fullmatch(r"its weight packages \(\d+ bytes\) exceed one LOAD_WEIGHTS stream "
                        r"of at most 20 beats \(\d+ bytes\)", rep["c1"].cpu_reason)
    monkeypatch.undo()
    full = compile_model(small_qmodel(), TINY)
    assert comp.size < full.size


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
    (dict(prog_tag=1 << 32), r"prog_tag = 0x100000000 does not fit"),
    (dict(prog_tag=-1), r"prog_tag = -0x1 does not fit"),
    (dict(arena=(0x1000_0000,)), r"arena = \(268435456,\) must be \(base, limit\)"),
    (dict(arena=(0x0FFF_FFC0, 0x1000_0040)), r"arena = \[0xfffffc0, 0x10000040\) is not "
                                             r"allowed: it must lie inside the window"),
    (dict(arena=(0x1000_0080, 0x1000_0040)), r"is not allowed: it must lie inside the window"),
    (dict(arena=(0x1000_0000, 0x1002_0000)), r"is not allowed: it must lie inside the window"),
])
def test_driver_rejects_register_values_that_do_not_fit(kwargs, message):
    args = dict(prog_addr=0x1000_0000, n_instr=4, window=(0x1000_0000, 0x1001_0000),
                arena=None, prog_tag=0)
    args.update(kwargs)
    drv = Driver(_NoHardware(), TINY)
    with pytest.raises(IlmpqValueError, match=message):
        run_sync(drv.run_program(args["prog_addr"], args["n_instr"], args["window"],
                                 args["arena"], args["prog_tag"]))


@pytest.mark.parametrize("kwargs,message", [
    (dict(watchdog_cycles=1 << 32), r"watchdog_cycles = 0x100000000 does not fit"),
    (dict(watchdog_cycles=-1), r"watchdog_cycles = -0x1 does not fit"),
    (dict(timeout_cycles=0), r"timeout_cycles = 0 is not allowed: it must be a positive"),
    (dict(bus_timeout_cycles=0), r"bus_timeout_cycles = 0 is not allowed: it must be an "
                                 r"integer in \[1, 16777215\]"),
    (dict(bus_timeout_cycles=1 << 24), r"bus_timeout_cycles = 16777216 is not allowed"),
    (dict(bus_timeout_cycles=True), r"bus_timeout_cycles = True is not allowed"),
    (dict(bus_timeout_cycles=100.0), r"bus_timeout_cycles = 100.0 is not allowed"),
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



# -- ONNX external data: confined to the model's directory ---------------------------------------

def _ext_weights(files):
    path = os.path.join(os.path.dirname(files["ext_ok.onnx"]), "weights.bin")
    return np.fromfile(path, np.float32).reshape(4, 3, 3, 3).astype(np.float64)


@pytest.mark.parametrize("name", ["ext_ok.onnx", "ext_ok_constant.onnx"])
def test_external_data_inside_the_model_directory_is_read(files, name):
    """An initializer and a Constant node whose bytes are in ``weights.bin`` next to the model
    import with exactly those weights."""
    fm = load_onnx(files[name])
    np.testing.assert_array_equal(fm.nodes[0].weight, _ext_weights(files))


@pytest.mark.parametrize("name", ["ext_ok.onnx", "ext_ok_constant.onnx"])
def test_external_data_bit_flips_never_read_another_file(files, rng, name):
    """300 single-bit flips of a model whose weights are external (location, offset, length,
    dims, data type ...): each load gives exactly the weights of ``weights.bin`` or an
    OnnxImportError -- never another file's bytes (``secret.bin`` is one directory up)."""
    raw = open(files[name], "rb").read()
    want = _ext_weights(files)
    path = os.path.join(os.path.dirname(files[name]), "flipped.onnx")
    rejected = 0
    for _ in range(300):
        bad = bytearray(raw)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        with open(path, "wb") as f:
            f.write(bad)
        try:
            fm = load_onnx(path)
        except OnnxImportError:
            rejected += 1
            continue
        conv = next(n for n in fm.nodes if n.weight.shape == want.shape)
        np.testing.assert_array_equal(conv.weight, want)
    assert rejected > 50


@pytest.mark.parametrize("name,message", [
    ("ext_init_dotdot.onnx", r"initializer 'w': external data location '\.\./secret\.bin' "
                             r"leads out of the model's directory"),
    ("ext_const_dotdot.onnx", r"node 'wconst' \(Constant\) attribute 'value': external data "
                              r"location '\.\./secret\.bin' leads out"),
    ("ext_const_abs.onnx", r"'value': external data location '/.*secret\.bin' is an absolute "
                           r"path"),
    ("ext_const_symlink.onnx", r"'link\.bin' resolves to .*secret\.bin, outside the model's "
                               r"directory"),
    ("ext_attr_dotdot.onnx", r"node 'cos' \(ConstantOfShape\) attribute 'value': external data "
                             r"location '\.\./secret\.bin' leads out"),
    ("ext_const_fifo.onnx", r"fifo\.bin: is a FIFO \(named pipe\), not a regular file"),
    ("ext_const_devzero.onnx", r"'/dev/zero' is an absolute path"),
    ("ext_length.onnx", r"external data bytes \[0, 4096\) are not inside 'weights\.bin' "
                        r"\(432 bytes\)"),
    ("ext_offset.onnx", r"external data bytes \[400, 832\) are not inside"),
])
def test_external_data_outside_the_model_directory_is_refused(files, name, message):
    with pytest.raises(OnnxImportError, match=message):
        _within(10, load_onnx, files[name])


def test_external_data_length_must_match_the_tensor(files, tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(1000))
    (tmp_path / "m.onnx").write_bytes(external_onnx("weights.bin", length=428))
    with pytest.raises(OnnxImportError, match=r"external data holds 428 bytes but the FLOAT "
                                              r"tensor of dims \[4, 3, 3, 3\] needs 432"):
        load_onnx(tmp_path / "m.onnx")


def test_external_data_is_never_resolved_against_the_working_directory(tmp_path, monkeypatch):
    """The issue's reproduction: a Constant's external data ``etc/passwd`` read relative to the
    current directory. The file exists in the working directory, not next to the model."""
    (tmp_path / "model").mkdir()
    (tmp_path / "cwd" / "etc").mkdir(parents=True)
    (tmp_path / "cwd" / "etc" / "passwd").write_bytes(bytes(432))
    (tmp_path / "model" / "m.onnx").write_bytes(external_onnx("etc/passwd", where="constant"))
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(OnnxImportError, match=r"cannot read external data 'etc/passwd': No such "
                                              r"file or directory"):
        load_onnx(tmp_path / "model" / "m.onnx")


def test_external_data_symlink_swapped_in_after_the_check_is_refused(files, monkeypatch):
    """The resolved path is opened with O_NOFOLLOW: a symlink put in its place between the
    check and the open (simulated here) cannot lead out either."""
    import ilmpq.golden.onnx_import as oi
    link = os.path.join(os.path.dirname(files["ext_ok.onnx"]), "link.bin")
    monkeypatch.setattr(oi, "resolve_confined", lambda *a, **k: link)
    with pytest.raises(OnnxImportError, match=r"cannot read external data 'weights\.bin': Too "
                                              r"many levels of symbolic links"):
        load_onnx(files["ext_ok.onnx"])


@pytest.mark.parametrize("where", ["initializer", "constant", "attribute"])
def test_external_data_needs_a_model_file(where):
    """From bytes or a ModelProto there is no directory to confine the data to: refused."""
    import onnx
    raw = external_onnx("weights.bin", where=where)
    with pytest.raises(OnnxImportError, match=r"keeps its data in an external file "
                                              r"\('weights\.bin'\); external data is only read"):
        load_onnx(raw)
    with pytest.raises(OnnxImportError, match=r"<ModelProto>: .* keeps its data in an external"):
        load_onnx(onnx.load_from_string(raw))


# -- special files and lying headers ------------------------------------------------------------

def _within(seconds, fn, *args):
    """``fn(*args)`` in a thread that must finish within ``seconds`` (a FIFO must not hang)."""
    result = {}

    def target():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            result["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__}{args} hangs"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("reader", [
    lambda p: load_onnx(p), lambda p: QModel.load(p), lambda p: read_npy(p),
    lambda p: open_input(p).close()])
@pytest.mark.parametrize("special,kind", [("fifo", r"a FIFO \(named pipe\)"),
                                          ("devzero", "a character device")])
def test_special_files_are_refused_without_reading(files, reader, special, kind):
    with pytest.raises(InputFileError, match=rf"is {kind}, not a regular file"):
        _within(10, reader, files[special])


def test_directories_keep_their_os_error(files):
    with pytest.raises(IsADirectoryError):
        open_input(files["a_directory.onnx"])


@pytest.mark.parametrize("name,message", [
    ("calib_tib_header.npy", r"header declares a float64 array of shape \(1048576, 3, 4096, "
                             r"4096\) \(422212465065984 bytes\) but the file holds only 64"),
    ("images_truncated.npy", r"not a valid \.npy array header"),
    ("pickled.npy", r"Object arrays cannot be loaded when allow_pickle=False"),
])
def test_npy_headers_are_checked_before_allocating(files, name, message):
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=message):
            read_npy(files[name])
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name,message", [
    ("model_tib_header.npz", r"member 'c1\.weight\.npy': the header declares a int8 array of "
                             r"shape \(1048576, 1024, 1024, 1\)"),
    ("model_4g_header.npz", r"\(3221225472 bytes\) but the file holds only 64 bytes"),
    ("model_deflate_claim.npz", r"claims 4294967280 bytes from \d+ compressed bytes, more than "
                                r"deflate can expand \(1032:1\)"),
])
def test_npz_members_are_checked_before_allocating(files, name, message):
    raw = open(files[name], "rb").read()
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=message):
            read_npz(raw, name)
        with pytest.raises(ModelFormatError, match=message):
            QModel.load(files[name])
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_npz_reader_round_trips_what_numpy_writes(files, tmp_path):
    arrays = {"a": np.arange(12, dtype=np.int16).reshape(3, 4), "b": np.zeros(0),
              "c": np.asfortranarray(np.ones((2, 3), np.float32))}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / "x.npz"
        save(path, **arrays)
        got = read_npz(path.read_bytes(), "x.npz")
        assert set(got) == set(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(got[k], v)
            assert got[k].dtype == v.dtype


@pytest.mark.parametrize("name,message", [
    ("model_deep_json.npz", r"JSON nested 100001 levels deep; at most 64 are allowed"),
    ("model_scale_nan.npz", r"NaN is not a valid JSON number"),
    ("model_scale_inf.npz", r"number 1e400 overflows a float"),
    ("model_ratio_inf.npz", r"Infinity is not a valid JSON number"),
])
def test_model_metadata_is_strict_json(files, name, message):
    with pytest.raises(ModelFormatError, match=message):
        QModel.load(files[name])


def test_loads_json_limits():
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    assert loads_json('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')
    with pytest.raises(InputFileError, match=r"nested 65 levels deep"):
        loads_json("[" * 65 + "]" * 65)
    for text in ("NaN", "-Infinity", "[1e999]"):
        with pytest.raises(InputFileError, match=r"not valid JSON"):
            loads_json(text)


# -- ONNX content: the padding rule, empty and non-numeric weights, Gemm alpha --------------------

@pytest.mark.parametrize("name,message", [
    ("bad_string_weight.onnx", r"weight 'w' has element type object \(STRING\); a numeric"),
    ("zero_channels.onnx", r"weight of shape \[0, 3, 3, 3\] is empty"),
    ("gemm_alpha0.onnx", r"node 'fc' \(Gemm\): alpha = 0 makes the output a constant"),
    ("conv_pads_4.onnx", r"node 'conv' \(Conv\): padding \(4, 1, 1, 1\) must be smaller than "
                         r"the 3x3 kernel"),
    ("deep_metadata.onnx", r"metadata ilmpq\.input_mean=.* JSON nested 100000 levels deep"),
])
def test_onnx_content_errors(files, name, message):
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(files[name])


def test_one_padding_rule_for_import_model_and_compiler():
    """Padding >= kernel is refused the same way by the importer (see above), by
    QModel.validate (so by the quantizer, which validates what it builds, and by the compiler,
    which loads validated models), for conv and pooling alike."""
    assert padding_error((3, 3), (2, 2, 2, 2)) is None
    assert padding_error((1, 1), (0, 0, 0, 0)) is None
    for kernel, pads in (((3, 3), (3, 0, 0, 0)), ((3, 3), (0, 0, 0, 3)), ((1, 1), (1, 1, 1, 1)),
                         ((3, 1), (0, 1, 0, 0))):
        assert "must be smaller than the" in padding_error(kernel, pads)
    m = small_qmodel()
    c2 = m.layer("c2")
    c2.padding = (1, 1, 1, 1)
    t = m.tensors["c2"]
    m.tensors["c2"] = dataclasses.replace(t, shape=(t.shape[0], t.shape[1] + 2, t.shape[2] + 2))
    with pytest.raises(ModelFormatError, match=r"layer 'c2' \(conv\): padding \(1, 1, 1, 1\) "
                                               r"must be smaller than the 1x1 kernel"):
        m.validate()


def test_quantize_applies_the_padding_rule_to_a_float_model():
    """A FloatModel built directly (not through the importer) with padding >= kernel: quantize
    refuses it up front with the same rule, before any calibration work."""
    fm = load_onnx(conv_onnx())
    conv = fm.nodes[0]
    conv.padding = (3, 1, 1, 1)
    fm.shapes[conv.output] = (conv.out_channels, 8 + 3 + 1 - 2, 8)
    with pytest.raises(IlmpqValueError, match=r"layer 'conv': padding \(3, 1, 1, 1\) must be "
                                              r"smaller than the 3x3 kernel"):
        quantize(fm, np.zeros((2, 3, 8, 8), np.uint8), ratio=0.25, spec=NumericSpec())


# -- bounded quantizer memory ---------------------------------------------------------------------

def _quantize_peak(fm, calib, **kw):
    tracemalloc.start()
    try:
        q = quantize(fm, calib, ratio=0.25, spec=NumericSpec(act_bits=8), report_images=8, **kw)
        return q, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_quantizer_memory_is_bounded_by_calib_memory():
    """The float activations of the calibration images are kept whole only if they fit
    ``calib_memory``; otherwise the peak stays near the budget whatever the number of images,
    and the model is the same but for the estimated clips."""
    fm = load_onnx(wide_onnx())
    per_image = float_bytes_per_image(fm)
    calib = np.random.default_rng(2).integers(0, 256, (480, 3, 8, 8)).astype(np.uint8)
    budget = 8 << 20
    assert 480 * per_image > 20 * budget
    whole, peak_whole = _quantize_peak(fm, calib, calib_memory=1 << 40)
    _, peak_120 = _quantize_peak(fm, calib[:120], calib_memory=budget)
    streamed, peak_480 = _quantize_peak(fm, calib, calib_memory=budget)
    print(f"peak: kept whole {peak_whole >> 20} MiB; streamed, 120 images {peak_120 >> 20} MiB, "
          f"480 images {peak_480 >> 20} MiB")
    assert peak_whole > 8 * budget                    # kept whole: grows with the images
    assert peak_120 < 2.5 * budget and peak_480 < 2.5 * budget
    assert peak_480 < 1.3 * peak_120                  # 4x the images, the same memory
    streamed.validate()
    assert streamed.meta["n_calib"] == 480
    # other samples of columns and values: a close model, not the same one
    rep_w, rep_s = whole.meta["quant_report"], streamed.meta["quant_report"]
    assert rep_s["output_sqnr_db"] > rep_w["output_sqnr_db"] - 1.0
    # with every value and column fitting the samples, batching changes only the clip (the
    # extreme is one more sample of the MSE): the same rows and weights, the same scales +- 5%
    few = calib[:60]
    a, _ = _quantize_peak(fm, few, calib_memory=1 << 40)
    b, _ = _quantize_peak(fm, few, calib_memory=per_image * 16)
    for la, lb in zip(a.conv_layers, b.conv_layers):
        np.testing.assert_array_equal(la.precision, lb.precision)
        np.testing.assert_array_equal(la.weight, lb.weight)
    for t in a.tensors:
        assert b.tensors[t].scale == pytest.approx(a.tensors[t].scale, rel=0.05)


def test_quantizer_memory_argument():
    fm = load_onnx(conv_onnx())
    calib = np.zeros((2, 3, 8, 8), np.uint8)
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(IlmpqValueError, match=r"calib_memory must be a positive number of "
                                                  r"bytes"):
            quantize(fm, calib, ratio=0.25, spec=NumericSpec(), calib_memory=bad)


def test_mac_key_for_a_build_without_the_mac_core():
    """z020 is built without the SipHash core (HWConfig.weight_mac = 0): compiling with a MAC
    key is refused with one error naming the option, and a driver for such a build refuses a
    model whose packages carry tags before writing anything."""
    from ilmpq.firmware import wpkg
    from ilmpq.firmware.driver import ConfigMismatch
    z020, tiny = get_config("z020"), get_config("tiny")
    assert z020.weight_mac == 0 and tiny.weight_mac == 1
    assert z020.replace(weight_mac=1).config_id == z020.config_id   # implementation only
    model = small_qmodel()
    mac = wpkg.MacKey(bytes(range(16)), 0x1234)
    with pytest.raises(CompileError, match=r"built without the weight-package MAC "
                                           r"\(HWConfig\.weight_mac = 0\)"):
        compile_model(model, tiny.replace(weight_mac=0), mac=mac)
    comp = compile_model(model, tiny, mac=mac)
    drv = Driver(_NoHardware(), tiny.replace(weight_mac=0))
    with pytest.raises(ConfigMismatch, match=r"built without the MAC core"):
        run_sync(drv.load(comp))
