/* Fused causal attention (FlashAttention-2): query blocks against key/value
 * blocks with a running max and sum, so no T x T tensor exists. The forward
 * writes the output and one log-sum-exp per row; the backward recomputes
 * the probabilities block by block from q, k and that log-sum-exp.
 *
 * q, o [b, t, hq, dh]; k, v [b, t, hkv, dh]; lse [b, hq, t] in float32.
 * Query head h reads kv head h / (hq / hkv). Key j is visible to query i iff
 * j <= i and, with a window w > 0, j > i - w (MaxText's sliding window),
 * and j is in i's segment (packed rows: bounds from mtx_segment_bounds; a
 * segment is a run, so each query's keys and each key's queries stay one
 * range, and blocks outside it are skipped).
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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BQ = 64, BK = 64, NB = 64 };   /* query rows, key rows per block; columns per tile */

typedef struct {
    int b, t, hq, hkv, dh, window, bf16;
    float scale, cap;                  /* cap > 0: scores soft-capped, cap tanh(score / cap) */
    int dp;                            /* dh rounded up to NB: the row length of block buffers */
    const int32_t *start, *end;        /* segment bounds [b, t]; a task's copy (of_row) points at its sequence's */
} Shape;

static Shape shape(const int32_t *bounds, int b, int t, int hq, int hkv, int dh, int window, float scale, float cap,
                   int bf16)
{
    return (Shape){b, t, hq, hkv, dh, window, bf16, scale, cap, (dh + NB - 1) / NB * NB, bounds,
                   bounds ? bounds + (size_t)b * t : NULL};
}

/* The shape as sequence bi's task sees it: its row of the segment bounds. */
static Shape of_row(const Shape *s, int bi)
{
    Shape r = *s;
    if (r.start) r.start += (size_t)bi * s->t, r.end += (size_t)bi * s->t;
    return r;
}

/* Segment bounds of position i (one segment: the whole row, without bounds). */
static int seg_start(const Shape *s, int i) { return s->start ? s->start[i] : 0; }
static int seg_end(const Shape *s, int i) { return s->end ? s->end[i] : s->t; }

/* One pass's operands: the tasks read what they need. */
typedef struct {
    Shape s;
    void *o, *dq, *dk, *dv;
    float *lse, *dsum, *dqp, *dkp, *dvp;   /* dsum and the partial sums: the backward's */
    const void *q, *k, *v, *dout, *out;
} Job;

enum { CHUNK = 8 };                    /* blocks of rows per task */
/* Transposed copies' rows are their length plus SKEW floats apart, so that
 * a block's 64 rows do not all fall into the same cache sets (a stride of a
 * multiple of 4 KiB would). */
enum { SKEW = 16 };

static int padded(int t) { return (t + NB - 1) / NB * NB; }

/* Floats of one thread's buffers (the backward's; the forward uses fewer):
 * five [t x dp] copies of a head's rows (or columns) or accumulators, four
 * [64 x dp] blocks, three [64 x 64] ones, and the running max and sum. */
static size_t thread_floats(int t, int dh)
{
    size_t dp = (size_t)padded(dh), tp = (size_t)padded(t);
    return 5 * (tp + SKEW) * dp + 4 * 64 * dp + 3 * 64 * 64 + 128;
}

/* C[m x n] = (accumulate ? C : 0) + A[m x k] B[k x n], m a multiple of 4 and
 * n of NB; rows of A lda apart, of B ldb, of C ldc. A 4 x 64 tile in
 * sixteen 16-float vectors, each row of B loaded once for the four rows of
 * A; the multiply-adds are fused (fp-contract=fast on this function alone:
 * the same instructions whatever the thread count). */
typedef float vec16 __attribute__((vector_size(64), aligned(4)));
#define CONTRACTED __attribute__((optimize("fp-contract=fast")))

