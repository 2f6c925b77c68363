/* Training and eval data.
 *   synthetic  sequences that follow a fixed rule (next = 5 x token + 3 mod
 *              vocab) from a random start, with random padding at the end;
 *   tokens     llm.c's token files: a header of 256 int32 (magic, version,
 *              token count), then uint16 tokens (magic 20240520, version 1) or
 *              uint32 tokens (magic 20240801, version 7, for vocab > 65535);
 *   text       the bytes of any file, one token per byte (vocab 256); or,
 *              with tokenizer_path, its lines through the tokenizer
 *              (tokenizer_type), each non-empty line a document between bos and eos
 *              (add_bos, add_eos), as MaxText reads a text file's lines as
 *              examples; a window's documents are segments of their own
 *              (no attention across, positions restart, no target across);
 *   hf         local JSON files (hf_path json, hf_train_files, hf_data.c),
 *              each example's column through the tokenizer, cut to seq
 *              tokens (the eos kept) as MaxText's tokenization truncates;
 *              one example a row (packing false: MaxText's
 *              PadOrTrimToMaxLength then ShiftData): inputs its tokens,
 *              targets the next ones, the last token and the padding
 *              masked (segmentation 0); or (packing true) examples packed
 *              first-fit into rows as segments 1, 2, ... (inputs_segmentation:
 *              attention stays in a segment, positions restart).
 * A file is cut into windows of seq + 1 tokens, stride seq (inputs and
 * targets shifted by one). Training windows come in a fresh permutation per
 * epoch from data_shuffle_seed; eval windows in order. Without an eval file
 * the last tenth of the training file is held out for eval. Every check runs
 * before training starts; the position (windows handed out) is all a
 * checkpoint needs to resume the stream. */
#include "hf_data.h"
#include "mtxrt_trainer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SYNTHETIC, TOKENS };

typedef struct {
    uint32_t *tokens;
    int64_t ntokens, nwindows;
    int64_t *starts;                      /* examples (dataset_type hf): window w is [starts[w], starts[w + 1]) */
    int64_t *docs, ndocs;                 /* text through a tokenizer: where each line's (document's) tokens start */
    int64_t truncated, dropped;           /* examples longer than a row; of fewer than 2 tokens (left out) */
} Stream;

struct mtx_data {
    int kind, vocab, batch, seq;
    int shuffle, packing;                 /* packing: examples (hf) packed first-fit into rows */
    int64_t packed_eval_batches;          /* packing: the eval set's batches of packed_eval_rows rows (0: not counted yet) */
    int packed_eval_rows;
    mtx_rng_key key;
    Stream train, eval;
    uint64_t position;                    /* training windows handed out */
    uint64_t eval_position;
    uint64_t *order;                      /* this epoch's permutation */
    uint64_t order_epoch;
    mtx_tokenizer *tokenizer;             /* text through SentencePiece, or NULL: bytes */
    int bos, eos;
    bool add_bos, add_eos;
    char describe[4400];                  /* what the data is, for the trainer's line */
};

void mtx_batch_alloc(mtx_batch *b, int batch, int seq)
{
    size_t n = (size_t)batch * (size_t)seq;
    b->inputs = mtx_alloc(n * sizeof(int32_t));
    b->targets = mtx_alloc(n * sizeof(int32_t));
    b->segmentation = mtx_alloc(n * sizeof(int32_t));
    b->segment_ids = mtx_alloc(n * sizeof(int32_t));
    b->batch = batch;
    b->seq = seq;
}

void mtx_batch_free(mtx_batch *b)
{
    mtx_free(b->inputs);
    mtx_free(b->targets);
    mtx_free(b->segmentation);
    mtx_free(b->segment_ids);
}

/* ---- reading files ---- */

static unsigned char *read_all(const char *path, size_t *size, char *err, size_t errlen)
{
    const char *why;
    unsigned char *buf = (unsigned char *)mtx_read_file(path, (size_t)1 << 40, 0, size, &why);
    if (!buf) snprintf(err, errlen, "cannot read data file '%s': %s", path, why);
    return buf;
}

