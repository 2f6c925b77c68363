/* Attention's kernels (dtype dot_product): scores = scale q k^T per (batch,
 * head), a causal softmax over each row, and the values p v, forward and
 * backward, on q, k, v laid out [b, t, heads, dh]; query head h reads kv
 * head h / (hq / hkv). Float32 programs run GEMMs on strided views of the
 * operands; bf16 programs (the _bf16 kernels) widen one head's operands
 * into the runtime's scratch, multiply in float32 with BLIS and round each
 * result once, so that no T x T tensor exists in float32 between ops. The
 * softmax reads and writes bf16 directly. */
#include "elements.h"

#include <string.h>

/* Causal softmax over rows of t x t score blocks; future positions get 0. */
/* Packed rows: each token's segment is the run of equal ids it is in;
 * bounds[0] its first position, bounds[1] the one past its last. */
void mtx_segment_bounds(int32_t *bounds, const int32_t *ids, int b, int t)
{
    for (int i = 0; i < b; i++) {
        const int32_t *id = ids + (size_t)i * t;
        int32_t *start = bounds + (size_t)i * t, *end = bounds + ((size_t)b + i) * t;
        for (int p = 0; p < t; p++) start[p] = p > 0 && id[p] == id[p - 1] ? start[p - 1] : p;
        for (int p = t - 1; p >= 0; p--) end[p] = p + 1 < t && id[p] == id[p + 1] ? end[p + 1] : p + 1;
    }
}

/* Row i of a block sees keys [lo, i]: lo = 0, or i - window + 1 with a
 * sliding window (MaxText's LOCAL_SLIDING: window keys including itself),
 * and never before its segment's start. */
static int first_key(int i, int window, int start)
{
    int lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
    return lo > start ? lo : start;
}

/* A softmax's (or a widening's) blocks of rows, for the pool. */
typedef struct {
    void *out;
    const void *in, *dp;
    int bf16, t, window;
    int cols;
    size_t rs;
    const int32_t *starts;                /* [b, t] segment starts; block blk is sequence blk / heads */
    int heads;
} Rows;

static void softmax_blocks(void *ctx, size_t first, size_t end)
{
    const Rows *a = ctx;
    const float *s = a->in;
    float *p = a->out;
    int t = a->t, window = a->window;
    for (size_t blk = first; blk < end; blk++)
        for (int i = 0; i < t; i++) {
            const float *sr = s + (blk * t + i) * t;
            float *pr = p + (blk * t + i) * t;
            int lo = first_key(i, window, a->starts ? a->starts[blk / (size_t)a->heads * (size_t)t + (size_t)i] : 0);
            float max = sr[lo], sum = 0;
            for (int j = lo + 1; j <= i; j++) max = sr[j] > max ? sr[j] : max;
            for (int j = 0; j < lo; j++) pr[j] = 0;
            for (int j = lo; j <= i; j++) sum += pr[j] = mtx_exp(sr[j] - max);
            for (int j = lo; j <= i; j++) pr[j] /= sum;
            for (int j = i + 1; j < t; j++) pr[j] = 0;
        }
}

/* blocks of t x t scores, each element a few nanoseconds */
static void over_blocks(mtx_range_fn fn, Rows *a, int blocks)
{
    mtx_parallel(fn, a, (size_t)blocks, 1, (double)blocks * a->t * a->t * 3 * MTX_COST_ELEMENT_NS);
}

void mtx_causal_softmax_forward(float *p, const float *s, const int32_t *starts, int blocks, int heads, int t,
                                int window)
{
    Rows a = {p, s, NULL, 0, t, window, 0, 0, starts, heads};
    over_blocks(softmax_blocks, &a, blocks);
}

static void softmax_grad_blocks(void *ctx, size_t first, size_t end)
{
    const Rows *a = ctx;
    const void *p = a->in, *dp = a->dp;
    void *ds = a->out;
    int bf16 = a->bf16;
    size_t t = (size_t)a->t;
    for (size_t r = first * t; r < end * t; r++) {
        float dot = 0;
        for (size_t j = r * t; j < (r + 1) * t; j++) dot += mtx_load(p, bf16, j) * mtx_load(dp, bf16, j);
        for (size_t j = r * t; j < (r + 1) * t; j++) mtx_store(ds, bf16, j, mtx_load(p, bf16, j) * (mtx_load(dp, bf16, j) - dot));
    }
}

