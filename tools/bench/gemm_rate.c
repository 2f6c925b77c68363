/* GEMM rates on this machine: BLIS's own sgemm on plain row-major operands
 * (the baseline every mtxc speed figure is a ratio of), and mtx_sgemm on the
 * strided and transposed views a training step uses; with --bf16, oneDNN's
 * bf16 matmul (bf16 in and out, float32 accumulation) through libmtxrt's
 * plans, and the implementation oneDNN chose. Prints medians.
 * Usage: gemm_rate [--bf16] [M N K ...]   (default: the shapes of gpt2-124m, B=4 T=256) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtxrt.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bf16;                  /* --bf16: oneDNN's bf16 matmul instead of BLIS's sgemm */
static char impl[128];

/* Median GFLOP/s of C[m,n] = op(A) op(B) over several runs. */
static double rate(int m, int n, int k, int ta, int tb)
{
    float *a = mtx_alloc(sizeof(float) * (size_t)m * k), *b = mtx_alloc(sizeof(float) * (size_t)k * n);
    float *c = mtx_alloc(sizeof(float) * (size_t)m * n);
    mtx_fill_normal(a, (size_t)m * k, mtx_rng_seed(1), 1);
    mtx_fill_normal(b, (size_t)k * n, mtx_rng_seed(2), 1);
    mtx_bf16 *ha = (mtx_bf16 *)a, *hb = (mtx_bf16 *)b;    /* bf16 copies in place: the first halves */
    for (size_t i = 0; bf16 && i < (size_t)m * k; i++) ha[i] = mtx_f32_to_bf16(a[i]);
    for (size_t i = 0; bf16 && i < (size_t)k * n; i++) hb[i] = mtx_f32_to_bf16(b[i]);
    mtx_gemm_plan *plan = bf16 ? mtx_gemm_plan_new(m, n, k, ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1, n, 0, 1) : NULL;
    if (plan) snprintf(impl, sizeof impl, "%s", mtx_gemm_plan_impl(plan));
    double t[7];
    double flops = 2.0 * m * n * k;
    int reps = flops > 2e10 ? 1 : (int)(2e10 / flops) + 1;
    for (int r = 0; r < 7; r++) {
        double t0 = mtx_seconds();
        for (int i = 0; i < reps; i++)
            if (plan) mtx_gemm_bf16(plan, ha, hb, c);
            else mtx_sgemm(0, 0, m, n, k, 1, a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, 0, c, n, 1);
        t[r] = (mtx_seconds() - t0) / reps;
    }
    qsort(t, 7, sizeof t[0], cmp);
    mtx_gemm_plan_free(plan);
    mtx_free(a);
    mtx_free(b);
    mtx_free(c);
    return flops / t[3] / 1e9;
}

int main(int argc, char **argv)
{
    int shapes[16][3] = {{1024, 768, 768}, {1024, 3072, 768}, {1024, 768, 3072}, {1024, 50304, 768}, {256, 256, 64}};
    int nshapes = 5;
    if (argc > 1 && !strcmp(argv[1], "--bf16")) bf16 = 1, argc--, argv++;
    if (argc > 3) {
        nshapes = 0;
        for (int i = 1; i + 2 < argc && nshapes < 16; i += 3, nshapes++)
            for (int j = 0; j < 3; j++) shapes[nshapes][j] = atoi(argv[i + j]);
    }
    printf("threads: %d\n%-22s %10s %10s %10s %10s\n", mtx_num_threads(), "M x N x K", "NN", "NT", "TN", "TT");
    for (int s = 0; s < nshapes; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        printf("%6d x %6d x %5d  %10.1f %10.1f %10.1f %10.1f GFLOP/s\n", m, n, k, rate(m, n, k, 0, 0),
               rate(m, n, k, 0, 1), rate(m, n, k, 1, 0), rate(m, n, k, 1, 1));
        fflush(stdout);
    }
    if (bf16) printf("bf16 matmul: %s\n", impl);
    return 0;
}
