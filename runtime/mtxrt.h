/* libmtxrt's interface to generated code: the kernels a step calls
 * (random numbers, GEMMs, bf16, norms, attention, experts, loss,
 * optimizers, collectives, parallel loops, memory) and the program
 * descriptor a trainer hands to mtx_main. This header alone is what a
 * generated step includes (and what the JIT embeds); the trainer side
 * (mtxrt_trainer.h) and the key schema (mtxrt_keys.h) build on it. */
#ifndef MTXRT_H
#define MTXRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- random numbers (rng.c): counter-based, so results never depend on order ---- */

typedef struct { uint64_t k0, k1; } mtx_rng_key;

mtx_rng_key mtx_rng_seed(uint64_t seed);
mtx_rng_key mtx_rng_fold(mtx_rng_key key, uint64_t data);   /* derive a sub-key */
uint64_t mtx_rng_bits(mtx_rng_key key, uint64_t counter);    /* 64 random bits */
float mtx_rng_uniform(mtx_rng_key key, uint64_t counter);    /* [0, 1) */
float mtx_rng_normal(mtx_rng_key key, uint64_t counter);     /* N(0, 1) */
/* The key of the first training step's random draws, from the init key, and
 * the key of the next step. A pure_nnx program keeps the current key in its
 * state and advances it itself; otherwise the runtime does the same and
 * passes the key in: both forms draw the same numbers. */
mtx_rng_key mtx_rng_first_step_key(mtx_rng_key init);
mtx_rng_key mtx_rng_next_step_key(mtx_rng_key key);
/* Dropout's factor for element `index` of a site keyed by key: 0 or 1 / (1 - rate). */
static inline float mtx_dropout_scale(mtx_rng_key key, uint64_t index, float rate)
{
    return mtx_rng_uniform(key, index) < rate ? 0.0f : 1.0f / (1.0f - rate);
}
/* Fill x[0..n) with std * N(0,1), element i from counter i: thread-count independent. */
void mtx_fill_normal(float *x, size_t n, mtx_rng_key key, float std);
void mtx_fill_truncated_normal(float *x, size_t n, mtx_rng_key key, float std);  /* cut at +-2 std */
/* Elements [first, first + n) of the same streams: one shard of a tensor. */
void mtx_fill_normal_at(float *x, size_t first, size_t n, mtx_rng_key key, float std);
void mtx_fill_truncated_normal_at(float *x, size_t first, size_t n, mtx_rng_key key, float std);
/* Elements [first, first + n) of a tensor-parallel share [rows, cols] of a
 * tensor with full_cols columns, whose element 0 is the tensor's `offset`. */
void mtx_fill_normal_slice(float *x, size_t first, size_t n, size_t cols, size_t full_cols, size_t offset,
                           mtx_rng_key key, float std);
void mtx_fill_truncated_normal_slice(float *x, size_t first, size_t n, size_t cols, size_t full_cols, size_t offset,
                                     mtx_rng_key key, float std);

/* ---- GEMM (gemm.c) ---- */

/* C = alpha * op(A) @ op(B) + beta * C on strided views (row stride, column
 * stride of each matrix as stored); op(X) is X or its transpose. */
void mtx_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
               const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float beta,
               float *c, ptrdiff_t rs_c, ptrdiff_t cs_c);
int mtx_num_threads(void);
/* The CPUs this process may run on: its affinity mask (*bound: narrower than
 * the machine's), capped by a cgroup CPU quota. Threads beyond it would spin
 * against each other on the same cores. */
int mtx_available_cpus(int *bound);
/* This machine's GEMM rate in FLOP/s (BLIS sgemm, or with bf16 oneDNN's bf16
 * matmul), measured once and cached */
double mtx_measured_peak_flops(int bf16);
void mtx_set_num_threads(int n);

/* ---- bfloat16 (gemm_bf16.c): activations of dtype bfloat16 ---- */

typedef uint16_t mtx_bf16;                /* the upper half of a float32 */

static inline float mtx_bf16_to_f32(mtx_bf16 h)
{
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}

