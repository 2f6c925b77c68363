/* The C backend's own header (emit_c.c, emit_calls.c, emit_text.c): the
 * emitter's state and what its files share. Not used outside the backend. */
#ifndef MTXC_EMIT_H
#define MTXC_EMIT_H

#include "mtxc.h"

typedef struct {
    const Program *p;
    Buf *b;
    char **cname;                /* C identifier of each value, by id */
    bool in_eval;
    bool in_loop;                /* inside the microbatch loop */
    Buf *loops;                  /* the functions of the parallel loops, placed before the steps */
    const Op **plans;            /* bf16 GEMMs: one matmul of each distinct shape, by plan index */
    int nplans;
    int64_t loop_cols;           /* the loop being emitted runs over rows of this many columns (0: over elements) */
} Emitter;

/* emit_text.c: below the two files that emit code */
void emitf(Emitter *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *flit(Pool *pool, double x);               /* a float literal: 0.5f, 1e-08f */
const char *V(Emitter *e, const Value *v);           /* a value's C expression */
char *identifier(Pool *pool, const char *name);       /* name with every non-alphanumeric as '_' */
const char *param_field(Pool *pool, const Value *v); /* a param's (or its moment's) field in mtx_params */
const char *state_expr(Pool *pool, const Value *v);  /* a state or cache tensor's C expression, else NULL */
const char *axes_expr(int64_t axes);                 /* MTX_AXIS_* bits as C */

/* emit_state.c */
void emit_state_header(Emitter *e);                  /* step.h */
void emit_state_functions(Emitter *e);               /* state new / free / init */
void emit_cache_functions(Emitter *e);               /* decoding's caches */
void emit_descriptor(Emitter *e);                    /* mtx_program_desc */

/* emit_calls.c */
void collect_gemm_plans(Emitter *e);
void emit_gemm_plan(Emitter *e, int i);
void emit_matmul(Emitter *e, const Op *op);
void emit_kernel(Emitter *e, const Op *op);
void emit_adamw(Emitter *e, const Op *op, bool first);

#endif
