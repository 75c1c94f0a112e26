"""Max pooling fused into the STORE of the conv before it (issue #15; ``Store.vpool``,
hdl/store.py, compiler ``_vpool_candidates``): a conv read only by a MaxPool 3x3, stride 2,
padding 1 stores its output pooled vertically (``<output>@vpool``), and the pool runs as the
1x3, stride (1, 2) rest on the pooling unit. Bit-exact on the ISA simulator (the stored rows
against golden's conv output pooled vertically, every other layer against golden) and once on
the tiny RTL with random memory stalls (the cycle model within 2 % of it); cases that must not
fuse compile as before."""

import dataclasses

import numpy as np
import pytest

from e2e_util import assert_layers_equal, assert_model_agrees
from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.cli.simulate import compare_layers
from ilmpq.firmware.compiler import compile_model, disassemble, vpool_rows
from ilmpq.firmware.sim.isasim import run_compiled, run_compiled_batch
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

#: tiny with a row array of 16 entries (the tiny preset has none: its programs stay as they were)
TINY = get_config("tiny").replace(vpool_entries=16)


def _model(rng, hw, *, stem=False, pool=(3, 2, 1), relu=True, c1=4):
    """[c0 1x1 ->] c1 3x3 -> maxpool [-> c2 1x1] on a (3, h, w) image (``stem``: c1 reads the
    image: the first conv, compiled in phases on its bytes)."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, *hw))
    x = "input" if stem else b.conv("c0", "input", 4, 1)
    x = b.conv("c1", x, c1, 3, padding=1, relu=relu)
    x = b.maxpool("p", x, pool[0], pool[1], pool[2])
    if not relu:                 # (a signed tensor is no conv's input)
        return b.build(x)
    return b.build(b.conv("c2", x, 4, 1))


def _vpool_rows(v):
    """golden's (C, H, W) tensor max-pooled over rows 2j-1..2j+1 (clipped)."""
    h = v.shape[1]
    return np.stack([v[:, max(0, 2 * j - 1):2 * j + 2].max(axis=1)
                     for j in range((h - 1) // 2 + 1)], axis=1)


def _kinds(comp):
    return {r.name: r.kind for r in comp.layers}


def _check_isa(comp, model, img):
    ref = reference.run(model, img, spec=TINY.numeric)
    got = run_compiled(comp, img)
    assert_layers_equal(model, ref, got, comp.unstored)
    return ref


@pytest.mark.parametrize("hw, stem", [((15, 15), False), ((16, 16), True), ((6, 16), False)])
def test_conv_maxpool_fused_bit_exact_on_the_isa_simulator(rng, hw, stem):
    """Odd and even heights, tiles of several rows continuing the row array, the stem conv's
    phases: c1's STOREs pool vertically (kind ``+vpool``), write only the pooled rows (half
    the bytes), and every tensor equals golden's (the stored rows: golden's c1 pooled
    vertically)."""
    model = _model(rng, hw, stem=stem)
    comp = compile_model(model, TINY)
    k = _kinds(comp)
    assert k["c1"] == ("conv^+vpool" if stem else "conv+vpool"), k
    assert comp.unstored == {"c1"}
    assert f"c1+p ({k['c1']})" in comp.report()
    img = rng.integers(0, 256, (3, *hw))
    img.reshape(-1)[:4] = [0, 255, 0, 255]
    ref = reference.run(model, img, spec=TINY.numeric)
    got = run_compiled(comp, img)
    assert_layers_equal(model, ref, got, comp.unstored)
    # the stored rows: golden's conv output pooled vertically (the CLI's comparison too)
    assert comp.vpooled == {"c1": "c1@vpool"}
    np.testing.assert_array_equal(got["c1@vpool"], _vpool_rows(ref["c1"]))
    np.testing.assert_array_equal(vpool_rows(ref["c1"]), _vpool_rows(ref["c1"]))
    assert compare_layers(model, ref, got) is None
    bad = dict(got, **{"c1@vpool": got["c1@vpool"] ^ 1})
    assert "layer 'c1'" in compare_layers(model, ref, bad)
    # the conv writes the pooled rows only
    unfused = compile_model(model, TINY.replace(vpool_entries=0))
    w = {r.name: r.dma_write_bytes for r in comp.layers}
    w0 = {r.name: r.dma_write_bytes for r in unfused.layers}
    assert w["c1"] < 0.6 * w0["c1"], (w, w0)


def test_what_does_not_fuse_compiles_as_before(rng):
    """A signed (two's complement) conv output, a pool the STORE cannot do (2x2, stride 2),
    a conv with a row wider than the row array, a row of one entry (the store unit does not
    forward) and a configuration without the array:
    compiled unfused, byte-identical to the program without the row array, bit-exact."""
    cases = [_model(rng, (8, 8), relu=False), _model(rng, (8, 8), pool=(2, 2, 0)),
             _model(rng, (4, 20)), _model(rng, (6, 1))]
    for model in cases:
        comp = compile_model(model, TINY)
        assert not any(kd.endswith("+vpool") for kd in _kinds(comp).values())
        assert not comp.unstored
        base = compile_model(model, TINY.replace(vpool_entries=0))
        assert comp.steps == base.steps
        for s, s0 in zip(comp.steps, base.steps):
            if hasattr(s, "n_instr"):
                assert disassemble(comp, s) == disassemble(base, s0)
        assert bytes(comp.image) == bytes(base.image)
        _check_isa(comp, model, rng.integers(0, 256, (3, *model.tensors["input"].shape[1:])))


def test_fused_conv_maxpool_on_the_rtl_with_stalls(rng):
    """The tiny RTL (random memory stalls) runs the fused program bit-exact, and the cycle
    model agrees with it (exact counters, cycles within 2 %, deterministic memory). c1 has 5
    channels: two mtiles, a write command a pixel (the stem's kind of STORE); three tiles of
    rows 0-1, 2-3 and 4 (the last: an odd height's last row)."""
    cfg = TINY.replace(acc_depth=16)         # tiles of two rows: the array across STOREs
    model = _model(rng, (5, 8), c1=5)
    comp = compile_model(model, cfg)
    assert _kinds(comp)["c1"] == "conv+vpool" and comp.layers[1].ptiles == 3
    img = rng.integers(0, 256, (3, 5, 8))
    ref = reference.run(model, img, spec=TINY.numeric)
    res = simulate(comp, [img], mem_mode="random", seed=int(rng.integers(1 << 30)))
    assert_layers_equal(model, ref, res[0].tensors, comp.unstored)
    assert compare_layers(model, ref, res[0].tensors) is None     # the stored rows too
    assert "c1@vpool" in res[0].tensors
    res = simulate(comp, [img])
    assert_layers_equal(model, ref, res[0].tensors, comp.unstored)
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)


def test_batched_program_checks_the_pooled_rows_of_every_image(rng):
    """A batched program (the conv+vpool layers per image, the last conv stacked): every
    image's placements (``Compiled.batch_tensors``) hold its stored pooled rows, so a check of
    every layer of every image (the ISA simulator's batched run, the driver's ``infer_batch``
    check mode, ``compare_layers``) compares them with golden's output pooled over rows."""
    model = _model(rng, (12, 12))
    comp = compile_model(model, TINY, batch=2, stack_from="c2")
    assert _kinds(comp)["c1"] == "conv+vpool"
    views = comp.batch_tensors
    assert all("c1@vpool" in v and "c1" not in v for v in views)
    assert views[0]["c1@vpool"].addr != views[1]["c1@vpool"].addr
    imgs = [rng.integers(0, 256, size=(3, 12, 12), dtype=np.uint8) for _ in range(2)]
    for got, img in zip(run_compiled_batch(comp, imgs), imgs):
        ref = reference.run(model, img, spec=TINY.numeric)
        np.testing.assert_array_equal(got["c1@vpool"], _vpool_rows(ref["c1"]))
        assert compare_layers(model, ref, got) is None
