//! [`CudaBackend`]: the [`Backend`] operation set on one GPU.
//!
//! * Weights ([`CudaWeight`]) are uploaded once as BF16 whatever the checkpoint's dtype (the
//!   released checkpoints are BF16 already; F32 and F16 tensors are rounded to nearest even).
//!   The CPU backend keeps f32, so on f32 test checkpoints the two differ by that rounding.
//! * Buffers are f32 device memory ([`DeviceMemory<f32>`]).
//! * A stream ([`CudaStreamCtx`]) is one CUDA stream plus its own scratch (attention
//!   partials, embedding ids), so concurrent requests share nothing mutable.
//!
//! Every op checks sizes on the host first (`launch`); `read` is the synchronising call
//! where asynchronous kernel faults surface.

use std::sync::Arc;

use half::bf16;

use super::launch::{
    Elementwise, GemmOut, GemmPrecision, InvFreq, MAX_HEAD_DIM, MAX_ROWS_PER_PASS, NormIo, attention_scratch_len, gemm_scratch_len,
};
use super::memory::{DeviceMemory, DevicePool};
use super::{CudaDevice, cuda_error, driver::CudaStream};
use crate::backend::cpu::rope_inv_freq;
use crate::backend::{AttentionShape, Backend, LinearOut, Rope};
use crate::error::{Error, Result};
use crate::tensor::TensorView;
use crate::tensor::DType;

/// The CUDA backend on one device. Cheap to clone (the device is shared).
#[derive(Clone, Debug)]
pub struct CudaBackend {
    dev: Arc<CudaDevice>,
}

/// A BF16 parameter tensor in device memory.
pub struct CudaWeight {
    mem: DeviceMemory<bf16>,
    shape: Vec<usize>,
}

impl CudaWeight {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn memory(&self) -> &DeviceMemory<bf16> {
        &self.mem
    }
}

/// One request's execution context: a CUDA stream and per-stream scratch.
pub struct CudaStreamCtx {
    pub(crate) stream: Arc<CudaStream>,
    /// Per-op working memory, grown on demand (ops on one stream run in order, so they can
    /// share it): partial sums of split attention and split-K GEMMs; the audio ops' staging —
    /// a transposed convolution's GEMM output, the padded input of a reflect or padded
    /// convolution, the distance search's left operand and results.
    pub(crate) scratch: DeviceMemory<f32>,
    /// A second working buffer for the audio ops, apart from `scratch` (grown on demand): the
    /// chunk sums of split codec convolutions, the distance search's distance matrix.
    pub(crate) conv_partials: DeviceMemory<f32>,
    /// Embedding ids uploaded for the next gather (grown on demand).
    pub(crate) ids: DeviceMemory<u32>,
    /// What this stream's GEMMs multiply in (see [`GemmPrecision`]).
    pub(crate) gemm: GemmPrecision,
    pool: Arc<DevicePool>,
}

impl CudaStreamCtx {
    /// The CUDA stream every op of this context is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// What this stream's GEMMs (linear calls of more than 8 rows) multiply in from now on;
    /// a new stream starts with [`GemmPrecision::from_env`].
    pub fn set_gemm_precision(&mut self, precision: GemmPrecision) {
        self.gemm = precision;
    }

    /// What this stream's GEMMs multiply in.
    pub fn gemm_precision(&self) -> GemmPrecision {
        self.gemm
    }

    /// Waits for everything queued on this stream.
    pub fn synchronize(&self) -> Result<()> {
        super::count_host_wait();
        self.stream.synchronize().map_err(|e| cuda_error("stream synchronize", e))
    }
}

