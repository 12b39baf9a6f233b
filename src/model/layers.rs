//! The Qwen3 decoder block shared by the talker and the code predictor, and the stack of
//! such blocks with its final norm.
//!
//! One layer (`Qwen3TTSDecoderLayer` / `Qwen3TTSTalkerDecoderLayer`, pre-norm):
//!
//! ```text
//! h = RMSNorm(x)                          input_layernorm
//! q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ
//! q, k = RMSNorm_head(q), RMSNorm_head(k) per head, BEFORE RoPE (QK-norm)
//! q, k = RoPE(q), RoPE(k)                 NeoX rotate-half, θ from the config
//! x += o_proj(GQA-attention(q, K, V))     causal, scale 1/√head_dim, softmax in f32
//! h = RMSNorm(x)                          post_attention_layernorm
//! x += down(silu(gate(h)) · up(h))
//! ```
//!
//! The talker's rotary module is the multimodal (M-RoPE) one, but TTS always feeds three
//! identical position rows, so every frequency slot sees the same position and it is plain
//! 1-D RoPE (spec §3.3). The code predictor uses plain RoPE by construction.
//!
//! Rows are positions of ONE sequence. A call processes `rows` new positions starting at the
//! cache's current length: a prefill passes many rows, a decode step one; a long prompt may
//! also be fed in chunks with identical results (up to matmul blocking).

use super::config::{CodePredictorConfig, TalkerConfig};
use super::kv_cache::KvCache;
use super::weights::SafeTensorsFile;
use crate::backend::{AttentionShape, Backend, LinearOut, Rope};
use crate::error::{Error, Result};

/// Sizes of one decoder stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StackDims {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    pub rope_theta: f32,
    /// q/k/v/o projections carry biases (false in every released checkpoint).
    pub attention_bias: bool,
}

impl StackDims {
    /// The talker's 28-layer (0.6B/1.7B) stack.
    pub fn talker(t: &TalkerConfig) -> Self {
        StackDims {
            hidden: t.hidden_size,
            intermediate: t.intermediate_size,
            layers: t.num_hidden_layers,
            heads: t.num_attention_heads,
            kv_heads: t.num_key_value_heads,
            head_dim: t.head_dim(),
            eps: t.rms_norm_eps as f32,
            rope_theta: t.rope_theta as f32,
            attention_bias: t.attention_bias,
        }
    }

    /// The code predictor's 5-layer stack.
    pub fn code_predictor(p: &CodePredictorConfig) -> Self {
        StackDims {
            hidden: p.hidden_size,
            intermediate: p.intermediate_size,
            layers: p.num_hidden_layers,
            heads: p.num_attention_heads,
            kv_heads: p.num_key_value_heads,
            head_dim: p.head_dim(),
            eps: p.rms_norm_eps as f32,
            rope_theta: p.rope_theta as f32,
            attention_bias: p.attention_bias,
        }
    }

    /// Width of the concatenated query heads (`o_proj` input).
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of one cached position (`kv_heads · head_dim`).
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn attention_shape(&self) -> AttentionShape {
        AttentionShape { num_heads: self.heads, num_kv_heads: self.kv_heads, head_dim: self.head_dim }
    }

    fn rope(&self) -> Rope {
        Rope { theta: self.rope_theta, head_dim: self.head_dim }
    }
}

/// Uploads `name` after checking its shape.
pub(crate) fn load_weight<B: Backend>(b: &B, file: &SafeTensorsFile, name: &str, shape: &[usize]) -> Result<B::Weight> {
    let view = file.require(name, shape)?;
    b.upload_weight(&view).map_err(|e| e.context(format!("uploading `{name}`")))
}

/// A biased or unbiased `nn.Linear(inp, out)` under `prefix`.
pub(crate) struct Linear<B: Backend> {
    pub weight: B::Weight,
    pub bias: Option<B::Weight>,
}

