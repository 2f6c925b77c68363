/* The IR: printer text, verifier errors, and the invariants of fuse and memplan. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static Program *compiled(const char *last, Config **c)
{
    char *ov[] = {"model_name=tiny"};
    *c = load_config(1, ov);
    char err[1024];
    Program *p = compile_program(*c, last, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    return p;
}

static char *printed(const Program *p)
{
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    ir_print(f, p);
    fclose(f);
    return text;
}

START_TEST(printer_text)
{
    Config *c;
    Program *p = compiled("build", &c);
    char *a = printed(p), *b = printed(p);
    ck_assert_str_eq(a, b);                                  /* stable */
    ck_assert_msg(strstr(a, "# mtxc IR after build: model tiny, decoder_block llama2, 2 layers\n"), "%s", a);
    ck_assert(strstr(a, "  param   @layers.0.self_attention.key.kernel: f32[64, 32]  init=truncated_normal(0.142106)  axes=(embed, kv_heads)\n"));
    /* dtype bfloat16 (the default): float32 weights, each cast to bf16 once where a matmul reads it */
    ck_assert(strstr(a, "  %layers.0.attention_input: bf16[8, 64, 64] = rmsnorm %embedding, "
                        "@layers.0.pre_self_attention_layer_norm.scale  n=512  d=64  eps=1e-05\n"));
    ck_assert(strstr(a, "= attention_scores %layers.1.self_attention.query_rotated, "
                        "%layers.1.self_attention.key_rotated  b=8  t=64  hq=4  hkv=2  dh=16  window=0  scale=1  cap=0\n"));
    ck_assert(strstr(a, "  %layers.0.self_attention.query.kernel.bf16: bf16[64, 64] = cast @layers.0.self_attention.query.kernel\n"));
    ck_assert(strstr(a, "  %layers.0.self_attention.query: bf16[8, 64, 64] = matmul %layers.0.attention_input, "
                        "%layers.0.self_attention.query.kernel.bf16  m=512  n=64  k=64  ta=0  tb=0  alpha=1\n"));
    /* cast_logits_to_fp32 is the loss kernel's: it reads bf16 logits as float32 */
    ck_assert(strstr(a, "  %logits: bf16[8, 64, 256] = matmul %decoder_output, %logits_dense.kernel.bf16  m=512  n=256  k=64  ta=0  tb=0  alpha=1\n"));
    ck_assert(strstr(a, "  %loss: f32[1], %total_weight: f32[1] = cross_entropy %logits, %targets, %targets_segmentation  n=512  vocab=256  first=0  sum=0\n"));
    ck_assert_ptr_null(strstr(a, "grad."));                  /* no backward yet */
    free(a);
    free(b);
    program_free(p);
    config_free(c);
}
END_TEST

START_TEST(every_pass_prints)
{
    for (int i = 0; i < num_passes; i++) {
        Config *c;
        Program *p = compiled(passes[i].name, &c);
        char *text = printed(p);
        char *head = xfmt("# mtxc IR after %s:", passes[i].name);
        ck_assert_msg(!strncmp(text, head, strlen(head)), "%s", text);
        free(head);
        free(text);
        program_free(p);
        config_free(c);
    }
}
END_TEST

/* A two-op program to break on purpose. */
typedef struct { Config *c; Program *p; Value *x, *w, *y, *z; Op *mm, *act; } Small;

static Small small(void)
{
    Small s;
    char *ov[] = {"model_name=tiny"};
    s.c = load_config(1, ov);
    s.p = program_new(s.c);
    int64_t xd[2] = {4, 3}, wd[2] = {3, 5}, yd[2] = {4, 5};
    s.x = state_new(s.p, "x", 2, xd, INIT_ZEROS, 0, NULL);
    s.w = state_new(s.p, "w", 2, wd, INIT_ZEROS, 0, NULL);
    s.y = value_new(s.p, "y", DT_F32, 2, yd, V_TEMP);
    s.z = value_new(s.p, "z", DT_F32, 2, yd, V_TEMP);
    Value *in[2] = {s.x, s.w};
    s.mm = op_add(s.p, &s.p->train, OP_matmul, NULL, 2, in, 1, &s.y);
    IA(s.mm, matmul, m) = 4;
    IA(s.mm, matmul, n) = 5;
    IA(s.mm, matmul, k) = 3;
    s.act = op_add(s.p, &s.p->train, OP_silu, NULL, 1, &s.y, 1, &s.z);
    return s;
}

