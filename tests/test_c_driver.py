"""The bare-metal C driver (firmware/board/c/ilmpq_driver.c), compiled on the host with
``gcc -std=c99 -Wall -Wextra -Werror -pedantic``.

Two HALs drive it:

* **the RTL**: a small C glue (below) opens the Verilator simulation library of the tiny
  accelerator through the harness's C API (``ilmpq_sim_*``). Register accesses are AXI4-Lite
  transactions on the real register bank; DMA memory is the harness's memory behind a
  *non-coherent cache model*: the driver's CPU pointer is a separate copy that only reaches the
  memory the accelerator reads through ``cache_clean``, and only sees what the accelerator wrote
  after ``cache_invalidate``. Compiled programs run bit-exact against golden, with the same
  performance counters as the Python driver, and real hardware errors come back as their
  specific return codes.
* **a mock register file** written in Python (ctypes callbacks), for the paths the RTL cannot
  reach on demand: wrong ID / version / configuration, a busy accelerator, a run that never
  ends, a soft reset that never completes, every ErrorCode, counters wider than 32 bits.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from e2e_util import assert_layers_equal
from ilmpq.firmware.compiler import AccelStep, CpuStep, compile_model
from ilmpq.firmware.sim.isasim import cpu_inputs, cpu_layer
from ilmpq.firmware.regmap import HardwareIdentity, generate_c_header
from ilmpq.golden import reference
from ilmpq.golden.random_models import random_qmodel
from ilmpq.hdl import isa
from ilmpq.hdl.config import get_config
from ilmpq.hdl.regmap import COUNTER_NAMES, accelerator_regmap
from ilmpq.hdl.status import ErrorCode
from ilmpq.hdl.weight_buffer import header_beats

ROOT = Path(__file__).resolve().parents[1]
CDIR = ROOT / "firmware" / "board" / "c"
TINY = get_config("tiny")
Z020 = get_config("z020")
RM = accelerator_regmap(TINY)
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-fPIC"]
BASE = 0x1E90_0000          # a u-dma-buf-like physical address, not the compiler's default
MEM_SIZE = 1 << 20
MHZ = 100
INSTR_BYTES = isa.INSTR_BITS // 8
HW_BASE = -256               # ILMPQ_ERR_HW_BASE

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc) on PATH")

# driver return codes (ilmpq_driver.h)
OK, PENDING = 0, 1
ERR = dict(ARG=-1, NO_DEVICE=-2, VERSION=-3, CONFIG=-4, BUSY=-5, IDLE=-6, TIMEOUT=-7, RESET=-8,
           MEM=-9, WINDOW=-10, BUS_ABANDONED=-11, UNSUPPORTED=-12)


def hw(code: ErrorCode) -> int:
    return HW_BASE - int(code)


# -- building the driver -------------------------------------------------------------------------

GLUE = r"""
/* Test glue: the driver's HAL on the Verilator harness's C API, with a non-coherent cache. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ilmpq_driver.h"

typedef void *(*sim_new_t)(uint64_t, uint64_t, uint32_t, uint32_t, uint32_t);
typedef void (*sim_free_t)(void *);
typedef uint8_t *(*sim_mem_t)(void *);
typedef int (*sim_init_t)(void *);
typedef int (*sim_reset_t)(void *, uint32_t);
typedef int (*sim_run_t)(void *, uint64_t, int, uint64_t *);
typedef int (*sim_csr_write_t)(void *, uint32_t, uint32_t, uint64_t, uint32_t *);
typedef int (*sim_csr_read_t)(void *, uint32_t, uint64_t, uint32_t *, uint32_t *);
typedef uint64_t (*sim_cycle_t)(void *);
typedef int (*sim_inject_t)(void *, int, int, uint64_t, uint32_t);  /* port, channel, ... */
typedef int (*abi_t)(void);

static struct {
    void *lib, *h;
    uint8_t *dram, *cpu;
    uint64_t base, size, mhz;
    sim_new_t sim_new; sim_free_t sim_free; sim_mem_t sim_mem; sim_init_t sim_init;
    sim_reset_t sim_reset; sim_run_t sim_run; sim_csr_write_t csr_write;
    sim_csr_read_t csr_read; sim_cycle_t cycle; sim_inject_t inject; abi_t abi;
    uint64_t stats[6];  /* failures, bus errors, cleans, invalidates, csr accesses, delays */
    ilmpq_dev_t dev;
} g;

static int sym(const char *name, void *fn_ptr)
{
    void *p = dlsym(g.lib, name);
    if (p == NULL) return -1;
    memcpy(fn_ptr, &p, sizeof p);   /* object -> function pointer without a pedantic cast */
    return 0;
}

static uint32_t hal_read32(void *ctx, uint32_t offset)
{
    uint32_t value = 0, resp = 0;
    (void)ctx;
    g.stats[4]++;
    if (g.csr_read(g.h, offset, 10000, &value, &resp) != 0) g.stats[0]++;
    if (resp != 0) g.stats[1]++;
    return value;
}

static void hal_write32(void *ctx, uint32_t offset, uint32_t value)
{
    uint32_t resp = 0;
    (void)ctx;
    g.stats[4]++;
    if (g.csr_write(g.h, offset, value, 10000, &resp) != 0) g.stats[0]++;
    if (resp != 0) g.stats[1]++;
}

static void *hal_mem_map(void *ctx, uint32_t addr, uint32_t size)
{
    (void)ctx;
    if (addr < g.base || (uint64_t)addr + size > g.base + g.size) return NULL;
    return g.cpu + (addr - g.base);
}

static void hal_clean(void *ctx, const void *ptr, uint32_t size)
{
    size_t off = (size_t)((const uint8_t *)ptr - g.cpu);
    (void)ctx;
    memcpy(g.dram + off, ptr, size);
    g.stats[2]++;
}

static void hal_invalidate(void *ctx, void *ptr, uint32_t size)
{
    size_t off = (size_t)((uint8_t *)ptr - g.cpu);
    (void)ctx;
    memcpy(ptr, g.dram + off, size);
    g.stats[3]++;
}

static uint64_t hal_time_us(void *ctx)
{
    (void)ctx;
    return g.cycle(g.h) / g.mhz;
}

static void hal_delay_us(void *ctx, uint32_t us)
{
    uint64_t ran = 0;
    (void)ctx;
    g.stats[5]++;
    if (g.sim_run(g.h, (uint64_t)us * g.mhz, 0, &ran) != 0) g.stats[0]++;
}

int glue_open(const char *path, int abi, uint64_t base, uint64_t size, uint64_t mhz)
{
    ilmpq_hal_t hal;
    memset(&g, 0, sizeof g);
    g.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (g.lib == NULL) return -1;
    if (sym("ilmpq_abi_version", &g.abi) || sym("ilmpq_sim_new", &g.sim_new)
        || sym("ilmpq_sim_free", &g.sim_free) || sym("ilmpq_sim_mem", &g.sim_mem)
        || sym("ilmpq_sim_init", &g.sim_init) || sym("ilmpq_sim_reset", &g.sim_reset)
        || sym("ilmpq_sim_run", &g.sim_run) || sym("ilmpq_sim_csr_write", &g.csr_write)
        || sym("ilmpq_sim_csr_read", &g.csr_read) || sym("ilmpq_sim_cycle", &g.cycle)
        || sym("ilmpq_sim_inject", &g.inject))
        return -2;
    if (g.abi() != abi) return -3;
    g.base = base; g.size = size; g.mhz = mhz;
    g.h = g.sim_new(base, size, 8, 4, 8);
    if (g.h == NULL) return -4;
    if (g.sim_init(g.h) != 0 || g.sim_reset(g.h, 4) != 0) return -5;
    g.dram = g.sim_mem(g.h);
    g.cpu = calloc((size_t)size, 1);   /* the CPU's cached view: starts equal to memory (0) */
    if (g.cpu == NULL) return -6;
    memset(&hal, 0, sizeof hal);
    hal.read32 = hal_read32; hal.write32 = hal_write32; hal.mem_map = hal_mem_map;
    hal.cache_clean = hal_clean; hal.cache_invalidate = hal_invalidate;
    hal.time_us = hal_time_us; hal.delay_us = hal_delay_us;
    return ilmpq_init(&g.dev, &hal);
}

