//! Causal 1-D convolutions with explicit streaming state.
//!
//! Every convolution of the decoder is causal, so each can run on a stream of input rows if
//! it keeps a little state between calls:
//! * [`CausalConv1d`] keeps the last `(k−1)·d` input rows. At the start of a stream they are
//!   zeros, which is exactly the reference's left zero padding; so one call over all rows
//!   and many calls over consecutive pieces compute the same numbers.
//! * [`DepthwiseCausalConv1d`] (ConvNeXt's `groups = channels` conv) likewise.
//! * [`CausalConvTranspose1d`] keeps the `k − s` output rows that the last input row has only
//!   partly written (overlap-add carry).
//!
//! Activations are channels-last `[rows, channels]` (see `ops`). Weights are repacked at load
//! so that each inner product reads contiguous memory.

use super::ops::{matmul_xwt, matmul_xwt_strided};
use super::{TensorSource, load_vec};
use crate::error::{Error, Result};

/// `nn.Conv1d(cin, cout, k, dilation=d)` with left zero padding `(k−1)·d` and none on the
/// right (`Qwen3TTSTokenizerV2CausalConvNet`, stride 1: the only stride the decoder uses).
#[derive(Debug, Clone)]
pub struct CausalConv1d {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub dilation: usize,
    /// `[cout][k][cin]`: one row-major `[cout, k·cin]` matrix against the im2col rows.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl CausalConv1d {
    /// Loads `{prefix}.weight [cout, cin, k]` and `{prefix}.bias [cout]`.
    pub fn load(
        src: &dyn TensorSource,
        prefix: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        let w = load_vec(src, &format!("{prefix}.weight"), &[cout, cin, kernel])?;
        let bias = load_vec(src, &format!("{prefix}.bias"), &[cout])?;
        let mut weight = vec![0.0; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for j in 0..kernel {
                    weight[(o * kernel + j) * cin + i] = w[(o * cin + i) * kernel + j];
                }
            }
        }
        Ok(CausalConv1d { cin, cout, kernel, dilation, weight, bias })
    }

    /// Input rows of history the next call needs: the receptive field minus the current row.
    pub fn history_rows(&self) -> usize {
        (self.kernel - 1) * self.dilation
    }

    /// A fresh stream state: zero history = the causal left padding.
    pub fn new_state(&self) -> Vec<f32> {
        vec![0.0; self.history_rows() * self.cin]
    }

    /// Convolves `rows` new input rows `x [rows, cin]` → `[rows, cout]`, updating `history`.
    pub fn forward(&self, x: &[f32], rows: usize, history: &mut [f32], threads: usize) -> Vec<f32> {
        let (cin, cout) = (self.cin, self.cout);
        debug_assert_eq!(x.len(), rows * cin);
        debug_assert_eq!(history.len(), self.history_rows() * cin);
        let mut y = self.bias.repeat(rows);
        if rows == 0 {
            return y;
        }
        // 1. The padded input: carried history rows, then the new rows. Output row t sees
        //    padded rows t + j·d for taps j = 0..k (tap k−1 is the current row).
        let padded: Vec<f32>;
        let input = if history.is_empty() {
            x
        } else {
            padded = [&*history, x].concat();
            &padded
        };
        // 2. Accumulate all taps onto the bias with one product per dilation phase.
        //    Output row t reads padded rows t, t+d, …, t+(k−1)·d. Channels-last makes the
        //    im2col matrix free when d = 1: those k·cin values are contiguous, so the padded
        //    buffer read with row stride cin (rows overlap) *is* the [rows, k·cin] matrix.
        //    For d > 1, the output rows t ≡ r (mod d) only read padded rows ≡ r (mod d):
        //    gathered into their own buffer ("phase" r), they form an undilated conv again,
        //    whose outputs land on every d-th row of y.
        let (d, kc) = (self.dilation, self.kernel * cin);
        if d == 1 {
            matmul_xwt(input, cin, &self.weight, &mut y, rows, cout, kc, true, threads);
        } else {
            let total_rows = input.len() / cin;
            let mut phase = Vec::with_capacity(total_rows.div_ceil(d) * cin);
            for r in 0..d.min(rows) {
                let phase_rows = (rows - r).div_ceil(d);
                phase.clear();
                for p in (r..total_rows).step_by(d) {
                    phase.extend_from_slice(&input[p * cin..(p + 1) * cin]);
                }
                let y_r = &mut y[r * cout..];
                matmul_xwt_strided(&phase, cin, &self.weight, y_r, d * cout, phase_rows, cout, kc, true, threads);
            }
        }
        // 3. The last (k−1)·d input rows become the history of the next call.
        if !history.is_empty() {
            let keep = history.len();
            history.copy_from_slice(&input[input.len() - keep..]);
        }
        y
    }
}

