//! `qt_stream` through the C ABI: read from a simulated real-time audio thread (a deadline
//! per callback, a ring much smaller than the utterance so the generating thread waits for
//! the reader), equal to `qt_generate`'s audio for the same seed; cancelled mid-speech and
//! freed while running; failures of the generation reported by `qt_stream_result`; misuse
//! reported, never fatal.

mod common;

use std::ffi::{CStr, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use common::{Golden, checkpoint_dir};
use qwentts::ffi::*;

fn last_error() -> String {
    unsafe { CStr::from_ptr(qt_last_error()) }.to_str().unwrap().to_owned()
}

#[track_caller]
fn expect(got: qt_status, want: qt_status, fragments: &[&str]) {
    let message = last_error();
    assert_eq!(got, want, "last error: {message}");
    for f in fragments {
        assert!(message.contains(f), "last error lacks `{f}`: {message}");
    }
}

struct Owned<T>(*mut T);
impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        unsafe { qt_free(self.0.cast()) };
    }
}
// The test threads share read-only handles (the library's objects are thread-safe).
unsafe impl<T> Send for Owned<T> {}
unsafe impl<T> Sync for Owned<T> {}

fn load(name: &str) -> Owned<qt_model> {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::ffi::CString::new(checkpoint_dir(name).as_os_str().as_bytes()).unwrap();
    let mut model = ptr::null_mut();
    expect(unsafe { qt_load(dir.as_ptr(), ptr::null(), &mut model) }, QT_STATUS_OK, &[]);
    Owned(model)
}

fn voice(model: *const qt_model) -> Owned<qt_voice> {
    let e = Golden::open("speaker_base").f32("spk_embedding").data;
    let mut v = ptr::null_mut();
    expect(unsafe { qt_voice_from_embedding(model, e.as_ptr(), e.len(), &mut v) }, QT_STATUS_OK, &[]);
    Owned(v)
}

fn params(model: *const qt_model, seed: u64, frames: i32) -> qt_gen_params {
    let mut p = std::mem::MaybeUninit::<qt_gen_params>::zeroed();
    expect(unsafe { qt_gen_params_default(model, p.as_mut_ptr(), size_of::<qt_gen_params>()) }, QT_STATUS_OK, &[]);
    let mut p = unsafe { p.assume_init() };
    p.seed = seed;
    p.max_frames = frames;
    p.language = c"English".as_ptr();
    p.output_sample_rate = 48_000;
    p
}

fn info(stream: *const qt_stream) -> qt_stream_info {
    let mut i = std::mem::MaybeUninit::<qt_stream_info>::zeroed();
    unsafe { (*i.as_mut_ptr()).struct_size = size_of::<qt_stream_info>() as u32 };
    expect(unsafe { qt_stream_get_info(stream, i.as_mut_ptr()) }, QT_STATUS_OK, &[]);
    unsafe { i.assume_init() }
}

const TEXT: &CStr = c"Hello from the audio thread.";

fn start(model: *const qt_model, voice: *const qt_voice, p: &qt_gen_params, capacity: usize) -> Owned<qt_stream> {
    let mut s = ptr::null_mut();
    expect(unsafe { qt_stream_start(model, voice, TEXT.as_ptr(), p, capacity, &mut s) }, QT_STATUS_OK, &[]);
    Owned(s)
}

