// Verilator harness for ilmpq accelerator tops: clock/reset, an AXI4-Lite manager for the CSRs,
// and the deterministic AXI4 memory model of docs/memory_model.md on the m_axi port, all in C++
// so a whole network runs at Verilator speed. Python drives it through the C API at the bottom
// (ilmpq.firmware.sim.verilator.sim loads the shared library with ctypes).
//
// The model is compiled together with the Verilated top (always prefixed Vtop). The build writes
// ilmpq_harness_config.h with
//   ILMPQ_DATA_BITS   m_axi data width (32, 64 or 128)
// and the port widths of every other signal are taken from the Verilated C++ types. Built with
// Verilator's --trace (VM_TRACE), ilmpq_sim_trace_open() writes a VCD of every evaluation.
//
// Cycle semantics (docs/verilator.md): edge c is the c-th rising clock edge after reset (c = 0, 1,
// ...). Before edge c the harness drives its outputs from its state after edge c-1 and evaluates
// the design; at edge c it samples every valid/ready pair, performs the handshakes, then clocks
// the design. Model outputs depend only on the model's state, never combinationally on the design.

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "Vtop.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

// Written by build.py next to the generated model (not a -D flag, so that every design shares
// the compiler flags and hence the cached Verilator runtime objects).
#include "ilmpq_harness_config.h"
#ifndef ILMPQ_DATA_BITS
#error "ilmpq_harness_config.h must define ILMPQ_DATA_BITS (the m_axi data width)"
#endif

#define ILMPQ_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 1;
constexpr int kDataBytes = ILMPQ_DATA_BITS / 8;
constexpr int kSizeLog2 = kDataBytes == 4 ? 2 : kDataBytes == 8 ? 3 : kDataBytes == 16 ? 4 : -1;
static_assert(kSizeLog2 > 0, "m_axi data width must be 32, 64 or 128 bits");
constexpr int kMaxBurst = 16;
constexpr int64_t kNegInf = INT64_MIN / 4;

// AXI response codes.
constexpr uint32_t kOkay = 0, kSlverr = 2, kDecerr = 3;

// Status codes returned by the C API.
enum Status : int { kOk = 0, kTimeout = 1, kFailed = 2 };

// Error-injection channels.
enum InjectChannel : int { kInjR = 0, kInjB = 1 };

// ---- generic port access: Verilator uses CData/SData/IData/QData or VlWide<N> by width --------

template <typename T>
inline uint64_t get_u(const T& s) {
    return static_cast<uint64_t>(s);
}

template <typename T>
inline void set_u(T& s, uint64_t v) {
    s = static_cast<T>(v);
}

