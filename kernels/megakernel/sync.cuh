/*
 * Dependencies between the blocks of the persistent grid: monotone counters with
 * release/acquire ordering, and coherent loads for data written inside the kernel.
 *
 * signal: every thread of the block has written its share (bar.sync), then thread 0 makes
 *         those writes visible device-wide (fence) and increments the counter.
 * wait:   thread 0 spins on an acquire load until the counter reaches the target, fences,
 *         and the block barrier releases the other threads. This is the pattern of
 *         cooperative groups' grid barrier, split in two so that a block can do other work
 *         (issue weight loads) between its own signal and its next wait.
 *
 * Anything written inside the kernel (activations, KV cache, codes, counters) is read with
 * L2-coherent loads (ld.global.cg / acquire), never the non-coherent read-only path: an L1
 * line or a .nc load could return a value from before the producer's write (kernels.md §1.10).
 */
#pragma once
#include "megakernel/layout.cuh"

namespace qt_mk {

__device__ __forceinline__ uint32_t ld_acquire(const uint32_t* p) {
    uint32_t v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// The thread that spins and signals: by default one that never issues weight copies (thread 0
// issues the cp.async.bulk pages), so that its fence does not wait for the ring's copies in
// flight. `sync_thread` is 0 or kSyncThread (MkArgs.flags: kFlagSyncThread0).
constexpr int kSyncThread = 32;

__device__ __forceinline__ int sync_thread_of(const MkArgs& a) {
    return (a.flags & kFlagSyncThread0) != 0 ? 0 : kSyncThread;
}

__device__ __forceinline__ uint32_t ld_relaxed(const uint32_t* p) {
    uint32_t v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void st_relaxed(uint32_t* p, uint32_t v) {
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// Block-wide: returns once counter >= target (all threads). `relaxed` (kFlagRelaxedSpin)
// spins on relaxed loads and orders with one fence after, instead of an acquire per poll.
__device__ __forceinline__ void wait_counter(const uint32_t* counter, uint32_t target, int sync_thread,
                                             bool relaxed = false) {
    if (threadIdx.x == sync_thread) {
        if (relaxed) {
            while (ld_relaxed(counter) < target) {
            }
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
        } else {
            while (ld_acquire(counter) < target) {
            }
            __threadfence();
        }
    }
    __syncthreads();
}

// Block-wide: publishes this block's writes, then counts the block in. `release_add`
// (kFlagReleaseAdd) does both in one red.release.gpu (the barrier makes the block's writes
// the signalling thread's, and release is cumulative).
__device__ __forceinline__ void signal_counter(uint32_t* counter, int sync_thread, bool release_add = false) {
    __syncthreads();
    if (threadIdx.x == sync_thread) {
        if (release_add) {
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
        } else {
            __threadfence();
            atomicAdd(counter, 1u);
        }
    }
}

// kFlagBlockFlags: the same dependency as one flag per block. signal_flag stores the launch's
// epoch to flags[b] with release semantics (after the block barrier, which makes the block's
// writes the storing thread's); wait_flags has the sync thread's warp poll all g flags (each
// lane g / 32 of them) with relaxed loads, which can all be in flight at once (an acquire
// load holds back the loads after it), until every one has reached the epoch, then orders
// with one acquire fence. No atomics: the counter version serialises g increments on one L2
// line.
__device__ __forceinline__ void signal_flag(uint32_t* flags, uint32_t epoch, int sync_thread) {
    __syncthreads();
    if (threadIdx.x == sync_thread)
        asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(flags + blockIdx.x), "r"(epoch) : "memory");
}

__device__ __forceinline__ void wait_flags(const uint32_t* flags, uint32_t epoch, int sync_thread) {
    if ((threadIdx.x >> 5) == (sync_thread >> 5)) {
        const int lane = threadIdx.x & 31;
        bool done = false;
        while (!done) {
            bool mine = true;
            for (int b = lane; b < (int)gridDim.x; b += 32) mine = (ld_relaxed(flags + b) >= epoch) && mine;
            done = __all_sync(0xffffffffu, mine);
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
    __syncthreads();
}

// Nanoseconds of the global timer (for MkArgs.trace).
__device__ __forceinline__ uint64_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ float ld_cg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float4 ld_cg4(const float* p) { return __ldcg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ uint32_t ld_cg_u32(const uint32_t* p) { return __ldcg(p); }

// Deterministic block sum (fixed shuffle tree, warps added in order); every thread gets it.
// `scratch` holds kWarps floats; the call contains two block barriers.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kWarps; ++i) total += scratch[i];
    __syncthreads();
    return total;
}

// Slice [lo, hi) of n items for block b of g (balanced, 64-bit safe).
__device__ __forceinline__ void block_slice(int n, int b, int g, int& lo, int& hi) {
    lo = (int)(((long long)n * b) / g);
    hi = (int)(((long long)n * (b + 1)) / g);
}

}  // namespace qt_mk
