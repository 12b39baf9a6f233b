//! `Model::generate`: text + voice → audio, streamed in chunks while the frames are made.
//!
//! The frame loop ([`Model::generate_codes`]) hands over each codec frame as it is made;
//! each chunk's frames (1, 2, 4, 4, ... by default; see
//! [`GenerateOptions::first_chunk_frames`]) are decoded by one [`StreamingDecoder`] in
//! [`ChunkPolicy::Official`] (which reproduces the official `chunked_decode(300, 25)` for any
//! length), resampled if asked, and handed to the caller's callback. The returned audio is
//! the concatenation of those same samples, so streaming and the final result can never
//! disagree. ICL voices: the reference codes go through the decoder first (their audio is
//! dropped), exactly as the official `decode(ref ++ generated)`; see [`Audio`] for the one
//! sample of the official cut that can precede the chunks.
//!
//! The frame loop runs on a worker thread while the calling thread decodes, resamples and
//! calls the caller's hooks (which always run on the calling thread), so generation never
//! waits for the vocoder: on a GPU model the next frames are made while the last ones are
//! decoded on the decoder's own CUDA stream, on a CPU model the two share the cores.

use std::time::{Duration, Instant};

use super::audio::{Audio, AudioChunk, StreamResampler, Timings};
use super::generate::GenerateOptions;
use super::model::Model;
use super::voice::Voice;
use crate::audio::reference::MAX_SAMPLE_RATE;
use crate::error::{Error, ErrorKind, Result};
use super::audio_decoder::AudioStream;
use crate::model::codec::{ChunkPolicy, icl_cut};
use crate::model::generate::{FinishReason, GeneratedCodes, StopPoll};

/// What the chunk callback returns: `true` to go on, `false` to stop (the call then ends
/// with [`FinishReason::Aborted`]).
pub type ChunkSink<'a> = dyn FnMut(&AudioChunk<'_>) -> bool + 'a;

/// The caller's hooks into one [`Model::generate_with`] call. Both run on the calling
/// thread: the chunk callback between frames, the abort poll before the prefill, during it and
/// between frames.
#[derive(Default)]
pub struct GenerateHooks<'a> {
    /// Receives every chunk; `false` stops generation.
    pub on_chunk: Option<&'a mut ChunkSink<'a>>,
    /// Polled once before the prompt's prefill (`true` there: no work, an empty
    /// `Aborted` result), after each layer of each prefill pass on the CPU (two passes when
    /// the voice prefix is computed for the cache rather than reused; on a GPU, once the
    /// prefill is done) and after every frame (80 ms of audio, so abort latency is one frame of
    /// compute); `true` stops generation. Independent of chunking.
    pub should_abort: Option<&'a mut (dyn FnMut() -> bool + 'a)>,
}

