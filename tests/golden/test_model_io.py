"""QModel.validate, QModel.save / QModel.load: exact round trips, clear errors for bad models and
bad files."""

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

from ilmpq.golden.formats import NumericSpec, Precision
from ilmpq.golden.model import (
    FORMAT_NAME, FORMAT_VERSION, ConvLayer, FlattenLayer, GlobalAvgPoolLayer, MaxPoolLayer,
    ModelFormatError, QModel, TensorSpec, hi_row_count,
)
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.golden.reference import run


def build_small(rng, act_bits=8, ratio=Fraction(1, 4)):
    """stem conv -> maxpool -> conv1 + projection (signed) -> conv2 (residual) -> GAP -> FC."""
    b = ModelBuilder(rng, spec=NumericSpec(act_bits=act_bits), ratio=ratio,
                     input_shape=(3, 10, 9))
    t = b.conv("stem", "input", 7, 3, stride=1, padding=(1, 0, 1, 2))
    t = b.maxpool("pool", t, 3, 2, 1)
    t1 = b.conv("conv1", t, 6, 3, stride=2, padding=1)
    p = b.conv("proj", t, 6, 1, stride=2, relu=False)
    t = b.conv("conv2", t1, 6, 5, padding=2, residual=p)
    t = b.gap("gap", t)
    t = b.flatten("flat", t)
    t = b.fc("fc", t, 5)
    return b.build(t, meta={"note": "test model", "nested": {"a": [1, 2]}})


@pytest.fixture
def model(rng):
    return build_small(rng)


def test_small_model_is_valid_and_has_every_feature(model):
    model.validate()
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["conv", "maxpool", "conv", "conv", "conv", "gap", "flatten", "conv"]
    assert model.layer("conv2").residual == "proj" and model.tensors["proj"].signed
    assert model.layer("fc").is_fc() and not model.layer("fc").relu


def test_hi_row_count():
    assert hi_row_count(Fraction(1, 8), 64) == 8
    assert hi_row_count(Fraction(1, 8), 10) == 2
    assert hi_row_count(0.125, 1000) == 125
    assert hi_row_count(0.1, 30) == 3  # not ceil(3.0000000000000004) = 4
    assert hi_row_count(0, 17) == 0 and hi_row_count(1, 17) == 17
    with pytest.raises(ModelFormatError, match=r"ratio = 1.5 is not allowed: it must be in"):
        hi_row_count(1.5, 4)


# -- validation -----------------------------------------------------------------------------

def _conv(model, name) -> ConvLayer:
    return model.layer(name)


def _retensor(model, name, **changes):
    model.tensors[name] = dataclasses.replace(model.tensors[name], **changes)


