/* Checkpoints: one directory per step, {run}/checkpoints/{step}/, holding
 *   state.safetensors  every tensor of the state under its descriptor name
 *                      (params/..., opt_state/mu/..., step, rng, ...): an
 *                      8-byte little-endian header length, a JSON header
 *                      (dtype, shape, data_offsets; __metadata__ strings),
 *                      then the raw little-endian data;
 *   meta.json          format, step, data position, the checksum of every
 *                      tensor (XXH3-64, as `xxhsum -H3` prints it) and the
 *                      resolved config.
 * A save writes a hidden temporary directory, fsyncs it and renames it into
 * place, so a crash leaves the previous checkpoints and never a half-visible
 * one; checksums are computed piece by piece as the data is written. A load
 * checks meta.json's fields, the header and sizes against the program before
 * it reads any tensor, then reads every tensor straight into its place in
 * the state, checksumming each piece as it arrives (one pass, no copy of the
 * file in memory), and says which file, field or tensor is wrong; after a
 * failed load the state is unspecified and the callers stop. */
#define _GNU_SOURCE                       /* O_DIRECT */
#include "mtxrt_trainer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

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


/* The state file goes out through an aligned bounce buffer of PIECE bytes
 * with O_DIRECT: no page cache. Measured on this project's VMs, filling the
 * page cache with 1.5 GB took 4-6 s where the disk itself took 1.4 s (and
 * the writer competes with training for memory bandwidth). Each piece is
 * hashed while it is in cache, so the state is read from memory once.
 * Filesystems without O_DIRECT (tmpfs) get the same writes buffered. */
enum { PIECE = 8 << 20, ALIGN = 4096 };

typedef struct {
    int fd;
    bool direct;
    unsigned char *buf;                   /* PIECE bytes, ALIGN-aligned */
    size_t used;
    uint64_t total;                       /* bytes of the file */
} Stream;

/* The buffer to the file; the last piece of an O_DIRECT file is padded to
 * ALIGN (the file is cut back to its size afterwards). */
static int stream_flush(Stream *w, bool last)
{
    size_t n = w->used;
    if (w->direct && last) {
        size_t padded = (n + ALIGN - 1) / ALIGN * ALIGN;
        memset(w->buf + n, 0, padded - n);
        n = padded;
    }
    w->used = 0;
    return mtx_write_all(w->fd, w->buf, n);
}

static int stream_put(Stream *w, const unsigned char *src, size_t n, XXH3_state_t *h)
{
    while (n) {
        size_t k = PIECE - w->used < n ? PIECE - w->used : n;
        memcpy(w->buf + w->used, src, k);
        if (h) XXH3_64bits_update(h, w->buf + w->used, k);
        w->used += k, w->total += k, src += k, n -= k;
        if (w->used == PIECE && stream_flush(w, false)) return -1;
    }
    return 0;
}

/* head, then every tensor of memory (their checksums into sums), one fsync. */
static int write_state(const char *path, bool direct, const void *head, size_t head_n, const mtx_program *prog,
                       const unsigned char *memory, uint64_t *sums)
{
    Stream w = {.direct = direct};
    w.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (direct ? O_DIRECT : 0), 0644);
    if (w.fd < 0) return -1;
    XXH3_state_t *h = XXH3_createState();
    int rc = h && posix_memalign((void **)&w.buf, ALIGN, PIECE) == 0 ? stream_put(&w, head, head_n, NULL) : -1;
    for (int i = 0; !rc && i < prog->ntensors; i++) {
        XXH3_64bits_reset(h);
        rc = stream_put(&w, memory + prog->tensors[i].offset, tensor_bytes(&prog->tensors[i]), h);
        sums[i] = XXH3_64bits_digest(h);
    }
    if (!rc) rc = stream_flush(&w, true);
    if (!rc && direct) rc = ftruncate(w.fd, (off_t)w.total);
    if (!rc) rc = fsync(w.fd);
    int e = errno;
    if (close(w.fd) != 0 && !rc) rc = -1, e = errno;
    XXH3_freeState(h);
    free(w.buf);
    errno = e;
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

