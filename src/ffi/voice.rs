//! `qt_voice`: who speaks. Cloned from reference audio (a PCM buffer or a file), rebuilt from a
//! stored x-vector, a CustomVoice model's built-in speaker, a VoiceDesign model's description
//! in words, or loaded from bytes or a file that `qt_voice_serialize` / `qt_voice_save` wrote.

use std::ffi::{CString, c_char};
use std::sync::OnceLock;

use super::boundary::{
    Out, guard, opt_str_arg, out_arg, path_arg, read_sized, sized_len, sized_out_arg, slice_arg, str_arg, write_buffer,
    write_sized,
};
use super::handle::{Handle, TAG_VOICE, borrow, into_raw};
use super::model::{ModelObject, qt_model};
use super::status::{qt_status, to_cstring_lossy};
use super::types::{
    QT_CLONE_AUTO, QT_CLONE_ICL, QT_CLONE_XVECTOR, QT_VOICE_DESIGN, QT_VOICE_ICL, QT_VOICE_SPEAKER, QT_VOICE_XVECTOR,
    qt_clone_params, qt_voice_info,
};
use crate::api::{ModelKind, Voice, VoiceKind};
use crate::audio::{ReferenceAudio, ReferenceLimits};
use crate::error::{Error, Result};

/// A voice: a cloned speaker (x-vector, optionally with in-context reference material), a
/// built-in speaker or a voice described in words. Created by `qt_clone_voice`,
/// `qt_clone_voice_from_file`, `qt_voice_from_embedding`, `qt_voice_from_speaker`,
/// `qt_voice_from_description`, `qt_voice_deserialize` or `qt_voice_load`; released by
/// `qt_free`.
///
/// A voice does not keep the model that made it alive. A cloned voice may be used with any
/// model of the same family (kind, size, speaker encoder and codec; `qt_generate` refuses
/// others with `QT_STATUS_VOICE_MISMATCH`); a built-in speaker with any model that has it.
/// Threads: immutable; any number of threads may use one voice at the same time.
pub struct qt_voice {
    _opaque: [u8; 0],
}

/// What a `qt_voice*` points to (behind its type tag): the voice, the C strings its info hands
/// out, and its serialized form, made once on first request.
pub(crate) struct VoiceObject {
    voice: Voice,
    /// Codebooks per codec frame of the model that made it, to count reference frames.
    codebooks: usize,
    ref_text: Option<CString>,
    speaker: Option<CString>,
    description: Option<CString>,
    bytes: OnceLock<std::result::Result<Vec<u8>, Error>>,
}

// SAFETY: TAG_VOICE is unique and named in tag_name; qt_voice pointers come only from into_raw.
unsafe impl Handle for qt_voice {
    type Value = VoiceObject;
    const TAG: u64 = TAG_VOICE;
    const TYPE_NAME: &'static str = "qt_voice";
}

impl VoiceObject {
    pub(crate) fn new(voice: Voice, codebooks: usize) -> VoiceObject {
        let (mut ref_text, mut speaker, mut description) = (None, None, None);
        match voice.kind() {
            VoiceKind::Cloned { reference, .. } => ref_text = reference.as_ref().map(|r| to_cstring_lossy(&r.text)),
            VoiceKind::Speaker { name } => speaker = Some(to_cstring_lossy(name)),
            VoiceKind::Design { description: text } => description = Some(to_cstring_lossy(text)),
        }
        VoiceObject { voice, codebooks, ref_text, speaker, description, bytes: OnceLock::new() }
    }

    /// The voice, for `qt_generate`.
    pub(crate) fn voice(&self) -> &Voice {
        &self.voice
    }

    /// The serialized voice, made on first use and kept, so the two calls of the two-call
    /// pattern see the same bytes.
    fn bytes(&self) -> Result<&[u8]> {
        self.bytes.get_or_init(|| self.voice.to_bytes()).as_deref().map_err(Clone::clone)
    }

    fn to_c_info(&self) -> qt_voice_info {
        let (kind, embedding_dim, ref_frames) = match self.voice.kind() {
            VoiceKind::Cloned { embedding, reference: None } => (QT_VOICE_XVECTOR, embedding.len(), 0),
            VoiceKind::Cloned { embedding, reference: Some(r) } => {
                (QT_VOICE_ICL, embedding.len(), r.frames(self.codebooks))
            }
            VoiceKind::Speaker { .. } => (QT_VOICE_SPEAKER, 0, 0),
            VoiceKind::Design { .. } => (QT_VOICE_DESIGN, 0, 0),
        };
        qt_voice_info {
            struct_size: size_of::<qt_voice_info>() as u32,
            kind,
            embedding_dim,
            ref_frames,
            ref_text: self.ref_text.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            speaker: self.speaker.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            description: self.description.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        }
    }
}

