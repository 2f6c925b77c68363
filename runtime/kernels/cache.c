/* Decoding's KV cache [b, tmax, hkv, dh]: the keys and values of every
 * token so far, written a few rows at a time (the prompt, then one token),
 * and attention of the new tokens' queries over it. A query at position p
 * sees the keys at positions [p - window + 1, p] (window 0: [0, p]), the
 * same keys as in training; one (sequence, head, query) per task, its
 * scores in a row of the thread's buffer. */
#include "elements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mtx_kv_cache_write(void *cache, const void *x, int first, int b, int n, int width, int tmax, int elem_bytes)
{
    if (first < 0 || first + n > tmax) {   /* the decode loop keeps positions in range; a caller that does not is a bug */
        fprintf(stderr, "mtxrt: error: KV cache rows [%d, %d) outside its %d positions\n", first, first + n, tmax);
        abort();
    }
    size_t row = (size_t)width * (size_t)elem_bytes;
    for (int i = 0; i < b; i++)
        memcpy((char *)cache + ((size_t)i * tmax + first) * row, (const char *)x + (size_t)i * n * row, n * row);
}

/* q . k[at .. at + dh) in 16 running sums (so that the loop vectorizes),
 * added in a fixed order. */
static float dot(const float *restrict q, const void *k, int bf16, size_t at, int dh)
{
    float lanes[16] = {0}, s = 0;
    int c = 0;
    for (; c + 16 <= dh; c += 16)
        for (int l = 0; l < 16; l++) lanes[l] += q[c + l] * mtx_load(k, bf16, at + c + l);
    for (; c < dh; c++) s += q[c] * mtx_load(k, bf16, at + c);
    for (int l = 0; l < 16; l++) s += lanes[l];
    return s;
}

typedef struct {
    void *o;
    const void *q, *kc, *vc;
    int bf16, first, n, hq, hkv, dh, window, tmax;
    float scale, cap;
} Cached;

/* Tasks [first, end): one (sequence, head, new position) each. */
static void cached_tasks(void *ctx, size_t first_task, size_t end)
{
    const Cached *a = ctx;
    const void *q = a->q, *kc = a->kc, *vc = a->vc;
    void *o = a->o;
    int bf16 = a->bf16, first = a->first, n = a->n, hq = a->hq, hkv = a->hkv, dh = a->dh, window = a->window;
    int tmax = a->tmax;
    float scale = a->scale, cap = a->cap;
    float *buf = malloc(sizeof(float) * ((size_t)tmax + 2 * (size_t)dh));
    if (!buf) {
        fprintf(stderr, "mtxrt: error: out of memory for attention over the KV cache\n");
        abort();
    }
    float *sc = buf, *acc = buf + tmax, *qf = acc + dh;
    for (long task = (long)first_task; task < (long)end; task++) {
        int i = (int)(task % n), h = (int)(task / n % hq), bi = (int)(task / n / hq), g = h / (hq / hkv);
        int pos = first + i, lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        size_t qa = (((size_t)bi * n + i) * hq + h) * dh;
        float best = -INFINITY, sum = 0;
        for (int c = 0; c < dh; c++) qf[c] = mtx_load(q, bf16, qa + c);
        for (int j = lo; j <= pos; j++) {
            sc[j] = dot(qf, kc, bf16, (((size_t)bi * tmax + j) * hkv + g) * dh, dh) * scale;
            if (cap > 0) sc[j] = cap * mtx_tanh(sc[j] / cap);   /* attn_logits_soft_cap */
        }
        for (int j = lo; j <= pos; j++) best = sc[j] > best ? sc[j] : best;
        for (int c = 0; c < dh; c++) acc[c] = 0;
        for (int j = lo; j <= pos; j++) {
            float p = mtx_exp(sc[j] - best);
            size_t va = (((size_t)bi * tmax + j) * hkv + g) * dh;
            sum += p;
            for (int c = 0; c < dh; c++) acc[c] += p * mtx_load(vc, bf16, va + c);
        }
        for (int c = 0; c < dh; c++) mtx_store(o, bf16, qa + c, acc[c] / sum);
    }
    free(buf);
}

static void cached_attention(void *o, const void *q, const void *kc, const void *vc, int bf16, int first, int b,
                             int n, int hq, int hkv, int dh, int window, int tmax, float scale, float cap)
{
    Cached a = {o, q, kc, vc, bf16, first, n, hq, hkv, dh, window, tmax, scale, cap};
    size_t tasks = (size_t)b * hq * n;
    mtx_parallel(cached_tasks, &a, tasks, 1, (double)tasks * (first + n) * dh * 4 * MTX_COST_ELEMENT_NS);
}

void mtx_cached_attention(float *o, const float *q, const float *kc, const float *vc, int first, int b, int n, int hq,
                          int hkv, int dh, int window, int tmax, float scale, float cap)
{
    cached_attention(o, q, kc, vc, 0, first, b, n, hq, hkv, dh, window, tmax, scale, cap);
}

void mtx_cached_attention_bf16(mtx_bf16 *o, const mtx_bf16 *q, const mtx_bf16 *kc, const mtx_bf16 *vc, int first, int b,
                               int n, int hq, int hkv, int dh, int window, int tmax, float scale, float cap)
{
    cached_attention(o, q, kc, vc, 1, first, b, n, hq, hkv, dh, window, tmax, scale, cap);
}