/* ds = p (dp - <p, dp>) per row, in either dtype */
static void softmax_backward(void *ds, const void *p, const void *dp, int bf16, int blocks, int t)
{
    Rows a = {ds, p, dp, bf16, t, 0, 0, 0, NULL, 1};
    over_blocks(softmax_grad_blocks, &a, blocks);
}

void mtx_causal_softmax_backward(float *ds, const float *p, const float *dp, int blocks, int t)
{
    softmax_backward(ds, p, dp, 0, blocks, t);
}

/* Attention products, one GEMM per (batch, head) on strided views of
 * q, k, v laid out [b, t, heads, dh]. Query head h reads kv head h / group. */
void mtx_attention_scores(float *s, const float *q, const float *k, int b, int t,
                          int hq, int hkv, int dh, float scale)
{
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            const float *qh = q + ((size_t)i * t * hq + h) * dh;
            const float *kh = k + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            float *sh = s + ((size_t)i * hq + h) * t * t;
            mtx_sgemm(0, 0, t, t, dh, scale, qh, hq * dh, 1, kh, 1, hkv * dh, 0, sh, t, 1);
        }
}

void mtx_attention_scores_backward(float *dq, float *dk, const float *ds, const float *q,
                                   const float *k, int b, int t, int hq, int hkv, int dh, float scale)
{
    memset(dk, 0, sizeof(float) * (size_t)b * t * hkv * dh);
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            const float *qh = q + ((size_t)i * t * hq + h) * dh;
            const float *kh = k + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            const float *dsh = ds + ((size_t)i * hq + h) * t * t;
            float *dqh = dq + ((size_t)i * t * hq + h) * dh;
            float *dkh = dk + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            mtx_sgemm(0, 0, t, dh, t, scale, dsh, t, 1, kh, hkv * dh, 1, 0, dqh, hq * dh, 1);
            mtx_sgemm(0, 0, t, dh, t, scale, dsh, 1, t, qh, hq * dh, 1, 1, dkh, hkv * dh, 1);
        }
}

void mtx_attention_values(float *o, const float *p, const float *v, int b, int t, int hq, int hkv, int dh)
{
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            const float *ph = p + ((size_t)i * hq + h) * t * t;
            const float *vh = v + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            float *oh = o + ((size_t)i * t * hq + h) * dh;
            mtx_sgemm(0, 0, t, dh, t, 1, ph, t, 1, vh, hkv * dh, 1, 0, oh, hq * dh, 1);
        }
}

void mtx_attention_values_backward(float *dp, float *dv, const float *dout, const float *p,
                                   const float *v, int b, int t, int hq, int hkv, int dh)
{
    memset(dv, 0, sizeof(float) * (size_t)b * t * hkv * dh);
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            const float *ph = p + ((size_t)i * hq + h) * t * t;
            const float *vh = v + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            const float *doh = dout + ((size_t)i * t * hq + h) * dh;
            float *dph = dp + ((size_t)i * hq + h) * t * t;
            float *dvh = dv + ((size_t)i * t * hkv + h / (hq / hkv)) * dh;
            mtx_sgemm(0, 0, t, t, dh, 1, doh, hq * dh, 1, vh, 1, hkv * dh, 0, dph, t, 1);
            mtx_sgemm(0, 0, t, dh, t, 1, ph, 1, t, doh, hq * dh, 1, 1, dvh, hkv * dh, 1);
        }
}

/* ---- bf16: one head at a time through float32 scratch ---- */

static void widen_rows(void *ctx, size_t first, size_t end)
{
    const Rows *a = ctx;
    float *dst = a->out;
    const mtx_bf16 *src = a->in;
    size_t cols = (size_t)a->cols;
    for (size_t i = first; i < end; i++)
        for (size_t j = 0; j < cols; j++) dst[i * cols + j] = mtx_bf16_to_f32(src[i * a->rs + j]);
}

