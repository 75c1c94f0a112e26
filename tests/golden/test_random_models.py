"""golden/random_models.py: valid, varied, overflow-free random networks; real ResNet-18 shapes."""

from fractions import Fraction

import numpy as np
import pytest

from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from ilmpq.golden.formats import NumericSpec, Precision
from ilmpq.golden.model import ModelFormatError, hi_row_count
from ilmpq.golden.ops import check_no_overflow, output_range
from ilmpq.golden.random_models import random_qmodel, resnet18_qmodel
from ilmpq.golden.reference import run


def _in_bits(model, layer):
    return model.tensors[layer.input].bits


@pytest.mark.parametrize("act_bits", [4, 5, 8])
@pytest.mark.parametrize("ratio", [Fraction(0), Fraction(1, 8), Fraction(1, 4), 0.1, Fraction(1)])
def test_random_models_are_valid_with_the_exact_share(act_bits, ratio):
    spec = NumericSpec(act_bits=act_bits)
    for seed in range(3):
        model = random_qmodel(np.random.default_rng(seed), spec=spec, ratio=ratio)
        model.validate()
        assert model.spec == spec and model.act_bits == act_bits
        for layer in model.conv_layers:
            n_hi = int(np.count_nonzero(layer.precision == Precision.HI))
            assert n_hi == hi_row_count(ratio, layer.out_channels)
            check_no_overflow(layer, _in_bits(model, layer), spec)


def test_random_models_cover_the_features():
    kernels, strides, sym, asym, identity, projection, pools = set(), set(), 0, 0, 0, 0, 0
    channels = set()
    for seed in range(16):
        model = random_qmodel(np.random.default_rng(seed))
        kinds = [layer.kind for layer in model.layers]
        assert kinds[-3:] == ["gap", "flatten", "conv"] and model.layers[-1].is_fc()
        pools += "maxpool" in kinds
        for layer in model.conv_layers:
            kernels.add(layer.kernel)
            strides.add(layer.stride)
            channels.add(layer.out_channels)
            pt, pl, pb, pr = layer.padding
            if any(layer.padding):
                sym += (pt, pl) == (pb, pr)
                asym += (pt, pl) != (pb, pr)
            if layer.residual is not None:
                if model.tensors[layer.residual].signed:
                    projection += 1
                else:
                    identity += 1
    assert {(1, 1), (3, 3), (5, 5), (7, 7)} <= kernels
    assert {(1, 1), (2, 2)} <= strides
    assert sym and asym and identity and projection and pools
    assert any(c % 2 for c in channels) and any(c % 4 == 2 for c in channels)


def test_random_models_are_deterministic():
    a = random_qmodel(np.random.default_rng(7), num_blocks=4)
    b = random_qmodel(np.random.default_rng(7), num_blocks=4)
    c = random_qmodel(np.random.default_rng(8), num_blocks=4)
    assert a == b and a != c