ilmpq_dev_t *glue_dev(void) { return &g.dev; }
void glue_inject(int channel, uint64_t burst, uint32_t resp)
{
    g.inject(g.h, 0, channel, burst, resp);   /* port 0: the only port of tiny */
}
void glue_stats(uint64_t *out) { memcpy(out, g.stats, sizeof g.stats); }
/* memory as the accelerator sees it, and the CPU's (cached) view, bypassing the driver */
void glue_dram_read(uint32_t addr, uint8_t *dst, uint32_t n)
{
    memcpy(dst, g.dram + (addr - g.base), n);
}
void glue_dram_write(uint32_t addr, const uint8_t *src, uint32_t n)
{
    memcpy(g.dram + (addr - g.base), src, n);
}
void glue_cpu_read(uint32_t addr, uint8_t *dst, uint32_t n)
{
    memcpy(dst, g.cpu + (addr - g.base), n);
}
size_t glue_sizeof_dev(void) { return sizeof(ilmpq_dev_t); }
size_t glue_sizeof_hal(void) { return sizeof(ilmpq_hal_t); }
size_t glue_sizeof_counters(void) { return sizeof(ilmpq_counters_t); }
size_t glue_offsetof_last_err_info(void) { return offsetof(ilmpq_dev_t, last_err_info); }
size_t glue_offsetof_watchdog(void) { return offsetof(ilmpq_dev_t, watchdog_cycles); }
size_t glue_sizeof_batch_slot(void) { return sizeof(ilmpq_batch_slot_t); }
size_t glue_offsetof_batch_images(void) { return offsetof(ilmpq_batch_slot_t, images); }

void glue_close(void)
{
    if (g.h != NULL) g.sim_free(g.h);
    if (g.lib != NULL) dlclose(g.lib);
    free(g.cpu);
    memset(&g, 0, sizeof g);
}
"""


class Counters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name, _ in COUNTER_NAMES]


READ32 = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32)
WRITE32 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)
MEM_MAP = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32)
CACHE_OP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)
TIME_US = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)
DELAY_US = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32)


class Hal(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("read32", READ32), ("write32", WRITE32),
                ("mem_map", MEM_MAP), ("cache_clean", CACHE_OP), ("cache_invalidate", CACHE_OP),
                ("time_us", TIME_US), ("delay_us", DELAY_US)]


class FrameSlot(ctypes.Structure):
    _fields_ = [("input_addr", ctypes.c_uint32), ("output_addr", ctypes.c_uint32),
                ("prog_addr", ctypes.c_uint32), ("n_instr", ctypes.c_uint32),
                ("prog_tag", ctypes.c_uint32), ("input_check", ctypes.c_uint32),
                ("input_row_bytes", ctypes.c_uint32)]


class BatchImage(ctypes.Structure):
    _fields_ = [("input_addr", ctypes.c_uint32), ("input_check", ctypes.c_uint32),
                ("output_addr", ctypes.c_uint32)]


class BatchSlot(ctypes.Structure):
    _fields_ = [("prog_addr", ctypes.c_uint32), ("n_instr", ctypes.c_uint32),
                ("prog_tag", ctypes.c_uint32), ("input_row_bytes", ctypes.c_uint32),
                ("n_images", ctypes.c_uint32), ("images", ctypes.POINTER(BatchImage))]


def _build(tmp: Path, header_text: str) -> ctypes.CDLL:
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("ilmpq_driver.c", "ilmpq_driver.h"):
        shutil.copy(CDIR / name, tmp / name)
    (tmp / "ilmpq_regs.h").write_text(header_text)
    (tmp / "glue.c").write_text(GLUE)
    lib = tmp / "libdrv.so"
    cc = subprocess.run(["gcc", *CFLAGS, "-shared", "-o", str(lib), str(tmp / "ilmpq_driver.c"),
                         str(tmp / "glue.c"), "-ldl"], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    so = ctypes.CDLL(str(lib))
    vp, u32, u64, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
    u8p = ctypes.POINTER(ctypes.c_uint8)
    sigs = {
        "ilmpq_init": (i32, [vp, ctypes.POINTER(Hal)]),
        "ilmpq_read_identity": (i32, [vp, vp]),
        "ilmpq_check": (i32, [vp]),
        "ilmpq_set_window": (i32, [vp, u32, u32]),
        "ilmpq_set_mac_key": (i32, [vp, ctypes.c_char_p]),
        "ilmpq_set_mac": (i32, [vp, i32, u64]),
        "ilmpq_set_arena": (i32, [vp, u32, u32]),
        "ilmpq_set_prog_tag": (i32, [vp, u32]),
        "ilmpq_mem_write": (i32, [vp, u32, ctypes.c_char_p, u32]),
        "ilmpq_write_input": (i32, [vp, u32, u32, u32, ctypes.c_char_p, u32]),
        "ilmpq_mem_read": (i32, [vp, u32, vp, u32]),
        "ilmpq_load_image": (i32, [vp, u32, ctypes.c_char_p, u32]),
        "ilmpq_start": (i32, [vp, u32, u32]),
        "ilmpq_poll": (i32, [vp]),
        "ilmpq_wait": (i32, [vp, u32]),
        "ilmpq_run": (i32, [vp, u32, u32, u32]),
        "ilmpq_soft_reset": (i32, [vp]),
        "ilmpq_clear_bus_abandoned": (i32, [vp]),
        "ilmpq_read_counters": (i32, [vp, ctypes.POINTER(Counters)]),
        "ilmpq_infer": (i32, [vp, ctypes.POINTER(FrameSlot), ctypes.c_char_p, u32, vp, u32,
                              u32]),
        "ilmpq_infer_start": (i32, [vp, ctypes.POINTER(FrameSlot), ctypes.c_char_p, u32]),
        "ilmpq_infer_finish": (i32, [vp, ctypes.POINTER(FrameSlot), vp, u32, u32]),
        "ilmpq_infer_batch_start": (i32, [vp, ctypes.POINTER(BatchSlot), vp, u32, u32]),
        "ilmpq_infer_batch_finish": (i32, [vp, ctypes.POINTER(BatchSlot), vp, u32, u32, u32]),
        "ilmpq_is_hw_error": (i32, [i32]),
        "ilmpq_hw_error_code": (u32, [i32]),
        "ilmpq_strerror": (ctypes.c_char_p, [i32]),
        "glue_open": (i32, [ctypes.c_char_p, i32, u64, u64, u64]),
        "glue_dev": (vp, []),
        "glue_inject": (None, [i32, u64, u32]),
        "glue_stats": (None, [ctypes.POINTER(u64)]),
        "glue_dram_read": (None, [u32, u8p, u32]),
        "glue_dram_write": (None, [u32, ctypes.c_char_p, u32]),
        "glue_cpu_read": (None, [u32, u8p, u32]),
        "glue_sizeof_dev": (ctypes.c_size_t, []),
        "glue_sizeof_hal": (ctypes.c_size_t, []),
        "glue_sizeof_counters": (ctypes.c_size_t, []),
        "glue_offsetof_last_err_info": (ctypes.c_size_t, []),
        "glue_offsetof_watchdog": (ctypes.c_size_t, []),
        "glue_sizeof_batch_slot": (ctypes.c_size_t, []),
        "glue_offsetof_batch_images": (ctypes.c_size_t, []),
        "glue_close": (None, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(so, name)
        fn.restype, fn.argtypes = res, args
    assert so.glue_sizeof_hal() == ctypes.sizeof(Hal)
    assert so.glue_sizeof_counters() == ctypes.sizeof(Counters)
    assert so.glue_sizeof_batch_slot() == ctypes.sizeof(BatchSlot)
    assert so.glue_offsetof_batch_images() == BatchSlot.images.offset
    return so


@pytest.fixture(scope="module")
def drv(tmp_path_factory):
    """The driver (+ glue) compiled against the tiny configuration's generated header."""
    return _build(tmp_path_factory.mktemp("drv_tiny"), generate_c_header(RM))


def _u32_at(dev, offset) -> int:
    return ctypes.c_uint32.from_address(dev + offset).value


