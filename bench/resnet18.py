"""Benchmark: ResNet-18 (224x224) on the z020 and z045 presets, from RTL-validated cycle counts.

What it measures (``docs/performance.md`` explains the numbers):

1. **The cycle model** (:mod:`ilmpq.firmware.cyclemodel`) of ResNet-18 with random seeded weights
   and the real layer shapes, compiled for ``z020`` and ``z045``, with the memory of a Zynq HP
   port to PS DDR3 (:data:`MEMORY` = ``MemoryTiming.zynq_hp()``, read latency 32): cycles per
   layer and where they go, PE utilization (useful MACs / peak MACs), frames/s at 100 MHz and
   the frame rate at read latencies 8, 32 and 64 (:data:`LATENCIES`), the DMA bandwidth the
   layers use and would need at the PE array's rate, and the DDR read + write bandwidth of the
   whole design against the boards' PS DDR (:data:`BOARD_DDR`). The whole network (max
   pooling and global average pooling included) is one accelerator program per frame; the
   **end-to-end** frame rate adds what the host does per frame (laying out the input image;
   it overlaps the accelerator through the compiler's frame slots) and the restart gap between
   back-to-back frames measured on the RTL.
2. **Two fixed-point baselines on the same device**, the same architecture with uniform 8-bit
   weights (the model quantized with R = 1, compiled for ``lanes_hi`` 8-bit lanes and one idle
   4-bit lane, which ``HWConfig`` needs): ``base8_*`` spends only DSP48E1s (one 8-bit MAC per
   DSP not used by post-processing); ``lut8_*`` adds as many 8-bit LUT MACs as the LUTs of the
   ILMPQ PE array pay for (:func:`lut_budget`, from ``bench/results/resources.json``). Several
   geometries each; the fastest is kept. Speedup = baseline cycles / ILMPQ cycles.
3. **RTL anchors** (``--rtl``, default on): single-layer programs with the real ResNet-18 shapes
   (stem, 3x3, 1x1 stride 2, 3x3 with residual at 14x14 and 7x7, FC) on the z020 and the z045
   RTL under Verilator with the same memory timing: outputs bit-exact against golden, counters
   exact, model cycles against RTL cycles. ``--full-rtl``: the whole network through the z020
   RTL, every layer bit-exact, cycles of its one program against the model; then three
   different images back to back through the frame slots (``Driver.infer_stream``), each
   output against golden, and the steady-state frame interval. ``--tiny-sweep``: random layer
   programs on the ``tiny`` RTL (test memory, RL 8).

Writes ``bench/results/resnet18.json``, ``.md`` and ``.png``.

Usage: ``python bench/resnet18.py [--seed S] [--no-rtl] [--no-z045-rtl] [--full-rtl]
[--lut-baselines] [--report-only] [--out DIR]`` (Verilator: the first z020 build takes about 5
minutes, z045 longer, both cached; the Verilog generation about 40 s per preset and run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from ilmpq.firmware import cyclemodel as cm  # noqa: E402
from ilmpq.firmware.compiler import DEFAULT_BASE, MAX_BATCH, compile_model  # noqa: E402
from ilmpq.golden import reference  # noqa: E402
from ilmpq.golden.random_models import ModelBuilder, resnet18_qmodel  # noqa: E402
from ilmpq.hdl.config import HWConfig, get_config  # noqa: E402
from ilmpq.hdl.pe_array import HI_LANES_PER_DSP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLOCK_HZ = 100e6
#: One 64-bit AXI HP port at 100 MHz, per direction (read and write channels are separate).
PORT_MBPS = 8 * CLOCK_HZ / 1e6
#: DSP48E1 per device, and the post-processing unit's share (3 per post lane, docs/postproc.md).
DEVICE_DSP = {"z020": 220, "z045": 900}
POST_DSP_PER_LANE = 3
#: The paper family on XC7Z020 at 100 MHz (as the MSQ and FILM-QNN papers report them).
ANCHORS = {"MSQ (W4A4)": {"fps": 21.3, "gops": 77.0, "dsp": 220, "klut": 28.3},
           "FILM-QNN intra-layer (95% W4 + 5% W8, A5)": {"fps": 27.8, "gops": 100.6,
                                                        "dsp": 208, "klut": 41.3}}
#: The memory of the headline figures: a Zynq HP port to PS DDR3 (``MemoryTiming.zynq_hp()``,
#: ``docs/memory_model.md``); the RTL anchors run on the Verilator memory with the same timing.
MEMORY = cm.MemoryTiming.zynq_hp()
#: Read latencies every build's frame rate is also given at (write latency as :data:`MEMORY`).
LATENCIES = (8, cm.ZYNQ_HP_READ_LATENCY, 64)
#: The PS DDR3 of each preset's boards: peak = bus bits / 8 x transfers per second; usable =
#: the DDR controller's efficiency, "designed to have a maximum efficiency of approximately
#: 75 %" (Xilinx UG585 v1.11, section 22.3.2). All HP ports share this one controller.
BOARD_DDR = {
    "z020": {"board": "PYNQ-Z1 / PYNQ-Z2 / Arty Z7-20", "bus_bits": 16, "mtps": 1050,
             "source": "Digilent PYNQ-Z1 reference manual: 512 MB DDR3 with 16-bit bus @ 525 "
                       "MHz (1050 MT/s); the PYNQ-Z2 and Arty Z7-20 have the same interface"},
    "z045": {"board": "ZC706", "bus_bits": 32, "mtps": 1066,
             "source": "Xilinx UG954 (ZC706 user guide): PS DDR3, four x8 components = 32 bits, "
                       "DDR3-1066 (533 MHz)"},
}
DDR_EFFICIENCY = 0.75


# -- configurations ------------------------------------------------------------------------------

def _act_ports(cfg: HWConfig, tn: int) -> int:
    """A baseline's ``act_ports``: the preset's memory system (striped activation loads) where
    its words of ``tn`` bytes allow it (at least two beats), else one port."""
    return cfg.act_ports if tn * 8 >= 2 * cfg.axi_data_width else 1


def baseline_configs(cfg: HWConfig):
    """Candidate geometries of the conventional fixed-point build on ``cfg``'s device.

    Every DSP48E1 that post-processing does not use becomes two 8-bit MACs: the baseline's
    8-bit lanes are the PE array's high lanes, two lanes per DSP48E1 per activation
    (:func:`ilmpq.hdl.pe_array.hi_pair_dots`; :func:`dsp_use`). ``tn`` in (8, 16, 32) (what the
    activation buffer allows with a 64-bit beat), and either ``lanes`` a multiple of
    ``post_lanes`` (no padded channel positions in the stored tensors) with ``lanes - 1`` 8-bit
    lanes, or as many 8-bit lanes as the DSPs allow. ``HWConfig`` needs one 4-bit lane: it
    receives no rows (the model is all 8-bit). The benchmark keeps the fastest candidate.
    """
    dsp = DEVICE_DSP[cfg.name] - POST_DSP_PER_LANE * cfg.post_lanes
    post = cfg.post_lanes
    for tn in (8, 16, 32):
        most = HI_LANES_PER_DSP * (dsp // tn)
        his = {most}
        lanes = (most + 1) // post * post
        if lanes >= post:
            his.add(lanes - 1)
        for hi in sorted(his):
            # the same activation buffer bytes as the preset
            c = cfg.replace(lanes_lo=1, lanes_hi=hi, lanes_lo_dsp=0, tn=tn, post_groups=1,
                            act_depth=max(16, cfg.act_depth * cfg.tn // tn),
                            act_ports=_act_ports(cfg, tn))
            assert dsp_use(c) <= DEVICE_DSP[cfg.name], (c, dsp_use(c))
            # the residual row buffer must hold the widest stored tensor (512 channels in
            # mtiles of lanes_pad positions)
            need = -(-512 // hi) * c.lanes_pad
            yield c.replace(name=f"base8_{cfg.name}_{hi}x{tn}",
                            max_channels=max(cfg.max_channels, -(-need // 64) * 64))


RESOURCES_JSON = ROOT / "bench" / "results" / "resources.json"


def lut_budget(cfg: HWConfig) -> dict:
    """What the same-LUT-budget baseline may spend on ``cfg``'s device, from
    ``bench/results/resources.json`` (yosys): the LUTs of the ILMPQ build's PE array (the rest
    of the accelerator is the same in both builds), the LUTs around one DSP48E1 8-bit MAC (the
    high lane's in-situ cost) and the LUTs of one 8-bit MAC built in LUTs (the MAC study's
    ``hi_nodsp``: ``w * a`` with ``-nodsp``, its adder-tree and accumulator share)."""
    data = json.loads(RESOURCES_JSON.read_text())
    if "hi_nodsp" not in data.get("mac_study", {}):
        raise SystemExit(f"{RESOURCES_JSON} has no hi_nodsp MAC study: run python "
                         f"bench/resources.py --presets {cfg.name} --study-kinds hi_nodsp "
                         f"--merge")
    out = {"dsp_mac_lut": data["in_situ"]["hi_lane"]["lut_per_mac"],
           "lut_mac_lut": data["mac_study"]["hi_nodsp"]["lut_per_mac"]}
    e = data["presets"].get(cfg.name)
    if e is not None and e["config"] == cfg.describe():
        return {**out, "ilmpq_pe_lut": e["blocks"]["pe_array"]["lut"],
                "ilmpq_total_lut": e["total"]["lut"],
                "source": "yosys (bench/resources.py)"}
    # no synthesis of this geometry yet: the in-situ per-MAC estimate of bench/geometry.py
    geo = ROOT / "bench" / "results" / "geometry.json"
    rows = json.loads(geo.read_text())["rows"] if geo.exists() else []
    row = next((x for x in rows if x["preset"] and x["describe"] == cfg.describe()), None)
    if row is None:
        raise SystemExit(f"neither {RESOURCES_JSON} nor {geo} holds the current {cfg.name} "
                         f"preset ({cfg.describe()}): run python bench/resources.py --presets "
                         f"{cfg.name} --merge")
    return {**out, "ilmpq_pe_lut": row["pe_lut_est"], "ilmpq_total_lut": None,
            "source": "estimate (bench/geometry.py: in-situ LUTs per MAC x MACs)"}


def lut_baseline_configs(cfg: HWConfig, budget: dict):
    """Candidate geometries of the same-LUT-budget fixed-point build: the DSP-only baseline's
    8-bit DSP MACs (every DSP48E1 post-processing does not use) plus as many 8-bit LUT MACs as
    the LUTs of the ILMPQ PE array pay for (after the DSP MACs' own LUTs). The same ``tn`` and
    lane rounding as :func:`baseline_configs`; all lanes are 8-bit lanes (one idle 4-bit lane,
    as there); which of them are DSPs and which LUTs does not change a cycle. The DSP lanes
    are packed two per DSP48E1 as in :func:`baseline_configs`."""
    dsp = DEVICE_DSP[cfg.name] - POST_DSP_PER_LANE * cfg.post_lanes
    post = cfg.post_lanes
    for tn in (8, 16, 32):
        dsp_lanes = HI_LANES_PER_DSP * (dsp // tn)
        left = budget["ilmpq_pe_lut"] - dsp_lanes * tn * budget["dsp_mac_lut"]
        lut_lanes = max(0, int(left // (tn * budget["lut_mac_lut"])))
        his = {dsp_lanes + lut_lanes}
        lanes = (dsp_lanes + lut_lanes + 1) // post * post
        if lanes >= post:
            his.add(lanes - 1)
        for hi in sorted(his):
            c = cfg.replace(lanes_lo=1, lanes_hi=hi, lanes_lo_dsp=0, tn=tn, post_groups=1,
                            act_depth=max(16, cfg.act_depth * cfg.tn // tn),
                            act_ports=_act_ports(cfg, tn))
            need = -(-512 // hi) * c.lanes_pad
            c = c.replace(name=f"lut8_{cfg.name}_{hi}x{tn}",
                          max_channels=max(cfg.max_channels, -(-need // 64) * 64))
            n_dsp = min(hi, dsp_lanes) * tn
            yield c, {"dsp_macs": n_dsp, "lut_macs": hi * tn - n_dsp,
                      "dsp48e1": _hi_dsp(min(hi, dsp_lanes), tn) + POST_DSP_PER_LANE * post,
                      "pe_lut_est": round(n_dsp * budget["dsp_mac_lut"]
                                          + (hi * tn - n_dsp) * budget["lut_mac_lut"])}


def _hi_dsp(lanes_hi: int, tn: int) -> int:
    """DSP48E1 of ``lanes_hi`` 8-bit lanes: one per activation for each pair of lanes, one per
    activation for an odd last lane (``PEArray``)."""
    return -(-lanes_hi // HI_LANES_PER_DSP) * tn


def dsp_use(cfg: HWConfig) -> int:
    """DSP48E1 of the PE array and post-processing: one per pair of 8-bit MACs (high lanes
    in pairs, an odd last one alone), one per pair of DSP-packed 4-bit MACs
    (``lanes_lo_dsp``), 3 per post lane (``post_lanes x post_groups`` of them)."""
    return (_hi_dsp(cfg.lanes_hi, cfg.tn) + cfg.lanes_lo_dsp // 2 * cfg.tn
            + POST_DSP_PER_LANE * cfg.post_lanes * cfg.post_groups)


def config_row(cfg: HWConfig) -> dict:
    return {"name": cfg.name, "describe": cfg.describe(), "lanes_lo": cfg.lanes_lo,
            "lanes_hi": cfg.lanes_hi, "lanes_lo_dsp": cfg.lanes_lo_dsp, "tn": cfg.tn,
            "macs_per_cycle": peak_macs(cfg), "words_per_set": cfg.words_per_set,
            "set_beats": cfg.set_bits / cfg.axi_data_width, "acc_depth": cfg.acc_depth,
            "act_depth": cfg.act_depth, "wbuf_depth": cfg.wbuf_depth,
            "max_reads_outstanding": cfg.max_reads_outstanding, "axi_ports": cfg.axi_ports,
            "read_fifo_beats": cfg.read_fifo_beats, "dsp48e1": dsp_use(cfg),
            "device_dsp48e1": DEVICE_DSP.get(cfg.name.removeprefix("base8_")
                                             .removeprefix("lut8_").split("_")[0])}


# -- the model -----------------------------------------------------------------------------------

def peak_macs(cfg: HWConfig) -> int:
    """MACs per cycle that do useful work: all lanes, or the 8-bit lanes of a baseline (its one
    4-bit lane is idle)."""
    return (cfg.lanes_hi * cfg.tn if cfg.name.startswith(("base8_", "lut8_"))
            else cfg.macs_per_cycle)


#: Cycles between one frame's end and the next frame's start when frames run back to back
#: (``Driver.infer_stream``: read CYCLES, write the run registers, START), measured on the z020
#: RTL by ``--full-rtl`` (``rtl.full_network.stream``); used for the end-to-end frame rate.
RESTART_GAP_CYCLES = 40


def latency_sweep(comp, cfg: HWConfig, memory: cm.MemoryTiming = MEMORY,
                  latencies=LATENCIES) -> list[dict]:
    """Cycles, frames/s (accelerator only) and utilization of ``comp`` at each read latency."""
    out = []
    for rl in latencies:
        est = cm.estimate(comp, memory=dataclasses.replace(memory, read_latency=rl))
        out.append({"read_latency": rl, "write_latency": memory.write_latency,
                    "cycles": est.cycles, "fps": est.fps(CLOCK_HZ),
                    "utilization": est.macs / (est.cycles * peak_macs(cfg))})
    return out


def ddr_budget(name: str) -> dict:
    """Peak and usable PS DDR bandwidth (MB/s) of the preset's boards (:data:`BOARD_DDR`)."""
    b = BOARD_DDR[name]
    peak = b["bus_bits"] / 8 * b["mtps"]
    return {**b, "peak_mbps": peak, "efficiency": DDR_EFFICIENCY,
            "usable_mbps": peak * DDR_EFFICIENCY}


def host_input_ms(comp, seed: int, repeat: int = 5) -> float:
    """Host time per frame, on this machine, to prepare the input. 0 when the accelerator reads
    the raw image (``comp.input_layout`` not ``"host"``): the driver writes the image's HWC
    bytes as they are (the copy into the frame slot is the transport's write, as for any
    input). Else laying out one image in the input placement (``TensorPlacement.to_memory``:
    HWC, channel padding, the stem's column fold). The compiled network needs nothing else from
    the host but reading the logits."""
    if comp.input_layout != "host":
        return 0.0
    img = np.random.default_rng(seed).integers(0, 256, size=comp.model.tensors[comp.input]
                                               .shape)
    inp = comp.tensors[comp.input]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        inp.to_memory(img)
        best = min(best, time.perf_counter() - t)
    return 1e3 * best


def model_network(cfg: HWConfig, model, label: str, memory: cm.MemoryTiming = MEMORY
                  ) -> tuple[dict, object, object]:
    """Compile and model at ``memory``; one row per layer. Utilization is over
    :func:`peak_macs`."""
    t0 = time.perf_counter()
    comp = compile_model(model, cfg)
    t1 = time.perf_counter()
    est = cm.estimate(comp, memory=memory)
    t2 = time.perf_counter()
    host_ms = host_input_ms(comp, 0)
    cpu_layers = [r.name for r in comp.layers if r.where == "cpu"]
    rows = []
    for l in est.layers:
        row = {"layer": l.name, "kind": l.kind, "where": l.where,
               "out_shape": list(l.out_shape), "macs": l.macs}
        if l.where == "accel":
            cyc = l.cycles
            row.update({
                "cycles": round(cyc), "ms": 1e3 * cyc / CLOCK_HZ,
                "utilization": l.macs / (cyc * peak_macs(cfg)), "pe_beats": l.pe_beats,
                "ptiles": len(l.tiles), "mtiles": l.tiles[0].mtiles,
                "sets_per_mtile": l.tiles[0].sets_per_mtile,
                "pixels_per_tile": max(t.pixels for t in l.tiles),
                "breakdown": {k: round(v) for k, v in l.breakdown.items()},
                "bound": l.bound,
                "bytes_read": l.bytes_read, "bytes_written": l.bytes_written,
                "read_mbps": l.bytes_read / cyc * CLOCK_HZ / 1e6,
                "write_mbps": l.bytes_written / cyc * CLOCK_HZ / 1e6,
                # what the layer would need for the PE array never to wait (pooling layers
                # use the pooling unit, not the PE array)
                "read_mbps_at_pe_rate": (l.bytes_read / l.pe_beats * CLOCK_HZ / 1e6
                                         if l.pe_beats else None),
                # the layer's own read beats per cycle of its interval (its weight stream can
                # start during the previous layer, so this can exceed 1)
                "read_beats_per_cycle": l.bytes_read / cfg.beat_bytes / cyc,
            })
        elif l.where == "cpu":
            layer = next(x for x in model.layers if x.name == l.name)
            row.update({"bytes_in": comp.tensors[layer.input].nbytes,
                        "bytes_out": comp.tensors[layer.output].nbytes,
                        "note": "on the host CPU (golden's integer op on the stored tensors)"})
        rows.append(row)
    total_rd = sum(p.counters["bytes_read"] for p in est.programs)
    total_wr = sum(p.counters["bytes_written"] for p in est.programs)
    acc_ms = 1e3 * est.cycles / CLOCK_HZ
    if comp.one_program and len(comp.slots) >= 2:
        # frames back to back: the host's input layout for frame n + 1 overlaps frame n
        frame_ms = max(acc_ms + 1e3 * RESTART_GAP_CYCLES / CLOCK_HZ, host_ms)
    else:
        frame_ms = acc_ms + host_ms        # host layers between programs: no overlap (and
        #                                    their own time is not counted here)
    accel = [q for q in rows if q["where"] == "accel"]
    busiest = max(accel, key=lambda q: (q["bytes_read"] + q["bytes_written"]) / q["cycles"])
    res = {
        "label": label, "config": config_row(cfg),
        "memory": {"read_latency": memory.read_latency, "write_latency": memory.write_latency},
        # DDR traffic: all ports together (they share the PS DDR controller)
        "ddr_mbps": (total_rd + total_wr) / est.cycles * CLOCK_HZ / 1e6,
        "ddr_busiest_layer": busiest["layer"],
        "ddr_busiest_layer_mbps": busiest["read_mbps"] + busiest["write_mbps"],
        "one_program": comp.one_program, "programs_per_frame": len(est.programs),
        "host_layers": cpu_layers,
        "host_ms": host_ms, "host_overlapped": comp.one_program and len(comp.slots) >= 2,
        "e2e_ms": frame_ms, "e2e_fps": 1e3 / frame_ms,
        "cycles": est.cycles, "ms": acc_ms, "fps": est.fps(CLOCK_HZ),
        "utilization": est.macs / (est.cycles * peak_macs(cfg)), "macs": est.macs,
        "gops": 2 * est.macs * est.fps(CLOCK_HZ) / 1e9,
        "bytes_read": total_rd, "bytes_written": total_wr,
        "read_mbps": total_rd / est.cycles * CLOCK_HZ / 1e6,
        "write_mbps": total_wr / est.cycles * CLOCK_HZ / 1e6,
        "programs": [dict(p.counters, read_busy=p.read_busy) for p in est.programs],
        "layers": rows,
        "compile_s": t1 - t0, "model_s": t2 - t1,
    }
    return res, comp, est


def _weight_share(est) -> float:
    """Share of the program's cycles the PE array waits for weight packages."""
    return sum(l.breakdown.get("weights", 0) for l in est.layers if l.where == "accel") \
        / est.cycles


def batched(cfg: HWConfig, model, batches, res1: dict, est1,
            memory: cm.MemoryTiming = MEMORY) -> list[dict]:
    """The network compiled for B images per run (``compile_model(batch=B)``: the
    weight-bound layers on the B images stacked, one weight set for all of them), one row per
    B (B = 1: ``res1``/``est1``, the unbatched run): cycles of a run, its latency, fps = B *
    clock / cycles (end to end with the restart gap once per run), utilization, weight-wait
    share."""
    rows = [{"batch": 1, "stacked_from": "", "cycles_per_batch": res1["cycles"],
             "cycles_per_image": res1["cycles"], "latency_ms": res1["ms"],
             "fps": res1["fps"], "e2e_fps": CLOCK_HZ / (res1["cycles"] + RESTART_GAP_CYCLES),
             "utilization": res1["utilization"], "weight_wait_share": _weight_share(est1)}]
    for b in batches:
        t0 = time.perf_counter()
        comp = compile_model(model, cfg, batch=b)
        est = cm.estimate(comp, memory=memory)
        cyc = est.cycles
        rows.append({"batch": b, "stacked_from": comp.batch_from, "cycles_per_batch": cyc,
                     "cycles_per_image": cyc / b, "latency_ms": 1e3 * cyc / CLOCK_HZ,
                     "fps": b * CLOCK_HZ / cyc,
                     "e2e_fps": b * CLOCK_HZ / (cyc + RESTART_GAP_CYCLES),
                     "utilization": est.macs / (cyc * peak_macs(cfg)),
                     "weight_wait_share": _weight_share(est),
                     "memory_bytes": comp.size, "model_s": time.perf_counter() - t0})
        print(f"{cfg.name} batch {b}: {cyc:,} cycles a run, {rows[-1]['fps']:.1f} fps, "
              f"util {100 * rows[-1]['utilization']:.1f} %, weights "
              f"{100 * rows[-1]['weight_wait_share']:.1f} % (stacked from "
              f"{comp.batch_from})", flush=True)
    return rows


def batch_rtl(seed: int, batch: int = 2) -> dict:
    """A real-shape stacked block on the z020 RTL (Verilator, deterministic memory at the
    default latencies, ``cyclemodel.MemoryTiming()``): a
    per-image 1x1 conv (512 -> 512 on 7x7), then layer4.1's two 3x3 convs (the second with the
    residual) on ``batch`` images stacked (back to back: image-boundary padding); unbatched and
    batched, each bit-exact with golden per image, the cycle model against the RTL cycles."""
    from ilmpq.firmware.sim.simulate import simulate
    cfg = get_config("z020")
    rng = np.random.default_rng(seed)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(512, 7, 7))
    x = b.conv("pre", "input", 512, 1)
    y = b.conv("layer4.1.conv1", x, 512, 3, padding=1)
    model = b.build(b.conv("layer4.1.conv2", y, 512, 3, padding=1, residual=x))
    out = {"model": "pre (1x1, per image) -> layer4.1.conv1 -> layer4.1.conv2 (+pre), "
                    "512 x 7 x 7", "runs": []}
    for bb in (1, batch):
        comp = compile_model(model, cfg, batch=bb,
                             **({"stack_from": "layer4.1.conv1"} if bb > 1 else {}))
        imgs = [rng.integers(0, 256, size=(512, 7, 7)) for _ in range(bb)]
        t0 = time.perf_counter()
        res = simulate(comp, imgs, sim="verilator")
        sim_s = time.perf_counter() - t0
        exact = all(_check_exact(model, q.tensors, im, cfg.numeric) for q, im in zip(res, imgs))
        est = cm.estimate(comp).programs[0]        # the same (default) memory timing
        rtl = res[0].stats["cycles"]
        out["runs"].append({"batch": bb, "rtl_cycles": rtl, "model_cycles": est.cycles,
                            "model_err": (est.cycles - rtl) / rtl, "bit_exact": exact,
                            "rtl_cycles_per_image": rtl / bb, "sim_s": sim_s})
        print(f"batch RTL z020 B={bb}: {rtl:,} cycles ({rtl / bb:,.0f} an image), model "
              f"{100 * (est.cycles - rtl) / rtl:+.2f} %, bit-exact {exact}", flush=True)
    return out


