//! Voices and generation through the C ABI, driven from Rust the way a C caller would: the
//! golden waveform end to end, streaming and aborting through callbacks, voice persistence
//! with the two-call pattern, and every kind of bad input (NULLs, struct sizes, enum values,
//! invalid UTF-8, foreign and freed objects, voices of another model). Every failure must come
//! back as its own status with a message naming the culprit, and leave out-parameters alone.

mod common;
mod support;

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Golden, assert_close, cases, checkpoint_dir, fixtures_dir};
use qwentts::ffi::*;
use support::TempDir;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn last_error() -> String {
    unsafe { CStr::from_ptr(qt_last_error()) }.to_str().unwrap().to_owned()
}

fn status_str(status: qt_status) -> String {
    unsafe { CStr::from_ptr(qt_status_str(status)) }.to_str().unwrap().to_owned()
}

/// Asserts `got == want` and that the last error contains every fragment; returns the message.
#[track_caller]
fn expect(got: qt_status, want: qt_status, fragments: &[&str]) -> String {
    let message = last_error();
    assert_eq!(got, want, "got {}, want {}; last error: {message}", status_str(got), status_str(want));
    for fragment in fragments {
        assert!(message.contains(fragment), "last error lacks `{fragment}`: {message}");
    }
    if want >= QT_STATUS_OK {
        assert_eq!(message, "", "a call that did not fail leaves no last error");
    } else {
        assert!(!message.is_empty(), "a failed call must explain itself");
    }
    message
}

fn c_path(path: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// Owns a library object and frees it on drop (checking that the free was accepted).
struct Owned<T>(*mut T);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        unsafe { qt_free(self.0.cast()) };
        if !std::thread::panicking() {
            assert_eq!(last_error(), "", "qt_free refused an object it returned");
        }
    }
}

fn load(name: &str) -> Owned<qt_model> {
    let dir = c_path(&checkpoint_dir(name));
    let mut model = ptr::null_mut();
    expect(unsafe { qt_load(dir.as_ptr(), ptr::null(), &mut model) }, QT_STATUS_OK, &[]);
    Owned(model)
}

fn golden_embedding() -> Vec<f32> {
    Golden::open("speaker_base").f32("spk_embedding").data
}

fn embedding_voice(model: *const qt_model) -> Owned<qt_voice> {
    let e = golden_embedding();
    let mut voice = ptr::null_mut();
    expect(unsafe { qt_voice_from_embedding(model, e.as_ptr(), e.len(), &mut voice) }, QT_STATUS_OK, &[]);
    Owned(voice)
}

fn gen_defaults(model: *const qt_model) -> qt_gen_params {
    let mut p = std::mem::MaybeUninit::<qt_gen_params>::zeroed();
    expect(unsafe { qt_gen_params_default(model, p.as_mut_ptr(), size_of::<qt_gen_params>()) }, QT_STATUS_OK, &[]);
    unsafe { p.assume_init() }
}

/// Greedy params of the golden case `xvec_en` (max_new_tokens 24 → 23 frames).
fn greedy(model: *const qt_model, language: &CStr) -> qt_gen_params {
    let mut p = gen_defaults(model);
    p.do_sample = 0;
    p.sub_do_sample = 0;
    p.language = language.as_ptr();
    p.max_frames = 23;
    p
}

fn golden_text() -> CString {
    CString::new(cases()["greedy_base"]["xvec_en"]["text"].as_str().unwrap()).unwrap()
}

fn audio_info(audio: *const qt_audio) -> qt_audio_info {
    let mut info = std::mem::MaybeUninit::<qt_audio_info>::zeroed();
    unsafe { (*info.as_mut_ptr()).struct_size = size_of::<qt_audio_info>() as u32 };
    expect(unsafe { qt_audio_get_info(audio, info.as_mut_ptr()) }, QT_STATUS_OK, &[]);
    unsafe { info.assume_init() }
}

fn samples(audio: *const qt_audio) -> Vec<f32> {
    let (mut p, mut n) = (ptr::null(), 0usize);
    expect(unsafe { qt_audio_samples(audio, &mut p, &mut n) }, QT_STATUS_OK, &[]);
    if n == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(p, n) }.to_vec() }
}

fn voice_info(voice: *const qt_voice) -> qt_voice_info {
    let mut info = std::mem::MaybeUninit::<qt_voice_info>::zeroed();
    unsafe { (*info.as_mut_ptr()).struct_size = size_of::<qt_voice_info>() as u32 };
    expect(unsafe { qt_voice_get_info(voice, info.as_mut_ptr()) }, QT_STATUS_OK, &[]);
    unsafe { info.assume_init() }
}

/// What a chunk callback saw.
#[derive(Default)]
struct Recorder {
    chunks: Vec<(qt_chunk, Vec<f32>)>,
    /// Return QT_STOP once this many chunks were seen.
    stop_after: Option<usize>,
    /// Return this instead of QT_CONTINUE / QT_STOP.
    bogus: Option<i32>,
}

unsafe extern "C" fn record(chunk: *const qt_chunk, user_data: *mut c_void) -> i32 {
    let rec = unsafe { &mut *(user_data as *mut Recorder) };
    let c = unsafe { *chunk };
    let s = if c.n_samples == 0 {
        Vec::new()
    } else {
        unsafe { std::slice::from_raw_parts(c.samples, c.n_samples) }.to_vec()
    };
    rec.chunks.push((c, s));
    if let Some(v) = rec.bogus {
        return v;
    }
    if rec.stop_after.is_some_and(|n| rec.chunks.len() >= n) { QT_STOP } else { QT_CONTINUE }
}

/// Checks the chunk sequence (contiguous, counted, one final `is_last`) and returns the
/// concatenated samples.
fn concatenated(rec: &Recorder, rate: i32, finished: bool) -> Vec<f32> {
    let mut all = Vec::new();
    let mut frames = 0;
    for (i, (c, s)) in rec.chunks.iter().enumerate() {
        assert_eq!(c.struct_size as usize, size_of::<qt_chunk>());
        assert_eq!(c.index as usize, i);
        assert_eq!(c.first_sample as usize, all.len(), "chunk {i} starts where the previous ended");
        assert_eq!(c.sample_rate, rate);
        assert_eq!(c.first_frame, frames, "chunk {i} frame accounting");
        frames += c.n_frames;
        assert_eq!(c.is_last, i32::from(finished && i + 1 == rec.chunks.len()), "is_last on chunk {i}");
        assert_eq!(c.samples.is_null(), c.n_samples == 0);
        all.extend_from_slice(s);
    }
    all
}

/// Counts polls; says stop at poll `stop_at`.
struct AbortAfter {
    polls: usize,
    stop_at: usize,
    value: i32,
}

unsafe extern "C" fn abort_after(user_data: *mut c_void) -> i32 {
    let a = unsafe { &mut *(user_data as *mut AbortAfter) };
    a.polls += 1;
    if a.polls >= a.stop_at { a.value } else { QT_CONTINUE }
}

// ---------------------------------------------------------------------------------------------
// generation
// ---------------------------------------------------------------------------------------------

/// The acceptance case: tiny-base, greedy, English, 23 frames at most, the golden x-vector:
/// the C ABI returns the official waveform, and the streamed chunks are that waveform.
#[test]
fn greedy_xvector_generation_matches_the_official_waveform() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let p = greedy(model.0, c"English");
    let text = golden_text();
    let mut rec = Recorder::default();
    let mut audio = ptr::null_mut();
    let status =
        unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, Some(record), (&raw mut rec).cast(), &mut audio) };
    expect(status, QT_STATUS_OK, &[]);
    let audio = Owned(audio);

    let golden = Golden::open("greedy_base");
    let want = golden.f32("xvec_en.wave").data;
    let got = samples(audio.0);
    let d = assert_close("xvec_en wave through the C ABI", &got, &want, 1e-4);
    eprintln!("xvec_en through qt_generate: {d}");

    let info = audio_info(audio.0);
    let case = &cases()["greedy_base"]["xvec_en"];
    assert_eq!(info.struct_size as usize, size_of::<qt_audio_info>());
    assert_eq!(info.n_frames as u64, case["n_frames"].as_u64().unwrap());
    assert_eq!(info.finish, QT_FINISH_EOS, "the golden case ends with EOS");
    assert_eq!((info.sample_rate, info.channels, info.chunk_offset), (24000, 1, 0));
    assert_eq!(info.n_samples, got.len());
    assert_eq!(info.samples, samples_ptr(audio.0));
    assert!(info.total_ms > 0.0 && info.prefill_ms > 0.0 && info.total_ms >= info.prefill_ms);
    assert!(info.first_chunk_ms > 0.0 && info.rtf > 0.0, "{info:?}");

    assert!(rec.chunks.len() >= 2, "18 frames at the default 4 per chunk make several chunks");
    assert_eq!(concatenated(&rec, 24000, true), got, "the chunks are the returned audio");
    assert_eq!(rec.chunks.iter().map(|(c, _)| c.n_frames).sum::<i32>(), info.n_frames);
}

