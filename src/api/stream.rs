//! [`SpeechStream`]: a generation running on its own thread whose audio an engine's real-time
//! audio callback pulls without ever blocking or allocating.
//!
//! Engines (Unity's `OnAudioFilterRead`, Godot's `AudioStreamGenerator`, Unreal's procedural
//! sound waves, miniaudio/PortAudio callbacks) ask for audio on a thread that must not wait:
//! a lock, a syscall or an allocation there is an audible glitch. [`SpeechStream::start`]
//! starts [`Model::generate_with`] on a worker thread; its chunks go into a single-producer
//! single-consumer ring of samples allocated up front; [`SpeechStream::read`] copies out
//! what is there with two atomic loads and one atomic store. When the ring is full the
//! *worker* waits (polling every millisecond), never the reader.
//!
//! The samples read are exactly the chunks [`Model::generate`] hands its callback for the
//! same request, i.e. `Audio::samples[chunk_offset..]` (an ICL voice's result may carry one
//! sample of the reference in front of the chunks; see [`Audio`]).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::audio::Audio;
use super::generate::GenerateOptions;
use super::model::Model;
use super::synthesize::GenerateHooks;
use super::voice::Voice;
use crate::error::{Error, ErrorKind, Result};
use crate::model::generate::FinishReason;

/// Smallest ring a stream may have, in samples (10 ms at 8 kHz).
pub const MIN_STREAM_CAPACITY: usize = 80;
/// Largest ring a stream may have, in samples (10 minutes at 48 kHz: 110 MB).
pub const MAX_STREAM_CAPACITY: usize = 48_000 * 600;

/// Where a stream is. Once it is not `Running`, nothing more will be written to the ring:
/// what is left in it can still be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// The worker is generating (or waiting for the reader to make room).
    Running = 0,
    /// Generation ended normally (end of speech or the frame limit).
    Finished = 1,
    /// [`SpeechStream::cancel`] stopped it.
    Cancelled = 2,
    /// Generation failed; [`SpeechStream::error`] says why.
    Failed = 3,
}

impl StreamState {
    fn from_u8(v: u8) -> StreamState {
        match v {
            0 => StreamState::Running,
            1 => StreamState::Finished,
            2 => StreamState::Cancelled,
            _ => StreamState::Failed,
        }
    }
}

/// What one [`SpeechStream::read`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRead {
    /// Samples copied into the caller's buffer.
    pub samples: usize,
    /// True once the stream is no longer running and its ring is empty: nothing will ever
    /// come again (see [`SpeechStream::state`] for how it ended).
    pub ended: bool,
}

/// Facts about a stream, for the non-real-time side (they take a lock).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub state: StreamState,
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Samples the worker has put into the ring so far, and the reader taken out.
    pub samples_written: u64,
    pub samples_read: u64,
    /// Ring capacity in samples.
    pub capacity: usize,
    /// Milliseconds from `start` until the first samples were in the ring (0 before).
    pub first_audio_ms: f64,
    /// How generation ended, once it has (`None` while running or after a failure).
    pub finish: Option<FinishReason>,
}

/// Single-producer single-consumer ring of samples: `written` and `read` count samples
/// since the start (monotonic); slot of sample n is `n % capacity`. The producer owns
/// `[written, read + capacity)`, the consumer `[read, written)`.
struct SampleRing {
    buf: Box<[UnsafeCell<f32>]>,
    written: AtomicUsize,
    read: AtomicUsize,
}

// SAFETY: the two sides touch disjoint slots (the ranges above), handed over through the
// Release stores / Acquire loads of `written` and `read`.
unsafe impl Sync for SampleRing {}

impl SampleRing {
    fn new(capacity: usize) -> SampleRing {
        SampleRing {
            buf: (0..capacity).map(|_| UnsafeCell::new(0.0)).collect(),
            written: AtomicUsize::new(0),
            read: AtomicUsize::new(0),
        }
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Samples `from..from + n` (counted since the start) as at most two runs of slots:
    /// (first slot, length) up to the buffer's end, then the rest from slot 0.
    fn spans(&self, from: usize, n: usize) -> ((usize, usize), (usize, usize)) {
        let start = from % self.capacity();
        let first = n.min(self.capacity() - start);
        ((start, first), (0, n - first))
    }

    /// Pointer to slot `i` (`UnsafeCell<f32>` has the layout of `f32`).
    fn slot(&self, i: usize) -> *mut f32 {
        UnsafeCell::raw_get(self.buf.as_ptr().wrapping_add(i))
    }

    /// Producer: copies as much of `samples` as fits; returns how many.
    fn push(&self, samples: &[f32]) -> usize {
        let w = self.written.load(Ordering::Relaxed);
        let r = self.read.load(Ordering::Acquire);
        let n = samples.len().min(self.capacity() - (w - r));
        let (first, second) = self.spans(w, n);
        // SAFETY: slots w..w + n (mod cap) are in the producer's range (w + n <= r + cap);
        // `spans` keeps both copies inside the buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(samples.as_ptr(), self.slot(first.0), first.1);
            std::ptr::copy_nonoverlapping(samples.as_ptr().add(first.1), self.slot(second.0), second.1);
        }
        self.written.store(w + n, Ordering::Release);
        n
    }

