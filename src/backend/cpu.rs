//! The CPU backend: f32 everywhere, written for clarity and exactness, not speed.
//!
//! This is the oracle for every other backend and what CI runs end to end. Weights are
//! converted to f32 once at upload (BF16 and F16 convert exactly), so computing with them
//! is the same as the official implementation running in float32 on the same checkpoint.
//!
//! Multi-row matrix products (prefill) go through the `gemm` crate. Its results do not
//! depend on the thread count: for a fixed shape it splits the reduction (k) into the same
//! cache blocks and only distributes independent output tiles over threads. Single-row
//! products (every decode step) use our own dot-product GEMV instead: gemm's GEMV sums an
//! output differently depending on where it falls in the column block, so splitting the
//! columns over threads would change results with the thread count. Ours computes every
//! output element with the same fixed-order dot product, whichever thread runs it.

use std::num::NonZeroUsize;

use super::{AttentionShape, Backend, Rope};
use crate::error::{Error, Result};
use crate::tensor::TensorView;

/// The CPU backend. `threads` bounds the parallelism of each op.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    threads: usize,
}

/// An f32 weight tensor with its shape.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    data: Vec<f32>,
    shape: Vec<usize>,
}

impl CpuWeight {
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// Per-request context: how many threads this request's ops may use.
#[derive(Debug, Clone, Copy)]
pub struct CpuStream {
    threads: usize,
}

impl CpuStream {
    /// Threads this request's ops may use.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map(NonZeroUsize::get).unwrap_or(1))
    }
}

