/* Sharding over the mesh: the data, fsdp and expert axes. The tensor axis
 * is the model builder's (model.c: Megatron's column and row splits with
 * tensor_enter / tensor_sum), and so are the experts' split and the
 * all-to-all of their rows; what cannot be lowered (lowerable_mesh) is
 * accounted by compile-only (report.c) and refused by the backends.
 *
 * The model builder already gives each device its slice of the batch
 * (data x fsdp x expert ways); the accumulate pass leaves the step's sums of
 * losses, token counts and gradients in accumulators. This pass makes the
 * devices agree on them:
 *   data, fsdp and expert: the loss and token sums are all-reduced over all three;
 *   data and expert: each gradient is all-reduced over the data axis, and
 *     over the expert axis unless it is an expert's (each device's experts
 *     saw every device's rows for them);
 *   fsdp: every parameter becomes this device's chunk of its flattened
 *     elements (ceil(n / fsdp), zero-padded; ZeRO-3's layout, so any shape
 *     splits), all-gathered into a temporary right before each op that
 *     reads it (forward, recomputed and backward ops alike, so a gathered
 *     weight lives only until its one use), and each gradient is
 *     reduce-scattered into the chunk the device owns, then all-reduced over
 *     the data axis. The optimizer then builds its moments in chunks too and
 *     sums the squared norm over the fsdp axis (optimizer.c). */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

/* A weight read in bf16 (a cast of the param): the cast runs on this
 * device's chunk and the gather moves bf16, half the bytes. */
static bool gather_bf16(Program *p, Func *out, Op *cast, int fsdp)
{
    Value *param = cast->in[0], *y = cast->out[0];
    if (cast->kind != OP_cast || param->kind != V_PARAM || y->dtype != DT_BF16) return false;
    Value *chunk = value_new(p, pool_fmt(p->pool, "%s.chunk", y->name), DT_BF16, 1, param->dim, V_TEMP);
    cast->out[0] = chunk;
    chunk->def = cast;
    func_append(out, cast);
    ops_at(p, cast);
    Op *g = op_add(p, out, OP_all_gather, cast->block, 1, &chunk, 1, &y);
    ops_at(p, NULL);
    IA(g, shards, n) = value_numel(y);
    IA(g, shards, shards) = fsdp;
    return true;
}

/* A copy of f's ops with an all_gather before every op that reads a param. */
static void gather_before_uses(Program *p, Func *f, int fsdp)
{
    Func out = *f;
    out.ops = NULL, out.nops = out.cap = 0;
    int loop_first = -1, loop_last = -1;
    for (int i = 0; i < f->nops; i++) {
        Op *op = f->ops[i];
        if (i == f->loop_first) loop_first = out.nops;
        if (gather_bf16(p, &out, op, fsdp)) {
            if (i == f->loop_last) loop_last = out.nops - 1;
            continue;
        }
        for (int j = 0; j < op->nin; j++) {
            Value *param = op->in[j];
            if (param->kind != V_PARAM || op_info[op->kind].cls == OC_UPDATE) continue;
            Value *full = value_new(p, pool_fmt(p->pool, "gathered.%s", param->name), DT_F32, param->full_rank,
                                    param->full_dim, V_TEMP);
            ops_at(p, op);
            Op *g = op_add(p, &out, OP_all_gather, op->block, 1, &param, 1, &full);
            ops_at(p, NULL);
            IA(g, shards, n) = value_numel(full);
            IA(g, shards, shards) = fsdp;
            for (int k = j; k < op->nin; k++)           /* one gather serves each read of the op */
                if (op->in[k] == param) op->in[k] = full;
        }
        func_append(&out, op);
        if (i == f->loop_last) loop_last = out.nops - 1;
    }
    free(f->ops);
    if (f->loop_count > 0) out.loop_first = loop_first, out.loop_last = loop_last;
    *f = out;
}

static void make_chunk(Value *v, int fsdp)
{
    v->full_rank = v->rank;
    memcpy(v->full_dim, v->dim, sizeof v->dim);
    v->dim[0] = (int64_t)mtx_shard_chunk((size_t)value_numel(v), fsdp);
    v->rank = 1;
}

