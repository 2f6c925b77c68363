/* The tokenizer interface (mtxrt_trainer.h) over its three kinds:
 * SentencePiece (spm.h), and the byte-level BPE of Hugging Face's
 * tokenizer.json and of tiktoken's rank files (bpe.h). Whole files are
 * tokenized line by line in chunks over the trainer's threads. */
#include "bpe.h"
#include "spm.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { KIND_SPM, KIND_HF, KIND_TIKTOKEN } Kind;
static const char *const kind_types[] = {"sentencepiece", "huggingface", "tiktoken"};
static const char *const kind_names[] = {"SentencePiece", "Hugging Face tokenizer", "tiktoken"};

struct mtx_tokenizer {
    Kind kind;
    Spm *spm;
    Bpe *bpe;
    int bos, eos;
};

int mtx_tokens_push(mtx_tokens *t, uint32_t id)
{
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 4096;
        uint32_t *v = realloc(t->v, sizeof(uint32_t) * (size_t)cap);
        if (!v) return 0;
        t->v = v, t->cap = cap;
    }
    t->v[t->n++] = id;
    return 1;
}

mtx_tokenizer *mtx_tokenizer_open(const char *type, const char *path, char *err, size_t errlen)
{
    int k = 0;
    while (k < 3 && strcmp(type, kind_types[k])) k++;
    if (k == 3) {
        snprintf(err, errlen, "tokenizer_type '%s' is none of sentencepiece, huggingface, tiktoken", type);
        return NULL;
    }
    mtx_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, errlen, "out of memory"), NULL;
    t->kind = (Kind)k;
    if (t->kind == KIND_SPM) {
        if ((t->spm = spm_open(path, err, errlen))) t->bos = spm_bos(t->spm), t->eos = spm_eos(t->spm);
    } else {
        BpeEnds ends = {-1, -1};
        t->bpe = t->kind == KIND_HF ? tokenizer_json_load(path, &ends, err, errlen) : tiktoken_load(path, &ends, err, errlen);
        t->bos = (int)ends.bos, t->eos = (int)ends.eos;
    }
    if (!t->spm && !t->bpe) {
        free(t);
        return NULL;
    }
    return t;
}

const char *mtx_tokenizer_kind(const mtx_tokenizer *t) { return kind_names[t->kind]; }
int mtx_tokenizer_vocab(const mtx_tokenizer *t) { return t->spm ? spm_vocab(t->spm) : (int)bpe_vocab(t->bpe); }
int mtx_tokenizer_bos(const mtx_tokenizer *t) { return t->bos; }
int mtx_tokenizer_eos(const mtx_tokenizer *t) { return t->eos; }

static int encode(const mtx_tokenizer *t, BpeScratch *s, const char *text, size_t len, mtx_tokens *out, char *err,
                  size_t errlen)
{
    return t->spm ? spm_encode(t->spm, text, len, out, err, errlen) : bpe_encode(t->bpe, s, text, len, out, err, errlen);
}

int mtx_tokenizer_encode(const mtx_tokenizer *t, const char *text, size_t len, mtx_tokens *out, char *err,
                         size_t errlen)
{
    BpeScratch *s = t->bpe ? bpe_scratch_new(t->bpe) : NULL;
    if (t->bpe && !s) return snprintf(err, errlen, "out of memory"), 0;
    int ok = encode(t, s, text, len, out, err, errlen);
    bpe_scratch_free(s);
    return ok;
}

char *mtx_tokenizer_decode(const mtx_tokenizer *t, const int32_t *ids, int n)
{
    return t->spm ? spm_decode(t->spm, ids, n) : bpe_decode(t->bpe, ids, n);
}

void mtx_tokenizer_close(mtx_tokenizer *t)
{
    if (!t) return;
    if (t->spm) spm_close(t->spm);
    bpe_free(t->bpe);
    free(t);
}

mtx_tokenizer *mtx_tokenizer_for(const char *type, const char *path, int vocab, char *err, size_t errlen)
{
    mtx_tokenizer *t = mtx_tokenizer_open(type, path, err, errlen);
    if (t && mtx_tokenizer_vocab(t) > vocab) {
        snprintf(err, errlen, "tokenizer '%s' has %d %s but vocab_size is %d: set vocab_size to at least %d", path,
                 mtx_tokenizer_vocab(t), t->spm ? "pieces" : "token ids", vocab, mtx_tokenizer_vocab(t));
        mtx_tokenizer_close(t);
        t = NULL;
    }
    return t;
}

/* ---- whole texts, line by line, in chunks over threads ---- */

typedef struct { int64_t *v; int64_t n, cap; } Starts;

static int starts_push(Starts *s, int64_t at)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 256, *v = realloc(s->v, sizeof(int64_t) * (size_t)cap);
        if (!v) return 0;
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = at;
    return 1;
}

enum { CHUNK_BYTES = 1 << 16, MAX_CHUNKS = 1 << 14, ERR_BYTES = 512 };

typedef struct {
    const mtx_tokenizer *t;
    const char *text, *label;
    size_t len, nchunks, *cut;        /* chunk c is text[cut[c], cut[c + 1]), whole lines */
    bool bos, eos;
    mtx_tokens *outs;
    Starts *starts;                   /* per chunk, where each line's tokens start in its output (or NULL) */
    char *errs;                       /* ERR_BYTES a chunk: its error, if it failed */
    atomic_int failed;
    atomic_size_t done;
    double start, shown;
} Lines;

