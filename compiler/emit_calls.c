/* C backend, calls into libmtxrt: GEMMs (BLIS, or a oneDNN plan per
 * distinct bf16 shape), each kernel op's runtime function, the optimizer
 * updates. One case per op; bf16 operands take the kernel's _bf16 form. */
#include "emit.h"

#include <string.h>

/* A per-row input (targets, segmentation) from row `first` on. */
static const char *rows_at(Emitter *e, const Value *v, int64_t first)
{
    return first ? pool_fmt(e->p->pool, "%s + %lld", V(e, v), (long long)first) : V(e, v);
}

/* A bf16 GEMM's plan: one per distinct op kind, shape, strides, output
 * dtype and alpha (the grouped GEMMs' plans are ragged: their row count is
 * each expert's, at most the op's). */
static bool same_gemm(const Op *x, const Op *y)
{
    return x->kind == y->kind && !memcmp(x->ia, y->ia, sizeof x->ia) && !memcmp(x->fa, y->fa, sizeof x->fa) &&
           x->out[0]->dtype == y->out[0]->dtype;
}

static bool is_bf16_gemm(const Op *op)
{
    return (op->kind == OP_matmul || op->kind == OP_grouped_matmul || op->kind == OP_grouped_matmul_wgrad) &&
           op->in[0]->dtype == DT_BF16;
}

static int find_plan(const Emitter *e, const Op *op)   /* -1: none yet */
{
    for (int i = 0; i < e->nplans; i++)
        if (same_gemm(e->plans[i], op)) return i;
    return -1;
}

static const char *rope_variant(int64_t v)
{
    return v == MTX_ROPE_LLAMA31 ? "MTX_ROPE_LLAMA31" : v == MTX_ROPE_PAIRS ? "MTX_ROPE_PAIRS" : "MTX_ROPE_HALVES";
}

static int gemm_plan(Emitter *e, const Op *op)
{
    int i = find_plan(e, op);
    if (i < 0) fatal("emit: no GEMM plan for a %s matmul", op->out[0]->name);
    return i;
}

void collect_gemm_plans(Emitter *e)
{
    for (int fi = 0; fi < NUM_FUNCS; fi++)
        for (int i = 0; i < e->p->funcs[fi]->nops; i++) {
            const Op *op = e->p->funcs[fi]->ops[i];
            if (!is_bf16_gemm(op) || find_plan(e, op) >= 0) continue;
            e->plans = xrealloc(e->plans, sizeof(Op *) * (size_t)(e->nplans + 1));
            e->plans[e->nplans++] = op;
        }
}

/* The grouped GEMMs' plans: ragged in M (an expert's rows) or K (its rows' gradient). */
static void emit_ragged_plan(Emitter *e, int i, const Op *op)
{
    long long m = IA(op, grouped_matmul, m), n = IA(op, grouped_matmul, n), k = IA(op, grouped_matmul, k);
    if (op->kind == OP_grouped_matmul) {   /* an expert's rows [rows, k] times w[e] (or w[e]^T) */
        bool tb = IA(op, grouped_matmul, tb);
        emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new_ragged(MTX_RAGGED_M, %lld, %lld, %lld, %lld, 1, %lld, %lld, %lld, 0, "
               "0);  /* an expert's rows x w%s -> bf16, as %s */\n",
            i, m, n, k, k, tb ? 1 : n, tb ? k : 1, n, tb ? "^T" : "", op->out[0]->name);
        return;
    }
    if (op->kind == OP_grouped_matmul_wgrad) {   /* dw[e] [k, n] += rows^T [k, rows] dys [rows, n] */
        emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new_ragged(MTX_RAGGED_K, %lld, %lld, %lld, 1, %lld, %lld, 1, %lld, 1, "
               "1);  /* an expert's rows^T x dys, added to f32, as %s */\n",
            i, k, n, m, k, n, n, op->out[0]->name);
    }
}

/* One bf16 GEMM plan made in mtx_state_new: op(A) is [m, k], op(B) [k, n],
 * C [m, n] row-major; A and B by their strides as stored. */
void emit_gemm_plan(Emitter *e, int i)
{
    const Op *op = e->plans[i];
    if (op->kind != OP_matmul) {
        emit_ragged_plan(e, i, op);
        return;
    }
    long long m = IA(op, matmul, m), n = IA(op, matmul, n), k = IA(op, matmul, k);
    bool ta = IA(op, matmul, ta), tb = IA(op, matmul, tb), c_f32 = op->out[0]->dtype == DT_F32;
    emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new(%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %d, %s);"
           "  /* %s%s -> %s, as %s */\n",
        i, m, n, k, ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1, n, c_f32, flit(e->p->pool, FA(op, matmul, alpha)),
        ta ? "A^T" : "A", tb ? " B^T" : " B", c_f32 ? "f32" : "bf16", op->out[0]->name);
}

