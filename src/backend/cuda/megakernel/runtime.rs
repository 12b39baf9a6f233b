//! Running the frame megakernel: launch geometry, per-request device state, the frame records
//! in mapped host memory, and the sampler test entry.
//!
//! * [`FrameKernel`] (one per loaded model): the kernel variant for this GPU (cp.async.bulk on
//!   compute capability 9.0 and later, cp.async before), its grid (SM count × the occupancy
//!   query's blocks per SM; never a constant), its shared-memory layout (the weight ring gets
//!   what the other regions leave of the opt-in maximum), and a pool of request buffers.
//! * [`FrameRequest`] (one per generation): an arena of device memory (activations, the code
//!   predictor's KV cache, counters, the program) and a block of mapped host memory (one
//!   record per frame plus the abort flag). Launches are queued on the request's stream and
//!   never waited for: the host learns of each frame by reading its record ([`poll`]).
//!   Dropping the request waits for its stream, then returns the buffers to the pool.
//!
//! [`poll`]: FrameRequest::poll

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg, result, sys};

use super::layout::*;
use super::load_plan::LoadPlan;
use super::program::{self, ArenaLayout, FrameWeights, Program, RequestAddrs};
use crate::backend::cuda::memory::DeviceMemory;
use crate::backend::cuda::{CudaDevice, cuda_error, guarded};
use crate::error::{Error, Result};

/// Which weight-load path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadPath {
    /// The copy engine (cp.async.bulk) where the GPU has it (compute capability 9.0+).
    #[default]
    Auto,
    /// cp.async on every GPU (tests run both paths on a Hopper GPU).
    Portable,
}

/// What a [`FrameKernel`] chose for this GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelGeometry {
    pub blocks: u32,
    pub blocks_per_sm: u32,
    pub shared_bytes: u32,
    pub ring_slots: usize,
    pub bulk_copies: bool,
}

/// Buffers a request keeps between generations (pooled per kernel).
struct RequestBuffers {
    arena: DeviceMemory<u32>,
    /// `[ops][grid]` per-block completion flags (flags::BLOCK_FLAGS), zeroed per request.
    block_flags: DeviceMemory<u32>,
    records: HostRecords,
}

/// The frame megakernel for one model's weights on one device.
pub struct FrameKernel {
    dev: Arc<CudaDevice>,
    func: CudaFunction,
    geometry: KernelGeometry,
    work_floats: usize,
    ypart_floats: usize,
    weights: FrameWeights,
    layout: ArenaLayout,
    inv_freq_talker: Vec<f32>,
    inv_freq_cp: Vec<f32>,
    /// Each block's weight pages in use order (load_plan.rs), read by the kernel's loader.
    plan_pages: DeviceMemory<MkPage>,
    plan_op_first: DeviceMemory<u32>,
    plan_stride: usize,
    /// Frames a request may run (records per request).
    max_frames: usize,
    pool: Mutex<Vec<RequestBuffers>>,
}

impl std::fmt::Debug for FrameKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameKernel").field("geometry", &self.geometry).field("ops", &self.layout.n_ops).finish()
    }
}

/// Per-request inputs: the talker's cache and prefill outputs (made by the unfused path) and
/// the text rows of the decode steps.
pub struct RequestInputs<'a> {
    /// K and V cache per talker layer, `[capacity, kv_width]` each.
    pub talker_kv: Vec<(&'a DeviceMemory<f32>, &'a DeviceMemory<f32>)>,
    /// Cache capacity in positions.
    pub capacity: usize,
    /// Prompt rows already in the cache.
    pub prompt_len: usize,
    /// Post-norm hidden state and raw codec logits of the prompt's last row.
    pub last_hidden: &'a DeviceMemory<f32>,
    pub logits: &'a DeviceMemory<f32>,
    /// Text rows of decode steps `[trailing, hidden]` and `P(tts_pad)`.
    pub text_rows: &'a DeviceMemory<f32>,
    pub trailing: usize,
    pub pad_row: &'a DeviceMemory<f32>,
    /// Most frames; the codebook-0 token of frame `frame_limit` only decides EOS or limit.
    pub frame_limit: usize,
    pub seed: u64,
    pub talker: MkTalkerSampler,
    pub cp: MkSampler,
}

/// A frame's outcome, read from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRecord {
    /// The frame's codes (the first `groups` entries).
    Frame([u32; MAX_GROUPS]),
    /// Codebook 0 was EOS.
    Eos,
    /// The frame limit was reached.
    Limit,
    /// The abort flag was seen before this frame.
    Aborted,
    /// Codebook 0 was outside the codec's codes.
    BadCode(u32),
}

