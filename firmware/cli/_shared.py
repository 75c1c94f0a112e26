"""What several commands share: the hardware configuration a quantized model records, the
``--config`` default of the commands that take a model, and mismatch errors that name it.

``ilmpq quantize`` (and ``ilmpq run``) record the configuration a model was quantized for in
``QModel.meta["hw_config"]`` (:func:`record_config`), a versioned JSON object::

    {"version": 1, "name": "z020", "config_id": 2477969983, "ratio": "1/8", "act_bits": 8}

(``name`` and ``config_id`` are ``null`` for ``--ratio`` without a configuration). Models
written before the field existed carry none; everything here treats that as "unknown".
``compile``, ``simulate`` and ``board run`` default ``--config`` to the recorded configuration
(:func:`model_config`) and put it into every error of the compiler (:func:`compile_checked`).
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from ...golden.errors import IlmpqValueError
from ...hdl.config import PRESETS, HWConfig, get_config

__all__ = ["HW_CONFIG_KEY", "HW_CONFIG_VERSION", "record_config", "recorded_config",
           "model_config", "compile_checked", "describe_record", "run_figures"]

#: Key of the configuration record in ``QModel.meta``.
HW_CONFIG_KEY = "hw_config"
#: Version of the record's layout.
HW_CONFIG_VERSION = 1


def record_config(meta: dict, cfg: HWConfig | None, ratio, act_bits: int) -> dict:
    """Store the configuration record in a model's ``meta`` dict and return it."""
    if cfg is not None and cfg.act_bits != act_bits:
        cfg = cfg.replace(act_bits=int(act_bits))  # the configuration the model really fits
    rec = {"version": HW_CONFIG_VERSION,
           "name": None if cfg is None else cfg.name,
           "config_id": None if cfg is None else cfg.config_id,
           "ratio": str(Fraction(ratio)), "act_bits": int(act_bits)}
    meta[HW_CONFIG_KEY] = rec
    return rec


def recorded_config(model, path: str = "the model") -> dict | None:
    """The configuration record of ``model`` (``None`` if it has none); a malformed record is
    an :class:`IlmpqValueError` naming ``path``."""
    rec = model.meta.get(HW_CONFIG_KEY)
    if rec is None:
        return None
    bad = IlmpqValueError(f"{path}: its metadata field {HW_CONFIG_KEY!r} (the configuration it "
                          f"was quantized for) is malformed: {str(rec)[:80]!r}; expected "
                          f"{{'version': 1, 'name': ..., 'config_id': ..., 'ratio': ..., "
                          f"'act_bits': ...}}")
    if not isinstance(rec, dict) or not isinstance(rec.get("version"), int):
        raise bad
    if rec["version"] > HW_CONFIG_VERSION:
        return None  # a newer layout: ignore it rather than misread it
    name, cid = rec.get("name"), rec.get("config_id")
    if not (name is None or isinstance(name, str)) or not (
            cid is None or isinstance(cid, int) and not isinstance(cid, bool)) or \
            not isinstance(rec.get("ratio"), str) or not isinstance(rec.get("act_bits"), int):
        raise bad
    return rec


def describe_record(rec: dict | None) -> str:
    if rec is None:
        return "no recorded configuration"
    if rec.get("name") is None:
        return f"R = {rec['ratio']} (--ratio), A{rec['act_bits']}, no hardware configuration"
    return f"configuration {rec['name']} (R = {rec['ratio']}, A{rec['act_bits']})"


def _recorded_hw(rec: dict | None) -> HWConfig | None:
    """The preset a record names, with the recorded activation width (``None`` if the record
    names no preset, or a preset whose identity no longer matches)."""
    if rec is None or rec.get("name") not in PRESETS:
        return None
    cfg = PRESETS[rec["name"]]
    if rec["act_bits"] != cfg.act_bits:
        cfg = cfg.replace(act_bits=rec["act_bits"])
    if rec.get("config_id") is not None and rec["config_id"] != cfg.config_id:
        return None
    return cfg