CONTRACTED static void block_gemm(float *restrict c, int ldc,
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

/* ---- rows of 64 scores as four vectors ---- */

typedef int32_t vint16 __attribute__((vector_size(64), aligned(4)));

static inline vec16 select16(vint16 mask, vec16 a, vec16 b) { return (vec16)(((vint16)a & mask) | ((vint16)b & ~mask)); }

/* Lanes [lo, hi) of the 16 columns from c0. */
static inline vint16 columns16(int c0, int lo, int hi)
{
    vint16 c = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    c += c0;
    return (c >= lo) & (c < hi);
}

/* mtx_exp on 16 lanes (the same reduction and polynomial; the rounding to
 * an integer n by adding and subtracting 1.5 * 2^23). */
CONTRACTED static inline vec16 exp16(vec16 x)
{
    x = select16(x < -87.0f, x - x - 87.0f, x);
    x = select16(x > 88.0f, x - x + 88.0f, x);
    vec16 n = x * 1.44269504089f + 12582912.0f;
    n -= 12582912.0f;
    n = select16(n == n, n, n - n);   /* NaN x: p is NaN anyway; keep the conversion defined */
    vec16 r = n * -0.693359375f + x;
    r = n * 2.12194440e-4f + r;
    vec16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3333337680e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vint16 e = (__builtin_convertvector(n, vint16) + 127) << 23;
    return p * (vec16)e;
}

CONTRACTED static inline vec16 tanh16(vec16 x) { return 1.0f - 2.0f / (exp16(2.0f * x) + 1.0f); }

/* Scaled scores, soft-capped when cap > 0 (gemma2's attn_logits_soft_cap);
 * *t gets tanh(z / cap) for the backward's derivative. */
CONTRACTED static inline vec16 capped16(vec16 z, float cap, vec16 *t)
{
    if (cap <= 0) return z;
    *t = tanh16(z / cap);
    return cap * *t;
}

static inline vec16 load16(const float *x) { return *(const vec16 *)x; }
static inline void store16(float *x, vec16 v) { *(vec16 *)x = v; }

static inline float lanes_max(vec16 v)
{
    float m = v[0];
    for (int i = 1; i < 16; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static inline float lanes_sum(vec16 v)
{
    float a = 0;
    for (int i = 0; i < 16; i++) a += v[i];
    return a;
}

/* The forward's online softmax for one row of a block: scores scaled, the
 * columns [lo, hi) kept, the running max *mx and sum *sum updated, the row
 * replaced by exp(score - max) (0 where masked). Returns the factor that
 * rescales the row's earlier output. */
CONTRACTED static float softmax_row(float *row, int lo, int hi, float scale, float cap, float *mx, float *sum)
{
    vec16 x[4], best = (vec16){0} + *mx, t;
    for (int v = 0; v < 4; v++) {
        x[v] = select16(columns16(16 * v, lo, hi), capped16(load16(row + 16 * v) * scale, cap, &t), (vec16){0} - INFINITY);
        best = select16(x[v] > best, x[v], best);
    }
    float m = lanes_max(best);
    if (m == -INFINITY) {   /* nothing visible yet: p = 0 */
        memset(row, 0, sizeof(float) * 64);
        return 1;
    }
    vec16 add = {0};
    for (int v = 0; v < 4; v++) {
        vec16 p = select16(columns16(16 * v, lo, hi), exp16(x[v] - m), (vec16){0});
        add += p;
        store16(row + 16 * v, p);
    }
    float alpha = *mx == -INFINITY ? 0 : mtx_exp(*mx - m);
    *sum = *sum * alpha + lanes_sum(add);
    *mx = m;
    return alpha;
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

/* Rows i and i + d (i without bit d) exchange the lanes with bit d of one
 * and the lanes without it of the other: the off-diagonal d x d blocks of
 * every 2d x 2d block swap. */
static inline void swap_quarters(vec16 *m, int d, vint16 lo, vint16 hi)
{
    for (int i = 0; i < 16; i++)
        if (!(i & d)) {
            vec16 x = m[i], y = m[i + d];
            m[i] = __builtin_shuffle(x, y, lo);
            m[i + d] = __builtin_shuffle(x, y, hi);
        }
}

/* A 16 x 16 tile transposed in registers: blocks of 8, 4, 2, 1 swapped. */
static void transpose16(vec16 m[16])
{
    swap_quarters(m, 8, (vint16){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
                  (vint16){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31});
    swap_quarters(m, 4, (vint16){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
                  (vint16){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31});
    swap_quarters(m, 2, (vint16){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
                  (vint16){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31});
    swap_quarters(m, 1, (vint16){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
                  (vint16){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31});
}

/* 16 rows from r0 of head h of x, columns [c0, c0 + 16), as float32; 0
 * past n rows and past dh columns. */
static void load_tile(vec16 t[16], const Shape *s, const void *x, int heads, int bi, int h, int first, int r0, int n,
                      int c0)
{
    for (int i = 0; i < 16; i++) {
        size_t at = (((size_t)bi * s->t + first + r0 + i) * heads + h) * s->dh + c0;
        t[i] = (vec16){0};
        if (r0 + i >= n) continue;
        if (!s->bf16 && c0 + 16 <= s->dh) t[i] = load16((const float *)x + at);
        else
            for (int c = 0; c < 16 && c0 + c < s->dh; c++) t[i][c] = mtx_load(x, s->bf16, at + c);
    }
}

/* The same rows transposed, 16 x 16 tiles at a time: dst [dh x ld],
 * dst[c][r] = x[first + r][c] for r < rows (a multiple of 64), 0 from n. */
static void load_cols(float *dst, int ld, int rows, const Shape *s, const void *x, int heads, int bi, int h, int first,
                      int n)
{
    for (int r0 = 0; r0 < rows; r0 += 16)
        for (int c0 = 0; c0 < s->dh; c0 += 16) {
            vec16 t[16];
            load_tile(t, s, x, heads, bi, h, first, r0, n, c0);
            transpose16(t);
            for (int i = 0; i < 16 && c0 + i < s->dh; i++) store16(dst + (size_t)(c0 + i) * ld + r0, t[i]);
        }
}

/* The visible keys of query row i within a key block at j0 with n keys:
 * columns [*lo, *hi) of the block. */
static void visible_keys(const Shape *s, int i, int j0, int n, int *lo, int *hi)
{
    int first = s->window > 0 ? i - s->window + 1 : 0;
    first = first > seg_start(s, i) ? first : seg_start(s, i);
    *lo = first > j0 ? first - j0 : 0;
    *hi = i - j0 + 1 < n ? i - j0 + 1 : n;
}

/* The visible queries of key j within a query block at i0 with m rows:
 * columns [*lo, *hi) of a transposed block. */
static void visible_queries(const Shape *s, int j, int i0, int m, int *lo, int *hi)
{
    *lo = j > i0 ? j - i0 : 0;
    long last = s->window > 0 ? (long)j + s->window - 1 : (long)s->t - 1;   /* the last query that sees j */
    last = last < seg_end(s, j) - 1 ? last : seg_end(s, j) - 1;
    *hi = last - i0 + 1 < m ? (int)(last - i0 + 1) : m;
}

/* Key blocks a query block [i0, i1) sees: [*lo, *hi) (its first row sees
 * the earliest key: windows and segment starts only move forward). */
static void key_blocks(const Shape *s, int i0, int i1, int *lo, int *hi)
{
    int first = s->window > 0 && i0 - s->window + 1 > 0 ? i0 - s->window + 1 : 0;
    first = first > seg_start(s, i0) ? first : seg_start(s, i0);
    *lo = first / BK;
    *hi = (i1 - 1) / BK + 1;
}

/* Query blocks that see a key block [j0, j1): [*lo, *hi) (its last key is
 * seen by the latest query). */
static void query_blocks(const Shape *s, int j0, int j1, int *lo, int *hi)
{
    long last = s->window > 0 ? (long)j1 - 1 + s->window - 1 : (long)s->t - 1;
    last = last < seg_end(s, j1 - 1) - 1 ? last : seg_end(s, j1 - 1) - 1;
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
    Shape row = of_row(s, r.bi);
    key_blocks(&row, r.q0 * BQ, r.q0 * BQ + rows_from(s, r.q0 * BQ, (r.q1 - r.q0) * BQ), &klo, &khi);
    r.j_first = klo * BK;
    r.keys = (khi - klo) * BK;
    r.nk = rows_from(s, r.j_first, r.keys);
    return r;
}

/* Forward: for each query block, key blocks in order, with the key block's
 * columns of the head's k transposed and rows of v copied once per task. */
static void forward_task(const Job *j, float *buf, long task)
{
    QueryRun run = query_run(&j->s, task);
    Shape row = of_row(&j->s, run.bi);
    const Shape *s = &row;
    int bi = run.bi, h = run.h, g = run.g, j_first = run.j_first, keys = run.keys, nk = run.nk, dp = s->dp;
    size_t head = (size_t)(padded(s->t) + SKEW) * dp;
    float *kt = buf, *vh = kt + head, *qa = vh + head;
    float *acc = qa + 64 * dp, *sc = acc + 64 * dp, *mx = sc + 64 * 64, *sum = mx + 64;
    int ld = keys + SKEW;
    load_cols(kt, ld, keys, s, j->k, s->hkv, bi, g, j_first, nk);
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
                int lo, hi;
                visible_keys(s, i0 + r, j0, n, &lo, &hi);
                float alpha = softmax_row(sc + (size_t)r * 64, lo, hi, s->scale, s->cap, &mx[r], &sum[r]);
                if (alpha != 1)
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

static size_t shared_floats(const Shape *s);

/* Threads the reserved scratch has buffers for (at most the pool's). */
static int pool_threads(const Shape *s)
{
    size_t have = mtx_scratch_bytes() / sizeof(float), shared = shared_floats(s);
    size_t fit = have > shared ? (have - shared) / thread_floats(s->t, s->dh) : 0;
    int n = mtx_num_threads();
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

typedef struct {
    const Job *job;
    void (*task)(const Job *, float *, long);
    float *base;                 /* thread i's buffer: base + i * per */
    size_t per;
} Tasks;

static void task_range(void *ctx, size_t first, size_t end)
{
    const Tasks *t = ctx;
    float *buf = t->base + (size_t)mtx_thread_index() * t->per;
    for (size_t i = first; i < end; i++) t->task(t->job, buf, (long)i);
}

/* The tasks of a pass, each whole on one thread (the pool's threads claim
 * them: scheduling changes who, never how), with a buffer per thread. */
static void run_tasks(const Job *j, long n, void (*task)(const Job *, float *, long))
{
    Tasks t = {j, task, (float *)mtx_scratch() + shared_floats(&j->s), thread_floats(j->s.t, j->s.dh)};
    double cost = 8.0 * j->s.b * j->s.hq * (double)j->s.t * j->s.t * j->s.dh * MTX_COST_FLOP_NS;
    if (pool_threads(&j->s) < mtx_num_threads()) task_range(&t, 0, (size_t)n);   /* buffers for fewer threads */
    else mtx_parallel_tasks(task_range, &t, (size_t)n, cost);
}

static void flash_forward(void *o, float *lse, const void *q, const void *k, const void *v, Shape s)
{
    Job j = {.s = s, .o = o, .lse = lse, .q = q, .k = k, .v = v};
    run_tasks(&j, query_tasks(&s), forward_task);
}

void mtx_flash_attention(float *o, float *lse, const float *q, const float *k, const float *v, const int32_t *bounds,
                         int b, int t, int hq, int hkv, int dh, int window, float scale, float cap)
{
    flash_forward(o, lse, q, k, v, shape(bounds, b, t, hq, hkv, dh, window, scale, cap, 0));
}

void mtx_flash_attention_bf16(mtx_bf16 *o, float *lse, const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v,
                              const int32_t *bounds, int b, int t, int hq, int hkv, int dh, int window, float scale,
                              float cap)
{
    flash_forward(o, lse, q, k, v, shape(bounds, b, t, hq, hkv, dh, window, scale, cap, 1));
}

/* ---- backward ---- */

/* One pass over key blocks: a task is a segment of one query head's key
 * blocks (segments() per head, a number that depends on the shape alone, so
 * that there are at least MIN_TASKS tasks). For each key block, and each
 * query block that sees it in order, it recomputes p and ds = p (dp - D)
 * and adds p^T do to dv, ds^T q to dk and ds k to the segment's dq. A
 * head's dq is then the sum of its segments' in order and, with grouped
 * queries, a kv head's dk and dv the sums of its query heads' in order:
 * fixed sums, whatever the thread count. */
enum { MIN_TASKS = 64 };

static int segments(const Shape *s)
{
    long heads = (long)s->b * s->hq, n = (MIN_TASKS + heads - 1) / heads, nkb = (s->t + BK - 1) / BK;
    return (int)(n < nkb ? n : nkb);
}

/* Floats of one [b, t, hq, dh] tensor: q's layout, which the partial sums
 * share so that their reduction reads contiguous rows. */
static size_t query_floats(const Shape *s) { return (size_t)s->b * s->t * s->hq * s->dh; }

/* Shared floats: the row sums D, then each segment's dq when there are
 * several, and each query head's dk and dv when heads share a kv head. */
static size_t shared_floats(const Shape *s)
{
    size_t n = ((size_t)s->b * s->hq * s->t + 15) / 16 * 16;
    if (segments(s) > 1) n += (size_t)segments(s) * query_floats(s);
    if (s->hq != s->hkv) n += 2 * query_floats(s);
    return n;
}

size_t mtx_flash_attention_scratch(int b, int t, int hq, int hkv, int dh, int threads)
{
    Shape s = shape(NULL, b, t, hq, hkv, dh, 0, 1, 0, 0);
    return sizeof(float) * (shared_floats(&s) + (size_t)threads * thread_floats(t, dh));
}

/* Rows [first, first + n) of head h of x ([b, t, heads, dh], either dtype)
 * from src [n x dp], times scale. */
static void store_rows(void *x, int bf16, const Shape *s, int heads, int bi, int h, int first, int n, const float *src,
                       float scale)
{
    for (int r = 0; r < n; r++) {
        size_t at = (((size_t)bi * s->t + first + r) * heads + h) * s->dh;
        for (int c = 0; c < s->dh; c++) mtx_store(x, bf16, at + c, src[(size_t)r * s->dp + c] * scale);
    }
}

/* p^T and ds^T of a [64 keys x 64 queries] block of transposed scores, in
 * place of s^T and dp^T. Each key's visible queries are a column range, so
 * the loop has no branches. */
CONTRACTED static void probabilities(const Shape *s, float *sc, float *dpr, const float *lse, const float *dsum, int i0,
                                     int m, int j0, int n)
{
    float l[64], d[64];   /* the block's queries' log-sum-exp and row sums, 0 past the sequence */
    for (int c = 0; c < 64; c++) l[c] = c < m ? lse[i0 + c] : 0, d[c] = c < m ? dsum[i0 + c] : 0;
    for (int a = 0; a < 64; a++) {
        float *sr = sc + (size_t)a * 64, *dr = dpr + (size_t)a * 64;
        int lo = 0, hi = 0;
        if (a < n) visible_queries(s, j0 + a, i0, m, &lo, &hi);
        for (int v = 0; v < 4; v++) {
            vec16 t = {0}, z = capped16(load16(sr + 16 * v) * s->scale, s->cap, &t);
            vec16 p = exp16(z - load16(l + 16 * v));
            p = select16(columns16(16 * v, lo, hi), p, (vec16){0});
            vec16 ds = p * (load16(dr + 16 * v) - load16(d + 16 * v));
            store16(dr + 16 * v, s->cap > 0 ? ds * (1.0f - t * t) : ds);   /* through the cap's tanh */
            store16(sr + 16 * v, p);
        }
    }
}

static void transpose64(float *restrict dst, const float *restrict src)
{
    for (int i0 = 0; i0 < 64; i0 += 16)
        for (int j0 = 0; j0 < 64; j0 += 16) {
            vec16 t[16];
            for (int i = 0; i < 16; i++) t[i] = load16(src + (size_t)(i0 + i) * 64 + j0);
            transpose16(t);
            for (int i = 0; i < 16; i++) store16(dst + (size_t)(j0 + i) * 64 + i0, t[i]);
        }
}

/* A task: segment seg of head h of sequence bi, key blocks [k0, k1), seen
 * by the query blocks from qlo (later segments are seen by fewer, so the
 * first segments of every head go first). */
typedef struct { int bi, h, g, seg, k0, k1, i_first, queries, nq; } KeySegment;

static KeySegment key_segment(const Shape *s, long task)
{
    int nseg = segments(s), nkb = (s->t + BK - 1) / BK, heads = s->b * s->hq, qlo, qhi;
    KeySegment r = {.seg = (int)(task / heads), .bi = (int)(task % heads / s->hq), .h = (int)(task % s->hq)};
    r.g = r.h / (s->hq / s->hkv);
    r.k0 = (int)((long)r.seg * nkb / nseg);
    r.k1 = (int)((long)(r.seg + 1) * nkb / nseg);
    Shape row = of_row(s, r.bi);
    query_blocks(&row, r.k0 * BK, r.k0 * BK + rows_from(s, r.k0 * BK, (r.k1 - r.k0) * BK), &qlo, &qhi);
    r.i_first = qlo * BQ;
    r.queries = (qhi - qlo) * BQ;
    r.nq = rows_from(s, r.i_first, r.queries);
    return r;
}

static void backward_task(const Job *j, float *buf, long task)
{
    KeySegment seg = key_segment(&j->s, task);
    Shape row = of_row(&j->s, seg.bi);
    const Shape *s = &row;
    int bi = seg.bi, h = seg.h, g = seg.g, i_first = seg.i_first, nq = seg.nq, dp = s->dp, ld = seg.queries + SKEW;
    size_t head = (size_t)(padded(s->t) + SKEW) * dp;
    float *qt = buf, *dot = qt + head, *qh = dot + head, *doh = qh + head, *dqa = doh + head;
    float *ka = dqa + head, *va = ka + 64 * dp, *dk = va + 64 * dp, *dv = dk + 64 * dp;
    float *sc = dv + 64 * dp, *dpr = sc + 64 * 64, *ds = dpr + 64 * 64;
    const float *l = j->lse + ((size_t)bi * s->hq + h) * s->t, *d = j->dsum + ((size_t)bi * s->hq + h) * s->t;
    bool grouped = s->hq != s->hkv;
    load_cols(qt, ld, seg.queries, s, j->q, s->hq, bi, h, i_first, nq);
    load_cols(dot, ld, seg.queries, s, j->dout, s->hq, bi, h, i_first, nq);
    load_rows(qh, seg.queries, s, j->q, s->hq, bi, h, i_first, nq);
    load_rows(doh, seg.queries, s, j->dout, s->hq, bi, h, i_first, nq);
    memset(dqa, 0, sizeof(float) * (size_t)seg.queries * dp);
    for (int kb = seg.k0; kb < seg.k1; kb++) {
        int j0 = kb * BK, n = rows_from(s, j0, BK), lo, hi;
        load_rows(ka, 64, s, j->k, s->hkv, bi, g, j0, n);
        load_rows(va, 64, s, j->v, s->hkv, bi, g, j0, n);
        memset(dk, 0, sizeof(float) * 64 * (size_t)dp);
        memset(dv, 0, sizeof(float) * 64 * (size_t)dp);
        query_blocks(s, j0, j0 + n, &lo, &hi);
        for (int qb = lo; qb < hi; qb++) {
            int i0 = qb * BQ, m = rows_from(s, i0, BQ), row = i0 - i_first;
            block_gemm(sc, 64, ka, dp, qt + row, ld, 64, 64, s->dh, 0);     /* s^T */
            block_gemm(dpr, 64, va, dp, dot + row, ld, 64, 64, s->dh, 0);   /* dp^T */
            probabilities(s, sc, dpr, l, d, i0, m, j0, n);
            block_gemm(dv, dp, sc, 64, doh + (size_t)row * dp, dp, 64, dp, m, 1);
            block_gemm(dk, dp, dpr, 64, qh + (size_t)row * dp, dp, 64, dp, m, 1);
            transpose64(ds, dpr);
            block_gemm(dqa + (size_t)row * dp, dp, ds, 64, ka, dp, 64, dp, n, 1);
        }
        if (grouped) {   /* this query head's part; summed over the group afterwards */
            store_rows(j->dkp, 0, s, s->hq, bi, h, j0, n, dk, 1);
            store_rows(j->dvp, 0, s, s->hq, bi, h, j0, n, dv, 1);
        } else {
            store_rows(j->dk, s->bf16, s, s->hkv, bi, g, j0, n, dk, s->scale);
            store_rows(j->dv, s->bf16, s, s->hkv, bi, g, j0, n, dv, 1);
        }
    }
    if (segments(s) == 1) {
        store_rows(j->dq, s->bf16, s, s->hq, bi, h, i_first, nq, dqa, s->scale);
        return;
    }
    /* the segment's whole partial dq: 0 in the rows it did not see */
    float *part = j->dqp + (size_t)seg.seg * query_floats(s);
    for (int i = 0; i < s->t; i++)
        if (i < i_first || i >= i_first + nq)
            memset(part + (((size_t)bi * s->t + i) * s->hq + h) * s->dh, 0, sizeof(float) * (size_t)s->dh);
    store_rows(part, 0, s, s->hq, bi, h, i_first, nq, dqa, 1);
}

/* dst[bi, i, hd, :] = scale * the sum in order over x < count of src's
 * terms: term x of row (bi, i, hd) is `stride` floats after term 0, which
 * is head hd * (src_heads / heads) of src's row (bi, i). Segments: stride
 * one tensor, same heads; groups: stride one head, src_heads = hq. */
typedef struct {
    void *dst;
    const float *src;
    const Shape *s;
    int bf16, heads, count, src_heads;
    size_t stride;
    float scale;
} Reduce;

static void reduce_rows(void *ctx, size_t first, size_t end)
{
    const Reduce *a = ctx;
    const Shape *s = a->s;
    void *dst = a->dst;
    int bf16 = a->bf16, heads = a->heads, count = a->count, src_heads = a->src_heads, per = src_heads / heads;
    size_t stride = a->stride;
    float scale = a->scale;
    for (long row = (long)first; row < (long)end; row++) {
        long bt = row / heads;
        int hd = (int)(row % heads);
        const float *first = a->src + ((size_t)bt * src_heads + (size_t)hd * per) * s->dh;
        for (int c0 = 0; c0 < s->dh; c0 += 64) {   /* 64 columns at a time, summed across the terms */
            int w = s->dh - c0 < 64 ? s->dh - c0 : 64;
            float acc[64];
            memcpy(acc, first + c0, sizeof(float) * (size_t)w);
            for (int x = 1; x < count; x++)
                for (int c = 0; c < w; c++) acc[c] += first[(size_t)x * stride + c0 + c];
            for (int c = 0; c < w; c++) mtx_store(dst, bf16, (size_t)row * s->dh + c0 + c, acc[c] * scale);
        }
    }
}

static void reduce_heads(void *dst, int bf16, int heads, const float *src, int count, size_t stride, int src_heads,
                         const Shape *s, float scale)
{
    size_t rows = (size_t)s->b * s->t * heads;
    Reduce a = {dst, src, s, bf16, heads, count, src_heads, stride, scale};
    mtx_parallel(reduce_rows, &a, rows, 1, (double)rows * s->dh * count * MTX_COST_ELEMENT_NS);
}

typedef struct {
    float *dsum;
    const void *dout, *o;
    const Shape *s;
} RowDots;

/* D = rowsum(do o) per query row and head */
static void dsum_rows(void *ctx, size_t first, size_t end)
{
    const RowDots *a = ctx;
    const Shape *s = a->s;
    for (size_t row = first; row < end; row++) {
        int h = (int)(row % s->hq), i = (int)(row / s->hq % s->t), bi = (int)(row / s->hq / s->t);
        float acc = 0;
        for (int c = 0; c < s->dh; c++)
            acc += mtx_load(a->dout, s->bf16, row * s->dh + c) * mtx_load(a->o, s->bf16, row * s->dh + c);
        a->dsum[((size_t)bi * s->hq + h) * s->t + i] = acc;
    }
}

static void flash_backward(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k,
                           const void *v, const void *o, const float *lse, Shape s)
{
    float *dsum = mtx_scratch(), *partial = dsum + ((size_t)s.b * s.hq * s.t + 15) / 16 * 16;
    int nseg = segments(&s), group = s.hq / s.hkv;
    float *dqp = partial, *dkp = dqp + (nseg > 1 ? (size_t)nseg * query_floats(&s) : 0), *dvp = dkp + query_floats(&s);
    Job j = {.s = s, .dq = dq, .dk = dk, .dv = dv, .lse = (float *)lse, .dsum = dsum, .dqp = dqp, .dkp = dkp,
             .dvp = dvp, .q = q, .k = k, .v = v, .dout = dout, .out = o};
    RowDots dots = {dsum, dout, o, &s};
    size_t rows = (size_t)s.b * s.t * s.hq;
    mtx_parallel(dsum_rows, &dots, rows, 1, (double)rows * s.dh * 2 * MTX_COST_ELEMENT_NS);
    run_tasks(&j, (long)nseg * s.b * s.hq, backward_task);
    if (nseg > 1) reduce_heads(dq, s.bf16, s.hq, dqp, nseg, query_floats(&s), s.hq, &s, s.scale);
    if (group > 1) {
        reduce_heads(dk, s.bf16, s.hkv, dkp, group, (size_t)s.dh, s.hq, &s, s.scale);
        reduce_heads(dv, s.bf16, s.hkv, dvp, group, (size_t)s.dh, s.hq, &s, 1);
    }
}

void mtx_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, const float *o, const float *lse, const int32_t *bounds, int b, int t,
                                  int hq, int hkv, int dh, int window, float scale, float cap)
{
    flash_backward(dq, dk, dv, dout, q, k, v, o, lse, shape(bounds, b, t, hq, hkv, dh, window, scale, cap, 0));
}

void mtx_flash_attention_backward_bf16(mtx_bf16 *dq, mtx_bf16 *dk, mtx_bf16 *dv, const mtx_bf16 *dout,
                                       const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v, const mtx_bf16 *o,
                                       const float *lse, const int32_t *bounds, int b, int t, int hq, int hkv, int dh,
                                       int window, float scale, float cap)
{
    flash_backward(dq, dk, dv, dout, q, k, v, o, lse, shape(bounds, b, t, hq, hkv, dh, window, scale, cap, 1));
}
