//! qwentts-turbo: Qwen3-TTS 12 Hz inference as a Rust library and a C-ABI shared library.
//!
//! Layers, with dependencies pointing one way (`ffi → api → engine → model → backend`;
//! `audio`, `text`, `tensor` and `error` are leaves):
//!
//! * [`ffi`]: the `extern "C"` surface (`qt_*`), a thin shim over [`api`].
//! * [`api`]: the safe Rust API: [`api::Model`] and friends.
//! * [`engine`]: what runs a request's frame loop: the unfused loop over a backend, or the
//!   CUDA frame megakernel.
//! * [`model`]: checkpoint layout, configuration mirrors, weights and the networks.
//! * [`backend`]: the op set the networks are written in (the CPU backend is the oracle), and
//!   the CUDA kernels, the megakernel's included.
//! * [`audio`]: reference audio in; [`text`]: the Qwen2 byte-level BPE text tokenizer;
//!   [`tensor`]: borrowed tensor views; [`error`]: the crate-wide error type; `files`:
//!   bounded reads of regular files.

pub mod api;
pub mod audio;
pub mod backend;
pub mod engine;
pub mod error;
pub mod ffi;
mod files;
pub mod model;
pub mod tensor;
pub mod text;

pub use api::{
    Audio, AudioChunk, Device, FinishReason, GenerateHooks, GenerateOptions, GeneratedCodes, LoadOptions, Model,
    ModelFingerprint, ModelInfo, ModelKind, SpeechStream, StreamInfo, StreamRead, StreamState, Timings, Voice,
};
pub use engine::EngineKind;
pub use error::{Error, ErrorKind, Result};
