"""Benchmark: the CNNs users bring — torchvision classifiers through quantize -> compile -> model.

For each network (random weights: this machine cannot download pretrained ones; the shapes and
operators are what matter here) it does what a user would:

1. **export** it from torchvision with ``torch.onnx.export`` (opset 17, 224x224, batch 1),
   cached under ``~/.cache/ilmpq/zoo/``;
2. **import** it (``load_onnx``: canonicalization, then the importer — which names *every*
   unsupported operator of the model at once) with the ImageNet input normalization;
3. **quantize** it for the ``z020`` configuration with seeded random calibration pixels;
4. **agreement** of the integer model with the float model run by ``onnxruntime`` on the same
   images (cosine of the logits after subtracting the batch mean, so that a constant offset
   shared by all images does not inflate it), when onnxruntime is installed;
5. **compile** it for ``z020`` and run the **cycle model**: frames/s at 100 MHz, PE utilization,
   which layers run on the host.

A network that stops at a step is reported with the step and the error, verbatim: that is the
list of what the networks issue still has to build. torch and torchvision are in the ``zoo``
extra only (``pip install -e '.[zoo]'``, in its own environment: torchvision 0.29.1 pairs with
torch 2.14.1, the ``qat`` extra pins torch 2.13.0); never needed by the tests or the main job.

Writes ``bench/results/model_zoo.json``, ``.md`` and ``.png`` (the plot needs matplotlib;
``--render-only`` redraws the markdown and the plot from the JSON).

``--rtl resnet50,mobilenet_v2`` also runs those networks' compiled programs through the z020 RTL
under Verilator (the build is cached in ``~/.cache/ilmpq/verilator``), memory at the Zynq HP
timing of ``bench/resnet18.py``: one image, the accelerator programs on the RTL and the host
layers in golden's integer op between them as the compiler placed them; after every step each
layer's stored tensor is read back and compared with golden (``np.testing.assert_array_equal``),
and every program's RTL cycles with the cycle model's. Progress per step goes to stdout.
Networks not run keep their earlier rows in the JSON (each row carries its date).

Usage: ``python bench/model_zoo.py [--nets resnet18,mobilenet_v2] [--calib N] [--isa]
[--rtl NETS] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ilmpq" / "zoo"
CLOCK_HZ = 100e6
#: torchvision constructor names, in the order of the networks issue.
NETS = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1",
        "shufflenet_v2_x1_0", "efficientnet_b0")
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def export(name: str) -> Path:
    """torchvision ``name`` (random weights, eval mode) as ONNX opset 17, cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.onnx"
    if path.exists():
        return path
    import torch
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.zeros(1, 3, 224, 224)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(net, x, str(tmp), opset_version=17, input_names=["x"],
                      output_names=["logits"], dynamo=False)
    tmp.rename(path)
    return path