/* Remove a checkpoint directory we wrote: its two files, then itself. Only
 * a real directory: a symlink in its place (a step moved elsewhere and
 * linked back) is never followed, so nothing outside the run is removed.
 * 0 when dir is gone or was never there; -1 (errno ENOTDIR) when something
 * other than a directory has its name. */
static int remove_tree(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) {
        struct stat st;
        if (lstat(dir, &st) != 0) return 0;
        errno = ENOTDIR;
        return -1;
    }
    unlinkat(fd, "state.safetensors", 0);
    unlinkat(fd, "meta.json", 0);
    close(fd);
    rmdir(dir);
    return 0;
}

/* The JSON header of the safetensors file, padded with spaces to 8 bytes. */
static char *safetensors_header(const mtx_program *prog, long long step, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    char text[64];
    snprintf(text, sizeof text, "%lld", step);
    cJSON_AddStringToObject(meta, "format", MTX_CHECKPOINT_FORMAT);
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

static char *meta_json(const mtx_program *prog, const uint64_t *checksums, long long step, uint64_t position)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", MTX_CHECKPOINT_FORMAT);
    cJSON_AddStringToObject(root, "checksum", "XXH3-64");
    cJSON_AddNumberToObject(root, "step", (double)step);
    char text[32];
    snprintf(text, sizeof text, "%llu", (unsigned long long)position);
    cJSON_AddStringToObject(root, "data_position", text);
    cJSON *sums = cJSON_AddObjectToObject(root, "checksums");
    for (int i = 0; i < prog->ntensors; i++) {
        const mtx_tensor_desc *t = &prog->tensors[i];
        snprintf(text, sizeof text, "%016llx", (unsigned long long)checksums[i]);
        cJSON_AddStringToObject(sums, t->name, text);
    }
    cJSON *config = cJSON_AddObjectToObject(root, "config");
    for (int i = 0; i < prog->nconfig; i++) cJSON_AddStringToObject(config, prog->config[i].key, prog->config[i].value);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    return json;
}

/* Checkpoint directories a killed trainer left half-written
 * (.tmp-STEP-PID of a process that is gone): they are never loaded, only
 * removed, so the disk does not fill up across restarts. */
static void remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        long long step;
        int pid;
        char path[4400];
        if (sscanf(e->d_name, ".tmp-%lld-%d", &step, &pid) != 2 || pid == (int)getpid()) continue;
        if (pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH)) continue;   /* its writer may still be running */
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

