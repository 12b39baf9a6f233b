//! Generation options and `Model::generate_codes`: text + voice → codec frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::model::{DecoderSet, Model};
use super::voice::{Voice, VoiceKind};
use crate::error::{Error, ErrorKind, Result};
use crate::model::frame_budget::default_frame_budget;
use crate::engine::{FrameEngine, FrameRequest};
use crate::model::generate::{FrameLoopConfig, FrameSink, GeneratedCodes, StopPoll};
use crate::model::prompt::{self, PromptPlan, PromptRequest, SpecialIds, VoiceData};
use crate::model::sampling::{SamplerConfig, TalkerSamplerConfig};

/// Most bytes of text one call speaks (checked before tokenizing); also the bound for an
/// instruction and a voice's reference transcript. 64 KiB is about 10,000 English words,
/// more than the frame cap (`max_new_tokens`, 8192 frames ≈ 11 minutes) can say.
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// Most rows of prompt plus streamed text feed (text, instruction, reference transcript and
/// reference frames): bounds the prefill's work, the text rows and the KV cache before
/// anything is sized from them.
pub const MAX_PROMPT_ROWS: usize = 8192;

/// Per-request settings. Start from [`GenerateOptions::defaults`] (the checkpoint's
/// `generation_config.json`) and change what you need.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// "auto" or a language the model lists (case-insensitive).
    pub language: String,
    /// Style instruction (1.7B CustomVoice only; the 0.6B CustomVoice ignores it, as the
    /// official code does).
    pub instruct: Option<String>,
    /// Feed the whole text in the prompt (`true`) or interleave it with the audio (`false`).
    /// `None` = the official default: `false` for cloning, `true` for CustomVoice and
    /// VoiceDesign.
    pub non_streaming_mode: Option<bool>,
    /// Talker (codebook 0) sampling.
    pub talker: SamplerConfig,
    /// Repetition penalty over previously generated codebook-0 ids (1.0 = off).
    pub repetition_penalty: f32,
    /// Code-predictor (codebooks 1..15) sampling.
    pub code_predictor: SamplerConfig,
    /// Most frames to generate (12.5 per second of audio). `None` = a budget derived from
    /// the text length ([`default_frame_budget`]), so a request whose EOS never comes
    /// cannot run for minutes.
    pub max_frames: Option<usize>,
    /// RNG seed; the same seed gives the same codes on every run and thread count.
    /// `None` = a fresh seed per request.
    pub seed: Option<u64>,
    /// End-of-speech is masked until this many frames exist. `None` = the official
    /// behaviour (EOS allowed from the second token). Benchmarks set it equal to
    /// `max_frames` to time an exact number of frames.
    pub min_frames: Option<usize>,
    /// Codec frames per streamed chunk of [`Model::generate`] once the chunks have grown to
    /// full size (one frame = 80 ms of audio; default [`DEFAULT_CHUNK_FRAMES`]). Smaller gives
    /// the abort a finer grain; larger decodes more frames per codec call (cheaper per
    /// frame). The last chunk holds whatever is left.
    pub chunk_frames: usize,
    /// Frames in the first chunk, for early first audio: each later chunk holds twice the
    /// frames of the one before, up to `chunk_frames` (default [`DEFAULT_FIRST_CHUNK_FRAMES`]
    /// = 1 with 4-frame chunks: 1, 2, 4, 4, ...). `None`, or a value of at least
    /// `chunk_frames`, makes every chunk `chunk_frames` long. Must not be 0.
    pub first_chunk_frames: Option<usize>,
    /// Sample rate of the audio [`Model::generate`] returns and streams. `None` (or the
    /// codec's own rate) = 24 kHz, exactly the official output; any other rate (e.g. 44100,
    /// 48000) is resampled on the fly (see [`Audio`](super::Audio) for what that implies).
    pub output_sample_rate: Option<u32>,
}

/// Default [`GenerateOptions::chunk_frames`]: 4 frames = 320 ms of audio per chunk, so that
/// each codec call of a long utterance decodes 7680 samples, enough rows for its matrix
/// products to run at full speed. Larger suits batch synthesis.
pub const DEFAULT_CHUNK_FRAMES: usize = 4;

