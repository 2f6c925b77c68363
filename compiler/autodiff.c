/* Reverse-mode autodiff: walks the train step's forward ops backwards and
 * appends, for each, the ops of its VJP rule. Gradients of values used more
 * than once are summed. Only values that depend on parameters get gradients. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    Program *p;
    Func *f;
    Value **grad;              /* by value id */
    bool *needs;               /* by value id: depends on a parameter */
    const char *block;
} AD;

static Value *like(AD *ad, const char *prefix, const Value *v)
{
    return value_new(ad->p, pool_fmt(ad->p->pool, "%s%s", prefix, v->name), v->dtype, v->rank, v->dim, V_TEMP);
}

static Op *emit(AD *ad, OpKind kind, int nin, Value *i0, Value *i1, Value *i2, Value *i3,
                int nout, Value *o0, Value *o1, Value *o2)
{
    Value *in[4] = {i0, i1, i2, i3}, *out[3] = {o0, o1, o2};
    return op_add(ad->p, ad->f, kind, ad->block, nin, in, nout, out);
}

/* Add g to the gradient of v (if v needs one). */
static void accumulate(AD *ad, Value *v, Value *g)
{
    if (!ad->needs[v->id]) return;
    Value *old = ad->grad[v->id];
    if (!old) {
        ad->grad[v->id] = g;
        return;
    }
    Value *sum = like(ad, "grad_sum.", v);
    emit(ad, OP_add, 2, old, g, NULL, NULL, 1, sum, NULL, NULL);
    ad->grad[v->id] = sum;
}

/* The gradient of v coming through op. A second path into v is named after
 * the op it comes from (grad.x.via.wi_1) and summed with the first (grad_sum.x). */
static Value *grad_value(AD *ad, const Value *v, const Op *op)
{
    if (!ad->grad[v->id]) return like(ad, "grad.", v);
    const char *from = op->out[0]->name, *dot = strrchr(from, '.');
    return value_new(ad->p, pool_fmt(ad->p->pool, "grad.%s.via.%s", v->name, dot ? dot + 1 : from), v->dtype,
                     v->rank, v->dim, V_TEMP);
}

static void copy_attrs(Op *to, const Op *from)
{
    memcpy(to->ia, from->ia, sizeof to->ia);
    memcpy(to->fa, from->fa, sizeof to->fa);
}

/* Where a matmul operand's gradient goes: an operand that is a float32
 * value cast to bf16 (a weight) gets its gradient from the GEMM in float32,
 * straight into the source, rounded once instead of to bf16 first. */
static Value *grad_target(const AD *ad, Value *v)
{
    const Op *def = v->kind == V_TEMP ? v->def : NULL;
    if (def && def->kind == OP_cast && v->dtype == DT_BF16 && def->in[0]->dtype == DT_F32 && ad->needs[def->in[0]->id])
        return def->in[0];
    return v;
}

/* A gradient's matmul: [m, k] x [k, n] with operands stored transposed as ta, tb say. */
static Op *matmul_op(AD *ad, Value *a, Value *b, Value *c, int64_t m, int64_t n, int64_t k, int64_t ta, int64_t tb,
                     double alpha)
{
    Op *g = emit(ad, OP_matmul, 2, a, b, NULL, NULL, 1, c, NULL, NULL);
    IA(g, matmul, m) = m, IA(g, matmul, n) = n, IA(g, matmul, k) = k;
    IA(g, matmul, ta) = ta, IA(g, matmul, tb) = tb;
    FA(g, matmul, alpha) = alpha;
    return g;
}

