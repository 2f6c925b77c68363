/* Fused causal attention (FlashAttention-2): query blocks against key/value
 * blocks with a running max and sum, so no T x T tensor exists. The forward
 * writes the output and one log-sum-exp per row; the backward recomputes
 * the probabilities block by block from q, k and that log-sum-exp.
 *
 * q, o [b, t, hq, dh]; k, v [b, t, hkv, dh]; lse [b, hq, t] in float32.
 * Query head h reads kv head h / (hq / hkv). Key j is visible to query i iff
 * j <= i and, with a window w > 0, j > i - w (MaxText's sliding window).
 * Blocks with no visible key are skipped. Each task (a run of 8 query
 * blocks of one head; in the backward's second pass a run of 8 key blocks of
 * one kv head) is done by one thread in a fixed order, so the numbers do not
 * depend on the thread count: dq comes from a pass over query blocks, dk and
 * dv from a pass over key blocks, each recomputing the scores it needs. A
 * task copies the rows (and transposed columns) of the head it reads once,
 * widening bf16; everything accumulates in float32. The block products run
 * on a register tile of 4 rows x 64 columns. */
#include "elements.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
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

enum { CHUNK = 8 };                    /* blocks of rows per task */
/* Transposed copies' rows are their length plus SKEW floats apart, so that
 * a block's 64 rows do not all fall into the same cache sets (a stride of a
 * multiple of 4 KiB would). */
enum { SKEW = 16 };

static int padded(int t) { return (t + NB - 1) / NB * NB; }

/* Floats of one thread's buffers: four [t x dp] copies of a head's rows (or
 * columns), two [CHUNK x 64 x dp] accumulators, four [64 x dp] blocks and
 * two [64 x 64] ones, and the running max and sum. */
static size_t thread_floats(int t, int dh)
{
    size_t dp = (size_t)padded(dh), tp = (size_t)padded(t);
    return 4 * (tp + SKEW) * dp + 2 * CHUNK * 64 * dp + 4 * 64 * dp + 2 * 64 * 64 + 128;
}

size_t mtx_flash_attention_scratch(int b, int t, int hq, int dh, int threads)
{
    size_t shared = ((size_t)b * hq * t + 15) / 16 * 16;    /* the backward's rowsum(do o) */
    return sizeof(float) * (shared + (size_t)threads * thread_floats(t, dh));
}

/* C[m x n] = (accumulate ? C : 0) + A[m x k] B[k x n], m a multiple of 4 and
 * n of NB; rows of A lda apart, of B ldb, of C ldc. A 4 x 64 tile in
 * sixteen 16-float vectors, each row of B loaded once for the four rows of
 * A; the multiply-adds are fused (fp-contract=fast on this function alone:
 * the same instructions whatever the thread count). */
typedef float vec16 __attribute__((vector_size(64), aligned(4)));

__attribute__((optimize("fp-contract=fast"))) static void block_gemm(float *restrict c, int ldc,
                                                                      const float *restrict a, int lda,
                                                                      const float *restrict b, int ldb, int m, int n,
                                                                      int k, int accumulate)
{
    for (int i = 0; i < m; i += 4)
        for (int j0 = 0; j0 < n; j0 += NB) {
            vec16 acc[4][4];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++)
                    acc[r][v] = accumulate ? *(const vec16 *)(c + (size_t)(i + r) * ldc + j0 + 16 * v) : (vec16){0};
            for (int p = 0; p < k; p++) {
                const float *bp = b + (size_t)p * ldb + j0;
                vec16 b0 = *(const vec16 *)bp, b1 = *(const vec16 *)(bp + 16);
                vec16 b2 = *(const vec16 *)(bp + 32), b3 = *(const vec16 *)(bp + 48);
                for (int r = 0; r < 4; r++) {
                    float ar = a[(size_t)(i + r) * lda + p];
                    acc[r][0] += ar * b0;
                    acc[r][1] += ar * b1;
                    acc[r][2] += ar * b2;
                    acc[r][3] += ar * b3;
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++) *(vec16 *)(c + (size_t)(i + r) * ldc + j0 + 16 * v) = acc[r][v];
        }
}

