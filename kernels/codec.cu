/*
 * The audio networks' ops (src/backend/audio.rs, `AudioBackend`): for the codec decoder,
 * causal and transposed convolutions with streaming state, the vocoder's norms and
 * activations, the codebook sum and sliding-window attention; for the speaker encoder, the
 * log-mel front end and the codec encoder, the ops listed at the end of this comment. Everything is f32: activations, weights (the codec's are
 * uploaded as f32, never bf16) and accumulation. No atomics: every sum has a fixed order, so
 * results are deterministic, and a stream cut into pieces gives bit-identical outputs.
 *
 * qt_codec_conv_gemm (implicit-GEMM causal convolution; kernel = 1 is a dense layer)
 *   Math    y[t, o] = (bias ? bias[o] : 0) + sum_{j < taps} sum_{i < cin} w[o, j*cin + i] * P[t*stride + j*dilation, i]
 *           for t < M, o < N, where P is the padded input: P[p] = hist[p] for p < H, else
 *           x[p - H] (H = (taps - 1) * dilation history rows). The reduction index is
 *           k = j*cin + i (K = taps * cin), so the A operand is the im2col matrix
 *           A[t, k] = P[t*stride + (k / cin) * dilation, k % cin], gathered by the tile loader.
 *           stride is 1 everywhere but the codec encoder's strided convs (qt_codec_edge_pad
 *           pads their input; H = 0 then).
 *   Layout  x: f32 [M, cin] (stride 1; with stride > 1 the (M - 1) * stride + (taps - 1) *
 *           dilation + 1 padded rows). hist: f32 [H, cin] (NULL when H = 0). w: f32 [N, K] row-major
 *           (tap-major: PyTorch's weight[o, i, j] at w[o*K + j*cin + i]). bias: f32 [N] or
 *           NULL. y: f32 [M, N], must not overlap the inputs. partial: f32 [chunks, M, N]
 *           when split (below), else unused (NULL).
 *   Chunks  The reduction runs in chunks of kc values of k (kc a multiple of BK): each
 *           chunk's sum is its own fma chain from 0, and the chunk sums are added in order,
 *           then the bias: y = ((c_0 + c_1) + c_2 ...) + bias. With kc >= K there is one chunk
 *           (one chain over all of k). The host picks kc from K alone, never from M, so a
 *           streamed call (few rows) and an offline one (many) round identically.
 *   Split   With few rows the (M, N) tiles alone cannot fill the GPU (one row tile: 8-24
 *           blocks for the codec's widths). Launched with gridDim.z = chunks > 1, block z
 *           computes chunk z only and writes it to partial[z] (no bias); qt_codec_conv_reduce
 *           then adds the chunks in order and the bias, the same sums in the same order as one
 *           unsplit block, so the split changes the speed, not a bit of the result.
 *   Launch  grid = (ceil(M / 64), ceil(N / 64), 1 or chunks), blockDim = 256, static shared memory
 *           2 x (16 x 68 + 16 x 68) floats = 17 KB. Classic SGEMM: a 64 x 64 output tile per
 *           block, K-steps of BK = 16; each thread owns a 4 x 4 register micro-tile (rows
 *           ty*4.., columns tx*4.., tx = tid % 16, ty = tid / 16) and reads one float4 of A
 *           and one of B from shared memory per k. The tiles are stored k-major
 *           (As[k][m], Bs[k][n]) and double-buffered: the next K-step's A and B (one float4
 *           each per thread: row tid / 4, k (tid % 4) * 4) are fetched into registers while
 *           the current one is multiplied, one barrier per step. When cin % 4 == 0 (every
 *           real codec layer: cin 96..1536) and the bases are 16-byte aligned, the 4 k of a
 *           thread's fetch lie in one tap and one input row: one float4 load; otherwise 4
 *           scalar loads, each mapped (t, k) -> (j, i) -> history or x. Any M, N, cin.
 *   Short   qt_codec_conv_gemm_rows16: the same kernel with a 16 x 64 tile (each thread one
 *           row x 4 columns; A loaded by the first 64 threads, 11 KB of shared memory), for
 *           calls of at most 16 rows, where the 64-row tile spends 3/4 of its fma on padding
 *           rows. Grid (ceil(M / 16), ceil(N / 64), 1 or chunks). Each output is the same
 *           chain of chunk sums, so it agrees with the 64-row kernel to the bit.
 *   Precision plain FFMA in f32 (no tensor cores: TF32 would cost ~1e-4 relative): each
 *           chunk is one sequential fma chain, the chunk sums and the bias are separate adds
 *           (__fadd_rn). None of it depends on the tiling, the split or the row count, so
 *           streamed calls equal one call.
 *
 * qt_codec_conv_reduce (the split conv's second pass)
 *   Math    y[m, n] = ((partial[0, m, n] + partial[1, m, n]) + ...) + (bias ? bias[n] : 0),
 *           the chunks added in order with __fadd_rn, the bias last (as the unsplit kernel).
 *   Launch  grid-stride over M * N, blockDim = 256.
 *
 * qt_codec_tail_rows (history and window shifts)
 *   Math    out[p, c] = S[head_rows + tail_rows - keep + p, c] for p < keep, c < width,
 *           S = head ++ tail (rows). The new history of a conv is the last H rows of hist ++ x.
 *   Layout  head: f32 [head_rows, width], tail: f32 [tail_rows, width] (either may be NULL
 *           with 0 rows), out: f32 [keep, width] NOT overlapping head or tail (the backend
 *           writes into its scratch and copies back, so a shift by fewer rows than the
 *           history is never an in-place hazard).
 *   Launch  grid-stride over keep * width, blockDim = 256.
 *
 * qt_codec_overlap_add (causal transposed convolution, after the GEMM z = x · Wᵀ)
 *   Math    With T = kernel - stride and L = rows * stride, for output row m < L + T and o:
 *             acc = (carry && m < T) ? carry[m, o] : 0
 *             acc += z[n, (m - n*stride)*cout + o] for n = n_lo, n_lo + 1, ..., n_hi
 *                    (every n < rows with n*stride <= m < n*stride + kernel, increasing n)
 *           m < L: y[m, o] = acc + bias[o]; m >= L: new_carry[m - L, o] = acc (no bias).
 *   Layout  z: f32 [rows, kernel*cout] (offset-major: column j*cout + o). carry: f32 [T, cout]
 *           or NULL (T = 0). new_carry: f32 [T, cout] not overlapping carry (scratch).
 *   Launch  grid-stride over (L + T) * cout, blockDim = 256.
 *   Precision the adds happen in the CPU backend's order (carry first, then input rows in
 *           order): given the same z the result is bit-identical.
 *
 * qt_codec_depthwise (ConvNeXt's depthwise causal conv, dilation 1)
 *   Math    y[t, c] = bias[c] + sum_{j < kernel} taps[j, c] * P[t + j, c], P = hist ++ x,
 *           H = kernel - 1; added in j order without fma (the CPU backend's rounding).
 *   Layout  x: [rows, C], hist: [H, C] (NULL when H = 0), taps: [kernel, C], bias: [C],
 *           y: [rows, C]. Launch: grid-stride over rows * C, blockDim = 256.
 *
 * qt_codec_layer_norm / qt_codec_rms_norm
 *   Math    layer: mean = sum(x) / dim, var = sum((x - mean)^2) / dim (biased, two passes),
 *           x = (x - mean) * (1 / sqrt(var + eps)) * w + b, in place.
 *           rms: y = w * (x * (1 / sqrt(sum(x^2) / dim + eps))).
 *   Launch  grid = rows, blockDim = 256: one block per row. Each sum is a per-thread strided
 *           chain, a fixed xor-shuffle tree and the 8 warp sums added in order (deterministic;
 *           the CPU adds sequentially, so the two agree to ~1e-7 relative).
 *
 * Element-wise (blockDim = 256, grid-stride over n; rows * channels for the per-channel ops)
 *   qt_codec_gelu       x = x * 0.5 * (1 + erff(x * (1 / sqrt 2)))      (exact GELU)
 *   qt_codec_snake      x = x + inv_mag[c] * s * s, s = sinf(x * freq[c])  (SnakeBeta)
 *   qt_codec_scale_add  residual = residual + scale[c] * x               (layer scale)
 *   qt_codec_clamp      x = x < lo ? lo : (x > hi ? hi : x)             (NaN stays NaN)
 *   Precision every multiply and add rounds on its own (__fmul_rn / __fadd_rn: no fma
 *           contraction) as on the CPU; erff and sinf are CUDA's accurate forms (within 2 ulp;
 *           this file is never compiled with --use_fast_math), the CPU uses f64 erf / libm sinf.
 *
 * qt_codec_codebook_sum
 *   Math    out[r, :] = (accumulate ? out[r, :] : tables[0][ids[r*id_stride + id_first]])
 *           + tables[t][ids[r*id_stride + id_first + t]] for the remaining t < num_tables, in
 *           table order (the first table's row is the start: no 0 + ...). More than 16 tables
 *           are summed by consecutive launches with accumulate = 1 (same order).
 *   Layout  tables passed by value (up to 16 f32 [entries, dim] pointers), ids: u32 on the
 *           device, range-checked by the host. Launch: grid = rows, blockDim = 256.
 *
 * qt_codec_window_attention
 *   Math    For query row t (key index past + t) and head h (KV head h / (heads / kv_heads)):
 *           keys first = max(0, past + t + 1 - window) ..= past + t;
 *           s_j = (q[t, h, :] · K[j, kvh, :]) * scale, p = softmax(s) (max subtracted, expf,
 *           sum in key order, then divided), out[t, h, :] = sum_j p_j V[j, kvh, :] in key order.
 *   Layout  q, out: f32 [rows, heads * head_dim]; K, V: f32 [capacity, kv_heads * head_dim]
 *           holding key indices 0..past + rows (the host copied the new rows in first).
 *   Launch  grid = (rows, heads), blockDim = 128, dynamic shared memory
 *           (head_dim + min(window, past + rows)) floats. Thread j computes score j as a
 *           sequential dot product (the CPU's order); thread 0 sums the exponentials in key
 *           order; thread d accumulates output dim d over the keys in order (coalesced V reads).
 *   Precision f32 with expf; the products and sums round exactly as the CPU's do, so only
 *           expf's last bit can differ (~1e-7 relative).
 *
 * The speaker encoder's ops (ECAPA-TDNN: "same" convolutions and statistics over time)
 *   qt_codec_reflect_pad    out[p, i] = x[reflect(p - left), i] for p < rows + left + right,
 *           reflect mirroring into 0..rows without repeating the edge row (-1 -> 1, rows ->
 *           rows - 2; the host checks both pads are shorter than rows). A reflect conv is this
 *           pad into scratch, then qt_codec_conv_gemm with the first (k - 1) * d padded rows
 *           as its history and the rest as its input: the causal conv's arithmetic.
 *           Grid-stride over the padded rows * cin, blockDim 256.
 *   qt_codec_copy_columns   dst[t * dst_stride + dst_first + c] = src[t * src_stride +
 *           src_first + c] for t < rows, c < width (src_stride 0: one row broadcast).
 *           Grid-stride over rows * width, blockDim 256.
 *   qt_codec_column_mean    out[c] = (float)((sum_t (double)x[t, c]) / rows).
 *   qt_codec_column_stats   mean[c] = sum_t (double)(w * x), std[c] = sqrt(max(sum_t
 *           (double)(w * (x - mean)^2), 1e-12)) with mean rounded to f32 first, w = weights[t, c]
 *           or 1/rows (f32) when weights is NULL; out = [mean (width); std (width)].
 *   qt_codec_column_softmax x[:, c] = exp(x - max) / sum (f32 expf, f64 sum, each quotient
 *           rounded to f32), in place.
 *           The three column ops run one thread per column (blockDim 128, grid ceil(width /
 *           128)): each sum is one sequential chain over t, in the CPU's order, and the
 *           threads of a warp read adjacent columns of a row (coalesced).
 *   qt_codec_activation     kind 0: fmaxf(x, 0) (ReLU), 1: tanhf, 2: 1 / (1 + expf(-x))
 *           (sigmoid, each step rounded), 3: x > 0 ? x : expm1f(x) (ELU, alpha 1; expm1f
 *           within 1 ulp, as the CPU's). Grid-stride, blockDim 256. tanhf and expf are CUDA's
 *           accurate forms (within 2 ulp), the CPU uses libm's.
 *   The SE gate (residual += gate[c] * x) is qt_codec_scale_add with the gate buffer.
 *
 * The log-mel front end's ops (the STFT itself is qt_codec_conv_gemm over hop-sized rows)
 *   qt_codec_complex_magnitude  out[t, k] = sqrt(re^2 + im^2 + eps), re = x[t, k], im =
 *           x[t, bins + k], each step rounded (__fmul_rn, __fadd_rn, __fsqrt_rn).
 *   qt_codec_log_clamped    x = logf(fmaxf(x, floor)) (CUDA's logf, within 1 ulp; the CPU
 *           uses libm's). Both grid-stride, blockDim 256. Padding is qt_codec_reflect_pad.
 *
 * The codec encoder's ops
 *   qt_codec_edge_pad       out = [left rows | x | right rows], the pad rows zeros or (replicate)
 *           copies of x's first / last row: the strided conv's input (qt_codec_conv_gemm with
 *           stride > 1 and no history then reads it). Grid-stride, blockDim 256.
 *   qt_codec_distance_lhs   out[t, :] = [-2 x[t, :], sum_i x[t, i]^2, 1] ([rows, dim + 2]; the
 *           squares summed in order with __fmul_rn / __fadd_rn, as the CPU's f32 sum). One
 *           thread per row, blockDim 128. Its product with the augmented codebook
 *           (qt_codec_conv_gemm, one tap) gives the squared distances d2 [rows, entries].
 *   qt_codec_nearest        per row of d2: d = sqrtf(fmaxf(d2, 0)) (correctly rounded), the
 *           first minimum's index and the runner-up's distance minus it. One block per row,
 *           blockDim 256: each thread scans entries tid, tid + 256, ... in order, then the
 *           (best, index, second) triples are merged in a fixed tree, ties to the lower index
 *           (the CPU's scan order gives the same answer). out[t] = (index as float, margin).
 */
