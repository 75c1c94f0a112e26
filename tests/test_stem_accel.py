"""The network input on the accelerator: the host writes the raw image (HWC bytes, exactly the
image) and the accelerator builds what the first layers read (``firmware/compiler.py``
``_direct_plan``: the first conv reads the raw bytes in phases; ``_layout_plan``: a layout conv
with 0/1 weights builds the stored layout). Compile-level cases on the ISA simulator, then the
Accelerator RTL (Amaranth simulator, ``tiny``) with random memory stalls and the AXI checkers,
bit-exact against golden."""

import numpy as np
import pytest

from ilmpq.firmware.compiler import CompileError, compile_model
from ilmpq.firmware.driver import Driver, check_image, run_sync
from ilmpq.firmware.sim.isasim import run_compiled
from ilmpq.firmware.sim.simulate import simulate
from ilmpq.golden import reference
from ilmpq.golden.errors import IlmpqValueError
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.hdl.isa import act_check_entries
from test_frames import _sim

TINY = get_config("tiny")


def _stem_model(rng, shape, k, stride, padding, *, pool_first=False, cfg=TINY):
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    if pool_first:
        # the input feeds a max pooling and a conv (residual): it is stored, not read directly
        p = b.maxpool("pool0", "input", 3, 1, 1)
        x = b.conv("stem", p, shape[0], k, stride=1, padding=k // 2, residual="input")
    else:
        x = b.conv("stem", "input", 5, k, stride=stride, padding=padding)
    g = b.gap("gap", x)
    return b.build(b.fc("fc", b.flatten("flat", g), 6))


def _check_all(model, comp, img, cfg=TINY):
    ref = reference.run(model, img, spec=cfg.numeric)
    got = run_compiled(comp, img)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


@pytest.mark.parametrize("shape,k,stride,padding", [
    ((3, 8, 8), 3, 1, 1), ((3, 8, 16), 7, 2, 3), ((1, 9, 16), 5, 2, (2, 1, 0, 2)),
    ((3, 5, 8), 3, 1, (0, 2, 1, 0)), ((2, 8, 12), 4, 3, (1, 3, 0, 0)), ((3, 8, 8), 1, 1, 0),
])
def test_first_conv_reads_the_raw_image(rng, shape, k, stride, padding):
    """Odd sizes, strides, asymmetric padding: the conv^ phases equal golden's conv."""
    model = _stem_model(rng, shape, k, stride, padding)
    comp = compile_model(model, TINY)
    assert comp.input_layout == "direct", comp.input_layout_why
    assert comp.layers[0].kind == "conv^" and comp.one_program
    inp = comp.tensors[model.input]
    assert (inp.c_mem, inp.h, inp.w) == (shape[0], shape[1], shape[2])   # the raw bytes
    assert "the first conv reads it as it is" in comp.report()
    for img in (rng.integers(0, 256, size=shape), np.full(shape, 255), np.zeros(shape, np.int64)):
        _check_all(model, comp, img)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 8, 8), (5, 8, 8)])
def test_layout_conv_builds_the_stored_input(rng, shape):
    """An input that feeds a pooling layer and a residual is stored (HWC, C_mem): the layout
    conv of the first program builds it from the raw bytes."""
    model = _stem_model(rng, shape, 3, 1, 1, pool_first=True)
    comp = compile_model(model, TINY)
    assert comp.input_layout == "layout", comp.input_layout_why
    assert comp.layers[0].kind == "layout" and comp.layers[0].macs == 0
    assert comp.one_program
    for img in (rng.integers(0, 256, size=shape), np.full(shape, 255)):
        _check_all(model, comp, img)


def test_host_layout_when_the_rows_do_not_fit_the_view(rng):
    """A row of W*C bytes that is not a whole number of view pixels: the host lays the input
    out and the report says why; ``input_layout="host"`` forces it; both bit-exact."""
    model = _stem_model(rng, (3, 7, 7), 3, 1, 1)
    comp = compile_model(model, TINY)
    assert comp.input_layout == "host"
    assert "is not a multiple of 8 bytes" in comp.report()
    _check_all(model, comp, rng.integers(0, 256, size=(3, 7, 7)))
    model = _stem_model(rng, (3, 8, 8), 3, 1, 1)
    forced = compile_model(model, TINY, input_layout="host")
    assert forced.input_layout == "host" and "'host' requested" in forced.report()
    _check_all(model, forced, rng.integers(0, 256, size=(3, 8, 8)))
    with pytest.raises(CompileError, match="input_layout = 'board' is not allowed"):
        compile_model(model, TINY, input_layout="board")


