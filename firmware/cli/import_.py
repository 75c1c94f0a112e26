"""``ilmpq import``: import an already quantized ONNX model (QONNX from Brevitas, or ONNX QDQ)
into an ILMPQ integer model (``.npz``) without re-quantizing it.

::

    ilmpq import MODEL.onnx -o OUT.npz [--config NAME | --ratio R] [--act-bits A]
                 [--images CODES.npy | --images digits] [--runner reference|onnxruntime]

The model's integer weights, activation scales and bit widths are kept
(:func:`ilmpq.golden.qonnx_import.import_quantized`); the high-precision share ``R`` and the
numeric widths come from the configuration (default ``tiny``), the activation width from the
model unless ``--act-bits`` requires one. ``--images`` (input codes, ``uint8`` ``(N, C, H, W)``;
``digits`` = the embedded digits calibration split) executes the original model with
``onnx.reference`` (QONNX) or ``onnxruntime`` (QDQ) and measures ilmpq's deviation layer by layer.
The import report (exactness contract per layer) is printed and saved in the model.
"""

from __future__ import annotations

import argparse

import numpy as np

from ...golden.errors import IlmpqValueError
from ...golden.formats import SUPPORTED_ACT_BITS
from ...hdl.config import PRESETS
from ..outputs import add_force_argument, atomic_path, check_output_file

HELP = "import a quantized ONNX model (QONNX / Brevitas, or QDQ) without re-quantizing it"

__all__ = ["HELP", "register", "main", "run_import"]

#: The --images value that selects the embedded digits calibration split.
DIGITS = "digits"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx", help="QONNX or QDQ ONNX model")
    parser.add_argument("-o", "--output", metavar="OUT.npz", required=True,
                        help="where to write the integer model")
    add_force_argument(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--ratio", default=None,
                        help="high-precision (8-bit) row share R, e.g. 1/8 (default widths)")
    target.add_argument("--config", default=None, choices=sorted(PRESETS),
                        help="hardware configuration giving R and the numeric widths "
                             "(default: tiny)")
    parser.add_argument("--act-bits", type=int, default=None, choices=SUPPORTED_ACT_BITS,
                        help="require this activation width (default: the model's)")
    parser.add_argument("--images", default=None, metavar="CODES.npy",
                        help=f"input codes uint8 (N, C, H, W) to measure the deviation from the "
                             f"model on, or '{DIGITS}' for the embedded digits calibration split")
    parser.add_argument("--runner", choices=("reference", "onnxruntime"), default=None,
                        help="executor of the original model (default: onnx.reference for "
                             "QONNX, onnxruntime for QDQ)")


def run_import(model: str, output: str, *, args, images_arg=None) -> int:
    """Import ``model``, print the report, write ``output`` (shared with ``ilmpq quantize``)."""
    from ...golden.qonnx_import import import_quantized, import_report
    from ._shared import record_config
    from .quantize import _target, load_calib

    force = getattr(args, "force", False)
    check_output_file(output, force=force)
    ratio, spec, desc, cfg = _target(args)
    images = None
    if images_arg == DIGITS:
        from ...golden.data import load_digits
        images, _ = load_digits("calib")
    elif images_arg is not None:
        images = load_calib(images_arg)
        if not np.issubdtype(images.dtype, np.integer):
            if not np.all(images == np.rint(images)):
                raise IlmpqValueError(f"{images_arg}: the images must be integer input codes "
                                      f"0..255 (what the model's input quantizer produces)")
            images = images.astype(np.int64)
    print(f"target: {desc}")
    qm = import_quantized(model, ratio=ratio, spec=spec, act_bits=args.act_bits, images=images,
                          runner=getattr(args, "runner", None))
    qm.meta["cli"] = {"model": model, "images": images_arg, "target": desc}
    record_config(qm.meta, cfg, ratio, qm.act_bits)
    with atomic_path(output, force=force) as tmp:
        qm.save(tmp)
    print(import_report(qm).format())
    if images_arg == DIGITS:
        from ...golden.data import load_digits
        from ...golden.quantize import accuracy_int
        xt, yt = load_digits("test")
        if tuple(xt.shape[1:]) == qm.tensors[qm.input].shape:
            print(f"digits test accuracy (integer model): {100 * accuracy_int(qm, xt, yt):.2f}% "
                  f"({len(yt)} images)")
    print(f"wrote {output}: {len(qm.layers)} layers, {len(qm.conv_layers)} conv/FC")
    return 0


def main(args) -> int:
    return run_import(args.model, args.output, args=args, images_arg=args.images)
