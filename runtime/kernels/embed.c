/* The embedding's kernels: rows of a table picked by token ids, the learned
 * position embedding added to activations, and the bias gradient (column
 * sums): float32, row-major, parallel over rows or columns. Compiled once
 * with libmtxrt (-O3 for this CPU, the floating-point contract of
 * generated code). */
#include "mtxrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *y;
    const float *table;
    const int32_t *tokens;
    int d;
} Embed;

static void embed_rows(void *ctx, size_t first, size_t end)
{
    const Embed *e = ctx;
    for (size_t i = first; i < end; i++)
        memcpy(e->y + i * e->d, e->table + (size_t)e->tokens[i] * e->d, sizeof(float) * e->d);
}

/* rows of table picked by token ids */
void mtx_embed_forward(float *y, const float *table, const int32_t *tokens, int n, int d)
{
    Embed e = {y, table, tokens, d};
    mtx_parallel(embed_rows, &e, (size_t)n, 1, (double)n * d * MTX_COST_ELEMENT_NS);
}

void mtx_embed_backward(float *dtable, const float *dy, const int32_t *tokens, int n, int vocab, int d)
{
    memset(dtable, 0, sizeof(float) * (size_t)vocab * d);
    for (int i = 0; i < n; i++) {
        float *row = dtable + (size_t)tokens[i] * d;
        const float *g = dy + (size_t)i * d;
        for (int j = 0; j < d; j++) row[j] += g[j];
    }
}

typedef struct {
    float *y;
    const float *x, *pos;
    const int32_t *starts;
    int t, d;
} PositionAdd;

static void position_add_rows(void *ctx, size_t first, size_t end)
{
    const PositionAdd *a = ctx;
    size_t d = (size_t)a->d;
    for (size_t i = first; i < end; i++) {
        size_t at = i % (size_t)a->t - (a->starts ? (size_t)a->starts[i] : 0);   /* the position within its segment */
        for (size_t j = 0; j < d; j++) a->y[i * d + j] = a->x[i * d + j] + a->pos[at * d + j];
    }
}

/* y[b, t] = x[b, t] + pos[t - start]: learned position embedding, counted from each segment's start */
void mtx_position_add_forward(float *y, const float *x, const float *pos, const int32_t *starts, int b, int t, int d)
{
    PositionAdd a = {y, x, pos, starts, t, d};
    mtx_parallel(position_add_rows, &a, (size_t)b * t, 1, (double)b * t * d * MTX_COST_ELEMENT_NS);
}

/* Decoding: y[b, t] = x[b, t] + pos[first + t] */
void mtx_position_add_at(float *y, const float *x, const float *pos, int first, int b, int t, int d, int rows)
{
    if (first < 0 || first + t > rows) {
        fprintf(stderr, "mtxrt: error: positions [%d, %d) outside the %d learned ones\n", first, first + t, rows);
        abort();
    }
    for (int i = 0; i < b * t; i++)
        for (int j = 0; j < d; j++) y[(size_t)i * d + j] = x[(size_t)i * d + j] + pos[(size_t)(first + i % t) * d + j];
}

void mtx_position_add_backward(float *dpos, const float *dy, const int32_t *starts, int b, int t, int rows, int d)
{
    memset(dpos, 0, sizeof(float) * (size_t)rows * d);
    for (int i = 0; i < b * t; i++)
        for (int j = 0; j < d; j++) dpos[(size_t)(i % t - (starts ? starts[i] : 0)) * d + j] += dy[(size_t)i * d + j];
}

/* The gradient of y = x + bias over rows of d: column sums, each column
 * summed in row order (the same bits for any thread count), a block of
 * columns per thread so that rows are read along cache lines rather than
 * down a column. */
enum { BIAS_BLOCK = 64 };

typedef struct {
    float *dbias;
    const float *dy;
    int n, d;
} BiasGrad;

static void bias_columns(void *ctx, size_t first, size_t end)
{
    const BiasGrad *b = ctx;
    for (size_t j0 = first; j0 < end; j0 += BIAS_BLOCK) {
        size_t w = end - j0 < BIAS_BLOCK ? end - j0 : BIAS_BLOCK;
        float sum[BIAS_BLOCK] = {0};
        for (int i = 0; i < b->n; i++) {
            const float *row = b->dy + (size_t)i * b->d + j0;
            for (size_t j = 0; j < w; j++) sum[j] += row[j];
        }
        for (size_t j = 0; j < w; j++) b->dbias[j0 + j] = sum[j];
    }
}

void mtx_bias_backward(float *dbias, const float *dy, int n, int d)
{
    BiasGrad b = {dbias, dy, n, d};
    mtx_parallel(bias_columns, &b, (size_t)d, BIAS_BLOCK, (double)n * d * MTX_COST_ELEMENT_NS);
}