#include "common.cuh"

namespace qt_codec {

constexpr int BM = 64, BN = 64, BK = 16;
constexpr int kThreads = 256;
// Padded tile rows (floats) of a tile TM wide: float4-aligned, 2-way store conflicts at most.
#define QT_CODEC_LD_TILE(TM) ((TM) + 4)
constexpr int LDB = QT_CODEC_LD_TILE(BN);
constexpr int kMaxTables = 16;

struct Tables {
    const float* t[kMaxTables];
};

// A[m, k] of the implicit im2col matrix: padded row m*stride + (k / cin) * dilation, channel k % cin.
__device__ __forceinline__ float im2col(const float* __restrict__ x, const float* __restrict__ hist, int H, int cin,
                                        int dilation, int stride, int m, int k) {
    const int j = k / cin, i = k - j * cin;
    const int p = m * stride + j * dilation;
    return p < H ? hist[(size_t)p * cin + i] : x[(size_t)(p - H) * cin + i];
}

// One thread's share of a K-step of the A tile: 4 consecutive k of one im2col row (zeros past
// M or K).
__device__ __forceinline__ float4 fetch_a(const float* __restrict__ x, const float* __restrict__ hist, int M,
                                          int cin, int K, int dilation, int stride, int H, int m, int k, bool vec) {
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
    if (m >= M) return a;
    if (vec) {
        // cin % 4 == 0: k..k+3 share one tap and one padded row, and K % 4 == 0.
        if (k < K) {
            const int j = k / cin, i = k - j * cin;
            const int p = m * stride + j * dilation;
            const float* src = p < H ? hist + (size_t)p * cin + i : x + (size_t)(p - H) * cin + i;
            a = *reinterpret_cast<const float4*>(src);
        }
    } else {
        if (k < K) a.x = im2col(x, hist, H, cin, dilation, stride, m, k);
        if (k + 1 < K) a.y = im2col(x, hist, H, cin, dilation, stride, m, k + 1);
        if (k + 2 < K) a.z = im2col(x, hist, H, cin, dilation, stride, m, k + 2);
        if (k + 3 < K) a.w = im2col(x, hist, H, cin, dilation, stride, m, k + 3);
    }
    return a;
}

// The same for the B tile: 4 consecutive k of weight row n (zeros past N or K).
__device__ __forceinline__ float4 fetch_b(const float* __restrict__ w, int N, int K, int n, int k, bool vec) {
    float4 b = make_float4(0.f, 0.f, 0.f, 0.f);
    if (n >= N) return b;
    const float* row = w + (size_t)n * K;
    if (vec) {
        if (k < K) b = __ldg(reinterpret_cast<const float4*>(row + k));
    } else {
        if (k < K) b.x = __ldg(row + k);
        if (k + 1 < K) b.y = __ldg(row + k + 1);
        if (k + 2 < K) b.z = __ldg(row + k + 2);
        if (k + 3 < K) b.w = __ldg(row + k + 3);
    }
    return b;
}

// Stores a thread's 4 k of tile row r, k-major (tile[k][row]).
template <int LD>
__device__ __forceinline__ void stash(float (*tile)[LD], const float4& v, int r, int c) {
    tile[c][r] = v.x, tile[c + 1][r] = v.y, tile[c + 2][r] = v.z, tile[c + 3][r] = v.w;
}

// The body of qt_codec_conv_gemm (TM = 64 rows per tile) and qt_codec_conv_gemm_rows16
// (TM = 16, for calls of at most 16 rows, where a 64-row tile would waste 3/4 of its fma).
// Each thread owns TM / 16 rows x 4 columns of the TM x 64 output tile; every output is the
// same chain of chunk sums whatever TM is, so the two kernels agree to the bit.
template <int TM>
__device__ __forceinline__ void conv_gemm_tile(const float* __restrict__ x, const float* __restrict__ hist,
                                               const float* __restrict__ w, const float* __restrict__ bias,
                                               float* __restrict__ y, float* __restrict__ partial, int M, int N,
                                               int cin, int taps, int dilation, int stride, int H, int kc) {
    constexpr int RM = TM / 16;          // rows per thread
    constexpr int LDA = QT_CODEC_LD_TILE(TM);
    static_assert(TM % 16 == 0 && TM <= 64, "a tile of 16..64 rows");
    __shared__ __align__(16) float As[2][BK][LDA];
    __shared__ __align__(16) float Bs[2][BK][LDB];
    const int tid = threadIdx.x;
    const int m0 = blockIdx.x * TM, n0 = blockIdx.y * BN;
    const int K = taps * cin;
    // One chunk per block when split (gridDim.z chunks), else every chunk in order.
    const bool split = gridDim.z > 1;
    const int k_begin = split ? blockIdx.z * kc : 0;
    const int k_end = split ? k_begin + min(kc, K - k_begin) : K;  // no k_begin + kc overflow
    const bool vec = (cin & 3) == 0 &&
                     ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(hist) |
                       reinterpret_cast<uintptr_t>(w)) & 15) == 0;
    const int lr = tid >> 2, lk = (tid & 3) << 2;  // loader: tile row lr, k offset lk..lk+3
    const bool loads_a = lr < TM;                  // A has TM rows, B 64
    const int tx = tid & 15, ty = tid >> 4;        // compute: rows ty*RM.., columns tx*4..

    float acc[RM][4], sum[RM][4];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f, sum[i][j] = 0.0f;

    float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b;
    if (loads_a) a = fetch_a(x, hist, M, cin, K, dilation, stride, H, m0 + lr, k_begin + lk, vec);
    b = fetch_b(w, N, K, n0 + lr, k_begin + lk, vec);
    if (loads_a) stash<LDA>(As[0], a, lr, lk);
    stash<LDB>(Bs[0], b, lr, lk);
    __syncthreads();
    int cur = 0;
    bool first_chunk = true;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        const bool more = k0 + BK < k_end;
        if (more) {
            if (loads_a) a = fetch_a(x, hist, M, cin, K, dilation, stride, H, m0 + lr, k0 + BK + lk, vec);
            b = fetch_b(w, N, K, n0 + lr, k0 + BK + lk, vec);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float ar[RM];
            if constexpr (RM == 4) {
                const float4 av = *reinterpret_cast<const float4*>(&As[cur][kk][ty * 4]);
                ar[0] = av.x, ar[1] = av.y, ar[2] = av.z, ar[3] = av.w;
            } else {
#pragma unroll
                for (int i = 0; i < RM; ++i) ar[i] = As[cur][kk][ty * RM + i];
            }
            const float4 bv = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * 4]);
            const float br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
        }
        // End of a chunk: its chain joins the running sum (the first one is the sum), and
        // the next chunk's chain starts from 0. Uniform across the block.
        if (!more || (k0 + BK - k_begin) % kc == 0) {
#pragma unroll
            for (int i = 0; i < RM; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    sum[i][j] = first_chunk ? acc[i][j] : __fadd_rn(sum[i][j], acc[i][j]);
                    acc[i][j] = 0.0f;
                }
            first_chunk = false;
        }
        // The other buffer was last read before the previous barrier: safe to overwrite.
        if (more) {
            if (loads_a) stash<LDA>(As[cur ^ 1], a, lr, lk);
            stash<LDB>(Bs[cur ^ 1], b, lr, lk);
        }
        __syncthreads();
        cur ^= 1;
    }

    // Split: this chunk's sums go to partial[z] (qt_codec_conv_reduce adds bias); else y.
    float* const dst = split ? partial + (size_t)blockIdx.z * M * N : y;
    const float* const add = split ? nullptr : bias;
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int m = m0 + ty * RM + i;
        if (m >= M) break;
        float* out = dst + (size_t)m * N;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx * 4 + j;
            if (n < N) out[n] = add != nullptr ? __fadd_rn(sum[i][j], add[n]) : sum[i][j];
        }
    }
}

