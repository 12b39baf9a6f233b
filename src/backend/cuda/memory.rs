//! Device memory owned by the library: plain allocations with deferred frees.
//!
//! Why not cudarc's `CudaSlice`: its stream-ordered free is only safe together with its
//! per-buffer event tracking (extra host work on every launch), which this backend turns off.
//!
//! Initialisation is complete before any stream can use the memory: `zeros` and `from_host`
//! queue their memset / copy on the legacy default stream and wait for that stream alone.
//! (cuMemsetD8 and a pageable cuMemcpyHtoD return before the device has finished; the work
//! runs on the legacy stream, which the backend's non-blocking streams do not wait for, so
//! without the wait a kernel on a request stream could read the memory before it is zeroed
//! or uploaded.) Waiting on the legacy stream does not wait for other requests' streams.
//! [`DeviceMemory::zero_async`] zeroes on a given stream instead, ordered with its later work.
//!
//! Dropping a [`DeviceMemory`] only hands its address to the device's [`DevicePool`];
//! [`DevicePool::flush`] waits for the whole context (`cuCtxSynchronize`) once and then frees
//! everything handed in before it: a buffer is never freed under a kernel that still reads
//! it, whichever stream queued that kernel, and a request that ends pays one context wait,
//! not one per buffer. Flushes happen when a request's stream is dropped, when many frees are
//! pending, and when the device is closed.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, DeviceRepr, result, sys};

use super::cuda_error;
use crate::error::{Error, Result};

/// Frees above this many pending addresses trigger a flush from `Drop` itself, so a process
/// that never drops a stream still returns memory.
const MAX_PENDING: usize = 512;

/// Allocations of one context and the frees waiting for it to be idle.
pub struct DevicePool {
    ctx: Arc<CudaContext>,
    pending: Mutex<Vec<sys::CUdeviceptr>>,
}

impl DevicePool {
    pub fn new(ctx: Arc<CudaContext>) -> Arc<Self> {
        Arc::new(DevicePool { ctx, pending: Mutex::new(Vec::new()) })
    }

    /// Waits for all queued work of the context, then frees every address handed in so far.
    /// Errors cannot be reported from the drops that call this; a broken context shows at
    /// the next call that returns a status.
    pub fn flush(&self) {
        let ptrs = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if ptrs.is_empty() || self.ctx.bind_to_thread().is_err() {
            return;
        }
        super::count_host_wait();
        let _ = self.ctx.synchronize();
        for ptr in ptrs {
            // SAFETY: each address came from malloc_sync in this context, is handed in once,
            // and no queued work can still use it (the context is idle).
            let _ = unsafe { result::free_sync(ptr) };
        }
    }

    fn release(&self, ptr: sys::CUdeviceptr) {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.push(ptr);
            pending.len() >= MAX_PENDING
        };
        if full {
            self.flush();
        }
    }
}

/// The legacy default stream (`CU_STREAM_LEGACY`), where the non-async memset and copy run.
fn legacy_stream() -> sys::CUstream {
    0x1 as sys::CUstream
}

impl Drop for DevicePool {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `len` elements of `T` in device memory of one context.
pub struct DeviceMemory<T> {
    ptr: sys::CUdeviceptr,
    len: usize,
    pool: Arc<DevicePool>,
    _elem: PhantomData<T>,
}

// SAFETY: the struct is a device address plus a context handle; the device memory is only
// touched through kernels and copies queued by the backend, which orders them on streams.
unsafe impl<T> Send for DeviceMemory<T> {}
unsafe impl<T> Sync for DeviceMemory<T> {}

impl<T: DeviceRepr> DeviceMemory<T> {
    /// `len` zeroed elements, complete on return for every stream.
    pub fn zeros(pool: &Arc<DevicePool>, len: usize) -> Result<Self> {
        let mem = Self::uninit(pool, len)?;
        if len > 0 {
            // SAFETY: ptr addresses exactly `bytes(len)` bytes allocated above; the memset is
            // queued on the legacy stream and waited for before anything else can see `mem`.
            unsafe {
                result::memset_d8_async(mem.ptr, 0, Self::bytes(len)?, legacy_stream())
                    .map_err(|e| cuda_error("zeroing device memory", e))?;
                result::stream::synchronize(legacy_stream()).map_err(|e| cuda_error("zeroing device memory", e))?;
            }
        }
        Ok(mem)
    }

    /// A device copy of `data`, complete on return for every stream.
    pub fn from_host(pool: &Arc<DevicePool>, data: &[T]) -> Result<Self> {
        let mem = Self::uninit(pool, data.len())?;
        if !data.is_empty() {
            // SAFETY: the allocation holds data.len() elements. A pageable cuMemcpyHtoD returns
            // once the data is staged; its DMA runs on the legacy stream, waited for here.
            unsafe {
                result::memcpy_htod_sync(mem.ptr, data).map_err(|e| cuda_error("host-to-device copy", e))?;
                result::stream::synchronize(legacy_stream()).map_err(|e| cuda_error("host-to-device copy", e))?;
            }
        }
        Ok(mem)
    }

    fn bytes(len: usize) -> Result<usize> {
        len.checked_mul(size_of::<T>())
            .ok_or_else(|| Error::invalid_argument(format!("device allocation of {len} elements overflows")))
    }

    fn uninit(pool: &Arc<DevicePool>, len: usize) -> Result<Self> {
        let bytes = Self::bytes(len)?;
        pool.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let ptr = if bytes == 0 {
            0
        } else {
            // SAFETY: plain allocation in the bound context.
            let first = unsafe { result::malloc_sync(bytes) };
            match first {
                // Memory may be waiting in the pool for a flush: return it and try once more.
                Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                    pool.flush();
                    // SAFETY: as above.
                    unsafe { result::malloc_sync(bytes) }
                }
                other => other,
            }
            .map_err(|e| {
                cuda_error(&format!("allocating {:.1} MiB of device memory", bytes as f64 / (1 << 20) as f64), e)
            })?
        };
        Ok(DeviceMemory { ptr, len, pool: pool.clone(), _elem: PhantomData })
    }
}

impl<T> DeviceMemory<T> {
    /// No memory (length 0): a placeholder that allocates nothing.
    pub fn empty(pool: &Arc<DevicePool>) -> Self {
        DeviceMemory { ptr: 0, len: 0, pool: pool.clone(), _elem: PhantomData }
    }

    /// Zeroes elements `offset..offset + len` on `stream`: ordered before the stream's later
    /// work, not complete on return.
    pub fn zero_async(&mut self, stream: &cudarc::driver::CudaStream, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::invalid_argument(format!(
                "zeroing elements {offset}..{} of a buffer of {}",
                offset.saturating_add(len),
                self.len
            )));
        }
        if len == 0 {
            return Ok(());
        }
        self.pool.ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        // SAFETY: the range is inside this allocation (checked above).
        unsafe { result::memset_d8_async(self.ptr_at(offset), 0, len * size_of::<T>(), stream.cu_stream()) }
            .map_err(|e| cuda_error("zeroing device memory", e))
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Device address of the first element (0 when empty).
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Device address of element `offset` (`offset <= len`; callers check ranges first).
    pub fn ptr_at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.len);
        self.ptr + (offset * size_of::<T>()) as u64
    }
}

impl<T> std::fmt::Debug for DeviceMemory<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceMemory<{}>({} elements at {:#x})", std::any::type_name::<T>(), self.len, self.ptr)
    }
}

impl<T> Drop for DeviceMemory<T> {
    fn drop(&mut self) {
        if self.ptr != 0 {
            self.pool.release(self.ptr);
        }
    }
}
