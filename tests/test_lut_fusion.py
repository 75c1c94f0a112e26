"""Pointwise functions as one lookup table fused into the STORE of the conv before them (issues
16 and 20): hard-swish, SiLU and GELU-tanh written out as ONNX arithmetic after a conv are each
imported as one LutLayer, compiled into the conv's STORE (``conv+lut``: the post-processing unit
maps the clamped values through the CRC-checked table) and run bit-exact with golden on the ISA
simulator and on the Amaranth RTL (tiny preset, random AXI stalls and latencies). A table that
cannot be fused (its input also read by another layer, or produced by a host layer) stays on
the host with the reason in the report."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal
from onnx_graphs import G, compare_with_reference
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.cyclemodel import estimate
from ilmpq.firmware.sim.isasim import IsaFault, Memory, run_compiled, run_program
from ilmpq.golden import ops, reference
from ilmpq.golden.model import ConvLayer, LutLayer, TensorSpec, layer_inputs
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, act_check_entries, decode, lut_block_bytes

IB = INSTR_BITS // 8
from ilmpq.hdl.status import ErrorCode

TINY = get_config("tiny")


def _acts_graph(rng, size=6):
    """A ReLU conv, then three branches each ``conv -> activation written as arithmetic``
    (hard-swish ``x*Clip(x+3,0,6)/6`` followed by two 1x1 convs, SiLU ``x*Sigmoid(x)``,
    GELU-tanh), and a SiLU whose conv output is also concatenated (not fusable: on the host)
    followed by a 1x1 conv; Concat of all of them (on the host). Signed tensors read only by
    unpadded convs are stored offset-binary: the hard-swish output (through its table), the
    first 1x1 conv's (an identity table) and the host SiLU's (written by the host)."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    hs = g.hardswish_arith(g.conv(a, 8, 4, 1))
    p2 = g.conv(g.conv(hs, 4, 4, 1), 4, 4, 1)
    si = g.silu_arith(g.conv(a, 8, 5, 3, pads=[1, 1, 1, 1]))
    ge = g.gelu_tanh_arith(g.conv(a, 8, 4, 1))
    c = g.conv(a, 8, 2, 1)
    cat = g.node("Concat", [p2, si, ge, g.conv(g.silu_arith(c), 2, 3, 1), c], axis=1)
    return g.model(cat, ["N", 18, size, size])


def _quantized(rng, size=6):
    """Pixels normalized to about [-2, 2] (folded into the first conv), so that the
    activations' inputs span their interesting range (not a step function)."""
    model = _acts_graph(rng, size)
    compare_with_reference(model, rng.uniform(-2, 2, (2, 3, size, size)))
    fm = load_onnx(model, input_mean=[128.0] * 3, input_std=[64.0] * 3)
    return quantize(fm, rng.integers(0, 256, (6, 3, size, size)), ratio=TINY.ratio,
                    spec=TINY.numeric, report=False)


def _images(rng, size=6):
    return [rng.integers(0, 256, (3, size, size)), np.full((3, size, size), 255),
            np.zeros((3, size, size), np.int64)]


