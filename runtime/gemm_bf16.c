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
    int m, n, k, c_f32;
    ptrdiff_t rs_a, cs_a, rs_b, cs_b, rs_c;
    float alpha;
    dnnl_primitive_t prim;             /* NULL: the float32 fallback */
    dnnl_memory_t a, b, c, scratch;
    char impl[64];                     /* the implementation oneDNN chose */
};

/* One engine and stream for the process; every plan's scratchpad is the
 * runtime's scratch (mtx_scratch: steps run one GEMM at a time), grown
 * only while plans are made. */
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

void mtx_convert_to_bf16(mtx_bf16 *y, const float *x, size_t n)
{
    #pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) y[i] = mtx_f32_to_bf16(x[i]);
}

void mtx_convert_to_f32(float *y, const mtx_bf16 *x, size_t n)
{
    #pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) y[i] = mtx_bf16_to_f32(x[i]);
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

mtx_gemm_plan *mtx_gemm_plan_new(int m, int n, int k, ptrdiff_t rs_a, ptrdiff_t cs_a, ptrdiff_t rs_b,
                                 ptrdiff_t cs_b, ptrdiff_t rs_c, int c_f32, float alpha)
{
    hold_engine();
    mtx_gemm_plan *p = mtx_alloc(sizeof *p);
    *p = (mtx_gemm_plan){m, n, k, c_f32, rs_a, cs_a, rs_b, cs_b, rs_c, alpha, NULL, NULL, NULL, NULL, NULL, ""};
    static pthread_once_t warn_once = PTHREAD_ONCE_INIT;
    if (!mtx_cpu_has_bf16()) pthread_once(&warn_once, warn_emulated);
    /* MTX_BF16_GEMM=blis: the float32 fallback even where oneDNN could (tests) */
    const char *force = getenv("MTX_BF16_GEMM");
    if (!force || strcmp(force, "blis")) {
        dnnl_memory_desc_t a = view(m, k, rs_a, cs_a, dnnl_bf16), b = view(k, n, rs_b, cs_b, dnnl_bf16),
                           c = view(m, n, rs_c, 1, c_f32 ? dnnl_f32 : dnnl_bf16);
        dnnl_matmul_desc_t desc;
        check(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c), "matmul_desc_init");
        dnnl_primitive_attr_t attr;
        check(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
        check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
        if (alpha != 1.0f) check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "set_output_scales");
        dnnl_primitive_desc_t pd;
        dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
        dnnl_primitive_attr_destroy(attr);
        if (st == dnnl_success) {
            const char *impl = "?";
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
            snprintf(p->impl, sizeof p->impl, "oneDNN %s", impl);
            note_impl(p->impl);
            const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            mtx_scratch_reserve(dnnl_memory_desc_get_size(smd) + 64);   /* released by mtx_gemm_plan_free */
            p->scratch = memory(smd);
            check(dnnl_primitive_create(&p->prim, pd), "primitive_create");
            dnnl_primitive_desc_destroy(pd);
            p->a = memory(&a), p->b = memory(&b), p->c = memory(&c);
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

void mtx_gemm_plan_free(mtx_gemm_plan *p)
{
    if (!p) return;
    mtx_scratch_release();
    if (p->prim) {
        dnnl_primitive_destroy(p->prim);
        dnnl_memory_destroy(p->a);
        dnnl_memory_destroy(p->b);
        dnnl_memory_destroy(p->c);
        dnnl_memory_destroy(p->scratch);
    }
    mtx_free(p);
    release_engine();
}

const char *mtx_gemm_plan_impl(const mtx_gemm_plan *p) { return p->impl; }

/* A strided bf16 view copied into a dense float32 [rows, cols]. */
static void widen(float *dst, const mtx_bf16 *src, int rows, int cols, ptrdiff_t rs, ptrdiff_t cs)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) dst[(size_t)i * cols + j] = mtx_bf16_to_f32(src[i * rs + j * cs]);
}

static void fallback(const mtx_gemm_plan *p, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    float *fa = mtx_scratch(), *fb = fa + (size_t)p->m * p->k, *fc = fb + (size_t)p->k * p->n;
    widen(fa, a, p->m, p->k, p->rs_a, p->cs_a);
    widen(fb, b, p->k, p->n, p->rs_b, p->cs_b);
    if (p->c_f32) {
        mtx_sgemm(0, 0, p->m, p->n, p->k, p->alpha, fa, p->k, 1, fb, p->n, 1, 0.0f, c, p->rs_c, 1);
        return;
    }
    mtx_sgemm(0, 0, p->m, p->n, p->k, p->alpha, fa, p->k, 1, fb, p->n, 1, 0.0f, fc, p->n, 1);
    mtx_bf16 *hc = c;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < p->m; i++)
        for (int j = 0; j < p->n; j++) hc[i * p->rs_c + j] = mtx_f32_to_bf16(fc[(size_t)i * p->n + j]);
}

void mtx_gemm_bf16(const mtx_gemm_plan *p, const mtx_bf16 *a, const mtx_bf16 *b, void *c)
{
    if (p->m <= 0 || p->n <= 0) return;
    if (!p->prim) {
        fallback(p, a, b, c);
        return;
    }
    check(dnnl_memory_set_data_handle(p->a, (void *)a), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->b, (void *)b), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->c, c), "memory_set_data_handle");
    check(dnnl_memory_set_data_handle(p->scratch, mtx_scratch()), "memory_set_data_handle");
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c}, {DNNL_ARG_SCRATCHPAD, p->scratch},
    };
    check(dnnl_primitive_execute(p->prim, stream, 4, args), "primitive_execute");
    check(dnnl_stream_wait(stream), "stream_wait");
}
