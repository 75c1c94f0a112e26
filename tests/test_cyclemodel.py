"""The cycle model (firmware/cyclemodel.py): against the RTL's counters, and on its own.

RTL runs use the ``tiny`` preset and the deterministic memory of docs/memory_model.md: the byte,
beat and instruction counters must match exactly, the cycle count within 2 % per layer. The
z020 validation (ResNet-18 layer shapes under Verilator) is in bench/resnet18.py.
"""

import shutil

import numpy as np
import pytest

from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.compiler import DEFAULT_BASE, AccelStep, compile_model
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.random_models import ModelBuilder, resnet18_qmodel
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import INSTR_BITS, Opcode, encode

from e2e_util import EXACT_COUNTERS as EXACT, TOLERANCE

TINY = get_config("tiny")


def _model(rng, shape, build, cfg=TINY):
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    return b.build(build(b))


def _run_rtl_amaranth(cfg, compiled, images, mac_key=None):
    """Run several compiled models one after the other on one simulated accelerator (one
    elaboration); return each run's counters and its output tensors. ``mac_key``: program
    this SipHash key first (the driver enables the check for models compiled with a MAC)."""
    from ilmpq.firmware.driver import Driver
    from ilmpq.firmware.sim import simcache
    from ilmpq.firmware.sim.models.axi_checker import AXIChecker
    from ilmpq.firmware.sim.models.axi_mem import AXIMemory
    from ilmpq.firmware.sim.models.axil_checker import AXILiteChecker
    from ilmpq.firmware.sim.simulate import AmaranthTransport, flat_bus
    from ilmpq.hdl.axi import AXI4LiteSignature, AXI4Signature
    from ilmpq.hdl.regmap import CSR_ADDR_WIDTH
    from ilmpq.hdl.top import Accelerator

    assert all(c.base == DEFAULT_BASE for c in compiled)
    dut, sim = simcache.acquire((Accelerator, cfg), lambda: Accelerator(cfg))
    axi = flat_bus(dut, "m_axi", AXI4Signature(addr_width=cfg.axi_addr_width,
                                               data_width=cfg.axi_data_width,
                                               id_width=cfg.axi_id_width))
    mem = AXIMemory(axi, base=DEFAULT_BASE, size=max(c.size for c in compiled))
    out = []

    async def testbench(ctx):
        drv = Driver(AmaranthTransport(ctx, dut, mem), cfg)
        if mac_key is not None:
            await drv.set_mac_key(mac_key)
        for comp, img in zip(compiled, images):
            tensors, stats = await drv.infer(comp, img, load=True, check=True)
            out.append((stats, tensors))

    mem.add_to(sim)
    # the protocol checkers watch every end-to-end run (as in firmware/sim/simulate.py)
    AXIChecker(axi, max_burst=cfg.max_burst,
               max_reads_outstanding=cfg.max_reads_outstanding).add_to(sim)
    AXILiteChecker(flat_bus(dut, "s_axil", AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH)),
                   name="s_axil").add_to(sim)
    sim.add_testbench(testbench)
    sim.run()
    return out


def _check_against_rtl(cfg, cases, rtl_results, models, images):
    report = []
    for (label, _, _), comp, model, img, (stats, tensors) in zip(
            cases, [r[0] for r in models], [r[1] for r in models], images, rtl_results):
        # the RTL really ran the program: the output is golden's
        ref = reference.run(model, img, spec=cfg.numeric)
        np.testing.assert_array_equal(tensors[model.output], ref[model.output])
        est = cm.estimate(comp)
        assert len(est.programs) == 1
        pred = est.programs[0].counters
        for k in EXACT:
            assert pred[k] == stats[k], f"{label}: {k} model {pred[k]} != RTL {stats[k]}"
        err = (pred["cycles"] - stats["cycles"]) / stats["cycles"]
        report.append(f"{label}: RTL {stats['cycles']} model {pred['cycles']} ({err:+.2%})")
        assert abs(err) <= TOLERANCE, "\n".join(report)
        # per-layer cycles add up to the program; causes add up to each layer
        accel = [l for l in est.layers if l.where == "accel"]
        assert sum(l.cycles for l in accel) == pytest.approx(pred["cycles"])
        for l in accel:
            assert sum(l.breakdown.values()) == pytest.approx(l.cycles)
            assert set(l.breakdown) == set(cm.CAUSES)