/* float32 -> bf16, rounded to nearest even (as XLA's convert); a NaN stays
 * a quiet NaN, overflow rounds to infinity. Branch-free, so loops vectorize. */
static inline mtx_bf16 mtx_f32_to_bf16(float x)
{
    union { float f; uint32_t u; } v = {.f = x};
    uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16;
    uint32_t quiet = (v.u >> 16) | 0x40u;
    return (mtx_bf16)((v.u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

/* x rounded to the nearest bf16, kept as a float32 */
static inline float mtx_round_bf16(float x) { return mtx_bf16_to_f32(mtx_f32_to_bf16(x)); }

/* y = x converted, element by element (on the trainer's threads) */
void mtx_convert_to_bf16(mtx_bf16 *y, const float *x, size_t n);
void mtx_convert_to_f32(float *y, const mtx_bf16 *x, size_t n);
int mtx_cpu_has_bf16(void);               /* AMX-BF16 or AVX512-BF16 */
/* C[m, n] = alpha * op(A) op(B) with bf16 A, B (strided views, as mtx_sgemm's),
 * float32 accumulation, C float32 (c_f32) or bf16 with row stride rs_c. A
 * plan is one oneDNN matmul primitive, made when the state is created. */
typedef struct mtx_gemm_plan mtx_gemm_plan;
mtx_gemm_plan *mtx_gemm_plan_new(int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a, ptrdiff_t rs_b,
                                 ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, float alpha);
void mtx_gemm_plan_free(mtx_gemm_plan *p);
void mtx_gemm_bf16(const mtx_gemm_plan *p, const mtx_bf16 *a, const mtx_bf16 *b, void *c);
/* A ragged plan: its m (MTX_RAGGED_M) or k (MTX_RAGGED_K) is each call's,
 * at most the plan's (a grouped GEMM's rows per expert); accumulate: C += */
enum { MTX_RAGGED_M = 1, MTX_RAGGED_K = 2 };
mtx_gemm_plan *mtx_gemm_plan_new_ragged(int ragged, int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a,
                                        ptrdiff_t rs_b, ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, int accumulate);
void mtx_gemm_bf16_ragged(const mtx_gemm_plan *p, int size, const mtx_bf16 *a, const mtx_bf16 *b, void *c);
const char *mtx_gemm_plan_impl(const mtx_gemm_plan *p);   /* the implementation chosen */
const char *mtx_gemm_bf16_impls(void);    /* every plan's so far, comma-separated ("" if none) */

/* ---- elementwise helpers the generated loops inline ---- */

#include <math.h>

/* e^x within about 2 ulp (Cephes' expf polynomial after a Cody-Waite range
 * reduction), branch-free so that loops calling it vectorize; libm's expf
 * and tanhf are scalar calls and cost more than the GEMMs of an MLP. */
static inline float mtx_exp(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;   /* not fminf/fmaxf: those are calls, and block vectorizing */
    float n = rintf(x * 1.44269504089f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3333337680e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    /* 2^n from its exponent bits; a NaN x (the clamp lets it through) takes
     * n = 0 so that no conversion or shift is undefined: p is NaN anyway */
    union { float f; uint32_t u; } scale = {.u = (uint32_t)((int32_t)(n == n ? n : 0.0f) + 127) << 23};
    return p * scale.f;
}

static inline float mtx_tanh(float x) { return 1.0f - 2.0f / (mtx_exp(2.0f * x) + 1.0f); }

/* ---- norms and RoPE (norms.c) ---- */

void mtx_rmsnorm_forward(float *y, const float *x, const float *w, int n, int d, float eps);
void mtx_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int n, int d, float eps);
void mtx_layernorm_forward(float *y, const float *x, const float *scale, const float *bias, int n, int d, float eps);
void mtx_layernorm_backward(float *dx, float *dscale, float *dbias, const float *dy, const float *x,
                            const float *scale, int n, int d, float eps);
/* RoPE's layouts: HALVES rotates dims i and i + dh/2 together (MaxText's
 * default); PAIRS rotates 2i and 2i+1 (MaxText's Llama variant, rope_type
 * llama3.1 with rope_use_scale false); LLAMA31 is PAIRS with Llama 3.1's
 * frequency scaling (factor 8 past wavelength 8192, none below 2048). */
typedef enum { MTX_ROPE_HALVES, MTX_ROPE_PAIRS, MTX_ROPE_LLAMA31 } mtx_rope_variant;
void mtx_rope_apply(float *y, const float *x, const int32_t *starts, int b, int t, int heads, int dh,
                    float min_timescale, float max_timescale, mtx_rope_variant variant, int inverse);
/* The same on bf16 activations: float32 arithmetic and params, each
 * result rounded once. */
void mtx_rmsnorm_forward_bf16(mtx_bf16 *y, const mtx_bf16 *x, const float *w, int n, int d, float eps);
void mtx_rmsnorm_backward_bf16(mtx_bf16 *dx, float *dw, const mtx_bf16 *dy, const mtx_bf16 *x, const float *w, int n,
                               int d, float eps);
void mtx_layernorm_forward_bf16(mtx_bf16 *y, const mtx_bf16 *x, const float *scale, const float *bias, int n, int d,
                                float eps);
void mtx_layernorm_backward_bf16(mtx_bf16 *dx, float *dscale, float *dbias, const mtx_bf16 *dy, const mtx_bf16 *x,
                                 const float *scale, int n, int d, float eps);
void mtx_rope_apply_bf16(mtx_bf16 *y, const mtx_bf16 *x, const int32_t *starts, int b, int t, int heads, int dh,
                         float min_timescale, float max_timescale, mtx_rope_variant variant, int inverse);
/* Decoding: n new tokens at positions first .. first + n - 1 (ops.def's rope_at) */
void mtx_rope_apply_at(float *y, const float *x, int first, int b, int t, int heads, int dh, float min_timescale,
                       float max_timescale, mtx_rope_variant variant);
void mtx_rope_apply_at_bf16(mtx_bf16 *y, const mtx_bf16 *x, int first, int b, int t, int heads, int dh,
                            float min_timescale, float max_timescale, mtx_rope_variant variant);

/* ---- embedding (embed.c) ---- */

void mtx_embed_forward(float *y, const float *table, const int32_t *tokens, int n, int d);
void mtx_embed_backward(float *dtable, const float *dy, const int32_t *tokens, int n, int vocab, int d);
void mtx_position_add_forward(float *y, const float *x, const float *pos, const int32_t *starts, int b, int t, int d);
void mtx_position_add_backward(float *dpos, const float *dy, const int32_t *starts, int b, int t, int rows, int d);
void mtx_bias_backward(float *dbias, const float *dy, int n, int d);
/* Decoding: positions first .. first + t - 1 (ops.def's position_add_at) */
void mtx_position_add_at(float *y, const float *x, const float *pos, int first, int b, int t, int d, int rows);

/* ---- attention, per head (attention.c) ---- */

/* Packed rows (MaxText's inputs_segmentation): bounds [2, b, t] of each
 * token's segment, the run of equal ids it is in: [0] its first position,
 * [1] the one past its last. A token sees only keys of its own segment, and
 * its RoPE and learned positions count from the segment's start (the
 * kernels' `starts`: bounds[0]). */
void mtx_segment_bounds(int32_t *bounds, const int32_t *ids, int b, int t);

void mtx_causal_softmax_forward(float *p, const float *s, const int32_t *starts, int blocks, int heads, int t,
                                int window);
void mtx_causal_softmax_backward(float *ds, const float *p, const float *dp, int blocks, int t);
void mtx_attention_scores(float *s, const float *q, const float *k, int b, int t, int hq, int hkv, int dh, float scale);
void mtx_attention_scores_backward(float *dq, float *dk, const float *ds, const float *q, const float *k,
                                   int b, int t, int hq, int hkv, int dh, float scale);
void mtx_attention_values(float *o, const float *p, const float *v, int b, int t, int hq, int hkv, int dh);
void mtx_attention_values_backward(float *dp, float *dv, const float *dout, const float *p, const float *v,
                                   int b, int t, int hq, int hkv, int dh);
/* The same in bf16: float32 arithmetic, one head at a time in
 * mtx_scratch (mtx_attention_scratch bytes), each result rounded once. */
size_t mtx_attention_scratch(int t, int dh);
void mtx_causal_softmax_forward_bf16(mtx_bf16 *p, const mtx_bf16 *s, const int32_t *starts, int blocks, int heads,
                                     int t, int window);
void mtx_causal_softmax_backward_bf16(mtx_bf16 *ds, const mtx_bf16 *p, const mtx_bf16 *dp, int blocks, int t);
void mtx_attention_scores_bf16(mtx_bf16 *s, const mtx_bf16 *q, const mtx_bf16 *k, int b, int t, int hq, int hkv,
                               int dh, float scale);
void mtx_attention_scores_backward_bf16(mtx_bf16 *dq, mtx_bf16 *dk, const mtx_bf16 *ds, const mtx_bf16 *q,
                                        const mtx_bf16 *k, int b, int t, int hq, int hkv, int dh, float scale);
void mtx_attention_values_bf16(mtx_bf16 *o, const mtx_bf16 *p, const mtx_bf16 *v, int b, int t, int hq, int hkv, int dh);
void mtx_attention_values_backward_bf16(mtx_bf16 *dp, mtx_bf16 *dv, const mtx_bf16 *dout, const mtx_bf16 *p,
                                        const mtx_bf16 *v, int b, int t, int hq, int hkv, int dh);

/* ---- fused attention (flash.c) ---- */

/* FlashAttention-2: o and the log-sum-exp
 * of each row (lse [b, hq, t], float32) without a T x T tensor; window > 0
 * limits each query to its `window` latest keys. Scratch: mtx_scratch,
 * reserved with mtx_flash_attention_scratch bytes (row sums shared, block
 * buffers per thread; fewer threads run if fewer fit). */
size_t mtx_flash_attention_scratch(int b, int t, int hq, int hkv, int dh, int threads);
void mtx_flash_attention(float *o, float *lse, const float *q, const float *k, const float *v, const int32_t *bounds,
                         int b, int t, int hq, int hkv, int dh, int window, float scale, float cap);
void mtx_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, const float *o, const float *lse, const int32_t *bounds, int b, int t,
                                  int hq, int hkv, int dh, int window, float scale, float cap);
void mtx_flash_attention_bf16(mtx_bf16 *o, float *lse, const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v,
                              const int32_t *bounds, int b, int t, int hq, int hkv, int dh, int window, float scale,
                              float cap);
void mtx_flash_attention_backward_bf16(mtx_bf16 *dq, mtx_bf16 *dk, mtx_bf16 *dv, const mtx_bf16 *dout,
                                       const mtx_bf16 *q, const mtx_bf16 *k, const mtx_bf16 *v, const mtx_bf16 *o,
                                       const float *lse, const int32_t *bounds, int b, int t, int hq, int hkv, int dh,
                                       int window, float scale, float cap);   /* cap > 0: scores soft-capped (gemma2) */

/* ---- decoding's KV cache (cache.c): ops.def's kv_cache_write, cached_attention ---- */

void mtx_kv_cache_write(void *cache, const void *x, int first, int b, int n, int width, int tmax, int elem_bytes);
void mtx_cached_attention(float *o, const float *q, const float *kc, const float *vc, int first, int b, int n, int hq,
                          int hkv, int dh, int window, int tmax, float scale, float cap);
void mtx_cached_attention_bf16(mtx_bf16 *o, const mtx_bf16 *q, const mtx_bf16 *kc, const mtx_bf16 *vc, int first, int b,
                               int n, int hq, int hkv, int dh, int window, int tmax, float scale, float cap);

/* ---- mixture of experts, dropless (experts.c): ops.def's topk_route .. expert_combine_grad ---- */

void mtx_topk_route(float *weights, int32_t *experts, const float *logits, int n, int num_experts, int k, int normalize,
                    int bf16);
void mtx_topk_route_grad(float *dlogits, const float *dweights, const float *weights, const int32_t *experts, int n,
                         int num_experts, int k);
void mtx_expert_sort(int32_t *order, int32_t *offsets, const int32_t *experts, int n, int num_experts, int k);
void mtx_gather_rows(float *xs, const float *x, const int32_t *order, int n, int d, int k);
void mtx_gather_rows_grad(float *dx, const float *dxs, const int32_t *order, int n, int d, int k);
void mtx_grouped_matmul(float *ys, const float *xs, const float *w, const int32_t *offsets, int m, int n, int kdim,
                        int num_experts, int local, int tb);
void mtx_grouped_matmul_wgrad(float *dw, const float *xs, const float *dys, const int32_t *offsets, int m, int n,
                              int kdim, int num_experts, int local);
/* bf16 operands through ragged oneDNN plans (ys bf16, dw float32) */
void mtx_grouped_matmul_bf16(const mtx_gemm_plan *plan, mtx_bf16 *ys, const mtx_bf16 *xs, const mtx_bf16 *w,
                             const int32_t *offsets, int m, int n, int kdim, int num_experts, int local);
void mtx_grouped_matmul_wgrad_bf16(const mtx_gemm_plan *plan, float *dw, const mtx_bf16 *xs, const mtx_bf16 *dys,
                                   const int32_t *offsets, int m, int n, int kdim, int num_experts, int local);
void mtx_expert_combine(float *y, const float *ys, const int32_t *order, const float *weights, int n, int d, int k);
void mtx_expert_combine_grad(float *dys, float *dweights, const float *dy, const float *ys, const int32_t *order,
                             const float *weights, int n, int d, int k);
void mtx_expert_capacity(float *keep, const int32_t *experts, int sequences, int t, int num_experts, int k,
                         int capacity);
void mtx_moe_lb_loss(float *loss, const float *logits, const int32_t *experts, int sequences, int t, int num_experts,
                     int k, int bf16, float scale);
void mtx_moe_lb_loss_grad(float *dlogits, const float *logits, const int32_t *experts, const float *dloss,
                          int sequences, int t, int num_experts, int k, int bf16, float scale);

/* ---- the loss (loss.c) ---- */

/* The mean over non-zero seg, or with sum their sum. */
float mtx_cross_entropy_forward(const float *logits, const int32_t *targets, const int32_t *seg, int n, int vocab,
                                float *weight, int sum);
void mtx_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, const int32_t *seg,
                                int n, int vocab, const float *dloss, int sum);
/* From bf16 logits: computed in float32, dlogits rounded to bf16 once. */
float mtx_cross_entropy_forward_bf16(const mtx_bf16 *logits, const int32_t *targets, const int32_t *seg, int n,
                                     int vocab, float *weight, int sum);
void mtx_cross_entropy_backward_bf16(mtx_bf16 *dlogits, const mtx_bf16 *logits, const int32_t *targets,
                                     const int32_t *seg, int n, int vocab, const float *dloss, int sum);
/* Rows [first, first + n) of x [rows, width] (elements of elem bytes) into
 * y; and back: y [rows, width] zero but for dy at those rows. */
void mtx_copy_rows(void *y, const void *x, size_t first, size_t n, size_t width, size_t elem);
void mtx_copy_rows_back(void *y, const void *dy, size_t first, size_t n, size_t width, size_t rows, size_t elem);

/* ---- optimizers and schedules (optimizers.c) ---- */

double mtx_sum_of_squares(const float *x, size_t n);
void mtx_adamw_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip, float lr, float b1,
                      float b2, float eps, float eps_root, float wd, float bc1, float bc2);