MUTATIONS = [
    ("read before write",
     lambda m: m.layers.insert(1, m.layers.pop(2)),
     r"layer 'conv1' \(conv\) reads tensor 'pool' before any layer writes it"),
    ("undeclared input",
     lambda m: setattr(m.layer("conv1"), "input", "nope"),
     r"layer 'conv1' \(conv\) reads tensor 'nope', which is not declared"),
    ("written twice",
     lambda m: setattr(m.layer("proj"), "output", "conv1"),
     r"layer 'proj' \(conv\) writes tensor 'conv1', which layer 'conv1' already wrote"),
    ("never written",
     lambda m: m.tensors.__setitem__("ghost", TensorSpec("ghost", (1, 1, 1), 8, False, 1.0)),
     r"tensor 'ghost' is declared but no layer writes it"),
    ("output shape",
     lambda m: _retensor(m, "conv1", shape=(6, 3, 4)),
     r"layer 'conv1' \(conv\): output 'conv1' has shape \(6, 3, 4\) but the layer computes "
     r"\(6, 3, 3\) from the input \(7, 5, 5\)"),
    ("groups",
     lambda m: setattr(m.layer("conv1"), "groups", 5),
     r"layer 'conv1' \(conv\): groups = 5 must be a positive integer dividing the 6 output "
     r"channels"),
    ("weight dtype",
     lambda m: setattr(m.layer("stem"), "weight", m.layer("stem").weight.astype(np.int16)),
     r"layer 'stem' \(conv\): weight must be a non-empty int8 array \(M, Cin, kh, kw\), not "
     r"int16 array"),
    ("bias dtype",
     lambda m: setattr(m.layer("stem"), "bias", m.layer("stem").bias.astype(np.int32)),
     r"layer 'stem' \(conv\): bias must be a int64 array of shape \(7,\)"),
    ("mult length",
     lambda m: setattr(m.layer("fc"), "mult", m.layer("fc").mult[:4]),
     r"layer 'fc' \(conv\): mult must be a int64 array of shape \(5,\).* not int64 array of "
     r"shape \(4,\)"),
    ("input channels",
     lambda m: setattr(m.layer("conv1"), "weight", m.layer("conv1").weight[:, :5].copy()),
     r"layer 'conv1' \(conv\): weight has 5 input channels but the input 'pool' has 7"),
    ("mult range",
     lambda m: m.layer("stem").mult.__setitem__(2, 1 << 16),
     r"layer 'stem' \(conv\): mult\[2\] = 65536 is outside \[0, 65535\], the range of "
     r"unsigned 16-bit M"),
    ("shift range",
     lambda m: m.layer("conv1").shift.__setitem__(0, 0),
     r"layer 'conv1' \(conv\): shift\[0\] = 0 is outside \[1, 47\]"),
    ("res_mult range",
     lambda m: m.layer("conv2").res_mult.__setitem__(5, -1),
     r"layer 'conv2' \(conv\): res_mult\[5\] = -1 is outside \[0, 65535\]"),
    ("bias range",
     lambda m: m.layer("conv2").bias.__setitem__(1, 1 << 31),
     r"layer 'conv2' \(conv\): bias\[1\] = 2147483648 is outside \[-2147483648, 2147483647\]"),
    ("residual without Mr",
     lambda m: setattr(m.layer("conv2"), "res_mult", None),
     r"layer 'conv2' \(conv\): res_mult must be given exactly when residual is"),
    ("Mr without residual",
     lambda m: setattr(m.layer("conv1"), "res_mult", np.ones(6, np.int64)),
     r"layer 'conv1' \(conv\): res_mult must be given exactly when residual is \(residual = "
     r"None, res_mult given\)"),
    ("residual shape",
     lambda m: setattr(m.layer("conv2"), "residual", "pool"),
     r"layer 'conv2' \(conv\): residual 'pool' has shape \(7, 5, 5\) but the output 'conv2' "
     r"has shape \(6, 3, 3\)"),
    ("ratio",
     lambda m: m.layer("conv1").precision.__setitem__(
         int(np.flatnonzero(m.layer("conv1").precision == 0)[0]), Precision.HI),
     r"layer 'conv1' \(conv\): 3 of 6 rows are HI but the model ratio 0.25 needs exactly "
     r"ceil\(0.25 \* 6\) = 2"),
    ("relu writes signed",
     lambda m: _retensor(m, "conv1", signed=True),
     r"layer 'conv1' \(conv\): output 'conv1' is signed but relu=True"),
    ("input tensor",
     lambda m: _retensor(m, "input", bits=5),
     r"the model input 'input' must be an unsigned 8-bit tensor \(pixels\), not unsigned "
     r"5-bit"),
    ("duplicate name",
     lambda m: setattr(m.layers[1], "name", "stem"),
     r"layer 'stem' \(maxpool\): the layer name is used twice"),
    ("pool padding",
     lambda m: setattr(m.layer("pool"), "padding", (3, 1, 1, 1)),
     r"layer 'pool' \(maxpool\): padding \(3, 1, 1, 1\) must be smaller than the 3x3 kernel"),
    ("pool format",
     lambda m: _retensor(m, "pool", bits=5),
     r"layer 'pool' \(maxpool\): output 'pool' \(5-bit, signed=False.*must keep the format"),
    ("gap shape",
     lambda m: _retensor(m, "gap", shape=(6, 2, 1)),
     r"layer 'gap' \(gap\): output 'gap' has shape \(6, 2, 1\) but the input \(6, 3, 3\) "
     r"gives \(6, 1, 1\)"),
    ("flatten shape",
     lambda m: _retensor(m, "flat", shape=(3, 2, 1)),
     r"layer 'flat' \(flatten\): output 'flat' has shape \(3, 2, 1\)"),
    ("tensor name",
     lambda m: m.tensors.__setitem__("gap", dataclasses.replace(m.tensors["gap"], name="x")),
     r"tensor 'gap' is declared under another name: TensorSpec.name = 'x'"),
    ("conv output bits",
     lambda m: _retensor(m, "fc", bits=5),
     r"layer 'fc' \(conv\): output 'fc' has 5 bits but conv and FC outputs have the model's "
     r"act_bits = 8 bits"),
    ("tensor bits",
     lambda m: _retensor(m, "fc", bits=6),
     r"tensor 'fc' bits = 6 is not allowed: it must be one of \(4, 5, 8\)"),
    ("tensor scale",
     lambda m: _retensor(m, "fc", scale=float("nan")),
     r"tensor 'fc' scale = nan must be a positive finite number"),
    ("stride",
     lambda m: setattr(m.layer("stem"), "stride", (0, 1)),
     r"layer 'stem' \(conv\): stride \(0, 1\) must be \(sy, sx\) of positive integers"),
    ("model output",
     lambda m: setattr(m, "output", "logits"),
     r"the model output 'logits' is not a declared tensor"),
    ("act bits",
     lambda m: setattr(m, "act_bits", 6),
     r"model act_bits = 6 is not allowed"),
    ("no layers",
     lambda m: setattr(m, "layers", []),
     r"a model needs at least one layer"),
]