impl CpuBackend {
    /// A backend whose ops use up to `threads` threads (at least 1).
    pub fn new(threads: usize) -> Self {
        CpuBackend { threads: threads.max(1) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

fn check_len(what: &str, needed: usize, available: usize) -> Result<()> {
    if needed > available {
        return Err(Error::invalid_argument(format!(
            "{what}: needs {needed} elements but the buffer holds {available}"
        )));
    }
    Ok(())
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `y[rows, n] (+)= x[rows, k] · w[n, k]ᵀ` through gemm (row-major everywhere).
fn gemm_xwt(x: &[f32], w: &[f32], y: &mut [f32], rows: usize, n: usize, k: usize, accumulate: bool, threads: usize) {
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the caller checked x.len() >= rows*k, w.len() == n*k, y.len() >= rows*n; the
    // strides below describe exactly those row-major layouts, and y does not alias x or w.
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            y.as_mut_ptr(),
            1,           // dst column stride
            n as isize,  // dst row stride
            accumulate,  // read dst: y = 1·y + 1·(x·wᵀ)
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize, // rhs = wᵀ: element (i, j) = w[j*k + i], so column stride k
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

/// Fixed-order dot product: eight interleaved partial sums, then a fixed pairwise combine.
/// The order depends only on `k`, so every output element is bit-reproducible.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, a_tail) = a.split_at(a.len() / 8 * 8);
    let (b8, b_tail) = b.split_at(a8.len());
    for (ca, cb) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `y[j] (+)= x · w[j, :]` for a single input row, output columns split over threads.
fn gemv_xwt(x: &[f32], w: &[f32], y: &mut [f32], k: usize, accumulate: bool, threads: usize) {
    let n = y.len();
    let run = |y_chunk: &mut [f32], first: usize| {
        for (j, out) in y_chunk.iter_mut().enumerate() {
            let d = dot(x, &w[(first + j) * k..(first + j + 1) * k]);
            *out = if accumulate { *out + d } else { d };
        }
    };
    // Spawning a scoped thread costs tens of microseconds; below ~256k multiply-adds
    // (about that long on one core) splitting costs more than it saves.
    if threads <= 1 || n * k < 1 << 18 {
        run(y, 0);
        return;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, y_chunk) in y.chunks_mut(chunk).enumerate() {
            scope.spawn(move || run(y_chunk, i * chunk));
        }
    });
}

impl Backend for CpuBackend {
    type Weight = CpuWeight;
    type Buffer = Vec<f32>;
    type Stream = CpuStream;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn new_stream(&self) -> Result<CpuStream> {
        Ok(CpuStream { threads: self.threads })
    }

    fn upload_weight(&self, view: &TensorView<'_>) -> Result<CpuWeight> {
        Ok(CpuWeight { data: view.to_f32_vec(), shape: view.shape.to_vec() })
    }

    fn upload_weight_f32(&self, data: &[f32], shape: &[usize]) -> Result<CpuWeight> {
        let len: usize = shape.iter().product();
        if len != data.len() {
            return Err(Error::invalid_argument(format!(
                "weight of shape {shape:?} needs {len} values, got {}",
                data.len()
            )));
        }
        Ok(CpuWeight { data: data.to_vec(), shape: shape.to_vec() })
    }

    fn weight_len(&self, w: &CpuWeight) -> usize {
        w.data.len()
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn buffer_len(&self, b: &Vec<f32>) -> usize {
        b.len()
    }

    fn write(&self, _s: &mut CpuStream, dst: &mut Vec<f32>, offset: usize, src: &[f32]) -> Result<()> {
        check_len("write", offset + src.len(), dst.len())?;
        dst[offset..offset + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn read(&self, _s: &mut CpuStream, src: &Vec<f32>, offset: usize, dst: &mut [f32]) -> Result<()> {
        check_len("read", offset + dst.len(), src.len())?;
        dst.copy_from_slice(&src[offset..offset + dst.len()]);
        Ok(())
    }

    fn copy(
        &self,
        _s: &mut CpuStream,
        src: &Vec<f32>,
        src_offset: usize,
        dst: &mut Vec<f32>,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        check_len("copy source", src_offset + len, src.len())?;
        check_len("copy destination", dst_offset + len, dst.len())?;
        dst[dst_offset..dst_offset + len].copy_from_slice(&src[src_offset..src_offset + len]);
        Ok(())
    }

    fn linear(
        &self,
        s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        w: &CpuWeight,
        bias: Option<&CpuWeight>,
        y: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<()> {
        let [n, k] = w.shape[..] else {
            return Err(Error::invalid_argument(format!("linear: weight must be 2-D, got {:?}", w.shape)));
        };
        check_len("linear input", rows * k, x.len())?;
        check_len("linear output", rows * n, y.len())?;
        if let Some(b) = bias {
            if b.data.len() != n {
                return Err(Error::invalid_argument(format!("linear: bias has {} values, expected {n}", b.data.len())));
            }
        }
        if rows == 0 {
            return Ok(());
        }
        let threads = s.threads;
        if rows == 1 {
            gemv_xwt(&x[..k], &w.data, &mut y[..n], k, accumulate, threads);
        } else {
            gemm_xwt(&x[..rows * k], &w.data, &mut y[..rows * n], rows, n, k, accumulate, threads);
        }
        if let Some(b) = bias {
            for row in y[..rows * n].chunks_exact_mut(n) {
                for (v, bv) in row.iter_mut().zip(&b.data) {
                    *v += bv;
                }
            }
        }
        Ok(())
    }

    fn rms_norm(
        &self,
        _s: &mut CpuStream,
        x: &Vec<f32>,
        rows: usize,
        w: &CpuWeight,
        eps: f32,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let dim = w.data.len();
        check_len("rms_norm input", rows * dim, x.len())?;
        check_len("rms_norm output", rows * dim, y.len())?;
        for (xr, yr) in x[..rows * dim].chunks_exact(dim).zip(y[..rows * dim].chunks_exact_mut(dim)) {
            let scale = rms_scale(xr, eps);
            for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(&w.data) {
                *yv = xv * scale * wv;
            }
        }
        Ok(())
    }

    fn rms_norm_inplace(&self, _s: &mut CpuStream, x: &mut Vec<f32>, rows: usize, w: &CpuWeight, eps: f32) -> Result<()> {
        let dim = w.data.len();
        check_len("rms_norm input", rows * dim, x.len())?;
        for xr in x[..rows * dim].chunks_exact_mut(dim) {
            let scale = rms_scale(xr, eps);
            for (xv, wv) in xr.iter_mut().zip(&w.data) {
                *xv = *xv * scale * wv;
            }
        }
        Ok(())
    }

    fn rope(
        &self,
        _s: &mut CpuStream,
        x: &mut Vec<f32>,
        rows: usize,
        heads: usize,
        rope: Rope,
        first_position: usize,
    ) -> Result<()> {
        let hd = rope.head_dim;
        if hd % 2 != 0 {
            return Err(Error::invalid_argument(format!("rope: head_dim {hd} is odd")));
        }
        check_len("rope", rows * heads * hd, x.len())?;
        let half = hd / 2;
        let inv_freq = rope_inv_freq(rope);
        let mut cos = vec![0f32; half];
        let mut sin = vec![0f32; half];
        for r in 0..rows {
            let pos = (first_position + r) as f32;
            for i in 0..half {
                // f32 product as torch computes `inv_freq @ position_ids` in float32.
                let angle = inv_freq[i] * pos;
                cos[i] = angle.cos();
                sin[i] = angle.sin();
            }
            for head in x[r * heads * hd..(r + 1) * heads * hd].chunks_exact_mut(hd) {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (xa, xb) = (a[i], b[i]);
                    a[i] = xa * cos[i] - xb * sin[i];
                    b[i] = xb * cos[i] + xa * sin[i];
                }
            }
        }
        Ok(())
    }

    fn attention(
        &self,
        _s: &mut CpuStream,
        q: &Vec<f32>,
        k_cache: &Vec<f32>,
        v_cache: &Vec<f32>,
        shape: AttentionShape,
        rows: usize,
        first_position: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let AttentionShape { num_heads, num_kv_heads, head_dim } = shape;
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(Error::invalid_argument(format!(
                "attention: {num_heads} query heads cannot share {num_kv_heads} key/value heads"
            )));
        }
        let total = first_position + rows;
        let kv_row = num_kv_heads * head_dim;
        check_len("attention queries", rows * num_heads * head_dim, q.len())?;
        check_len("attention key cache", total * kv_row, k_cache.len())?;
        check_len("attention value cache", total * kv_row, v_cache.len())?;
        check_len("attention output", rows * num_heads * head_dim, out.len())?;
        let group = num_heads / num_kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut scores = vec![0f32; total];
        for r in 0..rows {
            let visible = first_position + r + 1; // causal: keys 0..=own position
            for h in 0..num_heads {
                let kvh = h / group;
                let qv = &q[(r * num_heads + h) * head_dim..][..head_dim];
                for (t, score) in scores[..visible].iter_mut().enumerate() {
                    let kv = &k_cache[t * kv_row + kvh * head_dim..][..head_dim];
                    *score = qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f32>() * scale;
                }
                softmax_inplace(&mut scores[..visible]);
                let o = &mut out[(r * num_heads + h) * head_dim..][..head_dim];
                o.fill(0.0);
                for (t, p) in scores[..visible].iter().enumerate() {
                    let vv = &v_cache[t * kv_row + kvh * head_dim..][..head_dim];
                    for (ov, vx) in o.iter_mut().zip(vv) {
                        *ov += p * vx;
                    }
                }
            }
        }
        Ok(())
    }

    fn silu_mul(&self, _s: &mut CpuStream, gate: &mut Vec<f32>, up: &Vec<f32>, len: usize) -> Result<()> {
        check_len("silu_mul gate", len, gate.len())?;
        check_len("silu_mul up", len, up.len())?;
        for (g, u) in gate[..len].iter_mut().zip(&up[..len]) {
            *g = silu(*g) * u;
        }
        Ok(())
    }

    fn silu(&self, _s: &mut CpuStream, x: &mut Vec<f32>, len: usize) -> Result<()> {
        check_len("silu", len, x.len())?;
        for v in &mut x[..len] {
            *v = silu(*v);
        }
        Ok(())
    }

    fn add(&self, _s: &mut CpuStream, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) -> Result<()> {
        check_len("add destination", len, dst.len())?;
        check_len("add source", len, src.len())?;
        for (d, s) in dst[..len].iter_mut().zip(&src[..len]) {
            *d += s;
        }
        Ok(())
    }

    fn embedding(
        &self,
        _s: &mut CpuStream,
        table: &CpuWeight,
        ids: &[u32],
        out: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<()> {
        let [vocab, dim] = table.shape[..] else {
            return Err(Error::invalid_argument(format!("embedding: table must be 2-D, got {:?}", table.shape)));
        };
        check_len("embedding output", ids.len() * dim, out.len())?;
        for (r, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= vocab {
                return Err(Error::invalid_argument(format!("embedding: id {id} out of range for {vocab} rows")));
            }
            let src = &table.data[id * dim..(id + 1) * dim];
            let dst = &mut out[r * dim..(r + 1) * dim];
            if accumulate {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            } else {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }
}

/// `1 / sqrt(mean(x²) + eps)`, accumulated in f32 like the reference.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// `inv_freq[i] = 1 / θ^(2i / head_dim)` in f32, as `Qwen3TTS*RotaryEmbedding` builds it.
pub fn rope_inv_freq(rope: Rope) -> Vec<f32> {
    let hd = rope.head_dim as f32;
    (0..rope.head_dim / 2).map(|i| 1.0 / rope.theta.powf((2 * i) as f32 / hd)).collect()
}

/// Numerically stable softmax in f32.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(data: Vec<f32>, shape: &[usize]) -> CpuWeight {
        CpuWeight { data, shape: shape.to_vec() }
    }

    /// Deterministic pseudo-random values in [-1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn naive_linear(x: &[f32], w: &[f32], rows: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                y[r * n + j] = (0..k).map(|i| x[r * k + i] as f64 * w[j * k + i] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    #[test]
    fn linear_matches_naive_product_for_one_and_many_rows() {
        for (rows, n, k) in [(1, 200, 96), (7, 33, 64), (1, 3, 5)] {
            let x = noise(rows * k, 1);
            let w = noise(n * k, 2);
            let b = noise(n, 3);
            let expected: Vec<f32> = naive_linear(&x, &w, rows, n, k)
                .chunks(n)
                .flat_map(|r| r.iter().zip(&b).map(|(a, c)| a + c).collect::<Vec<_>>())
                .collect();
            for threads in [1, 3] {
                let be = CpuBackend::new(threads);
                let mut s = be.new_stream().unwrap();
                let mut y = vec![f32::NAN; rows * n];
                be.linear(&mut s, &x, rows, &weight(w.clone(), &[n, k]), Some(&weight(b.clone(), &[n])), &mut y, false)
                    .unwrap();
                for (a, e) in y.iter().zip(&expected) {
                    assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()), "rows {rows} n {n} k {k}: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn linear_result_does_not_depend_on_thread_count() {
        // Large enough that a single row is split over threads (n·k above the 2^18 threshold).
        let (n, k) = (1031, 517);
        for rows in [1, 5, 70] {
            let x = noise(rows * k, 4);
            let w = weight(noise(n * k, 5), &[n, k]);
            let run = |threads| {
                let be = CpuBackend::new(threads);
                let mut s = be.new_stream().unwrap();
                let mut y = vec![0f32; rows * n];
                be.linear(&mut s, &x, rows, &w, None, &mut y, false).unwrap();
                y
            };
            let one = run(1);
            for threads in [2, 3, 8] {
                assert_eq!(one, run(threads), "rows {rows}, {threads} threads");
            }
        }
    }

    #[test]
    fn linear_accumulate_adds_into_output() {
        let be = CpuBackend::new(1);
        let mut s = be.new_stream().unwrap();
        let w = weight(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let mut y = vec![10.0, 20.0];
        be.linear(&mut s, &vec![1.0, 1.0], 1, &w, None, &mut y, true).unwrap();
        assert_eq!(y, vec![13.0, 27.0]);
    }

    #[test]
    fn ops_reject_short_buffers() {
        let be = CpuBackend::new(1);
        let mut s = be.new_stream().unwrap();
        let w = weight(vec![0.0; 6], &[2, 3]);
        let err = be.linear(&mut s, &vec![0.0; 2], 1, &w, None, &mut vec![0.0; 2], false).unwrap_err();
        assert!(err.message().contains("linear input"), "{err}");
        let table = weight(vec![0.0; 6], &[3, 2]);
        let err = be.embedding(&mut s, &table, &[3], &mut vec![0.0; 2], false).unwrap_err();
        assert!(err.message().contains("out of range"), "{err}");
    }

    #[test]
    fn rms_norm_normalises_and_scales() {
        let be = CpuBackend::new(1);
        let mut s = be.new_stream().unwrap();
        let w = weight(vec![1.0, 2.0], &[2]);
        let mut y = vec![0.0; 2];
        be.rms_norm(&mut s, &vec![3.0, 4.0], 1, &w, 0.0, &mut y).unwrap();
        let r = (12.5f32).sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 8.0 / r).abs() < 1e-6, "{y:?}");
    }

    #[test]
    fn rope_rotates_pairs_half_a_head_apart() {
        let be = CpuBackend::new(1);
        let mut s = be.new_stream().unwrap();
        let rope = Rope { theta: 10000.0, head_dim: 4 };
        // Position 0 is the identity.
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        be.rope(&mut s, &mut x, 1, 1, rope, 0).unwrap();
        assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0]);
        // Position 1: slot 0 rotates by 1 rad with partner slot 2; slot 1 by 0.01 rad with slot 3.
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        be.rope(&mut s, &mut x, 1, 1, rope, 1).unwrap();
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn attention_with_one_key_returns_its_value_and_is_causal() {
        let be = CpuBackend::new(1);
        let mut s = be.new_stream().unwrap();
        let shape = AttentionShape { num_heads: 2, num_kv_heads: 1, head_dim: 2 };
        let q = vec![1.0, 0.0, 0.0, 1.0, 5.0, 5.0, 5.0, 5.0];
        let k = vec![1.0, 1.0, -1.0, -1.0];
        let v = vec![2.0, 3.0, 7.0, 9.0];
        let mut out = vec![0.0; 8];
        be.attention(&mut s, &q, &k, &v, shape, 2, 0, &mut out).unwrap();
        // Row 0 sees only key 0: both heads return value 0.
        assert_eq!(&out[..4], &[2.0, 3.0, 2.0, 3.0]);
        // Row 1 sees both keys; key 0 dominates for q = (5, 5).
        assert!(out[4] > 2.0 && out[4] < 2.01, "{out:?}");
    }
}
