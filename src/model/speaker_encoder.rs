//! The speaker encoder (`Qwen3TTSSpeakerEncoder`, Base checkpoints only): an ECAPA-TDNN
//! without BatchNorm that turns a log-mel spectrogram into one x-vector, which the talker
//! prompt uses directly as a codec-side row.
//!
//! ```text
//! mel [T, mel_dim] → transpose → [mel_dim, T]
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
//! Activations are channels-first `[channels, T]` like PyTorch's. Convolutions are one
//! `gemm` product each (an im2col copy for kernels wider than 1), single-threaded so results
//! do not depend on the machine; the reductions of the pooling and SE layers accumulate in
//! f64. Weights are converted to f32 once at load (exact for BF16/F16). Immutable, so
//! `Send + Sync`; `embed` may run from several threads at once.

use crate::error::{Error, Result};
use crate::model::config::SpeakerEncoderConfig;
use crate::model::weights::SafeTensorsFile;

/// Tensor-name prefix in `model.safetensors`.
const PREFIX: &str = "speaker_encoder";

/// `AttentiveStatisticsPooling.eps`: variance floor before the square root.
const STD_EPS: f64 = 1e-12;

/// A Conv1d with bias, "same" reflect padding, weights `[out, in·k]` row-major (PyTorch's
/// `[out, in, k]` flattened).
#[derive(Debug)]
struct Conv1d {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    dilation: usize,
}

impl Conv1d {
    fn load(
        weights: &SafeTensorsFile,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        let weight = weights.require(&format!("{name}.weight"), &[c_out, c_in, kernel])?.to_f32_vec();
        let bias = weights.require(&format!("{name}.bias"), &[c_out])?.to_f32_vec();
        Ok(Conv1d { weight, bias, c_in, c_out, kernel, dilation })
    }

    /// PyTorch's "same" padding: total `d·(k−1)`, left half rounded down.
    fn padding(&self) -> (usize, usize) {
        let total = self.dilation * (self.kernel - 1);
        (total / 2, total - total / 2)
    }

    /// `x [c_in, t]` → `[c_out, t]`, optionally followed by ReLU.
    fn forward(&self, x: &[f32], t: usize, relu: bool) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.c_in * t);
        let mut y = Vec::with_capacity(self.c_out * t);
        for &b in &self.bias {
            y.extend(std::iter::repeat_n(b, t));
        }
        if self.kernel == 1 {
            matmul_acc(&self.weight, x, &mut y, self.c_out, t, self.c_in);
        } else {
            let cols = im2col_reflect(x, self.c_in, t, self.kernel, self.dilation, self.padding());
            matmul_acc(&self.weight, &cols, &mut y, self.c_out, t, self.c_in * self.kernel);
        }
        if relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        y
    }

    /// The conv applied to one column vector (a length-1 sequence: no padding at k = 1).
    fn forward_vec(&self, x: &[f32]) -> Vec<f32> {
        debug_assert!(self.kernel == 1 && x.len() == self.c_in);
        self.weight.chunks_exact(self.c_in).zip(&self.bias).map(|(row, &b)| b + dot_f64(row, x) as f32).collect()
    }
}

/// One `SqueezeExcitationRes2NetBlock`.
#[derive(Debug)]
struct SeRes2NetBlock {
    tdnn1: Conv1d,
    /// `scale − 1` convs on `width = channels / scale` channels.
    res2net: Vec<Conv1d>,
    tdnn2: Conv1d,
    se_conv1: Conv1d,
    se_conv2: Conv1d,
    channels: usize,
    scale: usize,
}

impl SeRes2NetBlock {
    fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let c = self.channels;
        let a = self.tdnn1.forward(x, t, true);

        // Res2Net: channel chunks are contiguous row ranges of the [c, t] layout.
        let width = c / self.scale;
        let chunk = width * t;
        let mut r = Vec::with_capacity(c * t);
        r.extend_from_slice(&a[..chunk]);
        for (i, conv) in self.res2net.iter().enumerate() {
            let part = &a[(i + 1) * chunk..(i + 2) * chunk];
            let y = if i == 0 {
                conv.forward(part, t, true)
            } else {
                let prev = &r[i * chunk..(i + 1) * chunk];
                let input: Vec<f32> = part.iter().zip(prev).map(|(p, q)| p + q).collect();
                conv.forward(&input, t, true)
            };
            r.extend_from_slice(&y);
        }

        let mut b = self.tdnn2.forward(&r, t, true);

