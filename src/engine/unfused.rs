//! The unfused engine: the reference frame loop of [`crate::model::generate`] on any backend.

use super::{FrameEngine, FrameRequest};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::code_predictor::CodePredictor;
use crate::model::generate::{FrameSink, GeneratedCodes, StopPoll, generate_codes};
use crate::model::prefix_cache::PrefixCache;
use crate::model::talker::Talker;

/// The talker and code predictor of one backend, run op by op.
pub struct UnfusedEngine<'a, B: Backend> {
    pub backend: &'a B,
    pub talker: &'a Talker<B>,
    pub predictor: &'a CodePredictor<B>,
    /// The model's voice prefix cache, if it keeps one.
    pub prefix_cache: Option<&'a PrefixCache<B>>,
}

impl<B: Backend> FrameEngine for UnfusedEngine<'_, B> {
    fn name(&self) -> &'static str {
        "unfused"
    }

    fn generate(
        &self,
        r: FrameRequest<'_>,
        on_frame: Option<&mut FrameSink<'_>>,
        should_stop: Option<&mut StopPoll<'_>>,
    ) -> Result<GeneratedCodes> {
        generate_codes(
            self.backend,
            self.talker,
            self.predictor,
            self.prefix_cache,
            r.ids,
            r.plan,
            r.voice,
            r.config,
            on_frame,
            should_stop,
        )
    }
}
