//! The CUDA backend (feature `cuda`). This module tree is the only place that imports cudarc.
//!
//! * [`CudaDevice`]: a context on one ordinal, the loaded kernels and a default stream.
//! * [`CudaBackend`](backend::CudaBackend): the [`Backend`](super::Backend) implementation
//!   (weights uploaded once as BF16, f32 activations, one CUDA stream per request).
//! * [`DeviceMemory`](memory::DeviceMemory): library-owned device allocations.
//! * `audio`: the codec's [`AudioBackend`](super::audio::AudioBackend) op set on the GPU
//!   (`kernels/codec.cu`; f32 weights, [`CudaF32Weight`]).
//! * `launch`: typed, argument-checked launchers, one per kernel file in `kernels/`.
//!
//! Design notes:
//! * **Driver.** cudarc loads `libcuda` with dlopen on first use and *panics* when it is
//!   absent, so [`CudaDevice::new`] checks [`driver_present`] before any other cudarc call and
//!   returns [`ErrorKind::NoCudaDriver`]. Every cudarc call made while opening the device runs
//!   under `catch_unwind`, so a panic inside cudarc becomes an error, never an unwind into
//!   callers (or an abort at the C boundary). A driver older than CUDA 13.0 (driver 580) is
//!   refused by name ([`check_driver_version`]) before any kernel is loaded.
//! * **Kernels.** build.rs compiles `kernels/*.cu` with nvcc into one fatbin (SASS for sm_80,
//!   sm_86, sm_89, sm_90a, sm_100, sm_110, sm_120 plus compute_90 PTX), embedded here with
//!   `include_bytes!` and loaded with `cuModuleLoadData` (0.1 ms on the H100: the SASS is
//!   used, no JIT). A build made without nvcc has no kernels: [`kernels_compiled`] is false and [`CudaDevice::new`] says
//!   so ([`NO_KERNELS`]). There is deliberately no NVRTC fallback (1-2 s per compile, and it
//!   needs the CUDA headers on the user's machine).
//! * **Ordering.** cudarc's per-buffer event tracking is off (it costs host time on every
//!   launch). Work is ordered by streams: each request's ops go on its own stream, memory is
//!   allocated complete and freed only after the context is idle ([`memory`]).
//! * **Errors.** Every driver call's result is checked, except in `Drop` (stream wait, deferred
//!   frees), where a failure cannot be returned and shows at the next call that returns a
//!   status; launches are checked when queued, and
//!   asynchronous faults surface at the next synchronising call (a read), each mapped by
//!   [`cuda_error`] to `OutOfMemory`, `NoDevice` or `Cuda` with the failing step named.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DriverError, LaunchConfig, PushKernelArg, sys,
};

use crate::error::{Error, ErrorKind, Result};

pub mod audio;
pub mod backend;
pub mod launch;
pub mod megakernel;
pub mod memory;

pub use audio::CudaF32Weight;
pub use backend::{CudaBackend, CudaStreamCtx, CudaWeight};
pub use launch::GemmPrecision;
pub use memory::{DeviceMemory, DevicePool};

/// cudarc types that device code outside the library (tests, examples, benchmarks) needs to
/// time work and capture graphs, re-exported so that they never import cudarc themselves.
pub mod driver {
    pub use cudarc::driver::{CudaEvent, CudaGraph, CudaStream};
}

/// Start of the error message when no NVIDIA driver library can be loaded.
pub const NO_DRIVER: &str = "no CUDA driver";
/// Start of the error message when this build has no compiled kernels.
pub const NO_KERNELS: &str = "CUDA kernels were not compiled into this build";

#[cfg(qt_kernels)]
const FATBIN: Option<&[u8]> = Some(include_bytes!(env!("QT_KERNELS_FATBIN")));
#[cfg(not(qt_kernels))]
const FATBIN: Option<&[u8]> = None;

static HOST_WAITS: AtomicU64 = AtomicU64::new(0);

/// Times, process-wide, that the host waited for work it had queued on a GPU: stream and
/// context synchronisations (reads of results, the end of a request, deferred frees). Waits
/// for a fresh allocation's initialisation (legacy stream only) are not counted. Benchmarks
/// and tests read it before and after a request to count its waits.
pub fn host_waits() -> u64 {
    HOST_WAITS.load(Ordering::Relaxed)
}

pub(crate) fn count_host_wait() {
    HOST_WAITS.fetch_add(1, Ordering::Relaxed);
}

/// Whether build.rs found nvcc and embedded the kernels.
pub fn kernels_compiled() -> bool {
    FATBIN.is_some()
}

