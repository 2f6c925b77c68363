/* The IR's invariants, checked after every pass: SSA (each temporary defined
 * once, before its uses, in the same function), arity, dtypes and shapes. */
#include "mtxc.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *err;
    size_t errlen;
    const Func *f;
    const Op *op;
    int index;
} Verifier;

static bool bad(Verifier *V, const char *fmt, ...)
{
    int n = snprintf(V->err, V->errlen, "IR verifier: %s, op %d (%s%s%s): ", V->f->name, V->index,
                     op_info[V->op->kind].name, V->op->nout ? " -> " : "",
                     V->op->nout ? V->op->out[0]->name : "");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < V->errlen) vsnprintf(V->err + n, V->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static bool numel_is(Verifier *V, const Value *v, int64_t want, const char *what)
{
    if (value_numel(v) == want) return true;
    return bad(V, "%s %s has %lld elements, expected %lld", what, v->name,
               (long long)value_numel(v), (long long)want);
}

static bool dtype_is(Verifier *V, const Value *v, DType dt)
{
    if (v->dtype == dt) return true;
    return bad(V, "%s is %s, expected %s", v->name, dtype_name(v->dtype), dtype_name(dt));
}

/* Shape rules per op, in terms of the op's attributes. */
#define A(set, name) IA(o, set, name)

/* The attention ops: q, o [b, t, hq, dh]; k, v [b, t, hkv, dh]; scores and
 * probabilities [b, hq, t, t]; flash's row log-sum-exp [b, hq, t] (f32). */
static bool check_attention(Verifier *V)
{
    const Op *o = V->op;
    Value *const *in = o->in, *const *out = o->out;
    int64_t b = A(attention, b), t = A(attention, t), hq = A(attention, hq), hkv = A(attention, hkv);
    int64_t q = b * t * hq * A(attention, dh), kv = b * t * hkv * A(attention, dh), scores = b * hq * t * t;
    if (hkv <= 0 || hq % hkv) return bad(V, "hq %lld not a multiple of hkv %lld", (long long)hq, (long long)hkv);
    if (o->kind == OP_attention_scores)
        return numel_is(V, in[0], q, "query") && numel_is(V, in[1], kv, "key") && numel_is(V, out[0], scores, "scores");
    if (o->kind == OP_attention_values)
        return numel_is(V, in[0], scores, "probabilities") && numel_is(V, in[1], kv, "value") &&
               numel_is(V, out[0], q, "output");
    return numel_is(V, in[0], q, "query") && numel_is(V, in[1], kv, "key") && numel_is(V, in[2], kv, "value") &&
           numel_is(V, out[0], q, "output") && numel_is(V, out[1], b * hq * t, "lse") && dtype_is(V, out[1], DT_F32);
}

static bool check_shapes(Verifier *V)
{
    const Op *o = V->op;
    Value *const *in = o->in, *const *out = o->out;
    switch (o->kind) {
    case OP_embed:
        return dtype_is(V, in[1], DT_I32) && numel_is(V, in[1], A(embed, n), "tokens") &&
               numel_is(V, out[0], A(embed, n) * A(embed, d), "output") && in[0]->dim[1] == A(embed, d);
    case OP_matmul:
        if (in[0]->dtype != in[1]->dtype)
            return bad(V, "operands are %s and %s, expected one dtype", dtype_name(in[0]->dtype), dtype_name(in[1]->dtype));
        if (in[0]->dtype == DT_F32 && !dtype_is(V, out[0], DT_F32)) return false;
        return numel_is(V, in[0], A(matmul, m) * A(matmul, k), "left operand") &&
               numel_is(V, in[1], A(matmul, k) * A(matmul, n), "right operand") &&
               numel_is(V, out[0], A(matmul, m) * A(matmul, n), "output");
    case OP_bias_add:
        return numel_is(V, in[1], A(bias_add, cols), "bias") && numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_add: case OP_mul: case OP_silu_grad: case OP_gelu_grad: case OP_relu_grad: case OP_soft_cap_grad:
        return numel_is(V, in[1], value_numel(in[0]), "operand") && numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_cast:
        if (in[0]->dtype == out[0]->dtype) return bad(V, "casts %s to its own dtype", in[0]->name);
        return numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_segment_bounds:
        return dtype_is(V, in[0], DT_I32) && dtype_is(V, out[0], DT_I32) &&
               numel_is(V, in[0], A(segment_bounds, b) * A(segment_bounds, t), "segment ids") &&
               numel_is(V, out[0], 2 * A(segment_bounds, b) * A(segment_bounds, t), "bounds");
    case OP_rope: case OP_rope_grad:
        return numel_is(V, in[1], 2 * A(rope, b) * A(rope, t), "segment bounds") &&
               numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_causal_softmax:
        return numel_is(V, in[1], 2 * A(causal_softmax, blocks) / A(causal_softmax, heads) * A(causal_softmax, t),
                        "segment bounds") &&
               numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_silu: case OP_gelu: case OP_relu: case OP_soft_cap: case OP_tensor_enter: case OP_tensor_sum:
        return numel_is(V, out[0], value_numel(in[0]), "output");
    case OP_rmsnorm: case OP_layernorm:
        return numel_is(V, in[0], A(norm, n) * A(norm, d), "input") && numel_is(V, in[1], A(norm, d), "scale") &&
               numel_is(V, out[0], A(norm, n) * A(norm, d), "output");
    case OP_attention_scores: case OP_attention_values: case OP_flash_attention:
        return check_attention(V);
    case OP_cross_entropy:
        return numel_is(V, in[0], A(cross_entropy, n) * A(cross_entropy, vocab), "logits") &&
               dtype_is(V, in[1], DT_I32) && dtype_is(V, in[2], DT_I32) &&
               (value_numel(in[1]) >= A(cross_entropy, first) + A(cross_entropy, n) ||
                bad(V, "targets end before row %lld", (long long)(A(cross_entropy, first) + A(cross_entropy, n))));
    case OP_rows: case OP_rows_grad: {
        const Value *whole = o->kind == OP_rows ? in[0] : out[0], *part = o->kind == OP_rows ? out[0] : in[0];
        return numel_is(V, whole, A(rows, rows) * A(rows, width), "whole") &&
               numel_is(V, part, A(rows, n) * A(rows, width), "rows") &&
               (A(rows, first) + A(rows, n) <= A(rows, rows) || bad(V, "rows past the end"));
    }
    case OP_cross_entropy_grad:
        return numel_is(V, out[0], A(cross_entropy, n) * A(cross_entropy, vocab), "output") &&
               numel_is(V, in[3], 1, "loss gradient");
    case OP_topk_route:
        return numel_is(V, in[0], A(topk_route, n) * A(topk_route, experts), "logits") &&
               numel_is(V, out[0], A(topk_route, n) * A(topk_route, k), "weights") &&
               numel_is(V, out[1], A(topk_route, n) * A(topk_route, k), "experts") && dtype_is(V, out[1], DT_I32) &&
               (A(topk_route, k) <= A(topk_route, experts) ||
                bad(V, "k %lld > %lld experts", (long long)A(topk_route, k), (long long)A(topk_route, experts)));
    case OP_topk_route_grad:
        return numel_is(V, out[0], A(topk_route_grad, n) * A(topk_route_grad, experts), "logits gradient") &&
               numel_is(V, in[2], A(topk_route_grad, n) * A(topk_route_grad, k), "experts");
    case OP_expert_sort:
        return numel_is(V, in[0], A(expert_sort, n) * A(expert_sort, k), "experts") &&
               numel_is(V, out[0], A(expert_sort, n) * A(expert_sort, k), "order") &&
               numel_is(V, out[1], A(expert_sort, experts) + 1, "offsets") && dtype_is(V, out[0], DT_I32) &&
               dtype_is(V, out[1], DT_I32);
    case OP_gather_rows: case OP_gather_rows_grad: {
        const Value *tokens = o->kind == OP_gather_rows ? in[0] : out[0], *rows = o->kind == OP_gather_rows ? out[0] : in[0];
        return numel_is(V, tokens, A(gather_rows, n) * A(gather_rows, d), "tokens") &&
               numel_is(V, rows, A(gather_rows, n) * A(gather_rows, k) * A(gather_rows, d), "rows") &&
               numel_is(V, in[1], A(gather_rows, n) * A(gather_rows, k), "order");
    }
    case OP_grouped_matmul:
        return numel_is(V, in[0], A(grouped_matmul, m) * A(grouped_matmul, k), "rows") &&
               numel_is(V, in[1], A(grouped_matmul, local) * A(grouped_matmul, k) * A(grouped_matmul, n), "weights") &&
               numel_is(V, in[2], A(grouped_matmul, experts) + 1, "offsets") &&
               numel_is(V, out[0], A(grouped_matmul, m) * A(grouped_matmul, n), "output") &&
               ((A(grouped_matmul, local) > 0 && A(grouped_matmul, experts) % A(grouped_matmul, local) == 0) ||
                bad(V, "%lld local experts of %lld", (long long)A(grouped_matmul, local),
                    (long long)A(grouped_matmul, experts)));
    case OP_grouped_matmul_wgrad:
        return numel_is(V, in[0], A(grouped_matmul, m) * A(grouped_matmul, k), "rows") &&
               numel_is(V, in[1], A(grouped_matmul, m) * A(grouped_matmul, n), "output gradient") &&
               numel_is(V, out[0], A(grouped_matmul, local) * A(grouped_matmul, k) * A(grouped_matmul, n),
                        "weights gradient");
    case OP_expert_counts:
        return numel_is(V, in[0], A(expert_counts, experts) + 1, "offsets") &&
               numel_is(V, out[0], A(expert_counts, experts) + 1, "received offsets");
    case OP_all_to_all:
        return numel_is(V, in[0], A(all_to_all, rows_in) * A(all_to_all, d), "rows") &&
               numel_is(V, out[0], A(all_to_all, rows_out) * A(all_to_all, d), "output") &&
               numel_is(V, in[1], A(all_to_all, experts) + 1, "offsets") &&
               numel_is(V, in[2], A(all_to_all, experts) + 1, "received offsets") &&
               (in[0]->dtype == out[0]->dtype ||
                bad(V, "moves %s rows into %s", dtype_name(in[0]->dtype), dtype_name(out[0]->dtype)));
    case OP_expert_combine:
        return numel_is(V, in[0], A(expert_combine, n) * A(expert_combine, k) * A(expert_combine, d), "rows") &&
               numel_is(V, in[2], A(expert_combine, n) * A(expert_combine, k), "weights") &&
               numel_is(V, out[0], A(expert_combine, n) * A(expert_combine, d), "output");
    case OP_expert_capacity: {
        int64_t choices = A(expert_capacity, sequences) * A(expert_capacity, t) * A(expert_capacity, k);
        return numel_is(V, in[0], choices, "experts") && numel_is(V, out[0], choices, "keep");
    }
    case OP_moe_lb_loss: case OP_moe_lb_loss_grad: {
        const Value *logits = o->kind == OP_moe_lb_loss ? in[0] : out[0];
        return numel_is(V, logits, A(moe_lb_loss, sequences) * A(moe_lb_loss, t) * A(moe_lb_loss, experts), "logits") &&
               numel_is(V, in[1], A(moe_lb_loss, sequences) * A(moe_lb_loss, t) * A(moe_lb_loss, k), "experts");
    }
    case OP_expert_combine_grad:
        return numel_is(V, in[0], A(expert_combine, n) * A(expert_combine, d), "output gradient") &&
               numel_is(V, out[0], A(expert_combine, n) * A(expert_combine, k) * A(expert_combine, d), "rows") &&
               numel_is(V, out[1], A(expert_combine, n) * A(expert_combine, k), "weights");
    case OP_all_gather:
        return numel_is(V, in[0], (int64_t)mtx_shard_chunk((size_t)A(shards, n), (int)A(shards, shards)), "chunk") &&
               numel_is(V, out[0], A(shards, n), "output");
    case OP_reduce_scatter:
        return numel_is(V, in[0], A(shards, n), "input") &&
               numel_is(V, out[0], (int64_t)mtx_shard_chunk((size_t)A(shards, n), (int)A(shards, shards)), "chunk");
    case OP_kv_cache_write:
        return numel_is(V, in[0], A(kv_cache_write, b) * A(kv_cache_write, tmax) * A(kv_cache_write, width), "cache") &&
               numel_is(V, in[1], A(kv_cache_write, b) * A(kv_cache_write, n) * A(kv_cache_write, width), "input");
    case OP_cached_attention: {
        int64_t b = A(cached_attention, b), dh = A(cached_attention, dh);
        int64_t cache = b * A(cached_attention, tmax) * A(cached_attention, hkv) * dh;
        return numel_is(V, in[0], b * A(cached_attention, n) * A(cached_attention, hq) * dh, "queries") &&
               numel_is(V, in[1], cache, "key cache") && numel_is(V, in[2], cache, "value cache") &&
               numel_is(V, out[0], value_numel(in[0]), "output");
    }
    case OP_adamw:
        return numel_is(V, in[1], value_numel(in[0]), "gradient") && numel_is(V, in[2], value_numel(in[0]), "mu") &&
               numel_is(V, in[3], value_numel(in[0]), "nu");
    case OP_position_add: case OP_fill: case OP_dropout: case OP_rope_at: case OP_position_add_at:
    case OP_embed_grad: case OP_position_add_grad: case OP_bias_grad: case OP_dropout_grad: case OP_rmsnorm_grad:
    case OP_layernorm_grad: case OP_attention_scores_grad: case OP_causal_softmax_grad:
    case OP_attention_values_grad: case OP_flash_attention_grad: case OP_global_norm: case OP_learning_rate:
    case OP_clip_scale: case OP_sgd: case OP_muon: case OP_step_increment: case OP_zero: case OP_accumulate:
    case OP_reciprocal: case OP_all_reduce_sum: case NUM_OPS:
        return true;
    }
    fatal("ir_verify: no op kind %d", (int)o->kind);
}

/* Token ids, targets and counters: the integer operands of the ops that take them. */
static bool integer_operand(const Op *o, const Value *v)
{
    switch (o->kind) {
    case OP_embed: case OP_embed_grad: case OP_cross_entropy: case OP_cross_entropy_grad: return v->dtype == DT_I32;
    case OP_learning_rate: case OP_step_increment: return v->dtype == DT_I64;
    case OP_rope_at: case OP_position_add_at: case OP_kv_cache_write: case OP_cached_attention:
        return v->dtype == DT_I32;   /* the position */
    case OP_segment_bounds: case OP_position_add: case OP_position_add_grad: case OP_rope: case OP_rope_grad:
    case OP_causal_softmax: case OP_flash_attention: case OP_flash_attention_grad:
        return v->dtype == DT_I32;   /* packed rows' segment ids and bounds */
    case OP_topk_route: case OP_topk_route_grad: case OP_expert_sort: case OP_gather_rows: case OP_gather_rows_grad:
    case OP_grouped_matmul: case OP_grouped_matmul_wgrad: case OP_expert_combine: case OP_expert_combine_grad:
    case OP_expert_capacity: case OP_moe_lb_loss: case OP_moe_lb_loss_grad: case OP_expert_counts: case OP_all_to_all:
        return v->dtype == DT_I32;   /* experts chosen, their sorted order and offsets */
    case OP_matmul: case OP_bias_add: case OP_add: case OP_mul: case OP_silu: case OP_gelu:
    case OP_relu: case OP_soft_cap: case OP_fill: case OP_cast: case OP_dropout: case OP_rmsnorm: case OP_layernorm:
    case OP_attention_scores: case OP_attention_values:
    case OP_rows: case OP_bias_grad: case OP_silu_grad:
    case OP_gelu_grad: case OP_relu_grad: case OP_soft_cap_grad: case OP_dropout_grad: case OP_rmsnorm_grad:
    case OP_layernorm_grad: case OP_attention_scores_grad: case OP_causal_softmax_grad:
    case OP_attention_values_grad: case OP_rows_grad: case OP_global_norm:
    case OP_clip_scale: case OP_adamw: case OP_sgd: case OP_muon: case OP_zero: case OP_accumulate:
    case OP_reciprocal: case OP_all_reduce_sum: case OP_all_gather: case OP_reduce_scatter: case OP_tensor_enter:
    case OP_tensor_sum: case NUM_OPS:
        return false;
    }
    fatal("ir_verify: no op kind %d", (int)o->kind);
}

static bool check_dtypes(Verifier *V, bool legalized)
{
    const Op *o = V->op;
    for (int i = 0; i < o->nin + o->nout; i++) {
        const Value *v = i < o->nin ? o->in[i] : o->out[i - o->nin];
        if (integer_operand(o, v)) continue;
        if (!dtype_is_float(v->dtype)) return bad(V, "%s is %s, expected a float dtype", v->name, dtype_name(v->dtype));
        /* after legalize, a kernel's bf16 slots hold one dtype (that of the first,
         * input 0), and its other float operands are f32 */
        if (!legalized || op_info[o->kind].cls != OC_KERNEL) continue;
        bool slot = bf16_slot(o->kind, o->nin, i);
        DType want = slot ? o->in[0]->dtype : DT_F32;
        if (v->dtype != want)
            return bad(V, "%s is %s, but this kernel takes %s there", v->name, dtype_name(v->dtype), dtype_name(want));
    }
    return true;
}

static bool check_op(Verifier *V, bool *defined, const int *def_func, int func_id, bool legalized)
{
    const Op *o = V->op;
    const OpInfo *info = &op_info[o->kind];
    if ((info->nin >= 0 && o->nin != info->nin) || o->nout != info->nout)
        return bad(V, "has %d inputs and %d outputs, expected %d and %d", o->nin, o->nout, info->nin, info->nout);
    for (int i = 0; i < o->nin; i++) {
        const Value *v = o->in[i];
        if (!v) return bad(V, "input %d is missing", i);
        if (v->kind != V_TEMP) continue;
        if (def_func[v->id] != func_id) return bad(V, "uses %s, which is defined in another function", v->name);
        if (!defined[v->id]) return bad(V, "uses %s before it is defined", v->name);
    }
    for (int i = 0; i < o->nout; i++) {
        const Value *v = o->out[i];
        if (v->kind != V_TEMP) return bad(V, "defines state or input %s (state changes only by update ops)", v->name);
        if (defined[v->id]) return bad(V, "defines %s a second time", v->name);
        if (v->def != o) return bad(V, "output %s does not point back at its op", v->name);
        defined[v->id] = true;
    }
    return check_dtypes(V, legalized) && check_shapes(V);
}

bool ir_verify(const Program *p, char *err, size_t errlen)
{
    bool *defined = xcalloc((size_t)p->nvalues + 1, sizeof(bool));
    int *def_func = xcalloc((size_t)p->nvalues + 1, sizeof(int));
    Func *const *funcs = p->funcs;
    bool ok = true;
    /* Which function defines each temporary. */
    for (int fi = 0; fi < NUM_FUNCS; fi++)
        for (int i = 0; i < funcs[fi]->nops; i++)
            for (int j = 0; j < funcs[fi]->ops[i]->nout; j++)
                def_func[funcs[fi]->ops[i]->out[j]->id] = fi + 1;
    for (int fi = 0; fi < NUM_FUNCS && ok; fi++) {
        Verifier V = {err, errlen, funcs[fi], NULL, 0};
        for (int i = 0; i < funcs[fi]->nops && ok; i++) {
            V.op = funcs[fi]->ops[i];
            V.index = i;
            ok = check_op(&V, defined, def_func, fi + 1, p->legalized);
        }
    }
    for (int i = 0; i < p->nvalues && ok; i++) {
        const Value *v = p->values[i];
        if (v->kind == V_TEMP && !v->def) {
            snprintf(err, errlen, "IR verifier: temporary %s is never defined", v->name);
            ok = false;
        }
    }
    free(defined);
    free(def_func);
    return ok;
}