        // Squeeze-excitation: per-channel mean over time → bottleneck → sigmoid gate.
        let mean: Vec<f32> = b.chunks_exact(t).map(|row| (sum_f64(row) / t as f64) as f32).collect();
        let mut s = self.se_conv1.forward_vec(&mean);
        s.iter_mut().for_each(|v| *v = v.max(0.0));
        let gate: Vec<f32> = self.se_conv2.forward_vec(&s).into_iter().map(sigmoid).collect();

        for ((row, &g), res) in b.chunks_exact_mut(t).zip(&gate).zip(x.chunks_exact(t)) {
            for (v, &r) in row.iter_mut().zip(res) {
                *v = *v * g + r;
            }
        }
        b
    }
}

/// `AttentiveStatisticsPooling` (channels `c`, attention channels `a`).
#[derive(Debug)]
struct AttentiveStatsPooling {
    /// TDNN `3c → a` (conv + ReLU), then tanh.
    tdnn: Conv1d,
    /// Conv `a → c`, then softmax over time.
    conv: Conv1d,
    channels: usize,
}

impl AttentiveStatsPooling {
    /// `h [c, t]` → `[mean; std]` (`2c`) under learned per-channel attention over time.
    fn forward(&self, h: &[f32], t: usize) -> Vec<f32> {
        let c = self.channels;
        // Global context: statistics with uniform weights (mask / total = 1/T, in f32).
        let uniform = 1.0f32 / t as f32;
        let mut context = Vec::with_capacity(3 * c * t);
        context.extend_from_slice(h);
        let mut stds = Vec::with_capacity(c);
        for row in h.chunks_exact(t) {
            let (mean, std) = weighted_stats(row, |_| uniform);
            context.extend(std::iter::repeat_n(mean, t));
            stds.push(std);
        }
        for std in stds {
            context.extend(std::iter::repeat_n(std, t));
        }

        let mut att = self.tdnn.forward(&context, t, true);
        att.iter_mut().for_each(|v| *v = v.tanh());
        let mut att = self.conv.forward(&att, t, false);
        for row in att.chunks_exact_mut(t) {
            softmax_inplace(row);
        }

        let mut pooled = vec![0f32; 2 * c];
        for (ch, (row, w)) in h.chunks_exact(t).zip(att.chunks_exact(t)).enumerate() {
            let (mean, std) = weighted_stats(row, |i| w[i]);
            pooled[ch] = mean;
            pooled[c + ch] = std;
        }
        pooled
    }
}

/// The speaker encoder with its weights in f32. Immutable; `Send + Sync`.
#[derive(Debug)]
pub struct SpeakerEncoder {
    block0: Conv1d,
    blocks: Vec<SeRes2NetBlock>,
    mfa: Conv1d,
    asp: AttentiveStatsPooling,
    fc: Conv1d,
    mel_dim: usize,
    enc_dim: usize,
}

impl SpeakerEncoder {
    /// Loads `speaker_encoder.*` from `weights` with the sizes of `config`.
    ///
    /// Errors: `MissingTensor` / `ShapeMismatch` naming the tensor; `BadConfig` for a
    /// configuration the network cannot be built from (the SE blocks' residual needs equal
    /// input and output widths, Res2Net needs widths divisible by the scale, the MFA layer
    /// reads the concatenated block outputs).
    pub fn load(weights: &SafeTensorsFile, config: &SpeakerEncoderConfig) -> Result<Self> {
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
        let block0 = Conv1d::load(weights, &format!("{PREFIX}.blocks.0.conv"), cfg.mel_dim, ch[0], k[0], d[0])?;
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
                .map(|r| Conv1d::load(weights, &format!("{p}.res2net_block.blocks.{r}.conv"), width, width, k[i], d[i]))
                .collect::<Result<Vec<_>>>()?;
            blocks.push(SeRes2NetBlock {
                tdnn1: Conv1d::load(weights, &format!("{p}.tdnn1.conv"), c_in, c, 1, 1)?,
                res2net,
                tdnn2: Conv1d::load(weights, &format!("{p}.tdnn2.conv"), c, c, 1, 1)?,
                se_conv1: Conv1d::load(weights, &format!("{p}.se_block.conv1"), c, cfg.enc_se_channels, 1, 1)?,
                se_conv2: Conv1d::load(weights, &format!("{p}.se_block.conv2"), cfg.enc_se_channels, c, 1, 1)?,
                channels: c,
                scale,
            });
        }
        let last = ch[n - 1];
        let mfa = Conv1d::load(weights, &format!("{PREFIX}.mfa.conv"), last, last, k[n - 1], d[n - 1])?;
        let asp = AttentiveStatsPooling {
            tdnn: Conv1d::load(
                weights,
                &format!("{PREFIX}.asp.tdnn.conv"),
                3 * last,
                cfg.enc_attention_channels,
                1,
                1,
            )?,
            conv: Conv1d::load(weights, &format!("{PREFIX}.asp.conv"), cfg.enc_attention_channels, last, 1, 1)?,
            channels: last,
        };
        let fc = Conv1d::load(weights, &format!("{PREFIX}.fc"), 2 * last, cfg.enc_dim, 1, 1)?;
        Ok(SpeakerEncoder { block0, blocks, mfa, asp, fc, mel_dim: cfg.mel_dim, enc_dim: cfg.enc_dim })
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
        convs.map(|c| c.padding().0.max(c.padding().1) + 1).max().unwrap_or(1)
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

