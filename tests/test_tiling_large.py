"""Large tensors on the accelerator (issue #16, "Large tensors"), on small configurations where
the tiling triggers:

* a residual wider than the store unit's row buffer (``max_channels``): the STORE reads each
  residual pixel whole and keeps a window per mtile (``LaneParams.res_win``; the compiler
  orders the rows by their residual position);
* pooling whose input rows do not fit half of the activation buffer: channel groups, each a
  gathering LOAD_ROWS (rows read whole and checked, the group's bytes kept), a pooling COMPUTE
  and a STORE of its channel positions;
* weights above one LOAD_WEIGHTS stream: several streams of whole packages per pixel tile
  (the stream limit is lowered here: the real one, ``MAX_COMMAND_BEATS``, needs 8 MB);
* an FC above 1023 groups of ``tn`` input positions after a Flatten: the HxW conv it is.

Every stored tensor against golden with ``assert_array_equal``, on the Amaranth RTL (the
deterministic memory with exact counters and the cycle model within 2 %, and random AXI stalls
with the protocol checkers) and on the ISA simulator.
"""

import dataclasses

import pytest

from e2e_util import assert_layers_equal, assert_model_agrees
from ilmpq.firmware import compiler
from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import Opcode, decode, INSTR_BITS

TINY = get_config("tiny")
#: max_channels 24 (3 beats: not a power of two) < the 32 channel positions of a 16-channel
#: tensor on tiny; half an activation buffer of 32 words of tn = 4
SMALL = dataclasses.replace(TINY, name="tiny_tiles", max_channels=24, act_depth=64)
SHAPE = (4, 4, 4)


def _big_model(rng, cfg=SMALL, maxpool=True):
    """conv a (16 ch) -> conv b (1x1, residual a: 32 positions > max_channels) -> 2x2 max
    pooling, stride 1 (2 rows of 4 x 32 do not fit: 2 groups) -> global average pooling
    (3 x 3 x 32 do not fit: 4 groups) -> flatten -> FC 6. ``maxpool=False``: without the max
    pooling (the global average pooling of 4 x 4 x 32 in 4 groups)."""
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=SHAPE)
    x = b.conv("a", "input", 16, 3, padding=1)
    y = b.conv("b", x, 16, 1, residual=x)
    p = b.maxpool("mp", y, 2, 1, 0) if maxpool else y
    g = b.gap("gap", p)
    return b.build(b.fc("fc", b.flatten("flat", g), 6))


def _programs(comp):
    ib = INSTR_BITS // 8
    out = []
    for s in comp.steps:
        if isinstance(s, compiler.AccelStep):
            off = s.prog_addr - comp.base
            out.append([decode(bytes(comp.image[off + i * ib:off + (i + 1) * ib]))
                        for i in range(s.n_instr)])
    return out


@pytest.fixture
def small_streams(monkeypatch):
    """LOAD_WEIGHTS streams of at most 80 beats (two tiny packages): several per pixel tile."""
    monkeypatch.setattr(compiler, "MAX_COMMAND_BEATS", 80)


def test_structure_of_the_tiled_program(rng, small_streams):
    model = _big_model(rng)
    comp = compile_model(model, SMALL)
    assert [r.where for r in comp.layers] == ["accel"] * 4 + ["free", "accel"]
    assert len(comp.steps) == 1
    prog = _programs(comp)[0]
    ops = [op for op, _ in prog]
    # several weight streams per conv tile: the first before the COMPUTE, the rest after the
    # STORE, sequence numbers continuing across the streams
    lw = [f for op, f in prog if op == Opcode.LOAD_WEIGHTS]
    n_conv = sum(1 for op, f in prog if op == Opcode.COMPUTE and not f["pool"])
    assert len(lw) > n_conv and all(f["beats"] <= 80 for f in lw)
    tiles = []                   # the streams of each pixel tile: sequence numbers go on
    for op, f in prog:
        if op == Opcode.LOAD_ROWS:
            tiles.append([])
        elif op == Opcode.LOAD_WEIGHTS:
            tiles[-1].append(f["seq_base"])
    assert any(len(t) > 1 for t in tiles) and all(t == sorted(set(t)) for t in tiles)
    k = ops.index(Opcode.COMPUTE)
    assert ops[k - 1:k + 3] == [Opcode.LOAD_WEIGHTS, Opcode.COMPUTE, Opcode.STORE,
                                Opcode.LOAD_WEIGHTS]
    # the pooling layers in channel groups: gathering loads, checked
    rep = {r.name: r for r in comp.layers}
    pooled = [comp.tensors[n] for n in ("b", "mp")]
    gl = [f for op, f in prog if op == Opcode.LOAD_ROWS and f["gather"] and
          any(t.addr <= f["addr"] < t.addr + t.nbytes for t in pooled)]
    assert rep["mp"].ptiles % 2 == 0 and rep["gap"].ptiles == 4
    assert len(gl) == rep["mp"].ptiles + rep["gap"].ptiles and all(f["chk_beats"] for f in gl)
    # the wide residual read whole (and checked) per pixel
    st = [f for op, f in prog if op == Opcode.STORE and f["res_en"]]
    assert st and all(f["res_beats"] * 8 == 32 and f["res_chk_beats"] for f in st)
    img = rng.integers(0, 256, size=SHAPE)
    ref = reference.run(model, img, spec=SMALL.numeric)
    assert_layers_equal(model, ref, run_compiled(comp, img))