void mtx_adam_pax_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip, float lr,
                         float decay1, float decay2, float eps, float eps_root, float wd);
float mtx_cosine_schedule(int64_t step, int64_t total, float peak, float warmup_fraction, float final_fraction);
float mtx_wsd_schedule(int64_t step, int64_t total, float peak, float warmup_fraction, float decay_fraction,
                       float final_fraction, int cosine);
void mtx_sgd_update(float *p, const float *g, size_t n, float clip, float lr);
void mtx_adamw_nesterov_update(float *p, float *mu, float *nu, const float *g, size_t n, float clip, float lr,
                               float b1, float b2, float eps, float eps_root, float wd, float t);
size_t mtx_muon_workspace(int rows, int cols);
void mtx_muon_update(float *p, float *mu, const float *g, int rows, int cols, float clip, float lr, float beta,
                     float eps, float wd, float t, float *work);

/* ---- collectives (collectives.c): MPI when launched by mpirun ---- */

void mtx_collectives_start(void);
void mtx_collectives_stop(void);
void mtx_collectives_abort(int status);        /* ends every rank of the job */
int mtx_rank(void);
int mtx_ranks(void);
int mtx_local_ranks(void);
/* Mesh axes, as bits of a set of axes a collective runs over. */
enum { MTX_AXIS_DATA = 1, MTX_AXIS_FSDP = 2, MTX_AXIS_TENSOR = 4, MTX_AXIS_EXPERT = 8 };
/* once ranks == data x fsdp x tensor x expert */
void mtx_mesh_start(int data, int fsdp, int tensor, int expert);
int mtx_mesh_coord(int axis);                  /* this rank's index along axis 0 data, 1 fsdp, 2 tensor, 3 expert */
void mtx_all_reduce_sum(float *x, size_t n, int axes);        /* in place */
void mtx_all_reduce_sum_f64(double *x, size_t n, int axes);
long long mtx_all_reduce_min(long long x);     /* over every rank */
/* FSDP: a tensor of n elements is held in chunks of ceil(n / fsdp), padded
 * with zeros, one per rank of the fsdp axis. */
