/* Reading configs: base file < model_name preset < key=value overrides.
 * YAML comes from libyaml's document API; every value keeps the file, line
 * and column it came from so that later checks can point at it. */
#include "mtxc.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

enum { MAX_CONFIG_BYTES = 4 << 20, MAX_FLOW_DEPTH = 64 };   /* see flow_too_deep */

_Static_assert(NUM_KEYS > 0, "config_keys.def lists the keys");

typedef struct {
    Config *c;
    jmp_buf jb;
    char *err;
    size_t errlen;
    struct {                      /* open files (base_config nests), freed on error */
        yaml_parser_t *parser;
        yaml_document_t *doc;
        char *text;               /* the file's bytes, read once */
    } open[12];
    int nopen;
    yaml_document_t *doc;         /* the document being read */
    int seq;                      /* counts values set, for Config.v[].seq */
    long budget;                  /* YAML nodes MaxText's values may still expand to */
} Loader;

static void push_open(Loader *L, yaml_parser_t *parser, char *text)
{
    L->open[L->nopen].parser = parser;
    L->open[L->nopen].doc = NULL;
    L->open[L->nopen].text = text;
    L->nopen++;
    if (parser) {
        yaml_parser_initialize(parser);
        /* Not libyaml's guess: bytes FF FE would make a value UTF-16. */
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING);
    }
}

static void set_doc(Loader *L, yaml_document_t *doc)
{
    L->open[L->nopen - 1].doc = doc;
    L->doc = doc;
}

/* Close the innermost open file and return to reading its parent. */
static void close_yaml(Loader *L)
{
    L->nopen--;
    if (L->open[L->nopen].doc) yaml_document_delete(L->open[L->nopen].doc);
    if (L->open[L->nopen].parser) yaml_parser_delete(L->open[L->nopen].parser);
    free(L->open[L->nopen].text);
    L->doc = L->nopen ? L->open[L->nopen - 1].doc : NULL;
}

/* Format "where: error: message" into the loader's buffer and unwind. */
static void format_error(char *err, size_t errlen, SrcLoc loc, const char *fmt, va_list ap)
{
    char *text = xmalloc(errlen ? errlen : 1);
    int n;
    if (loc.file && loc.line > 0)
        n = snprintf(text, errlen, "%s:%d:%d: error: ", loc.file, loc.line, loc.col);
    else if (loc.file)
        n = snprintf(text, errlen, "%s: error: ", loc.file);
    else if (loc.arg) {
        char shown[96];
        mtx_clip_value(loc.arg, shown, sizeof shown);
        n = snprintf(text, errlen, "argument '%s': error: ", shown);
    }
    else
        n = snprintf(text, errlen, "mtxc: error: ");
    if (n >= 0 && (size_t)n < errlen) vsnprintf(text + n, errlen - (size_t)n, fmt, ap);
    mtx_escape_controls(text, err, errlen);
    free(text);
}

_Noreturn static void fail(Loader *L, SrcLoc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_error(L->err, L->errlen, loc, fmt, ap);
    va_end(ap);
    while (L->nopen) close_yaml(L);
    longjmp(L->jb, 1);
}

static SrcLoc node_loc(const char *file, const yaml_node_t *n)
{
    return (SrcLoc){file, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, NULL};
}

/* " (did you mean 'x'?)" or "" */
static const char *suggest(Pool *p, const char *word, const char *const *cands, int n)
{
    const char *best = mtx_closest_word(word, cands, n);
    return best ? pool_fmt(p, " (did you mean '%s'?)", best) : "";
}

/* Keys are numbered mtxc's first (KeyId), then MaxText's others (NUM_KEYS + MaxTextKeyId). */
enum { ALL_KEYS = NUM_KEYS + NUM_MAXTEXT_KEYS };

static const char *key_name(int k) { return k < NUM_KEYS ? mtx_keys[k].name : maxtext_keys[k - NUM_KEYS].name; }