def batch_section(r: dict) -> list[str]:
    """The markdown of the batched runs (:func:`batched`)."""
    if not any(r["results"][k].get("batched") for k in ("z020", "z045")):
        return []
    L = ["## Batching: B images per weight set (`compile_model(batch=B)`)", "",
         "The layers before the weight-bound ones run per image; from the first weight-bound "
         "conv on (fewer output pixels than the beats of one weight set) the B images are "
         "stacked in one tensor, back to back where the heights allow (a conv row reads the "
         "rows outside its own image as padding: `Compute.img_rows`), so every "
         "weight set is loaded once for B images; global average pooling runs per image and "
         "the FC on the B pooled vectors as B pixels (`docs/architecture.md`, *Batching*). "
         "fps = B x clock / cycles of a run; the latency is that of the whole run (the B "
         "images' results are ready together); end-to-end adds the restart gap once per run.",
         "", "| build | B | stacked from | cycles a run | cycles/image | latency ms | fps | "
         "end-to-end fps | utilization | weight waits |",
         "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ("z020", "z045"):
        for q in r["results"][k].get("batched", []):
            L.append(f"| {k} | {q['batch']} | {q['stacked_from'] or '-'} | "
                     f"{q['cycles_per_batch']:,} | {q['cycles_per_image']:,.0f} | "
                     f"{q['latency_ms']:.2f} | {q['fps']:.1f} | {q['e2e_fps']:.1f} | "
                     f"{100 * q['utilization']:.1f} % | {100 * q['weight_wait_share']:.1f} % |")
    v = r.get("batch_rtl")
    if v:
        L += ["", f"Real-shape check on the z020 RTL (Verilator, `--batch-rtl`): {v['model']}.",
              "", "| B | RTL cycles | cycles/image | model vs RTL | bit-exact (every image) |",
              "|---:|---:|---:|---:|---|"]
        for q in v["runs"]:
            L.append(f"| {q['batch']} | {q['rtl_cycles']:,} | {q['rtl_cycles_per_image']:,.0f} "
                     f"| {100 * q['model_err']:+.2f} % | {'yes' if q['bit_exact'] else 'NO'} |")
    return L + [""]


# -- RTL (Verilator) -----------------------------------------------------------------------------

ANCHOR_LAYERS = [
    # name, input shape, builder (the real ResNet-18 layer shapes)
    ("conv1", (3, 224, 224), lambda b: b.conv("conv1", "input", 64, 7, stride=2, padding=3)),
    ("layer1.0.conv1", (64, 56, 56), lambda b: b.conv("layer1.0.conv1", "input", 64, 3,
                                                      padding=1)),
    ("layer2.0.downsample", (64, 56, 56), lambda b: b.conv("layer2.0.downsample", "input", 128,
                                                           1, stride=2, relu=False)),
    ("layer3.1.conv2", (256, 14, 14), lambda b: b.conv("layer3.1.conv2", "input", 256, 3,
                                                       padding=1, residual="input")),
    ("layer4.1.conv2", (512, 7, 7), lambda b: b.conv("layer4.1.conv2", "input", 512, 3,
                                                     padding=1, residual="input")),
    ("fc", (512, 1, 1), lambda b: b.fc("fc", b.flatten("flatten", "input"), 1000)),
]


class _Rtl:
    """One Verilator simulation of a configuration, reused for several programs."""

    def __init__(self, cfg: HWConfig, mem_size: int,
                 memory: cm.MemoryTiming = cm.MemoryTiming()):
        from ilmpq.firmware.driver import Driver
        from ilmpq.firmware.sim.simulate import VerilatorTransport
        from ilmpq.firmware.sim.verilator.build import build_library
        from ilmpq.firmware.sim.verilator.sim import VerilatorSim
        from ilmpq.firmware.board.verilog import accelerator_verilog
        t0 = time.perf_counter()
        text, top = accelerator_verilog(cfg)
        t1 = time.perf_counter()
        built = build_library(text, top)
        self.memory = memory
        self.sim = VerilatorSim(text, top, mem_base=DEFAULT_BASE, mem_size=mem_size,
                                read_latency=memory.read_latency,
                                write_latency=memory.write_latency)
        self.sim.reset()
        self.drv = Driver(VerilatorTransport(self.sim), cfg, timeout_cycles=100_000_000,
                          watchdog_cycles=1_000_000)
        self.setup = {"verilog_s": t1 - t0, "build_s": built.build_seconds,
                      "build_cached": built.cached, "total_s": time.perf_counter() - t0}

    def run(self, comp, image) -> tuple[dict, list]:
        """Run every step of ``comp`` on ``image`` (accelerator programs on the RTL, CPU layers
        with golden's op, as the driver does); return the tensors read back and, per
        accelerator program, ``(step, counters, wall seconds)``."""
        from ilmpq.firmware.compiler import AccelStep
        from ilmpq.firmware.driver import run_sync
        drv = self.drv
        programs = []

        async def go():
            await drv.load(comp)
            # the input and its activation check entries, as the driver writes them
            await drv.write_input(comp, np.asarray(image, np.int64))
            layers = {l.name: l for l in comp.model.layers}
            for step in comp.steps:
                if isinstance(step, AccelStep):
                    t = time.perf_counter()
                    st = await drv.run_program(step.prog_addr, step.n_instr, comp.window,
                                               comp.arena, step.prog_tag)
                    programs.append((step, st, time.perf_counter() - t))
                else:
                    # its output and, when an accelerated layer reads it, its check entries
                    await drv.host_step(comp, layers[step.layer])
            # every tensor, and the stored rows of convs whose STOREs pool vertically
            stored = list(comp.tensors.items()) + [(v, comp.internal[v])
                                                   for v in comp.vpooled.values()]
            return {n: t.from_memory(await drv.t.mem_read(t.addr, t.nbytes))
                    for n, t in stored}

        return run_sync(go()), programs


def _check_exact(model, tensors, image, spec) -> bool:
    """Every layer bit-exact against golden (a conv whose STOREs pool vertically: its stored
    rows against golden's output pooled over rows, ``compare_layers``)."""
    from ilmpq.firmware.cli.simulate import compare_layers
    return compare_layers(model, reference.run(model, image, spec=spec), tensors) is None


def rtl_validation(cfg: HWConfig, seed: int, memory: cm.MemoryTiming = MEMORY,
                   full_model=None, full_comp=None, full_est=None) -> dict:
    """The anchor layers (and with ``full_comp`` the whole network) on ``cfg``'s RTL under
    Verilator with the deterministic memory at ``memory``'s timing, against the model at the
    same timing."""
    anchors = []
    jobs = []
    for i, (name, shape, build) in enumerate(ANCHOR_LAYERS):
        rng = np.random.default_rng(seed + 100 + i)
        b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
        model = b.build(build(b))
        comp = compile_model(model, cfg)
        jobs.append((name, model, comp, rng.integers(0, 256, size=shape)))
    sizes = [c.size for _, _, c, _ in jobs] + ([full_comp.size] if full_comp else [])
    rtl = _Rtl(cfg, max(sizes), memory)
    for name, model, comp, img in jobs:
        tensors, progs = rtl.run(comp, img)
        (_, stats, wall), = progs
        est = cm.estimate(comp, memory=memory)
        pred = est.programs[0].counters
        exact = {k: pred[k] == stats[k] for k in
                 ("pe_busy", "bytes_read", "bytes_written", "instructions")}
        anchors.append({
            "layer": name, "kind": comp.layers[-1].kind,
            "input": list(model.tensors["input"].shape),
            "rtl_cycles": stats["cycles"], "model_cycles": pred["cycles"],
            "error": (pred["cycles"] - stats["cycles"]) / stats["cycles"],
            "counters_exact": all(exact.values()), "bit_exact": _check_exact(
                model, tensors, img, cfg.numeric),
            "rtl_counters": dict(stats.counters), "sim_s": wall,
        })
        print(f"  RTL {cfg.name} {name:22s} RTL {stats['cycles']:>9,} model {pred['cycles']:>9,} "
              f"({anchors[-1]['error']:+.2%}) {wall:.1f} s", flush=True)
    out = {"config": cfg.name, "describe": cfg.describe(), "setup": rtl.setup,
           "memory": {"read_latency": memory.read_latency,
                      "write_latency": memory.write_latency}, "anchors": anchors}
    if full_comp is not None:
        img = np.random.default_rng(seed + 1).integers(0, 256, size=(3, 224, 224))
        t0 = time.perf_counter()
        tensors, per_prog = rtl.run(full_comp, img)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        exact = _check_exact(full_model, tensors, img, cfg.numeric)
        progs = []
        for (step, st, w), mp in zip(per_prog, full_est.programs):
            progs.append({"layers": f"{step.layers[0]} .. {step.layers[-1]}",
                          "rtl_cycles": st["cycles"], "model_cycles": mp.counters["cycles"],
                          "error": (mp.counters["cycles"] - st["cycles"]) / st["cycles"],
                          "counters_exact": all(mp.counters[k] == st[k] for k in (
                              "pe_busy", "bytes_read", "bytes_written", "instructions")),
                          "sim_s": w})
        rtl_cycles = sum(p["rtl_cycles"] for p in progs)
        out["full_network"] = {
            "bit_exact_all_layers": exact, "programs": progs, "rtl_cycles": rtl_cycles,
            "model_cycles": full_est.cycles,
            "error": (full_est.cycles - rtl_cycles) / rtl_cycles,
            "rtl_fps": CLOCK_HZ / rtl_cycles, "sim_wall_s": wall,
            "golden_check_s": time.perf_counter() - t1,
            "wall_with_setup_s": wall + rtl.setup["total_s"],
        }
        print(f"  RTL full network: {rtl_cycles:,} cycles ({CLOCK_HZ / rtl_cycles:.1f} fps), "
              f"model {full_est.cycles:,} ({out['full_network']['error']:+.2%}), bit-exact "
              f"{exact}, {wall:.0f} s", flush=True)
        out["full_network"]["stream"] = rtl_stream(rtl, full_model, full_comp, seed)
    return out


def rtl_stream(rtl, model, comp, seed: int, n: int = 3) -> dict:
    """``n`` different images back to back through the frame slots on the RTL
    (``Driver.infer_stream``): each output against golden, the frame intervals."""
    from ilmpq.firmware.driver import run_sync
    rng = np.random.default_rng(seed + 2)
    imgs = [rng.integers(0, 256, size=(3, 224, 224)) for _ in range(n)]
    t0 = time.perf_counter()
    res = run_sync(rtl.drv.infer_stream(comp, imgs, load=False))
    wall = time.perf_counter() - t0
    exact = [bool(np.array_equal(out, reference.run(model, img, spec=comp.config.numeric)
                                 [model.output])) for img, out in zip(imgs, res.outputs)]
    distinct = len({o.tobytes() for o in res.outputs})
    gaps = [iv - c for iv, c in zip(res.intervals, res.cycles[1:])]
    out = {"frames": n, "slots": len(comp.slots), "outputs_bit_exact": exact,
           "distinct_outputs": distinct, "run_cycles": res.cycles, "intervals": res.intervals,
           "restart_gaps": gaps, "steady_interval": res.intervals[-1],
           "steady_fps": CLOCK_HZ / res.intervals[-1], "sim_wall_s": wall}
    print(f"  RTL stream: {n} frames, intervals {res.intervals} (runs {res.cycles}), outputs "
          f"bit-exact {exact}, {wall:.0f} s", flush=True)
    return out


from ilmpq.golden.random_models import random_layer_case as _random_layer  # noqa: E402


def tiny_sweep(n: int, seed: int) -> dict:
    """``n`` random layer programs on the tiny preset under Verilator: model vs RTL cycles."""
    cfg = get_config("tiny")
    jobs = []
    for i in range(n):
        label, shape, build = _random_layer(np.random.default_rng(seed + 7000 + i))
        rng = np.random.default_rng(seed + i)
        b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
        model = b.build(build(b))
        jobs.append((label, model, compile_model(model, cfg), rng.integers(0, 256, size=shape)))
    rtl = _Rtl(cfg, max(c.size for _, _, c, _ in jobs))
    rows = []
    for label, model, comp, img in jobs:
        tensors, progs = rtl.run(comp, img)
        (_, stats, _), = progs
        pred = cm.estimate(comp).programs[0].counters
        rows.append({"layers": label, "rtl_cycles": stats["cycles"],
                     "model_cycles": pred["cycles"],
                     "error": (pred["cycles"] - stats["cycles"]) / stats["cycles"],
                     "counters_exact": all(pred[k] == stats[k] for k in (
                         "pe_busy", "bytes_read", "bytes_written", "instructions")),
                     "bit_exact": _check_exact(model, tensors, img, cfg.numeric)})
    e = np.array([x["error"] for x in rows])
    print(f"  tiny sweep: {n} programs, error mean {100 * e.mean():+.2f} %, std "
          f"{100 * e.std():.2f} %, worst {100 * np.abs(e).max():.2f} %", flush=True)
    return {"config": "tiny", "n": n, "mean_error": float(e.mean()), "std_error": float(e.std()),
            "worst_abs_error": float(np.abs(e).max()),
            "within_1pct": int((np.abs(e) <= 0.01).sum()),
            "all_counters_exact": all(x["counters_exact"] for x in rows),
            "all_bit_exact": all(x["bit_exact"] for x in rows), "rows": rows}


# -- what-ifs: fixes estimated with the compiler and the model ------------------------------------

def finer_barriers(comp) -> tuple[int, int]:
    """Cycles of the programs as compiled, and with each LOAD_ROWS waiting only for the STOREs
    that wrote the bytes it reads (``wait_stores`` is an absolute count the hardware already
    takes; only the compiler's choice changes). The store unit is in order, so residual reads
    stay behind the STOREs that wrote them."""
    from ilmpq.firmware.compiler import AccelStep
    from ilmpq.hdl.isa import INSTR_BITS, Opcode, decode, encode
    image = bytearray(comp.image)
    ib = INSTR_BITS // 8
    before = after = 0
    cfg = comp.config
    for step in (s for s in comp.steps if isinstance(s, AccelStep)):
        stores = []                                   # byte ranges written, in order
        for i in range(step.n_instr):
            off = step.prog_addr - comp.base + i * ib
            op, f = decode(bytes(image[off:off + ib]))
            if op == Opcode.STORE:
                px = f["vp_pixels"] if f["vpool"] else f["pixels"]   # pooled rows written
                stores.append((f["out_addr"], f["out_addr"] + px * f["out_stride"]))
            elif op == Opcode.LOAD_ROWS:
                lo, hi = f["addr"], f["addr"] + f["beats"] * cfg.beat_bytes
                if f["chunk_beats"]:                  # a strided load: its rows' span
                    rows = f["beats"] // (f["chunk_beats"] * f["chunks"])
                    hi = lo + (rows - 1) * f["row_stride"] + (f["chunks"] - 1) * \
                        f["chunk_stride"] + f["chunk_beats"] * cfg.beat_bytes
                need = max((k + 1 for k, (a, b) in enumerate(stores) if a < hi and lo < b),
                           default=0)
                assert need <= f["wait_stores"]
                image[off:off + ib] = encode(op, **dict(f, wait_stores=need))
        before += cm.estimate_program(cfg, comp.image, comp.base, step.prog_addr,
                                      step.n_instr, memory=MEMORY).cycles
        after += cm.estimate_program(cfg, image, comp.base, step.prog_addr, step.n_instr,
                                     memory=MEMORY).cycles
    return before, after


def _single(cfg, seed, shape, build, input_layout="auto"):
    rng = np.random.default_rng(seed)
    b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=shape)
    model = b.build(build(b))
    return cm.estimate(compile_model(model, cfg, input_layout=input_layout), memory=MEMORY)


