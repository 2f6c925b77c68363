/* Gradient accumulation (gradient_accumulation_steps = k > 1) and data
 * parallelism (mesh data axis > 1) share this pass: the forward
 * and backward ops of the train step become a loop over k microbatches.
 * Each iteration adds its gradients (of the summed loss, see autodiff.c),
 * its summed loss and its token count into accumulators; after the loop the
 * optimizer divides by the total count once, through grad_scale. Across
 * data-parallel ranks the shard pass sums them first. One step then equals a
 * step over the whole batch on one device. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

static Value *accumulator(Program *p, const char *name, const Value *like)
{
    return value_new(p, name, DT_F32, like->rank, like->dim, V_ACCUM);
}

static void add_to(Program *p, Func *f, Value *acc, Value *x, Value *scale, const char *block)
{
    Value *in[3] = {acc, x, scale};
    op_add(p, f, OP_accumulate, block, scale ? 3 : 2, in, 0, NULL);
}

/* Move the last n ops of f to its front. */
static void hoist(Func *f, int n)
{
    Op **moved = xmalloc(sizeof(Op *) * (size_t)n);
    memcpy(moved, f->ops + f->nops - n, sizeof(Op *) * (size_t)n);
    memmove(f->ops + n, f->ops, sizeof(Op *) * (size_t)(f->nops - n));
    memcpy(f->ops, moved, sizeof(Op *) * (size_t)n);
    free(moved);
}

bool accumulate_gradients(Program *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    int64_t k = cfg_int(p->cfg, K_gradient_accumulation_steps);
    int dp = batch_shards(p->cfg);
    Func *f = &p->train;
    if (k <= 1 && dp <= 1) return true;
    const char *block = k > 1 ? pool_fmt(p->pool, "gradient accumulation: sum over %lld microbatches", (long long)k)
                              : "the step's sums, for the data-parallel reduction";
    int body_ops = f->nops;

    /* Accumulators, zeroed before the loop. */
    Value *loss_sum = accumulator(p, "accumulated.loss", p->train_loss);
    Value *weight_sum = accumulator(p, "accumulated.total_weight", p->train_weight);
    /* mixtral's load-balancing loss, for the metrics: weighted as the loss it is part of */
    Value *lb_sum = p->train_moe_lb ? accumulator(p, "accumulated.moe_lb_loss", p->train_moe_lb) : NULL;
    int nparams = 0;
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind == V_PARAM && p->values[i]->grad) nparams++;
    Value **params = xmalloc(sizeof(Value *) * (size_t)(nparams + 1));
    Value **sums = xmalloc(sizeof(Value *) * (size_t)(nparams + 1));
    int n = 0;
    for (int i = 0; i < p->nvalues; i++) {
        Value *v = p->values[i];
        if (v->kind != V_PARAM || !v->grad) continue;
        params[n] = v;
        sums[n++] = accumulator(p, pool_fmt(p->pool, "accumulated.grad.%s", v->name), v);
    }
    const char *zero_block = "gradient accumulation: zero the sums";
    op_add(p, f, OP_zero, zero_block, 1, &loss_sum, 0, NULL);
    op_add(p, f, OP_zero, zero_block, 1, &weight_sum, 0, NULL);
    if (lb_sum) op_add(p, f, OP_zero, zero_block, 1, &lb_sum, 0, NULL);
    for (int i = 0; i < n; i++) op_add(p, f, OP_zero, zero_block, 1, &sums[i], 0, NULL);
    int nzero = n + 2 + (lb_sum != NULL);
    hoist(f, nzero);

    /* Inside the loop, after each microbatch's backward pass. */
    add_to(p, f, loss_sum, p->train_loss, p->train_weight, block);
    add_to(p, f, weight_sum, p->train_weight, NULL, block);
    if (lb_sum) add_to(p, f, lb_sum, p->train_moe_lb, p->train_weight, block);
    /* Each gradient is added as soon as it is made, so it dies there. */
    for (int i = 0; i < n; i++) {
        add_to(p, f, sums[i], params[i]->grad, NULL, block);
        func_move_last(f, func_index(f, params[i]->grad->def) + 1);
        params[i]->grad = sums[i];
    }
    f->loop_first = nzero;
    f->loop_last = nzero + body_ops + n + 2 + (lb_sum != NULL) - 1;
    f->loop_count = (int)k;
    p->loss_sum = loss_sum;
    p->weight_sum = weight_sum;
    p->moe_lb_sum = lb_sum;
    f->loop_inputs[0] = p->train_tokens;
    f->loop_inputs[1] = p->train_targets;
    f->loop_inputs[2] = p->train_segmentation;
    f->loop_inputs[3] = p->train_segment_ids;

    /* After the loop: the mean loss, and 1 / tokens for the optimizer. */
    int64_t one = 1;
    p->grad_scale = value_new(p, "inverse_total_weight", DT_F32, 1, &one, V_TEMP);
    op_add(p, f, OP_reciprocal, block, 1, &weight_sum, 1, &p->grad_scale);
    Value *mean = value_new(p, "mean_loss", DT_F32, 1, &one, V_TEMP);
    Value *in[2] = {loss_sum, p->grad_scale};
    op_add(p, f, OP_mul, block, 2, in, 1, &mean);
    p->train_loss = mean;
    p->train_weight = weight_sum;
    if (lb_sum) {
        Value *lb_in[2] = {lb_sum, p->grad_scale}, *lb_mean = value_new(p, "mean_moe_lb_loss", DT_F32, 1, &one, V_TEMP);
        op_add(p, f, OP_mul, block, 2, lb_in, 1, &lb_mean);
        p->train_moe_lb = lb_mean;
    }
    free(params);
    free(sums);
    return true;
}
