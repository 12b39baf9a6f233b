//! The speaker encoder (`Qwen3TTSSpeakerEncoder`, Base checkpoints only): an ECAPA-TDNN
//! without BatchNorm that turns a log-mel spectrogram into one x-vector, which the talker
//! prompt uses directly as a codec-side row.
//!
//! ```text
//! mel [T, mel_dim]
//! blocks[0]      TDNN  mel_dim → C0, k0, d0                       (conv + ReLU)
//! blocks[1..n-1] SE-Res2Net C(i-1) → Ci, ki, di:
//!                  TDNN 1×1 → Res2Net (scale s: y0 = x0, y1 = TDNN(x1),
//!                  yi = TDNN(xi + y(i-1))) → TDNN 1×1 → SE (mean over T → 1×1 → ReLU →
//!                  1×1 → sigmoid → scale channels) → + block input
//! mfa            TDNN over the concatenated block outputs (C_last, k_last, d_last)
//! asp            attentive statistics pooling → [2·C_last]
//! fc             1×1 conv → enc_dim
//! ```
//!
//! Every Conv1d is `padding="same", padding_mode="reflect"`: left pad `d(k−1)/2`, right pad
//! the rest, mirrored without repeating the edge frame; PyTorch requires each pad to be
//! shorter than the sequence, and so do we ([`SpeakerEncoder::min_frames`]). Sizes all come
//! from [`SpeakerEncoderConfig`].
//!
//! The network is written once over the audio op set ([`AudioBackend`]), so that the CPU
//! backend is the oracle of any other: activations are row-major `[T, channels]` (one row per
//! mel frame, "channels last"; PyTorch's `[channels, T]` in another memory order), the
//! convolutions are [`AudioBackend::reflect_conv`], and the statistics of the pooling and SE
//! layers ([`AudioBackend::column_stats`], [`AudioBackend::column_mean`]) accumulate in f64.
//! Weights are converted to f32 once at load (exact for BF16/F16). Immutable, so
//! `Send + Sync`; `embed` may run from several threads at once (each call has its own
//! stream and buffers).

use crate::backend::audio::{Activation, AudioBackend, ColumnSpan};
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::model::codec::conv::Conv;
use crate::model::config::SpeakerEncoderConfig;
use crate::model::weights::SafeTensorsFile;

/// Tensor-name prefix in `model.safetensors`.
const PREFIX: &str = "speaker_encoder";

/// A TDNN layer: `Conv1d(padding="same", padding_mode="reflect")` with a bias, `[cout, cin,
/// k]` weights repacked tap-major ([`Conv`]); run with [`Conv::forward_reflect`].
fn load_conv<B: AudioBackend>(
    backend: &B,
    weights: &SafeTensorsFile,
    name: &str,
    (c_in, c_out, kernel, dilation): (usize, usize, usize, usize),
) -> Result<Conv<B>> {
    Conv::load(backend, weights, name, c_in, c_out, kernel, dilation)
}

/// Left and right reflect padding of a "same" conv: total `d·(k−1)`, left half rounded down.
fn same_padding<B: AudioBackend>(conv: &Conv<B>) -> (usize, usize) {
    let total = conv.shape.history_rows();
    (total / 2, total - total / 2)
}

/// One `SqueezeExcitationRes2NetBlock`.
struct SeRes2NetBlock<B: AudioBackend> {
    tdnn1: Conv<B>,
    /// `scale − 1` convs on `width = channels / scale` channels.
    res2net: Vec<Conv<B>>,
    tdnn2: Conv<B>,
    se_conv1: Conv<B>,
    se_conv2: Conv<B>,
    channels: usize,
    scale: usize,
}

