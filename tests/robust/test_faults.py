"""Fault injection on the accelerator RTL (Amaranth simulator, tiny configuration).

Every fault the hardware must catch is checked against the containment contract of
``docs/reliability.md`` (:func:`faultsim.assert_contained`): the driver raises the specific
exception with the specific ErrorCode, STATUS latched that code, no AXI request is issued after
the latch, nothing is outstanding when the driver returns, the memory outside the DMA window is
unchanged byte for byte, and after a soft reset the same image runs bit-exact with golden with
exactly the counters of a clean run. The AXI4 checker (bursts inside the window) and the
AXI4-Lite checker watch every simulation.

Instructions carry a CRC-32 check word (index and PROG_ADDR included), lane parameters a CRC
trailer per mtile, every STORE must drain what the COMPUTE before it filled, and STOREs may only
write the activation arena (WR_BASE / WR_LIMIT): each is a contained fault below. Faults whose
detection is not part of the design (activations carry no integrity check) are strict ``xfail``
tests: they document the gap and start failing the day it is closed.
"""

import zlib

import numpy as np
import pytest

from faultsim import (
    GUARD, apply_at_rest, assert_contained, assert_recovered, flip_read_bits,
    patch_instruction, program, remap_reads, run_fault, weight_streams,
)
from ilmpq.firmware import wpkg
from ilmpq.firmware.compiler import compile_model
from ilmpq.firmware.driver import (
    ConfigMismatch, DMAError, DriverTimeout, HardwareTimeout, IntegrityError, ProgramError,
    WeightPackageRejected,
)
from ilmpq.golden import reference
from ilmpq.golden.random_models import ModelBuilder
from ilmpq.hdl.config import get_config
from ilmpq.firmware.sim.models.axi_mem import DEFAULT_READ_LATENCY
from ilmpq.hdl.dma import CLEAR_SLACK, MAX_COMMAND_BEATS
from ilmpq.hdl.isa import INSTR_BITS, Opcode, encode, params_block_bytes, seal
from ilmpq.hdl.status import ErrorCode

TINY = get_config("tiny")
BB = TINY.beat_bytes
#: counters that do not depend on the memory's timing
TIMING_FREE = ("pe_busy", "instructions", "bytes_read", "bytes_written")


class Net:
    """Two conv layers on a 2 x 2 image: c1 (3 x 3, 2 mtiles -> a LOAD_WEIGHTS stream of two
    equal 36-word packages) and c2 (1 x 1, one package); one pixel tile each. Program:
    LOAD_ROWS, LOAD_WEIGHTS, COMPUTE, STORE per layer, then END (about 370 cycles)."""

    def __init__(self, cfg=TINY, mac=None):
        rng = np.random.default_rng(2024)
        b = ModelBuilder(rng, spec=cfg.numeric, ratio=cfg.ratio, input_shape=(3, 2, 2))
        x = b.conv("c1", "input", 5, 3, padding=1)
        y = b.conv("c2", x, 4, 1)
        self.model = b.build(y)
        self.mac = mac                  # a wpkg.MacKey: authenticated packages
        self.comp = compile_model(self.model, cfg, mac=mac)
        self.image = rng.integers(0, 256, size=(3, 2, 2))
        self.streams = weight_streams(self.comp)
        self.prog = program(self.comp)
        clean = run_fault(self.comp, self.image, recover=False,
                          mac_key=None if mac is None else mac.key)
        assert clean.error is None and clean.output is not None
        ref = reference.run(self.model, self.image, spec=cfg.numeric)
        for layer in self.model.layers:
            np.testing.assert_array_equal(clean.output[layer.output], ref[layer.output])
        self.reads = sum(t.kind == "r" for t in clean.log)
        self.writes = sum(t.kind == "w" for t in clean.log)
        #: bursts per (port, kind)
        self.bursts = {(p, k): sum(t.kind == k and t.port == p for t in clean.log)
                       for p in range(cfg.axi_ports) for k in "rw"}
        self.clean_stats = clean.output_stats

    def instr(self, opcode, nth=0):
        return [i for i in self.prog if i.opcode == opcode][nth]

    def contained(self, out, code, exc_type, *, timing=True):
        """:func:`assert_contained`; with ``timing`` (deterministic memory) the recovery run's
        counters must equal a clean run's exactly, else only the timing-free ones."""
        stats = self.clean_stats
        if not timing:
            stats = {k: v for k, v in stats.items() if k in TIMING_FREE}
            out.recovered_stats = {k: v for k, v in out.recovered_stats.items()
                                   if k in TIMING_FREE}
        assert_contained(out, code=code, exc_type=exc_type, model=self.model, image=self.image,
                         clean_stats=stats)


@pytest.fixture(scope="module")
def net():
    n = Net()
    assert [len(s) for s in n.streams] == [2, 1]
    assert n.streams[0][0].size == n.streams[0][1].size
    return n


def _pkg(net, stream, k):
    return net.streams[stream][k]


# -- weight packages: in flight (Deep-Dup and transmission faults) and at rest -----------------

def _payload_flip(net):
    p = _pkg(net, 0, 1)
    return flip_read_bits(p.addr + BB + 5 * BB + 3, 0x10)


def _magic_flip(net):
    return flip_read_bits(_pkg(net, 0, 0).addr, 0x01)          # magic byte 0


def _seq_flip(net):
    return flip_read_bits(_pkg(net, 0, 1).addr + 4, 0x02)      # seq (bits 32..47)


def _n_words_odd(net):
    return flip_read_bits(_pkg(net, 0, 0).addr + 6, 0x01)      # n_words 36 -> 37: not whole sets


def _n_words_too_big(net):
    return flip_read_bits(_pkg(net, 0, 0).addr + 6, 0x40)      # n_words 36 -> 100 > wbuf_depth


def _trailer_flip(net):
    p = _pkg(net, 1, 0)
    return flip_read_bits(p.addr + p.size - BB + 5, 0x80)      # crc_inv of the last package


def _duplicate(net):
    """Deep-Dup's adversarial weight duplication: package 0 again in place of package 1."""
    p0, p1 = _pkg(net, 0, 0), _pkg(net, 0, 1)
    return remap_reads(lambda a: a - p1.addr + p0.addr if p1.addr <= a < p1.addr + p1.size
                       else None)


def _drop(net):
    """Package 0 lost: the stream carries package 1 and then whatever follows it."""
    p0 = _pkg(net, 0, 0)
    end = p0.addr + 2 * p0.size
    return remap_reads(lambda a: a + p0.size if p0.addr <= a < end else None)


def _reorder(net):
    p0, p1 = _pkg(net, 0, 0), _pkg(net, 0, 1)

    def src(a):
        if p0.addr <= a < p0.addr + p0.size:
            return a + p0.size
        if p1.addr <= a < p1.addr + p1.size:
            return a - p0.size
        return None
    return remap_reads(src)


def _beat_duplicated(net):
    """One payload beat delivered twice; the rest of the package shifts by one beat."""
    p = _pkg(net, 0, 1)
    at = p.addr + 10 * BB
    return remap_reads(lambda a: a - BB if at <= a < p.addr + p.size else None)


WEIGHT_FAULTS = {
    "payload_bit_flip": (_payload_flip, ErrorCode.WPKG_CRC),
    "header_magic_bit_flip": (_magic_flip, ErrorCode.WPKG_MAGIC),
    "header_seq_bit_flip": (_seq_flip, ErrorCode.WPKG_SEQ),
    "header_n_words_not_whole_sets": (_n_words_odd, ErrorCode.WPKG_LENGTH),
    "header_n_words_larger_than_bank": (_n_words_too_big, ErrorCode.WPKG_LENGTH),
    "trailer_bit_flip_last_package": (_trailer_flip, ErrorCode.WPKG_CRC),
    "duplicated_package": (_duplicate, ErrorCode.WPKG_SEQ),
    "dropped_package": (_drop, ErrorCode.WPKG_SEQ),
    "reordered_packages": (_reorder, ErrorCode.WPKG_SEQ),
    "duplicated_beat": (_beat_duplicated, ErrorCode.WPKG_CRC),
}


@pytest.mark.parametrize("name", list(WEIGHT_FAULTS))
def test_weight_package_fault_in_flight(net, name):
    make, code = WEIGHT_FAULTS[name]
    out = run_fault(net.comp, net.image, read_fault=make(net))
    assert out.faulty_beats > 0
    net.contained(out, code, WeightPackageRejected)


@pytest.mark.parametrize("name", ["payload_bit_flip", "duplicated_package", "reordered_packages"])
def test_weight_package_fault_at_rest(net, name):
    make, code = WEIGHT_FAULTS[name]
    fault = make(net)
    out = run_fault(net.comp, net.image,
                    corrupt=lambda img: apply_at_rest(fault, img, net.comp.base, BB))
    net.contained(out, code, WeightPackageRejected)


# -- truncated weight streams (the known gap: a stream that ends inside a package) -------------

