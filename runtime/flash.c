/* Fused causal attention (FlashAttention-2): query blocks against key/value
 * blocks with a running max and sum, so no T x T tensor exists. The forward
 * writes the output and one log-sum-exp per row; the backward recomputes
 * the probabilities block by block from q, k and that log-sum-exp.
 *
 * q, o [b, t, hq, dh]; k, v [b, t, hkv, dh]; lse [b, hq, t] in float32.
 * Query head h reads kv head h / (hq / hkv). Key j is visible to query i iff
 * j <= i and, with a window w > 0, j > i - w (MaxText's sliding window).
 * Blocks with no visible key are skipped. Each task (a query block of one
 * head; in the backward's second pass a key block of one kv head) is done by
 * one thread in a fixed order, so the numbers do not depend on the thread
 * count: dq comes from a pass over query blocks, dk and dv from a pass over
 * key blocks, each recomputing the scores it needs. bf16 operands are
 * widened as blocks are copied; everything accumulates in float32. The
 * block products run on a register-tiled kernel (4 rows x 64 columns). */
#include "elements.h"

#include <math.h>
#include <omp.h>
#include <string.h>

enum { BQ = 64, BK = 64, NB = 64 };   /* query rows, key rows per block; columns per tile */

typedef struct {
    int b, t, hq, hkv, dh, window, bf16;
    float scale;
    int dp;                            /* dh rounded up to NB: the row length of block buffers */
} Shape;

static Shape shape(int b, int t, int hq, int hkv, int dh, int window, float scale, int bf16)
{
    return (Shape){b, t, hq, hkv, dh, window, bf16, scale, (dh + NB - 1) / NB * NB};
}

/* One pass's operands: the tasks read what they need. */
typedef struct {
    Shape s;
    void *o, *dq, *dk, *dv;
    float *lse, *dsum;
    const void *q, *k, *v, *dout, *out;
} Job;

/* Floats of one thread's block buffers: ten [64 x dp] and two [64 x 64]. */
static size_t thread_floats(int dh)
{
    size_t dp = (size_t)(dh + NB - 1) / NB * NB;
    return 10 * 64 * dp + 2 * 64 * 64;
}

size_t mtx_flash_attention_scratch(int b, int t, int hq, int dh, int threads)
{
    size_t shared = ((size_t)b * hq * t + 15) / 16 * 16;    /* the backward's rowsum(do o) */
    return sizeof(float) * (shared + (size_t)threads * thread_floats(dh));
}

/* C[m x n] = (accumulate ? C : 0) + A[m x k] B[k x n], m a multiple of 4 and
 * n of NB; rows of A lda apart, of B ldb, of C ldc. fmaf keeps the fused
 * multiply-add whatever the contraction flags. */
static void block_gemm(float *restrict c, int ldc, const float *restrict a, int lda, const float *restrict b, int ldb,
                       int m, int n, int k, int accumulate)
{
    for (int i = 0; i < m; i += 4)
        for (int j0 = 0; j0 < n; j0 += NB) {
            float acc[4][NB];
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < NB; j++) acc[r][j] = accumulate ? c[(size_t)(i + r) * ldc + j0 + j] : 0;
            for (int p = 0; p < k; p++) {
                const float *bp = b + (size_t)p * ldb + j0;
                for (int r = 0; r < 4; r++) {
                    float ar = a[(size_t)(i + r) * lda + p];
                    for (int j = 0; j < NB; j++) acc[r][j] = fmaf(ar, bp[j], acc[r][j]);
                }
            }
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < NB; j++) c[(size_t)(i + r) * ldc + j0 + j] = acc[r][j];
        }
}

/* Rows [first, first + n) of head h of x ([b, t, heads, dh], either dtype)
 * into dst [64 x dp] as float32; rows and columns past them are zero. */