static const char *suggest_key(Pool *p, const char *word)
{
    const char *names[ALL_KEYS];
    for (int k = 0; k < ALL_KEYS; k++) names[k] = key_name(k);
    return suggest(p, word, names, ALL_KEYS);
}

/* A list's words: MaxText's choices that mtxc lacks are accepted where a
 * later check decides (mesh axes of size 1). */
static void check_choice(Loader *L, SrcLoc loc, const char *key, const char *choices, const char *word)
{
    char msg[1024];
    if (mtx_key_choice(key, choices, word, msg, sizeof msg) < 0) fail(L, loc, "%s", msg);
}

/* ---- scalars ---- */

/* The runtime's reading of a scalar, which built trainers share. */
static void set_scalar(Loader *L, SrcLoc loc, int k, const char *text, bool plain, ConfigValue *v)
{
    mtx_key_value kv;
    char msg[1024];
    if (mtx_key_read(k, text, plain, &kv, msg, sizeof msg)) fail(L, loc, "%s", msg);
    v->is_null = kv.is_null;
    v->maxtext_only = kv.maxtext_only;
    v->i = kv.i;
    v->f = kv.f;
    v->b = kv.b;
    if (mtx_keys[k].type == MTX_KT_STR || mtx_keys[k].type == MTX_KT_ENUM) v->s = pool_strdup(L->c->pool, kv.s);
}

/* ---- lists and axis rules ---- */

static const char *scalar_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static StrList node_strlist(Loader *L, const char *file, yaml_node_t *n, const char *key,
                            const char *choices, const char *what)
{
    Pool *p = L->c->pool;
    if (n->type != YAML_SEQUENCE_NODE)
        fail(L, node_loc(file, n), "key '%s' expects a list of %s such as [\"a\", \"b\"]", key, what);
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    StrList l = {pool_alloc(p, sizeof(char *) * (size_t)(count + 1)), 0};
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(L->doc, *it);
        if (e->type != YAML_SCALAR_NODE)
            fail(L, node_loc(file, e), "key '%s' expects a list of %s", key, what);
        if (choices) check_choice(L, node_loc(file, e), key, choices, scalar_text(e));
        l.items[l.n++] = pool_strdup(p, scalar_text(e));
    }
    return l;
}

/* logical_axis_rules: [[logical_name, mesh_axis or [mesh_axes...]], ...] */
static void set_rules(Loader *L, const char *file, yaml_node_t *n, ConfigValue *v)
{
    Pool *p = L->c->pool;
    const char *axes = mtx_keys[K_mesh_axes].choices;
    if (n->type != YAML_SEQUENCE_NODE)
        fail(L, node_loc(file, n), "key 'logical_axis_rules' expects a list of [logical_axis, mesh_axes] pairs");
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    v->rules = pool_alloc(p, sizeof(AxisRule) * (size_t)(count + 1));
    v->nrules = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *r = yaml_document_get_node(L->doc, *it);
        yaml_node_t *name = NULL, *target = NULL;
        if (r->type == YAML_SEQUENCE_NODE && r->data.sequence.items.top - r->data.sequence.items.start == 2) {
            name = yaml_document_get_node(L->doc, r->data.sequence.items.start[0]);
            target = yaml_document_get_node(L->doc, r->data.sequence.items.start[1]);
        }
        if (!name || name->type != YAML_SCALAR_NODE)
            fail(L, node_loc(file, r), "logical_axis_rules: each rule must be [logical_axis, mesh_axes]");
        AxisRule *rule = &v->rules[v->nrules++];
        rule->name = pool_strdup(p, scalar_text(name));
        if (target->type == YAML_SCALAR_NODE) {
            check_choice(L, node_loc(file, target), "mesh axis", axes, scalar_text(target));
            rule->axes.items = pool_alloc(p, sizeof(char *));
            rule->axes.items[0] = pool_strdup(p, scalar_text(target));
            rule->axes.n = 1;
        } else {
            /* Each axis once at most: a longer list is a mistake, or aliases
             * repeating one list in every rule (quadratic to check). */
            if (target->type == YAML_SEQUENCE_NODE && target->data.sequence.items.top - target->data.sequence.items.start > 16)
                fail(L, node_loc(file, target), "logical_axis_rules: a rule maps to at most 16 mesh axes");
            rule->axes = node_strlist(L, file, target, "mesh axis", axes, "mesh axes");
        }
    }
}

