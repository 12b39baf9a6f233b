/*
 * Elementwise ops on f32 activations.
 *
 * qt_silu_mul  gate[i] = silu(gate[i]) * up[i]   (SwiGLU; silu(x) = x / (1 + exp(-x)))
 * qt_silu      x[i] = silu(x[i])
 * qt_add       dst[i] += src[i]
 * Layout   flat f32 arrays of n elements; the two operands must not overlap.
 * Launch   blockDim = 256, grid = min(ceil(n / 256), 65535 * 8) with a grid-stride loop.
 * Precision f32 with expf; silu as x / (1 + exp(-x)) exactly like the CPU backend.
 */
extern "C" __global__ void qt_silu_mul(float* __restrict__ gate, const float* __restrict__ up, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" __global__ void qt_silu(float* __restrict__ x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        x[i] = v / (1.0f + expf(-v));
    }
}

extern "C" __global__ void qt_add(float* __restrict__ dst, const float* __restrict__ src, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] += src[i];
}
