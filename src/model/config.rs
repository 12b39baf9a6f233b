//! STUB (to be replaced by the loader work): serde mirrors of config.json,
//! generation_config.json and speech_tokenizer/config.json.
use crate::error::Result;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind { Base, CustomVoice, VoiceDesign }

#[derive(Debug, Clone)]
pub struct CodePredictorConfig { pub num_hidden_layers: usize }
#[derive(Debug, Clone)]
pub struct TalkerConfig { pub hidden_size: usize, pub num_hidden_layers: usize, pub num_code_groups: usize, pub code_predictor_config: CodePredictorConfig }
#[derive(Debug, Clone)]
pub struct ModelConfig { pub talker_config: TalkerConfig }
impl ModelConfig {
    pub fn from_file(_path: &Path) -> Result<Self> { unimplemented!() }
    pub fn kind(&self) -> ModelKind { unimplemented!() }
    pub fn size_label(&self) -> String { unimplemented!() }
    pub fn languages(&self) -> Vec<String> { unimplemented!() }
    pub fn speakers(&self) -> Vec<String> { unimplemented!() }
}
#[derive(Debug, Clone)]
pub struct GenerationConfig {}
#[derive(Debug, Clone)]
pub struct SpeechTokenizerConfig { pub output_sample_rate: u32 }
impl SpeechTokenizerConfig { pub fn frame_rate(&self) -> f32 { unimplemented!() } }
