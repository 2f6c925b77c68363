/* jit_load: a program compiled and linked in memory runs and matches the
 * descriptor it was emitted from; broken C is reported with file and line. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* The config compiled, emitted and loaded in memory. */
static const mtx_program *jit_compile(Config *c, Program **p, GeneratedC *g, Jit **jit)
{
    char err[16384];
    *p = compile_program(c, NULL, err, sizeof err);
    ck_assert_msg(*p, "%s: %s", cfg_str(c, K_model_name), err);
    emit_c_text(*p, "a unit test", g);
    JitTimes t = {0};
    const mtx_program *prog = jit_load(g, NULL, jit, &t, err, sizeof err);
    ck_assert_msg(prog != NULL, "%s", err);
    return prog;
}

START_TEST(runs_a_step)
{
    char *ov[] = {"model_name=tiny", "per_device_batch_size=2", "max_target_length=16"};
    Config *c = load_config(3, ov);
    Program *p;
    GeneratedC g;
    Jit *jit;
    const mtx_program *prog = jit_compile(c, &p, &g, &jit);
    ck_assert_str_eq(prog->model_name, "tiny");
    ck_assert_int_eq(prog->state_bytes, p->state_bytes);
    ck_assert_int_eq(prog->batch, 2);
    mtx_state *st = prog->state_new();
    prog->init(st, mtx_rng_seed(0));
    mtx_batch b;
    mtx_batch_alloc(&b, 2, 16);
    for (int i = 0; i < 32; i++) b.inputs[i] = b.targets[i] = i % 256, b.segmentation[i] = 1;
    mtx_metrics m = {0};
    ((mtx_step_linen)prog->train_step)(st, &b, mtx_rng_seed(1), &m);
    ck_assert(m.loss > 4 && m.loss < 8);                 /* about ln(256) at init */
    ck_assert_int_eq(m.weight, 32);
    mtx_batch_free(&b);
    prog->state_free(st);
    jit_free(jit);
    generated_c_free(&g);
    program_free(p);
    config_free(c);
}
END_TEST

START_TEST(reports_compile_errors)
{
    GeneratedC g = {.step_c = xstrdup("#include \"step.h\"\nint f(void)\n{\n    return undeclared_name;\n}\n"),
                    .step_h = xstrdup("#include \"mtxrt.h\"\n"), .main_c = xstrdup("")};
    Jit *jit;
    JitTimes t;
    char err[16384];
    ck_assert_ptr_null(jit_load(&g, NULL, &jit, &t, err, sizeof err));
    ck_assert_msg(strstr(err, "/mtxc-generated/step.c:4:12: error: use of undeclared identifier 'undeclared_name'"), "%s", err);
    ck_assert_msg(strstr(err, "mtxc run --keep-source DIR keeps the source"), "%s", err);
    /* With --keep-source the message points into the kept file. */
    char dir[] = "/tmp/mtxc-keep-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_null(jit_load(&g, dir, &jit, &t, err, sizeof err));
    char *want = xfmt("%s/step.c:4:12: error:", dir);
    ck_assert_msg(strstr(err, want), "%s", err);
    char *kept = xfmt("%s/step.c", dir);
    ck_assert_int_eq(access(kept, R_OK), 0);
    const char *files[] = {"step.c", "step.h", "main.c", "mtxrt.h"};
    for (int i = 0; i < 4; i++) {
        char *f = xfmt("%s/%s", dir, files[i]);
        unlink(f);
        free(f);
    }
    rmdir(dir);
    free(want);
    free(kept);
    generated_c_free(&g);
}
END_TEST

/* pure_nnx true and false with dropout on: after 20 steps every parameter and
 * optimizer moment is the same, bit for bit. The Linen form gets the keys the
 * runtime would pass; the NNX form keeps and advances its own. */