fn samples_ptr(audio: *const qt_audio) -> *const f32 {
    let (mut p, mut n) = (ptr::null(), 0usize);
    expect(unsafe { qt_audio_samples(audio, &mut p, &mut n) }, QT_STATUS_OK, &[]);
    p
}

#[test]
fn streaming_only_chunk_sizes_and_output_rates() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let text = golden_text();
    let want = Golden::open("greedy_base").f32("xvec_en.wave").data;

    // Streaming only (out_audio NULL), one frame per chunk: the chunks alone are the audio.
    let mut p = greedy(model.0, c"english");
    p.chunk_frames = 1;
    let mut rec = Recorder::default();
    let status = unsafe {
        qt_generate(model.0, voice.0, text.as_ptr(), &p, Some(record), (&raw mut rec).cast(), ptr::null_mut())
    };
    expect(status, QT_STATUS_OK, &[]);
    let streamed = concatenated(&rec, 24000, true);
    assert_close("xvec_en streamed in 1-frame chunks", &streamed, &want, 1e-4);
    assert!(rec.chunks.iter().all(|(c, _)| c.n_frames <= 1));

    // Collect only (no callback), at 48 kHz.
    let mut p = greedy(model.0, c"English");
    p.output_sample_rate = 48000;
    let mut audio = ptr::null_mut();
    let status = unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
    expect(status, QT_STATUS_OK, &[]);
    let audio = Owned(audio);
    let info = audio_info(audio.0);
    assert_eq!(info.sample_rate, 48000);
    assert_eq!(info.n_samples, 2 * want.len(), "twice the samples at twice the rate");

    // Neither: allowed (the work is done and dropped); NULL params = the model's defaults.
    let status =
        unsafe { qt_generate(model.0, voice.0, c"Hi.".as_ptr(), ptr::null(), None, ptr::null_mut(), ptr::null_mut()) };
    expect(status, QT_STATUS_OK, &[]);
}

