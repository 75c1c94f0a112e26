// Verilator harness for ilmpq accelerator tops: clock/reset, an AXI4-Lite manager for the CSRs,
// and the deterministic AXI4 memory model of docs/memory_model.md on every AXI4 manager port
// (m_axi, m_axi1, ... : one model per port, all serving one memory), all in C++
// so a whole network runs at Verilator speed. Python drives it through the C API at the bottom
// (ilmpq.firmware.sim.verilator.sim loads the shared library with ctypes).
//
// The model is compiled together with the Verilated top (always prefixed Vtop). The build writes
// ilmpq_harness_config.h with
//   ILMPQ_DATA_BITS   m_axi data width (32, 64 or 128)
//   ILMPQ_AXI_PORTS   number of AXI4 manager ports (1, 2 or 4: m_axi, m_axi1, m_axi2, m_axi3)
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
#ifndef ILMPQ_AXI_PORTS
#define ILMPQ_AXI_PORTS 1
#endif

#define ILMPQ_API extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 2;
constexpr int kPorts = ILMPQ_AXI_PORTS;
static_assert(kPorts == 1 || kPorts == 2 || kPorts == 4, "1, 2 or 4 AXI ports");
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

// What the harness samples from one manager port at an edge, and what it drives into it.
struct PortIn {
    bool arvalid, awvalid, wvalid, rready, bready;
    AddrReq ar, aw;
    WBeat w;
};

struct PortOut {
    bool arready, awready, wready, rvalid, rlast, bvalid;
    uint32_t rid, rresp, bid, bresp;
    const uint8_t* rdata;
};

// Signal access of port P (prefix N): one specialization per port, so the Verilated members are
// named at compile time.
template <int P>
struct Io;

