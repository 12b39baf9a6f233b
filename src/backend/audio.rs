//! The audio op set: what the codec networks are written in, beside [`Backend`]'s.
//!
//! The codec decoder, the speaker encoder with its log-mel front end, and the codec encoder
//! are written once, generic over [`AudioBackend`], so the CPU implementation
//! ([`super::cpu`]) stays the oracle for the GPU one, op by op, as it is for the talker. Its
//! ops are the networks' building blocks: causal convolutions that carry their own streaming
//! state, the transposed convolution's overlap-add carry, sliding-window attention over a
//! window of remembered keys, the element-wise activations and norms of the vocoder (decoder);
//! reflect-padded "same" convolutions, column copies and per-channel statistics over time
//! (speaker encoder); reflect padding, complex magnitudes and the clamped log (log-mel);
//! strided convolutions with the encoder's causal padding and the quantizer's nearest-row
//! search (codec encoder).
//!
//! Weights are [`AudioBackend::AudioWeight`]: f32 on every backend. The released codec
//! checkpoints store f32, and the vocoder is ~40 convolutions deep, so rounding its weights to
//! bf16 (as [`Backend::Weight`] does on CUDA) would cost more accuracy than the issue's
//! −60 dB bound allows; what precision each backend computes in is its own documented choice.
//!
//! Conventions are [`Backend`]'s: activations are row-major, one row per time step
//! ("channels last": `x[t · channels + c]`), lengths in f32 elements, every op checks its
//! sizes and returns an error instead of touching memory out of range. Ops work on the first
//! `rows · width` elements of a buffer; a buffer may be longer. A `history` or `carry` buffer
//! is exactly its stated size.

use super::{AttentionShape, Backend};
use crate::error::{Error, Result};

/// The shape of a 1-D convolution `nn.Conv1d(cin, cout, kernel, dilation)`. How its edges are
/// padded and its stride belong to the op that runs it: [`AudioBackend::causal_conv`] (stride
/// 1, `(kernel − 1) · dilation` rows of history on the left), [`AudioBackend::reflect_conv`]
/// ("same", reflected) and [`AudioBackend::padded_conv`] (strided, the encoder's causal
/// padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub dilation: usize,
}

impl ConvShape {
    /// A dense layer `y = x · Wᵀ + b` as a convolution with one tap.
    pub fn linear(n_in: usize, n_out: usize) -> Self {
        ConvShape { cin: n_in, cout: n_out, kernel: 1, dilation: 1 }
    }

    /// Input rows a stream carries between calls: the receptive field minus the current row.
    pub fn history_rows(&self) -> usize {
        (self.kernel - 1) * self.dilation
    }

    /// Elements of the tap-major weight `[cout, kernel · cin]`.
    pub fn weight_len(&self) -> usize {
        self.cout * self.kernel * self.cin
    }
}

/// A causal transposed convolution (`Qwen3TTSTokenizerV2CausalTransConvNet`):
/// `nn.ConvTranspose1d(cin, cout, kernel, stride)` whose last `kernel − stride` outputs are
/// dropped, leaving exactly `rows · stride` outputs for `rows` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransposedConvShape {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl TransposedConvShape {
    /// Output rows the last input row reaches past its own `stride` rows: the carry.
    pub fn overlap_rows(&self) -> usize {
        self.kernel - self.stride
    }

    /// Elements of the offset-major weight `[kernel · cout, cin]`.
    pub fn weight_len(&self) -> usize {
        self.kernel * self.cout * self.cin
    }
}

/// A column range of a row-major matrix: element `(t, c)` of the span is at
/// `t · row_stride + first + c`. A `row_stride` of 0 repeats one row for every `t` (a
/// broadcast source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpan {
    pub row_stride: usize,
    pub first: usize,
}

impl ColumnSpan {
    /// Columns from `first` of a matrix `width` wide.
    pub fn of(width: usize, first: usize) -> Self {
        ColumnSpan { row_stride: width, first }
    }

