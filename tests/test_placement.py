"""Concat, Slice and channel shuffle as tensor placement (issue 16): a channel shuffle
(Reshape-Transpose-Reshape) and a channel slice are free views of the stored bytes (a new
position -> channel map, excluded positions -1: zero weights for the conv reading them); a
Concat whose inputs are convs read by it alone is stored by those convs straight into their
channel ranges of one tensor (no copy), with the quantizer giving them the Concat's scale so
that its requantization is the identity; any other input (a view, a conv output read elsewhere
too, a host layer's output) is copied into its range by a 1x1 identity conv on the PE array
with the Concat's requantization. Every stored tensor bit-exact with golden on the ISA
simulator and on the Amaranth RTL (tiny preset, random AXI stalls and latencies); the
activation check entries stay on (one entry per producer and row)."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal, assert_model_agrees, run_e2e
from onnx_graphs import G, compare_with_reference
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.model import ConcatLayer, ConvLayer, PermuteLayer, SliceLayer
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

TINY = get_config("tiny")
IB = INSTR_BITS // 8


def _fire(rng, size):
    """SqueezeNet's Fire module: conv -> squeeze 1x1 -> expand 1x1 and expand 3x3 (ReLU) ->
    Concat -> 1x1 conv."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    s = g.node("Relu", [g.conv(a, 8, 4, 1)])
    e1 = g.node("Relu", [g.conv(s, 4, 8, 1)])
    e3 = g.node("Relu", [g.conv(s, 4, 8, 3, pads=[1, 1, 1, 1])])
    y = g.node("Relu", [g.conv(g.node("Concat", [e1, e3], axis=1), 16, 6, 1)])
    return g.model(y, ["N", 6, size, size])


