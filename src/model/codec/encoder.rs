//! 24 kHz waveform → codes: the speech tokenizer's encoder (`Qwen3TTSTokenizerV2Encoder`, i.e.
//! the encoder half of transformers 4.57.3 `MimiModel`) on the CPU in f32. It turns the
//! reference recording of a voice clone into the `[frames, 16]` codes of the ICL prompt.
//!
//! 1. SEANet conv stack (`encoder.encoder.layers.*`): conv k7 → per stride r of
//!    `reversed(upsampling_ratios)` [ResBlock → ELU → conv k=2r stride r, channels ×2] →
//!    ELU → conv k3 to `hidden_size`. 24 kHz → 25 Hz.
//! 2. Encoder transformer: pre-LayerNorm layers with full causal self-attention (RoPE) and a
//!    GELU MLP, each branch scaled by a learnt per-channel layer scale. No final norm.
//! 3. Downsample: conv k4 stride 2, replicate padding, no bias. 25 Hz → 12.5 Hz (the latent).
//! 4. Split RVQ: the semantic and the acoustic quantizer each project the *same* latent
//!    (1×1 conv) and quantize it residually against their own codebooks (nearest row by
//!    Euclidean distance, computed the way `torch.cdist` computes it).
//! 5. The wrapper keeps `encoder_valid_num_quantizers` codebooks and `ceil(N / 1920)` frames.
//!
//! Every convolution is `MimiConv1d` with `use_causal_conv`: left padding `K − stride`
//! (`K` the dilated kernel) and on the right the `extra` that makes the last window fit,
//! `ceil(L / stride)·stride − L`. So each stage maps L rows to `ceil(L / stride)` rows and
//! output row t depends on input rows ≤ t·stride + stride − 1 only. The stack is therefore
//! run over the waveform in blocks of [`CONV_BLOCK_HOPS`] hops with a little history per
//! conv (`ConvStream`): the same arithmetic as one pass, but memory bounded by the block
//! rather than by the recording (a 30 s reference would otherwise hold several 720 k × 64
//! buffers), and the activations stay in cache.
//!
//! Activations are channels-last `[rows, channels]` like the rest of the codec; the
//! reference's `[channels, rows]` only differs in memory order.
//!
//! The attention span: the config carries `sliding_window` 250, but the official tokenizer
//! loads with the SDPA backend, where `MimiTransformerModel` builds a plain causal mask; only
//! flash-attention-2 would apply the window. Every query here attends to all earlier frames.

use super::ops::{
    Linear, augmented_codebook, elu1, gelu, layer_norm_rows, matmul_xwt, nearest_rows, par_rows, scale_add_rows,
    softmax_inplace,
};
use super::{TensorSource, load_linear, load_vec, materialize_codebook};
use crate::backend::audio::EdgePad;
use crate::error::{Error, Result};
use crate::model::Checkpoint;
use crate::model::config::{MimiEncoderConfig, SpeechTokenizerConfig};

/// Conv-stack hops (960 samples each at full size) per block of the blocked conv pass. Any
/// value gives the same result up to rounding (gemm's summation order depends slightly on
/// the row count: ~1 ulp); 16 keeps the widest full-rate buffer at 15 360 × 64 f32 (4 MB),
/// cache-sized, which measured fastest (32 and more are slower at full size).
pub const CONV_BLOCK_HOPS: usize = 16;

/// Fewest output rows a conv-stack stage computes per call before the end of the input
/// (see `conv_stack_blocked`).
const MIN_CALL_ROWS: usize = 64;

/// Stride of the downsample conv: a module constant in `MimiModel.__init__`, not config.
const DOWNSAMPLE_STRIDE: usize = 2;

/// Kernel of a residual block's second conv (module constant).
const RESIDUAL_POINTWISE_KERNEL: usize = 1;

// ---------------------------------------------------------------------------------------------
// Convolutions
// ---------------------------------------------------------------------------------------------

/// The checks every encoder build makes of `encoder_config` before reading a tensor (what
/// this implementation covers: the official tokenizer config is all of it), and its edge
/// padding (`MimiConv1d.pad_mode`). Shared by [`CodecEncoder`] and the op-set encoder
/// ([`super::encoder_net`]).
pub(super) fn check_conv_stack_config(e: &MimiEncoderConfig) -> Result<EdgePad> {
    if e.audio_channels != 1 {
        return Err(Error::unsupported(format!(
            "encoder_config.audio_channels = {}: the tokenizer encodes mono audio",
            e.audio_channels
        )));
    }
    if !e.use_causal_conv {
        return Err(Error::unsupported("encoder_config.use_causal_conv = false is not implemented"));
    }
    let pad = match e.pad_mode.as_str() {
        "constant" => EdgePad::Zeros,
        "replicate" => EdgePad::Replicate,
        other => {
            return Err(Error::unsupported(format!(
                "encoder_config.pad_mode \"{other}\": only \"constant\" and \"replicate\" are implemented"
            )));
        }
    };
    if e.compress == 0 || e.hidden_size == 0 {
        return Err(Error::bad_config("encoder_config: compress and hidden_size must be positive"));
    }
    Ok(pad)
}

/// The quantizers the wrapper keeps: `(num_codebooks, num_semantic, acoustic_used)` — all
/// semantic codebooks and the acoustic ones up to `encoder_valid_num_quantizers`
/// (`audio_codes[:, :encoder_valid_num_quantizers]`; RVQ is sequential, so running all and
/// dropping the tail gives the same first ones), checked against what the checkpoint holds.
pub(super) fn kept_quantizers(cfg: &SpeechTokenizerConfig) -> Result<(usize, usize, usize)> {
    let e = &cfg.encoder_config;
    let (num_codebooks, num_semantic) = (cfg.encoder_valid_num_quantizers, e.num_semantic_quantizers);
    let acoustic_stored = e.num_quantizers.saturating_sub(num_semantic);
    let acoustic_used = num_codebooks.saturating_sub(num_semantic);
    if num_codebooks == 0 || acoustic_used > acoustic_stored {
        return Err(Error::bad_config(format!(
            "encoder_valid_num_quantizers = {num_codebooks} must be between 1 and encoder_config.num_quantizers = {}",
            e.num_quantizers
        )));
    }
    if e.codebook_dim() != e.vector_quantization_hidden_dimension {
        return Err(Error::bad_config(format!(
            "encoder_config.codebook_dim ({}) differs from vector_quantization_hidden_dimension ({})",
            e.codebook_dim(),
            e.vector_quantization_hidden_dimension
        )));
    }
    Ok((num_codebooks, num_semantic, acoustic_used))
}

