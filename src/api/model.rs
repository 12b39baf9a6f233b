//! `Model`: a loaded checkpoint directory (configs, memory-mapped weights, text tokenizer).
//!
//! A `Model` is immutable after `load` and cheap to clone (`Arc` inside), so one loaded model
//! can serve any number of threads; per-request state will live outside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::model::code_predictor::CodePredictor;
use crate::model::talker::Talker;
use crate::model::{Checkpoint, ModelKind};
use crate::text::TextTokenizer;

/// Options for [`Model::load`]. `Default` gives the documented defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// CPU threads per request's ops; `None` = all available cores.
    pub threads: Option<usize>,
}

/// The networks on their backend (today the f32 CPU reference backend).
pub(crate) struct Networks {
    pub backend: CpuBackend,
    pub talker: Talker<CpuBackend>,
    pub predictor: CodePredictor<CpuBackend>,
}

/// A loaded Qwen3-TTS checkpoint.
#[derive(Clone)]
pub struct Model {
    inner: Arc<ModelInner>,
}

struct ModelInner {
    dir: PathBuf,
    checkpoint: Checkpoint,
    tokenizer: TextTokenizer,
    networks: Networks,
}

/// Static facts about a loaded model, for display and for callers that adapt to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Base (voice cloning), CustomVoice (built-in speakers) or VoiceDesign.
    pub kind: ModelKind,
    /// Size label from the checkpoint, "0.6B" or "1.7B" (other strings pass through).
    pub size_label: String,
    /// Output sample rate in Hz (24000 for every released checkpoint).
    pub sample_rate: u32,
    /// Codec frames per second (12.5).
    pub frame_rate: f32,
    /// Codebooks per codec frame (16).
    pub num_codebooks: usize,
    /// Talker hidden width (1024 for 0.6B, 2048 for 1.7B).
    pub talker_hidden_size: usize,
    /// Talker decoder layers (28).
    pub talker_layers: usize,
    /// Code-predictor decoder layers (5).
    pub code_predictor_layers: usize,
    /// Whether a speaker encoder is present (Base checkpoints), i.e. voices can be cloned.
    pub can_clone: bool,
    /// Supported language names in lower case, "auto" first, then sorted.
    pub languages: Vec<String>,
    /// Built-in speaker names (CustomVoice), sorted; empty otherwise.
    pub speakers: Vec<String>,
    /// Tensors in model.safetensors plus speech_tokenizer/model.safetensors.
    pub tensor_count: usize,
    /// Bytes of tensor data in both weight files.
    pub weight_bytes: u64,
}

impl Model {
    /// Loads a checkpoint directory in the released layout: config.json,
    /// generation_config.json, tokenizer_config.json, vocab.json, merges.txt,
    /// model.safetensors and speech_tokenizer/{config.json, model.safetensors}.
    ///
    /// Every tensor the configuration implies is looked up by name and its shape checked;
    /// weights stay memory-mapped (no copy).
    pub fn load(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        if dir.as_os_str().is_empty() {
            return Err(Error::invalid_argument("model directory path is empty"));
        }
        if options.threads == Some(0) {
            return Err(Error::invalid_argument("threads must be at least 1"));
        }
        let checkpoint = Checkpoint::open(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let backend = options.threads.map(CpuBackend::new).unwrap_or_default();
        let talker = Talker::load(&backend, &checkpoint.weights, &checkpoint.config.talker_config)?;
        let predictor = CodePredictor::load(&backend, &checkpoint.weights, &checkpoint.config.talker_config)?;
        let networks = Networks { backend, talker, predictor };
        Ok(Model { inner: Arc::new(ModelInner { dir: dir.to_path_buf(), checkpoint, tokenizer, networks }) })
    }

    /// The networks and their backend.
    pub(crate) fn networks(&self) -> &Networks {
        &self.inner.networks
    }

    /// The directory this model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The parsed checkpoint (configs and weights).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.inner.checkpoint
    }

    /// The text tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.inner.tokenizer
    }

    /// Static facts about this model.
    pub fn info(&self) -> ModelInfo {
        let ck = &self.inner.checkpoint;
        let cfg = &ck.config;
        let talker = &cfg.talker_config;
        ModelInfo {
            kind: cfg.kind(),
            size_label: cfg.size_label(),
            sample_rate: ck.speech_config.output_sample_rate,
            frame_rate: ck.speech_config.frame_rate(),
            num_codebooks: talker.num_code_groups,
            talker_hidden_size: talker.hidden_size,
            talker_layers: talker.num_hidden_layers,
            code_predictor_layers: talker.code_predictor_config.num_hidden_layers,
            can_clone: cfg.kind() == ModelKind::Base,
            languages: cfg.languages(),
            speakers: cfg.speakers(),
            tensor_count: ck.weights.len() + ck.speech_weights.len(),
            weight_bytes: ck.weights.data_bytes() + ck.speech_weights.data_bytes(),
        }
    }
}
