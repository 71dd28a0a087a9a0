// spk_core.h - the spike-gated accumulation core of spk_acc (C++14, Vitis HLS 2022.1) and
// the messages and FIFO depths of the kernel's DATAFLOW region.
//
// This header and kernels/spk_core.cpp are the accumulation core: they must not multiply,
// divide or take a remainder. tools/fpga/check_core_no_multiply.sh enforces it on the source
// (no '*', '/' or '%' outside comments: no pointers either, references only) and on the
// C-simulation objects (no multiply or divide instruction in any function).
//
// FIFO depths. Every stage reads a job's side inputs (descriptor, slot info, masks, scales)
// completely before it produces anything for that job, and every producer writes each FIFO
// in the order its consumer reads it, so no depth is needed for correctness beyond 1; the
// depths below are for throughput, derived from the schedule (docs/fpga-design.md, section
// "FIFO depths", has the derivation):
//   SPK_D_JOB    4   descriptors: a job is many cycles; 4 lets read_jobs run 3 jobs ahead.
//   SPK_D_INFO   2   per-job slot info: one job ahead.
//   SPK_D_WORDS 64   mask/scale/fire words from load_spikes: 64 words = 4 slot lines, the
//                    burst load_spikes reads at a time.
//   SPK_D_CODES 64   code lines load_w -> acc: two blocks of 32 lines, so the weight port
//                    keeps streaming block b+1 (and b+2 when sparse) while acc is busy with
//                    the events of block b.
//   SPK_D_SCALE 32   scale lines load_w -> rescale: load_w can be at most
//                    SPK_D_CODES / 32 + 2 = 4 blocks ahead of rescale, 8 scale lines per
//                    Q4_1 block: 32; also one chunk of ternary row scales (16).
//   SPK_D_A     64   acc -> rescale, per block 1 + tile_w/16 <= 17 lines: two blocks of a
//                    256-row tile plus slack, so acc never waits on a rescale mid-block
//                    (rescale needs bs + lines16 + 1 cycles per block).
//   SPK_D_Y     32   rescale -> store: store merges the three engines as lines arrive, one
//                    line per cycle; 32 = two 16-line bursts of one engine.
#ifndef SPK_CORE_H
#define SPK_CORE_H

#include "spk_acc.h"
#include "spk_fifo.h"

#include <stdint.h>

#define SPK_D_JOB 4
#define SPK_D_INFO 2
#define SPK_D_WORDS 64
#define SPK_D_CODES 64
#define SPK_D_SCALE 32
#define SPK_D_A 64
#define SPK_D_Y 32

#define SPK_MAX_PLANES 32  // virtual planes: up to 16 offset planes (binary z) + 16 code planes

// Per-job slot description from load_spikes to acc_e and load_w_e (8 words: 32 bytes).
struct spk_sinfo {
    uint32_t ok;       // the slot passed load_spikes' checks
    uint32_t T;        // code planes (0 when !ok)
    uint32_t enc;      // sr_spike_encoding
    uint32_t z;        // binary offset (0..65535), else 0
    uint32_t n;        // activations (inputs >= n are silent)
    uint32_t n_words;  // mask words per plane and sign that follow (0 when !ok)
    uint32_t pad[2];
};

// Per-job message from load_spikes to rescale_e (n_groups scale words follow).
struct spk_xinfo {
    uint32_t ok;        // slot valid
    uint32_t n;         // activations
    uint32_t group;     // channels per scale
    uint32_t n_groups;  // scales that follow
};

// One output line with its line address in `out` (rescale_e -> store, merged as produced).
struct spk_yline {
    spk_line data;
    uint32_t addr;
};

// Counters of the accumulation core's schedule, one per engine. Each loop iteration of the
// core is one clock cycle at II = 1; C-simulation counts them (tb/spk_acc_tb.cpp prints
// them for real SmolLM2 layers and docs/fpga-v2-model.md uses them).
struct spk_core_counters {
    uint64_t blocks;   // (chunk, block) pairs
    uint64_t silent;   // of which no input fired (no code line fetched, no event)
    uint64_t fill;     // code lines received (= fetched): one cycle each
    uint64_t events;   // add/sub cycles (one firing input of one plane)
    uint64_t bubbles;  // shift-only or empty-plane cycles between events
    uint64_t out;      // A lines sent (header + tile_w/16 per block)
};
SPK_CSIM_ONLY(extern spk_core_counters spk_core_count[SPK_N_ENGINES];)

// Counters of engine e's weight loader (C-simulation only): AXI bursts and lines read.
struct spk_load_counters {
    uint64_t bursts;
    uint64_t lines;
};
SPK_CSIM_ONLY(extern spk_load_counters spk_load_count[SPK_N_ENGINES];)
// The counters of the last completed run (C-simulation only; spk_csim.cpp).
SPK_CSIM_ONLY(extern spk_core_counters spk_csim_last_core[SPK_N_ENGINES];)
SPK_CSIM_ONLY(extern spk_load_counters spk_csim_last_load[SPK_N_ENGINES];)

// Engine e's accumulation core: per job, per chunk of tile_w rows, per 32-input block:
// receives the code lines of the inputs that fire in some plane (ascending column), then
// walks the planes (offset planes of the binary code first, then the code planes, Horner
// order) and, per plane, per firing input, adds or subtracts that input's code line into
// the tile_w lane accumulators; lane N adds +-1 per event (N_b, the block's count sum).
// Sends per block a header line (word 0 = N_b) and tile_w/16 lines of A (int32).
void spk_core_acc(int e, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                  spk_fifo<spk_job, SPK_D_JOB> &j_out, spk_fifo<spk_sinfo, SPK_D_INFO> &s_in,
                  spk_fifo<uint32_t, SPK_D_WORDS> &masks, spk_fifo<spk_line, SPK_D_CODES> &codes,
                  spk_fifo<spk_line, SPK_D_A> &a_out);

// The code of tile row r in a 64-byte line, as sr_spike_line_get (include/spikerun/sr-spike.h)
// but from the 512-bit word with shifts and masks only, sign-extended to 32 bits (two's
// complement). The testbench checks it against sr_spike_line_get for every format and row.
uint32_t spk_core_code(const spk_line &l, uint32_t fmt, uint32_t r);

#endif // SPK_CORE_H
