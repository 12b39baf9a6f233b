//! The codec's convolution layers, written over the audio op set ([`AudioBackend`]).
//!
//! Every convolution of the decoder is causal, so each runs on a stream of input rows with a
//! little state kept by the caller between calls (the same [`Conv`] weights also run over a
//! whole signal as the codec encoder's strided convs, [`Conv::forward_padded`], and the
//! speaker encoder's reflect-padded ones, [`Conv::forward_reflect`]):
//! * [`Conv`] (also a dense layer: one tap) keeps the last `(k−1)·d` input rows. At the start
//!   of a stream they are zeros, which is exactly the reference's left zero padding; so one
//!   call over all rows and many calls over consecutive pieces compute the same numbers.
//! * [`DepthwiseConv`] (ConvNeXt's `groups = channels` conv) likewise.
//! * [`TransposedConv`] keeps the `k − s` output rows that the last input row has only
//!   partly written (overlap-add carry).
//!
//! Weights are repacked once at load into the layouts the ops take (tap-major), so that each
//! inner product reads contiguous memory.

use super::{TensorSource, load_vec};
use crate::backend::audio::{AudioBackend, ConvShape, EdgePad, TransposedConvShape};
use crate::error::{Error, Result};

/// A fresh stream state of `len` elements (zeros), or none for a stateless layer.
fn new_state<B: AudioBackend>(backend: &B, len: usize) -> Result<Option<B::Buffer>> {
    if len == 0 { Ok(None) } else { backend.alloc(len).map(Some) }
}

/// `nn.Conv1d(cin, cout, k, dilation=d)` with left zero padding `(k−1)·d` and none on the
/// right (`Qwen3TTSTokenizerV2CausalConvNet`, stride 1: the only stride the decoder uses),
/// or a dense layer (one tap).
pub struct Conv<B: AudioBackend> {
    pub shape: ConvShape,
    /// `[cout, k·cin]`: tap-major, one row-major matrix against the im2col rows.
    weight: B::AudioWeight,
    bias: Option<B::AudioWeight>,
}

impl<B: AudioBackend> Conv<B> {
    /// Loads `{prefix}.weight [cout, cin, k]` and `{prefix}.bias [cout]`.
    pub fn load(
        backend: &B,
        src: &dyn TensorSource,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        let w = load_vec(src, &format!("{prefix}.weight"), &[cout, cin, kernel])?;
        let bias = load_vec(src, &format!("{prefix}.bias"), &[cout])?;
        Self::from_torch(backend, ConvShape { cin, cout, kernel, dilation }, &w, Some(&bias))
    }

    /// A dense layer: `{prefix}.weight [n_out, n_in]` (+ `{prefix}.bias [n_out]`).
    pub fn load_linear(backend: &B, src: &dyn TensorSource, prefix: &str, n_in: usize, n_out: usize, bias: bool) -> Result<Self> {
        let w = load_vec(src, &format!("{prefix}.weight"), &[n_out, n_in])?;
        let b = if bias { Some(load_vec(src, &format!("{prefix}.bias"), &[n_out])?) } else { None };
        Self::from_torch(backend, ConvShape::linear(n_in, n_out), &w, b.as_deref())
    }

