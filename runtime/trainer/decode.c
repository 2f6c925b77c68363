/* `trainer decode` and `mtxc decode`: text from a checkpoint, as MaxText's
 * decode.py. The prompt becomes tokens (SentencePiece with tokenizer_path,
 * bytes for dataset_type text, else whitespace-separated token ids), runs
 * through prefill_step in one call, and each next token is chosen from the
 * last logits (sampling.c) and run through decode_step, until the sequence
 * fills max_target_length or the tokenizer's eos comes. */
#include "run_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mtx_decode_settings(const mtx_program *prog, const RunConfig *rc, DecodeSettings *d, bool from_checkpoint)
{
    if (!mtx_run_string(prog, rc, "prompt", d->prompt, sizeof d->prompt) ||
        !mtx_run_string(prog, rc, "load_parameters_path", d->params, sizeof d->params) ||
        !mtx_run_string(prog, rc, "load_full_state_path", d->full, sizeof d->full) ||
        !mtx_run_string(prog, rc, "tokenizer_type", d->tokenizer_type, sizeof d->tokenizer_type) ||
        !mtx_run_string(prog, rc, "tokenizer_path", d->tokenizer, sizeof d->tokenizer) ||
        !mtx_run_string(prog, rc, "dataset_type", d->dataset_type, sizeof d->dataset_type) ||
        !mtx_run_string(prog, rc, "decode_sampling_strategy", d->strategy, sizeof d->strategy))
        return 0;
    static const char *names[] = {"greedy", "weighted", "nucleus", "topk", "composite"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(d->strategy, names[i])) d->sampling.strategy = (mtx_sample_strategy)i;
    long long top_k = mtx_run_get(prog, rc, "decode_sampling_top_k")->i;
    d->sampling.top_k = top_k < prog->vocab ? (int)top_k : prog->vocab;   /* all of them, past the vocabulary */
    d->sampling.nucleus_p = (float)mtx_run_get(prog, rc, "decode_sampling_nucleus_p")->f;
    d->sampling.temperature = (float)mtx_run_get(prog, rc, "decode_sampling_temperature")->f;
    d->seed = mtx_run_get(prog, rc, "decode_sampling_seed")->i;
    d->add_bos = mtx_run_get(prog, rc, "add_bos")->b;
    mtx_sample_strategy s = d->sampling.strategy;
    const char *why = NULL;
    if (from_checkpoint && !d->params[0] && !d->full[0])
        why = "decoding needs a checkpoint: set load_parameters_path=RUN/checkpoints/STEP";
    else if (from_checkpoint && d->params[0] && d->full[0])
        why = mtx_load_paths_conflict;
    else if ((s == MTX_SAMPLE_TOPK || s == MTX_SAMPLE_COMPOSITE) && d->sampling.top_k <= 0)
        why = "decode_sampling_strategy topk and composite need decode_sampling_top_k > 0";
    else if ((s == MTX_SAMPLE_NUCLEUS || s == MTX_SAMPLE_COMPOSITE) &&
             !(d->sampling.nucleus_p > 0 && d->sampling.nucleus_p <= 1))
        why = "decode_sampling_strategy nucleus and composite need decode_sampling_nucleus_p in (0, 1]";
    if (!why) return 1;
    fprintf(stderr, "trainer: error: %s\n", why);
    return 0;
}

