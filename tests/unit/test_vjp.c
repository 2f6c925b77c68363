/* Every op's VJP rule against central finite differences. Each case builds a
 * small program (op, then loss = <output, random probe>), differentiates it
 * with autodiff, runs the fuse and memplan passes, emits C, compiles and
 * loads it, and compares each parameter's gradient with (L(x+h) - L(x-h)) / 2h. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { B = 2, T = 4, D = 8, H = 2, KV = 1, DH = 4, VOCAB = 11 };

typedef struct {
    Config *c;
    Program *p;
    Func *f;
} Case;

static Case begin(void)
{
    char *ov[] = {"model_name=tiny"};
    Case k;
    k.c = load_config(1, ov);
    k.p = program_new(k.c);
    k.f = &k.p->train;
    int64_t bt[2] = {B, T};
    k.p->tokens = value_new(k.p, "inputs", DT_I32, 2, bt, V_INPUT);
    k.p->targets = value_new(k.p, "targets", DT_I32, 2, bt, V_INPUT);
    k.p->segmentation = value_new(k.p, "targets_segmentation", DT_I32, 2, bt, V_INPUT);
    return k;
}

static Value *param(Case *k, const char *name, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dim[4] = {d0, d1, d2, d3};
    return state_new(k->p, name, rank, dim, INIT_NORMAL, 0.7, NULL);
}

static Value *temp_like(Case *k, const char *name, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dim[4] = {d0, d1, d2, d3};
    return value_new(k->p, name, DT_F32, rank, dim, V_TEMP);
}

static Op *op(Case *k, OpKind kind, Value *y, int nin, Value *a, Value *b, Value *c)
{
    Value *in[3] = {a, b, c};
    return op_add(k->p, k->f, kind, "case", nin, in, 1, &y);
}

/* Packed rows [b, t]: the batch's segment ids (finish() fills them with
 * runs, so attention and positions see several segments) and their bounds. */
static Value *segments(Case *k, int64_t b, int64_t t)
{
    int64_t bt[2] = {b, t}, dim[3] = {2, b, t};
    k->p->segment_ids = value_new(k->p, "inputs_segmentation", DT_I32, 2, bt, V_INPUT);
    Value *bounds = value_new(k->p, "segment_bounds", DT_I32, 3, dim, V_TEMP);
    Op *o = op(k, OP_segment_bounds, bounds, 1, k->p->segment_ids, NULL, NULL);
    IA(o, segment_bounds, b) = b;
    IA(o, segment_bounds, t) = t;
    return bounds;
}

/* loss = sum(y * probe), as a 1 x N by N x 1 matmul */
static Value *probe_loss(Case *k, Value *y)
{
    int64_t n = value_numel(y);
    Value *probe = param(k, "probe", 2, n, 1, 0, 0);
    Value *loss = temp_like(k, "loss", 1, 1, 0, 0, 0);
    Op *m = op(k, OP_matmul, loss, 2, y, probe, NULL);
    IA(m, matmul, m) = 1;
    IA(m, matmul, n) = 1;
    IA(m, matmul, k) = n;
    FA(m, matmul, alpha) = 1.0;
    return loss;
}

static double run_loss(const Loaded *l, mtx_state *st, const mtx_batch *b)
{
    mtx_metrics m = {0};
    ((mtx_step_linen)l->desc->train_step)(st, b, mtx_rng_seed(0), &m);
    return m.loss;
}