int mtx_checkpoint_write(const mtx_program *prog, const void *state_memory, const char *dir, long long step,
                         uint64_t data_position, char *err, size_t errlen)
{
    const unsigned char *memory = state_memory;
    char tmp[4200], final[4200], path[4300];
    snprintf(tmp, sizeof tmp, "%s/.tmp-%lld-%d", dir, step, (int)getpid());
    snprintf(final, sizeof final, "%s/%lld", dir, step);
    if (make_dirs(dir) != 0 || (mkdir(tmp, 0755) != 0 && errno != EEXIST))
        return fail(err, errlen, "cannot create checkpoint directory in '%s': %s", dir, strerror(errno));
    remove_stale(dir);
    size_t head_n;
    char *head = safetensors_header(prog, step, &head_n), *meta = NULL;
    uint64_t *sums = calloc((size_t)prog->ntensors + 1, sizeof *sums);
    snprintf(path, sizeof path, "%s/state.safetensors", tmp);
    int rc = sums ? write_state(path, true, head, head_n, prog, memory, sums) : -1;
    if (rc && errno == EINVAL) rc = write_state(path, false, head, head_n, prog, memory, sums);   /* no O_DIRECT */
    if (!rc) {
        meta = meta_json(prog, sums, step, data_position);
        snprintf(path, sizeof path, "%s/meta.json", tmp);
        rc = mtx_write_text(path, meta);
    }
    free(head);
    free(meta);
    free(sums);
    if (rc) {
        int e = errno;
        remove_tree(tmp);
        return fail(err, errlen, "cannot write checkpoint %s: %s (previous checkpoints are kept)", path, strerror(e));
    }
    fsync_dir(tmp);
    if (remove_tree(final) != 0) {               /* a stale one of the same step */
        remove_tree(tmp);
        return fail(err, errlen, "cannot move checkpoint into %s: something other than a directory (a symlink?) "
                    "has that name; it is left as it is, and so are the previous checkpoints", final);
    }
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

/* A decimal string of at most 19 digits (so it fits int64). */
static bool decimal(const char *s, uint64_t *out)
{
    size_t n = strspn(s, "0123456789");
    if (n == 0 || n > 19 || s[n]) return false;
    *out = strtoull(s, NULL, 10);
    return *out <= INT64_MAX;
}

long long mtx_step_name(const char *name)
{
    uint64_t v;
    if (name[0] == '0' && name[1]) return -1;   /* a leading zero: 06 is not step 6 */
    return decimal(name, &v) ? (long long)v : -1;
}

static int ascending(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Why an entry of a checkpoint directory is not a step, or NULL when it is
 * one (a real directory with a step's name; complete or not). Our own
 * .tmp-STEP-PID directories are neither steps nor worth a notice (""). */
static const char *not_a_step(const char *dir, const char *name, long long *step)
{
    if (name[0] == '.') return "";
    if ((*step = mtx_step_name(name)) < 0) return "its name is not a step's (plain decimal digits, no leading zero or sign)";
    char path[4300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (lstat(path, &st) != 0) return "";
    if (S_ISLNK(st.st_mode)) return "it is a symlink: a step is only ever a directory of the run, never followed";
    return S_ISDIR(st.st_mode) ? NULL : "it is not a directory";
}

/* Steps of the complete checkpoints in dir, ascending, in *steps (malloc'd,
 * every one however many: no cap); returns how many. With notices, each
 * entry that is not a step is named on stderr and left as it is. */
static int list_steps(const char *dir, long long **steps, bool notices)
{
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long long s;
        const char *why = not_a_step(dir, e->d_name, &s);
        if (why && why[0] && notices)
            fprintf(stderr, "trainer: notice: ignoring %s/%s: %s\n", dir, e->d_name, why);
        if (why || !complete(dir, e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            long long *more = realloc(*steps, (size_t)cap * sizeof **steps);
            if (!more) {
                fprintf(stderr, "mtxrt: error: out of memory listing the checkpoints of %s\n", dir);
                exit(1);
            }
            *steps = more;
        }
        (*steps)[n++] = s;
    }
    closedir(d);
    if (n) qsort(*steps, (size_t)n, sizeof **steps, ascending);
    return n;
}

long long mtx_checkpoint_latest(const char *dir, int notices)
{
    long long *steps, latest = -1;
    int n = list_steps(dir, &steps, notices);
    if (n) latest = steps[n - 1];
    free(steps);
    return latest;
}

void mtx_checkpoint_prune(const char *dir, int keep)
{
    long long *steps;
    int n = list_steps(dir, &steps, false);
    for (int i = 0; keep > 0 && i + keep < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%lld", dir, steps[i]);
        remove_tree(path);
    }
    free(steps);
}

/* ---- loading ---- */

enum { MAX_HEADER = 64 << 20, MAX_RANK = 8 };

/* One tensor entry of a file's header, as the file declares it. */
typedef struct {
    const char *name;
    const char *dtype;
    int rank;
    int64_t shape[MAX_RANK];
    size_t begin, end;                    /* into the data after the header */
    int order;                            /* its place in the header */
    const char *sum;                      /* its checksum in meta.json */
    int tensor;                           /* the program's tensor it loads into, or -1 */
} Entry;

/* A checkpoint's metadata (meta.json, the safetensors header) in memory;
 * its tensors stay in the file (fd) until they are read into place. */
typedef struct {
    char path[4300], meta_path[4300];
    int fd;
    char *file, *meta_text;               /* file: the 8-byte length and the header */
    size_t size;                          /* of the whole state file */
    cJSON *header, *meta;
    off_t data_at;                        /* where the data starts in the file */
    size_t data_size;
    Entry *entries;
    int nentries;
    long long step;
    uint64_t position;
} Checkpoint;

static void checkpoint_close(Checkpoint *c)
{
    if (c->fd >= 0) close(c->fd);
    cJSON_Delete(c->header);
    cJSON_Delete(c->meta);
    free(c->file);
    free(c->meta_text);
    free(c->entries);
}

static size_t dtype_size(const char *name)
{
    return !strcmp(name, "F32") || !strcmp(name, "I32") ? 4 : !strcmp(name, "I64") || !strcmp(name, "U64") ? 8 : 0;
}

/* A JSON number that is an integer in [0, max]. */
static bool json_count(const cJSON *x, double max, uint64_t *out)
{
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > max || x->valuedouble != (double)(uint64_t)x->valuedouble)
        return false;
    *out = (uint64_t)x->valuedouble;
    return true;
}

/* The step a directory's name says (…/checkpoints/20 -> 20), or -1. */
static long long dir_step(const char *dir)
{
    char buf[4300];
    snprintf(buf, sizeof buf, "%s", dir);
    for (size_t n = strlen(buf); n > 1 && buf[n - 1] == '/'; n--) buf[n - 1] = 0;
    const char *base = strrchr(buf, '/');
    return mtx_step_name(base ? base + 1 : buf);
}

/* Exactly n bytes at offset at, or -1. */

static int read_checkpoint(Checkpoint *c, const char *step_dir, char *err, size_t errlen)
{
    snprintf(c->path, sizeof c->path, "%s/state.safetensors", step_dir);
    snprintf(c->meta_path, sizeof c->meta_path, "%s/meta.json", step_dir);
    const char *why;
    uint64_t size;
    c->fd = mtx_open_file(c->path, 0, &size, &why);
    if (c->fd < 0) return fail(err, errlen, "cannot read checkpoint %s: %s", c->path, why);
    c->size = (size_t)size;
    size_t meta_size;
    c->meta_text = mtx_read_file(c->meta_path, MAX_HEADER, 0, &meta_size, &why);
    if (!c->meta_text) return fail(err, errlen, "cannot read checkpoint %s: %s", c->meta_path, why);
    unsigned char len[8];
    uint64_t hlen = 0;
    if (c->size >= 8 && mtx_read_at(c->fd, len, 8, 0) != 0)
        return fail(err, errlen, "cannot read checkpoint %s: %s", c->path, strerror(errno));
    for (int b = 0; b < 8 && c->size >= 8; b++) hlen |= (uint64_t)len[b] << (8 * b);
    if (c->size < 8 || hlen > c->size - 8 || hlen > MAX_HEADER)
        return fail(err, errlen, "checkpoint %s is truncated or corrupt: its header does not fit in the file", c->path);
    c->file = malloc((size_t)hlen + 1);
    if (!c->file || mtx_read_at(c->fd, c->file, (size_t)hlen, 8) != 0)
        return fail(err, errlen, "cannot read checkpoint %s: %s", c->path, c->file ? strerror(errno) : "out of memory");
    c->header = cJSON_ParseWithLength(c->file, (size_t)hlen);
    if (!cJSON_IsObject(c->header)) return fail(err, errlen, "checkpoint %s has an unreadable JSON header", c->path);
    c->meta = cJSON_ParseWithLength(c->meta_text, meta_size);
    if (!cJSON_IsObject(c->meta)) return fail(err, errlen, "checkpoint %s is unreadable JSON", c->meta_path);
    c->data_at = (off_t)(8 + hlen);
    c->data_size = c->size - 8 - (size_t)hlen;
    return 0;
}

/* meta.json: format, checksum algorithm, step (that of the directory, when
 * its name is one) and data position. */
static int check_meta(Checkpoint *c, const char *step_dir, char *err, size_t errlen)
{
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(c->meta, "format");
    if (!cJSON_IsString(format))
        return fail(err, errlen, "checkpoint %s: field 'format' is missing (not an mtxc checkpoint?)", c->meta_path);
    if (!strcmp(format->valuestring, "mtxc-checkpoint-1"))
        return fail(err, errlen, "checkpoint %s was written by an older mtxc (format mtxc-checkpoint-1, whose FNV "
                    "checksums no standard tool verifies); this trainer reads %s: start the run again or load it "
                    "with the mtxc that wrote it", c->meta_path, MTX_CHECKPOINT_FORMAT);
    if (strcmp(format->valuestring, MTX_CHECKPOINT_FORMAT))
        return fail(err, errlen, "checkpoint %s: field 'format' is '%.64s', expected '%s'", c->meta_path,
                    format->valuestring, MTX_CHECKPOINT_FORMAT);
    const cJSON *algo = cJSON_GetObjectItemCaseSensitive(c->meta, "checksum");
    if (!cJSON_IsString(algo) || strcmp(algo->valuestring, "XXH3-64"))
        return fail(err, errlen, "checkpoint %s: field 'checksum' must be \"XXH3-64\"", c->meta_path);
    uint64_t step;
    if (!json_count(cJSON_GetObjectItemCaseSensitive(c->meta, "step"), 0x1p53, &step))
        return fail(err, errlen, "checkpoint %s: field 'step' must be an integer >= 0", c->meta_path);
    long long named = dir_step(step_dir);
    if (named >= 0 && (uint64_t)named != step)
        return fail(err, errlen, "checkpoint %s: field 'step' is %llu but the directory is step %lld", c->meta_path,
                    (unsigned long long)step, named);
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(c->meta, "data_position");
    if (!cJSON_IsString(pos) || !decimal(pos->valuestring, &c->position))
        return fail(err, errlen, "checkpoint %s: field 'data_position' must be a string of decimal digits "
                    "(at most 2^63-1)", c->meta_path);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c->meta, "checksums")))
        return fail(err, errlen, "checkpoint %s: field 'checksums' is missing", c->meta_path);
    c->step = (long long)step;
    return 0;
}

