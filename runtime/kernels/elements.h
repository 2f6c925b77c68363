/* libmtxrt-internal: elements of a float32 or bf16 array as float32, for
 * kernels that serve both dtypes with one body. The flag is loop-invariant,
 * so the compiler unswitches loops on it and both forms vectorize; a
 * float32 array is read and written exactly as plain code would. */
#ifndef MTX_ELEMENTS_H
#define MTX_ELEMENTS_H

#include "mtxrt.h"

static inline float mtx_load(const void *x, int bf16, size_t i)
{
    return bf16 ? mtx_bf16_to_f32(((const mtx_bf16 *)x)[i]) : ((const float *)x)[i];
}

static inline void mtx_store(void *y, int bf16, size_t i, float v)
{
    if (bf16) ((mtx_bf16 *)y)[i] = mtx_f32_to_bf16(v);
    else ((float *)y)[i] = v;
}

#endif