__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    v = qt::warp_max(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float m = partial[0];
    for (int i = 1; i < warps; ++i) m = fmaxf(m, partial[i]);
    __syncthreads();
    return m;
}

__device__ __forceinline__ size_t grid_start() { return blockIdx.x * (size_t)blockDim.x + threadIdx.x; }
__device__ __forceinline__ size_t grid_step() { return (size_t)gridDim.x * blockDim.x; }

}  // namespace qt_codec

extern "C" __global__ void __launch_bounds__(qt_codec::kThreads)
    qt_codec_conv_gemm(const float* __restrict__ x, const float* __restrict__ hist, const float* __restrict__ w,
                       const float* __restrict__ bias, float* __restrict__ y, float* __restrict__ partial, int M,
                       int N, int cin, int taps, int dilation, int stride, int H, int kc) {
    qt_codec::conv_gemm_tile<qt_codec::BM>(x, hist, w, bias, y, partial, M, N, cin, taps, dilation, stride, H, kc);
}

extern "C" __global__ void __launch_bounds__(qt_codec::kThreads)
    qt_codec_conv_gemm_rows16(const float* __restrict__ x, const float* __restrict__ hist,
                              const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ y,
                              float* __restrict__ partial, int M, int N, int cin, int taps, int dilation, int stride, int H,
                              int kc) {
    qt_codec::conv_gemm_tile<16>(x, hist, w, bias, y, partial, M, N, cin, taps, dilation, stride, H, kc);
}

