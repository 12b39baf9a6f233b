//! The decoder's pre-transformer (`Qwen3TTSTokenizerV2DecoderTransformerModel`), written over
//! the audio op set.
//!
//! input_proj (bias) → N × [RMSNorm → sliding-window causal self-attention (RoPE, no QK-norm)
//! → ×layer_scale → residual; RMSNorm → SwiGLU → ×layer_scale → residual] → RMSNorm →
//! output_proj (bias). Each query sees the `sliding_window` most recent keys, itself
//! included (72: keys t−71..t).
//!
//! Because attention never looks further back than the window, the only state a stream
//! needs is the last `window − 1` rotated keys and values of every layer plus the running
//! position ([`TransformerState`]).

use super::conv::Conv;
use super::workspace::fit;
use super::{TensorSource, load_vec};
use crate::backend::audio::AudioBackend;
use crate::backend::{AttentionShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::model::config::SpeechDecoderConfig;

struct Layer<B: AudioBackend> {
    input_norm: B::AudioWeight,
    q_proj: Conv<B>,
    k_proj: Conv<B>,
    v_proj: Conv<B>,
    o_proj: Conv<B>,
    attn_scale: B::AudioWeight,
    post_norm: B::AudioWeight,
    gate_proj: Conv<B>,
    up_proj: Conv<B>,
    down_proj: Conv<B>,
    mlp_scale: B::AudioWeight,
}

/// The pre-transformer's weights and shape.
pub struct PreTransformer<B: AudioBackend> {
    shape: AttentionShape,
    hidden: usize,
    intermediate: usize,
    eps: f32,
    /// Keys visible to each query, itself included.
    window: usize,
    /// RoPE over the whole head, `inv_freq = 1 / θ^(2i/head_dim)` in f32 (the default init).
    rope: Rope,
    input_proj: Conv<B>,
    layers: Vec<Layer<B>>,
    norm: B::AudioWeight,
    output_proj: Conv<B>,
}

/// One layer's attention memory: the last ≤ `window − 1` rotated keys and values at the
/// front of buffers that grow to hold a call's new rows too.
struct KvWindow<B: Backend> {
    /// `[capacity, kv_heads·head_dim]`.
    keys: Option<B::Buffer>,
    values: Option<B::Buffer>,
    /// Rows at the front of `keys` / `values` that are remembered.
    past: usize,
}

/// Activations of one call, grown to the largest call seen.
struct Scratch<B: Backend> {
    h: Option<B::Buffer>,
    normed: Option<B::Buffer>,
    q: Option<B::Buffer>,
    k: Option<B::Buffer>,
    v: Option<B::Buffer>,
    attn: Option<B::Buffer>,
    proj: Option<B::Buffer>,
    gate: Option<B::Buffer>,
    up: Option<B::Buffer>,
}

/// Streaming state of the pre-transformer.
pub struct TransformerState<B: Backend> {
    layers: Vec<KvWindow<B>>,
    scratch: Scratch<B>,
    /// RoPE position of the next row (frames consumed so far).
    pub position: usize,
}

impl<B: Backend> TransformerState<B> {
    /// Back to the start of a signal: nothing remembered, position 0 (buffers kept).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|kv| kv.past = 0);
        self.position = 0;
    }
}

