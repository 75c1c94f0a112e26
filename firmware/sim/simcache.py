"""One elaborated Amaranth simulation of a design, reused across runs.

Building an :class:`amaranth.sim.Simulator` for the whole accelerator compiles every statement
of the design to Python: about 5 s for the ``tiny`` configuration, far longer than the short
programs that a test or a fault-injection run then simulates. :func:`acquire` keeps one
simulator per design key (per process, the few most recent) and hands it out *fresh*: every
signal and memory at its initial value, time 0, the clock process restarted, and no testbench or
process left from an earlier run. A run on a fresh simulator is the same simulation as a run on a
new one (the tests that use it compare against golden and assert exact cycle counts either way).

Reuse relies on the internals of Amaranth 0.5's ``pysim`` engine (``Simulator.reset`` restarts
the testbenches already added; dropping them is not public API). :func:`acquire` checks those
internals once and falls back to a new simulator per run when they differ, when
``ILMPQ_SIM_REUSE=0`` is set, or when the caller asks for a waveform.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

from amaranth.sim import Simulator

__all__ = ["acquire", "clear", "stats", "MAX_CACHED"]

#: Simulators kept per process (each holds an elaborated design; tiny: ~100 MB).
MAX_CACHED = 3

_cache: "OrderedDict[object, _Entry]" = OrderedDict()
_stats = {"built": 0, "reused": 0}


class _Entry:
    def __init__(self, design, period: float):
        self.design = design
        self.sim = Simulator(design)
        self.sim.add_clock(period)
        eng = self.sim._engine
        self.base = set(eng._processes)     # the design's compiled processes and the clock
        self.used = False

    def fresh(self) -> Simulator:
        sim, eng = self.sim, self.sim._engine
        if self.used:
            old = [p for p in eng._processes if p not in self.base] + list(eng._testbenches)
            for p in old:
                # wakers of a dead process's pending trigger remove themselves when broken
                trig = getattr(p, "waits_on", None)
                if trig is not None:
                    trig._broken = True
                coro = getattr(p, "coroutine", None)
                if coro is not None:
                    coro.close()
            eng._testbenches.clear()
            eng._processes.clear()
            eng._processes.update(self.base)
            eng._active_triggers.clear()
            eng._delta_cycles = 0
            sim.reset()
        self.used = True
        return sim


def _supported() -> bool:
    if os.environ.get("ILMPQ_SIM_REUSE", "1") == "0":
        return False
    try:
        from amaranth.sim.pysim import PySimEngine
        need = ("_processes", "_testbenches", "_active_triggers", "_delta_cycles")
        probe = PySimEngine.__init__.__code__.co_names
        return all(n in probe for n in need) and hasattr(Simulator, "reset")
    except Exception:  # noqa: BLE001 - any difference: no reuse
        return False


_SUPPORTED = _supported()


def acquire(key, build: Callable[[], object], *, period: float = 1e-8,
            reuse: bool = True) -> tuple[object, Simulator]:
    """``(design, simulator)`` for ``key``: the design ``build()`` returned the first time and a
    fresh simulator of it with a clock of ``period`` seconds on ``sync`` (add testbenches and
    processes, then run). ``key`` must identify the design completely (e.g. its class and
    :class:`~ilmpq.hdl.config.HWConfig`). ``reuse=False`` (or no support, see the module
    docstring) builds a new design and simulator."""
    if not (reuse and _SUPPORTED):
        design = build()
        sim = Simulator(design)
        sim.add_clock(period)
        _stats["built"] += 1
        return design, sim
    entry = _cache.get((key, period))
    if entry is None:
        entry = _Entry(build(), period)
        _cache[(key, period)] = entry
        _stats["built"] += 1
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end((key, period))
        _stats["reused"] += 1
    sim = entry.fresh()
    return entry.design, sim


def clear():
    """Forget every cached simulator."""
    _cache.clear()


def stats() -> dict:
    """How many simulators were built and how many runs reused one (this process)."""
    return dict(_stats)