def test_stream_ending_inside_the_final_package(net):
    """LOAD_WEIGHTS one beat short: the trailer of the last package never comes. Caught when
    the stream's last beat arrives (WPKG_LENGTH), not by the watchdog (TIMEOUT) as before."""
    lw = net.instr(Opcode.LOAD_WEIGHTS, 1)
    out = run_fault(net.comp, net.image, corrupt=lambda img: (
        patch_instruction(img, net.comp, lw, beats=lw.fields["beats"] - 1)))
    net.contained(out, ErrorCode.WPKG_LENGTH, WeightPackageRejected)


def test_stream_ending_inside_a_middle_package(net):
    """The two-package stream cut 12 beats into package 1."""
    lw = net.instr(Opcode.LOAD_WEIGHTS, 0)
    beats = _pkg(net, 0, 0).size // BB + 12
    out = run_fault(net.comp, net.image, corrupt=lambda img: (
        patch_instruction(img, net.comp, lw, beats=beats)))
    net.contained(out, ErrorCode.WPKG_LENGTH, WeightPackageRejected)


def test_final_package_header_claims_more_words(net):
    """The last package's n_words raised by one weight set (still a legal length): the payload
    swallows the trailer and the stream ends one set short."""
    p = _pkg(net, 1, 0)
    grow = TINY.words_per_set

    def corrupt(img):
        off = p.addr - net.comp.base + 6
        n = int.from_bytes(img[off:off + 2], "little")
        img[off:off + 2] = (n + grow).to_bytes(2, "little")
    out = run_fault(net.comp, net.image, corrupt=corrupt)
    net.contained(out, ErrorCode.WPKG_LENGTH, WeightPackageRejected)


# -- AXI error responses at random points -------------------------------------------------------

@pytest.mark.parametrize("resp", ["SLVERR", "DECERR"])
@pytest.mark.parametrize("kind,point", [("r", 0), ("r", 1), ("w", 0), ("w", 1)])
def test_axi_error_response(net, rng, kind, point, resp):
    n = net.reads if kind == "r" else net.writes
    index = int(rng.integers(n))
    out = run_fault(net.comp, net.image, errors={(kind, index): resp}, mem_mode="random",
                    seed=int(rng.integers(1 << 30)))
    code = ErrorCode[f"DMA_{'READ' if kind == 'r' else 'WRITE'}_{resp}"]
    net.contained(out, code, DMAError, timing=False)
    burst = [t for t in out.log if t.kind == kind][index]
    assert out.error.info == burst.addr


# -- stalls: the hardware watchdog and the driver's timeout -------------------------------------

@pytest.mark.parametrize("kind", ["r", "w"])
def test_stall_trips_the_watchdog(net, rng, kind):
    n = net.reads if kind == "r" else net.writes
    index = int(rng.integers(1, n))
    out = run_fault(net.comp, net.image, stalls={(kind, index): 500}, watchdog_cycles=150)
    net.contained(out, ErrorCode.TIMEOUT, HardwareTimeout)
    # the abort waited for the stalled burst: it completed, and nothing started after the latch
    burst = [t for t in out.log if t.kind == kind][index]
    assert burst.completed is not None and burst.completed > out.first_error[0]


def test_stall_trips_the_driver_timeout(net):
    """Watchdog disabled: the driver gives up, soft-resets the accelerator (which waits for the
    stalled burst) and raises DriverTimeout; nothing is issued after the soft reset."""
    index = net.reads // 2
    out = run_fault(net.comp, net.image, stalls={("r", index): 1000}, watchdog_cycles=0,
                    timeout_cycles=600)
    assert isinstance(out.error, DriverTimeout)
    assert out.first_error is None                       # no hardware error was latched
    assert len(out.soft_resets) >= 2                     # the driver's, then the recovery's
    reset_at = out.soft_resets[0]
    assert not out.requests_after(reset_at + 1)
    assert out.outstanding_at_end == 0
    assert out.guard_intact_after_fault and out.guard_intact_after_recovery
    assert_recovered(out, net.model, net.image, net.clean_stats)


# -- malformed programs ---------------------------------------------------------------------------

def _patched(net, opcode, nth=0, raw=None, **changes):
    ins = net.instr(opcode, nth)
    return lambda img: patch_instruction(img, net.comp, ins, raw=raw, **changes)