// The thread contract in qt_voice's doc, checked.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<VoiceObject>();
};

/// Hands a voice made for `model` to C.
fn put(out: Out<*mut qt_voice>, voice: Voice, model: &ModelObject) {
    out.write(into_raw::<qt_voice>(VoiceObject::new(voice, model.info().num_codebooks)));
}

// ---------------------------------------------------------------------------------------------
// cloning
// ---------------------------------------------------------------------------------------------

impl Default for qt_clone_params {
    fn default() -> Self {
        qt_clone_params {
            struct_size: size_of::<Self>() as u32,
            mode: QT_CLONE_AUTO,
            min_seconds: ReferenceLimits::DEFAULT_MIN_SECONDS as f32,
            max_seconds: ReferenceLimits::DEFAULT_MAX_SECONDS as f32,
        }
    }
}

/// Validated clone params: the reference limits, and the transcript the mode selects.
struct CloneRequest<'a> {
    limits: ReferenceLimits,
    ref_text: Option<&'a str>,
}

/// Validates C clone params against the transcript argument.
fn clone_request<'a>(params: &qt_clone_params, ref_text: Option<&'a str>) -> Result<CloneRequest<'a>> {
    let ref_text = match params.mode {
        QT_CLONE_AUTO => ref_text,
        QT_CLONE_XVECTOR => None,
        QT_CLONE_ICL => Some(ref_text.ok_or_else(|| {
            Error::invalid_argument("QT_CLONE_ICL needs `ref_text`, the transcript of the reference audio")
        })?),
        other => {
            return Err(Error::invalid_argument(format!(
                "clone mode {other} is not valid: use QT_CLONE_AUTO ({QT_CLONE_AUTO}), QT_CLONE_XVECTOR \
                 ({QT_CLONE_XVECTOR}) or QT_CLONE_ICL ({QT_CLONE_ICL})"
            )));
        }
    };
    let seconds = |v: f32, what: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(f64::from(v))
        } else {
            Err(Error::invalid_argument(format!("{what} is {v}; it must be a positive number of seconds")))
        }
    };
    let limits = ReferenceLimits {
        min_seconds: seconds(params.min_seconds, "min_seconds")?,
        max_seconds: seconds(params.max_seconds, "max_seconds")?,
        ..ReferenceLimits::default()
    };
    if limits.min_seconds > limits.max_seconds {
        return Err(Error::invalid_argument(format!(
            "min_seconds ({}) is greater than max_seconds ({})",
            params.min_seconds, params.max_seconds
        )));
    }
    Ok(CloneRequest { limits, ref_text })
}

/// Fills `*out` with the default clone options: `QT_CLONE_AUTO`, references of 1 to 30 seconds.
///
/// - `out`: the caller's struct; `size`: `sizeof *out` as the caller compiled it. At most `size`
///   bytes are written.
///
/// Threads: any thread.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT` if `out` is NULL; `QT_STATUS_ABI_MISMATCH`
/// if `size` is smaller than the oldest `qt_clone_params` (nothing written then).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_clone_params_default(out: *mut qt_clone_params, size: usize) -> qt_status {
    guard("qt_clone_params_default", || {
        // SAFETY: the caller provides `size` writable bytes at a non-NULL `out`.
        let out = unsafe { out_arg(out, "out") }?;
        let len = sized_len::<qt_clone_params>(size)?;
        write_sized(out, len, qt_clone_params::default());
        Ok(())
    })
}

