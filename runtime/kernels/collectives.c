/* Collectives over MPI (OpenMPI from Debian). A trainer started by mpirun is
 * one rank per device of the mesh; started on its own it is one rank and
 * never touches MPI, so single-device runs need no MPI runtime. A rank that
 * dies makes mpirun end the others (MPI_ERRORS_ARE_FATAL).
 *
 * Ranks are laid out over the mesh as MaxText's device mesh is (its
 * mesh_axes order), data the outermost axis:
 * rank = ((data * FSDP + fsdp) * TENSOR + tensor) * EXPERT + expert. Each
 * collective runs over a set of mesh axes (MTX_AXIS_* bits), on the
 * communicator of the ranks that differ only along those axes. */
#include "mtxrt.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int started, rank, ranks = 1;
enum { AXES = 4 };
static int mesh[AXES] = {1, 1, 1, 1};        /* data, fsdp, tensor, expert */
static MPI_Comm comms[1 << AXES];            /* by axis set; [0] unused */

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
    for (int s = 1; s < 1 << AXES; s++)
        if (started && comms[s]) MPI_Comm_free(&comms[s]);
    if (started) MPI_Finalize();
    started = 0;
}

/* A rank that fails alone (a bad checkpoint shard, a full disk) must not
 * leave the others waiting in a collective. */
void mtx_collectives_abort(int status)
{
    if (started && ranks > 1) MPI_Abort(MPI_COMM_WORLD, status);
}

int mtx_rank(void) { return rank; }
int mtx_ranks(void) { return ranks; }

/* Ranks on this host, for the thread count (OpenMPI tells it). */
int mtx_local_ranks(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    return n && atoi(n) > 0 ? atoi(n) : 1;
}

int mtx_mesh_coord(int axis)
{
    int stride = 1;
    for (int a = AXES - 1; a > axis; a--) stride *= mesh[a];
    return rank / stride % mesh[axis];
}

/* One communicator per set of axes: ranks with equal coordinates on the
 * other axes share a colour. Called once ranks == data x fsdp x tensor x expert. */
void mtx_mesh_start(int data, int fsdp, int tensor, int expert)
{
    mesh[0] = data, mesh[1] = fsdp, mesh[2] = tensor, mesh[3] = expert;
    if (!started) return;
    for (int set = 1; set < 1 << AXES; set++) {
        int colour = 0;
        for (int a = 0; a < AXES; a++)
            colour = colour * mesh[a] + ((set >> a) & 1 ? 0 : mtx_mesh_coord(a));
        MPI_Comm_split(MPI_COMM_WORLD, colour, rank, &comms[set]);
    }
}

static int group_size(int axes)
{
    int n = 1;
    for (int a = 0; a < AXES; a++)
        if ((axes >> a) & 1) n *= mesh[a];
    return n;
}

/* MPI counts are ints: large buffers go in pieces. */
#define PIECE ((size_t)1 << 30)

void mtx_all_reduce_sum(float *x, size_t n, int axes)
{
    if (!started || group_size(axes) == 1) return;
    for (size_t done = 0; done < n;) {
        int count = n - done > PIECE ? (int)PIECE : (int)(n - done);
        MPI_Allreduce(MPI_IN_PLACE, x + done, count, MPI_FLOAT, MPI_SUM, comms[axes]);
        done += (size_t)count;
    }
}

void mtx_all_reduce_sum_f64(double *x, size_t n, int axes)
{
    if (!started || group_size(axes) == 1) return;
    MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, comms[axes]);
}

long long mtx_all_reduce_min(long long x)
{
    if (!started) return x;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    return x;
}

/* A tensor of n elements split over the fsdp axis in chunks of ceil(n / fsdp):
 * the rank at fsdp coordinate r holds elements [r * chunk, r * chunk + count). */
size_t mtx_shard_chunk(size_t n, int shards) { return (n + (size_t)shards - 1) / (size_t)shards; }

/* MaxText's activation_batch rule: the batch over data, fsdp and expert. */
int mtx_batch_index(void) { return (mtx_mesh_coord(0) * mesh[1] + mtx_mesh_coord(1)) * mesh[3] + mtx_mesh_coord(3); }

static size_t shard_count(size_t n, size_t chunk, int r)
{
    size_t first = (size_t)r * chunk;
    return first >= n ? 0 : n - first < chunk ? n - first : chunk;
}