impl<B: Backend> Linear<B> {
    pub(crate) fn load(
        b: &B,
        file: &SafeTensorsFile,
        prefix: &str,
        inp: usize,
        out: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = load_weight(b, file, &format!("{prefix}.weight"), &[out, inp])?;
        let bias = if bias { Some(load_weight(b, file, &format!("{prefix}.bias"), &[out])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// `y (+)= x · Wᵀ + bias` over `rows` rows.
    pub(crate) fn apply(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &B::Buffer,
        rows: usize,
        y: &mut B::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        b.linear(s, x, rows, &self.weight, self.bias.as_ref(), y, accumulate)
    }
}

/// Borrowed view of a biased or unbiased linear layer's weights.
pub struct LinearParts<'a, B: Backend> {
    pub weight: &'a B::Weight,
    pub bias: Option<&'a B::Weight>,
}

/// Borrowed view of one decoder layer's weights, for engines that read them directly (the
/// CUDA megakernel takes their device addresses).
pub struct LayerParts<'a, B: Backend> {
    pub input_layernorm: &'a B::Weight,
    pub q_proj: LinearParts<'a, B>,
    pub k_proj: LinearParts<'a, B>,
    pub v_proj: LinearParts<'a, B>,
    pub o_proj: LinearParts<'a, B>,
    pub q_norm: &'a B::Weight,
    pub k_norm: &'a B::Weight,
    pub post_attention_layernorm: &'a B::Weight,
    pub gate_proj: LinearParts<'a, B>,
    pub up_proj: LinearParts<'a, B>,
    pub down_proj: LinearParts<'a, B>,
}

impl<B: Backend> Linear<B> {
    pub(crate) fn parts(&self) -> LinearParts<'_, B> {
        LinearParts { weight: &self.weight, bias: self.bias.as_ref() }
    }

    /// This layer writing into `y`, as one output of [`Backend::linear_shared_input`].
    pub(crate) fn output<'a>(&'a self, y: &'a mut B::Buffer) -> LinearOut<'a, B> {
        LinearOut { w: &self.weight, bias: self.bias.as_ref(), y }
    }
}

/// Weights of one decoder layer.
pub struct DecoderLayer<B: Backend> {
    input_layernorm: B::Weight,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    q_norm: B::Weight,
    k_norm: B::Weight,
    post_attention_layernorm: B::Weight,
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// Every weight of the layer, borrowed.
    pub fn parts(&self) -> LayerParts<'_, B> {
        LayerParts {
            input_layernorm: &self.input_layernorm,
            q_proj: self.q_proj.parts(),
            k_proj: self.k_proj.parts(),
            v_proj: self.v_proj.parts(),
            o_proj: self.o_proj.parts(),
            q_norm: &self.q_norm,
            k_norm: &self.k_norm,
            post_attention_layernorm: &self.post_attention_layernorm,
            gate_proj: self.gate_proj.parts(),
            up_proj: self.up_proj.parts(),
            down_proj: self.down_proj.parts(),
        }
    }

    /// Loads `{prefix}.{input_layernorm, self_attn.*, post_attention_layernorm, mlp.*}`.
    pub fn load(b: &B, file: &SafeTensorsFile, prefix: &str, d: &StackDims) -> Result<Self> {
        let (h, q, kv, i, bias) = (d.hidden, d.q_width(), d.kv_width(), d.intermediate, d.attention_bias);
        let lin = |name: &str, inp, out, bias| Linear::load(b, file, &format!("{prefix}.{name}"), inp, out, bias);
        let norm = |name: &str, dim| load_weight(b, file, &format!("{prefix}.{name}.weight"), &[dim]);
        Ok(DecoderLayer {
            input_layernorm: norm("input_layernorm", h)?,
            q_proj: lin("self_attn.q_proj", h, q, bias)?,
            k_proj: lin("self_attn.k_proj", h, kv, bias)?,
            v_proj: lin("self_attn.v_proj", h, kv, bias)?,
            o_proj: lin("self_attn.o_proj", q, h, bias)?,
            q_norm: norm("self_attn.q_norm", d.head_dim)?,
            k_norm: norm("self_attn.k_norm", d.head_dim)?,
            post_attention_layernorm: norm("post_attention_layernorm", h)?,
            gate_proj: lin("mlp.gate_proj", h, i, false)?,
            up_proj: lin("mlp.up_proj", h, i, false)?,
            down_proj: lin("mlp.down_proj", i, h, false)?,
        })
    }

    /// Runs `rows` positions starting at `position` through this layer. `x` is the residual
    /// stream `[rows, hidden]`, updated in place; this layer's keys and values for those
    /// positions are written into `k_cache`/`v_cache` (which must already hold positions
    /// `0..position`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        b: &B,
        s: &mut B::Stream,
        d: &StackDims,
        x: &mut B::Buffer,
        rows: usize,
        position: usize,
        k_cache: &mut B::Buffer,
        v_cache: &mut B::Buffer,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let kv_row = d.kv_width();

        // 1. Pre-attention norm.
        b.rms_norm(s, x, rows, &self.input_layernorm, d.eps, &mut ws.h)?;

        // 2. Projections: q [rows, heads, hd], k and v [rows, kv_heads, hd] (one pass over h).
        b.linear_shared_input(
            s,
            &ws.h,
            rows,
            &mut [self.q_proj.output(&mut ws.q), self.k_proj.output(&mut ws.k), self.v_proj.output(&mut ws.v)],
        )?;

        // 3-4. QK-norm over each head's head_dim values (Qwen3 applies it before RoPE), then
        //      the rotary embedding at absolute positions position..position+rows.
        let shape = d.attention_shape();
        b.qk_norm_rope(s, &mut ws.q, &mut ws.k, rows, shape, &self.q_norm, &self.k_norm, d.eps, d.rope(), position)?;

        // 5. Append this chunk's keys and values: cache rows are position-major with the same
        //    [kv_heads, hd] layout as the projection output, so each is a single copy.
        b.copy(s, &ws.k, 0, k_cache, position * kv_row, rows * kv_row)?;
        b.copy(s, &ws.v, 0, v_cache, position * kv_row, rows * kv_row)?;

        // 6. Causal GQA attention of the new queries over positions 0..position+rows.
        b.attention(s, &ws.q, k_cache, v_cache, d.attention_shape(), rows, position, &mut ws.attn)?;

        // 7. Output projection, added straight into the residual stream.
        self.o_proj.apply(b, s, &ws.attn, rows, x, true)?;

        // 8. Pre-MLP norm.
        b.rms_norm(s, x, rows, &self.post_attention_layernorm, d.eps, &mut ws.h)?;

        // 9. SwiGLU: gate = silu(gate(h)) · up(h).
        b.linear_shared_input(s, &ws.h, rows, &mut [self.gate_proj.output(&mut ws.gate), self.up_proj.output(&mut ws.up)])?;
        b.silu_mul(s, &mut ws.gate, &ws.up, rows * d.intermediate)?;

        // 10. Down projection, added into the residual stream.
        self.down_proj.apply(b, s, &ws.gate, rows, x, true)
    }
}

