//! The codec encoder written over the audio op set, for the GPU ([`CodecEncoderNet`]): the
//! SEANet convolution stack (24 kHz → 25 Hz, most of an encode's cost), the transformer (full
//! causal attention at 25 Hz), the stride-2 downsample and the split residual quantizer.
//!
//! [`CodecEncoder`](super::CodecEncoder) (CPU) stays the oracle and the CPU path: it runs the
//! stack block by block with a little history per conv to keep its buffers cache-sized; here
//! the whole signal goes through each layer at once ([`AudioBackend::padded_conv`], which
//! pads the edges exactly as `MimiConv1d` does), so the two differ only in summation order.
//! The codes are decided by [`AudioBackend::nearest_code`] on the reference's distance
//! formula; where the two backends' roundings differ, only a near-tie (a margin at the
//! rounding level) can flip, and the margins say where.

use super::conv::Conv;
use super::encoder::{check_conv_stack_config, kept_quantizers};
use super::{TensorSource, load_vec, materialize_codebook};
use crate::backend::audio::{Activation, AudioBackend, ConvShape, EdgePad};
use crate::backend::cpu_audio::augmented_codebook;
use crate::backend::{AttentionShape, Rope};
use crate::error::{Error, Result};
use crate::model::config::{MimiEncoderConfig, SpeechTokenizerConfig};

/// Kernel of a residual block's second conv (module constant).
const RESIDUAL_POINTWISE_KERNEL: usize = 1;

/// One entry of the stack; the ELU modules are folded into the conv after them.
enum Stage<B: AudioBackend> {
    /// A conv (stride ≥ 1), ELU on its input first when `elu`.
    Conv { conv: Conv<B>, stride: usize, elu: bool },
    /// `MimiResnetBlock`: ELU → conv1 → ELU → conv2, plus the identity or a k1 shortcut.
    Res { conv1: Conv<B>, conv2: Conv<B>, shortcut: Option<Conv<B>> },
}

/// The encoder's conv stack on backend `B`.
pub struct EncoderConvStack<B: AudioBackend> {
    backend: B,
    stages: Vec<Stage<B>>,
    pad: EdgePad,
    hidden: usize,
}

