//! The audio op set on the CPU ([`AudioBackend`] for [`CpuBackend`]) and the f32 kernels it
//! is made of, shared with the codec encoder (still CPU-only, `model::codec::encoder`).
//!
//! Everything is f32 and row-major, one row per time step ("channels last"): a
//! `[rows, channels]` activation is `x[t * channels + c]`. The reference (PyTorch, f32)
//! works channels-first; the layout only changes the memory order, not the arithmetic.
//! Where PyTorch rounds to f32 between two steps, these kernels do too: this is the oracle
//! the GPU implementation is compared with, and it is compared with the official decoder's
//! outputs itself (`tests/codec_decoder.rs`).
//!
//! Causal convolutions keep their stream state in the caller's buffers (`history`, `carry`):
//! one call over all rows and many calls over consecutive pieces compute the same numbers.

use std::f64::consts::PI;
use std::sync::atomic::{AtomicU64, Ordering};

use super::audio::{Activation, AudioBackend, ColumnSpan, ConvShape, EdgePad, TransposedConvShape, padded_conv_span};
use super::cpu::{CpuBackend, CpuStream, CpuWeight, softmax_inplace};
use super::{AttentionShape, Backend};
use crate::error::{Error, Result};

/// Below this many multiply-adds a product runs on the calling thread: spawning costs more.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// `AttentiveStatisticsPooling.eps`: the variance floor before the square root.
const STATS_VAR_FLOOR: f64 = 1e-12;

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
pub fn rms_norm_rows_into(x: &[f32], weight: &[f32], eps: f32, y: &mut [f32]) {
    let dim = weight.len();
    for (x_row, y_row) in x.chunks_exact(dim).zip(y.chunks_exact_mut(dim)) {
        let mean_sq = x_row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for ((y, &v), &w) in y_row.iter_mut().zip(x_row).zip(weight) {
            *y = w * (v * inv);
        }
    }
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

/// `nn.ELU()` (α = 1): x for x > 0, expm1(x) otherwise, within 1 ulp of the correctly
/// rounded expm1 (PyTorch's CPU kernel uses a vectorised expm1 of the same accuracy).
///
/// The conv stack evaluates ~70 M ELUs per 10 s of audio, so this is written branch-free
/// and without calls, for the compiler to vectorise: expm1(z) = 2ᵏ·expm1(r) + (2ᵏ − 1) with
/// z = k·ln2 + r, |r| ≤ ln2/2, expm1(r) from its Taylor series to r⁸ (truncation below 0.01 ulp).
/// Below −18 every input rounds to −1, so z is clamped there, keeping 2ᵏ a normal float.
#[inline(always)]
pub fn elu1(x: f32) -> f32 {
    // Cody–Waite split of ln2: LN2_HI has 9 trailing zero bits, so k·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_145_75; // 0x3F31_7200 = 0.693145751953125 exactly
    const LN2_LO: f32 = 1.428_606_8e-6; // ln2 − LN2_HI, rounded
    // 1.5·2²³: adding it rounds to an integer and leaves that integer in the low mantissa
    // bits (bits = 0x4B40_0000 + k), which gives 2ᵏ without a float → int conversion.
    const ROUND: f32 = 12_582_912.0;
    let z = x.clamp(-18.0, 0.0);
    let shifted = z * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (z - k * LN2_HI) - k * LN2_LO;
    let q = 1.0 / 2.0
        + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0))))));
    let expm1_r = r + r * r * q;
    let two_k = f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    let y = two_k * expm1_r + (two_k - 1.0);
    if x > 0.0 { x } else { y }
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

static OPS_RUN: AtomicU64 = AtomicU64::new(0);

/// Audio ops run on the CPU so far, process-wide. Tests read it around a request on a GPU
/// model to show that no codec network ran on the CPU.
pub fn cpu_audio_ops_run() -> u64 {
    OPS_RUN.load(Ordering::Relaxed)
}

fn count_op() {
    OPS_RUN.fetch_add(1, Ordering::Relaxed);
}

fn check_len(what: &str, needed: usize, available: usize) -> Result<()> {
    if needed > available {
        return Err(Error::invalid_argument(format!("{what}: needs {needed} elements but the buffer holds {available}")));
    }
    Ok(())
}

/// `rows · width` elements, or an error when the product does not fit.
fn elems(what: &str, rows: usize, width: usize) -> Result<usize> {
    rows.checked_mul(width).ok_or_else(|| Error::invalid_argument(format!("{what}: {rows} rows of {width} overflow")))
}

/// The width of a per-channel parameter vector (never 0).
fn channels(what: &str, w: &CpuWeight) -> Result<usize> {
    match w.data().len() {
        0 => Err(Error::invalid_argument(format!("{what}: empty parameter vector"))),
        n => Ok(n),
    }
}

fn check_exact(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::invalid_argument(format!("{what}: expected {expected} elements, got {got}")));
    }
    Ok(())
}

/// The stream state a causal op was given must match what its shape needs: present with
/// exactly `rows · width` elements when `rows > 0`, absent otherwise.
fn check_state<'a>(what: &str, state: Option<&'a mut Vec<f32>>, rows: usize, width: usize) -> Result<Option<&'a mut Vec<f32>>> {
    match state {
        None if rows == 0 => Ok(None),
        None => Err(Error::invalid_argument(format!("{what}: a state of {rows} rows is required"))),
        Some(_) if rows == 0 => Err(Error::invalid_argument(format!("{what}: this shape keeps no state, but one was given"))),
        Some(s) => {
            check_exact(what, rows * width, s.len())?;
            Ok(Some(s))
        }
    }
}

