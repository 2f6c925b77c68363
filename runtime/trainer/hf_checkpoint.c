/* Hugging Face model directories as parameters (load_parameters_path=DIR):
 * config.json checked field by field against the program's config
 * (mtx_program.hf_config), model.safetensors or the shards that
 * model.safetensors.index.json names, every tensor's header checked before
 * any is read, then each tensor read in chunks of whole rows (a reader
 * thread reads the next chunk while this one is placed), widened to float32
 * (F32, BF16, F16) and put in its parameter's place with the layout the
 * compiler gave (mtx_program.hf: transpose, scale, shift, RoPE pairs, an
 * expert's slice, a shorter vocabulary) over the trainer's threads: two
 * 32 MB buffers beyond the state. A device of a sharded mesh (fsdp, tensor,
 * expert) builds each parameter whole in a buffer and keeps its share. */
#include "mtxrt_keys.h"
#include "mtxrt_trainer.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#define MAX_HEADER ((uint64_t)100 << 20)
enum { F32, BF16, F16 };

typedef struct {
    const char *name;                 /* in its shard's header JSON */
    int dtype, rank, shard, used;
    int64_t shape[8];
    uint64_t begin, end;              /* in the shard's file */
} Tensor;

typedef struct {
    char path[4400];
    int fd;
    cJSON *header;
} Shard;

typedef struct {
    const char *dir;
    Shard *shards;
    int nshards;
    Tensor *t;
    int n;
    char *err;
    size_t errlen;
} Hf;

static int fail(Hf *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Hf *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, h->errlen, fmt, ap);
    va_end(ap);
    return 0;
}

int mtx_hf_dir(const char *dir)
{
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s/config.json", dir);
    snprintf(b, sizeof b, "%s/meta.json", dir);
    return access(a, F_OK) == 0 && access(b, F_OK) != 0;
}

static cJSON *read_json(Hf *h, const char *path)
{
    const char *why;
    size_t size;
    char *text = mtx_read_file(path, (size_t)64 << 20, 0, &size, &why);
    if (!text) return fail(h, "cannot read '%s': %s", path, why), NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!j || !cJSON_IsObject(j)) {
        int line = 1;
        for (const char *p = text; end && p < end && p < text + size; p++) line += *p == '\n';
        fail(h, "'%s' is not a JSON object%s (line %d)", path, j ? "" : ": it does not parse", line);
        cJSON_Delete(j);
        j = NULL;
    }
    free(text);
    return j;
}

/* ---- config.json against the program ---- */

/* Does config.json's value (or HF's default for an absent field) pass f's check? */
static int field_ok(const mtx_hf_field *f, const cJSON *have, const cJSON *want)
{
    switch (f->check) {
    case MTX_HF_AT_MOST:
        return cJSON_IsNumber(have) && have->valuedouble >= 1 && have->valuedouble <= want->valuedouble;
    case MTX_HF_NULL_OR_AT_LEAST:
        return cJSON_IsNull(have) || (cJSON_IsNumber(have) && have->valuedouble >= want->valuedouble);
    default:
        return cJSON_Compare(have, want, 1);
    }
}

static int check_config(Hf *h, const mtx_program *prog)
{
    static const char *const how[] = {"", ", at most", ", null or at least"};
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", h->dir);
    cJSON *cfg = read_json(h, path);
    if (!cfg) return 0;
    int ok = 1;
    for (int i = 0; ok && i < prog->nhf_config; i++) {
        const mtx_hf_field *f = &prog->hf_config[i];
        if (f->check == MTX_HF_EXPORT_ONLY) continue;
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(cfg, f->key);
        cJSON *want = cJSON_Parse(f->value), *dflt = have || !f->dflt ? NULL : cJSON_Parse(f->dflt);
        if (!have && !f->dflt) {
            ok = fail(h, "'%s' has no \"%s\" (this program's is%s %s)", path, f->key, how[f->check], f->value);
        } else if (!field_ok(f, have ? have : dflt, want)) {
            char *text = have ? cJSON_PrintUnformatted(have) : NULL;
            ok = fail(h, "'%s': \"%s\" is %s%s, this program's is%s %s (model_name and the model keys choose it)", path,
                      f->key, text ? text : f->dflt, have ? "" : " (its default: the field is absent)", how[f->check],
                      f->value);
            free(text);
        }
        cJSON_Delete(want);
        cJSON_Delete(dflt);
    }
    cJSON_Delete(cfg);
    return ok;
}

