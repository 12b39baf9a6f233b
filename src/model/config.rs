//! Typed mirrors of a checkpoint's JSON files: `config.json` ([`ModelConfig`]),
//! `generation_config.json` ([`GenerationConfig`]) and `speech_tokenizer/config.json`
//! ([`SpeechTokenizerConfig`]).
//!
//! Field names are the JSON keys, so `grep` finds both sides. Unknown keys are ignored: the
//! released files carry many legacy `PretrainedConfig` keys (`id2label`, `top_k`, ...) that
//! nothing reads.
//!
//! Defaults follow the Python classes (`qwen_tts/core/models/configuration_qwen3_tts.py`,
//! `tokenizer_12hz/configuration_qwen3_tts_tokenizer_v2.py`, transformers' `MimiConfig`) where
//! those defaults describe the released models. The talker and code-predictor sizes and codec
//! ids are required instead: their Python defaults (20 layers, 32 code groups, eos 4198, ...)
//! describe no released checkpoint, so a file without them is broken, not abbreviated.
//!
//! Values the Python code derives when a key is absent (`head_dim` = hidden / heads, ...) stay
//! `Option` in the mirror and are resolved by accessor methods of the same name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::error::{Error, ErrorKind, Result};

/// The three released model variants (`tts_model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// `"base"`: voice cloning from reference audio; has a speaker encoder.
    Base,
    /// `"custom_voice"`: built-in speakers (`spk_id`).
    CustomVoice,
    /// `"voice_design"`: the voice is described by an instruction text.
    VoiceDesign,
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

/// `config.json` (`Qwen3TTSConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelConfig {
    /// Which variant this checkpoint is; decides whether a speaker encoder exists.
    pub tts_model_type: ModelKind,
    /// "0b6" or "1b7"; see [`ModelConfig::size_label`].
    pub tts_model_size: String,
    /// Must be "qwen3_tts_tokenizer_12hz" (the 25 Hz tokenizer is not supported).
    pub tokenizer_type: String,
    #[serde(default = "defaults::im_start_token_id")]
    pub im_start_token_id: u32,
    #[serde(default = "defaults::im_end_token_id")]
    pub im_end_token_id: u32,
    /// Stored in the file; the reference code hard-codes the role tokens instead.
    #[serde(default = "defaults::assistant_token_id")]
    pub assistant_token_id: u32,
    #[serde(default = "defaults::tts_pad_token_id")]
    pub tts_pad_token_id: u32,
    #[serde(default = "defaults::tts_bos_token_id")]
    pub tts_bos_token_id: u32,
    #[serde(default = "defaults::tts_eos_token_id")]
    pub tts_eos_token_id: u32,
    /// Absent from CustomVoice/VoiceDesign files (which have no speaker encoder); Python then
    /// builds the class defaults, and so do we.
    #[serde(default)]
    pub speaker_encoder_config: SpeakerEncoderConfig,
    pub talker_config: TalkerConfig,
}

/// `speaker_encoder_config` (`Qwen3TTSSpeakerEncoderConfig`, an ECAPA-TDNN).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SpeakerEncoderConfig {
    /// Mel bins of the input (the front end hard-codes 128).
    pub mel_dim: usize,
    /// Width of the x-vector; must equal the talker hidden size (it is a codec-side row).
    pub enc_dim: usize,
    /// Output channels of: the first TDNN, each SE-Res2Net block, the MFA layer.
    pub enc_channels: Vec<usize>,
    pub enc_kernel_sizes: Vec<usize>,
    pub enc_dilations: Vec<usize>,
    pub enc_attention_channels: usize,
    pub enc_res2net_scale: usize,
    pub enc_se_channels: usize,
    pub sample_rate: u32,
}

impl Default for SpeakerEncoderConfig {
    fn default() -> Self {
        SpeakerEncoderConfig {
            mel_dim: 128,
            enc_dim: 1024,
            enc_channels: vec![512, 512, 512, 512, 1536],
            enc_kernel_sizes: vec![5, 3, 3, 3, 1],
            enc_dilations: vec![1, 2, 3, 4, 1],
            enc_attention_channels: 128,
            enc_res2net_scale: 8,
            enc_se_channels: 128,
            sample_rate: 24000,
        }
    }
}

/// `rope_scaling` of the talker: M-RoPE sections. With identical position rows (always the
/// case in TTS) the interleave is a no-op, but the sections must still cover `head_dim / 2`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    #[serde(default)]
    pub rope_type: Option<String>,
    /// Legacy spelling; when present Python copies it over `rope_type`.
    #[serde(default, rename = "type")]
    pub legacy_type: Option<String>,
    #[serde(default)]
    pub mrope_section: Option<Vec<usize>>,
    /// The interleave flag is `interleaved`, not `mrope_interleaved`.
    #[serde(default)]
    pub interleaved: bool,
}

impl RopeScaling {
    /// The effective RoPE type ("default" when unspecified).
    pub fn kind(&self) -> &str {
        self.legacy_type.as_deref().or(self.rope_type.as_deref()).unwrap_or("default")
    }
}

/// `talker_config` (`Qwen3TTSTalkerConfig`): the 28-layer decoder predicting codebook 0.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TalkerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Absent means hidden_size / num_attention_heads; see [`TalkerConfig::head_dim`].
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "defaults::silu")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "defaults::talker_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Codec vocabulary: 2048 codes of codebook 0, language tags, control and speaker tokens.
    pub vocab_size: usize,
    /// Rows of the text embedding (the Qwen2 text vocabulary, padded).
    pub text_vocab_size: usize,
    /// Width of the text embedding, before the projection to `hidden_size`.
    pub text_hidden_size: usize,
    /// Codebooks per frame (16): codebook 0 from the talker, the rest from the code predictor.
    pub num_code_groups: usize,
    pub codec_pad_id: u32,
    pub codec_bos_id: u32,
    pub codec_eos_token_id: u32,
    pub codec_think_id: u32,
    pub codec_nothink_id: u32,
    pub codec_think_bos_id: u32,
    pub codec_think_eos_id: u32,
    /// Language name (lower case) → codec token; includes dialect entries ("sichuan_dialect").
    pub codec_language_id: BTreeMap<String, u32>,
    /// Built-in speaker name → codec token (CustomVoice; empty otherwise).
    #[serde(default)]
    pub spk_id: BTreeMap<String, u32>,
    /// Speaker name → dialect language key, or `None` where the JSON says `false`.
    #[serde(default, deserialize_with = "dialect_map")]
    pub spk_is_dialect: BTreeMap<String, Option<String>>,
    pub code_predictor_config: CodePredictorConfig,
}