/* A [rows, cols] bf16 view with row stride rs, widened into dense float32. */
static void widen(float *dst, const mtx_bf16 *src, int rows, int cols, size_t rs)
{
    Rows a = {dst, src, NULL, 1, 0, 0, cols, rs, NULL, 1};
    mtx_parallel(widen_rows, &a, (size_t)rows, 1, (double)rows * cols * MTX_COST_ELEMENT_NS);
}

static void narrow_rows(void *ctx, size_t first, size_t end)
{
    const Rows *a = ctx;
    mtx_bf16 *dst = a->out;
    const float *src = a->in;
    size_t cols = (size_t)a->cols;
    for (size_t i = first; i < end; i++)
        for (size_t j = 0; j < cols; j++) dst[i * a->rs + j] = mtx_f32_to_bf16(src[i * cols + j]);
}

/* Dense float32 [rows, cols] rounded into a bf16 view with row stride rs. */
static void narrow(mtx_bf16 *dst, size_t rs, const float *src, int rows, int cols)
{
    Rows a = {dst, src, NULL, 1, 0, 0, cols, rs, NULL, 1};
    mtx_parallel(narrow_rows, &a, (size_t)rows, 1, (double)rows * cols * MTX_COST_ELEMENT_NS);
}

/* Scratch the _bf16 kernels need: one t x t block and four t x dh ones. */
size_t mtx_attention_scratch(int t, int dh)
{
    return sizeof(float) * ((size_t)t * t + 4 * (size_t)t * dh);
}

static void softmax_blocks_bf16(void *ctx, size_t first, size_t end)
{
    const Rows *a = ctx;
    const mtx_bf16 *s = a->in;
    mtx_bf16 *p = a->out;
    int t = a->t, window = a->window;
    for (size_t blk = first; blk < end; blk++)
        for (int i = 0; i < t; i++) {
            const mtx_bf16 *sr = s + (blk * t + i) * t;
            mtx_bf16 *pr = p + (blk * t + i) * t;
            int lo = first_key(i, window, a->starts ? a->starts[blk / (size_t)a->heads * (size_t)t + (size_t)i] : 0);
            float max = mtx_bf16_to_f32(sr[lo]), sum = 0;
            for (int j = lo + 1; j <= i; j++) max = mtx_bf16_to_f32(sr[j]) > max ? mtx_bf16_to_f32(sr[j]) : max;
            for (int j = lo; j <= i; j++) sum += mtx_exp(mtx_bf16_to_f32(sr[j]) - max);
            for (int j = 0; j < lo; j++) pr[j] = 0;
            for (int j = lo; j <= i; j++) pr[j] = mtx_f32_to_bf16(mtx_exp(mtx_bf16_to_f32(sr[j]) - max) / sum);
            for (int j = i + 1; j < t; j++) pr[j] = 0;
        }
}

void mtx_causal_softmax_forward_bf16(mtx_bf16 *p, const mtx_bf16 *s, const int32_t *starts, int blocks, int heads,
                                     int t, int window)
{
    Rows a = {p, s, NULL, 1, t, window, 0, 0, starts, heads};
    over_blocks(softmax_blocks_bf16, &a, blocks);
}

void mtx_causal_softmax_backward_bf16(mtx_bf16 *ds, const mtx_bf16 *p, const mtx_bf16 *dp, int blocks, int t)
{
    softmax_backward(ds, p, dp, 1, blocks, t);
}

void mtx_attention_scores_bf16(mtx_bf16 *s, const mtx_bf16 *q, const mtx_bf16 *k, int b, int t, int hq, int hkv,
                               int dh, float scale)
{
    float *sc = mtx_scratch(), *qa = sc + (size_t)t * t, *kb = qa + (size_t)t * dh;
    int group = hq / hkv;
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            if (h % group == 0) widen(kb, k + ((size_t)i * t * hkv + h / group) * dh, t, dh, (size_t)hkv * dh);
            widen(qa, q + ((size_t)i * t * hq + h) * dh, t, dh, (size_t)hq * dh);
            mtx_sgemm(0, 0, t, t, dh, scale, qa, dh, 1, kb, 1, dh, 0, sc, t, 1);
            narrow(s + ((size_t)i * hq + h) * t * t, (size_t)t, sc, t, t);
        }
}

/* dq = scale ds k; dk = scale ds^T q, summed in float32 over the query heads
 * of each kv head before it is rounded. */
