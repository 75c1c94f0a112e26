"""Benchmark: golden integer reference inference of ResNet-18 (224x224, random quantized weights).

Builds ``resnet18_qmodel`` (seeded), runs ``--images`` random images through
``ilmpq.golden.reference.run`` and records the time per image and per layer (median over the
images; the first image is a warm-up and not counted unless it is the only one). Writes
``bench/results/golden_resnet18.json`` and ``.md``.

Usage: ``python bench/golden_resnet18.py [--images N] [--seed S] [--act-bits A] [--out DIR]``

The convolutions run as float64 BLAS matrix products. On a shared or loaded machine a
multithreaded BLAS can be several times slower than a single thread; the committed results were
taken with ``OPENBLAS_NUM_THREADS=1`` (recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

from ilmpq.golden.formats import NumericSpec
from ilmpq.golden.model import ConvLayer
from ilmpq.golden.random_models import resnet18_qmodel
from ilmpq.golden.reference import run


def measure(images: int, seed: int, act_bits: int, ratio: Fraction) -> dict:
    spec = NumericSpec(act_bits=act_bits)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    model = resnet18_qmodel(rng, spec=spec, ratio=ratio)
    t_build = time.perf_counter() - t0
    macs = model.macs()
    per_image, per_layer = [], {layer.name: [] for layer in model.layers}
    predictions = []
    for i in range(images + 1):
        img = rng.integers(0, 256, size=(3, 224, 224), dtype=np.uint8)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        out = run(model, img, timings=timings)
        dt = time.perf_counter() - t0
        predictions.append(int(np.argmax(out[model.output].reshape(-1))))
        if i == 0 and images > 0:
            continue  # warm-up
        per_image.append(dt)
        for name, t in timings.items():
            per_layer[name].append(t)
    total_macs = sum(macs.values())
    med = statistics.median(per_image)
    layers = []
    for layer in model.layers:
        t = statistics.median(per_layer[layer.name])
        m = macs.get(layer.name)
        layers.append({
            "layer": layer.name, "op": layer.kind,
            "output_shape": list(model.tensors[layer.output].shape),
            "kernel": list(layer.kernel) if isinstance(layer, ConvLayer) else None,
            "stride": list(layer.stride) if hasattr(layer, "stride") else None,
            "macs": m, "hi_rows": int(len(layer.hi_rows)) if isinstance(layer, ConvLayer)
            else None, "ms": 1e3 * t, "gmac_per_s": (m / t / 1e9) if m and t > 0 else None,
        })
    return {
        "benchmark": "golden_resnet18",
        "description": "integer reference inference (ilmpq.golden.reference.run) of ResNet-18 "
                       "224x224 with random quantized weights",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "blas_threads_env": {k: os.environ.get(k) for k in (
                        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}},
        "params": {"seed": seed, "act_bits": act_bits, "ratio": str(ratio), "images": images,
                   "input": [3, 224, 224]},
        "build_s": t_build,
        "total_macs": total_macs,
        "conv_fc_layers": len(model.conv_layers),
        "per_image_s": {"median": med, "min": min(per_image), "max": max(per_image),
                        "all": per_image},
        "gmac_per_s": total_macs / med / 1e9,
        "predictions": predictions,
        "layers": layers,
    }


def markdown(r: dict) -> str:
    p = r["params"]
    s = r["per_image_s"]
    lines = [
        "# Golden reference: ResNet-18 inference time",
        "",
        f"`ilmpq.golden.reference.run` on `resnet18_qmodel` (224x224, seed {p['seed']}, "
        f"A{p['act_bits']}, R = {p['ratio']}), {p['images']} random images after one warm-up; "
        f"{r['date']}, Python {r['machine']['python']}, NumPy {r['machine']['numpy']}, "
        f"{r['machine']['cpus']} CPUs (1-min load {r['machine']['load_avg_1min']:.1f}), "
        f"OPENBLAS_NUM_THREADS={r['machine']['blas_threads_env']['OPENBLAS_NUM_THREADS']}.",
        "",
        f"* **Time per image: {1e3 * s['median']:.0f} ms median** (min {1e3 * s['min']:.0f}, "
        f"max {1e3 * s['max']:.0f}); {r['total_macs']:,} MACs in {r['conv_fc_layers']} conv/FC "
        f"layers = {r['gmac_per_s']:.1f} GMAC/s.",
        f"* Model construction (random weights + requantization calibration on one image): "
        f"{r['build_s']:.2f} s.",
        "",
        "| layer | op | output | k/s | MACs | HI rows | ms | GMAC/s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for layer in r["layers"]:
        ks = "-" if layer["kernel"] is None else \
            f"{layer['kernel'][0]}x{layer['kernel'][1]}/{layer['stride'][0]}"
        lines.append(
            f"| {layer['layer']} | {layer['op']} | {'x'.join(map(str, layer['output_shape']))} "
            f"| {ks} | {'-' if layer['macs'] is None else format(layer['macs'], ',')} "
            f"| {'-' if layer['hi_rows'] is None else layer['hi_rows']} | {layer['ms']:.2f} "
            f"| {'-' if layer['gmac_per_s'] is None else format(layer['gmac_per_s'], '.1f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--act-bits", type=int, default=8, choices=(4, 5, 8))
    ap.add_argument("--ratio", type=Fraction, default=Fraction(1, 8))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    r = measure(args.images, args.seed, args.act_bits, args.ratio)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "golden_resnet18.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (args.out / "golden_resnet18.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