def model_config(model, name: str | None, path: str, *, fallback: str = "tiny"
                 ) -> tuple[HWConfig, str]:
    """The configuration for ``--config NAME`` (``None``: the one ``model`` records, else
    ``fallback``) and a line saying which and why."""
    rec = recorded_config(model, path)
    if name is not None:
        cfg = get_config(name)
        return cfg, f"configuration: {cfg.describe()} (--config; {path}: {describe_record(rec)})"
    cfg = _recorded_hw(rec)
    if cfg is not None:
        return cfg, f"configuration: {cfg.describe()} (recorded in {path})"
    cfg = get_config(fallback)
    return cfg, (f"configuration: {cfg.describe()} (default; {path} has "
                 f"{describe_record(rec)}; choose with --config)")


def _more_on_host(model, rec: dict, hosted: list, kwargs: dict) -> bool:
    """The configuration ``model`` records puts fewer layers on the host than ``hosted`` (or is
    not a known preset to compare with)."""
    from ...golden.errors import IlmpqError
    from ..compiler import compile_model
    own = _recorded_hw(rec)
    if own is None:
        return True
    try:
        return sum(r.where == "cpu" for r in compile_model(model, own, **kwargs).layers) \
            < len(hosted)
    except IlmpqError:      # the recorded one does not compile either
        return False


def batch_value(text: str) -> int:
    """``--batch B``: images a run (``compile_model(batch=B)``), an integer in
    ``[1, MAX_BATCH]``; anything else is one clear usage error."""
    from ..compiler import MAX_BATCH
    try:
        b = int(text, 10)
    except (TypeError, ValueError):
        b = None
    if b is None or not 1 <= b <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: the images a run must be an "
                                         f"integer in [1, {MAX_BATCH}]")
    return b


def add_batch_argument(parser: argparse.ArgumentParser) -> None:
    """``--batch B`` (default 1): compile for B images a run (docs/architecture.md,
    *Batching*); the images run in groups of B, a last smaller group filled up with copies of
    its last image whose results are dropped."""
    parser.add_argument("--batch", type=batch_value, default=1, metavar="B",
                        help="images a run: compile the model for batches of B images "
                             "(docs/architecture.md, Batching; a last smaller group is filled "
                             "with its last image, those results dropped; default 1)")


def run_figures(run_cycles, batch: int, macs: float, cfg: HWConfig, clock_hz: float) -> dict:
    """The per-image figures of runs of ``batch`` images each (``batch = 1``: one image a run)
    from the runs' CYCLES (``run_cycles``, one a run) and ``macs``, the accelerated MACs of one
    run (a batched compile's report counts the B images'): ``cycles_per_image`` (a run's /
    ``batch``), ``cycles_per_run``, ``runs``, ``pe_utilization`` (a run's MACs over its cycles
    times ``cfg.macs_per_cycle``), ``latency_ms`` (a run's time at ``clock_hz``: an image waits
    for its whole run) and ``frames_per_s`` (``batch`` images a run); means over the runs."""
    import numpy as np
    run = float(np.mean(run_cycles))
    return {"cycles_per_image": run / batch, "cycles_per_run": run, "runs": len(run_cycles),
            "pe_utilization": macs / max(1.0, run * cfg.macs_per_cycle),
            "latency_ms": run / clock_hz * 1e3, "frames_per_s": batch * clock_hz / max(1.0, run)}