static int load_bytes(const char *path, int vocab, Stream *s, char *err, size_t errlen)
{
    if (vocab < 256) {
        snprintf(err, errlen, "dataset_type text reads bytes (256 tokens) but vocab_size is %d", vocab);
        return 0;
    }
    size_t size;
    unsigned char *bytes = read_all(path, &size, err, errlen);
    if (!bytes) return 0;
    s->tokens = malloc(sizeof(uint32_t) * (size ? size : 1));
    for (size_t i = 0; i < size; i++) s->tokens[i] = bytes[i];
    s->ntokens = (int64_t)size;
    free(bytes);
    return 1;
}

/* Text through the tokenizer, line by line (tokenizer.c). */
static int load_pieces(const mtx_data *d, const char *path, Stream *s, char *err, size_t errlen)
{
    size_t size;
    char *text = (char *)read_all(path, &size, err, errlen);
    if (!text) return 0;
    mtx_tokens out = {0};
    char why[512];
    int ok = mtx_tokenizer_encode_lines(d->tokenizer, text, size, d->add_bos, d->add_eos, path, &out, &s->docs,
                                        &s->ndocs, why, sizeof why);
    free(text);
    if (!ok) {
        snprintf(err, errlen, "data file '%s': %s", path, why);
        free(out.v);
        return 0;
    }
    s->tokens = out.v ? out.v : malloc(sizeof(uint32_t));
    s->ntokens = out.n;
    return 1;
}

/* The document starts past `cut` go with the held-out tail (which starts a document of its own). */
static void split_docs(Stream *train, Stream *eval, int64_t cut)
{
    if (!train->docs) return;
    int64_t k = 0;
    while (k < train->ndocs && train->docs[k] < cut) k++;
    eval->docs = malloc(sizeof(int64_t) * (size_t)(train->ndocs - k + 1));
    if (!eval->docs) return;   /* the tail is then one document a window */
    eval->docs[eval->ndocs++] = 0;
    for (int64_t i = k; i < train->ndocs; i++)
        if (train->docs[i] > cut) eval->docs[eval->ndocs++] = train->docs[i] - cut;
    train->ndocs = k;
}

static int load_tokens(const char *path, int vocab, Stream *s, char *err, size_t errlen)
{
    size_t size;
    unsigned char *buf = read_all(path, &size, err, errlen);
    if (!buf) return 0;
    int32_t header[256];
    if (size < sizeof header) {
        snprintf(err, errlen, "token file '%s' is %zu bytes, shorter than its 1024-byte header", path, size);
        free(buf);
        return 0;
    }
    memcpy(header, buf, sizeof header);
    int width = header[0] == 20240520 && header[1] == 1 ? 2 : header[0] == 20240801 && header[1] == 7 ? 4 : 0;
    if (!width) {
        snprintf(err, errlen, "token file '%s' has magic %d version %d; expected 20240520 version 1 (uint16) "
                              "or 20240801 version 7 (uint32)", path, header[0], header[1]);
        free(buf);
        return 0;
    }
    int64_t n = header[2];
    if (n < 0 || (size_t)n * (size_t)width != size - sizeof header) {
        snprintf(err, errlen, "token file '%s' is truncated or corrupt: its header says %lld tokens "
                              "(%lld bytes) but %zu bytes follow it", path, (long long)n, (long long)n * width,
                 size - sizeof header);
        free(buf);
        return 0;
    }
    s->tokens = malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        uint32_t t;
        if (width == 2) {
            uint16_t h;
            memcpy(&h, buf + sizeof header + 2 * i, 2);
            t = h;
        } else {
            memcpy(&t, buf + sizeof header + 4 * i, 4);
        }
        if (t >= (uint32_t)vocab) {
            snprintf(err, errlen, "token file '%s': token %lld is %u, outside vocab_size %d", path, (long long)i, t, vocab);
            free(buf);
            free(s->tokens);
            s->tokens = NULL;
            return 0;
        }
        s->tokens[i] = t;
    }
    s->ntokens = n;
    free(buf);
    return 1;
}

static int load(const mtx_data *d, const char *type, const char *path, Stream *s, char *err, size_t errlen)
{
    if (strcmp(type, "text")) return load_tokens(path, d->vocab, s, err, errlen);
    return d->tokenizer ? load_pieces(d, path, s, err, errlen) : load_bytes(path, d->vocab, s, err, errlen);
}