/// The nvcc release line that compiled the embedded kernels, if any.
pub fn kernels_compiler() -> Option<&'static str> {
    option_env!("QT_KERNELS_NVCC")
}

/// Whether the NVIDIA driver library (`libcuda.so*`) can be loaded. Cached after the first
/// call; safe to call on any machine (this is the check that keeps cudarc from panicking).
pub fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: only tries to dlopen the driver library by its known names.
        catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false)
    })
}

/// Number of CUDA devices the driver sees; 0 without a driver or on any driver error.
pub fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    guarded("counting devices", || {
        CudaContext::device_count().map(|n| n.max(0) as usize).map_err(|e| cuda_error("cuDeviceGetCount", e))
    })
    .unwrap_or(0)
}

/// Errors unless the driver is present and sees device `ordinal` (no context is created).
pub fn check_device(ordinal: usize) -> Result<()> {
    if !driver_present() {
        return Err(no_driver());
    }
    let count = device_count();
    if ordinal >= count {
        return Err(Error::new(
            ErrorKind::NoDevice,
            format!("no CUDA device {ordinal}: the driver sees {count} device(s)"),
        ));
    }
    Ok(())
}

/// The CUDA version (as `cuDriverGetVersion` reports it: 1000 major + 10 minor) the driver
/// must support: the kernels are compiled by nvcc 13.0 (its PTX is ISA 9.0, which older
/// drivers cannot JIT; NVIDIA's compatibility rules run a CUDA 13 build on CUDA 13 drivers
/// only) and the driver bindings are cudarc's CUDA 13.0 ones. Driver 580 is the first with
/// CUDA 13.0. (A CUDA 12.x toolchain would reach older drivers; not evaluated yet.)
pub const MIN_DRIVER_CUDA_VERSION: i32 = 13000;

/// Errors (`NoCudaDriver`, naming both versions) when a driver reporting CUDA `version` is
/// older than [`MIN_DRIVER_CUDA_VERSION`].
pub fn check_driver_version(version: i32) -> Result<()> {
    if version >= MIN_DRIVER_CUDA_VERSION {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::NoCudaDriver,
        format!(
            "{NO_DRIVER}: the NVIDIA driver supports CUDA {}.{}, this build needs CUDA {}.{} (driver 580 or newer)",
            version / 1000,
            version % 1000 / 10,
            MIN_DRIVER_CUDA_VERSION / 1000,
            MIN_DRIVER_CUDA_VERSION % 1000 / 10
        ),
    ))
}

fn no_driver() -> Error {
    Error::new(ErrorKind::NoCudaDriver, format!("{NO_DRIVER}: the NVIDIA driver library (libcuda.so.1) was not found"))
}

/// Maps a driver error to a crate error that names the failing step.
pub(crate) fn cuda_error(what: &str, e: DriverError) -> Error {
    use sys::CUresult as R;
    let (kind, detail) = match e.0 {
        R::CUDA_ERROR_OUT_OF_MEMORY => (ErrorKind::OutOfMemory, "out of GPU memory".to_owned()),
        R::CUDA_ERROR_NO_DEVICE | R::CUDA_ERROR_INVALID_DEVICE => (ErrorKind::NoDevice, format!("{e:?}")),
        _ => (ErrorKind::Cuda, format!("{e:?}")),
    };
    Error::new(kind, format!("CUDA: {what} failed: {detail}"))
}

/// Runs cudarc code, turning a panic inside it into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(Error::new(ErrorKind::Cuda, format!("CUDA: {what} panicked inside cudarc: {msg}")))
    })
}

/// Every kernel entry point of the embedded module.
pub(crate) struct Kernels {
    /// `qt_linear_rows{R}_wpr{W}`: `[R - 1][index of W in WARPS_PER_ROW]`.
    pub linear_rows: Vec<[CudaFunction; 3]>,
    pub gemm_tf32: CudaFunction,
    /// The cp.async-pipelined BF16 tensor-core GEMM: X rounded to bf16, and X split into two
    /// bf16 parts (see [`launch::GemmPrecision`]).
    pub gemm_bf16: CudaFunction,
    pub gemm_bf16x2: CudaFunction,
    /// The grouped forms (one X, up to three weights) and their reduction.
    pub gemm_bf16_group: CudaFunction,
    pub gemm_bf16x2_group: CudaFunction,
    pub gemm_reduce_group: CudaFunction,
    pub gemm_reduce: CudaFunction,
    pub rms_norm: CudaFunction,
    pub head_norm_rope: CudaFunction,
    pub attention_split: CudaFunction,
    pub attention_combine: CudaFunction,
    pub attention_prefill: CudaFunction,
    pub silu_mul: CudaFunction,
    pub silu: CudaFunction,
    pub add: CudaFunction,
    pub embedding_sum: CudaFunction,
    pub spin: CudaFunction,
    /// The frame megakernel: copy-engine weight loads (sm_90+) and the portable cp.async form.
    pub mk_frame_tma: CudaFunction,
    pub mk_frame_portable: CudaFunction,
    /// The megakernel's sampler over test vectors.
    pub mk_sample_cases: CudaFunction,
    /// The codec's audio ops (`kernels/codec.cu`).
    pub(crate) codec: audio::CodecKernels,
}

