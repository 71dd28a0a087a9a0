// sr-fpga-pack.c - sr-spike weights and planes -> spk_acc device layouts (see spk_acc.h).
#include "sr-fpga-pack.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

sr_status sr_fpga_check_weights(const sr_spike_weights *w, int32_t i) {
    if (!w || !w->lines)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d has no packed weights", (int)i);
    if (w->format < SR_SPIKE_W_Q4_1 || w->format > SR_SPIKE_W_TERNARY ||
        w->tile_w != sr_spike_tile_width(w->format))
        return sr_fail(SR_ERR_UNSUPPORTED, "fpga: matrix %d has weight format %d; the spk_acc kernel "
                       "takes Q4_1, Q8_0, int8 rows and ternary", (int)i, (int)w->format);
    if (w->n_in <= 0 || w->n_in % (int32_t)SPK_BLOCK != 0 || w->n_in > (int32_t)SPK_MAX_COLS)
        return sr_fail(SR_ERR_UNSUPPORTED, "fpga: matrix %d has %d inputs; the kernel takes a multiple "
                       "of 32 up to %u", (int)i, (int)w->n_in, SPK_MAX_COLS);
    if (w->n_out <= 0 || w->n_chunks <= 0 || w->n_blocks != w->n_in / 32)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d has an inconsistent shape", (int)i);
    if (w->int_scales)
        return sr_fail(SR_ERR_UNSUPPORTED, "fpga: matrix %d has integer block scales (--weights int4i); the "
                       "spk_acc kernel rescales fp16 block scales only", (int)i);
    const int block_fmt = w->format == SR_SPIKE_W_Q4_1 || w->format == SR_SPIKE_W_Q8_0;
    if (block_fmt) {
        if (!w->d || (w->format == SR_SPIKE_W_Q4_1 && !w->m))
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d lacks block scales", (int)i);
    } else if (!w->row_scale) {
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d lacks row scales", (int)i);
    }
    return SR_OK;
}

uint64_t sr_fpga_shard_lines(const sr_spike_weights *w, int32_t c0, int32_t c1) {
    return (uint64_t)(c1 - c0) * spk_chunk_lines((uint32_t)w->format, (uint32_t)w->n_in);
}

static void put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void sr_fpga_pack_shard(const sr_spike_weights *w, int32_t c0, int32_t c1, void *dst) {
    const uint32_t fmt = (uint32_t)w->format;
    const int32_t nb = w->n_blocks, tw = w->tile_w;
    uint8_t *p = (uint8_t *)dst;
    for (int32_t c = c0; c < c1; c++) {
        for (int32_t b = 0; b < nb; b++) {
            memcpy(p, w->lines + sr_spike_line_offset(w, c, b, 0), 32 * SPK_LINE_BYTES);
            p += 32 * SPK_LINE_BYTES;
            if (fmt == SR_SPIKE_W_Q4_1 || fmt == SR_SPIKE_W_Q8_0) {
                const size_t base = ((size_t)c * (size_t)nb + (size_t)b) * (size_t)tw;
                for (int32_t r = 0; r < tw; r++) put_u16(p + 2 * r, w->d[base + (size_t)r]);
                p += (size_t)tw * 2;
                if (fmt == SR_SPIKE_W_Q4_1) {
                    for (int32_t r = 0; r < tw; r++) put_u16(p + 2 * r, w->m[base + (size_t)r]);
                    p += (size_t)tw * 2;
                }
            }
        }
        if (fmt == SR_SPIKE_W_I8_ROW || fmt == SR_SPIKE_W_TERNARY) {
            for (int32_t r = 0; r < tw; r++) put_u32(p + 4 * r, f32_bits(w->row_scale[(size_t)c * tw + r]));
            p += (size_t)tw * 4;
        }
    }
}

uint32_t sr_fpga_slot_capacity(int32_t n_in) {
    uint32_t nw = (uint32_t)n_in / SPK_BLOCK;
    return spk_slot_lines(SPK_MAX_T, nw, nw);
}

