//! Every tensor a configuration implies: names and shapes of the persisted `state_dict` of the
//! reference modules, built from the config alone.
//!
//! Each function below mirrors one Python module's `__init__` (named in its comment), in
//! construction order. Conventions follow PyTorch: Linear weights are `[out, in]`, Conv1d
//! `[out, in / groups, k]`, ConvTranspose1d `[in, out, k]`. Non-persistent buffers (RoPE
//! `inv_freq`) are not stored and not listed; Mimi's codebook buffers (`initialized`,
//! `cluster_usage`, `embed_sum`) are persistent and are.

use super::config::{
    CodePredictorConfig, MimiEncoderConfig, ModelConfig, ModelKind, SpeakerEncoderConfig, SpeechDecoderConfig,
    SpeechTokenizerConfig, TalkerConfig,
};

/// One expected tensor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Accumulates specs under a name prefix.
struct Manifest {
    specs: Vec<TensorSpec>,
}

impl Manifest {
    fn new() -> Self {
        Manifest { specs: Vec::new() }
    }

    fn add(&mut self, name: String, shape: &[usize]) {
        self.specs.push(TensorSpec { name, shape: shape.to_vec() });
    }

    /// `nn.Linear(inp, out, bias)`.
    fn linear(&mut self, prefix: &str, inp: usize, out: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[out, inp]);
        if bias {
            self.add(format!("{prefix}.bias"), &[out]);
        }
    }

    /// `nn.Conv1d(inp, out, k, groups, bias)`.
    fn conv1d(&mut self, prefix: &str, inp: usize, out: usize, k: usize, groups: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[out, inp / groups, k]);
        if bias {
            self.add(format!("{prefix}.bias"), &[out]);
        }
    }

    /// `nn.ConvTranspose1d(inp, out, k)` with bias.
    fn conv_transpose1d(&mut self, prefix: &str, inp: usize, out: usize, k: usize) {
        self.add(format!("{prefix}.weight"), &[inp, out, k]);
        self.add(format!("{prefix}.bias"), &[out]);
    }

    /// A norm with only a scale (`RMSNorm`) or scale and shift (`nn.LayerNorm`).
    fn norm(&mut self, prefix: &str, dim: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[dim]);
        if bias {
            self.add(format!("{prefix}.bias"), &[dim]);
        }
    }
}

/// Every tensor of `model.safetensors` for this configuration.
pub fn main_model_tensors(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let mut m = Manifest::new();
    talker(&mut m, &cfg.talker_config);
    // `Qwen3TTSForConditionalGeneration`: the speaker encoder exists only for "base".
    if cfg.kind() == ModelKind::Base {
        speaker_encoder(&mut m, "speaker_encoder", &cfg.speaker_encoder_config);
    }
    m.specs
}

/// Every tensor of `speech_tokenizer/model.safetensors` for this configuration.
pub fn speech_tokenizer_tensors(cfg: &SpeechTokenizerConfig) -> Vec<TensorSpec> {
    let mut m = Manifest::new();
    mimi_encoder(&mut m, "encoder", &cfg.encoder_config);
    codec_decoder(&mut m, "decoder", &cfg.decoder_config);
    m.specs
}

/// Shapes of one Qwen3 decoder layer (`Qwen3TTSDecoderLayer` / `Qwen3TTSTalkerDecoderLayer`):
/// GQA attention with per-head QK RMSNorm, SwiGLU MLP, two RMSNorms.
struct Qwen3Layer {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    attention_bias: bool,
}

fn qwen3_layer(m: &mut Manifest, prefix: &str, l: &Qwen3Layer) {
    let (q, kv) = (l.heads * l.head_dim, l.kv_heads * l.head_dim);
    m.norm(&format!("{prefix}.input_layernorm"), l.hidden, false);
    m.linear(&format!("{prefix}.self_attn.q_proj"), l.hidden, q, l.attention_bias);
    m.linear(&format!("{prefix}.self_attn.k_proj"), l.hidden, kv, l.attention_bias);
    m.linear(&format!("{prefix}.self_attn.v_proj"), l.hidden, kv, l.attention_bias);
    m.linear(&format!("{prefix}.self_attn.o_proj"), q, l.hidden, l.attention_bias);
    m.norm(&format!("{prefix}.self_attn.q_norm"), l.head_dim, false);
    m.norm(&format!("{prefix}.self_attn.k_norm"), l.head_dim, false);
    m.norm(&format!("{prefix}.post_attention_layernorm"), l.hidden, false);
    m.linear(&format!("{prefix}.mlp.gate_proj"), l.hidden, l.intermediate, false);
    m.linear(&format!("{prefix}.mlp.up_proj"), l.hidden, l.intermediate, false);
    m.linear(&format!("{prefix}.mlp.down_proj"), l.intermediate, l.hidden, false);
}