impl<B: AudioBackend> std::fmt::Debug for EncoderConvStack<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderConvStack")
            .field("backend", &self.backend.name())
            .field("stages", &self.stages.len())
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl<B: AudioBackend> EncoderConvStack<B> {
    /// Loads `encoder.encoder.layers.*` onto `backend`, mirroring `MimiEncoder.__init__`
    /// (its ELU modules take list slots, so the conv tensors sit at layers 0, 3, 6, … at full
    /// size), with the checks of [`CodecEncoder::load`](super::CodecEncoder::load).
    pub fn load(backend: B, cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let e = &cfg.encoder_config;
        let pad = check_conv_stack_config(e)?;
        let b = &backend;
        let causal = |kernel: usize, dilation: usize, stride: usize, what: &str| -> Result<()> {
            // The causal padding (k − 1)·d + 1 − stride must not be negative.
            if kernel == 0 || stride == 0 || dilation == 0 || (kernel - 1) * dilation + 1 < stride {
                return Err(Error::bad_config(format!(
                    "{what}: kernel {kernel}, stride {stride}, dilation {dilation} is not a valid causal conv"
                )));
            }
            Ok(())
        };
        let mut stages = Vec::new();
        let mut slot = 0; // `len(model)` in the reference
        let conv = |slot: usize, cin: usize, cout: usize, k: usize, stride: usize, elu: bool| -> Result<Stage<B>> {
            let prefix = format!("encoder.encoder.layers.{slot}.conv");
            causal(k, 1, stride, &prefix)?;
            Ok(Stage::Conv { conv: Conv::load(b, src, &prefix, cin, cout, k, 1)?, stride, elu })
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
                let k1 = e.residual_kernel_size;
                causal(k1, dilation, 1, &p)?;
                stages.push(Stage::Res {
                    conv1: Conv::load(b, src, &format!("{p}.block.1.conv"), width, inner, k1, dilation)?,
                    conv2: Conv::load(b, src, &format!("{p}.block.3.conv"), inner, width, RESIDUAL_POINTWISE_KERNEL, 1)?,
                    shortcut: if e.use_conv_shortcut {
                        Some(Conv::load(b, src, &format!("{p}.shortcut.conv"), width, width, 1, 1)?)
                    } else {
                        None
                    },
                });
                slot += 1;
            }
            slot += 1; // nn.ELU()
            stages.push(conv(slot, width, 2 * width, 2 * ratio, ratio, true)?);
            slot += 1;
            width *= 2;
        }
        slot += 1; // nn.ELU()
        stages.push(conv(slot, width, e.hidden_size, e.last_kernel_size, 1, true)?);
        Ok(EncoderConvStack { backend, stages, pad, hidden: e.hidden_size })
    }

    /// The stack's output for a 24 kHz mono waveform: `([T25, hidden], T25)` on the host, as
    /// [`EncoderTrace::conv_out`](super::encoder::EncoderTrace) / `conv_frames`.
    ///
    /// Errors (`InvalidArgument`): an empty waveform, a non-finite sample.
    pub fn forward(&self, wav: &[f32]) -> Result<(Vec<f32>, usize)> {
        let b = &self.backend;
        let mut s = b.new_stream()?;
        let (out, rows) = self.forward_on(&mut s, wav)?;
        let mut host = vec![0f32; rows * self.hidden];
        b.read(&mut s, &out, 0, &mut host)?;
        Ok((host, rows))
    }

    /// [`forward`](Self::forward) left on the backend: the `[T25, hidden]` buffer and `T25`.
    pub fn forward_on(&self, s: &mut B::Stream, wav: &[f32]) -> Result<(B::Buffer, usize)> {
        let b = &self.backend;
        if wav.is_empty() {
            return Err(Error::invalid_argument("codec encode: the waveform is empty"));
        }
        if let Some(i) = wav.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(format!("codec encode: sample {i} is not finite ({})", wav[i])));
        }
        let mut rows = wav.len();
        let mut x = b.alloc(rows)?;
        b.write(s, &mut x, 0, wav)?;
        for stage in &self.stages {
            (x, rows) = match stage {
                Stage::Conv { conv, stride, elu } => {
                    let input = if *elu { Some(self.elu_copy(s, &x, rows * conv.shape.cin)?) } else { None };
                    let out = rows.div_ceil(*stride);
                    let mut y = b.alloc(out * conv.shape.cout)?;
                    conv.forward_padded(b, s, input.as_ref().unwrap_or(&x), rows, *stride, self.pad, &mut y)?;
                    (y, out)
                }
                Stage::Res { conv1, conv2, shortcut } => {
                    // Stride 1 throughout: the rows are kept.
                    let a = self.elu_copy(s, &x, rows * conv1.shape.cin)?;
                    let mut h = b.alloc(rows * conv1.shape.cout)?;
                    conv1.forward_padded(b, s, &a, rows, 1, self.pad, &mut h)?;
                    b.activation(s, &mut h, rows * conv1.shape.cout, Activation::Elu)?;
                    let width = conv2.shape.cout;
                    let mut h2 = b.alloc(rows * width)?;
                    conv2.forward_padded(b, s, &h, rows, 1, self.pad, &mut h2)?;
                    // `residual + hidden_states`.
                    let mut out = match shortcut {
                        Some(sc) => {
                            let mut r = b.alloc(rows * width)?;
                            sc.forward_padded(b, s, &x, rows, 1, self.pad, &mut r)?;
                            r
                        }
                        None => x,
                    };
                    b.add(s, &mut out, &h2, rows * width)?;
                    (out, rows)
                }
            };
        }
        Ok((x, rows))
    }

    /// ELU of the first `len` values of `x`, in a new buffer (`x` stays: the residual).
    fn elu_copy(&self, s: &mut B::Stream, x: &B::Buffer, len: usize) -> Result<B::Buffer> {
        let b = &self.backend;
        let mut a = b.alloc(len)?;
        b.copy(s, x, 0, &mut a, 0, len)?;
        b.activation(s, &mut a, len, Activation::Elu)?;
        Ok(a)
    }
}

