/* C backend: the program as C that reads like careful hand-written code:
 * step.h (state struct, entry points), step.c (kernels, init, the train and
 * eval steps, the program descriptor) and main.c (a trainer's main). This
 * file names the values, fuses elementwise loops and writes the steps;
 * emit_state.c the state, emit_calls.c the runtime calls, emit_text.c the
 * text helpers below them all. */
#include "emit.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names the generated functions use for themselves, and C keywords. */
static const char *const reserved[] = {
    "s", "batch", "rng", "out", "arena", "i", "r", "c", "t", "micro", "first", "end", "f", "frame", "bias1", "bias2", "decay1", "decay2", "sum_sq", "key", "tokens", "position",
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "silu", "gelu", "silu_grad", "gelu_grad",
    "soft_cap", "soft_cap_grad", "relu", "relu_grad",
};

static bool is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (!strcmp(reserved[i], name)) return true;
    return false;
}

/* Which function defines each temporary (0: none). */
static int *defining_funcs(const Program *p)
{
    int *owner = xcalloc((size_t)p->nvalues + 1, sizeof(int));
    for (int fi = 0; fi < NUM_FUNCS; fi++)
        for (int i = 0; i < p->funcs[fi]->nops; i++)
            for (int j = 0; j < p->funcs[fi]->ops[i]->nout; j++) owner[p->funcs[fi]->ops[i]->out[j]->id] = fi + 1;
    return owner;
}

/* C names taken so far, with the functions that took them (bit 0: names
 * every function sees; bit f: function f's own), in an open-addressing table. */
typedef struct { const char **names; unsigned *owners; size_t cap; } NameSet;

static size_t name_slot(const NameSet *s, const char *name)
{
    size_t h = (size_t)mtx_name_hash(name, strlen(name)) & (s->cap - 1);
    while (s->names[h] && strcmp(s->names[h], name)) h = (h + 1) & (s->cap - 1);
    return h;
}

/* Is name free for a value of function `owner` (0: of every function)? */
static bool name_free(const NameSet *s, const char *name, int owner)
{
    size_t h = name_slot(s, name);
    if (!s->names[h]) return true;
    return owner && !(s->owners[h] & (1u | 1u << owner));
}

static void name_take(NameSet *s, const char *name, int owner)
{
    size_t h = name_slot(s, name);
    s->names[h] = name;
    s->owners[h] |= owner ? 1u << owner : 1u;
}

/* Give every value a C name, unique within the function that declares it. */
static void name_values(Emitter *e)
{
    Pool *pool = e->p->pool;
    const Program *p = e->p;
    int *owner = defining_funcs(p);
    e->cname = xcalloc((size_t)p->nvalues + 1, sizeof(char *));
    NameSet taken = {0};
    for (taken.cap = 64; taken.cap < 2 * (size_t)p->nvalues + 64;) taken.cap *= 2;
    taken.names = xcalloc(taken.cap, sizeof(char *));
    taken.owners = xcalloc(taken.cap, sizeof(unsigned));
    for (int i = 0; i < p->nvalues; i++) {
        const Value *v = p->values[i];
        if (v->kind <= V_COUNTER || v->kind == V_CACHE) {
            e->cname[i] = (char *)state_expr(pool, v);
            name_take(&taken, e->cname[i], 0);
            continue;
        }
        /* Batch inputs; the microbatch loop declares its own pointers into the batch. */
        bool looped = p->train.loop_count > 1 && (v == p->train.loop_inputs[0] || v == p->train.loop_inputs[1] ||
                                                  v == p->train.loop_inputs[2] || v == p->train.loop_inputs[3]);
        if (!looped && (v == p->tokens || v == p->train_tokens)) { e->cname[i] = "batch->inputs"; continue; }
        if (v == p->decode_tokens || v == p->decode_token) { e->cname[i] = "tokens"; continue; }
        if (v == p->decode_position) { e->cname[i] = "position"; continue; }
        if (!looped && (v == p->targets || v == p->train_targets)) { e->cname[i] = "batch->targets"; continue; }
        if (!looped && (v == p->segmentation || v == p->train_segmentation)) {
            e->cname[i] = "batch->segmentation";
            continue;
        }
        if (!looped && (v == p->segment_ids || v == p->train_segment_ids)) {
            e->cname[i] = "batch->segment_ids";
            continue;
        }
        char *base = identifier(pool, v->name);
        if (is_reserved(base) || isdigit((unsigned char)base[0])) base = pool_fmt(pool, "v_%s", base);
        char *name = base;
        for (int n = 2; !name_free(&taken, name, owner[i]); n++) name = pool_fmt(pool, "%s_%d", base, n);
        name_take(&taken, name, owner[i]);
        e->cname[i] = name;
    }
    free(taken.names);
    free(taken.owners);
    free(owner);
}


