"""Shared helpers of the block tests under tests/hdl/."""

from amaranth.sim import Simulator

from ilmpq.hdl.compute import ComputeUnit
from ilmpq.hdl.isa import Compute, Store
from ilmpq.hdl.store import StoreUnit


def run_compute(cfg, instrs, mem_words, rng, *, ready_prob=1.0, drained_lag=None,
                n_expected=None):
    """Run ``instrs`` on a ComputeUnit over the activation words ``mem_words`` with random
    back-pressure; return the unit and its beats. ``n_expected``: the beats to wait for
    (default: those of dense COMPUTEs)."""
    dut = ComputeUnit(cfg)
    got = []
    if n_expected is None:
        n_expected = sum(i["n_mtiles"] * i["kh"] * i["kw"] * i["groups"] * i["out_h"]
                         * i["out_w"] for i in instrs)
    mem = {a: int.from_bytes(bytes(w), "little") for a, w in enumerate(mem_words)}

    async def memory(ctx):
        # synchronous read port model: data the cycle after rd_en
        async for clk_edge, rst, en, addr in ctx.tick().sample(dut.rd_en, dut.rd_addr):
            if en:
                ctx.set(dut.rd_data, mem.get(addr, 0))

    async def driver(ctx):
        ctx.set(dut.la_done, len(instrs))
        ctx.set(dut.drained, 1 << 20)
        for ins in instrs:
            ctx.set(dut.instr.payload, Compute.const(ins))
            ctx.set(dut.instr.valid, 1)
            await ctx.tick().until(dut.instr.ready)
            ctx.set(dut.instr.valid, 0)

    async def sink(ctx):
        while len(got) < n_expected:
            ready = int(rng.random() < ready_prob)
            ctx.set(dut.beats.ready, ready)
            await ctx.tick()
            if ready and ctx.get(dut.beats.valid):
                pass
        ctx.set(dut.beats.ready, 0)

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.beats.valid, dut.beats.ready, dut.beats.payload):
            if valid and ready:
                got.append((tuple(int(x) for x in payload.data), payload.addr, payload.bank,
                            payload.first, payload.swap, payload.last))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(memory)
    sim.add_process(monitor)
    sim.add_testbench(driver)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (n_expected * 8 + 300))
    return dut, got


def assert_instruction_rejected(cfg, ins):
    """A COMPUTE ``ins`` with a bad field: the unit latches ``error`` within a few cycles and
    sends no beat."""
    dut = ComputeUnit(cfg)

    async def tb(ctx):
        ctx.set(dut.la_done, 1)
        ctx.set(dut.instr.payload, Compute.const(ins))
        ctx.set(dut.instr.valid, 1)
        await ctx.tick()
        ctx.set(dut.instr.valid, 0)
        await ctx.tick().repeat(4)
        assert ctx.get(dut.error) == 1
        assert ctx.get(dut.beats.valid) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


def expected_conv_beats(ins, act_half, tn, act_bits, g0=0):
    """(data tuple, addr, bank, first, swap, last) of each beat of one conv COMPUTE, from the
    loop nest of docs/architecture.md section 2: a position outside the loaded rows and columns,
    or (stacked images, ``img_rows`` > 0) on a row outside the output row's own image -- ``v =
    (img_phase + oy * stride_y) mod img_period - img_pad + kr`` outside ``[0, img_rows)`` --
    reads the padding value (0, or ``2**(act_bits-1)`` with ``pad_ob``)."""
    groups, in_w = ins["groups"], ins["in_w"]
    pad = ins.get("pad_ob", 0) << (act_bits - 1)
    h_img = ins.get("img_rows", 0)

    def own_image(oy, kr):
        if not h_img:
            return True
        v = (ins["img_phase"] + oy * ins["stride_y"]) % ins["img_period"] - ins["img_pad"] + kr
        return 0 <= v < h_img
    out = []
    for mt in range(ins["n_mtiles"]):
        sets = [(kr, kc, cg) for kr in range(ins["kh"]) for kc in range(ins["kw"])
                for cg in range(groups)]
        for si, (kr, kc, cg) in enumerate(sets):
            for oy in range(ins["out_h"]):
                for ox in range(ins["out_w"]):
                    iy = ins["ty0"] + oy * ins["stride_y"] + kr
                    ix = ins["tx0"] + ox * ins["stride_x"] + kc
                    if (0 <= iy < ins["in_rows"] and 0 <= ix < in_w
                            and own_image(oy, kr)):
                        d = tuple(int(b) & ((1 << act_bits) - 1)
                                  for b in act_half[(iy * in_w + ix) * groups + cg])
                    else:
                        d = (pad,) * tn
                    p = oy * ins["out_w"] + ox
                    last = si == len(sets) - 1 and p == ins["out_h"] * ins["out_w"] - 1
                    out.append((d, p, (g0 + mt) % 2, int(si == 0), int(p == 0), int(last)))
    return out


