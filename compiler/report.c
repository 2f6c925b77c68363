/* mtxc compile-only: what one device of a mesh needs for one training step,
 * without allocating any of it. State bytes come from each parameter's
 * logical axes and logical_axis_rules (MaxText's sharding); step temporaries
 * from memory-planning the per-device program (the global program with its
 * batch split over data x fsdp and heads, MLP and vocab over tensor);
 * collectives from the mesh, counted as ring algorithms move bytes. */
#include "mtxc.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Mesh size of a mesh axis name. */
static int axis_size(const Config *c, const char *axis)
{
    if (!strcmp(axis, "data")) return c->d.mesh_data;
    if (!strcmp(axis, "fsdp")) return c->d.mesh_fsdp;
    if (!strcmp(axis, "tensor")) return c->d.mesh_tensor;
    if (!strcmp(axis, "expert")) return c->d.mesh_expert;
    return 1;
}

/* How many ways dimension `logical` is split: the first rule for that name
 * whose mesh axes (not yet used by another dimension) divide the size. */
static int64_t shards(const Config *c, const char *logical, int64_t size, bool used[4])
{
    if (!logical) return 1;
    const ConfigValue *rules = &c->v[K_logical_axis_rules];
    static const char *axes[4] = {"data", "fsdp", "tensor", "expert"};
    for (int r = 0; r < rules->nrules; r++) {
        if (strcmp(rules->rules[r].name, logical)) continue;
        int64_t n = 1;
        bool ok = true;
        for (int a = 0; a < rules->rules[r].axes.n; a++) {
            for (int k = 0; k < 4; k++)
                if (!strcmp(rules->rules[r].axes.items[a], axes[k]) && used[k]) ok = false;
            n *= axis_size(c, rules->rules[r].axes.items[a]);
        }
        if (!ok || size % n) continue;
        for (int a = 0; a < rules->rules[r].axes.n; a++)
            for (int k = 0; k < 4; k++)
                if (!strcmp(rules->rules[r].axes.items[a], axes[k])) used[k] = true;
        return n;
    }
    return 1;
}

/* Of the model's tensor: an fsdp chunk or tensor-parallel share of the
 * lowered program is accounted by its tensor's logical axes, as any other. */
static int64_t local_bytes(const Config *c, const Value *v)
{
    bool used[4] = {false, false, false, false};
    int64_t dim[4];
    int rank = value_share_shape(v, dim);
    if (v->split_dim) dim[v->split_dim - 1] *= v->split_ways;
    int64_t n = value_global_numel(v) * 4;
    for (int d = 0; d < rank; d++) n /= shards(c, v->axes[d], dim[d], used);
    return n;
}

/* Ring all-reduce moves 2 (n-1)/n of the data through each device;
 * all-gather and reduce-scatter (n-1)/n of the full tensor. */
static double ring(int n, double bytes, double passes) { return n > 1 ? passes * (n - 1) / n * bytes : 0; }

/* The generated C through clang's parser, in process (with the JIT built). */
typedef struct {
    GeneratedC g;
    bool ok, checked;
    char err[8192];
} CCheck;

static void *check_c(void *arg)
{
    CCheck *k = arg;
    k->ok = true;
#ifdef MTXC_HAVE_JIT
    k->ok = jit_check_c(&k->g, k->err, sizeof k->err);
    k->checked = k->ok;
#endif
    return NULL;
}

/* Bytes an FSDP gather moves per element of each param, by value id: 2 for
 * a weight the step reads in bf16 (its chunk is cast, then gathered), 4 for
 * one read in float32, 6 for one read both ways. */
static int *gather_bytes(const Program *p)
{
    int *bytes = xcalloc((size_t)p->nvalues + 1, sizeof(int));   /* bits: 2 read in bf16, 4 in float32 */
    for (int i = 0; i < p->train.nops; i++) {
        const Op *op = p->train.ops[i];
        if (op_info[op->kind].cls == OC_UPDATE) continue;
        for (int j = 0; j < op->nin; j++)
            if (op->in[j]->kind == V_PARAM)
                bytes[op->in[j]->id] |= op->kind == OP_cast && op->out[0]->dtype == DT_BF16 ? 2 : 4;
    }
    return bytes;
}