/* Rows [first, first + n) of head h of x ([b, t, heads, dh], either dtype)
 * into dst [rows x dp] as float32; columns past dh and rows past n up to
 * `rows` are zero. */
static void load_rows(float *dst, int rows, const Shape *s, const void *x, int heads, int bi, int h, int first, int n)
{
    for (int r = 0; r < rows; r++) {
        float *d = dst + (size_t)r * s->dp;
        size_t at = (((size_t)bi * s->t + first + r) * heads + h) * s->dh;
        if (r >= n) memset(d, 0, sizeof(float) * (size_t)s->dp);
        else if (!s->bf16) memcpy(d, (const float *)x + at, sizeof(float) * (size_t)s->dh);
        else
            for (int c = 0; c < s->dh; c++) d[c] = mtx_bf16_to_f32(((const mtx_bf16 *)x)[at + c]);
        if (r < n) memset(d + s->dh, 0, sizeof(float) * (size_t)(s->dp - s->dh));
    }
}

/* The same rows transposed: dst [dh x ld], dst[c][r] = x[first + r][c],
 * zero for r in [n, ld). */
static void load_cols(float *dst, int ld, const Shape *s, const void *x, int heads, int bi, int h, int first, int n)
{
    memset(dst, 0, sizeof(float) * (size_t)s->dh * ld);
    for (int r = 0; r < n; r++) {
        size_t at = (((size_t)bi * s->t + first + r) * heads + h) * s->dh;
        for (int c = 0; c < s->dh; c++) dst[(size_t)c * ld + r] = mtx_load(x, s->bf16, at + c);
    }
}

/* The visible keys of query row i within a key block at j0 with n keys:
 * columns [*lo, *hi) of the block. */
static void visible_keys(const Shape *s, int i, int j0, int n, int *lo, int *hi)
{
    int first = s->window > 0 ? i - s->window + 1 : 0;
    *lo = first > j0 ? first - j0 : 0;
    *hi = i - j0 + 1 < n ? i - j0 + 1 : n;
}

/* The visible queries of key j within a query block at i0 with m rows:
 * columns [*lo, *hi) of a transposed block. */