def _shuffle(rng, size):
    """ShuffleNet-V2's units: a down-sampling-like unit (two conv branches of one tensor ->
    Concat -> channel shuffle), then a basic unit (channel split by two Slices, one half through
    a conv, Concat with the other half, shuffle), then a conv."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    b1 = g.node("Relu", [g.conv(a, 8, 8, 1)])
    b2 = g.node("Relu", [g.conv(g.node("Relu", [g.conv(a, 8, 8, 1)]), 8, 8, 3,
                                pads=[1, 1, 1, 1])])
    sh = g.shuffle(g.node("Concat", [b1, b2], axis=1), 16, size, size, 2)
    x1, x2 = g.slice(sh, [0], [8], [1]), g.slice(sh, [8], [16], [1])
    br = g.node("Relu", [g.conv(x2, 8, 8, 1)])
    sh2 = g.shuffle(g.node("Concat", [x1, br], axis=1), 16, size, size, 2)
    y = g.node("Relu", [g.conv(g.slice(sh2, [1], [16], [1], [3]), 5, 6, 1)])
    return g.model(y, ["N", 6, size, size])


def _quantized(build, rng, size):
    model = build(rng, size)
    compare_with_reference(model, rng.uniform(0, 255, (2, 3, size, size)))
    return quantize(load_onnx(model), rng.integers(0, 256, (6, 3, size, size)),
                    ratio=TINY.ratio, spec=TINY.numeric, report=False)


def _images(rng, size):
    return [rng.integers(0, 256, (3, size, size)), np.full((3, size, size), 255),
            np.zeros((3, size, size), np.int64)]


def _program(comp, step):
    out = []
    for i in range(step.n_instr):
        off = step.prog_addr - comp.base + IB * i
        out.append(decode(bytes(comp.image[off:off + IB])))
    return out


def test_fire_module_concat_is_placement(rng):
    qm = _quantized(_fire, rng, 6)
    cat = next(la for la in qm.layers if isinstance(la, ConcatLayer))
    producer = {la.output: la for la in qm.layers}
    # the quantizer gave both expand convs the concat's scale: its requantization is the
    # identity (M = 2**S), and golden's concat is then a plain concatenation
    assert all(m == 1 << s for m, s in zip(cat.mults, cat.shifts))
    assert {qm.tensors[t].scale for t in cat.inputs} == {qm.tensors[cat.output].scale}
    comp = compile_model(qm, TINY)
    assert comp.one_program
    rep = {r.name: r for r in comp.layers}
    assert (rep[cat.name].where, rep[cat.name].kind) == ("free", "concat:placed")
    assert all(rep[producer[t].name].where == "accel" for t in cat.inputs)
    assert "placement, no copies" in comp.report() and f"{cat.name} (concat)" in comp.report()
    # the expand convs' outputs are views of the concat's tensor: their channel ranges
    y = comp.tensors[cat.output]
    views = [comp.tensors[t] for t in cat.inputs]
    assert all(v.addr == y.addr and v.c_mem == y.c_mem for v in views)
    ranges = [np.flatnonzero(v.perm >= 0) for v in views]
    assert ranges[0].max() < ranges[1].min()
    for v in views:
        assert set(y.perm[v.perm >= 0]) == set(v.perm[v.perm >= 0] + (
            0 if v is views[0] else views[0].channels))
    # their STOREs write at the range's first position with the concat's pixel stride; each
    # is one of two check entries a row (k = 2), the reader's LOAD_ROWS reads both
    prog = _program(comp, comp.steps[0])
    stores = [f for op, f in prog if op == Opcode.STORE
              and y.addr <= f["out_addr"] < y.addr + y.nbytes]
    assert len(stores) == 2 and all(f["out_stride"] == y.c_mem for f in stores)
    # (8 channels each: two mtiles of lanes_pad = 8 positions, pad lanes written as 0)
    assert y.c_mem == 4 * TINY.lanes_pad
    assert sorted(f["out_addr"] - y.addr for f in stores) == [0, 2 * TINY.lanes_pad]
    assert ranges[1].min() >= 2 * TINY.lanes_pad
    assert all(f["chk_stride"] == 2 and f["chk_row_pixels"] == y.w for f in stores)
    assert len({f["chk_off"] for f in stores}) == 2
    loads = [f for op, f in prog if op == Opcode.LOAD_ROWS and f["addr"] == y.addr]
    assert len(loads) == 1 and loads[0]["beats"] * TINY.beat_bytes == y.nbytes
    assert loads[0]["chk_beats"] == 2 * y.h
    for img in _images(rng, 6):
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img))


def test_shuffle_and_slices_are_views(rng):
    qm = _quantized(_shuffle, rng, 6)
    comp = compile_model(qm, TINY)
    rep = {r.name: r for r in comp.layers}
    perms = [la for la in qm.layers if isinstance(la, PermuteLayer)]
    slices = [la for la in qm.layers if isinstance(la, SliceLayer)]
    cats = [la for la in qm.layers if isinstance(la, ConcatLayer)]
    assert len(perms) == 2 and len(slices) == 3 and len(cats) == 2
    for la in perms + slices:
        assert (rep[la.name].where, rep[la.name].kind) == ("free", f"{la.kind}:placed")
        t, src = comp.tensors[la.output], comp.tensors[la.input]
        assert (t.addr, t.c_mem) == (src.addr, src.c_mem)     # the same bytes
    # the first concat is placed; the second concatenates a slice (a view of another tensor),
    # copied into its range by a 1x1 identity conv on the accelerator (one pixel tile), and
    # the branch conv, which the quantizer gave the concat's scale: it stores into its range
    assert rep[cats[0].name].kind == "concat:placed"
    assert (rep[cats[1].name].where, rep[cats[1].name].kind) == ("accel", "concat")
    assert rep[cats[1].name].ptiles == 1 and rep[cats[1].name].macs == 0
    assert "concats on the accelerator" in comp.report() and cats[1].name in comp.report()
    x1, br = cats[1].inputs
    assert qm.tensors[br].scale == qm.tensors[cats[1].output].scale
    assert comp.tensors[br].addr == comp.tensors[cats[1].output].addr
    assert comp.tensors[x1].addr != comp.tensors[cats[1].output].addr
    assert comp.one_program
    # the strided channel slice 1:16:3 keeps 5 channels; its reader gets zero weights on the
    # other positions
    last = slices[-1]
    assert last.steps[0] == 3 and int(np.sum(comp.tensors[last.output].perm >= 0)) == 5
    assert [r.where for r in comp.layers if r.kind == "conv"].count("accel") == 6
    for img in _images(rng, 6):
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img))


def test_concat_whose_input_is_also_read_elsewhere_is_copied(rng):
    """One expand conv's output is also read by another conv: it keeps its own scale (coupling
    it would coarsen the other reader's input) and is copied into the Concat's range by a 1x1
    identity conv carrying the Concat's requantization; the other expand conv, read by the
    Concat alone, takes the Concat's scale and stores into its range. One program."""
    g = G(rng, (3, 6, 6))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    e1 = g.node("Relu", [g.conv(a, 8, 8, 1)])
    e3 = g.node("Relu", [g.conv(a, 8, 8, 3, pads=[1, 1, 1, 1])])
    y = g.node("Add", [g.conv(g.node("Concat", [e1, e3], axis=1), 16, 4, 1), g.conv(e1, 8, 4, 1)])
    model = g.model(y, ["N", 4, 6, 6])
    qm = quantize(load_onnx(model), rng.integers(0, 256, (6, 3, 6, 6)), ratio=TINY.ratio,
                  spec=TINY.numeric, report=False)
    cat = next(la for la in qm.layers if isinstance(la, ConcatLayer))
    e1, e3 = cat.inputs
    assert qm.tensors[e3].scale == qm.tensors[cat.output].scale
    assert (cat.mults[1], cat.shifts[1]) == (1 << cat.shifts[1], cat.shifts[1])
    comp = compile_model(qm, TINY)
    rep = {r.name: r for r in comp.layers}
    assert (rep[cat.name].where, rep[cat.name].kind, rep[cat.name].ptiles) == (
        "accel", "concat", 1)
    y = comp.tensors[cat.output]
    assert comp.tensors[e3].addr == y.addr and comp.tensors[e1].addr != y.addr
    assert comp.one_program
    for img in _images(rng, 6):
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img))


