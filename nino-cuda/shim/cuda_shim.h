// CUDA C on the host: just enough of CUDA's execution model to run nino's kernels under g++, for the
// tests and the sanitizers of a machine without a GPU.
//
// Each thread of a block is a std::thread; __syncthreads() is a std::barrier across them; __shared__
// variables are `static`, which is sound because blocks run one at a time (every thread crosses a
// barrier after each block before the next one starts). threadIdx/blockIdx are thread_local.
// Kernels must reach every __syncthreads() with all their threads (no early return before a barrier),
// as CUDA itself requires.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

extern thread_local dim3 threadIdx;
extern thread_local dim3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

void shim_syncthreads();

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

inline void __syncthreads() { shim_syncthreads(); }

inline int atomicOr(int* p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }

// IEEE binary16 to binary32, exactly (subnormals, infinities and NaNs included).
inline float shim_f16_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while ((man & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

using std::isfinite;
using std::sqrt;
using std::max;
using std::min;
