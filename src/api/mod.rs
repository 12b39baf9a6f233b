//! The safe Rust API. The C surface in `ffi` is a mechanical shim over this module; Rust
//! programs, tests and examples use it directly.

mod model;

pub use crate::model::ModelKind;
pub use model::{LoadOptions, Model, ModelInfo};
