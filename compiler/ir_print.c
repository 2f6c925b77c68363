/* The IR's text form: stable, one operation a line, diffable. */
#include "mtxc.h"

#include <string.h>

static const char *sigil(const Value *v) { return v->kind <= V_COUNTER || v->kind == V_CACHE ? "@" : "%"; }

static void print_type(FILE *out, const Value *v)
{
    fprintf(out, "%s[", dtype_name(v->dtype));
    for (int i = 0; i < v->rank; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)v->dim[i]);
    fprintf(out, "]");
}

static void print_state(FILE *out, const Value *v)
{
    static const char *kinds[] = {"param", "opt", "counter"};
    static const char *inits[] = {"zeros", "ones", "normal", "truncated_normal"};
    fprintf(out, "  %-7s @%s: ", kinds[v->kind], v->name);
    print_type(out, v);
    if (v->kind == V_PARAM) {
        fprintf(out, "  init=%s", inits[v->init]);
        if (v->init >= INIT_NORMAL) fprintf(out, "(%.6g)", v->init_std);
        if (v->axes[0]) {
            fprintf(out, "  axes=(");
            for (int i = 0; i < v->rank; i++) fprintf(out, "%s%s", i ? ", " : "", v->axes[i] ? v->axes[i] : "_");
            fprintf(out, ")");
        }
    }
    if (v->offset || v->kind != V_PARAM) fprintf(out, "  offset=%lld", (long long)v->offset);
    fprintf(out, "\n");
}

static void print_op(FILE *out, const Op *op)
{
    fprintf(out, "  ");
    for (int i = 0; i < op->nout; i++) {
        const Value *v = op->out[i];
        fprintf(out, "%s%s%s: ", i ? ", " : "", sigil(v), v->name);
        print_type(out, v);
    }
    fprintf(out, "%s%s", op->nout ? " = " : "", op_info[op->kind].name);
    for (int i = 0; i < op->nin; i++)
        fprintf(out, "%s %s%s", i ? "," : "", sigil(op->in[i]), op->in[i]->name);
    for (int i = 0; i < 8; i++) {
        const char *name = op_attr_name(op->kind, i, false);
        if (!name) break;
        fprintf(out, "  %s=%lld", name, (long long)op->ia[i]);
    }
    for (int i = 0; i < 8; i++) {
        const char *name = op_attr_name(op->kind, i, true);
        if (!name) break;
        fprintf(out, "  %s=%.9g", name, op->fa[i]);
    }
    if (op->group) fprintf(out, "  [fused %d]", op->group);
    fprintf(out, "\n");
}

static void print_func(FILE *out, const Func *f)
{
    fprintf(out, "\nfunc %s {", f->name);
    if (f->arena_bytes) fprintf(out, "  # arena %lld bytes", (long long)f->arena_bytes);
    fprintf(out, "\n");
    const char *block = NULL;
    for (int i = 0; i < f->nops; i++) {
        const Op *op = f->ops[i];
        if (f->loop_count > 1 && i == f->loop_first)
            fprintf(out, "  loop microbatch x%d {   # ops %d..%d run once per microbatch\n", f->loop_count,
                    f->loop_first, f->loop_last);
        if (f->loop_count > 1 && i == f->loop_last + 1) fprintf(out, "  }\n");
        if (op->block && (!block || strcmp(block, op->block))) {
            fprintf(out, "  # %s\n", op->block);
            block = op->block;
        }
        print_op(out, op);
    }
    fprintf(out, "}\n");
}

void ir_print(FILE *out, const Program *p)
{
    const Config *c = p->cfg;
    fprintf(out, "# mtxc IR after %s: model %s, decoder_block %s, %d layers\n",
            p->last_pass ? p->last_pass : "(none)", cfg_str(c, K_model_name),
            cfg_str(c, K_decoder_block), c->d.num_decoder_layers);
    fprintf(out, "state {\n");
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind <= V_COUNTER) print_state(out, p->values[i]);
    fprintf(out, "}\n");
    for (int i = 0; i < p->nvalues; i++) {
        const Value *v = p->values[i];
        if (v->kind != V_INPUT && v->kind != V_CACHE) continue;
        fprintf(out, v->kind == V_INPUT ? "input %%%s: " : "cache @%s: ", v->name);
        print_type(out, v);
        fprintf(out, "\n");
    }
    for (int i = 0; i < NUM_FUNCS; i++)
        if (p->funcs[i]->nops) print_func(out, p->funcs[i]);
}
