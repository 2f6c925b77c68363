/* The update graph: global gradient norm, clipping, the learning-rate
 * schedule and AdamW on every parameter, appended to the train step. */
#include "mtxc.h"

#include <stdlib.h>
#include <string.h>

static Value *scalar(Program *p, const char *name)
{
    int64_t one = 1;
    return value_new(p, name, DT_F32, 1, &one, V_TEMP);
}

static Value *counter(Program *p, const char *name)
{
    int64_t one = 1;
    Value *v = value_new(p, name, DT_I64, 1, &one, V_COUNTER);
    return v;
}

static Value *moment(Program *p, Moment which, Value *param)
{
    Value *m = value_new(p, pool_fmt(p->pool, "opt_state.%s.%s", moment_name(which), param->name), DT_F32,
                         param->rank, param->dim, V_OPT);
    m->param = param;
    m->moment = which;
    memcpy(m->axes, param->axes, sizeof m->axes);
    m->full_rank = param->full_rank;            /* an fsdp chunk or tensor-parallel share, like its param */
    m->split_dim = param->split_dim;
    m->split_ways = param->split_ways;
    m->split_axis = param->split_axis;
    memcpy(m->full_dim, param->full_dim, sizeof m->full_dim);
    return m;
}

/* Muon orthogonalizes 2-D hidden weights (attention and MLP kernels, [fan_in,
 * fan_out]); embeddings, the output head, norms and biases go to AdamW, as
 * MaxText's muon setup does. */
static bool is_hidden_matrix(const Value *v)
{
    if (v->rank != 2 || !v->axes[0]) return false;          /* position table: no axis name */
    for (int i = 0; i < v->rank; i++)
        if (v->axes[i] && !strcmp(v->axes[i], "vocab")) return false;
    return true;
}

