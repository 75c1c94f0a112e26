"""Batching (issue #15, docs/architecture.md *Batching*): ``compile_model(batch=B)`` runs the
per-image layers once per image and the weight-bound ones once on the B images stacked (back
to back, or with gap rows where a stride forces them), a conv reading the rows outside an output
row's image as padding (``Compute.img_rows`` etc.); every image's every tensor bit-exact with
golden run on that image alone, on the ISA simulator and the tiny RTL (random AXI stalls);
batch 1 unchanged."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal, assert_model_agrees
from ilmpq.firmware.compiler import CompileError, compile_model, disassemble
from ilmpq.firmware.sim.isasim import run_compiled, run_compiled_batch
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import Opcode, decode

TINY = get_config("tiny")


def block_model(rng, hw=(8, 8), c=(5, 6), classes=10):
    """stem 3x3 -> a stride-2 block (3x3/2 conv1, 1x1/2 projection, 3x3 conv2 with the
    residual) -> a stride-1 3x3 conv with an identity residual -> global average pooling ->
    flatten -> FC (signed logits): ResNet's late stages in small."""
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, *hw))
    x = b.conv("stem", "input", c[0], 3, padding=1)
    y = b.conv("b.c1", x, c[1], 3, stride=2, padding=1)
    d = b.conv("b.ds", x, c[1], 1, stride=2, relu=False)
    z = b.conv("b.c2", y, c[1], 3, padding=1, residual=d)
    w = b.conv("c3", z, c[1], 3, padding=1, residual=z)
    g = b.gap("gap", w)
    return b.build(b.fc("fc", b.flatten("flat", g), classes))


def images(rng, n, hw):
    """Different images per slot, edges on purpose: a random one, all 255, all 0."""
    out = [rng.integers(0, 256, size=(3, *hw)), np.full((3, *hw), 255), np.zeros((3, *hw))]
    out += [rng.integers(0, 256, size=(3, *hw)) for _ in range(n)]
    return [np.asarray(i, np.int64) for i in out[:n]]


def assert_batch_exact(model, imgs, got):
    for b, img in enumerate(imgs):
        ref = reference.run(model, img, spec=TINY.numeric)
        assert set(got[b]) == set(model.tensors)
        for name, v in got[b].items():
            np.testing.assert_array_equal(v, ref[name], err_msg=f"image {b}, tensor {name!r}")


@pytest.mark.parametrize("batch,stack_from,hw,gapped,phased", [
    # the stride-2 transition: stem's 12 rows back to back, b.c1's 12 stacked output rows in
    # tiles of 10 (the accumulator depth) and 2: the first reads both images' rows, the second
    # starts inside image 1 (a phase of 8)
    (2, "b.c1", (12, 12), False, True),
    (3, "b.c1", (7, 8), True, False),   # 7 rows into a stride-2 conv: a period of 8, a gap row
    (3, "b.c2", (8, 7), False, False),  # stride-1 stacking from the residual conv (host layout)
    (2, None, (8, 8), False, False),    # the compiler's choice (tiny: the FC is weight-bound)
    (4, "c3", (6, 6), False, False),
])
def test_isa_sim_every_image_bit_exact(rng, batch, stack_from, hw, gapped, phased):
    model = block_model(rng, hw)
    comp = compile_model(model, TINY, batch=batch, stack_from=stack_from)
    assert comp.batch == batch and comp.one_program
    assert comp.batch_from == (stack_from or "gap")
    imgs = images(rng, batch, hw)
    assert_batch_exact(model, imgs, run_compiled_batch(comp, imgs))
    names = [r.name for r in comp.layers]
    # per-image copies of the layers before the stacked ones, the stacked ones once
    k = [l.name for l in model.layers].index(comp.batch_from)
    for lay in model.layers[:k]:
        assert all(f"{lay.name}@{b}" in names for b in range(1, batch)), lay.name
    for lay in model.layers[k:]:
        if lay.kind != "gap":
            assert f"{lay.name}@1" not in names, lay.name
    prog = [decode(raw) for raw in _program(comp)]
    stk = [f for op, f in prog if op == Opcode.COMPUTE and f["pool"] == 0 and f["img_rows"]]
    if stack_from is not None:
        assert stk                       # the rows outside an image read as padding somewhere
    # back to back (no gap rows, no gap-filling copies) unless a stride forces a gap
    assert any(f["img_period"] > f["img_rows"] for f in stk) == gapped
    assert ("gapfill" in {r.kind for r in comp.layers}) == gapped
    assert all(f["img_period"] >= f["img_rows"] for f in stk)
    # tiles read rows of several images; tiles starting inside an image (phase not 0)
    assert not stk or any(f["in_rows"] > f["img_rows"] for f in stk)
    assert any(f["img_phase"] for f in stk) == phased
    if stack_from == "b.c1":
        # the stacked conv1 and projection share their loads, tile by tile, as for one image
        # (tests/test_shared_loads.py): one LOAD_ROWS, conv1's COMPUTE keeps the half
        tl = comp.steps[0].tile_layers
        i, n = tl.index("b.c1"), tl.count("b.c1")
        assert n == tl.count("b.ds") and tl[i:i + 2 * n] == ["b.c1", "b.ds"] * n
        comps = [f for op, f in prog if op == Opcode.COMPUTE and f["pool"] == 0]
        assert sum(f["keep"] for f in comps) == n
    # activation integrity kept: every load checks its rows' entries (the gap rows between
    # the images of a stacked tensor written by the gap-filling copies), every STORE writes
    # its rows' entries
    for op, f in prog:
        if op == Opcode.LOAD_ROWS:
            assert f["chk_beats"]
        if op == Opcode.STORE:
            assert f["chk_row_pixels"]


