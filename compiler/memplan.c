/* Memory planning. State tensors (params, optimizer moments, counters) are
 * laid out in one block. Each step's temporaries share one arena. Every
 * temporary lives from the op that makes it to its last use, so the plan
 * is offline: values are placed largest first, each at the lowest offset
 * where it fits beside the values already placed that live at the same
 * time (the "greedy by size" of TFLite's arena planner), which keeps the
 * arena near the largest sum of live bytes; first fit in program order
 * left holes that the big activations of later layers could not use. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

/* A temporary to place: live over slots [first, last], `size` bytes. */
typedef struct {
    Value *v;
    int64_t size;
    int first, last;
} Item;

static int larger_first(const void *pa, const void *pb)
{
    const Item *a = pa, *b = pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a->v->id < b->v->id ? -1 : a->v->id > b->v->id;
}

/* Offsets for items (sorted largest first); returns the arena's size. The
 * values placed so far are kept in offset order (equal offsets in the order
 * they were placed), so each new one is one scan of them, not a sort. */
static int64_t place(Item *items, int n)
{
    Item **placed = xmalloc(sizeof(Item *) * (size_t)(n + 1));
    int64_t peak = 0;
    for (int i = 0; i < n; i++) {
        Item *it = &items[i];
        /* the smallest gap between the values live beside it that holds it, else past them all */
        int64_t at = 0, best = -1, best_gap = 0;
        for (int j = 0; j < i; j++) {
            const Item *o = placed[j];
            if (o->first > it->last || it->first > o->last) continue;
            int64_t gap = o->v->offset - at;
            if (gap >= it->size && (best < 0 || gap < best_gap)) best = at, best_gap = gap;
            int64_t end = o->v->offset + o->size;
            if (end > at) at = end;
        }
        it->v->offset = best >= 0 ? best : at;
        if (it->v->offset + it->size > peak) peak = it->v->offset + it->size;
        int lo = 0, hi = i;                   /* after the placed ones at offsets <= its own */
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (placed[mid]->v->offset <= it->v->offset) lo = mid + 1;
            else hi = mid;
        }
        memmove(placed + lo + 1, placed + lo, sizeof(Item *) * (size_t)(i - lo));
        placed[lo] = it;
    }
    free(placed);
    return peak;
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
    for (int i = 0; i < p->nvalues; i++)
        if (value_reported(p, p->values[i])) last[i] = f->nops;

    /* Accumulators live through the whole step. */
    Item *items = xmalloc(sizeof(Item) * (size_t)(p->nvalues + 1));
    int n = 0;
    if (f == &p->train)
        for (int i = 0; i < p->nvalues; i++)
            if (p->values[i]->kind == V_ACCUM && !(outside && outside[i]))
                items[n++] = (Item){p->values[i], align_up(value_bytes(p->values[i])), 0, f->nops};
    for (int i = 0; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nout; j++) {
            Value *v = f->ops[i]->out[j];
            if (!needs_buffer(v, outside)) continue;
            int end = last[v->id] < slot[i] ? slot[i] : last[v->id];   /* an unused result: its op alone */
            items[n++] = (Item){v, align_up(value_bytes(v)), slot[i], end};
        }
    qsort(items, (size_t)n, sizeof(Item), larger_first);
    f->arena_bytes = place(items, n);
    free(items);
    free(outside);
    free(slot);
    free(last);
    return f->arena_bytes;
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
    at = 0;   /* decoding's caches: a block of their own, allocated only to decode */
    for (int i = 0; i < p->nvalues; i++) {
        Value *v = p->values[i];
        if (v->kind != V_CACHE) continue;
        v->offset = at;
        at = align_up(at + value_bytes(v));
    }
    p->cache_bytes = at;
}

bool plan_memory(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    layout_state(p);
    for (int i = 0; i < NUM_FUNCS; i++) plan_func(p, p->funcs[i]);
    return true;
}
