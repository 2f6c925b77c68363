/* Choosing the next token from logits, as MaxText's inference_utils.sampling:
 *   greedy     the largest logit (the lowest id among equals);
 *   weighted   a draw from softmax(logits / temperature);
 *   topk       a draw among the top_k largest logits, by temperature;
 *   nucleus    a draw among the largest logits whose probabilities (at
 *              temperature 1) reach nucleus_p, the one that crosses it
 *              included, by temperature;
 *   composite  top_k, then nucleus_p within it, then temperature.
 * Temperature 0 is greedy for every strategy. A draw is one uniform number
 * from (key, counter), so a seed and a step give the same token. */
#include "mtxrt_trainer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float logit; int id; } Entry;

static int larger_first(const void *pa, const void *pb)
{
    const Entry *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id - b->id;
}

static int argmax(const float *logits, int vocab)
{
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* A draw from softmax(e[i].logit / temperature) over the first n entries. */
static int draw(const Entry *e, int n, float temperature, float u)
{
    double top = e[0].logit, total = 0;
    for (int i = 0; i < n; i++) total += exp(((double)e[i].logit - top) / temperature);
    double target = u * total, sum = 0;
    for (int i = 0; i < n; i++) {
        sum += exp(((double)e[i].logit - top) / temperature);
        if (sum > target) return e[i].id;
    }
    return e[n - 1].id;
}

/* How many of the first n entries (sorted, largest first) the nucleus keeps:
 * those whose cumulative probability (softmax over the n) is below p, and
 * the one that reaches it; with ties, MaxText's nucleus keeps every logit
 * equal to that one (its composite does not). */
static int nucleus(const Entry *e, int n, float p, bool ties)
{
    double top = e[0].logit, total = 0;
    for (int i = 0; i < n; i++) total += exp((double)e[i].logit - top);
    double cum = 0;
    int keep = 0;
    while (keep < n - 1) {
        cum += exp((double)e[keep].logit - top) / total;
        if (cum >= p) break;
        keep++;
    }
    while (ties && keep + 1 < n && e[keep + 1].logit == e[keep].logit) keep++;
    return keep + 1;
}

int mtx_sample(const float *logits, int vocab, const mtx_sampling *s, mtx_rng_key key, uint64_t counter)
{
    if (s->strategy == MTX_SAMPLE_GREEDY || s->temperature <= 0) return argmax(logits, vocab);
    Entry *e = malloc(sizeof(Entry) * (size_t)vocab);
    if (!e) return argmax(logits, vocab);
    for (int i = 0; i < vocab; i++) e[i] = (Entry){logits[i], i};
    qsort(e, (size_t)vocab, sizeof *e, larger_first);
    int n = vocab;
    if (s->strategy == MTX_SAMPLE_TOPK || s->strategy == MTX_SAMPLE_COMPOSITE) n = s->top_k < vocab ? s->top_k : vocab;
    if (s->strategy == MTX_SAMPLE_NUCLEUS || s->strategy == MTX_SAMPLE_COMPOSITE)
        n = nucleus(e, n, s->nucleus_p, s->strategy == MTX_SAMPLE_NUCLEUS);
    int id = draw(e, n, s->temperature, mtx_rng_uniform(key, counter));
    free(e);
    return id;
}