@pytest.mark.parametrize("cfg_name,shape", [("tiny", (3, 8, 16)), ("z020", (3, 32, 32))])
def test_forced_host_layout_keeps_the_stem_fold(rng, cfg_name, shape):
    """``input_layout="host"`` on a stem the accelerator would read directly: the host's
    column fold (and space-to-depth) again, bit-exact, as before the raw-image path."""
    cfg = get_config(cfg_name)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    model = b.build(b.conv("a", "input", 8, 7, stride=2, padding=3))
    auto = compile_model(model, cfg)
    host = compile_model(model, cfg, input_layout="host")
    assert auto.layers[0].kind == "conv^" and host.layers[0].kind in ("conv*", "conv**")
    assert host.tensors["input"].fold is not None
    img = rng.integers(0, 256, size=shape)
    for comp in (auto, host):
        _check_all(model, comp, img, cfg)


def test_check_image_layouts():
    spec = _stem_model(np.random.default_rng(0), (3, 4, 8), 3, 1, 1).tensors["input"]
    hwc = np.arange(96, dtype=np.uint8).reshape(4, 8, 3)
    assert check_image(hwc, spec, "HWC") is hwc                 # uint8: nothing to convert
    assert check_image(hwc[None], spec, "HWC").shape == (4, 8, 3)
    with pytest.raises(IlmpqValueError, match=r"is \(H, W, C\) = \(4, 8, 3\) \(layout 'HWC'\)"):
        check_image(hwc.transpose(2, 0, 1), spec, "HWC")
    with pytest.raises(IlmpqValueError, match="layout = 'NCHW' is not allowed"):
        check_image(hwc, spec, "NCHW")
    with pytest.raises(IlmpqValueError, match="values span"):
        check_image(np.full((4, 8, 3), 256), spec, "HWC")


@pytest.mark.parametrize("shape,k,stride,padding,gather", [
    ((3, 8, 16), 7, 2, 3, True), ((1, 8, 16), 5, 2, (2, 1, 0, 2), True),
    ((1, 8, 24), 7, 2, 3, True), ((2, 4, 8), 3, 1, 1, True), ((2, 6, 8), 3, 1, 1, True),
    ((3, 8, 8), 3, 1, 1, False), ((3, 5, 8), 3, 1, (0, 2, 1, 0), False),
])
def test_gathering_loads_fold_the_stem_on_chip(rng, shape, k, stride, padding, gather):
    """Where it needs fewer PE beats than the phases on the raw bytes, the stem reads its input
    through gathering LOAD_ROWS (space-to-depth rows and column fold built by the loader);
    either way bit-exact on the ISA simulator, edges included."""
    model = _stem_model(rng, shape, k, stride, padding)
    comp = compile_model(model, TINY)
    assert comp.input_layout == "direct" and comp.input_gather == gather
    assert comp.layers[0].kind == "conv^" and comp.one_program
    assert ("gathering loads" in comp.report()) == gather
    for img in (rng.integers(0, 256, size=shape), np.full(shape, 255), np.zeros(shape, np.int64)):
        _check_all(model, comp, img)


def test_resnet18_stem_gathers_at_the_host_layout_density(rng):
    """ResNet-18's 7x7/2 stem on z020: 4 phases of 12 sets (the host-prepared space-to-depth
    and fold's 12, instead of the 14 or 21 of the phases on the raw bytes), bit-exact."""
    cfg = get_config("z020")
    shape = (3, 32, 32)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    model = b.build(b.conv("conv1", "input", 64, 7, stride=2, padding=3))
    comp = compile_model(model, cfg)
    assert comp.input_gather and comp.layers[0].sets_per_mtile == 12
    assert comp.layers[0].pe_beats == 12 * 16 * 16
    _check_all(model, comp, rng.integers(0, 256, size=shape), cfg)


