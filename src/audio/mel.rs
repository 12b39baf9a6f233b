//! The speaker encoder's log-mel front end: the official `mel_spectrogram` (qwen-tts
//! `modeling_qwen3_tts.py`) as called by `extract_speaker_embedding`:
//!
//! ```text
//! y      = reflect_pad(y, (n_fft - hop) / 2 each side)          # 384 samples
//! spec   = |STFT(y, n_fft 1024, hop 256, periodic Hann 1024, center=False)|
//!          computed as sqrt(re² + im² + 1e-9)
//! mel    = librosa.filters.mel(sr 24000, n_fft 1024, n_mels 128, fmin 0, fmax 12000) · spec
//! logmel = ln(max(mel, 1e-5))
//! ```
//!
//! Frames: `1 + (n + 2·384 − 1024) / 256 = floor(n / 256)` for `n ≥ 256`; the reflect padding
//! needs `n > 384` (as `torch.nn.functional.pad(mode="reflect")` does).
//!
//! The filter bank is librosa's Slaney-scale, Slaney-normalised `filters.mel`, reproduced
//! step by step in f64 with the same float32 roundings (each triangle row is stored as f32
//! before the f64 area normalisation, then rounded again), so the weights equal librosa's
//! bit for bit. The STFT runs in f32 (`realfft`), like `torch.stft` on CPU; FFT rounding
//! differs, which changes results at the 1e-6 level.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::error::{Error, Result};

/// Parameters of the front end. [`MelConfig::default`] is the one the speaker encoder uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_size: usize,
    pub hop_size: usize,
    pub n_mels: usize,
    pub fmin: f64,
    pub fmax: f64,
}

impl Default for MelConfig {
    /// `extract_speaker_embedding`'s call: 24 kHz, n_fft = win = 1024, hop 256, 128 mels,
    /// 0–12000 Hz.
    fn default() -> Self {
        MelConfig {
            sample_rate: 24_000,
            n_fft: 1024,
            win_size: 1024,
            hop_size: 256,
            n_mels: 128,
            fmin: 0.0,
            fmax: 12_000.0,
        }
    }
}

/// A log-mel spectrogram, `[frames, n_mels]` row-major (the layout the speaker encoder takes).
#[derive(Debug, Clone, PartialEq)]
pub struct MelSpectrogram {
    pub data: Vec<f32>,
    pub frames: usize,
    pub n_mels: usize,
}

impl MelSpectrogram {
    /// Row `t` (the `n_mels` values of frame `t`).
    pub fn frame(&self, t: usize) -> &[f32] {
        &self.data[t * self.n_mels..(t + 1) * self.n_mels]
    }
}

/// A reusable front end: window, filter bank and FFT plan. Immutable; `Send + Sync`.
pub struct MelFrontEnd {
    config: MelConfig,
    /// Periodic Hann window, zero-padded (centred) to `n_fft`.
    window: Vec<f32>,
    /// `[n_mels, n_fft / 2 + 1]` row-major.
    filters: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for MelFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelFrontEnd").field("config", &self.config).finish_non_exhaustive()
    }
}

impl MelFrontEnd {
    /// Builds the window, the filter bank and the FFT plan.
    ///
    /// Errors (`InvalidArgument`) for parameters `mel_spectrogram` could not run with: zero
    /// sizes, a window longer than the FFT, a hop longer than the FFT, `fmax` above Nyquist or
    /// not above `fmin`.
    pub fn new(config: MelConfig) -> Result<Self> {
        let c = &config;
        if c.sample_rate == 0 || c.n_fft == 0 || c.win_size == 0 || c.hop_size == 0 || c.n_mels == 0 {
            return Err(Error::invalid_argument(format!("mel front end: zero size in {c:?}")));
        }
        if c.win_size > c.n_fft || c.hop_size > c.n_fft {
            return Err(Error::invalid_argument(format!(
                "mel front end: win_size {} and hop_size {} must not exceed n_fft {}",
                c.win_size, c.hop_size, c.n_fft
            )));
        }
        if !(c.fmin >= 0.0 && c.fmax > c.fmin && c.fmax <= f64::from(c.sample_rate) / 2.0) {
            return Err(Error::invalid_argument(format!(
                "mel front end: need 0 <= fmin < fmax <= sample_rate / 2, got fmin {} fmax {} at {} Hz",
                c.fmin, c.fmax, c.sample_rate
            )));
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(c.n_fft);
        Ok(MelFrontEnd { config, window: hann_window(c.win_size, c.n_fft), filters: slaney_mel_filters(c), fft })
    }

    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// The periodic Hann window, centred in `n_fft` samples (zeros around a shorter window).
    pub fn window(&self) -> &[f32] {
        &self.window
    }

    /// The filter bank, `[n_mels, n_fft / 2 + 1]` row-major (librosa's float32 values).
    pub fn filters(&self) -> &[f32] {
        &self.filters
    }

    /// Padding added on each side before the STFT: `(n_fft − hop) / 2`.
    pub fn padding(&self) -> usize {
        (self.config.n_fft - self.config.hop_size) / 2
    }

    /// Frames produced for `n` input samples (0 when `n` is too short to pad).
    pub fn frames_for(&self, n: usize) -> usize {
        let padded = n + 2 * self.padding();
        if n <= self.padding() || padded < self.config.n_fft {
            return 0;
        }
        1 + (padded - self.config.n_fft) / self.config.hop_size
    }

    /// Log-mel spectrogram of `samples` (mono, at `config.sample_rate`).
    ///
    /// Errors (`InvalidArgument`): fewer than `padding() + 1` samples (reflect padding needs
    /// the pad to be shorter than the signal, exactly as in PyTorch), or a non-finite sample.
    pub fn compute(&self, samples: &[f32]) -> Result<MelSpectrogram> {
        let c = &self.config;
        let pad = self.padding();
        let n = samples.len();
        check_signal(samples, pad)?;
        let frames = self.frames_for(n);

        // Reflect padding (the edge sample is not repeated): [x_p .. x_1, x_0 .. x_{n-1}, x_{n-2} ..].
        let mut padded = Vec::with_capacity(n + 2 * pad);
        padded.extend((1..=pad).rev().map(|i| samples[i]));
        padded.extend_from_slice(samples);
        padded.extend((1..=pad).map(|i| samples[n - 1 - i]));

        let bins = c.n_fft / 2 + 1;
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut magnitude = vec![0f32; bins];
        let mut out = vec![0f32; frames * c.n_mels];
        for t in 0..frames {
            let start = t * c.hop_size;
            for ((f, &x), &w) in frame.iter_mut().zip(&padded[start..start + c.n_fft]).zip(&self.window) {
                *f = x * w;
            }
            self.fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch).expect("buffers come from the plan");
            for (m, z) in magnitude.iter_mut().zip(&spectrum) {
                *m = magnitude_eps(*z);
            }
            for (mel, row) in out[t * c.n_mels..(t + 1) * c.n_mels].iter_mut().zip(self.filters.chunks_exact(bins)) {
                let energy: f32 = row.iter().zip(&magnitude).map(|(&w, &m)| w * m).sum();
                *mel = energy.max(1e-5).ln();
            }
        }
        Ok(MelSpectrogram { data: out, frames, n_mels: c.n_mels })
    }
}

