/* Derived values (as MaxText's pyconfig computes them) and the checks that
 * involve more than one key. Each error points at the key that was set last. */
#include "mtxc.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const derived_names[] = {
    "emb_dim", "num_query_heads", "num_kv_heads", "mlp_dim", "num_decoder_layers",
    "num_devices", "mesh_shape", "global_batch_size_to_train_on",
    "micro_batch_size_to_train_on", "global_batch_size_to_eval_on", "tokens_per_step",
};
const int num_derived_names = sizeof derived_names / sizeof derived_names[0];

#define FAIL(key, ...) \
    do { config_error(err, errlen, c->v[key].loc, __VA_ARGS__); return false; } while (0)

/* Of two keys, the one whose value has the higher precedence (set later). */
static int later(const Config *c, int a, int b)
{
    return c->v[a].seq >= c->v[b].seq ? a : b;
}

/* Keys that size tensors or the mesh: mtxc's kernels index with 32-bit ints. */
static const int size_keys[] = {
    K_base_emb_dim, K_base_num_query_heads, K_base_num_kv_heads, K_base_mlp_dim, K_base_num_decoder_layers,
    K_head_dim, K_vocab_size, K_max_target_length, K_trainable_position_size, K_gradient_accumulation_steps,
    K_ici_data_parallelism, K_ici_fsdp_parallelism, K_ici_tensor_parallelism, K_dcn_data_parallelism,
    K_dcn_fsdp_parallelism, K_dcn_tensor_parallelism, K_ici_expert_parallelism, K_dcn_expert_parallelism,
    K_compile_topology_num_slices, K_num_experts,
    K_num_experts_per_tok,
};

static bool check_size_keys(Config *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof size_keys / sizeof size_keys[0]; i++)
        if (cfg_int(c, size_keys[i]) > INT_MAX)
            FAIL(size_keys[i], "%s %lld is too large (at most %d: tensor and mesh sizes are 32-bit in mtxc)",
                 mtx_keys[size_keys[i]].name, cfg_int(c, size_keys[i]), INT_MAX);
    return true;
}

/* base << shift, or -1 past INT_MAX */
static long long scaled(long long base, int shift)
{
    return shift < 31 && base <= (INT_MAX >> shift) ? base << shift : -1;
}

/* MaxText: global_parameter_scale = 2^s splits s over (emb, heads, mlp, layers). */
static bool scale_model(Config *c, char *err, size_t errlen)
{
    int log2 = 0;
    for (long long s = cfg_int(c, K_global_parameter_scale); s > 1; s >>= 1) log2++;
    int base = log2 / 3, rem = log2 % 3;
    int head_scale = base + (rem > 0), emb_scale = base + (rem > 1), layer_scale = base;
    static const struct { int key, which; } dims[] = {
        {K_base_emb_dim, 0}, {K_base_num_query_heads, 1}, {K_base_num_kv_heads, 1}, {K_base_mlp_dim, 1},
        {K_base_num_decoder_layers, 2},
    };
    int shifts[3] = {emb_scale, head_scale, layer_scale};
    int *out[5] = {&c->d.emb_dim, &c->d.num_query_heads, &c->d.num_kv_heads, &c->d.mlp_dim, &c->d.num_decoder_layers};
    for (int i = 0; i < 5; i++) {
        long long v = scaled(cfg_int(c, dims[i].key), shifts[dims[i].which]);
        if (v < 0)
            FAIL(later(c, K_global_parameter_scale, dims[i].key),
                 "global_parameter_scale %lld makes %s %lld x 2^%d, past %d", cfg_int(c, K_global_parameter_scale),
                 mtx_keys[dims[i].key].name, cfg_int(c, dims[i].key), shifts[dims[i].which], INT_MAX);
        *out[i] = (int)v;
    }
    return true;
}

/* The largest tensors a step holds stay far inside 64-bit byte offsets, and
 * a step's tokens inside the kernels' 32-bit row counts. */
enum { MAX_LAYERS = 512 };

