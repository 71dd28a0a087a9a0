// spk_csim.cpp - C-simulation run time of the DATAFLOW region (see spk_fifo.h): one thread
// per stage, blocking waits on bounded FIFOs, and the deadlock report. Not part of the
// hardware: Vitis HLS compiles kernels/spk_acc.cpp and kernels/spk_core.cpp only.
#include "spk_core.h"
#include "spk_fifo.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

struct stage_rec {
    std::string name;
    const char *fifo = nullptr;  // FIFO waited on, or null when running
    bool reading = false;
    unsigned size = 0, depth = 0;
    std::chrono::steady_clock::time_point since;
};

std::mutex g_reg;                 // guards g_stages
std::list<stage_rec> g_stages;    // every live stage thread
thread_local stage_rec *t_self;   // the calling thread's record (null outside a region)
thread_local std::chrono::steady_clock::time_point t_idle_since;
thread_local bool t_idle = false;

std::chrono::milliseconds timeout() {
    static const long ms = [] {
        const char *s = getenv("SPK_CSIM_TIMEOUT_MS");
        long v = s && *s ? strtol(s, nullptr, 10) : 0;
        return v > 0 ? v : 30000L;
    }();
    return std::chrono::milliseconds(ms);
}

[[noreturn]] void report_deadlock(const char *who, const char *what) {
    std::lock_guard<std::mutex> lk(g_reg);
    fprintf(stderr, "spk_acc csim: DEADLOCK: stage '%s' %s for %ld ms; blocked stages:\n", who, what,
            (long)timeout().count());
    for (const stage_rec &r : g_stages)
        if (r.fifo)
            fprintf(stderr, "  %-12s %s FIFO '%s' (%u of %u items)\n", r.name.c_str(),
                    r.reading ? "reads empty" : "writes full", r.fifo, r.size, r.depth);
        else
            fprintf(stderr, "  %-12s running or polling\n", r.name.c_str());
    fflush(stderr);
    _exit(3);
}

}  // namespace

struct spk_df_impl {
    std::vector<std::thread> threads;
};

spk_dataflow::spk_dataflow() : impl_(new spk_df_impl) {}

spk_dataflow::~spk_dataflow() {
    join();
    delete static_cast<spk_df_impl *>(impl_);
}

void spk_dataflow::spawn(const char *name, std::function<void()> body) {
    spk_df_impl *d = static_cast<spk_df_impl *>(impl_);
    std::string nm(name);
    d->threads.emplace_back([nm, body] {
        std::list<stage_rec>::iterator it;
        {
            std::lock_guard<std::mutex> lk(g_reg);
            g_stages.emplace_back();
            it = std::prev(g_stages.end());
            it->name = nm;
        }
        t_self = &*it;
        t_idle = false;
        body();
        std::lock_guard<std::mutex> lk(g_reg);
        t_self = nullptr;
        g_stages.erase(it);
    });
}

void spk_dataflow::join() {
    spk_df_impl *d = static_cast<spk_df_impl *>(impl_);
    for (std::thread &t : d->threads)
        if (t.joinable()) t.join();
    d->threads.clear();
}

void spk_csim_wait(std::unique_lock<std::mutex> &lk, std::condition_variable &cv,
                   const std::function<bool()> &ready, const char *fifo, bool reading,
                   const std::function<unsigned()> &size, unsigned depth) {
    const auto start = std::chrono::steady_clock::now();
    if (t_self) {
        std::lock_guard<std::mutex> g(g_reg);
        t_self->fifo = fifo;
        t_self->reading = reading;
        t_self->size = size();
        t_self->depth = depth;
        t_self->since = start;
    }
    while (!ready()) {
        cv.wait_for(lk, std::chrono::milliseconds(100));
        if (ready()) break;
        if (std::chrono::steady_clock::now() - start >= timeout()) {
            std::string what = std::string(reading ? "waits to read FIFO '" : "waits to write FIFO '") +
                               fifo + "'";
            report_deadlock(spk_csim_stage(), what.c_str());
        }
    }
    if (t_self) {
        std::lock_guard<std::mutex> g(g_reg);
        t_self->fifo = nullptr;
    }
}

void spk_csim_idle(const char *what) {
    const auto now = std::chrono::steady_clock::now();
    if (!t_idle) {
        t_idle = true;
        t_idle_since = now;
    } else if (now - t_idle_since >= timeout()) {
        report_deadlock(spk_csim_stage(), what);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
}

void spk_csim_progress() { t_idle = false; }

const char *spk_csim_stage() { return t_self ? t_self->name.c_str() : "main"; }

// ---------------------------------------------------------------------------------------
// Schedule counters over a whole process (e.g. the emulated device during a generation):
// with SPK_CSIM_COUNTERS=file set, the counters summed over every run are written to the
// file at exit, one line per engine (docs/fpga-v2-model.md reads them).
unsigned long long spk_csim_runs, spk_csim_jobs;
static std::mutex g_count_lock;
static spk_core_counters g_core_sum[SPK_N_ENGINES];
static spk_load_counters g_load_sum[SPK_N_ENGINES];
spk_core_counters spk_csim_last_core[SPK_N_ENGINES];
spk_load_counters spk_csim_last_load[SPK_N_ENGINES];

void spk_csim_count_run(unsigned n_jobs) {
    std::lock_guard<std::mutex> lk(g_count_lock);
    spk_csim_runs++;
    spk_csim_jobs += n_jobs;
    for (unsigned e = 0; e < SPK_N_ENGINES; e++) {
        spk_core_counters &a = g_core_sum[e];
        const spk_core_counters &c = spk_core_count[e];
        a.blocks += c.blocks;
        a.silent += c.silent;
        a.fill += c.fill;
        a.events += c.events;
        a.bubbles += c.bubbles;
        a.out += c.out;
        g_load_sum[e].bursts += spk_load_count[e].bursts;
        g_load_sum[e].lines += spk_load_count[e].lines;
    }
    memcpy(spk_csim_last_core, spk_core_count, sizeof spk_core_count);
    memcpy(spk_csim_last_load, spk_load_count, sizeof spk_load_count);
    memset(spk_core_count, 0, sizeof spk_core_count);
    memset(spk_load_count, 0, sizeof spk_load_count);
}

namespace {
struct counters_at_exit {
    ~counters_at_exit() {
        const char *path = getenv("SPK_CSIM_COUNTERS");
        if (!path || !*path) return;
        FILE *f = fopen(path, "w");
        if (!f) return;
        fprintf(f, "runs %llu jobs %llu\n", spk_csim_runs, spk_csim_jobs);
        for (unsigned e = 0; e < SPK_N_ENGINES; e++) {
            const spk_core_counters &a = g_core_sum[e];
            fprintf(f, "engine %u blocks %llu silent %llu fill %llu events %llu bubbles %llu out %llu "
                       "bursts %llu lines %llu\n", e, (unsigned long long)a.blocks, (unsigned long long)a.silent,
                    (unsigned long long)a.fill, (unsigned long long)a.events, (unsigned long long)a.bubbles,
                    (unsigned long long)a.out, (unsigned long long)g_load_sum[e].bursts,
                    (unsigned long long)g_load_sum[e].lines);
        }
        fclose(f);
    }
} g_counters_at_exit;
}  // namespace
