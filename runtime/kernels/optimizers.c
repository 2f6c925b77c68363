/* Optimizer updates (optax's adamw, adamw with nesterov, sgd, muon;
 * praxis's adam_pax), the global norm's sum of squares and MaxText's
 * learning-rate schedules: float32, parallel over elements. */
#include "mtxrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SQUARES_CHUNK = 1 << 16, SQUARES_GROUP = 1024 };

typedef struct {
    const float *x;
    size_t n, first;       /* the group's first chunk */
    double *parts;
} Squares;

static void squares_chunks(void *ctx, size_t first, size_t end)
{
    const Squares *q = ctx;
    for (size_t c = first; c < end; c++) {
        size_t begin = (q->first + c) * SQUARES_CHUNK, stop = begin + SQUARES_CHUNK < q->n ? begin + SQUARES_CHUNK : q->n;
        double part = 0;
        for (size_t i = begin; i < stop; i++) part += (double)q->x[i] * q->x[i];
        q->parts[c] = part;
    }
}

double mtx_sum_of_squares(const float *x, size_t n)
{
    /* Fixed chunks summed in parallel, a group at a time, then in chunk
     * order: the same bits for any number of threads, and no heap. */
    size_t chunks = (n + SQUARES_CHUNK - 1) / SQUARES_CHUNK;
    double parts[SQUARES_GROUP], s = 0;
    for (size_t first = 0; first < chunks; first += SQUARES_GROUP) {
        size_t count = chunks - first < SQUARES_GROUP ? chunks - first : SQUARES_GROUP;
        Squares q = {x, n, first, parts};
        size_t len = (first + count) * SQUARES_CHUNK < n ? count * SQUARES_CHUNK : n - first * SQUARES_CHUNK;
        mtx_parallel(squares_chunks, &q, count, 1, (double)len * MTX_COST_ELEMENT_NS);
        for (size_t c = 0; c < count; c++) s += parts[c];
    }
    return s;
}

/* One optimizer update over a tensor: the arguments of every rule below. */
typedef struct {
    float *p, *mu, *nu;
    const float *g;
    float clip, lr, b1, b2, eps, eps_root, wd, bc1, bc2, bc1_next;
} Update;

/* An update's elements on the pool: each element costs a few nanoseconds. */
static void update_all(mtx_range_fn rule, Update *u, size_t n)
{
    mtx_parallel(rule, u, n, 64, (double)n * 4 * MTX_COST_ELEMENT_NS);
}

static void adamw_range(void *ctx, size_t first, size_t end)
{
    const Update *u = ctx;
    float *p = u->p, *mu = u->mu, *nu = u->nu;
    const float *g = u->g;
    float b1 = u->b1, b2 = u->b2, clip = u->clip, bc1 = u->bc1, bc2 = u->bc2, eps = u->eps, eps_root = u->eps_root;
    float wd = u->wd, lr = u->lr;
    for (size_t i = first; i < end; i++) {
        float gi = g[i] * clip;
        mu[i] = b1 * mu[i] + (1 - b1) * gi;
        nu[i] = b2 * nu[i] + (1 - b2) * gi * gi;
        float update = (mu[i] / bc1) / (sqrtf(nu[i] / bc2 + eps_root) + eps) + wd * p[i];
        p[i] -= lr * update;
    }
}

/* optax.adamw: bias-corrected moments, eps outside and eps_root inside the root,
 * decoupled weight decay; g is scaled by clip first. */
void mtx_adamw_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip,
                      float lr, float b1, float b2, float eps, float eps_root, float wd,
                      float bc1, float bc2)
{
    Update u = {p, mu, nu, g, clip, lr, b1, b2, eps, eps_root, wd, bc1, bc2, 0};
    update_all(adamw_range, &u, n);
}


/* MaxText's cosine schedule: linear warmup from 0 over total * warmup_fraction
 * steps, cosine decay to peak * final_fraction at total, 0 past total. */
