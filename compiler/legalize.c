/* Legalize dtypes: the model states in which dtype each value lives (bf16
 * activations when dtype is bfloat16); the runtime's fixed kernels
 * without a bf16 form (runtime/kernels/embed.c's) compute in float32. Each bf16 operand of such a kernel
 * is widened by a cast right before it, and each bf16 result is written as
 * float32 and rounded by a cast right after it, so every value keeps the
 * dtype (and the rounding) the model gave it. Elementwise ops need nothing:
 * fused loops compute in float32 and round when they store; GEMMs take bf16
 * themselves, gathers move bf16 as it is, and the attention, loss, norm and
 * RoPE kernels have bf16 forms (ops.def's bf16 slots: which operands
 * carry the activations' dtype; the others stay float32). A kernel that
 * learns bf16 says so there. */
#include "mtxc.h"

#include <stdlib.h>

/* Does this kernel run as it is: every operand in its bf16 slots bf16, or
 * every float operand f32? */
static bool runs_as_is(const Op *op)
{
    bool any_bf16 = false, slots_bf16 = true, others_f32 = true;
    for (int j = 0; j < op->nin + op->nout; j++) {
        const Value *v = j < op->nin ? op->in[j] : op->out[j - op->nin];
        bool slot = bf16_slot(op->kind, op->nin, j);
        if (!dtype_is_float(v->dtype)) continue;
        any_bf16 |= v->dtype == DT_BF16;
        if (slot) slots_bf16 &= v->dtype == DT_BF16;
        else others_f32 &= v->dtype == DT_F32;
    }
    return !any_bf16 || (slots_bf16 && others_f32);
}

static bool computes_in_f32(const Op *op) { return op_info[op->kind].cls == OC_KERNEL && !runs_as_is(op); }

static Value *f32_twin(Program *p, const Value *v, const char *suffix)
{
    return value_new(p, pool_fmt(p->pool, "%s.%s", v->name, suffix), DT_F32, v->rank, v->dim, V_TEMP);
}

static void cast(Program *p, Func *f, const Op *at, Value *in, Value *out)
{
    ops_at(p, at);
    op_add(p, f, OP_cast, at->block, 1, &in, 1, &out);
    ops_at(p, NULL);
}

static void legalize_func(Program *p, Func *f)
{
    Func out = *f;
    out.ops = NULL, out.nops = out.cap = 0;
    int first = -1, last = -1;   /* the microbatch loop's new bounds */
    for (int i = 0; i < f->nops; i++) {
        Op *op = f->ops[i];
        if (i == f->loop_first) first = out.nops;
        bool widen = computes_in_f32(op);   /* decided before its operands change */
        if (widen)
            for (int j = 0; j < op->nin; j++) {
                if (op->in[j]->dtype != DT_BF16) continue;
                Value *wide = f32_twin(p, op->in[j], "widened");
                cast(p, &out, op, op->in[j], wide);
                op->in[j] = wide;
            }
        func_append(&out, op);
        if (widen)
            for (int j = 0; j < op->nout; j++) {
                Value *y = op->out[j];
                if (y->dtype != DT_BF16) continue;
                Value *wide = f32_twin(p, y, "f32");
                op->out[j] = wide;
                wide->def = op;
                cast(p, &out, op, wide, y);
            }
        if (i == f->loop_last) last = out.nops - 1;
    }
    free(f->ops);
    if (f->loop_count > 1) out.loop_first = first, out.loop_last = last;
    *f = out;
}

bool legalize(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    for (int i = 0; i < NUM_FUNCS; i++) legalize_func(p, p->funcs[i]);
    p->legalized = true;
    return true;
}
