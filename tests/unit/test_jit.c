/* jit_load: a program compiled and linked in memory runs and matches the
 * descriptor it was emitted from; broken C is reported with file and line. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

START_TEST(runs_a_step)
{
    char *ov[] = {"model_name=tiny", "per_device_batch_size=2", "max_target_length=16"};
    Config *c = load_config(3, ov);
    char err[16384];
    Program *p = compile_program(c, NULL, err, sizeof err);
    ck_assert_msg(p, "%s", err);
    GeneratedC g;
    emit_c_text(p, "a unit test", &g);
    Jit *jit;
    JitTimes t = {0};
    const mtx_program *prog = jit_load(&g, NULL, &jit, &t, err, sizeof err);
    ck_assert_msg(prog != NULL, "%s", err);
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

int main(void)
{
    Suite *s = suite_create("jit");
    TCase *tc = tcase_create("jit");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, runs_a_step);
    tcase_add_test(tc, reports_compile_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
