/* GEMM through BLIS's typed API, which takes any row and column stride:
 * transposed and strided operands (attention heads, backward passes) need no copies. */
#define _GNU_SOURCE                     /* sched_getaffinity, CPU_COUNT */
#include "mtxrt.h"

#include <blis.h>
#include <sched.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

typedef struct {
    int trans_a, trans_b, m, n, k, by_rows;
    float alpha, beta;
    const float *a, *b;
    float *c;
    ptrdiff_t rs_a, cs_a, rs_b, cs_b, rs_c, cs_c;
} Sgemm;

/* Rows [first, end) of C (by_rows), or its columns, on this thread: BLIS
 * single-threaded. Each element of C is computed the same way in any piece
 * (BLIS splits neither k nor its micro-tiles' order), so the bits do not
 * depend on the split. */
static void sgemm_piece(void *ctx, size_t first, size_t end)
{
    const Sgemm *g = ctx;
    int count = (int)(end - first);
    if (count <= 0) return;
    const float *a = g->a, *b = g->b;
    float *c = g->c;
    int m = g->m, n = g->n;
    if (g->by_rows) {   /* row i of op(A) is row i of A, or its column i when transposed */
        a += (ptrdiff_t)first * (g->trans_a ? g->cs_a : g->rs_a);
        c += (ptrdiff_t)first * g->rs_c;
        m = count;
    } else {
        b += (ptrdiff_t)first * (g->trans_b ? g->rs_b : g->cs_b);
        c += (ptrdiff_t)first * g->cs_c;
        n = count;
    }
    float alpha = g->alpha, beta = g->beta;
    bli_sgemm(g->trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, g->trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              m, n, g->k, &alpha, (float *)a, g->rs_a, g->cs_a, (float *)b, g->rs_b, g->cs_b,
              &beta, c, g->rs_c, g->cs_c);
}

void mtx_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
               const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float beta,
               float *c, ptrdiff_t rs_c, ptrdiff_t cs_c)
{
    if (m <= 0 || n <= 0) return;
    pthread_once(&blis_once, choose_blis_kernels);
    if (m == 1) {   /* one row (a decoding step): BLIS's gemv, several times its sgemm at m = 1 */
        bli_sgemv(BLIS_NO_TRANSPOSE, BLIS_NO_CONJUGATE, n, k, &alpha, (float *)b, trans_b ? rs_b : cs_b,
                  trans_b ? cs_b : rs_b, (float *)a, trans_a ? rs_a : cs_a, &beta, c, cs_c);
        return;
    }
    /* split the longer side of C: blocks of BLIS's skx micro-tile (32 x 12) */
    Sgemm g = {trans_a, trans_b, m, n, k, m >= n, alpha, beta, a, b, c, rs_a, cs_a, rs_b, cs_b, rs_c, cs_c};
    mtx_parallel(sgemm_piece, &g, (size_t)(g.by_rows ? m : n), g.by_rows ? 32 : 48,
                 2.0 * m * n * k * MTX_COST_FLOP_NS);
}

static int num_threads;

/* ceil(quota / period) of a cgroup CPU limit, or 0 when none is set (v2's
 * cpu.max "max 100000" or "200000 100000"; v1's cfs_quota_us -1 when unlimited). */
static long cgroup_cpus(void)
{
    long long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32];
        if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max")) quota = strtoll(q, NULL, 10);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) {
        if (fscanf(f, "%lld", &quota) != 1) quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r"))) {
            if (fscanf(f, "%lld", &period) != 1) period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    return (long)((quota + period - 1) / period);
}

int mtx_available_cpus(int *bound)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN), n = online;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
    if (bound) *bound = n < online;
    long quota = cgroup_cpus();
    if (quota > 0 && quota < n) n = quota;
    return n > 0 ? (int)n : 1;
}

/* The pool's size. BLIS and OpenMP (oneDNN's threading) stay at one thread:
 * parallel.c splits their work into pieces itself. */
static void set_threads(int n)
{
    num_threads = n > 0 ? n : 1;
    bli_thread_set_num_threads(1);
    omp_set_num_threads(1);
}

int mtx_num_threads(void)
{
    pthread_once(&blis_once, choose_blis_kernels);
    if (!num_threads) {
        const char *env = getenv("MTX_NUM_THREADS");
        long n = env ? strtol(env, NULL, 10) : mtx_available_cpus(NULL);
        set_threads(n > 0 && n <= 256 ? (int)n : n > 256 ? 256 : 1);
    }
    return num_threads;
}

void mtx_set_num_threads(int n)
{
    pthread_once(&blis_once, choose_blis_kernels);
    set_threads(n);
}

/* This machine's sgemm (or bf16 matmul) rate at the current thread count, in
 * FLOP/s: the best of a few 1024^3 products, measured once and cached under
 * $XDG_CACHE_HOME (or ~/.cache)/mtxc/, since it costs a second. */
double mtx_measured_peak_flops(int bf16)
{
    int threads = mtx_num_threads();
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[4096] = "", path[4200] = "";
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/mtxc", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/mtxc", home);
    if (dir[0]) {
        snprintf(path, sizeof path, "%s/%s-flops-%d-threads", dir, bf16 ? "bf16-matmul" : "sgemm", threads);
        FILE *f = fopen(path, "r");
        double cached = 0;
        if (f) {
            int ok = fscanf(f, "%lf", &cached) == 1;
            fclose(f);
            if (ok && cached > 0) return cached;
        }
    }
    enum { N = 1024 };
    float *a = mtx_alloc(sizeof(float) * N * N), *b = mtx_alloc(sizeof(float) * N * N), *c = mtx_alloc(sizeof(float) * N * N);
    mtx_fill_normal(a, N * N, mtx_rng_seed(1), 1);
    mtx_fill_normal(b, N * N, mtx_rng_seed(2), 1);
    mtx_gemm_plan *plan = bf16 ? mtx_gemm_plan_new(N, N, N, N, 1, N, 1, N, 1, 1.0f) : NULL;
    mtx_bf16 *ha = plan ? mtx_alloc(sizeof(mtx_bf16) * N * N) : NULL, *hb = plan ? mtx_alloc(sizeof(mtx_bf16) * N * N) : NULL;
    if (plan) mtx_convert_to_bf16(ha, a, N * N), mtx_convert_to_bf16(hb, b, N * N);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = mtx_seconds();
        if (plan) mtx_gemm_bf16(plan, ha, hb, c);
        else mtx_sgemm(0, 0, N, N, N, 1, a, N, 1, b, N, 1, 0, c, N, 1);
        double dt = mtx_seconds() - t0;
        if (dt > 0 && 2.0 * N * N * N / dt > best) best = 2.0 * N * N * N / dt;
    }
    mtx_gemm_plan_free(plan);
    mtx_free(ha);
    mtx_free(hb);
    mtx_free(a);
    mtx_free(b);
    mtx_free(c);
    if (path[0]) {
        char parent[4200];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash) {
            *slash = 0;
            mkdir(parent, 0755);
        }
        mkdir(dir, 0755);
        char tmp[4300];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (f && fprintf(f, "%.6g\n", best) > 0 && fclose(f) == 0) rename(tmp, path);
        else if (f) fclose(f);
        unlink(tmp);
    }
    return best;
}
