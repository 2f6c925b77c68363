/* bf16 GEMMs through oneDNN's matmul primitive (C API): bf16 operands,
 * float32 accumulation, a bf16 or float32 result. Every shape of a program
 * is known when it is compiled, so the generated code makes one plan (one
 * oneDNN primitive) per distinct GEMM when its state is created, never in
 * the step. oneDNN picks AMX where the CPU has it, AVX512-BF16 elsewhere.
 * Where it has no bf16 matmul, a plan converts to float32 and calls BLIS. */
#include "mtxrt.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mtx_gemm_plan {
    int m, n, k, c_f32;                /* ragged: m or k is the most a call may give */
    ptrdiff_t rs_a, cs_a, rs_b, cs_b, rs_c;
    float alpha;
    int ragged, accumulate;            /* MTX_RAGGED_*; C += instead of C = */
    int split;                         /* large: rows given per call, run in pieces on the pool */
    dnnl_primitive_t prim;             /* NULL: the float32 fallback */
    dnnl_memory_t a, b, c, scratch;    /* fixed shapes only: views whose data is set per call */
    char impl[64];                     /* the implementation oneDNN chose */
};

/* One engine and stream for the process (a CPU stream only runs what it is
 * given: the pool's threads share it). A small plan's scratchpad is the
 * runtime's scratch (mtx_scratch: steps run one GEMM at a time), grown only
 * while plans are made; a large one is cut into row pieces run on the pool
 * (runtime/kernels/parallel.c) and each uses oneDNN's per-thread scratchpad. */
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static int live_plans;                 /* the engine lives while plans do */
static pthread_mutex_t engine_lock = PTHREAD_MUTEX_INITIALIZER;
static char impls[256];                /* the implementations chosen so far, for the trainer's log */

static void note_impl(const char *impl)
{
    if (strstr(impls, impl)) return;
    size_t len = strlen(impls);
    snprintf(impls + len, sizeof impls - len, "%s%s", len ? ", " : "", impl);
}

const char *mtx_gemm_bf16_impls(void) { return impls; }

static void check(dnnl_status_t st, const char *what)
{
    if (st == dnnl_success) return;
    fprintf(stderr, "mtxrt: error: oneDNN %s failed (status %d)\n", what, (int)st);
    exit(1);
}

static void hold_engine(void)
{
    pthread_mutex_lock(&engine_lock);
    if (!live_plans++) {
        check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine_create");
        check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream_create");
    }
    pthread_mutex_unlock(&engine_lock);
}

static void release_engine(void)
{
    pthread_mutex_lock(&engine_lock);
    if (!--live_plans) {
        dnnl_stream_destroy(stream);
        dnnl_engine_destroy(engine);
    }
    pthread_mutex_unlock(&engine_lock);
}

/* A [rows, cols] view with the given strides. */
static dnnl_memory_desc_t view(int64_t rows, int64_t cols, ptrdiff_t rs, ptrdiff_t cs, dnnl_data_type_t dt)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    check(dnnl_memory_desc_init_by_strides(&md, 2, dims, dt, strides), "memory_desc_init_by_strides");
    return md;
}

static dnnl_memory_t memory(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t mem;
    check(dnnl_memory_create(&mem, md, engine, DNNL_MEMORY_NONE), "memory_create");
    return mem;
}

typedef struct {
    void *y;
    const void *x;
} Convert;

static void to_bf16_range(void *ctx, size_t first, size_t end)
{
    const Convert *c = ctx;
    mtx_bf16 *y = c->y;
    const float *x = c->x;
    for (size_t i = first; i < end; i++) y[i] = mtx_f32_to_bf16(x[i]);
}

static void to_f32_range(void *ctx, size_t first, size_t end)
{
    const Convert *c = ctx;
    float *y = c->y;
    const mtx_bf16 *x = c->x;
    for (size_t i = first; i < end; i++) y[i] = mtx_bf16_to_f32(x[i]);
}

void mtx_convert_to_bf16(mtx_bf16 *y, const float *x, size_t n)
{
    Convert c = {y, x};
    mtx_parallel(to_bf16_range, &c, n, 64, (double)n * 0.5 * MTX_COST_ELEMENT_NS);
}