impl Kernels {
    fn load(module: &Arc<CudaModule>) -> Result<Self> {
        let load = |f: &str| module.load_function(f).map_err(|e| cuda_error(&format!("loading kernel {f}"), e));
        let linear_rows = (1..=launch::MAX_ROWS_PER_PASS)
            .map(|r| {
                Ok([
                    load(&format!("qt_linear_rows{r}_wpr1"))?,
                    load(&format!("qt_linear_rows{r}_wpr2"))?,
                    load(&format!("qt_linear_rows{r}_wpr4"))?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Kernels {
            linear_rows,
            gemm_tf32: load("qt_gemm_tf32")?,
            gemm_bf16: load("qt_gemm_bf16")?,
            gemm_bf16x2: load("qt_gemm_bf16x2")?,
            gemm_bf16_group: load("qt_gemm_bf16_group")?,
            gemm_bf16x2_group: load("qt_gemm_bf16x2_group")?,
            gemm_reduce_group: load("qt_gemm_reduce_group")?,
            gemm_reduce: load("qt_gemm_reduce")?,
            rms_norm: load("qt_rms_norm")?,
            head_norm_rope: load("qt_head_norm_rope")?,
            attention_split: load("qt_attention_split")?,
            attention_combine: load("qt_attention_combine")?,
            attention_prefill: load("qt_attention_prefill")?,
            silu_mul: load("qt_silu_mul")?,
            silu: load("qt_silu")?,
            add: load("qt_add")?,
            embedding_sum: load("qt_embedding_sum")?,
            spin: load("qt_spin_ns")?,
            mk_frame_tma: load("qt_mk_frame_tma")?,
            mk_frame_portable: load("qt_mk_frame_portable")?,
            mk_sample_cases: load("qt_mk_sample_cases")?,
            codec: audio::CodecKernels::load(&load)?,
        })
    }
}

/// One GPU: a context on an ordinal, a default stream, and the loaded kernels.
pub struct CudaDevice {
    // Field order is drop order: the kernels and module go before the pool's last flush, and
    // the context (held by the pool and the stream too) outlives all of them.
    pub(crate) kernels: Kernels,
    pool: Arc<DevicePool>,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    name: String,
    sm_count: usize,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice").field("ordinal", &self.ctx.ordinal()).field("name", &self.name).finish()
    }
}

impl CudaDevice {
    /// Opens device `ordinal`: checks for the driver, the device and the kernels (in that
    /// order), creates the context and a stream, and loads the kernel module.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(no_driver());
        }
        guarded("opening the device", || Self::open(ordinal))
    }

