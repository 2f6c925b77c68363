/* Model builder: the forward graph of a decoder-only transformer, from the
 * resolved config. Families: llama2 (also mistral), mixtral (llama2's
 * attention, a routed mixture of experts for the MLP), gemma, gemma2, qwen2,
 * qwen3 and gpt3, following MaxText's layers (see
 * ../shared/notes/maxtext-semantics.md, gemma.md and qwen-llama3.md). The
 * same builder writes the eval step, the train step's forward pass and the
 * decoding steps.
 *
 * A "sublayer" is one attention + MLP block; MaxText's gemma2 layer is two
 * of them (local, with a sliding window, then global), with their own
 * weights (`*_local`, `*_global`); every other family has one per layer. */
#include "mtxc.h"

#include <math.h>
#include <string.h>

typedef struct {
    int layer;                                 /* MaxText's layer number */
    const char *sfx;                           /* its names' suffix: "", "_local" or "_global" */
    const char *kind;                          /* for block names: "", "local " or "global " */
    int64_t window;                            /* sliding window (keys a query sees), 0: all before it */
    bool f32;                                  /* attention in float32 whatever dtype (gemma2's global) */
    Value *norm1_scale, *norm1_bias;           /* pre-attention norm */
    Value *post_attn_scale, *post_ffw_scale;   /* gemma2's norms after attention and after the MLP */
    Value *query_norm, *key_norm;              /* use_qk_norm: per-head RMSNorm scales [head_dim] */
    Value *wq, *wk, *wv, *wo, *bq, *bk, *bv, *bo;
    Value *norm2_scale, *norm2_bias;           /* pre-MLP norm */
    Value *wi0, *wi1, *wo_mlp, *bi, *bo_mlp;   /* wi1 only when gated, biases only for gpt3; [E, ...] for experts */
    Value *gate;                               /* mixtral: the router's kernel [D, E] */
} LayerParams;

typedef struct {
    Program *p;
    Func *f;
    const Config *c;
    bool gpt3, gated;
    bool gemma;                                /* llama2's block with MaxText's gemma names and norm epsilon */
    bool gemma2;                               /* gemma with local/global pairs and post norms */
    bool qwen;                                 /* qwen2/qwen3: the llama2 layer, query scaled at run time, no output dropout */
    bool qkv_bias;                             /* qwen2's attention_bias: biases on q, k, v (not out) */
    bool qk_norm;                              /* use_qk_norm: RMSNorm of each q and k head before RoPE */
    bool moe;                                  /* mixtral: the MLP is E experts, k per token (moe.py RoutedMoE) */
    bool layer_norm_names;                     /* MaxText's llama2, mistral, mixtral and qwen name their norms *_layer_norm */
    int64_t E, K;                              /* num_experts, num_experts_per_tok */
    Value *lb_sum;                             /* the MoE layers' load-balancing losses so far (weight > 0) */
    bool flash;                                /* fused attention (attention: flash, or autoselected) */
    bool train;                                /* building the train step: dropout applies */
    bool decoding;                             /* building prefill/decode: new tokens at position_in, caches */
    Value *position_in;                        /* decoding: [1] i32, the position of the first new token */
    Value **kcache, **vcache;                  /* decoding: per layer [1, cache_length, KV, Dh] */
    DType dt;                                  /* activations: dtype (f32, or bf16 for bfloat16) */
    Value **cast_of;                           /* by param id: its cast to dt in the function being built */
    int nstate;                                /* values made by make_params: the ids cast_of covers */
    int64_t B, T, D, H, KV, Dh, M, V, L, P;  /* H, KV, M: this device's share when tp > 1 */
    int64_t NL;                                /* sublayers: L, or 2 L for gemma2 */
    int64_t tp;                                /* tensor-parallel ways (Megatron: heads and MLP columns) */
    int64_t ep;                                /* expert-parallel ways: each device holds E / ep experts */
    bool kv_replicated;                        /* tp > 1 over one kv head: every device computes it (Megatron) */
    const char *block;
    Value *tokens, *targets, *segmentation;    /* inputs of the function being built */
    Value *segment_ids, *bounds;               /* packed rows: the inputs' segment ids, each token's [start, end) */
    Value *embedding, *position, *final_scale, *final_bias, *logits_w;
    LayerParams *layers;                       /* by sublayer */
    double matmul_flops;                       /* forward GEMM FLOPs of one step */
} Builder;

/* ---- parameters ---- */

static Value *param(Builder *b, const char *name, int rank, const int64_t *dim, InitKind init,
                    double std, const char *a0, const char *a1, const char *a2)
{
    const char *axes[3] = {a0, a1, a2};
    return state_new(b->p, name, rank, dim, init, std, axes);
}

/* MaxText's projection init: variance scaling by fan_in; llama2 truncated, gpt3 plain normal. */
static Value *kernel(Builder *b, const char *name, int64_t fan_in, int64_t fan_out,
                     const char *in_axis, const char *out_axis)
{
    int64_t dim[2] = {fan_in, fan_out};
    double std = 1.0 / sqrt((double)fan_in);
    if (b->gpt3) return param(b, name, 2, dim, INIT_NORMAL, std, in_axis, out_axis, NULL);
    /* variance_scaling's truncated normal divides by the std of N(0,1) cut at +-2 */
    return param(b, name, 2, dim, INIT_TRUNCATED_NORMAL, std / 0.87962566103423978, in_axis, out_axis, NULL);
}

static Value *vector(Builder *b, const char *name, int64_t n, InitKind init, const char *axis)
{
    return param(b, name, 1, &n, init, 0, axis, NULL, NULL);
}

/* This device's share of a param split `ways` ways over a mesh axis along
 * dim `dim` (its init still draws from the whole tensor's stream, emit_c.c). */
static Value *split_over(Value *v, int dim, int64_t ways, int axis)
{
    if (ways == 1) return v;
    v->dim[dim] /= ways;
    v->split_dim = dim + 1;
    v->split_ways = (int)ways;
    v->split_axis = axis;
    return v;
}

/* Megatron's tensor parallelism: heads and MLP columns or rows. */
static Value *split(Builder *b, Value *v, int dim) { return split_over(v, dim, b->tp, MTX_AXIS_TENSOR); }

static void make_norm(Builder *b, const char *prefix, Value **scale, Value **bias)
{
    Pool *pool = b->p->pool;
    /* gpt3's LayerNorm multiplies by (1 + scale), so its scale starts at zero. */
    *scale = vector(b, pool_fmt(pool, "%s.scale", prefix), b->D, b->gpt3 ? INIT_ZEROS : INIT_ONES, "norm");
    if (b->gpt3) *bias = vector(b, pool_fmt(pool, "%s.bias", prefix), b->D, INIT_ZEROS, "norm");
}

/* MaxText's Attention divides the query kernel's init by sqrt(head_dim)
 * (in dtype) instead of scaling scores at run time (attentions.py
 * init_query_w, T5's convention); gpt3 divides the query itself. */
static double depth_scaling(const Builder *b)
{
    float s = (float)sqrt((double)b->Dh);
    if (b->dt == DT_BF16) {   /* jnp.sqrt(head_dim).astype(bfloat16): round to nearest even */
        uint32_t u;
        memcpy(&u, &s, sizeof u);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        memcpy(&s, &u, sizeof s);
    }
    return s;
}

/* Sublayer s: its MaxText layer, names, window and precision. */
static void describe_sublayer(Builder *b, int s, LayerParams *lp)
{
    lp->layer = b->gemma2 ? s / 2 : s;
    lp->sfx = !b->gemma2 ? "" : s % 2 ? "_global" : "_local";
    lp->kind = !b->gemma2 ? "" : s % 2 ? "global " : "local ";
    lp->window = b->gemma2 && s % 2 == 0 ? cfg_int(b->c, K_sliding_window_size) : 0;
    /* gemma2.py hard-codes float32_qk_product and float32_logits on its global attention */
    lp->f32 = b->gemma2 && s % 2 == 1;
}