/* The prompt as token ids into *out (empty on entry); 0 after saying why. */
static int prompt_tokens(const mtx_program *prog, const DecodeSettings *d, const mtx_tokenizer *tk, mtx_tokens *out)
{
    mtx_tokens t = {0};
    char err[1024] = "";
    bool ok = true;
    if (tk) {
        ok = (!d->add_bos || mtx_tokenizer_bos(tk) < 0 || mtx_tokens_push(&t, (uint32_t)mtx_tokenizer_bos(tk))) &&
             mtx_tokenizer_encode(tk, d->prompt, strlen(d->prompt), &t, err, sizeof err);
    } else if (!strcmp(d->dataset_type, "text")) {
        for (const char *c = d->prompt; *c && ok; c++) ok = mtx_tokens_push(&t, (unsigned char)*c);
    } else {
        for (const char *c = d->prompt; *c && ok;) {
            char *end;
            errno = 0;
            long long v = strtoll(c, &end, 10);
            if (end == c && !*c) break;
            if (end == c || errno || v < 0 || v >= prog->vocab) {
                snprintf(err, sizeof err, "prompt: this program reads token ids (no tokenizer_path, dataset_type "
                                          "%s), and '%.20s' is not one below vocab_size %d", d->dataset_type, c,
                         prog->vocab);
                ok = false;
                break;
            }
            ok = mtx_tokens_push(&t, (uint32_t)v);
            c = end;
            while (*c == ' ' || *c == '\t' || *c == '\n') c++;
        }
    }
    if (ok && t.n == 0) snprintf(err, sizeof err, "prompt is empty: decoding starts from at least one token"), ok = false;
    if (ok && t.n > prog->prefill_length)
        snprintf(err, sizeof err, "prompt is %lld tokens, more than max_prefill_predict_length %d",
                 (long long)t.n, prog->prefill_length), ok = false;
    if (!ok) {
        fprintf(stderr, "trainer: error: %s\n", err[0] ? err : "out of memory");
        free(t.v);
        return 0;
    }
    *out = t;
    return 1;
}

/* Runs of ids the tokenizer has, decoded; an id past it (a vocab_size
 * larger than the tokenizer's) marked as <|id N|>, so one such id does not
 * hide the rest of the text. */
static void print_decoded(const mtx_tokenizer *tk, const int32_t *ids, int n)
{
    int pieces = mtx_tokenizer_vocab(tk);
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && ids[j] >= 0 && ids[j] < pieces) j++;
        if (j > i) {
            char *text = mtx_tokenizer_decode(tk, ids + i, j - i);
            fputs(text ? text : "(the tokenizer cannot decode these tokens)", stdout);
            free(text);
        }
        if (j < n) printf("<|id %d|>", ids[j++]);
        i = j;
    }
}

/* The tokens as text: the tokenizer's, the bytes, or the ids. */
static void print_tokens(const DecodeSettings *d, const mtx_tokenizer *tk, const int32_t *ids, int n)
{
    if (tk) {
        print_decoded(tk, ids, n);
    } else if (!strcmp(d->dataset_type, "text")) {
        for (int i = 0; i < n; i++) putchar(ids[i] < 256 ? ids[i] : '?');
    } else {
        for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    }
}

/* Logits that are NaN or infinite (a checkpoint of NaN parameters) make
 * every choice meaningless: said once, on stderr. */
static void check_finite(const float *logits, int V, int pos, bool *warned)
{
    for (int v = 0; v < V && !*warned; v++)
        if (!isfinite(logits[v])) {
            fprintf(stderr, "decode: warning: the logits at position %d are not finite (%s): the parameters hold NaN "
                            "or infinity, and the tokens chosen mean nothing\n", pos,
                    isnan(logits[v]) ? "NaN" : "infinity");
            *warned = true;
        }
}