/// ConvNeXt's depthwise causal conv (`groups = channels`): each channel has its own kernel.
#[derive(Debug, Clone)]
pub struct DepthwiseCausalConv1d {
    pub channels: usize,
    pub kernel: usize,
    /// Tap-major `[k][channels]`.
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl DepthwiseCausalConv1d {
    /// Loads `{prefix}.weight [channels, 1, k]` and `{prefix}.bias [channels]`.
    pub fn load(src: &dyn TensorSource, prefix: &str, channels: usize, kernel: usize) -> Result<Self> {
        let w = load_vec(src, &format!("{prefix}.weight"), &[channels, 1, kernel])?;
        let bias = load_vec(src, &format!("{prefix}.bias"), &[channels])?;
        let mut taps = vec![0.0; w.len()];
        for c in 0..channels {
            for j in 0..kernel {
                taps[j * channels + c] = w[c * kernel + j];
            }
        }
        Ok(DepthwiseCausalConv1d { channels, kernel, taps, bias })
    }

    pub fn new_state(&self) -> Vec<f32> {
        vec![0.0; (self.kernel - 1) * self.channels]
    }

    /// `[rows, channels]` → `[rows, channels]`, updating `history` (the last k−1 input rows).
    pub fn forward(&self, x: &[f32], rows: usize, history: &mut [f32]) -> Vec<f32> {
        let c = self.channels;
        let padded = [&*history, x].concat();
        let mut y = self.bias.repeat(rows);
        for (t, y_row) in y.chunks_exact_mut(c).enumerate() {
            for j in 0..self.kernel {
                let x_row = &padded[(t + j) * c..(t + j + 1) * c];
                let w = &self.taps[j * c..(j + 1) * c];
                for ((out, &v), &wv) in y_row.iter_mut().zip(x_row).zip(w) {
                    *out += v * wv;
                }
            }
        }
        let keep = history.len();
        history.copy_from_slice(&padded[padded.len() - keep..]);
        y
    }
}

/// `nn.ConvTranspose1d(cin, cout, k, stride=s)` made causal the qwen-tts ≥ 0.1.0 way
/// (`Qwen3TTSTokenizerV2CausalTransConvNet`): of the full `(L−1)·s + k` outputs the last
/// `k − s` are dropped, leaving exactly `L·s`; output row m depends on inputs ≤ m / s.
/// (Older ports trim both ends instead: a different, non-causal network.)
#[derive(Debug, Clone)]
pub struct CausalConvTranspose1d {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `[k·cout, cin]`: row (j, o) holds the weights from every input channel to output
    /// channel o at offset j.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl CausalConvTranspose1d {
    /// Loads `{prefix}.weight [cin, cout, k]` (PyTorch's transposed layout) and `{prefix}.bias`.
    pub fn load(
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
        Ok(CausalConvTranspose1d { cin, cout, kernel, stride, weight, bias })
    }

    /// Output rows the last input row reaches past the end of its own `s` rows.
    pub fn overlap_rows(&self) -> usize {
        self.kernel - self.stride
    }

    /// A fresh stream state: no pending partial sums.
    pub fn new_state(&self) -> Vec<f32> {
        vec![0.0; self.overlap_rows() * self.cout]
    }

    /// `[rows, cin]` → `[rows·s, cout]`, updating `carry` (partial sums of the next `k − s`
    /// output rows, without bias).
    pub fn forward(&self, x: &[f32], rows: usize, carry: &mut [f32], threads: usize) -> Vec<f32> {
        let (cout, k, s) = (self.cout, self.kernel, self.stride);
        debug_assert_eq!(x.len(), rows * self.cin);
        debug_assert_eq!(carry.len(), self.overlap_rows() * cout);
        // 1. Each input row's contribution to its k output rows: z[rows, k·cout] = x · Wᵀ.
        let mut z = vec![0.0; rows * k * cout];
        matmul_xwt(x, self.cin, &self.weight, &mut z, rows, k * cout, self.cin, false, threads);
        // 2. Overlap-add, starting from the carried partial sums. Input row n writes output
        //    rows n·s .. n·s+k; rows are added in input order, so splitting a stream into
        //    pieces does not even change the rounding.
        let tail = carry.len();
        let mut acc = vec![0.0; rows * s * cout + tail];
        acc[..tail].copy_from_slice(carry);
        for n in 0..rows {
            let dst = &mut acc[n * s * cout..(n * s + k) * cout];
            for (d, &v) in dst.iter_mut().zip(&z[n * k * cout..(n + 1) * k * cout]) {
                *d += v;
            }
        }
        // 3. Rows past rows·s are incomplete: they are the next call's carry (and what the
        //    reference trims off at the end of the signal).
        carry.copy_from_slice(&acc[rows * s * cout..]);
        acc.truncate(rows * s * cout);
        for row in acc.chunks_exact_mut(cout) {
            for (v, &b) in row.iter_mut().zip(&self.bias) {
                *v += b;
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
            let conv = CausalConv1d::load(&src, "c", cin, cout, k, dilation).unwrap();
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
                let mut hist = conv.new_state();
                let got = in_pieces(rows, cin, pieces, |x, n| conv.forward(x, n, &mut hist, 1));
                assert_close(&got, &want);
            }
        }
    }

    #[test]
    fn depthwise_conv_matches_reference_in_any_pieces() {
        let (ch, k, rows) = (5, 7, 30);
        let src = source(&[ch, 1, k], ch);
        let conv = DepthwiseCausalConv1d::load(&src, "c", ch, k).unwrap();
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
            let mut hist = conv.new_state();
            let got = in_pieces(rows, ch, pieces, |x, n| conv.forward(x, n, &mut hist));
            assert_close(&got, &want);
        }
    }

    #[test]
    fn transposed_conv_drops_the_last_k_minus_s_outputs_in_any_pieces() {
        let (cin, cout, rows) = (3, 2, 12);
        for (k, s) in [(6, 3), (2, 2), (5, 2)] {
            let src = source(&[cin, cout, k], cout);
            let conv = CausalConvTranspose1d::load(&src, "c", cin, cout, k, s).unwrap();
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
                let mut carry = conv.new_state();
                let got = in_pieces(rows, cin, pieces, |x, n| conv.forward(x, n, &mut carry, 1));
                assert_close(&got, want);
            }
        }
        let src = source(&[cin, cout, 2], cout);
        assert!(CausalConvTranspose1d::load(&src, "c", cin, cout, 2, 3).is_err(), "kernel < stride");
    }
}
