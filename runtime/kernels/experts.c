/* Mixture of experts, dropless (MaxText's sparse_matmul path): each token's
 * k experts from the router's logits, the N*k (token, slot) rows sorted by
 * expert, one GEMM per expert over its contiguous rows, and the weighted sum
 * back in token order. The row count is always N*k; only how it splits over
 * the experts changes from step to step. Float32 throughout (bf16 operands
 * are widened by the compiler, as MaxText's weight sum is float32). */
#include "mtxrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Top k of each row (ties to the lower expert, as lax.top_k) and the
 * softmax over those k logits. normalize (norm_topk_prob): MaxText's weights
 * in dtype divided by their sum in dtype, each step rounded to bf16 when
 * bf16 (the result then converts to bf16 exactly). In exact arithmetic it is
 * the identity, so the gradient is the softmax's. */
/* A kernel's tokens (or rows, or sequences), for the pool: the arguments
 * of every loop below, each using the fields it names. */
typedef struct {
    float *out, *out2;
    const float *in, *in2, *w;
    const int32_t *experts, *row_of;
    int32_t *chosen;             /* the router's choices (its output) */
    int num_experts, k, d, t, flag, bf16;
    float scale;
} Experts;

/* n units of about `each` nanoseconds on the pool */
static void over(mtx_range_fn fn, Experts *a, int n, double each)
{
    mtx_parallel(fn, a, (size_t)n, 1, (double)n * each * MTX_COST_ELEMENT_NS);
}

static void route_tokens(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    int num_experts = a->num_experts, k = a->k, normalize = a->flag, bf16 = a->bf16;
    for (size_t i = first; i < end; i++) {
        const float *row = a->in + i * num_experts;
        float *w = a->out + i * k;
        int32_t *e = a->chosen + i * k;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int x = 0; x < num_experts; x++) {
                bool taken = false;
                for (int q = 0; q < j; q++) taken |= e[q] == x;
                if (!taken && (best < 0 || row[x] > row[best])) best = x;
            }
            e[j] = best;
            w[j] = row[best];
        }
        float top = w[0], sum = 0;                 /* w[0] is the largest */
        for (int j = 0; j < k; j++) sum += w[j] = mtx_exp(w[j] - top);
        for (int j = 0; j < k; j++) w[j] /= sum;
        if (!normalize) continue;
        float total = 0;
        for (int j = 0; j < k; j++) total += w[j] = bf16 ? mtx_round_bf16(w[j]) : w[j];
        if (bf16) total = mtx_round_bf16(total);
        for (int j = 0; j < k; j++) w[j] = bf16 ? mtx_round_bf16(w[j] / total) : w[j] / total;
    }
}

void mtx_topk_route(float *weights, int32_t *experts, const float *logits, int n, int num_experts, int k, int normalize,
                    int bf16)
{
    Experts a = {.out = weights, .in = logits, .chosen = experts, .num_experts = num_experts, .k = k,
                 .flag = normalize, .bf16 = bf16};
    over(route_tokens, &a, n, (double)num_experts * k);
}

/* The softmax's VJP over the chosen k; the other logits get no gradient. */
static void route_grad_tokens(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    int num_experts = a->num_experts, k = a->k;
    for (size_t i = first; i < end; i++) {
        const float *w = a->w + i * k, *dw = a->in + i * k;
        float *d = a->out + i * num_experts, dot = 0;
        memset(d, 0, sizeof(float) * (size_t)num_experts);
        for (int j = 0; j < k; j++) dot += w[j] * dw[j];
        for (int j = 0; j < k; j++) d[a->experts[i * k + j]] = w[j] * (dw[j] - dot);
    }
}

void mtx_topk_route_grad(float *dlogits, const float *dweights, const float *weights, const int32_t *experts, int n,
                         int num_experts, int k)
{
    Experts a = {.out = dlogits, .in = dweights, .w = weights, .experts = experts, .num_experts = num_experts, .k = k};
    over(route_grad_tokens, &a, n, num_experts + 2.0 * k);
}

/* A stable counting sort of the rows (token, slot) by expert, as MaxText's
 * argsort of the flattened choices: order[r] = token * k + slot. */