size_t mtx_shard_chunk(size_t n, int shards);
size_t mtx_shard_range(size_t n, size_t *first);   /* this device's elements: count, and the first */
int mtx_batch_index(void);                     /* this device's slice of the batch (data x fsdp x expert) */
void mtx_all_gather(float *full, const float *shard, size_t n);
void mtx_all_gather_bf16(mtx_bf16 *full, const mtx_bf16 *shard, size_t n);
void mtx_reduce_scatter(float *shard, const float *full, size_t n);
/* Expert parallelism: a MoE layer's rows, sorted by expert, to the ranks of
 * their experts (back 0) and back (back 1); see collectives.c. */
void mtx_expert_counts(int32_t *recv_offsets, const int32_t *offsets, int num_experts);
void mtx_all_to_all(void *out, const void *in, const int32_t *offsets, const int32_t *recv_offsets, int num_experts,
                    size_t row_bytes, size_t out_rows, int back);

/* ---- parallel loops (parallel.c) ---- */

/* What a step's parallel loops read: its arena and state, its random key
 * and the microbatch in progress. */
typedef struct {
    float *arena;
    void *state;
    mtx_rng_key rng;
    int64_t micro;
} mtx_frame;
typedef void (*mtx_loop_body)(const mtx_frame *f, size_t first, size_t end);
/* body(f, first, end) over [0, n) as a job of mtx_parallel (each element ~1 ns). */
void mtx_parallel_for(mtx_loop_body body, const mtx_frame *f, size_t n);

