// The transformer forward pass of the Llama family (dense reference and spike models): llama
// and qwen2 (the same graph plus q/k/v biases and NEOX RoPE).
//
// Swift owns loading (GGUF mmap, tokenizer) and hands the engine borrowed pointers to the
// weights; the engine owns the KV cache, scratch buffers and the thread pool. Every linear
// product goes through one of two paths:
//   - dense: ggml block weights times activations (8-bit activation blocks as llama.cpp's CPU
//     backend does, or plain float32);
//   - spike: a hook installed by the spike runtime (sr_engine_set_linear_hook), which gets the
//     float activation of a site and writes the layer's float output.
// Attention (cache + both products) can be hooked the same way (sr_engine_set_attention_hook).
#ifndef SPIKERUN_SR_ENGINE_H
#define SPIKERUN_SR_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sr_pool;

/// Spiking sites of one block (docs/spike-algorithms.md §7): where an activation is encoded once
/// and read by one or more linear layers.
typedef enum sr_site {
    SR_SITE_A = 0,  // attn_norm output: input of q, k, v
    SR_SITE_O = 1,  // attention output: input of o
    SR_SITE_F = 2,  // ffn_norm output: input of gate, up
    SR_SITE_D = 3,  // silu(gate)*up: input of down
    SR_SITE_H = 4,  // output_norm output: input of the head (layer index = n_layer)
} sr_site;
enum { SR_N_SITES = 5 };

typedef enum sr_proj {
    SR_PROJ_Q = 0, SR_PROJ_K, SR_PROJ_V, SR_PROJ_O, SR_PROJ_GATE, SR_PROJ_UP, SR_PROJ_DOWN,
    SR_PROJ_HEAD,
} sr_proj;
enum { SR_N_PROJ = 8 };

/// How dense linear layers treat activations.
typedef enum sr_act_mode {
    SR_ACT_Q8 = 0,   // llama.cpp-compatible: activations quantized to 8-bit blocks per weight type
    SR_ACT_F32 = 1,  // exact float32: weights dequantized, activations kept in float
} sr_act_mode;

/// One linear layer: n_out rows of n_in elements in ggml block format (type = sr_type).
typedef struct sr_linear {
    const void *w;      // (n_out, n_in) ggml blocks, row-major; borrowed
    int32_t type;       // sr_type
    int32_t n_in;
    int32_t n_out;
} sr_linear;

typedef struct sr_block_weights {
    const float *attn_norm;  // (n_embd)
    sr_linear q, k, v, o;    // q: n_embd -> n_head*head_dim; k, v: -> n_head_kv*head_dim
    const float *ffn_norm;   // (n_embd)
    sr_linear gate, up, down;
    // Biases added to the q, k, v projections' outputs before RoPE (qwen2); NULL = none.
    const float *q_bias;     // (n_head*head_dim)
    const float *k_bias;     // (n_head_kv*head_dim)
    const float *v_bias;     // (n_head_kv*head_dim)
} sr_block_weights;

/// Which dimensions RoPE rotates together (ggml's rope modes).
typedef enum sr_rope_mode {
    SR_ROPE_NORM = 0,  // adjacent pairs (2i, 2i+1): llama
    SR_ROPE_NEOX = 2,  // pairs (i, i + rope_dim/2): qwen2 (GGML_ROPE_TYPE_NEOX = 2)
} sr_rope_mode;

typedef struct sr_engine_params {
    int32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int32_t n_ctx;          // KV cache capacity in tokens
    int32_t n_batch;        // largest number of tokens per forward pass (all sequences together)
    int32_t n_seq;          // KV cache regions of n_ctx tokens each, one per sequence (0 = 1)
    int32_t rope_dim;       // rotated dimensions per head (<= head_dim)
    float rope_freq_base;
    float rms_eps;
    sr_act_mode act_mode;
    int32_t n_threads;      // <= 0: one per online CPU
    bool hooked_linears;    // a linear hook will compute every linear: weight types are not
                            // checked (spike models store int8/ternary codes the dense path
                            // cannot read)
    sr_rope_mode rope_mode; // SR_ROPE_NORM (0, zero-initialized default) or SR_ROPE_NEOX
} sr_engine_params;

typedef struct sr_engine_weights {
    const void *tok_embd;     // (n_vocab, n_embd) ggml blocks
    int32_t tok_embd_type;    // sr_type
    const float *output_norm; // (n_embd)
    sr_linear output;         // head; may alias tok_embd (tied)
    const sr_block_weights *blocks;  // n_layer entries, copied by sr_engine_create
} sr_engine_weights;

/// A linear hook computes, for the `count` layers reading `site` of block `layer` (layer ==
/// n_layer for the head; q,k,v for A and gate,up for F share one call, so the activation is
/// encoded once), ys[i][t*n_out + o] from the n_tok activation rows x[t*n_in + j]. The hook
/// computes the product only: the engine adds q/k/v biases afterwards, as on the dense path.
/// Return SR_OK, or an error to abort the evaluation.
typedef sr_status (*sr_linear_hook)(void *user, int32_t layer, sr_site site, int32_t count,
                                    const sr_proj *projs, const sr_linear *const *lins,
                                    const float *x, int32_t n_tok, float *const *ys);

/// An attention hook replaces the engine's fp16 KV cache and attention for block `layer`.
/// q (n_tok, n_head*head_dim), k and v (n_tok, n_head_kv*head_dim) are after RoPE, for the
/// tokens at positions pos .. pos+n_tok-1 (causal); the hook writes out (n_tok, n_head*head_dim)
/// and keeps its own cache of k and v.
typedef sr_status (*sr_attention_hook)(void *user, int32_t layer, const float *q, const float *k,
                                       const float *v, int32_t n_tok, int32_t pos, float *out);