void mtx_expert_sort(int32_t *order, int32_t *offsets, const int32_t *experts, int n, int num_experts, int k)
{
    memset(offsets, 0, sizeof(int32_t) * (size_t)(num_experts + 1));
    int rows = n * k;
    for (int r = 0; r < rows; r++) offsets[experts[r] + 1]++;
    for (int e = 0; e < num_experts; e++) offsets[e + 1] += offsets[e];
    int32_t *next = malloc(sizeof(int32_t) * (size_t)num_experts);
    if (!next) abort();
    memcpy(next, offsets, sizeof(int32_t) * (size_t)num_experts);
    for (int r = 0; r < rows; r++) order[next[experts[r]]++] = r;
    free(next);
}

static void gather_sorted_rows(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    size_t d = (size_t)a->d;
    for (size_t r = first; r < end; r++) memcpy(a->out + r * d, a->in + (size_t)(a->experts[r] / a->k) * d, sizeof(float) * d);
}

void mtx_gather_rows(float *xs, const float *x, const int32_t *order, int n, int d, int k)
{
    Experts a = {.out = xs, .in = x, .experts = order, .k = k, .d = d};
    over(gather_sorted_rows, &a, n * k, d);
}

/* The inverse of order: the sorted row of each (token, choice) slot. */
static int32_t *rows_of_slots(const int32_t *order, int rows)
{
    int32_t *row_of = malloc(sizeof(int32_t) * (size_t)rows);
    if (!row_of) abort();
    for (int r = 0; r < rows; r++) row_of[order[r]] = r;
    return row_of;
}

static void gather_grad_tokens(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    int d = a->d, k = a->k;
    for (size_t t = first; t < end; t++) {
        float *out = a->out + t * d;
        memcpy(out, a->in + (size_t)a->row_of[t * k] * d, sizeof(float) * (size_t)d);
        for (int j = 1; j < k; j++) {
            const float *g = a->in + (size_t)a->row_of[t * k + j] * d;
            for (int c = 0; c < d; c++) out[c] += g[c];
        }
    }
}

/* Each token's gradient: the sum of its k rows'. */
void mtx_gather_rows_grad(float *dx, const float *dxs, const int32_t *order, int n, int d, int k)
{
    int32_t *row_of = rows_of_slots(order, n * k);
    Experts a = {.out = dx, .in = dxs, .row_of = row_of, .k = k, .d = d};
    over(gather_grad_tokens, &a, n, (double)d * k);
    free(row_of);
}

/* The groups' rows fit the m rows given (a corrupt offset would write past them). */
static void check_rows(const int32_t *offsets, int groups, int m)
{
    if (offsets[0] < 0 || offsets[groups] > m) {
        fprintf(stderr, "mtxrt: error: grouped GEMM rows %d .. %d outside its %d rows\n", offsets[0], offsets[groups], m);
        abort();
    }
}

/* ys[rows of group g] = xs[rows of g] w[g mod local]: w [local, K, N], or
 * [local, N, K] transposed. Without expert parallelism the groups are the
 * experts (local == num_experts); with it they are (source rank, expert)
 * pairs of the rows this rank received, which fill m rows at most: the rows
 * past the last group are left as they are (never read: compiler/fuse.c). */
void mtx_grouped_matmul(float *ys, const float *xs, const float *w, const int32_t *offsets, int m, int n, int kdim,
                        int num_experts, int local, int tb)
{
    for (int g = 0; g < num_experts; g++) {
        int first = offsets[g], rows = offsets[g + 1] - first;
        if (rows <= 0) continue;
        const float *we = w + (size_t)(g % local) * kdim * n;
        mtx_sgemm(0, 0, rows, n, kdim, 1.0f, xs + (size_t)first * kdim, kdim, 1, we, tb ? 1 : n, tb ? kdim : 1, 0.0f,
                  ys + (size_t)first * n, n, 1);
    }
    check_rows(offsets, num_experts, m);
}

/* dw[e] = the sum over e's groups of xs[rows]^T dys[rows]; an expert without rows gets zeros. */
void mtx_grouped_matmul_wgrad(float *dw, const float *xs, const float *dys, const int32_t *offsets, int m, int n,
                              int kdim, int num_experts, int local)
{
    check_rows(offsets, num_experts, m);
    for (int e = 0; e < local; e++) {
        float *de = dw + (size_t)e * kdim * n;
        float beta = 0.0f;
        for (int g = e; g < num_experts; g += local) {
            int first = offsets[g], rows = offsets[g + 1] - first;
            if (rows <= 0) continue;
            mtx_sgemm(0, 0, kdim, n, rows, 1.0f, xs + (size_t)first * kdim, 1, kdim, dys + (size_t)first * n, n, 1,
                      beta, de, n, 1);
            beta = 1.0f;
        }
        if (beta == 0.0f) memset(de, 0, sizeof(float) * (size_t)kdim * n);
    }
}