@pytest.mark.parametrize("build", [_fire, _shuffle], ids=["fire", "shuffle"])
def test_placement_bit_exact_on_rtl_with_random_stalls(rng, build):
    """The placed concat (two convs storing into one tensor, checked), the shuffle and slice
    views and the host concat on the Amaranth RTL with random AXI stalls: every stored tensor
    equals golden."""
    qm = _quantized(build, rng, 4)
    comp, _ = run_e2e(qm, TINY, [rng.integers(0, 256, (3, 4, 4))], mem_mode="random",
                      seed=int(rng.integers(1 << 30)))
    rep = {r.name: r for r in comp.layers}
    assert rep[next(la for la in qm.layers if isinstance(la, ConcatLayer)).name].kind == \
        "concat:placed"
    assert all(rep[la.name].where == "accel" for la in qm.layers if isinstance(la, ConvLayer))


def test_signed_concat_offset_binary_and_fallbacks(rng):
    """A Concat of two linear convs (signed) read only by an unpadded 1x1 conv: placed, both
    convs store offset-binary through identity tables into their ranges and the reader runs on
    the accelerator. A Concat one of whose convs runs on the host (grouped): the other stores
    into its range, the host conv's output is copied into its range on the accelerator. A slice
    over rows is a host copy, with its reason. All bit-exact on the ISA simulator."""
    g = G(rng, (3, 6, 6))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    lin = g.node("Concat", [g.conv(a, 8, 4, 1), g.conv(a, 8, 8, 3, pads=[1, 1, 1, 1])], axis=1)
    b = g.node("Relu", [g.conv(lin, 12, 8, 1)])
    grp = g.node("Concat", [g.node("Relu", [g.conv(b, 8, 8, 1)]),
                            g.node("Relu", [g.conv(b, 8, 8, 3, group=2, pads=[1, 1, 1, 1])])],
                 axis=1)
    rows = g.slice(grp, [1], [5], [2])
    y = g.node("Relu", [g.conv(rows, 16, 4, 1)])
    model = g.model(y, ["N", 4, 4, 6])
    compare_with_reference(model, rng.uniform(0, 255, (2, 3, 6, 6)))
    qm = quantize(load_onnx(model), rng.integers(0, 256, (6, 3, 6, 6)), ratio=TINY.ratio,
                  spec=TINY.numeric, report=False)
    cats = [la for la in qm.layers if isinstance(la, ConcatLayer)]
    assert qm.tensors[cats[0].output].signed and not qm.tensors[cats[1].output].signed
    assert all(m == 1 << s for la in cats for m, s in zip(la.mults, la.shifts))
    comp = compile_model(qm, TINY)
    rep = {r.name: r for r in comp.layers}
    producer = {la.output: la for la in qm.layers}
    assert rep[cats[0].name].kind == "concat:placed"
    assert comp.tensors[cats[0].output].offset == 128
    assert all(rep[producer[t].name].kind == "conv+ob" for t in cats[0].inputs)
    reader = next(la for la in qm.layers if isinstance(la, ConvLayer) and
                  la.input == cats[0].output)
    assert rep[reader.name].where == "accel"
    grouped = producer[cats[1].inputs[1]]
    assert rep[grouped.name].where == "cpu"
    assert (rep[cats[1].name].where, rep[cats[1].name].kind, rep[cats[1].name].ptiles) == (
        "accel", "concat", 1)
    y = comp.tensors[cats[1].output]
    assert comp.tensors[cats[1].inputs[0]].addr == y.addr          # stored into its range
    assert comp.tensors[cats[1].inputs[1]].addr != y.addr          # the host's, copied
    sl = next(la for la in qm.layers if isinstance(la, SliceLayer))
    assert rep[sl.name].where == "cpu" and "slice over rows or columns" in rep[sl.name].cpu_reason
    for img in _images(rng, 6):
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img))


