/*
 * Token selection on the device, bit-identical to the host sampler (src/model/sampling.rs),
 * run by one block of kThreads threads over logits in shared memory.
 *
 * Chain  talker: repetition penalty over the codebook-0 ids seen so far (s < 0 ? s * p : s / p,
 *        once per id), EOS masked while fewer than min_new_tokens tokens exist, ids in
 *        [suppress_start, suppress_end) except EOS masked; then when sampling: temperature
 *        (s / t), top-k (mask s < k-th largest, ties kept), top-p (ascending (score, id)
 *        order, cumulative probability in double, mask while it stays <= 1 - top_p, the
 *        largest always kept); then the canonical draw (or argmax when greedy).
 *        code predictor: only the warpers and the draw.
 * Exactness  Every float operation that decides a pick is the host's, in the host's order:
 *        __fmul_rn / __fdiv_rn / __fadd_rn (no FMA contraction), the same canonical_exp
 *        polynomial, sequential sums where the host sums sequentially (one thread, over the
 *        compacted non-zero weights in the host's order: adding a zero never changes an f32
 *        sum). Parallel steps only compute values that do not depend on order (per-element
 *        transforms, max, counts, the radix select of the k-th largest key).
 * Random Philox4x32-10 keyed by the request seed, counter (frame, slot, 0, 0); the uniform is
 *        (word0 >> 8) * 2^-24, as Philox::uniform on the host.
 * NaN    Logits are never NaN from healthy weights. With a NaN present the result is still a
 *        valid id (argmax takes the first NaN, as the host does) but exact agreement with the
 *        host is only promised for NaN-free inputs.
 */
#pragma once
#include "megakernel/layout.cuh"

namespace qt_mk {

// ---- Philox4x32-10 and the uniform -----------------------------------------------------------

__device__ __forceinline__ uint32_t philox_word0(uint32_t k0, uint32_t k1, uint32_t frame, uint32_t slot) {
    uint32_t c0 = frame, c1 = slot, c2 = 0, c3 = 0;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint32_t lo0 = 0xD2511F53u * c0, hi0 = __umulhi(0xD2511F53u, c0);
        const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = __umulhi(0xCD9E8D57u, c2);
        const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
    }
    return c0;
}

__device__ __forceinline__ float philox_uniform(uint32_t seed_lo, uint32_t seed_hi, uint32_t frame, uint32_t slot) {
    return (float)(philox_word0(seed_lo, seed_hi, frame, slot) >> 8) * (1.0f / 16777216.0f);
}

// ---- canonical_exp: exp(x) for x <= 0 from single roundings (sampling.rs) -------------------

__device__ __forceinline__ float canonical_exp(float x) {
    if (isnan(x) || x < -86.0f) return 0.0f;
    const float k = floorf(__fadd_rn(__fmul_rn(x, 1.44269504088896340736f), 0.5f));
    const float r = __fsub_rn(__fsub_rn(x, __fmul_rn(k, 355.0f / 512.0f)), __fmul_rn(k, -2.1219444e-4f));
    float p = 1.9875691e-4f;
    p = __fadd_rn(__fmul_rn(p, r), 1.3981999e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 8.333452e-3f);
    p = __fadd_rn(__fmul_rn(p, r), 4.1665796e-2f);
    p = __fadd_rn(__fmul_rn(p, r), 1.6666666e-1f);
    p = __fadd_rn(__fmul_rn(p, r), 0.5f);
    const float y = __fadd_rn(__fadd_rn(__fmul_rn(p, __fmul_rn(r, r)), r), 1.0f);
    return __fmul_rn(y, __int_as_float(((int)k + 127) << 23));
}

// ---- block helpers -----------------------------------------------------------------------------

struct SampleSmem {
    float* s;        // [n] scores, processed in place
    float* w;        // [n] compacted weights
    int* id;         // [n] compacted ids
    int* rank;       // [n] top-p order
    int* hist;       // [256] radix histogram / scan scratch
    float* fscratch; // [kThreads]
    int* iscratch;   // [kThreads + 8]
};

// Ascending total order key of a float (as f32::total_cmp).
__device__ __forceinline__ uint32_t total_key(float f) {
    const uint32_t b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_total_key(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = scratch[0];
    for (int i = 1; i < kWarps; ++i) m = fmaxf(m, scratch[i]);
    __syncthreads();
    return m;
}

// Inclusive prefix sum of `v` over threads in thread order (integer: exact in any order);
// writes the block total to *total. Uses iscratch[0 .. kWarps).
__device__ __forceinline__ int block_inclusive_scan(int v, int* iscratch, int* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += y;
    }
    if (lane == 31) iscratch[warp] = v;
    __syncthreads();
    int before = 0, all = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        const int c = iscratch[w];
        before += w < warp ? c : 0;
        all += c;
    }
    __syncthreads();
    *total = all;
    return before + v;
}

__device__ __forceinline__ int block_exclusive_scan(int count, int* iscratch, int* total) {
    return block_inclusive_scan(count, iscratch, total) - count;
}