def _lut(b, name, inp):
    """A lookup table on ``inp`` (a signed conv output) with an unsigned output: fused into the
    conv's STORE, which then reads the table before its first mtile's parameters."""
    from ilmpq.golden.model import LutLayer, TensorSpec
    from ilmpq.golden.ops import lut_apply
    table = b.rng.integers(0, 256, 256)
    b.layers.append(LutLayer(name, inp, name, table))
    b.tensors[name] = TensorSpec(name, b.shape(inp), 8, False, 0.05)
    b.values[name] = lut_apply(b.values[inp], table, in_bits=8, in_signed=True).astype(np.uint8)
    return name


CASES_COMPUTE = [
    ("3x3 conv, 2 mtiles, a write command per pixel", (8, 8, 8),
     lambda b: b.conv("a", "input", 8, 3, padding=1)),
    ("FC 64->32: pixels < words_per_set, weight-package bound", (16, 2, 2),
     lambda b: b.fc("a", b.flatten("f", "input"), 32)),
    ("1x1 conv, one mtile, contiguous output", (16, 8, 8),
     lambda b: b.conv("a", "input", 4, 1)),
    ("3x3 conv on 2x2: 4 pixels a set", (16, 2, 2),
     lambda b: b.conv("a", "input", 8, 3, padding=1)),
    ("3x3 stride 2, asymmetric padding", (8, 7, 7),
     lambda b: b.conv("a", "input", 16, 3, stride=2, padding=(1, 1, 0, 0))),
]

CASES_TILES = [
    ("3x3 stride 2, 3 mtiles", (8, 10, 10),
     lambda b: b.conv("a", "input", 12, 3, stride=2, padding=1)),
    ("3x3 conv with a residual input", (8, 6, 6),
     lambda b: b.conv("a", "input", 8, 3, padding=1, residual="input")),
    ("two layers, two pixel tiles each: half overlap and the layer barrier", (4, 6, 16),
     lambda b: b.conv("b", b.conv("a", "input", 4, 3, padding=1), 4, 1)),
    ("3x3 conv with a fused lookup table (conv+lut), 2 pixel tiles, then a 1x1 conv",
     (4, 6, 16), lambda b: b.conv("c", _lut(b, "t", b.conv("a", "input", 8, 3, padding=1,
                                                             relu=False)), 4, 1)),
    ("1x1 stride 2: strided LOAD_ROWS, a DMA read per used pixel", (8, 8, 8),
     lambda b: b.conv("a", "input", 8, 1, stride=2, relu=False)),
    ("1x1 stride (2, 1) on 7x7: strided LOAD_ROWS, a DMA read per used row", (8, 7, 7),
     lambda b: b.conv("a", "input", 8, 1, stride=(2, 1))),
]


CASES_STEM = [
    ("the first conv on the raw image: 7x7 stride 2 in 4 phases (conv^)", (3, 8, 16),
     lambda b: b.conv("a", "input", 8, 7, stride=2, padding=3)),
    ("the layout conv builds the stored input (it feeds a pooling and a residual)", (3, 8, 8),
     lambda b: b.conv("a", b.maxpool("p", "input", 3, 1, 1), 3, 3, padding=1,
                      residual="input")),
]


@pytest.mark.parametrize("cases", [CASES_COMPUTE, CASES_TILES, CASES_STEM],
                         ids=["compute", "tiles", "stem"])
def test_model_matches_amaranth_rtl(rng, cases):
    models = []
    images = []
    for label, shape, build in cases:
        model = _model(rng, shape, build)
        # strided loads are used only without activation checks (compile_model act_check)
        models.append((compile_model(model, TINY, act_check="strided" not in label), model))
        images.append(rng.integers(0, 256, size=shape))
    results = _run_rtl_amaranth(TINY, [m[0] for m in models], images)
    _check_against_rtl(TINY, cases, results, models, images)


