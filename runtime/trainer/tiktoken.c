/* tiktoken's rank files (Llama 3's tokenizer.model / MaxText's
 * tokenizer_llama3.tiktoken): a line "base64-token rank" per token, ranks
 * 0 .. N-1. As MaxText's TikTokenTokenizer: Llama 3's pattern, its 256
 * special tokens from id N (<|begin_of_text|> bos, <|end_of_text|> eos),
 * and special-token text in the input encoded as plain text. */
#include "bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE ((size_t)1 << 30)
enum { RESERVED_SPECIALS = 256 };

static const char llama3_pattern[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int base64_value(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with padding: the byte count, or -1. */
static long base64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    if (n == 0 || n % 4) return -1;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0, len = n / 4 * 3 - pad;
    if (len > cap) return -1;
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = i >= n - pad ? 0 : base64_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3)
            for (int k = 2; k >= 0; k--, o++)
                if (o < len) out[o] = (unsigned char)(acc >> (8 * k));
    }
    /* the bits padding drops must be zero, so that each token has one spelling */
    return (pad == 1 && (acc & 0xff)) || (pad == 2 && (acc & 0xffff)) ? -1 : (long)len;
}

/* Llama 3's special tokens in MaxText's order. */
static void special_name(int i, char *out, size_t n)
{
    static const char *named[] = {"<|begin_of_text|>", "<|end_of_text|>", NULL, NULL, NULL, NULL,
                                  "<|start_header_id|>", "<|end_header_id|>", NULL, "<|eot_id|>"};
    static const int reserved[] = {0, 0, 0, 1, 2, 3, 0, 0, 4, 0};
    if (i < 10 && named[i]) snprintf(out, n, "%s", named[i]);
    else snprintf(out, n, "<|reserved_special_token_%d|>", i < 10 ? reserved[i] : i - 5);
}

static int parse_line(Bpe *b, const char *path, const char *line, size_t len, long lineno, uint32_t want, char *err,
                      size_t errlen)
{
    const char *space = memchr(line, ' ', len);
    unsigned char bytes[1024];
    char e[256], *end;
    long n = space ? base64_decode(line, (size_t)(space - line), bytes, sizeof bytes) : -1;
    if (n < 0) {
        snprintf(err, errlen, "tiktoken file '%s', line %ld: %s", path, lineno,
                 space ? "the token is not base64 (A-Z a-z 0-9 + / with = padding)" : "not \"base64-token rank\"");
        return 0;
    }
    const char *r = space + 1;
    unsigned long long rank = strtoull(r, &end, 10);
    if (r[0] < '0' || r[0] > '9' || end != line + len || (r[0] == '0' && len - (size_t)(r - line) > 1)) {
        snprintf(err, errlen, "tiktoken file '%s', line %ld: the rank is not a decimal number", path, lineno);
        return 0;
    }
    if (rank != want) {
        snprintf(err, errlen, "tiktoken file '%s', line %ld: rank %llu where %u comes next (ranks go 0, 1, 2, ... "
                 "one a line%s)", path, lineno, rank, want, rank < want ? "; this one repeats" : "");
        return 0;
    }
    if (!bpe_set_token(b, (uint32_t)rank, bytes, (size_t)n, e, sizeof e)) {
        snprintf(err, errlen, "tiktoken file '%s', line %ld: %s", path, lineno, e);
        return 0;
    }
    return 1;
}

static int load_ranks(Bpe *b, const char *path, const char *text, size_t size, char *err, size_t errlen)
{
    uint32_t n = 0;
    long lineno = 0;
    for (size_t at = 0; at < size;) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - text) : size;
        lineno++;
        if (end > at && !parse_line(b, path, text + at, end - at, lineno, n++, err, errlen)) return 0;
        at = end + 1;
    }
    if (!n) snprintf(err, errlen, "tiktoken file '%s' has no tokens", path);
    return n > 0;
}

Bpe *tiktoken_load(const char *path, BpeEnds *ends, char *err, size_t errlen)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, MAX_FILE, 0, &size, &why);
    if (!text) {
        snprintf(err, errlen, "cannot read tiktoken file '%s': %s", path, why);
        return NULL;
    }
    Bpe *b = bpe_new();
    char e[512];
    int ok = b && load_ranks(b, path, text, size, err, errlen);
    free(text);
    uint32_t base = ok ? bpe_vocab(b) : 0;
    for (int i = 0; ok && i < RESERVED_SPECIALS; i++) {
        char name[64];
        special_name(i, name, sizeof name);
        ok = bpe_add_special(b, base + (uint32_t)i, name, strlen(name), 0, 0, e, sizeof e);
        if (!ok) snprintf(err, errlen, "tiktoken file '%s': %s", path, e);
    }
    if (ok && !bpe_check(b, e, sizeof e)) ok = 0, snprintf(err, errlen, "tiktoken file '%s': %s", path, e);
    if (ok && !bpe_merges_from_ranks(b)) ok = 0, snprintf(err, errlen, "tiktoken file '%s': out of memory", path);
    if (ok && !bpe_set_pattern(b, llama3_pattern, e, sizeof e)) ok = 0, snprintf(err, errlen, "Llama 3's regex: %s", e);
    if (!ok) {
        if (!b) snprintf(err, errlen, "out of memory");
        bpe_free(b);
        return NULL;
    }
    bpe_set_options(b, &(BpeOptions){.ignore_merges = 1});
    ends->bos = base, ends->eos = base + 1;
    return b;
}
