/* Memory planning. State tensors (params, optimizer moments, counters) are
 * laid out in one block. Each step's temporaries share one arena: a value gets
 * an offset when its op runs and gives it back after its last use, first fit. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

typedef struct { int64_t start, end; } Block;

typedef struct {
    Block *free;               /* free blocks below `top`, sorted by start */
    int nfree, cap;
    int64_t top, peak;
} Allocator;

static int64_t take(Allocator *a, int64_t size)
{
    size = align_up(size);
    for (int i = 0; i < a->nfree; i++) {
        Block *b = &a->free[i];
        if (b->end - b->start < size) continue;
        int64_t at = b->start;
        b->start += size;
        if (b->start == b->end) memmove(b, b + 1, sizeof(Block) * (size_t)(--a->nfree - i));
        return at;
    }
    /* Grow: extend a free block that ends at the top, or start a new one there. */
    int64_t at = a->top;
    if (a->nfree && a->free[a->nfree - 1].end == a->top) at = a->free[--a->nfree].start;
    a->top = at + size;
    if (a->top > a->peak) a->peak = a->top;
    return at;
}

static void give_back(Allocator *a, int64_t start, int64_t size)
{
    size = align_up(size);
    if (a->nfree == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->free = xrealloc(a->free, sizeof(Block) * (size_t)a->cap);
    }
    int i = 0;
    while (i < a->nfree && a->free[i].start < start) i++;
    memmove(a->free + i + 1, a->free + i, sizeof(Block) * (size_t)(a->nfree - i));
    a->free[i] = (Block){start, start + size};
    a->nfree++;
    /* Merge with neighbours. */
    if (i + 1 < a->nfree && a->free[i].end == a->free[i + 1].start) {
        a->free[i].end = a->free[i + 1].end;
        memmove(a->free + i + 1, a->free + i + 2, sizeof(Block) * (size_t)(a->nfree - i - 2));
        a->nfree--;
    }
    if (i > 0 && a->free[i - 1].end == a->free[i].start) {
        a->free[i - 1].end = a->free[i].end;
        memmove(a->free + i, a->free + i + 1, sizeof(Block) * (size_t)(a->nfree - i - 1));
        a->nfree--;
    }
}

static bool needs_buffer(const Value *v, const bool *outside)
{
    return v->kind == V_TEMP && !v->group && !(outside && outside[v->id]);
}

/* Ops of a fused loop run as one: position of an op = position of its loop's first op. */
static void slots(const Func *f, int *slot)
{
    for (int i = 0; i < f->nops; i++)
        slot[i] = (i > 0 && f->ops[i]->group && f->ops[i]->group == f->ops[i - 1]->group) ? slot[i - 1] : i;
}

static int64_t plan_func(Program *p, Func *f)
{
    bool *outside = NULL;       /* params' gradients, when the report keeps them elsewhere */
    if (p->grads_outside_arena) {
        outside = xcalloc((size_t)p->nvalues + 1, sizeof(bool));
        for (int i = 0; i < p->nvalues; i++)
            if (p->values[i]->kind == V_PARAM && p->values[i]->grad) outside[p->values[i]->grad->id] = true;
    }
    int *slot = xmalloc(sizeof(int) * (size_t)(f->nops + 1));
    int *last = xmalloc(sizeof(int) * (size_t)(p->nvalues + 1));
    slots(f, slot);
    for (int i = 0; i < p->nvalues; i++) last[i] = -1;
    for (int i = 0; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) last[f->ops[i]->in[j]->id] = slot[i];
    /* A value made before the microbatch loop and read in it lives through it. */
    if (f->loop_count > 1)
        for (int i = f->loop_first; i <= f->loop_last; i++)
            for (int j = 0; j < f->ops[i]->nin; j++) {
                const Value *v = f->ops[i]->in[j];
                if (v->kind == V_TEMP && v->def && func_index(f, v->def) < f->loop_first && last[v->id] < f->loop_last)
                    last[v->id] = f->loop_last;
            }
    /* Metrics are read after the step's last op. */
    Value *metrics[6] = {p->train_loss, p->train_weight, p->eval_loss, p->eval_weight, p->grad_norm, p->lr};
    for (int i = 0; i < 6; i++)
        if (metrics[i]) last[metrics[i]->id] = f->nops;

    Allocator a = {0};
    /* Accumulators live through the whole step. */
    if (f == &p->train)
        for (int i = 0; i < p->nvalues; i++)
            if (p->values[i]->kind == V_ACCUM && !(outside && outside[i]))
                p->values[i]->offset = take(&a, value_bytes(p->values[i]));
    int freed_upto = 0;          /* values whose last use is before this slot are free */
    Value **live = xmalloc(sizeof(Value *) * (size_t)(p->nvalues + 1));
    int nlive = 0;
    for (int i = 0; i < f->nops; i++) {
        if (slot[i] == i && i > freed_upto) {
            for (int j = 0; j < nlive;) {
                if (last[live[j]->id] < i) {
                    give_back(&a, live[j]->offset, value_bytes(live[j]));
                    live[j] = live[--nlive];
                } else {
                    j++;
                }
            }
            freed_upto = i;
        }
        for (int j = 0; j < f->ops[i]->nout; j++) {
            Value *v = f->ops[i]->out[j];
            if (!needs_buffer(v, outside)) continue;
            v->offset = take(&a, value_bytes(v));
            if (last[v->id] < 0) last[v->id] = slot[i];   /* unused result: free after its op */
            live[nlive++] = v;
        }
    }
    free(a.free);
    free(outside);
    free(live);
    free(slot);
    free(last);
    f->arena_bytes = a.peak;
    return a.peak;
}

/* params first, then optimizer state, then counters, each 64-byte aligned. */
static void layout_state(Program *p)
{
    int64_t at = 0;
    for (int kind = V_PARAM; kind <= V_COUNTER; kind++)
        for (int i = 0; i < p->nvalues; i++) {
            Value *v = p->values[i];
            if ((int)v->kind != kind) continue;
            v->offset = at;
            at = align_up(at + value_bytes(v));
        }
    p->state_bytes = at;
}

bool plan_memory(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    layout_state(p);
    plan_func(p, &p->eval);
    plan_func(p, &p->train);
    return true;
}