static bool check_step_sizes(Config *c, char *err, size_t errlen)
{
    const Derived *d = &c->d;
    double t = (double)cfg_int(c, K_max_target_length), limit = 0x1p60;
    double tokens = fmax((double)d->global_batch, (double)d->eval_batch) * t;
    double e = d->emb_dim, m = d->mlp_dim, v = (double)cfg_int(c, K_vocab_size), h = d->num_query_heads;
    double dh = (double)cfg_int(c, K_head_dim);
    bool moe = d->spec->moe;
    double experts = moe ? (double)cfg_int(c, K_num_experts) : 1, k = moe ? (double)cfg_int(c, K_num_experts_per_tok) : 1;
    double params = 2 * v * e + d->num_decoder_layers * sublayers(c) *
                                    (2 * e * h * dh + 2 * e * d->num_kv_heads * dh + 3 * e * m * experts);
    if (tokens > INT_MAX)
        FAIL(later(c, K_per_device_batch_size, K_max_target_length),
             "a step of %.0f tokens (batch x max_target_length) is too large (at most %d)", tokens, INT_MAX);
    if (tokens * k > INT_MAX)
        FAIL(later(c, K_per_device_batch_size, K_num_experts_per_tok),
             "a step routes %.0f (token, expert) rows (tokens x num_experts_per_tok), at most %d", tokens * k, INT_MAX);
    if (tokens * v > limit)
        FAIL(later(c, K_vocab_size, K_per_device_batch_size), "the logits would hold %.3g elements (at most 2^60)",
             tokens * v);
    if (tokens * h * t > limit)
        FAIL(later(c, K_max_target_length, K_base_num_query_heads),
             "the attention scores would hold %.3g elements (at most 2^60)", tokens * h * t);
    int size_key = later(c, later(c, K_global_parameter_scale, K_base_num_decoder_layers), K_base_emb_dim);
    if (params > limit) FAIL(size_key, "the model would hold %.3g parameters (at most 2^60)", params);
    /* mtxc builds every layer's ops (no scan over layers), and its passes
     * grow faster than linearly with them: 512 layers, 4x the deepest
     * released models, compile in seconds. */
    if (d->num_decoder_layers > MAX_LAYERS)
        FAIL(later(c, K_global_parameter_scale, K_base_num_decoder_layers),
             "num_decoder_layers %d is too large (at most %d: mtxc builds every layer's ops)", d->num_decoder_layers,
             MAX_LAYERS);
    return true;
}

static bool check_model(Config *c, char *err, size_t errlen)
{
    Derived *d = &c->d;
    if (d->emb_dim % d->num_query_heads)
        FAIL(later(c, K_base_emb_dim, K_base_num_query_heads),
             "emb_dim %d is not divisible by num_query_heads %d", d->emb_dim, d->num_query_heads);
    if (d->num_query_heads % d->num_kv_heads)
        FAIL(later(c, K_base_num_query_heads, K_base_num_kv_heads),
             "num_query_heads %d is not a multiple of num_kv_heads %d", d->num_query_heads, d->num_kv_heads);
    const BlockSpec *block = d->spec;
    const StrList *acts = &c->v[K_mlp_activations].list;
    if (acts->n < 1 || acts->n > 2)
        FAIL(K_mlp_activations, "mlp_activations must name one or two activations, got %d", acts->n);
    if (block->gemma2 && cfg_int(c, K_sliding_window_size) <= 0)
        FAIL(K_sliding_window_size, "decoder_block gemma2 needs sliding_window_size > 0 for its local layers");
    if (cfg_int(c, K_num_experts_per_tok) > cfg_int(c, K_num_experts))
        FAIL(K_num_experts_per_tok, "num_experts_per_tok %lld is more than num_experts %lld",
             cfg_int(c, K_num_experts_per_tok), cfg_int(c, K_num_experts));
    if (block->gpt3) {
        if (d->num_kv_heads != d->num_query_heads)
            FAIL(later(c, K_base_num_query_heads, K_base_num_kv_heads),
                 "decoder_block gpt3 needs num_kv_heads (%d) equal to num_query_heads (%d)",
                 d->num_kv_heads, d->num_query_heads);
        long long pos = cfg_int(c, K_trainable_position_size);
        if (pos > 0 && pos < cfg_int(c, K_max_target_length))
            FAIL(later(c, K_trainable_position_size, K_max_target_length),
                 "max_target_length %lld exceeds trainable_position_size %lld",
                 cfg_int(c, K_max_target_length), pos);
    }
    return true;
}

