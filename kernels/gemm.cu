/*
 * BF16-weight GEMM on tensor cores: the prefill `linear` (more than 8 rows).
 *
 * Math     Y[m, n] = (accumulate ? Y[m, n] : 0) + sum_k X[m, k] * W[n, k] + (bias ? bias[n] : 0)
 *          for m < M (rows), n < N (out features), k < K (in features): `x · Wᵀ + b`.
 * Layout   X: f32 row-major [M, K]. W: bf16 row-major [N, K]. Y: f32 row-major [M, N].
 *          bias: bf16 [N] or NULL. Y must not overlap X, W or bias.
 *          partial: f32 [splits, M, N] scratch when the K dimension is split (gridDim.z > 1).
 * Launch   qt_gemm_tf32: blockDim = 128 (4 warps as 2 x 2), grid = (ceil(N / 64),
 *          ceil(M / 64), splits), static shared memory ~36 KB. Block z covers K range
 *          [z * k_chunk, min(K, (z + 1) * k_chunk)) (k_chunk a multiple of 32). Each block
 *          computes a 64 x 64 tile in K-steps of 32: the next step's X and W tiles are fetched
 *          into registers while the tensor cores work on the current one (two shared-memory
 *          buffers, one barrier per step); each warp runs 2 x 2 WMMA m16n16k8 TF32 products
 *          into its 32 x 32 sub-tile. With one split the epilogue writes Y (bias, accumulate);
 *          with several it writes raw sums to `partial` and qt_gemm_reduce (grid-stride over
 *          M x N, blockDim 256) adds the splits in order, the bias and the old Y.
 *          Splitting K is what fills the GPU when M and N are small (a 100-row prefill against
 *          a 1024 x 3072 weight has only 32 output tiles for 132 SMs).
 * Precision TF32 operands (10-bit mantissa), f32 accumulation. W is bf16, so converting it
 *          to TF32 is exact; X is rounded to TF32 (2^-11 relative), which gives ~2e-4
 *          relative error on a dot product of random data: the "tf32" tolerance class. The
 *          split sums are added in a fixed order: results are deterministic. Decode steps
 *          (1 to 8 rows) never come here: they use linear_rows.cu (plain f32).
 */
#include <mma.h>

#include "common.cuh"

namespace qt_gemm {

using namespace nvcuda;

constexpr int BM = 64, BN = 64, BK = 32;
constexpr int kThreads = 128;
constexpr int LDS = BK + 4;  // padded row of the X / W tiles (floats; multiple of 4 for WMMA)
constexpr int LDC = BN + 4;  // padded row of the output tile

struct Tiles {
    float x[BM][LDS];
    float w[BN][LDS];
};

struct Smem {
    union {
        Tiles in[2];
        float c[BM][LDC];
    };
};

// One thread's share of a K-step: 4 x (4 floats of X) and 2 x (8 bf16 of W).
struct Fetch {
    float4 x[4];
    uint4 w[2];
};

__device__ __forceinline__ void fetch(Fetch& f, const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                                      int M, int N, int K, int k_end, int m0, int n0, int k0, bool vec) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 3, c = (g & 7) * 4;
        const int m = m0 + r, k = k0 + c;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (m < M) {
            const float* p = X + (size_t)m * K + k;
            if (vec && k + 3 < k_end) {
                v = __ldg(reinterpret_cast<const float4*>(p));
            } else {
                if (k < k_end) v.x = p[0];
                if (k + 1 < k_end) v.y = p[1];
                if (k + 2 < k_end) v.z = p[2];
                if (k + 3 < k_end) v.w = p[3];
            }
        }
        f.x[it] = v;
    }
#pragma unroll
    for (int it = 0; it < 2; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 2, c = (g & 3) * 8;
        const int n = n0 + r, k = k0 + c;
        uint4 u = make_uint4(0u, 0u, 0u, 0u);
        if (n < N) {
            const __nv_bfloat16* p = W + (size_t)n * K + k;
            if (vec && k + 7 < k_end) {
                u = __ldg(reinterpret_cast<const uint4*>(p));
            } else {
                uint16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    if (k + j < k_end) h[j] = __bfloat16_as_ushort(p[j]);
                u = make_uint4(h[0] | (uint32_t)h[1] << 16, h[2] | (uint32_t)h[3] << 16, h[4] | (uint32_t)h[5] << 16,
                               h[6] | (uint32_t)h[7] << 16);
            }
        }
        f.w[it] = u;
    }
}

