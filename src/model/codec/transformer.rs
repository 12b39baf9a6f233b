//! The decoder's pre-transformer (`Qwen3TTSTokenizerV2DecoderTransformerModel`).
//!
//! input_proj (bias) → N × [RMSNorm → sliding-window causal self-attention (RoPE, no QK-norm)
//! → ×layer_scale → residual; RMSNorm → SwiGLU → ×layer_scale → residual] → RMSNorm →
//! output_proj (bias). Each query sees the `sliding_window` most recent keys, itself
//! included (72: keys t−71..t).
//!
//! Because attention never looks further back than the window, the only state a stream
//! needs is the last `window − 1` rotated keys and values of every layer plus the running
//! position ([`TransformerState`]).

use super::ops::{Linear, rms_norm_rows, scale_add_rows, silu, softmax_inplace};
use super::{TensorSource, load_linear, load_vec};
use crate::error::{Error, Result};
use crate::model::config::SpeechDecoderConfig;

struct Layer {
    input_norm: Vec<f32>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    attn_scale: Vec<f32>,
    post_norm: Vec<f32>,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    mlp_scale: Vec<f32>,
}

/// The pre-transformer's weights and shape.
pub struct PreTransformer {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    /// Keys visible to each query, itself included.
    window: usize,
    /// `1 / θ^(2i/head_dim)` in f32, as the default RoPE init computes it.
    inv_freq: Vec<f32>,
    input_proj: Linear,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output_proj: Linear,
}