def whatifs(cfg: HWConfig, comp, seed: int) -> list[dict]:
    """Estimated savings per image of the fixes docs/performance.md proposes (each alone)."""
    out = []
    before, after = finer_barriers(comp)
    out.append({"fix": "finer layer barriers (compiler only: LOAD_ROWS waits for the STOREs of "
                       "the rows it reads, not for the whole previous layer)",
                "cycles_before": before, "cycles_after": after, "saved": before - after})
    # two images stacked in one pixel tile: 15 x 7 (a zero row between them keeps the 3x3
    # windows apart); per image = half the batch. The three stride-1 7x7 layers only: for the
    # stride-2 ones the stacked input rows do not fit half of the activation buffer.
    b1 = b2 = 0
    for _ in ("layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"):
        b1 += _single(cfg, seed, (512, 7, 7),
                      lambda b: b.conv("a", "input", 512, 3, padding=1)).cycles
        b2 += _single(cfg, seed, (512, 15, 7),
                      lambda b: b.conv("a", "input", 512, 3, padding=1)).cycles / 2
    out.append({"fix": "batch two images in the stride-1 7x7 layers (layer4.0.conv2, "
                       "layer4.1.*: one 15x7 pixel tile for both)",
                "cycles_before": b1, "cycles_after": round(b2), "saved": round(b1 - b2)})
    # stem: the accelerator reads the raw image (conv^ phases through gathering LOAD_ROWS,
    # 48 of 48 input lanes) against a host-prepared space-to-depth by 2 + column fold (12
    # channels, 4x4 stride 1, 48 of 48 input lanes): the same density
    stem = lambda b: b.conv("a", "input", 64, 7, stride=2, padding=3)   # noqa: E731
    s0 = _single(cfg, seed, (3, 224, 224), stem).cycles
    s1 = _single(cfg, seed, (3, 224, 224), stem, input_layout="host").cycles
    out.append({"fix": "the host prepares the stem's input (space-to-depth by 2 and column "
                       "fold, 4x4 stride 1 on 48 lanes) instead of the accelerator's gathering "
                       "loads building the same layout from the raw image (implemented: what "
                       "the host layout would still save, with host work every frame)",
                "cycles_before": s0, "cycles_after": s1, "saved": s0 - s1})
    # 1x1 stride-2 projections: load only the pixels they use (a quarter of the input)
    d0 = d1 = 0
    for c, hw, m in ((64, 56, 128), (128, 28, 256), (256, 14, 512)):
        d0 += _single(cfg, seed, (c, hw, hw),
                      lambda b: b.conv("a", "input", m, 1, stride=2, relu=False)).cycles
        d1 += _single(cfg, seed, (c, hw // 2, hw // 2),
                      lambda b: b.conv("a", "input", m, 1, relu=False)).cycles
    # (the default, checked programs load whole rows: a check entry covers a whole row, which
    # a strided load would read only a part of; compile_model(act_check=False) uses them)
    out.append({"fix": "1x1 stride-2 downsample layers load only the pixels they use "
                       "(strided LOAD_ROWS: implemented, used by programs compiled without "
                       "activation checks, act_check=False; the checked default loads whole "
                       "rows)",
                "cycles_before": d0, "cycles_after": d1, "saved": d0 - d1})
    return out


# -- report --------------------------------------------------------------------------------------

CAUSE_COLORS = {"compute": "#2b7bba", "padding": "#9ecae1", "reload": "#c6dbef",
                "weights": "#e6550d", "store": "#fdae6b", "act": "#31a354", "pooling": "#756bb1",
                "drain": "#a1d99b", "other": "#bdbdbd"}


def plot(results: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    z, b = results["z020"], results["base8_z020"]
    rows = [r for r in z["layers"] if r["where"] == "accel"]
    brow = {r["layer"]: r for r in b["layers"] if r["where"] == "accel"}
    names = [r["layer"] for r in rows]
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 8.5), sharex=True,
                                   gridspec_kw={"height_ratios": [1, 1.3]})
    ax1.bar(x - 0.2, [100 * r["utilization"] for r in rows], 0.4,
            label=f"ILMPQ z020 ({z['config']['macs_per_cycle']} MAC/cycle)", color="#2b7bba")
    # a layer the baseline geometry runs on the host (e.g. a pooling its lanes do not fit): 0
    ax1.bar(x + 0.2, [100 * brow[n]["utilization"] if n in brow else 0.0 for n in names], 0.4,
            label=f"fixed-point 8-bit baseline ({b['config']['macs_per_cycle']} MAC/cycle)",
            color="#bdbdbd")
    ax1.set_ylabel("PE utilization (%)")
    ax1.set_ylim(0, 105)
    ax1.axhline(100 * z["utilization"], color="#2b7bba", ls="--", lw=1)
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"ResNet-18 224x224 on z020 @ 100 MHz (cycle model, RTL-validated): "
                  f"{z['fps']:.1f} fps, {100 * z['utilization']:.1f} % utilization; baseline "
                  f"{b['fps']:.1f} fps", fontsize=10)
    bottom = np.zeros(len(rows))
    for cause in cm.CAUSES:
        vals = np.array([r["breakdown"][cause] / 1e3 for r in rows])
        ax2.bar(x, vals, 0.7, bottom=bottom, label=cause, color=CAUSE_COLORS[cause])
        bottom += vals
    ax2.set_ylabel("cycles (thousands), ILMPQ z020")
    ax2.legend(ncol=4, fontsize=8, loc="upper center")
    ax2.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: The builds of the tables: each preset, its DSP-only and its same-LUT-budget baseline.