/* Rules given later come first; earlier rules for other names are kept. */
static void merge_rules(Pool *p, ConfigValue *old, ConfigValue *v)
{
    if (!old->set) return;
    AxisRule *merged = pool_alloc(p, sizeof(AxisRule) * (size_t)(v->nrules + old->nrules));
    int n = 0;
    for (int i = 0; i < v->nrules; i++) merged[n++] = v->rules[i];
    for (int i = 0; i < old->nrules; i++) {
        bool overridden = false;
        for (int j = 0; j < v->nrules; j++)
            overridden |= !strcmp(old->rules[i].name, v->rules[j].name);
        if (!overridden) merged[n++] = old->rules[i];
    }
    v->rules = merged;
    v->nrules = n;
}

static bool is_derived_name(const char *name)
{
    for (int i = 0; i < num_derived_names; i++)
        if (!strcmp(derived_names[i], name)) return true;
    return false;
}

static int lookup_or_fail(Loader *L, SrcLoc loc, const char *name)
{
    int k = mtx_key_find(name);
    if (k >= 0) return k;
    int m = maxtext_key_find(name);
    if (m >= 0) return NUM_KEYS + m;
    if (is_derived_name(name))
        fail(L, loc, "'%s' is derived from other keys and cannot be set (set its base_* key instead)", name);
    fail(L, loc, "unknown key '%s'%s", name, suggest_key(L->c->pool, name));
}

static void set_maxtext(Loader *L, int m, yaml_node_t *n, SrcLoc loc)
{
    char msg[1024];
    const char *text = maxtext_value(L->c->pool, m, L->doc, n, &L->budget, msg, sizeof msg);
    if (!text) fail(L, loc, "%s", msg);
    MaxTextValue *v = &L->c->mx[m];
    *v = (MaxTextValue){.set = true, .seq = ++L->seq, .text = text, .loc = loc, .preset = v->preset};
}

/* Convert one YAML value node for key k and store it, replacing lower levels. */
static void set_from_node(Loader *L, const char *file, int k, yaml_node_t *n, SrcLoc loc)
{
    if (k >= NUM_KEYS) return set_maxtext(L, k - NUM_KEYS, n, loc);
    const mtx_key *ki = &mtx_keys[k];
    ConfigValue v = {0};
    v.set = true;
    v.loc = loc;
    if (ki->type == MTX_KT_LIST) {
        v.list = node_strlist(L, file, n, ki->name, ki->choices, "names");
    } else if (ki->type == MTX_KT_RULES) {
        set_rules(L, file, n, &v);
        merge_rules(L->c->pool, &L->c->v[k], &v);
    } else if (n->type != YAML_SCALAR_NODE) {
        fail(L, loc, "key '%s' expects a single value, not a list or mapping", ki->name);
    } else {
        set_scalar(L, loc, k, scalar_text(n), n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, &v);
    }
    v.seq = ++L->seq;
    v.preset = L->c->v[k].preset;
    L->c->v[k] = v;
}

/* ---- files ---- */

/* libyaml takes time quadratic in the nesting of flow collections
 * ([[[...]]] 100,000 deep: 27 s): files over 4 MiB and flow nesting over 64
 * levels are refused before it reads them. Quotes and comments are skipped;
 * a bracket inside a plain scalar may count, which only matters past 64. */
