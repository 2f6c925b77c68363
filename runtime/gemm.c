/* GEMM through BLIS's typed API, which takes any row and column stride:
 * transposed and strided operands (attention heads, backward passes) need no copies. */
#include "mtxrt.h"

#include <blis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* BLIS picks its kernels from the CPU model; Debian's BLIS 0.9 does not know
 * Zen 4 and falls back to 'generic' (about 5x slower here). Unless the user
 * chose with BLIS_ARCH_TYPE, ask for the best sub-configuration the CPU's
 * instruction set can run: skx (AVX-512), else zen3 (AVX2 + FMA). BLIS reads
 * BLIS_ARCH_TYPE as a number, the index of the name in its own list. */
static void choose_blis_kernels(void)
{
    if (getenv("BLIS_ARCH_TYPE")) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        want = "skx";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "zen3";
    for (int id = 0; want && id < BLIS_NUM_ARCHS; id++) {
        const char *name = bli_arch_string((arch_t)id);
        if (name && !strcmp(name, want)) {
            char num[16];
            snprintf(num, sizeof num, "%d", id);
            setenv("BLIS_ARCH_TYPE", num, 0);
            return;
        }
    }
}

static pthread_once_t blis_once = PTHREAD_ONCE_INIT;

void mtx_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
               const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float beta,
               float *c, ptrdiff_t rs_c, ptrdiff_t cs_c)
{
    if (m <= 0 || n <= 0) return;
    pthread_once(&blis_once, choose_blis_kernels);
    bli_sgemm(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              m, n, k, &alpha, (float *)a, rs_a, cs_a, (float *)b, rs_b, cs_b,
              &beta, c, rs_c, cs_c);
}

static int num_threads;

int mtx_num_threads(void)
{
    pthread_once(&blis_once, choose_blis_kernels);
    if (!num_threads) {
        const char *env = getenv("MTX_NUM_THREADS");
        long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
        num_threads = n > 0 ? (int)n : 1;
        bli_thread_set_num_threads(num_threads);
    }
    return num_threads;
}

void mtx_set_num_threads(int n)
{
    pthread_once(&blis_once, choose_blis_kernels);
    num_threads = n > 0 ? n : 1;
    bli_thread_set_num_threads(num_threads);
}