__device__ __forceinline__ void stash(Tiles& t, const Fetch& f) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 3, c = (g & 7) * 4;
        t.x[r][c] = wmma::__float_to_tf32(f.x[it].x);
        t.x[r][c + 1] = wmma::__float_to_tf32(f.x[it].y);
        t.x[r][c + 2] = wmma::__float_to_tf32(f.x[it].z);
        t.x[r][c + 3] = wmma::__float_to_tf32(f.x[it].w);
    }
#pragma unroll
    for (int it = 0; it < 2; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 2, c = (g & 3) * 8;
        const uint4 u = f.w[it];  // bf16 values are exact in tf32
        t.w[r][c] = qt::bf16_lo(u.x), t.w[r][c + 1] = qt::bf16_hi(u.x);
        t.w[r][c + 2] = qt::bf16_lo(u.y), t.w[r][c + 3] = qt::bf16_hi(u.y);
        t.w[r][c + 4] = qt::bf16_lo(u.z), t.w[r][c + 5] = qt::bf16_hi(u.z);
        t.w[r][c + 6] = qt::bf16_lo(u.w), t.w[r][c + 7] = qt::bf16_hi(u.w);
    }
}

}  // namespace qt_gemm

extern "C" __global__ void __launch_bounds__(qt_gemm::kThreads)
    qt_gemm_tf32(const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                 const __nv_bfloat16* __restrict__ bias, float* __restrict__ Y, float* __restrict__ partial, int M,
                 int N, int K, int k_chunk, int accumulate) {
    using namespace qt_gemm;
    __shared__ __align__(128) Smem s;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int k_begin = blockIdx.z * k_chunk, k_end = min(K, k_begin + k_chunk);
    const int warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    // Vector loads need K % 8 == 0 and 16-byte aligned bases (uniform over the grid).
    const bool vec = (K & 7) == 0 && ((reinterpret_cast<uintptr_t>(X) | reinterpret_cast<uintptr_t>(W)) & 15) == 0;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

    Fetch f;
    fetch(f, X, W, M, N, K, k_end, m0, n0, k_begin, vec);
    stash(s.in[0], f);
    __syncthreads();
    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) fetch(f, X, W, M, N, K, k_end, m0, n0, k0 + BK, vec);  // in flight during the MMAs
        const Tiles& t = s.in[cur];
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &t.x[wm + i * 16][kk], LDS);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &t.w[wn + j * 16][kk], LDS);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read before the previous barrier: safe to overwrite.
        if (more) stash(s.in[cur ^ 1], f);
        __syncthreads();
        cur ^= 1;
    }

    // s.c aliases the tile buffers: every warp passed the loop's last barrier.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&s.c[wm + i * 16][wn + j * 16], acc[i][j], LDC, wmma::mem_row_major);
    __syncthreads();

    const bool split = gridDim.z > 1;
    float* part = partial + (size_t)blockIdx.z * M * N;
    for (int e = threadIdx.x; e < BM * BN; e += kThreads) {
        const int r = e / BN, c = e % BN;
        const int m = m0 + r, n = n0 + c;
        if (m < M && n < N) {
            float v = s.c[r][c];
            if (split) {
                part[(size_t)m * N + n] = v;
            } else {
                if (bias != nullptr) v += __bfloat162float(bias[n]);
                float* out = Y + (size_t)m * N + n;
                *out = accumulate ? *out + v : v;
            }
        }
    }
}

extern "C" __global__ void qt_gemm_reduce(const float* __restrict__ partial, int splits,
                                          const __nv_bfloat16* __restrict__ bias, float* __restrict__ Y, int M, int N,
                                          int accumulate) {
    const size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        float v = 0.0f;
        for (int z = 0; z < splits; ++z) v += partial[(size_t)z * total + i];
        if (bias != nullptr) v += __bfloat162float(bias[i % N]);
        Y[i] = accumulate ? Y[i] + v : v;
    }
}