fn attr(dev: &CudaDevice, a: sys::CUdevice_attribute) -> Result<i32> {
    dev.ctx().attribute(a).map_err(|e| cuda_error("cuDeviceGetAttribute", e))
}

/// Bytes of dynamic shared memory for `nslot` ring slots (the kernel's `carve`).
fn shared_bytes(nslot: usize, work_floats: usize, ypart_floats: usize) -> usize {
    let mut off = nslot * PAGE_BYTES + nslot * 8;
    off = off.next_multiple_of(16) + 4 * work_floats;
    off = off.next_multiple_of(16) + 4 * ypart_floats;
    off + 4 * 8 + 4
}

impl FrameKernel {
    /// Prepares the kernel for `weights` on `dev`. `Unsupported` when the shapes or the GPU
    /// cannot run it (no cooperative launch, too little shared memory); callers fall back to
    /// the unfused path then.
    pub fn new(
        dev: Arc<CudaDevice>,
        weights: FrameWeights,
        inv_freq: (Vec<f32>, Vec<f32>),
        max_frames: usize,
        path: LoadPath,
    ) -> Result<Self> {
        if let Some(why) = weights.unsupported() {
            return Err(Error::unsupported(format!("frame megakernel: {why}")));
        }
        guarded("preparing the frame megakernel", || Self::prepare(dev, weights, inv_freq, max_frames, path))
    }

