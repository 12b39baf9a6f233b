//! The CUDA backend (feature `cuda`). This module tree is the only place that imports cudarc.
//!
//! First slice (issue 5): a device handle ([`CudaDevice`]) that opens a context on an
//! ordinal and loads the kernels, and the BF16-weight GEMV ([`gemv`]). The [`Backend`] trait
//! implementation comes with the remaining kernels.
//!
//! * **Driver.** cudarc loads `libcuda` with dlopen on first use and *panics* when it is
//!   absent, so [`CudaDevice::new`] checks [`driver_present`] before any other cudarc call and
//!   returns an [`ErrorKind::Unsupported`] error whose message starts with [`NO_DRIVER`]. Every
//!   cudarc call made while opening the device also runs under `catch_unwind`, so a panic
//!   inside cudarc (a missing driver symbol, say) becomes an error, never an unwind into
//!   callers (or an abort at the C boundary).
//! * **Kernels.** build.rs compiles `kernels/*.cu` with nvcc into one fatbin (SASS for sm_80,
//!   sm_86, sm_89, sm_90a plus compute_90 PTX), embedded here with `include_bytes!` and loaded
//!   with `cuModuleLoadData` (0.1 ms on the H100: the SASS is used, no JIT). A build made
//!   without nvcc has no kernels: [`kernels_compiled`] is false and [`CudaDevice::new`] says
//!   so ([`NO_KERNELS`]). There is deliberately no NVRTC fallback (1-2 s per compile, and it
//!   needs the CUDA headers on the user's machine).
//! * **Ordering.** The context's automatic per-buffer event tracking is turned off (it costs
//!   host time on every launch). Work is ordered by streams instead: everything a
//!   [`CudaDevice`] does goes on its one stream, and buffers must not be shared with another
//!   stream without explicit synchronisation.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError, LaunchConfig, PushKernelArg, sys};

use crate::error::{Error, ErrorKind, Result};

pub mod gemv;

/// cudarc types that device code outside the library (tests, examples, benchmarks) needs to
/// hold buffers and time work, re-exported so that they never import cudarc themselves.
pub mod driver {
    pub use cudarc::driver::{CudaEvent, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};
}

/// Start of the error message when no NVIDIA driver library can be loaded.
pub const NO_DRIVER: &str = "no CUDA driver";
/// Start of the error message when this build has no compiled kernels.
pub const NO_KERNELS: &str = "CUDA kernels were not compiled into this build";

#[cfg(qt_kernels)]
const FATBIN: Option<&[u8]> = Some(include_bytes!(env!("QT_KERNELS_FATBIN")));
#[cfg(not(qt_kernels))]
const FATBIN: Option<&[u8]> = None;

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

/// Maps a driver error to a crate error that names the failing step.
pub(crate) fn cuda_error(what: &str, e: DriverError) -> Error {
    let detail = match e.0 {
        sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => "out of GPU memory".to_owned(),
        _ => format!("{e:?}"),
    };
    Error::new(ErrorKind::Unsupported, format!("CUDA: {what} failed: {detail}"))
}

/// Runs cudarc code, turning a panic inside it into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(Error::new(ErrorKind::Unsupported, format!("CUDA: {what} panicked inside cudarc: {msg}")))
    })
}