/* The data's tokenizer, with the bos/eos the options ask for. A
 * tokenizer.json without a bos (Qwen's) adds none, as Hugging Face's does;
 * the other kinds are refused. */
static int open_tokenizer(mtx_data *d, const mtx_data_options *o, char *err, size_t errlen)
{
    if (!(d->tokenizer = mtx_tokenizer_for(o->tokenizer_type, o->tokenizer_path, d->vocab, err, errlen))) return 0;
    d->bos = mtx_tokenizer_bos(d->tokenizer), d->eos = mtx_tokenizer_eos(d->tokenizer);
    d->add_bos = o->add_bos, d->add_eos = o->add_eos;
    bool *add[2] = {&d->add_bos, &d->add_eos};
    int id[2] = {d->bos, d->eos};
    for (int i = 0; i < 2; i++) {
        if (!*add[i] || id[i] >= 0) continue;
        const char *what = i ? "eos" : "bos";
        if (strcmp(o->tokenizer_type, "huggingface")) {
            snprintf(err, errlen, "tokenizer '%s' has no %s piece: set add_%s=false", o->tokenizer_path, what, what);
            return 0;
        }
        if (mtx_rank() == 0)
            fprintf(stderr, "trainer: notice: tokenizer '%s' names no %s token: add_%s adds none, as Hugging Face's\n",
                    o->tokenizer_path, what, what);
        *add[i] = false;
    }
    return 1;
}

static int count_windows(Stream *s, int seq, const char *what, const char *path, char *err, size_t errlen)
{
    s->nwindows = s->ntokens > seq ? (s->ntokens - 1) / seq : 0;
    if (s->nwindows > 0) return 1;
    snprintf(err, errlen, "%s data from '%s' has %lld tokens, fewer than one sequence of max_target_length + 1 = %d",
             what, path, (long long)s->ntokens, seq + 1);
    return 0;
}

/* The examples as a stream of rows: window w is example w. */
static Stream examples_stream(mtx_examples *x)
{
    Stream s = {.tokens = x->tokens.v, .ntokens = x->tokens.n, .nwindows = x->n, .starts = x->starts,
                .dropped = x->dropped, .truncated = x->truncated};
    *x = (mtx_examples){0};
    return s;
}

/* dataset_type hf: the training (and eval) examples; without
 * hf_eval_files the last tenth of the training examples are held out. */
static int open_hf(mtx_data *d, const mtx_data_options *o, char *err, size_t errlen)
{
    if (strcmp(o->hf_path, "json"))
        return snprintf(err, errlen, "hf_path '%s': mtxc reads local JSON files (hf_path: json, hf_train_files: a glob); "
                        "it does not fetch datasets from the hub: download the files and name them", o->hf_path), 0;
    if (!o->train_files[0]) return snprintf(err, errlen, "dataset_type hf needs hf_train_files (a glob of .jsonl or .json files)"), 0;
    if (!o->tokenizer_path[0]) return snprintf(err, errlen, "dataset_type hf needs a tokenizer (tokenizer_path)"), 0;
    if (!open_tokenizer(d, o, err, errlen)) return 0;
    mtx_examples train, eval = {0};
    if (!mtx_json_examples("hf_train_files", o->train_files, o->column, d->tokenizer, d->add_bos, d->add_eos, d->seq,
                           &train, err, errlen))
        return 0;
    if (o->eval_files[0]) {
        if (!mtx_json_examples("hf_eval_files", o->eval_files, o->eval_column, d->tokenizer, d->add_bos, d->add_eos,
                               d->seq, &eval, err, errlen))
            return mtx_examples_free(&train), 0;
    } else if (train.n < 2) {
        mtx_examples_free(&train);
        return snprintf(err, errlen, "hf_train_files '%s' has one example: give two or more, or hf_eval_files",
                        o->train_files), 0;
    } else {   /* the last tenth, at least one, as eval */
        int64_t cut = train.n - (train.n / 10 > 0 ? train.n / 10 : 1), first = train.starts[cut];
        eval.n = train.n - cut, eval.tokens.n = train.tokens.n - first;
        eval.tokens.v = malloc(sizeof(uint32_t) * (size_t)eval.tokens.n);
        eval.starts = malloc(sizeof(int64_t) * (size_t)(eval.n + 1));
        if (!eval.tokens.v || !eval.starts) {
            mtx_examples_free(&train), mtx_examples_free(&eval);
            return snprintf(err, errlen, "out of memory holding out the eval examples"), 0;
        }
        memcpy(eval.tokens.v, train.tokens.v + first, sizeof(uint32_t) * (size_t)eval.tokens.n);
        for (int64_t i = 0; i <= eval.n; i++) eval.starts[i] = train.starts[cut + i] - first;
        train.n = cut, train.tokens.n = first;
    }
    int files = train.files;
    d->packing = o->packing;
    d->train = examples_stream(&train);
    d->eval = examples_stream(&eval);
    snprintf(d->describe, sizeof d->describe, "data: hf json '%s' (%d file%s) through %s '%s': %lld training examples "
             "(%lld tokens), %lld eval; %lld longer than max_target_length = %d tokens, cut there (eos kept); %s%s",
             o->train_files, files, files == 1 ? "" : "s", mtx_tokenizer_kind(d->tokenizer), o->tokenizer_path, (long long)d->train.nwindows, (long long)d->train.ntokens, (long long)d->eval.nwindows,
             (long long)(d->train.truncated + d->eval.truncated), d->seq,
             d->packing ? "packed first-fit into rows, segment ids apart (packing true)" : "one example a row (packing false)",
             d->train.dropped + d->eval.dropped ? "; examples of fewer than 2 tokens left out" : "");
    return 1;
}

