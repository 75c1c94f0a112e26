"""The Verilator backend running the test DUT: data, exact cycle counts, error injection,
protocol checks, and the Python API's contract."""

from __future__ import annotations

import numpy as np
import pytest

from ilmpq.firmware.sim.verilator.sim import (AXIProtocolError, CSRResponseError, DesignError,
                                          SimTimeout, VerilatorSim)
from ilmpq.golden.errors import IlmpqTypeError, IlmpqValueError
from memcpy_dut import (CTRL_CLEAR, CTRL_START, FAULT_ASSERT, FAULT_DROP_ARVALID,
                        FAULT_EARLY_WLAST, FAULT_NO_4K_SPLIT, FAULT_UNSTABLE_ARADDR, ID_VALUE,
                        MODE_CHECKSUM, MODE_COPY, MODE_FILL, REG_BEATS, REG_CHECKSUM, REG_CTRL,
                        REG_CYCLES, REG_DST, REG_FAULT, REG_ID, REG_MAXBURST, REG_MODE,
                        REG_PATTERN, REG_SRC, REG_STATUS, REG_WSTRB, STATUS_BUSY, STATUS_DONE,
                        checksum_reference)

pytestmark = pytest.mark.verilator


def program(sim, *, mode, beats, src=0, dst=0, maxburst=16, pattern=0, wstrb=None, fault=None):
    regs = [(REG_SRC, src), (REG_DST, dst), (REG_BEATS, beats), (REG_MODE, mode),
            (REG_MAXBURST, maxburst), (REG_PATTERN, pattern)]
    if wstrb is not None:
        regs.append((REG_WSTRB, wstrb))
    if fault is not None:
        regs.append((REG_FAULT, fault))
    for reg, value in regs:
        sim.csr_write(reg, value)


def start(sim, timeout=100_000):
    """Start the engine and wait for irq; return (cycles waited after the start write,
    cycles since the start write began)."""
    c0 = sim.cycle
    sim.csr_write(REG_CTRL, CTRL_CLEAR | CTRL_START)
    waited = sim.wait_irq(timeout)
    return waited, sim.cycle - c0