/* ---- the safetensors files ---- */

static int dtype_of(const char *s) { return !strcmp(s, "F32") ? F32 : !strcmp(s, "BF16") ? BF16 : !strcmp(s, "F16") ? F16 : -1; }
static uint64_t elem_bytes(int dtype) { return dtype == F32 ? 4 : 2; }

/* One header entry: dtype, shape, offsets inside the data; 0 with a message. */
static int read_entry(Hf *h, int shard, const cJSON *e, uint64_t data, uint64_t size, Tensor *t)
{
    const char *path = h->shards[shard].path;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    *t = (Tensor){.name = e->string, .shard = shard, .dtype = cJSON_IsString(dtype) ? dtype_of(dtype->valuestring) : -1};
    if (t->dtype < 0)
        return fail(h, "'%s': tensor %s has dtype %s; mtxc reads F32, BF16 and F16", path, e->string,
                    cJSON_IsString(dtype) ? dtype->valuestring : "(none)");
    uint64_t numel = 1;
    t->rank = cJSON_GetArraySize(shape);
    if (!cJSON_IsArray(shape) || t->rank > 8) return fail(h, "'%s': tensor %s has no shape of at most 8 dimensions", path, e->string);
    int d = 0;
    for (const cJSON *x = shape->child; x; x = x->next, d++) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9e15 || x->valuedouble != floor(x->valuedouble))
            return fail(h, "'%s': tensor %s has a shape entry that is no size", path, e->string);
        t->shape[d] = (int64_t)x->valuedouble;
        if (t->shape[d] && numel > UINT64_MAX / 4 / (uint64_t)t->shape[d])
            return fail(h, "'%s': tensor %s is larger than any file", path, e->string);
        numel *= (uint64_t)t->shape[d];
    }
    if (cJSON_GetArraySize(off) != 2 || !cJSON_IsNumber(off->child) || !cJSON_IsNumber(off->child->next) ||
        off->child->valuedouble < 0 || off->child->next->valuedouble < off->child->valuedouble ||
        off->child->next->valuedouble > (double)size)
        return fail(h, "'%s': tensor %s has data_offsets outside the file's %llu bytes of data", path, e->string,
                    (unsigned long long)size);
    t->begin = data + (uint64_t)off->child->valuedouble, t->end = data + (uint64_t)off->child->next->valuedouble;
    if (t->end - t->begin != numel * elem_bytes(t->dtype))
        return fail(h, "'%s': tensor %s has %llu bytes between its data_offsets, its shape and dtype make %llu", path,
                    e->string, (unsigned long long)(t->end - t->begin), (unsigned long long)(numel * elem_bytes(t->dtype)));
    return 1;
}

static int open_shard(Hf *h, int s)
{
    Shard *sh = &h->shards[s];
    const char *why;
    uint64_t size, hlen;
    unsigned char len8[8];
    if ((sh->fd = mtx_open_file(sh->path, 0, &size, &why)) < 0) return fail(h, "cannot read '%s': %s", sh->path, why);
    if (size < 8 || mtx_read_at(sh->fd, len8, 8, 0) != 0) return fail(h, "'%s' is %llu bytes, too short for safetensors", sh->path, (unsigned long long)size);
    hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > MAX_HEADER || hlen > size - 8)
        return fail(h, "'%s': its header length %llu is past the file's %llu bytes (or 100 MB): not safetensors, or truncated",
                    sh->path, (unsigned long long)hlen, (unsigned long long)size);
    char *text = malloc(hlen + 1);
    if (!text || mtx_read_at(sh->fd, text, hlen, 8) != 0) return free(text), fail(h, "cannot read the header of '%s'", sh->path);
    posix_fadvise(sh->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    sh->header = cJSON_ParseWithLength(text, hlen);
    free(text);
    if (!cJSON_IsObject(sh->header)) return fail(h, "'%s': its header is not a JSON object", sh->path);
    for (const cJSON *e = sh->header->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        Tensor *t = realloc(h->t, sizeof *t * (size_t)(h->n + 1));
        if (!t) return fail(h, "out of memory");
        h->t = t;
        if (!read_entry(h, s, e, 8 + hlen, size - 8 - hlen, &h->t[h->n])) return 0;
        h->n++;
    }
    return 1;
}

static int by_name(const void *a, const void *b) { return strcmp(((const Tensor *)a)->name, ((const Tensor *)b)->name); }