/// `Qwen3TTSTalkerForConditionalGeneration`.
fn talker(m: &mut Manifest, t: &TalkerConfig) {
    let h = t.hidden_size;
    // Qwen3TTSTalkerModel
    let layer = Qwen3Layer {
        hidden: h,
        intermediate: t.intermediate_size,
        heads: t.num_attention_heads,
        kv_heads: t.num_key_value_heads,
        head_dim: t.head_dim(),
        attention_bias: t.attention_bias,
    };
    for i in 0..t.num_hidden_layers {
        qwen3_layer(m, &format!("talker.model.layers.{i}"), &layer);
    }
    m.norm("talker.model.norm", h, false);
    m.add("talker.model.codec_embedding.weight".into(), &[t.vocab_size, h]);
    m.add("talker.model.text_embedding.weight".into(), &[t.text_vocab_size, t.text_hidden_size]);
    // Qwen3TTSTalkerResizeMLP(text_hidden, text_hidden, hidden, bias=True)
    m.linear("talker.text_projection.linear_fc1", t.text_hidden_size, t.text_hidden_size, true);
    m.linear("talker.text_projection.linear_fc2", t.text_hidden_size, h, true);
    m.linear("talker.codec_head", h, t.vocab_size, false);
    code_predictor(m, &t.code_predictor_config, h);
}

/// `Qwen3TTSTalkerCodePredictorModelForConditionalGeneration`; `talker_hidden` is the width
/// of its input embeddings (they are added into talker rows).
fn code_predictor(m: &mut Manifest, p: &CodePredictorConfig, talker_hidden: usize) {
    let layer = Qwen3Layer {
        hidden: p.hidden_size,
        intermediate: p.intermediate_size,
        heads: p.num_attention_heads,
        kv_heads: p.num_key_value_heads,
        head_dim: p.head_dim(),
        attention_bias: p.attention_bias,
    };
    for i in 0..p.num_hidden_layers {
        qwen3_layer(m, &format!("talker.code_predictor.model.layers.{i}"), &layer);
    }
    m.norm("talker.code_predictor.model.norm", p.hidden_size, false);
    let groups = p.num_code_groups.saturating_sub(1);
    for j in 0..groups {
        m.add(format!("talker.code_predictor.model.codec_embedding.{j}.weight"), &[p.vocab_size, talker_hidden]);
    }
    for j in 0..groups {
        m.linear(&format!("talker.code_predictor.lm_head.{j}"), p.hidden_size, p.vocab_size, false);
    }
    // nn.Identity when the widths agree (0.6B), a biased Linear otherwise (1.7B).
    if p.hidden_size != talker_hidden {
        m.linear("talker.code_predictor.small_to_mtp_projection", talker_hidden, p.hidden_size, true);
    }
}

/// `Qwen3TTSSpeakerEncoder` (ECAPA-TDNN). Every conv has a bias; kernel sizes are taken from
/// the config even where the module hard-codes 1 (TDNN1/TDNN2/SE are always 1x1).
fn speaker_encoder(m: &mut Manifest, prefix: &str, s: &SpeakerEncoderConfig) {
    let ch = &s.enc_channels;
    let n = ch.len();
    if n < 2 || s.enc_kernel_sizes.len() != n {
        return; // rejected by validation; nothing sensible to list
    }
    m.conv1d(&format!("{prefix}.blocks.0.conv"), s.mel_dim, ch[0], s.enc_kernel_sizes[0], 1, true);
    for i in 1..n - 1 {
        // SqueezeExcitationRes2NetBlock(ch[i-1], ch[i], ...)
        let b = format!("{prefix}.blocks.{i}");
        let (inp, out) = (ch[i - 1], ch[i]);
        m.conv1d(&format!("{b}.tdnn1.conv"), inp, out, 1, 1, true);
        let part = out / s.enc_res2net_scale.max(1);
        for r in 0..s.enc_res2net_scale.saturating_sub(1) {
            m.conv1d(&format!("{b}.res2net_block.blocks.{r}.conv"), part, part, s.enc_kernel_sizes[i], 1, true);
        }
        m.conv1d(&format!("{b}.tdnn2.conv"), out, out, 1, 1, true);
        m.conv1d(&format!("{b}.se_block.conv1"), out, s.enc_se_channels, 1, 1, true);
        m.conv1d(&format!("{b}.se_block.conv2"), s.enc_se_channels, out, 1, 1, true);
    }
    let last = ch[n - 1];
    m.conv1d(&format!("{prefix}.mfa.conv"), last, last, s.enc_kernel_sizes[n - 1], 1, true);
    // AttentiveStatisticsPooling: attention over [x, mean, std], then weighted mean and std.
    m.conv1d(&format!("{prefix}.asp.tdnn.conv"), last * 3, s.enc_attention_channels, 1, 1, true);
    m.conv1d(&format!("{prefix}.asp.conv"), s.enc_attention_channels, last, 1, 1, true);
    m.conv1d(&format!("{prefix}.fc"), last * 2, s.enc_dim, 1, 1, true);
}

