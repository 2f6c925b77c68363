/* Fusion: runs of consecutive elementwise ops over the same number of
 * elements become one loop. A value made and consumed inside one loop never
 * reaches memory (Value.group > 0); the others are stored as the loop goes. */
#include "mtxc.h"

#include <stdlib.h>

static bool fusable(const Op *op) { return op_info[op->kind].cls == OC_EW; }

static int64_t loop_size(const Op *op) { return value_numel(op->out[0]); }

/* Reads of v by the ops [first, last] of f. */
static int reads_in(const Func *f, const Value *v, int first, int last)
{
    int n = 0;
    for (int i = first; i <= last; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) n += f->ops[i]->in[j] == v;
    return n;
}

static void fuse_func(Program *p, Func *f)
{
    int *reads = xcalloc((size_t)p->nvalues + 1, sizeof(int));   /* reads of each value in f */
    for (int i = 0; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) reads[f->ops[i]->in[j]->id]++;
    for (int i = 0; i < f->nops;) {
        if (!fusable(f->ops[i])) {
            i++;
            continue;
        }
        int last = i;
        while (last + 1 < f->nops && fusable(f->ops[last + 1]) && loop_size(f->ops[last + 1]) == loop_size(f->ops[i]))
            last++;
        int group = ++p->ngroups;
        for (int j = i; j <= last; j++) {
            f->ops[j]->group = group;
            Value *v = f->ops[j]->out[0];
            /* never read outside the loop: it stays a scalar of the loop body */
            if (last > i && !value_reported(p, v) && reads_in(f, v, i, last) == reads[v->id]) v->group = group;
        }
        i = last + 1;
    }
    free(reads);
}

bool fuse(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    for (int i = 0; i < NUM_FUNCS; i++) fuse_func(p, p->funcs[i]);
    return true;
}