/* The one place that decides how work is split over the trainer's threads.
 * fn(ctx, first, end) over pieces covering [0, n), boundaries at multiples of
 * align; cost_ns is the job's estimated serial time. Below
 * MTX_PARALLEL_MIN_NS, or from inside a job, it runs on the caller. Each unit
 * must be computed the same way whichever piece holds it, so that results
 * do not depend on the thread count or on scheduling. */
typedef void (*mtx_range_fn)(void *ctx, size_t first, size_t end);
void mtx_parallel(mtx_range_fn fn, void *ctx, size_t n, size_t align, double cost_ns);
/* The same for n tasks of unequal cost (attention's causal blocks): many
 * small pieces, claimed as threads become free. */
void mtx_parallel_tasks(mtx_range_fn fn, void *ctx, size_t n, double cost_ns);
/* Measured here (tools/bench/busy_neighbour.sh, runtime/parallel.c): waking
 * a sleeping thread and joining it costs 20-60 us on a quiet 2-core VM, and
 * a thread sharing its core with another process can start a time slice
 * late: work worth less than this runs on one thread. */
#define MTX_PARALLEL_MIN_NS 200000.0
/* Rough serial costs for estimates: an elementwise element (a few loads, a
 * store, some arithmetic), a float32 and a bf16 multiply-add in a GEMM. */
