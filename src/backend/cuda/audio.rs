//! [`AudioBackend`] on the GPU: the codec's op set over `kernels/codec.cu`.
//!
//! * Weights are [`CudaF32Weight`]: f32 device memory (never rounded to bf16, see
//!   [`crate::backend::audio`]). Every kernel computes in f32 with f32 accumulation and a fixed
//!   summation order (no atomics), so results are deterministic; the codec's convolutions
//!   are a plain-FFMA implicit GEMM (no TF32): only the summation order differs from the CPU.
//! * Stream state (`history`, `carry`, the attention window) lives in the caller's buffers.
//!   Where new state overlaps old state (a history shifted by fewer rows than it holds, the
//!   transposed conv's carry, the window moved to the front), it is built in the stream's
//!   scratch ([`CudaStreamCtx`]) and copied back on the same stream: never an in-place race.
//! * Every size is checked on the host before anything is queued (the launchers below):
//!   a wrong size is an `InvalidArgument` error, never an out-of-range access. Buffers are
//!   used from element 0, like every [`Backend`](crate::backend::Backend) op.

use std::sync::Arc;

use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig};

use super::backend::{CudaBackend, CudaStreamCtx};
use super::driver::CudaStream;
use super::launch::{Arg, check, grid1, int, launch};
use super::memory::DeviceMemory;
use super::{CudaDevice, cuda_error};
use crate::backend::AttentionShape;
use crate::backend::audio::{Activation, AudioBackend, ColumnSpan, ConvShape, EdgePad, TransposedConvShape, padded_conv_span};
use crate::error::{Error, Result};

/// Tables one `qt_codec_codebook_sum` launch takes; more are summed by further launches (in
/// table order, so the sum is the same).
pub const MAX_CODEBOOK_TABLES_PER_LAUNCH: usize = 16;

/// Dynamic shared memory a block of `qt_codec_window_attention` may use: the default 48 KiB
/// limit without an opt-in, less 256 bytes for the kernel's static shared memory (its
/// reductions' partials, ~132 bytes): `head_dim + min(window, past + rows)` floats.
const MAX_ATTENTION_SMEM: usize = 48 * 1024 - 256;

/// Output tile of `qt_codec_conv_gemm` (rows and columns).
const GEMM_TILE: usize = 64;

/// Rows of `qt_codec_conv_gemm_rows16`'s tile: calls of at most this many rows use it when the
/// reduction is chunked (a 64-row tile would spend 3/4 of its fma on padding).
const SHORT_TILE_ROWS: usize = 16;

/// K-step of `qt_codec_conv_gemm` (`BK` in kernels/codec.cu): the kernel folds a chunk's sum
/// at the end of a K-step, so a reduction chunk must be a multiple of it.
const GEMM_K_STEP: usize = 16;

/// Reduction chunk of the codec convolutions when they may be split over K (see
/// [`split_conv_enabled`]): 16 K-steps, so a 64-column tile streams 64 KB of weights per
/// chunk, and the widest layer (K = 7168) has 28 chunks to spread over the GPU.
const CONV_K_CHUNK: usize = 256;

const _: () = assert!(CONV_K_CHUNK.is_multiple_of(GEMM_K_STEP));

/// Most chunks of one split launch (the grid's z limit).
const MAX_CONV_SPLITS: usize = 65535;

/// Whether the codec convolutions run their reduction in [`CONV_K_CHUNK`] chunks, which lets
/// a call with few rows split over K (one block per chunk and column tile) instead of running
/// 8-24 blocks. On by default (verified by the codec tests on an H100, and faster at every
/// chunk size measured: BENCHMARKS.md); `QT_CODEC_SPLIT_K=0` turns it off. Read once: every
/// call of a process must chunk alike, so that streamed and offline decodes round identically.
fn split_conv_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("QT_CODEC_SPLIT_K").map_or(true, |v| v != "0"))
}

/// The reduction chunk for a convolution of reduction length `k`: [`CONV_K_CHUNK`] when
/// chunking is on, else all of `k` in one chunk (rounded up to a K-step). A function of `k`
/// alone, never of the row count.
fn conv_k_chunk(k: usize) -> usize {
    if split_conv_enabled() { CONV_K_CHUNK } else { k.max(1).next_multiple_of(GEMM_K_STEP) }
}

/// The entry points of `kernels/codec.cu`.
pub(crate) struct CodecKernels {
    conv_gemm: CudaFunction,
    conv_gemm_rows16: CudaFunction,
    conv_reduce: CudaFunction,
    tail_rows: CudaFunction,
    overlap_add: CudaFunction,
    depthwise: CudaFunction,
    layer_norm: CudaFunction,
    rms_norm: CudaFunction,
    gelu: CudaFunction,
    snake: CudaFunction,
    scale_add: CudaFunction,
    clamp: CudaFunction,
    codebook_sum: CudaFunction,
    window_attention: CudaFunction,
    reflect_pad: CudaFunction,
    copy_columns: CudaFunction,
    column_mean: CudaFunction,
    column_stats: CudaFunction,
    column_softmax: CudaFunction,
    activation: CudaFunction,
    complex_magnitude: CudaFunction,
    log_clamped: CudaFunction,
    edge_pad: CudaFunction,
    distance_lhs: CudaFunction,
    nearest: CudaFunction,
}

impl CodecKernels {
    pub(crate) fn load(load: &dyn Fn(&str) -> Result<CudaFunction>) -> Result<Self> {
        Ok(CodecKernels {
            conv_gemm: load("qt_codec_conv_gemm")?,
            conv_gemm_rows16: load("qt_codec_conv_gemm_rows16")?,
            conv_reduce: load("qt_codec_conv_reduce")?,
            tail_rows: load("qt_codec_tail_rows")?,
            overlap_add: load("qt_codec_overlap_add")?,
            depthwise: load("qt_codec_depthwise")?,
            layer_norm: load("qt_codec_layer_norm")?,
            rms_norm: load("qt_codec_rms_norm")?,
            gelu: load("qt_codec_gelu")?,
            snake: load("qt_codec_snake")?,
            scale_add: load("qt_codec_scale_add")?,
            clamp: load("qt_codec_clamp")?,
            codebook_sum: load("qt_codec_codebook_sum")?,
            window_attention: load("qt_codec_window_attention")?,
            reflect_pad: load("qt_codec_reflect_pad")?,
            copy_columns: load("qt_codec_copy_columns")?,
            column_mean: load("qt_codec_column_mean")?,
            column_stats: load("qt_codec_column_stats")?,
            column_softmax: load("qt_codec_column_softmax")?,
            activation: load("qt_codec_activation")?,
            complex_magnitude: load("qt_codec_complex_magnitude")?,
            log_clamped: load("qt_codec_log_clamped")?,
            edge_pad: load("qt_codec_edge_pad")?,
            distance_lhs: load("qt_codec_distance_lhs")?,
            nearest: load("qt_codec_nearest")?,
        })
    }
}