/* `type *const name = <arena> + offset;` for a temporary, typed by its dtype. */
static void declare_temp(Emitter *e, const char *arena, const Value *v)
{
    if (v->dtype == DT_BF16)
        emitf(e, "    mtx_bf16 *const %s = (mtx_bf16 *)%s + %lld;", V(e, v), arena, (long long)(v->offset / 2));
    else if (v->dtype == DT_I32)   /* experts chosen, their order and offsets */
        emitf(e, "    int32_t *const %s = (int32_t *)%s + %lld;", V(e, v), arena, (long long)(v->offset / 4));
    else
        emitf(e, "    float *const %s = %s + %lld;", V(e, v), arena, (long long)(v->offset / 4));
}

/* ---- one op ---- */

/* Element index of v as float32 (bf16 widened). */
static const char *load(Emitter *e, const Value *v, const char *index)
{
    if (v->dtype == DT_BF16) return pool_fmt(e->p->pool, "mtx_bf16_to_f32(%s[%s])", V(e, v), index);
    return pool_fmt(e->p->pool, "%s[%s]", V(e, v), index);
}

static const char *ew_operand(Emitter *e, const Value *v, int group)
{
    if (v->kind == V_TEMP && v->def && v->def->group == group) return pool_fmt(e->p->pool, "%s_i", V(e, v));
    return load(e, v, "i");
}

