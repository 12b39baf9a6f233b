//! Text processing: the Qwen2 byte-level BPE tokenizer.

pub mod tokenizer;

pub use tokenizer::TextTokenizer;