/// The encoder half of transformers' `MimiModel` (`Qwen3TTSTokenizerV2Encoder` drops
/// `upsample`, `decoder_transformer` and `decoder`).
fn mimi_encoder(m: &mut Manifest, prefix: &str, e: &MimiEncoderConfig) {
    // MimiEncoder: a flat ModuleList in which ELUs take indices too.
    let layers = format!("{prefix}.encoder.layers");
    m.conv1d(&format!("{layers}.0.conv"), e.audio_channels, e.num_filters, e.kernel_size, 1, true);
    let mut idx = 1;
    let mut scale = 1;
    for &ratio in e.upsampling_ratios.iter().rev() {
        let width = scale * e.num_filters;
        let hidden = width / e.compress.max(1);
        for _ in 0..e.num_residual_layers {
            // MimiResnetBlock: [ELU, conv(k=residual_kernel_size), ELU, conv(k=1)] (+ shortcut)
            m.conv1d(&format!("{layers}.{idx}.block.1.conv"), width, hidden, e.residual_kernel_size, 1, true);
            m.conv1d(&format!("{layers}.{idx}.block.3.conv"), hidden, width, 1, 1, true);
            if e.use_conv_shortcut {
                m.conv1d(&format!("{layers}.{idx}.shortcut.conv"), width, width, 1, 1, true);
            }
            idx += 1;
        }
        idx += 1; // ELU
        m.conv1d(&format!("{layers}.{idx}.conv"), width, width * 2, ratio * 2, 1, true);
        idx += 1;
        scale *= 2;
    }
    idx += 1; // ELU
    m.conv1d(&format!("{layers}.{idx}.conv"), scale * e.num_filters, e.hidden_size, e.last_kernel_size, 1, true);

    // MimiTransformerModel: pre-LayerNorm layers, no final norm.
    let h = e.hidden_size;
    let (q, kv) = (e.num_attention_heads * e.head_dim(), e.num_key_value_heads * e.head_dim());
    for i in 0..e.num_hidden_layers {
        let l = format!("{prefix}.encoder_transformer.layers.{i}");
        m.linear(&format!("{l}.self_attn.q_proj"), h, q, e.attention_bias);
        m.linear(&format!("{l}.self_attn.k_proj"), h, kv, e.attention_bias);
        m.linear(&format!("{l}.self_attn.v_proj"), h, kv, e.attention_bias);
        m.linear(&format!("{l}.self_attn.o_proj"), q, h, e.attention_bias);
        m.linear(&format!("{l}.mlp.fc1"), h, e.intermediate_size, false);
        m.linear(&format!("{l}.mlp.fc2"), e.intermediate_size, h, false);
        m.norm(&format!("{l}.input_layernorm"), h, true);
        m.norm(&format!("{l}.post_attention_layernorm"), h, true);
        m.add(format!("{l}.self_attn_layer_scale.scale"), &[h]);
        m.add(format!("{l}.mlp_layer_scale.scale"), &[h]);
    }

    if let Some(k) = e.downsample_kernel() {
        m.conv1d(&format!("{prefix}.downsample.conv"), h, h, k, 1, false);
    }

    // MimiSplitResidualVectorQuantizer: every stored codebook, used or not.
    let semantic = e.num_semantic_quantizers;
    let acoustic = e.num_quantizers.saturating_sub(semantic);
    for (name, count) in
        [("semantic_residual_vector_quantizer", semantic), ("acoustic_residual_vector_quantizer", acoustic)]
    {
        let rvq = format!("{prefix}.quantizer.{name}");
        let vq = e.vector_quantization_hidden_dimension;
        if vq != h {
            m.conv1d(&format!("{rvq}.input_proj"), h, vq, 1, 1, false);
            m.conv1d(&format!("{rvq}.output_proj"), vq, h, 1, 1, false);
        }
        for i in 0..count {
            let cb = format!("{rvq}.layers.{i}.codebook");
            m.add(format!("{cb}.initialized"), &[1]);
            m.add(format!("{cb}.cluster_usage"), &[e.codebook_size]);
            m.add(format!("{cb}.embed_sum"), &[e.codebook_size, e.codebook_dim()]);
        }
    }
}