enum { MESH_AXES = 4 };   /* data, fsdp, tensor, expert */

/* Resolve one group of mesh axes (ici or dcn) against its device count;
 * at most one axis may be -1 ("the rest"). */
static bool fill_axes(Config *c, const int keys[MESH_AXES], long long total, int out[MESH_AXES], bool known,
                      const char *what, char *err, size_t errlen)
{
    long long prod = 1;
    int auto_key = -1;
    for (int i = 0; i < MESH_AXES; i++) {
        long long v = cfg_int(c, keys[i]);
        if (v == -1) {
            if (auto_key >= 0)
                FAIL(later(c, auto_key, keys[i]), "only one %s axis may be -1, but %s and %s both are",
                     what, mtx_keys[auto_key].name, mtx_keys[keys[i]].name);
            auto_key = keys[i];
        } else {
            prod *= v;
            if (prod > INT_MAX)
                FAIL(keys[i], "the %s mesh reaches %lld devices at %s (at most %d)", what, prod, mtx_keys[keys[i]].name,
                     INT_MAX);
        }
    }
    for (int i = 0; i < MESH_AXES; i++) out[i] = (int)cfg_int(c, keys[i]);
    if (!known) total = prod;                /* no target: the mesh defines the count */
    if (auto_key >= 0) {
        if (total % prod)
            FAIL(auto_key, "%s: %lld devices cannot be split by the other axes' product %lld",
                 mtx_keys[auto_key].name, total, prod);
        for (int i = 0; i < MESH_AXES; i++)
            if (keys[i] == auto_key) out[i] = (int)(total / prod);
    } else if (prod != total) {
        FAIL(later(c, later(c, keys[0], keys[1]), later(c, keys[2], keys[3])),
             "the %s mesh %s=%d x %s=%d x %s=%d x %s=%d has %lld devices, but the target has %lld",
             what, mtx_keys[keys[0]].name, out[0], mtx_keys[keys[1]].name, out[1],
             mtx_keys[keys[2]].name, out[2], mtx_keys[keys[3]].name, out[3], prod, total);
    }
    return true;
}

static bool resolve_mesh(Config *c, char *err, size_t errlen)
{
    Derived *d = &c->d;
    const char *topo = cfg_str(c, K_compile_topology);
    long long per_slice = 0, slices = cfg_int(c, K_compile_topology_num_slices);
    bool known = topo[0] != 0;
    if (known) {
        char *end;
        if (strncmp(topo, "cpu-", 4) || (per_slice = strtoll(topo + 4, &end, 10)) <= 0 || *end)
            FAIL(K_compile_topology, "unknown compile_topology '%s' (expected cpu-N, e.g. cpu-8)", topo);
        if (per_slice > INT_MAX)
            FAIL(K_compile_topology, "compile_topology '%s' has more than %d devices", topo, INT_MAX);
    }
    if (slices == -1) slices = 1;
    static const int ici[MESH_AXES] = {K_ici_data_parallelism, K_ici_fsdp_parallelism, K_ici_tensor_parallelism,
                                       K_ici_expert_parallelism};
    static const int dcn[MESH_AXES] = {K_dcn_data_parallelism, K_dcn_fsdp_parallelism, K_dcn_tensor_parallelism,
                                       K_dcn_expert_parallelism};
    int in[MESH_AXES], dn[MESH_AXES];
    if (!fill_axes(c, ici, per_slice, in, known, "ici", err, errlen)) return false;
    if (!fill_axes(c, dcn, slices, dn, true, "dcn", err, errlen)) return false;
    /* Each factor fits an int; the ici x dcn product is checked, axis by axis. */
    static const char *const axis_names[MESH_AXES] = {"data", "fsdp", "tensor", "expert"};
    long long axis[MESH_AXES], devices = 1;
    for (int i = 0; i < MESH_AXES; i++) {
        axis[i] = (long long)in[i] * dn[i];
        if (axis[i] > INT_MAX / devices)
            FAIL(later(c, K_compile_topology_num_slices, later(c, ici[i], dcn[i])),
                 "the mesh (ici x dcn) has more than %d devices from its %s axis on (ici %d x dcn %d there)", INT_MAX,
                 axis_names[i], in[i], dn[i]);
        devices *= axis[i];
    }
    d->num_slices = (int)slices;
    d->mesh_data = (int)axis[0];
    d->mesh_fsdp = (int)axis[1];
    d->mesh_tensor = (int)axis[2];
    d->mesh_expert = (int)axis[3];
    d->num_devices = (int)devices;
    if (d->mesh_expert > 1 && !d->spec->moe)
        FAIL(later(c, K_ici_expert_parallelism, K_dcn_expert_parallelism),
             "expert parallelism %d needs a mixture of experts (decoder_block mixtral)", d->mesh_expert);
    if (d->mesh_expert > 1 && cfg_int(c, K_num_experts) % d->mesh_expert)
        FAIL(later(c, K_ici_expert_parallelism, K_num_experts), "expert parallelism %d does not divide num_experts %lld",
             d->mesh_expert, cfg_int(c, K_num_experts));
    return true;
}

