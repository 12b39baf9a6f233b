// Helpers shared by the kernels (all kernels are compiled as one translation unit).
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

namespace qt {

// 16 bytes streamed once per launch: read-only path, not allocated in L1.
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// The shared-memory address of a generic pointer to shared memory (for cp.async, ldmatrix,
// mbarriers).
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// Two bf16 packed in a u32 (low half first in memory) to two exact f32 values.
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// Sum over the 32 lanes of a warp; every lane gets the result (fixed xor tree: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim a multiple of 32, at most 1024): the warp sums added in warp
// order, so every thread gets the same value. Ends with a barrier, so it can be called again
// right away (its shared partials are reused).
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < warps; ++i) total += partial[i];
    __syncthreads();
    return total;
}

}  // namespace qt
