/* Byte-level BPE (bpe.h): the tables, the merge loop, the text pipeline
 * (added tokens, NFC, the pre-tokenizer's regex, pieces) and decoding. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "bpe.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#define NONE UINT32_MAX
enum { CACHED_WORD = 64, CACHE_SLOTS = 1 << 15 };

typedef struct { uint32_t off, len; } Span;   /* bytes in the pool; len NONE: no token has this id */
typedef struct { uint32_t id, off, len; int lstrip, rstrip; } Special;

struct Bpe {
    Span *tok;                       /* by id: tokens and added tokens, for decoding */
    uint32_t nids, cap_ids;
    unsigned char *pool;
    size_t pool_len, pool_cap;
    uint32_t *by_bytes;              /* open addressing over the model's tokens: ids, NONE empty */
    uint32_t by_bytes_cap, ntokens;
    uint64_t *pair_key;              /* open addressing: left << 32 | right, UINT64_MAX empty */
    uint32_t *pair_rank, *pair_result, pair_cap, npairs;
    int64_t byte_token[256];
    Special *specials;               /* longest first */
    int nspecials;
    unsigned char special_first[256];
    pcre2_code *re;
    BpeOptions opt;
    unsigned char nfc_inert[8192];   /* with opt.nfc: a bit a code point of the BMP */
};

/* A cached piece: its bytes and its ids, in the scratch's pools. */
typedef struct { uint64_t hash; uint32_t word, ids; uint16_t len, nids; } CacheSlot;
typedef struct { uint32_t id; int32_t prev, next; } Sym;
typedef struct { uint32_t rank, pos, left, right, result; } Cand;

struct BpeScratch {
    pcre2_match_data *md;
    CacheSlot *slots;
    uint32_t used;
    unsigned char *words;
    uint32_t words_len, words_cap;
    uint32_t *ids;
    uint32_t ids_len, ids_cap;
    Sym *sym;
    Cand *heap;
    size_t sym_cap, heap_cap, nheap;
    unsigned char *text;             /* normalized or prefixed text */
    size_t text_cap;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q, *cap = c;
    return 1;
}

static uint64_t hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }
static uint64_t hash_pair(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }

Bpe *bpe_new(void)
{
    Bpe *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    for (int i = 0; i < 256; i++) b->byte_token[i] = -1;
    return b;
}

void bpe_free(Bpe *b)
{
    if (!b) return;
    free(b->tok), free(b->pool), free(b->by_bytes), free(b->pair_key), free(b->pair_rank), free(b->pair_result);
    free(b->specials);
    pcre2_code_free(b->re);
    free(b);
}

uint32_t bpe_vocab(const Bpe *b) { return b->nids; }

static const unsigned char *bytes_of(const Bpe *b, uint32_t id) { return b->pool + b->tok[id].off; }

/* ---- tables ---- */

static int reserve_id(Bpe *b, uint32_t id)
{
    if (id > BPE_MAX_ID) return 0;
    if (id >= b->cap_ids) {
        uint32_t cap = b->cap_ids ? b->cap_ids : 1024;
        while (cap <= id) cap *= 2;
        Span *t = realloc(b->tok, sizeof *t * cap);
        if (!t) return 0;
        for (uint32_t i = b->cap_ids; i < cap; i++) t[i].len = NONE;
        b->tok = t, b->cap_ids = cap;
    }
    if (id >= b->nids) b->nids = id + 1;
    return 1;
}

static int store(Bpe *b, uint32_t id, const void *bytes, size_t n)
{
    if (!reserve_id(b, id) || !grow((void **)&b->pool, &b->pool_cap, b->pool_len + n + 1, 1)) return 0;
    memcpy(b->pool + b->pool_len, bytes, n);
    b->tok[id] = (Span){(uint32_t)b->pool_len, (uint32_t)n};
    b->pool_len += n;
    return 1;
}