    /// From PyTorch's `[cout, cin, k]` weight (any `k`, including a dense layer's `[n_out,
    /// n_in]` as k = 1), repacked tap-major.
    pub fn from_torch(backend: &B, shape: ConvShape, w: &[f32], bias: Option<&[f32]>) -> Result<Self> {
        let ConvShape { cin, cout, kernel, dilation } = shape;
        if kernel == 0 || dilation == 0 || w.len() != shape.weight_len() {
            return Err(Error::bad_config(format!("convolution {shape:?} with {} weights", w.len())));
        }
        let mut weight = vec![0.0; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for j in 0..kernel {
                    weight[(o * kernel + j) * cin + i] = w[(o * cin + i) * kernel + j];
                }
            }
        }
        Ok(Conv {
            shape,
            weight: backend.upload_audio_weight(&weight, &[cout, kernel * cin])?,
            bias: bias.map(|b| backend.upload_audio_weight(b, &[cout])).transpose()?,
        })
    }

    /// A fresh stream state: zero history = the causal left padding; none for one tap.
    pub fn new_state(&self, backend: &B) -> Result<Option<B::Buffer>> {
        new_state(backend, self.shape.history_rows() * self.shape.cin)
    }

    /// Convolves `rows` new input rows `x [rows, cin]` → `y [rows, cout]`, updating `history`.
    pub fn forward(
        &self,
        backend: &B,
        s: &mut B::Stream,
        x: &B::Buffer,
        rows: usize,
        history: Option<&mut B::Buffer>,
        y: &mut B::Buffer,
    ) -> Result<()> {
        backend.causal_conv(s, x, rows, history, self.shape, &self.weight, self.bias.as_ref(), y)
    }

    /// The same weights as a strided convolution of a whole signal with the codec encoder's
    /// causal padding (`MimiConv1d`; [`AudioBackend::padded_conv`]): `ceil(rows / stride)`
    /// output rows, which it returns. The bias is optional here (the downsample conv has none).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_padded(
        &self,
        backend: &B,
        s: &mut B::Stream,
        x: &B::Buffer,
        rows: usize,
        stride: usize,
        pad: EdgePad,
        y: &mut B::Buffer,
    ) -> Result<usize> {
        backend.padded_conv(s, x, rows, self.shape, stride, pad, &self.weight, self.bias.as_ref(), y)
    }

    /// The same weights as a non-causal "same" convolution with reflect padding over all
    /// `rows` rows of `x` (the speaker encoder's TDNN layers; [`AudioBackend::reflect_conv`]).
    /// Needs a bias.
    pub fn forward_reflect(&self, backend: &B, s: &mut B::Stream, x: &B::Buffer, rows: usize, y: &mut B::Buffer) -> Result<()> {
        let bias = self
            .bias
            .as_ref()
            .ok_or_else(|| Error::bad_config(format!("a reflect-padded convolution {:?} without a bias", self.shape)))?;
        backend.reflect_conv(s, x, rows, self.shape, &self.weight, bias, y)
    }
}

/// ConvNeXt's depthwise causal conv (`groups = channels`): each channel has its own kernel.
pub struct DepthwiseConv<B: AudioBackend> {
    pub channels: usize,
    pub kernel: usize,
    /// Tap-major `[k][channels]`.
    taps: B::AudioWeight,
    bias: B::AudioWeight,
}

impl<B: AudioBackend> DepthwiseConv<B> {
    /// Loads `{prefix}.weight [channels, 1, k]` and `{prefix}.bias [channels]`.
    pub fn load(backend: &B, src: &dyn TensorSource, prefix: &str, channels: usize, kernel: usize) -> Result<Self> {
        let w = load_vec(src, &format!("{prefix}.weight"), &[channels, 1, kernel])?;
        let bias = load_vec(src, &format!("{prefix}.bias"), &[channels])?;
        let mut taps = vec![0.0; w.len()];
        for c in 0..channels {
            for j in 0..kernel {
                taps[j * channels + c] = w[c * kernel + j];
            }
        }
        Ok(DepthwiseConv {
            channels,
            kernel,
            taps: backend.upload_audio_weight(&taps, &[kernel, channels])?,
            bias: backend.upload_audio_weight(&bias, &[channels])?,
        })
    }

    pub fn new_state(&self, backend: &B) -> Result<B::Buffer> {
        backend.alloc((self.kernel - 1) * self.channels)
    }

    /// `[rows, channels]` → `[rows, channels]`, updating `history` (the last k−1 input rows).
    pub fn forward(&self, backend: &B, s: &mut B::Stream, x: &B::Buffer, rows: usize, history: &mut B::Buffer, y: &mut B::Buffer) -> Result<()> {
        backend.depthwise_causal_conv(s, x, rows, history, self.channels, self.kernel, &self.taps, &self.bias, y)
    }
}

/// `nn.ConvTranspose1d(cin, cout, k, stride=s)` made causal the qwen-tts ≥ 0.1.0 way
/// (`Qwen3TTSTokenizerV2CausalTransConvNet`): of the full `(L−1)·s + k` outputs the last
/// `k − s` are dropped, leaving exactly `L·s`; output row m depends on inputs ≤ m / s.
/// (Older ports trim both ends instead: a different, non-causal network.)
pub struct TransposedConv<B: AudioBackend> {
    pub shape: TransposedConvShape,
    /// `[k·cout, cin]`: row (j, o) holds the weights from every input channel to output
    /// channel o at offset j.
    weight: B::AudioWeight,
    bias: B::AudioWeight,
}

