"""QONNX and ONNX QDQ import (golden/qonnx_import.py): the imported integer model against the
model's own integer semantics, executed by onnx.reference (QONNX, with the Quant operator of the
QONNX spec) and onnxruntime (QDQ), layer by layer; the row-split rule; bad models rejected with
errors naming the node."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
from qgraphs import (QdqBuilder, QonnxBuilder, pixel_images, qdq_cnn, qonnx_cnn,
                     row_weights)

from ilmpq.golden import ops, reference
from ilmpq.golden.formats import NumericSpec, Precision
from ilmpq.golden.model import QModel
from ilmpq.golden.onnx_import import OnnxImportError
from ilmpq.golden.qonnx_import import (QuantImportError, compare_with_model, import_quantized,
                                       import_report,
                                       is_quantized_onnx, qonnx_round, reference_evaluator)


@pytest.fixture(scope="module")
def images():
    return pixel_images(np.random.default_rng(7), 24)


def _model_ints(model, qm, images, runner="reference"):
    """Every conv output of ``qm`` as the model's own integers (value / scale), computed by
    executing the original ONNX model with its quantizers."""
    names = qm.meta["onnx_names"]
    outs = [names[l.output] for l in qm.conv_layers]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in outs:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(
                n, onnx.TensorProto.FLOAT, None))
    x = (images * qm.meta["input_scale"]).astype(np.float32)
    if runner == "reference":
        vals = reference_evaluator(m).run(outs, {"x": x})
    else:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        vals = ort.InferenceSession(m.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"]).run(outs, {"x": x})
    return {l.output: np.rint(np.asarray(v, np.float64) / qm.tensors[l.output].scale)
            .astype(np.int64) for l, v in zip(qm.conv_layers, vals)}


# -- QONNX: exact when the contract says so -------------------------------------------------------

@pytest.mark.parametrize("act_bits", [8, 4])
def test_qonnx_exact_model_equals_onnx_reference(images, act_bits):
    """Power-of-two scales, integer biases, HALF_UP output quantizers: bit-exact, every layer,
    through the whole network (residual add, max pool, GAP, FC)."""
    model = qonnx_cnn(0, act_bits=act_bits)
    qm = import_quantized(model, ratio=Fraction(1, 8), images=images)
    rep = import_report(qm)
    assert rep.exact and rep.dialect == "qonnx"
    assert qm.act_bits == act_bits
    assert [lr.bound_lsb for lr in rep.layers] == [0, 0, 0, 0]
    assert [lr.measured_local for lr in rep.layers] == [0, 0, 0, 0]
    assert [lr.measured_net for lr in rep.layers] == [0, 0, 0, 0]
    want = _model_ints(model, qm, images)
    got = reference.run_batch(qm, images)
    for layer in qm.conv_layers:
        np.testing.assert_array_equal(got[layer.output].astype(np.int64),
                                      want[layer.output].reshape(got[layer.output].shape))
        # the outputs are not trivially constant or saturated
        assert len(np.unique(want[layer.output])) > 8
    # kinds of layers imported
    kinds = [l.kind for l in qm.layers]
    assert kinds == ["conv", "maxpool", "conv", "conv", "gap", "flatten", "conv"]
    assert qm.layer("conv2").residual == qm.layer("conv1").output
    assert qm.layer("fc").is_fc()


def test_qonnx_weights_kept_not_requantized(images):
    """The imported integers are the model's own: per row, 4-bit rows in [-7, 7], the declared
    8-bit row on an 8-bit lane, row scales the quantizer's."""
    model = qonnx_cnn(3)
    qm = import_quantized(model, ratio="1/8")
    conv0 = qm.layer("conv0")
    q_nodes = [n for n in model.graph.node if n.op_type == "Quant"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    wnode = next(n for n in q_nodes if n.output[0] in
                 [x.input[1] for x in model.graph.node if x.name == "conv0"])
    w = inits[wnode.input[0]].astype(np.float64)
    s = inits[wnode.input[1]].astype(np.float64)
    np.testing.assert_array_equal(conv0.weight.astype(np.int64), np.rint(w / s).astype(np.int64))
    np.testing.assert_array_equal(conv0.w_scale, s.reshape(-1))
    assert list(conv0.hi_rows) == [2]
    assert int(np.abs(conv0.weight[conv0.precision == Precision.LO]).max()) <= 7


def test_qonnx_round_and_float_scales_within_bound(images):
    """ROUND (half even) output quantizers and arbitrary float scales: not exact, and the
    measured deviation never exceeds the stated bound."""
    for kw in (dict(rounding="ROUND"), dict(pow2=False)):
        qm = import_quantized(qonnx_cnn(1, **kw), ratio="1/8", images=images)
        rep = import_report(qm)
        assert not rep.exact
        for lr in rep.layers:
            assert lr.bound_lsb >= 1
            assert lr.measured_local <= lr.bound_lsb, lr
            assert lr.reasons


def test_qonnx_round_mode_differs_only_at_ties(images):
    """With power-of-two scales and ROUND, ilmpq differs from the model exactly where the
    model's value is a tie (x.5): half even vs ilmpq's half up."""
    model = qonnx_cnn(2, rounding="ROUND")
    qm = import_quantized(model, ratio="1/8")
    want = _model_ints(model, qm, images)
    spec = qm.numeric
    tensors = reference.run_batch(qm, images)
    n_ties = 0
    for layer in qm.conv_layers:
        x_model = images if layer.input == qm.input else None
        if x_model is None:
            continue  # first layer only: its input is the same for both
        for i in range(len(images)):
            acc = ops.conv2d_acc(images[i], layer.weight, layer.bias, stride=layer.stride,
                                 padding=layer.padding, spec=spec, precision=layer.precision,
                                 in_bits=8)
            sh = layer.shift[:, None, None]
            t = acc * layer.mult[:, None, None]
            tie = (t % (1 << sh)) == (1 << (sh - 1))
            got = tensors[layer.output][i].astype(np.int64)
            diff = got != want[layer.output][i]
            assert not np.any(diff & ~tie)
            n_ties += int(tie.sum())
    assert n_ties > 0


def test_qonnx_intermediate_quantizer_reported(images):
    """A quantizer between a conv and its residual Add (Brevitas' usual export) rounds twice in
    the model; ilmpq fuses the add: reported as absorbed, measured, not exact."""
    qm = import_quantized(qonnx_cnn(0, intermediate=True), ratio="1/8", images=images)
    lr = next(x for x in import_report(qm).layers if x.name == "conv2")
    assert lr.intermediate == 1 and not lr.exact
    assert any("conv2_quant" in r for r in lr.reasons)


def test_float_output_gets_scale_from_images(images):
    model = qonnx_cnn(0, out_quant=False)
    with pytest.raises(QuantImportError, match=r"node 'fc' .* not quantized .*give images"):
        import_quantized(model, ratio="1/8")
    qm = import_quantized(model, ratio="1/8", images=images)
    fc = qm.tensors[qm.layer("fc").output]
    assert fc.signed and fc.bits == 8
    assert import_report(qm).output_agreement >= 0.9


def test_save_load_roundtrip(tmp_path, images):
    qm = import_quantized(qonnx_cnn(0), ratio="1/8", images=images)
    p = tmp_path / "m.npz"
    qm.save(p)
    q2 = QModel.load(p)
    assert import_report(q2).to_dict() == import_report(qm).to_dict()
    np.testing.assert_array_equal(reference.predict(q2, images), reference.predict(qm, images))


def test_detection():
    assert is_quantized_onnx(qonnx_cnn(0))
    assert is_quantized_onnx(qdq_cnn(0))
    from ilmpq.golden.data import default_model_path
    assert not is_quantized_onnx(default_model_path())


def test_qonnx_rounding_modes():
    x = np.array([5.5, 2.5, 1.6, 1.1, 1.0, -1.0, -1.1, -1.6, -2.5, -5.5])
    table = {"ROUND": [6, 2, 2, 1, 1, -1, -1, -2, -2, -6],
             "CEIL": [6, 3, 2, 2, 1, -1, -1, -1, -2, -5],
             "FLOOR": [5, 2, 1, 1, 1, -1, -2, -2, -3, -6],
             "UP": [6, 3, 2, 2, 1, -1, -2, -2, -3, -6],
             "DOWN": [5, 2, 1, 1, 1, -1, -1, -1, -2, -5],
             "HALF_UP": [6, 3, 2, 1, 1, -1, -1, -2, -2, -5],
             "HALF_DOWN": [5, 2, 2, 1, 1, -1, -1, -2, -3, -6]}
    for mode, want in table.items():
        np.testing.assert_array_equal(qonnx_round(x, mode), want, err_msg=mode)


# -- QDQ against onnxruntime ---------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(pow2=True), dict(int4_first=True)])
def test_qdq_against_onnxruntime(images, kw):
    pytest.importorskip("onnxruntime")
    model = qdq_cnn(0, **kw)
    qm = import_quantized(model, ratio="1/8", images=images, runner="onnxruntime")
    rep = import_report(qm)
    assert rep.dialect == "qdq" and rep.runner == "onnxruntime"
    for lr in rep.layers:
        assert lr.measured_local <= lr.bound_lsb
        assert lr.rounding == "ROUND"  # QuantizeLinear rounds half to even
    assert rep.output_agreement >= 0.9
    if kw.get("int4_first"):
        lr = rep.layers[0]
        assert lr.weight_bits == [4] and lr.hi_rows == 1 and "run on 8-bit lanes" in lr.reasons[0]
    # layer by layer: where ilmpq differs from onnxruntime, the model's value is a tie
    if kw.get("pow2"):
        want = _model_ints(model, qm, images, runner="onnxruntime")
        layer = qm.conv_layers[0]
        got = reference.run_batch(qm, images)[layer.output].astype(np.int64)
        for i in range(len(images)):
            acc = ops.conv2d_acc(images[i], layer.weight, layer.bias, stride=layer.stride,
                                 padding=layer.padding, spec=qm.numeric,
                                 precision=layer.precision, in_bits=8)
            sh = layer.shift[:, None, None]
            tie = ((acc * layer.mult[:, None, None]) % (1 << sh)) == (1 << (sh - 1))
            assert not np.any((got[i] != want[layer.output][i]) & ~tie)


def test_qdq_onnx_reference_and_onnxruntime_agree(images):
    pytest.importorskip("onnxruntime")
    model = qdq_cnn(1)
    qm = import_quantized(model, ratio="1/8")
    a = _model_ints(model, qm, images, "reference")
    b = _model_ints(model, qm, images, "onnxruntime")
    for k in a:
        assert np.abs(a[k] - b[k]).max() <= 1  # float32 conv order only


def test_qlinearconv(images):
    """QLinearConv (the operator form of a quantized conv) is read like its QDQ equivalent."""
    rng = np.random.default_rng(5)
    b = QdqBuilder()
    s = b.init(np.float32(1.0), "s")
    z = b.init(np.uint8(0), "z")
    xq = b.node("QuantizeLinear", ["x", s, z], name="in_q")
    w, _ = row_weights(rng, 8, 1, 3, [4])
    ws = (2.0 ** -rng.integers(5, 8, 8)).astype(np.float32)
    ys, yz = b.init(np.float32(0.5), "ys"), b.init(np.uint8(0), "yz")
    yq = b.node("QLinearConv", [xq, s, z, b.init(w.astype(np.int8), "w"), b.init(ws, "ws"),
                                b.init(np.int8(0), "wz"), ys, yz,
                                b.init(rng.integers(-300, 300, 8).astype(np.int32), "b")],
                name="qconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = b.node("DequantizeLinear", [yq, ys, yz], name="out_dq")
    model = b.model(y, opset=21, out_shape=(None, 8, 8, 8))
    qm = import_quantized(model, ratio="1/8", images=images, runner="reference")
    rep = import_report(qm)
    assert qm.layers[0].relu  # uint8 output: clamps at 0
    assert rep.layers[0].measured_local <= rep.layers[0].bound_lsb
    np.testing.assert_array_equal(qm.layers[0].weight, w.astype(np.int8))


# -- the row split ---------------------------------------------------------------------------------

def test_row_split_padded_when_share_smaller(images):
    """A model with fewer 8-bit rows than ceil(R*M): 4-bit rows run on the spare 8-bit lanes."""
    qm = import_quantized(qonnx_cnn(0), ratio="1/4", images=images)
    rep = import_report(qm)
    for lr in rep.layers:
        assert lr.hi_rows == -(-lr.rows // 4)
        assert lr.exact  # promotion is exact
        assert any("run on 8-bit lanes" in r for r in lr.reasons)
    assert all(lr.measured_net == 0 for lr in rep.layers)


def test_row_split_rejected_when_share_larger():
    """More rows that really need 8 bits than the share: an error naming the layer, the share
    found and the configuration's share."""
    with pytest.raises(QuantImportError) as e:
        import_quantized(qonnx_cnn(0), ratio="1/16")
    msg = str(e.value)
    assert "node 'fc'" in msg or "node 'conv0'" in msg
    assert "rows need 8 bits" in msg and "R = 1/16" in msg
    with pytest.raises(QuantImportError, match=r"node 'fc' .* 2 of 10 rows need 8 bits \(share "
                                               r"1/5\), but the configuration's share R = 1/10 "
                                               r"allows ceil\(R\*M\) = 1"):
        import_quantized(qonnx_cnn(0), ratio="1/10")


def test_declared_8bit_rows_that_fit_4_bits_are_demoted():
    """All rows declared 8-bit but most integers in [-7, 7]: they run on 4-bit lanes."""
    qm = import_quantized(qdq_cnn(0), ratio="1/8")
    rep = import_report(qm)
    assert rep.layers[0].declared_hi == 8 and rep.layers[0].hi_rows == 1
    assert any("run on 4-bit lanes" in r for r in rep.layers[0].reasons)


# -- bad models -----------------------------------------------------------------------------------

def _tiny_qonnx(*, w_bits=4, w_zp=0.0, act_signed=False, act_bits=8, act_zp=0.0, out_scale=0.5,
                narrow=True, w_override=None, trunc=False, bias_scale=None):
    """input Quant -> conv 3x3 1->4 -> Relu -> Quant -> conv 3x3 4->4 -> Quant (signed)."""
    rng = np.random.default_rng(0)
    b = QonnxBuilder()
    x = b.quant("x", 1.0, 8, signed=False, name="in_quant")
    w = rng.integers(-7, 8, (4, 1, 3, 3)) if w_override is None else w_override
    wf = b.const(w * 2.0 ** -6, "w")
    wq = b.quant(wf, 2.0 ** -6, w_bits, signed=True, narrow=narrow, zeropt=w_zp,
                 name="w0_quant")
    t = b.node("Conv", [x, wq], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.node("Relu", [t])
    t = b.quant(t, 0.25, act_bits, signed=act_signed, zeropt=act_zp, name="act0")
    if trunc:
        t = b.node("Trunc", [t, b.const(0.25), b.const(0.0), b.const(8), b.const(4)],
                   name="trunc0")
        b.nodes[-1].domain = b.domain
    w1 = rng.integers(-7, 8, (4, 4, 3, 3))
    wq1 = b.quant(b.const(w1 * 2.0 ** -6, "w"), 2.0 ** -6, 4, signed=True, narrow=True,
                  name="w1_quant")
    t = b.node("Conv", [t, wq1], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.quant(t, out_scale, act_bits, signed=True, name="out_quant")
    return b.model(t, out_shape=(None, 4, 8, 8))


def test_tiny_model_imports():
    qm = import_quantized(_tiny_qonnx(), ratio="1/4")
    assert import_report(qm).exact


@pytest.mark.parametrize("kw, pattern", [
    (dict(w_bits=16), r"node 'conv0' .*'w0_quant' gives row 0 16 bits; the hardware has "
                      r"4-bit and 8-bit rows only"),
    (dict(w_zp=1.0), r"node 'w0_quant' \(Quant\): zero point \[1.0\] is not allowed"),
    (dict(act_zp=3.0), r"node 'act0' \(Quant\): zero point \[3.0\] is not allowed"),
    (dict(act_signed=True), r"node 'act0': a signed quantizer on the output of a ReLU"),
    (dict(act_bits=3), r"node 'act0': activations of 3 bits are not supported .* \(4, 5, 8\)"),
    (dict(out_scale=1e-9), r"node 'conv1' .* the scales cannot be represented"),
    (dict(trunc=True), r"node 'trunc0' \(Trunc\): Trunc .* is not supported"),
    (dict(w_bits=8, narrow=False, w_override=np.full((4, 1, 3, 3), -128)),
     r"node 'conv0' .* produces -128 in row 0; .* narrow=1"),
])
def test_bad_qonnx_rejected_naming_the_node(kw, pattern):
    with pytest.raises(QuantImportError, match=pattern):
        import_quantized(_tiny_qonnx(**kw), ratio="1/4")


def test_signed_activation_into_conv_rejected():
    """A signed tensor (no ReLU) feeding a conv."""
    rng = np.random.default_rng(0)
    b = QonnxBuilder()
    x = b.quant("x", 1.0, 8, signed=False)
    wq = b.quant(b.const(rng.integers(-7, 8, (4, 1, 3, 3)) / 64.0), 1 / 64, 4, signed=True,
                 narrow=True)
    t = b.node("Conv", [x, wq], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.quant(t, 0.25, 8, signed=True, name="act0_signed")
    wq1 = b.quant(b.const(rng.integers(-7, 8, (4, 4, 3, 3)) / 64.0), 1 / 64, 4, signed=True,
                  narrow=True)
    t = b.node("Conv", [t, wq1], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.quant(t, 0.5, 8, signed=True)
    with pytest.raises(QuantImportError, match=r"node 'conv1' .* reads the signed tensor .*"
                                               r"act0_signed.* must be unsigned"):
        import_quantized(b.model(t, out_shape=(None, 4, 8, 8)), ratio="1/4")


def test_unquantized_weights_and_float_model_rejected():
    from ilmpq.golden.data import default_model_path
    with pytest.raises(QuantImportError, match="no quantizers .* 'ilmpq quantize'"):
        import_quantized(default_model_path(), ratio="1/8")
    b = QonnxBuilder()
    x = b.quant("x", 1.0, 8, signed=False)
    t = b.node("Conv", [x, b.const(np.ones((4, 1, 3, 3)))], name="convf", kernel_shape=[3, 3])
    t = b.quant(t, 0.5, 8, signed=True)
    with pytest.raises(QuantImportError, match=r"node 'convf' .* weights are not quantized"):
        import_quantized(b.model(t, out_shape=(None, 4, 6, 6)), ratio="1/4")


def test_bad_qdq_rejected_naming_the_node():
    # activation zero point != 0
    b = QdqBuilder()
    x = b.qdq("x", 1.0, name="in")
    w = np.ones((4, 1, 3, 3), np.int64)
    t = b.conv(x, 1.0, w, np.full(4, 0.01), name="c0")
    t = b.qdq(t, 0.1, zp=128, name="act")
    with pytest.raises(QuantImportError, match=r"node 'act_q' \(QuantizeLinear\): .* zero point "
                                               r"128 is not allowed"):
        import_quantized(b.model(t, out_shape=(None, 4, 8, 8)), ratio="1/4")
    # uint8 weights
    b = QdqBuilder()
    x = b.qdq("x", 1.0, name="in")
    wq = b.init(np.ones((4, 1, 3, 3), np.uint8), "w")
    wdq = b.node("DequantizeLinear", [wq, b.init(np.float32(0.01), "s")], name="w_dq")
    t = b.node("Conv", [x, wdq], name="c0", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.qdq(t, 0.1, name="act")
    with pytest.raises(QuantImportError, match=r"node 'c0' .* unsigned weights .* 'w_dq'"):
        import_quantized(b.model(t, out_shape=(None, 4, 8, 8)), ratio="1/4")


def test_spec_widths_respected():
    """The act_bits of the target is enforced when given."""
    with pytest.raises(QuantImportError, match=r"activation quantizer of 8 bits, but the target "
                                               r"has act_bits = 4"):
        import_quantized(qonnx_cnn(0), ratio="1/8", act_bits=4,
                         spec=NumericSpec(act_bits=4))


# -- command line --------------------------------------------------------------------------------

def test_cli_import_and_quantize_detects_quantized(tmp_path, capsys):
    from ilmpq.firmware.cli import main
    src = tmp_path / "q.onnx"
    onnx.save(qonnx_cnn(0), src)
    codes = tmp_path / "codes.npy"
    np.save(codes, pixel_images(np.random.default_rng(3), 8))
    out = tmp_path / "m.npz"
    assert main(["import", str(src), "-o", str(out), "--ratio", "1/8", "--images",
                 str(codes)]) == 0
    text = capsys.readouterr().out
    assert "import (qonnx)" in text and "contract: exact" in text
    assert "measured against onnx.reference on 8 images" in text
    qm = QModel.load(out)
    assert import_report(qm).exact
    # ilmpq quantize on a quantized model imports it (never re-quantizes)
    out2 = tmp_path / "m2.npz"
    assert main(["quantize", str(src), "-o", str(out2), "--ratio", "1/8"]) == 0
    assert "holds quantizers" in capsys.readouterr().out
    q2 = QModel.load(out2)
    for a, b in zip(q2.conv_layers, qm.conv_layers):
        np.testing.assert_array_equal(a.weight, b.weight)
    # errors are one line
    bad = tmp_path / "bad.onnx"
    onnx.save(qonnx_cnn(0), bad)
    assert main(["import", str(bad), "-o", str(tmp_path / "x.npz"), "--ratio", "1/16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "rows need 8 bits" in err


def test_compare_with_model_on_other_images(images):
    model = qonnx_cnn(1, rounding="ROUND")
    qm = import_quantized(model, ratio="1/8")
    assert import_report(qm).runner is None
    rep = compare_with_model(qm, model, images[:6])
    assert rep.n_images == 6 and rep.runner == "onnx.reference"
    for lr in rep.layers:
        assert lr.measured_local is not None and lr.measured_local <= lr.bound_lsb


@pytest.mark.parametrize("domain", ["finn.custom_op.general", "onnx.brevitas"])
def test_other_qonnx_domains(images, domain):
    qm = import_quantized(qonnx_cnn(0, domain=domain), ratio="1/8", images=images[:4])
    assert import_report(qm).exact
    assert all(lr.measured_net == 0 for lr in import_report(qm).layers)


def test_batchnorm_after_quantized_conv(images):
    """A BatchNormalization after a quantized conv moves into M; a negative factor negates the
    row (exact on the symmetric grid); the integers stay the model's."""
    rng = np.random.default_rng(4)
    b = QonnxBuilder()
    x = b.quant("x", 1.0, 8, signed=False, name="in_quant")
    w, bits = row_weights(rng, 4, 1, 3, [1])
    sw = 2.0 ** -rng.integers(6, 9, 4)
    t = b.conv(x, 1.0, w, sw, bits, name="conv0")
    gamma = np.array([1.5, -0.75, 0.5, -2.0])
    bn = [b.const(v, "bn") for v in (gamma, rng.normal(0, 0.3, 4), rng.normal(0, 0.2, 4),
                                     rng.uniform(0.5, 2, 4))]
    t = b.node("BatchNormalization", [t] + bn, name="bn0", epsilon=1e-5)
    t = b.node("Relu", [t])
    t = b.quant(t, 0.0625, 8, signed=False, name="act0", rounding="ROUND")
    # opset 15: onnx.reference's BatchNormalization for opsets 9-14 divides var by the default
    # momentum 0.9 (it disagrees with onnxruntime there); version 15 is right
    model = b.model(t, out_shape=(None, 4, 8, 8), opset=15)
    qm = import_quantized(model, ratio="1/4", images=images)
    layer = qm.layer("conv0")
    np.testing.assert_array_equal(layer.weight.astype(np.int64),
                                  w * np.sign(gamma)[:, None, None, None])
    lr = import_report(qm).layers[0]
    assert lr.measured_local <= lr.bound_lsb and lr.measured_local_frac < 0.05


def test_pooling_requantized_to_another_scale_rejected():
    b = QonnxBuilder()
    x = b.quant("x", 1.0, 8, signed=False)
    wq = b.quant(b.const(np.ones((4, 1, 3, 3)) / 64.0), 1 / 64, 4, signed=True, narrow=True)
    t = b.node("Conv", [x, wq], name="conv0", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    t = b.node("Relu", [t])
    t = b.quant(t, 0.25, 8, signed=False, name="act0")
    t = b.node("MaxPool", [t], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    t = b.quant(t, 0.5, 8, signed=False, name="pool_quant")
    with pytest.raises(QuantImportError, match=r"node 'pool_quant' re-quantizes the output of "
                                               r"maxpool 'pool' to scale 0.5"):
        import_quantized(b.model(t, out_shape=(None, 4, 4, 4)), ratio="1/4")


def test_qlinearmatmul(images):
    """QLinearMatMul after a flatten: an FC layer with per-column weight scales."""
    rng = np.random.default_rng(6)
    b = QdqBuilder(shape=(1, 4, 4))
    x = b.qdq("x", 1.0, name="in")
    f = b.node("Flatten", [x], axis=1)
    s1, z1 = b.init(np.float32(1.0), "s"), b.init(np.uint8(0), "z")
    fq = b.node("QuantizeLinear", [f, s1, z1], name="flat_q")
    w, _ = row_weights(rng, 8, 16, 1, [3, 5])
    wt = w[:, :, 0, 0].T.astype(np.int8).copy()  # (K, M)
    ws = (2.0 ** -rng.integers(8, 11, 8)).astype(np.float32)
    ys, yz = b.init(np.float32(0.25), "ys"), b.init(np.int8(0), "yz")
    yq = b.node("QLinearMatMul", [fq, s1, z1, b.init(wt, "w"), b.init(ws, "ws"),
                                  b.init(np.int8(0), "wz"), ys, yz], name="qfc")
    y = b.node("DequantizeLinear", [yq, ys, yz], name="out_dq")
    model = b.model(y, opset=21, out_shape=(None, 8))
    imgs = pixel_images(np.random.default_rng(2), 8, (1, 4, 4))
    qm = import_quantized(model, ratio="1/4", images=imgs, runner="reference")
    fc = qm.layer("qfc")
    assert fc.is_fc() and not fc.relu and qm.tensors[fc.output].signed
    np.testing.assert_array_equal(fc.weight[:, :, 0, 0], w[:, :, 0, 0].astype(np.int8))
    lr = import_report(qm).layers[0]
    assert lr.measured_local <= lr.bound_lsb and lr.hi_rows == 2


def test_corrupt_model_is_one_error(tmp_path):
    raw = qonnx_cnn(0).SerializeToString()
    for cut in (len(raw) // 3, len(raw) - 7):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(raw[:cut])
        with pytest.raises(OnnxImportError, match="not a valid ONNX model"):
            import_quantized(p, ratio="1/8")