static void visible_queries(const Shape *s, int j, int i0, int m, int *lo, int *hi)
{
    *lo = j > i0 ? j - i0 : 0;
    long last = s->window > 0 ? (long)j + s->window - 1 : (long)s->t - 1;   /* the last query that sees j */
    *hi = last - i0 + 1 < m ? (int)(last - i0 + 1) : m;
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

static int rows_from(const Shape *s, int first, int block) { return s->t - first < block ? s->t - first : block; }

/* A task of a pass over query blocks: a run of CHUNK query blocks [q0, q1)
 * of head h (kv head g) of sequence bi, later runs first (they see more
 * keys); the keys the run sees start at j_first, `keys` of them in whole
 * blocks, nk of them inside the sequence. */
typedef struct { int bi, h, g, q0, q1, j_first, keys, nk; } QueryRun;

static QueryRun query_run(const Shape *s, long task)
{
    int nqb = (s->t + BQ - 1) / BQ, nqc = (nqb + CHUNK - 1) / CHUNK, qc = nqc - 1 - (int)(task % nqc), klo, khi;
    QueryRun r = {.h = (int)(task / nqc % s->hq), .bi = (int)(task / nqc / s->hq), .q0 = qc * CHUNK};
    r.q1 = r.q0 + CHUNK < nqb ? r.q0 + CHUNK : nqb;
    r.g = r.h / (s->hq / s->hkv);
    key_blocks(s, r.q0 * BQ, r.q0 * BQ + rows_from(s, r.q0 * BQ, (r.q1 - r.q0) * BQ), &klo, &khi);
    r.j_first = klo * BK;
    r.keys = (khi - klo) * BK;
    r.nk = rows_from(s, r.j_first, r.keys);
    return r;
}

/* Forward: for each query block, key blocks in order, with the key block's
 * columns of the head's k transposed and rows of v copied once per task. */
static void forward_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    QueryRun run = query_run(s, task);
    int bi = run.bi, h = run.h, g = run.g, j_first = run.j_first, keys = run.keys, nk = run.nk, dp = s->dp;
    size_t head = (size_t)(padded(s->t) + SKEW) * dp;
    float *kt = buf, *vh = kt + head, *qa = vh + head;
    float *acc = qa + 64 * dp, *sc = acc + 64 * dp, *mx = sc + 64 * 64, *sum = mx + 64;
    int ld = keys + SKEW;
    load_cols(kt, ld, s, j->k, s->hkv, bi, g, j_first, nk);
    load_rows(vh, keys, s, j->v, s->hkv, bi, g, j_first, nk);
    for (int qb = run.q0; qb < run.q1; qb++) {
        int i0 = qb * BQ, m = rows_from(s, i0, BQ), lo, hi;
        load_rows(qa, 64, s, j->q, s->hq, bi, h, i0, m);
        memset(acc, 0, sizeof(float) * 64 * (size_t)dp);
        for (int r = 0; r < 64; r++) mx[r] = -INFINITY, sum[r] = 0;
        key_blocks(s, i0, i0 + m, &lo, &hi);
        for (int kb = lo; kb < hi; kb++) {
            int j0 = kb * BK, n = rows_from(s, j0, BK), col = j0 - j_first;
            block_gemm(sc, 64, qa, dp, kt + col, ld, 64, 64, s->dh, 0);
            for (int r = 0; r < m; r++) {
                float *row = sc + (size_t)r * 64, best = mx[r];
                int lo, hi;
                visible_keys(s, i0 + r, j0, n, &lo, &hi);
                for (int c = 0; c < 64; c++) {
                    row[c] = c >= lo && c < hi ? row[c] * s->scale : -INFINITY;
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
            block_gemm(acc, dp, sc, 64, vh + (size_t)col * dp, dp, (m + 3) / 4 * 4, dp, n, 1);
        }
        for (int r = 0; r < m; r++) {
            size_t at = (((size_t)bi * s->t + i0 + r) * s->hq + h) * s->dh;
            for (int c = 0; c < s->dh; c++) mtx_store(j->o, s->bf16, at + c, acc[(size_t)r * dp + c] / sum[r]);
            j->lse[((size_t)bi * s->hq + h) * s->t + i0 + r] = mx[r] + logf(sum[r]);
        }
    }
}

static size_t shared_floats(const Shape *s) { return ((size_t)s->b * s->hq * s->t + 15) / 16 * 16; }

/* Threads the reserved scratch has buffers for (at most the pool's). */
static int pool_threads(const Shape *s)
{
    size_t have = mtx_scratch_bytes() / sizeof(float), shared = shared_floats(s);
    size_t fit = have > shared ? (have - shared) / thread_floats(s->t, s->dh) : 0;
    int n = omp_get_max_threads();
    if (!fit) {   /* generated code reserves it in mtx_state_new */
        fprintf(stderr, "mtxrt: error: the fused attention's scratch is not reserved (%zu bytes)\n",
                mtx_scratch_bytes());
        abort();
    }
    return fit < (size_t)n ? (int)fit : n;
}

static long query_tasks(const Shape *s)
{
    return (long)s->b * s->hq * (((s->t + BQ - 1) / BQ + CHUNK - 1) / CHUNK);
}

/* The tasks of a pass, each whole on one thread, on as many threads as the
 * scratch has buffers for: dynamic scheduling changes who, never how. */
static void run_tasks(const Job *j, long n, void (*task)(const Job *, float *, long))
{
    int threads = pool_threads(&j->s);
    float *base = (float *)mtx_scratch() + shared_floats(&j->s);
    size_t per = thread_floats(j->s.t, j->s.dh);
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
    run_tasks(&j, query_tasks(&s), forward_task);
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
 * queries when by_row, else columns are (the key-major second pass). Each
 * row's visible columns are a range, so the loops have no branches. */
static void probabilities(const Shape *s, float *sc, float *dpr, const float *lse, const float *dsum, int i0, int m,
                          int j0, int n, int by_row)
{
    float l[64], d[64];   /* the block's queries' log-sum-exp and row sums, 0 past the sequence */
    for (int r = 0; r < 64; r++) l[r] = r < m ? lse[i0 + r] : 0, d[r] = r < m ? dsum[i0 + r] : 0;
    for (int a = 0; a < 64; a++) {
        float *sr = sc + (size_t)a * 64, *dr = dpr + (size_t)a * 64;
        int lo = 0, hi = 0;
        if (by_row && a < m) visible_keys(s, i0 + a, j0, n, &lo, &hi);
        if (!by_row && a < n) visible_queries(s, j0 + a, i0, m, &lo, &hi);
        for (int c = 0; c < 64; c++) {
            float lc = by_row ? l[a] : l[c], dc = by_row ? d[a] : d[c];
            float p = c >= lo && c < hi ? mtx_exp(sr[c] * s->scale - lc) : 0;
            dr[c] = p * (dr[c] - dc);
            sr[c] = p;
        }
    }
}

/* dq for a run of query blocks: for each, the sum over the key blocks it
 * sees of ds k; k (transposed and as rows) and v (transposed) copied once. */
static void dq_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    QueryRun run = query_run(s, task);
    int bi = run.bi, h = run.h, g = run.g, j_first = run.j_first, keys = run.keys, nk = run.nk, dp = s->dp;
    size_t head = (size_t)(padded(s->t) + SKEW) * dp;
    float *kt = buf, *vt = kt + head, *kh = vt + head, *qa = kh + head, *doa = qa + 64 * dp, *acc = doa + 64 * dp;
    float *sc = acc + 64 * dp, *dpr = sc + 64 * 64;
    const float *l = j->lse + ((size_t)bi * s->hq + h) * s->t, *d = j->dsum + ((size_t)bi * s->hq + h) * s->t;
    int ld = keys + SKEW;
    load_cols(kt, ld, s, j->k, s->hkv, bi, g, j_first, nk);
    load_cols(vt, ld, s, j->v, s->hkv, bi, g, j_first, nk);
    load_rows(kh, keys, s, j->k, s->hkv, bi, g, j_first, nk);
    for (int qb = run.q0; qb < run.q1; qb++) {
        int i0 = qb * BQ, m = rows_from(s, i0, BQ), lo, hi;
        load_rows(qa, 64, s, j->q, s->hq, bi, h, i0, m);
        load_rows(doa, 64, s, j->dout, s->hq, bi, h, i0, m);
        memset(acc, 0, sizeof(float) * 64 * (size_t)dp);
        key_blocks(s, i0, i0 + m, &lo, &hi);
        for (int kb = lo; kb < hi; kb++) {
            int j0 = kb * BK, n = rows_from(s, j0, BK), col = j0 - j_first;
            block_gemm(sc, 64, qa, dp, kt + col, ld, 64, 64, s->dh, 0);
            block_gemm(dpr, 64, doa, dp, vt + col, ld, 64, 64, s->dh, 0);
            probabilities(s, sc, dpr, l, d, i0, m, j0, n, 1);
            block_gemm(acc, dp, dpr, 64, kh + (size_t)col * dp, dp, 64, dp, n, 1);
        }
        for (int r = 0; r < m; r++) {
            size_t at = (((size_t)bi * s->t + i0 + r) * s->hq + h) * s->dh;
            for (int c = 0; c < s->dh; c++) mtx_store(j->dq, s->bf16, at + c, acc[(size_t)r * dp + c] * s->scale);
        }
    }
}

/* Tasks of the key-block pass: a run of CHUNK key blocks of one kv head. */
static void key_task(const Shape *s, long task, int *bi, int *g, int *k0, int *k1)
{
    int nkb = (s->t + BK - 1) / BK, nkc = (nkb + CHUNK - 1) / CHUNK, kc = (int)(task % nkc);
    *g = (int)(task / nkc % s->hkv);
    *bi = (int)(task / nkc / s->hkv);
    *k0 = kc * CHUNK;
    *k1 = *k0 + CHUNK < nkb ? *k0 + CHUNK : nkb;
}

static long key_tasks(const Shape *s)
{
    return (long)s->b * s->hkv * (((s->t + BK - 1) / BK + CHUNK - 1) / CHUNK);
}

/* dk, dv for a run of key blocks of one kv head: for each block, the sums
 * over its query heads (outer) and the query blocks that see it (inner) of
 * ds^T q and p^T do; each head's q and do (transposed and as rows) copied
 * once. */
static void dkv_task(const Job *j, float *buf, long task)
{
    const Shape *s = &j->s;
    int bi, g, k0, k1, qlo, qhi;
    key_task(s, task, &bi, &g, &k0, &k1);
    query_blocks(s, k0 * BK, k0 * BK + rows_from(s, k0 * BK, (k1 - k0) * BK), &qlo, &qhi);
    int dp = s->dp, group = s->hq / s->hkv, i_first = qlo * BQ, queries = (qhi - qlo) * BQ;
    int nq = rows_from(s, i_first, queries);
    size_t head = (size_t)(padded(s->t) + SKEW) * dp, chunk = (size_t)CHUNK * 64 * dp;
    float *qt = buf, *dot = qt + head, *qh = dot + head, *doh = qh + head, *dka = doh + head, *dva = dka + chunk;
    float *ka = dva + chunk, *va = ka + 64 * dp, *sc = va + 64 * dp, *dpr = sc + 64 * 64;
    memset(dka, 0, sizeof(float) * chunk);
    memset(dva, 0, sizeof(float) * chunk);
    for (int x = 0; x < group; x++) {
        int h = g * group + x;
        const float *l = j->lse + ((size_t)bi * s->hq + h) * s->t, *d = j->dsum + ((size_t)bi * s->hq + h) * s->t;
        int ld = queries + SKEW;
        load_cols(qt, ld, s, j->q, s->hq, bi, h, i_first, nq);
        load_cols(dot, ld, s, j->dout, s->hq, bi, h, i_first, nq);
        load_rows(qh, queries, s, j->q, s->hq, bi, h, i_first, nq);
        load_rows(doh, queries, s, j->dout, s->hq, bi, h, i_first, nq);
        for (int kb = k0; kb < k1; kb++) {
            int j0 = kb * BK, n = rows_from(s, j0, BK), lo, hi;
            float *dk = dka + (size_t)(kb - k0) * 64 * dp, *dv = dva + (size_t)(kb - k0) * 64 * dp;
            load_rows(ka, 64, s, j->k, s->hkv, bi, g, j0, n);
            load_rows(va, 64, s, j->v, s->hkv, bi, g, j0, n);
            query_blocks(s, j0, j0 + n, &lo, &hi);
            for (int qb = lo; qb < hi; qb++) {
                int i0 = qb * BQ, m = rows_from(s, i0, BQ), row = i0 - i_first;
                block_gemm(sc, 64, ka, dp, qt + row, ld, 64, 64, s->dh, 0);     /* s^T */
                block_gemm(dpr, 64, va, dp, dot + row, ld, 64, 64, s->dh, 0);   /* dp^T */
                probabilities(s, sc, dpr, l, d, i0, m, j0, n, 0);
                block_gemm(dv, dp, sc, 64, doh + (size_t)row * dp, dp, 64, dp, m, 1);
                block_gemm(dk, dp, dpr, 64, qh + (size_t)row * dp, dp, 64, dp, m, 1);
            }
        }
    }
    for (int kb = k0; kb < k1; kb++) {
        int j0 = kb * BK, n = rows_from(s, j0, BK);
        const float *dk = dka + (size_t)(kb - k0) * 64 * dp, *dv = dva + (size_t)(kb - k0) * 64 * dp;
        for (int r = 0; r < n; r++) {
            size_t at = (((size_t)bi * s->t + j0 + r) * s->hkv + g) * s->dh;
            for (int c = 0; c < s->dh; c++) {
                mtx_store(j->dk, s->bf16, at + c, dk[(size_t)r * dp + c] * s->scale);
                mtx_store(j->dv, s->bf16, at + c, dv[(size_t)r * dp + c]);
            }
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
    run_tasks(&j, query_tasks(&s), dq_task);
    run_tasks(&j, key_tasks(&s), dkv_task);   /* (earlier key blocks are seen by more queries and go first) */
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
