/*
 * Causal grouped-query attention of a few new query rows over a KV cache (decode and
 * prefill), split over the key positions ("flash-decoding") so that a single query row still
 * fills the GPU, then a combine pass.
 *
 * Math     For query row r (position first_position + r) and query head h (KV head
 *          h / (heads / kv_heads)): s_p = scale * q[r, h, :] · K[p, kvh, :] for p <= first_position + r,
 *          out[r, h, :] = sum_p softmax(s)_p V[p, kvh, :]. Softmax in f32.
 * Layout   q: f32 [rows, heads, head_dim]. K, V: f32 [capacity, kv_heads, head_dim] (positions
 *          0..first_position + rows valid). out: f32 [rows, heads * head_dim].
 *          partial: f32 [rows, heads, splits, head_dim + 2] scratch (unnormalised sums, then
 *          the running max and the denominator), used when splits > 1.
 * Launch   qt_attention_split: grid = (heads, rows, splits), blockDim = 128 (4 warps), no
 *          dynamic shared memory. Block (h, r, s) covers positions [s * chunk, (s+1) * chunk)
 *          clipped to the causal limit; each warp takes every 4th position and keeps an online
 *          softmax (running max m, denominator l, accumulator over head_dim with lane i
 *          holding dims i, i + 32, ...: coalesced 128-byte loads of K and V rows); the 4
 *          warps merge through shared memory. With splits == 1 it writes `out` directly.
 *          Each warp loads the K and V rows of 4 positions at once before using them (one
 *          memory latency per 4 positions: a decode step is latency-bound, not bandwidth-bound).
 *          qt_attention_combine: grid = (heads, rows), blockDim = head_dim rounded up to 32:
 *          merges the splits' (m, l, acc) into out.
 * Precision f32 throughout, expf (not __expf). Online softmax rounds differently from the
 *          CPU's two-pass softmax: agreement ~1e-6 relative.
 * Bytes    Each block reads its chunk of K and V once (the two query heads of a KV head read
 *          the same rows; the second read usually hits L2).
 */
#include "common.cuh"

namespace qt_attention {

constexpr int kWarps = 4;
constexpr int kMaxJ = 8;  // head_dim <= 256: up to 8 dims per lane
constexpr int kGroup = 4;  // positions per warp whose loads are in flight together

}  // namespace qt_attention

extern "C" __global__ void __launch_bounds__(128)
    qt_attention_split(const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc,
                       float* __restrict__ out, float* __restrict__ partial, int heads, int kv_heads, int head_dim,
                       int first_position, int chunk, float scale) {
    using namespace qt_attention;
    const int h = blockIdx.x, r = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kvh = h / (heads / kv_heads);
    const int limit = first_position + r + 1;  // causal: positions 0..limit-1
    const int start = split * chunk;
    const int end = min(limit, start + chunk);
    const size_t kv_row = (size_t)kv_heads * head_dim;

    float qv[kMaxJ], acc[kMaxJ];
    const float* qr = q + ((size_t)r * heads + h) * head_dim;
#pragma unroll
    for (int j = 0; j < kMaxJ; ++j) {
        const int i = lane + 32 * j;
        qv[j] = i < head_dim ? qr[i] * scale : 0.0f;
        acc[j] = 0.0f;
    }
    // Positions in groups of kGroup per warp: the group's K and V rows are loaded together
    // (2 * kGroup independent 128-byte loads in flight) before any of them is used, so a warp
    // pays one memory latency per group instead of two per position.
    float m = -INFINITY, l = 0.0f;
    for (int p0 = start + warp; p0 < end; p0 += kWarps * kGroup) {
        float kv[kGroup][kMaxJ], vv[kGroup][kMaxJ];
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
            const int p = p0 + g * kWarps;
            const size_t base = (size_t)p * kv_row + (size_t)kvh * head_dim;
#pragma unroll
            for (int j = 0; j < kMaxJ; ++j) {
                const int i = lane + 32 * j;
                const bool ok = p < end && i < head_dim;
                kv[g][j] = ok ? kc[base + i] : 0.0f;
                vv[g][j] = ok ? vc[base + i] : 0.0f;
            }
        }
        float sc[kGroup];
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
            float d = 0.0f;
#pragma unroll
            for (int j = 0; j < kMaxJ; ++j) d = fmaf(qv[j], kv[g][j], d);
            sc[g] = qt::warp_sum(d);
        }
