/* A trainer's run-time config: the descriptor's compiled-in values, then
 * the key=value arguments over them, each read as mtxc reads it
 * (runtime/keys/keys.c). */
#include "run_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mtx_run_free(RunConfig *rc)
{
    for (int i = 0; i < MAX_CONFIG; i++) free(rc->text[i]);
}

static int config_index(const mtx_program *prog, const char *key)
{
    for (int i = 0; i < prog->nconfig; i++)
        if (!strcmp(prog->config[i].key, key)) return i;
    return -1;
}

/* A key the trainer reads; every program's descriptor has it. */
const mtx_key_value *mtx_run_get(const mtx_program *prog, const RunConfig *rc, const char *key)
{
    static const mtx_key_value none = {.is_null = 1, .s = ""};
    int i = config_index(prog, key);
    return i < 0 ? &none : &rc->v[i];
}

/* A string key copied into out; 0 after saying so if it does not fit. */
int mtx_run_string(const mtx_program *prog, const RunConfig *rc, const char *key, char *out, size_t n)
{
    const char *v = mtx_run_get(prog, rc, key)->s;
    if (strlen(v) >= n) {
        fprintf(stderr, "trainer: error: key '%s' is longer than %zu bytes\n", key, n - 1);
        return 0;
    }
    memcpy(out, v, strlen(v) + 1);
    return 1;
}

/* An error line on stderr, control characters escaped (as mtxc's). */
static void say(const char *fmt, ...)
{
    char line[1400], shown[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    mtx_escape_controls(line, shown, sizeof shown);
    fprintf(stderr, "%s\n", shown);
}

/* Read entry i's value from src (YAML text); 0 after printing why, naming
 * the argument that gave it (or the descriptor, for compiled-in text). */
static int read_value(const mtx_program *prog, RunConfig *rc, int i, const char *src, const char *arg)
{
    char msg[1200], why[1024];
    int plain, k = mtx_key_find(prog->config[i].key);
    if (k >= 0 && (mtx_keys[k].type == MTX_KT_LIST || mtx_keys[k].type == MTX_KT_RULES)) return 1;   /* compiled in */
    free(rc->text[i]);
    rc->text[i] = mtx_yaml_scalar(src, &plain, why, sizeof why);
    if (rc->text[i] && k >= 0) {
        if (!mtx_key_read(k, rc->text[i], plain, &rc->v[i], msg, sizeof msg)) return 1;
    } else if (rc->text[i]) {
        snprintf(msg, sizeof msg, "key '%s' is unknown to this runtime (a trainer built by another mtxc?)",
                 prog->config[i].key);
    } else {
        snprintf(msg, sizeof msg, "key '%s' %s", prog->config[i].key, why);
    }
    char shown[96];
    mtx_clip_value(arg ? arg : prog->config[i].key, shown, sizeof shown);
    say(arg ? "argument '%s': error: %s" : "trainer: error: compiled-in value of '%s': %s", shown, msg);
    return 0;
}

static void usage(const mtx_program *prog, FILE *out, bool decoding)
{
    if (decoding)
        fprintf(out, "usage: trainer decode [key=value ...]\n\n"
                     "Generates text with %s from load_parameters_path (or load_full_state_path): the prompt, then\n"
                     "tokens chosen by decode_sampling_strategy. Run-time keys and their values:\n", prog->model_name);
    else
        fprintf(out, "usage: trainer [key=value ...]\n       trainer decode [key=value ...]\n\n"
                     "Trains %s as compiled by mtxc (or, with decode, generates from a checkpoint).\n"
                     "Run-time keys and their values:\n", prog->model_name);
    for (int i = 0; i < prog->nconfig; i++)
        if (prog->config[i].runtime) fprintf(out, "  %s=%s\n", prog->config[i].key, prog->config[i].value);
    fprintf(out, "\nAll other keys are compiled in; change them with mtxc build.\n");
}

/* Read the compiled-in values, then the key=value arguments over them, each
 * checked as mtxc checks it; returns 0 to go on, -1 after --help, or an
 * exit status. */
int mtx_run_parse(const mtx_program *prog, RunConfig *rc, int argc, char **argv, bool decoding)
{
    memset(rc, 0, sizeof *rc);
    if (prog->nconfig > MAX_CONFIG) {
        fprintf(stderr, "trainer: error: %d config keys, at most %d\n", prog->nconfig, MAX_CONFIG);
        return 2;
    }
    for (int i = 0; i < prog->nconfig; i++)
        if (!read_value(prog, rc, i, prog->config[i].value, NULL)) return 2;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(prog, stdout, decoding);
            return -1;
        }
        char shown[96];
        mtx_clip_value(arg, shown, sizeof shown);
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
            say("argument '%s': error: expected key=value (see --help)", shown);
            return 2;
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - arg), arg);
        int k = config_index(prog, key);
        if (k < 0) {
            const char *names[MAX_CONFIG];
            int n = 0;
            for (int i = 0; i < prog->nconfig; i++)
                if (prog->config[i].runtime) names[n++] = prog->config[i].key;
            const char *best = mtx_closest_word(key, names, n);
            say("argument '%s': error: unknown key '%s'%s%s%s", shown, key, best ? " (did you mean '" : "",
                best ? best : "", best ? "'?)" : "");
            return 2;
        }
        if (!prog->config[k].runtime) {
            say("argument '%s': error: '%s' is compiled into this trainer "
                "(it changes the compiled program); rebuild with mtxc build ... %s", shown, key, shown);
            return 2;
        }
        if (!read_value(prog, rc, k, eq + 1, arg)) return 2;
    }
    return 0;
}

