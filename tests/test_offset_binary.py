"""Signed activations on the accelerator (issue 16): a signed tensor is stored offset-binary
(``x + 2**(bits-1)``) whenever every reader can read it so, also when a reader pads it (the
COMPUTE's ``pad_ob``: padding reads the stored zero ``2**(bits-1)``), reads it as a residual
(the STORE's ``res_offset``: the byte decoded as ``u - 2**(bits-1)``) or pools it (max and
average of ``x + k`` are those of ``x`` plus ``k``: the output stays offset-binary). Small ONNX
graphs built with onnx.helper, quantized and compiled for the tiny preset: every layer on the
accelerator, every stored tensor bit-exact with golden on the ISA simulator and on the Amaranth
RTL (random AXI stalls and latencies)."""

import numpy as np

from e2e_util import assert_layers_equal, run_e2e
from onnx_graphs import G, compare_with_reference
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.model import (AvgPoolLayer, ConvLayer, FlattenLayer, GlobalAvgPoolLayer,
                                 MaxPoolLayer)
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

TINY = get_config("tiny")
SIZE = 6


def _quantize(rng, model, size=SIZE):
    """Pixels normalized to about [-2, 2] (folded into the first conv), so that the signed
    tensors take negative and positive levels."""
    compare_with_reference(model, rng.uniform(-2, 2, (2, 3, size, size)))
    fm = load_onnx(model, input_mean=[128.0] * 3, input_std=[64.0] * 3)
    return quantize(fm, rng.integers(0, 256, (6, 3, size, size)), ratio=TINY.ratio,
                    spec=TINY.numeric, report=False)