    /// Consumer: copies up to `out.len()` samples; returns how many.
    fn pop(&self, out: &mut [f32]) -> usize {
        let r = self.read.load(Ordering::Relaxed);
        let w = self.written.load(Ordering::Acquire);
        let n = out.len().min(w - r);
        let (first, second) = self.spans(r, n);
        // SAFETY: slots r..r + n (mod cap) are in the consumer's range (r + n <= w); `spans`
        // keeps both copies inside the buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot(first.0), out.as_mut_ptr(), first.1);
            std::ptr::copy_nonoverlapping(self.slot(second.0), out.as_mut_ptr().add(first.1), second.1);
        }
        self.read.store(r + n, Ordering::Release);
        n
    }
}

/// What the worker and the handle share.
struct Shared {
    ring: SampleRing,
    state: AtomicU8,
    cancel: AtomicBool,
    /// Set while a `read` runs: a second reader at the same time is refused.
    reading: AtomicBool,
    /// ns after `started` at which the first samples were pushed (0: not yet).
    first_audio_ns: AtomicU64,
    started: Instant,
    sample_rate: u32,
    /// The worker's result: the finish reason, or the error.
    outcome: Mutex<Option<Result<FinishReason>>>,
}

/// A generation running on its own thread, read without blocking. Dropping it cancels the
/// generation and waits for the worker to stop (at most one frame of compute).
pub struct SpeechStream {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

/// How often a worker with a full ring looks again (the reader never waits for it).
const FULL_RING_POLL: Duration = Duration::from_millis(1);

impl SpeechStream {
    /// Starts speaking `text` in `voice` on a new thread, into a ring of `capacity` samples
    /// (at the output rate; [`MIN_STREAM_CAPACITY`]..=[`MAX_STREAM_CAPACITY`]). A second or
    /// two of audio is plenty: generation runs faster than real time, and a full ring only
    /// makes the worker wait.
    ///
    /// Errors: `InvalidArgument` for a capacity out of range or options `generate` refuses
    /// up front (chunk size, output rate); the rest of `generate`'s errors (voice of another
    /// model, bad language, ...) end the stream as [`StreamState::Failed`] with
    /// [`error`](Self::error) set. `Io` if the thread cannot be started.
    pub fn start(
        model: &Model,
        voice: &Voice,
        text: &str,
        options: &GenerateOptions,
        capacity: usize,
    ) -> Result<SpeechStream> {
        if !(MIN_STREAM_CAPACITY..=MAX_STREAM_CAPACITY).contains(&capacity) {
            return Err(Error::invalid_argument(format!(
                "stream capacity is {capacity} samples; it must be {MIN_STREAM_CAPACITY} to {MAX_STREAM_CAPACITY}"
            )));
        }
        // Chunk sizes are checked here so that a bad one is refused up front.
        super::synthesize::ChunkSizes::new(options)?;
        let sample_rate = options.output_sample_rate.unwrap_or(model.info().sample_rate);
        let shared = Arc::new(Shared {
            ring: SampleRing::new(capacity),
            state: AtomicU8::new(StreamState::Running as u8),
            cancel: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            first_audio_ns: AtomicU64::new(0),
            started: Instant::now(),
            sample_rate,
            outcome: Mutex::new(None),
        });
        let (model, voice, text, options) = (model.clone(), voice.clone(), text.to_owned(), options.clone());
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("qwentts-stream".into())
            .spawn(move || run_worker(&worker_shared, &model, &voice, &text, &options))
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start the stream's thread: {e}")))?;
        Ok(SpeechStream { shared, worker: Some(worker) })
    }

    /// Copies up to `out.len()` samples that are ready into `out`. Never blocks, never
    /// allocates, never makes a system call: safe on a real-time audio thread. One reader at
    /// a time: a call while another thread's `read` is still running returns
    /// `InvalidArgument` (nothing is read).
    pub fn read(&self, out: &mut [f32]) -> Result<StreamRead> {
        let s = &self.shared;
        if s.reading.swap(true, Ordering::Acquire) {
            return Err(Error::invalid_argument(
                "another thread is reading this stream right now: a stream has one reader",
            ));
        }
        // The state before the copy: if it said "not running", every sample was already in
        // the ring, so an empty ring after the copy means the end.
        let state = StreamState::from_u8(s.state.load(Ordering::Acquire));
        let n = s.ring.pop(out);
        let ended = state != StreamState::Running && s.ring.written.load(Ordering::Acquire) == s.ring.read.load(Ordering::Relaxed);
        s.reading.store(false, Ordering::Release);
        Ok(StreamRead { samples: n, ended })
    }

