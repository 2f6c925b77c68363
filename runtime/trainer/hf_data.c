/* dataset_type hf with hf_path json: examples from local JSON files, as
 * Hugging Face's load_dataset("json", data_files=PATTERN) reads them. A
 * file is JSON Lines (one object a line; blank lines skipped) or, when it
 * starts with '[', one array of objects. Each example's column (a string)
 * goes through the tokenizer between bos and eos (add_bos, add_eos), cut
 * to max_tokens as Hugging Face's tokenizer truncates (the eos kept). A
 * line that is not an object, lacks the column or holds no string there
 * is refused naming file:line and the key. */
#include "hf_data.h"

#include <cjson/cJSON.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_FILE = 1 << 30 };   /* bytes of one data file */

typedef struct {
    const mtx_tokenizer *tk;
    const char *column;
    bool add_bos, add_eos;
    int64_t max_tokens;
    mtx_examples *out;
    char *err;
    size_t errlen;
} Reader;

static int push(Reader *r, uint32_t id)
{
    return mtx_tokens_push(&r->out->tokens, id) || (snprintf(r->err, r->errlen, "out of memory for the data's tokens"), 0);
}

/* One example (an object) at `where` (file:line); 0 with a message. */
static int example(Reader *r, const cJSON *obj, const char *where)
{
    mtx_examples *x = r->out;
    if (!cJSON_IsObject(obj)) return snprintf(r->err, r->errlen, "%s: an example must be a JSON object", where), 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, r->column);
    if (!v) return snprintf(r->err, r->errlen, "%s: the example has no \"%s\" (the data columns)", where, r->column), 0;
    if (!cJSON_IsString(v)) return snprintf(r->err, r->errlen, "%s: \"%s\" is not a string", where, r->column), 0;
    if (x->n + 1 >= x->slots) {
        int64_t slots = x->slots ? 2 * x->slots : 1024, *starts = realloc(x->starts, sizeof(int64_t) * (size_t)slots);
        if (!starts) return snprintf(r->err, r->errlen, "out of memory for the data's examples"), 0;
        x->starts = starts, x->slots = slots;
    }
    mtx_tokens *t = &x->tokens;
    int64_t begin = t->n;
    if (r->add_bos && !push(r, (uint32_t)mtx_tokenizer_bos(r->tk))) return 0;
    char why[512];
    if (!mtx_tokenizer_encode(r->tk, v->valuestring, strlen(v->valuestring), t, why, sizeof why))
        return snprintf(r->err, r->errlen, "%s: \"%s\": %s", where, r->column, why), 0;
    if (r->add_eos && !push(r, (uint32_t)mtx_tokenizer_eos(r->tk))) return 0;
    if (r->max_tokens && t->n - begin > r->max_tokens) {   /* the first max_tokens, the eos last */
        t->n = begin + r->max_tokens;
        if (r->add_eos) t->v[t->n - 1] = (uint32_t)mtx_tokenizer_eos(r->tk);
        x->truncated++;
    }
    if (t->n - begin < 2) {   /* no target: nothing to learn from */
        t->n = begin;
        x->dropped++;
        return 1;
    }
    x->starts[x->n++] = begin;
    x->starts[x->n] = t->n;
    return 1;
}

/* A JSON Lines file: each non-blank line one example. */
static int read_lines(Reader *r, const char *text, size_t size, const char *path)
{
    long line = 0;
    for (size_t at = 0; at < size;) {
        const char *start = text + at, *nl = memchr(start, '\n', size - at);
        size_t len = nl ? (size_t)(nl - start) : size - at;
        at += len + 1, line++;
        size_t k = 0;
        while (k < len && (start[k] == ' ' || start[k] == '\t' || start[k] == '\r')) k++;
        if (k == len) continue;
        const char *end = NULL;
        cJSON *obj = cJSON_ParseWithLengthOpts(start, len, &end, 0);
        if (!obj) return snprintf(r->err, r->errlen, "%s:%ld: not JSON (at column %ld)", path, line,
                                  (long)(end ? end - start + 1 : 1)), 0;
        char where[4200];
        snprintf(where, sizeof where, "%s:%ld", path, line);
        int ok = example(r, obj, where);
        cJSON_Delete(obj);
        if (!ok) return 0;
    }
    return 1;
}

/* A file holding one array of examples, named by their index in messages. */
static int read_array(Reader *r, const char *text, size_t size, const char *path)
{
    const char *end = NULL;
    cJSON *all = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!all || !cJSON_IsArray(all)) {
        long line = 1;
        for (const char *p = text; end && p < end; p++) line += *p == '\n';
        cJSON_Delete(all);
        return snprintf(r->err, r->errlen, "%s:%ld: not a JSON array of examples", path, line), 0;
    }
    int ok = 1;
    long index = 0;
    for (const cJSON *e = all->child; ok && e; e = e->next, index++) {
        char where[4200];
        snprintf(where, sizeof where, "%s: element %ld", path, index);
        ok = example(r, e, where);
    }
    cJSON_Delete(all);
    return ok;
}

static int read_file(Reader *r, const char *path)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, MAX_FILE, 0, &size, &why);
    if (!text) return snprintf(r->err, r->errlen, "cannot read data file '%s': %s", path, why), 0;
    size_t k = 0;
    while (k < size && (text[k] == ' ' || text[k] == '\n' || text[k] == '\t' || text[k] == '\r')) k++;
    int ok = k < size && text[k] == '[' ? read_array(r, text, size, path) : read_lines(r, text, size, path);
    free(text);
    return ok;
}

int mtx_json_examples(const char *key, const char *pattern, const char *column, const mtx_tokenizer *tk, bool add_bos,
                      bool add_eos, int64_t max_tokens, mtx_examples *out, char *err, size_t errlen)
{
    *out = (mtx_examples){0};
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc) {
        snprintf(err, errlen, "%s '%s' %s", key, pattern, rc == GLOB_NOMATCH ? "matches no file" : "cannot be searched");
        if (rc != GLOB_NOMATCH) globfree(&g);
        return 0;
    }
    Reader r = {tk, column, add_bos, add_eos, max_tokens, out, err, errlen};
    int ok = 1;
    for (size_t i = 0; ok && i < g.gl_pathc; i++) ok = read_file(&r, g.gl_pathv[i]);
    out->files = (int)g.gl_pathc;
    globfree(&g);
    if (ok && !out->n) ok = (snprintf(err, errlen, "%s '%s': no example with 2 tokens or more", key, pattern), 0);
    if (!ok) mtx_examples_free(out);
    return ok;
}

void mtx_examples_free(mtx_examples *x)
{
    free(x->tokens.v);
    free(x->starts);
    *x = (mtx_examples){0};
}
