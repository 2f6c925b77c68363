/* Derived values (as MaxText's pyconfig computes them) and the checks that
 * involve more than one key. Each error points at the key that was set last. */
#include "mtxc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const derived_names[] = {
    "emb_dim", "num_query_heads", "num_kv_heads", "mlp_dim", "num_decoder_layers",
    "num_devices", "num_slices", "mesh_shape", "global_batch_size_to_train_on",
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

/* MaxText: global_parameter_scale = 2^s splits s over (emb, heads, mlp, layers). */
static void scale_model(Config *c)
{
    int log2 = 0;
    for (long long s = cfg_int(c, K_global_parameter_scale); s > 1; s >>= 1) log2++;
    int base = log2 / 3, rem = log2 % 3;
    int head_scale = base + (rem > 0), emb_scale = base + (rem > 1), layer_scale = base;
    Derived *d = &c->d;
    d->emb_dim = (int)(cfg_int(c, K_base_emb_dim) << emb_scale);
    d->num_query_heads = (int)(cfg_int(c, K_base_num_query_heads) << head_scale);
    d->num_kv_heads = (int)(cfg_int(c, K_base_num_kv_heads) << head_scale);
    d->mlp_dim = (int)(cfg_int(c, K_base_mlp_dim) << head_scale);
    d->num_decoder_layers = (int)(cfg_int(c, K_base_num_decoder_layers) << layer_scale);
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
    const char *block = cfg_str(c, K_decoder_block);
    const StrList *acts = &c->v[K_mlp_activations].list;
    if (acts->n < 1 || acts->n > 2)
        FAIL(K_mlp_activations, "mlp_activations must name one or two activations, got %d", acts->n);
    if (!strcmp(block, "gpt3")) {
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

/* Resolve one group of mesh axes (ici or dcn) against its device count;
 * at most one axis may be -1 ("the rest"). */
static bool fill_axes(Config *c, const int keys[3], long long total, int out[3], bool known,
                      const char *what, char *err, size_t errlen)
{
    long long prod = 1;
    int auto_key = -1;
    for (int i = 0; i < 3; i++) {
        long long v = cfg_int(c, keys[i]);
        if (v == -1) {
            if (auto_key >= 0)
                FAIL(later(c, auto_key, keys[i]), "only one %s axis may be -1, but %s and %s both are",
                     what, key_table[auto_key].name, key_table[keys[i]].name);
            auto_key = keys[i];
        } else {
            prod *= v;
        }
    }
    for (int i = 0; i < 3; i++) out[i] = (int)cfg_int(c, keys[i]);
    if (!known) total = prod;                /* no target: the mesh defines the count */
    if (auto_key >= 0) {
        if (total % prod)
            FAIL(auto_key, "%s: %lld devices cannot be split by the other axes' product %lld",
                 key_table[auto_key].name, total, prod);
        for (int i = 0; i < 3; i++)
            if (keys[i] == auto_key) out[i] = (int)(total / prod);
    } else if (prod != total) {
        FAIL(later(c, later(c, keys[0], keys[1]), keys[2]),
             "the %s mesh %s=%d x %s=%d x %s=%d has %lld devices, but the target has %lld",
             what, key_table[keys[0]].name, out[0], key_table[keys[1]].name, out[1],
             key_table[keys[2]].name, out[2], prod, total);
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
    }
    if (slices == -1) slices = 1;
    static const int ici[3] = {K_ici_data_parallelism, K_ici_fsdp_parallelism, K_ici_tensor_parallelism};
    static const int dcn[3] = {K_dcn_data_parallelism, K_dcn_fsdp_parallelism, K_dcn_tensor_parallelism};
    int in[3], dn[3];
    if (!fill_axes(c, ici, per_slice, in, known, "ici", err, errlen)) return false;
    if (!fill_axes(c, dcn, slices, dn, true, "dcn", err, errlen)) return false;
    d->num_slices = (int)slices;
    d->mesh_data = in[0] * dn[0];
    d->mesh_fsdp = in[1] * dn[1];
    d->mesh_tensor = in[2] * dn[2];
    d->num_devices = d->mesh_data * d->mesh_fsdp * d->mesh_tensor;
    return true;
}

static bool resolve_batch(Config *c, char *err, size_t errlen)
{
    Derived *d = &c->d;
    double per_dev = cfg_float(c, K_per_device_batch_size);
    double global = per_dev * d->num_devices;
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
    if (eval < 1 || eval != floor(eval))
        FAIL(K_eval_per_device_batch_size,
             "eval_per_device_batch_size %g x %d devices = %g is not a whole number of sequences",
             eval_per_dev, d->num_devices, eval);
    d->eval_batch = (long long)eval;
    d->tokens_per_step = d->global_batch * cfg_int(c, K_max_target_length);
    return true;
}

bool config_resolve(Config *c, char *err, size_t errlen)
{
    scale_model(c);
    if (!check_model(c, err, errlen) || !resolve_mesh(c, err, errlen) || !resolve_batch(c, err, errlen))
        return false;
    if (!strcmp(cfg_str(c, K_lr_schedule_type), "wsd") &&
        cfg_float(c, K_warmup_steps_fraction) + cfg_float(c, K_wsd_decay_steps_fraction) > 1)
        FAIL(later(c, K_warmup_steps_fraction, K_wsd_decay_steps_fraction),
             "warmup_steps_fraction %g + wsd_decay_steps_fraction %g leave no stable phase (they must sum to at most 1)",
             cfg_float(c, K_warmup_steps_fraction), cfg_float(c, K_wsd_decay_steps_fraction));
    if (cfg_str(c, K_load_parameters_path)[0] && cfg_str(c, K_load_full_state_path)[0])
        FAIL(later(c, K_load_parameters_path, K_load_full_state_path),
             "load_parameters_path and load_full_state_path cannot both be set");
    return true;
}
