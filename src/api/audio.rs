//! The output side of generation: [`Audio`] (what [`Model::generate`](super::Model::generate)
//! returns), [`AudioChunk`] (what its callback sees), [`Timings`], WAV encoding, and the
//! streaming resampler that produces both at a caller-chosen sample rate.

use std::io::Cursor;
use std::path::Path;

use rubato::audioadapter_buffers::owned::InterleavedOwned;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::audio::resample::resampled_len;
use crate::error::{Error, ErrorKind, Result};
use crate::model::generate::FinishReason;

/// Speech produced by [`Model::generate`](super::Model::generate).
///
/// # How the streamed chunks relate to `samples`
///
/// `samples[chunk_offset..]` is exactly the concatenation of every chunk's samples, in order,
/// aborted or not: after an abort, frames generated after the last delivered chunk are
/// dropped from the result (`frames` and `codes` too), so the result is what the caller
/// heard. Without a chunk callback an aborted result holds every frame made before the
/// stop. `chunk_offset` is 0 except in one
/// case: an in-context (ICL) clone at 24 kHz, where the official output is
/// `decode(ref ++ generated)[cut..]` with `cut = int(ref / total · len)` in float64, and that
/// cut sometimes falls one sample *before* the reference boundary (e.g. 39 of 74 frames gives
/// 74 879 = 39·1920 − 1). Whether it does depends on the final frame count, so chunks, which
/// are sent while the count is still unknown, always start exactly at the boundary, and
/// `samples` then carries that one reference sample in front (`chunk_offset == 1`).
///
/// At 24 kHz `samples` is the official output (the codec decode of `chunked_decode(300, 25)`
/// reproduced exactly, to f32 rounding). At another `output_sample_rate` it is
/// [`audio::resample`](fn@crate::audio::resample) of the 24 kHz stream from the boundary on
/// (`chunk_offset` is then always 0), computed incrementally so chunks can be sent early.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Mono samples, nominally in [-1, 1] (the codec clamps; resampling may overshoot
    /// slightly).
    pub samples: Vec<f32>,
    /// Hz: the codec's 24000, or `GenerateOptions::output_sample_rate`.
    pub sample_rate: u32,
    /// Codec frames generated (80 ms each); an ICL voice's reference frames are not counted.
    pub frames: usize,
    /// The generated codes, row-major `[frames, num_code_groups]`.
    pub codes: Vec<u32>,
    /// Index in `samples` where the streamed chunks begin (0 or 1; see the type docs).
    pub chunk_offset: usize,
    /// End of speech, frame limit, or aborted by the caller.
    pub finish: FinishReason,
    /// Where the time went.
    pub timings: Timings,
}

/// One piece of streamed audio, borrowed for the duration of the callback.
#[derive(Debug, Clone, Copy)]
pub struct AudioChunk<'a> {
    /// Mono samples at `sample_rate`. Empty only on the last chunk, when nothing was left to
    /// send (it then just marks the end). At a resampled rate the resampler holds back up to
    /// one block (4096 input samples) plus its filter delay, so chunk sizes vary there and
    /// the last chunk carries that tail.
    pub samples: &'a [f32],
    /// Hz, the same for every chunk of a request.
    pub sample_rate: u32,
    /// 0, 1, 2, … in order of delivery.
    pub index: usize,
    /// Position of `samples[0]` in the stream: the number of samples in all earlier chunks.
    /// In the returned [`Audio`], that is `samples[chunk_offset + first_sample]`.
    pub first_sample: usize,
    /// Codec frames generated so far (this chunk included).
    pub frames: usize,
    /// Set on the final chunk of a request that was not aborted, exactly once.
    pub is_last: bool,
}

/// Where the time of one [`Model::generate`](super::Model::generate) call went, in
/// milliseconds of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// From the call until the first codec frame existed: prompt assembly, the talker's
    /// prefill over the prompt, and that frame's sampling and code prediction.
    pub prefill_ms: f64,
    /// Mean time per later frame: one talker step, sampling and the code predictor (the
    /// final step that samples end-of-speech is included; decoding and callbacks are not).
    pub frame_ms: f64,
    /// Codec decoding (an ICL voice's reference included) and output resampling.
    pub decode_ms: f64,
    /// Time spent inside the caller's callbacks.
    pub callback_ms: f64,
    /// From the call until the first chunk's audio was ready (0 when no frame was made).
    pub first_chunk_ms: f64,
    /// The whole call.
    pub total_ms: f64,
    /// Real-time factor: `(total_ms − callback_ms) / audio duration` (below 1 is faster
    /// than real time; 0 when no audio was made).
    pub rtf: f64,
    /// Rows of the talker prompt the prefill covered.
    pub prompt_rows: usize,
    /// Of those, rows whose keys and values came from the model's voice prefix cache (an
    /// earlier request with the same voice, language and instruction computed them).
    pub reused_prompt_rows: usize,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// A 16-bit PCM mono WAV file of `samples` (see [`encode_wav`]).
    pub fn to_wav_bytes(&self) -> Result<Vec<u8>> {
        encode_wav(&self.samples, self.sample_rate)
    }

    /// Writes `samples` to `path` as a 16-bit PCM mono WAV file (see [`encode_wav`]).
    pub fn write_wav(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_wav_bytes()?;
        std::fs::write(path, bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{} cannot be written: {e}", path.display())))
    }
}

