"""Quantization-aware training of an ILMPQ model with Brevitas, exported as QONNX and imported by
ilmpq bit for bit (``docs/qat.md``).

Development tool, not part of the installed package; it needs the ``qat`` extra
(``pip install -e '.[qat]'``: torch, brevitas, onnxoptimizer). The tests never import it.

What it does, for the embedded digits CNN (``golden/data/default_model.onnx``) or any float ONNX
CNN that ``ilmpq quantize`` reads:

1. **Start from the float model** as ilmpq reads it (BatchNormalization and the input
   normalization folded: the network takes raw pixels 0..255).
2. **Row split by ilmpq's own rule**: ``ilmpq.golden.quantize.quantize`` (post-training, the
   FILM-QNN output-error rule, ``R`` of the target configuration) picks the ``ceil(R*M)`` 8-bit
   rows of every layer; that PTQ model is also the baseline the QAT result is compared with.
3. **Brevitas model** with the same graph: ``QuantConv2d`` / ``QuantLinear`` whose weight
   quantizer has a *per-row bit width* (8 for the chosen rows, 4 for the others; narrow range,
   per-row float scale = max|w| / (2^(b-1)-1)), unsigned ``act_bits`` quantizers after every
   ReLU (learned per-tensor scale), the residual add before the ReLU as ilmpq fuses it, a
   quantizer sharing the previous scale after the global average pool, a signed quantizer on the
   logits, and a fixed scale-1 8-bit quantizer on the pixel input.
4. **Train** with the quantizers in the loop (straight-through estimator), from the float
   weights; AdamW, one-pixel random shifts.
5. **Export QONNX** (``brevitas.export.export_qonnx``) and **import** it with
   ``ilmpq.golden.qonnx_import.import_quantized`` (what ``ilmpq import`` runs), measuring the
   deviation from the QONNX model layer by layer on the calibration images.
6. Print float / PTQ / QAT test accuracy and write ``OUT.onnx`` (QONNX), ``OUT.npz`` (ilmpq
   model) and ``OUT.json`` (the numbers).

Then ``ilmpq simulate OUT.npz --config NAME --images ...`` runs the QAT model on the RTL, or
``python tools/qat_ilmpq.py simulate OUT.npz --config NAME -o SIM.json`` (any ``act_bits``), and
``python tools/qat_ilmpq.py summarize RUN.json ... --simulate SIM.json ... -o PREFIX`` writes the
results table.

Brevitas' QONNX exporter (0.13) checks ``bit_width == 1`` on the weight quantizer, which fails
for a per-row bit-width tensor; :func:`_patch_brevitas_export` makes that check element-wise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _patch_brevitas_export():
    """Let Brevitas export a weight quantizer whose bit width is a per-row tensor."""
    import torch
    from brevitas.export.onnx.qonnx import handler as h

    def prepare_for_export(self, module):
        if module.is_quant_enabled:
            first = module.tracked_module_list[0].quant_weight()
            bw = first.bit_width
            binary = bool(torch.all(torch.as_tensor(bw) == 1))
            self.quant_weight_values = {
                tm.weight.data_ptr(): tm.quant_weight().value for tm in module.tracked_module_list}
            self.symbolic_kwargs = {
                "scale": first.scale, "zero_point": first.zero_point, "bit_width": bw,
                "narrow_range": module.is_narrow_range, "signed": first.signed,
                "rounding_mode": "ROUND"}
            self.quant_op = h.BrevitasBinaryQuantOp if binary else h.BrevitasQuantOp

    h.BrevitasWeightQuantProxyHandler.prepare_for_export = prepare_for_export

    # the exporter evaluates the Quant op with the rounding mode it writes: teach it HALF_UP
    from brevitas.export.onnx.qonnx import function as f

    solve = f.solve_float_to_int_impl_from_enum

    class _HalfUp(torch.nn.Module):
        def forward(self, x):
            return torch.floor(x + 0.5)

    def solve_half_up(mode):
        if str(mode).upper() == "HALF_UP":
            return _HalfUp
        return solve(mode)

    f.solve_float_to_int_impl_from_enum = solve_half_up


def build(fm, row_bits: dict, act_bits: int, pow2: bool = False):
    """The Brevitas network for the float model ``fm`` (ilmpq's FloatModel, normalization
    folded) with per-row weight bit widths ``row_bits[layer]``. Activation quantizers round half
    up (``floor(x + 1/2)``, exported as QONNX ``HALF_UP``: ilmpq's requantization rounding);
    ``pow2`` restricts every scale to a power of two, so ``s_w*s_in/s_out`` is exactly ``M*2^-S``
    and the import is bit-exact by the contract."""
    import torch
    from torch import nn
    import brevitas.nn as qnn
    from brevitas.core.function_wrapper.ops_ste import CeilSte
    from brevitas.core.restrict_val import RestrictValueType
    from brevitas.core.scaling import ScalingImplType
    from brevitas.function.ops_ste import floor_ste
    from brevitas.inject import ExtendedInjector
    from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8ActPerTensorFloat,
                                Int8WeightPerChannelFloat, Uint8ActPerTensorFixedPoint,
                                Uint8ActPerTensorFloat)

    class HalfUpSte(nn.Module):
        """Round half up with a straight-through gradient (ilmpq's rounding)."""

        def __init__(self):
            super().__init__()

        def forward(self, x):
            return floor_ste(x + 0.5)

    class HalfUp(ExtendedInjector):
        float_to_int_impl = HalfUpSte
        float_to_int_impl_type = "HALF_UP"  # what the QONNX export writes as rounding_mode

    uact = Uint8ActPerTensorFixedPoint if pow2 else Uint8ActPerTensorFloat
    sact = Int8ActPerTensorFixedPoint if pow2 else Int8ActPerTensorFloat

    class UAct(HalfUp, uact):
        pass

    class SAct(HalfUp, sact):
        pass

    from ilmpq.golden.float_model import FConv, FFlatten, FGlobalAvgPool, FMaxPool

    class RowBits(nn.Module):
        """Bit width per output channel (a constant buffer of shape (M, 1, 1, 1))."""

        shape = (-1, 1, 1, 1)

        def __init__(self, row_bits):
            super().__init__()
            self.register_buffer("row_bits", torch.as_tensor(
                row_bits, dtype=torch.float32).reshape(self.shape))

        def forward(self):
            return self.row_bits

    class RowBitsFC(RowBits):
        shape = (-1, 1)

    class ILMPQWeight(Int8WeightPerChannelFloat):
        bit_width_impl = RowBits
        narrow_range = True

    if pow2:
        class ILMPQWeight(ILMPQWeight):  # noqa: F811 - power-of-two per-row scales
            restrict_scaling_type = RestrictValueType.POWER_OF_TWO
            restrict_value_float_to_int_impl = CeilSte

    class ILMPQWeightFC(ILMPQWeight):
        bit_width_impl = RowBitsFC

    class PixelQuant(Uint8ActPerTensorFloat):
        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 255.0  # 8-bit unsigned, scale 255 / 255 = 1: the codes are the pixels

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=PixelQuant, return_quant_tensor=False)
            self.mods = nn.ModuleDict()
            self.plan = []
            last_q = {}
            for n in fm.nodes:
                if isinstance(n, FConv):
                    m, c = n.out_channels, n.in_channels
                    bits = row_bits[n.name]
                    is_fc = fm.shapes[n.input][1:] == (1, 1) and n.kernel == (1, 1)
                    if is_fc:
                        layer = qnn.QuantLinear(c, m, bias=True, weight_quant=ILMPQWeightFC,
                                                weight_row_bits=bits)
                        layer.weight.data = torch.tensor(n.weight.reshape(m, c),
                                                         dtype=torch.float32)
                    else:
                        top, left, bottom, right = n.padding
                        assert top == bottom and left == right, "asymmetric padding"
                        layer = qnn.QuantConv2d(c, m, n.kernel, stride=n.stride,
                                                padding=(top, left), bias=True,
                                                weight_quant=ILMPQWeight, weight_row_bits=bits)
                        layer.weight.data = torch.tensor(n.weight, dtype=torch.float32)
                    layer.bias.data = torch.tensor(n.bias, dtype=torch.float32)
                    if n.relu:
                        q = qnn.QuantReLU(act_quant=UAct, bit_width=act_bits)
                    else:
                        q = qnn.QuantIdentity(act_quant=SAct, bit_width=act_bits)
                    self.mods[n.name] = layer
                    self.mods[n.name + "_q"] = q
                    last_q[n.output] = q
                    self.plan.append(("conv", n, is_fc))
                elif isinstance(n, FGlobalAvgPool):
                    # re-quantize the average at the input's scale: share its quantizer
                    src = last_q.get(n.input)
                    q = qnn.QuantIdentity(act_quant=src.act_quant) if src is not None else None
                    if q is not None:
                        self.mods[n.name + "_q"] = q
                        last_q[n.output] = src
                    self.plan.append(("gap", n, q is not None))
                else:
                    if n.input in last_q:
                        last_q[n.output] = last_q[n.input]
                    self.plan.append(("other", n, None))

        def forward(self, x):
            env = {fm.input: self.inp(x)}
            for kind, n, extra in self.plan:
                if kind == "conv":
                    y = self.mods[n.name](env[n.input])
                    if n.residual is not None:
                        y = y + env[n.residual]
                    env[n.output] = self.mods[n.name + "_q"](
                        torch.relu(y) if n.relu and not isinstance(
                            self.mods[n.name + "_q"], qnn.QuantReLU) else y)
                elif kind == "gap":
                    y = torch.nn.functional.avg_pool2d(env[n.input],
                                                       tuple(fm.shapes[n.input][1:]))
                    env[n.output] = self.mods[n.name + "_q"](y) if extra else y
                elif isinstance(n, FMaxPool):
                    t, l, b, r = n.padding
                    xin = torch.nn.functional.pad(env[n.input], (l, r, t, b),
                                                  value=-float("inf")) if any(n.padding) \
                        else env[n.input]
                    env[n.output] = torch.nn.functional.max_pool2d(xin, n.kernel, n.stride)
                elif isinstance(n, FFlatten):
                    env[n.output] = torch.flatten(env[n.input], 1)  # (N, K): ONNX Flatten
            return env[fm.output]

    return Net()


def snap_biases(net, fm):
    """Make every bias an integer in accumulator units, ``round(b / (s_w * s_in)) * s_w * s_in``
    (what Brevitas' Int32Bias does, without needing quantized tensors between the layers)."""
    import torch

    net.eval()
    scales = {fm.input: 1.0}
    with torch.no_grad():
        for kind, n, _ in net.plan:
            if kind == "conv":
                layer = net.mods[n.name]
                s_w = layer.quant_weight().scale.reshape(-1).double()
                s_in = torch.tensor(scales[n.input], dtype=torch.float64)
                unit = s_w * s_in
                b = layer.bias.double()
                layer.bias.copy_((torch.round(b / unit) * unit).float())
                scales[n.output] = float(net.mods[n.name + "_q"].act_quant.scale())
            else:
                scales[n.output] = scales[n.input]
    return scales


def export(net, shape, path):
    """QONNX export with a plain (N, K) output: GAP/flatten written as ONNX ops."""
    import torch
    from brevitas.export import export_qonnx

    _patch_brevitas_export()
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.zeros((1,) + tuple(shape)), export_path=str(path),
                     dynamo=False)