@pytest.mark.parametrize("act_bits", [4, 5, 8])
def test_outputs_use_the_range(act_bits):
    """On an image other than the calibration one, outputs neither saturate nor vanish."""
    spec = NumericSpec(act_bits=act_bits)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        model = random_qmodel(rng, spec=spec, input_shape=(3, 24, 24))
        tensors = run(model, rng.integers(0, 256, size=(3, 24, 24), dtype=np.uint8))
        for layer in model.conv_layers:
            y = tensors[layer.output]
            out = model.tensors[layer.output]
            qmin, qmax = output_range(out.bits, out.signed, layer.relu)
            if y.size < 16:
                continue
            at_end = np.mean((y == qmax) | ((y == qmin) if out.signed else False))
            assert at_end < 0.2, (seed, layer.name, at_end)
            assert np.mean(y != 0) > 0.2, (seed, layer.name)
            assert len(np.unique(y)) >= min(8, qmax // 2), (seed, layer.name)


def test_narrow_specs_are_respected():
    """16-bit accumulators shrink rows until the overflow proof holds; 8-bit M/Mr fit."""
    spec = NumericSpec(acc_bits=16, mult_bits=8)
    for seed in range(3):
        model = random_qmodel(np.random.default_rng(seed), spec=spec)
        model.validate()
        for layer in model.conv_layers:
            assert check_no_overflow(layer, _in_bits(model, layer), spec).max() <= 32767
            assert layer.mult.max() <= 255
            if layer.res_mult is not None:
                assert layer.res_mult.max() <= 255
        run(model, np.random.default_rng(seed).integers(0, 256, (3, 16, 16), dtype=np.uint8))


def test_options_and_bad_arguments():
    model = random_qmodel(np.random.default_rng(0), num_classes=None, maxpool=False,
                          residual=False, kernels=(3,), input_shape=(1, 6, 5), num_blocks=2)
    assert all(layer.kind == "conv" and layer.residual is None for layer in model.layers)
    assert model.tensors["input"].shape == (1, 6, 5)
    for shape in [(2, 5, 5), (1, 1, 1), (3, 2, 9)]:  # inputs smaller than the kernels
        tiny = random_qmodel(np.random.default_rng(1), kernels=(7,), input_shape=shape)
        assert tiny.layers[0].kernel == (7, 7) and tiny.layers[0].padding == (3, 3, 3, 3)
        run(tiny, np.zeros(shape, np.uint8))
    with pytest.raises(IlmpqTypeError, match=r"rng must be a numpy.random.Generator"):
        random_qmodel(0)
    with pytest.raises(IlmpqValueError, match=r"kernels must be odd positive sizes"):
        random_qmodel(np.random.default_rng(0), kernels=(2, 3))
    with pytest.raises(ModelFormatError, match=r"ratio = 3/2 is not allowed"):
        random_qmodel(np.random.default_rng(0), ratio=Fraction(3, 2))
    with pytest.raises(IlmpqValueError, match=r"input_hw must be an integer >= 32"):
        resnet18_qmodel(np.random.default_rng(0), input_hw=16)


def test_resnet18_structure_small_input():
    model = resnet18_qmodel(np.random.default_rng(1), input_hw=64, num_classes=10)
    convs = model.conv_layers
    assert len(convs) == 21  # 1 stem + 16 block convs + 3 downsample + fc
    t = model.tensors
    assert t["conv1"].shape == (64, 32, 32) and t["maxpool"].shape == (64, 16, 16)
    assert t["layer1.1.conv2"].shape == (64, 16, 16)
    assert t["layer2.0.downsample"].shape == (128, 8, 8) and t["layer2.0.downsample"].signed
    assert t["layer4.1.conv2"].shape == (512, 2, 2)
    assert t["fc"].shape == (10, 1, 1) and t["fc"].signed
    assert model.layer("layer1.0.conv2").residual == "maxpool"
    assert model.layer("layer3.0.conv2").residual == "layer3.0.downsample"
    assert model.layer("layer3.1.conv2").residual == "layer3.0.conv2"
    assert model.layer("conv1").padding == (3, 3, 3, 3) and model.layer("conv1").stride == (2, 2)
    assert model.layer("layer4.0.downsample").kernel == (1, 1)
    assert all(layer.precision.sum() == hi_row_count(Fraction(1, 8), layer.out_channels)
               for layer in convs)


def test_resnet18_real_shapes_at_224():
    model = resnet18_qmodel(np.random.default_rng(0))
    # torchvision resnet18 has 11,689,512 parameters: minus 9,600 batch-norm parameters
    # (4,800 channels x 2) and the 1,000 fc biases, the conv and fc weights are 11,678,912
    assert sum(layer.weight.size for layer in model.conv_layers) == 11_678_912
    assert sum(model.macs().values()) == 1_814_073_344  # the usual "1.8 GMAC"
    assert model.tensors["conv1"].shape == (64, 112, 112)
    assert model.tensors["maxpool"].shape == (64, 56, 56)
    assert model.tensors["layer4.1.conv2"].shape == (512, 7, 7)
    assert model.tensors["fc"].shape == (1000, 1, 1)
    assert model.layer("fc").precision.sum() == 125
