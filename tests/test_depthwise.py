"""Depthwise convolutions on the PE array (issue 16): block-diagonal mtiles over windows of
``lanes_pad`` input channel positions (``Compute.dw``: an mtile iterates only the
``lanes_pad / tn`` groups of its window), a window's HI rows on the high lanes, its LO rows on
the low lanes (then on free high lanes), further mtiles over a window with more HI rows than
``lanes_hi``. ONNX built with onnx.helper (float import against onnx.reference), quantized,
compiled for tiny; ISA simulator and Amaranth RTL (random AXI stalls) bit-exact with golden;
the cycle model's counters exact against the RTL."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal, assert_model_agrees, run_e2e
from onnx_graphs import G, compare_with_reference
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.formats import Precision
from ilmpq.golden.model import ConvLayer
from ilmpq.golden.onnx_import import load_onnx
from ilmpq.golden.quantize import quantize
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

TINY = get_config("tiny")
IB = INSTR_BITS // 8
C = 10          # not a multiple of tn = 4


def _dw_net(rng, size):
    """1x1 conv -> depthwise 3x3 stride 1 (padded) -> depthwise 3x3 stride 2 (padded) ->
    1x1 conv, ReLU after each."""
    g = G(rng, (3, size, size))
    a = g.node("Relu", [g.conv("x", 3, C, 1)])
    d1 = g.node("Relu", [g.conv(a, C, C, 3, group=C, pads=[1, 1, 1, 1])])
    d2 = g.node("Relu", [g.conv(d1, C, C, 3, group=C, pads=[1, 1, 1, 1], strides=[2, 2])])
    y = g.node("Relu", [g.conv(d2, C, 6, 1)])
    o = (size + 1) // 2
    return g.model(y, ["N", 6, o, o])


def _quantized(rng, size):
    model = _dw_net(rng, size)
    compare_with_reference(model, rng.uniform(0, 255, (2, 3, size, size)))
    return quantize(load_onnx(model), rng.integers(0, 256, (6, 3, size, size)),
                    ratio=TINY.ratio, spec=TINY.numeric, report=False)


def _computes(comp):
    step = comp.steps[0]
    out = []
    for i in range(step.n_instr):
        off = step.prog_addr - comp.base + IB * i
        op, f = decode(bytes(comp.image[off:off + IB]))
        if op == Opcode.COMPUTE:
            out.append(f)
    return out


def test_depthwise_windows_lanes_and_isa_bit_exact(rng):
    qm = _quantized(rng, 6)
    dws = [la for la in qm.layers if isinstance(la, ConvLayer) and la.groups > 1]
    assert len(dws) == 2 and all(la.groups == C for la in dws)
    # ILMPQ's row split on a depthwise layer: rows are output channels, the same R share
    for la in dws:
        assert int(np.sum(la.precision == Precision.HI)) == -(-C * TINY.lanes_hi // TINY.lanes)
    comp = compile_model(qm, TINY)
    assert comp.one_program
    rep = {r.name: r for r in comp.layers}
    assert all((rep[la.name].where, rep[la.name].kind) == ("accel", "dw") for la in dws)
    computes = _computes(comp)
    lp = TINY.lanes_pad
    overflow = False
    for la, f in zip(dws, [c for c in computes if c["dw"]]):
        src, dst = comp.tensors[la.input], comp.tensors[la.output]
        n_win = -(-src.c_mem // lp)
        # bit 0: windowing; one mtile per window, more where a window needs them
        assert f["dw"] & 1 and bin(f["dw"] >> 1).count("1") == n_win - 1
        assert f["n_mtiles"] >= n_win and f["groups"] == src.c_mem // TINY.tn
        assert rep[la.name].sets_per_mtile == 9 * lp // TINY.tn
        overflow |= f["n_mtiles"] > n_win
        # every output channel once; HI rows on high lanes only; the lane's window holds its
        # input channel (a lane reads only its own channel)
        perm = dst.perm[:f["n_mtiles"] * lp].reshape(f["n_mtiles"], lp)
        assert sorted(perm[perm >= 0]) == list(range(C))
        win = np.cumsum([0] + [f["dw"] >> t & 1 for t in range(1, f["n_mtiles"])])
        for t, rows in enumerate(perm):
            for lane, c in enumerate(rows):
                if c < 0:
                    continue
                assert lane < TINY.lanes
                if la.precision[c] == Precision.HI:
                    assert lane >= TINY.lanes_lo
                assert c in src.perm[win[t] * lp:(win[t] + 1) * lp]
    assert overflow, "a window with more HI rows than lanes_hi (further mtiles) is exercised"
    for img in [rng.integers(0, 256, (3, 6, 6)), np.full((3, 6, 6), 255),
                np.zeros((3, 6, 6), np.int64)]:
        assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric),
                            run_compiled(comp, img))


def test_depthwise_bit_exact_on_rtl_with_random_stalls(rng):
    qm = _quantized(rng, 5)
    comp, _ = run_e2e(qm, TINY, [rng.integers(0, 256, (3, 5, 5))], mem_mode="random",
                      seed=int(rng.integers(1 << 30)))
    assert all(r.where == "accel" for r in comp.layers)


def test_depthwise_cycle_model_against_rtl(rng):
    """Deterministic memory: the cycle model's counters exact, its cycles within the
    project's 2 %; the tensors equal golden."""
    from ilmpq.firmware import cyclemodel as cm
    qm = _quantized(rng, 4)
    comp, res = run_e2e(qm, TINY, [rng.integers(0, 256, (3, 4, 4))])
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)