/* Turn a param into this device's chunk. Each microbatch's gradient is
 * reduce-scattered as soon as it is made (accumulate.c adds it right after
 * its op), and the chunk is what is accumulated: no device ever holds all
 * the full gradients at once. */
static void shard_param(Program *p, Func *f, Value *param, int fsdp, const char *block)
{
    make_chunk(param, fsdp);
    if (!param->grad) return;
    Value *acc = param->grad;                     /* accumulate.c's sum, added to in the loop */
    int at = -1;
    for (int i = f->loop_first; i <= f->loop_last && at < 0; i++)
        if (f->ops[i]->kind == OP_accumulate && f->ops[i]->in[0] == acc) at = i;
    if (at < 0) fatal("shard: no accumulation of %s", acc->name);
    Op *add = f->ops[at];
    Value *full = add->in[1];
    Value *chunk = value_new(p, pool_fmt(p->pool, "grad_chunk.%s", param->name), DT_F32, 1, param->dim, V_TEMP);
    Op *op = op_add(p, f, OP_reduce_scatter, block, 1, &full, 1, &chunk);
    IA(op, shards, n) = value_numel(full);
    IA(op, shards, shards) = fsdp;
    func_move_last(f, at);
    f->loop_last++;
    add->in[1] = chunk;
    make_chunk(acc, fsdp);
}

/* Does the first logical_axis_rules entry for `logical` name mesh axis `axis`? */
static bool rule_maps(const Config *c, const char *logical, const char *axis)
{
    const ConfigValue *rules = &c->v[K_logical_axis_rules];
    for (int r = 0; r < rules->nrules; r++) {
        if (strcmp(rules->rules[r].name, logical)) continue;
        for (int a = 0; a < rules->rules[r].axes.n; a++)
            if (!strcmp(rules->rules[r].axes.items[a], axis)) return true;
        return false;
    }
    return false;
}

/* The lowering's layout is MaxText's default rules': the batch over data and
 * fsdp, params over fsdp by embed, heads and MLP over tensor. Rules that
 * say otherwise are for compile-only. */
static bool rules_match(const Config *c, char *err, size_t errlen)
{
    static const struct { const char *logical, *axis; int mesh; } need[] = {
        {"activation_batch", "data", 0}, {"activation_batch", "fsdp", 1}, {"embed", "fsdp", 1},
        {"heads", "tensor", 2}, {"q_heads", "tensor", 2}, {"kv_heads", "tensor", 2}, {"mlp", "tensor", 2},
    };
    const int mesh[3] = {c->d.mesh_data, c->d.mesh_fsdp, c->d.mesh_tensor};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (mesh[need[i].mesh] == 1 || rule_maps(c, need[i].logical, need[i].axis)) continue;
        config_error(err, errlen, c->v[K_logical_axis_rules].loc,
                     "the backends lower this mesh with MaxText's default layout, which maps logical axis '%s' "
                     "to mesh axis '%s'; these logical_axis_rules do not (use mtxc compile-only for their report)",
                     need[i].logical, need[i].axis);
        return false;
    }
    return true;
}

bool lowerable_mesh(const Config *c, char *err, size_t errlen)
{
    const Derived *d = &c->d;
    int tp = d->mesh_tensor;
    if (!rules_match(c, err, errlen)) return false;
    if (tp > 1 && d->spec->moe) {
        snprintf(err, errlen, "mtxc: error: mixtral's experts are not split over the tensor axis yet (ici_tensor_parallelism "
                              "%d); use mtxc compile-only for its report", tp);
        return false;
    }
    /* one kv head (multi-query) is replicated, as Megatron does */
    if (tp > 1 && (d->num_query_heads % tp || (d->num_kv_heads % tp && d->num_kv_heads > 1) || d->mlp_dim % tp)) {
        snprintf(err, errlen, "mtxc: error: tensor parallelism %d must divide num_query_heads %d, num_kv_heads %d "
                              "(or it is 1) and mlp_dim %d to be lowered; use mtxc compile-only for its report",
                 tp, d->num_query_heads, d->num_kv_heads, d->mlp_dim);
        return false;
    }
    /* each device's heads would give only part of the shared scales' gradients */
    if (tp > 1 && cfg_bool(c, K_use_qk_norm) && d->spec->qk_norm) {
        snprintf(err, errlen, "mtxc: error: use_qk_norm with tensor parallelism %d is not lowered yet (the query and "
                              "key norm scales are shared by heads on different devices); use mtxc compile-only for "
                              "its report", tp);
        return false;
    }
    if ((d->mesh_fsdp > 1 || tp > 1) && !strcmp(cfg_str(c, K_opt_type), "muon")) {
        snprintf(err, errlen, "mtxc: error: opt_type muon with fsdp %d x tensor %d is not lowered: muon orthogonalizes "
                              "whole matrices and these axes split them; use mtxc compile-only for its report",
                 d->mesh_fsdp, tp);
        return false;
    }
    return true;
}