/* One header entry: dtype, shape and offsets consistent with each other. */
static int read_entry(const Checkpoint *c, const cJSON *e, Entry *out, char *err, size_t errlen)
{
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype"), *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    out->name = e->string;
    if (!cJSON_IsString(dtype) || !dtype_size(dtype->valuestring) || !cJSON_IsArray(shape) ||
        cJSON_GetArraySize(shape) > MAX_RANK || cJSON_GetArraySize(off) != 2)
        return fail(err, errlen, "checkpoint %s: tensor '%s' has a malformed header entry", c->path, e->string);
    out->dtype = dtype->valuestring;
    out->rank = cJSON_GetArraySize(shape);
    uint64_t bytes = dtype_size(out->dtype), b, en;
    for (int d = 0; d < out->rank; d++) {
        uint64_t n;
        if (!json_count(cJSON_GetArrayItem(shape, d), 0x1p40, &n))
            return fail(err, errlen, "checkpoint %s: tensor '%s' has a malformed shape", c->path, e->string);
        out->shape[d] = (int64_t)n;
        bytes = n && bytes > (UINT64_MAX >> 1) / n ? UINT64_MAX : bytes * n;
    }
    if (!json_count(cJSON_GetArrayItem(off, 0), 0x1p53, &b) || !json_count(cJSON_GetArrayItem(off, 1), 0x1p53, &en) ||
        en < b || en - b != bytes || en > c->data_size)
        return fail(err, errlen, "checkpoint %s is truncated or corrupt: tensor '%s' lies outside the file", c->path,
                    e->string);
    out->begin = (size_t)b;
    out->end = (size_t)en;
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const Entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name);
}