/// `y[t, :] += Σ_j W_j · padded[t + j·d, :]` for `t < rows`: the taps of a convolution over an
/// already padded input (`padded` holds `rows + (k−1)·d` rows of `cin`), one product per
/// dilation phase.
///
/// Channels-last makes the im2col matrix free when d = 1: the k·cin values output row t reads
/// are contiguous, so the padded buffer read with row stride cin (rows overlap) *is* the
/// [rows, k·cin] matrix. For d > 1, the output rows t ≡ r (mod d) only read padded rows ≡ r
/// (mod d): gathered into their own buffer ("phase" r), they form an undilated conv again,
/// whose outputs land on every d-th row of y.
fn conv_over_padded(padded: &[f32], rows: usize, shape: ConvShape, w: &[f32], y: &mut [f32], threads: usize) {
    let ConvShape { cin, cout, kernel, dilation: d } = shape;
    let kc = kernel * cin;
    if d == 1 {
        matmul_xwt(padded, cin, w, y, rows, cout, kc, true, threads);
    } else {
        let total_rows = padded.len() / cin;
        let mut phase = Vec::with_capacity(total_rows.div_ceil(d) * cin);
        for r in 0..d.min(rows) {
            let phase_rows = (rows - r).div_ceil(d);
            phase.clear();
            for p in (r..total_rows).step_by(d) {
                phase.extend_from_slice(&padded[p * cin..(p + 1) * cin]);
            }
            matmul_xwt_strided(&phase, cin, w, &mut y[r * cout..], d * cout, phase_rows, cout, kc, true, threads);
        }
    }
}

