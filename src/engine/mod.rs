//! Frame engines: what runs a request's frame loop (prompt prefill, frame steps, sampling,
//! codes out) on a model's decoders. One level above [`crate::backend`]: a fused talker step
//! is not an op, so the megakernel cannot be one more `Backend`; it is another engine.
//!
//! * [`UnfusedEngine`]: the reference frame loop ([`crate::model::generate`]) over any
//!   backend, op by op: the CPU oracle, and the unfused CUDA path (debugging, and shapes the
//!   megakernel does not take).
//! * [`MegakernelEngine`] (feature `cuda`): one persistent kernel launch per frame, samplers on
//!   the device, codes returned through mapped host memory, no host wait per frame.
//!
//! Both produce the same codes for the same request and seed up to floating-point rounding
//! (the samplers are bit-identical; logits agree to bf16-weight tolerance).
//!
//! Batching (several requests per step) extends the engines, not the callers: a step's
//! matrix ops already take several input rows (the code predictor's 2-row prefill), and the
//! per-request state (caches, counters, records) lives in per-request objects.

#[cfg(feature = "cuda")]
pub mod megakernel;
pub mod unfused;

#[cfg(feature = "cuda")]
pub use megakernel::MegakernelEngine;
pub use unfused::UnfusedEngine;

use crate::error::Result;
use crate::model::generate::{FrameLoopConfig, FrameSink, GeneratedCodes, StopPoll};
use crate::model::prompt::{PromptPlan, SpecialIds, VoiceData};

/// Everything one generation needs besides the weights.
#[derive(Clone, Copy)]
pub struct FrameRequest<'a> {
    pub ids: &'a SpecialIds,
    pub plan: &'a PromptPlan,
    pub voice: VoiceData<'a>,
    pub config: &'a FrameLoopConfig,
}

/// Runs whole requests' frame loops.
pub trait FrameEngine {
    /// Short name for logs and timing tables ("unfused", "megakernel").
    fn name(&self) -> &'static str;

    /// Generates codes for one request. `on_frame(index, codes)` runs on the calling thread
    /// after each frame and may return `false` to stop; `should_stop` is polled during the
    /// work before the first frame (the prompt's prefill) and may return `true` to stop there.
    fn generate(
        &self,
        request: FrameRequest<'_>,
        on_frame: Option<&mut FrameSink<'_>>,
        should_stop: Option<&mut StopPoll<'_>>,
    ) -> Result<GeneratedCodes>;
}

/// Which engine a CUDA model runs (see `LoadOptions::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The megakernel where the model's shapes and the GPU allow it, else the unfused path.
    #[default]
    Auto,
    /// The frame megakernel; loading fails if it cannot run this model on this GPU.
    Megakernel,
    /// The layer-by-layer path (debugging, comparison).
    Unfused,
}
