/* Examples of local JSON datasets (hf_data.c), private to the trainer's data. */
#ifndef MTXC_HF_DATA_H
#define MTXC_HF_DATA_H

#include "mtxrt_trainer.h"

#include <stdbool.h>

/* Every example's tokens one after another; example i is tokens.v[starts[i] .. starts[i + 1]). */
typedef struct {
    mtx_tokens tokens;
    int64_t *starts, n, slots;
    int64_t dropped;                      /* examples of fewer than 2 tokens (nothing to predict), left out */
    int64_t truncated;                    /* examples cut to max_tokens */
    int files;
} mtx_examples;

/* The examples of every file matching pattern (glob(3), in its sorted
 * order), column through tk, each cut to max_tokens (0: whole); key names
 * the pattern's key in messages. 0 with one message (file:line) on error. */
int mtx_json_examples(const char *key, const char *pattern, const char *column, const mtx_tokenizer *tk, bool add_bos,
                      bool add_eos, int64_t max_tokens, mtx_examples *out, char *err, size_t errlen);
void mtx_examples_free(mtx_examples *x);

#endif