def split_bursts(addr, beats, maxburst, beat_bytes):
    """Reference burst split: at most ``maxburst`` beats, never across 4 KiB."""
    out = []
    while beats:
        n = min(beats, maxburst, (4096 - addr % 4096) // beat_bytes)
        out.append((addr, n))
        addr += n * beat_bytes
        beats -= n
    return out


# ---- data ------------------------------------------------------------------------------------

def test_copy_checksum_fill_contents(good, rng):
    sim = good.sim()
    bb = good.beat_bytes
    base = good.mem_base
    sim.mem_view()[:] = rng.integers(0, 256, good.mem_size, dtype=np.uint8)
    before = sim.mem_read(base, good.mem_size)
    assert sim.csr_read(REG_ID) == ID_VALUE

    # copy 300 beats; both source and destination cross 4 KiB boundaries mid-burst
    # src: 27 beats to 0x1000 (16 + 11), then 273 (18 bursts); dst: 23 (16 + 7), then 277 (18)
    src, dst, n = base + 0x0F28, base + 0x5F48, 300
    program(sim, mode=MODE_COPY, beats=n, src=src, dst=dst, maxburst=16)
    start(sim)
    expect = bytearray(before)
    expect[dst - base:dst - base + n * bb] = before[src - base:src - base + n * bb]
    assert sim.mem_read(base, good.mem_size) == bytes(expect)  # nothing else touched
    status = sim.csr_read(REG_STATUS)
    assert status == STATUS_DONE
    c = sim.counters
    assert c["ar_bursts"] == len(split_bursts(src, n, 16, bb)) == 20
    assert c["aw_bursts"] == c["b_responses"] == len(split_bursts(dst, n, 16, bb)) == 20
    assert c["r_beats"] == c["w_beats"] == n

    # checksum of the copy (two 32-bit words per 64-bit beat)
    program(sim, mode=MODE_CHECKSUM, beats=n, src=dst, maxburst=7)
    start(sim)
    assert sim.csr_read(REG_CHECKSUM) == checksum_reference(before[src - base:src - base + n * bb])

    # fill with byte strobes: bytes whose strobe is 0 keep their old value
    fdst, fn, pattern, strb = base + 0x3000, 37, 0xA1B2C3D4, 0b1010_0110
    old = np.frombuffer(sim.mem_read(fdst, fn * bb), dtype=np.uint8).reshape(fn, bb)
    program(sim, mode=MODE_FILL, beats=fn, dst=fdst, maxburst=5, pattern=pattern, wstrb=strb)
    start(sim)
    beat = np.frombuffer((pattern.to_bytes(4, "little")) * (bb // 4), dtype=np.uint8)
    mask = np.array([(strb >> i) & 1 for i in range(bb)], dtype=bool)
    want = np.where(mask, beat, old)
    got = np.frombuffer(sim.mem_read(fdst, fn * bb), dtype=np.uint8).reshape(fn, bb)
    np.testing.assert_array_equal(got, want)


def test_wide_bus_copy_and_checksum(bad, rng):
    """The broken variant with FAULT = 0 is a correct engine on a 128-bit bus (VlWide ports)."""
    sim = bad.sim()
    bb = bad.beat_bytes
    assert bb == 16 and sim.data_bits == 128
    src, dst, n = bad.mem_base + 0x0E00, bad.mem_base + 0x9F80, 77
    data = rng.integers(0, 256, n * bb, dtype=np.uint8).tobytes()
    sim.mem_write(src, data)
    program(sim, mode=MODE_COPY, beats=n, src=src, dst=dst, maxburst=16, fault=0)
    start(sim)
    assert sim.mem_read(dst, n * bb) == data
    assert sim.counters["ar_bursts"] == len(split_bursts(src, n, 16, bb))
    program(sim, mode=MODE_CHECKSUM, beats=n, src=dst, maxburst=16, fault=0)
    start(sim)
    assert sim.csr_read(REG_CHECKSUM) == checksum_reference(data)


def test_several_sims_are_independent(good, rng):
    a, b = good.sim(), good.sim(queue=1)
    da = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    db = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    a.mem_write(good.mem_base, da)
    b.mem_write(good.mem_base, db)
    for sim in (a, b):
        program(sim, mode=MODE_CHECKSUM, beats=8, src=good.mem_base, maxburst=2)
        sim.csr_write(REG_CTRL, CTRL_START)
    wa, wb = a.wait_irq(1000), b.wait_irq(1000)
    assert a.csr_read(REG_CHECKSUM) == checksum_reference(da)
    assert b.csr_read(REG_CHECKSUM) == checksum_reference(db)
    assert wb > wa  # queue=1 serialises the four bursts
    a.close()
    with pytest.raises(RuntimeError, match="closed"):
        a.csr_read(REG_ID)
    assert b.csr_read(REG_ID) == ID_VALUE


def test_memory_access(good, rng):
    sim = good.sim()
    data = rng.integers(0, 256, good.mem_size, dtype=np.uint8)
    sim.mem_write(good.mem_base, data)                  # NumPy array
    assert sim.mem_read(good.mem_base, good.mem_size) == data.tobytes()
    sim.mem_write(good.mem_base + 5, b"\x01\x02\x03")   # bytes, unaligned
    sim.mem_write(good.mem_base + 8, bytearray(b"\xff"))
    sim.mem_write(good.mem_base + 9, memoryview(b"\xee\xdd"))
    assert sim.mem_read(good.mem_base + 4, 8) == bytes([data[4], 1, 2, 3, 0xFF, 0xEE, 0xDD,
                                                        data[11]])
    view = sim.mem_view()
    view[100] = 0x5A
    assert sim.mem_read(good.mem_base + 100, 1) == b"\x5a"
    sim.reset()  # memory survives a reset
    assert sim.mem_read(good.mem_base + 100, 1) == b"\x5a"
    assert sim.mem_read(good.mem_base, 0) == b""


# ---- exact cycle counts (hand-derived from docs/memory_model.md) -------------------------------
#
# Let edge s be the AW/W handshake of the START write (the write's first edge; B at s + 1, so
# the write returns with cycle = s + 2). The engine loads its counters at s, registers the first
# AR/AW at s + 1, and the memory (empty queues) accepts it at s + 2; further bursts follow on
# consecutive edges while arready/awready are high. DONE (irq) is registered the edge after the
# last R beat / B handshake, so wait_irq() returns (done edge) - (s + 2) + 1, CYCLES counts the
# edges with BUSY = 1 (s + 1 .. done edge), and the whole start-to-irq span is wait + 2.
#
# checksum, one burst of N beats: AR at s+2; R beats at s+2+RL .. s+1+RL+N; done at s+2+RL+N;
#   wait = RL + N + 1.
# checksum 3 bursts x 2 beats (MAXBURST 2), RL 8:
#   Q=8: AR s+2, s+3, s+4; R s+10,11 | max(s+11, s+12)=s+12,13 | s+14,15; done s+16 -> 15
#   Q=2: AR s+2, s+3; AR2 waits (2 in flight) until the edge after the last beat of burst 0
#        (s+11) -> AR2 at s+12; R s+10,11 | s+12,13 | max(s+20, s+14)=s+20,21; done s+22 -> 21
#   Q=1: AR s+2 | R s+10,11 | AR s+12 | R s+20,21 | AR s+22 | R s+30,31; done s+32 -> 31
# fill, one burst of N beats: AW at s+2 (W waits one edge: data before address is not accepted,
#   so 1 W stall); W s+3 .. s+2+N; B at s+2+N+WL; done s+3+N+WL -> wait = N + WL + 2.
# fill 2 bursts x 2 beats (MAXBURST 2), WL 4:
#   Q=8: AW s+2, s+3; W s+3,4 | s+5,6; B s+8 | max(s+10, s+9)=s+10; done s+11 -> 10; 1 stall
#   Q=1: AW s+2; W s+3,4; B s+8; AW1 s+9 (awready back after B); W s+10,11; B s+15; done s+16
#        -> 15; W stalls at s+2 and s+5..s+9 (beats of burst 1 wait for its AW) = 6
CYCLE_CASES = [
    # mode, beats, maxburst, RL, WL, Q, expected wait, expected W stalls
    (MODE_CHECKSUM, 5, 16, 8, 4, 8, 8 + 5 + 1, 0),
    (MODE_CHECKSUM, 5, 16, 3, 4, 8, 3 + 5 + 1, 0),
    (MODE_CHECKSUM, 16, 16, 1, 4, 8, 1 + 16 + 1, 0),
    (MODE_CHECKSUM, 6, 2, 8, 4, 8, 15, 0),
    (MODE_CHECKSUM, 6, 2, 8, 4, 2, 21, 0),
    (MODE_CHECKSUM, 6, 2, 8, 4, 1, 31, 0),
    (MODE_FILL, 3, 16, 8, 4, 8, 3 + 4 + 2, 1),
    (MODE_FILL, 3, 16, 8, 1, 8, 3 + 1 + 2, 1),
    (MODE_FILL, 4, 2, 8, 4, 8, 10, 1),
    (MODE_FILL, 4, 2, 8, 4, 1, 15, 6),
]


@pytest.mark.parametrize("mode, beats, maxburst, rl, wl, q, wait, w_stalls", CYCLE_CASES)
def test_exact_cycle_counts(good, mode, beats, maxburst, rl, wl, q, wait, w_stalls):
    sim = good.sim(read_latency=rl, write_latency=wl, queue=q)
    program(sim, mode=mode, beats=beats, src=good.mem_base, dst=good.mem_base + 0x800,
            maxburst=maxburst)
    waited, total = start(sim)
    assert waited == wait
    assert total == wait + 2
    assert sim.csr_read(REG_CYCLES) == wait + 1
    c = sim.counters
    assert c["w_stall_cycles"] == w_stalls
    assert c["r_stall_cycles"] == 0
    bursts = -(-beats // maxburst)
    if mode == MODE_CHECKSUM:
        assert (c["ar_bursts"], c["r_beats"], c["aw_bursts"]) == (bursts, beats, 0)
    else:
        assert (c["aw_bursts"], c["w_beats"], c["b_responses"], c["ar_bursts"]) == (
            bursts, beats, bursts, 0)
    assert sim.outstanding == {"reads": 0, "writes_w": 0, "writes_b": 0}


def test_csr_access_cycles_and_run_semantics(good):
    sim = good.sim()
    assert sim.cycle == 0
    # the DUT accepts AW+W at the first edge and answers B at the next: 2 cycles; AR then R: 2
    sim.csr_write(REG_SRC, 0x1234_5678)
    assert sim.cycle == 2
    assert sim.csr_read(REG_SRC) == 0x1234_5678
    assert sim.cycle == 4
    assert sim.step(7) == 7 and sim.cycle == 11
    assert not sim.irq
    assert sim.run(5) == 5  # irq low: runs the budget
    program(sim, mode=MODE_FILL, beats=200, dst=good.mem_base, maxburst=16)
    sim.csr_write(REG_CTRL, CTRL_START)
    c0 = sim.cycle
    with pytest.raises(SimTimeout, match="irq still low after 50 cycles"):
        sim.wait_irq(50)
    assert sim.cycle == c0 + 50
    assert sim.csr_read(REG_STATUS) == STATUS_BUSY
    rest = sim.wait_irq(100_000)
    assert sim.irq and rest > 0
    assert sim.run(10) == 0          # irq already high: until_irq stops at once
    assert sim.run(10, until_irq=False) == 10
    sim.csr_write(REG_CTRL, CTRL_CLEAR)
    assert not sim.irq
    sim.reset()
    assert sim.cycle == 0 and sim.counters["aw_bursts"] == 0


def test_csr_error_responses(good):
    sim = good.sim()
    with pytest.raises(CSRResponseError, match=r"CSR read from 0xffc answered SLVERR"):
        sim.csr_read(0xFFC)
    assert sim.csr_read(0xFFC, check=False) == 0 and sim.last_csr_resp == 2
    with pytest.raises(CSRResponseError, match=r"CSR write to 0x800 answered SLVERR"):
        sim.csr_write(0x800, 1)
    assert sim.csr_write(0x800, 1, check=False) == 2
    assert sim.csr_write(REG_DST, 4) == 0 and sim.last_csr_resp == 0


# ---- error injection -------------------------------------------------------------------------

def test_read_error_injection(good, rng):
    sim = good.sim()
    bb, src, n = good.beat_bytes, good.mem_base + 0x400, 48   # 3 bursts of 16
    data = rng.integers(0, 256, n * bb, dtype=np.uint8).tobytes()
    sim.mem_write(src, data)
    program(sim, mode=MODE_CHECKSUM, beats=n, src=src, maxburst=16)
    clean_wait, _ = start(sim)

    sim.reset()                                  # burst indices count from the reset
    sim.inject_error("r", 1, "SLVERR")
    program(sim, mode=MODE_CHECKSUM, beats=n, src=src, maxburst=16)
    wait, _ = start(sim)
    assert wait == clean_wait                    # errors do not change the timing
    seen = bytearray(data)
    seen[16 * bb:32 * bb] = bytes(16 * bb)        # the DUT saw zero data on burst 1
    assert sim.csr_read(REG_CHECKSUM) == checksum_reference(bytes(seen))
    assert (sim.csr_read(REG_STATUS) >> 4) & 3 == 2   # latched RRESP = SLVERR
    assert sim.counters["r_error_bursts"] == 1

    # a copy whose first read burst fails writes zeros there; DECERR is latched
    sim.reset()
    sim.clear_errors()
    sim.inject_error("r", 0, "DECERR")
    dst = good.mem_base + 0x8000
    program(sim, mode=MODE_COPY, beats=n, src=src, dst=dst, maxburst=16)
    start(sim)
    assert sim.mem_read(dst, n * bb) == bytes(16 * bb) + data[16 * bb:]
    assert (sim.csr_read(REG_STATUS) >> 4) & 3 == 3


def test_write_error_injection(good, rng):
    sim = good.sim()
    bb, dst, n = good.beat_bytes, good.mem_base + 0x2000, 48
    old = rng.integers(0, 256, n * bb, dtype=np.uint8).tobytes()
    sim.mem_write(dst, old)
    sim.inject_error("b", 0, "DECERR")
    sim.inject_error("w", 2, "SLVERR")  # the Python model's name for the write channel
    program(sim, mode=MODE_FILL, beats=n, dst=dst, maxburst=16, pattern=0x0BADF00D,
            wstrb=(1 << bb) - 1)
    start(sim)
    fill = (0x0BADF00D).to_bytes(4, "little") * (16 * bb // 4)
    assert sim.mem_read(dst, n * bb) == old[:16 * bb] + fill + old[32 * bb:]
    assert (sim.csr_read(REG_STATUS) >> 6) & 3 == 3   # first bad BRESP = DECERR
    c = sim.counters
    assert (c["b_error_bursts"], c["b_responses"], c["w_beats"]) == (2, 3, n)


# ---- protocol violations (the broken variant) -------------------------------------------------

def _violation_cases():
    base, size = 0x1000_0000, 1 << 20
    return [
        # id, queue, program kwargs, rule, channel, edge after the start write's first edge
        ("burst_length", 8, dict(mode=MODE_CHECKSUM, beats=17, src=base, maxburst=17),
         "burst_length", "AR", 2),
        ("4k", 8, dict(mode=MODE_CHECKSUM, beats=4, src=base + 0x1000 - 32, maxburst=16,
                       fault=FAULT_NO_4K_SPLIT), "4k_boundary", "AR", 2),
        ("range", 8, dict(mode=MODE_CHECKSUM, beats=2, src=base + size, maxburst=16),
         "address_range", "AR", 2),
        ("below", 8, dict(mode=MODE_FILL, beats=2, dst=base - 0x100, maxburst=16),
         "address_range", "AW", 2),
        ("unaligned", 8, dict(mode=MODE_CHECKSUM, beats=2, src=base + 8, maxburst=16),
         "address_alignment", "AR", 2),
        # AR1 waits at s+3 (queue 1 is full); the DUT breaks the rule at that edge, seen at s+4
        ("valid_dropped", 1, dict(mode=MODE_CHECKSUM, beats=2, src=base, maxburst=1,
                                  fault=FAULT_DROP_ARVALID), "valid_dropped", "AR", 4),
        ("unstable", 1, dict(mode=MODE_CHECKSUM, beats=2, src=base, maxburst=1,
                             fault=FAULT_UNSTABLE_ARADDR), "payload_unstable", "AR", 4),
        # first W beat transfers at s+3 with wlast set on a 2-beat burst
        ("wlast_early", 8, dict(mode=MODE_FILL, beats=2, dst=base, maxburst=2,
                                fault=FAULT_EARLY_WLAST), "wlast", "W", 3),
        # single-beat burst: wlast missing
        ("wlast_missing", 8, dict(mode=MODE_FILL, beats=1, dst=base, maxburst=1,
                                  fault=FAULT_EARLY_WLAST), "wlast", "W", 3),
    ]


@pytest.mark.parametrize("queue, kwargs, rule, channel, offset",
                         [c[1:] for c in _violation_cases()],
                         ids=[c[0] for c in _violation_cases()])
def test_protocol_violations(bad, queue, kwargs, rule, channel, offset):
    sim = bad.sim(queue=queue)
    kwargs.setdefault("fault", 0)
    program(sim, **kwargs)
    c0 = sim.cycle
    with pytest.raises(AXIProtocolError) as info:
        sim.csr_write(REG_CTRL, CTRL_START)
        sim.wait_irq(1000)
    err = info.value
    assert (err.rule, err.channel, err.cycle) == (rule, channel, c0 + offset)
    assert f"[{rule}]" in str(err) and f"m_axi {channel}" in str(err)
    assert f"cycle {c0 + offset}" in str(err)
    # the violation is sticky until reset; afterwards the engine works again
    with pytest.raises(AXIProtocolError):
        sim.step(1)
    sim.reset()
    program(sim, mode=MODE_FILL, beats=3, dst=bad.mem_base, maxburst=16, pattern=7, fault=0)
    start(sim)
    assert sim.mem_read(bad.mem_base, 4) == (7).to_bytes(4, "little")


def test_failed_design_assertion_stops_the_run(bad):
    """An Amaranth ``Assert`` in the design (checked with Verilator's --assert) that fails stops
    the simulation with a clear error instead of ending the Python process."""
    sim = bad.sim()
    with pytest.raises(DesignError) as info:
        # FAULT is written at edge 0; the (synchronous) Assert sees the bit at edge 1, while
        # the write waits for its B response
        sim.csr_write(REG_FAULT, FAULT_ASSERT)
    assert info.value.rule == "design_error" and info.value.channel == "design"
    assert info.value.cycle == 1
    assert "failed assertion" in str(info.value)
    with pytest.raises(DesignError):
        sim.step(1)
    sim.reset()                     # FAULT is a register: reset clears it
    assert sim.csr_read(REG_FAULT) == 0
    sim.step(5)


def test_4k_split_is_legal_without_the_fault(bad):
    sim = bad.sim()
    program(sim, mode=MODE_CHECKSUM, beats=4, src=bad.mem_base + 0x1000 - 32, maxburst=16,
            fault=0)
    start(sim)
    assert sim.counters["ar_bursts"] == 2


# ---- argument checking ---------------------------------------------------------------------

def test_bad_arguments(good):
    sim = good.sim()
    with pytest.raises(IlmpqValueError, match="CSR address must be in"):
        sim.csr_read(0x1000)
    with pytest.raises(IlmpqValueError, match="4-byte aligned"):
        sim.csr_write(0x2, 0)
    with pytest.raises(IlmpqValueError, match="CSR value"):
        sim.csr_write(0x8, 1 << 32)
    with pytest.raises(IlmpqTypeError, match="CSR value must be an int"):
        sim.csr_write(0x8, 1.0)
    with pytest.raises(IlmpqValueError, match="outside the simulated memory"):
        sim.mem_read(good.mem_base + good.mem_size - 4, 8)
    with pytest.raises(IlmpqValueError, match="outside the simulated memory"):
        sim.mem_write(good.mem_base - 1, b"\0")
    with pytest.raises(IlmpqTypeError, match="bytes-like"):
        sim.mem_write(good.mem_base, [1, 2, 3])
    with pytest.raises(IlmpqValueError, match="'r' or 'b'"):
        sim.inject_error("x", 0, "SLVERR")
    with pytest.raises(IlmpqValueError, match="'SLVERR' or 'DECERR'"):
        sim.inject_error("r", 0, "OKAY")
    with pytest.raises(IlmpqValueError, match="max_cycles"):
        sim.run(-1)
    with pytest.raises(IlmpqValueError, match="queue must be in"):
        VerilatorSim(good.verilog, good.top, mem_base=0, mem_size=4096, queue=0)
    with pytest.raises(IlmpqValueError, match="32-bit m_axi address space"):
        VerilatorSim(good.verilog, good.top, mem_base=0xFFFF_F000, mem_size=8192)
