// spk_acc.h - the one definition of the spk_acc kernel interface.
//
// Shared by the HLS kernel (kernels/spk_acc.cpp, C++14), the host backend (csrc/fpga, C11),
// the test-xclbin generator (tools/xclbin/gen_test_xclbin.c) and, through that generator's
// --link-cfg output, by the check of firmware/link.cfg (tools/fpga/check_interface.sh).
// Change the argument table here and nowhere else: the xclbin metadata, the connectivity and
// the host's xrtRunSetArg indices follow it, and the kernel's signature is checked against
// it at compile time (spk_acc.cpp).
//
// Weight codes, spike planes, the integer accumulation and the integer->float rescale are
// those of include/spikerun/sr-spike.h (the spike kernel contract); this header only adds how
// they are laid out in device memory. Plain C types only (no ap_int, no XRT types): compiles
// as C11 and as C++14.
#ifndef SPK_ACC_H
#define SPK_ACC_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------
// Sizes.

#define SPK_LINE_BYTES   64u      // one 512-bit AXI word = one sr-spike weight line
#define SPK_BLOCK        32u      // inputs per block (SR_SPIKE_BLOCK)
#define SPK_MAX_TILE     256u     // largest tile width (ternary), SR_SPIKE_MAX_TILE
#define SPK_MAX_COLS     16384u   // n_in limit (Qwen2.5-1.5B ffn_down has 8960)
#define SPK_MAX_WORDS    (SPK_MAX_COLS / SPK_BLOCK)
#define SPK_MAX_T        16u      // planes (bitwise codes: SR_SPIKE_MAX_T_BITWISE; rate
                                  //   codes are limited to 16 planes on the FPGA)
#define SPK_N_ENGINES    3u       // one engine per weight port (w0 DDR, w1 LPDDR, w2 LPDDR)
#define SPK_MAX_OFFSET   65535u   // offset z of the binary code (16 offset planes at most)

// ---------------------------------------------------------------------------------------
// Kernel arguments: X(index, name, kind, bundle, bank, ctrl_offset, c_type, what)
//   kind 1 = global pointer (m_axi, 64-bit address), 0 = scalar (s_axilite).
//   bank = memory tag of xilinx_vck190_base_202210_1 (link.cfg `sp=`).
//   ctrl_offset = register offset in the s_axilite map, following Vitis HLS's layout
//   (0x00 ap_ctrl, 0x04 GIE, 0x08 IER, 0x0C ISR, then 12 bytes per pointer, 8 per u32).
//   The host does not use the offsets (XRT sets arguments by index); the noop test checks
//   that XRT reads them back from the metadata, and a v++-built xclbin may differ.
#define SPK_ACC_ARGS(X)                                                                        \
    X(0, w0,        1, "gmem0", "DDR",   0x10, "void*",        "weights, engine 0 shards")    \
    X(1, w1,        1, "gmem1", "LPDDR", 0x1c, "void*",        "weights, engine 1 shards")    \
    X(2, w2,        1, "gmem2", "LPDDR", 0x28, "void*",        "weights, engine 2 shards")    \
    X(3, jobs,      1, "gmem3", "DDR",   0x34, "void*",        "job descriptors (spk_job)")   \
    X(4, spk,       1, "gmem4", "DDR",   0x40, "void*",        "spike input slots")           \
    X(5, out,       1, "gmem5", "DDR",   0x4c, "void*",        "float outputs")               \
    X(6, job_first, 0, "",      "",      0x58, "unsigned int", "first descriptor of the run") \
    X(7, n_jobs,    0, "",      "",      0x60, "unsigned int", "descriptors in the run")

#define SPK_ACC_NARGS       8
#define SPK_ACC_CTRL_RANGE  0x1000u
#define SPK_ACC_KERNEL_NAME "spk_acc"
#define SPK_ACC_CU_NAME     "spk_acc_1"

enum spk_acc_arg {
#define SPK_X_ENUM(i, n, k, b, m, o, t, w) SPK_ARG_##n = i,
    SPK_ACC_ARGS(SPK_X_ENUM)
#undef SPK_X_ENUM
};

// ---------------------------------------------------------------------------------------
// Weights in device memory.
//
// fmt is sr_spike_format (0 Q4_1, 1 Q8_0, 2 I8_ROW, 3 TERNARY); tile_w rows per chunk is
// sr_spike_tile_width(fmt) (128, 64, 64, 256). A job's matrix is split by chunks over the
// three engines; each engine's shard is a run of whole chunks, stored from line w_off[e] of
// its port as, for each chunk c, for each 32-input block b:
//   32 code lines      line jj = sr-spike line (c, b, jj), copied verbatim (codes of input
//                      column 32b + jj for the chunk's tile_w rows)
//   scale lines        Q4_1: 4 lines of fp16 d (row r at bytes 2r of the 256-byte run),
//                            then 4 lines of fp16 m;  Q8_0: 2 lines of fp16 d;  else none
// and, after the chunk's last block (I8_ROW, TERNARY only):
//   row-scale lines    tile_w/16 lines of float32 s_w (row r at bytes 4r)
// d and m are the GGUF fp16 bits as sr_spike_weights holds them; the kernel widens them
// exactly to float32 (spk_half_to_float). Padding rows have zero codes and zero scales.
// Lines per chunk: Q4_1 40*nb, Q8_0 34*nb, I8_ROW 32*nb + 4, TERNARY 32*nb + 16 (nb = n_in/32).

