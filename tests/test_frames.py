"""One program per frame and frames back to back on the Accelerator RTL (Amaranth simulator,
``tiny``): the thin ``Driver.infer`` (input in, logits out), its check mode (every layer), and
``Driver.infer_stream`` over frame slots with different images, each its own golden result,
the AXI protocol checkers on and random memory stalls."""

import numpy as np
import pytest

from ilmpq.firmware.compiler import DEFAULT_BASE, compile_model
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

TINY = get_config("tiny")


def _sim(cfg, comp, body, *, mem_mode="deterministic", seed=0):
    """Run ``body(driver)`` (a coroutine function) against the RTL; return its result."""
    from ilmpq.firmware.driver import Driver
    from ilmpq.firmware.sim import simcache
    from ilmpq.firmware.sim.models.axi_checker import AXIChecker
    from ilmpq.firmware.sim.models.axi_mem import AXIMemory
    from ilmpq.firmware.sim.simulate import AmaranthTransport, flat_bus
    from ilmpq.hdl.axi import AXI4Signature
    from ilmpq.hdl.top import Accelerator

    dut, sim = simcache.acquire((Accelerator, cfg), lambda: Accelerator(cfg))
    axi = flat_bus(dut, "m_axi", AXI4Signature(addr_width=cfg.axi_addr_width,
                                               data_width=cfg.axi_data_width,
                                               id_width=cfg.axi_id_width))
    mem = AXIMemory(axi, base=comp.base, size=comp.size, mode=mem_mode, seed=seed)
    out = []

    async def testbench(ctx):
        out.append(await body(Driver(AmaranthTransport(ctx, dut, mem), cfg), mem))

    mem.add_to(sim)
    AXIChecker(axi, max_burst=cfg.max_burst, max_reads_outstanding=cfg.max_reads_outstanding,
               window=comp.window).add_to(sim)
    sim.add_testbench(testbench)
    sim.run()
    return out[0]


def _model(rng):
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 6, 6))
    x = b.conv("stem", "input", 5, 3, padding=1)
    p = b.maxpool("pool", x, 3, 2, 1)
    y = b.conv("b.c1", p, 5, 3, padding=1, residual=p)
    g = b.gap("gap", y)
    f = b.flatten("flat", g)
    return b.build(b.fc("fc", f, 10))


def test_thin_infer_reads_only_the_logits_and_check_mode_every_layer(rng):
    model = _model(rng)
    comp = compile_model(model, TINY)
    assert comp.one_program and len(comp.slots) == 2
    img = rng.integers(0, 256, size=(3, 6, 6))
    ref = reference.run(model, img, spec=TINY.numeric)
    out_t = comp.tensors[model.output]

    async def body(drv, mem):
        reads = []
        orig = drv.t.mem_read

        async def mem_read(addr, n):
            reads.append((addr, n))
            return await orig(addr, n)
        drv.t.mem_read = mem_read
        thin, st = await drv.infer(comp, img)
        thin_reads = list(reads)
        full, _ = await drv.infer(comp, img, load=False, check=True)
        return thin, st, thin_reads, full

    thin, st, thin_reads, full = _sim(TINY, comp, body, mem_mode="random", seed=4)
    assert list(thin) == [model.output]
    np.testing.assert_array_equal(thin[model.output], ref[model.output])
    # the host read nothing but the logits, and ran one program
    assert thin_reads == [(out_t.addr, out_t.nbytes)]
    assert st["instructions"] == comp.steps[0].n_instr - 1        # every one but END
    for layer in model.layers:
        np.testing.assert_array_equal(full[layer.output], ref[layer.output])


@pytest.mark.parametrize("mem_mode", ["deterministic", "random"])
def test_frames_back_to_back_each_its_own_result(rng, mem_mode):
    model = _model(rng)
    comp = compile_model(model, TINY)
    assert comp.one_program
    imgs = [rng.integers(0, 256, size=(3, 6, 6)) for _ in range(3)]
    imgs[1] = np.full((3, 6, 6), 255)

    async def body(drv, mem):
        return await drv.infer_stream(comp, imgs)

    res = _sim(TINY, comp, body, mem_mode=mem_mode, seed=9)
    assert len(res.outputs) == 3
    outs = []
    for img, got in zip(imgs, res.outputs):
        np.testing.assert_array_equal(got, reference.run(model, img, spec=TINY.numeric)
                                      [model.output])
        outs.append(got.tobytes())
    assert len(set(outs)) > 1          # different images, different results
    # the frame interval: the run plus the restart gap (a few register writes)
    for interval, run in zip(res.intervals, res.cycles[1:]):
        assert run <= interval <= run + 200, (interval, run)
    if mem_mode == "deterministic":
        # timing does not depend on the data: every frame takes the same cycles
        assert len(set(res.cycles)) == 1 and len(set(res.intervals)) == 1


def test_stream_needs_one_program_and_slots(rng):
    model = _model(rng)
    comp = compile_model(model, TINY, frame_slots=1)
    from ilmpq.firmware.driver import Driver, run_sync
    with pytest.raises(IlmpqValueError, match="two frame slots"):
        run_sync(Driver(None, TINY).infer_stream(comp, []))
    with pytest.raises(IlmpqValueError, match="slot = 1 is not allowed"):
        run_sync(Driver(None, TINY).infer(comp, np.zeros((3, 6, 6), np.int64), load=False,
                                          slot=1))
    assert DEFAULT_BASE == comp.base