impl Drop for CudaStreamCtx {
    fn drop(&mut self) {
        // The request is over: hand in the stream's own buffers, then free everything handed
        // in (one context wait), so that they are not left for a later flush.
        drop(std::mem::replace(&mut self.scratch, DeviceMemory::empty(&self.pool)));
        drop(std::mem::replace(&mut self.conv_partials, DeviceMemory::empty(&self.pool)));
        drop(std::mem::replace(&mut self.ids, DeviceMemory::empty(&self.pool)));
        super::count_host_wait();
        let _ = self.stream.synchronize();
        self.pool.flush();
    }
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` (errors: no driver, no such device, no kernels).
    pub fn new(ordinal: usize) -> Result<Self> {
        Ok(CudaBackend { dev: Arc::new(CudaDevice::new(ordinal)?) })
    }

    /// The device (for benchmarks and diagnostics).
    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }

    /// The shared handle of the device (for engines that keep it).
    pub fn device_arc(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// [`Backend::linear`] with the row kernels' warps-per-row forced (benchmarks).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_with_wpr(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        y: &mut DeviceMemory<f32>,
        accumulate: bool,
        wpr: Option<u32>,
    ) -> Result<()> {
        let [n, k] = w.shape[..] else {
            return Err(Error::invalid_argument(format!("linear: weight of shape {:?} is not a matrix", w.shape)));
        };
        if rows > MAX_ROWS_PER_PASS {
            let (splits, _) = self.dev.gemm_splits(rows, n, k);
            self.ensure_scratch(s, gemm_scratch_len(splits, rows, n))?;
        }
        let bias = bias.map(|b| &b.mem);
        self.dev.linear(&s.stream, (x, 0), rows, &w.mem, n, k, bias, (y, 0), accumulate, wpr, Some(&mut s.scratch), s.gemm)
    }

    /// Grows the stream's scratch to at least `len` elements (a power of two, so it settles).
    pub(crate) fn ensure_scratch(&self, s: &mut CudaStreamCtx, len: usize) -> Result<()> {
        if s.scratch.len() < len {
            s.scratch = DeviceMemory::zeros(self.dev.pool(), len.next_power_of_two())?;
        }
        Ok(())
    }

    /// RMSNorm with the residual add fused: `x += residual; y = RMSNorm(x) · w`.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rms_norm(
        &self,
        s: &mut CudaStreamCtx,
        x: &mut DeviceMemory<f32>,
        residual: &DeviceMemory<f32>,
        rows: usize,
        w: &CudaWeight,
        eps: f32,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        self.dev.rms_norm(&s.stream, NormIo::AddThenOut { x, residual, y }, rows, &w.mem, eps)
    }

    fn inv_freq(rope: Rope) -> Result<InvFreq> {
        if rope.head_dim == 0 || !rope.head_dim.is_multiple_of(2) || rope.head_dim > MAX_HEAD_DIM {
            return Err(Error::invalid_argument(format!(
                "rope: head_dim {} must be even and <= {MAX_HEAD_DIM}",
                rope.head_dim
            )));
        }
        let mut f = InvFreq([0.0; MAX_HEAD_DIM / 2]);
        f.0[..rope.head_dim / 2].copy_from_slice(&rope_inv_freq(rope));
        Ok(f)
    }

    /// Uploads `ids` into the stream's id scratch, after checking each against `vocab[t]`
    /// (ids are `[rows, tables]`).
    pub(crate) fn stage_ids(&self, s: &mut CudaStreamCtx, ids: &[u32], vocab: &[usize]) -> Result<()> {
        for (i, &id) in ids.iter().enumerate() {
            let v = vocab[i % vocab.len()];
            if id as usize >= v {
                return Err(Error::invalid_argument(format!("embedding: id {id} outside the table's {v} rows")));
            }
        }
        if s.ids.len() < ids.len() {
            s.ids = DeviceMemory::zeros(self.dev.pool(), ids.len().next_power_of_two())?;
        }
        self.bind()?;
        // SAFETY: the scratch holds at least ids.len() elements; a pageable source is staged
        // by the driver before the call returns, and the copy is ordered on the stream before
        // the gather that reads it (and after any earlier gather that read the old ids).
        unsafe { cudarc::driver::result::memcpy_htod_async(s.ids.ptr(), ids, s.stream.cu_stream()) }
            .map_err(|e| cuda_error("uploading embedding ids", e))
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.dev.ctx().bind_to_thread().map_err(|e| cuda_error("binding the context", e))
    }
}

fn check_range(what: &str, offset: usize, len: usize, have: usize) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > have) {
        return Err(Error::invalid_argument(format!(
            "{what}: range {offset}..{} outside a buffer of {have}",
            offset + len
        )));
    }
    Ok(())
}

impl Backend for CudaBackend {
    type Weight = CudaWeight;
    type Buffer = DeviceMemory<f32>;
    type Stream = CudaStreamCtx;

    fn name(&self) -> String {
        self.dev.name()
    }

    fn new_stream(&self) -> Result<CudaStreamCtx> {
        Ok(CudaStreamCtx {
            stream: self.dev.new_stream()?,
            scratch: DeviceMemory::empty(self.dev.pool()),
            conv_partials: DeviceMemory::empty(self.dev.pool()),
            ids: DeviceMemory::empty(self.dev.pool()),
            gemm: GemmPrecision::from_env(),
            pool: self.dev.pool().clone(),
        })
    }

    fn upload_weight(&self, view: &TensorView<'_>) -> Result<CudaWeight> {
        let n = view.numel();
        let host: Vec<bf16> = match view.dtype {
            // Bytes may be unaligned (safetensors offsets are byte offsets): read element-wise.
            DType::BF16 => {
                view.bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect()
            }
            _ => view.to_f32_vec().into_iter().map(bf16::from_f32).collect(),
        };
        if host.len() != n {
            return Err(Error::bad_weights(format!(
                "tensor `{}`: {} values for shape {:?}",
                view.name,
                host.len(),
                view.shape
            )));
        }
        Ok(CudaWeight { mem: DeviceMemory::from_host(self.dev.pool(), &host)?, shape: view.shape.to_vec() })
    }

    fn upload_weight_f32(&self, data: &[f32], shape: &[usize]) -> Result<CudaWeight> {
        let len: usize = shape.iter().product();
        if len != data.len() {
            return Err(Error::invalid_argument(format!(
                "weight of shape {shape:?} needs {len} values, got {}",
                data.len()
            )));
        }
        let host: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
        Ok(CudaWeight { mem: DeviceMemory::from_host(self.dev.pool(), &host)?, shape: shape.to_vec() })
    }

    fn weight_len(&self, w: &CudaWeight) -> usize {
        w.mem.len()
    }

    fn alloc(&self, len: usize) -> Result<DeviceMemory<f32>> {
        DeviceMemory::zeros(self.dev.pool(), len)
    }

    fn buffer_len(&self, b: &DeviceMemory<f32>) -> usize {
        b.len()
    }

    fn write(&self, s: &mut CudaStreamCtx, dst: &mut DeviceMemory<f32>, offset: usize, src: &[f32]) -> Result<()> {
        check_range("write", offset, src.len(), dst.len())?;
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: range checked; a pageable source is staged before the call returns.
        unsafe { cudarc::driver::result::memcpy_htod_async(dst.ptr_at(offset), src, s.stream.cu_stream()) }
            .map_err(|e| cuda_error("host-to-device copy", e))
    }

    fn read(&self, s: &mut CudaStreamCtx, src: &DeviceMemory<f32>, offset: usize, dst: &mut [f32]) -> Result<()> {
        check_range("read", offset, dst.len(), src.len())?;
        if dst.is_empty() {
            return s.synchronize();
        }
        self.bind()?;
        // SAFETY: range checked; we wait for the copy before returning (dst is borrowed).
        unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src.ptr_at(offset), s.stream.cu_stream()) }
            .map_err(|e| cuda_error("device-to-host copy", e))?;
        s.synchronize()
    }

    fn copy(
        &self,
        s: &mut CudaStreamCtx,
        src: &DeviceMemory<f32>,
        src_offset: usize,
        dst: &mut DeviceMemory<f32>,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        check_range("copy source", src_offset, len, src.len())?;
        check_range("copy destination", dst_offset, len, dst.len())?;
        if len == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: both ranges checked; src and dst are distinct buffers (Rust borrows).
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.ptr_at(dst_offset),
                src.ptr_at(src_offset),
                len * size_of::<f32>(),
                s.stream.cu_stream(),
            )
        }
        .map_err(|e| cuda_error("device-to-device copy", e))
    }

    fn linear(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        w: &CudaWeight,
        bias: Option<&CudaWeight>,
        y: &mut DeviceMemory<f32>,
        accumulate: bool,
    ) -> Result<()> {
        self.linear_with_wpr(s, x, rows, w, bias, y, accumulate, None)
    }

    fn linear_shared_input(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        outs: &mut [LinearOut<'_, Self>],
    ) -> Result<()> {
        // Prompt rows in a BF16 precision: one grouped launch. Otherwise (decode rows, TF32,
        // shapes the BF16 kernels cannot take) one linear call per output.
        let k = outs.first().and_then(|o| o.w.shape.get(1).copied()).unwrap_or(0);
        let same_k = outs.iter().all(|o| o.w.shape.len() == 2 && o.w.shape[1] == k);
        if !same_k || !self.dev.can_group(x, rows, k, outs.iter().map(|o| &o.w.mem), s.gemm) {
            for o in outs.iter_mut() {
                self.linear(s, x, rows, o.w, o.bias, o.y, false)?;
            }
            return Ok(());
        }
        let (splits, _) = self.dev.gemm_group_splits(rows, outs.iter().map(|o| o.w.shape[0]), k);
        let n_total: usize = outs.iter().map(|o| o.w.shape[0]).sum();
        self.ensure_scratch(s, gemm_scratch_len(splits, rows, n_total))?;
        let mut group: Vec<GemmOut<'_>> =
            outs.iter_mut().map(|o| GemmOut { w: &o.w.mem, bias: o.bias.map(|b| &b.mem), y: &mut *o.y }).collect();
        self.dev.linear_group(&s.stream, x, rows, k, &mut group, &mut s.scratch, s.gemm)
    }

    fn rms_norm(
        &self,
        s: &mut CudaStreamCtx,
        x: &DeviceMemory<f32>,
        rows: usize,
        w: &CudaWeight,
        eps: f32,
        y: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        self.dev.rms_norm(&s.stream, NormIo::Out { x, y }, rows, &w.mem, eps)
    }

    fn rms_norm_inplace(
        &self,
        s: &mut CudaStreamCtx,
        x: &mut DeviceMemory<f32>,
        rows: usize,
        w: &CudaWeight,
        eps: f32,
    ) -> Result<()> {
        self.dev.rms_norm(&s.stream, NormIo::InPlace(x), rows, &w.mem, eps)
    }

    fn rope(
        &self,
        s: &mut CudaStreamCtx,
        x: &mut DeviceMemory<f32>,
        rows: usize,
        heads: usize,
        rope: Rope,
        first_position: usize,
    ) -> Result<()> {
        let f = Self::inv_freq(rope)?;
        self.dev.head_norm_rope(&s.stream, x, heads, None, rows, rope.head_dim, None, Some((&f, first_position)))
    }

    fn qk_norm_rope(
        &self,
        s: &mut CudaStreamCtx,
        q: &mut DeviceMemory<f32>,
        k: &mut DeviceMemory<f32>,
        rows: usize,
        shape: AttentionShape,
        q_norm: &CudaWeight,
        k_norm: &CudaWeight,
        eps: f32,
        rope: Rope,
        first_position: usize,
    ) -> Result<()> {
        if rope.head_dim != shape.head_dim {
            return Err(Error::invalid_argument("qk_norm_rope: rope and attention head_dim differ"));
        }
        let f = Self::inv_freq(rope)?;
        self.dev.head_norm_rope(
            &s.stream,
            q,
            shape.num_heads,
            Some((k, shape.num_kv_heads)),
            rows,
            shape.head_dim,
            Some((&q_norm.mem, Some(&k_norm.mem), eps)),
            Some((&f, first_position)),
        )
    }

    fn attention(
        &self,
        s: &mut CudaStreamCtx,
        q: &DeviceMemory<f32>,
        k_cache: &DeviceMemory<f32>,
        v_cache: &DeviceMemory<f32>,
        shape: AttentionShape,
        rows: usize,
        first_position: usize,
        out: &mut DeviceMemory<f32>,
    ) -> Result<()> {
        let AttentionShape { num_heads: heads, num_kv_heads: kv_heads, head_dim } = shape;
        let (splits, _) = self.dev.attention_splits(heads.max(1), rows.max(1), first_position + rows);
        self.ensure_scratch(s, attention_scratch_len(heads, rows, splits, head_dim))?;
        self.dev.attention(
            &s.stream,
            q,
            k_cache,
            v_cache,
            heads,
            kv_heads,
            head_dim,
            rows,
            first_position,
            out,
            &mut s.scratch,
        )
    }

    fn silu_mul(
        &self,
        s: &mut CudaStreamCtx,
        gate: &mut DeviceMemory<f32>,
        up: &DeviceMemory<f32>,
        len: usize,
    ) -> Result<()> {
        self.dev.elementwise(&s.stream, Elementwise::SiluMul, gate, Some(up), len)
    }

    fn silu(&self, s: &mut CudaStreamCtx, x: &mut DeviceMemory<f32>, len: usize) -> Result<()> {
        self.dev.elementwise(&s.stream, Elementwise::Silu, x, None, len)
    }

    fn add(
        &self,
        s: &mut CudaStreamCtx,
        dst: &mut DeviceMemory<f32>,
        src: &DeviceMemory<f32>,
        len: usize,
    ) -> Result<()> {
        self.dev.elementwise(&s.stream, Elementwise::Add, dst, Some(src), len)
    }

    fn embedding(
        &self,
        s: &mut CudaStreamCtx,
        table: &CudaWeight,
        ids: &[u32],
        out: &mut DeviceMemory<f32>,
        accumulate: bool,
    ) -> Result<()> {
        self.embedding_sum(s, &[table], ids, out, accumulate)
    }

    fn embedding_sum(
        &self,
        s: &mut CudaStreamCtx,
        tables: &[&CudaWeight],
        ids: &[u32],
        out: &mut DeviceMemory<f32>,
        accumulate: bool,
    ) -> Result<()> {
        let Some(first) = tables.first() else {
            return Err(Error::invalid_argument("embedding: no tables"));
        };
        let [_, dim] = first.shape[..] else {
            return Err(Error::invalid_argument(format!(
                "embedding: table of shape {:?} is not a matrix",
                first.shape
            )));
        };
        let mut vocab = Vec::with_capacity(tables.len());
        for t in tables {
            match t.shape[..] {
                [v, d] if d == dim => vocab.push(v),
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "embedding: table shapes {:?} and {:?} differ in width",
                        first.shape, t.shape
                    )));
                }
            }
        }
        if !ids.len().is_multiple_of(tables.len()) {
            return Err(Error::invalid_argument(format!("embedding: {} ids for {} tables", ids.len(), tables.len())));
        }
        let rows = ids.len() / tables.len();
        if rows == 0 {
            return Ok(());
        }
        self.stage_ids(s, ids, &vocab)?;
        let mems: Vec<&DeviceMemory<bf16>> = tables.iter().map(|t| &t.mem).collect();
        self.dev.embedding_sum(&s.stream, &mems, dim, &s.ids, rows, out, accumulate)
    }
}