def test_unknown_opcode(net):
    ins = net.instr(Opcode.COMPUTE)
    raw = bytearray(INSTR_BITS // 8)
    raw[0] = 0x07                                        # opcode 7: not defined
    out = run_fault(net.comp, net.image, corrupt=_patched(net, Opcode.COMPUTE, raw=bytes(raw)))
    net.contained(out, ErrorCode.INSTR_OPCODE, ProgramError)
    assert out.error.info == ins.index


def test_program_without_end(net):
    end = net.instr(Opcode.END)
    out = run_fault(net.comp, net.image, corrupt=lambda img: patch_instruction(
        img, net.comp, end, opcode=Opcode.NOP))
    net.contained(out, ErrorCode.PROGRAM_OVERRUN, ProgramError)


FIELD_FAULTS = {
    "compute_kh_0": (Opcode.COMPUTE, {"kh": 0}),
    "compute_tile_exceeds_accumulators": (Opcode.COMPUTE, {"out_h": 9, "out_w": 8}),
    "load_rows_0_beats": (Opcode.LOAD_ROWS, {"beats": 0}),
    "load_rows_exceeds_buffer_half": (Opcode.LOAD_ROWS, {"beats": TINY.act_depth * TINY.tn
                                                         // BB // 2 + 1}),
    "load_weights_0_beats": (Opcode.LOAD_WEIGHTS, {"beats": 0}),
    # the DMA carries at most MAX_COMMAND_BEATS in a 21-bit field: never truncate the 24-bit one
    "load_weights_beyond_dma_limit": (Opcode.LOAD_WEIGHTS, {"beats": MAX_COMMAND_BEATS + 1}),
    "load_weights_beats_wrap_21_bits": (Opcode.LOAD_WEIGHTS, {"beats_plus": 1 << 21}),
    "store_pixels_exceed_accumulators": (Opcode.STORE, {"pixels": TINY.acc_depth + 1}),
    "store_unaligned_output": (Opcode.STORE, {"out_addr_delta": 4}),
}


@pytest.mark.parametrize("name", list(FIELD_FAULTS))
def test_instruction_field_out_of_range(net, name):
    opcode, changes = FIELD_FAULTS[name]
    ins = net.instr(opcode)
    changes = dict(changes)
    if "out_addr_delta" in changes:
        changes["out_addr"] = ins.fields["out_addr"] + changes.pop("out_addr_delta")
    if "beats_plus" in changes:
        changes["beats"] = ins.fields["beats"] + changes.pop("beats_plus")
    out = run_fault(net.comp, net.image, corrupt=lambda img: patch_instruction(
        img, net.comp, ins, **changes))
    net.contained(out, ErrorCode.INSTR_FIELD, ProgramError)


def _window_cases(net):
    lo, hi = net.comp.window
    return {
        "load_rows_below_window": (Opcode.LOAD_ROWS, {"addr": lo - 64}, ErrorCode.DMA_READ_WINDOW,
                                   lo - 64),
        "load_rows_past_window": (Opcode.LOAD_ROWS, {"addr": hi - BB},
                                  ErrorCode.DMA_READ_WINDOW, hi - BB),
        "load_weights_at_limit": (Opcode.LOAD_WEIGHTS, {"addr": hi}, ErrorCode.DMA_READ_WINDOW,
                                  hi),
        "store_params_outside": (Opcode.STORE, {"params_addr": lo - GUARD},
                                 ErrorCode.DMA_READ_WINDOW, lo - GUARD),
        "store_output_below_window": (Opcode.STORE, {"out_addr": lo - GUARD},
                                      ErrorCode.DMA_WRITE_WINDOW, lo - GUARD),
        "store_output_past_window": (Opcode.STORE, {"out_addr": hi},
                                     ErrorCode.DMA_WRITE_WINDOW, hi),
        "load_rows_unaligned": (Opcode.LOAD_ROWS, {"addr": lo + 4}, ErrorCode.DMA_ALIGN, lo + 4),
        "load_rows_end_overflows_32_bits": (Opcode.LOAD_ROWS, {"addr": 0xFFFF_FFF8},
                                            ErrorCode.DMA_LENGTH, 0xFFFF_FFF8),
        "store_output_at_top_of_address_space": (Opcode.STORE, {"out_addr": 0xFFFF_FFF8},
                                                 ErrorCode.DMA_WRITE_WINDOW, 0xFFFF_FFF8),
        "load_weights_end_overflows_32_bits": (Opcode.LOAD_WEIGHTS, {"addr": 0xFFFF_FF00},
                                               ErrorCode.DMA_LENGTH, 0xFFFF_FF00),
    }


WINDOW_CASES = ["load_rows_below_window", "load_rows_past_window", "load_weights_at_limit",
                "store_params_outside", "store_output_below_window", "store_output_past_window",
                "load_rows_unaligned", "load_rows_end_overflows_32_bits",
                "store_output_at_top_of_address_space", "load_weights_end_overflows_32_bits"]


@pytest.mark.parametrize("name", WINDOW_CASES)
def test_address_outside_window_or_bad_length(net, name):
    opcode, changes, code, info = _window_cases(net)[name]
    ins = net.instr(opcode)
    out = run_fault(net.comp, net.image, corrupt=lambda img: patch_instruction(
        img, net.comp, ins, **changes))
    net.contained(out, code, DMAError)
    assert out.error.info == (ins.fields["addr"] if info is None else info)


PROGRAM_RUNS = {
    "prog_len_0": (None, lambda c: 0, ErrorCode.INSTR_FIELD, ProgramError),
    "prog_len_2_pow_31": (None, lambda c: 1 << 31, ErrorCode.INSTR_FIELD, ProgramError),
    "prog_len_beyond_dma_limit": (None, lambda c: MAX_COMMAND_BEATS // 4 + 1,
                                  ErrorCode.INSTR_FIELD, ProgramError),
    # 4 * n beats would wrap the DMA's 21-bit length to the real program's length
    "prog_len_wrapping_21_bits": (None, lambda c: (1 << 19) + c.steps[0].n_instr,
                                  ErrorCode.INSTR_FIELD, ProgramError),
    "prog_len_past_window": (None, lambda c: c.size // 32 + 4, ErrorCode.DMA_READ_WINDOW,
                             DMAError),
    "prog_addr_below_window": (lambda c: c.base - 256, None, ErrorCode.DMA_READ_WINDOW,
                               DMAError),
    "prog_addr_unaligned": (lambda c: c.steps[0].prog_addr + 4, None, ErrorCode.DMA_ALIGN,
                            DMAError),
}


@pytest.mark.parametrize("name", list(PROGRAM_RUNS))
def test_bad_program_registers(net, name):
    addr, n, code, exc = PROGRAM_RUNS[name]
    comp, step = net.comp, net.comp.steps[0]

    async def run(drv):
        await drv.run_program(step.prog_addr if addr is None else addr(comp),
                              step.n_instr if n is None else n(comp), comp.window, comp.arena,
                              step.prog_tag)
    out = run_fault(net.comp, net.image, run=run)
    net.contained(out, code, exc)


INCONSISTENT = {
    # COMPUTE and its STORE agree on 3 mtiles, the weight stream carries 2: the store unit
    # drains mtiles 0 and 1, then reads the parameters of a third mtile that has none (the
    # bytes after the layer's blocks fail the CRC trailer) -- caught before the watchdog
    "compute_more_mtiles_than_weights": ([(Opcode.COMPUTE, {"n_mtiles": 3}),
                                          (Opcode.STORE, {"n_mtiles": 3})],
                                         ErrorCode.PARAMS_CRC, IntegrityError),
    # in range, but the unit waits for work that never comes: only the watchdog ends the run
    "load_rows_waits_for_stores_never_issued": ([(Opcode.LOAD_ROWS, {"wait_stores": 5})],
                                                ErrorCode.TIMEOUT, HardwareTimeout),
}


@pytest.mark.parametrize("name", list(INCONSISTENT))
def test_inconsistent_program_ends_with_an_error(net, name):
    changes, code, exc = INCONSISTENT[name]
    patches = [_patched(net, opcode, **ch) for opcode, ch in changes]

    def corrupt(img):
        for p in patches:
            p(img)
    out = run_fault(net.comp, net.image, watchdog_cycles=150, corrupt=corrupt)
    net.contained(out, code, exc)


# -- configuration mismatch ---------------------------------------------------------------------

def test_bitstream_of_another_configuration_is_refused(net):
    async def run(drv):
        from ilmpq.firmware.driver import Driver
        other = Driver(drv.t, TINY.replace(wbuf_depth=128))
        await other.run_program(net.comp.steps[0].prog_addr, net.comp.steps[0].n_instr,
                                net.comp.window)
    out = run_fault(net.comp, net.image, run=run)
    assert isinstance(out.error, ConfigMismatch)
    assert "wbuf" in str(out.error) or "configuration" in str(out.error)
    assert out.first_error is None and not out.requests_after(-1)
    assert_recovered(out, net.model, net.image, net.clean_stats)


# -- known gaps: data without an integrity check ---------------------------------------------

class SilentCorruption(AssertionError):
    """The run finished without an error but its output differs from golden."""


def _silent(net, fault=None, **kw):
    out = run_fault(net.comp, net.image, read_fault=fault, recover=False, **kw)
    assert fault is None or out.faulty_beats > 0
    if out.error is None:
        ref = reference.run(net.model, net.image, spec=TINY.numeric)
        wrong = [layer.name for layer in net.model.layers
                 if not np.array_equal(out.output[layer.output], ref[layer.output])]
        assert wrong, "the fault had no effect on the output: not a test of detection"
        raise SilentCorruption(f"undetected: layers {wrong} silently wrong")


def test_activation_bit_flip_is_detected(net):
    """A bit flip in a beat LOAD_ROWS reads (here the input, whose check entries the driver
    writes) no longer gives a silently wrong frame (was a strict xfail): ACT_CRC. The
    containment of this and the other activation faults: the tests at the end of the file."""
    lr = net.instr(Opcode.LOAD_ROWS)
    _silent(net, flip_read_bits(lr.fields["addr"] + 2 * BB, 0x80))


def test_lane_parameter_bit_flip_is_detected(net):
    """Bias of lane 0 flipped in flight: the block's CRC trailer catches it before any output
    beat of that mtile (PARAMS_CRC, ERR_INFO = the block's address)."""
    st = net.instr(Opcode.STORE)
    fault = flip_read_bits(st.fields["params_addr"] + 2, 0x01)
    out = run_fault(net.comp, net.image, read_fault=fault)
    assert out.faulty_beats > 0
    net.contained(out, ErrorCode.PARAMS_CRC, IntegrityError)
    assert out.error.info == st.fields["params_addr"]
    assert not [r for r in out.requests if r.kind == "w" and r.edge > 0
                and r.edge < out.first_error[0] and r.addr >= st.fields["out_addr"]
                and r.addr < st.fields["out_addr"] + TINY.lanes_pad]


def test_lane_parameter_bit_flip_in_a_later_mtile_is_detected(net):
    """The trailer of mtile 1 (the block stride includes the trailer)."""
    st = net.instr(Opcode.STORE)
    addr = st.fields["params_addr"] + params_block_bytes(TINY.lanes_pad) + 16 * 2 + 5
    out = run_fault(net.comp, net.image, read_fault=flip_read_bits(addr, 0x04))
    net.contained(out, ErrorCode.PARAMS_CRC, IntegrityError)
    assert out.error.info == st.fields["params_addr"] + params_block_bytes(TINY.lanes_pad)


def test_instruction_bit_flip_is_detected(net):
    """STORE.relu of layer c1 cleared in flight: the check word no longer matches; nothing of
    that instruction is dispatched (INSTR_CRC, ERR_INFO = its index)."""
    st = net.instr(Opcode.STORE)
    out = run_fault(net.comp, net.image, read_fault=flip_read_bits(st.addr + 19, 0x01 << 6))
    assert out.faulty_beats > 0
    net.contained(out, ErrorCode.INSTR_CRC, ProgramError)
    assert out.error.info == st.index


@pytest.mark.parametrize("where", ["opcode", "check_word", "last_beat"])
def test_instruction_flip_anywhere_is_detected(net, where):
    ins = net.instr(Opcode.COMPUTE)
    addr = {"opcode": ins.addr, "check_word": ins.addr + 30,
            "last_beat": ins.addr + 25}[where]
    out = run_fault(net.comp, net.image, read_fault=flip_read_bits(addr, 0x02))
    net.contained(out, ErrorCode.INSTR_CRC, ProgramError)
    assert out.error.info == ins.index


def test_instruction_moved_to_another_index_is_detected(net):
    """Two instructions swapped at rest, each with its own valid check word: the index in the
    check catches the first one reached."""
    a, b = net.instr(Opcode.LOAD_WEIGHTS, 0), net.instr(Opcode.COMPUTE, 0)
    n = INSTR_BITS // 8

    def corrupt(img):
        oa, ob = a.addr - net.comp.base, b.addr - net.comp.base
        img[oa:oa + n], img[ob:ob + n] = bytes(img[ob:ob + n]), bytes(img[oa:oa + n])
    out = run_fault(net.comp, net.image, corrupt=corrupt)
    net.contained(out, ErrorCode.INSTR_CRC, ProgramError)
    assert out.error.info == min(a.index, b.index)


def test_instruction_of_another_program_is_detected(net):
    """Frame slot 1's program run at slot 0's address (same instructions but for other tensor
    addresses, sealed for its own PROG_ADDR): refused at its first instruction."""
    s0, s1 = net.comp.slots[0], net.comp.slots[1]
    n = s0.n_instr * INSTR_BITS // 8

    def corrupt(img):
        o0, o1 = s0.prog_addr - net.comp.base, s1.prog_addr - net.comp.base
        img[o0:o0 + n] = bytes(img[o1:o1 + n])
    out = run_fault(net.comp, net.image, corrupt=corrupt)
    net.contained(out, ErrorCode.INSTR_CRC, ProgramError)
    assert out.error.info == 0


@pytest.mark.parametrize("tag", ["other", "zero"])
def test_program_run_with_another_tag_is_refused(net, tag):
    """The same program at the same address with another PROG_TAG (a stale or replayed
    program from another compilation): refused at its first instruction."""
    step = net.comp.steps[0]
    bad = step.prog_tag ^ 0x8000_0001 if tag == "other" else 0
    assert bad != step.prog_tag

    async def run(drv):
        await drv.run_program(step.prog_addr, step.n_instr, net.comp.window, net.comp.arena,
                              bad)
    out = run_fault(net.comp, net.image, run=run)
    net.contained(out, ErrorCode.INSTR_CRC, ProgramError)
    assert out.error.info == 0


def test_inconsistent_store_is_detected(net):
    """STORE drains one of c1's two mtiles (a well-formed instruction with a valid check word):
    c2's STORE would drain c1's second bank as its own. Refused before dispatch."""
    st = net.instr(Opcode.STORE)
    out = run_fault(net.comp, net.image, corrupt=_patched(net, Opcode.STORE, n_mtiles=1))
    net.contained(out, ErrorCode.STORE_MISMATCH, ProgramError)
    assert out.error.info == st.index


@pytest.mark.parametrize("name,patches", [
    ("store_pool_flag_without_pool_compute", [(Opcode.STORE, 0, {"pool": 1})]),
    ("compute_without_store", [(Opcode.STORE, 0, {"opcode": Opcode.NOP})]),
    ("store_without_compute", [(Opcode.COMPUTE, 1, {"opcode": Opcode.NOP})]),
])
def test_store_compute_pairing(net, name, patches):
    def corrupt(img):
        for op, nth, ch in patches:
            patch_instruction(img, net.comp, net.instr(op, nth), **ch)
    out = run_fault(net.comp, net.image, corrupt=corrupt)
    net.contained(out, ErrorCode.STORE_MISMATCH, ProgramError)


TINY32 = TINY.replace(name="tiny32", axi_data_width=32)


@pytest.fixture(scope="module")
def net32():
    return Net(TINY32)


@pytest.mark.parametrize("fault", ["instruction_body", "check_word", "lane_parameters"])
def test_integrity_checks_on_a_32_bit_bus(net32, fault):
    """A 32-bit bus: the check word is a whole beat of its own (the fetch unit feeds
    ``index ^ PROG_ADDR`` in its place) and the parameter trailer is four beats."""
    st = net32.instr(Opcode.STORE)
    addr = {"instruction_body": st.addr + 19, "check_word": st.addr + 29,
            "lane_parameters": st.fields["params_addr"] + 2}[fault]
    out = run_fault(net32.comp, net32.image, read_fault=flip_read_bits(addr, 0x40))
    if fault == "lane_parameters":
        net32.contained(out, ErrorCode.PARAMS_CRC, IntegrityError)
    else:
        net32.contained(out, ErrorCode.INSTR_CRC, ProgramError)
        assert out.error.info == st.index


# -- write protection: STOREs only write the activation arena -------------------------------

def _sealed_replacement(ins, prog_tag, **changes):
    """In-flight fault: the instruction arrives with ``changes`` and a valid check word (a
    corruption the CRC does not see, e.g. a compiler bug): what write protection is for."""
    fields = {**ins.fields, **changes}
    raw = seal(encode(ins.opcode, **fields), ins.index, ins.addr - ins.index * INSTR_BITS // 8,
               prog_tag)

    def fault(mem, beat_addr, data):
        if ins.addr <= beat_addr < ins.addr + len(raw):
            off = beat_addr - ins.addr
            return int.from_bytes(raw[off:off + mem.beat_bytes], "little")
        return data
    return fault


def _into_program(net, st):
    """The STORE's out_addr with one bit flipped so that it lands in a program (any frame
    slot's copy) or, when no single flip does (it depends on the placement: the arena opens
    with the activation check entries), elsewhere in the read-only region before the arena
    (weights, lane parameters), which a write would corrupt as persistently."""
    ranges = [(s.prog_addr, s.prog_addr + s.n_instr * INSTR_BITS // 8) for s in net.comp.slots]
    ranges.append((net.comp.base, net.comp.arena[0]))
    for lo, hi in ranges:
        for k in range(32):
            a = st.fields["out_addr"] ^ (1 << k)
            if lo <= a < hi:
                return a
    raise AssertionError("no single-bit flip of out_addr reaches the read-only region")


@pytest.mark.parametrize("target", ["program", "weights", "params"])
def test_store_outside_the_arena_is_refused(net, target):
    st = net.instr(Opcode.STORE)
    addr = {"program": net.comp.slots[0].prog_addr,
            "weights": net.instr(Opcode.LOAD_WEIGHTS).fields["addr"],
            "params": st.fields["params_addr"]}[target]
    lo, hi = net.comp.arena
    assert not lo <= addr < hi and net.comp.window[0] <= addr < net.comp.window[1]
    out = run_fault(net.comp, net.image, corrupt=_patched(net, Opcode.STORE, out_addr=addr))
    net.contained(out, ErrorCode.WRITE_PROTECT, IntegrityError)
    assert out.error.info == addr
    # not one write burst of the faulty run outside the arena
    stop = out.recovery_start
    assert all(lo <= t.addr < hi for t in out.log if t.kind == "w" and t.accepted < stop)


def test_store_straddling_the_arena_end_is_refused(net):
    """out_addr inside the arena, the tile's last pixel past its end."""
    st = net.instr(Opcode.STORE)
    addr = net.comp.arena[1] - BB
    out = run_fault(net.comp, net.image, corrupt=_patched(net, Opcode.STORE, out_addr=addr))
    net.contained(out, ErrorCode.WRITE_PROTECT, IntegrityError)
    assert out.error.info == addr
    assert not [t for t in out.log if t.kind == "w" and t.accepted < out.recovery_start
                and t.addr >= net.comp.arena[1]]
    assert st.fields["pixels"] > 1


def test_empty_arena_refuses_every_store(net):
    """WR_BASE = WR_LIMIT (the reset value): the first STORE is refused, nothing written."""
    step = net.comp.steps[0]

    async def run(drv):
        await drv.run_program(step.prog_addr, step.n_instr, net.comp.window,
                              (net.comp.arena[0], net.comp.arena[0]), step.prog_tag)
    out = run_fault(net.comp, net.image, run=run)
    net.contained(out, ErrorCode.WRITE_PROTECT, IntegrityError)
    assert not [t for t in out.log if t.kind == "w" and t.accepted < out.recovery_start]


@pytest.mark.parametrize("fault", ["bit_flip", "sealed"])
def test_transient_store_address_flip_costs_one_frame_at_most(net, fault):
    """The persistent-corruption scenario: the memory image is loaded once (as simulate, run
    and board do), image 1 runs with a one-time fault on a STORE's out_addr that would point
    it into the program; images 2..4 run fault-free without reloading and are all bit-exact.
    ``bit_flip``: caught by the instruction CRC; ``sealed``: the same new address with a valid
    check word, caught by write protection. Either way image 1 ends in an error and not one
    write of it leaves the arena."""
    st = net.instr(Opcode.STORE)
    bad = _into_program(net, st)
    if fault == "bit_flip":
        bit = (st.fields["out_addr"] ^ bad).bit_length() - 1
        off = 4 + 12 + 16 + bit                  # opcode, n_mtiles, pixels, then out_addr
        make = flip_read_bits(st.addr + off // 8, 1 << (off % 8))
        code, exc = ErrorCode.INSTR_CRC, ProgramError
    else:
        make = _sealed_replacement(st, net.comp.steps[0].prog_tag, out_addr=bad)
        code, exc = ErrorCode.WRITE_PROTECT, IntegrityError
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, size=net.image.shape) for _ in range(3)]
    seen = {}

    async def run(drv):
        mem = drv.t.mem
        mem.read_fault = make
        try:
            await drv.infer(net.comp, net.image, load=False, check=True)
        except Exception as e:      # noqa: BLE001 - inspected below
            seen["error"] = e
        mem.read_fault = None
        seen["outputs"] = [(await drv.infer(net.comp, img, load=False, check=True))[0]
                           for img in images]
    out = run_fault(net.comp, net.image, run=run, recover=False)
    assert isinstance(seen.get("error"), exc) and seen["error"].code == code, seen.get("error")
    assert out.first_error is not None and out.first_error[1] == code
    lo, hi = net.comp.arena
    assert all(lo <= t.addr < hi for t in out.log if t.kind == "w")
    assert out.guard_intact_after_fault
    for img, got in zip(images, seen["outputs"]):
        ref = reference.run(net.model, img, spec=TINY.numeric)
        for layer in net.model.layers:
            np.testing.assert_array_equal(got[layer.output], ref[layer.output])


# -- several AXI ports (tiny2p: the weights on port 1, everything else on port 0) -------------

TINY2P = get_config("tiny2p")


@pytest.fixture(scope="module")
def net2():
    n = Net(TINY2P)
    # the clean run used both ports: weights on port 1, the rest (and every write) on port 0
    assert n.bursts[(0, "r")] > 0 and n.bursts[(1, "r")] > 0 and n.bursts[(0, "w")] > 0
    assert n.bursts[(1, "w")] == 0
    return n


@pytest.mark.parametrize("resp", ["SLVERR", "DECERR"])
@pytest.mark.parametrize("port,kind", [(0, "r"), (0, "w"), (1, "r")])
def test_multiport_axi_error_response_on_each_port(net2, rng, port, kind, resp):
    """An error response on either port latches the same code and address as on one port,
    halts both ports, and a soft reset recovers bit-exact (random stalls on both ports)."""
    index = int(rng.integers(net2.bursts[(port, kind)]))
    out = run_fault(net2.comp, net2.image, errors={(kind, index): resp}, mem_mode="random",
                    seed=int(rng.integers(1 << 30)), port=port)
    code = ErrorCode[f"DMA_{'READ' if kind == 'r' else 'WRITE'}_{resp}"]
    net2.contained(out, code, DMAError, timing=False)
    burst = [t for t in out.log if t.kind == kind and t.port == port][index]
    assert out.error.info == burst.addr


@pytest.mark.parametrize("name", ["load_rows_below_window", "load_weights_at_limit",
                                  "store_output_past_window",
                                  "load_weights_end_overflows_32_bits"])
def test_multiport_window_on_each_port(net2, name):
    """The window is checked on both ports: LOAD_WEIGHTS goes to port 1, LOAD_ROWS and STORE
    to port 0; nothing reaches the bus, the other port stops too, recovery is exact."""
    opcode, changes, code, info = _window_cases(net2)[name]
    ins = net2.instr(opcode)
    out = run_fault(net2.comp, net2.image, corrupt=lambda img: patch_instruction(
        img, net2.comp, ins, **changes))
    net2.contained(out, code, DMAError)
    assert out.error.info == (ins.fields["addr"] if info is None else info)
    # no burst outside the window reached either port (the checkers would have failed)
    lo, hi = net2.comp.window
    assert all(lo <= t.addr < hi for t in out.log)


def test_multiport_stall_on_the_weight_port_trips_the_watchdog(net2):
    out = run_fault(net2.comp, net2.image, stalls={("r", 1): 500}, watchdog_cycles=150, port=1)
    net2.contained(out, ErrorCode.TIMEOUT, HardwareTimeout)


# -- striped activation loads (act_ports 2: a load's second half read on port 1) --------------

#: tiny2p with 16-byte activation words (two beats), so that c2's LOAD_ROWS (four words of x,
#: checked) is striped: words 0-1 on port 0 (act), words 2-3 on port 1 (act_b, ARID 1 there)
TINY_S = TINY2P.replace(tn=16, act_ports=2)


@pytest.fixture(scope="module")
def net_s():
    n = Net(TINY_S)
    clean = run_fault(n.comp, n.image, recover=False)
    port1 = [t for t in clean.log if t.kind == "r" and t.port == 1]
    #: indices among port 1's read bursts of the act_b ones (both LOAD_ROWS are striped),
    #: and c2's (the second half of its rows)
    n.act_b = [i for i, t in enumerate(port1) if t.id == 1]
    rows = n.instr(Opcode.LOAD_ROWS, 1).fields
    end = rows["addr"] + rows["beats"] * TINY_S.beat_bytes
    n.act_b_bursts = [port1[i] for i in n.act_b if rows["addr"] < port1[i].addr < end]
    assert len(n.act_b) == 2 and len(n.act_b_bursts) == 1 and rows["chk_beats"] > 0
    return n


@pytest.mark.parametrize("resp", ["SLVERR", "DECERR"])
@pytest.mark.parametrize("mem_mode", ["deterministic", "random"])
def test_striped_load_error_response_on_the_second_port(net_s, rng, resp, mem_mode):
    """An error response to the second half of a striped LOAD_ROWS (port 1, beside the weight
    stream) latches the read error with that burst's address, halts both ports, and a soft
    reset recovers bit-exact."""
    index = net_s.act_b[int(rng.integers(len(net_s.act_b)))]
    out = run_fault(net_s.comp, net_s.image, errors={("r", index): resp}, mem_mode=mem_mode,
                    seed=int(rng.integers(1 << 30)), port=1)
    net_s.contained(out, ErrorCode[f"DMA_READ_{resp}"], DMAError,
                    timing=mem_mode == "deterministic")
    burst = [t for t in out.log if t.kind == "r" and t.port == 1][index]
    assert burst.id == 1 and out.error.info == burst.addr


def test_striped_load_second_half_past_the_window(net_s):
    """A LOAD_ROWS placed so that its first half ends at the window's limit: port 0's command
    is inside, port 1's starts at the limit and is refused there (DMA_READ_WINDOW, address =
    the limit); nothing outside the window reaches either port."""
    ins = net_s.instr(Opcode.LOAD_ROWS, 1)
    split = net_s.act_b_bursts[0].addr - ins.fields["addr"]     # bytes of the first half
    lo, hi = net_s.comp.window
    out = run_fault(net_s.comp, net_s.image, corrupt=lambda img: patch_instruction(
        img, net_s.comp, ins, addr=hi - split))
    net_s.contained(out, ErrorCode.DMA_READ_WINDOW, DMAError)
    assert out.error.info == hi
    assert all(lo <= t.addr < hi for t in out.log)


def test_striped_load_check_entry_mismatch(net_s):
    """A byte of the second half flipped in flight: the two streams' hashes sum to the wrong
    value, ACT_CRC, contained."""
    lr = net_s.instr(Opcode.LOAD_ROWS, 1)
    t = net_s.act_b_bursts[-1]
    out = run_fault(net_s.comp, net_s.image, read_fault=flip_read_bits(t.addr + 3, 0x04),
                    port=1)
    assert out.faulty_beats > 0
    net_s.contained(out, ErrorCode.ACT_CRC, IntegrityError)
    assert out.error.info == lr.fields["addr"]


# -- authenticated weight packages (keyed MAC, issue 19) ----------------------------------------
# The attacker controls the package bytes in DRAM (a co-tenant), not the registers: every
# forgery below is written into the memory image at rest, with a correct CRC where one helps.

MAC_KEY = bytes(range(0x40, 0x50))


@pytest.fixture(scope="module")
def mac_net():
    """Net compiled with authenticated packages; its clean run (bit-exact, checked in Net) is
    with the key programmed."""
    return Net(mac=wpkg.MacKey(MAC_KEY, 0x5EED_0000_0000_0019))


def _mac_fault(net, corrupt, code=ErrorCode.WPKG_MAC, key=MAC_KEY, **kw):
    out = run_fault(net.comp, net.image, corrupt=corrupt, mac_key=key, **kw)
    net.contained(out, code, WeightPackageRejected, timing=kw.get("mem_mode") != "random")
    return out


def _write(img, net, addr, data):
    off = addr - net.comp.base
    img[off:off + len(data)] = data


def _read(net, pkg, image=None):
    off = pkg.addr - net.comp.base
    return bytes((image if image is not None else net.comp.image)[off:off + pkg.size])


def _with_seq(net, blob, seq):
    hb = BB                                     # one header beat on the 64-bit bus
    fields, _ = wpkg.decode_header(TINY, blob[:hb])
    fields["seq"] = seq
    return wpkg.encode_header(TINY, **fields) + blob[hb:]


def test_mac_correct_key_accepted_bit_exact(mac_net):
    """The tagged image runs bit-exact (Net checks the clean run against golden) and costs
    only fill cycles: the same PE beats, instructions and bytes as the CRC image."""
    assert mac_net.comp.mac_nonce == 0x5EED_0000_0000_0019
    crc_net = Net()
    for k in ("pe_busy", "instructions", "bytes_read", "bytes_written"):
        assert mac_net.clean_stats[k] == crc_net.clean_stats[k], k
    assert mac_net.clean_stats["cycles"] > crc_net.clean_stats["cycles"]
    # random AXI stalls and latencies: still bit-exact
    out = run_fault(mac_net.comp, mac_net.image, mem_mode="random", seed=19, mac_key=MAC_KEY,
                    recover=False)
    assert out.error is None
    ref = reference.run(mac_net.model, mac_net.image, spec=TINY.numeric)
    for layer in mac_net.model.layers:
        np.testing.assert_array_equal(out.output[layer.output], ref[layer.output])


@pytest.mark.parametrize("mem_mode", ["deterministic", "random"])
def test_mac_forged_payload_with_recomputed_crc(mac_net, mem_mode):
    """One weight changed and a correct CRC-32 trailer written by the attacker: WPKG_MAC."""
    p = _pkg(mac_net, 0, 1)
    body = bytearray(_read(mac_net, p)[:-BB])
    body[BB + 5 * BB + 3] ^= 0x10
    forged = bytes(body) + wpkg.encode_trailer(TINY, zlib.crc32(bytes(body)))
    _mac_fault(mac_net, lambda img: _write(img, mac_net, p.addr, forged), mem_mode=mem_mode,
               seed=3)


def test_mac_package_replayed_at_another_position(mac_net):
    """Package 0 of layer c1 copied over package 1 with the sequence number fixed up: the tag
    covers the header, so WPKG_MAC (verbatim: WPKG_SEQ)."""
    p0, p1 = _pkg(mac_net, 0, 0), _pkg(mac_net, 0, 1)
    assert p0.size == p1.size
    moved = _with_seq(mac_net, _read(mac_net, p0), p1.seq)
    _mac_fault(mac_net, lambda img: _write(img, mac_net, p1.addr, moved))


def test_mac_duplicated_package(mac_net):
    """Package 0 twice in a row: verbatim the sequence check stops it (WPKG_SEQ); the same
    duplicate with its sequence number and CRC fixed cannot carry a valid tag (WPKG_MAC)."""
    p0, p1 = _pkg(mac_net, 0, 0), _pkg(mac_net, 0, 1)
    dup = _read(mac_net, p0)
    _mac_fault(mac_net, lambda img: _write(img, mac_net, p1.addr, dup), ErrorCode.WPKG_SEQ)
    _mac_fault(mac_net, lambda img: _write(img, mac_net, p1.addr, _with_seq(mac_net, dup, p1.seq)))


def test_mac_package_from_another_model_same_key(mac_net):
    """The same network compiled again under the same key (another nonce): its package at the
    very same position and sequence number is rejected."""
    other = compile_model(mac_net.model, TINY, mac=wpkg.MacKey(MAC_KEY, 0x0BAD_0000_0000_0001))
    p = _pkg(mac_net, 0, 1)
    theirs = _read(mac_net, p, other.image)
    assert theirs[:-BB] == _read(mac_net, p)[:-BB]      # same header and weights, other tag
    _mac_fault(mac_net, lambda img: _write(img, mac_net, p.addr, theirs))


def test_mac_wrong_key_rejects_the_first_package(mac_net):
    """A device programmed with another key rejects the first package: no weight is used."""
    out = run_fault(mac_net.comp, mac_net.image, mac_key=bytes(16), recover=False)
    assert isinstance(out.error, WeightPackageRejected) and out.error.code == ErrorCode.WPKG_MAC
    assert out.first_error[1] == ErrorCode.WPKG_MAC
    assert not out.requests_after(out.first_error[0] + 1)
    assert out.outstanding_at_end == 0 and out.guard_intact_after_fault
    assert out.output is None


def test_mac_layer_with_several_pixel_tiles_bit_exact():
    """Every pixel tile of a layer reloads the same packages (same sequence numbers): the tags
    must not depend on how often a package was fetched. Random AXI timing, bit-exact."""
    rng = np.random.default_rng(7)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 10, 10))
    model = b.build(b.conv("c1", "input", 5, 3, padding=1))
    comp = compile_model(model, TINY, mac=wpkg.MacKey(MAC_KEY, 77))
    assert comp.layers[0].ptiles >= 2
    image = rng.integers(0, 256, size=(3, 10, 10))
    out = run_fault(comp, image, mem_mode="random", seed=5, mac_key=MAC_KEY, recover=False)
    assert out.error is None
    ref = reference.run(model, image, spec=TINY.numeric)
    np.testing.assert_array_equal(out.output["c1"], ref["c1"])
# -- a subordinate breaking the AXI protocol or not answering (issue 19, "no wedge") ----------

#: (channel, burst index on the faulty port, fault) -> the code it must latch. An extra beat
#: is injected after a burst whose ID has nothing else outstanding (else it counts into the
#: next burst of that ID and shows as DMA_READ_RLAST): burst EXTRA_AT[port] (from the clean
#: run's log: port 0's burst 3 is the activation client's last one of the first LOAD_ROWS,
#: the rows' check entries after burst 2, its rows, between the program's bursts; port 1's
#: burst 4 the last of the first weight stream).
EXTRA_AT = {0: 3, 1: 4}
PROTOCOL_FAULTS = {
    ("r", None, "extra_beat"): ErrorCode.DMA_READ_EXTRA,
    ("r", 1, "no_rlast"): ErrorCode.DMA_READ_RLAST,
    ("r", 1, "early_rlast"): ErrorCode.DMA_READ_RLAST,
    ("r", 1, "wrong_rid"): ErrorCode.DMA_READ_RID,
    ("w", 0, "wrong_bid"): ErrorCode.DMA_WRITE_BID,
    ("w", 0, "early_b"): ErrorCode.DMA_WRITE_EARLY_B,
}
SILENT = [("r", 1, "silent"), ("r", 2, "silent_request"), ("w", 0, "silent"),
          ("w", 0, "silent_request")]
#: BUS_TIMEOUT of the silent cases (below the run watchdog of run_fault, 2000 cycles)
BUS_TIMEOUT = 200
#: an abort ends at most BUS_TIMEOUT + ABORT_SLACK edges after the error latched (DMA clear
#: bound CLEAR_SLACK plus the run control's edges), whatever the bus does
ABORT_SLACK = CLEAR_SLACK + 3


def _fault_cases(cfg):
    """(port, fault) pairs: every fault on port 0; on tiny2p the read faults on port 1 (the
    weight stream) too (port 1 carries no writes)."""
    cases = [(0, f) for f in (*PROTOCOL_FAULTS, *SILENT)]
    if cfg.axi_ports > 1:
        cases += [(1, f) for f in (*PROTOCOL_FAULTS, *SILENT) if f[0] == "r"]
    return [(p, (k, EXTRA_AT[p] if i is None else i, name)) for p, (k, i, name) in cases]


def _case_id(case):
    port, (kind, index, name) = case
    return f"p{port}_{kind}{index}_{name}"


def _check_bus_fault(n, out, port, fault):
    """The containment contract for a bus fault, plus: the abort ended within its bound; a
    protocol fault leaves the books balanced (nothing outstanding, nothing abandoned), a silent
    subordinate is abandoned (STATUS.bus_abandoned, DMAError.bus_abandoned) and the host's
    interconnect reset makes the recovery bit-exact."""
    kind, index, name = fault
    silent = name.startswith("silent")
    code = (ErrorCode.DMA_BUS_TIMEOUT if silent else
            PROTOCOL_FAULTS[(kind, None if name == "extra_beat" else index, name)])
    assert isinstance(out.error, DMAError), out.error
    assert out.error.code == code, (out.error, out.first_error)
    latched = out.first_error[0]
    assert out.first_error[1] == code
    # bounded abort: STATUS.busy fell within the bound after the latch
    end = next(e for e in out.done_edges if e > latched)
    cfg = n.comp.config         # a protocol fault: the drain of what is in flight at most
    drain = cfg.max_reads_outstanding * cfg.max_burst + DEFAULT_READ_LATENCY
    bound = (BUS_TIMEOUT if silent else drain) + ABORT_SLACK
    assert end - latched <= bound, (end - latched, bound)
    if silent:
        assert out.bus_abandoned and out.error.bus_abandoned
        assert "clear_bus_abandoned" in str(out.error)
        # the abort really waited for the bus watchdog before giving up
        assert end - latched >= BUS_TIMEOUT
        assert not out.requests_after(latched + 1)
        assert out.guard_intact_after_fault and out.guard_intact_after_recovery
        stats = {k: v for k, v in n.clean_stats.items() if k in TIMING_FREE}
        out.recovered_stats = {k: v for k, v in out.recovered_stats.items() if k in TIMING_FREE}
        assert_recovered(out, n.model, n.image, stats)
    else:
        assert not out.bus_abandoned and not out.error.bus_abandoned
        assert out.violations, "the fault never reached the bus: not a test of detection"
        n.contained(out, code, DMAError)
    burst = [t for t in out.log if t.kind == kind and t.port == port][index]
    if name in ("extra_beat", "no_rlast", "early_rlast", "wrong_bid", "early_b"):
        assert out.error.info == burst.addr
    elif name == "silent_request":      # the request never accepted
        assert out.error.info == [r for r in out.requests
                                  if r.kind == kind and r.port == port][index].addr
    elif name == "wrong_rid":           # the read burst that ended last on the port
        ended = [t for t in out.log if t.kind == "r" and t.port == port
                 and t.completed is not None and t.completed < latched]
        assert out.error.info == max(ended, key=lambda t: t.completed).addr


def _run_bus_fault(n, port, fault):
    kind, index, name = fault
    timeout = BUS_TIMEOUT if name.startswith("silent") else None
    return run_fault(n.comp, n.image, faults={(kind, index): name}, port=port,
                     bus_timeout_cycles=timeout)


@pytest.mark.parametrize("case", _fault_cases(TINY), ids=_case_id)
def test_bus_fault_latches_its_code_and_never_wedges(net, case):
    port, fault = case
    out = _run_bus_fault(net, port, fault)
    _check_bus_fault(net, out, port, fault)


@pytest.mark.parametrize("case", _fault_cases(TINY2P), ids=_case_id)
def test_multiport_bus_fault_latches_its_code_and_never_wedges(net2, case):
    port, fault = case
    out = _run_bus_fault(net2, port, fault)
    _check_bus_fault(net2, out, port, fault)


def test_soft_reset_of_a_silent_bus_is_bounded(net):
    """The subordinate goes silent and the driver gives up first (its timeout below the bus
    watchdog): the soft reset is not held hostage by the bus; STATUS.busy falls at most
    BUS_TIMEOUT + CLEAR_SLACK + 4 edges after the SOFT_RESET write, STATUS.bus_abandoned is
    set, START is refused (BusAbandoned from the driver, ignored by the hardware) until the
    host has reset the interconnect and cleared the bit, and then the same image runs
    bit-exact."""
    from ilmpq.firmware.driver import BusAbandoned
    limit = 1500
    comp, step = net.comp, net.comp.steps[0]
    seen = {}

    async def run(drv):
        with pytest.raises(DriverTimeout):
            await drv.run_program(step.prog_addr, step.n_instr, comp.window, comp.arena,
                                  step.prog_tag)
        assert (await drv.read_reg("status"))["bus_abandoned"]
        with pytest.raises(BusAbandoned, match="reset the interconnect"):
            await drv.run_program(step.prog_addr, step.n_instr, comp.window, comp.arena,
                                  step.prog_tag)
        # the hardware ignores a START written anyway
        await drv.t.write32(drv.regmap.offset("ctrl"), drv.regmap.encode("ctrl", start=1))
        for _ in range(4):
            status = await drv.read_reg("status")
            seen.setdefault("busy", []).append(status["busy"])
        seen["ok"] = True

    out = run_fault(comp, net.image, faults={("r", 2): "silent"}, watchdog_cycles=0,
                    bus_timeout_cycles=limit, timeout_cycles=600, run=run)
    assert out.error is None and seen["ok"] and not any(seen["busy"])
    assert out.first_error is None                  # the driver's soft reset came first
    reset_at = out.soft_resets[0]
    end = next(e for e in out.done_edges if e > reset_at)
    assert limit <= end - reset_at <= limit + CLEAR_SLACK + 4, end - reset_at
    assert out.bus_abandoned
    assert not out.requests_after(reset_at + 1)
    assert out.guard_intact_after_fault and out.guard_intact_after_recovery
    assert_recovered(out, net.model, net.image, net.clean_stats)


def test_counters_count_through_the_abort(net):
    """The performance counters count while STATUS.busy (docs/registers.md), the drain of an
    abort included: after a missing RLAST on a read burst, CYCLES equals the edges STATUS.busy
    was high, and BYTES_READ counts every R beat up to the end of the drain (the beats the DMA
    dropped included). INSTRUCTIONS never counts END (nor NOP): a clean run counts exactly the
    program's LOAD_ROWS, LOAD_WEIGHTS, COMPUTE and STORE."""
    comp, step = net.comp, net.comp.steps[0]
    seen = {}

    async def run(drv):
        with pytest.raises(DMAError):
            await drv.run_program(step.prog_addr, step.n_instr, comp.window, comp.arena,
                                  step.prog_tag)
        seen.update((await drv.counters()).counters)

    out = run_fault(comp, net.image, faults={("r", 1): "no_rlast"}, run=run)
    start, end = out.busy_edges[0], out.done_edges[0]
    assert out.first_error[0] < end - 2                 # the drain lasted a few cycles
    assert seen["cycles"] == end - start
    beats = sum(t.beat for t in out.log if t.kind == "r" and t.accepted < end)
    assert seen["bytes_read"] == beats * TINY.beat_bytes
    counted = sum(i.opcode not in (Opcode.NOP, Opcode.END) for i in net.prog)
    assert net.clean_stats["instructions"] == counted < len(net.prog)


# -- lookup tables fused into a STORE (issues 16/20) ------------------------------------------

@pytest.fixture(scope="module")
def lut_net():
    """c1 (3 x 3, no ReLU: signed) -> a lookup table fused into c1's STORE (unsigned output)
    -> c2 (1 x 1) on a 2 x 2 image: one program."""
    from ilmpq.golden.model import LutLayer, TensorSpec
    from ilmpq.golden.ops import lut_apply
    rng = np.random.default_rng(2025)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 2, 2))
    x = b.conv("c1", "input", 5, 3, padding=1, relu=False)
    table = rng.integers(0, 256, 256)
    b.layers.append(LutLayer("t1", x, "t1", table, function="random"))
    b.tensors["t1"] = TensorSpec("t1", b.shape(x), 8, False, 0.05)
    b.values["t1"] = lut_apply(b.values[x], table, in_bits=8, in_signed=True).astype(np.uint8)
    model = b.build(b.conv("c2", "t1", 4, 1))
    comp = compile_model(model, TINY)
    assert comp.one_program and comp.unstored == {"c1"}
    image = rng.integers(0, 256, size=(3, 2, 2))
    clean = run_fault(comp, image, recover=False)
    assert clean.error is None
    ref = reference.run(model, image, spec=TINY.numeric)
    for name in ("t1", "c2"):
        np.testing.assert_array_equal(clean.output[name], ref[name])
    st = next(i for i in program(comp) if i.opcode == Opcode.STORE)
    assert st.fields["lut_en"] == 1
    return model, comp, image, clean.output_stats, st