CASES_MAC = [CASES_COMPUTE[1]]          # weight-package bound: the MAC shows
MAC_KEY = bytes(range(0x30, 0x40))


def test_model_matches_amaranth_rtl_with_the_mac(rng):
    """Authenticated weight packages (SipHash-2-4, the fill's 2 B + 7 cycles a package): the
    same layers compiled with and without a MAC key, run on one accelerator with the key
    programmed. Each run within the tolerance, the exact counters exact, and the cycles the MAC
    adds to a weight-bound layer as the RTL's."""
    from ilmpq.firmware import wpkg

    models, images, cases = [], [], []
    for label, shape, build in CASES_MAC:
        model = _model(rng, shape, build)
        img = rng.integers(0, 256, size=shape)
        for mac in (None, wpkg.MacKey(MAC_KEY, int(rng.integers(0, 2**63)))):
            comp = compile_model(model, TINY, mac=mac)
            assert (comp.mac_nonce is not None) == (mac is not None)
            models.append((comp, model))
            images.append(img)
            cases.append((f"{label}{', MAC' if mac else ''}", shape, build))
    results = _run_rtl_amaranth(TINY, [m[0] for m in models], images, mac_key=MAC_KEY)
    _check_against_rtl(TINY, cases, results, models, images)
    rtl = [stats["cycles"] for stats, _ in results]
    model = [cm.estimate(c).programs[0].counters["cycles"] for c, _ in models]
    # the weight-bound FC: the MAC costs cycles, and the model's cost is the RTL's (within
    # the tolerance of the run)
    assert rtl[1] > rtl[0] and model[1] > model[0]
    assert abs((model[1] - model[0]) - (rtl[1] - rtl[0])) <= TOLERANCE * rtl[1], (rtl, model)


from ilmpq.golden.random_models import random_layer_case as _random_case  # noqa: E402


@pytest.mark.verilator
def test_model_matches_verilator_rtl_on_random_layers():
    """30 seeded random layer shapes (conv 1x1/3x3/5x5, strides, residuals, FC, two-layer
    programs) on the tiny preset under Verilator: every one within 2 %."""
    from ilmpq.firmware.driver import Driver, run_sync
    from ilmpq.firmware.sim.simulate import VerilatorTransport
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, verilator_path
    try:
        verilator_path()
    except VerilatorNotFound as e:
        pytest.skip(str(e))
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")
    from ilmpq.firmware.sim.verilator.sim import VerilatorSim
    from ilmpq.firmware.board.verilog import accelerator_verilog

    cases, models, images = [], [], []
    for i in range(30):
        case = _random_case(np.random.default_rng(7000 + i))
        model = _model(np.random.default_rng(i), case[1], case[2])
        cases.append(case)
        models.append((compile_model(model, TINY), model))
        images.append(np.random.default_rng(100 + i).integers(0, 256, size=case[1]))
    text, top = accelerator_verilog(TINY)
    vsim = VerilatorSim(text, top, mem_base=DEFAULT_BASE,
                        mem_size=max(m[0].size for m in models))
    vsim.reset()
    drv = Driver(VerilatorTransport(vsim), TINY)
    results = []
    for (comp, _), img in zip(models, images):
        tensors, stats = run_sync(drv.infer(comp, img, load=True, check=True))
        results.append((stats, tensors))
    _check_against_rtl(TINY, cases, results, models, images)


# -- the model on its own ---------------------------------------------------------------------