/// One layer's attention memory: the last ≤ `window − 1` rotated keys and values.
#[derive(Debug, Clone, Default)]
pub struct KvWindow {
    /// `[rows, kv_heads·head_dim]`.
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Streaming state of the pre-transformer.
#[derive(Debug, Clone)]
pub struct TransformerState {
    layers: Vec<KvWindow>,
    /// RoPE position of the next row (frames consumed so far).
    pub position: usize,
}

impl PreTransformer {
    pub fn load(src: &dyn TensorSource, prefix: &str, cfg: &SpeechDecoderConfig) -> Result<Self> {
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
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}.layers.{i}");
            layers.push(Layer {
                input_norm: load_vec(src, &format!("{p}.input_layernorm.weight"), &[hidden])?,
                q_proj: load_linear(src, &format!("{p}.self_attn.q_proj"), hidden, q_dim, bias)?,
                k_proj: load_linear(src, &format!("{p}.self_attn.k_proj"), hidden, kv_dim, bias)?,
                v_proj: load_linear(src, &format!("{p}.self_attn.v_proj"), hidden, kv_dim, bias)?,
                o_proj: load_linear(src, &format!("{p}.self_attn.o_proj"), q_dim, hidden, bias)?,
                attn_scale: load_vec(src, &format!("{p}.self_attn_layer_scale.scale"), &[hidden])?,
                post_norm: load_vec(src, &format!("{p}.post_attention_layernorm.weight"), &[hidden])?,
                gate_proj: load_linear(src, &format!("{p}.mlp.gate_proj"), hidden, inter, false)?,
                up_proj: load_linear(src, &format!("{p}.mlp.up_proj"), hidden, inter, false)?,
                down_proj: load_linear(src, &format!("{p}.mlp.down_proj"), inter, hidden, false)?,
                mlp_scale: load_vec(src, &format!("{p}.mlp_layer_scale.scale"), &[hidden])?,
            });
        }
        // `ROPE_INIT_FUNCTIONS["default"]`: base ** (arange(0, dim, 2).float() / dim), in f32.
        let theta = cfg.rope_theta as f32;
        let inv_freq = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        Ok(PreTransformer {
            heads,
            kv_heads,
            head_dim,
            eps: cfg.rms_norm_eps as f32,
            window: cfg.sliding_window,
            inv_freq,
            input_proj: load_linear(src, &format!("{prefix}.input_proj"), latent, hidden, true)?,
            layers,
            norm: load_vec(src, &format!("{prefix}.norm.weight"), &[hidden])?,
            output_proj: load_linear(src, &format!("{prefix}.output_proj"), hidden, latent, true)?,
        })
    }

    pub fn new_state(&self) -> TransformerState {
        TransformerState { layers: vec![KvWindow::default(); self.layers.len()], position: 0 }
    }

    /// `x [rows, latent]` at positions `state.position ..` → `[rows, latent]`.
    pub fn forward(&self, x: &[f32], rows: usize, state: &mut TransformerState, threads: usize) -> Vec<f32> {
        // 1. Project into the transformer width.
        let mut h = self.input_proj.forward(x, rows, threads);
        // 2. RoPE tables for this call's positions: cos/sin of pos·inv_freq, both in f32 (the
        //    product is a single f32 multiply in the reference's matmul too).
        let half = self.head_dim / 2;
        let mut cos = vec![0.0; rows * half];
        let mut sin = vec![0.0; rows * half];
        for t in 0..rows {
            let pos = (state.position + t) as f32;
            for (i, &f) in self.inv_freq.iter().enumerate() {
                let angle = f * pos;
                cos[t * half + i] = angle.cos();
                sin[t * half + i] = angle.sin();
            }
        }
        // 3. The layers.
        for (layer, kv) in self.layers.iter().zip(&mut state.layers) {
            let normed = rms_norm_rows(&h, &layer.input_norm, self.eps);
            let attn = self.attention(layer, &normed, rows, &cos, &sin, kv, threads);
            scale_add_rows(&mut h, &attn, &layer.attn_scale);

            let normed = rms_norm_rows(&h, &layer.post_norm, self.eps);
            let mut gate = layer.gate_proj.forward(&normed, rows, threads);
            let up = layer.up_proj.forward(&normed, rows, threads);
            for (g, &u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            let mlp = layer.down_proj.forward(&gate, rows, threads);
            scale_add_rows(&mut h, &mlp, &layer.mlp_scale);
        }
        state.position += rows;
        // 4. Final norm and projection back to the latent width.
        let normed = rms_norm_rows(&h, &self.norm, self.eps);
        self.output_proj.forward(&normed, rows, threads)
    }

    /// Self-attention of `rows` new rows over the remembered window plus themselves.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer,
        x: &[f32],
        rows: usize,
        cos: &[f32],
        sin: &[f32],
        kv: &mut KvWindow,
        threads: usize,
    ) -> Vec<f32> {
        let hd = self.head_dim;
        let (q_dim, kv_dim) = (self.heads * hd, self.kv_heads * hd);
        // 1. Projections and RoPE (rotate_half form: pairs i and i + head_dim/2).
        let mut q = layer.q_proj.forward(x, rows, threads);
        let mut k = layer.k_proj.forward(x, rows, threads);
        let v = layer.v_proj.forward(x, rows, threads);
        rope_rows(&mut q, rows, hd, cos, sin);
        rope_rows(&mut k, rows, hd, cos, sin);
        // 2. Keys/values visible to this call: the remembered ones, then the new ones.
        let past = kv.keys.len() / kv_dim;
        kv.keys.extend_from_slice(&k);
        kv.values.extend_from_slice(&v);
        // 3. Scaled dot-product attention; new row t is key index past + t and sees key
        //    indices past + t − (window − 1) ..= past + t.
        let scale = 1.0 / (hd as f32).sqrt();
        let group = self.heads / self.kv_heads;
        let mut out = vec![0.0; rows * q_dim];
        let mut scores = Vec::with_capacity(self.window);
        for t in 0..rows {
            let last = past + t;
            let first = (last + 1).saturating_sub(self.window);
            for head in 0..self.heads {
                let kv_off = (head / group) * hd;
                let q_row = &q[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
                scores.clear();
                for key in first..=last {
                    let k_row = &kv.keys[key * kv_dim + kv_off..key * kv_dim + kv_off + hd];
                    scores.push(q_row.iter().zip(k_row).map(|(a, b)| a * b).sum::<f32>() * scale);
                }
                softmax_inplace(&mut scores);
                let o = &mut out[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
                for (key, &p) in (first..=last).zip(&scores) {
                    let v_row = &kv.values[key * kv_dim + kv_off..key * kv_dim + kv_off + hd];
                    for (acc, &vv) in o.iter_mut().zip(v_row) {
                        *acc += p * vv;
                    }
                }
            }
        }
        // 4. Forget what no future query can see.
        let total = past + rows;
        let keep = total.min(self.window - 1);
        kv.keys.drain(..(total - keep) * kv_dim);
        kv.values.drain(..(total - keep) * kv_dim);
        // 5. Output projection.
        layer.o_proj.forward(&out, rows, threads)
    }
}

/// `x·cos + rotate_half(x)·sin` on every head of every row; `cos`/`sin` are `[rows, hd/2]`
/// (the reference's tables repeat the same values for both halves).
fn rope_rows(x: &mut [f32], rows: usize, hd: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    let width = x.len() / rows.max(1);
    for t in 0..rows {
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        for head in x[t * width..(t + 1) * width].chunks_exact_mut(hd) {
            let (lo, hi) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (lo[i], hi[i]);
                lo[i] = a * c[i] - b * s[i];
                hi[i] = b * c[i] + a * s[i];
            }
        }
    }
}
