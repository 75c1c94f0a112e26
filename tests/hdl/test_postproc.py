"""PostProc: bit-exact against golden's requantize, edge cases, stream behaviour, latency, lint."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Shape, UnusedElaboratable
from amaranth.sim import Simulator

from ilmpq.golden.errors import IlmpqTypeError
from ilmpq.golden.ops import requantize
from ilmpq.hdl.config import get_config
from ilmpq.hdl.postproc import RES_BITS, TAG_BITS, PostIn, PostOut, PostProc

TINY = get_config("tiny")
FIELDS = ("acc", "bias", "mult", "shift", "res_mult", "res")
FLAGS = ("res_en", "relu", "last", "tag", "lut")


# -- references ----------------------------------------------------------------------------------

def reference(cfg, beats) -> np.ndarray:
    """The formula of docs/numeric.md section 2, transcribed directly (Python integers), for any value
    the ports can carry: S = 0 means no rounding (floor(v + 1/2) = v)."""
    a = cfg.act_bits
    n, g = beats["acc"].shape
    out = np.zeros((n, g), dtype=np.int64)
    for b in range(n):
        relu = bool(beats["relu"][b])
        qmin, qmax = (0, 2**a - 1) if relu else (-(2**(a - 1)), 2**(a - 1) - 1)
        for i in range(g):
            t = int(beats["acc"][b, i]) + int(beats["bias"][b, i])
            v = t * int(beats["mult"][b, i])
            if beats["res_en"][b]:
                v += int(beats["res"][b, i]) * int(beats["res_mult"][b, i])
            s = int(beats["shift"][b, i])
            y = v if s == 0 else (v + 2**(s - 1)) >> s
            out[b, i] = min(max(y, qmin), qmax)
    return out


def golden(cfg, beats) -> np.ndarray:
    """golden.ops.requantize on ``acc + bias``, one call per (relu, res_en) group of beats."""
    spec = cfg.numeric
    out = np.zeros(beats["acc"].shape, dtype=np.int64)
    for relu in (0, 1):
        for res_en in (0, 1):
            sel = (beats["relu"] == relu) & (beats["res_en"] == res_en)
            if not sel.any():
                continue
            t = (beats["acc"][sel] + beats["bias"][sel]).ravel()
            kw = {}
            if res_en:
                kw = {"res": beats["res"][sel].ravel(), "res_mult": beats["res_mult"][sel].ravel()}
            y = requantize(t, beats["mult"][sel].ravel(), beats["shift"][sel].ravel(),
                           relu=bool(relu), out_bits=cfg.act_bits, out_signed=not relu,
                           spec=spec, **kw)
            out[sel] = y.reshape(-1, cfg.post_lanes)
    return out


def as_bytes(y: np.ndarray) -> np.ndarray:
    """Output values as the bytes the hardware writes (two's complement for negative ones)."""
    return (y & 0xFF).astype(np.uint8)


# -- simulation ----------------------------------------------------------------------------------

def _payloads(beats):
    n = beats["acc"].shape[0]
    return [{**{f: [int(x) for x in beats[f][b]] for f in FIELDS},
             **{f: int(beats[f][b]) for f in FLAGS if f in beats}} for b in range(n)]


def simulate(cfg, beats, rng, *, p_gap=0.0, p_ready=1.0, ready_fn=None, max_cycles=None,
             table=None):
    """Stream ``beats`` through a PostProc; return the output bytes and a cycle trace.

    ``p_gap``: probability that the producer idles for a cycle between beats (valid, once
    raised, stays high with a stable payload until the transfer). ``p_ready`` / ``ready_fn(cycle)``:
    the consumer's ready. Every cycle the stream rules of ``out`` are checked. ``table``:
    ``2**act_bits`` bytes written into the lookup table (one word a cycle) before the first beat.
    """
    dut = PostProc(cfg)
    out_layout = PostOut(cfg)
    d_off = out_layout["data"].offset
    l_off, t_off = out_layout["last"].offset, out_layout["tag"].offset
    payloads = _payloads(beats)
    n, g = len(payloads), cfg.post_lanes
    limit = max_cycles or 20 * n + 100
    trace = {"data": [], "last": [], "tag": [], "in_cycles": [], "out_cycles": [],
             "in_ready_low": []}

    async def tb(ctx):
        i, valid, cycle = 0, False, 0
        held = None          # (payload bits) of a valid output not taken in the previous cycle
        ctx.set(dut.out.ready, 0)
        if table is not None:
            bb = cfg.beat_bytes
            for w in range(len(table) // bb):
                ctx.set(dut.lut_wr.payload, {"addr": w, "data": int.from_bytes(
                    bytes(table[w * bb:(w + 1) * bb]), "little")})
                ctx.set(dut.lut_wr.valid, 1)
                await ctx.tick()
            ctx.set(dut.lut_wr.valid, 0)
        while len(trace["data"]) < n:
            assert cycle < limit, f"no progress after {cycle} cycles"
            if i < n and not valid:
                valid = rng.random() >= p_gap
                if valid:
                    ctx.set(dut.inp.payload, payloads[i])
            ctx.set(dut.inp.valid, valid)
            ready = ready_fn(cycle) if ready_fn else bool(rng.random() < p_ready)
            ctx.set(dut.out.ready, ready)
            _, _, in_ready, out_valid, out_bits = await ctx.tick().sample(
                dut.inp.ready, dut.out.valid, dut.out.payload.as_value())
            if held is not None:    # stream rules: valid stays up, payload stable, until taken
                assert out_valid and out_bits == held, f"cycle {cycle}: output beat changed"
            if not in_ready:
                trace["in_ready_low"].append(cycle)
            if valid and in_ready:
                trace["in_cycles"].append(cycle)
                i, valid = i + 1, False
            if out_valid and ready:
                trace["out_cycles"].append(cycle)
                trace["data"].append([(out_bits >> (d_off + 8 * k)) & 0xFF for k in range(g)])
                trace["last"].append((out_bits >> l_off) & 1)
                trace["tag"].append((out_bits >> t_off) & ((1 << TAG_BITS) - 1))
            held = out_bits if (out_valid and not ready) else None
            cycle += 1
        # nothing more comes out
        for _ in range(dut.latency + 2):
            ctx.set(dut.inp.valid, 0)
            ctx.set(dut.out.ready, 1)
            _, _, out_valid = await ctx.tick().sample(dut.out.valid)
            assert not out_valid, "an extra output beat appeared"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return dut, np.array(trace["data"], dtype=np.uint8).reshape(n, g), trace


def check_outputs(cfg, beats, data, trace, expected):
    np.testing.assert_array_equal(data, as_bytes(expected))
    np.testing.assert_array_equal(trace["last"], beats["last"])
    np.testing.assert_array_equal(trace["tag"], beats["tag"])


# -- vectors -------------------------------------------------------------------------------------

def _log_uniform(rng, bits, size, signed):
    """Integers whose magnitude has a uniformly random bit length in [0, bits]."""
    length = rng.integers(0, bits + 1, size=size)
    mag = np.array([int(rng.integers(0, 1 << int(b))) if b else 0 for b in length.ravel()],
                   dtype=np.int64).reshape(size)
    if signed:
        mag = np.where(rng.random(size) < 0.5, -mag, mag)
    return mag


def random_beats(rng, cfg, n):
    """Random beats across the full contract ranges, biased so that many results land inside the
    output range (uniform 32-bit accumulators with uniform shifts would almost always clamp)."""
    spec, g = cfg.numeric, cfg.post_lanes
    alo, ahi = spec.acc_range
    size = (n, g)
    uni = rng.random(size) < 0.25
    acc = np.where(uni, rng.integers(alo, ahi + 1, size=size),
                   _log_uniform(rng, spec.acc_bits - 1, size, True))
    bias = np.where(rng.random(size) < 0.25, rng.integers(alo, ahi + 1, size=size),
                    _log_uniform(rng, spec.acc_bits - 1, size, True))
    # golden's contract: acc + bias fits acc_bits (the compiler proves it); flip the bias sign
    # where the sum would leave the range
    t = acc + bias
    bias = np.where((t < alo) | (t > ahi), np.clip(-bias, alo, ahi), bias)
    mlo, mhi = spec.mult_range
    mult = np.where(rng.random(size) < 0.25, rng.integers(mlo, mhi + 1, size=size),
                    _log_uniform(rng, spec.mult_bits, size, False))
    res_mult = np.where(rng.random(size) < 0.25, rng.integers(mlo, mhi + 1, size=size),
                        _log_uniform(rng, spec.mult_bits, size, False))
    res_signed = rng.random(n) < 0.5          # a residual tensor is signed or unsigned
    res = np.where(res_signed[:, None], rng.integers(-128, 128, size=size),
                   rng.integers(0, 256, size=size))
    res_en = (rng.random(n) < 0.5).astype(np.int64)
    relu = (rng.random(n) < 0.5).astype(np.int64)
    smin, smax = spec.shift_range
    o = object                                  # Python integers: wide configurations
    v = ((acc + bias).astype(o) * mult.astype(o)
         + res_en[:, None].astype(o) * res.astype(o) * res_mult.astype(o))
    target = np.array([abs(int(x)).bit_length() for x in v.ravel()]).reshape(size)
    target = target - cfg.act_bits + rng.integers(-3, 4, size=size)
    shift = np.where(rng.random(size) < 0.2, rng.integers(smin, smax + 1, size=size),
                     np.clip(target, smin, smax))
    return {"acc": acc, "bias": bias, "mult": mult, "shift": shift, "res_mult": res_mult,
            "res": res, "res_en": res_en, "relu": relu,
            "last": (rng.random(n) < 0.3).astype(np.int64),
            "tag": rng.integers(0, 1 << TAG_BITS, size=n),
            "lut": np.zeros(n, np.int64)}


def _split(rng, cfg, v, res_en):
    """Find (acc, bias, M, res, Mr) with (acc + bias)*M + res_en*res*Mr == v, all in contract."""
    spec = cfg.numeric
    alo, ahi = spec.acc_range
    mhi = spec.mult_range[1]
    cands = [1 << k for k in range(spec.mult_bits)] + [mhi, 3, 255, 1000]
    for m in cands:
        if res_en:
            t = max(alo, min(ahi, v // m))
            rem = v - t * m                 # 0 <= rem < m unless t was clipped
            if rem == 0:
                res, rmul = int(rng.integers(-128, 256)), 0
            elif 0 < rem <= mhi:
                res, rmul = 1, rem
            elif 0 < -rem <= mhi:
                res, rmul = -1, -rem
            else:
                continue
        else:
            if v % m:
                continue
            t, res, rmul = v // m, int(rng.integers(-128, 256)), int(rng.integers(0, mhi + 1))
            if not alo <= t <= ahi:
                continue
        bias = t // 2
        return t - bias, bias, m, res, rmul
    raise AssertionError(f"cannot build {v} from in-contract operands")


def _pack(cfg, rng, lanes):
    """Group lane dicts by their (res_en, relu) into beats, padding with zero lanes."""
    g = cfg.post_lanes
    groups = {}
    for lane in lanes:
        groups.setdefault((lane["res_en"], lane["relu"]), []).append(lane)
    rows = []
    for (res_en, relu), ls in sorted(groups.items()):
        for k in range(0, len(ls), g):
            chunk = ls[k:k + g]
            chunk = chunk + [{"acc": 0, "bias": 0, "mult": 0, "shift": 1, "res_mult": 0,
                              "res": 0}] * (g - len(chunk))
            rows.append((res_en, relu, chunk))
    n = len(rows)
    beats = {f: np.array([[lane[f] for lane in ch] for _, _, ch in rows], dtype=np.int64)
             for f in FIELDS}
    beats["res_en"] = np.array([r[0] for r in rows], dtype=np.int64)
    beats["relu"] = np.array([r[1] for r in rows], dtype=np.int64)
    beats["last"] = (np.arange(n) % 5 == 4).astype(np.int64)
    beats["tag"] = rng.integers(0, 1 << TAG_BITS, size=n)
    return beats


def edge_beats(rng, cfg):
    """Deliberate edge cases, all inside the contract (so golden applies)."""
    spec, a = cfg.numeric, cfg.act_bits
    smin, smax = spec.shift_range
    alo, ahi = spec.acc_range
    mhi = spec.mult_range[1]
    lanes = []

    def lane(v, s, res_en, relu):
        acc, bias, m, res, rmul = _split(rng, cfg, v, res_en)
        lanes.append({"acc": acc, "bias": bias, "mult": m, "shift": s, "res_mult": rmul,
                      "res": res, "res_en": res_en, "relu": relu})

    vmax = ahi * mhi + 255 * mhi            # largest |v| the operands can reach
    for relu in (0, 1):
        for res_en in (0, 1):
            for s in sorted({smin, 2, 3, 8, 17, 31, 40, smax}):
                half = 1 << (s - 1)
                # rounding ties, positive and negative (exact halves go up), and their neighbours
                for k in range(-3, 3):
                    for d in (0, -1, 1):
                        v = (2 * k + 1) * half + d
                        if abs(v) <= vmax:
                            try:
                                lane(v, s, res_en, relu)
                            except AssertionError:
                                pass
                # both clamps and the values next to them
                qmin, qmax = (0, 2**a - 1) if relu else (-(2**(a - 1)), 2**(a - 1) - 1)
                for y in (qmin - 1, qmin, qmin + 1, -1, 0, qmax - 1, qmax, qmax + 1):
                    for v in (y << s, (y << s) + half - 1, (y << s) - half):
                        if abs(v) <= vmax:
                            try:
                                lane(v, s, res_en, relu)
                            except AssertionError:
                                pass
            # the operand extremes: largest |acc|, M = 0 and the maximum M, S = 1 and the max S
            for s in (smin, 16, 32, smax):
                for acc, bias in ((alo, 0), (ahi, 0), (alo, ahi), (0, alo), (-1, 0), (1, 0)):
                    for m in (0, 1, mhi):
                        for res, rmul in ((0, 0), (-128, mhi), (255, mhi), (127, 1), (128, 3)):
                            lanes.append({"acc": acc, "bias": bias, "mult": m, "shift": s,
                                          "res_mult": rmul, "res": res, "res_en": res_en,
                                          "relu": relu})
            # residuals: signed and unsigned bytes, with and without res_en
            for res in (-128, -127, -1, 0, 1, 127, 128, 254, 255):
                for rmul in (0, 1, 77, mhi):
                    for acc in (0, 1000, -1000):
                        lanes.append({"acc": acc, "bias": 0, "mult": 1 << 8, "shift": 12,
                                      "res_mult": rmul, "res": res, "res_en": res_en,
                                      "relu": relu})
    return _pack(cfg, rng, lanes)


# -- tests ---------------------------------------------------------------------------------------

def test_layouts_derive_from_config():
    cfg = TINY.replace(axi_data_width=32, acc_bits=40, mult_bits=20)
    g = cfg.post_lanes
    lin, lout = PostIn(cfg), PostOut(cfg)
    assert lin["acc"].shape.length == g
    assert Shape.cast(lin["acc"].shape.elem_shape) == Shape(40, True)
    assert Shape.cast(lin["bias"].shape.elem_shape) == Shape(40, True)
    assert Shape.cast(lin["mult"].shape.elem_shape) == Shape(20, False)
    assert Shape.cast(lin["res_mult"].shape.elem_shape) == Shape(20, False)
    assert Shape.cast(lin["shift"].shape.elem_shape) == Shape(cfg.shift_bits, False)
    assert Shape.cast(lin["res"].shape.elem_shape) == Shape(RES_BITS, True)
    assert Shape.cast(lin["tag"].shape) == Shape(TAG_BITS, False)
    assert lout["data"].shape.length == g and Shape.cast(lout["data"].shape.elem_shape).width == 8
    dut = PostProc(cfg)
    assert dut.lanes == g
    assert dut.sum_bits >= cfg.numeric.requant_bits        # never narrower than golden's
    tiny = PostProc(TINY)
    assert tiny.sum_bits == TINY.numeric.requant_bits == 49
    assert dut.fifo_depth == dut.latency + 1
    for d in (dut, tiny):  # inspected only: elaborate them so Amaranth sees them used
        Fragment.get(d, None)


def test_rejects_a_non_config():
    # the half-built object of a failed constructor would warn UnusedElaboratable when it is
    # collected (in whichever test runs then): collect it here, where that is expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(IlmpqTypeError, match=r"PostProc needs an ilmpq\.hdl\.config\."
                                                 r"HWConfig, not str"):
            PostProc("tiny")
        gc.collect()


@pytest.mark.parametrize("act_bits", [4, 5, 8])
def test_random_bit_exact_with_golden(act_bits, rng):
    cfg = TINY.replace(act_bits=act_bits)
    beats = random_beats(rng, cfg, 160)
    expected = golden(cfg, beats)
    np.testing.assert_array_equal(reference(cfg, beats), expected)   # the vectors are sane
    # a good share lands strictly inside the output range (not only clamps)
    qmin = np.where(beats["relu"][:, None] == 1, 0, -(2**(act_bits - 1)))
    qmax = np.where(beats["relu"][:, None] == 1, 2**act_bits - 1, 2**(act_bits - 1) - 1)
    assert ((expected > qmin) & (expected < qmax)).mean() > 0.3
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.2, p_ready=0.8)
    check_outputs(cfg, beats, data, trace, expected)


@pytest.mark.parametrize("changes", [
    {"axi_data_width": 32, "acc_bits": 24, "mult_bits": 8},     # G = 4, t*M in one DSP
    {"axi_data_width": 128, "acc_bits": 48, "mult_bits": 24, "act_bits": 5},  # G = 16, 73 b
], ids=["g4-acc24-m8", "g16-acc48-m24"])
def test_other_geometries_bit_exact_with_golden(changes, rng):
    cfg = TINY.replace(**changes)
    beats = random_beats(rng, cfg, 48)
    expected = golden(cfg, beats)
    np.testing.assert_array_equal(reference(cfg, beats), expected)
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.2, p_ready=0.7)
    check_outputs(cfg, beats, data, trace, expected)


@pytest.mark.parametrize("act_bits", [4, 8])
def test_edge_cases_bit_exact_with_golden(act_bits, rng):
    cfg = TINY.replace(act_bits=act_bits)
    beats = edge_beats(rng, cfg)
    expected = golden(cfg, beats)
    np.testing.assert_array_equal(reference(cfg, beats), expected)
    spec = cfg.numeric
    # the cases are really there
    assert (beats["shift"] == spec.shift_range[0]).any()
    assert (beats["shift"] == spec.shift_range[1]).any()
    assert (beats["mult"] == 0).any() and (beats["mult"] == spec.mult_range[1]).any()
    assert (beats["acc"] == spec.acc_range[0]).any()
    for relu in (0, 1):
        sel = beats["relu"] == relu
        qmin, qmax = (0, 2**act_bits - 1) if relu else (-(2**(act_bits - 1)),
                                                        2**(act_bits - 1) - 1)
        assert (expected[sel] == qmin).any() and (expected[sel] == qmax).any()
    v = ((beats["acc"] + beats["bias"]) * beats["mult"]
         + beats["res_en"][:, None] * beats["res"] * beats["res_mult"])
    half = np.left_shift(1, beats["shift"] - 1)
    tie = (v & ((half << 1) - 1)) == half
    assert (tie & (v > 0)).any() and (tie & (v < 0)).any()
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.1, p_ready=0.7)
    check_outputs(cfg, beats, data, trace, expected)


