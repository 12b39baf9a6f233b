//! `Model`: a loaded checkpoint directory (configs, memory-mapped weights, text tokenizer).
//!
//! A `Model` is immutable after `load` and cheap to clone (`Arc` inside), so one loaded model
//! can serve any number of threads; per-request state (KV caches, decoder streams) lives in
//! the calls that need it. Loading builds every network the checkpoint kind uses: talker,
//! code predictor and codec decoder always; speaker encoder and codec encoder for Base
//! checkpoints, which clone voices.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::voice::ModelFingerprint;
use crate::backend::Backend;
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
#[cfg(feature = "cuda")]
use crate::engine::MegakernelEngine;
pub use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::model::code_predictor::CodePredictor;
use crate::model::prefix_cache::{DEFAULT_PREFIX_CACHE_BYTES, PrefixCache, PrefixCacheStats};
use crate::model::codec::CodecDecoder;
use super::audio_decoder::AudioDecoder;
use super::clone_networks::{CloneDevice, CloningNetworks};
use crate::model::talker::Talker;
use crate::model::{Checkpoint, ModelKind};
use crate::text::TextTokenizer;

/// Where the talker and the code predictor run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The f32 CPU reference backend (the default; always available).
    #[default]
    Cpu,
    /// CUDA device by ordinal (builds with the `cuda` feature; weights uploaded as BF16).
    /// The codec, speaker encoder and sampling still run on the CPU.
    Cuda(usize),
}

/// Options for [`Model::load`]. `Default` gives the documented defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// CPU threads per request's ops; `None` = all available cores.
    pub threads: Option<usize>,
    /// Where the talker and code predictor run; CPU by default.
    pub device: Device,
    /// How a CUDA model runs its frame loop: the frame megakernel where it can run (the
    /// default, [`EngineKind::Auto`]), always ([`EngineKind::Megakernel`]: loading fails
    /// otherwise) or never ([`EngineKind::Unfused`]: layer by layer, for debugging). Ignored
    /// on the CPU, except that asking for the megakernel there is an error.
    pub engine: EngineKind,
    /// Bytes the voice prefix cache may hold (on the model's device): the talker keys and
    /// values of the prompt rows that depend only on the voice, language and instruction,
    /// reused by later requests with the same ones (see [`crate::model::prefix_cache`]).
    /// `None` = [`DEFAULT_PREFIX_CACHE_BYTES`] (64 MiB); `Some(0)` turns the cache off, and
    /// every prompt is then prefilled in one pass. Codes do not depend on hits, but the
    /// cache's two-pass prefill may differ from the one-pass prefill by rounding: logits on the
    /// CPU in the last bits, on a GPU as much as its matrix kernels (chosen by row count)
    /// differ; codes only where sampling meets a near tie.
    pub prefix_cache_bytes: Option<usize>,
}

/// The talker and code predictor on one backend, and the talker's voice prefix cache.
pub(crate) struct Decoders<B: Backend> {
    pub backend: B,
    pub talker: Talker<B>,
    pub predictor: CodePredictor<B>,
    pub prefix_cache: Option<PrefixCache<B>>,
}

impl<B: Backend> Decoders<B> {
    fn load(backend: B, checkpoint: &Checkpoint, options: &LoadOptions) -> Result<Self> {
        let talker = Talker::load(&backend, &checkpoint.weights, &checkpoint.config.talker_config)?;
        let predictor = CodePredictor::load(&backend, &checkpoint.weights, &checkpoint.config.talker_config)?;
        let budget = options.prefix_cache_bytes.unwrap_or(DEFAULT_PREFIX_CACHE_BYTES);
        let prefix_cache = (budget > 0).then(|| PrefixCache::new(budget));
        Ok(Decoders { backend, talker, predictor, prefix_cache })
    }

    /// The frame loop of this model's unfused engine.
    pub fn unfused(&self) -> crate::engine::UnfusedEngine<'_, B> {
        crate::engine::UnfusedEngine {
            backend: &self.backend,
            talker: &self.talker,
            predictor: &self.predictor,
            prefix_cache: self.prefix_cache.as_ref(),
        }
    }
}