static int json_by_name(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* c->entries are sorted by name (check_file): a binary search, so that a
 * header of 200,000 entries is checked in n log n, not n^2. */
static Entry *find_entry(const Checkpoint *c, const char *name)
{
    Entry key = {.name = name};
    return c->nentries ? bsearch(&key, c->entries, (size_t)c->nentries, sizeof key, by_name) : NULL;
}

/* Each entry's checksum string from meta.json's 'checksums', through the
 * same sort and search; the counts are equal, so each sum names one entry. */
static int attach_sums(Checkpoint *c, const cJSON *sums, char *err, size_t errlen)
{
    const cJSON **all = malloc(((size_t)c->nentries + 1) * sizeof *all);
    if (!all) return fail(err, errlen, "checkpoint %s: out of memory", c->meta_path);
    int n = 0;
    for (const cJSON *x = sums->child; x; x = x->next) all[n++] = x;
    qsort(all, (size_t)n, sizeof *all, json_by_name);
    int rc = 0;
    for (int i = 0; i < c->nentries && !rc; i++) {
        cJSON key = {.string = (char *)c->entries[i].name}, *k = &key;
        const cJSON **x = n ? bsearch(&k, all, (size_t)n, sizeof *all, json_by_name) : NULL;
        if (!x || !cJSON_IsString(*x))
            rc = fail(err, errlen, "checkpoint %s: field 'checksums' has no string for tensor '%s'", c->meta_path,
                      c->entries[i].name);
        else c->entries[i].sum = (*x)->valuestring;
    }
    free(all);
    return rc;
}

/* The whole file's layout: its metadata, every entry, entries tiling the
 * data with nothing left over (as safetensors requires), a checksum each. */
static int check_file(Checkpoint *c, char *err, size_t errlen)
{
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(c->header, "__metadata__");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(info, "format"), *step = cJSON_GetObjectItemCaseSensitive(info, "step");
    char want[32];
    snprintf(want, sizeof want, "%lld", c->step);
    if (!cJSON_IsString(format) || strcmp(format->valuestring, MTX_CHECKPOINT_FORMAT) || !cJSON_IsString(step) ||
        strcmp(step->valuestring, want))
        return fail(err, errlen, "checkpoint %s: its __metadata__ does not say format %s, step %s as %s does", c->path,
                    MTX_CHECKPOINT_FORMAT, want, c->meta_path);
    c->entries = calloc((size_t)cJSON_GetArraySize(c->header) + 1, sizeof(Entry));
    const cJSON *sums = cJSON_GetObjectItemCaseSensitive(c->meta, "checksums");
    for (const cJSON *e = c->header->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        if (read_entry(c, e, &c->entries[c->nentries], err, errlen)) return -1;
        c->entries[c->nentries].order = c->nentries;
        c->entries[c->nentries].tensor = -1;
        c->nentries++;
    }
    qsort(c->entries, (size_t)c->nentries, sizeof(Entry), by_name);
    for (int i = 1; i < c->nentries; i++)
        if (!strcmp(c->entries[i - 1].name, c->entries[i].name))
            return fail(err, errlen, "checkpoint %s: tensor '%s' appears twice in its header", c->path,
                        c->entries[i].name);
    if (cJSON_GetArraySize(sums) != c->nentries)
        return fail(err, errlen, "checkpoint %s: field 'checksums' lists %d tensors, %s holds %d", c->meta_path,
                    cJSON_GetArraySize(sums), c->path, c->nentries);
    Entry *sorted = malloc(((size_t)c->nentries + 1) * sizeof(Entry));
    memcpy(sorted, c->entries, (size_t)c->nentries * sizeof(Entry));
    qsort(sorted, (size_t)c->nentries, sizeof(Entry), by_begin);
    size_t at = 0;
    for (int i = 0; i < c->nentries && at != SIZE_MAX; i++) at = sorted[i].begin == at ? sorted[i].end : SIZE_MAX;
    free(sorted);
    if (at != c->data_size)
        return fail(err, errlen, "checkpoint %s is truncated or corrupt: its tensors do not cover its %zu data bytes "
                    "exactly", c->path, c->data_size);
    return attach_sums(c, sums, err, errlen);
}

static void shape_text(const int64_t *shape, int rank, char *out, size_t n)
{
    out[0] = 0;
    for (int d = 0; d < rank; d++) snprintf(out + strlen(out), n - strlen(out), "%s%lld", d ? ", " : "", (long long)shape[d]);
}

/* The first tensor of the file (in header order) that a load would drop:
 * any the program lacks, or with params_only any parameter it lacks. */
static const Entry *extra_entry(const Checkpoint *c, int params_only)
{
    const Entry *first = NULL;
    for (int i = 0; i < c->nentries; i++) {
        const Entry *e = &c->entries[i];
        if (e->tensor >= 0 || (params_only && strncmp(e->name, "params/", 7))) continue;
        if (!first || e->order < first->order) first = e;
    }
    return first;
}

/* name's entry, or under mtxc's names before MaxText's (llama2 and mistral
 * called their norms pre_/post_self_attention_norm until 2026-12): then
 * *renamed is set. */
static Entry *find_entry_compat(const Checkpoint *c, const char *name, int *renamed)
{
    Entry *e = find_entry(c, name);
    const char *at = strstr(name, "_self_attention_layer_norm.");
    if (e || !at) return e;
    char old[1024];
    snprintf(old, sizeof old, "%.*s_self_attention_norm.%s", (int)(at - name), name, at + 27);
    if ((e = find_entry(c, old))) *renamed = 1;
    return e;
}

/* Does the file hold every tensor the program loads, as the program has it,
 * and nothing more that the load would silently drop? */
static int match_program(const Checkpoint *c, const mtx_program *prog, int params_only, char *err, size_t errlen)
{
    int renamed = 0;
    for (int i = 0; i < prog->ntensors; i++) {
        const mtx_tensor_desc *t = &prog->tensors[i];
        if (params_only && t->kind != MTX_PARAM) continue;
        Entry *e = find_entry_compat(c, t->name, &renamed);
        if (!e)
            return fail(err, errlen, "checkpoint %s has no tensor '%s' (a checkpoint of another model or optimizer?)",
                        c->path, t->name);
        if (strcmp(e->dtype, dtype_name(t->dtype)))
            return fail(err, errlen, "checkpoint %s: tensor '%s' is %s, the program expects %s", c->path, t->name,
                        e->dtype, dtype_name(t->dtype));
        if (e->rank != t->rank || memcmp(e->shape, t->shape, (size_t)t->rank * sizeof(int64_t))) {
            char want[128], got[128];
            shape_text(t->shape, t->rank, want, sizeof want);
            shape_text(e->shape, e->rank, got, sizeof got);
            return fail(err, errlen, "checkpoint %s: tensor '%s' has shape [%s], the program expects [%s]", c->path,
                        t->name, got, want);
        }
        e->tensor = i;
    }
    if (renamed)
        fprintf(stderr, "trainer: notice: checkpoint %s names its norms *_self_attention_norm (mtxc before 2026-12); "
                "loaded as MaxText's *_self_attention_layer_norm\n", c->path);
    const Entry *extra = extra_entry(c, params_only);
    if (extra)
        return fail(err, errlen, "checkpoint %s holds tensor '%s', which this program does not have (a checkpoint of "
                    "a larger or another model?); nothing is loaded", c->path, extra->name);
    return 0;
}

/* The state's step counter, which a full load resumes at, is meta.json's step. */
static int check_counter(const Checkpoint *c, char *err, size_t errlen)
{
    const Entry *e = find_entry(c, "step");
    int64_t step;
    if (!e || strcmp(e->dtype, "I64") || e->end - e->begin != sizeof step) return 0;
    if (mtx_read_at(c->fd, &step, sizeof step, c->data_at + (off_t)e->begin) != 0)
        return fail(err, errlen, "cannot read checkpoint %s: %s", c->path, strerror(errno));
    if (step != c->step)
        return fail(err, errlen, "checkpoint %s: its step counter is %lld but %s says step %lld", c->path,
                    (long long)step, c->meta_path, c->step);
    return 0;
}

/* The state file read front to back in PIECE-sized, aligned reads into a
 * bounce buffer (O_DIRECT when the filesystem has it: no page cache, as for
 * writes), handed out in file order. */
typedef struct {
    int fd;
    bool direct;
    unsigned char *buf;
    off_t pos;                            /* file offset of buf[0] */
    size_t len;                           /* valid bytes in buf */
} Reader;

static int reader_fill(Reader *r, const char *path)
{
    r->pos += (off_t)r->len;
    for (;;) {
        ssize_t n = pread(r->fd, r->buf, PIECE, r->pos);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EINVAL && r->direct) {   /* O_DIRECT refused after all: buffered reads */
            close(r->fd);
            r->direct = false;
            if ((r->fd = open(path, O_RDONLY | O_NONBLOCK)) < 0) return -1;
            continue;
        }
        if (n <= 0) {
            if (n == 0) errno = EIO;      /* shorter than its header says: checked before, so it changed */
            return -1;
        }
        r->len = (size_t)n;
        return 0;
    }
}