/*
 * The same product on BF16 tensor cores with a cp.async pipeline: the prompt prefill's GEMM.
 *
 * Math     as qt_gemm_tf32 (same arguments, same split over K and reduction).
 * Launch   blockDim = 128 (4 warps as 2 x 2, each a 32 x 32 sub-tile), grid = (ceil(N / 64),
 *          ceil(M / 64), splits), static shared memory 45 KB (3 stages). Needs K % 8 == 0,
 *          k_chunk a multiple of 32 and X, W 16-byte aligned (the host falls back to
 *          qt_gemm_tf32 otherwise). Each K-step of 32 copies a 64 x 32 f32 tile of X and a
 *          64 x 32 bf16 tile of W into the next free stage with cp.async (rows past M or N and
 *          columns past the split's end are zero-filled), two steps ahead of the tensor cores,
 *          so the copies of two steps are in flight while one is multiplied.
 *          Fragments: W through ldmatrix (its rows are the B operand's columns); X converted
 *          from f32 to bf16 as it is read from shared memory (x2: as a bf16 pair, below).
 * Groups   `qt_gemm_bf16{,x2}_group` multiply one X by up to 3 weights in one launch (q, k and
 *          v; gate and up): the grid's column tiles are the segments' tiles one after the
 *          other, and `qt_gemm_reduce_group` reduces every segment's splits in one launch.
 * Precision W is bf16: exact. `qt_gemm_bf16` rounds X to bf16 (8-bit mantissa, 2^-9
 *          relative), the precision the official model runs in: ~1e-3 relative error on a dot
 *          product of random data. `qt_gemm_bf16x2` splits X = hi + lo into two bf16 (lo is
 *          the rounding error of hi) and multiplies both: 2^-17 relative per element, better
 *          than TF32 (2^-11), at twice the tensor-core work. f32 accumulation in both; the
 *          order of every sum is fixed: deterministic.
 */
namespace qt_gemm_mma {

constexpr int BM = 64, BN = 64, BK = 32, kStages = 3, kThreads = 128;
constexpr int LDX = BK + 8;  // f32 per X row in shared memory: 160 bytes, no bank conflicts on float2 reads
constexpr int LDW = BK + 8;  // bf16 per W row: 80 bytes, ldmatrix rows on distinct banks

struct Stage {
    float x[BM][LDX];
    __nv_bfloat16 w[BN][LDW];
};

struct Smem {
    Stage stage[kStages];
};

using qt::smem_addr;

// 16 bytes global -> shared, bypassing L1; src_bytes 0 writes zeros (out-of-range rows).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// One K-step's tiles into `s`: X 64 rows x 8 chunks of 4 f32, W 64 rows x 4 chunks of 8 bf16.
__device__ __forceinline__ void load_stage(Stage& s, const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                                           int M, int N, int K, int k_end, int m0, int n0, int k0) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int it = 0; it < 4; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 3, c = (g & 7) * 4;
        const int m = m0 + r, k = k0 + c;
        const bool ok = m < M && k < k_end;
        // A zero-filled chunk still needs a valid address: the tile's first element.
        cp_async16(&s.x[r][c], ok ? X + (size_t)m * K + k : X, ok);
    }
#pragma unroll
    for (int it = 0; it < 2; ++it) {
        const int g = tid + it * kThreads;
        const int r = g >> 2, c = (g & 3) * 8;
        const int n = n0 + r, k = k0 + c;
        const bool ok = n < N && k < k_end;
        cp_async16(&s.w[r][c], ok ? W + (size_t)n * K + k : W, ok);
    }
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
}