mtx_data *mtx_data_open(const mtx_data_options *o, char *err, size_t errlen)
{
    mtx_data *d = calloc(1, sizeof *d);
    *d = (mtx_data){.vocab = o->vocab, .batch = o->batch, .seq = o->seq, .shuffle = o->shuffle,
                    .key = mtx_rng_seed(o->seed)};
    const char *type = o->type, *path = o->path, *eval_path = o->eval_path;
    if (!strcmp(type, "hf")) {
        d->kind = TOKENS;
        if (open_hf(d, o, err, errlen)) return d;
        mtx_data_close(d);
        return NULL;
    }
    if (!o->packing) {
        snprintf(err, errlen, "packing: false (one example a row) applies to dataset_type hf; dataset_type %s cuts its "
                              "data into windows: leave packing true", type);
        mtx_data_close(d);
        return NULL;
    }
    if (!strcmp(type, "synthetic")) {
        d->kind = SYNTHETIC;
        return d;
    }
    d->kind = TOKENS;
    if (strcmp(type, "text") && strcmp(type, "tokens")) {
        snprintf(err, errlen, "dataset_type '%s' is MaxText's, which mtxc does not read yet: use synthetic, tokens "
                              "(llm.c .bin files), text, or hf with local JSON files", type);
    } else if (!path[0]) {
        snprintf(err, errlen, "dataset_type %s needs dataset_path", type);
    } else if ((!strcmp(type, "text") && o->tokenizer_path[0] && !open_tokenizer(d, o, err, errlen))) {
        /* err says why */
    } else if (load(d, type, path, &d->train, err, errlen)) {
        bool held_out = !eval_path[0];
        if (held_out) {
            /* The last tenth of the file, split at a window boundary. */
            int64_t cut = d->train.ntokens - d->train.ntokens / 10;
            d->eval.ntokens = d->train.ntokens - cut;
            d->eval.tokens = malloc(sizeof(uint32_t) * (size_t)(d->eval.ntokens + 1));
            memcpy(d->eval.tokens, d->train.tokens + cut, sizeof(uint32_t) * (size_t)d->eval.ntokens);
            d->train.ntokens = cut;
            split_docs(&d->train, &d->eval, cut);
        }
        if ((held_out || load(d, type, eval_path, &d->eval, err, errlen)) &&
            count_windows(&d->train, o->seq, "training", path, err, errlen) &&
            count_windows(&d->eval, o->seq, "eval", held_out ? path : eval_path, err, errlen))
            return d;
    }
    mtx_data_close(d);
    return NULL;
}

/* ---- batches ---- */

/* Segment ids of a window of text from position p0: each document (line)
 * its own segment, and no target across into the next document (the
 * next line's first token). */
