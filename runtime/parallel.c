/* Parallel loops of generated code: OpenMP's threads (the ones BLIS uses),
 * reached through a function so that JIT-compiled code needs no OpenMP of
 * its own. Each thread takes one contiguous share; the loops' elements are
 * independent, so the results do not depend on the thread count. */
#include "mtxrt.h"

#include <omp.h>

void mtx_parallel_for(mtx_loop_body body, const mtx_frame *f, size_t n)
{
    #pragma omp parallel
    {
        size_t t = (size_t)omp_get_thread_num(), threads = (size_t)omp_get_num_threads();
        body(f, n * t / threads, n * (t + 1) / threads);
    }
}