static void load_rows(float *dst, const Shape *s, const void *x, int heads, int bi, int h, int first, int n)
{
    for (int r = 0; r < 64; r++) {
        float *d = dst + (size_t)r * s->dp;
        size_t at = (((size_t)bi * s->t + first + r) * heads + h) * s->dh;
        for (int c = 0; c < s->dp; c++) d[c] = r < n && c < s->dh ? mtx_load(x, s->bf16, at + c) : 0;
    }
}

/* The same rows transposed: dst [dp x 64], dst[c][r] = x[first + r][c]. */
static void load_cols(float *dst, const Shape *s, const void *x, int heads, int bi, int h, int first, int n)
{
    memset(dst, 0, sizeof(float) * (size_t)s->dp * 64);
    for (int r = 0; r < n; r++) {
        size_t at = (((size_t)bi * s->t + first + r) * heads + h) * s->dh;
        for (int c = 0; c < s->dh; c++) dst[(size_t)c * 64 + r] = mtx_load(x, s->bf16, at + c);
    }
}

static int visible(const Shape *s, int i, int j)
{
    return j <= i && (s->window <= 0 || j > i - s->window);
}

/* Key blocks a query block [i0, i1) sees: [*lo, *hi). */
static void key_blocks(const Shape *s, int i0, int i1, int *lo, int *hi)
{
    int first = s->window > 0 && i0 - s->window + 1 > 0 ? i0 - s->window + 1 : 0;
    *lo = first / BK;
    *hi = (i1 - 1) / BK + 1;
}

/* Query blocks that see a key block [j0, j1): [*lo, *hi). */
static void query_blocks(const Shape *s, int j0, int j1, int *lo, int *hi)
{
    long last = s->window > 0 ? (long)j1 - 1 + s->window - 1 : (long)s->t - 1;
    if (last > s->t - 1) last = s->t - 1;
    *lo = j0 / BQ;
    *hi = (int)(last / BQ) + 1;
}

/* ---- forward ---- */

/* Task: query block qb of head h of sequence bi (later blocks first: they see more keys). */
static void forward_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    int nqb = (s->t + BQ - 1) / BQ, qb = nqb - 1 - (int)(task % nqb), h = (int)(task / nqb % s->hq);
    int bi = (int)(task / nqb / s->hq);
    void *o = j->o;
    float *lse = j->lse;
    const void *q = j->q, *k = j->k, *v = j->v;
    int dp = s->dp, g = h / (s->hq / s->hkv), i0 = qb * BQ, m = s->t - i0 < BQ ? s->t - i0 : BQ;
    float *qa = buf, *kt = qa + 64 * dp, *vb = kt + 64 * dp, *acc = vb + 64 * dp, *sc = acc + 64 * dp;
    float *mx = sc + 64 * 64, *sum = mx + 64;
    load_rows(qa, s, q, s->hq, bi, h, i0, m);
    memset(acc, 0, sizeof(float) * 64 * (size_t)dp);
    for (int r = 0; r < 64; r++) mx[r] = -INFINITY, sum[r] = 0;
    int lo, hi;
    key_blocks(s, i0, i0 + m, &lo, &hi);
    for (int kb = lo; kb < hi; kb++) {
        int j0 = kb * BK, n = s->t - j0 < BK ? s->t - j0 : BK;
        load_cols(kt, s, k, s->hkv, bi, g, j0, n);
        block_gemm(sc, 64, qa, dp, kt, 64, 64, 64, s->dh, 0);
        for (int r = 0; r < m; r++) {
            float *row = sc + (size_t)r * 64, best = mx[r];
            for (int c = 0; c < 64; c++) {
                row[c] = c < n && visible(s, i0 + r, j0 + c) ? row[c] * s->scale : -INFINITY;
                best = row[c] > best ? row[c] : best;
            }
            if (best == -INFINITY) {             /* nothing visible yet: p = 0 */
                memset(row, 0, sizeof(float) * 64);
                continue;
            }
            float alpha = mx[r] == -INFINITY ? 0 : mtx_exp(mx[r] - best), add = 0;
            for (int c = 0; c < 64; c++) add += row[c] = row[c] == -INFINITY ? 0 : mtx_exp(row[c] - best);
            sum[r] = sum[r] * alpha + add;
            mx[r] = best;
            for (int c = 0; c < dp; c++) acc[(size_t)r * dp + c] *= alpha;
        }
        for (int r = m; r < 64; r++) memset(sc + (size_t)r * 64, 0, sizeof(float) * 64);
        load_rows(vb, s, v, s->hkv, bi, g, j0, n);
        block_gemm(acc, dp, sc, 64, vb, dp, (m + 3) / 4 * 4, dp, n, 1);
    }
    for (int r = 0; r < m; r++) {
        size_t at = (((size_t)bi * s->t + i0 + r) * s->hq + h) * s->dh;
        for (int c = 0; c < s->dh; c++) mtx_store(o, s->bf16, at + c, acc[(size_t)r * dp + c] / sum[r]);
        lse[((size_t)bi * s->hq + h) * s->t + i0 + r] = mx[r] + logf(sum[r]);
    }
}

