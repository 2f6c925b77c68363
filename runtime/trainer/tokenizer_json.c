/* Hugging Face's tokenizer.json, the byte-level BPE kind (GPT-2, Llama 3,
 * Qwen): the model's vocabulary and merges, added tokens, the NFC
 * normalizer, the Split / ByteLevel pre-tokenizers, the post-processor's
 * template and tokenizer_config.json's bos / eos. What mtxc does not
 * implement (WordPiece, Unigram, Metaspace, other normalizers) is refused
 * naming it, never approximated. */
#include "bpe.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILE ((size_t)1 << 30)
/* GPT-2's pre-tokenizer regex: ByteLevel's with use_regex */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    Bpe *b;
    int byte_of[324];         /* the byte-level alphabet's code points (< 324) -> bytes, -1 outside */
    const char *pattern;      /* the pre-tokenizer's regex, or NULL */
    char *owned_pattern;
    BpeOptions opt;
    int byte_level;
    int64_t template_first, template_last;   /* the post-processor's special tokens around the text */
} Loader;

static int fail(Loader *l, const char *fmt, const char *a, const char *b)
{
    char what[768];
    snprintf(what, sizeof what, fmt, a ? a : "", b ? b : "");
    snprintf(l->err, l->errlen, "tokenizer file '%s': %s", l->path, what);
    return 0;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
 * others for 256, 257, ... in byte order. */
static void byte_alphabet(Loader *l)
{
    for (int i = 0; i < 324; i++) l->byte_of[i] = -1;
    int next = 256;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff);
        l->byte_of[printable ? c : next++] = c;
    }
}

/* A token's text in the byte-level alphabet as the bytes it stands for;
 * its length, or -1 if a character is outside the alphabet. */
static long decode_byte_level(const Loader *l, const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int cp;
        if (*p < 0x80) cp = *p++;
        else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) cp = (p[0] & 0x1f) << 6 | (p[1] & 0x3f), p += 2;
        else return -1;
        if (cp >= 324 || l->byte_of[cp] < 0 || n >= cap) return -1;
        out[n++] = (unsigned char)l->byte_of[cp];
    }
    return (long)n;
}

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "(none)";
}

static int is_type(const cJSON *o, const char *type) { return cJSON_IsObject(o) && !strcmp(type_of(o), type); }

static int flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* An id: a JSON integer in [0, BPE_MAX_ID]; -1 otherwise. */
static int64_t id_of(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > BPE_MAX_ID ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    return (int64_t)v->valuedouble;
}

/* ---- the model ---- */

static int load_vocab(Loader *l, const cJSON *vocab)
{
    if (!cJSON_IsObject(vocab)) return fail(l, "model.vocab is not an object of token: id", 0, 0);
    unsigned char bytes[1024];
    char e[256];
    for (const cJSON *t = vocab->child; t; t = t->next) {
        int64_t id = id_of(t);
        long n = decode_byte_level(l, t->string, bytes, sizeof bytes);
        if (id < 0) return fail(l, "model.vocab: the id of token \"%s\" is not an integer from 0 to 16777215", t->string, 0);
        if (n <= 0) return fail(l, "model.vocab: token \"%s\" is not text of the byte-level alphabet", t->string, 0);
        if (!bpe_set_token(l->b, (uint32_t)id, bytes, (size_t)n, e, sizeof e))
            return fail(l, "model.vocab: token \"%s\": %s", t->string, e);
    }
    return 1;
}

static int64_t find_part(const Loader *l, const char *part)
{
    unsigned char bytes[1024];
    long n = decode_byte_level(l, part, bytes, sizeof bytes);
    return n > 0 ? bpe_find(l->b, bytes, (size_t)n) : -1;
}

/* One merge: its two parts, from "left right" (copied into buf) or ["left", "right"]. */
static int merge_parts(const cJSON *m, char *buf, size_t cap, const char **a, const char **b)
{
    if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring, *b = m->child->next->valuestring;
        return **a && **b;
    }
    if (!cJSON_IsString(m) || strlen(m->valuestring) >= cap) return 0;
    strcpy(buf, m->valuestring);
    char *space = strchr(buf, ' ');
    if (!space || strchr(space + 1, ' ')) return 0;
    *space = 0, *a = buf, *b = space + 1;
    return **a && **b;
}

