"""End-to-end: compiled programs on the Accelerator RTL (Amaranth simulator), every layer
bit-exact with golden, the AXI protocol checker watching every transaction."""

import numpy as np
import pytest

from e2e_util import first_mismatch, run_e2e
from ilmpq.golden.random_models import ModelBuilder, random_qmodel
from ilmpq.hdl.config import HWConfig, get_config

TINY = get_config("tiny")


def single_conv(rng, cfg, *, cin, cout, hw, k, stride, padding, relu=True):
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(cin, *hw))
    b.conv("c", "input", cout, k, stride=stride, padding=padding, relu=relu)
    return b.build("c")


@pytest.mark.parametrize("k,stride,padding,cin,cout,hw", [
    (1, 1, 0, 3, 5, (4, 5)),
    (3, 1, 1, 5, 7, (5, 4)),
    (3, 2, 1, 4, 6, (6, 6)),
    (5, 1, (2, 1, 0, 2), 2, 4, (5, 5)),
    (7, 2, 3, 3, 9, (7, 6)),
])
def test_single_conv_shapes(rng, k, stride, padding, cin, cout, hw):
    model = single_conv(rng, TINY, cin=cin, cout=cout, hw=hw, k=k, stride=stride,
                        padding=padding)
    img = rng.integers(0, 256, size=(cin, *hw))
    run_e2e(model, TINY, [img], mem_mode="random", seed=int(rng.integers(1 << 30)))


def test_signed_output_without_relu_and_full_scale_input(rng):
    model = single_conv(rng, TINY, cin=4, cout=6, hw=(4, 4), k=3, stride=1, padding=1,
                        relu=False)
    img = np.full((4, 4, 4), 255)
    run_e2e(model, TINY, [img, np.zeros_like(img)])


def test_fc_and_residual_block(rng):
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 5, 5))
    x = b.conv("stem", "input", 5, 3, padding=1)
    y = b.conv("b.c1", x, 5, 3, padding=1)
    x2 = b.conv("b.c2", y, 5, 3, padding=1, residual=x)            # identity shortcut
    p = b.conv("proj", x2, 6, 1, stride=2, relu=False)              # signed projection
    z = b.conv("d.c1", x2, 6, 3, stride=2, padding=1)
    z2 = b.conv("d.c2", z, 6, 3, padding=1, residual=p)             # signed residual
    f = b.flatten("flat", z2)
    out = b.fc("fc", f, 10)
    model = b.build(out)
    img = rng.integers(0, 256, size=(3, 5, 5))
    run_e2e(model, TINY, [img], mem_mode="random", seed=3, csr_rng=True)


def test_random_network_two_images_random_stalls(rng):
    model = random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 6, 6),
                          max_channels=8, num_blocks=2)
    imgs = [rng.integers(0, 256, size=(3, 6, 6)) for _ in range(2)]
    comp, res = run_e2e(model, TINY, imgs, mem_mode="random", seed=11, csr_rng=True)
    # the second image reuses the loaded weights and programs: same work, same counters
    assert res[0].stats["pe_busy"] == res[1].stats["pe_busy"] > 0
    assert res[0].stats["instructions"] == res[1].stats["instructions"]


def test_other_geometry_wide_words_and_r_2_5(rng):
    cfg = HWConfig(name="odd", lanes_lo=3, lanes_hi=2, tn=8, act_depth=1024, acc_depth=32)
    model = random_qmodel(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 6, 6),
                          max_channels=12, num_blocks=2)
    img = rng.integers(0, 256, size=(3, 6, 6))
    run_e2e(model, cfg, [img], mem_mode="random", seed=5)


def test_deterministic_cycle_count_is_exact(rng):
    """Cycle counts from RTL simulation are exact and repeatable (deterministic memory)."""
    model = single_conv(np.random.default_rng(42), TINY, cin=3, cout=5, hw=(5, 5), k=3,
                        stride=1, padding=1)
    img = np.random.default_rng(43).integers(0, 256, size=(3, 5, 5))
    comp, r1 = run_e2e(model, TINY, [img])
    _, r2 = run_e2e(model, TINY, [img])
    assert r1[0].stats["cycles"] == r2[0].stats["cycles"]
    # 5 rows at R = 1/4 -> 2 HI + 3 LO -> 2 mtiles; 3 channels padded to 8 -> 2 groups of tn=4
    layer = comp.layers[0]
    assert (layer.mtiles, layer.sets_per_mtile) == (2, 3 * 3 * 2)
    assert r1[0].stats["pe_busy"] == 2 * 18 * 25        # mtiles x sets x pixels
    # every output pixel's bytes, and one activation check entry (a beat) per output row
    assert r1[0].stats["bytes_written"] == 2 * 25 * TINY.lanes_pad + 5 * TINY.beat_bytes


def test_mismatch_message_names_layer_channel_pixel_values():
    exp = np.zeros((3, 2, 2), np.int64)
    got = exp.copy()
    got[1, 0, 1] = 7
    assert first_mismatch("t", exp, got) == (
        "layer output 't': channel 1, pixel (y=0, x=1): golden 0, RTL 7 (1 of 12 values "
        "differ)")
    assert first_mismatch("t", exp, exp) is None
