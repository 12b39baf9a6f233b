//! The safe Rust API. The C surface in `ffi` is a mechanical shim over this module; Rust
//! programs, tests and examples use it directly.
//!
//! * [`model`](Model): load a checkpoint; immutable, shareable.
//! * `voice` / `clone` / `voice_file`: who speaks: [`Voice`], cloning from reference audio,
//!   saving and loading voices.
//! * `generate` / `synthesize` / `audio`: text → codec frames ([`Model::generate_codes`]),
//!   text → streamed audio ([`Model::generate`]), and the output types ([`Audio`]).
//! * `stream`: a generation on its own thread, read without blocking from a real-time audio
//!   callback ([`SpeechStream`]).

mod audio;
mod audio_decoder;
mod clone;
mod generate;
mod model;
mod clone_networks;
mod stream;
mod synthesize;
mod voice;
mod voice_file;

pub use crate::model::ModelKind;
pub use crate::model::generate::{FinishReason, GeneratedCodes};
pub use crate::model::prefix_cache::{PrefillReport, PrefixCacheStats};
pub use audio::{Audio, AudioChunk, Timings, encode_wav};
pub use generate::{DEFAULT_CHUNK_FRAMES, DEFAULT_FIRST_CHUNK_FRAMES, GenerateOptions, MAX_PROMPT_ROWS, MAX_TEXT_BYTES};
pub use model::{Device, LoadOptions, Model, ModelInfo};
pub use stream::{MAX_STREAM_CAPACITY, MIN_STREAM_CAPACITY, SpeechStream, StreamInfo, StreamRead, StreamState};
pub use synthesize::{ChunkSink, GenerateHooks};
pub use voice::{ModelFingerprint, Reference, Voice, VoiceKind};
pub use voice_file::{MAX_VOICE_BYTES, VOICE_FORMAT, VOICE_FORMAT_VERSION};