    /// Asks the worker to stop; returns at once. Samples already in the ring stay readable;
    /// the state becomes `Cancelled` once the worker has stopped (within one frame).
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Release);
    }

    /// Where the stream is (lock-free).
    pub fn state(&self) -> StreamState {
        StreamState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// Why the stream failed (`None` unless [`StreamState::Failed`]).
    pub fn error(&self) -> Option<Error> {
        match &*self.shared.outcome.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Counters and timings (takes a lock: not for the audio thread).
    pub fn info(&self) -> StreamInfo {
        let s = &self.shared;
        let finish = match &*s.outcome.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(f)) => Some(*f),
            _ => None,
        };
        StreamInfo {
            state: self.state(),
            sample_rate: s.sample_rate,
            samples_written: s.ring.written.load(Ordering::Acquire) as u64,
            samples_read: s.ring.read.load(Ordering::Acquire) as u64,
            capacity: s.ring.capacity(),
            first_audio_ms: s.first_audio_ns.load(Ordering::Relaxed) as f64 * 1e-6,
            finish,
        }
    }
}

impl Drop for SpeechStream {
    fn drop(&mut self) {
        self.cancel();
        if let Some(worker) = self.worker.take() {
            // The worker catches its own panics (run_worker); a join error cannot carry one.
            let _ = worker.join();
        }
    }
}

/// The worker: generation with a chunk sink that fills the ring (waiting while it is full)
/// and an abort poll on the cancel flag; then the final state.
fn run_worker(s: &Shared, model: &Model, voice: &Voice, text: &str, options: &GenerateOptions) {
    let cancelled = || s.cancel.load(Ordering::Acquire);
    let mut sink = |chunk: &super::audio::AudioChunk<'_>| -> bool {
        let mut rest = chunk.samples;
        while !rest.is_empty() {
            if cancelled() {
                return false;
            }
            let n = s.ring.push(rest);
            if n > 0 && s.first_audio_ns.load(Ordering::Relaxed) == 0 {
                s.first_audio_ns.store(s.started.elapsed().as_nanos().max(1) as u64, Ordering::Relaxed);
            }
            rest = &rest[n..];
            if !rest.is_empty() {
                std::thread::sleep(FULL_RING_POLL);
            }
        }
        !cancelled()
    };
    let mut abort = || cancelled();
    let hooks = GenerateHooks { on_chunk: Some(&mut sink), should_abort: Some(&mut abort) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        model.generate_with(voice, text, options, hooks).map(|audio: Audio| audio.finish)
    }))
    .unwrap_or_else(|_| Err(Error::new(ErrorKind::Panic, "the stream's generation panicked: a bug in qwentts, please report it")));
    let state = match &result {
        Ok(FinishReason::Aborted) => StreamState::Cancelled,
        Ok(_) => StreamState::Finished,
        Err(_) => StreamState::Failed,
    };
    *s.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
    s.state.store(state as u8, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_and_hands_over_in_order() {
        let ring = SampleRing::new(5);
        assert_eq!(ring.push(&[1.0, 2.0, 3.0]), 3);
        let mut out = [0.0; 2];
        assert_eq!(ring.pop(&mut out), 2);
        assert_eq!(out, [1.0, 2.0]);
        // 1 held, 4 free: 4 of 6 fit, wrapping around the end.
        assert_eq!(ring.push(&[4.0, 5.0, 6.0, 7.0, 8.0, 9.0]), 4);
        let mut all = [0.0; 8];
        assert_eq!(ring.pop(&mut all), 5);
        assert_eq!(all[..5], [3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(ring.pop(&mut all), 0);
    }

    #[test]
    fn a_second_reader_is_refused_without_reading() {
        let shared = Shared {
            ring: SampleRing::new(MIN_STREAM_CAPACITY),
            state: AtomicU8::new(StreamState::Running as u8),
            cancel: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            first_audio_ns: AtomicU64::new(0),
            started: Instant::now(),
            sample_rate: 24_000,
            outcome: Mutex::new(None),
        };
        shared.ring.push(&[0.5; 10]);
        let stream = SpeechStream { shared: Arc::new(shared), worker: None };
        // Another thread is inside read() (its flag is up): this one is refused, reads nothing.
        stream.shared.reading.store(true, Ordering::Release);
        let mut out = [0.0; 4];
        let err = stream.read(&mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("one reader"), "{}", err.message());
        assert_eq!(out, [0.0; 4]);
        stream.shared.reading.store(false, Ordering::Release);
        assert_eq!(stream.read(&mut out).unwrap(), StreamRead { samples: 4, ended: false });
    }
}