/* matmul c = alpha op(a) op(b), with a [M,K] (stored [K,M] if ta) and b [K,N] (stored [N,K] if tb) */
static void vjp_matmul(AD *ad, const Op *op, Value *dc)
{
    Value *a = op->in[0], *b = op->in[1];
    Value *ga = grad_target(ad, a), *gb = grad_target(ad, b);   /* where their gradients go */
    int64_t m = IA(op, matmul, m), n = IA(op, matmul, n), k = IA(op, matmul, k);
    int64_t ta = IA(op, matmul, ta), tb = IA(op, matmul, tb);
    double alpha = FA(op, matmul, alpha);
    if (ad->needs[ga->id]) {
        Value *da = grad_value(ad, ga, op);
        if (!ta) matmul_op(ad, dc, b, da, m, k, n, 0, !tb, alpha);   /* da[M,K] = dc[M,N] op(b)^T */
        else matmul_op(ad, b, dc, da, k, m, n, tb, 1, alpha);        /* da[K,M] = op(b) dc^T */
        accumulate(ad, ga, da);
    }
    if (ad->needs[gb->id]) {
        Value *db = grad_value(ad, gb, op);
        if (!tb) matmul_op(ad, a, dc, db, k, n, m, !ta, 0, alpha);   /* db[K,N] = op(a)^T dc */
        else matmul_op(ad, dc, a, db, n, k, m, 1, ta, alpha);        /* db[N,K] = dc^T op(a) */
        accumulate(ad, gb, db);
    }
}

