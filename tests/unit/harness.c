#include "harness.h"

#include <check.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests shrink presets (batch, length, dropout): override_model_config
 * lets the command line change what a preset sets, as in MaxText. */
Config *load_config(int n, char **overrides)
{
    char err[1024];
    char **ov = xcalloc((size_t)n + 1, sizeof *ov);
    ov[0] = "override_model_config=true";
    memcpy(ov + 1, overrides, (size_t)n * sizeof *ov);
    Config *c = config_load("configs/base.yml", n + 1, ov, err, sizeof err);
    free(ov);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

Loaded load_program(const Program *p)
{
    Loaded l = {0};
    snprintf(l.dir, sizeof l.dir, "/tmp/mtxc-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(l.dir));
    char err[1024];
    ck_assert_msg(emit_c(p, l.dir, "a unit test", err, sizeof err), "%s", err);
    char *cmd = xfmt("cc -std=gnu11 -O1 -shared -fPIC -I%s -I%s %s/step.c %s %s -lm -o %s/step.so",
                     l.dir, MTXC_RUNTIME_INCLUDE, l.dir, MTXC_RUNTIME_LIB, MTXC_RUNTIME_LIBS, l.dir);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "compiling the generated code failed: %s", cmd);
    free(cmd);
    char *so = xfmt("%s/step.so", l.dir);
    l.handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(l.handle != NULL, "dlopen: %s", dlerror());
    free(so);
    l.desc = dlsym(l.handle, "mtx_program_desc");
    ck_assert_ptr_nonnull(l.desc);
    return l;
}

void unload_program(Loaded *l)
{
    dlclose(l->handle);
    const char *files[] = {"step.c", "step.h", "main.c", "step.so"};
    for (int i = 0; i < 4; i++) {
        char *f = xfmt("%s/%s", l->dir, files[i]);
        unlink(f);
        free(f);
    }
    rmdir(l->dir);
}

static const mtx_tensor_desc *find_tensor(const Loaded *l, const char *name)
{
    for (int i = 0; i < l->desc->ntensors; i++)
        if (!strcmp(l->desc->tensors[i].name, name)) return &l->desc->tensors[i];
    return NULL;
}

float *state_tensor(const Loaded *l, mtx_state *st, const char *name, int64_t *numel)
{
    const mtx_tensor_desc *t = find_tensor(l, name);
    if (!t) return NULL;
    if (numel) {
        *numel = 1;
        for (int d = 0; d < t->rank; d++) *numel *= t->shape[d];
    }
    return (float *)((unsigned char *)l->desc->state_memory(st) + t->offset);
}

int64_t *state_counter(const Loaded *l, mtx_state *st, const char *name)
{
    const mtx_tensor_desc *t = find_tensor(l, name);
    return t ? (int64_t *)((unsigned char *)l->desc->state_memory(st) + t->offset) : NULL;
}

RefFile ref_read(const char *path)
{
    RefFile f = {0};
    FILE *in = fopen(path, "rb");
    ck_assert_msg(in != NULL, "cannot open %s", path);
    uint32_t len;
    while (fread(&len, 4, 1, in) == 1) {
        f.r = xrealloc(f.r, sizeof(RefRecord) * (size_t)(f.n + 1));
        RefRecord *r = &f.r[f.n++];
        memset(r, 0, sizeof *r);
        ck_assert(len < sizeof r->name && fread(r->name, 1, len, in) == len);
        uint32_t dt, rank;
        ck_assert(fread(&dt, 4, 1, in) == 1 && fread(&rank, 4, 1, in) == 1 && rank <= 4);
        r->dtype = (int)dt;
        r->rank = (int)rank;
        ck_assert(fread(r->dim, 8, rank, in) == rank);
        r->numel = 1;
        for (uint32_t d = 0; d < rank; d++) r->numel *= (int64_t)r->dim[d];
        r->data = xmalloc((size_t)r->numel * 4);
        ck_assert(fread(r->data, 4, (size_t)r->numel, in) == (size_t)r->numel);
    }
    fclose(in);
    return f;
}

const RefRecord *ref_find(const RefFile *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->r[i].name, name)) return &f->r[i];
    return NULL;
}

void ref_free(RefFile *f)
{
    for (int i = 0; i < f->n; i++) free(f->r[i].data);
    free(f->r);
}