    fn prepare(
        dev: Arc<CudaDevice>,
        weights: FrameWeights,
        inv_freq: (Vec<f32>, Vec<f32>),
        max_frames: usize,
        path: LoadPath,
    ) -> Result<Self> {
        use sys::CUdevice_attribute as A;
        if attr(&dev, A::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)? == 0 {
            return Err(Error::unsupported("frame megakernel: this GPU has no cooperative launch"));
        }
        let (major, _) = dev.compute_capability()?;
        let bulk = path == LoadPath::Auto && major >= 9;
        let func = if bulk { dev.kernels.mk_frame_tma.clone() } else { dev.kernels.mk_frame_portable.clone() };
        let optin = attr(&dev, A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)? as usize;
        let static_bytes = func
            .get_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
            .map_err(|e| cuda_error("cuFuncGetAttribute", e))? as usize;
        let sms = dev.sm_count();
        let work_floats = program::work_floats(&weights);
        // Partial sums are sized for the smallest grid (one block per SM); more blocks only
        // give each block fewer rows.
        let layout = ArenaLayout::new(&weights);
        let probe = RequestAddrs { arena: 0, talker_kv: vec![(0, 0); weights.talker.layers.len()], text_rows: 0, trailing: 0, pad_row: 0 };
        let probe_ops = program::build(&weights, &layout, &probe).ops;
        let ypart_floats = program::ypart_floats(&probe_ops, sms);
        let budget = optin.saturating_sub(static_bytes + 256);
        let fixed = shared_bytes(0, work_floats, ypart_floats);
        let nslot = (budget.saturating_sub(fixed) / (PAGE_BYTES + 8)).min(MAX_SLOTS);
        if nslot < 2 {
            return Err(Error::unsupported(format!(
                "frame megakernel: {optin} bytes of shared memory per block leave {nslot} weight pages (2 needed)"
            )));
        }
        let smem = shared_bytes(nslot, work_floats, ypart_floats);
        func.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| cuda_error("cuFuncSetAttribute (dynamic shared memory)", e))?;
        let per_sm = func
            .occupancy_max_active_blocks_per_multiprocessor(THREADS, smem, None)
            .map_err(|e| cuda_error("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))?;
        if per_sm == 0 {
            return Err(Error::unsupported("frame megakernel: the occupancy query allows no block per SM"));
        }
        // Attention gives every key/value head at least one block (attention.cuh): a grid
        // smaller than the widest stack's KV heads would leave heads uncomputed.
        let kv_max = weights.talker.shape.kv_heads.max(weights.cp.shape.kv_heads);
        if (sms as usize) * (per_sm as usize) < kv_max {
            return Err(Error::unsupported(format!(
                "frame megakernel: a grid of {} blocks is smaller than the {kv_max} key/value heads",
                sms as u32 * per_sm
            )));
        }
        let geometry = KernelGeometry {
            blocks: sms as u32 * per_sm,
            blocks_per_sm: per_sm,
            shared_bytes: smem as u32,
            ring_slots: nslot,
            bulk_copies: bulk,
        };
        // The loader's plan depends on the weight addresses and the grid only (the probe
        // program has the real weight addresses), so it is made once per kernel.
        let plan = LoadPlan::new(&probe_ops, geometry.blocks as usize);
        let plan_pages = DeviceMemory::from_host(dev.pool(), &plan.pages)?;
        let plan_op_first = DeviceMemory::from_host(dev.pool(), &plan.op_first)?;
        let (inv_freq_talker, inv_freq_cp) = inv_freq;
        Ok(FrameKernel {
            dev,
            func,
            geometry,
            work_floats,
            ypart_floats,
            weights,
            layout,
            inv_freq_talker,
            inv_freq_cp,
            plan_pages,
            plan_op_first,
            plan_stride: plan.stride,
            max_frames,
            pool: Mutex::new(Vec::new()),
        })
    }

    pub fn geometry(&self) -> KernelGeometry {
        self.geometry
    }

    /// Ops in the program and the index of the codebook-0 sampler (talker ops come before).
    pub fn program_shape(&self) -> (usize, usize) {
        (self.layout.n_ops, self.weights.talker.layers.len() * 5 + 1)
    }

    /// Most frames one request can run.
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// Sets up one request on `stream`: buffers (pooled), the program, the prefill outputs.
    /// The request borrows the inputs (its kernels read and write them) as well as the kernel.
    pub fn request<'k>(&'k self, stream: &Arc<CudaStream>, inputs: RequestInputs<'k>) -> Result<FrameRequest<'k>> {
        let w = &self.weights;
        let groups = w.groups;
        if inputs.talker_kv.len() != w.talker.layers.len() {
            return Err(Error::invalid_argument("frame request: one K/V pair per talker layer needed"));
        }
        if inputs.frame_limit >= self.max_frames {
            return Err(Error::invalid_argument(format!(
                "frame request: {} frames exceed the {} this model was prepared for",
                inputs.frame_limit, self.max_frames
            )));
        }
        if inputs.prompt_len == 0 || inputs.prompt_len + inputs.frame_limit > inputs.capacity {
            return Err(Error::invalid_argument(format!(
                "frame request: a prompt of {} rows and {} frames do not fit a cache of {} positions",
                inputs.prompt_len, inputs.frame_limit, inputs.capacity
            )));
        }
        let kvw = w.talker.shape.kv_width();
        for (k, v) in &inputs.talker_kv {
            if k.len() < inputs.capacity * kvw || v.len() < inputs.capacity * kvw {
                return Err(Error::invalid_argument("frame request: a talker cache buffer is smaller than its capacity"));
            }
        }
        let h = w.talker.shape.hidden;
        if inputs.last_hidden.len() < h || inputs.logits.len() < w.talker_vocab || inputs.pad_row.len() < h {
            return Err(Error::invalid_argument("frame request: prefill outputs of the wrong size"));
        }
        if inputs.text_rows.len() < inputs.trailing * h {
            return Err(Error::invalid_argument("frame request: fewer text rows than announced"));
        }
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut bufs = match pooled {
            Some(b) => b,
            None => RequestBuffers {
                arena: DeviceMemory::zeros(self.dev.pool(), self.layout.total_words)?,
                block_flags: DeviceMemory::zeros(self.dev.pool(), self.layout.n_ops * self.geometry.blocks as usize)?,
                records: HostRecords::new(self.dev.ctx().clone(), self.max_frames + 1)?,
            },
        };
        let l = &self.layout;
        let arena = bufs.arena.ptr();
        let addrs = RequestAddrs {
            arena,
            talker_kv: inputs.talker_kv.iter().map(|(k, v)| (k.ptr(), v.ptr())).collect(),
            text_rows: inputs.text_rows.ptr(),
            trailing: inputs.trailing,
            pad_row: inputs.pad_row.ptr(),
        };
        let program = program::build(w, l, &addrs);
        // Stream-ordered initialisation: counters and state zeroed, tables and program
        // uploaded, the prefill's outputs copied in. Pageable sources are staged before each
        // call returns.
        let s = stream.cu_stream();
        self.dev.ctx().bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        bufs.arena.zero_async(stream, l.counters, l.zero_words)?;
        let flag_words = bufs.block_flags.len();
        bufs.block_flags.zero_async(stream, 0, flag_words)?;
        let ops_bytes = ops_as_bytes(&program.ops);
        // SAFETY: every destination range lies inside the arena (ArenaLayout), the sources are
        // live host slices or device buffers whose sizes were checked above.
        unsafe {
            result::memcpy_htod_async(arena + 4 * l.ops as u64, ops_bytes, s)
                .map_err(|e| cuda_error("uploading the frame program", e))?;
            result::memcpy_htod_async(arena + 4 * l.inv_freq_talker as u64, &self.inv_freq_talker, s)
                .map_err(|e| cuda_error("uploading rotary tables", e))?;
            result::memcpy_htod_async(arena + 4 * l.inv_freq_cp as u64, &self.inv_freq_cp, s)
                .map_err(|e| cuda_error("uploading rotary tables", e))?;
            result::memcpy_dtod_async(arena + 4 * l.hidden_last as u64, inputs.last_hidden.ptr(), 4 * h, s)
                .map_err(|e| cuda_error("copying the prefill hidden state", e))?;
            result::memcpy_dtod_async(arena + 4 * l.logits_talker as u64, inputs.logits.ptr(), 4 * w.talker_vocab, s)
                .map_err(|e| cuda_error("copying the prefill logits", e))?;
        }
        bufs.records.reset(inputs.frame_limit + 1);
        let args = MkArgs {
            ops: arena + 4 * l.ops as u64,
            counters: arena + 4 * l.counters as u64,
            combine: arena + 4 * l.combine as u64,
            state: arena + 4 * l.state as u64,
            seen: arena + 4 * l.seen as u64,
            records: bufs.records.records_dev(),
            abort: bufs.records.abort_dev(),
            forced: 0,
            dump: 0,
            total_ops: l.n_ops as i32,
            n_ops: l.n_ops as i32,
            first_op: 0,
            epoch: 0,
            frame: 0,
            talker_position: 0,
            frame_limit: inputs.frame_limit as i32,
            cp_vocab: w.cp_vocab as i32,
            groups: groups as i32,
            seed_lo: inputs.seed as u32,
            seed_hi: (inputs.seed >> 32) as u32,
            dump_stride: w.talker_vocab.max(w.cp_vocab) as i32,
            nslot: self.geometry.ring_slots as i32,
            work_floats: self.work_floats as i32,
            ypart_floats: self.ypart_floats as i32,
            talker: inputs.talker,
            cp: inputs.cp,
            flags: env_flags(),
            trace: 0,
            plan: self.plan_pages.ptr(),
            plan_op0: self.plan_op_first.ptr(),
            plan_stride: self.plan_stride as i32,
            counter_epoch: 0,
            block_flags: bufs.block_flags.ptr(),
            ll: arena + 4 * l.ll as u64,
            ll_origin: arena,
            ll_codes: arena + 4 * l.ll_codes as u64,
            ll_floats: l.ll_floats as i32,
            pad_ll: 0,
        };
        Ok(FrameRequest {
            kernel: self,
            stream: stream.clone(),
            bufs: Some(bufs),
            sample0: program.sample0,
            program,
            args,
            prompt_len: inputs.prompt_len,
            frame_limit: inputs.frame_limit,
            forced: None,
            dump: None,
            trace: None,
            launches: 0,
            counter_launches: 0,
            pending: true,
            stuck: std::cell::Cell::new(false),
        })
    }

    /// Runs the megakernel's sampler on each case (block per case) and returns the codes:
    /// the parity test of the device sampler against the host's.
    pub fn sample_cases(dev: &CudaDevice, cases: &[(MkSampleCase, Vec<f32>, Vec<u32>)]) -> Result<Vec<u32>> {
        if cases.is_empty() {
            return Ok(Vec::new());
        }
        let pool = dev.pool();
        let mut logits = Vec::new();
        let mut seen = Vec::new();
        for (c, l, s) in cases {
            if l.len() != c.n as usize || c.n as usize > MAX_VOCAB || c.n <= 0 {
                return Err(Error::invalid_argument("sample case: logits length differs from n or exceeds the maximum"));
            }
            logits.push(DeviceMemory::from_host(pool, l)?);
            seen.push(DeviceMemory::from_host(pool, &if s.is_empty() { vec![0u32] } else { s.clone() })?);
        }
        let host_cases: Vec<MkSampleCase> = cases
            .iter()
            .zip(logits.iter().zip(&seen))
            .map(|((c, _, _), (l, s))| MkSampleCase { logits: l.ptr(), seen: s.ptr(), ..*c })
            .collect();
        let dev_cases = DeviceMemory::from_host(pool, ops_as_bytes(&host_cases))?;
        let out = DeviceMemory::<u32>::zeros(pool, cases.len())?;
        let max_n = cases.iter().map(|c| c.0.n as usize).max().unwrap_or(0);
        let smem = 4 * (4 * max_n.next_multiple_of(4) + SAMPLE_EXTRA_FLOATS);
        let f = &dev.kernels.mk_sample_cases;
        f.set_attribute(sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem as i32)
            .map_err(|e| cuda_error("cuFuncSetAttribute", e))?;
        let stream = dev.stream();
        let mut b = stream.launch_builder(f);
        let (cp, op) = (dev_cases.ptr(), out.ptr());
        b.arg(&cp);
        b.arg(&op);
        let cfg = LaunchConfig { grid_dim: (cases.len() as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: smem as u32 };
        // SAFETY: qt_mk_sample_cases(const MkSampleCase*, unsigned*); every case points at live
        // buffers of n floats and a bitmap covering the ids it can see.
        unsafe { b.launch(cfg) }.map_err(|e| cuda_error("launching qt_mk_sample_cases", e))?;
        let mut codes = vec![0u32; cases.len()];
        dev.ctx().bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        // SAFETY: `codes` holds cases.len() elements, the device buffer as many.
        unsafe { result::memcpy_dtoh_async(&mut codes, out.ptr(), stream.cu_stream()) }
            .map_err(|e| cuda_error("reading sampled codes", e))?;
        stream.synchronize().map_err(|e| cuda_error("stream synchronize", e))?;
        Ok(codes)
    }
}

fn ops_as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a #[repr(C)] plain-old-data struct here (MkOp, MkSampleCase): every byte
    // pattern of its fields is a valid u8, and the slice covers exactly its memory.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The chain variant production runs: dependencies carried by the data ([`flags::LL`]),
/// which passed every megakernel test on both load paths and is the fastest variant measured
/// (a forced 0.6B frame 4536 µs against 4994 with counters, H100).
pub const DEFAULT_FLAGS: u32 = flags::LL;

/// `QT_MEGAKERNEL_FLAGS` (a number, `MkArgs.flags`): runs every request with a chain variant,
/// so that the device runner can put a variant through the whole test suite before it becomes
/// the default (0 = op counters). Unset (production): [`DEFAULT_FLAGS`].
pub fn env_flags() -> u32 {
    static FLAGS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *FLAGS.get_or_init(|| {
        let Some(text) = std::env::var_os("QT_MEGAKERNEL_FLAGS") else { return DEFAULT_FLAGS };
        let text = text.to_string_lossy();
        let value: u32 = text.trim().parse().unwrap_or_else(|_| {
            log::warn!("QT_MEGAKERNEL_FLAGS={text:?} is not a number; ignored");
            0
        });
        if value & flags::SKIP_MATH != 0 {
            log::warn!("QT_MEGAKERNEL_FLAGS includes SKIP_MATH (timing only): ignored");
            return value & !flags::SKIP_MATH;
        }
        value
    })
}

/// One generation's state on the device.
pub struct FrameRequest<'k> {
    kernel: &'k FrameKernel,
    stream: Arc<CudaStream>,
    bufs: Option<RequestBuffers>,
    program: Program,
    sample0: usize,
    args: MkArgs,
    prompt_len: usize,
    frame_limit: usize,
    forced: Option<DeviceMemory<u32>>,
    dump: Option<DeviceMemory<f32>>,
    trace: Option<DeviceMemory<u64>>,
    launches: u32,
    /// Launches that advanced the op counters (all but flags::BLOCK_FLAGS and flags::LL
    /// ones), so that a benchmark can mix the dependency schemes within one request.
    counter_launches: u32,
    /// Work queued since the last wait.
    pending: bool,
    /// Set by [`diagnose_stuck`](Self::diagnose_stuck): the kernel never finishes, so the
    /// request is abandoned on drop (buffers leaked) instead of waited for.
    stuck: std::cell::Cell<bool>,
}

impl FrameRequest<'_> {
    fn bufs(&self) -> &RequestBuffers {
        self.bufs.as_ref().expect("request buffers are only taken in Drop")
    }

