/* The pipeline: each pass is a function from IR to IR, verified after it runs. */
#include "mtxc.h"

#include <string.h>

const Pass passes[] = {
    {"build", "forward graph of the model and loss from the config (model.c)", build_model},
    {"autodiff", "backward graph from each op's VJP rule (autodiff.c)", autodiff},
    {"remat", "each layer's backward recomputes the activations remat_policy does not save (remat.c)",
     rematerialize},
    {"accumulate", "microbatch loop summing gradients when gradient_accumulation_steps > 1 (accumulate.c)",
     accumulate_gradients},
    {"shard", "data parallelism: the step's sums all-reduced over the data axis (shard.c)", shard},
    {"optimizer", "global norm, clipping, lr schedule and AdamW updates (optimizer.c)", build_optimizer},
    {"legalize", "bf16 operands of float32 kernels widened, their bf16 results rounded, by casts (legalize.c)",
     legalize},
    {"fuse", "elementwise chains fused into single loops (fuse.c)", fuse},
    {"memplan", "state layout and one arena per step, reused by liveness (memplan.c)", plan_memory},
};
const int num_passes = sizeof passes / sizeof passes[0];

Program *compile_program(const Config *cfg, const char *last, char *err, size_t errlen)
{
    return compile_program_with(cfg, last, false, err, errlen);
}

Program *compile_program_with(const Config *cfg, const char *last, bool grads_outside_arena, char *err, size_t errlen)
{
    if (last) {
        bool known = false;
        for (int i = 0; i < num_passes; i++) known |= !strcmp(passes[i].name, last);
        if (!known) {
            snprintf(err, errlen, "mtxc: error: unknown pass '%s' (see mtxc ir --help)", last);
            return NULL;
        }
    }
    Program *p = program_new(cfg);
    p->grads_outside_arena = grads_outside_arena;
    for (int i = 0; i < num_passes; i++) {
        if (!passes[i].run(p, err, errlen) || !ir_verify(p, err, errlen)) {
            program_free(p);
            return NULL;
        }
        p->last_pass = passes[i].name;
        if (last && !strcmp(passes[i].name, last)) break;
    }
    return p;
}