/// Clones a voice from reference audio in memory: the speaker encoder's x-vector and, for
/// in-context cloning (ICL), the reference's codec codes and its transcript `ref_text`.
///
/// - `model`: a Base model (`qt_model_info.can_clone` is 1).
/// - `samples`: `n_samples` float samples, nominally in [-1, 1], interleaved when `channels` > 1
///   (`n_samples` counts every channel's samples, so it is a multiple of `channels`). Mixed down
///   to mono and resampled to 24 kHz as needed.
/// - `channels`: 1 to 64. `sample_rate`: the rate of `samples` in Hz, 1000 to 768000.
/// - `ref_text`: the exact transcript of the reference, UTF-8; NULL for an x-vector-only voice.
///   With `QT_CLONE_AUTO`, a transcript selects ICL (closer imitation, slower prompts).
/// - `params`: options, or NULL for the defaults (see `qt_clone_params_default`).
/// - `out_voice`: receives the voice on success; untouched on failure.
///
/// The reference must be finite, not silent, and last between `min_seconds` and `max_seconds`
/// (default 1 to 30; 3 to 10 seconds of clean speech work best).
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`); the
/// samples and strings are only read during the call.
/// Threads: any thread, concurrently with any other use of the model.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_ABI_MISMATCH`, `QT_STATUS_INVALID_ARGUMENT` (bad counts, rates, mode or audio:
/// too short, too long, silent, not finite; `QT_CLONE_ICL` without `ref_text`; invalid UTF-8),
/// `QT_STATUS_UNSUPPORTED` (the model cannot clone).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_clone_voice(
    model: *const qt_model,
    samples: *const f32,
    n_samples: usize,
    channels: i32,
    sample_rate: i32,
    ref_text: *const c_char,
    params: *const qt_clone_params,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_clone_voice", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let samples = unsafe { slice_arg(samples, n_samples, "samples") }?;
        let ref_text = unsafe { opt_str_arg(ref_text, "ref_text") }?;
        let params = unsafe { read_sized(params, "params", qt_clone_params::default()) }?;
        let request = clone_request(&params, ref_text)?;
        let channels = usize::try_from(channels)
            .map_err(|_| Error::invalid_argument(format!("channels is {channels}; it must be 1 or more")))?;
        let sample_rate = u32::try_from(sample_rate)
            .map_err(|_| Error::invalid_argument(format!("sample_rate is {sample_rate}; it must be positive")))?;
        let audio = ReferenceAudio::from_pcm(samples, channels, sample_rate, &request.limits)?;
        let voice = object.model().clone_voice(&audio, request.ref_text)?;
        put(out, voice, object);
        Ok(())
    })
}

/// Clones a voice from a reference audio file (WAV, FLAC, Ogg Vorbis or MP3; 1 kHz to 768 kHz, any
/// channel count up to 64), as `qt_clone_voice` does from memory.
///
/// - `path`: NUL-terminated path (UTF-8; on Unix any bytes, used as is).
/// - `ref_text`, `params`, `out_voice`: as for `qt_clone_voice`.
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`).
/// Threads: any thread, concurrently with any other use of the model.
/// Returns `QT_STATUS_OK`, or the statuses of `qt_clone_voice`, plus `QT_STATUS_NOT_FOUND` /
/// `QT_STATUS_IO` (the file) and `QT_STATUS_INVALID_ARGUMENT` (a file that is not decodable
/// audio).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_clone_voice_from_file(
    model: *const qt_model,
    path: *const c_char,
    ref_text: *const c_char,
    params: *const qt_clone_params,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_clone_voice_from_file", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let path = unsafe { path_arg(path, "path") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let ref_text = unsafe { opt_str_arg(ref_text, "ref_text") }?;
        let params = unsafe { read_sized(params, "params", qt_clone_params::default()) }?;
        let request = clone_request(&params, ref_text)?;
        let audio = ReferenceAudio::from_file(&path, &request.limits)?;
        let voice = object.model().clone_voice(&audio, request.ref_text)?;
        put(out, voice, object);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// other sources
// ---------------------------------------------------------------------------------------------

/// Makes an x-vector-only voice from a stored speaker embedding (one that `qt_voice_embedding`
/// returned, or that the official tools computed).
///
/// - `model`: the Base model the voice is for; `dim` must equal its x-vector width
///   (`qt_model_info.talker_hidden_size`).
/// - `embedding`: `dim` finite floats, copied.
/// - `out_voice`: receives the voice on success; untouched on failure.
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`).
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (`dim` 0, a value not finite), `QT_STATUS_VOICE_MISMATCH`
/// (`dim` is not the model's width), `QT_STATUS_UNSUPPORTED` (the model is not a Base model).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_from_embedding(
    model: *const qt_model,
    embedding: *const f32,
    dim: usize,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_voice_from_embedding", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        // Kind and width before a single value is read: a wrong `dim` must be refused, not
        // read past the end of the caller's array.
        // (dim 0 goes on to the empty-embedding error, as from Rust.)
        if dim != 0 {
            object.model().check_embedding_len(dim)?;
        }
        let embedding = unsafe { slice_arg(embedding, dim, "embedding") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let voice = object.model().voice_from_embedding(embedding.to_vec())?;
        put(out, voice, object);
        Ok(())
    })
}