template <typename T>
inline void get_bytes(const T& s, uint8_t* out) {
    const uint64_t v = static_cast<uint64_t>(s);
    for (int i = 0; i < kDataBytes; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <std::size_t N>
inline void get_bytes(const VlWide<N>& s, uint8_t* out) {
    for (int i = 0; i < kDataBytes; ++i)
        out[i] = static_cast<uint8_t>(s.at(i / 4) >> (8 * (i % 4)));
}

template <typename T>
inline void set_bytes(T& s, const uint8_t* in) {
    uint64_t v = 0;
    for (int i = 0; i < kDataBytes; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
    s = static_cast<T>(v);
}

template <std::size_t N>
inline void set_bytes(VlWide<N>& s, const uint8_t* in) {
    for (std::size_t w = 0; w < N; ++w) {
        uint32_t v = 0;
        for (int b = 0; b < 4; ++b) {
            const std::size_t i = 4 * w + b;
            if (i < static_cast<std::size_t>(kDataBytes))
                v |= static_cast<uint32_t>(in[i]) << (8 * b);
        }
        s.at(w) = v;
    }
}

// ---- model state ------------------------------------------------------------------------------

struct AddrReq {  // an AR or AW payload
    uint64_t addr = 0;
    uint32_t id = 0, len = 0, size = 0, burst = 0, lock = 0, cache = 0, prot = 0, qos = 0;
    bool operator==(const AddrReq& o) const {
        return addr == o.addr && id == o.id && len == o.len && size == o.size &&
               burst == o.burst && lock == o.lock && cache == o.cache && prot == o.prot &&
               qos == o.qos;
    }
};

struct WBeat {
    uint8_t data[kDataBytes] = {};
    uint32_t strb = 0, last = 0;
    bool operator==(const WBeat& o) const {
        return strb == o.strb && last == o.last && std::memcmp(data, o.data, kDataBytes) == 0;
    }
};

struct ReadBurst {
    int64_t accepted;  // edge of the AR handshake
    uint64_t addr;     // start address (beat aligned)
    uint32_t beats, id, resp, done;
};

struct WriteBurst {
    uint64_t addr;
    uint32_t beats, id, resp, got;
    int64_t last_edge;  // edge of the last W beat (once complete)
};

struct Violation {
    bool hit = false;
    std::string rule, channel, message;
    uint64_t cycle = 0;
};

struct FatalError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Sim;
thread_local Sim* g_current = nullptr;  // the Sim inside an API call (for vl_fatal)

enum Counter : int {
    kCntArBursts, kCntRBeats, kCntAwBursts, kCntWBeats, kCntBResps,
    kCntRErrBursts, kCntBErrBursts, kCntRStall, kCntWStall, kNumCounters
};

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;

    uint8_t* mem = nullptr;
    uint64_t mem_base, mem_size;
    uint32_t read_latency, write_latency, queue;

    uint64_t cycle = 0;  // rising edges since the end of reset; the next edge has this index
    bool in_reset = false;
    bool dead = false;   // a Verilator fatal error: the model state is unusable

    // read side
    std::deque<ReadBurst> rq;
    int64_t r_last = kNegInf;  // edge of the previous burst's last R beat
    bool r_loaded = false;     // rbeat holds the presented beat
    uint8_t rbeat[kDataBytes] = {};
    // write side
    std::deque<WriteBurst> wq;  // accepted on AW, waiting for W beats
    std::deque<WriteBurst> bq;  // all beats in, waiting for the B transfer
    int64_t b_last = kNegInf;
    uint64_t ar_index = 0, aw_index = 0;  // bursts accepted since reset
    std::map<uint64_t, uint32_t> inject_r, inject_b;
    uint64_t counters[kNumCounters] = {};

    // what the model drives for the upcoming edge
    bool o_arready = false, o_awready = false, o_wready = false, o_rvalid = false,
         o_bvalid = false;
    // manager-side stability tracking: valid && !ready seen at the previous edge
    bool ar_wait = false, aw_wait = false, w_wait = false;
    AddrReq ar_snap, aw_snap;
    WBeat w_snap;

    // AXI4-Lite manager
    enum LiteOp { kIdle, kWrite, kRead } lite_op = kIdle;
    uint32_t lite_addr = 0, lite_data = 0, lite_resp = 0;
    bool lite_aw_done = false, lite_w_done = false, lite_ar_done = false, lite_finished = false;

    Violation viol;

#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> vcd;
#endif
    // VCD time: rising edge k (counting reset edges) at 10k + 10, falling edge at 10k + 15;
    // inputs changed between edges (register accesses starting) are dumped at 10k + 18.
    uint64_t edges_total = 0;
    uint64_t last_dump = 0;
    bool dumped = false;

    Sim(uint64_t base, uint64_t size, uint32_t rl, uint32_t wl, uint32_t q)
        : mem_base(base), mem_size(size), read_latency(rl), write_latency(wl), queue(q) {
        mem = static_cast<uint8_t*>(std::calloc(size ? size : 1, 1));
        if (!mem) throw std::bad_alloc();
        ctx.reset(new VerilatedContext);
        ctx->fatalOnError(false);  // $stop / failed assertions are reported, not exit()
        ctx->traceEverOn(VM_TRACE != 0);
        top.reset(new Vtop(ctx.get(), "top"));
        top->clk = 0;
        top->rst = 0;
        drive_idle_lite();
    }
    ~Sim() {
#if VM_TRACE
        if (vcd) vcd->close();
        vcd.reset();
#endif
        if (top && !dead) top->final();
        top.reset();
        ctx.reset();
        std::free(mem);
    }

    void violate(const char* rule, const char* channel, const char* fmt, ...)
        __attribute__((format(printf, 4, 5))) {
        if (viol.hit) return;  // keep the first
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        viol.hit = true;
        viol.rule = rule;
        viol.channel = channel;
        viol.message = buf;
        viol.cycle = cycle;
    }

    // ---- sampling the manager's request channels ------------------------------------------
    AddrReq sample_ar() const {
        const Vtop& t = *top;
        AddrReq r;
        r.addr = get_u(t.m_axi_araddr); r.id = get_u(t.m_axi_arid); r.len = get_u(t.m_axi_arlen);
        r.size = get_u(t.m_axi_arsize); r.burst = get_u(t.m_axi_arburst);
        r.lock = get_u(t.m_axi_arlock); r.cache = get_u(t.m_axi_arcache);
        r.prot = get_u(t.m_axi_arprot); r.qos = get_u(t.m_axi_arqos);
        return r;
    }
    AddrReq sample_aw() const {
        const Vtop& t = *top;
        AddrReq r;
        r.addr = get_u(t.m_axi_awaddr); r.id = get_u(t.m_axi_awid); r.len = get_u(t.m_axi_awlen);
        r.size = get_u(t.m_axi_awsize); r.burst = get_u(t.m_axi_awburst);
        r.lock = get_u(t.m_axi_awlock); r.cache = get_u(t.m_axi_awcache);
        r.prot = get_u(t.m_axi_awprot); r.qos = get_u(t.m_axi_awqos);
        return r;
    }
    WBeat sample_w() const {
        WBeat w;
        get_bytes(top->m_axi_wdata, w.data);
        w.strb = get_u(top->m_axi_wstrb);
        w.last = get_u(top->m_axi_wlast);
        return w;
    }

    void check_stable(const char* ch, bool& wait, bool valid, bool ready, bool same,
                      const char* what) {
        if (wait) {
            if (!valid)
                violate("valid_dropped", ch,
                        "%svalid fell before %sready (the transfer was never accepted)", what,
                        what);
            else if (!same)
                violate("payload_unstable", ch,
                        "the %s payload changed while %svalid was waiting for %sready", ch, what,
                        what);
        }
        wait = valid && !ready;
    }

    // The checks every accepted AR/AW burst must pass; returns false on a violation.
    bool check_burst(const char* ch, const char* p, const AddrReq& r) {
        if (r.len + 1 > kMaxBurst) {
            violate("burst_length", ch, "%slen=%u: %u beats, at most %d allowed", p, r.len,
                    r.len + 1, kMaxBurst);
            return false;
        }
        if (r.burst != 1) {
            violate("burst_type", ch, "%sburst=%u: only INCR bursts (1) are allowed", p, r.burst);
            return false;
        }
        if (static_cast<int>(r.size) != kSizeLog2) {
            violate("burst_size", ch, "%ssize=%u: must equal the bus width (%d for %d bytes)", p,
                    r.size, kSizeLog2, kDataBytes);
            return false;
        }
        if (r.addr % kDataBytes) {
            violate("address_alignment", ch,
                    "%saddr=0x%llx is not aligned to the %d-byte bus (the memory model serves "
                    "aligned bursts only)", p, (unsigned long long)r.addr, kDataBytes);
            return false;
        }
        const uint64_t start = r.addr;
        const uint64_t bytes = static_cast<uint64_t>(r.len + 1) * kDataBytes;
        const uint64_t last = start + bytes - 1;
        if ((start >> 12) != (last >> 12)) {
            violate("4k_boundary", ch,
                    "%saddr=0x%llx %slen=%u: bytes 0x%llx..0x%llx cross a 4 KiB boundary", p,
                    (unsigned long long)r.addr, p, r.len, (unsigned long long)start,
                    (unsigned long long)last);
            return false;
        }
        if (start < mem_base || last >= mem_base + mem_size) {
            violate("address_range", ch,
                    "%saddr=0x%llx %slen=%u: bytes 0x%llx..0x%llx are outside the memory "
                    "[0x%llx, 0x%llx)",
                    p, (unsigned long long)r.addr, p, r.len, (unsigned long long)start,
                    (unsigned long long)last, (unsigned long long)mem_base,
                    (unsigned long long)(mem_base + mem_size));
            return false;
        }
        return true;
    }

    // Evaluate the design and, when tracing, dump it at time t.
    void eval_at(uint64_t t) {
        top->eval();
#if VM_TRACE
        if (vcd && (!dumped || t > last_dump)) {
            vcd->dump(t);
            last_dump = t;
            dumped = true;
        }
#else
        (void)t;
#endif
    }
    // Evaluate after changing inputs between clock edges.
    void eval_offstep() { eval_at(10 * edges_total + 8); }

    // ---- one rising edge ---------------------------------------------------------------------
    void edge() {
        Vtop& t = *top;
        const uint64_t this_edge = cycle;
        if (!in_reset) {
            const bool arv = t.m_axi_arvalid, awv = t.m_axi_awvalid, wv = t.m_axi_wvalid;
            const bool rr = t.m_axi_rready, br = t.m_axi_bready;
            const AddrReq ar = sample_ar();
            const AddrReq aw = sample_aw();
            const WBeat w = sample_w();
            check_stable("AR", ar_wait, arv, o_arready, ar == ar_snap, "ar");
            check_stable("AW", aw_wait, awv, o_awready, aw == aw_snap, "aw");
            check_stable("W", w_wait, wv, o_wready, w == w_snap, "w");
            if (ar_wait) ar_snap = ar;
            if (aw_wait) aw_snap = aw;
            if (w_wait) w_snap = w;
            if (o_rvalid && !rr) counters[kCntRStall]++;
            if (wv && !o_wready) counters[kCntWStall]++;

            // R transfer
            if (o_rvalid && rr) {
                ReadBurst& b = rq.front();
                counters[kCntRBeats]++;
                r_loaded = false;
                if (++b.done == b.beats) {
                    r_last = static_cast<int64_t>(cycle);
                    rq.pop_front();
                }
            }
            // B transfer
            if (o_bvalid && br) {
                counters[kCntBResps]++;
                b_last = static_cast<int64_t>(cycle);
                bq.pop_front();
            }
            // W transfer (belongs to the oldest AW burst still missing beats)
            if (wv && o_wready) {
                WriteBurst& b = wq.front();
                const bool last = b.got + 1 == b.beats;
                counters[kCntWBeats]++;
                if (static_cast<bool>(w.last) != last) {
                    violate("wlast", "W",
                            "wlast=%u on beat %u of a %u-beat burst (awaddr=0x%llx): wlast must "
                            "be 1 on exactly the last beat",
                            w.last, b.got, b.beats, (unsigned long long)b.addr);
                } else if (b.resp == kOkay) {
                    const uint64_t off = b.addr + static_cast<uint64_t>(b.got) * kDataBytes -
                                         mem_base;
                    for (int i = 0; i < kDataBytes; ++i)
                        if (w.strb >> i & 1) mem[off + i] = w.data[i];
                }
                if (++b.got == b.beats) {
                    b.last_edge = static_cast<int64_t>(cycle);
                    bq.push_back(b);
                    wq.pop_front();
                }
            }
            // AW transfer
            if (awv && o_awready) {
                const uint64_t index = aw_index++;
                counters[kCntAwBursts]++;
                if (check_burst("AW", "aw", aw)) {
                    WriteBurst b{};
                    b.addr = aw.addr;
                    b.beats = aw.len + 1;
                    b.id = aw.id;
                    auto it = inject_b.find(index);
                    b.resp = it == inject_b.end() ? kOkay : it->second;
                    if (b.resp != kOkay) counters[kCntBErrBursts]++;
                    wq.push_back(b);
                }
            }
            // AR transfer
            if (arv && o_arready) {
                const uint64_t index = ar_index++;
                counters[kCntArBursts]++;
                if (check_burst("AR", "ar", ar)) {
                    ReadBurst b{};
                    b.accepted = static_cast<int64_t>(cycle);
                    b.addr = ar.addr;
                    b.beats = ar.len + 1;
                    b.id = ar.id;
                    auto it = inject_r.find(index);
                    b.resp = it == inject_r.end() ? kOkay : it->second;
                    if (b.resp != kOkay) counters[kCntRErrBursts]++;
                    rq.push_back(b);
                }
            }
            lite_edge();
        }
        t.clk = 1;
        eval_at(10 * edges_total + 10);
        if (!in_reset) ++cycle;
        drive();
        t.clk = 0;
        eval_at(10 * edges_total + 15);
        ++edges_total;
        if (ctx->gotError() && !viol.hit && !in_reset) {
            violate("design_error", "design",
                    "the design stopped with $stop/$fatal or a failed assertion (Verilator's "
                    "message is on the process's standard output)");
            viol.cycle = this_edge;  // the edge whose evaluation failed
        }
    }

    // ---- the AXI4-Lite manager -------------------------------------------------------------
    void lite_edge() {
        Vtop& t = *top;
        if (lite_op == kWrite) {
            const bool aw_before = lite_aw_done, w_before = lite_w_done;
            if (!lite_aw_done && t.s_axil_awready) lite_aw_done = true;
            if (!lite_w_done && t.s_axil_wready) lite_w_done = true;
            if (t.s_axil_bvalid) {
                if (!(aw_before && w_before)) {
                    violate("response_before_request", "s_axil B",
                            "bvalid at a cycle before both AW and W of the write to 0x%03x were "
                            "accepted", lite_addr);
                }
                lite_resp = get_u(t.s_axil_bresp);
                lite_finished = true;
                lite_op = kIdle;
            }
        } else if (lite_op == kRead) {
            const bool ar_before = lite_ar_done;
            if (!lite_ar_done && t.s_axil_arready) lite_ar_done = true;
            if (t.s_axil_rvalid) {
                if (!ar_before) {
                    violate("response_before_request", "s_axil R",
                            "rvalid at a cycle before AR of the read from 0x%03x was accepted",
                            lite_addr);
                }
                lite_resp = get_u(t.s_axil_rresp);
                lite_data = get_u(t.s_axil_rdata);
                lite_finished = true;
                lite_op = kIdle;
            }
        } else if (t.s_axil_bvalid || t.s_axil_rvalid) {
            violate("response_without_request", t.s_axil_bvalid ? "s_axil B" : "s_axil R",
                    "%svalid while no AXI4-Lite access is in progress",
                    t.s_axil_bvalid ? "b" : "r");
        }
    }

    void drive_idle_lite() {
        Vtop& t = *top;
        t.s_axil_awvalid = 0; t.s_axil_wvalid = 0; t.s_axil_bready = 0;
        t.s_axil_arvalid = 0; t.s_axil_rready = 0;
        set_u(t.s_axil_awaddr, 0); set_u(t.s_axil_awprot, 0);
        set_u(t.s_axil_wdata, 0); set_u(t.s_axil_wstrb, 0);
        set_u(t.s_axil_araddr, 0); set_u(t.s_axil_arprot, 0);
    }

    void drive_lite() {
        Vtop& t = *top;
        drive_idle_lite();
        if (lite_op == kWrite) {
            t.s_axil_awvalid = !lite_aw_done;
            t.s_axil_wvalid = !lite_w_done;
            t.s_axil_bready = 1;
            set_u(t.s_axil_awaddr, lite_addr);
            set_u(t.s_axil_wdata, lite_data);
            set_u(t.s_axil_wstrb, 0xF);
        } else if (lite_op == kRead) {
            t.s_axil_arvalid = !lite_ar_done;
            t.s_axil_rready = 1;
            set_u(t.s_axil_araddr, lite_addr);
        }
    }

    // ---- the memory model's outputs for the upcoming edge -----------------------------------
    void drive() {
        Vtop& t = *top;
        const int64_t c = static_cast<int64_t>(cycle);
        o_arready = rq.size() < queue;
        o_rvalid = !rq.empty() &&
                   c >= std::max(rq.front().accepted + static_cast<int64_t>(read_latency),
                                 r_last + 1);
        if (o_rvalid) {
            const ReadBurst& b = rq.front();
            if (!r_loaded) {  // the beat's data is read when it is first presented
                if (b.resp == kOkay)
                    std::memcpy(rbeat,
                                mem + (b.addr + static_cast<uint64_t>(b.done) * kDataBytes -
                                       mem_base),
                                kDataBytes);
                else
                    std::memset(rbeat, 0, kDataBytes);
                r_loaded = true;
            }
            set_bytes(t.m_axi_rdata, rbeat);
            set_u(t.m_axi_rid, b.id);
            set_u(t.m_axi_rresp, b.resp);
            t.m_axi_rlast = b.done + 1 == b.beats;
        } else {
            static const uint8_t zero[kDataBytes] = {};
            set_bytes(t.m_axi_rdata, zero);
            set_u(t.m_axi_rid, 0);
            set_u(t.m_axi_rresp, 0);
            t.m_axi_rlast = 0;
        }
        t.m_axi_rvalid = o_rvalid;
        t.m_axi_arready = o_arready;

        o_awready = wq.size() + bq.size() < queue;
        o_wready = !wq.empty();
        o_bvalid = !bq.empty() &&
                   c >= std::max(bq.front().last_edge + static_cast<int64_t>(write_latency),
                                 b_last + 1);
        t.m_axi_awready = o_awready;
        t.m_axi_wready = o_wready;
        t.m_axi_bvalid = o_bvalid;
        set_u(t.m_axi_bid, o_bvalid ? bq.front().id : 0);
        set_u(t.m_axi_bresp, o_bvalid ? bq.front().resp : 0);
        drive_lite();
    }

    void clear_model() {
        rq.clear(); wq.clear(); bq.clear();
        r_last = b_last = kNegInf;
        r_loaded = false;
        ar_index = aw_index = 0;
        std::fill(std::begin(counters), std::end(counters), 0);
        ar_wait = aw_wait = w_wait = false;
        lite_op = kIdle;
        lite_finished = false;
        viol = Violation();
        ctx->gotError(false);
        ctx->gotFinish(false);
    }

    void reset(uint32_t cycles) {
        clear_model();
        in_reset = true;
        top->rst = 1;
        drive();
        eval_offstep();
        for (uint32_t i = 0; i < cycles; ++i) edge();
        top->rst = 0;
        in_reset = false;
        ctx->gotError(false);  // assertions that failed on the pre-reset state
        ctx->gotFinish(false);
        cycle = 0;
        drive();
        eval_offstep();
    }

    uint64_t run(uint64_t max_cycles, bool until_irq) {
        uint64_t n = 0;
        while (n < max_cycles && !viol.hit) {
            if (until_irq && top->irq) break;
            edge();
            ++n;
        }
        return n;
    }

    int lite_access(uint64_t timeout) {
        lite_finished = false;
        drive();
        eval_offstep();  // the access's first inputs, before the coming edge
        for (uint64_t n = 0; n < timeout; ++n) {
            edge();
            if (viol.hit) {
                lite_op = kIdle;
                return kFailed;
            }
            if (lite_finished) return kOk;
        }
        lite_op = kIdle;  // abandon the access
        drive();
        eval_offstep();
        return kTimeout;
    }
};

template <typename F>
int guarded(Sim* s, F&& f) {
    if (s->dead) return kFailed;
    g_current = s;
    try {
        const int r = f();
        g_current = nullptr;
        return r;
    } catch (const FatalError& e) {
        g_current = nullptr;
        s->dead = true;
        s->viol = Violation();
        s->viol.hit = true;
        s->viol.rule = "verilator_fatal";
        s->viol.channel = "design";
        s->viol.message = e.what();
        s->viol.cycle = s->cycle;
        return kFailed;
    }
}

}  // namespace

// Verilator's fatal errors (e.g. a combinational loop that does not converge) must not exit()
// the Python process: turn them into an error of the current call.
void vl_fatal(const char* filename, int linenum, const char* hier, const char* msg) {
    (void)hier;
    char buf[512];
    std::snprintf(buf, sizeof buf, "Verilator fatal error at %s:%d: %s", filename ? filename : "?",
                  linenum, msg);
    if (g_current) throw FatalError(buf);
    std::fprintf(stderr, "%s\n", buf);
    std::abort();
}

// ---- C API ----------------------------------------------------------------------------------

ILMPQ_API int ilmpq_abi_version() { return kAbiVersion; }
ILMPQ_API int ilmpq_data_bits() { return ILMPQ_DATA_BITS; }

ILMPQ_API void* ilmpq_sim_new(uint64_t mem_base, uint64_t mem_size, uint32_t read_latency,
                              uint32_t write_latency, uint32_t queue) {
    try {
        return new Sim(mem_base, mem_size, read_latency, write_latency, queue);
    } catch (...) {
        return nullptr;
    }
}

ILMPQ_API int ilmpq_has_trace() { return VM_TRACE ? 1 : 0; }

// Start a VCD of every evaluation from now on (time: 10 units per clock cycle). Returns 0, or -1
// if the library was built without --trace.
ILMPQ_API int ilmpq_sim_trace_open(void* h, const char* path, int depth) {
#if VM_TRACE
    Sim* s = static_cast<Sim*>(h);
    if (s->vcd) s->vcd->close();
    s->vcd.reset(new VerilatedVcdC);
    s->top->trace(s->vcd.get(), depth);
    s->vcd->open(path);
    return s->vcd->isOpen() ? 0 : -2;
#else
    (void)h; (void)path; (void)depth;
    return -1;
#endif
}

ILMPQ_API void ilmpq_sim_trace_flush(void* h) {
#if VM_TRACE
    Sim* s = static_cast<Sim*>(h);
    if (s->vcd) s->vcd->flush();
#else
    (void)h;
#endif
}

ILMPQ_API void ilmpq_sim_free(void* h) { delete static_cast<Sim*>(h); }

ILMPQ_API uint8_t* ilmpq_sim_mem(void* h) { return static_cast<Sim*>(h)->mem; }

// The first evaluation (initial blocks) happens here, under the fatal-error guard.
ILMPQ_API int ilmpq_sim_init(void* h) {
    Sim* s = static_cast<Sim*>(h);
    return guarded(s, [&] {
        s->eval_at(0);
        return kOk;
    });
}

ILMPQ_API int ilmpq_sim_reset(void* h, uint32_t cycles) {
    Sim* s = static_cast<Sim*>(h);
    return guarded(s, [&] {
        s->reset(cycles);
        return s->viol.hit ? kFailed : kOk;
    });
}

ILMPQ_API int ilmpq_sim_run(void* h, uint64_t max_cycles, int until_irq, uint64_t* ran) {
    Sim* s = static_cast<Sim*>(h);
    *ran = 0;
    return guarded(s, [&] {
        const uint64_t start = s->cycle;
        s->run(max_cycles, until_irq != 0);
        *ran = s->cycle - start;
        return s->viol.hit ? kFailed : kOk;
    });
}

ILMPQ_API int ilmpq_sim_csr_write(void* h, uint32_t addr, uint32_t value, uint64_t timeout,
                                  uint32_t* resp) {
    Sim* s = static_cast<Sim*>(h);
    return guarded(s, [&] {
        s->lite_op = Sim::kWrite;
        s->lite_addr = addr;
        s->lite_data = value;
        s->lite_aw_done = s->lite_w_done = false;
        const int r = s->lite_access(timeout);
        *resp = s->lite_resp;
        return r;
    });
}

ILMPQ_API int ilmpq_sim_csr_read(void* h, uint32_t addr, uint64_t timeout, uint32_t* value,
                                 uint32_t* resp) {
    Sim* s = static_cast<Sim*>(h);
    return guarded(s, [&] {
        s->lite_op = Sim::kRead;
        s->lite_addr = addr;
        s->lite_ar_done = false;
        const int r = s->lite_access(timeout);
        *value = s->lite_data;
        *resp = s->lite_resp;
        return r;
    });
}

ILMPQ_API uint64_t ilmpq_sim_cycle(void* h) { return static_cast<Sim*>(h)->cycle; }

ILMPQ_API int ilmpq_sim_irq(void* h) { return static_cast<Sim*>(h)->top->irq ? 1 : 0; }

ILMPQ_API void ilmpq_sim_inject(void* h, int channel, uint64_t burst_index, uint32_t resp) {
    Sim* s = static_cast<Sim*>(h);
    (channel == kInjR ? s->inject_r : s->inject_b)[burst_index] = resp;
}

ILMPQ_API void ilmpq_sim_clear_injections(void* h) {
    Sim* s = static_cast<Sim*>(h);
    s->inject_r.clear();
    s->inject_b.clear();
}

ILMPQ_API int ilmpq_sim_num_counters() { return kNumCounters; }

ILMPQ_API void ilmpq_sim_counters(void* h, uint64_t* out) {
    Sim* s = static_cast<Sim*>(h);
    std::memcpy(out, s->counters, sizeof s->counters);
}

// Copies the first violation (rule, channel, message: NUL-terminated, truncated to `len`);
// returns 1 if there is one.
ILMPQ_API int ilmpq_sim_violation(void* h, char* rule, char* channel, char* message, int len,
                                  uint64_t* cycle) {
    Sim* s = static_cast<Sim*>(h);
    if (!s->viol.hit) return 0;
    std::snprintf(rule, len, "%s", s->viol.rule.c_str());
    std::snprintf(channel, len, "%s", s->viol.channel.c_str());
    std::snprintf(message, len, "%s", s->viol.message.c_str());
    *cycle = s->viol.cycle;
    return 1;
}

// Outstanding work in the memory model: read bursts not fully returned, write bursts waiting for
// W beats, write bursts waiting for B.
ILMPQ_API void ilmpq_sim_outstanding(void* h, uint64_t* out) {
    Sim* s = static_cast<Sim*>(h);
    out[0] = s->rq.size();
    out[1] = s->wq.size();
    out[2] = s->bq.size();
}