/* The same in bf16 through a ragged oneDNN plan (rows per call): ys in bf16,
 * accumulated in float32, as MaxText's grouped GEMM with preferred_element_type
 * dtype. The plan knows tb. */
void mtx_grouped_matmul_bf16(const mtx_gemm_plan *plan, mtx_bf16 *ys, const mtx_bf16 *xs, const mtx_bf16 *w,
                             const int32_t *offsets, int m, int n, int kdim, int num_experts, int local)
{
    for (int g = 0; g < num_experts; g++) {
        int first = offsets[g], rows = offsets[g + 1] - first;
        if (rows > 0)
            mtx_gemm_bf16_ragged(plan, rows, xs + (size_t)first * kdim, w + (size_t)(g % local) * kdim * n,
                                 ys + (size_t)first * n);
    }
    check_rows(offsets, num_experts, m);
}

/* dw[e] (float32) = the sum over e's groups of xs[rows]^T dys[rows], bf16
 * operands: a ragged plan over the reduction that adds to dw. */
void mtx_grouped_matmul_wgrad_bf16(const mtx_gemm_plan *plan, float *dw, const mtx_bf16 *xs, const mtx_bf16 *dys,
                                   const int32_t *offsets, int m, int n, int kdim, int num_experts, int local)
{
    check_rows(offsets, num_experts, m);
    memset(dw, 0, sizeof(float) * (size_t)local * kdim * n);
    for (int g = 0; g < num_experts; g++) {
        int first = offsets[g], rows = offsets[g + 1] - first;
        if (rows > 0)
            mtx_gemm_bf16_ragged(plan, rows, xs + (size_t)first * kdim, dys + (size_t)first * n,
                                 dw + (size_t)(g % local) * kdim * n);
    }
}

static void combine_tokens(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    int d = a->d, k = a->k;
    for (size_t t = first; t < end; t++) {
        float *out = a->out + t * d;
        memset(out, 0, sizeof(float) * (size_t)d);
        for (int j = 0; j < k; j++) {
            const float *src = a->in + (size_t)a->row_of[t * k + j] * d, wt = a->w[t * k + j];
            for (int c = 0; c < d; c++) out[c] += wt * src[c];
        }
    }
}

/* y[t] = sum_j weights[t, j] ys[row of (t, j)], in float32. */
void mtx_expert_combine(float *y, const float *ys, const int32_t *order, const float *weights, int n, int d, int k)
{
    int32_t *row_of = rows_of_slots(order, n * k);
    Experts a = {.out = y, .in = ys, .w = weights, .row_of = row_of, .k = k, .d = d};
    over(combine_tokens, &a, n, 2.0 * d * k);
    free(row_of);
}

static void combine_grad_tokens(void *ctx, size_t first, size_t end)
{
    const Experts *a = ctx;
    int d = a->d, k = a->k;
    for (size_t t = first; t < end; t++) {
        const float *g = a->in + t * d;
        for (int j = 0; j < k; j++) {
            int r = a->row_of[t * k + j];
            const float *src = a->in2 + (size_t)r * d, wt = a->w[t * k + j];
            float *out = a->out + (size_t)r * d, dot = 0;
            for (int c = 0; c < d; c++) {
                out[c] = wt * g[c];
                dot += src[c] * g[c];
            }
            a->out2[t * k + j] = dot;
        }
    }
}

void mtx_expert_combine_grad(float *dys, float *dweights, const float *dy, const float *ys, const int32_t *order,
                             const float *weights, int n, int d, int k)
{
    int32_t *row_of = rows_of_slots(order, n * k);
    Experts a = {.out = dys, .out2 = dweights, .in = dy, .in2 = ys, .w = weights, .row_of = row_of, .k = k, .d = d};
    over(combine_grad_tokens, &a, n, 2.0 * d * k);
    free(row_of);
}

/* MaxText's dense_matmul with capacity_factor > 0 (generate_masks): each
 * sequence's (token, choice) pairs in order; a pair past its expert's
 * capacity in that sequence is dropped (weight 0). */
