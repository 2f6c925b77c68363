/* Counter-based random numbers: value i of a stream is a pure function of
 * (key, i), so results do not depend on thread count or loop order. The mix is
 * SplitMix64's finalizer applied twice with the key folded in between. */
#include "mtxrt.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

mtx_rng_key mtx_rng_seed(uint64_t seed)
{
    return (mtx_rng_key){mix64(seed + 0x9e3779b97f4a7c15ULL), mix64(seed ^ 0x6a09e667f3bcc909ULL)};
}

mtx_rng_key mtx_rng_fold(mtx_rng_key key, uint64_t data)
{
    return (mtx_rng_key){mix64(key.k0 ^ mix64(data + 0x9e3779b97f4a7c15ULL)),
                         mix64(key.k1 + mix64(data ^ 0xbb67ae8584caa73bULL))};
}

uint64_t mtx_rng_bits(mtx_rng_key key, uint64_t counter)
{
    return mix64(key.k0 ^ mix64(counter * 0x9e3779b97f4a7c15ULL + key.k1));
}

float mtx_rng_uniform(mtx_rng_key key, uint64_t counter)
{
    return (float)(mtx_rng_bits(key, counter) >> 40) * (1.0f / 16777216.0f);
}

float mtx_rng_normal(mtx_rng_key key, uint64_t counter)
{
    uint64_t bits = mtx_rng_bits(key, counter);
    /* Box-Muller on two 32-bit uniforms; u1 in (0, 1] keeps the log finite. */
    double u1 = ((double)(bits >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(bits & 0xffffffffu) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* A fill's elements, for the pool: element i of x is the stream's counter
 * first + i, or of a share's slice (cols > 0). */
typedef struct {
    float *x;
    size_t first, cols, full_cols, offset;
    mtx_rng_key key;
    float std;
    int truncated;
} Fill;

static float truncated_normal(mtx_rng_key key, uint64_t c);

/* Element e of a [rows, cols] share maps to counter offset + row * full_cols + col. */
static uint64_t slice_counter(size_t e, size_t cols, size_t full_cols, size_t offset)
{
    return offset + e / cols * full_cols + e % cols;
}

static void fill_range(void *ctx, size_t first, size_t end)
{
    const Fill *f = ctx;
    for (size_t i = first; i < end; i++) {
        uint64_t c = f->cols ? slice_counter(f->first + i, f->cols, f->full_cols, f->offset) : f->first + i;
        f->x[i] = f->std * (f->truncated ? truncated_normal(f->key, c) : mtx_rng_normal(f->key, c));
    }
}

static void fill(Fill f, size_t n)
{
    mtx_parallel(fill_range, &f, n, 64, (double)n * 30 * MTX_COST_ELEMENT_NS);
}

void mtx_fill_normal_at(float *x, size_t first, size_t n, mtx_rng_key key, float std)
{
    fill((Fill){x, first, 0, 0, 0, key, std, 0}, n);
}

void mtx_fill_normal(float *x, size_t n, mtx_rng_key key, float std) { mtx_fill_normal_at(x, 0, n, key, std); }

void mtx_fill_normal_slice(float *x, size_t first, size_t n, size_t cols, size_t full_cols, size_t offset,
                           mtx_rng_key key, float std)
{
    fill((Fill){x, first, cols, full_cols, offset, key, std, 0}, n);
}

/* N(0,1) cut at +-2 (as jax.random.truncated_normal): element c redraws from
 * counters derived from c until it lands inside. */
static float truncated_normal(mtx_rng_key key, uint64_t c)
{
    float z;
    uint64_t attempt = 0;
    do z = mtx_rng_normal(key, c * 64 + attempt++);
    while (fabsf(z) > 2.0f && attempt < 64);
    return z;
}

void mtx_fill_truncated_normal_at(float *x, size_t first, size_t n, mtx_rng_key key, float std)
{
    fill((Fill){x, first, 0, 0, 0, key, std, 1}, n);
}

void mtx_fill_truncated_normal_slice(float *x, size_t first, size_t n, size_t cols, size_t full_cols, size_t offset,
                                     mtx_rng_key key, float std)
{
    fill((Fill){x, first, cols, full_cols, offset, key, std, 1}, n);
}

void mtx_fill_truncated_normal(float *x, size_t n, mtx_rng_key key, float std)
{
    mtx_fill_truncated_normal_at(x, 0, n, key, std);
}

mtx_rng_key mtx_rng_first_step_key(mtx_rng_key init) { return mtx_rng_fold(init, 0x64726f706f7574ULL); }

mtx_rng_key mtx_rng_next_step_key(mtx_rng_key key) { return mtx_rng_fold(key, 0x6e657874ULL); }