static bool flow_too_deep(const char *text, size_t n, int *line, int *col)
{
    int depth = 0, quote = 0, prev = '\n';
    bool comment = false;
    *line = 1, *col = 0;
    for (size_t i = 0; i < n; prev = text[i++]) {
        int ch = text[i];
        ++*col;
        if (ch == '\n') {
            ++*line, *col = 0, comment = false;
            continue;
        }
        if (comment) continue;
        if (quote) {
            if (ch == quote && !(quote == '"' && prev == '\\')) quote = 0;
            continue;
        }
        if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) comment = true;
        else if (ch == '"' || ch == '\'') quote = ch;
        else if ((ch == '[' || ch == '{') && ++depth > MAX_FLOW_DEPTH) return true;
        else if ((ch == ']' || ch == '}') && depth > 0) depth--;
    }
    return false;
}

/* The file read once into memory (bounded as it is read, so a pipe or
 * /dev/zero cannot run on), its nesting checked, then given to libyaml. */
static void open_yaml(Loader *L, const char *path, yaml_parser_t *parser, yaml_document_t *doc)
{
    if (L->nopen >= 10) fail(L, (SrcLoc){path, 0, 0, NULL}, "base_config nested too deeply (a cycle?)");
    const char *why;
    size_t n;
    char *text = mtx_read_file(path, MAX_CONFIG_BYTES, 1, &n, &why);
    if (!text) fail(L, (SrcLoc){path, 0, 0, NULL}, "cannot read config file: %s", why);
    push_open(L, parser, text);
    if (n == 0) fail(L, (SrcLoc){path, 0, 0, NULL}, "config file is empty (a FIFO nobody writes to reads as empty)");
    int line, col;
    if (flow_too_deep(text, n, &line, &col))
        fail(L, (SrcLoc){path, line, col, NULL}, "YAML nested more than %d levels deep", MAX_FLOW_DEPTH);
    size_t bom = n >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? 3 : 0;   /* libyaml skips it only when guessing */
    yaml_parser_set_input_string(parser, (const unsigned char *)text + bom, n - bom);
    if (!yaml_parser_load(parser, doc)) {
        SrcLoc loc = {path, (int)parser->problem_mark.line + 1, (int)parser->problem_mark.column + 1, NULL};
        if (parser->error == YAML_READER_ERROR) {   /* it gives only a byte offset: find line and column */
            size_t at = bom + parser->problem_offset;
            loc.line = 1, loc.col = 1;
            for (size_t i = 0; i < at && i < n; i++) text[i] == '\n' ? (loc.line++, loc.col = 1) : loc.col++;
            fail(L, loc, "cannot read config file: %s (configs are UTF-8)", parser->problem);
        }
        fail(L, loc, "YAML syntax error: %s%s%s", parser->problem,
             parser->context ? " " : "", parser->context ? parser->context : "");
    }
    set_doc(L, doc);
}

/* "a/b/../c" -> "a/c": paths in messages should read as the user would write them. */
static char *normalize_path(Pool *p, const char *path)
{
    char *out = pool_strdup(p, path);
    for (;;) {
        char *dd = strstr(out, "/../");
        if (!dd) break;
        char *start = dd;
        while (start > out && start[-1] != '/') start--;
        size_t seglen = (size_t)(dd - start);
        if (seglen == 0 || (seglen == 2 && !strncmp(start, "..", 2)) || (seglen == 1 && *start == '.'))
            break;                                  /* leading ../ or odd path: leave it */
        memmove(start, dd + 4, strlen(dd + 4) + 1);
    }
    while (!strncmp(out, "./", 2) && out[2]) out += 2;
    return out;
}

/* The directory part of a path, "." if none. */
static char *dir_of(Pool *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return pool_strdup(p, ".");
    if (slash == path) return pool_strdup(p, "/");
    return pool_fmt(p, "%.*s", (int)(slash - path), path);
}

static void load_file(Loader *L, const char *path, bool is_preset);

/* base_config: "file.yml" inherits a base file, relative to this file's
 * directory; when there is none there, the nearest parent directory's (as
 * MaxText's pyconfig falls back to its configs folder: post_train/sft.yml
 * says base_config: "base.yml"). */