/// `talker_config.code_predictor_config`: the 5-layer decoder predicting codebooks 1..15.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CodePredictorConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "defaults::silu")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "defaults::talker_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Entries per codebook (2048).
    pub vocab_size: usize,
    /// Must equal the talker's; the predictor has `num_code_groups - 1` embeddings and heads.
    pub num_code_groups: usize,
}

impl TalkerConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The dialect language key of a built-in speaker, if it has one.
    pub fn speaker_dialect(&self, speaker: &str) -> Option<&str> {
        self.spk_is_dialect.get(speaker).and_then(|d| d.as_deref())
    }
}

impl CodePredictorConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

impl ModelConfig {
    /// Reads, parses and validates `config.json`. Errors name the file and the key path.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: ModelConfig = read_json(path)?;
        config.validate().map_err(|e| e.context(path.display()))?;
        Ok(config)
    }

    /// Parses `config.json` text without validating it.
    pub fn from_json_str(text: &str) -> Result<Self> {
        parse_json(text.as_bytes())
    }

    pub fn kind(&self) -> ModelKind {
        self.tts_model_type
    }

    /// "0.6B" / "1.7B" from "0b6" / "1b7"; other spellings pass through unchanged.
    pub fn size_label(&self) -> String {
        let size = self.tts_model_size.as_str();
        match size.split_once(['b', 'B']) {
            Some((whole, frac))
                if !whole.is_empty()
                    && !frac.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && frac.bytes().all(|b| b.is_ascii_digit()) =>
            {
                format!("{whole}.{frac}B")
            }
            _ => size.to_owned(),
        }
    }

    /// Languages a request may name: "auto" first, then the `codec_language_id` keys sorted,
    /// without dialect entries (a dialect is chosen through the speaker, not by name; this is
    /// the reference `supported_languages`).
    pub fn languages(&self) -> Vec<String> {
        let names = self.talker_config.codec_language_id.keys().filter(|k| !k.contains("dialect")).cloned();
        std::iter::once("auto".to_owned()).chain(names).collect()
    }

    /// Built-in speaker names, sorted (empty except for CustomVoice).
    pub fn speakers(&self) -> Vec<String> {
        self.talker_config.spk_id.keys().cloned().collect()
    }

    /// Rejects values no model can have: zero sizes, heads that do not divide, token ids
    /// outside their vocabularies, dangling dialect names. Also rejects valid configurations
    /// this library does not implement (`Unsupported`). Messages name the key path.
    pub fn validate(&self) -> Result<()> {
        if self.tokenizer_type != "qwen3_tts_tokenizer_12hz" {
            return Err(Error::unsupported(format!(
                "tokenizer_type is \"{}\"; only the 12 Hz tokenizer (\"qwen3_tts_tokenizer_12hz\") is supported",
                self.tokenizer_type
            )));
        }
        let t = &self.talker_config;
        check_decoder(
            "talker_config",
            Decoder {
                hidden_size: t.hidden_size,
                intermediate_size: t.intermediate_size,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                num_key_value_heads: t.num_key_value_heads,
                head_dim: t.head_dim,
                hidden_act: &t.hidden_act,
                rms_norm_eps: t.rms_norm_eps,
                rope_theta: t.rope_theta,
                use_sliding_window: t.use_sliding_window,
            },
        )?;
        positive("talker_config.vocab_size", t.vocab_size)?;
        positive("talker_config.text_vocab_size", t.text_vocab_size)?;
        positive("talker_config.text_hidden_size", t.text_hidden_size)?;
        count("talker_config.num_code_groups", t.num_code_groups, MAX_CODEBOOKS)?;
        if t.num_code_groups < 2 {
            return Err(bad(format!(
                "talker_config.num_code_groups is {}; it must be at least 2 (codebook 0 plus predicted codebooks)",
                t.num_code_groups
            )));
        }
        if let Some(rs) = &t.rope_scaling {
            check_rope_scaling("talker_config.rope_scaling", rs, t.head_dim())?;
        }

        let codec_ids = [
            ("codec_pad_id", t.codec_pad_id),
            ("codec_bos_id", t.codec_bos_id),
            ("codec_eos_token_id", t.codec_eos_token_id),
            ("codec_think_id", t.codec_think_id),
            ("codec_nothink_id", t.codec_nothink_id),
            ("codec_think_bos_id", t.codec_think_bos_id),
            ("codec_think_eos_id", t.codec_think_eos_id),
        ];
        for (key, id) in codec_ids {
            in_vocab(&format!("talker_config.{key}"), id, t.vocab_size, "talker_config.vocab_size")?;
        }
        if t.codec_language_id.is_empty() {
            return Err(bad("talker_config.codec_language_id is empty; at least one language is needed"));
        }
        for (name, &id) in &t.codec_language_id {
            in_vocab(&format!("talker_config.codec_language_id.{name}"), id, t.vocab_size, "talker_config.vocab_size")?;
        }
        for (name, &id) in &t.spk_id {
            in_vocab(&format!("talker_config.spk_id.{name}"), id, t.vocab_size, "talker_config.vocab_size")?;
        }
        for (speaker, dialect) in &t.spk_is_dialect {
            if !t.spk_id.contains_key(speaker) {
                return Err(bad(format!(
                    "talker_config.spk_is_dialect.{speaker}: no such speaker in talker_config.spk_id"
                )));
            }
            if let Some(d) = dialect
                && !t.codec_language_id.contains_key(d)
            {
                return Err(bad(format!(
                    "talker_config.spk_is_dialect.{speaker} is \"{d}\", which is not a key of talker_config.codec_language_id"
                )));
            }
        }
        let text_ids = [
            ("im_start_token_id", self.im_start_token_id),
            ("im_end_token_id", self.im_end_token_id),
            ("assistant_token_id", self.assistant_token_id),
            ("tts_pad_token_id", self.tts_pad_token_id),
            ("tts_bos_token_id", self.tts_bos_token_id),
            ("tts_eos_token_id", self.tts_eos_token_id),
        ];
        for (key, id) in text_ids {
            in_vocab(key, id, t.text_vocab_size, "talker_config.text_vocab_size")?;
        }

        let p = &t.code_predictor_config;
        check_decoder(
            "talker_config.code_predictor_config",
            Decoder {
                hidden_size: p.hidden_size,
                intermediate_size: p.intermediate_size,
                num_hidden_layers: p.num_hidden_layers,
                num_attention_heads: p.num_attention_heads,
                num_key_value_heads: p.num_key_value_heads,
                head_dim: p.head_dim,
                hidden_act: &p.hidden_act,
                rms_norm_eps: p.rms_norm_eps,
                rope_theta: p.rope_theta,
                use_sliding_window: p.use_sliding_window,
            },
        )?;
        positive("talker_config.code_predictor_config.vocab_size", p.vocab_size)?;
        if p.num_code_groups != t.num_code_groups {
            return Err(bad(format!(
                "talker_config.code_predictor_config.num_code_groups is {}, but talker_config.num_code_groups is {}",
                p.num_code_groups, t.num_code_groups
            )));
        }
        if p.vocab_size > t.vocab_size {
            return Err(bad(format!(
                "talker_config.code_predictor_config.vocab_size ({}) exceeds talker_config.vocab_size ({}): \
                 codebook-0 codes (one codebook's size) must fit in the talker's codec vocabulary",
                p.vocab_size, t.vocab_size
            )));
        }
        // Codec tokens below the codebook size are codebook-0 codes; control tokens sit above.
        for (key, id) in codec_ids {
            if (id as usize) < p.vocab_size {
                return Err(bad(format!(
                    "talker_config.{key} is {id}, inside the codebook-0 code range 0..{} \
                     (talker_config.code_predictor_config.vocab_size)",
                    p.vocab_size
                )));
            }
        }
        if let Some(rs) = &p.rope_scaling
            && rs.kind() != "default"
        {
            return Err(Error::unsupported(format!(
                "talker_config.code_predictor_config.rope_scaling type \"{}\" is not supported (only plain RoPE)",
                rs.kind()
            )));
        }
        if let Some(types) = &p.layer_types {
            if types.len() != p.num_hidden_layers {
                return Err(bad(format!(
                    "talker_config.code_predictor_config.layer_types has {} entries for {} layers",
                    types.len(),
                    p.num_hidden_layers
                )));
            }
            if let Some(other) = types.iter().find(|t| *t != "full_attention") {
                return Err(Error::unsupported(format!(
                    "talker_config.code_predictor_config.layer_types contains \"{other}\"; only full_attention is supported"
                )));
            }
        }

        if self.tts_model_type == ModelKind::Base {
            self.speaker_encoder_config.validate(t.hidden_size)?;
        }
        Ok(())
    }
}

