/* Test harness: compile a Program to C, build it as a shared object with the
 * system compiler, load it, and read reference files. */
#ifndef HARNESS_H
#define HARNESS_H

#include "mtxc.h"

typedef struct {
    void *handle;
    const mtx_program *desc;
    char dir[64];
} Loaded;

/* Emit, compile and dlopen; aborts the test with a message on failure. */
Loaded load_program(const Program *p);
void unload_program(Loaded *l);

/* A tensor of the state by descriptor name ("params/..."), or NULL. */
float *state_tensor(const Loaded *l, mtx_state *st, const char *name, int64_t *numel);
int64_t *state_counter(const Loaded *l, mtx_state *st, const char *name);

/* Reference records written by tools/torch_reference.py. */
typedef struct {
    char name[128];
    int dtype, rank;
    uint64_t dim[4];
    int64_t numel;
    void *data;
} RefRecord;
typedef struct { RefRecord *r; int n; } RefFile;

RefFile ref_read(const char *path);
const RefRecord *ref_find(const RefFile *f, const char *name);
void ref_free(RefFile *f);

Config *load_config(int n, char **overrides);

/* Run a Check suite, print its summary; the process's exit status. */
#include <check.h>
int run_suite(Suite *s);

#endif
