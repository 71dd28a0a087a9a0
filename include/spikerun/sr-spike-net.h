// A spike-driven model: packed integer weights for every linear layer, per-site encoder
// settings, optional spike attention, operation counters and spike recording. Attached to an
// engine it replaces every linear product (and optionally both attention products) by
// spike-gated integer accumulation (sr-spike.h).
#ifndef SPIKERUN_SR_SPIKE_NET_H
#define SPIKERUN_SR_SPIKE_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "sr-engine.h"
#include "sr-spike.h"
#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sr_spike_rule {
    SR_SPIKE_RULE_MEAN = 0,  // s = mean|x| / k, no clip (bitwise codes, adaptive T)
    SR_SPIKE_RULE_MAX = 1,   // s = gamma * max|x| / Q per group, fixed T
    SR_SPIKE_RULE_DENSE = 2, // not spiking: the dense 8-bit path on the file's own weights
                             // (sensitivity probes and debugging; needs ggml weight types)
} sr_spike_rule;

/// Encoder settings of one spiking site.
typedef struct sr_spike_site_cfg {
    int32_t rule;       // sr_spike_rule
    int32_t encoding;   // sr_spike_encoding
    float k;            // mean rule: resolution
    int32_t bits;       // max rule: b (Q = 2^(b-1) - 1; ternary/binary: Q = C = clip)
    float gamma;        // max rule: clip level (0, 1]
    int32_t clip;       // membrane clip C (0 = Q)
    float rho;          // dead zone [0, 0.5)
    int32_t group;      // channels per scale (0 = one per token); max rule only
    float tau;          // mean rule with NAF trains: spike-thrifty rounding margin [0, 0.5]
    int32_t pow2;       // mean rule: the step is a power of two (its products are exponent adds)
} sr_spike_site_cfg;

/// Counters of one site (summed over tokens since the last reset).
typedef struct sr_spike_site_stats {
    uint64_t tokens;       // encoded activation vectors
    uint64_t activations;  // encoded values
    uint64_t spikes;       // nonzero spike events
    uint64_t planes;       // sum over tokens of T (time steps used)
    uint64_t sops;         // spike events x fan-out, over every layer reading the site
    uint64_t horner_adds;  // plane-combining adds
    uint64_t dense_macs;   // d_in x d_out of the layers reading the site, per token
    uint64_t rescale_mults;// float multiplies of the integer->float rescale
    uint64_t rescale_int_mults; // integer block-scale products D*A, M*N (--weights int4i)
    uint64_t rescale_shifts; // power-of-two steps: step x row scale as an exponent add, per row
    uint64_t quant_shifts; // power-of-two steps: x / step as an exponent add, per encoded value
    uint64_t select_compares;   // float comparisons choosing the refined head's rows
    uint64_t active_inputs;     // encoded values with at least one spike (their weight lines are read)
    uint64_t weight_bytes_read; // packed weight bytes the kernels read: the lines of active inputs,
                                // every block scale and row scale (refined head: its int8 rows)
    uint64_t weight_bytes_full; // the same if every line were read (no silent input skipped)
} sr_spike_site_stats;

/// Attention sites recorded with the per-block ones (index SR_N_SITES + 0/1).
enum { SR_SITE_ATTN_Q = 5, SR_SITE_ATTN_P = 6, SR_N_SITES_ALL = 7 };

typedef struct sr_spike_net_params {
    int32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_ctx;
    const sr_spike_site_cfg *sites;  // (n_layer * 4 + 1): [l*4 + A,O,F,D], then H
    bool spike_attention;            // QK and PV through spike kernels (option A)
    int32_t q_bits;                  // attention: q encoded by the max rule at this many bits
    int32_t p_bits;                  // attention: probabilities at this many bits (>= 10)
    int32_t attn_pow2;               // attention: q's step rounded up to a power of two, the
                                     // probabilities' scale 2^-p_bits (0 = exact steps)
    const float *v_scales;           // (n_layer, n_head_kv * head_dim) static V scales, or NULL
    int32_t n_seq;                   // sequences with K/V caches of their own (0 = 1)
    // Refined head (0 rows = off; mean-rule head with int8-row codes, CPU only): the head runs
    // on its site's (coarse) train, then the head_refine_rows largest logits are recomputed
    // exactly from a second train of the same input with k = head_refine_k.
    int32_t head_refine_rows;
    float head_refine_k;
} sr_spike_net_params;