def test_lookup_table_bit_flip_is_detected(lut_net):
    """A table entry flipped in flight: the store unit checks the CRC trailer
    before the STORE's first mtile (LUT_CRC, ERR_INFO = the table's address); nothing of the
    STORE is written, and the recovery run is bit-exact with a clean run's counters."""
    model, comp, image, stats, st = lut_net
    addr = st.fields["lut_addr"] + 77
    out = run_fault(comp, image, read_fault=flip_read_bits(addr, 0x08))
    assert out.faulty_beats > 0
    assert_contained(out, code=ErrorCode.LUT_CRC, exc_type=IntegrityError, model=model,
                     image=image, clean_stats=stats, unstored=comp.unstored)
    assert out.error.info == st.fields["lut_addr"]
    assert not [r for r in out.requests if r.kind == "w" and r.edge < out.first_error[0]
                and st.fields["out_addr"] <= r.addr < st.fields["out_addr"] + TINY.lanes_pad]


# -- strided and gathering LOAD_ROWS (issue 14/15 loader modes): bad fields are contained ------

LOAD_MODE_FAULTS = {
    # a gathering load whose stored pixels would be written past the buffer half
    "gather_past_buffer_half": lambda f: dict(gather=1, row_beats=f["beats"], seg_beats=1,
                                              seg_rows=1, pix=4095, pix_beats=1023),
    # a strided load whose beats end inside a row (no read past ``beats`` is issued)
    "strided_ends_inside_a_row": lambda f: dict(chunk_beats=1, chunks=f["beats"] + 1,
                                                chunk_stride=BB, row_stride=0, chk_beats=0),
    # a strided load (a part of each row) that would be checked against whole-row entries
    "strided_with_check_entries": lambda f: dict(chunk_beats=f["beats"], chunks=1,
                                                 chunk_stride=0, row_stride=f["beats"] * BB,
                                                 chk_beats=max(1, f["chk_beats"])),
}