void mtx_convert_to_f32(float *y, const mtx_bf16 *x, size_t n)
{
    Convert c = {y, x};
    mtx_parallel(to_f32_range, &c, n, 64, (double)n * 0.5 * MTX_COST_ELEMENT_NS);
}

/* Does this CPU run bf16 dot products natively (AMX or AVX512-BF16)? */
int mtx_cpu_has_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("amx-bf16") || __builtin_cpu_supports("avx512bf16");
}

static void warn_emulated(void)
{
    fprintf(stderr, "mtxrt: note: this CPU has neither AMX nor AVX512-BF16: bf16 matmuls are emulated in float32 "
                    "and slow; dtype=float32 runs faster here\n");
}

/* oneDNN's dimension: a ragged one is given per call (DNNL_RUNTIME_DIM_VAL) */
static int64_t dim(int64_t n, bool ragged) { return ragged ? DNNL_RUNTIME_DIM_VAL : n; }

/* The estimated serial time of an m x n x k product. */
static double product_ns(int64_t m, int64_t n, int64_t k)
{
    return 2.0 * (double)m * (double)n * (double)k * MTX_COST_FLOP_BF16_NS;
}

/* Is a plan's product worth the pool's threads? The same answer for every
 * thread count, so that the implementation (and the bits) do too. */
static bool large(int64_t m, int64_t n, int64_t k) { return product_ns(m, n, k) >= MTX_PARALLEL_MIN_NS; }

static mtx_gemm_plan *plan_new(int ragged, int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a, ptrdiff_t rs_b,
                               ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, float alpha, int accumulate)
{
    mtx_num_threads();                 /* OpenMP at one thread before oneDNN sizes the primitive */
    hold_engine();
    mtx_gemm_plan *p = mtx_alloc(sizeof *p);
    *p = (mtx_gemm_plan){m, n, k, c_f32, rs_a, cs_a, rs_b, cs_b, rs_c, alpha, ragged, accumulate,
                         large(m, n, k), NULL, NULL, NULL, NULL, NULL, ""};
    static pthread_once_t warn_once = PTHREAD_ONCE_INIT;
    if (!mtx_cpu_has_bf16()) pthread_once(&warn_once, warn_emulated);
    /* MTX_BF16_GEMM=blis: the float32 fallback even where oneDNN could (tests) */
    const char *force = getenv("MTX_BF16_GEMM");
    if (!force || strcmp(force, "blis")) {
        int64_t dm = dim(m, ragged == MTX_RAGGED_M || p->split), dk = dim(k, ragged == MTX_RAGGED_K);
        dnnl_memory_desc_t a = view(dm, dk, rs_a, cs_a, dnnl_bf16), b = view(dk, n, rs_b, cs_b, dnnl_bf16),
                           c = view(dm, n, rs_c, 1, c_f32 ? dnnl_f32 : dnnl_bf16);
        dnnl_matmul_desc_t desc;
        check(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c), "matmul_desc_init");
        dnnl_primitive_attr_t attr;
        check(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
        /* a ragged or split plan's scratchpad depends on the call's shape: oneDNN's own */
        if (!ragged && !p->split) check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
        if (alpha != 1.0f) check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "set_output_scales");
        dnnl_post_ops_t post = NULL;
        if (accumulate) {
            check(dnnl_post_ops_create(&post), "post_ops_create");
            check(dnnl_post_ops_append_sum(post, 1.0f), "post_ops_append_sum");
            check(dnnl_primitive_attr_set_post_ops(attr, post), "set_post_ops");
        }
        dnnl_primitive_desc_t pd;
        dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
        dnnl_primitive_attr_destroy(attr);
        if (post) dnnl_post_ops_destroy(post);
        if (st == dnnl_success) {
            const char *impl = "?";
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            snprintf(p->impl, sizeof p->impl, "oneDNN %s", impl);
            note_impl(p->impl);
            if (!ragged && !p->split) {
                const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
                mtx_scratch_reserve(dnnl_memory_desc_get_size(smd) + 64);   /* released by mtx_gemm_plan_free */
                p->scratch = memory(smd);
                p->a = memory(&a), p->b = memory(&b), p->c = memory(&c);
            } else {
                mtx_scratch_reserve(64);                 /* one hold per plan, as the fixed ones */
            }
            check(dnnl_primitive_create(&p->prim, pd), "primitive_create");
            dnnl_primitive_desc_destroy(pd);
            return p;
        }
        pthread_once(&warn_once, warn_emulated);
    }
    /* float32 fallback: both operands and a bf16 result as float32 in the scratchpad */
    snprintf(p->impl, sizeof p->impl, "float32 emulation (BLIS)");
    note_impl(p->impl);
    mtx_scratch_reserve(sizeof(float) * ((size_t)m * k + (size_t)k * n + (size_t)m * n) + 64);
    return p;
}