/// `MimiConv1d` with `use_causal_conv`: `nn.Conv1d(cin, cout, k, stride, dilation)` after
/// `K − stride` rows of left padding and `extra` rows of right padding.
#[derive(Debug, Clone)]
struct MimiConv {
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: EdgePad,
    /// Dilation 1: `[cout][k][cin]`, one `[cout, k·cin]` matrix. Dilation > 1: tap-major
    /// `[k][cout][cin]` (see `forward`).
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// What a conv remembers between blocks: the last `K − stride` rows of its (activated)
/// input. Before the first block it holds nothing yet: the left padding depends on the pad
/// mode (and, for replicate, on the first row).
#[derive(Debug, Clone, Default)]
struct ConvStream {
    history: Vec<f32>,
    started: bool,
}

impl MimiConv {
    /// Loads `{prefix}.weight [cout, cin, k]` (+ `{prefix}.bias [cout]`).
    #[allow(clippy::too_many_arguments)]
    fn load(
        src: &dyn TensorSource,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pad: EdgePad,
        bias: bool,
    ) -> Result<Self> {
        // The causal padding K − stride must not be negative (a config that skipped
        // validation could ask for that). Zero channels are legal: a residual block's inner
        // width `dim // compress` is 0 when compress > dim, and PyTorch builds and runs such
        // a conv (empty output; a conv from zero channels outputs its bias).
        if kernel == 0 || stride == 0 || dilation == 0 || (kernel - 1) * dilation + 1 < stride {
            return Err(Error::bad_config(format!(
                "{prefix}: conv {cin}→{cout} with kernel {kernel}, stride {stride}, dilation {dilation} is not a valid causal conv"
            )));
        }
        let w = load_vec(src, &format!("{prefix}.weight"), &[cout, cin, kernel])?;
        let mut weight = vec![0.0; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for j in 0..kernel {
                    let at = if dilation == 1 { (o * kernel + j) * cin + i } else { (j * cout + o) * cin + i };
                    weight[at] = w[(o * cin + i) * kernel + j];
                }
            }
        }
        let bias = if bias { Some(load_vec(src, &format!("{prefix}.bias"), &[cout])?) } else { None };
        Ok(MimiConv { cin, cout, kernel, stride, dilation, pad, weight, bias })
    }

    /// `padding_total`: rows of left padding = rows of history between blocks.
    fn left_pad(&self) -> usize {
        (self.kernel - 1) * self.dilation + 1 - self.stride
    }

    /// Convolves the next `rows` input rows `x [rows, cin]` of a stream → `[out, cout]`.
    ///
    /// `elu` applies ELU(α = 1) to the input first (the `nn.ELU()` module in front of the
    /// conv; padding comes after it, as in the reference). A block that is not `last` must
    /// hold a multiple of `stride` rows, so that its windows end exactly at its last row and
    /// the stream's output is the one-pass output cut into pieces. `last` adds the right
    /// padding `extra` and ends the stream.
    fn forward(&self, x: &[f32], rows: usize, elu: bool, st: &mut ConvStream, last: bool, threads: usize) -> Vec<f32> {
        let (cin, cout, s, pad) = (self.cin, self.cout, self.stride, self.left_pad());
        debug_assert_eq!(x.len(), rows * cin);
        debug_assert!(last || rows.is_multiple_of(s), "a non-final block must be whole strides");
        // 1. Output rows: `_get_extra_padding_for_conv1d` pads the stream to ceil(L/s)·s rows
        //    (after the left padding), so the stream yields ceil(L/s) rows; blocks before the
        //    last are whole strides, so only the last block's remainder matters. The
        //    reference evaluates this ceil in f32; it is exact below 2^23 input rows.
        let out_rows = if last { rows.div_ceil(s) } else { rows / s };
        let extra = out_rows * s - rows;
        if out_rows == 0 {
            // Only a non-final empty block gets here: nothing to do, nothing to remember.
            return Vec::new();
        }
        if cin == 0 || cout == 0 {
            // No input channels: every output row is the bias; no output channels: nothing.
            // Either way the input's values never matter, so there is no history to keep.
            return match &self.bias {
                Some(b) => b.repeat(out_rows),
                None => vec![0.0; out_rows * cout],
            };
        }

        // 2. The padded input [left pad | activated x | extra]. Left: the history, or at the
        //    stream start zeros / copies of the first activated row.
        let mut padded = Vec::with_capacity((pad + rows + extra) * cin);
        if st.started {
            padded.extend_from_slice(&st.history);
        } else {
            match self.pad {
                EdgePad::Zeros => padded.resize(pad * cin, 0.0),
                EdgePad::Replicate => {
                    // rows ≥ 1 here (out_rows > 0), so the first row exists.
                    let first = activate(&x[..cin], elu);
                    for _ in 0..pad {
                        padded.extend_from_slice(&first);
                    }
                }
            }
        }
        let body = padded.len();
        padded.extend_from_slice(x);
        if elu {
            par_rows(&mut padded[body..], cin, threads, |_, chunk| chunk.iter_mut().for_each(|v| *v = elu1(*v)));
        }
        let end_of_input = padded.len();
        match self.pad {
            EdgePad::Zeros => padded.resize(end_of_input + extra * cin, 0.0),
            EdgePad::Replicate => {
                for _ in 0..extra {
                    padded.extend_from_within(end_of_input - cin..end_of_input);
                }
            }
        }

        // 3. Accumulate onto the bias. Channels-last makes im2col free: output row t reads
        //    padded rows t·s .. t·s + K.
        //    * dilation 1: those k·cin values are contiguous, so the padded buffer read with
        //      row stride s·cin *is* the [out_rows, k·cin] im2col matrix: one product.
        //    * dilation d: tap j reads padded row t·s + j·d, a [out_rows, cin] matrix of row
        //      stride s·cin starting at row j·d: one product per tap.
        let mut y = match &self.bias {
            Some(b) => b.repeat(out_rows),
            None => vec![0.0; out_rows * cout],
        };
        let accumulate = self.bias.is_some();
        if self.dilation == 1 {
            matmul_xwt(&padded, s * cin, &self.weight, &mut y, out_rows, cout, self.kernel * cin, accumulate, threads);
        } else {
            for j in 0..self.kernel {
                let window = &padded[j * self.dilation * cin..];
                let w = &self.weight[j * cout * cin..(j + 1) * cout * cin];
                matmul_xwt(window, s * cin, w, &mut y, out_rows, cout, cin, accumulate || j > 0, threads);
            }
        }

        // 4. The last `pad` input rows (never the right padding) are the next block's left.
        st.started = true;
        if !last {
            st.history.clear();
            st.history.extend_from_slice(&padded[end_of_input - pad * cin..end_of_input]);
        }
        y
    }
}