impl SpeakerEncoderConfig {
    /// Structure checks; `talker_hidden` is the width the x-vector must have.
    fn validate(&self, talker_hidden: usize) -> Result<()> {
        let key = |k: &str| format!("speaker_encoder_config.{k}");
        positive(&key("mel_dim"), self.mel_dim)?;
        positive(&key("enc_attention_channels"), self.enc_attention_channels)?;
        positive(&key("enc_se_channels"), self.enc_se_channels)?;
        positive(&key("sample_rate"), self.sample_rate as usize)?;
        if self.enc_dim != talker_hidden {
            return Err(bad(format!(
                "speaker_encoder_config.enc_dim is {}, but the x-vector is a talker input row of width \
                 talker_config.hidden_size = {talker_hidden}",
                self.enc_dim
            )));
        }
        let n = self.enc_channels.len();
        if n < 3 {
            return Err(bad(format!(
                "speaker_encoder_config.enc_channels has {n} entries; it needs the first TDNN, at least one SE-Res2Net block and the MFA layer"
            )));
        }
        if self.enc_kernel_sizes.len() != n || self.enc_dilations.len() != n {
            return Err(bad(format!(
                "speaker_encoder_config: enc_channels, enc_kernel_sizes and enc_dilations must have the same length (found {n}, {}, {})",
                self.enc_kernel_sizes.len(),
                self.enc_dilations.len()
            )));
        }
        for (i, (&c, (&k, &d))) in
            self.enc_channels.iter().zip(self.enc_kernel_sizes.iter().zip(&self.enc_dilations)).enumerate()
        {
            positive(&key(&format!("enc_channels[{i}]")), c)?;
            positive(&key(&format!("enc_kernel_sizes[{i}]")), k)?;
            positive(&key(&format!("enc_dilations[{i}]")), d)?;
        }
        count(&key("enc_res2net_scale"), self.enc_res2net_scale, MAX_SUBBLOCKS)?;
        if self.enc_res2net_scale < 2 {
            return Err(bad(format!(
                "speaker_encoder_config.enc_res2net_scale is {}; it must be at least 2",
                self.enc_res2net_scale
            )));
        }
        for (i, &c) in self.enc_channels[1..n - 1].iter().enumerate() {
            if !c.is_multiple_of(self.enc_res2net_scale) {
                return Err(bad(format!(
                    "speaker_encoder_config.enc_channels[{}] = {c} is not divisible by enc_res2net_scale = {}",
                    i + 1,
                    self.enc_res2net_scale
                )));
            }
        }
        // The MFA layer consumes the concatenated SE-block outputs but is declared with
        // enc_channels[-1] inputs; anything else fails at the first forward in Python too.
        let concat: usize = self.enc_channels[1..n - 1].iter().sum();
        if concat != self.enc_channels[n - 1] {
            return Err(bad(format!(
                "speaker_encoder_config.enc_channels: the MFA width {} must equal the sum of the SE-block widths ({concat})",
                self.enc_channels[n - 1]
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// generation_config.json
// ---------------------------------------------------------------------------------------------

/// `generation_config.json`: sampling defaults for the talker and the code predictor
/// ("subtalker"). Missing keys take the wrapper's hard defaults (`_merge_generate_kwargs`),
/// which differ from the released file only in `max_new_tokens` (2048 vs 8192).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub do_sample: bool,
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub top_p: f32,
    pub repetition_penalty: f32,
    pub subtalker_dosample: bool,
    pub subtalker_temperature: f32,
    pub subtalker_top_k: usize,
    pub subtalker_top_p: f32,
    pub max_new_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            do_sample: true,
            temperature: 0.9,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.05,
            subtalker_dosample: true,
            subtalker_temperature: 0.9,
            subtalker_top_k: 50,
            subtalker_top_p: 1.0,
            max_new_tokens: 2048,
        }
    }
}

impl GenerationConfig {
    /// Reads, parses and validates `generation_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: GenerationConfig = read_json(path)?;
        config.validate().map_err(|e| e.context(path.display()))?;
        Ok(config)
    }

    /// Parses `generation_config.json` text without validating it.
    pub fn from_json_str(text: &str) -> Result<Self> {
        parse_json(text.as_bytes())
    }

    pub fn validate(&self) -> Result<()> {
        for (key, t) in [("temperature", self.temperature), ("subtalker_temperature", self.subtalker_temperature)] {
            if !(t.is_finite() && t > 0.0) {
                return Err(bad(format!("{key} is {t}; it must be a positive number")));
            }
        }
        for (key, p) in [("top_p", self.top_p), ("subtalker_top_p", self.subtalker_top_p)] {
            if !(p > 0.0 && p <= 1.0) {
                return Err(bad(format!("{key} is {p}; it must be in (0, 1]")));
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(bad(format!(
                "repetition_penalty is {}; it must be a positive number",
                self.repetition_penalty
            )));
        }
        positive("max_new_tokens", self.max_new_tokens)
    }
}

// ---------------------------------------------------------------------------------------------
// speech_tokenizer/config.json
// ---------------------------------------------------------------------------------------------

/// `speech_tokenizer/config.json` (`Qwen3TTSTokenizerV2Config`): the 12 Hz codec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpeechTokenizerConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    /// Codebooks the encoder emits (semantic + acoustic), = codebooks per frame.
    #[serde(default = "defaults::num_codebooks")]
    pub encoder_valid_num_quantizers: usize,
    #[serde(default = "defaults::sample_rate")]
    pub input_sample_rate: u32,
    #[serde(default = "defaults::sample_rate")]
    pub output_sample_rate: u32,
    /// Input samples per codec frame.
    #[serde(default = "defaults::hop")]
    pub encode_downsample_rate: u32,
    /// Output samples per codec frame.
    #[serde(default = "defaults::hop")]
    pub decode_upsample_rate: u32,
    pub decoder_config: SpeechDecoderConfig,
    pub encoder_config: MimiEncoderConfig,
}

/// `decoder_config` (`Qwen3TTSTokenizerV2DecoderConfig`): codes → 24 kHz waveform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpeechDecoderConfig {
    #[serde(default = "defaults::codebook_size")]
    pub codebook_size: usize,
    /// No class default: the quantizer works at `codebook_dim / 2`.
    pub codebook_dim: usize,
    #[serde(default = "defaults::decoder_latent_dim")]
    pub latent_dim: usize,
    #[serde(default = "defaults::decoder_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::decoder_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::eight")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::sixteen")]
    pub num_attention_heads: usize,
    #[serde(default = "defaults::sixteen")]
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "defaults::silu")]
    pub hidden_act: String,
    #[serde(default = "defaults::codec_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "defaults::codec_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "defaults::codec_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Keys each query sees, itself included (72).
    #[serde(default = "defaults::decoder_sliding_window")]
    pub sliding_window: usize,
    #[serde(default = "defaults::layer_scale_initial_scale")]
    pub layer_scale_initial_scale: f64,
    #[serde(default = "defaults::num_codebooks")]
    pub num_quantizers: usize,
    /// Rates of the four vocoder blocks (8, 5, 4, 3).
    #[serde(default = "defaults::decoder_upsample_rates")]
    pub upsample_rates: Vec<usize>,
    /// Rates of the ConvNeXt upsampling stages after the transformer (2, 2).
    #[serde(default = "defaults::decoder_upsampling_ratios")]
    pub upsampling_ratios: Vec<usize>,
    #[serde(default = "defaults::decoder_dim")]
    pub decoder_dim: usize,
    /// Stored but not read by the decoder.
    #[serde(default)]
    pub num_semantic_quantizers: Option<usize>,
    /// Stored but not read by the decoder.
    #[serde(default)]
    pub semantic_codebook_size: Option<usize>,
    /// Stored but not read by the decoder.
    #[serde(default)]
    pub vector_quantization_hidden_dimension: Option<usize>,
}

