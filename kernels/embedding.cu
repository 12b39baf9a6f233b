/*
 * Embedding gather and sum: out[r, :] (+)= sum_t table_t[ids[r, t], :].
 *
 * Math     For each row r: the sum over t < num_tables of row ids[r * num_tables + t] of
 *          table t, added in table order (t = 0 first) to 0, or to out[r, :] with accumulate.
 *          One table is a plain gather; the talker's frame input sums 16 codebook tables.
 * Layout   tables: bf16 [vocab_t, dim] row-major, passed by value (up to 16 pointers).
 *          ids: u32 [rows, num_tables] on the device, already range-checked by the host.
 *          out: f32 [rows, dim].
 * Launch   grid = rows, blockDim = 256, grid-stride over dim.
 * Precision bf16 -> f32 exact; f32 adds in table order, like the CPU backend's repeated
 *          accumulate calls (bit-identical sums).
 */
#include "common.cuh"

namespace qt_embedding {
constexpr int kMaxTables = 16;
struct Tables {
    const __nv_bfloat16* t[kMaxTables];
};
}  // namespace qt_embedding

extern "C" __global__ void qt_embedding_sum(const qt_embedding::Tables tables, int num_tables,
                                            const unsigned int* __restrict__ ids, float* __restrict__ out, int dim,
                                            int accumulate) {
    const int r = blockIdx.x;
    const unsigned int* rid = ids + (size_t)r * num_tables;
    float* o = out + (size_t)r * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float s = accumulate ? o[i] : 0.0f;
        for (int t = 0; t < num_tables; ++t) s += __bfloat162float(tables.t[t][(size_t)rid[t] * dim + i]);
        o[i] = s;
    }
}
