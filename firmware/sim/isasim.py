"""An instruction-level simulator of the accelerator (NumPy, functional, no timing).

It executes a compiled program on a byte memory exactly as the hardware's units define it
(hdl/isa.py, docs/architecture.md): activation-buffer halves, weight packages parsed and checked
by :func:`ilmpq.firmware.wpkg.scan_packages`, the compute loop nest, and the store unit's
post-processing (golden's requantization, which the post-processing unit matches bit for bit).
It verifies the compiler independently of the RTL and runs whole networks in seconds.

It models the integrity checks of the hardware (docs/reliability.md) and raises
:class:`IsaFault` with the hardware's ErrorCode: an instruction whose check word is wrong
(INSTR_CRC), a STORE that does not drain what the COMPUTE before it filled (STORE_MISMATCH), a
lane-parameter block whose CRC trailer does not match (PARAMS_CRC), a STORE's lookup table
whose CRC trailer does not match (LUT_CRC), a STORE outside the activation arena
(WRITE_PROTECT), activation rows that do not match their check entries (ACT_CRC); its STOREs
write the check entries as the store unit does.
"""

from __future__ import annotations

import zlib

import numpy as np

from ...golden.model import layer_inputs
from ...golden.reference import run_layer
from ...hdl.config import HWConfig
from ...hdl.isa import (DW_MAX_MTILES, INSTR_BITS, Opcode, PoolMode, act_check_sum,
                        decode, is_sealed, lut_block_bytes,
                        params_block_bytes)
from ...hdl.status import ErrorCode
from .. import wpkg
from ..compiler import AccelStep, Compiled, CpuStep

__all__ = ["Memory", "IsaFault", "run_program", "run_compiled", "cpu_layer", "cpu_writes",
           "cpu_inputs"]