impl SpeechDecoderConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

/// `encoder_config` (transformers `MimiConfig`): waveform → codes. Only the encoder half
/// of Mimi is built; the fields of its decoder half are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MimiEncoderConfig {
    #[serde(default = "defaults::sample_rate")]
    pub sampling_rate: u32,
    /// Explicit frame rate (stored as `_frame_rate`); absent means sampling_rate / frame_size.
    #[serde(default, rename = "_frame_rate", alias = "frame_rate")]
    pub frame_rate: Option<f64>,
    #[serde(default = "defaults::one")]
    pub audio_channels: usize,
    #[serde(default = "defaults::mimi_num_filters")]
    pub num_filters: usize,
    #[serde(default = "defaults::one")]
    pub num_residual_layers: usize,
    /// Listed decoder-side; the encoder applies them reversed as conv strides (4, 5, 6, 8).
    #[serde(default = "defaults::mimi_upsampling_ratios")]
    pub upsampling_ratios: Vec<usize>,
    #[serde(default = "defaults::mimi_kernel_size")]
    pub kernel_size: usize,
    #[serde(default = "defaults::mimi_last_kernel_size")]
    pub last_kernel_size: usize,
    #[serde(default = "defaults::mimi_residual_kernel_size")]
    pub residual_kernel_size: usize,
    #[serde(default = "defaults::mimi_dilation_growth_rate")]
    pub dilation_growth_rate: usize,
    #[serde(default = "defaults::mimi_compress")]
    pub compress: usize,
    #[serde(default = "defaults::yes")]
    pub use_causal_conv: bool,
    #[serde(default = "defaults::mimi_pad_mode")]
    pub pad_mode: String,
    #[serde(default)]
    pub use_conv_shortcut: bool,
    #[serde(default = "defaults::mimi_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "defaults::eight")]
    pub num_hidden_layers: usize,
    #[serde(default = "defaults::eight")]
    pub num_attention_heads: usize,
    #[serde(default = "defaults::eight")]
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "defaults::mimi_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "defaults::gelu")]
    pub hidden_act: String,
    #[serde(default = "defaults::codec_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "defaults::codec_rope_theta")]
    pub rope_theta: f64,
    /// Only honoured by flash-attention-2 in the reference; SDPA/eager attend causally to all.
    #[serde(default = "defaults::mimi_sliding_window")]
    pub sliding_window: usize,
    #[serde(default = "defaults::codec_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::layer_scale_initial_scale")]
    pub layer_scale_initial_scale: f64,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "defaults::codebook_size")]
    pub codebook_size: usize,
    /// `null` means hidden_size (MimiConfig); absent means 256.
    #[serde(default = "defaults::mimi_codebook_dim")]
    pub codebook_dim: Option<usize>,
    #[serde(default = "defaults::mimi_vq_hidden")]
    pub vector_quantization_hidden_dimension: usize,
    /// Codebooks stored (32); only `encoder_valid_num_quantizers` of them are used.
    #[serde(default = "defaults::mimi_num_quantizers")]
    pub num_quantizers: usize,
    #[serde(default = "defaults::one")]
    pub num_semantic_quantizers: usize,
    #[serde(default = "defaults::mimi_upsample_groups")]
    pub upsample_groups: usize,
}