static Tensor *find(Hf *h, const char *name)
{
    Tensor key = {.name = name};
    return bsearch(&key, h->t, (size_t)h->n, sizeof *h->t, by_name);
}

/* The shards: the index's files, or model.safetensors. */
static int open_shards(Hf *h)
{
    char index_path[4400];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", h->dir);
    cJSON *index = access(index_path, F_OK) == 0 ? read_json(h, index_path) : NULL;
    if (!index && h->err[0]) return 0;
    const cJSON *map = index ? cJSON_GetObjectItemCaseSensitive(index, "weight_map") : NULL;
    if (index && !cJSON_IsObject(map)) return cJSON_Delete(index), fail(h, "'%s' has no \"weight_map\" object", index_path);
    int cap = index ? cJSON_GetArraySize(map) + 1 : 1, ok = 1;
    h->shards = calloc((size_t)cap, sizeof *h->shards);
    if (!index) snprintf(h->shards[h->nshards++].path, sizeof h->shards->path, "%s/model.safetensors", h->dir);
    for (const cJSON *e = map ? map->child : NULL; ok && e; e = e->next) {
        if (!cJSON_IsString(e) || !mtx_is_dir_name(e->valuestring)) {
            ok = fail(h, "'%s': weight_map gives %s a file name that is not one file of the directory", index_path, e->string);
            break;
        }
        int s = 0;
        while (s < h->nshards && strcmp(strrchr(h->shards[s].path, '/') + 1, e->valuestring)) s++;
        if (s == h->nshards) snprintf(h->shards[h->nshards++].path, sizeof h->shards->path, "%s/%s", h->dir, e->valuestring);
    }
    for (int s = 0; s < h->nshards; s++) h->shards[s].fd = -1;
    for (int s = 0; ok && s < h->nshards; s++) ok = open_shard(h, s);
    if (ok) qsort(h->t, (size_t)h->n, sizeof *h->t, by_name);
    for (int i = 1; ok && i < h->n; i++)
        if (!strcmp(h->t[i].name, h->t[i - 1].name))
            ok = fail(h, "tensor %s is in both '%s' and '%s'", h->t[i].name, h->shards[h->t[i - 1].shard].path,
                      h->shards[h->t[i].shard].path);
    for (const cJSON *e = map ? map->child : NULL; ok && e; e = e->next) {
        const Tensor *t = find(h, e->string);
        if (!t || strcmp(strrchr(h->shards[t->shard].path, '/') + 1, e->valuestring))
            ok = fail(h, "'%s' puts tensor %s in '%s', which has no such tensor", index_path, e->string, e->valuestring);
    }
    cJSON_Delete(index);
    return ok;
}

/* ---- the parameters ---- */

static void shape_text(const int64_t *shape, int rank, char *out, size_t n)
{
    size_t at = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < rank && at < n; d++) at += (size_t)snprintf(out + at, n - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < n) snprintf(out + at, n - at, "]");
}

/* Every parameter has its tensors, of the shapes its layout makes (fewer
 * vocabulary rows allowed); every tensor is some parameter's. */
static int match(Hf *h, const mtx_program *prog)
{
    int *parts = calloc((size_t)prog->ntensors + 1, sizeof *parts);
    if (!parts) return fail(h, "out of memory");
    for (int k = 0; k < prog->nhf; k++) {
        const mtx_hf_tensor *m = &prog->hf[k];
        const mtx_tensor_desc *d = &prog->tensors[m->tensor];
        Tensor *t = find(h, m->name);
        if (!t) return free(parts), fail(h, "'%s' has no tensor %s (this program's %s)", h->dir, m->name, d->name);
        int64_t want[2];
        int rank = mtx_hf_shape(m, want);
        char a[96], b[96];
        int short_vocab = m->vocab && t->rank == rank && t->shape[0] >= 1 && t->shape[0] < want[0] &&
                          (rank == 1 || t->shape[1] == want[1]);
        if (!short_vocab && (t->rank != rank || memcmp(t->shape, want, sizeof(int64_t) * (size_t)rank))) {
            shape_text(t->shape, t->rank, a, sizeof a), shape_text(want, rank, b, sizeof b);
            free(parts);
            return fail(h, "'%s': tensor %s is %s, this program's %s needs %s%s", h->shards[t->shard].path, m->name, a,
                        d->name, b, m->vocab ? " (or fewer vocabulary rows)" : "");
        }
        if (short_vocab)
            fprintf(stderr, "trainer: notice: '%s': %s has %lld vocabulary rows, this program %lld: the rest are zero\n",
                    h->dir, m->name, (long long)t->shape[0], (long long)want[0]);
        t->used = 1;
        parts[m->tensor]++;
    }
    for (int k = 0; k < prog->nhf; k++) {   /* each parameter whole: every expert of a stacked one */
        const mtx_hf_tensor *m = &prog->hf[k];
        int want = m->slice ? (int)m->shape[0] : 1;
        if (parts[m->tensor] != want) {
            int have = parts[m->tensor];
            free(parts);
            return fail(h, "this program's %s has %d Hugging Face tensors, its layout %d", prog->tensors[m->tensor].name,
                        have, want);
        }
    }
    int covered = 0, params = 0;
    for (int i = 0; i < prog->ntensors; i++) params += prog->tensors[i].kind == MTX_PARAM, covered += parts[i] > 0;
    free(parts);
    if (covered != params) return fail(h, "this program has %d parameters and %d of them in Hugging Face's layout", params, covered);
    for (int i = 0; i < h->n; i++) {
        size_t n = strlen(h->t[i].name);
        if (!h->t[i].used && !(n > 21 && !strcmp(h->t[i].name + n - 21, ".rotary_emb.inv_freq")))
            return fail(h, "'%s': tensor %s is none of this program's parameters (another model's checkpoint?)",
                        h->shards[h->t[i].shard].path, h->t[i].name);
    }
    return 1;
}