static void load_base_config(Loader *L, const char *path, yaml_node_t *val)
{
    SrcLoc loc = node_loc(path, val);
    if (val->type != YAML_SCALAR_NODE)
        fail(L, loc, "key 'base_config' expects a file name");
    const char *name = scalar_text(val);
    Pool *p = L->c->pool;
    const char *base = name[0] == '/' ? pool_strdup(p, name)
                                      : normalize_path(p, pool_fmt(p, "%s/%s", dir_of(p, path), name));
    struct stat st;
    for (const char *dir = dir_of(p, base); name[0] != '/' && stat(base, &st) != 0 && errno == ENOENT;) {
        const char *up = dir_of(p, dir);
        if (!strcmp(up, dir)) break;   /* at the top of the path */
        const char *there = normalize_path(p, pool_fmt(p, "%s/%s", up, name));
        if (stat(there, &st) == 0) {
            base = there;
            break;
        }
        dir = up;
    }
    if (name[0] != '/' && stat(base, &st) != 0 && errno == ENOENT)
        fail(L, loc, "base_config '%s': no such file in %s or a directory above it", name, dir_of(p, path));
    load_file(L, base, false);         /* ours stays open meanwhile */
}

static void load_file(Loader *L, const char *path, bool is_preset)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    Pool *p = L->c->pool;
    path = pool_strdup(p, path);
    open_yaml(L, path, &parser, &doc);

    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type != YAML_MAPPING_NODE)
        fail(L, node_loc(path, root), "a config file must be a mapping of key: value lines");
    int seen_line[ALL_KEYS] = {0};
    for (yaml_node_pair_t *pr = root ? root->data.mapping.pairs.start : NULL;
         root && pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *key = yaml_document_get_node(&doc, pr->key);
        yaml_node_t *val = yaml_document_get_node(&doc, pr->value);
        SrcLoc loc = node_loc(path, key);
        if (key->type != YAML_SCALAR_NODE) fail(L, loc, "a key must be a plain name");
        const char *name = scalar_text(key);
        if (!strcmp(name, "base_config")) {
            if (is_preset) fail(L, loc, "a model preset cannot set base_config");
            load_base_config(L, path, val);
            continue;
        }
        int k = lookup_or_fail(L, loc, name);
        if (seen_line[k])
            fail(L, loc, "key '%s' is set twice in this file (first on line %d)", name, seen_line[k]);
        seen_line[k] = loc.line;
        if (is_preset && k == K_model_name)
            fail(L, loc, "a model preset cannot set model_name");
        set_from_node(L, path, k, val, node_loc(path, val));
    }
    close_yaml(L);
    /* Presets live next to the innermost base file (the first one finished). */
    if (!L->c->config_dir) L->c->config_dir = dir_of(p, path);
}

/* ---- command line ---- */

static void load_override(Loader *L, char *arg)
{
    SrcLoc loc = {NULL, 0, 0, arg};
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg) fail(L, loc, "expected key=value");
    char *name = pool_fmt(L->c->pool, "%.*s", (int)(eq - arg), arg);
    const char *text = eq + 1;
    int k = lookup_or_fail(L, loc, name);
    if (k < NUM_KEYS && mtx_keys[k].type != MTX_KT_LIST && mtx_keys[k].type != MTX_KT_RULES) {
        /* One value, read as a trainer reads its run-time arguments. */
        char msg[1024];
        int plain;
        char *scalar = mtx_yaml_scalar(text, &plain, msg, sizeof msg);
        if (!scalar) fail(L, loc, "key '%s' %s", name, msg);
        ConfigValue v = {.set = true, .seq = ++L->seq, .loc = loc, .preset = L->c->v[k].preset};
        char *kept = pool_strdup(L->c->pool, scalar);
        free(scalar);
        set_scalar(L, loc, k, kept, plain, &v);
        L->c->v[k] = v;
        return;
    }
    /* Lists, axis rules and MaxText's keys: a YAML document, nested no deeper than files. */
    int line, col;
    if (flow_too_deep(text, strlen(text), &line, &col))
        fail(L, loc, "key '%s': value nested more than %d levels deep", name, MAX_FLOW_DEPTH);
    yaml_parser_t parser;
    yaml_document_t doc;
    push_open(L, &parser, NULL);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) fail(L, loc, "key '%s': cannot read the value as YAML: %s", name, parser.problem);
    set_doc(L, &doc);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) fail(L, loc, "key '%s' needs a value", name);
    /* Errors about the value point at the argument, not at a line of it. */
    set_from_node(L, NULL, k, root, loc);
    close_yaml(L);
}