# -- compile checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("std", ["c99", "c11"])
def test_driver_compiles_cleanly_with_the_committed_header(tmp_path, std):
    """The committed files as a user gets them: firmware/board/c/ with the z020 header, strict flags
    (plus -Wconversion -Wshadow), and as C++."""
    cc = subprocess.run(["gcc", f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic",
                         "-Wconversion", "-Wshadow", "-Wstrict-prototypes",
                         "-Wmissing-prototypes", "-O2", "-c", str(CDIR / "ilmpq_driver.c"),
                         "-o", str(tmp_path / "d.o")], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    if shutil.which("g++"):
        cxx = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                              "-x", "c++", str(CDIR / "ilmpq_driver.c")],
                             capture_output=True, text=True)
        assert cxx.returncode == 0, cxx.stderr


def test_return_codes_and_strerror(drv):
    for code in ErrorCode:
        if code == ErrorCode.NONE:
            continue
        rc = hw(code)
        assert drv.ilmpq_is_hw_error(rc) == 1
        assert drv.ilmpq_hw_error_code(rc) == int(code)
        assert drv.ilmpq_strerror(rc).decode() == code.name
    assert drv.ilmpq_strerror(HW_BASE).decode() == "STATUS.error set without an error code"
    for name, rc in ERR.items():
        assert drv.ilmpq_is_hw_error(rc) == 0 and drv.ilmpq_hw_error_code(rc) == 0
        assert drv.ilmpq_strerror(rc).decode().startswith(f"ILMPQ_ERR_{name} (")
    assert drv.ilmpq_strerror(OK) == b"OK"
    assert drv.ilmpq_strerror(-77).decode() == "unknown return code"
    assert drv.ilmpq_is_hw_error(HW_BASE - 256) == 0   # just below the hardware range


# -- against the RTL -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rtl_lib():
    """Path of the Verilator simulation library of the tiny accelerator (cached build)."""
    from ilmpq.firmware.sim.verilator.lint import VerilatorNotFound, verilator_path
    try:
        verilator_path()
    except VerilatorNotFound as e:
        pytest.skip(str(e))
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")
    from ilmpq.firmware.sim.verilator.build import build_library
    from ilmpq.firmware.board.verilog import accelerator_verilog
    text, top = accelerator_verilog(TINY)
    return build_library(text, top).path, (text, top)


@pytest.fixture
def rtl(drv, rtl_lib):
    """The driver on a fresh RTL simulation (memory at BASE, 100 MHz)."""
    from ilmpq.firmware.sim.verilator.build import ABI_VERSION
    rc = drv.glue_open(rtl_lib[0].encode(), ABI_VERSION, BASE, MEM_SIZE, MHZ)
    assert rc == 0, f"glue_open failed with {rc}"
    yield drv, drv.glue_dev()
    stats = _stats(drv)
    drv.glue_close()
    assert stats["failures"] == 0 and stats["bus_errors"] == 0, stats


def _stats(drv) -> dict:
    buf = (ctypes.c_uint64 * 6)()
    drv.glue_stats(buf)
    return dict(zip(("failures", "bus_errors", "cleans", "invalidates", "csr", "delays"), buf))


def _counters(drv, dev) -> dict:
    c = Counters()
    assert drv.ilmpq_read_counters(dev, ctypes.byref(c)) == OK
    return {name: getattr(c, name) for name, _ in COUNTER_NAMES}


def _mem_read(drv, dev, addr, n) -> bytes:
    buf = ctypes.create_string_buffer(n)
    assert drv.ilmpq_mem_read(dev, addr, buf, n) == OK
    return buf.raw


def _infer(drv, dev, comp, img, *, load=True, timeout_us=1_000_000):
    """What a bare-metal application does, through the C driver only."""
    if load:
        image = bytes(comp.image)
        assert drv.ilmpq_load_image(dev, comp.base, image, len(image)) == OK
        assert drv.ilmpq_set_arena(dev, *comp.arena) == OK
    inp = comp.tensors[comp.input]
    data = inp.to_memory(np.asarray(img, np.int64))
    assert drv.ilmpq_write_input(dev, inp.addr, comp.input_check, comp.input_row_bytes, data,
                                 len(data)) == OK
    layers = {layer.name: layer for layer in comp.model.layers}
    total = {name: 0 for name, _ in COUNTER_NAMES}
    for step in comp.steps:
        if isinstance(step, AccelStep):
            assert drv.ilmpq_set_prog_tag(dev, step.prog_tag) == OK
            rc = drv.ilmpq_run(dev, step.prog_addr, step.n_instr, timeout_us)
            assert rc == OK, drv.ilmpq_strerror(rc).decode()
            for k, v in _counters(drv, dev).items():
                total[k] += v
        else:
            assert isinstance(step, CpuStep)
            layer = layers[step.layer]
            raw = {n: _mem_read(drv, dev, comp.tensors[n].addr, comp.tensors[n].nbytes)
                   for n in cpu_inputs(layer)}
            addr, payload = cpu_layer(comp, layer, raw)
            # the output and, when an accelerated layer reads it, its check entries
            chk, row_bytes = comp.host_checks.get(layer.output, (0, 0))
            assert drv.ilmpq_write_input(dev, addr, chk, row_bytes, payload,
                                         len(payload)) == OK
    out = {name: t.from_memory(_mem_read(drv, dev, t.addr, t.nbytes))
           for name, t in comp.tensors.items()}
    return out, total


def _model(rng):
    return random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 7, 7),
                         max_channels=9)


@pytest.mark.verilator
def test_c_driver_runs_compiled_models_bit_exact_on_the_rtl(rtl, rtl_lib, rng):
    drv, dev = rtl
    model = _model(rng)
    comp = compile_model(model, TINY, base=BASE)
    assert comp.size <= MEM_SIZE
    imgs = [rng.integers(0, 256, size=(3, 7, 7)) for _ in range(2)]
    assert drv.ilmpq_check(dev) == OK
    totals = []
    for i, img in enumerate(imgs):
        out, total = _infer(drv, dev, comp, img, load=(i == 0))
        assert_layers_equal(model, reference.run(model, img, spec=TINY.numeric), out)
        totals.append(total)
    # the cache model really is non-coherent: the driver cleaned and invalidated
    st = _stats(drv)
    assert st["cleans"] >= 3 and st["invalidates"] >= len(comp.tensors)
    # the same counters as the Python driver on the same RTL
    from ilmpq.firmware.sim.simulate import simulate
    py = simulate(comp, imgs, sim="verilator")
    assert [r.stats.counters for r in py] == totals
    assert totals[0]["cycles"] > 0 and totals[0]["pe_busy"] > 0


@pytest.mark.verilator
def test_one_call_inference_and_frames_back_to_back_on_the_rtl(rtl, rng):
    """ilmpq_infer: the input in, one program, the logits out (nothing else crosses the bus
    from the host); ilmpq_infer_start/finish over the two frame slots with the next image
    written while a frame runs; each frame its own golden result."""
    drv, dev = rtl
    model = _model(rng)
    comp = compile_model(model, TINY, base=BASE)
    assert comp.one_program and len(comp.slots) == 2
    image = bytes(comp.image)
    assert drv.ilmpq_load_image(dev, comp.base, image, len(image)) == OK
    assert drv.ilmpq_set_arena(dev, *comp.arena) == OK
    inp, out_t = comp.tensors[comp.input], comp.tensors[comp.output]
    slots = [FrameSlot(s.input_addr, s.output_addr, s.prog_addr, s.n_instr, s.prog_tag,
                       s.input_check, comp.input_row_bytes)
             for s in comp.slots]
    imgs = [rng.integers(0, 256, size=(3, 7, 7)) for _ in range(3)]
    want = [reference.run(model, img, spec=TINY.numeric)[model.output] for img in imgs]
    buf = (ctypes.c_uint8 * out_t.nbytes)()
    # one call per image
    for k, img in enumerate(imgs):
        data = inp.to_memory(np.asarray(img, np.int64))
        rc = drv.ilmpq_infer(dev, ctypes.byref(slots[k % 2]), data, len(data), buf,
                             out_t.nbytes, 1_000_000)
        assert rc == OK, drv.ilmpq_strerror(rc).decode()
        np.testing.assert_array_equal(out_t.from_memory(bytes(buf)), want[k])
    # back to back: frame k + 1's input is written while frame k runs
    data = [inp.to_memory(np.asarray(img, np.int64)) for img in imgs]
    assert drv.ilmpq_infer_start(dev, ctypes.byref(slots[0]), data[0], len(data[0])) == OK
    for k in range(len(imgs)):
        nxt = slots[(k + 1) % 2]
        if k + 1 < len(imgs):
            assert drv.ilmpq_write_input(dev, nxt.input_addr, nxt.input_check,
                                         nxt.input_row_bytes, data[k + 1],
                                         len(data[k + 1])) == OK
        assert drv.ilmpq_infer_finish(dev, ctypes.byref(slots[k % 2]), buf, out_t.nbytes,
                                      1_000_000) == OK
        got = out_t.from_memory(bytes(buf))
        if k + 1 < len(imgs):
            assert drv.ilmpq_set_prog_tag(dev, nxt.prog_tag) == OK
            assert drv.ilmpq_start(dev, nxt.prog_addr, nxt.n_instr) == OK
        np.testing.assert_array_equal(got, want[k])


