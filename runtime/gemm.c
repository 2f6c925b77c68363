/* GEMM through BLIS's typed API, which takes any row and column stride:
 * transposed and strided operands (attention heads, backward passes) need no copies. */
#include "mtxrt.h"

#include <blis.h>
#include <stdlib.h>
#include <unistd.h>

void mtx_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
               const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float beta,
               float *c, ptrdiff_t rs_c, ptrdiff_t cs_c)
{
    if (m <= 0 || n <= 0) return;
    bli_sgemm(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              m, n, k, &alpha, (float *)a, rs_a, cs_a, (float *)b, rs_b, cs_b,
              &beta, c, rs_c, cs_c);
}

static int num_threads;

int mtx_num_threads(void)
{
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
    num_threads = n > 0 ? n : 1;
    bli_thread_set_num_threads(num_threads);
}