static size_t shared_floats(const Shape *s) { return ((size_t)s->b * s->hq * s->t + 15) / 16 * 16; }

/* Threads the reserved scratch has block buffers for (at most the pool's). */
static int pool_threads(const Shape *s)
{
    size_t have = mtx_scratch_bytes() / sizeof(float), shared = shared_floats(s);
    size_t fit = have > shared ? (have - shared) / thread_floats(s->dh) : 0;
    int n = omp_get_max_threads();
    return fit < (size_t)n ? (fit ? (int)fit : 1) : n;
}

/* The tasks of a pass, each whole on one thread, on as many threads as the
 * scratch has buffers for: dynamic scheduling changes who, never how. */
static void run_tasks(const Job *j, long n, void (*task)(const Job *, float *, long))
{
    int threads = pool_threads(&j->s);
    float *base = (float *)mtx_scratch() + shared_floats(&j->s);
    size_t per = thread_floats(j->s.dh);
    #pragma omp parallel num_threads(threads)
    {
        float *buf = base + (size_t)omp_get_thread_num() * per;
        #pragma omp for schedule(dynamic, 1)
        for (long i = 0; i < n; i++) task(j, buf, i);
    }
}

static void flash_forward(void *o, float *lse, const void *q, const void *k, const void *v, Shape s)
{
    Job j = {.s = s, .o = o, .lse = lse, .q = q, .k = k, .v = v};
    run_tasks(&j, (long)s.b * s.hq * ((s.t + BQ - 1) / BQ), forward_task);
}

void mtx_flash_attention(float *o, float *lse, const float *q, const float *k, const float *v, int b, int t, int hq,
                         int hkv, int dh, int window, float scale)
{
    flash_forward(o, lse, q, k, v, shape(b, t, hq, hkv, dh, window, scale, 0));
}

void mtx_flash_attention_bf16(mtx_bf16 *o, float *lse, const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v,
                              int b, int t, int hq, int hkv, int dh, int window, float scale)
{
    flash_forward(o, lse, q, k, v, shape(b, t, hq, hkv, dh, window, scale, 1));
}

/* ---- backward ---- */

/* p (and ds = p (dp - D)) of a [64 x 64] block of scores in place; rows are
 * queries when by_row, else columns are (the key-major second pass). */
static void probabilities(const Shape *s, float *sc, float *dpr, const float *lse, const float *dsum, int i0, int m,
                          int j0, int n, int by_row)
{
    for (int a = 0; a < 64; a++)
        for (int c = 0; c < 64; c++) {
            int r = by_row ? a : c, kc = by_row ? c : a;   /* query row r, key column kc of the block */
            size_t at = (size_t)a * 64 + c;
            float p = r < m && kc < n && visible(s, i0 + r, j0 + kc) ? mtx_exp(sc[at] * s->scale - lse[i0 + r]) : 0;
            sc[at] = p;
            dpr[at] = p * (dpr[at] - dsum[i0 + r]);
        }
}

