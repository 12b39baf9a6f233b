/*
 * RMSNorm over rows (optionally fused with the residual add), and the per-head QK-norm +
 * rotary embedding of one attention layer.
 *
 * qt_rms_norm
 *   Math    if residual: x[r, :] += residual[r, :] (written back: x is the residual stream)
 *           y[r, i] = x[r, i] * (1 / sqrt(mean_i(x[r, :]^2) + eps)) * w[i]
 *   Layout  x, residual, y: f32 [rows, dim] (row stride dim); w: bf16 [dim]. y may equal x
 *           (in place: each thread reads an element before it writes it); residual must not
 *           overlap x or y.
 *   Launch  grid = rows, blockDim = 256 (any multiple of 32 up to 1024 works), no dynamic
 *           shared memory. The row is read twice (sum of squares, then scale): from L1/L2
 *           the second time (rows are at most a few KB).
 *   Precision f32; the sum of squares is a per-thread chain, a fixed shuffle tree and a
 *           fixed cross-warp order (deterministic); the CPU backend sums sequentially, so the
 *           two agree to f32 rounding (~1e-7 relative).
 *
 * qt_head_norm_rope
 *   Math    For every row r (position first_position + r) and every head of q (heads_q) and k
 *           (heads_k), optionally RMS-normalise the head vector with its weight (q_norm or
 *           k_norm, bf16 [head_dim]; Qwen3 QK-norm), then optionally apply NeoX rotary
 *           embedding: with half = head_dim / 2, a = v[i], b = v[i + half], i < half,
 *             v[i] = a cos(p f_i) - b sin(p f_i),  v[i + half] = b cos(p f_i) + a sin(p f_i),
 *           f_i = inv_freq[i] (host-computed exactly as the CPU backend does, passed by value).
 *   Layout  q: f32 [rows, heads_q, head_dim], k: f32 [rows, heads_k, head_dim], in place.
 *           k may be NULL with heads_k = 0 (the same kernel serves the standalone ops).
 *   Launch  blockDim = 256 (8 warps), grid = ceil(rows * (heads_q + heads_k) / 8); one warp per
 *           head vector; head_dim even and <= 256. The normalised head goes through 1 KB of
 *           shared memory per warp so each lane can read its rotary partner (any head_dim).
 *   Precision f32, sincosf (full-range accurate), angle = f32(p) * f_i as torch computes it.
 */
#include "common.cuh"

namespace qt_norm {

constexpr int kMaxHeadDim = 256;

struct InvFreq {
    float f[kMaxHeadDim / 2];
};


}  // namespace qt_norm

extern "C" __global__ void qt_rms_norm(float* x, const float* __restrict__ residual,
                                       const __nv_bfloat16* __restrict__ w, float* y, int dim, float eps) {
    float* xr = x + (size_t)blockIdx.x * dim;
    float* yr = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    if (residual != nullptr) {
        const float* rr = residual + (size_t)blockIdx.x * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            const float v = xr[i] + rr[i];
            xr[i] = v;
            ss = fmaf(v, v, ss);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    }
    const float scale = 1.0f / sqrtf(qt::block_sum(ss) / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * __bfloat162float(w[i]);
}

extern "C" __global__ void __launch_bounds__(256)
    qt_head_norm_rope(float* __restrict__ q, float* __restrict__ k, int rows, int heads_q, int heads_k, int head_dim,
                      const __nv_bfloat16* __restrict__ q_norm, const __nv_bfloat16* __restrict__ k_norm, float eps,
                      int first_position, int apply_rope, const qt_norm::InvFreq inv_freq) {
    __shared__ float head[8][qt_norm::kMaxHeadDim];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int item = blockIdx.x * 8 + warp;
    const int per_row = heads_q + heads_k;
    if (item >= rows * per_row) return;  // whole warps only: no block barrier below
    const int r = item / per_row, h = item % per_row;
    const bool is_q = h < heads_q;
    float* v = is_q ? q + ((size_t)r * heads_q + h) * head_dim : k + ((size_t)r * heads_k + (h - heads_q)) * head_dim;
    const __nv_bfloat16* nw = is_q ? q_norm : k_norm;

    float* sh = head[warp];
    float ss = 0.0f;
    for (int i = lane; i < head_dim; i += 32) {
        const float a = v[i];
        sh[i] = a;
        ss = fmaf(a, a, ss);
    }
    if (nw != nullptr) {
        const float scale = 1.0f / sqrtf(qt::warp_sum(ss) / (float)head_dim + eps);
        for (int i = lane; i < head_dim; i += 32) sh[i] = sh[i] * scale * __bfloat162float(nw[i]);
    }
    __syncwarp();
    if (apply_rope) {
        const int half = head_dim >> 1;
        const float p = (float)(first_position + r);
        for (int i = lane; i < head_dim; i += 32) {
            const int j = i < half ? i : i - half;
            float s, c;
            sincosf(inv_freq.f[j] * p, &s, &c);
            v[i] = i < half ? sh[i] * c - sh[i + half] * s : sh[i] * c + sh[j] * s;
        }
    } else {
        for (int i = lane; i < head_dim; i += 32) v[i] = sh[i];
    }
}