/* Which preset files exist, for the error that lists them. */
static const char *preset_list(Pool *p, const char *dir, const char ***names, int *n)
{
    struct dirent **ents;
    int count = scandir(dir, &ents, NULL, alphasort);
    Buf b = {0};
    *n = 0;
    *names = pool_alloc(p, sizeof(char *) * (size_t)(count > 0 ? count : 1));
    for (int i = 0; i < count; i++) {
        size_t len = strlen(ents[i]->d_name);
        if (len > 4 && !strcmp(ents[i]->d_name + len - 4, ".yml")) {
            char *name = pool_fmt(p, "%.*s", (int)(len - 4), ents[i]->d_name);
            buf_printf(&b, "%s%s", *n ? ", " : "", name);
            (*names)[(*n)++] = name;
        }
        free(ents[i]);
    }
    if (count >= 0) free(ents);
    const char *s = pool_strdup(p, b.s ? b.s : "(none)");
    buf_free(&b);
    return s;
}

static void load_preset(Loader *L, int noverrides, char **overrides)
{
    /* model_name may come from the command line: find it first. */
    for (int i = 0; i < noverrides; i++)
        if (!strncmp(overrides[i], "model_name=", 11)) load_override(L, overrides[i]);
    ConfigValue *mn = &L->c->v[K_model_name];
    if (!mn->set || !strcmp(mn->s, "default")) return;
    Pool *p = L->c->pool;
    const char *dir = pool_fmt(p, "%s/models", L->c->config_dir);
    const char *path = pool_fmt(p, "%s/%s.yml", dir, mn->s);
    struct stat st;
    if (stat(path, &st) != 0) {
        const char **names;
        int n;
        const char *list = preset_list(p, dir, &names, &n);
        char shown[96];
        mtx_clip_value(mn->s, shown, sizeof shown);
        fail(L, mn->loc, "unknown model_name '%s' (presets in %s: %s)%s", shown, dir, list,
             suggest(p, mn->s, names, n));
    }
    int before = L->seq;
    load_file(L, path, true);
    /* What the preset set, to hold the command line to MaxText's rule. */
    for (int k = 0; k < NUM_KEYS; k++)
        if (L->c->v[k].seq > before) L->c->v[k].preset = config_value_text(p, L->c, k);
    for (int m = 0; m < NUM_MAXTEXT_KEYS; m++)
        if (L->c->mx[m].seq > before) L->c->mx[m].preset = L->c->mx[m].text;
}

/* MaxText (pyconfig's validate_no_keys_overridden_twice): a key the preset
 * sets may be given on the command line with another value only with
 * override_model_config: true. */
static void check_preset_overrides(Loader *L, int after_preset)
{
    Config *c = L->c;
    if (cfg_bool(c, K_override_model_config)) return;
    const char *model = cfg_str(c, K_model_name);
    for (int k = 0; k < ALL_KEYS; k++) {
        bool ours = k < NUM_KEYS;
        const char *preset = ours ? c->v[k].preset : c->mx[k - NUM_KEYS].preset;
        int seq = ours ? c->v[k].seq : c->mx[k - NUM_KEYS].seq;
        if (!preset || seq <= after_preset) continue;
        const char *now = ours ? config_value_text(c->pool, c, k) : c->mx[k - NUM_KEYS].text;
        if (strcmp(now, preset))
            fail(L, ours ? c->v[k].loc : c->mx[k - NUM_KEYS].loc,
                 "key '%s' is %s in the preset of model_name '%s'; as in MaxText, the command line may change "
                 "it only with override_model_config=true", key_name(k), preset, model);
    }
}