@pytest.mark.verilator
def test_the_cache_model_needs_the_drivers_maintenance(rtl):
    """Without the driver's clean the accelerator would read stale memory, and without its
    invalidate the CPU would read stale cache: the model catches a driver that forgets."""
    drv, dev = rtl
    data = bytes(range(64))
    assert drv.ilmpq_mem_write(dev, BASE + 0x100, data, 64) == OK
    buf = (ctypes.c_uint8 * 64)()
    drv.glue_dram_read(BASE + 0x100, buf, 64)
    assert bytes(buf) == data                         # cleaned to memory
    drv.glue_dram_write(BASE + 0x200, b"\xa5" * 32, 32)   # the "accelerator" writes memory
    drv.glue_cpu_read(BASE + 0x200, buf, 32)
    assert bytes(buf[:32]) == b"\0" * 32              # the CPU's view is stale ...
    assert _mem_read(drv, dev, BASE + 0x200, 32) == b"\xa5" * 32   # ... until invalidated
    assert drv.ilmpq_mem_write(dev, BASE + MEM_SIZE - 8, b"x" * 16, 16) == ERR["MEM"]
    assert drv.ilmpq_mem_write(dev, BASE - 8, b"x" * 8, 8) == ERR["MEM"]


def _first_load_weights(comp, step) -> tuple[int, int]:
    raw = bytes(comp.image[step.prog_addr - comp.base:
                           step.prog_addr - comp.base + step.n_instr * INSTR_BYTES])
    for i in range(step.n_instr):
        op, fields = isa.decode(raw[i * INSTR_BYTES:(i + 1) * INSTR_BYTES])
        if op == isa.Opcode.LOAD_WEIGHTS:
            return i, fields
    raise AssertionError("no LOAD_WEIGHTS in the program")


@pytest.mark.verilator
def test_hardware_errors_become_specific_return_codes_and_the_next_run_works(rtl, rng):
    drv, dev = rtl
    model = _model(rng)
    comp = compile_model(model, TINY, base=BASE)
    img = rng.integers(0, 256, size=(3, 7, 7))
    ref = reference.run(model, img, spec=TINY.numeric)
    step = next(s for s in comp.steps if isinstance(s, AccelStep))
    image = bytes(comp.image)
    assert drv.ilmpq_load_image(dev, comp.base, image, len(image)) == OK
    assert drv.ilmpq_set_prog_tag(dev, step.prog_tag) == OK
    # the compiled arena (the activation check entries are addressed from WR_BASE) and an
    # input with its check entries, so that every run below reads valid activations
    assert drv.ilmpq_set_arena(dev, *comp.arena) == OK
    inp = comp.tensors[comp.input]
    data = inp.to_memory(np.asarray(img, np.int64))
    assert drv.ilmpq_write_input(dev, inp.addr, comp.input_check, comp.input_row_bytes, data,
                                 len(data)) == OK
    info = lambda: _u32_at(dev, drv.glue_offsetof_last_err_info())  # noqa: E731

    # an AXI read error on the first burst (the instruction fetch): ERR_INFO = its address
    drv.glue_inject(0, 0, 2)   # channel r, burst 0, SLVERR
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr, 100_000) == hw(
        ErrorCode.DMA_READ_SLVERR)
    assert info() == step.prog_addr

    # a corrupted weight package is rejected before anything computes on it; ERR_INFO is the
    # fetch position when the check failed (the fetch runs ahead of the LOAD_WEIGHTS)
    k, lw = _first_load_weights(comp, step)
    payload = lw["addr"] + header_beats(TINY) * TINY.beat_bytes   # first payload byte
    flipped = bytes([image[payload - comp.base] ^ 0x40])
    assert drv.ilmpq_mem_write(dev, payload, flipped, 1) == OK
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr, 100_000) == hw(ErrorCode.WPKG_CRC)
    assert k <= info() < step.n_instr
    assert drv.ilmpq_mem_write(dev, payload, image[payload - comp.base:][:1], 1) == OK

    # a DMA window that holds only the program: the first data load is refused
    end = step.prog_addr + step.n_instr * INSTR_BYTES
    assert drv.ilmpq_set_window(dev, step.prog_addr, end) == OK
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr, 100_000) == hw(
        ErrorCode.DMA_READ_WINDOW)
    assert not step.prog_addr <= info() < end
    assert drv.ilmpq_set_window(dev, *comp.window) == OK
    assert drv.ilmpq_set_arena(dev, *comp.arena) == OK     # set_window reset it to the window

    # a program length that stops short of END
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr - 1, 100_000) == hw(
        ErrorCode.PROGRAM_OVERRUN)

    # an unknown opcode
    scratch = comp.base + comp.size - INSTR_BYTES   # inside the window; image rounded to 64 B
    saved = image[scratch - comp.base:]
    bad = _instruction_with_opcode(max(op.value for op in isa.Opcode) - 1)
    # without its check word it is not even decoded
    assert drv.ilmpq_mem_write(dev, scratch, bad, INSTR_BYTES) == OK
    assert drv.ilmpq_run(dev, scratch, 1, 100_000) == hw(ErrorCode.INSTR_CRC)
    assert info() == 0
    # sealed for its place and tag, it reaches the decoder
    bad = isa.seal(bad, 0, scratch, 0x1234_5678)
    assert drv.ilmpq_mem_write(dev, scratch, bad, INSTR_BYTES) == OK
    assert drv.ilmpq_run(dev, scratch, 1, 100_000) == hw(ErrorCode.INSTR_CRC)    # wrong tag
    assert drv.ilmpq_set_prog_tag(dev, 0x1234_5678) == OK
    assert drv.ilmpq_run(dev, scratch, 1, 100_000) == hw(ErrorCode.INSTR_OPCODE)
    assert info() == 0
    assert drv.ilmpq_set_prog_tag(dev, step.prog_tag) == OK
    assert drv.ilmpq_mem_write(dev, scratch, saved, len(saved)) == OK

    # the hardware watchdog: one cycle without progress is less than a memory latency
    ctypes.c_uint32.from_address(dev + drv.glue_offsetof_watchdog()).value = 1
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr, 100_000) == hw(ErrorCode.TIMEOUT)
    ctypes.c_uint32.from_address(dev + drv.glue_offsetof_watchdog()).value = 100_000

    # the driver's own timeout: 1 us is 100 cycles; the accelerator is soft-reset
    assert drv.ilmpq_run(dev, step.prog_addr, step.n_instr, 1) == ERR["TIMEOUT"]
    assert drv.ilmpq_poll(dev) == ERR["IDLE"]

    # a second start while the first run goes on
    assert drv.ilmpq_start(dev, step.prog_addr, step.n_instr) == OK
    assert drv.ilmpq_start(dev, step.prog_addr, step.n_instr) == ERR["BUSY"]
    assert drv.ilmpq_poll(dev) == PENDING
    assert drv.ilmpq_wait(dev, 1_000_000) == OK

    # after all that, a whole inference is still bit-exact
    out, _ = _infer(drv, dev, comp, img, load=False)
    assert_layers_equal(model, ref, out)