/// The decoders on the backend [`LoadOptions::device`] chose.
pub(crate) enum DecoderSet {
    Cpu(Decoders<CpuBackend>),
    /// On a GPU: the megakernel engine (prepared for these decoders' weights) unless the
    /// unfused path was chosen or is the only one that can run them.
    #[cfg(feature = "cuda")]
    Cuda(Option<Box<MegakernelEngine>>, Decoders<CudaBackend>),
}

#[cfg(feature = "cuda")]
fn megakernel_for(
    d: &Decoders<CudaBackend>,
    engine: EngineKind,
    max_frames: usize,
) -> Result<Option<Box<MegakernelEngine>>> {
    use crate::backend::cuda::megakernel::LoadPath;
    if engine == EngineKind::Unfused {
        return Ok(None);
    }
    let path = if std::env::var_os("QT_MEGAKERNEL_PORTABLE").is_some() { LoadPath::Portable } else { LoadPath::Auto };
    match MegakernelEngine::new(&d.backend, &d.talker, &d.predictor, max_frames, path) {
        Ok(m) => Ok(Some(Box::new(m))),
        Err(e) if engine == EngineKind::Auto && e.kind() == crate::error::ErrorKind::Unsupported => {
            log::warn!("{e}; using the unfused CUDA path");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The networks on their backends.
pub(crate) struct Networks {
    pub decoders: DecoderSet,
    /// Codes → 24 kHz audio (every model), on the model's device.
    pub codec_decoder: AudioDecoder,
    /// What cloning needs; `None` on CustomVoice / VoiceDesign checkpoints, which have no
    /// speaker encoder and never encode audio.
    pub cloning: Option<CloningNetworks>,
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
    fingerprint: ModelFingerprint,
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
    /// the codec and speaker-encoder networks convert their weights to f32 once, here.
    pub fn load(dir: impl AsRef<Path>, options: &LoadOptions) -> Result<Model> {
        let dir = dir.as_ref();
        if dir.as_os_str().is_empty() {
            return Err(Error::invalid_argument("model directory path is empty"));
        }
        if options.threads == Some(0) {
            return Err(Error::invalid_argument("threads must be at least 1"));
        }
        // A device that cannot work is reported before gigabytes of weights are read.
        if let Device::Cuda(ordinal) = options.device {
            crate::backend::check_cuda_device(ordinal)?;
        }
        let checkpoint = Checkpoint::open(dir)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let cpu_codec = |checkpoint: &Checkpoint| -> Result<AudioDecoder> {
            let mut d = CodecDecoder::from_checkpoint(checkpoint).map_err(|e| e.context("codec decoder"))?;
            if let Some(t) = options.threads {
                d.set_threads(t);
            }
            Ok(AudioDecoder::Cpu(d))
        };
        // Where cloning runs: the CPU unless a CUDA model is asked for its GPU.
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
        let mut clone_device = CloneDevice::Cpu;
        let (decoders, codec_decoder) = match options.device {
            Device::Cpu => {
                if options.engine == EngineKind::Megakernel {
                    return Err(Error::unsupported("the megakernel engine needs a CUDA device (LoadOptions::device)"));
                }
                let d = Decoders::load(options.threads.map(CpuBackend::new).unwrap_or_default(), &checkpoint, options)?;
                (DecoderSet::Cpu(d), cpu_codec(&checkpoint)?)
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(ordinal) => {
                let d = Decoders::load(CudaBackend::new(ordinal)?, &checkpoint, options)?;
                if super::clone_networks::gpu_clone_enabled() {
                    clone_device = CloneDevice::Cuda(d.backend.clone());
                }
                let max_frames = checkpoint.generation.max_new_tokens.max(2);
                // The codec decodes on the same GPU (f32 weights, its own streams) when
                // enabled; see `gpu_codec_enabled`.
                let codec = if super::audio_decoder::gpu_codec_enabled() {
                    let c = CodecDecoder::load_on(d.backend.clone(), &checkpoint.speech_config, &checkpoint.speech_weights)
                        .map_err(|e| e.context("codec decoder"))?;
                    AudioDecoder::Cuda(c)
                } else {
                    cpu_codec(&checkpoint)?
                };
                (DecoderSet::Cuda(megakernel_for(&d, options.engine, max_frames)?, d), codec)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(ordinal) => {
                // Without the feature the check above has already failed; kept for exhaustiveness.
                return Err(Error::unsupported(format!("CUDA device {ordinal}: this build has no CUDA backend")));
            }
        };
        let cloning = match checkpoint.config.kind() {
            ModelKind::Base => Some(CloningNetworks::load(&checkpoint, options.threads, clone_device)?),
            ModelKind::CustomVoice | ModelKind::VoiceDesign => None,
        };
        let networks = Networks { decoders, codec_decoder, cloning };
        let fingerprint = ModelFingerprint::of(&checkpoint);
        Ok(Model {
            inner: Arc::new(ModelInner { dir: dir.to_path_buf(), checkpoint, tokenizer, networks, fingerprint }),
        })
    }

    /// The networks and their backend.
    pub(crate) fn networks(&self) -> &Networks {
        &self.inner.networks
    }

    /// The engine that runs this model's frame loop ("unfused" or "megakernel").
    pub fn engine_name(&self) -> &'static str {
        match &self.inner.networks.decoders {
            DecoderSet::Cpu(_) => "unfused",
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(Some(_), _) => "megakernel",
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(None, _) => "unfused",
        }
    }

    /// Where the codec decoder runs: `cpu (N threads)` for CPU models, `cuda:N` for CUDA
    /// models, which decode on their GPU.
    pub fn audio_device(&self) -> String {
        self.inner.networks.codec_decoder.device_name()
    }

    /// Where cloning runs its networks (log-mel, speaker encoder, codec encoder): `cpu (N
    /// threads)`, or
    /// `cuda:N (name)` for a CUDA model (unless `QT_GPU_CLONE=0`); `None` for checkpoints that do
    /// not clone.
    pub fn cloning_device(&self) -> Option<String> {
        self.inner.networks.cloning.as_ref().map(|c| c.device_name())
    }

    /// The frame megakernel, when this model runs on it (benchmarks and diagnostics).
    #[cfg(feature = "cuda")]
    pub fn megakernel(&self) -> Option<&MegakernelEngine> {
        match &self.inner.networks.decoders {
            DecoderSet::Cuda(m, _) => m.as_deref(),
            DecoderSet::Cpu(_) => None,
        }
    }

    /// The voice prefix cache's counters and occupancy; `None` when it is off
    /// ([`LoadOptions::prefix_cache_bytes`] = `Some(0)`).
    pub fn prefix_cache_stats(&self) -> Option<PrefixCacheStats> {
        match &self.inner.networks.decoders {
            DecoderSet::Cpu(d) => d.prefix_cache.as_ref().map(PrefixCache::stats),
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(_, d) => d.prefix_cache.as_ref().map(PrefixCache::stats),
        }
    }

    /// Forgets every voice prefix the cache holds (its counters stay), for callers that retire
    /// voices. The memory is returned once no request in flight still copies from an entry
    /// (on a GPU, at the device's next deferred free, see `backend::cuda::memory`).
    pub fn clear_prefix_cache(&self) {
        match &self.inner.networks.decoders {
            DecoderSet::Cpu(d) => d.prefix_cache.as_ref().map(PrefixCache::clear),
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(_, d) => d.prefix_cache.as_ref().map(PrefixCache::clear),
        };
    }

    /// The model family voices made by this model are tagged with (see [`ModelFingerprint`]).
    pub fn fingerprint(&self) -> &ModelFingerprint {
        &self.inner.fingerprint
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
