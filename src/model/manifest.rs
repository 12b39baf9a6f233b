//! STUB (to be replaced by the loader work): the tensors a configuration implies.
use super::config::{ModelConfig, SpeechTokenizerConfig};
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TensorSpec { pub name: String, pub shape: Vec<usize> }
pub fn main_model_tensors(_cfg: &ModelConfig) -> Vec<TensorSpec> { unimplemented!() }
pub fn speech_tokenizer_tensors(_cfg: &SpeechTokenizerConfig) -> Vec<TensorSpec> { unimplemented!() }