extern "C" __global__ void qt_codec_conv_reduce(const float* __restrict__ partial, int chunks,
                                                const float* __restrict__ bias, float* __restrict__ y, int M,
                                                int N) {
    using namespace qt_codec;
    const size_t total = (size_t)M * N;
    for (size_t e = grid_start(); e < total; e += grid_step()) {
        float v = partial[e];
        for (int c = 1; c < chunks; ++c) v = __fadd_rn(v, partial[(size_t)c * total + e]);
        y[e] = bias != nullptr ? __fadd_rn(v, bias[e % N]) : v;
    }
}

extern "C" __global__ void qt_codec_tail_rows(const float* __restrict__ head, int head_rows,
                                              const float* __restrict__ tail, int tail_rows, int keep, int width,
                                              float* __restrict__ out) {
    const size_t total = (size_t)keep * width;
    const int first = head_rows + tail_rows - keep;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const int p = (int)(e / width), c = (int)(e % width);
        const int src = first + p;
        out[e] = src < head_rows ? head[(size_t)src * width + c] : tail[(size_t)(src - head_rows) * width + c];
    }
}

extern "C" __global__ void qt_codec_overlap_add(const float* __restrict__ z, const float* __restrict__ carry,
                                                const float* __restrict__ bias, float* __restrict__ y,
                                                float* __restrict__ new_carry, int rows, int cout, int kernel,
                                                int stride) {
    const int T = kernel - stride, L = rows * stride;
    const size_t total = (size_t)(L + T) * cout;
    const size_t zrow = (size_t)kernel * cout;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const int m = (int)(e / cout), o = (int)(e % cout);
        float acc = (carry != nullptr && m < T) ? carry[(size_t)m * cout + o] : 0.0f;
        // Input rows n with n*stride <= m < n*stride + kernel, in increasing order.
        const int n_lo = m >= kernel ? (m - kernel) / stride + 1 : 0;
        const int n_hi = min(m / stride, rows - 1);
        for (int n = n_lo; n <= n_hi; ++n) acc = __fadd_rn(acc, z[n * zrow + (size_t)(m - n * stride) * cout + o]);
        if (m < L) {
            y[e] = __fadd_rn(acc, bias[o]);
        } else {
            new_carry[e - (size_t)L * cout] = acc;
        }
    }
}