static int load_merges(Loader *l, const cJSON *merges)
{
    if (!merges) return 1;
    if (!cJSON_IsArray(merges)) return fail(l, "model.merges is not a list", 0, 0);
    uint32_t rank = 0;
    char buf[2048], e[256], what[640];
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a, *b;
        if (!merge_parts(m, buf, sizeof buf, &a, &b)) {
            snprintf(what, sizeof what, "model.merges[%u] is not a pair of tokens (\"left right\" or [\"left\", \"right\"])", rank);
            return fail(l, "%s", what, 0);
        }
        int64_t left = find_part(l, a), right = find_part(l, b);
        if (left < 0 || right < 0) {
            snprintf(what, sizeof what, "model.merges[%u] names \"%.200s\", which is not in model.vocab", rank, left < 0 ? a : b);
            return fail(l, "%s", what, 0);
        }
        if (!bpe_add_merge(l->b, (uint32_t)left, (uint32_t)right, rank, e, sizeof e)) {
            snprintf(what, sizeof what, "model.merges[%u] (\"%.150s\" + \"%.150s\") %.200s", rank, a, b, e);
            return fail(l, "%s", what, 0);
        }
    }
    return 1;
}

static int load_model(Loader *l, const cJSON *model)
{
    if (!cJSON_IsObject(model)) return fail(l, "it has no \"model\" object", 0, 0);
    if (!is_type(model, "BPE"))
        return fail(l, "model type '%s' is not BPE: mtxc reads the byte-level BPE kind of tokenizer.json "
                       "(GPT-2, Llama 3, Qwen); for SentencePiece models use tokenizer_type: sentencepiece",
                    type_of(model), 0);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        return fail(l, "model.dropout is set: BPE dropout randomizes tokens, which mtxc does not do", 0, 0);
    if (flag(model, "byte_fallback", 0))
        return fail(l, "model.byte_fallback is true: that is the SentencePiece kind of BPE (use tokenizer_type: "
                       "sentencepiece with its tokenizer.model)", 0, 0);
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (cJSON_IsString(v) && v->valuestring[0]) return fail(l, "model.%s is set: mtxc implements byte-level BPE without it", affixes[i], 0);
    }
    l->opt.ignore_merges = flag(model, "ignore_merges", 0);
    return load_vocab(l, cJSON_GetObjectItemCaseSensitive(model, "vocab")) &&
           load_merges(l, cJSON_GetObjectItemCaseSensitive(model, "merges"));
}

/* ---- added tokens, normalizer, pre-tokenizer ---- */

static int load_added(Loader *l, const cJSON *added)
{
    if (!added) return 1;
    if (!cJSON_IsArray(added)) return fail(l, "added_tokens is not a list", 0, 0);
    char e[256];
    for (const cJSON *a = added->child; a; a = a->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        int64_t id = id_of(cJSON_GetObjectItemCaseSensitive(a, "id"));
        if (!cJSON_IsString(content) || !content->valuestring[0] || id < 0)
            return fail(l, "added_tokens: an entry without a \"content\" string and an integer \"id\"", 0, 0);
        if (flag(a, "single_word", 0))
            return fail(l, "added token \"%s\" has single_word: true, which mtxc does not implement", content->valuestring, 0);
        if (!bpe_add_special(l->b, (uint32_t)id, content->valuestring, strlen(content->valuestring), flag(a, "lstrip", 0),
                             flag(a, "rstrip", 0), e, sizeof e))
            return fail(l, "added token \"%s\": %s", content->valuestring, e);
    }
    return 1;
}

static int load_normalizer(Loader *l, const cJSON *n)
{
    if (!n || cJSON_IsNull(n)) return 1;
    if (is_type(n, "NFC")) return l->opt.nfc = 1;
    if (is_type(n, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        for (const cJSON *x = cJSON_IsArray(list) ? list->child : NULL; x; x = x->next)
            if (!load_normalizer(l, x)) return 0;
        return 1;
    }
    return fail(l, "normalizer '%s' is not implemented by mtxc (NFC is)", type_of(n), 0);
}

/* Split's pattern: a regex as it is, a plain string quoted for PCRE2. */
static int split_pattern(Loader *l, const cJSON *p)
{
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(p, "pattern"), *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(re, "Regex")) && cJSON_IsString(v)) return l->pattern = v->valuestring, 1;
    if (!(v = cJSON_GetObjectItemCaseSensitive(re, "String")) || !cJSON_IsString(v) || !v->valuestring[0])
        return fail(l, "pre_tokenizer Split has no \"pattern\" {\"Regex\": ...} or {\"String\": ...}", 0, 0);
    size_t n = strlen(v->valuestring);
    if (!(l->owned_pattern = malloc(2 * n + 1))) return fail(l, "out of memory", 0, 0);
    char *o = l->owned_pattern;
    for (const char *s = v->valuestring; *s; s++) {
        if ((unsigned char)*s < 0x80 && !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            *o++ = '\\';
        *o++ = *s;
    }
    *o = 0;
    l->pattern = l->owned_pattern;
    return 1;
}

