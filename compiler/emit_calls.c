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

/* A set of mesh axes as C: "MTX_AXIS_DATA | MTX_AXIS_EXPERT". */
const char *axes_expr(int64_t axes)
{
    static const char *const names[4] = {"MTX_AXIS_DATA", "MTX_AXIS_FSDP", "MTX_AXIS_TENSOR", "MTX_AXIS_EXPERT"};
    static char text[16][80];
    axes &= 15;
    if (!text[axes][0]) {
        size_t n = 0;
        for (int a = 0; a < 4; a++)
            if ((axes >> a) & 1) n += (size_t)snprintf(text[axes] + n, sizeof text[axes] - n, "%s%s", n ? " | " : "", names[a]);
        if (!n) snprintf(text[axes], sizeof text[axes], "0");
    }
    return text[axes];
}

/* A bf16 GEMM's plan: one per distinct op kind, shape, strides, output
 * dtype and alpha (the grouped GEMMs' plans are ragged: their row count is
 * each expert's, at most the op's). */
static bool same_gemm(const Op *x, const Op *y)
{
    return x->kind == y->kind && !memcmp(x->ia, y->ia, 6 * sizeof x->ia[0]) && x->fa[0] == y->fa[0] &&
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

/* One bf16 GEMM plan made in mtx_state_new: op(A) is [m, k], op(B) [k, n],
 * C [m, n] row-major; A and B by their strides as stored. */
void emit_gemm_plan(Emitter *e, int i)
{
    const Op *op = e->plans[i];
    long long m = op->ia[0], n = op->ia[1], k = op->ia[2];
    if (op->kind == OP_grouped_matmul) {   /* an expert's rows [rows, k] times w[e] (or w[e]^T) */
        bool tb = op->ia[5];
        emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new_ragged(MTX_RAGGED_M, %lld, %lld, %lld, %lld, 1, %lld, %lld, %lld, 0, "
               "0);  /* an expert's rows x w%s -> bf16, as %s */\n",
            i, m, n, k, k, tb ? 1 : n, tb ? k : 1, n, tb ? "^T" : "", op->out[0]->name);
        return;
    }
    if (op->kind == OP_grouped_matmul_wgrad) {   /* dw[e] [k, n] += rows^T [k, rows] dys [rows, n] */
        emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new_ragged(MTX_RAGGED_K, %lld, %lld, %lld, 1, %lld, %lld, 1, %lld, 1, "
               "1);  /* an expert's rows^T x dys, added to f32, as %s */\n",
            i, k, n, m, k, n, n, op->out[0]->name);
        return;
    }
    bool ta = op->ia[3], tb = op->ia[4], c_f32 = op->out[0]->dtype == DT_F32;
    emitf(e, "    s->gemm[%d] = mtx_gemm_plan_new(%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %d, %s);"
           "  /* %s%s -> %s, as %s */\n",
        i, m, n, k, ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1, n, c_f32, flit(e->p->pool, op->fa[0]),
        ta ? "A^T" : "A", tb ? " B^T" : " B", c_f32 ? "f32" : "bf16", op->out[0]->name);
}

void emit_matmul(Emitter *e, const Op *op)
{
    const Value *a = op->in[0], *b = op->in[1], *c = op->out[0];
    if (is_bf16_gemm(op)) {
        emitf(e, "    mtx_gemm_bf16(s->gemm[%d], %s, %s, %s);\n", gemm_plan(e, op), V(e, a), V(e, b), V(e, c));
        return;
    }
    long long m = op->ia[0], n = op->ia[1], k = op->ia[2];
    bool ta = op->ia[3], tb = op->ia[4];
    emitf(e, "    mtx_sgemm(0, 0, %lld, %lld, %lld, %s, %s, %lld, %lld, %s, %lld, %lld, 0.0f, %s, %lld, 1);\n",
        m, n, k, flit(e->p->pool, op->fa[0]), V(e, a), ta ? 1 : k, ta ? m : 1, V(e, b), tb ? 1 : n, tb ? k : 1,
        V(e, c), n);
}

void emit_kernel(Emitter *e, const Op *op)
{
    Pool *pool = e->p->pool;
    const char *sfx = op->nin && op->in[0]->dtype == DT_BF16 ? "_bf16" : "";   /* the bf16 forms (legalize.c's bf16_kernels) */
    Value *const *in = op->in;
    Value *const *o = op->out;
    const int64_t *a = op->ia;
    const double *fa = op->fa;
    switch (op->kind) {
    case OP_embed:
        emitf(e, "    mtx_embed_forward(%s, %s, %s, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            (long long)a[0], (long long)a[1]);
        break;
    case OP_position_add:
        emitf(e, "    mtx_position_add_forward(%s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_rmsnorm:
        emitf(e, "    mtx_rmsnorm_forward%s(%s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, in[0]), V(e, in[1]),
            (long long)a[0], (long long)a[1], flit(pool, fa[0]));
        break;
    case OP_layernorm:
        emitf(e, "    mtx_layernorm_forward%s(%s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1], flit(pool, fa[0]));
        break;
    case OP_rope:
    case OP_rope_grad:
        emitf(e, "    mtx_rope_apply%s(%s, %s, %lld, %lld, %lld, %lld, %s, %s, %s, %d);\n", sfx, V(e, o[0]),
            V(e, in[0]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], flit(pool, fa[0]),
            flit(pool, fa[1]), rope_variant(a[4]), op->kind == OP_rope_grad);
        break;
    case OP_rope_at:
        emitf(e, "    mtx_rope_apply_at%s(%s, %s, %s[0], %lld, %lld, %lld, %lld, %s, %s, %s);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
            flit(pool, fa[0]), flit(pool, fa[1]), rope_variant(a[4]));
        break;
    case OP_position_add_at:
        emitf(e, "    mtx_position_add_at(%s, %s, %s, %s[0], %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3]);
        break;
    case OP_kv_cache_write:
        emitf(e, "    mtx_kv_cache_write(%s, %s, %s[0], %lld, %lld, %lld, %lld, %d);\n", V(e, in[0]), V(e, in[1]),
            V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], dtype_bytes(in[0]->dtype));
        break;
    case OP_cached_attention:
        emitf(e, "    mtx_cached_attention%s(%s, %s, %s, %s, %s[0], %lld, %lld, %lld, %lld, %lld, %lld, %lld, %s, %s);\n",
            sfx, V(e, o[0]), V(e, in[0]), V(e, in[1]), V(e, in[2]), V(e, in[3]), (long long)a[0], (long long)a[1],
            (long long)a[2], (long long)a[3], (long long)a[4], (long long)a[5], (long long)a[6], flit(pool, fa[0]),
            flit(pool, fa[1]));
        break;
    case OP_attention_scores:
        emitf(e, "    mtx_attention_scores%s(%s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2],
            (long long)a[3], (long long)a[4], flit(pool, fa[0]));
        break;
    case OP_causal_softmax:
        emitf(e, "    mtx_causal_softmax_forward%s(%s, %s, %lld, %lld, %lld);\n", sfx, V(e, o[0]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_attention_values:
        emitf(e, "    mtx_attention_values%s(%s, %s, %s, %lld, %lld, %lld, %lld, %lld);\n", sfx, V(e, o[0]),
            V(e, in[0]), V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2],
            (long long)a[3], (long long)a[4]);
        break;
    case OP_flash_attention:
        emitf(e, "    mtx_flash_attention%s(%s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %s, %s);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1],
            (long long)a[2], (long long)a[3], (long long)a[4], (long long)a[5], flit(pool, fa[0]), flit(pool, fa[1]));
        break;
    case OP_cross_entropy:
        emitf(e, "    %s[0] = mtx_cross_entropy_forward%s(%s, %s, %s, %lld, %lld, %s, %lld);\n", V(e, o[0]), sfx,
            V(e, in[0]), rows_at(e, in[1], a[2]), rows_at(e, in[2], a[2]), (long long)a[0], (long long)a[1],
            V(e, o[1]), (long long)a[3]);
        break;
    case OP_topk_route:
        emitf(e, "    mtx_topk_route(%s, %s, %s, %lld, %lld, %lld, %d, %d);\n", V(e, o[0]), V(e, o[1]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2], (int)a[3], (int)a[4]);
        break;
    case OP_topk_route_grad:
        emitf(e, "    mtx_topk_route_grad(%s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_expert_sort:
        emitf(e, "    mtx_expert_sort(%s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, o[1]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_gather_rows:
    case OP_gather_rows_grad:
        emitf(e, "    mtx_gather_rows%s(%s, %s, %s, %lld, %lld, %lld);\n", op->kind == OP_gather_rows ? "" : "_grad",
            V(e, o[0]), V(e, in[0]), V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_grouped_matmul:
    case OP_grouped_matmul_wgrad: {   /* bf16: on a ragged oneDNN plan, which knows tb */
        bool bf16 = is_bf16_gemm(op), tb = op->kind == OP_grouped_matmul && !bf16;
        emitf(e, "    mtx_%s%s(%s%s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld%s);\n", op_info[op->kind].name,
            bf16 ? "_bf16" : "", bf16 ? pool_fmt(pool, "s->gemm[%d], ", gemm_plan(e, op)) : "", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
            (long long)a[4], tb ? pool_fmt(pool, ", %lld", (long long)a[5]) : "");
        break;
    }
    case OP_expert_counts:
        emitf(e, "    mtx_expert_counts(%s, %s, %lld);\n", V(e, o[0]), V(e, in[0]), (long long)a[0]);
        break;
    case OP_all_to_all:
        emitf(e, "    mtx_all_to_all(%s, %s, %s, %s, %lld, %lldu, %lld, %d);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), (long long)a[3], (long long)(a[2] * dtype_bytes(in[0]->dtype)), (long long)a[1], (int)a[4]);
        break;
    case OP_expert_combine:
        emitf(e, "    mtx_expert_combine(%s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), V(e, in[1]),
            V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_expert_combine_grad:
        emitf(e, "    mtx_expert_combine_grad(%s, %s, %s, %s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, o[1]),
            V(e, in[0]), V(e, in[1]), V(e, in[2]), V(e, in[3]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_expert_capacity:
        emitf(e, "    mtx_expert_capacity(%s, %s, %lld, %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4]);
        break;
    case OP_moe_lb_loss:
        emitf(e, "    mtx_moe_lb_loss(%s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4],
            flit(pool, fa[0]));
        break;
    case OP_moe_lb_loss_grad:
        emitf(e, "    mtx_moe_lb_loss_grad(%s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
            (long long)a[4], flit(pool, fa[0]));
        break;
    case OP_rows:
        emitf(e, "    mtx_copy_rows(%s, %s, %lld, %lld, %lld, %d);\n", V(e, o[0]), V(e, in[0]), (long long)a[0],
            (long long)a[1], (long long)a[2], dtype_bytes(in[0]->dtype));
        break;
    case OP_rows_grad:
        emitf(e, "    mtx_copy_rows_back(%s, %s, %lld, %lld, %lld, %lld, %d);\n", V(e, o[0]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], dtype_bytes(in[0]->dtype));
        break;
    case OP_embed_grad:
        emitf(e, "    mtx_embed_backward(%s, %s, %s, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            V(e, in[1]), (long long)a[0], (long long)a[1], (long long)a[2]);
        break;
    case OP_position_add_grad:
        emitf(e, "    mtx_position_add_backward(%s, %s, %lld, %lld, %lld, %lld);\n", V(e, o[0]), V(e, in[0]),
            (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3]);
        break;
    case OP_bias_grad:
        emitf(e, "    mtx_bias_backward(%s, %s, %lld, %lld);\n", V(e, o[0]), V(e, in[0]), (long long)a[0], (long long)a[1]);
        break;
    case OP_rmsnorm_grad:
        emitf(e, "    mtx_rmsnorm_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, o[1]),
            V(e, in[0]), V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1], flit(pool, fa[0]));
        break;
    case OP_layernorm_grad:
        emitf(e, "    mtx_layernorm_backward%s(%s, %s, %s, %s, %s, %s, %lld, %lld, %s);\n", sfx, V(e, o[0]), V(e, o[1]),
            V(e, o[2]), V(e, in[0]), V(e, in[1]), V(e, in[2]), (long long)a[0], (long long)a[1],
            flit(pool, fa[0]));
        break;
    case OP_attention_scores_grad:
        emitf(e, "    mtx_attention_scores_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %s);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), (long long)a[0],
            (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4], flit(pool, fa[0]));
        break;
    case OP_causal_softmax_grad:
        emitf(e, "    mtx_causal_softmax_backward%s(%s, %s, %s, %lld, %lld);\n", sfx, V(e, o[0]), V(e, in[0]),
            V(e, in[1]), (long long)a[0], (long long)a[1]);
        break;
    case OP_attention_values_grad:
        emitf(e, "    mtx_attention_values_backward%s(%s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld);\n", sfx,
            V(e, o[0]), V(e, o[1]), V(e, in[0]), V(e, in[1]), V(e, in[2]), (long long)a[0],
            (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4]);
        break;
    case OP_flash_attention_grad:
        emitf(e, "    mtx_flash_attention_backward%s(%s, %s, %s, %s, %s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, "
               "%lld, %s, %s);\n", sfx, V(e, o[0]), V(e, o[1]), V(e, o[2]), V(e, in[0]), V(e, in[1]), V(e, in[2]),
            V(e, in[3]), V(e, in[4]), V(e, in[5]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
            (long long)a[4], (long long)a[5], flit(pool, fa[0]), flit(pool, fa[1]));
        break;
    case OP_cross_entropy_grad:
        emitf(e, "    mtx_cross_entropy_backward%s(%s, %s, %s, %s, %lld, %lld, %s, %lld);\n", sfx, V(e, o[0]), V(e, in[0]),
            rows_at(e, in[1], a[2]), rows_at(e, in[2], a[2]), (long long)a[0], (long long)a[1], V(e, in[3]),
            (long long)a[3]);
        break;
    case OP_global_norm:
        emitf(e, "    double sum_sq = 0;\n");
        if (a[1]) {   /* the first a[1] gradients are split over axis a[2]: each device has its share */
            emitf(e, "    double split_sq = 0;\n");
            for (int i = 0; i < a[1]; i++)
                emitf(e, "    split_sq += mtx_sum_of_squares(%s, %lld);\n", V(e, in[i]), (long long)value_numel(in[i]));
            emitf(e, "    mtx_all_reduce_sum_f64(&split_sq, 1, %s);\n    sum_sq = split_sq;\n", axes_expr(a[2]));
        }
        for (int i = (int)a[1]; i < op->nin; i++)
            emitf(e, "    sum_sq += mtx_sum_of_squares(%s, %lld);\n", V(e, in[i]), (long long)value_numel(in[i]));
        if (a[0]) emitf(e, "    mtx_all_reduce_sum_f64(&sum_sq, 1, %s);  /* each device holds a chunk of every gradient */\n",
                      axes_expr(a[0]));
        emitf(e, "    %s[0] = (float)sqrt(sum_sq);\n", V(e, o[0]));
        break;
    case OP_clip_scale:
        emitf(e, "    %s[0] = %s[0] < %s ? 1.0f : %s / %s[0];\n", V(e, o[0]), V(e, in[0]), flit(pool, fa[0]),
            flit(pool, fa[0]), V(e, in[0]));
        break;
    case OP_learning_rate:
        if (a[0] == 0)
            emitf(e, "    %s[0] = mtx_cosine_schedule(%s[0], %s[0], %s, %s, %s);\n", V(e, o[0]), V(e, in[0]),
                V(e, in[1]), flit(pool, fa[0]), flit(pool, fa[2]), flit(pool, fa[1]));
        else
            emitf(e, "    %s[0] = mtx_wsd_schedule(%s[0], %s[0], %s, %s, %s, %s, %d);\n", V(e, o[0]), V(e, in[0]),
                V(e, in[1]), flit(pool, fa[0]), flit(pool, fa[2]), flit(pool, fa[3]), flit(pool, fa[1]), a[0] == 2);
        break;
    case OP_muon:
        emitf(e, "    mtx_muon_update(%s, %s, %s, %lld, %lld, %s[0], %s[0], %s, %s, %s, t, %s);\n", V(e, in[0]),
            V(e, in[2]), V(e, in[1]), (long long)a[0], (long long)a[1], V(e, in[4]), V(e, in[3]), flit(pool, fa[0]),
            flit(pool, fa[1]), flit(pool, fa[2]), V(e, o[0]));
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
            emitf(e, "    mtx_all_reduce_sum(%s, %lld, %s);\n", V(e, in[i]), (long long)value_numel(in[i]), axes_expr(a[0]));
        break;
    case OP_all_gather:
        emitf(e, "    mtx_all_gather%s(%s, %s, %lld);\n", sfx, V(e, o[0]), V(e, in[0]), (long long)a[0]);
        break;
    case OP_tensor_sum:
        emitf(e, "    memcpy(%s, %s, %lldu);\n    mtx_all_reduce_sum(%s, %lld, MTX_AXIS_TENSOR);\n", V(e, o[0]),
            V(e, in[0]), (long long)value_bytes(in[0]), V(e, o[0]), (long long)value_numel(in[0]));
        break;
    case OP_reduce_scatter:
        emitf(e, "    mtx_reduce_scatter(%s, %s, %lld);\n", V(e, o[0]), V(e, in[0]), (long long)a[0]);
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
    default:
        fatal("emit: no C lowering for op %s", op_info[op->kind].name);
    }
}

void emit_adamw(Emitter *e, const Op *op, bool first)
{
    Pool *pool = e->p->pool;
    const double *fa = op->fa;
    bool pax = op->ia[0], nesterov = op->ia[1];
    const char *b1 = flit(pool, fa[0]), *b2 = flit(pool, fa[1]);
    Value *const *in = op->in;
    if (nesterov) {
        emitf(e, "    mtx_adamw_nesterov_update(%s, %s, %s, %s, %lld, %s[0], %s[0], %s, %s, %s, %s, %s, t);\n",
            V(e, in[0]), V(e, in[2]), V(e, in[3]), V(e, in[1]), (long long)value_numel(in[0]), V(e, in[5]),
            V(e, in[4]), b1, b2, flit(pool, fa[2]), flit(pool, fa[3]), flit(pool, fa[4]));
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
            V(e, in[4]), flit(pool, fa[2]), flit(pool, fa[3]), flit(pool, fa[4]));
    else
        emitf(e, "    mtx_adamw_update(%s, %s, %s, %s, %lld, %s[0], %s[0], %s, %s, %s, %s, %s, bias1, bias2);\n",
            V(e, in[0]), V(e, in[2]), V(e, in[3]), V(e, in[1]), (long long)value_numel(in[0]), V(e, in[5]),
            V(e, in[4]), b1, b2, flit(pool, fa[2]), flit(pool, fa[3]), flit(pool, fa[4]));
}

