/* Training data. dataset_type=synthetic: sequences that follow a fixed rule
 * (next = 5 * token + 3 mod vocab) from a random start, with a random amount of
 * padding at the end, so that a model can learn it and the loss visibly falls. */
#include "mtxrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mtx_data {
    int vocab, batch, seq;
    mtx_rng_key key;
    uint64_t position;                    /* sequences handed out so far */
};

void mtx_batch_alloc(mtx_batch *b, int batch, int seq)
{
    size_t n = (size_t)batch * (size_t)seq;
    b->inputs = mtx_alloc(n * sizeof(int32_t));
    b->targets = mtx_alloc(n * sizeof(int32_t));
    b->segmentation = mtx_alloc(n * sizeof(int32_t));
    b->batch = batch;
    b->seq = seq;
}

void mtx_batch_free(mtx_batch *b)
{
    mtx_free(b->inputs);
    mtx_free(b->targets);
    mtx_free(b->segmentation);
}

mtx_data *mtx_data_open(const char *type, const char *path, int vocab, int batch, int seq,
                        uint64_t seed, char *err, size_t errlen)
{
    (void)path;
    if (strcmp(type, "synthetic")) {
        snprintf(err, errlen, "dataset_type '%s' is not supported by this runtime yet (use synthetic)", type);
        return NULL;
    }
    mtx_data *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *d = (mtx_data){vocab, batch, seq, mtx_rng_seed(seed), 0};
    return d;
}

static void synthetic_sequence(const mtx_data *d, uint64_t index, int32_t *in, int32_t *tgt, int32_t *seg)
{
    mtx_rng_key k = mtx_rng_fold(d->key, index);
    int64_t tok = (int64_t)(mtx_rng_bits(k, 0) % (uint64_t)d->vocab);
    int pad = (int)(mtx_rng_bits(k, 1) % (uint64_t)(d->seq / 8 + 1));
    for (int t = 0; t < d->seq; t++) {
        int64_t next = (5 * tok + 3) % d->vocab;
        int real = t < d->seq - pad;
        in[t] = real ? (int32_t)tok : 0;
        tgt[t] = real ? (int32_t)next : 0;
        seg[t] = real;
        tok = next;
    }
}

void mtx_data_next(mtx_data *d, mtx_batch *b)
{
    for (int i = 0; i < b->batch; i++) {
        size_t off = (size_t)i * (size_t)b->seq;
        synthetic_sequence(d, d->position++, b->inputs + off, b->targets + off, b->segmentation + off);
    }
}

void mtx_data_close(mtx_data *d) { free(d); }