def _instruction_with_opcode(value: int) -> bytes:
    """32 bytes whose opcode field holds ``value`` (not an :class:`isa.Opcode`), body 0."""
    from amaranth.lib import data
    assert value not in {op.value for op in isa.Opcode}
    offset = data.Layout.cast(isa.Instruction)["opcode"].offset
    return (value << offset).to_bytes(INSTR_BYTES, "little")


@pytest.mark.verilator
def test_a_driver_for_another_configuration_refuses_the_bitstream(tmp_path, rtl_lib):
    """The driver compiled with the committed z020 header against the tiny RTL."""
    from ilmpq.firmware.sim.verilator.build import ABI_VERSION
    z = _build(tmp_path / "z020", (CDIR / "ilmpq_regs.h").read_text())
    assert z.glue_open(rtl_lib[0].encode(), ABI_VERSION, BASE, MEM_SIZE, MHZ) == 0
    try:
        dev = z.glue_dev()
        assert z.ilmpq_check(dev) == ERR["CONFIG"]
        # z020 is built without the SipHash core (BUFFERS.mac = 0 in its header): enabling
        # the tag check is refused before any register access; disabling it is allowed
        assert z.ilmpq_set_mac(dev, 1, 5) == ERR["UNSUPPORTED"]
        assert z.ilmpq_set_window(dev, BASE, BASE + 0x1000) == OK
        assert z.ilmpq_start(dev, BASE, 1) == ERR["CONFIG"]   # start checks too
        ident = (ctypes.c_uint32 * 6)()
        assert z.ilmpq_read_identity(dev, ident) == OK
        assert list(ident) == [RM.word_at(RM.offset(r))[0].reset for r in
                               ("id", "version", "config_id", "geometry", "datapath", "buffers")]
        st = _stats(z)
        assert st["failures"] == 0 and st["bus_errors"] == 0
        assert st["csr"] == 6 + 6 + 6   # two checks and one identity read; no write at all
    finally:
        z.glue_close()


# -- against a mock register file ------------------------------------------------------------------

class MockAccel:
    """A register file with the accelerator's semantics where the driver relies on them: W1C
    STATUS.done, CTRL pulses, LO-snapshots-HI counters, a run that takes ``run_us``."""

    def __init__(self, config=TINY, *, run_us=50, error=ErrorCode.NONE, info=0):
        rm = accelerator_regmap(config)
        self.rm = rm
        self.ident = {rm.offset(r): rm.word_at(rm.offset(r))[0].reset for r in
                      ("id", "version", "config_id", "geometry", "datapath", "buffers")}
        self.regs = {}
        self.log = []              # ("r"|"w", register name, value)
        self.now = 0               # microseconds
        self.run_us, self.error, self.info = run_us, error, info
        self.busy_until = None     # None: idle
        self.stuck = False         # never finishes (and ignores soft reset when reset_stuck)
        self.reset_stuck = False
        self.done = self.err = False
        self.bus_abandoned = False  # STATUS.bus_abandoned (W1C); START ignored while set
        self.code = 0
        self.counters = {name: 0 for name, _ in COUNTER_NAMES}
        self.snap = {}
        self.mem = (ctypes.c_uint8 * 4096)()   # "DRAM" at BASE
        self.cache = (ctypes.c_uint8 * 4096)() # the CPU's view
        self.cache_ops = []
        self.time_calls = 0

    def name(self, off):
        hit = self.rm.word_at(off)
        assert hit is not None and off % 4 == 0, f"access to unmapped offset {off:#x}"
        return hit[1]

    def _tick(self):
        if self.busy_until is not None and not self.stuck and self.now >= self.busy_until:
            self.busy_until = None
            self.done = True
            self.err = self.error != ErrorCode.NONE
            self.code = int(self.error)

    def status(self):
        self._tick()
        return self.rm.encode("status", busy=int(self.busy_until is not None),
                              done=int(self.done), error=int(self.err), error_code=self.code,
                              bus_abandoned=int(self.bus_abandoned))

    def read32(self, _ctx, off):
        name = self.name(off)
        if off in self.ident:
            v = self.ident[off]
        elif name == "status":
            v = self.status()
        elif name == "err_info":
            v = self.info if self.err else 0
        elif name.endswith("_lo"):
            c = self.counters[name[:-3]]
            self.snap[name[:-3]] = c >> 32
            self.counters[name[:-3]] = c + (1 << 32) + 1   # keeps running: HI must be the snap
            v = c & 0xFFFF_FFFF
        elif name.endswith("_hi"):
            v = self.snap[name[:-3]]
        else:
            v = self.regs.get(name, 0)
        self.log.append(("r", name, v))
        return v

    def write32(self, _ctx, off, value):
        name = self.name(off)
        self.log.append(("w", name, value))
        if name == "status":
            if self.rm.decode("status", value)["done"]:
                self.done = False
            if self.rm.decode("status", value)["bus_abandoned"]:
                self.bus_abandoned = False
        elif name == "ctrl":
            f = self.rm.decode("ctrl", value)
            if f["start"] and self.busy_until is None and not self.bus_abandoned:
                self.busy_until = self.now + self.run_us
                self.done = self.err = False
                self.code = 0
            if f["soft_reset"] and not self.reset_stuck:
                self.busy_until = None
                self.stuck = False
                self.err = False
                self.done = True
        else:
            self.regs[name] = value

    def mem_map(self, _ctx, addr, size):
        if addr < BASE or addr + size > BASE + len(self.cache):
            return None
        return ctypes.addressof(self.cache) + addr - BASE

    def clean(self, _ctx, ptr, size):
        off = ptr - ctypes.addressof(self.cache)
        self.cache_ops.append(("clean", off, size))
        ctypes.memmove(ctypes.addressof(self.mem) + off, ptr, size)

    def invalidate(self, _ctx, ptr, size):
        off = ptr - ctypes.addressof(self.cache)
        self.cache_ops.append(("invalidate", off, size))
        ctypes.memmove(ptr, ctypes.addressof(self.mem) + off, size)

    def time_us(self, _ctx):
        self.time_calls += 1
        return self.now

    def delay_us(self, _ctx, us):
        self.now += us

    def hal(self, *, timer=True, delay=True, cache=True) -> Hal:
        self._keep = [READ32(self.read32), WRITE32(self.write32), MEM_MAP(self.mem_map),
                      CACHE_OP(self.clean), CACHE_OP(self.invalidate), TIME_US(self.time_us),
                      DELAY_US(self.delay_us)]
        r, w, m, c, i, t, d = self._keep
        return Hal(None, r, w, m, c if cache else CACHE_OP(), i if cache else CACHE_OP(),
                   t if timer else TIME_US(), d if delay else DELAY_US())

    def writes(self):
        return [(n, v) for op, n, v in self.log if op == "w"]


@pytest.fixture
def mock(drv):
    def make(**kw):
        hal_kw = {k: kw.pop(k) for k in ("timer", "delay", "cache") if k in kw}
        m = MockAccel(**kw)
        m.hal_struct = m.hal(**hal_kw)
        m.dev = ctypes.create_string_buffer(drv.glue_sizeof_dev())
        assert drv.ilmpq_init(m.dev, ctypes.byref(m.hal_struct)) == OK
        m.devp = ctypes.addressof(m.dev)
        return m
    return make


def test_init_rejects_missing_hal_functions(drv):
    m = MockAccel()
    dev = ctypes.create_string_buffer(drv.glue_sizeof_dev())
    full = m.hal()
    assert drv.ilmpq_init(None, ctypes.byref(full)) == ERR["ARG"]
    assert drv.ilmpq_init(dev, None) == ERR["ARG"]
    for missing in ("read32", "write32", "mem_map"):
        h = m.hal()
        setattr(h, missing, type(getattr(h, missing))())
        assert drv.ilmpq_init(dev, ctypes.byref(h)) == ERR["ARG"], missing
    assert drv.ilmpq_init(dev, ctypes.byref(m.hal(timer=False, delay=False, cache=False))) == OK
    assert not m.log   # init touches no register