class IsaFault(ValueError):
    """A check the hardware makes failed; ``code`` is the ErrorCode it would latch."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code


class Memory:
    """A flat byte memory at ``base``."""

    def __init__(self, base: int, size: int):
        self.base = base
        self.data = bytearray(size)

    def read(self, addr: int, n: int) -> bytes:
        off = addr - self.base
        if off < 0 or off + n > len(self.data):
            raise ValueError(f"read of {n} bytes at 0x{addr:08x} outside memory")
        return bytes(self.data[off:off + n])

    def write(self, addr: int, payload: bytes):
        off = addr - self.base
        if off < 0 or off + len(payload) > len(self.data):
            raise ValueError(f"write of {len(payload)} bytes at 0x{addr:08x} outside memory")
        self.data[off:off + len(payload)] = payload


def _requant(cfg: HWConfig, acc, bias, mult, shift, res, res_mult, relu: bool):
    t = acc + bias
    v = t * mult + res * res_mult + (np.int64(1) << (shift - 1))
    y = v >> shift
    a = cfg.act_bits
    lo, hi = (0, (1 << a) - 1) if relu else (-(1 << (a - 1)), (1 << (a - 1)) - 1)
    return np.clip(y, lo, hi)


def _strided_read(cfg: HWConfig, mem: Memory, f: dict, i: int) -> bytes:
    """The bytes of a strided LOAD_ROWS (``chunk_beats != 0``, hdl/isa.py ``LoadRows``)."""
    cb, n = f["chunk_beats"], f["chunks"]
    if f["gather"] or n == 0 or f["beats"] % (cb * n):
        raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: strided LOAD_ROWS fields {f}")
    out = bytearray()
    for r in range(f["beats"] // (cb * n)):
        for k in range(n):
            out += mem.read(f["addr"] + r * f["row_stride"] + k * f["chunk_stride"],
                            cb * cfg.beat_bytes)
    return bytes(out)


def _gather_rows(cfg: HWConfig, raw: bytes, f: dict, i: int, prev) -> np.ndarray:
    """A gathering LOAD_ROWS (hdl/isa.py ``LoadRows``): the buffer half it leaves. Beats it
    does not write keep what ``prev`` (the half's last contents) held there."""
    bb = cfg.beat_bytes
    rb, sb, s, pix, pb = f["row_beats"], f["seg_beats"], f["seg_rows"], f["pix"], f["pix_beats"]
    half_beats = cfg.act_depth // 2 * cfg.tn // bb
    if min(rb, sb, s, pix) == 0 or pb < s * sb or f["beats"] % (rb * s):
        raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: gathering LOAD_ROWS fields "
                                              f"{f}")
    n_rows = f["beats"] // rb
    if (n_rows // s) * pix * pb > half_beats:
        raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: a gathering LOAD_ROWS writes "
                                              f"past the buffer half")
    buf = np.zeros(half_beats * bb, np.uint8)
    if prev is not None:
        old = prev.reshape(-1)[:len(buf)]
        buf[:len(old)] = old
    rows = np.frombuffer(raw, np.uint8).reshape(n_rows, rb * bb)
    n_out = pix * sb * bb
    t = f["shift"] + np.arange(n_out)                    # byte of the row for each output byte
    ok = (t >= 0) & (t < rb * bb)
    k = np.arange(pix * sb)
    slot = (k // sb) * pb + k % sb                        # beat slot within the stored row
    for r in range(n_rows):
        seg = np.where(ok, rows[r][np.clip(t, 0, rb * bb - 1)], 0).reshape(-1, bb)
        dst = (r // s) * pix * pb + (r % s) * sb + slot
        buf.reshape(-1, bb)[dst] = seg
    used = (n_rows // s) * pix * pb * bb
    return buf[:-(-used // cfg.tn) * cfg.tn].reshape(-1, cfg.tn)


def run_program(cfg: HWConfig, mem: Memory, prog_addr: int, n_instr: int,
                arena: tuple[int, int] | None = None, prog_tag: int = 0) -> dict:
    """Execute ``n_instr`` instructions at ``prog_addr``; return simple statistics.
    ``arena``: the range STOREs may write (None: the whole memory); ``prog_tag``: PROG_TAG."""
    if arena is None:
        arena = (mem.base, mem.base + len(mem.data))
    pend = None                 # (n_mtiles, pool) of a COMPUTE not stored yet
    ib = INSTR_BITS // 8
    halves = [None, None]
    n_load = 0
    n_comp = 0
    sets_queue: list[tuple[np.ndarray, np.ndarray]] = []
    bank_results: list[np.ndarray] = []     # per mtile: (lanes, pixels) int64
    stats = {"instructions": 0, "pe_beats": 0, "pool_beats": 0}
    w_early: set[int] = set()   # LOAD_WEIGHTS executed ahead, for the COMPUTE before them
    # the store unit's row array of vertical max pooling (Store.vpool): persists across STOREs
    vrow = np.zeros((max(1, cfg.vpool_entries), cfg.lanes_pad), np.uint8)

    def load_weights(f):
        raw = mem.read(f["addr"], f["beats"] * cfg.beat_bytes)
        scan = wpkg.scan_packages(cfg, raw, first_seq=f["seq_base"])
        if scan.error is not None:
            raise ValueError(f"weight package error {scan.error!r}")
        for pkg in scan.packages:
            lo, hi = wpkg.decode_sets(cfg, pkg.payload)
            for s in range(lo.shape[0]):
                sets_queue.append((lo[s], hi[s]))

    for i in range(n_instr):
        raw = mem.read(prog_addr + i * ib, ib)
        if not is_sealed(raw, i, prog_addr, prog_tag):
            raise IsaFault(ErrorCode.INSTR_CRC, f"instruction {i} of the program at "
                                                f"{prog_addr:#x}: wrong check word")
        op, f = decode(raw)
        if (op in (Opcode.COMPUTE, Opcode.END) and pend is not None) or (
                op == Opcode.STORE and pend != (f["n_mtiles"], bool(f["pool"]))):
            raise IsaFault(ErrorCode.STORE_MISMATCH, f"instruction {i} ({op.name}): the "
                                                     f"pending COMPUTE is {pend}")
        if op == Opcode.COMPUTE:
            pend = (f["n_mtiles"], f["pool"] != PoolMode.NONE.value)
        elif op == Opcode.STORE:
            pend = None
        stats["instructions"] += 1
        if op == Opcode.END:
            break
        if op == Opcode.NOP:
            continue
        if op == Opcode.LOAD_ROWS:
            if f["chunk_beats"] and (f["gather"] or f["chk_beats"]):
                # a strided load reads part of each row: never gathering, never checked
                raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: a strided LOAD_ROWS "
                                                      f"with gather or check fields")
            if f["chunk_beats"]:
                raw = _strided_read(cfg, mem, f, i)
            else:
                raw = mem.read(f["addr"], f["beats"] * cfg.beat_bytes)
            if f["chk_beats"]:
                # the rows' check entries (hdl/loaders.py): their sum must be the data's
                bb = cfg.beat_bytes
                ent = np.frombuffer(mem.read(arena[0] + f["chk_off"] * bb,
                                             f["chk_beats"] * bb), np.uint8).reshape(-1, bb)
                esum = int(ent[:, :4].copy().view("<u4").astype(np.uint64).sum()) & 0xFFFF_FFFF
                if esum != act_check_sum(f["addr"], raw, bb) or ent[:, 4:].any():
                    raise IsaFault(ErrorCode.ACT_CRC, f"instruction {i}: LOAD_ROWS at "
                                                      f"{f['addr']:#x}: check entries differ")
            if f["gather"]:
                halves[n_load % 2] = _gather_rows(cfg, raw, f, i, halves[n_load % 2])
            else:
                halves[n_load % 2] = np.frombuffer(raw, np.uint8).reshape(-1, cfg.tn)
            n_load += 1
        elif op == Opcode.LOAD_WEIGHTS:
            if i not in w_early:
                load_weights(f)
        elif op == Opcode.COMPUTE:
            act = halves[n_comp % 2].astype(np.int64) & ((1 << cfg.act_bits) - 1)
            n_comp += not f["keep"]     # keep: the next COMPUTE reads the same load (half)
            kh, kw, G = f["kh"], f["kw"], f["groups"]
            h_img, p_img = f["img_rows"], f["img_period"]
            if h_img and not (f["stride_y"] <= p_img and f["img_phase"] < p_img and
                              h_img <= p_img):
                raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: stacked-image fields "
                                                      f"img_rows={h_img}, img_period={p_img}, "
                                                      f"img_phase={f['img_phase']}")
            if f["pool"] == PoolMode.NONE.value:
                # the weight unit runs ahead of the COMPUTE: the LOAD_WEIGHTS after it (a layer
                # of several streams, the later ones after its STORE) up to the next LOAD_ROWS
                j = i + 1
                while len(sets_queue) < f["n_mtiles"] * kh * kw * G and j < n_instr:
                    oj, fj = decode(mem.read(prog_addr + j * ib, ib))
                    if oj in (Opcode.LOAD_ROWS, Opcode.END):
                        break
                    if oj == Opcode.LOAD_WEIGHTS and j not in w_early:
                        load_weights(fj)
                        w_early.add(j)
                    j += 1
            oh, ow, rows, iw = f["out_h"], f["out_w"], f["in_rows"], f["in_w"]
            oy = np.arange(oh)[:, None]
            ox = np.arange(ow)[None, :]
            # a padding position reads 0, or the zero of an offset-binary input (pad_ob)
            pad = f["pad_ob"] << (cfg.act_bits - 1)
            if f["pool"] != PoolMode.NONE.value:
                # the pooling unit: an mtile is lanes_pad channel positions (hdl/pool.py)
                ppg = cfg.lanes_pad // cfg.tn
                is_sum = f["pool"] == PoolMode.SUM.value
                for t in range(f["n_mtiles"]):
                    val = np.zeros((cfg.lanes_pad, oh * ow), np.int64)
                    for cgl in range(ppg):
                        cg = t * ppg + cgl
                        red = None
                        for kr in range(kh):
                            for kc in range(kw):
                                iy = f["ty0"] + oy * f["stride_y"] + kr
                                ix = f["tx0"] + ox * f["stride_x"] + kc
                                inb = ((iy >= 0) & (iy < rows) & (ix >= 0) & (ix < iw)
                                       ).reshape(-1) & (cg < G)
                                words = (np.clip(iy, 0, rows - 1) * iw
                                         + np.clip(ix, 0, iw - 1)) * G + min(cg, G - 1)
                                x = np.where(inb[:, None], act[words.reshape(-1)], pad)
                                red = x if red is None else (red + x if is_sum
                                                             else np.maximum(red, x))
                                stats["pool_beats"] += oh * ow
                        val[cgl * cfg.tn:(cgl + 1) * cfg.tn] = red.T
                    bank_results.append(val)
                continue
            dw, ppg, base = f.get("dw", 0), cfg.lanes_pad // cfg.tn, 0
            # stacked images: output row oy's phase in its image (hdl/compute.py ``phi``)
            phi = (f["img_phase"] + oy * f["stride_y"]) % p_img if h_img else oy
            if dw & 1 and f["n_mtiles"] > DW_MAX_MTILES:
                raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: a depthwise COMPUTE of "
                                                      f"{f['n_mtiles']} > {DW_MAX_MTILES} mtiles")
            for t in range(f["n_mtiles"]):
                # depthwise windowing: mtile t iterates the ppg groups of its window only
                if dw & 1 and t and dw >> t & 1:
                    base += ppg
                acc = np.zeros((cfg.lanes, oh * ow), np.int64)
                for kr in range(kh):
                    for kc in range(kw):
                        iy = f["ty0"] + oy * f["stride_y"] + kr
                        ix = f["tx0"] + ox * f["stride_x"] + kc
                        # a row outside the output row's image (stacked images) reads as padding
                        v = phi - f["img_pad"] + kr
                        own = (v >= 0) & (v < h_img) if h_img else True
                        inb = ((iy >= 0) & (iy < rows) & (ix >= 0) & (ix < iw) & own
                               ).reshape(-1)
                        for cg in (range(base, base + ppg) if dw & 1 else range(G)):
                            lo, hi = sets_queue.pop(0)
                            w = np.concatenate([lo, hi]).astype(np.int64)   # lanes x tn
                            words = (np.clip(iy, 0, rows - 1) * iw
                                     + np.clip(ix, 0, iw - 1)) * G + min(cg, G - 1)
                            # padding and groups past G (depthwise windowing) read ``pad`` (0,
                            # or the stored zero of an offset-binary input, as hdl/compute.py)
                            x = np.where((inb & (cg < G))[:, None], act[words.reshape(-1)], pad)
                            acc += w @ x.T
                            stats["pe_beats"] += max(oh * ow, cfg.words_per_set)
                bank_results.append(acc)
        elif op == Opcode.STORE:
            P = f["pixels"]
            P_out = P
            if f["vpool"]:
                P_out, cols = f["vp_pixels"], f["vp_cols"]
                groups = cfg.lanes_pad // cfg.post_lanes
                if (not cfg.vpool_entries or not cols or not f["vp_h"] or not P_out
                        or P_out > P or P % cols or cols * groups < 2
                        or f["n_mtiles"] * cols * groups > cfg.vpool_entries):
                    raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: STORE with vpool: "
                                                          f"{P_out} of {P} pixels in rows of "
                                                          f"{cols}, {f['n_mtiles']} mtiles, "
                                                          f"{cfg.vpool_entries} array entries")
            end = f["out_addr"] + (P_out - 1) * f["out_stride"] + f["n_mtiles"] * cfg.lanes_pad
            if not arena[0] <= f["out_addr"] <= end <= arena[1]:
                raise IsaFault(ErrorCode.WRITE_PROTECT, f"instruction {i}: STORE to "
                                                        f"[{f['out_addr']:#x}, {end:#x})")
            table = None
            if f["lut_en"]:
                # the lookup table, checked before any mtile (LUT_CRC)
                n_lut = 1 << cfg.act_bits
                blk = mem.read(f["lut_addr"], lut_block_bytes(cfg.act_bits))
                if int.from_bytes(blk[n_lut:n_lut + 4], "little") != zlib.crc32(blk[:n_lut]):
                    raise IsaFault(ErrorCode.LUT_CRC, f"instruction {i}: lookup table at "
                                                      f"{f['lut_addr']:#x}")
                table = np.frombuffer(blk[:n_lut], np.uint8)
            row_sums = np.zeros(P_out, np.uint64)     # per pixel, summed over mtiles
            for t in range(f["n_mtiles"]):
                acc = bank_results.pop(0)
                blk = mem.read(f["params_addr"] + t * params_block_bytes(cfg.lanes_pad),
                               params_block_bytes(cfg.lanes_pad))
                pr = blk[:cfg.lanes_pad * 16]
                trailer = blk[cfg.lanes_pad * 16:]
                if int.from_bytes(trailer[:4], "little") != zlib.crc32(pr):
                    raise IsaFault(ErrorCode.PARAMS_CRC, f"instruction {i}: lane parameters "
                                                         f"of mtile {t}")
                p = np.frombuffer(pr, np.uint8).reshape(cfg.lanes_pad, 16)
                le = lambda a, b: np.frombuffer(p[:, a:b].tobytes() + b"", np.uint8)
                words = [int.from_bytes(bytes(p[k]), "little") for k in range(cfg.lanes_pad)]

                def fld(off, width, signed=False):
                    v = np.array([(w >> off) & ((1 << width) - 1) for w in words], np.int64)
                    if signed:
                        v = np.where(v >> (width - 1), v - (1 << width), v)
                    return v
                bias, mult = fld(0, 32, True), fld(32, 24)
                rmult, shift, rpos = fld(56, 24), fld(80, 8), fld(88, 16)
                accp = np.zeros((cfg.lanes_pad, P), np.int64)
                accp[:acc.shape[0]] = acc
                if f["res_en"]:
                    rb = f["res_beats"] * cfg.beat_bytes
                    rraw = mem.read(f["res_addr"], P * rb)
                    if f["res_chk_beats"]:
                        # the residual rows' check entries, for every mtile (hdl/store.py)
                        bb = cfg.beat_bytes
                        ent = np.frombuffer(mem.read(arena[0] + f["res_chk_off"] * bb,
                                                     f["res_chk_beats"] * bb),
                                            np.uint8).reshape(-1, bb)
                        esum = int(ent[:, :4].copy().view("<u4").astype(np.uint64).sum()) \
                            & 0xFFFF_FFFF
                        if esum != act_check_sum(f["res_addr"], rraw, bb) or ent[:, 4:].any():
                            raise IsaFault(ErrorCode.ACT_CRC, f"instruction {i}: residual at "
                                                              f"{f['res_addr']:#x}: check "
                                                              f"entries differ")
                    rr = np.frombuffer(rraw, np.int8 if f["res_signed"] and not f["res_offset"]
                                       else np.uint8)
                    rr = rr.reshape(P, rb).astype(np.int64)
                    if f["res_signed"] and f["res_offset"]:
                        # offset-binary: the stored byte minus 2**(act_bits-1)
                        a = cfg.act_bits
                        rr = (rr & ((1 << a) - 1)) - (1 << (a - 1))
                    # the row buffer keeps max_channels bytes of each pixel from beat res_win
                    # (LaneParams.res_win, hdl/store.py): every lane must read inside it
                    win = int(fld(105, 12)[-1]) * cfg.beat_bytes
                    if ((rpos < win) | (rpos >= win + cfg.max_channels)).any():
                        raise ValueError(f"instruction {i}: mtile {t} reads residual bytes "
                                         f"outside its window [{win}, "
                                         f"{win + cfg.max_channels})")
                    res = rr[:, rpos].T
                else:
                    res = np.zeros_like(accp)
                y = _requant(cfg, accp, bias[:, None], mult[:, None], shift[:, None], res,
                             rmult[:, None] if f["res_en"] else 0, bool(f["relu"]))
                out = (y & 0xFF).astype(np.uint8)                       # lanes_pad x P
                if table is not None:
                    # index: the clamped value, offset to 0 when signed; no_lut lanes bypass
                    idx = (y + (0 if f["relu"] else 1 << (cfg.act_bits - 1))) & (len(table) - 1)
                    out = np.where(fld(104, 1)[:, None] == 1, out, table[idx])
                bb = cfg.beat_bytes
                if f["vpool"]:
                    out = _vpool(out, vrow, t, f, i)
                for px in range(P_out):
                    a = f["out_addr"] + px * f["out_stride"] + t * cfg.lanes_pad
                    mem.write(a, out[:, px].tobytes())
                    if f["chk_row_pixels"]:
                        row_sums[px] += np.uint64(act_check_sum(a, out[:, px].tobytes(), bb))
            if f["chk_row_pixels"]:
                # one check entry per output row (hdl/store.py), inside the arena
                bb = cfg.beat_bytes
                rp = f["chk_row_pixels"]
                for r in range(-(-P_out // rp)):
                    a = arena[0] + (f["chk_off"] + r * f["chk_stride"]) * bb
                    if a + bb > arena[1]:
                        raise IsaFault(ErrorCode.WRITE_PROTECT, f"instruction {i}: check "
                                                                f"entry at {a:#x}")
                    v = int(row_sums[r * rp:(r + 1) * rp].sum()) & 0xFFFF_FFFF
                    mem.write(a, v.to_bytes(4, "little") + bytes(bb - 4))
        else:
            raise ValueError(f"instruction {i}: opcode {op!r} not executable")
    return stats


def _vpool(out: np.ndarray, vrow: np.ndarray, t: int, f: dict, i: int) -> np.ndarray:
    """Vertical max pooling of mtile ``t``'s post-processed bytes ``out`` (lanes_pad x pixels)
    through the row array ``vrow`` (updated), as hdl/store.py: the written pixels."""
    cols, h = f["vp_cols"], f["vp_h"]
    base = t * cols
    w = []
    for r in range(out.shape[1] // cols):
        y = f["vp_y0"] + r
        v = out[:, r * cols:(r + 1) * cols].T                     # cols x lanes_pad
        o = v if y == 0 else np.maximum(vrow[base:base + cols], v)
        vrow[base:base + cols] = v if y % 2 else o
        if y % 2 or y == h - 1:
            w.append(o.T)
    if sum(x.shape[1] for x in w) != f["vp_pixels"]:
        raise IsaFault(ErrorCode.INSTR_FIELD, f"instruction {i}: STORE with vpool writes "
                                              f"{sum(x.shape[1] for x in w)} pixels, not "
                                              f"vp_pixels = {f['vp_pixels']}")
    return np.concatenate(w, axis=1)


def cpu_inputs(layer) -> list[str]:
    """Tensors a CPU layer reads (its input and its residual, gate or other concat inputs)."""
    return layer_inputs(layer)


def cpu_layer(compiled: Compiled, layer, raw: dict[str, bytes]) -> tuple[int, bytes]:
    """Run a CPU layer with golden's integer op.

    ``raw`` holds the stored bytes of :func:`cpu_inputs`; returns ``(address, bytes)`` of the
    output tensor in its placement.
    """
    model = compiled.model
    tensors = {name: compiled.tensors[name].from_memory(raw[name]) for name in raw}
    y = run_layer(model, layer, tensors, spec=compiled.config.numeric)
    dst = compiled.tensors[layer.output]
    return dst.addr, dst.to_memory(np.asarray(y, np.int64))


def cpu_writes(compiled: Compiled, layer, raw: dict[str, bytes]) -> list[tuple[int, bytes]]:
    """Everything a host step writes: the output of :func:`cpu_layer` and, when an accelerated
    layer reads it, its check entries (:meth:`Compiled.host_writes`): ``[(address, bytes)]``."""
    _, payload = cpu_layer(compiled, layer, raw)
    return compiled.host_writes(layer.output, payload)


def run_compiled(compiled: Compiled, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run a compiled model on one image with the ISA simulator; return every stored tensor
    (natural layout) by name."""
    mem = Memory(compiled.base, compiled.size)
    mem.data[:] = compiled.image
    inp = compiled.tensors[compiled.input]
    for addr, data in compiled.host_writes(compiled.input,
                                           inp.to_memory(np.asarray(image, np.int64))):
        mem.write(addr, data)
    layers = {l.name: l for l in compiled.model.layers}
    for step in compiled.steps:
        if isinstance(step, AccelStep):
            run_program(compiled.config, mem, step.prog_addr, step.n_instr, compiled.arena,
                        step.prog_tag)
        else:
            layer = layers[step.layer]
            raw = {n: mem.read(compiled.tensors[n].addr, compiled.tensors[n].nbytes)
                   for n in cpu_inputs(layer)}
            for addr, data in cpu_writes(compiled, layer, raw):
                mem.write(addr, data)
    # (and the stored rows of convs whose STOREs pool vertically: Compiled.vpooled)
    stored = dict(compiled.tensors)
    stored.update({n: compiled.internal[n] for n in compiled.vpooled.values()})
    return {name: t.from_memory(mem.read(t.addr, t.nbytes)) for name, t in stored.items()}


def run_compiled_batch(compiled: Compiled, images) -> list[dict[str, np.ndarray]]:
    """Run a batched program (``compile_model(batch=B)``) on ``B`` images with the ISA
    simulator; per image every model tensor it has a placement of (natural layout) by name."""
    images = list(images)
    if len(images) != compiled.batch or not compiled.one_program:
        raise ValueError(f"the program takes {compiled.batch} images in one accelerator "
                         f"program, got {len(images)}")
    mem = Memory(compiled.base, compiled.size)
    mem.data[:] = compiled.image
    inp = compiled.tensors[compiled.input]
    for b, img in enumerate(images):
        for addr, data in compiled.image_writes(b, inp.to_memory(np.asarray(img, np.int64))):
            mem.write(addr, data)
    step = compiled.steps[0]
    run_program(compiled.config, mem, step.prog_addr, step.n_instr, compiled.arena,
                step.prog_tag)
    return [{name: t.from_memory(mem.read(t.addr, t.nbytes)) for name, t in views.items()}
            for views in compiled.batch_tensors]
