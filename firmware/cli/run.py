"""``ilmpq run``: the main job on the embedded default model.

Quantize the embedded digits CNN for a hardware configuration (default preset ``tiny``), print
the test accuracy of the float model, the all-8-bit and all-4-bit baselines and the ILMPQ model
(the configuration's share ``R``) with the per-layer quantization report; then compile the ILMPQ
model, run the test images on the accelerator RTL (Verilator; ``--sim amaranth`` for the Python
simulator), check every layer of every image bit for bit against golden, and report the RTL's
test accuracy, cycles, PE utilization and latency at 100 MHz. ``--batch B`` compiles the ILMPQ
model for B images a run (docs/architecture.md, *Batching*): the per-image figures are a run's
divided by B, the run's cycles and latency named (without it: batch 1, the output unchanged).

The job is a list of stages (:data:`STAGES`), each a function of one :class:`RunState` that it
reads and extends; later stages (compile, simulate on the RTL, compare bit-exact) are added to the
list without touching the earlier ones.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction

from ...golden.errors import IlmpqValueError
from ...golden.formats import SUPPORTED_ACT_BITS
from ...golden.quantize import RULES
from ...hdl.config import PRESETS, HWConfig, get_config
from ..outputs import add_force_argument, check_output_file, write_text
from ._shared import add_batch_argument, record_config

HELP = ("quantize the embedded default model for a hardware configuration and report accuracy "
        "(float, all-8-bit, all-4-bit, ILMPQ)")

__all__ = ["HELP", "register", "main", "RunState", "STAGES", "stage_load", "stage_quantize",
           "stage_evaluate", "stage_report"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="tiny", choices=sorted(PRESETS),
                        help="hardware configuration (default: tiny)")
    parser.add_argument("--act-bits", type=int, default=None, choices=SUPPORTED_ACT_BITS,
                        help="activation width (default: the configuration's)")
    parser.add_argument("--rule", choices=RULES, default="error",
                        help="row selection rule (default: error)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the accuracies and the report as JSON")
    add_force_argument(parser)
    parser.add_argument("--sim", choices=("verilator", "amaranth", "none"), default="verilator",
                        help="RTL simulator for the test images (default: verilator; none: "
                             "stop after quantization)")
    parser.add_argument("--images", type=int, default=None, metavar="N",
                        help="test images to run on the RTL (default: all with verilator, "
                             "2 with amaranth)")
    add_batch_argument(parser)


@dataclass
class RunState:
    """Everything the stages share. Stages add to it; none removes anything."""

    config: HWConfig
    rule: str = "error"
    sim: str = "verilator"
    n_rtl: int | None = None
    batch: int = 1  #: images a run (``--batch``; ``compile_model(batch=...)``)
    float_model: object = None
    calib: tuple | None = None  #: (images, labels)
    test: tuple | None = None  #: (images, labels)
    #: quantized models by variant: "all-8-bit" (R = 1), "all-4-bit" (R = 0), "ILMPQ"
    models: dict = field(default_factory=dict)
    #: test accuracy by variant ("float" and the keys of ``models``)
    accuracy: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)  #: seconds per stage
    compiled: object = None
    rtl: dict = field(default_factory=dict)  #: RTL results: accuracy, cycles, mismatches
    out: list = field(default_factory=list)  #: printed lines

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.out.append(line)

    @property
    def ilmpq(self):
        return self.models["ILMPQ"]


def stage_load(st: RunState) -> None:
    """Load the embedded model and the calibration and test splits."""
    from ...golden.data import load_default_model, load_digits

    st.float_model = load_default_model()
    st.calib = load_digits("calib")
    st.test = load_digits("test")
    fm = st.float_model
    st.say(f"model: embedded digits CNN, {fm.macs():,} MACs, {fm.n_params():,} parameters; "
           f"{len(st.calib[1])} calibration / {len(st.test[1])} test images")
    st.say(f"hardware: {st.config.describe()}")
    st.say(f"input normalization: (pixels - {fm.input_mean[0]:g}) / {fm.input_std[0]:g} (the "
           f"embedded model's ilmpq.input_mean/input_std metadata)")


def stage_quantize(st: RunState) -> None:
    """Quantize for the configuration's ratio and for the two uniform baselines."""
    from ...golden.quantize import quantize

    spec = st.config.numeric
    for name, ratio in (("all-8-bit", Fraction(1)), ("all-4-bit", Fraction(0)),
                        ("ILMPQ", st.config.ratio)):
        st.models[name] = quantize(st.float_model, st.calib[0], ratio=ratio, spec=spec,
                                   rule=st.rule, report=(name == "ILMPQ"))
    record_config(st.ilmpq.meta, st.config, st.config.ratio, st.config.act_bits)