    /// One row of values repeated for every row.
    pub fn broadcast(first: usize) -> Self {
        ColumnSpan { row_stride: 0, first }
    }
    /// One past the last element `rows` rows of `width` columns touch (`rows ≥ 1`), or `None`
    /// when it overflows.
    pub fn end(&self, rows: usize, width: usize) -> Option<usize> {
        rows.checked_sub(1)?.checked_mul(self.row_stride)?.checked_add(self.first)?.checked_add(width)
    }
}

/// How [`AudioBackend::padded_conv`] pads a signal's edges (`MimiConv1d.pad_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgePad {
    /// `"constant"`: zero rows.
    Zeros,
    /// `"replicate"`: copies of the first row on the left, of the last row on the right.
    Replicate,
}

/// The geometry of an [`AudioBackend::padded_conv`] over `rows` input rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaddedConvSpan {
    /// Rows of padding before the input: `(k − 1)·d + 1 − stride`.
    pub left: usize,
    /// Rows of padding after it, so that the last window fits: `out·stride − rows`.
    pub extra: usize,
    /// Output rows: `ceil(rows / stride)`.
    pub out_rows: usize,
}

/// The padding and output rows of a padded conv, or an error for a shape that is not a
/// causal conv (`(k − 1)·d + 1 < stride`), zero sizes or an empty input.
pub fn padded_conv_span(kernel: usize, dilation: usize, stride: usize, rows: usize) -> Result<PaddedConvSpan> {
    if kernel == 0 || dilation == 0 || stride == 0 || rows == 0 {
        return Err(Error::invalid_argument(format!(
            "padded_conv: kernel {kernel}, dilation {dilation}, stride {stride} and rows {rows} must be positive"
        )));
    }
    let reach = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|r| r.checked_add(1))
        .ok_or_else(|| Error::invalid_argument("padded_conv: kernel x dilation overflows"))?;
    if reach < stride {
        return Err(Error::invalid_argument(format!(
            "padded_conv: kernel {kernel} with dilation {dilation} spans fewer rows than the stride {stride}"
        )));
    }
    let out_rows = rows.div_ceil(stride);
    Ok(PaddedConvSpan { left: reach - stride, extra: out_rows * stride - rows, out_rows })
}

/// The element-wise activations of [`AudioBackend::activation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// ELU with α = 1: `x` for `x > 0`, else `e^x − 1` (`nn.ELU()`).
    Elu,
}

/// The audio operations. Each documents its math; a backend must agree with the CPU backend
/// to the tolerance its precision documents.
pub trait AudioBackend: Backend {
    /// An immutable f32 parameter tensor resident where this backend computes.
    type AudioWeight: Send + Sync;

    /// Uploads an f32 tensor of `shape` (`data.len()` must equal the product).
    fn upload_audio_weight(&self, data: &[f32], shape: &[usize]) -> Result<Self::AudioWeight>;

    /// Elements of an audio weight.
    fn audio_weight_len(&self, w: &Self::AudioWeight) -> usize;

    /// Sets every element of `x` to zero, in stream order (a stream state back to the start
    /// of a signal without a new allocation).
    fn zero(&self, s: &mut Self::Stream, x: &mut Self::Buffer) -> Result<()>;

