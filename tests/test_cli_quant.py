"""``ilmpq quantize`` and ``ilmpq run`` end to end (in process, through the CLI entry point)."""

import json
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ilmpq.firmware.cli import main
from ilmpq.golden.formats import Precision
from ilmpq.golden.model import QModel, hi_row_count
from ilmpq.hdl.config import get_config


@pytest.fixture
def user_model(tmp_path, rng):
    """A small float ONNX CNN (3x10x10 input, normalization in its metadata) and calibration
    pixels as a float .npy."""
    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    inits = [init("w1", rng.normal(0, 0.3, (12, 3, 3, 3))), init("b1", rng.normal(0, 0.1, 12)),
             init("w2", rng.normal(0, 0.2, (9, 12, 3, 3))),
             init("fc", rng.normal(0, 0.3, (9, 5))), init("fcb", rng.normal(0, 0.1, 5))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fcb"], ["y"], name="fc_bias"),
    ]
    graph = helper.make_graph(
        nodes, "user", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"ilmpq.input_mean": "[0, 0, 0]",
                                   "ilmpq.input_std": "[64, 64, 64]"})
    path = tmp_path / "user.onnx"
    onnx.save(model, path)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.uniform(0, 255, (16, 3, 10, 10)))
    return path, calib


def test_quantize_user_model(tmp_path, user_model, capsys):
    path, calib = user_model
    out = tmp_path / "q.npz"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out),
                 "--ratio", "1/8", "--act-bits", "5", "--rule", "variance"]) == 0
    text = capsys.readouterr().out
    assert "R = 1/8 (--ratio), A5" in text and "layer losing the most:" in text
    q = QModel.load(out)
    assert q.act_bits == 5 and q.ratio == 0.125 and q.meta["rule"] == "variance"
    assert [layer.name for layer in q.conv_layers] == ["conv1", "conv2", "fc"]
    for layer in q.conv_layers:
        assert int(np.sum(layer.precision == Precision.HI)) == hi_row_count(
            Fraction(1, 8), layer.out_channels)
        assert f"{layer.name} " in text
    assert q.meta["input_std"] == [64.0, 64.0, 64.0]


def test_quantize_default_model_with_config(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["quantize", "default", "-o", str(out), "--config", "z020"]) == 0
    text = capsys.readouterr().out
    assert "digits test accuracy: float" in text
    q = QModel.load(out)
    cfg = get_config("z020")
    assert q.spec == cfg.numeric and q.ratio == float(cfg.ratio)
    q.validate(cfg.numeric)
    # the default target is the tiny preset
    out2 = tmp_path / "t.npz"
    assert main(["quantize", "default", "-o", str(out2), "--act-bits", "4"]) == 0
    q2 = QModel.load(out2)
    assert q2.ratio == float(get_config("tiny").ratio) and q2.act_bits == 4


@pytest.mark.parametrize("argv_fn, message", [
    (lambda p, c, o: ["quantize", p, "-o", o], "--calib SAMPLES.npy is required for a user model"),
    (lambda p, c, o: ["quantize", p, "--calib", c, "-o", o, "--ratio", "3/2"],
     "ratio = 3/2 is not allowed"),
    (lambda p, c, o: ["quantize", p, "--calib", p, "-o", o],
     "not a readable .npy array of calibration images"),
    (lambda p, c, o: ["quantize", c, "--calib", c, "-o", o], "not a valid ONNX model"),
    (lambda p, c, o: ["quantize", p, "--calib", c + ".missing", "-o", o],
     "No such file or directory"),
    (lambda p, c, o: ["quantize", p, "--calib", c, "-o", o, "--act-clip", "p99"],
     "--act-clip 'p99' is not allowed"),
    (lambda p, c, o: ["quantize", p, "--calib", c, "-o", o, "--input-std", "1,2"],
     "one value per input channel"),
])
def test_quantize_errors(tmp_path, user_model, capsys, argv_fn, message):
    path, calib = user_model
    out = tmp_path / "o.npz"
    assert main(argv_fn(str(path), str(calib), str(out))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not out.exists()


def test_ratio_and_config_are_exclusive(tmp_path, user_model, capsys):
    path, calib = user_model
    with pytest.raises(SystemExit) as ei:
        main(["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "o.npz"),
              "--ratio", "1/8", "--config", "tiny"])
    assert ei.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_quantize_rejects_out_of_range_calibration(tmp_path, user_model, capsys):
    path, _ = user_model
    bad = tmp_path / "normalized.npy"
    np.save(bad, np.random.default_rng(0).normal(0, 1, (4, 3, 10, 10)))
    assert main(["quantize", str(path), "--calib", str(bad), "-o", str(tmp_path / "o.npz")]) == 2
    assert "must be raw pixels in [0, 255]" in capsys.readouterr().err


def test_run(tmp_path, capsys):
    js = tmp_path / "run.json"
    # the full path on a few test images (the whole split is what `ilmpq run` does by default)
    assert main(["run", "--json", str(js), "--images", "3"]) == 0
    text = capsys.readouterr().out
    assert "every layer of every image bit-exact with golden" in text
    rtl = json.loads(js.read_text())["rtl"]
    assert rtl["images"] == 3 and rtl["mismatches"] == 0 and rtl["predictions_equal"]
    assert rtl["cycles_per_image"] > 0 and 0 < rtl["pe_utilization"] <= 1
    for variant in ("float", "all-8-bit", "all-4-bit", "ILMPQ"):
        assert f"\n{variant} " in text
    assert "layer losing the most:" in text
    data = json.loads(js.read_text())
    cfg = get_config("tiny")
    assert data["ratio"] == str(cfg.ratio) and data["config"] == "tiny"
    acc = data["accuracy"]
    assert set(acc) == {"float", "all-8-bit", "all-4-bit", "ILMPQ"}
    assert acc["float"] > 0.97 and acc["ILMPQ"] >= acc["float"] - 0.01
    n = data["n_test"]
    assert f"{int(round(acc['ILMPQ'] * n))}/{n}" in text
    rep = data["report"]
    assert rep["ratio"] == str(cfg.ratio)
    for lr in rep["layers"]:
        assert lr["hi_rows"] == hi_row_count(cfg.ratio, lr["rows"])


def test_quantize_symbolic_input_size_with_input_shape(tmp_path, user_model, capsys):
    """A model whose H and W are symbolic is refused with an error naming --input-shape, and
    quantizes with it; the canonicalization is reported."""
    path, calib = user_model
    model = onnx.load(path)
    for i in (2, 3):
        d = model.graph.input[0].type.tensor_type.shape.dim[i]
        d.Clear()
        d.dim_param = "H" if i == 2 else "W"
    dyn = tmp_path / "dyn.onnx"
    onnx.save(model, dyn)
    out = tmp_path / "q.npz"
    assert main(["quantize", str(dyn), "--calib", str(calib), "-o", str(out)]) == 2
    assert "--input-shape C,H,W" in capsys.readouterr().err
    assert not out.exists()
    assert main(["quantize", str(dyn), "--calib", str(calib), "-o", str(out),
                 "--input-shape", "3,10,10"]) == 0
    text = capsys.readouterr().out
    assert "canonicalize: input 'x': shape ('N', 3, 'H', 'W') -> (1, 3, 10, 10)" in text
    ref = tmp_path / "ref.npz"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(ref)]) == 0
    a, b = QModel.load(out), QModel.load(ref)
    for la, lb in zip(a.conv_layers, b.conv_layers):
        np.testing.assert_array_equal(la.weight, lb.weight)
        np.testing.assert_array_equal(la.bias, lb.bias)