// The rounding error of bf16(v), itself rounded to bf16.
__device__ __forceinline__ float bf16_residual(float v) { return v - __bfloat162float(__float2bfloat16_rn(v)); }

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// The block's output tile is column tile `n_tile` (of BN columns), row tile blockIdx.y, split
// blockIdx.z.
template <int kParts>
__device__ __forceinline__ void gemm(const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                                     const __nv_bfloat16* __restrict__ bias, float* __restrict__ Y,
                                     float* __restrict__ partial, int M, int N, int K, int k_chunk, int accumulate,
                                     int n_tile) {
    __shared__ __align__(128) Smem sm;
    const int m0 = blockIdx.y * BM, n0 = n_tile * BN;
    const int k_begin = blockIdx.z * k_chunk, k_end = min(K, k_begin + k_chunk);
    const int steps = (k_end - k_begin + BK - 1) / BK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int g = lane >> 2, t = lane & 3;  // the mma fragments' row group and column pair

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: the first kStages - 1 steps in flight (one commit group per step, empty or not,
    // so that wait_group counts steps).
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
        if (s < steps) load_stage(sm.stage[s], X, W, M, N, K, k_end, m0, n0, k_begin + s * BK);
        cp_async_commit();
    }
    // ldmatrix.x4 addresses for this lane: matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
    // (n 8-15, k 0-7), (n 8-15, k 8-15) of a 16 x 16 block of W: registers 0/1 are the
    // B fragment of the first 8 columns, 2/3 of the next 8.
    const int lrow = (lane & 7) + ((lane >> 4) << 3), lcol = ((lane >> 3) & 1) * 8;

    for (int step = 0; step < steps; ++step) {
        cp_async_wait<kStages - 2>();
        // Step `step` has landed for every thread, and every warp is done with the stage the
        // next copy overwrites (it was multiplied at step - 1).
        __syncthreads();
        const int next = step + kStages - 1;
        if (next < steps) load_stage(sm.stage[next % kStages], X, W, M, N, K, k_end, m0, n0, k_begin + next * BK);
        cp_async_commit();

        const Stage& s = sm.stage[step % kStages];
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t b[2][4];
#pragma unroll
            for (int j = 0; j < 2; ++j) ldmatrix_x4(b[j], &s.w[wn + j * 16 + lrow][kk + lcol]);
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float* r0 = &s.x[wm + i * 16 + g][kk + 2 * t];
                const float* r8 = r0 + 8 * LDX;
                const float2 x00 = *reinterpret_cast<const float2*>(r0);
                const float2 x80 = *reinterpret_cast<const float2*>(r8);
                const float2 x08 = *reinterpret_cast<const float2*>(r0 + 8);
                const float2 x88 = *reinterpret_cast<const float2*>(r8 + 8);
                uint32_t a[4] = {pack_bf16(x00.x, x00.y), pack_bf16(x80.x, x80.y), pack_bf16(x08.x, x08.y),
                                 pack_bf16(x88.x, x88.y)};
#pragma unroll
                for (int j = 0; j < 4; ++j) mma_bf16(acc[i][j], a, b[j >> 1][(j & 1) * 2], b[j >> 1][(j & 1) * 2 + 1]);
                if constexpr (kParts == 2) {
                    uint32_t lo[4] = {pack_bf16(bf16_residual(x00.x), bf16_residual(x00.y)),
                                      pack_bf16(bf16_residual(x80.x), bf16_residual(x80.y)),
                                      pack_bf16(bf16_residual(x08.x), bf16_residual(x08.y)),
                                      pack_bf16(bf16_residual(x88.x), bf16_residual(x88.y))};
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                        mma_bf16(acc[i][j], lo, b[j >> 1][(j & 1) * 2], b[j >> 1][(j & 1) * 2 + 1]);
                }
            }
        }
    }
    cp_async_wait<0>();

    // Epilogue straight from the fragments: c0, c1 at (row g, columns 2t, 2t + 1), c2, c3 at
    // row g + 8.
    const bool split = gridDim.z > 1;
    float* part = partial + (size_t)blockIdx.z * M * N;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = m0 + wm + i * 16 + g + (e >> 1) * 8;
                const int n = n0 + wn + j * 8 + 2 * t + (e & 1);
                if (m >= M || n >= N) continue;
                float v = acc[i][j][e];
                if (split) {
                    part[(size_t)m * N + n] = v;
                } else {
                    if (bias != nullptr) v += __bfloat162float(bias[n]);
                    float* out = Y + (size_t)m * N + n;
                    *out = accumulate ? *out + v : v;
                }
            }
}

