/* GEMM rates on this machine: BLIS's own sgemm on plain row-major operands
 * (the baseline every mtxc speed figure is a ratio of), and mtx_sgemm on the
 * strided and transposed views a training step uses. Prints medians.
 * Usage: gemm_rate [M N K ...]   (default: the shapes of gpt2-124m, B=4 T=256) */
#include <stdio.h>
#include <stdlib.h>

#include "mtxrt.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median GFLOP/s of C[m,n] = op(A) op(B) over several runs. */
static double rate(int m, int n, int k, int ta, int tb)
{
    float *a = mtx_alloc(sizeof(float) * (size_t)m * k), *b = mtx_alloc(sizeof(float) * (size_t)k * n);
    float *c = mtx_alloc(sizeof(float) * (size_t)m * n);
    mtx_fill_normal(a, (size_t)m * k, mtx_rng_seed(1), 1);
    mtx_fill_normal(b, (size_t)k * n, mtx_rng_seed(2), 1);
    double t[7];
    double flops = 2.0 * m * n * k;
    int reps = flops > 2e10 ? 1 : (int)(2e10 / flops) + 1;
    for (int r = 0; r < 7; r++) {
        double t0 = mtx_seconds();
        for (int i = 0; i < reps; i++)
            mtx_sgemm(0, 0, m, n, k, 1, a, ta ? 1 : k, ta ? m : 1, b, tb ? 1 : n, tb ? k : 1, 0, c, n, 1);
        t[r] = (mtx_seconds() - t0) / reps;
    }
    qsort(t, 7, sizeof t[0], cmp);
    mtx_free(a);
    mtx_free(b);
    mtx_free(c);
    return flops / t[3] / 1e9;
}

int main(int argc, char **argv)
{
    int shapes[16][3] = {{1024, 768, 768}, {1024, 3072, 768}, {1024, 768, 3072}, {1024, 50304, 768}, {256, 256, 64}};
    int nshapes = 5;
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
    return 0;
}