@pytest.mark.parametrize("what,mutate,match", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_validate_names_the_problem(model, what, mutate, match):
    mutate(model)
    with pytest.raises(ModelFormatError, match=match):
        model.validate()


def test_validate_weight_outside_row_precision(model):
    layer = model.layer("conv1")
    lo_row = int(np.flatnonzero(layer.precision == Precision.LO)[0])
    layer.weight[lo_row, 3, 1, 2] = -8
    with pytest.raises(ModelFormatError,
                       match=rf"layer 'conv1' \(conv\): weight\[{lo_row}, 3, 1, 2\] = -8 is "
                             rf"outside the range of row {lo_row}'s precision LO \(4-bit\): "
                             rf"\[-7, 7\]"):
        model.validate()
    layer.weight[lo_row, 3, 1, 2] = -7
    hi_row = int(layer.hi_rows[0])
    layer.weight[hi_row, 0, 0, 0] = -128
    with pytest.raises(ModelFormatError, match=rf"weight\[{hi_row}, 0, 0, 0\] = -128 is outside "
                                               r"the range of .* HI \(8-bit\): \[-127, 127\]"):
        model.validate()


def test_validate_against_a_narrower_spec(model):
    model.validate(NumericSpec(acc_bits=40, mult_bits=20))
    with pytest.raises(ModelFormatError, match=r"mult\[\d+\] = \d+ is outside \[0, 255\], the "
                                               r"range of unsigned 8-bit M"):
        model.validate(NumericSpec(mult_bits=8))
    with pytest.raises(ModelFormatError, match=r"the numeric spec has act_bits = 4 but the model "
                                               r"was quantized with act_bits = 8"):
        model.validate(NumericSpec(act_bits=4))


# -- save / load ----------------------------------------------------------------------------

@pytest.mark.parametrize("act_bits", [4, 5, 8])
def test_round_trip_is_exact(rng, tmp_path, act_bits):
    model = build_small(rng, act_bits=act_bits)
    path = tmp_path / "model"  # no suffix: written exactly there
    model.save(path)
    assert path.exists() and not (tmp_path / "model.npz").exists()
    loaded = QModel.load(path)
    assert loaded == model
    assert loaded.spec == model.spec and loaded.meta == model.meta
    for a, b in zip(model.conv_layers, loaded.conv_layers):
        for f in ("weight", "precision", "bias", "mult", "shift", "res_mult", "w_scale"):
            x, y = getattr(a, f), getattr(b, f)
            if x is None:
                assert y is None
            else:
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
    assert [t.scale for t in loaded.tensors.values()] == [t.scale for t in model.tensors.values()]
    image = rng.integers(0, 256, size=(3, 10, 9), dtype=np.uint8)
    a, b = run(model, image), run(loaded, image)
    for name in model.tensors:
        np.testing.assert_array_equal(a[name], b[name])


def test_round_trip_without_optional_parts(model, tmp_path):
    model.spec = None
    model.meta = {}
    for layer in model.conv_layers:
        layer.w_scale = None
    model.save(tmp_path / "m.npz")
    loaded = QModel.load(tmp_path / "m.npz")
    assert loaded == model and loaded.spec is None
    assert loaded.numeric == NumericSpec(act_bits=8)


def test_equality_sees_single_weight_changes(model, tmp_path):
    model.save(tmp_path / "m.npz")
    other = QModel.load(tmp_path / "m.npz")
    other.layer("fc").weight[0, 0, 0, 0] ^= 1
    assert other != model
    other.layer("fc").weight[0, 0, 0, 0] ^= 1
    other.layer("fc").bias = other.layer("fc").bias.astype(np.int32)
    assert other != model  # dtype counts


def _npz_entries(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, entries):
    with open(path, "wb") as f:
        np.savez(f, **entries)


def _meta(entries):
    return json.loads(entries["__meta__"].tobytes().decode())


def _set_meta(entries, meta):
    entries["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    return path


def test_load_truncated_file(saved):
    raw = saved.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30, 100):
        saved.write_bytes(raw[:cut])
        with pytest.raises(ModelFormatError, match=r"m\.npz is not a readable ilmpq model file "
                                                   r"\(\.npz\)"):
            QModel.load(saved)


def test_load_corrupt_payload(saved):
    raw = bytearray(saved.read_bytes())
    # flip a byte inside the stem weights (stored uncompressed): the zip CRC catches it
    pos = raw.index(b"stem.weight.npy") + 200
    raw[pos] ^= 0xFF
    saved.write_bytes(bytes(raw))
    with pytest.raises(ModelFormatError, match=r"is not a readable ilmpq model file.*CRC"):
        QModel.load(saved)


def test_load_other_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    with pytest.raises(ModelFormatError, match=r"notes\.txt is not a readable ilmpq model file"):
        QModel.load(text)
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ModelFormatError, match=r"single \.npy array, not an \.npz archive"):
        QModel.load(npy)
    other = tmp_path / "other.npz"
    _write(other, {"x": np.arange(3)})
    with pytest.raises(ModelFormatError, match=r"other\.npz: no '__meta__' entry; this is not "
                                               r"an ilmpq-qmodel file"):
        QModel.load(other)
    with pytest.raises(FileNotFoundError):
        QModel.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("edit,match", [
    (lambda meta: meta.update(format="onnx"), r"format name is 'onnx', not 'ilmpq-qmodel'"),
    (lambda meta: meta.update(version=FORMAT_VERSION + 1),
     rf"format version {FORMAT_VERSION + 1} is newer than this ilmpq reads \(version "
     rf"{FORMAT_VERSION}\); upgrade ilmpq"),
    (lambda meta: meta.update(version=0), r"format version 0 is not valid"),
    (lambda meta: meta.update(version="1"), r"metadata field 'version' = '1' has the wrong type"),
    (lambda meta: meta.pop("tensors"), r"metadata has no 'tensors' field"),
    (lambda meta: meta["layers"][0].pop("relu"), r"layer 'stem' has no 'relu' field"),
    (lambda meta: meta["layers"][1].update(kind="lppool"),
     r"layer 'pool' has unknown kind 'lppool'"),
    (lambda meta: meta["layers"][1].update(kind="avgpool"),       # a maxpool's fields only
     r"layer 'pool' has no 'ceil_mode' field"),
    (lambda meta: meta["tensors"][0].update(bits=True),
     r"tensor 'input' field 'bits' = True has the wrong type"),
    (lambda meta: meta.update(spec={"act_bits": 7, "acc_bits": 32, "mult_bits": 16,
                                    "shift_bits": 6}),
     r"invalid numeric spec: act_bits must be one of"),
])
def test_load_bad_metadata(saved, edit, match):
    entries = _npz_entries(saved)
    meta = _meta(entries)
    edit(meta)
    _set_meta(entries, meta)
    _write(saved, entries)
    with pytest.raises(ModelFormatError, match=r"m\.npz: " + match):
        QModel.load(saved)