static uint32_t *find_slot(const Bpe *b, const void *bytes, size_t n)
{
    uint32_t mask = b->by_bytes_cap - 1;
    for (uint32_t i = (uint32_t)hash_bytes(bytes, n) & mask;; i = (i + 1) & mask) {
        uint32_t id = b->by_bytes[i];
        if (id == NONE || (b->tok[id].len == n && !memcmp(bytes_of(b, id), bytes, n))) return &b->by_bytes[i];
    }
}

static int rehash_bytes(Bpe *b, uint32_t cap)
{
    uint32_t *old = b->by_bytes, old_cap = b->by_bytes_cap;
    if (!(b->by_bytes = malloc(sizeof(uint32_t) * cap))) return b->by_bytes = old, 0;
    memset(b->by_bytes, 0xff, sizeof(uint32_t) * cap);
    b->by_bytes_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i] != NONE) *find_slot(b, bytes_of(b, old[i]), b->tok[old[i]].len) = old[i];
    free(old);
    return 1;
}

int64_t bpe_find(const Bpe *b, const void *bytes, size_t n)
{
    if (!b->by_bytes_cap) return -1;
    uint32_t id = *find_slot(b, bytes, n);
    return id == NONE ? -1 : (int64_t)id;
}

int bpe_set_token(Bpe *b, uint32_t id, const void *bytes, size_t n, char *err, size_t errlen)
{
    if (id > BPE_MAX_ID) return snprintf(err, errlen, "token id %u is past %u", id, BPE_MAX_ID), 0;
    if (n == 0 || n > 0xffff) return snprintf(err, errlen, "token %u has %zu bytes (1 to 65535 are usable)", id, n), 0;
    if (id < b->nids && b->tok[id].len != NONE) return snprintf(err, errlen, "token id %u appears twice", id), 0;
    if (2 * (b->ntokens + 1) > b->by_bytes_cap && !rehash_bytes(b, b->by_bytes_cap ? 2 * b->by_bytes_cap : 1024))
        return snprintf(err, errlen, "out of memory"), 0;
    uint32_t *slot = find_slot(b, bytes, n);
    if (*slot != NONE) return snprintf(err, errlen, "tokens %u and %u are the same bytes", *slot, id), 0;
    if (!store(b, id, bytes, n)) return snprintf(err, errlen, "out of memory"), 0;
    *slot = id;
    b->ntokens++;
    if (n == 1) b->byte_token[*(const unsigned char *)bytes] = id;
    return 1;
}

static uint32_t pair_slot(const Bpe *b, uint64_t key)
{
    uint32_t mask = b->pair_cap - 1;
    uint32_t i = (uint32_t)(hash_pair(key) >> 32) & mask;
    while (b->pair_key[i] != UINT64_MAX && b->pair_key[i] != key) i = (i + 1) & mask;
    return i;
}

static int rehash_pairs(Bpe *b, uint32_t cap)
{
    uint64_t *ok = b->pair_key;
    uint32_t *orank = b->pair_rank, *ores = b->pair_result, ocap = b->pair_cap;
    b->pair_key = malloc(sizeof(uint64_t) * cap);
    b->pair_rank = malloc(sizeof(uint32_t) * cap), b->pair_result = malloc(sizeof(uint32_t) * cap);
    if (!b->pair_key || !b->pair_rank || !b->pair_result) {
        free(b->pair_key), free(b->pair_rank), free(b->pair_result);
        b->pair_key = ok, b->pair_rank = orank, b->pair_result = ores;
        return 0;
    }
    memset(b->pair_key, 0xff, sizeof(uint64_t) * cap);
    b->pair_cap = cap;
    for (uint32_t i = 0; i < ocap; i++)
        if (ok[i] != UINT64_MAX) {
            uint32_t s = pair_slot(b, ok[i]);
            b->pair_key[s] = ok[i], b->pair_rank[s] = orank[i], b->pair_result[s] = ores[i];
        }
    free(ok), free(orank), free(ores);
    return 1;
}