BUILDS = ("z020", "base8_z020", "lut8_z020", "z045", "base8_z045", "lut8_z045")


def anchor_table(v: dict) -> list[str]:
    """The anchor layers of one :func:`rtl_validation`."""
    L = ["| layer | input | RTL cycles | model cycles | error | counters exact | "
         "bit-exact | sim s |", "|---|---|---:|---:|---:|---|---|---:|"]
    for a in v["anchors"]:
        L.append(f"| {a['layer']} | {'x'.join(map(str, a['input']))} | "
                 f"{a['rtl_cycles']:,} | {a['model_cycles']:,} | {100 * a['error']:+.2f} % "
                 f"| {a['counters_exact']} | {a['bit_exact']} | {a['sim_s']:.1f} |")
    return L


def _fmt(v, spec=",.0f"):
    return "-" if v is None else format(v, spec)


def markdown(r: dict) -> str:
    z, z45 = r["results"]["z020"], r["results"]["z045"]
    builds = [k for k in BUILDS if k in r["results"]]
    gap_src = ("measured on the z020 RTL" if "restart_gap_cycles" in r["params"]
               else "an estimate")
    L = ["# ResNet-18 on the accelerator: cycles, utilization, frame rate", "",
         f"ResNet-18 224x224, random weights (seed {r['params']['seed']}), real layer shapes; "
         f"`bench/resnet18.py`, {r['date']}, commit {r['git']['commit'][:10]}"
         f"{' (+ uncommitted changes)' if r['git']['dirty'] else ''}. Cycles from the cycle "
         f"model (`ilmpq.firmware.cyclemodel`), validated against the "
         f"{'z020 and z045' if r.get('rtl_z045') else 'z020'} RTL below, "
         f"at {CLOCK_HZ / 1e6:.0f} MHz, with the memory of a Zynq HP port to PS DDR3: read "
         f"latency {r['params']['memory']['read_latency']} cycles, write latency "
         f"{r['params']['memory']['write_latency']} (`MemoryTiming.zynq_hp()`, "
         f"`docs/memory_model.md`; the frame rate at other read latencies is listed beside "
         f"it). The whole network, max pooling and global average pooling "
         f"included, is **one accelerator program per frame**. End-to-end frames/s count "
         f"everything that runs per frame: the accelerator's program, the restart gap between "
         f"back-to-back frames ({r['params'].get('restart_gap_cycles', RESTART_GAP_CYCLES)} "
         f"cycles, {gap_src}) and the host's "
         f"share (laying out the input image, on this x86 machine; with the compiler's frame "
         f"slots it overlaps the previous frame's run).", "",
         "## End to end", "",
         "| build | HP ports | programs/frame | layers on the host | host ms/frame "
         "(overlapped) | **end-to-end fps** | accelerator-only fps | "
         + " | ".join(f"fps at RL {rl}" for rl in r["params"]["latencies"]) + " |",
         "|---|---:|---:|---|---:|---:|---:|" + "---:|" * len(r["params"]["latencies"])]
    for key in builds:
        x = r["results"][key]
        L.append(f"| {key} | {x['config']['axi_ports']} | {x['programs_per_frame']} | "
                 f"{', '.join(x['host_layers']) or 'none'} | {x['host_ms']:.2f} "
                 f"({'yes' if x['host_overlapped'] else 'no'}) | **{x['e2e_fps']:.1f}** | "
                 f"{x['fps']:.1f} | "
                 + (" | ".join(f"{q['fps']:.1f}" for q in x["latency_sweep"]) if
                    "latency_sweep" in x else " | ".join("-" for _ in r["params"]["latencies"]))
                 + " |")
    hosted = [k for k in builds if r["results"][k]["host_layers"]]
    laid = [k for k in builds if r["results"][k]["host_ms"] > 0]
    L += ["", ("Host share: none. The host writes the raw image's bytes (HWC, exactly the "
               "image) into the frame slot, starts and reads the 1000 logits; the accelerator "
               "reads the raw bytes itself (the stem conv in phases on them, `conv^`, "
               "`docs/architecture.md`). " if not laid else
               f"Host share ({', '.join(laid)}): the input image laid out in the input "
               "tensor's placement (HWC, channel padding and the stem's space-to-depth and "
               "column fold, `TensorPlacement.to_memory`); the host then writes it, starts "
               "and reads the 1000 logits. ") + ("No layer runs on the host." if not hosted else
                        f"Layers run on the host only in {', '.join(hosted)} (the compile "
                        f"report gives the reason); their own host time is not included in "
                        f"its end-to-end figure, which is therefore an upper bound."), "",
          "## Summary (accelerator only)", "",
         "| build | MAC/cycle | DSP48E1 | cycles/image | ms | fps | utilization | GOPS | "
         "DMA read MB/s | DMA write MB/s |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in builds:
        x = r["results"][key]
        c = x["config"]
        L.append(f"| {key} | {c['macs_per_cycle']} | {c['dsp48e1']} of {c['device_dsp48e1']} "
                 f"| {x['cycles']:,} | {x['ms']:.2f} | {x['fps']:.1f} | "
                 f"{100 * x['utilization']:.1f} % | {x['gops']:.0f} | {x['read_mbps']:.0f} | "
                 f"{x['write_mbps']:.0f} |")
    L += ["", "Fixed-point baseline candidates (same architecture, uniform 8-bit weights, one MAC "
          "per DSP48E1; the fastest is kept as `base8_*`):", "",
          "| device | geometry | 8-bit MAC/cycle | DSP48E1 | cycles/image | fps | utilization |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for dev, cands in r["baseline_candidates"].items():
        for x in cands:
            L.append(f"| {dev} | {x['lanes_hi']} lanes x tn {x['tn']} (+1 idle 4-bit lane) | "
                     f"{x['macs_per_cycle']} | {x['dsp48e1']} | {x['cycles']:,} | "
                     f"{x['fps']:.1f} | {100 * x['utilization']:.1f} % |")
    L += ["", "Same-LUT-budget fixed-point candidates (uniform 8-bit weights; the DSP-only "
          "baseline's DSP48E1 MACs plus 8-bit MACs in LUTs paid by the LUTs of the ILMPQ PE "
          "array, `bench/results/resources.json`: "
          + "; ".join(f"{d}: {b['ilmpq_pe_lut']:,} PE-array LUTs ({b.get('source', 'yosys')}), "
                      f"{b['dsp_mac_lut']:g} LUTs around a DSP MAC, {b['lut_mac_lut']:g} LUTs "
                      f"per LUT MAC"
                      for d, b in r.get("lut_budget", {}).items())
          + "; the fastest is kept as `lut8_*`):", "",
          "| device | geometry | 8-bit MAC/cycle (DSP + LUT) | DSP48E1 | PE-array LUT est. | "
          "cycles/image | fps | utilization |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for dev, cands in r.get("lut_baseline_candidates", {}).items():
        for x in cands:
            L.append(f"| {dev} | {x['lanes_hi']} lanes x tn {x['tn']} | {x['macs_per_cycle']} "
                     f"({x['macs_per_cycle'] - x['lut_macs']} + {x['lut_macs']}) | "
                     f"{x['dsp48e1']} | {x['pe_lut_est']:,} | {x['cycles']:,} | "
                     f"{x['fps']:.1f} | {100 * x['utilization']:.1f} % |")
    L += ["", f"Speedup over the fixed-point baselines on the same device (cycles per image): "
          f"DSP-only **z020 {r['speedup']['z020']:.2f}x**, **z045 {r['speedup']['z045']:.2f}x**; "
          "same LUT budget " + (", ".join(f"**{n} {v:.2f}x**" for n, v in
                                          r.get("speedup_lut", {}).items()) or "not modelled")
          + ".", "",
          "## DDR bandwidth", "",
          f"All HP ports share the PS DDR controller. Needed = the DMA's read + write bytes per "
          f"image at the frame rate (average over the frame, and the busiest layer's rate); "
          f"usable = peak x {DDR_EFFICIENCY:.0%} (the controller's maximum efficiency, UG585 "
          f"22.3.2). One 64-bit HP port carries {PORT_MBPS:.0f} MB/s per direction at 100 MHz.",
          "", "| build | board DDR | peak MB/s | usable MB/s | read MB/s | write MB/s | "
          "read + write MB/s | busiest layer (read + write MB/s) | fits |",
          "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for key in builds:
        x = r["results"][key]
        d = x["ddr"]
        L.append(f"| {key} | {d['board']}: DDR3 x{d['bus_bits']} at {d['mtps']} MT/s | "
                 f"{d['peak_mbps']:,.0f} | {d['usable_mbps']:,.0f} | {x['read_mbps']:.0f} | "
                 f"{x['write_mbps']:.0f} | {x['ddr_mbps']:.0f} | {x['ddr_busiest_layer']} "
                 f"({x['ddr_busiest_layer_mbps']:.0f}) | "
                 f"{'yes' if x['ddr_busiest_layer_mbps'] <= d['usable_mbps'] else 'no'} |")
    L += ["", "Sources: " + "; ".join(f"{k}: {v['source']}" for k, v in BOARD_DDR.items())
          + ".", "",
          "Paper family on XC7Z020 at 100 MHz (as the MSQ and FILM-QNN papers report them): " + "; ".join(
              f"{k} {v['fps']} fps ({v['gops']} GOPS, {v['dsp']} DSP)"
              for k, v in ANCHORS.items()) + ".", ""]
    # RTL validation
    if r.get("rtl"):
        v = r["rtl"]
        mem = v.get("memory", {"read_latency": 8, "write_latency": 4})
        L += [f"## Model vs RTL (z020, Verilator, deterministic memory at RL "
              f"{mem['read_latency']} / WL {mem['write_latency']})", "",
              "Single-layer programs with the real shapes; outputs bit-exact against golden and "
              "the byte/beat/instruction counters exact in every row.", ""] + anchor_table(v)
        t = r.get("tiny_sweep")
        if t:
            src = t.get("from_run")
            L += ["", (f"(From the run of {src['date']}, commit {src['commit'][:10]}: the tiny "
                       f"sweep was not repeated.) " if src else "") +
                  f"**Random layer programs on the `tiny` RTL** (Verilator; conv 1x1/3x3/5x5, "
                  f"strides 1/2, residual pairs, FC, two-layer programs): {t['n']} programs, "
                  f"model error mean {100 * t['mean_error']:+.2f} %, std "
                  f"{100 * t['std_error']:.2f} %, worst {100 * t['worst_abs_error']:.2f} %, "
                  f"{t['within_1pct']} of {t['n']} within 1 %; counters exact: "
                  f"{t['all_counters_exact']}; outputs bit-exact: {t['all_bit_exact']}."]
        fn = v.get("full_network")
        if fn:
            src = fn.get("from_run")
            L += ["", (f"(From the run of {src['date']}, commit {src['commit'][:10]}, memory at "
                       f"RL {src['memory']['read_latency']} / WL {src['memory']['write_latency']}"
                       f": the whole network was not rerun.) " if src else "") +
                  f"**Whole network through the RTL**: every layer bit-exact: "
                  f"{fn['bit_exact_all_layers']}; {fn['rtl_cycles']:,} RTL cycles = "
                  f"{fn['rtl_fps']:.1f} fps; model {fn['model_cycles']:,} "
                  f"({100 * fn['error']:+.2f} %); simulation {fn['sim_wall_s']:.0f} s wall "
                  f"({fn['wall_with_setup_s']:.0f} s with the Verilog generation and the "
                  f"{'cached' if v['setup']['build_cached'] else 'fresh'} Verilator build).", "",
                  "| program | RTL cycles | model cycles | error | counters exact | sim s |",
                  "|---|---:|---:|---:|---|---:|"]
            for p in fn["programs"]:
                L.append(f"| {p['layers']} | {p['rtl_cycles']:,} | {p['model_cycles']:,} | "
                         f"{100 * p['error']:+.2f} % | {p['counters_exact']} | "
                         f"{p['sim_s']:.0f} |")
            st = fn.get("stream")
            if st:
                L += ["", f"**Frames back to back on the RTL** (`Driver.infer_stream`, "
                      f"{st['slots']} frame slots): {st['frames']} different images, outputs "
                      f"bit-exact {st['outputs_bit_exact']} ({st['distinct_outputs']} distinct); "
                      f"run cycles {', '.join(f'{c:,}' for c in st['run_cycles'])}; frame "
                      f"intervals {', '.join(f'{c:,}' for c in st['intervals'])} cycles "
                      f"(restart gaps {st['restart_gaps']}): steady state "
                      f"**{st['steady_fps']:.1f} fps** at {CLOCK_HZ / 1e6:.0f} MHz "
                      f"({st['sim_wall_s']:.0f} s simulation)."]
        L.append("")
    L += [""] + batch_section(r)
    v45 = r.get("rtl_z045")
    if v45:
        mem = v45["memory"]
        L += [f"## Model vs RTL (z045: {v45['describe']}; Verilator, deterministic memory at "
              f"RL {mem['read_latency']} / WL {mem['write_latency']})", "",
              f"The six anchor layers on the z045 RTL ({v45['setup']['verilog_s']:.0f} s Verilog "
              f"generation, {v45['setup']['build_s']:.0f} s Verilator build"
              f"{' (cached)' if v45['setup']['build_cached'] else ''}).", ""] + anchor_table(v45)
        L.append("")
    for key in ("z020", "z045"):
        x = r["results"][key]
        base = {q["layer"]: q for q in r["results"][f"base8_{key}"]["layers"]}
        L += [f"## Per layer: {key} ({x['config']['describe']})", "",
              "Cycles split by cause (`cyclemodel.CAUSES`): compute = useful MACs at the peak "
              "rate, padding = PE beats on padded lanes/channels, reload = set reloads when a "
              "tile has fewer pixels than a set has words, weights/store/act = the PE array "
              "waiting for a weight package / a drained bank / activation rows, drain = the "
              "layer's last stores before the layer barrier. Read MB/s @PE = what the layer "
              "would need for the PE array never to wait.", "",
              "| layer | out | tiles x mtiles x sets | cycles | util | base util | bound | "
              "compute | padding | reload | weights | store | act | pooling | drain | other | "
              "read MB/s | read MB/s @PE | write MB/s |",
              "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
              "---:|---:|---:|"]

        def base_util(name):
            u = base.get(name, {}).get("utilization")
            return "-" if u is None else f"{100 * u:.0f} %"
        for q in x["layers"]:
            if q["where"] != "accel":
                note = "host CPU" if q["where"] == "cpu" else "free"
                L.append(f"| {q['layer']} | {'x'.join(map(str, q['out_shape']))} | {note} | "
                         + " | ".join(["-"] * 16) + " |")
                continue
            bd = q["breakdown"]
            pe_rate = (f"{q['read_mbps_at_pe_rate']:.0f}" if q["read_mbps_at_pe_rate"]
                       is not None else "-")
            L.append(
                f"| {q['layer']} | {'x'.join(map(str, q['out_shape']))} | {q['ptiles']} x "
                f"{q['mtiles']} x {q['sets_per_mtile']} | {q['cycles']:,} | "
                f"{100 * q['utilization']:.0f} % | {base_util(q['layer'])} | "
                f"{q['bound']} | " + " | ".join(f"{bd.get(c, 0):,}" for c in cm.CAUSES) +
                f" | {q['read_mbps']:.0f} | {pe_rate} | "
                f"{q['write_mbps']:.0f} |")
        L.append("")
    if r.get("whatif"):
        zc = z["cycles"]
        L += ["## What the fixes would buy (z020, estimated with the compiler and the model)", "",
              "Each fix alone, cycles per image; see `docs/performance.md`.", "",
              "| fix | cycles before | cycles after | saved | fps if only this fix |",
              "|---|---:|---:|---:|---:|"]
        for w in r["whatif"]:
            L.append(f"| {w['fix']} | {w['cycles_before']:,} | {w['cycles_after']:,} | "
                     f"{w['saved']:,} | {CLOCK_HZ / (zc - w['saved']):.1f} |")
        tot = sum(w["saved"] for w in r["whatif"])
        L += ["", f"All four together (savings added, an estimate): {zc - tot:,} cycles = "
              f"**{CLOCK_HZ / (zc - tot):.1f} fps**, utilization "
              f"{100 * z['macs'] / ((zc - tot) * z['config']['macs_per_cycle']):.1f} %.", ""]
    cpu = [q for q in z["layers"] if q["where"] == "cpu"]
    if cpu:
        L += ["## Layers on the host CPU", "",
              "| layer | output | bytes in | bytes out |", "|---|---|---:|---:|"]
        for q in cpu:
            L.append(f"| {q['layer']} | {'x'.join(map(str, q['out_shape']))} | "
                     f"{q['bytes_in']:,} | {q['bytes_out']:,} |")
        L.append("")
    L += [f"Golden (x86 NumPy) times for reference: `bench/results/golden_resnet18.md`.", "",
          "## Targets (issue 15)", "", "| preset | metric | target | measured | met |",
          "|---|---|---|---|---|"]
    for t in r["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        L.append(f"| {t['preset']} | {t['metric']} | {t['target']} | {t['measured']} | "
                 f"{met} |")
    L += ["", "![per-layer utilization and cycles](resnet18.png)", ""]
    return "\n".join(L)


def apply_measured_gap(r: dict):
    """Recompute the end-to-end frame rates with the restart gap measured on the z020 RTL
    (``rtl.full_network.stream``) when there is one (else :data:`RESTART_GAP_CYCLES` stays)."""
    st = ((r.get("rtl") or {}).get("full_network") or {}).get("stream")
    if not st:
        return
    gap = max(st["restart_gaps"])
    r["params"]["restart_gap_cycles"] = gap
    for x in r["results"].values():
        if x.get("host_overlapped"):
            x["e2e_ms"] = max(x["ms"] + 1e3 * gap / CLOCK_HZ, x["host_ms"])
            x["e2e_fps"] = 1e3 / x["e2e_ms"]


#: The targets of issue 15 per preset (end to end, at the realistic HP latency).
TARGETS = {"z020": {"fps": 48, "utilization": 0.85, "speedup": 4},
           "z045": {"fps": 150, "utilization": 0.70, "speedup": 4}}


def targets(r: dict) -> list:
    z = r["results"]["z020"]
    out = [{"preset": "z020",
            "metric": "ResNet-18 z020 end-to-end fps at 100 MHz (one program per frame, host "
                      "share stated; issue 14)",
            "target": ">= 41.6 (the accelerator-only figure before pooling and the stem input "
                      "moved to the accelerator)",
            "measured": f"{z['e2e_fps']:.1f} (accelerator only {z['fps']:.1f}; host "
                        f"{z['host_ms']:.2f} ms/frame)",
            "met": z["e2e_fps"] >= 41.6}]
    res = (json.loads(RESOURCES_JSON.read_text()).get("presets", {})
           if RESOURCES_JSON.exists() else {})
    rl = r["params"]["memory"]["read_latency"]
    for n in ("z020", "z045"):
        x, t = r["results"][n], TARGETS[n]
        sweep = " / ".join(f"{q['fps']:.1f}" for q in x["latency_sweep"])
        rls = " / ".join(str(q["read_latency"]) for q in x["latency_sweep"])
        d = x["ddr"]
        # batching (compile_model(batch=B)) is one of the levers: the best batch is
        # stated beside batch 1, and a target counts as met by either
        bb = max(x.get("batched") or [], key=lambda q: q["e2e_fps"], default=None)
        b_fps = (f"; batch {bb['batch']}: {bb['e2e_fps']:.1f} (latency {bb['latency_ms']:.1f} "
                 f"ms a run)" if bb else "")
        b_util = (f"; batch {bb['batch']}: {100 * bb['utilization']:.1f} %" if bb else "")
        best_fps = max(x["e2e_fps"], bb["e2e_fps"] if bb else 0)
        best_util = max(x["utilization"], bb["utilization"] if bb else 0)
        out += [
            {"preset": n, "metric": f"ResNet-18 224x224 frames/s at 100 MHz, end to end, read "
                                    f"latency {rl}", "target": f">= {t['fps']}",
             "measured": f"{x['e2e_fps']:.1f} (accelerator only {x['fps']:.1f}; at RL {rls}: "
                         f"{sweep}){b_fps}", "met": best_fps >= t["fps"]},
            {"preset": n, "metric": "PE utilization (useful / peak MACs)",
             "target": f">= {100 * t['utilization']:.0f} %",
             "measured": f"{100 * x['utilization']:.1f} %{b_util}",
             "met": best_util >= t["utilization"]},
            {"preset": n, "metric": "speedup vs DSP-only fixed point, same device",
             "target": f">= {t['speedup']}x", "measured": f"{r['speedup'][n]:.2f}x",
             "met": r["speedup"][n] >= t["speedup"]},
            {"preset": n, "metric": "speedup vs same-LUT-budget fixed point, same device",
             "target": "report", "measured": (
                 f"{r['speedup_lut'][n]:.2f}x ({r['results'][f'lut8_{n}']['fps']:.1f} fps)"
                 if n in r.get("speedup_lut", {}) else "not modelled"), "met": None},
            {"preset": n, "metric": "DDR read + write bandwidth needed",
             "target": f"<= {d['usable_mbps']:,.0f} MB/s ({d['board']} PS DDR3, "
                       f"{DDR_EFFICIENCY:.0%} of {d['peak_mbps']:,.0f})",
             "measured": f"{x['ddr_mbps']:.0f} MB/s average, {x['ddr_busiest_layer_mbps']:.0f} "
                         f"in the busiest layer ({x['ddr_busiest_layer']})",
             "met": x["ddr_busiest_layer_mbps"] <= d["usable_mbps"]},
        ]
        e = res.get(n)
        if e and e.get("config") == get_config(n).describe():
            u = e["total"]["utilization"]
            out.append({"preset": n, "metric": "fits the device (yosys synth_xilinx, "
                                               "bench/resources.py)",
                        "target": "DSP <= 100 %, LUT <= 80 %, BRAM <= 90 %",
                        "measured": f"LUT {u['lut']:.1f} %, DSP {u['dsp']:.1f} %, BRAM36 "
                                    f"{u['bram36']:.1f} %",
                        "met": u["dsp"] <= 100 and u["lut"] <= 80 and u["bram36"] <= 90})
        else:
            geo = ROOT / "bench" / "results" / "geometry.json"
            row = next((x for x in (json.loads(geo.read_text())["rows"] if geo.exists()
                                    else []) if x["preset"]
                        and x["describe"] == get_config(n).describe()), None)
            from ilmpq.firmware.board.resources import DEVICES
            dev_lut = DEVICES[{"z020": "xc7z020", "z045": "xc7z045"}[n]].lut
            out.append({"preset": n, "metric": "fits the device (yosys synth_xilinx, "
                                               "bench/resources.py)",
                        "target": "DSP <= 100 %, LUT <= 80 %, BRAM <= 90 %",
                        "measured": "not synthesized for this geometry yet" + (
                            f"; PE array + post-processing {row['dsp48e1']} DSP48E1 of "
                            f"{DEVICE_DSP[n]} ({100 * row['dsp48e1'] / DEVICE_DSP[n]:.0f} %, "
                            f"exact), PE-array LUTs estimated {row['pe_lut_est']:,} "
                            f"({100 * row['pe_lut_est'] / dev_lut:.0f} % of the device; "
                            f"bench/geometry.py)" if row else ""), "met": None})
    for key, n in (("rtl", "z020"), ("rtl_z045", "z045")):
        v = r.get(key)
        if v:
            worst = max(abs(a["error"]) for a in v["anchors"])
            exact = all(a["bit_exact"] and a["counters_exact"] for a in v["anchors"])
            out.append({"preset": n, "metric": f"cycle model vs RTL per layer (anchors, RL "
                                               f"{v['memory']['read_latency']})",
                        "target": "<= 2 %, bit-exact",
                        "measured": f"worst {100 * worst:.2f} % over {len(v['anchors'])} "
                                    f"layers, bit-exact and counters exact {exact}",
                        "met": worst <= 0.02 and exact})
    v = r.get("rtl")
    fn = (v or {}).get("full_network")
    if fn:
        out.append({"preset": "z020", "metric": "full ResNet-18 through the RTL (Verilator), "
                                                "bit-exact, model within 2 %",
                    "target": "< 5 min simulation", "measured":
                    f"{fn['sim_wall_s']:.0f} s simulation ({fn['wall_with_setup_s']:.0f} s "
                    f"with Verilog generation and build), bit-exact "
                    f"{fn['bit_exact_all_layers']}, model {100 * fn['error']:+.2f} %"
                    + (f" (run of {fn['from_run']['date'][:10]} at RL "
                       f"{fn['from_run']['memory']['read_latency']}, not repeated)"
                       if fn.get("from_run") else ""),
                    "met": fn["bit_exact_all_layers"] and fn["sim_wall_s"] < 300
                    and abs(fn["error"]) <= 0.02})
        st = fn.get("stream")
        if st:
            out.append({"preset": "z020", "metric": "frames back to back on the RTL, each its "
                                                    "own result",
                        "target": ">= 3 frames, bit-exact",
                        "measured": f"{st['frames']} frames, bit-exact "
                                    f"{all(st['outputs_bit_exact'])}, steady interval "
                                    f"{st['steady_interval']:,} cycles",
                        "met": st["frames"] >= 3 and all(st["outputs_bit_exact"])})
    return out


def carry_over_full_network(r: dict, old: dict):
    """Without ``--full-rtl``: keep the earlier whole-network RTL run (and its measured restart
    gap), labelled with the run it comes from and the memory timing it used."""
    fn = ((old.get("rtl") or {}).get("full_network"))
    if not fn or "rtl" not in r:
        return
    src = fn.get("from_run") or {"date": old["date"], "commit": old["git"]["commit"],
                                 "memory": (old["rtl"].get("memory")
                                            or old["params"]["memory"])}
    r["rtl"]["full_network"] = dict(fn, from_run=src)


def keep_best(r: dict, kind: str, name: str, cands: list, sweep: bool = False):
    """Keep the fastest of ``cands`` (``(res, comp, est, cfg)``) as ``r["results"][kind_name]``
    with its latency sweep and DDR budget; list them all in ``r[...candidates]``."""
    for res, _, _, c in cands:
        print(f"{c.name:22s} {res['cycles']:>10,} cycles {res['fps']:6.1f} fps "
              f"util {100 * res['utilization']:5.1f} %", flush=True)
    best, bcomp, _, bcfg = min(cands, key=lambda x: x[0]["cycles"])
    if sweep:
        best["latency_sweep"] = latency_sweep(bcomp, bcfg)
    best["ddr"] = ddr_budget(name)
    r["results"][f"{kind}_{name}"] = best
    key = "baseline_candidates" if kind == "base8" else "lut_baseline_candidates"
    r.setdefault(key, {})[name] = [
        {"name": x["label"], "macs_per_cycle": x["config"]["macs_per_cycle"],
         "lanes_hi": x["config"]["lanes_hi"], "tn": x["config"]["tn"],
         "dsp48e1": x["config"]["dsp48e1"], "lut_macs": x["config"].get("lut_macs", 0),
         "pe_lut_est": x["config"].get("pe_lut_est"), "cycles": x["cycles"],
         "fps": x["fps"], "utilization": x["utilization"]} for x, _, _, _ in cands]
    sp = "speedup" if kind == "base8" else "speedup_lut"
    r.setdefault(sp, {})[name] = best["cycles"] / r["results"][name]["cycles"]


def add_lut_baseline(r: dict, name: str, base_model) -> bool:
    """Model the same-LUT-budget baseline of preset ``name`` into ``r`` (False, with a note,
    when ``bench/results/resources.json`` does not hold the preset's LUTs yet)."""
    cfg = get_config(name)
    try:
        budget = lut_budget(cfg)
    except SystemExit as e:
        print(f"same-LUT-budget baseline of {name} skipped: {e}", flush=True)
        return False
    r.setdefault("lut_budget", {})[name] = budget
    cands = []
    for c, extra in lut_baseline_configs(cfg, budget):
        res, comp, est = model_network(c, base_model, c.name)
        res["config"].update(extra)
        cands.append((res, comp, est, c))
    keep_best(r, "lut8", name, cands)
    return True


def _git() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hdl", "firmware",
                                "golden"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty), "dirty_files": dirty.splitlines()}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None, "dirty_files": []}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-rtl", action="store_true", help="skip the Verilator anchors")
    ap.add_argument("--full-rtl", action="store_true",
                    help="also run the whole network through the z020 RTL")
    ap.add_argument("--no-z045-rtl", action="store_true",
                    help="skip the six anchor layers on the z045 RTL")
    ap.add_argument("--tiny-sweep", type=int, default=100, metavar="N",
                    help="random layer programs on the tiny RTL (0: none)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--no-lut-baselines", action="store_true",
                    help="skip the same-LUT-budget baselines (model them later with "
                         "--lut-baselines)")
    ap.add_argument("--lut-baselines", action="store_true",
                    help="only (re)model the same-LUT-budget baselines into the existing JSON "
                         "(after bench/resources.py has the presets' LUTs), then rewrite the "
                         "report")
    ap.add_argument("--batch", default=f"2,4,8,{MAX_BATCH}", metavar="B,B,...",
                    help="also model the network compiled for B images per run "
                         "(compile_model(batch=B)), each B on both presets ('': none)")
    ap.add_argument("--batch-rtl", action="store_true",
                    help="also run a stacked real-shape layer4 block (B = 2) through the z020 "
                         "RTL (Verilator)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown, targets and plot from the existing JSON")
    args = ap.parse_args(argv)
    if args.lut_baselines:
        r = json.loads((args.out / "resnet18.json").read_text())
        base_model = resnet18_qmodel(np.random.default_rng(r["params"]["seed"]),
                                     spec=get_config("z020").numeric, ratio=Fraction(1))
        for name in ("z020", "z045"):
            add_lut_baseline(r, name, base_model)
        args.report_only = True
        (args.out / "resnet18.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    if args.report_only:
        r = json.loads((args.out / "resnet18.json").read_text())
        apply_measured_gap(r)
        r["targets"] = targets(r)
        (args.out / "resnet18.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
        plot(r["results"], args.out / "resnet18.png")
        (args.out / "resnet18.md").write_text(markdown(r))
        return 0

    r = {"benchmark": "resnet18", "date": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), "git": _git(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        "params": {"seed": args.seed, "input": [3, 224, 224], "clock_hz": CLOCK_HZ,
                   "port_mbps": PORT_MBPS, "memory": {"read_latency": MEMORY.read_latency,
                                                      "write_latency": MEMORY.write_latency},
                   "latencies": list(LATENCIES)},
        "anchors": ANCHORS, "results": {}}
    kept = {}
    t0 = time.perf_counter()
    ilmpq_model = resnet18_qmodel(np.random.default_rng(args.seed), spec=get_config("z020")
                                  .numeric, ratio=Fraction(1, 8))
    base_model = resnet18_qmodel(np.random.default_rng(args.seed), spec=get_config("z020")
                                 .numeric, ratio=Fraction(1))
    r["params"]["model_build_s"] = time.perf_counter() - t0
    for name in ("z020", "z045"):
        cfg = get_config(name)
        assert cfg.ratio == Fraction(1, 8)
        res, comp, est = model_network(cfg, ilmpq_model, name)
        res["latency_sweep"] = latency_sweep(comp, cfg)
        res["ddr"] = ddr_budget(name)
        batches = [int(b) for b in args.batch.split(",") if b.strip() and int(b) > 1]
        if batches:
            res["batched"] = batched(cfg, ilmpq_model, batches, res, est)
        r["results"][name] = res
        kept[name] = (ilmpq_model, comp, est)
        print(f"{name:22s} {res['cycles']:>10,} cycles {res['fps']:6.1f} fps "
              f"util {100 * res['utilization']:5.1f} % (model {res['model_s']:.1f} s)", flush=True)
        cands = [model_network(c, base_model, c.name) + (c,) for c in baseline_configs(cfg)]
        keep_best(r, "base8", name, cands)
        if not args.no_lut_baselines:
            add_lut_baseline(r, name, base_model)
    t0 = time.perf_counter()
    r["whatif"] = whatifs(get_config("z020"), kept["z020"][1], args.seed)
    for w in r["whatif"]:
        print(f"what-if: {w['saved']:>9,} cycles saved: {w['fix']}", flush=True)
    r["whatif_s"] = time.perf_counter() - t0
    if not args.no_rtl:
        model, comp, est = kept["z020"]
        r["rtl"] = rtl_validation(get_config("z020"), args.seed, MEMORY,
                                  *((model, comp, est) if args.full_rtl else ()))
        if not args.no_z045_rtl:
            r["rtl_z045"] = rtl_validation(get_config("z045"), args.seed, MEMORY)
    if args.batch_rtl:
        r["batch_rtl"] = batch_rtl(args.seed)
    if not args.no_rtl and args.tiny_sweep:
        r["tiny_sweep"] = tiny_sweep(args.tiny_sweep, args.seed)
    # what this run did not repeat is kept from the earlier run, saying which run it is
    old = (json.loads((args.out / "resnet18.json").read_text())
           if (args.out / "resnet18.json").exists() else {})
    if not args.full_rtl:
        carry_over_full_network(r, old)
    if "tiny_sweep" not in r and old.get("tiny_sweep"):
        r["tiny_sweep"] = dict(old["tiny_sweep"], from_run=old["tiny_sweep"].get("from_run")
                               or {"date": old["date"], "commit": old["git"]["commit"]})
    apply_measured_gap(r)
    args.out.mkdir(parents=True, exist_ok=True)
    # the measurements first (a report error can then be fixed with --report-only)
    (args.out / "resnet18.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    r["targets"] = targets(r)
    (args.out / "resnet18.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    plot(r["results"], args.out / "resnet18.png")
    md = markdown(r)
    (args.out / "resnet18.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
