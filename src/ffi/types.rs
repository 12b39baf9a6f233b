//! The `#[repr(C)]` structs of the C API and the integer constants their fields take.
//!
//! Conventions (header preamble, "Structs"): every struct starts with `uint32_t struct_size` and
//! only grows at the end; fields that hold a choice are `int32_t` with `QT_*` constants (never a
//! C enum, whose size is up to the compiler, and never `bool`, which C# marshals as 4 bytes);
//! the library validates every value it reads.

use std::ffi::{c_char, c_void};
use std::mem::offset_of;

use super::boundary::SizedStruct;
use crate::api::ModelKind;
use crate::error::{Error, Result};

/// `qt_model_params.device` / `qt_model_info.device`: the CPU reference backend.
pub const QT_DEVICE_CPU: i32 = -1;

/// `qt_model_params.engine`: the frame megakernel where the model and GPU allow it, else the
/// layer-by-layer path (the default).
pub const QT_ENGINE_AUTO: i32 = 0;
/// `qt_model_params.engine`: the frame megakernel; `qt_load` fails with
/// `QT_STATUS_UNSUPPORTED` if it cannot run this model on this device.
pub const QT_ENGINE_MEGAKERNEL: i32 = 1;
/// `qt_model_params.engine`: the layer-by-layer CUDA path (debugging, comparison).
pub const QT_ENGINE_UNFUSED: i32 = 2;

/// `qt_model_params.prefix_cache_mb`: keep no voice prefix cache (every prompt is prefilled
/// in one pass).
pub const QT_PREFIX_CACHE_OFF: i32 = -1;
/// `qt_model_params.prefix_cache_mb`: the largest budget accepted (1 TiB).
pub const QT_PREFIX_CACHE_MAX_MB: i32 = 1 << 20;

/// `qt_model_info.kind`: a Base checkpoint (clones voices from reference audio).
pub const QT_MODEL_BASE: i32 = 1;
/// `qt_model_info.kind`: a CustomVoice checkpoint (built-in speakers, see `qt_model_speaker`).
pub const QT_MODEL_CUSTOM_VOICE: i32 = 2;
/// `qt_model_info.kind`: a VoiceDesign checkpoint (voice described by an instruction text).
pub const QT_MODEL_VOICE_DESIGN: i32 = 3;

/// Options for `qt_load`. Fill it with `qt_model_params_default(&p, sizeof p)`, change what you
/// need, and pass a pointer; passing NULL to `qt_load` means "all defaults".
///
/// The library reads only the first `struct_size` bytes, so a program built against an older
/// header keeps working with a newer library (later fields take their defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct qt_model_params {
    /// Size of this struct as the caller knows it: `sizeof(qt_model_params)`. Set by
    /// `qt_model_params_default`.
    pub struct_size: u32,
    /// Where the model runs: `QT_DEVICE_CPU` (-1, the default) or a CUDA device ordinal (>= 0).
    /// A build without the CUDA backend returns `QT_STATUS_UNSUPPORTED` for an ordinal; with
    /// it, `qt_load` fails with `QT_STATUS_NO_CUDA_DRIVER`, `QT_STATUS_NO_DEVICE` or
    /// `QT_STATUS_OUT_OF_MEMORY` when the GPU cannot take the model.
    pub device: i32,
    /// How a CUDA model runs its frame loop: `QT_ENGINE_AUTO` (0, the default),
    /// `QT_ENGINE_MEGAKERNEL` or `QT_ENGINE_UNFUSED`. Only `QT_ENGINE_AUTO` and
    /// `QT_ENGINE_UNFUSED` load on the CPU.
    pub engine: i32,
    /// Mebibytes of (device) memory for the voice prefix cache: the talker keys and values of
    /// the prompt rows that depend only on the voice, language and instruction, computed once
    /// and reused by later calls with the same ones. With the released talkers a row takes
    /// 224 KiB: about 2 MiB for an x-vector voice, and 0.22 MiB more per reference-transcript
    /// token for an in-context one. 0 = the default (64); `QT_PREFIX_CACHE_OFF` (-1) keeps
    /// none; at most `QT_PREFIX_CACHE_MAX_MB`. Codes never depend on whether a call hit the
    /// cache. Since v3.
    pub prefix_cache_mb: i32,
}