#define ILMPQ_PORT_IO(P, N)                                                                  \
    template <>                                                                              \
    struct Io<P> {                                                                           \
        static PortIn sample(const Vtop& t) {                                                \
            PortIn i;                                                                        \
            i.arvalid = t.N##_arvalid; i.awvalid = t.N##_awvalid; i.wvalid = t.N##_wvalid;   \
            i.rready = t.N##_rready; i.bready = t.N##_bready;                                \
            i.ar.addr = get_u(t.N##_araddr); i.ar.id = get_u(t.N##_arid);                    \
            i.ar.len = get_u(t.N##_arlen); i.ar.size = get_u(t.N##_arsize);                  \
            i.ar.burst = get_u(t.N##_arburst); i.ar.lock = get_u(t.N##_arlock);              \
            i.ar.cache = get_u(t.N##_arcache); i.ar.prot = get_u(t.N##_arprot);              \
            i.ar.qos = get_u(t.N##_arqos);                                                   \
            i.aw.addr = get_u(t.N##_awaddr); i.aw.id = get_u(t.N##_awid);                    \
            i.aw.len = get_u(t.N##_awlen); i.aw.size = get_u(t.N##_awsize);                  \
            i.aw.burst = get_u(t.N##_awburst); i.aw.lock = get_u(t.N##_awlock);              \
            i.aw.cache = get_u(t.N##_awcache); i.aw.prot = get_u(t.N##_awprot);              \
            i.aw.qos = get_u(t.N##_awqos);                                                   \
            get_bytes(t.N##_wdata, i.w.data);                                                \
            i.w.strb = get_u(t.N##_wstrb); i.w.last = get_u(t.N##_wlast);                    \
            return i;                                                                        \
        }                                                                                    \
        static void drive(Vtop& t, const PortOut& o) {                                       \
            set_bytes(t.N##_rdata, o.rdata);                                                 \
            set_u(t.N##_rid, o.rid); set_u(t.N##_rresp, o.rresp);                            \
            t.N##_rlast = o.rlast; t.N##_rvalid = o.rvalid; t.N##_arready = o.arready;       \
            t.N##_awready = o.awready; t.N##_wready = o.wready; t.N##_bvalid = o.bvalid;     \
            set_u(t.N##_bid, o.bid); set_u(t.N##_bresp, o.bresp);                            \
        }                                                                                    \
    };

ILMPQ_PORT_IO(0, m_axi)
#if ILMPQ_AXI_PORTS > 1
ILMPQ_PORT_IO(1, m_axi1)
#endif
#if ILMPQ_AXI_PORTS > 2
ILMPQ_PORT_IO(2, m_axi2)
ILMPQ_PORT_IO(3, m_axi3)
#endif

using SampleFn = PortIn (*)(const Vtop&);
using DriveFn = void (*)(Vtop&, const PortOut&);
const SampleFn kSample[kPorts] = {
    &Io<0>::sample,
#if ILMPQ_AXI_PORTS > 1
    &Io<1>::sample,
#endif
#if ILMPQ_AXI_PORTS > 2
    &Io<2>::sample, &Io<3>::sample,
#endif
};
const DriveFn kDrive[kPorts] = {
    &Io<0>::drive,
#if ILMPQ_AXI_PORTS > 1
    &Io<1>::drive,
#endif
#if ILMPQ_AXI_PORTS > 2
    &Io<2>::drive, &Io<3>::drive,
#endif
};
const char* const kPortName[4] = {"m_axi", "m_axi1", "m_axi2", "m_axi3"};

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

// The memory model's state for one manager port (docs/memory_model.md): its own queues, R and B
// order, error injection and counters; the memory itself is the Sim's.
struct Port {
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

    void clear() {
        rq.clear(); wq.clear(); bq.clear();
        r_last = b_last = kNegInf;
        r_loaded = false;
        ar_index = aw_index = 0;
        std::fill(std::begin(counters), std::end(counters), 0);
        ar_wait = aw_wait = w_wait = false;
    }
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

    Port ports[kPorts];

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

    // The channel name of a violation: "AR" on port 0 (as with one port), "m_axi1 AR" on port 1.
    std::string chan_name(int p, const char* ch) const {
        return p == 0 ? std::string(ch) : std::string(kPortName[p]) + " " + ch;
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

    // The handshakes of port p at this edge (in.* sampled before the edge).
    void port_edge(int p, const PortIn& in) {
        Port& P = ports[p];
        const bool arv = in.arvalid, awv = in.awvalid, wv = in.wvalid;
        const bool rr = in.rready, br = in.bready;
        const AddrReq& ar = in.ar;
        const AddrReq& aw = in.aw;
        const WBeat& w = in.w;
        const std::string c_ar = chan_name(p, "AR"), c_aw = chan_name(p, "AW"),
                      c_w = chan_name(p, "W");
        check_stable(c_ar.c_str(), P.ar_wait, arv, P.o_arready, ar == P.ar_snap, "ar");
        check_stable(c_aw.c_str(), P.aw_wait, awv, P.o_awready, aw == P.aw_snap, "aw");
        check_stable(c_w.c_str(), P.w_wait, wv, P.o_wready, w == P.w_snap, "w");
        if (P.ar_wait) P.ar_snap = ar;
        if (P.aw_wait) P.aw_snap = aw;
        if (P.w_wait) P.w_snap = w;
        if (P.o_rvalid && !rr) P.counters[kCntRStall]++;
        if (wv && !P.o_wready) P.counters[kCntWStall]++;

        // R transfer
        if (P.o_rvalid && rr) {
            ReadBurst& b = P.rq.front();
            P.counters[kCntRBeats]++;
            P.r_loaded = false;
            if (++b.done == b.beats) {
                P.r_last = static_cast<int64_t>(cycle);
                P.rq.pop_front();
            }
        }
        // B transfer
        if (P.o_bvalid && br) {
            P.counters[kCntBResps]++;
            P.b_last = static_cast<int64_t>(cycle);
            P.bq.pop_front();
        }
        // W transfer (belongs to the oldest AW burst still missing beats)
        if (wv && P.o_wready) {
            WriteBurst& b = P.wq.front();
            const bool last = b.got + 1 == b.beats;
            P.counters[kCntWBeats]++;
            if (static_cast<bool>(w.last) != last) {
                violate("wlast", c_w.c_str(),
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
                P.bq.push_back(b);
                P.wq.pop_front();
            }
        }
        // AW transfer
        if (awv && P.o_awready) {
            const uint64_t index = P.aw_index++;
            P.counters[kCntAwBursts]++;
            if (check_burst(c_aw.c_str(), "aw", aw)) {
                WriteBurst b{};
                b.addr = aw.addr;
                b.beats = aw.len + 1;
                b.id = aw.id;
                auto it = P.inject_b.find(index);
                b.resp = it == P.inject_b.end() ? kOkay : it->second;
                if (b.resp != kOkay) P.counters[kCntBErrBursts]++;
                P.wq.push_back(b);
            }
        }
        // AR transfer
        if (arv && P.o_arready) {
            const uint64_t index = P.ar_index++;
            P.counters[kCntArBursts]++;
            if (check_burst(c_ar.c_str(), "ar", ar)) {
                ReadBurst b{};
                b.accepted = static_cast<int64_t>(cycle);
                b.addr = ar.addr;
                b.beats = ar.len + 1;
                b.id = ar.id;
                auto it = P.inject_r.find(index);
                b.resp = it == P.inject_r.end() ? kOkay : it->second;
                if (b.resp != kOkay) P.counters[kCntRErrBursts]++;
                P.rq.push_back(b);
            }
        }
    }

    // ---- one rising edge ---------------------------------------------------------------------
    void edge() {
        Vtop& t = *top;
        const uint64_t this_edge = cycle;
        if (!in_reset) {
            for (int p = 0; p < kPorts; ++p) port_edge(p, kSample[p](t));
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
        for (int p = 0; p < kPorts; ++p) drive_port(p, t);
        drive_lite();
    }

    void drive_port(int p, Vtop& t) {
        Port& P = ports[p];
        static const uint8_t zero[kDataBytes] = {};
        const int64_t c = static_cast<int64_t>(cycle);
        PortOut o{};
        o.rdata = zero;
        P.o_arready = P.rq.size() < queue;
        P.o_rvalid = !P.rq.empty() &&
                     c >= std::max(P.rq.front().accepted + static_cast<int64_t>(read_latency),
                                   P.r_last + 1);
        if (P.o_rvalid) {
            const ReadBurst& b = P.rq.front();
            if (!P.r_loaded) {  // the beat's data is read when it is first presented
                if (b.resp == kOkay)
                    std::memcpy(P.rbeat,
                                mem + (b.addr + static_cast<uint64_t>(b.done) * kDataBytes -
                                       mem_base),
                                kDataBytes);
                else
                    std::memset(P.rbeat, 0, kDataBytes);
                P.r_loaded = true;
            }
            o.rdata = P.rbeat;
            o.rid = b.id;
            o.rresp = b.resp;
            o.rlast = b.done + 1 == b.beats;
        }
        o.rvalid = P.o_rvalid;
        o.arready = P.o_arready;

        P.o_awready = P.wq.size() + P.bq.size() < queue;
        P.o_wready = !P.wq.empty();
        P.o_bvalid = !P.bq.empty() &&
                     c >= std::max(P.bq.front().last_edge + static_cast<int64_t>(write_latency),
                                   P.b_last + 1);
        o.awready = P.o_awready;
        o.wready = P.o_wready;
        o.bvalid = P.o_bvalid;
        o.bid = P.o_bvalid ? P.bq.front().id : 0;
        o.bresp = P.o_bvalid ? P.bq.front().resp : 0;
        kDrive[p](t, o);
    }

    void clear_model() {
        for (Port& P : ports) P.clear();
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
ILMPQ_API int ilmpq_axi_ports() { return kPorts; }

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

// Error injection on port `port` (0 .. ilmpq_axi_ports() - 1; burst indices count that port's
// bursts). Returns -1 for a port that does not exist.
ILMPQ_API int ilmpq_sim_inject(void* h, int port, int channel, uint64_t burst_index,
                               uint32_t resp) {
    Sim* s = static_cast<Sim*>(h);
    if (port < 0 || port >= kPorts) return -1;
    Port& P = s->ports[port];
    (channel == kInjR ? P.inject_r : P.inject_b)[burst_index] = resp;
    return 0;
}

ILMPQ_API void ilmpq_sim_clear_injections(void* h) {
    Sim* s = static_cast<Sim*>(h);
    for (Port& P : s->ports) {
        P.inject_r.clear();
        P.inject_b.clear();
    }
}

ILMPQ_API int ilmpq_sim_num_counters() { return kNumCounters; }

// The model's counters of port `port`, or summed over every port for port = -1.
ILMPQ_API void ilmpq_sim_counters(void* h, int port, uint64_t* out) {
    Sim* s = static_cast<Sim*>(h);
    std::fill(out, out + kNumCounters, 0);
    for (int p = 0; p < kPorts; ++p)
        if (port < 0 || port == p)
            for (int k = 0; k < kNumCounters; ++k) out[k] += s->ports[p].counters[k];
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

// Outstanding work in the memory model, summed over the ports: read bursts not fully returned,
// write bursts waiting for W beats, write bursts waiting for B.
ILMPQ_API void ilmpq_sim_outstanding(void* h, uint64_t* out) {
    Sim* s = static_cast<Sim*>(h);
    out[0] = out[1] = out[2] = 0;
    for (const Port& P : s->ports) {
        out[0] += P.rq.size();
        out[1] += P.wq.size();
        out[2] += P.bq.size();
    }
}