void mtx_attention_scores_backward_bf16(mtx_bf16 *dq, mtx_bf16 *dk, const mtx_bf16 *ds, const mtx_bf16 *q,
                                        const mtx_bf16 *k, int b, int t, int hq, int hkv, int dh, float scale)
{
    float *dsa = mtx_scratch(), *qa = dsa + (size_t)t * t, *kb = qa + (size_t)t * dh, *dqc = kb + (size_t)t * dh;
    float *dka = dqc + (size_t)t * dh;
    int group = hq / hkv;
    for (int i = 0; i < b; i++)
        for (int kv = 0; kv < hkv; kv++) {
            widen(kb, k + ((size_t)i * t * hkv + kv) * dh, t, dh, (size_t)hkv * dh);
            for (int g = 0; g < group; g++) {
                int h = kv * group + g;
                widen(dsa, ds + ((size_t)i * hq + h) * t * t, t, t, (size_t)t);
                widen(qa, q + ((size_t)i * t * hq + h) * dh, t, dh, (size_t)hq * dh);
                mtx_sgemm(0, 0, t, dh, t, scale, dsa, t, 1, kb, dh, 1, 0, dqc, dh, 1);
                narrow(dq + ((size_t)i * t * hq + h) * dh, (size_t)hq * dh, dqc, t, dh);
                mtx_sgemm(0, 0, t, dh, t, scale, dsa, 1, t, qa, dh, 1, g ? 1 : 0, dka, dh, 1);
            }
            narrow(dk + ((size_t)i * t * hkv + kv) * dh, (size_t)hkv * dh, dka, t, dh);
        }
}

void mtx_attention_values_bf16(mtx_bf16 *o, const mtx_bf16 *p, const mtx_bf16 *v, int b, int t, int hq, int hkv, int dh)
{
    float *pa = mtx_scratch(), *vb = pa + (size_t)t * t, *oc = vb + (size_t)t * dh;
    int group = hq / hkv;
    for (int i = 0; i < b; i++)
        for (int h = 0; h < hq; h++) {
            if (h % group == 0) widen(vb, v + ((size_t)i * t * hkv + h / group) * dh, t, dh, (size_t)hkv * dh);
            widen(pa, p + ((size_t)i * hq + h) * t * t, t, t, (size_t)t);
            mtx_sgemm(0, 0, t, dh, t, 1, pa, t, 1, vb, dh, 1, 0, oc, dh, 1);
            narrow(o + ((size_t)i * t * hq + h) * dh, (size_t)hq * dh, oc, t, dh);
        }
}

/* dp = dout v^T; dv = p^T dout, summed in float32 over the query heads of
 * each kv head before it is rounded. */
void mtx_attention_values_backward_bf16(mtx_bf16 *dp, mtx_bf16 *dv, const mtx_bf16 *dout, const mtx_bf16 *p,
                                        const mtx_bf16 *v, int b, int t, int hq, int hkv, int dh)
{
    float *pa = mtx_scratch(), *doa = pa + (size_t)t * t, *vb = doa + (size_t)t * dh, *dva = vb + (size_t)t * dh;
    int group = hq / hkv;
    for (int i = 0; i < b; i++)
        for (int kv = 0; kv < hkv; kv++) {
            widen(vb, v + ((size_t)i * t * hkv + kv) * dh, t, dh, (size_t)hkv * dh);
            for (int g = 0; g < group; g++) {
                int h = kv * group + g;
                widen(doa, dout + ((size_t)i * t * hq + h) * dh, t, dh, (size_t)hq * dh);
                mtx_sgemm(0, 0, t, t, dh, 1, doa, dh, 1, vb, 1, dh, 0, pa, t, 1);
                narrow(dp + ((size_t)i * hq + h) * t * t, (size_t)t, pa, t, t);
                widen(pa, p + ((size_t)i * hq + h) * t * t, t, t, (size_t)t);
                mtx_sgemm(0, 0, t, dh, t, 1, pa, 1, t, doa, dh, 1, g ? 1 : 0, dva, dh, 1);
            }
            narrow(dv + ((size_t)i * t * hkv + kv) * dh, (size_t)hkv * dh, dva, t, dh);
        }
}
