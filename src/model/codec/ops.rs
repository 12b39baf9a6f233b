//! Numeric kernels of the codec decoder: the matrix product, the norms and the activations.
//!
//! Everything is f32 on the CPU and row-major, one row per time step ("channels last"): a
//! `[rows, channels]` activation is `x[t * channels + c]`. The reference (PyTorch, f32)
//! works channels-first; the layout only changes the memory order, not the arithmetic.
//! Where PyTorch rounds to f32 between two steps, these kernels do too.

use std::f64::consts::PI;

/// Below this many multiply-adds a product runs on the calling thread: spawning costs more.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// Below this many elements an element-wise op runs on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 15;

/// `y[rows, n] (+)= x[rows, k] · w[n, k]ᵀ` through `gemm`, all row-major, `x` with row
/// stride `x_stride`. The stride may be smaller than `k`: a causal convolution reads its
/// im2col matrix as overlapping rows of one buffer.
///
/// `gemm` splits the reduction into the same blocks whatever the thread count, so the result
/// does not depend on `threads`.
///
/// # Panics
/// If a buffer is shorter than the shapes say (a bug in the caller, not bad input).
#[allow(clippy::too_many_arguments)]
pub fn matmul_xwt(
    x: &[f32],
    x_stride: usize,
    w: &[f32],
    y: &mut [f32],
    rows: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: usize,
) {
    matmul_xwt_strided(x, x_stride, w, y, n, rows, n, k, accumulate, threads);
}

/// [`matmul_xwt`] writing output row r at `y[r·y_stride ..][..n]` (`y_stride ≥ n`), so a
/// product can fill every d-th row of a larger output.
#[allow(clippy::too_many_arguments)]
pub fn matmul_xwt_strided(
    x: &[f32],
    x_stride: usize,
    w: &[f32],
    y: &mut [f32],
    y_stride: usize,
    rows: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: usize,
) {
    if rows == 0 || n == 0 {
        return;
    }
    assert!(x.len() >= (rows - 1) * x_stride + k, "matmul: lhs too short");
    assert!(w.len() >= n * k, "matmul: weight too short");
    assert!(y_stride >= n && y.len() >= (rows - 1) * y_stride + n, "matmul: output too short");
    if k == 0 {
        if !accumulate {
            y.chunks_mut(y_stride).take(rows).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let parallelism = if threads > 1 && rows * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every element the strides below can address: lhs rows
    // 0..rows at stride x_stride with k columns, rhs = wᵀ (element (i, j) = w[j*k + i]),
    // dst rows 0..rows at stride y_stride ≥ n with n columns (so no two dst elements
    // coincide). y is a unique borrow, so it aliases neither x nor w.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            y.as_mut_ptr(),
            1,
            y_stride as isize,
            accumulate, // read dst: y = 1·y + 1·(x·wᵀ)
            x.as_ptr(),
            1,
            x_stride as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A dense layer `y = x · Wᵀ (+ b)`, `W` stored `[out, in]` as in PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    pub n_in: usize,
    pub n_out: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn forward(&self, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let mut y = match &self.bias {
            Some(b) => b.repeat(rows),
            None => vec![0.0; rows * self.n_out],
        };
        matmul_xwt(x, self.n_in, &self.weight, &mut y, rows, self.n_out, self.n_in, self.bias.is_some(), threads);
        y
    }
}

/// Runs `f(first_row, rows_chunk)` over `data` (rows of `row_len`), split into contiguous
/// row ranges across up to `threads` scoped threads when the data is large enough.
pub fn par_rows<F>(data: &mut [f32], row_len: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = data.len() / row_len.max(1);
    if threads <= 1 || data.len() < PARALLEL_MIN_ELEMS || rows < 2 {
        f(0, data);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, chunk) in data.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            scope.spawn(move || f(i * per, chunk));
        }
    });
}

/// In-place `x *= scale[c]` per channel, then `x += residual` (layer scale + residual add).
pub fn scale_add_rows(residual: &mut [f32], x: &[f32], scale: &[f32]) {
    for (r_row, x_row) in residual.chunks_exact_mut(scale.len()).zip(x.chunks_exact(scale.len())) {
        for ((r, &v), &s) in r_row.iter_mut().zip(x_row).zip(scale) {
            *r += s * v;
        }
    }
}

/// RMSNorm per row (`Qwen3TTSTokenizerV2DecoderRMSNorm`): `w · x / sqrt(mean(x²) + eps)`,
/// the mean of squares accumulated in f32 like the reference.
pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let dim = weight.len();
    let mut y = vec![0.0; x.len()];
    for (x_row, y_row) in x.chunks_exact(dim).zip(y.chunks_exact_mut(dim)) {
        let mean_sq = x_row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for ((y, &v), &w) in y_row.iter_mut().zip(x_row).zip(weight) {
            *y = w * (v * inv);
        }
    }
    y
}

