// sr-gguf-mini.h - just enough GGUF reading for the C benchmark tools in bench/ (not part of
// the library: the library's GGUF reader is the Swift one). Maps the file read-only and
// lists tensors and the few integer / float metadata keys the tools need.
#ifndef SPIKERUN_BENCH_GGUF_MINI_H
#define SPIKERUN_BENCH_GGUF_MINI_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct gm_tensor {
    char name[96];
    uint32_t n_dims;
    uint64_t dims[4];
    uint32_t type;
    uint64_t offset;
    const void *data;
} gm_tensor;

typedef struct gm_file {
    const uint8_t *base;
    size_t size;
    uint64_t n_tensors;
    gm_tensor *tensors;
    // metadata we need (llama.*)
    int64_t block_count, embedding_length, ff_length, head_count, head_count_kv, ctx_len, rope_dim;
    int64_t vocab_size;
    double rope_freq_base, rms_eps;
    uint32_t alignment;
} gm_file;

typedef struct { const uint8_t *p, *end; int ok; } gm_cur;

static uint64_t gm_u(gm_cur *c, int n) {
    uint64_t v = 0;
    if (c->p + n > c->end) { c->ok = 0; return 0; }
    memcpy(&v, c->p, (size_t)n);
    c->p += n;
    return v;
}

static size_t gm_type_size(uint32_t t) {
    switch (t) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    default: return 0;
    }
}

static double gm_num(gm_cur *c, uint32_t t) {
    uint64_t u = gm_u(c, (int)gm_type_size(t));
    switch (t) {
    case 1: return (int8_t)u;
    case 3: return (int16_t)u;
    case 5: return (int32_t)u;
    case 11: return (double)(int64_t)u;
    case 6: { float f; uint32_t w = (uint32_t)u; memcpy(&f, &w, 4); return f; }
    case 12: { double d; memcpy(&d, &u, 8); return d; }
    default: return (double)u;
    }
}

static void gm_skip(gm_cur *c, uint32_t t) {
    if (t == 8) { uint64_t n = gm_u(c, 8); c->p += n; if (c->p > c->end) c->ok = 0; return; }
    if (t == 9) {
        uint32_t et = (uint32_t)gm_u(c, 4);
        uint64_t n = gm_u(c, 8);
        for (uint64_t i = 0; i < n && c->ok; i++) gm_skip(c, et);
        return;
    }
    c->p += gm_type_size(t);
    if (c->p > c->end) c->ok = 0;
}

static int gm_open(const char *path, gm_file *f) {
    memset(f, 0, sizeof *f);
    f->alignment = 32;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return -1; }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    f->base = m;
    gm_cur c = {f->base, f->base + f->size, 1};
    if (gm_u(&c, 4) != 0x46554747u) return -1;  // "GGUF"
    if (gm_u(&c, 4) < 2) return -1;
    f->n_tensors = gm_u(&c, 8);
    uint64_t n_kv = gm_u(&c, 8);
    for (uint64_t i = 0; i < n_kv && c.ok; i++) {
        uint64_t kl = gm_u(&c, 8);
        char key[128] = {0};
        if (c.p + kl > c.end) return -1;
        memcpy(key, c.p, kl < 127 ? kl : 127);
        c.p += kl;
        uint32_t t = (uint32_t)gm_u(&c, 4);
        if (t == 8 || t == 9 || gm_type_size(t) == 0) { gm_skip(&c, t); continue; }
        double v = gm_num(&c, t);
        const char *k = strchr(key, '.') ? strchr(key, '.') + 1 : key;
        if (!strcmp(key, "general.alignment")) f->alignment = (uint32_t)v;
        else if (!strcmp(k, "block_count")) f->block_count = (int64_t)v;
        else if (!strcmp(k, "embedding_length")) f->embedding_length = (int64_t)v;
        else if (!strcmp(k, "feed_forward_length")) f->ff_length = (int64_t)v;
        else if (!strcmp(k, "attention.head_count")) f->head_count = (int64_t)v;
        else if (!strcmp(k, "attention.head_count_kv")) f->head_count_kv = (int64_t)v;
        else if (!strcmp(k, "context_length")) f->ctx_len = (int64_t)v;
        else if (!strcmp(k, "rope.dimension_count")) f->rope_dim = (int64_t)v;
        else if (!strcmp(k, "rope.freq_base")) f->rope_freq_base = v;
        else if (!strcmp(k, "attention.layer_norm_rms_epsilon")) f->rms_eps = v;
        else if (!strcmp(k, "vocab_size")) f->vocab_size = (int64_t)v;
    }
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    for (uint64_t i = 0; i < f->n_tensors && c.ok; i++) {
        gm_tensor *t = &f->tensors[i];
        uint64_t nl = gm_u(&c, 8);
        if (c.p + nl > c.end) return -1;
        memcpy(t->name, c.p, nl < 95 ? nl : 95);
        c.p += nl;
        t->n_dims = (uint32_t)gm_u(&c, 4);
        for (uint32_t d = 0; d < t->n_dims && d < 4; d++) t->dims[d] = gm_u(&c, 8);
        t->type = (uint32_t)gm_u(&c, 4);
        t->offset = gm_u(&c, 8);
    }
    if (!c.ok) return -1;
    size_t pos = (size_t)(c.p - f->base);
    size_t data = (pos + f->alignment - 1) / f->alignment * f->alignment;
    for (uint64_t i = 0; i < f->n_tensors; i++) f->tensors[i].data = f->base + data + f->tensors[i].offset;
    return 0;
}

static const gm_tensor *gm_find(const gm_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

#endif