static inline uint32_t spk_tile_rows(uint32_t fmt) {
    return fmt == 0 ? 128u : fmt == 1 ? 64u : fmt == 2 ? 64u : fmt == 3 ? 256u : 0u;
}
static inline uint32_t spk_block_scale_lines(uint32_t fmt) {
    return fmt == 0 ? 8u : fmt == 1 ? 2u : 0u;
}
static inline uint32_t spk_row_scale_lines(uint32_t fmt) {
    return (fmt == 2 || fmt == 3) ? spk_tile_rows(fmt) / 16u : 0u;
}
static inline uint64_t spk_chunk_lines(uint32_t fmt, uint32_t n_in) {
    uint32_t nb = n_in / SPK_BLOCK;
    return (uint64_t)nb * (SPK_BLOCK + spk_block_scale_lines(fmt)) + spk_row_scale_lines(fmt);
}

// IEEE half -> float, exact, as sr_spike_f16_to_f32 (sr-spike.h) but with bounded loops
// only, so that HLS can unroll it per lane: the subnormal case finds the leading one with a
// fixed 10-step scan instead of a data-dependent while loop. The C-simulation testbench
// checks all 65536 inputs against sr_spike_f16_to_f32 bit for bit.
static inline float spk_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t e = (uint32_t)(h >> 10) & 0x1fu;
    uint32_t m = (uint32_t)h & 0x3ffu;
    uint32_t u;
    if (e == 0x1fu) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        u = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        u = sign;
    } else {
        uint32_t p = 0;  // index of the highest set bit of m (0..9)
        for (uint32_t k = 0; k < 10; k++)
            if ((m >> k) & 1u) p = k;
        u = sign | ((p + 103u) << 23) | ((m << (23u - p)) & 0x7fffffu);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// ---------------------------------------------------------------------------------------
// Spike input slot, at line spk_off of the `spk` buffer (jobs that read the same
// activation share a slot). All fields little-endian.
//   line 0   spk_slot_hdr
//   bits     from line 1: the sr_spike_planes masks bits[(t*2 + s)*n_words + b] for
//            t < T, s = 0 (+1 spikes) / 1 (-1 spikes), b < n_words, 16 words per line,
//            padded with zeros to whole lines (ceil(2*T*n_words/16) lines)
//   scales   then the n_groups activation scales s_x (float32), 16 per line
// Spikes on inputs >= n are zero; such inputs count 0.
typedef struct spk_slot_hdr {
    uint32_t T;            // planes, 1..SPK_MAX_T
    uint32_t enc;          // sr_spike_encoding
    int32_t  offset;       // z of the binary code, else 0
    uint32_t group;        // channels per activation scale (n for one scale per token)
    uint32_t n;            // activations (<= the matrices' n_in)
    uint32_t n_words;      // ceil(n / 32)
    uint32_t n_groups;     // ceil(n / group)
    uint32_t magic;        // SPK_SLOT_MAGIC; a job whose slot lacks it writes NaN
    uint32_t reserved[8];  // zero
} spk_slot_hdr;

#define SPK_SLOT_MAGIC 0x31534b50u  // "PKS1"

static inline uint32_t spk_slot_bits_lines(uint32_t T, uint32_t n_words) {
    return (2u * T * n_words + 15u) / 16u;
}
static inline uint32_t spk_slot_lines(uint32_t T, uint32_t n_words, uint32_t n_groups) {
    return 1u + spk_slot_bits_lines(T, n_words) + (n_groups + 15u) / 16u;
}

// ---------------------------------------------------------------------------------------
// One job = one matrix-vector product, one line in the `jobs` buffer.
typedef struct spk_job {
    uint32_t fmt;          // sr_spike_format
    uint32_t n_in;         // inputs, multiple of 32, <= SPK_MAX_COLS
    uint32_t chunks[3];    // chunks (of tile_w rows) of each engine's shard
    uint32_t w_off[3];     // line offset of each shard in w0 / w1 / w2
    uint32_t spk_off;      // line offset of the input slot in `spk`
    uint32_t out_off;      // line offset of the outputs in `out`: engine 0's rows, then
                           //   engine 1's, then engine 2's (chunks[e] * tile_w floats each)
    uint32_t reserved[6];  // zero
} spk_job;

#if defined(__cplusplus)
static_assert(sizeof(spk_job) == SPK_LINE_BYTES, "spk_job is one line");
static_assert(sizeof(spk_slot_hdr) == SPK_LINE_BYTES, "spk_slot_hdr is one line");
#else
_Static_assert(sizeof(spk_job) == SPK_LINE_BYTES, "spk_job is one line");
_Static_assert(sizeof(spk_slot_hdr) == SPK_LINE_BYTES, "spk_slot_hdr is one line");
#endif

#ifdef __cplusplus
}  // extern "C"

// ---------------------------------------------------------------------------------------
// Kernel side (C++ only): the 512-bit word and the top function.
struct alignas(64) spk_line {
    uint64_t v[8];
};

extern "C" void spk_acc(const spk_line *w0, const spk_line *w1, const spk_line *w2,
                        const spk_line *jobs, const spk_line *spk, spk_line *out,
                        unsigned int job_first, unsigned int n_jobs);
#endif

#endif // SPK_ACC_H