#define MTX_COST_ELEMENT_NS 1.0
#define MTX_COST_FLOP_NS (1.0 / 80.0)
#define MTX_COST_FLOP_BF16_NS (1.0 / 180.0)
/* How many jobs ran on more than one thread so far (the trainer reports the
 * number a step has). */
long long mtx_parallel_jobs(void);
/* The calling thread's index in the job it runs (0 outside jobs): per-thread
 * scratch of kernels, of at most mtx_num_threads() threads. */
int mtx_thread_index(void);

/* ---- memory (arena.c) ---- */

double mtx_seconds(void);                 /* monotonic clock, for timings */
void *mtx_alloc(size_t bytes);            /* 64-byte aligned, zeroed; exits on failure */
/* The kernels' (and bf16 GEMM plans') scratch: reserved, growing only, when a
 * state or plan is made; used by one kernel at a time inside a step. Each
 * reserve is a hold, given back by one release; the last frees it. */
void mtx_scratch_reserve(size_t bytes);
void mtx_scratch_release(void);
void *mtx_scratch(void);
size_t mtx_scratch_bytes(void);
void mtx_free(void *p);

/* ---- what the generated code exchanges with the runtime ---- */

typedef struct {
    int32_t *inputs;                      /* [batch, seq] token ids */
    int32_t *targets;                     /* [batch, seq] next tokens */
    int32_t *segmentation;                /* [batch, seq] 0 where padding */
    int batch, seq;
    int32_t *segment_ids;                 /* [batch, seq] the example each input is of (packed rows: 1, 2, ..., padding 0) */
} mtx_batch;

