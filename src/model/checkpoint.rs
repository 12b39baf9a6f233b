//! STUB (to be replaced by the loader work): a checkpoint directory, opened and validated.
use super::config::{GenerationConfig, ModelConfig, SpeechTokenizerConfig};
use super::weights::SafeTensorsFile;
use crate::error::Result;
use std::path::{Path, PathBuf};
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub speech_config: SpeechTokenizerConfig,
    pub weights: SafeTensorsFile,
    pub speech_weights: SafeTensorsFile,
}
impl Checkpoint { pub fn open(_dir: &Path) -> Result<Self> { unimplemented!() } }