fn activate(row: &[f32], elu: bool) -> Vec<f32> {
    if elu { row.iter().map(|&v| elu1(v)).collect() } else { row.to_vec() }
}

/// `MimiResnetBlock`: ELU → conv k=`residual_kernel_size` (dilation `growth^j`, dim →
/// dim/compress) → ELU → conv k1 (→ dim), plus the identity (or a k1 conv shortcut).
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: MimiConv,
    conv2: MimiConv,
    shortcut: Option<MimiConv>,
}

/// One entry of the conv stack; ELU modules are folded into the conv that follows them.
#[derive(Debug, Clone)]
enum Stage {
    Conv { conv: MimiConv, elu: bool },
    Res(ResBlock),
}

/// Stream states of one stage (one per conv it contains).
#[derive(Debug, Clone, Default)]
struct StageStream {
    a: ConvStream,
    b: ConvStream,
    shortcut: ConvStream,
}

impl Stage {
    /// Input channels.
    fn cin(&self) -> usize {
        match self {
            Stage::Conv { conv, .. } => conv.cin,
            Stage::Res(block) => block.conv1.cin,
        }
    }

    /// Input rows per output row.
    fn stride(&self) -> usize {
        match self {
            Stage::Conv { conv, .. } => conv.stride,
            Stage::Res(_) => 1,
        }
    }

