"""Batched programs through frame slots (issue #15): ``compile_model(batch=B)`` gives every
frame slot its own B inputs (each with its own check table) and outputs, and
``Driver.infer_stream`` runs groups of B images back to back through them on the tiny RTL
(random AXI stalls, protocol checker on): every image's output bit-exact with golden run on
that image alone, in input order; the frame interval is one run plus the restart gap."""

import numpy as np
import pytest

from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.isasim import Memory, run_program
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.hdl.config import get_config
from test_batching import block_model, images
from test_frames import _sim

TINY = get_config("tiny")


def _golden(model, img):
    return reference.run(model, img, spec=TINY.numeric)[model.output]


def test_batched_stream_on_the_rtl_each_image_its_own_result(rng):
    """B = 2, three runs (6 different images: edges on purpose) through two slots, random
    memory stalls: outputs in input order, each bit-exact; the frame interval of back-to-back
    batched runs is the run plus the host's restart gap. Then one image: its group is filled
    up, one output per image given."""
    model = block_model(rng, (4, 5), c=(4, 4), classes=4)
    comp = compile_model(model, TINY, batch=2, stack_from="b.c1")
    assert comp.batch == 2 and len(comp.slots) == 2
    # the images back to back (no gap rows, no gap-filling copies), a tile across both
    assert "gapfill" not in {r.kind for r in comp.layers}
    imgs = images(rng, 6, (4, 5))

    # then a stream of one image: a group of one, filled up, its copy's result dropped
    more = [np.full((3, 4, 5), 7)]

    async def body(drv, mem):
        return (await drv.infer_stream(comp, imgs),
                await drv.infer_stream(comp, more, load=False))

    res, res2 = _sim(TINY, comp, body, mem_mode="random", seed=int(rng.integers(1 << 30)))
    assert res.batch == 2 and len(res.outputs) == 6 and len(res.cycles) == 3
    assert len(res2.outputs) == 1 and len(res2.cycles) == 1
    for img, got in zip(imgs + more, res.outputs + res2.outputs):
        np.testing.assert_array_equal(got, _golden(model, img))
    assert len({o.tobytes() for o in res.outputs}) > 1
    for interval, run in zip(res.intervals, res.cycles[1:]):
        assert run <= interval <= run + 200, (interval, run)


def test_slots_of_a_batched_program_are_separate(rng):
    """Every slot's every image has its own input, check table and output (distinct, inside
    the arena, clear of every tensor); each slot's program on the ISA simulator gives each
    image its golden result (three slots, run out of order)."""
    model = block_model(rng, (6, 6))
    comp = compile_model(model, TINY, batch=3, stack_from="c3", frame_slots=3)
    assert len(comp.slots) == 3
    inp, out = comp.tensors[comp.input], comp.tensors[comp.output]
    spans = []
    for fs in comp.slots:
        assert len(fs.images) == 3
        assert (fs.input_addr, fs.input_check, fs.output_addr) == fs.images[0]
        for a_in, chk, a_out in fs.images:
            assert chk
            spans += [(a_in, a_in + inp.nbytes), (chk, chk + inp.h * TINY.beat_bytes),
                      (a_out, a_out + out.nbytes)]
    spans.sort()
    assert all(b0 >= a1 for (_, a1), (b0, _) in zip(spans, spans[1:]))    # no overlap
    assert all(comp.arena[0] <= a and b <= comp.arena[1] for a, b in spans)
    mem = Memory(comp.base, comp.size)
    mem.data[:] = comp.image
    for k in (2, 0, 1):
        imgs = images(rng, 3 + k, (6, 6))[k:]
        for b, img in enumerate(imgs):
            for addr, data in comp.image_writes(b, inp.to_memory(img), k):
                mem.write(addr, data)
        fs = comp.slots[k]
        run_program(TINY, mem, fs.prog_addr, fs.n_instr, comp.arena, fs.prog_tag)
        for b, img in enumerate(imgs):
            got = out.from_memory(mem.read(comp.image_output_addr(b, k), out.nbytes))
            np.testing.assert_array_equal(got, _golden(model, img), err_msg=f"slot {k}, {b}")