def test_ties_round_half_up(rng):
    """Exact halves round towards +infinity: +2.5 -> 3, -2.5 -> -2, -0.5 -> 0."""
    cfg = TINY
    g = cfg.post_lanes
    accs = [5, -5, -1, 1, 3, -3, 7, -7][:g]
    beats = {"acc": np.array([accs]), "bias": np.zeros((1, g), np.int64),
             "mult": np.ones((1, g), np.int64), "shift": np.ones((1, g), np.int64),
             "res_mult": np.zeros((1, g), np.int64), "res": np.zeros((1, g), np.int64),
             "res_en": np.array([0]), "relu": np.array([0]), "last": np.array([1]),
             "tag": np.array([0xBEEF])}
    _, data, _ = simulate(cfg, beats, rng)
    np.testing.assert_array_equal(data.view(np.int8)[0], [3, -2, 0, 1, 2, -1, 4, -3][:g])


def test_exact_beyond_the_contract(rng):
    """Every value the ports can carry gives the exact formula: acc + bias past acc_bits, S = 0
    (no rounding), S past the shift range (up to 2**shift_bits - 1), 9-bit residuals."""
    cfg = TINY
    spec, g, n = cfg.numeric, cfg.post_lanes, 64
    alo, ahi = spec.acc_range
    size = (n, g)
    beats = random_beats(rng, cfg, n)
    beats["acc"] = rng.integers(alo, ahi + 1, size=size)
    beats["bias"] = rng.integers(alo, ahi + 1, size=size)
    beats["acc"][0, :] = alo
    beats["bias"][0, :] = alo                      # t = -2**acc_bits
    beats["acc"][1, :] = ahi
    beats["bias"][1, :] = ahi
    beats["res"] = rng.integers(-(1 << (RES_BITS - 1)), 1 << (RES_BITS - 1), size=size)
    beats["shift"] = np.where(rng.random(size) < 0.5,
                              rng.integers(0, 1 << cfg.shift_bits, size=size), beats["shift"])
    beats["shift"][0:2, :] = [0, 1, 2, spec.shift_range[1], spec.shift_range[1] + 1, 49, 50, 63]
    beats["shift"][2:6, :4] = 0
    beats["acc"][6:10, :] = rng.integers(-300, 301, size=(4, cfg.post_lanes))   # S = 0, in range
    beats["bias"][6:10, :] = 0
    beats["mult"][6:10, :] = 1
    beats["res_en"][6:10] = 0
    beats["shift"][6:10, :] = 0
    beats["mult"][0:2, :] = spec.mult_range[1]
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.3, p_ready=0.6)
    check_outputs(cfg, beats, data, trace, reference(cfg, beats))


