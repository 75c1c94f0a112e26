"""Several AXI ports under Verilator: the C++ harness serves ``m_axi``, ``m_axi1``, ... from one
memory with a deterministic model (and the protocol checks) per port. The same multi-port
accelerator on Amaranth and on Verilator gives identical outputs and counters at two read
latencies; an error injected on the second port latches the same code on both simulators."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import get_config

pytestmark = pytest.mark.verilator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from e2e_util import assert_layers_equal  # noqa: E402


@pytest.fixture(scope="module")
def net(toolchain):
    rng = np.random.default_rng(77)
    cfg = get_config("tiny2p")
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 6, 6),
                          max_channels=8, num_blocks=2)
    return cfg, model, [rng.integers(0, 256, size=(3, 6, 6)) for _ in range(2)]


@pytest.mark.parametrize("rl", [8, 24])
def test_two_ports_amaranth_and_verilator_agree(net, rl):
    cfg, model, imgs = net
    comp = compile_model(model, cfg)
    ra = simulate(comp, imgs, sim="amaranth", read_latency=rl)
    rv = simulate(comp, imgs, sim="verilator", read_latency=rl)
    for img, a, v in zip(imgs, ra, rv):
        ref = reference.run(model, img, spec=cfg.numeric)
        assert_layers_equal(model, ref, a.tensors)
        assert_layers_equal(model, ref, v.tensors)
        assert a.stats.counters == v.stats.counters
        assert a.stats["cycles"] > 0


def test_verilator_ports_counters_and_error_on_the_second_port(net):
    """Per-port counters of the harness add up; a SLVERR on port 1 (the weight port) is reported
    as DMA_READ_SLVERR with that burst's address, and the next run after a soft reset is exact."""
    from ilmpq.firmware.board.verilog import accelerator_verilog
    from ilmpq.firmware.driver import DMAError, Driver, run_sync
    from ilmpq.firmware.sim.simulate import VerilatorTransport
    from ilmpq.firmware.sim.verilator.sim import VerilatorSim
    from ilmpq.hdl.status import ErrorCode
    cfg, model, imgs = net
    comp = compile_model(model, cfg)
    text, top = accelerator_verilog(cfg)
    vsim = VerilatorSim(text, top, mem_base=comp.base, mem_size=comp.size)
    assert vsim.axi_ports == 2 and vsim.build_result.axi_ports == 2
    drv = Driver(VerilatorTransport(vsim), cfg)
    tensors, stats = run_sync(drv.infer(comp, imgs[0]))
    per = [vsim.port_counters(p) for p in range(2)]
    assert all(c["ar_bursts"] > 0 for c in per) and per[1]["aw_bursts"] == 0
    assert sum(c["r_beats"] for c in per) == vsim.counters["r_beats"]
    assert stats["bytes_read"] == cfg.beat_bytes * vsim.counters["r_beats"]
    with pytest.raises(ValueError, match="port 2 does not exist"):
        vsim.inject_error("r", 0, "SLVERR", port=2)
    vsim.reset()
    vsim.inject_error("r", 1, "SLVERR", port=1)
    with pytest.raises(DMAError) as e:
        run_sync(drv.infer(comp, imgs[0], load=True))
    assert e.value.code == ErrorCode.DMA_READ_SLVERR
    vsim.clear_errors()
    run_sync(drv.soft_reset())
    again, _ = run_sync(drv.infer(comp, imgs[0], check=True))
    ref = reference.run(model, imgs[0], spec=cfg.numeric)
    assert_layers_equal(model, ref, again)
