/* mtxc: the compiler's one header. Config, IR, passes and backends. */
#ifndef MTXC_H
#define MTXC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mtxrt.h"
#include "mtxrt_keys.h"
#include "mtxrt_trainer.h"

#define MTXC_VERSION "0.1.0"

/* ---- util.c ---- */

/* Every allocation of a long-lived object goes through a Pool, freed at once. */
typedef struct Pool Pool;
Pool *pool_new(void);
void pool_free(Pool *p);
void *pool_alloc(Pool *p, size_t size);          /* zeroed */
char *pool_strdup(Pool *p, const char *s);
char *pool_fmt(Pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
char *xvfmt(const char *fmt, va_list ap);
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* A growable string buffer. */
typedef struct { char *s; size_t len, cap; } Buf;
void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_puts(Buf *b, const char *s);
void buf_free(Buf *b);

/* ---- config ---- */

/* The schema (runtime/keys/config_keys.def, mtx_keys) and the reading of one
 * value (mtx_key_read) are the runtime's, shared with every trainer. */
typedef enum {
#define KEY(name, type, range, choices, flags) K_##name,
#include "keys/config_keys.def"
#undef KEY
    NUM_KEYS
} KeyId;


/* Where a value came from: file:line:col, or a command-line argument. */
typedef struct {
    const char *file;      /* NULL: command line */
    int line, col;         /* 1-based; line 0 with file set: the file as a whole */
    const char *arg;       /* the key=value argument, for command-line values */
} SrcLoc;

typedef struct { char **items; int n; } StrList;
typedef struct { char *name; StrList axes; } AxisRule;

typedef struct {
    bool set, is_null;
    int seq;               /* order of setting: the larger was set later */
    long long i;
    double f;
    bool b;
    char *s;               /* STR, ENUM */
    StrList list;          /* LIST */
    AxisRule *rules;       /* RULES */
    int nrules;
    SrcLoc loc;
    bool maxtext_only;     /* ENUM: a choice of MaxText's that mtxc does not implement */
    const char *preset;    /* the value model_name's preset gave (its text), or NULL */
} ConfigValue;

typedef enum { DT_F32, DT_I32, DT_I64, DT_BF16 } DType;

/* The decoder blocks mtxc builds (decoder_block), and what each is made of:
 * one row of block_specs (config_resolve.c) per block. */
typedef enum { BLOCK_LLAMA2, BLOCK_MISTRAL, BLOCK_MIXTRAL, BLOCK_GPT3, BLOCK_GEMMA, BLOCK_GEMMA2, BLOCK_QWEN2,
               BLOCK_QWEN3, NUM_BLOCKS } DecoderBlock;
typedef struct {
    const char *name;
    int sublayers;             /* decoder layers a MaxText layer holds: gemma2's local and global pair */
    bool gpt3;                 /* layernorms with biases, learned positions, biased projections */
    bool gemma;                /* llama2's block with gemma's names, (1 + w) norms, scaled embedding */
    bool gemma2;               /* gemma with local/global pairs, post norms and soft caps */
    bool qwen;                 /* the llama2 layer, query scaled at run time, no output dropout */
    bool qkv_bias;             /* attention_bias puts biases on q, k, v (qwen2) */
    bool qk_norm;              /* use_qk_norm applies (all but gpt3) */
    bool moe;                  /* the MLP is routed experts (mixtral) */
    bool layer_norm_names;     /* norms named *_layer_norm (MaxText's llama2, mistral, mixtral, qwen) */
    const char *hf_architecture;   /* config.json's architectures[0] for Hugging Face checkpoints (hf_names.c), or NULL */
} BlockSpec;
extern const BlockSpec block_specs[NUM_BLOCKS];

/* remat_policy, as mtxc implements it. */
typedef enum { REMAT_FULL, REMAT_MINIMAL, REMAT_SAVE_DOT_EXCEPT_MLP, REMAT_SAVE_QKV_PROJ, REMAT_NONE } RematPolicy;
const char *remat_policy_name(RematPolicy p);

/* Values computed from the keys, as MaxText computes them. */
typedef struct {
    DecoderBlock block;                           /* decoder_block, and what it is made of */
    const BlockSpec *spec;
    DType dtype;                                  /* dtype: the activations' (float32 or bfloat16) */
    RematPolicy remat;
    bool flash;                                   /* the fused attention (attention flash, or autoselected from 128 tokens) */
    int emb_dim, num_query_heads, num_kv_heads, mlp_dim, num_decoder_layers;
    int num_devices, num_slices;
    int mesh_data, mesh_fsdp, mesh_tensor;        /* dcn x ici per axis */
    int mesh_expert;                              /* experts split over it; the batch too (compile-only) */
    long long global_batch;                       /* sequences per train step */
    long long micro_batch;                        /* sequences per microbatch */
    long long eval_batch;                         /* sequences per eval step */
    long long tokens_per_step;
} Derived;

/* ---- MaxText's keys mtxc does not implement (config_maxtext.c) ---- */

typedef enum { MK_BOOL, MK_NUM, MK_STR, MK_SEQ, MK_MAP, MK_ANY } MaxTextKind;
typedef enum { MK_IGNORED, MK_UNIMPLEMENTED } MaxTextClass;
typedef struct { const char *name; MaxTextKind kind; MaxTextClass cls; const char *def; } MaxTextKey;
typedef enum {
#define MKEY(name, kind, cls, def) MK_##name,
#include "maxtext_keys.def"
#undef MKEY
    NUM_MAXTEXT_KEYS
} MaxTextKeyId;
extern const MaxTextKey maxtext_keys[];

/* A value of one: canonical YAML text (1.0 and 1, None and "" read alike). */
typedef struct {
    bool set;
    int seq;
    const char *text;
    SrcLoc loc;
    const char *preset;    /* the value model_name's preset gave, or NULL */
} MaxTextValue;

typedef struct Config {
    Pool *pool;
    ConfigValue v[NUM_KEYS];
    MaxTextValue mx[NUM_MAXTEXT_KEYS];
    Derived d;
    const char *config_dir;                       /* directory of the root config file */
} Config;

/* Load CONFIG, its model_name preset and key=value overrides; validate and
 * derive. On error returns NULL and writes one message into err. */
Config *config_load(const char *path, int noverrides, char **overrides,
                    char *err, size_t errlen);
void config_free(Config *c);
/* Internal to config: derive and cross-check values (config_resolve.c). */
bool config_resolve(Config *c, char *err, size_t errlen);
void config_error(char *err, size_t errlen, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void config_print(FILE *out, const Config *c);
void yaml_quote(Buf *b, const char *s);   /* s as a double-quoted YAML scalar that reads back as s */

struct yaml_document_s;
struct yaml_node_s;
int maxtext_key_find(const char *name);        /* index into maxtext_keys, or -1 */
/* Nodes all of a config's MaxText values may expand to (aliases included). */
#define MAXTEXT_NODE_BUDGET 1000000L
/* Node n as key m's canonical text, or NULL with a message (wrong kind, or
 * *budget of nodes spent). */
const char *maxtext_value(Pool *p, int m, struct yaml_document_s *doc, struct yaml_node_s *n, long *budget, char *msg,
                          size_t len);
const char *maxtext_default(Pool *p, int m);   /* MaxText's default, canonical */
/* Every UNIMPLEMENTED key at MaxText's default, or an error at the first that is not. */
bool maxtext_check(const Config *c, char *err, size_t errlen);
void maxtext_print_keys(FILE *out, bool ignored_only);     /* mtxc config --keys / --ignored */
void maxtext_print_values(FILE *out, const Config *c);     /* the IGNORED keys set away from defaults */
const char *config_value_text(Pool *p, const Config *c, int key); /* YAML text */

static inline long long cfg_int(const Config *c, KeyId k) { return c->v[k].i; }
static inline double cfg_float(const Config *c, KeyId k) { return c->v[k].f; }
static inline bool cfg_bool(const Config *c, KeyId k) { return c->v[k].b; }
static inline const char *cfg_str(const Config *c, KeyId k) { return c->v[k].s; }
/* Devices that split the batch: the data and fsdp axes (and expert, as MaxText's activation_batch). */
static inline int batch_shards(const Config *c) { return c->d.mesh_data * c->d.mesh_fsdp * c->d.mesh_expert; }
/* Attention + MLP blocks in one of MaxText's layers: gemma2's layer is a
 * local (sliding-window) and a global one. */
static inline int sublayers(const Config *c) { return c->d.spec->sublayers; }

/* Names of derived values; setting one is an error that points at its source. */
extern const char *const derived_names[];
extern const int num_derived_names;


/* ---- IR (ir.c, ir_print.c, ir_verify.c) ----
 * A function is a list of operations in execution order over SSA tensor
 * values. Values that live across steps (params, optimizer state, the step
 * counter) belong to the program's state; batch tensors are inputs; the rest
 * are temporaries defined by exactly one operation. */

static inline bool dtype_is_float(DType dt) { return dt == DT_F32 || dt == DT_BF16; }
/* V_ACCUM: a buffer of the step that ops update in place (gradient accumulation).
 * V_CACHE: the decoding functions' keys and values, kept between their calls. */
typedef enum { V_PARAM, V_OPT, V_COUNTER, V_INPUT, V_TEMP, V_ACCUM, V_CACHE } ValueKind;
/* The train state: params, optimizer moments, counters (checkpointed). */
static inline bool kind_is_state(ValueKind k) { return k <= V_COUNTER; }
typedef enum { INIT_ZEROS, INIT_ONES, INIT_NORMAL, INIT_TRUNCATED_NORMAL } InitKind;
/* An optimizer moment's place in the state, as optax names it (V_OPT values). */
typedef enum { MOMENT_NONE, MOMENT_MU, MOMENT_NU } Moment;
static inline const char *moment_name(Moment m) { return m == MOMENT_MU ? "mu" : m == MOMENT_NU ? "nu" : "?"; }

#define ATTRS(set, ints, floats)
typedef enum {
#define OP(name, nin, nout, cls, attrs, bf16) OP_##name,
#include "ops.def"
#undef OP
    NUM_OPS
} OpKind;
#undef ATTRS

/* Attribute sets (ops.def), and the place of each attribute in its set:
 * A_<set>_<name> indexes Op.ia, F_<set>_<name> Op.fa. */
#define OP(name, nin, nout, cls, attrs, bf16)
typedef enum {
#define ATTRS(set, ints, floats) ATTRS_##set,
#include "ops.def"
#undef ATTRS
    NUM_ATTR_SETS
} AttrSet;
#define I(set, name) A_##set##_##name,
#define F(set, name)
#define ATTRS(set, ints, floats) enum { A_##set##__none = -1, ints };
#include "ops.def"
#undef I
#undef F
#undef ATTRS
#define I(set, name)
#define F(set, name) F_##set##_##name,
#define ATTRS(set, ints, floats) enum { F_##set##__none = -1, floats };
#include "ops.def"
#undef I
#undef F
#undef ATTRS
#undef OP
typedef enum { OC_EW, OC_KERNEL, OC_GEMM, OC_UPDATE } OpClass;

typedef struct Op Op;
/* The pass of the step an op belongs to (remat recomputes forward ops
 * inside the backward; the optimizer, accumulation and sums are neither). */
typedef enum { PASS_FORWARD, PASS_BACKWARD, PASS_OTHER } OpPass;
/* What a forward op computes, where remat policies tell them apart: the
 * query, key and value projections, the MLP block, or anything else. */
typedef enum { ROLE_OTHER, ROLE_QKV, ROLE_MLP } OpRole;

typedef struct Value {
    int id;
    const char *name;            /* what it is: "layers.3.attn.query", "grad.embed.table" */
    DType dtype;
    int rank;
    int64_t dim[4];
    ValueKind kind;
    Op *def;                     /* defining op, for temporaries */
    /* state tensors */
    InitKind init;
    double init_std;
    const char *axes[4];         /* logical axis names (embed, mlp, heads, ...) */
    struct Value *grad;          /* params: gradient value, set by autodiff */
    struct Value *param;         /* optimizer moments: the param they follow */
    Moment moment;               /* optimizer moments: which (optax's mu or nu) */
    int full_rank;               /* shard: > 0 if this is one fsdp chunk of a tensor of full_dim */
    int64_t full_dim[4];
    /* build: > 0 if split split_ways ways over mesh axis split_axis (MTX_AXIS_TENSOR:
     * Megatron's heads and MLP columns; MTX_AXIS_EXPERT: the experts) along dim split_dim - 1 */
    int split_dim;
    int split_ways, split_axis;
    /* set by passes */
    int group;                   /* fuse: >0 if it never leaves a fused loop */
    /* fuse: rows [0, rows_used[last]) of this [rows, ...] value are in use (expert
     * parallelism's buffers, room for every device's rows); the rest are never read */
    struct Value *rows_used;
    int64_t offset;              /* memplan: bytes into the arena (temps) or state */
} Value;

struct Op {
    OpKind kind;
    Value **in;
    int nin;
    Value *out[3];
    int nout;
    int64_t ia[8];               /* integer attributes, meaning per op (see attr names) */
    double fa[8];                /* float attributes */
    const char *block;           /* the layer and pass it belongs to, for comments only */
    int unit;                    /* what remat recomputes as one: decoder layer l, or layers + t for
                                    num_vocab_tiling's output tile t; -1 for the rest */
    OpPass pass;                 /* the step's forward or backward, or neither (updates, sums) */
    OpRole role;                 /* forward ops: qkv projection, MLP block, or other */
    int group;                   /* fuse: ops with the same group > 0 form one loop */
};

typedef struct {
    const char *name;            /* train_step, eval_step */
    Op **ops;
    int nops, cap;
    int64_t arena_bytes;         /* memplan */
    /* ops [loop_first, loop_last] run loop_count times, once per microbatch */
    int loop_first, loop_last, loop_count;
    struct Value *loop_inputs[4]; /* the microbatch's inputs, targets, segmentation, segment ids */
} Func;

enum { NUM_FUNCS = 4 };

typedef struct Program {
    Pool *pool;
    const Config *cfg;
    Value **values;
    int nvalues, capvalues;
    Func train, eval;
    Func prefill, decode;        /* decoding one sequence (single-device meshes): a prompt, then one token */
    Func *funcs[NUM_FUNCS];      /* eval, train, prefill, decode: what every pass walks */
    struct { int unit; OpPass pass; OpRole role; } at;   /* stamped on new ops (op_add) by the pass adding them */
    /* batch inputs and the metrics the step reports */
    Value *tokens, *targets, *segmentation, *segment_ids;
    Value *train_loss, *train_weight, *eval_loss, *eval_weight, *grad_norm, *lr;
    Value *train_moe_lb, *eval_moe_lb;   /* mixtral's load-balancing loss (in the loss), or NULL */
    Value *moe_lb_sum;                   /* with accumulation: its weighted sum over microbatches (and devices) */
    Value *step;                 /* the step counter */
    Value *rng;                  /* pure_nnx: the random key in the state, advanced every step */
    bool uses_rng;               /* some op of the train step draws from the step's key */
    Value *train_tokens, *train_targets, *train_segmentation, *train_segment_ids;  /* per microbatch */
    Value *decode_tokens, *decode_token, *decode_position;   /* [1, prefill length], [1, 1], [1] */
    Value *prefill_logits, *decode_logits;                   /* f32 [n, vocab]: what the decoding functions return */
    int64_t prefill_length, cache_length;                    /* max_prefill_predict_length, max_target_length */
    Value *grad_scale;           /* 1 / total tokens when gradients were accumulated, else NULL */
    Value *loss_sum, *weight_sum; /* accumulate.c's sums of the step, for the shard pass */
    int64_t state_bytes, cache_bytes;
    double flops_per_step;       /* of one data-parallel rank's step */
    int ngroups;
    const char *last_pass;
    bool grads_outside_arena;    /* memplan: leave params' gradients out (compile-only's sharded accounting) */
    bool mesh_lowered;           /* build: the backends lower this mesh (lowerable_mesh); else data parallel only */
    bool legalized;              /* legalize: kernels other than GEMMs see only f32 */
} Program;

typedef struct {
    const char *name;
    OpClass cls;
    int nin, nout;
    AttrSet attrs;
    const char *bf16;            /* "inputs/outputs" of a kernel's bf16 form: 'b' bf16, '-' f32; "" none */
} OpInfo;
extern const OpInfo op_info[NUM_OPS];
const char *op_attr_name(OpKind kind, int i, bool is_float);   /* NULL past the last */

/* An op's attribute by name, an lvalue: IA(op, matmul, m) = 64;
 * FA(op, norm, eps). The op's kind must have that attribute set (checked:
 * reading another op's attributes through the wrong names is a bug). */
#define IA(op, set, name) (op_ia((op), ATTRS_##set)[A_##set##_##name])
#define FA(op, set, name) (op_fa((op), ATTRS_##set)[F_##set##_##name])
int64_t *op_ia(const Op *op, AttrSet set);
double *op_fa(const Op *op, AttrSet set);

Program *program_new(const Config *cfg);
/* New ops (op_add) go where `like` is: its unit and pass (NULL: neither). */
static inline void ops_at(Program *p, const Op *like)
{
    p->at.unit = like ? like->unit : -1;
    p->at.pass = like ? like->pass : PASS_OTHER;
    p->at.role = like ? like->role : ROLE_OTHER;
}
int64_t program_param_count(const Program *p);
int64_t program_arena_bytes(const Program *p);   /* the one arena both steps share */
/* The runtime kernels' scratch (bf16 attention heads, the fused attention
 * with one thread's blocks): an op's reservation as a C expression (NULL:
 * none; "" when pool is NULL) and its bytes with one thread; the most any op
 * of p needs. */
const char *op_scratch(Pool *pool, const Op *op, int64_t *bytes);
int64_t program_scratch_bytes(const Program *p);
void program_free(Program *p);
Value *value_new(Program *p, const char *name, DType dt, int rank, const int64_t *dim, ValueKind kind);
Value *state_new(Program *p, const char *name, int rank, const int64_t *dim, InitKind init,
                 double std, const char *const *axes);
int64_t value_numel(const Value *v);
/* This device's tensor before fsdp chunking (a tensor-parallel share or the
 * whole tensor): its shape into dim, its rank returned. */
int value_share_shape(const Value *v, int64_t dim[4]);
int64_t value_full_numel(const Value *v);        /* of that shape */
int64_t value_global_numel(const Value *v);      /* of the model's tensor, before fsdp and tensor splits */
int64_t value_bytes(const Value *v);
int dtype_bytes(DType t);
/* Append an op to f; outputs must already exist. */
/* Read after the step: a metric (loss, weight, grad_norm, lr, moe_lb_loss) or decoding's logits. */
bool value_reported(const Program *p, const Value *v);
Op *op_add(Program *p, Func *f, OpKind kind, const char *block, int nin, Value **in,
           int nout, Value **out);
const char *dtype_name(DType dt);
void func_append(Func *f, Op *op);
void func_move_last(Func *f, int at);            /* the last op of f goes to index at */
int func_index(const Func *f, const Op *op);     /* -1 if not in f */

void ir_print(FILE *out, const Program *p);
/* Check the IR's invariants; on failure writes one message and returns false. */
bool ir_verify(const Program *p, char *err, size_t errlen);

/* ---- passes ---- */

typedef struct {
    const char *name;
    const char *summary;
    bool (*run)(Program *p, char *err, size_t errlen);
} Pass;
extern const Pass passes[];
extern const int num_passes;

bool build_model(Program *p, char *err, size_t errlen);      /* model.c */
int model_rope_variant(const Config *c);                      /* model.c: the mtx_rope_variant of the config */

/* Hugging Face's checkpoint layout for a parameter (hf_names.c): its name
 * in HF's checkpoints and how its values map (mtx_hf_tensor). */
typedef struct {
    char name[128];
    bool transpose, vocab;
    double scale, shift;
    int rope_pairs, slice;
} HfParam;
/* Why the config's model has no Hugging Face form (block_specs'
 * hf_architecture NULL, or a setting HF's family lacks), or NULL: it has. */
const char *hf_missing(Pool *pool, const Config *c);
/* The HF tensors of parameter `name` (without "params/"), at most max (one,
 * or mixtral's experts one each); 0 where the model has no HF form. */
int hf_param(const Config *c, const char *name, HfParam *out, int max);
/* config.json's fields the program's config fixes (mtx_hf_field), in pool
 * memory; how many, at most max. */
int hf_fields(Pool *pool, const Config *c, mtx_hf_field *out, int max);
bool autodiff(Program *p, char *err, size_t errlen);         /* autodiff.c */
/* Gradients of the [1] value `loss` of f for every parameter (sets Value.grad),
 * seeded with d loss = seed (NULL: 1). */
bool differentiate(Program *p, Func *f, Value *loss, Value *seed, char *err, size_t errlen);
bool build_optimizer(Program *p, char *err, size_t errlen);  /* optimizer.c */
bool fuse(Program *p, char *err, size_t errlen);             /* fuse.c */
/* Fused loops of at least this many elements are shared among the threads
 * (a function of the element range that mtx_parallel_for runs). */
#define PARALLEL_LOOP_MIN 65536
/* The places one run of f may split its work among threads: each kernel,
 * GEMM and update call, each lone cast and each fused loop of
 * PARALLEL_LOOP_MIN+ elements (the microbatch loop's once per microbatch).
 * The runtime keeps those it estimates under MTX_PARALLEL_MIN_NS on one
 * thread (fuse.c). */
int64_t parallel_regions(const Func *f);
bool plan_memory(Program *p, char *err, size_t errlen);      /* memplan.c */
bool accumulate_gradients(Program *p, char *err, size_t errlen); /* accumulate.c */
bool rematerialize(Program *p, char *err, size_t errlen);    /* remat.c */
bool shard(Program *p, char *err, size_t errlen);            /* shard.c */
bool legalize(Program *p, char *err, size_t errlen);         /* legalize.c */
/* In the bf16 form of an op's kernel (ops.def), does operand j (inputs
 * first, then outputs) carry the activations' dtype? False for an op
 * without one. */
bool bf16_slot(OpKind kind, int nin, int j);
/* Can the backends lower this config's mesh? If not, why, in err. */
bool lowerable_mesh(const Config *c, char *err, size_t errlen);

/* Run every pass up to and including `last` (NULL: all), verifying after each. */
Program *compile_program(const Config *cfg, const char *last, char *err, size_t errlen);
Program *compile_program_with(const Config *cfg, const char *last, bool grads_outside_arena, char *err, size_t errlen);

/* ---- compile-only report (report.c) ---- */

typedef struct {
    int64_t param_count, full_params;               /* whole model */
    int64_t gathered_params;                        /* bytes of one FSDP gather of every param (bf16 where read so) */
    int64_t params, grads, opt_state, temporaries, peak, device_bytes;   /* per device */
    int64_t gathered;                               /* FSDP: one layer's weights, gathered (in temporaries) */
    bool fits;
    double flops;                                   /* per step, all devices */
    double fsdp_gather, fsdp_scatter, data_allreduce, tensor_allreduce;  /* bytes per device per step */
    double expert_alltoall;                         /* mixtral's tokens to their experts' devices and back */
    int64_t c_bytes;                                /* size of the generated step.c */
    int64_t parallel_regions;                       /* of one train step (parallel_regions) */
    bool c_checked;                                 /* and clang parsed it */
    bool lowered;                                   /* the backends lower this mesh: */
    int64_t lowered_state, lowered_arena;           /* what one rank of that trainer allocates */
    int64_t kv_cache, prefill_length;               /* decoding one sequence (single-device meshes; else 0) */
} Report;
bool compile_report(const Config *c, Report *r, char *err, size_t errlen);
void report_print(FILE *out, const Config *c, const Report *r, bool json);

/* ---- C backend (emit_c.c) ---- */

/* The generated files as text. */
typedef struct { char *step_h, *step_c, *main_c; } GeneratedC;
void emit_c_text(const Program *p, const char *source_desc, GeneratedC *out);
void generated_c_free(GeneratedC *g);
/* Write DIR/step.h, step.c, main.c atomically; false with a message on error. */
bool write_generated_c(const GeneratedC *g, const char *dir, char *err, size_t errlen);
bool emit_c(const Program *p, const char *dir, const char *source_desc, char *err, size_t errlen);
extern const char template_elementwise[];    /* templates/elementwise.c, embedded */
extern const char template_trainer_main[];   /* templates/trainer_main.c */
extern const char template_mtxrt_h[];        /* runtime/mtxrt.h, for the JIT */

/* ---- JIT (jit.c, clang_compile.cpp): only when built with MTXC_JIT ----
 * report.c checks the generated C through jit_check_c when built with the JIT. */

typedef struct Jit Jit;
typedef struct {
    double lower, compile, link;                /* seconds */
} JitTimes;
/* Compile the generated C in memory with clang and link it with LLVM ORC;
 * returns the program's descriptor, resolved against this process. keep_dir:
 * also write the source there (and name it in diagnostics). */
const mtx_program *jit_load(const GeneratedC *g, const char *keep_dir, Jit **out, JitTimes *t,
                            char *err, size_t errlen);
void jit_free(Jit *j);
/* The generated C parsed and type-checked by clang in this process. */
bool jit_check_c(const GeneratedC *g, char *err, size_t errlen);

#endif
