/* IR construction: programs, values and operations. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

const OpInfo op_info[NUM_OPS] = {
#define ATTRS(set, ints, floats)
#define OP(name, nin, nout, cls, attrs, bf16) [OP_##name] = {#name, OC_##cls, nin, nout, ATTRS_##attrs, bf16},
#include "ops.def"
#undef OP
#undef ATTRS
};

/* Each set's attribute names, in their places, for the printer and messages. */
static const struct { const char *const *ints, *const *floats; } attr_names[NUM_ATTR_SETS] = {
#define OP(name, nin, nout, cls, attrs, bf16)
#define I(set, name) #name,
#define F(set, name) #name,
#define ATTRS(set, ints, floats) [ATTRS_##set] = {(const char *const[]){ints NULL}, (const char *const[]){floats NULL}},
#include "ops.def"
#undef ATTRS
#undef F
#undef I
#undef OP
};

const char *op_attr_name(OpKind kind, int i, bool is_float)
{
    const char *const *names = is_float ? attr_names[op_info[kind].attrs].floats : attr_names[op_info[kind].attrs].ints;
    for (int j = 0; j < i; j++)
        if (!names[j]) return NULL;
    return names[i];
}

bool bf16_slot(OpKind kind, int nin, int j)
{
    const char *slots = op_info[kind].bf16, *outputs = strchr(slots, '/');
    if (!outputs) return false;
    if (j < nin) return j < outputs - slots && slots[j] == 'b';
    j -= nin;
    return j < (int)strlen(outputs + 1) && outputs[1 + j] == 'b';
}

int64_t *op_ia(const Op *op, AttrSet set)
{
    if (op_info[op->kind].attrs != set) fatal("op %s has no such integer attribute (a bug in mtxc)", op_info[op->kind].name);
    return (int64_t *)op->ia;
}

double *op_fa(const Op *op, AttrSet set)
{
    if (op_info[op->kind].attrs != set) fatal("op %s has no such float attribute (a bug in mtxc)", op_info[op->kind].name);
    return (double *)op->fa;
}

Program *program_new(const Config *cfg)
{
    Pool *pool = pool_new();
    Program *p = pool_alloc(pool, sizeof(Program));
    p->pool = pool;
    p->cfg = cfg;
    p->train.name = "train_step";
    p->eval.name = "eval_step";
    p->prefill.name = "prefill_step";
    p->decode.name = "decode_step";
    Func *funcs[NUM_FUNCS] = {&p->eval, &p->train, &p->prefill, &p->decode};
    memcpy(p->funcs, funcs, sizeof funcs);
    p->at.unit = -1, p->at.pass = PASS_OTHER;
    return p;
}

void program_free(Program *p)
{
    if (!p) return;
    free(p->values);
    for (int i = 0; i < NUM_FUNCS; i++) free(p->funcs[i]->ops);
    pool_free(p->pool);
}

Value *value_new(Program *p, const char *name, DType dt, int rank, const int64_t *dim, ValueKind kind)
{
    Value *v = pool_alloc(p->pool, sizeof(Value));
    v->id = p->nvalues;
    v->name = pool_strdup(p->pool, name);
    v->dtype = dt;
    v->rank = rank;
    for (int i = 0; i < rank; i++) v->dim[i] = dim[i];
    v->kind = kind;
    if (p->nvalues == p->capvalues) {
        p->capvalues = p->capvalues ? p->capvalues * 2 : 256;
        p->values = xrealloc(p->values, sizeof(Value *) * (size_t)p->capvalues);
    }
    p->values[p->nvalues++] = v;
    return v;
}

Value *state_new(Program *p, const char *name, int rank, const int64_t *dim, InitKind init,
                 double std, const char *const *axes)
{
    Value *v = value_new(p, name, DT_F32, rank, dim, V_PARAM);
    v->init = init;
    v->init_std = std;
    for (int i = 0; i < rank && axes; i++) v->axes[i] = axes[i];
    return v;
}

int64_t program_param_count(const Program *p)
{
    int64_t n = 0;
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind == V_PARAM) n += value_global_numel(p->values[i]);
    return n;
}

int64_t program_arena_bytes(const Program *p)
{
    int64_t bytes = 0;
    for (int i = 0; i < NUM_FUNCS; i++)
        if (p->funcs[i]->arena_bytes > bytes) bytes = p->funcs[i]->arena_bytes;
    return bytes;
}

/* The runtime scratch a kernel op needs (0: none): bf16 attention heads in
 * float32, the fused attention's row sums and per-thread blocks. */