extern "C" __global__ void qt_codec_depthwise(const float* __restrict__ x, const float* __restrict__ hist,
                                              const float* __restrict__ taps, const float* __restrict__ bias,
                                              float* __restrict__ y, int rows, int channels, int kernel) {
    const int H = kernel - 1;
    const size_t total = (size_t)rows * channels;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const int t = (int)(e / channels), c = (int)(e % channels);
        float acc = bias[c];
        for (int j = 0; j < kernel; ++j) {
            const int p = t + j;
            const float v = p < H ? hist[(size_t)p * channels + c] : x[(size_t)(p - H) * channels + c];
            acc = __fadd_rn(acc, __fmul_rn(v, taps[(size_t)j * channels + c]));
        }
        y[e] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(256)
    qt_codec_layer_norm(float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b, int dim,
                        float eps) {
    float* row = x + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s = __fadd_rn(s, row[i]);
    const float mean = __fdiv_rn(qt::block_sum(s), (float)dim);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float d = __fsub_rn(row[i], mean);
        ss = __fadd_rn(ss, __fmul_rn(d, d));
    }
    const float var = __fdiv_rn(qt::block_sum(ss), (float)dim);
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        row[i] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(row[i], mean), inv), w[i]), b[i]);
    }
}

extern "C" __global__ void __launch_bounds__(256)
    qt_codec_rms_norm(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y, int dim,
                      float eps) {
    const float* row = x + (size_t)blockIdx.x * dim;
    float* out = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = __fadd_rn(ss, __fmul_rn(row[i], row[i]));
    const float mean_sq = __fdiv_rn(qt::block_sum(ss), (float)dim);
    const float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean_sq, eps)));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[i] = __fmul_rn(w[i], __fmul_rn(row[i], inv));
}

