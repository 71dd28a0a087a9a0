// spk_token.h - the token program: one kernel run computes a whole token (docs/fpga-design.md
// section 7). Shared by the HLS kernel (kernels/spk_token.cpp, C++14), the host that builds
// the program (csrc/core/sr-spike-net.c through csrc/fpga/sr-fpga.c, C11) and the testbench.
//
// The spk_token kernel has spk_acc's argument table (SPK_ACC_ARGS: w0, w1, w2, jobs, spk,
// out and two scalars) and the same buffers; the scalars mean `job_first` = line of the
// first descriptor in `jobs`, `n_jobs` = most descriptors to execute (a bound, not a count).
//
// Device memory of a token program:
//   w0, w1, w2  the weight shards of every matrix (spk_acc.h), and the K and V caches of
//               spike attention as I8_ROW matrices pinned to engine 0 (w0): K cache of one
//               (layer, KV head) = n_ctx rows (positions) x head_dim inputs with the per-
//               (token, head) row scales; V cache = head_dim rows (channels) x ctx_pad
//               inputs (positions) with the static per-channel scales as row scales.
//   jobs        one spk_job per matrix (as for spk_acc), then the descriptors (spk_desc).
//   spk         one spike slot per input slot (spk_acc.h); the program's ENCODE writes them.
//               Slot header word reserved[0] holds sum_j a_j of the slot (the overflow
//               bound's input, sr-spike.h): written by ENCODE, ignored by spk_acc.
//   out         every job's outputs (as for spk_acc), then the arena: the token header line
//               (spk_token_hdr), float vectors (residual, normed input, attention output,
//               norm weights, RoPE table ...), all at float indices given by descriptors.
//
// Per token the host writes the header (token id, position, whether logits are wanted),
// starts ONE run and reads the header's status and the head job's outputs (the logits).
#ifndef SPK_TOKEN_H
#define SPK_TOKEN_H

#include <stdint.h>

#include "spk_acc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPK_TOKEN_KERNEL_NAME "spk_token"
#define SPK_TOKEN_CU_NAME     "spk_token_1"
#define SPK_TOKEN_MAX_VEC     SPK_MAX_COLS   // longest float vector an op handles

/// Opcodes, in the order one block uses them.
enum spk_op {
    SPK_OP_END = 0,        // stop: status = OK
    SPK_OP_EMBED = 1,      // dst[0..n) = row `token` of the Q8_0 matrix `job` (tied head):
                           //   (float)code * d, as dequantizing the GGUF row
    SPK_OP_RMSNORM = 2,    // dst = sr_rms_norm(src0, weights src1, n, eps = f0)
    SPK_OP_ENCODE = 3,     // m vectors src0 + h*stride (n each; n = pos+1 with SPK_F_NPOS)
                           //   -> slots at spk line dst + h*dstride (rule, encoding, bits: `enc`)
    SPK_OP_MATVEC = 4,     // run spk_acc's dataflow over jobs [job, job + n_jobs); with
                           //   SPK_F_NPOS first set each job's chunks[0] to ceil((pos+1)/tile)
    SPK_OP_ROPE = 5,       // m heads of n at src0 (in place), rope_dim = aux; cos/sin of the
                           //   position at src1 + pos * rope_dim (rope_dim/2 cos, then sin)
    SPK_OP_KV_STORE = 6,   // m KV heads of n: K row `pos` of matrix job + h*stride from src0 + h*n,
                           //   V column `pos` of matrix n_jobs + h*stride from src1 + h*n
    SPK_OP_SOFTMAX = 7,    // m rows src0 + h*stride of pos+1 values, in place
    SPK_OP_SILU_MUL = 8,   // dst = sr_swiglu_ref(gate src0, up src1, n)
    SPK_OP_ADD = 9,        // dst += src0 (n)
    SPK_OP_IF_LOGITS = 10, // stop (status OK) unless the header asks for logits
};