// The k-th largest score (duplicates counted) by a 4-pass radix select over total-order keys.
__device__ float kth_largest(const float* s, int n, int k, int* hist, int* iscratch) {
    static_assert(kThreads == 256, "one thread per radix bin");
    uint32_t prefix = 0, mask = 0;
    int remaining = k;
    __shared__ int chosen_bin, chosen_remaining;
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        for (int i = threadIdx.x; i < 256; i += kThreads) hist[i] = 0;
        __syncthreads();
        // Logits cluster in a few top-byte bins, so lanes of a warp that hit the same bin add
        // their count with one atomic (the leader of __match_any_sync's group), not 32.
        for (int base = 0; base < n; base += kThreads) {
            const int i = base + threadIdx.x;
            const uint32_t key = i < n ? total_key(s[i]) : 0u;
            const bool hit = i < n && (key & mask) == prefix;
            const uint32_t bin = hit ? (key >> shift) & 255u : 256u + (threadIdx.x & 31);
            const uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (hit && (threadIdx.x & 31) == (uint32_t)(__ffs(peers) - 1)) atomicAdd(&hist[bin], __popc(peers));
        }
        __syncthreads();
        // Bins from the top (thread t holds bin 255 - t): the chosen bin is the first whose
        // inclusive count from the top reaches `remaining`.
        const int h = hist[255 - threadIdx.x];
        int unused;
        const int incl = block_inclusive_scan(h, iscratch, &unused);
        const int below = __syncthreads_count(incl < remaining);
        if ((int)threadIdx.x == below) {
            chosen_bin = 255 - below;
            chosen_remaining = remaining - (incl - h);
        }
        __syncthreads();
        prefix |= (uint32_t)chosen_bin << shift;
        mask |= 255u << shift;
        remaining = chosen_remaining;
        __syncthreads();
    }
    return from_total_key(prefix);
}

// Host `draw` over s[0..n): max, weights, sequential total, walk. Returns the id.
__device__ int draw_block(const SampleSmem& sm, int n, float uniform) {
    const int per = (n + kThreads - 1) / kThreads;
    const int lo = threadIdx.x * per, hi = min(n, lo + per);
    float mx = -INFINITY;
    for (int i = lo; i < hi; ++i) mx = fmaxf(mx, sm.s[i]);
    mx = block_max(mx, sm.fscratch);
    __shared__ int result;
    if (!isfinite(mx)) return -1;  // the caller falls back to argmax
    // Compact non-zero weights in id order (each thread owns a contiguous id range).
    int cnt = 0;
    for (int i = lo; i < hi; ++i) cnt += canonical_exp(__fsub_rn(sm.s[i], mx)) > 0.0f;
    int total_cnt;
    int off = block_exclusive_scan(cnt, sm.iscratch, &total_cnt);
    for (int i = lo; i < hi; ++i) {
        const float w = canonical_exp(__fsub_rn(sm.s[i], mx));
        if (w > 0.0f) {
            sm.w[off] = w;
            sm.id[off] = i;
            ++off;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int i = 0; i < total_cnt; ++i) total = __fadd_rn(total, sm.w[i]);
        const float target = __fmul_rn(uniform, total);
        float running = 0.0f;
        int pick = total_cnt > 0 ? sm.id[total_cnt - 1] : 0;
        for (int i = 0; i < total_cnt; ++i) {
            running = __fadd_rn(running, sm.w[i]);
            if (running > target) {
                pick = sm.id[i];
                break;
            }
        }
        result = pick;
    }
    __syncthreads();
    const int r = result;
    __syncthreads();
    return r;
}

// First index of the maximum; the first NaN wins; all -inf gives 0 (host `argmax`).
// Each thread scans a contiguous id range in order; thread 0 combines the threads in order
// (a later range wins only with a strictly larger value), which is the host's sequential scan.
__device__ int argmax_block(const float* s, int n, int* iscratch, float* fscratch) {
    const int per = (n + kThreads - 1) / kThreads;
    const int lo = threadIdx.x * per, hi = min(n, lo + per);
    int best = -1, nan_at = -1;
    float best_v = -INFINITY;
    for (int i = lo; i < hi; ++i) {
        const float v = s[i];
        if (isnan(v)) {
            nan_at = i;
            break;
        }
        if (v > best_v) {
            best_v = v;
            best = i;
        }
    }
    // (is NaN, index, value) of this range; combined earlier-with-later, which is associative:
    // a NaN on the left wins, else a NaN on the right, else the strictly larger value.
    int idx = nan_at >= 0 ? nan_at : best;
    int isn = nan_at >= 0;
    float val = best_v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int oi = __shfl_down_sync(0xffffffffu, idx, o);
        const int on = __shfl_down_sync(0xffffffffu, isn, o);
        const float ov = __shfl_down_sync(0xffffffffu, val, o);
        // Lanes whose partner is in range and aligned to this level combine (lane, lane + o).
        if ((lane & (2 * o - 1)) == 0 && lane + o < 32) {
            if (!isn && oi >= 0 && (on || idx < 0 || ov > val)) {
                idx = oi;
                isn = on;
                val = ov;
            }
        }
    }
    if (lane == 0) {
        iscratch[warp] = idx;
        iscratch[kWarps + warp] = isn;
        fscratch[warp] = val;
    }
    __syncthreads();
    __shared__ int result;
    if (threadIdx.x == 0) {
        int pi = -1, pn = 0;
        float pv = -INFINITY;
        for (int w = 0; w < kWarps; ++w) {
            const int oi = iscratch[w], on = iscratch[kWarps + w];
            const float ov = fscratch[w];
            if (!pn && oi >= 0 && (on || pi < 0 || ov > pv)) {
                pi = oi;
                pn = on;
                pv = ov;
            }
        }
        result = pi < 0 ? 0 : pi;
    }
    __syncthreads();
    const int r = result;
    __syncthreads();
    return r;
}