static void document_segments(const Stream *s, int64_t p0, int seq, int32_t *seg, int32_t *ids)
{
    int64_t lo = 0, hi = s->ndocs;   /* k: the documents starting at or before p0 */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->docs[mid] <= p0) lo = mid + 1;
        else hi = mid;
    }
    int64_t k = lo;
    for (int i = 0; i < seq; i++) {
        int64_t at = p0 + i;
        while (k < s->ndocs && s->docs[k] <= at) k++;
        ids[i] = (int32_t)(k & 0x3fffffff) + 1;
        if (k < s->ndocs && s->docs[k] == at + 1) seg[i] = 0;
    }
}

static void synthetic_sequence(const mtx_data *d, uint64_t index, int32_t *in, int32_t *tgt, int32_t *seg, int32_t *ids)
{
    mtx_rng_key k = mtx_rng_fold(d->key, index);
    int64_t tok = (int64_t)(mtx_rng_bits(k, 0) % (uint64_t)d->vocab);
    int pad = (int)(mtx_rng_bits(k, 1) % (uint64_t)(d->seq / 8 + 1));
    for (int t = 0; t < d->seq; t++) {
        int64_t next = (5 * tok + 3) % d->vocab;
        int real = t < d->seq - pad;
        in[t] = real ? (int32_t)tok : 0;
        tgt[t] = real ? (int32_t)next : 0;
        seg[t] = ids[t] = real;
        tok = next;
    }
}

/* Window (or example) w as a row: inputs, targets, the loss's mask, the
 * inputs' segment ids (one segment; padding 0). */
static void window(const Stream *s, int64_t w, int seq, int32_t *in, int32_t *tgt, int32_t *seg, int32_t *ids)
{
    if (s->starts) {   /* one example (at most seq tokens), then padding */
        int64_t len = s->starts[w + 1] - s->starts[w];
        const uint32_t *t = s->tokens + s->starts[w];
        for (int i = 0; i < seq; i++) {
            in[i] = i < len ? (int32_t)t[i] : 0;
            tgt[i] = i < len - 1 ? (int32_t)t[i + 1] : 0;
            seg[i] = i < len - 1;
            ids[i] = i < len;
        }
        return;
    }
    const uint32_t *t = s->tokens + w * seq;
    for (int i = 0; i < seq; i++) {
        in[i] = (int32_t)t[i];
        tgt[i] = (int32_t)t[i + 1];
        seg[i] = ids[i] = 1;
    }
    if (s->docs) document_segments(s, w * seq, seq, seg, ids);
}

/* Window number i of the shuffled training stream: a Fisher-Yates
 * permutation per epoch, drawn from (seed, epoch). */
static int64_t train_window(mtx_data *d, uint64_t i)
{
    uint64_t n = (uint64_t)d->train.nwindows, epoch = i / n;
    if (!d->shuffle) return (int64_t)(i % n);
    if (!d->order || d->order_epoch != epoch) {
        if (!d->order) d->order = malloc(sizeof(uint64_t) * n);
        mtx_rng_key k = mtx_rng_fold(d->key, epoch);
        for (uint64_t j = 0; j < n; j++) d->order[j] = j;
        for (uint64_t j = n - 1; j > 0; j--) {
            uint64_t r = mtx_rng_bits(k, j) % (j + 1), tmp = d->order[j];
            d->order[j] = d->order[r];
            d->order[r] = tmp;
        }
        d->order_epoch = epoch;
    }
    return (int64_t)d->order[i % n];
}

/* Examples packed into the rows of b first-fit, as MaxText's grain
 * PackAndBatchOperation: each example, in order from `first`, goes into the
 * first row with room for it, as segment 1, 2, ... of that row; the batch is
 * complete when one has room in no row (it opens the next batch) or after
 * `available` examples. Returns the examples taken (one at least). */