typedef struct sr_spike_net sr_spike_net;

/// Called for every encoded token of a recorded site: counts (n), T planes of `encoding`.
typedef void (*sr_spike_record_fn)(void *user, int32_t layer, int32_t site, const int32_t *counts,
                                   int32_t n, int32_t T, int32_t encoding);

sr_status sr_spike_net_create(const sr_spike_net_params *p, sr_spike_net **out);
void sr_spike_net_free(sr_spike_net *net);

/// With `on`, set_linear drops the mapped file pages of Q4_1 / Q8_0 source rows (read-only
/// private mappings only, e.g. an mmap'ed GGUF) as it packs them, for the linears of spiking
/// sites: the packed copy is what the kernels read, and the weights are resident once, also
/// while packing. A page touched again later is read back from the file.
void sr_spike_net_release_sources(sr_spike_net *net, bool on);

/// Packs the weights of one linear layer (layer == n_layer with SR_PROJ_HEAD for the head).
/// fmt Q4_1 / Q8_0: `data` holds GGUF blocks (row_scale NULL); I8_ROW / TERNARY: `data` holds
/// int8 codes (n_out, n_in) row-major and row_scale (n_out) floats.
sr_status sr_spike_net_set_linear(sr_spike_net *net, int32_t layer, sr_proj proj,
                                  sr_spike_format fmt, const void *data, const float *row_scale,
                                  int32_t n_out, int32_t n_in);

/// Replaces the encoder settings of every site (n_layer * 4 + 1, as at create) without
/// re-packing the weights; sensitivity probes use it. Each setting must need no more planes
/// than the net was created for, and the net must not be running on an FPGA.
sr_status sr_spike_net_set_sites(sr_spike_net *net, const sr_spike_site_cfg *sites, int32_t n);

/// Installs the linear (and attention) hooks on `e`; every linear must have been set.
sr_status sr_spike_net_attach(sr_spike_net *net, sr_engine *e);

/// Counters of (layer, site); site in 0..SR_N_SITES_ALL-1 (H: layer = n_layer).
void sr_spike_net_site_stats(const sr_spike_net *net, int32_t layer, int32_t site,
                             sr_spike_site_stats *out);
void sr_spike_net_reset_stats(sr_spike_net *net);

/// Record the counts of every encoded token (NULL fn stops recording).
void sr_spike_net_set_recorder(sr_spike_net *net, sr_spike_record_fn fn, void *user);

struct sr_fpga;

/// Runs every linear layer's spike accumulation on an open FPGA (sr-fpga.h) instead of the
/// CPU: uploads all packed weights once (one matrix group per site, in block order), then
/// each token's site encoding is sent as spike planes and the outputs come back. Encoding,
/// attention and everything float stay on the CPU. NULL returns to the CPU kernels. The net
/// does not own `f`.
sr_status sr_spike_net_use_fpga(sr_spike_net *net, struct sr_fpga *f);

/// True when sr_spike_net_use_fpga put the whole token on the device: the xclbin has the
/// token program (sr_fpga_params.token_program) and the model fits it (spike attention, one
/// sequence, tied Q8_0 head, head size a multiple of 64, mean-rule or per-token max-rule sites
/// with sign-magnitude, two's complement or NAF codes). Then every token is ONE kernel run
/// (the engine's token hook); otherwise one spk_acc run per group of layers.
bool sr_spike_net_token_program(const sr_spike_net *net);
/// Why the model cannot run as a token program (NULL if it can).
const char *sr_spike_net_token_unsupported(const sr_spike_net *net);

/// Bytes of packed weights and spike buffers held by the net.
uint64_t sr_spike_net_memory_bytes(const sr_spike_net *net);

#ifdef __cplusplus
}
#endif
#endif