@pytest.mark.parametrize("reg, change, expect", [
    ("id", lambda v: v ^ 1, "NO_DEVICE"),
    ("id", lambda v: 0xFFFF_FFFF, "NO_DEVICE"),
    ("version", lambda v: v + (1 << 16), "VERSION"),
    ("config_id", lambda v: v ^ 0x8000_0000, "CONFIG"),
    ("geometry", lambda v: v + 1, "CONFIG"),
    ("datapath", lambda v: v ^ 0xFF, "CONFIG"),
    ("buffers", lambda v: v + (1 << 8), "CONFIG"),
])
def test_check_names_what_differs(drv, mock, reg, change, expect):
    m = mock()
    off = m.rm.offset(reg)
    m.ident[off] = change(m.ident[off])
    assert drv.ilmpq_check(m.devp) == ERR[expect]
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 4096) == OK
    assert drv.ilmpq_start(m.devp, BASE, 4) == ERR[expect]
    assert not m.writes()   # nothing is started on the wrong hardware


def test_check_accepts_a_minor_version_change(drv, mock):
    m = mock()
    off = m.rm.offset("version")
    m.ident[off] = m.rm.encode("version", m.ident[off], minor=200, patch=7)
    assert drv.ilmpq_check(m.devp) == OK


def test_start_writes_the_run_registers_in_order_then_ctrl(drv, mock):
    m = mock(run_us=30)
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 4096) == OK
    assert drv.ilmpq_run(m.devp, BASE + 0x40, 7, 1000) == OK
    rm = m.rm
    assert m.writes() == [
        ("prog_addr", BASE + 0x40), ("prog_len", 7), ("win_base", BASE),
        ("win_limit", BASE + 4096), ("wr_base", BASE), ("wr_limit", BASE + 4096),
        ("prog_tag", 0), ("watchdog", 100_000),
        ("status", rm.encode("status", done=1)),
        ("ctrl", rm.encode("ctrl", start=1, irq_en=1)),
        ("status", rm.encode("status", done=1)),     # the acknowledge after the end
    ]
    assert m.now >= 30 and m.done is False


def test_mac_key_and_nonce_writes(drv, mock):
    """The key goes to the write-only MAC_KEY0..3 (little-endian bytes, as the Python driver
    writes them), the nonce and the enable bit to MAC_NONCE_LO/HI and MAC_CTRL; nothing is
    read back but STATUS, and nothing is written while a run is in progress."""
    key = bytes(range(0xA0, 0xB0))
    m = mock(run_us=30)
    assert drv.ilmpq_set_mac_key(m.devp, key) == OK
    assert drv.ilmpq_set_mac(m.devp, 1, 0x0123_4567_89AB_CDEF) == OK
    assert drv.ilmpq_set_mac(m.devp, 0, 0) == OK
    rm = m.rm
    assert m.writes() == [
        *((f"mac_key{i}", int.from_bytes(key[4 * i:4 * i + 4], "little")) for i in range(4)),
        ("mac_nonce_lo", 0x89AB_CDEF), ("mac_nonce_hi", 0x0123_4567),
        ("mac_ctrl", rm.encode("mac_ctrl", enable=1)),
        ("mac_ctrl", rm.encode("mac_ctrl", enable=0)),
    ]
    assert {name for kind, name, _ in m.log if kind == "r"} == {"status"}
    assert drv.ilmpq_set_mac_key(None, key) == ERR["ARG"]
    assert drv.ilmpq_set_mac_key(m.devp, None) == ERR["ARG"]
    assert drv.ilmpq_set_mac(None, 1, 0) == ERR["ARG"]
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
    assert drv.ilmpq_start(m.devp, BASE, 1) == OK
    n = len(m.writes())
    assert drv.ilmpq_set_mac_key(m.devp, key) == ERR["BUSY"]
    assert drv.ilmpq_set_mac(m.devp, 1, 5) == ERR["BUSY"]
    assert len(m.writes()) == n


def test_arena_is_checked_against_the_window_and_written_at_start(drv, mock):
    m = mock(run_us=30)
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 4096) == OK
    for lo, hi in ((BASE - 64, BASE + 64), (BASE + 128, BASE + 64), (BASE, BASE + 4160)):
        assert drv.ilmpq_set_arena(m.devp, lo, hi) == ERR["WINDOW"]
    assert drv.ilmpq_set_arena(m.devp, BASE + 1024, BASE + 2048) == OK
    assert drv.ilmpq_run(m.devp, BASE + 0x40, 7, 1000) == OK
    w = dict(m.writes())
    assert (w["wr_base"], w["wr_limit"]) == (BASE + 1024, BASE + 2048)
    # a new window resets the arena to the whole window
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 4096) == OK
    assert drv.ilmpq_run(m.devp, BASE + 0x40, 7, 1000) == OK
    w = [v for k, v in m.writes() if k in ("wr_base", "wr_limit")]
    assert w[-2:] == [BASE, BASE + 4096]


def test_every_hardware_error_code_is_returned_with_err_info(drv, mock):
    for code in ErrorCode:
        m = mock(run_us=5, error=code, info=0x1234_5678 + int(code))
        assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
        rc = drv.ilmpq_run(m.devp, BASE, 1, 100)
        if code == ErrorCode.NONE:
            assert rc == OK
            continue
        assert rc == hw(code), (code, rc)
        assert drv.ilmpq_strerror(rc).decode() == code.name
        assert _u32_at(m.devp, drv.glue_offsetof_last_err_info()) == 0x1234_5678 + int(code)
        assert m.writes()[-1] == ("status", m.rm.encode("status", done=1))   # acknowledged


def test_error_flag_without_a_code(drv, mock):
    m = mock(run_us=5)
    m.error = ErrorCode.NONE
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
    assert drv.ilmpq_start(m.devp, BASE, 1) == OK
    m.now += 10
    m._tick()
    m.err = True   # a broken bitstream: error without a code
    assert drv.ilmpq_poll(m.devp) == HW_BASE


def test_timeout_soft_resets(drv, mock):
    m = mock(run_us=10)
    m.stuck = True
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
    assert drv.ilmpq_run(m.devp, BASE, 1, 500) == ERR["TIMEOUT"]
    assert 500 <= m.now <= 500 + 10 + 10
    w = m.writes()
    assert ("ctrl", m.rm.encode("ctrl", soft_reset=1, irq_en=1)) in w
    assert w[-1] == ("status", m.rm.encode("status", done=1))
    assert m.busy_until is None and not m.done
    assert drv.ilmpq_poll(m.devp) == ERR["IDLE"]
    assert drv.ilmpq_wait(m.devp, 10) == ERR["IDLE"]


def test_a_soft_reset_that_never_completes(drv, mock):
    m = mock(run_us=10)
    m.stuck = m.reset_stuck = True
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
    assert drv.ilmpq_run(m.devp, BASE, 1, 100) == ERR["RESET"]
    assert m.now >= 100 + 10_000    # ILMPQ_DEFAULT_RESET_TIMEOUT_US
    assert drv.ilmpq_soft_reset(m.devp) == ERR["RESET"]


def test_timeout_without_a_timer_counts_polls(drv, mock):
    m = mock(run_us=10, timer=False, delay=False)
    m.stuck = True
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 64) == OK
    assert drv.ilmpq_run(m.devp, BASE, 1, 100) == ERR["TIMEOUT"]
    polls = [e for e in m.log if e[:2] == ("r", "status")]
    # one busy check at start, 100 / poll_us(10) + 1 polls and the last look, then the
    # soft reset's first idle check
    assert len(polls) == 1 + 10 + 1 + 1 + 1
    assert m.now == 0 and m.time_calls == 0


def test_busy_and_bad_start_arguments(drv, mock):
    m = mock(run_us=100)
    p = m.devp
    assert drv.ilmpq_start(p, BASE, 1) == ERR["WINDOW"]        # no window yet
    assert drv.ilmpq_set_window(p, BASE + 64, BASE + 64) == ERR["WINDOW"]
    assert drv.ilmpq_set_window(p, BASE, BASE + 256) == OK
    assert drv.ilmpq_start(p, BASE + 4, 1) == ERR["ARG"]       # not beat-aligned
    assert drv.ilmpq_start(p, BASE, 0) == ERR["ARG"]
    assert drv.ilmpq_start(p, BASE + 256, 1) == ERR["WINDOW"]
    assert drv.ilmpq_start(p, BASE - 8, 1) == ERR["WINDOW"]
    assert drv.ilmpq_start(None, BASE, 1) == ERR["ARG"]
    assert drv.ilmpq_wait(p, 10) == ERR["IDLE"]
    assert drv.ilmpq_start(p, BASE, 1) == OK
    n = len(m.writes())
    assert drv.ilmpq_start(p, BASE, 1) == ERR["BUSY"]
    assert len(m.writes()) == n                                 # nothing written when busy
    assert drv.ilmpq_poll(p) == PENDING
    assert drv.ilmpq_wait(p, 1000) == OK