/// One GPU: a context on an ordinal, a stream, and the loaded kernels.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    name: String,
    pub(crate) gemv_wpr: [CudaFunction; 3],
    spin: CudaFunction,
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
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{NO_DRIVER}: the NVIDIA driver library (libcuda.so.1) was not found"),
            ));
        }
        guarded("opening the device", || Self::open(ordinal))
    }

    fn open(ordinal: usize) -> Result<Self> {
        let count = CudaContext::device_count().map_err(|e| cuda_error("cuInit/cuDeviceGetCount", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("no CUDA device {ordinal}: the driver sees {count} device(s)"),
            ));
        }
        let Some(fatbin) = FATBIN else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{NO_KERNELS} (nvcc was not found when it was built; rebuild with nvcc on PATH or CUDA_HOME set)"),
            ));
        };
        let ctx = CudaContext::new(ordinal).map_err(|e| cuda_error("creating the context", e))?;
        // SAFETY: this backend orders all work on its own stream (module docs).
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().unwrap_or_else(|_| "unknown".to_owned());
        let stream = ctx.new_stream().map_err(|e| cuda_error("creating a stream", e))?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(fatbin.to_vec()))
            .map_err(|e| cuda_error("loading the kernel module (no SASS or PTX for this GPU?)", e))?;
        let load = |f: &str| module.load_function(f).map_err(|e| cuda_error(&format!("loading kernel {f}"), e));
        let gemv_wpr =
            [load("qt_gemv_bf16_f32_wpr1")?, load("qt_gemv_bf16_f32_wpr2")?, load("qt_gemv_bf16_f32_wpr4")?];
        let spin = load("qt_spin_ns")?;
        Ok(Self { ctx, stream, _module: module, name, gemv_wpr, spin })
    }

    /// "cuda:0 (NVIDIA H100 80GB HBM3)".
    pub fn name(&self) -> String {
        format!("cuda:{} ({})", self.ctx.ordinal(), self.name)
    }

    /// The device's stream: every operation of this device is queued on it.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> Result<(i32, i32)> {
        self.ctx.compute_capability().map_err(|e| cuda_error("cuDeviceGetAttribute", e))
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> Result<usize> {
        self.ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map(|n| n as usize)
            .map_err(|e| cuda_error("cuDeviceGetAttribute", e))
    }

    /// Allocates `len` zeroed elements.
    pub fn alloc_zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<driver::CudaSlice<T>> {
        self.stream.alloc_zeros(len).map_err(|e| cuda_error(&format!("allocating {len} elements"), e))
    }

    /// Copies host data to a new device buffer.
    pub fn upload<T: cudarc::driver::DeviceRepr>(&self, data: &[T]) -> Result<driver::CudaSlice<T>> {
        self.stream.clone_htod(data).map_err(|e| cuda_error("host-to-device copy", e))
    }

    /// Copies host data into an existing device buffer of the same length.
    pub fn write<T: cudarc::driver::DeviceRepr>(&self, dst: &mut driver::CudaSlice<T>, src: &[T]) -> Result<()> {
        if dst.len() != src.len() {
            return Err(Error::invalid_argument(format!("write: {} host elements into {}", src.len(), dst.len())));
        }
        self.stream.memcpy_htod(src, dst).map_err(|e| cuda_error("host-to-device copy", e))
    }

    /// Copies a device buffer to the host, waiting for queued work.
    pub fn download<T: cudarc::driver::DeviceRepr + Default + Clone>(&self, src: &driver::CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(src).map_err(|e| cuda_error("device-to-host copy", e))
    }

    /// Device-to-device copy of `src` into the start of `dst` (`dst.len() >= src.len()`).
    pub fn copy<T>(&self, src: &driver::CudaSlice<T>, dst: &mut driver::CudaSlice<T>) -> Result<()> {
        if dst.len() < src.len() {
            return Err(Error::invalid_argument(format!("copy: {} elements into {}", src.len(), dst.len())));
        }
        self.stream.memcpy_dtod(src, dst).map_err(|e| cuda_error("device-to-device copy", e))
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| cuda_error("stream synchronize", e))
    }

    /// A timing event (for benchmarks).
    pub fn timing_event(&self) -> Result<driver::CudaEvent> {
        self.ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_error("creating an event", e))
    }

    /// Records `event` on the device's stream.
    pub fn record(&self, event: &driver::CudaEvent) -> Result<()> {
        event.record(&self.stream).map_err(|e| cuda_error("recording an event", e))
    }

    /// Milliseconds between two recorded events (waits for `end`).
    pub fn elapsed_ms(&self, start: &driver::CudaEvent, end: &driver::CudaEvent) -> Result<f32> {
        end.synchronize().map_err(|e| cuda_error("event synchronize", e))?;
        start.elapsed_ms(end).map_err(|e| cuda_error("cuEventElapsedTime", e))
    }

    /// Queues a one-thread kernel that waits `ns` nanoseconds, so that work queued after it
    /// is timed on the GPU without gaps from the host's launch path.
    pub fn spin(&self, ns: u64) -> Result<()> {
        let mut b = self.stream.launch_builder(&self.spin);
        b.arg(&ns);
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: qt_spin_ns(unsigned long long) takes exactly this argument.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| cuda_error("launching qt_spin_ns", e))
    }
}