#[test]
fn the_frame_limit_is_reported_as_its_own_finish_reason() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let mut p = greedy(model.0, c"English");
    p.max_frames = 5;
    let mut audio = ptr::null_mut();
    let status =
        unsafe { qt_generate(model.0, voice.0, golden_text().as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
    expect(status, QT_STATUS_OK, &[]);
    let audio = Owned(audio);
    let info = audio_info(audio.0);
    assert_eq!((info.finish, info.n_frames, info.n_samples), (QT_FINISH_FRAME_LIMIT, 5, 5 * 1920));
}

#[test]
fn seeded_sampling_is_reproducible_through_the_c_abi() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let run = |seed: u64| {
        let mut p = gen_defaults(model.0);
        p.seed = seed;
        p.max_frames = 8;
        let mut audio = ptr::null_mut();
        let status =
            unsafe { qt_generate(model.0, voice.0, golden_text().as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
        expect(status, QT_STATUS_OK, &[]);
        let audio = Owned(audio);
        samples(audio.0)
    };
    let a = run(1234);
    assert_eq!(run(1234), a, "same seed, same audio");
    assert_ne!(run(1235), a, "another seed, other audio");
}

#[test]
fn callbacks_abort_with_the_aborted_status_and_keep_the_audio() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let text = golden_text();

    // The chunk callback says stop after the first chunk (of 2 frames).
    let mut p = greedy(model.0, c"English");
    p.chunk_frames = 2;
    p.first_chunk_frames = 2;
    let mut rec = Recorder { stop_after: Some(1), ..Default::default() };
    let mut audio = ptr::null_mut();
    let status =
        unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, Some(record), (&raw mut rec).cast(), &mut audio) };
    expect(status, QT_STATUS_ABORTED, &[]);
    let audio = Owned(audio);
    let info = audio_info(audio.0);
    assert_eq!(info.finish, QT_FINISH_ABORTED);
    assert_eq!(rec.chunks.len(), 1, "nothing is delivered after QT_STOP");
    assert_eq!(rec.chunks[0].0.is_last, 0, "an aborted call has no last chunk");
    assert_eq!(info.n_frames, 2, "the result is the delivered chunk: {info:?}");
    assert_eq!(&samples(audio.0)[..rec.chunks[0].1.len()], &rec.chunks[0].1[..], "the audio starts with the chunk");

    // The abort hook, polled before the prefill, after each of its L layers (one pass: the
    // calls above left this voice's prefix in the cache) and after every frame: stopping at
    // poll L + 4 keeps frames 1..3; stopping at poll 1 (before the prefill) or 2 (inside it)
    // keeps none.
    let layers = {
        let mut info = std::mem::MaybeUninit::<qt_model_info>::zeroed();
        unsafe { (*info.as_mut_ptr()).struct_size = size_of::<qt_model_info>() as u32 };
        expect(unsafe { qt_model_get_info(model.0, info.as_mut_ptr()) }, QT_STATUS_OK, &[]);
        unsafe { info.assume_init() }.talker_layers as usize
    };
    for (stop_at, frames) in [(layers + 4, 3usize), (1, 0), (2, 0)] {
        let mut hook = AbortAfter { polls: 0, stop_at, value: QT_STOP };
        let mut p = greedy(model.0, c"English");
        p.abort_cb = Some(abort_after);
        p.abort_user_data = (&raw mut hook).cast();
        let mut audio = ptr::null_mut();
        let status = unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
        expect(status, QT_STATUS_ABORTED, &[]);
        let audio = Owned(audio);
        let info = audio_info(audio.0);
        assert_eq!((info.finish, info.n_frames, hook.polls), (QT_FINISH_ABORTED, frames as i32, stop_at), "stop at poll {stop_at}");
        assert_eq!(info.n_samples, frames * 1920, "the frames made before the stop are decoded");
    }

    // A callback that returns neither constant: an error, and no audio.
    let sentinel = ptr::dangling_mut::<qt_audio>();
    let mut audio = sentinel;
    let mut rec = Recorder { bogus: Some(7), ..Default::default() };
    let mut p = greedy(model.0, c"English");
    let status =
        unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, Some(record), (&raw mut rec).cast(), &mut audio) };
    expect(status, QT_STATUS_INVALID_ARGUMENT, &["qt_generate", "on_chunk", "returned 7", "QT_CONTINUE"]);
    assert_eq!(audio, sentinel);
    let mut hook = AbortAfter { polls: 0, stop_at: 1, value: -1 };
    p.abort_cb = Some(abort_after);
    p.abort_user_data = (&raw mut hook).cast();
    let status = unsafe { qt_generate(model.0, voice.0, text.as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
    expect(status, QT_STATUS_INVALID_ARGUMENT, &["abort_cb", "returned -1"]);
    assert_eq!((audio, hook.polls), (sentinel, 1));
}

/// A flag another thread sets: the documented way to cancel from outside.
#[test]
fn another_thread_cancels_through_the_abort_hook() {
    static CANCEL: AtomicBool = AtomicBool::new(false);
    unsafe extern "C" fn cancelled(_: *mut c_void) -> i32 {
        if CANCEL.load(Ordering::SeqCst) { QT_STOP } else { QT_CONTINUE }
    }
    unsafe extern "C" fn cancel_on_first_chunk(_: *const qt_chunk, _: *mut c_void) -> i32 {
        std::thread::spawn(|| CANCEL.store(true, Ordering::SeqCst)).join().unwrap();
        QT_CONTINUE
    }
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let mut p = greedy(model.0, c"English");
    p.chunk_frames = 1;
    p.abort_cb = Some(cancelled);
    let mut audio = ptr::null_mut();
    let status = unsafe {
        qt_generate(
            model.0,
            voice.0,
            golden_text().as_ptr(),
            &p,
            Some(cancel_on_first_chunk),
            ptr::null_mut(),
            &mut audio,
        )
    };
    expect(status, QT_STATUS_ABORTED, &[]);
    let audio = Owned(audio);
    // Stopped at the poll after the frame that followed the first chunk; that second frame was
    // never delivered, so the result holds the first alone (what the caller heard).
    let info = audio_info(audio.0);
    assert_eq!((info.n_frames, info.n_samples), (1, 1920));
}

#[test]
fn generate_rejects_bad_arguments_and_leaves_out_audio_alone() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let text = golden_text();
    let sentinel = ptr::dangling_mut::<qt_audio>();
    let mut out = sentinel;
    let good = greedy(model.0, c"English");
    let run =
        |model: *const qt_model,
         voice: *const qt_voice,
         text: *const c_char,
         p: *const qt_gen_params,
         out: &mut *mut qt_audio| unsafe { qt_generate(model, voice, text, p, None, ptr::null_mut(), out) };

    expect(
        run(ptr::null(), voice.0, text.as_ptr(), &good, &mut out),
        QT_STATUS_NULL_ARGUMENT,
        &["qt_generate", "`model` is NULL"],
    );
    expect(run(model.0, ptr::null(), text.as_ptr(), &good, &mut out), QT_STATUS_NULL_ARGUMENT, &["`voice` is NULL"]);
    expect(run(model.0, voice.0, ptr::null(), &good, &mut out), QT_STATUS_NULL_ARGUMENT, &["`text` is NULL"]);
    let bad_utf8 = c"caf\xe9 au lait";
    expect(
        run(model.0, voice.0, bad_utf8.as_ptr(), &good, &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["`text` is not valid UTF-8", "0xe9 at offset 3"],
    );

    // Objects of the wrong type. (A freed one is caught only while its memory is not reused,
    // and reading it is undefined behaviour; double frees are tested below through qt_free.)
    expect(
        run(voice.0.cast(), voice.0, text.as_ptr(), &good, &mut out),
        QT_STATUS_INVALID_HANDLE,
        &["`model`", "is a qt_voice"],
    );
    expect(
        run(model.0, model.0.cast(), text.as_ptr(), &good, &mut out),
        QT_STATUS_INVALID_HANDLE,
        &["`voice`", "is a qt_model"],
    );
    let fake = [0x5a5a_5a5a_5a5a_5a5au64; 8];
    expect(
        run(model.0, fake.as_ptr().cast(), text.as_ptr(), &good, &mut out),
        QT_STATUS_INVALID_HANDLE,
        &["not an object returned by this library"],
    );

    // Struct sizes.
    for size in [0u32, 4, 8] {
        let p = qt_gen_params { struct_size: size, ..good };
        expect(
            run(model.0, voice.0, text.as_ptr(), &p, &mut out),
            QT_STATUS_ABI_MISMATCH,
            &["`params`->struct_size", "qt_gen_params", &format!("is {size}")],
        );
    }

    // Field values.
    let cases: Vec<(qt_gen_params, &str)> = vec![
        (qt_gen_params { do_sample: 2, ..good }, "do_sample is 2"),
        (qt_gen_params { sub_do_sample: -1, ..good }, "sub_do_sample is -1"),
        (qt_gen_params { top_k: -3, ..good }, "top_k is -3"),
        (qt_gen_params { sub_top_k: i32::MIN, ..good }, "sub_top_k is"),
        (qt_gen_params { max_frames: -1, ..good }, "max_frames is -1"),
        (qt_gen_params { chunk_frames: -2, ..good }, "chunk_frames is -2"),
        (qt_gen_params { first_chunk_frames: -1, ..good }, "first_chunk_frames is -1"),
        (qt_gen_params { reserved: 3, ..good }, "reserved is 3"),
        (qt_gen_params { output_sample_rate: -48000, ..good }, "output_sample_rate is -48000"),
        (qt_gen_params { output_sample_rate: 1_000_000, ..good }, "output_sample_rate 1000000"),
        (qt_gen_params { non_streaming_mode: 2, ..good }, "non_streaming_mode is 2"),
        (qt_gen_params { do_sample: 1, temperature: 0.0, ..good }, "temperature is 0"),
        (qt_gen_params { do_sample: 1, top_p: 0.0, ..good }, "top_p is 0"),
        // The code predictor's fields are named as in the header (issue 11, item 7).
        (qt_gen_params { sub_do_sample: 1, sub_top_p: 1.5, ..good }, "sub_top_p is 1.5"),
        (qt_gen_params { sub_do_sample: 1, sub_temperature: -1.0, ..good }, "sub_temperature is -1"),
        (qt_gen_params { repetition_penalty: f32::NAN, ..good }, "repetition_penalty"),
        (qt_gen_params { language: c"klingon".as_ptr(), ..good }, "unsupported language \"klingon\""),
        (qt_gen_params { language: c"\xff".as_ptr(), ..good }, "`params->language` is not valid UTF-8"),
        (qt_gen_params { instruct: c"\xc3".as_ptr(), ..good }, "`params->instruct` is not valid UTF-8"),
    ];
    for (p, fragment) in cases {
        expect(run(model.0, voice.0, text.as_ptr(), &p, &mut out), QT_STATUS_INVALID_ARGUMENT, &[fragment]);
    }
    assert_eq!(out, sentinel, "out_audio written on failure");

    // A 100 KB language name is quoted in part, with its length, not echoed whole.
    let huge = std::ffi::CString::new("x".repeat(100_000)).unwrap();
    let p = qt_gen_params { language: huge.as_ptr(), ..good };
    expect(run(model.0, voice.0, text.as_ptr(), &p, &mut out), QT_STATUS_INVALID_ARGUMENT, &["(100000 bytes)"]);
    let message = unsafe { CStr::from_ptr(qt_last_error()) }.to_str().unwrap().to_owned();
    assert!(message.len() < 1000, "{} bytes of message", message.len());
}

/// Chunk sizes through the C ABI: the defaults ramp up (1, 2, then 4 frames); a caller built
/// against the first `qt_gen_params` (no `first_chunk_frames`) keeps chunks of `chunk_frames`.
#[test]
fn first_chunk_frames_ramps_and_v1_callers_keep_their_chunks() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let text = golden_text();
    let chunk_frames = |p: &qt_gen_params| -> Vec<i32> {
        let mut rec = Recorder::default();
        let status = unsafe {
            qt_generate(model.0, voice.0, text.as_ptr(), p, Some(record), (&raw mut rec).cast(), ptr::null_mut())
        };
        expect(status, QT_STATUS_OK, &[]);
        concatenated(&rec, 24000, true);
        rec.chunks.iter().map(|(c, _)| c.n_frames).collect()
    };
    // The golden case makes 18 frames (EOS); the end marker carries none.
    let p = greedy(model.0, c"English");
    assert_eq!(chunk_frames(&p), [1, 2, 4, 4, 4, 3]);
    // 0 means the default, like the other counts; no ramp is a first chunk of chunk_frames.
    assert_eq!(chunk_frames(&qt_gen_params { first_chunk_frames: 0, ..p }), [1, 2, 4, 4, 4, 3]);
    assert_eq!(chunk_frames(&qt_gen_params { first_chunk_frames: 4, ..p }), [4, 4, 4, 4, 2]);
    assert_eq!(chunk_frames(&qt_gen_params { first_chunk_frames: 3, chunk_frames: 8, ..p }), [3, 6, 8, 1]);
    // The v1 layout ends after abort_user_data: whatever lies past it is not read.
    let v1 = (std::mem::offset_of!(qt_gen_params, abort_user_data) + size_of::<usize>()) as u32;
    assert_eq!(chunk_frames(&qt_gen_params { struct_size: v1, first_chunk_frames: 1, reserved: 99, ..p }), [4, 4, 4, 4, 2]);
    // Sizes between the layouts read as the older one.
    assert_eq!(chunk_frames(&qt_gen_params { struct_size: v1 + 4, first_chunk_frames: 1, ..p }), [4, 4, 4, 4, 2]);
}

