/* A trainer's parameters as a Hugging Face model directory (`PATH export`,
 * `mtxc export`): config.json from the program's config (the fields
 * hf_checkpoint.c checks on import, plus torch_dtype), and the parameters in
 * the program's HF layout, inverted (transposed back, the folded query
 * scale taken out, RoPE pairs back to rotate_half's halves) as BF16 or F32
 * safetensors, sharded past a size with model.safetensors.index.json. A
 * float32 export imports back bit for bit. Without a load path, the
 * initial parameters (init_weights_seed): a random model of the config. The
 * directory is written under a temporary name and renamed when complete. */
#include "mtxrt_keys.h"
#include "mtxrt_trainer.h"
#include "run_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *out;
    int bf16;
    uint64_t shard_bytes;
    long long vocab;                      /* --vocab-size: the vocabulary's rows kept (0: all) */
} ExportOptions;

/* HF tensor m's shape as exported: its vocabulary's rows cut to --vocab-size. */
static int export_shape(const mtx_hf_tensor *m, const ExportOptions *o, int64_t shape[2])
{
    int rank = mtx_hf_shape(m, shape);
    if (m->vocab && o->vocab && o->vocab < shape[0]) shape[0] = o->vocab;
    return rank;
}

/* The elements of HF tensor m (one expert of a stacked parameter, or all of it). */
static uint64_t tensor_elems(const mtx_hf_tensor *m, const ExportOptions *o)
{
    int64_t shape[2];
    int rank = export_shape(m, o, shape);
    return (uint64_t)shape[0] * (uint64_t)(rank == 2 ? shape[1] : 1);
}

/* The value whose import (hf_checkpoint.c: float(value x scale + shift)) is p. */
static float unscale(float p, float scale, float shift)
{
    if ((scale == 1.0f && shift == 0.0f) || !isfinite(p)) return p;
    float f = (float)(((double)p - shift) / scale);
    for (int k = 0; k < 4 && (float)((double)f * scale + shift) != p; k++)
        f = nextafterf(f, (double)f * scale + shift < p ? INFINITY : -INFINITY);
    return f;
}

/* One HF tensor in Hugging Face's layout from its whole parameter p, into
 * out (its dtype's bytes), by the import's column map (hf_layout.c), its
 * first `keep` rows (HF's); 0: out of memory. */
static int unplace(const mtx_hf_tensor *m, const float *p, int bf16, int64_t keep, unsigned char *out)
{
    int64_t rows, cols;
    size_t first;
    mtx_hf_view(m, &rows, &cols, &first);
    p += first;
    int64_t *src = mtx_hf_columns(m, cols);
    if (!src) return 0;
    for (int64_t r0 = 0; r0 < rows; r0 += 64)
        for (int64_t c0 = 0; c0 < cols; c0 += 64)
            for (int64_t r = r0; r < rows && r < r0 + 64; r++)
                for (int64_t c = c0; c < cols && c < c0 + 64; c++) {
                    if ((m->transpose ? src[c] : r) >= keep) continue;
                    size_t at = m->transpose ? (size_t)(src[c] * rows + r) : (size_t)(r * cols + src[c]);
                    float v = unscale(p[r * cols + c], m->scale, m->shift);
                    if (bf16) {
                        mtx_bf16 h = mtx_f32_to_bf16(v);
                        memcpy(out + 2 * at, &h, 2);
                    } else {
                        memcpy(out + 4 * at, &v, 4);
                    }
                }
    free(src);
    return 1;
}

/* "cannot VERB 'path': why": 0. */
static int io_fail(char *err, size_t errlen, const char *verb, const char *path)
{
    snprintf(err, errlen, "cannot %s '%.900s': %s", verb, path, strerror(errno));
    return 0;
}