extern "C" __global__ void qt_codec_gelu(float* __restrict__ x, long long n) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) {
        const float v = x[i];
        const float e = erff(__fmul_rn(v, 0.70710678118654752440f));
        x[i] = __fmul_rn(__fmul_rn(v, 0.5f), __fadd_rn(1.0f, e));
    }
}

extern "C" __global__ void qt_codec_snake(float* __restrict__ x, const float* __restrict__ freq,
                                          const float* __restrict__ inv_mag, long long n, int channels) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) {
        const int c = (int)(i % channels);
        const float v = x[i];
        const float s = sinf(__fmul_rn(v, freq[c]));
        x[i] = __fadd_rn(v, __fmul_rn(inv_mag[c], __fmul_rn(s, s)));
    }
}

extern "C" __global__ void qt_codec_scale_add(float* __restrict__ residual, const float* __restrict__ x,
                                              const float* __restrict__ scale, long long n, int channels) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) {
        residual[i] = __fadd_rn(residual[i], __fmul_rn(scale[i % channels], x[i]));
    }
}

extern "C" __global__ void qt_codec_clamp(float* __restrict__ x, long long n, float lo, float hi) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) {
        const float v = x[i];
        x[i] = v < lo ? lo : (v > hi ? hi : v);
    }
}

extern "C" __global__ void qt_codec_codebook_sum(const qt_codec::Tables tables, int num_tables,
                                                 const unsigned int* __restrict__ ids, int id_stride, int id_first,
                                                 float* __restrict__ out, int dim, int accumulate) {
    const unsigned int* rid = ids + (size_t)blockIdx.x * id_stride + id_first;
    float* o = out + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float s = accumulate ? o[i] : tables.t[0][(size_t)rid[0] * dim + i];
        for (int t = accumulate ? 0 : 1; t < num_tables; ++t) s = __fadd_rn(s, tables.t[t][(size_t)rid[t] * dim + i]);
        o[i] = s;
    }
}

