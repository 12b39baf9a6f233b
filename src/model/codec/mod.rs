//! The 12 Hz speech tokenizer ("codec"): 16 codebooks per frame ↔ 24 kHz audio.
//!
//! * [`decoder`]: codes → waveform (`Qwen3TTSTokenizerV2Decoder`), the official chunked
//!   decode, and the ICL output cut.
//! * [`encoder`]: waveform → reference codes (the Mimi-based encoder), for in-context cloning.
//! * [`stream`]: incremental decoding, frames in as they are generated.
//! * [`conv`], [`transformer`]: the decoder's layers over the audio op set
//!   ([`AudioBackend`](crate::backend::audio::AudioBackend)); [`ops`]: the CPU encoder's
//!   building blocks.
//! * [`encoder_net`]: the encoder over the audio op set (for the GPU), with the CPU
//!   [`encoder`] as its oracle.
//!
//! Tensors are read through [`TensorSource`], so a decoder can be built from a checkpoint
//! file or from tensors made in memory (tests, benchmarks).

pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod encoder_net;
pub mod ops;
pub mod stream;
pub mod transformer;
mod workspace;

pub use decoder::{CodecDecoder, DecoderTrace, icl_cut, materialize_codebook};
pub use encoder::CodecEncoder;
pub use stream::{ChunkPolicy, StreamingDecoder};

use crate::error::Result;
use crate::model::SafeTensorsFile;
use ops::Linear;

/// Where weights come from: a named f32 tensor of an exact shape.
pub trait TensorSource {
    /// The tensor `name` converted to f32; an error if it is absent or its shape differs.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}

impl TensorSource for SafeTensorsFile {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.require(name, shape)?.to_f32_vec())
    }
}

pub(crate) fn load_vec(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    src.tensor(name, shape)
}

/// `{prefix}.weight [n_out, n_in]` (+ `{prefix}.bias [n_out]`).
pub(crate) fn load_linear(src: &dyn TensorSource, prefix: &str, n_in: usize, n_out: usize, bias: bool) -> Result<Linear> {
    Ok(Linear {
        n_in,
        n_out,
        weight: src.tensor(&format!("{prefix}.weight"), &[n_out, n_in])?,
        bias: if bias { Some(src.tensor(&format!("{prefix}.bias"), &[n_out])?) } else { None },
    })
}
