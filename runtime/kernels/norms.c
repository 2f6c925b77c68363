/* Norms and RoPE, forward and backward, rows of d, for float32 and bf16
 * activations alike (elements.h): statistics and arithmetic in float32,
 * each bf16 result rounded once; scales, biases and their gradients are
 * float32 params. A float32 program computes exactly as plain float32 code. */
#include "elements.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define X(i) mtx_load(x, bf16, (i))
#define DY(i) mtx_load(dy, bf16, (i))

/* 1 / rms of row i */
static float inv_rms(const void *x, int bf16, size_t row, int d, float eps)
{
    float ss = 0;
    for (int j = 0; j < d; j++) ss += X(row + j) * X(row + j);
    return 1.0f / sqrtf(ss / d + eps);
}

/* A norm's rows, for the pool: out is y forward and dx backward. */
typedef struct {
    void *out;
    const void *x, *dy;
    const float *w, *bias;
    int bf16, d;
    float eps;
} Norm;

static void norm_rows(mtx_range_fn rows, Norm *a, int n)
{
    mtx_parallel(rows, a, (size_t)n, 1, (double)n * a->d * 3 * MTX_COST_ELEMENT_NS);
}

static void rmsnorm_rows(void *ctx, size_t first, size_t end)
{
    const Norm *a = ctx;
    const void *x = a->x;
    const float *w = a->w;
    int bf16 = a->bf16, d = a->d;
    for (size_t i = first; i < end; i++) {
        size_t row = i * d;
        float r = inv_rms(x, bf16, row, d, a->eps);
        for (int j = 0; j < d; j++) mtx_store(a->out, bf16, row + j, X(row + j) * r * w[j]);
    }
}

/* y = x / rms(x) * w */
static void rmsnorm_forward(void *y, const void *x, int bf16, const float *w, int n, int d, float eps)
{
    Norm a = {y, x, NULL, w, NULL, bf16, d, eps};
    norm_rows(rmsnorm_rows, &a, n);
}

static void rmsnorm_grad_rows(void *ctx, size_t first, size_t end)
{
    const Norm *a = ctx;
    const void *x = a->x, *dy = a->dy;
    const float *w = a->w;
    int bf16 = a->bf16, d = a->d;
    for (size_t i = first; i < end; i++) {
        size_t row = i * d;
        float r = inv_rms(x, bf16, row, d, a->eps), gx = 0;
        for (int j = 0; j < d; j++) gx += DY(row + j) * w[j] * X(row + j);
        float c = gx * r * r * r / d;
        for (int j = 0; j < d; j++) mtx_store(a->out, bf16, row + j, DY(row + j) * w[j] * r - X(row + j) * c);
    }
}

static void rmsnorm_backward(void *dx, float *dw, const void *dy, const void *x, int bf16, const float *w, int n,
                             int d, float eps)
{
    Norm a = {dx, x, dy, w, NULL, bf16, d, eps};
    norm_rows(rmsnorm_grad_rows, &a, n);
    /* dw sums over rows in row order: the same bits for any number of threads */
    memset(dw, 0, sizeof(float) * d);
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)i * d;
        float r = inv_rms(x, bf16, row, d, eps);
        for (int j = 0; j < d; j++) dw[j] += DY(row + j) * X(row + j) * r;
    }
}

/* mean and 1 / std of row i */
static void moments(const void *x, int bf16, size_t row, int d, float eps, float *mean, float *r)
{
    float m = 0, var = 0;
    for (int j = 0; j < d; j++) m += X(row + j);
    m /= d;
    for (int j = 0; j < d; j++) var += (X(row + j) - m) * (X(row + j) - m);
    *mean = m;
    *r = 1.0f / sqrtf(var / d + eps);
}

static void layernorm_rows(void *ctx, size_t first, size_t end)
{
    const Norm *a = ctx;
    const void *x = a->x;
    const float *scale = a->w, *bias = a->bias;
    int bf16 = a->bf16, d = a->d;
    for (size_t i = first; i < end; i++) {
        size_t row = i * d;
        float mean, r;
        moments(x, bf16, row, d, a->eps, &mean, &r);
        for (int j = 0; j < d; j++)
            mtx_store(a->out, bf16, row + j, (X(row + j) - mean) * r * (1.0f + scale[j]) + bias[j]);
    }
}

/* y = (x - mean) / std * (1 + scale) + bias: MaxText's LayerNorm keeps the scale around zero */
static void layernorm_forward(void *y, const void *x, int bf16, const float *scale, const float *bias, int n, int d,
                              float eps)
{
    Norm a = {y, x, NULL, scale, bias, bf16, d, eps};
    norm_rows(layernorm_rows, &a, n);
}

