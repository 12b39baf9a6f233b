//! STUB (to be replaced by the tokenizer work): Qwen2 byte-level BPE.
use crate::error::Result;
use std::path::Path;
pub struct TextTokenizer {}
impl TextTokenizer {
    pub fn from_dir(_dir: &Path) -> Result<Self> { unimplemented!() }
    pub fn encode(&self, _text: &str) -> Result<Vec<u32>> { unimplemented!() }
}
