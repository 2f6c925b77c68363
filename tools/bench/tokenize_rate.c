/* Tokenizing speed of libmtxrt's tokenizers: MB/s of mtx_tokenizer_encode
 * on a whole file (one thread, the median of 5 runs), and of
 * mtx_tokenizer_encode_lines, the data path (line by line in chunks over
 * the trainer's threads, MTX_NUM_THREADS). Loading the tokenizer is timed
 * apart.
 * Usage: tokenize_rate TYPE PATH FILE   (TYPE: sentencepiece, huggingface, tiktoken) */
#include <stdio.h>
#include <stdlib.h>

#include "mtxrt.h"
#include "mtxrt_trainer.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tokenize_rate TYPE PATH FILE\n");
        return 2;
    }
    char err[1024];
    const char *why;
    size_t size;
    double t0 = mtx_seconds();
    mtx_tokenizer *t = mtx_tokenizer_open(argv[1], argv[2], err, sizeof err);
    double load = mtx_seconds() - t0;
    char *text = mtx_read_file(argv[3], (size_t)1 << 32, 0, &size, &why);
    if (!t || !text) {
        fprintf(stderr, "tokenize_rate: %s\n", t ? why : err);
        return 1;
    }
    double whole[5], lines[5];
    long long n = 0;
    for (int r = 0; r < 5; r++) {
        mtx_tokens out = {0};
        t0 = mtx_seconds();
        if (!mtx_tokenizer_encode(t, text, size, &out, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        whole[r] = mtx_seconds() - t0;
        n = out.n;
        free(out.v);
        out = (mtx_tokens){0};
        t0 = mtx_seconds();
        if (!mtx_tokenizer_encode_lines(t, text, size, false, false, argv[3], &out, NULL, NULL, err, sizeof err))
            return fprintf(stderr, "%s\n", err), 1;
        lines[r] = mtx_seconds() - t0;
        free(out.v);
    }
    qsort(whole, 5, sizeof *whole, cmp);
    qsort(lines, 5, sizeof *lines, cmp);
    printf("%s: loaded in %.2f s; %.2f MB, %lld tokens; encode %.2f MB/s (1 thread); lines %.2f MB/s (%d threads)\n",
           mtx_tokenizer_kind(t), load, size / 1e6, n, size / 1e6 / whole[2], size / 1e6 / lines[2], mtx_num_threads());
    free(text);
    mtx_tokenizer_close(t);
    return 0;
}
