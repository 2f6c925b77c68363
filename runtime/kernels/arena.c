/* Aligned allocation for state blocks, step arenas and the kernels' scratch; the clock. */
#include "mtxrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *mtx_alloc(size_t bytes)
{
    size_t size = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, size ? size : 64);
    if (!p) {
        fprintf(stderr, "mtxrt: error: out of memory allocating %zu bytes\n", bytes);
        exit(1);
    }
    memset(p, 0, size ? size : 64);
    return p;
}

void mtx_free(void *p) { free(p); }

/* The scratch buffer of the runtime's kernels and bf16 GEMM plans: one per
 * process, grown only when states and plans are made (never in a step),
 * used by one kernel at a time, freed when its last holder lets it go. */
static void *scratch;
static size_t scratch_bytes;
static int holders;

void mtx_scratch_reserve(size_t bytes)
{
    holders++;
    if (bytes <= scratch_bytes) return;
    mtx_free(scratch);
    scratch = mtx_alloc(bytes);
    scratch_bytes = bytes;
}

void mtx_scratch_release(void)
{
    if (holders <= 0 || --holders) return;
    mtx_free(scratch);
    scratch = NULL;
    scratch_bytes = 0;
}

void *mtx_scratch(void) { return scratch; }
size_t mtx_scratch_bytes(void) { return scratch_bytes; }

double mtx_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
