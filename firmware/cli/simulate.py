"""``ilmpq simulate``: run a quantized model on the accelerator RTL and check every layer.

::

    ilmpq simulate MODEL.npz [--config NAME] [--sim amaranth|verilator]
                   [--images IMAGES.npy | --count N] [--mem deterministic|random] [--seed S]
                   [--mac-key-file KEY] [--batch B]

The model is compiled for the configuration and run image by image on the RTL (the Amaranth
simulator, or the emitted Verilog under Verilator), driven through the accelerator's registers
by the same driver that drives a board. Every layer's output is compared bit for bit with the
golden reference; the first mismatch is reported with its layer, channel, pixel and both values,
and the command exits with status 1. ``IMAGES.npy`` holds uint8 images ``(N, C, H, W)``;
without it, ``--count`` random images are drawn (seeded). ``--batch B`` compiles the model for
B images a run (docs/architecture.md, *Batching*) and runs the images in groups of B (a last
smaller group is filled up with copies of its last image, whose results are dropped); each
image's line then shows its run's cycles.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ...golden import reference
from ...golden.errors import IlmpqValueError
from ...golden.model import QModel
from ...golden.safeio import open_input, read_npy
from ...hdl.config import PRESETS
from .. import wpkg
from ..progress import Progress
from ._shared import add_batch_argument, compile_checked, model_config, simulate_with_progress

HELP = "run a quantized model on the accelerator RTL and check every layer against golden"

__all__ = ["HELP", "register", "main", "compare_layers", "load_images", "images_from_args"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.npz", help="quantized model (ilmpq quantize)")
    parser.add_argument("--config", default=None, choices=sorted(PRESETS),
                        help="hardware configuration (default: the one the model was quantized "
                             "for, else tiny)")
    parser.add_argument("--sim", choices=("amaranth", "verilator"), default="verilator",
                        help="simulator (default: verilator)")
    parser.add_argument("--images", metavar="IMAGES.npy", default=None,
                        help="uint8 images (N, C, H, W); default: random images")
    parser.add_argument("--count", type=int, default=1, help="random images (default: 1)")
    parser.add_argument("--mem", choices=("deterministic", "random"), default="deterministic",
                        help="AXI memory timing (random: Amaranth only)")
    parser.add_argument("--mac-key-file", metavar="KEY", default=None,
                        help="authenticate the weight packages with the SipHash-2-4 key in this "
                             "file (16 raw bytes or 32 hex digits) and run with the MAC check on")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random images and of --mem random (default 0)")
    add_batch_argument(parser)


def _images(n: int) -> str:
    return "image" if n == 1 else "images"


def compare_layers(model, ref: dict, got: dict) -> str | None:
    """``None`` if every layer output matches, else a line naming the first mismatch. A conv
    whose STOREs pool vertically (``Compiled.vpooled``: ``got`` has ``<output>@vpool``, not its
    output) is compared as golden's output pooled over rows (``vpool_rows``)."""
    from ..compiler import vpool_rows
    for layer in model.layers:
        if layer.output not in got and f"{layer.output}@vpool" in got:
            exp = vpool_rows(ref[layer.output])
            out = np.asarray(got[f"{layer.output}@vpool"])
        else:
            exp, out = np.asarray(ref[layer.output]), np.asarray(got[layer.output])
        diff = np.argwhere(exp != out)
        if len(diff):
            c, y, x = (int(v) for v in diff[0])
            return (f"layer {layer.name!r} ({layer.output}): channel {c}, pixel (y={y}, x={x}):"
                    f" golden {int(exp[c, y, x])}, RTL {int(out[c, y, x])} "
                    f"({len(diff)} of {exp.size} values differ)")
    return None