float mtx_cosine_schedule(int64_t step, int64_t total, float peak, float warmup_fraction, float final_fraction)
{
    int64_t warmup = (int64_t)((double)total * warmup_fraction);
    if (step < warmup) return peak * (float)step / (float)warmup;
    if (step >= total) return 0.0f;
    float pct = (float)(step - warmup) / (float)(total - warmup);
    float a = 0.5f * (cosf(3.14159265358979f * pct) + 1.0f);
    return peak * a + peak * final_fraction * (1.0f - a);
}

/* MaxText's adam_pax (praxis sharded_adam): the bias correction is folded into
 * the decays, decay * (1 - decay^(t-1)) / (1 - decay^t), so no later rescaling. */
static void adam_pax_range(void *ctx, size_t first, size_t end)
{
    const Update *u = ctx;
    float *p = u->p, *mu = u->mu, *nu = u->nu;
    const float *g = u->g;
    float decay1 = u->b1, decay2 = u->b2, clip = u->clip, lr = u->lr, eps = u->eps, eps_root = u->eps_root, wd = u->wd;
    for (size_t i = first; i < end; i++) {
        float gi = g[i] * clip;
        mu[i] = (1 - decay1) * gi + decay1 * mu[i];
        nu[i] = (1 - decay2) * gi * gi + decay2 * nu[i];
        p[i] -= lr * (mu[i] / (sqrtf(nu[i] + eps_root) + eps) + wd * p[i]);
    }
}

void mtx_adam_pax_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip,
                         float lr, float decay1, float decay2, float eps, float eps_root, float wd)
{
    Update u = {p, mu, nu, g, clip, lr, decay1, decay2, eps, eps_root, wd, 0, 0, 0};
    update_all(adam_pax_range, &u, n);
}

/* MaxText's warmup-stable-decay schedule: linear warmup from 0, the peak for
 * the stable part, then a linear or cosine decay to peak * final_fraction over
 * total * decay_fraction steps; 0 past total. */
float mtx_wsd_schedule(int64_t step, int64_t total, float peak, float warmup_fraction, float decay_fraction,
                       float final_fraction, int cosine)
{
    int64_t warmup = (int64_t)((double)total * warmup_fraction);
    int64_t decay = (int64_t)((double)total * decay_fraction);
    int64_t stable = total - warmup - decay;
    if (step < warmup) return peak * (float)step / (float)warmup;
    if (step < warmup + stable) return peak;
    if (step >= total) return 0.0f;
    float pct = (float)(step - warmup - stable) / (float)decay, final = peak * final_fraction;
    if (!cosine) return peak + (final - peak) * pct;
    float a = 0.5f * (cosf(3.14159265358979f * pct) + 1.0f);
    return peak * a + final * (1.0f - a);
}

/* optax.sgd: p -= lr * g, after clipping; no momentum, no weight decay. */
static void sgd_range(void *ctx, size_t first, size_t end)
{
    const Update *u = ctx;
    float *p = u->p;
    const float *g = u->g;
    float lr = u->lr, clip = u->clip;
    for (size_t i = first; i < end; i++) p[i] -= lr * (g[i] * clip);
}

void mtx_sgd_update(float *p, const float *g, size_t n, float clip, float lr)
{
    Update u = {p, NULL, NULL, g, clip, lr, 0, 0, 0, 0, 0, 0, 0, 0};
    update_all(sgd_range, &u, n);
}

static void adamw_nesterov_range(void *ctx, size_t first, size_t end)
{
    const Update *u = ctx;
    float *p = u->p, *mu = u->mu, *nu = u->nu;
    const float *g = u->g;
    float b1 = u->b1, b2 = u->b2, clip = u->clip, lr = u->lr, bc1 = u->bc1, bc2 = u->bc2, bc1_next = u->bc1_next;
    float eps = u->eps, eps_root = u->eps_root, wd = u->wd;
    for (size_t i = first; i < end; i++) {
        float gi = g[i] * clip;
        mu[i] = b1 * mu[i] + (1 - b1) * gi;
        nu[i] = b2 * nu[i] + (1 - b2) * gi * gi;
        float m = b1 * mu[i] / bc1_next + (1 - b1) * gi / bc1;
        p[i] -= lr * (m / (sqrtf(nu[i] / bc2 + eps_root) + eps) + wd * p[i]);
    }
}

