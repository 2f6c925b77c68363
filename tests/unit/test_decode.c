/* Decoding (prefill_step, decode_step) against the eval step: the logits of
 * every position, from a prompt in one call and then one token per call,
 * equal the eval forward's over the same tokens: both families (llama2 with
 * grouped heads and RoPE, gpt3 with learned positions and tied logits),
 * float32 within 1e-5 of the largest logit, bf16 within its rounding; a
 * prompt shorter than the prefill (padded) continues exactly as a full one. */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The eval step's logits of sequence 0, [t, vocab], copied out of the arena. */
static float *eval_logits(const Program *p, const Loaded *l, mtx_state *st, const mtx_batch *b, int64_t vocab)
{
    mtx_metrics m = {0};
    if (cfg_bool(p->cfg, K_pure_nnx)) ((mtx_eval_nnx)l->desc->eval_step)(st, b, &m);
    else ((mtx_eval_linen)l->desc->eval_step)(st, b, mtx_rng_seed(1), &m);
    const Value *logits = NULL;
    for (int i = 0; i < p->eval.nops; i++)
        if (!strcmp(p->eval.ops[i]->out[0] ? p->eval.ops[i]->out[0]->name : "", "logits")) logits = p->eval.ops[i]->out[0];
    ck_assert_msg(logits != NULL, "the eval step has no logits value");
    size_t n = (size_t)b->seq * (size_t)vocab;
    float *out = malloc(sizeof(float) * n);
    const char *arena = l->desc->state_arena(st);
    for (size_t i = 0; i < n; i++)
        out[i] = logits->dtype == DT_BF16 ? mtx_bf16_to_f32(((const mtx_bf16 *)(arena + logits->offset))[i])
                                          : ((const float *)(arena + logits->offset))[i];
    return out;
}

static void near_row(const char *what, int pos, const float *got, const float *want, int64_t vocab, double tol)
{
    double scale = 0;
    for (int64_t j = 0; j < vocab; j++) scale = fmax(scale, fabs(want[j]));
    for (int64_t j = 0; j < vocab; j++)
        ck_assert_msg(fabs(got[j] - want[j]) <= tol * scale, "%s: position %d, logit %lld = %.7g, eval step %.7g", what,
                      pos, (long long)j, (double)got[j], (double)want[j]);
}

/* Prefill `prompt` real tokens of seq (padded to the prefill length), then
 * decode the rest one at a time, comparing every position's logits. */
static void decode_and_compare(const char *what, const Loaded *l, mtx_state *st, const int32_t *seq, int t,
                               int prompt, const float *want, int64_t vocab, double tol)
{
    const mtx_program *d = l->desc;
    int P = d->prefill_length;
    mtx_cache *cache = d->cache_new();
    int32_t *padded = calloc((size_t)P, sizeof(int32_t)), zero = 0;
    memcpy(padded, seq, sizeof(int32_t) * (size_t)prompt);
    float *out = malloc(sizeof(float) * (size_t)P * (size_t)vocab);
    d->prefill(st, cache, padded, &zero, out);
    for (int i = 0; i < prompt; i++) near_row(what, i, out + (size_t)i * vocab, want + (size_t)i * vocab, vocab, tol);
    for (int32_t pos = prompt; pos < t; pos++) {
        d->decode(st, cache, seq + pos, &pos, out);
        near_row(what, pos, out, want + (size_t)pos * vocab, vocab, tol);
    }
    d->cache_free(cache);
    free(padded);
    free(out);
}

