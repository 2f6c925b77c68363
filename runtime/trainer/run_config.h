/* libmtxrt-internal: a trainer's run-time config (run_config.c), read by
 * the training loop (train.c) and by decoding (decode.c). */
#ifndef MTX_RUN_CONFIG_H
#define MTX_RUN_CONFIG_H

#include "mtxrt_keys.h"
#include "mtxrt_trainer.h"

enum { MAX_CONFIG = 256 };

/* The run's config: each descriptor entry's value, read as mtxc reads it
 * (runtime/keys/keys.c), from the compiled-in text or a key=value argument. */
typedef struct {
    char *text[MAX_CONFIG];                   /* the value's YAML text, unquoted (malloc'd) */
    mtx_key_value v[MAX_CONFIG];
} RunConfig;

void mtx_run_free(RunConfig *rc);
/* Read the compiled-in values, then argv[1..] (key=value) over them; 0 to
 * go on, -1 after --help, or an exit status after printing why. */
int mtx_run_parse(const mtx_program *prog, RunConfig *rc, int argc, char **argv, bool decoding);
/* A key's value (every program's descriptor has the keys the runtime reads). */
const mtx_key_value *mtx_run_get(const mtx_program *prog, const RunConfig *rc, const char *key);
/* A string key copied into out; 0 after saying so if it does not fit. */
int mtx_run_string(const mtx_program *prog, const RunConfig *rc, const char *key, char *out, size_t n);

/* Decoding's settings (decode.c), read from a run's config and checked
 * (from_checkpoint: a load path is required); 0 after printing why. */
typedef struct {
    char prompt[8192], params[4096], full[4096], tokenizer_type[64], tokenizer[4096], dataset_type[64], strategy[32];
    bool add_bos;
    mtx_sampling sampling;
    long long seed;
} DecodeSettings;
int mtx_decode_settings(const mtx_program *prog, const RunConfig *rc, DecodeSettings *d, bool from_checkpoint);
/* label, the prompt and its continuation (at most max_new tokens; 0: up to
 * max_target_length) on stdout, timings on stderr; 0 or an exit status. */
int mtx_decode_print(const mtx_program *prog, mtx_state *st, const DecodeSettings *d, int max_new, const char *label);

#endif