sr_status sr_fpga_check_planes(const sr_spike_planes *x, int32_t slot) {
    if (!x || !x->bits || !x->scale)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: input for slot %d has no planes", (int)slot);
    if (x->T < 1 || x->T > (int32_t)SPK_MAX_T)
        return sr_fail(SR_ERR_UNSUPPORTED, "fpga: input for slot %d has T = %d planes; the kernel takes "
                       "1..%u (use a bitwise encoding or fewer steps)", (int)slot, (int)x->T, SPK_MAX_T);
    if (x->encoding < SR_SPIKE_SIGN_MAGNITUDE || x->encoding > SR_SPIKE_NAF)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: input for slot %d has encoding %d", (int)slot, (int)x->encoding);
    if (x->n < 1 || x->n_words != (x->n + 31) / 32 || x->group < 1 ||
        x->n_groups != (x->n + x->group - 1) / x->group || x->n_groups > x->n_words)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: input for slot %d has inconsistent sizes", (int)slot);
    if (x->encoding == SR_SPIKE_BINARY ? (x->offset < 0 || x->offset > (int32_t)SPK_MAX_OFFSET) : x->offset != 0)
        return sr_fail(SR_ERR_UNSUPPORTED, "fpga: input for slot %d has offset %d; the kernel takes 0..%u for the "
                       "binary code and 0 otherwise", (int)slot, (int)x->offset, SPK_MAX_OFFSET);
    for (int32_t g = 0; g < x->n_groups; g++)
        if (!isfinite(x->scale[g]))
            return sr_fail(SR_ERR_NUMERIC, "fpga: input for slot %d has a non-finite scale", (int)slot);
    return SR_OK;
}

uint32_t sr_fpga_pack_planes(const sr_spike_planes *x, void *dst) {
    const uint32_t T = (uint32_t)x->T, nw = (uint32_t)x->n_words, ng = (uint32_t)x->n_groups;
    const uint32_t n = spk_slot_lines(T, nw, ng);
    uint8_t *p = (uint8_t *)dst;
    memset(p, 0, (size_t)n * SPK_LINE_BYTES);
    put_u32(p + 0, T);
    put_u32(p + 4, (uint32_t)x->encoding);
    put_u32(p + 8, (uint32_t)x->offset);
    put_u32(p + 12, (uint32_t)x->group);
    put_u32(p + 16, (uint32_t)x->n);
    put_u32(p + 20, nw);
    put_u32(p + 24, ng);
    put_u32(p + 28, SPK_SLOT_MAGIC);
    uint8_t *bits = p + SPK_LINE_BYTES;
    const size_t n_words = (size_t)2 * T * nw;
    for (size_t k = 0; k < n_words; k++) put_u32(bits + 4 * k, x->bits[k]);
    uint8_t *sc = bits + (size_t)spk_slot_bits_lines(T, nw) * SPK_LINE_BYTES;
    for (uint32_t g = 0; g < ng; g++) put_u32(sc + 4 * (size_t)g, f32_bits(x->scale[g]));
    return n;
}

sr_spike_weights sr_fpga_weights_shape(const sr_spike_weights *w) {
    static int32_t sentinel;
    sr_spike_weights s;
    memset(&s, 0, sizeof s);
    s.format = w->format;
    s.n_in = w->n_in;
    s.n_out = w->n_out;
    s.n_out_pad = w->n_out_pad;
    s.tile_w = w->tile_w;
    s.n_blocks = w->n_blocks;
    s.n_chunks = w->n_chunks;
    s.qmax = w->qmax;
    // The device needs no row sums (it decodes true counts), but acceptance must be the
    // CPU's: the check rejects the binary code for weights that have none.
    s.row_sum = w->row_sum ? &sentinel : NULL;
    s.mem = &sentinel;
    return s;
}