/// LayerNorm over the channels of each row (`nn.LayerNorm`, biased variance), in place.
pub fn layer_norm_rows(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let dim = weight.len();
    for row in x.chunks_exact_mut(dim) {
        let mean = row.iter().sum::<f32>() / dim as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &w), &b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

/// SiLU `x · sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Exact GELU `x/2 · (1 + erf(x/√2))` (`nn.GELU()` default, not the tanh form). erf is
/// evaluated in f64 and rounded once, as a correctly rounded f32 erf would be.
pub fn gelu(x: f32) -> f32 {
    let e = erf(f64::from(x * std::f32::consts::FRAC_1_SQRT_2)) as f32;
    x * 0.5 * (1.0 + e)
}

/// The error function to ~1e-14 absolute, far below f32 resolution (Rust's `f64::erf` is
/// not stable yet).
///
/// |x| < 2.5: the Maclaurin series `2/√π Σ (−1)ⁿ x²ⁿ⁺¹ / (n! (2n+1))`; its largest term is
/// below e^(x²) ≈ 520, so cancellation costs under 3 of the 16 digits.
/// |x| ≥ 2.5: `1 − erfc(x)` with erfc from its continued fraction
/// `e^(−x²)/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …))))`, which converges fast there.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    if a >= 6.0 {
        return x.signum(); // erfc(6) = 2e-17: below f64 resolution at 1.
    }
    let r = if a < 2.5 {
        let x2 = a * a;
        let (mut term, mut sum) = (a, a); // term_n = (−1)ⁿ x²ⁿ⁺¹ / n!
        // At |x| = 2.5 the terms fall below 1e-17 of the sum by n ≈ 45; `<=` also ends x = 0.
        for n in 1..=80 {
            let n = f64::from(n);
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / PI.sqrt()
    } else {
        let mut t = a;
        for n in (1..=80).rev() {
            t = a + (n as f64 * 0.5) / t;
        }
        1.0 - (-a * a).exp() / PI.sqrt() / t
    };
    r.copysign(x)
}

/// Numerically stable f32 softmax: the same function the CPU backend's attention uses.
pub use crate::backend::cpu::softmax_inplace;

/// SnakeBeta `x + 1/(e^β + 1e-9) · sin²(x · e^α)` per channel. α and β are stored in log
/// space; the two per-channel factors are computed once here exactly as the reference
/// computes them on every call (f32 exp, f32 add and divide).
#[derive(Debug, Clone)]
pub struct SnakeBeta {
    /// e^α: the frequency.
    freq: Vec<f32>,
    /// 1 / (e^β + 1e-9): the magnitude.
    inv_mag: Vec<f32>,
}

impl SnakeBeta {
    pub fn new(alpha: &[f32], beta: &[f32]) -> Self {
        const NO_DIV_BY_ZERO: f32 = 1e-9;
        SnakeBeta {
            freq: alpha.iter().map(|a| a.exp()).collect(),
            inv_mag: beta.iter().map(|b| 1.0 / (b.exp() + NO_DIV_BY_ZERO)).collect(),
        }
    }

    pub fn channels(&self) -> usize {
        self.freq.len()
    }

    /// Applies the activation to `[rows, channels]` in place.
    pub fn apply(&self, x: &mut [f32], threads: usize) {
        let c = self.channels();
        par_rows(x, c, threads, |_, chunk| {
            for row in chunk.chunks_exact_mut(c) {
                for ((v, &f), &m) in row.iter_mut().zip(&self.freq).zip(&self.inv_mag) {
                    let s = (*v * f).sin();
                    *v += m * (s * s);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_reference_values() {
        // Values from Python's math.erf (within an ulp of the true value).
        let cases = [
            (0.0, 0.0),
            (1e-3, 0.0011283787909692365),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.4999, 0.9995928300996666),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (4.0, 0.9999999845827421),
            (5.9, 0.9999999999999999),
        ];
        for (x, want) in cases {
            let got = erf(x);
            assert!((got - want).abs() < 1e-14, "erf({x}) = {got}, want {want}");
            assert!((erf(-x) + want).abs() < 1e-14, "erf is odd");
        }
    }

    #[test]
    fn gelu_is_the_exact_form() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-7);
        assert!((gelu(-1.0) + 0.158_655_25).abs() < 1e-7);
        assert_eq!(gelu(-10.0), 0.0);
    }

    #[test]
    fn matmul_matches_naive_with_strided_lhs() {
        let (rows, n, k, stride) = (5, 3, 4, 6);
        let x: Vec<f32> = (0..rows * stride).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut y = vec![1.0; rows * n];
        matmul_xwt(&x, stride, &w, &mut y, rows, n, k, true, 1);
        for r in 0..rows {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|i| x[r * stride + i] * w[j * k + i]).sum::<f32>();
                assert!((y[r * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn snake_beta_uses_log_space_parameters() {
        let s = SnakeBeta::new(&[0.0, 1.0_f32.ln()], &[0.0, 2.0_f32.ln()]);
        let mut x = vec![0.5, 0.5];
        s.apply(&mut x, 1);
        let want0 = 0.5 + 0.5_f32.sin().powi(2) / (1.0 + 1e-9);
        let want1 = 0.5 + 0.5_f32.sin().powi(2) / 2.0;
        assert!((x[0] - want0).abs() < 1e-7 && (x[1] - want1).abs() < 1e-7);
    }
}