def _program(comp):
    step = comp.steps[0]
    ib = 48
    off = step.prog_addr - comp.base
    return [bytes(comp.image[off + i * ib:off + (i + 1) * ib]) for i in range(step.n_instr)]


def test_image_rows_matter(rng):
    """The same stacked program with the stacked-image fields cleared reads the neighbouring
    image's rows instead of padding: the stacked convs then differ from golden (the test above
    would catch a compiler that set none)."""
    from ilmpq.firmware.sim import isasim
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2, stack_from="b.c2")
    imgs = images(rng, 2, (8, 8))
    refs = [reference.run(model, img, spec=TINY.numeric) for img in imgs]
    orig = isasim.run_program

    def no_gaps(cfg, mem, prog_addr, n_instr, *a, **k):
        # clear every COMPUTE's stacked-image fields in memory (and reseal) before running
        from ilmpq.hdl.isa import encode, seal
        step = comp.steps[0]
        for i in range(n_instr):
            raw = mem.read(prog_addr + 48 * i, 48)
            op, f = decode(raw)
            if op == Opcode.COMPUTE and f["img_rows"]:
                f.update(img_rows=0, img_period=0, img_phase=0, img_pad=0)
                mem.write(prog_addr + 48 * i, seal(encode(op, **f), i, prog_addr,
                                                   step.prog_tag))
        return orig(cfg, mem, prog_addr, n_instr, *a, **k)
    isasim.run_program = no_gaps
    try:
        got = run_compiled_batch(comp, imgs)
    finally:
        isasim.run_program = orig
    assert any(not np.array_equal(got[b][n], refs[b][n]) for b in range(2)
               for n in ("b.c2", "c3"))


@pytest.mark.parametrize("bad", [dict(img_phase=None), dict(img_period=1),
                                 dict(img_rows=None)])
def test_isa_sim_rejects_bad_stack_fields(rng, bad):
    """A COMPUTE whose phase is not below its period, whose period is below its stride or
    below its image rows: INSTR_FIELD, as hdl/compute.py (tests/hdl/test_compute_gap_rows.py).
    ``None``: one more than the period."""
    from ilmpq.firmware.sim import isasim
    from ilmpq.hdl.isa import encode, seal
    from ilmpq.hdl.status import ErrorCode
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2, stack_from="b.c1")
    orig = isasim.run_program

    def corrupt(cfg, mem, prog_addr, n_instr, *a, **k):
        step = comp.steps[0]
        for i in range(n_instr):
            op, f = decode(mem.read(prog_addr + 48 * i, 48))
            if op == Opcode.COMPUTE and f["stride_y"] == 2 and f["img_rows"]:
                f.update({k: f["img_period"] + 1 if v is None else v for k, v in bad.items()})
                mem.write(prog_addr + 48 * i, seal(encode(op, **f), i, prog_addr,
                                                   step.prog_tag))
                break
        else:
            raise AssertionError("no stacked stride-2 COMPUTE")
        return orig(cfg, mem, prog_addr, n_instr, *a, **k)
    isasim.run_program = corrupt
    try:
        with pytest.raises(isasim.IsaFault, match="stacked-image fields") as e:
            run_compiled_batch(comp, images(rng, 2, (8, 8)))
    finally:
        isasim.run_program = orig
    assert e.value.code == ErrorCode.INSTR_FIELD


