/*
 * ggml_quant_ref: a throwaway command-line wrapper around llama.cpp's own ggml-quants.c,
 * used only by scripts/gen_quant_refs.py to record reference data from the peer.
 * It is never built by cargo and never shipped. Build (outside the repo):
 *
 *   G=<llama.cpp>/ggml
 *   cc -O2 -std=gnu11 -I$G/include -I$G/src -I$G/src/ggml-cpu scripts/ggml_quant_ref.c \
 *      $G/src/ggml-quants.c -o /tmp/ggml_quant_ref -lm
 *
 * (-O2 without -march=native / -ffast-math, so the compiler contracts nothing into FMAs;
 * the peer's own libggml-base, where llama-quantize's ggml-quants.c lives, is built the
 * same way: -O3 with no -march flag.)
 *
 * Usage:
 *   ggml_quant_ref dequant  TYPE_ID N_ELEMENTS IN_BLOCKS OUT_F32
 *   ggml_quant_ref quantize TYPE_ID N_ROWS N_PER_ROW IN_F32 IMATRIX_F32|- OUT_BLOCKS
 * "quantize" calls quantize_<type>(src, dst, n_rows, n_per_row, imatrix) (the function
 * llama-quantize calls), or quantize_row_<type>_ref for Q8_1 and Q8_K, which have no
 * quantize_<type>.
 */
#define GGML_COMMON_DECL_C
#include "ggml-common.h"
#include "ggml-quants.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

/* ggml-base symbols that ggml-quants.c references; nothing here is reached on valid input. */
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list ap; va_start(ap, fmt);
    fprintf(stderr, "ggml_abort %s:%d: ", file, line); vfprintf(stderr, fmt, ap); fputc('\n', stderr);
    va_end(ap); abort();
}
void ggml_log_internal(int level, const char * fmt, ...) { (void) level; (void) fmt; }
static size_t type_size(int t, int * bs);
int64_t ggml_blck_size(enum ggml_type t) { int bs; type_size((int) t, &bs); return bs; }
size_t ggml_type_size(enum ggml_type t) { int bs; return type_size((int) t, &bs); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { return ggml_type_size(t) * ne / ggml_blck_size(t); }
const char * ggml_type_name(enum ggml_type t) { (void) t; return "?"; }

static void * read_file(const char * path, size_t * len) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END); *len = (size_t) ftell(f); fseek(f, 0, SEEK_SET);
    void * buf = malloc(*len ? *len : 1);
    if (fread(buf, 1, *len, f) != *len) { perror(path); exit(2); }
    fclose(f);
    return buf;
}

static void write_file(const char * path, const void * buf, size_t len) {
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) { perror(path); exit(2); }
    fclose(f);
}

typedef void (*deq_fn)(const void *, float *, int64_t);
typedef size_t (*q_fn)(const float *, void *, int64_t, int64_t, const float *);
typedef void (*qref_fn)(const float *, void *, int64_t);

static deq_fn dequantizer(int t, size_t * tsize, int * bsize) {
#define D(id, fn, ts, bs) case id: *tsize = ts; *bsize = bs; return (deq_fn) fn;
    switch (t) {
        D(2, dequantize_row_q4_0, 18, 32) D(3, dequantize_row_q4_1, 20, 32)
        D(6, dequantize_row_q5_0, 22, 32) D(7, dequantize_row_q5_1, 24, 32)
        D(8, dequantize_row_q8_0, 34, 32)
        D(10, dequantize_row_q2_K, 84, 256) D(11, dequantize_row_q3_K, 110, 256)
        D(12, dequantize_row_q4_K, 144, 256) D(13, dequantize_row_q5_K, 176, 256)
        D(14, dequantize_row_q6_K, 210, 256) D(15, dequantize_row_q8_K, 292, 256)
        D(16, dequantize_row_iq2_xxs, 66, 256) D(17, dequantize_row_iq2_xs, 74, 256)
        D(18, dequantize_row_iq3_xxs, 98, 256) D(19, dequantize_row_iq1_s, 50, 256)
        D(20, dequantize_row_iq4_nl, 18, 32) D(21, dequantize_row_iq3_s, 110, 256)
        D(22, dequantize_row_iq2_s, 82, 256) D(23, dequantize_row_iq4_xs, 136, 256)
        D(29, dequantize_row_iq1_m, 56, 256)
        D(34, dequantize_row_tq1_0, 54, 256) D(35, dequantize_row_tq2_0, 66, 256)
        D(39, dequantize_row_mxfp4, 17, 32) D(40, dequantize_row_nvfp4, 36, 64)
        D(41, dequantize_row_q1_0, 18, 128) D(42, dequantize_row_q2_0, 18, 64)
    }
#undef D
    fprintf(stderr, "no dequantizer for type %d\n", t); exit(2);
}