const char *op_scratch(Pool *pool, const Op *op, int64_t *bytes)
{
    *bytes = 0;
    if (op_info[op->kind].attrs != ATTRS_attention) return NULL;
    long long b = IA(op, attention, b), t = IA(op, attention, t), hq = IA(op, attention, hq);
    long long hkv = IA(op, attention, hkv), dh = IA(op, attention, dh);
    if (op->kind == OP_flash_attention || op->kind == OP_flash_attention_grad) {
        *bytes = (int64_t)mtx_flash_attention_scratch((int)b, (int)t, (int)hq, (int)hkv, (int)dh, 1);
        return !pool ? "" : pool_fmt(pool, "mtx_flash_attention_scratch(%lld, %lld, %lld, %lld, %lld, mtx_num_threads())",
                                     b, t, hq, hkv, dh);
    }
    if (op->in[0]->dtype == DT_BF16) {   /* the unfused attention ops, bf16 */
        *bytes = (int64_t)mtx_attention_scratch((int)t, (int)dh);
        return !pool ? "" : pool_fmt(pool, "mtx_attention_scratch(%lld, %lld)", t, dh);
    }
    return NULL;
}

int64_t program_scratch_bytes(const Program *p)
{
    int64_t bytes = 0;
    for (int fi = 0; fi < NUM_FUNCS; fi++)
        for (int i = 0; i < p->funcs[fi]->nops; i++) {
            int64_t n;
            op_scratch(NULL, p->funcs[fi]->ops[i], &n);
            if (n > bytes) bytes = n;
        }
    return bytes;
}

int64_t value_numel(const Value *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->rank; i++) n *= v->dim[i];
    return n;
}

int value_share_shape(const Value *v, int64_t dim[4])
{
    memcpy(dim, v->full_rank ? v->full_dim : v->dim, sizeof v->dim);
    return v->full_rank ? v->full_rank : v->rank;
}

int64_t value_full_numel(const Value *v)
{
    int64_t dim[4], n = 1;
    for (int i = 0, rank = value_share_shape(v, dim); i < rank; i++) n *= dim[i];
    return n;
}

int64_t value_global_numel(const Value *v)
{
    return value_full_numel(v) * (v->split_dim ? v->split_ways : 1);
}

int dtype_bytes(DType t) { return t == DT_I64 ? 8 : t == DT_BF16 ? 2 : 4; }

int64_t value_bytes(const Value *v) { return value_numel(v) * dtype_bytes(v->dtype); }

void func_move_last(Func *f, int at)
{
    Op *op = f->ops[f->nops - 1];
    memmove(f->ops + at + 1, f->ops + at, sizeof(Op *) * (size_t)(f->nops - 1 - at));
    f->ops[at] = op;
}

int func_index(const Func *f, const Op *op)
{
    for (int i = 0; i < f->nops; i++)
        if (f->ops[i] == op) return i;
    return -1;
}

const char *dtype_name(DType dt)
{
    switch (dt) {
    case DT_F32: return "f32";
    case DT_I32: return "i32";
    case DT_I64: return "i64";
    case DT_BF16: return "bf16";
    }
    return "?";
}

Op *op_add(Program *p, Func *f, OpKind kind, const char *block, int nin, Value **in, int nout, Value **out)
{
    Op *op = pool_alloc(p->pool, sizeof(Op));
    op->kind = kind;
    op->block = block;
    op->unit = p->at.unit;
    op->pass = p->at.pass;
    op->role = p->at.role;
    op->nin = nin;
    op->in = pool_alloc(p->pool, sizeof(Value *) * (size_t)(nin ? nin : 1));
    if (nin) memcpy(op->in, in, sizeof(Value *) * (size_t)nin);
    op->nout = nout;
    for (int i = 0; i < nout; i++) {
        op->out[i] = out[i];
        out[i]->def = op;
    }
    func_append(f, op);
    return op;
}

void func_append(Func *f, Op *op)
{
    if (f->nops == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 256;
        f->ops = xrealloc(f->ops, sizeof(Op *) * (size_t)f->cap);
    }
    f->ops[f->nops++] = op;
}

bool value_reported(const Program *p, const Value *v)
{
    return v == p->train_loss || v == p->eval_loss || v == p->train_weight || v == p->eval_weight ||
           v == p->grad_norm || v == p->lr || v == p->prefill_logits || v == p->decode_logits ||
           v == p->train_moe_lb || v == p->eval_moe_lb;
}
