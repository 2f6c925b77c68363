/* Hugging Face's checkpoint layout of mtxc's parameters, as MaxText's
 * checkpoint_conversion/utils/param_mapping.py maps them (see
 * ../shared/notes/hf-interop.md): the tensor names of transformers'
 * modelling files, nn.Linear's [out, in] kernels, the query scale MaxText
 * folds into the query kernel, Llama 3.1's interleaved RoPE pairs where HF
 * keeps rotate_half's halves, gemma's (1 + w) norms and sqrt(hidden)
 * embedding, gemma2's two HF layers per MaxText layer, mixtral's experts
 * stacked along dim 0. And the config.json fields the program's config
 * fixes, which an import checks. Families without a mapping (block_specs'
 * hf_architecture NULL) have none. */
#include "mtxc.h"

#include <math.h>
#include <stdio.h>

enum { ANY = 0, GEMMA1 = 1, GEMMA2 = 2 };   /* which gemma a row is for */

/* mtxc's name within a layer (gemma2's _local/_global suffix taken off) ->
 * HF's within model.layers.N, and whether it is a kernel. */
static const struct { const char *mtxc, *hf; bool kernel; int only; } layer_names[] = {
    {"pre_self_attention_layer_norm.scale", "input_layernorm.weight", false, ANY},
    {"post_self_attention_layer_norm.scale", "post_attention_layernorm.weight", false, ANY},
    {"pre_self_attention_norm.scale", "input_layernorm.weight", false, ANY},          /* gemma */
    {"post_self_attention_norm.scale", "post_attention_layernorm.weight", false, ANY}, /* gemma2 */
    {"pre_ffw_norm.scale", "post_attention_layernorm.weight", false, GEMMA1},
    {"pre_ffw_norm.scale", "pre_feedforward_layernorm.weight", false, GEMMA2},
    {"post_ffw_norm.scale", "post_feedforward_layernorm.weight", false, GEMMA2},
    {"self_attention.query_norm.scale", "self_attn.q_norm.weight", false, ANY},
    {"self_attention.key_norm.scale", "self_attn.k_norm.weight", false, ANY},
    {"self_attention.query.bias", "self_attn.q_proj.bias", false, ANY},
    {"self_attention.key.bias", "self_attn.k_proj.bias", false, ANY},
    {"self_attention.value.bias", "self_attn.v_proj.bias", false, ANY},
    {"self_attention.query.kernel", "self_attn.q_proj.weight", true, ANY},
    {"self_attention.key.kernel", "self_attn.k_proj.weight", true, ANY},
    {"self_attention.value.kernel", "self_attn.v_proj.weight", true, ANY},
    {"self_attention.out.kernel", "self_attn.o_proj.weight", true, ANY},
    {"mlp.wi_0.kernel", "mlp.gate_proj.weight", true, ANY},
    {"mlp.wi_1.kernel", "mlp.up_proj.weight", true, ANY},
    {"mlp.wo.kernel", "mlp.down_proj.weight", true, ANY},
    {"MoeBlock_0.gate.kernel", "block_sparse_moe.gate.weight", true, ANY},
};

/* mixtral's stacked experts [E, in, out] -> HF's per-expert [out, in] */
static const struct { const char *mtxc, *hf; } expert_names[] = {
    {"MoeBlock_0.wi_0", "w1"}, {"MoeBlock_0.wi_1", "w3"}, {"MoeBlock_0.wo", "w2"},
};

/* 1/sqrt of the query scale HF applies at run time, which MaxText folds
 * into the query kernel (qwen scales at run time as HF does: nothing). */
static double query_scale(const Config *c)
{
    if (c->d.spec->qwen) return 1.0;
    double s = c->d.spec->gemma2 ? cfg_float(c, K_query_pre_attn_scalar) : 0;
    return 1.0 / sqrt(s > 0 ? s : (double)cfg_int(c, K_head_dim));
}

/* layers.L.NAME (NAME without gemma2's suffix) -> HF's layer; *rest: NAME. */
static int hf_layer(const Config *c, const char *name, char *rest, size_t n)
{
    int layer, at = 0;
    if (sscanf(name, "layers.%d.%n", &layer, &at) != 1 || !at) return -1;
    snprintf(rest, n, "%s", name + at);
    if (!c->d.spec->gemma2) return layer;
    char *dot = strchr(rest, '.');
    size_t k = dot ? (size_t)(dot - rest) : strlen(rest);
    int global = k > 7 && !strncmp(rest + k - 7, "_global", 7), local = k > 6 && !strncmp(rest + k - 6, "_local", 6);
    if (!global && !local) return -1;
    memmove(rest + k - (global ? 7 : 6), rest + k, strlen(rest + k) + 1);
    return 2 * layer + global;
}

