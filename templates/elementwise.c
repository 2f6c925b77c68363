/* ---- elementwise functions, inlined into the fused loops below ---- */

/* GELU with the tanh approximation (flax's default, approximate=True) */
static inline float gelu(float x)
{
    return 0.5f * x * (1.0f + mtx_tanh(0.7978845608f * (x + 0.044715f * x * x * x)));
}

static inline float gelu_grad(float x)
{
    float u = 0.7978845608f * (x + 0.044715f * x * x * x), th = mtx_tanh(u);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.7978845608f * (1.0f + 0.134145f * x * x);
}

/* gemma2's soft cap: tanh(x / cap) * cap, and its derivative */
static inline float soft_cap(float x, float cap) { return mtx_tanh(x / cap) * cap; }

static inline float soft_cap_grad(float x, float cap)
{
    float t = mtx_tanh(x / cap);
    return 1.0f - t * t;
}

static inline float silu(float x) { return x / (1.0f + mtx_exp(-x)); }

/* relu, and its derivative as jax.nn.relu's: 0 at 0 */
static inline float relu(float x) { return x > 0.0f ? x : 0.0f; }
static inline float relu_grad(float x) { return x > 0.0f ? 1.0f : 0.0f; }

static inline float silu_grad(float x)
{
    float s = 1.0f / (1.0f + mtx_exp(-x));
    return s * (1.0f + x * (1.0f - s));
}