/* The VJP rule of one op, given the gradient of its first output. */
static void vjp(AD *ad, const Op *op, Value *dy)
{
    Value *const *in = op->in;
    Value *y = op->out[0];
    Op *g;
    switch (op->kind) {
    case OP_matmul:
        vjp_matmul(ad, op, dy);
        break;
    case OP_embed: {
        Value *dt = grad_value(ad, in[0], op);
        g = emit(ad, OP_embed_grad, 2, dy, in[1], NULL, NULL, 1, dt, NULL, NULL);
        IA(g, embed_grad, n) = IA(op, embed, n);
        IA(g, embed_grad, vocab) = in[0]->dim[0];
        IA(g, embed_grad, d) = IA(op, embed, d);
        accumulate(ad, in[0], dt);
        break;
    }
    case OP_position_add: {
        accumulate(ad, in[0], dy);
        Value *dp = grad_value(ad, in[1], op);
        g = emit(ad, OP_position_add_grad, 2, dy, in[2], NULL, NULL, 1, dp, NULL, NULL);
        IA(g, position_add_grad, b) = IA(op, position_add, b);
        IA(g, position_add_grad, t) = IA(op, position_add, t);
        IA(g, position_add_grad, rows) = in[1]->dim[0];
        IA(g, position_add_grad, d) = IA(op, position_add, d);
        accumulate(ad, in[1], dp);
        break;
    }
    case OP_bias_add: {
        accumulate(ad, in[0], dy);
        Value *db = grad_value(ad, in[1], op);
        g = emit(ad, OP_bias_grad, 1, dy, NULL, NULL, NULL, 1, db, NULL, NULL);
        IA(g, bias_grad, n) = value_numel(dy) / IA(op, bias_add, cols);
        IA(g, bias_grad, d) = IA(op, bias_add, cols);
        accumulate(ad, in[1], db);
        break;
    }
    case OP_add:
        accumulate(ad, in[0], dy);
        accumulate(ad, in[1], dy);
        break;
    case OP_mul:
        for (int i = 0; i < 2; i++) {
            if (!ad->needs[in[i]->id]) continue;
            Value *d = grad_value(ad, in[i], op);
            emit(ad, OP_mul, 2, dy, in[1 - i], NULL, NULL, 1, d, NULL, NULL);
            accumulate(ad, in[i], d);
        }
        break;
    case OP_silu:
    case OP_gelu:
    case OP_relu: {
        Value *dx = grad_value(ad, in[0], op);
        OpKind grad = op->kind == OP_silu ? OP_silu_grad : op->kind == OP_gelu ? OP_gelu_grad : OP_relu_grad;
        emit(ad, grad, 2, in[0], dy, NULL, NULL, 1, dx, NULL, NULL);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_soft_cap: {
        Value *dx = grad_value(ad, in[0], op);
        g = emit(ad, OP_soft_cap_grad, 2, in[0], dy, NULL, NULL, 1, dx, NULL, NULL);
        FA(g, soft_cap, cap) = FA(op, soft_cap, cap);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_rmsnorm: {
        Value *dx = grad_value(ad, in[0], op), *ds = grad_value(ad, in[1], op);
        copy_attrs(emit(ad, OP_rmsnorm_grad, 3, dy, in[0], in[1], NULL, 2, dx, ds, NULL), op);
        accumulate(ad, in[0], dx);
        accumulate(ad, in[1], ds);
        break;
    }
    case OP_layernorm: {
        Value *dx = grad_value(ad, in[0], op), *ds = grad_value(ad, in[1], op), *db = grad_value(ad, in[2], op);
        copy_attrs(emit(ad, OP_layernorm_grad, 3, dy, in[0], in[1], NULL, 3, dx, ds, db), op);
        accumulate(ad, in[0], dx);
        accumulate(ad, in[1], ds);
        accumulate(ad, in[2], db);
        break;
    }
    case OP_rope: {
        Value *dx = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_rope_grad, 2, dy, in[1], NULL, NULL, 1, dx, NULL, NULL), op);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_attention_scores: {
        Value *dq = grad_value(ad, in[0], op), *dk = grad_value(ad, in[1], op);
        copy_attrs(emit(ad, OP_attention_scores_grad, 3, dy, in[0], in[1], NULL, 2, dq, dk, NULL), op);
        accumulate(ad, in[0], dq);
        accumulate(ad, in[1], dk);
        break;
    }
    case OP_causal_softmax: {
        Value *ds = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_causal_softmax_grad, 2, y, dy, NULL, NULL, 1, ds, NULL, NULL), op);
        accumulate(ad, in[0], ds);
        break;
    }
    case OP_attention_values: {
        Value *dp = grad_value(ad, in[0], op), *dv = grad_value(ad, in[1], op);
        copy_attrs(emit(ad, OP_attention_values_grad, 3, dy, in[0], in[1], NULL, 2, dp, dv, NULL), op);
        accumulate(ad, in[0], dp);
        accumulate(ad, in[1], dv);
        break;
    }
    case OP_flash_attention: {   /* lse is the op's own; only o has a gradient */
        Value *dq = grad_value(ad, in[0], op), *dk = grad_value(ad, in[1], op), *dv = grad_value(ad, in[2], op);
        Value *gin[7] = {dy, in[0], in[1], in[2], y, op->out[1], in[3]}, *gout[3] = {dq, dk, dv};
        copy_attrs(op_add(ad->p, ad->f, OP_flash_attention_grad, ad->block, 7, gin, 3, gout), op);
        accumulate(ad, in[0], dq);
        accumulate(ad, in[1], dk);
        accumulate(ad, in[2], dv);
        break;
    }
    case OP_rows: {
        Value *dx = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_rows_grad, 1, dy, NULL, NULL, NULL, 1, dx, NULL, NULL), op);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_cross_entropy: {
        Value *dl = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_cross_entropy_grad, 4, in[0], in[1], in[2], dy, 1, dl, NULL, NULL), op);
        accumulate(ad, in[0], dl);
        break;
    }
    case OP_dropout: {
        Value *dx = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_dropout_grad, 1, dy, NULL, NULL, NULL, 1, dx, NULL, NULL), op);
        accumulate(ad, in[0], dx);
        break;
    }
    /* Megatron's f and g: where a tensor-parallel block starts, each device's
     * gradient of its input is partial (its heads or MLP columns) and sums
     * over the axis; where the block ends, the summed output's gradient is
     * every device's whole gradient already. */
    case OP_tensor_enter: {
        Value *dx = grad_value(ad, in[0], op);
        emit(ad, OP_tensor_sum, 1, dy, NULL, NULL, NULL, 1, dx, NULL, NULL);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_tensor_sum:
        accumulate(ad, in[0], dy);
        break;
    case OP_cast: {
        Value *dx = grad_value(ad, in[0], op);
        emit(ad, OP_cast, 1, dy, NULL, NULL, NULL, 1, dx, NULL, NULL);
        accumulate(ad, in[0], dx);
        break;
    }
    /* mixture of experts: the routing choice and the sort have no gradient */
    case OP_topk_route: {
        Value *dl = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_topk_route_grad, 3, dy, y, op->out[1], NULL, 1, dl, NULL, NULL), op);
        accumulate(ad, in[0], dl);
        break;
    }
    case OP_gather_rows: {
        Value *dx = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_gather_rows_grad, 2, dy, in[1], NULL, NULL, 1, dx, NULL, NULL), op);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_grouped_matmul: {   /* ys = xs w[e]: dxs = dys w[e]^T, dw[e] = xs^T dys */
        Value *w = in[1], *gw = grad_target(ad, w);
        if (ad->needs[in[0]->id]) {
            Value *dx = grad_value(ad, in[0], op);
            g = emit(ad, OP_grouped_matmul, 3, dy, w, in[2], NULL, 1, dx, NULL, NULL);
            copy_attrs(g, op);   /* [m, n] x w^T: n and k trade places, tb flips */
            IA(g, grouped_matmul, n) = IA(op, grouped_matmul, k);
            IA(g, grouped_matmul, k) = IA(op, grouped_matmul, n);
            IA(g, grouped_matmul, tb) = !IA(op, grouped_matmul, tb);
            accumulate(ad, in[0], dx);
        }
        if (ad->needs[gw->id]) {
            if (IA(op, grouped_matmul, tb)) fatal("autodiff: grouped_matmul's weight gradient of a transposed weight");
            Value *dw = grad_value(ad, gw, op);
            copy_attrs(emit(ad, OP_grouped_matmul_wgrad, 3, in[0], dy, in[2], NULL, 1, dw, NULL, NULL), op);
            accumulate(ad, gw, dw);
        }
        break;
    }
    case OP_all_to_all: {   /* the rows' gradients travel back the way the rows came */
        Value *dx = grad_value(ad, in[0], op);
        g = emit(ad, OP_all_to_all, 3, dy, in[1], in[2], NULL, 1, dx, NULL, NULL);
        copy_attrs(g, op);   /* back: the row counts trade places */
        IA(g, all_to_all, rows_in) = IA(op, all_to_all, rows_out);
        IA(g, all_to_all, rows_out) = IA(op, all_to_all, rows_in);
        IA(g, all_to_all, back) = !IA(op, all_to_all, back);
        accumulate(ad, in[0], dx);
        break;
    }
    case OP_expert_combine: {
        Value *dys = grad_value(ad, in[0], op), *dw = grad_value(ad, in[2], op);
        Value *gin[4] = {dy, in[0], in[1], in[2]}, *gout[2] = {dys, dw};
        copy_attrs(op_add(ad->p, ad->f, OP_expert_combine_grad, ad->block, 4, gin, 2, gout), op);
        accumulate(ad, in[0], dys);
        accumulate(ad, in[2], dw);
        break;
    }
    case OP_moe_lb_loss: {
        Value *dl = grad_value(ad, in[0], op);
        copy_attrs(emit(ad, OP_moe_lb_loss_grad, 3, in[0], in[1], dy, NULL, 1, dl, NULL, NULL), op);
        accumulate(ad, in[0], dl);
        break;
    }
    case OP_fill:
        break;
    case OP_expert_sort: case OP_expert_capacity: case OP_expert_counts: case OP_rope_at: case OP_position_add_at:
    case OP_segment_bounds:
    case OP_kv_cache_write: case OP_cached_attention: case OP_embed_grad: case OP_position_add_grad:
    case OP_bias_grad: case OP_silu_grad: case OP_gelu_grad: case OP_relu_grad: case OP_soft_cap_grad:
    case OP_dropout_grad: case OP_rmsnorm_grad: case OP_layernorm_grad: case OP_rope_grad:
    case OP_attention_scores_grad: case OP_causal_softmax_grad: case OP_attention_values_grad:
    case OP_flash_attention_grad: case OP_cross_entropy_grad: case OP_rows_grad: case OP_topk_route_grad:
    case OP_gather_rows_grad: case OP_grouped_matmul_wgrad: case OP_expert_combine_grad: case OP_moe_lb_loss_grad:
    case OP_global_norm: case OP_learning_rate: case OP_clip_scale: case OP_adamw: case OP_sgd: case OP_muon:
    case OP_step_increment: case OP_zero: case OP_accumulate: case OP_reciprocal: case OP_all_reduce_sum:
    case OP_all_gather: case OP_reduce_scatter: case NUM_OPS:
        fatal("autodiff: no VJP rule for op %s", op_info[op->kind].name);
    }
}