static float half_to_float(uint16_t x)
{
    int e = x >> 10 & 31, m = x & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return x >> 15 ? -v : v;
}

static inline float value(const unsigned char *raw, int dtype, size_t i)
{
    if (dtype == F32) {
        float f;
        memcpy(&f, raw + 4 * i, 4);
        return f;
    }
    uint16_t x;
    memcpy(&x, raw + 2 * i, 2);
    if (dtype == F16) return half_to_float(x);
    uint32_t bits = (uint32_t)x << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Placing one chunk: a job over blocks of 64 of the tensor's own rows, so
 * that each thread reads its part of the chunk front to back while its
 * writes stay in 64 columns. */
typedef struct {
    const mtx_hf_tensor *m;
    const unsigned char *raw;         /* the tensor's rows [h_first, h_end) */
    int dtype;
    int64_t rows, cols, *src, *inv;   /* the parameter's [rows, cols]; column maps both ways */
    int64_t h_first, h_end;
    float *to;
    _Atomic long long nans;
} Place;

static inline float scaled(const Place *p, size_t at, int dtype)
{
    float v = value(p->raw, dtype, at);
    return p->m->scale == 1.0f && p->m->shift == 0.0f ? v : (float)((double)v * p->m->scale + p->m->shift);
}

/* The tensor's rows [h0, h1); dtype is a constant in each caller, so each form is its own loop. */
static inline long long place_rows(const Place *p, int64_t h0, int64_t h1, int dtype)
{
    long long nans = 0;
    if (p->m->transpose) {   /* tensor row h is the parameter's column inv[h] */
        for (int64_t r = 0; r < p->rows; r++)
            for (int64_t h = h0; h < h1; h++) {
                float v = scaled(p, (size_t)((h - p->h_first) * p->rows + r), dtype);
                nans += v != v;
                p->to[r * p->cols + p->inv[h]] = v;
            }
    } else {
        for (int64_t r = h0; r < h1; r++)
            for (int64_t c = 0; c < p->cols; c++) {
                float v = scaled(p, (size_t)((r - p->h_first) * p->cols + p->src[c]), dtype);
                nans += v != v;
                p->to[r * p->cols + c] = v;
            }
    }
    return nans;
}

static void place_blocks(void *ctx, size_t first, size_t end)
{
    Place *p = ctx;
    int64_t h0 = p->h_first + (int64_t)first * 64, h1 = p->h_first + (int64_t)end * 64;
    if (h1 > p->h_end) h1 = p->h_end;
    long long n = p->dtype == BF16 ? place_rows(p, h0, h1, BF16) : p->dtype == F32 ? place_rows(p, h0, h1, F32)
                                                                                  : place_rows(p, h0, h1, F16);
    p->nans += n;
}

/* The tensor's rows [h0, h1), at raw, into the whole parameter `to`:
 * transposed, scaled, shifted, RoPE pairs; the NaNs counted (-1: out of memory). */
static long long place(const mtx_hf_tensor *m, const unsigned char *raw, int dtype, float *to, int64_t h0, int64_t h1)
{
    size_t first;
    Place p = {.m = m, .raw = raw, .dtype = dtype, .h_first = h0, .h_end = h1};
    mtx_hf_view(m, &p.rows, &p.cols, &first);
    p.to = to + first;
    p.src = mtx_hf_columns(m, p.cols);
    p.inv = malloc(sizeof(int64_t) * (size_t)(p.cols ? p.cols : 1));
    if (!p.src || !p.inv) return free(p.src), free(p.inv), -1;
    for (int64_t c = 0; c < p.cols; c++) p.inv[p.src[c]] = c;
    int64_t width = m->transpose ? p.rows : p.cols;
    mtx_parallel(place_blocks, &p, (size_t)((h1 - h0 + 63) / 64), 1, (double)(h1 - h0) * (double)width * MTX_COST_ELEMENT_NS);
    free(p.src), free(p.inv);
    return p.nans;
}

/* ---- reading: chunks of whole tensor rows, the next read while this one is placed ---- */

enum { CHUNK_BYTES = 32 << 20 };

typedef struct {
    int k;                            /* the program's hf entry */
    int64_t h0, h1;                   /* the tensor's rows */
} Chunk;

typedef struct {
    int fd, ok, running;
    unsigned char *buf;
    size_t n;
    uint64_t at;
    pthread_t thread;
} Read;

static void *read_job(void *arg)
{
    Read *r = arg;
    r->ok = mtx_read_at(r->fd, r->buf, r->n, r->at) == 0;
    return NULL;
}

static void read_start(Read *r, int fd, unsigned char *buf, size_t n, uint64_t at)
{
    *r = (Read){.fd = fd, .buf = buf, .n = n, .at = at};
    r->running = pthread_create(&r->thread, NULL, read_job, r) == 0;
    if (!r->running) read_job(r);   /* no thread: read here */
}

static int read_wait(Read *r)
{
    if (r->running) pthread_join(r->thread, NULL);
    r->running = 0;
    return r->ok;
}

static uint64_t row_bytes(const mtx_hf_tensor *m, int dtype)
{
    int64_t shape[2];
    int rank = mtx_hf_shape(m, shape);
    return (uint64_t)shape[rank - 1] * (dtype == F32 ? 4 : 2);
}

/* Every tensor cut into chunks of at most CHUNK_BYTES of whole rows (one
 * row at least); *biggest: the largest chunk's bytes. */
static Chunk *plan_chunks(Hf *h, const mtx_program *prog, int *n, uint64_t *biggest)
{
    Chunk *c = NULL;
    int cap = 0;
    *n = 0, *biggest = 0;
    for (int k = 0; k < prog->nhf; k++) {
        const mtx_hf_tensor *m = &prog->hf[k];
        const Tensor *t = find(h, m->name);
        uint64_t rb = row_bytes(m, t->dtype), per = rb >= CHUNK_BYTES ? 1 : CHUNK_BYTES / rb;
        int64_t hrows = (int64_t)((t->end - t->begin) / (rb ? rb : 1));
        for (int64_t h0 = 0; h0 < hrows; h0 += (int64_t)per) {
            if (*n == cap && !(c = realloc(c, sizeof *c * (size_t)(cap = cap ? 2 * cap : 256)))) return NULL;
            c[(*n)++] = (Chunk){k, h0, h0 + (int64_t)per < hrows ? h0 + (int64_t)per : hrows};
            *biggest = (uint64_t)(c[*n - 1].h1 - h0) * rb > *biggest ? (uint64_t)(c[*n - 1].h1 - h0) * rb : *biggest;
        }
    }
    return c;
}

/* Start reading chunk c into buf. */
static void read_chunk(Hf *h, const mtx_program *prog, const Chunk *c, Read *r, unsigned char *buf)
{
    const mtx_hf_tensor *m = &prog->hf[c->k];
    const Tensor *t = find(h, m->name);
    uint64_t rb = row_bytes(m, t->dtype);
    read_start(r, h->shards[t->shard].fd, buf, (size_t)((uint64_t)(c->h1 - c->h0) * rb), t->begin + (uint64_t)c->h0 * rb);
}

/* Where chunk i's parameter is built: the state itself, or (a device's
 * share of it) a buffer of the whole, which finish() cuts the share from.
 * Zeroed first where a shorter vocabulary leaves rows unwritten. */
static float *target(const mtx_program *prog, const mtx_hf_tensor *m, void *memory, float **whole)
{
    const mtx_tensor_desc *d = &prog->tensors[m->tensor];
    float *own = (float *)((unsigned char *)memory + d->offset);
    if (!mtx_hf_sharded(m)) {
        if (m->vocab) memset(own, 0, sizeof(float) * (size_t)mtx_hf_numel(m));
        return own;
    }
    return *whole = calloc((size_t)mtx_hf_numel(m), sizeof(float));
}

/* A parameter built whole: this device's share into the state. */
static void finish(const mtx_program *prog, const mtx_hf_tensor *m, void *memory, float **whole)
{
    if (!*whole) return;
    mtx_hf_share(m, &prog->tensors[m->tensor], *whole, memory, prog->mesh_fsdp, mtx_mesh_coord(1),
                 m->split_ways > 1 ? mtx_mesh_coord(m->split_axis) : 0, 0);
    free(*whole);
    *whole = NULL;
}

static int read_all(Hf *h, const mtx_program *prog, void *memory)
{
    int n;
    uint64_t biggest, bytes = 0;
    Chunk *chunks = plan_chunks(h, prog, &n, &biggest);
    unsigned char *buf[2] = {malloc(biggest ? biggest : 1), malloc(biggest ? biggest : 1)};
    if (!chunks || !buf[0] || !buf[1]) return free(chunks), free(buf[0]), free(buf[1]), fail(h, "out of memory");
    Read rd[2] = {{0}, {0}};
    double shown = mtx_seconds();
    long long nans = 0;
    int ok = 1;
    float *to = NULL, *whole = NULL;
    if (n) read_chunk(h, prog, &chunks[0], &rd[0], buf[0]);
    for (int i = 0; ok && i < n; i++) {
        const mtx_hf_tensor *m = &prog->hf[chunks[i].k];
        const Tensor *t = find(h, m->name);
        int read = read_wait(&rd[i % 2]);
        /* the next chunk, while this one is placed: one read at a time keeps the disk's reads in file order */
        if (i + 1 < n) read_chunk(h, prog, &chunks[i + 1], &rd[(i + 1) % 2], buf[(i + 1) % 2]);
        if (!read) {
            ok = fail(h, "'%s': cannot read tensor %s (the file ends before its data)", h->shards[t->shard].path, t->name);
            break;
        }
        int first_of_param = i == 0 || prog->hf[chunks[i - 1].k].tensor != m->tensor;
        if (first_of_param && !(to = target(prog, m, memory, &whole))) {
            ok = fail(h, "out of memory for the whole of %s (%lld values)", prog->tensors[m->tensor].name,
                      (long long)mtx_hf_numel(m));
            break;
        }
        long long k = place(m, buf[i % 2], t->dtype, to, chunks[i].h0, chunks[i].h1);
        if (k < 0) ok = fail(h, "out of memory placing %s", t->name);
        nans += k;
        bytes += rd[i % 2].n;
        if (i + 1 == n || prog->hf[chunks[i + 1].k].tensor != m->tensor) finish(prog, m, memory, &whole);
        if (mtx_seconds() - shown >= 1) {
            shown = mtx_seconds();
            fprintf(stderr, "importing '%s': %.0f MB, %d of %d tensors\n", h->dir, (double)bytes / 1e6, chunks[i].k + 1,
                    prog->nhf);
        }
    }
    read_wait(&rd[0]), read_wait(&rd[1]);   /* none left running */
    free(chunks), free(buf[0]), free(buf[1]), free(whole);
    if (ok && nans) fprintf(stderr, "trainer: warning: '%s' holds %lld NaN parameter values\n", h->dir, nans);
    return ok;
}

int mtx_hf_load(const mtx_program *prog, mtx_state *st, const char *dir, char *err, size_t errlen)
{
    Hf h = {.dir = dir, .err = err, .errlen = errlen};
    err[0] = 0;
    int ok;
    if (!prog->nhf) ok = fail(&h, "'%s' is a Hugging Face model directory, and this program's model (%s) has no Hugging "
                                  "Face form: %s", dir, prog->model_name, prog->hf_missing ? prog->hf_missing : "?");
    else
        ok = check_config(&h, prog) && open_shards(&h) && match(&h, prog) && read_all(&h, prog, prog->state_memory(st));
    for (int s = 0; s < h.nshards; s++) {
        if (h.shards[s].fd >= 0) close(h.shards[s].fd);
        cJSON_Delete(h.shards[s].header);
    }
    free(h.shards);
    free(h.t);
    return ok ? 0 : -1;
}
