//! Typed launcher for `kernels/gemv.cu`: y = W · x with W bf16 `[rows, cols]` row-major,
//! x and y f32, fp32 accumulation.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;

use super::driver::{CudaView, CudaViewMut};
use super::{CudaDevice, cuda_error};
use crate::error::{Error, Result};

/// Threads per block of the GEMV kernels (8 warps).
const THREADS: u32 = 256;

/// Warps per row the kernel is built for.
pub const WARPS_PER_ROW: [u32; 3] = [1, 2, 4];

/// The warps-per-row choice for a shape: enough 16-byte loads per thread to keep four in
/// flight, and enough threads per row that short rows do not leave lanes idle (H100 figures
/// in deps.md §12.5: 4 for cols ≥ 2048, 2 for 1024-wide rows).
pub fn default_warps_per_row(cols: usize) -> u32 {
    match cols {
        0..=512 => 1,
        513..=2047 => 2,
        _ => 4,
    }
}

impl CudaDevice {
    /// Queues `y = W · x` on the device's stream. `w` holds `rows * cols` bf16 (row-major),
    /// `x` `cols` f32 and `y` `rows` f32; `warps_per_row` is 1, 2 or 4 (None: by shape).
    /// `y` must not overlap `w` or `x`. Any alignment works; 16-byte-aligned `w` and `x` with
    /// `cols % 8 == 0` take the vectorised path.
    pub fn gemv_bf16(
        &self,
        w: &CudaView<'_, bf16>,
        x: &CudaView<'_, f32>,
        y: &mut CudaViewMut<'_, f32>,
        rows: usize,
        cols: usize,
        warps_per_row: Option<u32>,
    ) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Err(Error::invalid_argument(format!("gemv: empty shape {rows}x{cols}")));
        }
        let (Ok(rows_i), Ok(cols_i)) = (i32::try_from(rows), i32::try_from(cols)) else {
            return Err(Error::invalid_argument(format!("gemv: shape {rows}x{cols} exceeds i32")));
        };
        if rows.checked_mul(cols) != Some(w.len()) {
            return Err(Error::invalid_argument(format!(
                "gemv: weight has {} elements, shape {rows}x{cols} needs {}",
                w.len(),
                rows as u128 * cols as u128
            )));
        }
        if x.len() != cols || y.len() != rows {
            return Err(Error::invalid_argument(format!(
                "gemv: x has {} elements (needs {cols}), y has {} (needs {rows})",
                x.len(),
                y.len()
            )));
        }
        let wpr = warps_per_row.unwrap_or_else(|| default_warps_per_row(cols));
        let Some(index) = WARPS_PER_ROW.iter().position(|&k| k == wpr) else {
            return Err(Error::invalid_argument(format!("gemv: warps per row must be 1, 2 or 4, not {wpr}")));
        };
        let rows_per_block = (THREADS / 32 / wpr) as usize;
        let blocks = rows.div_ceil(rows_per_block) as u32; // ≤ i32::MAX rows, so it fits
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        let func = &self.gemv_wpr[index];
        let mut b = self.stream().launch_builder(func);
        b.arg(w).arg(x).arg(y).arg(&rows_i).arg(&cols_i);
        // SAFETY: argument types and sizes match qt_gemv_bf16_f32_wpr* (checked above); the
        // kernel reads rows * cols of w, cols of x and writes rows of y.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| cuda_error("launching qt_gemv_bf16_f32", e))
    }
}