static int put_pair(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, uint32_t result, int replace)
{
    if (2 * (b->npairs + 1) > b->pair_cap && !rehash_pairs(b, b->pair_cap ? 2 * b->pair_cap : 1024)) return 0;
    uint64_t key = (uint64_t)left << 32 | right;
    uint32_t s = pair_slot(b, key);
    if (b->pair_key[s] == key && !replace) return 1;
    if (b->pair_key[s] != key) b->npairs++;
    b->pair_key[s] = key, b->pair_rank[s] = rank, b->pair_result[s] = result;
    return 1;
}

static int is_token(const Bpe *b, uint32_t id) { return id < b->nids && b->tok[id].len != NONE; }

int bpe_add_merge(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, char *err, size_t errlen)
{
    if (!is_token(b, left) || !is_token(b, right)) return snprintf(err, errlen, "names a token not in the vocabulary"), 0;
    size_t nl = b->tok[left].len, nr = b->tok[right].len;
    unsigned char stack[512], *joined = nl + nr <= sizeof stack ? stack : malloc(nl + nr);
    if (!joined) return snprintf(err, errlen, "out of memory"), 0;
    memcpy(joined, bytes_of(b, left), nl);
    memcpy(joined + nl, bytes_of(b, right), nr);
    int64_t result = bpe_find(b, joined, nl + nr);
    if (joined != stack) free(joined);
    if (result < 0) return snprintf(err, errlen, "makes a token that is not in the vocabulary"), 0;
    /* Hugging Face's merge map keeps the last of duplicate pairs */
    if (!put_pair(b, left, right, rank, (uint32_t)result, 1)) return snprintf(err, errlen, "out of memory"), 0;
    return 1;
}

int bpe_merges_from_ranks(Bpe *b)
{
    for (uint32_t id = 0; id < b->nids; id++) {
        uint32_t n = b->tok[id].len;
        if (n == NONE || n < 2) continue;
        for (uint32_t k = 1; k < n; k++) {
            const unsigned char *p = bytes_of(b, id);
            int64_t l = bpe_find(b, p, k), r = bpe_find(b, p + k, n - k);
            if (l >= 0 && r >= 0 && !put_pair(b, (uint32_t)l, (uint32_t)r, id, id, 0)) return 0;
        }
    }
    return 1;
}

static int longest_first(const void *x, const void *y)
{
    const Special *a = x, *b = y;
    return a->len != b->len ? (a->len < b->len ? 1 : -1) : (a->id > b->id) - (a->id < b->id);
}

int bpe_add_special(Bpe *b, uint32_t id, const char *text, size_t n, int lstrip, int rstrip, char *err,
                    size_t errlen)
{
    if (id > BPE_MAX_ID) return snprintf(err, errlen, "added token id %u is past %u", id, BPE_MAX_ID), 0;
    if (n == 0 || n > 0xffff) return snprintf(err, errlen, "added token %u has %zu bytes", id, n), 0;
    if (is_token(b, id) && (b->tok[id].len != n || memcmp(bytes_of(b, id), text, n)))
        return snprintf(err, errlen, "added token %u is not the vocabulary's token %u", id, id), 0;
    if (bpe_find_special(b, text, n) >= 0) return snprintf(err, errlen, "added token %u appears twice", id), 0;
    if (!is_token(b, id) && !store(b, id, text, n)) return snprintf(err, errlen, "out of memory"), 0;
    Special *s = realloc(b->specials, sizeof *s * (size_t)(b->nspecials + 1));
    if (!s) return snprintf(err, errlen, "out of memory"), 0;
    b->specials = s;
    s[b->nspecials++] = (Special){id, b->tok[id].off, (uint32_t)n, lstrip, rstrip};
    qsort(b->specials, (size_t)b->nspecials, sizeof *s, longest_first);
    b->special_first[(unsigned char)text[0]] = 1;
    return 1;
}