static void capacity_sequences(void *ctx, size_t first_seq, size_t end)
{
    const Experts *a = ctx;
    size_t per = (size_t)a->t * a->k;
    for (size_t b = first_seq; b < end; b++) {
        int *count = calloc((size_t)a->num_experts, sizeof(int));
        if (!count) abort();
        for (size_t r = b * per; r < (b + 1) * per; r++) a->out[r] = ++count[a->experts[r]] <= a->flag ? 1.0f : 0.0f;
        free(count);
    }
}

void mtx_expert_capacity(float *keep, const int32_t *experts, int sequences, int t, int num_experts, int k,
                         int capacity)
{
    Experts a = {.out = keep, .experts = experts, .num_experts = num_experts, .k = k, .t = t, .flag = capacity};
    over(capacity_sequences, &a, sequences, (double)t * k);
}

/* The softmax of every logit row, rounded to bf16 where the model's dtype is (MaxText casts it). */
static void softmax_row(float *p, const float *logits, int num_experts, int bf16)
{
    float top = logits[0], sum = 0;
    for (int e = 1; e < num_experts; e++) top = logits[e] > top ? logits[e] : top;
    for (int e = 0; e < num_experts; e++) sum += p[e] = mtx_exp(logits[e] - top);
    for (int e = 0; e < num_experts; e++) p[e] = bf16 ? mtx_round_bf16(p[e] / sum) : p[e] / sum;
}

/* Switch's loss per sequence (moe.py load_balance_loss): f[b,e] the mean
 * over its tokens of how often e was chosen, P[b,e] the mean router
 * probability; scale sum_b sum_e f P (scale = weight E / sequences, over
 * the layers averaged). */
void mtx_moe_lb_loss(float *loss, const float *logits, const int32_t *experts, int sequences, int t, int num_experts,
                     int k, int bf16, float scale)
{
    double total = 0;
    float *prob = malloc(sizeof(float) * (size_t)num_experts);
    double *f = malloc(sizeof(double) * (size_t)num_experts * 2);
    if (!prob || !f) abort();
    double *P = f + num_experts;
    for (int b = 0; b < sequences; b++) {
        memset(f, 0, sizeof(double) * (size_t)num_experts * 2);
        for (int s = 0; s < t; s++) {
            size_t row = (size_t)b * t + s;
            softmax_row(prob, logits + row * num_experts, num_experts, bf16);
            for (int e = 0; e < num_experts; e++) P[e] += prob[e];
            for (int j = 0; j < k; j++) f[experts[row * k + j]] += 1;
        }
        for (int e = 0; e < num_experts; e++) total += f[e] / t * (P[e] / t);
    }
    free(prob);
    free(f);
    loss[0] = (float)(scale * total);
}

/* d/dlogits: dP[b,e] / dp = 1 / t, through each row's softmax (the choice counts f are constants). */
static void lb_grad_sequences(void *ctx, size_t first_seq, size_t end)
{
    const Experts *a = ctx;
    const float *logits = a->in, *dloss = a->w;
    const int32_t *experts = a->experts;
    float *dlogits = a->out, scale = a->scale;
    int t = a->t, num_experts = a->num_experts, k = a->k, bf16 = a->bf16;
    for (size_t b = first_seq; b < end; b++) {
        float *f = calloc((size_t)num_experts * 2, sizeof(float));
        if (!f) abort();
        float *prob = f + num_experts;
        for (int s = 0; s < t; s++)
            for (int j = 0; j < k; j++) f[experts[((size_t)b * t + s) * k + j]] += 1;
        for (int s = 0; s < t; s++) {
            size_t row = (size_t)b * t + s;
            softmax_row(prob, logits + row * num_experts, num_experts, bf16);
            float *d = dlogits + row * num_experts, dot = 0;
            /* dloss/dp[e] = scale f[e] / t^2 */
            for (int e = 0; e < num_experts; e++) dot += prob[e] * f[e];
            for (int e = 0; e < num_experts; e++)
                d[e] = dloss[0] * scale / ((float)t * t) * prob[e] * (f[e] - dot);
        }
        free(f);
    }
}

void mtx_moe_lb_loss_grad(float *dlogits, const float *logits, const int32_t *experts, const float *dloss,
                          int sequences, int t, int num_experts, int k, int bf16, float scale)
{
    Experts a = {.out = dlogits, .in = logits, .w = dloss, .experts = experts, .num_experts = num_experts, .k = k,
                 .t = t, .bf16 = bf16, .scale = scale};
    over(lb_grad_sequences, &a, sequences, (double)t * num_experts * 4);
}