typedef struct {
    double loss;                          /* mean cross-entropy over real targets (+ moe_lb_loss) */
    double moe_lb_loss;                   /* mixtral's load-balancing loss, mean over layers (0 without) */
    double weight;                        /* number of real targets */
    double grad_norm;                     /* global norm before clipping */
    double lr;                            /* learning rate used for the update */
} mtx_metrics;

typedef struct mtx_state mtx_state;       /* defined by the generated program */
typedef struct mtx_cache mtx_cache;       /* decoding's keys and values, likewise */

typedef enum { MTX_F32, MTX_I32, MTX_I64, MTX_U64 } mtx_dtype;
typedef enum { MTX_PARAM, MTX_OPT_STATE, MTX_COUNTER } mtx_tensor_kind;

typedef struct {
    const char *name;                     /* e.g. params/layers.0.attn.query */
    int rank;
    int64_t shape[4];
    mtx_dtype dtype;
    size_t offset;                        /* bytes into the state's memory block */
    mtx_tensor_kind kind;
} mtx_tensor_desc;

typedef struct {
    const char *key, *value;              /* resolved config, YAML text */
    int runtime;                          /* may be changed when starting the trainer */
} mtx_config_entry;

typedef void (*mtx_step_nnx)(mtx_state *, const mtx_batch *, mtx_metrics *);
typedef void (*mtx_step_linen)(mtx_state *, const mtx_batch *, mtx_rng_key, mtx_metrics *);
typedef void (*mtx_eval_nnx)(const mtx_state *, const mtx_batch *, mtx_metrics *);
typedef void (*mtx_eval_linen)(const mtx_state *, const mtx_batch *, mtx_rng_key, mtx_metrics *);

/* A parameter as Hugging Face's checkpoints hold it (trainer/hf_checkpoint.c):
 * the tensor `name` is the parameter (or its slice along dim 0) with each
 * value v stored as (v - shift) / scale, [out, in] where transpose
 * (nn.Linear's layout), and with rope_pairs (the head dim) each head's
 * output features in rotate_half's order (halves) where the parameter has
 * interleaved pairs. The whole parameter's shape and how a device's share
 * is cut from it (as the generated init draws it) let a sharded state
 * import and export. */