/* The keys mtxc has and MaxText lacks: a MaxText base.yml does not set them. */
static const struct { KeyId k; const char *text; } mtxc_only[] = {
    {K_eval_dataset_path, ""}, {K_decode_sampling_seed, "1234"}, {K_peak_tflops_per_device, "0"},
    {K_device_memory_gib, "24"}, {K_query_pre_attn_scalar, "0"},
};

static void fill_mtxc_only(Loader *L, const char *path)
{
    for (size_t i = 0; i < sizeof mtxc_only / sizeof mtxc_only[0]; i++) {
        ConfigValue *v = &L->c->v[mtxc_only[i].k];
        if (v->set) continue;
        SrcLoc loc = {pool_strdup(L->c->pool, path), 0, 0, NULL};
        set_scalar(L, loc, mtxc_only[i].k, mtxc_only[i].text, true, v);
        v->set = true;
        v->loc = loc;
    }
}

/* Values mtxc knows as MaxText's but does not implement: the decoder block
 * first (a preset of another family says so in one line), then the others. */
static void check_maxtext_only(Loader *L)
{
    Config *c = L->c;
    char msg[1024];
    for (int i = -1; i < NUM_KEYS; i++) {
        int k = i < 0 ? K_decoder_block : i;
        const ConfigValue *v = &c->v[k];
        if (!v->maxtext_only || (mtx_keys[k].flags & MTX_KF_RUN)) continue;   /* run-time: the trainer says */
        mtx_key_choice(mtx_keys[k].name, mtx_keys[k].choices, v->s, msg, sizeof msg);
        fail(L, v->loc, "%s", msg);
    }
    for (int k = 0; k < NUM_KEYS; k++) {
        if (mtx_keys[k].type != MTX_KT_LIST || !mtx_keys[k].choices) continue;
        for (int i = 0; i < c->v[k].list.n; i++)
            if (mtx_key_choice(mtx_keys[k].name, mtx_keys[k].choices, c->v[k].list.items[i], msg, sizeof msg) &&
                k != K_mesh_axes)
                fail(L, c->v[k].loc, "%s", msg);
    }
    if (!maxtext_check(c, L->err, L->errlen)) {
        while (L->nopen) close_yaml(L);
        longjmp(L->jb, 1);
    }
}

void config_free(Config *c)
{
    if (!c) return;
    pool_free(c->pool);
    free(c);
}

Config *config_load(const char *path, int noverrides, char **overrides, char *err, size_t errlen)
{
    Loader L = {.err = err, .errlen = errlen, .budget = MAXTEXT_NODE_BUDGET};
    L.c = xcalloc(1, sizeof(Config));
    L.c->pool = pool_new();
    if (setjmp(L.jb)) {
        config_free(L.c);
        return NULL;
    }
    load_file(&L, path, false);
    load_preset(&L, noverrides, overrides);
    int after_preset = L.seq;
    for (int i = 0; i < noverrides; i++) load_override(&L, overrides[i]);
    fill_mtxc_only(&L, path);
    for (int k = 0; k < NUM_KEYS; k++)
        if (!L.c->v[k].set)
            fail(&L, (SrcLoc){pool_strdup(L.c->pool, path), 0, 0, NULL},
                 "key '%s' has no value: a config must set every key, or inherit them "
                 "with base_config: base.yml", mtx_keys[k].name);
    check_preset_overrides(&L, after_preset);
    check_maxtext_only(&L);
    if (!config_resolve(L.c, err, errlen)) {
        config_free(L.c);
        return NULL;
    }
    return L.c;
}

/* Shared with config_resolve.c: format an error at a value's location. */
void config_error(char *err, size_t errlen, SrcLoc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_error(err, errlen, loc, fmt, ap);
    va_end(ap);
}