/* Differentiate, lower and check every parameter's gradient by finite differences. */
static void finish(Case *k, Value *loss)
{
    Program *p = k->p;
    char err[1024];
    p->train_loss = loss;
    ck_assert_msg(differentiate(p, k->f, loss, NULL, err, sizeof err), "%s", err);
    /* Keep every gradient alive to the end of the step, where the test reads it. */
    Value *grads[16];
    int n = 0;
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind == V_PARAM) {
            ck_assert_msg(p->values[i]->grad != NULL, "no gradient for %s", p->values[i]->name);
            grads[n++] = p->values[i]->grad;
        }
    int64_t one = 1;
    p->grad_norm = value_new(p, "grad_norm", DT_F32, 1, &one, V_TEMP);
    op_add(p, k->f, OP_global_norm, "case", n, grads, 1, &p->grad_norm);
    ck_assert_msg(fuse(p, err, sizeof err) && plan_memory(p, err, sizeof err), "%s", err);
    ck_assert_msg(ir_verify(p, err, sizeof err), "%s", err);

    Loaded l = load_program(p);
    mtx_state *st = l.desc->state_new();
    l.desc->init(st, mtx_rng_seed(42));
    mtx_batch b;
    mtx_batch_alloc(&b, B, T);
    for (int i = 0; i < B * T; i++) {
        b.inputs[i] = (i * 7 + 3) % VOCAB;
        b.targets[i] = (i * 5 + 1) % VOCAB;
        b.segmentation[i] = i != B * T - 1;       /* one padded position */
    }
    if (p->segment_ids) {   /* runs of 2 tokens (of 50 past 8), row r shifted by r */
        int64_t rows = p->segment_ids->dim[0], t = p->segment_ids->dim[1], run = t > 8 ? 50 : 2;
        mtx_free(b.segment_ids);
        b.segment_ids = mtx_alloc(sizeof(int32_t) * (size_t)(rows * t));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < t; i++) b.segment_ids[r * t + i] = (int32_t)(1 + (i + r) / run);
    }
    run_loss(&l, st, &b);
    const float *arena = l.desc->state_arena(st);
    for (int i = 0; i < p->nvalues; i++) {
        const Value *v = p->values[i];
        if (v->kind != V_PARAM) continue;
        int64_t numel = value_numel(v);
        float *g = xmalloc(sizeof(float) * (size_t)numel);
        memcpy(g, arena + v->grad->offset / 4, sizeof(float) * (size_t)numel);
        double gmax = 1e-3;
        for (int64_t j = 0; j < numel; j++) gmax = fmax(gmax, fabs(g[j]));
        char *name = xfmt("params/%s", v->name);
        float *x = state_tensor(&l, st, name, NULL);
        int64_t step = numel > 24 ? numel / 24 : 1;
        for (int64_t j = 0; j < numel; j += step) {
            const float h = 1e-2f;
            float saved = x[j];
            x[j] = saved + h;
            double up = run_loss(&l, st, &b);
            x[j] = saved - h;
            double down = run_loss(&l, st, &b);
            x[j] = saved;
            double fd = (up - down) / (2 * h);
            ck_assert_msg(fabs(fd - g[j]) <= 2e-2 * gmax, "%s[%lld]: autodiff %.6g, finite difference %.6g",
                          v->name, (long long)j, g[j], fd);
        }
        free(name);
        free(g);
    }
    mtx_batch_free(&b);
    l.desc->state_free(st);
    unload_program(&l);
    program_free(p);
    config_free(k->c);
}

static void check_matmul(int ta, int tb)
{
    Case k = begin();
    const int m = 3, n = 5, kk = 4;
    Value *a = ta ? param(&k, "a", 2, kk, m, 0, 0) : param(&k, "a", 2, m, kk, 0, 0);
    Value *b = tb ? param(&k, "b", 2, n, kk, 0, 0) : param(&k, "b", 2, kk, n, 0, 0);
    Value *y = temp_like(&k, "y", 2, m, n, 0, 0);
    Op *o = op(&k, OP_matmul, y, 2, a, b, NULL);
    IA(o, matmul, m) = m;
    IA(o, matmul, n) = n;
    IA(o, matmul, k) = kk;
    IA(o, matmul, ta) = ta;
    IA(o, matmul, tb) = tb;
    FA(o, matmul, alpha) = 0.7;
    finish(&k, probe_loss(&k, y));
}

START_TEST(matmul) { check_matmul(0, 0); check_matmul(1, 0); check_matmul(0, 1); check_matmul(1, 1); }
END_TEST

