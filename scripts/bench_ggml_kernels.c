// ggml's own CPU dot-product kernels on the same matrices as perch-quant's criterion bench
// (benches/kernels.rs): a 4096-element row dot product in L1, and matrix x vector over a
// ~64 MiB weight matrix on 1 and 2 threads, through the public type_traits_cpu table.
// Built and run by scripts/bench_ggml_kernels.sh. Prints one line per measurement.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

#define COLS 4096
#define MATRIX_BYTES (64u << 20)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// CPU time of this thread: single-thread numbers stay comparable on a shared machine.
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

struct job {
    ggml_vec_dot_t dot;
    const uint8_t *w;
    size_t row_bytes;
    const void *x;
    float *out;
    int r0, r1;
};

static void *run(void *p) {
    struct job *j = p;
    for (int r = j->r0; r < j->r1; r++) {
        j->dot(COLS, &j->out[r], 0, j->w + (size_t)r * j->row_bytes, 0, j->x, 0, 1);
    }
    return NULL;
}

static void matvec(struct job *base, int rows, int threads) {
    pthread_t th[8];
    struct job jobs[8];
    int chunk = (rows + threads - 1) / threads;
    for (int t = 0; t < threads; t++) {
        jobs[t] = *base;
        jobs[t].r0 = t * chunk;
        jobs[t].r1 = (t + 1) * chunk < rows ? (t + 1) * chunk : rows;
        if (t > 0) pthread_create(&th[t], NULL, run, &jobs[t]);
    }
    run(&jobs[0]);
    for (int t = 1; t < threads; t++) pthread_join(th[t], NULL);
}

int main(int argc, char **argv) {
    ggml_cpu_init();
    for (int a = 1; a < argc; a++) {
        enum ggml_type ty = GGML_TYPE_COUNT;
        for (int t = 0; t < GGML_TYPE_COUNT; t++) {
            const char *name = ggml_type_name(t);
            if (name && strcmp(name, argv[a]) == 0) ty = t;
        }
        if (ty == GGML_TYPE_COUNT) { fprintf(stderr, "unknown type %s\n", argv[a]); return 1; }
        const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(ty);
        const struct ggml_type_traits_cpu *act = ggml_get_type_traits_cpu(tr->vec_dot_type);
        size_t row_bytes = ggml_row_size(ty, COLS);
        int rows = (int)(MATRIX_BYTES / row_bytes) / 64 * 64;
        float *f = malloc(sizeof(float) * COLS);
        uint32_t s = 0x2545f491u;
        for (int i = 0; i < COLS; i++) {
            s ^= s << 13; s ^= s >> 17; s ^= s << 5;
            f[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
        }
        float *imat = malloc(sizeof(float) * COLS);
        for (int i = 0; i < COLS; i++) imat[i] = 1.0f;
        uint8_t *w = malloc(row_bytes * rows);
        ggml_quantize_chunk(ty, f, w, 0, 1, COLS, ggml_quantize_requires_imatrix(ty) ? imat : NULL);
        for (int r = 1; r < rows; r++) memcpy(w + (size_t)r * row_bytes, w, row_bytes);
        void *x = malloc(ggml_row_size(tr->vec_dot_type, COLS));
        float *xf = malloc(sizeof(float) * COLS);
        for (int i = 0; i < COLS; i++) xf[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
        act->from_float(xf, x, COLS);
        float *out = malloc(sizeof(float) * rows);
        struct job base = {tr->vec_dot, w, row_bytes, x, out, 0, rows};

        // Dot product in L1.
        int iters = 200000;
        float sink = 0;
        double t0 = now();
        double c0 = cpu_now();
        for (int i = 0; i < iters; i++) {
            float v;
            tr->vec_dot(COLS, &v, 0, w, 0, x, 0, 1);
            sink += v;
        }
        double dt = (now() - t0) / iters;
        double dc = (cpu_now() - c0) / iters;
        printf("ggml %-8s dot/l1        %8.2f GB/s  %10.0f rows/s  (%.1f ns/row) %g\n", argv[a],
               row_bytes / dt / 1e9, 1 / dt, dt * 1e9, sink * 0);
        printf("ggml %-8s dot/l1-cpu    %8.2f GB/s  %10.0f rows/s  (%.1f ns/row)\n", argv[a],
               row_bytes / dc / 1e9, 1 / dc, dc * 1e9);
        for (int threads = 1; threads <= 2; threads++) {
            matvec(&base, rows, threads);  // warm up
            int n = 0;
            t0 = now();
            do { matvec(&base, rows, threads); n++; } while (now() - t0 < 2.0);
            dt = (now() - t0) / n;
            printf("ggml %-8s matvec %dx%d %dt %8.2f GB/s  %10.0f rows/s\n", argv[a], rows, COLS,
                   threads, row_bytes * (double)rows / dt / 1e9, rows / dt);
            if (threads == 1) {
                n = 0;
                c0 = cpu_now();
                t0 = now();
                do { matvec(&base, rows, 1); n++; } while (now() - t0 < 2.0);
                dc = (cpu_now() - c0) / n;
                printf("ggml %-8s matvec %dx%d 1t-cpu %8.2f GB/s  %10.0f rows/s\n", argv[a], rows,
                       COLS, row_bytes * (double)rows / dc / 1e9, rows / dc);
            }
        }
        fflush(stdout);
        free(f); free(imat); free(w); free(x); free(xf); free(out);
    }
    return 0;
}
