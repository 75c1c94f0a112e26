"""``ilmpq quantize``: quantize a float ONNX CNN into an ILMPQ integer model (``.npz``).

::

    ilmpq quantize MODEL.onnx --calib SAMPLES.npy -o OUT.npz [--ratio R | --config NAME]
                   [--act-bits A] [--rule error|variance] [--input-mean M] [--input-std S]

``MODEL`` is an ONNX file, or ``default`` for the embedded digits CNN (whose calibration split is
used when ``--calib`` is omitted). ``SAMPLES.npy`` holds calibration images as raw pixels in
``[0, 255]`` (float or integer), shape ``(N, C, H, W)`` in the model's input layout; the
normalization the model was trained with is ``--input-mean`` / ``--input-std`` (per channel,
comma separated; default: the model's ``ilmpq.input_mean`` / ``ilmpq.input_std`` metadata). A
model that carries no such metadata needs them, or ``--raw-pixels`` if it really takes raw pixels
0..255: a wrong normalization gives a plausible but wrong model, so it is never guessed.
The high-precision share and the numeric widths come from a hardware configuration
(``--config``, default ``tiny``) or, with ``--ratio``, from the ratio and the default widths;
the model records it (``meta["hw_config"]``, :mod:`ilmpq.firmware.cli._shared`) so that
``compile`` and ``simulate`` use it by default and name it in any mismatch. The normalization,
the configuration and ``R`` used, and the per-layer quantization report are printed; the model
is written atomically (``--force`` to replace an existing file).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...golden.errors import IlmpqValueError
from ...golden.formats import SUPPORTED_ACT_BITS, NumericSpec
from ...golden.quantize import RULES, parse_ratio, quant_report, quantize
from ...golden.safeio import open_input, read_npy
from ...hdl.config import PRESETS, get_config
from ..outputs import add_force_argument, atomic_path, check_output_file
from ._shared import record_config

HELP = "quantize a float ONNX CNN (or the embedded default model) into an ILMPQ integer model"

__all__ = ["HELP", "register", "main", "DEFAULT_MODEL", "resolve_target", "load_model",
           "load_calib", "parse_act_clip"]

#: The MODEL argument that selects the embedded digits CNN.
DEFAULT_MODEL = "default"


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value list {text!r}: give numbers separated by commas, e.g. 0.5 or "
            f"123.7,116.3,103.5") from None
    if not vals:
        raise argparse.ArgumentTypeError("give at least one number")
    return vals


def parse_act_clip(text: str):
    """``mse``, ``max`` or a percentile in ``(0, 100]``."""
    if text in ("mse", "max"):
        return text
    try:
        p = float(text)
    except ValueError:
        raise IlmpqValueError(f"--act-clip {text!r} is not allowed: use mse, max or a "
                              f"percentile in (0, 100] such as 99.99") from None
    if not 0 < p <= 100:
        raise IlmpqValueError(f"--act-clip percentile {p} must be in (0, 100]")
    return p


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help=f"float ONNX model file, or '{DEFAULT_MODEL}' for the embedded "
                             f"digits CNN")
    parser.add_argument("--calib", metavar="SAMPLES.npy", default=None,
                        help="calibration images, raw pixels 0..255, float or integer NCHW "
                             "array in the model's input layout (required for a user model)")
    parser.add_argument("-o", "--output", metavar="OUT.npz", required=True,
                        help="where to write the quantized model")
    add_force_argument(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--ratio", default=None,
                        help="high-precision (8-bit) row share R, e.g. 1/8 or 0.125 (numeric "
                             "widths: the defaults)")
    target.add_argument("--config", default=None, choices=sorted(PRESETS),
                        help="hardware configuration giving R and the numeric widths "
                             "(default: tiny)")
    parser.add_argument("--act-bits", type=int, default=None, choices=SUPPORTED_ACT_BITS,
                        help="activation width (default: the configuration's, 8 with --ratio)")
    parser.add_argument("--rule", choices=RULES, default="error",
                        help="row selection: output error of 4-bit rows on calibration data "
                             "(FILM-QNN, default) or weight variance")
    parser.add_argument("--input-mean", type=_floats, default=None, metavar="M[,M...]",
                        help="input normalization mean per channel, pixel units")
    parser.add_argument("--input-std", type=_floats, default=None, metavar="S[,S...]",
                        help="input normalization std per channel, pixel units")
    parser.add_argument("--raw-pixels", action="store_true",
                        help="the model takes raw pixels 0..255 (mean 0, std 1); required when "
                             "the model carries no ilmpq.input_mean/input_std metadata and "
                             "neither --input-mean nor --input-std is given")
    parser.add_argument("--input-shape", default=None, metavar="C,H,W",
                        help="per-image input shape, for a model whose input size is symbolic")
    parser.add_argument("--act-clip", default="mse",
                        help="activation clipping: mse (default), max or a percentile")


def resolve_target(args) -> tuple[Fraction, NumericSpec, str]:
    """``(ratio, spec, description)`` from ``--ratio`` / ``--config`` / ``--act-bits``."""
    r, spec, desc, _ = _target(args)
    return r, spec, desc


def _target(args):
    if args.ratio is not None:
        r = parse_ratio(args.ratio)
        spec = NumericSpec(act_bits=args.act_bits or 8)
        return r, spec, f"R = {r} (--ratio), A{spec.act_bits}", None
    cfg = get_config(args.config or "tiny")
    if args.act_bits is not None:
        cfg = cfg.replace(act_bits=args.act_bits)
    how = "--config" if args.config else "default --config tiny"
    return cfg.ratio, cfg.numeric, f"{cfg.describe()} ({how})", cfg


def input_normalization(fm, args) -> tuple[list, list, str]:
    """``(mean, std, source)`` the model will be quantized with; an error when the model
    carries no normalization and none is given (never a silent mean 0, std 1)."""
    from ...golden.onnx_import import META_INPUT_MEAN, META_INPUT_STD

    given = args.input_mean is not None or args.input_std is not None
    if getattr(args, "raw_pixels", False):
        if given:
            raise IlmpqValueError("--raw-pixels says the model takes raw pixels (mean 0, std "
                                  "1); do not combine it with --input-mean/--input-std")
        c = len(fm.input_mean)
        return [0.0] * c, [1.0] * c, "--raw-pixels"
    md = fm.meta.get("metadata") or {}
    has_meta = META_INPUT_MEAN in md or META_INPUT_STD in md
    if not given and not has_meta:
        raise IlmpqValueError(
            f"{args.model}: the model carries no input normalization (ONNX metadata "
            f"{META_INPUT_MEAN} / {META_INPUT_STD}); give the one it was trained with as "
            f"--input-mean M[,M...] --input-std S[,S...] in pixel units (e.g. ImageNet: "
            f"--input-mean 123.7,116.3,103.5 --input-std 58.4,57.1,57.4), or --raw-pixels if it "
            f"takes raw pixels 0..255")
    mean = args.input_mean if args.input_mean is not None else list(fm.input_mean)
    std = args.input_std if args.input_std is not None else list(fm.input_std)
    src = []
    for name, arg, key in (("mean", args.input_mean, META_INPUT_MEAN),
                           ("std", args.input_std, META_INPUT_STD)):
        src.append(f"{name} from --input-{name}" if arg is not None else
                   f"{name} from the model's metadata" if key in md else f"{name} default")
    if src[0].endswith("metadata") and src[1].endswith("metadata"):
        src = [f"from the model's metadata {META_INPUT_MEAN} / {META_INPUT_STD}"]
    return [float(v) for v in mean], [float(v) for v in std], ", ".join(src)


def load_model(name: str, input_shape=None):
    """The float model: the embedded one for ``default``, else an ONNX file (canonicalized:
    ``input_shape`` fixes symbolic input dimensions)."""
    from ...golden.data import load_default_model
    from ...golden.onnx_import import load_onnx

    if name == DEFAULT_MODEL:
        if input_shape is not None:
            raise IlmpqValueError("--input-shape applies to an ONNX file; the embedded model's "
                                  "input is fixed")
        return load_default_model()
    return load_onnx(name, input_shape=input_shape)


def _is_quantized(path) -> bool:
    """Whether the ONNX file holds QONNX / QDQ quantizers (a file that cannot be read is left to
    the float importer, which names the problem)."""
    from ...golden.qonnx_import import is_quantized_onnx
    try:
        return is_quantized_onnx(path)
    except Exception:  # noqa: BLE001 - load_onnx reports it
        return False


def load_calib(path) -> np.ndarray:
    """Read a calibration ``.npy`` (no pickles) and name the problem if it is not one."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    with open_input(p, "calibration images (.npy)") as f:   # never a FIFO or a device
        magic = f.read(6)
    if magic[:2] == b"PK":
        raise IlmpqValueError(f"{p}: holds an .npz archive; give a single .npy array of "
                              f"calibration images (N, C, H, W)")
    if magic != b"\x93NUMPY":
        raise IlmpqValueError(f"{p}: not a readable .npy array of calibration images (the file "
                              f"has no .npy header); give one array (N, C, H, W) of raw pixels "
                              f"0..255 saved with numpy.save")
    try:
        arr = read_npy(p, "calibration images", mmap=True)   # header checked; streamed
    except (ValueError, OSError, EOFError) as e:
        raise IlmpqValueError(f"{p}: not a readable .npy array of calibration images ({e})") \
            from None
    if not isinstance(arr, np.ndarray):
        raise IlmpqValueError(f"{p}: holds an .npz archive; give a single .npy array of "
                              f"calibration images (N, C, H, W)")
    return arr


