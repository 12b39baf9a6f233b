//! Device memory owned by the library: plain synchronous allocations with RAII frees.
//!
//! Why not cudarc's `CudaSlice`: its stream-ordered free is only safe together with its
//! per-buffer event tracking (extra host work on every launch), which this backend turns off.
//! Here allocation is `cuMemAlloc` + `cuMemsetD8` (complete when `zeros` returns, so any
//! stream may use the memory at once) and `Drop` first waits for the whole context
//! (`cuCtxSynchronize`), then calls `cuMemFree`: a buffer can never be freed under a kernel
//! that still reads it, whichever stream queued that kernel. Frees are therefore not free;
//! they happen at request boundaries (caches, workspaces) and never inside the frame loop.

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{CudaContext, DeviceRepr, result, sys};

use super::cuda_error;
use crate::error::{Error, Result};

/// `len` elements of `T` in device memory of one context.
pub struct DeviceMemory<T> {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: Arc<CudaContext>,
    _elem: PhantomData<T>,
}

// SAFETY: the struct is a device address plus a context handle; the device memory is only
// touched through kernels and copies queued by the backend, which orders them on streams.
unsafe impl<T> Send for DeviceMemory<T> {}
unsafe impl<T> Sync for DeviceMemory<T> {}

impl<T: DeviceRepr> DeviceMemory<T> {
    /// `len` zeroed elements (complete on return).
    pub fn zeros(ctx: &Arc<CudaContext>, len: usize) -> Result<Self> {
        let mem = Self::uninit(ctx, len)?;
        if len > 0 {
            // SAFETY: ptr addresses exactly `bytes(len)` bytes allocated above.
            unsafe { result::memset_d8_sync(mem.ptr, 0, Self::bytes(len)?) }
                .map_err(|e| cuda_error("zeroing device memory", e))?;
        }
        Ok(mem)
    }

    /// A device copy of `data` (complete on return).
    pub fn from_host(ctx: &Arc<CudaContext>, data: &[T]) -> Result<Self> {
        let mem = Self::uninit(ctx, data.len())?;
        if !data.is_empty() {
            // SAFETY: the allocation holds data.len() elements; the copy is synchronous.
            unsafe { result::memcpy_htod_sync(mem.ptr, data) }.map_err(|e| cuda_error("host-to-device copy", e))?;
        }
        Ok(mem)
    }

    fn bytes(len: usize) -> Result<usize> {
        len.checked_mul(size_of::<T>())
            .ok_or_else(|| Error::invalid_argument(format!("device allocation of {len} elements overflows")))
    }

    fn uninit(ctx: &Arc<CudaContext>, len: usize) -> Result<Self> {
        let bytes = Self::bytes(len)?;
        ctx.bind_to_thread().map_err(|e| cuda_error("binding the context", e))?;
        let ptr = if bytes == 0 {
            0
        } else {
            // SAFETY: plain allocation in the bound context.
            unsafe { result::malloc_sync(bytes) }.map_err(|e| {
                cuda_error(&format!("allocating {:.1} MiB of device memory", bytes as f64 / (1 << 20) as f64), e)
            })?
        };
        Ok(DeviceMemory { ptr, len, ctx: ctx.clone(), _elem: PhantomData })
    }
}

impl<T> DeviceMemory<T> {
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
        if self.ptr == 0 {
            return;
        }
        // Errors cannot be returned from drop; a failing context is reported by the next call.
        if self.ctx.bind_to_thread().is_ok() {
            let _ = self.ctx.synchronize();
            // SAFETY: ptr came from malloc_sync in this context and is freed exactly once.
            let _ = unsafe { result::free_sync(self.ptr) };
        }
    }
}
