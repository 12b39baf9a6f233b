//! Typed launchers for `kernels/*.cu`: each checks every size and range against the device
//! buffers it is given, then queues its kernel on a stream. They are safe to call: a wrong
//! size is an `InvalidArgument` error, never an out-of-bounds access. Every buffer a kernel
//! writes is taken as `&mut`, so safe code cannot pass one buffer as both an input and an
//! output (in-place forms are explicit: [`NormIo::InPlace`]).
//!
//! Buffers are `(memory, offset)` pairs where an op works on a sub-range (element offsets).
//! Embedding ids are range-checked by the caller against each table (the kernel trusts them).

use std::sync::Arc;

use cudarc::driver::{CudaFunction, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use half::bf16;

use super::memory::DeviceMemory;
use super::{CudaDevice, cuda_error};
use crate::error::{Error, Result};

/// Rows one pass of `qt_linear_rows*` handles; above this `linear` uses the GEMM.
pub const MAX_ROWS_PER_PASS: usize = 8;
/// Warps per weight row the row kernels are built for.
pub const WARPS_PER_ROW: [u32; 3] = [1, 2, 4];
/// Largest head_dim the attention and head-norm kernels support.
pub const MAX_HEAD_DIM: usize = 256;
/// Most tables one embedding-sum launch takes.
pub const MAX_EMBEDDING_TABLES: usize = 16;

/// The warps-per-row choice for `rows` activation rows against `n` weight rows of `k` bf16.
/// One row: the smallest of 1, 2, 4 that puts about 4096 warps in flight (132 SMs × 32
/// resident warps on the H100), so short matrices still fill the machine; several rows: 1 up
/// to 4 rows, then 2 (the x reads through L1 grow with the rows). Never so many that a
/// thread gets less than one 16-byte chunk of its row. H100 measurements (BENCHMARKS.md):
/// 1024-row matrices fastest with 4, 2048- and 3072-row ones with 2, the 16384-row GEMV
/// ~100% with any; 2 rows fastest with 1, 8 rows with 2.
pub fn default_warps_per_row(rows: usize, n: usize, k: usize) -> u32 {
    let max_by_k = (k / 8 / 32).clamp(1, 4) as u32;
    let wanted = match (rows, n) {
        (1, 0..=1024) => 4,
        (1, 1025..=4095) => 2,
        (1, _) => 1,
        (2..=4, _) => 1,
        _ => 2,
    };
    let w = wanted.min(max_by_k);
    if w >= 4 {
        4
    } else if w >= 2 {
        2
    } else {
        1
    }
}

pub(crate) fn check(what: &str, needed: usize, have: usize) -> Result<()> {
    if needed > have {
        return Err(Error::invalid_argument(format!("{what}: needs {needed} elements, buffer holds {have}")));
    }
    Ok(())
}

pub(crate) fn int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid_argument(format!("{what} = {v} exceeds the kernels' 32-bit range")))
}

pub(crate) fn launch<'a>(
    stream: &'a Arc<CudaStream>,
    f: &'a CudaFunction,
    name: &str,
    cfg: LaunchConfig,
    args: &[&'a dyn Arg],
) -> Result<()> {
    let mut b = stream.launch_builder(f);
    for a in args {
        a.push(&mut b);
    }
    // SAFETY: every launcher below passes exactly the kernel's parameter list (types and
    // order, checked against kernels/*.cu) and has checked the ranges the kernel touches.
    unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| cuda_error(&format!("launching {name}"), e))
}

/// A kernel argument (lets `launch` take a heterogeneous list).
pub(crate) trait Arg {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>);
}
impl<T: DeviceRepr> Arg for T {
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        b.arg(self);
    }
}

/// Per-head RMSNorm weights of q and (optionally) k, and epsilon.
pub(crate) type HeadNorms<'a> = (&'a DeviceMemory<bf16>, Option<&'a DeviceMemory<bf16>>, f32);