/* dq for a query block: sum over key blocks of ds k. */
static void dq_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    int nqb = (s->t + BQ - 1) / BQ, qb = nqb - 1 - (int)(task % nqb), h = (int)(task / nqb % s->hq);
    int bi = (int)(task / nqb / s->hq);
    void *dq = j->dq;
    const void *dout = j->dout, *q = j->q, *k = j->k, *v = j->v;
    const float *lse = j->lse, *dsum = j->dsum;
    int dp = s->dp, g = h / (s->hq / s->hkv), i0 = qb * BQ, m = s->t - i0 < BQ ? s->t - i0 : BQ;
    float *qa = buf, *doa = qa + 64 * dp, *kt = doa + 64 * dp, *vt = kt + 64 * dp, *kb = vt + 64 * dp;
    float *acc = kb + 64 * dp, *sc = acc + 64 * dp, *dpr = sc + 64 * 64;
    const float *l = lse + ((size_t)bi * s->hq + h) * s->t, *d = dsum + ((size_t)bi * s->hq + h) * s->t;
    load_rows(qa, s, q, s->hq, bi, h, i0, m);
    load_rows(doa, s, dout, s->hq, bi, h, i0, m);
    memset(acc, 0, sizeof(float) * 64 * (size_t)dp);
    int lo, hi;
    key_blocks(s, i0, i0 + m, &lo, &hi);
    for (int kbi = lo; kbi < hi; kbi++) {
        int j0 = kbi * BK, n = s->t - j0 < BK ? s->t - j0 : BK;
        load_cols(kt, s, k, s->hkv, bi, g, j0, n);
        load_cols(vt, s, v, s->hkv, bi, g, j0, n);
        block_gemm(sc, 64, qa, dp, kt, 64, 64, 64, s->dh, 0);
        block_gemm(dpr, 64, doa, dp, vt, 64, 64, 64, s->dh, 0);
        probabilities(s, sc, dpr, l, d, i0, m, j0, n, 1);
        load_rows(kb, s, k, s->hkv, bi, g, j0, n);
        block_gemm(acc, dp, dpr, 64, kb, dp, 64, dp, n, 1);
    }
    for (int r = 0; r < m; r++) {
        size_t at = (((size_t)bi * s->t + i0 + r) * s->hq + h) * s->dh;
        for (int c = 0; c < s->dh; c++) mtx_store(dq, s->bf16, at + c, acc[(size_t)r * dp + c] * s->scale);
    }
}

/* dk, dv for a key block of one kv head: sums over its query heads and the
 * query blocks that see it, of ds^T q and p^T do. */