/// Encodes mono f32 samples as a 16-bit PCM WAV file in memory. Samples are clamped to
/// [-1, 1] and scaled by 32767 with round-half-to-even, which is what libsndfile (and so
/// the `soundfile.write` of the official examples) does for float input.
pub fn encode_wav(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>> {
    if sample_rate == 0 {
        return Err(Error::invalid_argument("WAV sample rate must be positive"));
    }
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let wav_error = |e: hound::Error| Error::invalid_argument(format!("WAV encoding failed: {e}"));
    let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(wav_error)?;
    {
        let mut pcm = writer.get_i16_writer(samples.len() as u32);
        for &x in samples {
            // NaN cannot come out of the codec (it clamps); map it to silence regardless.
            let x = if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) };
            pcm.write_sample((x * 32767.0).round_ties_even() as i16);
        }
        pcm.flush().map_err(wav_error)?;
    }
    writer.finalize().map_err(wav_error)?;
    Ok(cursor.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Streaming resampler
// ---------------------------------------------------------------------------------------------

/// Input block of the FFT resampler; equal to `audio::resample`'s so the streamed output is
/// the same numbers as a one-shot resample of the whole signal (a test holds them together).
const RESAMPLE_BLOCK: usize = 4096;

/// Incremental sample-rate conversion whose concatenated output equals
/// [`audio::resample`](fn@crate::audio::resample) of the concatenated input, bit for bit.
///
/// `resample` runs rubato's synchronous FFT resampler over fixed input blocks from the
/// start of the signal, zero-pads the last block, pumps zero blocks until the output is
/// long enough, drops the filter delay in front and keeps `resampled_len` samples. That is
/// a causal block process, so the same blocks fed as input arrives give the same output;
/// the price is latency: a block's output appears once the whole block (4096 input samples,
/// 170 ms at 24 kHz) is in, and the first `delay` output samples are dropped.
pub(crate) struct StreamResampler {
    from: u32,
    to: u32,
    /// `None` when the rates are equal (a copy, as in `resample`).
    fft: Option<Fft<f64>>,
    /// Input not yet processed (less than one block).
    pending: Vec<f64>,
    /// Raw output samples still to drop (the filter delay).
    to_trim: usize,
    /// Input samples pushed so far.
    input_len: usize,
    /// Output samples returned so far.
    output_len: usize,
}

impl StreamResampler {
    pub(crate) fn new(from: u32, to: u32) -> Result<Self> {
        if from == 0 || to == 0 {
            return Err(Error::invalid_argument(format!("cannot resample from {from} Hz to {to} Hz")));
        }
        let fft = if from == to {
            None
        } else {
            let fft = Fft::<f64>::new_custom(
                from as usize,
                to as usize,
                RESAMPLE_BLOCK,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| Error::invalid_argument(format!("cannot resample from {from} Hz to {to} Hz: {e}")))?;
            Some(fft)
        };
        let to_trim = fft.as_ref().map_or(0, |f| f.output_delay());
        Ok(StreamResampler { from, to, fft, pending: Vec::new(), to_trim, input_len: 0, output_len: 0 })
    }

    /// Feeds `input`; returns the output that is final now (possibly none).
    pub(crate) fn push(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        self.input_len += input.len();
        let Some(fft) = self.fft.as_mut() else {
            self.output_len += input.len();
            return Ok(input.to_vec());
        };
        self.pending.extend(input.iter().map(|&x| f64::from(x)));
        let mut out = Vec::new();
        loop {
            let need = fft.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            let block: Vec<f64> = self.pending.drain(..need).collect();
            run_block(fft, block, &mut self.to_trim, &mut out, self.from, self.to)?;
        }
        self.output_len += out.len();
        Ok(out)
    }

    /// Ends the signal: returns the rest, so that the total output is exactly
    /// `resampled_len(total input, from, to)` samples.
    pub(crate) fn finish(&mut self) -> Result<Vec<f32>> {
        let target = resampled_len(self.input_len, self.from, self.to);
        let Some(fft) = self.fft.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if self.input_len == 0 {
            return Ok(out);
        }
        // As `process_all`: the last partial block zero-padded, then zero blocks until
        // rubato's own length `ceil(n · fft ratio)` exists; `resample` then pads or cuts that
        // to librosa's length, which can differ by one through the ratio's rounding.
        let rubato_len = (fft.resample_ratio() * self.input_len as f64).ceil() as usize;
        let mut block = std::mem::take(&mut self.pending);
        while self.output_len + out.len() < rubato_len {
            block.resize(fft.input_frames_next(), 0.0);
            run_block(fft, std::mem::take(&mut block), &mut self.to_trim, &mut out, self.from, self.to)?;
        }
        out.truncate(rubato_len.saturating_sub(self.output_len));
        out.resize(target.saturating_sub(self.output_len), 0.0);
        self.output_len += out.len();
        Ok(out)
    }
}

/// One block through the resampler; appends its output minus what is left of the delay.
fn run_block(
    fft: &mut Fft<f64>,
    block: Vec<f64>,
    to_trim: &mut usize,
    out: &mut Vec<f32>,
    from: u32,
    to: u32,
) -> Result<()> {
    let n = block.len();
    let input = InterleavedOwned::new_from(block, 1, n).expect("one channel of n frames");
    let raw = fft
        .process(&input, None)
        .map_err(|e| Error::invalid_argument(format!("resampling from {from} Hz to {to} Hz failed: {e}")))?
        .take_data();
    let skip = (*to_trim).min(raw.len());
    *to_trim -= skip;
    out.extend(raw[skip..].iter().map(|&x| x as f32));
    Ok(())
}