static bool resolve_batch(Config *c, char *err, size_t errlen)
{
    Derived *d = &c->d;
    double per_dev = cfg_float(c, K_per_device_batch_size);
    double global = per_dev * d->num_devices;
    if (global > INT_MAX)
        FAIL(K_per_device_batch_size, "per_device_batch_size %g x %d devices = %g sequences is too large (at most %d)",
             per_dev, d->num_devices, global, INT_MAX);
    if (global < 1 || global != floor(global))
        FAIL(K_per_device_batch_size,
             "per_device_batch_size %g x %d devices = %g is not a whole number of sequences",
             per_dev, d->num_devices, global);
    d->global_batch = (long long)global;
    long long k = cfg_int(c, K_gradient_accumulation_steps);
    if (d->global_batch % k)
        FAIL(later(c, K_gradient_accumulation_steps, K_per_device_batch_size),
             "global batch %lld is not divisible by gradient_accumulation_steps %lld", d->global_batch, k);
    d->micro_batch = d->global_batch / k;
    double eval_per_dev = cfg_float(c, K_eval_per_device_batch_size);
    double eval = (eval_per_dev > 0 ? eval_per_dev : per_dev) * d->num_devices;
    if (eval > INT_MAX)
        FAIL(K_eval_per_device_batch_size, "eval_per_device_batch_size %g x %d devices = %g sequences is too large (at most %d)",
             eval_per_dev, d->num_devices, eval, INT_MAX);
    if (eval < 1 || eval != floor(eval))
        FAIL(K_eval_per_device_batch_size,
             "eval_per_device_batch_size %g x %d devices = %g is not a whole number of sequences",
             eval_per_dev, d->num_devices, eval);
    d->eval_batch = (long long)eval;
    d->tokens_per_step = d->global_batch * cfg_int(c, K_max_target_length);
    /* num_vocab_tiling splits each device's tokens (of a microbatch, and of
     * an eval batch) into equal tiles, as MaxText requires */
    long long tiles = cfg_int(c, K_num_vocab_tiling), shards = batch_shards(c);
    long long seq = cfg_int(c, K_max_target_length);
    /* every device of data x fsdp x expert runs each microbatch on its own sequences */
    if (d->micro_batch % shards)
        FAIL(later(c, K_gradient_accumulation_steps, K_per_device_batch_size),
             "a microbatch of %lld sequences (global batch %lld / gradient_accumulation_steps %lld) does not split "
             "over data x fsdp x expert = %lld devices", d->micro_batch, d->global_batch, k, shards);
    if (d->eval_batch % shards)
        FAIL(K_eval_per_device_batch_size, "the eval batch of %lld sequences does not split over data x fsdp x expert "
             "= %lld devices", d->eval_batch, shards);
    long long micro = d->micro_batch / shards * seq, evaluated = d->eval_batch / shards * seq;
    if (micro % tiles || evaluated % tiles)
        FAIL(K_num_vocab_tiling, "num_vocab_tiling %lld does not divide each device's %lld tokens per microbatch%s",
             tiles, micro % tiles ? micro : evaluated, micro % tiles ? "" : " of the eval batch");
    return true;
}