/// One `MimiTransformerLayer`.
struct Layer<B: AudioBackend> {
    input_norm_w: B::AudioWeight,
    input_norm_b: B::AudioWeight,
    q_proj: Conv<B>,
    k_proj: Conv<B>,
    v_proj: Conv<B>,
    o_proj: Conv<B>,
    attn_scale: B::AudioWeight,
    post_norm_w: B::AudioWeight,
    post_norm_b: B::AudioWeight,
    fc1: Conv<B>,
    fc2: Conv<B>,
    mlp_scale: B::AudioWeight,
}

/// `MimiTransformerModel` as the encoder uses it (`encoder.encoder_transformer`): pre-LayerNorm
/// layers with full causal self-attention (RoPE from position 0; the config's sliding window
/// is not applied by the official SDPA path, see [`CodecEncoder`](super::CodecEncoder)) and a
/// GELU MLP, each branch scaled by its layer scale. No final norm.
pub struct EncoderTransformer<B: AudioBackend> {
    backend: B,
    shape: AttentionShape,
    hidden: usize,
    intermediate: usize,
    eps: f32,
    rope: Rope,
    layers: Vec<Layer<B>>,
}

impl<B: AudioBackend> std::fmt::Debug for EncoderTransformer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderTransformer")
            .field("backend", &self.backend.name())
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl<B: AudioBackend> EncoderTransformer<B> {
    /// Loads `encoder.encoder_transformer.*` onto `backend` with the checks of the CPU encoder.
    pub fn load(backend: B, cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let e: &MimiEncoderConfig = &cfg.encoder_config;
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
        let b = &backend;
        let vec = |name: &str| -> Result<B::AudioWeight> { b.upload_audio_weight(&load_vec(src, name, &[hidden])?, &[hidden]) };
        let linear = |name: &str, n_in: usize, n_out: usize, bias: bool| Conv::load_linear(b, src, name, n_in, n_out, bias);
        let mut layers = Vec::with_capacity(e.num_hidden_layers);
        for i in 0..e.num_hidden_layers {
            let p = format!("encoder.encoder_transformer.layers.{i}");
            layers.push(Layer {
                input_norm_w: vec(&format!("{p}.input_layernorm.weight"))?,
                input_norm_b: vec(&format!("{p}.input_layernorm.bias"))?,
                q_proj: linear(&format!("{p}.self_attn.q_proj"), hidden, q_dim, bias)?,
                k_proj: linear(&format!("{p}.self_attn.k_proj"), hidden, kv_dim, bias)?,
                v_proj: linear(&format!("{p}.self_attn.v_proj"), hidden, kv_dim, bias)?,
                o_proj: linear(&format!("{p}.self_attn.o_proj"), q_dim, hidden, bias)?,
                attn_scale: vec(&format!("{p}.self_attn_layer_scale.scale"))?,
                post_norm_w: vec(&format!("{p}.post_attention_layernorm.weight"))?,
                post_norm_b: vec(&format!("{p}.post_attention_layernorm.bias"))?,
                // `MimiMLP`: fc1/fc2 without bias.
                fc1: linear(&format!("{p}.mlp.fc1"), hidden, inter, false)?,
                fc2: linear(&format!("{p}.mlp.fc2"), inter, hidden, false)?,
                mlp_scale: vec(&format!("{p}.mlp_layer_scale.scale"))?,
            });
        }
        Ok(EncoderTransformer {
            backend,
            shape: AttentionShape { num_heads: heads, num_kv_heads: kv_heads, head_dim },
            hidden,
            intermediate: inter,
            eps: e.norm_eps as f32,
            rope: Rope { theta: e.rope_theta as f32, head_dim },
            layers,
        })
    }

    /// `x [rows, hidden]` on the host → `last_hidden_state [rows, hidden]` on the host.
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let b = &self.backend;
        if x.len() != rows * self.hidden {
            return Err(Error::invalid_argument(format!(
                "encoder transformer: {} values for {rows} rows of {}",
                x.len(),
                self.hidden
            )));
        }
        let mut s = b.new_stream()?;
        let mut h = b.alloc((rows * self.hidden).max(1))?;
        b.write(&mut s, &mut h, 0, x)?;
        self.forward_on(&mut s, &mut h, rows)?;
        let mut out = vec![0f32; rows * self.hidden];
        b.read(&mut s, &h, 0, &mut out)?;
        Ok(out)
    }

    /// The layers over `x: [rows, hidden]` on the backend, in place (the residual stream).
    /// Every query sees every earlier row: on the GPU a block holds a row's scores in shared
    /// memory, which bounds `rows` to about 12 000 (8 minutes at 25 Hz; references are at
    /// most 120 s, 3000 rows); longer gets the op's error.
    pub fn forward_on(&self, s: &mut B::Stream, x: &mut B::Buffer, rows: usize) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let b = &self.backend;
        let AttentionShape { num_heads, num_kv_heads, head_dim } = self.shape;
        let (q_dim, kv_dim, hidden, inter) = (num_heads * head_dim, num_kv_heads * head_dim, self.hidden, self.intermediate);
        let mut normed = b.alloc(rows * hidden)?;
        let mut q = b.alloc(rows * q_dim)?;
        let mut k = b.alloc(rows * kv_dim)?;
        let mut v = b.alloc(rows * kv_dim)?;
        let mut keys = b.alloc(rows * kv_dim)?;
        let mut values = b.alloc(rows * kv_dim)?;
        let mut attn = b.alloc(rows * q_dim)?;
        let mut proj = b.alloc(rows * hidden)?;
        let mut mlp = b.alloc(rows * inter)?;
        for layer in &self.layers {
            // 1. Attention: LayerNorm → q/k/v → RoPE (positions 0..rows) → causal attention
            //    over every earlier row (a window as long as the sequence) → o_proj → ×layer
            //    scale → residual.
            b.copy(s, x, 0, &mut normed, 0, rows * hidden)?;
            b.layer_norm(s, &mut normed, rows, &layer.input_norm_w, &layer.input_norm_b, self.eps)?;
            layer.q_proj.forward(b, s, &normed, rows, None, &mut q)?;
            layer.k_proj.forward(b, s, &normed, rows, None, &mut k)?;
            layer.v_proj.forward(b, s, &normed, rows, None, &mut v)?;
            b.rope(s, &mut q, rows, num_heads, self.rope, 0)?;
            b.rope(s, &mut k, rows, num_kv_heads, self.rope, 0)?;
            b.window_attention(s, &q, &k, &v, rows, self.shape, rows, &mut keys, &mut values, 0, &mut attn)?;
            layer.o_proj.forward(b, s, &attn, rows, None, &mut proj)?;
            b.scale_add(s, x, &proj, rows, &layer.attn_scale)?;
            // 2. MLP: LayerNorm → fc1 → GELU → fc2 → ×layer scale → residual.
            b.copy(s, x, 0, &mut normed, 0, rows * hidden)?;
            b.layer_norm(s, &mut normed, rows, &layer.post_norm_w, &layer.post_norm_b, self.eps)?;
            layer.fc1.forward(b, s, &normed, rows, None, &mut mlp)?;
            b.gelu(s, &mut mlp, rows * inter)?;
            layer.fc2.forward(b, s, &mlp, rows, None, &mut proj)?;
            b.scale_add(s, x, &proj, rows, &layer.mlp_scale)?;
        }
        Ok(())
    }
}

