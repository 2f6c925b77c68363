/* Checkpoints: one directory per step, {run}/checkpoints/{step}/, holding
 *   state.safetensors  every tensor of the state under its descriptor name
 *                      (params/..., opt_state/mu/..., step, rng, ...): an
 *                      8-byte little-endian header length, a JSON header
 *                      (dtype, shape, data_offsets; __metadata__ strings),
 *                      then the raw little-endian data;
 *   meta.json          step, data position, a checksum of every tensor
 *                      (FNV-1a 64) and the resolved config.
 * A save writes a hidden temporary directory, fsyncs it and renames it into
 * place, so a crash leaves the previous checkpoints and never a half-visible
 * one. A load checks names, dtypes, shapes, sizes and checksums and says
 * which file and tensor is wrong. */
#include "mtxrt.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dtype_name(mtx_dtype t)
{
    switch (t) {
    case MTX_F32: return "F32";
    case MTX_I32: return "I32";
    case MTX_I64: return "I64";
    case MTX_U64: return "U64";
    }
    return "?";
}

static size_t tensor_bytes(const mtx_tensor_desc *t)
{
    size_t n = t->dtype == MTX_I64 || t->dtype == MTX_U64 ? 8 : 4;
    for (int d = 0; d < t->rank; d++) n *= (size_t)t->shape[d];
    return n;
}

uint64_t mtx_checksum(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- saving ---- */

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_file(const char *path, const void *head, size_t head_n, const mtx_program *prog,
                      const unsigned char *memory)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int rc = write_all(fd, head, head_n);
    for (int i = 0; prog && !rc && i < prog->ntensors; i++)
        rc = write_all(fd, memory + prog->tensors[i].offset, tensor_bytes(&prog->tensors[i]));
    if (!rc) rc = fsync(fd);
    if (close(fd) != 0) rc = -1;
    return rc;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int make_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static void remove_tree(const char *dir)
{
    const char *files[] = {"state.safetensors", "meta.json"};
    for (int i = 0; i < 2; i++) {
        char path[8300];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The JSON header of the safetensors file, padded with spaces to 8 bytes. */
static char *safetensors_header(const mtx_program *prog, long long step, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    char text[64];
    snprintf(text, sizeof text, "%lld", step);
    cJSON_AddStringToObject(meta, "format", "mtxc-checkpoint-1");
    cJSON_AddStringToObject(meta, "step", text);
    cJSON_AddStringToObject(meta, "model_name", prog->model_name);
    size_t at = 0;
    for (int i = 0; i < prog->ntensors; i++) {
        const mtx_tensor_desc *t = &prog->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->rank; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        at += tensor_bytes(t);
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    char *out = malloc(8 + padded);
    uint64_t le = padded;
    for (int b = 0; b < 8; b++) out[b] = (char)(le >> (8 * b));
    memcpy(out + 8, json, n);
    memset(out + 8 + n, ' ', padded - n);
    free(json);
    *len = 8 + padded;
    return out;
}

static char *meta_json(const mtx_program *prog, const unsigned char *memory, long long step, uint64_t position)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "mtxc-checkpoint-1");
    cJSON_AddNumberToObject(root, "step", (double)step);
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)position);
    cJSON_AddStringToObject(root, "data_position", text);
    cJSON *sums = cJSON_AddObjectToObject(root, "checksums");
    for (int i = 0; i < prog->ntensors; i++) {
        const mtx_tensor_desc *t = &prog->tensors[i];
        snprintf(text, sizeof text, "%016llx",
                 (unsigned long long)mtx_checksum(memory + t->offset, tensor_bytes(t)));
        cJSON_AddStringToObject(sums, t->name, text);
    }
    cJSON *config = cJSON_AddObjectToObject(root, "config");
    for (int i = 0; i < prog->nconfig; i++) cJSON_AddStringToObject(config, prog->config[i].key, prog->config[i].value);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    return json;
}

