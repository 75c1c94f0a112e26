"""``ilmpq board``: run on a Zynq board under Linux (PetaLinux, PYNQ), with the bitstream loaded.

::

    ilmpq board info [--config NAME] [connection options]
    ilmpq board run MODEL.npz [--config NAME] [--images IMAGES.npy [--labels LABELS.npy] |
                    --count N] [--batch B] [--check] [--json OUT.json] [connection options]

``info`` reads the identification, status and counter registers and says whether the bitstream
is the configuration ``--config`` names (it also names the preset the CONFIG_ID belongs to).

``run`` compiles the model for the DMA buffer's physical address (the memory image holds bus
addresses, so it is compiled where it runs: ResNet-18 for z020 takes 0.9 s on an x86 host, more
on the board's Cortex-A9), checks the
bitstream, loads the image once and runs every image with the driver that drove the RTL in
simulation: one program per image when the whole model runs on the accelerator (the host writes
the image and reads the logits only; layers the compiler left on the host run in NumPy). Per image
it prints the predicted class, the accelerator's CYCLES counter, the time this is at the clock,
and the wall time of the whole inference. ``--check`` compares every layer with the golden
reference (an on-board self-test: exit status 1 on any mismatch); ``--labels`` adds accuracy.

``--batch B`` compiles the model for B images a run (docs/architecture.md, *Batching*; the
same values and usage error as ``ilmpq run``): the images run in groups of B, back to back
through the frame slots (``Driver.infer_stream``: the next group is written while one runs; a
last smaller group is filled up with copies of its last image, whose results are dropped). Per
image it prints the class, its cycles (its run's CYCLES / B) and its run: the run's cycles and
their time, the latency every image of the run waits; then the mean wall time per image of the
whole stream. With ``--check`` each group runs alone (``Driver.infer_batch``) so that every
layer of every image can be read and compared.

Connection options (``docs/board.md``): ``--csr-base`` (default: the M_AXI_GP0 base), one DMA
buffer (``--udmabuf NAME``, the default ``udmabuf0``; ``--dma-phys ADDR --dma-size BYTES``, a
reserved region through ``/dev/mem``; or ``--pynq BYTES``, ``pynq.allocate``), ``--uncached``
(u-dma-buf opened ``O_SYNC``), ``--uio DEV`` (sleep on the interrupt; ``--uio-registers`` maps the
registers from it too), ``--clock-mhz`` (the build's ``--fclk-mhz``), ``--timeout-ms``,
``--watchdog``, ``--mem-dev``, ``--no-fpga-check``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ...golden import reference
from ...golden.errors import IlmpqValueError
from ...golden.model import QModel
from ...golden.safeio import read_npy
from ...hdl.config import PRESETS, get_config
from ...hdl.regmap import COUNTER_NAMES, accelerator_regmap
from ...hdl.soc import GP0_BASE
from ._shared import add_batch_argument, compile_checked, model_config, run_figures
from .simulate import compare_layers, images_from_args
from ..driver import Driver, run_sync
from ..outputs import add_force_argument, check_output_file, write_text
from ..regmap import HardwareIdentity
from ..board.linux import (
    CSR_SIZE, DEFAULT_CLOCK_MHZ, FPGA_STATE_PATH, BoardError, LinuxTransport, MmapRegisters,
    check_fpga_programmed,
)

HELP = "run compiled models on a Zynq board under Linux (info: identify the bitstream)"

__all__ = ["HELP", "register", "main", "open_transport", "open_registers"]


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (decimal or 0x hex)")


def _connection(p: argparse.ArgumentParser, *, dma: bool) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--csr-base", type=_int, default=GP0_BASE, metavar="ADDR",
                   help=f"physical address of the register window (default {GP0_BASE:#x})")
    g.add_argument("--mem-dev", default="/dev/mem", metavar="PATH",
                   help="memory device for the registers and --dma-phys (default /dev/mem)")
    g.add_argument("--uio", metavar="DEV", default=None,
                   help="UIO device of the accelerator (uio0): wait on its interrupt")
    g.add_argument("--uio-registers", action="store_true",
                   help="map the registers from the UIO device's map 0 instead of --mem-dev")
    g.add_argument("--no-fpga-check", action="store_true",
                   help=f"do not require {FPGA_STATE_PATH} to read 'operating'")
    if not dma:
        return
    g.add_argument("--udmabuf", metavar="NAME", default=None,
                   help="u-dma-buf device for DMA memory (default udmabuf0)")
    g.add_argument("--uncached", action="store_true",
                   help="open the u-dma-buf with O_SYNC (uncached, no cache maintenance)")
    g.add_argument("--dma-phys", type=_int, metavar="ADDR", default=None,
                   help="reserved physical region for DMA memory (with --dma-size)")
    g.add_argument("--dma-size", type=_int, metavar="BYTES", default=None)
    g.add_argument("--pynq", type=_int, metavar="BYTES", default=None,
                   help="allocate the DMA memory with pynq.allocate")
    g.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"accelerator clock, FCLK_CLK0 (default {DEFAULT_CLOCK_MHZ:g})")
    g.add_argument("--timeout-ms", type=float, default=2000.0,
                   help="driver timeout per accelerator program (default 2000)")
    g.add_argument("--watchdog", type=_int, default=100_000, metavar="CYCLES",
                   help="hardware watchdog: cycles without progress (default 100000, 0: off)")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="board_command", metavar="ACTION")
    sub.required = True
    info = sub.add_parser("info", help="identify the bitstream: identity, status, counters",
                          description="Read the identification, status and counter registers.")
    info.add_argument("--config", default=None, choices=sorted(PRESETS),
                      help="expected configuration (exit status 1 if the bitstream differs)")
    _connection(info, dma=False)
    info.set_defaults(_board=_info)
    run = sub.add_parser("run", help="run a quantized model on the accelerator",
                         description="Compile MODEL.npz for the DMA buffer and run images on "
                                     "the accelerator.")
    run.add_argument("model", metavar="MODEL.npz", help="quantized model (ilmpq quantize)")
    run.add_argument("--config", default=None, choices=sorted(PRESETS),
                     help="configuration of the bitstream (default: the one the model was "
                          "quantized for, else z020)")
    run.add_argument("--images", metavar="IMAGES.npy", default=None,
                     help="uint8 images (N, C, H, W); default: --count random images")
    run.add_argument("--labels", metavar="LABELS.npy", default=None,
                     help="integer labels (N,) of --images: report accuracy")
    run.add_argument("--count", type=int, default=1, help="random images (default 1)")
    run.add_argument("--seed", type=int, default=0, help="seed of the random images")
    run.add_argument("--check", action="store_true",
                     help="compare every layer with the golden reference (self-test)")
    run.add_argument("--json", metavar="OUT.json", default=None,
                     help="write per-image results and counters as JSON")
    add_batch_argument(run)
    add_force_argument(run)
    _connection(run, dma=True)
    run.set_defaults(_board=_run)


def main(args) -> int:
    return args._board(args)


# -- opening the board (tests replace these) -----------------------------------------------------

def open_registers(args):
    """The register window the connection options name."""
    if not args.no_fpga_check:
        check_fpga_programmed(FPGA_STATE_PATH)
    if args.uio_registers:
        if args.uio is None:
            raise IlmpqValueError("--uio-registers needs --uio DEV")
        dev = args.uio if "/" in args.uio else f"/dev/{args.uio}"
        return MmapRegisters(dev, 0, CSR_SIZE)
    return MmapRegisters(args.mem_dev, args.csr_base, CSR_SIZE)


def open_transport(args, config) -> LinuxTransport:
    """The :class:`LinuxTransport` the connection options name."""
    udmabuf = args.udmabuf
    if udmabuf is None and args.dma_phys is None and args.dma_size is None and args.pynq is None:
        udmabuf = "udmabuf0"
    return LinuxTransport.open(
        config, csr_base=args.csr_base, udmabuf=udmabuf, udmabuf_cached=not args.uncached,
        dma_phys=args.dma_phys, dma_size=args.dma_size, pynq_size=args.pynq, uio=args.uio,
        uio_registers=args.uio_registers, mem_dev=args.mem_dev,
        fpga_state=None if args.no_fpga_check else FPGA_STATE_PATH,
        clock_hz=args.clock_mhz * 1e6)


# -- info ----------------------------------------------------------------------------------------

def _info(args) -> int:
    regs = open_registers(args)
    try:
        any_map = accelerator_regmap(get_config(args.config or "z020"))
        ident = HardwareIdentity.read(any_map, regs.read32)
        expected_magic = HardwareIdentity.expected(any_map).magic
        if ident.magic != expected_magic:
            print(f"no ilmpq accelerator at {args.csr_base:#x}: ID reads {ident.magic:#010x}, "
                  f"expected {expected_magic:#010x}")
            return 1
        presets = [n for n, c in sorted(PRESETS.items()) if c.config_id == ident.config_id]
        print(f"ilmpq accelerator: {ident.describe()}")
        print(f"configuration: {', '.join(presets) if presets else 'not a preset'}")
        status = any_map.decode("status", regs.read32(any_map.offset("status")))
        info = regs.read32(any_map.offset("err_info"))
        print("status: " + ", ".join(f"{k}={v}" for k, v in status.items())
              + f", err_info={info:#x}")
        for name, _doc in COUNTER_NAMES:
            lo = regs.read32(any_map.offset(f"{name}_lo"))
            hi = regs.read32(any_map.offset(f"{name}_hi"))
            print(f"  {name:<14}{(hi << 32) | lo:>16}")
        if args.config is not None:
            why = ident.mismatch(HardwareIdentity.expected(any_map))
            if why is not None:
                print(f"MISMATCH: {why}")
                return 1
            print(f"matches --config {args.config}")
        return 0
    finally:
        regs.close()


# -- run -----------------------------------------------------------------------------------------

def _run(args) -> int:
    if args.json:
        check_output_file(args.json, force=args.force)
    model = QModel.load(args.model)
    cfg, cfg_line = model_config(model, args.config, args.model, fallback="z020")
    imgs = images_from_args(args, model.tensors[model.input].shape)
    labels = None
    if args.labels:
        if not args.images:
            raise IlmpqValueError("--labels needs --images")
        labels = np.asarray(read_npy(args.labels, "labels")).reshape(-1)
        if labels.shape[0] != imgs.shape[0]:
            raise IlmpqValueError(f"{args.labels!r} holds {labels.shape[0]} labels for "
                                  f"{imgs.shape[0]} images")
    if args.timeout_ms <= 0:
        raise IlmpqValueError(f"--timeout-ms must be positive, not {args.timeout_ms}")

    transport = open_transport(args, cfg)
    try:
        dma = transport.dma
        print(cfg_line)
        comp = compile_checked(model, cfg, args.model, base=dma.phys_addr) \
            if args.batch == 1 else \
            compile_checked(model, cfg, args.model, base=dma.phys_addr, batch=args.batch)
        if comp.size > dma.size:
            raise BoardError(f"the compiled model needs {comp.size} bytes of DMA memory; "
                             f"{dma.name} holds {dma.size} (make it larger, docs/board.md)")
        clock_hz = transport.clock_hz
        drv = Driver(transport, cfg, timeout_cycles=max(1, int(args.timeout_ms * 1e-3 * clock_hz)),
                     watchdog_cycles=args.watchdog)
        run_sync(drv.check())
        print(f"{transport.describe()}")
        print(f"bitstream: {cfg.describe()}; model image {comp.size} bytes at "
              f"{comp.base:#x}")
        macs = sum(r.macs for r in comp.layers if r.where == "accel")
        if args.batch > 1:
            return _run_batched(args, model, cfg, comp, drv, imgs, labels, clock_hz, macs)
        results, bad, correct = [], 0, 0
        for i, img in enumerate(imgs):
            t0 = time.perf_counter()
            tensors, stats = run_sync(drv.infer(comp, img, load=(i == 0), check=args.check))
            wall = time.perf_counter() - t0
            pred = int(np.argmax(np.asarray(tensors[model.output]).reshape(-1)))
            cyc = stats["cycles"]
            line = (f"image {i + 1}/{len(imgs)}: class {pred}, {cyc} cycles = "
                    f"{cyc / clock_hz * 1e3:.3f} ms at "
                    f"{clock_hz / 1e6:g} MHz, PE utilization "
                    f"{macs / max(1, cyc * cfg.macs_per_cycle):.1%}, wall {wall * 1e3:.2f} ms")
            res = {"image": i, "class": pred, "wall_s": wall, "counters": stats.counters}
            line, ok, exact = _label_and_check(args, model, cfg, img, tensors, pred,
                                               None if labels is None else labels[i], line, res)
            correct += ok
            bad += not exact
            print(line)
            results.append(res)
        n = len(imgs)
        cycles = [r["counters"]["cycles"] for r in results]
        walls = [r["wall_s"] for r in results]
        print(f"{n} {'image' if n == 1 else 'images'}: mean {np.mean(cycles):.0f} cycles "
              f"({clock_hz / max(1.0, float(np.mean(cycles))):.1f} frames/s of accelerator time), "
              f"mean wall {np.mean(walls) * 1e3:.2f} ms")
        if labels is not None:
            print(f"accuracy {correct}/{n} = {correct / n:.1%}")
        if args.check:
            print(f"{n - bad}/{n} images bit-exact on every layer (board)")
        if args.json:
            write_text(args.json, json.dumps({"config": cfg.name, "base": comp.base,
                                              "clock_hz": clock_hz, "images": results},
                                             indent=1), force=args.force)
        return 1 if bad else 0
    finally:
        transport.close()


def _label_and_check(args, model, cfg, img, tensors, pred: int, label, line: str,
                     res: dict) -> tuple[str, bool, bool]:
    """One image's result line and JSON record completed with its label (``label`` not None)
    and, with ``--check``, every layer against golden; returns ``(line, correct, bit-exact)``
    (bit-exact is True without ``--check``)."""
    ok, exact = False, True
    if label is not None:
        ok = pred == int(label)
        line += f", label {int(label)}"
        res["label"] = int(label)
    if args.check:
        why = compare_layers(model, reference.run(model, img, spec=cfg.numeric), tensors)
        exact = why is None
        line += ", bit-exact" if exact else f", MISMATCH\n  {why}"
        res["bit_exact"] = exact
    return line, ok, exact


def _run_batched(args, model, cfg, comp, drv, imgs, labels, clock_hz: float, macs: int) -> int:
    """``board run --batch B``: the images in groups of B, a run each (module docstring)."""
    bsz, n = comp.batch, len(imgs)
    groups = [list(range(i, min(i + bsz, n))) for i in range(0, n, bsz)]
    outs, counters = [], []         # per image its tensors; per run its counters
    t0 = time.perf_counter()
    if args.check:
        from ..sim.simulate import _infer_group    # a group filled up as infer_stream does
        for g, idx in enumerate(groups):          # alone, to read every layer of every image
            got = run_sync(_infer_group(drv, comp, [imgs[i] for i in idx], g == 0))
            outs += [r.tensors for r in got]
            counters.append(got[0].stats.counters)
    else:
        res = run_sync(drv.infer_stream(comp, imgs))
        outs = [{model.output: o} for o in res.outputs]
        counters = [{"cycles": c} for c in res.cycles]
    wall = time.perf_counter() - t0
    results, bad, correct = [], 0, 0
    for g, idx in enumerate(groups):
        run = counters[g]["cycles"]
        fig = run_figures([run], bsz, macs, cfg, clock_hz)
        for i in idx:
            tensors = outs[i]
            pred = int(np.argmax(np.asarray(tensors[model.output]).reshape(-1)))
            line = (f"image {i + 1}/{n}: class {pred}, {fig['cycles_per_image']:.0f} cycles "
                    f"(run {g + 1}/{len(groups)} of {bsz} images: {run} cycles = "
                    f"{fig['latency_ms']:.3f} ms latency at {clock_hz / 1e6:g} MHz), "
                    f"PE utilization {fig['pe_utilization']:.1%}")
            res = {"image": i, "class": pred, "run": g, "cycles": fig["cycles_per_image"],
                   "counters": counters[g]}
            line, ok, exact = _label_and_check(args, model, cfg, imgs[i], tensors, pred,
                                               None if labels is None else labels[i], line, res)
            correct += ok
            bad += not exact
            print(line)
            results.append(res)
    fig = run_figures([c["cycles"] for c in counters], bsz, macs, cfg, clock_hz)
    print(f"{n} {'image' if n == 1 else 'images'} in {fig['runs']} "
          f"{'run' if fig['runs'] == 1 else 'runs'} of {bsz}: mean "
          f"{fig['cycles_per_image']:.0f} cycles per image ({fig['frames_per_s']:.1f} frames/s "
          f"of accelerator time), latency {fig['latency_ms']:.3f} ms a run, mean wall "
          f"{wall / n * 1e3:.2f} ms per image")
    if labels is not None:
        print(f"accuracy {correct}/{n} = {correct / n:.1%}")
    if args.check:
        print(f"{n - bad}/{n} images bit-exact on every layer (board, {bsz} images a run)")
    if args.json:
        write_text(args.json, json.dumps({"config": cfg.name, "base": comp.base,
                                          "clock_hz": clock_hz, "batch": bsz,
                                          "wall_s": wall, "images": results}, indent=1),
                   force=args.force)
    return 1 if bad else 0
