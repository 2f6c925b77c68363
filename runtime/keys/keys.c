/* The config schema (config_keys.def) and the one reading of a value that
 * mtxc (config files, key=value) and every built trainer (run-time
 * key=value) share: the same text is accepted or refused by both, with the
 * same words. */
#include "mtxrt_keys.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

const mtx_key mtx_keys[] = {
#define KEY(name, type, range, choices, flags) {#name, MTX_KT_##type, MTX_KR_##range, choices, flags},
#define RUN MTX_KF_RUN
#define NULLABLE MTX_KF_NULLABLE
#include "config_keys.def"
#undef RUN
#undef NULLABLE
#undef KEY
};
const int mtx_nkeys = (int)(sizeof mtx_keys / sizeof mtx_keys[0]);

/* No integer key means more: every size and product derived from one stays
 * far inside int64, and every value is exact as a double. */
#define MAX_INT (1LL << 53)   /* an integer compare: 2^53 + 1 is past it (as a double it is not) */

const char mtx_load_paths_conflict[] = "load_parameters_path and load_full_state_path cannot both be set";

int mtx_key_find(const char *name)
{
    for (int k = 0; k < mtx_nkeys; k++)
        if (!strcmp(mtx_keys[k].name, name)) return k;
    return -1;
}

static int fail(char *msg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
    return -1;
}

void mtx_clip_value(const char *text, char *out, size_t n)
{
    enum { MAX_SHOWN = 72 };
    size_t len = strlen(text);
    if (len <= MAX_SHOWN || n < MAX_SHOWN + 4) snprintf(out, n, "%s", text);
    else snprintf(out, n, "%.*s...", MAX_SHOWN, text);
}

/* ---- YAML text of one value ---- */

char *mtx_yaml_scalar(const char *value, int *plain, char *msg, size_t n)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    char *text = NULL;
    int done = 0, rc = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);   /* bytes FF FE are not a UTF-16 mark here */
    yaml_parser_set_input_string(&parser, (const unsigned char *)value, strlen(value));
    /* Events, not a document: a list or mapping is refused at its first
     * bracket, however deep it would nest. */
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = fail(msg, n, "cannot read the value as YAML: %s", parser.problem ? parser.problem : "syntax error");
            break;
        }
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            if (text) rc = fail(msg, n, "expects a single value");
            else {
                text = strdup((const char *)ev.data.scalar.value);
                *plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            }
            break;
        case YAML_ALIAS_EVENT:
            rc = fail(msg, n, "cannot read the value as YAML: '*' starts an alias (quote the value)");
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            rc = fail(msg, n, "expects a single value, not a list or mapping");
            break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc) {
        free(text);
        return NULL;
    }
    if (!text) {                              /* an empty value: YAML's null */
        text = strdup("");
        *plain = 1;
    }
    return text;
}

/* ---- one value of one key ---- */

int mtx_scalar_null(const char *s)
{
    return !strcmp(s, "None") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL") || !strcmp(s, "~") ||
           !*s;
}

/* YAML 1.1 numbers as PyYAML reads them: underscores allowed between digits. */
static int strip_underscores(const char *s, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '_') continue;
        if (j + 1 >= outlen) return 0;
        out[j++] = s[i];
    }
    out[j] = 0;
    return j > 0;
}

/* 1: an integer; 0: not one. Beyond int64, *out saturates (and the bound
 * check below says so). */
int mtx_scalar_int(const char *s, long long *out)
{
    char buf[64], *end;
    if (!strip_underscores(s, buf, sizeof buf)) return 0;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || (errno && errno != ERANGE)) return 0;
    *out = v;
    return 1;
}