#pragma unroll
        for (int g = 0; g < kGroup; ++g) {
            if (p0 + g * kWarps >= end) break;  // uniform across the warp
            const float m_new = fmaxf(m, sc[g]);
            const float corr = expf(m - m_new);  // 0 on the first position (m = -inf)
            const float e = expf(sc[g] - m_new);
            l = l * corr + e;
#pragma unroll
            for (int j = 0; j < kMaxJ; ++j) acc[j] = fmaf(e, vv[g][j], acc[j] * corr);
            m = m_new;
        }
    }

    // Merge the 4 warps (a warp with no positions has m = -inf, l = 0, acc = 0).
    __shared__ float sm[kWarps], sl[kWarps], sacc[kWarps][kMaxJ * 32];
    if (lane == 0) sm[warp] = m, sl[warp] = l;
#pragma unroll
    for (int j = 0; j < kMaxJ; ++j) sacc[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    float M = sm[0];
    for (int w = 1; w < kWarps; ++w) M = fmaxf(M, sm[w]);
    float L = 0.0f, wgt[kWarps];
    for (int w = 0; w < kWarps; ++w) {
        wgt[w] = sm[w] == -INFINITY ? 0.0f : expf(sm[w] - M);
        L += sl[w] * wgt[w];
    }
    const size_t rh = (size_t)r * heads + h;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; w < kWarps; ++w) a += sacc[w][i] * wgt[w];
        if (splits == 1) {
            out[rh * head_dim + i] = a / L;
        } else {
            partial[(rh * splits + split) * (head_dim + 2) + i] = a;
        }
    }
    if (splits > 1 && threadIdx.x == 0) {
        float* tail = partial + (rh * splits + split) * (head_dim + 2) + head_dim;
        tail[0] = M;  // -inf when this split lies past the causal limit
        tail[1] = L;
    }
}

extern "C" __global__ void qt_attention_combine(const float* __restrict__ partial, float* __restrict__ out, int heads,
                                                int head_dim, int splits) {
    const int h = blockIdx.x, r = blockIdx.y;
    const size_t rh = (size_t)r * heads + h;
    const float* base = partial + rh * splits * (head_dim + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; ++s) M = fmaxf(M, base[s * (head_dim + 2) + head_dim]);
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        float a = 0.0f, L = 0.0f;
        for (int s = 0; s < splits; ++s) {
            const float* ps = base + s * (head_dim + 2);
            const float ms = ps[head_dim];
            if (ms == -INFINITY) continue;  // an empty split (past the causal limit)
            const float w = expf(ms - M);
            a += ps[i] * w;
            L += ps[head_dim + 1] * w;
        }
        out[rh * head_dim + i] = a / L;
    }
}

/*
 * The same attention for prompt rows: query tiles over shared-memory key tiles.
 *
 * Math     as qt_attention_split (causal GQA, scale, f32 softmax); out is written directly.
 * Launch   qt_attention_prefill: grid = (kv_heads, ceil(rows / (16 / group))), blockDim = 256
 *          (8 warps), static shared memory 41 KB; group = heads / kv_heads <= 16 and
 *          head_dim <= 128 (the host uses qt_attention_split otherwise). Block (g, t) takes the
 *          16 / group query rows of tile t for all `group` query heads of KV head g: 16 (row,
 *          head) queries or fewer, two per warp. It walks the keys in tiles of 32 positions up
 *          to its last row's causal limit, each K/V row read from global memory once per block
 *          (the decode kernel reads it once per query row and head: 62 µs per layer for a
 *          200-row 0.6B prefill, most of the prefill's time). Lane j scores position j of the
 *          tile (the dot product over head_dim in four independent chains), then each warp
 *          keeps an online softmax per query (running max, denominator, accumulator with lane
 *          i holding dims i, i + 32, ...).
 * Precision f32, expf; online softmax over tiles of 32 (the decode kernel's order differs):
 *          agreement with the CPU's two-pass softmax ~1e-6 relative.
 */
namespace qt_attention_tiles {

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kQueries = 16;  // (row, head) queries per block
constexpr int kPerWarp = kQueries / kWarps;
constexpr int kTile = 32;  // key positions per shared-memory tile: one per lane
constexpr int kMaxDim = 128;
constexpr int kDimsPerLane = kMaxDim / 32;

}  // namespace qt_attention_tiles