/// Mirrors `q` into `0..rows` without repeating the edge (`−1 → 1`, `rows → rows − 2`);
/// `|overhang| < rows` (checked by the caller).
fn reflect_index(q: isize, rows: usize) -> usize {
    let t = rows as isize;
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

/// The codebook side of [`AudioBackend::nearest_code`]'s distance: row j of `embed`
/// (`[entries, dim]`) becomes `[e_j, 1, ‖e_j‖²]` (the norm summed in order, in f32).
pub fn augmented_codebook(embed: &[f32], dim: usize) -> Vec<f32> {
    let mut rows = Vec::with_capacity(embed.len() / dim.max(1) * (dim + 2));
    for e in embed.chunks_exact(dim) {
        rows.extend_from_slice(e);
        rows.push(1.0);
        rows.push(e.iter().map(|v| v * v).sum::<f32>());
    }
    rows
}

/// [`AudioBackend::nearest_code`] on the CPU: the index of the nearest row of the augmented
/// `codebook` for each row of `x`, and the gap to the runner-up.
pub fn nearest_rows(codebook: &[f32], x: &[f32], rows: usize, dim: usize, threads: usize) -> (Vec<usize>, Vec<f32>) {
    let k = dim + 2;
    let size = codebook.len() / k;
    let mut lhs = Vec::with_capacity(rows * k);
    for row in x[..rows * dim].chunks_exact(dim) {
        lhs.extend(row.iter().map(|v| -2.0 * v));
        lhs.push(row.iter().map(|v| v * v).sum::<f32>());
        lhs.push(1.0);
    }
    let mut d2 = vec![0.0; rows * size];
    matmul_xwt(&lhs, k, codebook, &mut d2, rows, size, k, false, threads);
    let mut best = Vec::with_capacity(rows);
    let mut gaps = Vec::with_capacity(rows);
    for row in d2.chunks_exact(size) {
        let (mut b, mut bd, mut second) = (0, f32::INFINITY, f32::INFINITY);
        for (j, &v) in row.iter().enumerate() {
            let d = v.max(0.0).sqrt();
            if d < bd {
                second = bd;
                (b, bd) = (j, d);
            } else if d < second {
                second = d;
            }
        }
        best.push(b);
        gaps.push(second - bd);
    }
    (best, gaps)
}

/// `out[rows, width] = bias` per row, or zeros.
fn fill_bias(out: &mut [f32], width: usize, bias: Option<&[f32]>) {
    match bias {
        Some(b) => out.chunks_exact_mut(width).for_each(|row| row.copy_from_slice(b)),
        None => out.fill(0.0),
    }
}

impl AudioBackend for CpuBackend {
    type AudioWeight = CpuWeight;

    fn upload_audio_weight(&self, data: &[f32], shape: &[usize]) -> Result<CpuWeight> {
        self.upload_weight_f32(data, shape)
    }

    fn audio_weight_len(&self, w: &CpuWeight) -> usize {
        w.data().len()
    }

    fn zero(&self, _s: &mut CpuStream, x: &mut Vec<f32>) -> Result<()> {
        x.fill(0.0);
        Ok(())
    }

    fn causal_conv(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        history: Option<&mut Vec<f32>>,
        shape: ConvShape,
        w: &CpuWeight,
        bias: Option<&CpuWeight>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let ConvShape { cin, cout, kernel, dilation } = shape;
        if kernel == 0 || dilation == 0 {
            return Err(Error::invalid_argument(format!("causal_conv: kernel {kernel} and dilation {dilation} must be positive")));
        }
        check_exact("causal_conv weight", shape.weight_len(), w.data().len())?;
        if let Some(b) = bias {
            check_exact("causal_conv bias", cout, b.data().len())?;
        }
        check_len("causal_conv input", elems("causal_conv input", rows, cin)?, x.len())?;
        check_len("causal_conv output", elems("causal_conv output", rows, cout)?, y.len())?;
        let history = check_state("causal_conv history", history, shape.history_rows(), cin)?;
        let y = &mut y[..rows * cout];
        fill_bias(y, cout, bias.map(|b| b.data()));
        if rows == 0 {
            return Ok(());
        }
        let x = &x[..rows * cin];
        // 1. The padded input: carried history rows, then the new rows. Output row t sees
        //    padded rows t + j·d for taps j = 0..k (tap k−1 is the current row).
        let padded: Vec<f32>;
        let input = match &history {
            None => x,
            Some(h) => {
                padded = [h.as_slice(), x].concat();
                &padded
            }
        };
        // 2. Accumulate all taps onto the bias.
        conv_over_padded(input, rows, shape, w.data(), y, s.threads());
        // 3. The last (k−1)·d input rows become the history of the next call.
        if let Some(h) = history {
            let keep = h.len();
            h.copy_from_slice(&input[input.len() - keep..]);
        }
        Ok(())
    }

    fn causal_conv_transpose(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        carry: Option<&mut Vec<f32>>,
        shape: TransposedConvShape,
        w: &CpuWeight,
        bias: &CpuWeight,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let TransposedConvShape { cin, cout, kernel: k, stride } = shape;
        if stride == 0 || k < stride {
            return Err(Error::invalid_argument(format!(
                "causal_conv_transpose: kernel {k} and stride {stride} (need kernel ≥ stride ≥ 1)"
            )));
        }
        check_exact("causal_conv_transpose weight", shape.weight_len(), w.data().len())?;
        check_exact("causal_conv_transpose bias", cout, bias.data().len())?;
        check_len("causal_conv_transpose input", elems("causal_conv_transpose input", rows, cin)?, x.len())?;
        // z holds k ≥ stride rows per input row: when its size fits, so does the output's.
        elems("causal_conv_transpose", rows, elems("causal_conv_transpose", k, cout)?)?;
        check_len("causal_conv_transpose output", rows * stride * cout, y.len())?;
        let carry = check_state("causal_conv_transpose carry", carry, shape.overlap_rows(), cout)?;
        // 1. Each input row's contribution to its k output rows: z[rows, k·cout] = x · Wᵀ.
        let mut z = vec![0.0; rows * k * cout];
        matmul_xwt(&x[..rows * cin], cin, w.data(), &mut z, rows, k * cout, cin, false, s.threads());
        // 2. Overlap-add, starting from the carried partial sums. Input row n writes output
        //    rows n·s .. n·s+k; rows are added in input order, so splitting a stream into
        //    pieces does not even change the rounding.
        let tail = shape.overlap_rows() * cout;
        let mut acc = vec![0.0; rows * stride * cout + tail];
        if let Some(c) = carry.as_deref() {
            acc[..tail].copy_from_slice(c);
        }
        for n in 0..rows {
            let dst = &mut acc[n * stride * cout..(n * stride + k) * cout];
            for (d, &v) in dst.iter_mut().zip(&z[n * k * cout..(n + 1) * k * cout]) {
                *d += v;
            }
        }
        // 3. Rows past rows·s are incomplete: they are the next call's carry (and what the
        //    reference trims off at the end of the signal).
        let done = rows * stride * cout;
        if let Some(c) = carry {
            c.copy_from_slice(&acc[done..]);
        }
        for (out_row, acc_row) in y[..done].chunks_exact_mut(cout).zip(acc[..done].chunks_exact(cout)) {
            for ((o, &a), &b) in out_row.iter_mut().zip(acc_row).zip(bias.data()) {
                *o = a + b;
            }
        }
        Ok(())
    }

    fn depthwise_causal_conv(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        history: &mut Vec<f32>,
        channels: usize,
        kernel: usize,
        taps: &CpuWeight,
        bias: &CpuWeight,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let c = channels;
        if kernel == 0 {
            return Err(Error::invalid_argument("depthwise_causal_conv: kernel must be positive"));
        }
        check_exact("depthwise_causal_conv taps", kernel * c, taps.data().len())?;
        check_exact("depthwise_causal_conv bias", c, bias.data().len())?;
        check_exact("depthwise_causal_conv history", (kernel - 1) * c, history.len())?;
        check_len("depthwise_causal_conv input", elems("depthwise_causal_conv input", rows, c)?, x.len())?;
        check_len("depthwise_causal_conv output", rows * c, y.len())?;
        let padded = [history.as_slice(), &x[..rows * c]].concat();
        let y = &mut y[..rows * c];
        fill_bias(y, c, Some(bias.data()));
        for (t, y_row) in y.chunks_exact_mut(c).enumerate() {
            for j in 0..kernel {
                let x_row = &padded[(t + j) * c..(t + j + 1) * c];
                let w = &taps.data()[j * c..(j + 1) * c];
                for ((out, &v), &wv) in y_row.iter_mut().zip(x_row).zip(w) {
                    *out += v * wv;
                }
            }
        }
        let keep = history.len();
        history.copy_from_slice(&padded[padded.len() - keep..]);
        Ok(())
    }

    fn layer_norm(
        &self,
        _s: &mut CpuStream,
        x: &mut Vec<f32>,
        rows: usize,
        weight: &CpuWeight,
        bias: &CpuWeight,
        eps: f32,
    ) -> Result<()> {
        count_op();
        let dim = channels("layer_norm weight", weight)?;
        check_exact("layer_norm bias", dim, bias.data().len())?;
        check_len("layer_norm input", elems("layer_norm input", rows, dim)?, x.len())?;
        layer_norm_rows(&mut x[..rows * dim], weight.data(), bias.data(), eps);
        Ok(())
    }

    fn audio_rms_norm(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        weight: &CpuWeight,
        eps: f32,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let dim = channels("rms_norm weight", weight)?;
        check_len("rms_norm input", elems("rms_norm input", rows, dim)?, x.len())?;
        check_len("rms_norm output", rows * dim, y.len())?;
        rms_norm_rows_into(&x[..rows * dim], weight.data(), eps, &mut y[..rows * dim]);
        Ok(())
    }

    fn gelu(&self, s: &mut CpuStream, x: &mut Vec<f32>, len: usize) -> Result<()> {
        count_op();
        check_len("gelu", len, x.len())?;
        // Split into 1024-wide "rows" only to spread the work over threads.
        par_rows(&mut x[..len], 1024, s.threads(), |_, chunk| chunk.iter_mut().for_each(|v| *v = gelu(*v)));
        Ok(())
    }

    fn snake_beta(
        &self,
        s: &mut CpuStream,
        x: &mut Vec<f32>,
        rows: usize,
        freq: &CpuWeight,
        inv_mag: &CpuWeight,
    ) -> Result<()> {
        count_op();
        let c = channels("snake_beta frequencies", freq)?;
        check_exact("snake_beta magnitudes", c, inv_mag.data().len())?;
        check_len("snake_beta input", elems("snake_beta input", rows, c)?, x.len())?;
        let (freq, inv_mag) = (freq.data(), inv_mag.data());
        par_rows(&mut x[..rows * c], c, s.threads(), |_, chunk| {
            for row in chunk.chunks_exact_mut(c) {
                for ((v, &f), &m) in row.iter_mut().zip(freq).zip(inv_mag) {
                    let s = (*v * f).sin();
                    *v += m * (s * s);
                }
            }
        });
        Ok(())
    }

    fn scale_add(
        &self,
        _s: &mut CpuStream,
        residual: &mut Vec<f32>,
        x: &Vec<f32>,
        rows: usize,
        scale: &CpuWeight,
    ) -> Result<()> {
        count_op();
        let c = channels("scale_add scale", scale)?;
        check_len("scale_add residual", elems("scale_add residual", rows, c)?, residual.len())?;
        check_len("scale_add input", rows * c, x.len())?;
        scale_add_rows(&mut residual[..rows * c], &x[..rows * c], scale.data());
        Ok(())
    }

    fn clamp(&self, _s: &mut CpuStream, x: &mut Vec<f32>, len: usize, lo: f32, hi: f32) -> Result<()> {
        count_op();
        check_len("clamp", len, x.len())?;
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::invalid_argument(format!("clamp: bounds {lo}..={hi}")));
        }
        x[..len].iter_mut().for_each(|v| *v = v.clamp(lo, hi));
        Ok(())
    }

    fn codebook_sum(&self, _s: &mut CpuStream, tables: &[&CpuWeight], ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        count_op();
        let t = tables.len();
        if t == 0 || !ids.len().is_multiple_of(t) {
            return Err(Error::invalid_argument(format!("codebook_sum: {} ids for {t} tables", ids.len())));
        }
        let dim = match tables[0].shape() {
            [_, dim] => *dim,
            shape => return Err(Error::invalid_argument(format!("codebook_sum: table of shape {shape:?} is not 2-D"))),
        };
        if let Some(bad) = tables.iter().find(|tab| tab.shape().len() != 2 || tab.shape()[1] != dim) {
            return Err(Error::invalid_argument(format!("codebook_sum: tables of widths {dim} and {:?}", bad.shape())));
        }
        let rows = ids.len() / t;
        check_len("codebook_sum output", elems("codebook_sum output", rows, dim)?, out.len())?;
        // Every id is checked before anything is written.
        for row_ids in ids.chunks_exact(t) {
            for (&id, table) in row_ids.iter().zip(tables) {
                let entries = table.shape()[0];
                if id as usize >= entries {
                    return Err(Error::invalid_argument(format!("codebook_sum: id {id} out of range for {entries} entries")));
                }
            }
        }
        for (r, row_ids) in ids.chunks_exact(t).enumerate() {
            let dst = &mut out[r * dim..(r + 1) * dim];
            for (i, (&id, table)) in row_ids.iter().zip(tables).enumerate() {
                let id = id as usize;
                let src = &table.data()[id * dim..(id + 1) * dim];
                if i == 0 {
                    dst.copy_from_slice(src);
                } else {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
        }
        Ok(())
    }

    fn window_attention(
        &self,
        _s: &mut CpuStream,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        rows: usize,
        shape: AttentionShape,
        window: usize,
        keys: &mut Vec<f32>,
        values: &mut Vec<f32>,
        past: usize,
        out: &mut Vec<f32>,
    ) -> Result<usize> {
        count_op();
        let AttentionShape { num_heads, num_kv_heads, head_dim: hd } = shape;
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 || hd == 0 {
            return Err(Error::invalid_argument(format!(
                "window_attention: {num_heads} query heads, {num_kv_heads} key/value heads, head_dim {hd}"
            )));
        }
        if window == 0 || past >= window {
            return Err(Error::invalid_argument(format!("window_attention: {past} remembered rows for a window of {window}")));
        }
        let (q_dim, kv_dim) = (num_heads * hd, num_kv_heads * hd);
        let total = past + rows;
        check_len("window_attention queries", rows * q_dim, q.len())?;
        check_len("window_attention new keys", rows * kv_dim, k.len())?;
        check_len("window_attention new values", rows * kv_dim, v.len())?;
        check_len("window_attention key window", total * kv_dim, keys.len())?;
        check_len("window_attention value window", total * kv_dim, values.len())?;
        check_len("window_attention output", rows * q_dim, out.len())?;
        // 1. Keys/values visible to this call: the remembered ones, then the new ones.
        keys[past * kv_dim..total * kv_dim].copy_from_slice(&k[..rows * kv_dim]);
        values[past * kv_dim..total * kv_dim].copy_from_slice(&v[..rows * kv_dim]);
        // 2. Scaled dot-product attention; new row t is key index past + t and sees key
        //    indices past + t − (window − 1) ..= past + t.
        let scale = 1.0 / (hd as f32).sqrt();
        let group = num_heads / num_kv_heads;
        let out = &mut out[..rows * q_dim];
        out.fill(0.0);
        let mut scores = Vec::with_capacity(window);
        for t in 0..rows {
            let last = past + t;
            let first = (last + 1).saturating_sub(window);
            for head in 0..num_heads {
                let kv_off = (head / group) * hd;
                let q_row = &q[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
                scores.clear();
                for key in first..=last {
                    let k_row = &keys[key * kv_dim + kv_off..key * kv_dim + kv_off + hd];
                    scores.push(q_row.iter().zip(k_row).map(|(a, b)| a * b).sum::<f32>() * scale);
                }
                softmax_inplace(&mut scores);
                let o = &mut out[t * q_dim + head * hd..t * q_dim + (head + 1) * hd];
                for (key, &p) in (first..=last).zip(&scores) {
                    let v_row = &values[key * kv_dim + kv_off..key * kv_dim + kv_off + hd];
                    for (acc, &vv) in o.iter_mut().zip(v_row) {
                        *acc += p * vv;
                    }
                }
            }
        }
        // 3. Keep only what a later query can see, at the front.
        let keep = total.min(window - 1);
        keys.copy_within((total - keep) * kv_dim..total * kv_dim, 0);
        values.copy_within((total - keep) * kv_dim..total * kv_dim, 0);
        Ok(keep)
    }

    fn reflect_conv(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        shape: ConvShape,
        w: &CpuWeight,
        bias: &CpuWeight,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let ConvShape { cin, cout, kernel, dilation } = shape;
        if kernel == 0 || dilation == 0 {
            return Err(Error::invalid_argument(format!("reflect_conv: kernel {kernel} and dilation {dilation} must be positive")));
        }
        check_exact("reflect_conv weight", shape.weight_len(), w.data().len())?;
        check_exact("reflect_conv bias", cout, bias.data().len())?;
        check_len("reflect_conv input", elems("reflect_conv input", rows, cin)?, x.len())?;
        check_len("reflect_conv output", elems("reflect_conv output", rows, cout)?, y.len())?;
        let total = (kernel - 1)
            .checked_mul(dilation)
            .ok_or_else(|| Error::invalid_argument("reflect_conv: kernel x dilation overflows"))?;
        let (left, right) = (total / 2, total - total / 2);
        if left.max(right) >= rows {
            return Err(Error::invalid_argument(format!(
                "reflect_conv: each pad ({left} and {right} rows) must be shorter than the {rows} rows"
            )));
        }
        // The reflect-padded input (the input itself for one tap), then the taps over it.
        let padded: Vec<f32>;
        let input = if total == 0 {
            &x[..rows * cin]
        } else {
            let mut p = Vec::with_capacity((rows + total) * cin);
            for q in -(left as isize)..(rows + right) as isize {
                let src = reflect_index(q, rows);
                p.extend_from_slice(&x[src * cin..(src + 1) * cin]);
            }
            padded = p;
            &padded
        };
        let y = &mut y[..rows * cout];
        fill_bias(y, cout, Some(bias.data()));
        conv_over_padded(input, rows, shape, w.data(), y, s.threads());
        Ok(())
    }

    fn copy_columns(
        &self,
        _s: &mut CpuStream,
        src: &Vec<f32>,
        src_span: ColumnSpan,
        dst: &mut Vec<f32>,
        dst_span: ColumnSpan,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        count_op();
        if rows == 0 || width == 0 {
            return Ok(());
        }
        if dst_span.row_stride < width {
            return Err(Error::invalid_argument(format!(
                "copy_columns: destination rows of {} cannot hold {width} columns",
                dst_span.row_stride
            )));
        }
        // The last element each side touches, checked without overflow.
        let end = |span: ColumnSpan, what: &str| -> Result<usize> {
            span.end(rows, width).ok_or_else(|| Error::invalid_argument(format!("copy_columns: {what} span overflows")))
        };
        check_len("copy_columns source", end(src_span, "source")?, src.len())?;
        check_len("copy_columns destination", end(dst_span, "destination")?, dst.len())?;
        for t in 0..rows {
            let from = t * src_span.row_stride + src_span.first;
            let to = t * dst_span.row_stride + dst_span.first;
            dst[to..to + width].copy_from_slice(&src[from..from + width]);
        }
        Ok(())
    }

    fn column_mean(&self, _s: &mut CpuStream, x: &Vec<f32>, rows: usize, width: usize, out: &mut Vec<f32>) -> Result<()> {
        count_op();
        check_len("column_mean input", elems("column_mean input", rows, width)?, x.len())?;
        check_len("column_mean output", width, out.len())?;
        if rows == 0 {
            return Err(Error::invalid_argument("column_mean: no rows"));
        }
        for (c, o) in out[..width].iter_mut().enumerate() {
            let sum: f64 = (0..rows).map(|t| f64::from(x[t * width + c])).sum();
            *o = (sum / rows as f64) as f32;
        }
        Ok(())
    }

    fn column_stats(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        width: usize,
        weights: Option<&Vec<f32>>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let n = elems("column_stats input", rows, width)?;
        check_len("column_stats input", n, x.len())?;
        check_len("column_stats output", elems("column_stats output", 2, width)?, out.len())?;
        if let Some(w) = weights {
            check_len("column_stats weights", n, w.len())?;
        }
        if rows == 0 {
            return Err(Error::invalid_argument("column_stats: no rows"));
        }
        let uniform = 1.0f32 / rows as f32;
        let weight = |t: usize, c: usize| weights.map_or(uniform, |w| w[t * width + c]);
        for c in 0..width {
            let mean: f64 = (0..rows).map(|t| f64::from(weight(t, c) * x[t * width + c])).sum();
            let mean = mean as f32;
            let var: f64 = (0..rows)
                .map(|t| {
                    let dev = x[t * width + c] - mean;
                    f64::from(weight(t, c) * (dev * dev))
                })
                .sum();
            out[c] = mean;
            out[width + c] = var.max(STATS_VAR_FLOOR).sqrt() as f32;
        }
        Ok(())
    }

    fn column_softmax(&self, _s: &mut CpuStream, x: &mut Vec<f32>, rows: usize, width: usize) -> Result<()> {
        count_op();
        check_len("column_softmax", elems("column_softmax", rows, width)?, x.len())?;
        for c in 0..width {
            let max = (0..rows).fold(f32::NEG_INFINITY, |m, t| m.max(x[t * width + c]));
            let mut sum = 0f64;
            for t in 0..rows {
                let e = (x[t * width + c] - max).exp();
                x[t * width + c] = e;
                sum += f64::from(e);
            }
            for t in 0..rows {
                x[t * width + c] = (f64::from(x[t * width + c]) / sum) as f32;
            }
        }
        Ok(())
    }

    fn activation(&self, _s: &mut CpuStream, x: &mut Vec<f32>, len: usize, f: Activation) -> Result<()> {
        count_op();
        check_len("activation", len, x.len())?;
        let x = &mut x[..len];
        match f {
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Sigmoid => x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::Elu => x.iter_mut().for_each(|v| *v = elu1(*v)),
        }
        Ok(())
    }

    fn gate_add(
        &self,
        _s: &mut CpuStream,
        residual: &mut Vec<f32>,
        x: &Vec<f32>,
        rows: usize,
        width: usize,
        gate: &Vec<f32>,
    ) -> Result<()> {
        count_op();
        let n = elems("gate_add", rows, width)?;
        check_len("gate_add residual", n, residual.len())?;
        check_len("gate_add input", n, x.len())?;
        check_len("gate_add gate", width, gate.len())?;
        if width == 0 {
            return Ok(());
        }
        for (res, row) in residual[..n].chunks_exact_mut(width).zip(x[..n].chunks_exact(width)) {
            for ((r, &v), &g) in res.iter_mut().zip(row).zip(&gate[..width]) {
                *r += v * g;
            }
        }
        Ok(())
    }

    fn reflect_pad(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        width: usize,
        left: usize,
        right: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        check_len("reflect_pad input", elems("reflect_pad input", rows, width)?, x.len())?;
        let padded = rows.checked_add(left).and_then(|r| r.checked_add(right));
        let padded = padded.ok_or_else(|| Error::invalid_argument("reflect_pad: padded rows overflow"))?;
        check_len("reflect_pad output", elems("reflect_pad output", padded, width)?, out.len())?;
        if left.max(right) >= rows {
            return Err(Error::invalid_argument(format!(
                "reflect_pad: each pad ({left} and {right} rows) must be shorter than the {rows} rows"
            )));
        }
        for p in 0..padded {
            let src = reflect_index(p as isize - left as isize, rows);
            out[p * width..(p + 1) * width].copy_from_slice(&x[src * width..(src + 1) * width]);
        }
        Ok(())
    }

    fn complex_magnitude(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        bins: usize,
        eps: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        count_op();
        let pairs = bins.checked_mul(2).ok_or_else(|| Error::invalid_argument("complex_magnitude: bins overflow"))?;
        check_len("complex_magnitude input", elems("complex_magnitude input", rows, pairs)?, x.len())?;
        check_len("complex_magnitude output", elems("complex_magnitude output", rows, bins)?, out.len())?;
        for t in 0..rows {
            let (re, im) = x[t * 2 * bins..(t + 1) * 2 * bins].split_at(bins);
            for k in 0..bins {
                out[t * bins + k] = (re[k] * re[k] + im[k] * im[k] + eps).sqrt();
            }
        }
        Ok(())
    }

    fn padded_conv(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        shape: ConvShape,
        stride: usize,
        pad: EdgePad,
        w: &CpuWeight,
        bias: Option<&CpuWeight>,
        y: &mut Vec<f32>,
    ) -> Result<usize> {
        count_op();
        let ConvShape { cin, cout, kernel, dilation } = shape;
        let span = padded_conv_span(kernel, dilation, stride, rows)?;
        check_exact("padded_conv weight", shape.weight_len(), w.data().len())?;
        if let Some(b) = bias {
            check_exact("padded_conv bias", cout, b.data().len())?;
        }
        check_len("padded_conv input", elems("padded_conv input", rows, cin)?, x.len())?;
        let out = span.out_rows;
        check_len("padded_conv output", elems("padded_conv output", out, cout)?, y.len())?;
        let y = &mut y[..out * cout];
        fill_bias(y, cout, bias.map(|b| b.data()));
        if cin == 0 || cout == 0 {
            return Ok(out);
        }
        // 1. The padded signal [left | x | extra].
        let x = &x[..rows * cin];
        let mut padded = Vec::with_capacity((span.left + rows + span.extra) * cin);
        let (first, last) = (&x[..cin], &x[(rows - 1) * cin..]);
        for _ in 0..span.left {
            match pad {
                EdgePad::Zeros => padded.extend(std::iter::repeat_n(0.0, cin)),
                EdgePad::Replicate => padded.extend_from_slice(first),
            }
        }
        padded.extend_from_slice(x);
        for _ in 0..span.extra {
            match pad {
                EdgePad::Zeros => padded.extend(std::iter::repeat_n(0.0, cin)),
                EdgePad::Replicate => padded.extend_from_slice(last),
            }
        }
        // 2. Output row t reads padded rows t·stride + j·d. Dilation 1: those k·cin values are
        //    contiguous, so the padded buffer read with row stride stride·cin is the im2col
        //    matrix; otherwise it is gathered. One product either way.
        let kc = kernel * cin;
        if dilation == 1 {
            matmul_xwt(&padded, stride * cin, w.data(), y, out, cout, kc, true, s.threads());
        } else {
            let mut cols = Vec::with_capacity(out * kc);
            for t in 0..out {
                for j in 0..kernel {
                    let p = t * stride + j * dilation;
                    cols.extend_from_slice(&padded[p * cin..(p + 1) * cin]);
                }
            }
            matmul_xwt(&cols, kc, w.data(), y, out, cout, kc, true, s.threads());
        }
        Ok(out)
    }

    fn nearest_code(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        dim: usize,
        codebook: &CpuWeight,
        ids: &mut [u32],
        margins: &mut [f32],
    ) -> Result<()> {
        count_op();
        let k = dim.checked_add(2).ok_or_else(|| Error::invalid_argument("nearest_code: dim overflows"))?;
        let cb = codebook.data();
        if cb.is_empty() || cb.len() % k != 0 {
            return Err(Error::invalid_argument(format!(
                "nearest_code: a codebook of {} values is not whole rows of dim + 2 = {k}",
                cb.len()
            )));
        }
        check_len("nearest_code input", elems("nearest_code input", rows, dim)?, x.len())?;
        check_len("nearest_code ids", rows, ids.len())?;
        check_len("nearest_code margins", rows, margins.len())?;
        let (best, gaps) = nearest_rows(cb, x, rows, dim, s.threads());
        for (t, (&i, &g)) in best.iter().zip(&gaps).enumerate() {
            ids[t] = i as u32;
            margins[t] = g;
        }
        Ok(())
    }

    fn log_clamped(&self, _s: &mut CpuStream, x: &mut Vec<f32>, len: usize, floor: f32) -> Result<()> {
        count_op();
        check_len("log_clamped", len, x.len())?;
        if !(floor > 0.0 && floor.is_finite()) {
            return Err(Error::invalid_argument(format!("log_clamped: floor {floor} must be positive")));
        }
        x[..len].iter_mut().for_each(|v| *v = v.max(floor).ln());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
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
    fn bad_arguments_are_errors_not_panics() {
        let cpu = CpuBackend::new(1);
        let mut s = cpu.new_stream().unwrap();
        let mut x = vec![0.5f32; 8];
        assert!(cpu.clamp(&mut s, &mut x, 8, 1.0, -1.0).is_err(), "lo > hi");
        assert!(cpu.clamp(&mut s, &mut x, 8, f32::NAN, 1.0).is_err(), "NaN bound");
        let empty = cpu.upload_weight_f32(&[], &[0]).unwrap();
        let mut y = vec![0.0f32; 8];
        assert!(cpu.layer_norm(&mut s, &mut x, 2, &empty, &empty, 1e-5).is_err());
        assert!(cpu.audio_rms_norm(&mut s, &x, 2, &empty, 1e-5, &mut y).is_err());
        assert!(cpu.snake_beta(&mut s, &mut x, 2, &empty, &empty).is_err());
        assert!(cpu.scale_add(&mut s, &mut y, &x, 2, &empty).is_err());
        let w = cpu.upload_weight_f32(&[1.0; 4], &[1, 4]).unwrap();
        assert!(cpu.scale_add(&mut s, &mut y, &x, usize::MAX / 2, &w).is_err(), "rows · width overflows");
        // An out-of-range id in the second row leaves the output untouched.
        let table = cpu.upload_weight_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let mut out = vec![-7.0f32; 4];
        assert!(cpu.codebook_sum(&mut s, &[&table], &[1, 2], &mut out).is_err());
        assert_eq!(out, [-7.0; 4]);
        cpu.codebook_sum(&mut s, &[&table, &table], &[1, 0, 0, 0], &mut out).unwrap();
        assert_eq!(out, [4.0, 6.0, 2.0, 4.0], "rows summed table by table");
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let idx: Vec<usize> = (-2..7).map(|q| reflect_index(q, 5)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 3, 4, 3, 2]);
    }

    #[test]
    fn reflect_conv_matches_a_direct_dilated_conv() {
        // Two channels in, one out, k 3, d 2: left pad 2, right pad 2, reflected.
        let cpu = CpuBackend::new(1);
        let mut s = cpu.new_stream().unwrap();
        let (rows, cin) = (6, 2);
        let x: Vec<f32> = (0..rows * cin).map(|i| (i as f32 * 0.37).sin()).collect();
        let shape = ConvShape { cin, cout: 1, kernel: 3, dilation: 2 };
        let taps = [0.5f32, -1.25, 2.0, 0.75, -0.5, 1.5]; // tap-major [1, 3·2]
        let w = cpu.upload_audio_weight(&taps, &[1, 6]).unwrap();
        let b = cpu.upload_audio_weight(&[0.25], &[1]).unwrap();
        let mut y = vec![0.0; rows];
        cpu.reflect_conv(&mut s, &x, rows, shape, &w, &b, &mut y).unwrap();
        for (t, &got) in y.iter().enumerate() {
            let mut want = 0.25f64;
            for j in 0..3 {
                let src = reflect_index(t as isize + 2 * j as isize - 2, rows);
                for i in 0..cin {
                    want += f64::from(taps[j * cin + i]) * f64::from(x[src * cin + i]);
                }
            }
            assert!((f64::from(got) - want).abs() < 1e-5, "row {t}: {got} vs {want}");
        }
        // The padding must be shorter than the sequence: 2 rows cannot hold a pad of 2.
        assert!(cpu.reflect_conv(&mut s, &x, 2, shape, &w, &b, &mut y).is_err());
    }

    #[test]
    fn column_ops_follow_their_formulas() {
        let cpu = CpuBackend::new(1);
        let mut s = cpu.new_stream().unwrap();
        // [3 rows, 2 columns]
        let x = vec![1.0f32, 10.0, 2.0, 20.0, 6.0, 60.0];
        let mut mean = vec![0.0; 2];
        cpu.column_mean(&mut s, &x, 3, 2, &mut mean).unwrap();
        assert_eq!(mean, [3.0, 30.0]);
        let mut stats = vec![0.0; 4];
        cpu.column_stats(&mut s, &x, 3, 2, None, &mut stats).unwrap();
        // Uniform weights 1/3: the mean, and the biased standard deviation.
        assert!((stats[0] - 3.0).abs() < 1e-6 && (stats[1] - 30.0).abs() < 1e-5, "{stats:?}");
        assert!((stats[2] - (14.0f32 / 3.0).sqrt()).abs() < 1e-6, "{stats:?}");
        // Weights picking one row: its value, no spread (the 1e-12 floor under the root).
        let pick = vec![0.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
        cpu.column_stats(&mut s, &x, 3, 2, Some(&pick), &mut stats).unwrap();
        assert_eq!(stats, [2.0, 20.0, 1e-6, 1e-6]);
        // Softmax runs down the columns.
        let mut sm = vec![0.0f32, 5.0, 0.0, 5.0, 0.0, 5.0];
        cpu.column_softmax(&mut s, &mut sm, 3, 2).unwrap();
        assert!(sm.iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-7), "{sm:?}");
        // Copies: a block into the middle, a broadcast row; out of range refused.
        let mut dst = vec![0.0f32; 3 * 4];
        cpu.copy_columns(&mut s, &x, ColumnSpan::of(2, 1), &mut dst, ColumnSpan::of(4, 2), 3, 1).unwrap();
        cpu.copy_columns(&mut s, &mean, ColumnSpan::broadcast(0), &mut dst, ColumnSpan::of(4, 0), 3, 2).unwrap();
        assert_eq!(dst, [3.0, 30.0, 10.0, 0.0, 3.0, 30.0, 20.0, 0.0, 3.0, 30.0, 60.0, 0.0]);
        assert!(cpu.copy_columns(&mut s, &x, ColumnSpan::of(2, 1), &mut dst, ColumnSpan::of(4, 3), 3, 2).is_err());
        assert!(cpu.copy_columns(&mut s, &x, ColumnSpan::of(2, 1), &mut dst, ColumnSpan::of(1, 0), 3, 2).is_err());
        assert!(cpu.column_stats(&mut s, &x, 0, 2, None, &mut stats).is_err(), "no rows");
    }
}