static void shard_layout(size_t n, int *counts, int *displs)
{
    if (n > (size_t)INT_MAX) {                /* MPI 3's counts and displacements are ints */
        fprintf(stderr, "trainer: error: a tensor of %zu elements is too large for MPI's collectives (at most %d)\n",
                n, INT_MAX);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    size_t chunk = mtx_shard_chunk(n, mesh[1]);
    for (int r = 0; r < mesh[1]; r++) {
        counts[r] = (int)shard_count(n, chunk, r);
        displs[r] = (int)((size_t)r * chunk);
    }
}

static void all_gather(void *full, const void *shard, size_t n, MPI_Datatype type, size_t size)
{
    if (!started || mesh[1] == 1) {
        memcpy(full, shard, n * size);
        return;
    }
    int counts[mesh[1]], displs[mesh[1]];
    shard_layout(n, counts, displs);
    MPI_Allgatherv(shard, counts[mtx_mesh_coord(1)], type, full, counts, displs, type, comms[MTX_AXIS_FSDP]);
}

void mtx_all_gather(float *full, const float *shard, size_t n) { all_gather(full, shard, n, MPI_FLOAT, sizeof(float)); }

void mtx_all_gather_bf16(mtx_bf16 *full, const mtx_bf16 *shard, size_t n)
{
    all_gather(full, shard, n, MPI_UINT16_T, sizeof(mtx_bf16));
}

size_t mtx_shard_range(size_t n, size_t *first)
{
    size_t chunk = mtx_shard_chunk(n, mesh[1]);
    *first = (size_t)mtx_mesh_coord(1) * chunk;
    return shard_count(n, chunk, mtx_mesh_coord(1));
}

/* Sums the full tensors of the fsdp group and keeps this rank's chunk; the
 * chunk's tail past the tensor's end stays zero. */
void mtx_reduce_scatter(float *shard, const float *full, size_t n)
{
    size_t first, count = mtx_shard_range(n, &first), chunk = mtx_shard_chunk(n, mesh[1]);
    if (!started || mesh[1] == 1) {
        for (size_t i = 0; i < count; i++) shard[i] = full[i];
    } else {
        int counts[mesh[1]], displs[mesh[1]];
        shard_layout(n, counts, displs);
        MPI_Reduce_scatter(full, shard, counts, MPI_FLOAT, MPI_SUM, comms[MTX_AXIS_FSDP]);
    }
    for (size_t i = count; i < chunk; i++) shard[i] = 0;
}

/* ---- expert parallelism: rows to their experts' ranks and back ----
 *
 * The expert axis holds num_experts / EXPERT experts per rank, rank r the
 * experts [r E/EXPERT, (r + 1) E/EXPERT). A MoE layer's rows arrive sorted by
 * expert (offsets[e] .. offsets[e + 1] are expert e's), so each rank's rows
 * for rank r are one contiguous run. Received rows are ordered by source
 * rank, then by local expert: recv_offsets[s E/EXPERT + j] starts source s's
 * rows for local expert j, so a grouped GEMM takes group g with weight
 * g mod E/EXPERT. Both offset arrays have num_experts + 1 entries. */

/* Each rank's row counts for this rank's experts. */
void mtx_expert_counts(int32_t *recv_offsets, const int32_t *offsets, int num_experts)
{
    int32_t *counts = malloc(sizeof(int32_t) * 2 * (size_t)num_experts);
    if (!counts) abort();
    int32_t *got = counts + num_experts;
    for (int e = 0; e < num_experts; e++) counts[e] = offsets[e + 1] - offsets[e];
    int per_rank = num_experts / mesh[3];
    if (started && mesh[3] > 1)
        MPI_Alltoall(counts, per_rank, MPI_INT32_T, got, per_rank, MPI_INT32_T, comms[MTX_AXIS_EXPERT]);
    else
        memcpy(got, counts, sizeof(int32_t) * (size_t)num_experts);
    recv_offsets[0] = 0;
    for (int g = 0; g < num_experts; g++) recv_offsets[g + 1] = recv_offsets[g] + got[g];
    free(counts);
}

/* The rows of each rank's experts: [offsets of rank r's first expert, of its last + 1). */
static void rank_runs(const int32_t *offsets, int num_experts, int *counts, int *displs)
{
    int per_rank = num_experts / mesh[3];
    for (int r = 0; r < mesh[3]; r++) {
        displs[r] = offsets[r * per_rank];
        counts[r] = offsets[(r + 1) * per_rank] - displs[r];
    }
}

/* Dispatch (back 0): this rank's rows [offsets[E], row_bytes] to their experts'
 * ranks, received in recv_offsets' order into out (room for out_rows; the
 * rows past the last received one are left as they are: the compiler's
 * loops and the grouped GEMMs never read them). Return (back 1): the
 * reverse, from recv_offsets' layout back to offsets'. */
void mtx_all_to_all(void *out, const void *in, const int32_t *offsets, const int32_t *recv_offsets, int num_experts,
                    size_t row_bytes, size_t out_rows, int back)
{
    const int32_t *from = back ? recv_offsets : offsets, *to = back ? offsets : recv_offsets;
    size_t rows = (size_t)to[num_experts];
    if (rows > out_rows) {
        fprintf(stderr, "mtxrt: error: %zu rows arrive for a buffer of %zu\n", rows, out_rows);
        abort();
    }
    if (!started || mesh[3] == 1) {
        memcpy(out, in, rows * row_bytes);
    } else {
        int n = mesh[3], scounts[n], sdispls[n], rcounts[n], rdispls[n];
        rank_runs(from, num_experts, scounts, sdispls);
        rank_runs(to, num_experts, rcounts, rdispls);
        MPI_Datatype row;                        /* counts in rows: the config keeps them below 2^31 */
        MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
        MPI_Type_commit(&row);
        MPI_Alltoallv(in, scounts, sdispls, row, out, rcounts, rdispls, row, comms[MTX_AXIS_EXPERT]);
        MPI_Type_free(&row);
    }
}