int64_t bpe_find_special(const Bpe *b, const char *text, size_t n)
{
    for (int i = 0; i < b->nspecials; i++)
        if (b->specials[i].len == n && !memcmp(b->pool + b->specials[i].off, text, n)) return b->specials[i].id;
    return -1;
}

int bpe_set_pattern(Bpe *b, const char *pattern, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errlen, "PCRE2 cannot compile it at offset %zu: %s", (size_t)at, (const char *)msg);
        return 0;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* without JIT (an unsupported CPU) it interprets */
    pcre2_code_free(b->re);
    b->re = re;
    return 1;
}

/* Can NFC leave this code point alone whatever surrounds it? A starter
 * that is no second part of a composition (Hangul's V and T jamo compose
 * by rule) and that NFC maps to itself (not a singleton or an excluded
 * composite). Such a character splits a text into parts NFC treats apart. */
static int nfc_inert_cp(utf8proc_int32_t cp)
{
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    if (p->combining_class || (p->comb_index >= 0x8000 && p->comb_index != 0xffff) || (cp >= 0x1161 && cp <= 0x1175) ||
        (cp >= 0x11a8 && cp <= 0x11c2))
        return 0;
    if (p->decomp_seqindex == 0xffff || p->decomp_type) return 1;
    utf8proc_uint8_t in[4], *out = NULL;
    utf8proc_ssize_t n = utf8proc_encode_char(cp, in), m = utf8proc_map(in, n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    int same = m == n && !memcmp(in, out, (size_t)n);
    free(out);
    return same;
}

void bpe_set_options(Bpe *b, const BpeOptions *o)
{
    b->opt = *o;
    for (utf8proc_int32_t cp = 0; o->nfc && cp < 0x10000; cp++)
        if (nfc_inert_cp(cp)) b->nfc_inert[cp >> 3] |= (unsigned char)(1 << (cp & 7));
}

int bpe_check(const Bpe *b, char *err, size_t errlen)
{
    for (int i = 0; i < 256; i++)
        if (b->byte_token[i] < 0)
            return snprintf(err, errlen, "no token is the single byte 0x%02x, so some text has no tokens "
                                         "(byte-level BPE has all 256)", i), 0;
    return 1;
}

/* ---- encoding ---- */

BpeScratch *bpe_scratch_new(const Bpe *b)
{
    BpeScratch *s = calloc(1, sizeof *s);
    if (!s || !(s->slots = calloc(CACHE_SLOTS, sizeof *s->slots)) ||
        (b->re && !(s->md = pcre2_match_data_create_from_pattern(b->re, NULL)))) {
        bpe_scratch_free(s);
        return NULL;
    }
    return s;
}

void bpe_scratch_free(BpeScratch *s)
{
    if (!s) return;
    pcre2_match_data_free(s->md);
    free(s->slots), free(s->words), free(s->ids), free(s->sym), free(s->heap), free(s->text);
    free(s);
}

static int cand_less(const Cand *a, const Cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static int heap_push(BpeScratch *s, Cand c)
{
    if (!grow((void **)&s->heap, &s->heap_cap, s->nheap + 1, sizeof c)) return 0;
    size_t i = s->nheap++;
    for (; i > 0 && cand_less(&c, &s->heap[(i - 1) / 2]); i = (i - 1) / 2) s->heap[i] = s->heap[(i - 1) / 2];
    s->heap[i] = c;
    return 1;
}

static Cand heap_pop(BpeScratch *s)
{
    Cand top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0, n = s->nheap;
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && cand_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!cand_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
    }
    if (n) s->heap[i] = last;
    return top;
}

/* The pair starting at symbol i, if it merges. */
static int push_pair(const Bpe *b, BpeScratch *s, int32_t i)
{
    int32_t j = s->sym[i].next;
    if (j < 0 || !b->pair_cap) return 1;
    uint32_t l = s->sym[i].id, r = s->sym[j].id, slot = pair_slot(b, (uint64_t)l << 32 | r);
    if (b->pair_key[slot] == UINT64_MAX) return 1;
    return heap_push(s, (Cand){b->pair_rank[slot], (uint32_t)i, l, r, b->pair_result[slot]});
}

/* One piece, merged lowest rank first (leftmost among equals): the ids go to out. */
static int merge_piece(const Bpe *b, BpeScratch *s, const unsigned char *p, size_t n, mtx_tokens *out)
{
    if (!grow((void **)&s->sym, &s->sym_cap, n, sizeof(Sym))) return 0;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (b->byte_token[p[i]] < 0) continue;   /* as Hugging Face's BPE without unk: dropped */
        s->sym[m] = (Sym){(uint32_t)b->byte_token[p[i]], m - 1, m + 1};
        m++;
    }
    if (!m) return 1;
    s->sym[m - 1].next = -1;
    s->nheap = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        if (!push_pair(b, s, i)) return 0;
    while (s->nheap) {
        Cand c = heap_pop(s);
        Sym *x = &s->sym[c.pos];
        if (x->id != c.left || x->next < 0 || s->sym[x->next].id != c.right) continue;   /* stale */
        Sym *y = &s->sym[x->next];
        x->id = c.result;
        y->id = NONE;
        x->next = y->next;
        if (y->next >= 0) s->sym[y->next].prev = (int32_t)c.pos;
        if ((x->prev >= 0 && !push_pair(b, s, x->prev)) || !push_pair(b, s, (int32_t)c.pos)) return 0;
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next)
        if (!mtx_tokens_push(out, s->sym[i].id)) return 0;
    return 1;
}