static void layernorm_grad_rows(void *ctx, size_t first, size_t end)
{
    const Norm *a = ctx;
    const void *x = a->x, *dy = a->dy;
    const float *scale = a->w;
    int bf16 = a->bf16, d = a->d;
    float eps = a->eps;
    void *dx = a->out;
    for (size_t i = first; i < end; i++) {
        size_t row = i * d;
        float mean, r, g_mean = 0, gx_mean = 0;
        moments(x, bf16, row, d, eps, &mean, &r);
        for (int j = 0; j < d; j++) {
            float xhat = (X(row + j) - mean) * r, g = DY(row + j) * (1.0f + scale[j]);
            g_mean += g;
            gx_mean += g * xhat;
        }
        g_mean /= d;
        gx_mean /= d;
        for (int j = 0; j < d; j++) {
            float xhat = (X(row + j) - mean) * r;
            mtx_store(dx, bf16, row + j, r * (DY(row + j) * (1.0f + scale[j]) - g_mean - xhat * gx_mean));
        }
    }
}

static void layernorm_backward(void *dx, float *dscale, float *dbias, const void *dy, const void *x, int bf16,
                               const float *scale, int n, int d, float eps)
{
    Norm a = {dx, x, dy, scale, NULL, bf16, d, eps};
    norm_rows(layernorm_grad_rows, &a, n);
    /* dscale and dbias sum over rows in row order, whatever the threads */
    memset(dscale, 0, sizeof(float) * d);
    memset(dbias, 0, sizeof(float) * d);
    for (int i = 0; i < n; i++) {
        size_t row = (size_t)i * d;
        float mean, r;
        moments(x, bf16, row, d, eps, &mean, &r);
        for (int j = 0; j < d; j++) {
            dscale[j] += DY(row + j) * (X(row + j) - mean) * r;
            dbias[j] += DY(row + j);
        }
    }
}

/* Rotary embedding on [b, t, heads, dh]. cos and sin of every (position,
 * frequency) of a call are kept for the next call with the same positions
 * and frequencies: every layer's queries and keys, forward and backward,
 * share one table (the trig functions cost more than the rotation). Kernels
 * are called one at a time. */
static struct { float *cs; int first, t, dh, variant; float lo, hi; } table;

__attribute__((destructor)) static void free_rope_table(void) { free(table.cs); }   /* at exit, or dlclose */

/* Llama 3.1's frequency scaling (MaxText's LLaMARotaryEmbedding, constants
 * of Meta's reference): long wavelengths slowed 8x, short ones kept, a
 * smooth blend between. */
static double llama31_frequency(double f)
{
    const double factor = 8, low = 1, high = 4, old_context = 8192, pi = 3.14159265358979323846;
    double wavelength = 2 * pi / f;
    if (wavelength < old_context / high) return f;
    if (wavelength > old_context / low) return f / factor;
    double smooth = (old_context / wavelength - low) / (high - low);
    return (1 - smooth) * f / factor + smooth * f;
}

static const float *rope_table(int first, int t, int dh, float min_timescale, float max_timescale, int variant)
{
    if (table.cs && table.first == first && table.t == t && table.dh == dh && table.lo == min_timescale &&
        table.hi == max_timescale && table.variant == variant)
        return table.cs;
    int half = dh / 2;
    free(table.cs);
    table.cs = malloc(sizeof(float) * 2 * (size_t)t * (size_t)half);
    if (!table.cs) {
        fprintf(stderr, "mtxrt: error: out of memory for RoPE's table (%d positions x %d)\n", t, half);
        abort();
    }
    float *timescale = malloc(sizeof(float) * (size_t)(half > 0 ? half : 1));   /* each pair's, in float32 as MaxText's */
    if (!timescale) {
        fprintf(stderr, "mtxrt: error: out of memory for RoPE's table (%d frequencies)\n", half);
        abort();
    }
    for (int k = 0; k < half; k++) {
        timescale[k] = min_timescale * powf(max_timescale / min_timescale, 2.0f * k / dh);
        if (variant == MTX_ROPE_LLAMA31) timescale[k] = (float)(1.0 / llama31_frequency(1.0 / timescale[k]));
    }
    for (int p = 0; p < t; p++)
        for (int k = 0; k < half; k++) {
            float angle = (float)(first + p) / timescale[k];
            table.cs[2 * ((size_t)p * half + k)] = cosf(angle);
            table.cs[2 * ((size_t)p * half + k) + 1] = sinf(angle);
        }
    free(timescale);
    table.first = first, table.t = t, table.dh = dh, table.lo = min_timescale, table.hi = max_timescale;
    table.variant = variant;
    return table.cs;
}

typedef struct {
    void *y;
    const void *x;
    const float *cs;
    const int32_t *starts;                /* [b, t] segment starts, or NULL */
    int bf16, b, t, heads, dh, inverse;
    size_t step, other;
} Rope;

/* Tokens [first, end) of every sequence and head, each at its position in
 * its segment (its index, less its segment's start). */
