/*
 * Matvec op: y = W x for this block's rows (weight_ring.cuh says which), then an epilogue.
 *
 * Math     For each input row r < rows: x_r = src row (f32, or a bf16 embedding row), then
 *          optionally x_r <- x_r / sqrt(mean(x_r^2) + eps) * norm_w (RMSNorm, every block
 *          computes it redundantly: no extra dependency). y[row][r] = sum_i W[row, i] x_r[i].
 *          Epilogues: store (+bias), residual add (+bias), or silu(gate) * up (paired).
 * Layout   W bf16 [rows, k] row-major, pages of R rows in shared memory; x f32 in shared
 *          memory [rows][k]; per-(row, part) partial sums in shared memory, reduced in part
 *          order at the end (deterministic).
 * Work     A page of R rows is shared by the 8 warps: R <= 8 gives each row s = 8 / R warps
 *          ("parts" of its 16-byte chunks); R > 8 gives warp w rows w, w + 8, ... A warp's
 *          part is the same on every page of the op, so its x values (at most 4 chunks of
 *          8 per input row, since a part spans <= 2 KB) are loaded into registers once per op.
 *          Weight chunks are read from shared memory 16 bytes per lane, conflict-free.
 * Precision bf16 weights, f32 activations, fmaf accumulation per chunk, chunks added in
 *          order, fixed shuffle tree, parts added in order: the same inputs give the same bits
 *          on every run.
 */
#pragma once
#include "common.cuh"
#include "megakernel/ll.cuh"
#include "megakernel/sync.cuh"
#include "megakernel/weight_ring.cuh"

namespace qt_mk {

constexpr int kMaxChunksPerLane = 4;

// Loads input row `src` (k values) into xs as f32. The loads of a batch are all issued
// before any is stored: one L2 round trip per batch of kInputBatch float4 per thread, not
// one per element (the loop would otherwise wait for each load before the next store).
// `tag` != 0 (kFlagLL): the row is polled from its LL words (ll.cuh), or its code is.
constexpr int kInputBatch = 4;
__device__ __forceinline__ void load_input_row(const MkArgs& a, const MkSrc& src, int k, float* xs, uint32_t tag) {
    if (src.f32 != nullptr && tag != 0u) {
        const float* row = src.f32;
        ll_gather(a, k, tag, [row](int e) { return row + e; }, [xs](int e) { return xs + e; });
    } else if (src.f32 != nullptr) {
        if ((k & 3) == 0) {
            const int n4 = k / 4;
            for (int base = 0; base < n4; base += kInputBatch * kThreads) {
                float4 v[kInputBatch];
#pragma unroll
                for (int t = 0; t < kInputBatch; ++t) {
                    const int i = base + threadIdx.x + t * kThreads;
                    if (i < n4) v[t] = ld_cg4(src.f32 + 4 * i);
                }
#pragma unroll
                for (int t = 0; t < kInputBatch; ++t) {
                    const int i = base + threadIdx.x + t * kThreads;
                    if (i < n4) reinterpret_cast<float4*>(xs)[i] = v[t];
                }
            }
        } else {
            for (int i = threadIdx.x; i < k; i += kThreads) xs[i] = ld_cg(src.f32 + i);
        }
    } else {
        const uint32_t code = ll_code(a, src.code_slot, tag);
        const bf16* row = src.table + (size_t)code * k;
        for (int i = threadIdx.x; i < k; i += kThreads) xs[i] = __bfloat162float(row[i]);
    }
}

// xs <- RMSNorm(xs) * w (same formula as the CPU backend: x * (1 / sqrt(ms + eps)) * w).
__device__ __forceinline__ void rms_norm_row(float* xs, const bf16* w, int k, float eps, float* scratch) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < k; i += kThreads) ss = fmaf(xs[i], xs[i], ss);
    const float scale = 1.0f / sqrtf(block_sum(ss, scratch) / (float)k + eps);
    for (int i = threadIdx.x; i < k; i += kThreads) xs[i] = xs[i] * scale * __bfloat162float(w[i]);
    __syncthreads();
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