/* Why the model has no HF form, into buf; NULL: it has. */
static const char *missing(const Config *c, char *buf, size_t n)
{
    const BlockSpec *spec = c->d.spec;
    bool capped = cfg_float(c, K_attn_logits_soft_cap) > 0 || cfg_float(c, K_final_logits_soft_cap) > 0;
    bool tied = cfg_bool(c, K_logits_via_embedding), normalized = cfg_bool(c, K_normalize_embedding_logits);
    if (!spec->hf_architecture)
        snprintf(buf, n, "decoder_block %s has no mapping to Hugging Face's layout yet", spec->name);
    else if (spec->gemma && !spec->gemma2 && capped)
        snprintf(buf, n, "Hugging Face's gemma has no soft caps (attn_logits_soft_cap, final_logits_soft_cap)");
    else if (tied && normalized != spec->gemma)   /* one table for lookup and logits: gemma's is stored x sqrt(hidden) */
        snprintf(buf, n, "normalize_embedding_logits %s with tied embeddings is not Hugging Face's %s (it needs %s)",
                 normalized ? "true" : "false", spec->hf_architecture, spec->gemma ? "true" : "false");
    else
        return NULL;
    return buf;
}

const char *hf_missing(Pool *pool, const Config *c)
{
    char buf[256];
    const char *why = missing(c, buf, sizeof buf);
    return why ? pool_strdup(pool, why) : NULL;
}

int hf_param(const Config *c, const char *name, HfParam *out, int max)
{
    const BlockSpec *spec = c->d.spec;
    char why[256];
    if (missing(c, why, sizeof why) || max < 1) return 0;
    out[0] = (HfParam){.scale = 1.0};
    bool gemma = spec->gemma;
    int emb = c->d.emb_dim;
    if (!strcmp(name, "token_embedder.embedding")) {
        snprintf(out->name, sizeof out->name, "model.embed_tokens.weight");
        out->vocab = true;
        if (gemma) out->scale = (float)sqrt((double)emb);   /* MaxText stores the table times float32(sqrt(hidden)) */
        return 1;
    }
    if (!strcmp(name, "decoder_norm.scale")) {
        snprintf(out->name, sizeof out->name, "model.norm.weight");
        out->shift = gemma;
        return 1;
    }
    if (!strcmp(name, "logits_dense.kernel")) {
        snprintf(out->name, sizeof out->name, "lm_head.weight");
        out->transpose = out->vocab = true;
        return 1;
    }
    char rest[256];
    int layer = hf_layer(c, name, rest, sizeof rest);
    if (layer < 0) return 0;
    for (size_t i = 0; i < sizeof expert_names / sizeof expert_names[0]; i++) {
        if (strcmp(rest, expert_names[i].mtxc)) continue;
        int experts = (int)cfg_int(c, K_num_experts);
        if (experts > max) fatal("hf_param: %d experts, room for %d", experts, max);
        for (int e = 0; e < experts; e++) {
            out[e] = (HfParam){.scale = 1.0, .transpose = true, .slice = e + 1};
            snprintf(out[e].name, sizeof out[e].name, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", layer, e,
                     expert_names[i].hf);
        }
        return experts;
    }
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++) {
        int only = layer_names[i].only;
        if (strcmp(rest, layer_names[i].mtxc) || (only && (!gemma || (only == GEMMA2) != spec->gemma2))) continue;
        snprintf(out->name, sizeof out->name, "model.layers.%d.%s", layer, layer_names[i].hf);
        out->transpose = layer_names[i].kernel;
        const char *m = layer_names[i].mtxc;
        bool q = !strncmp(m, "self_attention.query.", 21), k = !strncmp(m, "self_attention.key.", 19);
        if (q && out->transpose) out->scale = query_scale(c);
        if ((q || k) && model_rope_variant(c) != MTX_ROPE_HALVES) out->rope_pairs = (int)cfg_int(c, K_head_dim);
        out->shift = gemma && strstr(m, "norm.scale") && !strstr(m, "query_norm") && !strstr(m, "key_norm");
        return 1;
    }
    return 0;
}

/* config.json's model_type of each family with a mapping */
static const char *const model_types[NUM_BLOCKS] = {
    [BLOCK_LLAMA2] = "llama", [BLOCK_MISTRAL] = "mistral", [BLOCK_MIXTRAL] = "mixtral", [BLOCK_GEMMA] = "gemma",
    [BLOCK_GEMMA2] = "gemma2", [BLOCK_QWEN2] = "qwen2", [BLOCK_QWEN3] = "qwen3",
};

