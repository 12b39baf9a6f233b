//! The speaker encoder's log-mel front end written over the audio op set, for backends
//! without an FFT (the GPU): the STFT becomes one convolution.
//!
//! With the signal reflect-padded and cut into rows of `hop` samples, frame `f` is rows `f ..
//! f + n_fft/hop`, so the windowed DFT of every frame is a causal convolution over those rows
//! (`cin = hop`, `n_fft / hop` taps, the first `n_fft/hop − 1` rows as its history) whose
//! weights are the window times the DFT basis: `2·bins` outputs per frame, the real parts
//! (`w[n]·cos(2πkn/N)`) then the imaginary parts (`−w[n]·sin(2πkn/N)`), computed in f64 and
//! rounded once. Then `sqrt(re² + im² + 1e-9)`, the mel filter bank as a dense layer, and
//! `ln(max(·, 1e-5))`: the official `mel_spectrogram` ([`MelFrontEnd`], whose window and
//! filters are used as they are).
//!
//! [`MelFrontEnd`] (CPU, `realfft`) stays the oracle and the CPU path; this one sums each bin
//! as a product over 1024 samples instead of an FFT's butterflies, which moves results at the
//! 1e-6 level (tests/speaker_encoder.rs compares the two on the CPU backend, the GPU tests on
//! the GPU).

use crate::audio::mel::check_signal;
use crate::audio::{MelFrontEnd, MelSpectrogram};
use crate::backend::audio::{AudioBackend, ColumnSpan, ConvShape};
use crate::error::{Error, ErrorKind, Result};

/// `torch.sqrt(re² + im² + 1e-9)`'s constant.
const MAGNITUDE_EPS: f32 = 1e-9;

/// The log's floor: `torch.log(torch.clamp(mel, min=1e-5))`.
const LOG_FLOOR: f32 = 1e-5;

/// The front end's constants on backend `B`: the windowed DFT basis and the filter bank.
pub struct LogMel<B: AudioBackend> {
    backend: B,
    /// `[2·bins, n_fft]`: tap-major for a conv of `n_fft / hop` taps over rows of `hop`.
    basis: B::AudioWeight,
    /// `[n_mels, bins]`.
    filters: B::AudioWeight,
    n_fft: usize,
    hop: usize,
    bins: usize,
    n_mels: usize,
    /// Reflect padding on each side: `(n_fft − hop) / 2`.
    pad: usize,
}

impl<B: AudioBackend> std::fmt::Debug for LogMel<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("backend", &self.backend.name())
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .field("n_mels", &self.n_mels)
            .finish()
    }
}

impl<B: AudioBackend> LogMel<B> {
    /// The front end of `cpu` (its configuration, window and filters) on `backend`.
    ///
    /// Errors: `Unsupported` when the hop does not divide the FFT length (the rows would not
    /// tile a frame; the released configuration, 1024 / 256, does).
    pub fn new(backend: B, cpu: &MelFrontEnd) -> Result<Self> {
        let c = cpu.config();
        let (n_fft, hop, n_mels) = (c.n_fft, c.hop_size, c.n_mels);
        if !n_fft.is_multiple_of(hop) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("log-mel as a convolution: the hop {hop} must divide n_fft {n_fft}"),
            ));
        }
        let bins = n_fft / 2 + 1;
        let window = cpu.window();
        let mut basis = vec![0f32; 2 * bins * n_fft];
        for k in 0..bins {
            for (n, &w) in window.iter().enumerate() {
                // The angle reduced exactly (k·n mod N) before the f64 trigonometry.
                let phase = 2.0 * std::f64::consts::PI * ((k * n) % n_fft) as f64 / n_fft as f64;
                basis[k * n_fft + n] = (f64::from(w) * phase.cos()) as f32;
                basis[(bins + k) * n_fft + n] = (-f64::from(w) * phase.sin()) as f32;
            }
        }
        Ok(LogMel {
            basis: backend.upload_audio_weight(&basis, &[2 * bins, n_fft])?,
            filters: backend.upload_audio_weight(cpu.filters(), &[n_mels, bins])?,
            backend,
            n_fft,
            hop,
            bins,
            n_mels,
            pad: (n_fft - hop) / 2,
        })
    }

    /// Log-mel spectrogram of `samples` (mono, at the front end's rate): `[frames, n_mels]`,
    /// as [`MelFrontEnd::compute`].
    ///
    /// Errors (`InvalidArgument`): too few samples for the reflect padding, a non-finite sample.
    pub fn compute(&self, samples: &[f32]) -> Result<MelSpectrogram> {
        let b = &self.backend;
        let mut s = b.new_stream()?;
        let (mel, frames) = self.compute_on(&mut s, samples)?;
        let mut data = vec![0f32; frames * self.n_mels];
        b.read(&mut s, &mel, 0, &mut data)?;
        Ok(MelSpectrogram { data, frames, n_mels: self.n_mels })
    }

    /// [`compute`](Self::compute) left on the backend: the `[frames, n_mels]` buffer and the
    /// frame count.
    pub fn compute_on(&self, s: &mut B::Stream, samples: &[f32]) -> Result<(B::Buffer, usize)> {
        let (b, n, pad, hop) = (&self.backend, samples.len(), self.pad, self.hop);
        check_signal(samples, pad)?;
        let padded_len = n + 2 * pad;
        if padded_len < self.n_fft {
            // No whole frame: an empty spectrogram, as the FFT front end gives.
            return Ok((b.alloc(0)?, 0));
        }
        let frames = 1 + (padded_len - self.n_fft) / hop;
        let taps = self.n_fft / hop;

        // 1. The signal, reflect-padded.
        let mut signal = b.alloc(n)?;
        b.write(s, &mut signal, 0, samples)?;
        let mut padded = b.alloc(padded_len)?;
        b.reflect_pad(s, &signal, n, 1, pad, pad, &mut padded)?;
        // 2. As rows of `hop`: the first `taps − 1` rows are the conv's history, the next
        //    `frames` rows its input (frame f reads rows f .. f + taps, all inside the padding:
        //    (frames + taps − 1)·hop ≤ padded_len).
        let mut history = b.alloc((taps - 1) * hop)?;
        b.copy_columns(s, &padded, ColumnSpan::of(hop, 0), &mut history, ColumnSpan::of(hop, 0), taps - 1, hop)?;
        let mut rows = b.alloc(frames * hop)?;
        let body = ColumnSpan { row_stride: hop, first: (taps - 1) * hop };
        b.copy_columns(s, &padded, body, &mut rows, ColumnSpan::of(hop, 0), frames, hop)?;
        // 3. The windowed DFT of every frame, its magnitudes, the mel bank, the log.
        let (bins, n_mels) = (self.bins, self.n_mels);
        let mut spectrum = b.alloc(frames * 2 * bins)?;
        let dft = ConvShape { cin: hop, cout: 2 * bins, kernel: taps, dilation: 1 };
        let history = if taps > 1 { Some(&mut history) } else { None };
        b.causal_conv(s, &rows, frames, history, dft, &self.basis, None, &mut spectrum)?;
        let mut magnitude = b.alloc(frames * bins)?;
        b.complex_magnitude(s, &spectrum, frames, bins, MAGNITUDE_EPS, &mut magnitude)?;
        let mut mel = b.alloc(frames * n_mels)?;
        b.causal_conv(s, &magnitude, frames, None, ConvShape::linear(bins, n_mels), &self.filters, None, &mut mel)?;
        b.log_clamped(s, &mut mel, frames * n_mels, LOG_FLOOR)?;
        Ok((mel, frames))
    }
}