def test_latency_and_full_throughput(rng):
    """No stalls: one beat per cycle in and out, inp.ready never drops, latency exactly 6."""
    cfg = TINY
    n = 40
    beats = random_beats(rng, cfg, n)
    dut, data, trace = simulate(cfg, beats, rng, p_gap=0.0, p_ready=1.0)
    check_outputs(cfg, beats, data, trace, golden(cfg, beats))
    assert dut.latency == 6
    assert trace["in_cycles"] == list(range(n))
    assert trace["in_ready_low"] == []
    np.testing.assert_array_equal(np.array(trace["out_cycles"]) - np.array(trace["in_cycles"]),
                                  [dut.latency] * n)


def test_backpressure_fills_the_fifo_then_drains(rng):
    """out.ready low: inp accepts exactly fifo_depth beats, then holds ready low; when out.ready
    returns, everything comes out in order and input flow resumes."""
    cfg = TINY
    n = 30
    stall = 25
    beats = random_beats(rng, cfg, n)
    dut, data, trace = simulate(cfg, beats, rng, ready_fn=lambda c: c >= stall)
    check_outputs(cfg, beats, data, trace, golden(cfg, beats))
    accepted_in_stall = [c for c in trace["in_cycles"] if c < stall]
    assert accepted_in_stall == list(range(dut.fifo_depth))
    assert trace["out_cycles"][:dut.fifo_depth] == list(range(stall, stall + dut.fifo_depth))
    # after the stall the unit runs at one beat per cycle again
    assert np.all(np.diff(trace["out_cycles"]) == 1)