@pytest.mark.parametrize("name", list(LOAD_MODE_FAULTS))
def test_load_rows_mode_fields_out_of_range(net, name):
    """INSTR_FIELD, nothing outside the window, and a soft reset recovers bit-exact."""
    ins = net.instr(Opcode.LOAD_ROWS)
    changes = LOAD_MODE_FAULTS[name](ins.fields)
    out = run_fault(net.comp, net.image, corrupt=lambda img: patch_instruction(
        img, net.comp, ins, **changes))
    net.contained(out, ErrorCode.INSTR_FIELD, ProgramError)


# -- activation integrity (ACT_CRC; docs/reliability.md section 3.1) ---------------------------

def _act(net, out, lr):
    """ACT_CRC latched by the LOAD_ROWS ``lr``, contained; nothing computed on its rows: no
    write of the layer that reads them (its STORE never starts)."""
    net.contained(out, ErrorCode.ACT_CRC, IntegrityError)
    assert out.error.info == lr.fields["addr"]
    st = net.instr(Opcode.STORE, 1)
    assert not [r for r in out.requests if r.kind == "w" and r.edge < out.recovery_start
                and r.addr >= st.fields["out_addr"]
                and r.addr < st.fields["out_addr"] + st.fields["pixels"] * TINY.lanes_pad]


