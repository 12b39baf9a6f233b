//! `qt_generate`: text and a voice in, audio out (streamed through a chunk callback, returned
//! as a `qt_audio`, or both), and `qt_gen_params_default`.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::ptr;

use super::audio::{AudioObject, qt_audio};
use super::boundary::{Out, guard, guard_status, opt_str_arg, out_arg, read_sized, sized_len, str_arg, write_sized};
use super::handle::{borrow, into_raw};
use super::model::qt_model;
use super::status::{QT_STATUS_ABORTED, QT_STATUS_OK, qt_status};
use super::types::{
    QT_CONTINUE, QT_SEED_RANDOM, QT_STOP, QT_TEXT_FEED_DEFAULT, QT_TEXT_FEED_FULL, QT_TEXT_FEED_STREAMING, qt_chunk,
    qt_chunk_cb, qt_gen_params,
};
use super::voice::qt_voice;
use crate::api::{
    AudioChunk, ChunkSink, DEFAULT_CHUNK_FRAMES, DEFAULT_FIRST_CHUNK_FRAMES, FinishReason, GenerateHooks, GenerateOptions, Model};
use crate::error::{Error, Result};
use crate::model::config::GenerationConfig;
use crate::model::sampling::SamplerConfig;

/// The `language` default: a static string, so the defaults struct never points at memory that
/// can go away.
const AUTO: &std::ffi::CStr = c"auto";

/// The C params for sampling settings (no callbacks; `language` "auto", no instruction, the
/// default frame budget and chunk size, a random seed, 24 kHz).
fn params_from_samplers(talker: SamplerConfig, repetition_penalty: f32, sub: SamplerConfig) -> qt_gen_params {
    let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    qt_gen_params {
        struct_size: size_of::<qt_gen_params>() as u32,
        do_sample: i32::from(talker.do_sample),
        language: AUTO.as_ptr(),
        instruct: ptr::null(),
        temperature: talker.temperature,
        top_k: int(talker.top_k),
        top_p: talker.top_p,
        repetition_penalty,
        sub_do_sample: i32::from(sub.do_sample),
        sub_temperature: sub.temperature,
        sub_top_k: int(sub.top_k),
        sub_top_p: sub.top_p,
        max_frames: 0,
        chunk_frames: DEFAULT_CHUNK_FRAMES as i32,
        seed: QT_SEED_RANDOM,
        output_sample_rate: 0,
        non_streaming_mode: QT_TEXT_FEED_DEFAULT,
        abort_cb: None,
        abort_user_data: ptr::null_mut(),
        first_chunk_frames: DEFAULT_FIRST_CHUNK_FRAMES as i32,
        reserved: 0,
    }
}

/// The C params for a set of Rust options (callbacks, language and instruction excepted).
pub(crate) fn params_from_options(o: &GenerateOptions) -> qt_gen_params {
    let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    qt_gen_params {
        max_frames: o.max_frames.map_or(0, int),
        chunk_frames: int(o.chunk_frames),
        // No ramp: a first chunk as long as the others.
        first_chunk_frames: int(o.first_chunk_frames.unwrap_or(o.chunk_frames)),
        seed: o.seed.unwrap_or(QT_SEED_RANDOM),
        output_sample_rate: o.output_sample_rate.map_or(0, |r| i32::try_from(r).unwrap_or(i32::MAX)),
        non_streaming_mode: match o.non_streaming_mode {
            None => QT_TEXT_FEED_DEFAULT,
            Some(false) => QT_TEXT_FEED_STREAMING,
            Some(true) => QT_TEXT_FEED_FULL,
        },
        ..params_from_samplers(o.talker, o.repetition_penalty, o.code_predictor)
    }
}

/// The defaults without a model: the official `generation_config.json` values.
fn builtin_params() -> qt_gen_params {
    let g = GenerationConfig::default();
    params_from_samplers(SamplerConfig::talker(&g), g.repetition_penalty, SamplerConfig::code_predictor(&g))
}

/// A 0/1 flag field.
fn flag(value: i32, what: &str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::invalid_argument(format!("{what} is {other}; it must be 0 or 1"))),
    }
}