static const mtx_program *compile_tiny(bool nnx, Config **c, Program **p, Jit **jit, GeneratedC *g)
{
    char *ov[] = {"model_name=tiny", "dropout_rate=0.2", "enable_dropout=true",
                  nnx ? "pure_nnx=true" : "pure_nnx=false"};
    *c = load_config(4, ov);
    char err[16384];
    *p = compile_program(*c, NULL, err, sizeof err);
    ck_assert_msg(*p, "%s", err);
    emit_c_text(*p, "a unit test", g);
    JitTimes t;
    const mtx_program *prog = jit_load(g, NULL, jit, &t, err, sizeof err);
    ck_assert_msg(prog, "%s", err);
    return prog;
}

/* Packed rows (MaxText's inputs_segmentation): two documents packed into one
 * row give the loss they give each in a row of its own, as no token attends
 * across a segment and positions restart in each; for llama's RoPE with
 * dot_product and with the fused kernel (a window of 4, gemma2) and gpt3's
 * learned positions. The sum of losses over real targets is compared. */
static double eval_sum(const mtx_program *prog, mtx_state *st, const mtx_batch *b)
{
    mtx_metrics m = {0};
    if (prog->pure_nnx) ((mtx_eval_nnx)prog->eval_step)(st, b, &m);
    else ((mtx_eval_linen)prog->eval_step)(st, b, mtx_rng_seed(1), &m);
    return m.loss * m.weight;
}

/* row r of b: tokens [from, from + n) of doc at position at, segment id `id`, targets within the doc */
static void place_doc(mtx_batch *b, int r, int at, const int32_t *doc, int n, int id)
{
    for (int i = 0; i < n; i++) {
        size_t x = (size_t)r * b->seq + at + i;
        b->inputs[x] = doc[i];
        b->targets[x] = i + 1 < n ? doc[i + 1] : 0;
        b->segmentation[x] = i + 1 < n;
        b->segment_ids[x] = id;
    }
}

START_TEST(packed_rows)
{
    static const char *configs[][6] = {
        {"model_name=tiny", "attention=dot_product"},
        {"model_name=tiny", "attention=flash"},
        {"model_name=tiny-gemma2", "attention=flash"},
        {"model_name=tiny-gemma2", "attention=dot_product"},
        {"model_name=gpt3-52k", "attention=dot_product"},
    };
    enum { T = 16, NA = 6, NB = 10 };
    int32_t a[NA], d[NB];
    for (int i = 0; i < NA; i++) a[i] = (i * 37 + 5) % 200;
    for (int i = 0; i < NB; i++) d[i] = (i * 53 + 11) % 200;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        char *ov[] = {(char *)configs[c][0], (char *)configs[c][1], "override_model_config=true",
                      "per_device_batch_size=2", "max_target_length=16", "dtype=float32", "sliding_window_size=4"};
        Config *cfg = load_config(c >= 2 && c <= 3 ? 7 : 6, ov);
        Program *p;
        GeneratedC g;
        Jit *jit;
        const mtx_program *prog = jit_compile(cfg, &p, &g, &jit);
        mtx_state *st = prog->state_new();
        prog->init(st, mtx_rng_seed(3));
        mtx_batch packed, alone;
        mtx_batch_alloc(&packed, 2, T), mtx_batch_alloc(&alone, 2, T);
        place_doc(&packed, 0, 0, a, NA, 1), place_doc(&packed, 0, NA, d, NB, 2);   /* row 1: padding */
        place_doc(&alone, 0, 0, a, NA, 1), place_doc(&alone, 1, 0, d, NB, 1);
        double x = eval_sum(prog, st, &packed), y = eval_sum(prog, st, &alone);
        ck_assert_msg(fabs(x - y) <= 1e-5 * fabs(y), "%s %s: packed %.9g, separate %.9g", configs[c][0], configs[c][1],
                      x, y);
        place_doc(&packed, 0, NA, d, NB, 1);   /* one segment: B sees A, a different loss */
        double z = eval_sum(prog, st, &packed);
        ck_assert_msg(fabs(z - y) > 1e-4 * fabs(y), "%s %s: one segment %.9g, separate %.9g", configs[c][0],
                      configs[c][1], z, y);
        mtx_batch_free(&packed), mtx_batch_free(&alone);
        prog->state_free(st);
        jit_free(jit);
        generated_c_free(&g);
        program_free(p);
        config_free(cfg);
    }
}
END_TEST