/* Elementwise expression of one op inside a fused loop; operands by element i. */
static const char *ew_expr(Emitter *e, const Op *op)
{
    Pool *pool = e->p->pool;
    const char *a = op->nin > 0 ? ew_operand(e, op->in[0], op->group) : NULL;
    const char *b = op->nin > 1 ? ew_operand(e, op->in[1], op->group) : NULL;
    switch (op->kind) {
    case OP_add: return pool_fmt(pool, "%s + %s", a, b);
    case OP_mul: return pool_fmt(pool, "%s * %s", a, b);
    case OP_bias_add: {
        int64_t cols = IA(op, bias_add, cols);
        return pool_fmt(pool, "%s + %s", a, load(e, op->in[1], e->loop_cols == cols ? "c" :
                                                 pool_fmt(pool, "i %% %lld", (long long)cols)));
    }
    case OP_cast: return a;      /* the store rounds to the output's dtype */
    case OP_silu: return pool_fmt(pool, "silu(%s)", a);
    case OP_gelu: return pool_fmt(pool, "gelu(%s)", a);
    case OP_relu: return pool_fmt(pool, "relu(%s)", a);
    case OP_silu_grad: return pool_fmt(pool, "%s * silu_grad(%s)", b, a);
    case OP_gelu_grad: return pool_fmt(pool, "%s * gelu_grad(%s)", b, a);
    case OP_relu_grad: return pool_fmt(pool, "%s * relu_grad(%s)", b, a);
    case OP_soft_cap: return pool_fmt(pool, "soft_cap(%s, %s)", a, flit(pool, FA(op, soft_cap, cap)));
    case OP_soft_cap_grad: return pool_fmt(pool, "%s * soft_cap_grad(%s, %s)", b, a, flit(pool, FA(op, soft_cap, cap)));
    case OP_fill: return flit(pool, FA(op, fill, value));
    case OP_reciprocal: return pool_fmt(pool, "1.0f / (%s + 1e-8f)", a);
    case OP_dropout:
    case OP_dropout_grad: { /* mask index: (row of the global batch, feature), shared along the sequence */
        long long sequence = IA(op, dropout, sequence), features = IA(op, dropout, features);
        long long split = IA(op, dropout, tensor_split);
        const char *rate = flit(pool, FA(op, dropout, rate));
        if (split > 1)  /* this device's share of the features, from its first column */
            return pool_fmt(pool, "%s * mtx_dropout_scale(%s_key, (%s_row + i / %lld) * %lld + %s_column + i %% %lld, %s)",
                            a, V(e, op->out[0]), V(e, op->out[0]), sequence, features * split, V(e, op->out[0]),
                            features, rate);
        return pool_fmt(pool, "%s * mtx_dropout_scale(%s_key, (%s_row + i / %lld) * %lld + i %% %lld, %s)", a,
                        V(e, op->out[0]), V(e, op->out[0]), sequence, features, features, rate);
    }
    case OP_tensor_enter: return a;
    case OP_embed: case OP_segment_bounds: case OP_position_add: case OP_matmul: case OP_rmsnorm: case OP_layernorm:
    case OP_rope:
    case OP_attention_scores: case OP_causal_softmax: case OP_attention_values: case OP_flash_attention:
    case OP_cross_entropy: case OP_rows: case OP_topk_route: case OP_expert_sort: case OP_gather_rows:
    case OP_grouped_matmul: case OP_expert_combine: case OP_expert_capacity: case OP_moe_lb_loss:
    case OP_expert_counts: case OP_all_to_all: case OP_rope_at: case OP_position_add_at: case OP_kv_cache_write:
    case OP_cached_attention: case OP_embed_grad: case OP_position_add_grad: case OP_bias_grad: case OP_rmsnorm_grad:
    case OP_layernorm_grad: case OP_rope_grad: case OP_attention_scores_grad: case OP_causal_softmax_grad:
    case OP_attention_values_grad: case OP_flash_attention_grad: case OP_cross_entropy_grad: case OP_rows_grad:
    case OP_topk_route_grad: case OP_gather_rows_grad: case OP_grouped_matmul_wgrad: case OP_expert_combine_grad:
    case OP_moe_lb_loss_grad: case OP_global_norm: case OP_learning_rate: case OP_clip_scale: case OP_adamw:
    case OP_sgd: case OP_muon: case OP_step_increment: case OP_zero: case OP_accumulate: case OP_all_reduce_sum:
    case OP_all_gather: case OP_reduce_scatter: case OP_tensor_sum: case NUM_OPS:
        break;
    }
    fatal("emit: %s is not elementwise", op_info[op->kind].name);
}

/* Each dropout site draws from its own key, indexed by the row of the
 * global batch, so microbatches and data-parallel ranks see the masks a
 * single device would. */
static void declare_dropout(Emitter *e, const Func *f, const Op *op)
{
    const Value *const *in = (const Value *const *)f->loop_inputs;
    const char *y = V(e, op->out[0]);
    emitf(e, "    const mtx_rng_key %s_key = mtx_rng_fold(rng, 0x%llxULL);\n", y,
        (unsigned long long)IA(op, dropout, stream));
    /* dropout is the train step's: this device's rows start at its index times its train batch */
    emitf(e, "    const int64_t %s_row = (int64_t)mtx_batch_index() * %lld", y,
        (long long)(e->p->cfg->d.global_batch / batch_shards(e->p->cfg)));
    if (e->in_loop) emitf(e, " + (int64_t)micro * %lld", (long long)in[0]->dim[0]);
    emitf(e, ";\n");
    if (IA(op, dropout, tensor_split) > 1)
        emitf(e, "    const int64_t %s_column = (int64_t)mtx_mesh_coord(2) * %lld;\n", y,
            (long long)IA(op, dropout, features));
}

static bool is_dropout(const Op *op) { return op->kind == OP_dropout || op->kind == OP_dropout_grad; }

