"""The compiler, checked through the instruction-level simulator against golden."""

import re

import numpy as np
import pytest

from ilmpq.firmware.compiler import CompileError, compile_model
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.golden import reference
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import HWConfig, get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode

CONFIGS = {
    "tiny": get_config("tiny"),
    # words wider than a beat (tn=16), several beats per weight word, R = 1/8
    "wide": HWConfig(name="wide", lanes_lo=7, lanes_hi=1, tn=16, wbuf_word_beats=2,
                     wbuf_depth=64, act_depth=4096, acc_depth=128),
    # odd lanes and R = 2/5
    "odd": HWConfig(name="odd", lanes_lo=3, lanes_hi=2, tn=8, act_depth=2048, acc_depth=32),
    # 4- and 5-bit activations: the 8-bit pixel layer runs on the CPU, the rest on the array
    "a4": get_config("tiny").replace(name="a4", act_bits=4),
    "a5": get_config("tiny").replace(name="a5", act_bits=5),
}


def assert_tensors_equal(model, ref, got):
    """Every layer output equal (the input may be stored column-folded, see fold_columns)."""
    for layer in model.layers:
        np.testing.assert_array_equal(got[layer.output], ref[layer.output],
                                      err_msg=f"tensor {layer.output!r}")


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(4))
def test_compiled_program_matches_golden(cfg_name, seed):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(1000 + seed)
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio)
    comp = compile_model(model, cfg)
    for _ in range(2):
        img = rng.integers(0, 256, size=model.tensors[model.input].shape)
        assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                             run_compiled(comp, img))


def test_edge_images_full_scale_and_zero():
    cfg = CONFIGS["tiny"]
    rng = np.random.default_rng(7)
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio)
    comp = compile_model(model, cfg)
    shape = model.tensors[model.input].shape
    for img in (np.full(shape, 255), np.zeros(shape, np.int64)):
        assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                             run_compiled(comp, img))


def test_program_structure_and_report():
    cfg = CONFIGS["tiny"]
    model = random_qmodel(np.random.default_rng(3), spec=cfg.numeric, ratio=cfg.ratio)
    comp = compile_model(model, cfg)
    for step in comp.steps:
        if not hasattr(step, "prog_addr"):
            continue
        ib = INSTR_BITS // 8
        dec = [decode(comp.image[step.prog_addr - comp.base + ib * i:
                                 step.prog_addr - comp.base + ib * (i + 1)])
               for i in range(step.n_instr)]
        ops = [op for op, _ in dec]
        assert ops[-1] == Opcode.END
        body = ops[:-1]
        # conv tiles: LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, STORE; pooling tiles have no weights;
        # after a COMPUTE with keep (two convs sharing their loads) the next tile reads the
        # same rows: LOAD_WEIGHTS, COMPUTE (keep clear), STORE
        conv = [Opcode.LOAD_ROWS, Opcode.LOAD_WEIGHTS, Opcode.COMPUTE, Opcode.STORE]
        pool = [Opcode.LOAD_ROWS, Opcode.COMPUTE, Opcode.STORE]
        i, kept = 0, False
        while i < len(body):
            pat = conv[1:] if kept else conv if body[i + 1] == Opcode.LOAD_WEIGHTS else pool
            assert body[i:i + len(pat)] == pat, (i, body[i:i + len(pat)])
            keep = dec[i + len(pat) - 2][1]["keep"]
            assert not (kept and keep), i          # a load serves at most two COMPUTEs
            kept = bool(keep)
            i += len(pat)
        assert not kept
    # every layer of the random model (convs, max pooling, global average pooling, FC) runs
    # on the accelerator: one program per frame
    assert [type(s).__name__ for s in comp.steps] == ["AccelStep"]
    assert all(r.where in ("accel", "free") for r in comp.layers)
    text = comp.report()
    assert "stem" in text and "utilization" in text
    assert "1 accelerator program per frame, nothing on the host" in text


@pytest.mark.parametrize("cfg_name", ["a4", "a5"])
def test_8bit_pixel_layer_goes_to_cpu_for_narrow_activations(cfg_name):
    cfg = CONFIGS[cfg_name]
    model = random_qmodel(np.random.default_rng(5), spec=cfg.numeric, ratio=cfg.ratio)
    comp = compile_model(model, cfg)
    first = comp.layers[0]
    assert (first.name, first.where) == (model.layers[0].name, "cpu")
    assert all(r.where != "cpu" for r in comp.layers if r.kind in ("conv", "fc")
               and r.name != first.name)
    # the report says which layer needs the host and why; such a model is several programs
    assert (f"the host runs: {first.name} (8-bit input into the {cfg.act_bits}-bit datapath)"
            in comp.report())
    assert not comp.one_program and not comp.slots