def load_images(path: str, shape) -> np.ndarray:
    """Read ``(N, C, H, W)`` or ``(N, H, W, C)`` (or one image) integer pixels in [0, 255] from
    a ``.npy`` file (no pickles), returned as ``(N, C, H, W)``; every problem is an
    :class:`IlmpqValueError` naming the file."""
    try:
        with open_input(path, "images (.npy)") as f:   # never a FIFO or a device
            magic = f.read(6)
    except OSError as e:
        raise IlmpqValueError(f"cannot read images from {path!r}: {e.strerror}") from None
    if magic != b"\x93NUMPY":
        raise IlmpqValueError(f"{path!r} is not a .npy array file (numpy.save); give the images "
                              f"as one uint8 array (N, {', '.join(map(str, shape))})")
    try:
        imgs = read_npy(path, "images")   # header checked against the file size
    except (ValueError, OSError, EOFError) as e:
        raise IlmpqValueError(f"cannot read images from {path!r}: {e}") from None
    if imgs.ndim == 3:
        imgs = imgs[None]
    c, h, w = shape
    if imgs.ndim == 4 and tuple(imgs.shape[1:]) == (h, w, c) != tuple(shape):
        imgs = imgs.transpose(0, 3, 1, 2)      # NHWC, the images' own bytes -> NCHW
    if imgs.ndim != 4 or tuple(imgs.shape[1:]) != tuple(shape):
        raise IlmpqValueError(f"{path!r} holds an array of shape {imgs.shape}; the model takes "
                              f"images (N, {', '.join(map(str, shape))}) as (N, C, H, W), or "
                              f"(N, {h}, {w}, {c}) as (N, H, W, C)")
    if len(imgs) == 0:
        raise IlmpqValueError(f"{path!r} holds no images (shape {imgs.shape})")
    if not np.issubdtype(imgs.dtype, np.integer) or imgs.min() < 0 or imgs.max() > 255:
        raise IlmpqValueError(f"{path!r} must hold integer pixels in [0, 255]")
    return imgs.astype(np.int64)


def images_from_args(args, shape) -> np.ndarray:
    """The images of ``--images FILE`` or ``--count N`` random ones (seeded by ``--seed``)."""
    if args.images:
        return load_images(args.images, shape)
    if args.count < 1:
        raise IlmpqValueError(f"--count must be at least 1, not {args.count}")
    if args.seed < 0:
        raise IlmpqValueError(f"--seed must be a non-negative integer, not {args.seed}")
    return np.random.default_rng(args.seed).integers(0, 256, size=(args.count, *shape))


def main(args) -> int:
    if args.seed < 0:
        raise IlmpqValueError(f"--seed must be a non-negative integer, not {args.seed}")
    model = QModel.load(args.model)
    cfg, line = model_config(model, args.config, args.model)
    imgs = images_from_args(args, model.tensors[model.input].shape)
    if args.mem == "random" and args.sim != "amaranth":
        raise IlmpqValueError("--mem random needs --sim amaranth (Verilator's memory is "
                              "deterministic)")
    print(line)
    mac = None
    if args.mac_key_file is not None:
        mac = wpkg.MacKey(wpkg.read_key_file(args.mac_key_file), wpkg.new_nonce())
    comp = compile_checked(model, cfg, args.model, mac=mac) if args.batch == 1 else \
        compile_checked(model, cfg, args.model, mac=mac, batch=args.batch)
    macs = sum(r.macs for r in comp.layers if r.where == "accel")
    t0 = time.perf_counter()
    results = simulate_with_progress(comp, imgs, sim=args.sim, progress=Progress(),
                                     mem_mode=args.mem, seed=args.seed,
                                     mac_key=None if mac is None else mac.key)
    seconds = time.perf_counter() - t0
    bad = 0
    for i, (img, res) in enumerate(zip(imgs, results)):
        why = compare_layers(model, reference.run(model, img, spec=cfg.numeric), res.tensors)
        cyc = res.stats["cycles"]
        util = macs / max(1, cyc * cfg.macs_per_cycle)
        print(f"image {i + 1}/{len(imgs)}: {'bit-exact' if why is None else 'MISMATCH'}, "
              f"{cyc} cycles, "
              f"PE utilization {util:.1%}, {cyc / 100e6 * 1e3:.3f} ms at 100 MHz")
        if why is not None:
            print(f"  {why}")
            bad += 1
    if args.batch > 1:
        runs = [r.stats["cycles"] for r in results[::args.batch]]
        print(f"batch {args.batch}: {len(runs)} {'run' if len(runs) == 1 else 'runs'}, "
              f"{int(np.mean(runs)) // args.batch} cycles per image ({args.batch} images a run "
              f"of {int(np.mean(runs))} cycles)")
    print(f"{len(imgs) - bad}/{len(imgs)} {_images(len(imgs))} bit-exact on every layer "
          f"({args.sim}, {seconds:.1f} s)")
    return 1 if bad else 0