/* moe.py RoutedMoE: the gate's kernel [D, E] (fan_in D), and the experts'
 * [E, D, M] and [E, M, D], whose variance scaling takes axis 0 (E) as the in
 * axis, so their fan_in is E M and E D (kernel_in_axis = np.arange(1)). */
static void make_experts(Builder *b, int l, LayerParams *lp)
{
    Pool *pool = b->p->pool;
    const char *m = pool_fmt(pool, "layers.%d.MoeBlock_0", l);
    lp->gate = kernel(b, pool_fmt(pool, "%s.gate.kernel", m), b->D, b->E, "embed", NULL);
    const double truncation = 0.87962566103423978;   /* see kernel() */
    int64_t wi[3] = {b->E, b->D, b->M}, wo[3] = {b->E, b->M, b->D};
    double si = 1.0 / sqrt((double)(b->E * b->M)) / truncation, so = 1.0 / sqrt((double)(b->E * b->D)) / truncation;
    lp->wi0 = param(b, pool_fmt(pool, "%s.wi_0", m), 3, wi, INIT_TRUNCATED_NORMAL, si, "exp", "embed_moe", "mlp_moe");
    lp->wi1 = param(b, pool_fmt(pool, "%s.wi_1", m), 3, wi, INIT_TRUNCATED_NORMAL, si, "exp", "embed_moe", "mlp_moe");
    lp->wo_mlp = param(b, pool_fmt(pool, "%s.wo", m), 3, wo, INIT_TRUNCATED_NORMAL, so, "exp", "mlp_moe", "embed_moe");
    /* expert parallelism: this device's experts */
    split_over(lp->wi0, 0, b->ep, MTX_AXIS_EXPERT);
    split_over(lp->wi1, 0, b->ep, MTX_AXIS_EXPERT);
    split_over(lp->wo_mlp, 0, b->ep, MTX_AXIS_EXPERT);
}

static void make_params(Builder *b)
{
    Pool *pool = b->p->pool;
    int64_t ed[2] = {b->V, b->D};
    b->embedding = param(b, "token_embedder.embedding", 2, ed, INIT_NORMAL, 1.0, "vocab", "embed", NULL);
    if (b->gpt3 && b->P > 0) {
        int64_t pd[2] = {b->P, b->D};
        b->position = param(b, "position_embedder.embedding", 2, pd, INIT_NORMAL, 1.0, NULL, "embed", NULL);
    }
    b->layers = pool_alloc(pool, sizeof(LayerParams) * (size_t)b->NL);
    for (int s = 0; s < b->NL; s++) {
        LayerParams *lp = &b->layers[s];
        describe_sublayer(b, s, lp);
        int l = lp->layer;
        const char *sfx = lp->sfx;
        const char *at = pool_fmt(pool, "layers.%d.self_attention%s", l, sfx);
        const char *mlp = pool_fmt(pool, "layers.%d.mlp%s", l, sfx);
        make_norm(b, pool_fmt(pool, b->layer_norm_names ? "layers.%d.pre_self_attention_layer_norm%s"
                                                        : "layers.%d.pre_self_attention_norm%s",
                              l, sfx), &lp->norm1_scale, &lp->norm1_bias);
        /* Megatron: q, k, v split by columns (heads), out by rows. */
        lp->wq = split(b, kernel(b, pool_fmt(pool, "%s.query.kernel", at), b->D, b->H * b->Dh, "embed", "q_heads"), 1);
        if (!b->gpt3 && !b->qwen && !b->qk_norm) lp->wq->init_std /= depth_scaling(b);
        const char *kv_axis = b->kv_replicated ? NULL : "kv_heads";
        lp->wk = kernel(b, pool_fmt(pool, "%s.key.kernel", at), b->D, b->KV * b->Dh, "embed", kv_axis);
        lp->wv = kernel(b, pool_fmt(pool, "%s.value.kernel", at), b->D, b->KV * b->Dh, "embed", kv_axis);
        if (!b->kv_replicated) split(b, lp->wk, 1), split(b, lp->wv, 1);
        lp->wo = split(b, kernel(b, pool_fmt(pool, "%s.out.kernel", at), b->H * b->Dh, b->D, "heads", "embed"), 0);
        if (b->gpt3) {
            lp->bq = split(b, vector(b, pool_fmt(pool, "%s.query.bias", at), b->H * b->Dh, INIT_ZEROS, "q_heads"), 0);
            lp->bk = split(b, vector(b, pool_fmt(pool, "%s.key.bias", at), b->KV * b->Dh, INIT_ZEROS, "kv_heads"), 0);
            lp->bv = split(b, vector(b, pool_fmt(pool, "%s.value.bias", at), b->KV * b->Dh, INIT_ZEROS, "kv_heads"), 0);
            lp->bo = vector(b, pool_fmt(pool, "%s.out.bias", at), b->D, INIT_ZEROS, "embed");
        } else if (b->qkv_bias) {
            lp->bq = split(b, vector(b, pool_fmt(pool, "%s.query.bias", at), b->H * b->Dh, INIT_ZEROS, "q_heads"), 0);
            lp->bk = vector(b, pool_fmt(pool, "%s.key.bias", at), b->KV * b->Dh, INIT_ZEROS, kv_axis);
            lp->bv = vector(b, pool_fmt(pool, "%s.value.bias", at), b->KV * b->Dh, INIT_ZEROS, kv_axis);
            if (!b->kv_replicated) split(b, lp->bk, 0), split(b, lp->bv, 0);
        }
        if (b->qk_norm) {
            lp->query_norm = vector(b, pool_fmt(pool, "%s.query_norm.scale", at), b->Dh, INIT_ONES, "norm");
            lp->key_norm = vector(b, pool_fmt(pool, "%s.key_norm.scale", at), b->Dh, INIT_ONES, "norm");
        }
        if (b->gemma2 && cfg_bool(b->c, K_use_post_attn_norm))
            make_norm(b, pool_fmt(pool, "layers.%d.post_self_attention_norm%s", l, sfx), &lp->post_attn_scale, NULL);
        make_norm(b, b->gpt3    ? pool_fmt(pool, "%s.mlp_layer_norm", mlp)
                     : b->gemma ? pool_fmt(pool, "layers.%d.pre_ffw_norm%s", l, sfx)
                     : b->layer_norm_names ? pool_fmt(pool, "layers.%d.post_self_attention_layer_norm", l)
                                : pool_fmt(pool, "layers.%d.post_self_attention_norm", l),
                  &lp->norm2_scale, &lp->norm2_bias);
        if (b->moe) {
            make_experts(b, l, lp);
            continue;
        }
        /* wi by columns, wo by rows. */
        lp->wi0 = split(b, kernel(b, pool_fmt(pool, b->gated ? "%s.wi_0.kernel" : "%s.wi.kernel", mlp), b->D, b->M,
                                  "embed", "mlp"), 1);
        if (b->gated) lp->wi1 = split(b, kernel(b, pool_fmt(pool, "%s.wi_1.kernel", mlp), b->D, b->M, "embed", "mlp"), 1);
        lp->wo_mlp = split(b, kernel(b, pool_fmt(pool, "%s.wo.kernel", mlp), b->M, b->D, "mlp", "embed"), 0);
        if (b->gpt3) {
            lp->bi = split(b, vector(b, pool_fmt(pool, "%s.wi.bias", mlp), b->M, INIT_ZEROS, "mlp"), 0);
            lp->bo_mlp = vector(b, pool_fmt(pool, "%s.wo.bias", mlp), b->D, INIT_ZEROS, "embed");
        }
        if (b->gemma2 && cfg_bool(b->c, K_use_post_ffw_norm))
            make_norm(b, pool_fmt(pool, "layers.%d.post_ffw_norm%s", l, sfx), &lp->post_ffw_scale, NULL);
    }
    make_norm(b, "decoder_norm", &b->final_scale, &b->final_bias);
    if (!cfg_bool(b->c, K_logits_via_embedding))
        b->logits_w = kernel(b, "logits_dense.kernel", b->D, b->V, "embed", "vocab");
}