def test_cycle_model_matches_rtl_on_a_placed_concat(rng):
    """The placed concat's STOREs (a write command per pixel: the pixel stride is the concat's
    C_mem) on the RTL with the deterministic memory: the cycle model's counters exact, its
    cycles within the project's 2 %; the tensors equal golden."""
    from ilmpq.firmware import cyclemodel as cm
    qm = _quantized(_fire, rng, 4)
    comp, res = run_e2e(qm, TINY, [rng.integers(0, 256, (3, 4, 4))])
    assert comp.one_program
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)


def test_views_read_by_a_pool_and_as_a_residual(rng):
    """A channel slice read by the pooling unit (the other positions are zero lanes), a shuffle
    read as a conv's residual (the post-processing gathers it through its position table) and
    a Concat of convs with different mtile counts (5 and 4 channels): one program, nothing on
    the host, bit-exact on the ISA simulator."""
    g = G(rng, (3, 8, 8))
    a = g.node("Relu", [g.conv("x", 3, 8, 3, pads=[1, 1, 1, 1])])
    mp = g.node("MaxPool", [g.slice(a, [2], [7], [1])], kernel_shape=[2, 2], strides=[2, 2])
    r = g.node("Relu", [g.node("Add", [g.conv(a, 8, 8, 3, pads=[1, 1, 1, 1]),
                                       g.shuffle(a, 8, 8, 8, 2)])])
    c = g.node("Relu", [g.conv(r, 8, 5, 2, strides=[2, 2])])
    y = g.node("Concat", [c, g.node("Relu", [g.conv(mp, 5, 4, 1)])], axis=1)
    model = g.model(g.node("Relu", [g.conv(y, 9, 3, 1)]), ["N", 3, 4, 4])
    compare_with_reference(model, rng.uniform(0, 255, (2, 3, 8, 8)))
    qm = quantize(load_onnx(model), rng.integers(0, 256, (6, 3, 8, 8)), ratio=TINY.ratio,
                  spec=TINY.numeric, report=False)
    assert any(isinstance(la, ConvLayer) and la.residual is not None and isinstance(
        next(p for p in qm.layers if p.output == la.residual), PermuteLayer) for la in qm.layers)
    comp = compile_model(qm, TINY)
    assert comp.one_program
    assert sorted(r.kind for r in comp.layers if r.where == "free") == [
        "concat:placed", "permute:placed", "slice:placed"]
    assert "maxpool" in [r.kind for r in comp.layers if r.where == "accel"]
    for img in _images(rng, 8):
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img), comp.unstored)