extern "C" __global__ void __launch_bounds__(qt_attention_tiles::kThreads)
    qt_attention_prefill(const float* __restrict__ q, const float* __restrict__ kc, const float* __restrict__ vc,
                         float* __restrict__ out, int heads, int kv_heads, int head_dim, int rows, int first_position,
                         float scale) {
    using namespace qt_attention_tiles;
    __shared__ float ks[kTile][kMaxDim + 1];  // +1: lane j reads row j, column d: distinct banks
    __shared__ float vs[kTile][kMaxDim];
    __shared__ float qs[kQueries][kMaxDim];
    const int group = heads / kv_heads;
    const int rows_per_block = kQueries / group;
    const int kvh = blockIdx.x;
    const int r0 = blockIdx.y * rows_per_block;
    const int block_rows = min(rows_per_block, rows - r0);
    const int nq = block_rows * group;  // query qi: row r0 + qi / group, head kvh * group + qi % group
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t kv_row = (size_t)kv_heads * head_dim;

    for (int e = threadIdx.x; e < kQueries * kMaxDim; e += kThreads) {
        const int qi = e / kMaxDim, d = e % kMaxDim;
        float v = 0.0f;
        if (qi < nq && d < head_dim) {
            const int r = r0 + qi / group, h = kvh * group + qi % group;
            v = q[((size_t)r * heads + h) * head_dim + d] * scale;
        }
        qs[qi][d] = v;
    }

    float m[kPerWarp], l[kPerWarp], acc[kPerWarp][kDimsPerLane];
#pragma unroll
    for (int t = 0; t < kPerWarp; ++t) {
        m[t] = -INFINITY, l[t] = 0.0f;
#pragma unroll
        for (int j = 0; j < kDimsPerLane; ++j) acc[t][j] = 0.0f;
    }
    const int len = first_position + r0 + block_rows;  // positions the block's last row sees
    for (int p0 = 0; p0 < len; p0 += kTile) {
        __syncthreads();  // the previous tile is consumed (and, the first time, q is stored)
        for (int e = threadIdx.x; e < kTile * kMaxDim; e += kThreads) {
            const int j = e / kMaxDim, d = e % kMaxDim, p = p0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (p < len && d < head_dim) {
                const size_t at = (size_t)p * kv_row + (size_t)kvh * head_dim + d;
                kv = kc[at], vv = vc[at];
            }
            ks[j][d] = kv, vs[j][d] = vv;
        }
        __syncthreads();
#pragma unroll
        for (int t = 0; t < kPerWarp; ++t) {
            const int qi = warp * kPerWarp + t;
            const int limit = first_position + r0 + qi / group + 1;  // causal: positions < limit
            if (qi >= nq || p0 >= limit) continue;                   // uniform over the warp
            const int p = p0 + lane;
            float s = -INFINITY;
            if (p < limit) {
                float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
                for (int d = 0; d < head_dim; d += 4) {  // head_dim % 4 == 0 (host check)
                    d0 = fmaf(qs[qi][d], ks[lane][d], d0);
                    d1 = fmaf(qs[qi][d + 1], ks[lane][d + 1], d1);
                    d2 = fmaf(qs[qi][d + 2], ks[lane][d + 2], d2);
                    d3 = fmaf(qs[qi][d + 3], ks[lane][d + 3], d3);
                }
                s = (d0 + d1) + (d2 + d3);
            }
            // Position p0 < limit is valid, so the tile's max (and m_new) is finite.
            const float m_new = fmaxf(m[t], qt::warp_max(s));
            const float corr = expf(m[t] - m_new);  // 0 on the first tile (m = -inf)
            const float pr = p < limit ? expf(s - m_new) : 0.0f;
            l[t] = l[t] * corr + qt::warp_sum(pr);
#pragma unroll
            for (int j = 0; j < kDimsPerLane; ++j) acc[t][j] *= corr;
            const int valid = min(kTile, limit - p0);
            for (int jj = 0; jj < valid; ++jj) {
                const float pj = __shfl_sync(0xffffffffu, pr, jj);
#pragma unroll
                for (int j = 0; j < kDimsPerLane; ++j) acc[t][j] = fmaf(pj, vs[jj][lane + 32 * j], acc[t][j]);
            }
            m[t] = m_new;
        }
    }
#pragma unroll
    for (int t = 0; t < kPerWarp; ++t) {
        const int qi = warp * kPerWarp + t;
        if (qi >= nq) continue;
        const int r = r0 + qi / group, h = kvh * group + qi % group;
        float* o = out + ((size_t)r * heads + h) * head_dim;
        const float inv = 1.0f / l[t];
#pragma unroll
        for (int j = 0; j < kDimsPerLane; ++j) {
            const int d = lane + 32 * j;
            if (d < head_dim) o[d] = acc[t][j] * inv;
        }
    }
}
