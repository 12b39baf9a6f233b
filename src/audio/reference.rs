//! A reference recording, from a file, encoded bytes or caller PCM, to validated mono 24 kHz.
//!
//! Order of operations (as in `Qwen3TTSModel.create_voice_clone_prompt`): decode → mix to mono
//! by averaging channels → resample to 24 kHz (only when the rate differs) → the speaker
//! encoder's mel front end and the codec encoder both read the same 24 kHz signal. The checks
//! of [`mod@super::validate`] run in between: finiteness on the raw samples, duration before the
//! (costly) resampling, silence on the mono mix the model sees.

use std::path::Path;

use super::TARGET_SAMPLE_RATE;
use super::decode::decode;
use super::mix::downmix;
use super::resample::resample;
use super::validate::{ReferenceLimits, check_duration, check_finite, check_not_silent};
use crate::error::{Error, Result};

/// Highest sample rate accepted for a reference (from a caller or a file header). 768 kHz
/// covers every professional audio rate.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Lowest sample rate accepted for a reference. Speech needs ~8 kHz (telephony); below 1 kHz
/// a recording holds no intelligible speech, and the resampler's work follows the rate ratio,
/// not the number of samples (3 samples at 1 Hz would ask for gigabytes).
pub const MIN_SAMPLE_RATE: u32 = 1_000;

/// Refuses a reference rate outside [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`], before anything
/// is sized from it.
fn check_sample_rate(what: &str, sample_rate: u32) -> Result<()> {
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(Error::invalid_argument(format!(
            "{what}: sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
        )));
    }
    Ok(())
}

/// Largest file [`ReferenceAudio::from_file`] reads: 256 MiB, more than 30 s of 8-channel
/// 192 kHz 32-bit PCM.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

pub use super::decode::MAX_CHANNELS;

/// A validated reference recording: mono, 24 kHz, finite, not silent, within the duration
/// limits. Immutable.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceAudio {
    samples: Vec<f32>,
    source_sample_rate: u32,
    source_channels: usize,
}

impl ReferenceAudio {
    /// Reads and decodes an audio file (format detected from its content). Files larger than
    /// [`MAX_FILE_BYTES`] are refused before being read.
    pub fn from_file(path: &Path, limits: &ReferenceLimits) -> Result<Self> {
        limits.validate()?;
        let bytes = crate::files::read_bounded(path, MAX_FILE_BYTES, |size| {
            Error::invalid_argument(format!(
                "reference audio {}: the file is {size} bytes; more than {MAX_FILE_BYTES} bytes cannot be a usable \
                 reference (at most {} s is accepted)",
                path.display(),
                limits.max_seconds
            ))
        })?;
        Self::from_bytes(&bytes, limits).map_err(|e| e.context(format!("reference audio {}", path.display())))
    }

    /// Decodes an encoded file held in memory (WAV, FLAC, Ogg Vorbis or MP3).
    pub fn from_bytes(bytes: &[u8], limits: &ReferenceLimits) -> Result<Self> {
        limits.validate()?;
        let decoded = decode(bytes, limits.max_seconds)?;
        let what = format!("reference audio ({}, {} Hz, {} ch)", decoded.codec, decoded.sample_rate, decoded.channels);
        if decoded.channels > MAX_CHANNELS {
            return Err(Error::invalid_argument(format!("{what}: more than {MAX_CHANNELS} channels")));
        }
        check_sample_rate(&what, decoded.sample_rate)?;
        if decoded.samples.is_empty() && !decoded.truncated {
            return Err(Error::invalid_argument(format!("{what} contains no audio samples")));
        }
        check_duration(&what, decoded.frames(), decoded.sample_rate, decoded.truncated, limits)?;
        check_finite(&what, &decoded.samples, decoded.channels)?;
        Self::finish(&what, &decoded.samples, decoded.channels, decoded.sample_rate, limits)
    }

    /// Takes raw PCM from the caller: `interleaved` holds frames of `channels` f32 samples
    /// (nominally in [-1, 1]) at `sample_rate` Hz. Same checks as for files.
    pub fn from_pcm(interleaved: &[f32], channels: usize, sample_rate: u32, limits: &ReferenceLimits) -> Result<Self> {
        limits.validate()?;
        let what = "reference PCM";
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(Error::invalid_argument(format!(
                "{what}: channels is {channels}; 1..={MAX_CHANNELS} expected"
            )));
        }
        check_sample_rate(what, sample_rate)?;
        if interleaved.is_empty() {
            return Err(Error::invalid_argument(format!("{what} is empty (0 samples)")));
        }
        if !interleaved.len().is_multiple_of(channels) {
            return Err(Error::invalid_argument(format!(
                "{what}: {} samples are not a whole number of {channels}-channel frames",
                interleaved.len()
            )));
        }
        check_finite(what, interleaved, channels)?;
        check_duration(what, interleaved.len() / channels, sample_rate, false, limits)?;
        Self::finish(what, interleaved, channels, sample_rate, limits)
    }

    fn finish(
        what: &str,
        interleaved: &[f32],
        channels: usize,
        sample_rate: u32,
        limits: &ReferenceLimits,
    ) -> Result<Self> {
        // Finite input can still overflow: channels near f32::MAX summed by the mix, or the
        // resampler's overshoot on such values (both found by the reference_audio fuzzer). The
        // mix is checked before resampling: an infinite sample makes the resampler's FFT panic
        // inside rubato ("Imaginary part of first value was non-zero").
        let mono = downmix(interleaved, channels);
        check_no_overflow(what, &mono, "mixed to mono")?;
        check_not_silent(what, &mono, limits)?;
        let samples = resample(&mono, sample_rate, TARGET_SAMPLE_RATE)?;
        check_no_overflow(what, &samples, &format!("resampled to {TARGET_SAMPLE_RATE} Hz"))?;
        Ok(ReferenceAudio { samples, source_sample_rate: sample_rate, source_channels: channels })
    }

    /// Mono samples at [`TARGET_SAMPLE_RATE`].
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    pub fn into_samples(self) -> Vec<f32> {
        self.samples
    }

    /// Always [`TARGET_SAMPLE_RATE`] (24 kHz).
    pub fn sample_rate(&self) -> u32 {
        TARGET_SAMPLE_RATE
    }

    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE)
    }

    /// Rate of the input before resampling.
    pub fn source_sample_rate(&self) -> u32 {
        self.source_sample_rate
    }

    /// Channels of the input before the downmix.
    pub fn source_channels(&self) -> usize {
        self.source_channels
    }

    /// Whether the input was resampled (and so cannot match the reference bit for bit; see
    /// [`mod@super::resample`]).
    pub fn was_resampled(&self) -> bool {
        self.source_sample_rate != TARGET_SAMPLE_RATE
    }
}

/// An error when a step turned finite input into a non-finite sample (`step`: what it did).
fn check_no_overflow(what: &str, samples: &[f32], step: &str) -> Result<()> {
    match samples.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::invalid_argument(format!(
            "{what}: sample values near the f32 limit overflow when {step} (sample {i} is {}); audio is \
             expected within [-1, 1]",
            samples[i]
        ))),
    }
}
