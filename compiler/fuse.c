/* Fusion: runs of consecutive elementwise ops over the same number of
 * elements become one loop. A value made and consumed inside one loop never
 * reaches memory (Value.group > 0); the others are stored as the loop goes.
 *
 * Ragged rows: under expert parallelism a device's experts receive a number
 * of rows known only at run time, in a buffer with room for every device's.
 * The all-to-all's output and what grouped GEMMs and elementwise ops make of
 * it carry Value.rows_used (the received offsets), and their loops run over
 * the rows in use only. Their other readers (grouped GEMMs, the all-to-all
 * back) read only those rows. */
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

static bool ragged_source(const Op *op)
{
    return (op->kind == OP_all_to_all && !IA(op, all_to_all, back)) || (op->kind == OP_grouped_matmul && op->in[0]->rows_used);
}

/* Value.rows_used of every value of f: from the all-to-all and the grouped
 * GEMMs on its rows, through elementwise ops whose full-size inputs have it. */
static void mark_ragged(Func *f)
{
    for (int i = 0; i < f->nops; i++) {
        Op *op = f->ops[i];
        if (ragged_source(op)) {
            op->out[0]->rows_used = op->in[2];
            continue;
        }
        if (!fusable(op)) continue;
        Value *used = NULL;
        int whole = 0;                          /* full-size inputs without rows_used */
        for (int j = 0; j < op->nin; j++) {
            const Value *x = op->in[j];
            if (value_numel(x) != loop_size(op)) continue;   /* a bias, a scalar */
            if (x->rows_used) used = x->rows_used;
            else whole++;
        }
        if (used && whole)
            fatal("fuse: %s mixes rows in use with a whole tensor of its size", op->out[0]->name);
        op->out[0]->rows_used = used;
    }
}

static void fuse_func(Program *p, Func *f)
{
    mark_ragged(f);
    int *reads = xcalloc((size_t)p->nvalues + 1, sizeof(int));   /* reads of each value in f */
    for (int i = 0; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) reads[f->ops[i]->in[j]->id]++;
    for (int i = 0; i < f->nops;) {
        if (!fusable(f->ops[i])) {
            i++;
            continue;
        }
        int last = i;
        while (last + 1 < f->nops && fusable(f->ops[last + 1]) && loop_size(f->ops[last + 1]) == loop_size(f->ops[i]) &&
               f->ops[last + 1]->out[0]->rows_used == f->ops[i]->out[0]->rows_used)
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

int64_t parallel_regions(const Func *f)
{
    int64_t n = 0;
    for (int i = 0; i < f->nops;) {
        const Op *op = f->ops[i];
        int last = i;
        while (op->group && last + 1 < f->nops && f->ops[last + 1]->group == op->group) last++;
        bool region = op->group ? (last == i && op->kind == OP_cast) || value_numel(op->out[0]) >= PARALLEL_LOOP_MIN
                                : op_info[op->kind].cls != OC_EW;
        bool looped = f->loop_count > 1 && i >= f->loop_first && i <= f->loop_last;
        if (region) n += looped ? f->loop_count : 1;
        i = last + 1;
    }
    return n;
}