/// Stride of the downsample conv: a module constant in `MimiModel.__init__`, not config.
const DOWNSAMPLE_STRIDE: usize = 2;

/// A `MimiResidualVectorQuantizer`: an optional 1×1 input projection (no bias), then residual
/// quantization over its codebooks.
struct Rvq<B: AudioBackend> {
    input_proj: Option<Conv<B>>,
    /// Per codebook: `[entries, dim]` (to subtract the chosen rows) and the augmented
    /// `[entries, dim + 2]` (to find them).
    codebooks: Vec<(B::AudioWeight, B::AudioWeight)>,
}

impl<B: AudioBackend> Rvq<B> {
    fn load(
        b: &B,
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
            Some(Conv::from_torch(b, ConvShape::linear(hidden, vq), &w, None)?)
        } else {
            None
        };
        let mut codebooks = Vec::with_capacity(layer_indices.len());
        for i in layer_indices {
            let p = format!("{prefix}.layers.{i}.codebook");
            let sum = load_vec(src, &format!("{p}.embed_sum"), &[size, dim])?;
            let usage = load_vec(src, &format!("{p}.cluster_usage"), &[size])?;
            // `embed = embed_sum / cluster_usage.clamp(min=1e-5)`, materialised once.
            let embed = materialize_codebook(&sum, &usage, dim);
            codebooks.push((
                b.upload_audio_weight(&embed, &[size, dim])?,
                b.upload_audio_weight(&augmented_codebook(&embed, dim), &[size, dim + 2])?,
            ));
        }
        Ok(Rvq { input_proj, codebooks })
    }

    /// Codes of `latent [rows, hidden]` into columns `col..` of `codes` / `margins` (row
    /// stride `stride`).
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        b: &B,
        s: &mut B::Stream,
        latent: &B::Buffer,
        rows: usize,
        hidden: usize,
        dim: usize,
        minus_one: &B::AudioWeight,
        codes: &mut [u32],
        margins: &mut [f32],
        col: usize,
        stride: usize,
    ) -> Result<()> {
        // 1. `embeddings = input_proj(embeddings)` (a copy of the latent without one).
        let mut residual = b.alloc(rows * dim)?;
        match &self.input_proj {
            Some(p) => p.forward(b, s, latent, rows, None, &mut residual)?,
            None => b.copy(s, latent, 0, &mut residual, 0, rows * hidden)?,
        }
        // 2. Nearest row of codebook q for the running residual, then subtract it
        //    (residual + (−1)·e: the same rounding as residual − e).
        let (mut ids, mut gaps) = (vec![0u32; rows], vec![0f32; rows]);
        let mut chosen = b.alloc(rows * dim)?;
        for (q, (embed, augmented)) in self.codebooks.iter().enumerate() {
            b.nearest_code(s, &residual, rows, dim, augmented, &mut ids, &mut gaps)?;
            for t in 0..rows {
                codes[t * stride + col + q] = ids[t];
                margins[t * stride + col + q] = gaps[t];
            }
            b.codebook_sum(s, &[embed], &ids, &mut chosen)?;
            b.scale_add(s, &mut residual, &chosen, rows, minus_one)?;
        }
        Ok(())
    }
}