/* ---- forward operations ---- */

static Value *temp(Builder *b, const char *name, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dim[4] = {d0, d1, d2, d3};
    return value_new(b->p, name, b->dt, rank, dim, V_TEMP);
}

static Value *act(Builder *b, const char *name, int64_t width)   /* [B, T, width] */
{
    return temp(b, name, 3, b->B, b->T, width, 0);
}

/* The ops that follow belong to this block (a comment in the IR and the C)
 * and to remat's unit (a decoder layer, an output tile; -1: neither). */
static void in_block(Builder *b, const char *block, int unit)
{
    b->block = block;
    b->p->at.unit = unit;
}

static Op *emit(Builder *b, OpKind kind, Value *out, int nin, Value *i0, Value *i1, Value *i2)
{
    Value *in[3] = {i0, i1, i2};
    return op_add(b->p, b->f, kind, b->block, nin, in, 1, &out);
}

/* x as dtype dt: MaxText's astype / jnp.asarray where it changes precision. */
static Value *convert(Builder *b, const char *name, Value *x, DType dt)
{
    if (x->dtype == dt) return x;
    Value *y = value_new(b->p, name, dt, x->rank, x->dim, V_TEMP);
    emit(b, OP_cast, y, 1, x, NULL, NULL);
    return y;
}

/* A float32 weight as a matmul of the activations' dtype reads it: MaxText
 * casts the kernel at every use; here one cast per step serves every use. */
static Value *weight_as(Builder *b, Value *w, DType dt)
{
    if (w->dtype == dt) return w;
    if (!b->cast_of[w->id]) b->cast_of[w->id] = convert(b, pool_fmt(b->p->pool, "%s.%s", w->name, dtype_name(dt)), w, dt);
    return b->cast_of[w->id];
}

/* x op(w): bf16 x bf16 -> bf16 (float32 accumulation) when dtype is bfloat16. */
/* x [B, T, k] or [rows, k] times w: [B, T, n] or [rows, n]. */
static Value *matmul(Builder *b, const char *name, Value *x, Value *w, bool w_transposed, double alpha)
{
    double ways = w->split_dim ? (double)b->tp : 1.0;   /* of the param: its bf16 cast is not marked split */
    w = weight_as(b, w, x->dtype);
    int64_t k = x->dim[x->rank - 1], n = w_transposed ? w->dim[0] : w->dim[1], m = value_numel(x) / k;
    int64_t dim[3] = {b->B, b->T, n}, rows[2] = {m, n};
    Value *y = value_new(b->p, name, x->dtype, x->rank == 3 ? 3 : 2, x->rank == 3 ? dim : rows, V_TEMP);
    Op *op = emit(b, OP_matmul, y, 2, x, w, NULL);
    IA(op, matmul, m) = m;
    IA(op, matmul, n) = n;
    IA(op, matmul, k) = k;
    IA(op, matmul, tb) = w_transposed;
    FA(op, matmul, alpha) = alpha;
    /* FLOPs of the model (all tensor-parallel devices), for reports and MFU */
    b->matmul_flops += 2.0 * (double)m * (double)n * (double)k * ways;
    return y;
}

static Value *bias_add(Builder *b, const char *name, Value *x, Value *bias)
{
    if (!bias) return x;
    Value *y = act(b, name, x->dim[x->rank - 1]);
    IA(emit(b, OP_bias_add, y, 2, x, bias, NULL), bias_add, cols) = value_numel(bias);
    return y;
}

static Value *dense(Builder *b, const char *name, Value *x, Value *w, Value *bias)
{
    Value *y = matmul(b, bias ? pool_fmt(b->p->pool, "%s.matmul", name) : name, x, w, false, 1.0);
    return bias_add(b, name, y, bias);
}

/* A query, key or value projection (remat's save_qkv_proj keeps them). */
static Value *qkv_dense(Builder *b, const char *name, Value *x, Value *w, Value *bias)
{
    b->p->at.role = ROLE_QKV;
    Value *y = dense(b, name, x, w, bias);
    b->p->at.role = ROLE_OTHER;
    return y;
}

/* Where a tensor-parallel block starts: every device reads the same x. */
static Value *tensor_enter(Builder *b, const char *name, Value *x)
{
    if (b->tp == 1) return x;
    Value *y = act(b, name, x->dim[x->rank - 1]);
    emit(b, OP_tensor_enter, y, 1, x, NULL, NULL);
    return y;
}

/* A row-parallel projection: each device's partial product, summed over the
 * tensor axis before the bias (added once). */
static Value *dense_rows(Builder *b, const char *name, Value *x, Value *w, Value *bias)
{
    if (b->tp == 1) return dense(b, name, x, w, bias);
    Pool *pool = b->p->pool;
    Value *partial = matmul(b, pool_fmt(pool, "%s.partial", name), x, w, false, 1.0);
    Value *y = act(b, bias ? pool_fmt(pool, "%s.matmul", name) : name, partial->dim[partial->rank - 1]);
    emit(b, OP_tensor_sum, y, 1, partial, NULL, NULL);
    return bias_add(b, name, y, bias);
}

/* A layer's norm: MaxText's gemma builds its layer norms without an
 * epsilon, so RMSNorm's default 1e-6 applies; decoder_norm and the other
 * families use normalization_layer_epsilon. */
static double layer_eps(const Builder *b) { return b->gemma ? 1e-6 : cfg_float(b->c, K_normalization_layer_epsilon); }

/* A norm over rows of x as wide as its scale: the D features of every token,
 * or (use_qk_norm) the head_dim values of every head. */
static Value *norm(Builder *b, const char *name, Value *x, Value *scale, Value *bias, double eps)
{
    if (!scale) return x;
    int64_t width = value_numel(scale);
    Value *y = act(b, name, x->dim[x->rank - 1]);
    Op *op = bias ? emit(b, OP_layernorm, y, 3, x, scale, bias) : emit(b, OP_rmsnorm, y, 2, x, scale, NULL);
    IA(op, norm, n) = value_numel(x) / width;
    IA(op, norm, d) = width;
    FA(op, norm, eps) = eps;
    return y;
}

/* An elementwise result: [B, T, width] as the activations are, or x's own
 * shape for rows that are not one per token (the experts' N k rows). */
static Value *like_x(Builder *b, const char *name, const Value *x)
{
    int64_t w = x->dim[x->rank - 1];
    if (value_numel(x) == b->B * b->T * w) return act(b, name, w);
    return value_new(b->p, name, b->dt, x->rank, x->dim, V_TEMP);
}

static Value *binary(Builder *b, OpKind kind, const char *name, Value *x, Value *y)
{
    Value *out = like_x(b, name, x);
    emit(b, kind, out, 2, x, y, NULL);
    return out;
}

static Value *unary(Builder *b, OpKind kind, const char *name, Value *x)
{
    Value *out = like_x(b, name, x);
    emit(b, kind, out, 1, x, NULL, NULL);
    return out;
}

/* MaxText's nn.Dropout(rate, broadcast_dims=(-2,)): one mask per sequence
 * and feature, shared along the sequence, only when training. */