/* Gradients all-reduced over `axes` (skipped when those axes are one device). */
static void all_reduce_grads(Program *p, Func *f, Value **grads, int n, int axes, int devices, const char *block, int *at)
{
    if (n == 0 || devices <= 1) return;
    IA(op_add(p, f, OP_all_reduce_sum, block, n, grads, 0, NULL), all_reduce_sum, axes) = axes;
    func_move_last(f, (*at)++);
}

bool shard(Program *p, char *err, size_t errlen)
{
    const Derived *d = &p->cfg->d;
    int data = d->mesh_data, fsdp = d->mesh_fsdp, expert = d->mesh_expert;
    if (data * fsdp * expert <= 1) return true;
    /* A mesh the backends refuse is lowered as data parallelism over all
     * three, for compile-only's C check; its accounting is report.c's. */
    if (!p->mesh_lowered) data *= fsdp * expert, fsdp = expert = 1;
    /* The tensor axis: every device's gradients of replicated params are equal
     * (tensor_sum made their inputs' gradients whole); of split ones, its own. */
    (void)err, (void)errlen;
    Func *f = &p->train;
    Value **grads = xmalloc(sizeof(Value *) * (size_t)(p->nvalues + 1));
    Value **expert_grads = xmalloc(sizeof(Value *) * (size_t)(p->nvalues + 1));
    int n = 0, nexpert = 0;
    int nvalues = p->nvalues;                     /* the new gradient chunks are not params */
    for (int i = 0; i < nvalues; i++) {
        Value *v = p->values[i];
        if (v->kind != V_PARAM) continue;
        if (fsdp > 1) shard_param(p, f, v, fsdp, pool_fmt(p->pool, "fsdp: reduce-scatter over %d devices", fsdp));
        if (v->grad && v->split_axis == MTX_AXIS_EXPERT) expert_grads[nexpert++] = v->grad;
        else if (v->grad) grads[n++] = v->grad;
    }
    /* Right after the microbatch loop, before the sums are used. */
    int at = f->loop_last + 1;
    const char *block = expert > 1 ? pool_fmt(p->pool, "data x fsdp x expert = %d x %d x %d: sums over the devices",
                                              data, fsdp, expert)
                                   : pool_fmt(p->pool, "data x fsdp = %d x %d: sums over the devices", data, fsdp);
    Value *sums[3] = {p->loss_sum, p->weight_sum, p->moe_lb_sum};
    Op *sum = op_add(p, f, OP_all_reduce_sum, block, p->moe_lb_sum ? 3 : 2, sums, 0, NULL);
    IA(sum, all_reduce_sum, axes) = MTX_AXIS_DATA | MTX_AXIS_FSDP | MTX_AXIS_EXPERT;
    func_move_last(f, at++);
    int over = fsdp > 1 ? MTX_AXIS_DATA : MTX_AXIS_DATA | MTX_AXIS_FSDP;   /* fsdp's sums are the reduce-scatters' */
    int over_devices = fsdp > 1 ? data : data * fsdp;
    all_reduce_grads(p, f, grads, n, over | MTX_AXIS_EXPERT, over_devices * expert, block, &at);
    all_reduce_grads(p, f, expert_grads, nexpert, over, over_devices, block, &at);
    free(grads);
    free(expert_grads);
    if (fsdp > 1) {
        gather_before_uses(p, &p->eval, fsdp);
        gather_before_uses(p, f, fsdp);
    }
    return true;
}