/* n bytes from file offset at (>= every earlier request's end) into to (or
 * nowhere), hashed into h. */
static int reader_get(Reader *r, const char *path, off_t at, size_t n, unsigned char *to, XXH3_state_t *h)
{
    while (n) {
        while (at >= r->pos + (off_t)r->len)
            if (reader_fill(r, path)) return -1;
        const unsigned char *src = r->buf + (at - r->pos);
        size_t k = (size_t)(r->pos + (off_t)r->len - at) < n ? (size_t)(r->pos + (off_t)r->len - at) : n;
        XXH3_64bits_update(h, src, k);
        if (to) memcpy(to, src, k), to += k;
        at += (off_t)k, n -= k;
    }
    return 0;
}

/* Every tensor of the file in file order into its place in memory (a tensor
 * the program does not load: hashed only), checked against meta.json. */
static int read_tensors(const Checkpoint *c, const mtx_program *prog, unsigned char *memory, char *err,
                        size_t errlen)
{
    Entry *order = malloc(((size_t)c->nentries + 1) * sizeof(Entry));
    XXH3_state_t *h = XXH3_createState();
    Reader r = {.direct = true};
    r.fd = open(c->path, O_RDONLY | O_DIRECT | O_NONBLOCK);   /* checked regular, but never hang on a swap */
    if (r.fd < 0) r.direct = false, r.fd = open(c->path, O_RDONLY | O_NONBLOCK);
    int rc = order && h && posix_memalign((void **)&r.buf, ALIGN, PIECE) == 0 && r.fd >= 0
                 ? 0 : fail(err, errlen, "cannot read checkpoint %s: %s", c->path, r.fd < 0 ? strerror(errno) : "out of memory");
    if (!rc) {
        memcpy(order, c->entries, (size_t)c->nentries * sizeof(Entry));
        qsort(order, (size_t)c->nentries, sizeof(Entry), by_begin);
    }
    for (int i = 0; !rc && i < c->nentries; i++) {
        const Entry *e = &order[i];
        unsigned char *to = e->tensor >= 0 ? memory + prog->tensors[e->tensor].offset : NULL;
        XXH3_64bits_reset(h);
        if (reader_get(&r, c->path, c->data_at + (off_t)e->begin, e->end - e->begin, to, h) != 0) {
            rc = fail(err, errlen, "cannot read checkpoint %s: %s", c->path, strerror(errno));
            break;
        }
        char text[32];
        snprintf(text, sizeof text, "%016llx", (unsigned long long)XXH3_64bits_digest(h));
        if (strcmp(e->sum, text))
            rc = fail(err, errlen, "checkpoint %s is corrupt: tensor '%s' does not match its checksum in %s", c->path,
                      e->name, c->meta_path);
    }
    if (r.fd >= 0) close(r.fd);
    XXH3_freeState(h);
    free(r.buf);
    free(order);
    return rc;
}

int mtx_checkpoint_load(const mtx_program *prog, mtx_state *st, const char *step_dir, int params_only,
                        uint64_t *data_position, char *err, size_t errlen)
{
    if (mtx_hf_dir(step_dir)) {   /* a Hugging Face model: parameters only */
        *data_position = 0;
        if (params_only) return mtx_hf_load(prog, st, step_dir, err, errlen);
        return fail(err, errlen, "'%s' is a Hugging Face model directory: it holds parameters only (no optimizer "
                                 "state, no step); load it with load_parameters_path", step_dir);
    }
    Checkpoint c = {.fd = -1};
    int rc = read_checkpoint(&c, step_dir, err, errlen);
    if (!rc) rc = check_meta(&c, step_dir, err, errlen);
    if (!rc) rc = check_file(&c, err, errlen);
    if (!rc) rc = match_program(&c, prog, params_only, err, errlen);
    if (!rc && !params_only) rc = check_counter(&c, err, errlen);
    if (!rc) rc = read_tensors(&c, prog, prog->state_memory(st), err, errlen);
    if (!rc) *data_position = c.position;
    checkpoint_close(&c);
    return rc;
}