static Value *dropout(Builder *b, const char *name, Value *x, bool tensor_split)
{
    double rate = cfg_float(b->c, K_dropout_rate);
    if (!b->train || !cfg_bool(b->c, K_enable_dropout) || rate <= 0) return x;
    Value *y = act(b, name, x->dim[x->rank - 1]);
    Op *op = emit(b, OP_dropout, y, 1, x, NULL, NULL);
    IA(op, dropout, sequence) = b->T * x->dim[x->rank - 1];
    IA(op, dropout, features) = x->dim[x->rank - 1];
    IA(op, dropout, stream) = (int64_t)(mtx_name_hash(name, strlen(name)) >> 1);   /* each site its own stream */
    /* features are this device's share: index them globally */
    IA(op, dropout, tensor_split) = tensor_split ? b->tp : 1;
    FA(op, dropout, rate) = rate;
    b->p->uses_rng = true;
    return y;
}

static OpKind activation(const char *name)
{
    if (!strcmp(name, "gelu")) return OP_gelu;
    if (!strcmp(name, "relu")) return OP_relu;
    if (!strcmp(name, "silu")) return OP_silu;
    fatal("model: no op for activation '%s' (config_keys.def lists it as mtxc's)", name);
}

/* MaxText's choice (attentions.py init_rotary_embedding): Llama's RoPE for
 * a model_name llama3.1* or rope_type llama3.1, scaled unless rope_use_scale
 * is false; else the rotate-half default. */
int model_rope_variant(const Config *c)
{
    if (strncmp(cfg_str(c, K_model_name), "llama3.1", 8) && strcmp(cfg_str(c, K_rope_type), "llama3.1"))
        return MTX_ROPE_HALVES;
    return cfg_bool(c, K_rope_use_scale) ? MTX_ROPE_LLAMA31 : MTX_ROPE_PAIRS;
}

static Value *rope(Builder *b, const char *name, Value *x, int64_t heads)
{
    Value *y = temp(b, name, 4, b->B, b->T, heads, b->Dh);
    Op *op = b->decoding ? emit(b, OP_rope_at, y, 2, x, b->position_in, NULL) : emit(b, OP_rope, y, 2, x, b->bounds, NULL);
    IA(op, rope, b) = b->B;
    IA(op, rope, t) = b->T;
    IA(op, rope, heads) = heads;
    IA(op, rope, dh) = b->Dh;
    IA(op, rope, variant) = model_rope_variant(b->c);
    FA(op, rope, min_timescale) = cfg_float(b->c, K_rope_min_timescale);
    FA(op, rope, max_timescale) = cfg_float(b->c, K_rope_max_timescale);
    return y;
}

static void attention_attrs(Builder *b, Op *op, int64_t window, double scale, double cap)
{
    IA(op, attention, b) = b->B;
    IA(op, attention, t) = b->T;
    IA(op, attention, hq) = b->H;
    IA(op, attention, hkv) = b->KV;
    IA(op, attention, dh) = b->Dh;
    IA(op, attention, window) = window;
    FA(op, attention, scale) = scale;
    FA(op, attention, cap) = cap;
}

/* MaxText's count (maxtext_utils.calculate_tflops_training_per_device):
 * q k^T and p v over the whole square, halved for the causal mask; a
 * sliding window of w keys (calculate_gemma2_tflops_...) over T w - w^2 / 2. */
static double attention_flops(const Builder *b, const LayerParams *lp)
{
    double heads = (double)(b->B * b->H * b->tp), t = (double)b->T, dh = (double)b->Dh;
    if (lp->window <= 0) return 2.0 * heads * t * t * dh;
    double w = lp->window < b->T ? (double)lp->window : t;
    return 4.0 * heads * (t * w - 0.5 * w * w) * dh;
}

/* Decoding: the new keys and values into sublayer s's caches, the queries
 * against all of them. */
static void cached(Builder *b, int s, Value *q, Value *k, Value *v, Value *o, double scale, double cap)
{
    Value *kc = b->kcache[s], *vc = b->vcache[s];
    for (int i = 0; i < 2; i++) {
        Value *ins[3] = {i ? vc : kc, i ? v : k, b->position_in};
        Op *op = op_add(b->p, b->f, OP_kv_cache_write, b->block, 3, ins, 0, NULL);
        IA(op, kv_cache_write, b) = b->B;
        IA(op, kv_cache_write, n) = b->T;
        IA(op, kv_cache_write, width) = b->KV * b->Dh;
        IA(op, kv_cache_write, tmax) = kc->dim[1];
    }
    Value *ins[4] = {q, kc, vc, b->position_in};
    Op *op = op_add(b->p, b->f, OP_cached_attention, b->block, 4, ins, 1, &o);
    IA(op, cached_attention, b) = b->B;
    IA(op, cached_attention, n) = b->T;
    IA(op, cached_attention, hq) = b->H;
    IA(op, cached_attention, hkv) = b->KV;
    IA(op, cached_attention, dh) = b->Dh;
    IA(op, cached_attention, window) = b->layers[s].window;
    IA(op, cached_attention, tmax) = kc->dim[1];
    FA(op, cached_attention, scale) = scale;
    FA(op, cached_attention, cap) = cap;
}

static Value *attention(Builder *b, int s, Value *x)
{
    Pool *pool = b->p->pool;
    LayerParams *lp = &b->layers[s];
    const char *at = pool_fmt(pool, "layers.%d.self_attention%s", lp->layer, lp->sfx);
    Value *shared = x;
    x = tensor_enter(b, pool_fmt(pool, "%s.input", at), x);
    Value *q = qkv_dense(b, pool_fmt(pool, "%s.query", at), x, lp->wq, lp->bq);
    Value *k, *v;
    if (b->kv_replicated) {   /* the one kv head on every device: its gradient sums every device's query heads' */
        k = tensor_enter(b, pool_fmt(pool, "%s.key.shared", at),
                         qkv_dense(b, pool_fmt(pool, "%s.key", at), shared, lp->wk, lp->bk));
        v = tensor_enter(b, pool_fmt(pool, "%s.value.shared", at),
                         qkv_dense(b, pool_fmt(pool, "%s.value", at), shared, lp->wv, lp->bv));
    } else {
        k = qkv_dense(b, pool_fmt(pool, "%s.key", at), x, lp->wk, lp->bk);
        v = qkv_dense(b, pool_fmt(pool, "%s.value", at), x, lp->wv, lp->bv);
    }
    double qk_eps = cfg_float(b->c, K_normalization_layer_epsilon);
    q = norm(b, pool_fmt(pool, "%s.query_normed", at), q, lp->query_norm, NULL, qk_eps);
    k = norm(b, pool_fmt(pool, "%s.key_normed", at), k, lp->key_norm, NULL, qk_eps);
    if (!b->gpt3) {
        q = rope(b, pool_fmt(pool, "%s.query_rotated", at), q, b->H);
        k = rope(b, pool_fmt(pool, "%s.key_rotated", at), k, b->KV);
    }
    /* gpt3 divides the query by sqrt(head_dim), qwen multiplies it by
     * query_pre_attn_scalar = head_dim^-0.5; the others fold it into Wq's init */
    double scale = b->gpt3 || b->qwen ? 1.0 / sqrt((double)b->Dh) : 1.0, cap = cfg_float(b->c, K_attn_logits_soft_cap);
    Value *o = act(b, pool_fmt(pool, "%s.context", at), b->H * b->Dh);
    if (b->decoding) {   /* the caches hold dtype; the kernel computes in float32 */
        cached(b, s, q, k, v, o, scale, cap);
        return dense_rows(b, pool_fmt(pool, "%s.out", at), o, lp->wo, lp->bo);
    }
    Value *context = o;
    if (lp->f32 && b->dt != DT_F32) {   /* exact widenings; the context rounds back to dtype */
        q = convert(b, pool_fmt(pool, "%s.query.f32", at), q, DT_F32);
        k = convert(b, pool_fmt(pool, "%s.key.f32", at), k, DT_F32);
        v = convert(b, pool_fmt(pool, "%s.value.f32", at), v, DT_F32);
        o = value_new(b->p, pool_fmt(pool, "%s.context.f32", at), DT_F32, o->rank, o->dim, V_TEMP);
    }
    b->matmul_flops += attention_flops(b, lp);
    if (b->flash) {   /* one fused op: no T x T scores; lse (f32) for its backward */
        Value *lse = value_new(b->p, pool_fmt(pool, "%s.logsumexp", at), DT_F32, 3, (int64_t[]){b->B, b->H, b->T},
                               V_TEMP);
        Value *ins[4] = {q, k, v, b->bounds}, *outs[2] = {o, lse};
        attention_attrs(b, op_add(b->p, b->f, OP_flash_attention, b->block, 4, ins, 2, outs), lp->window, scale, cap);
    } else {
        int64_t sd[4] = {b->B, b->H, b->T, b->T};
        Value *sc = value_new(b->p, pool_fmt(pool, "%s.scores", at), q->dtype, 4, sd, V_TEMP);
        attention_attrs(b, emit(b, OP_attention_scores, sc, 2, q, k, NULL), 0, scale, 0);
        if (cap > 0) {   /* gemma2's soft cap on the scores, before the mask and softmax */
            Value *capped = value_new(b->p, pool_fmt(pool, "%s.scores_capped", at), q->dtype, 4, sd, V_TEMP);
            FA(emit(b, OP_soft_cap, capped, 1, sc, NULL, NULL), soft_cap, cap) = cap;
            sc = capped;
        }
        Value *pr = value_new(b->p, pool_fmt(pool, "%s.probabilities", at), q->dtype, 4, sd, V_TEMP);
        Op *op = emit(b, OP_causal_softmax, pr, 2, sc, b->bounds, NULL);
        IA(op, causal_softmax, blocks) = b->B * b->H;
        IA(op, causal_softmax, heads) = b->H;
        IA(op, causal_softmax, t) = b->T;
        IA(op, causal_softmax, window) = lp->window;
        attention_attrs(b, emit(b, OP_attention_values, o, 2, pr, v, NULL), 0, 0, 0);
    }
    if (o != context) emit(b, OP_cast, context, 1, o, NULL, NULL);
    return dense_rows(b, pool_fmt(pool, "%s.out", at), context, lp->wo, lp->bo);
}