impl Default for qt_model_params {
    fn default() -> Self {
        qt_model_params {
            struct_size: size_of::<Self>() as u32,
            device: QT_DEVICE_CPU,
            engine: QT_ENGINE_AUTO,
            prefix_cache_mb: 0,
        }
    }
}

impl qt_model_params {
    /// The Rust API's prefix cache budget for `prefix_cache_mb`.
    pub(crate) fn prefix_cache_bytes(&self) -> Result<Option<usize>> {
        match self.prefix_cache_mb {
            0 => Ok(None),
            QT_PREFIX_CACHE_OFF => Ok(Some(0)),
            // 1 TiB does not fit a 32-bit usize: refused there rather than wrapped.
            mb @ 1..=QT_PREFIX_CACHE_MAX_MB => usize::try_from(mb)
                .ok()
                .and_then(|mb| mb.checked_mul(1 << 20))
                .map(Some)
                .ok_or_else(|| Error::invalid_argument(format!("prefix_cache_mb {mb} does not fit this platform's memory"))),
            mb => Err(Error::invalid_argument(format!(
                "prefix_cache_mb {mb}: expected 0 (the default, 64), {QT_PREFIX_CACHE_OFF} (no cache) \
                 or 1 to {QT_PREFIX_CACHE_MAX_MB}"
            ))),
        }
    }
}

// SAFETY: repr(C), u32 struct_size first, integer fields only, no padding (asserted below).
unsafe impl SizedStruct for qt_model_params {
    const NAME: &'static str = "qt_model_params";
    // v1 ends after `device`, v2 after `engine`. Append a size when a field is added; never
    // edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[
        offset_of!(qt_model_params, device) + 4,
        offset_of!(qt_model_params, engine) + 4,
        offset_of!(qt_model_params, prefix_cache_mb) + 4,
    ];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

/// Facts about a loaded model, filled by `qt_model_get_info`. Set `struct_size` to
/// `sizeof(qt_model_info)` before the call; the library fills the fields that fit and sets
/// `struct_size` to the number of bytes it wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_model_info {
    /// In: the caller's `sizeof(qt_model_info)`. Out: the bytes the library filled.
    pub struct_size: u32,
    /// `QT_MODEL_BASE`, `QT_MODEL_CUSTOM_VOICE` or `QT_MODEL_VOICE_DESIGN`. Compare with the
    /// constants; a future library may report a kind this header does not name.
    pub kind: i32,
    /// Size label of the checkpoint, e.g. "0.6B" or "1.7B". Owned by the model: valid until the
    /// model is freed.
    pub size_label: *const c_char,
    /// Output sample rate in Hz (24000).
    pub sample_rate: i32,
    /// Codec frames per second (12.5; one frame is 80 ms of audio).
    pub frame_rate: f32,
    /// Codebooks per codec frame (16).
    pub n_codebooks: i32,
    /// Talker hidden width (1024 for 0.6B, 2048 for 1.7B).
    pub talker_hidden_size: i32,
    /// Talker decoder layers.
    pub talker_layers: i32,
    /// Code-predictor decoder layers.
    pub code_predictor_layers: i32,
    /// 1 if voices can be cloned from reference audio with this model (Base), else 0.
    pub can_clone: i32,
    /// Where the model runs: `QT_DEVICE_CPU` or a CUDA ordinal.
    pub device: i32,
    /// Number of supported languages; names via `qt_model_language(model, i, &name)`.
    pub n_languages: usize,
    /// Number of built-in speakers (CustomVoice; 0 otherwise); names via `qt_model_speaker`.
    pub n_speakers: usize,
    /// Tensors in the checkpoint's weight files.
    pub tensor_count: u64,
    /// Bytes of tensor data in the checkpoint's weight files.
    pub weight_bytes: u64,
}