START_TEST(embed)
{
    Case k = begin();
    Value *table = param(&k, "table", 2, VOCAB, D, 0, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0);
    Op *o = op(&k, OP_embed, y, 2, table, k.p->tokens, NULL);
    IA(o, embed, n) = B * T;
    IA(o, embed, d) = D;
    finish(&k, probe_loss(&k, y));
}
END_TEST

START_TEST(position_add)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0), *pos = param(&k, "pos", 2, T + 2, D, 0, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0);
    Op *o = op(&k, OP_position_add, y, 3, x, pos, segments(&k, B, T));
    IA(o, position_add, b) = B;
    IA(o, position_add, t) = T;
    IA(o, position_add, d) = D;
    finish(&k, probe_loss(&k, y));
}
END_TEST

/* A fused chain: y = silu(x) * g + bias; a soft-capped gelu on the side. */
START_TEST(elementwise)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0), *g = param(&k, "g", 3, B, T, D, 0);
    Value *bias = param(&k, "bias", 1, D, 0, 0, 0), *z = param(&k, "z", 3, B, T, D, 0);
    Value *s = temp_like(&k, "s", 3, B, T, D, 0), *m = temp_like(&k, "m", 3, B, T, D, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0), *w = temp_like(&k, "w", 3, B, T, D, 0);
    Value *out = temp_like(&k, "out", 3, B, T, D, 0);
    op(&k, OP_silu, s, 1, x, NULL, NULL);
    op(&k, OP_mul, m, 2, s, g, NULL);
    IA(op(&k, OP_bias_add, y, 2, m, bias, NULL), bias_add, cols) = D;
    Value *c = temp_like(&k, "c", 3, B, T, D, 0);
    op(&k, OP_gelu, w, 1, z, NULL, NULL);
    FA(op(&k, OP_soft_cap, c, 1, w, NULL, NULL), soft_cap, cap) = 0.7;   /* low enough that tanh bends */
    op(&k, OP_add, out, 2, y, c, NULL);
    finish(&k, probe_loss(&k, out));
}
END_TEST

/* Dropout's mask is a function of the step's key and the position only, so
 * finite differences see the same mask on every run. */
/* relu on both sides of its kink and away from it, so that no finite
 * difference crosses it: relu(x^2 + 0.1) passes the gradient (2x),
 * relu(-(x^2 + 0.1)) stops it. */
START_TEST(relu)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0);
    Value *sq = temp_like(&k, "sq", 3, B, T, D, 0), *tenth = temp_like(&k, "tenth", 3, B, T, D, 0);
    Value *up = temp_like(&k, "up", 3, B, T, D, 0), *minus = temp_like(&k, "minus", 3, B, T, D, 0);
    Value *down = temp_like(&k, "down", 3, B, T, D, 0), *pos = temp_like(&k, "pos", 3, B, T, D, 0);
    Value *neg = temp_like(&k, "neg", 3, B, T, D, 0), *out = temp_like(&k, "out", 3, B, T, D, 0);
    op(&k, OP_mul, sq, 2, x, x, NULL);
    FA(op(&k, OP_fill, tenth, 0, NULL, NULL, NULL), fill, value) = 0.1;
    op(&k, OP_add, up, 2, sq, tenth, NULL);
    FA(op(&k, OP_fill, minus, 0, NULL, NULL, NULL), fill, value) = -1.0;
    op(&k, OP_mul, down, 2, up, minus, NULL);
    op(&k, OP_relu, pos, 1, up, NULL, NULL);
    op(&k, OP_relu, neg, 1, down, NULL, NULL);
    op(&k, OP_add, out, 2, pos, neg, NULL);
    finish(&k, probe_loss(&k, out));
}
END_TEST

START_TEST(dropout)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0);
    Op *o = op(&k, OP_dropout, y, 1, x, NULL, NULL);
    IA(o, dropout, sequence) = T * D;
    IA(o, dropout, features) = D;
    IA(o, dropout, stream) = 12345;
    FA(o, dropout, rate) = 0.3;
    k.p->uses_rng = true;
    finish(&k, probe_loss(&k, y));
}
END_TEST

