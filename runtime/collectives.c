/* Collectives over MPI (OpenMPI from Debian). A trainer started by mpirun is
 * one rank per device of the mesh's data axis; started on its own it is one
 * rank and never touches MPI, so single-device runs need no MPI runtime. A
 * rank that dies makes mpirun end the others (MPI_ERRORS_ARE_FATAL). */
#include "mtxrt.h"

#include <mpi.h>
#include <stdlib.h>

static int started, rank, ranks = 1;

/* Launched by mpirun (OpenMPI) or another PMI launcher? */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

void mtx_collectives_start(void)
{
    if (started || !launched()) return;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    started = 1;
}

void mtx_collectives_stop(void)
{
    if (started) MPI_Finalize();
    started = 0;
}

int mtx_rank(void) { return rank; }
int mtx_ranks(void) { return ranks; }

/* Ranks on this host, for the thread count (OpenMPI tells it). */
int mtx_local_ranks(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    return n && atoi(n) > 0 ? atoi(n) : 1;
}

void mtx_all_reduce_sum(float *x, size_t n)
{
    if (ranks == 1) return;
    /* Large buffers go in pieces: MPI counts are ints. */
    for (size_t done = 0; done < n;) {
        int count = n - done > (1u << 30) ? 1 << 30 : (int)(n - done);
        MPI_Allreduce(MPI_IN_PLACE, x + done, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        done += (size_t)count;
    }
}
