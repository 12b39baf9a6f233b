//! The frame megakernel (`kernels/megakernel.cu`): one persistent cooperative launch per codec
//! frame runs the talker step, the code predictor's 15 codebook steps, both samplers and the
//! next talker input, with codes leaving through mapped host memory.
//!
//! * [`layout`]: the `#[repr(C)]` twins of the kernel's structs.
//! * [`program`]: the op list of a frame, built from weight and buffer addresses.
//! * [`runtime`]: launch geometry, per-request device state, frame records in mapped memory.

pub mod layout;
pub mod program;
pub mod runtime;

pub use layout::{MkOp, TRACE_FIELDS, flags};
pub use runtime::{FrameKernel, FrameRecord, FrameRequest, KernelGeometry, LoadPath, RequestInputs};