static int load_pre_tokenizer(Loader *l, const cJSON *p)
{
    if (!p || cJSON_IsNull(p)) return 1;
    if (is_type(p, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        for (const cJSON *x = cJSON_IsArray(list) ? list->child : NULL; x; x = x->next)
            if (!load_pre_tokenizer(l, x)) return 0;
        return 1;
    }
    if (l->pattern && (is_type(p, "Split") || (is_type(p, "ByteLevel") && flag(p, "use_regex", 1))))
        return fail(l, "the pre-tokenizer splits by two regexes, which mtxc does not implement", 0, 0);
    if (is_type(p, "ByteLevel")) {
        l->byte_level = 1;
        l->opt.add_prefix_space = flag(p, "add_prefix_space", 0);
        if (flag(p, "use_regex", 1)) l->pattern = gpt2_pattern;
        return 1;
    }
    if (is_type(p, "Split")) {
        const cJSON *behavior = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        if (!cJSON_IsString(behavior) || strcmp(behavior->valuestring, "Isolated") || flag(p, "invert", 0))
            return fail(l, "pre_tokenizer Split with behavior '%s' (or invert) is not implemented by mtxc (Isolated is)",
                        cJSON_IsString(behavior) ? behavior->valuestring : "(none)", 0);
        return split_pattern(l, p);
    }
    return fail(l, "pre_tokenizer '%s' is not implemented by mtxc (ByteLevel and Split are)", type_of(p), 0);
}

/* ---- post-processor, decoder, bos / eos ---- */

/* A template's special token by name: the template's own ids, else an added token's. */
static int64_t template_token(Loader *l, const cJSON *proc, const char *name)
{
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(proc, "special_tokens"), name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
    if (cJSON_GetArraySize(ids) == 1 && id_of(ids->child) >= 0) return id_of(ids->child);
    return bpe_find_special(l->b, name, strlen(name));
}

static int load_post_processor(Loader *l, const cJSON *p)
{
    if (!p || cJSON_IsNull(p) || is_type(p, "ByteLevel")) return 1;
    if (is_type(p, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        for (const cJSON *x = cJSON_IsArray(list) ? list->child : NULL; x; x = x->next)
            if (!load_post_processor(l, x)) return 0;
        return 1;
    }
    if (!is_type(p, "TemplateProcessing"))
        return fail(l, "post_processor '%s' is not implemented by mtxc (TemplateProcessing and ByteLevel are)", type_of(p), 0);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    int seen_text = 0;
    for (const cJSON *x = cJSON_IsArray(single) ? single->child : NULL; x; x = x->next) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(x, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(x, "Sequence")) {
            seen_text = 1;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (!cJSON_IsString(name)) return fail(l, "post_processor: a template entry is neither Sequence nor SpecialToken", 0, 0);
        int64_t id = template_token(l, p, name->valuestring);
        if (id < 0) return fail(l, "post_processor: the template's token \"%s\" is no token of this file", name->valuestring, 0);
        if (!seen_text && l->template_first < 0) l->template_first = id;
        if (seen_text) l->template_last = id;
    }
    return 1;
}

static int check_decoder(Loader *l, const cJSON *d)
{
    if (!d || cJSON_IsNull(d) || is_type(d, "ByteLevel")) return 1;
    return fail(l, "decoder '%s' is not implemented by mtxc (ByteLevel is)", type_of(d), 0);
}

/* tokenizer_config.json's bos_token / eos_token: a string, or {"content": ...}. */
static int64_t config_token(Loader *l, const cJSON *cfg, const char *key, int64_t dflt, const char *cfg_path)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!v) return dflt;
    if (cJSON_IsNull(v)) return -1;
    if (!cJSON_IsString(v)) return -2;
    int64_t id = bpe_find_special(l->b, v->valuestring, strlen(v->valuestring));
    if (id < 0) id = bpe_find(l->b, v->valuestring, strlen(v->valuestring));
    if (id < 0) snprintf(l->err, l->errlen, "'%s': %s \"%s\" is no token of '%s'", cfg_path, key, v->valuestring, l->path);
    return id < 0 ? -3 : id;
}