/// Waits (off the audio thread) until the stream has stopped running.
fn wait_stopped(stream: *const qt_stream) -> qt_stream_info {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let i = info(stream);
        if i.state != QT_STREAM_RUNNING {
            return i;
        }
        assert!(Instant::now() < until, "the stream never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_simulated_audio_callback_never_waits_and_hears_what_qt_generate_makes() {
    let model = load("tiny-base");
    let voice = voice(model.0);
    let p = params(model.0, 9, 12);
    // What qt_generate makes of the same request: the streamed part of its audio.
    let expected = {
        let mut audio = ptr::null_mut();
        let st = unsafe { qt_generate(model.0, voice.0, TEXT.as_ptr(), &p, None, ptr::null_mut(), &mut audio) };
        expect(st, QT_STATUS_OK, &[]);
        let audio = Owned(audio);
        let mut i = std::mem::MaybeUninit::<qt_audio_info>::zeroed();
        unsafe { (*i.as_mut_ptr()).struct_size = size_of::<qt_audio_info>() as u32 };
        expect(unsafe { qt_audio_get_info(audio.0, i.as_mut_ptr()) }, QT_STATUS_OK, &[]);
        let i = unsafe { i.assume_init() };
        let all = unsafe { std::slice::from_raw_parts(i.samples, i.n_samples) };
        all[i.chunk_offset as usize..].to_vec()
    };
    assert!(expected.len() > 8 * 1024, "the utterance must be much longer than the ring");

    // A ring of 4096 samples (85 ms at 48 kHz) for ~1 s of audio: the worker waits often.
    let stream = start(model.0, voice.0, &p, 4096);
    // The engine's callback: 256 samples at 48 kHz, every 5.33 ms, on its own thread.
    const FRAMES: usize = 256;
    let period = Duration::from_secs_f64(FRAMES as f64 / 48_000.0);
    let reader = {
        let stream = stream.0 as usize;
        std::thread::spawn(move || {
            let stream = stream as *mut qt_stream;
            let mut heard = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut starved = 0usize;
            let mut buf = [0f32; FRAMES];
            let mut next = Instant::now();
            for _ in 0..100_000 {
                let (mut n, mut ended) = (0usize, 0i32);
                let t0 = Instant::now();
                let st = unsafe { qt_stream_read(stream, buf.as_mut_ptr(), FRAMES, &mut n, &mut ended) };
                slowest = slowest.max(t0.elapsed());
                assert_eq!(st, QT_STATUS_OK, "{}", last_error());
                heard.extend_from_slice(&buf[..n]);
                if n < FRAMES && ended == 0 {
                    starved += 1; // an engine plays silence for the rest
                }
                if ended != 0 {
                    return (heard, slowest, starved);
                }
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            panic!("the stream never ended");
        })
    };
    let (heard, slowest, starved) = reader.join().unwrap();
    // Every read returned well within its callback's period (it never waited for the worker).
    assert!(slowest < period, "a read took {slowest:?}, longer than the callback period {period:?}");
    assert!(heard == expected, "streamed {} samples, qt_generate {}: they differ", heard.len(), expected.len());
    let i = info(stream.0);
    assert_eq!((i.state, i.finish, i.sample_rate, i.capacity), (QT_STREAM_FINISHED, QT_FINISH_FRAME_LIMIT, 48_000, 4096));
    assert_eq!((i.samples_written, i.samples_read), (expected.len() as u64, expected.len() as u64));
    assert!(i.first_audio_ms > 0.0);
    expect(unsafe { qt_stream_result(stream.0) }, QT_STATUS_OK, &[]);
    eprintln!("{} callbacks short of audio while generating (played as silence)", starved);
}

#[test]
fn cancel_mid_speech_then_free_and_free_while_running() {
    let model = load("tiny-base");
    let voice = voice(model.0);
    let p = params(model.0, 3, 400);
    let stream = start(model.0, voice.0, &p, 4096);
    // Wait until some audio is there, read a little, cancel.
    let mut buf = vec![0f32; 1024];
    let (mut n, mut ended) = (0usize, 0i32);
    let until = Instant::now() + Duration::from_secs(60);
    while n == 0 {
        expect(unsafe { qt_stream_read(stream.0, buf.as_mut_ptr(), buf.len(), &mut n, &mut ended) }, QT_STATUS_OK, &[]);
        assert!(Instant::now() < until, "no audio came");
        std::thread::sleep(Duration::from_millis(1));
    }
    expect(unsafe { qt_stream_cancel(stream.0) }, QT_STATUS_OK, &[]);
    let i = wait_stopped(stream.0);
    assert_eq!(i.state, QT_STREAM_CANCELLED);
    assert!(i.samples_written < 400 * 3840, "a cancelled stream made the whole utterance");
    expect(unsafe { qt_stream_result(stream.0) }, QT_STATUS_ABORTED, &[]);
    // What was in the ring stays readable, then the stream reports its end.
    let mut total = n as u64;
    loop {
        expect(unsafe { qt_stream_read(stream.0, buf.as_mut_ptr(), buf.len(), &mut n, &mut ended) }, QT_STATUS_OK, &[]);
        total += n as u64;
        if ended != 0 {
            break;
        }
    }
    assert_eq!(total, info(stream.0).samples_written);
    expect(unsafe { qt_stream_cancel(stream.0) }, QT_STATUS_OK, &[]); // again: nothing happens
    drop(stream);
    // Freed while generating (nobody reading, ring full): qt_free cancels and waits.
    let busy = start(model.0, voice.0, &p, 4096);
    std::thread::sleep(Duration::from_millis(20));
    let t0 = Instant::now();
    drop(busy);
    assert_eq!(last_error(), "", "qt_free refused a running stream");
    assert!(t0.elapsed() < Duration::from_secs(30));
}

#[test]
fn failures_and_misuse_are_reported_not_fatal() {
    let model = load("tiny-base");
    let custom = load("tiny-customvoice");
    let voice = voice(model.0);
    let p = params(model.0, 1, 4);
    let sentinel = ptr::dangling_mut::<qt_stream>();
    let mut out = sentinel;
    let start_with = |p: &qt_gen_params, capacity: usize, out: &mut *mut qt_stream| unsafe {
        qt_stream_start(model.0, voice.0, TEXT.as_ptr(), p, capacity, out)
    };
    expect(start_with(&p, 10, &mut out), QT_STATUS_INVALID_ARGUMENT, &["capacity is 10 samples"]);
    expect(start_with(&p, usize::MAX, &mut out), QT_STATUS_INVALID_ARGUMENT, &["capacity"]);
    unsafe extern "C" fn never(_: *mut c_void) -> i32 {
        QT_CONTINUE
    }
    let mut with_abort = p;
    with_abort.abort_cb = Some(never);
    expect(start_with(&with_abort, 0, &mut out), QT_STATUS_INVALID_ARGUMENT, &["abort_cb", "qt_stream_cancel"]);
    let mut bad = p;
    bad.top_p = 2.0;
    expect(start_with(&bad, 0, &mut out), QT_STATUS_INVALID_ARGUMENT, &["top_p"]);
    let mut bad = p;
    bad.first_chunk_frames = -4;
    expect(start_with(&bad, 0, &mut out), QT_STATUS_INVALID_ARGUMENT, &["first_chunk_frames is -4"]);
    // A caller built against the v1 layout (which ends before first_chunk_frames) is served,
    // whatever lies past its struct: here a value that would be refused if it were read.
    let v1 = (std::mem::offset_of!(qt_gen_params, abort_user_data) + size_of::<usize>()) as u32;
    let old = qt_gen_params { struct_size: v1, first_chunk_frames: -4, reserved: 7, ..p };
    let mut started = ptr::null_mut();
    expect(start_with(&old, 0, &mut started), QT_STATUS_OK, &[]);
    let started = Owned(started);
    assert_eq!(wait_stopped(started.0).state, QT_STREAM_FINISHED, "the v1 caller's stream runs to its end");
    expect(
        unsafe { qt_stream_start(model.0, voice.0, ptr::null(), &p, 0, &mut out) },
        QT_STATUS_NULL_ARGUMENT,
        &["`text` is NULL"],
    );
    expect(
        unsafe { qt_stream_start(model.0, voice.0, TEXT.as_ptr(), &p, 0, ptr::null_mut()) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_stream` is NULL"],
    );
    assert_eq!(out, sentinel);

    // A failure the generation finds (a voice of another model family) ends the stream as
    // FAILED; qt_stream_result gives its status and message.
    let mut failed = ptr::null_mut();
    let st = unsafe { qt_stream_start(custom.0, voice.0, TEXT.as_ptr(), ptr::null(), 0, &mut failed) };
    expect(st, QT_STATUS_OK, &[]);
    let failed = Owned(failed);
    assert_eq!(wait_stopped(failed.0).state, QT_STREAM_FAILED);
    let (mut n, mut ended) = (7usize, 7i32);
    let mut buf = [0f32; 16];
    expect(unsafe { qt_stream_read(failed.0, buf.as_mut_ptr(), 16, &mut n, &mut ended) }, QT_STATUS_OK, &[]);
    assert_eq!((n, ended), (0, 1));
    expect(unsafe { qt_stream_result(failed.0) }, QT_STATUS_VOICE_MISMATCH, &["qt_stream_result", "generation"]);

    // Reads: NULLs and sizes; the outputs stay untouched on failure.
    let (mut n, mut ended) = (7usize, 7i32);
    expect(
        unsafe { qt_stream_read(failed.0, ptr::null_mut(), 16, &mut n, &mut ended) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out` is NULL"],
    );
    expect(unsafe { qt_stream_read(failed.0, ptr::null_mut(), 0, &mut n, &mut ended) }, QT_STATUS_OK, &[]);
    assert_eq!((n, ended), (0, 1));
    expect(
        unsafe { qt_stream_read(failed.0, buf.as_mut_ptr(), 16, ptr::null_mut(), &mut ended) },
        QT_STATUS_NULL_ARGUMENT,
        &["`out_n` is NULL"],
    );
    // A stream handle where another object is expected, and the other way round.
    expect(
        unsafe { qt_stream_read(model.0.cast(), buf.as_mut_ptr(), 16, &mut n, &mut ended) },
        QT_STATUS_INVALID_HANDLE,
        &["not a live qt_stream", "qt_model"],
    );
    let mut audio_info = std::mem::MaybeUninit::<qt_audio_info>::zeroed();
    unsafe { (*audio_info.as_mut_ptr()).struct_size = size_of::<qt_audio_info>() as u32 };
    expect(
        unsafe { qt_audio_get_info(failed.0.cast(), audio_info.as_mut_ptr()) },
        QT_STATUS_INVALID_HANDLE,
        &["qt_stream"],
    );
    // Read after free: reported (as long as the memory was not handed out again; the tag
    // reads "freed" or, once the allocator has reused the first bytes, nothing it knows).
    let gone = failed.0;
    drop(failed);
    expect(
        unsafe { qt_stream_read(gone, buf.as_mut_ptr(), 16, &mut n, &mut ended) },
        QT_STATUS_INVALID_HANDLE,
        &["is not a live qt_stream"],
    );
    assert_eq!((n, ended), (0, 1), "a refused read writes nothing");
}
