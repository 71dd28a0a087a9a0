// spk_fifo.h - the one stream type of the spk_acc kernel.
//
// Vitis HLS (synthesis and its own C-simulation) uses hls::stream with the hardware depth D.
// Everywhere else (g++/clang++ C-simulation in CI) a small unbounded FIFO stands in: the
// dataflow processes then run one after another to completion, so a bounded FIFO would
// overflow. Never define __VITIS_HLS__ or __SYNTHESIS__ yourself.
#ifndef SPK_FIFO_H
#define SPK_FIFO_H

#if defined(__VITIS_HLS__) || defined(__SYNTHESIS__)
#include <hls_stream.h>
template <class T, int D = 2>
using spk_fifo = hls::stream<T, D>;
#else
#include <cassert>
#include <cstddef>
#include <deque>

template <class T, int D = 2>
class spk_fifo {
public:
    spk_fifo() {}
    spk_fifo(const char *) {}
    void write(const T &v) { q_.push_back(v); }
    T read() {
        assert(!q_.empty() && "spk_fifo: read from an empty FIFO (process order or counts wrong)");
        T v = q_.front();
        q_.pop_front();
        return v;
    }
    bool empty() const { return q_.empty(); }
    bool full() const { return false; }
    std::size_t size() const { return q_.size(); }

private:
    spk_fifo(const spk_fifo &);
    spk_fifo &operator=(const spk_fifo &);
    std::deque<T> q_;
};
#endif

#endif // SPK_FIFO_H