def test_counters_read_lo_then_hi_and_keep_64_bits(drv, mock):
    m = mock()
    for i, (name, _) in enumerate(COUNTER_NAMES):
        m.counters[name] = (i + 1) * 0x1_0000_0001 + (0xFFFF_FFF0 if i % 2 else 0)
    expect = dict(m.counters)
    c = Counters()
    assert drv.ilmpq_read_counters(m.devp, ctypes.byref(c)) == OK
    assert {name: getattr(c, name) for name, _ in COUNTER_NAMES} == expect
    order = [n for op, n, _ in m.log]
    assert order == [f"{name}_{h}" for name, _ in COUNTER_NAMES for h in ("lo", "hi")]
    assert drv.ilmpq_read_counters(m.devp, None) == ERR["ARG"]


def test_memory_copies_clean_after_writing_and_invalidate_before_reading(drv, mock, rng):
    m = mock()
    data = rng.integers(0, 256, size=200, dtype=np.uint8).tobytes()
    assert drv.ilmpq_mem_write(m.devp, BASE + 24, data, len(data)) == OK
    assert m.cache_ops == [("clean", 24, 200)]
    assert bytes(m.mem[24:224]) == data
    fresh = rng.integers(0, 256, size=64, dtype=np.uint8).tobytes()
    ctypes.memmove(ctypes.addressof(m.mem) + 1000, fresh, 64)   # the device writes memory
    buf = ctypes.create_string_buffer(64)
    assert drv.ilmpq_mem_read(m.devp, BASE + 1000, buf, 64) == OK
    assert m.cache_ops[-1] == ("invalidate", 1000, 64) and buf.raw == fresh
    # load_image = write + clean + window
    assert drv.ilmpq_load_image(m.devp, BASE, data, len(data)) == OK
    assert m.cache_ops[-1] == ("clean", 0, 200)
    assert drv.ilmpq_start(m.devp, BASE + 192, 1) == OK         # inside [BASE, BASE + 200)
    assert drv.ilmpq_wait(m.devp, 1000) == OK
    assert drv.ilmpq_start(m.devp, BASE + 200, 1) == ERR["WINDOW"]
    # bad ranges
    assert drv.ilmpq_mem_write(m.devp, BASE, data, 0) == ERR["ARG"]
    assert drv.ilmpq_mem_write(m.devp, BASE, None, 4) == ERR["ARG"]
    assert drv.ilmpq_mem_write(m.devp, 0xFFFF_FFF0, data, 32) == ERR["ARG"]   # wraps 32 bits
    assert drv.ilmpq_mem_write(m.devp, BASE + 4090, data, 8) == ERR["MEM"]    # not mapped
    assert drv.ilmpq_mem_read(m.devp, BASE - 4, buf, 8) == ERR["MEM"]
    assert drv.ilmpq_load_image(m.devp, 0, data, 8) == ERR["MEM"]


def test_coherent_memory_needs_no_cache_functions(drv, mock, rng):
    m = mock(cache=False)
    data = rng.integers(0, 256, size=32, dtype=np.uint8).tobytes()
    assert drv.ilmpq_mem_write(m.devp, BASE, data, 32) == OK
    buf = ctypes.create_string_buffer(32)
    assert drv.ilmpq_mem_read(m.devp, BASE, buf, 32) == OK
    assert buf.raw == data and m.cache_ops == []


def test_identity_of_the_mock_is_what_python_expects(drv, mock):
    """The mock's identity words are the regmap's CONST values, as HardwareIdentity sees them."""
    m = mock()
    ident = (ctypes.c_uint32 * 6)()
    assert drv.ilmpq_read_identity(m.devp, ident) == OK
    got = HardwareIdentity.read(m.rm, lambda off: m.ident[off])
    assert got.mismatch(HardwareIdentity.expected(m.rm)) is None
    assert list(ident) == list(m.ident.values())
    assert drv.ilmpq_read_identity(m.devp, None) == ERR["ARG"]


def test_start_refuses_while_the_bus_is_abandoned(drv, mock):
    """STATUS.bus_abandoned: ilmpq_start returns ILMPQ_ERR_BUS_ABANDONED without writing a
    register; ilmpq_clear_bus_abandoned (after the host reset the interconnect) clears the W1C
    bit alone, and the next run goes through."""
    m = mock(run_us=5)
    assert drv.ilmpq_set_window(m.devp, BASE, BASE + 4096) == OK
    m.bus_abandoned = True
    n = len(m.writes())
    assert drv.ilmpq_start(m.devp, BASE, 1) == ERR["BUS_ABANDONED"]
    assert m.writes()[n:] == []
    assert drv.ilmpq_strerror(ERR["BUS_ABANDONED"]).decode().startswith(
        "ILMPQ_ERR_BUS_ABANDONED (reset the AXI interconnect")
    assert drv.ilmpq_clear_bus_abandoned(m.devp) == OK
    assert m.writes()[n:] == [("status", m.rm.encode("status", bus_abandoned=1))]
    assert not m.bus_abandoned
    assert drv.ilmpq_run(m.devp, BASE, 1, 100) == OK


@pytest.mark.verilator
def test_one_call_inference_takes_the_raw_image(rtl, rng):
    """A model whose input the accelerator lays out itself: ilmpq_infer gets the image's own
    HWC bytes (what a camera or a decoder gives a bare-metal application), nothing prepared by
    the host; back to back through both slots, each frame golden's logits."""
    drv, dev = rtl
    model = random_qmodel(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 8, 8),
                          max_channels=9)
    comp = compile_model(model, TINY, base=BASE)
    assert comp.input_layout in ("direct", "layout") and comp.one_program
    image = bytes(comp.image)
    assert drv.ilmpq_load_image(dev, comp.base, image, len(image)) == OK
    assert drv.ilmpq_set_arena(dev, *comp.arena) == OK
    out_t = comp.tensors[comp.output]
    slots = [FrameSlot(s.input_addr, s.output_addr, s.prog_addr, s.n_instr, s.prog_tag,
                       s.input_check, comp.input_row_bytes)
             for s in comp.slots]
    imgs = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(3)]
    want = [reference.run(model, np.transpose(img, (2, 0, 1)), spec=TINY.numeric)[model.output]
            for img in imgs]
    buf = (ctypes.c_uint8 * out_t.nbytes)()
    for k, img in enumerate(imgs):
        raw = img.tobytes()
        rc = drv.ilmpq_infer(dev, ctypes.byref(slots[k % 2]), raw, len(raw), buf,
                             out_t.nbytes, 1_000_000)
        assert rc == OK, drv.ilmpq_strerror(rc).decode()
        np.testing.assert_array_equal(out_t.from_memory(bytes(buf)), want[k])


def test_write_input_writes_a_host_tensors_check_entries_as_python_does(drv, mock, rng):
    """A host layer's output written by the application through ilmpq_write_input with its
    compiled.json "host_checks" entry: memory holds byte for byte what the Python drivers write
    (``Compiled.host_writes``: the tensor and its check entries); compiled with
    ``act_check=False`` the tensor has no entry (check 0) and nothing but the tensor is
    written."""
    from e2e_util import host_layer_model
    model, _ = host_layer_model(13, TINY)
    for act_check in (True, False):
        comp = compile_model(model, TINY, base=BASE, act_check=act_check)
        p = comp.tensors["p"]
        assert comp.size <= 4096 and ("p" in comp.host_checks) == act_check
        m = mock()
        payload = rng.integers(0, 256, p.nbytes, dtype=np.uint8).tobytes()
        chk, row_bytes = comp.host_checks.get("p", (0, 0))
        assert drv.ilmpq_write_input(m.devp, p.addr, chk, row_bytes, payload,
                                     len(payload)) == OK
        want = bytearray(4096)
        writes = comp.host_writes("p", payload)
        assert len(writes) == (2 if act_check else 1)
        for a, d in writes:
            want[a - BASE:a - BASE + len(d)] = d
        assert bytes(m.mem) == bytes(want)
        if not act_check:
            assert m.cache_ops == [("clean", p.addr - BASE, p.nbytes)]


