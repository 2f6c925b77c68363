/* A process that ends right after its first parallel job: the pool's worker
 * may not have run a line yet when the exit's destructor stops the workers
 * (tests/CMakeLists.txt runs it under taskset -c 0, where that is the usual
 * case). It must end, not wait for the worker forever. */
#include "mtxrt.h"

#include <stdio.h>

static void count(void *ctx, size_t first, size_t end)
{
    __atomic_add_fetch((size_t *)ctx, end - first, __ATOMIC_RELAXED);
}

int main(void)
{
    mtx_set_num_threads(2);
    size_t done = 0;
    mtx_parallel(count, &done, 1000, 1, 1e9);
    if (done != 1000) {
        fprintf(stderr, "pool_exit: the job covered %zu of 1000 units\n", done);
        return 1;
    }
    return 0;
}
