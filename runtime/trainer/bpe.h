/* libmtxrt-internal: byte-level BPE, the model behind Hugging Face's
 * tokenizer.json for GPT-2, Llama 3 and Qwen (tokenizer_json.c) and behind
 * tiktoken's rank files (tiktoken.c). Tokens are byte strings; a text is
 * cut at added tokens, normalized (NFC, optional), split by the
 * pre-tokenizer's regex (PCRE2, UTF and Unicode properties), and each
 * piece merged pair by pair, the lowest-ranked pair first (leftmost among
 * equals), as both references do. */
#ifndef MTX_BPE_H
#define MTX_BPE_H

#include "mtxrt_trainer.h"

typedef struct Bpe Bpe;
#define BPE_MAX_ID 16777215u   /* ids past it are refused: a table by id stays small */
typedef struct BpeScratch BpeScratch;   /* one encoding thread's regex state and word cache */

Bpe *bpe_new(void);
void bpe_free(Bpe *b);

/* Token `id` is these bytes: 0 with a message when the id or the bytes
 * already have a token. */
int bpe_set_token(Bpe *b, uint32_t id, const void *bytes, size_t n, char *err, size_t errlen);
/* The id of exactly these bytes (a token, not an added token), or -1. */
int64_t bpe_find(const Bpe *b, const void *bytes, size_t n);
/* Merge `left` + `right` with this rank (Hugging Face's merges, in file
 * order): 0 with a message when a part or the result is no token. */
int bpe_add_merge(Bpe *b, uint32_t left, uint32_t right, uint32_t rank, char *err, size_t errlen);
/* tiktoken's rule: any two tokens whose bytes make a third merge into it,
 * ranked by its id. 0: out of memory. */
int bpe_merges_from_ranks(Bpe *b);

/* An added token (Hugging Face's added_tokens): its text is matched in the
 * input before anything else and never split; lstrip / rstrip take the
 * whitespace beside it along. */
int bpe_add_special(Bpe *b, uint32_t id, const char *text, size_t n, int lstrip, int rstrip, char *err,
                    size_t errlen);
int64_t bpe_find_special(const Bpe *b, const char *text, size_t n);   /* its id, or -1 */

/* The pre-tokenizer's regex (NULL: each text is one piece); 0 with PCRE2's
 * message and offset. */
int bpe_set_pattern(Bpe *b, const char *pattern, char *err, size_t errlen);
typedef struct {
    int nfc;                 /* normalizer NFC (utf8proc) */
    int ignore_merges;       /* a piece that is a token is taken whole (Llama 3, tiktoken) */
    int add_prefix_space;    /* ByteLevel's: a space before a text that does not start with one */
    int match_specials;      /* added tokens are matched in text (tokenizer.json; not tiktoken) */
} BpeOptions;
void bpe_set_options(Bpe *b, const BpeOptions *o);

uint32_t bpe_vocab(const Bpe *b);   /* the largest id + 1 */
/* Check after loading: every byte has a token. 0 with a message naming the first that has none. */
int bpe_check(const Bpe *b, char *err, size_t errlen);

BpeScratch *bpe_scratch_new(const Bpe *b);
void bpe_scratch_free(BpeScratch *s);
/* Appends the ids of text; 0 with a message (out of memory). Invalid UTF-8
 * is never matched by the regex: each such byte is a piece of its own. */
int bpe_encode(const Bpe *b, BpeScratch *s, const char *text, size_t len, mtx_tokens *out, char *err, size_t errlen);
/* The text of ids, malloc'd and NUL-terminated, invalid UTF-8 replaced by
 * U+FFFD (maximal subparts, as Rust's from_utf8_lossy); NULL for an id
 * that is no token. */
char *bpe_decode(const Bpe *b, const int32_t *ids, int n);

/* ---- the files (tokenizer_json.c, tiktoken.c) ---- */

typedef struct { int64_t bos, eos; } BpeEnds;   /* ids, -1: the tokenizer has none */
/* Hugging Face's tokenizer.json (path, or a directory holding one) and the
 * bos / eos of its tokenizer_config.json (else of its post-processor's
 * template). NULL with one message naming the file and the entry at fault. */
Bpe *tokenizer_json_load(const char *path, BpeEnds *ends, char *err, size_t errlen);
/* A tiktoken rank file with Llama 3's pattern and special tokens, as
 * MaxText's TikTokenTokenizer. */
Bpe *tiktoken_load(const char *path, BpeEnds *ends, char *err, size_t errlen);

#endif
