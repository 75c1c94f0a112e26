"""Shared helpers of the end-to-end tests: run a model through the RTL, compare layer by layer."""

import numpy as np

from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference


def first_mismatch(name, exp, got):
    """A message naming the tensor, channel, pixel and both values of the first difference."""
    diff = np.argwhere(np.asarray(exp) != np.asarray(got))
    if not len(diff):
        return None
    c, y, x = (int(v) for v in diff[0])
    return (f"layer output {name!r}: channel {c}, pixel (y={y}, x={x}): golden {int(exp[c, y, x])}"
            f", RTL {int(got[c, y, x])} ({len(diff)} of {exp.size} values differ)")


def assert_layers_equal(model, ref, got, unstored=frozenset()):
    """Every layer's output equals golden's, except the ``unstored`` ones (``Compiled.unstored``:
    a conv output consumed inside its fused lookup table, never in memory)."""
    for layer in model.layers:
        if layer.output in unstored and layer.output not in got:
            continue
        msg = first_mismatch(layer.output, ref[layer.output], got[layer.output])
        assert msg is None, f"layer {layer.name!r}: {msg}"
        np.testing.assert_array_equal(got[layer.output], ref[layer.output])


#: Counters the cycle model predicts exactly for an RTL run; its cycles agree within TOLERANCE.
EXACT_COUNTERS = ("pe_busy", "bytes_read", "bytes_written", "instructions")
TOLERANCE = 0.02


def assert_model_agrees(prog, stats):
    """The cycle model's prediction ``prog`` (``cyclemodel.estimate(...).programs[i]``) against
    an RTL run's counters ``stats``: the exact counters equal, the cycles within 2 %."""
    for k in EXACT_COUNTERS:
        assert prog.counters[k] == stats[k], k
    assert abs(prog.cycles - stats["cycles"]) <= TOLERANCE * stats["cycles"], \
        (prog.cycles, stats["cycles"])


def run_e2e(model, cfg, images, *, sim="amaranth", mem_mode="deterministic", seed=0,
            csr_rng=False):
    comp = compile_model(model, cfg)
    results = simulate(comp, images, sim=sim, mem_mode=mem_mode, seed=seed, csr_rng=csr_rng)
    for img, res in zip(images, results):
        assert_layers_equal(model, reference.run(model, img, spec=cfg.numeric), res.tensors,
                            comp.unstored)
    return comp, results


def host_layer_model(seed: int, cfg, hw: int = 2):
    """A host step between accelerated layers on a ``(3, hw, hw)`` image: c1 (3 x 3 conv) ->
    p (an elementwise product ``c1 * c1``: no accelerator unit, a CPU step; a channel shuffle
    is a free view since issue 16) -> c2 (1 x 1 conv reading p, with p as its residual), so the
    host-written tensor p is read by an accelerated LOAD_ROWS and by a STORE's residual read.
    Returns ``(model, image)`` (seeded)."""
    from ilmpq.golden.model import MulLayer, TensorSpec
    from ilmpq.golden.ops import mul_requant
    from ilmpq.golden.random_models import ModelBuilder
    rng = np.random.default_rng(seed)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, hw, hw))
    x = b.conv("c1", "input", 5, 3, padding=1)
    xs = b.tensors[x]
    b.layers.append(MulLayer("p", x, x, "p", 1, xs.bits))    # (x*x + 2**(b-1)) >> b
    b.tensors["p"] = TensorSpec("p", b.shape(x), xs.bits, xs.signed, xs.scale)
    b.values["p"] = mul_requant(b.values[x], b.values[x], x_bits=xs.bits, x_signed=xs.signed,
                                g_bits=xs.bits, g_signed=xs.signed, mult=1, shift=xs.bits,
                                out_bits=xs.bits, out_signed=xs.signed,
                                spec=cfg.numeric).astype(xs.dtype)
    model = b.build(b.conv("c2", "p", 5, 1, residual="p"))
    return model, rng.integers(0, 256, size=(3, hw, hw))