#[test]
fn gen_params_default_reports_the_model_defaults_and_respects_size() {
    let model = load("tiny-base");
    let p = gen_defaults(model.0);
    assert_eq!(p.struct_size as usize, size_of::<qt_gen_params>());
    assert_eq!(unsafe { CStr::from_ptr(p.language) }, c"auto");
    assert!(p.instruct.is_null() && p.abort_cb.is_none() && p.abort_user_data.is_null());
    let rust = qwentts::GenerateOptions::defaults(
        &qwentts::Model::load(checkpoint_dir("tiny-base"), &Default::default()).unwrap(),
    );
    assert_eq!(
        (p.do_sample, p.temperature, p.top_k, p.top_p),
        (i32::from(rust.talker.do_sample), rust.talker.temperature, rust.talker.top_k as i32, rust.talker.top_p)
    );
    assert_eq!(
        (p.sub_do_sample, p.sub_temperature, p.sub_top_k, p.sub_top_p),
        (
            i32::from(rust.code_predictor.do_sample),
            rust.code_predictor.temperature,
            rust.code_predictor.top_k as i32,
            rust.code_predictor.top_p
        )
    );
    assert_eq!(p.repetition_penalty, rust.repetition_penalty);
    assert_eq!(
        (p.max_frames, p.chunk_frames, p.seed, p.output_sample_rate, p.non_streaming_mode),
        (0, rust.chunk_frames as i32, QT_SEED_RANDOM, 0, QT_TEXT_FEED_DEFAULT)
    );
    assert_eq!((p.first_chunk_frames, p.reserved), (1, 0));
    assert_eq!(rust.first_chunk_frames, Some(1));

    // Without a model: the official defaults (the tiny fixture keeps them).
    let mut builtin = std::mem::MaybeUninit::<qt_gen_params>::zeroed();
    expect(
        unsafe { qt_gen_params_default(ptr::null(), builtin.as_mut_ptr(), size_of::<qt_gen_params>()) },
        QT_STATUS_OK,
        &[],
    );
    let builtin = unsafe { builtin.assume_init() };
    assert_eq!((builtin.do_sample, builtin.top_k, builtin.temperature), (1, 50, 0.9));

    // A newer caller's bigger struct: our layout written, the rest untouched.
    #[repr(C)]
    struct Newer {
        p: qt_gen_params,
        future: [u8; 24],
    }
    let mut newer = std::mem::MaybeUninit::<Newer>::zeroed();
    unsafe { (*newer.as_mut_ptr()).future = [0xcd; 24] };
    expect(unsafe { qt_gen_params_default(model.0, newer.as_mut_ptr().cast(), size_of::<Newer>()) }, QT_STATUS_OK, &[]);
    let newer = unsafe { newer.assume_init() };
    assert_eq!(newer.p.struct_size as usize, size_of::<qt_gen_params>());
    assert!(newer.future.iter().all(|&b| b == 0xcd));

    // An older caller's v1 struct: v1's bytes written, struct_size says so, nothing past them.
    let v1 = std::mem::offset_of!(qt_gen_params, abort_user_data) + size_of::<usize>();
    let mut old = qt_gen_params { first_chunk_frames: 77, reserved: 78, ..gen_defaults(model.0) };
    old.top_k = 5;
    expect(unsafe { qt_gen_params_default(model.0, &mut old, v1) }, QT_STATUS_OK, &[]);
    assert_eq!((old.struct_size as usize, old.top_k), (v1, 50));
    assert_eq!((old.first_chunk_frames, old.reserved), (77, 78), "bytes past the caller's v1 struct written");

    // Too small, NULL, not a model: refused, nothing written.
    let mut small = gen_defaults(model.0);
    small.top_k = 77;
    expect(
        unsafe { qt_gen_params_default(model.0, &mut small, 16) },
        QT_STATUS_ABI_MISMATCH,
        &["`size` (qt_gen_params) is 16"],
    );
    assert_eq!(small.top_k, 77);
    expect(
        unsafe { qt_gen_params_default(model.0, ptr::null_mut(), size_of::<qt_gen_params>()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out`"],
    );
    let voice = embedding_voice(model.0);
    expect(
        unsafe { qt_gen_params_default(voice.0.cast(), &mut small, size_of::<qt_gen_params>()) },
        QT_STATUS_INVALID_HANDLE,
        &["`model`"],
    );
    assert_eq!(small.top_k, 77);
}

// ---------------------------------------------------------------------------------------------
// voices
// ---------------------------------------------------------------------------------------------

#[test]
fn cloning_from_a_file_and_from_pcm_gives_the_same_voice() {
    let model = load("tiny-base");
    let wav = fixtures_dir().join("audio/ref_24k.wav");
    let transcript = std::fs::read_to_string(fixtures_dir().join("audio/ref_24k.txt")).unwrap();
    let transcript = CString::new(transcript.trim()).unwrap();

    let mut from_file = ptr::null_mut();
    let status = unsafe {
        qt_clone_voice_from_file(model.0, c_path(&wav).as_ptr(), transcript.as_ptr(), ptr::null(), &mut from_file)
    };
    expect(status, QT_STATUS_OK, &[]);
    let from_file = Owned(from_file);
    let info = voice_info(from_file.0);
    assert_eq!((info.kind, info.embedding_dim, info.ref_frames), (QT_VOICE_ICL, 32, 39));
    assert_eq!(unsafe { CStr::from_ptr(info.ref_text) }, transcript.as_c_str());
    assert!(info.speaker.is_null());

    // The same recording as float PCM, duplicated to stereo.
    let mut reader = hound::WavReader::open(&wav).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 24000, 16));
    let mono: Vec<f32> = reader.samples::<i16>().map(|s| f32::from(s.unwrap()) / 32768.0).collect();
    let stereo: Vec<f32> = mono.iter().flat_map(|&x| [x, x]).collect();
    let mut from_pcm = ptr::null_mut();
    let status = unsafe {
        qt_clone_voice(
            model.0,
            stereo.as_ptr(),
            stereo.len(),
            2,
            24000,
            transcript.as_ptr(),
            ptr::null(),
            &mut from_pcm,
        )
    };
    expect(status, QT_STATUS_OK, &[]);
    let from_pcm = Owned(from_pcm);
    assert_eq!(embedding(from_pcm.0), embedding(from_file.0));

    // x-vector only: no transcript, or the mode says so.
    let mut params = clone_defaults();
    params.mode = QT_CLONE_XVECTOR;
    let mut xvec = ptr::null_mut();
    let status = unsafe {
        qt_clone_voice(model.0, mono.as_ptr(), mono.len(), 1, 24000, transcript.as_ptr(), &params, &mut xvec)
    };
    expect(status, QT_STATUS_OK, &[]);
    let xvec = Owned(xvec);
    let info = voice_info(xvec.0);
    assert_eq!((info.kind, info.ref_frames), (QT_VOICE_XVECTOR, 0));
    assert!(info.ref_text.is_null());
    assert_eq!(embedding(xvec.0), embedding(from_file.0));
}

fn clone_defaults() -> qt_clone_params {
    let mut p = qt_clone_params { struct_size: 0, mode: 99, min_seconds: 0.0, max_seconds: 0.0 };
    expect(unsafe { qt_clone_params_default(&mut p, size_of::<qt_clone_params>()) }, QT_STATUS_OK, &[]);
    assert_eq!(p, qt_clone_params { struct_size: 16, mode: QT_CLONE_AUTO, min_seconds: 1.0, max_seconds: 30.0 });
    p
}

fn embedding(voice: *const qt_voice) -> Vec<f32> {
    let mut dim = 0usize;
    // Messages name the parameters as the header spells them (`out`, `cap`, `out_dim`).
    expect(
        unsafe { qt_voice_embedding(voice, ptr::null_mut(), 0, &mut dim) },
        QT_STATUS_BUFFER_TOO_SMALL,
        &["needs", "`out` is NULL", "*out_dim holds"],
    );
    expect(
        unsafe { qt_voice_embedding(voice, ptr::null_mut(), 0, ptr::null_mut()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_dim` is NULL"],
    );
    let mut out = vec![f32::NAN; dim];
    let mut written = 0usize;
    expect(unsafe { qt_voice_embedding(voice, out.as_mut_ptr(), out.len(), &mut written) }, QT_STATUS_OK, &[]);
    assert_eq!(written, dim);
    out
}

#[test]
fn clone_rejects_bad_arguments() {
    let model = load("tiny-base");
    let sentinel = ptr::dangling_mut::<qt_voice>();
    let mut out = sentinel;
    let tone: Vec<f32> = (0..48000).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
    let clone =
        |samples: *const f32,
         n: usize,
         ch: i32,
         sr: i32,
         text: *const c_char,
         p: *const qt_clone_params,
         out: *mut *mut qt_voice| unsafe { qt_clone_voice(model.0, samples, n, ch, sr, text, p, out) };
    expect(
        clone(ptr::null(), 10, 1, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_NULL_ARGUMENT,
        &["qt_clone_voice", "`samples` is NULL"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), 1, 24000, ptr::null(), ptr::null(), ptr::null_mut()),
        QT_STATUS_NULL_ARGUMENT,
        &["`out_voice`"],
    );
    expect(
        clone(tone.as_ptr(), 0, 1, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["empty"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), 0, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["channels is 0"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), -1, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["channels is -1"],
    );
    expect(
        clone(tone.as_ptr(), 47999, 2, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["not a whole number of 2-channel frames"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), 1, -24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["sample_rate is -24000"],
    );
    expect(
        clone(tone.as_ptr(), 2400, 1, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["short"],
    );
    let silence = vec![0.0f32; 48000];
    expect(
        clone(silence.as_ptr(), silence.len(), 1, 24000, ptr::null(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["silent"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), 1, 24000, c"\x80bad".as_ptr(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["`ref_text` is not valid UTF-8"],
    );
    expect(
        clone(tone.as_ptr(), tone.len(), 1, 24000, c"  ".as_ptr(), ptr::null(), &mut out),
        QT_STATUS_INVALID_ARGUMENT,
        &["ref_text is empty"],
    );

    let good = clone_defaults();
    let bad: Vec<(qt_clone_params, &str)> = vec![
        (qt_clone_params { mode: 3, ..good }, "clone mode 3 is not valid"),
        (qt_clone_params { mode: QT_CLONE_ICL, ..good }, "QT_CLONE_ICL needs `ref_text`"),
        (qt_clone_params { min_seconds: 0.0, ..good }, "min_seconds is 0"),
        (qt_clone_params { max_seconds: f32::INFINITY, ..good }, "max_seconds is inf"),
        (qt_clone_params { min_seconds: 5.0, max_seconds: 2.0, ..good }, "greater than max_seconds"),
        (qt_clone_params { max_seconds: 1.5, ..good }, "long"),
    ];
    for (p, fragment) in bad {
        expect(
            clone(tone.as_ptr(), tone.len(), 1, 24000, ptr::null(), &p, &mut out),
            QT_STATUS_INVALID_ARGUMENT,
            &[fragment],
        );
    }
    let old = qt_clone_params { struct_size: 4, ..good };
    expect(
        clone(tone.as_ptr(), tone.len(), 1, 24000, ptr::null(), &old, &mut out),
        QT_STATUS_ABI_MISMATCH,
        &["qt_clone_params"],
    );
    expect(unsafe { qt_clone_params_default(&mut qt_clone_params { ..good }, 8) }, QT_STATUS_ABI_MISMATCH, &["is 8"]);

    // Shorter references are fine when the caller lowers the floor.
    let p = qt_clone_params { min_seconds: 0.05, ..good };
    expect(clone(tone.as_ptr(), 2400, 1, 24000, ptr::null(), &p, &mut out), QT_STATUS_OK, &[]);
    drop(Owned(out));
    let mut out = sentinel;

    // Files.
    let missing = c"/nonexistent/ref.wav";
    expect(
        unsafe { qt_clone_voice_from_file(model.0, missing.as_ptr(), ptr::null(), ptr::null(), &mut out) },
        QT_STATUS_NOT_FOUND,
        &["qt_clone_voice_from_file", "/nonexistent/ref.wav"],
    );
    expect(
        unsafe { qt_clone_voice_from_file(model.0, c"".as_ptr(), ptr::null(), ptr::null(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["`path` is an empty path"],
    );
    let not_audio = c_path(&fixtures_dir().join("audio/ref_24k.txt"));
    expect(
        unsafe { qt_clone_voice_from_file(model.0, not_audio.as_ptr(), ptr::null(), ptr::null(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["ref_24k.txt"],
    );

    // A model that cannot clone.
    let custom = load("tiny-customvoice");
    let status =
        unsafe { qt_clone_voice(custom.0, tone.as_ptr(), tone.len(), 1, 24000, ptr::null(), ptr::null(), &mut out) };
    expect(status, QT_STATUS_UNSUPPORTED, &["Base"]);
    assert_eq!(out, sentinel, "out_voice written on failure");
}

#[test]
fn voices_round_trip_through_bytes_and_files_with_the_two_call_pattern() {
    let model = load("tiny-base");
    let wav = c_path(&fixtures_dir().join("audio/ref_24k.wav"));
    let mut voice = ptr::null_mut();
    let status = unsafe {
        qt_clone_voice_from_file(
            model.0,
            wav.as_ptr(),
            c"Okay. Yeah. This is my reference voice.".as_ptr(),
            ptr::null(),
            &mut voice,
        )
    };
    expect(status, QT_STATUS_OK, &[]);
    let voice = Owned(voice);

    // Size query, too small, exact, larger; the bytes are stable.
    let mut needed = 0usize;
    expect(
        unsafe { qt_voice_serialize(voice.0, ptr::null_mut(), 0, &mut needed) },
        QT_STATUS_BUFFER_TOO_SMALL,
        &["qt_voice_serialize", "`buf` is NULL"],
    );
    assert!(needed > 39 * 16 * 4, "{needed} bytes cannot hold 39 frames of codes");
    let mut small = vec![0xaau8; needed - 1];
    let mut len = 0usize;
    expect(
        unsafe { qt_voice_serialize(voice.0, small.as_mut_ptr(), small.len(), &mut len) },
        QT_STATUS_BUFFER_TOO_SMALL,
        &[&format!("`cap` is {}", needed - 1)],
    );
    assert_eq!(len, needed);
    assert!(small.iter().all(|&b| b == 0xaa), "a too-small buffer is not written");
    let mut bytes = vec![0u8; needed + 10];
    len = 0;
    expect(unsafe { qt_voice_serialize(voice.0, bytes.as_mut_ptr(), bytes.len(), &mut len) }, QT_STATUS_OK, &[]);
    assert_eq!(len, needed);
    bytes.truncate(len);
    let mut again = vec![0u8; needed];
    expect(unsafe { qt_voice_serialize(voice.0, again.as_mut_ptr(), again.len(), &mut len) }, QT_STATUS_OK, &[]);
    assert_eq!(again, bytes);
    expect(
        unsafe { qt_voice_serialize(voice.0, bytes.as_mut_ptr(), bytes.len(), ptr::null_mut()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_len`"],
    );

    // Back from bytes: the same voice (same bytes again).
    let mut back = ptr::null_mut();
    expect(unsafe { qt_voice_deserialize(model.0, bytes.as_ptr(), bytes.len(), &mut back) }, QT_STATUS_OK, &[]);
    let back = Owned(back);
    assert_eq!(serialized(back.0), bytes);
    let info = voice_info(back.0);
    assert_eq!((info.kind, info.ref_frames), (QT_VOICE_ICL, 39));

    // Files.
    let tmp = TempDir::new("ffi-voice");
    let path = c_path(&tmp.path().join("narrator.qtvoice"));
    expect(unsafe { qt_voice_save(voice.0, path.as_ptr()) }, QT_STATUS_OK, &[]);
    assert_eq!(std::fs::read(tmp.path().join("narrator.qtvoice")).unwrap(), bytes);
    let mut loaded = ptr::null_mut();
    expect(unsafe { qt_voice_load(model.0, path.as_ptr(), &mut loaded) }, QT_STATUS_OK, &[]);
    let loaded = Owned(loaded);
    assert_eq!(serialized(loaded.0), bytes);
    let nowhere = c_path(&tmp.path().join("no/such/dir/v.qtvoice"));
    expect(unsafe { qt_voice_save(voice.0, nowhere.as_ptr()) }, QT_STATUS_IO, &["qt_voice_save", "no/such/dir"]);

    // Corrupt and foreign input.
    let sentinel = ptr::dangling_mut::<qt_voice>();
    let mut out = sentinel;
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    expect(
        unsafe { qt_voice_deserialize(model.0, flipped.as_ptr(), flipped.len(), &mut out) },
        QT_STATUS_BAD_VOICE,
        &["qt_voice_deserialize"],
    );
    expect(unsafe { qt_voice_deserialize(model.0, bytes.as_ptr(), 10, &mut out) }, QT_STATUS_BAD_VOICE, &[]);
    expect(
        unsafe { qt_voice_deserialize(model.0, ptr::null(), 10, &mut out) },
        QT_STATUS_NULL_ARGUMENT,
        &["`buf` is NULL"],
    );
    expect(unsafe { qt_voice_deserialize(model.0, ptr::null(), 0, &mut out) }, QT_STATUS_BAD_VOICE, &[]);
    let wav_as_voice = c_path(&fixtures_dir().join("audio/ref_24k.wav"));
    expect(unsafe { qt_voice_load(model.0, wav_as_voice.as_ptr(), &mut out) }, QT_STATUS_BAD_VOICE, &["ref_24k.wav"]);
    let custom = load("tiny-customvoice");
    expect(
        unsafe { qt_voice_deserialize(custom.0, bytes.as_ptr(), bytes.len(), &mut out) },
        QT_STATUS_VOICE_MISMATCH,
        &[],
    );
    expect(unsafe { qt_voice_load(custom.0, path.as_ptr(), &mut out) }, QT_STATUS_VOICE_MISMATCH, &[]);
    assert_eq!(out, sentinel);
}

fn serialized(voice: *const qt_voice) -> Vec<u8> {
    let mut len = 0usize;
    expect(unsafe { qt_voice_serialize(voice, ptr::null_mut(), 0, &mut len) }, QT_STATUS_BUFFER_TOO_SMALL, &[]);
    let mut out = vec![0u8; len];
    expect(unsafe { qt_voice_serialize(voice, out.as_mut_ptr(), len, &mut len) }, QT_STATUS_OK, &[]);
    out
}

#[test]
fn embeddings_speakers_and_voices_of_another_model() {
    let base = load("tiny-base");
    let custom = load("tiny-customvoice");
    let e = golden_embedding();
    let sentinel = ptr::dangling_mut::<qt_voice>();
    let mut out = sentinel;

    // qt_voice_from_embedding checks the width and the model kind.
    expect(
        unsafe { qt_voice_from_embedding(base.0, e.as_ptr(), e.len() - 1, &mut out) },
        QT_STATUS_VOICE_MISMATCH,
        &["31 values", "needs 32"],
    );
    expect(
        unsafe { qt_voice_from_embedding(base.0, ptr::null(), e.len(), &mut out) },
        QT_STATUS_NULL_ARGUMENT,
        &["`embedding` is NULL"],
    );
    expect(unsafe { qt_voice_from_embedding(base.0, e.as_ptr(), 0, &mut out) }, QT_STATUS_INVALID_ARGUMENT, &["empty"]);
    let mut nan = e.clone();
    nan[3] = f32::NAN;
    expect(
        unsafe { qt_voice_from_embedding(base.0, nan.as_ptr(), nan.len(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["value 3 is not finite"],
    );
    expect(unsafe { qt_voice_from_embedding(custom.0, e.as_ptr(), e.len(), &mut out) }, QT_STATUS_UNSUPPORTED, &[]);
    // A `dim` larger than the caller's array is refused before anything is read: the array
    // ends right before an inaccessible page, so a read past it would crash this test.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let map = libc::mmap(ptr::null_mut(), 2 * page, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(map, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(map.cast::<u8>().add(page).cast(), page, libc::PROT_NONE), 0);
        let floats = map.cast::<u8>().add(page - 4 * e.len()).cast::<f32>();
        std::ptr::copy_nonoverlapping(e.as_ptr(), floats, e.len());
        for dim in [e.len() + 1, e.len() + 4096, 1 << 40] {
            let st = qt_voice_from_embedding(base.0, floats, dim, &mut out);
            expect(st, QT_STATUS_VOICE_MISMATCH, &[&format!("{dim} values"), "needs 32"]);
        }
        let st = qt_voice_from_embedding(base.0, floats, e.len(), &mut out);
        expect(st, QT_STATUS_OK, &[]);
        qt_free(out.cast());
        out = sentinel;
        libc::munmap(map, 2 * page);
    }
    let voice = embedding_voice(base.0);
    assert_eq!(embedding(voice.0), e);
    let mut two = [0f32; 2];
    let mut dim = 0usize;
    expect(
        unsafe { qt_voice_embedding(voice.0, two.as_mut_ptr(), 2, &mut dim) },
        QT_STATUS_BUFFER_TOO_SMALL,
        &["needs 32 floats", "`cap` is 2"],
    );
    assert_eq!((dim, two), (32, [0.0; 2]));

    // Built-in speakers: case-insensitive, listed when unknown, refused on Base.
    let mut speaker = ptr::null_mut();
    expect(unsafe { qt_voice_from_speaker(custom.0, c"RYAN".as_ptr(), &mut speaker) }, QT_STATUS_OK, &[]);
    let speaker = Owned(speaker);
    let info = voice_info(speaker.0);
    assert_eq!((info.kind, info.embedding_dim), (QT_VOICE_SPEAKER, 0));
    assert_eq!(unsafe { CStr::from_ptr(info.speaker) }.to_str().unwrap().to_lowercase(), "ryan");
    expect(
        unsafe { qt_voice_from_speaker(custom.0, c"nobody".as_ptr(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["\"nobody\"", "ryan"],
    );
    expect(
        unsafe { qt_voice_from_speaker(custom.0, c"\xff".as_ptr(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["`name` is not valid UTF-8"],
    );
    expect(
        unsafe { qt_voice_from_speaker(base.0, c"ryan".as_ptr(), &mut out) },
        QT_STATUS_UNSUPPORTED,
        &["no built-in speakers"],
    );
    expect(
        unsafe { qt_voice_embedding(speaker.0, two.as_mut_ptr(), 2, &mut dim) },
        QT_STATUS_INVALID_ARGUMENT,
        &["built-in speaker"],
    );
    assert_eq!(out, sentinel);

    // Generating: each voice with its own model works; crossed over, each is refused.
    let mut p = gen_defaults(custom.0);
    p.max_frames = 3;
    let run = |model: *const qt_model, voice: *const qt_voice| unsafe {
        qt_generate(model, voice, c"Hello.".as_ptr(), &p, None, ptr::null_mut(), ptr::null_mut())
    };
    expect(run(custom.0, speaker.0), QT_STATUS_OK, &[]);
    expect(run(base.0, voice.0), QT_STATUS_OK, &[]);
    expect(run(custom.0, voice.0), QT_STATUS_VOICE_MISMATCH, &["qt_generate"]);
    expect(run(base.0, speaker.0), QT_STATUS_UNSUPPORTED, &["qt_generate"]);

    // A voice outlives the model that made it.
    let orphan = {
        let model = load("tiny-base");
        embedding_voice(model.0)
    };
    expect(run(base.0, orphan.0), QT_STATUS_OK, &[]);
}

#[test]
fn objects_are_typed_and_freed_once() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let mut audio = ptr::null_mut();
    let mut p = greedy(model.0, c"English");
    p.max_frames = 2;
    expect(
        unsafe { qt_generate(model.0, voice.0, c"Hi.".as_ptr(), &p, None, ptr::null_mut(), &mut audio) },
        QT_STATUS_OK,
        &[],
    );
    let audio = Owned(audio);

    let mut vinfo = std::mem::MaybeUninit::<qt_voice_info>::zeroed();
    unsafe { (*vinfo.as_mut_ptr()).struct_size = size_of::<qt_voice_info>() as u32 };
    expect(
        unsafe { qt_voice_get_info(audio.0.cast(), vinfo.as_mut_ptr()) },
        QT_STATUS_INVALID_HANDLE,
        &["`voice`", "is a qt_audio"],
    );
    let mut ainfo = std::mem::MaybeUninit::<qt_audio_info>::zeroed();
    unsafe { (*ainfo.as_mut_ptr()).struct_size = 8 };
    expect(unsafe { qt_audio_get_info(audio.0, ainfo.as_mut_ptr()) }, QT_STATUS_ABI_MISMATCH, &["qt_audio_info"]);
    expect(
        unsafe { qt_audio_get_info(voice.0.cast(), ainfo.as_mut_ptr()) },
        QT_STATUS_INVALID_HANDLE,
        &["is a qt_voice"],
    );
    let (mut s, mut n) = (ptr::null(), 0usize);
    expect(unsafe { qt_audio_samples(audio.0, ptr::null_mut(), &mut n) }, QT_STATUS_NULL_ARGUMENT, &["`out_samples`"]);
    expect(
        unsafe { qt_audio_samples(audio.0, &mut s, ptr::null_mut()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_n_samples`"],
    );
    assert!(s.is_null() && n == 0);

    // WAV output.
    let tmp = TempDir::new("ffi-wav");
    let path = tmp.path().join("out.wav");
    expect(unsafe { qt_audio_write_wav(audio.0, c_path(&path).as_ptr()) }, QT_STATUS_OK, &[]);
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!((reader.spec().channels, reader.spec().sample_rate, reader.spec().bits_per_sample), (1, 24000, 16));
    assert_eq!(reader.len() as usize, samples(audio.0).len());
    let bad = c_path(&tmp.path().join("missing-dir/out.wav"));
    expect(unsafe { qt_audio_write_wav(audio.0, bad.as_ptr()) }, QT_STATUS_IO, &["qt_audio_write_wav", "missing-dir"]);
    expect(unsafe { qt_audio_write_wav(audio.0, ptr::null()) }, QT_STATUS_NULL_ARGUMENT, &["`path`"]);

    // Double free of a voice and an audio: reported, not fatal.
    let e = golden_embedding();
    let mut extra_voice = ptr::null_mut();
    expect(unsafe { qt_voice_from_embedding(model.0, e.as_ptr(), e.len(), &mut extra_voice) }, QT_STATUS_OK, &[]);
    let mut extra_audio = ptr::null_mut();
    expect(
        unsafe { qt_generate(model.0, voice.0, c"Hi.".as_ptr(), &p, None, ptr::null_mut(), &mut extra_audio) },
        QT_STATUS_OK,
        &[],
    );
    for object in [extra_voice.cast::<c_void>(), extra_audio.cast()] {
        unsafe { qt_free(object) };
        assert_eq!(last_error(), "");
        unsafe { qt_free(object) };
        assert!(last_error().contains("not a live qwentts object"), "{}", last_error());
    }
}

#[test]
fn one_model_and_one_voice_serve_many_threads() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let (m, v) = (model.0 as usize, voice.0 as usize);
    let want = Golden::open("greedy_base").f32("xvec_en.wave").data;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let want = want.clone();
            std::thread::spawn(move || {
                let p = greedy(m as *const qt_model, c"English");
                let mut audio = ptr::null_mut();
                let status = unsafe {
                    qt_generate(
                        m as *const qt_model,
                        v as *const qt_voice,
                        golden_text().as_ptr(),
                        &p,
                        None,
                        ptr::null_mut(),
                        &mut audio,
                    )
                };
                expect(status, QT_STATUS_OK, &[]);
                let audio = Owned(audio);
                assert_close("xvec_en on a thread", &samples(audio.0), &want, 1e-4);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A callback's own failing qt_* call leaves no message behind once the outer call succeeds
/// (issue 11, item 7): `qt_last_error()` describes the last call, which did not fail.
#[test]
fn an_inner_failure_inside_a_callback_does_not_outlive_a_successful_call() {
    unsafe extern "C" fn fail_inside(_: *const qt_chunk, seen: *mut c_void) -> i32 {
        let mut bogus = 0u64;
        unsafe { qt_free((&raw mut bogus).cast()) }; // not a live object: a message, nothing freed
        let message = unsafe { CStr::from_ptr(qt_last_error()) }.to_bytes().len();
        unsafe { *seen.cast::<usize>() = message };
        QT_CONTINUE
    }
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let p = greedy(model.0, c"English");
    let mut inner_message_len = 0usize;
    let status = unsafe {
        qt_generate(
            model.0,
            voice.0,
            golden_text().as_ptr(),
            &p,
            Some(fail_inside),
            (&raw mut inner_message_len).cast(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, QT_STATUS_OK);
    assert!(inner_message_len > 0, "the inner call set a message while it was current");
    assert_eq!(unsafe { CStr::from_ptr(qt_last_error()) }.to_bytes(), b"", "message left after success");
}

#[test]
fn voices_described_in_words_for_voice_design_models() {
    let tmp = TempDir::new("ffi-design");
    let dir = support::tiny_voice_design(&tmp.path().join("design"));
    let design = {
        let path = c_path(&dir);
        let mut model = ptr::null_mut();
        expect(unsafe { qt_load(path.as_ptr(), ptr::null(), &mut model) }, QT_STATUS_OK, &[]);
        Owned(model)
    };
    let base = load("tiny-base");
    let custom = load("tiny-customvoice");
    let description = c"A calm, low voice, speaking slowly.";
    let sentinel = ptr::dangling_mut::<qt_voice>();
    let mut out = sentinel;

    // Refused: wrong model kinds, NULLs, invalid UTF-8; `out_voice` is left alone.
    for (model, kind) in [(base.0, "Base"), (custom.0, "CustomVoice")] {
        expect(
            unsafe { qt_voice_from_description(model, description.as_ptr(), &mut out) },
            QT_STATUS_UNSUPPORTED,
            &[kind, "VoiceDesign models do"],
        );
    }
    expect(
        unsafe { qt_voice_from_description(design.0, ptr::null(), &mut out) },
        QT_STATUS_NULL_ARGUMENT,
        &["`description` is NULL"],
    );
    expect(
        unsafe { qt_voice_from_description(design.0, c"calm \xff".as_ptr(), &mut out) },
        QT_STATUS_INVALID_ARGUMENT,
        &["`description` is not valid UTF-8"],
    );
    expect(
        unsafe { qt_voice_from_description(ptr::null(), description.as_ptr(), &mut out) },
        QT_STATUS_NULL_ARGUMENT,
        &["`model` is NULL"],
    );
    expect(
        unsafe { qt_voice_from_description(design.0, description.as_ptr(), ptr::null_mut()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_voice` is NULL"],
    );
    assert_eq!(out, sentinel);

    let mut voice = ptr::null_mut();
    expect(unsafe { qt_voice_from_description(design.0, description.as_ptr(), &mut voice) }, QT_STATUS_OK, &[]);
    let voice = Owned(voice);
    let info = voice_info(voice.0);
    assert_eq!((info.kind, info.embedding_dim, info.ref_frames), (QT_VOICE_DESIGN, 0, 0));
    assert!(info.ref_text.is_null() && info.speaker.is_null());
    assert_eq!(unsafe { CStr::from_ptr(info.description) }, description);
    // A caller built against the v1 struct gets v1: the field past it is not written.
    let mut v1 = qt_voice_info {
        struct_size: std::mem::offset_of!(qt_voice_info, description) as u32,
        kind: 0,
        embedding_dim: 0,
        ref_frames: 0,
        ref_text: ptr::null(),
        speaker: ptr::null(),
        description: c"untouched".as_ptr(),
    };
    expect(unsafe { qt_voice_get_info(voice.0, &mut v1) }, QT_STATUS_OK, &[]);
    assert_eq!((v1.struct_size as usize, v1.kind), (std::mem::offset_of!(qt_voice_info, description), QT_VOICE_DESIGN));
    assert_eq!(unsafe { CStr::from_ptr(v1.description) }, c"untouched");

    // Generation through the C ABI is the Rust API's generation with Voice::design.
    let run = |model: *const qt_model, voice: *const qt_voice| {
        let mut p = gen_defaults(model);
        p.seed = 11;
        p.max_frames = 6;
        p.language = c"English".as_ptr();
        let mut audio = ptr::null_mut();
        let status = unsafe { qt_generate(model, voice, c"Hello there.".as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
        (status, Owned(audio))
    };
    let (status, audio) = run(design.0, voice.0);
    expect(status, QT_STATUS_OK, &[]);
    let from_c = samples(audio.0);
    let rust = {
        let model = qwentts::Model::load(&dir, &Default::default()).unwrap();
        let mut options = qwentts::GenerateOptions::defaults(&model);
        options.seed = Some(11);
        options.max_frames = Some(6);
        options.language = "English".into();
        let voice = qwentts::Voice::design(description.to_str().unwrap());
        model.generate(&voice, "Hello there.", &options, None).unwrap().samples
    };
    assert!(from_c == rust, "the C ABI's designed voice speaks differently from the Rust API's");
    // The description reaches the prompt: none at all gives other audio.
    let mut plain = ptr::null_mut();
    expect(unsafe { qt_voice_from_description(design.0, c"".as_ptr(), &mut plain) }, QT_STATUS_OK, &[]);
    let plain = Owned(plain);
    let (status, audio) = run(design.0, plain.0);
    expect(status, QT_STATUS_OK, &[]);
    assert!(samples(audio.0) != from_c, "a description changed nothing");

    // Persisted like any voice; only a VoiceDesign model takes it back or speaks with it.
    let bytes = serialized(voice.0);
    let mut back = ptr::null_mut();
    expect(unsafe { qt_voice_deserialize(design.0, bytes.as_ptr(), bytes.len(), &mut back) }, QT_STATUS_OK, &[]);
    let back = Owned(back);
    assert_eq!(unsafe { CStr::from_ptr(voice_info(back.0).description) }, description);
    assert_eq!(serialized(back.0), bytes);
    let (status, _nothing) = run(base.0, voice.0);
    expect(status, QT_STATUS_UNSUPPORTED, &["qt_generate", "VoiceDesign"]);
    expect(
        unsafe { qt_voice_deserialize(base.0, bytes.as_ptr(), bytes.len(), &mut out) },
        QT_STATUS_VOICE_MISMATCH,
        &["a designed voice", "VoiceDesign"],
    );
    assert_eq!(out, sentinel);
}

// ---------------------------------------------------------------------------------------------
// the voice prefix cache
// ---------------------------------------------------------------------------------------------

fn load_with(name: &str, params: &qt_model_params) -> Owned<qt_model> {
    let dir = c_path(&checkpoint_dir(name));
    let mut model = ptr::null_mut();
    expect(unsafe { qt_load(dir.as_ptr(), params, &mut model) }, QT_STATUS_OK, &[]);
    Owned(model)
}

fn generate(model: *const qt_model, voice: *const qt_voice, text: &CStr, p: &qt_gen_params) -> Owned<qt_audio> {
    let mut audio = ptr::null_mut();
    let status = unsafe { qt_generate(model, voice, text.as_ptr(), p, None, ptr::null_mut(), &mut audio) };
    expect(status, QT_STATUS_OK, &[]);
    Owned(audio)
}

/// The default model keeps a voice prefix cache: the second call with a voice and language
/// reuses the first one's prefix rows (9 of an x-vector prompt), a new text with them too, a
/// new language does not; the audio of a hit equals the miss's to the bit. Without the cache
/// (`QT_PREFIX_CACHE_OFF`) nothing is reused and the audio is the same up to f32 rounding.
#[test]
fn the_voice_prefix_cache_reuses_rows_and_never_changes_the_audio() {
    let model = load("tiny-base");
    let voice = embedding_voice(model.0);
    let p = greedy(model.0, c"English");
    let text = golden_text();

    let first = generate(model.0, voice.0, &text, &p);
    let second = generate(model.0, voice.0, &text, &p);
    let (a, b) = (audio_info(first.0), audio_info(second.0));
    assert_eq!((a.prompt_rows, a.reused_prompt_rows), (10, 0), "x-vector streaming prompt: 9 prefix rows + 1");
    assert_eq!((b.prompt_rows, b.reused_prompt_rows), (10, 9), "the second call hits");
    assert_eq!(samples(first.0), samples(second.0), "a hit gives the miss's audio to the bit");

    let other = generate(model.0, voice.0, c"Another line, same voice.", &p);
    assert_eq!(audio_info(other.0).reused_prompt_rows, 9, "a new text keeps the voice prefix");
    let chinese = generate(model.0, voice.0, &text, &greedy(model.0, c"Chinese"));
    assert_eq!(audio_info(chinese.0).reused_prompt_rows, 0, "a new language is a new prefix");

    let off = qt_model_params { prefix_cache_mb: QT_PREFIX_CACHE_OFF, ..qt_model_params::default() };
    let uncached = load_with("tiny-base", &off);
    let voice2 = embedding_voice(uncached.0);
    for _ in 0..2 {
        let audio = generate(uncached.0, voice2.0, &text, &greedy(uncached.0, c"English"));
        let info = audio_info(audio.0);
        assert_eq!((info.prompt_rows, info.reused_prompt_rows), (10, 0));
        let d = assert_close("one-pass prefill vs the cached two-pass", &samples(audio.0), &samples(first.0), 1e-5);
        eprintln!("prefix cache off vs on: {d}");
    }

    // A caller of the v1 qt_audio_info (ending at rtf) gets v1 and nothing past it.
    let v1 = std::mem::offset_of!(qt_audio_info, rtf) + 8;
    let mut info = std::mem::MaybeUninit::<qt_audio_info>::zeroed();
    unsafe {
        (*info.as_mut_ptr()).struct_size = v1 as u32;
        (*info.as_mut_ptr()).prompt_rows = -5;
    }
    expect(unsafe { qt_audio_get_info(second.0, info.as_mut_ptr()) }, QT_STATUS_OK, &[]);
    let info = unsafe { info.assume_init() };
    assert_eq!((info.struct_size as usize, info.prompt_rows), (v1, -5));
    assert_eq!(info.n_frames, b.n_frames);
}

/// `qt_model_params.prefix_cache_mb`: values outside 0, -1 and 1..=QT_PREFIX_CACHE_MAX_MB are
/// refused before anything is read; a v2 caller (no such field) gets the default.
#[test]
fn prefix_cache_param_is_checked() {
    let dir = c_path(&checkpoint_dir("tiny-base"));
    for bad in [-2, i32::MIN, QT_PREFIX_CACHE_MAX_MB + 1] {
        let params = qt_model_params { prefix_cache_mb: bad, ..qt_model_params::default() };
        let mut model = ptr::null_mut();
        let status = unsafe { qt_load(c"/nonexistent".as_ptr(), &params, &mut model) };
        expect(status, QT_STATUS_INVALID_ARGUMENT, &["prefix_cache_mb", &bad.to_string()]);
        assert!(model.is_null());
    }
    let v2 = qt_model_params { struct_size: 12, prefix_cache_mb: -77, ..qt_model_params::default() };
    let mut model = ptr::null_mut();
    expect(unsafe { qt_load(dir.as_ptr(), &v2, &mut model) }, QT_STATUS_OK, &[]);
    let model = Owned(model);
    let voice = embedding_voice(model.0);
    let p = greedy(model.0, c"English");
    let _ = generate(model.0, voice.0, c"Hi.", &p);
    let again = generate(model.0, voice.0, c"Hi.", &p);
    assert_eq!(audio_info(again.0).reused_prompt_rows, 9, "v2 callers get the default cache");
    let small = qt_model_params { prefix_cache_mb: 1, ..qt_model_params::default() };
    let _ = load_with("tiny-base", &small);
}