static void check_decoding(const char *what, int n, char **overrides, double tol)
{
    Config *c = load_config(n, overrides);
    char err[1024];
    Program *p = compile_program(c, NULL, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    Loaded l = load_program(p);
    ck_assert_msg(l.desc->decode != NULL, "%s: no decoding functions", what);
    mtx_state *st = l.desc->state_new();
    l.desc->init(st, mtx_rng_seed(3));
    int64_t vocab = cfg_int(c, K_vocab_size);
    mtx_batch b;
    mtx_batch_alloc(&b, l.desc->eval_batch, l.desc->seq);
    for (int i = 0; i < b.batch * b.seq; i++) {
        b.inputs[i] = (int32_t)((i * 7919u + 13u) % (uint32_t)vocab);
        b.targets[i] = b.inputs[(i + 1) % (b.batch * b.seq)];
        b.segmentation[i] = 1;
    }
    float *want = eval_logits(p, &l, st, &b, vocab);
    int P = l.desc->prefill_length;
    decode_and_compare(what, &l, st, b.inputs, b.seq, P, want, vocab, tol);       /* a whole prefill */
    decode_and_compare(what, &l, st, b.inputs, b.seq, P / 2 + 1, want, vocab, tol); /* a short, padded prompt */
    free(want);
    mtx_batch_free(&b);
    l.desc->state_free(st);
    unload_program(&l);
    program_free(p);
    config_free(c);
}

START_TEST(llama2_grouped_heads)
{
    char *o[] = {"model_name=tiny", "dtype=float32", "max_prefill_predict_length=24"};
    check_decoding("tiny", 3, o, 1e-5);
}
END_TEST

START_TEST(gpt3_learned_positions)
{
    char *o[] = {"model_name=gpt3-52k", "dtype=float32", "max_target_length=48", "max_prefill_predict_length=20",
                 "pure_nnx=true"};
    check_decoding("gpt3-52k", 5, o, 1e-5);
}
END_TEST

START_TEST(flash_trained_bf16)
{
    /* the eval step's attention is the fused kernel here (flash from 128 tokens) */
    char *o[] = {"model_name=tiny", "dtype=bfloat16", "max_target_length=160", "max_prefill_predict_length=40"};
    check_decoding("tiny bf16", 4, o, 5e-3);
}
END_TEST

START_TEST(soft_capped_attention)
{
    /* gemma2's attn_logits_soft_cap, low enough to bend the scores; the eval step runs the fused kernel */
    char *o[] = {"model_name=tiny-gemma", "dtype=float32", "max_target_length=140", "max_prefill_predict_length=30",
                 "attn_logits_soft_cap=0.5", "final_logits_soft_cap=2"};
    check_decoding("tiny-gemma, soft caps", 6, o, 1e-5);
}
END_TEST

START_TEST(gemma2_local_global)
{
    /* local layers' window (8) far shorter than the prompt, a float32 global
     * layer, both soft caps; the eval step runs the fused kernel */
    char *o[] = {"model_name=tiny-gemma2", "dtype=float32", "max_target_length=140", "max_prefill_predict_length=30"};
    check_decoding("tiny-gemma2", 4, o, 1e-5);
}
END_TEST

START_TEST(llama31_rope)
{
    /* Llama 3.1's RoPE: pairs, scaled frequencies; the cache's keys rotated at their positions */
    char *o[] = {"model_name=llama3.1-8b", "base_emb_dim=64", "base_num_query_heads=4",
                 "base_num_kv_heads=2", "base_mlp_dim=128", "base_num_decoder_layers=2", "head_dim=16",
                 "vocab_size=256", "dtype=float32", "max_target_length=48", "max_prefill_predict_length=20"};
    check_decoding("llama3.1", 11, o, 1e-5);
}
END_TEST

START_TEST(mixtral_experts)
{
    /* every new token routed to its 2 of 4 experts, prefill and one token at a time */
    char *o[] = {"model_name=tiny-mixtral", "dtype=float32", "max_target_length=48", "max_prefill_predict_length=20"};
    check_decoding("tiny-mixtral", 4, o, 1e-5);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 900);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, llama2_grouped_heads);
    tcase_add_test(tc, gpt3_learned_positions);
    tcase_add_test(tc, llama31_rope);
    tcase_add_test(tc, mixtral_experts);
    tcase_add_test(tc, flash_trained_bf16);
    tcase_add_test(tc, soft_capped_attention);
    tcase_add_test(tc, gemma2_local_global);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
