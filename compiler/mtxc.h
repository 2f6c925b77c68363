/* mtxc: the compiler's one header. Config, IR, passes and backends. */
#ifndef MTXC_H
#define MTXC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MTXC_VERSION "0.1.0"

/* ---- util.c ---- */

/* Every allocation of a long-lived object goes through a Pool, freed at once. */
typedef struct Pool Pool;
Pool *pool_new(void);
void pool_free(Pool *p);
void *pool_alloc(Pool *p, size_t size);          /* zeroed */
char *pool_strdup(Pool *p, const char *s);
char *pool_fmt(Pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int edit_distance(const char *a, const char *b);
/* The candidate closest to `word`, or NULL if none is plausibly a typo of it. */
const char *closest_word(const char *word, const char *const *candidates, int n);

/* A growable string buffer. */
typedef struct { char *s; size_t len, cap; } Buf;
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_puts(Buf *b, const char *s);
void buf_free(Buf *b);

/* ---- config ---- */

typedef enum { KT_INT, KT_FLOAT, KT_BOOL, KT_STR, KT_ENUM, KT_LIST, KT_RULES } KeyType;
typedef enum { KR_ANY, KR_POS, KR_NONNEG, KR_AUTO, KR_UNIT, KR_UNIT_OPEN, KR_POW2 } KeyRange;
enum { KF_RUN = 1, KF_NULLABLE = 2 };

typedef struct {
    const char *name;
    KeyType type;
    KeyRange range;
    const char *choices;   /* space-separated, for ENUM and LIST */
    unsigned flags;
} KeyInfo;

typedef enum {
#define KEY(name, type, range, choices, flags) K_##name,
#include "config_keys.def"
#undef KEY
    NUM_KEYS
} KeyId;

extern const KeyInfo key_table[NUM_KEYS];
int key_lookup(const char *name);                /* KeyId or -1 */

/* Where a value came from: file:line:col, or a command-line argument. */
typedef struct {
    const char *file;      /* NULL: command line */
    int line, col;         /* 1-based; line 0 with file set: the file as a whole */
    const char *arg;       /* the key=value argument, for command-line values */
} SrcLoc;

typedef struct { char **items; int n; } StrList;
typedef struct { char *name; StrList axes; } AxisRule;

typedef struct {
    bool set, is_null;
    int seq;               /* order of setting: the larger was set later */
    long long i;
    double f;
    bool b;
    char *s;               /* STR, ENUM */
    StrList list;          /* LIST */
    AxisRule *rules;       /* RULES */
    int nrules;
    SrcLoc loc;
} ConfigValue;

/* Values computed from the keys, as MaxText computes them. */
typedef struct {
    int emb_dim, num_query_heads, num_kv_heads, mlp_dim, num_decoder_layers;
    int num_devices, num_slices;
    int mesh_data, mesh_fsdp, mesh_tensor;        /* dcn x ici per axis */
    long long global_batch;                       /* sequences per train step */
    long long micro_batch;                        /* sequences per microbatch */
    long long eval_batch;                         /* sequences per eval step */
    long long tokens_per_step;
} Derived;

typedef struct Config {
    Pool *pool;
    ConfigValue v[NUM_KEYS];
    Derived d;
    const char *config_dir;                       /* directory of the root config file */
} Config;

/* Load CONFIG, its model_name preset and key=value overrides; validate and
 * derive. On error returns NULL and writes one message into err. */
Config *config_load(const char *path, int noverrides, char **overrides,
                    char *err, size_t errlen);
void config_free(Config *c);
/* Internal to config: derive and cross-check values (config_resolve.c). */
bool config_resolve(Config *c, char *err, size_t errlen);
void config_error(char *err, size_t errlen, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void config_print(FILE *out, const Config *c);
const char *config_value_text(Pool *p, const Config *c, int key); /* YAML text */

static inline long long cfg_int(const Config *c, KeyId k) { return c->v[k].i; }
static inline double cfg_float(const Config *c, KeyId k) { return c->v[k].f; }
static inline bool cfg_bool(const Config *c, KeyId k) { return c->v[k].b; }
static inline const char *cfg_str(const Config *c, KeyId k) { return c->v[k].s; }

/* Names of derived values; setting one is an error that points at its source. */
extern const char *const derived_names[];
extern const int num_derived_names;

#endif
