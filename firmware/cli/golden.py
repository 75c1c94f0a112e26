"""``ilmpq golden``: run a random quantized network through the integer reference.

Builds a random quantized CNN (:func:`ilmpq.golden.random_models.random_qmodel`, or ResNet-18
with ``--model resnet18``), runs one random image through :func:`ilmpq.golden.reference.run` and
prints one row per layer: op, output shape, MACs, HI rows, output min/max/mean, the saturation
fraction (share of a conv layer's outputs at the top of the range, or at either end for a signed
output; ReLU zeros do not count) and the layer's time.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import numpy as np

from ...golden.errors import IlmpqValueError
from ...golden.formats import SUPPORTED_ACT_BITS, NumericSpec
from ...golden.model import ConvLayer, QModel
from ...golden.ops import output_range
from ...golden.random_models import random_qmodel, resnet18_qmodel
from ...golden.reference import run
from ..outputs import add_force_argument, atomic_path, check_output_file

HELP = "run a random quantized CNN through the golden integer reference and print per-layer stats"

__all__ = ["HELP", "register", "main", "layer_table"]


def _ratio(text: str) -> Fraction:
    try:
        r = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid ratio {text!r}: give a fraction like 1/8 or a decimal like 0.125") from None
    if not 0 <= r <= 1:
        raise argparse.ArgumentTypeError(f"ratio {text} is not allowed: it must be in [0, 1]")
    return r


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random model and image (default 0)")
    parser.add_argument("--act-bits", type=int, default=8, choices=SUPPORTED_ACT_BITS,
                        help="activation width (default 8)")
    parser.add_argument("--ratio", type=_ratio, default=Fraction(1, 8),
                        help="high-precision (8-bit) row share R, e.g. 1/8 (default 1/8)")
    parser.add_argument("--model", choices=("random", "resnet18"), default="random",
                        help="random small CNN (default) or ResNet-18 with random weights")
    parser.add_argument("--input-hw", type=int, default=None,
                        help="input height = width (default 32 for random, 224 for resnet18)")
    parser.add_argument("--save", metavar="PATH", default=None,
                        help="also save the quantized model as .npz")
    add_force_argument(parser)


def layer_table(model: QModel, tensors: dict[str, np.ndarray],
                timings: dict[str, float]) -> list[dict]:
    """One dict per layer with the statistics ``ilmpq golden`` prints."""
    macs = model.macs()
    rows = []
    for layer in model.layers:
        y = tensors[layer.output]
        spec = model.tensors[layer.output]
        row = {"layer": layer.name, "op": layer.kind, "shape": "x".join(map(str, y.shape)),
               "macs": macs.get(layer.name), "hi": None, "min": int(y.min()),
               "max": int(y.max()), "mean": float(y.mean()), "sat": None,
               "ms": 1e3 * timings.get(layer.name, 0.0)}
        if isinstance(layer, ConvLayer):
            row["hi"] = f"{len(layer.hi_rows)}/{layer.out_channels}"
            qmin, qmax = output_range(spec.bits, spec.signed, layer.relu)
            at_end = (y == qmax) | ((y == qmin) if spec.signed else False)
            row["sat"] = float(np.mean(at_end))
        rows.append(row)
    return rows


def _format(rows: list[dict]) -> str:
    head = ["layer", "op", "output", "MACs", "HI rows", "min", "max", "mean", "sat", "ms"]
    body = [[r["layer"], r["op"], r["shape"], "-" if r["macs"] is None else f"{r['macs']:,}",
             r["hi"] or "-", str(r["min"]), str(r["max"]), f"{r['mean']:.2f}",
             "-" if r["sat"] is None else f"{100 * r['sat']:.1f}%", f"{r['ms']:.2f}"]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    left = {0, 1, 2}

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(args) -> int:
    if args.seed < 0:
        raise IlmpqValueError(f"--seed must be a non-negative integer, not {args.seed}")
    if args.save:
        check_output_file(args.save, force=args.force)
    spec = NumericSpec(act_bits=args.act_bits)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    if args.model == "resnet18":
        hw = 224 if args.input_hw is None else args.input_hw
        model = resnet18_qmodel(rng, spec=spec, ratio=args.ratio, input_hw=hw)
    else:
        hw = 32 if args.input_hw is None else args.input_hw
        if hw < 1:
            raise IlmpqValueError(f"--input-hw must be a positive integer, not {hw}")
        model = random_qmodel(rng, spec=spec, ratio=args.ratio, input_shape=(3, hw, hw))
    t_build = time.perf_counter() - t0
    image = rng.integers(0, 256, size=model.tensors[model.input].shape, dtype=np.uint8)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tensors = run(model, image, timings=timings)
    t_run = time.perf_counter() - t0
    rows = layer_table(model, tensors, timings)
    total_macs = sum(model.macs().values())
    print(f"model: {args.model} (seed {args.seed}), input {model.tensors[model.input].shape}, "
          f"A{spec.act_bits}, R = {args.ratio}, {len(model.conv_layers)} conv/FC layers, "
          f"{total_macs:,} MACs (built in {t_build:.2f} s)")
    print(_format(rows))
    logits = tensors[model.output].reshape(-1)
    print(f"total {1e3 * t_run:.1f} ms; output {model.output!r}: argmax {int(np.argmax(logits))}"
          f", min {int(logits.min())}, max {int(logits.max())}")
    if args.save:
        with atomic_path(args.save, force=args.force) as tmp:
            model.save(tmp)
        print(f"saved {args.save}")
    return 0