mtx_gemm_plan *mtx_gemm_plan_new(int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a, ptrdiff_t rs_b,
                                 ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, float alpha)
{
    return plan_new(0, m, n, k, rs_a, cs_a, rs_b, cs_b, rs_c, c_f32, alpha, 0);
}

mtx_gemm_plan *mtx_gemm_plan_new_ragged(int ragged, int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a,
                                        ptrdiff_t rs_b, ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, int accumulate)
{
    return plan_new(ragged, m, n, k, rs_a, cs_a, rs_b, cs_b, rs_c, c_f32, 1.0f, accumulate);
}

void mtx_gemm_plan_free(mtx_gemm_plan *p)
{
    if (!p) return;
    mtx_scratch_release();
    if (p->prim) {
        dnnl_primitive_destroy(p->prim);
        if (p->a) {
            dnnl_memory_destroy(p->a);
            dnnl_memory_destroy(p->b);
            dnnl_memory_destroy(p->c);
            dnnl_memory_destroy(p->scratch);
        }
    }
    mtx_free(p);
    release_engine();
}

const char *mtx_gemm_plan_impl(const mtx_gemm_plan *p) { return p->impl; }

/* The fallback's rows: widened from a strided bf16 view into dense float32,
 * or rounded back (C = dense, or C += dense with accumulate). */
typedef struct {
    float *dense;
    mtx_bf16 *view;
    int cols, accumulate;
    ptrdiff_t rs, cs;
} Strided;

static void widen_rows(void *ctx, size_t first, size_t end)
{
    const Strided *s = ctx;
    for (size_t i = first; i < end; i++)
        for (int j = 0; j < s->cols; j++)
            s->dense[i * s->cols + j] = mtx_bf16_to_f32(s->view[(ptrdiff_t)i * s->rs + j * s->cs]);
}

static void narrow_rows(void *ctx, size_t first, size_t end)
{
    const Strided *s = ctx;
    for (size_t i = first; i < end; i++)
        for (int j = 0; j < s->cols; j++) {
            mtx_bf16 *out = &s->view[(ptrdiff_t)i * s->rs + j];
            float x = s->dense[i * s->cols + j];
            if (s->accumulate) x += mtx_bf16_to_f32(*out);
            *out = mtx_f32_to_bf16(x);
        }
}

/* A strided bf16 view copied into a dense float32 [rows, cols]. */
static void widen(float *dst, const mtx_bf16 *src, int rows, int cols, ptrdiff_t rs, ptrdiff_t cs)
{
    Strided s = {dst, (mtx_bf16 *)src, cols, 0, rs, cs};
    mtx_parallel(widen_rows, &s, (size_t)rows, 1, (double)rows * cols * MTX_COST_ELEMENT_NS);
}

/* The float32 fallback of an m x n x k call (a ragged plan's m or k is the call's). */
static void fallback(const mtx_gemm_plan *p, int m, int k, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    float *fa = mtx_scratch(), *fb = fa + (size_t)m * k, *fc = fb + (size_t)k * p->n;
    widen(fa, a, m, k, p->rs_a, p->cs_a);
    widen(fb, b, k, p->n, p->rs_b, p->cs_b);
    if (p->c_f32) {
        mtx_sgemm(0, 0, m, p->n, k, p->alpha, fa, k, 1, fb, p->n, 1, p->accumulate ? 1.0f : 0.0f, c, p->rs_c, 1);
        return;
    }
    mtx_sgemm(0, 0, m, p->n, k, p->alpha, fa, k, 1, fb, p->n, 1, 0.0f, fc, p->n, 1);
    Strided s = {fc, c, p->n, p->accumulate, p->rs_c, 1};
    mtx_parallel(narrow_rows, &s, (size_t)m, 1, (double)m * p->n * MTX_COST_ELEMENT_NS);
}