def test_load_meta_not_json(saved):
    entries = _npz_entries(saved)
    entries["__meta__"] = np.frombuffer(b"{not json", np.uint8)
    _write(saved, entries)
    with pytest.raises(ModelFormatError, match=r"'__meta__' is not valid UTF-8 JSON"):
        QModel.load(saved)
    entries["__meta__"] = np.array("text")
    _write(saved, entries)
    with pytest.raises(ModelFormatError, match=r"'__meta__' must be a 1-D uint8 array"):
        QModel.load(saved)


@pytest.mark.parametrize("edit,match", [
    (lambda e: e.pop("conv1.weight"), r"missing array 'conv1\.weight'"),
    (lambda e: e.pop("conv2.res_mult"), r"missing array 'conv2\.res_mult'"),
    (lambda e: e.update({"stem.bias": e["stem.bias"].astype(np.int32)}),
     r"array 'stem\.bias' is int32 with shape \(7,\); it must be int64 with 1 dimension"),
    (lambda e: e.update({"stem.weight": e["stem.weight"].astype(np.int16)}),
     r"array 'stem\.weight' is int16 .* it must be int8 with 4 dimension"),
    (lambda e: e.update({"fc.mult": np.ones(6, np.int64)}),
     r"array 'fc\.mult' has shape \(6,\); it must be \(5,\), one per output channel"),
    (lambda e: e.update({"fc.shift": np.ones((5, 1), np.int64)}),
     r"array 'fc\.shift' is int64 with shape \(5, 1\); it must be int64 with 1 dimension"),
    (lambda e: e.update({"extra": np.zeros(2)}), r"unexpected array 'extra' that no layer uses"),
    (lambda e: e["conv1.weight"].__setitem__((0, 0, 0, 0), -128),
     r"layer 'conv1' \(conv\): weight\[0, 0, 0, 0\] = -128 is outside the range of row 0"),
    (lambda e: e["conv1.shift"].__setitem__(0, 63),
     r"layer 'conv1' \(conv\): shift\[0\] = 63 is outside \[1, 47\]"),
])
def test_load_bad_arrays(saved, edit, match):
    entries = _npz_entries(saved)
    entries = {k: v.copy() for k, v in entries.items()}
    edit(entries)
    _write(saved, entries)
    with pytest.raises(ModelFormatError, match=r"m\.npz: " + match):
        QModel.load(saved)


