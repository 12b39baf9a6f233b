//! `qt_stream`: a generation on its own thread whose audio a real-time audio callback pulls
//! without blocking (Unity `OnAudioFilterRead`, Godot `AudioStreamGenerator`, Unreal
//! procedural sound waves, miniaudio/PortAudio callbacks). The Rust side is
//! [`SpeechStream`](crate::api::SpeechStream).

use std::ffi::c_char;

use super::boundary::{guard, guard_status, out_arg, sized_out_arg, slice_out_arg, str_arg, write_sized};
use super::generate::{options_from_params, read_gen_params};
use super::handle::{Handle, TAG_STREAM, borrow, into_raw};
use super::model::qt_model;
use super::status::{qt_status, status_for_kind};
use super::types::{
    QT_FINISH_EOS, QT_FINISH_FRAME_LIMIT, QT_STREAM_CANCELLED, QT_STREAM_FAILED, QT_STREAM_FINISHED,
    QT_STREAM_RUNNING, qt_gen_params, qt_stream_info,
};
use super::voice::qt_voice;
use crate::api::{FinishReason, SpeechStream, StreamState};
use crate::error::Error;

/// A generation running on a background thread, read without blocking through
/// `qt_stream_read`. Created by `qt_stream_start`; `qt_free` cancels it, waits for its thread
/// (at most one frame of compute) and releases it.
/// Threads: one thread at a time may read it (typically the audio thread); any thread may
/// cancel it or ask for its info or result meanwhile. It must not be freed while another
/// thread is still inside a call on it.
pub struct qt_stream {
    _opaque: [u8; 0],
}

// SAFETY: TAG_STREAM is unique and named in tag_name; qt_stream pointers come only from into_raw.
unsafe impl Handle for qt_stream {
    type Value = SpeechStream;
    const TAG: u64 = TAG_STREAM;
    const TYPE_NAME: &'static str = "qt_stream";
}

/// Seconds of audio a stream's ring holds when `qt_stream_start` gets `capacity` 0.
const DEFAULT_STREAM_SECONDS: usize = 2;

fn state_code(state: StreamState) -> i32 {
    match state {
        StreamState::Running => QT_STREAM_RUNNING,
        StreamState::Finished => QT_STREAM_FINISHED,
        StreamState::Cancelled => QT_STREAM_CANCELLED,
        StreamState::Failed => QT_STREAM_FAILED,
    }
}

/// Starts speaking `text` in `voice` on a background thread and returns at once; read the
/// audio with `qt_stream_read` as the engine asks for it.
///
/// - `model`, `voice`, `text`: as for `qt_generate`.
/// - `params`: as for `qt_generate` (NULL: the model's defaults), except that `abort_cb` must
///   be NULL (stop a stream with `qt_stream_cancel`). `output_sample_rate` sets the rate of the
///   samples read (e.g. 48000 for an engine mixing at 48 kHz).
/// - `capacity`: samples the stream's ring holds (80 to 28,800,000; 0: two seconds at the
///   output rate). Allocated here, once. Generation runs faster than real time; when the ring
///   is full the generating thread waits for the reader, never the other way round.
/// - `out_stream`: receives the stream; untouched on failure.
///
/// Errors found before the thread starts (NULLs, handles, UTF-8, params) are returned here;
/// those found by the generation itself (a voice of another model family, an unknown language)
/// end the stream as `QT_STREAM_FAILED`, reported by `qt_stream_result`.
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_stream` (release it with `qt_free`). The
/// stream holds its own references to the model and the voice: they may be freed before it.
/// Threads: any thread.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE`,
/// `QT_STATUS_ABI_MISMATCH`, `QT_STATUS_INVALID_ARGUMENT` (bad params, a capacity out of
/// range, `abort_cb` set), `QT_STATUS_IO` (the thread could not be started).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_stream_start(
    model: *const qt_model,
    voice: *const qt_voice,
    text: *const c_char,
    params: *const qt_gen_params,
    capacity: usize,
    out_stream: *mut *mut qt_stream,
) -> qt_status {
    guard("qt_stream_start", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let model = unsafe { borrow(model, "model") }?.model().clone();
        let voice = unsafe { borrow(voice, "voice") }?.voice().clone();
        let text = unsafe { str_arg(text, "text") }?;
        let out = unsafe { out_arg(out_stream, "out_stream") }?;
        let p = unsafe { read_gen_params(&model, params) }?;
        if p.abort_cb.is_some() {
            return Err(Error::invalid_argument(
                "params->abort_cb must be NULL for a stream: stop it with qt_stream_cancel",
            ));
        }
        let options = unsafe { options_from_params(&model, &p) }?;
        let capacity = if capacity == 0 {
            DEFAULT_STREAM_SECONDS * options.output_sample_rate.unwrap_or(model.info().sample_rate) as usize
        } else {
            capacity
        };
        let stream = SpeechStream::start(&model, &voice, text, &options, capacity)?;
        out.write(into_raw::<qt_stream>(stream));
        Ok(())
    })
}