START_TEST(nnx_equals_linen)
{
    Config *c[2];
    Program *p[2];
    Jit *jit[2];
    GeneratedC g[2];
    const mtx_program *prog[2];
    mtx_state *st[2];
    for (int i = 0; i < 2; i++) {
        prog[i] = compile_tiny(i == 0, &c[i], &p[i], &jit[i], &g[i]);
        st[i] = prog[i]->state_new();
        prog[i]->init(st[i], mtx_rng_seed(3));
        for (int j = 0; j < prog[i]->ntensors; j++)
            if (!strcmp(prog[i]->tensors[j].name, "schedule_steps"))
                *(int64_t *)((unsigned char *)prog[i]->state_memory(st[i]) + prog[i]->tensors[j].offset) = 20;
    }
    ck_assert(prog[0]->pure_nnx && !prog[1]->pure_nnx);
    char err[256];
    mtx_data_options options = {.type = "synthetic", .path = "", .eval_path = "", .tokenizer_type = "sentencepiece",
                                .tokenizer_path = "", .vocab = 256, .batch = prog[0]->batch, .seq = prog[0]->seq,
                                .shuffle = true, .packing = true};
    mtx_data *data = mtx_data_open(&options, err, sizeof err);
    mtx_batch b;
    mtx_batch_alloc(&b, prog[0]->batch, prog[0]->seq);
    mtx_rng_key key = mtx_rng_first_step_key(mtx_rng_seed(3));
    for (int step = 0; step < 20; step++) {
        mtx_data_next(data, &b);
        mtx_metrics m[2];
        ((mtx_step_nnx)prog[0]->train_step)(st[0], &b, &m[0]);
        ((mtx_step_linen)prog[1]->train_step)(st[1], &b, key, &m[1]);
        key = mtx_rng_next_step_key(key);
        ck_assert(m[0].loss == m[1].loss);
    }
    int compared = 0;
    for (int j = 0; j < prog[1]->ntensors; j++) {
        const mtx_tensor_desc *t = &prog[1]->tensors[j];
        if (t->kind == MTX_COUNTER) continue;
        size_t bytes = 4;
        for (int d = 0; d < t->rank; d++) bytes *= (size_t)t->shape[d];
        const mtx_tensor_desc *u = NULL;
        for (int k = 0; k < prog[0]->ntensors; k++)
            if (!strcmp(prog[0]->tensors[k].name, t->name)) u = &prog[0]->tensors[k];
        ck_assert_msg(u != NULL, "%s missing from the NNX program", t->name);
        ck_assert_msg(!memcmp((unsigned char *)prog[0]->state_memory(st[0]) + u->offset,
                              (unsigned char *)prog[1]->state_memory(st[1]) + t->offset, bytes),
                      "%s differs between pure_nnx true and false", t->name);
        compared++;
    }
    ck_assert_int_eq(compared, 21 * 3);                     /* params, mu, nu */
    mtx_batch_free(&b);
    mtx_data_close(data);
    for (int i = 0; i < 2; i++) {
        prog[i]->state_free(st[i]);
        jit_free(jit[i]);
        generated_c_free(&g[i]);
        program_free(p[i]);
        config_free(c[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jit");
    TCase *tc = tcase_create("jit");
    tcase_set_timeout(tc, 600);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, runs_a_step);
    tcase_add_test(tc, reports_compile_errors);
    tcase_add_test(tc, nnx_equals_linen);
    tcase_add_test(tc, packed_rows);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