// SAFETY: repr(C), u32 struct_size first, integer/float/pointer fields only, no padding before
// the end of v1 (asserted below).
unsafe impl SizedStruct for qt_model_info {
    const NAME: &'static str = "qt_model_info";
    // v1 ends after `weight_bytes`. Append a size when a field is added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[offset_of!(qt_model_info, weight_bytes) + 8];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

// The layouts are fixed ABI: no hidden padding (every byte is a field), sizes as published.
const _: () = {
    assert!(size_of::<qt_model_params>() == 16);
    assert!(offset_of!(qt_model_info, size_label) == 8);
    assert!(offset_of!(qt_model_info, n_languages) == 8 + size_of::<usize>() + 8 * 4);
    assert!(size_of::<qt_model_info>() == offset_of!(qt_model_info, weight_bytes) + 8);
};

/// The Rust API's engine for a C `engine` value.
pub(crate) fn engine_from_c(engine: i32) -> Result<crate::engine::EngineKind> {
    use crate::engine::EngineKind;
    match engine {
        QT_ENGINE_AUTO => Ok(EngineKind::Auto),
        QT_ENGINE_MEGAKERNEL => Ok(EngineKind::Megakernel),
        QT_ENGINE_UNFUSED => Ok(EngineKind::Unfused),
        e => Err(Error::invalid_argument(format!(
            "engine {e} is not valid: use QT_ENGINE_AUTO ({QT_ENGINE_AUTO}), QT_ENGINE_MEGAKERNEL \
             ({QT_ENGINE_MEGAKERNEL}) or QT_ENGINE_UNFUSED ({QT_ENGINE_UNFUSED})"
        ))),
    }
}

/// The execution device a `device` field selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device {
    Cpu,
    /// A CUDA ordinal (only constructed in builds with the `cuda` feature).
    Cuda(u32),
}

impl Device {
    /// Validates a C `device` value.
    pub(crate) fn from_c(device: i32) -> Result<Device> {
        match device {
            QT_DEVICE_CPU => Ok(Device::Cpu),
            d if d >= 0 && cfg!(feature = "cuda") => Ok(Device::Cuda(d as u32)),
            d if d >= 0 => Err(Error::unsupported(format!(
                "device {d} is a CUDA device, but this build of the library has no CUDA backend; \
                 use QT_DEVICE_CPU ({QT_DEVICE_CPU}) or a build with the `cuda` feature"
            ))),
            d => Err(Error::invalid_argument(format!(
                "device {d} is not valid: use QT_DEVICE_CPU ({QT_DEVICE_CPU}) or a CUDA device ordinal >= 0"
            ))),
        }
    }

    /// The Rust API's device.
    pub(crate) fn to_api(self) -> crate::api::Device {
        match self {
            Device::Cpu => crate::api::Device::Cpu,
            Device::Cuda(d) => crate::api::Device::Cuda(d as usize),
        }
    }

    pub(crate) fn to_c(self) -> i32 {
        match self {
            Device::Cpu => QT_DEVICE_CPU,
            Device::Cuda(d) => d as i32,
        }
    }
}