def compile_checked(model, cfg: HWConfig, path: str, **kwargs):
    """:func:`ilmpq.firmware.compiler.compile_model`, with every error naming the configuration
    ``model`` was quantized for when that is not ``cfg``."""
    from ...golden.errors import IlmpqError
    from ..compiler import compile_model

    rec = recorded_config(model, path)
    same = rec is not None and rec.get("name") == cfg.name and \
        rec.get("act_bits") == cfg.act_bits
    try:
        compiled = compile_model(model, cfg, **kwargs)
        hosted = [r for r in compiled.layers if r.where == "cpu"]
        if rec is not None and not same and hosted and _more_on_host(model, rec, hosted, kwargs):
            # the host fallback would hide a configuration mistake: say it as an error
            raise IlmpqValueError(
                f"with configuration {cfg.name}, {len(hosted)} layers would run on the host "
                f"({hosted[0].name}: {hosted[0].cpu_reason})")
        return compiled
    except IlmpqError as e:
        if rec is None or same:
            raise
        if rec.get("name") in PRESETS and rec["name"] != cfg.name:
            hint = f"; compile it with --config {rec['name']}"
        elif rec.get("name") in PRESETS:
            hint = "; leave out --config to use the recorded configuration"
        else:
            hint = ""
        raise IlmpqValueError(f"{e} -- {path} was quantized for {describe_record(rec)}, not "
                              f"for {cfg.name} (R = {cfg.ratio}, A{cfg.act_bits}){hint}") \
            from None


# -- simulation with progress --------------------------------------------------------------------

def prebuild_verilator(cfg: HWConfig, progress) -> None:
    """Build (or find in the cache) the Verilator model of ``cfg`` with a progress line saying
    so and where it is cached; the simulation then finds it there."""
    import glob
    import json
    import os

    from ..board.verilog import accelerator_verilog
    from ..sim.verilator.build import build_library, cache_key, default_cache_dir

    text, top = accelerator_verilog(cfg)
    cache = default_cache_dir()
    final = os.path.join(cache, f"{top}-{cache_key(text, top)[:20]}")
    if os.path.exists(os.path.join(final, "libilmpqsim.so")):
        progress.note(f"Verilator model of {top}: cached in {final}")
        return
    last = []
    for meta in glob.glob(os.path.join(cache, f"{top}-*", "meta.json")):
        try:
            with open(meta) as f:
                last.append(float(json.load(f)["build_seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    hint = f"; an earlier build of {top} took {max(last):.0f} s" if last else ""
    progress.note(f"building the Verilator model of {top} (once per design; cached in "
                  f"{cache}{hint})")
    with progress.task(f"Verilator build of {top}", ticker=True):
        build_library(text, top)


def simulate_with_progress(comp, images, *, sim: str, progress, **kwargs):
    """:func:`ilmpq.firmware.sim.simulate.simulate` with progress: the Verilator build, images
    done with elapsed time and ETA, and (Amaranth) cycles inside the current image against the
    cycle model's estimate."""
    from ..sim.simulate import simulate

    cfg = comp.config
    if sim == "verilator":
        prebuild_verilator(cfg, progress)
    n = len(images)
    expected = None
    if sim == "amaranth":
        try:
            from ..cyclemodel import estimate
            expected = int(estimate(comp).cycles)
        except Exception:  # noqa: BLE001 -- the estimate only decorates the progress line
            expected = None
        per = f", about {expected:,} cycles each (cycle model)" if expected else ""
        progress.note(f"the Amaranth simulator can take minutes per image ({n} image(s){per}); "
                      f"--sim verilator is much faster")
    state = {"start": 0, "now": 0}
    with progress.task(f"simulating ({sim})", n, unit="images") as task:
        def on_image(i, total):
            state["start"] = state["now"]
            task.update(i, detail="")

        def on_cycles(c):
            state["now"] = c
            inside = c - state["start"]
            frac = f" ({min(99, 100 * inside // expected)}%)" if expected else ""
            task.update(detail=f"image {task.done + 1}: {inside:,} cycles{frac}",
                        partial=inside / expected if expected else None)

        kw = dict(kwargs)
        if sim == "amaranth":
            kw["cycle_progress"] = on_cycles
        return simulate(comp, images, sim=sim, progress=on_image, **kw)
