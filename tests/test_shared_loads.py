"""One input load for two convs reading the same input (issue #15, ``Compute.keep``).

A residual block's stride-2 ``conv1`` and its 1x1 stride-2 ``downsample`` read the same tensor
with the same output size: the compiler (``firmware/compiler.py`` ``_compile_pair``) emits one
LOAD_ROWS a pixel tile (the union of the rows both need) and both COMPUTEs on that half, the
first with ``keep``. Compiled both ways (``share_loads``), the shared program is bit-exact on the
ISA simulator and on the tiny RTL with random AXI stalls, reads exactly the bytes the cycle
model counts, and fewer than the program that loads the input twice; programs without such a
pair are byte-identical either way.
"""

import numpy as np
import pytest

from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.compiler import AccelStep, CompileError, compile_model
from ilmpq.firmware.sim import isasim
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode, pixel_tiles

from e2e_util import EXACT_COUNTERS, TOLERANCE, assert_layers_equal

TINY = get_config("tiny")


def _block(seed: int, cfg=TINY, hw=(20, 20), c0=8, c1=12, stem_k=3):
    """stem (``stem_k`` square) -> conv1 (3x3 stride 2, padding 1) and downsample (1x1 stride
    2, no ReLU: a signed residual) -> conv2 (3x3, residual = downsample) -> a 1x1 conv. Returns
    the model and a seeded image."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, *hw))
    t = b.conv("stem", "input", c0, stem_k, padding=stem_k // 2)
    t1 = b.conv("blk.conv1", t, c1, 3, stride=2, padding=1)
    sh = b.conv("blk.downsample", t, c1, 1, stride=2, relu=False)
    t = b.conv("blk.conv2", t1, c1, 3, padding=1, residual=sh)
    t = b.conv("head", t, 4, 1)
    img = rng.integers(0, 256, size=(3, *hw), dtype=np.uint8)
    return b.build(t), img


def _program(comp):
    (step,) = [s for s in comp.steps if isinstance(s, AccelStep)]
    ib = INSTR_BITS // 8
    off = step.prog_addr - comp.base
    return step, [decode(bytes(comp.image[off + i * ib:off + (i + 1) * ib]))
                  for i in range(step.n_instr)]


def _pair_tiles(prog, comp, name):
    """The (LOAD_ROWS, COMPUTE) of each pixel tile of layer ``name``."""
    step, instrs = prog
    names = step.tile_layers
    tiles = pixel_tiles(instrs)
    out = {}
    last_load = None
    for (op, f), t in zip(instrs, tiles):
        if op == Opcode.LOAD_ROWS:
            last_load = f
        if op == Opcode.COMPUTE and names[t] == name:
            out[t] = (last_load, f)
    return out


@pytest.mark.parametrize("act_check", [True, False])
def test_shared_program_on_the_isa_simulator(act_check):
    model, img = _block(3)
    ref = reference.run(model, img, spec=TINY.numeric)
    shared = compile_model(model, TINY, act_check=act_check)
    apart = compile_model(model, TINY, act_check=act_check, share_loads=False)
    for comp in (shared, apart):
        got = isasim.run_compiled(comp, img)
        for layer in model.layers:
            np.testing.assert_array_equal(got[layer.output], ref[layer.output])
    # the structure: conv1 and downsample alternate tile by tile, one LOAD_ROWS for both
    step, instrs = prog = _program(shared)
    rep = {r.name: r for r in shared.layers}
    n = rep["blk.conv1"].ptiles
    assert n == rep["blk.downsample"].ptiles >= 2
    i = step.tile_layers.index("blk.conv1")
    assert step.tile_layers[i:i + 2 * n] == ["blk.conv1", "blk.downsample"] * n
    assert _program(apart)[0].tile_layers is None
    ops = [op for op, _ in instrs]
    ops_apart = [op for op, _ in _program(apart)[1]]
    assert ops.count(Opcode.LOAD_ROWS) == ops_apart.count(Opcode.LOAD_ROWS) - n
    assert ops.count(Opcode.COMPUTE) == ops_apart.count(Opcode.COMPUTE)
    c1, ds = _pair_tiles(prog, shared, "blk.conv1"), _pair_tiles(prog, shared, "blk.downsample")
    for (t1, (l1, f1)), (t2, (l2, f2)) in zip(sorted(c1.items()), sorted(ds.items())):
        assert t2 == t1 + 1 and l1 is l2          # the downsample reads conv1's load
        assert (f1["keep"], f2["keep"]) == (1, 0)
        assert f1["in_rows"] == f2["in_rows"] and f2["ty0"] >= 0
        assert l1["chunk_beats"] == 0             # whole rows, checked or not
    # every other COMPUTE releases its half
    assert sum(f["keep"] for op, f in instrs if op == Opcode.COMPUTE) == n
    # the DMA bytes: the model counts exactly the instructions' reads; the shared program
    # reads fewer (the downsample's rows are not read again)
    es, ea = cm.estimate(shared), cm.estimate(apart)
    assert es.programs[0].counters["bytes_read"] < ea.programs[0].counters["bytes_read"]
    assert es.layer("blk.downsample").bytes_read < ea.layer("blk.downsample").bytes_read
    for name in ("stem", "blk.conv2", "head"):
        assert es.layer(name).bytes_read == ea.layer(name).bytes_read
    assert es.programs[0].counters["bytes_written"] == ea.programs[0].counters["bytes_written"]
    assert es.programs[0].counters["pe_busy"] == ea.programs[0].counters["pe_busy"]
    # the compile report's bytes follow the loads
    rs, ra = ({r.name: r for r in c.layers} for c in (shared, apart))
    assert rs["blk.downsample"].dma_read_bytes < ra["blk.downsample"].dma_read_bytes
    for name in ("stem", "blk.conv2", "head"):
        assert rs[name].dma_read_bytes == ra[name].dma_read_bytes


def test_shared_program_on_the_rtl_with_random_stalls():
    """Bit-exact through the tiny RTL with random AXI stalls and latencies; the run's exact
    counters (bytes read and written, PE beats, instructions) are the cycle model's, and the
    deterministic-memory run is within the model's tolerance. Small: output rows of 33
    pixels, so the pair runs 3 pixel tiles of one row (the stem, rows of 66, on the host)."""
    model, img = _block(5, hw=(6, 66), c0=4, c1=4, stem_k=1)
    shared = compile_model(model, TINY)
    apart = compile_model(model, TINY, share_loads=False)
    ref = reference.run(model, img, spec=TINY.numeric)
    assert [r.ptiles for r in shared.layers if r.name.startswith("blk.")] == [3, 3, 3]
    (rnd,) = simulate(shared, [img], mem_mode="random", seed=11)
    assert_layers_equal(model, ref, rnd.tensors, shared.unstored)
    (det,) = simulate(shared, [img])
    assert_layers_equal(model, ref, det.tensors, shared.unstored)
    pred = cm.estimate(shared).programs[0].counters
    for stats in (rnd.stats, det.stats):
        for k in EXACT_COUNTERS:
            assert pred[k] == stats[k], k
    assert abs(pred["cycles"] - det.stats["cycles"]) <= TOLERANCE * det.stats["cycles"]
    assert det.stats["bytes_read"] < cm.estimate(apart).programs[0].counters["bytes_read"]


def test_programs_without_a_pair_are_byte_identical():
    """No two convs read one input with one output size: the same image either way (no
    ``keep`` bit anywhere), and pairs are left alone where they do not apply (stride 1 next
    to stride 2: different output sizes)."""
    rng = np.random.default_rng(7)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 12, 12))
    t = b.conv("stem", "input", 8, 3, padding=1)
    t1 = b.conv("a", t, 8, 3, stride=2, padding=1)
    t2 = b.conv("b", t, 8, 1)                      # same input, another output size
    t = b.conv("c", t1, 8, 3, padding=1, residual=b.conv("d", t2, 8, 1, stride=2,
                                                          relu=False))
    model = b.build(t)
    for act_check in (True, False):
        on = compile_model(model, TINY, act_check=act_check)
        off = compile_model(model, TINY, act_check=act_check, share_loads=False)
        assert bytes(on.image) == bytes(off.image)
        step, instrs = _program(on)
        assert step.tile_layers is None
        assert not any(f["keep"] for op, f in instrs if op == Opcode.COMPUTE)


def test_share_loads_must_be_a_bool():
    model, _ = _block(1)
    with pytest.raises(CompileError, match="share_loads = 1 is not allowed: it must be True or "
                                           "False"):
        compile_model(model, TINY, share_loads=1)


@pytest.mark.parametrize("act_check", [True, False])
def test_pair_with_different_tilings_either_way(monkeypatch, act_check):
    """conv1's input rows limit its tiles to one output row (4 rows of 32 x 32 activations
    fill half of tiny's buffer), the downsample's own tiles take two (one through strided loads,
    unchecked): the common tiling costs
    the downsample a weight stream per extra tile, so the compiler lets the cycle model pick.
    Forced each way (``_PAIR_MARGIN``), both programs are bit-exact, and the one kept apart is
    exactly the program compiled without sharing (each conv on its own tiling; unchecked, the
    projection through strided loads)."""
    from ilmpq.firmware import compiler
    rng = np.random.default_rng(9)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 6, 32))
    t = b.conv("stem", "input", 16, 1)         # 16 rows in 4 mtiles: 32 positions a pixel
    t1 = b.conv("blk.conv1", t, 8, 3, stride=2, padding=1)
    sh = b.conv("blk.downsample", t, 8, 1, stride=2, relu=False)
    model = b.build(b.conv("blk.conv2", t1, 8, 3, padding=1, residual=sh))
    img = rng.integers(0, 256, size=(3, 6, 32), dtype=np.uint8)
    ref = reference.run(model, img, spec=TINY.numeric)
    off = compile_model(model, TINY, act_check=act_check, share_loads=False)
    rep = {r.name: r.ptiles for r in off.layers}
    # (unchecked, the strided projection loads only its pixels: one tile)
    assert rep["blk.conv1"] == 3 and rep["blk.downsample"] == (2 if act_check else 1)
    for margin, shared in ((-1.0, False), (float("inf"), True)):
        monkeypatch.setattr(compiler, "_PAIR_MARGIN", margin)
        comp = compile_model(model, TINY, act_check=act_check)
        got = isasim.run_compiled(comp, img)
        for layer in model.layers:
            np.testing.assert_array_equal(got[layer.output], ref[layer.output])
        step, instrs = _program(comp)
        keeps = sum(f["keep"] for op, f in instrs if op == Opcode.COMPUTE)
        if shared:
            assert keeps == 3 and step.tile_layers.count("blk.downsample") == 3
        else:
            assert keeps == 0 and step.tile_layers is None
            assert bytes(comp.image) == bytes(off.image)


def test_imported_torchvision_order_block_shares_its_load():
    """An ONNX downsampling block in torchvision's order (conv1, conv2, then the 1x1 stride-2
    projection; one Add): the importer fuses the Add into conv2 and moves the projection right
    after conv1 (golden/onnx_import.py), so the compiled program pairs them (a COMPUTE with
    ``keep``) and is bit-exact on the ISA simulator."""
    from onnx_graphs import projection_block

    from ilmpq.golden.onnx_import import load_onnx
    from ilmpq.golden.quantize import quantize

    rng = np.random.default_rng(11)
    model, _ = projection_block(rng, hw=12, c0=8, c1=12)
    qm = quantize(load_onnx(model), rng.integers(0, 256, (6, 3, 12, 12)), ratio=TINY.ratio,
                  spec=TINY.numeric, report=False)
    comp = compile_model(qm, TINY)
    step, instrs = _program(comp)
    assert step.tile_layers is not None
    assert any(f["keep"] for op, f in instrs if op == Opcode.COMPUTE)
    img = rng.integers(0, 256, size=(3, 12, 12), dtype=np.uint8)
    got, ref = isasim.run_compiled(comp, img), reference.run(qm, img, spec=TINY.numeric)
    for layer in qm.layers:
        np.testing.assert_array_equal(got[layer.output], ref[layer.output])