static char *read_json(const char *path, cJSON **out, int missing_ok, char *err, size_t errlen)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, MAX_FILE, 0, &size, &why);
    *out = NULL;
    if (!text) {
        if (missing_ok && !strcmp(why, "No such file or directory")) return NULL;
        snprintf(err, errlen, "cannot read tokenizer file '%s': %s", path, why);
        return NULL;
    }
    const char *end = NULL;
    if (!(*out = cJSON_ParseWithLengthOpts(text, size, &end, 0))) {
        int line = 1, col = 1;
        for (const char *p = text; end && p < end && p < text + size; p++) line += *p == '\n', col = *p == '\n' ? 1 : col + 1;
        snprintf(err, errlen, "tokenizer file '%s' is not JSON: it fails at line %d, column %d%s", path, line, col,
                 end && size && end >= text + size - 1 ? " (its last byte: truncated?)" : "");
    } else if (!cJSON_IsObject(*out)) {
        snprintf(err, errlen, "tokenizer file '%s' is JSON but not an object", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
    return text;
}

/* bos / eos: tokenizer_config.json's beside the file, else the template's. */
static int load_ends(Loader *l, const char *dir, BpeEnds *ends)
{
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    cJSON *cfg;
    char *text = read_json(cfg_path, &cfg, 1, l->err, l->errlen);
    ends->bos = l->template_first, ends->eos = l->template_last;
    if (!text) return !l->err[0];
    int ok = cfg != NULL;
    if (ok) {
        ends->bos = config_token(l, cfg, "bos_token", ends->bos, cfg_path);
        ends->eos = config_token(l, cfg, "eos_token", ends->eos, cfg_path);
        ok = ends->bos >= -1 && ends->eos >= -1;
        if (ends->bos == -2 || ends->eos == -2)
            snprintf(l->err, l->errlen, "'%s': bos_token / eos_token is neither a string nor {\"content\": ...}", cfg_path);
    }
    cJSON_Delete(cfg);
    free(text);
    return ok;
}

static int load_all(Loader *l, const cJSON *root, const char *dir, BpeEnds *ends)
{
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!load_model(l, cJSON_GetObjectItemCaseSensitive(root, "model")) ||
        !load_added(l, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) ||
        !load_normalizer(l, cJSON_GetObjectItemCaseSensitive(root, "normalizer")) ||
        !load_pre_tokenizer(l, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")) ||
        !load_post_processor(l, cJSON_GetObjectItemCaseSensitive(root, "post_processor")) || !check_decoder(l, decoder))
        return 0;
    if (!l->byte_level && !is_type(decoder, "ByteLevel"))
        return fail(l, "its BPE is not byte-level (no ByteLevel pre-tokenizer or decoder): mtxc reads byte-level BPE "
                       "(GPT-2, Llama 3, Qwen); for SentencePiece models use tokenizer_type: sentencepiece", 0, 0);
    char e[512];
    if (!bpe_check(l->b, e, sizeof e)) return fail(l, "%s", e, 0);
    if (l->pattern && !bpe_set_pattern(l->b, l->pattern, e, sizeof e))
        return fail(l, "the pre-tokenizer's regex: %s", e, 0);
    l->opt.match_specials = 1;
    bpe_set_options(l->b, &l->opt);
    return load_ends(l, dir, ends);
}

Bpe *tokenizer_json_load(const char *path, BpeEnds *ends, char *err, size_t errlen)
{
    struct stat st;
    char file[4200], dir[4200];
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    snprintf(file, sizeof file, is_dir ? "%s/tokenizer.json" : "%s", path);
    snprintf(dir, sizeof dir, "%s", is_dir ? path : file);
    if (!is_dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else strcpy(dir, ".");
    }
    Loader l = {.path = file, .err = err, .errlen = errlen, .template_first = -1, .template_last = -1};
    err[0] = 0;
    cJSON *root;
    char *text = read_json(file, &root, 0, err, errlen);
    if (!root) {
        free(text);
        return NULL;
    }
    byte_alphabet(&l);
    if (!(l.b = bpe_new())) fail(&l, "out of memory", 0, 0);
    int ok = l.b && load_all(&l, root, dir, ends);
    cJSON_Delete(root);
    free(text);
    free(l.owned_pattern);
    if (!ok) {
        bpe_free(l.b);
        return NULL;
    }
    return l.b;
}