impl MimiEncoderConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn codebook_dim(&self) -> usize {
        self.codebook_dim.unwrap_or(self.hidden_size)
    }

    /// Samples per frame of the conv stack (product of the strides; 960).
    pub fn conv_hop(&self) -> usize {
        self.upsampling_ratios.iter().product()
    }

    /// Frame rate after the conv stack (`encodec_frame_rate`, 25 Hz): ceil(sr / hop).
    pub fn encodec_frame_rate(&self) -> usize {
        (self.sampling_rate as usize).div_ceil(self.conv_hop().max(1))
    }

    /// Output frame rate (12.5 Hz).
    pub fn frame_rate(&self) -> f64 {
        match self.frame_rate {
            Some(rate) => rate,
            // MimiConfig.frame_size: conv strides times the stride-2 downsample.
            None => self.sampling_rate as f64 / (self.conv_hop() * 2) as f64,
        }
    }

    /// Kernel of the stride-2 downsample conv, or `None` when the rates match and Mimi builds
    /// no downsample layer.
    pub fn downsample_kernel(&self) -> Option<usize> {
        let encodec = self.encodec_frame_rate() as f64;
        (self.frame_rate() != encodec).then(|| 2 * (encodec / self.frame_rate()) as usize)
    }
}

impl SpeechTokenizerConfig {
    /// Reads, parses and validates `speech_tokenizer/config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: SpeechTokenizerConfig = read_json(path)?;
        config.validate().map_err(|e| e.context(path.display()))?;
        Ok(config)
    }

    /// Parses `speech_tokenizer/config.json` text without validating it.
    pub fn from_json_str(text: &str) -> Result<Self> {
        parse_json(text.as_bytes())
    }

    /// Codec frames per second of output audio (12.5).
    pub fn frame_rate(&self) -> f32 {
        self.output_sample_rate as f32 / self.decode_upsample_rate as f32
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(mt) = &self.model_type
            && mt != "qwen3_tts_tokenizer_12hz"
        {
            return Err(Error::unsupported(format!(
                "model_type is \"{mt}\"; only \"qwen3_tts_tokenizer_12hz\" is supported"
            )));
        }
        positive("input_sample_rate", self.input_sample_rate as usize)?;
        positive("output_sample_rate", self.output_sample_rate as usize)?;
        positive("encode_downsample_rate", self.encode_downsample_rate as usize)?;
        positive("decode_upsample_rate", self.decode_upsample_rate as usize)?;

        let d = &self.decoder_config;
        let dk = |k: &str| format!("decoder_config.{k}");
        for (k, v) in [
            ("codebook_size", d.codebook_size),
            ("latent_dim", d.latent_dim),
            ("hidden_size", d.hidden_size),
            ("intermediate_size", d.intermediate_size),
            ("sliding_window", d.sliding_window),
            ("decoder_dim", d.decoder_dim),
        ] {
            positive(&dk(k), v)?;
        }
        count(&dk("num_hidden_layers"), d.num_hidden_layers, MAX_LAYERS)?;
        count(&dk("num_quantizers"), d.num_quantizers, MAX_CODEBOOKS)?;
        heads(&dk(""), d.num_attention_heads, d.num_key_value_heads, d.head_dim())?;
        eps(&dk("rms_norm_eps"), d.rms_norm_eps)?;
        eps(&dk("rope_theta"), d.rope_theta)?;
        act(&dk("hidden_act"), &d.hidden_act, "silu")?;
        if d.codebook_dim < 2 || !d.codebook_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "decoder_config.codebook_dim is {}; it must be a positive even number (the quantizer works at half of it)",
                d.codebook_dim
            )));
        }
        if d.num_quantizers < 2 {
            return Err(bad(format!(
                "decoder_config.num_quantizers is {}; it must be at least 2 (one semantic plus acoustic codebooks)",
                d.num_quantizers
            )));
        }
        nonzero_list(&dk("upsample_rates"), &d.upsample_rates)?;
        nonzero_list(&dk("upsampling_ratios"), &d.upsampling_ratios)?;
        let halvings = d.upsample_rates.len() as u32;
        if halvings >= usize::BITS || !d.decoder_dim.is_multiple_of(1usize << halvings) {
            return Err(bad(format!(
                "decoder_config.decoder_dim ({}) must be divisible by 2^{halvings} (one halving per upsample_rates entry)",
                d.decoder_dim
            )));
        }
        let total: usize = d.upsample_rates.iter().chain(&d.upsampling_ratios).product();
        if total != self.decode_upsample_rate as usize {
            return Err(bad(format!(
                "decoder_config upsampling (upsample_rates {:?} x upsampling_ratios {:?} = {total}) differs from \
                 decode_upsample_rate ({})",
                d.upsample_rates, d.upsampling_ratios, self.decode_upsample_rate
            )));
        }

        let e = &self.encoder_config;
        let ek = |k: &str| format!("encoder_config.{k}");
        for (k, v) in [
            ("sampling_rate", e.sampling_rate as usize),
            ("audio_channels", e.audio_channels),
            ("num_filters", e.num_filters),
            ("kernel_size", e.kernel_size),
            ("last_kernel_size", e.last_kernel_size),
            ("residual_kernel_size", e.residual_kernel_size),
            ("compress", e.compress),
            ("hidden_size", e.hidden_size),
            ("intermediate_size", e.intermediate_size),
            ("codebook_size", e.codebook_size),
            ("vector_quantization_hidden_dimension", e.vector_quantization_hidden_dimension),
            ("upsample_groups", e.upsample_groups),
        ] {
            positive(&ek(k), v)?;
        }
        count(&ek("num_hidden_layers"), e.num_hidden_layers, MAX_LAYERS)?;
        count(&ek("num_quantizers"), e.num_quantizers, MAX_CODEBOOKS)?;
        if e.num_residual_layers > MAX_SUBBLOCKS {
            return Err(bad(format!(
                "encoder_config.num_residual_layers is {}; at most {MAX_SUBBLOCKS} is supported",
                e.num_residual_layers
            )));
        }
        heads(&ek(""), e.num_attention_heads, e.num_key_value_heads, e.head_dim())?;
        eps(&ek("norm_eps"), e.norm_eps)?;
        eps(&ek("rope_theta"), e.rope_theta)?;
        act(&ek("hidden_act"), &e.hidden_act, "gelu")?;
        nonzero_list(&ek("upsampling_ratios"), &e.upsampling_ratios)?;
        if !e.hidden_size.is_multiple_of(e.num_attention_heads) {
            return Err(bad(format!(
                "encoder_config.hidden_size ({}) is not divisible by num_attention_heads ({})",
                e.hidden_size, e.num_attention_heads
            )));
        }
        if !e.codebook_size.is_power_of_two() {
            return Err(bad(format!("encoder_config.codebook_size ({}) must be a power of 2", e.codebook_size)));
        }
        if e.codebook_dim() != e.vector_quantization_hidden_dimension {
            return Err(bad(format!(
                "encoder_config.codebook_dim ({}) differs from vector_quantization_hidden_dimension ({}): the codebooks \
                 quantize the projected features",
                e.codebook_dim(),
                e.vector_quantization_hidden_dimension
            )));
        }
        if e.num_semantic_quantizers == 0 || e.num_semantic_quantizers >= e.num_quantizers {
            return Err(bad(format!(
                "encoder_config.num_semantic_quantizers ({}) must be at least 1 and below num_quantizers ({})",
                e.num_semantic_quantizers, e.num_quantizers
            )));
        }
        if !e.hidden_size.is_multiple_of(e.upsample_groups) {
            return Err(bad(format!(
                "encoder_config.upsample_groups ({}) does not divide hidden_size ({})",
                e.upsample_groups, e.hidden_size
            )));
        }
        // A residual block's inner width is `width / compress` rounded down, as in the
        // official `MimiResnetBlock` (`dim // compress`): any width loads.
        if !(e.frame_rate() > 0.0 && e.frame_rate().is_finite()) {
            return Err(bad(format!("encoder_config._frame_rate is {}; it must be positive", e.frame_rate())));
        }
        if let Some(k) = e.downsample_kernel()
            && k == 0
        {
            return Err(bad(format!(
                "encoder_config: frame rate {} Hz is above the conv-stack rate {} Hz",
                e.frame_rate(),
                e.encodec_frame_rate()
            )));
        }

        // Codes go both ways through the same codebooks at the same frame rate.
        if self.encoder_valid_num_quantizers == 0 || self.encoder_valid_num_quantizers > e.num_quantizers {
            return Err(bad(format!(
                "encoder_valid_num_quantizers ({}) must be between 1 and encoder_config.num_quantizers ({})",
                self.encoder_valid_num_quantizers, e.num_quantizers
            )));
        }
        if self.encoder_valid_num_quantizers != d.num_quantizers {
            return Err(bad(format!(
                "encoder_valid_num_quantizers ({}) differs from decoder_config.num_quantizers ({})",
                self.encoder_valid_num_quantizers, d.num_quantizers
            )));
        }
        if e.codebook_size != d.codebook_size {
            return Err(bad(format!(
                "encoder_config.codebook_size ({}) differs from decoder_config.codebook_size ({})",
                e.codebook_size, d.codebook_size
            )));
        }
        let in_rate = self.input_sample_rate as f64 / self.encode_downsample_rate as f64;
        let out_rate = self.output_sample_rate as f64 / self.decode_upsample_rate as f64;
        if in_rate != out_rate || (in_rate - e.frame_rate()).abs() > 1e-9 {
            return Err(bad(format!(
                "frame rates disagree: input_sample_rate / encode_downsample_rate = {in_rate} Hz, \
                 output_sample_rate / decode_upsample_rate = {out_rate} Hz, encoder_config frame rate = {} Hz",
                e.frame_rate()
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and shared checks
// ---------------------------------------------------------------------------------------------

/// Largest configuration file read (the released ones are a few KB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads and parses a JSON file; errors name the file and the key path.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = crate::files::read_bounded(path, MAX_CONFIG_BYTES, |size| {
        bad(format!("{}: {size} bytes is too large for a configuration file (at most {MAX_CONFIG_BYTES})", path.display()))
    })?;
    parse_json(&bytes).map_err(|e| e.context(path.display()))
}

/// Parses JSON into `T`, tracking the key path of the first error.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return bad(format!("not valid JSON: {inner}"));
        }
        let message = inner.to_string();
        // serde reports a missing field at its parent's path ("talker_config"), naming the
        // field only in the text ("missing field `hidden_size`"); join them into one key path.
        if let Some(rest) = message.strip_prefix("missing field `")
            && let Some((field, _)) = rest.split_once('`')
        {
            let key = if path == "." { field.to_owned() } else { format!("{path}.{field}") };
            return bad(format!("missing required key `{key}`"));
        }
        if path == "." { bad(message) } else { bad(format!("key `{path}`: {message}")) }
    })?;
    de.end().map_err(|e| bad(format!("not valid JSON: {e}")))?;
    Ok(value)
}