/// An f32 parameter tensor in device memory (the codec's weights).
pub struct CudaF32Weight {
    mem: DeviceMemory<f32>,
    shape: Vec<usize>,
}

impl CudaF32Weight {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn memory(&self) -> &DeviceMemory<f32> {
        &self.mem
    }
}

impl std::fmt::Debug for CudaF32Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaF32Weight").field("shape", &self.shape).finish()
    }
}

/// Codebook table pointers passed by value (`qt_codec::Tables`).
#[repr(C)]
#[derive(Clone, Copy)]
struct CodecTables([u64; MAX_CODEBOOK_TABLES_PER_LAUNCH]);
// SAFETY: plain-old-data with the layout of the kernel's struct (16 device pointers).
unsafe impl DeviceRepr for CodecTables {}

fn mul(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::invalid_argument(format!("{what}: {a} x {b} overflows")))
}

fn exact(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::invalid_argument(format!("{what}: expected {expected} elements, got {got}")));
    }
    Ok(())
}

/// The stream state of a causal op: present with exactly `len` elements when `rows > 0`,
/// absent when the shape keeps none (the CPU backend's rule).
fn check_state<'a>(
    what: &str,
    state: Option<&'a mut DeviceMemory<f32>>,
    rows: usize,
    len: usize,
) -> Result<Option<&'a mut DeviceMemory<f32>>> {
    match state {
        None if rows == 0 => Ok(None),
        None => Err(Error::invalid_argument(format!("{what}: a state of {rows} rows is required"))),
        Some(_) if rows == 0 => {
            Err(Error::invalid_argument(format!("{what}: this shape keeps no state, but one was given")))
        }
        Some(s) => {
            exact(what, len, s.len())?;
            Ok(Some(s))
        }
    }
}

