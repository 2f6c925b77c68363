/* Legalize dtypes: the model states in which dtype each value lives (bf16
 * activations when dtype is bfloat16); the runtime's fixed kernels
 * (runtime/kernels.c) compute in float32. Each bf16 operand of such a kernel
 * is widened by a cast right before it, and each bf16 result is written as
 * float32 and rounded by a cast right after it, so every value keeps the
 * dtype (and the rounding) the model gave it. Elementwise ops need nothing:
 * fused loops compute in float32 and round when they store; GEMMs take bf16
 * themselves, gathers move bf16 as it is, and the attention, loss, norm and
 * RoPE kernels have bf16 forms (bf16_kernels). A kernel that learns bf16
 * joins that table. */
#include "mtxc.h"

#include <stdlib.h>

/* Kernels with bf16 forms (runtime/attention.c, flash.c, loss.c, norms.c): which
 * inputs and outputs (bits) carry the activations' dtype; the others
 * (params, their gradients, the loss's scalars) stay f32. */
static const struct { OpKind kind; unsigned in, out; } bf16_kernels[] = {
    {OP_all_gather, 1, 1}, {OP_all_to_all, 1, 1},                /* move elements, whatever their dtype */
    {OP_rows, 1, 1}, {OP_rows_grad, 1, 1},
    {OP_attention_scores, 3, 1}, {OP_attention_scores_grad, 7, 3},
    {OP_causal_softmax, 1, 1}, {OP_causal_softmax_grad, 3, 1},
    {OP_attention_values, 3, 1}, {OP_attention_values_grad, 7, 3},
    {OP_flash_attention, 7, 1}, {OP_flash_attention_grad, 31, 7},  /* q, k, v, o (not lse); do, q, k, v, o */
    {OP_cross_entropy, 1, 0}, {OP_cross_entropy_grad, 1, 1},     /* logits, dlogits */
    {OP_rmsnorm, 1, 1}, {OP_rmsnorm_grad, 3, 1},                 /* x, y; dy, x, dx */
    {OP_layernorm, 1, 1}, {OP_layernorm_grad, 3, 1},
    {OP_rope, 1, 1}, {OP_rope_grad, 1, 1}, {OP_rope_at, 1, 1},
    {OP_cached_attention, 7, 1},                                 /* q, the key and value caches; o */
    {OP_grouped_matmul, 3, 1}, {OP_grouped_matmul_wgrad, 3, 0},  /* oneDNN: rows, w; ys; rows, dys (dw f32) */
};

bool kernel_bf16_slots(OpKind kind, unsigned *in, unsigned *out)
{
    for (size_t i = 0; i < sizeof bf16_kernels / sizeof bf16_kernels[0]; i++)
        if (bf16_kernels[i].kind == kind) {
            *in = bf16_kernels[i].in, *out = bf16_kernels[i].out;
            return true;
        }
    *in = *out = 0;
    return false;
}

/* Does this kernel run as it is: every operand in its bf16 slots bf16, or
 * every float operand f32? */
static bool runs_as_is(const Op *op)
{
    unsigned in, out;
    kernel_bf16_slots(op->kind, &in, &out);
    bool any_bf16 = false, slots_bf16 = true, others_f32 = true;
    for (int j = 0; j < op->nin + op->nout; j++) {
        const Value *v = j < op->nin ? op->in[j] : op->out[j - op->nin];
        bool slot = bf16_slot(in, out, op->nin, j);
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
    op_add(p, f, OP_cast, at->block, 1, &in, 1, &out);
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