    fn forward(&self, x: &[f32], rows: usize, st: &mut StageStream, last: bool, threads: usize) -> (Vec<f32>, usize) {
        match self {
            Stage::Conv { conv, elu } => {
                let y = conv.forward(x, rows, *elu, &mut st.a, last, threads);
                let out_rows = y.len() / conv.cout;
                (y, out_rows)
            }
            Stage::Res(block) => {
                // Both convs have stride 1, so rows are preserved.
                let h = block.conv1.forward(x, rows, true, &mut st.a, last, threads);
                let h = block.conv2.forward(&h, rows, true, &mut st.b, last, threads);
                let mut out = match &block.shortcut {
                    Some(sc) => sc.forward(x, rows, false, &mut st.shortcut, last, threads),
                    None => x.to_vec(),
                };
                // `residual + hidden_states`.
                for (o, v) in out.iter_mut().zip(&h) {
                    *o += v;
                }
                (out, rows)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------------

/// One `MimiTransformerLayer`.
#[derive(Debug, Clone)]
struct Layer {
    input_norm_w: Vec<f32>,
    input_norm_b: Vec<f32>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    attn_scale: Vec<f32>,
    post_norm_w: Vec<f32>,
    post_norm_b: Vec<f32>,
    fc1: Linear,
    fc2: Linear,
    mlp_scale: Vec<f32>,
}

/// `MimiTransformerModel` as the encoder uses it: full causal attention, positions 0..T.
#[derive(Debug, Clone)]
struct Transformer {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    /// `1 / θ^(2i/head_dim)` in f32, as the default RoPE init computes it.
    inv_freq: Vec<f32>,
    layers: Vec<Layer>,
}

impl Transformer {
    fn load(src: &dyn TensorSource, prefix: &str, e: &MimiEncoderConfig) -> Result<Self> {
        let (hidden, heads, kv_heads, head_dim) = (e.hidden_size, e.num_attention_heads, e.num_key_value_heads, e.head_dim());
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::bad_config(format!(
                "encoder_config: {heads} attention heads, {kv_heads} key/value heads and head_dim {head_dim} are inconsistent"
            )));
        }
        if e.hidden_act != "gelu" {
            return Err(Error::unsupported(format!(
                "encoder_config.hidden_act `{}`: only gelu (exact) is implemented",
                e.hidden_act
            )));
        }
        let (q_dim, kv_dim, bias, inter) = (heads * head_dim, kv_heads * head_dim, e.attention_bias, e.intermediate_size);
        let mut layers = Vec::with_capacity(e.num_hidden_layers);
        for i in 0..e.num_hidden_layers {
            let p = format!("{prefix}.layers.{i}");
            let v = |name: &str| load_vec(src, &format!("{p}.{name}"), &[hidden]);
            layers.push(Layer {
                input_norm_w: v("input_layernorm.weight")?,
                input_norm_b: v("input_layernorm.bias")?,
                q_proj: load_linear(src, &format!("{p}.self_attn.q_proj"), hidden, q_dim, bias)?,
                k_proj: load_linear(src, &format!("{p}.self_attn.k_proj"), hidden, kv_dim, bias)?,
                v_proj: load_linear(src, &format!("{p}.self_attn.v_proj"), hidden, kv_dim, bias)?,
                o_proj: load_linear(src, &format!("{p}.self_attn.o_proj"), q_dim, hidden, bias)?,
                attn_scale: v("self_attn_layer_scale.scale")?,
                post_norm_w: v("post_attention_layernorm.weight")?,
                post_norm_b: v("post_attention_layernorm.bias")?,
                // `MimiMLP`: fc1/fc2 without bias.
                fc1: load_linear(src, &format!("{p}.mlp.fc1"), hidden, inter, false)?,
                fc2: load_linear(src, &format!("{p}.mlp.fc2"), inter, hidden, false)?,
                mlp_scale: v("mlp_layer_scale.scale")?,
            });
        }
        // `ROPE_INIT_FUNCTIONS["default"]`: base ** (arange(0, dim, 2).float() / dim), in f32.
        let theta = e.rope_theta as f32;
        let inv_freq = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        Ok(Transformer { heads, kv_heads, head_dim, eps: e.norm_eps as f32, inv_freq, layers })
    }

    /// `x [rows, hidden]` → `[rows, hidden]` (`last_hidden_state`).
    fn forward(&self, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let mut x = x.to_vec();
        if rows == 0 {
            return x;
        }
        let (cos, sin) = self.rope_tables(rows);
        for layer in &self.layers {
            // 1. Attention branch: LayerNorm → q/k/v → RoPE → causal softmax(q·kᵀ/√d)·v →
            //    o_proj → ×layer scale → residual.
            let mut h = x.clone();
            layer_norm_rows(&mut h, &layer.input_norm_w, &layer.input_norm_b, self.eps);
            let mut q = layer.q_proj.forward(&h, rows, threads);
            let mut k = layer.k_proj.forward(&h, rows, threads);
            let v = layer.v_proj.forward(&h, rows, threads);
            self.rotate(&mut q, self.heads, &cos, &sin);
            self.rotate(&mut k, self.kv_heads, &cos, &sin);
            let attn = self.attention(&q, &k, &v, rows, threads);
            let o = layer.o_proj.forward(&attn, rows, threads);
            scale_add_rows(&mut x, &o, &layer.attn_scale);

            // 2. MLP branch: LayerNorm → fc1 → GELU → fc2 → ×layer scale → residual.
            let mut h = x.clone();
            layer_norm_rows(&mut h, &layer.post_norm_w, &layer.post_norm_b, self.eps);
            let mut m = layer.fc1.forward(&h, rows, threads);
            par_rows(&mut m, layer.fc1.n_out, threads, |_, chunk| chunk.iter_mut().for_each(|v| *v = gelu(*v)));
            let m = layer.fc2.forward(&m, rows, threads);
            scale_add_rows(&mut x, &m, &layer.mlp_scale);
        }
        x
    }

    /// cos/sin `[rows, head_dim/2]` of positions 0..rows: `freqs = inv_freq · pos` and its
    /// cos/sin in f32 (the reference duplicates the half for `rotate_half`; we index it).
    fn rope_tables(&self, rows: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.head_dim / 2;
        let mut cos = Vec::with_capacity(rows * half);
        let mut sin = Vec::with_capacity(rows * half);
        for t in 0..rows {
            for &f in &self.inv_freq {
                let a = f * t as f32;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        (cos, sin)
    }

    /// `apply_rotary_pos_emb` with `rotate_half` on each head of `x [rows, n_heads·head_dim]`:
    /// `x·cos + rotate_half(x)·sin`, rotate_half(x) = [−x₂, x₁].
    fn rotate(&self, x: &mut [f32], n_heads: usize, cos: &[f32], sin: &[f32]) {
        let (d, half) = (self.head_dim, self.head_dim / 2);
        for (t, row) in x.chunks_exact_mut(n_heads * d).enumerate() {
            let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
            for head in row.chunks_exact_mut(d) {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * c[i] + (-b) * s[i];
                    head[i + half] = b * c[i] + a * s[i];
                }
            }
        }
    }

    /// Causal multi-head attention over all earlier rows (no window; see the module docs),
    /// head by head as two products: scores `[rows, rows]` = q_h·k_hᵀ, out = P·v_h.
    fn attention(&self, q: &[f32], k: &[f32], v: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let (d, q_dim, kv_dim) = (self.head_dim, self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0.0; rows * q_dim];
        let mut k_h = vec![0.0; rows * d];
        let mut v_ht = vec![0.0; d * rows];
        let mut scores = vec![0.0; rows * rows];
        let mut o_h = vec![0.0; rows * d];
        for kvh in 0..self.kv_heads {
            // 1. This key/value head, contiguous: k_h [rows, d] and v_hᵀ [d, rows] (the
            //    second product's "weight" operand must be row-major [n, k]).
            for t in 0..rows {
                let src = t * kv_dim + kvh * d;
                k_h[t * d..(t + 1) * d].copy_from_slice(&k[src..src + d]);
                for i in 0..d {
                    v_ht[i * rows + t] = v[src + i];
                }
            }
            for h in kvh * group..(kvh + 1) * group {
                // 2. Scores of every query head sharing it (q read in place, row stride q_dim).
                matmul_xwt(&q[h * d..], q_dim, &k_h, &mut scores, rows, rows, d, false, threads);
                // 3. Scale, mask the future (query t sees keys 0..=t), softmax in f32.
                for (t, row) in scores.chunks_exact_mut(rows).enumerate() {
                    let (seen, future) = row.split_at_mut(t + 1);
                    seen.iter_mut().for_each(|s| *s *= scale);
                    softmax_inplace(seen);
                    future.fill(0.0);
                }
                // 4. Weighted values, scattered into the head's columns.
                matmul_xwt(&scores, rows, &v_ht, &mut o_h, rows, d, rows, false, threads);
                for t in 0..rows {
                    out[t * q_dim + h * d..t * q_dim + (h + 1) * d].copy_from_slice(&o_h[t * d..(t + 1) * d]);
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Quantizer
// ---------------------------------------------------------------------------------------------

/// One `MimiEuclideanCodebook`, stored for the distance product: row j is
/// `[e_j (dim values), 1, ‖e_j‖²]`.
#[derive(Debug, Clone)]
struct Codebook {
    rows: Vec<f32>,
}

/// A `MimiResidualVectorQuantizer`: an optional 1×1 input projection, then residual
/// quantization over its first `codebooks.len()` codebooks.
#[derive(Debug, Clone)]
struct Rvq {
    input_proj: Option<Linear>,
    codebooks: Vec<Codebook>,
}

/// The codebook side of the reference distance, see [`Rvq::nearest`].
fn augmented(embed: &[f32], dim: usize) -> Codebook {
    Codebook { rows: augmented_codebook(embed, dim) }
}

impl Rvq {
    fn load(
        src: &dyn TensorSource,
        prefix: &str,
        e: &MimiEncoderConfig,
        layer_indices: std::ops::Range<usize>,
    ) -> Result<Self> {
        let (hidden, vq, dim, size) =
            (e.hidden_size, e.vector_quantization_hidden_dimension, e.codebook_dim(), e.codebook_size);
        // `MimiResidualVectorQuantizer.__init__`: the projections exist only when the widths differ.
        let input_proj = if vq != hidden {
            let w = load_vec(src, &format!("{prefix}.input_proj.weight"), &[vq, hidden, 1])?;
            Some(Linear { n_in: hidden, n_out: vq, weight: w, bias: None })
        } else {
            None
        };
        let mut codebooks = Vec::with_capacity(layer_indices.len());
        for i in layer_indices {
            let p = format!("{prefix}.layers.{i}.codebook");
            let sum = load_vec(src, &format!("{p}.embed_sum"), &[size, dim])?;
            let usage = load_vec(src, &format!("{p}.cluster_usage"), &[size])?;
            // `embed = embed_sum / cluster_usage.clamp(min=1e-5)`, materialised once.
            codebooks.push(augmented(&materialize_codebook(&sum, &usage, dim), dim));
        }
        Ok(Rvq { input_proj, codebooks })
    }

    /// Codes `[rows, codebooks]` (written at column offset `col` of `codes`, row stride
    /// `stride`) and each decision's margin, for `latent [rows, hidden]`.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        latent: &[f32],
        rows: usize,
        dim: usize,
        codes: &mut [u32],
        margins: &mut [f32],
        col: usize,
        stride: usize,
        threads: usize,
    ) {
        // 1. `embeddings = input_proj(embeddings)`: 1×1 conv = a linear map per row.
        let mut residual = match &self.input_proj {
            Some(p) => p.forward(latent, rows, threads),
            None => latent.to_vec(),
        };
        // 2. Classic RVQ: nearest row of codebook q for the running residual, then subtract it.
        for (q, cb) in self.codebooks.iter().enumerate() {
            let (idx, gap) = Self::nearest(cb, &residual, rows, dim, threads);
            for (t, (&i, &g)) in idx.iter().zip(&gap).enumerate() {
                codes[t * stride + col + q] = i as u32;
                margins[t * stride + col + q] = g;
                let e = &cb.rows[i * (dim + 2)..i * (dim + 2) + dim];
                for (r, &v) in residual[t * dim..(t + 1) * dim].iter_mut().zip(e) {
                    *r -= v;
                }
            }
        }
    }

    /// Nearest codebook row of each `x` row, as `torch.cdist(x, embed).argmin(-1)` computes
    /// it, and the gap to the runner-up distance.
    ///
    /// With 2048 rows cdist takes its matrix-product path (`_euclidean_dist`): one product of
    /// `[−2x, ‖x‖², 1]` with `[e, 1, ‖e‖²]`, so d² = ‖x‖² − 2x·e + ‖e‖² in f32, then
    /// `clamp_min(0).sqrt()`. Following that formula rather than the exact ‖x − e‖ keeps its
    /// dominant rounding (cancellation against ‖x‖² + ‖e‖²), and sqrt can merge neighbouring
    /// d² values into exact ties, which `argmin` breaks towards the lowest index, as here.
    /// The summation order inside the product still differs from MKL's, so a decision whose
    /// margin is at that rounding level (~1e-7·(‖x‖² + ‖e‖²)) could go either way: the
    /// returned gaps make such near-ties visible.
    fn nearest(cb: &Codebook, x: &[f32], rows: usize, dim: usize, threads: usize) -> (Vec<usize>, Vec<f32>) {
        nearest_rows(&cb.rows, x, rows, dim, threads)
    }
}

// ---------------------------------------------------------------------------------------------
// The encoder
// ---------------------------------------------------------------------------------------------

/// Intermediate results of one encode, time-major `[rows, channels]` (the reference's
/// channels-first tensors transposed).
#[derive(Debug, Clone, Default)]
pub struct EncoderTrace {
    /// `[T25, hidden]`: conv-stack output (`encoder.encoder`), 25 Hz at full size.
    pub conv_out: Vec<f32>,
    /// `[T25, hidden]`: encoder-transformer output.
    pub transformer_out: Vec<f32>,
    /// `[T12, hidden]`: the pre-quantizer latent (downsample output), 12.5 Hz.
    pub latent: Vec<f32>,
    /// Rows of `conv_out` / `transformer_out`.
    pub conv_frames: usize,
    /// Rows of `latent` (before the wrapper keeps `ceil(N / 1920)` of them).
    pub latent_frames: usize,
    /// `[frames, num_codebooks]`, aligned with the codes: how much farther the runner-up
    /// codebook row was than the chosen one (reference distance metric). Near zero means
    /// the decision is a near-tie that rounding could flip.
    pub margins: Vec<f32>,
}

/// The speech tokenizer's encoder. Immutable after loading (`Send + Sync`); `encode` may
/// run from several threads at once.
pub struct CodecEncoder {
    hidden: usize,
    codebook_dim: usize,
    num_codebooks: usize,
    num_semantic: usize,
    sample_rate: u32,
    /// Input samples per output frame (`encode_downsample_rate`, 1920).
    samples_per_frame: usize,
    /// Samples per conv-stack row (product of the strides, 960).
    conv_hop: usize,
    stages: Vec<Stage>,
    transformer: Transformer,
    /// `None` when the conv stack already runs at the frame rate (Mimi then builds none).
    downsample: Option<MimiConv>,
    semantic: Rvq,
    acoustic: Rvq,
    threads: usize,
}

impl std::fmt::Debug for CodecEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecEncoder")
            .field("hidden", &self.hidden)
            .field("num_codebooks", &self.num_codebooks)
            .field("samples_per_frame", &self.samples_per_frame)
            .field("conv_hop", &self.conv_hop)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl CodecEncoder {
    /// The encoder of an opened checkpoint (`speech_tokenizer/`).
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::load(&ckpt.speech_config, &ckpt.speech_weights)
    }

    /// Builds the encoder from `encoder.*` tensors, every shape checked against `cfg`.
    /// Acoustic codebooks beyond the `encoder_valid_num_quantizers` kept are not read.
    pub fn load(cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let e = &cfg.encoder_config;
        // 1. What this implementation covers (the official tokenizer config is all of it).
        let pad = check_conv_stack_config(e)?;

        // 2. Conv stack, mirroring `MimiEncoder.__init__` (its ELU modules take list slots,
        //    which is why the conv tensors sit at layers 0, 3, 6, … at full size).
        let mut stages = Vec::new();
        let mut slot = 0; // `len(model)` in the reference
        let conv = |slot: usize, cin, cout, k, s, elu| -> Result<Stage> {
            let c = MimiConv::load(src, &format!("encoder.encoder.layers.{slot}.conv"), cin, cout, k, s, 1, pad, true)?;
            Ok(Stage::Conv { conv: c, elu })
        };
        stages.push(conv(slot, e.audio_channels, e.num_filters, e.kernel_size, 1, false)?);
        slot += 1;
        let mut width = e.num_filters;
        for &ratio in e.upsampling_ratios.iter().rev() {
            for j in 0..e.num_residual_layers {
                let p = format!("encoder.encoder.layers.{slot}");
                let dilation = e.dilation_growth_rate.checked_pow(j as u32).filter(|&d| d > 0).ok_or_else(|| {
                    Error::bad_config(format!("encoder_config: residual dilation {}^{j} is out of range", e.dilation_growth_rate))
                })?;
                let inner = width / e.compress;
                let (k1, k2) = (e.residual_kernel_size, RESIDUAL_POINTWISE_KERNEL);
                stages.push(Stage::Res(ResBlock {
                    conv1: MimiConv::load(src, &format!("{p}.block.1.conv"), width, inner, k1, 1, dilation, pad, true)?,
                    conv2: MimiConv::load(src, &format!("{p}.block.3.conv"), inner, width, k2, 1, 1, pad, true)?,
                    shortcut: if e.use_conv_shortcut {
                        Some(MimiConv::load(src, &format!("{p}.shortcut.conv"), width, width, 1, 1, 1, pad, true)?)
                    } else {
                        None
                    },
                }));
                slot += 1;
            }
            slot += 1; // nn.ELU()
            stages.push(conv(slot, width, 2 * width, 2 * ratio, ratio, true)?);
            slot += 1;
            width *= 2;
        }
        slot += 1; // nn.ELU()
        stages.push(conv(slot, width, e.hidden_size, e.last_kernel_size, 1, true)?);

        // 3. Transformer and downsample (`MimiModel.__init__`: kernel 2·int(25 / 12.5),
        //    stride 2, replicate, no bias).
        let transformer = Transformer::load(src, "encoder.encoder_transformer", e)?;
        let downsample = match e.downsample_kernel() {
            Some(k) => Some(MimiConv::load(
                src,
                "encoder.downsample.conv",
                e.hidden_size,
                e.hidden_size,
                k,
                DOWNSAMPLE_STRIDE,
                1,
                EdgePad::Replicate,
                false,
            )?),
            None => None,
        };

        // 4. Quantizers: all semantic codebooks, and the acoustic ones the wrapper keeps.
        let (num_codebooks, num_semantic, acoustic_used) = kept_quantizers(cfg)?;
        let q = "encoder.quantizer";
        let semantic = Rvq::load(src, &format!("{q}.semantic_residual_vector_quantizer"), e, 0..num_semantic)?;
        let acoustic = Rvq::load(src, &format!("{q}.acoustic_residual_vector_quantizer"), e, 0..acoustic_used)?;

        let conv_hop: usize = e.upsampling_ratios.iter().product();
        Ok(CodecEncoder {
            hidden: e.hidden_size,
            codebook_dim: e.codebook_dim(),
            num_codebooks,
            num_semantic,
            sample_rate: cfg.input_sample_rate,
            samples_per_frame: cfg.encode_downsample_rate as usize,
            conv_hop,
            stages,
            transformer,
            downsample,
            semantic,
            acoustic,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    }

    /// Codebooks per frame (16).
    pub fn num_codebooks(&self) -> usize {
        self.num_codebooks
    }

    /// Width of the latent and of the transformer (`encoder_config.hidden_size`).
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Sample rate `encode` expects (24000). It does not resample.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Input samples per frame (1920).
    pub fn samples_per_frame(&self) -> usize {
        self.samples_per_frame
    }

    /// Frames `encode` returns for `samples` input samples: `ceil(samples / 1920)`.
    pub fn frames_for(&self, samples: usize) -> usize {
        samples.div_ceil(self.samples_per_frame)
    }

    /// Threads each encode may use (default: all available).
    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Encodes a mono waveform at [`sample_rate`](Self::sample_rate) (float PCM, as the
    /// reference loads it: int16 / 32768) into codes, row-major `[frames, num_codebooks]`
    /// with `frames = ceil(N / 1920)`: the layout [`CodecDecoder`](super::CodecDecoder)
    /// takes.
    ///
    /// # Errors
    /// `InvalidArgument` if `wav` is empty or holds a non-finite sample.
    pub fn encode(&self, wav: &[f32]) -> Result<Vec<u32>> {
        self.encode_traced(wav).map(|(codes, _)| codes)
    }

    /// [`encode`](Self::encode), also returning the intermediate activations and margins.
    pub fn encode_traced(&self, wav: &[f32]) -> Result<(Vec<u32>, EncoderTrace)> {
        // 1. Input checks: the reference would happily return codes for NaN; we refuse.
        if wav.is_empty() {
            return Err(Error::invalid_argument("codec encode: the waveform is empty"));
        }
        if let Some(i) = wav.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(format!("codec encode: sample {i} is not finite ({})", wav[i])));
        }
        // 2. Conv stack, block by block → 25 Hz.
        let (conv_out, conv_frames) = self.conv_stack(wav);
        // 3. Transformer.
        let transformer_out = self.transformer.forward(&conv_out, conv_frames, self.threads);
        // 4. Downsample → the latent.
        let (latent, latent_frames) = self.downsample(&transformer_out, conv_frames);
        // 5. Quantize, keeping ceil(N / 1920) frames (`code[..., :-(-mask.sum() // 1920)]`; a
        //    slice, so never more than the encoder produced).
        let frames = self.frames_for(wav.len()).min(latent_frames);
        let (codes, margins) = self.quantize_rows(&latent[..frames * self.hidden], frames);
        let trace = EncoderTrace { conv_out, transformer_out, latent, conv_frames, latent_frames, margins };
        Ok((codes, trace))
    }

    /// Step 4 alone: codes `[rows, num_codebooks]` of a latent `[rows, hidden]` (for
    /// checking the quantizer against a reference latent).
    pub fn quantize(&self, latent: &[f32]) -> Result<Vec<u32>> {
        self.quantize_traced(latent).map(|(codes, _)| codes)
    }

    /// [`quantize`](Self::quantize), also returning the margins (see [`EncoderTrace::margins`]).
    pub fn quantize_traced(&self, latent: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        if !latent.len().is_multiple_of(self.hidden) {
            return Err(Error::invalid_argument(format!(
                "codec quantize: {} values is not a whole number of {}-wide rows",
                latent.len(),
                self.hidden
            )));
        }
        Ok(self.quantize_rows(latent, latent.len() / self.hidden))
    }

    /// Step 2 alone: the encoder transformer on `x [rows, hidden]`.
    pub fn transformer_forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        if !x.len().is_multiple_of(self.hidden) {
            return Err(Error::invalid_argument(format!(
                "codec encoder transformer: {} values is not a whole number of {}-wide rows",
                x.len(),
                self.hidden
            )));
        }
        Ok(self.transformer.forward(x, x.len() / self.hidden, self.threads))
    }

    /// The conv stack over `wav` in blocks of [`CONV_BLOCK_HOPS`] hops → `([T25, hidden], T25)`.
    fn conv_stack(&self, wav: &[f32]) -> (Vec<f32>, usize) {
        self.conv_stack_blocked(wav, CONV_BLOCK_HOPS * self.conv_hop)
    }

    /// The conv stack with an explicit block length (a multiple of the total stride, so every
    /// block is whole strides at every stage).
    ///
    /// Each stage keeps a queue of input rows and runs once it holds enough for
    /// [`MIN_CALL_ROWS`] output rows (always whole strides), or at the end. The full-rate
    /// stages (small weights, wide activations) so run once per block, cache-sized; the
    /// 25 Hz stages (weights of up to 1024 × 8192) batch several blocks, so each weight
    /// matrix is streamed from memory once per 64 rows instead of once per 16.
    fn conv_stack_blocked(&self, wav: &[f32], block: usize) -> (Vec<f32>, usize) {
        debug_assert!(block > 0 && block.is_multiple_of(self.conv_hop));
        let n = self.stages.len();
        let mut streams = vec![StageStream::default(); n];
        // queues[i]: rows waiting for stage i; queues[n]: the stack's output.
        let mut queues: Vec<Vec<f32>> = vec![Vec::new(); n + 1];
        queues[n].reserve(wav.len().div_ceil(self.conv_hop) * self.hidden);
        for (b, chunk) in wav.chunks(block).enumerate() {
            let last = (b + 1) * block >= wav.len();
            queues[0].extend_from_slice(chunk);
            for (i, (stage, st)) in self.stages.iter().zip(streams.iter_mut()).enumerate() {
                let (cin, stride) = (stage.cin(), stage.stride());
                let queued = queues[i].len() / cin;
                let take = if last {
                    queued
                } else if queued >= MIN_CALL_ROWS * stride {
                    queued - queued % stride
                } else {
                    continue;
                };
                let rest = queues[i].split_off(take * cin);
                let input = std::mem::replace(&mut queues[i], rest);
                let (y, _) = stage.forward(&input, take, st, last, self.threads);
                queues[i + 1].extend_from_slice(&y);
            }
        }
        let out = queues.pop().unwrap_or_default();
        let rows = out.len() / self.hidden;
        (out, rows)
    }

    /// `encoder.downsample` (one pass: it is cheap at 25 Hz) → `([T12, hidden], T12)`.
    fn downsample(&self, x: &[f32], rows: usize) -> (Vec<f32>, usize) {
        match &self.downsample {
            Some(conv) => {
                let y = conv.forward(x, rows, false, &mut ConvStream::default(), true, self.threads);
                let n = y.len() / self.hidden;
                (y, n)
            }
            None => (x.to_vec(), rows),
        }
    }

    /// `MimiSplitResidualVectorQuantizer.encode` cut to the kept codebooks: semantic codes
    /// then acoustic codes, both from the same latent.
    fn quantize_rows(&self, latent: &[f32], rows: usize) -> (Vec<u32>, Vec<f32>) {
        let nq = self.num_codebooks;
        let mut codes = vec![0u32; rows * nq];
        let mut margins = vec![0f32; rows * nq];
        if rows == 0 {
            return (codes, margins);
        }
        // The semantic RVQ may hold more codebooks than are kept (if fewer than
        // num_semantic codebooks were asked for): quantize into a wide buffer, then cut.
        let ns = self.num_semantic;
        let width = ns.max(nq);
        let (mut all, mut all_m) = (vec![0u32; rows * width], vec![0f32; rows * width]);
        self.semantic.encode(latent, rows, self.codebook_dim, &mut all, &mut all_m, 0, width, self.threads);
        if nq > ns {
            self.acoustic.encode(latent, rows, self.codebook_dim, &mut all, &mut all_m, ns, width, self.threads);
        }
        for t in 0..rows {
            codes[t * nq..(t + 1) * nq].copy_from_slice(&all[t * width..t * width + nq]);
            margins[t * nq..(t + 1) * nq].copy_from_slice(&all_m[t * width..t * width + nq]);
        }
        (codes, margins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive causal conv over the whole input (zeros or replicate), for the blocked one.
    fn naive(conv: &MimiConv, x: &[f32], rows: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (cin, cout, k, s, d) = (conv.cin, conv.cout, conv.kernel, conv.stride, conv.dilation);
        let pad = conv.left_pad();
        let out_rows = rows.div_ceil(s);
        let at = |r: isize, c: usize| -> f32 {
            let r = if conv.pad == EdgePad::Replicate { r.clamp(0, rows as isize - 1) } else { r };
            if r < 0 || r >= rows as isize { 0.0 } else { x[r as usize * cin + c] }
        };
        let mut y = vec![0.0; out_rows * cout];
        for t in 0..out_rows {
            for o in 0..cout {
                let mut acc = bias[o] as f64;
                for j in 0..k {
                    for c in 0..cin {
                        let r = (t * s + j * d) as isize - pad as isize;
                        acc += w[(o * cin + c) * k + j] as f64 * at(r, c) as f64;
                    }
                }
                y[t * cout + o] = acc as f32;
            }
        }
        y
    }

    struct Map(std::collections::HashMap<String, Vec<f32>>);
    impl TensorSource for Map {
        fn tensor(&self, name: &str, _shape: &[usize]) -> Result<Vec<f32>> {
            Ok(self.0[name].clone())
        }
    }

    #[test]
    fn blocked_conv_equals_one_pass_for_every_stride_dilation_and_pad() {
        for &(cin, cout, k, s, d, pad) in &[
            (3, 5, 7, 1, 1, EdgePad::Zeros),
            (3, 4, 8, 4, 1, EdgePad::Zeros),
            (2, 3, 10, 5, 1, EdgePad::Zeros),
            (4, 2, 3, 1, 2, EdgePad::Zeros),
            (3, 3, 4, 2, 1, EdgePad::Replicate),
        ] {
            let n = cout * cin * k;
            let w: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let b: Vec<f32> = (0..cout).map(|i| i as f32 * 0.01).collect();
            let src = Map([("c.weight".to_string(), w.clone()), ("c.bias".to_string(), b.clone())].into());
            let conv = MimiConv::load(&src, "c", cin, cout, k, s, d, pad, true).unwrap();
            for rows in [1, s, 3 * s + 1, 7 * s, 7 * s + s - 1] {
                let x: Vec<f32> = (0..rows * cin).map(|i| (i as f32 * 0.37).sin()).collect();
                let want = naive(&conv, &x, rows, &w, &b);
                let one = conv.forward(&x, rows, false, &mut ConvStream::default(), true, 1);
                assert_eq!(one.len(), want.len());
                for (a, b) in one.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b} (k{k} s{s} d{d} rows {rows})");
                }
                if pad == EdgePad::Zeros {
                    // Blocks of 2 strides, then the rest.
                    let mut st = ConvStream::default();
                    let mut got = Vec::new();
                    let mut start = 0;
                    while start < rows {
                        let len = (2 * s).min(rows - start);
                        let last = start + len >= rows;
                        got.extend(conv.forward(&x[start * cin..(start + len) * cin], len, false, &mut st, last, 1));
                        start += len;
                    }
                    assert_eq!(got.len(), want.len());
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-5);
                    }
                }
            }
        }
    }

    /// The audio op set's padded conv (what the encoder will run on any backend) against the
    /// encoder's own conv and the naive one: same shapes, pads, strides and dilations.
    #[test]
    fn the_op_sets_padded_conv_equals_the_encoders_conv() {
        use crate::backend::Backend;
        use crate::backend::audio::{AudioBackend, ConvShape};
        use crate::backend::cpu::CpuBackend;
        use crate::model::codec::conv::Conv;
        let cpu = CpuBackend::new(2);
        let mut st = cpu.new_stream().unwrap();
        for &(cin, cout, k, s, d, pad) in &[
            (3, 5, 7, 1, 1, EdgePad::Zeros),
            (3, 4, 8, 4, 1, EdgePad::Zeros),
            (2, 3, 10, 5, 1, EdgePad::Zeros),
            (4, 2, 3, 1, 2, EdgePad::Zeros),
            (3, 3, 4, 2, 1, EdgePad::Replicate),
            (5, 3, 3, 2, 3, EdgePad::Replicate),
        ] {
            let n = cout * cin * k;
            let w: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let b: Vec<f32> = (0..cout).map(|i| i as f32 * 0.01).collect();
            let src = Map([("c.weight".to_string(), w.clone()), ("c.bias".to_string(), b.clone())].into());
            let conv = MimiConv::load(&src, "c", cin, cout, k, s, d, pad, true).unwrap();
            let op = Conv::load(&cpu, &src, "c", cin, cout, k, d).unwrap();
            for rows in [1, s, 3 * s + 1, 7 * s, 7 * s + s - 1] {
                let x: Vec<f32> = (0..rows * cin).map(|i| (i as f32 * 0.37).sin()).collect();
                let want = naive(&conv, &x, rows, &w, &b);
                let theirs = conv.forward(&x, rows, false, &mut ConvStream::default(), true, 1);
                let mut y = vec![f32::NAN; rows.div_ceil(s) * cout];
                let out = op.forward_padded(&cpu, &mut st, &x, rows, s, pad, &mut y).unwrap();
                assert_eq!(out, rows.div_ceil(s));
                for ((a, t), n) in y.iter().zip(&theirs).zip(&want) {
                    assert!((a - n).abs() < 1e-5, "{a} vs naive {n} (k{k} s{s} d{d} rows {rows})");
                    assert!((a - t).abs() < 1e-5, "{a} vs the encoder's {t} (k{k} s{s} d{d} rows {rows})");
                }
            }
            // Not a causal conv: a kernel spanning fewer rows than the stride.
            let short = ConvShape { cin, cout, kernel: 1, dilation: 1 };
            let w1 = cpu.upload_audio_weight(&vec![0.5; cin * cout], &[cout, cin]).unwrap();
            let x = vec![0.0; 4 * cin];
            let mut y = vec![0.0; 4 * cout];
            assert!(cpu.padded_conv(&mut st, &x, 4, short, 2, EdgePad::Zeros, &w1, None, &mut y).is_err());
            assert!(cpu.padded_conv(&mut st, &x, 0, short, 1, EdgePad::Zeros, &w1, None, &mut y).is_err(), "no rows");
        }
    }

    #[test]
    fn conv_stack_result_does_not_depend_on_the_block_length() {
        // Up to rounding: gemm's summation order depends a little on the row count of the
        // product (measured: 1 ulp), so blocks and one pass agree to ~1e-7, not bitwise.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base/speech_tokenizer");
        let cfg = SpeechTokenizerConfig::from_file(&dir.join("config.json")).unwrap();
        let weights = crate::model::SafeTensorsFile::open(&dir.join("model.safetensors")).unwrap();
        let enc = CodecEncoder::load(&cfg, &weights).unwrap();
        let n = 37 * enc.conv_hop + 123;
        let wav: Vec<f32> = (0..n).map(|i| 0.4 * (i as f32 * 0.021).sin() * (i as f32 * 0.0007).cos()).collect();
        let (whole, rows) = enc.conv_stack_blocked(&wav, n.next_multiple_of(enc.conv_hop));
        assert_eq!(rows, n.div_ceil(enc.conv_hop));
        for hops in [1, 3, CONV_BLOCK_HOPS] {
            let (blocked, r) = enc.conv_stack_blocked(&wav, hops * enc.conv_hop);
            assert_eq!(r, rows);
            let scale = whole.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let worst = blocked.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1e-6 * scale, "blocks of {hops} hops differ from one pass by {worst:e} (scale {scale:e})");
        }
    }

    #[test]
    fn elu_is_alpha_one_within_one_ulp_of_expm1() {
        assert_eq!(elu1(2.0), 2.0);
        assert_eq!(elu1(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert_eq!(elu1(0.0), 0.0);
        assert_eq!(elu1(-1e30), -1.0);
        let mut worst = (0, 0.0);
        let mut check = |x: f32| {
            let want = (x as f64).exp_m1() as f32;
            let got = elu1(x);
            let ulps = if got == want { 0 } else { (got.to_bits() as i64 - want.to_bits() as i64).abs() };
            if ulps > worst.0 {
                worst = (ulps, x);
            }
        };
        for i in 0..2_000_000u32 {
            check(-(i as f32) * 1.1e-5); // [−22, 0]
        }
        let mut x = -1e-3f32;
        while x < -1e-40 {
            check(x); // tiny magnitudes down to subnormals
            x *= 0.83;
        }
        assert!(worst.0 <= 1, "ELU is {} ulp from expm1 at {}", worst.0, worst.1);
    }
}