def test_rtl_batched_random_stalls(rng):
    """The stride-2 transition, the stacked residual convs, per-image pooling and the batched
    FC through the tiny RTL with random AXI stalls and CSR timing: 2 images (small: one
    mtile a layer) of 3 rows, so the stride-2 conv's input has a gap row (a period of 4,
    filled by a copy); the gap-free case: tests/test_batch_frames.py."""
    model = block_model(rng, (3, 5), c=(4, 4), classes=4)
    comp = compile_model(model, TINY, batch=2, stack_from="b.c1")
    assert "gapfill" in {r.kind for r in comp.layers}
    imgs = images(rng, 2, (3, 5))
    res = simulate(comp, imgs, mem_mode="random", seed=int(rng.integers(1 << 30)),
                   csr_rng=True)
    assert len(res) == 2
    for img, r in zip(imgs, res):
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), r.tensors)


def test_cycle_model_matches_rtl_on_a_batched_program(rng):
    """The cycle model times the batched instruction stream (per-image copies, stacked convs
    reading the rows outside an image as padding, per-image pooling, the batched FC) like the RTL:
    exact counters, cycles within 2 % (deterministic memory)."""
    from ilmpq.firmware import cyclemodel as cm
    model = block_model(rng, (4, 5), c=(4, 4), classes=4)
    comp = compile_model(model, TINY, batch=2, stack_from="b.c1")
    imgs = images(rng, 2, (4, 5))
    res = simulate(comp, imgs)
    for img, r in zip(imgs, res):
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), r.tensors)
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)


def test_batch_one_is_the_unbatched_program(rng):
    """``batch=1`` compiles exactly what a compile without it does (same image, same
    instructions), and the ISA simulator agrees with the batched run's image 0."""
    model = block_model(rng, (8, 8))
    a = compile_model(model, TINY)
    b = compile_model(model, TINY, batch=1)
    assert bytes(a.image) == bytes(b.image)
    assert disassemble(a, a.steps[0]) == disassemble(b, b.steps[0])
    img = images(rng, 1, (8, 8))[0]
    one = run_compiled(a, img)
    two = run_compiled_batch(compile_model(model, TINY, batch=2, stack_from="b.c1"),
                             [img, img])
    for name in model.tensors:
        np.testing.assert_array_equal(two[0][name], one[name])
        np.testing.assert_array_equal(two[1][name], one[name])


@pytest.mark.parametrize("batch", [0, -1, 17, 2.0, True, "2"])
def test_bad_batch_is_one_clear_error(rng, batch):
    model = block_model(rng, (8, 8))
    with pytest.raises(CompileError, match=r"batch = .* is not allowed: it must be an integer "
                                           r"in \[1, 16\]"):
        compile_model(model, TINY, batch=batch)


def test_bad_stack_from_is_one_clear_error(rng):
    model = block_model(rng, (8, 8))
    with pytest.raises(CompileError, match="'nope' is not a layer of the model"):
        compile_model(model, TINY, batch=2, stack_from="nope")
    with pytest.raises(CompileError, match="stack_from = 'stem'.*read the input"):
        compile_model(model, TINY, batch=2, stack_from="stem")
    with pytest.raises(CompileError, match="stack_from = 'fc' is not allowed"):
        compile_model(model, TINY, stack_from="fc")


def test_driver_refuses_single_image_run_of_a_batched_program(rng):
    from ilmpq.firmware.driver import Driver, run_sync
    from ilmpq.golden.errors import IlmpqValueError
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2)
    drv = Driver.__new__(Driver)
    with pytest.raises(IlmpqValueError, match="compiled for batches of 2 images"):
        run_sync(drv.infer(comp, images(rng, 1, (8, 8))[0]))
    with pytest.raises(IlmpqValueError, match="exactly its 2 images, got 3"):
        run_sync(drv.infer_batch(comp, images(rng, 3, (8, 8))))