START_TEST(rmsnorm)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0), *w = param(&k, "scale", 1, D, 0, 0, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0);
    Op *o = op(&k, OP_rmsnorm, y, 2, x, w, NULL);
    IA(o, norm, n) = B * T;
    IA(o, norm, d) = D;
    FA(o, norm, eps) = 1e-5;
    finish(&k, probe_loss(&k, y));
}
END_TEST

START_TEST(layernorm)
{
    Case k = begin();
    Value *x = param(&k, "x", 3, B, T, D, 0), *s = param(&k, "scale", 1, D, 0, 0, 0);
    Value *b = param(&k, "bias", 1, D, 0, 0, 0);
    Value *y = temp_like(&k, "y", 3, B, T, D, 0);
    Op *o = op(&k, OP_layernorm, y, 3, x, s, b);
    IA(o, norm, n) = B * T;
    IA(o, norm, d) = D;
    FA(o, norm, eps) = 1e-5;
    finish(&k, probe_loss(&k, y));
}
END_TEST

/* every layout: MaxText's halves, Llama's pairs, and pairs with Llama 3.1's scaling */
START_TEST(rope)
{
    for (int variant = MTX_ROPE_HALVES; variant <= MTX_ROPE_LLAMA31; variant++) {
        Case k = begin();
        Value *x = param(&k, "x", 4, B, T, H, DH);
        Value *y = temp_like(&k, "y", 4, B, T, H, DH);
        Op *o = op(&k, OP_rope, y, 2, x, segments(&k, B, T), NULL);
        IA(o, rope, b) = B;
        IA(o, rope, t) = T;
        IA(o, rope, heads) = H;
        IA(o, rope, dh) = DH;
        IA(o, rope, variant) = variant;
        FA(o, rope, min_timescale) = 1;
        FA(o, rope, max_timescale) = 10000;
        finish(&k, probe_loss(&k, y));
    }
}
END_TEST

/* A mixture of experts end to end: the router's weights (softmax over the
 * top 2 of E logits), the rows sorted by expert, one grouped GEMM (each
 * expert's rows times its weight), the weighted sum back per token. The
 * choice is fixed near the point (no logit within h of a tie). With 2
 * sources, expert parallelism's layout in one process: the all-to-all is
 * then a copy into room for two devices' rows (the tail zeroed) and back,
 * and the grouped GEMMs take E groups over L weights (group g: w[g mod L]),
 * as a device holding L of E experts does with the rows of 2 sources. */
static void exchange(Op *o, int64_t rows_in, int64_t rows_out, int64_t d, int64_t experts, int64_t back)
{
    IA(o, all_to_all, rows_in) = rows_in;
    IA(o, all_to_all, rows_out) = rows_out;
    IA(o, all_to_all, d) = d;
    IA(o, all_to_all, experts) = experts;
    IA(o, all_to_all, back) = back;
}