static void expect_invalid(Small *s, const char *want)
{
    char err[512];
    ck_assert_msg(!ir_verify(s->p, err, sizeof err), "verifier accepted IR that should fail with '%s'", want);
    ck_assert_msg(strstr(err, want), "'%s' lacks '%s'", err, want);
    program_free(s->p);
    config_free(s->c);
}

/* ops.def: each kernel's bf16 slots name every input and output, 'b' or
 * '-'; the legalize table read from it (flash's backward: do, q, k, v, o
 * in bf16, lse f32, the segment bounds int32; dq, dk, dv bf16). */
START_TEST(ops_table)
{
    for (int k = 0; k < NUM_OPS; k++) {
        const OpInfo *op = &op_info[k];
        const char *slots = op->bf16, *slash = strchr(slots, '/');
        if (!slots[0]) continue;
        ck_assert_msg(slash && op->nin >= 0 && slash - slots == op->nin && (int)strlen(slash + 1) == op->nout &&
                          strspn(slots, "b-/") == strlen(slots),
                      "op %s: bf16 slots \"%s\" for %d inputs and %d outputs", op->name, slots, op->nin, op->nout);
    }
    bool want[10] = {true, true, true, true, true, false, false, true, true, true};
    for (int j = 0; j < 10; j++) ck_assert(bf16_slot(OP_flash_attention_grad, 7, j) == want[j]);
    ck_assert(!bf16_slot(OP_add, 2, 0));
    ck_assert(!bf16_slot(OP_rmsnorm, 2, 1) && bf16_slot(OP_rmsnorm, 2, 2));
}
END_TEST

START_TEST(verifier_accepts_valid)
{
    Small s = small();
    char err[512];
    ck_assert_msg(ir_verify(s.p, err, sizeof err), "%s", err);
    program_free(s.p);
    config_free(s.c);
}
END_TEST

START_TEST(verifier_errors)
{
    Small s = small();
    IA(s.mm, matmul, k) = 4;
    expect_invalid(&s, "IR verifier: train_step, op 0 (matmul -> y): left operand x has 12 elements, expected 16");
    s = small();
    s.p->train.ops[0] = s.act;                               /* use before definition */
    s.p->train.ops[1] = s.mm;
    expect_invalid(&s, "op 0 (silu -> z): uses y before it is defined");
    s = small();
    s.act->out[0] = s.y;                                     /* y defined twice */
    expect_invalid(&s, "defines y a second time");
    s = small();
    s.x->dtype = DT_I32;
    expect_invalid(&s, "x is i32, expected a float dtype");
    s = small();
    s.x->dtype = DT_BF16;                                    /* bf16 x f32 */
    expect_invalid(&s, "op 0 (matmul -> y): operands are bf16 and f32, expected one dtype");
    s = small();
    s.y->dtype = DT_BF16;                                    /* f32 GEMMs write f32 */
    expect_invalid(&s, "y is bf16, expected f32");
    s = small();
    s.act->kind = OP_cast;                                   /* a cast that changes nothing */
    expect_invalid(&s, "op 1 (cast -> z): casts y to its own dtype");
    s = small();
    s.p->legalized = true;                                   /* a bf16 result from f32 operands after legalize */
    s.act->kind = OP_rows;
    s.z->dtype = DT_BF16;
    expect_invalid(&s, "op 1 (rows -> z): z is bf16, but this kernel takes f32 there");
    s = small();
    s.act->nin = 2;
    expect_invalid(&s, "has 2 inputs and 1 outputs, expected 1 and 1");
    s = small();
    s.act->out[0] = s.x;
    expect_invalid(&s, "defines state or input x");
    s = small();
    value_new(s.p, "orphan", DT_F32, 1, (int64_t[]){3}, V_TEMP);
    expect_invalid(&s, "temporary orphan is never defined");
}
END_TEST

