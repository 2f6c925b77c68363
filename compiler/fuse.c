/* Fusion: runs of consecutive elementwise ops over the same number of
 * elements become one loop. A value made and consumed inside one loop never
 * reaches memory (Value.group > 0); the others are stored as the loop goes. */
#include "mtxc.h"

static bool fusable(const Op *op) { return op_info[op->kind].cls == OC_EW; }

static int64_t loop_size(const Op *op) { return value_numel(op->out[0]); }

/* Uses of each value in f, and whether one lies outside [first, last]. */
static bool used_outside(const Func *f, const Value *v, int first, int last, const Program *p)
{
    if (v == p->train_loss || v == p->eval_loss || v == p->train_weight || v == p->eval_weight ||
        v == p->grad_norm || v == p->lr)
        return true;                                  /* reported in the metrics */
    for (int i = 0; i < f->nops; i++) {
        if (i >= first && i <= last) continue;
        for (int j = 0; j < f->ops[i]->nin; j++)
            if (f->ops[i]->in[j] == v) return true;
    }
    return false;
}

static void fuse_func(Program *p, Func *f)
{
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
            if (last > i && !used_outside(f, v, i, last, p)) v->group = group;
        }
        i = last + 1;
    }
}

bool fuse(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    fuse_func(p, &p->eval);
    fuse_func(p, &p->train);
    return true;
}