def test_arithmetic_activations_fuse_into_the_conv_store(rng):
    qm = _quantized(rng)
    luts = [la for la in qm.layers if isinstance(la, LutLayer)]
    assert len(luts) == 4                 # each activation is one table, whatever its ops
    producer = {la.output: la for la in qm.layers}
    assert all(isinstance(producer[la.input], ConvLayer) for la in luts)
    # the tables compute different functions and read signed conv outputs
    assert len({tuple(la.table) for la in luts}) == 4
    assert all(qm.tensors[la.input].signed for la in luts)
    comp = compile_model(qm, TINY)
    kinds = [r.kind for r in comp.layers if r.where == "accel"]
    assert kinds.count("conv+lut") == 3 and kinds.count("conv+ob") == 1
    assert sum(t.offset == 128 for t in comp.tensors.values()) == 3
    rep = {r.name: r for r in comp.layers}
    # the one whose conv output is also concatenated is not fused
    readers = {la.input: sum(la.input in layer_inputs(x) for x in qm.layers) for la in luts}
    fused = [la for la in luts if readers[la.input] == 1]
    last = next(la for la in luts if readers[la.input] == 2)
    assert len(fused) == 3
    for la in fused:
        assert (rep[la.name].where, rep[la.name].kind) == ("free", "lut:fused")
        conv = producer[la.input]
        assert (rep[conv.name].where, rep[conv.name].kind) == ("accel", "conv+lut")
        assert la.input not in comp.tensors and la.output in comp.tensors
    # the fourth: its conv output is also concatenated, so it is stored and the table runs on
    # the host, with the reason
    assert rep[last.name].where == "cpu"
    assert "also read by another layer" in rep[last.name].cpu_reason
    assert rep[producer[last.input].name].kind == "conv"
    assert comp.unstored == {la.input for la in fused}
    text = comp.report()
    assert "lookup tables fused into the conv's STORE" in text and "conv+lut" in text
    assert "stored offset-binary" in text
    # one STORE per pixel tile of each fused conv carries a table; the table bytes in the image
    # are golden's table (signed outputs as their two's complement bytes)
    tables = set()
    for step in comp.steps:
        if not hasattr(step, "prog_addr"):
            continue
        for i in range(step.n_instr):
            off = step.prog_addr - comp.base + IB * i
            op, f = decode(bytes(comp.image[off:off + IB]))
            if op == Opcode.STORE and f["lut_en"]:
                tables.add(f["lut_addr"])
    assert len(tables) == 4                    # three fused tables, one identity table
    got = {bytes(comp.image[a - comp.base:a - comp.base + 256]) for a in tables}
    # entries: golden's table plus the output's offset (offset-binary) as stored bytes
    want = {bytes(((la.table + comp.tensors[la.output].offset) & 0xFF).astype(np.uint8))
            for la in fused}
    assert got == want | {bytes(range(256))}
    # the ISA simulator, bit-exact with golden, every stored layer; the LUT inputs cover both
    # signs and many levels on purpose
    for img in _images(rng):
        want = reference.run(qm, img, spec=TINY.numeric)
        assert_layers_equal(qm, want, run_compiled(comp, img), comp.unstored)
    want = reference.run(qm, _images(rng)[0], spec=TINY.numeric)
    for la in fused:
        x = want[la.input]
        assert x.min() < 0 < x.max() and len(np.unique(x)) > 20
    # the cycle model sees the table reads (one per STORE of a fused conv)
    est = estimate(comp)
    conv_lut = [lt for lt in est.layers if lt.kind == "conv+lut"]
    assert len(conv_lut) == 3 and all(lt.cycles > 0 for lt in conv_lut)
    assert all(lt.bytes_read >= lut_block_bytes(TINY.act_bits) for lt in conv_lut)


def test_fused_tables_bit_exact_on_rtl_with_random_stalls(rng):
    """The three fused tables, the identity table and the offset-binary tensors, the host table
    and the host concat on the Amaranth RTL (random AXI stalls and latencies): every stored
    tensor equals golden."""
    from e2e_util import run_e2e
    qm = _quantized(rng, size=4)
    img = rng.integers(0, 256, (3, 4, 4))
    comp, _ = run_e2e(qm, TINY, [img], mem_mode="random", seed=int(rng.integers(1 << 30)))
    assert sum(r.kind == "conv+lut" for r in comp.layers) == 3
    assert sum(r.kind == "conv+ob" for r in comp.layers) == 1
    assert sum(t.offset == 128 for t in comp.tensors.values()) == 3


def _lut_model(rng, *, out_signed: bool, shape=(3, 4, 4)):
    """conv (no ReLU: signed) -> table -> conv: the table's output is unsigned (so the conv after
    it runs on the accelerator) or signed."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=shape)
    x = b.conv("c1", "input", 5, 3, padding=1, relu=False)
    lo, hi = (-128, 127) if out_signed else (0, 255)
    table = rng.integers(lo, hi + 1, 256)
    table[[0, 127, 128, 255]] = [hi, lo, hi, lo]         # the ends of both ranges
    b.layers.append(LutLayer("t1", x, "t1", table, function="random"))
    b.tensors["t1"] = TensorSpec("t1", b.shape(x), 8, out_signed, 0.05)
    b.values["t1"] = ops.lut_apply(b.values[x], table, in_bits=8, in_signed=True).astype(
        b.tensors["t1"].dtype)
    y = b.conv("c2", "t1", 4, 1) if not out_signed else "t1"
    return b.build(y)


@pytest.mark.parametrize("out_signed", [False, True], ids=["unsigned-out", "signed-out"])
def test_table_output_signedness(rng, out_signed):
    """Signed conv output into a table with an unsigned output (the conv after it runs on the
    accelerator, one program) or a signed output (stored as two's complement bytes)."""
    qm = _lut_model(rng, out_signed=out_signed)
    comp = compile_model(qm, TINY)
    assert comp.one_program
    assert [r.kind for r in comp.layers][:2] == ["conv+lut", "lut:fused"]
    for img in [rng.integers(0, 256, (3, 4, 4)), np.full((3, 4, 4), 255)]:
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img), comp.unstored)


