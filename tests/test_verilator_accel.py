"""The accelerator under Verilator: same outputs and same cycle counts as the Amaranth
simulator, and the embedded default model bit-exact on a batch of test images."""

import shutil

import numpy as np
import pytest

from e2e_util import assert_layers_equal
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl.config import get_config

pytestmark = pytest.mark.verilator

TINY = get_config("tiny")


@pytest.fixture(scope="module", autouse=True)
def _toolchain():
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, verilator_path
    try:
        verilator_path()
    except VerilatorNotFound as e:
        pytest.skip(str(e))
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")


def test_amaranth_and_verilator_agree_on_outputs_and_cycles():
    rng = np.random.default_rng(2024)
    model = random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 6, 6),
                          max_channels=8, num_blocks=2)
    comp = compile_model(model, TINY)
    imgs = [rng.integers(0, 256, size=(3, 6, 6)) for _ in range(2)]
    ra = simulate(comp, imgs, sim="amaranth")
    rv = simulate(comp, imgs, sim="verilator")
    for img, a, v in zip(imgs, ra, rv):
        ref = reference.run(model, img, spec=TINY.numeric)
        assert_layers_equal(model, ref, a.tensors)
        assert_layers_equal(model, ref, v.tensors)
        # identical cycle counts and every other counter under the same memory timing
        assert a.stats.counters == v.stats.counters
        assert a.stats["cycles"] > 0


def test_default_model_bit_exact_on_test_images():
    from ilmpq.golden.data import load_default_model, load_digits
    from ilmpq.golden.quantize import quantize

    calib, _ = load_digits("calib")
    x, y = load_digits("test")
    model = quantize(load_default_model(), calib, ratio=TINY.ratio, spec=TINY.numeric,
                     report=False)
    comp = compile_model(model, TINY)
    n = 24
    results = simulate(comp, x[:n].astype(np.int64), sim="verilator")
    rtl_pred, gold_pred = [], []
    for img, res in zip(x[:n], results):
        ref = reference.run(model, img, spec=TINY.numeric)
        assert_layers_equal(model, ref, res.tensors)
        rtl_pred.append(int(np.argmax(res.tensors[model.output])))
        gold_pred.append(int(np.argmax(ref[model.output])))
    assert rtl_pred == gold_pred
    assert np.mean(np.array(rtl_pred) == y[:n]) >= 0.9
    # every image does the same work: identical cycle counts
    assert len({r.stats["cycles"] for r in results}) == 1
