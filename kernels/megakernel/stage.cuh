/*
 * Staging an op's constants (RMSNorm weights, QK-norm weights, rotary frequencies) into shared
 * memory across the op's wait.
 *
 * Why     Read after the wait, each of these is a dependent global load, and the weight
 *         stream (gigabytes per frame) has long evicted them from L2: a DRAM round trip on
 *         the critical path of every op that uses them (the traces: ~1.7 us more prologue for
 *         a matvec with a fused norm than without). They do not depend on anything the grid
 *         computes, so every thread loads its words into registers BEFORE the wait (the loads
 *         land while the block spins) and stores them to shared memory after it.
 * Layout  A matvec: norm_w [k] bf16. An attention op: inv_freq [hd / 2] f32, then q_norm [hd]
 *         bf16, then k_norm [hd] bf16 (hd / 2 words each; a missing norm leaves its words
 *         unused). Ops whose constants do not fit kStageWords, or are not 4-byte aligned,
 *         are not staged (stage.total == 0) and read global memory as before.
 */
#pragma once
#include "megakernel/layout.cuh"

namespace qt_mk {

constexpr int kStagePerThread = 4;
constexpr int kStageWords = kStagePerThread * kThreads;  // 4 KB: bf16 norm weights up to k = 2048

// Up to 3 arrays of 32-bit words, concatenated in order.
struct Stage {
    const uint32_t* src[3];
    int n[3];
    int total;
};

__device__ __forceinline__ bool aligned4(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 3) == 0; }

__device__ __forceinline__ Stage stage_of(const MkOp& op) {
    Stage st{};
    if (op.kind == kOpMatvec && op.norm_w != nullptr) {
        if ((op.k & 1) != 0 || op.k / 2 > kStageWords || !aligned4(op.norm_w)) return st;
        st.src[0] = reinterpret_cast<const uint32_t*>(op.norm_w);
        st.n[0] = op.k / 2;
    } else if (op.kind == kOpAttention) {
        const int half = op.head_dim / 2;
        if ((op.head_dim & 1) != 0 || 3 * half > kStageWords || !aligned4(op.inv_freq) ||
            (op.q_norm != nullptr && !aligned4(op.q_norm)) || (op.k_norm != nullptr && !aligned4(op.k_norm)))
            return st;
        st.src[0] = reinterpret_cast<const uint32_t*>(op.inv_freq);
        st.n[0] = half;
        // A missing norm still takes its place (its words are never read).
        st.src[1] = op.q_norm != nullptr ? reinterpret_cast<const uint32_t*>(op.q_norm) : nullptr;
        st.n[1] = half;
        st.src[2] = op.k_norm != nullptr ? reinterpret_cast<const uint32_t*>(op.k_norm) : nullptr;
        st.n[2] = half;
    } else {
        return st;
    }
    st.total = st.n[0] + st.n[1] + st.n[2];
    return st;
}

// Word w of the concatenation: its source, or null where nothing is to be loaded.
__device__ __forceinline__ const uint32_t* stage_word(const Stage& st, int w) {
    if (w < st.n[0]) return st.src[0] + w;
    w -= st.n[0];
    if (w < st.n[1]) return st.src[1] != nullptr ? st.src[1] + w : nullptr;
    w -= st.n[1];
    return st.src[2] != nullptr ? st.src[2] + w : nullptr;
}

// Issues this thread's loads (words threadIdx.x + i * kThreads). The values are waited for
// only where stage_store uses them.
__device__ __forceinline__ void stage_load(const Stage& st, uint32_t (&v)[kStagePerThread]) {
#pragma unroll
    for (int i = 0; i < kStagePerThread; ++i) {
        const int w = threadIdx.x + i * kThreads;
        const uint32_t* p = w < st.total ? stage_word(st, w) : nullptr;
        v[i] = p != nullptr ? __ldg(p) : 0u;
    }
}

// Stores this thread's words; a block barrier must follow before any thread reads them.
__device__ __forceinline__ void stage_store(const Stage& st, const uint32_t (&v)[kStagePerThread], uint32_t* consts) {
#pragma unroll
    for (int i = 0; i < kStagePerThread; ++i) {
        const int w = threadIdx.x + i * kThreads;
        if (w < st.total) consts[w] = v[i];
    }
}

}  // namespace qt_mk