int mtx_scalar_float(const char *s, double *out)
{
    char buf[64], *end;
    if (!strip_underscores(s, buf, sizeof buf)) return 0;
    if (strpbrk(buf, "xXpP") || strstr(buf, "nan") || strstr(buf, "NAN") || strstr(buf, "inf") || strstr(buf, "INF"))
        return 0;
    errno = 0;
    double v = strtod(buf, &end);
    if (*end || errno || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

int mtx_scalar_bool(const char *s, int *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return *out = 1, 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return *out = 0, 1;
    return 0;
}

static const char *range_text(mtx_key_range r)
{
    switch (r) {
    case MTX_KR_POS: return "a positive value";
    case MTX_KR_NONNEG: return "a value >= 0";
    case MTX_KR_AUTO: return "a positive value or -1";
    case MTX_KR_UNIT: return "a value in [0, 1]";
    case MTX_KR_UNIT_OPEN: return "a value in [0, 1)";
    case MTX_KR_POW2: return "a power of 2";
    case MTX_KR_NAME: return "one directory name (no '/', not '.' or '..')";
    default: return "any value";
    }
}

static int in_range(mtx_key_range r, double x)
{
    switch (r) {
    case MTX_KR_POS: return x > 0;
    case MTX_KR_NONNEG: return x >= 0;
    case MTX_KR_AUTO: return x > 0 || x == -1;
    case MTX_KR_UNIT: return x >= 0 && x <= 1;
    case MTX_KR_UNIT_OPEN: return x >= 0 && x < 1;
    case MTX_KR_POW2: return x >= 1 && x <= 0x1p62 && x == floor(x) && ((long long)x & ((long long)x - 1)) == 0;
    default: return 1;
    }
}

int mtx_key_choice(const char *key, const char *choices, const char *word, char *msg, size_t n)
{
    enum { MAX_WORDS = 48 };
    /* The words split in place in a copy: any length, none cut. */
    char *copy = strdup(choices), *list = malloc(strlen(choices) * 2 + 1), *save = NULL;
    const char *ptrs[MAX_WORDS];
    int count = 0, ours = -1;            /* ours: how many are mtxc's (those before "|") */
    if (!copy || !list) {
        free(copy), free(list);
        return fail(msg, n, "out of memory");
    }
    list[0] = 0;
    for (char *w = strtok_r(copy, " ", &save); w && count < MAX_WORDS; w = strtok_r(NULL, " ", &save)) {
        if (!strcmp(w, "|")) {
            ours = count;
            continue;
        }
        if (ours < 0) sprintf(list + strlen(list), "%s%s", count ? ", " : "", w);
        ptrs[count++] = w;
    }
    if (ours < 0) ours = count;
    char shown[96];
    mtx_clip_value(word, shown, sizeof shown);
    int rc = -1;
    for (int i = 0; i < count && rc < 0; i++) {
        if (strcmp(ptrs[i], word)) continue;
        rc = i < ours ? 0 : 1;
        if (rc) fail(msg, n, "%s '%s' is MaxText's, which mtxc does not implement yet (mtxc has: %s)", key, shown, list);
    }
    const char *best = rc < 0 ? mtx_closest_word(word, ptrs, count) : NULL;
    if (rc < 0 && best) fail(msg, n, "unknown %s '%s' (choices: %s) (did you mean '%s'?)", key, shown, list, best);
    else if (rc < 0) fail(msg, n, "unknown %s '%s' (choices: %s)", key, shown, list);
    free(copy);
    free(list);
    return rc;
}

int mtx_key_read(int k, const char *text, int plain, mtx_key_value *v, char *msg, size_t n)
{
    const mtx_key *key = &mtx_keys[k];
    char shown[96];
    mtx_clip_value(text, shown, sizeof shown);
    *v = (mtx_key_value){0};
    v->s = text;
    if (plain && mtx_scalar_null(text)) {
        if (key->flags & MTX_KF_NULLABLE) return v->is_null = 1, 0;
        if (key->type == MTX_KT_STR) return v->s = "", 0;
        if (!*text) return fail(msg, n, "key '%s' needs a value", key->name);
        return fail(msg, n, "key '%s' does not accept None", key->name);
    }
    switch (key->type) {
    case MTX_KT_INT:
        if (!plain && mtx_scalar_int(text, &v->i))
            return fail(msg, n, "key '%s' expects an integer, got the quoted string \"%s\"", key->name, shown);
        if (!plain || !mtx_scalar_int(text, &v->i))
            return fail(msg, n, "key '%s' expects an integer, got '%s'", key->name, shown);
        if (v->i > MAX_INT || v->i < -MAX_INT)
            return fail(msg, n, "key '%s' must be between -2^53 and 2^53 (9007199254740992), got %s", key->name, shown);
        if (!in_range(key->range, (double)v->i))
            return fail(msg, n, "key '%s' must be %s, got %s", key->name, range_text(key->range), shown);
        v->f = (double)v->i;
        return 0;
    case MTX_KT_FLOAT:
        if (!plain && mtx_scalar_float(text, &v->f))
            return fail(msg, n, "key '%s' expects a number, got the quoted string \"%s\"", key->name, shown);
        if (!plain || !mtx_scalar_float(text, &v->f))
            return fail(msg, n, "key '%s' expects a number, got '%s'", key->name, shown);
        if (!in_range(key->range, v->f))
            return fail(msg, n, "key '%s' must be %s, got %s", key->name, range_text(key->range), shown);
        return 0;
    case MTX_KT_BOOL:
        if (!plain || !mtx_scalar_bool(text, &v->b))
            return fail(msg, n, "key '%s' expects true or false, got '%s'", key->name, shown);
        return 0;
    case MTX_KT_STR:
        if (key->range == MTX_KR_NAME && !mtx_is_dir_name(text))
            return fail(msg, n, "key '%s' must be %s, got '%s'", key->name, range_text(key->range), shown);
        return 0;
    case MTX_KT_ENUM: {
        int rc = mtx_key_choice(key->name, key->choices, text, msg, n);
        v->maxtext_only = rc == 1;
        return rc < 0 ? -1 : 0;
    }
    default:
        return fail(msg, n, "key '%s' expects a list, got '%s'", key->name, shown);
    }
}
