"""The AXI4-Lite protocol checker (firmware/sim/models/axil_checker.py) and the protocol checkers
being active in every end-to-end simulation (firmware/sim/simulate.py)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

import ilmpq.firmware.sim.simulate as simulate_mod
from corpus import small_qmodel
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.models.axi_checker import AXIChecker
from ilmpq.firmware.sim.models.axil import AXILiteManager
from ilmpq.firmware.sim.models.axil_checker import AXILiteChecker, AXIProtocolError
from ilmpq.golden import reference
from ilmpq.hdl.axi import AXI4LiteSignature, AXIResp
from ilmpq.hdl.csr import CSRBank
from ilmpq.hdl.config import get_config
from ilmpq.hdl.regmap import CSR_ADDR_WIDTH, accelerator_regmap

TINY = get_config("tiny")


def _bare_rig():
    """An AXI4-Lite port driven only by testbenches, watched by the checker."""
    bus = AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH).create()
    m = Module()
    m.domains.sync = ClockDomain()
    sim = Simulator(m)
    sim.add_clock(1e-8)
    chk = AXILiteChecker(bus, name="dut")
    chk.add_to(sim)
    return bus, sim, chk


async def _hold(ctx, n=1):
    for _ in range(n):
        await ctx.tick()


async def _b_before_w(ctx, bus):
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.awready, 1)
    await _hold(ctx)
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.bvalid, 1)              # only AW so far: no B allowed
    await _hold(ctx, 2)


async def _b_same_edge(ctx, bus):
    for s in ("awvalid", "awready", "wvalid", "wready", "bvalid"):
        ctx.set(getattr(bus, s), 1)     # B in the very cycle AW and W are accepted
    await _hold(ctx, 2)


async def _r_without_ar(ctx, bus):
    ctx.set(bus.rvalid, 1)
    await _hold(ctx, 2)


async def _arvalid_dropped(ctx, bus):
    ctx.set(bus.arvalid, 1)
    await _hold(ctx)
    ctx.set(bus.arvalid, 0)             # withdrawn before arready
    await _hold(ctx, 2)


async def _wdata_changed(ctx, bus):
    ctx.set(bus.wvalid, 1)
    ctx.set(bus.wdata, 1)
    await _hold(ctx)
    ctx.set(bus.wdata, 2)               # changed while waiting for wready
    await _hold(ctx, 2)


async def _rdata_changed(ctx, bus):
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.arready, 1)
    await _hold(ctx)
    ctx.set(bus.arvalid, 0)
    ctx.set(bus.rvalid, 1)
    ctx.set(bus.rdata, 5)
    await _hold(ctx)
    ctx.set(bus.rdata, 6)               # the subordinate changed it before rready
    await _hold(ctx, 2)


async def _exokay(ctx, bus):
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.arready, 1)
    await _hold(ctx)
    ctx.set(bus.arvalid, 0)
    ctx.set(bus.rvalid, 1)
    ctx.set(bus.rready, 1)
    ctx.set(bus.rresp, AXIResp.EXOKAY)
    await _hold(ctx, 2)


@pytest.mark.parametrize("violation,rule", [
    (_b_before_w, "bvalid without a write whose AW and W"),
    (_b_same_edge, "bvalid without a write whose AW and W"),
    (_r_without_ar, "rvalid without an outstanding read"),
    (_arvalid_dropped, "arvalid dropped before arready"),
    (_wdata_changed, "payload changed while valid and not ready"),
    (_rdata_changed, "payload changed while valid and not ready"),
    (_exokay, "rresp = EXOKAY"),
])
def test_axil_checker_catches_violations(violation, rule):
    bus, sim, chk = _bare_rig()

    async def tb(ctx):
        await violation(ctx, bus)

    sim.add_testbench(tb)
    with pytest.raises(AXIProtocolError, match=rule):
        sim.run()


def test_axil_checker_passes_a_real_register_bank_under_random_delays(rng):
    bank = CSRBank(accelerator_regmap(TINY))
    sim = Simulator(bank)
    sim.add_clock(1e-8)
    chk = AXILiteChecker(bank.bus, name="csr")
    chk.add_to(sim)
    mgr = AXILiteManager(bank.bus, rng=rng, max_delay=4, p_ready=0.4)
    rm = accelerator_regmap(TINY)
    offsets = [rm.offset(n) for n in ("prog_addr", "win_base", "watchdog", "id", "status")]
    got = {}

    async def tb(ctx):
        for k in range(12):
            off = offsets[k % 3]
            assert await mgr.write(ctx, off, 0x1000 * k + 8) == AXIResp.OKAY
            got[off] = await mgr.read(ctx, off)
        assert (await mgr.read(ctx, 0xFF0))[1] == AXIResp.SLVERR      # unmapped
        await mgr.read(ctx, offsets[3])
        await mgr.read(ctx, offsets[4])

    sim.add_testbench(tb)
    sim.run()
    assert chk.writes == 12 and chk.reads == 15 and chk.error_responses == 1
    assert chk.outstanding == 0
    assert got[offsets[0]][0] == 0x1000 * 9 + 8


def test_simulate_runs_both_checkers_by_default(monkeypatch):
    """``simulate()`` (the path of ``ilmpq simulate`` and ``ilmpq run``) watches the m_axi port
    with the AXI4 checker limited to the compiled window and the s_axil port with the AXI4-Lite
    checker; both see every transaction of the run."""
    made = {"axi": [], "lite": []}

    class AXI(AXIChecker):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made["axi"].append(self)

    class Lite(AXILiteChecker):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made["lite"].append(self)

    monkeypatch.setattr(simulate_mod, "AXIChecker", AXI)
    monkeypatch.setattr(simulate_mod, "AXILiteChecker", Lite)
    model = small_qmodel()
    comp = compile_model(model, TINY)
    img = np.random.default_rng(3).integers(0, 256, (3, 4, 4))
    res = simulate_mod.simulate(comp, [img], csr_rng=True, seed=5)
    ref = reference.run(model, img, spec=TINY.numeric)
    np.testing.assert_array_equal(res[0].tensors[model.output], ref[model.output])
    (axi,), (lite,) = made["axi"], made["lite"]
    assert axi.window == comp.window
    assert axi.r_beats * TINY.beat_bytes == res[0].stats["bytes_read"]
    assert axi.w_beats * TINY.beat_bytes == res[0].stats["bytes_written"]
    assert lite.writes > 5 and lite.reads > 10 and lite.error_responses == 0