impl Model {
    /// Speaks `text` in `voice`: generates codec frames and decodes them to audio as they
    /// arrive. Blocking; safe to call from many threads at once on one model.
    ///
    /// `on_chunk` (optional) receives the audio in chunks while generation runs (the first of
    /// `options.first_chunk_frames`, then each twice the last, up to `options.chunk_frames`), on the calling thread; its samples are borrowed for that call
    /// only. Returning `false` stops generation: the result then has
    /// [`FinishReason::Aborted`] and holds the audio of every frame made so far. Whether or
    /// not a callback is given, the result is the same.
    ///
    /// Errors: everything [`generate_codes`](Self::generate_codes) reports (voice of another
    /// model family → `VoiceMismatch`; wrong voice kind → `Unsupported`; bad language,
    /// options → `InvalidArgument`), plus a zero `chunk_frames` or `first_chunk_frames`, or an output rate outside
    /// 1 Hz..=768 kHz (`InvalidArgument`).
    pub fn generate(
        &self,
        voice: &Voice,
        text: &str,
        options: &GenerateOptions,
        on_chunk: Option<&mut ChunkSink<'_>>,
    ) -> Result<Audio> {
        // Shorten the callback's lifetime bound to the call's (the hooks have one lifetime).
        let on_chunk = on_chunk.map(|sink| sink as &mut ChunkSink<'_>);
        self.generate_with(voice, text, options, GenerateHooks { on_chunk, should_abort: None })
    }

    /// [`generate`](Self::generate) with every hook: the chunk callback and an abort poll
    /// that runs before the prefill, during it and after each frame (what
    /// `qt_gen_params.abort_cb` maps to).
    pub fn generate_with(
        &self,
        voice: &Voice,
        text: &str,
        options: &GenerateOptions,
        hooks: GenerateHooks<'_>,
    ) -> Result<Audio> {
        let started = Instant::now();
        let decoder = &self.networks().codec_decoder;
        let groups = self.checkpoint().config.talker_config.num_code_groups;
        let chunk_sizes = ChunkSizes::new(options)?;
        let rate = options.output_sample_rate.unwrap_or(decoder.sample_rate());
        if rate == 0 || rate > MAX_SAMPLE_RATE {
            return Err(Error::invalid_argument(format!(
                "output_sample_rate {rate} Hz is outside 1..={MAX_SAMPLE_RATE} Hz"
            )));
        }
        let prepared = self.prepare_request(voice, text, options)?;
        // Everything that can refuse the request comes before the first abort poll.
        let resampler = StreamResampler::new(decoder.sample_rate(), rate)?;
        // The abort hook is polled before the prefill, after each layer of its passes, and after
        // each frame: never twice at once (one RefCell, borrowed for each poll).
        let should_abort = std::cell::RefCell::new(hooks.should_abort);
        let poll = || should_abort.borrow_mut().as_deref_mut().is_some_and(|abort| abort());
        // The first poll comes before the prefill: a call cancelled while it was queued does
        // none of the work.
        if poll() {
            let total_ms = started.elapsed().as_secs_f64() * 1e3;
            return Ok(Audio {
                samples: Vec::new(),
                sample_rate: rate,
                frames: 0,
                codes: Vec::new(),
                chunk_offset: 0,
                finish: FinishReason::Aborted,
                timings: Timings { total_ms, ..Timings::default() },
            });
        }
        let reference = voice.reference().map(|r| r.codes.as_slice());
        let streaming = hooks.on_chunk.is_some();
        let mut out = OutputStream {
            decoder: decoder.stream(ChunkPolicy::Official)?,
            groups,
            chunk_sizes,
            reference,
            reference_tail: Vec::new(),
            resampler,
            rate,
            pending: Vec::new(),
            frames: 0,
            samples: Vec::new(),
            chunks: 0,
            on_chunk: hooks.on_chunk,
            started,
            decode: Duration::ZERO,
            callbacks: Duration::ZERO,
            first_chunk: None,
        };

        // 1. The frame loop runs on a worker thread; decoding and the caller's hooks stay on
        //    this one (they run on the calling thread, as documented), so the next frames
        //    are made while this thread decodes and delivers the last ones.
        let has_hook = should_abort.borrow().is_some();
        let (codes, prefill, generation, stopped, failure) =
            self.frames_beside_decode(&prepared, has_hook, started, &poll, &mut out);
        let mut codes = codes?;
        if let Some(e) = failure {
            return Err(e);
        }
        if stopped {
            // This thread said stop after frame `out.frames`; frames the worker made past it
            // were never looked at (their codes are dropped as well).
            codes.codes.truncate(out.frames * groups);
            codes.finish = FinishReason::Aborted;
        }

        // 2. The rest. Normally a last chunk. After an abort the result is what the caller
        //    already has: with a chunk callback, exactly the chunks delivered (frames made
        //    after the last chunk are dropped, codes included); without one, every frame made
        //    before the stop, decoded.
        if codes.finish == FinishReason::Aborted && streaming {
            let delivered = out.frames - out.pending.len() / groups;
            codes.codes.truncate(delivered * groups);
            out.pending.clear();
        } else {
            out.flush(true)?;
        }

        // 3. ICL at the codec rate: the official cut may keep the reference's last sample.
        let mut samples = std::mem::take(&mut out.samples);
        let mut chunk_offset = 0;
        if let Some(reference) = reference
            && rate == decoder.sample_rate()
        {
            let ref_frames = reference.len() / groups;
            let total = ref_frames + codes.frames();
            let boundary = ref_frames * decoder.samples_per_frame();
            let cut = icl_cut(ref_frames, total, total * decoder.samples_per_frame());
            let lead = boundary.saturating_sub(cut).min(out.reference_tail.len());
            if lead > 0 {
                let tail = &out.reference_tail[out.reference_tail.len() - lead..];
                samples.splice(0..0, tail.iter().copied());
                chunk_offset = lead;
            }
        }

        // 4. Accounting.
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total = started.elapsed();
        let prefill = prefill.unwrap_or(generation);
        let later_frames = codes.frames().saturating_sub(1);
        let audio_ms = samples.len() as f64 * 1e3 / f64::from(rate);
        let busy_ms = ms(total.saturating_sub(out.callbacks));
        let timings = Timings {
            prefill_ms: ms(prefill),
            frame_ms: if later_frames > 0 { ms(generation.saturating_sub(prefill)) / later_frames as f64 } else { 0.0 },
            decode_ms: ms(out.decode),
            callback_ms: ms(out.callbacks),
            first_chunk_ms: out.first_chunk.map_or(0.0, ms),
            total_ms: ms(total),
            rtf: if audio_ms > 0.0 { busy_ms / audio_ms } else { 0.0 },
            prompt_rows: codes.prefill.rows,
            reused_prompt_rows: codes.prefill.reused_rows,
        };
        let frames = codes.frames();
        Ok(Audio {
            samples,
            sample_rate: rate,
            frames,
            codes: codes.codes,
            chunk_offset,
            finish: codes.finish,
            timings,
        })
    }
}

/// What the worker thread tells the calling thread.
enum FromGenerator {
    /// The next frame's codes.
    Frame(Vec<u32>),
    /// A stop poll during the prefill: the answer goes back on the reply channel.
    Poll,
}

impl Model {
    /// Runs the frame loop of `prepared` on a scoped worker thread while this thread takes
    /// its frames: each is added to `out`, the abort hook is polled after it (`poll`), and
    /// every chunk's frames are decoded and delivered. The prefill's stop polls are
    /// relayed here and answered on this thread (the hook is not `Send` and must run on the
    /// calling thread anyway), in the same number and order as a loop on one thread.
    ///
    /// Once this thread says stop (abort hook, callback, failed decode) the worker is told
    /// through a flag it reads after each frame; frames it made meanwhile are discarded.
    /// Returns the worker's result, the time to the first frame, the worker's whole time,
    /// whether this thread stopped it, and the decode failure that did.
    fn frames_beside_decode(
        &self,
        prepared: &super::generate::PreparedRequest<'_>,
        has_hook: bool,
        started: Instant,
        poll: &dyn Fn() -> bool,
        out: &mut OutputStream<'_, '_>,
    ) -> (Result<GeneratedCodes>, Option<Duration>, Duration, bool, Option<Error>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc;

        let stop = AtomicBool::new(false);
        let (to_caller, from_worker) = mpsc::channel::<FromGenerator>();
        let (answer, answers) = mpsc::channel::<bool>();
        let mut prefill: Option<Duration> = None;
        let mut failure: Option<Error> = None;
        let mut stopped = false;
        let stop_flag = &stop;
        let (result, generation) = std::thread::scope(|scope| {
            // Owned by this closure, so that a panic on this thread (a caller's hook) drops
            // them before the scope joins the worker: its sends and its wait for a poll's
            // answer then fail, and it stops instead of waiting forever.
            let (answer, from_worker) = (answer, from_worker);
            let worker = scope.spawn(move || {
                let frames = to_caller.clone();
                let mut sink = |_index: usize, frame: &[u32]| -> bool {
                    // A send fails only once the caller's side is gone: stop then too.
                    frames.send(FromGenerator::Frame(frame.to_vec())).is_ok() && !stop_flag.load(Ordering::Acquire)
                };
                let polls = to_caller;
                let mut prefill_poll = || polls.send(FromGenerator::Poll).is_err() || answers.recv().unwrap_or(true);
                let result = self.run_request(
                    prepared,
                    Some(&mut sink),
                    if has_hook { Some(&mut prefill_poll as &mut StopPoll<'_>) } else { None },
                );
                (result, started.elapsed())
            });
            // Until the worker is done (its senders dropped), serve its messages in order.
            for message in from_worker {
                match message {
                    FromGenerator::Poll => {
                        let _ = answer.send(poll());
                    }
                    FromGenerator::Frame(_) if stopped => {}
                    FromGenerator::Frame(frame) => {
                        prefill.get_or_insert_with(|| started.elapsed());
                        out.pending.extend_from_slice(&frame);
                        out.frames += 1;
                        let go_on = if poll() {
                            false
                        } else if out.pending.len() == out.chunk_sizes.current() * out.groups {
                            out.flush(false).unwrap_or_else(|e| {
                                failure = Some(e);
                                false
                            })
                        } else {
                            true
                        };
                        if !go_on {
                            stopped = true;
                            stop.store(true, Ordering::Release);
                        }
                    }
                }
            }
            worker.join().unwrap_or_else(|_| {
                (Err(Error::new(ErrorKind::Panic, "the frame loop's worker thread panicked")), started.elapsed())
            })
        });
        (result, prefill, generation, stopped, failure)
    }
}

/// Frames in each streamed chunk of one request: `first` (at most `full`), then each chunk
/// twice the one before, up to `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkSizes {
    next: usize,
    full: usize,
}

impl ChunkSizes {
    /// The sizes `options` asks for; `InvalidArgument` for a zero `chunk_frames` or
    /// `first_chunk_frames`.
    pub(super) fn new(options: &GenerateOptions) -> Result<ChunkSizes> {
        let full = options.chunk_frames;
        if full == 0 {
            return Err(Error::invalid_argument("chunk_frames must be at least 1"));
        }
        let first = options.first_chunk_frames.unwrap_or(full);
        if first == 0 {
            return Err(Error::invalid_argument("first_chunk_frames must be at least 1 (or None: every chunk chunk_frames)"));
        }
        Ok(ChunkSizes { next: first.min(full), full })
    }