def test_batched_slots_keep_the_input_checks(rng):
    """Every slot's program checks every load, each image's input against that slot's own
    table for that image; the slots' programs have distinct tags. An image written without
    its entries (or with another slot's) fails closed with ACT_CRC on the ISA simulator."""
    from ilmpq.firmware.sim.isasim import IsaFault
    from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode
    from ilmpq.hdl.status import ErrorCode
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2, stack_from="b.c1")
    inp = comp.tensors[comp.input]
    bb, ib = TINY.beat_bytes, INSTR_BITS // 8
    assert len({fs.prog_tag for fs in comp.slots}) == len(comp.slots) == 2
    for fs in comp.slots:
        prog = [decode(bytes(comp.image[fs.prog_addr - comp.base + ib * i:][:ib]))
                for i in range(fs.n_instr)]
        loads = [f for op, f in prog if op == Opcode.LOAD_ROWS]
        assert all(f["chk_beats"] for f in loads)
        for a_in, chk, _ in fs.images:
            mine = [f for f in loads if a_in <= f["addr"] < a_in + inp.nbytes]
            assert mine
            for f in mine:
                row = (f["addr"] - a_in) // comp.input_row_bytes
                assert comp.arena[0] + f["chk_off"] * bb == chk + row * bb
    imgs = images(rng, 2, (8, 8))
    for how in ("none", "other slot"):
        mem = Memory(comp.base, comp.size)
        mem.data[:] = comp.image
        for b, img in enumerate(imgs):
            writes = comp.image_writes(b, inp.to_memory(img), 1)
            if b == 1:
                if how == "other slot":
                    mem.write(comp.slots[0].images[1][1], writes[1][1])
                writes = writes[:1]
            for addr, data in writes:
                mem.write(addr, data)
        fs = comp.slots[1]
        with pytest.raises(IsaFault) as ei:
            run_program(TINY, mem, fs.prog_addr, fs.n_instr, comp.arena, fs.prog_tag)
        assert ei.value.code == ErrorCode.ACT_CRC


def test_batch_one_slots_unchanged(rng):
    """``batch = 1`` compiles the same image and slots as a compile without it."""
    model = block_model(rng, (8, 8))
    a, b = compile_model(model, TINY), compile_model(model, TINY, batch=1)
    assert bytes(a.image) == bytes(b.image) and a.slots == b.slots
    assert all(fs.images == [] for fs in a.slots)


def test_stream_of_a_batched_program_with_one_slot_is_refused(rng):
    from ilmpq.firmware.driver import Driver, run_sync
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2, frame_slots=1)
    with pytest.raises(IlmpqValueError, match="two frame slots"):
        run_sync(Driver(None, TINY).infer_stream(comp, images(rng, 2, (8, 8))))


@pytest.fixture
def model_path(tmp_path, rng):
    path = tmp_path / "m.npz"
    block_model(rng, (4, 5), c=(4, 4), classes=4).save(path)
    return str(path)


def test_cli_simulate_batch_2(model_path, capsys):
    """``ilmpq simulate --batch 2`` on a tiny model, one image (its group filled up, the copy's
    result dropped) on the Amaranth RTL with random AXI timing: every layer bit-exact, one
    line per image as without --batch, the run named."""
    from ilmpq.firmware.cli import main
    assert main(["simulate", model_path, "--config", "tiny", "--sim", "amaranth", "--mem",
                 "random", "--seed", "5", "--count", "1", "--batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "image 1/1: bit-exact, " in text and "image 2/" not in text
    assert "batch 2: 1 run, " in text and "(2 images a run of " in text
    assert "1/1 image bit-exact on every layer" in text


def test_batched_stream_refuses_a_bad_image_before_writing(rng):
    """A wrong image in a group: check_image's one clear error before anything is written."""
    from ilmpq.firmware.driver import Driver, run_sync
    model = block_model(rng, (8, 8))
    comp = compile_model(model, TINY, batch=2)
    bad = [images(rng, 1, (8, 8))[0], np.zeros((3, 8, 7), np.int64)]
    with pytest.raises(IlmpqValueError, match=r"\(3, 8, 7\)"):
        run_sync(Driver(None, TINY).infer_stream(comp, bad, load=False))
