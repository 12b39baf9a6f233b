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

use super::audio::{AudioBackend, ConvShape, TransposedConvShape};
use super::cpu::{CpuBackend, CpuStream, CpuWeight, softmax_inplace};
use super::{AttentionShape, Backend};
use crate::error::{Error, Result};

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
        // 2. Accumulate all taps onto the bias with one product per dilation phase.
        //    Channels-last makes the im2col matrix free when d = 1: the k·cin values output
        //    row t reads are contiguous, so the padded buffer read with row stride cin (rows
        //    overlap) *is* the [rows, k·cin] matrix. For d > 1, the output rows t ≡ r (mod d)
        //    only read padded rows ≡ r (mod d): gathered into their own buffer ("phase" r),
        //    they form an undilated conv again, whose outputs land on every d-th row of y.
        let (d, kc, threads) = (dilation, kernel * cin, s.threads());
        if d == 1 {
            matmul_xwt(input, cin, w.data(), y, rows, cout, kc, true, threads);
        } else {
            let total_rows = input.len() / cin;
            let mut phase = Vec::with_capacity(total_rows.div_ceil(d) * cin);
            for r in 0..d.min(rows) {
                let phase_rows = (rows - r).div_ceil(d);
                phase.clear();
                for p in (r..total_rows).step_by(d) {
                    phase.extend_from_slice(&input[p * cin..(p + 1) * cin]);
                }
                matmul_xwt_strided(&phase, cin, w.data(), &mut y[r * cout..], d * cout, phase_rows, cout, kc, true, threads);
            }
        }
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
}
