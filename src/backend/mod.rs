//! Compute backends: the small set of operations the networks are written in.
//!
//! The model code (talker, code predictor, later the codec) is written once, generic over
//! [`Backend`], so that every backend computes the same function and can be compared op by
//! op: the CPU backend ([`cpu::CpuBackend`], f32 everywhere) is the oracle that the CUDA
//! kernels are tested against.
//!
//! Three kinds of object, matching the three lifetimes in an inference library:
//! * [`Backend::Weight`]: immutable parameters, uploaded once at load and shared by every
//!   request (`Send + Sync`).
//! * [`Backend::Buffer`]: f32 activations and caches, owned by one request's state.
//! * [`Backend::Stream`]: one request's execution context (a CUDA stream; on the CPU, the
//!   thread count). Every op runs on a stream, so requests never share mutable state.
//!
//! The codec networks are written over a second op set beside this one,
//! [`audio::AudioBackend`] (convolutions with streaming state, sliding-window attention, the
//! vocoder's activations; f32 weights on every backend).
//!
//! Conventions: matrices are row-major; a "row" is one sequence position. Linear weights
//! are stored `[out, in]` as in PyTorch, so `linear` computes `y = x · Wᵀ (+ b)`. Lengths
//! and offsets are in f32 elements. Ops check their sizes and return an error rather than
//! read or write out of bounds.

pub mod audio;
pub mod cpu;
pub mod cpu_audio;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::error::Result;
use crate::tensor::TensorView;

/// Checks, cheaply and before anything is loaded, that CUDA device `ordinal` can be opened:
/// `Unsupported` without the `cuda` feature, `NoCudaDriver` without an NVIDIA driver,
/// `NoDevice` when the driver sees no such device.
pub fn check_cuda_device(ordinal: usize) -> Result<()> {
    #[cfg(feature = "cuda")]
    {
        cuda::check_device(ordinal)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(crate::error::Error::unsupported(format!(
            "CUDA device {ordinal} requested, but this build has no CUDA backend (build with the `cuda` feature)"
        )))
    }
}

/// Number of CUDA devices the driver sees: 0 without the `cuda` feature, without an NVIDIA
/// driver, or when the driver reports an error. Never panics.
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        cuda::device_count()
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// Dimensions of a grouped-query attention call (all rows of one sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads; each serves `num_heads / num_kv_heads` consecutive query heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Rotary position embedding parameters (NeoX `rotate_half` form over the full head).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    pub theta: f32,
    pub head_dim: usize,
}

/// One output of [`Backend::linear_shared_input`]: `y = x · wᵀ (+ bias)`.
pub struct LinearOut<'a, B: Backend + ?Sized> {
    pub w: &'a B::Weight,
    pub bias: Option<&'a B::Weight>,
    pub y: &'a mut B::Buffer,
}