static void dkv_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    int nkb = (s->t + BK - 1) / BK, kbi = (int)(task % nkb), g = (int)(task / nkb % s->hkv);
    int bi = (int)(task / nkb / s->hkv);
    void *dk = j->dk, *dv = j->dv;
    const void *dout = j->dout, *q = j->q, *k = j->k, *v = j->v;
    const float *lse = j->lse, *dsum = j->dsum;
    int dp = s->dp, group = s->hq / s->hkv, j0 = kbi * BK, n = s->t - j0 < BK ? s->t - j0 : BK;
    float *ka = buf, *va = ka + 64 * dp, *qt = va + 64 * dp, *dot = qt + 64 * dp, *qb = dot + 64 * dp;
    float *dob = qb + 64 * dp, *dka = dob + 64 * dp, *dva = dka + 64 * dp, *sc = dva + 64 * dp, *dpr = sc + 64 * 64;
    load_rows(ka, s, k, s->hkv, bi, g, j0, n);
    load_rows(va, s, v, s->hkv, bi, g, j0, n);
    memset(dka, 0, sizeof(float) * 64 * (size_t)dp);
    memset(dva, 0, sizeof(float) * 64 * (size_t)dp);
    int lo, hi;
    query_blocks(s, j0, j0 + n, &lo, &hi);
    for (int x = 0; x < group; x++) {
        int h = g * group + x;
        const float *l = lse + ((size_t)bi * s->hq + h) * s->t, *d = dsum + ((size_t)bi * s->hq + h) * s->t;
        for (int qbi = lo; qbi < hi; qbi++) {
            int i0 = qbi * BQ, m = s->t - i0 < BQ ? s->t - i0 : BQ;
            load_cols(qt, s, q, s->hq, bi, h, i0, m);
            load_cols(dot, s, dout, s->hq, bi, h, i0, m);
            block_gemm(sc, 64, ka, dp, qt, 64, 64, 64, s->dh, 0);     /* s^T */
            block_gemm(dpr, 64, va, dp, dot, 64, 64, 64, s->dh, 0);   /* dp^T */
            probabilities(s, sc, dpr, l, d, i0, m, j0, n, 0);
            load_rows(dob, s, dout, s->hq, bi, h, i0, m);
            load_rows(qb, s, q, s->hq, bi, h, i0, m);
            block_gemm(dva, dp, sc, 64, dob, dp, 64, dp, m, 1);
            block_gemm(dka, dp, dpr, 64, qb, dp, 64, dp, m, 1);
        }
    }
    for (int r = 0; r < n; r++) {
        size_t at = (((size_t)bi * s->t + j0 + r) * s->hkv + g) * s->dh;
        for (int c = 0; c < s->dh; c++) {
            mtx_store(dk, s->bf16, at + c, dka[(size_t)r * dp + c] * s->scale);
            mtx_store(dv, s->bf16, at + c, dva[(size_t)r * dp + c]);
        }
    }
}

static void flash_backward(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k,
                           const void *v, const void *o, const float *lse, Shape s)
{
    float *dsum = mtx_scratch();
    Job j = {.s = s, .dq = dq, .dk = dk, .dv = dv, .lse = (float *)lse, .dsum = dsum,
             .q = q, .k = k, .v = v, .dout = dout, .out = o};
    /* D = rowsum(do o) per query row and head */
    #pragma omp parallel for schedule(static) num_threads(pool_threads(&s))
    for (long row = 0; row < (long)s.b * s.t * s.hq; row++) {
        int h = (int)(row % s.hq), i = (int)(row / s.hq % s.t), bi = (int)(row / s.hq / s.t);
        float acc = 0;
        for (int c = 0; c < s.dh; c++)
            acc += mtx_load(dout, s.bf16, (size_t)row * s.dh + c) * mtx_load(o, s.bf16, (size_t)row * s.dh + c);
        dsum[((size_t)bi * s.hq + h) * s.t + i] = acc;
    }
    run_tasks(&j, (long)s.b * s.hq * ((s.t + BQ - 1) / BQ), dq_task);
    /* (earlier key blocks are seen by more queries and go first) */
    run_tasks(&j, (long)s.b * s.hkv * ((s.t + BK - 1) / BK), dkv_task);
}

void mtx_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, const float *o, const float *lse, int b, int t, int hq, int hkv,
                                  int dh, int window, float scale)
{
    flash_backward(dq, dk, dv, dout, q, k, v, o, lse, shape(b, t, hq, hkv, dh, window, scale, 0));
}

void mtx_flash_attention_backward_bf16(mtx_bf16 *dq, mtx_bf16 *dk, mtx_bf16 *dv, const mtx_bf16 *dout,
                                       const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v, const mtx_bf16 *o,
                                       const float *lse, int b, int t, int hq, int hkv, int dh, int window,
                                       float scale)
{
    flash_backward(dq, dk, dv, dout, q, k, v, o, lse, shape(b, t, hq, hkv, dh, window, scale, 1));
}