/// `spk_is_dialect` values are `false` or a dialect key; `true` means nothing and is rejected.
fn dialect_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, Option<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Name(String),
    }
    let raw = BTreeMap::<String, Raw>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(speaker, value)| match value {
            Raw::Flag(false) => Ok((speaker, None)),
            Raw::Name(name) => Ok((speaker, Some(name))),
            Raw::Flag(true) => {
                Err(de::Error::custom(format!("spk_is_dialect.{speaker} is true; expected false or a dialect name")))
            }
        })
        .collect()
}

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadConfig, message)
}

fn positive(key: &str, value: usize) -> Result<()> {
    if value == 0 { Err(bad(format!("{key} is 0; it must be positive"))) } else { Ok(()) }
}

/// Most layers of any stack (released: 28 talker, 5 code predictor, 8 per codec transformer).
/// Layer counts size the expected-tensor list before any weight is looked at, so they are
/// bounded first.
pub const MAX_LAYERS: usize = 1024;
/// Most codebooks per frame / quantizers of the codec (released: 16 used, 32 stored).
pub const MAX_CODEBOOKS: usize = 256;
/// Most repeated sub-blocks of the speaker and codec encoders (res2net scale, residual layers).
pub const MAX_SUBBLOCKS: usize = 256;

/// `positive` and at most `max`: a count that drives loops before anything is checked.
fn count(key: &str, value: usize, max: usize) -> Result<()> {
    positive(key, value)?;
    if value > max {
        return Err(bad(format!("{key} is {value}; at most {max} is supported")));
    }
    Ok(())
}