/// The operation set. Each method documents its math; implementations must agree with the
/// CPU backend to f32 rounding (the CUDA backend to bf16 tolerances).
pub trait Backend: Send + Sync + 'static {
    /// An immutable parameter tensor resident where this backend computes.
    type Weight: Send + Sync;
    /// A mutable f32 buffer (activations, KV cache).
    type Buffer: Send + Sync;
    /// One request's execution context.
    type Stream: Send;

    /// Human-readable name for logs ("cpu", "cuda:0").
    fn name(&self) -> String;

    /// Creates an execution context for one request.
    fn new_stream(&self) -> Result<Self::Stream>;

    /// Uploads a checkpoint tensor (BF16, F16 or F32) unchanged in shape.
    fn upload_weight(&self, view: &TensorView<'_>) -> Result<Self::Weight>;

    /// Uploads an f32 host tensor as a weight (derived tables, e.g. precomputed embeddings).
    fn upload_weight_f32(&self, data: &[f32], shape: &[usize]) -> Result<Self::Weight>;

    /// Number of elements in a weight.
    fn weight_len(&self, w: &Self::Weight) -> usize;

    /// Allocates a zero-filled buffer of `len` f32 elements.
    fn alloc(&self, len: usize) -> Result<Self::Buffer>;

    /// Number of elements in a buffer.
    fn buffer_len(&self, b: &Self::Buffer) -> usize;

    /// Copies host data into `dst[offset..offset + src.len()]`.
    fn write(&self, s: &mut Self::Stream, dst: &mut Self::Buffer, offset: usize, src: &[f32]) -> Result<()>;

    /// Copies `src[offset..offset + dst.len()]` to the host, waiting for queued work.
    fn read(&self, s: &mut Self::Stream, src: &Self::Buffer, offset: usize, dst: &mut [f32]) -> Result<()>;

    /// `dst[dst_offset..][..len] = src[src_offset..][..len]`.
    fn copy(
        &self,
        s: &mut Self::Stream,
        src: &Self::Buffer,
        src_offset: usize,
        dst: &mut Self::Buffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<()>;

    /// `y[r, :] = x[r, :] · Wᵀ (+ bias)` for `rows` rows, `W: [out, in]`.
    /// With `accumulate`, adds into `y` instead of overwriting (fused residual add).
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        w: &Self::Weight,
        bias: Option<&Self::Weight>,
        y: &mut Self::Buffer,
        accumulate: bool,
    ) -> Result<()>;

    /// Several linear layers over the same input rows (q, k and v; gate and up):
    /// `outs[i].y = x · outs[i].wᵀ (+ outs[i].bias)` for `rows` rows, each `y` overwritten. A
    /// backend may run them as one pass (the CUDA GEMM does for prompt rows); the default
    /// calls [`Backend::linear`] for each, in order, and computes the same function.
    fn linear_shared_input(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        outs: &mut [LinearOut<'_, Self>],
    ) -> Result<()> {
        for o in outs.iter_mut() {
            self.linear(s, x, rows, o.w, o.bias, o.y, false)?;
        }
        Ok(())
    }

    /// RMSNorm over rows of width `w.len()`: `y = x / sqrt(mean(x²) + eps) · w`.
    fn rms_norm(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        w: &Self::Weight,
        eps: f32,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// In-place RMSNorm, used per attention head (QK-norm: rows = positions × heads).
    fn rms_norm_inplace(
        &self,
        s: &mut Self::Stream,
        x: &mut Self::Buffer,
        rows: usize,
        w: &Self::Weight,
        eps: f32,
    ) -> Result<()>;

    /// In-place rotary embedding of `x: [rows, heads, head_dim]`; row `r` is at position
    /// `first_position + r`. `x·cos + rotate_half(x)·sin`, `rotate_half([a, b]) = [-b, a]`.
    fn rope(
        &self,
        s: &mut Self::Stream,
        x: &mut Self::Buffer,
        rows: usize,
        heads: usize,
        rope: Rope,
        first_position: usize,
    ) -> Result<()>;

    /// QK-norm and RoPE of one attention layer's new rows, in place: every head of
    /// `q: [rows, num_heads, head_dim]` is RMS-normalised with `q_norm` and every head of
    /// `k: [rows, num_kv_heads, head_dim]` with `k_norm` (both `[head_dim]`), then both get
    /// the rotary embedding at positions `first_position + r`. The default runs
    /// [`rms_norm_inplace`](Self::rms_norm_inplace) and [`rope`](Self::rope) on each; a
    /// backend may fuse them (CUDA: one launch instead of four).
    #[allow(clippy::too_many_arguments)]
    fn qk_norm_rope(
        &self,
        s: &mut Self::Stream,
        q: &mut Self::Buffer,
        k: &mut Self::Buffer,
        rows: usize,
        shape: AttentionShape,
        q_norm: &Self::Weight,
        k_norm: &Self::Weight,
        eps: f32,
        rope: Rope,
        first_position: usize,
    ) -> Result<()> {
        self.rms_norm_inplace(s, q, rows * shape.num_heads, q_norm, eps)?;
        self.rms_norm_inplace(s, k, rows * shape.num_kv_heads, k_norm, eps)?;
        self.rope(s, q, rows, shape.num_heads, rope, first_position)?;
        self.rope(s, k, rows, shape.num_kv_heads, rope, first_position)
    }

    /// Causal grouped-query attention of `rows` new queries `q: [rows, num_heads, head_dim]`
    /// at positions `first_position..first_position + rows` against a cache
    /// `k_cache, v_cache: [capacity, num_kv_heads, head_dim]` whose first
    /// `first_position + rows` positions are valid. Scale `1/sqrt(head_dim)`, softmax in f32.
    /// Output `out: [rows, num_heads · head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        s: &mut Self::Stream,
        q: &Self::Buffer,
        k_cache: &Self::Buffer,
        v_cache: &Self::Buffer,
        shape: AttentionShape,
        rows: usize,
        first_position: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `gate[i] = silu(gate[i]) · up[i]` for the first `len` elements.
    fn silu_mul(&self, s: &mut Self::Stream, gate: &mut Self::Buffer, up: &Self::Buffer, len: usize) -> Result<()>;

    /// `x[i] = silu(x[i])` for the first `len` elements.
    fn silu(&self, s: &mut Self::Stream, x: &mut Self::Buffer, len: usize) -> Result<()>;

    /// `dst[i] += src[i]` for the first `len` elements.
    fn add(&self, s: &mut Self::Stream, dst: &mut Self::Buffer, src: &Self::Buffer, len: usize) -> Result<()>;

    /// Gathers rows of an embedding table `table: [vocab, dim]` into `out[r, :]` for each
    /// id (`out` starts at row 0). With `accumulate`, adds instead of overwriting. Ids out of
    /// range are an error.
    fn embedding(
        &self,
        s: &mut Self::Stream,
        table: &Self::Weight,
        ids: &[u32],
        out: &mut Self::Buffer,
        accumulate: bool,
    ) -> Result<()>;

    /// Sum of gathers from several tables of equal width: `ids` is `[rows, tables.len()]`
    /// and `out[r, :] (+)= Σ_t tables[t][ids[r · T + t], :]`, added in table order. The
    /// default calls [`embedding`](Self::embedding) per table (bit-identical sums); a backend
    /// may do it in one pass.
    fn embedding_sum(
        &self,
        s: &mut Self::Stream,
        tables: &[&Self::Weight],
        ids: &[u32],
        out: &mut Self::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        let t = tables.len();
        if t == 0 || !ids.len().is_multiple_of(t) {
            return Err(crate::error::Error::invalid_argument(format!(
                "embedding_sum: {} ids for {t} tables",
                ids.len()
            )));
        }
        let mut column = Vec::with_capacity(ids.len() / t);
        for (i, table) in tables.iter().enumerate() {
            column.clear();
            column.extend(ids.iter().skip(i).step_by(t));
            self.embedding(s, table, &column, out, accumulate || i > 0)?;
        }
        Ok(())
    }
}