def test_activation_flip_in_flight_in_a_stored_tensor(net):
    """c2's LOAD_ROWS reads c1's output (written by c1's STORE with its check entries): one
    bit flipped on the way."""
    lr = net.instr(Opcode.LOAD_ROWS, 1)
    assert lr.fields["chk_beats"] > 0
    out = run_fault(net.comp, net.image, read_fault=flip_read_bits(lr.fields["addr"] + 5, 0x10))
    assert out.faulty_beats > 0
    _act(net, out, lr)


def test_activation_flip_at_rest_in_a_stored_tensor(net):
    """The DRAM cell of a byte of c1's output flips right after c1's STORE wrote it: the STORE's
    check entry is of the value it wrote, c2's LOAD_ROWS sees the flipped one."""
    lr = net.instr(Opcode.LOAD_ROWS, 1)
    out = run_fault(net.comp, net.image, rest_flips={lr.fields["addr"] + 3: 0x01})
    assert out.rest_hits > 0
    _act(net, out, lr)


def test_activation_flip_in_the_input_is_contained(net):
    """The input (the driver wrote its check entries with the image): caught at c1's
    LOAD_ROWS, before c1 computes anything: no write request at all."""
    lr = net.instr(Opcode.LOAD_ROWS)
    out = run_fault(net.comp, net.image, read_fault=flip_read_bits(lr.fields["addr"] + 9, 0x80))
    net.contained(out, ErrorCode.ACT_CRC, IntegrityError)
    assert out.error.info == lr.fields["addr"]
    assert not [r for r in out.requests if r.kind == "w" and r.edge < out.recovery_start]


