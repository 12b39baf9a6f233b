/*
 * BF16-weight matrix-vector product: y = W · x
 *
 * Math     y[r] = sum_c W[r, c] * x[c]  for r in [0, rows), c in [0, cols).
 *          This is `linear` for one row (decode step): PyTorch weights are [out, in], so
 *          rows = out_features, cols = in_features.
 * Layout   W: bf16, row-major [rows, cols], contiguous (row r starts at W + r * cols).
 *          x: f32 [cols].  y: f32 [rows], written once per row, never read.
 * Launch   blockDim = 256 (8 warps), grid = ceil(rows / (8 / WPR)), no dynamic shared memory.
 *          WPR = warps per row (1, 2 or 4; one entry point each). The 32 * WPR threads of a
 *          row stride over its columns; each warp reduces with shuffles, and with WPR > 1
 *          the row's warps combine through 8 floats of static shared memory.
 * Loads    Fast path (cols % 8 == 0 and W, x 16-byte aligned; uniform over the grid): every
 *          thread loads W in 16-byte chunks (8 bf16) with ld.global.nc.L1::no_allocate
 *          (streamed once, kept out of L1), 4 independent chunks in flight per iteration,
 *          and the matching 8 x values as two float4 through the read-only path (x is
 *          reused by every row, so it stays cached). Otherwise a scalar loop (ragged
 *          shapes; the model's shapes all take the fast path).
 *          Read-only loads are used only on W and x, which no kernel in this launch writes.
 * Precision bf16 -> f32 is exact (a 16-bit shift); products and sums are f32 FMAs. Each
 *          thread keeps 4 partial sums (one per chunk in flight), combined in a fixed order,
 *          then a fixed shuffle tree and a fixed cross-warp order: results are deterministic
 *          for a given shape and WPR. Error against an f64 reference is f32 rounding of a
 *          sum of about cols / (32 * WPR * 4) terms per partial, i.e. ~1e-7 relative.
 */
#include <cuda_bf16.h>
#include <stdint.h>

namespace qt_gemv {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// 16 bytes of W, streamed: not allocated in L1 (each byte is used once per launch).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// Two bf16 packed in a u32 (low half first in memory) to two exact f32 values.
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

// acc + dot(8 bf16 of w, x4[2i], x4[2i + 1]).
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

template <int WPR>
__device__ __forceinline__ void gemv(const __nv_bfloat16* __restrict__ W, const float* __restrict__ x,
                                     float* __restrict__ y, int rows, int cols) {
    static_assert(WPR == 1 || WPR == 2 || WPR == 4, "warps per row");
    constexpr int kRowsPerBlock = kWarps / WPR;
    constexpr int T = 32 * WPR;  // threads per row

    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * kRowsPerBlock + warp / WPR;
    const int t = (warp % WPR) * 32 + lane;  // thread index within the row

    float acc = 0.0f;
    if (row < rows) {
        const __nv_bfloat16* wr = W + (size_t)row * (size_t)cols;
        const bool vec = (cols & 7) == 0 && ((reinterpret_cast<uintptr_t>(W) | reinterpret_cast<uintptr_t>(x)) & 15) == 0;
        if (vec) {
            const int n8 = cols >> 3;  // 16-byte chunks in the row
            const uint4* w4 = reinterpret_cast<const uint4*>(wr);
            const float4* x4 = reinterpret_cast<const float4*>(x);
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            int i = t;
            for (; i + 3 * T < n8; i += 4 * T) {
                const uint4 u0 = load_stream(w4 + i);
                const uint4 u1 = load_stream(w4 + i + T);
                const uint4 u2 = load_stream(w4 + i + 2 * T);
                const uint4 u3 = load_stream(w4 + i + 3 * T);
                a0 = dot8(u0, x4, i, a0);
                a1 = dot8(u1, x4, i + T, a1);
                a2 = dot8(u2, x4, i + 2 * T, a2);
                a3 = dot8(u3, x4, i + 3 * T, a3);
            }
            for (; i < n8; i += T) a0 = dot8(load_stream(w4 + i), x4, i, a0);
            acc = (a0 + a1) + (a2 + a3);
        } else {
            for (int c = t; c < cols; c += T) acc = fmaf(__bfloat162float(wr[c]), x[c], acc);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);

    if constexpr (WPR == 1) {
        if (lane == 0 && row < rows) y[row] = acc;
    } else {
        __shared__ float part[kWarps];
        if (lane == 0) part[warp] = acc;
        __syncthreads();  // every thread reaches this: no early return above
        if (warp % WPR == 0 && lane == 0 && row < rows) {
            float s = part[warp];
#pragma unroll
            for (int k = 1; k < WPR; ++k) s += part[warp + k];
            y[row] = s;
        }
    }
}

}  // namespace qt_gemv

extern "C" __global__ void __launch_bounds__(qt_gemv::kThreads)
    qt_gemv_bf16_f32_wpr1(const __nv_bfloat16* __restrict__ W, const float* __restrict__ x, float* __restrict__ y,
                          int rows, int cols) {
    qt_gemv::gemv<1>(W, x, y, rows, cols);
}

extern "C" __global__ void __launch_bounds__(qt_gemv::kThreads)
    qt_gemv_bf16_f32_wpr2(const __nv_bfloat16* __restrict__ W, const float* __restrict__ x, float* __restrict__ y,
                          int rows, int cols) {
    qt_gemv::gemv<2>(W, x, y, rows, cols);
}

extern "C" __global__ void __launch_bounds__(qt_gemv::kThreads)
    qt_gemv_bf16_f32_wpr4(const __nv_bfloat16* __restrict__ W, const float* __restrict__ x, float* __restrict__ y,
                          int rows, int cols) {
    qt_gemv::gemv<4>(W, x, y, rows, cols);
}