int mtx_checkpoint_save(const mtx_program *prog, const mtx_state *st, const char *dir, long long step,
                        uint64_t data_position, char *err, size_t errlen)
{
    const unsigned char *memory = prog->state_memory(st);
    char tmp[4200], final[4200], path[4300];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%lld-%d", dir, step, (int)getpid());
    snprintf(final, sizeof final, "%s/%lld", dir, step);
    if (make_dirs(dir) != 0 || (mkdir(tmp, 0755) != 0 && errno != EEXIST))
        return fail(err, errlen, "cannot create checkpoint directory in '%s': %s", dir, strerror(errno));
    size_t head_n;
    char *head = safetensors_header(prog, step, &head_n), *meta = meta_json(prog, memory, step, data_position);
    snprintf(path, sizeof path, "%s/state.safetensors", tmp);
    int rc = write_file(path, head, head_n, prog, memory);
    if (!rc) {
        snprintf(path, sizeof path, "%s/meta.json", tmp);
        rc = write_file(path, meta, strlen(meta), NULL, NULL);
    }
    free(head);
    free(meta);
    if (rc) {
        int e = errno;
        remove_tree(tmp);
        return fail(err, errlen, "cannot write checkpoint %s: %s (previous checkpoints are kept)", path, strerror(e));
    }
    fsync_dir(tmp);
    remove_tree(final);                          /* a stale one of the same step */
    if (rename(tmp, final) != 0) {
        int e = errno;
        remove_tree(tmp);
        return fail(err, errlen, "cannot move checkpoint into %s: %s", final, strerror(e));
    }
    fsync_dir(dir);
    return 0;
}

/* ---- finding ---- */

static bool complete(const char *dir, const char *name)
{
    char path[4300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/meta.json", dir, name);
    if (stat(path, &st) != 0) return false;
    snprintf(path, sizeof path, "%s/%s/state.safetensors", dir, name);
    return stat(path, &st) == 0;
}

/* Steps of the complete checkpoints in dir, ascending; returns how many. */
static int list_steps(const char *dir, long long *steps, int max)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char *end;
        long long s = strtoll(e->d_name, &end, 10);
        if (!e->d_name[0] || *end || s < 0 || !complete(dir, e->d_name)) continue;
        if (n < max) steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long long t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

long long mtx_checkpoint_latest(const char *dir)
{
    long long steps[4096];
    int n = list_steps(dir, steps, 4096);
    return n ? steps[n - 1] : -1;
}

void mtx_checkpoint_prune(const char *dir, int keep)
{
    long long steps[4096];
    int n = list_steps(dir, steps, 4096);
    for (int i = 0; keep > 0 && i + keep < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%lld", dir, steps[i]);
        remove_tree(path);
    }
}

/* ---- loading ---- */

static int check_entry(const cJSON *e, const mtx_tensor_desc *t, size_t data_size, size_t *begin,
                       const char *path, char *err, size_t errlen)
{
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || cJSON_GetArraySize(off) != 2)
        return fail(err, errlen, "checkpoint %s: tensor '%s' has a malformed header entry", path, t->name);
    if (strcmp(dtype->valuestring, dtype_name(t->dtype)))
        return fail(err, errlen, "checkpoint %s: tensor '%s' is %s, the program expects %s", path, t->name,
                    dtype->valuestring, dtype_name(t->dtype));
    bool same = cJSON_GetArraySize(shape) == t->rank;
    for (int d = 0; same && d < t->rank; d++) same = cJSON_GetArrayItem(shape, d)->valuedouble == (double)t->shape[d];
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int d = 0; d < t->rank; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        for (int d = 0; d < cJSON_GetArraySize(shape); d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.0f", d ? ", " : "", cJSON_GetArrayItem(shape, d)->valuedouble);
        return fail(err, errlen, "checkpoint %s: tensor '%s' has shape [%s], the program expects [%s]", path, t->name, got, want);
    }
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (b < 0 || en - b != (double)tensor_bytes(t) || en > (double)data_size)
        return fail(err, errlen, "checkpoint %s is truncated or corrupt: tensor '%s' lies outside the file", path, t->name);
    *begin = (size_t)b;
    return 0;
}