/* memplan: two buffers that are live at the same time never overlap. */
START_TEST(memplan_no_overlap)
{
    Config *c;
    Program *p = compiled(NULL, &c);
    const Func *f = &p->train;
    int n = p->nvalues;
    int *first = xmalloc(sizeof(int) * (size_t)n), *last = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) first[i] = last[i] = -1;
    for (int i = 0; i < f->nops; i++) {
        const Op *op = f->ops[i];
        int at = i;
        while (op->group && at > 0 && f->ops[at - 1]->group == op->group) at--;
        int end = i;
        while (op->group && end + 1 < f->nops && f->ops[end + 1]->group == op->group) end++;
        for (int j = 0; j < op->nout; j++) first[op->out[j]->id] = at, last[op->out[j]->id] = at;
        for (int j = 0; j < op->nin; j++) last[op->in[j]->id] = end > last[op->in[j]->id] ? end : last[op->in[j]->id];
    }
    int checked = 0;
    for (int a = 0; a < n; a++) {
        const Value *va = p->values[a];
        if (va->kind != V_TEMP || va->group || first[a] < 0) continue;
        ck_assert_int_le(va->offset + value_bytes(va), f->arena_bytes);
        for (int b = a + 1; b < n; b++) {
            const Value *vb = p->values[b];
            if (vb->kind != V_TEMP || vb->group || first[b] < 0) continue;
            bool live_together = first[a] <= last[b] && first[b] <= last[a];
            bool overlap = va->offset < vb->offset + value_bytes(vb) && vb->offset < va->offset + value_bytes(va);
            ck_assert_msg(!(live_together && overlap), "%s and %s share memory while both live", va->name, vb->name);
            checked++;
        }
    }
    ck_assert_int_gt(checked, 1000);
    /* Reuse pays: the arena is smaller than all temporaries together. */
    int64_t total = 0;
    for (int a = 0; a < n; a++)
        if (p->values[a]->kind == V_TEMP && !p->values[a]->group && first[a] >= 0) total += value_bytes(p->values[a]);
    ck_assert_int_lt(f->arena_bytes * 2, total);
    free(first);
    free(last);
    program_free(p);
    config_free(c);
}
END_TEST

/* fuse: a value kept in registers is used only inside its own loop. */
START_TEST(fused_values_stay_in_loop)
{
    char *ov[] = {"model_name=gpt3-52k"};
    Config *c = load_config(1, ov);
    char err[1024];
    Program *p = compile_program(c, NULL, err, sizeof err);
    ck_assert_msg(p, "%s", err);
    int fused = 0;
    for (int i = 0; i < p->train.nops; i++) {
        const Op *op = p->train.ops[i];
        for (int j = 0; j < op->nin; j++)
            if (op->in[j]->group) {
                ck_assert_int_eq(op->in[j]->group, op->group);
                fused++;
            }
    }
    ck_assert_int_gt(fused, 0);
    program_free(p);
    config_free(c);
}
END_TEST

/* fuse: under expert parallelism the loops over the experts' buffers (room
 * for both devices' rows) carry the received offsets and run over the rows
 * in use; a group never mixes them with whole tensors. */
START_TEST(ragged_rows)
{
    char *ov[] = {"model_name=tiny-mixtral", "compile_topology=cpu-2", "ici_fsdp_parallelism=1",
                  "ici_expert_parallelism=2", "per_device_batch_size=2"};
    Config *c = load_config(5, ov);
    char err[1024];
    Program *p = compile_program(c, NULL, err, sizeof err);
    ck_assert_msg(p, "%s", err);
    int ragged = 0;
    for (int i = 0; i < p->train.nops; i++) {
        const Op *op = p->train.ops[i];
        if (!op->nout) continue;                         /* all_reduce_sum */
        for (int j = i + 1; op->group && j < p->train.nops && p->train.ops[j]->group == op->group; j++)
            ck_assert_ptr_eq(p->train.ops[j]->out[0]->rows_used, op->out[0]->rows_used);
        if (op->group && op->out[0]->rows_used) {
            ck_assert_msg(strstr(op->out[0]->rows_used->name, "received_offsets"), "%s", op->out[0]->rows_used->name);
            ragged++;
        }
        if (!strcmp(op->out[0]->name, "layers.0.MoeBlock_0.hidden"))
            ck_assert_str_eq(op->out[0]->rows_used->name, "layers.0.MoeBlock_0.received_offsets");
    }
    ck_assert_int_gt(ragged, 3);                         /* forward and backward, both layers */
    GeneratedC g;
    emit_c_text(p, "test", &g);
    ck_assert_msg(strstr(g.step_c, "i < (size_t)layers_0_MoeBlock_0_received_offsets[4] * 96; i++"),
                  "no loop over the rows in use");
    generated_c_free(&g);
    program_free(p);
    config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ir");
    TCase *tc = tcase_create("ir");
    tcase_set_timeout(tc, 600);   /* seconds, for a loaded 2-core machine */
    tcase_add_test(tc, printer_text);
    tcase_add_test(tc, every_pass_prints);
    tcase_add_test(tc, ops_table);
    tcase_add_test(tc, verifier_accepts_valid);
    tcase_add_test(tc, verifier_errors);
    tcase_add_test(tc, memplan_no_overlap);
    tcase_add_test(tc, fused_values_stay_in_loop);
    tcase_add_test(tc, ragged_rows);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