// Host apply_top_p on the survivors (s > -inf); s has no NaN.
__device__ void top_p_block(const SampleSmem& sm, int n, float cut) {
    const int per = (n + kThreads - 1) / kThreads;
    const int lo = threadIdx.x * per, hi = min(n, lo + per);
    int cnt = 0;
    for (int i = lo; i < hi; ++i) cnt += sm.s[i] > -INFINITY;
    int ns;
    int off = block_exclusive_scan(cnt, sm.iscratch, &ns);
    for (int i = lo; i < hi; ++i)
        if (sm.s[i] > -INFINITY) {
            sm.id[off] = i;
            sm.w[off] = sm.s[i];
            ++off;
        }
    __syncthreads();
    if (ns == 0) return;
    // Rank in ascending (score, id): survivors are already in id order.
    for (int i = threadIdx.x; i < ns; i += kThreads) {
        const float v = sm.w[i];
        int r = 0;
        for (int j2 = 0; j2 < ns; ++j2) {
            const float u = sm.w[j2];
            r += (u < v) || (u == v && j2 < i);
        }
        sm.rank[r] = i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const float mx = sm.w[sm.rank[ns - 1]];
        if (isfinite(mx)) {
            float sum = 0.0f;
            for (int t = 0; t < ns; ++t) sum = __fadd_rn(sum, canonical_exp(__fsub_rn(sm.w[sm.rank[t]], mx)));
            const float inv = __fdiv_rn(1.0f, sum);
            double cum = 0.0;
            for (int t = 0; t < ns - 1; ++t) {
                const int i = sm.rank[t];
                cum += (double)__fmul_rn(canonical_exp(__fsub_rn(sm.w[i], mx)), inv);
                if ((float)cum > cut) break;
                sm.s[sm.id[i]] = -INFINITY;
            }
        }
    }
    __syncthreads();
}

struct SampleRequest {
    int n;
    bool talker;
    MkTalkerSampler t;  // talker chain (t.s used for the warpers)
    MkSampler s;        // code-predictor warpers
    const uint32_t* seen;  // talker: bitmap of earlier codebook-0 ids
    int generated;         // talker: tokens generated before this one
    float uniform;
};

// Processes sm.s[0..n) in place and picks a code. Block-uniform; all threads return it.
__device__ int sample_block(const SampleSmem& sm, const SampleRequest& q) {
    const int n = q.n;
    // A copy, not a reference to one of two members: that would put q in local memory.
    const MkSampler w = q.talker ? q.t.s : q.s;
    if (q.talker) {
        const float pen = q.t.penalty;
        const int eos = q.t.eos;
        for (int i = threadIdx.x; i < n; i += kThreads) {
            float v = sm.s[i];
            if (pen != 1.0f && ((q.seen[i >> 5] >> (i & 31)) & 1u)) v = v < 0.0f ? __fmul_rn(v, pen) : __fdiv_rn(v, pen);
            if (i == eos && q.generated < q.t.min_new_tokens) v = -INFINITY;
            if (i >= q.t.suppress_start && i < q.t.suppress_end && i != eos) v = -INFINITY;
            sm.s[i] = v;
        }
        __syncthreads();
    }
    if (w.do_sample) {
        if (w.temperature != 1.0f) {
            for (int i = threadIdx.x; i < n; i += kThreads) sm.s[i] = __fdiv_rn(sm.s[i], w.temperature);
            __syncthreads();
        }
        if (w.top_k > 0 && w.top_k < n) {
            const float kth = kth_largest(sm.s, n, w.top_k, sm.hist, sm.iscratch);
            for (int i = threadIdx.x; i < n; i += kThreads)
                if (sm.s[i] < kth) sm.s[i] = -INFINITY;
            __syncthreads();
        }
        if (w.top_p < 1.0f && !isnan(w.top_p)) {
            // NaN scores: the host's sort puts them last, the max is NaN, nothing is removed.
            int has_nan = 0;
            for (int i = threadIdx.x; i < n; i += kThreads) has_nan |= isnan(sm.s[i]);
            has_nan = __syncthreads_or(has_nan);
            if (!has_nan) top_p_block(sm, n, w.top_p_cut);
        }
        const int d = draw_block(sm, n, q.uniform);
        if (d >= 0) return d;
    }
    return argmax_block(sm.s, n, sm.iscratch, sm.fscratch);
}

}  // namespace qt_mk