impl<B: AudioBackend> SeRes2NetBlock<B> {
    /// `h [t, c]` → the block's output, written over `h` (the residual is added onto it).
    fn forward(&self, b: &B, s: &mut B::Stream, h: &mut B::Buffer, t: usize) -> Result<()> {
        let c = self.channels;
        let mut a = b.alloc(t * c)?;
        self.tdnn1.forward_reflect(b, s, h, t, &mut a)?;
        b.activation(s, &mut a, t * c, Activation::Relu)?;

        // Res2Net on column groups of `width`: y0 = a0, y1 = TDNN(a1), yi = TDNN(ai + y(i−1)).
        let width = c / self.scale;
        let mut r = b.alloc(t * c)?;
        b.copy_columns(s, &a, ColumnSpan::of(c, 0), &mut r, ColumnSpan::of(c, 0), t, width)?;
        let mut part = b.alloc(t * width)?;
        let mut y = b.alloc(t * width)?;
        let mut prev = b.alloc(t * width)?;
        for (i, conv) in self.res2net.iter().enumerate() {
            b.copy_columns(s, &a, ColumnSpan::of(c, (i + 1) * width), &mut part, ColumnSpan::of(width, 0), t, width)?;
            if i > 0 {
                b.add(s, &mut part, &prev, t * width)?;
            }
            conv.forward_reflect(b, s, &part, t, &mut y)?;
            b.activation(s, &mut y, t * width, Activation::Relu)?;
            b.copy_columns(s, &y, ColumnSpan::of(width, 0), &mut r, ColumnSpan::of(c, (i + 1) * width), t, width)?;
            std::mem::swap(&mut y, &mut prev);
        }

        let mut out = a; // tdnn1's output is no longer needed
        self.tdnn2.forward_reflect(b, s, &r, t, &mut out)?;
        b.activation(s, &mut out, t * c, Activation::Relu)?;

        // Squeeze-excitation: per-channel mean over time → bottleneck → sigmoid gate, then
        // out · gate + the block's input.
        let se = self.se_conv1.shape.cout;
        let mut mean = b.alloc(c)?;
        b.column_mean(s, &out, t, c, &mut mean)?;
        let mut squeezed = b.alloc(se)?;
        self.se_conv1.forward_reflect(b, s, &mean, 1, &mut squeezed)?;
        b.activation(s, &mut squeezed, se, Activation::Relu)?;
        let mut gate = b.alloc(c)?;
        self.se_conv2.forward_reflect(b, s, &squeezed, 1, &mut gate)?;
        b.activation(s, &mut gate, c, Activation::Sigmoid)?;
        b.gate_add(s, h, &out, t, c, &gate)
    }
}

/// `AttentiveStatisticsPooling` (channels `c`, attention channels `a`).
struct AttentiveStatsPooling<B: AudioBackend> {
    /// TDNN `3c → a` (conv + ReLU), then tanh.
    tdnn: Conv<B>,
    /// Conv `a → c`, then softmax over time.
    conv: Conv<B>,
    channels: usize,
}

impl<B: AudioBackend> AttentiveStatsPooling<B> {
    /// `h [t, c]` → `pooled: [mean; std]` (`2c`) under learned per-channel attention over time.
    fn forward(&self, b: &B, s: &mut B::Stream, h: &B::Buffer, t: usize, pooled: &mut B::Buffer) -> Result<()> {
        let c = self.channels;
        // Global context [h | mean | std], the statistics with uniform weights (1/T in f32).
        let mut stats = b.alloc(2 * c)?;
        b.column_stats(s, h, t, c, None, &mut stats)?;
        let mut context = b.alloc(t * 3 * c)?;
        b.copy_columns(s, h, ColumnSpan::of(c, 0), &mut context, ColumnSpan::of(3 * c, 0), t, c)?;
        b.copy_columns(s, &stats, ColumnSpan::broadcast(0), &mut context, ColumnSpan::of(3 * c, c), t, c)?;
        b.copy_columns(s, &stats, ColumnSpan::broadcast(c), &mut context, ColumnSpan::of(3 * c, 2 * c), t, c)?;

        let a = self.tdnn.shape.cout;
        let mut att = b.alloc(t * a)?;
        self.tdnn.forward_reflect(b, s, &context, t, &mut att)?;
        b.activation(s, &mut att, t * a, Activation::Relu)?;
        b.activation(s, &mut att, t * a, Activation::Tanh)?;
        let mut scores = b.alloc(t * c)?;
        self.conv.forward_reflect(b, s, &att, t, &mut scores)?;
        b.column_softmax(s, &mut scores, t, c)?;
        b.column_stats(s, h, t, c, Some(&scores), pooled)
    }
}

/// The speaker encoder with its weights in f32 on backend `B` (the CPU by default).
/// Immutable; `Send + Sync` where the backend's weights are.
pub struct SpeakerEncoder<B: AudioBackend = CpuBackend> {
    backend: B,
    block0: Conv<B>,
    blocks: Vec<SeRes2NetBlock<B>>,
    mfa: Conv<B>,
    asp: AttentiveStatsPooling<B>,
    fc: Conv<B>,
    mel_dim: usize,
    enc_dim: usize,
}