/// The `QT_MODEL_*` value of a model kind.
pub(crate) fn model_kind_to_c(kind: ModelKind) -> i32 {
    match kind {
        ModelKind::Base => QT_MODEL_BASE,
        ModelKind::CustomVoice => QT_MODEL_CUSTOM_VOICE,
        ModelKind::VoiceDesign => QT_MODEL_VOICE_DESIGN,
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

/// Callback return value: go on.
pub const QT_CONTINUE: i32 = 0;
/// Callback return value: stop; the running call returns `QT_STATUS_ABORTED`.
pub const QT_STOP: i32 = 1;

/// `qt_gen_params.seed`: draw a fresh seed for each request (nondeterministic sampling).
pub const QT_SEED_RANDOM: u64 = u64::MAX;

/// `qt_gen_params.non_streaming_mode`: the official default for the voice (0 for cloned voices,
/// 1 for built-in speakers and designed voices).
pub const QT_TEXT_FEED_DEFAULT: i32 = -1;
/// `qt_gen_params.non_streaming_mode`: the text is fed alongside the audio, a token per frame.
pub const QT_TEXT_FEED_STREAMING: i32 = 0;
/// `qt_gen_params.non_streaming_mode`: the whole text is in the prompt before the first frame.
pub const QT_TEXT_FEED_FULL: i32 = 1;

/// `qt_audio_info.finish`: the model ended the speech itself (end-of-speech token).
pub const QT_FINISH_EOS: i32 = 1;
/// `qt_audio_info.finish`: the frame limit (`qt_gen_params.max_frames`, or the default budget
/// derived from the text length) cut generation before the model ended it; the audio may stop
/// mid-word.
pub const QT_FINISH_FRAME_LIMIT: i32 = 2;
/// `qt_audio_info.finish`: the chunk callback or the abort hook asked to stop
/// (`qt_generate` returned `QT_STATUS_ABORTED`).
pub const QT_FINISH_ABORTED: i32 = 3;

/// `qt_clone_params.mode`: in-context cloning when `ref_text` is given, x-vector only otherwise.
pub const QT_CLONE_AUTO: i32 = 0;
/// `qt_clone_params.mode`: the speaker x-vector only; `ref_text` is not needed (ignored if given).
pub const QT_CLONE_XVECTOR: i32 = 1;
/// `qt_clone_params.mode`: in-context cloning (x-vector plus the reference's codec codes and its
/// transcript); `ref_text` is required.
pub const QT_CLONE_ICL: i32 = 2;

/// `qt_voice_info.kind`: a cloned voice made of the speaker x-vector only.
pub const QT_VOICE_XVECTOR: i32 = 1;
/// `qt_voice_info.kind`: a cloned voice with in-context material (x-vector, reference codes and
/// transcript).
pub const QT_VOICE_ICL: i32 = 2;
/// `qt_voice_info.kind`: a built-in speaker of a CustomVoice model.
pub const QT_VOICE_SPEAKER: i32 = 3;
/// `qt_voice_info.kind`: a voice described in words, for a VoiceDesign model.
pub const QT_VOICE_DESIGN: i32 = 4;

/// A piece of generated audio handed to a `qt_chunk_cb`. Every pointer is borrowed: valid only
/// during that callback call.
///
/// The chunks of one call, concatenated, are the utterance: `qt_audio_samples` of the result from
/// `qt_audio_info.chunk_offset` on (see there).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_chunk {
    /// The bytes of this struct the library filled (`sizeof(qt_chunk)` of its version). A
    /// program built against a newer header compares it before reading fields added later.
    pub struct_size: u32,
    /// 1 on the final chunk of a call that was not stopped, else 0. Sent exactly once.
    pub is_last: i32,
    /// Mono samples, nominally in [-1, 1], at `sample_rate`. Valid only during the callback:
    /// copy them to keep them. NULL when `n_samples` is 0 (the last chunk may be empty).
    pub samples: *const f32,
    /// Number of samples at `samples`.
    pub n_samples: usize,
    /// Position of `samples[0]` in the stream: the number of samples in all earlier chunks.
    pub first_sample: u64,
    /// Sample rate of `samples` in Hz (`qt_gen_params.output_sample_rate`; the same for every
    /// chunk of a call).
    pub sample_rate: i32,
    /// 0, 1, 2, ... in order of delivery.
    pub index: i32,
    /// Codec frames generated before the previous chunk was sent (0 for the first chunk).
    pub first_frame: i32,
    /// Codec frames generated since the previous chunk (80 ms of audio each; at 24 kHz a chunk
    /// holds their audio, at other rates the resampler's latency may shift it to later chunks).
    pub n_frames: i32,
}

/// Receives generated audio as it is made (see `qt_generate`).
///
/// - `chunk`: the audio; it and its samples are valid only during the call.
/// - `user_data`: the pointer given to `qt_generate`.
///
/// Return `QT_CONTINUE` to go on or `QT_STOP` to end generation now (`qt_generate` then returns
/// `QT_STATUS_ABORTED`); any other value ends it with `QT_STATUS_INVALID_ARGUMENT`.
/// Threads: called on the thread that called `qt_generate`, one chunk at a time, in order. It
/// must not unwind (no C++ exception or managed exception may leave it) and must not free the
/// model or voice in use.
pub type qt_chunk_cb = Option<unsafe extern "C" fn(chunk: *const qt_chunk, user_data: *mut c_void) -> i32>;

/// Asked once before the prompt's prefill and then after every codec frame (every 80 ms of
/// audio) whether to stop (see `qt_gen_params.abort_cb`).
///
/// Return `QT_CONTINUE` to go on or `QT_STOP` to end generation (`qt_generate` then returns
/// `QT_STATUS_ABORTED`); any other value ends it with `QT_STATUS_INVALID_ARGUMENT`.
/// Threads: called on the thread that called `qt_generate`. To cancel from another thread, have
/// it set a flag (an atomic) that this callback reads. It must not unwind.
pub type qt_abort_cb = Option<unsafe extern "C" fn(user_data: *mut c_void) -> i32>;

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// Options for `qt_generate`. Fill it with `qt_gen_params_default(model, &p, sizeof p)` (the
/// model's `generation_config.json`), change what you need, and pass a pointer; NULL means
/// "all defaults of the model".
///
/// The library reads only the first `struct_size` bytes; strings are read during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct qt_gen_params {
    /// `sizeof(qt_gen_params)` as the caller knows it. Set by `qt_gen_params_default`.
    pub struct_size: u32,
    /// Sample codebook 0 (the talker) from the distribution (1, the default) or take the most
    /// likely token (0, greedy: deterministic, the other talker knobs except
    /// `repetition_penalty` are then ignored). 0 or 1 only.
    pub do_sample: i32,
    /// Language of `text`: "auto" (the default; NULL means the same) or one of the model's
    /// languages (`qt_model_language`), case-insensitive, e.g. "English".
    pub language: *const c_char,
    /// Style instruction ("speak slowly and softly"), honoured by 1.7B CustomVoice models; NULL
    /// or "" for none (the default).
    pub instruct: *const c_char,
    /// Talker temperature (> 0; model default 0.9).
    pub temperature: f32,
    /// Talker top-k (0 = off; model default 50). Must not be negative.
    pub top_k: i32,
    /// Talker nucleus cut in (0, 1] (1 = off; model default 1.0).
    pub top_p: f32,
    /// Penalty > 0 on repeating an earlier codebook-0 token (1 = off; model default 1.05).
    /// Applies when greedy too.
    pub repetition_penalty: f32,
    /// Sample codebooks 1..15 (the code predictor) (1, the default) or greedy (0).
    pub sub_do_sample: i32,
    /// Code-predictor temperature (> 0; model default 0.9).
    pub sub_temperature: f32,
    /// Code-predictor top-k (0 = off; model default 50). Must not be negative.
    pub sub_top_k: i32,
    /// Code-predictor nucleus cut in (0, 1] (model default 1.0).
    pub sub_top_p: f32,
    /// Most codec frames to generate (12.5 per second of audio). 0 (the default) = a budget
    /// derived from the text length, so that a request whose end never comes cannot run for
    /// minutes. Capped by the model's `max_new_tokens`. When it cuts generation,
    /// `qt_audio_info.finish` is `QT_FINISH_FRAME_LIMIT`. Must not be negative.
    pub max_frames: i32,
    /// Codec frames per streamed chunk handed to the chunk callback once the chunks have grown
    /// to full size (each frame is 80 ms of audio; default 4 = 320 ms; 0 also means the
    /// default). See `first_chunk_frames` for the first chunks; the last chunk holds what is
    /// left. Must not be negative.
    pub chunk_frames: i32,
    /// Seed of the sampler: the same seed, text, voice and options give the same audio on every
    /// run and thread count. `QT_SEED_RANDOM` (the default) draws a fresh one per request.
    pub seed: u64,
    /// Sample rate of the output in Hz: 0 (the default) = the model's 24000; any other rate is
    /// produced by band-limited resampling (e.g. 44100 or 48000 for a game mixer). Must not be
    /// negative.
    pub output_sample_rate: i32,
    /// How the text is fed: `QT_TEXT_FEED_DEFAULT` (-1, the default), `QT_TEXT_FEED_STREAMING`
    /// (0) or `QT_TEXT_FEED_FULL` (1). The official `non_streaming_mode`.
    pub non_streaming_mode: i32,
    /// Polled before the prefill, after each layer of it (of each pass: two when the voice
    /// prefix is computed for the prefix cache, one when it is reused; on a GPU: once the
    /// prefill is done) and after every codec frame; returning `QT_STOP` ends generation with `QT_STATUS_ABORTED`. NULL (the default) for none. See `qt_abort_cb`.
    pub abort_cb: qt_abort_cb,
    /// Passed to `abort_cb`; the library never dereferences it.
    pub abort_user_data: *mut c_void,
    /// Codec frames in the first chunk, for early first audio: each later chunk holds twice
    /// the frames of the one before, up to `chunk_frames` (default 1: chunks of 1, 2, 4, 4, ...
    /// frames; 0 also means the default). A value of at least `chunk_frames` makes every chunk
    /// `chunk_frames` long. Must not be negative. Since v2: a caller whose struct ends before
    /// it gets chunks all `chunk_frames` long, as in v1; NULL params get the default.
    pub first_chunk_frames: i32,
    /// Must be 0 (`qt_gen_params_default` sets it): room for a later field. Since v2.
    pub reserved: i32,
}