/* optax.adamw(nesterov=True), as muon uses for the parameters it does not
 * orthogonalize: the first moment is looked at one step ahead,
 * b1 * mu / (1 - b1^(t+1)) + (1 - b1) * g / (1 - b1^t). */
void mtx_adamw_nesterov_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip, float lr,
                               float b1, float b2, float eps, float eps_root, float wd, float t)
{
    float bc1_next = 1.0f - powf(b1, t + 1.0f), bc1 = 1.0f - powf(b1, t), bc2 = 1.0f - powf(b2, t);
    Update u = {p, mu, nu, g, clip, lr, b1, b2, eps, eps_root, wd, bc1, bc2, bc1_next};
    update_all(adamw_nesterov_range, &u, n);
}

/* Bytes of workspace mtx_muon_update needs for a rows x cols matrix. */
size_t mtx_muon_workspace(int rows, int cols)
{
    size_t m = (size_t)(rows < cols ? rows : cols), n = (size_t)(rows < cols ? cols : rows);
    return sizeof(float) * (2 * m * n + 2 * m * m);
}

/* optax.contrib.muon on one 2-D weight [rows = fan_in, cols = fan_out]:
 * Nesterov momentum (bias-corrected like adamw's), orthogonalized by five
 * quintic Newton-Schulz steps on the wider orientation after scaling to unit
 * Frobenius norm, scaled by sqrt(max(1, cols / rows)), plus decoupled weight
 * decay, times the learning rate. work: mtx_muon_workspace(rows, cols) bytes. */
void mtx_muon_update(float *p, float *mu, const float *g, int rows, int cols, float clip, float lr, float beta,
                     float eps, float wd, float t, float *work)
{
    const float c0 = 3.4445f, c1 = -4.7750f, c2 = 2.0315f;
    size_t n_el = (size_t)rows * (size_t)cols;
    int transposed = rows > cols, m = transposed ? cols : rows, n = transposed ? rows : cols;
    float *x = work, *y = x + n_el, *a = y + n_el, *b = a + (size_t)m * m;
    float bc_next = 1.0f - powf(beta, t + 1.0f), bc = 1.0f - powf(beta, t);
    double norm = 0;
    for (size_t i = 0; i < n_el; i++) {
        float gi = g[i] * clip;
        mu[i] = beta * mu[i] + (1 - beta) * gi;
        float v = beta * mu[i] / bc_next + (1 - beta) * gi / bc;
        size_t r = i / (size_t)cols, c = i % (size_t)cols;
        x[transposed ? c * (size_t)rows + r : i] = v;      /* x is m x n */
        norm += (double)v * v;
    }
    float scale = 1.0f / ((float)sqrt(norm) + eps);
    for (size_t i = 0; i < n_el; i++) x[i] *= scale;
    for (int step = 0; step < 5; step++) {
        mtx_sgemm(0, 0, m, m, n, 1, x, n, 1, x, 1, n, 0, a, m, 1);            /* a = x x^T */
        mtx_sgemm(0, 0, m, m, m, c2, a, m, 1, a, m, 1, 0, b, m, 1);           /* b = c2 a a */
        for (size_t i = 0; i < (size_t)m * m; i++) b[i] += c1 * a[i];         /*   + c1 a */
        for (size_t i = 0; i < n_el; i++) y[i] = c0 * x[i];
        mtx_sgemm(0, 0, m, n, m, 1, b, m, 1, x, n, 1, 1, y, n, 1);            /* y = c0 x + b x */
        float *tmp = x;
        x = y;
        y = tmp;
    }
    float width = sqrtf(fmaxf(1.0f, (float)cols / (float)rows));
    for (size_t i = 0; i < n_el; i++) {
        size_t r = i / (size_t)cols, c = i % (size_t)cols;
        float u = width * x[transposed ? c * (size_t)rows + r : i];
        p[i] -= lr * (u + wd * p[i]);
    }
}
