/* Where a Hugging Face tensor's values sit in mtxc's parameters, shared by
 * the import (hf_checkpoint.c) and the export (hf_export.c): the part of
 * the whole parameter a tensor is (all of it, or one of mixtral's experts),
 * its columns after RoPE's pairs, and the share of the whole parameter a
 * device holds (a tensor- or expert-parallel share, then an fsdp chunk of
 * it: the layout the generated init draws). */
#include "mtxrt_trainer.h"

#include <stdlib.h>
#include <string.h>

int64_t mtx_hf_numel(const mtx_hf_tensor *m)
{
    int64_t n = 1;
    for (int i = 0; i < m->rank; i++) n *= m->shape[i];
    return n;
}

void mtx_hf_view(const mtx_hf_tensor *m, int64_t *rows, int64_t *cols, size_t *first)
{
    int r = m->rank;
    *rows = r >= 2 ? m->shape[r - 2] : 1;
    *cols = r >= 1 ? m->shape[r - 1] : 1;
    *first = m->slice ? (size_t)(m->slice - 1) * (size_t)(*rows * *cols) : 0;
}

int mtx_hf_shape(const mtx_hf_tensor *m, int64_t shape[2])
{
    int64_t rows, cols;
    size_t first;
    mtx_hf_view(m, &rows, &cols, &first);
    if (m->rank == 1) return shape[0] = cols, 1;
    shape[0] = m->transpose ? cols : rows, shape[1] = m->transpose ? rows : cols;
    return 2;
}

int64_t *mtx_hf_columns(const mtx_hf_tensor *m, int64_t cols)
{
    int64_t *src = malloc(sizeof(int64_t) * (size_t)(cols ? cols : 1));
    for (int64_t c = 0; src && c < cols; c++) {
        int64_t head = m->rope_pairs ? c / m->rope_pairs : 0, j = m->rope_pairs ? c % m->rope_pairs : c;
        src[c] = !m->rope_pairs ? c : head * m->rope_pairs + (j % 2 ? j / 2 + m->rope_pairs / 2 : j / 2);
    }
    return src;
}

int mtx_hf_sharded(const mtx_hf_tensor *m) { return m->fsdp || m->split_ways > 1; }

/* The share's element j is the whole's: runs of split_inner, one in every split_ways. */
static size_t whole_index(const mtx_hf_tensor *m, size_t j, int coord)
{
    if (m->split_ways <= 1) return j;
    size_t inner = (size_t)m->split_inner;
    return j / inner * inner * (size_t)m->split_ways + (size_t)coord * inner + j % inner;
}

void mtx_hf_share(const mtx_hf_tensor *m, const mtx_tensor_desc *d, float *whole, void *memory, int fsdp,
                  int fsdp_coord, int coord, int to_whole)
{
    float *local = (float *)((unsigned char *)memory + d->offset);
    size_t local_numel = 1;
    for (int i = 0; i < d->rank; i++) local_numel *= (size_t)d->shape[i];
    size_t share = (size_t)mtx_hf_numel(m) / (size_t)(m->split_ways > 1 ? m->split_ways : 1), first = 0, count = share;
    if (m->fsdp) {
        size_t chunk = mtx_shard_chunk(share, fsdp);
        first = (size_t)fsdp_coord * chunk;
        count = first >= share ? 0 : share - first < chunk ? share - first : chunk;
    }
    for (size_t i = 0; i < count && i < local_numel; i++) {
        size_t w = whole_index(m, first + i, coord);
        if (to_whole) whole[w] = local[i];
        else local[i] = whole[w];
    }
    if (!to_whole)
        for (size_t i = count; i < local_numel; i++) local[i] = 0;   /* an fsdp chunk's padding */
}