static void cache_clear(BpeScratch *s)
{
    memset(s->slots, 0, sizeof *s->slots * CACHE_SLOTS);
    s->used = s->words_len = s->ids_len = 0;
}

static CacheSlot *cache_slot(BpeScratch *s, const unsigned char *p, size_t n, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        CacheSlot *c = &s->slots[i];
        if (!c->len || (c->hash == h && c->len == n && !memcmp(s->words + c->word, p, n))) return c;
    }
}

static int cache_put(BpeScratch *s, CacheSlot *c, const unsigned char *p, size_t n, uint64_t h, const uint32_t *ids,
                     size_t nids)
{
    size_t wc = s->words_cap, ic = s->ids_cap;
    if (!grow((void **)&s->words, &wc, s->words_len + n, 1) || !grow((void **)&s->ids, &ic, s->ids_len + nids, 4))
        return 0;
    s->words_cap = (uint32_t)wc, s->ids_cap = (uint32_t)ic;
    memcpy(s->words + s->words_len, p, n);
    memcpy(s->ids + s->ids_len, ids, nids * 4);
    *c = (CacheSlot){h, s->words_len, s->ids_len, (uint16_t)n, (uint16_t)nids};
    s->words_len += (uint32_t)n, s->ids_len += (uint32_t)nids, s->used++;
    return 1;
}

static int encode_piece(const Bpe *b, BpeScratch *s, const unsigned char *p, size_t n, mtx_tokens *out)
{
    if (b->opt.ignore_merges) {
        int64_t id = bpe_find(b, p, n);
        if (id >= 0) return mtx_tokens_push(out, (uint32_t)id);
    }
    if (n > CACHED_WORD) return merge_piece(b, s, p, n, out);
    uint64_t h = hash_bytes(p, n);
    CacheSlot *c = cache_slot(s, p, n, h);
    if (c->len) {
        for (uint32_t i = 0; i < c->nids; i++)
            if (!mtx_tokens_push(out, s->ids[c->ids + i])) return 0;
        return 1;
    }
    int64_t first = out->n;
    if (!merge_piece(b, s, p, n, out)) return 0;
    if (s->used >= CACHE_SLOTS / 2 || s->words_len > (1u << 22)) {
        cache_clear(s);
        c = cache_slot(s, p, n, h);
    }
    return cache_put(s, c, p, n, h, out->v + first, (size_t)(out->n - first));
}

