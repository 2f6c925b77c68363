/* The loss: MaxText's cross-entropy over float32 logits (cast_logits_to_fp32),
 * forward and backward. bf16 logits are read as float32 (exactly) and their
 * gradient is rounded to bf16 once, as a cast to float32 before the loss
 * and its transpose after it would do, without a float32 copy of the
 * [tokens, vocab] logits. */
#include "elements.h"

#include <string.h>

/* A loss's rows, for the pool. */
typedef struct {
    void *dlogits;
    const void *logits;
    const int32_t *targets, *seg;
    int bf16, vocab, start;      /* start: the group's first row (forward) */
    float g;                     /* the gradient's scale (backward) */
    double *row_loss;
} Loss;

static void loss_rows(mtx_range_fn rows, Loss *a, int n)
{
    mtx_parallel(rows, a, (size_t)n, 1, (double)n * a->vocab * 4 * MTX_COST_ELEMENT_NS);
}

static void loss_forward_rows(void *ctx, size_t first, size_t end)
{
    const Loss *a = ctx;
    const void *logits = a->logits;
    int bf16 = a->bf16, vocab = a->vocab;
    for (size_t r = first; r < end; r++) {
        size_t i = (size_t)a->start + r;
        a->row_loss[r] = 0;
        if (!a->seg[i]) continue;
        size_t row = i * vocab;
        float max = mtx_load(logits, bf16, row);
        for (int j = 1; j < vocab; j++) max = mtx_load(logits, bf16, row + j) > max ? mtx_load(logits, bf16, row + j) : max;
        double sum = 0;
        for (int j = 0; j < vocab; j++) sum += mtx_exp(mtx_load(logits, bf16, row + j) - max);
        a->row_loss[r] = log(sum) + max - mtx_load(logits, bf16, row + a->targets[i]);
    }
}

/* Mean cross-entropy over targets whose segmentation is non-zero (MaxText:
 * sum(xent * weights) / (sum(weights) + 1e-8)), or with sum the sum alone
 * (one tile of num_vocab_tiling, whose sums and weights the step adds).
 * Returns the loss. */
static float cross_entropy(const void *logits, int bf16, const int32_t *targets, const int32_t *seg, int n,
                           int vocab, float *weight, int sum)
{
    /* Rows in parallel, a group at a time, each group's losses then summed in
     * row order: the same bits for any number of threads, and no heap. */
    enum { GROUP = 2048 };
    double row_loss[GROUP], total = 0, count = 0;
    for (int start = 0; start < n; start += GROUP) {
        int rows = n - start < GROUP ? n - start : GROUP;
        Loss a = {NULL, logits, targets, seg, bf16, vocab, start, 0, row_loss};
        loss_rows(loss_forward_rows, &a, rows);
        for (int r = 0; r < rows; r++) {
            if (!seg[start + r]) continue;
            total += row_loss[r];
            count += 1;
        }
    }
    *weight = (float)count;
    return (float)(sum ? total : total / (count + 1e-8));
}

float mtx_cross_entropy_forward(const float *logits, const int32_t *targets, const int32_t *seg, int n, int vocab,
                                float *weight, int sum)
{
    return cross_entropy(logits, 0, targets, seg, n, vocab, weight, sum);
}

float mtx_cross_entropy_forward_bf16(const mtx_bf16 *logits, const int32_t *targets, const int32_t *seg, int n,
                                     int vocab, float *weight, int sum)
{
    return cross_entropy(logits, 1, targets, seg, n, vocab, weight, sum);
}

/* d loss / d logits = (softmax - onehot(target)) * dloss / count, per row
 * (with sum: * dloss). */
static float gradient_scale(const int32_t *seg, int n, const float *dloss, int sum)
{
    if (sum) return dloss[0];
    double count = 0;
    for (int i = 0; i < n; i++) count += seg[i] != 0;
    return (float)(dloss[0] / (count + 1e-8));
}

static void loss_backward_rows(void *ctx, size_t first, size_t end)
{
    const Loss *a = ctx;
    const int32_t *seg = a->seg, *targets = a->targets;
    int vocab = a->vocab;
    float g = a->g;
    for (size_t i = first; i < end; i++) {
        const float *l = (const float *)a->logits + i * vocab;
        float *dl = (float *)a->dlogits + i * vocab;
        if (!seg[i]) {
            memset(dl, 0, sizeof(float) * vocab);
            continue;
        }
        float max = l[0], sum = 0;
        for (int j = 1; j < vocab; j++) max = l[j] > max ? l[j] : max;
        for (int j = 0; j < vocab; j++) sum += dl[j] = mtx_exp(l[j] - max);
        for (int j = 0; j < vocab; j++) dl[j] = dl[j] / sum * g;
        dl[targets[i]] -= g;
    }
}

void mtx_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                const int32_t *seg, int n, int vocab, const float *dloss, int sum)
{
    Loss a = {dlogits, logits, targets, seg, 0, vocab, 0, gradient_scale(seg, n, dloss, sum), NULL};
    loss_rows(loss_backward_rows, &a, n);
}

/* The same from bf16 logits into bf16 dlogits: each element computed in
 * float32 and rounded once (the exponentials are computed twice rather
 * than kept in bf16). */
static void loss_backward_rows_bf16(void *ctx, size_t first, size_t end)
{
    const Loss *a = ctx;
    const int32_t *seg = a->seg, *targets = a->targets;
    int vocab = a->vocab;
    float g = a->g;
    for (size_t i = first; i < end; i++) {
        const mtx_bf16 *l = (const mtx_bf16 *)a->logits + i * vocab;
        mtx_bf16 *dl = (mtx_bf16 *)a->dlogits + i * vocab;
        if (!seg[i]) {
            memset(dl, 0, sizeof(mtx_bf16) * vocab);
            continue;
        }
        float max = mtx_bf16_to_f32(l[0]), sum = 0;
        for (int j = 1; j < vocab; j++) max = mtx_bf16_to_f32(l[j]) > max ? mtx_bf16_to_f32(l[j]) : max;
        for (int j = 0; j < vocab; j++) sum += mtx_exp(mtx_bf16_to_f32(l[j]) - max);
        for (int j = 0; j < vocab; j++) {
            float d = mtx_exp(mtx_bf16_to_f32(l[j]) - max) / sum * g;
            dl[j] = mtx_f32_to_bf16(j == targets[i] ? d - g : d);
        }
    }
}

void mtx_cross_entropy_backward_bf16(mtx_bf16 *dlogits, const mtx_bf16 *logits, const int32_t *targets,
                                     const int32_t *seg, int n, int vocab, const float *dloss, int sum)
{
    Loss a = {dlogits, logits, targets, seg, 1, vocab, 0, gradient_scale(seg, n, dloss, sum), NULL};
    loss_rows(loss_backward_rows_bf16, &a, n);
}

/* num_vocab_tiling's row tiles of the decoder output, and their gradient. */
void mtx_copy_rows(void *y, const void *x, size_t first, size_t n, size_t width, size_t elem)
{
    memcpy(y, (const char *)x + first * width * elem, n * width * elem);
}

void mtx_copy_rows_back(void *y, const void *dy, size_t first, size_t n, size_t width, size_t rows, size_t elem)
{
    char *out = y;
    memset(out, 0, first * width * elem);
    memcpy(out + first * width * elem, dy, n * width * elem);
    memset(out + (first + n) * width * elem, 0, (rows - first - n) * width * elem);
}
