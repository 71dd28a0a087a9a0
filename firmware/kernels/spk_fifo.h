// spk_fifo.h - the stream type and the DATAFLOW stage launcher of the spk_acc kernel.
//
// Under Vitis HLS (synthesis and its own C-simulation) spk_fifo<T, D> is hls::stream<T, D>
// and SPK_STAGE(name, call) is just the call: the top body stays "only calls".
//
// Everywhere else (the g++/clang++ C-simulation in CI, the noop host test, the emulated
// device) the DATAFLOW region runs the way the hardware does: every stage is its own
// thread (SPK_STAGE spawns it, SPK_DATAFLOW_END joins them all) and every FIFO holds at
// most D items, blocking the writer when full and the reader when empty. A stage that
// stays blocked for SPK_CSIM_TIMEOUT_MS (default 30000) is a deadlock: the simulation
// prints every blocked stage with the FIFO it waits on and its fill level, and exits with
// status 3. The run-time support lives in spk_csim.cpp (C-simulation only). Never define
// __VITIS_HLS__ or __SYNTHESIS__ yourself.
#ifndef SPK_FIFO_H
#define SPK_FIFO_H

#if defined(__VITIS_HLS__) || defined(__SYNTHESIS__)
#include <hls_stream.h>
template <class T, int D = 2>
using spk_fifo = hls::stream<T, D>;
#define SPK_DATAFLOW_BEGIN()
#define SPK_STAGE(name, call) call
#define SPK_DATAFLOW_END()
#define SPK_CSIM_ONLY(x)
#else
#include <condition_variable>
#include <functional>
#include <mutex>

// --- C-simulation run time (spk_csim.cpp) ------------------------------------------------
struct spk_csim_fifo_state;  // what the deadlock report needs to know about a waiting FIFO

// One DATAFLOW region: spawn() starts a stage thread, join() waits for all of them.
class spk_dataflow {
public:
    spk_dataflow();
    ~spk_dataflow();  // joins (also when a stage threw)
    void spawn(const char *name, std::function<void()> body);
    void join();

private:
    spk_dataflow(const spk_dataflow &);
    spk_dataflow &operator=(const spk_dataflow &);
    void *impl_;
};

// Blocks on cv until ready() holds; reports a deadlock after the timeout. `reading` says
// which side waits; name/size/depth describe the FIFO for the report.
void spk_csim_wait(std::unique_lock<std::mutex> &lk, std::condition_variable &cv,
                   const std::function<bool()> &ready, const char *fifo, bool reading,
                   const std::function<unsigned()> &size, unsigned depth);
// A stage that polls (non-blocking reads) calls this when nothing was ready: it sleeps a
// little and reports a deadlock when the stage has made no progress for the timeout.
void spk_csim_idle(const char *what);
// Resets the calling stage's idle clock (a polling stage made progress).
void spk_csim_progress();
// Name of the calling stage ("main" outside a DATAFLOW region).
const char *spk_csim_stage();
// After a run: adds the run's schedule counters (spk_core.h) to the process totals that
// SPK_CSIM_COUNTERS=file writes at exit, and clears them.
void spk_csim_count_run(unsigned n_jobs);

template <class T, int D = 2>
class spk_fifo {
public:
    spk_fifo() : name_("fifo") {}
    explicit spk_fifo(const char *name) : name_(name) {}
    void write(const T &v) {
        std::unique_lock<std::mutex> lk(m_);
        if (n_ == (unsigned)D)
            spk_csim_wait(lk, not_full_, [this] { return n_ < (unsigned)D; }, name_, false,
                          [this] { return n_; }, (unsigned)D);
        q_[tail_] = v;
        if (++tail_ == (unsigned)D) tail_ = 0;
        n_++;
        lk.unlock();
        not_empty_.notify_one();
    }
    T read() {
        std::unique_lock<std::mutex> lk(m_);
        if (n_ == 0)
            spk_csim_wait(lk, not_empty_, [this] { return n_ > 0; }, name_, true,
                          [this] { return n_; }, (unsigned)D);
        T v = q_[head_];
        if (++head_ == (unsigned)D) head_ = 0;
        n_--;
        lk.unlock();
        not_full_.notify_one();
        return v;
    }
    bool read_nb(T &v) {  // hls::stream::read_nb
        std::unique_lock<std::mutex> lk(m_);
        if (n_ == 0) return false;
        v = q_[head_];
        if (++head_ == (unsigned)D) head_ = 0;
        n_--;
        lk.unlock();
        not_full_.notify_one();
        return true;
    }
    bool empty() {
        std::lock_guard<std::mutex> lk(m_);
        return n_ == 0;
    }
    bool full() {
        std::lock_guard<std::mutex> lk(m_);
        return n_ == (unsigned)D;
    }

private:
    spk_fifo(const spk_fifo &);
    spk_fifo &operator=(const spk_fifo &);
    const char *name_;
    std::mutex m_;
    std::condition_variable not_empty_, not_full_;
    T q_[D];
    unsigned head_ = 0, tail_ = 0, n_ = 0;
};

#define SPK_DATAFLOW_BEGIN() spk_dataflow spk_df_
#define SPK_STAGE(name, call) spk_df_.spawn(name, [&]() { call; })
#define SPK_DATAFLOW_END() spk_df_.join()
#define SPK_CSIM_ONLY(x) x
#endif

#endif // SPK_FIFO_H
