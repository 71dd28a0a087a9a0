// sr-bandwidth.c - STREAM-like memory bandwidth of this machine, for the decode bound
// (weight bytes read per token / bandwidth). Kernels over arrays much larger than the caches:
//   read   s += a[i]               (what decode does to the weights: read-only streaming)
//   read4  the same with 4 concurrent streams per thread (as a kernel reading several weight
//          rows at once does); the larger of the two is the decode bandwidth
//   copy   c[i] = a[i]             (STREAM counts 2 x 8 bytes per element)
//   triad  a[i] = b[i] + q * c[i]  (3 x 8 bytes per element)
// Each kernel runs with 1..T threads (each thread a contiguous slice, pinned to a CPU, arrays
// first-touched by their owner) and reports the best of R runs, as STREAM does, plus the median.
//
// Build: make -C bench   Run: bench/build/sr-bandwidth [-t threads] [-s MiB per array] [-r runs]
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int ith, nth, kernel, cpu;
    double *a, *b, *c;
    size_t n;
    double sum;
    pthread_barrier_t *start, *done;
    volatile int *quit;
} worker;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_kernel(worker *w) {
    const size_t i0 = w->n * (size_t)w->ith / (size_t)w->nth, i1 = w->n * (size_t)(w->ith + 1) / (size_t)w->nth;
    double *a = w->a, *b = w->b, *c = w->c;
    switch (w->kernel) {
    case 0: {  // first touch
        for (size_t i = i0; i < i1; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.5; }
        break;
    }
    case 1: {  // read: integer sum of the bits (vectorizes; the adds never limit the loop)
        const uint64_t *u = (const uint64_t *)a;
        uint64_t s = 0;
        for (size_t i = i0; i < i1; i++) s += u[i];
        w->sum += (double)(s & 1u);   // keeps the loop alive
        break;
    }
    case 4: {  // read, 4 streams per thread (quarters of the slice): more misses in flight
        const uint64_t *u = (const uint64_t *)a;
        const size_t q = (i1 - i0) / 4;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = i0; i < i0 + q; i++) { s0 += u[i]; s1 += u[i + q]; s2 += u[i + 2 * q]; s3 += u[i + 3 * q]; }
        for (size_t i = i0 + 4 * q; i < i1; i++) s0 += u[i];
        w->sum += (double)((s0 ^ s1 ^ s2 ^ s3) & 1u);
        break;
    }
    case 2:
        for (size_t i = i0; i < i1; i++) c[i] = a[i];
        break;
    case 3:
        for (size_t i = i0; i < i1; i++) a[i] = b[i] + 3.0 * c[i];
        break;
    }
}

static void *thread_main(void *arg) {
    worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    for (;;) {
        pthread_barrier_wait(w->start);
        if (*w->quit) break;
        run_kernel(w);
        pthread_barrier_wait(w->done);
    }
    return NULL;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv) {
    int max_threads = (int)sysconf(_SC_NPROCESSORS_ONLN), runs = 10;
    size_t mib = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) max_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-s")) mib = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) runs = atoi(argv[i + 1]);
    }
    if (runs < 1) runs = 1;
    if (runs > 100) runs = 100;
    const size_t n = mib * 1024 * 1024 / sizeof(double);
    double *a = aligned_alloc(64, n * sizeof(double)), *b = aligned_alloc(64, n * sizeof(double)),
           *c = aligned_alloc(64, n * sizeof(double));
    if (!a || !b || !c) { fprintf(stderr, "sr-bandwidth: out of memory\n"); return 1; }
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    int cpus[1024], n_cpus = 0;
    for (int i = 0; i < CPU_SETSIZE && n_cpus < 1024; i++)
        if (CPU_ISSET(i, &allowed)) cpus[n_cpus++] = i;
    printf("# sr-bandwidth: 3 arrays of %zu MiB, best and median of %d runs, GB/s (1e9 bytes/s)\n", mib, runs);
    printf("threads  read(best)  read(median)  read4(best)  read4(median)  copy(best)  triad(best)\n");
    for (int nth = 1; nth <= max_threads; nth++) {
        pthread_barrier_t start, done;
        pthread_barrier_init(&start, NULL, (unsigned)nth);
        pthread_barrier_init(&done, NULL, (unsigned)nth);
        volatile int quit = 0;
        worker *ws = calloc((size_t)nth, sizeof *ws);
        pthread_t *th = calloc((size_t)nth, sizeof *th);
        for (int i = 0; i < nth; i++) {
            ws[i] = (worker){.ith = i, .nth = nth, .cpu = nth <= n_cpus ? cpus[i] : -1, .a = a, .b = b, .c = c,
                             .n = n, .start = &start, .done = &done, .quit = &quit};
            if (i > 0) pthread_create(&th[i], NULL, thread_main, &ws[i]);
        }
        if (ws[0].cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(ws[0].cpu, &set);
            pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        }
        double best[5] = {0}, med[5] = {0};
        for (int k = 0; k < 5; k++) {
            double gbs[100];
            const int reps = k == 0 ? 1 : runs;
            for (int r = 0; r < reps; r++) {
                for (int i = 0; i < nth; i++) ws[i].kernel = k;
                double t0 = now_s();
                pthread_barrier_wait(&start);
                run_kernel(&ws[0]);
                pthread_barrier_wait(&done);
                double dt = now_s() - t0;
                const double bytes = (double)n * sizeof(double) * (k == 1 || k == 4 ? 1 : k == 2 ? 2 : 3);
                gbs[r] = bytes / dt / 1e9;
            }
            qsort(gbs, (size_t)reps, sizeof(double), cmp_d);
            best[k] = gbs[reps - 1];
            med[k] = gbs[reps / 2];
        }
        quit = 1;
        pthread_barrier_wait(&start);
        for (int i = 1; i < nth; i++) pthread_join(th[i], NULL);
        double chk = 0;
        for (int i = 0; i < nth; i++) chk += ws[i].sum;
        printf("%7d  %10.2f  %12.2f  %11.2f  %13.2f  %10.2f  %11.2f\n", nth, best[1], med[1], best[4], med[4], best[2],
               best[3] + 0.0 * chk);
        pthread_barrier_destroy(&start);
        pthread_barrier_destroy(&done);
        free(ws);
        free(th);
    }
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < n_cpus; i++) CPU_SET(cpus[i], &all);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
    free(a); free(b); free(c);
    return 0;
}