static void check_experts(int64_t E, int64_t L, int64_t sources)
{
    enum { N = B * T, K = 2, F = 5 };
    Case k = begin();
    Value *logits = param(&k, "logits", 2, N, E, 0, 0), *x = param(&k, "x", 2, N, D, 0, 0);
    Value *w = param(&k, "w", 3, L, D, F, 0);
    Value *weights = temp_like(&k, "weights", 2, N, K, 0, 0);
    int64_t nk[2] = {N, K}, e1 = E + 1, rows[2] = {N * K, 1}, held = sources * N * K;
    Value *chosen = value_new(k.p, "chosen", DT_I32, 2, nk, V_TEMP);
    Value *order = value_new(k.p, "order", DT_I32, 2, rows, V_TEMP), *offsets = value_new(k.p, "offsets", DT_I32, 1, &e1, V_TEMP);
    Op *route = op_add(k.p, k.f, OP_topk_route, "case", 1, &logits, 2, (Value *[]){weights, chosen});
    IA(route, topk_route, n) = N, IA(route, topk_route, experts) = E, IA(route, topk_route, k) = K;
    Op *sort = op_add(k.p, k.f, OP_expert_sort, "case", 1, &chosen, 2, (Value *[]){order, offsets});
    IA(sort, expert_sort, n) = N, IA(sort, expert_sort, experts) = E, IA(sort, expert_sort, k) = K;
    Value *xs = temp_like(&k, "xs", 2, N * K, D, 0, 0), *ys = temp_like(&k, "ys", 2, held, F, 0, 0);
    Value *y = temp_like(&k, "y", 2, N, F, 0, 0), *groups = offsets, *received = NULL;
    Op *gather = op(&k, OP_gather_rows, xs, 2, x, order, NULL);
    IA(gather, gather_rows, n) = N, IA(gather, gather_rows, d) = D, IA(gather, gather_rows, k) = K;
    if (sources > 1) {
        received = value_new(k.p, "received", DT_I32, 1, &e1, V_TEMP);
        IA(op_add(k.p, k.f, OP_expert_counts, "case", 1, &offsets, 1, &received), expert_counts, experts) = E;
        Value *xr = temp_like(&k, "xr", 2, held, D, 0, 0);
        exchange(op(&k, OP_all_to_all, xr, 3, xs, offsets, received), N * K, held, D, E, 0);
        xs = xr, groups = received;
    }
    Op *mm = op(&k, OP_grouped_matmul, ys, 3, xs, w, groups);
    IA(mm, grouped_matmul, m) = held, IA(mm, grouped_matmul, n) = F, IA(mm, grouped_matmul, k) = D;
    IA(mm, grouped_matmul, experts) = E, IA(mm, grouped_matmul, local) = L;
    if (sources > 1) {
        Value *back = temp_like(&k, "back", 2, N * K, F, 0, 0);
        exchange(op(&k, OP_all_to_all, back, 3, ys, offsets, received), held, N * K, F, E, 1);
        ys = back;
    }
    Op *combine = op(&k, OP_expert_combine, y, 3, ys, order, weights);
    IA(combine, expert_combine, n) = N, IA(combine, expert_combine, d) = F, IA(combine, expert_combine, k) = K;
    finish(&k, probe_loss(&k, y));
}

START_TEST(experts) { check_experts(3, 3, 1); }
END_TEST

START_TEST(experts_parallel_layout) { check_experts(4, 2, 2); }
END_TEST

static void attention_attrs(Op *o, int64_t b, int64_t t, int64_t hq, int64_t hkv, int64_t window, double scale)
{
    IA(o, attention, b) = b;
    IA(o, attention, t) = t;
    IA(o, attention, hq) = hq;
    IA(o, attention, hkv) = hkv;
    IA(o, attention, dh) = DH;
    IA(o, attention, window) = window;
    FA(o, attention, scale) = scale;
}

START_TEST(attention_scores)
{
    Case k = begin();
    Value *q = param(&k, "q", 4, B, T, H, DH), *kk = param(&k, "k", 4, B, T, KV, DH);
    Value *s = temp_like(&k, "s", 4, B, H, T, T);
    attention_attrs(op(&k, OP_attention_scores, s, 2, q, kk, NULL), B, T, H, KV, 0, 0.5);
    finish(&k, probe_loss(&k, s));
}
END_TEST

START_TEST(causal_softmax)
{
    Case k = begin();
    Value *s = param(&k, "s", 4, B, H, T, T);
    Value *p = temp_like(&k, "p", 4, B, H, T, T);
    Op *o = op(&k, OP_causal_softmax, p, 2, s, segments(&k, B, T), NULL);
    IA(o, causal_softmax, blocks) = B * H;
    IA(o, causal_softmax, heads) = H;
    IA(o, causal_softmax, t) = T;
    finish(&k, probe_loss(&k, p));
}
END_TEST

START_TEST(attention_values)
{
    Case k = begin();
    Value *p = param(&k, "p", 4, B, H, T, T), *v = param(&k, "v", 4, B, T, KV, DH);
    Value *o = temp_like(&k, "o", 4, B, T, H, DH);
    attention_attrs(op(&k, OP_attention_values, o, 2, p, v, NULL), B, T, H, KV, 0, 0);
    finish(&k, probe_loss(&k, o));
}
END_TEST

/* scores -> causal softmax -> values over a sequence of several 64-row blocks:
 * the kernels stop at the diagonal block; packed segments of 50 tokens. */