/// The input checks of every log-mel front end: more samples than the reflect padding `pad`
/// (PyTorch's rule), all finite.
pub(crate) fn check_signal(samples: &[f32], pad: usize) -> Result<()> {
    let n = samples.len();
    if n <= pad {
        return Err(Error::invalid_argument(format!(
            "mel spectrogram: {n} samples are too few; reflect padding by {pad} needs at least {} samples",
            pad + 1
        )));
    }
    if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid_argument(format!("mel spectrogram: sample {i} is {}", samples[i])));
    }
    Ok(())
}

/// `sqrt(re² + im² + 1e-9)` in f32, as `torch.view_as_real(spec).pow(2).sum(-1) + 1e-9`.
fn magnitude_eps(z: Complex<f32>) -> f32 {
    (z.re * z.re + z.im * z.im + 1e-9).sqrt()
}

/// `torch.hann_window(win, periodic=True)`: `0.5 − 0.5·cos(2πk / win)`, with PyTorch's f32
/// operation order (`arange · f32(2π / win)`, cos, `· −0.5`, `+ 0.5`); centred in `n_fft`
/// with zeros when shorter, as `torch.stft` does.
fn hann_window(win: usize, n_fft: usize) -> Vec<f32> {
    let mut w = vec![0f32; n_fft];
    let offset = (n_fft - win) / 2;
    let step = (2.0 * std::f64::consts::PI / win as f64) as f32;
    for k in 0..win {
        w[offset + k] = (k as f32 * step).cos() * -0.5 + 0.5;
    }
    w
}

/// librosa `hz_to_mel(f, htk=False)`: linear below 1 kHz, logarithmic above (Slaney).
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
}

/// librosa `mel_to_hz(m, htk=False)`.
fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
}

/// `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney",
/// dtype=float32)`, `[n_mels, n_fft/2 + 1]` row-major, with librosa's operation order.
fn slaney_mel_filters(c: &MelConfig) -> Vec<f32> {
    let bins = c.n_fft / 2 + 1;
    // fft_frequencies = np.fft.rfftfreq(n_fft, 1/sr) = k · (1 / (n_fft · (1/sr))).
    let step = 1.0 / (c.n_fft as f64 * (1.0 / f64::from(c.sample_rate)));
    let fftfreqs: Vec<f64> = (0..bins).map(|k| k as f64 * step).collect();

    // mel_frequencies(n_mels + 2): np.linspace(min_mel, max_mel) (start + i·step, last = stop)
    // mapped back to Hz.
    let points = c.n_mels + 2;
    let (min_mel, max_mel) = (hz_to_mel(c.fmin), hz_to_mel(c.fmax));
    let mel_step = (max_mel - min_mel) / (points - 1) as f64;
    let mel_f: Vec<f64> =
        (0..points).map(|i| mel_to_hz(if i == points - 1 { max_mel } else { i as f64 * mel_step + min_mel })).collect();

    let mut weights = vec![0f32; c.n_mels * bins];
    for (i, row) in weights.chunks_exact_mut(bins).enumerate() {
        let (fdiff_lo, fdiff_hi) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        // Slaney area normalisation, applied (in f64) to the row already stored as f32.
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (w, &f) in row.iter_mut().zip(&fftfreqs) {
            let lower = -(mel_f[i] - f) / fdiff_lo;
            let upper = (mel_f[i + 2] - f) / fdiff_hi;
            let tri = lower.min(upper).max(0.0) as f32;
            *w = (f64::from(tri) * enorm) as f32;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_is_floor_n_over_hop() {
        let fe = MelFrontEnd::new(MelConfig::default()).unwrap();
        assert_eq!(fe.frames_for(24_000), 93);
        assert_eq!(fe.frames_for(73_319), 286);
        assert_eq!(fe.frames_for(385), 1);
        assert_eq!(fe.frames_for(384), 0);
        assert!(fe.compute(&[0.1; 384]).is_err());
        assert_eq!(fe.compute(&[0.1; 385]).unwrap().frames, 1);
    }

    #[test]
    fn slaney_scale_round_trips() {
        for f in [0.0, 500.0, 999.9, 1000.0, 4000.0, 12_000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9 * (1.0 + f));
        }
    }
}