def test_random_valid_gaps_and_ready(rng):
    cfg = TINY.replace(act_bits=5)
    beats = random_beats(rng, cfg, 120)
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.5, p_ready=0.4)
    check_outputs(cfg, beats, data, trace, golden(cfg, beats))


def test_verilog_lints_clean():
    lint = pytest.importorskip("ilmpq.firmware.sim.verilator.lint")
    try:
        lint.verilator_path()
    except lint.VerilatorNotFound as e:
        pytest.skip(str(e))
    dut = PostProc(TINY)
    src = verilog.convert(dut, name="postproc")
    result = lint.lint(src, "postproc")
    assert result.clean, result.output


@pytest.mark.parametrize("changes", [{}, {"act_bits": 5, "axi_data_width": 32,
                                          "acc_bits": 24, "mult_bits": 8}],
                         ids=["a8", "g4-a5"])
def test_lookup_table_after_the_clamp(changes, rng):
    """The lookup table stage: lanes with their ``lut`` bit give golden's ``lut_apply`` of the
    clamped value (index offset by 2**(a-1) when signed), the others the value; random table,
    random per-lane bits, stalls. Every table entry is hit (each index forced in a lane)."""
    from ilmpq.golden.ops import lut_apply
    cfg = TINY.replace(**changes)
    a, g = cfg.act_bits, cfg.post_lanes
    n = max(96, 2 * (1 << a) // g + 8)
    beats = random_beats(rng, cfg, n)
    beats["lut"] = rng.integers(0, 1 << g, size=n)
    # every index, both signednesses, through a lane with the table on: acc = value, M = 2, S = 1
    for k in range(1 << a):
        b, lane = divmod(k, g)
        for half, relu in ((0, 1), (1, 0)):
            row = b + half * (((1 << a) + g - 1) // g)
            v = k if relu else k - (1 << (a - 1))
            beats["relu"][row] = relu
            beats["acc"][row, lane], beats["bias"][row, lane] = v, 0
            beats["mult"][row, lane], beats["shift"][row, lane] = 2, 1
            beats["res_en"][row] = 0
            beats["lut"][row] |= 1 << lane
    table = rng.integers(0, 256, size=1 << a)
    y = golden(cfg, beats)
    lut_bits = (beats["lut"][:, None] >> np.arange(g)) & 1
    expected = as_bytes(y).astype(np.int64)
    for relu in (0, 1):
        sel = (beats["relu"][:, None] == relu) & (lut_bits == 1)
        expected[sel] = lut_apply(y[sel], table, in_bits=a, in_signed=not relu)
    hit = np.zeros(1 << a, bool)
    for relu in (0, 1):
        sel = (beats["relu"][:, None] == relu) & (lut_bits == 1)
        hit[(y[sel] + (0 if relu else 1 << (a - 1)))] = True
    assert hit.all()
    assert 0 < lut_bits.mean() < 1
    _, data, trace = simulate(cfg, beats, rng, p_gap=0.2, p_ready=0.7,
                              table=table.astype(np.uint8).tobytes())
    np.testing.assert_array_equal(data, expected.astype(np.uint8))
    np.testing.assert_array_equal(trace["tag"], beats["tag"])
