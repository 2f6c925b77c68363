/* The pool under stress, then an exit right after a job.
 * 1. Jobs back to back whose pieces change layout from one to the next (one
 *    piece a thread, then many): every unit must run exactly once (a thread
 *    still in a finished job once claimed a piece of the next one twice).
 * 2. The process ends right after its last job: the worker may not have run
 *    a line of it yet when the exit's destructor stops the workers
 *    (tests/CMakeLists.txt runs it under taskset -c 0 too, where that is the
 *    usual case). It must end, not wait for the worker forever. */
#include "mtxrt.h"

#include <stdio.h>
#include <stdlib.h>

enum { UNITS = 96 };

static void count(void *ctx, size_t first, size_t end)
{
    int *runs = ctx;
    for (size_t i = first; i < end; i++) __atomic_add_fetch(&runs[i], 1, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
    mtx_set_num_threads(2);
    int jobs = argc > 1 ? atoi(argv[1]) : 1;
    for (int j = 0; j < jobs; j++) {
        int runs[UNITS] = {0};
        size_t n = j % 3 == 0 ? UNITS : (size_t)(2 + j % 50);
        if (j % 2) mtx_parallel_tasks(count, runs, n, 1e9);
        else mtx_parallel(count, runs, n, 1, 1e9);
        for (size_t i = 0; i < n; i++)
            if (runs[i] != 1) {
                fprintf(stderr, "pool_exit: job %d (%zu units): unit %zu ran %d times\n", j, n, i, runs[i]);
                return 1;
            }
    }
    return 0;
}