static Value *mlp(Builder *b, int s, Value *x)
{
    Pool *pool = b->p->pool;
    LayerParams *lp = &b->layers[s];
    const char *m = pool_fmt(pool, "layers.%d.mlp%s", lp->layer, lp->sfx);
    const StrList *acts = &b->c->v[K_mlp_activations].list;
    b->p->at.role = ROLE_MLP;   /* the block's ops, for remat's save_dot_except_mlp */
    x = tensor_enter(b, pool_fmt(pool, "%s.input", m), x);
    Value *h = dense(b, pool_fmt(pool, b->gated ? "%s.wi_0" : "%s.wi", m), x, lp->wi0, lp->bi);
    /* Both projections first, so that the activation and the product fuse into one loop. */
    Value *g = b->gated ? dense(b, pool_fmt(pool, "%s.wi_1", m), x, lp->wi1, NULL) : NULL;
    if (strcmp(acts->items[0], "linear"))
        h = unary(b, activation(acts->items[0]), pool_fmt(pool, "%s.activation", m), h);
    if (b->gated) h = binary(b, OP_mul, pool_fmt(pool, "%s.hidden", m), h, g);
    h = dropout(b, pool_fmt(pool, "%s.hidden_dropped", m), h, true);
    h = dense_rows(b, pool_fmt(pool, "%s.wo", m), h, lp->wo_mlp, lp->bo_mlp);
    b->p->at.role = ROLE_OTHER;
    return h;
}

/* A float32 scalar [1] from one or two others. */
static Value *scalar(Builder *b, OpKind kind, const char *name, Value *x, Value *y)
{
    int64_t one = 1;
    Value *out = value_new(b->p, name, DT_F32, 1, &one, V_TEMP);
    emit(b, kind, out, y ? 2 : 1, x, y, NULL);
    return out;
}

static Value *moe_temp(Builder *b, const char *name, DType dt, int64_t rows, int64_t cols)
{
    int64_t dim[2] = {rows, cols};
    return value_new(b->p, name, dt, 2, dim, V_TEMP);
}

/* rows x w[e] for each expert's rows: the weight as the activations' dtype,
 * as MaxText casts it. Under expert parallelism the groups are (source rank,
 * expert) pairs, group g using this device's expert g mod E / ep. */
static Value *grouped_matmul(Builder *b, const char *name, Value *xs, Value *w, Value *offsets)
{
    w = weight_as(b, w, xs->dtype);
    int64_t m = xs->dim[0], k = w->dim[1], n = w->dim[2];
    Value *y = moe_temp(b, name, xs->dtype, m, n);
    Op *op = op_add(b->p, b->f, OP_grouped_matmul, b->block, 3, (Value *[]){xs, w, offsets}, 1, &y);
    IA(op, grouped_matmul, m) = m;
    IA(op, grouped_matmul, n) = n;
    IA(op, grouped_matmul, k) = k;
    IA(op, grouped_matmul, experts) = b->E;
    IA(op, grouped_matmul, local) = w->dim[0];
    /* a device's experts take N k rows on average, whatever room they are given */
    b->matmul_flops += 2.0 * (double)(b->B * b->T * b->K) * (double)n * (double)k;
    return y;
}

/* Expert parallelism: rows [in_rows, D] sorted by expert to the devices of
 * their experts (back: returned), by all-to-all over the expert axis. A
 * device may receive every device's rows, so the arena holds ep N k rows. */
static Value *exchange_rows(Builder *b, const char *name, Value *x, Value *offsets, Value *received, bool back)
{
    int64_t in_rows = x->dim[0], out_rows = back ? in_rows / b->ep : in_rows * b->ep;
    Value *y = moe_temp(b, name, x->dtype, out_rows, x->dim[1]);
    Op *op = op_add(b->p, b->f, OP_all_to_all, b->block, 3, (Value *[]){x, offsets, received}, 1, &y);
    IA(op, all_to_all, rows_in) = in_rows;
    IA(op, all_to_all, rows_out) = out_rows;
    IA(op, all_to_all, d) = x->dim[1];
    IA(op, all_to_all, experts) = b->E;
    IA(op, all_to_all, back) = back;
    return y;
}

/* Switch's load-balancing loss of one MoE layer (moe.py load_balance_loss),
 * scaled by weight E / sequences and averaged over the layers: b->lb_sum. */
static void load_balance(Builder *b, const char *m, Value *logits, Value *experts)
{
    double w = cfg_float(b->c, K_load_balance_loss_weight);
    if (w <= 0 || b->decoding) return;
    int64_t one = 1;
    Value *lb = value_new(b->p, pool_fmt(b->p->pool, "%s.load_balance_loss", m), DT_F32, 1, &one, V_TEMP);
    Op *op = emit(b, OP_moe_lb_loss, lb, 2, logits, experts, NULL);
    IA(op, moe_lb_loss, sequences) = b->B;
    IA(op, moe_lb_loss, t) = b->T;
    IA(op, moe_lb_loss, experts) = b->E;
    IA(op, moe_lb_loss, k) = b->K;
    IA(op, moe_lb_loss, bf16) = b->dt == DT_BF16;
    FA(op, moe_lb_loss, scale) = w * (double)b->E / (double)b->B / (double)b->L;
    b->lb_sum = b->lb_sum ? scalar(b, OP_add, pool_fmt(b->p->pool, "%s.load_balance_loss_sum", m), b->lb_sum, lb) : lb;
}