# -- batched programs ----------------------------------------------------------------------------

def _ptrs(bufs):
    """A C array of pointers to ``bufs`` (bytes or ctypes buffers), kept alive on it."""
    keep = [ctypes.create_string_buffer(b, len(b)) if isinstance(b, bytes) else b for b in bufs]
    arr = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
    arr._keep = keep
    return arr


@pytest.mark.verilator
def test_batched_program_runs_bit_exact_through_the_c_driver(rtl, rng, tmp_path):
    """A batch-2 program of a small random model (tiny RTL, non-coherent cache model), set up
    from the files ``save_compiled`` writes only (image.bin, compiled.json: base, arena, slots
    with their images, input_row_bytes, output_bytes): three images (edges on purpose) through
    ilmpq_infer_batch_start/finish over the two slots, the last group of one filled up by the
    driver; every image's output bit-exact with golden run on it alone, and each run's CYCLES
    those of the Python driver on the same RTL."""
    import json
    from ilmpq.firmware.compiler import save_compiled
    drv, dev = rtl
    model = _model(rng)
    comp = compile_model(model, TINY, base=BASE, batch=2)
    assert comp.batch == 2 and comp.one_program and len(comp.slots) == 2
    save_compiled(comp, tmp_path)
    meta = json.loads((tmp_path / "compiled.json").read_text())
    assert meta["batch"] == 2 and len(meta["slots"]) == 2
    image = (tmp_path / "image.bin").read_bytes()
    assert drv.ilmpq_load_image(dev, meta["base"], image, len(image)) == OK
    assert drv.ilmpq_set_arena(dev, *meta["arena"]) == OK
    inp, out_t = comp.tensors[comp.input], comp.tensors[comp.output]
    assert meta["output_bytes"] == out_t.nbytes
    slots = []
    for fs in meta["slots"]:
        ims = (BatchImage * meta["batch"])(*[BatchImage(im["input_addr"], im["input_check"],
                                                        im["output_addr"])
                                             for im in fs["images"]])
        slots.append(BatchSlot(fs["prog_addr"], fs["n_instr"], fs["prog_tag"],
                               meta["input_row_bytes"], meta["batch"],
                               ctypes.cast(ims, ctypes.POINTER(BatchImage))))
        slots[-1]._ims = ims
    imgs = [np.full((3, 7, 7), 255), rng.integers(0, 256, size=(3, 7, 7)), np.zeros((3, 7, 7))]
    imgs = [np.asarray(im, np.int64) for im in imgs]
    data = [inp.to_memory(im) for im in imgs]
    got, cycles = [], []
    for k, group in enumerate((data[:2], data[2:])):
        slot = slots[k % 2]
        outs = [(ctypes.c_uint8 * meta["output_bytes"])() for _ in group]
        rc = drv.ilmpq_infer_batch_start(dev, ctypes.byref(slot), _ptrs(group), len(group),
                                         len(group[0]))
        assert rc == OK, drv.ilmpq_strerror(rc).decode()
        rc = drv.ilmpq_infer_batch_finish(dev, ctypes.byref(slot), _ptrs(outs), len(outs),
                                          meta["output_bytes"], 1_000_000)
        assert rc == OK, drv.ilmpq_strerror(rc).decode()
        got += [out_t.from_memory(bytes(o)) for o in outs]
        cycles.append(_counters(drv, dev)["cycles"])
    assert len(got) == 3
    for im, g in zip(imgs, got):
        np.testing.assert_array_equal(g, reference.run(model, im, spec=TINY.numeric)[model.output])
    from ilmpq.firmware.sim.simulate import simulate
    py = simulate(comp, imgs, sim="verilator")
    assert [r.stats["cycles"] for r in py[::2]] == cycles and cycles[0] > 0


def test_batched_calls_check_their_arguments_and_fill_a_last_group(drv, mock, rng):
    """ilmpq_infer_batch_start/finish on the mock: every bad argument is ILMPQ_ERR_ARG with
    nothing written (start) or before waiting (finish); a busy device is ILMPQ_ERR_BUSY; one
    input for a slot of two is written into both images, each with its own check entries as
    Python computes them; finish reads each image's own output."""
    m = mock(run_us=20)
    p = m.devp
    beat = TINY.beat_bytes
    row = 2 * beat
    ims = [BatchImage(BASE + 0x100, BASE + 0x300, BASE + 0x400),
           BatchImage(BASE + 0x200, BASE + 0x340, BASE + 0x480)]
    arr = (BatchImage * 2)(*ims)
    slot = BatchSlot(BASE, 1, 0x1234_5678, row, 2, ctypes.cast(arr, ctypes.POINTER(BatchImage)))
    no_images = BatchSlot(BASE, 1, 0, row, 2, None)
    assert drv.ilmpq_set_window(p, BASE, BASE + 4096) == OK
    data = rng.integers(0, 256, 4 * row, dtype=np.uint8).tobytes()
    two, one = _ptrs([data, data]), _ptrs([data])
    with_null = (ctypes.c_void_p * 2)(ctypes.addressof(two._keep[0]), None)
    n0 = len(m.log)
    for args in [(None, ctypes.byref(slot), two, 2), (p, None, two, 2),
                 (p, ctypes.byref(no_images), two, 2), (p, ctypes.byref(slot), None, 2),
                 (p, ctypes.byref(slot), with_null, 2), (p, ctypes.byref(slot), two, 0),
                 (p, ctypes.byref(slot), _ptrs([data] * 3), 3)]:
        assert drv.ilmpq_infer_batch_start(*args, len(data)) == ERR["ARG"], args
    assert len(m.log) == n0 and m.cache_ops == [] and not any(m.mem)
    # a last group of one: both images get it, each with its own check entries
    assert drv.ilmpq_infer_batch_start(p, ctypes.byref(slot), one, 1, len(data)) == OK
    want = bytearray(4096)
    for im in ims:
        want[im.input_addr - BASE:im.input_addr - BASE + len(data)] = data
        entries = isa.act_check_entries(im.input_addr, data, row, beat)
        want[im.input_check - BASE:im.input_check - BASE + len(entries)] = entries
    assert bytes(m.mem) == bytes(want)
    assert ("w", "prog_tag", 0x1234_5678) in m.log and m.busy_until is not None
    n1 = len(m.log)
    assert drv.ilmpq_infer_batch_start(p, ctypes.byref(slot), two, 2, len(data)) == ERR["BUSY"]
    assert len(m.log) == n1 and bytes(m.mem) == bytes(want)
    # finish: bad arguments before any wait (no STATUS read), then each image's own output
    outs = [(ctypes.c_uint8 * 8)() for _ in range(2)]
    out_null = (ctypes.c_void_p * 2)(ctypes.addressof(outs[0]), None)
    for args in [(None, ctypes.byref(slot), _ptrs(outs), 2), (p, None, _ptrs(outs), 2),
                 (p, ctypes.byref(no_images), _ptrs(outs), 2), (p, ctypes.byref(slot), None, 2),
                 (p, ctypes.byref(slot), out_null, 2), (p, ctypes.byref(slot), _ptrs(outs), 0),
                 (p, ctypes.byref(slot), _ptrs(outs * 2), 3)]:
        assert drv.ilmpq_infer_batch_finish(*args, 8, 1000) == ERR["ARG"], args
    assert len(m.log) == n1
    results = [bytes(range(10, 18)), bytes(range(50, 58))]
    for im, r in zip(ims, results):
        ctypes.memmove(ctypes.addressof(m.mem) + im.output_addr - BASE, r, 8)
    assert drv.ilmpq_infer_batch_finish(p, ctypes.byref(slot), _ptrs(outs), 2, 8, 1000) == OK
    assert [bytes(o) for o in outs] == results
