"""Striped activation loads (``HWConfig.act_ports`` 2, issue #15): a plain LOAD_ROWS of more than
one buffer word reads its first half of words on the ``act`` client's AXI port and the rest on
the ``act_b`` client's, a beat from each a cycle. A small network (a 3x3 conv on the image, a
24-channel 3x3 conv with its input as the residual, a 1x1 stride-2 conv: a strided load, on one
port) on the RTL of a
two-port build with 16-byte activation words: bit-exact with golden under random stalls and
latencies on both ports, every striped load's second half on port 1 (``act_b``, beside the
weight stream) exactly as the split rule says, and the cycle model against the RTL (exact
counters, cycles within the tolerance). Faults on the second port: tests/robust/test_faults.py;
the unit on its own: tests/hdl/test_loaders.py."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal, assert_model_agrees
from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import ConfigError, get_config
from ilmpq.hdl.isa import Opcode
from robust.faultsim import program, run_fault

#: tiny's lanes with tn 16 (a word is two beats) on two ports, activation loads striped
STRIPED = get_config("tiny2p").replace(tn=16, act_ports=2)


def _model(rng):
    b = ModelBuilder(rng, spec=STRIPED.numeric, ratio=STRIPED.ratio, input_shape=(3, 3, 4))
    x = b.conv("c1", "input", 24, 3, padding=1)
    y = b.conv("c2", x, 24, 3, padding=1, residual=x)
    return b.build(b.conv("c3", y, 8, 1, stride=2))


def _split(f) -> int:
    """Beats of a LOAD_ROWS on ``act`` when it is striped (the rule of hdl/loaders.py), else 0."""
    if f["gather"] or f["chunk_beats"]:
        return 0
    k = STRIPED.tn // STRIPED.beat_bytes
    return (f["beats"] // k + 1) // 2 * k if f["beats"] > k else 0


def test_striped_loads_end_to_end_with_stalls_and_the_cycle_model(rng):
    model = _model(rng)
    comp = compile_model(model, STRIPED)
    assert [r.where for r in comp.layers] == ["accel"] * 3 and len(comp.steps) == 1
    # the same program as on one port: striping is the loader's, not the compiler's
    assert bytes(comp.image) == bytes(compile_model(model, STRIPED.replace(act_ports=1)).image)
    img = rng.integers(0, 256, (3, 3, 4))
    ref = reference.run(model, img, spec=STRIPED.numeric)
    out = run_fault(comp, img, mem_mode="random", seed=int(rng.integers(1 << 30)),
                    recover=False, timeout_cycles=400_000)
    assert out.error is None
    for layer in model.layers:
        np.testing.assert_array_equal(out.output[layer.output], ref[layer.output])
    # every striped load's second half, and nothing else, came through act_b (port 1, ARID 1)
    bb = STRIPED.beat_bytes
    loads = [i.fields for i in program(comp) if i.opcode == Opcode.LOAD_ROWS]
    want = sorted((f["addr"] + s * bb, f["beats"] - s) for f in loads if (s := _split(f)))
    assert len(want) >= 3
    got = [t for t in out.log if t.kind == "r" and t.port == 1 and t.id == 1]
    assert sum(t.beats for t in got) == sum(n for _, n in want)
    assert {t.addr for t in got} >= {a for a, _ in want}
    # deterministic memory: the same, and the cycle model agrees
    res = simulate(comp, [img])
    assert_layers_equal(model, ref, res[0].tensors, comp.unstored)
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)


@pytest.mark.parametrize("changes,what", [
    ({"act_ports": 3}, "act_ports"),
    ({"act_ports": 2, "axi_ports": 1}, "act_ports"),
    ({"act_ports": 2, "tn": 8}, "act_ports"),
    ({"act_ports": 2, "tn": 24}, "act_ports"),
])
def test_act_ports_out_of_range(changes, what):
    with pytest.raises(ConfigError, match=what):
        get_config("tiny2p").replace(**{"tn": 16, **changes})