def stage_evaluate(st: RunState) -> None:
    """Test accuracy of the float model and of every quantized variant."""
    from ...golden.quantize import accuracy_float, accuracy_int

    x, y = st.test
    st.accuracy["float"] = accuracy_float(st.float_model, x, y)
    for name, qm in st.models.items():
        st.accuracy[name] = accuracy_int(qm, x, y)


def stage_report(st: RunState) -> None:
    """Print the accuracy table and the ILMPQ per-layer report."""
    from ...golden.quantize import quant_report

    x, y = st.test
    n = len(y)
    ratio = {"float": "-", "all-8-bit": "1", "all-4-bit": "0", "ILMPQ": str(st.config.ratio)}
    wbits = {"float": "fp32", "all-8-bit": "8", "all-4-bit": "4", "ILMPQ": "4/8"}
    act = "fp32"
    st.say()
    st.say(f"digits test accuracy ({n} images), A{st.config.act_bits}, rule {st.rule}:")
    st.say(f"{'variant':<10}  {'R':>5}  {'weights':>7}  {'acts':>5}  {'accuracy':>8}  "
           f"{'correct':>7}  {'vs float':>8}")
    for name, acc in st.accuracy.items():
        a = act if name == "float" else f"{st.config.act_bits}"
        d = acc - st.accuracy["float"]
        st.say(f"{name:<10}  {ratio.get(name, '?'):>5}  {wbits.get(name, '?'):>7}  {a:>5}  "
               f"{100 * acc:>7.2f}%  {int(round(acc * n)):>3}/{n:<3}  "
               f"{'' if name == 'float' else f'{100 * d:+.2f}':>8}")
    st.say()
    for line in quant_report(st.ilmpq).format().splitlines():
        st.say(line)


def stage_compile(st: RunState) -> None:
    """Compile the ILMPQ model for the configuration and print the compile report."""
    if st.sim == "none":
        return
    from ..compiler import compile_model

    st.compiled = compile_model(st.ilmpq, st.config) if st.batch == 1 else \
        compile_model(st.ilmpq, st.config, batch=st.batch)
    st.say()
    for line in st.compiled.report().splitlines():
        st.say(line)


def stage_simulate(st: RunState) -> None:
    """Run test images on the RTL; check every layer bit for bit against golden."""
    if st.sim == "none":
        return
    import numpy as np

    from ...golden import reference
    from ..progress import Progress
    from ._shared import run_figures, simulate_with_progress
    from .simulate import compare_layers

    x, y = st.test
    n = st.n_rtl if st.n_rtl is not None else (len(y) if st.sim == "verilator" else 2)
    n = max(1, min(n, len(y)))
    st.say()
    st.say(f"running {n} test {'image' if n == 1 else 'images'} on the RTL ({st.sim}) ...")
    t0 = time.perf_counter()
    results = simulate_with_progress(st.compiled, x[:n].astype(np.int64), sim=st.sim,
                                     progress=Progress())
    model = st.ilmpq
    preds, golden_preds, mismatches = [], [], []
    for i, res in enumerate(results):
        ref = reference.run(model, x[i], spec=st.config.numeric)
        why = compare_layers(model, ref, res.tensors)
        if why is not None:
            mismatches.append((i, why))
        preds.append(int(np.argmax(res.tensors[model.output].reshape(-1))))
        golden_preds.append(int(np.argmax(ref[model.output].reshape(-1))))
    macs = sum(r.macs for r in st.compiled.layers if r.where == "accel")
    # B images a run: every image of a run has the run's counters; the per-image figures are
    # a run's divided by B (the run's MACs are the B images')
    runs = [r.stats["cycles"] for r in results[::st.batch]]
    fig = run_figures(runs, st.batch, macs, st.config, 100e6)
    st.rtl = {
        "simulator": st.sim, "images": n, "mismatches": len(mismatches),
        "first_mismatch": mismatches[0][1] if mismatches else None,
        "accuracy": float(np.mean(np.array(preds) == y[:n])),
        "golden_accuracy": float(np.mean(np.array(golden_preds) == y[:n])),
        "predictions_equal": preds == golden_preds,
        "cycles_per_image": int(fig["cycles_per_image"]),
        "pe_utilization": fig["pe_utilization"],
        "latency_ms_100mhz": fig["latency_ms"],
        "seconds": time.perf_counter() - t0,
    }
    if st.batch > 1:
        st.rtl.update(batch=st.batch, runs=fig["runs"], cycles_per_run=int(fig["cycles_per_run"]))