    fn open(ordinal: usize) -> Result<Self> {
        let count = CudaContext::device_count().map_err(|e| cuda_error("cuInit/cuDeviceGetCount", e))?;
        let mut version = 0;
        // SAFETY: cuInit has run (device_count); writes one int.
        let r = unsafe { sys::cuDriverGetVersion(&mut version) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(cuda_error("cuDriverGetVersion", DriverError(r)));
        }
        check_driver_version(version)?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::new(
                ErrorKind::NoDevice,
                format!("no CUDA device {ordinal}: the driver sees {count} device(s)"),
            ));
        }
        let Some(fatbin) = FATBIN else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{NO_KERNELS} (nvcc was not found when it was built; rebuild with nvcc on PATH or CUDA_HOME set)"
                ),
            ));
        };
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_error("creating the context", e))?;
        // SAFETY: this backend orders all work on streams and frees memory only when the
        // context is idle (module docs).
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().unwrap_or_else(|_| "unknown".to_owned());
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| cuda_error("cuDeviceGetAttribute", e))? as usize;
        let stream = ctx.new_stream().map_err(|e| cuda_error("creating a stream", e))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(fatbin.to_vec()))
            .map_err(|e| cuda_error("loading the kernel module (no SASS or PTX for this GPU?)", e))?;
        let kernels = Kernels::load(&module)?;
        let pool = DevicePool::new(ctx.clone());
        Ok(Self { kernels, pool, ctx, stream, _module: module, name, sm_count })
    }

    /// "cuda:0 (NVIDIA H100 80GB HBM3)".
    pub fn name(&self) -> String {
        format!("cuda:{} ({})", self.ctx.ordinal(), self.name)
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    pub(crate) fn ctx(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device's allocation pool (every [`DeviceMemory`] of this device belongs to it).
    pub fn pool(&self) -> &Arc<DevicePool> {
        &self.pool
    }

    /// The device's default stream (benchmarks and one-off work; requests get their own).
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// A new stream on this device.
    pub fn new_stream(&self) -> Result<Arc<CudaStream>> {
        guarded("creating a stream", || self.ctx.new_stream().map_err(|e| cuda_error("creating a stream", e)))
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> Result<(i32, i32)> {
        self.ctx.compute_capability().map_err(|e| cuda_error("cuDeviceGetAttribute", e))
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> usize {
        self.sm_count
    }

    /// Peak SM clock in kHz (converts SM cycle counts to time in benchmarks).
    pub fn clock_khz(&self) -> Result<i32> {
        self.ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
            .map_err(|e| cuda_error("cuDeviceGetAttribute", e))
    }

    /// Free and total device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize)> {
        self.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        cudarc::driver::result::mem_get_info().map_err(|e| cuda_error("cuMemGetInfo", e))
    }

    /// Waits for all work queued on every stream of this device.
    pub fn synchronize(&self) -> Result<()> {
        count_host_wait();
        self.ctx.synchronize().map_err(|e| cuda_error("context synchronize", e))
    }

    /// A timing event (for benchmarks).
    pub fn timing_event(&self) -> Result<driver::CudaEvent> {
        self.ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| cuda_error("creating an event", e))
    }

    /// Records `event` on `stream`.
    pub fn record(&self, stream: &CudaStream, event: &driver::CudaEvent) -> Result<()> {
        event.record(stream).map_err(|e| cuda_error("recording an event", e))
    }

    /// Milliseconds between two recorded events (waits for `end`).
    pub fn elapsed_ms(&self, start: &driver::CudaEvent, end: &driver::CudaEvent) -> Result<f32> {
        end.synchronize().map_err(|e| cuda_error("event synchronize", e))?;
        start.elapsed_ms(end).map_err(|e| cuda_error("cuEventElapsedTime", e))
    }

    /// Queues on `stream` a one-thread kernel that waits `ns` nanoseconds, so that work
    /// queued after it is timed on the GPU without gaps from the host's launch path.
    pub fn spin(&self, stream: &Arc<CudaStream>, ns: u64) -> Result<()> {
        let mut b = stream.launch_builder(&self.kernels.spin);
        b.arg(&ns);
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: qt_spin_ns(unsigned long long) takes exactly this argument.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| cuda_error("launching qt_spin_ns", e))
    }

    /// Starts capturing `stream` into a graph (benchmarks: replay a fixed sequence of launches).
    pub fn begin_capture(&self, stream: &Arc<CudaStream>) -> Result<()> {
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| cuda_error("cuStreamBeginCapture", e))
    }

    /// Ends a capture started by [`begin_capture`](Self::begin_capture) and instantiates it.
    pub fn end_capture(&self, stream: &Arc<CudaStream>) -> Result<driver::CudaGraph> {
        stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(|e| cuda_error("cuStreamEndCapture", e))?
            .ok_or_else(|| Error::new(ErrorKind::Cuda, "CUDA: stream capture produced no graph"))
    }

    /// Replays a captured graph on the stream it was captured from.
    pub fn launch_graph(&self, graph: &driver::CudaGraph) -> Result<()> {
        graph.launch().map_err(|e| cuda_error("cuGraphLaunch", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_older_than_cuda_13_are_refused_by_name() {
        assert!(check_driver_version(13000).is_ok());
        assert!(check_driver_version(13020).is_ok());
        let e = check_driver_version(12080).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoCudaDriver);
        let msg = e.to_string();
        assert!(msg.contains("CUDA 12.8") && msg.contains("CUDA 13.0") && msg.contains("580"), "{msg}");
        assert_eq!(check_driver_version(0).unwrap_err().kind(), ErrorKind::NoCudaDriver);
    }
}