// SAFETY: repr(C), u32 struct_size first, integer/float/pointer/nullable-fn-pointer fields only
// (every bit pattern valid: Option<fn> is nullable), no padding (asserted below).
unsafe impl SizedStruct for qt_gen_params {
    const NAME: &'static str = "qt_gen_params";
    // v1 ends after `abort_user_data`, v2 after `reserved`. Append a size when a field is added;
    // never edit an entry.
    const LAYOUT_SIZES: &'static [usize] =
        &[offset_of!(qt_gen_params, abort_user_data) + size_of::<usize>(), offset_of!(qt_gen_params, reserved) + 4];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

/// Options for `qt_clone_voice` and `qt_clone_voice_from_file`. Fill it with
/// `qt_clone_params_default(&p, sizeof p)`; NULL means "all defaults".
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_clone_params {
    /// `sizeof(qt_clone_params)` as the caller knows it. Set by `qt_clone_params_default`.
    pub struct_size: u32,
    /// `QT_CLONE_AUTO` (the default), `QT_CLONE_XVECTOR` or `QT_CLONE_ICL`.
    pub mode: i32,
    /// Shortest reference accepted, in seconds (default 1; shorter gives a poor voice).
    pub min_seconds: f32,
    /// Longest reference accepted, in seconds (default 30, at most 120: the reference codes
    /// enter every prompt). Longer references are rejected, never trimmed: in ICL mode the
    /// transcript must match the audio exactly.
    pub max_seconds: f32,
}

// SAFETY: repr(C), u32 struct_size first, integer/float fields only, no padding.
unsafe impl SizedStruct for qt_clone_params {
    const NAME: &'static str = "qt_clone_params";
    // v1 ends after `max_seconds`. Append a size when a field is added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[offset_of!(qt_clone_params, max_seconds) + 4];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

// The layouts are fixed ABI: no hidden padding, on 64-bit and 32-bit targets alike.
const _: () = {
    let ptr = size_of::<usize>();
    assert!(offset_of!(qt_chunk, first_sample) == 8 + 2 * ptr);
    assert!(size_of::<qt_chunk>() == 8 + 2 * ptr + 24);
    assert!(offset_of!(qt_gen_params, language) == 8);
    assert!(offset_of!(qt_gen_params, temperature) == 8 + 2 * ptr);
    assert!(offset_of!(qt_gen_params, seed) == 8 + 2 * ptr + 40);
    assert!(offset_of!(qt_gen_params, abort_cb) == 8 + 2 * ptr + 56);
    assert!(offset_of!(qt_gen_params, first_chunk_frames) == 8 + 4 * ptr + 56);
    assert!(size_of::<qt_gen_params>() == 8 + 4 * ptr + 64);
    assert!(size_of::<qt_clone_params>() == 16);
};

/// Facts about a voice, filled by `qt_voice_get_info`. Set `struct_size` to
/// `sizeof(qt_voice_info)` before the call; the library fills the fields that fit and sets
/// `struct_size` to the number of bytes it wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_voice_info {
    /// In: the caller's `sizeof(qt_voice_info)`. Out: the bytes the library filled.
    pub struct_size: u32,
    /// `QT_VOICE_XVECTOR`, `QT_VOICE_ICL`, `QT_VOICE_SPEAKER` or `QT_VOICE_DESIGN`. Compare with
    /// the constants; a future library may report a kind this header does not name.
    pub kind: i32,
    /// Floats in the speaker x-vector (`qt_voice_embedding`); 0 for a built-in speaker.
    pub embedding_dim: usize,
    /// Codec frames of in-context reference audio (12.5 per second); 0 unless `QT_VOICE_ICL`.
    pub ref_frames: usize,
    /// Transcript of the reference audio (`QT_VOICE_ICL`), else NULL. Owned by the voice.
    pub ref_text: *const c_char,
    /// Name of the built-in speaker (`QT_VOICE_SPEAKER`), else NULL. Owned by the voice.
    pub speaker: *const c_char,
    /// The description of a designed voice (`QT_VOICE_DESIGN`), else NULL. Owned by the voice.
    /// Since v2 (the library leaves it alone for a caller whose struct ends before it).
    pub description: *const c_char,
}

// SAFETY: repr(C), u32 struct_size first, integer/pointer fields only, no padding.
unsafe impl SizedStruct for qt_voice_info {
    const NAME: &'static str = "qt_voice_info";
    // v1 ends after `speaker`, v2 after `description`. Append a size when a field is added;
    // never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[
        offset_of!(qt_voice_info, speaker) + size_of::<usize>(),
        offset_of!(qt_voice_info, description) + size_of::<usize>(),
    ];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

const _: () = assert!(size_of::<qt_voice_info>() == 8 + 5 * size_of::<usize>());

/// Facts about generated audio, filled by `qt_audio_get_info`. Set `struct_size` to
/// `sizeof(qt_audio_info)` before the call; the library fills the fields that fit and sets
/// `struct_size` to the number of bytes it wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_audio_info {
    /// In: the caller's `sizeof(qt_audio_info)`. Out: the bytes the library filled.
    pub struct_size: u32,
    /// Why generation ended: `QT_FINISH_EOS`, `QT_FINISH_FRAME_LIMIT` or `QT_FINISH_ABORTED`.
    /// Compare with the constants; a future library may report a value this header does not
    /// name.
    pub finish: i32,
    /// Sample rate of `samples` in Hz (24000, or `qt_gen_params.output_sample_rate`).
    pub sample_rate: i32,
    /// Channels of `samples`: always 1 (mono).
    pub channels: i32,
    /// Codec frames generated (80 ms each); an in-context voice's reference is not counted.
    pub n_frames: i32,
    /// Index in `samples` where the streamed chunks begin: 0, except for an in-context (ICL)
    /// voice at 24 kHz, where the official output sometimes keeps one reference sample in
    /// front (then 1).
    pub chunk_offset: i32,
    /// The samples (mono, nominally in [-1, 1]). Owned by the audio: valid until it is freed.
    pub samples: *const f32,
    /// Number of samples.
    pub n_samples: usize,
    /// Milliseconds from the call until the first codec frame existed (prompt, talker
    /// prefill, first frame).
    pub prefill_ms: f64,
    /// Mean milliseconds per later frame (talker step, sampling, code predictor).
    pub frame_ms: f64,
    /// Milliseconds of codec decoding and resampling.
    pub decode_ms: f64,
    /// Milliseconds spent inside the caller's callbacks.
    pub callback_ms: f64,
    /// Milliseconds from the call until the first chunk's audio was ready (0 if none).
    pub first_chunk_ms: f64,
    /// Milliseconds of the whole call.
    pub total_ms: f64,
    /// Real-time factor: (total − callbacks) / audio duration; below 1 is faster than real
    /// time (0 when no audio was made).
    pub rtf: f64,
    /// Rows of the talker prompt the prefill covered. Since v2.
    pub prompt_rows: i32,
    /// Of those, rows whose keys and values came from the model's voice prefix cache (an
    /// earlier call with the same voice, language and instruction computed them). Since v2.
    pub reused_prompt_rows: i32,
}

