//! The Qwen3-TTS model: configuration mirrors, the checkpoint container and the tensor
//! manifest a configuration implies.

pub mod checkpoint;
pub mod config;
pub mod manifest;
pub mod speaker_encoder;
pub mod weights;
pub mod sampling;
pub mod rng;
pub mod frame_budget;

pub use checkpoint::Checkpoint;
pub use config::{GenerationConfig, ModelConfig, ModelKind, SpeechTokenizerConfig};
pub use weights::{DType, SafeTensorsFile, TensorView};
