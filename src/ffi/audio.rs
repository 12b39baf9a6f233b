//! `qt_audio`: the utterance `qt_generate` returns, its accessors, and WAV output.

use std::ffi::c_char;

use super::boundary::{guard, out_arg, path_arg, sized_out_arg, write_sized};
use super::handle::{Handle, TAG_AUDIO, borrow};
use super::status::qt_status;
use super::types::{QT_FINISH_ABORTED, QT_FINISH_EOS, QT_FINISH_FRAME_LIMIT, qt_audio_info};
use crate::api::{Audio, FinishReason};

/// Generated speech: mono float samples, their rate, and how generation went. Returned by
/// `qt_generate`, released by `qt_free`.
///
/// Threads: immutable; any thread may read it, several at once.
pub struct qt_audio {
    _opaque: [u8; 0],
}

/// What a `qt_audio*` points to (behind its type tag).
pub(crate) struct AudioObject {
    audio: Audio,
}

// SAFETY: TAG_AUDIO is unique and named in tag_name; qt_audio pointers come only from into_raw.
unsafe impl Handle for qt_audio {
    type Value = AudioObject;
    const TAG: u64 = TAG_AUDIO;
    const TYPE_NAME: &'static str = "qt_audio";
}

// The thread contract in qt_audio's doc, checked.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<AudioObject>();
};

/// The `QT_FINISH_*` value of a finish reason.
pub(crate) fn finish_to_c(finish: FinishReason) -> i32 {
    match finish {
        FinishReason::Eos => QT_FINISH_EOS,
        FinishReason::FrameLimit => QT_FINISH_FRAME_LIMIT,
        FinishReason::Aborted => QT_FINISH_ABORTED,
    }
}

impl AudioObject {
    pub(crate) fn new(audio: Audio) -> AudioObject {
        AudioObject { audio }
    }

    fn to_c_info(&self) -> qt_audio_info {
        let a = &self.audio;
        let t = &a.timings;
        let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        qt_audio_info {
            struct_size: size_of::<qt_audio_info>() as u32,
            finish: finish_to_c(a.finish),
            sample_rate: i32::try_from(a.sample_rate).unwrap_or(i32::MAX),
            channels: 1,
            n_frames: int(a.frames),
            chunk_offset: int(a.chunk_offset),
            samples: self.samples_ptr(),
            n_samples: a.samples.len(),
            prefill_ms: t.prefill_ms,
            frame_ms: t.frame_ms,
            decode_ms: t.decode_ms,
            callback_ms: t.callback_ms,
            first_chunk_ms: t.first_chunk_ms,
            total_ms: t.total_ms,
            rtf: t.rtf,
            prompt_rows: int(t.prompt_rows),
            reused_prompt_rows: int(t.reused_prompt_rows),
        }
    }

    /// The samples' address; NULL when there are none (a dangling pointer means nothing to C).
    fn samples_ptr(&self) -> *const f32 {
        if self.audio.samples.is_empty() { std::ptr::null() } else { self.audio.samples.as_ptr() }
    }
}

/// Describes generated audio: sample rate, frames, why generation ended, where the time went,
/// and the samples (also available through `qt_audio_samples`).
///
/// - `out_info`: the caller's struct with `struct_size` set to `sizeof(qt_audio_info)`; the
///   library fills the fields that fit and sets `struct_size` to the bytes it wrote.
///
/// Ownership: `out_info->samples` belongs to the audio, valid until it is freed.
/// Threads: any thread, concurrently with other reads of the audio.
/// Returns `QT_STATUS_OK`, `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE` or
/// `QT_STATUS_ABI_MISMATCH`; `*out_info` is untouched on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_audio_get_info(audio: *const qt_audio, out_info: *mut qt_audio_info) -> qt_status {
    guard("qt_audio_get_info", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(audio, "audio") }?;
        let (out, len) = unsafe { sized_out_arg(out_info, "out_info") }?;
        write_sized(out, len, object.to_c_info());
        Ok(())
    })
}

/// The samples of generated audio: mono floats, nominally in [-1, 1], at the rate
/// `qt_audio_get_info` reports (24000 unless `qt_gen_params.output_sample_rate` chose another).
///
/// - `out_samples`: receives the address of the first sample (NULL when there are none).
/// - `out_n_samples`: receives the number of samples.
///
/// Ownership: the samples belong to the audio: valid until it is freed; do not free them.
/// Threads: any thread, concurrently with other reads of the audio.
/// Returns `QT_STATUS_OK`, `QT_STATUS_NULL_ARGUMENT` or `QT_STATUS_INVALID_HANDLE`; the
/// out-parameters are written only on success.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_audio_samples(
    audio: *const qt_audio,
    out_samples: *mut *const f32,
    out_n_samples: *mut usize,
) -> qt_status {
    guard("qt_audio_samples", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(audio, "audio") }?;
        let samples = unsafe { out_arg(out_samples, "out_samples") }?;
        let count = unsafe { out_arg(out_n_samples, "out_n_samples") }?;
        samples.write(object.samples_ptr());
        count.write(object.audio.samples.len());
        Ok(())
    })
}

/// Writes generated audio to a WAV file: 16-bit PCM, mono, at the audio's sample rate
/// (samples clamped to [-1, 1] and rounded as libsndfile does). An existing file is replaced.
///
/// - `path`: NUL-terminated path (UTF-8; on Unix any bytes, used as is).
///
/// Threads: any thread, concurrently with other reads of the audio.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_INVALID_ARGUMENT` (empty path), `QT_STATUS_IO` (the file cannot be written; the
/// message says why).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_audio_write_wav(audio: *const qt_audio, path: *const c_char) -> qt_status {
    guard("qt_audio_write_wav", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(audio, "audio") }?;
        let path = unsafe { path_arg(path, "path") }?;
        object.audio.write_wav(&path)
    })
}