int hf_fields(Pool *pool, const Config *c, mtx_hf_field *out, int max)
{
    const Derived *d = &c->d;
    char why[256];
    if (missing(c, why, sizeof why)) return 0;
    int n = 0;
#define FIELD(key, dflt, check, ...) \
    (n < max ? out[n++] = (mtx_hf_field){key, pool_fmt(pool, __VA_ARGS__), dflt, check} \
             : (fatal("hf_fields: more than %d config.json fields", max), out[0]))
#define NUMBER(x) pool_fmt(pool, "%.17g", (double)(x))
    bool gemma = d->spec->gemma, moe = d->spec->moe;
    const char *act = c->v[K_mlp_activations].list.n ? c->v[K_mlp_activations].list.items[0] : "silu";
    long long window = cfg_int(c, K_sliding_window_size), head_dim = cfg_int(c, K_head_dim);
    FIELD("architectures", NULL, MTX_HF_EQUAL, "[\"%s\"]", d->spec->hf_architecture);
    FIELD("model_type", pool_fmt(pool, "\"%s\"", model_types[d->block]), MTX_HF_EQUAL, "\"%s\"", model_types[d->block]);
    if (gemma) {   /* flax's gelu is the tanh form; HF's gemma configs name it in either field */
        FIELD("hidden_act", NULL, MTX_HF_EXPORT_ONLY, "\"gelu_pytorch_tanh\"");
        FIELD("hidden_activation", NULL, MTX_HF_EXPORT_ONLY, "\"gelu_pytorch_tanh\"");
    } else {
        FIELD("hidden_act", "\"silu\"", MTX_HF_EQUAL, "\"%s\"", act);
    }
    FIELD("hidden_size", NULL, MTX_HF_EQUAL, "%d", d->emb_dim);
    FIELD("intermediate_size", NULL, MTX_HF_EQUAL, "%d", d->mlp_dim);
    FIELD("num_attention_heads", NULL, MTX_HF_EQUAL, "%d", d->num_query_heads);
    FIELD("num_key_value_heads", pool_fmt(pool, "%d", d->num_query_heads), MTX_HF_EQUAL, "%d", d->num_kv_heads);
    FIELD("head_dim", gemma ? "256" : pool_fmt(pool, "%d", d->emb_dim / d->num_query_heads), MTX_HF_EQUAL, "%lld",
          head_dim);
    FIELD("num_hidden_layers", NULL, MTX_HF_EQUAL, "%d", d->num_decoder_layers * d->spec->sublayers);
    /* a padded vocabulary (a preset's larger vocab_size) takes a smaller checkpoint's */
    FIELD("vocab_size", NULL, MTX_HF_AT_MOST, "%lld", cfg_int(c, K_vocab_size));
    FIELD("rms_norm_eps", "1e-06", MTX_HF_EQUAL, "%.17g", cfg_float(c, K_normalization_layer_epsilon));
    FIELD("rope_theta", "10000", MTX_HF_EQUAL, "%.17g", cfg_float(c, K_rope_max_timescale));
    FIELD("tie_word_embeddings", gemma ? "true" : "false", MTX_HF_EQUAL, "%s",
          cfg_bool(c, K_logits_via_embedding) ? "true" : "false");
    /* HF's llama3 scaling is the one MTX_ROPE_LLAMA31 computes (runtime/kernels/norms.c) */
    FIELD("rope_scaling", "null", MTX_HF_EQUAL, "%s", model_rope_variant(c) == MTX_ROPE_LLAMA31
              ? "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                "\"original_max_position_embeddings\": 8192}"
              : "null");
    if (d->spec->qwen) FIELD("use_sliding_window", "false", MTX_HF_EQUAL, "false");
    if (d->block == BLOCK_QWEN3)
        FIELD("attention_bias", "false", MTX_HF_EQUAL, "%s", cfg_bool(c, K_attention_bias) ? "true" : "false");
    /* mistral and mixtral attend to every earlier position: a window no shorter than the sequence is the same */
    if (d->block == BLOCK_MISTRAL || moe)
        FIELD("sliding_window", d->block == BLOCK_MISTRAL ? "4096" : "null", MTX_HF_NULL_OR_AT_LEAST, "%lld",
              cfg_int(c, K_max_target_length));
    if (moe) {
        FIELD("num_local_experts", "8", MTX_HF_EQUAL, "%lld", cfg_int(c, K_num_experts));
        FIELD("num_experts_per_tok", "2", MTX_HF_EQUAL, "%lld", cfg_int(c, K_num_experts_per_tok));
    }
    if (d->spec->gemma2) {
        double scalar = cfg_float(c, K_query_pre_attn_scalar);
        FIELD("query_pre_attn_scalar", "256", MTX_HF_EQUAL, "%s", NUMBER(scalar > 0 ? scalar : (double)head_dim));
        FIELD("sliding_window", "4096", MTX_HF_EQUAL, "%lld", window);
        double cap = cfg_float(c, K_attn_logits_soft_cap), final = cfg_float(c, K_final_logits_soft_cap);
        FIELD("attn_logit_softcapping", "50.0", MTX_HF_EQUAL, "%s", cap > 0 ? NUMBER(cap) : "null");
        FIELD("final_logit_softcapping", "30.0", MTX_HF_EQUAL, "%s", final > 0 ? NUMBER(final) : "null");
    }
#undef NUMBER
#undef FIELD
    return n;
}