extern "C" __global__ void __launch_bounds__(128)
    qt_codec_window_attention(const float* __restrict__ q, const float* __restrict__ keys,
                              const float* __restrict__ values, float* __restrict__ out, int heads, int kv_heads,
                              int head_dim, int past, int window, float scale) {
    extern __shared__ float smem[];
    float* sq = smem;              // [head_dim]
    float* sp = smem + head_dim;   // [n]: scores, then probabilities
    const int t = blockIdx.x, h = blockIdx.y;
    const int kvh = h / (heads / kv_heads);
    const size_t q_row = (size_t)heads * head_dim, kv_row = (size_t)kv_heads * head_dim;
    const int last = past + t;
    const int first = max(0, last + 1 - window);
    const int n = last - first + 1;
    const float* qr = q + t * q_row + (size_t)h * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) sq[d] = qr[d];
    __syncthreads();
    float local_max = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float* kr = keys + (size_t)(first + j) * kv_row + (size_t)kvh * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot = __fadd_rn(dot, __fmul_rn(sq[d], kr[d]));
        const float s = __fmul_rn(dot, scale);
        sp[j] = s;
        local_max = fmaxf(local_max, s);
    }
    const float mx = qt_codec::block_max(local_max);  // its barriers also publish sp
    for (int j = threadIdx.x; j < n; j += blockDim.x) sp[j] = expf(__fsub_rn(sp[j], mx));
    __syncthreads();
    __shared__ float denom;
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) sum = __fadd_rn(sum, sp[j]);
        denom = sum;
    }
    __syncthreads();
    const float sum = denom;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sp[j] = __fdiv_rn(sp[j], sum);
    __syncthreads();
    float* orow = out + t * q_row + (size_t)h * head_dim;
    const float* vbase = values + (size_t)first * kv_row + (size_t)kvh * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < n; ++j) acc = __fadd_rn(acc, __fmul_rn(sp[j], vbase[(size_t)j * kv_row + d]));
        orow[d] = acc;
    }
}

// ---------------------------------------------------------------------------------------------
// The speaker encoder's ops
// ---------------------------------------------------------------------------------------------

extern "C" __global__ void qt_codec_reflect_pad(const float* __restrict__ x, int rows, int cin, int left, int right,
                                                float* __restrict__ out) {
    const size_t total = (size_t)(rows + left + right) * cin;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const int p = (int)(e / cin), i = (int)(e - (size_t)p * cin);
        int q = p - left;
        if (q < 0) q = -q;
        else if (q >= rows) q = 2 * (rows - 1) - q;
        out[e] = x[(size_t)q * cin + i];
    }
}

extern "C" __global__ void qt_codec_copy_columns(const float* __restrict__ src, long long src_stride,
                                                 long long src_first, float* __restrict__ dst, long long dst_stride,
                                                 long long dst_first, int rows, int width) {
    const size_t total = (size_t)rows * width;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const size_t t = e / width, c = e - t * width;
        dst[t * dst_stride + dst_first + c] = src[t * src_stride + src_first + c];
    }
}

extern "C" __global__ void __launch_bounds__(128)
    qt_codec_column_mean(const float* __restrict__ x, int rows, int width, float* __restrict__ out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    double sum = 0.0;
    for (int t = 0; t < rows; ++t) sum += (double)x[(size_t)t * width + c];
    out[c] = (float)(sum / rows);
}

extern "C" __global__ void __launch_bounds__(128)
    qt_codec_column_stats(const float* __restrict__ x, int rows, int width, const float* __restrict__ weights,
                          float* __restrict__ out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    const float uniform = __fdiv_rn(1.0f, (float)rows);
    double acc = 0.0;
    for (int t = 0; t < rows; ++t) {
        const size_t e = (size_t)t * width + c;
        const float w = weights != nullptr ? weights[e] : uniform;
        acc += (double)__fmul_rn(w, x[e]);
    }
    const float mean = (float)acc;
    double var = 0.0;
    for (int t = 0; t < rows; ++t) {
        const size_t e = (size_t)t * width + c;
        const float w = weights != nullptr ? weights[e] : uniform;
        const float dev = __fsub_rn(x[e], mean);
        var += (double)__fmul_rn(w, __fmul_rn(dev, dev));
    }
    out[c] = mean;
    out[(size_t)width + c] = (float)sqrt(fmax(var, 1e-12));
}