/* config.json: every field the import checks, and torch_dtype. */
static char *config_json(const mtx_program *prog, const ExportOptions *o)
{
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < prog->nhf_config; i++) {   /* a window no shorter than the sequence: none */
        const mtx_hf_field *f = &prog->hf_config[i];
        cJSON *v = f->check == MTX_HF_NULL_OR_AT_LEAST ? cJSON_CreateNull()
                   : !strcmp(f->key, "vocab_size") && o->vocab ? cJSON_CreateNumber((double)o->vocab)
                   : cJSON_Parse(f->value);
        if (v) cJSON_AddItemToObject(root, f->key, v);
    }
    cJSON_AddStringToObject(root, "torch_dtype", o->bf16 ? "bfloat16" : "float32");
    char *json = cJSON_Print(root), *text = json ? malloc(strlen(json) + 2) : NULL;
    if (text) sprintf(text, "%s\n", json);
    free(json);
    cJSON_Delete(root);
    return text;
}

/* Which shard each HF tensor goes to: in order, a new one when the next
 * tensor would pass the size (a tensor larger than it has a shard alone). */
static int plan_shards(const mtx_program *prog, const ExportOptions *o, int *shard_of)
{
    int shard = 0;
    uint64_t used = 0;
    for (int k = 0; k < prog->nhf; k++) {
        uint64_t bytes = tensor_elems(&prog->hf[k], o) * (o->bf16 ? 2 : 4);
        if (used && used + bytes > o->shard_bytes) shard++, used = 0;
        shard_of[k] = shard;
        used += bytes;
    }
    return shard + 1;
}

static void shard_name(int s, int n, char *out, size_t len)
{
    if (n == 1) snprintf(out, len, "model.safetensors");
    else snprintf(out, len, "model-%05d-of-%05d.safetensors", s + 1, n);
}

static char *shard_header(const mtx_program *prog, const ExportOptions *o, const int *shard_of, int s, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t at = 0;
    for (int k = 0; k < prog->nhf; k++) {
        if (shard_of[k] != s) continue;
        const mtx_hf_tensor *m = &prog->hf[k];
        cJSON *e = cJSON_AddObjectToObject(root, m->name), *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", o->bf16 ? "BF16" : "F32");
        int64_t dims[2];
        for (int i = 0, rank = export_shape(m, o, dims); i < rank; i++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)dims[i]));
        uint64_t bytes = tensor_elems(m, o) * (o->bf16 ? 2 : 4);
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + bytes)));
        at += bytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
}

static int write_shard(const mtx_program *prog, float *const *whole, const ExportOptions *o, const int *shard_of, int s,
                       const char *path, double *shown, int *done, char *err, size_t errlen)
{
    size_t hlen;
    char *header = shard_header(prog, o, shard_of, s, &hlen);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644), ok = fd >= 0 && mtx_write_all(fd, len8, 8) == 0 && mtx_write_all(fd, header, hlen) == 0;
    free(header);
    for (int k = 0; ok && k < prog->nhf; k++) {
        if (shard_of[k] != s) continue;
        const mtx_hf_tensor *m = &prog->hf[k];
        size_t bytes = tensor_elems(m, o) * (o->bf16 ? 2 : 4);
        int64_t shape[2];
        export_shape(m, o, shape);
        unsigned char *buf = malloc(bytes ? bytes : 1);
        if (!buf) return close(fd), snprintf(err, errlen, "out of memory for %s (%zu bytes)", m->name, bytes), 0;
        ok = unplace(m, whole[m->tensor], o->bf16, shape[0], buf) && mtx_write_all(fd, buf, bytes) == 0;
        free(buf);
        ++*done;
        if (mtx_seconds() - *shown >= 1) {
            *shown = mtx_seconds();
            fprintf(stderr, "exporting to '%s': %d of %d tensors\n", o->out, *done, prog->nhf);
        }
    }
    if (fd >= 0) ok = fsync(fd) == 0 && close(fd) == 0 && ok;
    return ok || io_fail(err, errlen, "write", path);
}