/// The whole codec encoder on backend `B`: waveform → reference codes.
pub struct CodecEncoderNet<B: AudioBackend> {
    backend: B,
    stack: EncoderConvStack<B>,
    transformer: EncoderTransformer<B>,
    downsample: Option<Conv<B>>,
    semantic: Rvq<B>,
    acoustic: Rvq<B>,
    /// `[codebook_dim]` of −1: subtracting a chosen codebook row as a layer-scaled add.
    minus_one: B::AudioWeight,
    hidden: usize,
    codebook_dim: usize,
    num_codebooks: usize,
    num_semantic: usize,
    samples_per_frame: usize,
}

impl<B: AudioBackend> std::fmt::Debug for CodecEncoderNet<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecEncoderNet")
            .field("backend", &self.backend.name())
            .field("num_codebooks", &self.num_codebooks)
            .finish()
    }
}

impl<B: AudioBackend + Clone> CodecEncoderNet<B> {
    /// Loads the encoder onto `backend` with the checks of [`CodecEncoder::load`](super::CodecEncoder::load).
    pub fn load(backend: B, cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let e = &cfg.encoder_config;
        let stack = EncoderConvStack::load(backend.clone(), cfg, src)?;
        let transformer = EncoderTransformer::load(backend.clone(), cfg, src)?;
        let b = &backend;
        let downsample = match e.downsample_kernel() {
            Some(k) => {
                let w = load_vec(src, "encoder.downsample.conv.weight", &[e.hidden_size, e.hidden_size, k])?;
                let shape = ConvShape { cin: e.hidden_size, cout: e.hidden_size, kernel: k, dilation: 1 };
                if k < DOWNSAMPLE_STRIDE {
                    return Err(Error::bad_config(format!("encoder downsample kernel {k} is shorter than its stride")));
                }
                Some(Conv::from_torch(b, shape, &w, None)?)
            }
            None => None,
        };
        let (num_codebooks, num_semantic, acoustic_used) = kept_quantizers(cfg)?;
        let q = "encoder.quantizer";
        let semantic = Rvq::load(b, src, &format!("{q}.semantic_residual_vector_quantizer"), e, 0..num_semantic)?;
        let acoustic = Rvq::load(b, src, &format!("{q}.acoustic_residual_vector_quantizer"), e, 0..acoustic_used)?;
        let dim = e.codebook_dim();
        let minus_one = b.upload_audio_weight(&vec![-1.0; dim], &[dim])?;
        Ok(CodecEncoderNet {
            stack,
            transformer,
            downsample,
            semantic,
            acoustic,
            minus_one,
            hidden: e.hidden_size,
            codebook_dim: dim,
            num_codebooks,
            num_semantic,
            samples_per_frame: cfg.encode_downsample_rate as usize,
            backend,
        })
    }
}