/* Columns of the first bias that ops [a, b] add (0: none). Such a loop runs
 * over rows and columns and reads the bias by column: compilers do not
 * vectorize a load at i % cols. */
static int64_t loop_columns(const Func *f, int a, int b)
{
    for (int i = a; i <= b; i++)
        if (f->ops[i]->kind == OP_bias_add) return IA(f->ops[i], bias_add, cols);
    return 0;
}

/* Iterations of the loop of ops [a, b]: its rows, or its elements. */
static int64_t loop_count(const Func *f, int a, int b)
{
    int64_t cols = loop_columns(f, a, b), n = value_numel(f->ops[a]->out[0]);
    return cols ? n / cols : n;
}

/* The end of that loop as C: a constant, or for ragged rows (fuse.c) the
 * rows in use times the elements of a row. */
static const char *loop_end(Emitter *e, const Func *f, int a, int b)
{
    const Value *y = f->ops[a]->out[0], *used = y->rows_used;
    if (!used || loop_columns(f, a, b)) return pool_fmt(e->p->pool, "%lld", (long long)loop_count(f, a, b));
    return pool_fmt(e->p->pool, "(size_t)%s[%lld] * %lld", V(e, used), (long long)(value_numel(used) - 1),
                    (long long)(value_numel(y) / y->dim[0]));
}

/* The loop over elements (or rows) [first, end) of ops [a, b] of f. */
static void emit_elementwise_loop(Emitter *e, const Func *f, int a, int b, const char *first, const char *end)
{
    e->loop_cols = loop_columns(f, a, b);
    const char *ind = e->loop_cols ? "            " : "        ";
    if (e->loop_cols)
        emitf(e, "    for (size_t r = %s; r < %s; r++) {\n        for (size_t c = 0; c < %lld; c++) {\n"
               "            const size_t i = r * %lld + c;\n", first, end, (long long)e->loop_cols, (long long)e->loop_cols);
    else
        emitf(e, "    for (size_t i = %s; i < %s; i++) {\n", first, end);
    for (int i = a; i <= b; i++) {
        const Op *op = f->ops[i];
        const Value *y = op->out[0];
        bool read_later = false;                 /* by a later op of this loop */
        for (int j = i + 1; j <= b && !read_later; j++)
            for (int k = 0; k < f->ops[j]->nin; k++) read_later |= f->ops[j]->in[k] == y;
        const char *x = ew_expr(e, op);
        if (y->dtype == DT_BF16) {   /* computed in float32, rounded to bf16 once */
            if (y->group || read_later) emitf(e, "%sfloat %s_i = mtx_round_bf16(%s);\n", ind, V(e, y), x);
            if (!y->group)
                emitf(e, "%s%s[i] = mtx_f32_to_bf16(%s);\n", ind, V(e, y),
                    read_later ? pool_fmt(e->p->pool, "%s_i", V(e, y)) : x);
        } else if (y->group) {
            emitf(e, "%sfloat %s_i = %s;\n", ind, V(e, y), x);
        } else if (!read_later) {
            emitf(e, "%s%s[i] = %s;\n", ind, V(e, y), x);
        } else {
            emitf(e, "%sfloat %s_i = %s[i] = %s;\n", ind, V(e, y), V(e, y), x);
        }
    }
    emitf(e, e->loop_cols ? "        }\n    }\n" : "    }\n");
    e->loop_cols = 0;
}

/* A parallel loop's body becomes a function of the element range, which
 * mtx_parallel_for calls on each thread's share (PARALLEL_LOOP_MIN, mtxc.h). */
static bool parallel_loop(const Op *head) { return value_numel(head->out[0]) >= PARALLEL_LOOP_MIN; }

static bool has_parallel_loop(const Func *f)
{
    for (int i = 0; i < f->nops; i++)
        if (f->ops[i]->group && parallel_loop(f->ops[i])) return true;
    return false;
}

/* The function of a parallel loop: the arena and state pointers it uses,
 * recomputed from the step's frame, then the loop over its range. */
