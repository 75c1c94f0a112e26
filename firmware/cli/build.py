"""``ilmpq build``: a Vivado build of a Zynq board (plan, estimate, bitstream, reports)."""

from __future__ import annotations

import contextlib
import sys

from ...golden.errors import IlmpqValueError
from ...hdl.config import PRESETS
from ...hdl.platforms import BOARDS
from ..outputs import add_force_argument, check_output_dir, output_dir
from ..progress import Progress

HELP = "build for a Zynq board: Vivado build plan (bitstream with Vivado), resource estimate"

__all__ = ["HELP", "register", "main"]


def register(parser) -> None:
    parser.add_argument("--board", required=True, choices=list(BOARDS),
                        help="; ".join(f"{b.name}: {b.part}, default config {b.default_config}"
                                       for b in BOARDS.values()))
    parser.add_argument("--config", metavar="NAME",
                        help=f"hardware configuration preset ({', '.join(sorted(PRESETS))}; "
                             f"default: the board's)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="output directory (created)")
    parser.add_argument("--name", metavar="NAME",
                        help="design name (default ilmpq_<config>_<board>)")
    parser.add_argument("--axi-ports", type=int, choices=(1, 2, 4), metavar="N",
                        help="AXI HP ports the DMA uses, S_AXI_HP0..HP(N-1): 1, 2 or 4 "
                             "(default: the configuration's)")
    parser.add_argument("--fclk-mhz", type=float, default=100.0, metavar="MHZ",
                        help="FCLK_CLK0 frequency the design is constrained for (default 100)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan-only", action="store_true",
                      help="do not run Vivado even if it is available")
    mode.add_argument("--vivado", action="store_true",
                      help="run Vivado; fail if it is not available")
    mode.add_argument("--reports-only", action="store_true",
                      help="only parse the Vivado reports already in DIR into "
                           "vivado_reports.json (after running build_<name>.sh there)")
    parser.add_argument("--no-estimate", action="store_true",
                        help="skip the yosys synth_xilinx resource estimate (minutes for the "
                             "board presets)")
    parser.add_argument("--estimate-timeout", type=float, metavar="SECONDS",
                        help="abandon the estimate after this many seconds")
    add_force_argument(parser)


def main(args) -> int:
    from ..board.build import build

    if args.estimate_timeout is not None and not args.estimate_timeout > 0:
        raise IlmpqValueError(f"--estimate-timeout {args.estimate_timeout} is not allowed: give "
                              f"a positive number of seconds")

    progress = Progress()
    vivado = False if args.plan_only else (True if args.vivado else None)
    kwargs = dict(config=args.config, name=args.name, vivado=vivado,
                  estimate=not args.no_estimate and not args.reports_only,
                  reports_only=args.reports_only, fclk_mhz=args.fclk_mhz,
                  estimate_timeout=args.estimate_timeout, axi_ports=args.axi_ports)
    if args.reports_only:
        # reads the Vivado reports in DIR and (re)writes only its own summaries there
        res = build(args.board, args.output, progress=lambda msg: print(msg, file=sys.stderr),
                    **kwargs)
    else:
        check_output_dir(args.output, force=args.force, names=("build.json", "BUILD.md"))
        # built in a staging directory next to DIR, moved in when complete (a failed Vivado run
        # keeps its files, logs included)
        with output_dir(args.output, force=args.force, keep_on_error=True) as staging, \
                contextlib.ExitStack() as running:
            def say(msg):  # each message starts a step; the elapsed time ticks until the next
                running.close()
                print(msg.replace(staging, args.output), file=sys.stderr, flush=True)
                if msg.startswith("yosys synth_xilinx estimate"):
                    progress.note(f"  (minutes for z020/z045; --no-estimate skips it, "
                                  f"--estimate-timeout SECONDS bounds it)")
                    running.enter_context(progress.task("yosys estimate", ticker=True))
                elif msg.startswith("build plan"):
                    running.enter_context(progress.task("elaborating the design", ticker=True))
                elif msg.startswith("running Vivado"):
                    running.enter_context(progress.task("Vivado", ticker=True))
            res = build(args.board, staging, progress=say, **kwargs)
        res.out_dir = args.output
    print(f"{res.name}: board {res.board} ({res.part}), configuration {res.config}, "
          f"in {res.out_dir}")
    if res.estimate:
        e = res.estimate
        u = e.get("device_utilization") or {}
        print(f"  yosys estimate: {e['lut']} LUT ({u.get('lut')}%), {e['ff']} FF, "
              f"{e['dsp']} DSP48E1 ({u.get('dsp')}%), {e['bram36']} BRAM36 "
              f"({u.get('bram36')}%), {e['seconds']} s")
    if res.vivado:
        v = res.vivado
        if "utilization" in v:
            s = v["utilization"]["summary"]
            parts = [f"{k} {s[k]['used']} ({s[k]['util_pct']}%)"
                     for k in ("lut", "ff", "bram_tile", "dsp") if k in s]
            print(f"  Vivado utilization: {', '.join(parts)}")
        if "timing" in v:
            t = v["timing"]
            print(f"  Vivado timing: met={t['met']}, WNS {t.get('wns_ns')} ns, "
                  f"fmax {t.get('fmax_mhz')} MHz")
        print(f"  bitstream: {v.get('bitstream') or 'none'}")
    elif not res.vivado_ran:
        print(f"  Vivado not run: run 'sh build_{res.name}.sh' in {res.out_dir} (Vivado on "
              f"PATH), then 'ilmpq build --board {res.board} --config {res.config} "
              f"--reports-only -o {res.out_dir}'")
    print(f"  summary: {res.out_dir}/build.json, {res.out_dir}/BUILD.md")
    return 0
