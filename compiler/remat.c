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

/* Does the policy keep this forward value for the backward pass? */
static bool policy_saves(RematPolicy policy, const Op *def)
{
    /* the fused attention's output (and row log-sum-exp) is its dot products' */
    if (def->kind == OP_flash_attention) return policy == REMAT_MINIMAL || policy == REMAT_SAVE_DOT_EXCEPT_MLP;
    if (def->kind != OP_matmul && def->kind != OP_bias_add) return false;
    if (def->kind == OP_matmul && policy == REMAT_MINIMAL) return true;
    if (def->kind == OP_matmul && policy == REMAT_SAVE_DOT_EXCEPT_MLP) return def->role != ROLE_MLP;
    return policy == REMAT_SAVE_QKV_PROJ && def->role == ROLE_QKV;
}

/* What remat knows of the train step before it adds anything, computed in
 * one pass each, so that a model of L layers costs O(ops), not O(L x ops). */
typedef struct {
    Program *p;
    Func *f;
    int nforward, nknown, nunits;         /* forward ops; values before remat; layers + tiles */
    int layers;                           /* units below are decoder layers; from here, output tiles */
    bool layers_too;                      /* the policy recomputes in layers (not "none") */
    int *in_unit;                         /* [nknown] the unit whose forward op made the value, or -1 */
    int *first, *last;                    /* [nunits] each unit's forward ops (contiguous), or -1 */
    int *insert_at;                       /* [nunits] the first backward op that reads a value to recompute */
    bool *need;                           /* [nknown] forward values to recompute */
    Value **map;                          /* [nknown] a recomputed value for its original */
} Remat;

static RematPolicy unit_policy(const Remat *r, int u, RematPolicy policy)
{
    return u < r->layers ? policy : REMAT_FULL;
}

/* Does unit u recompute v for the backward (rather than keep it)? */
static bool recomputed(const Remat *r, const Value *v, int u, RematPolicy policy)
{
    if (v->kind != V_TEMP || v->id >= r->nknown || r->in_unit[v->id] != u) return false;
    if (r->last[u] < 0 || v == r->f->ops[r->last[u]]->out[0]) return false;   /* what leaves it: the next unit's saved input */
    return !policy_saves(unit_policy(r, u, policy), v->def);
}

/* The backward's reads of values to recompute: need, and where each unit's
 * clones go (before its first such read). */
static void find_needs(Remat *r, RematPolicy policy)
{
    for (int i = r->nforward; i < r->f->nops; i++)
        for (int j = 0; j < r->f->ops[i]->nin; j++) {
            const Value *v = r->f->ops[i]->in[j];
            int u = v->id < r->nknown ? r->in_unit[v->id] : -1;
            if (u < 0 || (u < r->layers && !r->layers_too) || !recomputed(r, v, u, policy)) continue;
            r->need[v->id] = true;
            if (r->insert_at[u] < 0) r->insert_at[u] = i;
        }
}

/* Unit u's clones, appended to f in forward order; returns how many. */
static int clone_unit(Remat *r, int u, RematPolicy policy)
{
    Program *p = r->p;
    Func *f = r->f;
    /* Which forward ops to clone: those producing a needed value, transitively. */
    for (int i = r->last[u]; i >= r->first[u]; i--) {
        const Op *op = f->ops[i];
        bool wanted = false;
        for (int j = 0; j < op->nout; j++) wanted |= r->need[op->out[j]->id];
        if (!wanted) continue;
        for (int j = 0; j < op->nin; j++)
            if (recomputed(r, op->in[j], u, policy)) r->need[op->in[j]->id] = true;
    }
    int n = 0;
    for (int i = r->first[u]; i <= r->last[u]; i++) {
        const Op *op = f->ops[i];
        bool wanted = false;
        for (int j = 0; j < op->nout; j++) wanted |= r->need[op->out[j]->id];
        if (!wanted) continue;
        Value *in[8], *out[3];
        for (int j = 0; j < op->nin; j++) {   /* another unit's value (a shared cast) stays the original */
            const Value *v = op->in[j];
            in[j] = v->id < r->nknown && r->in_unit[v->id] == u && r->map[v->id] ? r->map[v->id] : op->in[j];
        }
        for (int j = 0; j < op->nout; j++) {
            const Value *o = op->out[j];
            out[j] = value_new(p, pool_fmt(p->pool, "remat.%s", o->name), o->dtype, o->rank, o->dim, V_TEMP);
            r->map[o->id] = out[j];
        }
        p->at.unit = u, p->at.pass = PASS_BACKWARD;   /* recomputed inside the backward */
        Op *c = op_add(p, f, op->kind, pool_fmt(p->pool, "recompute (remat %s): %s", remat_policy_name(unit_policy(r, u, policy)),
                                                op->block), op->nin, in, op->nout, out);
        ops_at(p, NULL);
        memcpy(c->ia, op->ia, sizeof c->ia);
        memcpy(c->fa, op->fa, sizeof c->fa);
        n++;
    }
    return n;
}