/// Descriptor flags.
#define SPK_F_NPOS   1u   // ENCODE / SOFTMAX / MATVEC: the length is the position count pos+1
#define SPK_F_KQ     2u   // ENCODE: the slot scale is s * f1 (attention q: kq_scale)
#define SPK_F_POW2   4u   // ENCODE: power-of-two steps (mean: nearest, max: rounded up, unsigned: 2^-bits)

/// Encoder selector of ENCODE (`enc`): rule | encoding << 4 | bits << 8 | clip << 16.
///   rule 0 mean (k = f0, rho = f1, thrifty margin tau = f2, cap 32767, bitwise codes, T = fewest),
///   rule 1 max (Q = 2^(bits-1) - 1, clip (0 = Q), gamma = f0, rho = f2; T fixed by the code),
///   rule 2 unsigned (bits; sign-magnitude, T = bits, scale 1/P).
#define SPK_RULE_MEAN 0u
#define SPK_RULE_MAX 1u
#define SPK_RULE_UNSIGNED 2u

/// One descriptor = one line in `jobs`.
typedef struct spk_desc {
    uint32_t op;       // spk_op
    uint32_t flags;    // SPK_F_*
    uint32_t n;        // elements
    uint32_t m;        // repetitions (heads)
    uint32_t src0;     // float index in `out`
    uint32_t src1;     // float index in `out`
    uint32_t dst;      // float index in `out` (ENCODE: line in `spk`)
    uint32_t stride;   // floats between repetitions of src0
    uint32_t dstride;  // between repetitions of dst (ENCODE: slot lines)
    uint32_t job;      // first job (matrix index)
    uint32_t n_jobs;   // jobs (KV_STORE: first V matrix)
    uint32_t enc;      // ENCODE selector
    uint32_t aux;      // ROPE: rope_dim
    uint32_t f0, f1, f2;  // float parameters as bits
} spk_desc;

/// The token header: one line at the start of the arena.
typedef struct spk_token_hdr {
    uint32_t token;        // host: token id
    uint32_t pos;          // host: position (0-based)
    uint32_t want_logits;  // host: 0 = stop after the last block
    uint32_t status;       // kernel: SPK_TOKEN_* (host writes SPK_TOKEN_PENDING)
    uint32_t at;           // kernel: index of the descriptor that failed (or the END)
    uint32_t executed;     // kernel: descriptors executed
    uint32_t runs;         // kernel: spk_acc dataflow passes (MATVECs) in this run
    uint32_t n_vocab;      // host: rows of the EMBED matrix (token ids must be below)
    uint32_t n_ctx;        // host: positions the K cache holds
    uint32_t reserved[7];
} spk_token_hdr;

enum spk_token_status {
    SPK_TOKEN_OK = 0,
    SPK_TOKEN_NUMERIC = 1,     // NaN or Inf reached an encoder or a cache
    SPK_TOKEN_NO_FIT = 2,      // counts need more than 16 planes
    SPK_TOKEN_OVERFLOW = 3,    // a row-format job's int32 bound is exceeded (sr_spike_matvec_check)
    SPK_TOKEN_BAD_OP = 4,      // unknown opcode or operand
    SPK_TOKEN_BUDGET = 5,      // no END within n_jobs descriptors
    SPK_TOKEN_RANGE = 6,       // token or position outside the model
    SPK_TOKEN_PENDING = 0xffffffffu,
};

#if defined(__cplusplus)
static_assert(sizeof(spk_desc) == SPK_LINE_BYTES, "spk_desc is one line");
static_assert(sizeof(spk_token_hdr) == SPK_LINE_BYTES, "spk_token_hdr is one line");
#else
_Static_assert(sizeof(spk_desc) == SPK_LINE_BYTES, "spk_desc is one line");
_Static_assert(sizeof(spk_token_hdr) == SPK_LINE_BYTES, "spk_token_hdr is one line");
#endif

#ifdef __cplusplus
}  // extern "C"
extern "C" void spk_token(const spk_line *w0, const spk_line *w1, const spk_line *w2,
                          const spk_line *jobs, const spk_line *spk, spk_line *out,
                          unsigned int prog_first, unsigned int max_desc);
#endif

#endif // SPK_TOKEN_H