/// Rotary inverse frequencies passed by value (`qt_norm::InvFreq`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct InvFreq(pub [f32; MAX_HEAD_DIM / 2]);
// SAFETY: plain-old-data with the layout of the kernel's struct.
unsafe impl DeviceRepr for InvFreq {}

/// Embedding table pointers passed by value (`qt_embedding::Tables`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Tables([u64; MAX_EMBEDDING_TABLES]);
// SAFETY: plain-old-data with the layout of the kernel's struct.
unsafe impl DeviceRepr for Tables {}

pub(crate) fn grid1(n: usize, per_block: usize) -> u32 {
    n.div_ceil(per_block).clamp(1, 1 << 20) as u32
}

impl CudaDevice {
    /// `y[r, :] (+)= x[r, :] · Wᵀ + bias` for `rows` rows. `w: [n, k]` bf16, `x` at `x_off`
    /// holds `rows · k`, `y` at `y_off` holds `rows · n`. Up to 8 rows: the row kernels (f32,
    /// W read once); more: a tensor-core GEMM of `precision` (the TF32 kernel where the BF16
    /// ones cannot take the shape: K not a multiple of 8 or unaligned operands), split over K
    /// when its output tiles alone would not fill the GPU, with `scratch` of
    /// [`gemm_scratch_len`] elements for the partial sums. `wpr` overrides the warps-per-row
    /// choice of the row kernels (benchmarks).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &self,
        stream: &Arc<CudaStream>,
        x: (&DeviceMemory<f32>, usize),
        rows: usize,
        w: &DeviceMemory<bf16>,
        n: usize,
        k: usize,
        bias: Option<&DeviceMemory<bf16>>,
        y: (&mut DeviceMemory<f32>, usize),
        accumulate: bool,
        wpr: Option<u32>,
        scratch: Option<&mut DeviceMemory<f32>>,
        precision: GemmPrecision,
    ) -> Result<()> {
        if rows == 0 || n == 0 || k == 0 {
            return Err(Error::invalid_argument(format!("linear: empty shape ({rows} rows, {n}x{k} weight)")));
        }
        if n.checked_mul(k) != Some(w.len()) {
            return Err(Error::invalid_argument(format!("linear: weight holds {} values, not {n}x{k}", w.len())));
        }
        if let Some(b) = bias
            && b.len() != n
        {
            return Err(Error::invalid_argument(format!("linear: bias has {} values, expected {n}", b.len())));
        }
        check("linear input", x.1 + rows * k, x.0.len())?;
        check("linear output", y.1 + rows * n, y.0.len())?;
        let (n_i, k_i, acc) = (int("out features", n)?, int("in features", k)?, i32::from(accumulate));
        let bias_ptr = bias.map_or(0u64, |b| b.ptr());
        if rows <= MAX_ROWS_PER_PASS {
            let wpr = wpr.unwrap_or_else(|| default_warps_per_row(rows, n, k));
            let Some(wi) = WARPS_PER_ROW.iter().position(|&v| v == wpr) else {
                return Err(Error::invalid_argument(format!("linear: warps per row must be 1, 2 or 4, not {wpr}")));
            };
            let rows_per_block = 8 / wpr as usize;
            let cfg = LaunchConfig {
                grid_dim: (grid1(n, rows_per_block), 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let (xp, yp) = (x.0.ptr_at(x.1), y.0.ptr_at(y.1));
            let f = &self.kernels.linear_rows[rows - 1][wi];
            launch(stream, f, "qt_linear_rows", cfg, &[&w.ptr(), &xp, &bias_ptr, &yp, &n_i, &k_i, &acc])
        } else {
            let m_i = int("rows", rows)?;
            let (splits, k_chunk) = self.gemm_splits(rows, n, k);
            let (xp, yp) = (x.0.ptr_at(x.1), y.0.ptr_at(y.1));
            let partial_ptr = if splits > 1 {
                let Some(p) = scratch else {
                    return Err(Error::invalid_argument("linear: a split-K GEMM needs scratch memory"));
                };
                check("GEMM scratch", gemm_scratch_len(splits, rows, n), p.len())?;
                p.ptr()
            } else {
                0
            };
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(64) as u32, rows.div_ceil(64) as u32, splits as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let kc = int("k chunk", k_chunk)?;
            let args: [&dyn Arg; 10] = [&xp, &w.ptr(), &bias_ptr, &yp, &partial_ptr, &m_i, &n_i, &k_i, &kc, &acc];
            // The BF16 kernels copy 16-byte chunks: K a multiple of 8, X and W 16-byte aligned
            // (k_chunk is a multiple of 32, so no chunk straddles a split's end).
            let aligned = k % 8 == 0 && (xp | w.ptr()) % 16 == 0;
            let (f, name) = match precision {
                GemmPrecision::Bf16 if aligned => (&self.kernels.gemm_bf16, "qt_gemm_bf16"),
                GemmPrecision::Bf16x2 if aligned => (&self.kernels.gemm_bf16x2, "qt_gemm_bf16x2"),
                _ => (&self.kernels.gemm_tf32, "qt_gemm_tf32"),
            };
            launch(stream, f, name, cfg, &args)?;
            if splits > 1 {
                let cfg = LaunchConfig {
                    grid_dim: (grid1(rows * n, 256).min(4 * self.sm_count as u32 * 8), 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                let args: [&dyn Arg; 7] = [&partial_ptr, &(splits as i32), &bias_ptr, &yp, &m_i, &n_i, &acc];
                launch(stream, &self.kernels.gemm_reduce, "qt_gemm_reduce", cfg, &args)?;
            }
            Ok(())
        }
    }

    /// `outs[i].y = x · outs[i].wᵀ (+ bias)` for `rows` rows of `k` values, every output
    /// overwritten: one launch of the grouped BF16 GEMM of `precision` (plus one reduction
    /// when it splits K), `scratch` of [`gemm_scratch_len`]`(splits, rows, Σ n)` elements
    /// ([`CudaDevice::gemm_group_splits`]). Only where [`CudaDevice::can_group`] says so.
    pub(crate) fn linear_group(
        &self,
        stream: &Arc<CudaStream>,
        x: &DeviceMemory<f32>,
        rows: usize,
        k: usize,
        outs: &mut [GemmOut<'_>],
        scratch: &mut DeviceMemory<f32>,
        precision: GemmPrecision,
    ) -> Result<()> {
        if !self.can_group(x, rows, k, outs.iter().map(|o| o.w), precision) || outs.is_empty() {
            return Err(Error::invalid_argument("linear_group: these shapes or this precision cannot be grouped"));
        }
        let mut n_total = 0;
        for o in outs.iter() {
            let n = o.w.len() / k;
            if n * k != o.w.len() || n == 0 {
                return Err(Error::invalid_argument(format!("linear_group: a weight of {} values is not [n, {k}]", o.w.len())));
            }
            if let Some(b) = o.bias
                && b.len() != n
            {
                return Err(Error::invalid_argument(format!("linear_group: bias has {} values, expected {n}", b.len())));
            }
            check("linear_group output", rows * n, o.y.len())?;
            n_total += n;
        }
        check("linear_group input", rows * k, x.len())?;
        let (splits, k_chunk) = self.gemm_group_splits(rows, outs.iter().map(|o| o.w.len() / k), k);
        if splits > 1 {
            check("GEMM scratch", gemm_scratch_len(splits, rows, n_total), scratch.len())?;
        }
        let mut group = GemmGroup { seg: [GemmSegment::default(); MAX_GEMM_SEGMENTS], count: outs.len() as i32, _pad: 0 };
        let (mut tiles, mut partial_off) = (0usize, 0usize);
        for (seg, o) in group.seg.iter_mut().zip(outs.iter_mut()) {
            let n = o.w.len() / k;
            *seg = GemmSegment {
                w: o.w.ptr(),
                bias: o.bias.map_or(0, |b| b.ptr()),
                y: o.y.ptr(),
                partial: if splits > 1 { scratch.ptr_at(partial_off) } else { 0 },
                n: int("out features", n)?,
                tiles: n.div_ceil(64) as i32,
            };
            tiles += n.div_ceil(64);
            partial_off += splits * rows * n;
        }
        let (m_i, k_i, kc, acc) = (int("rows", rows)?, int("in features", k)?, int("k chunk", k_chunk)?, 0i32);
        let cfg = LaunchConfig {
            grid_dim: (tiles as u32, rows.div_ceil(64) as u32, splits as u32),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (f, name) = match precision {
            GemmPrecision::Bf16x2 => (&self.kernels.gemm_bf16x2_group, "qt_gemm_bf16x2_group"),
            _ => (&self.kernels.gemm_bf16_group, "qt_gemm_bf16_group"),
        };
        let xp = x.ptr();
        launch(stream, f, name, cfg, &[&group, &xp, &m_i, &k_i, &kc, &acc])?;
        if splits > 1 {
            let cfg = LaunchConfig {
                grid_dim: (grid1(rows * n_total, 256).min(4 * self.sm_count as u32 * 8), 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let s_i = splits as i32;
            launch(stream, &self.kernels.gemm_reduce_group, "qt_gemm_reduce_group", cfg, &[&group, &s_i, &m_i, &acc])?;
        }
        Ok(())
    }

    /// Whether [`CudaDevice::linear_group`] takes these: 2 to [`MAX_GEMM_SEGMENTS`] weights of
    /// `k` columns, more than [`MAX_ROWS_PER_PASS`] rows, a BF16 precision, and the BF16
    /// kernels' alignment (K a multiple of 8, 16-byte aligned X and weights).
    pub(crate) fn can_group<'w>(
        &self,
        x: &DeviceMemory<f32>,
        rows: usize,
        k: usize,
        weights: impl Iterator<Item = &'w DeviceMemory<bf16>>,
        precision: GemmPrecision,
    ) -> bool {
        let mut count = 0;
        let mut aligned = k % 8 == 0 && x.ptr() % 16 == 0;
        for w in weights {
            count += 1;
            aligned &= w.ptr() % 16 == 0;
        }
        rows > MAX_ROWS_PER_PASS
            && (2..=MAX_GEMM_SEGMENTS).contains(&count)
            && aligned
            && matches!(precision, GemmPrecision::Bf16 | GemmPrecision::Bf16x2)
    }

    /// [`CudaDevice::gemm_splits`] for a group of weights with `ns` output features each.
    pub(crate) fn gemm_group_splits(&self, rows: usize, ns: impl Iterator<Item = usize>, k: usize) -> (usize, usize) {
        let tiles: usize = ns.map(|n| n.div_ceil(64)).sum();
        self.splits_for_tiles(tiles * rows.div_ceil(64), k)
    }

    /// How the GEMM splits K: enough splits that the grid has about two blocks per SM, each
    /// split at least 4 K-steps of 32. Returns (splits, K elements per split).
    pub(crate) fn gemm_splits(&self, rows: usize, n: usize, k: usize) -> (usize, usize) {
        self.splits_for_tiles(n.div_ceil(64) * rows.div_ceil(64), k)
    }

    fn splits_for_tiles(&self, tiles: usize, k: usize) -> (usize, usize) {
        let by_k = (k / 128).max(1);
        let splits = (2 * self.sm_count).div_ceil(tiles).clamp(1, by_k);
        let k_chunk = k.div_ceil(splits).next_multiple_of(32);
        (k.div_ceil(k_chunk), k_chunk)
    }

    /// RMSNorm of `rows` rows of `w.len()` values: `y = x / rms(x) · w` (see [`NormIo`]).
    pub fn rms_norm(
        &self,
        stream: &Arc<CudaStream>,
        io: NormIo<'_>,
        rows: usize,
        w: &DeviceMemory<bf16>,
        eps: f32,
    ) -> Result<()> {
        let dim = w.len();
        if rows == 0 || dim == 0 {
            return Err(Error::invalid_argument("rms_norm: zero rows or an empty weight"));
        }
        let (xp, rp, yp, x_len, r_len, y_len) = match io {
            NormIo::Out { x, y } => (x.ptr(), 0u64, y.ptr(), x.len(), None, y.len()),
            NormIo::InPlace(x) => (x.ptr(), 0u64, x.ptr(), x.len(), None, x.len()),
            NormIo::AddThenOut { x, residual, y } => {
                (x.ptr(), residual.ptr(), y.ptr(), x.len(), Some(residual.len()), y.len())
            }
        };
        check("rms_norm input", rows * dim, x_len)?;
        check("rms_norm output", rows * dim, y_len)?;
        if let Some(r) = r_len {
            check("rms_norm residual", rows * dim, r)?;
        }
        let threads = dim.next_multiple_of(32).min(256) as u32;
        let cfg = LaunchConfig {
            grid_dim: (int("rows", rows)? as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        launch(stream, &self.kernels.rms_norm, "qt_rms_norm", cfg, &[&xp, &rp, &w.ptr(), &yp, &int("dim", dim)?, &eps])
    }

    /// Per-head RMSNorm (optional) and NeoX RoPE (optional) of `q: [rows, heads_q, hd]` and
    /// `k: [rows, heads_k, hd]` in place, positions `first_position + r`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn head_norm_rope(
        &self,
        stream: &Arc<CudaStream>,
        q: &mut DeviceMemory<f32>,
        heads_q: usize,
        k: Option<(&mut DeviceMemory<f32>, usize)>,
        rows: usize,
        head_dim: usize,
        norms: Option<HeadNorms<'_>>,
        rope: Option<(&InvFreq, usize)>,
    ) -> Result<()> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM {
            return Err(Error::invalid_argument(format!(
                "head_dim {head_dim} must be even and at most {MAX_HEAD_DIM}"
            )));
        }
        let heads_k = k.as_ref().map_or(0, |(_, h)| *h);
        check("q heads", rows * heads_q * head_dim, q.len())?;
        if let Some((kb, h)) = &k {
            check("k heads", rows * h * head_dim, kb.len())?;
        }
        let (qn, kn, eps) = match norms {
            Some((qn, kn, eps)) => {
                if qn.len() != head_dim || kn.is_some_and(|w| w.len() != head_dim) {
                    return Err(Error::invalid_argument(format!(
                        "head norm weights must have head_dim = {head_dim} values"
                    )));
                }
                if heads_k > 0 && kn.is_none() {
                    return Err(Error::invalid_argument("head norm: k heads given without a k weight"));
                }
                (qn.ptr(), kn.map_or(0, |w| w.ptr()), eps)
            }
            None => (0, 0, 0.0),
        };
        let zeros = InvFreq([0.0; MAX_HEAD_DIM / 2]);
        let (freqs, first, apply) = match rope {
            Some((f, p)) => {
                int("position", p + rows)?; // the last row's position must fit the kernel's int
                (f, p as i32, 1i32)
            }
            None => (&zeros, 0, 0),
        };
        let items = rows * (heads_q + heads_k);
        if items == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig { grid_dim: (grid1(items, 8), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let kp = k.map_or(0u64, |(kb, _)| kb.ptr());
        launch(
            stream,
            &self.kernels.head_norm_rope,
            "qt_head_norm_rope",
            cfg,
            &[
                &q.ptr(),
                &kp,
                &int("rows", rows)?,
                &int("heads", heads_q)?,
                &int("heads", heads_k)?,
                &(head_dim as i32),
                &qn,
                &kn,
                &eps,
                &first,
                &apply,
                freqs,
            ],
        )
    }

    /// Causal GQA attention (see `kernels/attention.cu`): prompt rows (more than
    /// [`MAX_ROWS_PER_PASS`]) through the query-tiled `qt_attention_prefill` where the shape
    /// suits it, decode rows (and other shapes) split over positions. `partial` is scratch of at
    /// least [`attention_scratch_len`] elements for the same arguments.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention(
        &self,
        stream: &Arc<CudaStream>,
        q: &DeviceMemory<f32>,
        k_cache: &DeviceMemory<f32>,
        v_cache: &DeviceMemory<f32>,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        rows: usize,
        first_position: usize,
        out: &mut DeviceMemory<f32>,
        partial: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || head_dim == 0
            || head_dim > MAX_HEAD_DIM
            || rows == 0
        {
            return Err(Error::invalid_argument(format!(
                "attention: {heads} heads, {kv_heads} KV heads, head_dim {head_dim}, {rows} rows is not a valid call"
            )));
        }
        let len = first_position + rows;
        check("attention queries", rows * heads * head_dim, q.len())?;
        check("attention keys", len * kv_heads * head_dim, k_cache.len())?;
        check("attention values", len * kv_heads * head_dim, v_cache.len())?;
        check("attention output", rows * heads * head_dim, out.len())?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let group = heads / kv_heads;
        if rows > MAX_ROWS_PER_PASS
            && group <= PREFILL_ATTENTION_QUERIES
            && head_dim <= PREFILL_ATTENTION_MAX_DIM
            && head_dim.is_multiple_of(4)
        {
            // Prompt rows: query tiles, each K/V row read once per tile (qt_attention_prefill).
            let rows_per_block = PREFILL_ATTENTION_QUERIES / group;
            let cfg = LaunchConfig {
                grid_dim: (kv_heads as u32, int("rows", rows.div_ceil(rows_per_block))? as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let args: [&dyn Arg; 10] = [
                &q.ptr(),
                &k_cache.ptr(),
                &v_cache.ptr(),
                &out.ptr(),
                &(heads as i32),
                &(kv_heads as i32),
                &(head_dim as i32),
                &int("rows", rows)?,
                &int("position", first_position)?,
                &scale,
            ];
            return launch(stream, &self.kernels.attention_prefill, "qt_attention_prefill", cfg, &args);
        }
        let (splits, chunk) = self.attention_splits(heads, rows, len);
        check("attention scratch", attention_scratch_len(heads, rows, splits, head_dim), partial.len())?;
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, int("rows", rows)? as u32, splits as u32),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let args: [&dyn Arg; 11] = [
            &q.ptr(),
            &k_cache.ptr(),
            &v_cache.ptr(),
            &out.ptr(),
            &partial.ptr(),
            &(heads as i32),
            &(kv_heads as i32),
            &(head_dim as i32),
            &int("position", first_position)?,
            &int("chunk", chunk)?,
            &scale,
        ];
        launch(stream, &self.kernels.attention_split, "qt_attention_split", cfg, &args)?;
        if splits > 1 {
            let cfg = LaunchConfig {
                grid_dim: (heads as u32, rows as u32, 1),
                block_dim: (head_dim.next_multiple_of(32) as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let args: [&dyn Arg; 5] =
                [&partial.ptr(), &out.ptr(), &(heads as i32), &(head_dim as i32), &(splits as i32)];
            launch(stream, &self.kernels.attention_combine, "qt_attention_combine", cfg, &args)?;
        }
        Ok(())
    }

    /// How attention splits `len` key positions: about two blocks per SM in all, chunks of at
    /// least 32 positions (8 per warp; below that the combine pass costs more than it saves).
    /// Each warp walks its positions one after another (dot, shuffle reduce, exp), so short
    /// chunks are what keeps a decode step's latency down.
    pub(crate) fn attention_splits(&self, heads: usize, rows: usize, len: usize) -> (usize, usize) {
        let want = (2 * self.sm_count).div_ceil(heads * rows).max(1);
        let chunk = len.div_ceil(want).max(32);
        (len.div_ceil(chunk).max(1), chunk)
    }

    /// `gate = silu(gate) · up`, `x = silu(x)` or `dst += src` over `n` elements.
    pub(crate) fn elementwise(
        &self,
        stream: &Arc<CudaStream>,
        op: Elementwise,
        a: &mut DeviceMemory<f32>,
        b: Option<&DeviceMemory<f32>>,
        n: usize,
    ) -> Result<()> {
        check("elementwise operand", n, a.len())?;
        if let Some(b) = b {
            check("elementwise operand", n, b.len())?;
        }
        if n == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid1(n, 256).min(65535 * 8), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let n_i = n as i64;
        let (f, name) = match op {
            Elementwise::SiluMul => (&self.kernels.silu_mul, "qt_silu_mul"),
            Elementwise::Silu => (&self.kernels.silu, "qt_silu"),
            Elementwise::Add => (&self.kernels.add, "qt_add"),
        };
        match b {
            Some(b) => launch(stream, f, name, cfg, &[&a.ptr(), &b.ptr(), &n_i]),
            None => launch(stream, f, name, cfg, &[&a.ptr(), &n_i]),
        }
    }

    /// `out[r, :] (+)= Σ_t tables[t][ids[r · T + t], :]` where `ids` (already on the device)
    /// holds `rows · T` ids that the caller checked against each table's `vocab`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn embedding_sum(
        &self,
        stream: &Arc<CudaStream>,
        tables: &[&DeviceMemory<bf16>],
        dim: usize,
        ids: &DeviceMemory<u32>,
        rows: usize,
        out: &mut DeviceMemory<f32>,
        accumulate: bool,
    ) -> Result<()> {
        if tables.is_empty() || tables.len() > MAX_EMBEDDING_TABLES || dim == 0 {
            return Err(Error::invalid_argument(format!(
                "embedding: {} tables of width {dim} (1 to {MAX_EMBEDDING_TABLES} tables of non-zero width)",
                tables.len()
            )));
        }
        if tables.iter().any(|t| t.len() % dim != 0) {
            return Err(Error::invalid_argument(format!("embedding: a table is not a whole number of rows of {dim}")));
        }
        check("embedding ids", rows * tables.len(), ids.len())?;
        check("embedding output", rows * dim, out.len())?;
        if rows == 0 {
            return Ok(());
        }
        let mut ptrs = [0u64; MAX_EMBEDDING_TABLES];
        for (p, t) in ptrs.iter_mut().zip(tables) {
            *p = t.ptr();
        }
        let cfg =
            LaunchConfig { grid_dim: (int("rows", rows)? as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let args: [&dyn Arg; 6] =
            [&Tables(ptrs), &(tables.len() as i32), &ids.ptr(), &out.ptr(), &int("dim", dim)?, &i32::from(accumulate)];
        launch(stream, &self.kernels.embedding_sum, "qt_embedding_sum", cfg, &args)
    }
}

/// Inputs and outputs of [`CudaDevice::rms_norm`].
pub enum NormIo<'a> {
    /// `y = RMSNorm(x) · w`.
    Out { x: &'a DeviceMemory<f32>, y: &'a mut DeviceMemory<f32> },
    /// `x = RMSNorm(x) · w` (each element is read before it is written).
    InPlace(&'a mut DeviceMemory<f32>),
    /// `x += residual; y = RMSNorm(x) · w`.
    AddThenOut { x: &'a mut DeviceMemory<f32>, residual: &'a DeviceMemory<f32>, y: &'a mut DeviceMemory<f32> },
}

/// What the GEMM (linear calls of more than [`MAX_ROWS_PER_PASS`] rows) multiplies in. The
/// weights are bf16 in every case, so the choice is how the f32 activations X are rounded; the
/// products are accumulated in f32 and every sum's order is fixed (deterministic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmPrecision {
    /// X rounded to TF32 (10-bit mantissa, 2^-11 relative): the first GEMM (WMMA, registers
    /// double-buffered, no copy pipeline).
    Tf32,
    /// X split into two bf16 (hi + lo, 16 bits of mantissa, 2^-17 relative: closer to f32 than
    /// TF32) on the cp.async-pipelined BF16 kernel, at twice its tensor-core work.
    Bf16x2,
    /// X rounded to bf16 (8-bit mantissa, 2^-9 relative; the official model runs in bf16) on
    /// the same kernel: the fastest.
    Bf16,
}

impl GemmPrecision {
    /// The process default: `QT_GEMM` = `tf32`, `bf16x2` or `bf16` (read once), else
    /// [`GemmPrecision::Bf16x2`]: closer to f32 than TF32 and, measured, faster (a 200-row
    /// 0.6B prefill 5.7 ms against 8.7 on an H100; plain bf16 5.4).
    pub fn from_env() -> Self {
        static CHOICE: std::sync::OnceLock<GemmPrecision> = std::sync::OnceLock::new();
        *CHOICE.get_or_init(|| match std::env::var("QT_GEMM").as_deref() {
            Ok("tf32") => GemmPrecision::Tf32,
            Ok("bf16") => GemmPrecision::Bf16,
            Ok("bf16x2") | Err(_) => GemmPrecision::Bf16x2,
            Ok(other) => {
                log::warn!("QT_GEMM={other:?} is not tf32, bf16x2 or bf16; bf16x2 is used");
                GemmPrecision::Bf16x2
            }
        })
    }
}

/// (row, head) queries per block of `qt_attention_prefill` (`kQueries`): it takes GQA groups of
/// at most this many query heads per KV head.
const PREFILL_ATTENTION_QUERIES: usize = 16;
/// Largest head_dim `qt_attention_prefill` takes (`kMaxDim`).
const PREFILL_ATTENTION_MAX_DIM: usize = 128;

/// Most weights one grouped GEMM launch takes (`qt_gemm_mma::kMaxSegments`).
pub(crate) const MAX_GEMM_SEGMENTS: usize = 3;

/// One output of [`CudaDevice::linear_group`].
pub(crate) struct GemmOut<'a> {
    pub w: &'a DeviceMemory<bf16>,
    pub bias: Option<&'a DeviceMemory<bf16>>,
    pub y: &'a mut DeviceMemory<f32>,
}

/// `qt_gemm_mma::Segment`, by value.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GemmSegment {
    w: u64,
    bias: u64,
    y: u64,
    partial: u64,
    n: i32,
    tiles: i32,
}

/// `qt_gemm_mma::Group`, by value (the padding is the C struct's own, made explicit).
#[repr(C)]
#[derive(Clone, Copy)]
struct GemmGroup {
    seg: [GemmSegment; MAX_GEMM_SEGMENTS],
    count: i32,
    _pad: i32,
}
// SAFETY: plain-old-data with the layout of the kernel's struct.
unsafe impl DeviceRepr for GemmGroup {}

/// Scratch elements a split-K GEMM needs.
pub(crate) fn gemm_scratch_len(splits: usize, rows: usize, n: usize) -> usize {
    if splits > 1 { splits * rows * n } else { 0 }
}

/// Scratch elements `qt_attention_split` needs for `splits > 1`.
pub(crate) fn attention_scratch_len(heads: usize, rows: usize, splits: usize, head_dim: usize) -> usize {
    if splits > 1 { heads * rows * splits * (head_dim + 2) } else { 0 }
}

/// The elementwise kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Elementwise {
    SiluMul,
    Silu,
    Add,
}