bool build_optimizer(Program *p, char *err, size_t errlen)
{
    const Config *c = p->cfg;
    Func *f = &p->train;
    const char *block = pool_fmt(p->pool, "optimizer: clip by global norm, learning rate, %s", cfg_str(c, K_opt_type));
    Value **params = xmalloc(sizeof(Value *) * (size_t)p->nvalues);
    Value **grads = xmalloc(sizeof(Value *) * (size_t)p->nvalues);
    int n = 0;
    for (int i = 0; i < p->nvalues; i++)
        if (p->values[i]->kind == V_PARAM && p->values[i]->grad) {
            params[n] = p->values[i];
            grads[n++] = p->values[i]->grad;
        }
    if (n == 0) {
        snprintf(err, errlen, "mtxc: error: the loss depends on no parameter");
        free(params);
        free(grads);
        return false;
    }
    p->step = counter(p, "step");
    Value *schedule_steps = counter(p, "schedule_steps");

    p->grad_norm = scalar(p, "grad_norm");
    /* FSDP: each device holds a chunk of every gradient; the squares sum over
     * the axis. Tensor or expert parallelism: the split params' squares
     * (listed first) sum over that axis too; the replicated ones are equal on
     * every device. A model splits over one of the two (lowerable_mesh). */
    Value **norm_in = xmalloc(sizeof(Value *) * (size_t)n);
    int nsplit = 0, split_axis = 0;
    for (int pass = 0, k = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            if ((params[i]->split_dim != 0) == (pass == 0)) {
                norm_in[k++] = grads[i];
                nsplit += pass == 0;
                if (pass == 0) split_axis |= params[i]->split_axis;
            }
    if (split_axis & (split_axis - 1)) fatal("optimizer: params split over two mesh axes");
    Op *norm_op = op_add(p, f, OP_global_norm, block, n, norm_in, 1, &p->grad_norm);
    IA(norm_op, global_norm, sum_over_axes) = params[0]->full_rank ? MTX_AXIS_FSDP : 0;
    IA(norm_op, global_norm, split_inputs) = nsplit;
    IA(norm_op, global_norm, split_axis) = split_axis;
    free(norm_in);
    if (p->grad_scale) {                 /* accumulated sums: divide by the token count */
        Value *in[2] = {p->grad_norm, p->grad_scale}, *norm = scalar(p, "mean_grad_norm");
        op_add(p, f, OP_mul, block, 2, in, 1, &norm);
        p->grad_norm = norm;
    }
    Value *clip = scalar(p, "clip_scale");
    double threshold = cfg_float(c, K_gradient_clipping_threshold);
    if (threshold > 0) {
        FA(op_add(p, f, OP_clip_scale, block, 1, &p->grad_norm, 1, &clip), clip_scale, threshold) = threshold;
    } else {
        FA(op_add(p, f, OP_fill, block, 0, NULL, 1, &clip), fill, value) = 1.0;
    }
    if (p->grad_scale) {                 /* AdamW multiplies each gradient by this */
        Value *in[2] = {clip, p->grad_scale}, *scaled = scalar(p, "gradient_scale");
        op_add(p, f, OP_mul, block, 2, in, 1, &scaled);
        clip = scaled;
    }
    /* MaxText's cosine or wsd schedule; its length may be set at run time (steps). */
    p->lr = scalar(p, "learning_rate");
    Value *sched_in[2] = {p->step, schedule_steps};
    Op *lr = op_add(p, f, OP_learning_rate, block, 2, sched_in, 1, &p->lr);
    if (!strcmp(cfg_str(c, K_lr_schedule_type), "wsd"))
        IA(lr, learning_rate, schedule) = strcmp(cfg_str(c, K_wsd_decay_style), "cosine") ? 1 : 2;
    FA(lr, learning_rate, peak) = cfg_float(c, K_learning_rate);
    FA(lr, learning_rate, final_fraction) = cfg_float(c, K_learning_rate_final_fraction);
    FA(lr, learning_rate, warmup_fraction) = cfg_float(c, K_warmup_steps_fraction);
    FA(lr, learning_rate, decay_fraction) = cfg_float(c, K_wsd_decay_steps_fraction);
    if (!strcmp(cfg_str(c, K_opt_type), "sgd")) {          /* optax.sgd: no state */
        for (int i = 0; i < n; i++) {
            Value *in[4] = {params[i], grads[i], p->lr, clip};
            op_add(p, f, OP_sgd, block, 4, in, 0, NULL);
        }
        op_add(p, f, OP_step_increment, block, 1, &p->step, 0, NULL);
        free(params);
        free(grads);
        return true;
    }
    bool muon = !strcmp(cfg_str(c, K_opt_type), "muon");
    for (int i = 0; i < n; i++) {
        if (muon && is_hidden_matrix(params[i])) {
            Value *in[5] = {params[i], grads[i], moment(p, MOMENT_MU, params[i]), p->lr, clip};
            int64_t words = (int64_t)(mtx_muon_workspace((int)params[i]->dim[0], (int)params[i]->dim[1]) / 4);
            Value *work = value_new(p, pool_fmt(p->pool, "muon_workspace.%s", params[i]->name), DT_F32, 1, &words, V_TEMP);
            Op *op = op_add(p, f, OP_muon, block, 5, in, 1, &work);
            IA(op, muon, rows) = params[i]->dim[0];
            IA(op, muon, cols) = params[i]->dim[1];
            FA(op, muon, beta) = cfg_float(c, K_muon_beta);
            FA(op, muon, eps) = cfg_float(c, K_adam_eps);
            FA(op, muon, weight_decay) = cfg_float(c, K_muon_weight_decay);
            continue;
        }
        Value *in[6] = {params[i], grads[i], moment(p, MOMENT_MU, params[i]), moment(p, MOMENT_NU, params[i]), p->lr, clip};
        Op *op = op_add(p, f, OP_adamw, block, 6, in, 0, NULL);
        IA(op, adamw, pax) = !strcmp(cfg_str(c, K_opt_type), "adam_pax");
        IA(op, adamw, nesterov) = muon;              /* muon's AdamW looks one step ahead (nesterov) */
        FA(op, adamw, b1) = cfg_float(c, K_adam_b1);
        FA(op, adamw, b2) = cfg_float(c, K_adam_b2);
        FA(op, adamw, eps) = cfg_float(c, K_adam_eps);
        FA(op, adamw, eps_root) = cfg_float(c, K_adam_eps_root);
        FA(op, adamw, weight_decay) = cfg_float(c, K_adam_weight_decay);
    }
    op_add(p, f, OP_step_increment, block, 1, &p->step, 0, NULL);
    free(params);
    free(grads);
    return true;
}