    /// The op list (for tests and diagnostics).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The stream the request's kernels are queued on (benchmarks record events on it).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Queues frame `frame` (0-based): frame 0 starts at the codebook-0 sampler (its logits
    /// come from the prefill), later frames run the talker step first.
    pub fn launch(&mut self, frame: usize) -> Result<()> {
        let first = if frame == 0 { self.sample0 } else { 0 };
        self.launch_range(frame, first, self.program.ops.len())
    }

    /// Queues ops `first..end` of frame `frame` (timing: the talker alone is `0..sample0`, the
    /// code predictor alone `sample0..`). Ops outside the range count as done.
    pub fn launch_range(&mut self, frame: usize, first: usize, end: usize) -> Result<()> {
        if frame > self.frame_limit || first > end || end > self.program.ops.len() {
            return Err(Error::invalid_argument(format!(
                "frame launch: frame {frame} (limit {}), ops {first}..{end} of {}",
                self.frame_limit,
                self.program.ops.len()
            )));
        }
        self.launches += 1;
        if self.args.flags & (flags::BLOCK_FLAGS | flags::LL) == 0 {
            self.counter_launches += 1;
        }
        self.pending = true;
        let mut a = self.args;
        a.first_op = first as i32;
        a.n_ops = end as i32;
        a.epoch = self.launches;
        a.counter_epoch = self.counter_launches;
        a.frame = frame as i32;
        a.talker_position = (self.prompt_len + frame).saturating_sub(1) as i32;
        let g = self.kernel.geometry;
        let cfg = LaunchConfig { grid_dim: (g.blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: g.shared_bytes };
        let mut b = self.stream.launch_builder(&self.kernel.func);
        b.arg(&a);
        // SAFETY: qt_mk_frame_*(MkArgs) by value; every address in `a` and in the program
        // points into this request's arena, its mapped records, the model's weights (alive as
        // long as the kernel) or the caller's cache buffers (checked against the capacity);
        // the grid fits the device (occupancy query), which the cooperative launch verifies.
        unsafe { b.launch_cooperative(cfg) }.map(|_| ()).map_err(|e| cuda_error("launching the frame megakernel", e))
    }

    /// The record of `frame` if its kernel has written it (never blocks).
    pub fn poll(&self, frame: usize) -> Option<FrameRecord> {
        let r = &self.bufs().records;
        let status = r.status(frame);
        if status == RECORD_PENDING {
            return None;
        }
        fence(Ordering::Acquire);
        Some(match status {
            RECORD_FRAME => FrameRecord::Frame(r.codes(frame)),
            RECORD_EOS => FrameRecord::Eos,
            RECORD_LIMIT => FrameRecord::Limit,
            RECORD_ABORTED => FrameRecord::Aborted,
            _ => FrameRecord::BadCode(r.codes(frame)[0]),
        })
    }

    /// Asks the kernels to stop at their next codebook-0 sampler.
    pub fn abort(&self) {
        self.bufs().records.set_abort();
    }

    /// Whether all queued work has finished; an asynchronous kernel fault is an error here.
    /// A query, not a wait: it never blocks.
    pub fn idle(&self) -> Result<bool> {
        self.kernel.dev.ctx().bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        // SAFETY: the stream is alive (held by this request).
        match unsafe { sys::cuStreamQuery(self.stream.cu_stream()) } {
            sys::CUresult::CUDA_SUCCESS => Ok(true),
            sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            e => Err(cuda_error("the frame megakernel", cudarc::driver::DriverError(e))),
        }
    }

    /// Waits for all queued work (once per request, at its end).
    pub fn synchronize(&mut self) -> Result<()> {
        crate::backend::cuda::count_host_wait();
        self.stream.synchronize().map_err(|e| cuda_error("waiting for the frame megakernel", e))?;
        self.pending = false;
        Ok(())
    }

    /// Teacher forcing: the samplers take `codes[frame * groups + g]` instead of sampling.
    pub fn set_forced(&mut self, codes: &[u32]) -> Result<()> {
        let groups = self.kernel.weights.groups;
        if codes.len() < (self.frame_limit + 1) * groups {
            return Err(Error::invalid_argument("forced codes: one frame of codes per frame up to the limit needed"));
        }
        // The kernel checks only codebook 0 (against EOS and the codebook); the others index
        // embedding tables of cp_vocab rows.
        let vocab = self.kernel.weights.cp_vocab;
        if let Some((i, &c)) = codes.iter().enumerate().find(|(i, c)| i % groups != 0 && **c as usize >= vocab) {
            return Err(Error::invalid_argument(format!(
                "forced codes: code {c} (frame {}, codebook {}) is outside the {vocab} codes",
                i / groups,
                i % groups
            )));
        }
        let mem = DeviceMemory::from_host(self.kernel.dev.pool(), codes)?;
        self.args.forced = mem.ptr();
        self.forced = Some(mem);
        Ok(())
    }

    /// Keeps every sampler's raw logits of the latest frame on the device (see [`read_dump`]).
    ///
    /// [`read_dump`]: Self::read_dump
    pub fn enable_dump(&mut self) -> Result<()> {
        let stride = self.args.dump_stride as usize;
        let mem = DeviceMemory::zeros(self.kernel.dev.pool(), MAX_GROUPS * stride)?;
        self.args.dump = mem.ptr();
        self.dump = Some(mem);
        Ok(())
    }

    /// Waits for the stream and returns the raw logits of codebook `slot` of the last frame
    /// that reached it (`vocab` values).
    pub fn read_dump(&mut self, slot: usize, vocab: usize) -> Result<Vec<f32>> {
        let stride = self.args.dump_stride as usize;
        let Some(src) = self.dump.as_ref().map(|d| d.ptr_at(slot.min(MAX_GROUPS) * stride)) else {
            return Err(Error::invalid_argument("logit dump not enabled"));
        };
        if slot >= MAX_GROUPS || vocab > stride {
            return Err(Error::invalid_argument("logit dump: slot or vocabulary out of range"));
        }
        self.synchronize()?;
        let mut out = vec![0f32; vocab];
        // SAFETY: the dump holds MAX_GROUPS * stride floats; the stream is idle.
        unsafe { result::memcpy_dtoh_async(&mut out, src, self.stream.cu_stream()) }
            .map_err(|e| cuda_error("reading the logit dump", e))?;
        self.synchronize()?;
        Ok(out)
    }

    /// Chain variants for benchmarks (`MkArgs.flags`, the `kFlag*` of layout.cuh); applies to
    /// later launches. [`env_flags`] is what production runs (by default [`DEFAULT_FLAGS`]).
    pub fn set_flags(&mut self, flags: u32) {
        self.args.flags = flags;
    }

    /// Weight-ring slots of later launches (benchmarks: how deep the prefetch must be), at
    /// most the geometry's; the shared memory stays sized for the geometry's.
    pub fn set_ring_slots(&mut self, slots: usize) -> Result<()> {
        if !(2..=self.kernel.geometry.ring_slots).contains(&slots) {
            return Err(Error::invalid_argument(format!(
                "ring slots {slots}: 2..={} allowed",
                self.kernel.geometry.ring_slots
            )));
        }
        self.args.nslot = slots as i32;
        Ok(())
    }

    /// Records per-(op, block) timestamps in later launches (see [`read_trace`]).
    ///
    /// [`read_trace`]: Self::read_trace
    pub fn enable_trace(&mut self) -> Result<()> {
        let len = self.program.ops.len() * self.kernel.geometry.blocks as usize * TRACE_FIELDS;
        let mem = DeviceMemory::zeros(self.kernel.dev.pool(), len)?;
        self.args.trace = mem.ptr();
        self.trace = Some(mem);
        Ok(())
    }

    /// Waits for the stream and returns the trace of the latest traced launch:
    /// `[op][block][TRACE_FIELDS]` (ops outside that launch's range hold older values).
    pub fn read_trace(&mut self) -> Result<Vec<u64>> {
        let Some(src) = self.trace.as_ref().map(|t| (t.ptr(), t.len())) else {
            return Err(Error::invalid_argument("trace not enabled"));
        };
        self.synchronize()?;
        let mut out = vec![0u64; src.1];
        // SAFETY: the trace holds src.1 values; the stream is idle.
        unsafe { result::memcpy_dtoh_async(&mut out, src.0, self.stream.cu_stream()) }
            .map_err(|e| cuda_error("reading the trace", e))?;
        self.synchronize()?;
        Ok(out)
    }

    /// Kernel launches so far.
    pub fn launches(&self) -> u32 {
        self.launches
    }

    /// For a kernel that stopped making progress: reads the op counters while it spins (a
    /// synchronous copy on the legacy stream, which does not wait for the request's
    /// non-blocking stream) and describes where the blocks are, as runs of equal counts:
    /// `ops a..b: n` means every block up to n has signalled those ops (n = launches x grid
    /// when complete). Marks the request stuck: dropping it then abandons its buffers
    /// rather than waiting forever for the stream.
    pub fn diagnose_stuck(&self) -> String {
        self.stuck.set(true);
        let l = &self.kernel.layout;
        let grid = self.kernel.geometry.blocks;
        let mut counts = vec![0u32; l.n_ops];
        let src = self.bufs().arena.ptr() + 4 * l.counters as u64;
        if self.kernel.dev.ctx().bind_to_thread().is_err() {
            return "context not bindable".into();
        }
        // SAFETY: the arena holds n_ops counters at `counters`; `counts` has n_ops elements.
        if let Err(e) = unsafe { result::memcpy_dtoh_sync(&mut counts, src) } {
            return format!("counters unreadable: {e}");
        }
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=counts.len() {
            if i == counts.len() || counts[i] != counts[start] {
                let kind = self.program.ops[start].kind;
                runs.push(format!("ops {start}..{i} (first kind {kind}): {}", counts[start]));
                start = i;
            }
        }
        // BLOCK_FLAGS and LL launches leave the counters alone (their flags and tags are not read here).
        format!(
            "{} launches of {grid} blocks, {} of them counting (complete = {}), counters: {}",
            self.launches,
            self.counter_launches,
            self.counter_launches * grid,
            runs.join("; ")
        )
    }
}

impl Drop for FrameRequest<'_> {
    fn drop(&mut self) {
        if self.stuck.get() {
            // A kernel that never ends still uses these buffers: they can neither be freed
            // nor reused. Abandoned (a bug report, not a state the library recovers from).
            std::mem::forget(self.bufs.take());
            return;
        }
        // No kernel of this request may still use its buffers when they go back to the pool.
        let idle = !self.pending || {
            crate::backend::cuda::count_host_wait();
            self.stream.synchronize().is_ok()
        };
        if let Some(b) = self.bufs.take()
            && idle
        {
            self.kernel.pool.lock().unwrap_or_else(|p| p.into_inner()).push(b);
        }
    }
}