/// `Qwen3TTSTokenizerV2Decoder`.
fn codec_decoder(m: &mut Manifest, prefix: &str, d: &SpeechDecoderConfig) {
    // SplitResidualVectorQuantizer(dimension = codebook_dim / 2, force_projection = True):
    // one semantic codebook in rvq_first, the rest in rvq_rest.
    let dim = d.codebook_dim / 2;
    for (name, count) in [("rvq_first", 1), ("rvq_rest", d.num_quantizers.saturating_sub(1))] {
        let rvq = format!("{prefix}.quantizer.{name}");
        m.conv1d(&format!("{rvq}.input_proj"), d.codebook_dim, dim, 1, 1, false);
        m.conv1d(&format!("{rvq}.output_proj"), dim, d.codebook_dim, 1, 1, false);
        for i in 0..count {
            let cb = format!("{rvq}.vq.layers.{i}._codebook");
            m.add(format!("{cb}.cluster_usage"), &[d.codebook_size]);
            m.add(format!("{cb}.embedding_sum"), &[d.codebook_size, dim]);
        }
    }

    m.conv1d(&format!("{prefix}.pre_conv.conv"), d.codebook_dim, d.latent_dim, 3, 1, true);

    // Qwen3TTSTokenizerV2DecoderTransformerModel: RMSNorm layers with layer scales, no QK-norm.
    let t = format!("{prefix}.pre_transformer");
    let h = d.hidden_size;
    let (q, kv) = (d.num_attention_heads * d.head_dim(), d.num_key_value_heads * d.head_dim());
    for i in 0..d.num_hidden_layers {
        let l = format!("{t}.layers.{i}");
        m.linear(&format!("{l}.self_attn.q_proj"), h, q, d.attention_bias);
        m.linear(&format!("{l}.self_attn.k_proj"), h, kv, d.attention_bias);
        m.linear(&format!("{l}.self_attn.v_proj"), h, kv, d.attention_bias);
        m.linear(&format!("{l}.self_attn.o_proj"), q, h, d.attention_bias);
        m.linear(&format!("{l}.mlp.gate_proj"), h, d.intermediate_size, false);
        m.linear(&format!("{l}.mlp.up_proj"), h, d.intermediate_size, false);
        m.linear(&format!("{l}.mlp.down_proj"), d.intermediate_size, h, false);
        m.norm(&format!("{l}.input_layernorm"), h, false);
        m.norm(&format!("{l}.post_attention_layernorm"), h, false);
        m.add(format!("{l}.self_attn_layer_scale.scale"), &[h]);
        m.add(format!("{l}.mlp_layer_scale.scale"), &[h]);
    }
    m.norm(&format!("{t}.norm"), h, false);
    m.linear(&format!("{t}.input_proj"), d.latent_dim, h, true);
    m.linear(&format!("{t}.output_proj"), h, d.latent_dim, true);

    // Upsampling stages: causal ConvTranspose1d(k = stride = factor) then a ConvNeXt block.
    let latent = d.latent_dim;
    for (i, &factor) in d.upsampling_ratios.iter().enumerate() {
        let u = format!("{prefix}.upsample.{i}");
        m.conv_transpose1d(&format!("{u}.0.conv"), latent, latent, factor);
        m.conv1d(&format!("{u}.1.dwconv.conv"), latent, latent, 7, latent, true);
        m.norm(&format!("{u}.1.norm"), latent, true);
        m.linear(&format!("{u}.1.pwconv1"), latent, 4 * latent, true);
        m.linear(&format!("{u}.1.pwconv2"), 4 * latent, latent, true);
        m.add(format!("{u}.1.gamma"), &[latent]);
    }

    // Vocoder: conv in, one block per rate (SnakeBeta, transposed conv, 3 residual units),
    // SnakeBeta, conv out.
    let v = format!("{prefix}.decoder");
    m.conv1d(&format!("{v}.0.conv"), latent, d.decoder_dim, 7, 1, true);
    let mut out = d.decoder_dim;
    for (i, &rate) in d.upsample_rates.iter().enumerate() {
        let b = format!("{v}.{}.block", i + 1);
        let inp = d.decoder_dim >> i;
        out = d.decoder_dim >> (i + 1);
        snake(m, &format!("{b}.0"), inp);
        m.conv_transpose1d(&format!("{b}.1.conv"), inp, out, 2 * rate);
        for unit in 2..5 {
            let r = format!("{b}.{unit}");
            snake(m, &format!("{r}.act1"), out);
            m.conv1d(&format!("{r}.conv1.conv"), out, out, 7, 1, true);
            snake(m, &format!("{r}.act2"), out);
            m.conv1d(&format!("{r}.conv2.conv"), out, out, 1, 1, true);
        }
    }
    let n = d.upsample_rates.len();
    snake(m, &format!("{v}.{}", n + 1), out);
    m.conv1d(&format!("{v}.{}.conv", n + 2), out, 1, 7, 1, true);
}

/// `SnakeBeta(channels)`: per-channel log-space alpha and beta.
fn snake(m: &mut Manifest, prefix: &str, channels: usize) {
    m.add(format!("{prefix}.alpha"), &[channels]);
    m.add(format!("{prefix}.beta"), &[channels]);
}