/// Scratch activations of one stack call, sized for a number of rows. Per request (or per
/// thread); grows on demand, never shrinks.
pub struct Workspace<B: Backend> {
    rows: usize,
    h: B::Buffer,
    q: B::Buffer,
    k: B::Buffer,
    v: B::Buffer,
    attn: B::Buffer,
    gate: B::Buffer,
    up: B::Buffer,
}

impl<B: Backend> Workspace<B> {
    /// Buffers for up to `rows` rows of a stack with dimensions `d`.
    pub fn new(b: &B, d: &StackDims, rows: usize) -> Result<Self> {
        let rows = rows.max(1);
        Ok(Workspace {
            rows,
            h: b.alloc(rows * d.hidden)?,
            q: b.alloc(rows * d.q_width())?,
            k: b.alloc(rows * d.kv_width())?,
            v: b.alloc(rows * d.kv_width())?,
            attn: b.alloc(rows * d.q_width())?,
            gate: b.alloc(rows * d.intermediate)?,
            up: b.alloc(rows * d.intermediate)?,
        })
    }

    /// Rows the buffers currently hold.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Reallocates when `rows` exceeds the current size, or when the buffers were sized for
    /// a smaller stack.
    pub fn ensure(&mut self, b: &B, d: &StackDims, rows: usize) -> Result<()> {
        let fits = rows <= self.rows
            && b.buffer_len(&self.h) >= self.rows * d.hidden
            && b.buffer_len(&self.q) >= self.rows * d.q_width()
            && b.buffer_len(&self.k) >= self.rows * d.kv_width()
            && b.buffer_len(&self.gate) >= self.rows * d.intermediate;
        if !fits {
            *self = Workspace::new(b, d, rows.max(self.rows))?;
        }
        Ok(())
    }
}

/// Called after each layer with the stream, the layer index and the residual stream
/// `[rows, hidden]` (pre final norm). Lets tests compare per-layer activations.
pub type LayerObserver<'a, B> =
    dyn FnMut(&mut <B as Backend>::Stream, usize, &<B as Backend>::Buffer) -> Result<()> + 'a;