    /// Frames the chunk being filled holds.
    fn current(&self) -> usize {
        self.next
    }

    /// Moves on to the next chunk.
    fn advance(&mut self) {
        self.next = self.next.saturating_mul(2).min(self.full);
    }
}

/// Per-request decode state: codes waiting for their chunk, the decoder stream, the
/// resampler, and the samples produced so far (the returned audio, from the boundary on).
struct OutputStream<'m, 'h> {
    decoder: AudioStream<'m>,
    groups: usize,
    /// Frames of the chunk being filled, and of the later ones.
    chunk_sizes: ChunkSizes,
    /// ICL reference codes, until they are decoded (just before the first chunk).
    reference: Option<&'m [u32]>,
    /// The last samples of the decoded reference (for the official ICL cut).
    reference_tail: Vec<f32>,
    resampler: StreamResampler,
    rate: u32,
    /// Generated codes not decoded yet (fewer than a chunk's frames between calls).
    pending: Vec<u32>,
    /// Frames generated so far.
    frames: usize,
    samples: Vec<f32>,
    chunks: usize,
    /// `None` once the caller asked to stop (nothing more is delivered).
    on_chunk: Option<&'h mut ChunkSink<'h>>,
    started: Instant,
    decode: Duration,
    callbacks: Duration,
    first_chunk: Option<Duration>,
}

/// Samples of the decoded reference kept for the ICL cut, which reaches back at most one
/// sample (a few more cost nothing and keep the code obviously safe).
const REFERENCE_TAIL: usize = 16;

impl OutputStream<'_, '_> {
    /// Decodes the pending frames and hands the result to the callback as one chunk
    /// (`last`: the end of the request, also flushing the resampler). Returns whether
    /// generation may go on: false once the caller said stop.
    fn flush(&mut self, last: bool) -> Result<bool> {
        let t = Instant::now();
        // 1. ICL: prime the decoder with the reference; its audio is not part of the output.
        if let Some(reference) = self.reference.take() {
            let audio = self.decoder.push(reference, self.groups)?;
            self.reference_tail = audio[audio.len().saturating_sub(REFERENCE_TAIL)..].to_vec();
        }
        // 2. Decode, then resample (the resampler may hold some samples back until `last`).
        let wav = self.decoder.push(&self.pending, self.groups)?;
        self.pending.clear();
        self.chunk_sizes.advance();
        let mut piece = self.resampler.push(&wav)?;
        if last {
            piece.extend(self.resampler.finish()?);
        }
        let first_sample = self.samples.len();
        self.samples.extend_from_slice(&piece);
        self.decode += t.elapsed();
        if self.first_chunk.is_none() && (!piece.is_empty() || last) && self.frames > 0 {
            self.first_chunk = Some(self.started.elapsed());
        }

        // 3. Deliver: empty chunks only to mark the end.
        let Some(sink) = self.on_chunk.as_deref_mut() else {
            return Ok(true);
        };
        if piece.is_empty() && !last {
            return Ok(true);
        }
        let chunk = AudioChunk {
            samples: &self.samples[first_sample..],
            sample_rate: self.rate,
            index: self.chunks,
            first_sample,
            frames: self.frames,
            is_last: last,
        };
        let t = Instant::now();
        let go_on = sink(&chunk);
        self.callbacks += t.elapsed();
        self.chunks += 1;
        if !go_on {
            self.on_chunk = None;
        }
        Ok(go_on)
    }
}