/* The regex's matches and the text between them (Hugging Face's Split,
 * behavior Isolated), each a piece. */
static int split_pieces(const Bpe *b, BpeScratch *s, const unsigned char *t, size_t n, mtx_tokens *out, char *err,
                        size_t errlen)
{
    if (!b->re) return encode_piece(b, s, t, n, out);
    size_t gap = 0, from = 0;
    while (from < n) {
        int rc = pcre2_match(b->re, t, n, from, 0, s->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return snprintf(err, errlen, "the pre-tokenizer's regex failed at byte %zu: %s", from, (const char *)msg), 0;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        if (ov[1] == ov[0]) {   /* an empty match: the character joins the text between matches */
            from = ov[0] + 1;
            while (from < n && (t[from] & 0xc0) == 0x80) from++;
            continue;
        }
        if ((ov[0] > gap && !encode_piece(b, s, t + gap, ov[0] - gap, out)) ||
            !encode_piece(b, s, t + ov[0], ov[1] - ov[0], out))
            return snprintf(err, errlen, "out of memory after %lld tokens", (long long)out->n), 0;
        gap = from = ov[1];
    }
    if (gap < n && !encode_piece(b, s, t + gap, n - gap, out))
        return snprintf(err, errlen, "out of memory after %lld tokens", (long long)out->n), 0;
    return 1;
}

static int put_text(BpeScratch *s, size_t *len, const void *p, size_t n)
{
    if (!n) return 1;
    if (!grow((void **)&s->text, &s->text_cap, *len + n, 1)) return 0;
    memcpy(s->text + *len, p, n);
    *len += n;
    return 1;
}

static int nfc_inert(const Bpe *b, utf8proc_int32_t cp)
{
    return cp < 0x10000 ? (b->nfc_inert[cp >> 3] >> (cp & 7)) & 1 : nfc_inert_cp(cp);
}

/* The code point at t (n > 0 bytes): its length, or -1 for an invalid byte. */
static int next_cp(const unsigned char *t, size_t n, utf8proc_int32_t *cp)
{
    if (*t < 0x80) return *cp = *t, 1;
    return (int)utf8proc_iterate(t, (utf8proc_ssize_t)(n > 4 ? 4 : n), cp);
}

/* NFC (utf8proc) of the parts of t that hold a character NFC may change,
 * each from the inert character before it to the next inert one; invalid
 * bytes stay as they are. 2: t is NFC already (nothing copied); 1: the NFC
 * text is in s->text[0, *len); 0: out of memory. */
static int normalize(const Bpe *b, BpeScratch *s, size_t *len, const unsigned char *t, size_t n)
{
    size_t done = 0, from = 0;   /* copied up to; where a part would start */
    utf8proc_int32_t cp;
    *len = 0;
    for (size_t i = 0; i < n;) {
        int k = next_cp(t + i, n - i, &cp);
        if (k < 0 || nfc_inert(b, cp)) {
            from = k < 0 ? i + 1 : i;
            i += k < 0 ? 1 : (size_t)k;
            continue;
        }
        size_t end = i + (size_t)k;
        while (end < n && (k = next_cp(t + end, n - end, &cp)) > 0 && !nfc_inert(b, cp)) end += (size_t)k;
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t m = utf8proc_map(t + from, (utf8proc_ssize_t)(end - from), &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        int ok = m >= 0 && put_text(s, len, t + done, from - done) && put_text(s, len, nfc, (size_t)m);
        free(nfc);
        if (!ok) return 0;
        done = from = i = end;
    }
    if (!done) return 2;
    return put_text(s, len, t + done, n - done);
}

static int ascii(const unsigned char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i] & 0x80) return 0;
    return 1;
}