static char *index_json(const mtx_program *prog, const ExportOptions *o, const int *shard_of, int nshards)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    uint64_t total = 0;
    char name[64];
    for (int k = 0; k < prog->nhf; k++) {
        total += tensor_elems(&prog->hf[k], o) * (o->bf16 ? 2 : 4);
        shard_name(shard_of[k], nshards, name, sizeof name);
        cJSON_AddStringToObject(map, prog->hf[k].name, name);
    }
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* The directory under a temporary name, then renamed to o->out. */
static int export_dir(const mtx_program *prog, float *const *whole, const ExportOptions *o, char *err, size_t errlen)
{
    char tmp[4400], path[4600], name[64];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", o->out, (int)getpid());
    if (mkdir(tmp, 0755) != 0) return io_fail(err, errlen, "make", tmp);
    int *shard_of = malloc(sizeof(int) * (size_t)(prog->nhf + 1)), nshards = plan_shards(prog, o, shard_of), done = 0;
    double shown = mtx_seconds();
    char *cfg = config_json(prog, o), *index = nshards > 1 ? index_json(prog, o, shard_of, nshards) : NULL;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    int ok = mtx_write_text(path, cfg) == 0 || io_fail(err, errlen, "write", path);
    for (int s = 0; ok && s < nshards; s++) {
        shard_name(s, nshards, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", tmp, name);
        ok = write_shard(prog, whole, o, shard_of, s, path, &shown, &done, err, errlen);
    }
    if (ok && index) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", tmp);
        ok = mtx_write_text(path, index) == 0 || io_fail(err, errlen, "write", path);
    }
    if (ok && rename(tmp, o->out) != 0) ok = io_fail(err, errlen, "rename the finished directory to", o->out);
    if (!ok) {   /* nothing half-written stays */
        const char *files[] = {"config.json", "model.safetensors.index.json"};
        for (int i = 0; i < 2; i++) snprintf(path, sizeof path, "%s/%s", tmp, files[i]), unlink(path);
        for (int s = 0; s < nshards; s++) shard_name(s, nshards, name, sizeof name), snprintf(path, sizeof path, "%s/%s", tmp, name), unlink(path);
        rmdir(tmp);
    }
    free(shard_of), free(cfg), free(index);
    return ok;
}

/* "5GB", "100MB", "4096": bytes, or 0. */
static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double unit = !strcmp(end, "") || !strcmp(end, "B") ? 1 : !strcmp(end, "KB") ? 1e3 : !strcmp(end, "MB") ? 1e6
                : !strcmp(end, "GB") ? 1e9 : 0;
    if (errno || end == s || !(v > 0) || !unit || v * unit > 1e15) return 0;
    return (uint64_t)(v * unit);
}

static const char export_usage[] =
    "usage: PATH export [load_parameters_path=STEP_DIR] [key=value ...] -o DIR [--dtype bfloat16|float32]\n"
    "                   [--shard-size 5GB] [--vocab-size N]\n";

/* A vocabulary size 1 .. vocab, or 0. */
static long long parse_vocab(const char *s, int vocab)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > vocab ? 0 : v;
}