bool compile_report(const Config *c, Report *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    const Derived *d = &c->d;
    int dp = batch_shards(c), tp = d->mesh_tensor;
    /* config_resolve.c checked that the microbatch splits over dp */
    if ((d->num_kv_heads % tp && d->num_kv_heads > 1) || d->mlp_dim % tp) {
        snprintf(err, errlen, "mtxc: error: ici/dcn tensor parallelism %d must divide num_kv_heads %d (or it is 1: "
                              "replicated) and mlp_dim %d",
                 tp, d->num_kv_heads, d->mlp_dim);
        return false;
    }
    Program *p = compile_program(c, NULL, err, errlen);
    if (!p) return false;
    CCheck check;                                   /* through the C backend, as a build would */
    emit_c_text(p, "mtxc compile-only", &check.g);
    r->c_bytes = (int64_t)strlen(check.g.step_c);
    r->parallel_regions = parallel_regions(&p->train);
    /* clang parses the C on the other core while the per-device program compiles */
    pthread_t checker;
    bool threaded = pthread_create(&checker, NULL, check_c, &check) == 0;
    if (!threaded) check_c(&check);

    int *gather = gather_bytes(p);
    int64_t expert_grads = 0;                       /* reduced over data only: the expert axis splits them */
    for (int i = 0; i < p->nvalues; i++) {
        const Value *v = p->values[i];
        if (v->kind == V_PARAM) {
            r->param_count += value_global_numel(v);
            r->params += local_bytes(c, v);
            if (v->grad) r->grads += local_bytes(c, v);
            if (v->grad && v->axes[0] && !strcmp(v->axes[0], "exp")) expert_grads += local_bytes(c, v);
            r->full_params += value_global_numel(v) * 4;
            r->gathered_params += value_global_numel(v) * gather[i];
        } else if (v->kind == V_OPT) {
            r->opt_state += local_bytes(c, v);
        } else if (v->kind == V_COUNTER) {
            r->opt_state += value_bytes(v);
        }
    }
    /* FSDP gathers one layer's weights at a time before using them. */
    if (d->mesh_fsdp > 1) {
        int64_t *layer = xcalloc((size_t)d->num_decoder_layers + 1, sizeof(int64_t));
        for (int i = 0; i < p->nvalues; i++) {
            const Value *v = p->values[i];
            if (v->kind == V_PARAM && !strncmp(v->name, "layers.", 7)) {
                int l = atoi(v->name + 7);
                if (l >= 0 && l < d->num_decoder_layers) layer[l] += value_global_numel(v) * gather[i] / d->mesh_tensor;
            }
        }
        for (int l = 0; l < d->num_decoder_layers; l++)
            if (layer[l] > r->gathered) r->gathered = layer[l];
        free(layer);
    }
    free(gather);
    r->flops = p->flops_per_step * batch_shards(c);   /* the program is one batch slice's */
    r->lowered = p->mesh_lowered;
    r->lowered_state = p->state_bytes;
    r->lowered_arena = program_arena_bytes(p) + program_scratch_bytes(p);
    r->kv_cache = p->decode.nops ? p->cache_bytes : 0;
    r->prefill_length = p->prefill_length;
    program_free(p);

    /* The per-device program: its memory plan gives the step's temporaries.
     * A lowered expert axis stays, so that its all-to-all buffers (room for
     * every device's rows, as MaxText's dropless buffer) are planned. */
    Config local = *c;
    int ep = r->lowered ? d->mesh_expert : 1, local_dp = dp / ep;
    local.d.global_batch = d->global_batch / local_dp;
    local.d.micro_batch = d->micro_batch / local_dp;
    local.d.eval_batch = local.d.global_batch > 0 ? local.d.global_batch : 1;   /* a multiple of ep */
    local.d.num_query_heads = d->num_query_heads / tp;
    local.d.num_kv_heads = d->num_kv_heads > 1 ? d->num_kv_heads / tp : 1;   /* one kv head: on every device */
    local.d.mlp_dim = d->mlp_dim / tp;
    if (cfg_int(c, K_vocab_size) % tp == 0) local.v[K_vocab_size].i = cfg_int(c, K_vocab_size) / tp;
    local.d.num_devices = ep;
    local.d.mesh_data = local.d.mesh_fsdp = local.d.mesh_tensor = 1;   /* already divided above */
    local.d.mesh_expert = ep;
    Program *lp = compile_program_with(&local, NULL, true, err, errlen);
    if (threaded) pthread_join(checker, NULL);
    generated_c_free(&check.g);
    if (!check.ok) {
        snprintf(err, errlen, "%s", check.err);
        program_free(lp);
        return false;
    }
    r->c_checked = check.checked;
    if (!lp) return false;
    r->temporaries = program_arena_bytes(lp) + program_scratch_bytes(lp) + r->gathered;
    program_free(lp);

    r->peak = r->params + r->grads + r->opt_state + r->temporaries;
    r->device_bytes = (int64_t)(cfg_float(c, K_device_memory_gib) * 1073741824.0);
    r->fits = r->peak <= r->device_bytes;

    /* Collectives of one step, per device. */
    int k = (int)cfg_int(c, K_gradient_accumulation_steps);
    /* a device's TP shard, gathered over fsdp forward and backward, every microbatch; its float32 gradients scattered */
    r->fsdp_gather = ring(d->mesh_fsdp, (double)r->gathered_params / tp, 2.0 * k);
    r->fsdp_scatter = ring(d->mesh_fsdp, (double)r->full_params / tp, 1.0);
    /* the expert axis splits the batch too: the other params' gradients are summed over it */
    r->data_allreduce = ring(d->mesh_data * d->mesh_expert, (double)(r->grads - expert_grads), 2.0) +
                        ring(d->mesh_data, (double)expert_grads, 2.0);
    if (d->mesh_expert > 1) {   /* each MoE layer: rows to their experts and back, forward and backward */
        double rows = (double)(d->micro_batch / dp) * (double)cfg_int(c, K_max_target_length) *
                      (double)cfg_int(c, K_num_experts_per_tok);
        double bytes = rows * d->emb_dim * (d->dtype == DT_BF16 ? 2.0 : 4.0);
        r->expert_alltoall = 4.0 * bytes * (d->mesh_expert - 1) / d->mesh_expert * d->num_decoder_layers * k;
    }
    double act = (double)(d->micro_batch / dp) * (double)cfg_int(c, K_max_target_length) * d->emb_dim * 4.0;
    r->tensor_allreduce = ring(tp, act, 2.0) * 4.0 * d->num_decoder_layers * sublayers(c) * k;   /* 2 forward + 2 backward a block */
    return true;
}