def augment(x, gen):
    import torch

    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    h, w = x.shape[2:]
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def summarize(argv) -> int:
    """``summarize RUN.json ... -o PREFIX``: the runs as ``PREFIX.json`` and a generated
    ``PREFIX.md`` table (no torch needed)."""
    ap = argparse.ArgumentParser(prog="qat_ilmpq.py summarize")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--simulate", nargs="*", default=[],
                    help="simulate result JSONs {model, config, images, mismatches, seconds}")
    a = ap.parse_args(argv)
    runs = [json.loads(Path(p).read_text()) for p in a.runs]
    sims = [json.loads(Path(p).read_text()) for p in a.simulate]
    out = Path(a.output)
    out.with_suffix(".json").write_text(json.dumps({"runs": runs, "simulate": sims}, indent=1)
                                        + "\n")

    def pct(v):
        return f"{100 * v:.2f}"

    lines = ["# QAT of the digits CNN with ILMPQ row splits (tools/qat_ilmpq.py)", "",
             f"Generated by `tools/qat_ilmpq.py summarize` from `{out.with_suffix('.json').name}`."
             f" Test split: {runs[0]['n_test']} images. Accuracies in %; QAT ILMPQ is the "
             f"imported integer model (golden reference); deviation: largest |ilmpq - model| "
             f"over all layers, LSB, on the 180 calibration images.", "",
             "| config | R | act bits | scales | epochs | float | PTQ ILMPQ | QAT ILMPQ | "
             "QAT in torch | contract | bound LSB (max) | measured local / net, calib (max) | "
             "net, test (max) | top-1 agreement, test |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lay = r["layers"]
        lines.append(
            f"| {r['config']} | {r['ratio']} | {r['act_bits']} | "
            f"{'power of two' if r.get('pow2') else 'float'} | {r['epochs']} | {pct(r['float'])} | "
            f"{pct(r['ptq_ilmpq'])} | {pct(r['qat_ilmpq'])} | {pct(r['qat_fake_quant'])} | "
            f"{'exact' if r['contract_exact'] else 'bounded'} | "
            f"{max(x['bound_lsb'] for x in lay)} | {max(x['measured_local'] for x in lay)} / "
            f"{max(x['measured_net'] for x in lay)} | {r['test_measured_net']} | "
            f"{pct(r['test_agreement'])} |")
    if sims:
        lines += ["", "RTL runs (`ilmpq simulate`, every layer compared with golden bit for bit):",
                  "", "| model | config | simulator | images | layer mismatches | seconds |",
                  "|---|---|---|---|---|---|"]
        for sm in sims:
            lines.append(f"| {sm['model']} | {sm['config']} | {sm['sim']} | {sm['images']} | "
                         f"{sm['mismatches']} | {sm['seconds']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}")
    return 0


def simulate_rtl(argv) -> int:
    """``simulate MODEL.npz --config NAME [--count N] -o SIM.json``: run the model on the RTL
    under Verilator with the configuration's ``act_bits`` set to the model's (``ilmpq simulate``
    takes the presets' A8 only), compare every layer with golden, write the result JSON that
    ``summarize --simulate`` reads (no torch needed)."""
    from ilmpq.firmware.cli.simulate import compare_layers
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.firmware.sim.simulate import simulate
    from ilmpq.golden import reference
    from ilmpq.golden.data import load_digits
    from ilmpq.golden.model import QModel
    from ilmpq.hdl.config import get_config

    ap = argparse.ArgumentParser(prog="qat_ilmpq.py simulate")
    ap.add_argument("model")
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--count", type=int, default=64, help="digits test images (default 64)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    qm = QModel.load(a.model)
    cfg = get_config(a.config).replace(act_bits=qm.act_bits)
    imgs = load_digits("test")[0][:a.count].astype(np.int64)
    t0 = time.time()
    results = simulate(compile_model(qm, cfg), imgs, sim="verilator")
    bad = sum(compare_layers(qm, reference.run(qm, im, spec=cfg.numeric), r.tensors) is not None
              for im, r in zip(imgs, results))
    res = {"model": Path(a.model).stem, "config": cfg.describe(), "sim": "verilator",
           "images": f"{len(imgs)} digits test images", "mismatches": int(bad),
           "seconds": round(time.time() - t0)}
    Path(a.output).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{len(imgs) - bad}/{len(imgs)} images bit-exact on every layer ({cfg.describe()})")
    return 1 if bad else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "summarize":
        return summarize(argv[1:])
    if argv and argv[0] == "simulate":
        return simulate_rtl(argv[1:])
    import torch

    from ilmpq.golden.data import load_default_model, load_digits
    from ilmpq.golden.onnx_import import load_onnx
    from ilmpq.golden.qonnx_import import compare_with_model, import_quantized, import_report
    from ilmpq.golden.quantize import (accuracy_float, accuracy_int, fold_input_normalization,
                                       quantize)
    from ilmpq.hdl.config import get_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="float ONNX (default: the digits CNN)")
    ap.add_argument("--config", default="z020", help="target configuration (R, widths)")
    ap.add_argument("--act-bits", type=int, default=None, help="activation width (4, 5, 8)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.05,
                    help="as the float training of the embedded model (default 0.05)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pow2", action="store_true",
                    help="power-of-two scales (weights per row and activations): the import is "
                         "then bit-exact by the contract; default: float scales")
    ap.add_argument("-o", "--output", default="qat_digits", help="OUT prefix (.onnx/.npz/.json)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    cfg = get_config(args.config)
    if args.act_bits is not None:
        cfg = cfg.replace(act_bits=args.act_bits)
    spec = cfg.numeric
    fm0 = load_default_model() if args.model == "default" else load_onnx(args.model)
    fm = fold_input_normalization(fm0)
    xtr, ytr = load_digits("train")
    xc, yc = load_digits("calib")
    xt, yt = load_digits("test")
    t0 = time.time()

    # PTQ with ilmpq's own quantizer: the baseline and the row split
    ptq = quantize(fm0, xc, ratio=cfg.ratio, spec=spec)
    row_bits = {l.name: np.where(l.precision == 1, 8, 4).tolist() for l in ptq.conv_layers}
    acc_float = accuracy_float(fm0, xt, yt)
    acc_ptq = accuracy_int(ptq, xt, yt)
    print(f"target {cfg.describe()}")
    print(f"float {100 * acc_float:.2f}%, PTQ ILMPQ {100 * acc_ptq:.2f}%", flush=True)

    net = build(fm, row_bits, cfg.act_bits, pow2=args.pow2)
    x = torch.tensor(xtr.astype(np.float32))
    y = torch.tensor(ytr.astype(np.int64))
    xtest = torch.tensor(xt.astype(np.float32))
    # calibrate the activation scales on a few batches before training
    net.train()
    with torch.no_grad():
        for i in range(0, len(x), 128):
            net(x[i:i + 128])
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    for ep in range(args.epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            xb = augment(x[idx], gen)
            opt.zero_grad()
            loss = lossf(net(xb), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            acc = float((net(xtest).argmax(1).numpy() == yt).mean())
        print(f"epoch {ep + 1}/{args.epochs}: loss {tot / len(x):.4f}, QAT (fake-quant) test "
              f"{100 * acc:.2f}%  [{time.time() - t0:.0f} s]", flush=True)

    snap_biases(net, fm)
    out = Path(args.output)
    onnx_path = out.with_suffix(".onnx")
    export(net, fm.input_shape, onnx_path)
    qm = import_quantized(onnx_path, ratio=cfg.ratio, spec=spec, act_bits=cfg.act_bits,
                          images=xc, max_images=180)
    rep = import_report(qm)
    print(rep.format())
    acc_qat = accuracy_int(qm, xt, yt)
    with torch.no_grad():
        acc_fake = float((net(xtest).argmax(1).numpy() == yt).mean())
    qm.save(out.with_suffix(".npz"))
    # the same comparison on the test split: ilmpq's integers against the QONNX model's own
    rep_test = compare_with_model(qm, onnx_path, xt)
    result = {
        "config": cfg.name, "ratio": str(cfg.ratio), "act_bits": cfg.act_bits,
        "epochs": args.epochs, "seed": args.seed, "pow2": bool(args.pow2), "lr": args.lr,
        "label_smoothing": args.label_smoothing, "n_test": int(len(yt)),
        "float": acc_float, "ptq_ilmpq": acc_ptq, "qat_fake_quant": acc_fake,
        "qat_ilmpq": acc_qat, "contract_exact": rep.exact,
        "layers": [{"name": lr.name, "bound_lsb": lr.bound_lsb,
                    "measured_local": lr.measured_local,
                    "measured_local_frac": lr.measured_local_frac,
                    "measured_net": lr.measured_net} for lr in rep.layers],
        "output_agreement": rep.output_agreement,
        "test_measured_net": max(lr.measured_net for lr in rep_test.layers),
        "test_agreement": rep_test.output_agreement, "seconds": round(time.time() - t0, 1),
        "versions": {"torch": torch.__version__, "brevitas": __import__("brevitas").__version__},
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"test accuracy ({len(yt)} images): float {100 * acc_float:.2f}%, PTQ ILMPQ "
          f"{100 * acc_ptq:.2f}%, QAT ILMPQ {100 * acc_qat:.2f}% (fake-quant in torch "
          f"{100 * acc_fake:.2f}%)")
    print(f"wrote {onnx_path}, {out.with_suffix('.npz')}, {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
