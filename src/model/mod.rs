//! The Qwen3-TTS model: configuration mirrors, the checkpoint container and the tensor
//! manifest a configuration implies.

pub mod checkpoint;
pub mod code_predictor;
pub mod codec;
pub mod config;
pub mod kv_cache;
pub mod layers;
pub mod log_mel;
pub mod manifest;
pub mod prompt;
pub mod talker;
pub mod speaker_encoder;
pub mod weights;
pub mod sampling;
pub mod rng;
pub mod frame_budget;
pub mod generate;
pub mod prefix_cache;

pub use checkpoint::Checkpoint;
pub use config::{GenerationConfig, ModelConfig, ModelKind, SpeechTokenizerConfig};
pub use weights::{DType, SafeTensorsFile, TensorView};