/* MaxText's dropless RoutedMoE (sparse_matmul): the gate's logits in dtype,
 * the top k of them and a float32 softmax over those (weights in dtype), the
 * N k (token, choice) rows sorted by expert, SwiGLU per expert on its rows
 * (grouped GEMMs), and the weighted sum back in token order in float32. */
static Value *moe(Builder *b, int s, Value *x)
{
    Pool *pool = b->p->pool;
    LayerParams *lp = &b->layers[s];
    const char *m = pool_fmt(pool, "layers.%d.MoeBlock_0", lp->layer);
    int64_t n = b->B * b->T, rows = n * b->K;
    Value *logits = matmul(b, pool_fmt(pool, "%s.gate", m), x, lp->gate, false, 1.0);
    Value *logits32 = convert(b, pool_fmt(pool, "%s.gate_f32", m), logits, DT_F32);
    Value *w32 = moe_temp(b, pool_fmt(pool, "%s.weights_f32", m), DT_F32, n, b->K);
    Value *experts = moe_temp(b, pool_fmt(pool, "%s.experts", m), DT_I32, n, b->K);
    Op *op = op_add(b->p, b->f, OP_topk_route, b->block, 1, &logits32, 2, (Value *[]){w32, experts});
    IA(op, topk_route, n) = n;
    IA(op, topk_route, experts) = b->E;
    IA(op, topk_route, k) = b->K;
    IA(op, topk_route, normalize) = cfg_bool(b->c, K_norm_topk_prob);   /* the weights in dtype divided by their sum */
    IA(op, topk_route, bf16) = b->dt == DT_BF16;
    load_balance(b, m, logits32, experts);
    /* dense_matmul with capacity_factor > 0: a sequence's choices past an expert's capacity are dropped */
    double cf = cfg_float(b->c, K_capacity_factor);
    if (!cfg_bool(b->c, K_sparse_matmul) && cf > 0) {
        Value *keep = moe_temp(b, pool_fmt(pool, "%s.kept", m), DT_F32, n, b->K);
        int64_t capacity = (int64_t)fmax(ceil((double)(b->T * b->K) / (double)b->E) * cf, cf);
        Op *cap = emit(b, OP_expert_capacity, keep, 1, experts, NULL, NULL);
        IA(cap, expert_capacity, sequences) = b->B;
        IA(cap, expert_capacity, t) = b->T;
        IA(cap, expert_capacity, experts) = b->E;
        IA(cap, expert_capacity, k) = b->K;
        IA(cap, expert_capacity, capacity) = capacity;
        Value *kept = moe_temp(b, pool_fmt(pool, "%s.weights_kept_f32", m), DT_F32, n, b->K);
        emit(b, OP_mul, kept, 2, w32, keep, NULL);
        w32 = kept;
    }
    /* float32_weight_sum: the weights rounded to dtype, summed in float32 */
    Value *w = convert(b, pool_fmt(pool, "%s.weights", m), w32, b->dt);
    w = convert(b, pool_fmt(pool, "%s.weights_sum_f32", m), w, DT_F32);
    Value *order = moe_temp(b, pool_fmt(pool, "%s.order", m), DT_I32, rows, 1);
    int64_t e1 = b->E + 1;
    Value *offsets = value_new(b->p, pool_fmt(pool, "%s.group_offsets", m), DT_I32, 1, &e1, V_TEMP);
    op = op_add(b->p, b->f, OP_expert_sort, b->block, 1, &experts, 2, (Value *[]){order, offsets});
    IA(op, expert_sort, n) = n;
    IA(op, expert_sort, experts) = b->E;
    IA(op, expert_sort, k) = b->K;
    Value *xs = moe_temp(b, pool_fmt(pool, "%s.sorted_inputs", m), x->dtype, rows, b->D);
    op = emit(b, OP_gather_rows, xs, 2, x, order, NULL);
    IA(op, gather_rows, n) = n;
    IA(op, gather_rows, d) = b->D;
    IA(op, gather_rows, k) = b->K;
    Value *groups = offsets, *received = NULL;
    if (b->ep > 1) {   /* each device's rows for this device's experts, by (source, expert) */
        received = value_new(b->p, pool_fmt(pool, "%s.received_offsets", m), DT_I32, 1, &e1, V_TEMP);
        IA(emit(b, OP_expert_counts, received, 1, offsets, NULL, NULL), expert_counts, experts) = b->E;
        xs = exchange_rows(b, pool_fmt(pool, "%s.expert_inputs", m), xs, offsets, received, false);
        groups = received;
    }
    Value *h = grouped_matmul(b, pool_fmt(pool, "%s.wi_0", m), xs, lp->wi0, groups);
    Value *g = grouped_matmul(b, pool_fmt(pool, "%s.wi_1", m), xs, lp->wi1, groups);
    const StrList *acts = &b->c->v[K_mlp_activations].list;
    if (strcmp(acts->items[0], "linear")) h = unary(b, activation(acts->items[0]), pool_fmt(pool, "%s.activation", m), h);
    h = binary(b, OP_mul, pool_fmt(pool, "%s.hidden", m), h, g);
    Value *ys = grouped_matmul(b, pool_fmt(pool, "%s.wo", m), h, lp->wo_mlp, groups);
    if (b->ep > 1) ys = exchange_rows(b, pool_fmt(pool, "%s.returned_outputs", m), ys, offsets, received, true);
    Value *ys32 = convert(b, pool_fmt(pool, "%s.expert_outputs_f32", m), ys, DT_F32);
    Value *y32 = value_new(b->p, pool_fmt(pool, "%s.output_f32", m), DT_F32, 3, (int64_t[]){b->B, b->T, b->D}, V_TEMP);
    op = emit(b, OP_expert_combine, y32, 3, ys32, order, w);
    IA(op, expert_combine, n) = n;
    IA(op, expert_combine, d) = b->D;
    IA(op, expert_combine, k) = b->K;
    return convert(b, pool_fmt(pool, "%s.output", m), y32, b->dt);
}

/* x + f(norm(x)), with gemma2's norm of f's output before the sum. */
static Value *residual(Builder *b, Value *x, Value *f, Value *post_scale, const char *name)
{
    f = norm(b, pool_fmt(b->p->pool, "%s.normed", name), f, post_scale, NULL, layer_eps(b));
    return binary(b, OP_add, name, x, f);
}

static Value *decoder_layer(Builder *b, int s, Value *x)
{
    Pool *pool = b->p->pool;
    LayerParams *lp = &b->layers[s];
    int l = lp->layer;
    const char *sfx = lp->sfx;
    in_block(b, pool_fmt(pool, "layers.%d: %sself-attention", l, lp->kind), l);
    Value *h = norm(b, pool_fmt(pool, "layers.%d.attention_input%s", l, sfx), x, lp->norm1_scale, lp->norm1_bias,
                    layer_eps(b));
    x = residual(b, x, attention(b, s, h), lp->post_attn_scale, pool_fmt(pool, "layers.%d.attention_residual%s", l, sfx));
    in_block(b, pool_fmt(pool, "layers.%d: %smlp", l, lp->kind), l);
    h = norm(b, pool_fmt(pool, "layers.%d.mlp_input%s", l, sfx), x, lp->norm2_scale, lp->norm2_bias, layer_eps(b));
    x = residual(b, x, b->moe ? moe(b, s, h) : mlp(b, s, h), lp->post_ffw_scale,
                 pool_fmt(pool, "layers.%d.output%s", l, sfx));
    if (b->qwen) return x;                     /* qwen2.py / qwen3.py: no dropout of the layer's output */
    return dropout(b, pool_fmt(pool, "layers.%d.output_dropped%s", l, sfx), x, false);
}


