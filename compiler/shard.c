/* Sharding over the mesh. Lowered so far: the data axis. The model builder
 * already gives each device its slice of the batch (per-device shapes); this
 * pass makes the devices agree: the summed losses, token counts and gradients
 * of the step (the accumulators of accumulate.c) are all-reduced over the
 * data-parallel ranks before the optimizer divides by the global token count,
 * so every rank applies the update of one step over the whole batch.
 * FSDP and tensor meshes are accounted by compile-only (report.c) but not
 * lowered here yet; the backends refuse them. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

bool shard(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    int dp = p->cfg->d.mesh_data;
    if (dp <= 1) return true;
    Func *f = &p->train;
    Value **sums = xmalloc(sizeof(Value *) * (size_t)(p->nvalues + 2));
    int n = 0;
    sums[n++] = p->loss_sum;
    sums[n++] = p->weight_sum;
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind == V_PARAM && p->values[i]->grad) sums[n++] = p->values[i]->grad;
    op_add(p, f, OP_all_reduce_sum, pool_fmt(p->pool, "data parallelism: sum over %d ranks", dp), n, sums, 0, NULL);
    /* Right after the microbatch loop, before the sums are used. */
    int at = f->loop_last + 1;
    Op *op = f->ops[f->nops - 1];
    memmove(f->ops + at + 1, f->ops + at, sizeof(Op *) * (size_t)(f->nops - 1 - at));
    f->ops[at] = op;
    free(sums);
    return true;
}