/// Default [`GenerateOptions::first_chunk_frames`]: the first audio is ready after the prefill
/// and one frame (80 ms of audio); the chunks then double (2, 4, 4, ...), so the audio made
/// stays ahead of the audio played while the decoder reaches its efficient chunk size.
pub const DEFAULT_FIRST_CHUNK_FRAMES: usize = 1;

impl GenerateOptions {
    /// The checkpoint's defaults (official sampling settings, language "auto").
    pub fn defaults(model: &Model) -> GenerateOptions {
        let generation = &model.checkpoint().generation;
        GenerateOptions {
            language: "auto".to_owned(),
            instruct: None,
            non_streaming_mode: None,
            talker: SamplerConfig::talker(generation),
            repetition_penalty: generation.repetition_penalty,
            code_predictor: SamplerConfig::code_predictor(generation),
            max_frames: None,
            seed: None,
            min_frames: None,
            chunk_frames: DEFAULT_CHUNK_FRAMES,
            first_chunk_frames: Some(DEFAULT_FIRST_CHUNK_FRAMES),
            output_sample_rate: None,
        }
    }

    /// Greedy decoding for both the talker and the code predictor (deterministic without a
    /// seed; used by the parity tests).
    pub fn greedy(mut self) -> GenerateOptions {
        self.talker = SamplerConfig::greedy();
        self.code_predictor = SamplerConfig::greedy();
        self
    }
}

/// A request checked and planned, not yet run ([`Model::prepare_request`]).
pub(super) struct PreparedRequest<'v> {
    plan: PromptPlan,
    voice: VoiceData<'v>,
    config: FrameLoopConfig,
}