def test_stem_columns_folded_into_channels():
    """A 3-channel 7x7 stride-2 stem on tn=16: folding the 7 kernel columns into 21 channels
    needs 2 input groups per kernel row instead of 7 (one group per kernel column); a
    space-to-depth by the stride first (12 channels, a 4x4 stride-1 kernel, folded into 48
    channels = 3 groups) needs 4 x 3 = 12 sets instead of 7 x 2 = 14."""
    cfg = CONFIGS["wide"]
    from ilmpq.golden.random_models import ModelBuilder
    rng = np.random.default_rng(9)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 12, 11))
    b.conv("stem", "input", 8, 7, stride=2, padding=3)
    model = b.build("stem")
    comp = compile_model(model, cfg)
    rep = comp.layers[0]
    assert rep.kind == "conv**"
    assert rep.sets_per_mtile == 4 * 3          # kh' x ceil(4*3*4/16)
    assert rep.macs == 8 * 3 * 7 * 7 * 6 * 6    # the layer's MACs, not the padded kernel's
    assert comp.tensors["input"].fold == (4, 1, 2, 6) and comp.tensors["input"].s2d == 2
    for _ in range(2):
        img = rng.integers(0, 256, size=(3, 12, 11))
        assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                             run_compiled(comp, img))


@pytest.mark.parametrize("shape,k,stride,padding", [
    ((3, 13, 10), 7, 2, 3), ((1, 9, 9), 5, 2, 2), ((2, 11, 12), 3, 3, (1, 0, 2, 1)),
    ((3, 8, 8), 3, 2, 1), ((3, 9, 7), 4, 3, (1, 2, 0, 1)),
])
def test_stem_layouts_odd_sizes_bit_exact(shape, k, stride, padding):
    """Whatever stem layout the compiler picks (plain, column fold, space-to-depth + fold),
    odd sizes and asymmetric padding give golden's output; the input reads back."""
    cfg = CONFIGS["wide"]
    from ilmpq.golden.random_models import ModelBuilder
    rng = np.random.default_rng(sum(shape) + k)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    b.conv("stem", "input", 8, k, stride=stride, padding=padding)
    model = b.build("stem")
    comp = compile_model(model, cfg)
    img = rng.integers(0, 256, size=shape)
    got = run_compiled(comp, img)
    assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric), got)
    inp = comp.tensors["input"]
    assert inp.from_memory(inp.to_memory(img)).shape == shape


def test_act_bits_mismatch_rejected():
    cfg = CONFIGS["tiny"]
    model = random_qmodel(np.random.default_rng(1), spec=cfg.replace(act_bits=5).numeric,
                          ratio=cfg.ratio)
    with pytest.raises(CompileError, match=r"quantized for 5-bit activations but configuration "
                                           r"'tiny' has act_bits = 8"):
        compile_model(model, cfg)


def test_too_wide_row_runs_on_the_host():
    """A conv whose output row exceeds the accumulator depth cannot run on the accelerator: it
    runs on the host (golden's integer op), the report says why, the result is bit-exact (it
    was a compile error before the host fallback)."""
    cfg = CONFIGS["tiny"].replace(acc_depth=4)
    model = random_qmodel(np.random.default_rng(1), spec=cfg.numeric, ratio=cfg.ratio,
                          input_shape=(3, 16, 16))
    comp = compile_model(model, cfg)
    host = [r for r in comp.layers if r.where == "cpu"]
    convs = [r for r in host if r.kind == "conv"]
    assert convs and all(re.search(r"an output row of \d+ pixels exceeds the accumulator "
                                   r"depth 4", r.cpu_reason) for r in convs)
    assert all(r.cpu_reason for r in host)
    assert "the host runs:" in comp.report()
    img = np.random.default_rng(2).integers(0, 256, model.tensors[model.input].shape)
    assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                         run_compiled(comp, img))


# -- integrity: sealed programs, CRC-trailed lane parameters, the activation arena ---------