typedef struct {
    int tensor;                           /* index into mtx_program.tensors */
    const char *name;                     /* e.g. model.layers.0.self_attn.q_proj.weight */
    float scale;                          /* 1: none */
    int rank;                             /* the whole parameter, before fsdp, tensor or expert splits */
    int64_t shape[3];
    int transpose;
    float shift;                          /* gemma's norms: HF's w is the parameter's 1 + w */
    int rope_pairs;
    int slice;                            /* 0: the whole parameter; s: its [s - 1] along dim 0 (mixtral's experts) */
    int vocab;                            /* HF's rows may be fewer (a padded vocabulary): the rest are zero */
    int split_ways, split_axis;           /* tensor or expert share (split_axis: the mesh axis, 2 or 3): runs */
    int64_t split_inner;                  /* of split_inner elements, one in every split_ways, at the device's coordinate */
    int fsdp;                             /* the device holds an fsdp chunk of its share */
} mtx_hf_tensor;
/* A config.json field and the value (JSON) the program's config gives it;
 * dflt: the value Hugging Face assumes when the field is absent (NULL:
 * the field must be there). check: how an import compares them. */
enum { MTX_HF_EQUAL, MTX_HF_AT_MOST, MTX_HF_NULL_OR_AT_LEAST, MTX_HF_EXPORT_ONLY };
typedef struct { const char *key, *value, *dflt; int check; } mtx_hf_field;

/* Everything the runtime knows about a compiled program. */
typedef struct {
    const char *model_name;
    int pure_nnx;
    int mesh_data, mesh_fsdp, mesh_tensor, mesh_expert;  /* one MPI rank per device of the mesh */
    int batch, seq, eval_batch, vocab;
    double flops_per_step;                /* 6 x matmul params x tokens + attention */
    long long parallel_regions;           /* places a train step may split work among threads */
    int bf16;                             /* dtype bfloat16: activations and GEMMs in bf16 */
    int moe_lb_loss;                      /* metrics report learning/moe_lb_loss (mixtral, weight > 0) */
    size_t state_bytes;                   /* tensors of the state, in one block */
    size_t arena_bytes;                   /* temporaries of one step */
    int ntensors;
    const mtx_tensor_desc *tensors;
    int nconfig;
    const mtx_config_entry *config;
    mtx_state *(*state_new)(void);        /* allocates the state and its arena */
    void (*state_free)(mtx_state *);
    void *(*state_memory)(const mtx_state *);
    void *(*state_arena)(const mtx_state *);  /* temporaries of the last step (tests, tools) */
    void (*init)(mtx_state *, mtx_rng_key);
    void *train_step;                     /* mtx_step_nnx or mtx_step_linen by pure_nnx */
    void *eval_step;                      /* mtx_eval_nnx or mtx_eval_linen */
    /* Decoding one sequence (NULL when the mesh has more than one device):
     * prefill takes prefill_length tokens (a prompt, padded) from position
     * 0, decode one token at *position; both write the caches and the f32
     * logits of every token they take ([n, vocab]). */
    mtx_cache *(*cache_new)(void);
    void (*cache_free)(mtx_cache *);
    void (*prefill)(const mtx_state *, mtx_cache *, const int32_t *tokens, const int32_t *position, float *logits);
    void (*decode)(const mtx_state *, mtx_cache *, const int32_t *tokens, const int32_t *position, float *logits);
    int prefill_length, cache_length;     /* max_prefill_predict_length (at most cache_length), max_target_length */
    size_t cache_bytes;
    /* Hugging Face checkpoints (0 where the model has no HF form: hf_missing says why) */
    int nhf, nhf_config;
    const mtx_hf_tensor *hf;
    const mtx_hf_field *hf_config;
    const char *hf_missing;
} mtx_program;

/* Called by a generated train step before its first write to the state:
 * waits for a checkpoint write still reading it. */
void mtx_state_will_change(void);

/* ---- the trainer (trainer/train.c) ---- */

/* main() of a built trainer: parses run-time key=value arguments and trains
 * (argv[1] "decode": mtx_decode_main, "export": mtx_export_main, mtxrt_trainer.h). */
int mtx_main(const mtx_program *prog, int argc, char **argv);

#endif