/// A built-in speaker of `object`'s model, checked now rather than at the first generation.
fn speaker_voice(object: &ModelObject, name: &str) -> Result<Voice> {
    let speakers = &object.info().speakers;
    if speakers.is_empty() {
        return Err(Error::unsupported(format!(
            "this {:?} model has no built-in speakers (CustomVoice models have them)",
            object.info().kind
        )));
    }
    let wanted = name.to_lowercase();
    match speakers.iter().find(|s| s.to_lowercase() == wanted) {
        Some(found) => Ok(Voice::speaker(found.as_str())),
        None => Err(Error::invalid_argument(format!(
            "speaker \"{name}\" is not one of this model's: {}",
            speakers.join(", ")
        ))),
    }
}

/// Selects a built-in speaker of a CustomVoice model by name (case-insensitive; the names are
/// listed by `qt_model_speaker`).
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`);
/// `name` is only read during the call.
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (no such speaker: the message lists them; invalid UTF-8),
/// `QT_STATUS_UNSUPPORTED` (the model has no built-in speakers).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_from_speaker(
    model: *const qt_model,
    name: *const c_char,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_voice_from_speaker", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let name = unsafe { str_arg(name, "name") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let voice = speaker_voice(object, name)?;
        put(out, voice, object);
        Ok(())
    })
}

/// A voice described in words, for `object`'s model, checked now rather than at the first
/// generation.
fn described_voice(object: &ModelObject, description: &str) -> Result<Voice> {
    let kind = object.info().kind;
    if kind != ModelKind::VoiceDesign {
        return Err(Error::unsupported(format!(
            "this {kind:?} model does not take voice descriptions (VoiceDesign models do; a Base \
             model clones, a CustomVoice model has built-in speakers)"
        )));
    }
    Ok(Voice::design(description))
}

/// Makes a voice described in words ("A warm, low-pitched male voice, speaking slowly.") for a
/// VoiceDesign model (`qt_model_info.kind` is `QT_MODEL_VOICE_DESIGN`). The description is
/// the official implementation's `instruct` text: it goes into the prompt of every
/// generation with this voice, so it also shapes style and emotion. An empty description is
/// accepted and means none (the model then picks a voice).
///
/// - `description`: UTF-8, NUL-terminated; only read during the call (the voice keeps a copy,
///   which `qt_voice_get_info` reports and `qt_voice_serialize` stores).
/// - `out_voice`: receives the voice on success; untouched on failure.
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`).
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (invalid UTF-8), `QT_STATUS_UNSUPPORTED` (not a VoiceDesign
/// model).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_from_description(
    model: *const qt_model,
    description: *const c_char,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_voice_from_description", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let description = unsafe { str_arg(description, "description") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let voice = described_voice(object, description)?;
        put(out, voice, object);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// reading a voice
// ---------------------------------------------------------------------------------------------

/// Describes a voice: its kind, x-vector width, reference frames, transcript, speaker name or
/// description.
///
/// - `out_info`: the caller's struct with `struct_size` set to `sizeof(qt_voice_info)`; the
///   library fills the fields that fit and sets `struct_size` to the bytes it wrote.
///
/// Ownership: the strings in `*out_info` are owned by the voice, valid until it is freed.
/// Threads: any thread, concurrently with any other use of the voice.
/// Returns `QT_STATUS_OK`, `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE` or
/// `QT_STATUS_ABI_MISMATCH`; `*out_info` is untouched on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_get_info(voice: *const qt_voice, out_info: *mut qt_voice_info) -> qt_status {
    guard("qt_voice_get_info", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(voice, "voice") }?;
        let (out, len) = unsafe { sized_out_arg(out_info, "out_info") }?;
        write_sized(out, len, object.to_c_info());
        Ok(())
    })
}