int mtx_checkpoint_load(const mtx_program *prog, mtx_state *st, const char *step_dir, int params_only,
                        uint64_t *data_position, char *err, size_t errlen)
{
    char path[4300], meta_path[4300];
    snprintf(path, sizeof path, "%s/state.safetensors", step_dir);
    snprintf(meta_path, sizeof meta_path, "%s/meta.json", step_dir);
    size_t size, meta_size;
    char *file = mtx_read_file(path, &size), *meta_text = mtx_read_file(meta_path, &meta_size);
    cJSON *header = NULL, *meta = NULL;
    int rc = -1;
    uint64_t hlen = 0;
    if (!file || !meta_text) {
        fail(err, errlen, "cannot read checkpoint %s: %s", file ? meta_path : path, strerror(errno));
        goto done;
    }
    for (int b = 0; b < 8 && size >= 8; b++) hlen |= (uint64_t)(unsigned char)file[b] << (8 * b);
    if (size < 8 || hlen > size - 8) {
        fail(err, errlen, "checkpoint %s is truncated or corrupt: its header does not fit in the file", path);
        goto done;
    }
    header = cJSON_ParseWithLength(file + 8, (size_t)hlen);
    meta = cJSON_Parse(meta_text);
    if (!header || !cJSON_IsObject(header)) {
        fail(err, errlen, "checkpoint %s has an unreadable JSON header", path);
        goto done;
    }
    if (!meta || !cJSON_IsObject(meta)) {
        fail(err, errlen, "checkpoint %s is unreadable JSON", meta_path);
        goto done;
    }
    const cJSON *sums = cJSON_GetObjectItemCaseSensitive(meta, "checksums");
    unsigned char *memory = prog->state_memory(st);
    const unsigned char *data = (const unsigned char *)file + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    /* Check every tensor before touching the state. */
    size_t *begin = calloc((size_t)prog->ntensors + 1, sizeof(size_t));
    bool bad = false;
    for (int i = 0; i < prog->ntensors && !bad; i++) {
        const mtx_tensor_desc *t = &prog->tensors[i];
        if (params_only && t->kind != MTX_PARAM) continue;
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(header, t->name);
        if (!e) {
            fail(err, errlen, "checkpoint %s has no tensor '%s' (a checkpoint of another model or optimizer?)", path, t->name);
            bad = true;
            break;
        }
        if (check_entry(e, t, data_size, &begin[i], path, err, errlen)) {
            bad = true;
            break;
        }
        const cJSON *sum = cJSON_GetObjectItemCaseSensitive(sums, t->name);
        char text[32];
        snprintf(text, sizeof text, "%016llx", (unsigned long long)mtx_checksum(data + begin[i], tensor_bytes(t)));
        if (!cJSON_IsString(sum) || strcmp(sum->valuestring, text)) {
            fail(err, errlen, "checkpoint %s is corrupt: tensor '%s' does not match its checksum in %s", path, t->name,
                 meta_path);
            bad = true;
        }
    }
    if (!bad) {
        rc = 0;
        for (int i = 0; i < prog->ntensors; i++) {
            const mtx_tensor_desc *t = &prog->tensors[i];
            if (params_only && t->kind != MTX_PARAM) continue;
            memcpy(memory + t->offset, data + begin[i], tensor_bytes(t));
        }
        const cJSON *pos = cJSON_GetObjectItemCaseSensitive(meta, "data_position");
        *data_position = cJSON_IsString(pos) ? strtoull(pos->valuestring, NULL, 10) : 0;
    }
    free(begin);
done:
    cJSON_Delete(header);
    cJSON_Delete(meta);
    free(file);
    free(meta_text);
    return rc;
}
