/* Aligned allocation for state blocks and step arenas; the clock. */
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

double mtx_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