def test_isa_simulator_refuses_a_corrupted_table(rng):
    qm = _lut_model(rng, out_signed=False)
    comp = compile_model(qm, TINY)
    step = comp.steps[0]
    st = next(f for op, f in (decode(bytes(comp.image[step.prog_addr - comp.base + IB * i:
                                                      step.prog_addr - comp.base + IB * i + IB]))
                              for i in range(step.n_instr)) if op == Opcode.STORE and f["lut_en"])
    mem = Memory(comp.base, comp.size)
    mem.data[:] = comp.image
    # the input as the driver writes it: its bytes (here zeros) and their check entries
    inp = comp.tensors[comp.input]
    pixels = bytes(mem.data[inp.addr - comp.base:inp.addr - comp.base + inp.nbytes])
    mem.write(comp.input_check, act_check_entries(inp.addr, pixels, comp.input_row_bytes,
                                                  TINY.beat_bytes))
    mem.data[st["lut_addr"] - comp.base + 200] ^= 0x10
    with pytest.raises(IsaFault, match="lookup table") as e:
        run_program(TINY, mem, step.prog_addr, step.n_instr, comp.arena, step.prog_tag)
    assert e.value.code == ErrorCode.LUT_CRC


# -- signed tensors offset-binary: convs after hard-swish (or a linear conv) on the PE array -----

def _offset_graph(rng, size):
    """ReLU conv -> hard-swish (signed table output) -> 1x1 conv (linear: signed) -> 1x1 conv
    (signed) -> 3x3 conv with padding (its signed input offset-binary, padded with the stored
    zero) -> 1x1 conv."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    hs = g.hardswish_arith(g.conv(a, 8, 6, 1))
    b = g.conv(hs, 6, 5, 1)
    c = g.conv(b, 5, 4, 1)
    d = g.conv(c, 4, 4, 3, pads=[1, 1, 1, 1])
    e = g.conv(d, 4, 3, 1)
    fm = compare_with_reference(g.model(e, ["N", 3, size, size]),
                                rng.uniform(-2, 2, (2, 3, size, size)))
    return quantize(fm, rng.integers(0, 256, (6, 3, size, size)), ratio=TINY.ratio,
                    spec=TINY.numeric, report=False)


def test_signed_tensors_offset_binary_feed_accelerated_convs(rng):
    """A signed tensor whose readers are all unpadded convs is stored as ``x + 128`` (through
    the fused table, or an identity table adding the offset): the convs after it run on the PE
    array with ``-128 * sum(w)`` folded into their bias; a padded reader pads with the stored
    zero 128 (COMPUTE ``pad_ob``). Bit-exact on the ISA simulator."""
    qm = _offset_graph(rng, 6)
    convs = [la for la in qm.layers if isinstance(la, ConvLayer)]
    assert len(convs) == 6
    comp = compile_model(qm, TINY)
    rep = {r.name: r for r in comp.layers}
    assert [rep[c.name].where for c in convs] == ["accel"] * 6
    assert [rep[c.name].kind for c in convs[:5]] == ["conv", "conv+lut", "conv+ob", "conv+ob",
                                                     "conv+ob"]
    hs_out, b_out, c_out, d_out = (convs[k].input for k in (2, 3, 4, 5))
    assert all(qm.tensors[t].signed for t in (hs_out, b_out, c_out, d_out))
    assert [comp.tensors[t].offset for t in (hs_out, b_out, c_out, d_out)] == [128] * 4
    for img in _images(rng):
        want = reference.run(qm, img, spec=TINY.numeric)
        got = run_compiled(comp, img)
        assert_layers_equal(qm, want, got, comp.unstored)
    # many levels reach the offset-binary tensors, negative ones included
    want = reference.run(qm, _images(rng)[0], spec=TINY.numeric)
    assert want[b_out].min() < 0 < want[b_out].max() and want[d_out].min() < 0 < want[d_out].max()
    assert all(len(np.unique(want[t])) > 20 for t in (hs_out, b_out))



def test_offset_binary_reader_whose_folded_bias_may_overflow_runs_on_the_host(rng):
    """Folding ``-128 * sum(w)`` into the bias must not let the accumulator overflow: a reader
    whose bound would leave the 32-bit range falls back to the host (golden's arithmetic on the
    signed tensor), named with the reason; bit-exact on the ISA simulator."""
    qm = _offset_graph(rng, 4)
    c = [la for la in qm.layers if isinstance(la, ConvLayer)][3]
    w = np.asarray(c.weight, np.int64).sum(axis=(1, 2, 3))
    k = int(np.argmax(np.abs(w)))
    c.bias = np.asarray(c.bias, np.int64).copy()
    # at golden's own bound for the signed input (|b| + 128 * sum|w|), past the unsigned
    # input's once -128 * sum(w) is folded in (the fold grows |b|)
    sw = int(np.abs(np.asarray(c.weight[k], np.int64)).sum())
    c.bias[k] = -int(np.sign(w[k])) * ((1 << 31) - 1 - 128 * sw)
    comp = compile_model(qm, TINY)
    r = next(x for x in comp.layers if x.name == c.name)
    assert r.where == "cpu"
    assert r.cpu_reason.startswith("with the offset-binary input folded into the bias")
    img = rng.integers(0, 256, (3, 4, 4))
    assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric), run_compiled(comp, img),
                        comp.unstored)