/* Outputs that depend on no parameter whatever the inputs: the loss's
 * weight counts targets; integers (the experts a router chose) have no gradient. */
static bool differentiable(const Op *op, int out)
{
    return !(op->kind == OP_cross_entropy && out == 1) && dtype_is_float(op->out[out]->dtype);
}

/* Differentiate `loss` (a [1] value defined in f) with respect to every
 * parameter it depends on; sets Value.grad of each such parameter. */
bool differentiate(Program *p, Func *f, Value *loss, Value *seed_value, char *err, size_t errlen)
{
    AD ad = {p, f, xcalloc((size_t)p->nvalues + 1, sizeof(Value *)),
             xcalloc((size_t)p->nvalues + 1, sizeof(bool)), "backward"};
    int nforward = f->nops;
    for (int i = 0; i < p->nvalues; i++) ad.needs[i] = p->values[i]->kind == V_PARAM;
    for (int i = 0; i < nforward; i++) {
        Op *op = f->ops[i];
        bool any = false;
        for (int j = 0; j < op->nin; j++) any |= ad.needs[op->in[j]->id];
        for (int j = 0; j < op->nout; j++) ad.needs[op->out[j]->id] = any && differentiable(op, j);
    }
    int nvalues_before = p->nvalues;
    Value *seed = seed_value;
    p->at.unit = -1, p->at.pass = PASS_BACKWARD;
    if (!seed) {
        seed = value_new(p, "grad.loss", DT_F32, 1, loss->dim, V_TEMP);
        ad.block = "backward: loss";
        Op *fill = op_add(p, f, OP_fill, ad.block, 0, NULL, 1, &seed);
        FA(fill, fill, value) = 1.0;
    }
    ad.grad[loss->id] = seed;
    for (int i = nforward - 1; i >= 0; i--) {
        Op *op = f->ops[i];
        Value *dy = ad.grad[op->out[0]->id];
        if (!dy) continue;
        ad.block = op->block ? pool_fmt(p->pool, "backward: %s", op->block) : "backward";
        p->at.unit = op->unit;   /* an op's gradient belongs to its unit */
        vjp(&ad, op, dy);
    }
    ops_at(p, NULL);
    for (int i = 0; i < nvalues_before; i++)
        if (p->values[i]->kind == V_PARAM) p->values[i]->grad = ad.grad[i];
    free(ad.grad);
    free(ad.needs);
    (void)err;
    (void)errlen;
    return true;
}

/* With gradient accumulation, each microbatch's gradient is that of its
 * summed (not mean) loss: the seed is the microbatch's token count, and the
 * accumulated sums are divided by the total count once (MaxText's weighting),
 * which equals the gradient of one step over the whole batch. */
bool autodiff(Program *p, char *err, size_t errlen)
{
    bool accumulating = cfg_int(p->cfg, K_gradient_accumulation_steps) > 1 || batch_shards(p->cfg) > 1;
    return differentiate(p, &p->train, p->train_loss, accumulating ? p->train_weight : NULL, err, errlen);
}
