/* Hugging Face's checkpoint layout of mtxc's parameters, as MaxText's
 * checkpoint_conversion/utils/param_mapping.py maps them (see
 * ../shared/notes/hf-interop.md): the tensor names of transformers'
 * modelling files, nn.Linear's [out, in] kernels, the query scale MaxText
 * folds into the query kernel, and Llama 3.1's interleaved RoPE pairs where
 * HF keeps rotate_half's halves. And the config.json fields the program's
 * config fixes, which an import checks (llama2, mistral, qwen2, qwen3).
 * Families without a mapping yet
 * (block_specs' hf_architecture NULL) have none. */
#include "mtxc.h"

#include <math.h>
#include <stdio.h>

/* mtxc's name within a layer -> HF's within model.layers.N, and whether it is a kernel. */
static const struct { const char *mtxc, *hf; bool kernel; } layer_names[] = {
    {"pre_self_attention_norm.scale", "input_layernorm.weight", false},
    {"post_self_attention_norm.scale", "post_attention_layernorm.weight", false},
    {"pre_self_attention_layer_norm.scale", "input_layernorm.weight", false},
    {"post_self_attention_layer_norm.scale", "post_attention_layernorm.weight", false},
    {"self_attention.query_norm.scale", "self_attn.q_norm.weight", false},
    {"self_attention.key_norm.scale", "self_attn.k_norm.weight", false},
    {"self_attention.query.bias", "self_attn.q_proj.bias", false},
    {"self_attention.key.bias", "self_attn.k_proj.bias", false},
    {"self_attention.value.bias", "self_attn.v_proj.bias", false},
    {"self_attention.query.kernel", "self_attn.q_proj.weight", true},
    {"self_attention.key.kernel", "self_attn.k_proj.weight", true},
    {"self_attention.value.kernel", "self_attn.v_proj.weight", true},
    {"self_attention.out.kernel", "self_attn.o_proj.weight", true},
    {"mlp.wi_0.kernel", "mlp.gate_proj.weight", true},
    {"mlp.wi_1.kernel", "mlp.up_proj.weight", true},
    {"mlp.wo.kernel", "mlp.down_proj.weight", true},
};

bool hf_param(const Config *c, const char *name, HfParam *out)
{
    if (!c->d.spec->hf_architecture) return false;
    *out = (HfParam){.scale = 1.0};
    int layer, at = 0;
    if (!strcmp(name, "token_embedder.embedding")) return snprintf(out->name, sizeof out->name, "model.embed_tokens.weight"), true;
    if (!strcmp(name, "decoder_norm.scale")) return snprintf(out->name, sizeof out->name, "model.norm.weight"), true;
    if (!strcmp(name, "logits_dense.kernel")) {
        snprintf(out->name, sizeof out->name, "lm_head.weight");
        return out->transpose = true;
    }
    if (sscanf(name, "layers.%d.%n", &layer, &at) != 1 || !at) return false;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
        if (strcmp(name + at, layer_names[i].mtxc)) continue;
        snprintf(out->name, sizeof out->name, "model.layers.%d.%s", layer, layer_names[i].hf);
        out->transpose = layer_names[i].kernel;
        const char *m = layer_names[i].mtxc;
        bool q = !strncmp(m, "self_attention.query.", 21), k = !strncmp(m, "self_attention.key.", 19);
        /* MaxText folds the query scale into the kernel, except where it scales at run time (qwen) */
        if (q && out->transpose && !c->d.spec->qwen) out->scale = 1.0 / sqrt((double)cfg_int(c, K_head_dim));
        if ((q || k) && model_rope_variant(c) != MTX_ROPE_HALVES) out->rope_pairs = (int)cfg_int(c, K_head_dim);
        return true;
    }
    return false;
}

int hf_fields(Pool *pool, const Config *c, mtx_hf_field *out, int max)
{
    const Derived *d = &c->d;
    if (!d->spec->hf_architecture) return 0;
    int n = 0;
#define FIELD(key, dflt, ...) (n < max ? out[n++] = (mtx_hf_field){key, pool_fmt(pool, __VA_ARGS__), dflt} : \
                                          (fatal("hf_fields: more than %d config.json fields", max), out[0]))
    static const char *model_types[NUM_BLOCKS] = {[BLOCK_LLAMA2] = "llama", [BLOCK_MISTRAL] = "mistral",
                                                  [BLOCK_QWEN2] = "qwen2", [BLOCK_QWEN3] = "qwen3"};
    const char *act = c->v[K_mlp_activations].list.n ? c->v[K_mlp_activations].list.items[0] : "silu";
    FIELD("architectures", NULL, "[\"%s\"]", d->spec->hf_architecture);
    FIELD("model_type", pool_fmt(pool, "\"%s\"", model_types[d->block]), "\"%s\"", model_types[d->block]);
    FIELD("hidden_act", "\"silu\"", "\"%s\"", act);
    FIELD("hidden_size", NULL, "%d", d->emb_dim);
    FIELD("intermediate_size", NULL, "%d", d->mlp_dim);
    FIELD("num_attention_heads", NULL, "%d", d->num_query_heads);
    FIELD("num_key_value_heads", pool_fmt(pool, "%d", d->num_query_heads), "%d", d->num_kv_heads);
    FIELD("head_dim", pool_fmt(pool, "%d", d->emb_dim / d->num_query_heads), "%lld", cfg_int(c, K_head_dim));
    FIELD("num_hidden_layers", NULL, "%d", d->num_decoder_layers);
    FIELD("vocab_size", NULL, "%lld", cfg_int(c, K_vocab_size));
    FIELD("rms_norm_eps", "1e-06", "%.17g", cfg_float(c, K_normalization_layer_epsilon));
    FIELD("rope_theta", "10000", "%.17g", cfg_float(c, K_rope_max_timescale));
    FIELD("tie_word_embeddings", "false", "%s", cfg_bool(c, K_logits_via_embedding) ? "true" : "false");
    /* HF's llama3 scaling is the one MTX_ROPE_LLAMA31 computes (runtime/kernels/norms.c) */
    FIELD("rope_scaling", "null", "%s", model_rope_variant(c) == MTX_ROPE_LLAMA31
              ? "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                "\"original_max_position_embeddings\": 8192}"
              : "null");
    if (d->spec->qwen) FIELD("use_sliding_window", "false", "false");
    if (d->block == BLOCK_QWEN3) FIELD("attention_bias", "false", "%s", cfg_bool(c, K_attention_bias) ? "true" : "false");
    if (d->block == BLOCK_MISTRAL)
        FIELD("sliding_window", "4096", "%s", cfg_int(c, K_sliding_window_size) > 0
                  ? pool_fmt(pool, "%lld", cfg_int(c, K_sliding_window_size)) : "null");
#undef FIELD
    return n;
}