def test_counters_and_structure_on_resnet18_z020():
    """Exact counters follow from the compile report; the schedule respects its bounds."""
    cfg = get_config("z020")
    model = resnet18_qmodel(np.random.default_rng(0), spec=cfg.numeric, ratio=cfg.ratio,
                            input_hw=64)
    comp = compile_model(model, cfg)
    est = cm.estimate(comp)
    steps = [s for s in comp.steps if isinstance(s, AccelStep)]
    assert len(est.programs) == len(steps)
    reports = {r.name: r for r in comp.layers}
    for prog, step in zip(est.programs, steps):
        c = prog.counters
        # one PE beat per set, mtile and output pixel (pooling layers use no PE beats)
        pooling = {n for n in step.layers if reports[n].kind in ("maxpool", "gap")}
        assert pooling == {"maxpool", "avgpool"}          # both run on the accelerator
        # (the stem reading the raw image, kind "conv^", runs as phases: its PE beats are the
        # phases' sum, which its report carries)
        assert c["pe_busy"] == sum(
            reports[n].pe_beats if reports[n].kind == "conv^" else
            reports[n].mtiles * reports[n].sets_per_mtile * int(np.prod(reports[n].out_shape[1:]))
            for n in step.layers if n not in pooling)
        # conv tiles: LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, STORE; pooling tiles: no LOAD_WEIGHTS;
        # a COMPUTE with keep (conv1 and downsample sharing their loads) saves the next
        # tile's LOAD_ROWS
        kept = sum(f["keep"] for op, f in cm._decode_program(
            comp.image, comp.base, step.prog_addr, step.n_instr) if op == Opcode.COMPUTE)
        assert kept == sum(reports[f"layer{k}.0.downsample"].ptiles for k in (2, 3, 4))
        assert c["instructions"] == sum((3 if n in pooling else 4) * reports[n].ptiles
                                        for n in step.layers) - kept
        assert c["bytes_read"] == sum(reports[n].dma_read_bytes for n in step.layers) + \
            step.n_instr * INSTR_BITS // 8
        assert c["bytes_written"] == sum(reports[n].dma_write_bytes for n in step.layers)
        # lower bounds: the PE array and the read channel each do at most one beat a cycle
        assert c["cycles"] >= c["pe_busy"]
        assert c["cycles"] >= c["bytes_read"] / cfg.beat_bytes
        assert prog.read_busy == c["bytes_read"] / cfg.beat_bytes
        assert sum(l.cycles for l in prog.layers) == pytest.approx(c["cycles"])
    assert est.cycles == sum(p.cycles for p in est.programs)
    assert est.macs == sum(r.macs for r in comp.layers if r.where == "accel")
    assert 0 < est.utilization < 1
    assert est.fps(100e6) == pytest.approx(100e6 / est.cycles)
    for l in est.layers:
        if l.where != "accel":
            assert l.cycles == 0 and not l.tiles
            continue
        assert l.breakdown["compute"] == pytest.approx(l.macs / cfg.macs_per_cycle)
        assert l.breakdown["compute"] + l.breakdown["padding"] == pytest.approx(l.pe_beats)
        assert min(l.breakdown.values()) >= -1e-6
        assert sum(l.breakdown.values()) == pytest.approx(l.cycles)
        if l.kind in ("maxpool", "gap"):
            assert l.macs == l.pe_beats == 0 and l.breakdown["pooling"] > 0
        else:
            assert 0 < l.utilization(cfg) <= 1
        assert [t.index for t in l.tiles] == list(range(reports[l.name].ptiles))
        for t in l.tiles:
            assert t.load_start < t.load_done <= t.compute_start < t.compute_end
            assert t.compute_end < t.store_done <= l.end
    # 7x7 layers of layer4 at 64x64 input (2x2 pixels): a set needs 72 weight beats but only
    # 4 PE beats, so the PE array waits for weights most of the time
    l4 = est.layer("layer4.1.conv2")
    assert l4.bound == "weights"
    assert l4.cycles > 8 * l4.pe_beats
    with pytest.raises(KeyError, match="no layer"):
        est.layer("nope")