/* What each decoder block is made of: the one place a new family is a row. */
const BlockSpec block_specs[NUM_BLOCKS] = {
    [BLOCK_LLAMA2] = {"llama2", .sublayers = 1, .qk_norm = true, .layer_norm_names = true, .hf_architecture = "LlamaForCausalLM"},
    [BLOCK_MISTRAL] = {"mistral", .sublayers = 1, .qk_norm = true, .layer_norm_names = true,
                     .hf_architecture = "MistralForCausalLM"},
    [BLOCK_MIXTRAL] = {"mixtral", .sublayers = 1, .qk_norm = true, .moe = true, .layer_norm_names = true,
                     .hf_architecture = "MixtralForCausalLM"},
    [BLOCK_GPT3] = {"gpt3", .sublayers = 1, .gpt3 = true},
    [BLOCK_GEMMA] = {"gemma", .sublayers = 1, .gemma = true, .qk_norm = true, .hf_architecture = "GemmaForCausalLM"},
    [BLOCK_GEMMA2] = {"gemma2", .sublayers = 2, .gemma = true, .gemma2 = true, .qk_norm = true,
                    .hf_architecture = "Gemma2ForCausalLM"},
    [BLOCK_QWEN2] = {"qwen2", .sublayers = 1, .qwen = true, .qkv_bias = true, .qk_norm = true, .layer_norm_names = true,
                     .hf_architecture = "Qwen2ForCausalLM"},
    [BLOCK_QWEN3] = {"qwen3", .sublayers = 1, .qwen = true, .qk_norm = true, .layer_norm_names = true,
                     .hf_architecture = "Qwen3ForCausalLM"},
};

static const char *const remat_names[] = {"full", "minimal", "save_dot_except_mlp", "save_qkv_proj", "none"};

const char *remat_policy_name(RematPolicy p) { return remat_names[p]; }

/* The keys that choose among kinds, as enums, once: decoder block, dtype,
 * remat policy, attention (the load checked each is one of mtxc's choices). */
static bool resolve_kinds(Config *c, char *err, size_t errlen)
{
    Derived *d = &c->d;
    const char *block = cfg_str(c, K_decoder_block), *remat = cfg_str(c, K_remat_policy);
    int b = 0, r = 0;
    while (b < NUM_BLOCKS && strcmp(block_specs[b].name, block)) b++;
    while (r < (int)(sizeof remat_names / sizeof remat_names[0]) && strcmp(remat_names[r], remat)) r++;
    if (b == NUM_BLOCKS) FAIL(K_decoder_block, "decoder_block '%s' is not one mtxc builds", block);
    if (r == (int)(sizeof remat_names / sizeof remat_names[0]))
        FAIL(K_remat_policy, "remat_policy '%s' is not one mtxc implements", remat);
    d->block = (DecoderBlock)b;
    d->spec = &block_specs[b];
    d->remat = (RematPolicy)r;
    d->dtype = strcmp(cfg_str(c, K_dtype), "bfloat16") ? DT_F32 : DT_BF16;
    /* autoselected: the fused attention from 128 tokens (MaxText picks dot_product on CPU: README says so) */
    const char *a = cfg_str(c, K_attention);
    d->flash = !strcmp(a, "flash") || (!strcmp(a, "autoselected") && cfg_int(c, K_max_target_length) >= 128);
    return true;
}

bool config_resolve(Config *c, char *err, size_t errlen)
{
    if (!resolve_kinds(c, err, errlen) || !check_size_keys(c, err, errlen) || !scale_model(c, err, errlen) || !check_model(c, err, errlen) ||
        !resolve_mesh(c, err, errlen) || !resolve_batch(c, err, errlen) || !check_step_sizes(c, err, errlen))
        return false;
    if (!strcmp(cfg_str(c, K_lr_schedule_type), "wsd") &&
        cfg_float(c, K_warmup_steps_fraction) + cfg_float(c, K_wsd_decay_steps_fraction) > 1)
        FAIL(later(c, K_warmup_steps_fraction, K_wsd_decay_steps_fraction),
             "warmup_steps_fraction %g + wsd_decay_steps_fraction %g leave no stable phase (they must sum to at most 1)",
             cfg_float(c, K_warmup_steps_fraction), cfg_float(c, K_wsd_decay_steps_fraction));
    if (cfg_str(c, K_load_parameters_path)[0] && cfg_str(c, K_load_full_state_path)[0])
        FAIL(later(c, K_load_parameters_path, K_load_full_state_path), "%s", mtx_load_paths_conflict);
    return true;
}