/// Mapped, pinned host memory: the abort flag (record slot 0) and one record per frame.
struct HostRecords {
    host: *mut MkRecord,
    dev: u64,
    frames: usize,
    ctx: Arc<CudaContext>,
}

// SAFETY: the pointer is to pinned host memory owned by this struct; the device writes records
// and the host reads them with volatile loads (the kernels' protocol: codes, then status).
unsafe impl Send for HostRecords {}

impl HostRecords {
    fn new(ctx: Arc<CudaContext>, frames: usize) -> Result<Self> {
        let bytes = (frames + 1) * size_of::<MkRecord>();
        ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let flags = sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE;
        // SAFETY: plain pinned allocation; the memory is zeroed below before any use.
        let host = unsafe { result::malloc_host(bytes, flags) }
            .map_err(|e| cuda_error(&format!("allocating {bytes} bytes of mapped host memory"), e))?
            .cast::<MkRecord>();
        // SAFETY: `bytes` bytes were just allocated at `host`.
        unsafe { std::ptr::write_bytes(host.cast::<u8>(), 0, bytes) };
        let mut dev = 0u64;
        // SAFETY: `host` is a mapped allocation of this context.
        let r = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host.cast(), 0) };
        if r != sys::CUresult::CUDA_SUCCESS {
            // SAFETY: allocated above, not shared yet.
            let _ = unsafe { result::free_host(host.cast()) };
            return Err(cuda_error("mapping host memory", cudarc::driver::DriverError(r)));
        }
        Ok(HostRecords { host, dev, frames, ctx })
    }

    fn rec(&self, frame: usize) -> *mut MkRecord {
        assert!(frame < self.frames, "record {frame} of {}", self.frames);
        // SAFETY: slot 0 is the abort flag, records follow; frame < frames checked.
        unsafe { self.host.add(frame + 1) }
    }

    fn records_dev(&self) -> u64 {
        self.dev + size_of::<MkRecord>() as u64
    }

    fn abort_dev(&self) -> u64 {
        self.dev
    }

    fn reset(&mut self, frames: usize) {
        for f in 0..frames.min(self.frames) {
            // SAFETY: in bounds (rec checks); no kernel of a request runs before its reset.
            unsafe { std::ptr::addr_of_mut!((*self.rec(f)).status).write_volatile(RECORD_PENDING) };
        }
        // SAFETY: slot 0's first word is the abort flag.
        unsafe { self.host.cast::<u32>().write_volatile(0) };
        fence(Ordering::SeqCst);
    }

    fn set_abort(&self) {
        // SAFETY: slot 0's first word is the abort flag; the kernel reads it with a volatile load.
        unsafe { self.host.cast::<u32>().write_volatile(1) };
        fence(Ordering::SeqCst);
    }

    fn status(&self, frame: usize) -> u32 {
        // SAFETY: in bounds; written by the device, read volatile.
        unsafe { std::ptr::addr_of!((*self.rec(frame)).status).read_volatile() }
    }

    fn codes(&self, frame: usize) -> [u32; MAX_GROUPS] {
        // SAFETY: in bounds; the status was read first (the device writes it last).
        unsafe { std::ptr::addr_of!((*self.rec(frame)).codes).read_volatile() }
    }
}

impl Drop for HostRecords {
    fn drop(&mut self) {
        // Only reached with no kernel of the owning request in flight (FrameRequest::drop
        // waits for its stream; the pool is dropped with the kernel, after every request).
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: allocated by malloc_host in new(), freed once.
            let _ = unsafe { result::free_host(self.host.cast()) };
        }
    }
}