static void quantize(int t, const float * src, void * dst, int64_t nrows, int64_t n, const float * im) {
    switch (t) {
        case 9:  for (int64_t r = 0; r < nrows; r++) quantize_row_q8_1_ref(src + r*n, (block_q8_1 *) dst + r*(n/32), n); return;
        case 15: for (int64_t r = 0; r < nrows; r++) quantize_row_q8_K_ref(src + r*n, (block_q8_K *) dst + r*(n/256), n); return;
    }
    q_fn f = NULL;
    switch (t) {
        case 2: f = quantize_q4_0; break;   case 3: f = quantize_q4_1; break;
        case 6: f = quantize_q5_0; break;   case 7: f = quantize_q5_1; break;
        case 8: f = quantize_q8_0; break;
        case 10: f = quantize_q2_K; break;  case 11: f = quantize_q3_K; break;
        case 12: f = quantize_q4_K; break;  case 13: f = quantize_q5_K; break;
        case 14: f = quantize_q6_K; break;
        case 20: f = quantize_iq4_nl; break; case 23: f = quantize_iq4_xs; break;
        case 34: f = quantize_tq1_0; break; case 35: f = quantize_tq2_0; break;
        case 39: f = quantize_mxfp4; break;
        case 41: f = quantize_q1_0; break;  case 42: f = quantize_q2_0; break;
    }
    if (!f) { fprintf(stderr, "no quantizer for type %d\n", t); exit(2); }
    f(src, dst, nrows, n, im);
}

static size_t type_size(int t, int * bs) { size_t ts; dequantizer(t == 9 ? 8 : t, &ts, bs); return t == 9 ? 36 : ts; }

int main(int argc, char ** argv) {
    if (argc == 6 && !strcmp(argv[1], "dequant")) {
        int t = atoi(argv[2]); int64_t n = atoll(argv[3]);
        size_t ts; int bs; deq_fn f = dequantizer(t, &ts, &bs);
        size_t len; void * in = read_file(argv[4], &len);
        if (n % bs || len != (size_t)(n / bs) * ts) { fprintf(stderr, "size mismatch\n"); return 2; }
        float * out = malloc(sizeof(float) * (n ? n : 1));
        f(in, out, n);
        write_file(argv[5], out, sizeof(float) * n);
        return 0;
    }
    if (argc == 8 && !strcmp(argv[1], "quantize")) {
        int t = atoi(argv[2]); int64_t nrows = atoll(argv[3]), n = atoll(argv[4]);
        int bs; size_t ts = type_size(t, &bs);
        size_t len; float * src = read_file(argv[5], &len);
        if (n % bs || len != sizeof(float) * nrows * n) { fprintf(stderr, "size mismatch\n"); return 2; }
        float * im = NULL;
        if (strcmp(argv[6], "-")) {
            size_t ilen; im = read_file(argv[6], &ilen);
            if (ilen != sizeof(float) * n) { fprintf(stderr, "imatrix size mismatch\n"); return 2; }
        }
        size_t out_len = (size_t)(nrows * (n / bs)) * ts;
        void * dst = calloc(out_len ? out_len : 1, 1);
        quantize(t, src, dst, nrows, n, im);
        write_file(argv[7], dst, out_len);
        return 0;
    }
    fprintf(stderr, "usage: see the comment at the top of ggml_quant_ref.c\n");
    return 2;
}