def test_rtl_exact_counters_and_cycle_model(rng, small_streams):
    """Deterministic memory: the RTL's tensors are golden's, its byte / beat / instruction
    counters are the cycle model's exactly and its cycles within 2 %."""
    from test_cyclemodel import _run_rtl_amaranth
    model = _big_model(rng, maxpool=False)
    comp = compile_model(model, SMALL)
    imgs = [rng.integers(0, 256, size=SHAPE)]
    ((stats, tensors),) = _run_rtl_amaranth(SMALL, [comp], imgs)
    assert_layers_equal(model, reference.run(model, imgs[0], spec=SMALL.numeric), tensors)
    assert_model_agrees(cm.estimate(comp).programs[0], stats)


def test_rtl_random_stalls(rng, small_streams):
    model = _big_model(rng)
    comp = compile_model(model, SMALL)
    imgs = [rng.integers(0, 256, size=SHAPE)]
    for img, res in zip(imgs, simulate(comp, imgs, mem_mode="random",
                                       seed=int(rng.integers(1 << 30)), csr_rng=True)):
        assert_layers_equal(model, reference.run(model, img, spec=SMALL.numeric), res.tensors)


def test_residual_windows_follow_the_lanes(rng):
    """Other residual widths and producers (a residual written by a conv of another row split,
    the network input as a residual) on the ISA simulator; every mtile's lanes read inside its
    window (the simulator refuses a read outside it)."""
    for mc, ch in ((32, 20), (48, 40), (64, 40)):
        cfg = dataclasses.replace(TINY, name=f"tiny_mc{mc}", max_channels=mc)
        b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 4, 5))
        x = b.conv("a", "input", ch, 3, padding=1)
        y = b.conv("b", x, ch, 3, padding=1, residual=x)
        model = b.build(b.conv("c", y, ch, 1, residual=y))
        comp = compile_model(model, cfg)
        assert all(r.where == "accel" for r in comp.layers), [r.cpu_reason for r in comp.layers]
        assert comp.tensors["a"].c_mem > mc
        img = rng.integers(0, 256, size=(3, 4, 5))
        assert_layers_equal(model, reference.run(model, img, spec=cfg.numeric),
                            run_compiled(comp, img))


def test_residual_spread_too_wide_stays_on_the_host(rng):
    """A residual whose channels an mtile cannot read inside one window of max_channels bytes
    keeps its layer on the host, with that reason."""
    cfg = dataclasses.replace(TINY, name="tiny_mc8", max_channels=8)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 4, 5))
    x = b.conv("a", "input", 24, 3, padding=1)
    model = b.build(b.conv("b", x, 24, 1, residual=x))
    comp = compile_model(model, cfg)
    rep = {r.name: r for r in comp.layers}
    assert rep["a"].where == "accel" and rep["b"].where == "cpu"
    assert "max_channels = 8" in rep["b"].cpu_reason and "residual" in rep["b"].cpu_reason
    img = rng.integers(0, 256, size=(3, 4, 5))
    assert_layers_equal(model, reference.run(model, img, spec=cfg.numeric),
                        run_compiled(comp, img))


def test_fc_above_1023_groups_runs_as_a_conv(rng):
    """An FC on the flattened (32, 11, 12) input: 4224 positions > 1023 groups of tn = 4, run
    as the 11 x 12 conv over 32 channels; its weights in several streams too. An FC whose
    flattened tensor is too large for a 15 x 15 kernel keeps the reason."""
    cfg = dataclasses.replace(TINY, name="tiny_fc", act_depth=4096)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(32, 11, 12))
    model = b.build(b.fc("fc", b.flatten("flat", "input"), 6))
    comp = compile_model(model, cfg)
    assert [r.where for r in comp.layers] == ["free", "accel"]
    ((op, f),) = [(o, f) for o, f in _programs(comp)[0] if o == Opcode.COMPUTE]
    assert (f["kh"], f["kw"], f["groups"]) == (11, 12, 8)
    img = rng.integers(0, 256, size=(32, 11, 12))
    assert_layers_equal(model, reference.run(model, img, spec=cfg.numeric),
                        run_compiled(comp, img))
    assert cm.estimate(comp).programs[0].cycles > 0

    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(24, 16, 16))
    model = b.build(b.fc("fc", b.flatten("flat", "input"), 4))
    rep = compile_model(model, cfg).layers[-1]
    assert rep.where == "cpu" and "1023 groups of tn" in rep.cpu_reason