/// A count field where 0 means "default" (None) and negatives are refused.
fn count(value: i32, what: &str) -> Result<Option<usize>> {
    match value {
        0 => Ok(None),
        v if v > 0 => Ok(Some(v as usize)),
        v => Err(Error::invalid_argument(format!("{what} is {v}; it must be 0 (the default) or positive"))),
    }
}

fn top_k(value: i32, what: &str) -> Result<usize> {
    usize::try_from(value)
        .map_err(|_| Error::invalid_argument(format!("{what} is {value}; it must be 0 (off) or positive")))
}

/// The caller's params (NULL: the model's defaults), fields past the end of the caller's
/// layout filled in: with the model's defaults, except `first_chunk_frames`, which is
/// `i32::MAX` (no ramp) for a caller whose struct predates it, so that it keeps the chunks it
/// was built for (all `chunk_frames` long).
///
/// # Safety
/// `params` is NULL or points to a `qt_gen_params` of at least its `struct_size` bytes.
pub(crate) unsafe fn read_gen_params(model: &Model, params: *const qt_gen_params) -> Result<qt_gen_params> {
    let mut defaults = params_from_options(&GenerateOptions::defaults(model));
    if !params.is_null() {
        defaults.first_chunk_frames = i32::MAX;
    }
    // SAFETY: forwarded contract.
    unsafe { read_sized(params, "params", defaults) }
}

/// Validates the C params and merges them over the model's defaults.
///
/// # Safety
/// The string pointers in `p` are NULL or NUL-terminated and stay valid during the call.
pub(crate) unsafe fn options_from_params(model: &Model, p: &qt_gen_params) -> Result<GenerateOptions> {
    let mut o = GenerateOptions::defaults(model);
    // SAFETY: forwarded contract.
    if let Some(language) = unsafe { opt_str_arg(p.language, "params->language") }? {
        o.language = language.to_owned();
    }
    // SAFETY: forwarded contract.
    o.instruct = unsafe { opt_str_arg(p.instruct, "params->instruct") }?.filter(|s| !s.is_empty()).map(str::to_owned);
    o.talker = SamplerConfig {
        do_sample: flag(p.do_sample, "do_sample")?,
        temperature: p.temperature,
        top_k: top_k(p.top_k, "top_k")?,
        top_p: p.top_p,
    };
    o.repetition_penalty = p.repetition_penalty;
    o.code_predictor = SamplerConfig {
        do_sample: flag(p.sub_do_sample, "sub_do_sample")?,
        temperature: p.sub_temperature,
        top_k: top_k(p.sub_top_k, "sub_top_k")?,
        top_p: p.sub_top_p,
    };
    // Checked here so that the messages name the C fields.
    o.talker.validate()?;
    o.code_predictor.validate_as("sub_")?;
    o.max_frames = count(p.max_frames, "max_frames")?;
    if let Some(n) = count(p.chunk_frames, "chunk_frames")? {
        o.chunk_frames = n;
    }
    if let Some(n) = count(p.first_chunk_frames, "first_chunk_frames")? {
        o.first_chunk_frames = Some(n);
    }
    if p.reserved != 0 {
        return Err(Error::invalid_argument(format!(
            "reserved is {}; it must be 0 (fill the params with qt_gen_params_default)",
            p.reserved
        )));
    }
    o.seed = (p.seed != QT_SEED_RANDOM).then_some(p.seed);
    o.output_sample_rate = count(p.output_sample_rate, "output_sample_rate")?.map(|r| r as u32);
    o.non_streaming_mode = match p.non_streaming_mode {
        QT_TEXT_FEED_DEFAULT => None,
        QT_TEXT_FEED_STREAMING => Some(false),
        QT_TEXT_FEED_FULL => Some(true),
        other => {
            return Err(Error::invalid_argument(format!(
                "non_streaming_mode is {other}; use QT_TEXT_FEED_DEFAULT ({QT_TEXT_FEED_DEFAULT}), \
                 QT_TEXT_FEED_STREAMING ({QT_TEXT_FEED_STREAMING}) or QT_TEXT_FEED_FULL ({QT_TEXT_FEED_FULL})"
            )));
        }
    };
    Ok(o)
}