def test_load_without_validation_still_checks_arrays(saved):
    entries = {k: v.copy() for k, v in _npz_entries(saved).items()}
    entries["conv1.shift"][0] = 63
    _write(saved, entries)
    model = QModel.load(saved, validate=False)
    assert model.layer("conv1").shift[0] == 63


def test_save_validates_and_needs_json_meta(model, tmp_path):
    model.meta = {"when": object()}
    with pytest.raises(ModelFormatError, match=r"model meta cannot be saved as JSON"):
        model.save(tmp_path / "m.npz")
    model.meta = {}
    model.layer("stem").shift[0] = 0
    with pytest.raises(ModelFormatError, match=r"layer 'stem' \(conv\): shift\[0\] = 0"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_file_layout_is_documented(saved):
    """The entries docs/numeric.md describes: __meta__ JSON and <layer>.<array>."""
    entries = _npz_entries(saved)
    meta = _meta(entries)
    assert meta["format"] == FORMAT_NAME and meta["version"] == FORMAT_VERSION
    assert set(meta) >= {"input", "output", "ratio", "act_bits", "spec", "meta", "tensors",
                         "layers"}
    assert {"stem.weight", "stem.precision", "stem.bias", "stem.mult", "stem.shift",
            "stem.w_scale", "conv2.res_mult"} <= set(entries)
    assert "conv1.res_mult" not in entries
    pool = next(d for d in meta["layers"] if d["kind"] == "maxpool")
    assert pool == {"kind": "maxpool", "name": "pool", "input": "stem", "output": "pool",
                    "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}


def test_layer_classes_normalize_sequences():
    layer = MaxPoolLayer("p", "a", "b", [2, 2], [2, 2], [0, 0, 0, 0])
    assert layer.kernel == (2, 2) and layer.padding == (0, 0, 0, 0)
    t = TensorSpec("a", [1, 2, 3], 8, False, 1.0)
    assert t.shape == (1, 2, 3) and t.dtype == np.uint8 and t.range == (0, 255)
    assert TensorSpec("s", (1, 1, 1), 5, True, 1.0).range == (-16, 15)
    assert GlobalAvgPoolLayer("g", "a", "b").kind == "gap"
    assert FlattenLayer("f", "a", "b").kind == "flatten"