static void emit_loop_function(Emitter *e, const Func *f, int a, int b)
{
    const Program *p = e->p;
    Buf *step = e->b;
    e->b = e->loops;
    int group = f->ops[a]->group;
    emitf(e, "\n/* %s:", f->ops[a]->block ? f->ops[a]->block : f->name);
    for (int i = a; i <= b; i++) emitf(e, " %s", op_info[f->ops[i]->kind].name);
    emitf(e, " */\nstatic void loop_%d(const mtx_frame *f, size_t first, size_t end)\n{\n", group);
    bool *seen = xcalloc((size_t)p->nvalues + 1, sizeof(bool));
    bool state = false, dropout = false;
    const Value **params = xcalloc((size_t)(b - a + 1) * 3 + 1, sizeof(Value *));
    int nparams = 0;
    for (int i = a; i <= b; i++) {
        const Op *op = f->ops[i];
        dropout |= is_dropout(op);
        for (int j = 0; j <= op->nin; j++) {
            const Value *v = j < op->nin ? op->in[j] : op->out[0];
            if (seen[v->id] || (v->group == group && v->kind == V_TEMP)) continue;
            seen[v->id] = true;
            if (v->kind == V_PARAM) params[nparams++] = v;
            if (v->kind <= V_COUNTER) state = true;
            else {
                declare_temp(e, "f->arena", v);
                emitf(e, "\n");
            }
        }
    }
    free(seen);
    if (state) emitf(e, "    mtx_state *const s = f->state;\n");
    /* params as local pointers: the compiler then knows the loop does not
     * change them, and vectorizes it (a load through s in the loop blocks that) */
    char **state_names = xcalloc((size_t)nparams + 1, sizeof(char *));
    for (int i = 0; i < nparams; i++) {
        state_names[i] = e->cname[params[i]->id];
        e->cname[params[i]->id] = pool_fmt(p->pool, "param_%s", param_field(p->pool, params[i]));
        emitf(e, "    const float *const %s = %s;\n", e->cname[params[i]->id], state_names[i]);
    }
    if (dropout) emitf(e, "    const mtx_rng_key rng = f->rng;\n");
    if (dropout && e->in_loop) emitf(e, "    const int64_t micro = f->micro;\n");
    for (int i = a; i <= b; i++)
        if (is_dropout(f->ops[i])) declare_dropout(e, f, f->ops[i]);
    emit_elementwise_loop(e, f, a, b, "first", "end");
    emitf(e, "}\n");
    for (int i = 0; i < nparams; i++) e->cname[params[i]->id] = state_names[i];
    free(state_names);
    free(params);
    e->b = step;
    emitf(e, "    mtx_parallel_for(loop_%d, &frame, %s);\n", group, loop_end(e, f, a, b));
}

static void emit_fused(Emitter *e, const Func *f, int first, int last)
{
    const Op *op = f->ops[first];
    if (first == last && op->kind == OP_cast) {   /* a cast alone: libmtxrt's threaded conversion */
        emitf(e, "    mtx_convert_%s(%s, %s, %s);\n", op->out[0]->dtype == DT_BF16 ? "to_bf16" : "to_f32", V(e, op->out[0]),
            V(e, op->in[0]), loop_end(e, f, first, last));
        return;
    }
    if (parallel_loop(f->ops[first])) {
        emit_loop_function(e, f, first, last);
        return;
    }
    for (int i = first; i <= last; i++)
        if (is_dropout(f->ops[i])) declare_dropout(e, f, f->ops[i]);
    emit_elementwise_loop(e, f, first, last, "0", loop_end(e, f, first, last));
}

/* Pointers into the arena for the temporaries this op (or loop) stores. */
static void declare_outputs(Emitter *e, const Op *op)
{
    for (int i = 0; i < op->nout; i++) {
        const Value *v = op->out[i];
        if (v->group) continue;
        declare_temp(e, "arena", v);
        emitf(e, "%*s/* [", 1, "");
        for (int d = 0; d < v->rank; d++) emitf(e, "%s%lld", d ? ", " : "", (long long)v->dim[d]);
        emitf(e, "] */\n");
    }
}