def _vec(v) -> str:
    return f"{v[0]:g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:g}" for x in v) + "]"


def main(args) -> int:
    from ...golden.data import load_digits
    from ...golden.quantize import accuracy_float, accuracy_int

    check_output_file(args.output, force=args.force)
    if args.model != DEFAULT_MODEL and _is_quantized(args.model):
        # an already quantized model (QONNX / QDQ) is imported, never re-quantized
        from .import_ import run_import
        print(f"{args.model} holds quantizers (QONNX / QDQ): importing it without "
              f"re-quantizing (ilmpq import); --calib is used as input codes to measure against")
        return run_import(args.model, args.output, args=args, images_arg=args.calib)
    ratio, spec, desc, cfg = _target(args)
    act_clip = parse_act_clip(args.act_clip)
    fm = load_model(args.model, getattr(args, "input_shape", None))
    for line in fm.meta.get("canonicalize", []):
        print(f"canonicalize: {line}")
    if fm.meta.get("output_head"):
        from ...golden.heads import describe_head
        print(f"output head: {describe_head(fm.meta['output_head'])}")
    if args.calib is not None:
        calib = load_calib(args.calib)
    elif args.model == DEFAULT_MODEL:
        calib, _ = load_digits("calib")
    else:
        raise IlmpqValueError("--calib SAMPLES.npy is required for a user model (calibration "
                              "images, raw pixels 0..255, NCHW)")
    from ...golden.quantize import check_calib_images

    check_calib_images(fm, calib)  # the calibration file's own errors first
    mean, std, norm_src = input_normalization(fm, args)
    print(f"target: {desc}")
    print(f"input normalization: (pixels - {_vec(mean)}) / {_vec(std)} ({norm_src})")
    qm = quantize(fm, calib, ratio=ratio, spec=spec, rule=args.rule,
                  input_mean=mean, input_std=std, act_clip=act_clip)
    qm.meta["cli"] = {"model": args.model, "calib": args.calib, "target": desc,
                      "input_mean": mean, "input_std": std, "normalization": norm_src}
    record_config(qm.meta, cfg, ratio, spec.act_bits)
    with atomic_path(args.output, force=args.force) as tmp:
        qm.save(tmp)
    print(quant_report(qm).format())
    if args.model == DEFAULT_MODEL:
        xt, yt = load_digits("test")
        print(f"digits test accuracy: float {100 * accuracy_float(fm, xt, yt):.2f}%, "
              f"quantized {100 * accuracy_int(qm, xt, yt):.2f}% ({len(yt)} images)")
    print(f"wrote {args.output}: {len(qm.layers)} layers, {len(qm.conv_layers)} conv/FC, "
          f"quantized for {desc}")
    return 0