        // [T, mel] → [mel, T].
        let mut x = vec![0f32; m * t];
        for (ti, frame) in mel.chunks_exact(m).enumerate() {
            for (bin, &v) in frame.iter().enumerate() {
                x[bin * t + ti] = v;
            }
        }

        let mut h = self.block0.forward(&x, t, true);
        let mut mfa_in = Vec::with_capacity(self.mfa.c_in * t);
        for block in &self.blocks {
            h = block.forward(&h, t);
            mfa_in.extend_from_slice(&h);
        }
        let h = self.mfa.forward(&mfa_in, t, true);
        let pooled = self.asp.forward(&h, t);
        Ok(self.fc.forward_vec(&pooled))
    }
}

/// `y[m, n] += a[m, k] · b[k, n]`, all row-major, single-threaded `gemm`.
fn matmul_acc(a: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize) {
    assert!(a.len() == m * k && b.len() == k * n && y.len() == m * n, "matmul: shapes disagree with buffers");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the assert bounds every element the strides address (a: m rows of k at row
    // stride k; b: k rows of n at row stride n; y: m rows of n at row stride n), and `y` is a
    // unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            true, // y = 1·y + 1·(a·b): y holds the bias
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `[c, t]` → `[c·k, t]`: row `(i, j)` holds channel `i` shifted by `j·dilation` within the
/// reflect-padded sequence, so a conv becomes one matrix product.
fn im2col_reflect(
    x: &[f32],
    c: usize,
    t: usize,
    kernel: usize,
    dilation: usize,
    (left, _right): (usize, usize),
) -> Vec<f32> {
    let mut cols = Vec::with_capacity(c * kernel * t);
    for row in x.chunks_exact(t) {
        for j in 0..kernel {
            let shift = (j * dilation) as isize - left as isize;
            cols.extend((0..t).map(|p| row[reflect(p as isize + shift, t)]));
        }
    }
    cols
}

/// Mirror index `q` into `0..t` without repeating the edge (`-1 → 1`, `t → t − 2`).
/// Callers guarantee `|overhang| < t` (checked through `min_frames`).
fn reflect(q: isize, t: usize) -> usize {
    let t = t as isize;
    let r = if q < 0 {
        -q
    } else if q >= t {
        2 * (t - 1) - q
    } else {
        q
    };
    debug_assert!((0..t).contains(&r), "reflect padding wider than the sequence");
    r as usize
}

/// Weighted mean and std of one channel, as `_compute_statistics`:
/// `μ = Σ w·x`, `σ = sqrt(max(Σ w·(x − μ)², 1e-12))` (f64 accumulation).
fn weighted_stats(x: &[f32], w: impl Fn(usize) -> f32) -> (f32, f32) {
    let mean: f64 = x.iter().enumerate().map(|(i, &v)| f64::from(w(i) * v)).sum();
    let mean = mean as f32;
    let var: f64 = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let dev = v - mean;
            f64::from(w(i) * (dev * dev))
        })
        .sum();
    (mean, var.max(STD_EPS).sqrt() as f32)
}

/// Numerically stable softmax in place (f64 normaliser).
fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    x.iter_mut().for_each(|v| *v = (f64::from(*v) / sum) as f32);
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn sum_f64(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum()
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let t = 5;
        let idx: Vec<usize> = (-2..7).map(|q| reflect(q, t)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 3, 4, 3, 2]);
    }

    #[test]
    fn im2col_matches_a_direct_dilated_conv() {
        // One channel, k 3, d 2, reflect "same" padding 2 each side.
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let cols = im2col_reflect(&x, 1, 6, 3, 2, (2, 2));
        // Padded: [3, 2, | 1 2 3 4 5 6 | 5, 4]
        assert_eq!(&cols[0..6], &[3.0, 2.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&cols[6..12], &x);
        assert_eq!(&cols[12..18], &[3.0, 4.0, 5.0, 6.0, 5.0, 4.0]);
    }

    #[test]
    fn encoder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SpeakerEncoder>();
    }
}