START_TEST(attention_blocks)
{
    enum { LT = 130 };
    Case k = begin();
    Value *q = param(&k, "q", 4, 1, LT, H, DH), *kk = param(&k, "k", 4, 1, LT, KV, DH);
    Value *v = param(&k, "v", 4, 1, LT, KV, DH);
    Value *sc = temp_like(&k, "s", 4, 1, H, LT, LT), *pr = temp_like(&k, "p", 4, 1, H, LT, LT);
    Value *o = temp_like(&k, "o", 4, 1, LT, H, DH);
    attention_attrs(op(&k, OP_attention_scores, sc, 2, q, kk, NULL), 1, LT, H, KV, 0, 0.5);
    Op *softmax = op(&k, OP_causal_softmax, pr, 2, sc, segments(&k, 1, LT), NULL);
    IA(softmax, causal_softmax, blocks) = H;
    IA(softmax, causal_softmax, heads) = H;
    IA(softmax, causal_softmax, t) = LT;
    attention_attrs(op(&k, OP_attention_values, o, 2, pr, v, NULL), 1, LT, H, KV, 0, 0);
    finish(&k, probe_loss(&k, o));
}
END_TEST

/* The fused attention (o; lse has no gradient of its own) at odd lengths
 * (1, 7, 129: past two 64-row blocks), grouped and multi-query heads, and a
 * sliding window; over packed segments (finish()'s runs). */
static void check_flash(int64_t t, int64_t hq, int64_t hkv, int64_t window)
{
    Case k = begin();
    Value *q = param(&k, "q", 4, 1, t, hq, DH), *kk = param(&k, "k", 4, 1, t, hkv, DH);
    Value *v = param(&k, "v", 4, 1, t, hkv, DH);
    Value *o = temp_like(&k, "o", 4, 1, t, hq, DH), *lse = temp_like(&k, "lse", 3, 1, hq, t, 0);
    Value *in[4] = {q, kk, v, segments(&k, 1, t)}, *out[2] = {o, lse};
    attention_attrs(op_add(k.p, k.f, OP_flash_attention, "case", 4, in, 2, out), 1, t, hq, hkv, window, 0.5);
    finish(&k, probe_loss(&k, o));
}

START_TEST(flash_attention)
{
    check_flash(1, 2, 1, 0);
    check_flash(7, 4, 2, 0);
    check_flash(129, 2, 1, 0);
    check_flash(7, 2, 2, 3);
    check_flash(129, 4, 2, 70);
}
END_TEST

START_TEST(cross_entropy)
{
    Case k = begin();
    Value *logits = param(&k, "logits", 3, B, T, VOCAB, 0);
    Value *loss = temp_like(&k, "loss", 1, 1, 0, 0, 0), *weight = temp_like(&k, "weight", 1, 1, 0, 0, 0);
    Value *in[3] = {logits, k.p->targets, k.p->segmentation}, *out[2] = {loss, weight};
    Op *o = op_add(k.p, k.f, OP_cross_entropy, "case", 3, in, 2, out);
    IA(o, cross_entropy, n) = B * T;
    IA(o, cross_entropy, vocab) = VOCAB;
    finish(&k, loss);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vjp");
    TCase *tc = tcase_create("finite differences");
    tcase_set_timeout(tc, 900);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, matmul);
    tcase_add_test(tc, embed);
    tcase_add_test(tc, position_add);
    tcase_add_test(tc, elementwise);
    tcase_add_test(tc, relu);
    tcase_add_test(tc, dropout);
    tcase_add_test(tc, rmsnorm);
    tcase_add_test(tc, layernorm);
    tcase_add_test(tc, rope);
    tcase_add_test(tc, experts);
    tcase_add_test(tc, experts_parallel_layout);
    tcase_add_test(tc, attention_scores);
    tcase_add_test(tc, causal_softmax);
    tcase_add_test(tc, attention_values);
    tcase_add_test(tc, attention_blocks);
    tcase_add_test(tc, flash_attention);
    tcase_add_test(tc, cross_entropy);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