/* Text with no added token in it: normalized, prefixed, split, merged. */
static int encode_plain(const Bpe *b, BpeScratch *s, const unsigned char *t, size_t n, mtx_tokens *out, char *err,
                        size_t errlen)
{
    if (!n) return 1;
    size_t len = 0;
    int nfc = b->opt.nfc && !ascii(t, n) ? normalize(b, s, &len, t, n) : 2;
    if (!nfc) return snprintf(err, errlen, "cannot normalize the text (NFC): out of memory"), 0;
    if (nfc == 1) t = s->text, n = len;
    if (b->opt.add_prefix_space && t[0] != ' ') {   /* ByteLevel's: a space before the text */
        if (!grow((void **)&s->text, &s->text_cap, n + 1, 1))
            return snprintf(err, errlen, "out of memory after %lld tokens", (long long)out->n), 0;
        if (nfc == 1) memmove(s->text + 1, s->text, n);   /* the NFC text is there already */
        else memcpy(s->text + 1, t, n);
        s->text[0] = ' ';
        t = s->text, n++;
    }
    return split_pieces(b, s, t, n, out, err, errlen);
}

static int space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* The leftmost added token in t[from, n), longest there: its extent (with
 * the whitespace lstrip / rstrip take) and id; 0 if none. */
static int next_special(const Bpe *b, const unsigned char *t, size_t from, size_t n, size_t *start, size_t *end,
                        uint32_t *id)
{
    for (size_t i = from; i < n; i++) {
        if (!b->special_first[t[i]]) continue;
        for (int k = 0; k < b->nspecials; k++) {
            const Special *sp = &b->specials[k];
            if (sp->len > n - i || memcmp(t + i, b->pool + sp->off, sp->len)) continue;
            size_t a = i, e = i + sp->len;
            while (sp->lstrip && a > from && space(t[a - 1])) a--;
            while (sp->rstrip && e < n && space(t[e])) e++;
            *start = a, *end = e, *id = sp->id;
            return 1;
        }
    }
    return 0;
}

int bpe_encode(const Bpe *b, BpeScratch *s, const char *text, size_t len, mtx_tokens *out, char *err, size_t errlen)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t at = 0, start, end;
    uint32_t id;
    while (b->opt.match_specials && b->nspecials && next_special(b, t, at, len, &start, &end, &id)) {
        if (!encode_plain(b, s, t + at, start - at, out, err, errlen)) return 0;
        if (!mtx_tokens_push(out, id)) return snprintf(err, errlen, "out of memory"), 0;
        at = end;
    }
    return encode_plain(b, s, t + at, len - at, out, err, errlen);
}

/* ---- decoding ---- */

/* Bytes of one UTF-8 sequence at p (at most n): its length if valid; else
 * minus the length of its maximal subpart (at least 1), one U+FFFD. */
static int utf8_sequence(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len) return -1;
    unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80, hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n || p[i] < lo || p[i] > hi) return -i;
        lo = 0x80, hi = 0xbf;
    }
    return len;
}

char *bpe_decode(const Bpe *b, const int32_t *ids, int n)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || !is_token(b, (uint32_t)ids[i])) return NULL;
        bytes += b->tok[ids[i]].len;
    }
    unsigned char *raw = malloc(bytes + 1), *text = malloc(3 * bytes + 1);   /* U+FFFD is 3 bytes a byte at most */
    if (!raw || !text) return free(raw), free(text), NULL;
    size_t at = 0, out = 0;
    for (int i = 0; i < n; i++) {
        memcpy(raw + at, bytes_of(b, (uint32_t)ids[i]), b->tok[ids[i]].len);
        at += b->tok[ids[i]].len;
    }
    for (size_t i = 0; i < bytes;) {
        int k = utf8_sequence(raw + i, bytes - i);
        if (k > 0) {
            memcpy(text + out, raw + i, (size_t)k);
            out += (size_t)k, i += (size_t)k;
        } else {
            memcpy(text + out, "\xef\xbf\xbd", 3);
            out += 3, i += (size_t)-k;
        }
    }
    text[out] = 0;
    free(raw);
    return (char *)text;
}