def _graph(rng, size=4):
    """MobileNet-V2's pattern, then pooling: a linear 1x1 projection ``b`` (signed) read by the
    next block's expand conv and as that block's residual; the block output ``c = project(...)
    + b`` (signed) read by a padded 3x3 conv and again as a residual; the next block output
    ``d`` by max pooling with padding; average pooling with padding counted (the padding reads
    the stored zero), a padded linear conv, global average pooling flattened into an FC (the
    output, signed: two's complement)."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    b = g.conv(a, 8, 4, 1)
    e1 = g.node("Relu", [g.conv(b, 4, 8, 1)])
    c = g.node("Add", [g.conv(e1, 8, 4, 1), b])
    e2 = g.node("Relu", [g.conv(c, 4, 8, 3, pads=[1, 1, 1, 1])])
    d = g.node("Add", [g.conv(e2, 8, 4, 1), c])
    m = g.node("MaxPool", [d], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    av = g.node("AveragePool", [m], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=1)
    q = g.conv(av, 4, 4, 3, pads=[1, 1, 1, 1])
    fl = g.node("Flatten", [g.node("GlobalAveragePool", [q])])
    out = g.node("Gemm", [fl, g.init(rng.normal(0, 0.5, (5, 4))), g.init(rng.normal(0, 0.1, 5))],
                 transB=1)
    return g.model(out, ["N", 5])


def _images(rng, size=SIZE):
    return [rng.integers(0, 256, (3, size, size)), np.full((3, size, size), 255),
            np.zeros((3, size, size), np.int64)]


def _instrs(comp):
    ib = INSTR_BITS // 8
    for s in comp.steps:
        for k in range(getattr(s, "n_instr", 0)):
            off = s.prog_addr - comp.base + k * ib
            yield decode(bytes(comp.image[off:off + ib]))


def _check_isa(rng, qm, comp, size=SIZE):
    """Every stored tensor bit-exact with golden on the ISA simulator; the signed tensors take
    negative and positive levels."""
    signed = [t for t, p in comp.tensors.items() if p.offset]
    lo, hi = {t: 0 for t in signed}, {t: 0 for t in signed}
    for img in _images(rng, size) + [rng.integers(0, 256, (3, size, size))]:
        want = reference.run(qm, img, spec=TINY.numeric)
        assert_layers_equal(qm, want, run_compiled(comp, img), comp.unstored)
        for t in signed:
            lo[t], hi[t] = min(lo[t], want[t].min()), max(hi[t], want[t].max())
    assert all(lo[t] < 0 < hi[t] for t in signed), (lo, hi)


def test_residual_padded_and_pooling_readers_of_signed_tensors_on_the_accelerator(rng):
    """Every layer on the accelerator, every signed tensor but the output offset-binary, the
    COMPUTE / STORE flags where they belong; bit-exact with golden on the ISA simulator (random,
    all-255 and all-0 images) and on the Amaranth RTL with random AXI stalls."""
    qm = _quantize(rng, _graph(rng), 4)
    convs = [la for la in qm.layers if isinstance(la, ConvLayer)]
    res = [la for la in convs if la.residual is not None]
    assert len(convs) == 8 and len(res) == 2
    b, c, d = convs[1].output, res[0].output, res[1].output
    assert res[0].residual == b and res[1].residual == c
    kept = [la.output for la in qm.layers
            if isinstance(la, (MaxPoolLayer, AvgPoolLayer, GlobalAvgPoolLayer, FlattenLayer))]
    assert len(kept) == 4
    signed = [b, c, d, convs[6].output] + kept
    assert all(qm.tensors[t].signed for t in signed)
    comp = compile_model(qm, TINY)
    rep = {r.name: r for r in comp.layers}
    assert all(rep[la.name].where == ("free" if isinstance(la, FlattenLayer) else "accel")
               for la in qm.layers), comp.report()
    # every signed tensor offset-binary: read as (padded) conv inputs, as residuals, pooled,
    # flattened; the network output stays two's complement
    assert [comp.tensors[t].offset for t in signed] == [128] * len(signed)
    assert comp.tensors[qm.output].offset == 0 and qm.tensors[qm.output].signed
    assert "signed input" not in comp.report()
    ins = list(_instrs(comp))
    # padded convs (one pixel tile each): the stem pads with 0, the readers of c and of the
    # average with 128
    assert sorted(f["pad_ob"] for op, f in ins if op == Opcode.COMPUTE and f["tx0"] < 0
                  and not f["pool"]) == [0, 1, 1]
    # padded pooling: the average reads the stored zero, the max pads with 0 (never wins)
    assert {(f["pool"], f["pad_ob"]) for op, f in ins
            if op == Opcode.COMPUTE and f["pool"] and f["tx0"] < 0} == {(1, 0), (2, 1)}
    assert [(f["res_signed"], f["res_offset"]) for op, f in ins
            if op == Opcode.STORE and f["res_en"]] == [(1, 1)] * 2
    _check_isa(rng, qm, comp, 4)
    # the Amaranth RTL, random AXI stalls and latencies: every stored tensor against golden
    run_e2e(qm, TINY, [_images(rng, 4)[0]], mem_mode="random", seed=int(rng.integers(1 << 30)))


def test_first_conv_in_phases_stores_its_signed_output_offset_binary(rng):
    """The first conv reads the raw image in phases and stores its signed output offset-binary
    (the identity table in every phase's STOREs, ``conv^+ob``): the padded conv and the FC
    reading it (through a flattened view) run on the PE array; bit-exact on the ISA simulator.
    (Until session 6's stem tables, those phases stored it two's complement and both readers
    ran on the host.)"""
    g = G(rng, (3, 8, 8))
    b = g.conv("x", 3, 2, 3, strides=[2, 2], pads=[1, 1, 1, 1])        # signed, 2 x 4 x 4
    fc1 = g.node("Gemm", [g.node("Flatten", [b]), g.init(rng.normal(0, 0.3, (5, 32))),
                          g.init(rng.normal(0, 0.1, 5))], transB=1)
    c = g.node("Relu", [g.conv(b, 2, 4, 3, pads=[1, 1, 1, 1])])
    fc2 = g.node("Gemm", [g.node("Flatten", [c]), g.init(rng.normal(0, 0.3, (5, 64))),
                          g.init(rng.normal(0, 0.1, 5))], transB=1)
    qm = _quantize(rng, g.model(g.node("Add", [fc2, fc1]), ["N", 5]), 8)
    comp = compile_model(qm, TINY)
    assert comp.input_layout == "direct", comp.input_layout_why
    b_name = next(la.output for la in qm.layers if la.input == qm.input)
    flat = next(la.output for la in qm.layers if isinstance(la, FlattenLayer)
                and la.input == b_name)
    off = 1 << (qm.tensors[b_name].bits - 1)
    assert qm.tensors[b_name].signed
    assert (comp.tensors[b_name].offset, comp.tensors[flat].offset) == (off, off)
    stem = next(la.name for la in qm.layers if la.input == qm.input)
    assert next(r.kind for r in comp.layers if r.name == stem) == "conv^+ob"
    readers = {la.input: next(r for r in comp.layers if r.name == la.name)
               for la in qm.layers if isinstance(la, ConvLayer) and la.input in (b_name, flat)}
    assert len(readers) == 2 and all(r.where == "accel" for r in readers.values())
    assert "signed input" not in comp.report()
    _check_isa(rng, qm, comp, 8)


def test_signed_tensor_read_only_as_a_residual_stays_twos_complement(rng):
    """ResNet's projection shortcut: a linear 1x1 conv's signed output read only as the block's
    residual. The STORE reads two's complement as it is (``res_signed``), so it stays two's
    complement and its producer's STORE carries no identity table (kind ``conv``, not
    ``conv+ob``). Bit-exact on the ISA simulator."""
    g = G(rng, (3, 4, 4))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    sc = g.conv(a, 8, 4, 1)                                     # the shortcut: signed
    y = g.node("Relu", [g.node("Add", [g.conv(a, 8, 4, 3, pads=[1, 1, 1, 1]), sc])])
    out = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    qm = _quantize(rng, g.model(out, ["N", 4]), size=4)
    comp = compile_model(qm, TINY)
    res_conv = next(la for la in qm.layers if getattr(la, "residual", None))
    prod = next(la for la in qm.layers if la.output == res_conv.residual)
    assert qm.tensors[prod.output].signed and comp.tensors[prod.output].offset == 0
    rep = {r.name: r for r in comp.layers}
    assert rep[prod.name].kind == "conv" and rep[prod.name].where == "accel"
    assert all(r.where == "accel" or r.kind == "flatten" for r in comp.layers)
    assert [(f["res_signed"], f["res_offset"]) for op, f in _instrs(comp)
            if op == Opcode.STORE and f["res_en"]] == [(1, 0)]
    for img in _images(rng, 4):
        want = reference.run(qm, img, spec=TINY.numeric)
        got = run_compiled(comp, img)
        assert_layers_equal(qm, want, got, comp.unstored)
