//! The frame megakernel (`kernels/megakernel.cu`): one persistent cooperative launch per codec
//! frame runs the talker step, the code predictor's 15 codebook steps, both samplers and the
//! next talker input, with codes leaving through mapped host memory.
//!
//! * [`layout`]: the `#[repr(C)]` twins of the kernel's structs.
//! * [`program`]: the op list of a frame, built from weight and buffer addresses.
//! * [`load_plan`]: each block's weight pages in the order it uses them.
//! * [`runtime`]: launch geometry, per-request device state, frame records in mapped memory.

pub mod layout;
pub mod load_plan;
pub mod program;
pub mod runtime;

pub use layout::{
    MkOp, TRACE_DECODE_CYCLES, TRACE_DONE_CLK, TRACE_INPUTS_CLK, TRACE_DONE_NS, TRACE_FIELDS, TRACE_ISSUE_CYCLES, TRACE_LOOP_END_CLK,
    TRACE_LOOP_START_CLK, TRACE_PAGE_WAIT_CYCLES, TRACE_RELEASED_CLK, TRACE_RELEASED_NS, TRACE_START_NS, flags,
};
pub use runtime::{FrameKernel, FrameRecord, FrameRequest, KernelGeometry, LoadPath, RequestInputs};