impl<B: AudioBackend> std::fmt::Debug for SpeakerEncoder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerEncoder")
            .field("backend", &self.backend.name())
            .field("blocks", &self.blocks.len())
            .field("mel_dim", &self.mel_dim)
            .field("enc_dim", &self.enc_dim)
            .finish()
    }
}

impl SpeakerEncoder<CpuBackend> {
    /// Loads `speaker_encoder.*` from `weights` with the sizes of `config`, on the CPU (all
    /// threads; the results do not depend on their number).
    pub fn load(weights: &SafeTensorsFile, config: &SpeakerEncoderConfig) -> Result<Self> {
        Self::load_on(CpuBackend::default(), weights, config)
    }
}

impl<B: AudioBackend> SpeakerEncoder<B> {
    /// Loads `speaker_encoder.*` from `weights` with the sizes of `config` onto `backend`.
    ///
    /// Errors: `MissingTensor` / `ShapeMismatch` naming the tensor; `BadConfig` for a
    /// configuration the network cannot be built from (the SE blocks' residual needs equal
    /// input and output widths, Res2Net needs widths divisible by the scale, the MFA layer
    /// reads the concatenated block outputs).
    pub fn load_on(backend: B, weights: &SafeTensorsFile, config: &SpeakerEncoderConfig) -> Result<Self> {
        let cfg = config;
        let ch = &cfg.enc_channels;
        let n = ch.len();
        let bad = |m: String| Err(Error::bad_config(format!("speaker_encoder_config: {m}")));
        if n < 3 || cfg.enc_kernel_sizes.len() != n || cfg.enc_dilations.len() != n {
            return bad(format!(
                "enc_channels, enc_kernel_sizes and enc_dilations need the same length ≥ 3 (found {n}, {}, {})",
                cfg.enc_kernel_sizes.len(),
                cfg.enc_dilations.len()
            ));
        }
        if cfg.mel_dim == 0
            || cfg.enc_dim == 0
            || cfg.enc_attention_channels == 0
            || cfg.enc_se_channels == 0
            || ch.contains(&0)
            || cfg.enc_kernel_sizes.contains(&0)
            || cfg.enc_dilations.contains(&0)
        {
            return bad("sizes, kernels and dilations must be positive".into());
        }
        let scale = cfg.enc_res2net_scale;
        let concat: usize = ch[1..n - 1].iter().sum();
        if concat != ch[n - 1] {
            return bad(format!("the MFA width {} must equal the sum of the SE-block widths ({concat})", ch[n - 1]));
        }

        let k = &cfg.enc_kernel_sizes;
        let d = &cfg.enc_dilations;
        let be = &backend;
        let block0 = load_conv(be, weights, &format!("{PREFIX}.blocks.0.conv"), (cfg.mel_dim, ch[0], k[0], d[0]))?;
        let mut blocks = Vec::with_capacity(n - 2);
        for i in 1..n - 1 {
            let (c_in, c) = (ch[i - 1], ch[i]);
            if c_in != c {
                return bad(format!(
                    "SE-Res2Net block {i} maps {c_in} to {c} channels, but its residual needs them equal"
                ));
            }
            if scale < 2 || c % scale != 0 {
                return bad(format!("enc_channels[{i}] = {c} must be divisible by enc_res2net_scale = {scale} (≥ 2)"));
            }
            let p = format!("{PREFIX}.blocks.{i}");
            let width = c / scale;
            let res2net = (0..scale - 1)
                .map(|r| load_conv(be, weights, &format!("{p}.res2net_block.blocks.{r}.conv"), (width, width, k[i], d[i])))
                .collect::<Result<Vec<_>>>()?;
            blocks.push(SeRes2NetBlock {
                tdnn1: load_conv(be, weights, &format!("{p}.tdnn1.conv"), (c_in, c, 1, 1))?,
                res2net,
                tdnn2: load_conv(be, weights, &format!("{p}.tdnn2.conv"), (c, c, 1, 1))?,
                se_conv1: load_conv(be, weights, &format!("{p}.se_block.conv1"), (c, cfg.enc_se_channels, 1, 1))?,
                se_conv2: load_conv(be, weights, &format!("{p}.se_block.conv2"), (cfg.enc_se_channels, c, 1, 1))?,
                channels: c,
                scale,
            });
        }
        let last = ch[n - 1];
        let mfa = load_conv(be, weights, &format!("{PREFIX}.mfa.conv"), (last, last, k[n - 1], d[n - 1]))?;
        let attention = cfg.enc_attention_channels;
        let asp = AttentiveStatsPooling {
            tdnn: load_conv(be, weights, &format!("{PREFIX}.asp.tdnn.conv"), (3 * last, attention, 1, 1))?,
            conv: load_conv(be, weights, &format!("{PREFIX}.asp.conv"), (attention, last, 1, 1))?,
            channels: last,
        };
        let fc = load_conv(be, weights, &format!("{PREFIX}.fc"), (2 * last, cfg.enc_dim, 1, 1))?;
        Ok(SpeakerEncoder { backend, block0, blocks, mfa, asp, fc, mel_dim: cfg.mel_dim, enc_dim: cfg.enc_dim })
    }