static int encode_chunk(Lines *L, BpeScratch *s, size_t c)
{
    mtx_tokens *out = &L->outs[c];
    char *err = L->errs + c * ERR_BYTES;
    for (size_t at = L->cut[c], stop = L->cut[c + 1]; at < stop;) {
        const char *nl = memchr(L->text + at, '\n', stop - at);
        size_t end = nl ? (size_t)(nl - L->text) : stop;
        if (end > at && L->starts && !starts_push(&L->starts[c], out->n)) {
            snprintf(err, ERR_BYTES, "out of memory");
            return 0;
        }
        if (end > at && !((!L->bos || mtx_tokens_push(out, (uint32_t)L->t->bos)) &&
                          encode(L->t, s, L->text + at, end - at, out, err, ERR_BYTES) &&
                          (!L->eos || mtx_tokens_push(out, (uint32_t)L->t->eos)))) {
            if (!err[0]) snprintf(err, ERR_BYTES, "out of memory");
            return 0;
        }
        at = end + 1;
    }
    return 1;
}

static void progress(Lines *L)
{
    double now = mtx_seconds();
    if (now - L->shown < 1) return;
    L->shown = now;
    size_t done = atomic_load(&L->done);
    fprintf(stderr, "tokenizing '%s': %.0f%% of %.1f MB\n", L->label, 100.0 * (double)done / (double)L->len,
            (double)L->len / 1e6);
}

static void encode_chunks(void *ctx, size_t first, size_t end)
{
    Lines *L = ctx;
    BpeScratch *s = L->t->bpe ? bpe_scratch_new(L->t->bpe) : NULL;
    for (size_t c = first; c < end && !atomic_load(&L->failed); c++) {
        if ((L->t->bpe && !s) || !encode_chunk(L, s, c)) {
            if (!L->errs[c * ERR_BYTES]) snprintf(L->errs + c * ERR_BYTES, ERR_BYTES, "out of memory");
            atomic_store(&L->failed, 1);
            break;
        }
        atomic_fetch_add(&L->done, L->cut[c + 1] - L->cut[c]);
        if (mtx_thread_index() == 0) progress(L);
    }
    bpe_scratch_free(s);
}

/* Chunks of about CHUNK_BYTES, cut after a newline. */
static size_t cut_chunks(const char *text, size_t len, size_t *cut)
{
    size_t want = len / CHUNK_BYTES + 1, n = 0;
    if (want > MAX_CHUNKS) want = MAX_CHUNKS;
    size_t step = len / want + 1;
    cut[0] = 0;
    for (size_t at = 0; at < len;) {
        size_t target = at + step < len ? at + step : len;
        const char *nl = target < len ? memchr(text + target, '\n', len - target) : NULL;
        at = nl ? (size_t)(nl - text) + 1 : len;
        cut[++n] = at;
    }
    return n;
}

/* The line of text that holds byte `at` (1-based), for messages. */
static long long line_of(const char *text, size_t at)
{
    long long line = 1;
    for (const char *p = text; (p = memchr(p, '\n', at - (size_t)(p - text))); p++) line++;
    return line;
}

int mtx_tokenizer_encode_lines(const mtx_tokenizer *t, const char *text, size_t len, bool add_bos, bool add_eos,
                               const char *label, mtx_tokens *out, int64_t **docs, int64_t *ndocs, char *err,
                               size_t errlen)
{
    err[0] = 0;
    if ((add_bos && t->bos < 0) || (add_eos && t->eos < 0)) {
        snprintf(err, errlen, "the tokenizer has no %s token", add_bos && t->bos < 0 ? "bos" : "eos");
        return 0;
    }
    size_t *cut = malloc(sizeof(size_t) * (MAX_CHUNKS + 2));
    Lines L = {.t = t, .text = text, .label = label, .len = len, .cut = cut, .bos = add_bos, .eos = add_eos};
    L.nchunks = cut ? cut_chunks(text, len, cut) : 0;
    L.outs = calloc(L.nchunks + 1, sizeof *L.outs);
    L.starts = docs ? calloc(L.nchunks + 1, sizeof *L.starts) : NULL;
    L.errs = calloc(L.nchunks + 1, ERR_BYTES);
    L.start = L.shown = mtx_seconds();
    int ok = cut && L.outs && L.errs && (!docs || L.starts);
    if (ok && L.nchunks) mtx_parallel(encode_chunks, &L, L.nchunks, 1, (double)len * 40.0);
    int64_t total = 0;
    for (size_t c = 0; ok && c < L.nchunks; c++) {
        if (L.errs[c * ERR_BYTES]) {
            snprintf(err, errlen, "line %lld or after: %s", line_of(text, cut[c]), L.errs + c * ERR_BYTES);
            ok = 0;
        }
        total += L.outs[c].n;
    }
    if (!cut || !L.outs || !L.errs || (docs && !L.starts)) snprintf(err, errlen, "out of memory");
    Starts all = {0};
    for (size_t c = 0; ok && c < L.nchunks; c++) {
        for (int64_t i = 0; ok && L.starts && i < L.starts[c].n; i++) ok = starts_push(&all, out->n + L.starts[c].v[i]);
        for (int64_t i = 0; ok && i < L.outs[c].n; i++) ok = mtx_tokens_push(out, L.outs[c].v[i]);
    }
    if (!ok && !err[0]) snprintf(err, errlen, "out of memory after %lld tokens", (long long)total);
    for (size_t c = 0; L.outs && c < L.nchunks; c++) free(L.outs[c].v);
    for (size_t c = 0; L.starts && c < L.nchunks; c++) free(L.starts[c].v);
    if (docs && ok) *docs = all.v, *ndocs = all.n;
    else free(all.v);
    free(L.outs), free(L.starts), free(L.errs), free(cut);
    if (ok && mtx_seconds() - L.start >= 1)
        fprintf(stderr, "tokenized '%s': %lld tokens in %.1f s\n", label, (long long)out->n, mtx_seconds() - L.start);
    return ok;
}