// Up to kMaxSegments products of one X with different weights (q, k and v; gate and up) in
// one launch: segment i owns `tiles` consecutive column tiles of the grid, in order. Each
// segment has its own output, bias and split-K partial buffer ([splits, M, n]).
constexpr int kMaxSegments = 3;
struct Segment {
    const __nv_bfloat16* w;
    const __nv_bfloat16* bias;
    float* y;
    float* partial;
    int n;
    int tiles;
};
struct Group {
    Segment seg[kMaxSegments];
    int count;
};

template <int kParts>
__device__ __forceinline__ void gemm_group(const Group& g, const float* __restrict__ X, int M, int K, int k_chunk,
                                           int accumulate) {
    // Constant indices only: a dynamic index into the parameter struct would copy it to local
    // memory.
    int tile = blockIdx.x;
    Segment s = g.seg[0];
#pragma unroll
    for (int j = 1; j < kMaxSegments; ++j)
        if (j < g.count && tile >= s.tiles) tile -= s.tiles, s = g.seg[j];
    gemm<kParts>(X, s.w, s.bias, s.y, s.partial, M, s.n, K, k_chunk, accumulate, tile);
}

}  // namespace qt_gemm_mma

extern "C" __global__ void __launch_bounds__(qt_gemm_mma::kThreads)
    qt_gemm_bf16(const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                 const __nv_bfloat16* __restrict__ bias, float* __restrict__ Y, float* __restrict__ partial, int M,
                 int N, int K, int k_chunk, int accumulate) {
    qt_gemm_mma::gemm<1>(X, W, bias, Y, partial, M, N, K, k_chunk, accumulate, blockIdx.x);
}

extern "C" __global__ void __launch_bounds__(qt_gemm_mma::kThreads)
    qt_gemm_bf16x2(const float* __restrict__ X, const __nv_bfloat16* __restrict__ W,
                   const __nv_bfloat16* __restrict__ bias, float* __restrict__ Y, float* __restrict__ partial, int M,
                   int N, int K, int k_chunk, int accumulate) {
    qt_gemm_mma::gemm<2>(X, W, bias, Y, partial, M, N, K, k_chunk, accumulate, blockIdx.x);
}

// The grouped forms: grid = (sum of the segments' tiles, ceil(M / 64), splits).
extern "C" __global__ void __launch_bounds__(qt_gemm_mma::kThreads)
    qt_gemm_bf16_group(const qt_gemm_mma::Group g, const float* __restrict__ X, int M, int K, int k_chunk,
                       int accumulate) {
    qt_gemm_mma::gemm_group<1>(g, X, M, K, k_chunk, accumulate);
}

extern "C" __global__ void __launch_bounds__(qt_gemm_mma::kThreads)
    qt_gemm_bf16x2_group(const qt_gemm_mma::Group g, const float* __restrict__ X, int M, int K, int k_chunk,
                         int accumulate) {
    qt_gemm_mma::gemm_group<2>(g, X, M, K, k_chunk, accumulate);
}

// qt_gemm_reduce over every segment of a group (grid-stride over M x the segments' columns).
extern "C" __global__ void qt_gemm_reduce_group(const qt_gemm_mma::Group g, int splits, int M, int accumulate) {
    size_t total = 0;
#pragma unroll
    for (int j = 0; j < qt_gemm_mma::kMaxSegments; ++j)
        if (j < g.count) total += (size_t)M * g.seg[j].n;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t idx = e;
        qt_gemm_mma::Segment s = g.seg[0];  // constant indices only, as in gemm_group
#pragma unroll
        for (int j = 1; j < qt_gemm_mma::kMaxSegments; ++j)
            if (j < g.count && idx >= (size_t)M * s.n) idx -= (size_t)M * s.n, s = g.seg[j];
        const size_t len = (size_t)M * s.n;
        float v = 0.0f;
        for (int z = 0; z < splits; ++z) v += s.partial[(size_t)z * len + idx];
        if (s.bias != nullptr) v += __bfloat162float(s.bias[idx % s.n]);
        s.y[idx] = accumulate ? s.y[idx] + v : v;
    }
}
