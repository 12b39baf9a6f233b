//! The safe Rust API. The C surface in `ffi` is a mechanical shim over this module; Rust
//! programs, tests and examples use it directly.

mod generate;
mod model;
mod voice;

pub use crate::model::ModelKind;
pub use crate::model::generate::{FinishReason, GeneratedCodes};
pub use generate::GenerateOptions;
pub use model::{LoadOptions, Model, ModelInfo};
pub use voice::{Reference, Voice, VoiceKind};
