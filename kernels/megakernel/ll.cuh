/*
 * kFlagLL: dependencies carried by the data (the "LL" protocol of NCCL's low-latency path).
 *
 * Every activation a later op of the same launch reads is stored twice: as the f32 the
 * other paths read (the host, later launches, the counter protocol), and as one 64-bit word
 * {tag << 32 | value bits} in the arena's LL twin (MkArgs.ll; the code of a slot in
 * MkArgs.ll_codes). A 64-bit aligned store is single-copy atomic, so a reader that sees the
 * tag it expects also sees the value stored with it: it polls the words of its input until
 * every one carries the producer's tag, and has its input. This replaces, per op, the
 * producer's barrier + fence + atomic and the reader's counter poll + fence + barrier + input
 * load (two dependent L2 round trips and a fence) by one polled load.
 *
 * Tags are epoch * total_ops + op + 1: unique within a request (epochs count its launches;
 * the twin is zeroed with the counters when the request starts, so a previous request's
 * words never match). An input whose producer is not among this launch's ops [first_op, i)
 * was written before the launch and is read the plain way.
 *
 * Ordering beyond the words themselves: an op overwrites a buffer only after reading inputs
 * that depend on every reader of that buffer's previous contents (each op's output is a
 * function of all of its input row, and every row of a buffer is read by the next op), so
 * write-after-read needs no barrier either. The talker sampler's stop decision is written
 * before its code word, which it stores with release semantics; the op that checks it reads
 * the code word with acquire semantics first.
 */
#pragma once
#include "megakernel/layout.cuh"

namespace qt_mk {

typedef unsigned long long ll_word_t;

__device__ __forceinline__ bool ll_on(const MkArgs& a) { return (a.flags & kFlagLL) != 0; }

// The tag op p's outputs carry in this launch.
__device__ __forceinline__ uint32_t ll_tag(const MkArgs& a, int p) {
    return a.epoch * (uint32_t)a.total_ops + (uint32_t)p + 1u;
}

// The tag op i polls for an input that op p produced, or 0 where it reads it plainly (LL off,
// or p is not among this launch's ops before i).
__device__ __forceinline__ uint32_t ll_in_tag(const MkArgs& a, int p, int i) {
    return ll_on(a) && p >= a.first_op && p < i ? ll_tag(a, p) : 0u;
}

__device__ __forceinline__ ll_word_t* ll_word(const MkArgs& a, const float* p) {
    return a.ll + (p - a.ll_origin);
}

__device__ __forceinline__ ll_word_t ld_ll(const ll_word_t* p) {
    ll_word_t v;
    asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ ll_word_t ld_ll_acquire(const ll_word_t* p) {
    ll_word_t v;
    asm volatile("ld.acquire.gpu.global.b64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ ll_word_t ll_pack(float v, uint32_t tag) {
    return ((ll_word_t)tag << 32) | (ll_word_t)__float_as_uint(v);
}

__device__ __forceinline__ uint32_t ll_tag_of(ll_word_t w) { return (uint32_t)(w >> 32); }
__device__ __forceinline__ float ll_value(ll_word_t w) { return __uint_as_float((uint32_t)w); }

// Stores an activation: the f32, and with `tag` != 0 its LL word.
__device__ __forceinline__ void out_store(const MkArgs& a, float* p, float v, uint32_t tag) {
    *p = v;
    if (tag != 0u) asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(ll_word(a, p)), "l"(ll_pack(v, tag)) : "memory");
}

// One float of an input: polled until it carries `tag`, or read plainly when tag is 0.
__device__ __forceinline__ float ll_read(const MkArgs& a, const float* p, uint32_t tag) {
    if (tag == 0u) return __ldcg(p);
    const ll_word_t* w = ll_word(a, p);
    ll_word_t v = ld_ll(w);
    while (ll_tag_of(v) != tag) v = ld_ll(w);
    return ll_value(v);
}

// Block-wide: n floats gathered into shared memory, element e from src(e) to dst(e), polled
// until every word carries `tag` (tag != 0). kLLBatch loads per thread are in flight at once;
// only the words still missing are loaded again. The caller's barrier publishes dst.
constexpr int kLLBatch = 4;
template <typename Src, typename Dst>
__device__ __forceinline__ void ll_gather(const MkArgs& a, int n, uint32_t tag, Src src, Dst dst) {
    for (int base = 0; base < n; base += kLLBatch * kThreads) {
        ll_word_t v[kLLBatch];
        uint32_t pending = 0;
#pragma unroll
        for (int t = 0; t < kLLBatch; ++t) {
            const int e = base + threadIdx.x + t * kThreads;
            if (e < n) {
                v[t] = ld_ll(ll_word(a, src(e)));
                pending |= 1u << t;
            }
        }
        for (;;) {
            uint32_t missing = 0;
#pragma unroll
            for (int t = 0; t < kLLBatch; ++t)
                if (((pending >> t) & 1u) && ll_tag_of(v[t]) != tag) missing |= 1u << t;
            if (missing == 0) break;
#pragma unroll
            for (int t = 0; t < kLLBatch; ++t)
                if ((missing >> t) & 1u) v[t] = ld_ll(ll_word(a, src(base + threadIdx.x + t * kThreads)));
            pending = missing;
        }
#pragma unroll
        for (int t = 0; t < kLLBatch; ++t) {
            const int e = base + threadIdx.x + t * kThreads;
            if (e < n) *dst(e) = ll_value(v[t]);
        }
    }
}

// The code of `slot`: polled (tag != 0, acquire: the stop decision written before it is
// visible after it) or read plainly from the frame state.
__device__ __forceinline__ uint32_t ll_code(const MkArgs& a, int slot, uint32_t tag) {
    if (tag == 0u) return __ldcg(a.state->codes + slot);
    const ll_word_t* w = a.ll_codes + slot;
    ll_word_t v = ld_ll_acquire(w);
    while (ll_tag_of(v) != tag) v = ld_ll_acquire(w);
    return (uint32_t)v;
}

// The sampler's code word, stored with release semantics after the frame state it decided.
__device__ __forceinline__ void ll_code_store(const MkArgs& a, int slot, uint32_t code, uint32_t tag) {
    const ll_word_t w = ((ll_word_t)tag << 32) | (ll_word_t)code;
    asm volatile("st.release.gpu.global.b64 [%0], %1;" ::"l"(a.ll_codes + slot), "l"(w) : "memory");
}

}  // namespace qt_mk