/// Grid-stride launch shape for `n` elements, 256 threads a block.
fn elementwise_cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (grid1(n, 256).min(65535 * 8), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One thread per column (`qt_codec_column_*`): blocks of 128.
fn column_cfg(width: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (grid1(width, 128), 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 }
}

/// The last element (exclusive) a column span touches over `rows` rows of `width`.
fn span_end(what: &str, span: ColumnSpan, rows: usize, width: usize) -> Result<usize> {
    span.end(rows, width).ok_or_else(|| Error::invalid_argument(format!("copy_columns: {what} span overflows")))
}

/// Queues `dst[dst_off..][..len] = src[src_off..][..len]` on `stream`. Both ranges are
/// checked; `src` and `dst` are distinct allocations (Rust borrows). The context must be
/// bound to this thread ([`CudaBackend::bind`]).
fn copy_between(
    stream: &CudaStream,
    src: &DeviceMemory<f32>,
    src_off: usize,
    dst: &mut DeviceMemory<f32>,
    dst_off: usize,
    len: usize,
) -> Result<()> {
    check("device copy source", src_off.saturating_add(len), src.len())?;
    check("device copy destination", dst_off.saturating_add(len), dst.len())?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: both ranges lie inside their allocations (checked above) and the allocations
    // are distinct; the copy is ordered on the stream with the kernels around it.
    unsafe {
        cudarc::driver::result::memcpy_dtod_async(
            dst.ptr_at(dst_off),
            src.ptr_at(src_off),
            len * size_of::<f32>(),
            stream.cu_stream(),
        )
    }
    .map_err(|e| cuda_error("device-to-device copy", e))
}

/// [`copy_between`] inside one buffer; the two ranges must not overlap.
fn copy_within(
    stream: &CudaStream,
    buf: &mut DeviceMemory<f32>,
    src_off: usize,
    dst_off: usize,
    len: usize,
) -> Result<()> {
    check("device copy source", src_off.saturating_add(len), buf.len())?;
    check("device copy destination", dst_off.saturating_add(len), buf.len())?;
    if src_off < dst_off + len && dst_off < src_off + len && len > 0 {
        return Err(Error::invalid_argument("device copy within a buffer: the ranges overlap"));
    }
    if len == 0 {
        return Ok(());
    }
    // SAFETY: both ranges lie inside the allocation and do not overlap (checked above).
    unsafe {
        cudarc::driver::result::memcpy_dtod_async(
            buf.ptr_at(dst_off),
            buf.ptr_at(src_off),
            len * size_of::<f32>(),
            stream.cu_stream(),
        )
    }
    .map_err(|e| cuda_error("device-to-device copy", e))
}

impl CudaDevice {
    /// `y[rows, n] = bias + implicit-im2col(hist ++ x) · Wᵀ` (`qt_codec_conv_gemm`): the causal
    /// conv of `x: [rows, cin]` (from element `x.1`) with `taps` taps `dilation` apart and
    /// `h_rows` history rows in `hist` (from its element offset, at least `h_rows · cin`
    /// elements; `None` when `h_rows == 0`), `w: [n, taps·cin]`. With `taps = 1` a
    /// dense layer. A reflect conv passes one padded buffer as both: its first rows are the
    /// history. With `stride > 1` (the codec encoder's padded convs) output row t reads input
    /// rows `t·stride + j·dilation` of `x` alone (already padded; no history).
    ///
    /// When the reduction is chunked ([`conv_k_chunk`]), a call of at most 16 rows uses the
    /// 16-row tile, and when the output tiles alone would not fill the GPU, the GEMM is split
    /// over its chunks into `partials` (grown as needed) and `qt_codec_conv_reduce` adds them:
    /// the same result to the bit, sooner. Without `partials` it is never split.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn codec_conv_gemm(
        &self,
        stream: &Arc<CudaStream>,
        x: (&DeviceMemory<f32>, usize),
        rows: usize,
        hist: Option<(&DeviceMemory<f32>, usize)>,
        (cin, taps, dilation, stride): (usize, usize, usize, usize),
        w: &DeviceMemory<f32>,
        bias: Option<&DeviceMemory<f32>>,
        y: (&mut DeviceMemory<f32>, usize),
        n: usize,
        partials: Option<&mut DeviceMemory<f32>>,
    ) -> Result<()> {
        if taps == 0 || dilation == 0 || stride == 0 {
            return Err(Error::invalid_argument("conv GEMM: taps, dilation and stride must be positive"));
        }
        // Output row t reads padded rows t·stride + j·dilation, j < taps: `span` rows in all,
        // the first `h_rows` of them from the history (stride 1 only: a strided conv reads a
        // padded input, H = 0), the rest from x.
        let reach = mul("conv GEMM reach", taps - 1, dilation)?;
        let h_rows = if stride == 1 { reach } else { 0 };
        let k = mul("conv GEMM reduction", taps, cin)?;
        exact("conv GEMM weight", mul("conv GEMM weight", n, k)?, w.len())?;
        if let Some(b) = bias {
            exact("conv GEMM bias", n, b.len())?;
        }
        let span = mul("conv GEMM rows", rows.saturating_sub(1), stride)?.saturating_add(reach).saturating_add(1);
        let x_rows = if rows == 0 { 0 } else { span - h_rows };
        check("conv GEMM input", x.1.saturating_add(mul("conv GEMM input", x_rows, cin)?), x.0.len())?;
        let out_len = mul("conv GEMM output", rows, n)?;
        check("conv GEMM output", y.1.saturating_add(out_len), y.0.len())?;
        let hist_ptr = match hist {
            // At least the history's rows from the offset (causal_conv's caller checked its
            // state's exact size; a reflect conv passes its longer padded scratch).
            Some((h, off)) if h_rows > 0 => {
                check("conv GEMM history", off.saturating_add(mul("conv GEMM history", h_rows, cin)?), h.len())?;
                h.ptr_at(off)
            }
            None if h_rows == 0 => 0,
            None => return Err(Error::invalid_argument(format!("conv GEMM: a history of {h_rows} rows is required"))),
            Some(_) => return Err(Error::invalid_argument("conv GEMM: this shape keeps no history, but one was given")),
        };
        // Every index the kernel forms in 32 bits: rows, padded rows, channels, K.
        let m_i = int("rows", rows)?;
        int("padded rows", span)?;
        let stride_i = int("stride", stride)?;
        // The kernel forms tile indices up to one tile past M and K in int.
        int("rows plus a tile", rows.saturating_add(2 * GEMM_TILE))?;
        let (cin_i, n_i) = (int("in channels", cin)?, int("out channels", n)?);
        let (taps_i, dil_i, h_i) = (int("taps", taps)?, int("dilation", dilation)?, int("history rows", h_rows)?);
        int("taps x in channels", k)?;
        int("taps x in channels plus a K-step", k.saturating_add(2 * GEMM_TILE))?;
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let col_tiles = n.div_ceil(GEMM_TILE);
        if col_tiles > 65535 {
            return Err(Error::invalid_argument(format!("conv GEMM: {n} output channels exceed the grid")));
        }
        // The 16-row tile only where the reduction is chunked: until that is verified on a
        // GPU, the default path is the 64-row kernel alone.
        let short = split_conv_enabled() && rows <= SHORT_TILE_ROWS;
        let row_tiles = rows.div_ceil(if short { SHORT_TILE_ROWS } else { GEMM_TILE });
        let kc = conv_k_chunk(k);
        let kc_i = int("reduction chunk", kc)?;
        let chunks = k.div_ceil(kc);
        // Split when the tiles fill at most half the GPU (fewer would give a split of
        // thousands of blocks and as many partial sums for little gain) and there is more than
        // one chunk: in practice the calls of one row tile, whose partial sums are at most
        // chunks x 64 rows x N floats. Where the partials cannot be had (no buffer, or its
        // growth fails) the call runs unsplit: the same bits, only slower.
        let split = chunks > 1
            && chunks <= MAX_CONV_SPLITS
            && rows <= GEMM_TILE
            && 2 * row_tiles * col_tiles <= self.sm_count;
        let partial_ptr = match partials {
            Some(p) if split => {
                let len = mul("conv GEMM partial sums", chunks, out_len)?;
                if p.len() < len {
                    match DeviceMemory::zeros(self.pool(), len.next_power_of_two()) {
                        Ok(grown) => *p = grown,
                        Err(e) => log::debug!("conv GEMM: no room for the split's partial sums ({e}); unsplit"),
                    }
                }
                if p.len() >= len { p.ptr() } else { 0 }
            }
            _ => 0,
        };
        let split = partial_ptr != 0;
        let cfg = LaunchConfig {
            grid_dim: (row_tiles as u32, col_tiles as u32, if split { chunks as u32 } else { 1 }),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let bias_ptr = bias.map_or(0u64, |b| b.ptr());
        let yp = y.0.ptr_at(y.1);
        let args: [&dyn Arg; 14] = [
            &x.0.ptr_at(x.1),
            &hist_ptr,
            &w.ptr(),
            &bias_ptr,
            &yp,
            &partial_ptr,
            &m_i,
            &n_i,
            &cin_i,
            &taps_i,
            &dil_i,
            &stride_i,
            &h_i,
            &kc_i,
        ];
        if short {
            launch(stream, &self.kernels.codec.conv_gemm_rows16, "qt_codec_conv_gemm_rows16", cfg, &args)?;
        } else {
            launch(stream, &self.kernels.codec.conv_gemm, "qt_codec_conv_gemm", cfg, &args)?;
        }
        if split {
            let cfg = LaunchConfig { grid_dim: (grid1(out_len, 256), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            let chunks_i = int("reduction chunks", chunks)?;
            let args: [&dyn Arg; 6] = [&partial_ptr, &chunks_i, &bias_ptr, &yp, &m_i, &n_i];
            launch(stream, &self.kernels.codec.conv_reduce, "qt_codec_conv_reduce", cfg, &args)?;
        }
        Ok(())
    }

    /// `out[p, :] = (head ++ tail)[head_rows + tail_rows − keep + p, :]` for `p < keep`
    /// (`qt_codec_tail_rows`); `out` must be a buffer other than `head` and `tail`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn codec_tail_rows(
        &self,
        stream: &Arc<CudaStream>,
        head: &DeviceMemory<f32>,
        head_rows: usize,
        tail: &DeviceMemory<f32>,
        tail_rows: usize,
        keep: usize,
        width: usize,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        check("tail rows head", mul("tail rows head", head_rows, width)?, head.len())?;
        check("tail rows tail", mul("tail rows tail", tail_rows, width)?, tail.len())?;
        let n = mul("tail rows output", keep, width)?;
        check("tail rows output", n, out.len())?;
        if keep > head_rows.saturating_add(tail_rows) {
            return Err(Error::invalid_argument(format!(
                "tail rows: keeping {keep} of {head_rows} + {tail_rows} rows"
            )));
        }
        int("rows", head_rows.saturating_add(tail_rows))?;
        if n == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 7] = [
            &head.ptr(),
            &(head_rows as i32),
            &tail.ptr(),
            &(tail_rows as i32),
            &(keep as i32),
            &int("width", width)?,
            &out.ptr(),
        ];
        launch(stream, &self.kernels.codec.tail_rows, "qt_codec_tail_rows", elementwise_cfg(n), &args)
    }
}

impl CudaBackend {
    /// `history = last h_rows rows of (history ++ x[..rows])`, rows of `width`.
    fn update_history(
        &self,
        s: &mut CudaStreamCtx,
        history: &mut DeviceMemory<f32>,
        h_rows: usize,
        x: &DeviceMemory<f32>,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        let n = mul("history", h_rows, width)?;
        if n == 0 || rows == 0 {
            return Ok(());
        }
        self.bind()?;
        if rows >= h_rows {
            // Only x's last rows survive: one copy, no overlap.
            return copy_between(&s.stream, x, (rows - h_rows) * width, history, 0, n);
        }
        // A shift by fewer rows than the history holds: build it in scratch, then copy back.
        self.ensure_scratch(s, n)?;
        let dev = self.device();
        dev.codec_tail_rows(&s.stream, history, h_rows, x, rows, h_rows, width, &mut s.scratch)?;
        copy_between(&s.stream, &s.scratch, 0, history, 0, n)
    }

    /// Moves `buf[start..start + len]` to the front of `buf`.
    fn move_to_front(
        &self,
        s: &mut CudaStreamCtx,
        buf: &mut DeviceMemory<f32>,
        start: usize,
        len: usize,
    ) -> Result<()> {
        if start == 0 || len == 0 {
            return Ok(());
        }
        if start >= len {
            return copy_within(&s.stream, buf, start, 0, len);
        }
        self.ensure_scratch(s, len)?;
        copy_between(&s.stream, buf, start, &mut s.scratch, 0, len)?;
        copy_between(&s.stream, &s.scratch, 0, buf, 0, len)
    }
}

impl AudioBackend for CudaBackend {
    type AudioWeight = CudaF32Weight;

    fn upload_audio_weight(&self, data: &[f32], shape: &[usize]) -> Result<CudaF32Weight> {
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(Error::invalid_argument(format!(
                "audio weight of shape {shape:?} needs {} values, got {}",
                len.map_or_else(|| "too many".to_owned(), |l| l.to_string()),
                data.len()
            )));
        }
        Ok(CudaF32Weight { mem: DeviceMemory::from_host(self.device().pool(), data)?, shape: shape.to_vec() })
    }

    fn audio_weight_len(&self, w: &CudaF32Weight) -> usize {
        w.mem.len()
    }

    fn zero(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>) -> Result<()> {
        let len = x.len();
        x.zero_async(&s.stream, 0, len)
    }

    fn causal_conv(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        history: Option<&mut DeviceMemory<f32>>,
        shape: ConvShape,
        w: &CudaF32Weight,
        bias: Option<&CudaF32Weight>,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let ConvShape { cin, cout, kernel, dilation } = shape;
        if kernel == 0 || dilation == 0 {
            return Err(Error::invalid_argument(format!(
                "causal_conv: kernel {kernel} and dilation {dilation} must be positive"
            )));
        }
        let h_rows = mul("causal_conv history rows", kernel - 1, dilation)?;
        let history = check_state("causal_conv history", history, h_rows, mul("causal_conv history", h_rows, cin)?)?;
        let hist_ref = history.as_deref();
        self.device().codec_conv_gemm(
            &s.stream,
            (x, 0),
            rows,
            hist_ref.map(|h| (h, 0)),
            (cin, kernel, dilation, 1),
            &w.mem,
            bias.map(|b| &b.mem),
            (y, 0),
            cout,
            Some(&mut s.conv_partials),
        )?;
        match history {
            Some(h) => self.update_history(s, h, h_rows, x, rows, cin),
            None => Ok(()),
        }
    }

    fn causal_conv_transpose(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        carry: Option<&mut DeviceMemory<f32>>,
        shape: TransposedConvShape,
        w: &CudaF32Weight,
        bias: &CudaF32Weight,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let TransposedConvShape { cin, cout, kernel, stride } = shape;
        if stride == 0 || kernel < stride {
            return Err(Error::invalid_argument(format!(
                "causal_conv_transpose: kernel {kernel} and stride {stride} (need kernel ≥ stride ≥ 1)"
            )));
        }
        let tail = kernel - stride;
        let z_width = mul("causal_conv_transpose", kernel, cout)?;
        exact("causal_conv_transpose weight", mul("causal_conv_transpose weight", z_width, cin)?, w.mem.len())?;
        exact("causal_conv_transpose bias", cout, bias.mem.len())?;
        check("causal_conv_transpose input", mul("causal_conv_transpose input", rows, cin)?, x.len())?;
        let out_rows = mul("causal_conv_transpose output rows", rows, stride)?;
        check("causal_conv_transpose output", mul("causal_conv_transpose output", out_rows, cout)?, y.len())?;
        let carry_len = mul("causal_conv_transpose carry", tail, cout)?;
        let carry = check_state("causal_conv_transpose carry", carry, tail, carry_len)?;
        // 32-bit indices of the overlap-add: output rows (with the carry's), widths.
        int("output rows", out_rows.saturating_add(tail))?;
        let (rows_i, cout_i, k_i, s_i) =
            (int("rows", rows)?, int("out channels", cout)?, int("kernel", kernel)?, int("stride", stride)?);
        int("kernel x out channels", z_width)?;
        if rows == 0 || cout == 0 {
            return Ok(());
        }
        // Scratch: z [rows, kernel·cout], then the new carry [kernel − stride, cout].
        let z_len = mul("causal_conv_transpose scratch", rows, z_width)?;
        let scratch_len = z_len.checked_add(carry_len).ok_or_else(|| Error::invalid_argument("scratch overflows"))?;
        self.ensure_scratch(s, scratch_len)?;
        let dev = self.device();
        dev.codec_conv_gemm(
            &s.stream,
            (x, 0),
            rows,
            None,
            (cin, 1, 1, 1),
            &w.mem,
            None,
            (&mut s.scratch, 0),
            z_width,
            Some(&mut s.conv_partials),
        )?;
        let carry_ptr = carry.as_ref().map_or(0u64, |c| c.ptr());
        let total = mul("causal_conv_transpose", out_rows + tail, cout)?;
        let args: [&dyn Arg; 9] = [
            &s.scratch.ptr(),
            &carry_ptr,
            &bias.mem.ptr(),
            &y.ptr(),
            &s.scratch.ptr_at(z_len),
            &rows_i,
            &cout_i,
            &k_i,
            &s_i,
        ];
        launch(&s.stream, &dev.kernels.codec.overlap_add, "qt_codec_overlap_add", elementwise_cfg(total), &args)?;
        if let Some(c) = carry {
            self.bind()?;
            copy_between(&s.stream, &s.scratch, z_len, c, 0, carry_len)?;
        }
        Ok(())
    }

    fn depthwise_causal_conv(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        history: &mut DeviceMemory<f32>,
        channels: usize,
        kernel: usize,
        taps: &CudaF32Weight,
        bias: &CudaF32Weight,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let c = channels;
        if kernel == 0 {
            return Err(Error::invalid_argument("depthwise_causal_conv: kernel must be positive"));
        }
        let h_rows = kernel - 1;
        exact("depthwise_causal_conv taps", mul("depthwise_causal_conv taps", kernel, c)?, taps.mem.len())?;
        exact("depthwise_causal_conv bias", c, bias.mem.len())?;
        exact("depthwise_causal_conv history", mul("depthwise_causal_conv history", h_rows, c)?, history.len())?;
        let n = mul("depthwise_causal_conv input", rows, c)?;
        check("depthwise_causal_conv input", n, x.len())?;
        check("depthwise_causal_conv output", n, y.len())?;
        int("padded rows", rows.saturating_add(h_rows))?;
        let (rows_i, c_i, k_i) = (int("rows", rows)?, int("channels", c)?, int("kernel", kernel)?);
        if n == 0 {
            return Ok(());
        }
        let hist_ptr = if h_rows > 0 { history.ptr() } else { 0 };
        let args: [&dyn Arg; 8] =
            [&x.ptr(), &hist_ptr, &taps.mem.ptr(), &bias.mem.ptr(), &y.ptr(), &rows_i, &c_i, &k_i];
        let dev = self.device();
        launch(&s.stream, &dev.kernels.codec.depthwise, "qt_codec_depthwise", elementwise_cfg(n), &args)?;
        self.update_history(s, history, h_rows, x, rows, c)
    }

    fn layer_norm(
        &self,
        s: &mut CudaStreamCtx,
        x: &mut DeviceMemory<f32>,
        rows: usize,
        weight: &CudaF32Weight,
        bias: &CudaF32Weight,
        eps: f32,
    ) -> Result<()> {
        let dim = weight.mem.len();
        if dim == 0 {
            return Err(Error::invalid_argument("layer_norm: empty weight"));
        }
        exact("layer_norm bias", dim, bias.mem.len())?;
        check("layer_norm input", mul("layer_norm input", rows, dim)?, x.len())?;
        let (rows_i, dim_i) = (int("rows", rows)?, int("dim", dim)?);
        if rows == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig { grid_dim: (rows_i as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let args: [&dyn Arg; 5] = [&x.ptr(), &weight.mem.ptr(), &bias.mem.ptr(), &dim_i, &eps];
        launch(&s.stream, &self.device().kernels.codec.layer_norm, "qt_codec_layer_norm", cfg, &args)
    }

    fn audio_rms_norm(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        weight: &CudaF32Weight,
        eps: f32,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let dim = weight.mem.len();
        if dim == 0 {
            return Err(Error::invalid_argument("rms_norm: empty weight"));
        }
        let n = mul("rms_norm input", rows, dim)?;
        check("rms_norm input", n, x.len())?;
        check("rms_norm output", n, y.len())?;
        let (rows_i, dim_i) = (int("rows", rows)?, int("dim", dim)?);
        if rows == 0 {
            return Ok(());
        }
        let cfg = LaunchConfig { grid_dim: (rows_i as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let args: [&dyn Arg; 5] = [&x.ptr(), &weight.mem.ptr(), &y.ptr(), &dim_i, &eps];
        launch(&s.stream, &self.device().kernels.codec.rms_norm, "qt_codec_rms_norm", cfg, &args)
    }

    fn gelu(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, len: usize) -> Result<()> {
        check("gelu", len, x.len())?;
        if len == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 2] = [&x.ptr(), &(len as i64)];
        launch(&s.stream, &self.device().kernels.codec.gelu, "qt_codec_gelu", elementwise_cfg(len), &args)
    }

    fn snake_beta(
        &self,
        s: &mut CudaStreamCtx,
        x: &mut DeviceMemory<f32>,
        rows: usize,
        freq: &CudaF32Weight,
        inv_mag: &CudaF32Weight,
    ) -> Result<()> {
        let c = freq.mem.len();
        if c == 0 {
            return Err(Error::invalid_argument("snake_beta: no channels"));
        }
        exact("snake_beta magnitudes", c, inv_mag.mem.len())?;
        let n = mul("snake_beta input", rows, c)?;
        check("snake_beta input", n, x.len())?;
        let c_i = int("channels", c)?;
        if n == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 5] = [&x.ptr(), &freq.mem.ptr(), &inv_mag.mem.ptr(), &(n as i64), &c_i];
        launch(&s.stream, &self.device().kernels.codec.snake, "qt_codec_snake", elementwise_cfg(n), &args)
    }

    fn scale_add(
        &self,
        s: &mut CudaStreamCtx,
        residual: &mut DeviceMemory<f32>,
        x: &DeviceMemory<f32>,
        rows: usize,
        scale: &CudaF32Weight,
    ) -> Result<()> {
        let c = scale.mem.len();
        if c == 0 {
            return Err(Error::invalid_argument("scale_add: empty scale"));
        }
        let n = mul("scale_add", rows, c)?;
        check("scale_add residual", n, residual.len())?;
        check("scale_add input", n, x.len())?;
        let c_i = int("channels", c)?;
        if n == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 5] = [&residual.ptr(), &x.ptr(), &scale.mem.ptr(), &(n as i64), &c_i];
        launch(&s.stream, &self.device().kernels.codec.scale_add, "qt_codec_scale_add", elementwise_cfg(n), &args)
    }

    fn clamp(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, len: usize, lo: f32, hi: f32) -> Result<()> {
        // f32::clamp's preconditions, as errors (the CPU backend would panic).
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::invalid_argument(format!("clamp: bounds {lo}..{hi}")));
        }
        check("clamp", len, x.len())?;
        if len == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 4] = [&x.ptr(), &(len as i64), &lo, &hi];
        launch(&s.stream, &self.device().kernels.codec.clamp, "qt_codec_clamp", elementwise_cfg(len), &args)
    }

    fn codebook_sum(
        &self,
        s: &mut CudaStreamCtx,
        tables: &[&CudaF32Weight],
        ids: &[u32],
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let t = tables.len();
        if t == 0 || !ids.len().is_multiple_of(t) {
            return Err(Error::invalid_argument(format!("codebook_sum: {} ids for {t} tables", ids.len())));
        }
        let dim = match tables[0].shape[..] {
            [_, dim] => dim,
            ref shape => {
                return Err(Error::invalid_argument(format!("codebook_sum: table of shape {shape:?} is not 2-D")));
            }
        };
        let mut entries = Vec::with_capacity(t);
        for tab in tables {
            match tab.shape[..] {
                [e, d] if d == dim && e.checked_mul(d) == Some(tab.mem.len()) => entries.push(e),
                ref shape => {
                    return Err(Error::invalid_argument(format!("codebook_sum: tables of widths {dim} and {shape:?}")));
                }
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            let e = entries[i % t];
            if id as usize >= e {
                return Err(Error::invalid_argument(format!("codebook_sum: id {id} out of range for {e} entries")));
            }
        }
        let rows = ids.len() / t;
        check("codebook_sum output", mul("codebook_sum output", rows, dim)?, out.len())?;
        let (rows_i, dim_i, t_i) = (int("rows", rows)?, int("dim", dim)?, int("tables", t)?);
        if rows == 0 || dim == 0 {
            return Ok(());
        }
        self.stage_ids(s, ids, &entries)?;
        let dev = self.device();
        let cfg = LaunchConfig { grid_dim: (rows_i as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        for (chunk, group) in tables.chunks(MAX_CODEBOOK_TABLES_PER_LAUNCH).enumerate() {
            let mut ptrs = [0u64; MAX_CODEBOOK_TABLES_PER_LAUNCH];
            for (p, tab) in ptrs.iter_mut().zip(group) {
                *p = tab.mem.ptr();
            }
            let first = (chunk * MAX_CODEBOOK_TABLES_PER_LAUNCH) as i32;
            let args: [&dyn Arg; 8] = [
                &CodecTables(ptrs),
                &(group.len() as i32),
                &s.ids.ptr(),
                &t_i,
                &first,
                &out.ptr(),
                &dim_i,
                &i32::from(chunk > 0),
            ];
            launch(&s.stream, &dev.kernels.codec.codebook_sum, "qt_codec_codebook_sum", cfg, &args)?;
        }
        Ok(())
    }

    fn window_attention(
        &self,
        s: &mut CudaStreamCtx,
        q: &DeviceMemory<f32>,
        k: &DeviceMemory<f32>,
        v: &DeviceMemory<f32>,
        rows: usize,
        shape: AttentionShape,
        window: usize,
        keys: &mut DeviceMemory<f32>,
        values: &mut DeviceMemory<f32>,
        past: usize,
        out: &mut DeviceMemory<f32>,
    ) -> Result<usize> {
        let AttentionShape { num_heads, num_kv_heads, head_dim: hd } = shape;
        if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) || hd == 0 {
            return Err(Error::invalid_argument(format!(
                "window_attention: {num_heads} query heads, {num_kv_heads} key/value heads, head_dim {hd}"
            )));
        }
        if window == 0 || past >= window {
            return Err(Error::invalid_argument(format!(
                "window_attention: {past} remembered rows for a window of {window}"
            )));
        }
        let q_dim = mul("window_attention queries", num_heads, hd)?;
        let kv_dim = mul("window_attention keys", num_kv_heads, hd)?;
        let total = past.checked_add(rows).ok_or_else(|| Error::invalid_argument("window_attention: rows overflow"))?;
        let q_len = mul("window_attention queries", rows, q_dim)?;
        let kv_len = mul("window_attention new keys", rows, kv_dim)?;
        let window_len = mul("window_attention key window", total, kv_dim)?;
        check("window_attention queries", q_len, q.len())?;
        check("window_attention new keys", kv_len, k.len())?;
        check("window_attention new values", kv_len, v.len())?;
        check("window_attention key window", window_len, keys.len())?;
        check("window_attention value window", window_len, values.len())?;
        check("window_attention output", q_len, out.len())?;
        let seen = window.min(total);
        let smem = hd.saturating_add(seen).saturating_mul(size_of::<f32>());
        if smem > MAX_ATTENTION_SMEM {
            return Err(Error::invalid_argument(format!(
                "window_attention: head_dim {hd} and a window of {window} need {smem} bytes of shared memory \
                 (at most {MAX_ATTENTION_SMEM})"
            )));
        }
        let (rows_i, heads_i, kv_i, hd_i) =
            (int("rows", rows)?, int("heads", num_heads)?, int("kv heads", num_kv_heads)?, int("head_dim", hd)?);
        let (past_i, window_i) = (int("past", past)?, int("window", window)?);
        int("key rows", total)?;
        if num_heads > 65535 {
            return Err(Error::invalid_argument(format!("window_attention: {num_heads} heads exceed the grid")));
        }
        self.bind()?;
        if rows > 0 {
            // 1. The new keys and values after the remembered ones.
            copy_between(&s.stream, k, 0, keys, past * kv_dim, kv_len)?;
            copy_between(&s.stream, v, 0, values, past * kv_dim, kv_len)?;
            // 2. One block per (query row, head).
            if num_heads > 0 {
                let scale = 1.0 / (hd as f32).sqrt();
                let cfg = LaunchConfig {
                    grid_dim: (rows_i as u32, heads_i as u32, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: smem as u32,
                };
                let args: [&dyn Arg; 10] = [
                    &q.ptr(),
                    &keys.ptr(),
                    &values.ptr(),
                    &out.ptr(),
                    &heads_i,
                    &kv_i,
                    &hd_i,
                    &past_i,
                    &window_i,
                    &scale,
                ];
                let f = &self.device().kernels.codec.window_attention;
                launch(&s.stream, f, "qt_codec_window_attention", cfg, &args)?;
            }
        }
        // 3. Keep what a later query can see, at the front.
        let keep = total.min(window - 1);
        let start = (total - keep) * kv_dim;
        self.move_to_front(s, keys, start, keep * kv_dim)?;
        self.move_to_front(s, values, start, keep * kv_dim)?;
        Ok(keep)
    }

    fn reflect_conv(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        shape: ConvShape,
        w: &CudaF32Weight,
        bias: &CudaF32Weight,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let ConvShape { cin, cout, kernel, dilation } = shape;
        if kernel == 0 || dilation == 0 {
            return Err(Error::invalid_argument(format!(
                "reflect_conv: kernel {kernel} and dilation {dilation} must be positive"
            )));
        }
        exact("reflect_conv weight", shape.weight_len(), w.mem.len())?;
        exact("reflect_conv bias", cout, bias.mem.len())?;
        check("reflect_conv input", mul("reflect_conv input", rows, cin)?, x.len())?;
        check("reflect_conv output", mul("reflect_conv output", rows, cout)?, y.len())?;
        let total = mul("reflect_conv padding", kernel - 1, dilation)?;
        let (left, right) = (total / 2, total - total / 2);
        if left.max(right) >= rows {
            return Err(Error::invalid_argument(format!(
                "reflect_conv: each pad ({left} and {right} rows) must be shorter than the {rows} rows"
            )));
        }
        let dev = self.device();
        if total == 0 {
            // One tap: no padding, a dense layer over the rows.
            return dev.codec_conv_gemm(
                &s.stream,
                (x, 0),
                rows,
                None,
                (cin, 1, 1, 1),
                &w.mem,
                Some(&bias.mem),
                (y, 0),
                cout,
                Some(&mut s.conv_partials),
            );
        }
        // The padded rows in the scratch; their first `total` rows are the conv's history.
        let padded_rows = rows + total;
        let padded_len = mul("reflect_conv padded input", padded_rows, cin)?;
        int("padded input", padded_len)?;
        let (rows_i, cin_i, left_i, right_i) = (int("rows", rows)?, int("in channels", cin)?, int("left pad", left)?, int("right pad", right)?);
        self.ensure_scratch(s, padded_len)?;
        let args: [&dyn Arg; 6] = [&x.ptr(), &rows_i, &cin_i, &left_i, &right_i, &s.scratch.ptr()];
        launch(&s.stream, &dev.kernels.codec.reflect_pad, "qt_codec_reflect_pad", elementwise_cfg(padded_len), &args)?;
        let hist_len = total * cin;
        dev.codec_conv_gemm(
            &s.stream,
            (&s.scratch, hist_len),
            rows,
            Some((&s.scratch, 0)),
            (cin, kernel, dilation, 1),
            &w.mem,
            Some(&bias.mem),
            (y, 0),
            cout,
            Some(&mut s.conv_partials),
        )
    }

    fn copy_columns(
        &self,
        s: &mut CudaStreamCtx,
        src: &DeviceMemory<f32>,
        src_span: ColumnSpan,
        dst: &mut DeviceMemory<f32>,
        dst_span: ColumnSpan,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        if rows == 0 || width == 0 {
            return Ok(());
        }
        if dst_span.row_stride < width {
            return Err(Error::invalid_argument(format!(
                "copy_columns: destination rows of {} cannot hold {width} columns",
                dst_span.row_stride
            )));
        }
        check("copy_columns source", span_end("source", src_span, rows, width)?, src.len())?;
        check("copy_columns destination", span_end("destination", dst_span, rows, width)?, dst.len())?;
        let n = mul("copy_columns", rows, width)?;
        let (rows_i, width_i) = (int("rows", rows)?, int("columns", width)?);
        let as_i64 = |v: usize| i64::try_from(v).map_err(|_| Error::invalid_argument("copy_columns: offset too large"));
        let args: [&dyn Arg; 8] = [
            &src.ptr(),
            &as_i64(src_span.row_stride)?,
            &as_i64(src_span.first)?,
            &dst.ptr(),
            &as_i64(dst_span.row_stride)?,
            &as_i64(dst_span.first)?,
            &rows_i,
            &width_i,
        ];
        launch(&s.stream, &self.device().kernels.codec.copy_columns, "qt_codec_copy_columns", elementwise_cfg(n), &args)
    }

    fn column_mean(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        width: usize,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        check("column_mean input", mul("column_mean input", rows, width)?, x.len())?;
        check("column_mean output", width, out.len())?;
        if rows == 0 {
            return Err(Error::invalid_argument("column_mean: no rows"));
        }
        if width == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 4] = [&x.ptr(), &int("rows", rows)?, &int("columns", width)?, &out.ptr()];
        launch(&s.stream, &self.device().kernels.codec.column_mean, "qt_codec_column_mean", column_cfg(width), &args)
    }

    fn column_stats(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        width: usize,
        weights: Option<&DeviceMemory<f32>>,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let n = mul("column_stats input", rows, width)?;
        check("column_stats input", n, x.len())?;
        check("column_stats output", mul("column_stats output", 2, width)?, out.len())?;
        if let Some(w) = weights {
            check("column_stats weights", n, w.len())?;
        }
        if rows == 0 {
            return Err(Error::invalid_argument("column_stats: no rows"));
        }
        if width == 0 {
            return Ok(());
        }
        let weights_ptr = weights.map_or(0u64, |w| w.ptr());
        let args: [&dyn Arg; 5] = [&x.ptr(), &int("rows", rows)?, &int("columns", width)?, &weights_ptr, &out.ptr()];
        launch(&s.stream, &self.device().kernels.codec.column_stats, "qt_codec_column_stats", column_cfg(width), &args)
    }

    fn column_softmax(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, rows: usize, width: usize) -> Result<()> {
        check("column_softmax", mul("column_softmax", rows, width)?, x.len())?;
        if rows == 0 || width == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 3] = [&x.ptr(), &int("rows", rows)?, &int("columns", width)?];
        launch(&s.stream, &self.device().kernels.codec.column_softmax, "qt_codec_column_softmax", column_cfg(width), &args)
    }

    fn activation(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, len: usize, f: Activation) -> Result<()> {
        check("activation", len, x.len())?;
        if len == 0 {
            return Ok(());
        }
        // The kernel's `kind`.
        let kind: i32 = match f {
            Activation::Relu => 0,
            Activation::Tanh => 1,
            Activation::Sigmoid => 2,
            Activation::Elu => 3,
        };
        let args: [&dyn Arg; 3] = [&x.ptr(), &(len as i64), &kind];
        launch(&s.stream, &self.device().kernels.codec.activation, "qt_codec_activation", elementwise_cfg(len), &args)
    }

    fn gate_add(
        &self,
        s: &mut CudaStreamCtx,
        residual: &mut DeviceMemory<f32>,
        x: &DeviceMemory<f32>,
        rows: usize,
        width: usize,
        gate: &DeviceMemory<f32>,
    ) -> Result<()> {
        let n = mul("gate_add", rows, width)?;
        check("gate_add residual", n, residual.len())?;
        check("gate_add input", n, x.len())?;
        check("gate_add gate", width, gate.len())?;
        if n == 0 {
            return Ok(());
        }
        // qt_codec_scale_add's math with the gate buffer as the per-channel scale.
        let args: [&dyn Arg; 5] = [&residual.ptr(), &x.ptr(), &gate.ptr(), &(n as i64), &int("columns", width)?];
        launch(&s.stream, &self.device().kernels.codec.scale_add, "qt_codec_scale_add", elementwise_cfg(n), &args)
    }

    fn reflect_pad(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        width: usize,
        left: usize,
        right: usize,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        check("reflect_pad input", mul("reflect_pad input", rows, width)?, x.len())?;
        let padded = rows.checked_add(left).and_then(|r| r.checked_add(right));
        let padded = padded.ok_or_else(|| Error::invalid_argument("reflect_pad: padded rows overflow"))?;
        let n = mul("reflect_pad output", padded, width)?;
        check("reflect_pad output", n, out.len())?;
        if left.max(right) >= rows {
            return Err(Error::invalid_argument(format!(
                "reflect_pad: each pad ({left} and {right} rows) must be shorter than the {rows} rows"
            )));
        }
        // 32-bit rows, pads and width in the kernel; the padded row count too.
        int("padded rows", padded)?;
        let args: [&dyn Arg; 6] =
            [&x.ptr(), &int("rows", rows)?, &int("width", width)?, &int("left pad", left)?, &int("right pad", right)?, &out.ptr()];
        if n == 0 {
            return Ok(());
        }
        launch(&s.stream, &self.device().kernels.codec.reflect_pad, "qt_codec_reflect_pad", elementwise_cfg(n), &args)
    }

    fn complex_magnitude(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        bins: usize,
        eps: f32,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        check("complex_magnitude input", mul("complex_magnitude input", rows, mul("bins", 2, bins)?)?, x.len())?;
        let n = mul("complex_magnitude output", rows, bins)?;
        check("complex_magnitude output", n, out.len())?;
        if n == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 5] = [&x.ptr(), &int("rows", rows)?, &int("bins", bins)?, &eps, &out.ptr()];
        let f = &self.device().kernels.codec.complex_magnitude;
        launch(&s.stream, f, "qt_codec_complex_magnitude", elementwise_cfg(n), &args)
    }

    fn padded_conv(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        shape: ConvShape,
        stride: usize,
        pad: EdgePad,
        w: &CudaF32Weight,
        bias: Option<&CudaF32Weight>,
        y: &mut DeviceMemory<f32>,
    ) -> Result<usize> {
        let ConvShape { cin, cout, kernel, dilation } = shape;
        let span = padded_conv_span(kernel, dilation, stride, rows)?;
        exact("padded_conv weight", shape.weight_len(), w.mem.len())?;
        if let Some(b) = bias {
            exact("padded_conv bias", cout, b.mem.len())?;
        }
        check("padded_conv input", mul("padded_conv input", rows, cin)?, x.len())?;
        let out = span.out_rows;
        check("padded_conv output", mul("padded_conv output", out, cout)?, y.len())?;
        if cout == 0 {
            return Ok(out);
        }
        let dev = self.device();
        if cin == 0 {
            // No input channels: every output row is the bias (a GEMM over K = 0 writes it).
            return dev.codec_conv_gemm(
                &s.stream,
                (x, 0),
                out,
                None,
                (cin, 1, 1, 1),
                &w.mem,
                bias.map(|b| &b.mem),
                (y, 0),
                cout,
                None,
            )
            .map(|()| out);
        }
        // The padded input [left | x | extra] in the scratch, then the strided GEMM over it.
        let padded_rows = span.left + rows + span.extra;
        let padded_len = mul("padded_conv padded input", padded_rows, cin)?;
        int("padded input", padded_len)?;
        self.ensure_scratch(s, padded_len)?;
        let replicate = i32::from(pad == EdgePad::Replicate);
        let args: [&dyn Arg; 7] = [
            &x.ptr(),
            &int("rows", rows)?,
            &int("in channels", cin)?,
            &int("left pad", span.left)?,
            &int("right pad", span.extra)?,
            &replicate,
            &s.scratch.ptr(),
        ];
        launch(&s.stream, &dev.kernels.codec.edge_pad, "qt_codec_edge_pad", elementwise_cfg(padded_len), &args)?;
        if stride == 1 {
            // Stride 1 reads its first (k − 1)·d padded rows as the GEMM's history.
            let reach = (kernel - 1) * dilation;
            dev.codec_conv_gemm(
                &s.stream,
                (&s.scratch, reach * cin),
                out,
                if reach > 0 { Some((&s.scratch, 0)) } else { None },
                (cin, kernel, dilation, 1),
                &w.mem,
                bias.map(|b| &b.mem),
                (y, 0),
                cout,
                Some(&mut s.conv_partials),
            )?;
        } else {
            dev.codec_conv_gemm(
                &s.stream,
                (&s.scratch, 0),
                out,
                None,
                (cin, kernel, dilation, stride),
                &w.mem,
                bias.map(|b| &b.mem),
                (y, 0),
                cout,
                Some(&mut s.conv_partials),
            )?;
        }
        Ok(out)
    }

    fn nearest_code(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        dim: usize,
        codebook: &CudaF32Weight,
        ids: &mut [u32],
        margins: &mut [f32],
    ) -> Result<()> {
        let k = dim.checked_add(2).ok_or_else(|| Error::invalid_argument("nearest_code: dim overflows"))?;
        let cb_len = codebook.mem.len();
        if cb_len == 0 || cb_len % k != 0 {
            return Err(Error::invalid_argument(format!(
                "nearest_code: a codebook of {cb_len} values is not whole rows of dim + 2 = {k}"
            )));
        }
        let entries = cb_len / k;
        // Indices travel back as floats: exact below 2^24.
        if entries > 1 << 24 {
            return Err(Error::invalid_argument(format!("nearest_code: {entries} codebook entries (at most 2^24)")));
        }
        check("nearest_code input", mul("nearest_code input", rows, dim)?, x.len())?;
        check("nearest_code ids", rows, ids.len())?;
        check("nearest_code margins", rows, margins.len())?;
        if rows == 0 {
            return Ok(());
        }
        let (rows_i, dim_i, entries_i) = (int("rows", rows)?, int("dim", dim)?, int("entries", entries)?);
        // [−2x, ‖x‖², 1] (in the stream's scratch, the (index, margin) pairs after it), its
        // product with the augmented codebook (the distances, in the partial-sums buffer: this
        // product is never split), the argmin per row. Both buffers only grow, so an encode's
        // 16 searches allocate nothing after the first.
        let dev = self.device();
        let lhs_len = mul("nearest_code lhs", rows, k)?;
        let out_len = mul("nearest_code output", rows, 2)?;
        self.ensure_scratch(s, lhs_len.checked_add(out_len).ok_or_else(|| Error::invalid_argument("nearest_code: size overflows"))?)?;
        let d2_len = mul("nearest_code distances", rows, entries)?;
        if s.conv_partials.len() < d2_len {
            s.conv_partials = DeviceMemory::zeros(dev.pool(), d2_len.next_power_of_two())?;
        }
        let out_ptr = s.scratch.ptr_at(lhs_len);
        let args: [&dyn Arg; 4] = [&x.ptr(), &rows_i, &dim_i, &s.scratch.ptr()];
        launch(&s.stream, &dev.kernels.codec.distance_lhs, "qt_codec_distance_lhs", column_cfg(rows), &args)?;
        dev.codec_conv_gemm(
            &s.stream,
            (&s.scratch, 0),
            rows,
            None,
            (k, 1, 1, 1),
            &codebook.mem,
            None,
            (&mut s.conv_partials, 0),
            entries,
            None,
        )?;
        let cfg = LaunchConfig { grid_dim: (rows_i as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let args: [&dyn Arg; 3] = [&s.conv_partials.ptr(), &entries_i, &out_ptr];
        launch(&s.stream, &dev.kernels.codec.nearest, "qt_codec_nearest", cfg, &args)?;
        let mut host = vec![0f32; rows * 2];
        let scratch = std::mem::replace(&mut s.scratch, DeviceMemory::empty(dev.pool()));
        let read = crate::backend::Backend::read(self, s, &scratch, lhs_len, &mut host);
        s.scratch = scratch;
        read?;
        for (t, pair) in host.chunks_exact(2).enumerate() {
            ids[t] = pair[0] as u32;
            margins[t] = pair[1];
        }
        Ok(())
    }

    fn log_clamped(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, len: usize, floor: f32) -> Result<()> {
        check("log_clamped", len, x.len())?;
        if !(floor > 0.0 && floor.is_finite()) {
            return Err(Error::invalid_argument(format!("log_clamped: floor {floor} must be positive")));
        }
        if len == 0 {
            return Ok(());
        }
        let args: [&dyn Arg; 3] = [&x.ptr(), &(len as i64), &floor];
        launch(&s.stream, &self.device().kernels.codec.log_clamped, "qt_codec_log_clamped", elementwise_cfg(len), &args)
    }
}