/// A seed for requests that did not ask for one: time and a process counter, mixed.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Model {
    /// Generates codec frames for `text` in `voice`. Blocking; safe to call from many
    /// threads at once on one model. `on_frame(index, codes)` sees each frame as it is made
    /// and may return `false` to stop ([`FinishReason::Aborted`](crate::model::generate::FinishReason)).
    pub fn generate_codes(
        &self,
        voice: &Voice,
        text: &str,
        options: &GenerateOptions,
        on_frame: Option<&mut FrameSink<'_>>,
    ) -> Result<GeneratedCodes> {
        let prepared = self.prepare_request(voice, text, options)?;
        self.run_request(&prepared, on_frame, None)
    }

    /// Everything of [`generate_codes`](Self::generate_codes) before the prefill: checks the
    /// request, plans the prompt, fixes the limits and the seed. Cheap (no network runs), so
    /// a caller can still decline the work after it (`generate_with` polls its abort hook).
    pub(super) fn prepare_request<'v>(
        &self,
        voice: &'v Voice,
        text: &str,
        options: &GenerateOptions,
    ) -> Result<PreparedRequest<'v>> {
        let config = &self.checkpoint().config;
        let groups = config.talker_config.num_code_groups;
        // Nothing to say is refused, not spoken as seconds of babble (the official code would).
        if text.trim().is_empty() {
            return Err(Error::invalid_argument(if text.is_empty() {
                "text is empty: nothing to speak".to_owned()
            } else {
                format!("text is only white space ({} characters): nothing to speak", text.chars().count())
            }));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(Error::invalid_argument(format!(
                "text is {} bytes; one call speaks at most {MAX_TEXT_BYTES} (split long text into sentences or paragraphs)",
                text.len()
            )));
        }
        if let Some(instruct) = options.instruct.as_deref()
            && instruct.len() > MAX_TEXT_BYTES
        {
            return Err(Error::invalid_argument(format!(
                "instruct is {} bytes; at most {MAX_TEXT_BYTES}",
                instruct.len()
            )));
        }
        options.talker.validate_as("talker.")?;
        options.code_predictor.validate_as("code_predictor.")?;

        // 1. Voice → prompt request (the official wrapper's validation lives in plan_request).
        //    A voice made by a model must come from this model's family.
        if let Some(origin) = voice.origin() {
            origin.check_compatible(self.fingerprint())?;
        }
        let (prompt_voice, voice_data, default_non_streaming) = match voice.kind() {
            VoiceKind::Cloned { embedding, reference } => {
                if embedding.len() != config.talker_config.hidden_size {
                    return Err(Error::new(
                        ErrorKind::VoiceMismatch,
                        format!(
                            "speaker embedding has {} values; this model needs {} (was the voice made by another model?)",
                            embedding.len(),
                            config.talker_config.hidden_size
                        ),
                    ));
                }
                let data = VoiceData {
                    speaker_vector: Some(embedding),
                    ref_codes: reference.as_ref().map(|r| r.codes.as_slice()),
                };
                let v = match reference {
                    Some(r) => {
                        // Bounded and in range before any work: the codes enter the prompt.
                        self.check_reference_codes(&r.codes).map_err(|e| e.context("reference codes"))?;
                        prompt::Voice::Icl { ref_text: &r.text, ref_frames: r.frames(groups) }
                    }
                    None => prompt::Voice::XVector,
                };
                (v, data, false)
            }
            VoiceKind::Speaker { name } => {
                (prompt::Voice::Speaker { name, instruct: options.instruct.as_deref() }, VoiceData::default(), true)
            }
            VoiceKind::Design { description } => {
                (prompt::Voice::Design { instruct: description }, VoiceData::default(), true)
            }
        };
        let request = PromptRequest {
            text,
            language: &options.language,
            voice: prompt_voice,
            non_streaming_mode: options.non_streaming_mode.unwrap_or(default_non_streaming),
        };
        if let Some(long) = voice.reference().map(|r| r.text.as_str()).filter(|t| t.len() > MAX_TEXT_BYTES) {
            return Err(Error::invalid_argument(format!(
                "the voice's reference transcript is {} bytes; at most {MAX_TEXT_BYTES}",
                long.len()
            )));
        }
        let (plan, ids) = prompt::plan_request(config, self.tokenizer(), &request)?;
        let rows = plan.len() + plan.trailing.len();
        if rows > MAX_PROMPT_ROWS {
            return Err(Error::invalid_argument(format!(
                "the prompt and its text feed are {rows} rows (text, instruction, reference transcript and \
                 frames); at most {MAX_PROMPT_ROWS}: split the text"
            )));
        }

        // 2. Limits: the caller's cap, else a budget from the text length; never past the
        //    checkpoint's max_new_tokens (which allows max_new_tokens − 1 frames).
        let generation = &self.checkpoint().generation;
        let hard_cap = generation.max_new_tokens.saturating_sub(1).max(1);
        // The assistant template adds 8 tokens around the text (3 before, 5 after).
        let text_tokens = ids.text_ids.len().saturating_sub(8);
        let frame_limit = match options.max_frames {
            Some(0) => return Err(Error::invalid_argument("max_frames must be at least 1")),
            Some(n) => n.min(hard_cap),
            None => default_frame_budget(text_tokens, hard_cap),
        };

        let mut talker = TalkerSamplerConfig::new(generation, &config.talker_config);
        talker.sampler = options.talker;
        talker.repetition_penalty = options.repetition_penalty;
        if let Some(min_frames) = options.min_frames {
            // EOS is masked while fewer than min_new_tokens tokens exist; frame F's token is
            // the (F+1)-th, so F frames need F + 1.
            talker.min_new_tokens = talker.min_new_tokens.max(min_frames.saturating_add(1));
        }
        let cfg = FrameLoopConfig {
            talker,
            code_predictor: options.code_predictor,
            frame_limit,
            seed: options.seed.unwrap_or_else(fresh_seed),
        };

        Ok(PreparedRequest { plan, voice: voice_data, config: cfg })
    }

    /// The frame loop of a prepared request on this model's engine.
    pub(super) fn run_request(
        &self,
        prepared: &PreparedRequest<'_>,
        on_frame: Option<&mut FrameSink<'_>>,
        should_stop: Option<&mut StopPoll<'_>>,
    ) -> Result<GeneratedCodes> {
        let ids = SpecialIds::from_config(&self.checkpoint().config);
        let request = FrameRequest { ids: &ids, plan: &prepared.plan, voice: prepared.voice, config: &prepared.config };
        match &self.networks().decoders {
            DecoderSet::Cpu(d) => d.unfused().generate(request, on_frame, should_stop),
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(Some(m), d) => m
                .bind(&d.backend, &d.talker, &d.predictor, d.prefix_cache.as_ref())
                .generate(request, on_frame, should_stop),
            #[cfg(feature = "cuda")]
            DecoderSet::Cuda(None, d) => d.unfused().generate(request, on_frame, should_stop),
        }
    }
}