@pytest.mark.parametrize("case", ["direct", "layout", "gather"])
def test_rtl_raw_image_in_logits_out(rng, case):
    """On the RTL with random memory stalls: the host writes the image's own bytes and their
    activation check entries (one beat a row; nothing else but the model image), the
    accelerator does the rest; every layer bit-exact (check mode), then three frames back to
    back with different images."""
    # gather: 2 raw rows a stored pixel, segments from bytes -3, -1, 1, 3 of each row
    shape = (1, 8, 24) if case == "gather" else (3, 8, 8)
    model = {"direct": lambda: _stem_model(rng, shape, 3, 2, 1),
             "layout": lambda: _stem_model(rng, shape, 3, 1, 1, pool_first=True),
             "gather": lambda: _stem_model(rng, shape, 7, 2, 3)}[case]()
    comp = compile_model(model, TINY)
    assert comp.input_layout == ("layout" if case == "layout" else "direct")
    assert comp.input_gather == (case == "gather")
    c, h, w = shape
    imgs = [rng.integers(0, 256, size=(h, w, c), dtype=np.uint8) for _ in range(3)]
    imgs[1] = np.full((h, w, c), 255, np.uint8)
    refs = [reference.run(model, np.transpose(im, (2, 0, 1)), spec=TINY.numeric) for im in imgs]

    async def body(drv, mem):
        writes = []
        orig = drv.t.mem_write

        async def mem_write(addr, data):
            writes.append((addr, bytes(data)))
            return await orig(addr, data)
        drv.t.mem_write = mem_write
        await drv.load(comp)
        writes.clear()
        full, _ = await drv.infer(comp, imgs[0], load=False, check=True, layout="HWC")
        frame_writes = list(writes)
        stream = await drv.infer_stream(comp, imgs, load=False, layout="HWC")
        return full, frame_writes, stream

    full, frame_writes, stream = _sim(TINY, comp, body, mem_mode="random", seed=11)
    inp = comp.tensors[model.input].addr
    assert frame_writes == [(inp, imgs[0].tobytes()),
                            (comp.input_check, act_check_entries(
                                inp, imgs[0].tobytes(), comp.input_row_bytes, TINY.beat_bytes))]
    for layer in model.layers:
        np.testing.assert_array_equal(full[layer.output], refs[0][layer.output],
                                      err_msg=layer.name)
    for got, ref in zip(stream.outputs, refs):
        np.testing.assert_array_equal(got, ref[model.output])
    assert len({o.tobytes() for o in stream.outputs}) > 1


def _written_both_ways(comp, img) -> tuple[bytes, bytes]:
    """The bytes ``Driver.write_input`` writes for the CHW image ``img`` and for its HWC copy
    (each followed by the input's activation check entries, the same for both)."""
    written = []

    class Mem:
        async def mem_write(self, addr, data):
            written.append((addr, bytes(data)))
    drv = Driver(Mem(), TINY)
    run_sync(drv.write_input(comp, img))
    run_sync(drv.write_input(comp, np.transpose(img, (1, 2, 0)).astype(np.uint8),
                             layout="HWC"))
    inp = comp.tensor_addr(comp.input)
    assert [a for a, _ in written] == [inp, comp.input_check] * 2
    assert written[1] == written[3]
    return written[0][1], written[2][1]


def test_chw_images_are_transposed_by_the_driver(rng):
    """The same frame from a CHW image (the driver transposes it) and from its HWC bytes."""
    model = _stem_model(rng, (3, 8, 8), 3, 1, 1)
    comp = compile_model(model, TINY)
    img = rng.integers(0, 256, size=(3, 8, 8))

    chw, hwc = _written_both_ways(comp, img)
    assert chw == hwc == np.transpose(img, (1, 2, 0)).astype(np.uint8).tobytes()


def test_cli_images_in_either_layout(tmp_path):
    """``--images`` takes (N, C, H, W) or the raw images' own (N, H, W, C) arrays."""
    from ilmpq.firmware.cli.simulate import load_images
    a = np.random.default_rng(0).integers(0, 256, (2, 4, 8, 3)).astype(np.uint8)
    np.save(tmp_path / "hwc.npy", a)
    np.save(tmp_path / "chw.npy", a.transpose(0, 3, 1, 2))
    for f in ("hwc.npy", "chw.npy"):
        np.testing.assert_array_equal(load_images(str(tmp_path / f), (3, 4, 8)),
                                      a.transpose(0, 3, 1, 2))
    with pytest.raises(IlmpqValueError, match=r"\(N, 4, 9, 3\) as \(N, H, W, C\)"):
        load_images(str(tmp_path / "hwc.npy"), (3, 4, 9))


def test_hwc_images_for_a_host_layout_model(rng):
    """A model whose input the host lays out still takes HWC images: the driver transposes
    them and lays them out exactly as a CHW image."""
    model = _stem_model(rng, (3, 7, 7), 3, 1, 1)
    comp = compile_model(model, TINY)
    assert comp.input_layout == "host"
    img = rng.integers(0, 256, size=(3, 7, 7))

    chw, hwc = _written_both_ways(comp, img)
    assert chw == hwc == comp.tensors["input"].to_memory(img)


def test_rtl_gather_into_words_wider_than_a_beat(rng):
    """tn = 16 (z020's 16-byte buffer words, two beats each): the gathering loads write beat by
    beat through the buffer's per-beat write enables, the plain loads whole words; every layer
    bit-exact on the RTL with random memory stalls."""
    cfg = TINY.replace(name="tiny-tn16", tn=16)
    model = _stem_model(rng, (3, 8, 16), 7, 2, 3, cfg=cfg)
    comp = compile_model(model, cfg)
    assert comp.input_gather
    img = rng.integers(0, 256, size=(3, 8, 16))
    ref = reference.run(model, img, spec=cfg.numeric)

    full = simulate(comp, [img], mem_mode="random", seed=3)[0].tensors
    for layer in model.layers:
        np.testing.assert_array_equal(full[layer.output], ref[layer.output], err_msg=layer.name)