def test_slower_memory_costs_cycles(rng):
    model = _model(rng, (8, 8, 8), lambda b: b.conv("a", "input", 8, 3, padding=1))
    comp = compile_model(model, TINY)
    fast = cm.estimate(comp).cycles
    slow = cm.estimate(comp, memory=cm.MemoryTiming(read_latency=40, write_latency=20)).cycles
    assert slow > fast
    # the FSM constants are parameters too
    slower_fsm = cm.estimate(comp, calibration=cm.Calibration(end=44.0)).cycles
    assert slower_fsm == fast + 43


def test_read_channel_alone_and_shared():
    """The burst-level read channel: latency, one beat a cycle, round-robin sharing, capped
    consumers, gates."""
    cfg = get_config("tiny")
    mem = cm.MemoryTiming()
    cal = cm.Calibration()

    def run(reads):
        sim = cm._Sim()
        ch = cm._Channel(sim, cfg, mem, cal)
        out = []

        def start():
            for client, beats, cap, t, kw in reads:
                out.append(ch.read(client, beats, cap, t, **kw))
        sim.at(0.0, start)
        sim.run()
        return [r.ev.time for r in out], ch

    # alone: grant at 0, AR at 1, first beat on R at 1 + RL, consumable r_fifo later
    (t,), ch = run([(1, 64, 1.0, 0.0, {})])
    first = 1 + mem.read_latency + cal.r_fifo
    assert t == first + 64
    assert ch.busy == 64
    # two full-rate readers share the channel: both finish about when 128 beats have passed
    (t1, t2), _ = run([(1, 64, 1.0, 0.0, {}), (2, 64, 1.0, 0.0, {})])
    assert max(t1, t2) == pytest.approx(first + 128, abs=2)
    assert abs(t1 - t2) <= 16
    # a consumer taking a beat every other cycle is paced by itself
    (t,), _ = run([(1, 64, 0.5, 0.0, {})])
    assert t == pytest.approx(first + 128, abs=1)
    # a gate holds the beats behind it
    sim_gate = cm._Event()
    sim_gate.time = 500.0
    (t,), _ = run([(1, 64, 1.0, 0.0, {"gates": {32: sim_gate}})])
    assert t == pytest.approx(500 + 32, abs=1)


def _program(cfg, instrs):
    blob = b"".join(encode(op, **f) for op, f in instrs)
    return bytearray(blob), DEFAULT_BASE, len(instrs)


def test_bad_programs_are_rejected():
    image, base, n = _program(TINY, [(Opcode.NOP, {})])
    with pytest.raises(cm.CycleModelError, match="no END"):
        cm.estimate_program(TINY, image, base, base, n)
    image, base, n = _program(TINY, [
        (Opcode.LOAD_ROWS, {"addr": DEFAULT_BASE, "beats": 1, "wait_stores": 0}),
        (Opcode.END, {})])
    with pytest.raises(cm.CycleModelError, match="one of each per pixel tile"):
        cm.estimate_program(TINY, image, base, base, n)
    image, base, n = _program(TINY, [
        (Opcode.LOAD_ROWS, {"addr": DEFAULT_BASE, "beats": 1, "wait_stores": 0}),
        (Opcode.LOAD_WEIGHTS, {"addr": DEFAULT_BASE, "beats": 4, "seq_base": 0}),
        (Opcode.COMPUTE, {"n_mtiles": 1, "kh": 1, "kw": 1, "groups": 1, "stride_y": 1,
                          "stride_x": 1, "out_h": 1, "out_w": 1, "in_rows": 1, "in_w": 1}),
        (Opcode.STORE, {"n_mtiles": 1, "pixels": 1}),
        (Opcode.END, {})])
    # the "weight package" at the program's address is an instruction, not a package
    with pytest.raises(cm.CycleModelError, match="n_words"):
        cm.estimate_program(TINY, image, base, base, n)
    with pytest.raises(cm.CycleModelError, match="outside the memory image"):
        cm.estimate_program(TINY, image, base, base + 4096, 1)
    with pytest.raises(IlmpqValueError, match="read_latency"):
        cm.MemoryTiming(read_latency=0)
    with pytest.raises(IlmpqValueError, match="HWConfig"):
        cm.estimate_program("tiny", image, base, base, n)
