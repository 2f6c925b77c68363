/* libmtxrt: the runtime that generated trainers call. GEMMs through BLIS,
 * random numbers, data, and the training loop driven by a program descriptor. */
#ifndef MTXRT_H
#define MTXRT_H

#include <stddef.h>
#include <stdint.h>

/* ---- random numbers (rng.c): counter-based, so results never depend on order ---- */

typedef struct { uint64_t k0, k1; } mtx_rng_key;

mtx_rng_key mtx_rng_seed(uint64_t seed);
mtx_rng_key mtx_rng_fold(mtx_rng_key key, uint64_t data);   /* derive a sub-key */
uint64_t mtx_rng_bits(mtx_rng_key key, uint64_t counter);    /* 64 random bits */
float mtx_rng_uniform(mtx_rng_key key, uint64_t counter);    /* [0, 1) */
float mtx_rng_normal(mtx_rng_key key, uint64_t counter);     /* N(0, 1) */
/* Fill x[0..n) with std * N(0,1), element i from counter i: thread-count independent. */
void mtx_fill_normal(float *x, size_t n, mtx_rng_key key, float std);
void mtx_fill_truncated_normal(float *x, size_t n, mtx_rng_key key, float std);  /* cut at +-2 std */

/* ---- GEMM (gemm.c) ---- */

/* C = alpha * op(A) @ op(B) + beta * C on strided views (row stride, column
 * stride of each matrix as stored); op(X) is X or its transpose. */
void mtx_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
               const float *b, ptrdiff_t rs_b, ptrdiff_t cs_b, float beta,
               float *c, ptrdiff_t rs_c, ptrdiff_t cs_c);
int mtx_num_threads(void);
void mtx_set_num_threads(int n);

/* ---- memory (arena.c) ---- */

void *mtx_alloc(size_t bytes);            /* 64-byte aligned, zeroed; exits on failure */
void mtx_free(void *p);

/* ---- what the generated code exchanges with the runtime ---- */

typedef struct {
    int32_t *inputs;                      /* [batch, seq] token ids */
    int32_t *targets;                     /* [batch, seq] next tokens */
    int32_t *segmentation;                /* [batch, seq] 0 where padding */
    int batch, seq;
} mtx_batch;

typedef struct {
    double loss;                          /* mean cross-entropy over real targets */
    double weight;                        /* number of real targets */
    double grad_norm;                     /* global norm before clipping */
    double lr;                            /* learning rate used for the update */
} mtx_metrics;

typedef struct mtx_state mtx_state;       /* defined by the generated program */

typedef enum { MTX_F32, MTX_I32, MTX_I64, MTX_U64 } mtx_dtype;
typedef enum { MTX_PARAM, MTX_OPT_STATE, MTX_COUNTER } mtx_tensor_kind;

typedef struct {
    const char *name;                     /* e.g. params/layers.0.attn.query */
    int rank;
    int64_t shape[4];
    mtx_dtype dtype;
    size_t offset;                        /* bytes into the state's memory block */
    mtx_tensor_kind kind;
} mtx_tensor_desc;

typedef struct {
    const char *key, *value;              /* resolved config, YAML text */
    int runtime;                          /* may be changed when starting the trainer */
} mtx_config_entry;

typedef void (*mtx_step_nnx)(mtx_state *, const mtx_batch *, mtx_metrics *);
typedef void (*mtx_step_linen)(mtx_state *, const mtx_batch *, mtx_rng_key, mtx_metrics *);
typedef void (*mtx_eval_nnx)(const mtx_state *, const mtx_batch *, mtx_metrics *);
typedef void (*mtx_eval_linen)(const mtx_state *, const mtx_batch *, mtx_rng_key, mtx_metrics *);

/* Everything the runtime knows about a compiled program. */
typedef struct {
    const char *model_name;
    int pure_nnx;
    int batch, seq, eval_batch, vocab;
    double flops_per_step;                /* 6 x matmul params x tokens + attention */
    size_t state_bytes;                   /* tensors of the state, in one block */
    size_t arena_bytes;                   /* temporaries of one step */
    int ntensors;
    const mtx_tensor_desc *tensors;
    int nconfig;
    const mtx_config_entry *config;
    mtx_state *(*state_new)(void);        /* allocates the state and its arena */
    void (*state_free)(mtx_state *);
    void *(*state_memory)(const mtx_state *);
    void *(*state_arena)(const mtx_state *);  /* temporaries of the last step (tests, tools) */
    void (*init)(mtx_state *, mtx_rng_key);
    void *train_step;                     /* mtx_step_nnx or mtx_step_linen by pure_nnx */
    void *eval_step;                      /* mtx_eval_nnx or mtx_eval_linen */
} mtx_program;

/* ---- data (data.c) ---- */

typedef struct mtx_data mtx_data;
/* Opens the data source named by the run config; NULL with a message on error. */
mtx_data *mtx_data_open(const char *type, const char *path, int vocab, int batch, int seq,
                        uint64_t seed, char *err, size_t errlen);
void mtx_data_next(mtx_data *d, mtx_batch *b);
void mtx_data_close(mtx_data *d);
void mtx_batch_alloc(mtx_batch *b, int batch, int seq);
void mtx_batch_free(mtx_batch *b);

/* ---- text (text.c) ---- */

int mtx_edit_distance(const char *a, const char *b);
/* The candidate closest to `word`, or NULL if none is plausibly a typo of it. */
const char *mtx_closest_word(const char *word, const char *const *candidates, int n);

/* ---- the training loop (train.c) ---- */

/* main() of a built trainer: parses run-time key=value arguments and trains. */
int mtx_main(const mtx_program *prog, int argc, char **argv);

/* A config value of the program by key, or NULL. */
const char *mtx_config_get(const mtx_program *prog, const char *key);

#endif
