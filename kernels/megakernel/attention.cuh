/*
 * Attention op: QK-norm, RoPE, KV append and causal GQA attention of 1-2 new rows.
 *
 * Math     Rows r < rows sit at positions p0 + r. For KV head j and its query heads
 *          h = j * grp .. (j + 1) * grp - 1 (grp = heads / kv_heads): q_h and k_j are
 *          RMS-normalised over head_dim with q_norm / k_norm, then rotated (NeoX rotate_half,
 *          angle = f32(position) * inv_freq[i], sincosf); v_j is used as projected.
 *          out[r][h] = sum_{p <= p0 + r} softmax_p(scale * q_h . K[p]) V[p], scale = 1/sqrt(hd).
 * Work     Units (j, c): KV head j, position chunk c of C. C grows with the context
 *          (about 16 positions per unit) up to max_chunks and the grid / kv_heads, so a long
 *          context is read by many blocks at once. Every unit normalises and rotates its own
 *          copy of the new rows (cheap) and uses those values for the new positions, so no
 *          unit reads a cache row another block is writing; unit (j, C - 1) writes them to the
 *          cache. Warps take positions round-robin (kPosBatch loaded at once), lanes hold 4
 *          consecutive dims (float4 loads of K and V rows) per 128 dims, online softmax per
 *          (row, query head).
 *          C = 1: the unit writes out directly. C > 1: partial (acc, max, sum) per chunk to
 *          scratch; the last unit of head j to arrive (atomic counter, reset by it) merges the
 *          C partials in chunk order and writes out: no extra grid-wide dependency.
 * Precision f32, expf/sincosf/sqrtf (accurate versions). Online softmax and chunked merging
 *          round differently from the CPU's two-pass softmax: ~1e-6 relative.
 */
#pragma once
#include "common.cuh"
#include "megakernel/ll.cuh"
#include "megakernel/sync.cuh"

namespace qt_mk {

constexpr int kPairsPerPass = 4;  // (row, query head) pairs whose state a warp keeps at once
constexpr int kDimsPerLane = kMaxHeadDim / 32;  // 8 (two float4 groups)
constexpr int kPosBatch = 3;  // positions a warp loads before it uses them

__device__ __forceinline__ int attention_chunks(const MkOp& op, int total, int g) {
    const int cmax = max(1, min(op.max_chunks, g / op.kv_heads));
    int c = min(cmax, (total + 15) / 16);
    c = max(c, 1);
    const int chunk = (total + c - 1) / c;
    return (total + chunk - 1) / chunk;
}

// Normalises (optional) and rotates one head vector v[hd] in shared memory; one warp.
__device__ __forceinline__ void norm_rope_warp(float* v, const bf16* w, float eps, int hd, const float* inv_freq,
                                               float position) {
    const int lane = threadIdx.x & 31;
    float vals[kDimsPerLane];
    float ss = 0.0f;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
        const int i = lane + 32 * t;
        vals[t] = i < hd ? v[i] : 0.0f;
        ss = fmaf(vals[t], vals[t], ss);
    }
    if (w != nullptr) {
        const float scale = 1.0f / sqrtf(qt::warp_sum(ss) / (float)hd + eps);
#pragma unroll
        for (int t = 0; t < kDimsPerLane; ++t) {
            const int i = lane + 32 * t;
            if (i < hd) v[i] = vals[t] * scale * __bfloat162float(w[i]);
        }
    }
    __syncwarp();
    const int half = hd >> 1;
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
        const int i = lane + 32 * t;
        if (i < hd) {
            const int j = i < half ? i : i - half;
            float s, c;
            sincosf(inv_freq[j] * position, &s, &c);
            vals[t] = i < half ? v[i] * c - v[i + half] * s : v[i] * c + v[j] * s;
        }
    }
    __syncwarp();
#pragma unroll
    for (int t = 0; t < kDimsPerLane; ++t) {
        const int i = lane + 32 * t;
        if (i < hd) v[i] = vals[t];
    }
    __syncwarp();
}

