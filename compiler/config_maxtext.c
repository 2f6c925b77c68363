/* MaxText's keys that mtxc does not implement (maxtext_keys.def): a value
 * is read as one line of canonical YAML, checked against the key's kind,
 * and, for an UNIMPLEMENTED key, compared with MaxText's default once the
 * whole config is read. Canonical text makes "1" and "1.0", "True" and
 * "true", None and "" compare equal, and prints back as the same value. */
#include "mtxc.h"

#include <math.h>
#include <stdlib.h>
#include <yaml.h>

const MaxTextKey maxtext_keys[] = {
#define MKEY(name, kind, cls, def) {#name, MK_##kind, MK_##cls, def},
#include "maxtext_keys.def"
#undef MKEY
};

int maxtext_key_find(const char *name)
{
    for (int m = 0; m < NUM_MAXTEXT_KEYS; m++)
        if (!strcmp(maxtext_keys[m].name, name)) return m;
    return -1;
}

/* The shortest text that reads back as the same double. */
static void number(Buf *b, double x)
{
    char s[40];
    snprintf(s, sizeof s, "%.15g", x);
    if (strtod(s, NULL) != x) snprintf(s, sizeof s, "%.17g", x);
    buf_puts(b, s);
}

/* One scalar as `kind` reads it; 0 if it cannot be one. */
static bool scalar(Buf *b, MaxTextKind kind, const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    int flag;
    double x;
    if (mtx_scalar_null(s) || !strcmp(s, "None")) {           /* "" and None are MaxText's "unset" */
        buf_puts(b, "null");
        return true;
    }
    if (kind == MK_STR) return yaml_quote(b, s), true;
    if ((kind == MK_BOOL || kind == MK_ANY) && plain && mtx_scalar_bool(s, &flag))
        return buf_puts(b, flag ? "true" : "false"), true;
    if ((kind == MK_NUM || kind == MK_ANY) && plain && mtx_scalar_float(s, &x)) return number(b, x), true;
    if (kind == MK_ANY) return yaml_quote(b, s), true;
    return false;
}

/* One value written out: YAML aliases make a document a graph that expands
 * exponentially (9 runs of 9 aliases, 8 deep), so nodes are counted as they
 * are written, against a budget shared by the whole config. */
typedef struct {
    Buf *b;
    yaml_document_t *doc;
    long *budget;
} Canon;

static bool canon(Canon *k, MaxTextKind kind, yaml_node_t *n, int depth)
{
    Buf *b = k->b;
    if (depth > 64 || --*k->budget < 0) return false;   /* files are checked to 64 levels already */
    if (n->type == YAML_SCALAR_NODE) return scalar(b, depth ? MK_ANY : kind, n);
    bool seq = n->type == YAML_SEQUENCE_NODE;
    if (depth == 0 && kind != MK_ANY && kind != (seq ? MK_SEQ : MK_MAP)) return false;
    buf_puts(b, seq ? "[" : "{");
    if (seq) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            if (it > n->data.sequence.items.start) buf_puts(b, ", ");
            if (!canon(k, MK_ANY, yaml_document_get_node(k->doc, *it), depth + 1)) return false;
        }
    } else {
        for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
            if (pr > n->data.mapping.pairs.start) buf_puts(b, ", ");
            if (!canon(k, MK_ANY, yaml_document_get_node(k->doc, pr->key), depth + 1)) return false;
            buf_puts(b, ": ");
            if (!canon(k, MK_ANY, yaml_document_get_node(k->doc, pr->value), depth + 1)) return false;
        }
    }
    buf_puts(b, seq ? "]" : "}");
    return true;
}

static const char *kind_text(MaxTextKind k)
{
    static const char *const text[] = {"true or false", "a number", "a string", "a list", "a mapping", "a value"};
    return text[k];
}