/* The logits of x: the output head, or the embedding transposed. */
static Value *logits_of(Builder *b, const char *name, Value *x)
{
    if (b->logits_w) return matmul(b, name, x, b->logits_w, false, 1.0);
    bool normalize = cfg_bool(b->c, K_normalize_embedding_logits);
    double cap = cfg_float(b->c, K_final_logits_soft_cap);
    Value *logits = matmul(b, cap > 0 ? pool_fmt(b->p->pool, "%s.uncapped", name) : name, x, b->embedding, true,
                           normalize ? 1.0 / sqrt((double)b->D) : 1.0);
    if (cap <= 0) return logits;
    /* MaxText's final soft cap sits in the tied-logits branch only (decoders.py apply_output_head) */
    Value *capped = value_new(b->p, name, logits->dtype, logits->rank, logits->dim, V_TEMP);
    FA(emit(b, OP_soft_cap, capped, 1, logits, NULL, NULL), soft_cap, cap) = cap;
    return capped;
}

/* Logits of x (rows [first, first + n) of the batch's tokens) and their
 * cross-entropy: the mean, or with sum the sum (a tile's). */
static void logits_loss(Builder *b, const char *suffix, Value *x, int64_t first, int64_t n, bool sum, Value **loss,
                        Value **weight)
{
    Pool *pool = b->p->pool;
    Value *logits = logits_of(b, pool_fmt(pool, "logits%s", suffix), x);
    /* MaxText's cast_logits_to_fp32: the loss kernel reads bf16 logits as
     * float32 (exactly) and rounds their gradient once, with no float32 copy */
    int64_t one = 1;
    *loss = value_new(b->p, pool_fmt(pool, sum ? "loss_sum%s" : "loss%s", suffix), DT_F32, 1, &one, V_TEMP);
    *weight = value_new(b->p, pool_fmt(pool, "total_weight%s", suffix), DT_F32, 1, &one, V_TEMP);
    Value *in[3] = {logits, b->targets, b->segmentation};
    Value *out[2] = {*loss, *weight};
    Op *op = op_add(b->p, b->f, OP_cross_entropy, b->block, 3, in, 2, out);
    IA(op, cross_entropy, n) = n;
    IA(op, cross_entropy, vocab) = b->V;
    IA(op, cross_entropy, first) = first;
    IA(op, cross_entropy, sum) = sum;
}

/* Embeddings, the decoder layers and the final norm over b->tokens (at
 * position_in when decoding) into b->f. */
static Value *decoder(Builder *b)
{
    memset(b->cast_of, 0, sizeof(Value *) * (size_t)b->nstate);
    in_block(b, "embedding", -1);
    if (!b->decoding) {   /* packed rows: each token's segment, for positions and attention */
        b->bounds = value_new(b->p, "segment_bounds", DT_I32, 3, (int64_t[]){2, b->B, b->T}, V_TEMP);
        Op *op = emit(b, OP_segment_bounds, b->bounds, 1, b->segment_ids, NULL, NULL);
        IA(op, segment_bounds, b) = b->B;
        IA(op, segment_bounds, t) = b->T;
    }
    Value *x = act(b, "embedding", b->D);
    Op *op = emit(b, OP_embed, x, 2, b->embedding, b->tokens, NULL);
    IA(op, embed, n) = b->B * b->T;
    IA(op, embed, d) = b->D;
    if (b->position) {
        Value *y = act(b, "embedding_with_positions", b->D);
        op = b->decoding ? emit(b, OP_position_add_at, y, 3, x, b->position, b->position_in)
                         : emit(b, OP_position_add, y, 3, x, b->position, b->bounds);
        IA(op, position_add, b) = b->B;
        IA(op, position_add, t) = b->T;
        IA(op, position_add, d) = b->D;
        IA(op, position_add, rows) = b->decoding ? b->P : 0;
        x = y;
    }
    x = dropout(b, "embedding_dropped", x, false);
    for (int s = 0; s < b->NL; s++) x = decoder_layer(b, s, x);
    in_block(b, "output: final norm, logits and loss", -1);
    x = norm(b, "decoder_output", x, b->final_scale, b->final_bias, cfg_float(b->c, K_normalization_layer_epsilon));
    if (cfg_bool(b->c, K_logits_dot_in_fp32)) x = convert(b, "decoder_output.f32", x, DT_F32);
    return x;
}

/* The forward pass into b->f; returns the loss and weight values. */
/* MaxText's train.py: loss += the mean of the layers' moe_lb_loss. */
static void add_load_balance(Builder *b, Value **loss, Value **lb)
{
    *lb = b->lb_sum;
    if (!b->lb_sum) return;
    in_block(b, "output: loss + load-balancing loss", -1);
    *loss = scalar(b, OP_add, "loss_with_load_balance", *loss, b->lb_sum);
}

static void forward(Builder *b, Value **loss, Value **weight, Value **lb)
{
    b->lb_sum = NULL;
    Value *x = decoder(b);
    int64_t tiles = cfg_int(b->c, K_num_vocab_tiling);
    if (tiles == 1) {
        logits_loss(b, "", x, 0, b->B * b->T, false, loss, weight);
        add_load_balance(b, loss, lb);
        return;
    }
    /* num_vocab_tiling: each tile of rows its own logits and loss sum (the
     * remat pass recomputes a tile's logits before its backward), so one
     * tile's logits exist at a time; the mean is the sums over the counts. */
    Pool *pool = b->p->pool;
    int64_t rows = b->B * b->T / tiles;
    Value *sum = NULL, *count = NULL;
    for (int64_t t = 0; t < tiles; t++) {
        in_block(b, pool_fmt(pool, "output tile %lld: logits and loss", (long long)t), (int)b->L + (int)t);
        Value *xt = value_new(b->p, pool_fmt(pool, "decoder_output.tile%lld", (long long)t), x->dtype, 2,
                              (int64_t[]){rows, b->D}, V_TEMP);
        Op *op = emit(b, OP_rows, xt, 1, x, NULL, NULL);
        IA(op, rows, first) = t * rows;
        IA(op, rows, n) = rows;
        IA(op, rows, width) = b->D;
        IA(op, rows, rows) = b->B * b->T;
        Value *lt, *wt;
        logits_loss(b, pool_fmt(pool, ".tile%lld", (long long)t), xt, t * rows, rows, true, &lt, &wt);
        sum = sum ? scalar(b, OP_add, pool_fmt(pool, "loss_sum.upto%lld", (long long)t), sum, lt) : lt;
        count = count ? scalar(b, OP_add, pool_fmt(pool, "total_weight.upto%lld", (long long)t), count, wt) : wt;
    }
    in_block(b, "output: loss over the tiles", -1);
    Value *inverse = scalar(b, OP_reciprocal, "total_weight.inverse", count, NULL);
    *loss = scalar(b, OP_mul, "loss", sum, inverse);
    *weight = count;
    add_load_balance(b, loss, lb);
}

/* Decoding one sequence: prefill_step takes up to prefill_length tokens
 * of a prompt from position 0, decode_step one token at a given position;
 * both write their keys and values into the caches and return the logits
 * of every new token. */