static const char *gb(Pool *pool, double bytes) { return pool_fmt(pool, "%.3f GB", bytes / 1e9); }

void report_print(FILE *out, const Config *c, const Report *r, bool json)
{
    const Derived *d = &c->d;
    double flops_dev = r->flops / d->num_devices;
    Pool *pool = pool_new();
    if (json) {
        fprintf(out, "{\"model_name\": \"%s\", \"compile_topology\": \"%s\", \"num_slices\": %d, \"num_devices\": %d, "
                     "\"mesh\": {\"data\": %d, \"fsdp\": %d, \"tensor\": %d, \"expert\": %d}, \"param_count\": %lld, "
                     "\"per_device_bytes\": {\"params\": %lld, \"gradients\": %lld, \"optimizer_state\": %lld, "
                     "\"step_temporaries\": %lld, \"peak\": %lld, \"device_memory\": %lld}, \"fits\": %s, "
                     "\"flops_per_step\": %.6g, \"flops_per_step_per_device\": %.6g, "
                     "\"collective_bytes_per_device\": {\"fsdp_all_gather_params\": %.6g, "
                     "\"fsdp_reduce_scatter_grads\": %.6g, \"data_all_reduce_grads\": %.6g, "
                     "\"tensor_all_reduce_activations\": %.6g, \"expert_all_to_all_tokens\": %.6g}, "
                     "\"remat_policy\": \"%s\", \"generated_c_bytes\": %lld, \"parallel_regions_per_step\": %lld, "
                     "\"cpu_trainer_bytes\": %s, \"decode_kv_cache_bytes\": %s}\n",
                cfg_str(c, K_model_name), cfg_str(c, K_compile_topology), d->num_slices, d->num_devices, d->mesh_data,
                d->mesh_fsdp, d->mesh_tensor, d->mesh_expert, (long long)r->param_count, (long long)r->params,
                (long long)r->grads,
                (long long)r->opt_state, (long long)r->temporaries, (long long)r->peak, (long long)r->device_bytes,
                r->fits ? "true" : "false", r->flops, flops_dev, r->fsdp_gather, r->fsdp_scatter, r->data_allreduce,
                r->tensor_allreduce, r->expert_alltoall, cfg_str(c, K_remat_policy), (long long)r->c_bytes,
                (long long)r->parallel_regions, r->lowered ? pool_fmt(pool, "{\"state\": %lld, \"step_arena\": %lld}", (long long)r->lowered_state,
                                      (long long)r->lowered_arena)
                           : "null",
                r->kv_cache ? pool_fmt(pool, "%lld", (long long)r->kv_cache) : "null");
        pool_free(pool);
        return;
    }
    fprintf(out, "compile-only: %s (%.3f B params) on %s%s, %d device%s, mesh data %d x fsdp %d x tensor %d%s\n",
            cfg_str(c, K_model_name), (double)r->param_count / 1e9,
            cfg_str(c, K_compile_topology)[0] ? cfg_str(c, K_compile_topology) : "this machine",
            d->num_slices > 1 ? pool_fmt(pool, " x %d slices", d->num_slices) : "", d->num_devices,
            d->num_devices == 1 ? "" : "s", d->mesh_data, d->mesh_fsdp, d->mesh_tensor,
            d->mesh_expert > 1 ? pool_fmt(pool, " x expert %d", d->mesh_expert) : "");
    fprintf(out, "per device:\n");
    fprintf(out, "  params              %12s\n", gb(pool, (double)r->params));
    fprintf(out, "  gradients           %12s   (sharded as the params, after reduce-scatter)\n", gb(pool, (double)r->grads));
    fprintf(out, "  optimizer state     %12s\n", gb(pool, (double)r->opt_state));
    fprintf(out, "  step temporaries    %12s   (per-device step, %lld x %lld tokens, remat_policy %s%s%s)\n",
            gb(pool, (double)r->temporaries), (long long)(d->micro_batch / batch_shards(c)),
            (long long)cfg_int(c, K_max_target_length), cfg_str(c, K_remat_policy),
            r->gathered ? pool_fmt(pool, ", one layer's gathered weights %.3f GB", (double)r->gathered / 1e9) : "",
            d->mesh_expert > 1 && r->lowered
                ? pool_fmt(pool, "; the experts' rows planned for the worst case, all %d devices' rows on one, as "
                                 "MaxText's dropless buffer", d->mesh_expert)
                : "");
    fprintf(out, "  peak                %12s   of %s: %s\n", gb(pool, (double)r->peak), gb(pool, (double)r->device_bytes),
            r->fits ? "fits" : "DOES NOT FIT");
    fprintf(out, "compute per step:     %.4g TFLOP, %.4g TFLOP per device\n", r->flops / 1e12, flops_dev / 1e12);
    fprintf(out, "collectives per step, bytes through each device:\n");
    fprintf(out, "  fsdp all-gather of params        %12s\n", gb(pool, r->fsdp_gather));
    fprintf(out, "  fsdp reduce-scatter of grads     %12s\n", gb(pool, r->fsdp_scatter));
    fprintf(out, "  data all-reduce of grads         %12s\n", gb(pool, r->data_allreduce));
    fprintf(out, "  tensor all-reduce of activations %12s\n", gb(pool, r->tensor_allreduce));
    if (d->mesh_expert > 1)
        fprintf(out, "  expert all-to-all of tokens      %12s   (to the experts' devices and back, forward and backward)\n",
                gb(pool, r->expert_alltoall));
    fprintf(out, "generated C: %lld bytes%s\n", (long long)r->c_bytes,
            r->c_checked ? ", parsed and type-checked by clang" : " (this mtxc has no clang to check it)");
    fprintf(out, "parallel regions a train step: %lld (kernel, GEMM and update calls, casts, fused loops of %d+ "
                 "elements; the runtime keeps those under %.1f ms on one thread)\n",
            (long long)r->parallel_regions, PARALLEL_LOOP_MIN, MTX_PARALLEL_MIN_NS / 1e6);
    /* What mtxc's own CPU trainer of this mesh holds: FSDP chunks every param
     * and tensor parallelism replicates embeddings and norms, so it can differ
     * from MaxText's sharding above. */
    if (r->lowered)
        fprintf(out, "mtxc's CPU trainer for this mesh, per rank: state %s + step arena %s = %s\n",
                gb(pool, (double)r->lowered_state), gb(pool, (double)r->lowered_arena),
                gb(pool, (double)(r->lowered_state + r->lowered_arena)));
    else
        fprintf(out, "mtxc's CPU trainer: this mesh is not lowered (mtxc build says why)\n");
    if (cfg_bool(c, K_enable_checkpointing) && cfg_bool(c, K_async_checkpointing))
        fprintf(out, "async checkpoints are written from the live state while the next step computes its "
                     "gradients: no extra memory\n");
    if (r->kv_cache)
        fprintf(out, "decoding one sequence (mtxc decode): KV cache %s for %lld positions, prompts up to %lld tokens\n",
                gb(pool, (double)r->kv_cache), (long long)cfg_int(c, K_max_target_length), (long long)r->prefill_length);
    else
        fprintf(out, "decoding: on single-device meshes only\n");
    pool_free(pool);
}