/* The microbatch loop's body, emitted into its own buffer, then indented. */
static void open_loop(Emitter *e, Buf *body, Buf **outer)
{
    *outer = e->b;
    e->b = body;
    e->in_loop = true;
}

static void close_loop(Emitter *e, const Func *f, Buf *body, Buf *outer)
{
    e->b = outer;
    e->in_loop = false;
    const Value *const *in = (const Value *const *)f->loop_inputs;
    int64_t per_micro = value_numel(in[0]);
    emitf(e, "\n    /* ---- %d microbatches of %lld sequences: forward, backward, sums ---- */\n",
        f->loop_count, (long long)in[0]->dim[0]);
    emitf(e, "    for (int micro = 0; micro < %d; micro++) {\n", f->loop_count);
    if (has_parallel_loop(f)) emitf(e, "        frame.micro = micro;\n");
    emitf(e, "        const int32_t *%s = batch->inputs + (size_t)micro * %lld;\n", V(e, in[0]), (long long)per_micro);
    emitf(e, "        const int32_t *%s = batch->targets + (size_t)micro * %lld;\n", V(e, in[1]), (long long)per_micro);
    emitf(e, "        const int32_t *%s = batch->segmentation + (size_t)micro * %lld;\n", V(e, in[2]),
        (long long)per_micro);
    emitf(e, "        const int32_t *%s = batch->segment_ids + (size_t)micro * %lld;\n", V(e, in[3]),
        (long long)per_micro);
    for (const char *line = body->s; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        emitf(e, len ? "    %.*s\n" : "%.*s\n", (int)len, line);
        line = nl ? nl + 1 : line + len;
    }
    emitf(e, "    }\n");
    buf_free(body);
}

static void declare_accumulators(Emitter *e)
{
    const Program *p = e->p;
    for (int i = 0; i < p->nvalues; i++) {
        const Value *v = p->values[i];
        if (v->kind != V_ACCUM) continue;
        declare_temp(e, "arena", v);
        emitf(e, "\n");
    }
}


/* Does op change the state (an update of a state value in place, or a state
 * output)? The train step's first such op waits for a checkpoint write. */
static bool writes_state(const Op *op)
{
    for (int j = 0; j < op->nout; j++)
        if (kind_is_state(op->out[j]->kind)) return true;
    if (op_info[op->kind].cls != OC_UPDATE) return false;
    for (int j = 0; j < op->nin; j++)
        if (kind_is_state(op->in[j]->kind)) return true;
    return false;
}

static void emit_body(Emitter *e, const Func *f)
{
    const char *block = NULL;
    bool adamw_seen = false, t_defined = false;
    Buf loop_body = {0}, *outer = NULL;
    int first_write = -1;                 /* the train step's first op that changes the state */
    for (int i = 0; f == &e->p->train && first_write < 0 && i < f->nops; i++)
        if (writes_state(f->ops[i])) first_write = i;
    bool looping = f->loop_count > 1;
    if (f == &e->p->train) declare_accumulators(e);
    for (int i = 0; i < f->nops;) {
        const Op *op = f->ops[i];
        if (looping && i == f->loop_first) open_loop(e, &loop_body, &outer);
        if (looping && i == f->loop_last + 1) close_loop(e, f, &loop_body, outer);
        if (op->block && (!block || strcmp(block, op->block))) {
            emitf(e, "\n    /* ---- %s ---- */\n", op->block);
            block = op->block;
        }
        int last = i;
        while (op->group && last + 1 < f->nops && f->ops[last + 1]->group == op->group) last++;
        if (first_write >= i && first_write <= last)
            emitf(e, "    mtx_state_will_change();  /* an async checkpoint may still be writing the state */\n");
        if (op->group) {
            for (int j = i; j <= last; j++) declare_outputs(e, f->ops[j]);
            emit_fused(e, f, i, last);
            i = last + 1;
            continue;
        }
        declare_outputs(e, op);
        if ((op->kind == OP_adamw || op->kind == OP_muon) && !t_defined) {
            /* updates are counted from 1 for the bias corrections */
            emitf(e, "    float t = (float)(%s[0] + 1);\n", V(e, e->p->step));
            t_defined = true;
        }
        if (op->kind == OP_matmul) emit_matmul(e, op);
        else if (op->kind == OP_adamw) { emit_adamw(e, op, !adamw_seen); adamw_seen = true; }
        else emit_kernel(e, op);
        i++;
    }
    if (looping && f->loop_last + 1 >= f->nops) close_loop(e, f, &loop_body, outer);
}