def run_store(cfg, rng, instrs, mem, *, pp_out=None, wr_base=0, wr_limit=0xFFFF_FFFF,
              p_stall=0.35, max_cycles=8000, expect_error=False):
    """STOREs on a StoreUnit, in order, every port driven by a model with random stalls: reads
    from ``mem``, writes into it (commands in order, their data beats after them).
    ``pp_out``: the post-processing unit's outputs, one int (an AXI beat) a ``post_lanes``
    group of a ``pp_in`` beat in order (None: zeros). Returns the join's groups in order (a
    ``pp_in`` beat has ``post_groups`` of them): ``(res_en, [res of each lane])``.
    ``expect_error``: the unit must stop with ``error`` before it completes or writes."""
    dut = StoreUnit(cfg)
    bb, G, Q = cfg.beat_bytes, cfg.post_lanes, cfg.post_groups
    groups = cfg.lanes_pad // (G * Q)           # drain (and join) beats a pixel
    outs = None if pp_out is None else list(pp_out)
    got = []

    def go():
        return int(rng.random() >= p_stall)

    async def bench(ctx):
        ctx.set(dut.win_base, 0)
        ctx.set(dut.win_limit, 0xFFFF_FFFF)
        ctx.set(dut.wr_base, wr_base)
        ctx.set(dut.wr_limit, wr_limit)
        rd_q, pp_q, wr_cmds = [], [], []        # read beats, post-processing outputs, writes
        dout_q, cur, bank = 0, None, 0          # drain beats owed, the write being filled
        pending = list(instrs)
        ctx.set(dut.instr.payload, Store.const(pending[0]))
        ctx.set(dut.instr.valid, 1)
        for _ in range(max_cycles):
            # inputs of this cycle
            ctx.set(dut.rd_cmd.ready, go())
            ctx.set(dut.rd_data.valid, int(bool(rd_q) and go()))
            if rd_q:
                ctx.set(dut.rd_data.payload, rd_q[0])
            ctx.set(dut.done_in.valid, go())
            ctx.set(dut.done_in.payload, bank)
            ctx.set(dut.drain.ready, go())
            ctx.set(dut.dout.valid, int(dout_q > 0 and go()))
            ctx.set(dut.pool_in.valid, 0)
            ctx.set(dut.pp_in.ready, go())
            ctx.set(dut.pp_out.valid, int(bool(pp_q) and go()))
            ctx.set(dut.pp_out.payload, pp_q[0] if pp_q else 0)
            ctx.set(dut.wr_cmd.ready, go())
            ctx.set(dut.wr_data.ready, go())
            # handshakes of this cycle
            hs = {n: ctx.get(getattr(dut, n).valid) and ctx.get(getattr(dut, n).ready)
                  for n in ("instr", "rd_cmd", "rd_data", "done_in", "drain", "dout", "pp_in",
                            "pp_out", "wr_cmd", "wr_data")}
            if hs["rd_cmd"]:
                a, n = ctx.get(dut.rd_cmd.payload.addr), ctx.get(dut.rd_cmd.payload.beats)
                rd_q += [int.from_bytes(mem[a + k * bb:a + (k + 1) * bb], "little")
                         for k in range(n)]
            if hs["pp_in"]:
                p = ctx.get(dut.pp_in.payload)
                out = 0
                for q in range(Q):
                    got.append((int(p.res_en), [int(p.res[q * G + k]) for k in range(G)]))
                    out |= (0 if outs is None else outs.pop(0)) << (q * 8 * bb)
                pp_q.append(out)
            if hs["wr_cmd"]:
                wr_cmds.append([ctx.get(dut.wr_cmd.payload.addr),
                                ctx.get(dut.wr_cmd.payload.beats)])
            done_wr = False
            if hs["wr_data"]:
                if cur is None:
                    cur = wr_cmds.pop(0)
                mem[cur[0]:cur[0] + bb] = ctx.get(dut.wr_data.payload).to_bytes(bb, "little")
                cur[0] += bb
                cur[1] -= 1
                if cur[1] == 0:
                    cur, done_wr = None, True
            await ctx.tick()
            ctx.set(dut.wr_done, int(done_wr))
            if hs["instr"]:
                pending.pop(0)
                ctx.set(dut.instr.valid, int(bool(pending)))
                if pending:
                    ctx.set(dut.instr.payload, Store.const(pending[0]))
            if hs["rd_data"]:
                rd_q.pop(0)
            if hs["done_in"]:
                bank ^= 1
            if hs["drain"]:
                dout_q += groups
            if hs["dout"]:
                dout_q -= 1
            if hs["pp_out"]:
                pp_q.pop(0)
            if ctx.get(dut.done_count) == len(instrs) or ctx.get(dut.error):
                break
        if expect_error:
            assert ctx.get(dut.error) and ctx.get(dut.done_count) == 0 and not wr_cmds
            return
        assert not ctx.get(dut.error), "the store unit stopped (error)"
        assert ctx.get(dut.done_count) == len(instrs), "the STOREs did not complete"
        assert not (ctx.get(dut.err_params) or ctx.get(dut.err_res)
                    or ctx.get(dut.err_protect))
        assert not outs, "post-processing outputs left over"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got