/// Copies up to `cap` samples that are ready into `out` and returns at once: never blocks,
/// never allocates, makes no system call. Meant for the audio thread: call it from the
/// engine's callback with the callback's buffer, and fill what is missing with silence.
///
/// - `out`: room for `cap` floats (mono, at the stream's sample rate); may be NULL when `cap`
///   is 0 (to poll `*out_ended`).
/// - `out_n`: receives the number of samples copied (0 when none is ready yet).
/// - `out_ended`: receives 1 once nothing will ever come again (the stream stopped and its
///   ring is empty), else 0. `qt_stream_get_info` / `qt_stream_result` say how it ended.
///
/// Threads: one reader at a time; a read while another thread's read is still running is
/// refused with `QT_STATUS_INVALID_ARGUMENT` (nothing read), never waited for.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_NULL_ARGUMENT` (`stream`, `out_n`, `out_ended`, or
/// `out` with `cap` > 0), `QT_STATUS_INVALID_HANDLE` (not a live stream, e.g. freed),
/// `QT_STATUS_INVALID_ARGUMENT` (a second reader); on failure the outputs are untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_stream_read(
    stream: *mut qt_stream,
    out: *mut f32,
    cap: usize,
    out_n: *mut usize,
    out_ended: *mut i32,
) -> qt_status {
    guard("qt_stream_read", || {
        // SAFETY (all): pointers are NULL or valid per the documented contract.
        let stream = unsafe { borrow(stream.cast_const(), "stream") }?;
        let n_out = unsafe { out_arg(out_n, "out_n") }?;
        let ended_out = unsafe { out_arg(out_ended, "out_ended") }?;
        let buf = unsafe { slice_out_arg(out, cap, "out") }?;
        let read = stream.read(buf)?;
        n_out.write(read.samples);
        ended_out.write(i32::from(read.ended));
        Ok(())
    })
}

/// Asks the stream to stop and returns at once; its thread stops within one frame of compute
/// (the state becomes `QT_STREAM_CANCELLED`). Samples already in the ring stay readable.
/// Cancelling a stream that has ended does nothing.
/// Threads: any thread, also while another reads.
/// Returns `QT_STATUS_OK`, `QT_STATUS_NULL_ARGUMENT` or `QT_STATUS_INVALID_HANDLE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_stream_cancel(stream: *mut qt_stream) -> qt_status {
    guard("qt_stream_cancel", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        unsafe { borrow(stream.cast_const(), "stream") }?.cancel();
        Ok(())
    })
}

/// Describes a stream: state, sample rate, how it finished, samples written and read, the
/// time to its first audio.
///
/// - `out_info`: the caller's struct with `struct_size` set to `sizeof(qt_stream_info)`.
///
/// Threads: any thread (it takes a lock: not for the audio thread).
/// Returns `QT_STATUS_OK`, `QT_STATUS_NULL_ARGUMENT`, `QT_STATUS_INVALID_HANDLE` or
/// `QT_STATUS_ABI_MISMATCH`; `*out_info` is untouched on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_stream_get_info(stream: *const qt_stream, out_info: *mut qt_stream_info) -> qt_status {
    guard("qt_stream_get_info", || {
        // SAFETY (both): pointers are NULL or valid per the documented contract.
        let stream = unsafe { borrow(stream, "stream") }?;
        let (out, len) = unsafe { sized_out_arg(out_info, "out_info") }?;
        let info = stream.info();
        let finish = match info.finish {
            Some(FinishReason::Eos) => QT_FINISH_EOS,
            Some(FinishReason::FrameLimit) => QT_FINISH_FRAME_LIMIT,
            _ => 0,
        };
        let value = qt_stream_info {
            struct_size: 0,
            state: state_code(info.state),
            sample_rate: i32::try_from(info.sample_rate).unwrap_or(i32::MAX),
            finish,
            capacity: info.capacity,
            samples_written: info.samples_written,
            samples_read: info.samples_read,
            first_audio_ms: info.first_audio_ms,
        };
        write_sized(out, len, value);
        Ok(())
    })
}

/// How the stream's generation went, as a status: `QT_STATUS_OK` while it runs or after it
/// finished normally, `QT_STATUS_ABORTED` after `qt_stream_cancel` stopped it, and after a
/// failure the failure's own status with its message in `qt_last_error()` (for instance
/// `QT_STATUS_VOICE_MISMATCH` for a voice of another model family).
/// Threads: any thread (it takes a lock: not for the audio thread).
/// Returns those, or `QT_STATUS_NULL_ARGUMENT` / `QT_STATUS_INVALID_HANDLE` for `stream`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_stream_result(stream: *const qt_stream) -> qt_status {
    guard_status("qt_stream_result", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let stream = unsafe { borrow(stream, "stream") }?;
        match stream.state() {
            StreamState::Failed => {
                let err = stream.error().unwrap_or_else(|| Error::invalid_argument("the stream failed"));
                debug_assert!(status_for_kind(err.kind()) < 0);
                Err(err.context("the stream's generation"))
            }
            StreamState::Cancelled => Ok(super::status::QT_STATUS_ABORTED),
            _ => Ok(super::status::QT_STATUS_OK),
        }
    })
}

// The thread contract in qt_stream's doc, checked: the stream is shared with its worker.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<SpeechStream>();
};
