/* Rematerialization (remat_policy): the backward pass of a decoder layer
 * recomputes the layer's forward activations instead of keeping them from
 * the forward pass. For each layer, the forward values its backward reads and
 * the policy does not save are recomputed by clones of the forward ops,
 * inserted right before the first backward op that needs them; the backward
 * then reads the clones, so the originals die after the forward pass. The
 * numbers do not change: the clones compute the same bits (dropout masks
 * come from counters, not from a stream).
 *   full                  save only each layer's input
 *   minimal               also every matmul output (MaxText: dots without batch dims)
 *   save_dot_except_mlp   also the attention matmul outputs (with flash: the fused op's)
 *   save_qkv_proj         also the query, key and value projections
 *   none                  keep everything (no recomputation)
 * With num_vocab_tiling, each tile of the output (its rows of the decoder
 * output, logits and loss) is recomputed before its backward whatever the
 * policy: that is what keeps one tile's logits alive at a time. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

/* The unit of recomputation a block belongs to, or -1: a layer's number
 * ("layers.3: mlp"), or past the layers a num_vocab_tiling tile's
 * ("output tile 2: logits and loss" -> layers + 2). */
static int layers;

static int layer_of(const char *block, bool backward)
{
    if (!block) return -1;
    if (backward) {
        if (strncmp(block, "backward: ", 10)) return -1;
        block += 10;
    }
    if (!strncmp(block, "output tile ", 12)) return layers + atoi(block + 12);
    if (strncmp(block, "layers.", 7)) return -1;
    return atoi(block + 7);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Does the policy keep this forward value for the backward pass? */
static bool policy_saves(const char *policy, const Op *def)
{
    /* the fused attention's output (and row log-sum-exp) is its dot products' */
    if (def->kind == OP_flash_attention) return !strcmp(policy, "minimal") || !strcmp(policy, "save_dot_except_mlp");
    if (def->kind != OP_matmul && def->kind != OP_bias_add) return false;
    const char *name = def->out[0]->name;
    bool mlp = strstr(name, ".mlp.") || strstr(name, ".mlp_");   /* gemma2's mlp_local, mlp_global */
    if (def->kind == OP_matmul && !strcmp(policy, "minimal")) return true;
    if (def->kind == OP_matmul && !strcmp(policy, "save_dot_except_mlp")) return !mlp;
    if (!strcmp(policy, "save_qkv_proj"))
        return ends_with(name, ".query") || ends_with(name, ".key") || ends_with(name, ".value") ||
               ends_with(name, ".query.matmul") || ends_with(name, ".key.matmul") || ends_with(name, ".value.matmul");
    return false;
}

/* Append n clones to f and move them to position `at`. */
static void move_last_to(Func *f, int n, int at)
{
    Op **moved = xmalloc(sizeof(Op *) * (size_t)n);
    memcpy(moved, f->ops + f->nops - n, sizeof(Op *) * (size_t)n);
    memmove(f->ops + at + n, f->ops + at, sizeof(Op *) * (size_t)(f->nops - n - at));
    memcpy(f->ops + at, moved, sizeof(Op *) * (size_t)n);
    free(moved);
}

static void remat_layer(Program *p, Func *f, int layer, int nforward, const char *policy, const int *in_layer_all,
                        int nknown)
{
    /* in_layer_all covers the values that existed before remat (ids < nknown). */
#define in_layer(id) ((id) < nknown ? in_layer_all[id] : -1)
    /* Forward ops of the layer, the value that leaves it (saved: the next layer's input). */
    int first = -1, last = -1;
    for (int i = 0; i < nforward; i++)
        if (layer_of(f->ops[i]->block, false) == layer) {
            if (first < 0) first = i;
            last = i;
        }
    if (first < 0) return;
    const Value *leaves = f->ops[last]->out[0];
    bool *need = xcalloc((size_t)p->nvalues + 1, sizeof(bool));
    int insert_at = -1;
    for (int i = nforward; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) {
            const Value *v = f->ops[i]->in[j];
            if (v->kind != V_TEMP || v == leaves || in_layer(v->id) != layer || policy_saves(policy, v->def)) continue;
            need[v->id] = true;
            if (insert_at < 0) insert_at = i;
        }
    if (insert_at < 0) {
        free(need);
        return;
    }
    /* Which forward ops to clone: those producing a needed value, transitively. */
    bool *clone = xcalloc((size_t)(last + 1), sizeof(bool));
    for (int i = last; i >= first; i--) {
        const Op *op = f->ops[i];
        bool wanted = false;
        for (int j = 0; j < op->nout; j++) wanted |= need[op->out[j]->id];
        if (!wanted || layer_of(op->block, false) != layer) continue;
        clone[i] = true;
        for (int j = 0; j < op->nin; j++) {
            const Value *v = op->in[j];
            if (v->kind == V_TEMP && v != leaves && in_layer(v->id) == layer && !policy_saves(policy, v->def))
                need[v->id] = true;
        }
    }
    /* Clone in forward order; map[old id] = the recomputed value. */
    Value **map = xcalloc((size_t)p->nvalues + 1, sizeof(Value *));
    int nvalues_before = p->nvalues, ncloned = 0;
    for (int i = first; i <= last; i++) {
        if (!clone[i]) continue;
        const Op *op = f->ops[i];
        Value *in[8], *out[3];
        for (int j = 0; j < op->nin; j++) in[j] = map[op->in[j]->id] ? map[op->in[j]->id] : op->in[j];
        for (int j = 0; j < op->nout; j++) {
            const Value *o = op->out[j];
            out[j] = value_new(p, pool_fmt(p->pool, "remat.%s", o->name), o->dtype, o->rank, o->dim, V_TEMP);
            map[o->id] = out[j];
        }
        Op *c = op_add(p, f, op->kind, pool_fmt(p->pool, "recompute (remat %s): %s", policy, op->block), op->nin, in,
                       op->nout, out);
        memcpy(c->ia, op->ia, sizeof c->ia);
        memcpy(c->fa, op->fa, sizeof c->fa);
        ncloned++;
    }
    move_last_to(f, ncloned, insert_at);
    /* The backward reads the recomputed values. */
    for (int i = insert_at + ncloned; i < f->nops; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) {
            const Value *v = f->ops[i]->in[j];
            if (v->id < nvalues_before && map[v->id]) f->ops[i]->in[j] = map[v->id];
        }
    free(map);
    free(clone);
    free(need);
#undef in_layer
}

bool rematerialize(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    const char *policy = cfg_str(p->cfg, K_remat_policy);
    int64_t tiles = cfg_int(p->cfg, K_num_vocab_tiling);
    layers = p->cfg->d.num_decoder_layers;
    if (!strcmp(policy, "none") && tiles == 1) return true;
    Func *f = &p->train;
    int nforward = 0;
    while (nforward < f->nops && !(f->ops[nforward]->block && !strncmp(f->ops[nforward]->block, "backward", 8)))
        nforward++;
    /* The layer each forward temporary belongs to. */
    int nknown = p->nvalues;
    int *in_layer = xmalloc(sizeof(int) * (size_t)(nknown + 1));
    for (int i = 0; i <= nknown; i++) in_layer[i] = -1;
    for (int i = 0; i < nforward; i++)
        for (int j = 0; j < f->ops[i]->nout; j++) in_layer[f->ops[i]->out[j]->id] = layer_of(f->ops[i]->block, false);
    for (int l = 0; l < layers && strcmp(policy, "none"); l++) remat_layer(p, f, l, nforward, policy, in_layer, nknown);
    for (int t = 0; t < tiles && tiles > 1; t++) remat_layer(p, f, layers + t, nforward, "full", in_layer, nknown);
    free(in_layer);
    return true;
}
