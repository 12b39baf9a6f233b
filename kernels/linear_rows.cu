/*
 * BF16-weight matrix times a few f32 vectors: the decode-step `linear` (1 to 8 rows).
 *
 * Math     y[r, n] = (accumulate ? y[r, n] : 0) + sum_k W[n, k] * x[r, k] + (bias ? bias[n] : 0)
 *          for r < R (rows, 1..8, one entry point each), n < N (out features), k < K (in).
 *          PyTorch weights are [out, in], so this is `x · Wᵀ + b`; accumulate fuses the
 *          residual add of o_proj / down_proj into the product.
 * Layout   W: bf16 row-major [N, K]. x: f32 [R, K] (row stride K). y: f32 [R, N] (row stride
 *          N). bias: bf16 [N] or NULL. y must not overlap W, x or bias.
 * Launch   blockDim = 256 (8 warps), grid = ceil(N / (8 / WPR)), no dynamic shared memory.
 *          WPR = warps per weight row (1, 2 or 4). The 32 * WPR threads of a weight row
 *          stride over its columns and compute all R dot products from each weight load, so
 *          W is read from memory once whatever R is; each warp reduces with shuffles, and
 *          with WPR > 1 the row's warps combine through shared memory.
 * Loads    Fast path (K % 8 == 0, W and x 16-byte aligned; uniform over the grid): 16-byte
 *          chunks of W (8 bf16) with ld.global.nc.L1::no_allocate (streamed once), 4 chunks in
 *          flight per iteration, and the matching 8 x values per row as two float4 through
 *          the read-only path (x is reused by every weight row, so it stays in L1/L2).
 *          Otherwise a scalar loop (ragged shapes: only tiny test models take it).
 * Precision bf16 -> f32 is exact; products and sums are f32 FMAs in a fixed order (per-thread
 *          chain, fixed shuffle tree, fixed cross-warp order): deterministic for a shape and
 *          WPR, ~1e-7 relative to an f64 reference.
 */
#include "common.cuh"

namespace qt_linear_rows {

using qt::bf16_hi;
using qt::bf16_lo;
using qt::load_stream;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// acc + dot(8 bf16 of w, 8 f32 at x4[2i], x4[2i + 1]).
__device__ __forceinline__ float dot8(uint4 w, const float4* __restrict__ x4, int i, float acc) {
    const float4 a = __ldg(x4 + 2 * i);
    const float4 b = __ldg(x4 + 2 * i + 1);
    acc = fmaf(bf16_lo(w.x), a.x, acc);
    acc = fmaf(bf16_hi(w.x), a.y, acc);
    acc = fmaf(bf16_lo(w.y), a.z, acc);
    acc = fmaf(bf16_hi(w.y), a.w, acc);
    acc = fmaf(bf16_lo(w.z), b.x, acc);
    acc = fmaf(bf16_hi(w.z), b.y, acc);
    acc = fmaf(bf16_lo(w.w), b.z, acc);
    acc = fmaf(bf16_hi(w.w), b.w, acc);
    return acc;
}

template <int R, int WPR>
__device__ __forceinline__ void linear_rows(const __nv_bfloat16* __restrict__ W, const float* __restrict__ x,
                                            const __nv_bfloat16* __restrict__ bias, float* __restrict__ y, int N,
                                            int K, int accumulate) {
    static_assert(WPR == 1 || WPR == 2 || WPR == 4, "warps per row");
    static_assert(R >= 1 && R <= 8, "rows");
    constexpr int kRowsPerBlock = kWarps / WPR;
    constexpr int T = 32 * WPR;  // threads per weight row

    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int n = blockIdx.x * kRowsPerBlock + warp / WPR;
    const int t = (warp % WPR) * 32 + lane;

    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;

    if (n < N) {
        const __nv_bfloat16* wr = W + (size_t)n * (size_t)K;
        const bool vec = (K & 7) == 0 && ((reinterpret_cast<uintptr_t>(W) | reinterpret_cast<uintptr_t>(x)) & 15) == 0;
        if (vec) {
            const int n8 = K >> 3;
            const uint4* w4 = reinterpret_cast<const uint4*>(wr);
            int i = t;
            for (; i + 3 * T < n8; i += 4 * T) {
                const uint4 u0 = load_stream(w4 + i);
                const uint4 u1 = load_stream(w4 + i + T);
                const uint4 u2 = load_stream(w4 + i + 2 * T);
                const uint4 u3 = load_stream(w4 + i + 3 * T);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const float4* x4 = reinterpret_cast<const float4*>(x + (size_t)r * K);
                    float a = acc[r];
                    a = dot8(u0, x4, i, a);
                    a = dot8(u1, x4, i + T, a);
                    a = dot8(u2, x4, i + 2 * T, a);
                    a = dot8(u3, x4, i + 3 * T, a);
                    acc[r] = a;
                }
            }
            for (; i < n8; i += T) {
                const uint4 u = load_stream(w4 + i);
#pragma unroll
                for (int r = 0; r < R; ++r)
                    acc[r] = dot8(u, reinterpret_cast<const float4*>(x + (size_t)r * K), i, acc[r]);
            }
        } else {
            for (int c = t; c < K; c += T) {
                const float w = __bfloat162float(wr[c]);
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r] = fmaf(w, x[(size_t)r * K + c], acc[r]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = qt::warp_sum(acc[r]);

    if constexpr (WPR > 1) {
        __shared__ float part[R][kWarps];
        if (lane == 0) {
#pragma unroll
            for (int r = 0; r < R; ++r) part[r][warp] = acc[r];
        }
        __syncthreads();  // every thread reaches this: no early return above
        if (warp % WPR == 0) {
#pragma unroll
            for (int r = 0; r < R; ++r) {
                float s = part[r][warp];
#pragma unroll
                for (int k = 1; k < WPR; ++k) s += part[r][warp + k];
                acc[r] = s;
            }
        }
    }
    if (warp % WPR == 0 && lane == 0 && n < N) {
        const float b = bias != nullptr ? __bfloat162float(bias[n]) : 0.0f;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float* out = y + (size_t)r * N + n;
            const float v = acc[r] + b;
            *out = accumulate ? *out + v : v;
        }
    }
}

}  // namespace qt_linear_rows

#define QT_LINEAR_ROWS(R, WPR)                                                                                   \
    extern "C" __global__ void __launch_bounds__(qt_linear_rows::kThreads) qt_linear_rows##R##_wpr##WPR(        \
        const __nv_bfloat16* __restrict__ W, const float* __restrict__ x, const __nv_bfloat16* __restrict__ bias, \
        float* __restrict__ y, int N, int K, int accumulate) {                                                  \
        qt_linear_rows::linear_rows<R, WPR>(W, x, bias, y, N, K, accumulate);                                   \
    }
#define QT_LINEAR_ROWS_ALL_WPR(R) QT_LINEAR_ROWS(R, 1) QT_LINEAR_ROWS(R, 2) QT_LINEAR_ROWS(R, 4)
QT_LINEAR_ROWS_ALL_WPR(1)
QT_LINEAR_ROWS_ALL_WPR(2)
QT_LINEAR_ROWS_ALL_WPR(3)
QT_LINEAR_ROWS_ALL_WPR(4)
QT_LINEAR_ROWS_ALL_WPR(5)
QT_LINEAR_ROWS_ALL_WPR(6)
QT_LINEAR_ROWS_ALL_WPR(7)
QT_LINEAR_ROWS_ALL_WPR(8)