/* -o, --dtype, --shard-size and --vocab-size out of argv; the key=value arguments stay. */
static int export_options(const mtx_program *prog, int *argc, char **argv, ExportOptions *o)
{
    *o = (ExportOptions){.bf16 = 1, .shard_bytes = 5000000000ull};
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = i + 1 < *argc ? argv[i + 1] : NULL;
        int opt = !strcmp(a, "-o") || !strcmp(a, "--dtype") || !strcmp(a, "--shard-size") || !strcmp(a, "--vocab-size");
        if (opt && !v) return fprintf(stderr, "trainer: error: option '%s' needs a value\n%s", a, export_usage), 0;
        if (!strcmp(a, "-o")) o->out = v;
        else if (!strcmp(a, "--dtype") && (!strcmp(v, "bfloat16") || !strcmp(v, "float32"))) o->bf16 = !strcmp(v, "bfloat16");
        else if (!strcmp(a, "--shard-size") && (o->shard_bytes = parse_size(v))) {}
        else if (!strcmp(a, "--vocab-size") && (o->vocab = parse_vocab(v, prog->vocab))) {}
        else if (!strcmp(a, "--vocab-size"))
            return fprintf(stderr, "trainer: error: --vocab-size '%s' (a count from 1 to the model's vocab_size, %d)\n", v,
                           prog->vocab), 0;
        else if (opt) return fprintf(stderr, "trainer: error: %s '%s' (bfloat16 or float32; a size like 5GB)\n", a, v), 0;
        else if (a[0] == '-') return fprintf(stderr, "trainer: error: unknown option '%s'\n%s", a, export_usage), 0;
        else argv[n++] = argv[i];
        i += opt;
    }
    *argc = n;
    if (!o->out) return fprintf(stderr, "trainer: error: export needs -o DIR\n%s", export_usage), 0;
    return 1;
}

/* The step directory of the shard at coord[] beside params
 * (RUN/checkpoints/SHARD/STEP, SHARD as train.c names it); 0 when params
 * names no shard's step directory. */
static int shard_step(const mtx_program *prog, const char *params, const int coord[4], char *out, size_t n)
{
    char path[4096], name[160];
    snprintf(path, sizeof path, "%s", params);
    for (size_t len = strlen(path); len > 1 && path[len - 1] == '/'; len--) path[len - 1] = 0;
    char *step = strrchr(path, '/');
    if (!step) return 0;
    *step++ = 0;
    char *shard = strrchr(path, '/');
    shard = shard ? shard + 1 : path;
    if (!mtx_is_shard_name(shard)) return 0;
    mtx_shard_name(prog, coord, name, sizeof name);
    *shard = 0;
    snprintf(out, n, "%s%s/%s", path, name, step);
    return 1;
}

/* Every parameter whole, for a sharded program: each shard's checkpoint in
 * turn loaded into state and its share put into the whole (a parameter no
 * axis splits is the state's own). NULL with err. */
static float **gather_shards(const mtx_program *prog, mtx_state *state, const char *params, char *err, size_t errlen)
{
    float **whole = calloc((size_t)prog->ntensors + 1, sizeof *whole);
    unsigned char *memory = prog->state_memory(state);
    for (int k = 0; whole && k < prog->nhf; k++) {
        const mtx_hf_tensor *m = &prog->hf[k];
        if (whole[m->tensor]) continue;
        whole[m->tensor] = mtx_hf_sharded(m) ? calloc((size_t)mtx_hf_numel(m), sizeof(float))
                                             : (float *)(memory + prog->tensors[m->tensor].offset);
        if (!whole[m->tensor]) return snprintf(err, errlen, "out of memory for the whole of %s", m->name), NULL;
    }
    int coord[4] = {0};
    uint64_t position;
    char path[4400];
    for (coord[1] = 0; whole && coord[1] < prog->mesh_fsdp; coord[1]++)
        for (coord[2] = 0; coord[2] < prog->mesh_tensor; coord[2]++)
            for (coord[3] = 0; coord[3] < prog->mesh_expert; coord[3]++) {
                if (!shard_step(prog, params, coord, path, sizeof path)) {
                    snprintf(err, errlen, "this program's state is split over fsdp, tensor or expert ranks: "
                             "load_parameters_path must name a shard's step directory, as RUN/checkpoints/%s-0-of-N/STEP; "
                             "got '%.700s'", prog->mesh_fsdp > 1 ? "fsdp" : prog->mesh_tensor > 1 ? "tensor" : "expert", params);
                    return NULL;
                }
                if (mtx_checkpoint_load(prog, state, path, 1, &position, err, errlen) != 0) return NULL;
                for (int k = 0; k < prog->nhf; k++) {
                    const mtx_hf_tensor *m = &prog->hf[k];
                    if (!mtx_hf_sharded(m) || (k && prog->hf[k - 1].tensor == m->tensor)) continue;
                    mtx_hf_share(m, &prog->tensors[m->tensor], whole[m->tensor], memory, prog->mesh_fsdp, coord[1],
                                 m->split_ways > 1 ? coord[m->split_axis] : 0, 1);
                }
            }
    return whole;
}