static void build_decoding(Builder *b)
{
    Program *p = b->p;
    Pool *pool = p->pool;
    int64_t tmax = b->T, one = 1;
    p->cache_length = tmax;
    int64_t prefill = cfg_int(b->c, K_max_prefill_predict_length);
    p->prefill_length = prefill < tmax ? prefill : tmax;
    b->decoding = true;
    b->train = false;
    b->B = 1;
    b->kcache = pool_alloc(pool, sizeof(Value *) * (size_t)b->NL);
    b->vcache = pool_alloc(pool, sizeof(Value *) * (size_t)b->NL);
    for (int s = 0; s < b->NL; s++) {
        const LayerParams *lp = &b->layers[s];
        int64_t dim[4] = {1, tmax, b->KV, b->Dh};
        b->kcache[s] = value_new(p, pool_fmt(pool, "cache.layers.%d.key%s", lp->layer, lp->sfx), b->dt, 4, dim, V_CACHE);
        b->vcache[s] = value_new(p, pool_fmt(pool, "cache.layers.%d.value%s", lp->layer, lp->sfx), b->dt, 4, dim,
                                 V_CACHE);
    }
    p->decode_position = b->position_in = value_new(p, "decode.position", DT_I32, 1, &one, V_INPUT);
    for (int i = 0; i < 2; i++) {
        b->T = i ? 1 : p->prefill_length;
        b->f = i ? &p->decode : &p->prefill;
        b->tokens = value_new(p, i ? "decode.token" : "decode.prompt", DT_I32, 2, (int64_t[]){1, b->T}, V_INPUT);
        *(i ? &p->decode_token : &p->decode_tokens) = b->tokens;
        Value *logits = logits_of(b, "logits", decoder(b));
        logits = convert(b, "logits.f32", logits, DT_F32);
        *(i ? &p->decode_logits : &p->prefill_logits) = logits;
    }
}

static bool supported(const Config *c, char *err, size_t errlen)
{
    const char *why = NULL;
    if (strcmp(cfg_str(c, K_weight_dtype), "float32"))
        why = "weight_dtype bfloat16 is not supported yet (float32 weights, with dtype float32 or bfloat16, are)";
    else if (cfg_int(c, K_head_dim) % 2)
        why = "head_dim must be even (RoPE rotates halves)";
    if (!why) return true;
    snprintf(err, errlen, "mtxc: error: %s", why);
    return false;
}

bool build_model(Program *p, char *err, size_t errlen)
{
    const Config *c = p->cfg;
    if (!supported(c, err, errlen)) return false;
    p->at.unit = -1, p->at.pass = PASS_FORWARD;   /* every op built here is a forward op */
    const StrList *acts = &c->v[K_mlp_activations].list;
    const BlockSpec *spec = c->d.spec;
    Builder b = {
        .p = p, .c = c,
        .gpt3 = spec->gpt3, .gemma = spec->gemma, .gemma2 = spec->gemma2, .qwen = spec->qwen,
        .qkv_bias = spec->qkv_bias && cfg_bool(c, K_attention_bias),
        .qk_norm = spec->qk_norm && cfg_bool(c, K_use_qk_norm),
        .moe = spec->moe, .layer_norm_names = spec->layer_norm_names,
        .E = cfg_int(c, K_num_experts), .K = cfg_int(c, K_num_experts_per_tok),
        .gated = acts->n == 2,
        .flash = c->d.flash,
        .B = c->d.global_batch, .T = cfg_int(c, K_max_target_length), .D = c->d.emb_dim,
        .H = c->d.num_query_heads, .KV = c->d.num_kv_heads, .Dh = cfg_int(c, K_head_dim),
        .M = c->d.mlp_dim, .V = cfg_int(c, K_vocab_size), .L = c->d.num_decoder_layers,
        .NL = (int64_t)c->d.num_decoder_layers * sublayers(c),
        .P = cfg_int(c, K_trainable_position_size),
    };
    if (b.gated && strcmp(acts->items[1], "linear")) {
        snprintf(err, errlen, "mtxc: error: a gated MLP needs mlp_activations [act, linear], got [%s, %s]",
                 acts->items[0], acts->items[1]);
        return false;
    }
    /* Data and fsdp parallelism: every device runs the step on its slice of the batch. */
    int64_t dp = batch_shards(c);
    if (c->d.eval_batch % dp) {
        snprintf(err, errlen, "mtxc: error: the eval batch of %lld sequences does not split over %lld data-parallel devices",
                 (long long)c->d.eval_batch, (long long)dp);
        return false;
    }
    b.B = c->d.eval_batch / dp;              /* eval_per_device_batch_size (0: the training one) */
    int64_t bt[2] = {b.B, b.T};
    p->tokens = value_new(p, "inputs", DT_I32, 2, bt, V_INPUT);
    p->targets = value_new(p, "targets", DT_I32, 2, bt, V_INPUT);
    p->segmentation = value_new(p, "targets_segmentation", DT_I32, 2, bt, V_INPUT);
    p->segment_ids = value_new(p, "inputs_segmentation", DT_I32, 2, bt, V_INPUT);
    /* Tensor parallelism, when the backends lower this mesh: this device's
     * heads and MLP columns. */
    char why[512];
    p->mesh_lowered = lowerable_mesh(c, why, sizeof why);
    b.tp = p->mesh_lowered ? c->d.mesh_tensor : 1;
    b.ep = p->mesh_lowered ? c->d.mesh_expert : 1;
    b.kv_replicated = b.tp > 1 && b.KV == 1;
    b.dt = c->d.dtype;
    make_params(&b);
    b.nstate = p->nvalues;
    b.cast_of = pool_alloc(p->pool, sizeof(Value *) * (size_t)b.nstate);
    b.H /= b.tp, b.M /= b.tp;
    if (!b.kv_replicated) b.KV /= b.tp;
    b.f = &p->eval;
    b.tokens = p->tokens, b.targets = p->targets, b.segmentation = p->segmentation, b.segment_ids = p->segment_ids;
    forward(&b, &p->eval_loss, &p->eval_weight, &p->eval_moe_lb);
    /* With gradient accumulation the train step's graph is one microbatch's. */
    int64_t k = cfg_int(c, K_gradient_accumulation_steps);
    b.B = c->d.global_batch / dp;
    int64_t tt[2] = {b.B, b.T};
    if (b.B != bt[0]) {                      /* the train step's own inputs when the eval batch differs */
        p->train_tokens = value_new(p, "train.inputs", DT_I32, 2, tt, V_INPUT);
        p->train_targets = value_new(p, "train.targets", DT_I32, 2, tt, V_INPUT);
        p->train_segmentation = value_new(p, "train.targets_segmentation", DT_I32, 2, tt, V_INPUT);
        p->train_segment_ids = value_new(p, "train.inputs_segmentation", DT_I32, 2, tt, V_INPUT);
    } else {
        p->train_tokens = p->tokens, p->train_targets = p->targets, p->train_segmentation = p->segmentation;
        p->train_segment_ids = p->segment_ids;
    }
    if (k > 1) {
        int64_t mt[2] = {c->d.micro_batch / dp, b.T};
        p->train_tokens = value_new(p, "microbatch.inputs", DT_I32, 2, mt, V_INPUT);
        p->train_targets = value_new(p, "microbatch.targets", DT_I32, 2, mt, V_INPUT);
        p->train_segmentation = value_new(p, "microbatch.targets_segmentation", DT_I32, 2, mt, V_INPUT);
        p->train_segment_ids = value_new(p, "microbatch.inputs_segmentation", DT_I32, 2, mt, V_INPUT);
        b.B = c->d.micro_batch / dp;
    }
    b.f = &p->train;
    b.train = true;
    b.tokens = p->train_tokens, b.targets = p->train_targets, b.segmentation = p->train_segmentation;
    b.segment_ids = p->train_segment_ids;
    b.matmul_flops = 0;
    forward(&b, &p->train_loss, &p->train_weight, &p->train_moe_lb);
    if (cfg_bool(c, K_pure_nnx)) {              /* NNX: the key lives in the state */
        int64_t two = 2;
        p->rng = value_new(p, "rng", DT_I64, 1, &two, V_COUNTER);
    }
    /* forward + twice that backward, for every microbatch */
    p->flops_per_step = 3.0 * b.matmul_flops * (double)k;
    if (batch_shards(c) == 1 && b.tp == 1) build_decoding(&b);
    ops_at(p, NULL);
    return true;
}