// Lane-local 4-dim groups of a head vector: dims 4 * (lane + 32 t) .. + 3, t < 2.
__device__ __forceinline__ void load_head4(const float* src, int hd, bool coherent, float out[kDimsPerLane]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int t = 0; t < 2; ++t) {
        const int d = 4 * (lane + 32 * t);
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (d < hd) v = coherent ? ld_cg4(src + d) : *reinterpret_cast<const float4*>(src + d);
        out[4 * t] = v.x;
        out[4 * t + 1] = v.y;
        out[4 * t + 2] = v.z;
        out[4 * t + 3] = v.w;
    }
}

struct AttentionSmem {
    float* q;      // [rows][grp][hd]
    float* k;      // [rows][hd]
    float* v;      // [rows][hd]
    float* merge;  // [kWarps][kPairsPerPass][hd + 2]
    int* flag;
    // The op's constants: global memory, or their copies staged in shared memory (stage.cuh).
    const float* inv_freq;
    const bf16* q_norm;
    const bf16* k_norm;
};

// `index`: the op's place in the program (kFlagLL tags).
__device__ void run_attention(const MkOp& op, const MkArgs& a, const AttentionSmem& sm, int index) {
    const int b = blockIdx.x, g = gridDim.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int rows = op.rows, hd = op.head_dim, hq = op.heads, hkv = op.kv_heads, grp = hq / hkv;
    const int p0 = op.position >= 0 ? op.position : a.talker_position;
    const int total = p0 + rows;
    const int chunks = attention_chunks(op, total, g);
    const int chunk = (total + chunks - 1) / chunks;
    if (b >= hkv * chunks) return;
    const int j = b / chunks, c = b % chunks;
    const int width = (hq + 2 * hkv) * hd;
    const int kvw = hkv * hd;

    // 1. New rows of this KV head's group: q heads, k, v.
    const float* inv_freq = sm.inv_freq;
    const bf16 *q_norm = sm.q_norm, *k_norm = sm.k_norm;
    const uint32_t in_tag = ll_in_tag(a, op.src_op[0], index);
    const uint32_t out_tag = ll_on(a) ? ll_tag(a, index) : 0u;
    if (in_tag != 0u) {
        // One gather over [rows][q heads of the group | k | v]: every poll in flight at once.
        const int per_row = (grp + 2) * hd;
        const float* qkv = op.qkv;
        float *q = sm.q, *k = sm.k, *v = sm.v;
        auto src = [=](int e) {
            const int r = e / per_row, c = e % per_row;
            const float* row = qkv + (size_t)r * width;
            if (c < grp * hd) return row + (size_t)j * grp * hd + c;
            if (c < (grp + 1) * hd) return row + (size_t)hq * hd + (size_t)j * hd + (c - grp * hd);
            return row + (size_t)(hq + hkv) * hd + (size_t)j * hd + (c - (grp + 1) * hd);
        };
        auto dst = [=](int e) {
            const int r = e / per_row, c = e % per_row;
            if (c < grp * hd) return q + ((size_t)r * grp) * hd + c;
            if (c < (grp + 1) * hd) return k + (size_t)r * hd + (c - grp * hd);
            return v + (size_t)r * hd + (c - (grp + 1) * hd);
        };
        ll_gather(a, rows * per_row, in_tag, src, dst);
    } else {
        for (int r = 0; r < rows; ++r) {
            const float* row = op.qkv + (size_t)r * width;
            for (int i = threadIdx.x; i < grp * hd; i += kThreads) sm.q[((size_t)r * grp) * hd + i] = ld_cg(row + (size_t)j * grp * hd + i);
            for (int i = threadIdx.x; i < hd; i += kThreads) {
                sm.k[(size_t)r * hd + i] = ld_cg(row + (size_t)hq * hd + (size_t)j * hd + i);
                sm.v[(size_t)r * hd + i] = ld_cg(row + (size_t)(hq + hkv) * hd + (size_t)j * hd + i);
            }
        }
    }
    __syncthreads();
    // 2. QK-norm + RoPE, one warp per head vector.
    for (int item = warp; item < rows * (grp + 1); item += kWarps) {
        const int r = item / (grp + 1), h = item % (grp + 1);
        float* vec = h < grp ? sm.q + ((size_t)r * grp + h) * hd : sm.k + (size_t)r * hd;
        norm_rope_warp(vec, h < grp ? q_norm : k_norm, op.eps, hd, inv_freq, (float)(p0 + r));
    }
    __syncthreads();
    // 3. The last chunk's unit appends the new keys and values.
    if (c == chunks - 1) {
        for (int r = 0; r < rows; ++r)
            for (int i = threadIdx.x; i < hd; i += kThreads) {
                op.k_cache[(size_t)(p0 + r) * kvw + (size_t)j * hd + i] = sm.k[(size_t)r * hd + i];
                op.v_cache[(size_t)(p0 + r) * kvw + (size_t)j * hd + i] = sm.v[(size_t)r * hd + i];
            }
    }

    // 4. Online softmax over this chunk's positions, kPairsPerPass (row, head) pairs at a time.
    const int cs = c * chunk, ce = min(total, cs + chunk);
    const float scale = 1.0f / sqrtf((float)hd);
    const int pairs = rows * grp;
    for (int pass = 0; pass < pairs; pass += kPairsPerPass) {
        const int np = min(kPairsPerPass, pairs - pass);
        float qv[kPairsPerPass][kDimsPerLane];
        float acc[kPairsPerPass][kDimsPerLane];
        float m[kPairsPerPass], l[kPairsPerPass];
        int limit[kPairsPerPass];
#pragma unroll
        for (int q = 0; q < kPairsPerPass; ++q) {
            const int pr = pass + q;
            const int r = q < np ? pr / grp : 0, h = q < np ? pr % grp : 0;
            load_head4(sm.q + ((size_t)r * grp + h) * hd, hd, false, qv[q]);
            limit[q] = q < np ? p0 + r : -1;  // causal: positions <= limit
            m[q] = -INFINITY;
            l[q] = 0.0f;
#pragma unroll
            for (int t = 0; t < kDimsPerLane; ++t) acc[q][t] = 0.0f;
        }
        // A warp takes positions warp, warp + kWarps, ...; it loads kPosBatch of them before
        // using any, so a chunk of up to kPosBatch * kWarps positions costs one round trip to
        // L2 rather than one per position.
        for (int pb = cs + warp; pb < ce; pb += kPosBatch * kWarps) {
            float kv[kPosBatch][kDimsPerLane], vv[kPosBatch][kDimsPerLane];
#pragma unroll
            for (int i = 0; i < kPosBatch; ++i) {
                const int p = pb + i * kWarps;
                if (p >= ce) {
#pragma unroll
                    for (int t = 0; t < kDimsPerLane; ++t) kv[i][t] = vv[i][t] = 0.0f;
                } else if (p >= p0) {
                    load_head4(sm.k + (size_t)(p - p0) * hd, hd, false, kv[i]);
                    load_head4(sm.v + (size_t)(p - p0) * hd, hd, false, vv[i]);
                } else {
                    load_head4(op.k_cache + (size_t)p * kvw + (size_t)j * hd, hd, true, kv[i]);
                    load_head4(op.v_cache + (size_t)p * kvw + (size_t)j * hd, hd, true, vv[i]);
                }
            }
#pragma unroll
            for (int i = 0; i < kPosBatch; ++i) {
                const int p = pb + i * kWarps;
                if (p >= ce) break;
#pragma unroll
                for (int q = 0; q < kPairsPerPass; ++q) {
                    float d = 0.0f;
#pragma unroll
                    for (int t = 0; t < kDimsPerLane; ++t) d = fmaf(qv[q][t], kv[i][t], d);
                    d = qt::warp_sum(d);
                    if (p <= limit[q]) {
                        const float s = d * scale;
                        const float mn = fmaxf(m[q], s);
                        const float corr = expf(m[q] - mn);  // m = -inf: 0
                        const float e = expf(s - mn);
                        l[q] = l[q] * corr + e;
#pragma unroll
                        for (int t = 0; t < kDimsPerLane; ++t) acc[q][t] = acc[q][t] * corr + e * vv[i][t];
                        m[q] = mn;
                    }
                }
            }
        }
        // Merge the 8 warps in warp order.
        const int stride = hd + 2;
#pragma unroll
        for (int q = 0; q < kPairsPerPass; ++q) {
            float* slot = sm.merge + ((size_t)warp * kPairsPerPass + q) * stride;
#pragma unroll
            for (int t = 0; t < 2; ++t) {
                const int d = 4 * (lane + 32 * t);
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    if (d + e < hd) slot[d + e] = acc[q][4 * t + e];
            }
            if (lane == 0) {
                slot[hd] = m[q];
                slot[hd + 1] = l[q];
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < np * hd; i += kThreads) {
            const int q = i / hd, d = i % hd;
            float mm = -INFINITY;
            for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, sm.merge[((size_t)w * kPairsPerPass + q) * stride + hd]);
            float ls = 0.0f, as = 0.0f;
            for (int w = 0; w < kWarps; ++w) {
                const float* slot = sm.merge + ((size_t)w * kPairsPerPass + q) * stride;
                const float f = slot[hd] == -INFINITY ? 0.0f : expf(slot[hd] - mm);
                ls += slot[hd + 1] * f;
                as += slot[d] * f;
            }
            const int pr = pass + q, r = pr / grp, h = j * grp + pr % grp;
            if (chunks == 1) {
                out_store(a, op.attn_out + (size_t)r * hq * hd + (size_t)h * hd + d, as / ls, out_tag);
            } else {
                float* part = op.partial + (((size_t)r * hq + h) * op.max_chunks + c) * stride;
                part[d] = as;
                if (d == 0) {
                    part[hd] = mm;
                    part[hd + 1] = ls;
                }
            }
        }
        __syncthreads();
    }
    if (chunks == 1) return;

    // 5. Last arriver of KV head j merges the chunks in order. The barrier then one thread's
    //    fence publishes the block's partials (the grid-barrier pattern of sync.cuh); the
    //    last arriver's fence after its increment orders its reads after the others' writes.
    const int st = sync_thread_of(a);
    __syncthreads();
    if (threadIdx.x == st) {
        __threadfence();
        const uint32_t old = atomicAdd(a.combine + op.combine_base + j, 1u);
        const bool last = old == (uint32_t)(chunks - 1);
        if (last) __threadfence();
        *sm.flag = last;
    }
    __syncthreads();
    if (!*sm.flag) return;
    const int stride = hd + 2;
    for (int i = threadIdx.x; i < pairs * hd; i += kThreads) {
        const int pr = i / hd, d = i % hd, r = pr / grp, h = j * grp + pr % grp;
        const float* base = op.partial + (((size_t)r * hq + h) * op.max_chunks) * stride;
        float mm = -INFINITY;
        for (int cc = 0; cc < chunks; ++cc) mm = fmaxf(mm, ld_cg(base + (size_t)cc * stride + hd));
        float ls = 0.0f, as = 0.0f;
        for (int cc = 0; cc < chunks; ++cc) {
            const float* part = base + (size_t)cc * stride;
            const float pm = ld_cg(part + hd);
            const float f = pm == -INFINITY ? 0.0f : expf(pm - mm);
            ls += ld_cg(part + hd + 1) * f;
            as += ld_cg(part + d) * f;
        }
        out_store(a, op.attn_out + (size_t)r * hq * hd + (size_t)h * hd + d, as / ls, out_tag);
    }
    if (threadIdx.x == st) atomicExch(a.combine + op.combine_base + j, 0u);
}

}  // namespace qt_mk