/// A stack of decoder layers plus the final RMSNorm.
pub struct DecoderStack<B: Backend> {
    dims: StackDims,
    layers: Vec<DecoderLayer<B>>,
    norm: B::Weight,
}

impl<B: Backend> DecoderStack<B> {
    /// Loads `{prefix}.layers.{i}.*` for every layer and `{prefix}.norm.weight`
    /// (prefix "talker.model" or "talker.code_predictor.model").
    pub fn load(b: &B, file: &SafeTensorsFile, prefix: &str, dims: StackDims) -> Result<Self> {
        if dims.heads == 0
            || dims.kv_heads == 0
            || !dims.heads.is_multiple_of(dims.kv_heads)
            || !dims.head_dim.is_multiple_of(2)
        {
            return Err(Error::bad_config(format!(
                "{prefix}: {} query heads, {} key/value heads and head_dim {} do not form a valid attention",
                dims.heads, dims.kv_heads, dims.head_dim
            )));
        }
        let layers = (0..dims.layers)
            .map(|i| DecoderLayer::load(b, file, &format!("{prefix}.layers.{i}"), &dims))
            .collect::<Result<Vec<_>>>()?;
        let norm = load_weight(b, file, &format!("{prefix}.norm.weight"), &[dims.hidden])?;
        Ok(DecoderStack { dims, layers, norm })
    }

    pub fn dims(&self) -> &StackDims {
        &self.dims
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[DecoderLayer<B>] {
        &self.layers
    }

    /// The final RMSNorm weight.
    pub fn final_norm(&self) -> &B::Weight {
        &self.norm
    }

    /// A KV cache for this stack holding up to `capacity` positions.
    pub fn new_cache(&self, b: &B, capacity: usize) -> Result<KvCache<B>> {
        KvCache::new(b, self.layers.len(), capacity, self.dims.kv_heads, self.dims.head_dim)
    }

    /// A workspace for calls of up to `rows` rows (it grows if a call needs more).
    pub fn new_workspace(&self, b: &B, rows: usize) -> Result<Workspace<B>> {
        Workspace::new(b, &self.dims, rows)
    }

    /// Runs `rows` new positions (starting at `kv.len()`) through every layer. `x` is the
    /// residual stream `[rows, hidden]`, updated in place; `out[rows, hidden]` receives the
    /// final-norm hidden states. Appends every layer's keys/values to `kv`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &mut B::Buffer,
        rows: usize,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        out: &mut B::Buffer,
    ) -> Result<()> {
        self.forward_observed(b, s, x, rows, kv, ws, out, None)
    }

    /// [`forward`](Self::forward), calling `observe` with the residual stream after every
    /// layer. The plain path passes `None` and pays one branch per layer.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_observed(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &mut B::Buffer,
        rows: usize,
        kv: &mut KvCache<B>,
        ws: &mut Workspace<B>,
        out: &mut B::Buffer,
        mut observe: Option<&mut LayerObserver<'_, B>>,
    ) -> Result<()> {
        let d = &self.dims;
        if rows == 0 {
            return Err(Error::invalid_argument("decoder forward: zero rows"));
        }
        if kv.layers() != self.layers.len() || kv.row_len() != d.kv_width() {
            return Err(Error::invalid_argument(format!(
                "decoder forward: KV cache built for {} layers × {} values, stack has {} × {}",
                kv.layers(),
                kv.row_len(),
                self.layers.len(),
                d.kv_width()
            )));
        }
        // Checked before any layer writes, so a full cache leaves everything untouched.
        kv.check_room(rows)?;
        let needed = rows * d.hidden;
        if b.buffer_len(x) < needed || b.buffer_len(out) < needed {
            return Err(Error::invalid_argument(format!(
                "decoder forward: {rows} rows need {needed} values in the input and output buffers \
                 (they hold {} and {})",
                b.buffer_len(x),
                b.buffer_len(out)
            )));
        }
        ws.ensure(b, d, rows)?;

        let position = kv.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let (k_cache, v_cache) = kv.layer_mut(i);
            layer.forward(b, s, d, x, rows, position, k_cache, v_cache, ws)?;
            if let Some(f) = observe.as_mut() {
                f(s, i, x)?;
            }
        }
        kv.advance(rows)?;

        // Final norm of every row; callers pick the rows they need.
        b.rms_norm(s, x, rows, &self.norm, d.eps, out)
    }
}