static int generate(const mtx_program *prog, const DecodeSettings *d, const mtx_tokenizer *tk, mtx_state *st,
                    int max_new, const char *label)
{
    mtx_tokens t = {0};
    int P = prog->prefill_length, T = prog->cache_length, V = prog->vocab;
    if (!prompt_tokens(prog, d, tk, &t)) return 2;
    /* the prompt padded to the prefill, and room for every position and the
     * token chosen after the last (a prompt may fill the cache) */
    int32_t *seq = calloc((size_t)(T > P ? T : P) + 1, sizeof(int32_t));
    float *logits = malloc(sizeof(float) * (size_t)P * (size_t)V);
    if (!seq || !logits) {
        fprintf(stderr, "trainer: error: out of memory for decoding (%d positions, %d logits a row)\n", T, V);
        free(t.v), free(seq), free(logits);
        return 2;
    }
    int n = (int)t.n;
    for (int i = 0; i < n; i++) seq[i] = (int32_t)t.v[i];
    free(t.v);
    mtx_cache *cache = prog->cache_new();
    mtx_rng_key key = mtx_rng_seed((uint64_t)d->seed);
    int32_t zero = 0, eos = tk ? mtx_tokenizer_eos(tk) : -1;
    /* only ids the tokenizer has: a padded vocabulary's rows are never chosen */
    int choices = tk && mtx_tokenizer_vocab(tk) < V ? mtx_tokenizer_vocab(tk) : V;
    double t0 = mtx_seconds();
    prog->prefill(st, cache, seq, &zero, logits);
    double t1 = mtx_seconds();
    int prompt = n;
    bool warned = false;
    check_finite(logits + (size_t)(n - 1) * V, V, n - 1, &warned);
    seq[n] = mtx_sample(logits + (size_t)(n - 1) * V, choices, &d->sampling, key, (uint64_t)n);
    int last = max_new > 0 && n + max_new < T ? n + max_new : T;   /* the sequence ends before position last */
    while (seq[n] != eos && n + 1 < last) {
        int32_t pos = n;
        prog->decode(st, cache, seq + n, &pos, logits);
        check_finite(logits, V, n, &warned);
        n++;
        seq[n] = mtx_sample(logits, choices, &d->sampling, key, (uint64_t)n);
    }
    int generated = n + 1 - prompt - (seq[n] == eos);
    double t2 = mtx_seconds();
    fputs(label, stdout);
    if (tk) {   /* decoded whole: a piece's leading space is dropped at the start of a text */
        print_tokens(d, tk, seq, prompt + generated);
    } else {
        print_tokens(d, tk, seq, prompt);
        printf("%s", strcmp(d->dataset_type, "text") ? " | " : "");
        print_tokens(d, tk, seq + prompt, generated);
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "decode: %s, %d tokens after a %d-token prompt: prefill %.1f ms, %.2f ms per token "
                    "(%.0f tokens/s)\n", d->strategy, generated, prompt, (t1 - t0) * 1e3,
            generated > 1 ? (t2 - t1) * 1e3 / (generated - 1) : 0.0,
            generated > 1 ? (generated - 1) / (t2 - t1) : 0.0);
    prog->cache_free(cache);
    free(logits);
    free(seq);
    return 0;
}

int mtx_decode_print(const mtx_program *prog, mtx_state *st, const DecodeSettings *d, int max_new, const char *label)
{
    char err[1024];
    mtx_tokenizer *tk = NULL;
    if (d->tokenizer[0]) {
        if (!(tk = mtx_tokenizer_for(d->tokenizer_type, d->tokenizer, prog->vocab, err, sizeof err))) {
            fprintf(stderr, "trainer: error: %s\n", err);
            return 2;
        }
    }
    int status = generate(prog, d, tk, st, max_new, label);
    if (tk) mtx_tokenizer_close(tk);
    return status;
}

int mtx_decode_main(const mtx_program *prog, int argc, char **argv)
{
    if (!prog->decode) {
        fprintf(stderr, "trainer: error: decoding runs on one device; this trainer is compiled for a mesh of "
                        "data %d x fsdp %d x tensor %d x expert %d: build one for a single device to decode\n",
                prog->mesh_data, prog->mesh_fsdp, prog->mesh_tensor, prog->mesh_expert);
        return 2;
    }
    static RunConfig rc;
    static DecodeSettings d;
    int status = mtx_run_parse(prog, &rc, argc, argv, true);
    if (!status && !mtx_decode_settings(prog, &rc, &d, true)) status = 2;
    mtx_run_free(&rc);
    if (status) return status < 0 ? 0 : status;
    char err[1024];
    mtx_state *st = prog->state_new();
    uint64_t position;
    const char *path = d.params[0] ? d.params : d.full;
    if (mtx_checkpoint_load(prog, st, path, 1, &position, err, sizeof err) != 0) {
        fprintf(stderr, "trainer: error: %s\n", err);
        status = 2;
    } else {
        fprintf(stderr, "parameters from %s\n", path);
        status = mtx_decode_print(prog, st, &d, 0, "");
    }
    prog->state_free(st);
    return status;
}
