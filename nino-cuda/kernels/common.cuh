// Shared by every kernel file: launch geometry, the f16 weight load, SiLU and error flags.
//
// Compiled two ways: by NVRTC into the committed PTX, and by g++ with NINO_SHIM defined against
// shim/cuda_shim.h, which runs each block's threads as host threads (nino-cuda/README.md).
//
// Arithmetic conventions (so that the host shim, nino-core and the GPU agree): PTX is generated with
// --fmad=false, so `a * b + c` is never contracted; dot products use fmaf explicitly, which is the same
// correctly rounded operation on the GPU and on the host.
#pragma once

#ifdef NINO_SHIM
#include "cuda_shim.h"
#endif

#define NINO_KERNEL extern "C" __global__ void

// Threads per block of every kernel (one dimension).
#define NT 128
// Widest hidden layer and widest first-layer edge input (F * c) the NiNo kernels hold in shared memory.
#define HMAX 128
// Edges per tile of the NiNo edge kernels.
#define ROWS 16
// Most message-passing layers the NiNo kernels chain.
#define MAXL 4

// Bits of the error flag a kernel raises (atomicOr); the host maps them to nino-core's errors.
#define FLAG_HISTORY 1
#define FLAG_SCALES 2
#define FLAG_PREDICTION 4
#define FLAG_LABEL 8

typedef unsigned short f16_t;

__device__ __forceinline__ float f16_to_f32(f16_t h) {
#ifdef NINO_SHIM
    return shim_f16_to_f32(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ float ldw(const float* p) { return *p; }
__device__ __forceinline__ float ldw(const f16_t* p) { return f16_to_f32(*p); }

// nino-core's SiLU: x / (1 + exp(-x)).
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float nan_f32() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ float inf_f32() { return __int_as_float(0x7f800000); }

__device__ __forceinline__ bool finite(float x) { return isfinite(x); }

// Global thread index of a 1-D launch.
__device__ __forceinline__ int gtid() { return (int)(blockIdx.x * blockDim.x + threadIdx.x); }

// Sum of `v` over the block (blockDim.x a power of two, at most NT) in a fixed tree order, so the result
// does not depend on scheduling; `red` is NT values of shared memory. Ends with a barrier.
template <class T>
__device__ T block_sum(T v, T* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    T r = red[0];
    __syncthreads();
    return r;
}