def stage_rtl_report(st: RunState) -> None:
    """Print the RTL check, accuracy and performance."""
    if st.sim == "none":
        return
    r = st.rtl
    st.say()
    verdict = ("every layer of every image bit-exact with golden" if not r["mismatches"] else
               f"{r['mismatches']} of {r['images']} MISMATCH; first: {r['first_mismatch']}")
    st.say(f"RTL ({r['simulator']}, {r['images']} {'image' if r['images'] == 1 else 'images'})"
           f": {verdict}")
    st.say(f"RTL test accuracy {100 * r['accuracy']:.2f}% (golden on the same images "
           f"{100 * r['golden_accuracy']:.2f}%, predictions "
           f"{'identical' if r['predictions_equal'] else 'DIFFERENT'})")
    st.say(f"{r['cycles_per_image']} cycles per image, PE utilization "
           f"{100 * r['pe_utilization']:.1f}% of {st.config.macs_per_cycle} MAC/cycle, "
           f"latency {r['latency_ms_100mhz']:.3f} ms at 100 MHz "
           f"({1e3 / r['latency_ms_100mhz']:.0f} frames/s), simulated in {r['seconds']:.1f} s"
           if st.batch == 1 else
           f"{r['cycles_per_image']} cycles per image ({st.batch} images a run of "
           f"{r['cycles_per_run']} cycles, {r['runs']} {'run' if r['runs'] == 1 else 'runs'}), "
           f"PE utilization {100 * r['pe_utilization']:.1f}% of {st.config.macs_per_cycle} "
           f"MAC/cycle, latency {r['latency_ms_100mhz']:.3f} ms at 100 MHz "
           f"({st.batch * 1e3 / r['latency_ms_100mhz']:.0f} frames/s), simulated in "
           f"{r['seconds']:.1f} s")


#: The stages of ``ilmpq run``, in order: ``(name, function)``.
STAGES: list = [
    ("load", stage_load),
    ("quantize", stage_quantize),
    ("evaluate", stage_evaluate),
    ("report", stage_report),
    ("compile", stage_compile),
    ("simulate", stage_simulate),
    ("rtl_report", stage_rtl_report),
]


def main(args) -> int:
    from ...golden.quantize import quant_report

    if args.images is not None and args.images < 1:
        raise IlmpqValueError(f"--images must be at least 1, not {args.images}")
    if args.json:
        check_output_file(args.json, force=args.force)
    cfg = get_config(args.config)
    if args.act_bits is not None:
        cfg = cfg.replace(act_bits=args.act_bits)
    st = RunState(config=cfg, rule=args.rule, sim=args.sim, n_rtl=args.images,
                  batch=args.batch)
    for name, fn in STAGES:
        t0 = time.perf_counter()
        fn(st)
        st.times[name] = time.perf_counter() - t0
    if args.json:
        data = {"config": cfg.name, "act_bits": cfg.act_bits, "ratio": str(cfg.ratio),
                "rule": st.rule, "accuracy": st.accuracy, "n_test": int(len(st.test[1])),
                "report": quant_report(st.ilmpq).to_dict(),
                "rtl": st.rtl,
                "stage_seconds": {k: round(v, 3) for k, v in st.times.items()}}
        write_text(args.json, json.dumps(data, indent=2), force=args.force)
        print(f"wrote {args.json}")
    return 1 if st.rtl.get("mismatches") else 0