def cosine_centred(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float((a * b).sum() / den) if den else float("nan")


def rtl_run(qm, comp, img: np.ndarray, cfg) -> dict:
    """``comp`` on the Verilator RTL of ``cfg`` (accelerator programs on the RTL, host layers
    with golden's op as the driver runs them), every layer's tensor against golden right after
    the step that wrote it; per program RTL against cycle-model cycles at the same memory
    timing."""
    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import AccelStep
    from ilmpq.firmware.driver import run_sync
    from ilmpq.golden import reference
    sys.path.insert(0, str(ROOT / "bench"))
    from resnet18 import MEMORY, _Rtl

    t0 = time.perf_counter()
    want = reference.run(qm, img, spec=cfg.numeric)
    rtl = _Rtl(cfg, comp.size, MEMORY)
    log(f"  RTL ready ({'cached' if rtl.setup['build_cached'] else 'fresh'} Verilator build, "
        f"{rtl.setup['total_s']:.0f} s)")
    est = cm.estimate(comp, memory=MEMORY)
    layers = {la.name: la for la in qm.layers}
    drv = rtl.drv
    checked: list[str] = []
    bad: list[str] = []
    progs: list[dict] = []
    n_steps = len(comp.steps)

    async def check(names):
        for n in names:
            if layers[n].output in comp.unstored:
                continue                  # fused into its table's STORE: never stored
            t = comp.tensors[layers[n].output]
            got = t.from_memory(await drv.t.mem_read(t.addr, t.nbytes))
            try:
                np.testing.assert_array_equal(got, want[layers[n].output])
            except AssertionError:
                bad.append(n)
            checked.append(n)

    async def go():
        await drv.load(comp)
        # the input and its activation check entries, as the driver writes them
        await drv.write_input(comp, np.asarray(img, np.int64))
        pi = 0
        for k, step in enumerate(comp.steps, 1):
            t = time.perf_counter()
            if isinstance(step, AccelStep):
                st = await drv.run_program(step.prog_addr, step.n_instr, comp.window,
                                           comp.arena, step.prog_tag)
                mc = est.programs[pi].counters["cycles"]
                pi += 1
                progs.append({"layers": f"{step.layers[0]} .. {step.layers[-1]}",
                              "n_layers": len(step.layers), "rtl_cycles": int(st["cycles"]),
                              "model_cycles": int(mc), "sim_s": round(time.perf_counter() - t,
                                                                      1)})
                names = step.layers
                what = (f"RTL {len(names)} layer(s) {names[0]} .. {names[-1]}: "
                        f"{st['cycles']:,} cycles (model {mc:,}, "
                        f"{(mc - st['cycles']) / st['cycles']:+.2%})")
            else:
                layer = layers[step.layer]
                # its output and, when an accelerated layer reads it, its check entries
                await drv.host_step(comp, layer)
                names = [step.layer]
                what = f"host {step.layer}"
            nbad = len(bad)
            await check(names)
            log(f"  [{k}/{n_steps}] {what}, {'bit-exact' if len(bad) == nbad else 'DIFFERS'} "
                f"({time.perf_counter() - t:.1f} s)")

        # layers no step runs (free: e.g. a flatten that is a view of its input's storage)
        rest = [n for n in layers if n not in set(checked)]
        await check(rest)
        if rest:
            log(f"  {len(rest)} layer(s) without a step of their own "
                f"({', '.join(rest[:3])}{' ..' if len(rest) > 3 else ''}): "
                f"{'bit-exact' if not set(rest) & set(bad) else 'DIFFERS'}")

    run_sync(go())
    rtl_cycles = sum(p["rtl_cycles"] for p in progs)
    return {"rtl_layers_checked": len(checked), "rtl_layers": len(qm.layers),
            "rtl_bit_exact": not bad and len(checked) == len(
                [la for la in qm.layers if la.output not in comp.unstored]),
            "rtl_mismatch": bad[:5],
            "rtl_cycles": rtl_cycles, "rtl_model_cycles": int(est.cycles),
            "rtl_model_error": (est.cycles - rtl_cycles) / rtl_cycles if rtl_cycles else None,
            "rtl_programs": progs, "rtl_memory": {"read_latency": MEMORY.read_latency,
                                                  "write_latency": MEMORY.write_latency},
            "rtl_build_cached": rtl.setup["build_cached"],
            "rtl_seconds": round(time.perf_counter() - t0, 1)}


def run_net(name: str, n_calib: int, seed: int, isa: bool = False, rtl: bool = False) -> dict:
    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.golden import reference
    from ilmpq.golden.onnx_import import load_onnx
    from ilmpq.golden.quantize import quantize
    from ilmpq.hdl.config import get_config

    cfg = get_config("z020")
    row: dict = {"net": name, "stage": "export"}
    t0 = time.perf_counter()
    try:
        path = export(name)
        row["onnx_mb"] = round(path.stat().st_size / 2**20, 1)
        row["stage"] = "import"
        fm = load_onnx(path, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD)
        row["canonicalize"] = fm.meta.get("canonicalize", [])
        row["output_head"] = fm.meta.get("output_head")
        row["stage"] = "quantize"
        rng = np.random.default_rng(seed)
        calib = rng.integers(0, 256, (n_calib, 3, 224, 224)).astype(np.float64)
        qm = quantize(fm, calib, ratio=cfg.ratio, spec=cfg.numeric, report=False)
        row["stage"] = "agreement"
        try:
            import onnxruntime as ort
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            xs = fm.normalize(calib).astype(np.float32)
            ref = np.concatenate([sess.run(None, {"x": xs[i:i + 1]})[0]
                                  for i in range(len(xs))])
            outs = []
            for img in calib.astype(np.uint8):
                q = reference.run(qm, img)[qm.output].reshape(-1)
                outs.append(q * qm.tensors[qm.output].scale)
            row["cosine_vs_float"] = cosine_centred(np.array(outs), ref.reshape(len(xs), -1))
        except ImportError:
            row["cosine_vs_float"] = None
        row["stage"] = "compile"
        comp = compile_model(qm, cfg)
        row["stage"] = "cycle model"
        est = cm.estimate(comp)
        host = [l.name for l in est.layers if l.where not in ("accel", "free")]
        # host share: golden's integer op of every host layer, measured on this machine (one
        # image, the median of 3 runs per layer)
        runs = []
        for _ in range(3):
            tm: dict = {}
            reference.run(qm, calib[0].astype(np.uint8), timings=tm)
            runs.append(tm)
        host_s = sum(float(np.median([r[n] for r in runs])) for n in host)
        # a shared machine inflates the measured host time: say how loaded it was
        row["load_avg_1min"] = round(os.getloadavg()[0], 2)
        reasons: dict = {}
        for r in comp.layers:
            if r.where == "cpu":
                # the reason without its numbers in parentheses, up to the first colon
                key = re.sub(r"\s*\([^)]*\)", "", r.cpu_reason).split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        if isa:
            # the compiled program (accelerator segments + host steps) on the ISA simulator,
            # every tensor against golden's reference execution
            from ilmpq.firmware.sim.isasim import run_compiled
            t1 = time.perf_counter()
            img = calib[0].astype(np.int64)
            want = reference.run(qm, img, spec=cfg.numeric)
            got = run_compiled(comp, img)
            bad = [la.name for la in qm.layers if la.output not in comp.unstored
                   and not np.array_equal(got[la.output], want[la.output])]
            row["isa_bit_exact"] = not bad
            row["isa_mismatch"] = bad[:5]
            row["isa_seconds"] = round(time.perf_counter() - t1, 1)
        accel_s = est.cycles / CLOCK_HZ
        # depthwise convs on the PE array: their share and utilization (at most tn of the
        # lanes * tn MACs a beat are useful: one channel per lane, docs/architecture.md)
        dw = [la for la in est.layers if la.where == "accel" and la.kind.split("+")[0] == "dw"]
        dw_cycles = sum(la.cycles for la in dw)
        row.update({"dw_layers": len(dw), "dw_cycles": int(dw_cycles),
                    "dw_utilization": (sum(la.macs for la in dw)
                                       / (dw_cycles * cfg.macs_per_cycle) if dw_cycles else None),
                    "dw_utilization_bound": cfg.tn / cfg.macs_per_cycle})
        row.update({"stage": "done", "fps_accel": CLOCK_HZ / est.cycles,
                    "utilization": est.utilization, "cycles": int(est.cycles),
                    "host_layers": host, "layers": len(est.layers),
                    "accel_layers": sum(1 for l in est.layers if l.where == "accel"),
                    "host_reasons": reasons,
                    # the reasons in one line for docs/networks.md (generated, never typed)
                    "host_summary": "; ".join(f"{k} ({v})" for k, v in sorted(
                        reasons.items(), key=lambda kv: -kv[1])) or
                    "nothing: every layer runs on the accelerator",
                    "host_ms": 1e3 * host_s,
                    "fps_total": 1.0 / (accel_s + host_s),
                    "host_macs": sum(r.macs for r in comp.layers if r.where == "cpu"),
                    "gmacs": sum(l.macs for l in est.layers) / 1e9,
                    "gmacs_all": sum(r.macs for r in comp.layers) / 1e9})
        if rtl:
            try:
                row.update(rtl_run(qm, comp, calib[0].astype(np.int64), cfg))
            except Exception as e:  # noqa: BLE001 - reported with the row
                row["rtl_error"] = f"{type(e).__name__}: {e}".splitlines()[0][:600]
                if os.environ.get("ILMPQ_DEBUG"):
                    traceback.print_exc()
    except Exception as e:  # noqa: BLE001 - the report names where each network stops
        row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:600]
        if os.environ.get("ILMPQ_DEBUG"):
            traceback.print_exc()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def markdown(res: dict) -> str:
    lines = ["# Model zoo: torchvision CNNs on z020", "",
             f"Generated by `bench/model_zoo.py` on {res['date']} ({res['machine']}). Random "
             f"weights, {res['calib']} random calibration images, `z020` (R = 1/8, A8). A network "
             f"that stops is listed with the step and the error.", "",
             "Layers the accelerator cannot run yet execute on the host in golden's integer "
             "arithmetic (the compile report names each and why). *fps (accel)* is the cycle "
             "model of the accelerator programs alone at 100 MHz; *host ms* is the measured time "
             "of golden's NumPy ops for the host layers on this machine (one image, median of 3, "
             "not a Zynq ARM core); *fps (total)* = 1 / (accel time + host ms), no overlap.", "",
             "| network | reached | accel / host layers | host MACs | fps (accel) | PE util | "
             "host ms | fps (total) | cosine vs float | host because / stops at |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["nets"]:
        done = r["stage"] == "done"
        cos = r.get("cosine_vs_float")
        cos_s = "–" if cos is None else f"{cos:.3f}"
        if done:
            why = "; ".join(f"{k} ×{v}" for k, v in r.get("host_reasons", {}).items())
            hm = r.get("host_macs", 0) / max(1.0, 1e9 * r.get("gmacs_all", 0))
            lines.append(
                f"| {r['net']} | {r['stage']} | {r.get('accel_layers', '–')} / "
                f"{len(r['host_layers'])} | {100 * hm:.1f} % | {r['fps_accel']:.1f} | "
                f"{100 * r['utilization']:.1f} % | {r.get('host_ms', 0):.0f} | "
                f"{r.get('fps_total', r['fps_accel']):.2f} | {cos_s} | {why} |")
        else:
            err = r.get("error", "").replace("|", "\\|")
            lines.append(f"| {r['net']} | {r['stage']} | – | – | – | – | – | – | {cos_s} | "
                         f"{err} |")
    ok = sum(r["stage"] == "done" for r in res["nets"])
    isa = [r for r in res["nets"] if "isa_bit_exact" in r]
    lines += ["", f"{ok} of {len(res['nets'])} networks compile."]
    if isa:
        exact = [r["net"] for r in isa if r["isa_bit_exact"]]
        lines += ["", f"ISA simulator (accelerator programs and host steps, one image, every "
                      f"tensor against golden): bit-exact for {len(exact)} of {len(isa)} "
                      f"networks run ({', '.join(exact)})."
                  + "".join(f" {r['net']} differs at {', '.join(r['isa_mismatch'])}."
                            for r in isa if not r["isa_bit_exact"])]
    rtl = [r for r in res["nets"] if "rtl_bit_exact" in r or "rtl_error" in r]
    if rtl:
        mem = next((r["rtl_memory"] for r in rtl if "rtl_memory" in r), None)
        lines += ["", "## Bit-exact RTL runs (Verilator, z020)", "",
                  "One image (the first calibration image) through the z020 RTL under Verilator"
                  + (f", memory read latency {mem['read_latency']} / write latency "
                     f"{mem['write_latency']} cycles" if mem else "")
                  + ": the accelerator programs on the RTL, the host layers in golden's integer "
                  "op between them as the compiler placed them; after every step each layer's "
                  "stored tensor is compared with golden's (`np.testing.assert_array_equal`). "
                  "Cycles are the RTL's accelerator programs against the cycle model at the same "
                  "memory timing.", "",
                  "| network | layers checked | bit-exact | programs | RTL cycles | cycle model | "
                  "model error | wall s (with setup) |", "|---|---|---|---|---|---|---|---|"]
        for r in rtl:
            if "rtl_error" in r:
                err = r["rtl_error"].replace("|", "\\|")
                lines.append(f"| {r['net']} | – | – | – | – | – | – | {err} |")
                continue
            why = ", ".join(r["rtl_mismatch"]) or "not every layer checked"
            lines.append(
                f"| {r['net']} | {r['rtl_layers_checked']} of {r['rtl_layers']} | "
                f"{'yes' if r['rtl_bit_exact'] else 'no: ' + why} | "
                f"{len(r['rtl_programs'])} | {r['rtl_cycles']:,} | {r['rtl_model_cycles']:,} | "
                f"{100 * r['rtl_model_error']:+.2f} % | {r['rtl_seconds']:.0f} |")
    lines += ["",
              "![accelerator and host time per network](model_zoo.png)"]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> bool:
    """Stacked bars: accelerator (cycle model) and host (measured) ms per frame; False (and no
    file) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    done = [r for r in res["nets"] if r["stage"] == "done"]
    names = [r["net"] for r in done]
    acc = [1e3 * r["cycles"] / CLOCK_HZ for r in done]
    host = [r.get("host_ms", 0.0) for r in done]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.bar(names, acc, label="accelerator (cycle model, 100 MHz)")
    ax.bar(names, host, bottom=acc, label="host: golden integer ops (measured, this machine)")
    ax.set_ylabel("ms per frame")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5 * min(acc + [h for h in host if h > 0]))
    ax.set_title("torchvision CNNs on z020: where the time goes")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--calib", type=int, default=4, help="calibration images (random pixels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--isa", action="store_true",
                    help="also run each compiled network on the ISA simulator (accelerator "
                         "segments and host steps) and compare every tensor with golden")
    ap.add_argument("--rtl", default="", metavar="NETS",
                    help="comma-separated networks (of --nets) to also run through the z020 RTL "
                         "under Verilator, every layer against golden")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the markdown and the plot from the existing JSON")
    args = ap.parse_args(argv)
    if args.render_only:
        res = json.loads((args.out / "model_zoo.json").read_text())
        (args.out / "model_zoo.md").write_text(markdown(res))
        plot(res, args.out / "model_zoo.png")
        return 0
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    uncached = [n for n in nets if not (CACHE / f"{n}.onnx").exists()]
    if uncached:
        # only the export needs torch; cached exports run without it
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError:
            print(f"error: exporting {', '.join(uncached)} (not cached in {CACHE}) needs torch "
                  f"and torchvision: pip install -e '.[zoo]' (torch 2.14.1, torchvision 0.29.1)",
                  file=sys.stderr)
            return 2
    rtl = {n.strip() for n in args.rtl.split(",") if n.strip()}
    if rtl - set(nets):
        print(f"error: --rtl names {', '.join(sorted(rtl - set(nets)))}, which --nets does not "
              f"run; allowed: networks of --nets ({', '.join(nets)})", file=sys.stderr)
        return 2
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    rows = []
    for i, name in enumerate(nets, 1):
        log(f"{i}/{len(nets)} {name} (exports cached in {CACHE})")
        r = run_net(name, args.calib, args.seed, args.isa, name in rtl)
        r["date"] = date
        log(f"  -> {r['stage']}" + (f": {r['error'][:160]}" if "error" in r else
                                    f", {r['fps_accel']:.1f} fps, {100 * r['utilization']:.1f} %"))
        rows.append(r)
    # the networks this run did not repeat keep their earlier rows (with the earlier date), in
    # the order of NETS
    old_path = args.out / "model_zoo.json"
    if old_path.exists():
        old = json.loads(old_path.read_text())
        if (old.get("calib"), old.get("seed")) == (args.calib, args.seed):
            ran = {r["net"] for r in rows}
            rows += [dict(r, date=r.get("date", old["date"])) for r in old["nets"]
                     if r["net"] not in ran]
            order = {n: i for i, n in enumerate(NETS)}
            rows.sort(key=lambda r: order.get(r["net"], len(order)))
    res = {"date": date,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores", "calib": args.calib,
           "seed": args.seed, "nets": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_zoo.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "model_zoo.md").write_text(markdown(res))
    plotted = plot(res, args.out / "model_zoo.png")
    log(f"wrote {args.out / 'model_zoo.json'} and .md" + (" and .png" if plotted else
                                                          " (no matplotlib: no plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