fn eps(key: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(format!("{key} is {value}; it must be a positive number")))
    }
}

fn act(key: &str, value: &str, expected: &str) -> Result<()> {
    if value == expected {
        Ok(())
    } else {
        Err(Error::unsupported(format!("{key} is \"{value}\"; only \"{expected}\" is implemented")))
    }
}

fn in_vocab(key: &str, id: u32, vocab: usize, vocab_key: &str) -> Result<()> {
    if (id as usize) < vocab { Ok(()) } else { Err(bad(format!("{key} is {id}, outside {vocab_key} ({vocab})"))) }
}

fn nonzero_list(key: &str, values: &[usize]) -> Result<()> {
    if values.is_empty() || values.contains(&0) {
        Err(bad(format!("{key} is {values:?}; it must be a non-empty list of positive integers")))
    } else {
        Ok(())
    }
}

/// Attention head layout: positive counts, query heads a multiple of KV heads, even head_dim
/// (RoPE rotates pairs). `prefix` ends in "." or is empty.
fn heads(prefix: &str, num_heads: usize, num_kv_heads: usize, head_dim: usize) -> Result<()> {
    positive(&format!("{prefix}num_attention_heads"), num_heads)?;
    positive(&format!("{prefix}num_key_value_heads"), num_kv_heads)?;
    if !num_heads.is_multiple_of(num_kv_heads) {
        return Err(bad(format!(
            "{prefix}num_attention_heads ({num_heads}) is not a multiple of {prefix}num_key_value_heads ({num_kv_heads})"
        )));
    }
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(bad(format!(
            "{prefix}head_dim is {head_dim}; it must be a positive even number (RoPE rotates pairs)"
        )));
    }
    Ok(())
}

/// The fields shared by the talker and code-predictor decoder stacks.
struct Decoder<'a> {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    head_dim: Option<usize>,
    hidden_act: &'a str,
    rms_norm_eps: f64,
    rope_theta: f64,
    use_sliding_window: bool,
}

fn check_decoder(section: &str, d: Decoder<'_>) -> Result<()> {
    positive(&format!("{section}.hidden_size"), d.hidden_size)?;
    positive(&format!("{section}.intermediate_size"), d.intermediate_size)?;
    count(&format!("{section}.num_hidden_layers"), d.num_hidden_layers, MAX_LAYERS)?;
    positive(&format!("{section}.num_attention_heads"), d.num_attention_heads)?;
    let head_dim = d.head_dim.unwrap_or(d.hidden_size / d.num_attention_heads);
    heads(&format!("{section}."), d.num_attention_heads, d.num_key_value_heads, head_dim)?;
    eps(&format!("{section}.rms_norm_eps"), d.rms_norm_eps)?;
    eps(&format!("{section}.rope_theta"), d.rope_theta)?;
    act(&format!("{section}.hidden_act"), d.hidden_act, "silu")?;
    if d.use_sliding_window {
        return Err(Error::unsupported(format!(
            "{section}.use_sliding_window is true; sliding-window attention is not supported"
        )));
    }
    Ok(())
}

fn check_rope_scaling(key: &str, rs: &RopeScaling, head_dim: usize) -> Result<()> {
    if rs.kind() != "default" {
        return Err(Error::unsupported(format!(
            "{key}: rope type \"{}\" is not supported (only \"default\")",
            rs.kind()
        )));
    }
    if let Some(sections) = &rs.mrope_section {
        let sum: usize = sections.iter().sum();
        if sum != head_dim / 2 {
            return Err(bad(format!(
                "{key}.mrope_section {sections:?} sums to {sum}, but head_dim / 2 is {}",
                head_dim / 2
            )));
        }
    }
    Ok(())
}