const char *maxtext_value(Pool *p, int m, yaml_document_t *doc, yaml_node_t *n, long *budget, char *msg, size_t len)
{
    Buf b = {0};
    Canon k = {&b, doc, budget};
    const char *out = NULL;
    if (canon(&k, maxtext_keys[m].kind, n, 0)) out = pool_strdup(p, b.s ? b.s : "");
    else if (*budget < 0)
        snprintf(msg, len, "key '%s': the config's values expand to more than %ld YAML nodes (aliases repeating "
                 "aliases?)", maxtext_keys[m].name, MAXTEXT_NODE_BUDGET);
    else snprintf(msg, len, "key '%s' expects %s (MaxText's default: %s)", maxtext_keys[m].name,
                  kind_text(maxtext_keys[m].kind), maxtext_keys[m].def);
    buf_free(&b);
    return out;
}

const char *maxtext_default(Pool *p, int m)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    const char *def = maxtext_keys[m].def, *out = NULL;
    char msg[256];
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)def, strlen(def));
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        long budget = MAXTEXT_NODE_BUDGET;
        if (root) out = maxtext_value(p, m, &doc, root, &budget, msg, sizeof msg);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (!out) fatal("maxtext_keys.def: the default of '%s' does not read as its kind", maxtext_keys[m].name);
    return out;
}

bool maxtext_check(const Config *c, char *err, size_t errlen)
{
    Pool *p = pool_new();
    bool ok = true;
    for (int m = 0; ok && m < NUM_MAXTEXT_KEYS; m++) {
        const MaxTextValue *v = &c->mx[m];
        if (!v->set || maxtext_keys[m].cls != MK_UNIMPLEMENTED) continue;
        const char *def = maxtext_default(p, m);
        if (strcmp(v->text, def)) {
            config_error(err, errlen, v->loc, "key '%s' is MaxText's, which mtxc does not implement yet: only "
                         "MaxText's default %s is accepted, not %s", maxtext_keys[m].name, def, v->text);
            ok = false;
        }
    }
    pool_free(p);
    return ok;
}

void maxtext_print_keys(FILE *out, bool ignored_only)
{
    Pool *p = pool_new();
    if (ignored_only)
        fprintf(out, "# MaxText's keys that have no effect on a CPU trainer: mtxc accepts any value of\n"
                     "# each (of its type) and does nothing with it. MaxText's defaults shown.\n");
    else
        fprintf(out, "# Every key mtxc knows, with its class: implemented (mtxc's default), ignored\n"
                     "# (no effect on a CPU trainer; MaxText's default) or unimplemented (only MaxText's\n"
                     "# default is accepted). Keys marked (run) may be changed when starting a trainer.\n");
    for (int k = 0; !ignored_only && k < NUM_KEYS; k++)
        fprintf(out, "%-44s implemented%s\n", mtx_keys[k].name, mtx_keys[k].flags & MTX_KF_RUN ? " (run)" : "");
    for (int m = 0; m < NUM_MAXTEXT_KEYS; m++) {
        bool ignored = maxtext_keys[m].cls == MK_IGNORED;
        if (ignored_only && !ignored) continue;
        const char *def = maxtext_default(p, m);
        if (ignored_only) fprintf(out, "%s: %s\n", maxtext_keys[m].name, def);
        else fprintf(out, "%-44s %-13s %s\n", maxtext_keys[m].name, ignored ? "ignored" : "unimplemented", def);
    }
    pool_free(p);
}

void maxtext_print_values(FILE *out, const Config *c)
{
    Pool *p = pool_new();
    bool header = false;
    for (int m = 0; m < NUM_MAXTEXT_KEYS; m++) {
        const MaxTextValue *v = &c->mx[m];
        if (!v->set || !strcmp(v->text, maxtext_default(p, m))) continue;
        if (!header) fprintf(out, "# MaxText's keys away from their defaults (no effect on a CPU trainer)\n");
        header = true;
        fprintf(out, "%s: %s\n", maxtext_keys[m].name, v->text);
    }
    pool_free(p);
}