impl<B: AudioBackend> TransposedConv<B> {
    /// Loads `{prefix}.weight [cin, cout, k]` (PyTorch's transposed layout) and `{prefix}.bias`.
    pub fn load(
        backend: &B,
        src: &dyn TensorSource,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Self> {
        if stride == 0 || kernel < stride {
            return Err(Error::bad_config(format!(
                "{prefix}: transposed conv with kernel {kernel} and stride {stride} is not supported (need kernel ≥ stride ≥ 1)"
            )));
        }
        let w = load_vec(src, &format!("{prefix}.weight"), &[cin, cout, kernel])?;
        let bias = load_vec(src, &format!("{prefix}.bias"), &[cout])?;
        let mut weight = vec![0.0; w.len()];
        for i in 0..cin {
            for o in 0..cout {
                for j in 0..kernel {
                    weight[(j * cout + o) * cin + i] = w[(i * cout + o) * kernel + j];
                }
            }
        }
        Ok(TransposedConv {
            shape: TransposedConvShape { cin, cout, kernel, stride },
            weight: backend.upload_audio_weight(&weight, &[kernel * cout, cin])?,
            bias: backend.upload_audio_weight(&bias, &[cout])?,
        })
    }

    /// A fresh stream state: no pending partial sums (none when kernel = stride).
    pub fn new_state(&self, backend: &B) -> Result<Option<B::Buffer>> {
        new_state(backend, self.shape.overlap_rows() * self.shape.cout)
    }

    /// `[rows, cin]` → `[rows·s, cout]`, updating `carry` (partial sums of the next `k − s`
    /// output rows, without bias).
    pub fn forward(&self, backend: &B, s: &mut B::Stream, x: &B::Buffer, rows: usize, carry: Option<&mut B::Buffer>, y: &mut B::Buffer) -> Result<()> {
        backend.causal_conv_transpose(s, x, rows, carry, self.shape, &self.weight, &self.bias, y)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::backend::Backend;
    use crate::backend::cpu::CpuBackend;

    fn cpu() -> (CpuBackend, <CpuBackend as Backend>::Stream) {
        let b = CpuBackend::new(1);
        let s = b.new_stream().unwrap();
        (b, s)
    }

    /// Named tensors held in memory.
    struct MapSource(HashMap<String, (Vec<usize>, Vec<f32>)>);

    impl TensorSource for MapSource {
        fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
            let (s, v) = self.0.get(name).ok_or_else(|| Error::invalid_argument(name.to_string()))?;
            assert_eq!(s, shape, "{name}");
            Ok(v.clone())
        }
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 0.5) * 0.7548 + seed as f32 * 0.4142).fract() - 0.5).collect()
    }

    fn source(weight_shape: &[usize], bias_len: usize) -> MapSource {
        let n = weight_shape.iter().product();
        let mut m = HashMap::new();
        m.insert("c.weight".to_string(), (weight_shape.to_vec(), noise(n, 1)));
        m.insert("c.bias".to_string(), (vec![bias_len], noise(bias_len, 2)));
        MapSource(m)
    }

    /// Runs `f` over `rows` input rows in the given piece sizes, concatenating the outputs.
    fn in_pieces(rows: usize, width: usize, pieces: &[usize], mut f: impl FnMut(&[f32], usize) -> Vec<f32>) -> Vec<f32> {
        let x = noise(rows * width, 3);
        let mut out = Vec::new();
        let (mut done, mut i) = (0, 0);
        while done < rows {
            let n = pieces[i % pieces.len()].min(rows - done);
            out.extend(f(&x[done * width..(done + n) * width], n));
            done += n;
            i += 1;
        }
        out
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn causal_conv_matches_left_padded_reference_in_any_pieces() {
        let (cin, cout, k, rows) = (3, 4, 7, 40);
        for dilation in [1, 3] {
            let src = source(&[cout, cin, k], cout);
            let (cpu, mut st) = cpu();
            let conv = Conv::load(&cpu, &src, "c", cin, cout, k, dilation).unwrap();
            let (w, b) = (&src.0["c.weight"].1, &src.0["c.bias"].1);
            // Reference: y[t, o] = b[o] + Σ_{i,j} w[o, i, j] · x[t − (k−1−j)·d, i], x < 0 = 0.
            let x = noise(rows * cin, 3);
            let mut want = vec![0.0; rows * cout];
            for t in 0..rows {
                for o in 0..cout {
                    let mut acc = b[o];
                    for i in 0..cin {
                        for j in 0..k {
                            if let Some(src_t) = (t + j * dilation).checked_sub((k - 1) * dilation) {
                                acc += w[(o * cin + i) * k + j] * x[src_t * cin + i];
                            }
                        }
                    }
                    want[t * cout + o] = acc;
                }
            }
            for pieces in [&[rows][..], &[1, 2, 7, 3]] {
                let mut hist = conv.new_state(&cpu).unwrap().expect("k > 1 keeps a history");
                let got = in_pieces(rows, cin, pieces, |x, n| {
                    let mut y = vec![0.0; n * cout];
                    conv.forward(&cpu, &mut st, &x.to_vec(), n, Some(&mut hist), &mut y).unwrap();
                    y
                });
                assert_close(&got, &want);
            }
        }
    }

    #[test]
    fn depthwise_conv_matches_reference_in_any_pieces() {
        let (ch, k, rows) = (5, 7, 30);
        let src = source(&[ch, 1, k], ch);
        let (cpu, mut st) = cpu();
        let conv = DepthwiseConv::load(&cpu, &src, "c", ch, k).unwrap();
        let (w, b) = (&src.0["c.weight"].1, &src.0["c.bias"].1);
        let x = noise(rows * ch, 3);
        let mut want = vec![0.0; rows * ch];
        for t in 0..rows {
            for c in 0..ch {
                let mut acc = b[c];
                for j in 0..k {
                    if let Some(src_t) = (t + j).checked_sub(k - 1) {
                        acc += w[c * k + j] * x[src_t * ch + c];
                    }
                }
                want[t * ch + c] = acc;
            }
        }
        for pieces in [&[rows][..], &[1, 4, 2]] {
            let mut hist = conv.new_state(&cpu).unwrap();
            let got = in_pieces(rows, ch, pieces, |x, n| {
                let mut y = vec![0.0; n * ch];
                conv.forward(&cpu, &mut st, &x.to_vec(), n, &mut hist, &mut y).unwrap();
                y
            });
            assert_close(&got, &want);
        }
    }

    #[test]
    fn transposed_conv_drops_the_last_k_minus_s_outputs_in_any_pieces() {
        let (cin, cout, rows) = (3, 2, 12);
        for (k, s) in [(6, 3), (2, 2), (5, 2)] {
            let src = source(&[cin, cout, k], cout);
            let (cpu, mut st) = cpu();
            let conv = TransposedConv::load(&cpu, &src, "c", cin, cout, k, s).unwrap();
            let (w, b) = (&src.0["c.weight"].1, &src.0["c.bias"].1);
            // Reference: the full (L−1)·s + k outputs of nn.ConvTranspose1d, first L·s kept.
            let x = noise(rows * cin, 3);
            let full_len = (rows - 1) * s + k;
            let mut full = vec![0.0; full_len * cout];
            for m in 0..full_len {
                for o in 0..cout {
                    full[m * cout + o] = b[o];
                }
            }
            for n in 0..rows {
                for j in 0..k {
                    for o in 0..cout {
                        for i in 0..cin {
                            full[(n * s + j) * cout + o] += x[n * cin + i] * w[(i * cout + o) * k + j];
                        }
                    }
                }
            }
            let want = &full[..rows * s * cout];
            for pieces in [&[rows][..], &[1, 2, 5]] {
                let mut carry = conv.new_state(&cpu).unwrap();
                let got = in_pieces(rows, cin, pieces, |x, n| {
                    let mut y = vec![0.0; n * s * cout];
                    conv.forward(&cpu, &mut st, &x.to_vec(), n, carry.as_mut(), &mut y).unwrap();
                    y
                });
                assert_close(&got, want);
            }
        }
        let src = source(&[cin, cout, 2], cout);
        assert!(TransposedConv::load(&CpuBackend::new(1), &src, "c", cin, cout, 2, 3).is_err(), "kernel < stride");
    }
}