/// Fills `*out` with the generation defaults of `model` (its `generation_config.json`:
/// sampling on, temperature 0.9, top-k 50 for both the talker and the code predictor,
/// repetition penalty 1.05), language "auto", no instruction, `max_frames` 0 (a budget from
/// the text length), chunks of 1, 2, then 4 frames, `QT_SEED_RANDOM`, 24000 Hz output, no abort hook. With
/// `model` NULL, the official defaults are used.
///
/// - `out`: the caller's struct; `size`: `sizeof *out` as the caller compiled it. At most `size`
///   bytes are written. `out->language` points to a static string.
///
/// Threads: any thread.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT` (`out`); `QT_STATUS_INVALID_HANDLE`
/// (`model` not a live `qt_model`); `QT_STATUS_ABI_MISMATCH` (`size` smaller than the oldest
/// `qt_gen_params`; nothing written then).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_gen_params_default(
    model: *const qt_model,
    out: *mut qt_gen_params,
    size: usize,
) -> qt_status {
    guard("qt_gen_params_default", || {
        // SAFETY (both): pointers are NULL or valid per the documented contract.
        let defaults = if model.is_null() {
            builtin_params()
        } else {
            params_from_options(&GenerateOptions::defaults(unsafe { borrow(model, "model") }?.model()))
        };
        let out = unsafe { out_arg(out, "out") }?;
        let len = sized_len::<qt_gen_params>(size)?;
        write_sized(out, len, defaults);
        Ok(())
    })
}

/// A callback's return value: `Ok(true)` = go on, `Ok(false)` = stop, `Err` = neither constant.
fn verdict(value: i32, who: &str) -> Result<bool> {
    match value {
        QT_CONTINUE => Ok(true),
        QT_STOP => Ok(false),
        other => Err(Error::invalid_argument(format!(
            "{who} returned {other}; it must return QT_CONTINUE ({QT_CONTINUE}) or QT_STOP ({QT_STOP})"
        ))),
    }
}

/// The `qt_chunk` for a Rust chunk; `first_frame` = frames generated before the previous chunk.
fn c_chunk(chunk: &AudioChunk<'_>, first_frame: usize) -> qt_chunk {
    let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    qt_chunk {
        struct_size: size_of::<qt_chunk>() as u32,
        is_last: i32::from(chunk.is_last),
        samples: if chunk.samples.is_empty() { ptr::null() } else { chunk.samples.as_ptr() },
        n_samples: chunk.samples.len(),
        first_sample: chunk.first_sample as u64,
        sample_rate: i32::try_from(chunk.sample_rate).unwrap_or(i32::MAX),
        index: int(chunk.index),
        first_frame: int(first_frame),
        n_frames: int(chunk.frames.saturating_sub(first_frame)),
    }
}