def test_grouped_conv_stays_on_host_with_its_reason(rng):
    g = G(rng, (3, 4, 4))
    a = g.node("Relu", [g.conv("x", 3, 8, 1)])
    y = g.node("Relu", [g.conv(a, 8, 8, 3, group=2, pads=[1, 1, 1, 1])])
    model = g.model(y, ["N", 8, 4, 4])
    qm = quantize(load_onnx(model), rng.integers(0, 256, (4, 3, 4, 4)), ratio=TINY.ratio,
                  spec=TINY.numeric, report=False)
    comp = compile_model(qm, TINY)
    grouped = next(r for r in comp.layers if r.name == qm.layers[-1].name)
    assert grouped.where == "cpu"
    assert "grouped convolution (groups = 2, 8 channels)" in comp.report()
    img = rng.integers(0, 256, (3, 4, 4))
    assert_layers_equal(qm, reference.run(qm, img, spec=TINY.numeric), run_compiled(comp, img))


def test_depthwise_input_laid_out_for_its_windows(rng):
    """With lanes_pad = lanes (as on z020) a depthwise conv's input is laid out for it: the
    accelerated producer spreads the depthwise HI rows over its mtiles, a host-written input
    (here a grouped conv's output) orders its channels likewise, so no window holds more HI
    rows than lanes_hi (no further mtile); ISA bit-exact."""
    import dataclasses
    cfg = dataclasses.replace(TINY, name="tiny8", lanes_lo=7, lanes_hi=1)   # R = 1/8
    g = G(rng, (3, 4, 4))
    a = g.node("Relu", [g.conv("x", 3, 24, 1)])
    d1 = g.node("Relu", [g.conv(a, 24, 24, 3, group=24, pads=[1, 1, 1, 1])])
    h = g.node("Relu", [g.conv(d1, 24, 24, 1, group=2)])            # on the host
    d2 = g.node("Relu", [g.conv(h, 24, 24, 3, group=24, pads=[1, 1, 1, 1])])
    model = g.model(d2, ["N", 24, 4, 4])
    compare_with_reference(model, rng.uniform(0, 255, (2, 3, 4, 4)))
    qm = quantize(load_onnx(model), rng.integers(0, 256, (6, 3, 4, 4)), ratio=cfg.ratio,
                  spec=cfg.numeric, report=False)
    comp = compile_model(qm, cfg)
    rep = {r.name: r for r in comp.layers}
    dws = [la for la in qm.layers if isinstance(la, ConvLayer) and la.groups == 24]
    assert [rep[la.name].where for la in dws] == ["accel", "accel"]
    for la in dws:
        src = comp.tensors[la.input]
        hot = la.precision == Precision.HI
        n_win = -(-src.c_mem // cfg.lanes_pad)
        per_win = [int(np.sum(hot[c[c >= 0]])) for c in src.perm[:n_win * cfg.lanes_pad]
                   .reshape(n_win, cfg.lanes_pad)]
        assert max(per_win) <= cfg.lanes_hi, per_win
        assert rep[la.name].mtiles == n_win
    img = rng.integers(0, 256, (3, 4, 4))
    assert_layers_equal(qm, reference.run(qm, img, spec=cfg.numeric), run_compiled(comp, img))