static uint64_t pack(mtx_data *d, const Stream *s, bool train, uint64_t first, uint64_t available, mtx_batch *b)
{
    size_t n = (size_t)b->batch * (size_t)b->seq;
    memset(b->inputs, 0, n * sizeof(int32_t)), memset(b->targets, 0, n * sizeof(int32_t));
    memset(b->segmentation, 0, n * sizeof(int32_t)), memset(b->segment_ids, 0, n * sizeof(int32_t));
    int used[b->batch], segments[b->batch];
    for (int r = 0; r < b->batch; r++) used[r] = segments[r] = 0;
    uint64_t taken = 0;
    while (taken < available) {
        int64_t w = train ? train_window(d, first + taken) : (int64_t)((first + taken) % (uint64_t)s->nwindows);
        int len = (int)(s->starts[w + 1] - s->starts[w]), r = 0;
        while (r < b->batch && used[r] + len > b->seq) r++;
        if (r == b->batch) break;
        size_t at = (size_t)r * b->seq + (size_t)used[r];
        window(s, w, len, b->inputs + at, b->targets + at, b->segmentation + at, b->segment_ids + at);
        for (int i = 0; i < len; i++) b->segment_ids[at + (size_t)i] = segments[r] + 1;
        used[r] += len, segments[r]++, taken++;
    }
    return taken;
}

void mtx_data_next(mtx_data *d, mtx_batch *b)
{
    if (d->packing) {
        d->position += pack(d, &d->train, true, d->position, UINT64_MAX, b);
        return;
    }
    for (int i = 0; i < b->batch; i++) {
        size_t off = (size_t)i * (size_t)b->seq;
        if (d->kind == SYNTHETIC)
            synthetic_sequence(d, d->position++, b->inputs + off, b->targets + off, b->segmentation + off,
                               b->segment_ids + off);
        else
            window(&d->train, train_window(d, d->position++), d->seq, b->inputs + off, b->targets + off,
                   b->segmentation + off, b->segment_ids + off);
    }
}

int64_t mtx_data_eval_batches(mtx_data *d, int batch)
{
    if (d->kind == SYNTHETIC) return 8;
    if (!d->packing) return d->eval.nwindows / batch;
    if (d->packed_eval_batches && d->packed_eval_rows == batch) return d->packed_eval_batches;
    mtx_batch b;   /* the batches one pass over the eval examples packs into, the last one too */
    mtx_batch_alloc(&b, batch, d->seq);
    int64_t batches = 0;
    for (uint64_t at = 0; at < (uint64_t)d->eval.nwindows; batches++)
        at += pack(d, &d->eval, false, at, (uint64_t)d->eval.nwindows - at, &b);
    mtx_batch_free(&b);
    d->packed_eval_rows = batch;
    return d->packed_eval_batches = batches;
}

void mtx_data_eval_reset(mtx_data *d) { d->eval_position = 0; }

void mtx_data_next_eval(mtx_data *d, mtx_batch *b)
{
    if (d->packing) {   /* in order; a batch never runs past the last example */
        uint64_t n = (uint64_t)d->eval.nwindows, at = d->eval_position % n;
        d->eval_position = at + pack(d, &d->eval, false, at, n - at, b);
        return;
    }
    for (int i = 0; i < b->batch; i++) {
        size_t off = (size_t)i * (size_t)b->seq;
        uint64_t w = d->eval_position++;
        if (d->kind == SYNTHETIC) /* held-out synthetic sequences: indices no training batch reaches */
            synthetic_sequence(d, UINT64_MAX / 2 + w, b->inputs + off, b->targets + off, b->segmentation + off,
                               b->segment_ids + off);
        else
            window(&d->eval, (int64_t)(w % (uint64_t)d->eval.nwindows), d->seq, b->inputs + off,
                   b->targets + off, b->segmentation + off, b->segment_ids + off);
    }
}

const char *mtx_data_tokenizer(const mtx_data *d) { return d->tokenizer ? mtx_tokenizer_kind(d->tokenizer) : "bytes"; }

const char *mtx_data_describe(const mtx_data *d) { return d->describe; }

void mtx_data_tokens(const mtx_data *d, int64_t *train, int64_t *eval)
{
    *train = d->kind == TOKENS ? d->train.ntokens : 0;
    *eval = d->kind == TOKENS ? d->eval.ntokens : 0;
}

uint64_t mtx_data_position(const mtx_data *d) { return d->position; }
void mtx_data_seek(mtx_data *d, uint64_t position) { d->position = position; }

void mtx_data_close(mtx_data *d)
{
    if (!d) return;
    free(d->train.tokens);
    free(d->eval.tokens);
    free(d->train.starts);
    free(d->eval.starts);
    free(d->train.docs);
    free(d->eval.docs);
    free(d->order);
    if (d->tokenizer) mtx_tokenizer_close(d->tokenizer);
    free(d);
}