static void emit_step(Emitter *e, const Func *f, bool train)
{
    const Program *p = e->p;
    bool nnx = cfg_bool(p->cfg, K_pure_nnx);
    const char *state = train ? "mtx_state *s" : "const mtx_state *s";
    emitf(e, "\n/* One %s step: %s. */\n", train ? "training" : "evaluation",
        train ? "forward, backward, clipping and the AdamW update" : "forward pass and loss, no update");
    emitf(e, "void mtx_%s(%s, const mtx_batch *batch, %smtx_metrics *out)\n{\n", f->name, state,
        nnx ? "" : "mtx_rng_key rng, ");
    bool draws = train && p->uses_rng;
    if (!nnx && !draws) emitf(e, "    (void)rng;  /* the step's random key: no op of this program draws from it */\n");
    if (nnx && train && p->rng)
        emitf(e, "    mtx_rng_key rng = {(uint64_t)s->rng[0], (uint64_t)s->rng[1]};  /* this step's key */\n");
    emitf(e, "    float *const arena = s->arena;\n");
    if (has_parallel_loop(f))
        emitf(e, "    mtx_frame frame = {arena, (void *)s, %s, 0};  /* what the parallel loops read */\n",
            !nnx || (train && p->rng) ? "rng" : "{0, 0}");
    emit_body(e, f);
    if (nnx && train && p->rng)
        emitf(e, "\n    /* ---- the next step's key ---- */\n"
               "    rng = mtx_rng_next_step_key(rng);\n"
               "    s->rng[0] = (int64_t)rng.k0;\n    s->rng[1] = (int64_t)rng.k1;\n");
    const Value *loss = train ? p->train_loss : p->eval_loss, *weight = train ? p->train_weight : p->eval_weight;
    const Value *norm = train ? p->grad_norm : NULL, *lr = train ? p->lr : NULL;
    emitf(e, "\n    out->loss = %s;\n", loss ? pool_fmt(p->pool, "%s[0]", V(e, loss)) : "0");
    emitf(e, "    out->weight = %s;\n", weight ? pool_fmt(p->pool, "%s[0]", V(e, weight)) : "0");
    emitf(e, "    out->grad_norm = %s;\n", norm ? pool_fmt(p->pool, "%s[0]", V(e, norm)) : "0");
    emitf(e, "    out->lr = %s;\n", lr ? pool_fmt(p->pool, "%s[0]", V(e, lr)) : "0");
    const Value *lb = train ? p->train_moe_lb : p->eval_moe_lb;
    if (lb) emitf(e, "    out->moe_lb_loss = %s[0];\n", V(e, lb));
    emitf(e, "}\n");
}

/* The two decoding functions: the body, then the logits of every new token. */
static void emit_decoding(Emitter *e, const Func *f)
{
    const Program *p = e->p;
    bool prefill = f == &p->prefill;
    const Value *logits = prefill ? p->prefill_logits : p->decode_logits;
    if (prefill)
        emitf(e, "\n/* Decoding: a prompt's tokens (the first %lld; the caller pads a shorter one and\n"
               " * reads the logits of its last real token) at positions 0 .. %lld, into the caches. */\n",
            (long long)p->prefill_length, (long long)p->prefill_length - 1);
    else
        emitf(e, "\n/* Decoding: one token at *position, after the tokens before it are in the caches. */\n");
    emitf(e, "void mtx_%s(const mtx_state *s, mtx_cache *c, const int32_t *tokens, const int32_t *position, "
           "float *out)\n{\n", f->name);
    emitf(e, "    float *const arena = s->arena;\n");
    if (has_parallel_loop(f)) emitf(e, "    mtx_frame frame = {arena, (void *)s, {0, 0}, 0};  /* what the parallel loops read */\n");
    emit_body(e, f);
    emitf(e, "\n    memcpy(out, %s, %lldu);  /* the logits */\n}\n", V(e, logits), (long long)value_bytes(logits));
}