/// The same for engines with several sequences: `seq` names the sequence (and so the cache)
/// the n_tok tokens belong to. An engine with n_seq > 1 needs this form to hook attention.
typedef sr_status (*sr_attention_seq_hook)(void *user, int32_t layer, int32_t seq, const float *q,
                                           const float *k, const float *v, int32_t n_tok,
                                           int32_t pos, float *out);

/// An embedding hook writes token `token`'s row of the embedding table (n_embd floats) to out,
/// bit-identical to dequantizing the table's row (the spike runtime serves it from its packed
/// copy of a tied head, whose mapped pages it dropped).
typedef void (*sr_embedding_hook)(void *user, int32_t token, float *out);

/// What a tap sees: the float input of a spiking site (before any encoding), or the V
/// projection's output (for calibrating static V-cache scales).
typedef enum sr_tap_point {
    SR_TAP_SITE_A = 0, SR_TAP_SITE_O, SR_TAP_SITE_F, SR_TAP_SITE_D, SR_TAP_SITE_H,
    SR_TAP_V,       // (n_tok, n_head_kv*head_dim) after the V projection
    SR_TAP_BLOCK,   // (n_tok, n_embd) residual stream entering block `layer`
} sr_tap_point;

/// Observes activations during evaluation (calibration, analysis); must not modify them.
typedef void (*sr_tap_fn)(void *user, int32_t layer, sr_tap_point point, const float *data,
                          int32_t n_tok, int32_t dim);

/// A token hook computes a whole token elsewhere (the FPGA token program): the engine calls
/// it once per token, in order, with logits NULL when that token's logits are not wanted, and
/// runs none of its own layers. It must keep its own K/V caches (one sequence).
typedef sr_status (*sr_token_hook)(void *user, int32_t token, int32_t pos, float *logits);

typedef struct sr_engine sr_engine;

sr_status sr_engine_create(const sr_engine_params *p, const sr_engine_weights *w, sr_engine **out);
void sr_engine_free(sr_engine *e);

/// Route every linear layer through `hook` (NULL restores the dense path).
void sr_engine_set_linear_hook(sr_engine *e, sr_linear_hook hook, void *user);

/// Route attention through `hook` (NULL restores the engine's own fp16 attention).
void sr_engine_set_attention_hook(sr_engine *e, sr_attention_hook hook, void *user);

/// Route attention through a sequence-aware `hook` (takes precedence over the plain one).
void sr_engine_set_attention_seq_hook(sr_engine *e, sr_attention_seq_hook hook, void *user);

/// Read embedding rows through `hook` (NULL restores the table).
void sr_engine_set_embedding_hook(sr_engine *e, sr_embedding_hook hook, void *user);

/// Run every token through `hook` (NULL restores the engine's own forward pass).
void sr_engine_set_token_hook(sr_engine *e, sr_token_hook hook, void *user);

/// The engine's parameters, block weights (NULL outside 0..n_layer-1) and model weights, for
/// hooks that compute whole tokens elsewhere.
const sr_engine_params *sr_engine_get_params(const sr_engine *e);
const sr_block_weights *sr_engine_block(const sr_engine *e, int32_t layer);
const sr_engine_weights *sr_engine_get_weights(const sr_engine *e);

/// The embedding table the engine reads and its sr_type (for hooks that replace it).
const void *sr_engine_token_embedding(const sr_engine *e, int32_t *type);

/// Observe activations with `fn` (NULL stops).
void sr_engine_set_tap(sr_engine *e, sr_tap_fn fn, void *user);

/// The engine's thread pool, for hooks that want to split their own work.
struct sr_pool *sr_engine_pool(sr_engine *e);

/// Run `n` tokens at positions pos .. pos+n-1 (the KV cache must hold positions < pos).
/// logits: NULL, or room for n_vocab floats per requested row: all rows if all_logits,
/// otherwise only the last token's. n may exceed n_batch: it is split internally.
sr_status sr_engine_eval(sr_engine *e, const int32_t *tokens, int32_t n, int32_t pos,
                         float *logits, bool all_logits);

/// One sequence's share of a multi-sequence forward pass (continuous batching).
typedef struct sr_seq_batch {
    int32_t seq;            // KV cache region, 0 .. n_seq-1; at most once per call
    int32_t pos;            // position of the first token (the region must hold positions < pos)
    int32_t n_tok;          // >= 1
    const int32_t *tokens;  // (n_tok) token ids
    float *logits;          // NULL, or room for n_vocab floats: the last token's logits
    int32_t kernel_n;       // token count that picks the attention kernel, as n does in
                            // sr_engine_eval (0 = n_tok): a prompt's chunks pass the prompt's
                            // length to get the results of evaluating it at once
} sr_seq_batch;

/// Run one forward pass over the tokens of several sequences: linear layers see every token of
/// every sequence at once (weights are read once per step), attention runs per sequence on its
/// own cache region. Each sequence's results are bit-identical to sr_engine_eval of its tokens
/// alone at the same positions with n = kernel_n (linear layers compute every row the same way
/// whatever the batch; attention picks its kernel from kernel_n as sr_engine_eval does from n).
/// The tokens of all sequences together must fit in n_batch.
sr_status sr_engine_eval_seqs(sr_engine *e, const sr_seq_batch *seqs, int32_t n_seqs);

/// Ask a running sr_engine_eval to stop at the next layer boundary (thread-safe).
void sr_engine_abort(sr_engine *e);

/// Bytes held by the engine itself (KV cache + scratch), for memory reports.
uint64_t sr_engine_memory_bytes(const sr_engine *e);

#ifdef __cplusplus
}
#endif
#endif