/// Speaks `text` in `voice`: generates codec frames, decodes them to audio, and hands the audio
/// to `on_chunk` as it is made and/or returns it whole in `*out_audio`. Blocking.
///
/// - `model`: from `qt_load`. `voice`: from `qt_clone_voice` and friends: a cloned voice made
///   by a model of this family (Base models), or a built-in speaker (CustomVoice models).
/// - `text`: what to say: NUL-terminated UTF-8, at most 65536 bytes (longer text: split it into
///   sentences or paragraphs); with the prompt it feeds, at most 8192 rows.
/// - `params`: options (see `qt_gen_params_default`), or NULL for the model's defaults.
/// - `on_chunk`: called with each piece of audio, in order, on this thread (see `qt_chunk_cb`);
///   NULL to only collect the result. `user_data` is passed to it untouched.
/// - `out_audio`: receives the whole utterance; NULL when only streaming.
///
/// Stopping: `on_chunk` returning `QT_STOP`, or `params->abort_cb` (polled before the
/// prefill, during it and after every frame) returning `QT_STOP`, ends generation within a frame; the
/// call then returns `QT_STATUS_ABORTED` and `*out_audio` holds the audio made until then (its
/// finish is `QT_FINISH_ABORTED`): with `on_chunk`, exactly the chunks delivered; without,
/// every frame made before the stop (none when the first poll says stop). Without a seed (`QT_SEED_RANDOM`) every call sounds a little
/// different; with one, the result is reproducible.
///
/// Ownership: on `QT_STATUS_OK` or `QT_STATUS_ABORTED` the caller owns `*out_audio` (release it
/// with `qt_free`); on errors it is untouched. `text` and `params` (and its strings) are only
/// read during the call.
/// Threads: any thread; many threads may generate on one model and one voice at once. The
/// callbacks run on the calling thread. The call holds its own references to the model and the
/// voice, so once it has started, freeing them (even from a callback) does not disturb it.
/// Returns `QT_STATUS_OK`; `QT_STATUS_ABORTED`; or `QT_STATUS_NULL_ARGUMENT` (`model`, `voice`,
/// `text`), `QT_STATUS_INVALID_HANDLE`, `QT_STATUS_ABI_MISMATCH` (`params->struct_size`),
/// `QT_STATUS_INVALID_ARGUMENT` (invalid UTF-8, empty or white-space-only text, unknown language, an out-of-range
/// or non-0/1 field, a callback returning something other than `QT_CONTINUE`/`QT_STOP`),
/// `QT_STATUS_VOICE_MISMATCH` (a cloned voice made by a model of another family),
/// `QT_STATUS_UNSUPPORTED` (a voice of the wrong kind for the model, e.g. a built-in speaker
/// on a Base model).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_generate(
    model: *const qt_model,
    voice: *const qt_voice,
    text: *const c_char,
    params: *const qt_gen_params,
    on_chunk: qt_chunk_cb,
    user_data: *mut c_void,
    out_audio: *mut *mut qt_audio,
) -> qt_status {
    guard_status("qt_generate", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let model = unsafe { borrow(model, "model") }?.model().clone();
        let voice = unsafe { borrow(voice, "voice") }?.voice().clone();
        let text = unsafe { str_arg(text, "text") }?;
        let out: Option<Out<*mut qt_audio>> =
            if out_audio.is_null() { None } else { Some(unsafe { out_arg(out_audio, "out_audio") }?) };
        let p = unsafe { read_gen_params(&model, params) }?;
        let options = unsafe { options_from_params(&model, &p) }?;

        // The callbacks. A return value other than QT_CONTINUE / QT_STOP stops generation and
        // is reported after it has unwound.
        let misuse: Cell<Option<Error>> = Cell::new(None);
        let mut frames_sent = 0;
        let mut chunk_sink = |chunk: &AudioChunk<'_>| {
            let Some(callback) = on_chunk else { return true };
            let c = c_chunk(chunk, frames_sent);
            frames_sent = chunk.frames;
            // SAFETY: the caller passed the callback with its user data for this call; `c` and
            // the samples it points to outlive the call.
            let value = unsafe { callback(&c, user_data) };
            verdict(value, "the chunk callback (on_chunk)").unwrap_or_else(|e| {
                misuse.set(Some(e));
                false
            })
        };
        let (abort_cb, abort_user_data) = (p.abort_cb, p.abort_user_data);
        let mut should_abort = || {
            let Some(abort) = abort_cb else { return false };
            // SAFETY: the caller passed the hook with its user data in the params of this call.
            let value = unsafe { abort(abort_user_data) };
            verdict(value, "the abort hook (params->abort_cb)").map_or_else(
                |e| {
                    misuse.set(Some(e));
                    true
                },
                |go_on| !go_on,
            )
        };
        let hooks = GenerateHooks {
            on_chunk: on_chunk.is_some().then_some(&mut chunk_sink as &mut ChunkSink<'_>),
            should_abort: abort_cb.is_some().then_some(&mut should_abort as &mut dyn FnMut() -> bool),
        };
        let audio = model.generate_with(&voice, text, &options, hooks)?;
        if let Some(err) = misuse.take() {
            return Err(err);
        }
        let status = if audio.finish == FinishReason::Aborted { QT_STATUS_ABORTED } else { QT_STATUS_OK };
        if let Some(out) = out {
            out.write(into_raw::<qt_audio>(AudioObject::new(audio)));
        }
        Ok(status)
    })
}