def _compiled_for_integrity(seed=7, cfg_name="tiny", **kw):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(seed)
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio)
    return cfg, model, compile_model(model, cfg, **kw), rng


def _instructions(comp):
    from ilmpq.firmware.compiler import AccelStep
    from ilmpq.hdl.isa import INSTR_BITS
    ib = INSTR_BITS // 8
    progs = [(s.prog_addr, s.n_instr, s.prog_tag) for s in comp.steps
             if isinstance(s, AccelStep)]
    progs += [(fs.prog_addr, fs.n_instr, fs.prog_tag) for fs in comp.slots]
    for pa, n, tag in sorted(set(progs)):
        for i in range(n):
            off = pa - comp.base + i * ib
            yield pa, i, tag, bytes(comp.image[off:off + ib])


@pytest.mark.parametrize("cfg_name", ["tiny", "a4"])
def test_arena_holds_every_tensor_and_nothing_read_only(cfg_name):
    """Every tensor (frame-slot copies included) lies in the arena; every program, weight
    stream and lane-parameter block lies in the window before it; every STORE's whole output
    range lies in the arena."""
    from ilmpq.hdl.isa import INSTR_BITS, params_block_bytes
    cfg, model, comp, _ = _compiled_for_integrity(cfg_name=cfg_name)
    lo, hi = comp.arena
    assert comp.window[0] < lo < hi <= comp.window[1]
    for t in comp.tensors.values():
        assert lo <= t.addr and t.addr + t.nbytes <= hi, t.name
    for fs in comp.slots:
        for a, t in ((fs.input_addr, comp.tensors[comp.input]),
                     (fs.output_addr, comp.tensors[comp.output])):
            assert lo <= a and a + t.nbytes <= hi
    for pa, i, _tag, raw in _instructions(comp):
        assert comp.window[0] <= pa and pa + (i + 1) * INSTR_BITS // 8 <= lo
        op, f = decode(raw)
        if op == Opcode.LOAD_WEIGHTS:
            assert f["addr"] + f["beats"] * cfg.beat_bytes <= lo
        if op == Opcode.STORE:
            assert f["params_addr"] + f["n_mtiles"] * params_block_bytes(cfg.lanes_pad) <= lo
            end = f["out_addr"] + (f["pixels"] - 1) * f["out_stride"] + \
                f["n_mtiles"] * cfg.lanes_pad
            assert lo <= f["out_addr"] and end <= hi
        if op == Opcode.LOAD_ROWS:
            assert lo <= f["addr"] and f["addr"] + f["beats"] * cfg.beat_bytes <= hi


def test_every_instruction_is_sealed_for_its_index_program_and_tag():
    from ilmpq.hdl.isa import is_sealed
    _, model, comp, _ = _compiled_for_integrity()
    seen = 0
    for pa, i, tag, raw in _instructions(comp):
        assert is_sealed(raw, i, pa, tag)
        assert not is_sealed(raw, i + 1, pa, tag) and not is_sealed(raw, i, pa + 32, tag)
        assert not is_sealed(raw, i, pa, tag ^ 1)
        seen += 1
    assert seen > 0
    tags = {tag for _, _, tag, _ in _instructions(comp)}
    assert len(tags) == len({pa for pa, _, _, _ in _instructions(comp)})   # one per program
    # the same model compiled again: the same tags; one bias changed: other tags
    again = compile_model(model, comp.config)
    assert {t for _, _, t, _ in _instructions(again)} == tags
    from ilmpq.firmware.compiler import AccelStep
    on_accel = {n for s in comp.steps if isinstance(s, AccelStep) for n in s.layers}
    layer = next(l for l in model.layers if hasattr(l, "bias") and l.name in on_accel)
    bias = np.array(layer.bias, np.int64)
    bias[0] += 1 if bias[0] < 0 else -1
    object.__setattr__(layer, "bias", bias)
    other = compile_model(model, comp.config)
    assert other.image != comp.image
    assert not {t for _, _, t, _ in _instructions(other)} & tags


@pytest.mark.parametrize("fault", ["instruction_bit", "params_bit", "store_count",
                                   "store_outside_arena"])