struct MatvecSmem {
    float* xs;       // [kMaxRows][k]
    float* ypart;    // [block rows][parts][rows]
    float* scratch;  // kWarps floats
    const bf16* norm_w;  // op.norm_w, or its copy staged in shared memory (stage.cuh)
};

template <bool kTma>
// `trace`: this op's MkArgs.trace record on the sync thread while tracing, else null.
// `index`: the op's place in the program (kFlagLL tags).
__device__ void run_matvec(const MkOp& op, const MkArgs& a, WeightRing<kTma>& ring, const MatvecSmem& sm,
                           uint64_t* trace, int index) {
    const bool skip_math = (a.flags & kFlagSkipMath) != 0;
    const int k = op.k, rows = op.rows, b = blockIdx.x, g = gridDim.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    // 1. Inputs (raw), their side copy, the norm, the normed side copy.
    const uint32_t out_tag = ll_on(a) ? ll_tag(a, index) : 0u;
    for (int r = 0; r < rows; ++r)
        load_input_row(a, op.src[r], k, sm.xs + (size_t)r * k, ll_in_tag(a, op.src_op[r], index));
    __syncthreads();
    if (trace != nullptr) trace[kTraceInputsClk] = (uint64_t)clock64();
    if (op.raw_copy != nullptr) {
        int lo, hi;
        block_slice(k, b, g, lo, hi);
        for (int r = 0; r < rows; ++r)
            for (int i = lo + threadIdx.x; i < hi; i += kThreads)
                out_store(a, op.raw_copy + (size_t)r * k + i, sm.xs[(size_t)r * k + i], out_tag);
    }
    if (op.norm_w != nullptr)
        for (int r = 0; r < rows; ++r) rms_norm_row(sm.xs + (size_t)r * k, sm.norm_w, k, op.eps, sm.scratch);
    if (op.norm_copy != nullptr) {
        int lo, hi;
        block_slice(k, b, g, lo, hi);
        for (int i = lo + threadIdx.x; i < hi; i += kThreads) out_store(a, op.norm_copy + i, sm.xs[i], out_tag);
    }

    // 2. This warp's fixed part of every page row: chunk range [ps, pe) of k / 8 chunks.
    const int rpp = rows_per_page(k);
    const int parts = rpp >= kWarps ? 1 : kWarps / rpp;
    const int part = warp % parts;
    const int cpr = k / 8;
    const int ps = part * cpr / parts, pe = (part + 1) * cpr / parts;
    float xr[kMaxRows][kMaxChunksPerLane][8];
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
#pragma unroll
        for (int j = 0; j < kMaxChunksPerLane; ++j) {
            const int c = ps + lane + 32 * j;
            const bool ok = r < rows && c < pe;
#pragma unroll
            for (int e = 0; e < 8; ++e) xr[r][j][e] = ok ? sm.xs[(size_t)r * k + 8 * c + e] : 0.0f;
        }

    Runs runs;
    block_runs(op, b, g, runs);
    int block_rows = 0;
    for (int i = 0; i < runs.n; ++i) block_rows += Runs::at(runs.rows, i);

    // 3. Pages, in the loader's order.
    if (trace != nullptr) trace[kTraceLoopStartClk] = (uint64_t)clock64();
    for (int ri = 0; ri < runs.n; ++ri) {
        const int run_rows = Runs::at(runs.rows, ri), run_y = Runs::at(runs.y_off, ri);
        for (int p0 = 0; p0 < run_rows; p0 += rpp) {
            const int page_rows = min(rpp, run_rows - p0);
            const unsigned char* page = ring.wait_page();
            // Rows of this page handled by this warp: (warp / parts) + m * (kWarps / parts).
            for (int pr = warp / parts; pr < page_rows && !skip_math; pr += kWarps / parts) {
                const uint4* wrow = reinterpret_cast<const uint4*>(page + (size_t)pr * k * 2);
                // One accumulator per chunk: four independent FMA chains of 8 rather than one
                // of 32 (the page is latency-bound), added in chunk order.
                float acc[kMaxRows][kMaxChunksPerLane];
#pragma unroll
                for (int r = 0; r < kMaxRows; ++r)
#pragma unroll
                    for (int j = 0; j < kMaxChunksPerLane; ++j) acc[r][j] = 0.0f;
#pragma unroll
                for (int j = 0; j < kMaxChunksPerLane; ++j) {
                    const int c = ps + lane + 32 * j;
                    if (c < pe) {
                        const uint4 wv = wrow[c];
                        const float w8[8] = {qt::bf16_lo(wv.x), qt::bf16_hi(wv.x), qt::bf16_lo(wv.y), qt::bf16_hi(wv.y),
                                             qt::bf16_lo(wv.z), qt::bf16_hi(wv.z), qt::bf16_lo(wv.w), qt::bf16_hi(wv.w)};
#pragma unroll
                        for (int r = 0; r < kMaxRows; ++r)
#pragma unroll
                            for (int e = 0; e < 8; ++e) acc[r][j] = fmaf(w8[e], xr[r][j][e], acc[r][j]);
                    }
                }
#pragma unroll
                for (int r = 0; r < kMaxRows; ++r) {
                    float sum = acc[r][0];
#pragma unroll
                    for (int j = 1; j < kMaxChunksPerLane; ++j) sum += acc[r][j];
                    const float v = qt::warp_sum(sum);
                    if (lane == 0 && r < rows) {
                        const int yrow = run_y + p0 + pr;
                        sm.ypart[((size_t)yrow * parts + part) * rows + r] = v;
                    }
                }
            }
            ring.release();
        }
    }
    __syncthreads();
    // kFlagWarpRelease: every warp has released every page now; warp 0 refills what its
    // releases could not (slots a slower warp still held).
    if (ring.warp_release && threadIdx.x < 32) ring.top_up();
    if (trace != nullptr) trace[kTraceLoopEndClk] = (uint64_t)clock64();

    // 4. Epilogue: parts in order, bias, write.
    if (op.paired) {
        const int n = runs.n == 2 ? runs.rows[0] : 0;
        for (int i = threadIdx.x; i < n * rows; i += kThreads) {
            const int row = i % n, r = i / n;
            float gsum = 0.0f, usum = 0.0f;
            for (int p = 0; p < parts; ++p) {
                gsum += sm.ypart[((size_t)row * parts + p) * rows + r];
                usum += sm.ypart[((size_t)(n + row) * parts + p) * rows + r];
            }
            const int out_row = runs.seg_row0[0] + row;
            if (op.seg[0].bias != nullptr) gsum += __bfloat162float(op.seg[0].bias[out_row]);
            if (op.seg[1].bias != nullptr) usum += __bfloat162float(op.seg[1].bias[out_row]);
            out_store(a, op.out + (size_t)r * op.out_stride + out_row, silu(gsum) * usum, out_tag);
        }
    } else {
        const uint32_t residual_tag = op.epilogue == kEpiAdd ? ll_in_tag(a, op.out_op, index) : 0u;
        for (int i = threadIdx.x; i < block_rows * rows; i += kThreads) {
            const int yrow = i % block_rows, r = i / block_rows;
            int ri = 0;
            while (ri + 1 < runs.n && yrow >= Runs::at(runs.y_off, ri + 1)) ++ri;
            float v = 0.0f;
            for (int p = 0; p < parts; ++p) v += sm.ypart[((size_t)yrow * parts + p) * rows + r];
            const MkSeg& s = op.seg[Runs::at(runs.seg, ri)];
            const int seg_row = Runs::at(runs.seg_row0, ri) + (yrow - Runs::at(runs.y_off, ri));
            if (s.bias != nullptr) v += __bfloat162float(s.bias[seg_row]);
            float* o = op.out + (size_t)r * op.out_stride + s.vrow0 + seg_row;
            out_store(a, o, op.epilogue == kEpiAdd ? ll_read(a, o, residual_tag) + v : v, out_tag);
        }
    }
}

}  // namespace qt_mk