impl<B: AudioBackend> PreTransformer<B> {
    pub fn load(backend: &B, src: &dyn TensorSource, prefix: &str, cfg: &SpeechDecoderConfig) -> Result<Self> {
        let (latent, hidden) = (cfg.latent_dim, cfg.hidden_size);
        let (heads, kv_heads, head_dim) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || head_dim == 0 || head_dim % 2 != 0 {
            return Err(Error::bad_config(format!(
                "decoder_config: {heads} attention heads, {kv_heads} key/value heads and head_dim {head_dim} are inconsistent"
            )));
        }
        if cfg.sliding_window == 0 {
            return Err(Error::bad_config("decoder_config.sliding_window must be at least 1"));
        }
        if cfg.hidden_act != "silu" {
            return Err(Error::unsupported(format!(
                "decoder_config.hidden_act `{}`: only silu is implemented",
                cfg.hidden_act
            )));
        }
        let (q_dim, kv_dim, bias) = (heads * head_dim, kv_heads * head_dim, cfg.attention_bias);
        let inter = cfg.intermediate_size;
        let vec = |name: &str| -> Result<B::AudioWeight> { backend.upload_audio_weight(&load_vec(src, name, &[hidden])?, &[hidden]) };
        let linear = |name: &str, n_in: usize, n_out: usize, bias: bool| Conv::load_linear(backend, src, name, n_in, n_out, bias);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}.layers.{i}");
            layers.push(Layer {
                input_norm: vec(&format!("{p}.input_layernorm.weight"))?,
                q_proj: linear(&format!("{p}.self_attn.q_proj"), hidden, q_dim, bias)?,
                k_proj: linear(&format!("{p}.self_attn.k_proj"), hidden, kv_dim, bias)?,
                v_proj: linear(&format!("{p}.self_attn.v_proj"), hidden, kv_dim, bias)?,
                o_proj: linear(&format!("{p}.self_attn.o_proj"), q_dim, hidden, bias)?,
                attn_scale: vec(&format!("{p}.self_attn_layer_scale.scale"))?,
                post_norm: vec(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_proj: linear(&format!("{p}.mlp.gate_proj"), hidden, inter, false)?,
                up_proj: linear(&format!("{p}.mlp.up_proj"), hidden, inter, false)?,
                down_proj: linear(&format!("{p}.mlp.down_proj"), inter, hidden, false)?,
                mlp_scale: vec(&format!("{p}.mlp_layer_scale.scale"))?,
            });
        }
        Ok(PreTransformer {
            shape: AttentionShape { num_heads: heads, num_kv_heads: kv_heads, head_dim },
            hidden,
            intermediate: inter,
            eps: cfg.rms_norm_eps as f32,
            window: cfg.sliding_window,
            rope: Rope { theta: cfg.rope_theta as f32, head_dim },
            input_proj: linear(&format!("{prefix}.input_proj"), latent, hidden, true)?,
            layers,
            norm: vec(&format!("{prefix}.norm.weight"))?,
            output_proj: linear(&format!("{prefix}.output_proj"), hidden, latent, true)?,
        })
    }

    pub fn new_state(&self) -> TransformerState<B> {
        TransformerState {
            layers: self.layers.iter().map(|_| KvWindow { keys: None, values: None, past: 0 }).collect(),
            scratch: Scratch { h: None, normed: None, q: None, k: None, v: None, attn: None, proj: None, gate: None, up: None },
            position: 0,
        }
    }

    /// `x [rows, latent]` at positions `state.position ..` → `y [rows, latent]`.
    pub fn forward(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &B::Buffer,
        rows: usize,
        state: &mut TransformerState<B>,
        y: &mut B::Buffer,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let AttentionShape { num_heads, num_kv_heads, head_dim } = self.shape;
        let (q_dim, kv_dim, hidden, inter) = (num_heads * head_dim, num_kv_heads * head_dim, self.hidden, self.intermediate);
        let sc = &mut state.scratch;
        let h = fit(b, &mut sc.h, rows * hidden)?;
        let normed = fit(b, &mut sc.normed, rows * hidden)?;
        let q = fit(b, &mut sc.q, rows * q_dim)?;
        let k = fit(b, &mut sc.k, rows * kv_dim)?;
        let v = fit(b, &mut sc.v, rows * kv_dim)?;
        let attn = fit(b, &mut sc.attn, rows * q_dim)?;
        let proj = fit(b, &mut sc.proj, rows * hidden)?;
        let gate = fit(b, &mut sc.gate, rows * inter)?;
        let up = fit(b, &mut sc.up, rows * inter)?;
        // 1. Project into the transformer width.
        self.input_proj.forward(b, s, x, rows, None, h)?;
        // 2. The layers.
        for (layer, kv) in self.layers.iter().zip(&mut state.layers) {
            // Attention: projections, RoPE (rotate_half form, positions from the stream's
            // running count), the window, the output projection, layer scale + residual.
            b.audio_rms_norm(s, h, rows, &layer.input_norm, self.eps, normed)?;
            layer.q_proj.forward(b, s, normed, rows, None, q)?;
            layer.k_proj.forward(b, s, normed, rows, None, k)?;
            layer.v_proj.forward(b, s, normed, rows, None, v)?;
            b.rope(s, q, rows, num_heads, self.rope, state.position)?;
            b.rope(s, k, rows, num_kv_heads, self.rope, state.position)?;
            let keys = grow_window(b, s, &mut kv.keys, kv.past, (kv.past + rows) * kv_dim, kv_dim)?;
            let values = grow_window(b, s, &mut kv.values, kv.past, (kv.past + rows) * kv_dim, kv_dim)?;
            kv.past = b.window_attention(s, q, k, v, rows, self.shape, self.window, keys, values, kv.past, attn)?;
            layer.o_proj.forward(b, s, attn, rows, None, proj)?;
            b.scale_add(s, h, proj, rows, &layer.attn_scale)?;
            // SwiGLU MLP, layer scale + residual.
            b.audio_rms_norm(s, h, rows, &layer.post_norm, self.eps, normed)?;
            layer.gate_proj.forward(b, s, normed, rows, None, gate)?;
            layer.up_proj.forward(b, s, normed, rows, None, up)?;
            b.silu_mul(s, gate, up, rows * inter)?;
            layer.down_proj.forward(b, s, gate, rows, None, proj)?;
            b.scale_add(s, h, proj, rows, &layer.mlp_scale)?;
        }
        state.position += rows;
        // 3. Final norm and projection back to the latent width.
        b.audio_rms_norm(s, h, rows, &self.norm, self.eps, normed)?;
        self.output_proj.forward(b, s, normed, rows, None, y)
    }
}

/// A key or value window with room for `len` elements, its first `past` rows kept.
fn grow_window<'a, B: Backend>(
    b: &B,
    s: &mut B::Stream,
    slot: &'a mut Option<B::Buffer>,
    past: usize,
    len: usize,
    row: usize,
) -> Result<&'a mut B::Buffer> {
    let buf = match slot.take() {
        Some(old) if b.buffer_len(&old) >= len => old,
        Some(old) => {
            let mut grown = b.alloc(len)?;
            b.copy(s, &old, 0, &mut grown, 0, past * row)?;
            grown
        }
        None => b.alloc(len.max(1))?,
    };
    Ok(slot.insert(buf))
}
