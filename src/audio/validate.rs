//! Checks that a reference recording is usable, with messages that say what to fix.
//!
//! The official pipeline checks nothing (it only prints a warning for samples outside
//! [-1, 1]); garbage in silently gives a garbage voice. We reject what cannot work:
//!
//! | check | rule | why |
//! |---|---|---|
//! | finite | every sample finite | one NaN/Inf poisons the whole mel and x-vector |
//! | too short | < [`ReferenceLimits::min_seconds`] (default 1 s) | hard floors are 385 samples (mel reflect padding) and 5 mel frames (the speaker encoder's dilation-4 reflect padding), ≈ 53 ms; below ~1 s an x-vector (ECAPA is trained on 2–3 s crops) is mostly edge effects and an ICL prompt has < 13 codec frames. 3–10 s works best |
//! | too long | > [`ReferenceLimits::max_seconds`] (default 30 s) | rejected, not trimmed: in ICL mode the transcript must match the audio, so a silent cut would desynchronise them; the reference codes (12.5 per second) also enter the prompt, so long references cost latency and memory for no quality gain |
//! | silent | peak \|x\| < [`ReferenceLimits::silence_peak`] (default 1e-4 ≈ −80 dBFS, 3 LSB of 16-bit) | digital silence or a dead microphone carries no voice; checked on the mono mix the model sees |
//!
//! Samples outside [-1, 1] are accepted (the reference only warns; float WAV may exceed full
//! scale) and logged.

use crate::error::{Error, Result};

/// Bounds a reference recording must respect. [`Default`] gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceLimits {
    /// Shortest accepted duration, seconds.
    pub min_seconds: f64,
    /// Longest accepted duration, seconds (longer input is rejected, never trimmed).
    pub max_seconds: f64,
    /// A mono signal whose absolute peak is below this is "silent".
    pub silence_peak: f32,
}

/// The longest reference any caller may allow (`ReferenceLimits::max_seconds`): its codes
/// enter every prompt made with the voice, so this bounds a voice's prefill work and memory.
pub const MAX_REFERENCE_SECONDS: f64 = 120.0;

impl ReferenceLimits {
    pub const DEFAULT_MIN_SECONDS: f64 = 1.0;
    pub const DEFAULT_MAX_SECONDS: f64 = 30.0;
    pub const DEFAULT_SILENCE_PEAK: f32 = 1e-4;

    /// Positive finite durations, min ≤ max ≤ [`MAX_REFERENCE_SECONDS`].
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(self.min_seconds) || !ok(self.max_seconds) || self.min_seconds > self.max_seconds {
            return Err(Error::invalid_argument(format!(
                "reference limits {}..{} s: both must be positive and min at most max",
                self.min_seconds, self.max_seconds
            )));
        }
        if self.max_seconds > MAX_REFERENCE_SECONDS {
            return Err(Error::invalid_argument(format!(
                "max_seconds {} exceeds the {MAX_REFERENCE_SECONDS} s a reference may last",
                self.max_seconds
            )));
        }
        Ok(())
    }
}

impl Default for ReferenceLimits {
    fn default() -> Self {
        ReferenceLimits {
            min_seconds: Self::DEFAULT_MIN_SECONDS,
            max_seconds: Self::DEFAULT_MAX_SECONDS,
            silence_peak: Self::DEFAULT_SILENCE_PEAK,
        }
    }
}

/// Every sample finite. `what` names the input in the message.
pub fn check_finite(what: &str, samples: &[f32], channels: usize) -> Result<()> {
    match samples.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let count = samples.iter().filter(|x| !x.is_finite()).count();
            let channels = channels.max(1);
            Err(Error::invalid_argument(format!(
                "{what}: sample {} of channel {} is {} ({count} non-finite sample(s) in all); audio must be finite",
                i / channels,
                i % channels,
                samples[i]
            )))
        }
    }
}

/// Duration within `[min_seconds, max_seconds]`. `truncated` says the decoder stopped early
/// because the stream is longer than `max_seconds`.
pub fn check_duration(
    what: &str,
    frames: usize,
    sample_rate: u32,
    truncated: bool,
    limits: &ReferenceLimits,
) -> Result<()> {
    let seconds = frames as f64 / f64::from(sample_rate.max(1));
    if truncated || seconds > limits.max_seconds {
        let length = if truncated { "more than".to_string() } else { format!("{seconds:.2} s, more than") };
        return Err(Error::invalid_argument(format!(
            "{what} is too long ({length} the {} s limit); cut it to a 3–10 s clip (and its transcript to match)",
            limits.max_seconds
        )));
    }
    if seconds < limits.min_seconds {
        return Err(Error::invalid_argument(format!(
            "{what} is too short ({seconds:.3} s = {frames} samples at {sample_rate} Hz; at least {} s is needed, 3–10 s works best)",
            limits.min_seconds
        )));
    }
    Ok(())
}

/// Peak of the mono signal at or above `silence_peak`; logs samples beyond full scale.
pub fn check_not_silent(what: &str, mono: &[f32], limits: &ReferenceLimits) -> Result<()> {
    let peak = mono.iter().fold(0f32, |m, &x| m.max(x.abs()));
    if peak < limits.silence_peak {
        let level = if peak > 0.0 {
            format!("peak {peak:.1e} = {:.1} dBFS", 20.0 * peak.log10())
        } else {
            "digital silence: every sample is 0".into()
        };
        return Err(Error::invalid_argument(format!(
            "{what} is silent ({level}; the threshold is a peak of {:.0e}): record or select a clip with speech",
            limits.silence_peak
        )));
    }
    if peak > 1.0 {
        log::warn!("{what}: peak {peak} exceeds full scale (1.0); used as is, like the reference implementation");
    }
    Ok(())
}