/// Class defaults of the Python configs, as functions for `#[serde(default = ...)]`.
mod defaults {
    macro_rules! defaults {
        ($($name:ident: $ty:ty = $value:expr;)*) => { $(pub fn $name() -> $ty { $value })* };
    }
    defaults! {
        im_start_token_id: u32 = 151644;
        im_end_token_id: u32 = 151645;
        assistant_token_id: u32 = 77091;
        tts_pad_token_id: u32 = 151671;
        tts_bos_token_id: u32 = 151672;
        tts_eos_token_id: u32 = 151673;
        silu: String = "silu".into();
        gelu: String = "gelu".into();
        yes: bool = true;
        one: usize = 1;
        eight: usize = 8;
        sixteen: usize = 16;
        talker_max_position_embeddings: usize = 32768;
        num_codebooks: usize = 16;
        sample_rate: u32 = 24000;
        hop: u32 = 1920;
        codebook_size: usize = 2048;
        decoder_latent_dim: usize = 1024;
        decoder_hidden_size: usize = 1024;
        decoder_intermediate_size: usize = 3072;
        codec_norm_eps: f64 = 1e-5;
        codec_rope_theta: f64 = 10000.0;
        codec_max_position_embeddings: usize = 8000;
        decoder_sliding_window: usize = 72;
        layer_scale_initial_scale: f64 = 0.01;
        decoder_upsample_rates: Vec<usize> = vec![8, 5, 4, 3];
        decoder_upsampling_ratios: Vec<usize> = vec![2, 2];
        decoder_dim: usize = 1536;
        mimi_num_filters: usize = 64;
        mimi_upsampling_ratios: Vec<usize> = vec![8, 6, 5, 4];
        mimi_kernel_size: usize = 7;
        mimi_last_kernel_size: usize = 3;
        mimi_residual_kernel_size: usize = 3;
        mimi_dilation_growth_rate: usize = 2;
        mimi_compress: usize = 2;
        mimi_pad_mode: String = "constant".into();
        mimi_hidden_size: usize = 512;
        mimi_intermediate_size: usize = 2048;
        mimi_sliding_window: usize = 250;
        mimi_codebook_dim: Option<usize> = Some(256);
        mimi_vq_hidden: usize = 256;
        mimi_num_quantizers: usize = 32;
        mimi_upsample_groups: usize = 512;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels() {
        let mut cfg = ModelConfig::from_json_str(MINIMAL).unwrap();
        for (raw, label) in [("0b6", "0.6B"), ("1b7", "1.7B"), ("12B", "12B"), ("large", "large"), ("b6", "b6")] {
            cfg.tts_model_size = raw.into();
            assert_eq!(cfg.size_label(), label);
        }
    }

    #[test]
    fn errors_name_the_key_path() {
        let wrong = MINIMAL.replace("\"hidden_size\": 64", "\"hidden_size\": \"big\"");
        let err = ModelConfig::from_json_str(&wrong).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadConfig);
        assert!(err.message().contains("talker_config.hidden_size"), "{err}");

        let missing = MINIMAL.replace("\"num_code_groups\": 16,", "");
        let err = ModelConfig::from_json_str(&missing).unwrap_err();
        assert!(err.message().contains("missing required key `talker_config.num_code_groups`"), "{err}");

        let err = ModelConfig::from_json_str("{\"talker_config\": ").unwrap_err();
        assert!(err.message().starts_with("not valid JSON"), "{err}");

        let dialect = MINIMAL.replace("\"spk_is_dialect\": {}", "\"spk_is_dialect\": {\"x\": true}");
        let err = ModelConfig::from_json_str(&dialect).unwrap_err();
        assert!(err.message().contains("spk_is_dialect.x is true"), "{err}");
    }

    #[test]
    fn validation_rejects_impossible_values() {
        let ok = ModelConfig::from_json_str(MINIMAL).unwrap();
        ok.validate().unwrap();
        let cases: [(&str, &str, &str); 7] = [
            ("\"num_key_value_heads\": 2,", "\"num_key_value_heads\": 3,", "not a multiple"),
            ("\"num_hidden_layers\": 2,", "\"num_hidden_layers\": 0,", "talker_config.num_hidden_layers is 0"),
            ("\"codec_eos_token_id\": 2150,", "\"codec_eos_token_id\": 9999,", "codec_eos_token_id is 9999"),
            ("\"mrope_section\": [4, 2, 2]", "\"mrope_section\": [4, 2, 1]", "mrope_section"),
            ("\"codec_pad_id\": 2148,", "\"codec_pad_id\": 100,", "inside the codebook-0 code range"),
            // Counts that size loops are bounded before anything is built from them (issue 11, item 2).
            ("\"num_hidden_layers\": 2,", "\"num_hidden_layers\": 1000000000,", "at most 1024"),
            ("\"num_code_groups\": 16,", "\"num_code_groups\": 4000000000,", "at most 256"),
        ];
        for (from, to, want) in cases {
            assert!(MINIMAL.contains(from), "{from}");
            let cfg = ModelConfig::from_json_str(&MINIMAL.replacen(from, to, 1)).unwrap();
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadConfig, "{err}");
            assert!(err.message().contains(want), "expected `{want}` in `{err}`");
        }
    }

    const MINIMAL: &str = r#"{
        "tokenizer_type": "qwen3_tts_tokenizer_12hz", "tts_model_size": "0b6", "tts_model_type": "custom_voice",
        "talker_config": {
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
            "rope_scaling": {"interleaved": true, "mrope_section": [4, 2, 2], "rope_type": "default", "type": "default"},
            "vocab_size": 3072, "text_vocab_size": 151936, "text_hidden_size": 32, "num_code_groups": 16,
            "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150, "codec_think_id": 2154,
            "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
            "codec_language_id": {"english": 2050}, "spk_id": {}, "spk_is_dialect": {},
            "code_predictor_config": {
                "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
                "vocab_size": 2048, "num_code_groups": 16
            }
        }
    }"#;
}