void emit_matmul(Emitter *e, const Op *op)
{
    const Value *a = op->in[0], *b = op->in[1], *c = op->out[0];
    if (is_bf16_gemm(op)) {
        emitf(e, "    mtx_gemm_bf16(s->gemm[%d], %s, %s, %s);\n", gemm_plan(e, op), V(e, a), V(e, b), V(e, c));
        return;
    }
    long long m = IA(op, matmul, m), n = IA(op, matmul, n), k = IA(op, matmul, k);
    bool ta = IA(op, matmul, ta), tb = IA(op, matmul, tb);
    emitf(e, "    mtx_sgemm(0, 0, %lld, %lld, %lld, %s, %s, %lld, %lld, %s, %lld, %lld, 0.0f, %s, %lld, 1);\n",
        m, n, k, flit(e->p->pool, FA(op, matmul, alpha)), V(e, a), ta ? 1 : k, ta ? m : 1, V(e, b), tb ? 1 : n, tb ? k : 1,
        V(e, c), n);
}

/* An attribute of this op, as emitf's %lld takes it, or as a C float literal. */
#define AI(set, name) ((long long)IA(op, set, name))
#define AF(set, name) flit(pool, FA(op, set, name))

void emit_kernel(Emitter *e, const Op *op)
{
    Pool *pool = e->p->pool;
    const char *sfx = op->nin && op->in[0]->dtype == DT_BF16 ? "_bf16" : "";   /* the bf16 forms (legalize.c's bf16_kernels) */
    Value *const *in = op->in;
    Value *const *o = op->out;
    switch (op->kind) {
    case OP_embed:
        emitf(e, "    mtx_embed_forward(%s, %s, %s, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]), AI(embed, n),
            AI(embed, d));
        break;
    case OP_segment_bounds:
        emitf(e, "    mtx_segment_bounds(%s, %s, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), AI(segment_bounds, b),
            AI(segment_bounds, t));
        break;
    case OP_position_add:
        emitf(e, "    mtx_position_add_forward(%s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), AI(position_add, b), AI(position_add, t), AI(position_add, d));
        break;
    case OP_rmsnorm:
        emitf(e, "    mtx_rmsnorm_forward%s(%s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, in[0]), V(e, in[1]),
            AI(norm, n), AI(norm, d), AF(norm, eps));
        break;
    case OP_layernorm:
        emitf(e, "    mtx_layernorm_forward%s(%s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), AI(norm, n), AI(norm, d), AF(norm, eps));
        break;
    case OP_rope:
    case OP_rope_grad:
        emitf(e, "    mtx_rope_apply%s(%s, %s, %s, %lld, %lld, %lld, %lld, %s, %s, %s, %d);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), AI(rope, b), AI(rope, t), AI(rope, heads), AI(rope, dh),
            AF(rope, min_timescale), AF(rope, max_timescale), rope_variant(IA(op, rope, variant)),
            op->kind == OP_rope_grad);
        break;
    case OP_rope_at:
        emitf(e, "    mtx_rope_apply_at%s(%s, %s, %s[0], %lld, %lld, %lld, %lld, %s, %s, %s);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), AI(rope, b), AI(rope, t), AI(rope, heads), AI(rope, dh),
            AF(rope, min_timescale), AF(rope, max_timescale), rope_variant(IA(op, rope, variant)));
        break;
    case OP_position_add_at:
        emitf(e, "    mtx_position_add_at(%s, %s, %s, %s[0], %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), AI(position_add, b), AI(position_add, t), AI(position_add, d),
            AI(position_add, rows));
        break;
    case OP_kv_cache_write:
        emitf(e, "    mtx_kv_cache_write(%s, %s, %s[0], %lld, %lld, %lld, %lld, %d);\n", V(e, in[0]), V(e, in[1]),
            V(e, in[2]), AI(kv_cache_write, b), AI(kv_cache_write, n), AI(kv_cache_write, width),
            AI(kv_cache_write, tmax), dtype_bytes(in[0]->dtype));
        break;
    case OP_cached_attention:
        emitf(e, "    mtx_cached_attention%s(%s, %s, %s, %s, %s[0], %lld, %lld, %lld, %lld, %lld, %lld, %lld, %s, %s);\n",
            sfx, V(e, o[0]), V(e, in[0]), V(e, in[1]), V(e, in[2]), V(e, in[3]), AI(cached_attention, b),
            AI(cached_attention, n), AI(cached_attention, hq), AI(cached_attention, hkv), AI(cached_attention, dh),
            AI(cached_attention, window), AI(cached_attention, tmax), AF(cached_attention, scale),
            AF(cached_attention, cap));
        break;
    case OP_attention_scores:
        emitf(e, "    mtx_attention_scores%s(%s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), AI(attention, b), AI(attention, t), AI(attention, hq),
            AI(attention, hkv), AI(attention, dh), AF(attention, scale));
        break;
    case OP_causal_softmax:
        emitf(e, "    mtx_causal_softmax_forward%s(%s, %s, %s, %lld, %lld, %lld, %lld);\n", sfx, V(e, o[0]), V(e, in[0]),
            V(e, in[1]), AI(causal_softmax, blocks), AI(causal_softmax, heads), AI(causal_softmax, t),
            AI(causal_softmax, window));
        break;
    case OP_attention_values:
        emitf(e, "    mtx_attention_values%s(%s, %s, %s, %lld, %lld, %lld, %lld, %lld);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), AI(attention, b), AI(attention, t), AI(attention, hq),
            AI(attention, hkv), AI(attention, dh));
        break;
    case OP_flash_attention:
        emitf(e, "    mtx_flash_attention%s(%s, %s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %s, %s);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), V(e, in[3]), AI(attention, b),
            AI(attention, t), AI(attention, hq), AI(attention, hkv), AI(attention, dh),
            AI(attention, window), AF(attention, scale), AF(attention, cap));
        break;
    case OP_cross_entropy:
        emitf(e, "    %s[0] = mtx_cross_entropy_forward%s(%s, %s, %s, %lld, %lld, %s, %lld);\n", V(e, o[0]), sfx,
            V(e, in[0]), rows_at(e, in[1], IA(op, cross_entropy, first)),
            rows_at(e, in[2], IA(op, cross_entropy, first)), AI(cross_entropy, n), AI(cross_entropy, vocab), V(e, o[1]),
            AI(cross_entropy, sum));
        break;
    case OP_topk_route:
        emitf(e, "    mtx_topk_route(%s, %s, %s, %lld, %lld, %lld, %d, %d);\n", V(e, o[0]), V(e, o[1]), V(e, in[0]),
            AI(topk_route, n), AI(topk_route, experts), AI(topk_route, k), (int)IA(op, topk_route, normalize),
            (int)IA(op, topk_route, bf16));
        break;
    case OP_topk_route_grad:
        emitf(e, "    mtx_topk_route_grad(%s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), AI(topk_route_grad, n), AI(topk_route_grad, experts), AI(topk_route_grad, k));
        break;
    case OP_expert_sort:
        emitf(e, "    mtx_expert_sort(%s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, o[1]), V(e, in[0]),
            AI(expert_sort, n), AI(expert_sort, experts), AI(expert_sort, k));
        break;
    case OP_gather_rows:
    case OP_gather_rows_grad:
        emitf(e, "    mtx_gather_rows%s(%s, %s, %s, %lld, %lld, %lld);\n", op->kind == OP_gather_rows ? "" : "_grad",
            V(e, o[0]), V(e, in[0]), V(e, in[1]), AI(gather_rows, n), AI(gather_rows, d), AI(gather_rows, k));
        break;
    case OP_grouped_matmul:
    case OP_grouped_matmul_wgrad: {   /* bf16: on a ragged oneDNN plan, which knows tb */
        bool bf16 = is_bf16_gemm(op), tb = op->kind == OP_grouped_matmul && !bf16;
        emitf(e, "    mtx_%s%s(%s%s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld%s);\n", op_info[op->kind].name,
            bf16 ? "_bf16" : "", bf16 ? pool_fmt(pool, "s->gemm[%d], ", gemm_plan(e, op)) : "", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), AI(grouped_matmul, m), AI(grouped_matmul, n), AI(grouped_matmul, k),
            AI(grouped_matmul, experts), AI(grouped_matmul, local),
            tb ? pool_fmt(pool, ", %lld", AI(grouped_matmul, tb)) : "");
        break;
    }
    case OP_expert_counts:
        emitf(e, "    mtx_expert_counts(%s, %s, %lld);\n", V(e, o[0]), V(e, in[0]), AI(expert_counts, experts));
        break;
    case OP_all_to_all:
        emitf(e, "    mtx_all_to_all(%s, %s, %s, %s, %lld, %lldu, %lld, %d);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), AI(all_to_all, experts), (long long)(IA(op, all_to_all, d) * dtype_bytes(in[0]->dtype)),
            AI(all_to_all, rows_out), (int)IA(op, all_to_all, back));
        break;
    case OP_expert_combine:
        emitf(e, "    mtx_expert_combine(%s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), AI(expert_combine, n), AI(expert_combine, d), AI(expert_combine, k));
        break;
    case OP_expert_combine_grad:
        emitf(e, "    mtx_expert_combine_grad(%s, %s, %s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, o[1]),
            V(e, in[0]), V(e, in[1]), V(e, in[2]), V(e, in[3]), AI(expert_combine, n), AI(expert_combine, d),
            AI(expert_combine, k));
        break;
    case OP_expert_capacity:
        emitf(e, "    mtx_expert_capacity(%s, %s, %lld, %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            AI(expert_capacity, sequences), AI(expert_capacity, t), AI(expert_capacity, experts),
            AI(expert_capacity, k), AI(expert_capacity, capacity));
        break;
    case OP_moe_lb_loss:
        emitf(e, "    mtx_moe_lb_loss(%s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), AI(moe_lb_loss, sequences), AI(moe_lb_loss, t), AI(moe_lb_loss, experts), AI(moe_lb_loss, k),
            AI(moe_lb_loss, bf16), AF(moe_lb_loss, scale));
        break;
    case OP_moe_lb_loss_grad:
        emitf(e, "    mtx_moe_lb_loss_grad(%s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", V(e, o[0]),
            V(e, in[0]), V(e, in[1]), V(e, in[2]), AI(moe_lb_loss, sequences), AI(moe_lb_loss, t),
            AI(moe_lb_loss, experts), AI(moe_lb_loss, k), AI(moe_lb_loss, bf16), AF(moe_lb_loss, scale));
        break;
    case OP_rows:
        emitf(e, "    mtx_copy_rows(%s, %s, %lld, %lld, %lld, %d);\n", V(e, o[0]), V(e, in[0]), AI(rows, first),
            AI(rows, n), AI(rows, width), dtype_bytes(in[0]->dtype));
        break;
    case OP_rows_grad:
        emitf(e, "    mtx_copy_rows_back(%s, %s, %lld, %lld, %lld, %lld, %d);\n", V(e, o[0]), V(e, in[0]),
            AI(rows, first), AI(rows, n), AI(rows, width), AI(rows, rows), dtype_bytes(in[0]->dtype));
        break;
    case OP_embed_grad:
        emitf(e, "    mtx_embed_backward(%s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            AI(embed_grad, n), AI(embed_grad, vocab), AI(embed_grad, d));
        break;
    case OP_position_add_grad:
        emitf(e, "    mtx_position_add_backward(%s, %s, %s, %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), AI(position_add_grad, b), AI(position_add_grad, t), AI(position_add_grad, rows),
            AI(position_add_grad, d));
        break;
    case OP_bias_grad:
        emitf(e, "    mtx_bias_backward(%s, %s, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), AI(bias_grad, n),
            AI(bias_grad, d));
        break;
    case OP_rmsnorm_grad:
        emitf(e, "    mtx_rmsnorm_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, o[1]),
            V(e, in[0]), V(e, in[1]), V(e, in[2]), AI(norm, n), AI(norm, d), AF(norm, eps));
        break;
    case OP_layernorm_grad:
        emitf(e, "    mtx_layernorm_backward%s(%s, %s, %s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, o[1]),
            V(e, o[2]), V(e, in[0]), V(e, in[1]), V(e, in[2]), AI(norm, n), AI(norm, d), AF(norm, eps));
        break;
    case OP_attention_scores_grad:
        emitf(e, "    mtx_attention_scores_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), AI(attention, b),
            AI(attention, t), AI(attention, hq), AI(attention, hkv), AI(attention, dh),
            AF(attention, scale));
        break;
    case OP_causal_softmax_grad:
        emitf(e, "    mtx_causal_softmax_backward%s(%s, %s, %s, %lld, %lld);\n", sfx, V(e, o[0]), V(e, in[0]),
            V(e, in[1]), AI(causal_softmax, blocks), AI(causal_softmax, t));
        break;
    case OP_attention_values_grad:
        emitf(e, "    mtx_attention_values_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), AI(attention, b),
            AI(attention, t), AI(attention, hq), AI(attention, hkv), AI(attention, dh));
        break;
    case OP_flash_attention_grad:
        emitf(e, "    mtx_flash_attention_backward%s(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, "
               "%lld, %lld, %s, %s);\n", sfx, V(e, o[0]), V(e, o[1]), V(e, o[2]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), V(e, in[3]), V(e, in[4]), V(e, in[5]), V(e, in[6]), AI(attention, b), AI(attention, t),
            AI(attention, hq), AI(attention, hkv), AI(attention, dh), AI(attention, window),
            AF(attention, scale), AF(attention, cap));
        break;
    case OP_cross_entropy_grad:
        emitf(e, "    mtx_cross_entropy_backward%s(%s, %s, %s, %s, %lld, %lld, %s, %lld);\n", sfx, V(e, o[0]),
            V(e, in[0]), rows_at(e, in[1], IA(op, cross_entropy, first)),
            rows_at(e, in[2], IA(op, cross_entropy, first)), AI(cross_entropy, n), AI(cross_entropy, vocab),
            V(e, in[3]), AI(cross_entropy, sum));
        break;
    case OP_global_norm: {   /* the first `split` gradients are split over axis `axis`: each device has its share */
        int64_t split = IA(op, global_norm, split_inputs), over = IA(op, global_norm, sum_over_axes);
        emitf(e, "    double sum_sq = 0;\n");
        if (split) {
            emitf(e, "    double split_sq = 0;\n");
            for (int i = 0; i < split; i++)
                emitf(e, "    split_sq += mtx_sum_of_squares(%s, %lld);\n", V(e, in[i]), (long long)value_numel(in[i]));
            emitf(e, "    mtx_all_reduce_sum_f64(&split_sq, 1, %s);\n    sum_sq = split_sq;\n",
                axes_expr(IA(op, global_norm, split_axis)));
        }
        for (int i = (int)split; i < op->nin; i++)
            emitf(e, "    sum_sq += mtx_sum_of_squares(%s, %lld);\n", V(e, in[i]), (long long)value_numel(in[i]));
        if (over)
            emitf(e, "    mtx_all_reduce_sum_f64(&sum_sq, 1, %s);  /* each device holds a chunk of every gradient */\n",
                axes_expr(over));
        emitf(e, "    %s[0] = (float)sqrt(sum_sq);\n", V(e, o[0]));
        break;
    }
    case OP_clip_scale:
        emitf(e, "    %s[0] = %s[0] < %s ? 1.0f : %s / %s[0];\n", V(e, o[0]), V(e, in[0]), AF(clip_scale, threshold),
            AF(clip_scale, threshold), V(e, in[0]));
        break;
    case OP_learning_rate:
        if (IA(op, learning_rate, schedule) == 0)
            emitf(e, "    %s[0] = mtx_cosine_schedule(%s[0], %s[0], %s, %s, %s);\n", V(e, o[0]), V(e, in[0]),
                V(e, in[1]), AF(learning_rate, peak), AF(learning_rate, warmup_fraction),
                AF(learning_rate, final_fraction));
        else
            emitf(e, "    %s[0] = mtx_wsd_schedule(%s[0], %s[0], %s, %s, %s, %s, %d);\n", V(e, o[0]), V(e, in[0]),
                V(e, in[1]), AF(learning_rate, peak), AF(learning_rate, warmup_fraction),
                AF(learning_rate, decay_fraction), AF(learning_rate, final_fraction),
                IA(op, learning_rate, schedule) == 2);
        break;
    case OP_muon:
        emitf(e, "    mtx_muon_update(%s, %s, %s, %lld, %lld, %s[0], %s[0], %s, %s, %s, t, %s);\n", V(e, in[0]),
            V(e, in[2]), V(e, in[1]), AI(muon, rows), AI(muon, cols), V(e, in[4]), V(e, in[3]), AF(muon, beta),
            AF(muon, eps), AF(muon, weight_decay), V(e, o[0]));
        break;
    case OP_sgd:
        emitf(e, "    mtx_sgd_update(%s, %s, %lld, %s[0], %s[0]);\n", V(e, in[0]), V(e, in[1]),
            (long long)value_numel(in[0]), V(e, in[3]), V(e, in[2]));
        break;
    case OP_step_increment:
        emitf(e, "    %s[0] += 1;\n", V(e, in[0]));
        break;
    case OP_all_reduce_sum:
        for (int i = 0; i < op->nin; i++)
            emitf(e, "    mtx_all_reduce_sum(%s, %lld, %s);\n", V(e, in[i]), (long long)value_numel(in[i]),
                axes_expr(IA(op, all_reduce_sum, axes)));
        break;
    case OP_all_gather:
        emitf(e, "    mtx_all_gather%s(%s, %s, %lld);\n", sfx, V(e, o[0]), V(e, in[0]), AI(shards, n));
        break;
    case OP_tensor_sum:
        emitf(e, "    memcpy(%s, %s, %lldu);\n    mtx_all_reduce_sum(%s, %lld, MTX_AXIS_TENSOR);\n", V(e, o[0]),
            V(e, in[0]), (long long)value_bytes(in[0]), V(e, o[0]), (long long)value_numel(in[0]));
        break;
    case OP_reduce_scatter:
        emitf(e, "    mtx_reduce_scatter(%s, %s, %lld);\n", V(e, o[0]), V(e, in[0]), AI(shards, n));
        break;
    case OP_zero:
        emitf(e, "    memset(%s, 0, %lldu);\n", V(e, in[0]), (long long)value_bytes(in[0]));
        break;
    case OP_accumulate:
        if (op->nin == 3)
            emitf(e, "    for (size_t i = 0; i < %lld; i++) %s[i] += %s[i] * %s[0];\n", (long long)value_numel(in[0]),
                V(e, in[0]), V(e, in[1]), V(e, in[2]));
        else
            emitf(e, "    for (size_t i = 0; i < %lld; i++) %s[i] += %s[i];\n", (long long)value_numel(in[0]),
                V(e, in[0]), V(e, in[1]));
        break;
    case OP_matmul: case OP_bias_add: case OP_add: case OP_mul: case OP_silu: case OP_gelu: case OP_relu:
    case OP_soft_cap: case OP_fill: case OP_cast: case OP_dropout: case OP_silu_grad: case OP_gelu_grad:
    case OP_relu_grad: case OP_soft_cap_grad: case OP_dropout_grad: case OP_adamw: case OP_reciprocal:
    case OP_tensor_enter: case NUM_OPS:
        fatal("emit: no C lowering for op %s", op_info[op->kind].name);
    }
}

void emit_adamw(Emitter *e, const Op *op, bool first)
{
    Pool *pool = e->p->pool;
    bool pax = IA(op, adamw, pax), nesterov = IA(op, adamw, nesterov);
    const char *b1 = flit(pool, FA(op, adamw, b1)), *b2 = flit(pool, FA(op, adamw, b2));
    const char *eps = flit(pool, FA(op, adamw, eps)), *eps_root = flit(pool, FA(op, adamw, eps_root));
    const char *decay = flit(pool, FA(op, adamw, weight_decay));
    Value *const *in = op->in;
    if (nesterov) {
        emitf(e, "    mtx_adamw_nesterov_update(%s, %s, %s, %s, %lld, %s[0], %s[0], %s, %s, %s, %s, %s, t);\n",
            V(e, in[0]), V(e, in[2]), V(e, in[3]), V(e, in[1]), (long long)value_numel(in[0]), V(e, in[5]),
            V(e, in[4]), b1, b2, eps, eps_root, decay);
        return;
    }
    if (first) {
        if (pax)
            emitf(e, "    float decay1 = %s * (1.0f - powf(%s, t - 1.0f)) / (1.0f - powf(%s, t));\n"
                   "    float decay2 = %s * (1.0f - powf(%s, t - 1.0f)) / (1.0f - powf(%s, t));\n",
                b1, b1, b1, b2, b2, b2);
        else
            emitf(e, "    float bias1 = 1.0f - powf(%s, t), bias2 = 1.0f - powf(%s, t);\n", b1, b2);
    }
    if (pax)
        emitf(e, "    mtx_adam_pax_update(%s, %s, %s, %s, %lld, %s[0], %s[0], decay1, decay2, %s, %s, %s);\n",
            V(e, in[0]), V(e, in[2]), V(e, in[3]), V(e, in[1]), (long long)value_numel(in[0]), V(e, in[5]),
            V(e, in[4]), eps, eps_root, decay);
    else
        emitf(e, "    mtx_adamw_update(%s, %s, %s, %s, %lld, %s[0], %s[0], %s, %s, %s, %s, %s, bias1, bias2);\n",
            V(e, in[0]), V(e, in[2]), V(e, in[3]), V(e, in[1]), (long long)value_numel(in[0]), V(e, in[5]),
            V(e, in[4]), b1, b2, eps, eps_root, decay);
}