static void execute(const mtx_gemm_plan *p, dnnl_memory_t a, dnnl_memory_t b, dnnl_memory_t c, dnnl_memory_t scratch)
{
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, scratch},
    };
    check(dnnl_primitive_execute(p->prim, stream, scratch ? 4 : 3, args), "primitive_execute");
    check(dnnl_stream_wait(stream), "stream_wait");
}

/* One call of a plan with runtime rows (split or ragged): m x k of A. */
static void execute_rows(const mtx_gemm_plan *p, int m, int k, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    dnnl_memory_desc_t da = view(m, k, p->rs_a, p->cs_a, dnnl_bf16), db = view(k, p->n, p->rs_b, p->cs_b, dnnl_bf16),
                       dc = view(m, p->n, p->rs_c, 1, p->c_f32 ? dnnl_f32 : dnnl_bf16);
    dnnl_memory_t ma, mb, mc;
    check(dnnl_memory_create(&ma, &da, engine, (void *)a), "memory_create");
    check(dnnl_memory_create(&mb, &db, engine, (void *)b), "memory_create");
    check(dnnl_memory_create(&mc, &dc, engine, c), "memory_create");
    execute(p, ma, mb, mc, NULL);
    dnnl_memory_destroy(ma);
    dnnl_memory_destroy(mb);
    dnnl_memory_destroy(mc);
}

typedef struct {
    const mtx_gemm_plan *p;
    int k;
    const mtx_bf16 *a, *b;
    void *c;
} RowsCall;

/* Rows [first, end) of A and C on this thread. */
static void rows_piece(void *ctx, size_t first, size_t end)
{
    const RowsCall *r = ctx;
    const mtx_gemm_plan *p = r->p;
    if (end <= first) return;
    execute_rows(p, (int)(end - first), r->k, r->a + (ptrdiff_t)first * p->rs_a, r->b,
                 (char *)r->c + (ptrdiff_t)first * p->rs_c * (p->c_f32 ? 4 : 2));
}

/* m rows of a plan with runtime rows: on the pool when the product is large. */
static void run_rows(const mtx_gemm_plan *p, int m, int k, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    RowsCall r = {p, k, a, b, c};
    mtx_parallel(rows_piece, &r, (size_t)m, 16, product_ns(m, p->n, k));
}

void mtx_gemm_bf16(const mtx_gemm_plan *p, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    if (p->m <= 0 || p->n <= 0) return;
    if (!p->prim) {
        fallback(p, p->m, p->k, a, b, c);
        return;
    }
    if (p->split) {
        run_rows(p, p->m, p->k, a, b, c);
        return;
    }
    check(dnnl_memory_set_data_handle(p->a, (void *)a), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->b, (void *)b), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->c, c), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->scratch, mtx_scratch()), "memory_set_data_handle");
    execute(p, p->a, p->b, p->c, p->scratch);
}

/* A ragged plan's call: `size` rows of A and C (MTX_RAGGED_M) or rows of B
 * and columns of A (MTX_RAGGED_K), at most the plan's. */
void mtx_gemm_bf16_ragged(const mtx_gemm_plan *p, int size, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    int m = p->ragged == MTX_RAGGED_M ? size : p->m, k = p->ragged == MTX_RAGGED_K ? size : p->k;
    if (m <= 0 || p->n <= 0) return;
    if (size > (p->ragged == MTX_RAGGED_M ? p->m : p->k)) {
        fprintf(stderr, "mtxrt: error: a ragged GEMM of %d is larger than its plan's %d\n", size,
                p->ragged == MTX_RAGGED_M ? p->m : p->k);
        abort();
    }
    if (!p->prim) {
        fallback(p, m, k, a, b, c);
        return;
    }
    if (k == 0) {                             /* a sum of nothing */
        for (int i = 0; i < m && !p->accumulate; i++)
            memset((char *)c + (size_t)i * p->rs_c * (p->c_f32 ? 4 : 2), 0, (size_t)p->n * (p->c_f32 ? 4 : 2));
        return;
    }
    if (p->split) run_rows(p, m, k, a, b, c);
    else execute_rows(p, m, k, a, b, c);
}