def test_activation_read_from_a_moved_address(net):
    """c2's LOAD_ROWS gets its second beat from another address (the first beat again: an
    address fault on the bus or in the interconnect)."""
    lr = net.instr(Opcode.LOAD_ROWS, 1)
    a = lr.fields["addr"]
    out = run_fault(net.comp, net.image, read_fault=remap_reads(
        lambda x: a if x == a + BB else None))
    assert out.faulty_beats > 0
    _act(net, out, lr)


def test_activation_check_entry_flip(net):
    """A bit of a check entry (what c1's STORE wrote for its output row) flipped on the way to
    c2's LOAD_ROWS: the data is right, the check still fails (no silent acceptance of a
    corrupted entry, and no entry bytes above the sum may be set either)."""
    lr = net.instr(Opcode.LOAD_ROWS, 1)
    ent = net.comp.arena[0] + lr.fields["chk_off"] * BB
    for byte, mask in ((1, 0x04), (BB - 1, 0x80)):
        out = run_fault(net.comp, net.image, read_fault=flip_read_bits(ent + byte, mask),
                        recover=byte == 1)
        assert out.faulty_beats > 0
        assert out.error is not None and out.error.code == ErrorCode.ACT_CRC
        if byte == 1:
            _act(net, out, lr)


def test_activation_flip_in_a_pooling_read():
    """The pooling unit reads its input through LOAD_ROWS into the activation buffer: a flip in
    the rows a max pooling reads (a conv's output) is ACT_CRC before the pooling's STORE."""
    rng = np.random.default_rng(77)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 4, 4))
    model = b.build(b.maxpool("p", b.conv("c", "input", 4, 1), 2, 2))
    comp = compile_model(model, TINY)
    image = rng.integers(0, 256, size=(3, 4, 4))
    prog = program(comp)
    lr = [i for i in prog if i.opcode == Opcode.LOAD_ROWS][1]
    st = [i for i in prog if i.opcode == Opcode.STORE][1]
    assert lr.fields["chk_beats"] > 0 and st.fields["pool"]
    out = run_fault(comp, image, read_fault=flip_read_bits(lr.fields["addr"] + 6, 0x02))
    assert_contained(out, code=ErrorCode.ACT_CRC, exc_type=IntegrityError, model=model,
                     image=image)
    assert out.error.info == lr.fields["addr"]
    assert not [r for r in out.requests if r.kind == "w" and r.edge < out.recovery_start
                and r.addr >= st.fields["out_addr"]]