extern "C" __global__ void __launch_bounds__(128)
    qt_codec_column_softmax(float* __restrict__ x, int rows, int width) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= width) return;
    float max = -INFINITY;
    for (int t = 0; t < rows; ++t) max = fmaxf(max, x[(size_t)t * width + c]);
    double sum = 0.0;
    for (int t = 0; t < rows; ++t) {
        const size_t e = (size_t)t * width + c;
        const float v = expf(__fsub_rn(x[e], max));
        x[e] = v;
        sum += (double)v;
    }
    for (int t = 0; t < rows; ++t) {
        const size_t e = (size_t)t * width + c;
        x[e] = (float)((double)x[e] / sum);
    }
}

extern "C" __global__ void qt_codec_activation(float* __restrict__ x, long long n, int kind) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) {
        const float v = x[i];
        float r;
        if (kind == 0) r = fmaxf(v, 0.0f);
        else if (kind == 1) r = tanhf(v);
        else if (kind == 2) r = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-v)));
        else r = v > 0.0f ? v : expm1f(v);
        x[i] = r;
    }
}

// ---------------------------------------------------------------------------------------------
// The log-mel front end's ops
// ---------------------------------------------------------------------------------------------

extern "C" __global__ void qt_codec_complex_magnitude(const float* __restrict__ x, int rows, int bins, float eps,
                                                      float* __restrict__ out) {
    const size_t total = (size_t)rows * bins;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const size_t t = e / bins, k = e - t * bins;
        const float re = x[t * 2 * bins + k], im = x[t * 2 * bins + bins + k];
        out[e] = __fsqrt_rn(__fadd_rn(__fadd_rn(__fmul_rn(re, re), __fmul_rn(im, im)), eps));
    }
}

extern "C" __global__ void qt_codec_log_clamped(float* __restrict__ x, long long n, float floor) {
    for (size_t i = qt_codec::grid_start(); i < (size_t)n; i += qt_codec::grid_step()) x[i] = logf(fmaxf(x[i], floor));
}

// ---------------------------------------------------------------------------------------------
// The codec encoder's ops
// ---------------------------------------------------------------------------------------------

extern "C" __global__ void qt_codec_edge_pad(const float* __restrict__ x, int rows, int cin, int left, int right,
                                             int replicate, float* __restrict__ out) {
    const size_t total = (size_t)(rows + left + right) * cin;
    for (size_t e = qt_codec::grid_start(); e < total; e += qt_codec::grid_step()) {
        const int p = (int)(e / cin), i = (int)(e - (size_t)p * cin);
        const int q = p - left;
        float v;
        if (q >= 0 && q < rows) v = x[(size_t)q * cin + i];
        else if (!replicate) v = 0.0f;
        else v = x[(size_t)(q < 0 ? 0 : rows - 1) * cin + i];
        out[e] = v;
    }
}

extern "C" __global__ void __launch_bounds__(128)
    qt_codec_distance_lhs(const float* __restrict__ x, int rows, int dim, float* __restrict__ out) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows) return;
    const float* row = x + (size_t)t * dim;
    float* o = out + (size_t)t * (dim + 2);
    float norm = 0.0f;
    for (int i = 0; i < dim; ++i) {
        const float v = row[i];
        o[i] = -2.0f * v;  // exact: a power of two
        norm = __fadd_rn(norm, __fmul_rn(v, v));
    }
    o[dim] = norm;
    o[dim + 1] = 1.0f;
}

namespace qt_codec {
// A partial nearest-row search: the best distance, its index, the second-best distance.
struct Nearest {
    float best;
    int index;
    float second;
};

// Merges two searches over disjoint entries: the lower distance wins (ties: the lower
// index); the runner-up is the better of the winner's second and the loser's best.
__device__ __forceinline__ Nearest merge(const Nearest& a, const Nearest& b) {
    const bool a_wins = a.best < b.best || (a.best == b.best && a.index < b.index);
    const Nearest& w = a_wins ? a : b;
    const Nearest& l = a_wins ? b : a;
    return Nearest{w.best, w.index, fminf(w.second, l.best)};
}
}  // namespace qt_codec

extern "C" __global__ void __launch_bounds__(256)
    qt_codec_nearest(const float* __restrict__ d2, int entries, float* __restrict__ out) {
    using namespace qt_codec;
    __shared__ Nearest part[256];
    const int t = blockIdx.x;
    const float* row = d2 + (size_t)t * entries;
    Nearest mine{INFINITY, 0x7fffffff, INFINITY};
    for (int j = threadIdx.x; j < entries; j += blockDim.x) {
        const float d = __fsqrt_rn(fmaxf(row[j], 0.0f));
        if (d < mine.best) {
            mine.second = mine.best;
            mine.best = d;
            mine.index = j;
        } else if (d < mine.second) {
            mine.second = d;
        }
    }
    part[threadIdx.x] = mine;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] = merge(part[threadIdx.x], part[threadIdx.x + half]);
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        // No entry below infinity: index 0, as the CPU's scan.
        out[2 * (size_t)t] = (float)(part[0].index < entries ? part[0].index : 0);
        out[2 * (size_t)t + 1] = __fsub_rn(part[0].second, part[0].best);
    }
}

