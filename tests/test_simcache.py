"""One elaborated Amaranth simulation reused across runs (``firmware/sim/simcache.py``) is the
same simulation as a new one: outputs bit-exact and counters (cycles included) exact, also after
a run that ended in an exception midway."""

import numpy as np
import pytest

from e2e_util import assert_layers_equal
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.driver import DriverTimeout
from ilmpq.firmware.sim import simcache
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import get_config

TINY = get_config("tiny")


def test_a_reused_simulation_is_the_same_simulation(rng, monkeypatch):
    model = random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 5, 5),
                          num_blocks=1, max_channels=6)
    imgs = [rng.integers(0, 256, model.tensors[model.input].shape) for _ in range(2)]
    comp = compile_model(model, TINY)
    run = dict(mem_mode="random", seed=11)

    with monkeypatch.context() as m:            # the reference: a new simulator
        m.setattr(simcache, "_SUPPORTED", False)
        n0 = simcache.stats()
        ref = simulate(comp, imgs, **run)
        n1 = simcache.stats()
    assert n1["built"] == n0["built"] + 1 and n1["reused"] == n0["reused"]
    with pytest.raises(DriverTimeout):          # a run that ends in an exception midway
        simulate(comp, imgs[:1], timeout_cycles=300, **run)
    again = simulate(comp, imgs, **run)
    assert simcache.stats()["reused"] >= n1["reused"] + 1

    assert [r.stats.counters for r in again] == [r.stats.counters for r in ref]  # exact cycles
    for r_ref, r in zip(ref, again):
        assert r.tensors.keys() == r_ref.tensors.keys()
        for k in r_ref.tensors:
            np.testing.assert_array_equal(r.tensors[k], r_ref.tensors[k])
    for img, r in zip(imgs, again):
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), r.tensors)