    /// Causal convolution of `rows` new rows `x: [rows, cin]` continuing a stream:
    /// with `padded = history ++ x`, `y[t, o] = bias[o] + Σ_j Σ_i w[o, j·cin + i] ·
    /// padded[t + j·dilation, i]` into `y: [rows, cout]`. `w` is tap-major `[cout, kernel·cin]`
    /// (PyTorch's `weight[o, i, j]` at `w[o, j·cin + i]`), `bias: [cout]` (absent = 0).
    /// `history: [history_rows, cin]` is required when `history_rows() > 0` and must be
    /// `None` otherwise; afterwards it holds the last `history_rows` rows of `padded`. A new
    /// stream starts with a zero history: the reference's left padding.
    #[allow(clippy::too_many_arguments)]
    fn causal_conv(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        history: Option<&mut Self::Buffer>,
        shape: ConvShape,
        w: &Self::AudioWeight,
        bias: Option<&Self::AudioWeight>,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Causal transposed convolution of `x: [rows, cin]` into `y: [rows·stride, cout]`:
    /// input row n adds `Σ_i x[n, i] · w[j·cout + o, i]` to output row `n·stride + j` for
    /// `j < kernel` (w offset-major `[kernel·cout, cin]`, PyTorch's `weight[i, o, j]`), added
    /// in input-row order onto `carry` (the partial sums the previous call left for its first
    /// `kernel − stride` rows), then `bias[o]` is added to the `rows·stride` complete rows.
    /// The partial sums past them (without bias) become the new `carry:
    /// [kernel − stride, cout]`, required when `kernel > stride`, `None` when equal.
    #[allow(clippy::too_many_arguments)]
    fn causal_conv_transpose(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        carry: Option<&mut Self::Buffer>,
        shape: TransposedConvShape,
        w: &Self::AudioWeight,
        bias: &Self::AudioWeight,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Depthwise causal convolution (`groups = channels`, dilation 1): with
    /// `padded = history ++ x`, `y[t, c] = bias[c] + Σ_j taps[j, c] · padded[t + j, c]`, taps
    /// tap-major `[kernel, channels]`. `history: [kernel − 1, channels]` is updated as in
    /// [`causal_conv`](Self::causal_conv).
    #[allow(clippy::too_many_arguments)]
    fn depthwise_causal_conv(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        history: &mut Self::Buffer,
        channels: usize,
        kernel: usize,
        taps: &Self::AudioWeight,
        bias: &Self::AudioWeight,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// In-place LayerNorm of each row (width `weight.len()`): biased variance,
    /// `(x − mean) / sqrt(var + eps) · weight + bias`.
    fn layer_norm(
        &self,
        s: &mut Self::Stream,
        x: &mut Self::Buffer,
        rows: usize,
        weight: &Self::AudioWeight,
        bias: &Self::AudioWeight,
        eps: f32,
    ) -> Result<()>;

    /// RMSNorm of each row into `y`: `weight · (x / sqrt(mean(x²) + eps))`.
    fn audio_rms_norm(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        weight: &Self::AudioWeight,
        eps: f32,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Exact GELU `x/2 · (1 + erf(x/√2))` on the first `len` elements, in place.
    fn gelu(&self, s: &mut Self::Stream, x: &mut Self::Buffer, len: usize) -> Result<()>;

    /// SnakeBeta on `[rows, channels]` in place: `x + inv_mag[c] · sin²(x · freq[c])`, with
    /// `freq = e^α` and `inv_mag = 1 / (e^β + 1e-9)` precomputed at load (`[channels]` each).
    fn snake_beta(
        &self,
        s: &mut Self::Stream,
        x: &mut Self::Buffer,
        rows: usize,
        freq: &Self::AudioWeight,
        inv_mag: &Self::AudioWeight,
    ) -> Result<()>;

    /// Layer scale plus residual: `residual[t, c] += scale[c] · x[t, c]` over `rows` rows of
    /// width `scale.len()`.
    fn scale_add(
        &self,
        s: &mut Self::Stream,
        residual: &mut Self::Buffer,
        x: &Self::Buffer,
        rows: usize,
        scale: &Self::AudioWeight,
    ) -> Result<()>;

    /// `x[i] = min(max(x[i], lo), hi)` on the first `len` elements.
    fn clamp(&self, s: &mut Self::Stream, x: &mut Self::Buffer, len: usize, lo: f32, hi: f32) -> Result<()>;

    /// Codebook lookup: `ids` is `[rows, tables.len()]`; `out[r, :] = tables[0][ids[r·T]] +
    /// tables[1][ids[r·T + 1]] + …`, added in table order starting from the first table's row
    /// (no leading zero). Every table is `[entries, dim]`; an id out of range is an error.
    fn codebook_sum(
        &self,
        s: &mut Self::Stream,
        tables: &[&Self::AudioWeight],
        ids: &[u32],
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sliding-window causal attention continuing a stream. `keys`/`values: [capacity,
    /// num_kv_heads · head_dim]` hold `past` remembered (already rotated) rows; the `rows`
    /// new ones `k, v: [rows, num_kv_heads · head_dim]` are appended after them, and new query
    /// `t` (`q: [rows, num_heads · head_dim]`) attends to the `window` most recent keys up to
    /// and including its own (`past + t + 1 − window ..= past + t`, clipped at 0). Scale
    /// `1/sqrt(head_dim)`, softmax in f32. Output `out: [rows, num_heads · head_dim]`.
    /// Afterwards the last `min(past + rows, window − 1)` key and value rows are moved to the
    /// front (all any later query can see); that count is returned, the next call's `past`.
    /// Needs `capacity ≥ past + rows` and `past < window`.
    #[allow(clippy::too_many_arguments)]
    fn window_attention(
        &self,
        s: &mut Self::Stream,
        q: &Self::Buffer,
        k: &Self::Buffer,
        v: &Self::Buffer,
        rows: usize,
        shape: AttentionShape,
        window: usize,
        keys: &mut Self::Buffer,
        values: &mut Self::Buffer,
        past: usize,
        out: &mut Self::Buffer,
    ) -> Result<usize>;

    // --- The speaker encoder's ops (ECAPA-TDNN: "same" convolutions, statistics over time) ---

    /// "Same" convolution with reflect padding (PyTorch `padding="same",
    /// padding_mode="reflect"`): `y[t, o] = bias[o] + Σ_j Σ_i w[o, j·cin + i] ·
    /// x[reflect(t + j·dilation − left), i]` for `t < rows`, with `left = (kernel − 1)·dilation / 2`
    /// (rounded down) and `reflect` mirroring an index into `0..rows` without repeating the edge
    /// row (`−1 → 1`, `rows → rows − 2`). Both pads must be shorter than `rows`. Weights as in
    /// [`causal_conv`](Self::causal_conv).
    #[allow(clippy::too_many_arguments)]
    fn reflect_conv(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        shape: ConvShape,
        w: &Self::AudioWeight,
        bias: &Self::AudioWeight,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Copies `width` columns over `rows` rows: `dst[t·dst.row_stride + dst.first + c] =
    /// src[t·src.row_stride + src.first + c]` (`src.row_stride` 0: one row broadcast).
    /// `dst.row_stride` must be at least `width`; `src` and `dst` are different buffers.
    #[allow(clippy::too_many_arguments)]
    fn copy_columns(
        &self,
        s: &mut Self::Stream,
        src: &Self::Buffer,
        src_span: ColumnSpan,
        dst: &mut Self::Buffer,
        dst_span: ColumnSpan,
        rows: usize,
        width: usize,
    ) -> Result<()>;

    /// The mean of each column of `x: [rows, width]` into `out: [width]`: the column summed in
    /// f64 in row order, divided by `rows`, rounded to f32 (the SE block's squeeze).
    fn column_mean(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        width: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Weighted statistics of each column of `x: [rows, width]` (`_compute_statistics`):
    /// `mean[c] = Σ_t w[t, c]·x[t, c]` and `std[c] = sqrt(max(Σ_t w[t, c]·(x[t, c] − mean[c])²,
    /// 1e-12))`, each product in f32, the sums in f64 in row order, `mean` rounded to f32 before
    /// the deviations. `w` is `weights: [rows, width]`, or `1/rows` (in f32) when `None`.
    /// `out: [2·width]` receives the means, then the standard deviations.
    fn column_stats(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        width: usize,
        weights: Option<&Self::Buffer>,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Softmax over the rows of each column of `x: [rows, width]`, in place: the column's
    /// maximum subtracted, `exp` in f32, normalised by the f64 sum of the exponentials (in row
    /// order), each result rounded to f32.
    fn column_softmax(&self, s: &mut Self::Stream, x: &mut Self::Buffer, rows: usize, width: usize) -> Result<()>;

    /// `f` on the first `len` elements of `x`, in place.
    fn activation(&self, s: &mut Self::Stream, x: &mut Self::Buffer, len: usize, f: Activation) -> Result<()>;

    /// A gate per channel plus residual: `residual[t, c] += gate[c] · x[t, c]` over `rows`
    /// rows of width `width` (the product rounded, then the sum), `gate: [width]` a buffer (the
    /// squeeze-excitation's output; [`scale_add`](Self::scale_add) takes a weight).
    #[allow(clippy::too_many_arguments)]
    fn gate_add(
        &self,
        s: &mut Self::Stream,
        residual: &mut Self::Buffer,
        x: &Self::Buffer,
        rows: usize,
        width: usize,
        gate: &Self::Buffer,
    ) -> Result<()>;

    // --- The log-mel front end's ops (an STFT as a convolution over hop-sized rows) ---------

    /// Reflect padding of `x: [rows, width]` into `out: [left + rows + right, width]`:
    /// `out[p, :] = x[reflect(p − left), :]` (mirrored without repeating the edge row, as in
    /// [`reflect_conv`](Self::reflect_conv)). Both pads must be shorter than `rows`.
    #[allow(clippy::too_many_arguments)]
    fn reflect_pad(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        width: usize,
        left: usize,
        right: usize,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Magnitudes of `bins` complex values per row: `x: [rows, 2·bins]` holds the real parts,
    /// then the imaginary parts; `out[t, k] = sqrt(re² + im² + eps)` in f32 (each step
    /// rounded: `torch.view_as_real(spec).pow(2).sum(-1) + eps`, then the root).
    fn complex_magnitude(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        bins: usize,
        eps: f32,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// `x[i] = ln(max(x[i], floor))` on the first `len` elements (`floor > 0`).
    fn log_clamped(&self, s: &mut Self::Stream, x: &mut Self::Buffer, len: usize, floor: f32) -> Result<()>;

    // --- The codec encoder's ops (Mimi: strided convolutions of a whole signal) -------------

    /// A strided convolution of a whole signal with the codec encoder's causal padding
    /// (`MimiConv1d` with `use_causal_conv`): `out = ceil(rows / stride)` output rows;
    /// `left = (kernel − 1)·dilation + 1 − stride` rows before `x` and `extra = out·stride −
    /// rows` after it, zeros or copies of `x`'s first / last row (`pad`); then `y[t, o] =
    /// bias[o] + Σ_j Σ_i w[o, j·cin + i] · padded[t·stride + j·dilation, i]` into `y: [out,
    /// cout]` (weights as in [`causal_conv`](Self::causal_conv)). Needs `rows ≥ 1` and
    /// `(kernel − 1)·dilation + 1 ≥ stride`. Returns `out`.
    #[allow(clippy::too_many_arguments)]
    fn padded_conv(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        shape: ConvShape,
        stride: usize,
        pad: EdgePad,
        w: &Self::AudioWeight,
        bias: Option<&Self::AudioWeight>,
        y: &mut Self::Buffer,
    ) -> Result<usize>;

    /// The nearest codebook row of each row of `x: [rows, dim]` as `torch.cdist(x,
    /// embed).argmin(-1)` computes it on its matrix-product path: `d² = ‖x‖² − 2x·e + ‖e‖²` in
    /// f32 as one product of `[−2x, ‖x‖², 1]` (‖x‖² summed in order) with the augmented
    /// codebook rows `[e, 1, ‖e‖²]` (`codebook: [entries, dim + 2]`), then `sqrt(max(d², 0))`;
    /// the first minimum wins. Writes each row's index into `ids` and the runner-up's distance
    /// minus the best one into `margins` (how near a tie the decision was), on the host. A
    /// backend may bound `entries` (CUDA: 2^24, its indices travel back as floats).
    #[allow(clippy::too_many_arguments)]
    fn nearest_code(
        &self,
        s: &mut Self::Stream,
        x: &Self::Buffer,
        rows: usize,
        dim: usize,
        codebook: &Self::AudioWeight,
        ids: &mut [u32],
        margins: &mut [f32],
    ) -> Result<()>;
}