static void rope_positions(void *ctx, size_t first, size_t end)
{
    const Rope *a = ctx;
    const void *x = a->x;
    void *y = a->y;
    int bf16 = a->bf16, b = a->b, t = a->t, heads = a->heads, dh = a->dh, half = dh / 2, inverse = a->inverse;
    size_t step = a->step, other = a->other;
    for (size_t p = first; p < end; p++)
        for (int i = 0; i < b; i++) {
            size_t at = p - (a->starts ? (size_t)a->starts[(size_t)i * t + p] : 0);
            const float *cs = a->cs + 2 * at * (size_t)half;
            for (int k = 0; k < half; k++) {
                float c = cs[2 * k], s = inverse ? -cs[2 * k + 1] : cs[2 * k + 1];
                for (int h = 0; h < heads; h++) {
                    size_t o = (((size_t)i * t + p) * heads + h) * dh + step * (size_t)k;
                    float x1 = X(o), x2 = X(o + other);
                    mtx_store(y, bf16, o, x1 * c - x2 * s);
                    mtx_store(y, bf16, o + other, x2 * c + x1 * s);
                }
            }
        }
}

static void rope_apply(void *y, const void *x, const int32_t *starts, int bf16, int first, int b, int t, int heads,
                       int dh, float min_timescale, float max_timescale, int variant, int inverse)
{
    int half = dh / 2;
    const float *cs = rope_table(first, t, dh, min_timescale, max_timescale, variant);
    /* the pair rotated together: (k, k + half), or (2k, 2k + 1) */
    size_t step = variant == MTX_ROPE_HALVES ? 1 : 2, other = variant == MTX_ROPE_HALVES ? (size_t)half : 1;
    Rope a = {y, x, cs, starts, bf16, b, t, heads, dh, inverse, step, other};
    mtx_parallel(rope_positions, &a, (size_t)t, 1, (double)b * t * heads * dh * 2 * MTX_COST_ELEMENT_NS);
}

/* ---- the float32 and bf16 entry points ---- */

void mtx_rmsnorm_forward(float *y, const float *x, const float *w, int n, int d, float eps)
{
    rmsnorm_forward(y, x, 0, w, n, d, eps);
}

void mtx_rmsnorm_forward_bf16(mtx_bf16 *y, const mtx_bf16 *x, const float *w, int n, int d, float eps)
{
    rmsnorm_forward(y, x, 1, w, n, d, eps);
}

void mtx_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int n, int d, float eps)
{
    rmsnorm_backward(dx, dw, dy, x, 0, w, n, d, eps);
}

void mtx_rmsnorm_backward_bf16(mtx_bf16 *dx, float *dw, const mtx_bf16 *dy, const mtx_bf16 *x, const float *w, int n,
                               int d, float eps)
{
    rmsnorm_backward(dx, dw, dy, x, 1, w, n, d, eps);
}

void mtx_layernorm_forward(float *y, const float *x, const float *scale, const float *bias, int n, int d, float eps)
{
    layernorm_forward(y, x, 0, scale, bias, n, d, eps);
}

void mtx_layernorm_forward_bf16(mtx_bf16 *y, const mtx_bf16 *x, const float *scale, const float *bias, int n, int d,
                                float eps)
{
    layernorm_forward(y, x, 1, scale, bias, n, d, eps);
}

void mtx_layernorm_backward(float *dx, float *dscale, float *dbias, const float *dy, const float *x,
                            const float *scale, int n, int d, float eps)
{
    layernorm_backward(dx, dscale, dbias, dy, x, 0, scale, n, d, eps);
}

void mtx_layernorm_backward_bf16(mtx_bf16 *dx, float *dscale, float *dbias, const mtx_bf16 *dy, const mtx_bf16 *x,
                                 const float *scale, int n, int d, float eps)
{
    layernorm_backward(dx, dscale, dbias, dy, x, 1, scale, n, d, eps);
}

void mtx_rope_apply(float *y, const float *x, const int32_t *starts, int b, int t, int heads, int dh,
                    float min_timescale, float max_timescale, mtx_rope_variant variant, int inverse)
{
    rope_apply(y, x, starts, 0, 0, b, t, heads, dh, min_timescale, max_timescale, (int)variant, inverse);
}

void mtx_rope_apply_bf16(mtx_bf16 *y, const mtx_bf16 *x, const int32_t *starts, int b, int t, int heads, int dh,
                         float min_timescale, float max_timescale, mtx_rope_variant variant, int inverse)
{
    rope_apply(y, x, starts, 1, 0, b, t, heads, dh, min_timescale, max_timescale, (int)variant, inverse);
}

void mtx_rope_apply_at(float *y, const float *x, int first, int b, int t, int heads, int dh, float min_timescale,
                       float max_timescale, mtx_rope_variant variant)
{
    rope_apply(y, x, NULL, 0, first, b, t, heads, dh, min_timescale, max_timescale, (int)variant, 0);
}

void mtx_rope_apply_at_bf16(mtx_bf16 *y, const mtx_bf16 *x, int first, int b, int t, int heads, int dh,
                            float min_timescale, float max_timescale, mtx_rope_variant variant)
{
    rope_apply(y, x, NULL, 1, first, b, t, heads, dh, min_timescale, max_timescale, (int)variant, 0);
}