bool rematerialize(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    RematPolicy policy = p->cfg->d.remat;
    int64_t tiles = cfg_int(p->cfg, K_num_vocab_tiling);
    int layers = p->cfg->d.num_decoder_layers;
    if (policy == REMAT_NONE && tiles == 1) return true;
    Func *f = &p->train;
    Remat r = {.p = p, .f = f, .nknown = p->nvalues, .nunits = layers + (tiles > 1 ? (int)tiles : 0),
               .layers = layers, .layers_too = policy != REMAT_NONE};
    while (r.nforward < f->nops && f->ops[r.nforward]->pass != PASS_BACKWARD) r.nforward++;
    r.in_unit = xmalloc(sizeof(int) * (size_t)(r.nknown + 1));
    r.first = xmalloc(sizeof(int) * (size_t)(r.nunits + 1));
    r.last = xmalloc(sizeof(int) * (size_t)(r.nunits + 1));
    r.insert_at = xmalloc(sizeof(int) * (size_t)(r.nunits + 1));
    r.need = xcalloc((size_t)r.nknown + 1, sizeof(bool));
    r.map = xcalloc((size_t)r.nknown + 1, sizeof(Value *));
    for (int i = 0; i <= r.nknown; i++) r.in_unit[i] = -1;
    for (int u = 0; u <= r.nunits; u++) r.first[u] = r.last[u] = r.insert_at[u] = -1;
    for (int i = 0; i < r.nforward; i++) {
        int u = f->ops[i]->unit;
        if (f->ops[i]->pass != PASS_FORWARD || u < 0 || u >= r.nunits) continue;
        for (int j = 0; j < f->ops[i]->nout; j++) r.in_unit[f->ops[i]->out[j]->id] = u;
        if (r.first[u] < 0) r.first[u] = i;
        r.last[u] = i;
    }
    find_needs(&r, policy);
    /* Clones in unit order (value ids one unit after another); the
     * backward's original ops read them (the clones already do); then one
     * pass builds the op list with each unit's clones right before its
     * first reader, units that share a reader in unit order. */
    int nbefore = f->nops, *start = xmalloc(sizeof(int) * (size_t)(r.nunits + 1));
    int *count = xcalloc((size_t)r.nunits + 1, sizeof(int));
    for (int u = 0; u < r.nunits; u++) {
        start[u] = f->nops;
        if (r.insert_at[u] >= 0) count[u] = clone_unit(&r, u, policy);
    }
    for (int i = r.nforward; i < nbefore; i++)
        for (int j = 0; j < f->ops[i]->nin; j++) {
            const Value *v = f->ops[i]->in[j];
            if (v->id < r.nknown && r.map[v->id]) f->ops[i]->in[j] = r.map[v->id];
        }
    int *first_unit = xmalloc(sizeof(int) * (size_t)(nbefore + 1)), *next_unit = xmalloc(sizeof(int) * (size_t)(r.nunits + 1));
    for (int i = 0; i <= nbefore; i++) first_unit[i] = -1;
    for (int u = r.nunits - 1; u >= 0; u--)     /* lists by reader, in unit order */
        if (count[u]) next_unit[u] = first_unit[r.insert_at[u]], first_unit[r.insert_at[u]] = u;
    Op **ops = xmalloc(sizeof(Op *) * (size_t)(f->nops + 1));
    int n = 0;
    for (int i = 0; i < nbefore; i++) {
        for (int u = first_unit[i]; u >= 0; u = next_unit[u])
            for (int c = 0; c < count[u]; c++) ops[n++] = f->ops[start[u] + c];
        ops[n++] = f->ops[i];
    }
    memcpy(f->ops, ops, sizeof(Op *) * (size_t)n);
    free(ops), free(first_unit), free(next_unit), free(count), free(start);
    free(r.in_unit), free(r.first), free(r.last), free(r.insert_at), free(r.need), free(r.map);
    return true;
}