    /// The backend it runs on ("cpu (8 threads)", "cuda:0").
    pub fn backend_name(&self) -> String {
        self.backend.name()
    }

    /// Mel bins per input frame.
    pub fn mel_dim(&self) -> usize {
        self.mel_dim
    }

    /// Width of the x-vector.
    pub fn enc_dim(&self) -> usize {
        self.enc_dim
    }

    /// Fewest mel frames the network accepts: every reflect pad must be shorter than the
    /// sequence (5 frames for the released configuration: dilation 4, kernel 3).
    pub fn min_frames(&self) -> usize {
        let convs = std::iter::once(&self.block0)
            .chain(self.blocks.iter().flat_map(|b| b.res2net.iter()))
            .chain(std::iter::once(&self.mfa));
        convs.map(|c| same_padding(c).0.max(same_padding(c).1) + 1).max().unwrap_or(1)
    }

    /// The x-vector (`enc_dim` values) of a log-mel spectrogram `mel` laid out `[frames,
    /// mel_dim]` row-major (what `audio::MelFrontEnd::compute` returns).
    ///
    /// Errors (`InvalidArgument`): `mel.len() != frames · mel_dim`, fewer than
    /// [`min_frames`](Self::min_frames) frames, or non-finite values.
    pub fn embed(&self, mel: &[f32], frames: usize) -> Result<Vec<f32>> {
        let (t, m) = (frames, self.mel_dim);
        if mel.len() != t * m {
            return Err(Error::invalid_argument(format!(
                "speaker encoder: mel has {} values, expected frames {t} × mel_dim {m} = {}",
                mel.len(),
                t * m
            )));
        }
        if t < self.min_frames() {
            return Err(Error::invalid_argument(format!(
                "speaker encoder: {t} mel frames are too few; its reflect padding needs at least {}",
                self.min_frames()
            )));
        }
        if let Some(i) = mel.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(format!(
                "speaker encoder: mel value at frame {}, bin {} is {}",
                i / m,
                i % m,
                mel[i]
            )));
        }

        // The network, time-major: [T, channels] activations on the backend's stream.
        let b = &self.backend;
        let mut s = b.new_stream()?;
        let mut x = b.alloc(t * m)?;
        b.write(&mut s, &mut x, 0, mel)?;
        let c0 = self.block0.shape.cout;
        let mut h = b.alloc(t * c0)?;
        self.block0.forward_reflect(b, &mut s, &x, t, &mut h)?;
        b.activation(&mut s, &mut h, t * c0, Activation::Relu)?;
        // The MFA layer reads the SE blocks' outputs side by side.
        let mfa_width = self.mfa.shape.cin;
        let mut mfa_in = b.alloc(t * mfa_width)?;
        let mut column = 0;
        for block in &self.blocks {
            block.forward(b, &mut s, &mut h, t)?;
            let c = block.channels;
            b.copy_columns(&mut s, &h, ColumnSpan::of(c, 0), &mut mfa_in, ColumnSpan::of(mfa_width, column), t, c)?;
            column += c;
        }
        let last = self.mfa.shape.cout;
        let mut mfa_out = b.alloc(t * last)?;
        self.mfa.forward_reflect(b, &mut s, &mfa_in, t, &mut mfa_out)?;
        b.activation(&mut s, &mut mfa_out, t * last, Activation::Relu)?;
        let mut pooled = b.alloc(2 * last)?;
        self.asp.forward(b, &mut s, &mfa_out, t, &mut pooled)?;
        let mut embedding = b.alloc(self.enc_dim)?;
        self.fc.forward_reflect(b, &mut s, &pooled, 1, &mut embedding)?;
        let mut out = vec![0f32; self.enc_dim];
        b.read(&mut s, &embedding, 0, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SpeakerEncoder>();
    }
}