static void free_whole(const mtx_program *prog, float **whole)
{
    for (int k = 0; whole && k < prog->nhf; k++) {
        const mtx_hf_tensor *m = &prog->hf[k];
        if (mtx_hf_sharded(m) && whole[m->tensor]) free(whole[m->tensor]), whole[m->tensor] = NULL;
    }
    free(whole);
}

int mtx_export_main(const mtx_program *prog, int argc, char **argv)
{
    ExportOptions o;
    if (!export_options(prog, &argc, argv, &o)) return 2;
    static RunConfig rc;
    char params[4096], err[1024];
    int status = mtx_run_parse(prog, &rc, argc, argv, true);
    if (!status && !mtx_run_string(prog, &rc, "load_parameters_path", params, sizeof params)) status = 2;
    if (status) return mtx_run_free(&rc), status < 0 ? 0 : status;
    struct stat st;
    int exists = lstat(o.out, &st) == 0, sharded = prog->mesh_fsdp * prog->mesh_tensor * prog->mesh_expert > 1;
    const char *why = !prog->nhf ? (prog->hf_missing ? prog->hf_missing : "this program's model has no Hugging Face form")
                      : sharded && !params[0] ? "a program split over fsdp, tensor or expert ranks exports a checkpoint: "
                                                "name one shard's step directory with load_parameters_path"
                      : sharded && mtx_hf_dir(params) ? "a Hugging Face directory exports with a one-device mesh"
                      : exists ? "the output directory exists already (nothing is overwritten)" : NULL;
    if (why) {
        fprintf(stderr, "trainer: error: %s%s%s\n", why, exists ? ": " : "", exists ? o.out : "");
        mtx_run_free(&rc);
        return 2;
    }
    mtx_state *state = prog->state_new();
    uint64_t position;
    double t0 = mtx_seconds();
    char what[4200];
    if (params[0]) {
        snprintf(what, sizeof what, "%s%s", params, sharded ? " and its sibling shards" : "");
    } else {   /* no load path: the initial parameters, a random model of this config */
        long long seed = mtx_run_get(prog, &rc, "init_weights_seed")->i;
        prog->init(state, mtx_rng_seed((uint64_t)seed));
        snprintf(what, sizeof what, "the initial parameters (init_weights_seed %lld)", seed);
    }
    mtx_run_free(&rc);
    float **whole = NULL;
    if (sharded) {
        whole = gather_shards(prog, state, params, err, sizeof err);
    } else if (!params[0] || mtx_checkpoint_load(prog, state, params, 1, &position, err, sizeof err) == 0) {
        whole = calloc((size_t)prog->ntensors + 1, sizeof *whole);
        for (int i = 0; whole && i < prog->ntensors; i++)
            whole[i] = (float *)((unsigned char *)prog->state_memory(state) + prog->tensors[i].offset);
        if (!whole) snprintf(err, sizeof err, "out of memory");
    }
    if (!whole || !export_dir(prog, whole, &o, err, sizeof err)) {
        fprintf(stderr, "trainer: error: %s\n", err);
        status = 2;
    } else {
        printf("exported %s to %s (%s, Hugging Face's layout) in %.2f s\n", what, o.out, o.bf16 ? "bfloat16" : "float32",
               mtx_seconds() - t0);
    }
    if (sharded) free_whole(prog, whole);
    else free(whole);
    prog->state_free(state);
    return status;
}