/// Copies a cloned voice's speaker x-vector (for storage next to a game asset, for instance;
/// `qt_voice_from_embedding` rebuilds an x-vector-only voice from it).
///
/// Two-call pattern: with `out` NULL (or `cap` too small) it returns
/// `QT_STATUS_BUFFER_TOO_SMALL` and sets `*out_dim` to the number of floats needed; call again
/// with a buffer of that many floats. On `QT_STATUS_OK`, `*out_dim` floats were written.
///
/// Threads: any thread, concurrently with any other use of the voice.
/// Returns `QT_STATUS_OK`, `QT_STATUS_BUFFER_TOO_SMALL` (`*out_dim` set, `out` untouched),
/// `QT_STATUS_NULL_ARGUMENT` (`voice` or `out_dim`), `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (a built-in speaker has no x-vector).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_embedding(
    voice: *const qt_voice,
    out: *mut f32,
    cap: usize,
    out_dim: *mut usize,
) -> qt_status {
    guard("qt_voice_embedding", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(voice, "voice") }?;
        let VoiceKind::Cloned { embedding, .. } = object.voice.kind() else {
            return Err(Error::invalid_argument(
                "this voice is a built-in speaker, which has no x-vector (only cloned voices have one)",
            ));
        };
        // SAFETY: forwarded contract.
        unsafe { write_buffer(embedding, out, cap, out_dim, ["out", "cap", "out_dim"], "the embedding", "floats") }
    })
}

// ---------------------------------------------------------------------------------------------
// persistence
// ---------------------------------------------------------------------------------------------

/// Serializes a voice to bytes (the same format `qt_voice_save` writes): everything needed to
/// use it again, plus the kind and size of the model it belongs to.
///
/// Two-call pattern: with `buf` NULL (or `cap` too small) it returns
/// `QT_STATUS_BUFFER_TOO_SMALL` and sets `*out_len` to the bytes needed; call again with a buffer
/// that large. On `QT_STATUS_OK`, `*out_len` bytes were written. The bytes of one voice are the
/// same on every call.
///
/// Threads: any thread, concurrently with any other use of the voice.
/// Returns `QT_STATUS_OK`, `QT_STATUS_BUFFER_TOO_SMALL` (`*out_len` set, `buf` untouched),
/// `QT_STATUS_NULL_ARGUMENT` (`voice` or `out_len`), `QT_STATUS_INVALID_HANDLE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_serialize(
    voice: *const qt_voice,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> qt_status {
    guard("qt_voice_serialize", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(voice, "voice") }?;
        let bytes = object.bytes()?;
        // SAFETY: forwarded contract.
        unsafe { write_buffer(bytes, buf, cap, out_len, ["buf", "cap", "out_len"], "the serialized voice", "bytes") }
    })
}

/// Rebuilds a voice from the bytes `qt_voice_serialize` produced, for use with `model`.
///
/// - `buf`: `len` bytes, only read during the call.
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`).
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_BAD_VOICE` (not a voice: wrong format, truncated, corrupt),
/// `QT_STATUS_UNSUPPORTED` (written by a newer library in a format this one cannot read),
/// `QT_STATUS_VOICE_MISMATCH` (made by a model of another family: kind, size, speaker encoder
/// or codec).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_deserialize(
    model: *const qt_model,
    buf: *const u8,
    len: usize,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_voice_deserialize", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let bytes = unsafe { slice_arg(buf, len, "buf") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let voice = object.model().voice_from_bytes(bytes)?;
        put(out, voice, object);
        Ok(())
    })
}

/// Writes a voice to a file (the `qt_voice_serialize` bytes), replacing the file if it exists.
///
/// Threads: any thread, concurrently with any other use of the voice.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (empty path), `QT_STATUS_IO` (the file cannot be written, e.g.
/// its directory does not exist).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_save(voice: *const qt_voice, path: *const c_char) -> qt_status {
    guard("qt_voice_save", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(voice, "voice") }?;
        let path = unsafe { path_arg(path, "path") }?;
        object.voice.save(&path)
    })
}

/// Reads a voice file that `qt_voice_save` wrote, for use with `model`.
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_voice` (release it with `qt_free`).
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (empty path), `QT_STATUS_NOT_FOUND` / `QT_STATUS_IO` (the
/// file), and the statuses of `qt_voice_deserialize` for its content.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_voice_load(
    model: *const qt_model,
    path: *const c_char,
    out_voice: *mut *mut qt_voice,
) -> qt_status {
    guard("qt_voice_load", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let path = unsafe { path_arg(path, "path") }?;
        let out = unsafe { out_arg(out_voice, "out_voice") }?;
        let voice = object.model().load_voice(&path)?;
        put(out, voice, object);
        Ok(())
    })
}