def test_isa_simulator_models_the_integrity_checks(fault):
    """The ISA simulator raises the ErrorCode the hardware latches."""
    from ilmpq.firmware.compiler import AccelStep
    from ilmpq.firmware.sim.isasim import IsaFault
    from ilmpq.hdl.isa import encode, seal
    from ilmpq.hdl.status import ErrorCode
    cfg, model, comp, rng = _compiled_for_integrity()
    img = rng.integers(0, 256, size=model.tensors[model.input].shape)
    assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                         run_compiled(comp, img))
    step = next(s for s in comp.steps if isinstance(s, AccelStep))
    pa, i, tag, raw = next((pa, i, t, raw) for pa, i, t, raw in _instructions(comp)
                           if pa == step.prog_addr and decode(raw)[0] == Opcode.STORE)
    f = decode(raw)[1]
    off = pa - comp.base + i * (INSTR_BITS // 8)
    if fault == "instruction_bit":
        comp.image[off + 9] ^= 0x10
        code = ErrorCode.INSTR_CRC
    elif fault == "params_bit":
        comp.image[f["params_addr"] - comp.base + 3] ^= 0x01
        code = ErrorCode.PARAMS_CRC
    else:
        f = dict(f)
        if fault == "store_count":
            f["n_mtiles"] += 1
            code = ErrorCode.STORE_MISMATCH
        else:
            f["out_addr"] = step.prog_addr
            code = ErrorCode.WRITE_PROTECT
        comp.image[off:off + INSTR_BITS // 8] = seal(encode(Opcode.STORE, **f), i, pa, tag)
    with pytest.raises(IsaFault) as e:
        run_compiled(comp, img)
    assert e.value.code == code


def test_activation_check_layout_and_hash():
    """Activation integrity (docs/reliability.md 3.1): the hash is the catalog CRC-32 the RTL
    instantiates on ``Cat(addr, beat)``; every LOAD_ROWS and residual read of the network is
    checked, its entries lie in the side area at the start of the arena (before every tensor),
    each frame slot's input has its own table, and isasim runs the checked program bit-exact."""
    import zlib

    from amaranth.lib.crc import catalog

    from ilmpq.firmware.compiler import AccelStep
    from ilmpq.golden.random_models import ModelBuilder
    from ilmpq.hdl.isa import act_check, act_check_entries

    cfg = get_config("tiny")
    rng = np.random.default_rng(5)
    bb = cfg.beat_bytes
    beats = rng.integers(0, 256, (6, bb), dtype=np.uint8)
    addrs = rng.integers(0, 1 << 32, 6, dtype=np.uint64)
    hw = catalog.CRC32_ISO_HDLC(32 + 8 * bb)
    for a, b, h in zip(addrs, beats, act_check(addrs, beats)):
        word = int(a) | int.from_bytes(bytes(b), "little") << 32
        assert h == hw.compute([word]) == zlib.crc32(int(a).to_bytes(4, "little") + bytes(b))
    # two 2-beat rows: one entry each, the sum modulo 2**32 of the hashes, zeros above
    ent = act_check_entries(0x1000, beats[:4].tobytes(), 2 * bb, bb)
    h = act_check(0x1000 + bb * np.arange(4, dtype=np.uint64), beats[:4]).astype(np.uint64)
    assert ent == b"".join(int((h[2 * r] + h[2 * r + 1]) % 2**32).to_bytes(4, "little")
                           + bytes(bb - 4) for r in range(2))

    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(8, 6, 8))
    x = b.conv("a", "input", 8, 3, padding=1, residual="input")
    y = b.conv("c", b.maxpool("p", x, 2, 2), 8, 1)
    model = b.build(b.fc("f", b.flatten("fl", y), 5))
    comp = compile_model(model, cfg, frame_slots=2)
    first_tensor = min(t.addr for t in comp.tensors.values())
    assert comp.arena[0] <= comp.input_check < first_tensor
    assert len({s.input_check for s in comp.slots}) == 2
    for s in comp.slots:
        ib = INSTR_BITS // 8
        prog = [decode(bytes(comp.image[s.prog_addr - comp.base + ib * i:][:ib]))
                for i in range(s.n_instr)]
        for op, f in prog:
            if op == Opcode.LOAD_ROWS:
                assert f["chk_beats"] > 0
                assert comp.arena[0] + (f["chk_off"] + f["chk_beats"]) * bb <= first_tensor
            elif op == Opcode.STORE:
                assert f["chk_row_pixels"] > 0 and f["chk_stride"] == 1
                assert not f["res_en"] or f["res_chk_beats"] > 0
        # the slot's first LOAD_ROWS reads its own input's entries
        lr = next(f for op, f in prog if op == Opcode.LOAD_ROWS)
        assert comp.arena[0] + lr["chk_off"] * bb == s.input_check
    img = rng.integers(0, 256, size=(8, 6, 8))
    out = run_compiled(comp, img)
    ref = reference.run(model, img, spec=cfg.numeric)
    for name in ref:
        if name in out:
            np.testing.assert_array_equal(out[name], ref[name])
    assert all(isinstance(s, AccelStep) for s in comp.steps)


# -- host-written tensors (issue 19): check tables for what a host step writes ------------------

def _prog(comp, step):
    ib = INSTR_BITS // 8
    return [decode(bytes(comp.image[step.prog_addr - comp.base + ib * i:][:ib]))
            for i in range(step.n_instr)]


class _Fake:
    """A driver transport over a flat memory that records every ``mem_write``."""

    def __init__(self, comp):
        from ilmpq.firmware.sim.isasim import Memory
        self.mem = Memory(comp.base, comp.size)
        self.mem.data[:] = comp.image
        self.writes = []

    async def mem_write(self, addr, data):
        self.writes.append((addr, bytes(data)))
        self.mem.write(addr, bytes(data))

    async def mem_read(self, addr, n):
        return self.mem.read(addr, n)


def test_host_written_tensor_is_checked_by_its_accelerated_readers():
    """c1 (accelerator) -> p (a host step) -> c2 (accelerator, p read by its LOAD_ROWS and by
    its STORE's residual read). p gets a check table in the side area, both reads of the second
    program carry its entries, the host step writes them with p (the ISA simulator and the
    Python driver's ``host_step``, through the one helper ``Compiled.host_writes``); clean runs
    are bit-exact, and a byte of p that flips after the host step is ACT_CRC at c2."""
    from e2e_util import host_layer_model
    from ilmpq.firmware.compiler import AccelStep, CpuStep
    from ilmpq.firmware.driver import Driver, run_sync
    from ilmpq.firmware.sim.isasim import IsaFault, Memory, cpu_inputs, cpu_writes, run_program
    from ilmpq.hdl.isa import act_check_entries
    from ilmpq.hdl.status import ErrorCode
    cfg = CONFIGS["tiny"]
    bb = cfg.beat_bytes
    model, image = host_layer_model(11, cfg)
    comp = compile_model(model, cfg)
    assert [type(s) for s in comp.steps] == [AccelStep, CpuStep, AccelStep]
    p = comp.tensors["p"]
    chk, rb = comp.host_checks["p"]
    assert list(comp.host_checks) == ["p"] and rb == p.w * p.c_mem
    first_tensor = min(t.addr for t in comp.tensors.values())
    assert comp.arena[0] <= chk and chk + p.h * bb <= first_tensor
    prog = _prog(comp, comp.steps[2])
    lr = next(f for op, f in prog if op == Opcode.LOAD_ROWS)
    st = next(f for op, f in prog if op == Opcode.STORE)
    assert lr["addr"] == p.addr and st["res_en"] and st["res_addr"] == p.addr
    assert (comp.arena[0] + lr["chk_off"] * bb, lr["chk_beats"]) == (chk, p.h)
    assert (comp.arena[0] + st["res_chk_off"] * bb, st["res_chk_beats"]) == (chk, p.h)
    # clean runs on the ISA simulator, bit-exact (random pixels and both extremes)
    for img in (image, np.zeros_like(image), np.full_like(image, 255)):
        assert_tensors_equal(model, reference.run(model, img, spec=cfg.numeric),
                             run_compiled(comp, img))
    ref = reference.run(model, image, spec=cfg.numeric)
    want = [(p.addr, p.to_memory(ref["p"]))]
    want.append((chk, act_check_entries(p.addr, want[0][1], rb, bb)))

    # the Python driver's host step writes exactly that
    fake = _Fake(comp)
    drv = Driver(fake, cfg)
    run_sync(drv.write_input(comp, image))
    c1 = comp.tensors["c1"]
    fake.mem.write(c1.addr, c1.to_memory(ref["c1"]))
    fake.writes.clear()
    run_sync(drv.host_step(comp, model.layers[1]))
    assert fake.writes == want

    # the ISA simulator: a byte of p flipped after the host step wrote it and its entries
    def up_to_the_host_step(writes=True):
        mem = Memory(comp.base, comp.size)
        mem.data[:] = comp.image
        for a, d in comp.host_writes(comp.input, comp.tensors[comp.input].to_memory(image)):
            mem.write(a, d)
        s = comp.steps[0]
        run_program(cfg, mem, s.prog_addr, s.n_instr, comp.arena, s.prog_tag)
        raw = {n: mem.read(comp.tensors[n].addr, comp.tensors[n].nbytes)
               for n in cpu_inputs(model.layers[1])}
        w = cpu_writes(comp, model.layers[1], raw)
        assert w == want
        for a, d in (w if writes else w[:1]):
            mem.write(a, d)
        return mem

    s = comp.steps[2]
    mem = up_to_the_host_step()
    run_program(cfg, mem, s.prog_addr, s.n_instr, comp.arena, s.prog_tag)
    assert np.array_equal(comp.tensors["c2"].from_memory(
        mem.read(comp.tensors["c2"].addr, comp.tensors["c2"].nbytes)), ref["c2"])
    mem = up_to_the_host_step()
    mem.data[p.addr + rb + 3 - comp.base] ^= 0x04           # row 1, one byte
    with pytest.raises(IsaFault) as e:
        run_program(cfg, mem, s.prog_addr, s.n_instr, comp.arena, s.prog_tag)
    assert e.value.code == ErrorCode.ACT_CRC
    # a host step that writes the tensor without its entries fails closed
    mem = up_to_the_host_step(writes=False)
    with pytest.raises(IsaFault) as e:
        run_program(cfg, mem, s.prog_addr, s.n_instr, comp.arena, s.prog_tag)
    assert e.value.code == ErrorCode.ACT_CRC


def test_act_check_false_allocates_and_writes_no_check_tables(tmp_path):
    """``act_check=False``: no check table (input, host-written or stored tensors), every check
    field 0, ``input_check`` 0 (every frame slot's too), no side area before the tensors, and
    the host writes no entry (``Compiled.host_writes``, the drivers' one path); the programs
    still run bit-exact."""
    import json

    from e2e_util import host_layer_model
    from ilmpq.firmware.compiler import AccelStep, save_compiled
    from ilmpq.firmware.driver import Driver, run_sync
    cfg = CONFIGS["tiny"]
    model, image = host_layer_model(12, cfg)
    on, off = compile_model(model, cfg), compile_model(model, cfg, act_check=False)
    assert on.input_check and on.host_checks
    assert off.input_check == 0 and off.host_checks == {}
    assert off.arena[0] == min(t.addr for t in off.tensors.values())
    assert off.arena[1] - off.arena[0] < on.arena[1] - on.arena[0]
    for s in off.steps:
        for op, f in (_prog(off, s) if isinstance(s, AccelStep) else []):
            assert not any(f.get(k) for k in ("chk_off", "chk_beats", "chk_row_pixels",
                                              "res_chk_off", "res_chk_beats")), (op, f)
    inp, p = off.tensors[off.input], off.tensors["p"]
    px = inp.to_memory(image)
    assert off.host_writes(off.input, px) == [(inp.addr, px)]
    assert off.host_writes("p", bytes(p.nbytes)) == [(p.addr, bytes(p.nbytes))]
    assert_tensors_equal(model, reference.run(model, image, spec=cfg.numeric),
                         run_compiled(off, image))
    fake = _Fake(off)
    drv = Driver(fake, cfg)
    run_sync(drv.write_input(off, image))
    run_sync(drv.host_step(off, model.layers[1]))
    assert [a for a, _ in fake.writes] == [inp.addr, p.addr]
    save_compiled(off, tmp_path / "off")
    save_compiled(on, tmp_path / "on")
    meta_off = json.loads((tmp_path / "off" / "compiled.json").read_text())
    meta_on = json.loads((tmp_path / "on" / "compiled.json").read_text())
    assert meta_off["input_check"] == 0 and meta_off["host_checks"] == {}
    assert meta_on["host_checks"] == {"p": {"check": on.host_checks["p"][0],
                                            "row_bytes": on.host_checks["p"][1]}}
    # a network that is one program: no frame slot's input is checked
    one = random_qmodel(np.random.default_rng(3), spec=cfg.numeric, ratio=cfg.ratio)
    comp = compile_model(one, cfg, frame_slots=2, act_check=False)
    assert comp.one_program and comp.input_check == 0
    assert [s.input_check for s in comp.slots] == [0, 0]
