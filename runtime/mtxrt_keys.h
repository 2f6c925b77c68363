/* libmtxrt's config key schema (config_keys.def) and the text helpers
 * its messages use: one reading of every key for mtxc and every trainer. */
#ifndef MTXRT_KEYS_H
#define MTXRT_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* ---- text (text.c) ---- */

int mtx_edit_distance(const char *a, const char *b);
/* text with control characters written as escapes (\n, \t, \x01), so that
 * a message stays one line; truncated to fit out. */
void mtx_escape_controls(const char *text, char *out, size_t n);
/* Is s usable as one directory name under another (no '/', not "." or "..")? */
int mtx_is_dir_name(const char *s);
/* A 64-bit hash of a name (FNV-1a's step with its own offset basis), which
 * seeds each param's init stream and each dropout site's: changing it
 * changes every initial weight. */
uint64_t mtx_name_hash(const char *name, size_t n);
/* The candidate closest to `word`, or NULL if none is plausibly a typo of it. */
const char *mtx_closest_word(const char *word, const char *const *candidates, int n);

/* ---- config keys (keys.c): one schema and one reading of values for mtxc
 * and every trainer ---- */

typedef enum { MTX_KT_INT, MTX_KT_FLOAT, MTX_KT_BOOL, MTX_KT_STR, MTX_KT_ENUM, MTX_KT_LIST, MTX_KT_RULES } mtx_key_type;
typedef enum {
    MTX_KR_ANY, MTX_KR_POS, MTX_KR_NONNEG, MTX_KR_AUTO, MTX_KR_UNIT, MTX_KR_UNIT_OPEN, MTX_KR_POW2, MTX_KR_NAME
} mtx_key_range;
enum { MTX_KF_RUN = 1, MTX_KF_NULLABLE = 2 };

typedef struct {
    const char *name;
    mtx_key_type type;
    mtx_key_range range;
    const char *choices;                  /* space-separated, for ENUM and LIST; words after
                                             "|" are MaxText's that mtxc does not implement */
    unsigned flags;
} mtx_key;

/* A scalar value read for its key: i, f (also set for integers), b, or s
 * (the text itself, "" for a null string); is_null for None; maxtext_only
 * for a choice of MaxText's that mtxc does not implement (the caller says
 * so when it matters). */
typedef struct {
    int is_null, b, maxtext_only;
    long long i;
    double f;
    const char *s;
} mtx_key_value;

extern const mtx_key mtx_keys[];          /* in config_keys.def's order */
extern const int mtx_nkeys;
int mtx_key_find(const char *name);       /* index into mtx_keys, or -1 */
/* The text of a command-line value read as YAML (quotes removed, '' -> "",
 * an empty value -> "" plain): malloc'd, or NULL with a message. plain: the
 * scalar was unquoted (only plain text can be a number, boolean or None). */
char *mtx_yaml_scalar(const char *value, int *plain, char *msg, size_t n);
/* Read text for key k: type, range, choices; 0, or -1 with a message. */
int mtx_key_read(int k, const char *text, int plain, mtx_key_value *v, char *msg, size_t n);
/* Is word one of choices (space-separated)? 0; 1 with a message for one of
 * MaxText's choices that mtxc does not implement (after "|"); -1 with a
 * message for any other word. */
int mtx_key_choice(const char *key, const char *choices, const char *word, char *msg, size_t n);
/* Plain YAML scalars as PyYAML reads them: 1 and the value, or 0. */
int mtx_scalar_int(const char *s, long long *out);
int mtx_scalar_float(const char *s, double *out);   /* finite only */
int mtx_scalar_bool(const char *s, int *out);
int mtx_scalar_null(const char *s);                 /* None, null, ~, empty */
/* The one check across run-time keys, as both mtxc and trainers word it. */
extern const char mtx_load_paths_conflict[];
/* A value as messages show it: at most 72 characters, then "...". */
void mtx_clip_value(const char *text, char *out, size_t n);

#endif