// SAFETY: repr(C), u32 struct_size first, integer/float/pointer fields only, no padding.
unsafe impl SizedStruct for qt_audio_info {
    const NAME: &'static str = "qt_audio_info";
    // v1 ends after `rtf`, v2 after `reused_prompt_rows`. Append a size when a field is
    // added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] =
        &[offset_of!(qt_audio_info, rtf) + 8, offset_of!(qt_audio_info, reused_prompt_rows) + 4];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

const _: () = {
    let ptr = size_of::<usize>();
    assert!(offset_of!(qt_audio_info, samples) == 24);
    assert!(offset_of!(qt_audio_info, prefill_ms) == 24 + 2 * ptr);
    assert!(size_of::<qt_audio_info>() == 24 + 2 * ptr + 7 * 8 + 2 * 4);
};

/// `qt_stream_info.state`: generating (or waiting for the reader to make room).
pub const QT_STREAM_RUNNING: i32 = 0;
/// `qt_stream_info.state`: generation ended normally; what is left in the ring is the end.
pub const QT_STREAM_FINISHED: i32 = 1;
/// `qt_stream_info.state`: `qt_stream_cancel` stopped it.
pub const QT_STREAM_CANCELLED: i32 = 2;
/// `qt_stream_info.state`: generation failed; `qt_stream_result` says why.
pub const QT_STREAM_FAILED: i32 = 3;

/// Facts about a stream, filled by `qt_stream_get_info`. Set `struct_size` to
/// `sizeof(qt_stream_info)` before the call; the library fills the fields that fit and sets
/// `struct_size` to the number of bytes it wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_stream_info {
    /// In: the caller's `sizeof(qt_stream_info)`. Out: the bytes the library filled.
    pub struct_size: u32,
    /// `QT_STREAM_RUNNING`, `QT_STREAM_FINISHED`, `QT_STREAM_CANCELLED` or `QT_STREAM_FAILED`.
    pub state: i32,
    /// Sample rate of the stream's samples in Hz (24000, or `qt_gen_params.output_sample_rate`).
    pub sample_rate: i32,
    /// Once finished: `QT_FINISH_EOS` or `QT_FINISH_FRAME_LIMIT`; else 0.
    pub finish: i32,
    /// Capacity of the stream's ring, in samples.
    pub capacity: usize,
    /// Samples generated into the ring so far.
    pub samples_written: u64,
    /// Samples read out of the ring so far.
    pub samples_read: u64,
    /// Milliseconds from `qt_stream_start` until the first samples could be read (0 before).
    pub first_audio_ms: f64,
}

// SAFETY: repr(C), u32 struct_size first, integer/float fields only, no padding.
unsafe impl SizedStruct for qt_stream_info {
    const NAME: &'static str = "qt_stream_info";
    // v1 ends after `first_audio_ms`. Append a size when a field is added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[offset_of!(qt_stream_info, first_audio_ms) + 8];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

const _: () = {
    let ptr = size_of::<usize>();
    assert!(offset_of!(qt_stream_info, capacity) == 16);
    assert!(size_of::<qt_stream_info>() == 16 + ptr + 3 * 8);
};