impl<B: AudioBackend> CodecEncoderNet<B> {
    /// Codebooks per frame (16).
    pub fn num_codebooks(&self) -> usize {
        self.num_codebooks
    }

    /// The reference codes of a 24 kHz mono waveform: `[ceil(N / 1920), num_codebooks]`,
    /// with each decision's margin (see [`EncoderTrace::margins`](super::encoder::EncoderTrace)).
    ///
    /// Errors (`InvalidArgument`): an empty waveform, a non-finite sample.
    pub fn encode_with_margins(&self, wav: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        let b = &self.backend;
        let mut s = b.new_stream()?;
        // 1. Conv stack → 25 Hz, 2. transformer (in place), 3. downsample → the latent.
        let (mut x, rows) = self.stack.forward_on(&mut s, wav)?;
        self.transformer.forward_on(&mut s, &mut x, rows)?;
        let (latent, latent_rows) = match &self.downsample {
            Some(conv) => {
                let out = rows.div_ceil(DOWNSAMPLE_STRIDE);
                let mut y = b.alloc(out * self.hidden)?;
                conv.forward_padded(b, &mut s, &x, rows, DOWNSAMPLE_STRIDE, EdgePad::Replicate, &mut y)?;
                (y, out)
            }
            None => (x, rows),
        };
        // 4. Quantize the first ceil(N / 1920) frames: semantic codes, then acoustic ones
        //    (the semantic quantizer may hold more codebooks than are kept).
        let frames = wav.len().div_ceil(self.samples_per_frame).min(latent_rows);
        let nq = self.num_codebooks;
        let width = self.num_semantic.max(nq);
        let (mut all, mut all_m) = (vec![0u32; frames * width], vec![0f32; frames * width]);
        if frames > 0 {
            let (h, d, m) = (self.hidden, self.codebook_dim, &self.minus_one);
            self.semantic.encode(b, &mut s, &latent, frames, h, d, m, &mut all, &mut all_m, 0, width)?;
            if nq > self.num_semantic {
                self.acoustic.encode(b, &mut s, &latent, frames, h, d, m, &mut all, &mut all_m, self.num_semantic, width)?;
            }
        }
        let mut codes = Vec::with_capacity(frames * nq);
        let mut margins = Vec::with_capacity(frames * nq);
        for t in 0..frames {
            codes.extend_from_slice(&all[t * width..t * width + nq]);
            margins.extend_from_slice(&all_m[t * width..t * width + nq]);
        }
        Ok((codes, margins))
    }
}