static void emit_source(Emitter *e, const char *source_desc)
{
    const Program *p = e->p;
    const Config *c = p->cfg;
    emitf(e, "/* step.c: one training step and one evaluation step of %s\n"
           " * (decoder_block %s: %d layers, emb_dim %d, %d query heads, %d kv heads, mlp_dim %d,\n"
           " * vocab %lld, batch %lld x %lld tokens), generated by mtxc %s from\n * %s\n"
           " * Regenerate it rather than editing it. */\n",
        cfg_str(c, K_model_name), cfg_str(c, K_decoder_block), c->d.num_decoder_layers, c->d.emb_dim,
        c->d.num_query_heads, c->d.num_kv_heads, c->d.mlp_dim, (long long)cfg_int(c, K_vocab_size),
        (long long)c->d.global_batch, (long long)cfg_int(c, K_max_target_length), MTXC_VERSION, source_desc);
    emitf(e, "#include \"step.h\"\n\n#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n");
    buf_puts(e->b, template_elementwise);
    emit_state_functions(e);
    /* The steps' parallel loops are functions, written before the steps. */
    Buf loops = {0}, steps = {0}, *source = e->b;
    e->loops = &loops;
    e->b = &steps;
    emit_step(e, &p->eval, false);
    emit_step(e, &p->train, true);
    if (p->decode.nops) {
        emit_cache_functions(e);
        emit_decoding(e, &p->prefill);
        emit_decoding(e, &p->decode);
    }
    e->b = source;
    if (loops.s) {
        emitf(e, "\n/* ---- the steps' large elementwise loops, run by mtx_parallel_for on each thread's\n"
               " * share of the elements ---- */\n");
        buf_puts(e->b, loops.s);
    }
    buf_puts(e->b, steps.s);
    buf_free(&loops);
    buf_free(&steps);
    emit_descriptor(e);
}

/* Write a file atomically: a reader sees the old file or the whole new one. */
static bool write_file(const char *dir, const char *name, const char *text, char *err, size_t errlen)
{
    char *path = xfmt("%s/%s", dir, name), *tmp = xfmt("%s/.%s.tmp", dir, name);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, path) != 0) ok = false;
    if (!ok) {
        snprintf(err, errlen, "mtxc: error: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(path);
    free(tmp);
    return ok;
}

void emit_c_text(const Program *p, const char *source_desc, GeneratedC *out)
{
    Buf header = {0}, source = {0}, main_c = {0};
    Emitter e = {p, &header, NULL, false, false, NULL, NULL, 0, 0};
    name_values(&e);
    collect_gemm_plans(&e);
    emit_state_header(&e);
    e.b = &source;
    emit_source(&e, source_desc);
    buf_puts(&main_c, template_trainer_main);
    free(e.cname);
    free(e.plans);
    out->step_h = header.s;
    out->step_c = source.s;
    out->main_c = main_c.s;
}

void generated_c_free(GeneratedC *g)
{
    free(g->step_h);
    free(g->step_c);
    free(g->main_c);
}

bool write_generated_c(const GeneratedC *g, const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "mtxc: error: cannot create directory %s: %s", dir, strerror(errno));
        return false;
    }
    return write_file(dir, "step.h", g->step_h, err, errlen) && write_file(dir, "step.c", g->step_c, err, errlen) &&
           write_file(dir, "main.c", g->main_c, err, errlen);
}

bool emit_c(const Program *p, const char *dir, const char *source_desc, char *err, size_t errlen)
{
    GeneratedC g;
    emit_c_text(p, source_desc, &g);
    bool ok = write_generated_c(&g, dir, err, errlen);
    generated_c_free(&g);
    return ok;
}
