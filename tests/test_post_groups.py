"""Two post-processing groups a cycle (``HWConfig.post_groups`` 2, issue #15): the PE array
drains two groups a beat, the store unit joins, post-processes and pools them vertically two at
a time and writes one AXI beat a cycle. A small network on the RTL with random memory stalls --
a residual STORE, a fused lookup table, a conv fused with the vertical max pooling across
STOREs, the pooling unit's results -- bit-exact with golden, every stored tensor the same
bytes as with one group a cycle, and the cycle model against the RTL (exact counters, cycles
within the tolerance)."""

import numpy as np

from e2e_util import assert_layers_equal, assert_model_agrees
from ilmpq.firmware import cyclemodel as cm
from ilmpq.firmware.compiler import compile_model, vpool_rows
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.model import LutLayer, TensorSpec
from ilmpq.golden.ops import lut_apply
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config

#: 16 lanes (two groups of 8 a pixel) at tiny's R = 1/4, two groups a cycle, a row array of
#: 16 entries (8 pairs) and tiles of two rows of 4 pixels (the array across STOREs)
PG2 = get_config("tiny").replace(lanes_lo=12, lanes_hi=4, post_groups=2, vpool_entries=16,
                                 acc_depth=8)


def _lut(b, name, inp):
    """A lookup table on the signed ``inp``, unsigned output (fused into ``inp``'s STORE)."""
    table = b.rng.integers(0, 256, 256)
    b.layers.append(LutLayer(name, inp, name, table))
    b.tensors[name] = TensorSpec(name, b.shape(inp), 8, False, 0.05)
    b.values[name] = lut_apply(b.values[inp], table, in_bits=8, in_signed=True).astype(np.uint8)
    return name


def _model(rng, hw=(5, 4)):
    """c2 1x1 on the image (20 channels: two mtiles, a write command a pixel) -> p max pool
    3x3 stride 2 (c2's STOREs pool vertically, the pooling unit the rest) -> c3 1x1 (p its
    residual, signed) -> t (a lookup table, fused into c3's STORE)."""
    b = ModelBuilder(rng, spec=PG2.numeric, ratio=PG2.ratio, input_shape=(3, *hw))
    x = b.conv("c2", "input", 16, 1)
    p = b.maxpool("p", x, 3, 2, 1)
    return b.build(_lut(b, "t", b.conv("c3", p, 16, 1, relu=False, residual=p)))


def test_two_groups_a_cycle_end_to_end_with_stalls_and_the_cycle_model(rng):
    model = _model(rng)
    comp = compile_model(model, PG2)
    kinds = {r.name: r.kind for r in comp.layers}
    assert kinds["c2"] == "conv+vpool" and comp.vpooled == {"c2": "c2@vpool"}, kinds
    # the same program as with one group a cycle (the stored layout does not change)
    one = compile_model(model, PG2.replace(post_groups=1))
    assert bytes(one.image) == bytes(comp.image)
    img = rng.integers(0, 256, (3, 5, 4))
    ref = reference.run(model, img, spec=PG2.numeric)
    res = simulate(comp, [img], mem_mode="random", seed=int(rng.integers(1 << 30)))
    assert_layers_equal(model, ref, res[0].tensors, comp.unstored)
    np.testing.assert_array_equal(res[0].tensors["c2@vpool"], vpool_rows(ref["c2"]))
    res = simulate(comp, [img])
    assert_layers_equal(model, ref, res[0].tensors, comp.unstored)
    assert_model_agrees(cm.estimate(comp).programs[0], res[0].stats)