def test_isa_simulator_checks_activations_like_the_hardware(net):
    """isasim raises the hardware's ACT_CRC for a stored byte that flips after its STORE, and
    its STOREs write the check entries of the reference (``isa.act_check_entries`` of the
    tensor golden computes, row by row), as the store unit does (which the RTL's own LOAD_ROWS
    check verifies on every clean run)."""
    from ilmpq.firmware.sim.isasim import IsaFault, Memory, run_program
    from ilmpq.hdl.isa import act_check_entries
    comp, step = net.comp, net.comp.steps[0]
    lr1 = net.instr(Opcode.LOAD_ROWS, 1)

    def fresh():
        mem = Memory(comp.base, comp.size)
        mem.data[:] = comp.image
        inp = comp.tensors[comp.input]
        px = inp.to_memory(net.image)
        mem.write(inp.addr, px)
        mem.write(comp.input_check, act_check_entries(inp.addr, px, comp.input_row_bytes, BB))
        return mem

    mem = fresh()
    run_program(TINY, mem, step.prog_addr, step.n_instr, comp.arena, step.prog_tag)
    c1 = net.model.layers[0].output
    t = comp.tensors[c1]
    raw = t.to_memory(reference.run(net.model, net.image, spec=TINY.numeric)[c1])
    ent = comp.arena[0] + lr1.fields["chk_off"] * BB
    assert lr1.fields["chk_beats"] == t.h
    assert mem.read(ent, t.h * BB) == act_check_entries(t.addr, raw, t.w * t.c_mem, BB)

    class FlipOnStore(Memory):
        def write(self, addr, payload):
            super().write(addr, payload)
            if addr == lr1.fields["addr"]:
                self.data[addr - self.base] ^= 0x40
    bad = FlipOnStore(comp.base, comp.size)
    bad.data[:] = fresh().data
    with pytest.raises(IsaFault) as e:
        run_program(TINY, bad, step.prog_addr, step.n_instr, comp.arena, step.prog_tag)
    assert e.value.code == ErrorCode.ACT_CRC


def test_activation_flip_in_a_residual_read():
    """c2 adds c1's output as its residual: the beat is read twice, by c2's LOAD_ROWS and by
    its STORE's residual read; only the second read is flipped. The store unit checks the
    residual rows against their entries at the end of the mtile: ACT_CRC (ERR_INFO = the
    residual address) before the bank is released and the STORE completes (its mtile's
    outputs are written by then: the join consumes the rows as they arrive)."""
    rng = np.random.default_rng(78)
    b = ModelBuilder(rng, spec=TINY.numeric, ratio=TINY.ratio, input_shape=(3, 2, 2))
    x = b.conv("c1", "input", 5, 3, padding=1)
    model = b.build(b.conv("c2", x, 5, 1, residual=x))
    comp = compile_model(model, TINY)
    image = rng.integers(0, 256, size=(3, 2, 2))
    st = [i for i in program(comp) if i.opcode == Opcode.STORE][1]
    assert st.fields["res_en"] and st.fields["res_chk_beats"] > 0
    target = st.fields["res_addr"] + BB
    seen = []

    def second_read(mem, beat_addr, data):
        if beat_addr != target:
            return data
        seen.append(beat_addr)
        return data ^ (0x20 << 8) if len(seen) == 2 else data

    out = run_fault(comp, image, read_fault=second_read)
    assert out.faulty_beats == 1
    assert_contained(out, code=ErrorCode.ACT_CRC, exc_type=IntegrityError, model=model,
                     image=image)
    assert out.error.info == st.fields["res_addr"]


# -- a tensor written by a host step (issue 19: the host fallback's output is checked too) -----

@pytest.fixture(scope="module")
def host_net():
    """c1 (accelerator) -> p (an elementwise product: a host step) -> c2 (accelerator, reading p
    with its LOAD_ROWS and its STORE's residual read) on a 2 x 2 image: two programs, the
    driver's host step in between writes p and its check entries. Clean run bit-exact."""
    from e2e_util import host_layer_model
    model, image = host_layer_model(2026, TINY)
    comp = compile_model(model, TINY)
    assert "p" in comp.host_checks and len(comp.steps) == 3
    clean = run_fault(comp, image, recover=False)
    assert clean.error is None
    ref = reference.run(model, image, spec=TINY.numeric)
    for layer in model.layers:
        np.testing.assert_array_equal(clean.output[layer.output], ref[layer.output])
    return model, comp, image, clean.output_stats


def test_activation_flip_in_a_host_written_tensor(host_net):
    """One byte of p flips in DRAM between the host step (which computed p's check entries
    from the right bytes) and c2's read: ACT_CRC at c2's LOAD_ROWS (ERR_INFO = its address),
    contained; nothing of c2 written; the recovery (host step included) is bit-exact with a
    clean run's counters."""
    model, comp, image, stats = host_net
    p = comp.tensors["p"]
    lr = [i for i in program(comp) if i.opcode == Opcode.LOAD_ROWS and i.step == 1][0]
    st = [i for i in program(comp) if i.opcode == Opcode.STORE and i.step == 1][0]
    assert lr.fields["addr"] == p.addr and lr.fields["chk_beats"] == p.h
    flipped = []

    async def run(drv):
        write = drv.t.mem_write

        async def faulty_write(addr, data):
            if addr == p.addr:                  # the host step's write of p
                data = bytearray(data)
                data[p.w * p.c_mem + 5] ^= 0x01     # row 1: one bit of one byte
                flipped.append(addr)
            await write(addr, bytes(data))
        drv.t.mem_write = faulty_write
        try:
            await drv.infer(comp, image, load=False, check=True)
        finally:
            del drv.t.mem_write                  # the recovery run is fault-free

    out = run_fault(comp, image, run=run)
    assert flipped == [p.addr]
    assert_contained(out, code=ErrorCode.ACT_CRC, exc_type=IntegrityError, model=model,
                     image=image, clean_stats=stats)
    assert out.error.info == lr.fields["addr"]
    c2 = st.fields["out_addr"]
    assert not [r for r in out.requests if r.kind == "w" and r.edge < out.recovery_start
                and c2 <= r.addr < c2 + st.fields["pixels"] * TINY.lanes_pad]


def test_depthwise_compute_with_too_many_mtiles(net):
    """A depthwise COMPUTE (``dw`` bit 0) of more than DW_MAX_MTILES mtiles: INSTR_FIELD,
    contained (issue 16)."""
    from ilmpq.hdl.isa import DW_MAX_MTILES
    ins = net.instr(Opcode.COMPUTE)
    out = run_fault(net.comp, net.image, corrupt=lambda img: patch_instruction(
        img, net.comp, ins, dw=1, n_mtiles=DW_MAX_MTILES + 1))
    net.contained(out, ErrorCode.INSTR_FIELD, ProgramError)
